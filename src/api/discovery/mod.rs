//! Token discovery, as `kubeadm join` does it: fetch `kube-public/
//! cluster-info` without trusting the server, verify it ([`verify`]: the
//! detached JWS and the CA pin), then fetch it again over TLS verified with
//! the pinned CA and require identical content; then the join checks made
//! with the bootstrap token ([`join`]).
//!
//! The API server endpoint comes from the config, so tests point it at a
//! loopback server.

pub mod verify;

use std::time::Duration;

pub use verify::{
    ClusterInfo, ConfigMap, pins_of, sign_detached, verify_cluster_info, verify_detached,
};

use crate::config::Join;
use crate::error::Error;
use crate::net::http::{self, Method, Retry, Step};

/// Path of the cluster-info ConfigMap.
pub const CLUSTER_INFO_PATH: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

/// How long discovery keeps trying by default (kubeadm: 5 minutes).
pub const DEFAULT_DISCOVERY_BUDGET: Duration = Duration::from_secs(300);

/// Runs token discovery against `join.api_server_endpoint` within `budget`.
pub fn discover(join: &Join, budget: Duration) -> Result<ClusterInfo, Error> {
    let started = std::time::Instant::now();
    let url = format!("{}{CLUSTER_INFO_PATH}", join.api_server_endpoint.url());
    let insecure = http::agent_unverified();
    let policy = Retry::within(budget);
    // Retry until the ConfigMap exists and carries a valid signature for our
    // token: the controller manager signs it asynchronously after init.
    // The verdict on a signature or pin is kept aside: it must not be
    // retried, and it is reported as "untrusted", not as a network failure.
    let mut untrusted: Option<Error> = None;
    // Pins that are given are always checked, as kubeadm does
    // (cmd/kubeadm/app/discovery/token/token.go: only an empty pin set skips
    // the CA check); unsafeSkipCAVerification only allows joining without one.
    let skip_pin = join.unsafe_skip_ca_verification && join.ca_cert_hashes.is_empty();
    let result = http::retry_watched(
        &policy,
        &format!("cluster-info at {url}"),
        |timeout| match http::send(&insecure, Method::Get, &url, &[], timeout) {
            Step::Done(reply) if reply.status == 200 => {
                match verify::verify_cluster_info(
                    &reply.body,
                    &join.token,
                    &join.ca_cert_hashes,
                    skip_pin,
                ) {
                    Ok(info) => Step::Done(info),
                    Err(e @ Error::Untrusted(_)) => {
                        let msg = e.to_string();
                        untrusted = Some(e);
                        Step::Stop(msg)
                    }
                    // A missing signature may still appear (the controller
                    // manager signs asynchronously); so may a malformed answer
                    // from a server still starting.
                    Err(e) => Step::Again(e.to_string()),
                }
            }
            Step::Done(reply) if matches!(reply.status, 401 | 403 | 404) => Step::Again(format!(
                "{} (cluster-info not readable yet)",
                http::status_text(reply.status)
            )),
            Step::Done(reply) => Step::Again(http::status_text(reply.status)),
            Step::Again(w) => Step::Again(w),
            Step::Stop(w) => Step::Stop(w),
        },
        |_| "verified".to_string(),
    );
    if let Some(e) = untrusted {
        return Err(Error::Untrusted(format!("discovery from {url}: {e}")));
    }
    let info = match result {
        Ok((info, _)) => info,
        Err(http::GaveUp::Permanent(t)) => {
            return Err(Error::Failed(format!("discovery from {url}: {}", t.last)));
        }
        Err(http::GaveUp::Budget(t)) => {
            return Err(Error::Failed(format!(
                "discovery from {url}: gave up after {} s ({t})",
                budget.as_secs()
            )));
        }
    };
    if skip_pin {
        log::warn!(target: "discovery", "CA not pinned (unsafeSkipCAVerification): trusting the CA {url} served");
    }
    // Second fetch, now verifying the server with the CA we just pinned.
    let roots: Vec<ureq::tls::Certificate<'static>> = http::certs_from_pem(&info.ca_pem);
    let secure = http::agent(Some(roots));
    // What is left of the budget: a busy server (429, 503) or a slow one
    // is waited for here as in the first fetch; only a TLS failure with the
    // pinned CA is a verdict on the server.
    let left = budget
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(5));
    let body = match http::retry_watched(
        &Retry::within(left),
        &format!("cluster-info over TLS verified with the pinned CA at {url}"),
        |t| http::send(&secure, Method::Get, &url, &[], t),
        |r| http::status_text(r.status),
    ) {
        Ok((reply, _)) if reply.status == 200 => reply.body,
        Ok((reply, _)) => {
            return Err(Error::Failed(format!(
                "discovery from {url}: the verified fetch returned {}",
                http::status_text(reply.status)
            )));
        }
        // Only a failed TLS handshake against the pinned CA says the server
        // is not the cluster we pinned; a 503, a timeout or an oversized
        // body on this fetch is a fault like any other: retryable.
        Err(http::GaveUp::Permanent(t)) if http::is_tls_failure(&t.last) => {
            return Err(Error::Untrusted(format!(
                "discovery from {url}: the API server failed TLS verification with the pinned CA ({t})"
            )));
        }
        Err(http::GaveUp::Permanent(t)) => {
            return Err(Error::Failed(format!(
                "discovery from {url}: the verified fetch failed ({t})"
            )));
        }
        Err(http::GaveUp::Budget(t)) => {
            return Err(Error::Failed(format!(
                "discovery from {url}: the verified fetch gave up within its budget ({t})"
            )));
        }
    };
    let cm: ConfigMap = serde_json::from_slice(&body).map_err(|e| {
        Error::Failed(format!(
            "discovery from {url}: verified cluster-info is not JSON: {e}"
        ))
    })?;
    if cm.data.get("kubeconfig") != Some(&info.kubeconfig) {
        return Err(Error::Untrusted(format!(
            "discovery from {url}: cluster-info changed between the unverified and the verified fetch; refusing to join"
        )));
    }
    Ok(info)
}

