//! kubeadm's `etcd-join` for a control-plane node joining a cluster with
//! stacked (local) etcd:
//!
//! 1. the existing members' client URLs, from the
//!    `kubeadm.kubernetes.io/etcd.advertise-client-urls` annotation of the
//!    `component=etcd,tier=control-plane` pods in kube-system, read from the
//!    API server as `admin.conf`'s user ([`endpoints_from_api`]);
//! 2. etcd's v3 JSON gateway (`POST /v3/cluster/member/...` on the client
//!    port, etcd 3.4+), with TLS client auth as `etcd/healthcheck-client`
//!    ([`EtcdClient`]): the member list, `member add` as a learner with this
//!    node's peer URL (an existing member with that peer URL is reused, so a
//!    rerun does not add a second one), and `member promote`, retried until
//!    the learner has caught up.
//!
//! The `--initial-cluster` for this node's `etcd.yaml` is built from the
//! member list by [`initial_cluster`]. Every URL is a runtime parameter, so
//! tests point it at loopback servers.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use ureq::Agent;

use crate::error::Error;
use crate::manifests::EtcdMember;
use crate::secret::Secret;
use crate::userdata::http::{self, Method, Retry, Step};

/// The API path listing the etcd static pods (kubeadm's label selector).
pub const ETCD_PODS_PATH: &str =
    "/api/v1/namespaces/kube-system/pods?labelSelector=component%3Detcd,tier%3Dcontrol-plane";

/// The annotation kubeadm puts on the etcd static pod: its client URLs.
pub const ADVERTISE_ANNOTATION: &str = "kubeadm.kubernetes.io/etcd.advertise-client-urls";

/// One etcd member as the JSON gateway reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member ID.
    pub id: u64,
    /// Its name; empty for a member that was added but has not started.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
    /// Its client URLs (empty until it started).
    pub client_urls: Vec<String>,
    /// Whether it is a learner (non-voting).
    pub is_learner: bool,
}

/// The outcome of [`EtcdClient::join_member`].
#[derive(Debug, Clone)]
pub struct Joined {
    /// This node's member ID.
    pub id: u64,
    /// The members after the add (this node included).
    pub members: Vec<Member>,
    /// `false` when a member with this peer URL already existed.
    pub added: bool,
}

/// The client URLs in the annotations of a PodList (JSON), deduplicated,
/// in order of appearance. A pod without the annotation is skipped.
pub fn endpoints_from_pods(body: &[u8]) -> Result<Vec<String>, Error> {
    let list: k8s_openapi::List<k8s_openapi::api::core::v1::Pod> = serde_json::from_slice(body)
        .map_err(|e| Error::Failed(format!("{ETCD_PODS_PATH}: not a PodList: {e}")))?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for pod in &list.items {
        let Some(v) = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ADVERTISE_ANNOTATION))
        else {
            continue;
        };
        for u in v.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            if seen.insert(u.to_string()) {
                out.push(u.to_string());
            }
        }
    }
    Ok(out)
}

/// The existing etcd client URLs, read from the API server at `server`
/// (verified with `ca_pem`) as the user of the given client certificate
/// (`admin.conf`'s), retried within `budget`.
pub fn endpoints_from_api(
    server: &str,
    ca_pem: &[u8],
    cert_pem: &[u8],
    key: &Secret,
    budget: Duration,
) -> Result<Vec<String>, Error> {
    let url = format!("{}{ETCD_PODS_PATH}", server.trim_end_matches('/'));
    let agent = http::agent_with_client_cert(
        http::certs_from_pem(ca_pem),
        cert_pem,
        key.expose().as_bytes(),
    )
    .map_err(|e| Error::Failed(format!("etcd-join: admin.conf: {e}")))?;
    let reply = match http::retry(
        &Retry::within(budget),
        |t| http::send(&agent, Method::Get, &url, &[], t),
        |r| http::status_text(r.status),
    ) {
        Ok((reply, _)) => reply,
        Err(http::GaveUp::Permanent(t) | http::GaveUp::Budget(t)) => {
            return Err(Error::Failed(format!(
                "etcd-join: listing the etcd pods: GET {url}: {t}"
            )));
        }
    };
    if reply.status != 200 {
        return Err(Error::Failed(format!(
            "etcd-join: listing the etcd pods: GET {url}: {}",
            http::status_text(reply.status)
        )));
    }
    let eps = endpoints_from_pods(&reply.body)?;
    if eps.is_empty() {
        return Err(Error::Failed(format!(
            "etcd-join: GET {url}: no etcd pod carries the {ADVERTISE_ANNOTATION} annotation; is this a kubeadm cluster with stacked etcd?"
        )));
    }
    Ok(eps)
}

