//! The security-relevant settings of a rendered control plane, asserted by
//! hand, outside the golden files (which `KUBEBOOT_UPDATE_GOLDEN=1`
//! re-blesses in one step): a build that renders
//! `--authorization-mode=AlwaysAllow` or drops `NodeRestriction` fails here
//! even after someone re-blessed the goldens.
//!
//! The tree is rendered by the shipped binary for Kubernetes 1.32, 1.33 and
//! 1.34, and every YAML file is read by an independent parser (python3's
//! PyYAML, `yaml.safe_load`), not by kubeboot's types. The expected values
//! are kubeadm's (cmd/kubeadm/app/phases/controlplane/manifests.go,
//! phases/etcd/local.go, componentconfigs/kubelet.go; see
//! /work/shared/reference/kubeadm-facts.md §3-4).

#[path = "cli_support/mod.rs"]
mod cli_support;
#[path = "peer_support/mod.rs"]
mod peer_support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cli_support::{kubeboot, text, tmpdir};
use serde_json::Value;

const VERSIONS: [&str; 3] = ["v1.32.9", "v1.33.4", "v1.34.1"];

/// Renders a control plane for `version` under `dir/<version>`.
fn render(dir: &Path, version: &str) -> PathBuf {
    let cfg = dir.join(format!("{version}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode:\n  name: cp-1\n  advertiseAddress: 10.0.0.5\ncluster:\n  kubernetesVersion: {version}\n  podSubnet: 10.244.0.0/16\n"
        ),
    )
    .unwrap();
    let root = dir.join(version);
    let o = kubeboot(&[
        "render",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    root
}

/// Every file under `root` parsed by PyYAML, as JSON, by path relative to
/// `root`.
fn pyyaml(root: &Path, files: &[&str]) -> BTreeMap<String, Value> {
    let script = "import sys, json, yaml\nout = {}\nfor p in sys.argv[1:]:\n    with open(p) as f:\n        out[p] = yaml.safe_load(f)\njson.dump(out, sys.stdout, default=str)\n";
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(files.iter().map(|f| root.join(f)))
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let all: BTreeMap<String, Value> = serde_json::from_slice(&o.stdout).unwrap();
    all.into_iter()
        .map(|(k, v)| {
            let rel = Path::new(&k)
                .strip_prefix(root)
                .unwrap()
                .display()
                .to_string();
            (rel, v)
        })
        .collect()
}

/// A static pod's container command as flag → value (every flag once).
fn flags(pod: &Value, what: &str) -> (String, BTreeMap<String, String>) {
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{what}");
    let cmd: Vec<&str> = containers[0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut out = BTreeMap::new();
    for a in &cmd[1..] {
        let (k, v) = a
            .strip_prefix("--")
            .and_then(|a| a.split_once('='))
            .unwrap_or_else(|| panic!("{what}: {a} is not --flag=value"));
        assert!(
            out.insert(k.to_string(), v.to_string()).is_none(),
            "{what}: --{k} given twice"
        );
    }
    (cmd[0].to_string(), out)
}

fn flag<'a>(f: &'a BTreeMap<String, String>, what: &str, name: &str) -> &'a str {
    f.get(name)
        .unwrap_or_else(|| panic!("{what}: no --{name} in {f:?}"))
}

fn list(v: &str) -> Vec<&str> {
    v.split(',').collect()
}

const PKI: &str = "/etc/kubernetes/pki";

#[test]
fn control_plane_security_settings_by_hand() {
    if !peer_support::python_module("security_settings", "yaml", "pip install pyyaml") {
        return;
    }
    let dir = tmpdir("security", "settings");
    for version in VERSIONS {
        let root = render(&dir, version);
        let docs = pyyaml(
            &root,
            &[
                "etc/kubernetes/manifests/kube-apiserver.yaml",
                "etc/kubernetes/manifests/kube-controller-manager.yaml",
                "etc/kubernetes/manifests/kube-scheduler.yaml",
                "etc/kubernetes/manifests/etcd.yaml",
                "var/lib/kubelet/config.yaml",
            ],
        );
        let doc = |f: &str| &docs[&format!("etc/kubernetes/manifests/{f}.yaml")];

        // kube-apiserver
        let w = format!("{version} kube-apiserver");
        let (bin, api) = flags(doc("kube-apiserver"), &w);
        assert_eq!(bin, "kube-apiserver");
        let modes = list(flag(&api, &w, "authorization-mode"));
        assert_eq!(modes, ["Node", "RBAC"], "{w}");
        assert!(
            list(flag(&api, &w, "enable-admission-plugins")).contains(&"NodeRestriction"),
            "{w}"
        );
        assert!(!api.contains_key("disable-admission-plugins"), "{w}");
        // kubeadm leaves anonymous-auth at its default (true: the probes on
        // /livez and anonymous cluster-info discovery rely on it, and RBAC
        // limits what system:anonymous may read)
        assert!(!api.contains_key("anonymous-auth"), "{w}: {api:?}");
        assert_eq!(flag(&api, &w, "client-ca-file"), format!("{PKI}/ca.crt"));
        assert_eq!(
            flag(&api, &w, "kubelet-client-certificate"),
            format!("{PKI}/apiserver-kubelet-client.crt")
        );
        assert_eq!(
            flag(&api, &w, "kubelet-client-key"),
            format!("{PKI}/apiserver-kubelet-client.key")
        );
        assert_eq!(flag(&api, &w, "enable-bootstrap-token-auth"), "true");
        assert_eq!(
            flag(&api, &w, "tls-cert-file"),
            format!("{PKI}/apiserver.crt")
        );
        assert_eq!(
            flag(&api, &w, "tls-private-key-file"),
            format!("{PKI}/apiserver.key")
        );
        assert_eq!(
            flag(&api, &w, "requestheader-client-ca-file"),
            format!("{PKI}/front-proxy-ca.crt")
        );
        assert_eq!(
            flag(&api, &w, "requestheader-allowed-names"),
            "front-proxy-client"
        );
        assert_eq!(flag(&api, &w, "etcd-cafile"), format!("{PKI}/etcd/ca.crt"));
        assert_eq!(
            flag(&api, &w, "etcd-certfile"),
            format!("{PKI}/apiserver-etcd-client.crt")
        );
        assert!(
            flag(&api, &w, "etcd-servers")
                .split(',')
                .all(|u| u.starts_with("https://")),
            "{w}"
        );
        assert_eq!(
            flag(&api, &w, "service-account-key-file"),
            format!("{PKI}/sa.pub")
        );
        assert_eq!(
            flag(&api, &w, "service-account-signing-key-file"),
            format!("{PKI}/sa.key")
        );
        assert!(!api.contains_key("insecure-port") || api["insecure-port"] == "0");

        // kube-controller-manager
        let w = format!("{version} kube-controller-manager");
        let (bin, kcm) = flags(doc("kube-controller-manager"), &w);
        assert_eq!(bin, "kube-controller-manager");
        assert_eq!(flag(&kcm, &w, "use-service-account-credentials"), "true");
        assert_eq!(flag(&kcm, &w, "bind-address"), "127.0.0.1");
        assert_eq!(flag(&kcm, &w, "client-ca-file"), format!("{PKI}/ca.crt"));
        assert_eq!(flag(&kcm, &w, "root-ca-file"), format!("{PKI}/ca.crt"));
        assert_eq!(
            flag(&kcm, &w, "service-account-private-key-file"),
            format!("{PKI}/sa.key")
        );
        assert!(
            list(flag(&kcm, &w, "controllers")).contains(&"bootstrapsigner"),
            "{w}"
        );
        for k in [
            "authentication-kubeconfig",
            "authorization-kubeconfig",
            "kubeconfig",
        ] {
            assert_eq!(flag(&kcm, &w, k), "/etc/kubernetes/controller-manager.conf");
        }
        assert!(!kcm.contains_key("anonymous-auth"), "{w}");

        // kube-scheduler
        let w = format!("{version} kube-scheduler");
        let (_, sched) = flags(doc("kube-scheduler"), &w);
        assert_eq!(flag(&sched, &w, "bind-address"), "127.0.0.1");
        for k in [
            "authentication-kubeconfig",
            "authorization-kubeconfig",
            "kubeconfig",
        ] {
            assert_eq!(flag(&sched, &w, k), "/etc/kubernetes/scheduler.conf");
        }

        // etcd
        let w = format!("{version} etcd");
        let (bin, etcd) = flags(doc("etcd"), &w);
        assert_eq!(bin, "etcd");
        assert_eq!(flag(&etcd, &w, "client-cert-auth"), "true");
        assert_eq!(flag(&etcd, &w, "peer-client-cert-auth"), "true");
        assert_eq!(
            flag(&etcd, &w, "trusted-ca-file"),
            format!("{PKI}/etcd/ca.crt")
        );
        assert_eq!(
            flag(&etcd, &w, "peer-trusted-ca-file"),
            format!("{PKI}/etcd/ca.crt")
        );
        assert_eq!(
            flag(&etcd, &w, "cert-file"),
            format!("{PKI}/etcd/server.crt")
        );
        assert_eq!(
            flag(&etcd, &w, "key-file"),
            format!("{PKI}/etcd/server.key")
        );
        assert_eq!(
            flag(&etcd, &w, "peer-cert-file"),
            format!("{PKI}/etcd/peer.crt")
        );
        assert_eq!(
            flag(&etcd, &w, "peer-key-file"),
            format!("{PKI}/etcd/peer.key")
        );
        for k in [
            "listen-client-urls",
            "advertise-client-urls",
            "listen-peer-urls",
        ] {
            assert!(
                flag(&etcd, &w, k)
                    .split(',')
                    .all(|u| u.starts_with("https://")),
                "{w}: --{k} must be TLS"
            );
        }
        // the metrics listener is plain HTTP, on loopback only
        assert!(
            flag(&etcd, &w, "listen-metrics-urls")
                .split(',')
                .all(|u| u.starts_with("http://127.0.0.1:") || u.starts_with("http://[::1]:")),
            "{w}"
        );
        assert!(!etcd.contains_key("auto-tls") || etcd["auto-tls"] == "false");
        assert!(!etcd.contains_key("peer-auto-tls") || etcd["peer-auto-tls"] == "false");

        // the kubelet
        let w = format!("{version} kubelet config.yaml");
        let k = &docs["var/lib/kubelet/config.yaml"];
        assert_eq!(k["kind"], "KubeletConfiguration", "{w}");
        assert_eq!(k["authentication"]["anonymous"]["enabled"], false, "{w}");
        assert_eq!(k["authentication"]["webhook"]["enabled"], true, "{w}");
        assert_eq!(
            k["authentication"]["x509"]["clientCAFile"],
            format!("{PKI}/ca.crt"),
            "{w}"
        );
        assert_eq!(k["authorization"]["mode"], "Webhook", "{w}");
        assert_eq!(k["rotateCertificates"], true, "{w}");
        assert!(
            k.get("readOnlyPort").is_none_or(|p| p == 0),
            "{w}: readOnlyPort {}",
            k["readOnlyPort"]
        );

        check_modes(&root, version);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Private keys and kubeconfigs 0600, certificates 0644, manifests 0600,
/// the kubelet's config no wider than 0644; nothing group- or
/// world-writable; every file of the tree classified.
fn check_modes(root: &Path, version: &str) {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(root, &mut files);
    assert!(files.len() > 30, "{version}: {} files", files.len());
    for p in files {
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let want = if name.ends_with(".key") || name == "sa.pub" {
            Some(0o600)
        } else if name.ends_with(".crt") {
            Some(0o644)
        } else if (name.ends_with(".conf") && rel.starts_with("etc/kubernetes/"))
            || rel.starts_with("etc/kubernetes/manifests/")
        {
            // kubeconfigs and static pod manifests
            Some(0o600)
        } else {
            None
        };
        match want {
            Some(m) => assert_eq!(mode, m, "{version}: {rel} is {mode:o}"),
            None => assert!(
                mode & 0o133 == 0,
                "{version}: {rel} is {mode:o} (no more than 0644)"
            ),
        }
    }
}
