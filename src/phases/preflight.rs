//! Preflight checks with kubeadm's names and severities: is this host fit
//! to become the node the settings describe?
//!
//! Each check reads the host under `--root` (procfs and sysfs files, the
//! manifests and etcd directories, unit files, `$PATH` directories) or asks
//! a [`Probes`] implementation for what is not a file (ports, the CRI
//! socket, `kubelet --version`, capabilities), so every check runs against
//! a fake root in tests. Errors named in `ignore` (case-insensitive, or
//! `all`) are downgraded to warnings, like `--ignore-preflight-errors`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::NodeRun;
use crate::config::model::{Etcd, Mode, Settings};
use crate::error::{Error, Result};
use crate::host::Paths;
use crate::manifests::{self, HostInputs, versions};

/// kubeadm's minimum for a control plane.
pub const MIN_CPUS: usize = 2;
/// kubeadm's minimum for a control plane, in MiB.
pub const MIN_MEMORY_MIB: u64 = 1700;
/// Oldest kernel the Kubernetes system validators accept.
pub const MIN_KERNEL: (u32, u32) = (4, 19);
/// Capabilities kubeboot needs to write root-owned files anywhere and set
/// their owners and modes.
pub const REQUIRED_CAPS: [&str; 3] = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"];
/// Directories searched for executables under the root.
pub const BIN_DIRS: [&str; 7] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/opt/bin",
];
/// How long `kubelet --version` may take.
pub const KUBELET_VERSION_TIMEOUT: Duration = Duration::from_secs(20);

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Aborts the bootstrap unless ignored.
    Error,
    /// Printed only.
    Warning,
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// kubeadm's check name, e.g. `Port-6443`.
    pub check: String,
    /// Severity after applying the ignore list.
    pub severity: Severity,
    /// The check reported an error that the ignore list downgraded.
    pub ignored: bool,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
        };
        write!(f, "[{tag} {}]: {}", self.check, self.message)?;
        if self.ignored {
            write!(f, " (ignored)")?;
        }
        Ok(())
    }
}

/// The outcome of a preflight run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreflightReport {
    /// Names of the checks that ran, in order.
    pub checks: Vec<String>,
    /// Failed checks, in order.
    pub findings: Vec<Finding>,
}

impl PreflightReport {
    /// Findings that still abort.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
    /// Warnings (including ignored errors).
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }
    /// True when no error remains.
    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }
    /// The finding of a check, if it failed.
    pub fn finding(&self, check: &str) -> Option<&Finding> {
        self.findings
            .iter()
            .find(|f| f.check.eq_ignore_ascii_case(check))
    }
    /// `Err` listing every remaining error, for the runner.
    pub fn into_result(self) -> Result<PreflightReport> {
        if self.is_ok() {
            return Ok(self);
        }
        let errs: Vec<String> = self.errors().map(|f| f.to_string()).collect();
        Err(Error::HostUnfit(format!(
            "preflight found {} error(s): {}; fix them, or skip a check with --ignore-preflight-errors=<name>",
            errs.len(),
            errs.join("; ")
        )))
    }
}

/// What the checks cannot read from files under the root.
pub trait Probes {
    /// Whether something listens on TCP `port`.
    fn port_in_use(&self, port: u16) -> std::result::Result<bool, String>;
    /// Connects to the CRI socket (a host path, already under the root).
    fn cri_answers(&self, socket: &Path) -> std::result::Result<(), String>;
    /// The output of `<binary> --version`.
    fn kubelet_version(&self, binary: &Path) -> std::result::Result<String, String>;
    /// Required capabilities ([`REQUIRED_CAPS`]) this process lacks.
    fn missing_capabilities(&self) -> Vec<String>;
    /// Kernel release (`uname -r`).
    fn kernel_release(&self) -> String;
    /// Online CPUs.
    fn num_cpus(&self) -> usize;
    /// Total memory in bytes.
    fn total_memory_bytes(&self) -> u64;
    /// The `*_proxy` / `*_PROXY` variables this process runs with (the
    /// static Pods get the same ones).
    fn proxy_env(&self) -> Vec<(String, String)>;
    /// Whether a `firewalld` process runs.
    fn firewalld_running(&self) -> bool;
}

/// The real probes. Kernel, CPU, memory and listening ports come from
/// procfs under the root when present (so fake roots work), else from
/// syscalls (`uname`, `sysinfo`, binding the port).
#[derive(Debug, Clone)]
pub struct HostProbes {
    paths: Paths,
}

