//! The API server stand-in (tests/api_support) itself: each rule it
//! enforces, checked with plain HTTP requests (ureq, not kubeboot's
//! client), so that the API phase tests can rely on it being as strict as
//! the real API server. docs/testing.md lists these rules with their tests.

mod api_support;
mod cli_support;
mod net_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_support::{CLUSTER_INFO, Fault, FaultKind, Options, StandIn, kubeadm_rbac, token_secret};
use base64::Engine;
use serde_json::{Value, json};

/// A rendered control plane (once per test binary run) for its PKI and
/// kubeconfigs.
fn control_plane() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = cli_support::tmpdir("standin", "cp");
        cli_support::render_control_plane(&dir)
    })
    .clone()
}

fn pki() -> PathBuf {
    control_plane().join("etc/kubernetes/pki")
}

/// The client certificate and key of `/etc/kubernetes/<file>`.
fn user_of(file: &str) -> (Vec<u8>, Vec<u8>) {
    let text = std::fs::read_to_string(control_plane().join("etc/kubernetes").join(file)).unwrap();
    let kc: Value = serde_norway::from_str(&text).unwrap();
    let user = &kc["users"][0]["user"];
    let dec = |k: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(user[k].as_str().unwrap())
            .unwrap()
    };
    (dec("client-certificate-data"), dec("client-key-data"))
}

/// A client verifying the stand-in with the cluster CA, as the user of
/// `kubeconfig` (`None`: anonymous).
fn client(kubeconfig: Option<&str>) -> ureq::Agent {
    let ca = std::fs::read(pki().join("ca.crt")).unwrap();
    let roots: Vec<_> = ureq::tls::parse_pem(&ca)
        .filter_map(|i| match i {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    let mut tls = ureq::tls::TlsConfig::builder()
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(ureq::tls::RootCerts::new_with_certs(&roots));
    if let Some(file) = kubeconfig {
        let (cert, key) = user_of(file);
        let chain: Vec<_> = ureq::tls::parse_pem(&cert)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        let key = ureq::tls::PrivateKey::from_pem(&key).unwrap();
        tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)));
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .tls_config(tls.build())
        .build()
        .new_agent()
}

struct Api {
    standin: StandIn,
    admin: ureq::Agent,
    anonymous: ureq::Agent,
}

impl Api {
    fn new(opts: Options) -> Api {
        let standin = StandIn::start_pki(&pki(), opts);
        // admin.conf's group is bound to cluster-admin, as after an init
        for o in kubeadm_rbac() {
            standin.insert(o);
        }
        Api {
            standin,
            admin: client(Some("admin.conf")),
            anonymous: client(None),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.standin.port())
    }

    /// A request: status, headers, body as JSON (Null when not JSON).
    fn send(
        &self,
        agent: &ureq::Agent,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> (u16, Value, Option<String>) {
        let url = self.url(path);
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let res = match method {
            "GET" => agent.get(&url).call(),
            "POST" => agent.post(&url).content_type(content_type).send(&bytes),
            "PUT" => agent.put(&url).content_type(content_type).send(&bytes),
            "PATCH" => agent.patch(&url).content_type(content_type).send(&bytes),
            m => panic!("{m}"),
        };
        let mut r = res.unwrap();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = r.body_mut().read_to_string().unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::Null);
        (r.status().as_u16(), v, retry_after)
    }

    fn admin(&self, method: &str, path: &str, ct: &str, body: Option<&Value>) -> (u16, Value) {
        let (s, v, _) = self.send(&self.admin, method, path, ct, body);
        (s, v)
    }
}

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";
const CMS: &str = "/api/v1/namespaces/kube-system/configmaps";

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "kube-system"}, "data": {"a": "b"}})
}

/// A `Status` failure body with this code and reason.
fn assert_status(v: &Value, code: u16, reason: &str) {
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["status"], "Failure", "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["reason"], reason, "{v}");
}

