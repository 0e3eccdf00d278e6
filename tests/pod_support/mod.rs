//! Helpers for tests that run the static pods `kubeboot render` wrote as
//! plain host processes (`etcd_manifest`, `e2e_real`): render through the
//! shipped binary, read a manifest as a `Pod`, map every container path to
//! the host through the pod's own `volumeMounts` → `hostPath` volumes
//! (under the test's root), create the `hostPath`s as the kubelet would,
//! and rewrite URL ports. Each test includes this with
//! `#[path = "pod_support/mod.rs"] mod pod_support;` beside
//! `#[path = "etcd_support/mod.rs"] mod etcd_support;` (used here).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::{Pod, PodSpec};

use crate::etcd_support::command;

/// The command-line flags of `etcd.yaml` whose values are host files or
/// directories.
pub const ETCD_PATH_FLAGS: [&str; 7] = [
    "cert-file",
    "key-file",
    "trusted-ca-file",
    "peer-cert-file",
    "peer-key-file",
    "peer-trusted-ca-file",
    "data-dir",
];

/// Runs `kubeboot render --config config --root root`; panics with its
/// stderr on failure.
pub fn render(config: &Path, root: &Path) {
    let out = command(env!("CARGO_BIN_EXE_kubeboot"))
        .args(["render", "--config"])
        .arg(config)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubeboot render failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The spec of the static pod `name` (e.g. `etcd.yaml`) under `root`.
pub fn read_pod(root: &Path, name: &str) -> PodSpec {
    let p = root.join("etc/kubernetes/manifests").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let pod: Pod = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    pod.spec.unwrap()
}

/// The first container's command (program first).
pub fn container_command(spec: &PodSpec) -> Vec<String> {
    spec.containers[0].command.clone().unwrap()
}

/// `--name=value` flags of a command (after the program name).
pub fn flags(cmd: &[String]) -> BTreeMap<String, String> {
    cmd[1..]
        .iter()
        .map(|a| {
            let (n, v) = a
                .strip_prefix("--")
                .and_then(|a| a.split_once('='))
                .unwrap_or_else(|| panic!("not a --name=value flag: {a:?}"));
            (n.to_string(), v.to_string())
        })
        .collect()
}

/// The host path (under `root`) the container sees at `container_path`,
/// through the longest `volumeMount` covering it and its `hostPath` volume.
/// A mount of a single file (`controller-manager.conf`) maps to that file.
pub fn host_path(spec: &PodSpec, root: &Path, container_path: &str) -> PathBuf {
    let c = Path::new(container_path);
    let mounts = spec.containers[0].volume_mounts.as_deref().unwrap_or(&[]);
    let mount = mounts
        .iter()
        .filter(|m| c.starts_with(&m.mount_path))
        .max_by_key(|m| m.mount_path.len())
        .unwrap_or_else(|| {
            panic!("no volumeMount covers {container_path}: the container cannot see it")
        });
    let volume = spec
        .volumes
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|v| v.name == mount.name)
        .unwrap_or_else(|| panic!("volumeMount {} names no volume", mount.name));
    let host = &volume
        .host_path
        .as_ref()
        .unwrap_or_else(|| panic!("volume {} is not a hostPath", volume.name))
        .path;
    let rest = c.strip_prefix(&mount.mount_path).unwrap();
    let on_host = if rest.as_os_str().is_empty() {
        PathBuf::from(host)
    } else {
        Path::new(host).join(rest)
    };
    root.join(on_host.strip_prefix("/").unwrap())
}

