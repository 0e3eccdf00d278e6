//! A strict Kubernetes API server stand-in for every test that drives
//! kubeboot's API phases (`api_phases`, `cli_firstboot`,
//! `etcdjoin_firstboot`, the firstboot bench). No kube-apiserver binary can
//! be had here, so this one refuses what the real server refuses:
//!
//! - authentication as the real server does it: a client certificate from
//!   the cluster CA (user = CN, groups = O), a bootstrap token checked
//!   against its `bootstrap-token-<id>` Secret in the store (401 when
//!   unknown or expired), or anonymous;
//! - authorization: `system:masters` may do anything; everyone else only
//!   what the RBAC objects in the store grant (`cluster-admin` is built
//!   in), so anonymous requests get 403 except `cluster-info` once its
//!   RoleBinding exists, and `admin.conf` may not create its own binding
//!   on a fresh cluster (403 with a `Status` body);
//! - `Content-Type`: `application/json` for POST/PUT, merge-patch,
//!   strategic-merge-patch or json-patch for PATCH, else 415;
//! - every written object (POST, PUT, and the result of a PATCH) is
//!   validated against Kubernetes' own JSON schema for the target version
//!   (tests/k8s-schema, from PyPI `kubernetes-validate`, strict:
//!   unknown fields are errors); an invalid one gets 422 `Invalid` with a
//!   `Status` naming the fields; kind, apiVersion, name and namespace must
//!   fit the URL (400);
//! - `resourceVersion` changes only on writes (a no-op update keeps it); a
//!   PUT or PATCH carrying a stale one gets 409 `Conflict`;
//! - two concurrent writers a real cluster has: the bootstrap signer
//!   (controller manager) that re-signs `cluster-info` with a
//!   `jws-kubeconfig-<id>` for every signing token, right after a client
//!   read it (so an update racing it conflicts); and the kubelet, which
//!   registers its Node after a few looks and then updates the Node's
//!   status and labels right after a client read it;
//! - list GETs honour equality-based `labelSelector`s and the field
//!   selectors `type` (Secrets), `metadata.name`, `metadata.namespace`;
//!   DELETE removes an item (404 when absent);
//! - per-test fault injection: 429 with `Retry-After`, any 5xx, a
//!   connection reset mid-response, a slow response.
//!
//! Anything the stand-in does not model (an unknown resource, a strategic
//! merge of a list) is a *failure*: [`StandIn::run`] kills kubeboot at once
//! and fails the test with the message; a panic inside the handler is
//! caught and reported the same way (no poisoned lock, no TLS timeout).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::net_support::{Reply, Request, Server, ok, tls_config_with};

/// kube-public/cluster-info.
pub const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------- schemas

/// The fixture directory of one Kubernetes minor version's schemas.
fn schema_dir(minor: u32) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/k8s-schema/v1.{minor}"))
}

type Validators = Mutex<BTreeMap<(u32, &'static str), Arc<jsonschema::Validator>>>;

/// The compiled validator of `file` (e.g. `configmap-v1`) for 1.`minor`.
fn validator(minor: u32, file: &'static str) -> Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Validators> = OnceLock::new();
    let cache = CACHE.get_or_init(Validators::default);
    if let Some(v) = lock(cache).get(&(minor, file)) {
        return v.clone();
    }
    let dir = schema_dir(minor);
    let read = |name: &str| -> Value {
        let p = dir.join(name);
        let text = std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e} (schemas for 1.32-1.34 only)", p.display()));
        serde_json::from_str(&text).unwrap()
    };
    let defs = read("_definitions.json");
    let registry = jsonschema::Registry::new()
        .add("https://kubernetes.io/api/_definitions.json", defs)
        .unwrap()
        .prepare()
        .unwrap();
    let compiled = jsonschema::options()
        .with_registry(&registry)
        .should_validate_formats(true)
        // Kubernetes' "byte": base64 (Secret data)
        .with_format("byte", |s: &str| {
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        })
        .build(&read(&format!("{file}.json")))
        .unwrap_or_else(|e| panic!("schema {file} 1.{minor}: {e}"));
    let v = Arc::new(compiled);
    lock(cache).insert((minor, file), v.clone());
    v
}

/// Schema errors of `obj` as `(field, message)`, empty when valid.
/// What the API server's validation of a Deployment or DaemonSet refuses
/// beyond the schema (pkg/apis/apps/validation: `ValidateDeploymentSpec`,
/// `ValidateDaemonSetSpec`; pkg/apis/core/validation `validateContainers`):
/// a selector that does not match the pod template's labels, and a
/// container name that is not a DNS-1123 label.
pub fn workload_errors(obj: &Value) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if !matches!(obj["kind"].as_str(), Some("Deployment" | "DaemonSet")) {
        return errors;
    }
    let labels = &obj["spec"]["template"]["metadata"]["labels"];
    let selector = obj["spec"]["selector"]["matchLabels"].as_object();
    let matches = selector.is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| &labels[k] == v));
    if !matches {
        errors.push((
            "spec.template.metadata.labels".to_string(),
            format!("Invalid value: {labels}: `selector` does not match template `labels`"),
        ));
    }
    let dns_label = |n: &str| {
        !n.is_empty()
            && n.len() <= 63
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.starts_with('-')
            && !n.ends_with('-')
    };
    for list in ["initContainers", "containers"] {
        let containers = obj["spec"]["template"]["spec"][list].as_array();
        for (i, c) in containers.into_iter().flatten().enumerate() {
            let name = c["name"].as_str().unwrap_or("");
            if !dns_label(name) {
                errors.push((
                    format!("spec.template.spec.{list}[{i}].name"),
                    format!("Invalid value: {name:?}: a lowercase RFC 1123 label"),
                ));
            }
        }
    }
    errors
}

pub fn schema_errors(minor: u32, file: &'static str, obj: &Value) -> Vec<(String, String)> {
    let v = validator(minor, file);
    v.iter_errors(obj)
        .map(|e| {
            let path = e.instance_path().to_string();
            let field = path.trim_start_matches('/').replace('/', ".");
            (field, e.to_string())
        })
        .collect()
}

/// What the stand-in knows of a resource: (group, version, plural, kind,
/// namespaced, schema file).
type Resource = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    Option<&'static str>,
);

