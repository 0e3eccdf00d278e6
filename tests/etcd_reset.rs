//! `kubeboot reset` on a control plane with stacked etcd, against a real
//! three-member etcd cluster (Debian's etcd 3.4, package etcd-server;
//! checked with `etcdctl` from etcd-client):
//!
//! - nodes cp-a, cp-b, cp-c (advertise 127.0.0.1, .2, .3) rendered by the
//!   binary with one shared set of CAs; each etcd runs from its node's
//!   `etcd.yaml` (ports moved to free loopback ports, `--initial-cluster`
//!   naming all three), this test playing the kubelets; cp-c's etcd.yaml
//!   then names the URLs its etcd really listens on;
//! - with cp-b's etcd stopped, `reset` on cp-c refuses (removing cp-c
//!   would leave two voters of which one answers) and changes nothing;
//! - `--dry-run` with all three up prints the plan and changes nothing;
//! - `reset` on cp-c removes its member through cp-a/cp-b, stops the
//!   kubelet, and removes cp-c's files; etcdctl then lists two started
//!   voting members, both healthy, and a write through one is read
//!   through the other.

#[path = "cli_support/mod.rs"]
mod cli_support;

#[path = "etcd_support/mod.rs"]
mod etcd_support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use cli_support::{kubeboot, render_config, text};
use etcd_support::{Bins, Kill, Ports, command, etcd_args, show, wait_healthy};

struct Node {
    name: String,
    addr: String,
    root: PathBuf,
    ports: Ports,
}

impl Node {
    fn client_url(&self) -> String {
        format!("https://{}:{}", self.addr, self.ports.client)
    }
    fn peer_url(&self) -> String {
        format!("https://{}:{}", self.addr, self.ports.peer)
    }
}

/// Renders node `name` at `addr` with the binary, reusing `shared_from`'s CAs.
fn render(dir: &Path, name: &str, addr: &str, shared_from: Option<&Path>) -> Node {
    let node_dir = dir.join(name);
    std::fs::create_dir_all(&node_dir).unwrap();
    if let Some(src) = shared_from {
        for f in etcd_support::SHARED {
            let to = node_dir.join("cp/etc/kubernetes/pki").join(f);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(src.join("etc/kubernetes/pki").join(f), &to).unwrap();
        }
    }
    let root = render_config(
        &node_dir,
        &format!(
            "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\ncluster:\n  kubernetesVersion: v1.33.4\nnode:\n  name: {name}\n  advertiseAddress: {addr}\n"
        ),
    );
    Node {
        name: name.into(),
        addr: addr.into(),
        root,
        ports: Ports::new(),
    }
}

/// Starts `node`'s etcd from its etcd.yaml as a member of `all`.
fn start(bins: &Bins, node: &Node, all: &[&Node], dir: &Path) -> Kill {
    let (args, _) = etcd_args(&node.root, &|v| node.ports.rewrite(v));
    let cluster: Vec<String> = all
        .iter()
        .map(|n| format!("{}={}", n.name, n.peer_url()))
        .collect();
    let args: Vec<String> = args
        .into_iter()
        .map(|a| {
            if a.starts_with("--initial-cluster=") {
                format!("--initial-cluster={}", cluster.join(","))
            } else {
                a
            }
        })
        .collect();
    let log = dir.join(format!("etcd-{}.log", node.name));
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let child = command(&bins.etcd)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bins.etcd));
    Kill(child)
}

fn etcdctl(bins: &Bins, node: &Node, endpoints: &str, args: &[&str]) -> Output {
    etcd_support::etcdctl_with(&bins.etcdctl, &node.root, endpoints, args)
}

