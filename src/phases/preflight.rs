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
use std::path::PathBuf;

use super::NodeRun;
use crate::config::model::{Etcd, Mode, Settings};
use crate::error::{Error, Result};
use crate::host::Paths;
pub use crate::host::probes::{BIN_DIRS, HostProbes, Probes};
use crate::manifests::{self, HostInputs, versions};

/// kubeadm's minimum for a control plane.
pub const MIN_CPUS: usize = 2;
/// kubeadm's minimum for a control plane, in MiB.
pub const MIN_MEMORY_MIB: u64 = 1700;
/// Oldest kernel the Kubernetes system validators accept.
pub const MIN_KERNEL: (u32, u32) = (4, 19);
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
        // one line per failed check: the console line shows the first
        // (the count), the log one line per check
        let errs: Vec<String> = self.errors().map(|f| f.to_string()).collect();
        Err(Error::HostUnfit(format!(
            "preflight found {} error(s); fix them, or skip a check with --ignore-preflight-errors=<name>:\n{}",
            errs.len(),
            errs.join("\n")
        )))
    }
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

/// One group of kubeadm's checks: when it applies and what it checks.
struct Check {
    /// kubeadm's check names it reports (logged at debug level).
    names: &'static str,
    /// Whether the group applies to this node.
    applies: fn(&Settings) -> bool,
    /// Runs the group.
    run: fn(&mut Run<'_>, &Settings, &dyn Probes),
}

fn always(_: &Settings) -> bool {
    true
}

fn control_plane(s: &Settings) -> bool {
    s.mode.is_control_plane()
}

fn local_etcd(s: &Settings) -> bool {
    s.mode.is_control_plane() && s.cluster.etcd.is_local()
}

/// Every check, in the order kubeadm runs them (`kubeadm init` / `join`).
const CHECKS: &[Check] = &[
    Check {
        names: "IsPrivilegedUser",
        applies: always,
        run: privileged_user,
    },
    Check {
        names: "NumCPU, Mem",
        applies: control_plane,
        run: resources,
    },
    Check {
        names: "KubernetesVersion",
        applies: always,
        run: kubernetes_version,
    },
    Check {
        names: "SystemVerification",
        applies: always,
        run: system_verification,
    },
    Check {
        names: "Hostname",
        applies: always,
        run: hostname,
    },
    Check {
        names: "Port-N",
        applies: always,
        run: ports,
    },
    Check {
        names: "Firewalld, HTTPProxy, HTTPProxyCIDR",
        applies: always,
        run: |r, s, probes| network_checks(r, s, probes, &ports_to_open(s)),
    },
    Check {
        names: "FileAvailable--etc-kubernetes-manifests-*, DirAvailable--etc-kubernetes-manifests",
        applies: control_plane,
        run: |r, s, _| manifests_checks(r, s),
    },
    Check {
        names: "DirAvailable--var-lib-etcd",
        applies: local_etcd,
        run: etcd_data_dir,
    },
    Check {
        names: "FileAvailable--etc-kubernetes-kubelet.conf, ...-bootstrap-kubelet.conf, ...-pki-ca.crt",
        applies: |s| s.mode.is_join(),
        run: join_files,
    },
    Check {
        names: "FileContent--proc-sys-net-*",
        applies: always,
        run: forwarding,
    },
    Check {
        names: "Swap",
        applies: always,
        run: swap,
    },
    Check {
        names: "CRI",
        applies: always,
        run: cri,
    },
    Check {
        names: "KubeletVersion, Service-Kubelet",
        applies: always,
        run: kubelet_checks,
    },
    Check {
        names: "FileExisting-<tool>",
        applies: always,
        run: tools,
    },
];

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
    for c in CHECKS {
        if (c.applies)(s) {
            log::debug!(target: "preflight", "checking {}", c.names);
            (c.run)(&mut r, s, probes);
        }
    }
    r.report
}

