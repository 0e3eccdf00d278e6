//! Example `Settings` for tests, benches and docs: a full control-plane
//! init node and a worker, with every field filled as the config resolver
//! would (kubeadm defaults).

use crate::config::{
    BootstrapToken, Cluster, Component, Endpoint, Etcd, Join, KeyAlgorithm, Mode, Node, Settings,
    SuppliedCas,
};
use crate::secret::Secret;

/// One year, kubeadm's `certificateValidityPeriod` default.
pub const YEAR_SECONDS: u64 = 8760 * 3600;

/// A first control-plane node (`init`): node `cp-1` at 10.0.0.10:6443,
/// control-plane endpoint `k8s.example.test:6443`, service subnet
/// 10.96.0.0/12, stacked etcd, ECDSA P-256.
pub fn control_plane_settings() -> Settings {
    Settings {
        mode: Mode::Init,
        cluster: Cluster {
            name: "kubernetes".into(),
            kubernetes_version: "v1.34.2".into(),
            control_plane_endpoint: Some(Endpoint {
                host: "k8s.example.test".into(),
                port: 6443,
            }),
            pod_subnets: vec!["10.244.0.0/16".parse().expect("literal")],
            service_subnets: vec!["10.96.0.0/12".parse().expect("literal")],
            dns_domain: "cluster.local".into(),
            image_repository: "registry.k8s.io".into(),
            cert_sans: vec!["203.0.113.7".into(), "api.example.test".into()],
            key_algorithm: KeyAlgorithm::EcdsaP256,
            cert_validity_seconds: YEAR_SECONDS,
            ca_validity_seconds: 10 * YEAR_SECONDS,
            certificates_dir: "/etc/kubernetes/pki".into(),
            etcd: Etcd::Local {
                data_dir: "/var/lib/etcd".into(),
                server_cert_sans: vec!["etcd.example.test".into()],
                peer_cert_sans: Vec::new(),
                image_repository: None,
                image_tag: None,
            },
            api_server: Component::default(),
            controller_manager: Component::default(),
            scheduler: Component::default(),
            etcd_component: Component::default(),
            feature_gates: Vec::new(),
            dns: Default::default(),
            proxy: Default::default(),
        },
        node: Node {
            name: "cp-1".into(),
            advertise_address: "10.0.0.10".parse().expect("literal"),
            bind_port: 6443,
            cri_socket: "unix:///run/containerd/containerd.sock".into(),
            labels: Vec::new(),
            taints: Vec::new(),
            kubelet_extra_args: Vec::new(),
            ignore_preflight_errors: Vec::new(),
            image_pull_policy: "IfNotPresent".into(),
        },
        join: None,
        bootstrap_tokens: Vec::new(),
        certificate_key: None,
        supplied_cas: SuppliedCas::default(),
        skip_phases: Vec::new(),
        timeouts: Default::default(),
        start_spread: std::time::Duration::ZERO,
        warnings: Vec::new(),
    }
}

/// A worker (`join`) of the cluster above: node `worker-1` at 10.0.0.21.
pub fn worker_settings() -> Settings {
    let mut s = control_plane_settings();
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
