//! `--dry-run`'s list of API requests: what the API phases of a live run
//! would send, built by the same object builders, sent nowhere.

use super::{NodeRun, runner};
use crate::api;
use crate::config::Mode;
use crate::error::Error;
use crate::kubelet;

/// The API requests a live run of the same phases would send, for
/// `--dry-run` (which contacts nothing): `VERB path (Kind namespace/name)`
/// per request, built by the same object builders the phases use, for the
/// phases and sub-phases the run selected (`skip`, `phase NAME[/SUB]`). A
/// POST that finds its object existing is followed by a GET and a PUT (or
/// nothing, for objects kept as they are); those are not listed.
pub fn dry_run_requests(
    r: &NodeRun<'_>,
    skip: &[String],
    only: Option<&str>,
) -> Result<Vec<String>, Error> {
    let s = &r.input.settings;
    let list = super::phases_for(s.mode);
    // the sub-phases `phase` runs with (empty for a phase without any), or
    // None when it is not selected
    let selected = |phase: &str| {
        list.iter()
            .find(|p| p.name == phase)
            .and_then(|p| runner::chosen(p, skip, only))
    };
    let on = |phase: &str| selected(phase).is_some();
    let sub = |phase: &str, name: &str| selected(phase).is_some_and(|subs| subs.contains(&name));
    let mut out = Vec::new();
    let post = |o: &api::objects::ApiObject| format!("POST {} ({})", o.collection, o.what);
    let name = &s.node.name;
    let node_path = format!("/api/v1/nodes/{name}");
    let cri_patch = format!("PATCH {node_path} (Node {name}: CRI socket annotation)");
    let mark = format!("PATCH {node_path} (Node {name}: control-plane label and taints)");
    match s.mode {
        Mode::Init => {
            if on("wait-control-plane") {
                out.push("GET /livez (wait-control-plane, until healthy)".into());
            }
            if on("upload-config") {
                out.push(post(&api::objects::cluster_admins_binding()));
                // the cluster-wide configuration, as upload-config sends it
                let text = kubelet::config_yaml(s, &r.input.detected)?;
                let (kubeadm, kubelet) = (
                    sub("upload-config", "kubeadm"),
                    sub("upload-config", "kubelet"),
                );
                for o in api::objects::upload_config(s, &text)? {
                    let for_kubelet = o.item.contains(api::objects::KUBELET_CONFIG);
                    if (for_kubelet && kubelet) || (!for_kubelet && kubeadm) {
                        out.push(post(&o));
                    }
                }
                if kubelet && !kubelet::node_local_cri_socket(s) {
                    out.push(cri_patch.clone());
                }
            }
            if on("upload-certs") && s.certificate_key.is_some() {
                out.push(
                    "POST /api/v1/namespaces/kube-system/secrets (Secret kube-system/kubeadm-certs and its owner token)"
                        .into(),
                );
            }
            if on("mark-control-plane") {
                out.push(mark.clone());
            }
            if on("bootstrap-token") {
                for spec in &s.bootstrap_tokens {
                    let id = spec
                        .token
                        .as_ref()
                        .map_or_else(|| "<generated>".to_string(), |t| t.id.clone());
                    out.push(format!(
                        "POST /api/v1/namespaces/kube-system/secrets (Secret kube-system/bootstrap-token-{id})"
                    ));
                }
                for o in api::objects::bootstrap_rbac() {
                    out.push(post(&o));
                }
                let server = s.control_plane_endpoint().url();
                for o in api::objects::cluster_info(&server, b"") {
                    out.push(post(&o));
                }
            }
            if sub("addon", "coredns") && !s.cluster.dns.disabled {
                out.extend(api::addons::coredns(s)?.iter().map(post));
            }
            if sub("addon", "kube-proxy") && !s.cluster.proxy.disabled {
                out.extend(api::addons::kube_proxy(s)?.iter().map(post));
            }
        }
        Mode::JoinWorker | Mode::JoinControlPlane => {
            let cp = s.mode == Mode::JoinControlPlane;
            if on("discovery") {
                let ci = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
                out.push(format!(
                    "GET {ci} (ConfigMap kube-public/cluster-info, unverified, then again verified with the pinned CA)"
                ));
                out.push(format!("GET {node_path} (Node {name}: is the name free?)"));
                out.push(
                    "GET /api/v1/namespaces/kube-system/configmaps/kubeadm-config (ConfigMap kube-system/kubeadm-config, with the bootstrap token: the cluster's version, image repository, DNS domain and subnets)"
                        .into(),
                );
                out.push(
                    "GET /api/v1/namespaces/kube-system/configmaps/kubelet-config (ConfigMap kube-system/kubelet-config, with the bootstrap token)"
                        .into(),
                );
            }
            let certificate_key = s.join.as_ref().is_some_and(|j| j.certificate_key.is_some());
            if cp && certificate_key && on("download-certs") {
                out.push(format!(
                    "GET {} (Secret kube-system/kubeadm-certs, with the bootstrap token)",
                    api::certs::SECRET_PATH
                ));
            }
            if cp && s.cluster.etcd.is_local() && on("etcd-join") {
                out.push(format!(
                    "GET {} (the etcd members' client URLs; then etcd: member add as learner, promote)",
                    api::etcd::ETCD_PODS_PATH
                ));
            }
            if on("kubelet-wait-bootstrap") && !kubelet::node_local_cri_socket(s) {
                out.push(cri_patch);
            }
            if cp && sub("control-plane-join", "mark-control-plane") {
                out.push(mark);
            }
        }
    }
    Ok(out)
}
