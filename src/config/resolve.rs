//! Defaults and validation: the one place where a raw configuration becomes
//! [`Settings`]. Every default kubeboot applies is in this file.
//!
//! Validation collects every problem it finds (not just the first), each
//! naming the field as the user wrote it and saying what was expected.

use std::net::IpAddr;

use ipnet::IpNet;

use super::model::*;
use super::parse::Parsed;
use super::raw::{
    NodeConfig, RawArgs, RawCluster, RawComponent, RawEnv, RawNode, RawToken, RawVolume,
};
use super::token::BootstrapToken;
use crate::error::Error;
use crate::host::HostFacts;

/// Kubernetes minors kubeboot renders manifests for.
pub const SUPPORTED_MINORS: std::ops::RangeInclusive<u32> = 32..=34;
/// The version used when the config names none (kubeadm would resolve the
/// `stable-1` label over the network; kubeboot never does).
pub const DEFAULT_KUBERNETES_VERSION: &str = "v1.34.1";
/// Default service subnet (kubeadm's).
pub const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/12";
/// Default CRI socket.
pub const DEFAULT_CRI_SOCKET: &str = "unix:///var/run/containerd/containerd.sock";
/// The control-plane taint key.
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";
/// The default group of join tokens.
pub const DEFAULT_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// Collected validation problems.
struct Problems<'a> {
    parsed: &'a Parsed,
    list: Vec<String>,
}

impl Problems<'_> {
    fn add(&mut self, canonical: &str, msg: impl std::fmt::Display) {
        self.list.push(format!(
            "{}: {}: {}",
            self.parsed.origin,
            self.parsed.name(canonical),
            msg
        ));
    }
}

/// Turns a parsed raw configuration into validated settings. Each section
/// of the configuration is resolved by its own function below, in the
/// order the problems are reported; every problem is collected before the
/// result is refused.
///
/// `carried_pki` is true when the userdata also carries CA files (Cluster
/// API style); then a control-plane join needs no certificate key.
pub fn resolve(parsed: Parsed, facts: &HostFacts, carried_pki: bool) -> Result<Settings, Error> {
    let raw = &parsed.raw;
    let mut p = Problems {
        parsed: &parsed,
        list: Vec::new(),
    };
    let mode = role(raw, &mut p);
    let rc = raw.cluster.as_ref();
    let (name, kubernetes_version) = cluster_identity(rc, &mut p);
    let bind_port = raw.node.as_ref().and_then(|n| n.bind_port).unwrap_or(6443);
    if bind_port == 0 {
        p.add("node.bindPort", "must be between 1 and 65535");
    }
    let net = networking(rc, bind_port, &mut p);
    let certs = certificates(rc, &mut p);
    let (etcd, etcd_component) = etcd(rc, &mut p);
    let (dns, proxy) = addons(rc, &mut p);
    let node = node(raw, mode, facts, bind_port, &mut p);
    let (join, token) = join(raw, mode, carried_pki, &mut p);
    let bootstrap_tokens = bootstrap_tokens(raw, mode, token, &mut p);
    let supplied_cas = supplied_cas(raw, &mut p);
    let timeouts = timeouts(raw.timeouts.as_ref(), &mut p);
    let start_spread = start_spread(raw.start_spread.as_deref(), &mut p);
    let (patches, patch_warnings) = patches(raw, &mut p);
    if !p.list.is_empty() {
        return Err(Error::Invalid(p.list.join("\n")));
    }
    let cluster = Cluster {
        name,
        kubernetes_version,
        control_plane_endpoint: net.control_plane_endpoint,
        pod_subnets: net.pod_subnets,
        service_subnets: net.service_subnets,
        dns_domain: net.dns_domain,
        image_repository: certs.image_repository,
        cert_sans: certs.cert_sans,
        key_algorithm: certs.key_algorithm,
        cert_validity_seconds: certs.cert_validity_seconds,
        ca_validity_seconds: certs.ca_validity_seconds,
        certificates_dir: certs.certificates_dir,
        etcd,
        api_server: component(rc.and_then(|c| c.api_server.as_ref())),
        controller_manager: component(rc.and_then(|c| c.controller_manager.as_ref())),
        scheduler: component(rc.and_then(|c| c.scheduler.as_ref())),
        etcd_component,
        feature_gates: rc
            .and_then(|c| c.feature_gates.clone())
            .unwrap_or_default()
            .into_iter()
            .collect(),
        dns,
        proxy,
    };
    let Parsed {
        mut warnings,
        components,
        ..
    } = parsed;
    let components = component_configs(mode, components, &cluster, &node, &mut warnings);
    warnings.extend(patch_warnings.into_iter().map(|w| Warning {
        field: "patches.directory".into(),
        message: w,
    }));
    Ok(Settings {
        mode,
        cluster,
        node,
        join,
        bootstrap_tokens,
        certificate_key: if mode == Mode::Init {
            raw.certificate_key.clone()
        } else {
            None
        },
        supplied_cas,
        skip_phases: raw
            .skip_phases
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|n| match phase_alias(&n) {
                Some(new) => {
                    warnings.push(Warning {
                        field: "skipPhases".into(),
                        message: format!(
                            "{n:?} is kubeboot's old name of kubeadm's {new:?}; use {new:?}"
                        ),
                    });
                    new.to_string()
                }
                None => n,
            })
            .collect(),
        timeouts,
        start_spread,
        components,
        patches,
        given: Given {
            kubernetes_version: rc.is_some_and(|c| c.kubernetes_version.is_some()),
            image_repository: rc.is_some_and(|c| c.image_repository.is_some()),
            dns_domain: rc.is_some_and(|c| c.dns_domain.is_some()),
            service_subnet: rc.is_some_and(|c| c.service_subnet.is_some()),
            pod_subnet: rc.is_some_and(|c| c.pod_subnet.is_some()),
            feature_gates: rc.is_some_and(|c| c.feature_gates.is_some()),
        },
        warnings,
    })
}

