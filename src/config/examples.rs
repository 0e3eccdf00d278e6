//! Built-in examples: configurations (kubeboot NodeConfig YAML, run
//! through the same parser as user input; `kubeboot render --example`) and
//! the one set of example [`Settings`] the tests, benches and golden trees
//! use: [`control_plane`] and [`worker`] (the golden trees), and
//! [`pki_control_plane`] / [`pki_worker`], the same cluster with the extra
//! SANs the PKI peer tests check.

use super::model::*;
use super::token::BootstrapToken;
use crate::secret::Secret;

/// A single control-plane node with stacked etcd.
pub const CONTROL_PLANE: &str = "\
apiVersion: kubeboot.dev/v1alpha1
kind: NodeConfig
role: control-plane
cluster:
  name: example
  kubernetesVersion: v1.33.4
  controlPlaneEndpoint: cp.example.internal:6443
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/12
  certSANs: [cp.example.internal, 192.0.2.100]
node:
  name: cp-1
  advertiseAddress: 192.0.2.10
";

/// The smallest control-plane config: every default (used by
/// `certs check-expiration` when no config is given).
pub const MINIMAL_CONTROL_PLANE: &str = "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode:\n  name: localhost\n  advertiseAddress: 127.0.0.1\n";

/// A worker joining the example cluster.
pub const WORKER: &str = "\
apiVersion: kubeboot.dev/v1alpha1
role: worker
server: cp.example.internal:6443
token: abcdef.0123456789abcdef
caCertHash: sha256:0000000000000000000000000000000000000000000000000000000000000000
";

/// The example named `name` (`control-plane` or `worker`).
pub fn by_name(name: &str) -> Option<&'static str> {
    match name {
        "control-plane" => Some(CONTROL_PLANE),
        "worker" => Some(WORKER),
        _ => None,
    }
}

/// The first control-plane node of a cluster (`kubeadm init`), stacked etcd,
/// Kubernetes v1.34.1, no extra args.
pub fn control_plane() -> Settings {
    Settings {
        mode: Mode::Init,
        cluster: Cluster {
            name: "kubernetes".into(),
            kubernetes_version: "v1.34.1".into(),
            control_plane_endpoint: Some(Endpoint {
                host: "cp.example.internal".into(),
                port: 6443,
            }),
            pod_subnets: vec!["10.244.0.0/16".parse().expect("literal")],
            service_subnets: vec!["10.96.0.0/12".parse().expect("literal")],
            dns_domain: "cluster.local".into(),
            image_repository: "registry.k8s.io".into(),
            cert_sans: vec![],
            key_algorithm: KeyAlgorithm::EcdsaP256,
            cert_validity_seconds: 365 * 86400,
            ca_validity_seconds: 3650 * 86400,
            certificates_dir: "/etc/kubernetes/pki".into(),
            etcd: Etcd::Local {
                data_dir: "/var/lib/etcd".into(),
                server_cert_sans: vec![],
                peer_cert_sans: vec![],
                image_repository: None,
                image_tag: None,
            },
            api_server: Component::default(),
            controller_manager: Component::default(),
            scheduler: Component::default(),
            etcd_component: Component::default(),
            feature_gates: vec![],
            dns: Default::default(),
            proxy: Default::default(),
        },
        node: Node {
            name: "cp-1".into(),
            advertise_address: "192.168.10.11".parse().expect("literal"),
            bind_port: 6443,
            cri_socket: "unix:///var/run/containerd/containerd.sock".into(),
            labels: vec![],
            taints: vec![Taint {
                key: "node-role.kubernetes.io/control-plane".into(),
                value: None,
                effect: TaintEffect::NoSchedule,
            }],
            kubelet_extra_args: vec![],
            ignore_preflight_errors: vec![],
            image_pull_policy: PullPolicy::IfNotPresent,
        },
        join: None,
        bootstrap_tokens: vec![],
        certificate_key: None,
        supplied_cas: SuppliedCas::default(),
        skip_phases: vec![],
        timeouts: Default::default(),
        start_spread: std::time::Duration::ZERO,
        components: Default::default(),
        patches: Default::default(),
        given: Default::default(),
        warnings: vec![],
    }
}

/// A worker joining through the control-plane endpoint, with one taint and
/// one kubelet extra arg.
pub fn worker() -> Settings {
    let mut s = control_plane();
    s.mode = Mode::JoinWorker;
    s.node.name = "worker-1".into();
    s.node.advertise_address = "192.168.10.21".parse().expect("literal");
    s.node.taints = vec![Taint {
        key: "dedicated".into(),
        value: Some("gpu".into()),
        effect: TaintEffect::NoSchedule,
    }];
    s.node.kubelet_extra_args = vec![Arg {
        name: "max-pods".into(),
        value: "50".into(),
    }];
    s.join = Some(Join {
        api_server_endpoint: Endpoint {
            host: "cp.example.internal".into(),
            port: 6443,
        },
        token: BootstrapToken {
            id: "abcdef".into(),
            secret: Secret::new("0123456789abcdef"),
        },
        ca_cert_hashes: vec![format!("sha256:{}", "ab".repeat(32))],
        unsafe_skip_ca_verification: false,
        certificate_key: None,
    });
    s
}

/// The cluster of [`control_plane`] as the PKI tests and benches see it:
/// Kubernetes v1.34.2, endpoint `k8s.example.test:6443`, extra API server
/// and etcd SANs, node `cp-1` at 10.0.0.10, no taints.
pub fn pki_control_plane() -> Settings {
    let mut s = control_plane();
    s.cluster.kubernetes_version = "v1.34.2".into();
    s.cluster.control_plane_endpoint = Some(Endpoint {
        host: "k8s.example.test".into(),
        port: 6443,
    });
    s.cluster.cert_sans = vec!["203.0.113.7".into(), "api.example.test".into()];
    if let Etcd::Local {
        server_cert_sans, ..
    } = &mut s.cluster.etcd
    {
        *server_cert_sans = vec!["etcd.example.test".into()];
    }
    s.node.advertise_address = "10.0.0.10".parse().expect("literal");
    s.node.cri_socket = "unix:///run/containerd/containerd.sock".into();
    s.node.taints = Vec::new();
    s
}

/// A worker (`join`) of [`pki_control_plane`]'s cluster: node `worker-1`
/// at 10.0.0.21, no CA pin.
pub fn pki_worker() -> Settings {
    let mut s = pki_control_plane();
    s.mode = Mode::JoinWorker;
    s.node.name = "worker-1".into();
    s.node.advertise_address = "10.0.0.21".parse().expect("literal");
    s.join = Some(Join {
        api_server_endpoint: Endpoint {
            host: "k8s.example.test".into(),
            port: 6443,
        },
        token: BootstrapToken {
            id: "abcdef".into(),
            secret: Secret::new("0123456789abcdef"),
        },
        ca_cert_hashes: Vec::new(),
        unsafe_skip_ca_verification: false,
        certificate_key: None,
    });
    s
}
