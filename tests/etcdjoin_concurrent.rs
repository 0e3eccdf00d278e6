//! Two control planes joining at once, end to end through the shipped
//! binary and a real etcd (Debian's etcd 3.4, package etcd-server): node A
//! (`init`, advertise 127.0.0.1) gets its PKI and `etcd.yaml` from the
//! library and etcd A runs from the manifest's flags; a loopback HTTPS API
//! server with A's apiserver certificate serves what a control-plane join
//! reads (cluster-info signed for the token, kubelet-config,
//! kubeadm-config, kubeadm-certs, the etcd Pod pointing at etcd A, the
//! Nodes); nodes C1 and C2 (advertise 127.0.0.3 and 127.0.0.4, loopback,
//! so their etcds keep the real ports 2379/2380 there) run `kubeboot
//! firstboot` at the same moment with fake systemctls and health stubs.
//! The test plays their kubelets: it starts the first learner's etcd only
//! after the other node was refused with etcd's "too many learner members"
//! (so the learner limit is met), then the second one's.
//!
//! Asserted: both runs succeed (the refused node waited and retried, never
//! failed); `member list` (from A and from each joiner) shows three started
//! voting members, the joiners with their own peer URLs; no secret in the
//! output. The single-joiner cases are in `etcdjoin_firstboot.rs`.

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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cli_support::{fake_systemctl as systemctl_script, kubeboot, seed, text};
use etcd_support::{
    Bins, Kill, Ports, debian, start_etcd_healthy_with, start_etcd_with, wait_healthy,
};
use kubeboot::api::etcd::{ETCD_PODS_PATH, EtcdClient, Member};
use kubeboot::config::BootstrapToken;
use kubeboot::config::model::Settings;
use kubeboot::host::Paths;
use kubeboot::host::fs::Sync;
use kubeboot::{api, kubelet, manifests, pki};
use net_support::{Reply, Request, Server, ok, tls_config, tls_config_with};
use node_common::settings;
use serde_json::{Value, json};

const KEY: &str = "4f6d0e1c2b3a49587766554433221100ffeeddccbbaa99887766554433221100";
const TOKEN_ID: &str = "abcdef";
const TOKEN_SECRET: &str = "0123456789abcdef";
/// Node B's advertise address: loopback, distinct from A's 127.0.0.1.
const B_ADDR: &str = "127.0.0.2";
/// The two nodes that join at once (their own addresses, so their etcds
/// keep the real ports 2379/2380 there while the other tests use 127.0.0.2).
const C1_ADDR: &str = "127.0.0.3";
const C2_ADDR: &str = "127.0.0.4";

fn node_a() -> Settings {
    let mut s = settings::control_plane();
    s.cluster.kubernetes_version = "v1.33.4".into();
    s.node.name = "cp-a".into();
    s.node.advertise_address = "127.0.0.1".parse().unwrap();
    // the joiners' API server stubs (127.0.0.2, and 127.0.0.3/4 for the
    // concurrent joins) serve A's apiserver certificate
    s.cluster.cert_sans = vec![B_ADDR.into(), C1_ADDR.into(), C2_ADDR.into()];
    s
}

fn status_reply(code: u16, reason: &str) -> Reply {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": reason, "code": code});
    Reply::Respond(code, vec![], serde_json::to_vec(&body).unwrap())
}

/// What the fake API server serves, by path and by who may read it.
struct Api {
    /// Readable without credentials (kube-public).
    public: Mutex<BTreeMap<String, Value>>,
    /// Readable with the bootstrap token.
    token: BTreeMap<String, Value>,
    /// Readable and patchable with an admin.conf client certificate.
    admin: Mutex<BTreeMap<String, Value>>,
}