/// `patches.directory`: every patch file read and checked now, so a bad
/// one stops the node before anything is written. Returns the patches and
/// the warnings for files skipped.
fn patches(raw: &NodeConfig, p: &mut Problems<'_>) -> (super::patches::Patches, Vec<String>) {
    let Some(dir) = raw.patches.as_ref().and_then(|x| x.directory.as_deref()) else {
        return Default::default();
    };
    if dir.is_empty() {
        return Default::default();
    }
    match super::patches::load(std::path::Path::new(dir)) {
        Ok(loaded) => loaded,
        Err(e) => {
            p.add("patches.directory", e);
            Default::default()
        }
    }
}

/// The component configurations a node acts on. kubeadm init merges them
/// over its defaults (`cmd/kubeadm/app/componentconfigs/kubelet.go`,
/// `kubeproxy.go`, `Default()`, warning where the user's value differs
/// from what kubeadm sets); kubeadm join reads only its JoinConfiguration
/// from the file (`cmd/kubeadm/app/util/config/joinconfiguration.go`) and
/// takes both from the cluster, so a join ignores them with a warning.
fn component_configs(
    mode: Mode,
    c: ComponentConfigs,
    cluster: &Cluster,
    node: &Node,
    warnings: &mut Vec<Warning>,
) -> ComponentConfigs {
    use super::component::{KUBE_PROXY_KIND, KUBELET_KIND};
    if mode != Mode::Init {
        for (kind, from) in [
            (KUBELET_KIND, "kube-system/kubelet-config"),
            (KUBE_PROXY_KIND, "kube-system/kube-proxy"),
        ] {
            let given = if kind == KUBELET_KIND {
                c.kubelet.is_some()
            } else {
                c.kube_proxy.is_some()
            };
            if given {
                warnings.push(Warning {
                    field: kind.into(),
                    message: format!("a joining node uses the cluster's configuration ({from}), as kubeadm join does; this document is ignored"),
                });
            }
        }
        return ComponentConfigs::default();
    }
    if let Some(user) = &c.kubelet {
        let dns = cluster
            .service_subnets
            .first()
            .and_then(|n| nth_ip(n, 10))
            .map_or_else(|| "10.96.0.10".to_string(), |ip| ip.to_string());
        let recommended = serde_json::json!({
            "staticPodPath": "/etc/kubernetes/manifests",
            "clusterDNS": [dns],
            "clusterDomain": cluster.dns_domain,
            "authentication": {
                "x509": {"clientCAFile": format!("{}/ca.crt", cluster.certificates_dir.trim_end_matches('/'))},
                "anonymous": {"enabled": false},
                "webhook": {"enabled": true},
            },
            "authorization": {"mode": "Webhook"},
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "readOnlyPort": 0,
        });
        for (field, want) in super::component::kubelet_deviations(user, &recommended) {
            warnings.push(Warning {
                field: format!("{KUBELET_KIND}.{field}"),
                message: format!(
                    "kubeadm sets {want} here; the given value is kept, as kubeadm keeps it"
                ),
            });
        }
        if user.get("rotateCertificates") == Some(&serde_json::Value::Bool(false)) {
            warnings.push(Warning {
                field: format!("{KUBELET_KIND}.rotateCertificates"),
                message: "always true, as kubeadm sets it; false is ignored".into(),
            });
        }
    }
    if let Some(user) = &c.kube_proxy {
        let pods: Vec<String> = cluster.pod_subnets.iter().map(|n| n.to_string()).collect();
        let mut recommended = serde_json::json!({
            "bindAddress": if node.advertise_address.is_ipv6() { "::" } else { "0.0.0.0" },
            "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"},
        });
        if !pods.is_empty() {
            recommended["clusterCIDR"] = serde_json::json!(pods.join(","));
        }
        for (field, want) in super::component::kube_proxy_deviations(user, &recommended) {
            if field == "clusterCIDR" && pods.is_empty() {
                continue;
            }
            warnings.push(Warning {
                field: format!("{KUBE_PROXY_KIND}.{field}"),
                message: format!(
                    "kubeadm sets {want} here; the given value is kept, as kubeadm keeps it"
                ),
            });
        }
    }
    c
}