#[test]
fn writes_are_validated_against_the_kubernetes_schema() {
    for minor in [32, 33, 34] {
        let api = Api::new(Options {
            minor,
            ..Options::default()
        });
        // an unknown field (fieldValidation=Strict)
        let mut bad = cm("unknown-field");
        bad["spec"] = json!({});
        let (s, v) = api.admin("POST", CMS, JSON, Some(&bad));
        assert_eq!(s, 422, "1.{minor}: {v}");
        assert_status(&v, 422, "Invalid");
        assert!(
            !v["details"]["causes"].as_array().unwrap().is_empty(),
            "{v}"
        );
        // a wrong type
        let mut bad = cm("wrong-type");
        bad["data"]["a"] = json!(1);
        let (s, v) = api.admin("POST", CMS, JSON, Some(&bad));
        assert_eq!(s, 422, "{v}");
        assert!(v["message"].as_str().unwrap().contains("data"), "{v}");
        // Secret data must be base64
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "kube-system"}, "data": {"k": "not base64!"}});
        let (s, v) = api.admin(
            "POST",
            "/api/v1/namespaces/kube-system/secrets",
            JSON,
            Some(&secret),
        );
        assert_eq!(s, 422, "{v}");
        // a required field (a RoleBinding's roleRef)
        let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "rb", "namespace": "kube-system"}, "subjects": []});
        let (s, v) = api.admin(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings",
            JSON,
            Some(&rb),
        );
        assert_eq!(s, 422, "{v}");
        // kind and namespace must fit the URL
        let mut other = cm("other-ns");
        other["metadata"]["namespace"] = json!("default");
        assert_eq!(api.admin("POST", CMS, JSON, Some(&other)).0, 400);
        let mut kind = cm("kind");
        kind["kind"] = json!("Secret");
        assert_eq!(api.admin("POST", CMS, JSON, Some(&kind)).0, 400);
        // a valid one is created, once
        let (s, v) = api.admin("POST", CMS, JSON, Some(&cm("ok")));
        assert_eq!(s, 201, "{v}");
        assert!(v["metadata"]["uid"].is_string() && v["metadata"]["resourceVersion"].is_string());
        let (s, v) = api.admin("POST", CMS, JSON, Some(&cm("ok")));
        assert_eq!(s, 409);
        assert_status(&v, 409, "AlreadyExists");
        // a PATCH whose result is invalid
        let (s, _) = api.admin(
            "PATCH",
            &format!("{CMS}/ok"),
            MERGE,
            Some(&json!({"data": {"a": {"nested": 1}}})),
        );
        assert_eq!(s, 422);
        assert!(api.standin.state().failures.is_empty());
    }
}

#[test]
fn content_type_must_fit_the_verb() {
    let api = Api::new(Options::default());
    for ct in ["text/plain", MERGE, "application/x-www-form-urlencoded"] {
        let (s, v) = api.admin("POST", CMS, ct, Some(&cm("x")));
        assert_eq!(s, 415, "POST as {ct:?}");
        assert_status(&v, 415, "UnsupportedMediaType");
    }
    // none at all: the real server reads JSON (negotiate.go)
    assert_eq!(api.admin("POST", CMS, "", Some(&cm("none"))).0, 201);
    assert_eq!(api.admin("POST", CMS, JSON, Some(&cm("x"))).0, 201);
    let item = format!("{CMS}/x");
    let (_, cur) = api.admin("GET", &item, "", None);
    assert_eq!(api.admin("PUT", &item, "text/plain", Some(&cur)).0, 415);
    let patch = json!({"data": {"c": "d"}});
    for ct in [JSON, "text/plain", ""] {
        assert_eq!(api.admin("PATCH", &item, ct, Some(&patch)).0, 415, "{ct:?}");
    }
    for ct in [MERGE, "application/strategic-merge-patch+json"] {
        assert_eq!(api.admin("PATCH", &item, ct, Some(&patch)).0, 200, "{ct}");
    }
    let ops = json!([{"op": "add", "path": "/data/e", "value": "f"}]);
    let (s, v) = api.admin("PATCH", &item, "application/json-patch+json", Some(&ops));
    assert_eq!((s, &v["data"]["e"]), (200, &json!("f")), "{v}");
}

