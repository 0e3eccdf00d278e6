//! Host probes: what preflight cannot read from files under the root
//! (listening ports, the CRI socket, `kubelet --version`, capabilities,
//! kernel, CPUs, memory, firewalld), behind the [`Probes`] interface so
//! the checks (`phases::preflight`) run against a fake in tests.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::host::Paths;

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