/// `startSpread`: a Go duration from 0 to 1 h.
fn start_spread(v: Option<&str>, p: &mut Problems<'_>) -> std::time::Duration {
    let Some(v) = v else {
        return std::time::Duration::ZERO;
    };
    match parse_duration(v) {
        Some(n) if n <= 3600 => std::time::Duration::from_secs(n),
        _ => {
            p.add(
                "startSpread",
                format!("{v:?} is not a duration from 0 to 1h like 30s"),
            );
            std::time::Duration::ZERO
        }
    }
}

/// The `timeouts` the config gives: each a Go duration; `0` is no deadline.
fn timeouts(raw: Option<&super::raw::RawTimeouts>, p: &mut Problems<'_>) -> Timeouts {
    let Some(t) = raw else {
        return Timeouts::default();
    };
    let mut one = |canon: &str, v: &Option<String>| {
        let v = v.as_deref()?;
        match parse_duration(v) {
            Some(0) => Some(std::time::Duration::MAX),
            Some(n) => Some(std::time::Duration::from_secs(n)),
            None => {
                p.add(
                    canon,
                    format!("{v:?} is not a duration like 5m0s (0: no deadline)"),
                );
                None
            }
        }
    };
    Timeouts {
        discovery: one("timeouts.discovery", &t.discovery),
        tls_bootstrap: one("timeouts.tlsBootstrap", &t.tls_bootstrap),
        kubelet_health_check: one("timeouts.kubeletHealthCheck", &t.kubelet_health_check),
        control_plane_component_health_check: one(
            "timeouts.controlPlaneComponentHealthCheck",
            &t.control_plane_component_health_check,
        ),
        etcd_api_call: one("timeouts.etcdAPICall", &t.etcd_api_call),
        kubernetes_api_call: one("timeouts.kubernetesAPICall", &t.kubernetes_api_call),
    }
}

/// A string field of the cluster section.
fn field(rc: Option<&RawCluster>, f: fn(&RawCluster) -> Option<&String>) -> Option<String> {
    rc.and_then(f).cloned()
}

/// `role`, with the join material it comes with → the node's mode.
fn role(raw: &NodeConfig, p: &mut Problems<'_>) -> Mode {
    let has_join_material = raw.server.is_some() || raw.token.is_some();
    match raw.role.as_deref() {
        Some("control-plane") | Some("controlplane") | Some("master") => {
            if has_join_material {
                Mode::JoinControlPlane
            } else {
                Mode::Init
            }
        }
        Some("worker") | Some("node") => Mode::JoinWorker,
        Some(other) => {
            p.add(
                "role",
                format!("{other:?} is not a role; expected \"control-plane\" or \"worker\""),
            );
            Mode::JoinWorker
        }
        None => {
            p.add("role", "missing; expected \"control-plane\" or \"worker\"");
            Mode::JoinWorker
        }
    }
}

/// `cluster.name` and `cluster.kubernetesVersion`.
fn cluster_identity(rc: Option<&RawCluster>, p: &mut Problems<'_>) -> (String, String) {
    let name = field(rc, |c| c.name.as_ref()).unwrap_or_else(|| "kubernetes".into());
    if !is_dns_label_ish(&name) {
        p.add(
            "cluster.name",
            format!("{name:?} is not a valid name (lowercase letters, digits, '-', '.')"),
        );
    }
    let version = match field(rc, |c| c.kubernetes_version.as_ref()) {
        None => DEFAULT_KUBERNETES_VERSION.to_string(),
        Some(v) => match parse_version(&v) {
            Some((1, minor, patch)) if SUPPORTED_MINORS.contains(&minor) => {
                format!("v1.{minor}.{patch}")
            }
            Some(_) => {
                p.add(
                    "cluster.kubernetesVersion",
                    format!(
                        "{v:?} is not supported; kubeboot renders Kubernetes 1.{}–1.{}",
                        SUPPORTED_MINORS.start(),
                        SUPPORTED_MINORS.end()
                    ),
                );
                v
            }
            None => {
                p.add("cluster.kubernetesVersion", format!("{v:?} is not a version like v1.33.2 (labels such as stable-1 need the network and are not resolved)"));
                v
            }
        },
    };
    (name, version)
}

/// The cluster's addresses: control-plane endpoint, subnets, DNS domain.
struct Networking {
    control_plane_endpoint: Option<Endpoint>,
    service_subnets: Vec<IpNet>,
    pod_subnets: Vec<IpNet>,
    dns_domain: String,
}