/// A check that passes when `ok`, else fails with `message()`.
fn require(ok: bool, message: impl FnOnce() -> String) -> std::result::Result<(), String> {
    if ok { Ok(()) } else { Err(message()) }
}

fn privileged_user(r: &mut Run<'_>, _: &Settings, probes: &dyn Probes) {
    let missing = probes.missing_capabilities();
    r.check(
        "IsPrivilegedUser",
        Severity::Error,
        require(missing.is_empty(), || {
            format!(
                "kubeboot must run as root (missing capabilities: {})",
                missing.join(", ")
            )
        }),
    );
}

fn resources(r: &mut Run<'_>, _: &Settings, probes: &dyn Probes) {
    let n = probes.num_cpus();
    r.check(
        "NumCPU",
        Severity::Error,
        require(n >= MIN_CPUS, || {
            format!("the number of available CPUs {n} is less than the required {MIN_CPUS}")
        }),
    );
    let mib = probes.total_memory_bytes() / (1024 * 1024);
    r.check(
        "Mem",
        Severity::Error,
        require(mib >= MIN_MEMORY_MIB, || {
            format!("the system RAM ({mib} MB) is less than the minimum {MIN_MEMORY_MIB} MB")
        }),
    );
}

fn kubernetes_version(r: &mut Run<'_>, s: &Settings, _: &dyn Probes) {
    let (_, version_warning) = versions::for_version(&s.cluster.kubernetes_version);
    r.check(
        "KubernetesVersion",
        Severity::Warning,
        version_warning.map_or(Ok(()), Err),
    );
}

fn hostname(r: &mut Run<'_>, s: &Settings, _: &dyn Probes) {
    let name = &s.node.name;
    r.check(
        "Hostname",
        Severity::Error,
        require(is_rfc1123_subdomain(name), || {
            format!(
                "node name {name:?} is not a valid RFC 1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)"
            )
        }),
    );
}

