//! The plans: which phases run, in which order, for each role. Phase
//! names follow kubeadm's (`kubeadm init phase certs` ↔ `kubeboot init
//! phase certs`), plus `userdata-files`, which puts files the userdata
//! carries (Cluster API's CA certificates and keys) on disk before any PKI
//! work. A phase's `run_if` says whether it applies to this node; the
//! bodies live in one file per group (`files`, `join`, `cluster`, `wait`,
//! `preflight`).

use super::runner::Sub;
use super::{NodeRun, Phase, cluster, files, join, preflight, wait};
use crate::config::Mode;

const fn sub(name: &'static str, summary: &'static str) -> Sub {
    Sub { name, summary }
}

/// kubeadm's `init phase certs` sub-phases (`cmd/kubeadm/app/cmd/phases/init/certs.go`):
/// one per certificate of kubeadm's list, in its order, and `sa`.
pub const CERTS: &[Sub] = &[
    sub("ca", "the self-signed Kubernetes CA"),
    sub("apiserver", "the API server's serving certificate"),
    sub(
        "apiserver-kubelet-client",
        "the API server's client certificate for kubelets",
    ),
    sub("front-proxy-ca", "the self-signed front-proxy CA"),
    sub("front-proxy-client", "the front-proxy client certificate"),
    sub("etcd-ca", "the self-signed etcd CA"),
    sub("etcd-server", "etcd's serving certificate"),
    sub("etcd-peer", "etcd's peer certificate"),
    sub(
        "etcd-healthcheck-client",
        "the etcd liveness probe's client certificate",
    ),
    sub(
        "apiserver-etcd-client",
        "the API server's etcd client certificate",
    ),
    sub("sa", "the service-account signing key pair"),
];

/// kubeadm's `kubeconfig` sub-phases (`.../init/kubeconfig.go`).
pub const KUBECONFIGS: &[Sub] = &[
    sub("admin", "admin.conf (kubeadm:cluster-admins)"),
    sub("super-admin", "super-admin.conf (system:masters)"),
    sub("kubelet", "kubelet.conf for this node"),
    sub("controller-manager", "controller-manager.conf"),
    sub("scheduler", "scheduler.conf"),
];

/// kubeadm's `etcd` sub-phase (`.../init/etcd.go`).
const ETCD: &[Sub] = &[sub("local", "the local etcd static pod")];

/// kubeadm's `control-plane` sub-phases (`.../init/controlplane.go`).
pub const CONTROL_PLANE: &[Sub] = &[
    sub("apiserver", "the kube-apiserver static pod"),
    sub(
        "controller-manager",
        "the kube-controller-manager static pod",
    ),
    sub("scheduler", "the kube-scheduler static pod"),
];

/// kubeadm's `upload-config` sub-phases (`.../init/uploadconfig.go`).
const UPLOAD_CONFIG: &[Sub] = &[
    sub(
        "kubeadm",
        "kube-system/kubeadm-config and the RBAC to read it",
    ),
    sub(
        "kubelet",
        "kube-system/kubelet-config, its RBAC, the Node's CRI socket annotation",
    ),
];

/// kubeadm's `addon` sub-phases (`.../init/addons.go`, 1.32–1.34).
const ADDON: &[Sub] = &[
    sub("coredns", "the CoreDNS addon"),
    sub("kube-proxy", "the kube-proxy addon"),
];

/// kubeadm's `kubelet-finalize` sub-phase (`.../init/kubeletfinalize.go`).
const KUBELET_FINALIZE: &[Sub] = &[sub(
    "enable-client-cert-rotation",
    "point kubelet.conf at the kubelet's rotating client certificate",
)];

/// kubeadm's `join phase control-plane-prepare` sub-phases
/// (`.../join/controlplaneprepare.go`); kubeadm's `download-certs` is
/// kubeboot's own `download-certs` phase, run just before.
const CONTROL_PLANE_PREPARE: &[Sub] = &[
    sub(
        "certs",
        "this node's certificates, signed by the shared CAs",
    ),
    sub("kubeconfig", "this node's kubeconfig files"),
    sub("control-plane", "this node's control-plane static pods"),
];

