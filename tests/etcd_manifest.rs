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
//! Debian ships etcd 3.4 (package etcd-server). Every flag kubeboot renders
//! for an etcd 3.5 image is also an etcd 3.4 flag (checked against
//! `etcd --help` here), so nothing is dropped; a flag this etcd does not
//! know fails the test by name. The 3.6 spellings
//! (`--feature-gates=InitialCorruptCheck=true`, `--watch-progress-notify-interval`)
//! are only rendered for Kubernetes >= 1.34 and are not run here. The pod's
//! probes use `/livez` and `/readyz`, which etcd 3.4 does not serve (404),
//! so readiness is taken from `/health` on the same metrics listener.
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

use etcd_support::{Kill, command, free_port, openssl, require, show, wait_healthy};
use node_common::TempRoot;
use pod_support::{
    container_command, create_host_dirs, etcd_args, flags, host_path, known_flags, read_pod,
    render, rewrite_ports,
};

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";

/// The node: control plane, etcd 3.5 image, everything on loopback.
const CONFIG: &str = "\
apiVersion: kubeboot.dev/v1alpha1
kind: NodeConfig
role: control-plane
cluster:
  name: etcd-test
  kubernetesVersion: v1.33.4
node:
  name: cp-etcd
  advertiseAddress: 127.0.0.1
";

fn etcdctl(endpoint: &str, ca: &Path, cert: Option<(&Path, &Path)>) -> Output {
    let mut c = command(ETCDCTL);
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg(format!("--cacert={}", ca.display()))
        .args(["--dial-timeout=10s", "--command-timeout=15s"]);
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
fn real_etcd_runs_the_rendered_pod_and_trusts_only_our_clients() {
    require(ETCD, "etcd-server");
    require(ETCDCTL, "etcd-client");
    let tmp = TempRoot::new("etcd-manifest");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let cfg = tmp.file("node.yaml", CONFIG);
    render(&cfg, &root);

    let spec = read_pod(&root, "etcd.yaml");
    let image = spec.containers[0].image.clone().unwrap_or_default();
    assert!(
        image.starts_with("registry.k8s.io/etcd:3.5."),
        "Kubernetes v1.33 must run an etcd 3.5 image, got {image}"
    );
    let cmd = container_command(&spec);
    assert_eq!(cmd[0], "etcd");
    let rendered = flags(&cmd);

    // Every flag must be one this etcd knows; none is dropped (see above).
    let known = known_flags(ETCD);
    let unknown: Vec<&String> = rendered.keys().filter(|n| !known.contains(n)).collect();
    assert!(
        unknown.is_empty(),
        "{ETCD} (Debian etcd-server) does not know the rendered flags {unknown:?}"
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
    let child = command(ETCD)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{ETCD} (Debian package etcd-server): {e}"));
    let mut etcd = Kill(child);
    wait_healthy(&mut etcd, metrics, &log, Duration::from_secs(90));
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    let pki = root.join("etc/kubernetes/pki");
    let etcd_ca = pki.join("etcd/ca.crt");
    let endpoint = rewrite_ports(&rendered["advertise-client-urls"], &ports);

    // Our health-check client.
    let ok = etcdctl(
        &endpoint,
        &etcd_ca,
        Some((
            &pki.join("etcd/healthcheck-client.crt"),
            &pki.join("etcd/healthcheck-client.key"),
        )),
    );
    assert!(ok.status.success(), "healthcheck-client: {}", show(&ok));
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
        &servers,
        &api_file("etcd-cafile"),
        Some((&api_file("etcd-certfile"), &api_file("etcd-keyfile"))),
    );
    assert!(ok.status.success(), "apiserver-etcd-client: {}", show(&ok));
    assert!(show(&ok).contains(" is healthy"), "{}", show(&ok));

    // A client certificate from another CA is refused at the TLS handshake.
    let (crt, key) = rogue_client(&tmp.path().join("rogue"));
    let bad = etcdctl(&endpoint, &etcd_ca, Some((&crt, &key)));
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
    let none = etcdctl(&endpoint, &etcd_ca, None);
    assert!(
        !none.status.success(),
        "a client without a cert was accepted: {}",
        show(&none)
    );

    let l = logs();
    assert!(!l.contains("flag provided but not defined"), "{l}");
    drop(etcd);
}
