//! kubeadm's config API (`kubeadm.k8s.io/v1beta3` and `v1beta4`):
//! InitConfiguration, ClusterConfiguration and JoinConfiguration, mapped onto
//! kubeboot's raw layer.
//!
//! The typed structs below hold exactly the fields kubeboot acts on. Every
//! other field in the user's document is reported as a warning ("not acted
//! on"), never dropped silently. v1beta3's map-style `extraArgs` and
//! v1beta4's `{name, value}` lists are both accepted.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::raw::{
    NodeConfig, RawArgs, RawCluster, RawComponent, RawDns, RawEnv, RawEtcd, RawExternalEtcd,
    RawNode, RawProxy, RawTaint, RawTimeouts, RawToken, RawVolume,
};
use crate::secret::Secret;

/// The kubeadm API group.
pub const GROUP: &str = "kubeadm.k8s.io";
/// Versions kubeboot reads.
pub const VERSIONS: [&str; 2] = ["kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4"];

/// `InitConfiguration`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitConfiguration {
    /// apiVersion.
    pub api_version: Option<String>,
    /// kind.
    pub kind: Option<String>,
    /// Tokens to create.
    pub bootstrap_tokens: Option<Vec<KubeadmToken>>,
    /// This node.
    pub node_registration: Option<NodeRegistration>,
    /// Local API endpoint.
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: Option<ApiEndpoint>,
    /// Key for upload-certs.
    pub certificate_key: Option<Secret>,
    /// Phases to skip.
    pub skip_phases: Option<Vec<String>>,
    /// v1beta4 `timeouts`.
    pub timeouts: Option<KubeadmTimeouts>,
}

/// v1beta4 `timeouts` (kubernetes/kubernetes
/// `cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go`, `Timeouts`): the
/// fields kubeboot honours; `upgradeManifests` is reported as not acted on.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeadmTimeouts {
    /// Control-plane component health (kubeadm default 4m).
    #[serde(default, deserialize_with = "super::raw::duration_text")]
    pub control_plane_component_health_check: Option<String>,
    /// Kubelet health (4m).
    #[serde(default, deserialize_with = "super::raw::duration_text")]
    pub kubelet_health_check: Option<String>,
    /// One API server request (1m).
    #[serde(rename = "kubernetesAPICall")]
    #[serde(default, deserialize_with = "super::raw::duration_text")]
    pub kubernetes_api_call: Option<String>,
    /// One etcd request (2m).
    #[serde(rename = "etcdAPICall")]
    #[serde(default, deserialize_with = "super::raw::duration_text")]
    pub etcd_api_call: Option<String>,
    /// TLS bootstrap of a joining node (5m).
    #[serde(default, deserialize_with = "super::raw::duration_text")]
    pub tls_bootstrap: Option<String>,
    /// Discovery of a joining node (5m).
    #[serde(default, deserialize_with = "super::raw::duration_text")]
    pub discovery: Option<String>,
}

impl From<KubeadmTimeouts> for RawTimeouts {
    fn from(t: KubeadmTimeouts) -> Self {
        RawTimeouts {
            discovery: t.discovery,
            tls_bootstrap: t.tls_bootstrap,
            kubelet_health_check: t.kubelet_health_check,
            control_plane_component_health_check: t.control_plane_component_health_check,
            etcd_api_call: t.etcd_api_call,
            kubernetes_api_call: t.kubernetes_api_call,
        }
    }
}

/// A kubeadm bootstrap token.
#[derive(Debug, Default, Deserialize)]
pub struct KubeadmToken {
    /// `<id>.<secret>`.
    pub token: Option<Secret>,
    /// Description.
    pub description: Option<String>,
    /// TTL (Go duration).
    pub ttl: Option<String>,
    /// Usages.
    pub usages: Option<Vec<String>>,
    /// Groups.
    pub groups: Option<Vec<String>>,
}