fn networking(rc: Option<&RawCluster>, bind_port: u16, p: &mut Problems<'_>) -> Networking {
    let control_plane_endpoint = field(rc, |c| c.control_plane_endpoint.as_ref()).and_then(|s| {
        parse_endpoint(&s, Some(bind_port))
            .map_err(|m| p.add("cluster.controlPlaneEndpoint", m))
            .ok()
    });
    let service_subnets = parse_subnets(
        &field(rc, |c| c.service_subnet.as_ref()).unwrap_or_else(|| DEFAULT_SERVICE_SUBNET.into()),
    )
    .map_err(|m| p.add("cluster.serviceSubnet", m))
    .unwrap_or_default();
    for s in &service_subnets {
        let host_bits = s.max_prefix_len() - s.prefix_len();
        if host_bits > 20 {
            p.add(
                "cluster.serviceSubnet",
                format!("{s} is too large: at most 20 host bits (/12 for IPv4, /108 for IPv6)"),
            );
        } else if host_bits < 4 {
            p.add(
                "cluster.serviceSubnet",
                format!("{s} is too small: the cluster DNS service needs the 10th address"),
            );
        }
    }
    let pod_subnets = match field(rc, |c| c.pod_subnet.as_ref()) {
        None => Vec::new(),
        Some(s) => parse_subnets(&s)
            .map_err(|m| p.add("cluster.podSubnet", m))
            .unwrap_or_default(),
    };
    for ps in &pod_subnets {
        for ss in &service_subnets {
            if ps.contains(&ss.network()) || ss.contains(&ps.network()) {
                p.add(
                    "cluster.podSubnet",
                    format!("{ps} overlaps the service subnet {ss}"),
                );
            }
        }
    }
    let dns_domain = field(rc, |c| c.dns_domain.as_ref()).unwrap_or_else(|| "cluster.local".into());
    if !is_dns_subdomain(&dns_domain) {
        p.add(
            "cluster.dnsDomain",
            format!("{dns_domain:?} is not a DNS domain"),
        );
    }
    Networking {
        control_plane_endpoint,
        service_subnets,
        pod_subnets,
        dns_domain,
    }
}

/// Images and certificates: repository, SANs, key algorithm, validity, directory.
struct Certificates {
    image_repository: String,
    cert_sans: Vec<String>,
    key_algorithm: KeyAlgorithm,
    cert_validity_seconds: u64,
    ca_validity_seconds: u64,
    certificates_dir: String,
}

fn certificates(rc: Option<&RawCluster>, p: &mut Problems<'_>) -> Certificates {
    let image_repository =
        field(rc, |c| c.image_repository.as_ref()).unwrap_or_else(|| "registry.k8s.io".into());
    let cert_sans = rc.and_then(|c| c.cert_sans.clone()).unwrap_or_default();
    for san in &cert_sans {
        if san.parse::<IpAddr>().is_err() && !is_dns_subdomain(san.trim_start_matches("*.")) {
            p.add(
                "cluster.certSANs",
                format!("{san:?} is neither an IP address nor a DNS name"),
            );
        }
    }
    let key_algorithm = key_algorithm(field(rc, |c| c.key_algorithm.as_ref()).as_deref(), p);
    let mut validity = |canon: &str, v: Option<String>, default: u64| match v {
        None => default,
        Some(s) => match parse_duration(&s) {
            Some(0) | None => {
                p.add(
                    canon,
                    format!("{s:?} is not a positive duration like 8760h"),
                );
                default
            }
            Some(n) => n,
        },
    };
    let cert_validity_seconds = validity(
        "cluster.certificateValidity",
        field(rc, |c| c.certificate_validity.as_ref()),
        8760 * 3600,
    );
    let ca_validity_seconds = validity(
        "cluster.caCertificateValidity",
        field(rc, |c| c.ca_certificate_validity.as_ref()),
        87600 * 3600,
    );
    let certificates_dir =
        field(rc, |c| c.certificates_dir.as_ref()).unwrap_or_else(|| "/etc/kubernetes/pki".into());
    if !certificates_dir.starts_with('/') {
        p.add("cluster.certificatesDir", "must be an absolute path");
    }
    Certificates {
        image_repository,
        cert_sans,
        key_algorithm,
        cert_validity_seconds,
        ca_validity_seconds,
        certificates_dir,
    }
}

/// `encryptionAlgorithm`: all of kubeadm's values. kubeboot's default
/// stays ECDSA-P256 (kubeadm's is RSA-2048): 16 P-256 keys take
/// milliseconds, 16 RSA-2048 keys seconds (docs/building.md).
fn key_algorithm(a: Option<&str>, p: &mut Problems<'_>) -> KeyAlgorithm {
    let Some(a) = a else {
        return KeyAlgorithm::EcdsaP256;
    };
    match KeyAlgorithm::ALL.into_iter().find(|k| k.as_str() == a) {
        Some(k) => k,
        None => {
            let all: Vec<&str> = KeyAlgorithm::ALL.iter().map(|k| k.as_str()).collect();
            p.add(
                "cluster.keyAlgorithm",
                format!("{a:?} is not one of {}", all.join(", ")),
            );
            KeyAlgorithm::EcdsaP256
        }
    }
}