/// kubeadm's `join phase control-plane-join` sub-phases
/// (`.../join/controlplanejoin.go`; with ControlPlaneKubeletLocalMode,
/// 1.33+, etcd joins in the separate `etcd-join` phase, as here).
const CONTROL_PLANE_JOIN: &[Sub] = &[sub(
    "mark-control-plane",
    "label and taint this node as a control-plane node",
)];

fn is_cp(r: &NodeRun<'_>) -> bool {
    r.input.settings.mode.is_control_plane()
}

fn local_etcd(r: &NodeRun<'_>) -> bool {
    is_cp(r) && r.input.settings.cluster.etcd.is_local()
}

/// Shared by init and join: files the userdata carries go on disk first.
fn userdata_files<'a>() -> Phase<NodeRun<'a>> {
    Phase {
        name: "userdata-files",
        summary: "write the files the userdata carries (CA material)",
        run_if: |r| !r.input.carried.is_empty(),
        run: files::run_userdata_files,
        subs: &[],
        kubeboot: true,
    }
}

/// The phases of `init` (first control-plane node), in kubeadm's order
/// (`cmd/kubeadm/app/cmd/init.go`, v1.32–v1.34): kubelet-finalize before
/// addon.
pub fn init_phases<'a>() -> Vec<Phase<NodeRun<'a>>> {
    vec![
        Phase {
            name: "preflight",
            summary: "check the host can run a control plane",
            run_if: |r| r.live(),
            run: preflight::phase,
            subs: &[],
            kubeboot: false,
        },
        userdata_files(),
        Phase {
            name: "certs",
            summary: "load or create the certificate tree",
            run_if: is_cp,
            run: files::run_certs_phase,
            subs: CERTS,
            kubeboot: false,
        },
        Phase {
            name: "kubeconfig",
            summary: "load or create the kubeconfig files",
            run_if: is_cp,
            run: files::run_kubeconfigs_phase,
            subs: KUBECONFIGS,
            kubeboot: false,
        },
        Phase {
            name: "etcd",
            summary: "write the local etcd static pod",
            run_if: local_etcd,
            run: files::run_etcd,
            subs: ETCD,
            kubeboot: false,
        },
        Phase {
            name: "control-plane",
            summary: "write the control-plane static pods",
            run_if: is_cp,
            run: files::run_control_plane,
            subs: CONTROL_PLANE,
            kubeboot: false,
        },
        Phase {
            name: "kubelet-start",
            summary: "write the kubelet configuration and (re)start the kubelet",
            run_if: |_| true,
            run: files::run_kubelet_start,
            subs: &[],
            kubeboot: false,
        },
        Phase {
            name: "wait-control-plane",
            summary: "wait for the kubelet and the control-plane components to be healthy",
            run_if: |r| r.live(),
            run: wait::control_plane,
            subs: &[],
            kubeboot: false,
        },
        Phase {
            name: "upload-config",
            summary: "upload kube-system/kubeadm-config and kubelet-config with the RBAC to read them",
            run_if: |r| r.live(),
            run: cluster::run_upload_config,
            subs: UPLOAD_CONFIG,
            kubeboot: false,
        },
        Phase {
            name: "upload-certs",
            summary: "upload the shared CAs to kube-system/kubeadm-certs, encrypted with the certificate key",
            run_if: |r| r.live() && r.input.settings.certificate_key.is_some(),
            run: cluster::run_upload_certs,
            subs: &[],
            kubeboot: false,
        },
        mark_control_plane(),
        Phase {
            name: "bootstrap-token",
            summary: "create the bootstrap tokens, their RBAC and kube-public/cluster-info",
            run_if: |r| r.live(),
            run: cluster::run_bootstrap_token,
            subs: &[],
            kubeboot: false,
        },
        Phase {
            name: "kubelet-finalize",
            summary: "point kubelet.conf at the kubelet's rotated client certificate",
            run_if: |r| r.live(),
            run: files::run_kubelet_finalize,
            subs: KUBELET_FINALIZE,
            kubeboot: false,
        },
        Phase {
            name: "addon",
            summary: "install the CoreDNS and kube-proxy addons",
            run_if: |r| r.live(),
            run: cluster::run_addon,
            subs: ADDON,
            kubeboot: false,
        },
        Phase {
            name: "show-join-command",
            summary: "print the worker join configuration (without the token secret)",
            run_if: |r| r.live(),
            run: cluster::run_show_join_command,
            subs: &[],
            kubeboot: false,
        },
    ]
}

