//! The resolved, defaulted and validated node configuration (`Settings`).
//!
//! Every renderer and phase reads this type and nothing else. It is built
//! only by [`crate::config::resolve`], which applies every default in one
//! place and validates cross-field rules, so a `Settings` value is always
//! internally consistent.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use super::token::BootstrapToken;
use crate::secret::Secret;

/// A closed set of strings the configuration accepts, as an enum: parsed
/// once by `resolve` (`parse` is `None` for any other string), printed and
/// serialized as the string.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in the documented order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The value as the configuration spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value spelled `s`, if it is one.
            pub fn parse(s: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// What this node does in the cluster: its role as the status file and
    /// `config show` name it (the config's `role` plus whether it joins).
    Mode {
        /// First control-plane node: `kubeadm init`.
        Init = "init",
        /// Additional control-plane node: `kubeadm join --control-plane`.
        JoinControlPlane = "join-control-plane",
        /// Worker node: `kubeadm join`.
        JoinWorker = "join-worker",
    }
}

impl Mode {
    /// True for both control-plane modes.
    pub fn is_control_plane(self) -> bool {
        matches!(self, Mode::Init | Mode::JoinControlPlane)
    }
    /// True for both join modes.
    pub fn is_join(self) -> bool {
        matches!(self, Mode::JoinControlPlane | Mode::JoinWorker)
    }
}

/// Private key algorithm for every key kubeboot generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyAlgorithm {
    /// ECDSA over NIST P-256 with SHA-256 (the default).
    #[serde(rename = "ECDSA-P256")]
    EcdsaP256,
    /// ECDSA over NIST P-384 with SHA-384.
    #[serde(rename = "ECDSA-P384")]
    EcdsaP384,
    /// RSA 2048 bits (kubeadm's default), SHA-256 signatures.
    #[serde(rename = "RSA-2048")]
    Rsa2048,
    /// RSA 3072 bits.
    #[serde(rename = "RSA-3072")]
    Rsa3072,
    /// RSA 4096 bits.
    #[serde(rename = "RSA-4096")]
    Rsa4096,
}

impl KeyAlgorithm {
    /// The spelling kubeadm uses in `encryptionAlgorithm`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
            KeyAlgorithm::EcdsaP384 => "ECDSA-P384",
            KeyAlgorithm::Rsa2048 => "RSA-2048",
            KeyAlgorithm::Rsa3072 => "RSA-3072",
            KeyAlgorithm::Rsa4096 => "RSA-4096",
        }
    }

    /// Every algorithm, as `encryptionAlgorithm` spells it.
    pub const ALL: [KeyAlgorithm; 5] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ];

    /// The RSA modulus size (0 for ECDSA).
    pub fn rsa_bits(self) -> usize {
        match self {
            KeyAlgorithm::Rsa2048 => 2048,
            KeyAlgorithm::Rsa3072 => 3072,
            KeyAlgorithm::Rsa4096 => 4096,
            _ => 0,
        }
    }
}

/// An API server endpoint: a host (IP or DNS name) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// IP literal (without brackets) or DNS name.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// `https://host:port`, with IPv6 literals bracketed.
    pub fn url(&self) -> String {
        format!("https://{}", self)
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

string_enum! {
    /// What a bootstrap token may be used for.
    TokenUsage {
        /// Signing the cluster-info ConfigMap.
        Signing = "signing",
        /// Authenticating as a bootstrapping kubelet.
        Authentication = "authentication",
    }
}

string_enum! {
    /// A taint's effect.
    TaintEffect {
        /// `NoSchedule`.
        NoSchedule = "NoSchedule",
        /// `PreferNoSchedule`.
        PreferNoSchedule = "PreferNoSchedule",
        /// `NoExecute`.
        NoExecute = "NoExecute",
    }
}

string_enum! {
    /// The static pods' image pull policy.
    PullPolicy {
        /// `Always`.
        Always = "Always",
        /// `IfNotPresent` (the default).
        IfNotPresent = "IfNotPresent",
        /// `Never`.
        Never = "Never",
    }
}

/// A bootstrap token to create on an init node.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapTokenSpec {
    /// The token; generated at runtime when the config gives none.
    pub token: Option<BootstrapToken>,
    /// Human description.
    pub description: Option<String>,
    /// Time to live in seconds (0 = never expires). Default 24h.
    pub ttl_seconds: u64,
    /// What it may be used for.
    pub usages: Vec<TokenUsage>,
    /// Extra groups; default `system:bootstrappers:kubeadm:default-node-token`.
    pub groups: Vec<String>,
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Optional value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What it does.
    pub effect: TaintEffect,
}

