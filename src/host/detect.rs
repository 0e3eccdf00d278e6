//! Detects the host facts the kubelet configuration must match: the cgroup
//! version, the container runtime's cgroup driver, swap, the hostname and
//! whether systemd-resolved manages `resolv.conf`.
//!
//! "Derive, don't demand": kubeboot writes a kubelet config that matches
//! what it finds instead of failing, and records what it found (and why)
//! in [`Detected::notes`] so the log says it. Everything is read under
//! `--root`, so tests use fake roots.

use std::path::Path;

use crate::host::Paths;

/// The kubelet's cgroup driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    /// systemd manages the cgroups (kubeadm's default).
    Systemd,
    /// The kubelet writes cgroupfs directly.
    Cgroupfs,
}

impl CgroupDriver {
    /// The KubeletConfiguration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupDriver::Systemd => "systemd",
            CgroupDriver::Cgroupfs => "cgroupfs",
        }
    }
}

/// What was detected, with a human-readable note per decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// 1 or 2.
    pub cgroup_version: u8,
    /// Driver matching the container runtime.
    pub cgroup_driver: CgroupDriver,
    /// `/proc/swaps` lists an active swap device.
    pub swap_on: bool,
    /// The kernel hostname (`/proc/sys/kernel/hostname`), if readable.
    pub hostname: Option<String>,
    /// `/run/systemd/resolve/resolv.conf` when systemd-resolved manages DNS.
    pub resolv_conf: Option<String>,
    /// What was found and decided, one sentence each.
    pub notes: Vec<String>,
}

impl Default for Detected {
    /// kubeadm's assumptions on a modern host: cgroup v2, systemd driver, no swap.
    fn default() -> Self {
        Detected {
            cgroup_version: 2,
            cgroup_driver: CgroupDriver::Systemd,
            swap_on: false,
            hostname: None,
            resolv_conf: None,
            notes: Vec::new(),
        }
    }
}

/// systemd-resolved's upstream resolv.conf, which the kubelet must use
/// instead of the 127.0.0.53 stub.
pub const RESOLVED_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// Detects everything under `paths`.
pub fn detect(paths: &Paths) -> Detected {
    let mut notes = Vec::new();
    let cgroup_version = if paths.host("/sys/fs/cgroup/cgroup.controllers").is_file() {
        notes.push("cgroup v2 (unified hierarchy) detected".to_string());
        2
    } else {
        notes.push("cgroup v1 detected (no /sys/fs/cgroup/cgroup.controllers); Kubernetes keeps cgroup v1 in maintenance mode".to_string());
        1
    };
    let systemd_init = paths.host("/run/systemd/system").is_dir();
    let cgroup_driver = match runtime_cgroup_driver(paths) {
        Some((driver, source)) => {
            notes.push(format!(
                "container runtime uses the {} cgroup driver ({source}); kubelet set to match",
                driver.as_str()
            ));
            driver
        }
        None if systemd_init || cgroup_version == 2 => {
            notes.push("no container runtime cgroup setting found; using the systemd cgroup driver (kubeadm's default)".to_string());
            CgroupDriver::Systemd
        }
        None => {
            notes.push("no container runtime cgroup setting found and systemd is not running; using the cgroupfs driver".to_string());
            CgroupDriver::Cgroupfs
        }
    };
    let swap_on = swap_active(&paths.host("/proc/swaps"));
    if swap_on {
        let how = if cgroup_version == 2 {
            "the kubelet is configured with failSwapOn: false and swapBehavior: NoSwap (pods do not use swap)"
        } else {
            "the kubelet is configured with failSwapOn: false; cgroup v1 cannot limit pod swap usage"
        };
        notes.push(format!("swap is on; {how}"));
    }
    let hostname = std::fs::read_to_string(paths.host("/proc/sys/kernel/hostname"))
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    let resolv_conf = paths.host(RESOLVED_RESOLV_CONF).is_file().then(|| {
        notes.push(format!(
            "systemd-resolved manages DNS; kubelet resolvConf set to {RESOLVED_RESOLV_CONF}"
        ));
        RESOLVED_RESOLV_CONF.to_string()
    });
    Detected {
        cgroup_version,
        cgroup_driver,
        swap_on,
        hostname,
        resolv_conf,
        notes,
    }
}

