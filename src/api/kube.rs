//! The HTTP side of init's API phases: a client authenticated with a
//! kubeconfig's client certificate (`admin.conf`, or `super-admin.conf`
//! for the one binding `admin.conf` cannot create yet), idempotent
//! create-or-update of [`ApiObject`]s, and the Node wait and patch of
//! mark-control-plane.
//!
//! Every request is retried with bounded, jittered backoff on transport
//! failures, 5xx and 429 (`net::http`). Create-or-update: POST; on
//! 409 GET the existing object and PUT ours with its resourceVersion
//! (a PUT conflict starts over, a few times). Errors name the method, URL
//! and status; for Secrets the server's message is left out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::objects::{self, ApiObject, Update};
use crate::config::Settings;
use crate::error::{Context, Error};
use crate::host::Paths;
use crate::host::fs;
use crate::net::h1;
use crate::net::http::{self, Method, Reply, Retry, Step};

/// What create-or-update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Created (201).
    Created,
    /// It existed and was updated to ours.
    Updated,
    /// It existed and was kept as it is ([`Update::Retain`]).
    Kept,
}

/// A client for one API server as one user. Clones share the connection,
/// so the API phases of one run reuse one TLS connection.
#[derive(Clone)]
pub struct Kube {
    client: Arc<h1::Client>,
    pub(super) base: String,
    budget: Duration,
}

/// The `message` of a Kubernetes Status reply, when there is one.
fn status_message(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("message")?
        .as_str()
        .map(|m| m.chars().take(300).collect())
}

impl Kube {
    /// A client for `base` (`https://host:port`), verifying the server with
    /// `ca_pem` and presenting `cert_pem`/`key_pem`; each request retries
    /// within `budget`.
    pub fn new(
        base: &str,
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
        budget: Duration,
    ) -> Result<Kube, Error> {
        let client = h1::Client::new(base, ca_pem, cert_pem, key_pem)?;
        Ok(Kube {
            client: Arc::new(client),
            base: base.trim_end_matches('/').to_string(),
            budget,
        })
    }

    /// A client as the user of `/etc/kubernetes/<file>` (under the root),
    /// talking to the control-plane endpoint (the server kubeboot writes
    /// in `admin.conf` and `super-admin.conf`), verified with the cluster CA.
    pub fn from_kubeconfig(
        settings: &Settings,
        paths: &Paths,
        file: &str,
        budget: Duration,
    ) -> Result<Kube, Error> {
        let path = paths.kubeconfig(file);
        let bytes = fs::read_required(&path, "the kubeconfig phase writes it")?;
        let (cert, key) = crate::pki::kubeconfig::client_cert_and_key(&bytes, paths)
            .map_err(|e| Error::Failed(format!("{}: {e}", path.display())))?;
        let ca = fs::read_required(
            &paths.pki_file(&settings.cluster.certificates_dir, "ca.crt"),
            "",
        )?;
        Kube::new(
            &settings.control_plane_endpoint().url(),
            &ca,
            &cert,
            key.expose().as_bytes(),
            budget,
        )
        .context(path.display())
    }

    /// A client as the node itself: `/etc/kubernetes/kubelet.conf`, which
    /// the kubelet wrote after its TLS bootstrap (server and client
    /// certificate from that file, embedded or referenced), verified with
    /// the cluster CA. kubeadm's join uses this client for the CRI socket
    /// annotation (`cmd/kubeadm/app/cmd/phases/join/kubelet.go`).
    pub fn from_kubelet_conf(
        settings: &Settings,
        paths: &Paths,
        budget: Duration,
    ) -> Result<Kube, Error> {
        let path = paths.host("/etc/kubernetes/kubelet.conf");
        let bytes = fs::read_optional(&path)?
            .ok_or_else(|| Error::Failed(format!("{}: missing", path.display())))?;
        let server = crate::pki::kubeconfig::server(&bytes)
            .map_err(|e| Error::Failed(format!("{}: {e}", path.display())))?;
        let (cert, key) = crate::pki::kubeconfig::client_cert_and_key(&bytes, paths)
            .map_err(|e| Error::Failed(format!("{}: {e}", path.display())))?;
        let ca_path = paths.host(format!("{}/ca.crt", settings.cluster.certificates_dir));
        let ca = fs::read_optional(&ca_path)?
            .ok_or_else(|| Error::Failed(format!("{}: missing", ca_path.display())))?;
        Kube::new(&server, &ca, &cert, key.expose().as_bytes(), budget)
            .map_err(|e| Error::Failed(format!("{}: {e}", path.display())))
    }