/// What a joining node learns from the cluster before it writes anything.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The verified cluster information (API server, CA).
    pub info: ClusterInfo,
    /// The cluster's KubeletConfiguration (kube-system/kubelet-config), when
    /// it has one the token may read.
    pub kubelet_config: Option<String>,
    /// The cluster's ClusterConfiguration (kube-system/kubeadm-config), when
    /// it has one the token may read.
    pub cluster_config: Option<String>,
}

/// kubeadm join's discovery: token discovery within `budget`, then, as
/// kubeadm does, refuse to impersonate a Node named `node_name` that is up
/// (invalid input: the node name must change), then read the kubelet
/// configuration the cluster was initialised with.
pub fn join(join: &Join, node_name: &str, budget: Duration) -> Result<Discovered, Error> {
    let info = discover(join, budget)?;
    log::info!(target: "discovery", "cluster CA verified; API server {}", info.server);
    if node_is_ready(&info, &join.token, node_name, budget)? {
        return Err(Error::Invalid(format!(
            "a Node named {node_name:?} already exists in the cluster and is Ready; give this machine another node.name (or delete that Node)"
        )));
    }
    let cluster_config = config_map_key(
        &info,
        &join.token,
        KUBEADM_CONFIG,
        "ClusterConfiguration",
        budget,
    )?;
    let kubelet_config = cluster_kubelet_config(&info, &join.token, budget)?;
    Ok(Discovered {
        info,
        kubelet_config,
        cluster_config,
    })
}

/// kube-system/kubeadm-config, which kubeadm init uploads and lets the
/// bootstrap token read (`kubeadm:nodes-kubeadm-config`).
pub const KUBEADM_CONFIG: &str = "kubeadm-config";

/// A GET against the API server with the bootstrap token, over TLS verified
/// with the cluster CA. Returns the status and body; transient failures are
/// retried within `budget`. The token only travels in the Authorization
/// header and is never logged.
pub fn get_with_token(
    server: &str,
    path: &str,
    ca_pem: &[u8],
    token: &crate::config::BootstrapToken,
    budget: Duration,
) -> Result<(u16, Vec<u8>), Error> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let roots = http::certs_from_pem(ca_pem);
    let agent = http::agent(Some(roots));
    let auth = format!("Bearer {}", token.expose());
    match http::retry_watched(
        &Retry::within(budget),
        &format!("GET {url}"),
        |t| http::send(&agent, Method::Get, &url, &[("Authorization", &auth)], t),
        |r| http::status_text(r.status),
    ) {
        Ok((reply, _)) => Ok((reply.status, reply.body)),
        Err(http::GaveUp::Permanent(t) | http::GaveUp::Budget(t)) => {
            Err(Error::Failed(format!("GET {url}: {t}")))
        }
    }
}

/// kube-system/kubelet-config: the cluster's KubeletConfiguration, as
/// `kubeadm init` uploads it. `None` when the cluster has none (404) or the
/// token may not read it (403).
pub fn cluster_kubelet_config(
    info: &ClusterInfo,
    token: &crate::config::BootstrapToken,
    budget: Duration,
) -> Result<Option<String>, Error> {
    config_map_key(info, token, "kubelet-config", "kubelet", budget)
}

/// `key` of the ConfigMap kube-system/`name`, read with the bootstrap
/// token. `None` when the cluster has none (404) or the token may not read
/// it (403).
pub fn config_map_key(
    info: &ClusterInfo,
    token: &crate::config::BootstrapToken,
    name: &str,
    key: &str,
    budget: Duration,
) -> Result<Option<String>, Error> {
    let path = format!("/api/v1/namespaces/kube-system/configmaps/{name}");
    match get_with_token(&info.server, &path, &info.ca_pem, token, budget)? {
        (200, body) => {
            let cm: ConfigMap = serde_json::from_slice(&body)
                .map_err(|e| Error::Failed(format!("{path}: not a ConfigMap: {e}")))?;
            Ok(cm.data.get(key).cloned())
        }
        (403 | 404, _) => Ok(None),
        (status, _) => Err(Error::Failed(format!(
            "GET {path}: {}",
            http::status_text(status)
        ))),
    }
}

/// kubeadm's join check: a Node with this name that exists and is Ready
/// means another machine already is this node. `Ok(true)` when so;
/// `Ok(false)` when absent, not Ready, or not readable with the token.
pub fn node_is_ready(
    info: &ClusterInfo,
    token: &crate::config::BootstrapToken,
    name: &str,
    budget: Duration,
) -> Result<bool, Error> {
    let path = format!("/api/v1/nodes/{name}");
    match get_with_token(&info.server, &path, &info.ca_pem, token, budget)? {
        (200, body) => {
            let node: super::objects::Node = serde_json::from_slice(&body)
                .map_err(|e| Error::Failed(format!("{path}: not a Node: {e}")))?;
            Ok(node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"))
        }
        _ => Ok(false),
    }
}
