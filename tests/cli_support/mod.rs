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
