//! What a kubeadm user types and gets (issue 11): kubeadm configs through
//! the `kubeboot` binary, the results read back with real tools (kubectl).

mod cli_support;

use cli_support::{kubeboot, text};
use std::path::Path;
use std::process::Command;

fn tmpdir(name: &str) -> std::path::PathBuf {
    cli_support::tmpdir("kubeadm-compat", name)
}

/// The server of a kubeconfig's current cluster, as kubectl reads it.
fn kubectl_server(kubeconfig: &Path) -> String {
    let o = Command::new("kubectl")
        .args(["config", "view", "--kubeconfig"])
        .arg(kubeconfig)
        .args(["-o", "jsonpath={.clusters[0].cluster.server}"])
        .output()
        .expect("kubectl");
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}

fn init_config(version: &str, gates: &str) -> String {
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration: {{name: cp-1}}
localAPIEndpoint: {{advertiseAddress: 10.0.0.10, bindPort: 6443}}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: {version}
controlPlaneEndpoint: lb.example.test:6443
{gates}"
    )
}

/// Issue 11 item 6: init's kubelet.conf follows kubeadm's
/// ControlPlaneKubeletLocalMode: off in 1.32 (the control-plane endpoint),
/// on from 1.33 (this node's API server); a featureGates entry overrides.
#[test]
fn kubelet_conf_endpoint_follows_version_and_gate() {
    let dir = tmpdir("kubelet-endpoint");
    let cases = [
        ("v1.32.5", "", "https://lb.example.test:6443"),
        ("v1.33.4", "", "https://10.0.0.10:6443"),
        ("v1.34.1", "", "https://10.0.0.10:6443"),
        (
            "v1.32.5",
            "featureGates: {ControlPlaneKubeletLocalMode: true}\n",
            "https://10.0.0.10:6443",
        ),
        (
            "v1.34.1",
            "featureGates: {ControlPlaneKubeletLocalMode: false}\n",
            "https://lb.example.test:6443",
        ),
    ];
    for (i, (version, gates, want)) in cases.iter().enumerate() {
        let cfg = dir.join(format!("c{i}.yaml"));
        std::fs::write(&cfg, init_config(version, gates)).unwrap();
        let root = dir.join(format!("root{i}"));
        let o = kubeboot(&[
            "render",
            "--config",
            cfg.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let kc = root.join("etc/kubernetes/kubelet.conf");
        assert_eq!(&kubectl_server(&kc), want, "{version} {gates}");
        // the other kubeconfigs do not move
        assert_eq!(
            kubectl_server(&root.join("etc/kubernetes/admin.conf")),
            "https://lb.example.test:6443"
        );
        assert_eq!(
            kubectl_server(&root.join("etc/kubernetes/scheduler.conf")),
            "https://10.0.0.10:6443"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