#[test]
fn resource_version_changes_only_on_writes_and_stale_writes_conflict() {
    let api = Api::new(Options::default());
    let item = format!("{CMS}/rv");
    let (_, created) = api.admin("POST", CMS, JSON, Some(&cm("rv")));
    let rv0 = created["metadata"]["resourceVersion"].clone();
    for _ in 0..2 {
        let (_, got) = api.admin("GET", &item, "", None);
        assert_eq!(
            got["metadata"]["resourceVersion"], rv0,
            "reads do not write"
        );
    }
    // an update with the current version
    let mut next = created.clone();
    next["data"]["a"] = json!("changed");
    let (s, v) = api.admin("PUT", &item, JSON, Some(&next));
    assert_eq!(s, 200, "{v}");
    let rv1 = v["metadata"]["resourceVersion"].clone();
    assert_ne!(rv1, rv0);
    // the same update again, with the old version: 409
    let (s, v) = api.admin("PUT", &item, JSON, Some(&next));
    assert_eq!(s, 409);
    assert_status(&v, 409, "Conflict");
    // a no-op update keeps the version
    let (_, cur) = api.admin("GET", &item, "", None);
    let (s, v) = api.admin("PUT", &item, JSON, Some(&cur));
    assert_eq!((s, &v["metadata"]["resourceVersion"]), (200, &rv1));
    // a merge patch carrying a stale version: 409; a current one: 200
    let stale = json!({"metadata": {"resourceVersion": rv0}, "data": {"x": "y"}});
    assert_eq!(api.admin("PATCH", &item, MERGE, Some(&stale)).0, 409);
    let fresh = json!({"metadata": {"resourceVersion": rv1}, "data": {"x": "y"}});
    assert_eq!(api.admin("PATCH", &item, MERGE, Some(&fresh)).0, 200);
    // merge patch null deletes
    let (_, v) = api.admin("PATCH", &item, MERGE, Some(&json!({"data": {"x": null}})));
    assert!(v["data"].get("x").is_none(), "{v}");
    // an update of something absent
    assert_eq!(
        api.admin("PUT", &format!("{CMS}/absent"), JSON, Some(&cm("absent")))
            .0,
        404
    );
}

#[test]
fn anonymous_requests_are_forbidden_except_cluster_info() {
    // no RBAC at all first: cluster-info is not readable either
    let bare = StandIn::start_pki(&pki(), Options::default());
    let anon = client(None);
    let url = |p: &str| format!("https://127.0.0.1:{}{p}", bare.port());
    let status = |p: &str| anon.get(&url(p)).call().unwrap().status().as_u16();
    bare.insert(api_support::cluster_info("https://127.0.0.1:1", b"ca"));
    assert_eq!(
        status(CLUSTER_INFO),
        403,
        "no RoleBinding for anonymous yet"
    );
    assert_eq!(status("/livez"), 200, "public info");
    // admin.conf's group is not bound yet: even admin is refused
    let admin = client(Some("admin.conf"));
    let r = admin
        .post(url(CMS))
        .content_type(JSON)
        .send(cm("a").to_string())
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let sup = client(Some("super-admin.conf"));
    let r = sup
        .post(url(CMS))
        .content_type(JSON)
        .send(cm("a").to_string())
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "system:masters may");

    let api = Api::new(Options::default());
    api.standin
        .insert(api_support::cluster_info("https://127.0.0.1:1", b"ca"));
    let (s, _, _) = api.send(&api.anonymous, "GET", CLUSTER_INFO, "", None);
    assert_eq!(
        s, 200,
        "kubeadm's RoleBinding lets anonymous read cluster-info"
    );
    for (method, path) in [
        ("GET", "/api/v1/namespaces/kube-system/secrets/x"),
        ("GET", "/api/v1/namespaces/kube-public/configmaps/other"),
        ("GET", "/api/v1/nodes/n"),
        ("POST", CMS),
    ] {
        let (s, v, _) = api.send(&api.anonymous, method, path, JSON, Some(&cm("z")));
        assert_eq!(s, 403, "{method} {path}");
        assert_status(&v, 403, "Forbidden");
        assert!(
            v["message"].as_str().unwrap().contains("system:anonymous"),
            "{v}"
        );
    }
    // a bootstrap token: unknown -> 401; known -> what the RBAC grants
    api.standin.insert(token_secret(
        "abcdef",
        "0123456789abcdef",
        time::Duration::hours(1),
    ));
    let with = |tok: &str, path: &str| {
        let r = api
            .anonymous
            .get(api.url(path))
            .header("Authorization", &format!("Bearer {tok}"))
            .call()
            .unwrap();
        r.status().as_u16()
    };
    assert_eq!(with("abcdef.ffffffffffffffff", CLUSTER_INFO), 401);
    assert_eq!(with("zzzzzz.0123456789abcdef", CLUSTER_INFO), 401);
    let kubelet_config = format!("{CMS}/kubelet-config");
    assert_eq!(
        with("abcdef.0123456789abcdef", &kubelet_config),
        404,
        "allowed, absent"
    );
    assert_eq!(
        with("abcdef.0123456789abcdef", &format!("{CMS}/other")),
        403,
        "only the named ConfigMaps"
    );
    // an expired token is no token
    api.standin.insert(token_secret(
        "expire",
        "0123456789abcdef",
        -time::Duration::minutes(1),
    ));
    assert_eq!(with("expire.0123456789abcdef", &kubelet_config), 401);
}