    /// One request with retries; the final status and body.
    pub(super) fn call(
        &self,
        method: Method<'_>,
        verb: &str,
        path: &str,
    ) -> Result<(u16, Vec<u8>), Error> {
        self.call_after(method, verb, path, None)
    }

    /// [`Kube::call`] whose first attempt was already made: `first` is its
    /// answer (from a batch written ahead). A 429 or 5xx there is retried
    /// like any attempt's, after its `Retry-After`.
    fn call_after(
        &self,
        method: Method<'_>,
        verb: &str,
        path: &str,
        mut first: Option<h1::Answer>,
    ) -> Result<(u16, Vec<u8>), Error> {
        let url = format!("{}{path}", self.base);
        match http::retry_watched(
            &Retry::within(self.budget),
            &format!("{verb} {url}"),
            |t| match first.take() {
                Some(answer) => answer.step(),
                None => self.client.send(method, path, t),
            },
            |r| http::status_text(r.status),
        ) {
            Ok((reply, _)) => Ok((reply.status, reply.body)),
            Err(http::GaveUp::Permanent(t) | http::GaveUp::Budget(t)) => {
                Err(Error::Failed(format!("{verb} {url}: {t}")))
            }
        }
    }

    pub(super) fn refused(
        &self,
        verb: &str,
        path: &str,
        status: u16,
        body: &[u8],
        sensitive: bool,
    ) -> Error {
        let msg = match (sensitive, status_message(body)) {
            (false, Some(m)) => format!(": {m}"),
            _ => String::new(),
        };
        Error::Failed(format!(
            "{verb} {}{path}: {}{msg}",
            self.base,
            http::status_text(status)
        ))
    }

    /// GET `path`: the status and body (any status; transport failures retried).
    pub fn get(&self, path: &str) -> Result<(u16, Vec<u8>), Error> {
        self.call(Method::Get, "GET", path)
    }

    /// DELETE `path`: the status and body (any status; transport failures retried).
    pub fn delete(&self, path: &str) -> Result<(u16, Vec<u8>), Error> {
        self.call(Method::Delete, "DELETE", path)
    }

    /// One attempt at `method` on `path` with `timeout`, for a caller's
    /// own retry loop. The connection stays open for the next request, so
    /// a health poll of the same server through it (`wait-control-plane`)
    /// leaves the connection the API phases use.
    pub(crate) fn attempt(&self, method: Method<'_>, path: &str, timeout: Duration) -> Step<Reply> {
        self.client.send(method, path, timeout)
    }

    /// The base URL (`https://host:port`), for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// POST `obj` to its collection; the status and body.
    pub fn create(&self, obj: &ApiObject) -> Result<(u16, Vec<u8>), Error> {
        let body = json(&obj.body, &obj.what)?;
        self.call(Method::PostJson(&body), "POST", &obj.collection)
    }

    /// Creates `obj`, or updates it when it exists (see the module rules).
    pub fn apply(&self, obj: &ApiObject) -> Result<Applied, Error> {
        let created = self.create(obj)?;
        self.apply_from(obj, created)
    }

    /// [`Kube::apply`] after its first POST answered `created` (status and
    /// body).
    fn apply_from(&self, obj: &ApiObject, created: (u16, Vec<u8>)) -> Result<Applied, Error> {
        let mut created = Some(created);
        for _ in 0..5 {
            let (status, body) = match created.take() {
                Some(c) => c,
                None => self.create(obj)?,
            };
            match status {
                200 | 201 => return Ok(Applied::Created),
                409 if obj.update == Update::Retain => return Ok(Applied::Kept),
                409 => {}
                s => return Err(self.refused("POST", &obj.collection, s, &body, obj.sensitive)),
            }
            let (status, body) = self.get(&obj.item)?;
            match status {
                200 => {}
                404 => continue, // deleted in between: create again
                s => return Err(self.refused("GET", &obj.item, s, &body, obj.sensitive)),
            }
            let existing: Value = serde_json::from_slice(&body).map_err(|e| {
                Error::Failed(format!("GET {}{}: not JSON: {e}", self.base, obj.item))
            })?;
            let desired = updated(&obj.body, &existing, obj.update);
            let bytes = json(&desired, &obj.what)?;
            let (status, body) = self.call(Method::PutJson(&bytes), "PUT", &obj.item)?;
            match status {
                200 | 201 => return Ok(Applied::Updated),
                409 | 404 => continue, // changed or deleted in between
                s => return Err(self.refused("PUT", &obj.item, s, &body, obj.sensitive)),
            }
        }
        Err(Error::Failed(format!(
            "{}: kept changing under us (5 create/update rounds)",
            obj.what
        )))
    }

