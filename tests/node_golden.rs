//! Golden trees: a control-plane node and a worker rendered into temp
//! roots (manifests + kubelet files), compared with `tests/golden/<case>/`.
//! Regenerate with `KUBEBOOT_UPDATE_GOLDEN=1 cargo test --test node_golden`.
//!
//! These files hold no keys, serials or timestamps (the PKI and kubeconfig
//! trees, which do, are compared by their own tests), so they are compared
//! byte for byte, together with every file's mode.

#[path = "node_common/mod.rs"]
mod node_common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kubeboot::host::Paths;
use kubeboot::host::detect::Detected;
use kubeboot::host::fs::Sync;
use kubeboot::manifests::{self, HostInputs};
use node_common::{TempRoot, settings};

/// Every file under `root` as (relative path → (mode, contents)).
fn tree(root: &Path) -> BTreeMap<String, (u32, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                out.insert(rel, (mode, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out
}

fn render(s: &kubeboot::config::model::Settings, root: &Path) -> Vec<PathBuf> {
    let paths = Paths::new(root);
    // The host inputs are pinned so the golden tree does not depend on
    // this machine: one distribution CA directory, one proxy variable.
    let host = HostInputs {
        ca_trust_dirs: vec!["/usr/share/ca-certificates".into()],
        proxy_env: vec![kubeboot::config::model::EnvVar {
            name: "NO_PROXY".into(),
            value: "10.0.0.0/8".into(),
        }],
    };
    let det = Detected {
        hostname: Some(s.node.name.clone()),
        ..Default::default()
    };
    let mut files =
        manifests::write_pods(&paths, &manifests::render_all(s, &host), Sync::Deferred).unwrap();
    files.extend(kubeboot::kubelet::write_all(s, &det, &paths, Sync::Deferred, None).unwrap());
    files
}

fn compare(case: &str, s: &kubeboot::config::model::Settings) {
    let root = TempRoot::new(&format!("golden-{case}"));
    render(s, root.path());
    let got = tree(root.path());
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case);
    if std::env::var_os("KUBEBOOT_UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&golden);
        let mut modes = String::new();
        for (rel, (mode, body)) in &got {
            let p = golden.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, body).unwrap();
            modes.push_str(&format!("{mode:04o} {rel}\n"));
        }
        std::fs::write(golden.join("MODES"), modes).unwrap();
    }
    let want_modes = std::fs::read_to_string(golden.join("MODES")).unwrap();
    let got_modes: String = got
        .iter()
        .map(|(rel, (mode, _))| format!("{mode:04o} {rel}\n"))
        .collect();
    assert_eq!(
        got_modes, want_modes,
        "file list or modes differ from tests/golden/{case}/MODES"
    );
    for (rel, (_, body)) in &got {
        let want = std::fs::read_to_string(golden.join(rel)).unwrap();
        assert_eq!(*body, want, "{rel} differs from tests/golden/{case}/{rel}");
    }
}

#[test]
fn golden_control_plane() {
    compare("control-plane", &settings::control_plane());
}

#[test]
fn golden_worker() {
    compare("worker", &settings::worker());
}

#[test]
fn every_written_manifest_is_a_pod() {
    let root = TempRoot::new("golden-roundtrip");
    let files = render(&settings::control_plane(), root.path());
    let mut n = 0;
    for f in files
        .iter()
        .filter(|f| f.parent().unwrap().ends_with("manifests"))
    {
        let text = std::fs::read_to_string(f).unwrap();
        let pod: k8s_openapi::api::core::v1::Pod = serde_norway::from_str(&text).unwrap();
        let stem = f.file_stem().unwrap().to_str().unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some(stem));
        assert_eq!(pod.spec.unwrap().containers[0].name, stem);
        n += 1;
    }
    assert_eq!(n, 4);
}

#[test]
fn worker_gets_an_empty_private_manifests_dir() {
    let root = TempRoot::new("golden-worker-dir");
    assert!(
        render(&settings::worker(), root.path())
            .iter()
            .all(|f| !f.starts_with(root.path().join("etc")))
    );
    let dir = root.path().join("etc/kubernetes/manifests");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}
