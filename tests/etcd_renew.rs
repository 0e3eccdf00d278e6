//! `kubeboot certs renew` with a real etcd (Debian etcd 3.4) running from
//! the node's etcd.yaml, this test playing the kubelet (it restarts etcd
//! when the manifest changes): the renewal changes the manifest and waits
//! until a new etcd process is healthy before it changes the API server's;
//! `openssl s_client` then sees the renewed etcd-server certificate and
//! verifies it against the unchanged etcd CA, and etcdctl, with the renewed
//! healthcheck-client certificate, reads the key written before.

#[path = "cli_support/mod.rs"]
mod cli_support;

#[path = "etcd_support/mod.rs"]
mod etcd_support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cli_support::{kubeboot, render_config, text};
use etcd_support::{Kill, Ports, etcdctl_with, show, start_etcd_with, wait_healthy};

/// The DER of the certificate the server at `port` presents, as openssl
/// sees it after verifying it against `ca`.
fn served_der(port: u16, ca: &Path) -> Vec<u8> {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -CAfile {} -verify_return_error </dev/null 2>/dev/null | openssl x509 -outform der",
        ca.display()
    );
    let o = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    o.stdout
}

fn der_of(crt: &Path) -> Vec<u8> {
    let o = Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(crt)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    o.stdout
}

#[test]
fn renewed_etcd_certificates_are_served_after_the_kubelet_restarts_etcd() {
    let Some(bins) = etcd_support::debian("etcd_renew") else {
        return;
    };
    let dir = cli_support::tmpdir("renew", "etcd");
    let root = render_config(
        &dir,
        "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\ncluster:\n  kubernetesVersion: v1.33.4\n  certificateValidity: 240h\nnode:\n  name: cp-1\n  advertiseAddress: 127.0.0.1\n",
    );
    // the manifest names the ports this etcd really uses
    let ports = Ports::new();
    let manifest = root.join("etc/kubernetes/manifests/etcd.yaml");
    let m = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        m.replace("127.0.0.1:2379", &format!("127.0.0.1:{}", ports.client))
            .replace("127.0.0.1:2380", &format!("127.0.0.1:{}", ports.peer))
            .replace("127.0.0.1:2381", &format!("127.0.0.1:{}", ports.metrics)),
    )
    .unwrap();
    let log = dir.join("etcd.log");
    let (mut etcd, _) = start_etcd_with(&bins.etcd, &root, &|v| v.to_string(), &log);
    wait_healthy(&mut etcd, ports.metrics, &log, Duration::from_secs(90));
    let pki = root.join("etc/kubernetes/pki");
    let ca = pki.join("etcd/ca.crt");
    let ca_before = std::fs::read(&ca).unwrap();
    let old_server = der_of(&pki.join("etcd/server.crt"));
    assert_eq!(served_der(ports.client, &ca), old_server);
    let url = ports.client_url();
    let o = etcdctl_with(
        &bins.etcdctl,
        &root,
        &url,
        &["put", "/before-renewal", "kept"],
    );
    assert!(o.status.success(), "{}", show(&o));

    // the kubelet: restart etcd whenever its manifest changes
    let etcd = Arc::new(Mutex::new(etcd));
    let stop = Arc::new(AtomicBool::new(false));
    let restarts = Arc::new(AtomicUsize::new(0));
    let kubelet = {
        let (etcd, stop, restarts) = (etcd.clone(), stop.clone(), restarts.clone());
        let (root, manifest, log) = (root.clone(), manifest.clone(), log.clone());
        let etcd_bin = bins.etcd.clone();
        let mut seen = std::fs::read(&manifest).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let now = std::fs::read(&manifest).unwrap_or_default();
                if !now.is_empty() && now != seen {
                    seen = now;
                    let mut e = etcd.lock().unwrap();
                    drop(std::mem::replace(
                        &mut *e,
                        Kill(Command::new("true").spawn().unwrap()),
                    ));
                    *e = start_etcd_with(&etcd_bin, &root, &|v| v.to_string(), &log).0;
                    restarts.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let o = kubeboot(&[
        "certs",
        "renew",
        "all",
        "--if-expiring-within",
        "30d",
        "--restart-wait",
        "90",
        "--root",
        root.to_str().unwrap(),
    ]);
    stop.store(true, Ordering::SeqCst);
    kubelet.join().unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    eprintln!("{out}");
    assert!(
        out.contains(&format!(
            "etcd restarted and is healthy (http://127.0.0.1:{}",
            ports.metrics
        )),
        "{out}"
    );
    assert_eq!(restarts.load(Ordering::SeqCst), 1);
    let new_server = der_of(&pki.join("etcd/server.crt"));
    assert_ne!(new_server, old_server);
    // openssl sees the renewed certificate, verified with the unchanged CA
    assert_eq!(served_der(ports.client, &ca), new_server);
    assert_eq!(std::fs::read(&ca).unwrap(), ca_before);
    // the renewed client certificate works, and the data is still there
    let o = etcdctl_with(
        &bins.etcdctl,
        &root,
        &url,
        &["get", "/before-renewal", "--print-value-only"],
    );
    assert_eq!(text(&o.stdout).trim(), "kept", "{}", show(&o));
    let status: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("var/lib/kubeboot/renew-status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(status["result"], "success");
    assert!(
        status["restartChecks"][0]
            .as_str()
            .unwrap()
            .starts_with("etcd restarted and is healthy"),
        "{status}"
    );
    // without a kubelet nothing restarts etcd: kubeboot says so after the
    // wait and goes on
    let o = kubeboot(&[
        "certs",
        "renew",
        "etcd-server",
        "--restart-wait",
        "2",
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        text(&o.stdout).contains("etcd was not seen restarted and healthy")
            && text(&o.stdout).contains("within 2 s; going on"),
        "{}",
        show(&o)
    );
    // `--restart-wait 0`: etcd still answers, and is not waited for at all
    let o = kubeboot(&[
        "certs",
        "renew",
        "etcd-server",
        "--restart-wait",
        "0",
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        !text(&o.stdout).contains("etcd restarted") && !text(&o.stdout).contains("etcd was not"),
        "{}",
        show(&o)
    );
    drop(etcd);
    // an etcd data dir: about 125 MB left in /tmp per run otherwise
    std::fs::remove_dir_all(&dir).unwrap();
}
