//! Shared helpers for the pki_* integration tests: temp roots, rendering,
//! and running real tools (openssl, kubectl, go, etcd).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kubeboot::config::Settings;
use kubeboot::host::Paths;
use kubeboot::host::fs::Sync;
use kubeboot::pki::PkiReport;
use time::OffsetDateTime;

/// A fresh, empty temp directory unique to this test and process.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kubeboot-pki-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Renders the PKI and kubeconfigs under `root` at `now`.
pub fn render_at(settings: &Settings, root: &Path, now: OffsetDateTime) -> (PkiReport, PkiReport) {
    let paths = Paths::new(root);
    let certs = kubeboot::pki::ensure_tree(settings, &paths, now, Sync::Deferred).unwrap();
    let kcs = kubeboot::pki::kubeconfig::ensure_kubeconfigs(settings, &paths, now, Sync::Deferred)
        .unwrap();
    (certs, kcs)
}

/// Renders now.
pub fn render(settings: &Settings, root: &Path) -> (PkiReport, PkiReport) {
    render_at(settings, root, OffsetDateTime::now_utc())
}

/// `<root>/etc/kubernetes/pki`.
pub fn pki(root: &Path) -> PathBuf {
    root.join("etc/kubernetes/pki")
}

/// Runs a command; panics with its output unless it succeeds; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command, failing loudly if the tool is not installed.
pub fn output(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {cmd:?} (is the Debian package installed?): {e}"),
    }
}

/// `openssl args...` → stdout (must succeed).
pub fn openssl(args: &[&str]) -> String {
    run(Command::new("openssl").args(args))
}

/// Every file under `dir` (recursively) with its bytes, sorted by path.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let b = std::fs::read(&p).unwrap();
                out.push((p, b));
            }
        }
    }
    out.sort();
    out
}

/// Every certificate of a control plane's tree (stem under `pki/`) with
/// the stem of its CA.
pub const CERT_PAIRS: [(&str, &str); 10] = [
    ("ca", "ca"),
    ("apiserver", "ca"),
    ("apiserver-kubelet-client", "ca"),
    ("front-proxy-ca", "front-proxy-ca"),
    ("front-proxy-client", "front-proxy-ca"),
    ("etcd/ca", "etcd/ca"),
    ("etcd/server", "etcd/ca"),
    ("etcd/peer", "etcd/ca"),
    ("etcd/healthcheck-client", "etcd/ca"),
    ("apiserver-etcd-client", "etcd/ca"),
];

/// `openssl verify -CAfile ca crt` passes.
pub fn openssl_verify(ca: &Path, crt: &Path) {
    let out = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        crt.to_str().unwrap(),
    ]);
    assert!(out.trim_end().ends_with(": OK"), "{}: {out}", crt.display());
}

/// Base64-decoded field `key` of the first user/cluster in a kubeconfig.
pub fn kubeconfig_field(path: &Path, section: &str, inner: &str, key: &str) -> Vec<u8> {
    use base64::Engine;
    let v: serde_json::Value = serde_norway::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let s = v[section][0][inner][key]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no {section}.{inner}.{key}", path.display()));
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// A kubeconfig's client certificate and key written out as `<out>.crt`
/// and `<out>.key` (PEM), for openssl.
pub fn kubeconfig_client_files(kubeconfig: &Path, out: &Path) -> (PathBuf, PathBuf) {
    let name = out.file_name().unwrap().to_string_lossy();
    let crt = out.with_file_name(format!("{name}.crt"));
    let key = out.with_file_name(format!("{name}.key"));
    let field = |k| kubeconfig_field(kubeconfig, "users", "user", k);
    std::fs::write(&crt, field("client-certificate-data")).unwrap();
    std::fs::write(&key, field("client-key-data")).unwrap();
    (crt, key)
}

/// Builds the Go probe (tests/go/tlsprobe) into `dir`, offline, stdlib only.
pub fn build_go_probe(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/tlsprobe/main.go");
    let bin = dir.join("tlsprobe");
    let cache = dir.join("gocache");
    run(Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", &cache)
        .env("GOPATH", dir.join("gopath"))
        .env("GOPROXY", "off")
        .env("GO111MODULE", "off")
        .env("CGO_ENABLED", "0")
        .env("HOME", dir));
    bin
}
