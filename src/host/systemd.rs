//! A narrow init-system interface (kubeadm's `InitSystem`): daemon-reload,
//! enable, non-blocking start/restart and is-active, with a `systemctl`
//! implementation and a [`Recording`] fake for tests.
//!
//! Why every start is `--no-block`: kubeboot runs inside `kubeboot.service`,
//! a `Type=oneshot` unit that stays "activating" until kubeboot exits. A
//! blocking `systemctl start kubelet` waits for the kubelet's start job; if
//! that job were ordered after kubeboot.service (by any `After=`, including
//! one added by an operator's drop-in) it could only run once kubeboot
//! exits, and kubeboot would wait forever. With `--no-block` systemctl only
//! enqueues the job and returns; kubeboot then polls the kubelet's healthz
//! with a bounded timeout, so a mis-ordered unit shows up as a clear
//! timeout error instead of a hung boot.

use std::process::Command;

use crate::error::{Error, Result};

/// The operations kubeboot needs from the init system.
pub trait InitSystem {
    /// `systemctl daemon-reload`.
    fn daemon_reload(&self) -> Result<()>;
    /// `systemctl enable <unit>`.
    fn enable(&self, unit: &str) -> Result<()>;
    /// `systemctl start --no-block <unit>`.
    fn start_no_block(&self, unit: &str) -> Result<()>;
    /// `systemctl restart --no-block <unit>` (starts a stopped unit too).
    fn restart(&self, unit: &str) -> Result<()>;
    /// `systemctl is-active <unit>`: true only for "active".
    fn is_active(&self, unit: &str) -> Result<bool>;
}

/// The real implementation: spawns `systemctl`.
#[derive(Debug, Clone)]
pub struct Systemctl {
    program: String,
}

impl Default for Systemctl {
    fn default() -> Self {
        Systemctl {
            program: "systemctl".to_string(),
        }
    }
}

impl Systemctl {
    /// Uses `program` instead of `systemctl` from `$PATH` (tests, or a
    /// wrapper such as `systemctl --root=...` scripts in image builds).
    pub fn with_program(program: impl Into<String>) -> Self {
        Systemctl {
            program: program.into(),
        }
    }

    /// `systemctl stop UNIT` (reset stops the kubelet before removing its files).
    pub fn stop(&self, unit: &str) -> Result<()> {
        self.check(&["stop", unit])
    }

    fn run(&self, args: &[&str]) -> Result<std::process::Output> {
        Command::new(&self.program)
            .args(args)
            .env("SYSTEMD_PAGER", "")
            .output()
            .map_err(|e| Error::Failed(format!("running {} {}: {e}", self.program, args.join(" "))))
    }

    fn check(&self, args: &[&str]) -> Result<()> {
        let out = self.run(args)?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(Error::Failed(format!(
            "{} {} failed ({}): {}",
            self.program,
            args.join(" "),
            out.status,
            stderr.trim()
        )))
    }
}

impl InitSystem for Systemctl {
    fn daemon_reload(&self) -> Result<()> {
        self.check(&["daemon-reload"])
    }
    fn enable(&self, unit: &str) -> Result<()> {
        self.check(&["enable", unit])
    }
    fn start_no_block(&self, unit: &str) -> Result<()> {
        self.check(&["start", "--no-block", unit])
    }
    fn restart(&self, unit: &str) -> Result<()> {
        self.check(&["restart", "--no-block", unit])
    }
    fn is_active(&self, unit: &str) -> Result<bool> {
        // Exit status 0 = active; 3 (or anything else with a state on
        // stdout) = not active. Only a failure to run is an error.
        let out = self.run(&["is-active", unit])?;
        Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "active")
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// daemon-reload.
    DaemonReload,
    /// enable(unit).
    Enable(String),
    /// start --no-block (unit).
    StartNoBlock(String),
    /// restart --no-block (unit).
    Restart(String),
    /// is-active(unit).
    IsActive(String),
}