#[test]
fn the_kubelet_registers_and_updates_its_node_after_a_read() {
    let api = Api::new(Options {
        node: Some("n1".into()),
        node_after: 1,
        kubelet_updates: 1,
        ..Options::default()
    });
    let node = "/api/v1/nodes/n1";
    assert_eq!(
        api.admin("GET", node, "", None).0,
        404,
        "not registered yet"
    );
    let (s, read) = api.admin("GET", node, "", None);
    assert_eq!(s, 200);
    let rv = read["metadata"]["resourceVersion"].clone();
    let patch = json!({"metadata": {"resourceVersion": rv, "labels": {"mine": "x"}}});
    let (s, v) = api.admin("PATCH", node, MERGE, Some(&patch));
    assert_eq!(s, 409, "the kubelet wrote in between: {v}");
    let (_, read) = api.admin("GET", node, "", None);
    let patch = json!({"metadata": {"resourceVersion": read["metadata"]["resourceVersion"], "labels": {"mine": "x"}}});
    let (s, v) = api.admin("PATCH", node, MERGE, Some(&patch));
    assert_eq!(s, 200, "{v}");
    let labels = &v["metadata"]["labels"];
    assert_eq!(labels["mine"], "x");
    assert_eq!(
        labels["kubernetes.io/os"], "linux",
        "the kubelet's label kept"
    );
}

#[test]
fn the_bootstrap_signer_signs_cluster_info_after_a_read() {
    let api = Api::new(Options::default());
    let ca = std::fs::read(pki().join("ca.crt")).unwrap();
    api.standin.insert(api_support::cluster_info(
        &format!("https://127.0.0.1:{}", api.standin.port()),
        &ca,
    ));
    api.standin.insert(token_secret(
        "abcdef",
        "0123456789abcdef",
        time::Duration::hours(1),
    ));
    let (_, first, _) = api.send(&api.anonymous, "GET", CLUSTER_INFO, "", None);
    assert!(
        first["data"].get("jws-kubeconfig-abcdef").is_none(),
        "not yet"
    );
    let (_, second, _) = api.send(&api.anonymous, "GET", CLUSTER_INFO, "", None);
    assert!(
        second["data"]["jws-kubeconfig-abcdef"].is_string(),
        "{second}"
    );
    // an update with the version read before the signer wrote: 409
    assert_eq!(api.admin("PUT", CLUSTER_INFO, JSON, Some(&first)).0, 409);
    // the signature verifies with the token (kubeboot's verifier, as a
    // cross-check of the stand-in's own JWS code)
    let token = kubeboot::config::BootstrapToken {
        id: "abcdef".into(),
        secret: kubeboot::secret::Secret::new("0123456789abcdef"),
    };
    let pin = kubeboot::pki::spki_hash(&{
        let (_, pem) = x509_parser::pem::parse_x509_pem(&ca).unwrap();
        let cert = pem.parse_x509().unwrap();
        cert.tbs_certificate.subject_pki.raw.to_vec()
    });
    let info = kubeboot::api::discovery::verify_cluster_info(
        second.to_string().as_bytes(),
        &token,
        &[pin],
        false,
    );
    assert!(info.is_ok(), "{:?}", info.err());
    // a second signing token; a token without the signing usage is skipped
    let mut unsigned = token_secret("nosign", "0123456789abcdef", time::Duration::hours(1));
    unsigned["data"]["usage-bootstrap-signing"] = json!("ZmFsc2U="); // "false"
    api.standin.insert(unsigned);
    api.standin.insert(token_secret(
        "second",
        "0123456789abcdef",
        time::Duration::hours(1),
    ));
    api.standin.sign_now();
    let data = &api.standin.state().objects[CLUSTER_INFO]["data"];
    assert!(data["jws-kubeconfig-second"].is_string());
    assert!(data.get("jws-kubeconfig-nosign").is_none());
}

