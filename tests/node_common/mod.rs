//! Helpers shared by the `node_*` integration tests. Each test crate
//! includes this with `#[path = "node_common/mod.rs"] mod node_common;`.

#![allow(dead_code)]

/// The one set of example settings (`kubeboot::config::examples`).
#[allow(unused_imports)]
pub use kubeboot::config::examples as settings;

use std::path::{Path, PathBuf};

/// A temporary root directory, removed on drop.
pub struct TempRoot(PathBuf);

impl TempRoot {
    /// A fresh, empty directory named after `name` and the process.
    pub fn new(name: &str) -> TempRoot {
        let d = std::env::temp_dir().join(format!("kubeboot-node-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempRoot(d)
    }
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// Writes `body` to `rel` (relative to the root), creating parents.
    pub fn file(&self, rel: &str, body: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        p
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