/// True when `/proc/swaps` has an entry below its header.
fn swap_active(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.lines().skip(1).any(|l| !l.trim().is_empty()))
        .unwrap_or(false)
}

/// The runtime's cgroup driver and where it was read from: containerd's
/// `SystemdCgroup` (config.toml, then drop-ins in `conf.d`, later wins), or
/// CRI-O's `cgroup_manager`.
pub fn runtime_cgroup_driver(paths: &Paths) -> Option<(CgroupDriver, String)> {
    let mut found = None;
    let mut containerd_files = vec![paths.host("/etc/containerd/config.toml")];
    containerd_files.extend(sorted_dir(&paths.host("/etc/containerd/conf.d"), ".toml"));
    for f in containerd_files {
        if let Some(v) = std::fs::read_to_string(&f)
            .ok()
            .and_then(|t| containerd_systemd_cgroup(&t))
        {
            let driver = if v {
                CgroupDriver::Systemd
            } else {
                CgroupDriver::Cgroupfs
            };
            found = Some((
                driver,
                format!("SystemdCgroup = {v} in {}", display_under(paths, &f)),
            ));
        }
    }
    if found.is_some() {
        return found;
    }
    let mut crio_files = vec![paths.host("/etc/crio/crio.conf")];
    crio_files.extend(sorted_dir(&paths.host("/etc/crio/crio.conf.d"), ".conf"));
    for f in crio_files {
        if let Some(v) = std::fs::read_to_string(&f)
            .ok()
            .and_then(|t| toml_string(&t, "cgroup_manager"))
        {
            let driver = match v.as_str() {
                "cgroupfs" => CgroupDriver::Cgroupfs,
                _ => CgroupDriver::Systemd,
            };
            found = Some((
                driver,
                format!("cgroup_manager = \"{v}\" in {}", display_under(paths, &f)),
            ));
        }
    }
    found
}

fn display_under(paths: &Paths, p: &Path) -> String {
    match p.strip_prefix(paths.root()) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => p.display().to_string(),
    }
}

fn sorted_dir(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn strip_comment(line: &str) -> &str {
    // Comments start at a '#' outside quotes; the keys we look for never
    // contain one, so a plain split is enough for the value side too.
    line.split('#').next().unwrap_or("").trim()
}

/// The `SystemdCgroup` value of containerd's runc runtime options, from a
/// config of any schema version (`io.containerd.grpc.v1.cri` for config
/// version 2, `io.containerd.cri.v1.runtime` for version 3). Settings in
/// sections of other runtimes are ignored; the last one for runc wins.
pub fn containerd_systemd_cgroup(text: &str) -> Option<bool> {
    let mut section = String::new();
    let mut value = None;
    for raw in text.lines() {
        let line = strip_comment(raw);
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).replace(['"', '\''], "");
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let key = k.trim().replace(['"', '\''], "");
        // `SystemdCgroup` either sits in the runc options section or is
        // written as a dotted key below a parent section.
        let full = if section.is_empty() {
            key.clone()
        } else {
            format!("{section}.{key}")
        };
        if !full.ends_with("SystemdCgroup") {
            continue;
        }
        let is_runc = full.contains("runtimes.runc.options") || !full.contains("runtimes.");
        if !is_runc {
            continue;
        }
        match v.trim() {
            "true" => value = Some(true),
            "false" => value = Some(false),
            _ => {}
        }
    }
    value
}

