//! Helpers shared by the tests that run Debian's etcd (`node_etcd`,
//! `etcd_manifest`). Each includes this with
//! `#[path = "etcd_support/mod.rs"] mod etcd_support;`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output};

/// Panics unless `tool` exists, naming the Debian `package` to install.
pub fn require(tool: &str, package: &str) {
    assert!(
        Path::new(tool).is_file(),
        "{tool} is required: install the Debian package {package}"
    );
}

/// A command with every `*_proxy` variable removed, so nothing on this
/// machine sends loopback traffic through a proxy.
pub fn command(program: &str) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars() {
        if k.to_ascii_lowercase().ends_with("_proxy") {
            c.env_remove(k);
        }
    }
    c
}
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills and reaps the child when dropped, also on panic.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.0 GET to 127.0.0.1:`port`; the raw response.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Waits (bounded by `limit`) until etcd's `/health` on the metrics
/// listener at `metrics_port` says healthy; panics with the log when etcd
/// exits or the time is up.
pub fn wait_healthy(etcd: &mut Kill, metrics_port: u16, log: &Path, limit: Duration) {
    let logs = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + limit;
    loop {
        if let Some(body) = http_get(metrics_port, "/health")
            && body.contains("\"health\":\"true\"")
        {
            return;
        }
        if let Ok(Some(status)) = etcd.0.try_wait() {
            panic!("etcd exited with {status}:\n{}", logs());
        }
        assert!(
            Instant::now() < deadline,
            "etcd did not become healthy within {limit:?}:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs openssl in `dir`; panics with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl is required (Debian package openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A command's status, stdout and stderr, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
