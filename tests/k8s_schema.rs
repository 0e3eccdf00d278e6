//! Every rendered static pod manifest and every API object body kubeboot
//! sends, validated strictly (unknown fields rejected) against the
//! Kubernetes OpenAPI schemas of 1.32, 1.33 and 1.34 shipped by PyPI
//! `kubernetes-validate` (its `kubernetes-json-schema/v1.3x.0-local-strict`
//! files), not by kubeboot's own types.
//!
//! The API bodies are captured from a real `kubeboot init` run (all the API
//! phases: upload-config, upload-certs, mark-control-plane,
//! bootstrap-token, addon) against a loopback object store: POST and PUT
//! bodies as they are; a merge-patch body with the apiVersion and kind its
//! URL names (a patch with a misspelt field fails like an object would).

#[path = "cli_support/mod.rs"]
mod cli_support;
#[path = "net_support/mod.rs"]
mod net_support;
#[path = "peer_support/mod.rs"]
mod peer_support;
#[path = "store_support/mod.rs"]
mod store_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use cli_support::{kubeboot, text, tmpdir};
use serde_json::{Value, json};

const VERSIONS: [(&str, &str); 3] = [
    ("v1.32.9", "1.32.0"),
    ("v1.33.4", "1.33.0"),
    ("v1.34.1", "1.34.0"),
];

const CERT_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// Validates `(label, object)` pairs against `version`'s strict schemas;
/// returns the failures as `label: message`.
fn validate(version: &str, objects: &[(String, Value)]) -> Vec<String> {
    let script = r#"
import json, sys, kubernetes_validate
req = json.load(sys.stdin)
out = []
for label, obj in req["objects"]:
    try:
        kubernetes_validate.validate(obj, req["version"], strict=True)
    except Exception as e:
        msg = getattr(e, "message", None) or str(e).splitlines()[0]
        path = "/".join(str(p) for p in getattr(e, "absolute_path", []) or [])
        out.append("%s: %s: %s (at %s)" % (label, type(e).__name__, msg, path))
json.dump(out, sys.stdout)
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let req = json!({"version": version, "objects": objects});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(&req).unwrap())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// apiVersion and kind of the object a URL path names.
fn gvk(path: &str) -> (String, String) {
    let p = path.split('?').next().unwrap();
    let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
    let (api_version, rest) = match parts[0] {
        "api" => (parts[1].to_string(), &parts[2..]),
        "apis" => (format!("{}/{}", parts[1], parts[2]), &parts[3..]),
        other => panic!("not an API path: {other} in {path}"),
    };
    let rest = if rest[0] == "namespaces" && rest.len() > 2 {
        &rest[2..]
    } else {
        rest
    };
    let kind = match rest[0] {
        "nodes" => "Node",
        "secrets" => "Secret",
        "configmaps" => "ConfigMap",
        "serviceaccounts" => "ServiceAccount",
        "services" => "Service",
        "deployments" => "Deployment",
        "daemonsets" => "DaemonSet",
        "roles" => "Role",
        "rolebindings" => "RoleBinding",
        "clusterroles" => "ClusterRole",
        "clusterrolebindings" => "ClusterRoleBinding",
        other => panic!("a resource this test does not know: {other} ({path})"),
    };
    (api_version, kind.to_string())
}