/// `cluster.etcd`: local (with its certificate SANs and image) or external.
fn etcd(rc: Option<&RawCluster>, p: &mut Problems<'_>) -> (Etcd, Component) {
    let re = rc.and_then(|c| c.etcd.as_ref());
    let etcd = match re.and_then(|e| e.external.as_ref()) {
        Some(x) => {
            let endpoints = x.endpoints.clone().unwrap_or_default();
            if endpoints.is_empty() {
                p.add(
                    "cluster.etcd.external",
                    "endpoints: at least one etcd client URL is required",
                );
            }
            for e in &endpoints {
                if !(e.starts_with("https://") || e.starts_with("http://")) {
                    p.add(
                        "cluster.etcd.external",
                        format!("endpoints: {e:?} is not an http(s) URL"),
                    );
                }
            }
            Etcd::External {
                endpoints,
                ca_file: x.ca_file.clone().unwrap_or_default(),
                cert_file: x.cert_file.clone().unwrap_or_default(),
                key_file: x.key_file.clone().unwrap_or_default(),
            }
        }
        None => Etcd::Local {
            data_dir: re
                .and_then(|e| e.data_dir.clone())
                .unwrap_or_else(|| "/var/lib/etcd".into()),
            server_cert_sans: re
                .and_then(|e| e.server_cert_sans.clone())
                .unwrap_or_default(),
            peer_cert_sans: re
                .and_then(|e| e.peer_cert_sans.clone())
                .unwrap_or_default(),
            image_repository: re.and_then(|e| e.image_repository.clone()),
            image_tag: re.and_then(|e| e.image_tag.clone()),
        },
    };
    let component = Component {
        extra_args: args(re.and_then(|e| e.extra_args.as_ref())),
        extra_volumes: Vec::new(),
        extra_envs: envs(re.and_then(|e| e.extra_envs.as_ref())),
    };
    (etcd, component)
}

/// `cluster.dns` and `cluster.proxy`: the addons and their images.
fn addons(rc: Option<&RawCluster>, p: &mut Problems<'_>) -> (Dns, Proxy) {
    let rdns = rc.and_then(|c| c.dns.as_ref());
    let dns = Dns {
        disabled: rdns.and_then(|d| d.disabled).unwrap_or(false),
        // empty means unset, as in kubeadm
        image_repository: rdns
            .and_then(|d| d.image_repository.clone())
            .filter(|r| !r.is_empty()),
        image_tag: rdns
            .and_then(|d| d.image_tag.clone())
            .filter(|t| !t.is_empty()),
    };
    if let Some(t) = &dns.image_tag
        && !is_image_tag(t)
    {
        p.add(
            "cluster.dns.imageTag",
            format!("{t:?} is not an image tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"),
        );
    }
    if let Some(r) = &dns.image_repository
        && !is_image_repository(r)
    {
        p.add(
            "cluster.dns.imageRepository",
            format!("{r:?} is not an image repository like registry.example.com/coredns (no scheme, tag or spaces)"),
        );
    }
    let proxy = Proxy {
        disabled: rc
            .and_then(|c| c.proxy.as_ref())
            .and_then(|p| p.disabled)
            .unwrap_or(false),
    };
    (dns, proxy)
}

/// The `node` section: name, address, taints, pull policy, CRI socket.
fn node(
    raw: &NodeConfig,
    mode: Mode,
    facts: &HostFacts,
    bind_port: u16,
    p: &mut Problems<'_>,
) -> Node {
    let node_rc = raw.node.as_ref();
    // A name given in the config is used as written and must already be a
    // lowercase DNS subdomain (kubeadm validates it, it does not change it);
    // the hostname fallback is lowercased as kubeadm's GetHostname does.
    let name = match node_rc.and_then(|n| n.name.clone()) {
        Some(n) => n,
        None if let Some(h) = facts.hostname() => h.to_lowercase(),
        None => {
            p.add("node.name", "not given and the hostname is unknown; set it");
            String::new()
        }
    };
    if !name.is_empty() && !is_dns_subdomain(&name) {
        p.add(
            "node.name",
            format!(
                "{name:?} is not a valid node name (RFC 1123: lowercase letters, digits, '-', '.')"
            ),
        );
    }
    let advertise_address = advertise_address(node_rc, mode, facts, p);
    let taints = taints(node_rc, mode, p);
    let image_pull_policy = match node_rc.and_then(|n| n.image_pull_policy.as_deref()) {
        None => PullPolicy::IfNotPresent,
        Some(s) => PullPolicy::parse(s).unwrap_or_else(|| {
            p.add(
                "node.imagePullPolicy",
                format!("{s:?} is not Always, IfNotPresent or Never"),
            );
            PullPolicy::IfNotPresent
        }),
    };
    let cri_socket = node_rc
        .and_then(|n| n.cri_socket.clone())
        .unwrap_or_else(|| DEFAULT_CRI_SOCKET.into());
    let cri_socket = if cri_socket.starts_with('/') {
        format!("unix://{cri_socket}")
    } else {
        cri_socket
    };
    if !cri_socket.starts_with("unix:///") {
        p.add(
            "node.criSocket",
            format!("{cri_socket:?} is not a unix socket path"),
        );
    }
    Node {
        name,
        advertise_address,
        bind_port,
        cri_socket,
        labels: node_rc
            .and_then(|n| n.labels.clone())
            .unwrap_or_default()
            .into_iter()
            .collect(),
        taints,
        kubelet_extra_args: args(node_rc.and_then(|n| n.kubelet_extra_args.as_ref())),
        ignore_preflight_errors: node_rc
            .and_then(|n| n.ignore_preflight_errors.clone())
            .unwrap_or_default(),
        image_pull_policy,
    }
}

