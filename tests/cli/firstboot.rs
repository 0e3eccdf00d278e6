//! `kubeboot firstboot` end to end on fake roots, with loopback peers only:
//! a TLS API server (our own rendered apiserver certificate) serving a
//! signed `cluster-info`, a kubelet healthz stub, and a fake `systemctl`
//! that records its calls and plays the kubelet's TLS bootstrap.
//!
//! Covers: a worker join that succeeds (status, marker, files, call order,
//! rerun is a no-op), a wrong CA pin (untrusted, not retryable, nothing
//! written), no userdata (exit 1, status lists what was tried), an invalid
//! config (exit 2, no secret in the status file).

#[allow(unused_imports)]
use crate::api_support;
#[allow(unused_imports)]
use crate::cli_support;
#[allow(unused_imports)]
use crate::net_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use api_support::{CLUSTER_INFO, Fault, FaultKind, Options, StandIn, kubelet_healthz};
use base64::Engine;
use cli_support::{
    fake_systemctl_tls_bootstrap as systemctl_script, firstboot_args, kubeboot,
    render_control_plane as control_plane, seed, text,
};
use kubeboot::secret::Secret;
use net_support::{Server, ok, tls_config};

fn tmpdir(name: &str) -> std::path::PathBuf {
    cli_support::tmpdir("fb", name)
}

const TOKEN_ID: &str = "abcdef";
const TOKEN_SECRET: &str = "0123456789abcdef";

/// The strict API server stand-in on 127.0.0.1 for a cluster whose CA is
/// `cp`'s: kubeadm's RBAC, the bootstrap token abcdef, and cluster-info
/// signed for it by the stand-in's bootstrap signer. `node`: the Node a
/// kubelet registers (absent at the join's first look, registered at the
/// second, updated once right after a read).
fn api_server(cp: &Path, node: Option<&str>) -> (StandIn, Vec<u8>) {
    api_server_with(cp, node, 34)
}

/// [`api_server`] for Kubernetes 1.`minor`.
fn api_server_with(cp: &Path, node: Option<&str>, minor: u32) -> (StandIn, Vec<u8>) {
    let pki = cp.join("etc/kubernetes/pki");
    let ca = std::fs::read(pki.join("ca.crt")).unwrap();
    let api = StandIn::start_pki(
        &pki,
        Options {
            minor,
            node: node.map(str::to_string),
            node_after: 1,
            ..Options::default()
        },
    );
    api.seed_cluster(&ca, TOKEN_ID, TOKEN_SECRET);
    (api, ca)
}

