//! Interop with code that is not kubeboot's, in both directions:
//!
//! - `kubeadm-certs`: `tests/go/kubeadmcompat` (Go, written from kubeadm's
//!   `EncryptBytes`/`DecryptBytes` in cmd/kubeadm/app/util/crypto/crypto.go:
//!   AES-256-GCM, `Seal(nonce, nonce, data, nil)`) encrypts the shared CAs
//!   that kubeboot's `download-certs` must open; kubeboot's `upload-certs`
//!   stores values that the Go program must open.
//! - `cluster-info`: the kubeconfig is written here by hand the way kubeadm's
//!   clientcmd serialises it, and signed by the Go program exactly as the
//!   bootstrap signer does (k8s.io/cluster-bootstrap/token/jws: detached
//!   compact JWS, protected header `{"alg":"HS256","kid":"<id>"}`); the pin
//!   comes from openssl. kubeboot's discovery must accept it, and refuse one
//!   signed with another secret.
//! - `bootstrap-kubelet.conf` is read back by `kubectl config view --raw -o
//!   json` and checked field by field, then used by kubectl itself against
//!   the stand-in API server.
//!
//! Peers: go (Debian golang-go), openssl, kubectl; a missing one is a SKIP
//! line, or a failure under `KUBEBOOT_REQUIRE_PEERS=1`.

#[path = "cli_support/mod.rs"]
mod cli_support;
#[path = "net_support/mod.rs"]
mod net_support;
#[path = "peer_support/mod.rs"]
mod peer_support;
#[path = "store_support/mod.rs"]
mod store_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cli_support::{kubeboot, render_control_plane, text, tmpdir};
use net_support::{Reply, Server, ok, tls_config};
use serde_json::{Value, json};

const KEY: &str = "7f3c1a9e5b2d4c6e8a0f1b3d5c7e9a2b4d6f8e0a1c3e5b7d9f2a4c6e8b0d1f3a";
const TOKEN_ID: &str = "q7x2ke";
const TOKEN_SECRET: &str = "m4n8p2r6t0v3w7y1";

/// kubeadm-certs' data keys and where each file lives under the PKI dir
/// (kubeadm's copycerts: `certOrKeyNameToSecretName` turns `/` into `-`).
const SHARED: [(&str, &str); 8] = [
    ("ca.crt", "ca.crt"),
    ("ca.key", "ca.key"),
    ("front-proxy-ca.crt", "front-proxy-ca.crt"),
    ("front-proxy-ca.key", "front-proxy-ca.key"),
    ("sa.key", "sa.key"),
    ("sa.pub", "sa.pub"),
    ("etcd-ca.crt", "etcd/ca.crt"),
    ("etcd-ca.key", "etcd/ca.key"),
];

/// Runs the Go program with `stdin`; its stdout, or a panic with stderr.
fn compat(bin: &Path, cmd: &str, key: &str, secret: &str, stdin: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new(bin)
        .arg(cmd)
        .env("KUBEADM_CERT_KEY", key)
        .env("KUBEADM_TOKEN_ID", TOKEN_ID)
        .env("KUBEADM_TOKEN_SECRET", secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let o = child.wait_with_output().unwrap();
    if o.status.success() {
        Ok(o.stdout)
    } else {
        Err(text(&o.stderr))
    }
}

/// The peers: the Go program, openssl and kubectl (None after a SKIP line).
struct Peers {
    go: PathBuf,
    kubectl: PathBuf,
}

fn peers(test: &str, dir: &Path) -> Option<Peers> {
    peer_support::tool(test, "openssl", "apt-get install openssl")?;
    let kubectl = peer_support::tool(test, "kubectl", "kubectl (not in Debian; see README)")?;
    let go = peer_support::go_build(test, "kubeadmcompat", dir)?;
    Some(Peers { go, kubectl })
}

/// The `sha256:<hex>` pin of the CA's public key, by openssl (kubeadm's
/// `--discovery-token-ca-cert-hash`: SHA-256 of the SubjectPublicKeyInfo).
fn openssl_pin(ca: &Path) -> String {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex",
            ca.display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let hex = out.trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(hex.len(), 64, "{out}");
    format!("sha256:{hex}")
}

/// cluster-info's kubeconfig as kubeadm writes it (one unnamed cluster).
fn cluster_info_kubeconfig(server: &str, ca: &[u8]) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        B64.encode(ca)
    )
}