/// `node.advertiseAddress`, else the default-route address (a worker may
/// have none: it advertises nothing).
fn advertise_address(
    node_rc: Option<&RawNode>,
    mode: Mode,
    facts: &HostFacts,
    p: &mut Problems<'_>,
) -> IpAddr {
    match node_rc.and_then(|n| n.advertise_address.clone()) {
        Some(a) => match a.parse::<IpAddr>() {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() => {
                p.add(
                    "node.advertiseAddress",
                    format!("{a:?} cannot be advertised (unspecified or multicast)"),
                );
                ip
            }
            Ok(ip) => ip,
            Err(_) => {
                p.add(
                    "node.advertiseAddress",
                    format!("{a:?} is not an IP address"),
                );
                IpAddr::from([0, 0, 0, 0])
            }
        },
        None => match facts.default_address() {
            Some(ip) => ip,
            None if mode == Mode::JoinWorker => IpAddr::from([0, 0, 0, 0]),
            None => {
                p.add(
                    "node.advertiseAddress",
                    "not given and no default-route interface address was found; set it",
                );
                IpAddr::from([0, 0, 0, 0])
            }
        },
    }
}

/// `node.taints`; a control-plane node without any gets kubeadm's taint.
fn taints(node_rc: Option<&RawNode>, mode: Mode, p: &mut Problems<'_>) -> Vec<Taint> {
    match node_rc.and_then(|n| n.taints.as_ref()) {
        Some(ts) => ts
            .iter()
            .map(|t| Taint {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: TaintEffect::parse(&t.effect).unwrap_or_else(|| {
                    p.add(
                        "node.taints",
                        format!(
                            "effect {:?} is not NoSchedule, PreferNoSchedule or NoExecute",
                            t.effect
                        ),
                    );
                    TaintEffect::NoSchedule
                }),
            })
            .collect(),
        None if mode.is_control_plane() => {
            vec![Taint {
                key: CONTROL_PLANE_TAINT.into(),
                value: None,
                effect: TaintEffect::NoSchedule,
            }]
        }
        None => Vec::new(),
    }
}

/// `token`, when given (a join needs it; an init may create it).
fn join_token(raw: &NodeConfig, p: &mut Problems<'_>) -> Option<BootstrapToken> {
    let t = raw.token.as_ref()?;
    let parsed = BootstrapToken::parse(t);
    if parsed.is_none() {
        p.add(
            "token",
            "is not a bootstrap token of the form [a-z0-9]{6}.[a-z0-9]{16} (value not shown)",
        );
    }
    parsed
}

/// The CA pins (`caCertHash` first, then `caCertHashes`) and the field
/// name messages use for them.
fn ca_pins(raw: &NodeConfig, p: &mut Problems<'_>) -> (Vec<String>, &'static str) {
    let mut hashes: Vec<String> = raw.ca_cert_hashes.clone().unwrap_or_default();
    if let Some(h) = &raw.ca_cert_hash {
        hashes.insert(0, h.clone());
    }
    let hash_field = if raw.ca_cert_hashes.is_some() && raw.ca_cert_hash.is_none() {
        "caCertHashes"
    } else {
        "caCertHash"
    };
    for h in &hashes {
        if !is_ca_hash(h) {
            p.add(
                hash_field,
                format!("{h:?} is not sha256: followed by 64 hexadecimal characters"),
            );
        }
    }
    (hashes, hash_field)
}

/// The join material: server, token, CA pins, certificate key. The token
/// is returned apart too: an init node may be given the one it creates.
fn join(
    raw: &NodeConfig,
    mode: Mode,
    carried_pki: bool,
    p: &mut Problems<'_>,
) -> (Option<Join>, Option<BootstrapToken>) {
    let certificate_key = raw.certificate_key.clone();
    if let Some(k) = &certificate_key
        && (k.expose().len() != 64 || !k.expose().bytes().all(|b| b.is_ascii_hexdigit()))
    {
        p.add(
            "certificateKey",
            "must be 64 hexadecimal characters (a 32-byte AES key); value not shown",
        );
    }
    let (hashes, hash_field) = ca_pins(raw, p);
    let unsafe_skip = raw.unsafe_skip_ca_verification.unwrap_or(false);
    let token = join_token(raw, p);
    if !mode.is_join() {
        if raw.ca_cert_hash.is_some() || raw.ca_cert_hashes.is_some() {
            p.add(
                hash_field,
                "only used when joining; an init node has no server to pin",
            );
        }
        return (None, token);
    }
    let server = match &raw.server {
        Some(s) => parse_endpoint(s, None).map_err(|m| p.add("server", m)).ok(),
        None => {
            p.add(
                "server",
                "missing: a joining node needs the API server endpoint (host:port)",
            );
            None
        }
    };
    if raw.token.is_none() {
        p.add("token", "missing: a joining node needs a bootstrap token");
    }
    if hashes.is_empty() && !unsafe_skip {
        p.add(
            hash_field,
            "missing: pin the cluster CA with sha256:<hex> (kubeboot certs ca-hash ca.crt), or set unsafeSkipCAVerification: true to join without verifying the API server",
        );
    }
    if mode == Mode::JoinControlPlane && certificate_key.is_none() && !carried_pki {
        p.add(
            "certificateKey",
            "missing: a control-plane join needs the certificate key to download the shared CAs (or carry the CA files in the userdata)",
        );
    }
    let join = match (server, token.clone()) {
        (Some(api_server_endpoint), Some(token)) => Some(Join {
            api_server_endpoint,
            token,
            ca_cert_hashes: hashes,
            unsafe_skip_ca_verification: unsafe_skip,
            certificate_key,
        }),
        _ => None,
    };
    (join, token)
}