impl HostProbes {
    /// Probes the host whose root is `paths`.
    pub fn new(paths: &Paths) -> Self {
        HostProbes {
            paths: paths.clone(),
        }
    }
}

/// Ports in LISTEN state in `/proc/net/tcp`-format text.
fn listening_ports(text: &str) -> Vec<u16> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 || f[3] != "0A" {
                return None;
            }
            let port = f[1].rsplit_once(':')?.1;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

impl Probes for HostProbes {
    fn port_in_use(&self, port: u16) -> std::result::Result<bool, String> {
        let tables: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(self.paths.host(p)).ok())
            .collect();
        if !tables.is_empty() {
            return Ok(tables.iter().any(|t| listening_ports(t).contains(&port)));
        }
        match std::net::TcpListener::bind(("0.0.0.0", port)) {
            Ok(_) => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(true),
            Err(e) => Err(format!("cannot test port {port}: {e}")),
        }
    }

    fn cri_answers(&self, socket: &Path) -> std::result::Result<(), String> {
        std::os::unix::net::UnixStream::connect(socket)
            .map(drop)
            .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))
    }

    fn kubelet_version(&self, binary: &Path) -> std::result::Result<String, String> {
        run_with_timeout(binary, &["--version"], KUBELET_VERSION_TIMEOUT)
    }

    fn missing_capabilities(&self) -> Vec<String> {
        REQUIRED_CAPS
            .iter()
            .filter(|name| {
                let held = name
                    .parse::<caps::Capability>()
                    .ok()
                    .and_then(|c| caps::has_cap(None, caps::CapSet::Effective, c).ok());
                held != Some(true)
            })
            .map(|n| n.to_string())
            .collect()
    }

    fn kernel_release(&self) -> String {
        std::fs::read_to_string(self.paths.host("/proc/sys/kernel/osrelease"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| {
                rustix::system::uname()
                    .release()
                    .to_string_lossy()
                    .into_owned()
            })
    }

    fn num_cpus(&self) -> usize {
        if let Ok(t) = std::fs::read_to_string(self.paths.host("/proc/cpuinfo")) {
            let n = t.lines().filter(|l| l.starts_with("processor")).count();
            if n > 0 {
                return n;
            }
        }
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }

    fn total_memory_bytes(&self) -> u64 {
        if let Ok(t) = std::fs::read_to_string(self.paths.host("/proc/meminfo")) {
            let kb = t
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            if let Some(kb) = kb {
                return kb * 1024;
            }
        }
        let si = rustix::system::sysinfo();
        (si.totalram as u64).saturating_mul(u64::from(si.mem_unit))
    }

    fn proxy_env(&self) -> Vec<(String, String)> {
        std::env::vars()
            .filter(|(k, _)| k.to_ascii_lowercase().ends_with("_proxy"))
            .collect()
    }

    fn firewalld_running(&self) -> bool {
        // Only where firewalld is installed; then /proc/<pid>/comm under the
        // root: no process is spawned, and the (Python) daemon's comm is its
        // script's name.
        let installed = [
            "/usr/sbin/firewalld",
            "/sbin/firewalld",
            "/usr/bin/firewalld",
        ]
        .iter()
        .any(|p| self.paths.host(p).exists());
        if !installed {
            return false;
        }
        let Ok(dir) = std::fs::read_dir(self.paths.host("/proc")) else {
            return false;
        };
        dir.flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .any(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.trim_end() == "firewalld")
            })
    }
}

/// Runs `program args` and returns its stdout, killing it after `timeout`.
fn run_with_timeout(
    program: &Path,
    args: &[&str],
    timeout: Duration,
) -> std::result::Result<String, String> {
    use std::io::Read;
    // ETXTBSY: the binary is still open for writing somewhere (a package
    // being installed, or a fork in another thread); retry briefly.
    let mut attempts = 0;
    let mut child = loop {
        let spawned = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn();
        match spawned {
            Ok(c) => break c,
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error())
                    && attempts < 10 =>
            {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(format!(
                    "running {} {}: {e}",
                    program.display(),
                    args.join(" ")
                ));
            }
        }
    };
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} {} did not finish within {timeout:?}",
                    program.display(),
                    args.join(" ")
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {}: {e}", program.display())),
        }
    };
    let mut out = String::new();
    if let Some(mut so) = child.stdout.take() {
        let _ = so.read_to_string(&mut out);
    }
    if !status.success() {
        return Err(format!(
            "{} {} exited with {status}",
            program.display(),
            args.join(" ")
        ));
    }
    Ok(out.trim().to_string())
}

