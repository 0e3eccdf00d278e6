//! The init phases that finish the control plane through the API server,
//! as `admin.conf`'s user: `upload-config`, `upload-certs`,
//! `mark-control-plane`, `bootstrap-token`, `addon` and
//! `show-join-command`. The objects are built by `api::objects` and
//! `api::addons` (pure) and applied by `api::kube`.

use super::{Client, NodeRun};
use crate::api;
use crate::config::BootstrapToken;
use crate::error::Error;
use crate::host::fs;
use crate::{kubelet, pki};

/// kubeadm's upload-config: first the `kubeadm:cluster-admins` binding
/// (kubeadm ensures it when it first builds its client), then
/// kubeadm-config and kubelet-config with their RBAC.
pub(super) fn run_upload_config(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let kube = r.client(Client::Admin)?;
    api::kube::ensure_cluster_admins(&kube, || r.client(Client::SuperAdmin))?;
    log::info!(target: "upload-config", "ClusterRoleBinding kubeadm:cluster-admins present");
    // the cluster-wide configuration, without this node's kubeletconfiguration
    // patches (kubeadm uploads its component config, not the patched file)
    let text = kubelet::config_yaml(&r.input.settings, &r.input.detected)?;
    let mut objs = api::objects::upload_config(&r.input.settings, &text)?;
    // sub-phases: `kubelet` is kubelet-config and its Role/RoleBinding,
    // `kubeadm` the rest (kubeadm-config and its RBAC)
    let (kubeadm, kubelet) = (r.wants("kubeadm"), r.wants("kubelet"));
    objs.retain(|o| {
        if o.item.contains(api::objects::KUBELET_CONFIG) {
            kubelet
        } else {
            kubeadm
        }
    });
    kube.apply_all("upload-config", &objs)?;
    // kubeadm 1.32/1.33 (NodeLocalCRISocket off) keep the CRI socket on the Node
    if kubelet && !kubelet::node_local_cri_socket(&r.input.settings) {
        let (name, sock) = (
            &r.input.settings.node.name,
            &r.input.settings.node.cri_socket,
        );
        let set = kube.annotate_cri_socket(name, sock, r.input.budgets.api)?;
        log::info!(target: "upload-config", "Node {name}: annotation {}={sock} ({})", api::objects::ANNOTATION_CRI_SOCKET, if set { "set" } else { "already present" });
    }
    Ok(())
}

pub(super) fn run_upload_certs(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let Some(ck) = &r.input.settings.certificate_key else {
        return Ok(());
    };
    let kube = r.client(Client::Admin)?;
    api::certs::upload(&kube, &r.input.settings, &r.input.paths, ck, r.input.now)?;
    log::info!(target: "upload-certs", "shared certificates stored in kube-system/kubeadm-certs (decryptable only with the certificate key)");
    Ok(())
}

pub(super) fn run_mark_control_plane(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let kube = r.client(Client::Admin)?;
    let name = &r.input.settings.node.name;
    let changed =
        kube.mark_control_plane(name, &r.input.settings.node.taints, r.input.budgets.api)?;
    let taints: Vec<String> = r
        .input
        .settings
        .node
        .taints
        .iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    log::info!(
        target: "mark-control-plane",
        "Node {name}: labels {}, {}; taints [{}] ({})",
        api::objects::LABEL_CONTROL_PLANE,
        api::objects::LABEL_EXCLUDE_LB,
        taints.join(", "),
        if changed { "patched" } else { "already present" }
    );
    Ok(())
}

/// kubeadm's bootstrap-token: a Secret per token (generated when the
/// config gives none; kept in the run state for show-join-command), the
/// RBAC that lets tokens bootstrap kubelets, `kube-public/cluster-info` and
/// the anonymous read of it. The controller manager signs cluster-info.
pub(super) fn run_bootstrap_token(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let kube = r.client(Client::Admin)?;
    let mut objs = Vec::new();
    let mut tokens = Vec::new();
    for spec in &r.input.settings.bootstrap_tokens {
        let token = match &spec.token {
            Some(t) => t.clone(),
            None => BootstrapToken::generate()?,
        };
        objs.push(api::objects::object(
            &api::objects::token_secret(spec, &token, r.input.now),
            api::objects::Update::Replace,
        ));
        tokens.push(token);
    }
    r.state.tokens = tokens;
    objs.extend(api::objects::bootstrap_rbac());
    let ca = fs::read_required(&r.input.pki_file("ca.crt"), "")?;
    let server = r.input.settings.control_plane_endpoint().url();
    objs.extend(api::objects::cluster_info(&server, &ca));
    kube.apply_all("bootstrap-token", &objs)
}

/// kubeadm's addon phase: CoreDNS, then kube-proxy, each unless disabled.
pub(super) fn run_addon(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let c = &r.input.settings.cluster;
    for (off, what) in [
        (c.dns.disabled, "CoreDNS: dns.disabled"),
        (c.proxy.disabled, "kube-proxy: proxy.disabled"),
    ] {
        if off {
            log::info!(target: "addon", "not installing {what}");
        }
    }
    let kube = r.client(Client::Admin)?;
    let s = &r.input.settings;
    let mut objs = Vec::new();
    if r.wants("coredns") && !s.cluster.dns.disabled {
        objs.extend(api::addons::coredns(s)?);
    }
    if r.wants("kube-proxy") && !s.cluster.proxy.disabled {
        objs.extend(api::addons::kube_proxy(s)?);
    }
    kube.apply_all("addon", &objs)
}

/// Prints the worker join as a kubeboot NodeConfig. The token secret is
/// never printed: the line names the Secret holding it.
pub(super) fn run_show_join_command(r: &mut NodeRun<'_>) -> Result<(), Error> {
    // the tokens bootstrap-token created, else (it was skipped) the ones given
    let given = r.input.settings.bootstrap_tokens.iter();
    let Some(token) = r
        .state
        .tokens
        .first()
        .or_else(|| given.clone().find_map(|t| t.token.as_ref()))
    else {
        log::info!(target: "show-join-command", "no bootstrap token was created; create one with `kubeadm token create`");
        return Ok(());
    };
    let ca = fs::read_required(&r.input.pki_file("ca.crt"), "")?;
    let hash = pki::ca_hash(&ca)?;
    let text = api::objects::join_config(
        &r.input.settings.control_plane_endpoint().to_string(),
        &token.id,
        &hash,
    );
    log::info!(target: "show-join-command", "join a worker with this userdata (kubeboot NodeConfig):");
    for line in text.lines() {
        log::info!(target: "show-join-command", "  {line}");
    }
    Ok(())
}