const RESOURCES: &[Resource] = &[
    (
        "",
        "v1",
        "configmaps",
        "ConfigMap",
        true,
        Some("configmap-v1"),
    ),
    ("", "v1", "secrets", "Secret", true, Some("secret-v1")),
    (
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        Some("serviceaccount-v1"),
    ),
    ("", "v1", "services", "Service", true, Some("service-v1")),
    ("", "v1", "pods", "Pod", true, None),
    ("", "v1", "nodes", "Node", false, Some("node-v1")),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        Some("clusterrole-rbac-v1"),
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        Some("clusterrolebinding-rbac-v1"),
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        Some("role-rbac-v1"),
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        Some("rolebinding-rbac-v1"),
    ),
    (
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        Some("deployment-apps-v1"),
    ),
    (
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        true,
        Some("daemonset-apps-v1"),
    ),
    (
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "CertificateSigningRequest",
        false,
        Some("certificatesigningrequest-certificates-v1"),
    ),
];

/// The bootstrap policy's built-in ClusterRoles the stand-in knows besides
/// `cluster-admin` (kubernetes
/// plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go):
/// `system:node-bootstrapper` may create and read CSRs.
fn builtin_cluster_role(name: &str) -> Option<Value> {
    match name {
        "system:node-bootstrapper" => Some(json!({"rules": [{"apiGroups": ["certificates.k8s.io"],
            "resources": ["certificatesigningrequests"], "verbs": ["create", "get", "list", "watch"]}]})),
        _ => None,
    }
}

/// A parsed request URL.
#[derive(Debug, Clone)]
pub struct Target {
    pub res: Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The path without the query: the collection, or the item.
    pub path: String,
    pub collection: String,
    pub query: BTreeMap<String, String>,
}

impl Target {
    fn api_version(&self) -> String {
        match self.res.0 {
            "" => self.res.1.to_string(),
            g => format!("{g}/{}", self.res.1),
        }
    }
    fn item(&self, name: &str) -> String {
        format!("{}/{name}", self.collection)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses an API path; `None` for anything that is not a known resource.
pub fn parse_target(url: &str) -> Option<Target> {
    let (path, q) = url.split_once('?').unwrap_or((url, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name) = match rest {
        [p] => (*p, None),
        [p, n] => (*p, Some(n.to_string())),
        _ => return None,
    };
    let res = *RESOURCES
        .iter()
        .find(|r| r.0 == group && r.1 == version && r.2 == plural)?;
    if res.4 != namespace.is_some() {
        return None;
    }
    let prefix = match group {
        "" => format!("/api/{version}"),
        g => format!("/apis/{g}/{version}"),
    };
    let collection = match &namespace {
        Some(ns) => format!("{prefix}/namespaces/{ns}/{plural}"),
        None => format!("{prefix}/{plural}"),
    };
    Some(Target {
        res,
        namespace,
        name,
        path: path.to_string(),
        collection,
        query,
    })
}

// ------------------------------------------------------------ behaviour

/// How the stand-in behaves for one test.
#[derive(Clone)]
pub struct Options {
    /// The Kubernetes minor version whose schemas apply (32, 33, 34).
    pub minor: u32,
    /// The Node the kubelet registers (`None`: no kubelet).
    pub node: Option<String>,
    /// GETs of that Node answered 404 before the kubelet registers it.
    pub node_after: usize,
    /// How many times the kubelet updates its Node (status and labels)
    /// right after a client read it: each makes a write carrying the
    /// read resourceVersion conflict.
    pub kubelet_updates: usize,
    /// The bootstrap signer runs (signs cluster-info right after reads).
    pub signer: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            minor: 34,
            node: None,
            node_after: 2,
            kubelet_updates: 1,
            signer: true,
        }
    }
}

/// A fault to inject.
#[derive(Clone, Debug)]
pub enum FaultKind {
    /// 429 TooManyRequests with `Retry-After: <s>`.
    TooMany(u32),
    /// This status with a `Status` body (500, 503, ...).
    Status(u16),
    /// Half a response, then a connection reset.
    Reset,
    /// The normal answer, after this long.
    Slow(Duration),
    /// No answer; the connection closed after this long.
    Hang(Duration),
    /// 200 and a body without end.
    Endless,
}

/// Injects `kind` into requests whose method is `method` ("" for any) and
/// whose URL contains `path`: the first `skip` such requests pass, the
/// next `times` get the fault.
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: &'static str,
    pub path: String,
    pub skip: usize,
    pub times: usize,
    pub kind: FaultKind,
    seen: usize,
}

impl Fault {
    pub fn new(method: &'static str, path: &str, kind: FaultKind) -> Fault {
        Fault {
            method,
            path: path.to_string(),
            skip: 0,
            times: usize::MAX,
            kind,
            seen: 0,
        }
    }
    pub fn skip(mut self, n: usize) -> Fault {
        self.skip = n;
        self
    }
    pub fn times(mut self, n: usize) -> Fault {
        self.times = n;
        self
    }
}

/// One answered request: method, URL, status, who.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub user: String,
}

/// The store, by item path.
#[derive(Default)]
pub struct State {
    pub objects: BTreeMap<String, Value>,
    /// The last resourceVersion handed out.
    pub rv: u64,
    pub node_gets: usize,
    pub kubelet_updates_done: usize,
    /// Every answered request.
    pub log: Vec<Logged>,
    /// Requests refused for strictness (400, 401, 403, 415, 422), as text.
    pub rejections: Vec<String>,
    /// What the stand-in could not handle, or a panic inside it.
    pub failures: Vec<String>,
    pub faults: Vec<Fault>,
    /// Edits applied once, right after the first GET of a path.
    pub after_get: Vec<(String, Edit)>,
}

/// An edit of a stored object.
pub type Edit = Box<dyn FnOnce(&mut Value) + Send>;

/// The time as the API server writes it.
fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A `Status` reply as the API server sends it.
pub fn status_reply(code: u16, reason: &str, message: &str) -> Reply {
    Reply::Respond(
        code,
        vec![("Content-Type".into(), "application/json".into())],
        serde_json::to_vec(&status_body(code, reason, message)).unwrap(),
    )
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "reason": reason, "message": message, "code": code})
}

fn json_reply(code: u16, v: &Value) -> Reply {
    Reply::Respond(
        code,
        vec![("Content-Type".into(), "application/json".into())],
        serde_json::to_vec(v).unwrap(),
    )
}

/// The authenticated user: name and groups.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// The CN of the verified client certificate ("" without one).
pub fn client_cn(req: &Request) -> String {
    cert_user(req).map(|u| u.name).unwrap_or_default()
}

fn cert_user(req: &Request) -> Option<User> {
    let der = req.client_cert.as_deref()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let s = cert.subject();
    let name = s.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = s
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(User { name, groups })
}

