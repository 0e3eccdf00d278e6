//! `kubeboot status`: the status files read back for a person (outcome,
//! the current or failed step, what to do next, a per-phase timeline as a
//! text bar chart) or for a script (`--json`).
//!
//! It reads every status file kubeboot keeps under `/var/lib/kubeboot/`:
//! `status.json` (first boot) first, then any other `*.json` there that has
//! a `result` (the renewal timer's, for one), and the run-once marker. The
//! rendering is pure ([`render`]) so it is tested by value.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::Error;
use crate::host::Paths;

/// Width of the longest bar of the timeline, in characters.
const BAR_WIDTH: usize = 32;

/// One status file, read.
#[derive(Debug, Clone)]
pub struct Record {
    /// What it is the status of (`first boot`, or the file's stem).
    pub name: String,
    /// Its path (under the root).
    pub path: PathBuf,
    /// The content.
    pub value: Value,
}

/// Reads the status files under `paths`' root. A file that does not parse
/// is an error naming it; no file at all is an empty list.
pub fn read_all(paths: &Paths) -> Result<Vec<Record>, Error> {
    let first = paths.status_file();
    let dir = first
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| paths.host("/var/lib/kubeboot"));
    let mut files = Vec::new();
    if first.exists() {
        files.push(first.clone());
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut more: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json") && *p != first)
            .collect();
        more.sort();
        files.extend(more);
    }
    let mut out = Vec::new();
    for p in files {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| Error::Failed(format!("reading {}: {e}", p.display())))?;
        if text.is_empty() {
            // the in-progress status is never made durable (status.rs)
            return Err(Error::Failed(format!(
                "{}: empty: a run was cut off (a power cut) before its status reached the disk; \
                 the next run writes it again",
                p.display()
            )));
        }
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::Failed(format!("{}: not a status file: {e}", p.display())))?;
        if value.get("result").is_none() {
            continue;
        }
        let name = if p == first {
            "first boot".to_string()
        } else if p.file_name().is_some_and(|n| n == "renew-status.json") {
            "certificate renewal".to_string()
        } else {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        out.push(Record {
            name,
            path: p,
            value,
        });
    }
    Ok(out)
}

/// `kubeboot status [--root DIR] [--json]`.
pub fn show(root: &Path, as_json: bool) -> Result<(), Error> {
    let paths = Paths::new(root);
    let records = read_all(&paths)?;
    let marker = paths.marker().exists();
    if as_json {
        let mut files = serde_json::Map::new();
        for r in &records {
            files.insert(r.name.clone(), r.value.clone());
        }
        let out = json!({"marker": marker, "statuses": files});
        let text = serde_json::to_string_pretty(&out)
            .map_err(|e| Error::Failed(format!("encoding JSON: {e}")))?;
        crate::outln!("{text}");
        return Ok(());
    }
    if records.is_empty() {
        return Err(Error::Failed(format!(
            "no status file under {}: kubeboot has not run on this node yet (or --root is not the node's root)",
            paths.status_file().parent().unwrap_or(root).display()
        )));
    }
    let now = time::OffsetDateTime::now_utc();
    for r in &records {
        crate::out!("{}", render(r, marker, now));
    }
    Ok(())
}

fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// What a person should do next, from the outcome and error class.
fn next_step(v: &Value) -> String {
    match text(v, "result") {
        Some("success") => "nothing: the node is bootstrapped (a reboot does not run it again)".into(),
        Some("in-progress") => "wait: a joining node retries until its cluster answers; follow it with `journalctl -u kubeboot -f` (`systemctl status kubeboot` shows the current step)".into(),
        _ => match (text(v, "errorClass"), text(v, "phase")) {
            (Some("invalid-input"), _) => "fix the userdata (the error names the field or file), then `systemctl restart kubeboot`".into(),
            (Some("untrusted-cluster"), _) => "the API server did not prove it is the cluster: check the token and caCertHash in the userdata (`kubeboot certs ca-hash /etc/kubernetes/pki/ca.crt` on a control plane), then `systemctl restart kubeboot`".into(),
            (Some("no-userdata"), _) => "give the node userdata (see docs/userdata.md), then `systemctl restart kubeboot`".into(),
            (_, Some("preflight")) => "fix the host as the preflight error says (or ignore that check with --ignore-preflight-errors), then `systemctl restart kubeboot`".into(),
            _ if v.get("retryable").and_then(Value::as_bool) == Some(true) => "a retry may help: `systemctl restart kubeboot` (or reboot); `journalctl -u kubeboot` has every step".into(),
            _ => "read the error and `journalctl -u kubeboot`, fix the cause, then `systemctl restart kubeboot`".into(),
        },
    }
}

