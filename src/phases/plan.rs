//! The plans: which phases run, in which order, for each role. Phase
//! names follow kubeadm's (`kubeadm init phase certs` ↔ `kubeboot init
//! phase certs`), plus `userdata-files`, which puts files the userdata
//! carries (Cluster API's CA certificates and keys) on disk before any PKI
//! work. A phase's `run_if` says whether it applies to this node; the
//! bodies live in one file per group (`files`, `join`, `cluster`, `wait`,
//! `preflight`).

use super::{NodeRun, Phase, cluster, files, join, preflight, wait};
use crate::config::Mode;

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
    }
}

/// The phases of `init` (first control-plane node), in order.
pub fn init_phases<'a>() -> Vec<Phase<NodeRun<'a>>> {
    vec![
        Phase {
            name: "preflight",
            summary: "check the host can run a control plane",
            run_if: |r| r.live(),
            run: preflight::phase,
        },
        userdata_files(),
        Phase {
            name: "certs",
            summary: "load or create the certificate tree",
            run_if: is_cp,
            run: files::run_certs,
        },
        Phase {
            name: "kubeconfig",
            summary: "load or create the kubeconfig files",
            run_if: is_cp,
            run: files::run_kubeconfigs,
        },
        Phase {
            name: "etcd",
            summary: "write the local etcd static pod",
            run_if: local_etcd,
            run: files::run_etcd,
        },
        Phase {
            name: "control-plane",
            summary: "write the control-plane static pods",
            run_if: is_cp,
            run: files::run_control_plane,
        },
        Phase {
            name: "kubelet-start",
            summary: "write the kubelet configuration and (re)start the kubelet",
            run_if: |_| true,
            run: files::run_kubelet_start,
        },
        Phase {
            name: "wait-control-plane",
            summary: "wait for the kubelet and the control-plane components to be healthy",
            run_if: |r| r.live(),
            run: wait::control_plane,
        },
        Phase {
            name: "upload-config",
            summary: "upload kube-system/kubeadm-config and kubelet-config with the RBAC to read them",
            run_if: |r| r.live(),
            run: cluster::run_upload_config,
        },
        Phase {
            name: "upload-certs",
            summary: "upload the shared CAs to kube-system/kubeadm-certs, encrypted with the certificate key",
            run_if: |r| r.live() && r.input.settings.certificate_key.is_some(),
            run: cluster::run_upload_certs,
        },
        mark_control_plane(),
        Phase {
            name: "bootstrap-token",
            summary: "create the bootstrap tokens, their RBAC and kube-public/cluster-info",
            run_if: |r| r.live(),
            run: cluster::run_bootstrap_token,
        },
        Phase {
            name: "addon",
            summary: "install the CoreDNS and kube-proxy addons",
            run_if: |r| r.live(),
            run: cluster::run_addon,
        },
        Phase {
            name: "kubelet-finalize",
            summary: "point kubelet.conf at the kubelet's rotated client certificate",
            run_if: |r| r.live(),
            run: files::run_kubelet_finalize,
        },
        Phase {
            name: "show-join-command",
            summary: "print the worker join configuration (without the token secret)",
            run_if: |r| r.live(),
            run: cluster::run_show_join_command,
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
    }
}

/// The phases of `join` (worker or control plane), in order.
pub fn join_phases<'a>() -> Vec<Phase<NodeRun<'a>>> {
    vec![
        Phase {
            name: "preflight",
            summary: "check the host can join",
            run_if: |r| r.live(),
            run: preflight::phase,
        },
        userdata_files(),
        Phase {
            name: "discovery",
            summary: "fetch and verify the cluster CA with the bootstrap token",
            run_if: |r| r.live(),
            run: join::run_discovery,
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
        },
        Phase {
            name: "control-plane-prepare",
            summary: "certificates, kubeconfigs and static pods for a joining control plane",
            run_if: is_cp,
            run: files::run_control_plane_prepare,
        },
        Phase {
            name: "kubelet-start",
            summary: "write the kubelet configuration and bootstrap kubeconfig, (re)start the kubelet",
            run_if: |_| true,
            run: files::run_kubelet_start,
        },
        Phase {
            name: "etcd-join",
            summary: "add this node to the etcd cluster",
            run_if: |r| local_etcd(r) && r.live(),
            run: join::run_etcd_join,
        },
        Phase {
            name: "wait-bootstrap",
            summary: "wait for the kubelet's TLS bootstrap to finish",
            run_if: |r| r.live(),
            run: wait::tls_bootstrap,
        },
        Phase {
            name: "wait-control-plane",
            summary: "wait for this node's control-plane components to be healthy",
            run_if: |r| is_cp(r) && r.live(),
            run: wait::control_plane,
        },
        mark_control_plane(),
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