// ----------------------------------------------------- the JWS, by hand

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A detached compact JWS (RFC 7515, HS256, `kid` = token id) over
/// `content` with the token secret as the key, as the bootstrap signer's
/// `ComputeDetachedSignature` makes it (kubernetes
/// pkg/controller/bootstrap/jws.go): `header..signature`. Written here
/// from the RFC, not with kubeboot's code.
pub fn detached_jws(content: &str, id: &str, secret: &str) -> String {
    let header = b64url(format!(r#"{{"alg":"HS256","kid":"{id}"}}"#).as_bytes());
    let input = format!("{header}.{}", b64url(content.as_bytes()));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let sig = ring::hmac::sign(&key, input.as_bytes());
    format!("{header}..{}", b64url(sig.as_ref()))
}

fn secret_field(secret: &Value, key: &str) -> Option<String> {
    let b = secret.pointer(&format!("/data/{key}"))?.as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
    String::from_utf8(raw).ok()
}

/// A bootstrap token Secret that is not expired.
fn live_token(secret: &Value) -> Option<(String, String)> {
    if secret["type"] != "bootstrap.kubernetes.io/token" {
        return None;
    }
    if let Some(exp) = secret_field(secret, "expiration") {
        let t = time::OffsetDateTime::parse(&exp, &time::format_description::well_known::Rfc3339)
            .ok()?;
        if t <= time::OffsetDateTime::now_utc() {
            return None;
        }
    }
    Some((
        secret_field(secret, "token-id")?,
        secret_field(secret, "token-secret")?,
    ))
}

// ------------------------------------------------------------ the server

/// The running stand-in.
pub struct StandIn {
    pub server: Server,
    pub shared: Arc<Shared>,
}

/// What the handler threads share.
pub struct Shared {
    pub state: Mutex<State>,
    pub opts: Options,
}

impl StandIn {
    /// Serves HTTPS with `cert`/`key` (the apiserver certificate), verifying
    /// client certificates from `ca` when presented, keeping connections
    /// open as the real server does.
    pub fn start(cert: &Path, key: &Path, ca: &Path, opts: Options) -> StandIn {
        let shared = Shared::new(opts);
        let s = shared.clone();
        let server =
            Server::https_keep_alive(tls_config_with(cert, key, Some(ca), true), move |req, _| {
                s.handle(req)
            });
        StandIn { server, shared }
    }

    /// With the control plane's rendered `pki` directory.
    pub fn start_pki(pki: &Path, opts: Options) -> StandIn {
        StandIn::start(
            &pki.join("apiserver.crt"),
            &pki.join("apiserver.key"),
            &pki.join("ca.crt"),
            opts,
        )
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// Stores `obj` at its item path as a write would (server fields set).
    pub fn insert(&self, obj: Value) {
        let mut st = self.state();
        let path = item_path(&obj);
        if self.shared.store(&mut st, &path, obj, None).is_err() {
            panic!("{}", st.failures.join("\n"));
        }
    }

    /// Edits a stored object as a write would (a new resourceVersion).
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut st = self.state();
        let mut o = st.objects.get(path).cloned().expect("object to edit");
        f(&mut o);
        if self.shared.store(&mut st, path, o, None).is_err() {
            panic!("{}", st.failures.join("\n"));
        }
    }

    /// Edits the object at `path` once, right after a client first read it.
    pub fn after_first_get(&self, path: &str, f: impl FnOnce(&mut Value) + Send + 'static) {
        self.state().after_get.push((path.to_string(), Box::new(f)));
    }

    pub fn fault(&self, f: Fault) {
        self.state().faults.push(f);
    }

    /// What a kubeadm cluster has for a node to join: kubeadm's RBAC
    /// ([`kubeadm_rbac`]), the bootstrap token `id.secret` (1 h left) and
    /// cluster-info naming this server with the CA `ca_pem`, signed now
    /// when the signer runs.
    pub fn seed_cluster(&self, ca_pem: &[u8], id: &str, secret: &str) {
        self.seed_cluster_at(
            ca_pem,
            id,
            secret,
            &format!("https://127.0.0.1:{}", self.port()),
        );
    }

    /// [`StandIn::seed_cluster`] with cluster-info naming `server`, the
    /// address clients reach this stand-in at (a VM's guest reaches it
    /// through a forward, at an address of its own network).
    pub fn seed_cluster_at(&self, ca_pem: &[u8], id: &str, secret: &str, server: &str) {
        for o in kubeadm_rbac() {
            self.insert(o);
        }
        self.insert(token_secret(id, secret, time::Duration::hours(1)));
        self.insert(cluster_info(server, ca_pem));
        if self.shared.opts.signer {
            self.sign_now();
        }
    }

    /// The bootstrap signer's pass, now.
    pub fn sign_now(&self) {
        let mut st = self.state();
        self.shared.sign(&mut st);
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    pub fn rejections(&self) -> Vec<String> {
        self.state().rejections.clone()
    }

    /// How many `method` requests whose URL contains `url_part` were
    /// answered `status` (e.g. the 409s a conflict retry met).
    pub fn served(&self, method: &str, url_part: &str, status: u16) -> usize {
        self.state()
            .log
            .iter()
            .filter(|l| l.method == method && l.url.contains(url_part) && l.status == status)
            .count()
    }

    /// Panics with the stand-in's failures, if any.
    pub fn check(&self) {
        let f = self.state().failures.clone();
        assert!(
            f.is_empty(),
            "API server stand-in failed:\n{}",
            f.join("\n")
        );
    }

    /// Runs `cmd` to its end, killing it and failing the test at once when
    /// the stand-in records a failure; output captured. At most 300 s.
    pub fn run(&self, cmd: &mut Command) -> Output {
        run_watched(cmd, || self.state().failures.clone())
    }
}

/// Runs `cmd`, polling `failures` while it runs: the first failure kills
/// it and panics with the message (and kubeboot's stderr so far).
pub fn run_watched(cmd: &mut Command, failures: impl Fn() -> Vec<String>) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        let f = failures();
        if !f.is_empty() || start.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
            panic!(
                "API server stand-in failed (kubeboot killed after {:?}):\n{}\nkubeboot stderr:\n{stderr}",
                start.elapsed(),
                f.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    let f = failures();
    assert!(
        f.is_empty(),
        "API server stand-in failed:\n{}\nkubeboot stderr:\n{}",
        f.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The item path of an object from its kind, namespace and name.
pub fn item_path(obj: &Value) -> String {
    let kind = obj["kind"].as_str().expect("kind");
    let r = RESOURCES.iter().find(|r| r.3 == kind).expect("known kind");
    let name = obj["metadata"]["name"].as_str().expect("name");
    let prefix = match r.0 {
        "" => format!("/api/{}", r.1),
        g => format!("/apis/{g}/{}", r.1),
    };
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) if r.4 => format!("{prefix}/namespaces/{ns}/{}/{name}", r.2),
        _ => format!("{prefix}/{}/{name}", r.2),
    }
}

/// JSON merge patch (RFC 7386): `null` deletes.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch) {
        (Some(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (None, Value::Object(p)) => {
            *target = Value::Object(Default::default());
            merge_patch(target, &Value::Object(p.clone()));
        }
        _ => *target = patch.clone(),
    }
}

fn has_list(v: &Value) -> bool {
    match v {
        Value::Array(_) => true,
        Value::Object(m) => m.values().any(has_list),
        _ => false,
    }
}

/// JSON patch (RFC 6902): add, remove, replace, test.
fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch is an array")?;
    for op in ops {
        let path = op["path"].as_str().ok_or("op without path")?;
        let (parent, last) = path.rsplit_once('/').ok_or("bad path")?;
        let last = last.replace("~1", "/").replace("~0", "~");
        match op["op"].as_str() {
            Some("test") => {
                if target.pointer(path) != Some(&op["value"]) {
                    return Err(format!("test failed at {path}"));
                }
            }
            Some("remove") => {
                let p = target.pointer_mut(parent).ok_or("no parent")?;
                match p {
                    Value::Object(m) => {
                        m.remove(&last).ok_or("nothing to remove")?;
                    }
                    Value::Array(a) => {
                        let i: usize = last.parse().map_err(|_| "bad index")?;
                        if i >= a.len() {
                            return Err("index out of range".into());
                        }
                        a.remove(i);
                    }
                    _ => return Err("bad parent".into()),
                }
            }
            Some(o @ ("add" | "replace")) => {
                let p = target.pointer_mut(parent).ok_or("no parent")?;
                let v = op["value"].clone();
                match p {
                    Value::Object(m) => {
                        if o == "replace" && !m.contains_key(&last) {
                            return Err("nothing to replace".into());
                        }
                        m.insert(last, v);
                    }
                    Value::Array(a) if last == "-" && o == "add" => a.push(v),
                    Value::Array(a) => {
                        let i: usize = last.parse().map_err(|_| "bad index")?;
                        match o {
                            "add" if i <= a.len() => a.insert(i, v),
                            "replace" if i < a.len() => a[i] = v,
                            _ => return Err("index out of range".into()),
                        }
                    }
                    _ => return Err("bad parent".into()),
                }
            }
            other => return Err(format!("op {other:?} not modelled")),
        }
    }
    Ok(())
}

/// Does `labels` match an equality-based selector (`a=b,c!=d,e`)?
fn selector_matches(selector: &str, labels: &Value) -> Result<bool, String> {
    for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let get = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
        let ok = if let Some((k, v)) = term.split_once("!=") {
            get(k) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            get(k) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            get(k).is_none()
        } else if term.contains(' ') || term.contains('(') {
            return Err(format!("set-based selector {term:?} not modelled"));
        } else {
            get(term).is_some()
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The outcome of one request inside the handler.
struct Answer {
    reply: Reply,
    status: u16,
}

impl Shared {
    /// A store and behaviour for a server the caller runs (the bench).
    pub fn new(opts: Options) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::default(),
            opts,
        })
    }

    /// Answers one request.
    pub fn handle(&self, req: &Request) -> Reply {
        // faults first, as a proxy in front of the server would inject them
        let fault = {
            let mut st = lock(&self.state);
            let mut hit = None;
            for f in st.faults.iter_mut() {
                if (f.method.is_empty() || f.method == req.method) && req.path.contains(&f.path) {
                    f.seen += 1;
                    if f.seen > f.skip && f.seen - f.skip <= f.times {
                        hit = Some(f.kind.clone());
                        break;
                    }
                }
            }
            if let Some(k) = &hit {
                let status = match k {
                    FaultKind::TooMany(_) => 429,
                    FaultKind::Status(s) => *s,
                    FaultKind::Reset | FaultKind::Hang(_) => 0,
                    FaultKind::Slow(_) | FaultKind::Endless => 200,
                };
                if !matches!(k, FaultKind::Slow(_)) {
                    st.log.push(Logged {
                        method: req.method.clone(),
                        url: req.path.clone(),
                        status,
                        user: "(fault)".into(),
                    });
                }
            }
            hit
        };
        match fault {
            Some(FaultKind::TooMany(s)) => {
                let body = status_body(
                    429,
                    "TooManyRequests",
                    "the server has received too many requests and has asked us to try again later",
                );
                return Reply::Respond(
                    429,
                    vec![
                        ("Retry-After".into(), s.to_string()),
                        ("Content-Type".into(), "application/json".into()),
                    ],
                    serde_json::to_vec(&body).unwrap(),
                );
            }
            Some(FaultKind::Status(code)) => {
                let reason = match code {
                    403 => "Forbidden",
                    500 => "InternalError",
                    503 => "ServiceUnavailable",
                    504 => "Timeout",
                    _ => "Unknown",
                };
                return status_reply(code, reason, &format!("injected fault: {reason}"));
            }
            Some(FaultKind::Reset) => {
                let body = status_body(200, "", "").to_string().repeat(4);
                return Reply::Reset(200, body.into_bytes());
            }
            Some(FaultKind::Hang(d)) => return Reply::Hang(d),
            Some(FaultKind::Endless) => return Reply::Endless(vec![b'{'; 64 * 1024]),
            Some(FaultKind::Slow(d)) => std::thread::sleep(d),
            None => {}
        }
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut st = lock(&self.state);
            let (answer, user) = self.answer(&mut st, req);
            st.log.push(Logged {
                method: req.method.clone(),
                url: req.path.clone(),
                status: answer.status,
                user,
            });
            if matches!(answer.status, 400 | 401 | 403 | 415 | 422) {
                st.rejections
                    .push(format!("{} {} -> {}", req.method, req.path, answer.status));
            }
            answer.reply
        }));
        match caught {
            Ok(r) => r,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.fail(&format!("{} {}: panic: {msg}", req.method, req.path))
            }
        }
    }

    /// Records a failure (the state not locked); kubeboot gets a 400
    /// saying so.
    fn fail(&self, msg: &str) -> Reply {
        fail_in(&mut lock(&self.state), msg)
    }

    /// Who is asking: `Err` with the 401 reply when a token is bad.
    fn authenticate(&self, st: &State, req: &Request) -> Result<User, Answer> {
        if let Some(u) = cert_user(req) {
            return Ok(u);
        }
        if let Some(auth) = req.header("Authorization") {
            let unauthorized = Answer {
                reply: status_reply(401, "Unauthorized", "Unauthorized"),
                status: 401,
            };
            let Some(tok) = auth.strip_prefix("Bearer ") else {
                return Err(unauthorized);
            };
            let Some((id, secret)) = tok.split_once('.') else {
                return Err(unauthorized);
            };
            let path = format!("/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}");
            let Some(s) = st.objects.get(&path) else {
                return Err(unauthorized);
            };
            let usable =
                secret_field(s, "usage-bootstrap-authentication").as_deref() == Some("true");
            match live_token(s) {
                Some((i, sec)) if usable && i == id && sec == secret => {}
                _ => return Err(unauthorized),
            }
            let mut groups = vec!["system:bootstrappers".to_string()];
            if let Some(extra) = secret_field(s, "auth-extra-groups") {
                groups.extend(extra.split(',').map(|g| g.trim().to_string()));
            }
            groups.push("system:authenticated".into());
            return Ok(User {
                name: format!("system:bootstrap:{id}"),
                groups,
            });
        }
        Ok(User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        })
    }

    /// RBAC as the authorizer evaluates it, from the stored objects.
    fn allowed(&self, st: &State, u: &User, verb: &str, t: &Target) -> bool {
        if u.groups.iter().any(|g| g == "system:masters") {
            return true;
        }
        let rbac = "/apis/rbac.authorization.k8s.io/v1";
        let name = t.name.as_deref().unwrap_or("");
        let subject_ok = |b: &Value| {
            b["subjects"].as_array().is_some_and(|subs| {
                subs.iter().any(|s| match s["kind"].as_str() {
                    Some("User") => s["name"] == u.name.as_str(),
                    Some("Group") => u.groups.iter().any(|g| s["name"] == g.as_str()),
                    _ => false,
                })
            })
        };
        let rules_allow = |role: Option<&Value>, builtin_admin: bool| -> bool {
            if builtin_admin {
                return true;
            }
            let Some(rules) = role.and_then(|r| r["rules"].as_array()) else {
                return false;
            };
            let has = |v: &Value, want: &str| {
                v.as_array()
                    .is_some_and(|a| a.iter().any(|x| x == want || x == "*"))
            };
            rules.iter().any(|r| {
                has(&r["apiGroups"], t.res.0)
                    && has(&r["resources"], t.res.2)
                    && has(&r["verbs"], verb)
                    && match r["resourceNames"].as_array() {
                        None => true,
                        Some(a) if a.is_empty() => true,
                        Some(a) => !name.is_empty() && a.iter().any(|x| x == name),
                    }
            })
        };
        let builtin: Vec<(String, Value)> = ["system:node-bootstrapper"]
            .iter()
            .filter_map(|n| Some((n.to_string(), builtin_cluster_role(n)?)))
            .collect();
        let cluster_role = |n: &str| {
            st.objects
                .get(&format!("{rbac}/clusterroles/{n}"))
                .or_else(|| builtin.iter().find(|(b, _)| b == n).map(|(_, r)| r))
        };
        let crb = format!("{rbac}/clusterrolebindings/");
        for (path, b) in &st.objects {
            if path.starts_with(&crb) && subject_ok(b) && b["roleRef"]["kind"] == "ClusterRole" {
                let n = b["roleRef"]["name"].as_str().unwrap_or("");
                if rules_allow(cluster_role(n), n == "cluster-admin") {
                    return true;
                }
            }
        }
        if let Some(ns) = &t.namespace {
            let rb = format!("{rbac}/namespaces/{ns}/rolebindings/");
            for (path, b) in &st.objects {
                if !(path.starts_with(&rb) && subject_ok(b)) {
                    continue;
                }
                let n = b["roleRef"]["name"].as_str().unwrap_or("");
                let role = match b["roleRef"]["kind"].as_str() {
                    Some("Role") => st.objects.get(&format!("{rbac}/namespaces/{ns}/roles/{n}")),
                    _ => cluster_role(n),
                };
                if rules_allow(
                    role,
                    n == "cluster-admin" && b["roleRef"]["kind"] == "ClusterRole",
                ) {
                    return true;
                }
            }
        }
        false
    }

    fn answer(&self, st: &mut State, req: &Request) -> (Answer, String) {
        let user = match self.authenticate(st, req) {
            Ok(u) => u,
            Err(a) => return (a, "(bad token)".into()),
        };
        let who = user.name.clone();
        let bare = req.path.split('?').next().unwrap_or("");
        if matches!(bare, "/livez" | "/readyz" | "/healthz") {
            // system:public-info-viewer
            return (
                Answer {
                    reply: ok(b"ok"),
                    status: 200,
                },
                who,
            );
        }
        if bare == "/version" {
            let minor = self.opts.minor;
            let v = json!({"major": "1", "minor": minor.to_string(),
                "gitVersion": format!("v1.{minor}.0"), "platform": "linux/amd64"});
            return (
                Answer {
                    reply: json_reply(200, &v),
                    status: 200,
                },
                who,
            );
        }
        let Some(t) = parse_target(&req.path) else {
            let msg = format!(
                "{} {}: not a resource the stand-in models",
                req.method, req.path
            );
            return (
                Answer {
                    reply: fail_in(st, &msg),
                    status: 400,
                },
                who,
            );
        };
        let verb = match (req.method.as_str(), &t.name) {
            ("GET", Some(_)) => "get",
            ("GET", None) => "list",
            ("POST", None) => "create",
            ("PUT", Some(_)) => "update",
            ("PATCH", Some(_)) => "patch",
            ("DELETE", Some(_)) => "delete",
            _ => {
                return (
                    Answer {
                        reply: status_reply(
                            405,
                            "MethodNotAllowed",
                            "the server does not allow this method on the requested resource",
                        ),
                        status: 405,
                    },
                    who,
                );
            }
        };
        if !self.allowed(st, &user, verb, &t) {
            let what = match &t.name {
                Some(n) => format!("{} {:?}", t.res.2, n),
                None => t.res.2.to_string(),
            };
            let scope = match &t.namespace {
                Some(ns) => format!(" in the namespace {ns:?}"),
                None => " at the cluster scope".into(),
            };
            let group = if t.res.0.is_empty() { "\"\"" } else { t.res.0 };
            let msg = format!(
                "{what} is forbidden: User {:?} cannot {verb} resource {:?} in API group {group}{scope}",
                user.name, t.res.2
            );
            return (
                Answer {
                    reply: status_reply(403, "Forbidden", &msg),
                    status: 403,
                },
                who,
            );
        }
        let a = match verb {
            "get" => self.get(st, &t),
            "list" => self.list(st, &t),
            "create" | "update" | "patch" => self.write(st, req, &t, verb),
            "delete" => self.delete(st, &t),
            _ => Answer {
                reply: fail_in(st, &format!("{} {}: not modelled", req.method, req.path)),
                status: 400,
            },
        };
        (a, who)
    }

    fn get(&self, st: &mut State, t: &Target) -> Answer {
        let path = t.item(t.name.as_deref().unwrap_or(""));
        let is_node = self
            .opts
            .node
            .as_ref()
            .is_some_and(|n| t.res.2 == "nodes" && t.name.as_deref() == Some(n));
        if is_node && !st.objects.contains_key(&path) {
            st.node_gets += 1;
            if st.node_gets > self.opts.node_after {
                self.kubelet_registers(st);
            }
        }
        let Some(obj) = st.objects.get(&path).cloned() else {
            let msg = format!(
                "{} {:?} not found",
                t.res.2,
                t.name.as_deref().unwrap_or("")
            );
            return Answer {
                reply: status_reply(404, "NotFound", &msg),
                status: 404,
            };
        };
        // what happens right after the read: the racing writers
        if let Some(i) = st.after_get.iter().position(|(p, _)| *p == path) {
            let (_, edit) = st.after_get.remove(i);
            let mut o = obj.clone();
            edit(&mut o);
            let _ = self.store(st, &path, o, None);
        }
        if is_node && st.kubelet_updates_done < self.opts.kubelet_updates {
            st.kubelet_updates_done += 1;
            self.kubelet_updates_node(st, &path);
        }
        if path == CLUSTER_INFO && self.opts.signer {
            self.sign(st);
        }
        Answer {
            reply: json_reply(200, &obj),
            status: 200,
        }
    }

    /// DELETE of an item: gone from the store, a `Status` Success; 404
    /// when it is not there.
    fn delete(&self, st: &mut State, t: &Target) -> Answer {
        let n = t.name.clone().unwrap_or_default();
        match st.objects.remove(&t.item(&n)) {
            Some(_) => {
                st.rv += 1;
                let body = json!({"apiVersion": "v1", "kind": "Status", "metadata": {},
                    "status": "Success", "details": {"name": n, "kind": t.res.2}});
                Answer {
                    reply: json_reply(200, &body),
                    status: 200,
                }
            }
            None => Self::reject(404, "NotFound", format!("{} {n:?} not found", t.res.2)),
        }
    }

    fn list(&self, st: &mut State, t: &Target) -> Answer {
        // field selectors: the real server supports `type` on Secrets and
        // `metadata.name`/`metadata.namespace` everywhere (equality only here)
        let mut fields: Vec<(String, String)> = Vec::new();
        if let Some(fs) = t.query.get("fieldSelector") {
            for term in fs.split(',').filter(|x| !x.is_empty()) {
                let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) else {
                    return Answer {
                        reply: fail_in(st, &format!("fieldSelector {term:?} is not modelled")),
                        status: 400,
                    };
                };
                let known = matches!(k, "metadata.name" | "metadata.namespace")
                    || (k == "type" && t.res.2 == "secrets");
                if !known {
                    return Self::reject(
                        400,
                        "BadRequest",
                        format!("field label not supported: {k}"),
                    );
                }
                fields.push((k.to_string(), v.to_string()));
            }
        }
        let field_ok = |o: &Value| {
            fields.iter().all(|(k, v)| {
                let got = match k.as_str() {
                    "type" => &o["type"],
                    "metadata.name" => &o["metadata"]["name"],
                    _ => &o["metadata"]["namespace"],
                };
                got.as_str() == Some(v.as_str())
            })
        };
        let selector = t.query.get("labelSelector").cloned().unwrap_or_default();
        let prefix = format!("{}/", t.collection);
        let mut items = Vec::new();
        for (p, o) in &st.objects {
            if !p.starts_with(&prefix) {
                continue;
            }
            match selector_matches(&selector, &o["metadata"]["labels"]) {
                Ok(true) if field_ok(o) => items.push(o.clone()),
                Ok(true) => {}
                Ok(false) => {}
                Err(e) => {
                    return Answer {
                        reply: fail_in(st, &e),
                        status: 400,
                    };
                }
            }
        }
        let list = json!({"apiVersion": t.api_version(), "kind": format!("{}List", t.res.3),
            "metadata": {"resourceVersion": st.rv.to_string()}, "items": items});
        Answer {
            reply: json_reply(200, &list),
            status: 200,
        }
    }

    fn reject(code: u16, reason: &str, msg: String) -> Answer {
        Answer {
            reply: status_reply(code, reason, &msg),
            status: code,
        }
    }

    fn write(&self, st: &mut State, req: &Request, t: &Target, verb: &str) -> Answer {
        let ct = req.header("Content-Type").unwrap_or("");
        let media = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let fits = match verb {
            "patch" => matches!(
                media.as_str(),
                "application/merge-patch+json"
                    | "application/strategic-merge-patch+json"
                    | "application/json-patch+json"
            ),
            // an empty Content-Type means the first serializer, JSON
            // (apiserver endpoints/handlers/negotiation/negotiate.go
            // NegotiateInputSerializerForMediaType); YAML and protobuf,
            // which the real server also reads, are not modelled here
            _ => media.is_empty() || media == "application/json",
        };
        if !fits {
            let msg = match verb {
                "patch" => format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {ct:?})"
                ),
                _ => format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json (got {ct:?})"
                ),
            };
            return Self::reject(415, "UnsupportedMediaType", msg);
        }
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => {
                return Self::reject(
                    400,
                    "BadRequest",
                    format!("the request body is not JSON: {e}"),
                );
            }
        };
        let name = t.name.clone();
        let (path, obj, precondition) = match verb {
            "create" => {
                let Some(n) = body["metadata"]["name"].as_str().filter(|n| !n.is_empty()) else {
                    return Self::reject(
                        422,
                        "Invalid",
                        format!(
                            "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                            t.res.3
                        ),
                    );
                };
                let path = t.item(n);
                if st.objects.contains_key(&path) {
                    return Self::reject(
                        409,
                        "AlreadyExists",
                        format!("{} {n:?} already exists", t.res.2),
                    );
                }
                if body["metadata"]
                    .get("resourceVersion")
                    .is_some_and(|v| !v.is_null())
                {
                    return Self::reject(
                        500,
                        "InternalError",
                        "resourceVersion should not be set on objects to be created".into(),
                    );
                }
                (path, body, None)
            }
            "update" => {
                let n = name.unwrap_or_default();
                let path = t.item(&n);
                if body["metadata"]["name"] != n.as_str() {
                    return Self::reject(
                        400,
                        "BadRequest",
                        format!(
                            "the name of the object ({}) does not match the name on the URL ({n})",
                            body["metadata"]["name"]
                        ),
                    );
                }
                if !st.objects.contains_key(&path) {
                    return Self::reject(404, "NotFound", format!("{} {n:?} not found", t.res.2));
                }
                let rv = body["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string);
                (path, body, rv)
            }
            _ => {
                let n = name.unwrap_or_default();
                let path = t.item(&n);
                let Some(mut cur) = st.objects.get(&path).cloned() else {
                    return Self::reject(404, "NotFound", format!("{} {n:?} not found", t.res.2));
                };
                let mut rv = None;
                match media.as_str() {
                    "application/json-patch+json" => {
                        if let Err(e) = json_patch(&mut cur, &body) {
                            return Self::reject(422, "Invalid", format!("JSON patch: {e}"));
                        }
                    }
                    m => {
                        if m.contains("strategic") && has_list(&body) {
                            return Answer {
                                reply: self
                                    .fail("a strategic merge patch of a list is not modelled"),
                                status: 400,
                            };
                        }
                        rv = body["metadata"]["resourceVersion"]
                            .as_str()
                            .map(str::to_string);
                        merge_patch(&mut cur, &body);
                    }
                }
                (path, cur, rv)
            }
        };
        // a CSR's request must be a PEM certificate request
        if t.res.2 == "certificatesigningrequests" {
            let pem = obj["spec"]["request"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if !pem.contains("-----BEGIN CERTIFICATE REQUEST-----") {
                return Self::reject(422, "Invalid", "CertificateSigningRequest: spec.request: Invalid value: must be a PEM CERTIFICATE REQUEST".into());
            }
        }
        // the body must fit the URL
        if obj["apiVersion"] != t.api_version().as_str() || obj["kind"] != t.res.3 {
            return Self::reject(
                400,
                "BadRequest",
                format!(
                    "the object's apiVersion/kind ({}/{}) do not fit the URL ({} {})",
                    obj["apiVersion"],
                    obj["kind"],
                    t.api_version(),
                    t.res.3
                ),
            );
        }
        match (&t.namespace, obj["metadata"]["namespace"].as_str()) {
            (Some(ns), Some(o)) if ns != o => {
                return Self::reject(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request".into());
            }
            (None, Some(_)) => {
                return Self::reject(400, "BadRequest", format!("{} is not namespaced", t.res.3));
            }
            _ => {}
        }
        let stored_rv = st.objects.get(&path).and_then(|o| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string)
        });
        if let (Some(want), Some(have)) = (&precondition, &stored_rv)
            && want != have
        {
            return Self::reject(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your changes to the latest version and try again",
                    t.res.2,
                    obj["metadata"]["name"].as_str().unwrap_or("")
                ),
            );
        }
        let code = if verb == "create" { 201 } else { 200 };
        match self.store(st, &path, obj, Some(t)) {
            Ok(stored) => Answer {
                reply: json_reply(code, &stored),
                status: code,
            },
            Err(a) => a,
        }
    }

    /// Validates and stores `obj` at `path` with the server's fields; a new
    /// resourceVersion only when something changed. `t` is the request's
    /// target (`None` for the stand-in's own writes, which must be valid).
    fn store(
        &self,
        st: &mut State,
        path: &str,
        mut obj: Value,
        t: Option<&Target>,
    ) -> Result<Value, Answer> {
        let target = parse_target(path).expect("a stored path is a resource");
        if let Some(ns) = &target.namespace
            && obj["metadata"].get("namespace").is_none_or(Value::is_null)
        {
            obj["metadata"]["namespace"] = json!(ns);
        }
        let old = st.objects.get(path).cloned();
        let meta = &mut obj["metadata"];
        match &old {
            Some(o) => {
                meta["uid"] = o["metadata"]["uid"].clone();
                meta["creationTimestamp"] = o["metadata"]["creationTimestamp"].clone();
                meta["resourceVersion"] = o["metadata"]["resourceVersion"].clone();
            }
            None => {
                meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", st.rv + 1));
                meta["creationTimestamp"] = json!(now());
                if let Some(m) = meta.as_object_mut() {
                    m.remove("resourceVersion");
                }
            }
        }
        if let Some(file) = target.res.5 {
            let mut errors = schema_errors(self.opts.minor, file, &obj);
            errors.extend(workload_errors(&obj));
            if !errors.is_empty() {
                let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                let causes: Vec<Value> = errors
                    .iter()
                    .map(|(f, m)| json!({"reason": "FieldValueInvalid", "field": f, "message": m}))
                    .collect();
                let list: Vec<String> = errors.iter().map(|(f, m)| format!("{f}: {m}")).collect();
                let msg = format!("{} {name:?} is invalid: {}", target.res.3, list.join("; "));
                if t.is_none() {
                    // the stand-in's own write: its bug, not kubeboot's
                    let _ = fail_in(st, &format!("stand-in wrote an invalid object: {msg}"));
                }
                let mut body = status_body(422, "Invalid", &msg);
                body["details"] = json!({"name": name, "kind": target.res.2, "causes": causes});
                return Err(Answer {
                    reply: json_reply(422, &body),
                    status: 422,
                });
            }
        }
        if old.as_ref() == Some(&obj) {
            return Ok(obj); // a no-op update keeps its resourceVersion
        }
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        st.objects.insert(path.to_string(), obj.clone());
        Ok(obj)
    }

    /// The kubelet registers its Node (with the labels the kubelet sets on
    /// registration and its not-ready taint).
    fn kubelet_registers(&self, st: &mut State) {
        let name = self.opts.node.clone().unwrap_or_default();
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}});
        let path = format!("/api/v1/nodes/{name}");
        let _ = self.store(st, &path, node, None);
    }

    /// The kubelet's status update: a heartbeat and its default labels.
    fn kubelet_updates_node(&self, st: &mut State, path: &str) {
        let mut node = st.objects[path].clone();
        node["metadata"]["labels"]["kubernetes.io/os"] = json!("linux");
        node["metadata"]["labels"]["kubernetes.io/arch"] = json!("amd64");
        node["status"]["conditions"][0]["lastHeartbeatTime"] = json!(now());
        node["status"]["conditions"][0]["message"] =
            json!(format!("heartbeat {}", st.kubelet_updates_done));
        let _ = self.store(st, path, node, None);
    }

    /// The bootstrap signer's pass (kubernetes
    /// pkg/controller/bootstrap/bootstrapsigner.go `signConfigMap`): drop
    /// every `jws-kubeconfig-*` key, sign `kubeconfig` for every live token
    /// Secret with `usage-bootstrap-signing: true`, write when different.
    fn sign(&self, st: &mut State) {
        let Some(cm) = st.objects.get(CLUSTER_INFO).cloned() else {
            return;
        };
        let Some(content) = cm["data"]["kubeconfig"].as_str() else {
            return;
        };
        let prefix = "/api/v1/namespaces/kube-system/secrets/";
        let tokens: Vec<(String, String)> = st
            .objects
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .filter(|(_, s)| secret_field(s, "usage-bootstrap-signing").as_deref() == Some("true"))
            .filter_map(|(_, s)| live_token(s))
            .collect();
        let mut new = cm.clone();
        let data = new["data"].as_object_mut().unwrap();
        data.retain(|k, _| !k.starts_with("jws-kubeconfig-"));
        for (id, secret) in tokens {
            data.insert(
                format!("jws-kubeconfig-{id}"),
                json!(detached_jws(content, &id, &secret)),
            );
        }
        if new != cm {
            let _ = self.store(st, CLUSTER_INFO, new, None);
        }
    }
}

