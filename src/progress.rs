//! What the run is doing right now, told to the people and tools watching
//! it: the current phase and step, progress lines while a wait is retried,
//! and systemd's service status (`sd_notify` `STATUS=`, which `systemctl
//! status kubeboot` shows).
//!
//! The notification is one datagram to the unix socket named by
//! `$NOTIFY_SOCKET` (sd_notify(3): a path, or an abstract name written with a
//! leading `@`). Without the variable (a shell, a test) nothing is sent. The
//! unit sets `NotifyAccess=main`, so systemd accepts it from this process.
//!
//! Only phase names, URLs, counts and reasons go through here; never a
//! secret (the same rule as every log line).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The phase running now ("" before the phases start).
static PHASE: Mutex<String> = Mutex::new(String::new());

/// How often a retried wait logs a progress line, in milliseconds.
static INTERVAL_MS: AtomicU64 = AtomicU64::new(30_000);

/// The default interval between two progress lines of one wait.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// Sets how often a retried wait logs (tests shorten it). Zero is treated
/// as one millisecond.
pub fn set_interval(every: Duration) {
    let ms = every.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
    INTERVAL_MS.store(ms, Ordering::Relaxed);
}

/// The interval between two progress lines of one wait.
pub fn interval() -> Duration {
    Duration::from_millis(INTERVAL_MS.load(Ordering::Relaxed))
}

/// Records the phase that starts now and tells systemd.
pub fn enter_phase(name: &str, summary: &str) {
    if let Ok(mut p) = PHASE.lock() {
        name.clone_into(&mut p);
    }
    notify_status(&format!("{name}: {summary}"));
}

/// The phase running now, or "kubeboot" outside the phases (used as the
/// log target of progress lines).
pub fn phase() -> String {
    PHASE
        .lock()
        .ok()
        .filter(|p| !p.is_empty())
        .map(|p| p.clone())
        .unwrap_or_else(|| "kubeboot".into())
}

/// One line saying a wait goes on: what it waits for, why it is not there
/// yet, the attempt, the time so far and when the next try is.
pub fn waiting_line(
    what: &str,
    why: &str,
    attempt: u32,
    so_far: Duration,
    next: Duration,
) -> String {
    format!(
        "waiting for {what}: {why} (attempt {attempt}, {} so far, next try in {})",
        human(so_far),
        human(next)
    )
}

/// Logs a progress line (info, target = the current phase) and puts it in
/// systemd's status.
pub fn report(line: &str) {
    let phase = phase();
    log::info!(target: &phase, "{line}");
    notify_status(&format!("{phase}: {line}"));
}

/// `1.2 s`, `42 s`, `3 min 05 s`, `2 h 03 min`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s < 10 {
        format!("{:.1} s", d.as_secs_f64())
    } else if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

/// Sends `STATUS=<text>` to systemd (first line only, bounded length).
pub fn notify_status(text: &str) {
    let line: String = text
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(400)
        .collect();
    notify(&format!("STATUS={line}"));
}

/// Sends one sd_notify message (`KEY=value` lines) when `$NOTIFY_SOCKET`
/// is set; failures are ignored (a status is a courtesy, never a reason
/// to fail the bootstrap).
pub fn notify(message: &str) {
    if let Some(sock) = std::env::var_os("NOTIFY_SOCKET") {
        let _ = send_to(&sock, message.as_bytes());
    }
}

fn send_to(socket: &std::ffi::OsStr, payload: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = socket.as_bytes();
    let addr = match bytes.split_first() {
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        Some((b'/', _)) => SocketAddr::from_pathname(std::path::Path::new(socket))?,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither a path nor an abstract name",
            ));
        }
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(payload, &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(1234)), "1.2 s");
        assert_eq!(human(Duration::from_secs(42)), "42 s");
        assert_eq!(human(Duration::from_secs(185)), "3 min 05 s");
        assert_eq!(human(Duration::from_secs(7380)), "2 h 03 min");
    }

    #[test]
    fn a_notification_reaches_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("kubeboot-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), b"STATUS=discovery: waiting").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=discovery: waiting");
        assert!(send_to(std::ffi::OsStr::new("relative"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_waiting_line_says_what_why_attempt_time_and_next() {
        let l = waiting_line(
            "cluster-info from https://127.0.0.1:6443",
            "connection refused",
            7,
            Duration::from_secs(31),
            Duration::from_millis(2500),
        );
        assert_eq!(
            l,
            "waiting for cluster-info from https://127.0.0.1:6443: connection refused (attempt 7, 31 s so far, next try in 2.5 s)"
        );
    }
}