/// kubeadm's name for a path check: (`FileAvailable`, `/etc/kubernetes/x.conf`) → `FileAvailable--etc-kubernetes-x.conf`.
pub fn path_check_name(prefix: &str, path: &str) -> String {
    format!("{prefix}-{}", path.replace('/', "-"))
}

/// True for an RFC 1123 subdomain (what a node name must be).
pub fn is_rfc1123_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Collects findings, applying the ignore list.
struct Run<'a> {
    ignore: Vec<String>,
    report: PreflightReport,
    paths: &'a Paths,
}

impl Run<'_> {
    fn ignored(&self, check: &str) -> bool {
        self.ignore
            .iter()
            .any(|i| i == "all" || i.eq_ignore_ascii_case(check))
    }

    fn check(&mut self, name: &str, severity: Severity, outcome: std::result::Result<(), String>) {
        self.report.checks.push(name.to_string());
        if let Err(message) = outcome {
            let ignored = severity == Severity::Error && self.ignored(name);
            self.report.findings.push(Finding {
                check: name.to_string(),
                severity: if ignored { Severity::Warning } else { severity },
                ignored,
                message,
            });
        }
    }

    fn read(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.paths.host(abs)).ok()
    }

    fn file_content(&mut self, abs: &str, want: &str, severity: Severity, hint: &str) {
        let got = self.read(abs);
        let outcome = match got.as_deref().map(str::trim) {
            Some(v) if v == want => Ok(()),
            Some(v) => Err(format!(
                "{abs} contents are not set to {want} (found {v:?}); {hint}"
            )),
            None => Err(format!("{abs} does not exist; {hint}")),
        };
        self.check(&path_check_name("FileContent", abs), severity, outcome);
    }

    fn file_available(&mut self, abs: &str) {
        let outcome = if self.paths.host(abs).exists() {
            Err(format!("{abs} already exists"))
        } else {
            Ok(())
        };
        self.check(
            &path_check_name("FileAvailable", abs),
            Severity::Error,
            outcome,
        );
    }

    fn find_binary(&self, name: &str) -> Option<PathBuf> {
        BIN_DIRS
            .iter()
            .map(|d| self.paths.host(format!("{d}/{name}")))
            .find(|p| p.is_file())
    }
}