    /// Applies every object in order, logging one line each under `phase`.
    ///
    /// The objects' POSTs are written ahead of their answers on the kept
    /// connection (`net::h1`), so a phase costs about one round trip, not
    /// one per object. The server still takes them one at a time and in
    /// order. An object whose POST got no final answer that way is sent
    /// again on its own with the usual retries: after its `Retry-After` for
    /// a 429 or 5xx, at once when the connection was lost before its answer.
    /// A 409 goes on to the update as in [`Kube::apply`]. When one
    /// is refused (403, 422), the objects after it were already sent and
    /// may exist: the error stops the phase as before, and a rerun
    /// converges them.
    pub fn apply_all(&self, phase: &str, objs: &[ApiObject]) -> Result<(), Error> {
        let bodies = objs
            .iter()
            .map(|o| json(&o.body, &o.what))
            .collect::<Result<Vec<_>, _>>()?;
        let posts: Vec<(Method<'_>, &str)> = objs
            .iter()
            .zip(&bodies)
            .map(|(o, b)| (Method::PostJson(b), o.collection.as_str()))
            .collect();
        let ahead = if posts.len() > 1 {
            let t = Retry::within(self.budget).attempt_timeout;
            self.client.exchange(&posts, t).answers
        } else {
            Vec::new()
        };
        let mut ahead = ahead.into_iter();
        for (o, body) in objs.iter().zip(&bodies) {
            let created =
                self.call_after(Method::PostJson(body), "POST", &o.collection, ahead.next())?;
            let done = self.apply_from(o, created)?;
            let verb = match done {
                Applied::Created => "created",
                Applied::Updated => "updated",
                Applied::Kept => "kept existing",
            };
            log::info!(target: phase, "{verb} {}", o.what);
        }
        Ok(())
    }

    /// Waits (within `budget`, polling) until Node `name` exists; returns it.
    pub fn wait_for_node(&self, name: &str, budget: Duration) -> Result<objects::Node, Error> {
        let path = format!("/api/v1/nodes/{name}");
        // None: no deadline
        let deadline = Instant::now().checked_add(budget);
        let mut last;
        loop {
            let (status, body) = self.get(&path)?;
            match status {
                200 => {
                    return serde_json::from_slice(&body).map_err(|e| {
                        Error::Failed(format!("GET {}{path}: not a Node: {e}", self.base))
                    });
                }
                404 => last = "not registered yet (404)".to_string(),
                s => return Err(self.refused("GET", &path, s, &body, false)),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Failed(format!(
                    "Node {name:?}: {last} after {} s; is the kubelet running and registering?",
                    budget.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(500).min(budget));
        }
    }

    /// upload-config's `AnnotateCRISocket`: waits for Node `name`, then sets
    /// the CRI socket annotation with a merge patch. `Ok(false)` when it had
    /// it already.
    pub fn annotate_cri_socket(
        &self,
        name: &str,
        socket: &str,
        budget: Duration,
    ) -> Result<bool, Error> {
        let node = self.wait_for_node(name, budget)?;
        let Some(patch) = objects::cri_socket_patch(&node, socket) else {
            return Ok(false);
        };
        let path = format!("/api/v1/nodes/{name}");
        let bytes = patch.to_string();
        match self.call(Method::MergePatch(bytes.as_bytes()), "PATCH", &path)? {
            (200, _) => Ok(true),
            (s, body) => Err(self.refused("PATCH", &path, s, &body, false)),
        }
    }

    /// mark-control-plane: waits for Node `name`, then adds the labels and
    /// `taints` with a merge patch (a 409 from a concurrent change retries
    /// with the fresh Node). `Ok(false)` when it already had them all.
    pub fn mark_control_plane(
        &self,
        name: &str,
        taints: &[crate::config::Taint],
        budget: Duration,
    ) -> Result<bool, Error> {
        let path = format!("/api/v1/nodes/{name}");
        for _ in 0..5 {
            let node = self.wait_for_node(name, budget)?;
            let Some(patch) = objects::mark_control_plane_patch(&node, taints) else {
                return Ok(false);
            };
            let bytes = serde_json::to_vec(&patch)
                .map_err(|e| Error::Failed(format!("Node {name}: {e}")))?;
            let (status, body) = self.call(Method::MergePatch(&bytes), "PATCH", &path)?;
            match status {
                200 => return Ok(true),
                409 => continue,
                s => return Err(self.refused("PATCH", &path, s, &body, false)),
            }
        }
        Err(Error::Failed(format!(
            "Node {name}: kept changing under us (5 patch rounds)"
        )))
    }
}

/// `value` as a request body; an error names `what`.
fn json(value: &Value, what: &str) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Failed(format!("{what}: {e}")))
}

/// Our object prepared to replace `existing`: its resourceVersion, and for
/// [`Update::MergeData`] its `data` keys we do not set.
pub fn updated(ours: &Value, existing: &Value, update: Update) -> Value {
    let mut out = ours.clone();
    let rv = existing.pointer("/metadata/resourceVersion").cloned();
    if let (Some(rv), Some(Value::Object(m))) = (rv, out.get_mut("metadata")) {
        m.insert("resourceVersion".into(), rv);
    }
    if update == Update::KeepReplicas
        && let Some(n) = existing.pointer("/spec/replicas")
        && let Some(Value::Object(spec)) = out.get_mut("spec")
    {
        spec.insert("replicas".into(), n.clone());
    }
    if update == Update::MergeData
        && let Some(Value::Object(old)) = existing.get("data")
    {
        let mut data = old.clone();
        if let Some(Value::Object(new)) = ours.get("data") {
            data.extend(new.clone());
        }
        if let Value::Object(m) = &mut out {
            m.insert("data".into(), Value::Object(data));
        }
    }
    out
}

/// Ensures the `kubeadm:cluster-admins` ClusterRoleBinding as kubeadm does:
/// try as `admin` (whose group it binds, so on a fresh cluster that is
/// forbidden); on 403 create it as `super_admin` (`system:masters`).
pub fn ensure_cluster_admins(
    admin: &Kube,
    super_admin: impl FnOnce() -> Result<Kube, Error>,
) -> Result<(), Error> {
    let obj = objects::cluster_admins_binding();
    let (status, body) = admin.create(&obj)?;
    match status {
        200 | 201 | 409 => return Ok(()),
        403 => {}
        s => return Err(admin.refused("POST", &obj.collection, s, &body, false)),
    }
    log::info!(target: "upload-config", "admin.conf may not create {} yet; creating it with super-admin.conf", obj.what);
    let sa = super_admin()?;
    match sa.create(&obj)? {
        (200 | 201 | 409, _) => Ok(()),
        (s, body) => Err(sa.refused("POST", &obj.collection, s, &body, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn update_keeps_resource_version_and_foreign_data_keys() {
        let ours = json!({"metadata": {"name": "cluster-info"}, "data": {"kubeconfig": "new"}});
        let existing = json!({"metadata": {"name": "cluster-info", "resourceVersion": "42"},
            "data": {"kubeconfig": "old", "jws-kubeconfig-abcdef": "sig"}});
        let u = updated(&ours, &existing, Update::MergeData);
        assert_eq!(u["metadata"]["resourceVersion"], "42");
        assert_eq!(u["data"]["kubeconfig"], "new");
        assert_eq!(u["data"]["jws-kubeconfig-abcdef"], "sig");
        let r = updated(&ours, &existing, Update::Replace);
        assert!(r["data"].get("jws-kubeconfig-abcdef").is_none());
        assert_eq!(r["metadata"]["resourceVersion"], "42");
    }

    #[test]
    fn keep_replicas_keeps_only_the_scale() {
        let ours = json!({"metadata": {"name": "coredns"}, "spec": {"replicas": 2, "x": "new"}});
        let existing = json!({"metadata": {"name": "coredns", "resourceVersion": "7"},
            "spec": {"replicas": 5, "x": "old"}});
        let u = updated(&ours, &existing, Update::KeepReplicas);
        assert_eq!(u["spec"], json!({"replicas": 5, "x": "new"}));
        assert_eq!(u["metadata"]["resourceVersion"], "7");
        let r = updated(&ours, &existing, Update::Replace);
        assert_eq!(r["spec"]["replicas"], 2);
        let unscaled = json!({"metadata": {"resourceVersion": "8"}, "spec": {}});
        let u = updated(&ours, &unscaled, Update::KeepReplicas);
        assert_eq!(u["spec"]["replicas"], 2);
    }

    #[test]
    fn status_message_is_read_and_bounded() {
        let m = status_message(br#"{"kind":"Status","message":"forbidden: x"}"#);
        assert_eq!(m.as_deref(), Some("forbidden: x"));
        assert!(status_message(b"not json").is_none());
        let long = format!(r#"{{"message":"{}"}}"#, "a".repeat(1000));
        assert_eq!(status_message(long.as_bytes()).unwrap().len(), 300);
    }
}
