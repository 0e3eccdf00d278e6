//! The outcome record: `/var/lib/kubeboot/status.json`, written atomically
//! on success and on failure, plus the run-once marker written last and only
//! on success.
//!
//! The status file never holds secrets: error messages are built from
//! field names, paths and URLs, and secret values are redacted types.

use serde::Serialize;

use crate::error::Error;
use crate::host::Paths;
use crate::host::fs::{self, Sync};
use crate::phases::runner::PhaseRecord;

/// What `status.json` holds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `success`, `failure`, or `in-progress` while the phases run.
    pub result: &'static str,
    /// `init`, `join-control-plane`, `join-worker`, or `unknown` when the config could not be read.
    pub role: String,
    /// The last phase that ran (the failing one on failure).
    pub phase: Option<String>,
    /// Error class (`invalid-input`, `filesystem`, `failed`, `no-userdata`, `preflight`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// Error message (never contains secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether rebooting / rerunning may succeed without changing the userdata.
    pub retryable: bool,
    /// Where the config came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Per-phase records with durations.
    pub phases: Vec<PhaseRecord>,
    /// Total wall time in milliseconds.
    pub total_millis: f64,
    /// kubeboot version.
    pub version: &'static str,
    /// When the phases started (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it finished (RFC 3339, UTC); while in progress, when the
    /// current phase started.
    pub finished_at: String,
}

impl Status {
    /// A status for a successful run; `phase` is the last phase done.
    pub fn success(role: String, phase: Option<String>) -> Status {
        Status {
            result: "success",
            role,
            phase,
            error_class: None,
            error: None,
            retryable: false,
            source: None,
            phases: Vec::new(),
            total_millis: 0.0,
            version: env!("CARGO_PKG_VERSION"),
            started_at: None,
            finished_at: now_rfc3339(),
        }
    }

    /// The status while `phase` runs (written at each phase's start).
    pub fn in_progress(role: String, phase: &str, started_at: String) -> Status {
        Status {
            result: "in-progress",
            role,
            phase: Some(phase.to_string()),
            error_class: None,
            error: None,
            retryable: false,
            source: None,
            phases: Vec::new(),
            total_millis: 0.0,
            version: env!("CARGO_PKG_VERSION"),
            started_at: Some(started_at),
            finished_at: now_rfc3339(),
        }
    }

    /// A status for a failure before or during the phases.
    pub fn failure(role: String, phase: Option<String>, error: &Error) -> Status {
        Status {
            result: "failure",
            error_class: Some(error.class().to_string()),
            error: Some(error.to_string()),
            retryable: error.retryable(),
            ..Status::success(role, phase)
        }
    }

    /// The one line printed on the console.
    pub fn console_line(&self) -> String {
        match self.result {
            "success" => format!(
                "kubeboot: {} succeeded in {:.0} ms ({} phases)",
                self.role,
                self.total_millis,
                self.phases
                    .iter()
                    .filter(|p| p.outcome == crate::phases::runner::Outcome::Done)
                    .count()
            ),
            _ => format!(
                "kubeboot: {}: {} ({}; details in /var/lib/kubeboot/status.json and the journal)",
                match &self.phase {
                    Some(phase) => format!("{} FAILED in phase {phase}", self.role),
                    // before any phase: finding or reading the userdata
                    None => "reading userdata FAILED".to_string(),
                },
                self.error
                    .as_deref()
                    .unwrap_or("unknown error")
                    .lines()
                    .next()
                    .unwrap_or_default(),
                if self.retryable {
                    "a retry may help: reboot or `systemctl restart kubeboot`"
                } else {
                    "fix the userdata or host, then rerun"
                }
            ),
        }
    }
}

/// The current time as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Writes the status file atomically and durably (0644).
pub fn write(paths: &Paths, status: &Status) -> Result<(), Error> {
    write_with(paths, status, Sync::Each)
}

/// Writes an `in-progress` status atomically (readers see the old status
/// or the new one) but never durably ([`Sync::Never`]): it is replaced at
/// the next phase, and the final status is written durably.
pub fn write_progress(paths: &Paths, status: &Status) -> Result<(), Error> {
    write_with(paths, status, Sync::Never)
}

fn write_with(paths: &Paths, status: &Status, sync: Sync) -> Result<(), Error> {
    let mut text = serde_json::to_vec_pretty(status)
        .map_err(|e| Error::Failed(format!("encoding status: {e}")))?;
    text.push(b'\n');
    fs::write_atomic(&paths.rooted(paths.status_file()), &text, 0o644, sync)?;
    Ok(())
}

/// Writes the run-once marker (last, only on success). What counts is
/// that it exists (`marker().exists()`); the time in it is for people. So
/// its name is made durable (an fsync of its directory) but not its
/// content: one fsync fewer, and a power cut can leave it empty, which is
/// still a marker.
pub fn write_marker(paths: &Paths) -> Result<(), Error> {
    let line = format!("{}\n", now_rfc3339());
    let marker = paths.marker();
    fs::write_atomic(
        &paths.rooted(&marker),
        line.as_bytes(),
        0o644,
        Sync::Batched,
    )?;
    fs::fsync_dir(&paths.state_dir())?;
    Ok(())
}

/// Cluster API's bootstrap sentinel file.
pub const CLUSTER_API_SENTINEL: &str = "/run/cluster-api/bootstrap-success.complete";

/// Writes Cluster API's sentinel after a successful bootstrap from Cluster
/// API userdata. Cluster API's bootstrap contract ("Sentinel file",
/// <https://cluster-api.sigs.k8s.io/developer/providers/contracts/bootstrap-config>)
/// has the bootstrap data create it once the node is bootstrapped, so
/// infrastructure providers can tell a failed bootstrap. Its content is
/// `success`: some providers only test that it exists, KubeVirt's
/// compares the content.
pub fn write_cluster_api_sentinel(paths: &Paths) -> Result<(), Error> {
    fs::write_atomic(
        &paths.rooted(paths.host(CLUSTER_API_SENTINEL)),
        b"success",
        0o644,
        Sync::Each,
    )?;
    Ok(())
}

/// Whether the marker exists (a previous run succeeded).
pub fn marker_exists(paths: &Paths) -> bool {
    paths.marker().exists()
}
