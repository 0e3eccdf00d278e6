//! Example `Settings` for node tests: a full stacked-etcd control plane and
//! a worker. Shared by the unit tests (included with `#[path]`, where
//! `crate` is kubeboot) and the `node_*` integration tests (whose crate
//! roots `use kubeboot::{config, secret};`).

#![allow(dead_code)]

use crate::config::BootstrapToken;
use crate::config::model::*;
use crate::secret::Secret;

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
            pod_subnets: vec!["10.244.0.0/16".parse().unwrap()],
            service_subnets: vec!["10.96.0.0/12".parse().unwrap()],
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
            advertise_address: "192.168.10.11".parse().unwrap(),
            bind_port: 6443,
            cri_socket: "unix:///var/run/containerd/containerd.sock".into(),
            labels: vec![],
            taints: vec![Taint {
                key: "node-role.kubernetes.io/control-plane".into(),
                value: None,
                effect: "NoSchedule".into(),
            }],
            kubelet_extra_args: vec![],
            ignore_preflight_errors: vec![],
            image_pull_policy: "IfNotPresent".into(),
        },
        join: None,
        bootstrap_tokens: vec![],
        certificate_key: None,
        supplied_cas: SuppliedCas::default(),
        skip_phases: vec![],
        warnings: vec![],
    }
}

/// A worker joining through the control-plane endpoint, with one taint and
/// one kubelet extra arg.
pub fn worker() -> Settings {
    let mut s = control_plane();
    s.mode = Mode::JoinWorker;
    s.node.name = "worker-1".into();
    s.node.advertise_address = "192.168.10.21".parse().unwrap();
    s.node.taints = vec![Taint {
        key: "dedicated".into(),
        value: Some("gpu".into()),
        effect: "NoSchedule".into(),
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
            secret: Secret::new("0123456789abcdef".to_string()),
        },
        ca_cert_hashes: vec![format!("sha256:{}", "ab".repeat(32))],
        unsafe_skip_ca_verification: false,
        certificate_key: None,
    });
    s
}
