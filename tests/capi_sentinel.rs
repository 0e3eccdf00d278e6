//! Cluster API userdata: the shipped worker-join example (its API server
//! and pin pointed at a loopback stand-in) joins through the real
//! `kubeboot firstboot`, and kubeboot then writes Cluster API's sentinel
//! `/run/cluster-api/bootstrap-success.complete` with the content
//! `success` (the bootstrap contract's "Sentinel file"; KubeVirt's provider
//! compares the content). A failed join writes no sentinel.

mod cli_support;

mod net_support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cli_support::{fake_systemctl, firstboot_args, kubeboot, render_control_plane, seed, text};
use net_support::{Reply, Server, ok, tls_config};

const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
const SENTINEL: &str = "run/cluster-api/bootstrap-success.complete";

/// The CAPI worker example, joining `127.0.0.1:<port>` with the pin `pin`.
fn capi_worker(port: u16, pin: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("image/examples/capi-kubeadm-join-worker.cloud-config.yaml");
    let text = std::fs::read_to_string(p).unwrap();
    let example_pin = "sha256:a5c1107a20290cfd98e8ec46a53f94c3894f0a6fef4d0628c47f00e6a43bd18b";
    assert!(text.contains("10.0.0.10:6443") && text.contains(example_pin));
    text.replace("10.0.0.10:6443", &format!("127.0.0.1:{port}"))
        .replace(example_pin, pin)
}

fn join(dir: &Path, root: &Path, api_up: bool) -> std::process::Output {
    let cp = render_control_plane(dir);
    let pki = cp.join("etc/kubernetes/pki");
    let ca = std::fs::read(pki.join("ca.crt")).unwrap();
    // cluster-info names the server, so it is set once the port is known
    let body: Arc<Mutex<Vec<u8>>> = Arc::default();
    let served = body.clone();
    let api = Server::https(
        tls_config(&pki.join("apiserver.crt"), &pki.join("apiserver.key"), None),
        move |req, _| match req.path.as_str() {
            CLUSTER_INFO => ok(&served.lock().unwrap()),
            _ => Reply::Respond(404, vec![], b"{}".to_vec()),
        },
    );
    let port = if api_up {
        api.port
    } else {
        net_support::closed_port()
    };
    *body.lock().unwrap() = cli_support::cluster_info(&ca, port, "abcdef", "0123456789abcdef");
    seed(root, &capi_worker(port, &cli_support::ca_hash(&cp)));
    let systemctl = fake_systemctl(&dir.join("systemctl"), root, &dir.join("sc.log"), false);
    let healthz = Server::http(|_, _| ok(b"ok"));
    let args = firstboot_args(
        root,
        &systemctl,
        &format!("{}/healthz", healthz.base()),
        "20",
        "2",
    );
    kubeboot(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_cluster_api_join_writes_the_sentinel() {
    use std::os::unix::fs::PermissionsExt;
    let dir = cli_support::tmpdir("capi", "sentinel");
    let root = dir.join("worker");
    let o = join(&dir, &root, true);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let sentinel = root.join(SENTINEL);
    assert_eq!(std::fs::read(&sentinel).unwrap(), b"success");
    assert_eq!(
        std::fs::metadata(&sentinel).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(text(&o.stderr).contains("bootstrap-success.complete"));
    let st = std::fs::read_to_string(root.join("var/lib/kubeboot/status.json")).unwrap();
    assert!(st.contains("\"result\": \"success\""), "{st}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_cluster_api_join_writes_no_sentinel() {
    let dir = cli_support::tmpdir("capi", "failed");
    let root = dir.join("worker");
    let o = join(&dir, &root, false);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(!root.join(SENTINEL).exists());
    assert!(!root.join("var/lib/kubeboot/done").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
