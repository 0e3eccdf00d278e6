//! kubeadm's `etcd-join` for a control-plane node joining a cluster with
//! stacked (local) etcd, as kubeadm 1.32–1.34 does it (etcd learner mode is
//! GA and always on from 1.32; the `EtcdLearnerMode` gate is gone in 1.33):
//!
//! 1. **Endpoints** ([`endpoints_from_api`]): the existing members' client
//!    URLs, from the `kubeadm.kubernetes.io/etcd.advertise-client-urls`
//!    annotation of the pods labelled `component=etcd,tier=control-plane`
//!    in kube-system, read as `admin.conf`'s user. No etcd pod yet (not
//!    mirrored) is retried within the budget; etcd pods without the
//!    annotation fail at once. kubeadm has no override for these endpoints.
//!    Then, like etcd's client `Sync`, the endpoints become the client URLs
//!    of the started voting members ([`EtcdClient::sync_endpoints`]).
//! 2. **Health** ([`EtcdClient::check_health`], kubeadm's check-etcd /
//!    `CheckClusterHealth`): every endpoint must answer `status` before
//!    anything changes.
//! 3. **Learner** ([`EtcdClient::join_member`]): `member add` as a learner
//!    with this node's peer URL; a member that already has it is reused
//!    (a rerun never adds a second one).
//! 4. **Promote** ([`EtcdClient::promote`], after the caller wrote
//!    etcd.yaml and the kubelet started etcd): `member promote`, retried
//!    with jittered backoff while etcd says the learner is not in sync yet,
//!    within a budget; an already voting member counts as promoted.
//! 5. **Available** ([`EtcdClient::wait_available`], kubeadm's
//!    `WaitForClusterAvailable`): every endpoint, this node's included,
//!    answers `status`.
//!
//! All of it goes through etcd's v3 JSON gateway (`POST /v3/...` on the
//! client port, etcd 3.4+) with TLS client auth as
//! `etcd/healthcheck-client` ([`EtcdClient`]). The `--initial-cluster` for
//! this node's `etcd.yaml` is built from the member list by
//! [`initial_cluster`]. Every URL is a runtime parameter, so tests point it
//! at loopback servers.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};
use ureq::Agent;

use crate::error::{Context, Error};
use crate::manifests::EtcdMember;
use crate::net::http::{self, Method, Retry, Step};
use crate::secret::Secret;

/// The API path listing the etcd static pods (kubeadm's label selector).
pub const ETCD_PODS_PATH: &str =
    "/api/v1/namespaces/kube-system/pods?labelSelector=component%3Detcd,tier%3Dcontrol-plane";

/// The annotation kubeadm puts on the etcd static pod: its client URLs.
pub const ADVERTISE_ANNOTATION: &str = "kubeadm.kubernetes.io/etcd.advertise-client-urls";

/// What was looked for, for error messages.
const LOOKED_FOR: &str = "pods labelled component=etcd,tier=control-plane in kube-system";

/// etcd's client port (kubeadm's constant; not configurable for stacked etcd).
pub const CLIENT_PORT: u16 = 2379;
/// etcd's peer port.
pub const PEER_PORT: u16 = 2380;

fn url_for(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V6(a) => format!("https://[{a}]:{port}"),
        IpAddr::V4(a) => format!("https://{a}:{port}"),
    }
}

/// This node's etcd peer URL, `https://<advertise>:2380` (kubeadm's `GetPeerURL`).
pub fn peer_url(advertise: IpAddr) -> String {
    url_for(advertise, PEER_PORT)
}

/// This node's etcd client URL, `https://<advertise>:2379` (kubeadm's `GetClientURL`).
pub fn client_url(advertise: IpAddr) -> String {
    url_for(advertise, CLIENT_PORT)
}

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

impl Member {
    /// How logs and errors name the member: `name (id, peer URL)`.
    pub fn label(&self) -> String {
        let name = if self.name.is_empty() {
            "<not started>"
        } else {
            &self.name
        };
        format!(
            "{name} ({:016x}, {})",
            self.id,
            self.peer_urls.first().map_or("", String::as_str)
        )
    }
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

/// The outcome of [`EtcdClient::promote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promoted {
    /// `member promote` succeeded now, after this many attempts.
    Now(u32),
    /// The member already was a voting member (a rerun).
    Already,
}

