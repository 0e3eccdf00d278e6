//! The systemd units in `units/` (checked with `systemd-analyze verify`)
//! and the kubelet start sequence against a recording init system.

#[allow(unused_imports)]
use crate::node_common;

use std::path::PathBuf;
use std::process::Command;

use kubeboot::host::Paths;
use kubeboot::host::detect::Detected;
use kubeboot::host::fs::Sync;
use kubeboot::host::systemd::{Call, InitSystem, Recording};
use kubeboot::kubelet;
use node_common::{TempRoot, settings};

fn unit_text() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("units/kubeboot.service");
    std::fs::read_to_string(&p).unwrap()
}

/// Runs `systemd-analyze verify` on a copy of the unit whose ExecStart
/// points at the kubeboot binary cargo just built (verify refuses missing
/// executables). Returns (success, stderr).
fn verify(text: &str, name: &str) -> (bool, String) {
    verify_units(&[(name, text.to_string())])
}

/// `systemd-analyze verify` on several units written side by side (a timer
/// needs its service next to it).
fn verify_units(units: &[(&str, String)]) -> (bool, String) {
    let dir = TempRoot::new(&format!("units-{}", units[0].0));
    let mut paths = Vec::new();
    for (name, text) in units {
        let unit = dir.path().join(name);
        std::fs::write(
            &unit,
            text.replace("/usr/bin/kubeboot", env!("CARGO_BIN_EXE_kubeboot")),
        )
        .unwrap();
        paths.push(unit);
    }
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("systemd-analyze is required for this test (Debian package systemd): {e}"),
    };
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn unit_file(name: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("units")
            .join(name),
    )
    .unwrap()
}

#[test]
fn renewal_timer_and_service_verify_cleanly_and_run_a_valid_command() {
    let service = unit_file("kubeboot-certs-renew.service");
    let timer = unit_file("kubeboot-certs-renew.timer");
    let (ok, stderr) = verify_units(&[
        ("kubeboot-certs-renew.timer", timer.clone()),
        ("kubeboot-certs-renew.service", service.clone()),
    ]);
    assert!(
        ok && stderr.trim().is_empty(),
        "systemd-analyze verify complained:\n{stderr}"
    );
    // daily, spread out, caught up after downtime
    for line in [
        "OnCalendar=daily",
        "RandomizedDelaySec=1h",
        "Persistent=true",
    ] {
        assert!(timer.lines().any(|l| l == line), "{line} in\n{timer}");
    }
    // the window defaults to 30 days and can be overridden from /etc/default
    assert!(service.contains("Environment=KUBEBOOT_RENEW_WINDOW=30d\n"));
    assert!(service.contains("EnvironmentFile=-/etc/default/kubeboot-certs-renew\n"));
    // ExecStart is a command line the binary accepts: run it (with the
    // default window) against an empty root, where nothing is due
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/bin/kubeboot "))
        .unwrap()
        .replace("${KUBEBOOT_RENEW_WINDOW}", "30d");
    let root = TempRoot::new("renew-unit");
    let out = Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args(exec.split_whitespace())
        .arg("--root")
        .arg(root.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{exec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        root.path()
            .join("var/lib/kubeboot/renew-status.json")
            .exists()
    );
    // a broken timer is caught by the same harness
    let (_, stderr) = verify_units(&[
        (
            "kubeboot-certs-renew.timer",
            timer.replace("OnCalendar=daily", "OnCalendar=dialy"),
        ),
        ("kubeboot-certs-renew.service", service),
    ]);
    assert!(stderr.contains("dialy"), "{stderr}");
}

#[test]
fn kubeboot_service_verifies_cleanly() {
    let (ok, stderr) = verify(&unit_text(), "kubeboot.service");
    assert!(
        ok && stderr.trim().is_empty(),
        "systemd-analyze verify complained:\n{stderr}"
    );
}

#[test]
fn verify_catches_a_broken_unit() {
    // The harness must be able to fail: a bad Type= is reported on stderr.
    let bad = unit_text().replace("Type=oneshot", "Type=oneshot-please");
    let (_, stderr) = verify(&bad, "broken.service");
    assert!(
        stderr.contains("oneshot-please"),
        "verify did not report the bad type: {stderr}"
    );
}

#[test]
fn every_ordering_line_is_commented_and_kubelet_is_unordered() {
    let text = unit_text();
    let lines: Vec<&str> = text.lines().collect();
    let ordering = [
        "After=",
        "Before=",
        "Wants=",
        "Requires=",
        "BindsTo=",
        "PartOf=",
        "Requisite=",
        "Conflicts=",
        "Condition",
    ];
    let mut seen = 0;
    for (i, line) in lines.iter().enumerate() {
        if ordering.iter().any(|k| line.starts_with(k)) {
            seen += 1;
            assert!(
                i > 0 && lines[i - 1].starts_with('#'),
                "line {} has no comment above it: {line}",
                i + 1
            );
            assert!(
                !line.contains("kubelet"),
                "kubeboot.service must not be ordered against the kubelet: {line}"
            );
        }
    }
    assert!(seen >= 5, "expected the ordering lines, saw {seen}");
    for must in [
        "Type=oneshot",
        "RemainAfterExit=yes",
        "ConditionPathExists=!/var/lib/kubeboot/done",
        "StandardOutput=journal+console",
        "ExecStart=/usr/bin/kubeboot firstboot",
        "After=network-online.target",
        "Wants=network-online.target",
        // sd_notify STATUS= from kubeboot reaches `systemctl status`
        "NotifyAccess=main",
        // a join waits for its cluster without a deadline
        "TimeoutStartSec=infinity",
    ] {
        assert!(lines.contains(&must), "missing {must}");
    }
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("RefuseManualStart=") || l.starts_with("RefuseManualStop="))
    );
}

