//! Issue 11 item 4: kubeadm's component configs (KubeletConfiguration,
//! KubeProxyConfiguration) and patches (`patches.directory`, `--patches`),
//! through the `kubeboot` binary. Expected values are written by hand from
//! kubeadm's behaviour (`cmd/kubeadm/app/componentconfigs/kubelet.go`,
//! `cmd/kubeadm/app/util/patches/patches.go`), never produced by kubeboot.

mod cli_support;

use cli_support::{kubeboot, text};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    cli_support::tmpdir("component-patches", name)
}

const INIT: &str = "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration: {name: cp-1}
localAPIEndpoint: {advertiseAddress: 10.0.0.10, bindPort: 6443}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.34.1
networking: {podSubnet: 10.244.0.0/16, dnsDomain: corp.local}
";

fn render(dir: &Path, name: &str, config: &str, extra: &[&str]) -> (PathBuf, std::process::Output) {
    let cfg = dir.join(format!("{name}.yaml"));
    std::fs::write(&cfg, config).unwrap();
    let root = dir.join(name);
    let mut args = vec![
        "render",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = kubeboot(&args);
    (root, o)
}

fn yaml_file(path: &Path) -> Value {
    let t = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&t).unwrap()
}

/// A KubeletConfiguration document is merged over kubeadm's defaults:
/// what the user sets wins, nested defaults the user did not touch stay,
/// rotateCertificates stays true (kubeadm forces it), the hardening
/// defaults stay unless explicitly set, and differences get kubeadm's
/// warnings.
#[test]
fn kubelet_configuration_is_merged_over_kubeadm_defaults() {
    let dir = tmpdir("kubelet");
    let config = format!(
        "{INIT}---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
maxPods: 42
cgroupDriver: cgroupfs
rotateCertificates: false
serializeImagePulls: false
authentication:
  webhook: {{cacheTTL: 2m0s}}
evictionHard: {{memory.available: 200Mi}}
registerWithTaints: [{{key: dedicated, value: infra, effect: NoSchedule}}]
"
    );
    let (root, o) = render(&dir, "merged", &config, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let c = yaml_file(&root.join("var/lib/kubelet/config.yaml"));
    // the user's values
    assert_eq!(c["maxPods"], 42);
    assert_eq!(c["cgroupDriver"], "cgroupfs");
    assert_eq!(c["serializeImagePulls"], false);
    assert_eq!(c["evictionHard"], json!({"memory.available": "200Mi"}));
    assert_eq!(
        c["registerWithTaints"],
        json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}])
    );
    assert_eq!(c["authentication"]["webhook"]["cacheTTL"], "2m0s");
    // kubeadm's, kept beside them
    assert_eq!(c["authentication"]["webhook"]["enabled"], true);
    assert_eq!(c["authentication"]["anonymous"]["enabled"], false);
    assert_eq!(
        c["authentication"]["x509"]["clientCAFile"],
        "/etc/kubernetes/pki/ca.crt"
    );
    assert_eq!(c["authorization"]["mode"], "Webhook");
    assert_eq!(c["clusterDomain"], "corp.local");
    assert_eq!(c["clusterDNS"], json!(["10.96.0.10"]));
    assert_eq!(c["staticPodPath"], "/etc/kubernetes/manifests");
    assert_eq!(c["rotateCertificates"], true);
    assert_eq!(c["apiVersion"], "kubelet.config.k8s.io/v1beta1");
    assert_eq!(c["kind"], "KubeletConfiguration");
    let err = text(&o.stderr);
    assert!(
        err.contains("KubeletConfiguration.rotateCertificates"),
        "{err}"
    );

    // explicit choices against kubeadm's hardening are kept, with a warning
    let config = format!(
        "{INIT}---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication: {{anonymous: {{enabled: true}}}}
authorization: {{mode: AlwaysAllow}}
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 127.0.0.1
"
    );
    let (root, o) = render(&dir, "open", &config, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let c = yaml_file(&root.join("var/lib/kubelet/config.yaml"));
    assert_eq!(c["authentication"]["anonymous"]["enabled"], true);
    assert_eq!(c["authorization"]["mode"], "AlwaysAllow");
    assert_eq!(c["authentication"]["webhook"]["enabled"], true);
    let err = text(&o.stderr);
    for f in [
        "KubeletConfiguration.authentication.anonymous.enabled",
        "KubeletConfiguration.authorization.mode",
        "KubeProxyConfiguration.bindAddress",
    ] {
        assert!(err.contains(f), "no warning for {f}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Unknown fields and mistyped values in component configs are errors
/// (exit 2) naming the field, with a did-you-mean; nothing is written.
#[test]
fn component_config_typos_are_errors_naming_the_field() {
    let dir = tmpdir("typos");
    let config = format!(
        "{INIT}---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
maxPod: 42
syncFrequency: often
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
ipvs: {{strictArp: true}}
"
    );
    let (root, o) = render(&dir, "typos", &config, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("KubeletConfiguration.maxPod: not a field") && err.contains("\"maxPods\""),
        "{err}"
    );
    assert!(
        err.contains("KubeletConfiguration.syncFrequency: expected a Go duration"),
        "{err}"
    );
    assert!(
        err.contains("KubeProxyConfiguration.ipvs.strictArp: not a field")
            && err.contains("\"strictARP\""),
        "{err}"
    );
    assert!(!root.join("var/lib/kubelet/config.yaml").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// kubeadm join reads only its JoinConfiguration from the file: component
/// configs there are ignored (with a warning), the cluster's are used.
#[test]
fn join_ignores_component_configs_with_a_warning() {
    let dir = tmpdir("join");
    let cfg = dir.join("join.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
nodeRegistration: {name: w-1}
discovery:
  bootstrapToken:
    apiServerEndpoint: 10.0.0.10:6443
    token: abcdef.0123456789abcdef
    unsafeSkipCAVerification: true
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
maxPods: 42
",
    )
    .unwrap();
    let o = kubeboot(&["config", "validate", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        out.contains("KubeletConfiguration") && out.contains("kube-system/kubelet-config"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A patch file that names no target, has an unknown patch type, or does
/// not apply stops the node with exit 2 naming the file, before anything
/// is written; so does a patches directory that is not there.
#[test]
fn bad_patches_are_errors_naming_the_file() {
    let dir = tmpdir("bad-patches");
    let cases: [(&str, &str, &str); 7] = [
        ("kube-apiservr.yaml", "spec: {}\n", "not a patch target"),
        (
            "etcd+strategik.yaml",
            "spec: {}\n",
            "unknown or missing patch type",
        ),
        (
            "kube-scheduler+json.json",
            r#"[{"op": "remove", "path": "/spec/nosuchfield"}]"#,
            "could not be applied",
        ),
        (
            "kube-apiserver.yaml",
            "spec:\n  containers:\n  - image: registry.example/kube-apiserver:v1\n",
            "\"name\"",
        ),
        (
            "kube-controller-manager+merge.yaml",
            "spec: {containers: []}\n",
            "has no spec.containers",
        ),
        (
            "kubeletconfiguration+merge.yaml",
            "maxPod: 10\n",
            "KubeletConfiguration.maxPod: not a field",
        ),
        // the CoreDNS Deployment is only sent by the addon phase, long after
        // the files: its patch is checked before anything is written too
        (
            "corednsdeployment+json.json",
            r#"[{"op": "replace", "path": "/spec/nosuchfield", "value": 1}]"#,
            "could not be applied",
        ),
    ];
    for (i, (file, body, want)) in cases.iter().enumerate() {
        let patches = dir.join(format!("p{i}"));
        std::fs::create_dir_all(&patches).unwrap();
        std::fs::write(patches.join(file), body).unwrap();
        let (root, o) = render(
            &dir,
            &format!("r{i}"),
            INIT,
            &["--patches", patches.to_str().unwrap()],
        );
        assert_eq!(o.status.code(), Some(2), "{file}: {}", text(&o.stderr));
        let err = text(&o.stderr);
        assert!(err.contains(file) && err.contains(want), "{file}: {err}");
        assert!(
            !root.join("etc/kubernetes/manifests").exists(),
            "{file}: something was written"
        );
    }
    // a CoreDNS patch may not turn the Deployment into another object
    for (i, op) in [
        r#"{"op": "replace", "path": "/kind", "value": "DaemonSet"}"#,
        r#"{"op": "replace", "path": "/metadata/name", "value": "coredns-2"}"#,
    ]
    .iter()
    .enumerate()
    {
        let patches = dir.join(format!("dns{i}"));
        std::fs::create_dir_all(&patches).unwrap();
        std::fs::write(
            patches.join("corednsdeployment+json.json"),
            format!("[{op}]"),
        )
        .unwrap();
        let (root, o) = render(
            &dir,
            &format!("dns-r{i}"),
            INIT,
            &["--patches", patches.to_str().unwrap()],
        );
        assert_eq!(o.status.code(), Some(2), "{op}: {}", text(&o.stderr));
        let err = text(&o.stderr);
        assert!(
            err.contains(patches.to_str().unwrap())
                && err.contains("no longer the Deployment coredns"),
            "{op}: {err}"
        );
        assert!(!root.join("etc/kubernetes/manifests").exists(), "{op}");
    }
    // the config's patches.directory, missing
    let config = INIT.replacen(
        "nodeRegistration: {name: cp-1}",
        "nodeRegistration: {name: cp-1}\npatches: {directory: /nonexistent/kubeboot-patches}",
        1,
    );
    let (_, o) = render(&dir, "missing", &config, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("InitConfiguration.patches.directory")
            && err.contains("/nonexistent/kubeboot-patches"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
