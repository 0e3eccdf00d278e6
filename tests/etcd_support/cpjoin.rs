//! The cluster that the control-plane join tests through `kubeboot
//! firstboot` share (`etcdjoin_firstboot`, `etcdjoin_concurrent`), with a
//! real etcd:
//!
//! - node A (`init`, advertise 127.0.0.1, Kubernetes v1.33 → etcd 3.5
//!   flags, which etcd 3.4 knows) gets its PKI and `etcd.yaml` from the
//!   library; etcd A runs from the manifest's flags with 2379/2380/2381
//!   rewritten to free loopback ports;
//! - the strict API server stand-in (`tests/api_support`) with A's
//!   apiserver certificate serves what a control-plane join reads:
//!   `kube-public/cluster-info` signed for the bootstrap token by its
//!   bootstrap signer, `kubelet-config`, `kubeadm-config` and
//!   `kubeadm-certs` (A's shared CAs, AES-256-GCM with a known certificate
//!   key; read with the token), the etcd Pod (A's rendered manifest with
//!   the `etcd.advertise-client-urls` annotation pointing at the real etcd
//!   A; admin.conf only) and the joiners' Nodes for mark-control-plane;
//! - per joiner: userdata for a control-plane join (its own loopback
//!   advertise address, so its etcd uses the real ports 2379/2380 there),
//!   a fake systemctl (that plays the TLS bootstrap with `kubectl`, when
//!   asked), and an
//!   HTTPS `/livez` on its address; one kubelet `/healthz`, controller
//!   manager and scheduler stub for all.
//!
//! Each test includes this with `#[path = "etcd_support/cpjoin.rs"] mod
//! cpjoin;` beside `api_support`, `cli_support`, `etcd_support`,
//! `net_support` and `node_common`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubeboot::api::etcd::{EtcdClient, Member};
use kubeboot::config::model::Settings;
use kubeboot::host::Paths;
use kubeboot::host::fs::Sync;
use kubeboot::{api, kubelet, manifests, pki};
use serde_json::json;

use crate::api_support::{Options, StandIn};
use crate::cli_support::{
    self, fake_systemctl, fake_systemctl_tls_bootstrap, kubeboot, seed, text,
};
use crate::etcd_support::{Bins, Kill, Ports, start_etcd_healthy_with};
use crate::net_support::{Server, ok, tls_config};
use crate::node_common::settings;

pub const KEY: &str = "4f6d0e1c2b3a49587766554433221100ffeeddccbbaa99887766554433221100";
pub const TOKEN_ID: &str = "abcdef";
pub const TOKEN_SECRET: &str = "0123456789abcdef";

/// Node A; its apiserver certificate also names the joiners' addresses
/// (their `/livez` stubs serve it).
pub fn node_a(joiner_addrs: &[&str]) -> Settings {
    let mut s = settings::control_plane();
    s.cluster.kubernetes_version = "v1.33.4".into();
    s.node.name = "cp-a".into();
    s.node.advertise_address = "127.0.0.1".parse().unwrap();
    s.cluster.cert_sans = joiner_addrs.iter().map(|a| a.to_string()).collect();
    s
}

/// An HTTPS server on `addr` answering 200 to every request: a joiner's
/// API server's `/livez` for wait-control-plane (verified with the
/// cluster CA), and the local API server the joiner's bootstrap
/// kubeconfig names, where the fake kubelet posts its CSR (the body is
/// read before the answer: closing with it unread resets the connection
/// under a client still writing it).
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
                let length = String::from_utf8_lossy(&head)
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())
                            .flatten()
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                let _ = tls.read_exact(&mut body);
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
                let _ = tls.flush();
            });
        }
    });
    port
}