fn merge(target: &mut Value, patch: &Value) {
    if let (Value::Object(t), Value::Object(p)) = (&mut *target, patch) {
        for (k, v) in p {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    } else {
        *target = patch.clone();
    }
}

fn answer(api: &Api, req: &Request) -> Reply {
    let bearer = format!("Bearer {TOKEN_ID}.{TOKEN_SECRET}");
    if req.path == "/livez" {
        return ok(b"ok");
    }
    if req.method == "GET"
        && let Some(o) = api.public.lock().unwrap().get(&req.path)
    {
        return ok(&serde_json::to_vec(o).unwrap());
    }
    if req.header("Authorization") == Some(bearer.as_str()) {
        return match (req.method.as_str(), api.token.get(&req.path)) {
            ("GET", Some(o)) => ok(&serde_json::to_vec(o).unwrap()),
            _ => status_reply(404, "NotFound"),
        };
    }
    if req.client_cert.is_none() {
        return status_reply(401, "Unauthorized");
    }
    let mut objs = api.admin.lock().unwrap();
    match (req.method.as_str(), objs.get_mut(&req.path)) {
        ("GET", Some(o)) => ok(&serde_json::to_vec(o).unwrap()),
        ("PATCH", Some(o)) => {
            let patch: Value = serde_json::from_slice(&req.body).unwrap();
            merge(o, &patch);
            ok(&serde_json::to_vec(o).unwrap())
        }
        _ => status_reply(404, "NotFound"),
    }
}

/// An HTTPS server on `addr` answering 200 to every request: a joiner's
/// API server's `/livez` for wait-control-plane (verified with the cluster CA).
fn livez_on(addr: &str, config: Arc<rustls::ServerConfig>) -> u16 {
    let listener = TcpListener::bind((addr, 0)).unwrap();
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

fn sorted(mut m: Vec<Member>) -> Vec<Member> {
    m.sort_by_key(|m| m.id);
    m
}

/// A node that joins: its userdata (seeded under `root`) and fake systemctl.
struct Joiner {
    /// Its NodeConfig (without apiVersion).
    node_config: String,
    root: PathBuf,
    systemctl: PathBuf,
}

/// Node A, the fake API server serving its cluster, the joiners' health
/// stubs, and the joiners (B alone, or the nodes joining at once).
// some fields only keep their servers alive or are kept for debugging
#[allow(dead_code)]
struct Cluster {
    dir: PathBuf,
    pki_a: PathBuf,
    ports_a: Ports,
    etcd_a: Option<Kill>,
    api_server: Server,
    state: Arc<Api>,
    _stubs: [Server; 3],
    healthz_url: String,
    /// B's NodeConfig (without apiVersion).
    node_config: String,
    root_b: PathBuf,
    systemctl: PathBuf,
    /// Every joiner (B's fields above are the first one's).
    joiners: Vec<Joiner>,
}

/// The cluster with the `joiners` (name, advertise address), each with its
/// own root under the test's directory.
fn cluster_with(name: &str, run_etcd: Option<&Bins>, joiners: &[(&str, &str)]) -> Cluster {
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
    let token = BootstrapToken {
        id: TOKEN_ID.into(),
        secret: kubeboot::secret::Secret::new(TOKEN_SECRET),
    };
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
    // A's etcd pod as the API server mirrors it, pointing at the real etcd A.
    let mut etcd_pod = serde_json::to_value(&pod_a).unwrap();
    etcd_pod["metadata"]["name"] = json!("etcd-cp-a");
    etcd_pod["metadata"]["annotations"]["kubeadm.kubernetes.io/etcd.advertise-client-urls"] =
        json!(ports_a.client_url());
    let pod_list =
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [etcd_pod]});
    let mut admin_objs = BTreeMap::from([(ETCD_PODS_PATH.to_string(), pod_list)]);
    for (n, _) in joiners {
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}, "spec": {}});
        admin_objs.insert(format!("/api/v1/nodes/{n}"), node);
    }
    let state = Arc::new(Api {
        public: Mutex::default(),
        token: token_objs,
        admin: Mutex::new(admin_objs),
    });
    let served = state.clone();
    let api_tls = tls_config_with(
        &pki_a.join("apiserver.crt"),
        &pki_a.join("apiserver.key"),
        Some(&pki_a.join("ca.crt")),
        true,
    );
    let api_server = Server::https(api_tls, move |req, _| answer(&served, req));
    // cluster-info names the server, so it is added once the port is known
    let server = format!("https://127.0.0.1:{}", api_server.port);
    let built = api::objects::cluster_info(&server, &ca);
    let mut cm = built[0].body.clone();
    let kubeconfig = cm["data"]["kubeconfig"].as_str().unwrap().to_string();
    cm["data"][format!("jws-kubeconfig-{TOKEN_ID}")] =
        json!(api::discovery::sign_detached(&kubeconfig, &token));
    state
        .public
        .lock()
        .unwrap()
        .insert(built[0].item.clone(), cm);

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
    let pin = text(&kubeboot(&["certs", "ca-hash", pki_a.join("ca.crt").to_str().unwrap()]).stdout);
    let joiners: Vec<Joiner> = joiners
        .iter()
        .map(|(node, addr)| {
            let livez_port = livez_on(
                addr,
                tls_config(
                    &pki_a.join("apiserver.crt"),
                    &pki_a.join("apiserver.key"),
                    None,
                ),
            );
            // B keeps its historical root "b"; the others are named by node
            let root = dir.join(if *node == "cp-b" { "b" } else { node });
            let node_config = format!(
                "role: control-plane\nserver: 127.0.0.1:{api}\ntoken: {TOKEN_ID}.{TOKEN_SECRET}\ncaCertHash: {pin}\ncertificateKey: {KEY}\nnode:\n  name: {node}\n  advertiseAddress: {addr}\n  bindPort: {livez_port}\ncluster:\n  kubernetesVersion: v1.33.4\n  controlPlaneEndpoint: 127.0.0.1:{api}\n  podSubnet: 10.244.0.0/16\n  controllerManager:\n    extraArgs:\n      secure-port: \"{kcm}\"\n  scheduler:\n    extraArgs:\n      secure-port: \"{sched}\"\n",
                api = api_server.port,
                pin = pin.trim(),
                kcm = kcm.port,
                sched = sched.port,
            );
            let indented: String = node_config.lines().map(|l| format!("  {l}\n")).collect();
            seed(&root, &format!("#cloud-config\nkubeboot:\n{indented}"));
            let sc_dir = dir.join(format!("sc-{node}"));
            std::fs::create_dir_all(&sc_dir).unwrap();
            let systemctl = fake_systemctl(&sc_dir, &root);
            Joiner {
                node_config,
                root,
                systemctl,
            }
        })
        .collect();
    Cluster {
        dir,
        pki_a,
        ports_a,
        etcd_a,
        api_server,
        state,
        _stubs: [kcm, sched, healthz],
        healthz_url,
        node_config: joiners[0].node_config.clone(),
        root_b: joiners[0].root.clone(),
        systemctl: joiners[0].systemctl.clone(),
        joiners,
    }
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