/// A renewal report (`certs renew`'s status file: `certificates` rows with
/// `name`, `outcome`, `expiresBefore`/`expiresAfter`, `message`) as text.
fn render_renewal(r: &Record) -> String {
    let v = &r.value;
    let rows = v
        .get("certificates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let count = |o: &str| {
        rows.iter()
            .filter(|c| text(c, "outcome") == Some(o))
            .count()
    };
    let mut out = format!("{} ({})\n", r.name, r.path.display());
    out.push_str(&format!(
        "  outcome:  {} ({} renewed, {} not due, {} cannot be signed here, {} failed)\n",
        text(v, "result").unwrap_or("unknown"),
        count("renewed"),
        count("not-due"),
        count("cannot-sign"),
        count("failed"),
    ));
    if let Some(t) = text(v, "finishedAt") {
        out.push_str(&format!("  finished: {t}\n"));
    }
    let next = if text(v, "result") == Some("success") {
        "nothing: the timer renews again before the window closes"
    } else {
        "read the failed rows and `journalctl -u kubeboot-certs-renew`, fix the cause, then `kubeboot certs renew all --if-expiring-within 30d`"
    };
    out.push_str(&format!("  next:     {next}\n"));
    let w = rows
        .iter()
        .filter_map(|c| text(c, "name").map(str::len))
        .max()
        .unwrap_or(0);
    for c in &rows {
        let mut line = format!(
            "    {:<w$} {}",
            text(c, "name").unwrap_or("?"),
            text(c, "outcome").unwrap_or("?")
        );
        match (text(c, "expiresBefore"), text(c, "expiresAfter")) {
            (Some(b), Some(a)) => line.push_str(&format!(" (was valid until {b}, now until {a})")),
            (Some(b), None) => line.push_str(&format!(" (valid until {b})")),
            _ => {}
        }
        if let Some(m) = text(c, "message").filter(|m| !m.is_empty()) {
            line.push_str(&format!(": {m}"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// One status file as text: a header line, the step, the next step, and
/// the timeline. `now` dates the running phase of an in-progress run.
pub fn render(r: &Record, marker: bool, now: time::OffsetDateTime) -> String {
    let v = &r.value;
    if v.get("certificates").is_some_and(Value::is_array) {
        return render_renewal(r);
    }
    let role = text(v, "role").unwrap_or("-");
    let phase = text(v, "phase").unwrap_or("-");
    let total = v.get("totalMillis").and_then(Value::as_f64).unwrap_or(0.0);
    let mut out = String::new();
    let outcome = match text(v, "result") {
        Some("success") => format!("{role}: succeeded in {}", millis(total)),
        Some("in-progress") => {
            let since = text(v, "startedAt").and_then(parse_time);
            let so_far = since
                .map(|t| millis(((now - t).as_seconds_f64() * 1000.0).max(0.0)))
                .unwrap_or_else(|| "?".into());
            format!("{role}: IN PROGRESS, step {phase} ({so_far} so far)")
        }
        Some("failure") => format!(
            "{role}: FAILED in step {phase} ({}{})",
            text(v, "errorClass").unwrap_or("failed"),
            if v.get("retryable").and_then(Value::as_bool) == Some(true) {
                ", retryable"
            } else {
                ", not retryable"
            }
        ),
        other => format!("{role}: {}", other.unwrap_or("unknown")),
    };
    out.push_str(&format!("{} ({})\n", r.name, r.path.display()));
    out.push_str(&format!("  outcome:  {outcome}\n"));
    if let Some(e) = text(v, "error") {
        out.push_str(&format!(
            "  error:    {}\n",
            e.lines().next().unwrap_or_default()
        ));
    }
    if let Some(s) = text(v, "source") {
        out.push_str(&format!("  source:   {s}\n"));
    }
    if let Some(t) = text(v, "finishedAt") {
        let label = if text(v, "result") == Some("in-progress") {
            "step since"
        } else {
            "finished"
        };
        out.push_str(&format!("  {label}: {t}\n"));
    }
    if r.name == "first boot" {
        out.push_str(&format!(
            "  marker:   {}\n",
            if marker {
                "present (a reboot does not run kubeboot again)"
            } else {
                "absent (the next boot runs kubeboot)"
            }
        ));
    }
    out.push_str(&format!("  next:     {}\n", next_step(v)));
    let mut rows = timeline_rows(v, now);
    if !rows.is_empty() {
        out.push_str("  timeline:\n");
        let max = rows.iter().map(|r| r.1).fold(0.0, f64::max);
        let name_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        for (name, ms, note) in rows.drain(..) {
            let bar = if max > 0.0 && ms > 0.0 {
                ((ms / max * BAR_WIDTH as f64).round() as usize).max(1)
            } else {
                0
            };
            let shown = if note.is_empty() || note == "running" {
                millis(ms)
            } else {
                String::new()
            };
            let note = match (note.is_empty(), shown.is_empty()) {
                (true, _) => String::new(),
                (false, true) => format!("({note})"),
                (false, false) => format!(" ({note})"),
            };
            out.push_str(&format!(
                "    {name:<name_w$} |{:<BAR_WIDTH$}| {shown}{note}\n",
                "#".repeat(bar)
            ));
        }
    }
    out
}

/// (phase, millis, note) for every phase recorded; an in-progress run adds
/// its running phase, timed from when it started.
fn timeline_rows(v: &Value, now: time::OffsetDateTime) -> Vec<(String, f64, String)> {
    let mut rows: Vec<(String, f64, String)> = v
        .get("phases")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|p| {
                    let outcome = text(p, "outcome").unwrap_or_default();
                    (
                        text(p, "name").unwrap_or("?").to_string(),
                        p.get("millis").and_then(Value::as_f64).unwrap_or(0.0),
                        if outcome == "done" {
                            String::new()
                        } else {
                            outcome.to_string()
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if text(v, "result") == Some("in-progress")
        && let Some(phase) = text(v, "phase")
    {
        let ms = text(v, "finishedAt")
            .and_then(parse_time)
            .map(|t| ((now - t).as_seconds_f64() * 1000.0).max(0.0))
            .unwrap_or(0.0);
        rows.push((phase.to_string(), ms, "running".into()));
    }
    rows
}

/// `12 ms`, `3.4 s`, `2 min 05 s`.
fn millis(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        crate::progress::human(std::time::Duration::from_secs_f64(ms / 1000.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(v: Value) -> Record {
        Record {
            name: "first boot".into(),
            path: "/var/lib/kubeboot/status.json".into(),
            value: v,
        }
    }

    fn at(s: &str) -> time::OffsetDateTime {
        parse_time(s).unwrap()
    }

    #[test]
    fn in_progress_shows_the_running_step_and_its_time() {
        let v = json!({
            "result": "in-progress", "role": "join-worker", "phase": "discovery",
            "startedAt": "2026-11-28T08:00:00Z", "finishedAt": "2026-11-28T08:00:01Z",
            "retryable": false, "source": "nocloud seed",
            "phases": [{"name": "preflight", "outcome": "done", "millis": 30.0},
                       {"name": "userdata-files", "outcome": "not-applicable", "millis": 0.0}],
            "totalMillis": 1000.0,
        });
        let out = render(&record(v), false, at("2026-11-28T08:02:01Z"));
        assert!(
            out.contains("join-worker: IN PROGRESS, step discovery (2 min 01 s so far)"),
            "{out}"
        );
        assert!(out.contains("next:     wait:"), "{out}");
        assert!(out.contains("marker:   absent"), "{out}");
        // the running phase has the longest bar; preflight a short one
        let disc = out
            .lines()
            .find(|l| l.starts_with("    discovery "))
            .unwrap();
        assert!(disc.contains(&"#".repeat(BAR_WIDTH)), "{out}");
        assert!(disc.ends_with("2 min 00 s (running)"), "{out}");
        let pre = out.lines().find(|l| l.contains("preflight")).unwrap();
        assert!(pre.contains("|#") && pre.ends_with("30 ms"), "{out}");
        let na = out.lines().find(|l| l.contains("userdata-files")).unwrap();
        assert!(na.ends_with("(not-applicable)"), "{out}");
    }

    /// An empty status file (a power cut before the never-synced
    /// in-progress status reached the disk) is named and explained.
    #[test]
    fn an_empty_status_file_is_explained() {
        let root = std::env::temp_dir().join(format!("kubeboot-sv-empty-{}", std::process::id()));
        let paths = Paths::new(&root);
        std::fs::create_dir_all(paths.status_file().parent().unwrap()).unwrap();
        std::fs::write(paths.status_file(), b"").unwrap();
        let e = read_all(&paths).err().unwrap().to_string();
        assert!(e.contains("status.json: empty: a run was cut off"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn failures_say_what_to_do_by_class() {
        let fail = |class: &str, phase: &str, retryable: bool| {
            let v = json!({"result": "failure", "role": "join-worker", "phase": phase,
                "errorClass": class, "error": "boom\nmore", "retryable": retryable,
                "phases": [], "totalMillis": 5.0, "finishedAt": "2026-11-28T08:00:00Z"});
            render(&record(v), false, at("2026-11-28T08:00:00Z"))
        };
        let out = fail("untrusted-cluster", "discovery", false);
        assert!(
            out.contains("FAILED in step discovery (untrusted-cluster, not retryable)"),
            "{out}"
        );
        assert!(out.contains("caCertHash"), "{out}");
        assert!(out.contains("error:    boom\n"), "{out}");
        assert!(fail("invalid-input", "-", false).contains("fix the userdata"));
        assert!(fail("failed", "preflight", false).contains("fix the host"));
        assert!(fail("failed", "kubelet-wait-bootstrap", true).contains("a retry may help"));
    }

    #[test]
    fn a_renewal_report_lists_its_certificates() {
        let v = json!({"result": "failure", "certificates": [
            {"name": "apiserver", "outcome": "renewed", "file": "/etc/kubernetes/pki/apiserver.crt",
             "expiresBefore": "2026-12-01T00:00:00Z", "expiresAfter": "2027-12-01T00:00:00Z"},
            {"name": "front-proxy-client", "outcome": "cannot-sign", "file": "x",
             "expiresBefore": "2026-12-01T00:00:00Z", "message": "front-proxy-ca.key is not here"}],
            "restarted": ["kube-apiserver"], "version": "0.1.0", "finishedAt": "2026-11-28T08:00:00Z"});
        let r = Record {
            name: "certificate renewal".into(),
            path: "/var/lib/kubeboot/renew-status.json".into(),
            value: v,
        };
        let out = render(&r, true, at("2026-11-28T08:00:00Z"));
        assert!(
            out.contains(
                "outcome:  failure (1 renewed, 0 not due, 1 cannot be signed here, 0 failed)"
            ),
            "{out}"
        );
        assert!(
            out.contains("apiserver          renewed (was valid until 2026-12-01T00:00:00Z, now until 2027-12-01T00:00:00Z)"),
            "{out}"
        );
        assert!(
            out.contains(
                "cannot-sign (valid until 2026-12-01T00:00:00Z): front-proxy-ca.key is not here"
            ),
            "{out}"
        );
        assert!(out.contains("kubeboot certs renew all"), "{out}");
    }

    #[test]
    fn success_has_a_timeline_scaled_to_the_longest_phase() {
        let v = json!({"result": "success", "role": "init", "phase": "addon",
            "phases": [{"name": "certs", "outcome": "done", "millis": 400.0},
                       {"name": "wait-control-plane", "outcome": "done", "millis": 3200.0}],
            "totalMillis": 3600.0, "finishedAt": "2026-11-28T08:00:00Z"});
        let out = render(&record(v), true, at("2026-11-28T08:00:00Z"));
        assert!(out.contains("init: succeeded in 3.6 s"), "{out}");
        assert!(out.contains("marker:   present"), "{out}");
        let certs = out.lines().find(|l| l.contains("certs")).unwrap();
        assert!(
            certs.contains(&format!("|{}{}|", "#".repeat(4), " ".repeat(28))),
            "{out}"
        );
    }
}