/// `bootstrapTokens` (init only); none given means one default token,
/// `token` when that is given, else generated by the bootstrap-token phase.
fn bootstrap_tokens(
    raw: &NodeConfig,
    mode: Mode,
    token: Option<BootstrapToken>,
    p: &mut Problems<'_>,
) -> Vec<BootstrapTokenSpec> {
    if mode != Mode::Init {
        if raw.bootstrap_tokens.is_some() {
            p.add(
                "bootstrapTokens",
                "only an init node creates bootstrap tokens",
            );
        }
        return Vec::new();
    }
    let raw_tokens = raw.bootstrap_tokens.as_deref().unwrap_or_default();
    if raw_tokens.is_empty() {
        return vec![BootstrapTokenSpec {
            token,
            description: None,
            ttl_seconds: 24 * 3600,
            usages: TokenUsage::ALL.to_vec(),
            groups: vec![DEFAULT_TOKEN_GROUP.into()],
        }];
    }
    raw_tokens
        .iter()
        .enumerate()
        .map(|(i, t)| bootstrap_token(i, t, p))
        .collect()
}

/// One entry of `bootstrapTokens`.
fn bootstrap_token(i: usize, t: &RawToken, p: &mut Problems<'_>) -> BootstrapTokenSpec {
    let token = t.token.as_ref().and_then(|s| {
        let parsed = BootstrapToken::parse(s);
        if parsed.is_none() {
            p.add(
                "bootstrapTokens",
                format!("[{i}].token is not [a-z0-9]{{6}}.[a-z0-9]{{16}} (value not shown)"),
            );
        }
        parsed
    });
    let ttl_seconds = match &t.ttl {
        None => 24 * 3600,
        Some(s) => parse_duration(s).unwrap_or_else(|| {
            p.add(
                "bootstrapTokens",
                format!("[{i}].ttl {s:?} is not a duration like 24h"),
            );
            24 * 3600
        }),
    };
    let usages = match &t.usages {
        None => TokenUsage::ALL.to_vec(),
        Some(us) => us
            .iter()
            .filter_map(|u| {
                let usage = TokenUsage::parse(u);
                if usage.is_none() {
                    p.add(
                        "bootstrapTokens",
                        format!("[{i}].usages: {u:?} is not signing or authentication"),
                    );
                }
                usage
            })
            .collect(),
    };
    let groups = t
        .groups
        .clone()
        .unwrap_or_else(|| vec![DEFAULT_TOKEN_GROUP.into()]);
    for g in &groups {
        if !g.starts_with("system:bootstrappers:") {
            p.add(
                "bootstrapTokens",
                format!("[{i}].groups: {g:?} must start with system:bootstrappers:"),
            );
        }
    }
    BootstrapTokenSpec {
        token,
        description: t.description.clone(),
        ttl_seconds,
        usages,
        groups,
    }
}

/// `pki`: CA certificates and keys supplied in the config.
fn supplied_cas(raw: &NodeConfig, p: &mut Problems<'_>) -> SuppliedCas {
    let mut supplied_cas = SuppliedCas::default();
    let Some(pki) = &raw.pki else {
        return supplied_cas;
    };
    for (canon, src, dst) in [
        ("pki.ca", &pki.ca, &mut supplied_cas.ca),
        (
            "pki.frontProxyCa",
            &pki.front_proxy_ca,
            &mut supplied_cas.front_proxy_ca,
        ),
        ("pki.etcdCa", &pki.etcd_ca, &mut supplied_cas.etcd_ca),
    ] {
        let Some(ca) = src else {
            continue;
        };
        if let Some(c) = &ca.cert {
            if !c.contains("-----BEGIN CERTIFICATE-----") {
                p.add(
                    canon,
                    "cert: expected a PEM certificate (-----BEGIN CERTIFICATE-----)",
                );
            }
        } else if ca.key.is_some() {
            p.add(canon, "key given without cert");
        }
        if let Some(k) = &ca.key
            && !k.expose().contains("PRIVATE KEY-----")
        {
            p.add(canon, "key: expected a PEM private key (value not shown)");
        }
        dst.cert_pem = ca.cert.clone();
        dst.key_pem = ca.key.clone();
    }
    supplied_cas
}