/// Runs every check that applies to the node's role. `ignore` is merged
/// with the config's `ignorePreflightErrors`.
pub fn run(s: &Settings, paths: &Paths, probes: &dyn Probes, ignore: &[String]) -> PreflightReport {
    let mut ignore: Vec<String> = ignore
        .iter()
        .chain(&s.node.ignore_preflight_errors)
        .map(|i| i.to_ascii_lowercase())
        .collect();
    ignore.dedup();
    let mut r = Run {
        ignore,
        report: PreflightReport::default(),
        paths,
    };
    let cp = s.mode.is_control_plane();
    let local_etcd = cp && s.cluster.etcd.is_local();

    let missing = probes.missing_capabilities();
    r.check(
        "IsPrivilegedUser",
        Severity::Error,
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "kubeboot must run as root (missing capabilities: {})",
                missing.join(", ")
            ))
        },
    );

    if cp {
        let n = probes.num_cpus();
        r.check(
            "NumCPU",
            Severity::Error,
            if n >= MIN_CPUS {
                Ok(())
            } else {
                Err(format!(
                    "the number of available CPUs {n} is less than the required {MIN_CPUS}"
                ))
            },
        );
        let mib = probes.total_memory_bytes() / (1024 * 1024);
        r.check(
            "Mem",
            Severity::Error,
            if mib >= MIN_MEMORY_MIB {
                Ok(())
            } else {
                Err(format!(
                    "the system RAM ({mib} MB) is less than the minimum {MIN_MEMORY_MIB} MB"
                ))
            },
        );
    }

    let (_, version_warning) = versions::for_version(&s.cluster.kubernetes_version);
    r.check(
        "KubernetesVersion",
        Severity::Warning,
        version_warning.map_or(Ok(()), Err),
    );

    system_verification(&mut r, probes);

    let name = &s.node.name;
    r.check(
        "Hostname",
        Severity::Error,
        if is_rfc1123_subdomain(name) {
            Ok(())
        } else {
            Err(format!(
                "node name {name:?} is not a valid RFC 1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)"
            ))
        },
    );

    let mut ports = vec![10250u16];
    if cp {
        ports.extend([s.node.bind_port, 10259, 10257]);
    }
    if local_etcd {
        ports.extend([2379, 2380, 2381]);
    }
    for port in ports {
        let outcome = match probes.port_in_use(port) {
            Ok(false) => Ok(()),
            Ok(true) => Err(format!("Port {port} is in use")),
            Err(e) => Err(e),
        };
        r.check(&format!("Port-{port}"), Severity::Error, outcome);
    }

    network_checks(&mut r, s, probes, &ports_to_open(s));

    if cp {
        manifests_checks(&mut r, s);
    }
    if let (true, Etcd::Local { data_dir, .. }) = (local_etcd, &s.cluster.etcd) {
        let dir = paths.host(data_dir);
        let non_empty = std::fs::read_dir(&dir)
            .map(|mut it| it.next().is_some())
            .unwrap_or(false);
        let outcome = if non_empty {
            Err(format!("{data_dir} is not empty"))
        } else {
            Ok(())
        };
        r.check(
            &path_check_name("DirAvailable", data_dir),
            Severity::Error,
            outcome,
        );
    }
    if s.mode.is_join() {
        r.file_available("/etc/kubernetes/kubelet.conf");
        r.file_available("/etc/kubernetes/bootstrap-kubelet.conf");
    }
    if s.mode == Mode::JoinWorker {
        let ca = format!(
            "{}/ca.crt",
            s.cluster.certificates_dir.trim_end_matches('/')
        );
        r.file_available(&ca);
    }

    let addrs = std::iter::once(s.node.advertise_address)
        .chain(s.cluster.service_subnets.iter().map(|n| n.addr()))
        .chain(s.cluster.pod_subnets.iter().map(|n| n.addr()));
    let (mut v4, mut v6) = (false, false);
    for a in addrs {
        if a.is_ipv4() { v4 = true } else { v6 = true }
    }
    if v4 {
        r.file_content(
            "/proc/sys/net/ipv4/ip_forward",
            "1",
            Severity::Error,
            "set net.ipv4.ip_forward = 1 (sysctl)",
        );
    }
    if v6 {
        r.file_content(
            "/proc/sys/net/ipv6/conf/default/forwarding",
            "1",
            Severity::Error,
            "set net.ipv6.conf.default.forwarding = 1 (sysctl)",
        );
    }
    r.file_content(
        "/proc/sys/net/bridge/bridge-nf-call-iptables",
        "1",
        Severity::Warning,
        "load the br_netfilter module and set net.bridge.bridge-nf-call-iptables = 1 if your network plugin needs it",
    );

    let swaps = r.read("/proc/swaps").unwrap_or_default();
    r.check(
        "Swap",
        Severity::Warning,
        if swaps.lines().skip(1).any(|l| !l.trim().is_empty()) {
            Err("swap is supported for cgroup v2 only; the kubelet is configured with failSwapOn: false and NoSwap".to_string())
        } else {
            Ok(())
        },
    );

    let socket = s
        .node
        .cri_socket
        .strip_prefix("unix://")
        .unwrap_or(&s.node.cri_socket)
        .to_string();
    let outcome = probes
        .cri_answers(&paths.host(&socket))
        .map_err(|e| format!("container runtime is not running: {e}"));
    r.check("CRI", Severity::Error, outcome);

    kubelet_checks(&mut r, s, probes);

    for (tool, severity) in [
        ("ip", Severity::Error),
        ("iptables", Severity::Error),
        ("mount", Severity::Error),
        ("nsenter", Severity::Error),
        ("ebtables", Severity::Warning),
        ("ethtool", Severity::Warning),
        ("socat", Severity::Warning),
        ("tc", Severity::Warning),
        ("touch", Severity::Warning),
    ] {
        let outcome = match r.find_binary(tool) {
            Some(_) => Ok(()),
            None => Err(format!("{tool} not found in system path")),
        };
        r.check(&format!("FileExisting-{tool}"), severity, outcome);
    }
    r.report
}

/// The ports kubeadm's `Firewalld` check asks to open.
fn ports_to_open(s: &Settings) -> Vec<u16> {
    if s.mode.is_control_plane() {
        vec![s.node.bind_port, 10250]
    } else {
        vec![10250]
    }
}