/// cloud-init 24.3 renamed its network stage cloud-init.service →
/// cloud-init-network.service (canonical/cloud-init#5489): the unit orders
/// after both names, so it waits for write_files on old and new images.
#[test]
fn orders_after_cloud_init_old_and_new_network_stage() {
    let text = unit_text();
    let after: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("After="))
        .flat_map(str::split_whitespace)
        .collect();
    for unit in ["cloud-init.service", "cloud-init-network.service"] {
        assert!(after.contains(&unit), "no After={unit}: {after:?}");
    }
}

/// Checks, at daemon-reload time, that the kubelet files are already on disk.
struct CheckingInit<'a> {
    inner: Recording,
    config: PathBuf,
    seen_config_at_reload: &'a std::cell::Cell<bool>,
}

impl InitSystem for CheckingInit<'_> {
    fn daemon_reload(&self) -> kubeboot::error::Result<()> {
        self.seen_config_at_reload.set(self.config.is_file());
        self.inner.daemon_reload()
    }
    fn enable(&self, unit: &str) -> kubeboot::error::Result<()> {
        self.inner.enable(unit)
    }
    fn start_no_block(&self, unit: &str) -> kubeboot::error::Result<()> {
        self.inner.start_no_block(unit)
    }
    fn restart(&self, unit: &str) -> kubeboot::error::Result<()> {
        self.inner.restart(unit)
    }
    fn is_active(&self, unit: &str) -> kubeboot::error::Result<bool> {
        self.inner.is_active(unit)
    }
}

#[test]
fn kubelet_start_sequence_writes_config_then_reloads_enables_restarts() {
    let root = TempRoot::new("units-start");
    let paths = Paths::new(root.path());
    let seen = std::cell::Cell::new(false);
    let init = CheckingInit {
        inner: Recording::default(),
        config: paths.kubelet_dir().join("config.yaml"),
        seen_config_at_reload: &seen,
    };
    let s = settings::worker();
    let written =
        kubelet::write_all(&s, &Detected::default(), &paths, Sync::Deferred, None).unwrap();
    kubelet::start(&init).unwrap();
    assert_eq!(written.len(), 3);
    assert!(seen.get(), "config.yaml must exist before daemon-reload");
    assert_eq!(
        init.inner.calls(),
        [
            Call::DaemonReload,
            Call::Enable("kubelet.service".into()),
            Call::Restart("kubelet.service".into())
        ]
    );
}

#[test]
fn kubelet_start_stops_at_the_first_failure() {
    let rec = Recording::failing_on(Call::DaemonReload);
    assert!(kubelet::start(&rec).is_err());
    assert_eq!(rec.calls(), [Call::DaemonReload]);
}