/// What the stand-in API server serves to a joining node.
#[derive(Default)]
struct Served {
    /// kube-public/cluster-info, anonymous.
    cluster_info: Option<Value>,
    /// Objects readable with the bootstrap token, by path.
    token: BTreeMap<String, Value>,
}

fn status(code: u16, reason: &str) -> Reply {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code});
    Reply::Respond(code, vec![], serde_json::to_vec(&body).unwrap())
}

const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

/// The API server a joining node talks to (A's serving certificate).
fn join_api(pki: &Path, served: Arc<Mutex<Served>>) -> Server {
    let bearer = format!("Bearer {TOKEN_ID}.{TOKEN_SECRET}");
    Server::https(
        tls_config(&pki.join("apiserver.crt"), &pki.join("apiserver.key"), None),
        move |req, _| {
            let s = served.lock().unwrap();
            if req.method != "GET" {
                return status(405, "MethodNotAllowed");
            }
            if req.path == CLUSTER_INFO {
                return match &s.cluster_info {
                    Some(cm) => ok(&serde_json::to_vec(cm).unwrap()),
                    None => status(404, "NotFound"),
                };
            }
            if req.header("Authorization") != Some(bearer.as_str()) {
                return status(401, "Unauthorized");
            }
            match s.token.get(&req.path) {
                Some(o) => ok(&serde_json::to_vec(o).unwrap()),
                None => status(404, "NotFound"),
            }
        },
    )
}

/// cluster-info for `server`, signed by the Go signer with `secret`.
fn signed_cluster_info(p: &Peers, server: &str, ca: &[u8], secret: &str) -> Value {
    let kubeconfig = cluster_info_kubeconfig(server, ca);
    let jws = compat(&p.go, "sign", KEY, secret, kubeconfig.as_bytes()).unwrap();
    let jws = String::from_utf8(jws).unwrap();
    let mut data = serde_json::Map::new();
    data.insert("kubeconfig".into(), json!(kubeconfig));
    data.insert(format!("jws-kubeconfig-{TOKEN_ID}"), json!(jws));
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "cluster-info", "namespace": "kube-public"}, "data": data})
}