/// kubeadm's `Firewalld`, `HTTPProxy` and `HTTPProxyCIDR` warnings.
fn network_checks(r: &mut Run<'_>, s: &Settings, probes: &dyn Probes, ports: &[u16]) {
    let outcome = if probes.firewalld_running() {
        Err(format!(
            "firewalld is active, please ensure ports {ports:?} are open or your cluster may not function correctly"
        ))
    } else {
        Ok(())
    };
    r.check("Firewalld", Severity::Warning, outcome);

    let env = probes.proxy_env();
    let via = |host: &str, port: u16| crate::host::proxy::proxy_for(&env, "https", host, port);
    let endpoint = |host: &str, port: u16| {
        crate::config::Endpoint {
            host: host.to_string(),
            port,
        }
        .url()
    };
    let mut targets = Vec::new();
    if s.mode.is_control_plane() {
        let e = s.local_endpoint();
        targets.push((e.host.clone(), e.port));
    }
    if let Some(j) = &s.join {
        targets.push((
            j.api_server_endpoint.host.clone(),
            j.api_server_endpoint.port,
        ));
    }
    targets.dedup();
    let mut found = Vec::new();
    for (host, port) in &targets {
        if let Some(p) = via(host, *port) {
            found.push(format!(
                "connection to {:?} uses proxy {p:?}; if that is not intended, adjust your proxy settings (NO_PROXY)",
                endpoint(host, *port)
            ));
        }
    }
    r.check("HTTPProxy", Severity::Warning, none_found(found));

    if !s.mode.is_control_plane() {
        return;
    }
    let mut found = Vec::new();
    for net in s
        .cluster
        .service_subnets
        .iter()
        .chain(&s.cluster.pod_subnets)
    {
        // kubeadm tries the first host of the range (port 1234 for IPv6)
        let Some(ip) = crate::config::nth_ip(net, 1) else {
            continue;
        };
        let port = if ip.is_ipv4() { 443 } else { 1234 };
        if let Some(p) = via(&ip.to_string(), port) {
            found.push(format!(
                "connection to {:?} uses proxy {p:?}; this may lead to a malfunctioning cluster: add {net} to NO_PROXY",
                endpoint(&ip.to_string(), port)
            ));
        }
    }
    r.check("HTTPProxyCIDR", Severity::Warning, none_found(found));
}

/// `Ok` when nothing was found, else every finding in one message.
fn none_found(found: Vec<String>) -> std::result::Result<(), String> {
    if found.is_empty() {
        Ok(())
    } else {
        Err(found.join("; "))
    }
}

/// Kernel version and cgroups (kubeadm's `SystemVerification`).
fn system_verification(r: &mut Run<'_>, probes: &dyn Probes) {
    let release = probes.kernel_release();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let kernel = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if kernel < MIN_KERNEL {
        problems.push(format!(
            "kernel release {release} is older than the required {}.{}",
            MIN_KERNEL.0, MIN_KERNEL.1
        ));
    }
    match r.read("/sys/fs/cgroup/cgroup.controllers") {
        Some(ctrls) => {
            let have: Vec<&str> = ctrls.split_whitespace().collect();
            let missing: Vec<&str> = ["cpu", "cpuset", "memory", "pids"].into_iter().filter(|c| !have.contains(c)).collect();
            if !missing.is_empty() {
                problems.push(format!("required cgroup v2 controllers are not enabled: {}", missing.join(", ")));
            }
        }
        None => warnings.push(
            "cgroup v1 detected; Kubernetes keeps cgroup v1 in maintenance mode, move to cgroup v2 (systemd.unified_cgroup_hierarchy=1)"
                .to_string(),
        ),
    }
    if problems.is_empty() {
        // Only a warning remains: report it as one, like kubeadm's validators.
        r.check(
            "SystemVerification",
            Severity::Warning,
            if warnings.is_empty() {
                Ok(())
            } else {
                Err(warnings.join("; "))
            },
        );
    } else {
        problems.extend(warnings);
        r.check(
            "SystemVerification",
            Severity::Error,
            Err(problems.join("; ")),
        );
    }
}