/// The arguments of a join run (`firstboot` or `join`) on `root`.
pub fn run_args<'a>(
    cmd: &'a str,
    root: &'a str,
    systemctl: &'a str,
    healthz: &'a str,
) -> Vec<&'a str> {
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
pub fn wait_child(mut child: Child, limit: Duration) -> Output {
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

/// An etcd client on `endpoint` with the healthcheck-client certificate
/// of the node under `root`.
pub fn client(root: &Path, endpoint: &str) -> EtcdClient {
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

pub fn sorted(mut m: Vec<Member>) -> Vec<Member> {
    m.sort_by_key(|m| m.id);
    m
}

/// A node that joins: its userdata (seeded under `root`) and fake systemctl.
pub struct Joiner {
    pub name: String,
    pub addr: String,
    /// Its NodeConfig (without apiVersion).
    pub node_config: String,
    pub root: PathBuf,
    pub systemctl: PathBuf,
}

/// Node A, the stand-in serving its cluster, the joiners' health stubs,
/// and the joiners.
pub struct Cluster {
    pub dir: PathBuf,
    pub pki_a: PathBuf,
    pub ports_a: Ports,
    pub etcd_a: Option<Kill>,
    pub api_server: StandIn,
    _stubs: [Server; 3],
    pub healthz_url: String,
    pub joiners: Vec<Joiner>,
}

/// The cluster with the `joiners` (node name, advertise address), each
/// with its own root (`<dir>/<root name>`, the third field); with
/// `run_etcd`, etcd A runs from its manifest (without, the etcd pod's
/// annotation names a port nothing listens on). `opts` shapes the
/// stand-in (its `minor` is set to 33, A's version); a joiner that is not
/// `opts.node` (the one the stand-in's kubelet registers) has its Node in
/// the store from the start, as a kubelet that registered at once. With
/// `csr`, the fake kubelets send their CSR with `kubectl` (through the
/// bootstrap kubeconfig) before kubelet.conf appears; without, it appears
/// at once.
pub fn cluster(
    name: &str,
    run_etcd: Option<&Bins>,
    joiners: &[(&str, &str, &str)],
    opts: Options,
    csr: bool,
) -> Cluster {
    let dir = cli_support::tmpdir("etcdjoin", name);
    let now = time::OffsetDateTime::now_utc();

    // Node A: init's PKI and etcd.yaml; etcd A runs from the manifest.
    let root_a = dir.join("a");
    let paths_a = Paths::new(&root_a);
    let addrs: Vec<&str> = joiners.iter().map(|j| j.1).collect();
    let a = node_a(&addrs);
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
    // The strict API server stand-in with A's apiserver certificate.
    let registering = opts.node.clone();
    let api_server = StandIn::start_pki(&pki_a, Options { minor: 33, ..opts });
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
    // the joiners' Nodes the stand-in's kubelet does not register
    for (node, _, _) in joiners {
        if registering.as_deref() != Some(*node) {
            api_server.insert(json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}},
                "spec": {}}));
        }
    }

    // Health stubs: kubelet, controller manager, scheduler (one each for
    // every joiner), and each joiner's API server on its own address.
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
        .map(|(node, addr, root_name)| {
            let livez_port = livez_on(
                addr,
                tls_config(
                    &pki_a.join("apiserver.crt"),
                    &pki_a.join("apiserver.key"),
                    None,
                ),
            );
            let root = dir.join(root_name);
            let node_config = format!(
                "role: control-plane\nserver: 127.0.0.1:{api}\ntoken: {TOKEN_ID}.{TOKEN_SECRET}\ncaCertHash: {pin}\ncertificateKey: {KEY}\nnode:\n  name: {node}\n  advertiseAddress: {addr}\n  bindPort: {livez_port}\ncluster:\n  kubernetesVersion: v1.33.4\n  controlPlaneEndpoint: 127.0.0.1:{api}\n  podSubnet: 10.244.0.0/16\n  controllerManager:\n    extraArgs:\n      secure-port: \"{kcm}\"\n  scheduler:\n    extraArgs:\n      secure-port: \"{sched}\"\n",
                api = api_server.port(),
                pin = pin.trim(),
                kcm = kcm.port,
                sched = sched.port,
            );
            let indented: String = node_config.lines().map(|l| format!("  {l}\n")).collect();
            seed(&root, &format!("#cloud-config\nkubeboot:\n{indented}"));
            // each joiner's systemctl in its own directory, logging there
            let sc_dir = dir.join(format!("sc-{node}"));
            std::fs::create_dir_all(&sc_dir).unwrap();
            let (script, log) = (sc_dir.join("systemctl"), sc_dir.join("systemctl.log"));
            let systemctl = if csr {
                fake_systemctl_tls_bootstrap(&script, &root, &log, false)
            } else {
                fake_systemctl(&script, &root, &log, false)
            };
            Joiner {
                name: node.to_string(),
                addr: addr.to_string(),
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
        _stubs: [kcm, sched, healthz],
        healthz_url,
        joiners,
    }
}