/// Creates every `hostPath` of the pod under `root` as the kubelet does:
/// `DirectoryOrCreate` makes the directory (0700: etcd wants its data dir
/// so), `FileOrCreate` an empty file if none is there; `Directory` and
/// `File` must exist already. Any other type fails the test by name.
pub fn create_host_dirs(spec: &PodSpec, root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for v in spec.volumes.as_deref().unwrap_or(&[]) {
        let hp = v
            .host_path
            .as_ref()
            .unwrap_or_else(|| panic!("volume {} is not a hostPath", v.name));
        let p = root.join(hp.path.trim_start_matches('/'));
        match hp.type_.as_deref() {
            Some("DirectoryOrCreate") => {
                std::fs::create_dir_all(&p).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
            }
            Some("FileOrCreate") => {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                if !p.exists() {
                    std::fs::write(&p, b"").unwrap();
                }
            }
            Some("Directory") => assert!(p.is_dir(), "{}: {} is missing", v.name, p.display()),
            Some("File") => assert!(p.is_file(), "{}: {} is missing", v.name, p.display()),
            other => panic!("volume {}: unexpected hostPath type {other:?}", v.name),
        }
    }
}

/// Rewrites the port of every URL in a comma-separated list
/// (`https://h:2379`, `name=https://h:2380`) through `ports`; a port not
/// in the map fails the test.
pub fn rewrite_ports(value: &str, ports: &BTreeMap<u16, u16>) -> String {
    value
        .split(',')
        .map(|item| {
            let (head, port) = item
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("URL without port: {item:?}"));
            let old: u16 = port
                .parse()
                .unwrap_or_else(|_| panic!("URL without port: {item:?}"));
            let new = ports
                .get(&old)
                .unwrap_or_else(|| panic!("unexpected port {old} in {item:?}"));
            format!("{head}:{new}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The long flag names `program --help` lists.
pub fn known_flags(program: &str) -> Vec<String> {
    let out = Command::new(program).arg("--help").output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.split(['=', '\'']).next().unwrap_or(w).to_string())
        .collect()
}

/// The etcd command line for the rendered `etcd.yaml` (`spec`, its flags
/// `rendered`) run on the host: every path flag (one of
/// [`ETCD_PATH_FLAGS`], anything else starting with `/` fails) mapped
/// through the pod's volumes under `root` (files must have been written),
/// every URL's port rewritten through `ports` (2379/2380/2381 → free ports).
pub fn etcd_args(
    spec: &PodSpec,
    rendered: &BTreeMap<String, String>,
    root: &Path,
    ports: &BTreeMap<u16, u16>,
) -> Vec<String> {
    for f in ETCD_PATH_FLAGS {
        assert!(rendered.contains_key(f), "etcd.yaml lacks --{f}");
    }
    let mut args = Vec::new();
    for (name, value) in rendered {
        let value = if value.starts_with('/') {
            assert!(
                ETCD_PATH_FLAGS.contains(&name.as_str()),
                "unexpected path flag --{name}"
            );
            let p = host_path(spec, root, value);
            if name != "data-dir" {
                assert!(p.is_file(), "--{name}: {} was not written", p.display());
            }
            p.display().to_string()
        } else if value.contains("://") {
            rewrite_ports(value, ports)
        } else {
            value.clone()
        };
        args.push(format!("--{name}={value}"));
    }
    args
}

/// The command line (without the program) of a control-plane static pod
/// run on the host: every flag as rendered, except that each value
/// starting with `/` is mapped through the pod's volumes under `root` (and
/// must exist there), and the flags in `set` replace the rendered value
/// or, when not rendered, are appended.
pub fn pod_args(spec: &PodSpec, root: &Path, set: &[(&str, String)]) -> Vec<String> {
    let rendered = flags(&container_command(spec));
    let mut args = Vec::new();
    for (name, value) in &rendered {
        let value = if let Some((_, v)) = set.iter().find(|(n, _)| n == name) {
            v.clone()
        } else if value.starts_with('/') {
            let p = host_path(spec, root, value);
            assert!(p.exists(), "--{name}: {} was not written", p.display());
            p.display().to_string()
        } else {
            value.clone()
        };
        args.push(format!("--{name}={value}"));
    }
    for (name, value) in set {
        if !rendered.contains_key(*name) {
            args.push(format!("--{name}={value}"));
        }
    }
    args
}