/// The static pod files must be absent or exactly what kubeboot would
/// write now (a rerun after a crash), and nothing else may be in the directory.
fn manifests_checks(r: &mut Run<'_>, s: &Settings) {
    let host = HostInputs::detect(r.paths, std::env::vars());
    let ours: Vec<(String, Option<String>)> = manifests::render_all(s, &host)
        .iter()
        .map(|(c, pod)| (format!("{c}.yaml"), manifests::to_yaml(pod).ok()))
        .collect();
    for component in manifests::COMPONENTS {
        let file = format!("{component}.yaml");
        let abs = format!("/etc/kubernetes/manifests/{file}");
        let current = r.read(&abs);
        let outcome = match current {
            None => Ok(()),
            Some(text)
                if ours
                    .iter()
                    .any(|(f, y)| *f == file && y.as_deref() == Some(text.as_str())) =>
            {
                Ok(())
            }
            Some(_) => Err(format!(
                "{abs} already exists and is not the manifest kubeboot would write"
            )),
        };
        r.check(
            &path_check_name("FileAvailable", &abs),
            Severity::Error,
            outcome,
        );
    }
    let dir = r.paths.manifests_dir();
    let strangers: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    !n.starts_with('.')
                        && !manifests::COMPONENTS
                            .iter()
                            .any(|c| format!("{c}.yaml") == *n)
                })
                .collect()
        })
        .unwrap_or_default();
    r.check(
        "DirAvailable--etc-kubernetes-manifests",
        Severity::Error,
        if strangers.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "/etc/kubernetes/manifests holds other files: {}",
                strangers.join(", ")
            ))
        },
    );
}

/// The kubelet binary exists, its version is within the skew policy, and
/// its unit is installed.
fn kubelet_checks(r: &mut Run<'_>, s: &Settings, probes: &dyn Probes) {
    let target = versions::parse(&s.cluster.kubernetes_version);
    let outcome = match r.find_binary("kubelet") {
        None => Err(format!("kubelet not found in {}", BIN_DIRS.join(", "))),
        Some(bin) => probes.kubelet_version(&bin).and_then(|out| {
            let v = out.split_whitespace().last().unwrap_or("");
            let Some((1, minor, _)) = versions::parse(v) else {
                return Err(format!("cannot parse kubelet version from {out:?}"));
            };
            match target {
                Some((1, t, _)) if minor + 3 < t => {
                    Err(format!("kubelet {v} is too old for Kubernetes {}: the minimum is v1.{}", s.cluster.kubernetes_version, t - 3))
                }
                Some((1, t, _)) if minor > t => Err(format!(
                    "kubelet {v} is newer than the control plane {}; the kubelet must not be newer than the control plane",
                    s.cluster.kubernetes_version
                )),
                _ => Ok(()),
            }
        }),
    };
    r.check("KubeletVersion", Severity::Error, outcome);
    let unit = [
        "/etc/systemd/system",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
    ]
    .iter()
    .any(|d| r.paths.host(format!("{d}/kubelet.service")).is_file());
    r.check(
        "Service-Kubelet",
        Severity::Warning,
        if unit {
            Ok(())
        } else {
            Err("kubelet.service unit file not found; install the kubelet package".to_string())
        },
    );
}

/// The `preflight` phase: runs the checks, logs the warnings, fails on
/// an error that is not ignored.
pub fn phase(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let report = run(
        &r.input.settings,
        &r.input.paths,
        r.caps.probes,
        &r.input.ignore_preflight,
    );
    for w in report.warnings() {
        log::warn!(target: "preflight", "{w}");
    }
    report.into_result().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                 0: 0100007F:1A0B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
                 1: 0100007F:1A0A 0100007F:1A0B 01 00000000:00000000 00:00000000 00000000     0        0 1 1\n";
        assert_eq!(listening_ports(t), [0x1A0B]);
    }

    #[test]
    fn rfc1123() {
        assert!(is_rfc1123_subdomain("node-1.example.com"));
        assert!(!is_rfc1123_subdomain("Node_1"));
        assert!(!is_rfc1123_subdomain("-a"));
        assert!(!is_rfc1123_subdomain("a..b"));
        assert!(!is_rfc1123_subdomain(&"a".repeat(64)));
        assert!(!is_rfc1123_subdomain(""));
    }

    #[test]
    fn check_names() {
        assert_eq!(
            path_check_name("FileAvailable", "/etc/kubernetes/manifests/etcd.yaml"),
            "FileAvailable--etc-kubernetes-manifests-etcd.yaml"
        );
        assert_eq!(
            path_check_name("DirAvailable", "/var/lib/etcd"),
            "DirAvailable--var-lib-etcd"
        );
    }

    #[test]
    fn timeout_kills_slow_programs() {
        let err = run_with_timeout(Path::new("/bin/sleep"), &["5"], Duration::from_millis(100))
            .unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
        assert!(
            run_with_timeout(
                Path::new("/nonexistent/kubelet"),
                &["--version"],
                Duration::from_secs(1)
            )
            .is_err()
        );
    }
}