/// The string value of a top-level-or-any-section `key = "value"` line.
fn toml_string(text: &str, key: &str) -> Option<String> {
    let mut out = None;
    for raw in text.lines() {
        let line = strip_comment(raw);
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            out = Some(v.trim().trim_matches(['"', '\'']).to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct Root(std::path::PathBuf);
    impl Root {
        fn new(name: &str) -> Root {
            let d =
                std::env::temp_dir().join(format!("kubeboot-detect-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            Root(d)
        }
        fn file(&self, rel: &str, body: &str) {
            let p = self.0.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, body).unwrap();
        }
        fn paths(&self) -> Paths {
            Paths::new(&self.0)
        }
    }
    impl Drop for Root {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const CONTAINERD_V2: &str = r#"
version = 2
[plugins]
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    # SystemdCgroup = true
    SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata.options]
    SystemdCgroup = true
"#;
    const CONTAINERD_V3: &str = r#"
version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  SystemdCgroup = true
"#;

    #[test]
    fn parses_containerd_configs() {
        assert_eq!(containerd_systemd_cgroup(CONTAINERD_V2), Some(false));
        assert_eq!(containerd_systemd_cgroup(CONTAINERD_V3), Some(true));
        assert_eq!(containerd_systemd_cgroup("version = 2\n"), None);
        let dotted = "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  runtimes.runc.options.SystemdCgroup = true\n";
        assert_eq!(containerd_systemd_cgroup(dotted), Some(true));
    }

    #[test]
    fn cgroup_v2_containerd_systemd() {
        let r = Root::new("v2");
        r.file(
            "sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory pids\n",
        );
        r.file("etc/containerd/config.toml", CONTAINERD_V3);
        r.file("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n");
        r.file("proc/sys/kernel/hostname", "node-a\n");
        let d = detect(&r.paths());
        assert_eq!(d.cgroup_version, 2);
        assert_eq!(d.cgroup_driver, CgroupDriver::Systemd);
        assert!(!d.swap_on);
        assert_eq!(d.hostname.as_deref(), Some("node-a"));
        assert!(
            d.notes
                .iter()
                .any(|n| n.contains("SystemdCgroup = true in /etc/containerd/config.toml")),
            "{:?}",
            d.notes
        );
    }

    #[test]
    fn cgroupfs_runtime_is_matched_not_refused() {
        let r = Root::new("cgroupfs");
        r.file("etc/containerd/config.toml", CONTAINERD_V2);
        r.file(
            "proc/swaps",
            "Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1048572 0 -2\n",
        );
        r.file("run/systemd/resolve/resolv.conf", "nameserver 10.0.0.2\n");
        let d = detect(&r.paths());
        assert_eq!(d.cgroup_version, 1);
        assert_eq!(d.cgroup_driver, CgroupDriver::Cgroupfs);
        assert!(d.swap_on);
        assert_eq!(d.resolv_conf.as_deref(), Some(RESOLVED_RESOLV_CONF));
        assert!(d.notes.iter().any(|n| n.contains("swap is on")));
    }

    #[test]
    fn conf_d_drop_in_wins_over_config_toml() {
        let r = Root::new("confd");
        r.file("etc/containerd/config.toml", CONTAINERD_V3);
        r.file("etc/containerd/conf.d/99-cgroupfs.toml", CONTAINERD_V2);
        let (d, src) = runtime_cgroup_driver(&r.paths()).unwrap();
        assert_eq!(d, CgroupDriver::Cgroupfs);
        assert!(src.contains("conf.d/99-cgroupfs.toml"), "{src}");
    }

    #[test]
    fn crio_and_defaults() {
        let r = Root::new("crio");
        r.file(
            "etc/crio/crio.conf.d/10-cgroup.conf",
            "[crio.runtime]\ncgroup_manager = \"cgroupfs\"\n",
        );
        assert_eq!(
            runtime_cgroup_driver(&r.paths()).unwrap().0,
            CgroupDriver::Cgroupfs
        );
        let empty = Root::new("empty");
        fs::create_dir_all(empty.0.join("run/systemd/system")).unwrap();
        let d = detect(&empty.paths());
        assert_eq!(d.cgroup_driver, CgroupDriver::Systemd);
        assert!(!d.swap_on);
        let bare = Root::new("bare");
        assert_eq!(detect(&bare.paths()).cgroup_driver, CgroupDriver::Cgroupfs);
    }
}
