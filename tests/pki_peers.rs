//! Our PKI against real peers: kubectl parses every kubeconfig, Go's
//! crypto/tls (what Kubernetes uses) accepts admin.conf's certificate and
//! rejects another CA's, and a real etcd 3.4 runs on our etcd certificates
//! with client and peer certificate authentication.

#[path = "peer_support/mod.rs"]
mod peer_support;
mod pki_support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kubeboot::config::examples::pki_control_plane as control_plane_settings;
use pki_support::*;

fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pki-goprobe");
        std::fs::create_dir_all(&dir).unwrap();
        build_go_probe(&dir)
    })
}

/// Writes a kubeconfig's embedded client certificate and key to files.
fn client_files(kubeconfig: &Path, out: &Path) -> (PathBuf, PathBuf) {
    let stem = kubeconfig.file_name().unwrap().to_str().unwrap();
    let crt = out.join(format!("{stem}.crt"));
    let key = out.join(format!("{stem}.key"));
    std::fs::write(
        &crt,
        kubeconfig_field(kubeconfig, "users", "user", "client-certificate-data"),
    )
    .unwrap();
    std::fs::write(
        &key,
        kubeconfig_field(kubeconfig, "users", "user", "client-key-data"),
    )
    .unwrap();
    (crt, key)
}