/// One `--name=value` argument; order is kept and duplicates are allowed
/// (kubeadm v1beta4 semantics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arg {
    /// Flag name without dashes.
    pub name: String,
    /// Flag value.
    pub value: String,
}

/// A hostPath volume added to a control-plane component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtraVolume {
    /// Volume name.
    pub name: String,
    /// Path on the host.
    pub host_path: String,
    /// Path in the container.
    pub mount_path: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// hostPath type (`DirectoryOrCreate`, ...), empty for none.
    pub path_type: String,
}

/// An environment variable for a control-plane component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Variable value.
    pub value: String,
}

/// Per-component customisation (apiServer, controllerManager, scheduler, etcd).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// Extra flags, overriding kubeboot's defaults of the same name.
    pub extra_args: Vec<Arg>,
    /// Extra hostPath volumes.
    pub extra_volumes: Vec<ExtraVolume>,
    /// Extra environment variables.
    pub extra_envs: Vec<EnvVar>,
}

/// Where etcd runs.
#[derive(Debug, Clone, Serialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "mode"
)]
pub enum Etcd {
    /// Stacked etcd as a static pod on each control-plane node.
    Local {
        /// Data directory (default `/var/lib/etcd`).
        data_dir: String,
        /// Extra SANs for etcd/server.crt.
        #[serde(rename = "serverCertSANs")]
        server_cert_sans: Vec<String>,
        /// Extra SANs for etcd/peer.crt.
        #[serde(rename = "peerCertSANs")]
        peer_cert_sans: Vec<String>,
        /// Image repository override.
        image_repository: Option<String>,
        /// Image tag override.
        image_tag: Option<String>,
    },
    /// An etcd cluster run elsewhere.
    External {
        /// Client URLs.
        endpoints: Vec<String>,
        /// CA file path on the node.
        ca_file: String,
        /// Client certificate path on the node.
        cert_file: String,
        /// Client key path on the node.
        key_file: String,
    },
}

impl Etcd {
    /// True for stacked etcd.
    pub fn is_local(&self) -> bool {
        matches!(self, Etcd::Local { .. })
    }
}

/// PEM material supplied by the user for one CA (inline or by file).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CaMaterial {
    /// Certificate PEM.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "present")]
    pub cert_pem: Option<String>,
    /// Private key PEM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_pem: Option<Secret>,
}

fn present<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("<provided>"),
        None => s.serialize_none(),
    }
}

/// User-supplied CA material, by CA.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuppliedCas {
    /// The cluster CA (`ca.crt`/`ca.key`).
    pub ca: CaMaterial,
    /// `front-proxy-ca`.
    pub front_proxy_ca: CaMaterial,
    /// `etcd/ca`.
    pub etcd_ca: CaMaterial,
}

/// Cluster-wide settings (kubeadm's ClusterConfiguration).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// Cluster name (default `kubernetes`).
    pub name: String,
    /// Kubernetes version, `v1.x.y`.
    pub kubernetes_version: String,
    /// Shared endpoint for the control plane, if any.
    pub control_plane_endpoint: Option<Endpoint>,
    /// Pod subnets (may be empty; dual-stack allowed).
    pub pod_subnets: Vec<IpNet>,
    /// Service subnets (first one holds the API server's virtual IP).
    pub service_subnets: Vec<IpNet>,
    /// DNS domain (default `cluster.local`).
    pub dns_domain: String,
    /// Image repository (default `registry.k8s.io`).
    pub image_repository: String,
    /// Extra SANs for the API server certificate.
    #[serde(rename = "certSANs")]
    pub cert_sans: Vec<String>,
    /// Key algorithm for generated keys.
    pub key_algorithm: KeyAlgorithm,
    /// Leaf certificate validity in seconds (default 1 year).
    pub cert_validity_seconds: u64,
    /// CA certificate validity in seconds (default 10 years).
    pub ca_validity_seconds: u64,
    /// Certificate directory (default `/etc/kubernetes/pki`).
    pub certificates_dir: String,
    /// etcd topology.
    pub etcd: Etcd,
    /// kube-apiserver customisation.
    pub api_server: Component,
    /// kube-controller-manager customisation.
    pub controller_manager: Component,
    /// kube-scheduler customisation.
    pub scheduler: Component,
    /// Local etcd customisation (args, envs).
    pub etcd_component: Component,
    /// Feature gates passed to components.
    pub feature_gates: Vec<(String, bool)>,
    /// The CoreDNS addon.
    pub dns: Dns,
    /// The kube-proxy addon.
    pub proxy: Proxy,
}