/// `nodeRegistration`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRegistration {
    /// Node name.
    pub name: Option<String>,
    /// CRI socket.
    pub cri_socket: Option<String>,
    /// Taints (nil = default, [] = none).
    pub taints: Option<Vec<RawTaint>>,
    /// Extra kubelet flags.
    pub kubelet_extra_args: Option<RawArgs>,
    /// Preflight errors to ignore.
    pub ignore_preflight_errors: Option<Vec<String>>,
    /// Image pull policy.
    pub image_pull_policy: Option<String>,
}

/// `localAPIEndpoint`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiEndpoint {
    /// Advertise address.
    pub advertise_address: Option<String>,
    /// Bind port.
    pub bind_port: Option<u16>,
}

/// `ClusterConfiguration`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfiguration {
    /// apiVersion.
    pub api_version: Option<String>,
    /// kind.
    pub kind: Option<String>,
    /// etcd.
    pub etcd: Option<KubeadmEtcd>,
    /// networking.
    pub networking: Option<Networking>,
    /// Kubernetes version.
    pub kubernetes_version: Option<String>,
    /// Control-plane endpoint.
    pub control_plane_endpoint: Option<String>,
    /// API server.
    pub api_server: Option<KubeadmApiServer>,
    /// Controller manager.
    pub controller_manager: Option<KubeadmComponent>,
    /// Scheduler.
    pub scheduler: Option<KubeadmComponent>,
    /// Certificate directory.
    pub certificates_dir: Option<String>,
    /// Image repository.
    pub image_repository: Option<String>,
    /// Feature gates.
    pub feature_gates: Option<BTreeMap<String, bool>>,
    /// Cluster name.
    pub cluster_name: Option<String>,
    /// Key algorithm (v1beta4).
    pub encryption_algorithm: Option<String>,
    /// Leaf validity (v1beta4).
    pub certificate_validity_period: Option<String>,
    /// CA validity (v1beta4).
    pub ca_certificate_validity_period: Option<String>,
    /// The CoreDNS addon (`disabled` is v1beta4 only).
    pub dns: Option<KubeadmDns>,
    /// The kube-proxy addon (v1beta4 only).
    pub proxy: Option<KubeadmProxy>,
}

/// `dns`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeadmDns {
    /// Image repository override.
    pub image_repository: Option<String>,
    /// Image tag override.
    pub image_tag: Option<String>,
    /// Skip CoreDNS (v1beta4).
    pub disabled: Option<bool>,
}

/// `proxy` (v1beta4).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeadmProxy {
    /// Skip kube-proxy.
    pub disabled: Option<bool>,
}

/// `etcd`.
#[derive(Debug, Default, Deserialize)]
pub struct KubeadmEtcd {
    /// Local etcd.
    pub local: Option<KubeadmLocalEtcd>,
    /// External etcd.
    pub external: Option<RawExternalEtcdKubeadm>,
}

/// `etcd.local`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeadmLocalEtcd {
    /// Image repository.
    pub image_repository: Option<String>,
    /// Image tag.
    pub image_tag: Option<String>,
    /// Data directory.
    pub data_dir: Option<String>,
    /// Extra args.
    pub extra_args: Option<RawArgs>,
    /// Extra env.
    pub extra_envs: Option<Vec<RawEnv>>,
    /// Server cert SANs.
    #[serde(rename = "serverCertSANs")]
    pub server_cert_sans: Option<Vec<String>>,
    /// Peer cert SANs.
    #[serde(rename = "peerCertSANs")]
    pub peer_cert_sans: Option<Vec<String>>,
}

/// `etcd.external`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawExternalEtcdKubeadm {
    /// Endpoints.
    pub endpoints: Option<Vec<String>>,
    /// CA file.
    pub ca_file: Option<String>,
    /// Cert file.
    pub cert_file: Option<String>,
    /// Key file.
    pub key_file: Option<String>,
}

/// `networking`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking {
    /// Service subnet.
    pub service_subnet: Option<String>,
    /// Pod subnet.
    pub pod_subnet: Option<String>,
    /// DNS domain.
    pub dns_domain: Option<String>,
}