/// A running `kubeboot firstboot` whose stderr is collected as it comes.
struct Running {
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
}

fn spawn_firstboot(j: &Joiner, healthz: &str) -> Running {
    let (r, sc) = (j.root.to_str().unwrap(), j.systemctl.to_str().unwrap());
    let mut args = run_args("firstboot", r, sc, healthz);
    args.extend(["--platform", "none"]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr: Arc<Mutex<String>> = Arc::default();
    let sink = stderr.clone();
    let mut pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&text(&buf[..n]));
        }
    });
    Running {
        child: Some(child),
        stderr,
    }
}

/// Two control planes run `firstboot` at the same moment against etcd A and
/// the API server stand-in. etcd allows one learner at a time: this test,
/// playing both kubelets, starts the first learner's etcd only once the
/// other node has been refused with "too many learner members", so the
/// limit is really met; that node must wait and retry, not fail. End state:
/// both succeed, and etcd has three started voting members.
#[test]
fn two_control_planes_join_at_once_and_both_become_voters() {
    // Debian's etcd 3.4, as the issue asks (a SKIP line without it)
    let Some(bins) = debian("etcdjoin_firstboot concurrent joins with etcd 3.4") else {
        return;
    };
    let c = cluster_with(
        "concurrent",
        Some(&bins),
        &[("cp-c1", C1_ADDR), ("cp-c2", C2_ADDR)],
    );
    let started = Instant::now();
    let mut nodes: Vec<Running> = c
        .joiners
        .iter()
        .map(|j| spawn_firstboot(j, &c.healthz_url))
        .collect();
    let manifest = |i: usize| c.joiners[i].root.join("etc/kubernetes/manifests/etcd.yaml");
    let all_stderr = |nodes: &[Running]| -> String {
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {i}:\n{}\n", n.stderr.lock().unwrap()))
            .collect()
    };
    let mut etcds: Vec<(usize, Kill, Ports, PathBuf)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut limit_met_by: Option<usize> = None;
    while etcds.len() < 2 {
        for n in nodes.iter_mut() {
            if let Some(ch) = n.child.as_mut()
                && let Some(st) = ch.try_wait().unwrap()
                && !st.success()
            {
                panic!("a node failed: {st}\n{}", all_stderr(&nodes));
            }
        }
        for i in 0..2 {
            if etcds.iter().any(|e| e.0 == i) || !manifest(i).exists() {
                continue;
            }
            let other = 1 - i;
            // Hold back the first learner's etcd until the other node met
            // the learner limit (its member add refused and retried).
            if etcds.is_empty() {
                if !nodes[other]
                    .stderr
                    .lock()
                    .unwrap()
                    .contains("too many learner members")
                {
                    continue;
                }
                limit_met_by = Some(other);
            }
            let ports = Ports::new();
            let log = c.dir.join(format!("etcd-{i}.log"));
            let (etcd, _) = start_etcd_with(
                &bins.etcd,
                &c.joiners[i].root,
                &|v| ports.rewrite_if(v, |h| h == "127.0.0.1"),
                &log,
            );
            etcds.push((i, etcd, ports, log));
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not both write etcd.yaml (learner limit met: {limit_met_by:?})\n{}",
            all_stderr(&nodes)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut outcomes = Vec::new();
    for n in nodes.iter_mut() {
        let o = wait_child(n.child.take().unwrap(), Duration::from_secs(300));
        outcomes.push((o.status, started.elapsed()));
    }
    std::thread::sleep(Duration::from_millis(200));
    for (i, (status, _)) in outcomes.iter().enumerate() {
        assert!(
            status.success(),
            "node {i}: {status}\n{}",
            all_stderr(&nodes)
        );
    }
    for (_, etcd, ports, log) in etcds.iter_mut() {
        wait_healthy(etcd, ports.metrics, log, Duration::from_secs(90));
    }
    let waited = limit_met_by.expect("the learner limit was met");
    let err_waited = nodes[waited].stderr.lock().unwrap().clone();
    assert!(
        err_waited.contains("[etcd-join] waiting for etcd member add")
            && err_waited.contains("too many learner members"),
        "{err_waited}"
    );
    for n in &nodes {
        let e = n.stderr.lock().unwrap();
        assert!(e.contains("added learner"), "{e}");
        assert!(e.contains("promoted to a voting member"), "{e}");
        for secret in [KEY, TOKEN_SECRET] {
            assert!(!e.contains(secret), "a secret reached the output");
        }
    }
    for j in &c.joiners {
        let st: Value = serde_json::from_str(
            &std::fs::read_to_string(j.root.join("var/lib/kubeboot/status.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(st["result"], "success", "{st}");
        assert_eq!(st["role"], "join-control-plane", "{st}");
    }

    // The end state: three started voting members, the joiners with their
    // own peer URLs; the same list from A and from each joiner.
    let via_a = sorted(
        client(&c.joiners[0].root, &c.ports_a.client_url())
            .member_list()
            .unwrap(),
    );
    assert_eq!(via_a.len(), 3, "{via_a:?}");
    assert!(
        via_a.iter().all(|m| !m.is_learner && !m.name.is_empty()),
        "{via_a:?}"
    );
    let mut names: Vec<&str> = via_a.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["cp-a", "cp-c1", "cp-c2"]);
    for (name, addr) in [("cp-c1", C1_ADDR), ("cp-c2", C2_ADDR)] {
        let m = via_a.iter().find(|m| m.name == name).unwrap();
        assert_eq!(m.peer_urls, [format!("https://{addr}:2380")]);
    }
    for (i, addr) in [(0, C1_ADDR), (1, C2_ADDR)] {
        let own = sorted(
            client(&c.joiners[i].root, &format!("https://{addr}:2379"))
                .member_list()
                .unwrap(),
        );
        assert_eq!(own, via_a);
    }
    let secs: Vec<String> = outcomes
        .iter()
        .map(|(_, t)| format!("{:.1} s", t.as_secs_f64()))
        .collect();
    eprintln!(
        "figure: concurrent control-plane join: both succeeded ({}), node {waited} met the learner limit and retried; end state 3 voting members {names:?}, 0 learners",
        secs.join(", ")
    );
    drop(etcds);
    drop(c.etcd_a);
    std::fs::remove_dir_all(&c.dir).unwrap();
}
