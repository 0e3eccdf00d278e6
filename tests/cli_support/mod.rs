//! Helpers shared by the tests that drive the `kubeboot` binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the kubeboot binary built for these tests.
pub fn kubeboot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args(args)
        .output()
        .expect("run kubeboot")
}

/// Output bytes as text.
pub fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// A fresh, empty directory for one test (`kubeboot-<prefix>-<name>-<pid>`).
pub fn tmpdir(prefix: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kubeboot-{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A control plane rendered by the binary into `dir/cp` (node cp-1,
/// advertising 127.0.0.1), for its certificates and kubeconfigs.
pub fn render_control_plane(dir: &std::path::Path) -> PathBuf {
    let cfg = dir.join("cp.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode:\n  name: cp-1\n  advertiseAddress: 127.0.0.1\n",
    )
    .unwrap();
    let root = dir.join("cp");
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

/// Puts `userdata` where a NoCloud image carries it, under `root`.
pub fn seed(root: &std::path::Path, userdata: &str) {
    let p = root.join("var/lib/cloud/seed/nocloud/user-data");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, userdata).unwrap();
}
