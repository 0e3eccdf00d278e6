//! kubeboot's HTTPS client against Go's `crypto/tls` (Go 1.19, the TLS
//! stack of kube-apiserver and the kubelet), a real peer built from
//! tests/go/tlsserve: the key share kubeboot offers (P-256) is taken
//! without a HelloRetryRequest, a kept-alive connection carries the next
//! request, and a second connection of the same client resumes the TLS 1.3
//! session as the same client certificate. The Go server reports what it
//! saw on the wire (the group of its ServerHello); a plain rustls client
//! offering X25519 first shows that report follows the client.
//!
//! Pipelining: a phase's objects (`Kube::apply_all`) are written ahead of
//! their answers and Go's net/http server answers them in order, each
//! read right (Content-Length, chunked, no body); a `Connection: close`
//! mid-batch and a 429 send the rest again the ordinary way.

mod cli_support;
mod peer_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kubeboot::api::kube::Kube;
use kubeboot::api::objects::{ApiObject, Update};
use serde_json::Value;

const TEST: &str = "tls_go_peer";
/// TLS named groups (IANA): what the Go server reports.
const SECP256R1: u64 = 23;
const X25519: u64 = 29;

/// The Go server, stopped when dropped (its standard input closes).
struct GoServer {
    child: Child,
    port: u16,
}

impl Drop for GoServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn go_server(bin: &Path, pki: &Path) -> GoServer {
    let mut child = Command::new(bin)
        .arg(pki.join("apiserver.crt"))
        .arg(pki.join("apiserver.key"))
        .arg(pki.join("ca.crt"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start tlsserve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("tlsserve said {line:?}"));
    GoServer { child, port }
}

/// The Go server on the PKI of a control plane rendered in a new test
/// directory, and kubeboot's API client of it with a client certificate of
/// the cluster CA, as admin.conf's would be: (directory, PKI directory,
/// server, client). `None` (a SKIP) without Go.
fn peer(name: &str) -> Option<(PathBuf, PathBuf, GoServer, Kube)> {
    let dir = cli_support::tmpdir("tlsgo", name);
    let bin = peer_support::go_build(TEST, "tlsserve", &dir)?;
    let pki = cli_support::render_control_plane(&dir).join("etc/kubernetes/pki");
    let server = go_server(&bin, &pki);
    let read = |f: &str| std::fs::read(pki.join(f)).unwrap();
    let kube = Kube::new(
        &format!("https://127.0.0.1:{}", server.port),
        &read("ca.crt"),
        &read("apiserver-kubelet-client.crt"),
        &read("apiserver-kubelet-client.key"),
        Duration::from_secs(30),
    )
    .unwrap();
    Some((dir, pki, server, kube))
}

fn get(kube: &Kube, path: &str) -> Value {
    let (status, body) = kube.get(path).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn go_takes_the_p256_key_share_keeps_the_connection_and_resumes_the_session() {
    let Some((dir, pki, server, kube)) = peer("kx") else {
        return;
    };
    let read = |f: &str| std::fs::read(pki.join(f)).unwrap();

    let first = get(&kube, "/first");
    assert_eq!(first["group"], SECP256R1, "{first}");
    assert_eq!(first["hrr"], false, "{first}");
    assert_eq!(first["resumed"], false, "{first}");
    assert_eq!(first["client"], "kube-apiserver-kubelet-client", "{first}");
    // kept alive: the next request on the same connection
    let second = get(&kube, "/second");
    assert_eq!(second["conn"], first["conn"], "{second}");
    // the server closes this one after answering ...
    let third = get(&kube, "/third/close");
    assert_eq!(third["conn"], first["conn"], "{third}");
    // ... so the next request opens a new connection, which resumes the
    // session (Go's ticket) as the same client, again with no retry
    let fourth = get(&kube, "/fourth");
    assert_ne!(fourth["conn"], first["conn"], "{fourth}");
    assert_eq!(fourth["resumed"], true, "{fourth}");
    assert_eq!(
        fourth["client"], "kube-apiserver-kubelet-client",
        "{fourth}"
    );
    assert_eq!(fourth["group"], SECP256R1, "{fourth}");
    assert_eq!(fourth["hrr"], false, "{fourth}");

    // rustls' default order (X25519 first): the report follows the client
    let x = raw_get(server.port, &read("ca.crt"));
    assert_eq!(x["group"], X25519, "{x}");
    assert_eq!(x["hrr"], false, "{x}");
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One GET with a plain rustls client (ring's default groups, no client
/// certificate); the Go server's JSON answer.
fn raw_get(port: u16, ca_pem: &[u8]) -> Value {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /raw HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    // Go closes without close_notify being required of it: read to EOF
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body.trim()).unwrap()
}

/// A ConfigMap named `name` in kube-system, as apply_all takes it.
fn config_map(name: &str) -> ApiObject {
    let collection = "/api/v1/namespaces/kube-system/configmaps".to_string();
    ApiObject {
        what: format!("ConfigMap kube-system/{name}"),
        item: format!("{collection}/{name}"),
        collection,
        body: serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "kube-system"}, "data": {"k": name}}),
        update: Update::Replace,
        sensitive: false,
    }
}