#[test]
fn list_requests_honour_label_selectors() {
    let api = Api::new(Options::default());
    let pod = |name: &str, component: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "kube-system",
            "labels": {"component": component, "tier": "control-plane"}}, "spec": {"containers": []}})
    };
    api.standin.insert(pod("etcd-a", "etcd"));
    api.standin
        .insert(pod("kube-apiserver-a", "kube-apiserver"));
    let names = |q: &str| -> Vec<String> {
        let (s, v) = api.admin(
            "GET",
            &format!("/api/v1/namespaces/kube-system/pods?{q}"),
            "",
            None,
        );
        assert_eq!(s, 200);
        assert_eq!(v["kind"], "PodList");
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("labelSelector=component%3Detcd,tier%3Dcontrol-plane"),
        ["etcd-a"]
    );
    assert_eq!(
        names("labelSelector=component%3Detcd-server"),
        Vec::<String>::new()
    );
    assert_eq!(names("labelSelector=component%21%3Detcd").len(), 1);
    assert_eq!(names("").len(), 2);
}

#[test]
fn faults_are_injected_as_asked() {
    let api = Api::new(Options::default());
    api.standin
        .fault(Fault::new("GET", "/too-many", FaultKind::TooMany(3)).times(1));
    api.standin.fault(
        Fault::new("GET", "/unavailable", FaultKind::Status(503))
            .skip(1)
            .times(1),
    );
    api.standin
        .fault(Fault::new("GET", "/reset", FaultKind::Reset));
    api.standin.fault(Fault::new(
        "GET",
        "/slow",
        FaultKind::Slow(Duration::from_millis(700)),
    ));
    let (s, v, after) = api.send(&api.admin, "GET", &format!("{CMS}/too-many"), "", None);
    assert_eq!((s, after.as_deref()), (429, Some("3")));
    assert_status(&v, 429, "TooManyRequests");
    assert_eq!(
        api.admin("GET", &format!("{CMS}/too-many"), "", None).0,
        404,
        "once"
    );
    assert_eq!(
        api.admin("GET", &format!("{CMS}/unavailable"), "", None).0,
        404,
        "skipped"
    );
    assert_eq!(
        api.admin("GET", &format!("{CMS}/unavailable"), "", None).0,
        503
    );
    let reset = api
        .admin
        .get(api.url(&format!("{CMS}/reset")))
        .call()
        .and_then(|mut r| r.body_mut().read_to_string());
    assert!(
        reset.is_err(),
        "a reset mid-response is an error: {reset:?}"
    );
    let t = Instant::now();
    assert_eq!(api.admin("GET", &format!("{CMS}/slow"), "", None).0, 404);
    assert!(t.elapsed() >= Duration::from_millis(700));
}

#[test]
fn a_failure_inside_the_stand_in_stops_the_run_at_once() {
    let api = Api::new(Options::default());
    // something the stand-in does not model is a failure, not an answer
    let (s, v) = api.admin("GET", "/apis/example.com/v1/widgets", "", None);
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap().contains("stand-in"), "{v}");
    // a run in progress is killed at once and the test fails with the message
    let t = Instant::now();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        api.standin
            .run(std::process::Command::new("sleep").arg("30"))
    }));
    let msg = *r.expect_err("run must fail").downcast::<String>().unwrap();
    assert!(msg.contains("widgets"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    // a panic inside a handler is caught and reported the same way
    let ok = StandIn::start_pki(&pki(), Options::default());
    ok.shared.state.lock().unwrap().after_get.push((
        "/api/v1/namespaces/kube-system/configmaps/boom".into(),
        Box::new(|_| panic!("boom inside the stand-in")),
    ));
    ok.insert(cm("boom"));
    let sup = client(Some("super-admin.conf"));
    let r = sup
        .get(format!("https://127.0.0.1:{}{CMS}/boom", ok.port()))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let f = ok.state().failures.clone();
    assert!(f.iter().any(|m| m.contains("boom inside")), "{f:?}");
    // and the lock is not poisoned for the next request
    let r = sup
        .get(format!("https://127.0.0.1:{}/livez", ok.port()))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[allow(dead_code)]
fn unused(_: &Path) {}