/// The CoreDNS addon (kubeadm's `ClusterConfiguration.dns`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dns {
    /// The `addon` phase does not install CoreDNS.
    pub disabled: bool,
    /// Repository of the CoreDNS image, instead of the cluster's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_repository: Option<String>,
    /// Tag of the CoreDNS image, instead of the version table's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
}

/// The kube-proxy addon (kubeadm's `ClusterConfiguration.proxy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Proxy {
    /// The `addon` phase does not install kube-proxy.
    pub disabled: bool,
}

/// Settings for this node (kubeadm's nodeRegistration + localAPIEndpoint).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Node name (default: the hostname, lowercased).
    pub name: String,
    /// Address the API server advertises (default: the default-route interface's address).
    pub advertise_address: IpAddr,
    /// API server bind port (default 6443).
    pub bind_port: u16,
    /// CRI socket URL.
    pub cri_socket: String,
    /// Node labels to apply.
    pub labels: Vec<(String, String)>,
    /// Node taints; control-plane default is the NoSchedule control-plane taint.
    pub taints: Vec<Taint>,
    /// Extra kubelet flags.
    pub kubelet_extra_args: Vec<Arg>,
    /// Preflight checks to ignore (kubeadm's names, or `all`).
    pub ignore_preflight_errors: Vec<String>,
    /// Image pull policy.
    pub image_pull_policy: PullPolicy,
}

/// How a joining node finds and trusts the cluster.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Join {
    /// API server to discover through.
    pub api_server_endpoint: Endpoint,
    /// Bootstrap token used for discovery and TLS bootstrap.
    pub token: BootstrapToken,
    /// Pins of the cluster CA's public key (`sha256:<hex>`).
    pub ca_cert_hashes: Vec<String>,
    /// Join without pinning (insecure; explicit opt-in only).
    pub unsafe_skip_ca_verification: bool,
    /// Key that decrypts the `kubeadm-certs` secret (control-plane join).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_key: Option<Secret>,
}

/// Deadlines of the waits as the config gives them (kubeadm v1beta4
/// `timeouts` or NodeConfig `timeouts`). `None`: not given, the default
/// applies; `Some(Duration::MAX)`: `0`, no deadline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    // Shown by `config show` as `"300s"` or `"none"` (no deadline).
    /// Token discovery.
    #[serde(serialize_with = "ser_deadline")]
    pub discovery: Option<Duration>,
    /// The kubelet's TLS bootstrap.
    #[serde(serialize_with = "ser_deadline")]
    pub tls_bootstrap: Option<Duration>,
    /// The kubelet's healthz.
    #[serde(serialize_with = "ser_deadline")]
    pub kubelet_health_check: Option<Duration>,
    /// Each control-plane component's health.
    #[serde(serialize_with = "ser_deadline")]
    pub control_plane_component_health_check: Option<Duration>,
    /// One etcd request with its retries.
    #[serde(rename = "etcdAPICall")]
    #[serde(serialize_with = "ser_deadline")]
    pub etcd_api_call: Option<Duration>,
    /// One API server request with its retries.
    #[serde(rename = "kubernetesAPICall")]
    #[serde(serialize_with = "ser_deadline")]
    pub kubernetes_api_call: Option<Duration>,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}s", d.as_secs()))
}

fn ser_deadline<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        None => s.serialize_none(),
        Some(d) if *d == Duration::MAX => s.serialize_str("none"),
        Some(d) => s.serialize_str(&format!("{}s", d.as_secs())),
    }
}

/// A single warning found while reading the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Field path, e.g. `ClusterConfiguration.dns.imageTag`.
    pub field: String,
    /// What is wrong or ignored.
    pub message: String,
}

/// Phase names kubeboot used before it took kubeadm's: `(old, kubeadm's)`.
/// The old name still works (skipPhases, --skip-phases, `phase NAME`), with
/// a warning: kubeadm's join calls the wait for the TLS bootstrap
/// `kubelet-wait-bootstrap` (`cmd/kubeadm/app/cmd/phases/join/kubelet.go`).
pub const PHASE_ALIASES: &[(&str, &str)] = &[("wait-bootstrap", "kubelet-wait-bootstrap")];