/// The ports this node's components listen on must be free.
fn ports(r: &mut Run<'_>, s: &Settings, probes: &dyn Probes) {
    let mut ports = vec![10250u16];
    if control_plane(s) {
        ports.extend([s.node.bind_port, 10259, 10257]);
    }
    if local_etcd(s) {
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
}

fn etcd_data_dir(r: &mut Run<'_>, s: &Settings, _: &dyn Probes) {
    let Etcd::Local { data_dir, .. } = &s.cluster.etcd else {
        return;
    };
    let non_empty = std::fs::read_dir(r.paths.host(data_dir))
        .map(|mut it| it.next().is_some())
        .unwrap_or(false);
    r.check(
        &path_check_name("DirAvailable", data_dir),
        Severity::Error,
        require(!non_empty, || format!("{data_dir} is not empty")),
    );
}

/// A joining node must not have a kubelet identity yet (a worker not even
/// the cluster CA).
fn join_files(r: &mut Run<'_>, s: &Settings, _: &dyn Probes) {
    r.file_available("/etc/kubernetes/kubelet.conf");
    r.file_available("/etc/kubernetes/bootstrap-kubelet.conf");
    if s.mode == Mode::JoinWorker {
        let ca = format!(
            "{}/ca.crt",
            s.cluster.certificates_dir.trim_end_matches('/')
        );
        r.file_available(&ca);
    }
}

/// IP forwarding for each address family the node uses; bridge netfilter.
fn forwarding(r: &mut Run<'_>, s: &Settings, _: &dyn Probes) {
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
}

fn swap(r: &mut Run<'_>, _: &Settings, _: &dyn Probes) {
    let swaps = r.read("/proc/swaps").unwrap_or_default();
    let on = swaps.lines().skip(1).any(|l| !l.trim().is_empty());
    r.check(
        "Swap",
        Severity::Warning,
        require(!on, || {
            "swap is supported for cgroup v2 only; the kubelet is configured with failSwapOn: false and NoSwap".to_string()
        }),
    );
}

fn cri(r: &mut Run<'_>, s: &Settings, probes: &dyn Probes) {
    let socket = s
        .node
        .cri_socket
        .strip_prefix("unix://")
        .unwrap_or(&s.node.cri_socket)
        .to_string();
    let outcome = probes
        .cri_answers(&r.paths.host(&socket))
        .map_err(|e| format!("container runtime is not running: {e}"));
    r.check("CRI", Severity::Error, outcome);
}

/// The host tools the kubelet and kube-proxy need (kubeadm's list).
fn tools(r: &mut Run<'_>, _: &Settings, _: &dyn Probes) {
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

/// The leading `major.minor.patch` numbers of a kernel release, as far as
/// they go (`6.1.0-18-amd64` gives `[6, 1, 0]`).
fn release_numbers(release: &str) -> Vec<&str> {
    let head = release
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap_or("");
    head.split('.').take(3).collect()
}

/// system-validators v1.9's `^4\.19.*$`, `^4\.[2-9][0-9].*$` and
/// `^([5-9]|[1-9][0-9]+)\.([0-9]+)\.([0-9]+).*$`.
fn kernel_at_least_4_19(release: &str) -> bool {
    if release.starts_with("4.19") {
        return true;
    }
    if let Some(rest) = release.strip_prefix("4.") {
        let b = rest.as_bytes();
        return b.len() >= 2 && (b'2'..=b'9').contains(&b[0]) && b[1].is_ascii_digit();
    }
    three_numbers_from(release, 5)
}

/// system-validators v1.10.1's `^5\.4.*$`, `^5\.10.*$`, `^5\.15.*$` and
/// `^([6-9]|[1-9][0-9]+)\.([0-9]+)\.([0-9]+).*$`: a list, not a minimum
/// (5.14, RHEL 9's, is not on it).
fn kernel_in_lts_list(release: &str) -> bool {
    ["5.4", "5.10", "5.15"]
        .iter()
        .any(|p| release.starts_with(p))
        || three_numbers_from(release, 6)
}

/// `^(M|...)\.([0-9]+)\.([0-9]+)` for a major of at least `min` (a single
/// digit up to 9, or two or more digits without a leading zero).
fn three_numbers_from(release: &str, min: u32) -> bool {
    let n = release_numbers(release);
    if n.len() < 3 || n.iter().any(|p| p.is_empty()) {
        return false;
    }
    let major = n[0];
    match major.len() {
        1 => major.parse::<u32>().is_ok_and(|m| m >= min),
        _ => !major.starts_with('0'),
    }
}

/// Kernel version and cgroups (kubeadm's `SystemVerification`).
fn system_verification(r: &mut Run<'_>, s: &Settings, probes: &dyn Probes) {
    let release = probes.kernel_release();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    match versions::facts(&s.cluster.kubernetes_version).kernel_rule {
        versions::KernelRule::AtLeast419Error => {
            if !kernel_at_least_4_19(&release) {
                problems.push(format!(
                    "kernel release {release} is older than the required {}.{}",
                    MIN_KERNEL.0, MIN_KERNEL.1
                ));
            }
        }
        versions::KernelRule::LtsListWarning => {
            if !kernel_in_lts_list(&release) {
                warnings.push(format!(
                    "kernel release {release} is not one the Kubernetes system validators support: the 5.4, 5.10 and 5.15 series, or 6.x and newer"
                ));
            }
        }
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

/// The static pod files kubeboot would write now, as `(file name, text)`.
fn manifests_now(r: &Run<'_>, s: &Settings) -> Vec<(String, Option<String>)> {
    let host = HostInputs::detect(r.paths, std::env::vars());
    match manifests::render_patched(s, &host) {
        Ok(texts) => texts
            .into_iter()
            .map(|(c, text)| (format!("{c}.yaml"), Some(text)))
            .collect(),
        Err(_) => manifests::render_all(s, &host)
            .iter()
            .map(|(c, pod)| (format!("{c}.yaml"), manifests::to_yaml(pod).ok()))
            .collect(),
    }
}

/// The static pod files must be absent or exactly what kubeboot would
/// write now (a rerun after a crash), and nothing else may be in the directory.
fn manifests_checks(r: &mut Run<'_>, s: &Settings) {
    let current: Vec<(&str, String, Option<String>)> = manifests::COMPONENTS
        .iter()
        .map(|c| {
            let abs = format!("/etc/kubernetes/manifests/{c}.yaml");
            let text = r.read(&abs);
            (*c, abs, text)
        })
        .collect();
    // rendered only when a manifest is already there (a rerun): a first
    // run does not pay for the pods twice
    let ours = if current.iter().any(|(_, _, text)| text.is_some()) {
        manifests_now(r, s)
    } else {
        Vec::new()
    };
    for (component, abs, text) in current {
        let file = format!("{component}.yaml");
        let outcome = match text {
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
    fn rfc1123() {
        assert!(is_rfc1123_subdomain("node-1.example.com"));
        assert!(!is_rfc1123_subdomain("Node_1"));
        assert!(!is_rfc1123_subdomain("-a"));
        assert!(!is_rfc1123_subdomain("a..b"));
        assert!(!is_rfc1123_subdomain(&"a".repeat(64)));
        assert!(!is_rfc1123_subdomain(""));
    }

    /// The kernel rules against system-validators' own regular expressions
    /// (`validators/types_unix.go` at v1.9.1 and v1.10.1), run by Python's
    /// `re` (Go's RE2 agrees with it on these patterns), as `MatchString`
    /// uses them: a match anywhere, here anchored by the patterns' `^`.
    #[test]
    fn kernel_rules_match_the_system_validators_patterns() {
        let releases = [
            "6.1.0-18-amd64",
            "6.12.9",
            "6.1",
            "6.1.x",
            "5.4.0-150-generic",
            "5.4",
            "5.40.1",
            "5.10.0-28-cloud-amd64",
            "5.14.0-427.el9.x86_64",
            "5.15.0-1",
            "5.8.0",
            "5.100.1",
            "4.19.0-27-amd64",
            "4.19",
            "4.190.1",
            "4.18.0-553.el8_10.x86_64",
            "4.20.1",
            "4.2.0",
            "4.9.337",
            "3.10.0-1160.el7",
            "10.0.0",
            "10.1",
            "01.2.3",
            "7..1.0",
            "",
            "garbage",
            "6.1.0abc",
            "9.9.9-rc1",
            "5.15",
        ];
        let script = "import re, sys\n\
            old = [r'^4\\.19.*$', r'^4\\.[2-9][0-9].*$', r'^([5-9]|[1-9][0-9]+)\\.([0-9]+)\\.([0-9]+).*$']\n\
            new = [r'^5\\.4.*$', r'^5\\.10.*$', r'^5\\.15.*$', r'^([6-9]|[1-9][0-9]+)\\.([0-9]+)\\.([0-9]+).*$']\n\
            for k in sys.stdin.read().split('\\n'):\n    \
            print(any(re.search(p, k) for p in old), any(re.search(p, k) for p in new))\n";
        let lines = crate::test_util::python_lines(script, &releases.join("\n"));
        assert_eq!(lines.len(), releases.len());
        for (k, line) in releases.iter().zip(&lines) {
            let (old, new) = line.split_once(' ').unwrap();
            assert_eq!(
                kernel_at_least_4_19(k).to_string().to_lowercase(),
                old.to_lowercase(),
                "{k:?} (v1.9.1)"
            );
            assert_eq!(
                kernel_in_lts_list(k).to_string().to_lowercase(),
                new.to_lowercase(),
                "{k:?} (v1.10.1)"
            );
        }
        // the list is not a minimum: RHEL 9's 5.14 is outside it, 4.19 passes only the old rule
        assert_eq!(lines[8], "True False");
        assert_eq!(lines[12], "True False");
        assert_eq!(lines[15], "False False");
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
}
