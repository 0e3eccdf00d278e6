//! The join phases that talk to the cluster: `discovery`,
//! `download-certs` and `etcd-join`. The protocols are `api`'s
//! ([`api::discovery::join`], [`api::certs::download`],
//! [`api::etcd::join`]); these bodies read and write the node's files
//! around them.

use super::{Client, NodeRun};
use crate::api;
use crate::error::Error;
use crate::host::fs;
use crate::manifests;
use crate::pki::kubeconfig;

pub(super) fn run_discovery(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let Some(join) = r.input.settings.join.clone() else {
        return Err(Error::Invalid("discovery: no join configuration".into()));
    };
    let spread = r.input.settings.start_spread;
    if r.live() && !spread.is_zero() {
        // A fleet booted at once: each node waits a random part of the
        // spread first, so their first requests do not arrive together.
        let wait = crate::net::http::jitter(spread);
        log::info!(target: "discovery", "start spread: waiting {} before the first request (random, up to {}; startSpread)", crate::progress::human(wait), crate::progress::human(spread));
        std::thread::sleep(wait);
    }
    let found = api::discovery::join(
        &join,
        &r.input.settings.node.name,
        r.input.budgets.discovery,
    )?;
    adopt_cluster_configuration(r, found.cluster_config.as_deref())?;
    let info = found.info;
    // ca.crt next to the kubeconfigs, as kubeadm writes it (0644).
    let ca_path = r.input.pki_file("ca.crt");
    fs::write_atomic(
        &r.input.paths.rooted(&ca_path),
        &info.ca_pem,
        0o644,
        r.sync(),
    )?;
    r.record("discovery", ca_path, "written", "cluster CA".into());
    let server = crate::kubelet::bootstrap_server(&r.input.settings, &info.server);
    let text = kubeconfig::render_bootstrap(&server, &info.ca_pem, &join.token);
    let kc = r.input.paths.bootstrap_kubelet_conf();
    fs::write_atomic(&r.input.paths.rooted(&kc), text.as_bytes(), 0o600, r.sync())?;
    r.record(
        "discovery",
        kc,
        "written",
        "token auth (tls-bootstrap-token-user)".into(),
    );
    match &found.kubelet_config {
        Some(_) => {
            log::info!(target: "discovery", "using the cluster's kubelet configuration (kube-system/kubelet-config)")
        }
        None => {
            log::info!(target: "discovery", "the cluster has no readable kube-system/kubelet-config; the kubelet configuration is derived from this node's settings")
        }
    }
    r.state.cluster_kubelet_config = found.kubelet_config;
    r.state.cluster_info = Some(info);
    Ok(())
}

/// The cluster's kube-system/kubeadm-config over this node's settings,
/// where the node's configuration did not set them (kubeadm join does the
/// same: `config::from_cluster`); every later phase renders with them.
fn adopt_cluster_configuration(r: &mut NodeRun<'_>, doc: Option<&str>) -> Result<(), Error> {
    let Some(doc) = doc else {
        log::info!(target: "discovery", "the cluster has no readable kube-system/kubeadm-config; using this node's settings (Kubernetes {})", r.input.settings.cluster.kubernetes_version);
        return Ok(());
    };
    let adopted = crate::config::from_cluster::adopt(&mut r.input.settings, doc)?;
    for t in &adopted.taken {
        log::info!(target: "discovery", "from the cluster's kube-system/kubeadm-config: {t}");
    }
    for c in &adopted.contradictions {
        log::warn!(target: "discovery", "{c}");
    }
    Ok(())
}

pub(super) fn run_download_certs(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let (Some(join), Some(info)) = (&r.input.settings.join, &r.state.cluster_info) else {
        return Err(Error::Failed(
            "download-certs needs the discovery phase first".into(),
        ));
    };
    let Some(ck) = &join.certificate_key else {
        return Err(Error::Invalid("download-certs: no certificateKey".into()));
    };
    let files = api::certs::download(
        info,
        &join.token,
        &r.input.settings,
        ck,
        r.input.budgets.discovery,
    )?;
    // the same keep/refuse rules as files carried by the userdata
    super::files::write_files(r, "download-certs", &files)
}

/// kubeadm's etcd-join ([`api::etcd::join`]), with `admin.conf`'s client
/// certificate for the etcd pods and etcd's health-check client for etcd;
/// etcd.yaml is written when the member list is known.
pub(super) fn run_etcd_join(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let Some(info) = r.state.cluster_info.clone() else {
        return Err(Error::Failed(
            "etcd-join needs the discovery phase first".into(),
        ));
    };
    let admin = r.input.paths.kubeconfig(Client::Admin.kubeconfig());
    let bytes = fs::read_required(&admin, "control-plane-prepare writes it")?;
    let (cert, key) = kubeconfig::client_cert_and_key(&bytes, &r.input.paths)
        .map_err(|e| Error::Failed(format!("{}: {e}", admin.display())))?;
    let pki = |f: &str| -> Result<Vec<u8>, Error> { fs::read_required(&r.input.pki_file(f), "") };
    let ca = pki("etcd/ca.crt")?;
    let hc_cert = pki("etcd/healthcheck-client.crt")?;
    let hc_key = String::from_utf8(pki("etcd/healthcheck-client.key")?)
        .map(crate::secret::Secret::new)
        .map_err(|_| Error::Failed("etcd/healthcheck-client.key is not PEM text".into()))?;
    let name = r.input.settings.node.name.clone();
    let inputs = api::etcd::JoinInputs {
        server: &info.server,
        cluster_ca: &info.ca_pem,
        admin: (&cert, &key),
        etcd_ca: &ca,
        healthcheck: (&hc_cert, &hc_key),
        advertise: r.input.settings.node.advertise_address,
        name: &name,
        api_budget: r.input.budgets.api,
        etcd_budget: r.input.budgets.etcd,
    };
    api::etcd::join(&inputs, |members| {
        let Some(pod) = manifests::etcd_with(&r.input.settings, &r.input.host_inputs, members)
        else {
            return Err(Error::Failed(
                "etcd-join: this node has no local etcd to render".into(),
            ));
        };
        let text = manifests::patched_yaml(&r.input.settings, manifests::ETCD, &pod)?;
        for p in manifests::write_manifests(&r.input.paths, &[(manifests::ETCD, text)], r.sync())? {
            log::info!(target: "etcd-join", "wrote {}", p.display());
            r.record("etcd-join", p, "written", String::new());
        }
        r.flush()
    })
}