/// A fake that records calls; `fail_on` makes the matching call fail and
/// `active` lists units reported active.
#[derive(Debug, Default)]
pub struct Recording {
    calls: std::sync::Mutex<Vec<Call>>,
    /// A call that returns an error instead of succeeding.
    pub fail_on: Option<Call>,
    /// Units `is_active` reports as active.
    pub active: Vec<String>,
}

impl Recording {
    /// A recorder whose `call` fails.
    pub fn failing_on(call: Call) -> Self {
        Recording {
            fail_on: Some(call),
            ..Default::default()
        }
    }

    /// The calls so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, call: Call) -> Result<()> {
        if let Ok(mut c) = self.calls.lock() {
            c.push(call.clone());
        }
        if self.fail_on.as_ref() == Some(&call) {
            return Err(Error::Failed(format!("recorded failure for {call:?}")));
        }
        Ok(())
    }
}

impl InitSystem for Recording {
    fn daemon_reload(&self) -> Result<()> {
        self.record(Call::DaemonReload)
    }
    fn enable(&self, unit: &str) -> Result<()> {
        self.record(Call::Enable(unit.to_string()))
    }
    fn start_no_block(&self, unit: &str) -> Result<()> {
        self.record(Call::StartNoBlock(unit.to_string()))
    }
    fn restart(&self, unit: &str) -> Result<()> {
        self.record(Call::Restart(unit.to_string()))
    }
    fn is_active(&self, unit: &str) -> Result<bool> {
        self.record(Call::IsActive(unit.to_string()))?;
        Ok(self.active.iter().any(|u| u == unit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fake `systemctl` script that logs its arguments and fails for `enable bad.service`.
    fn fake_systemctl(dir: &std::path::Path) -> String {
        let script = dir.join("systemctl");
        let log = dir.join("log");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\nif [ \"$1 $2\" = \"enable bad.service\" ]; then echo 'Unit bad.service does not exist.' >&2; exit 1; fi\nif [ \"$1\" = is-active ]; then if [ \"$2\" = kubelet.service ]; then echo active; exit 0; fi; echo inactive; exit 3; fi\nexit 0\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script.display().to_string()
    }

    #[test]
    fn systemctl_runs_commands_and_reports_unit_and_stderr() {
        let dir = std::env::temp_dir().join(format!("kubeboot-systemctl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sc = Systemctl::with_program(fake_systemctl(&dir));
        sc.daemon_reload().unwrap();
        sc.enable("kubelet.service").unwrap();
        sc.restart("kubelet.service").unwrap();
        sc.start_no_block("x.service").unwrap();
        assert!(sc.is_active("kubelet.service").unwrap());
        assert!(!sc.is_active("other.service").unwrap());
        let err = sc.enable("bad.service").unwrap_err().to_string();
        assert!(
            err.contains("enable bad.service") && err.contains("does not exist"),
            "{err}"
        );
        let log = std::fs::read_to_string(dir.join("log")).unwrap();
        assert_eq!(
            log.lines().collect::<Vec<_>>(),
            [
                "daemon-reload",
                "enable kubelet.service",
                "restart --no-block kubelet.service",
                "start --no-block x.service",
                "is-active kubelet.service",
                "is-active other.service",
                "enable bad.service"
            ]
        );
        let missing = Systemctl::with_program(dir.join("nope").display().to_string());
        assert!(
            missing
                .daemon_reload()
                .unwrap_err()
                .to_string()
                .contains("nope")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recording_records_and_fails_on_request() {
        let r = Recording {
            fail_on: Some(Call::Enable("kubelet.service".into())),
            ..Default::default()
        };
        r.daemon_reload().unwrap();
        assert!(r.enable("kubelet.service").is_err());
        assert!(!r.is_active("kubelet.service").unwrap());
        assert_eq!(
            r.calls(),
            [
                Call::DaemonReload,
                Call::Enable("kubelet.service".into()),
                Call::IsActive("kubelet.service".into())
            ]
        );
    }
}
