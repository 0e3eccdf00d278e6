//! The raw configuration layer: kubeboot's own NodeConfig format, where every
//! field is optional. kubeadm documents and kernel arguments are mapped into
//! the same shape, so defaults and validation live in one place
//! ([`crate::config::resolve`]).
//!
//! The format (apiVersion `kubeboot.dev/v1alpha1`, kind `NodeConfig`) is
//! designed so that a worker join fits in five lines:
//!
//! ```yaml
//! apiVersion: kubeboot.dev/v1alpha1
//! role: worker
//! server: 10.0.0.10:6443
//! token: abcdef.0123456789abcdef
//! caCertHash: sha256:<64 hex>
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secret::Secret;

/// kubeboot's config apiVersion.
pub const API_VERSION: &str = "kubeboot.dev/v1alpha1";
/// kubeboot's config kind.
pub const KIND: &str = "NodeConfig";

/// A kubeboot NodeConfig document; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfig {
    /// Must be `kubeboot.dev/v1alpha1` when given.
    pub api_version: Option<String>,
    /// Must be `NodeConfig` when given.
    pub kind: Option<String>,
    /// `control-plane` or `worker`.
    pub role: Option<String>,
    /// API server to join, `host:port`.
    pub server: Option<String>,
    /// Bootstrap token `<id>.<secret>` used to join.
    pub token: Option<Secret>,
    /// One CA public key pin, `sha256:<hex>`.
    pub ca_cert_hash: Option<String>,
    /// Several pins (any may match).
    pub ca_cert_hashes: Option<Vec<String>>,
    /// Join without pinning the CA (insecure).
    #[serde(rename = "unsafeSkipCAVerification")]
    pub unsafe_skip_ca_verification: Option<bool>,
    /// Key for the kubeadm-certs secret (64 hex characters).
    pub certificate_key: Option<Secret>,
    /// Cluster-wide settings.
    pub cluster: Option<RawCluster>,
    /// This node.
    pub node: Option<RawNode>,
    /// Bootstrap tokens to create on an init node.
    pub bootstrap_tokens: Option<Vec<RawToken>>,
    /// CA material supplied inline.
    pub pki: Option<RawPki>,
    /// Phases to skip.
    pub skip_phases: Option<Vec<String>>,
    /// Deadlines of the waits (kubeadm v1beta4 `timeouts`, same names).
    pub timeouts: Option<RawTimeouts>,
    /// A random delay from zero to this (Go duration) before the first
    /// request of a join, so a fleet booted at once spreads its load.
    pub start_spread: Option<String>,
    /// kubeadm's patches: `directory` holds `target[suffix][+type].{json,yaml}` files.
    pub patches: Option<RawPatches>,
}

/// kubeadm's `patches` (same name and meaning in a NodeConfig).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawPatches {
    /// The directory of patch files (a path on this machine, not under `--root`).
    pub directory: Option<String>,
}

/// A duration field as text: a Go duration string, or a bare number (`0`,
/// which YAML reads as an integer) as its digits.
pub(crate) fn duration_text<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        N(u64),
    }
    Ok(Option::<Text>::deserialize(d)?.map(|t| match t {
        Text::S(s) => s,
        Text::N(n) => n.to_string(),
    }))
}

/// Deadlines of the waits, as Go durations (`5m`, `4m0s`); `0` means no
/// deadline. The names and meanings are kubeadm v1beta4's `Timeouts`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTimeouts {
    /// Validating the API server's identity (token discovery).
    #[serde(default, deserialize_with = "duration_text")]
    pub discovery: Option<String>,
    /// The kubelet's TLS bootstrap (kubelet.conf written).
    #[serde(default, deserialize_with = "duration_text")]
    pub tls_bootstrap: Option<String>,
    /// The kubelet's healthz.
    #[serde(default, deserialize_with = "duration_text")]
    pub kubelet_health_check: Option<String>,
    /// Each control-plane component's health endpoint.
    #[serde(default, deserialize_with = "duration_text")]
    pub control_plane_component_health_check: Option<String>,
    /// One etcd request (with its retries).
    #[serde(rename = "etcdAPICall")]
    #[serde(default, deserialize_with = "duration_text")]
    pub etcd_api_call: Option<String>,
    /// One API server request (with its retries).
    #[serde(rename = "kubernetesAPICall")]
    #[serde(default, deserialize_with = "duration_text")]
    pub kubernetes_api_call: Option<String>,
}

/// Cluster-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawCluster {
    /// Cluster name.
    pub name: Option<String>,
    /// `v1.x.y`.
    pub kubernetes_version: Option<String>,
    /// `host[:port]`.
    pub control_plane_endpoint: Option<String>,
    /// CIDR, or two comma-separated CIDRs for dual-stack.
    pub pod_subnet: Option<String>,
    /// CIDR, or two comma-separated CIDRs for dual-stack.
    pub service_subnet: Option<String>,
    /// DNS domain.
    pub dns_domain: Option<String>,
    /// Image repository.
    pub image_repository: Option<String>,
    /// Extra API server SANs.
    #[serde(rename = "certSANs")]
    pub cert_sans: Option<Vec<String>>,
    /// `ECDSA-P256` (default) or `ECDSA-P384`.
    pub key_algorithm: Option<String>,
    /// Leaf validity as a Go duration (`8760h`).
    pub certificate_validity: Option<String>,
    /// CA validity as a Go duration (`87600h`).
    pub ca_certificate_validity: Option<String>,
    /// Certificate directory.
    pub certificates_dir: Option<String>,
    /// etcd.
    pub etcd: Option<RawEtcd>,
    /// kube-apiserver.
    pub api_server: Option<RawComponent>,
    /// kube-controller-manager.
    pub controller_manager: Option<RawComponent>,
    /// kube-scheduler.
    pub scheduler: Option<RawComponent>,
    /// Feature gates.
    pub feature_gates: Option<BTreeMap<String, bool>>,
    /// The CoreDNS addon.
    pub dns: Option<RawDns>,
    /// The kube-proxy addon.
    pub proxy: Option<RawProxy>,
}