#[test]
fn kubectl_parses_every_kubeconfig() {
    let root = tmp("kubectl");
    let (_, kcs) = render(&control_plane_settings(), &root);
    let expect = [
        (
            "admin.conf",
            "kubernetes-admin",
            "https://k8s.example.test:6443",
        ),
        (
            "super-admin.conf",
            "kubernetes-super-admin",
            "https://k8s.example.test:6443",
        ),
        ("kubelet.conf", "system:node:cp-1", "https://10.0.0.10:6443"),
        (
            "controller-manager.conf",
            "system:kube-controller-manager",
            "https://10.0.0.10:6443",
        ),
        (
            "scheduler.conf",
            "system:kube-scheduler",
            "https://10.0.0.10:6443",
        ),
    ];
    assert_eq!(kcs.entries.len(), expect.len());
    for (file, user, server) in expect {
        let path = root.join("etc/kubernetes").join(file);
        let out = run(Command::new("kubectl")
            .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
            .arg(&path)
            .env("HOME", &root)
            .env_remove("KUBECONFIG"));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["clusters"][0]["name"], "kubernetes", "{file}");
        assert_eq!(v["clusters"][0]["cluster"]["server"], server, "{file}");
        assert_eq!(v["users"][0]["name"], user, "{file}");
        let ctx = format!("{user}@kubernetes");
        assert_eq!(v["contexts"][0]["name"], ctx.as_str(), "{file}");
        assert_eq!(
            v["contexts"][0]["context"]["cluster"], "kubernetes",
            "{file}"
        );
        assert_eq!(v["contexts"][0]["context"]["user"], user, "{file}");
        assert_eq!(v["current-context"], ctx.as_str(), "{file}");
        // the embedded CA is ca.crt, byte for byte
        let ca = kubeconfig_field(&path, "clusters", "cluster", "certificate-authority-data");
        assert_eq!(
            ca,
            std::fs::read(pki(&root).join("ca.crt")).unwrap(),
            "{file}"
        );
        // the client certificate: CN = user, O as kubeadm, signed by ca, clientAuth
        let (crt, key) = client_files(&path, &root);
        let subject = openssl(&["x509", "-in", crt.to_str().unwrap(), "-noout", "-subject"]);
        assert!(subject.contains(&format!("CN = {user}")), "{subject}");
        let org = match file {
            "admin.conf" => Some("O = kubeadm:cluster-admins"),
            "super-admin.conf" => Some("O = system:masters"),
            "kubelet.conf" => Some("O = system:nodes"),
            _ => None,
        };
        match org {
            Some(o) => assert!(subject.contains(o), "{subject}"),
            None => assert!(!subject.contains("O = "), "{subject}"),
        }
        let ok = openssl(&[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            pki(&root).join("ca.crt").to_str().unwrap(),
            crt.to_str().unwrap(),
        ]);
        assert!(ok.contains(": OK"), "{ok}");
        assert!(
            std::fs::read_to_string(&key)
                .unwrap()
                .starts_with("-----BEGIN EC PRIVATE KEY-----")
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600,
            "{file}"
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn go_tls_accepts_our_client_certs_and_rejects_another_ca() {
    let root = tmp("gotls");
    let other = tmp("gotls-other");
    render(&control_plane_settings(), &root);
    render(&control_plane_settings(), &other);
    let dir = pki(&root);
    let handshake = |server_name: &str, crt: &Path, key: &Path| {
        output(
            Command::new(probe())
                .arg("handshake")
                .arg(dir.join("apiserver.crt"))
                .arg(dir.join("apiserver.key"))
                .arg(dir.join("ca.crt"))
                .arg(dir.join("ca.crt"))
                .arg(server_name)
                .arg(crt)
                .arg(key),
        )
    };
    for file in [
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ] {
        let (crt, key) = client_files(&root.join("etc/kubernetes").join(file), &root);
        for name in [
            "kubernetes.default.svc.cluster.local",
            "k8s.example.test",
            "10.96.0.1",
            "10.0.0.10",
        ] {
            let out = handshake(name, &crt, &key);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains("ACCEPTED"),
                "{file} via {name}: {text}"
            );
        }
    }
    // the apiserver's own kubelet client certificate is accepted too
    let out = handshake(
        "kubernetes",
        &dir.join("apiserver-kubelet-client.crt"),
        &dir.join("apiserver-kubelet-client.key"),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ACCEPTED"));

    // another cluster's admin.conf, and a front-proxy client, are rejected
    let (crt, key) = client_files(&other.join("etc/kubernetes/admin.conf"), &other);
    let out = handshake("kubernetes", &crt, &key);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("REJECTED") && text.contains("unknown authority"),
        "{text}"
    );
    let out = handshake(
        "kubernetes",
        &dir.join("front-proxy-client.crt"),
        &dir.join("front-proxy-client.key"),
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // a name the apiserver certificate does not carry is refused by the client
    let (crt, key) = client_files(&root.join("etc/kubernetes/admin.conf"), &root);
    let out = handshake("evil.example.test", &crt, &key);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}

/// Kills the etcd process we started when the test ends, pass or fail.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn real_etcd_serves_with_our_certificates() {
    let root = tmp("etcd");
    let other = tmp("etcd-other");
    render(&control_plane_settings(), &root);
    render(&control_plane_settings(), &other);
    let e = pki(&root).join("etcd");
    let (client, peer, metrics) = (free_port(), free_port(), free_port());
    let client_url = format!("https://127.0.0.1:{client}");
    let peer_url = format!("https://127.0.0.1:{peer}");
    let log = std::fs::File::create(root.join("etcd.log")).unwrap();
    let child = Command::new("/usr/bin/etcd")
        .args(["--name", "cp-1", "--data-dir"])
        .arg(root.join("var/lib/etcd"))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args([
            "--initial-cluster",
            &format!("cp-1={peer_url}"),
            "--initial-cluster-state",
            "new",
        ])
        .args([
            "--listen-metrics-urls",
            &format!("http://127.0.0.1:{metrics}"),
        ])
        .args(["--client-cert-auth", "--peer-client-cert-auth"])
        .args(
            [
                ("--cert-file", "server.crt"),
                ("--key-file", "server.key"),
                ("--trusted-ca-file", "ca.crt"),
                ("--peer-cert-file", "peer.crt"),
                ("--peer-key-file", "peer.key"),
                ("--peer-trusted-ca-file", "ca.crt"),
            ]
            .iter()
            .map(|(flag, file)| format!("{flag}={}", e.join(file).display())),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("cannot start /usr/bin/etcd (Debian package etcd-server)");
    let mut etcd = KillOnDrop(child);
    let get = |url: &str, crt: &Path, key: &Path| {
        let out = output(
            Command::new(probe())
                .arg("get")
                .arg(url)
                .arg(e.join("ca.crt"))
                .arg(crt)
                .arg(key),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let hc = (
        e.join("healthcheck-client.crt"),
        e.join("healthcheck-client.key"),
    );
    let health = format!("{client_url}/health");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(Some(status)) = etcd.0.try_wait() {
            panic!(
                "etcd exited with {status}: {}",
                std::fs::read_to_string(root.join("etcd.log")).unwrap()
            );
        }
        last = get(&health, &hc.0, &hc.1);
        if last.contains("\"health\":\"true\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        last.starts_with("200 ") && last.contains("\"health\":\"true\""),
        "etcd not healthy via the healthcheck-client cert: {last}\n{}",
        std::fs::read_to_string(root.join("etcd.log")).unwrap_or_default()
    );
    // etcdctl too, when the etcd-client package is installed
    match Command::new("etcdctl").arg("version").output() {
        Ok(_) => {
            // etcdctl 3.4 prints the health line on stderr
            let out = output(
                Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints={client_url}"))
                    .arg(format!("--cacert={}", e.join("ca.crt").display()))
                    .arg(format!("--cert={}", hc.0.display()))
                    .arg(format!("--key={}", hc.1.display()))
                    .args(["endpoint", "health"]),
            );
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && text.contains("is healthy"),
                "{text}"
            );
        }
        Err(_) => peer_support::missing(
            "pki_peers etcdctl health (checked /health with Go only)",
            "etcdctl",
            "apt-get install etcd-client",
        ),
    }
    // the apiserver's etcd client certificate works too
    let out = get(
        &health,
        &pki(&root).join("apiserver-etcd-client.crt"),
        &pki(&root).join("apiserver-etcd-client.key"),
    );
    assert!(out.starts_with("200 "), "{out}");
    // the peer port demands a peer certificate from our etcd CA
    let out = get(
        &format!("{peer_url}/members"),
        &e.join("peer.crt"),
        &e.join("peer.key"),
    );
    assert!(out.starts_with("200 ") && out.contains(&peer_url), "{out}");
    // a client certificate from another etcd CA is refused
    let oe = pki(&other).join("etcd");
    let out = get(
        &health,
        &oe.join("healthcheck-client.crt"),
        &oe.join("healthcheck-client.key"),
    );
    assert!(out.starts_with("ERROR"), "{out}");
    // and so is the cluster CA's (wrong CA for etcd)
    let (crt, key) = client_files(&root.join("etc/kubernetes/admin.conf"), &root);
    let out = get(&health, &crt, &key);
    assert!(out.starts_with("ERROR"), "{out}");
    drop(etcd);
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}