/// The client URLs in the annotations of a PodList (JSON), deduplicated,
/// in order of appearance. A pod without the annotation is skipped.
pub fn endpoints_from_pods(body: &[u8]) -> Result<Vec<String>, Error> {
    pod_endpoints(body).map(|(eps, _)| eps)
}

/// The annotated client URLs and the number of etcd pods listed.
fn pod_endpoints(body: &[u8]) -> Result<(Vec<String>, usize), Error> {
    // Only the annotations are read: k8s-openapi's Pod decoder (PodSpec,
    // Volume, PodStatus, ...) would cost some 150 KB of the binary for them.
    #[derive(serde::Deserialize)]
    struct PodList {
        items: Vec<PodItem>,
    }
    #[derive(serde::Deserialize)]
    struct PodItem {
        #[serde(default)]
        metadata: super::objects::NodeMeta,
    }
    let list: PodList = serde_json::from_slice(body)
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
    Ok((out, list.items.len()))
}

/// The existing etcd client URLs, read from the API server at `server`
/// (verified with `ca_pem`) as the user of the given client certificate
/// (`admin.conf`'s), as kubeadm's `getEtcdEndpoints`: errors and an empty
/// list (the etcd static pods are not mirrored yet) are retried within
/// `budget`; etcd pods without the annotation fail at once.
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
    .context("etcd-join: admin.conf")?;
    let result = http::retry_watched(
        &Retry::within(budget),
        &format!("the etcd pods at {url}"),
        |t| match http::send(&agent, Method::Get, &url, &[], t) {
            Step::Done(r) if r.status == 200 => match pod_endpoints(&r.body) {
                Ok((eps, _)) if !eps.is_empty() => Step::Done(eps),
                Ok((_, 0)) => Step::Again(format!("no {LOOKED_FOR} yet")),
                Ok((_, n)) => Step::Stop(format!(
                    "{n} etcd pod(s) listed, none has the {ADVERTISE_ANNOTATION} annotation"
                )),
                Err(e) => Step::Stop(e.to_string()),
            },
            // 5xx and 429 come back as `Step::Again` from `send`: any
            // other answer is a refusal that waiting does not change
            Step::Done(r) => Step::Stop(http::status_text(r.status)),
            Step::Again(w) => Step::Again(w),
            Step::Stop(w) => Step::Stop(w),
        },
        |eps| eps.join(","),
    );
    match result {
        Ok((eps, _)) => Ok(eps),
        Err(http::GaveUp::Permanent(t) | http::GaveUp::Budget(t)) => Err(Error::Failed(format!(
            "etcd-join: listing the etcd endpoints ({LOOKED_FOR}, annotation {ADVERTISE_ANNOTATION}): GET {url}: {t}"
        ))),
    }
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
/// member's peer URLs except `own_peer_url` (the manifest adds this node
/// itself). A member that has not started yet has no name; as kubeadm, it
/// is listed under its ID in hex (etcd compares the peer URLs, and a
/// member left out would make it refuse the configuration).
pub fn initial_cluster(members: &[Member], own_peer_url: &str) -> Vec<EtcdMember> {
    members
        .iter()
        .filter(|m| !m.peer_urls.iter().any(|u| u == own_peer_url))
        .flat_map(|m| {
            let name = if m.name.is_empty() {
                format!("{:x}", m.id)
            } else {
                m.name.clone()
            };
            m.peer_urls.iter().map(move |u| EtcdMember {
                name: name.clone(),
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
    /// What errors are prefixed with (`etcd-join`, `reset`).
    label: &'static str,
}

/// How one gateway call reads a non-200 reply.
type OnError<'f> = &'f dyn Fn(&str) -> Option<bool>;

/// etcd's ErrLearnerNotReady: the learner has not caught up yet.
const NOT_IN_SYNC: &str = "in sync with leader";
/// etcd's ErrMemberNotLearner: promoted already.
const NOT_LEARNER: &str = "can only promote a learner member";
/// etcd's ErrTooManyLearners: another learner is not promoted yet
/// (`--max-learners`, 1 by default).
const TOO_MANY_LEARNERS: &str = "too many learner members";
/// etcd's ErrPeerURLExist.
const PEER_EXISTS: &str = "Peer URLs already exists";

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
        .context("etcd-join: etcd/healthcheck-client")?;
        Ok(EtcdClient {
            agent,
            endpoints: endpoints
                .into_iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            budget,
            label: "etcd-join",
        })
    }

    /// The same client, its errors prefixed with `label` instead of `etcd-join`.
    pub fn with_label(mut self, label: &'static str) -> Self {
        self.label = label;
        self
    }

    /// Talk to `endpoints` from now on (ignored when empty).
    pub fn set_endpoints(&mut self, endpoints: Vec<String>) {
        if !endpoints.is_empty() {
            self.endpoints = endpoints
                .into_iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect();
        }
    }

    /// Whether `endpoint` itself answers `status` within `budget`.
    pub fn answers_status(&self, endpoint: &str, budget: Duration) -> bool {
        self.status_each(&[endpoint.trim_end_matches('/').to_string()], budget)
            .is_ok()
    }

    /// `member remove` of member `id`, through the current endpoints; a
    /// member that is already gone counts as removed.
    pub fn remove_member(&self, id: u64) -> Result<(), Error> {
        self.call(
            "member remove",
            "/v3/cluster/member/remove",
            &json!({"ID": id.to_string()}),
            &Retry::within(self.budget),
            &|msg| msg.contains("member not found").then_some(false),
        )
        .map(|_| ())
    }

    /// One POST of `body` to `url`, read as a gateway reply: 200 → the
    /// JSON; another status → `on_error` (`Some(true)` retry, `Some(false)`
    /// counts as success with `Value::Null`, `None` stop).
    fn post_once(&self, url: &str, body: &[u8], t: Duration, on_error: OnError<'_>) -> Step<Value> {
        match http::send(&self.agent, Method::PostJson(body), url, &[], t) {
            Step::Done(r) if r.status == 200 => match serde_json::from_slice(&r.body) {
                Ok(v) => Step::Done(v),
                Err(e) => Step::Stop(format!("the reply is not JSON: {e}")),
            },
            // 5xx and 429 come back from `send` as `Step::Again`: what is
            // left is etcd refusing the request
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
        }
    }

    /// POSTs `body` to `path` on the endpoints in turn until one answers
    /// 200, within `policy`.
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
        let what = format!("etcd {step} ({})", self.endpoints.join(","));
        let result = http::retry_watched(
            policy,
            &what,
            |t| {
                let url = format!("{}{path}", self.endpoints[n % self.endpoints.len()]);
                n += 1;
                let step = self.post_once(&url, &bytes, t, on_error);
                last_url = url;
                step
            },
            |_| "ok".to_string(),
        );
        match result {
            Ok((v, _)) => Ok(v),
            Err(http::GaveUp::Permanent(t)) => Err(Error::Failed(format!(
                "{} {step}: POST {last_url}: {t}",
                self.label
            ))),
            Err(http::GaveUp::Budget(t)) => Err(Error::Failed(format!(
                "{} {step}: POST {last_url}: gave up after {} s ({t})",
                self.label,
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
        members(&v).map_err(|e| Error::Failed(format!("{} member list: {e}", self.label)))
    }

    /// As etcd's client `Sync` (kubeadm's `NewFromCluster`): the endpoints
    /// become the client URLs of the started voting members. Returns them.
    pub fn sync_endpoints(&mut self) -> Result<Vec<String>, Error> {
        let list = self.member_list()?;
        let mut seen = BTreeSet::new();
        let eps: Vec<String> = list
            .iter()
            .filter(|m| !m.name.is_empty() && !m.is_learner)
            .flat_map(|m| m.client_urls.iter())
            .map(|u| u.trim_end_matches('/').to_string())
            .filter(|u| seen.insert(u.clone()))
            .collect();
        if !eps.is_empty() {
            self.endpoints = eps;
        }
        Ok(self.endpoints.clone())
    }

    /// `status` from each of `endpoints` (that endpoint itself, not any
    /// other), retried within one shared `budget`; the first that does not
    /// answer is the error.
    fn status_each(&self, endpoints: &[String], budget: Duration) -> Result<(), (String, String)> {
        let body = b"{}";
        // None: no deadline
        let deadline = std::time::Instant::now().checked_add(budget);
        for ep in endpoints {
            let url = format!("{ep}/v3/maintenance/status");
            let left = deadline.map_or(http::NO_DEADLINE, |d| {
                d.saturating_duration_since(std::time::Instant::now())
            });
            let r = http::retry_watched(
                &Retry::within(left),
                &format!("etcd status from {ep}"),
                |t| self.post_once(&url, body, t, &|_| None),
                |_| "ok".to_string(),
            );
            if let Err(http::GaveUp::Permanent(t) | http::GaveUp::Budget(t)) = r {
                return Err((ep.clone(), t.to_string()));
            }
        }
        Ok(())
    }

    /// kubeadm's check-etcd (`CheckClusterHealth`): every endpoint answers
    /// `status`. Run before `member add`, so a sick cluster is not grown;
    /// the error is retryable (a rerun checks again).
    pub fn check_health(&self) -> Result<(), Error> {
        self.status_each(&self.endpoints, self.budget)
            .map_err(|(ep, t)| {
                Error::Failed(format!(
                    "etcd-join check-etcd: the etcd cluster is not healthy: {ep} did not answer status within {} s ({t}); no member was added, rerun once every etcd member is up",
                    self.budget.as_secs()
                ))
            })
    }

    /// Adds this node as a learner with `peer_url`, or reuses the member
    /// that already has it (a rerun).
    pub fn join_member(&self, peer_url: &str) -> Result<Joined, Error> {
        let find = |list: &[Member]| {
            list.iter()
                .find(|m| m.peer_urls.iter().any(|u| u == peer_url))
                .map(|m| m.id)
        };
        let list = self.member_list()?;
        if let Some(id) = find(&list) {
            return Ok(Joined {
                id,
                members: list,
                added: false,
            });
        }
        let v = self.call(
            "member add",
            "/v3/cluster/member/add",
            &json!({"peerURLs": [peer_url], "isLearner": true}),
            &Retry::within(self.budget),
            // an earlier attempt whose reply was lost may have added it;
            // another node's learner not promoted yet (etcd allows one
            // learner by default): wait for it, as for any busy peer
            &|msg| {
                if msg.contains(PEER_EXISTS) {
                    Some(false)
                } else if msg.contains(TOO_MANY_LEARNERS) {
                    Some(true)
                } else {
                    None
                }
            },
        )?;
        let bad = |e: String| Error::Failed(format!("etcd-join member add: {e}"));
        if v.is_null() {
            let list = self.member_list()?;
            let id = find(&list)
                .ok_or_else(|| bad(format!("etcd says {peer_url} exists but does not list it")))?;
            return Ok(Joined {
                id,
                members: list,
                added: false,
            });
        }
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

    /// kubeadm's `MemberPromote`: promotes learner `id` (named `name` in
    /// messages) to a voting member. Each round lists the members (a
    /// voting member is done: [`Promoted::Already`] when this call sent no promote),
    /// then asks for `member promote`; while etcd says the learner is not
    /// in sync yet it retries with jittered backoff (caps 0.5 s, 1 s, 2 s)
    /// until `budget` is spent, then fails naming the member.
    pub fn promote(&self, id: u64, name: &str, budget: Duration) -> Result<Promoted, Error> {
        let policy = Retry {
            budget,
            attempt_timeout: Duration::from_secs(5).min(budget.max(Duration::from_millis(100))),
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(2),
        };
        let id_body = json!({"ID": id.to_string()}).to_string().into_bytes();
        let mut rounds = 0u32;
        // a voter before this call sent any promote: it was one already
        // (whatever endpoint failed on the way)
        let mut promote_sent = false;
        let mut label = format!("{name} ({id:016x})");
        let what = format!("etcd member promote of {name} ({id:016x})");
        let result = http::retry_watched(
            &policy,
            &what,
            |t| {
                rounds += 1;
                let ep = &self.endpoints[(rounds as usize - 1) % self.endpoints.len()];
                let list_url = format!("{ep}/v3/cluster/member/list");
                let list = match self.post_once(&list_url, b"{}", t, &|_| None) {
                    Step::Done(v) => match members(&v) {
                        Ok(l) => l,
                        Err(e) => return Step::Stop(format!("{list_url}: {e}")),
                    },
                    Step::Again(w) => return Step::Again(format!("{list_url}: {w}")),
                    Step::Stop(w) => return Step::Stop(format!("{list_url}: {w}")),
                };
                let Some(me) = list.iter().find(|m| m.id == id) else {
                    return Step::Stop(format!(
                        "{list_url}: the member list has no member {id:016x} (removed meanwhile?)"
                    ));
                };
                label = me.label().replacen("<not started>", name, 1);
                if !me.is_learner {
                    return Step::Done(!promote_sent);
                }
                let url = format!("{ep}/v3/cluster/member/promote");
                promote_sent = true;
                match self.post_once(&url, &id_body, t, &|msg| {
                    if msg.contains(NOT_IN_SYNC) {
                        Some(true)
                    } else if msg.contains(NOT_LEARNER) {
                        Some(false)
                    } else {
                        None
                    }
                }) {
                    Step::Done(_) => Step::Done(false),
                    Step::Again(w) => Step::Again(format!("{url}: {w}")),
                    Step::Stop(w) => Step::Stop(format!("{url}: {w}")),
                }
            },
            |_| "promoted".to_string(),
        );
        match result {
            Ok((true, _)) => Ok(Promoted::Already),
            Ok((false, t)) => Ok(Promoted::Now(t.attempts)),
            Err(http::GaveUp::Permanent(t)) => Err(Error::Failed(format!(
                "etcd-join member promote: learner {label}: {t}"
            ))),
            Err(http::GaveUp::Budget(t)) => Err(Error::Failed(format!(
                "etcd-join member promote: learner {label} was not promoted to a voting member within {} s; gave up ({t}); is its etcd running (etcd.yaml, `crictl ps`)?",
                budget.as_secs()
            ))),
        }
    }

    /// kubeadm's `WaitForClusterAvailable` after the promote: every
    /// endpoint and `own_client_url` answer `status`, within `budget`.
    pub fn wait_available(&self, own_client_url: &str, budget: Duration) -> Result<(), Error> {
        let mut all = self.endpoints.clone();
        let own = own_client_url.trim_end_matches('/').to_string();
        if !all.contains(&own) {
            all.push(own);
        }
        self.status_each(&all, budget).map_err(|(ep, t)| {
            Error::Failed(format!(
                "etcd-join: the etcd cluster did not become available within {} s: {ep} did not answer status ({t})",
                budget.as_secs()
            ))
        })
    }
}

/// What [`join`] needs: where the API server is (and its CA), the
/// credentials to read the etcd pods (`admin.conf`'s client certificate)
/// and to talk to etcd (`etcd/ca.crt`, `etcd/healthcheck-client`), and
/// this node's identity.
pub struct JoinInputs<'a> {
    /// The API server URL (from discovery).
    pub server: &'a str,
    /// The cluster CA, PEM.
    pub cluster_ca: &'a [u8],
    /// `admin.conf`'s client certificate (PEM) and key.
    pub admin: (&'a [u8], &'a Secret),
    /// `etcd/ca.crt`, PEM.
    pub etcd_ca: &'a [u8],
    /// `etcd/healthcheck-client.crt` (PEM) and key.
    pub healthcheck: (&'a [u8], &'a Secret),
    /// This node's advertise address (its peer and client URLs).
    pub advertise: IpAddr,
    /// This node's name (the member name).
    pub name: &'a str,
    /// Bound on reading the etcd pods from the API server.
    pub api_budget: Duration,
    /// Bound on each etcd step (health, add, promote, availability).
    pub etcd_budget: Duration,
}

/// kubeadm's etcd-join (1.32–1.34, learner mode): the existing members'
/// client URLs from the etcd pods' annotation (read as `admin.conf`'s
/// user), synced with the member list; every member answers `status`
/// (check-etcd) before anything changes; `member add` as a learner with
/// this node's peer URL (reused on a rerun); `write_manifest` with the
/// full `--initial-cluster` (the caller writes etcd.yaml with
/// `--initial-cluster-state=existing`); `member promote` once the learner
/// (started by the kubelet from that manifest) has caught up; then every
/// member, this one included, answers `status`.
pub fn join(
    j: &JoinInputs<'_>,
    write_manifest: impl FnOnce(&[EtcdMember]) -> Result<(), Error>,
) -> Result<(), Error> {
    let endpoints = endpoints_from_api(j.server, j.cluster_ca, j.admin.0, j.admin.1, j.api_budget)?;
    log::info!(target: "etcd-join", "etcd client URLs from the etcd pods: {}", endpoints.join(","));
    let mut client = EtcdClient::new(
        endpoints,
        j.etcd_ca,
        j.healthcheck.0,
        j.healthcheck.1,
        j.etcd_budget,
    )?;
    let synced = client.sync_endpoints()?;
    log::info!(target: "etcd-join", "etcd endpoints from the member list: {}", synced.join(","));
    client.check_health()?;
    log::info!(target: "etcd-join", "check-etcd: every etcd member answers status");
    let peer_url = peer_url(j.advertise);
    let joined = client.join_member(&peer_url)?;
    if joined.added {
        log::info!(target: "etcd-join", "added learner {:016x} with peer URL {peer_url}", joined.id);
    } else {
        log::info!(target: "etcd-join", "member {:016x} already has peer URL {peer_url}; not adding another", joined.id);
    }
    write_manifest(&initial_cluster(&joined.members, &peer_url))?;
    let name = j.name;
    match client.promote(joined.id, name, j.etcd_budget)? {
        Promoted::Now(n) => {
            log::info!(target: "etcd-join", "member {name} ({:016x}) promoted to a voting member ({n} attempt(s))", joined.id)
        }
        Promoted::Already => {
            log::info!(target: "etcd-join", "member {name} ({:016x}) already is a voting member", joined.id)
        }
    }
    client.wait_available(&client_url(j.advertise), j.etcd_budget)?;
    log::info!(target: "etcd-join", "every etcd member answers status");
    Ok(())
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
        let bare = br#"{"apiVersion":"v1","kind":"PodList","metadata":{},"items":[{"metadata":{"name":"etcd-x"}}]}"#;
        assert_eq!(pod_endpoints(bare).unwrap(), (vec![], 1));
    }

    #[test]
    fn urls_follow_the_address_family() {
        let v4: IpAddr = "10.0.0.7".parse().unwrap();
        let v6: IpAddr = "fd00::7".parse().unwrap();
        assert_eq!(peer_url(v4), "https://10.0.0.7:2380");
        assert_eq!(client_url(v4), "https://10.0.0.7:2379");
        assert_eq!(peer_url(v6), "https://[fd00::7]:2380");
        assert_eq!(client_url(v6), "https://[fd00::7]:2379");
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
        // another node's member that has not started: listed under its ID, as kubeadm
        assert_eq!(
            initial_cluster(&m, "https://10.0.0.3:2380"),
            [
                EtcdMember {
                    name: "cp-1".into(),
                    peer_url: "https://10.0.0.1:2380".into()
                },
                EtcdMember {
                    name: "2a".into(),
                    peer_url: "https://10.0.0.2:2380".into()
                }
            ]
        );
        assert_eq!(
            m[1].label(),
            "<not started> (000000000000002a, https://10.0.0.2:2380)"
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