/// A uint64 the gateway wrote as a JSON string or a number.
fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn member(v: &Value) -> Option<Member> {
    Some(Member {
        id: as_u64(v.get("ID")?)?,
        name: v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        peer_urls: strings(v.get("peerURLs")),
        client_urls: strings(v.get("clientURLs")),
        is_learner: v.get("isLearner").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// The `members` array of a gateway reply.
fn members(v: &Value) -> Result<Vec<Member>, String> {
    let Some(arr) = v.get("members").and_then(Value::as_array) else {
        return Err("the reply has no members array".into());
    };
    arr.iter()
        .map(|m| member(m).ok_or_else(|| format!("a member without a valid ID: {m}")))
        .collect()
}

/// The text of a gateway error reply (`{"error": ..., "message": ...}`).
fn gateway_error(status: u16, body: &[u8]) -> String {
    let msg = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.get("message")
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    match msg {
        Some(m) => format!("{}: {m}", http::status_text(status)),
        None => http::status_text(status),
    }
}

/// The etcd members a joining node lists in `--initial-cluster`: every
/// named member's peer URLs except `own_peer_url` (the manifest adds this
/// node itself).
pub fn initial_cluster(members: &[Member], own_peer_url: &str) -> Vec<EtcdMember> {
    members
        .iter()
        .filter(|m| !m.name.is_empty())
        .flat_map(|m| {
            m.peer_urls
                .iter()
                .filter(|u| *u != own_peer_url)
                .map(|u| EtcdMember {
                    name: m.name.clone(),
                    peer_url: u.clone(),
                })
        })
        .collect()
}

/// A client of etcd's v3 JSON gateway over mutual TLS, trying the given
/// endpoints in turn.
pub struct EtcdClient {
    agent: Agent,
    endpoints: Vec<String>,
    budget: Duration,
}

/// How one gateway call reads a non-200 reply.
type OnError<'f> = &'f dyn Fn(&str) -> Option<bool>;

impl EtcdClient {
    /// A client for `endpoints` (`https://host:2379`), verifying etcd with
    /// `ca_pem` (`etcd/ca.crt`) and presenting `cert_pem`/`key`
    /// (`etcd/healthcheck-client`). Each call retries within `budget`.
    pub fn new(
        endpoints: Vec<String>,
        ca_pem: &[u8],
        cert_pem: &[u8],
        key: &Secret,
        budget: Duration,
    ) -> Result<Self, Error> {
        if endpoints.is_empty() {
            return Err(Error::Failed("etcd-join: no etcd endpoints".into()));
        }
        let agent = http::agent_with_client_cert(
            http::certs_from_pem(ca_pem),
            cert_pem,
            key.expose().as_bytes(),
        )
        .map_err(|e| Error::Failed(format!("etcd-join: etcd/healthcheck-client: {e}")))?;
        Ok(EtcdClient {
            agent,
            endpoints: endpoints
                .into_iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            budget,
        })
    }

    /// POSTs `body` to `path` on the endpoints in turn until one answers
    /// 200, within `policy`. A non-200 answer is passed to `on_error`:
    /// `Some(true)` retries, `Some(false)` counts as success (returns
    /// `Value::Null`), `None` stops.
    fn call(
        &self,
        step: &str,
        path: &str,
        body: &Value,
        policy: &Retry,
        on_error: OnError<'_>,
    ) -> Result<Value, Error> {
        let bytes = body.to_string().into_bytes();
        let mut n = 0usize;
        let mut last_url = String::new();
        let result = http::retry(
            policy,
            |t| {
                let url = format!("{}{path}", self.endpoints[n % self.endpoints.len()]);
                n += 1;
                let step = match http::send(&self.agent, Method::PostJson(&bytes), &url, &[], t) {
                    Step::Done(r) if r.status == 200 => match serde_json::from_slice(&r.body) {
                        Ok(v) => Step::Done(v),
                        Err(e) => Step::Stop(format!("the reply is not JSON: {e}")),
                    },
                    Step::Done(r) => {
                        let msg = gateway_error(r.status, &r.body);
                        match on_error(&msg) {
                            Some(true) => Step::Again(msg),
                            Some(false) => Step::Done(Value::Null),
                            None => Step::Stop(msg),
                        }
                    }
                    Step::Again(w) => Step::Again(w),
                    Step::Stop(w) => Step::Stop(w),
                };
                last_url = url;
                step
            },
            |_| "ok".to_string(),
        );
        match result {
            Ok((v, _)) => Ok(v),
            Err(http::GaveUp::Permanent(t)) => Err(Error::Failed(format!(
                "etcd-join {step}: POST {last_url}: {t}"
            ))),
            Err(http::GaveUp::Budget(t)) => Err(Error::Failed(format!(
                "etcd-join {step}: POST {last_url}: gave up after {} s ({t})",
                policy.budget.as_secs()
            ))),
        }
    }

    /// The current members.
    pub fn member_list(&self) -> Result<Vec<Member>, Error> {
        let v = self.call(
            "member list",
            "/v3/cluster/member/list",
            &json!({}),
            &Retry::within(self.budget),
            &|_| None,
        )?;
        members(&v).map_err(|e| Error::Failed(format!("etcd-join member list: {e}")))
    }

    /// Adds this node as a learner with `peer_url`, or reuses the member
    /// that already has it (a rerun).
    pub fn join_member(&self, peer_url: &str) -> Result<Joined, Error> {
        let list = self.member_list()?;
        if let Some(m) = list
            .iter()
            .find(|m| m.peer_urls.iter().any(|u| u == peer_url))
        {
            return Ok(Joined {
                id: m.id,
                members: list.clone(),
                added: false,
            });
        }
        let v = self.call(
            "member add",
            "/v3/cluster/member/add",
            &json!({"peerURLs": [peer_url], "isLearner": true}),
            &Retry::within(self.budget),
            &|_| None,
        )?;
        let bad = |e: String| Error::Failed(format!("etcd-join member add: {e}"));
        let id = v
            .get("member")
            .and_then(member)
            .map(|m| m.id)
            .ok_or_else(|| bad("the reply has no member with an ID".into()))?;
        Ok(Joined {
            id,
            members: members(&v).map_err(bad)?,
            added: true,
        })
    }

    /// Promotes learner `id` to a voting member, retrying every 0.5–2 s
    /// within `budget` while etcd says the learner has not caught up. A
    /// member that is no longer a learner counts as promoted.
    pub fn promote(&self, id: u64, budget: Duration) -> Result<(), Error> {
        let policy = Retry {
            budget,
            attempt_timeout: Duration::from_secs(5).min(budget.max(Duration::from_millis(100))),
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(2),
        };
        self.call(
            "member promote",
            "/v3/cluster/member/promote",
            &json!({"ID": id.to_string()}),
            &policy,
            &|msg| {
                // etcd's ErrLearnerNotReady: "can only promote a learner
                // member which is in sync with leader"; ErrMemberNotLearner:
                // "can only promote a learner member" (already promoted).
                if msg.contains("in sync with leader") {
                    Some(true)
                } else if msg.contains("can only promote a learner member") {
                    Some(false)
                } else {
                    None
                }
            },
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_list_annotations_give_endpoints() {
        let body = br#"{"apiVersion":"v1","kind":"PodList","metadata":{},"items":[
            {"metadata":{"name":"etcd-cp-1","annotations":{"kubeadm.kubernetes.io/etcd.advertise-client-urls":"https://10.0.0.1:2379"}}},
            {"metadata":{"name":"etcd-cp-2","annotations":{"kubeadm.kubernetes.io/etcd.advertise-client-urls":"https://10.0.0.2:2379,https://10.0.0.1:2379"}}},
            {"metadata":{"name":"etcd-odd"}}
        ]}"#;
        assert_eq!(
            endpoints_from_pods(body).unwrap(),
            ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
        );
        let empty = br#"{"apiVersion":"v1","kind":"PodList","metadata":{},"items":[]}"#;
        assert!(endpoints_from_pods(empty).unwrap().is_empty());
        let err = endpoints_from_pods(b"<html>").unwrap_err().to_string();
        assert!(err.contains("not a PodList"), "{err}");
    }

    #[test]
    fn members_accept_string_and_number_ids() {
        let v: Value = serde_json::from_str(
            r#"{"members":[
                {"ID":"10276657743932975437","name":"cp-1","peerURLs":["https://10.0.0.1:2380"],"clientURLs":["https://10.0.0.1:2379"]},
                {"ID":42,"peerURLs":["https://10.0.0.2:2380"],"isLearner":true}
            ]}"#,
        )
        .unwrap();
        let m = members(&v).unwrap();
        assert_eq!(m[0].id, 10276657743932975437);
        assert_eq!(m[0].name, "cp-1");
        assert!(!m[0].is_learner);
        assert_eq!(
            (m[1].id, m[1].is_learner, m[1].name.as_str()),
            (42, true, "")
        );
        assert_eq!(
            initial_cluster(&m, "https://10.0.0.2:2380"),
            [EtcdMember {
                name: "cp-1".into(),
                peer_url: "https://10.0.0.1:2380".into()
            }]
        );
        let bad: Value = serde_json::from_str(r#"{"members":[{"ID":"x"}]}"#).unwrap();
        assert!(members(&bad).is_err());
        assert!(members(&json!({})).is_err());
    }

    #[test]
    fn gateway_errors_are_readable() {
        assert_eq!(
            gateway_error(
                400,
                br#"{"error":"etcdserver: x","code":9,"message":"etcdserver: x"}"#
            ),
            "HTTP 400 Bad Request: etcdserver: x"
        );
        assert_eq!(gateway_error(404, b"nope"), "HTTP 404 Not Found");
    }
}