/// Records a failure in the locked state; the client gets a 400 saying so.
fn fail_in(st: &mut State, msg: &str) -> Reply {
    st.failures.push(msg.to_string());
    status_reply(400, "BadRequest", &format!("API server stand-in: {msg}"))
}

// --------------------------------------------------------------- helpers

/// A kubelet `/healthz` stub: 503 for the first `unhealthy` requests, 200
/// after (`usize::MAX`: never healthy).
pub fn kubelet_healthz(unhealthy: usize) -> Server {
    Server::http(move |_, i| {
        if i < unhealthy {
            Reply::Respond(
                503,
                vec![],
                b"[-]syncloop failed\nhealthz check failed\n".to_vec(),
            )
        } else {
            ok(b"ok")
        }
    })
}

/// A bootstrap token Secret as `kubeadm token create` stores it (kubeadm
/// cmd/kubeadm/app/apis/bootstraptoken/v1 `BootstrapTokenToSecret`): the
/// default usages and the default node token group. Spelled here, not
/// taken from kubeboot.
pub fn token_secret(id: &str, secret: &str, expires_in: time::Duration) -> Value {
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let exp = (time::OffsetDateTime::now_utc() + expires_in)
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "data": {"token-id": b(id), "token-secret": b(secret), "expiration": b(&exp),
            "usage-bootstrap-authentication": b("true"), "usage-bootstrap-signing": b("true"),
            "auth-extra-groups": b("system:bootstrappers:kubeadm:default-node-token")}})
}