/// `apiServer`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeadmApiServer {
    /// Extra args.
    pub extra_args: Option<RawArgs>,
    /// Extra volumes.
    pub extra_volumes: Option<Vec<RawVolume>>,
    /// Extra env.
    pub extra_envs: Option<Vec<RawEnv>>,
    /// Extra SANs.
    #[serde(rename = "certSANs")]
    pub cert_sans: Option<Vec<String>>,
}

/// `controllerManager` / `scheduler`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeadmComponent {
    /// Extra args.
    pub extra_args: Option<RawArgs>,
    /// Extra volumes.
    pub extra_volumes: Option<Vec<RawVolume>>,
    /// Extra env.
    pub extra_envs: Option<Vec<RawEnv>>,
}

/// `JoinConfiguration`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinConfiguration {
    /// apiVersion.
    pub api_version: Option<String>,
    /// kind.
    pub kind: Option<String>,
    /// This node.
    pub node_registration: Option<NodeRegistration>,
    /// Discovery.
    pub discovery: Option<Discovery>,
    /// Control-plane join.
    pub control_plane: Option<JoinControlPlane>,
    /// Phases to skip.
    pub skip_phases: Option<Vec<String>>,
    /// v1beta4 `timeouts`.
    pub timeouts: Option<KubeadmTimeouts>,
}

/// `discovery`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    /// Token discovery.
    pub bootstrap_token: Option<DiscoveryToken>,
    /// File discovery (not supported; reported as an error).
    pub file: Option<serde_norway::Value>,
    /// TLS bootstrap token (must equal the discovery token when given).
    pub tls_bootstrap_token: Option<Secret>,
}

/// `discovery.bootstrapToken`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryToken {
    /// Token.
    pub token: Option<Secret>,
    /// API server endpoint.
    pub api_server_endpoint: Option<String>,
    /// CA pins.
    pub ca_cert_hashes: Option<Vec<String>>,
    /// Skip pinning.
    #[serde(rename = "unsafeSkipCAVerification")]
    pub unsafe_skip_ca_verification: Option<bool>,
}

/// `controlPlane` in JoinConfiguration.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinControlPlane {
    /// Local API endpoint.
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: Option<ApiEndpoint>,
    /// Certificate key.
    pub certificate_key: Option<Secret>,
}

/// The `timeouts` fields: kubeboot's canonical name and kubeadm's.
pub const TIMEOUT_FIELDS: [(&str, &str); 6] = [
    ("timeouts.discovery", "discovery"),
    ("timeouts.tlsBootstrap", "tlsBootstrap"),
    ("timeouts.kubeletHealthCheck", "kubeletHealthCheck"),
    (
        "timeouts.controlPlaneComponentHealthCheck",
        "controlPlaneComponentHealthCheck",
    ),
    ("timeouts.etcdAPICall", "etcdAPICall"),
    ("timeouts.kubernetesAPICall", "kubernetesAPICall"),
];

