//! The commands a kubeadm user reaches for besides init and join:
//! `config print init-defaults|join-defaults` and `config images list`
//! (`completion` and the man page are generated from clap's definition in
//! `cli.rs`).
//!
//! `config print` prints kubeadm v1beta4 documents (as `kubeadm config
//! print`, `cmd/kubeadm/app/cmd/config.go`) holding the defaults *kubeboot*
//! applies — they differ from kubeadm's where kubeboot's do (e.g.
//! `encryptionAlgorithm: ECDSA-P256`, a fixed `kubernetesVersion`). Fields
//! kubeboot does not act on (`timeouts`, `caCertPath`, `imagePullSerial`)
//! are left out, so the output passes `kubeboot config validate` without a
//! warning. The token and addresses are kubeadm's placeholders.

use serde_json::{Value, json};

use crate::config::{self, Settings};
use crate::error::{Error, Result};
use crate::host::HostFacts;

/// kubeadm's placeholder token in printed defaults.
pub const PLACEHOLDER_TOKEN: &str = "abcdef.0123456789abcdef";

/// The format `config print` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrintFormat {
    /// kubeadm.k8s.io/v1beta4 documents.
    Kubeadm,
    /// A kubeboot NodeConfig.
    Kubeboot,
}

fn facts() -> HostFacts {
    HostFacts::given(Some("node".into()), "1.2.3.4".parse().ok(), None)
}

/// The settings kubeboot resolves for an init (or join) config that sets
/// nothing but kubeadm's placeholders.
fn defaults(join: bool) -> Result<Settings> {
    let text = if join {
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: kube-apiserver:6443\n    token: {PLACEHOLDER_TOKEN}\n    unsafeSkipCAVerification: true\n"
        )
    } else {
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n".to_string()
    };
    Ok(config::load(text.as_bytes(), "defaults", &facts())?.settings)
}

fn yaml(v: &Value) -> Result<String> {
    crate::yaml::to_string(v).map_err(|e| Error::Failed(format!("encoding YAML: {e}")))
}

fn node_registration(s: &Settings) -> Value {
    json!({
        "criSocket": s.node.cri_socket,
        "imagePullPolicy": s.node.image_pull_policy,
        "name": s.node.name,
        "taints": Value::Null,
    })
}

/// `config print init-defaults`.
pub fn init_defaults(format: PrintFormat) -> Result<String> {
    let s = defaults(false)?;
    let t = s.bootstrap_tokens.first();
    match format {
        PrintFormat::Kubeadm => {
            let init = json!({
                "apiVersion": "kubeadm.k8s.io/v1beta4",
                "kind": "InitConfiguration",
                "bootstrapTokens": [{
                    "groups": t.map(|t| t.groups.clone()).unwrap_or_default(),
                    "token": PLACEHOLDER_TOKEN,
                    "ttl": crate::api::objects::go_duration(t.map_or(86400, |t| t.ttl_seconds)),
                    "usages": t.map(|t| t.usages.clone()).unwrap_or_default(),
                }],
                "localAPIEndpoint": {
                    "advertiseAddress": s.node.advertise_address.to_string(),
                    "bindPort": s.node.bind_port,
                },
                "nodeRegistration": node_registration(&s),
            });
            let cluster = crate::api::objects::cluster_configuration(&s);
            Ok(format!("{}---\n{}", yaml(&init)?, yaml(&cluster)?))
        }
        PrintFormat::Kubeboot => {
            let c = &s.cluster;
            yaml(&json!({
                "apiVersion": config::raw::API_VERSION,
                "kind": config::raw::KIND,
                "role": "control-plane",
                "cluster": {
                    "name": c.name,
                    "kubernetesVersion": c.kubernetes_version,
                    "serviceSubnet": c.service_subnets.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                    "dnsDomain": c.dns_domain,
                    "imageRepository": c.image_repository,
                    "keyAlgorithm": c.key_algorithm.as_str(),
                    "certificateValidity": crate::api::objects::go_duration(c.cert_validity_seconds),
                    "caCertificateValidity": crate::api::objects::go_duration(c.ca_validity_seconds),
                    "certificatesDir": c.certificates_dir,
                },
                "node": {
                    "name": s.node.name,
                    "advertiseAddress": s.node.advertise_address.to_string(),
                    "bindPort": s.node.bind_port,
                    "criSocket": s.node.cri_socket,
                    "imagePullPolicy": s.node.image_pull_policy,
                },
            }))
        }
    }
}

/// `config print join-defaults`.
pub fn join_defaults(format: PrintFormat) -> Result<String> {
    let s = defaults(true)?;
    match format {
        PrintFormat::Kubeadm => yaml(&json!({
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "kind": "JoinConfiguration",
            "discovery": {
                "bootstrapToken": {
                    "apiServerEndpoint": "kube-apiserver:6443",
                    "token": PLACEHOLDER_TOKEN,
                    "unsafeSkipCAVerification": true,
                },
                "tlsBootstrapToken": PLACEHOLDER_TOKEN,
            },
            "nodeRegistration": node_registration(&s),
        })),
        PrintFormat::Kubeboot => yaml(&json!({
            "apiVersion": config::raw::API_VERSION,
            "kind": config::raw::KIND,
            "role": "worker",
            "server": "kube-apiserver:6443",
            "token": PLACEHOLDER_TOKEN,
            "unsafeSkipCAVerification": true,
            "node": {
                "name": s.node.name,
                "criSocket": s.node.cri_socket,
                "imagePullPolicy": s.node.image_pull_policy,
            },
        })),
    }
}

/// `config images list`: the images a control-plane node with `s` runs, in
/// kubeadm's order (`cmd/kubeadm/app/images/images.go` `GetControlPlaneImages`:
/// the three control-plane components, kube-proxy, CoreDNS, pause, then
/// etcd when it is local); a disabled addon is left out, as kubeadm does.
pub fn images(s: &Settings) -> Vec<String> {
    use crate::manifests::{self, components};
    let mut out: Vec<String> = [
        manifests::KUBE_APISERVER,
        manifests::KUBE_CONTROLLER_MANAGER,
        manifests::KUBE_SCHEDULER,
    ]
    .iter()
    .map(|n| components::control_plane_image(s, n))
    .collect();
    if !s.cluster.proxy.disabled {
        out.push(crate::api::addons::kube_proxy_image(s));
    }
    if !s.cluster.dns.disabled {
        out.push(crate::api::addons::coredns_image(s));
    }
    out.push(crate::kubelet::pause_image(s));
    if s.cluster.etcd.is_local() {
        out.push(components::etcd_image(s));
    }
    out
}

/// The settings `config images list` uses: the config's, else the defaults
/// (with `version` when given).
pub fn images_settings(
    config: Option<&std::path::Path>,
    version: Option<&str>,
) -> Result<Settings> {
    let mut s = match config {
        Some(f) => {
            let facts = HostFacts::detect(std::path::Path::new("/proc"));
            crate::run::load_file(f, &facts)?.settings
        }
        None => defaults(false)?,
    };
    if let Some(v) = version {
        if config::resolve::parse_version(v).is_none() {
            return Err(Error::Invalid(format!(
                "--kubernetes-version: {v:?} is not a version like v1.33.2"
            )));
        }
        s.cluster.kubernetes_version = v.to_string();
    }
    Ok(s)
}