#[test]
fn go_answers_a_batch_written_ahead_in_order_and_the_unanswered_are_sent_again() {
    let Some((dir, _, server, kube)) = peer("pipe") else {
        return;
    };
    let names = [
        "hold-a", "b", "busy1", "big", "c", "close", "d", "busy", "e",
    ];
    let objs: Vec<ApiObject> = names.iter().map(|n| config_map(n)).collect();
    kube.apply_all("test", &objs).unwrap();

    let log = get(&kube, "/log");
    let log = log.as_array().unwrap();
    let posts: Vec<(&str, u64)> = log
        .iter()
        .filter(|e| e["method"] == "POST")
        .map(|e| (e["name"].as_str().unwrap(), e["conn"].as_u64().unwrap()))
        .collect();
    let first = posts[0].1;
    // In order, each once, up to the answer that closed the connection
    // (Go drops what it had not read yet); then the one answered 429 in the
    // batch, again after its Retry-After, and each unanswered object on its
    // own, on a new connection (the 429 again after its Retry-After). A
    // misread answer (a chunked body, a length) would have cut the batch
    // short and sent its objects twice.
    assert_eq!(
        posts,
        [
            ("hold-a", first),
            ("b", first),
            ("busy1", first),
            ("big", first),
            ("c", first),
            ("close", first),
            ("busy1", first + 1),
            ("d", first + 1),
            ("busy", first + 1),
            ("busy", first + 1),
            ("e", first + 1),
        ],
        "{log:?}"
    );
    // the 429 in the batch was waited out: Retry-After 1 s
    let busy1: Vec<i64> = log
        .iter()
        .filter(|e| e["name"] == "busy1")
        .map(|e| e["at"].as_i64().unwrap())
        .collect();
    assert!(busy1[1] - busy1[0] >= 1000, "{busy1:?} {log:?}");
    // Written ahead: "b" had arrived in full before "hold-a" was answered.
    // (A client waiting for each answer sends "b" only after it, so the
    // server reads b's bytes after hold-a's handler ended.)
    let at = |name: &str, key: &str| {
        log.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e[key].as_i64())
            .unwrap()
    };
    assert!(
        at("b", "rxStart") <= at("hold-a", "rxEnd"),
        "b was read after hold-a was answered: {log:?}"
    );
    // The window: request k goes out only once answer k-16 was read (so
    // after its handler ended), and with large objects only while the
    // unanswered requests stay within 64 KiB (two of about 30 KiB each).
    let small: Vec<ApiObject> = (0..40).map(|i| config_map(&format!("w{i}"))).collect();
    let mut large: Vec<ApiObject> = (0..6).map(|i| config_map(&format!("l{i}"))).collect();
    for o in &mut large {
        o.body["data"]["pad"] = serde_json::json!("y".repeat(30 * 1024));
    }
    kube.apply_all("test", &small).unwrap();
    kube.apply_all("test", &large).unwrap();
    let log = get(&kube, "/log");
    let log = log.as_array().unwrap();
    let rx = |name: String, key: &str| {
        log.iter()
            .find(|e| e["name"] == name.as_str())
            .and_then(|e| e[key].as_i64())
            .unwrap_or_else(|| panic!("{name} not logged: {log:?}"))
    };
    for k in 16..40 {
        assert!(
            rx(format!("w{k}"), "rxStart") > rx(format!("w{}", k - 16), "rxEnd"),
            "w{k} was sent before the answer to w{}: {log:?}",
            k - 16
        );
    }
    // and the batch was written ahead within the window (16 small
    // requests, one TLS record, read before w0 was answered)
    assert!(rx("w15".into(), "rxStart") <= rx("w0".into(), "rxEnd"));
    for k in 2..6 {
        assert!(
            rx(format!("l{k}"), "rxStart") > rx(format!("l{}", k - 2), "rxEnd"),
            "l{k} was sent with more than 64 KiB unanswered"
        );
    }
    // one request larger than the byte window still goes out, alone
    let mut huge = config_map("huge");
    huge.body["data"]["pad"] = serde_json::json!("z".repeat(100 * 1024));
    kube.apply(&huge).unwrap();
    // a 204 (no body) leaves the connection ready for the next request
    let (status, body) = kube
        .delete("/api/v1/namespaces/kube-system/configmaps/e")
        .unwrap();
    assert_eq!((status, body.len()), (204, 0));
    let after = get(&kube, "/after");
    let log = get(&kube, "/log");
    let deleted = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["method"] == "DELETE")
        .unwrap();
    assert_eq!(after["conn"], deleted["conn"], "{log}");
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}