fn ca_hash(cp: &Path) -> String {
    let o = kubeboot(&[
        "certs",
        "ca-hash",
        cp.join("etc/kubernetes/pki/ca.crt").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    text(&o.stdout).trim().to_string()
}

fn firstboot(root: &Path, systemctl: &Path, healthz: &str, discovery_timeout: &str) -> Output {
    let args = firstboot_args(root, systemctl, healthz, "20", discovery_timeout);
    kubeboot(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// [`firstboot`] watched by the stand-in: a failure in it kills kubeboot
/// and fails the test at once.
fn firstboot_with(api: &StandIn, root: &Path, systemctl: &Path, healthz: &str) -> Output {
    let args = firstboot_args(root, systemctl, healthz, "20", "20");
    api.run(Command::new(env!("CARGO_BIN_EXE_kubeboot")).args(&args))
}

fn status(root: &Path) -> serde_json::Value {
    let s = std::fs::read_to_string(root.join("var/lib/kubeboot/status.json"))
        .expect("status.json written");
    assert!(!s.contains(TOKEN_SECRET), "secret in status file: {s}");
    serde_json::from_str(&s).unwrap()
}

fn worker_userdata(port: u16, pin: &str) -> String {
    format!(
        "#cloud-config\nkubeboot:\n  role: worker\n  server: 127.0.0.1:{port}\n  token: {TOKEN_ID}.{TOKEN_SECRET}\n  caCertHash: {pin}\n  node:\n    name: worker-1\n"
    )
}

/// A worker (`worker-1`) joining `api`'s cluster (whose CA is `cp`'s) from a
/// fresh root under `dir`, with a kubelet that is healthy at once; returns
/// the root and the run.
fn join_worker(dir: &Path, api: &StandIn, cp: &Path) -> (PathBuf, Output) {
    let healthz = Server::http(|_, _| ok(b"ok"));
    let root = dir.join("worker");
    std::fs::create_dir_all(&root).unwrap();
    seed(&root, &worker_userdata(api.port(), &ca_hash(cp)));
    let (systemctl, _) = fake_systemctl(dir, &root);
    let o = firstboot_with(
        api,
        &root,
        &systemctl,
        &format!("{}/healthz", healthz.base()),
    );
    (root, o)
}

#[test]
fn worker_joins_through_token_discovery() {
    let dir = tmpdir("join");
    let cp = control_plane(&dir);
    let (api, ca) = api_server(&cp, None);
    // the kubelet answers 503 twice before it is healthy
    let healthz = kubelet_healthz(2);
    let root = dir.join("worker");
    std::fs::create_dir_all(&root).unwrap();
    seed(&root, &worker_userdata(api.port(), &ca_hash(&cp)));
    let (systemctl, log) = fake_systemctl(&dir, &root);

    let o = firstboot_with(
        &api,
        &root,
        &systemctl,
        &format!("{}/healthz", healthz.base()),
    );
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        !err.contains(TOKEN_SECRET) && !out.contains(TOKEN_SECRET),
        "secret in output"
    );
    assert!(out.contains("kubeboot: join-worker succeeded"), "{out}");
    // no startSpread: the first request goes out at once
    assert!(!err.contains("start spread"), "{err}");

    let st = status(&root);
    assert_eq!(st["result"], "success");
    assert_eq!(st["role"], "join-worker");
    let done: Vec<&str> = st["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["outcome"] == "done")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        done,
        vec![
            "preflight",
            "discovery",
            "kubelet-start",
            "kubelet-wait-bootstrap"
        ]
    );
    assert!(
        root.join("var/lib/kubeboot/done").is_file(),
        "marker written last on success"
    );
    assert_eq!(
        std::fs::read(root.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        ca
    );
    assert!(root.join("var/lib/kubelet/config.yaml").is_file());
    assert!(
        !root.join("etc/kubernetes/bootstrap-kubelet.conf").exists(),
        "bootstrap kubeconfig (holds the token) removed"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(
        calls,
        vec![
            "daemon-reload",
            "enable kubelet.service",
            "restart --no-block kubelet.service"
        ]
    );
    // every request went to loopback, and discovery fetched cluster-info twice
    // (unverified, then verified with the pinned CA)
    let reqs = api.server.requests();
    assert_eq!(
        reqs.iter()
            .filter(|r| r.path.ends_with("/cluster-info"))
            .count(),
        2,
        "{reqs:?}"
    );
    // kubelet-wait-bootstrap polled the kubelet until it was healthy
    assert_eq!(healthz.requests().len(), 3);

    // a second boot does nothing
    let before = std::fs::read(root.join("var/lib/kubeboot/status.json")).unwrap();
    let o = firstboot(&root, &systemctl, "http://127.0.0.1:9/healthz", "20");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("nothing to do"));
    assert_eq!(
        std::fs::read(root.join("var/lib/kubeboot/status.json")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        3,
        "no systemctl call on rerun"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `startSpread`: a live join waits a random part of it before its first
/// request, and says so; a dry run of the same config does not wait.
#[test]
fn start_spread_delays_a_live_join_only() {
    let dir = tmpdir("spread");
    let cp = control_plane(&dir);
    let (api, _) = api_server(&cp, None);
    let healthz = kubelet_healthz(0);
    let root = dir.join("worker");
    std::fs::create_dir_all(&root).unwrap();
    let userdata = worker_userdata(api.port(), &ca_hash(&cp)) + "  startSpread: 2s\n";
    seed(&root, &userdata);
    let (systemctl, _) = fake_systemctl(&dir, &root);
    let o = firstboot_with(
        &api,
        &root,
        &systemctl,
        &format!("{}/healthz", healthz.base()),
    );
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("start spread: waiting ") && err.contains("up to 2.0 s"),
        "{err}"
    );
    let cfg = dir.join("worker.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: kubeboot.dev/v1alpha1\nrole: worker\nserver: 127.0.0.1:{}\ntoken: abcdef.0123456789abcdef\ncaCertHash: {}\nstartSpread: 2s\n",
            api.port(),
            ca_hash(&cp)
        ),
    )
    .unwrap();
    let o = kubeboot(&[
        "join",
        "--dry-run",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        dir.join("dry").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        !text(&o.stderr).contains("start spread"),
        "{}",
        text(&o.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wrong_ca_pin_is_untrusted_and_writes_no_join_material() {
    let dir = tmpdir("pin");
    let cp = control_plane(&dir);
    let (api, _) = api_server(&cp, None);
    let root = dir.join("worker");
    std::fs::create_dir_all(&root).unwrap();
    let wrong = format!("sha256:{}", "ab".repeat(32));
    seed(&root, &worker_userdata(api.port(), &wrong));
    let (systemctl, log) = fake_systemctl(&dir, &root);
    let o = firstboot_with(&api, &root, &systemctl, "http://127.0.0.1:9/healthz");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("phase discovery failed") && err.contains("does not match any caCertHash"),
        "{err}"
    );
    assert!(
        err.contains("FAILED in phase discovery"),
        "console line: {err}"
    );
    let st = status(&root);
    assert_eq!(st["result"], "failure");
    assert_eq!(st["phase"], "discovery");
    assert_eq!(st["errorClass"], "untrusted-cluster");
    assert_eq!(st["retryable"], false);
    assert!(!root.join("var/lib/kubeboot/done").exists());
    assert!(!root.join("etc/kubernetes/bootstrap-kubelet.conf").exists());
    assert!(!root.join("etc/kubernetes/pki/ca.crt").exists());
    assert!(!log.exists(), "systemctl must not be called");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unreachable_api_server_is_retryable() {
    let dir = tmpdir("down");
    let root = dir.join("worker");
    std::fs::create_dir_all(&root).unwrap();
    let port = net_support::closed_port();
    seed(
        &root,
        &worker_userdata(port, &format!("sha256:{}", "cd".repeat(32))),
    );
    let (systemctl, _) = fake_systemctl(&dir, &root);
    let o = firstboot(&root, &systemctl, "http://127.0.0.1:9/healthz", "1");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let st = status(&root);
    assert_eq!(st["phase"], "discovery");
    assert_eq!(st["retryable"], true);
    assert!(st["error"].as_str().unwrap().contains("127.0.0.1"), "{st}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_userdata_exits_1_and_records_what_was_tried() {
    let root = tmpdir("none");
    let o = kubeboot(&[
        "firstboot",
        "--root",
        root.to_str().unwrap(),
        "--platform",
        "none",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no userdata found"),
        "{}",
        text(&o.stderr)
    );
    let st = status(&root);
    assert_eq!(st["errorClass"], "no-userdata");
    let e = st["error"].as_str().unwrap();
    assert!(
        e.contains("nocloud seed") && e.contains("/etc/kubeboot/config.yaml"),
        "{e}"
    );
    assert!(!root.join("var/lib/kubeboot/done").exists());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn invalid_config_exits_2_without_leaking_the_token() {
    let root = tmpdir("invalid");
    seed(
        &root,
        &format!(
            "#cloud-config\nkubeboot:\n  role: worker\n  server: nope\n  token: {TOKEN_ID}.{TOKEN_SECRET}\n"
        ),
    );
    let o = kubeboot(&[
        "firstboot",
        "--root",
        root.to_str().unwrap(),
        "--platform",
        "none",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("kubeboot.server:") && err.contains("kubeboot.caCertHash:"),
        "{err}"
    );
    assert!(!err.contains(TOKEN_SECRET));
    let st = status(&root);
    assert_eq!(st["errorClass"], "invalid-input");
    assert_eq!(st["retryable"], false);
    std::fs::remove_dir_all(&root).unwrap();
}

/// A TLS server answering 200 on every path, with the given cert and key files.
fn tls_health_server(cert: &Path, key: &Path) -> Server {
    Server::https(tls_config(cert, key, None), |_, _| ok(b"ok"))
}

#[test]
fn control_plane_init_runs_every_phase_and_waits_for_health() {
    let dir = tmpdir("init");
    // The certificates do not depend on the port: render once to get an
    // apiserver certificate, serve /livez with it, then init on that port.
    let cp = control_plane(&dir);
    let pki = cp.join("etc/kubernetes/pki");
    let apiserver = tls_health_server(&pki.join("apiserver.crt"), &pki.join("apiserver.key"));
    // controller-manager and scheduler serve self-signed certs (not verified)
    let kcm = tls_health_server(
        &pki.join("front-proxy-client.crt"),
        &pki.join("front-proxy-client.key"),
    );
    let sched = tls_health_server(
        &pki.join("front-proxy-client.crt"),
        &pki.join("front-proxy-client.key"),
    );
    // the kubelet answers 503 twice before it is healthy
    let healthz = kubelet_healthz(2);
    seed(
        &cp,
        &format!(
            "#cloud-config\nkubeboot:\n  role: control-plane\n  skipPhases: [upload-config, mark-control-plane, bootstrap-token, addon, show-join-command]\n  node:\n    name: cp-1\n    advertiseAddress: 127.0.0.1\n    bindPort: {}\n  cluster:\n    controllerManager:\n      extraArgs:\n        secure-port: \"{}\"\n    scheduler:\n      extraArgs:\n        secure-port: \"{}\"\n",
            apiserver.port, kcm.port, sched.port
        ),
    );
    let ca_before = std::fs::read(pki.join("ca.crt")).unwrap();
    let (systemctl, log) = fake_systemctl(&dir, &cp);
    let o = firstboot(
        &cp,
        &systemctl,
        &format!("{}/healthz", healthz.base()),
        "20",
    );
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let st = status(&cp);
    assert_eq!(st["result"], "success");
    assert_eq!(st["role"], "init");
    let done: Vec<&str> = st["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["outcome"] == "done")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        done,
        vec![
            "preflight",
            "certs",
            "kubeconfig",
            "etcd",
            "control-plane",
            "kubelet-start",
            "wait-control-plane",
            "kubelet-finalize"
        ]
    );
    // kubelet-finalize: kubelet.conf now names the kubelet's rotating
    // certificate file instead of embedding the one kubeboot issued
    let kc = std::fs::read_to_string(cp.join("etc/kubernetes/kubelet.conf")).unwrap();
    assert!(
        kc.contains("client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem")
            && kc.contains("client-key: /var/lib/kubelet/pki/kubelet-client-current.pem")
            && !kc.contains("client-key-data"),
        "{kc}"
    );
    let view = Command::new("kubectl")
        .args(["config", "view", "--kubeconfig"])
        .arg(cp.join("etc/kubernetes/kubelet.conf"))
        .args(["-o", "jsonpath={.users[0].user.client-certificate}"])
        .output()
        .expect("kubectl is required");
    assert!(
        text(&view.stdout).ends_with("kubelet-client-current.pem"),
        "{}",
        text(&view.stderr)
    );
    assert_eq!(
        std::fs::read(pki.join("ca.crt")).unwrap(),
        ca_before,
        "the CA is never regenerated"
    );
    let admin = std::fs::read_to_string(cp.join("etc/kubernetes/admin.conf")).unwrap();
    assert!(
        admin.contains(&format!("server: https://127.0.0.1:{}", apiserver.port)),
        "{admin}"
    );
    let pod =
        std::fs::read_to_string(cp.join("etc/kubernetes/manifests/kube-controller-manager.yaml"))
            .unwrap();
    assert!(
        pod.contains(&format!("--secure-port={}", kcm.port)),
        "extra args reach the manifest"
    );
    assert_eq!(healthz.requests().len(), 3, "polled until healthy");
    assert!(apiserver.requests().iter().any(|r| r.path == "/livez"));
    assert!(kcm.requests().iter().any(|r| r.path == "/healthz"));
    assert!(sched.requests().iter().any(|r| r.path == "/livez"));
    // kubelet-start's three calls, then kubelet-finalize's restart
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        vec![
            "daemon-reload",
            "enable kubelet.service",
            "restart --no-block kubelet.service",
            "restart --no-block kubelet.service"
        ]
    );
    assert!(cp.join("var/lib/kubeboot/done").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn control_plane_health_timeout_is_reported() {
    let dir = tmpdir("init-timeout");
    let cp = control_plane(&dir);
    let healthz = Server::http(|_, _| ok(b"ok"));
    let port = net_support::closed_port();
    seed(
        &cp,
        &format!(
            "#cloud-config\nkubeboot:\n  role: control-plane\n  node:\n    name: cp-1\n    advertiseAddress: 127.0.0.1\n    bindPort: {port}\n"
        ),
    );
    let (systemctl, _) = fake_systemctl(&dir, &cp);
    // (discovery plays no part in an init)
    let args = firstboot_args(
        &cp,
        &systemctl,
        &format!("{}/healthz", healthz.base()),
        "1",
        "20",
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = kubeboot(&args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let st = status(&cp);
    assert_eq!(st["phase"], "wait-control-plane");
    assert_eq!(st["retryable"], true);
    let e = st["error"].as_str().unwrap();
    assert!(
        e.contains("kube-apiserver did not become healthy") && e.contains(&port.to_string()),
        "{e}"
    );
    assert!(!cp.join("var/lib/kubeboot/done").exists());
    // the files written before the failure are kept: a rerun continues from them
    assert!(
        cp.join("etc/kubernetes/manifests/kube-apiserver.yaml")
            .is_file()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn worker_takes_the_clusters_kubelet_configuration() {
    let dir = tmpdir("kubelet-config");
    let cp = control_plane(&dir);
    let (api, _) = api_server(&cp, None);
    api.insert(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kubelet-config", "namespace": "kube-system"},
        "data": {"kubelet": "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\nclusterDNS:\n- 10.200.0.10\nclusterDomain: corp.local\n"}}));
    let (root, o) = join_worker(&dir, &api, &cp);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let cfg = std::fs::read_to_string(root.join("var/lib/kubelet/config.yaml")).unwrap();
    assert!(
        cfg.contains("10.200.0.10") && cfg.contains("corp.local"),
        "{cfg}"
    );
    // this fake root runs no systemd, so the local runtime's driver (cgroupfs) wins
    assert!(cfg.contains("cgroupDriver: cgroupfs"), "{cfg}");
    assert!(text(&o.stderr).contains("using the cluster's kubelet configuration"));
    // the token went only in the Authorization header, only to the cluster API
    for r in api.server.requests() {
        if r.path.contains("/cluster-info") {
            assert_eq!(r.header("Authorization"), None, "discovery is anonymous");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_ready_node_with_the_same_name_is_refused() {
    let dir = tmpdir("dup-node");
    let cp = control_plane(&dir);
    let (api, _) = api_server(&cp, None);
    api.insert(
        serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    let root = dir.join("worker");
    std::fs::create_dir_all(&root).unwrap();
    seed(&root, &worker_userdata(api.port(), &ca_hash(&cp)));
    let (systemctl, log) = fake_systemctl(&dir, &root);
    let o = firstboot_with(&api, &root, &systemctl, "http://127.0.0.1:9/healthz");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("already exists in the cluster and is Ready"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(status(&root)["retryable"], false);
    assert!(!log.exists(), "the kubelet must not be started");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// kubeadm refuses only a Node that is Ready (its Ready condition True): a
/// dead machine's NotReady Node is taken over by the join.
#[test]
fn a_not_ready_node_with_the_same_name_is_taken_over() {
    let dir = tmpdir("notready-node");
    let cp = control_plane(&dir);
    let (api, _) = api_server(&cp, None);
    api.insert(
        serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "True"},
            {"type": "Ready", "status": "False"}]}}),
    );
    let (root, o) = join_worker(&dir, &api, &cp);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(status(&root)["result"], "success");
    std::fs::remove_dir_all(&dir).unwrap();
}

const CERT_KEY: &str = "8a3c2b1f0e9d8c7b6a5f4e3d2c1b0a998877665544332211ffeeddccbbaa0099";

/// The kubeadm-certs Secret as `kubeadm init --upload-certs` makes it, from
/// the init node's files, encrypted with `key`.
fn kubeadm_certs_secret(cp: &Path, key_hex: &str) -> serde_json::Value {
    let key = kubeboot::api::certs::key_bytes(&Secret::new(key_hex)).unwrap();
    let pki = cp.join("etc/kubernetes/pki");
    let mut data = serde_json::Map::new();
    for (i, (name, file)) in [
        ("ca.crt", "ca.crt"),
        ("ca.key", "ca.key"),
        ("front-proxy-ca.crt", "front-proxy-ca.crt"),
        ("front-proxy-ca.key", "front-proxy-ca.key"),
        ("sa.pub", "sa.pub"),
        ("sa.key", "sa.key"),
        ("external-etcd-ca.crt", "etcd/ca.crt"),
        ("external-etcd.crt", "apiserver-etcd-client.crt"),
        ("external-etcd.key", "apiserver-etcd-client.key"),
    ]
    .into_iter()
    .enumerate()
    {
        let plain = std::fs::read(pki.join(file)).unwrap();
        let blob = kubeboot::api::certs::encrypt(&key, [i as u8 + 1; 12], &plain).unwrap();
        data.insert(
            name.into(),
            base64::engine::general_purpose::STANDARD
                .encode(blob)
                .into(),
        );
    }
    serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "kubeadm-certs", "namespace": "kube-system"}, "data": data})
}

fn control_plane_join(dir: &Path, cert_key: &str) -> (PathBuf, PathBuf, Output, StandIn) {
    control_plane_join_with(dir, cert_key, 34, None)
}

/// [`control_plane_join`] against a stand-in for 1.`minor` that also
/// serves `kubeadm_config` (a kube-system/kubeadm-config ConfigMap).
fn control_plane_join_with(
    dir: &Path,
    cert_key: &str,
    minor: u32,
    kubeadm_config: Option<serde_json::Value>,
) -> (PathBuf, PathBuf, Output, StandIn) {
    let cp = control_plane(dir);
    let secret = kubeadm_certs_secret(&cp, CERT_KEY);
    // the kubelet registers cp-2 after the join's own check and updates it right after
    // mark-control-plane first reads it
    let (api, _) = api_server_with(&cp, Some("cp-2"), minor);
    api.insert(secret);
    if let Some(cm) = kubeadm_config {
        api.insert(cm);
    }
    let pki = cp.join("etc/kubernetes/pki");
    let kcm = tls_health_server(
        &pki.join("front-proxy-client.crt"),
        &pki.join("front-proxy-client.key"),
    );
    let sched = tls_health_server(
        &pki.join("front-proxy-client.crt"),
        &pki.join("front-proxy-client.key"),
    );
    let healthz = Server::http(|_, _| ok(b"ok"));
    let root = dir.join("cp2");
    std::fs::create_dir_all(&root).unwrap();
    seed(
        &root,
        &format!(
            "#cloud-config\nkubeboot:\n  role: control-plane\n  server: 127.0.0.1:{port}\n  token: {TOKEN_ID}.{TOKEN_SECRET}\n  caCertHash: {pin}\n  certificateKey: {cert_key}\n  node:\n    name: cp-2\n    advertiseAddress: 127.0.0.1\n    bindPort: {port}\n  cluster:\n    etcd:\n      external:\n        endpoints: [https://127.0.0.1:2379]\n        caFile: /etc/kubernetes/pki/etcd-external/ca.crt\n        certFile: /etc/kubernetes/pki/etcd-external/client.crt\n        keyFile: /etc/kubernetes/pki/etcd-external/client.key\n    controllerManager:\n      extraArgs: {{secure-port: \"{kcm}\"}}\n    scheduler:\n      extraArgs: {{secure-port: \"{sched}\"}}\n",
            port = api.port(),
            pin = ca_hash(&cp),
            kcm = kcm.port,
            sched = sched.port,
        ),
    );
    let (systemctl, _) = fake_systemctl(dir, &root);
    let o = firstboot_with(
        &api,
        &root,
        &systemctl,
        &format!("{}/healthz", healthz.base()),
    );
    (cp, root, o, api)
}

#[test]
fn control_plane_joins_with_the_certificate_key() {
    let dir = tmpdir("cp-join");
    let (cp, root, o, api) = control_plane_join(&dir, CERT_KEY);
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(
        !text(&o.stderr).contains(CERT_KEY),
        "certificate key leaked"
    );
    let st = status(&root);
    assert!(!serde_json::to_string(&st).unwrap().contains(CERT_KEY));
    assert_eq!(st["role"], "join-control-plane");
    let done: Vec<&str> = st["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["outcome"] == "done")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        done,
        vec![
            "preflight",
            "discovery",
            "download-certs",
            "control-plane-prepare",
            "kubelet-start",
            "kubelet-wait-bootstrap",
            "control-plane-join",
            "wait-control-plane"
        ]
    );
    // the first patch raced the kubelet's update (409); the retry carries
    // the fresh resourceVersion
    let patches: Vec<u16> = api
        .log()
        .iter()
        .filter(|l| l.method == "PATCH")
        .map(|l| l.status)
        .collect();
    assert_eq!(patches, [409, 200]);
    let patch = api
        .server
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PATCH")
        .expect("the Node is patched");
    let patch: serde_json::Value = serde_json::from_slice(&patch.body).unwrap();
    assert_eq!(
        patch["metadata"]["labels"]["node-role.kubernetes.io/control-plane"],
        ""
    );
    // a merge patch replaces the list: the kubelet's not-ready taint is kept
    let keys: Vec<&str> = patch["spec"]["taints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "node.kubernetes.io/not-ready",
            "node-role.kubernetes.io/control-plane"
        ]
    );
    let (a, b) = (
        cp.join("etc/kubernetes/pki"),
        root.join("etc/kubernetes/pki"),
    );
    for shared in ["ca.crt", "ca.key", "front-proxy-ca.key", "sa.key", "sa.pub"] {
        assert_eq!(
            std::fs::read(a.join(shared)).unwrap(),
            std::fs::read(b.join(shared)).unwrap(),
            "{shared}"
        );
    }
    assert_eq!(
        std::fs::read(a.join("etcd/ca.crt")).unwrap(),
        std::fs::read(b.join("etcd-external/ca.crt")).unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(b.join("etcd-external/client.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // node-local leaves are this node's, signed by the shared CA
    assert_ne!(
        std::fs::read(a.join("apiserver.crt")).unwrap(),
        std::fs::read(b.join("apiserver.crt")).unwrap()
    );
    let v = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(b.join("ca.crt"))
        .arg(b.join("apiserver.crt"))
        .output()
        .unwrap();
    assert!(v.status.success());
    let h = Command::new("openssl")
        .args(["x509", "-noout", "-checkhost", "cp-2", "-in"])
        .arg(b.join("apiserver.crt"))
        .output()
        .unwrap();
    assert!(
        text(&h.stdout).contains("does match"),
        "{}",
        text(&h.stdout)
    );
    assert!(
        !b.join("etcd/ca.key").exists(),
        "no local etcd CA with external etcd"
    );
    let k = root.join("etc/kubernetes");
    assert!(k.join("admin.conf").is_file() && k.join("controller-manager.conf").is_file());
    assert!(
        !k.join("super-admin.conf").exists(),
        "super-admin.conf is init only"
    );
    assert!(!k.join("manifests/etcd.yaml").exists());
    let pod = std::fs::read_to_string(k.join("manifests/kube-apiserver.yaml")).unwrap();
    assert!(
        pod.contains("--etcd-servers=https://127.0.0.1:2379"),
        "{pod}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_wrong_certificate_key_is_refused() {
    let dir = tmpdir("cp-join-wrong");
    let wrong = "00".repeat(32);
    let (_, root, o, _api) = control_plane_join(&dir, &wrong);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let st = status(&root);
    assert_eq!(st["phase"], "download-certs");
    assert_eq!(st["errorClass"], "untrusted-cluster");
    assert!(
        st["error"].as_str().unwrap().contains("does not decrypt"),
        "{st}"
    );
    assert!(!root.join("etc/kubernetes/pki/ca.key").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The fake systemctl and its log, in `dir`.
fn fake_systemctl(dir: &Path, root: &Path) -> (PathBuf, PathBuf) {
    let log = dir.join("systemctl.log");
    (
        systemctl_script(&dir.join("systemctl"), root, &log, true),
        log,
    )
}

/// A worker join at `--log-level trace`, with the syslog copy captured:
/// the token secret (sent as a bearer token after discovery) is nowhere,
/// not even inside a raw traffic dump.
#[test]
fn a_join_at_trace_level_shows_the_token_nowhere() {
    let dir = tmpdir("join-trace");
    let cp = control_plane(&dir);
    let (api, _) = api_server(&cp, None);
    let healthz = Server::http(|_, _| ok(b"ok"));
    let root = dir.join("worker");
    std::fs::create_dir_all(&root).unwrap();
    seed(&root, &worker_userdata(api.port(), &ca_hash(&cp)));
    let (systemctl, _) = fake_systemctl(&dir, &root);
    let syslog = cli_support::SyslogCapture::new(&dir);
    let args = firstboot_args(
        &root,
        &systemctl,
        &format!("{}/healthz", healthz.base()),
        "20",
        "20",
    );
    let o = api.run(
        Command::new(env!("CARGO_BIN_EXE_kubeboot"))
            .args(["--log-level", "trace"])
            .args(&args)
            .env("KUBEBOOT_SYSLOG_SOCKET", &syslog.path)
            .env_remove("JOURNAL_STREAM"),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let with_auth = api
        .server
        .requests()
        .iter()
        .filter(|r| {
            r.header("Authorization")
                .is_some_and(|a| a.contains(TOKEN_SECRET))
        })
        .count();
    assert!(
        with_auth > 0,
        "the bearer token was sent (so it could leak)"
    );
    assert!(
        syslog.text().contains("[discovery]"),
        "the syslog copy was captured"
    );
    cli_support::assert_no_canary(TOKEN_SECRET, &o, &syslog, &root);
    eprintln!("trace canary sweep (join): 1 command, canary hits 0");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fault on the second, CA-verified fetch of cluster-info (a 503, a
/// server that never answers, a body over the 16 MiB limit) is a fault,
/// not a verdict: retryable, never `untrusted-cluster`, and the message
/// does not claim TLS verification failed.
#[test]
fn faults_on_the_verified_refetch_are_retryable_not_untrusted() {
    let dir = tmpdir("refetch");
    let cp = control_plane(&dir);
    let pin = ca_hash(&cp);
    for fault in ["503", "timeout", "endless"] {
        // the first (unverified) fetch is served normally
        let (api, _) = api_server(&cp, None);
        let kind = match fault {
            "503" => FaultKind::Status(503),
            "timeout" => FaultKind::Hang(std::time::Duration::from_secs(8)),
            _ => FaultKind::Endless,
        };
        api.fault(Fault::new("GET", CLUSTER_INFO, kind).skip(1));
        let root = dir.join(format!("worker-{fault}"));
        std::fs::create_dir_all(&root).unwrap();
        seed(&root, &worker_userdata(api.port(), &pin));
        let (systemctl, _) = fake_systemctl(&dir, &root);
        let o = firstboot(&root, &systemctl, "http://127.0.0.1:9/healthz", "3");
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{fault}: {err}");
        let st = status(&root);
        assert_eq!(st["phase"], "discovery", "{fault}: {st}");
        assert_ne!(st["errorClass"], "untrusted-cluster", "{fault}: {st}");
        assert_eq!(st["retryable"], true, "{fault}: {st}");
        let msg = st["error"].as_str().unwrap();
        assert!(msg.contains("verified fetch"), "{fault}: {msg}");
        assert!(!msg.contains("failed TLS verification"), "{fault}: {msg}");
        assert!(
            !root.join("etc/kubernetes/bootstrap-kubelet.conf").exists(),
            "{fault}: join material written"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The fake kubelet's kubelet.conf after its TLS bootstrap, in `root`:
/// `cp`'s admin.conf (a client certificate the stand-in knows), naming the
/// stand-in at `port` (the fake systemctl copies it).
fn kubelet_identity(cp: &Path, root: &Path, port: u16) {
    let admin = std::fs::read_to_string(cp.join("etc/kubernetes/admin.conf")).unwrap();
    let admin = admin.replace(
        "server: https://127.0.0.1:6443",
        &format!("server: https://127.0.0.1:{port}"),
    );
    assert!(admin.contains(&port.to_string()), "{admin}");
    std::fs::create_dir_all(root.join("etc/kubernetes")).unwrap();
    std::fs::write(root.join("etc/kubernetes/admin.conf"), admin).unwrap();
}

/// Issue 11 item 7: a worker joining a 1.32 or 1.33 cluster (kubeadm's
/// NodeLocalCRISocket off) annotates its Node with
/// `kubeadm.alpha.kubernetes.io/cri-socket`, as the node itself (through
/// kubelet.conf), as kubeadm's kubelet-wait-bootstrap does
/// (`cmd/kubeadm/app/cmd/phases/join/kubelet.go`, `AnnotateCRISocket`);
/// on 1.34 (the gate on) it does not. The strict stand-in records the patch.
#[test]
fn a_worker_on_1_32_and_1_33_annotates_its_node_with_the_cri_socket() {
    let dir = tmpdir("cri-socket");
    let cp = control_plane(&dir);
    for (minor, version, annotated) in [
        (32, "v1.32.5", true),
        (33, "v1.33.4", true),
        (34, "v1.34.1", false),
    ] {
        let (api, _) = api_server_with(&cp, Some("worker-1"), minor);
        let root = dir.join(format!("worker-{minor}"));
        std::fs::create_dir_all(&root).unwrap();
        let userdata = format!(
            "{}  cluster:\n    kubernetesVersion: {version}\n  node:\n    name: worker-1\n    criSocket: unix:///run/crio/crio.sock\n",
            worker_userdata(api.port(), &ca_hash(&cp)).replace("  node:\n    name: worker-1\n", "")
        );
        seed(&root, &userdata);
        kubelet_identity(&cp, &root, api.port());
        let (systemctl, _) = fake_systemctl(&dir, &root);
        let healthz = kubelet_healthz(0);
        let o = firstboot_with(
            &api,
            &root,
            &systemctl,
            &format!("{}/healthz", healthz.base()),
        );
        assert!(o.status.success(), "{version}: {}", text(&o.stderr));
        let node = "/api/v1/nodes/worker-1";
        let patches: Vec<serde_json::Value> = api
            .server
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path == node)
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        let stored = api.state().objects.get(node).cloned().unwrap_or_default();
        let ann = &stored["metadata"]["annotations"]["kubeadm.alpha.kubernetes.io/cri-socket"];
        if annotated {
            assert_eq!(
                patches,
                [serde_json::json!({"metadata": {"annotations": {
                    "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/crio/crio.sock"}}})],
                "{version}"
            );
            assert_eq!(ann, "unix:///run/crio/crio.sock", "{version}");
            // sent as the node, through kubelet.conf, not with the token
            let users: Vec<String> = api
                .log()
                .iter()
                .filter(|l| l.method == "PATCH" && l.url == node)
                .map(|l| l.user.clone())
                .collect();
            assert!(
                users.iter().all(|u| !u.starts_with("system:bootstrap:")),
                "{version}: {users:?}"
            );
        } else {
            assert!(patches.is_empty(), "{version}: {patches:?}");
            assert!(ann.is_null(), "{version}: {stored}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// kube-system/kubeadm-config as kubeadm init uploads it, for a 1.32
/// cluster with its own image repository, DNS domain and service subnet
/// (written here by hand, not by kubeboot).
fn kubeadm_config_132() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
        "data": {"ClusterConfiguration": "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nclusterName: kubernetes\nkubernetesVersion: v1.32.5\nimageRepository: mirror.example.com/k8s\nnetworking:\n  dnsDomain: corp.local\n  serviceSubnet: 10.100.0.0/16\n  podSubnet: 10.244.0.0/16\ncertificatesDir: /etc/kubernetes/pki\n"}
    })
}

/// Issue 11 item 11, worker: a worker whose userdata names no version
/// reads the cluster's kube-system/kubeadm-config (with the bootstrap
/// token, through kubeadm's `kubeadm:nodes-kubeadm-config` Role) and
/// writes its kubelet files for that cluster: 1.32 (the CRI socket as a
/// flag, no instance-config.yaml, the Node annotated), the cluster's
/// image repository for the pause image, its DNS domain and DNS address.
/// A worker that names another version keeps it, with a warning.
#[test]
fn a_worker_takes_version_repository_and_networking_from_kubeadm_config() {
    let dir = tmpdir("kubeadm-config");
    let cp = control_plane(&dir);
    for (name, extra, version) in [
        ("plain", "", "v1.32.5"),
        (
            "pinned",
            "  cluster:\n    kubernetesVersion: v1.33.4\n",
            "v1.33.4",
        ),
    ] {
        let (api, _) = api_server_with(&cp, Some("worker-1"), 32);
        api.insert(kubeadm_config_132());
        let root = dir.join(name);
        std::fs::create_dir_all(&root).unwrap();
        // a join patches the kubelet configuration it writes too
        let patches = dir.join(format!("patches-{name}"));
        std::fs::create_dir_all(&patches).unwrap();
        std::fs::write(
            patches.join("kubeletconfiguration+merge.yaml"),
            "maxPods: 77\n",
        )
        .unwrap();
        seed(
            &root,
            &format!(
                "{}{extra}  patches:\n    directory: {}\n",
                worker_userdata(api.port(), &ca_hash(&cp)),
                patches.display()
            ),
        );
        kubelet_identity(&cp, &root, api.port());
        let (systemctl, _) = fake_systemctl(&dir, &root);
        let healthz = kubelet_healthz(0);
        let o = firstboot_with(
            &api,
            &root,
            &systemctl,
            &format!("{}/healthz", healthz.base()),
        );
        let err = text(&o.stderr);
        assert!(o.status.success(), "{name}: {err}");
        // read with the token
        let kc = "/api/v1/namespaces/kube-system/configmaps/kubeadm-config";
        assert!(
            api.log().iter().any(|l| l.url == kc
                && l.status == 200
                && l.user == format!("system:bootstrap:{TOKEN_ID}")),
            "{name}: {:?}",
            api.log()
        );
        let flags =
            std::fs::read_to_string(root.join("var/lib/kubelet/kubeadm-flags.env")).unwrap();
        // pause 3.10 for both 1.32 and 1.33 (kubeadm's constants.PauseVersion)
        assert!(
            flags.contains("--pod-infra-container-image=mirror.example.com/k8s/pause:3.10"),
            "{name} ({version}): {flags}"
        );
        assert!(
            flags.contains(
                "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock"
            ),
            "{name}: {flags}"
        );
        assert!(
            !root.join("var/lib/kubelet/instance-config.yaml").exists(),
            "{name}"
        );
        let config: serde_json::Value = serde_norway::from_str(
            &std::fs::read_to_string(root.join("var/lib/kubelet/config.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(config["clusterDomain"], "corp.local", "{name}");
        assert_eq!(
            config["clusterDNS"],
            serde_json::json!(["10.100.0.10"]),
            "{name}"
        );
        assert_eq!(config["containerRuntimeEndpoint"], "", "{name}");
        assert_eq!(
            config["maxPods"], 77,
            "{name}: the kubeletconfiguration patch"
        );
        // 1.32 and 1.33: the Node carries the CRI socket
        assert!(
            api.server
                .requests()
                .iter()
                .any(|r| r.method == "PATCH" && r.path == "/api/v1/nodes/worker-1"),
            "{name}"
        );
        if name == "pinned" {
            assert!(
                err.contains("kubernetesVersion: this node's configuration says v1.33.4, the cluster's (kube-system/kubeadm-config) v1.32.5"),
                "{err}"
            );
        } else {
            assert!(err.contains("kubernetesVersion v1.32.5"), "{err}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 11 item 11, control plane: a control-plane join whose userdata
/// names no version renders its static pods for the cluster's 1.32 from
/// the cluster's image repository.
#[test]
fn a_control_plane_join_renders_the_clusters_version_and_repository() {
    let dir = tmpdir("cp-join-kubeadm-config");
    let (_cp, root, o, _api) =
        control_plane_join_with(&dir, CERT_KEY, 32, Some(kubeadm_config_132()));
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let pod: serde_json::Value = serde_norway::from_str(
            &std::fs::read_to_string(root.join(format!("etc/kubernetes/manifests/{c}.yaml")))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            format!("mirror.example.com/k8s/{c}:v1.32.5"),
            "{c}"
        );
    }
    let flags = std::fs::read_to_string(root.join("var/lib/kubelet/kubeadm-flags.env")).unwrap();
    assert!(
        flags.contains("mirror.example.com/k8s/pause:3.10"),
        "{flags}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