/// Renders a control plane for `version` under `dir`, then runs every API
/// phase of `kubeboot init` against an object store; returns the root and
/// the API bodies sent, labelled.
fn init_bodies(
    dir: &Path,
    version: &str,
    extra: &str,
) -> (std::path::PathBuf, Vec<(String, Value)>) {
    let root = dir.join(version);
    let render_cfg = dir.join(format!("render-{version}.yaml"));
    let config = |port: u16| {
        format!(
            "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\ncertificateKey: {CERT_KEY}\nnode:\n  name: cp-1\n  advertiseAddress: 127.0.0.1\n  bindPort: {port}\ncluster:\n  kubernetesVersion: {version}\n  podSubnet: 10.244.0.0/16\n{extra}"
        )
    };
    std::fs::write(&render_cfg, config(6443)).unwrap();
    let o = kubeboot(&[
        "render",
        "--config",
        render_cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "cp-1", "resourceVersion": "1", "labels": {"kubernetes.io/hostname": "cp-1"}}});
    let api = store_support::object_store(
        &root.join("etc/kubernetes/pki"),
        BTreeMap::from([("/api/v1/nodes/cp-1".to_string(), node)]),
    );
    let cfg = dir.join(format!("init-{version}.yaml"));
    std::fs::write(&cfg, config(api.port)).unwrap();
    // the kubeconfigs name the API server's port: render them again for it
    for f in [
        "admin.conf",
        "super-admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "kubelet.conf",
    ] {
        let _ = std::fs::remove_file(root.join("etc/kubernetes").join(f));
    }
    let o = kubeboot(&[
        "init",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--skip-phases",
        "preflight,etcd,control-plane,kubelet-start,wait-control-plane,kubelet-finalize,show-join-command",
    ]);
    assert!(o.status.success(), "{version}: {}", text(&o.stderr));
    let mut out = Vec::new();
    for (i, r) in api.requests().iter().enumerate() {
        if r.method == "GET" {
            continue;
        }
        let label = format!("{version} #{i} {} {}", r.method, r.path);
        let mut body: Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{label}: body is not JSON: {e}"));
        let (api_version, kind) = gvk(&r.path);
        match r.method.as_str() {
            "POST" | "PUT" => {
                assert_eq!(
                    (body["apiVersion"].as_str(), body["kind"].as_str()),
                    (Some(api_version.as_str()), Some(kind.as_str())),
                    "{label}: the body names another type than the URL"
                );
            }
            "PATCH" => {
                body["apiVersion"] = json!(api_version);
                body["kind"] = json!(kind);
            }
            m => panic!("{label}: unexpected method {m}"),
        }
        out.push((label, body));
    }
    (root, out)
}