/// `kubeboot join` on `root` with a NodeConfig, running only the phases
/// that reach the API server before the kubelet starts.
fn join(dir: &Path, root: &Path, config: &str, skip: &str) -> Output {
    let cfg = dir.join(format!(
        "{}.yaml",
        root.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&cfg, format!("apiVersion: kubeboot.dev/v1alpha1\n{config}")).unwrap();
    kubeboot(&[
        "join",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--discovery-timeout",
        "20",
        "--skip-phases",
        skip,
    ])
}

const CP_SKIP: &str = "preflight,userdata-files,control-plane-prepare,kubelet-start,etcd-join,kubelet-wait-bootstrap,control-plane-join,wait-control-plane";
const WORKER_SKIP: &str = "preflight,userdata-files,kubelet-start,kubelet-wait-bootstrap";

fn no_secret(o: &Output) {
    for s in [KEY, TOKEN_SECRET] {
        assert!(
            !text(&o.stdout).contains(s) && !text(&o.stderr).contains(s),
            "a secret in the output"
        );
    }
}

/// A control-plane join's discovery + download-certs against what kubeadm's
/// own code would have stored: Go-signed cluster-info, Go-encrypted
/// kubeadm-certs. The shared CAs land byte for byte; cluster-info signed
/// with another secret, or kubeadm-certs under another key, is refused.
#[test]
fn download_certs_opens_what_kubeadm_encrypted_and_discovery_checks_its_signature() {
    let dir = tmpdir("interop", "download");
    let Some(p) = peers("download_certs", &dir) else {
        return;
    };
    let root_a = render_control_plane(&dir);
    let pki_a = root_a.join("etc/kubernetes/pki");
    let ca = std::fs::read(pki_a.join("ca.crt")).unwrap();
    let served = Arc::new(Mutex::new(Served::default()));
    let api = join_api(&pki_a, served.clone());
    let server = format!("https://127.0.0.1:{}", api.port);

    let mut data = serde_json::Map::new();
    for (name, file) in SHARED {
        let plain = std::fs::read(pki_a.join(file)).unwrap();
        let blob = compat(&p.go, "encrypt", KEY, "", &plain).unwrap();
        assert_eq!(blob.len(), 12 + plain.len() + 16, "{name}");
        data.insert(name.into(), json!(B64.encode(blob)));
    }
    let certs = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "kubeadm-certs", "namespace": "kube-system"}, "data": data});
    {
        let mut s = served.lock().unwrap();
        s.cluster_info = Some(signed_cluster_info(&p, &server, &ca, TOKEN_SECRET));
        s.token.insert(
            "/api/v1/namespaces/kube-system/secrets/kubeadm-certs".into(),
            certs.clone(),
        );
    }
    let pin = openssl_pin(&pki_a.join("ca.crt"));
    let config = |key: &str| {
        format!(
            "role: control-plane\nserver: 127.0.0.1:{port}\ntoken: {TOKEN_ID}.{TOKEN_SECRET}\ncaCertHash: {pin}\ncertificateKey: {key}\nnode:\n  name: cp-b\n  advertiseAddress: 127.0.0.2\ncluster:\n  kubernetesVersion: v1.33.4\n  controlPlaneEndpoint: 127.0.0.1:{port}\n",
            port = api.port
        )
    };

    let root_b = dir.join("b");
    let o = join(&dir, &root_b, &config(KEY), CP_SKIP);
    assert!(o.status.success(), "{}", text(&o.stderr));
    no_secret(&o);
    for (name, file) in SHARED {
        assert_eq!(
            std::fs::read(root_b.join("etc/kubernetes/pki").join(file)).unwrap(),
            std::fs::read(pki_a.join(file)).unwrap(),
            "{name}"
        );
    }
    let mode = |f: &str| {
        std::fs::metadata(root_b.join("etc/kubernetes/pki").join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!((mode("ca.key"), mode("ca.crt")), (0o600, 0o644));

    // The same values under another certificate key: download-certs fails
    // and writes none of the shared files.
    let other = KEY.replace('7', "8");
    let root_c = dir.join("c");
    let o = join(&dir, &root_c, &config(&other), CP_SKIP);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(!root_c.join("etc/kubernetes/pki/ca.key").exists());
    assert!(
        text(&o.stderr).contains("download-certs"),
        "{}",
        text(&o.stderr)
    );
    for s in [other.as_str(), KEY, TOKEN_SECRET] {
        assert!(!text(&o.stderr).contains(s));
    }

    // cluster-info signed (by the same independent signer) with another
    // token secret: discovery refuses before trusting anything.
    served.lock().unwrap().cluster_info =
        Some(signed_cluster_info(&p, &server, &ca, "0000000000000000"));
    let root_d = dir.join("d");
    let o = join(&dir, &root_d, &config(KEY), CP_SKIP);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("signature"), "{err}");
    assert!(
        !root_d
            .join("etc/kubernetes/bootstrap-kubelet.conf")
            .exists()
    );
    assert!(!root_d.join("etc/kubernetes/pki/ca.key").exists());
    no_secret(&o);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `kubeboot init`'s upload-certs stores values that kubeadm's decryption
/// (the Go program) opens to the files on disk; under another key they do
/// not open.
#[test]
fn kubeadm_decrypts_what_upload_certs_stored() {
    let dir = tmpdir("interop", "upload");
    let Some(p) = peers("upload_certs", &dir) else {
        return;
    };
    let root = render_control_plane(&dir);
    let pki = root.join("etc/kubernetes/pki");
    let api = store_support::object_store(&pki, BTreeMap::new());
    let cfg = dir.join("init.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\ncertificateKey: {KEY}\nnode:\n  name: cp-1\n  advertiseAddress: 127.0.0.1\n  bindPort: {}\n",
            api.port
        ),
    )
    .unwrap();
    let o = kubeboot(&[
        "init",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--skip-phases",
        "preflight,etcd,control-plane,kubelet-start,wait-control-plane,upload-config,mark-control-plane,bootstrap-token,addon,kubelet-finalize,show-join-command",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    no_secret(&o);
    let posted: Vec<Value> = api
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/namespaces/kube-system/secrets")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .filter(|b: &Value| b["metadata"]["name"] == "kubeadm-certs")
        .collect();
    assert_eq!(posted.len(), 1);
    let data = posted[0]["data"].as_object().unwrap();
    for (name, file) in SHARED {
        let blob = B64
            .decode(data[name].as_str().unwrap_or_else(|| panic!("{name}")))
            .unwrap();
        let on_disk = std::fs::read(pki.join(file)).unwrap();
        let opened = compat(&p.go, "decrypt", KEY, "", &blob)
            .unwrap_or_else(|e| panic!("kubeadm's decryption refuses {name}: {e}"));
        assert_eq!(opened, on_disk, "{name}");
        let other = KEY.replace('7', "8");
        assert!(
            compat(&p.go, "decrypt", &other, "", &blob).is_err(),
            "{name} opens under another key"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A worker join: discovery against Go-signed cluster-info writes
/// `bootstrap-kubelet.conf`, which kubectl reads field by field (server =
/// the discovery endpoint, CA bytes = the pinned CA, user
/// tls-bootstrap-token-user with the token, mode 0600) and then uses: its
/// bearer token and CA reach the stand-in API server.
#[test]
fn kubectl_reads_and_uses_the_bootstrap_kubeconfig_of_a_worker_join() {
    let dir = tmpdir("interop", "bootstrap-kubeconfig");
    let Some(p) = peers("bootstrap_kubeconfig", &dir) else {
        return;
    };
    let root_a = render_control_plane(&dir);
    let pki_a = root_a.join("etc/kubernetes/pki");
    let ca = std::fs::read(pki_a.join("ca.crt")).unwrap();
    let served = Arc::new(Mutex::new(Served::default()));
    // Two doors to one cluster: the node is told the first, cluster-info
    // names the second, and bootstrap-kubelet.conf must name cluster-info's.
    let told = join_api(&pki_a, served.clone());
    let api = join_api(&pki_a, served.clone());
    let server = format!("https://127.0.0.1:{}", api.port);
    {
        let mut s = served.lock().unwrap();
        s.cluster_info = Some(signed_cluster_info(&p, &server, &ca, TOKEN_SECRET));
        s.token.insert(
            "/api/v1/namespaces/default/configmaps/probe".into(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}}),
        );
    }
    let pin = openssl_pin(&pki_a.join("ca.crt"));
    let config = format!(
        "role: worker\nserver: 127.0.0.1:{}\ntoken: {TOKEN_ID}.{TOKEN_SECRET}\ncaCertHash: {pin}\nnode:\n  name: worker-1\n",
        told.port
    );
    let root_b = dir.join("b");
    let o = join(&dir, &root_b, &config, WORKER_SKIP);
    assert!(o.status.success(), "{}", text(&o.stderr));
    no_secret(&o);
    let kc = root_b.join("etc/kubernetes/bootstrap-kubelet.conf");
    assert_eq!(
        std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let kubectl = |args: &[&str]| {
        let mut c = Command::new(&p.kubectl);
        for (k, _) in std::env::vars() {
            if k.to_ascii_lowercase().ends_with("_proxy") {
                c.env_remove(k);
            }
        }
        c.env("HOME", &dir)
            .arg("--kubeconfig")
            .arg(&kc)
            .args(args)
            .output()
            .unwrap()
    };
    let o = kubectl(&["config", "view", "--raw", "-o", "json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let current = v["current-context"].as_str().unwrap();
    let ctx = v["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == current)
        .unwrap_or_else(|| panic!("no context {current}: {v}"));
    let cluster_name = ctx["context"]["cluster"].as_str().unwrap();
    let user_name = ctx["context"]["user"].as_str().unwrap();
    assert_eq!(user_name, "tls-bootstrap-token-user");
    let cluster = v["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cluster_name)
        .unwrap();
    assert_eq!(cluster["cluster"]["server"], json!(server));
    let ca_data = B64
        .decode(
            cluster["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(ca_data, ca, "the CA is the pinned one, byte for byte");
    let user = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == user_name)
        .unwrap();
    assert_eq!(
        user["user"]["token"],
        json!(format!("{TOKEN_ID}.{TOKEN_SECRET}"))
    );
    assert_eq!(
        user["user"].as_object().unwrap().len(),
        1,
        "token auth only: {}",
        user["user"]
    );

    // kubectl itself, with nothing but that file, reaches the API server:
    // TLS verified against the CA in it, the bearer token accepted.
    let o = kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps/probe",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let got: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(got["metadata"]["name"], "probe");
    std::fs::remove_dir_all(&dir).unwrap();
}