/// (name, started, learner) of every member, as etcdctl lists them.
fn members(bins: &Bins, via: &Node) -> Vec<(String, bool, bool)> {
    let o = etcdctl(
        bins,
        via,
        &via.client_url(),
        &["member", "list", "-w", "json"],
    );
    assert!(o.status.success(), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut out: Vec<(String, bool, bool)> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["clientURLs"].as_array().is_some_and(|c| !c.is_empty()),
                m["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

/// Every file under `dir` except etcd's own data (which the running etcd changes).
fn files(dir: &Path) -> Vec<PathBuf> {
    // the run lock is kubeboot's, held while it works
    cli_support::files_under(dir, &["var/lib/etcd", "var/lib/kubeboot/lock"])
}

fn reset(node: &Node, systemctl: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "reset",
        "--root",
        node.root.to_str().unwrap(),
        "--systemctl",
        systemctl.to_str().unwrap(),
        "--timeout",
        "20",
    ];
    args.extend_from_slice(extra);
    kubeboot(&args)
}

#[test]
fn reset_removes_its_member_through_the_others_and_refuses_to_break_quorum() {
    let Some(bins) = etcd_support::debian("etcd_reset") else {
        return;
    };
    let dir = cli_support::tmpdir("reset", "etcd3");
    let a = render(&dir, "cp-a", "127.0.0.1", None);
    let b = render(&dir, "cp-b", "127.0.0.2", Some(&a.root));
    let c = render(&dir, "cp-c", "127.0.0.3", Some(&a.root));
    let all = [&a, &b, &c];
    let mut ea = start(&bins, &a, &all, &dir);
    let mut eb = start(&bins, &b, &all, &dir);
    let mut ec = start(&bins, &c, &all, &dir);
    for (n, e) in [(&a, &mut ea), (&b, &mut eb), (&c, &mut ec)] {
        let log = dir.join(format!("etcd-{}.log", n.name));
        wait_healthy(e, n.ports.metrics, &log, Duration::from_secs(120));
    }
    assert_eq!(
        members(&bins, &a),
        [
            ("cp-a".to_string(), true, false),
            ("cp-b".to_string(), true, false),
            ("cp-c".to_string(), true, false)
        ]
    );
    // cp-c's manifest names the URLs its etcd really serves
    let manifest = c.root.join("etc/kubernetes/manifests/etcd.yaml");
    let m = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        m.contains("--advertise-client-urls=https://127.0.0.3:2379"),
        "{m}"
    );
    std::fs::write(
        &manifest,
        m.replace("https://127.0.0.3:2379", &c.client_url())
            .replace("https://127.0.0.3:2380", &c.peer_url()),
    )
    .unwrap();
    // kubeboot's own state on cp-c, as after a successful first boot
    let state = c.root.join("var/lib/kubeboot");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("status.json"), "{}\n").unwrap();
    std::fs::write(state.join("done"), "2026-11-28T00:00:00Z\n").unwrap();
    let (systemctl, log) = cli_support::recording_systemctl(&dir);

    // 1. cp-b down: removing cp-c would leave 2 voters, 1 answering
    drop(eb);
    let before = files(&c.root);
    let o = reset(&c, &systemctl, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = text(&o.stderr);
    assert!(
        err.contains("2 voting member(s), of which 1 answer; a quorum needs 2")
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(files(&c.root), before, "a refused reset changed files");
    assert!(!log.exists(), "a refused reset touched the kubelet");

    // 2. cp-b back: a dry run plans the removal and changes nothing
    let mut eb = start(&bins, &b, &all, &dir);
    wait_healthy(
        &mut eb,
        b.ports.metrics,
        &dir.join("etcd-cp-b.log"),
        Duration::from_secs(120),
    );
    let o = reset(&c, &systemctl, &["--dry-run"]);
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(
        out.contains("[reset] would remove etcd member cp-c"),
        "{out}"
    );
    assert!(
        out.contains(&format!("would remove {}", manifest.display())),
        "{out}"
    );
    assert_eq!(files(&c.root), before, "a dry run changed files");
    assert_eq!(members(&bins, &a).len(), 3);

    // 3. the reset
    let started = Instant::now();
    let o = reset(&c, &systemctl, &[]);
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    eprintln!(
        "reset of cp-c ({} ms):\n{out}",
        started.elapsed().as_millis()
    );
    assert!(out.contains("[reset] removed etcd member cp-c"), "{out}");
    assert!(out.contains("2 member(s) remain"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "stop kubelet.service\n"
    );
    for p in [
        "etc/kubernetes/manifests/etcd.yaml",
        "etc/kubernetes/manifests/kube-apiserver.yaml",
        "etc/kubernetes/admin.conf",
        "etc/kubernetes/super-admin.conf",
        "etc/kubernetes/pki/ca.key",
        "etc/kubernetes/pki/etcd",
        "var/lib/kubelet/config.yaml",
        "var/lib/etcd/member",
        "var/lib/kubeboot/status.json",
        "var/lib/kubeboot/done",
    ] {
        assert!(!c.root.join(p).exists(), "{p} is still there");
        assert!(
            out.contains(&format!("[reset] removed {}", c.root.join(p).display())),
            "{p} not reported: {out}"
        );
    }
    assert!(files(&c.root).is_empty(), "{:?}", files(&c.root));
    assert!(c.root.join("etc/kubernetes/manifests").is_dir());

    // two started voting members, both healthy, and they serve reads and writes
    let expect = [
        ("cp-a".to_string(), true, false),
        ("cp-b".to_string(), true, false),
    ];
    assert_eq!(members(&bins, &a), expect);
    assert_eq!(members(&bins, &b), expect);
    let both = format!("{},{}", a.client_url(), b.client_url());
    let o = etcdctl(&bins, &a, &both, &["endpoint", "health"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        text(&o.stdout).matches("is healthy").count()
            + text(&o.stderr).matches("is healthy").count(),
        2,
        "{}",
        show(&o)
    );
    let o = etcdctl(&bins, &a, &a.client_url(), &["put", "/after-reset", "ok"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = etcdctl(
        &bins,
        &a,
        &b.client_url(),
        &["get", "/after-reset", "--print-value-only"],
    );
    assert_eq!(text(&o.stdout).trim(), "ok", "{}", show(&o));
    // the removed member stops itself
    let deadline = Instant::now() + Duration::from_secs(60);
    while ec.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "etcd cp-c still runs after its removal"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop((ea, eb));
    // three etcd data dirs: about 245 MB left in /tmp per run otherwise
    std::fs::remove_dir_all(&dir).unwrap();
}