/// Shared by init and a control-plane join: label and taint the Node.
fn mark_control_plane<'a>() -> Phase<NodeRun<'a>> {
    Phase {
        name: "mark-control-plane",
        summary: "label and taint this node as a control-plane node",
        run_if: |r| is_cp(r) && r.live(),
        run: cluster::run_mark_control_plane,
        subs: &[],
        kubeboot: false,
    }
}

/// The phases of `join` (worker or control plane), in kubeadm's order
/// (`cmd/kubeadm/app/cmd/join.go`, v1.32–v1.34: preflight,
/// control-plane-prepare, kubelet-start, etcd-join, kubelet-wait-bootstrap,
/// control-plane-join, wait-control-plane), with
/// kubeboot's `userdata-files`, `discovery` and `download-certs` where
/// kubeadm does that work inside its own phases.
pub fn join_phases<'a>() -> Vec<Phase<NodeRun<'a>>> {
    vec![
        Phase {
            name: "preflight",
            summary: "check the host can join",
            run_if: |r| r.live(),
            run: preflight::phase,
            subs: &[],
            kubeboot: false,
        },
        userdata_files(),
        Phase {
            name: "discovery",
            summary: "fetch and verify the cluster CA with the bootstrap token",
            run_if: |r| r.live(),
            run: join::run_discovery,
            subs: &[],
            kubeboot: true,
        },
        Phase {
            name: "download-certs",
            summary: "download the shared CAs from kube-system/kubeadm-certs with the certificate key",
            run_if: |r| {
                is_cp(r)
                    && r.live()
                    && r.input
                        .settings
                        .join
                        .as_ref()
                        .is_some_and(|j| j.certificate_key.is_some())
            },
            run: join::run_download_certs,
            subs: &[],
            kubeboot: true,
        },
        Phase {
            name: "control-plane-prepare",
            summary: "certificates, kubeconfigs and static pods for a joining control plane",
            run_if: is_cp,
            run: files::run_control_plane_prepare,
            subs: CONTROL_PLANE_PREPARE,
            kubeboot: false,
        },
        Phase {
            name: "kubelet-start",
            summary: "write the kubelet configuration and bootstrap kubeconfig, (re)start the kubelet",
            run_if: |_| true,
            run: files::run_kubelet_start,
            subs: &[],
            kubeboot: false,
        },
        Phase {
            name: "etcd-join",
            summary: "add this node to the etcd cluster",
            run_if: |r| local_etcd(r) && r.live(),
            run: join::run_etcd_join,
            subs: &[],
            kubeboot: false,
        },
        Phase {
            name: "kubelet-wait-bootstrap",
            summary: "wait for the kubelet's TLS bootstrap to finish",
            run_if: |r| r.live(),
            run: wait::tls_bootstrap,
            subs: &[],
            kubeboot: false,
        },
        Phase {
            name: "control-plane-join",
            summary: "join this node's control plane to the cluster: label and taint the Node",
            run_if: |r| is_cp(r) && r.live(),
            run: cluster::run_mark_control_plane,
            subs: CONTROL_PLANE_JOIN,
            kubeboot: false,
        },
        Phase {
            name: "wait-control-plane",
            summary: "wait for this node's control-plane components to be healthy",
            run_if: |r| is_cp(r) && r.live(),
            run: wait::control_plane,
            subs: &[],
            kubeboot: false,
        },
    ]
}

/// The phases for `mode`.
pub fn phases_for<'a>(mode: Mode) -> Vec<Phase<NodeRun<'a>>> {
    if mode == Mode::Init {
        init_phases()
    } else {
        join_phases()
    }
}