fn args(a: Option<&RawArgs>) -> Vec<Arg> {
    match a {
        None => Vec::new(),
        Some(RawArgs::Map(m)) => m
            .iter()
            .map(|(k, v)| Arg {
                name: k.clone(),
                value: v.clone(),
            })
            .collect(),
        Some(RawArgs::List(l)) => l
            .iter()
            .map(|a| Arg {
                name: a.name.clone(),
                value: a.value.clone(),
            })
            .collect(),
    }
}

fn envs(e: Option<&Vec<RawEnv>>) -> Vec<EnvVar> {
    e.map(|v| {
        v.iter()
            .map(|e| EnvVar {
                name: e.name.clone(),
                value: e.value.clone(),
            })
            .collect()
    })
    .unwrap_or_default()
}

fn volumes(v: Option<&Vec<RawVolume>>) -> Vec<ExtraVolume> {
    v.map(|v| {
        v.iter()
            .map(|v| ExtraVolume {
                name: v.name.clone(),
                host_path: v.host_path.clone(),
                mount_path: v.mount_path.clone(),
                read_only: v.read_only,
                path_type: v.path_type.clone(),
            })
            .collect()
    })
    .unwrap_or_default()
}

fn component(c: Option<&RawComponent>) -> Component {
    match c {
        None => Component::default(),
        Some(c) => Component {
            extra_args: args(c.extra_args.as_ref()),
            extra_volumes: volumes(c.extra_volumes.as_ref()),
            extra_envs: envs(c.extra_envs.as_ref()),
        },
    }
}

/// `sha256:` followed by 64 hex characters.
pub fn is_ca_hash(h: &str) -> bool {
    h.strip_prefix("sha256:")
        .is_some_and(|x| x.len() == 64 && x.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Parses `host:port`, `[v6]:port`, or (with a default port) a bare host;
/// an `https://` prefix is accepted.
pub fn parse_endpoint(s: &str, default_port: Option<u16>) -> Result<Endpoint, String> {
    let t = s
        .trim()
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let (host, port) = if let Some(rest) = t.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: unclosed '[' in IPv6 address"))?;
        match after.strip_prefix(':') {
            Some(p) => (h.to_string(), Some(p)),
            None if after.is_empty() => (h.to_string(), None),
            None => return Err(format!("{s:?} is not host:port")),
        }
    } else if t.matches(':').count() > 1 {
        // a bare IPv6 address without brackets and without a port
        (t.to_string(), None)
    } else {
        match t.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (t.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{s:?}: port {p:?} is not 1-65535"))?,
        None => default_port
            .ok_or_else(|| format!("{s:?} has no port; expected host:port, e.g. 10.0.0.10:6443"))?,
    };
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    if host.parse::<IpAddr>().is_err() && !is_dns_subdomain(&host) {
        return Err(format!(
            "{s:?}: {host:?} is neither an IP address nor a DNS name"
        ));
    }
    Ok(Endpoint { host, port })
}

/// Parses one CIDR or two comma-separated CIDRs (dual-stack, one per family).
pub fn parse_subnets(s: &str) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let net: IpNet = part
            .parse()
            .map_err(|_| format!("{part:?} is not a CIDR like 10.96.0.0/12"))?;
        if net.network() != net.addr() {
            return Err(format!(
                "{part:?} has host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        out.push(net);
    }
    if out.len() > 2 || (out.len() == 2 && out[0].addr().is_ipv4() == out[1].addr().is_ipv4()) {
        return Err(format!(
            "{s:?}: give one CIDR, or two of different families for dual-stack"
        ));
    }
    Ok(out)
}

/// Parses `v1.33.2` (the `v` is optional) into (major, minor, patch).
pub fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let t = s.strip_prefix('v').unwrap_or(s);
    let core = t.split(['-', '+']).next()?;
    let mut it = core.split('.');
    let a = it.next()?.parse().ok()?;
    let b = it.next()?.parse().ok()?;
    let c = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((a, b, c))
}

/// Parses a Go duration (`24h`, `8760h0m0s`, `1h30m`, `90s`, `0`) into whole seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * mult;
    }
    if !total.is_finite() || total > (u64::MAX / 2) as f64 {
        return None;
    }
    Some(total as u64)
}

/// An image tag as the OCI distribution reference grammar has it:
/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_image_tag(t: &str) -> bool {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    t.len() <= 128
        && t.bytes().next().is_some_and(ok)
        && t.bytes().all(|b| ok(b) || b == b'.' || b == b'-')
}

/// An image repository without a tag or digest: `host[:port]/path`, or a
/// bare name; no scheme, no whitespace, no empty path component.
pub fn is_image_repository(r: &str) -> bool {
    let path_ok = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
    };
    let mut parts = r.split('/');
    let Some(first) = parts.next() else {
        return false;
    };
    // the first component may be a registry host with a port (and capitals)
    let host_ok = !first.is_empty()
        && first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        && first.matches(':').count() <= 1;
    host_ok && parts.all(path_ok) && !r.contains("://")
}

fn is_dns_label_ish(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// An RFC 1123 subdomain: lowercase labels of letters, digits and '-', dot-separated.
pub fn is_dns_subdomain(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    s.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    })
}
