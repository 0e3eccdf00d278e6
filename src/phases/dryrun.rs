//! `--dry-run`'s list of API requests: what the API phases of a live run
//! would send, built by the same object builders, sent nowhere.

use super::NodeRun;
use crate::api;
use crate::config::Mode;
use crate::error::Error;
use crate::kubelet;

/// The API requests a live run of the same phases would send, for
/// `--dry-run` (which contacts nothing): `VERB path (Kind namespace/name)`
/// per request, built by the same object builders the phases use. A POST
/// that finds its object existing is followed by a GET and a PUT (or
/// nothing, for objects kept as they are); those are not listed.
pub fn dry_run_requests(r: &NodeRun<'_>, skip: &[String]) -> Result<Vec<String>, Error> {
    let on = |phase: &str| !skip.iter().any(|s| s == phase);
    let mut out = Vec::new();
    let post = |o: &api::objects::ApiObject| format!("POST {} ({})", o.collection, o.what);
    let node_path = format!("/api/v1/nodes/{}", r.input.settings.node.name);
    match r.input.settings.mode {
        Mode::Init => {
            if on("wait-control-plane") {
                out.push("GET /livez (wait-control-plane, until healthy)".into());
            }
            if on("upload-config") {
                out.push(post(&api::objects::cluster_admins_binding()));
                let text = kubelet::config_yaml(&r.input.settings, &r.input.detected)?;
                for o in api::objects::upload_config(&r.input.settings, &text)? {
                    out.push(post(&o));
                }
                if !kubelet::node_local_cri_socket(&r.input.settings) {
                    out.push(format!(
                        "PATCH {node_path} (Node {}: CRI socket annotation)",
                        r.input.settings.node.name
                    ));
                }
            }
            if on("upload-certs") && r.input.settings.certificate_key.is_some() {
                out.push(
                    "POST /api/v1/namespaces/kube-system/secrets (Secret kube-system/kubeadm-certs and its owner token)"
                        .into(),
                );
            }
            if on("mark-control-plane") {
                out.push(format!(
                    "PATCH {node_path} (Node {}: control-plane label and taints)",
                    r.input.settings.node.name
                ));
            }
            if on("bootstrap-token") {
                for spec in &r.input.settings.bootstrap_tokens {
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
                let server = r.input.settings.control_plane_endpoint().url();
                for o in api::objects::cluster_info(&server, b"") {
                    out.push(post(&o));
                }
            }
            if on("addon") {
                for o in api::addons::all(&r.input.settings)? {
                    out.push(post(&o));
                }
            }
        }
        Mode::JoinWorker | Mode::JoinControlPlane => {
            let ci = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
            out.push(format!(
                "GET {ci} (ConfigMap kube-public/cluster-info, unverified, then again verified with the pinned CA)"
            ));
            out.push(
                "GET /api/v1/namespaces/kube-system/configmaps/kubeadm-config (ConfigMap kube-system/kubeadm-config, with the bootstrap token: the cluster's version, image repository, DNS domain and subnets)"
                    .into(),
            );
            out.push(
                "GET /api/v1/namespaces/kube-system/configmaps/kubelet-config (ConfigMap kube-system/kubelet-config, with the bootstrap token)"
                    .into(),
            );
            out.push(format!(
                "GET {node_path} (Node {}: is the name free?)",
                r.input.settings.node.name
            ));
            if r.input.settings.mode == Mode::JoinControlPlane && on("mark-control-plane") {
                out.push(format!(
                    "PATCH {node_path} (Node {}: control-plane label and taints)",
                    r.input.settings.node.name
                ));
            }
        }
    }
    Ok(out)
}
