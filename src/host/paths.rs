//! Every host path kubeboot reads or writes, resolved under `--root`.
//!
//! No other module spells an absolute host path: they ask `Paths`.

use std::path::{Component, Path, PathBuf};

/// Host paths, resolved under a root directory (`/` on a real node).
#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    /// Paths under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Paths { root: root.into() }
    }

    /// The root directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves an absolute host path (e.g. `/etc/kubernetes/admin.conf`)
    /// under the root. `..` components are dropped so a path can never
    /// name something outside the root lexically; symlinks are handled by
    /// the writers in [`crate::host::fs`].
    pub fn host(&self, abs: impl AsRef<Path>) -> PathBuf {
        let mut out = self.root.clone();
        for c in abs.as_ref().components() {
            if let Component::Normal(part) = c {
                out.push(part);
            }
        }
        out
    }

    /// `/etc/kubernetes`.
    pub fn kubernetes_dir(&self) -> PathBuf {
        self.host("/etc/kubernetes")
    }
    /// `/etc/kubernetes/manifests`.
    pub fn manifests_dir(&self) -> PathBuf {
        self.host("/etc/kubernetes/manifests")
    }
    /// The certificate directory (`/etc/kubernetes/pki` by default).
    pub fn pki_dir(&self, certificates_dir: &str) -> PathBuf {
        self.host(certificates_dir)
    }
    /// `/var/lib/kubelet`.
    pub fn kubelet_dir(&self) -> PathBuf {
        self.host("/var/lib/kubelet")
    }
    /// `/var/lib/kubeboot` (status file and run-once marker).
    pub fn state_dir(&self) -> PathBuf {
        self.host("/var/lib/kubeboot")
    }
    /// `/var/lib/kubeboot/status.json`.
    pub fn status_file(&self) -> PathBuf {
        self.host("/var/lib/kubeboot/status.json")
    }
    /// `/etc/kubeboot/config.yaml`: the conventional config location.
    pub fn kubeboot_config(&self) -> PathBuf {
        self.host(KUBEBOOT_CONFIG_PATH)
    }
    /// `/proc/cmdline`.
    pub fn proc_cmdline(&self) -> PathBuf {
        self.host("/proc/cmdline")
    }

    /// `/proc` under the root: where host facts about the node are read.
    /// The rule: a command that acts on a node (firstboot, init, join,
    /// `config show`, `certs check-expiration`) reads `<root>/proc`, so a
    /// test root supplies its own facts; a command with no node to look at
    /// (`render` into an image tree, `config validate`) reads the running
    /// machine's `/proc` ([`Paths::this_machine_proc`]).
    pub fn proc(&self) -> PathBuf {
        self.host("/proc")
    }

    /// The running machine's `/proc` (see [`Paths::proc`] for when).
    pub fn this_machine_proc() -> &'static Path {
        Path::new("/proc")
    }

    /// A kubeconfig under `/etc/kubernetes` (`admin.conf`).
    pub fn kubeconfig(&self, file: &str) -> PathBuf {
        self.kubernetes_dir().join(file)
    }

    /// `/etc/kubernetes/kubelet.conf`.
    pub fn kubelet_conf(&self) -> PathBuf {
        self.kubeconfig("kubelet.conf")
    }

    /// `/etc/kubernetes/bootstrap-kubelet.conf`.
    pub fn bootstrap_kubelet_conf(&self) -> PathBuf {
        self.kubeconfig("bootstrap-kubelet.conf")
    }

    /// A file of the certificate directory (`ca.crt`, `etcd/ca.key`).
    pub fn pki_file(&self, certificates_dir: &str, file: &str) -> PathBuf {
        self.pki_dir(certificates_dir).join(file)
    }

    /// Where the kubelet keeps its rotating client certificate (cert and
    /// key in one file): [`KUBELET_CLIENT_CURRENT`].
    pub fn kubelet_client_current(&self) -> PathBuf {
        self.host(KUBELET_CLIENT_CURRENT)
    }

    /// `/var/lib/kubeboot/done`: the run-once marker.
    pub fn marker(&self) -> PathBuf {
        self.state_dir().join("done")
    }

    /// `/run/kubeboot`: kubeboot's runtime directory (config disk mounts).
    pub fn run_dir(&self) -> PathBuf {
        self.host("/run/kubeboot")
    }

    /// `path` with this root, for a write: a path this `Paths` resolved
    /// (under the root) is kept; any other is taken as a host path and
    /// resolved under the root, so the pair always matches.
    pub fn rooted(&self, path: impl AsRef<Path>) -> HostPath {
        let path = path.as_ref();
        let path = if path.starts_with(&self.root) {
            path.to_path_buf()
        } else {
            self.host(path)
        };
        HostPath {
            root: self.root.clone(),
            path,
        }
    }

    /// `/sys/fs/cgroup`.
    pub fn cgroup_dir(&self) -> PathBuf {
        self.host("/sys/fs/cgroup")
    }
}

/// The kubelet's rotating client certificate, as kubelet.conf names it.
pub const KUBELET_CLIENT_CURRENT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";

/// A path together with the root it lies under: what [`crate::host::fs::write_atomic`]
/// takes, so a write cannot be given a root that is not the path's own.
/// Built only by [`Paths::rooted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPath {
    root: PathBuf,
    path: PathBuf,
}

impl HostPath {
    /// The root (`--root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The full path, under the root.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where a kubeboot config file lives on a node (and inside envelopes).
pub const KUBEBOOT_CONFIG_PATH: &str = "/etc/kubeboot/config.yaml";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_stay_under_root() {
        let p = Paths::new("/tmp/r");
        assert_eq!(
            p.host("/etc/kubernetes"),
            PathBuf::from("/tmp/r/etc/kubernetes")
        );
        assert_eq!(p.host("/../../etc/x"), PathBuf::from("/tmp/r/etc/x"));
        assert_eq!(p.host("a/../b"), PathBuf::from("/tmp/r/a/b"));
    }
}