/// The RBAC a kubeadm cluster has for joining nodes and admins, spelled
/// from kubeadm's source (cmd/kubeadm/app/phases/bootstraptoken/clusterinfo
/// and node, uploadconfig, kubelet, copycerts, kubeconfig): anonymous may
/// get cluster-info; the default node token group may get kubeadm-config,
/// kubelet-config, kubeadm-certs and Nodes, and create CSRs
/// (`system:node-bootstrapper`); `kubeadm:cluster-admins` is bound to
/// cluster-admin.
pub fn kubeadm_rbac() -> Vec<Value> {
    const GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
    let rbac = "rbac.authorization.k8s.io/v1";
    let role = |ns: &str, name: &str, res: &str, names: &[&str]| {
        json!({"apiVersion": rbac, "kind": "Role", "metadata": {"name": name, "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": [res], "resourceNames": names, "verbs": ["get"]}]})
    };
    let binding = |ns: &str, name: &str, subjects: Value| {
        json!({"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": subjects})
    };
    let group =
        |g: &str| json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": g});
    vec![
        role(
            "kube-public",
            "kubeadm:bootstrap-signer-clusterinfo",
            "configmaps",
            &["cluster-info"],
        ),
        binding(
            "kube-public",
            "kubeadm:bootstrap-signer-clusterinfo",
            json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "system:anonymous"}]),
        ),
        role(
            "kube-system",
            "kubeadm:nodes-kubeadm-config",
            "configmaps",
            &["kubeadm-config"],
        ),
        binding(
            "kube-system",
            "kubeadm:nodes-kubeadm-config",
            json!([group(GROUP), group("system:nodes")]),
        ),
        role(
            "kube-system",
            "kubeadm:kubelet-config",
            "configmaps",
            &["kubelet-config"],
        ),
        binding(
            "kube-system",
            "kubeadm:kubelet-config",
            json!([group(GROUP), group("system:nodes")]),
        ),
        role(
            "kube-system",
            "kubeadm:kubeadm-certs",
            "secrets",
            &["kubeadm-certs"],
        ),
        binding(
            "kube-system",
            "kubeadm:kubeadm-certs",
            json!([group(GROUP)]),
        ),
        json!({"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": "kubeadm:get-nodes"},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]}),
        json!({"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": "kubeadm:get-nodes"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeadm:get-nodes"},
            "subjects": [group(GROUP)]}),
        json!({"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": "kubeadm:kubelet-bootstrap"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node-bootstrapper"},
            "subjects": [group(GROUP)]}),
        json!({"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": "kubeadm:cluster-admins"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [group("kubeadm:cluster-admins")]}),
    ]
}

/// kube-public/cluster-info for `server` with the CA `ca_pem`: a
/// kubeconfig with one unnamed cluster, as kubeadm's clusterinfo phase
/// writes it. Spelled here (YAML by hand), not with kubeboot's builder.
pub fn cluster_info(server: &str, ca_pem: &[u8]) -> Value {
    let kubeconfig = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        base64::engine::general_purpose::STANDARD.encode(ca_pem)
    );
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": kubeconfig}})
}