#[test]
fn manifests_and_api_bodies_validate_strictly_for_1_32_to_1_34() {
    if !peer_support::python_module(
        "k8s_schema",
        "kubernetes_validate",
        "pip install kubernetes-validate",
    ) {
        return;
    }
    let dir = tmpdir("schema", "all");
    for (version, schema) in VERSIONS {
        let (root, bodies) = init_bodies(&dir, version, "");
        let methods: Vec<&str> = bodies
            .iter()
            .map(|(l, _)| l.split(' ').nth(2).unwrap())
            .collect();
        // every API phase sent something: creates, the Node patch, ...
        assert!(
            bodies.len() >= 30 && methods.contains(&"PATCH"),
            "{version}: {} bodies {methods:?}",
            bodies.len()
        );
        let kinds: std::collections::BTreeSet<&str> = bodies
            .iter()
            .map(|(_, b)| b["kind"].as_str().unwrap())
            .collect();
        for k in [
            "ConfigMap",
            "Secret",
            "Node",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "ServiceAccount",
            "Service",
            "Deployment",
            "DaemonSet",
        ] {
            assert!(kinds.contains(k), "{version}: no {k} sent: {kinds:?}");
        }
        let mut objects = bodies;
        for m in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "etcd",
        ] {
            let p = root.join(format!("etc/kubernetes/manifests/{m}.yaml"));
            let pod: Value = serde_norway::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            objects.push((format!("{version} {m}.yaml"), pod));
        }
        let failures = validate(schema, &objects);
        assert!(
            failures.is_empty(),
            "{version}: {} of {} objects invalid:\n{}",
            failures.len(),
            objects.len(),
            failures.join("\n")
        );
        // and the check can fail: a misspelt field is refused
        let mut bad = objects[0].1.clone();
        bad["metadata"]["lables"] = json!({"a": "b"});
        assert_eq!(
            validate(schema, &[("misspelt".into(), bad)]).len(),
            1,
            "{version}: strict validation must refuse an unknown field"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 11 item 4: the user's KubeletConfiguration and
/// KubeProxyConfiguration reach the kubelet-config and kube-proxy
/// ConfigMaps merged over kubeadm's defaults, and every body still passes
/// strict validation.
#[test]
fn component_configs_reach_their_config_maps_and_validate() {
    if !peer_support::python_module(
        "k8s_schema",
        "kubernetes_validate",
        "pip install kubernetes-validate",
    ) {
        return;
    }
    let dir = tmpdir("schema", "components");
    let patches = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/patches/input");
    let extra = format!(
        "patches:\n  directory: {}\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nmaxPods: 42\n---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nipvs: {{strictARP: true}}\n",
        patches.display()
    );
    let (_, bodies) = init_bodies(&dir, "v1.34.1", &extra);
    let config_map = |name: &str| -> Value {
        bodies
            .iter()
            .find(|(_, b)| b["kind"] == "ConfigMap" && b["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no ConfigMap {name} sent"))
            .1
            .clone()
    };
    let kubelet: Value = serde_norway::from_str(
        config_map("kubelet-config")["data"]["kubelet"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(kubelet["maxPods"], 42);
    assert_eq!(kubelet["authorization"]["mode"], "Webhook");
    // the node's kubeletconfiguration patches stay on the node (kubeadm
    // uploads its component config, not the patched file)
    assert_eq!(kubelet["clusterDNS"], json!(["10.96.0.10"]));
    assert!(kubelet.get("evictionHard").is_none(), "{kubelet}");
    // corednsdeployment.yaml: a strategic merge into the coredns container
    let coredns = bodies
        .iter()
        .find(|(_, b)| b["kind"] == "Deployment" && b["metadata"]["name"] == "coredns")
        .expect("the CoreDNS Deployment")
        .1
        .clone();
    let c = &coredns["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "coredns");
    assert_eq!(c["resources"]["limits"]["memory"], "300Mi");
    assert_eq!(c["resources"]["requests"]["memory"], "70Mi");
    let proxy: Value = serde_norway::from_str(
        config_map("kube-proxy")["data"]["config.conf"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(proxy["mode"], "ipvs");
    assert_eq!(proxy["ipvs"]["strictARP"], true);
    // kubeadm's values the user did not set are still there
    assert_eq!(proxy["bindAddress"], "0.0.0.0");
    assert_eq!(proxy["clusterCIDR"], "10.244.0.0/16");
    assert_eq!(
        proxy["clientConnection"]["kubeconfig"],
        "/var/lib/kube-proxy/kubeconfig.conf"
    );
    let failures = validate("1.34.0", &bodies);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 11 item 4, patches: `render --patches DIR` with strategic, json
/// and merge patches for kube-scheduler and kubeletconfiguration gives the
/// files written by hand in tests/patches/expected (kubeadm's manifest and
/// kubelet config with the patches applied as kubeadm applies them), and
/// every patched manifest still validates strictly.
#[test]
fn patched_manifests_match_hand_written_files_and_validate() {
    let dir = tmpdir("schema", "patches");
    let cfg = dir.join("cp.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode: {name: cp-1, advertiseAddress: 10.0.0.10}\ncluster: {kubernetesVersion: v1.34.1}\n",
    )
    .unwrap();
    let patches = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/patches");
    let root = dir.join("root");
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubeboot"));
    c.args(["render", "--config"])
        .arg(&cfg)
        .arg("--root")
        .arg(&root)
        .arg("--patches")
        .arg(patches.join("input"));
    for (k, _) in std::env::vars() {
        if k.to_ascii_lowercase().ends_with("_proxy") {
            c.env_remove(k);
        }
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    // README.md is skipped with a warning, as kubeadm skips it
    assert!(text(&o.stderr).contains("README.md"), "{}", text(&o.stderr));
    let yaml = |p: &Path| -> Value {
        serde_norway::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    for (got, want) in [
        (
            "etc/kubernetes/manifests/kube-scheduler.yaml",
            "expected/kube-scheduler.yaml",
        ),
        ("var/lib/kubelet/config.yaml", "expected/config.yaml"),
    ] {
        assert_eq!(
            yaml(&root.join(got)),
            yaml(&patches.join(want)),
            "{got} differs from tests/patches/{want}"
        );
    }
    if !peer_support::python_module(
        "k8s_schema",
        "kubernetes_validate",
        "pip install kubernetes-validate",
    ) {
        return;
    }
    let objects: Vec<(String, Value)> = [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "etcd",
    ]
    .iter()
    .map(|m| {
        let p = root.join(format!("etc/kubernetes/manifests/{m}.yaml"));
        (m.to_string(), yaml(&p))
    })
    .collect();
    let failures = validate("1.34.0", &objects);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(&dir).unwrap();
}
