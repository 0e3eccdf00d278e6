//! A plain object store behind HTTPS for driving `kubeboot init`'s API
//! phases in tests that look at what was sent (interop_kubeadm,
//! k8s_schema), not at how the API server answers: create (201 with a uid
//! and resourceVersion; 409 on a second create), get (404 when absent),
//! put, and a JSON merge patch; admin.conf's client certificate required.
//! The strict stand-in with schema checks, conflicts and faults is
//! `tests/api_support`.
//! Include with `#[path = "store_support/mod.rs"] mod store_support;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::net_support::{Reply, Request, Server, ok, tls_config_with};

/// A `Status` reply.
pub fn status(code: u16, reason: &str) -> Reply {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code});
    Reply::Respond(code, vec![], serde_json::to_vec(&body).unwrap())
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// The store, serving with the cluster's apiserver certificate under `pki`,
/// seeded with `objects` (by URL path).
pub fn object_store(pki: &Path, objects: BTreeMap<String, Value>) -> Server {
    let store = Arc::new(Mutex::new(objects));
    Server::https(
        tls_config_with(
            &pki.join("apiserver.crt"),
            &pki.join("apiserver.key"),
            Some(&pki.join("ca.crt")),
            false,
        ),
        move |req: &Request, i| {
            let mut s = store.lock().unwrap();
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            match req.method.as_str() {
                "GET" => match s.get(&req.path) {
                    Some(o) => ok(&serde_json::to_vec(o).unwrap()),
                    None => status(404, "NotFound"),
                },
                "POST" => {
                    let name = body["metadata"]["name"].as_str().unwrap_or_default();
                    let item = format!("{}/{name}", req.path);
                    if s.contains_key(&item) {
                        return status(409, "AlreadyExists");
                    }
                    let mut o = body.clone();
                    o["metadata"]["uid"] = json!(format!("uid-{i}"));
                    o["metadata"]["resourceVersion"] = json!(i.to_string());
                    s.insert(item, o.clone());
                    Reply::Respond(201, vec![], serde_json::to_vec(&o).unwrap())
                }
                "PUT" => {
                    s.insert(req.path.clone(), body.clone());
                    ok(&serde_json::to_vec(&body).unwrap())
                }
                "PATCH" => match s.get_mut(&req.path) {
                    Some(o) => {
                        merge(o, &body);
                        ok(&serde_json::to_vec(o).unwrap())
                    }
                    None => status(404, "NotFound"),
                },
                _ => status(405, "MethodNotAllowed"),
            }
        },
    )
}