/// `name`, or kubeadm's name for it when it is an old alias.
pub fn phase_alias(name: &str) -> Option<&'static str> {
    PHASE_ALIASES
        .iter()
        .find(|(old, _)| *old == name)
        .map(|(_, new)| *new)
}

/// The complete, validated node configuration.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// The node's role.
    pub mode: Mode,
    /// Cluster-wide settings.
    pub cluster: Cluster,
    /// This node.
    pub node: Node,
    /// Join material (join modes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<Join>,
    /// Bootstrap tokens to create (init only).
    pub bootstrap_tokens: Vec<BootstrapTokenSpec>,
    /// Certificate key for uploading certs (init, optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_key: Option<Secret>,
    /// CA material supplied inline in the config.
    pub supplied_cas: SuppliedCas,
    /// Phases the config asks to skip.
    pub skip_phases: Vec<String>,
    /// Deadlines the config gives for the waits (unset: the defaults of
    /// `phases::Budgets`).
    pub timeouts: Timeouts,
    /// The largest random delay before a join's first request (zero: none).
    #[serde(serialize_with = "ser_secs")]
    pub start_spread: Duration,
    /// Component configurations given next to the node configuration
    /// (init only; a join takes them from the cluster, as kubeadm's does).
    pub components: ComponentConfigs,
    /// kubeadm's patches, read from `patches.directory` (or `--patches`).
    pub patches: super::patches::Patches,
    /// Which cluster-wide settings the configuration gave (a join keeps
    /// those over the cluster's kube-system/kubeadm-config).
    pub given: Given,
    /// Warnings gathered while reading (unknown fields, ignored values).
    pub warnings: Vec<Warning>,
}

/// Which cluster-wide settings the node's configuration gave itself (a
/// join keeps those over the cluster's).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Given {
    /// `kubernetesVersion`.
    pub kubernetes_version: bool,
    /// `imageRepository`.
    pub image_repository: bool,
    /// `networking.dnsDomain`.
    pub dns_domain: bool,
    /// `networking.serviceSubnet`.
    pub service_subnet: bool,
    /// `networking.podSubnet`.
    pub pod_subnet: bool,
    /// `featureGates`.
    pub feature_gates: bool,
}

/// The user's `KubeletConfiguration` and `KubeProxyConfiguration` documents,
/// checked against their field tables (`config::component`), as JSON; the
/// renderers merge them over kubeadm's defaults.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentConfigs {
    /// The KubeletConfiguration document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<serde_json::Value>,
    /// The KubeProxyConfiguration document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kube_proxy: Option<serde_json::Value>,
}

impl Settings {
    /// The first IP of the first service subnet (the `kubernetes` service VIP).
    pub fn api_server_service_ip(&self) -> Option<IpAddr> {
        let net = self.cluster.service_subnets.first()?;
        nth_ip(net, 1)
    }

    /// The tenth IP of the first service subnet (cluster DNS).
    pub fn cluster_dns_ip(&self) -> Option<IpAddr> {
        let net = self.cluster.service_subnets.first()?;
        nth_ip(net, 10)
    }

    /// The local API endpoint: advertise address and bind port.
    pub fn local_endpoint(&self) -> Endpoint {
        Endpoint {
            host: self.node.advertise_address.to_string(),
            port: self.node.bind_port,
        }
    }

    /// The control-plane endpoint, or the local endpoint when none is set.
    pub fn control_plane_endpoint(&self) -> Endpoint {
        self.cluster
            .control_plane_endpoint
            .clone()
            .unwrap_or_else(|| self.local_endpoint())
    }
}

/// The `n`th address of a network (0 = the network address itself).
pub fn nth_ip(net: &IpNet, n: u128) -> Option<IpAddr> {
    match net {
        IpNet::V4(v4) => {
            let base = u32::from(v4.network()) as u128;
            let ip = base.checked_add(n)?;
            if ip > u128::from(u32::from(v4.broadcast())) {
                return None;
            }
            Some(IpAddr::V4((ip as u32).into()))
        }
        IpNet::V6(v6) => {
            let base = u128::from(v6.network());
            let ip = base.checked_add(n)?;
            if ip > u128::from(v6.broadcast()) {
                return None;
            }
            Some(IpAddr::V6(ip.into()))
        }
    }
}
