//! A fake Kubernetes API server's object store, shared by the API phase tests
//! (`tests/api_phases.rs`) and the firstboot timeline benchmark: objects kept
//! by URL path, with create (409 on a second create; a uid assigned), get, optimistic-locking
//! update (409 on a stale resourceVersion) and JSON merge patch, the way the
//! real API server answers them. The Node that the kubelet would register
//! appears after `node_after` GETs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::net_support::{Reply, Request, Server, ok, tls_config_with};

/// The store, by URL path.
#[derive(Default)]
pub struct State {
    pub objects: HashMap<String, Value>,
    pub node_gets: usize,
    pub rv: u64,
}

/// How the fake behaves for one cluster.
pub struct Behaviour {
    /// The node the kubelet registers (`/api/v1/nodes/<name>`).
    pub node: String,
    /// GETs of that node answered 404 before it "registers".
    pub node_after: usize,
    /// Refuse creating the `kubeadm:cluster-admins` binding with admin.conf's
    /// identity (as a fresh cluster does); needs client-certificate auth.
    pub refuse_cluster_admins_binding: bool,
}

/// A `Status` reply as the API server sends it.
pub fn status_reply(code: u16, reason: &str) -> Reply {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": reason, "code": code});
    Reply::Respond(code, vec![], serde_json::to_vec(&body).unwrap())
}

/// JSON merge patch (RFC 7386) without null-deletes.
fn merge(target: &mut Value, patch: &Value) {
    if let (Value::Object(t), Value::Object(p)) = (&mut *target, patch) {
        for (k, v) in p {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    } else {
        *target = patch.clone();
    }
}

/// The CN of the verified client certificate ("" without one).
pub fn client_cn(req: &Request) -> String {
    let Some(der) = req.client_cert.as_deref() else {
        return String::new();
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Answers like the API server, from `state`.
pub fn answer(state: &Mutex<State>, how: &Behaviour, req: &Request) -> Reply {
    let mut st = state.lock().unwrap();
    if req.path == "/livez" {
        return ok(b"ok");
    }
    st.rv += 1;
    let rv = st.rv.to_string();
    let node_path = format!("/api/v1/nodes/{}", how.node);
    match req.method.as_str() {
        "POST" => {
            let mut body: Value = serde_json::from_slice(&req.body).unwrap();
            let name = body["metadata"]["name"].as_str().unwrap().to_string();
            if how.refuse_cluster_admins_binding
                && name == "kubeadm:cluster-admins"
                && client_cn(req) != "kubernetes-super-admin"
            {
                // admin.conf's group is not bound yet on a fresh cluster
                return status_reply(403, "Forbidden");
            }
            let item = format!("{}/{name}", req.path);
            if st.objects.contains_key(&item) {
                return status_reply(409, "AlreadyExists");
            }
            body["metadata"]["resourceVersion"] = json!(rv);
            body["metadata"]["uid"] = json!(format!("uid-{rv}"));
            st.objects.insert(item, body.clone());
            Reply::Respond(201, vec![], serde_json::to_vec(&body).unwrap())
        }
        "GET" if req.path.contains('?') || is_collection(&req.path) => list(&st, req, &rv),
        "DELETE" => match st.objects.remove(&req.path) {
            Some(_) => ok(br#"{"kind":"Status","apiVersion":"v1","status":"Success"}"#),
            None => status_reply(404, "NotFound"),
        },
        "GET" => {
            if req.path == node_path && !st.objects.contains_key(&req.path) {
                st.node_gets += 1;
                if st.node_gets <= how.node_after {
                    return status_reply(404, "NotFound");
                }
                // the kubelet registered the node
                let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": how.node, "labels": {"kubernetes.io/hostname": how.node}},
                    "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}});
                st.objects.insert(req.path.clone(), node);
            }
            match st.objects.get_mut(&req.path) {
                Some(o) => {
                    o["metadata"]["resourceVersion"] = json!(rv);
                    ok(&serde_json::to_vec(o).unwrap())
                }
                None => status_reply(404, "NotFound"),
            }
        }
        "PUT" => {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            match st.objects.get(&req.path) {
                Some(old)
                    if old["metadata"]["resourceVersion"]
                        != body["metadata"]["resourceVersion"] =>
                {
                    status_reply(409, "Conflict")
                }
                Some(old) => {
                    // the server keeps the object's identity across updates
                    let mut body = body;
                    body["metadata"]["uid"] = old["metadata"]["uid"].clone();
                    st.objects.insert(req.path.clone(), body.clone());
                    ok(&serde_json::to_vec(&body).unwrap())
                }
                None => status_reply(404, "NotFound"),
            }
        }
        "PATCH" => {
            assert_eq!(
                req.header("Content-Type"),
                Some("application/merge-patch+json")
            );
            let patch: Value = serde_json::from_slice(&req.body).unwrap();
            match st.objects.get_mut(&req.path) {
                Some(o) => {
                    merge(o, &patch);
                    ok(&serde_json::to_vec(o).unwrap())
                }
                None => status_reply(404, "NotFound"),
            }
        }
        _ => status_reply(405, "MethodNotAllowed"),
    }
}

/// True for a collection path (`/api/v1/namespaces/<ns>/<resource>`,
/// `/apis/<group>/<version>/namespaces/<ns>/<resource>`).
fn is_collection(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.first() {
        Some(&"api") => parts.len() == 5 || parts.len() == 3,
        Some(&"apis") => parts.len() == 6 || parts.len() == 4,
        _ => false,
    }
}

/// A list of the objects directly under a collection, filtered by a
/// `fieldSelector=type=<t>` as the API server supports it for Secrets.
fn list(st: &State, req: &Request, rv: &str) -> Reply {
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let mut want_type = None;
    for kv in query.split('&').filter(|q| !q.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = v.replace("%3D", "=").replace("%2F", "/");
        match (k, v.split_once('=')) {
            ("fieldSelector", Some(("type", t))) => want_type = Some(t.to_string()),
            _ => return status_reply(400, &format!("BadRequest: unsupported query {kv}")),
        }
    }
    let prefix = format!("{path}/");
    let mut names: Vec<&String> = st
        .objects
        .keys()
        .filter(|k| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
        .collect();
    names.sort();
    let items: Vec<Value> = names
        .into_iter()
        .map(|k| st.objects[k].clone())
        .filter(|o| want_type.as_deref().is_none_or(|t| o["type"] == t))
        .collect();
    let body = json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items});
    ok(&serde_json::to_vec(&body).unwrap())
}

/// The stand-in on a loopback port, serving `apiserver.crt` from `pki` and
/// requiring a client certificate from its `ca.crt` (401 without one);
/// with `refuse_all` every authenticated request is refused with 403.
pub fn serve(
    pki: &std::path::Path,
    state: std::sync::Arc<Mutex<State>>,
    how: Behaviour,
    refuse_all: bool,
) -> Server {
    Server::https(
        tls_config_with(
            &pki.join("apiserver.crt"),
            &pki.join("apiserver.key"),
            Some(&pki.join("ca.crt")),
            true,
        ),
        move |req, _| {
            if req.path == "/livez" {
                ok(b"ok")
            } else if req.client_cert.is_none() {
                status_reply(401, "Unauthorized")
            } else if refuse_all {
                status_reply(403, "Forbidden")
            } else {
                answer(&state, &how, req)
            }
        },
    )
}