/// The CoreDNS addon (kubeadm's `dns`): skip it, or pull another image.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawDns {
    /// Do not install CoreDNS.
    pub disabled: Option<bool>,
    /// Repository of the CoreDNS image (default: the cluster's).
    pub image_repository: Option<String>,
    /// Tag of the CoreDNS image (default: the version table's).
    pub image_tag: Option<String>,
}

/// The kube-proxy addon (kubeadm's `proxy`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawProxy {
    /// Do not install kube-proxy.
    pub disabled: Option<bool>,
}

/// etcd settings: local (default) or external.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawEtcd {
    /// Local data directory.
    pub data_dir: Option<String>,
    /// Extra etcd server cert SANs.
    #[serde(rename = "serverCertSANs")]
    pub server_cert_sans: Option<Vec<String>>,
    /// Extra etcd peer cert SANs.
    #[serde(rename = "peerCertSANs")]
    pub peer_cert_sans: Option<Vec<String>>,
    /// Image repository for etcd.
    pub image_repository: Option<String>,
    /// Image tag for etcd.
    pub image_tag: Option<String>,
    /// Extra args for local etcd.
    pub extra_args: Option<RawArgs>,
    /// Extra env for local etcd.
    pub extra_envs: Option<Vec<RawEnv>>,
    /// External etcd.
    pub external: Option<RawExternalEtcd>,
}

/// An external etcd cluster.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawExternalEtcd {
    /// Client URLs.
    pub endpoints: Option<Vec<String>>,
    /// CA file on the node.
    pub ca_file: Option<String>,
    /// Client certificate file on the node.
    pub cert_file: Option<String>,
    /// Client key file on the node.
    pub key_file: Option<String>,
}

/// Per-component customisation.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawComponent {
    /// Extra flags: a mapping, or a list of `{name, value}`.
    pub extra_args: Option<RawArgs>,
    /// Extra hostPath volumes.
    pub extra_volumes: Option<Vec<RawVolume>>,
    /// Extra environment variables.
    pub extra_envs: Option<Vec<RawEnv>>,
}

/// Flags as a mapping (kubeadm v1beta3 style) or an ordered list (v1beta4).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawArgs {
    /// `{name: value}`.
    Map(BTreeMap<String, String>),
    /// `[{name, value}]`.
    List(Vec<RawArg>),
}

/// One `{name, value}` flag.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArg {
    /// Flag name without dashes.
    pub name: String,
    /// Flag value.
    pub value: String,
}

/// A hostPath volume.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawVolume {
    /// Volume name.
    pub name: String,
    /// Host path.
    pub host_path: String,
    /// Container path.
    pub mount_path: String,
    /// Read-only mount.
    #[serde(default)]
    pub read_only: bool,
    /// hostPath type.
    #[serde(default)]
    pub path_type: String,
}

/// An environment variable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnv {
    /// Name.
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// This node.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawNode {
    /// Node name.
    pub name: Option<String>,
    /// Advertise address (an IP).
    pub advertise_address: Option<String>,
    /// API server bind port.
    pub bind_port: Option<u16>,
    /// CRI socket.
    pub cri_socket: Option<String>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Taints; an empty list means none (even on a control plane).
    pub taints: Option<Vec<RawTaint>>,
    /// Extra kubelet flags.
    pub kubelet_extra_args: Option<RawArgs>,
    /// Preflight errors to ignore.
    pub ignore_preflight_errors: Option<Vec<String>>,
    /// Image pull policy.
    pub image_pull_policy: Option<String>,
}

/// A taint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTaint {
    /// Key.
    pub key: String,
    /// Value.
    pub value: Option<String>,
    /// Effect.
    pub effect: String,
}

/// A bootstrap token to create.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// `<id>.<secret>`; generated when absent.
    pub token: Option<Secret>,
    /// Description.
    pub description: Option<String>,
    /// TTL as a Go duration; `0` = never expires.
    pub ttl: Option<String>,
    /// Usages.
    pub usages: Option<Vec<String>>,
    /// Groups.
    pub groups: Option<Vec<String>>,
}

/// Inline CA material.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawPki {
    /// Cluster CA.
    pub ca: Option<RawCa>,
    /// Front-proxy CA.
    pub front_proxy_ca: Option<RawCa>,
    /// etcd CA.
    pub etcd_ca: Option<RawCa>,
}

/// One CA, PEM.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCa {
    /// Certificate PEM.
    pub cert: Option<String>,
    /// Private key PEM.
    pub key: Option<Secret>,
}