/// The field names to use in messages for values that came from kubeadm.
pub fn names(init: bool, join: bool) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = [
        ("cluster.name", "ClusterConfiguration.clusterName"),
        (
            "cluster.kubernetesVersion",
            "ClusterConfiguration.kubernetesVersion",
        ),
        (
            "cluster.controlPlaneEndpoint",
            "ClusterConfiguration.controlPlaneEndpoint",
        ),
        (
            "cluster.podSubnet",
            "ClusterConfiguration.networking.podSubnet",
        ),
        (
            "cluster.serviceSubnet",
            "ClusterConfiguration.networking.serviceSubnet",
        ),
        (
            "cluster.dnsDomain",
            "ClusterConfiguration.networking.dnsDomain",
        ),
        (
            "cluster.certSANs",
            "ClusterConfiguration.apiServer.certSANs",
        ),
        (
            "cluster.keyAlgorithm",
            "ClusterConfiguration.encryptionAlgorithm",
        ),
        (
            "cluster.certificateValidity",
            "ClusterConfiguration.certificateValidityPeriod",
        ),
        (
            "cluster.caCertificateValidity",
            "ClusterConfiguration.caCertificateValidityPeriod",
        ),
        (
            "cluster.etcd.external",
            "ClusterConfiguration.etcd.external",
        ),
        ("cluster.etcd", "ClusterConfiguration.etcd"),
        (
            "cluster.certificatesDir",
            "ClusterConfiguration.certificatesDir",
        ),
        ("cluster.dns.imageTag", "ClusterConfiguration.dns.imageTag"),
        (
            "cluster.dns.imageRepository",
            "ClusterConfiguration.dns.imageRepository",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    let (reg, ep) = if join {
        (
            "JoinConfiguration.nodeRegistration",
            "JoinConfiguration.controlPlane.localAPIEndpoint",
        )
    } else {
        (
            "InitConfiguration.nodeRegistration",
            "InitConfiguration.localAPIEndpoint",
        )
    };
    v.extend([
        ("node.name", (format!("{reg}.name"))),
        ("node.taints", (format!("{reg}.taints"))),
        ("node.criSocket", (format!("{reg}.criSocket"))),
        ("node.kubeletExtraArgs", (format!("{reg}.kubeletExtraArgs"))),
        ("node.advertiseAddress", (format!("{ep}.advertiseAddress"))),
        ("node.bindPort", (format!("{ep}.bindPort"))),
    ]);
    if join {
        v.extend([
            ("role", "JoinConfiguration.controlPlane".to_string()),
            (
                "server",
                "JoinConfiguration.discovery.bootstrapToken.apiServerEndpoint".to_string(),
            ),
            (
                "token",
                "JoinConfiguration.discovery.bootstrapToken.token".to_string(),
            ),
            (
                "caCertHashes",
                "JoinConfiguration.discovery.bootstrapToken.caCertHashes".to_string(),
            ),
            (
                "caCertHash",
                "JoinConfiguration.discovery.bootstrapToken.caCertHashes".to_string(),
            ),
            (
                "certificateKey",
                "JoinConfiguration.controlPlane.certificateKey".to_string(),
            ),
        ]);
    }
    let doc = if join {
        "JoinConfiguration"
    } else {
        "InitConfiguration"
    };
    for (canon, field) in TIMEOUT_FIELDS {
        v.push((canon, format!("{doc}.timeouts.{field}")));
    }
    if init {
        v.extend([
            ("role", "InitConfiguration".to_string()),
            (
                "bootstrapTokens",
                "InitConfiguration.bootstrapTokens".to_string(),
            ),
            (
                "certificateKey",
                "InitConfiguration.certificateKey".to_string(),
            ),
        ]);
    }
    v
}

fn component(c: Option<KubeadmComponent>) -> Option<RawComponent> {
    c.map(|c| RawComponent {
        extra_args: c.extra_args,
        extra_volumes: c.extra_volumes,
        extra_envs: c.extra_envs,
    })
}

fn node(reg: Option<NodeRegistration>, ep: Option<ApiEndpoint>) -> RawNode {
    let reg = reg.unwrap_or_default();
    let ep = ep.unwrap_or_default();
    RawNode {
        name: reg.name,
        advertise_address: ep.advertise_address,
        bind_port: ep.bind_port,
        cri_socket: reg.cri_socket,
        labels: None,
        taints: reg.taints,
        kubelet_extra_args: reg.kubelet_extra_args,
        ignore_preflight_errors: reg.ignore_preflight_errors,
        image_pull_policy: reg.image_pull_policy,
    }
}

/// Maps kubeadm documents (at most one of each kind) onto a raw NodeConfig.
/// Returns the config and errors for kubeadm features kubeboot refuses.
pub fn to_raw(
    init: Option<InitConfiguration>,
    cluster: Option<ClusterConfiguration>,
    join: Option<JoinConfiguration>,
) -> Result<NodeConfig, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let mut out = NodeConfig::default();
    if let Some(c) = cluster {
        let (etcd_local, etcd_external) = match c.etcd {
            Some(e) => (e.local, e.external),
            None => (None, None),
        };
        let net = c.networking.unwrap_or_default();
        let api = c.api_server.unwrap_or_default();
        let local = etcd_local.unwrap_or_default();
        out.cluster = Some(RawCluster {
            name: c.cluster_name,
            kubernetes_version: c.kubernetes_version,
            control_plane_endpoint: c.control_plane_endpoint,
            pod_subnet: net.pod_subnet,
            service_subnet: net.service_subnet,
            dns_domain: net.dns_domain,
            image_repository: c.image_repository,
            cert_sans: api.cert_sans,
            key_algorithm: c.encryption_algorithm,
            certificate_validity: c.certificate_validity_period,
            ca_certificate_validity: c.ca_certificate_validity_period,
            certificates_dir: c.certificates_dir,
            etcd: Some(RawEtcd {
                data_dir: local.data_dir,
                server_cert_sans: local.server_cert_sans,
                peer_cert_sans: local.peer_cert_sans,
                image_repository: local.image_repository,
                image_tag: local.image_tag,
                extra_args: local.extra_args,
                extra_envs: local.extra_envs,
                external: etcd_external.map(|x| RawExternalEtcd {
                    endpoints: x.endpoints,
                    ca_file: x.ca_file,
                    cert_file: x.cert_file,
                    key_file: x.key_file,
                }),
            }),
            api_server: Some(RawComponent {
                extra_args: api.extra_args,
                extra_volumes: api.extra_volumes,
                extra_envs: api.extra_envs,
            }),
            controller_manager: component(c.controller_manager),
            scheduler: component(c.scheduler),
            feature_gates: c.feature_gates,
            dns: c.dns.map(|d| RawDns {
                disabled: d.disabled,
                image_repository: d.image_repository,
                image_tag: d.image_tag,
            }),
            proxy: c.proxy.map(|p| RawProxy {
                disabled: p.disabled,
            }),
        });
    }
    if let Some(i) = init {
        out.role = Some("control-plane".into());
        out.node = Some(node(i.node_registration, i.local_api_endpoint));
        out.certificate_key = i.certificate_key;
        out.skip_phases = i.skip_phases;
        out.timeouts = i.timeouts.map(RawTimeouts::from);
        out.bootstrap_tokens = i.bootstrap_tokens.map(|ts| {
            ts.into_iter()
                .map(|t| RawToken {
                    token: t.token,
                    description: t.description,
                    ttl: t.ttl,
                    usages: t.usages,
                    groups: t.groups,
                })
                .collect()
        });
    }
    if let Some(j) = join {
        let disc = j.discovery.unwrap_or_default();
        if disc.file.is_some() {
            errors.push((
                "JoinConfiguration.discovery.file".into(),
                "file discovery is not supported by kubeboot; use discovery.bootstrapToken with caCertHashes".into(),
            ));
        }
        let bt = disc.bootstrap_token.unwrap_or_default();
        if let (Some(tls), Some(tok)) = (&disc.tls_bootstrap_token, &bt.token)
            && tls != tok
        {
            errors.push((
                    "JoinConfiguration.discovery.tlsBootstrapToken".into(),
                    "must equal discovery.bootstrapToken.token (kubeboot uses one token for discovery and TLS bootstrap)"
                        .into(),
                ));
        }
        out.token = bt.token.or(disc.tls_bootstrap_token);
        out.server = bt.api_server_endpoint;
        out.ca_cert_hashes = bt.ca_cert_hashes;
        out.unsafe_skip_ca_verification = bt.unsafe_skip_ca_verification;
        let (ep, key, cp) = match j.control_plane {
            Some(cp) => (cp.local_api_endpoint, cp.certificate_key, true),
            None => (None, None, false),
        };
        out.role = Some(if cp { "control-plane" } else { "worker" }.into());
        out.certificate_key = key;
        out.node = Some(node(j.node_registration, ep));
        out.skip_phases = j.skip_phases;
        out.timeouts = j.timeouts.map(RawTimeouts::from);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
