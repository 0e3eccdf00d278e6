//! Logging to stderr (the console, via the unit's journal+console output) and
//! to syslog (the journal) when `/dev/log` exists.
//!
//! Lines look like kubeadm's: `[certs] wrote ca (ECDSA P-256, ...)`; the
//! target is the phase or module. Never log raw userdata or key material.

use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    level: LevelFilter,
    journal: bool,
    syslog: Option<Mutex<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>>,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.level && library_may_log(m.target(), m.level())
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let target = r.target();
        let level = match r.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            _ => "",
        };
        // every line, whatever its origin, passes the one secret filter
        let text = r.args().to_string();
        let text = crate::secret::scrub(&text);
        // With stderr on the journal, a `<N>` prefix sets the priority
        // (sd-daemon(3)); journald strips it before echoing to the console.
        let priority = if self.journal {
            journal_priority(r.level())
        } else {
            ""
        };
        // `<N>` + level + `[target] ` + text + newline, built once and sent
        // in one write (stderr is unbuffered: `writeln!` wrote each piece)
        let mut out =
            String::with_capacity(priority.len() + level.len() + target.len() + text.len() + 4);
        out.push_str(priority);
        out.push_str(level);
        if !target.starts_with("kubeboot") {
            out.push('[');
            out.push_str(target);
            out.push_str("] ");
        }
        out.push_str(&text);
        out.push('\n');
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
        let line = &out[priority.len()..out.len() - 1];
        if let Some(s) = &self.syslog
            && let Ok(mut s) = s.lock()
        {
            let _ = match r.level() {
                Level::Error => s.err(line),
                Level::Warn => s.warning(line),
                Level::Info => s.info(line),
                Level::Debug | Level::Trace => s.debug(line),
            };
        }
    }

    fn flush(&self) {}
}

/// The HTTP and TLS libraries log the raw traffic (request and response
/// bytes, headers included: a bearer token, a metadata session token, the
/// userdata itself) at debug and trace. None of that may reach a log, at
/// any level: only their warnings and errors pass. kubeboot logs its own
/// request lines, headers redacted, at trace (target `http`).
fn library_may_log(target: &str, level: Level) -> bool {
    const RAW_TRAFFIC: &[&str] = &["ureq", "ureq_proto", "rustls", "rustls_pki_types", "webpki"];
    let krate = target.split("::").next().unwrap_or(target);
    !RAW_TRAFFIC.contains(&krate) || level <= Level::Warn
}

fn journal_priority(l: Level) -> &'static str {
    match l {
        Level::Error => "<3>",
        Level::Warn => "<4>",
        Level::Info => "<6>",
        Level::Debug | Level::Trace => "<7>",
    }
}

/// True when stderr is connected to the journal already (systemd sets
/// `JOURNAL_STREAM=<dev>:<inode>` for the unit's stdout/stderr stream; see
/// systemd.exec(5)): a syslog copy would then log every line twice.
fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match rustix::fs::fstat(std::io::stderr()) {
        Ok(st) => st.st_dev == dev && st.st_ino == ino,
        Err(_) => false,
    }
}

/// Installs the logger. `to_syslog` sends a copy of every line to
/// `/dev/log` when it exists, unless stderr already goes to the journal
/// (kubeboot.service's `StandardError=journal+console`).
pub fn init(level: LevelFilter, to_syslog: bool) {
    // Tests point the syslog copy at a socket of their own.
    let socket = std::env::var_os("KUBEBOOT_SYSLOG_SOCKET")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/dev/log".into());
    let syslog = if to_syslog && socket.exists() && !stderr_is_journal() {
        let f = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "kubeboot".into(),
            pid: std::process::id(),
        };
        syslog::unix_custom(f, &socket).ok().map(Mutex::new)
    } else {
        None
    };
    let logger = Box::new(Logger {
        level,
        journal: stderr_is_journal(),
        syslog,
    });
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Writes to stdout for [`crate::out!`]: a closed pipe is not an error
/// worth a panic or a message; other failures are logged.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        log::warn!("writing to standard output: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_libraries_log_only_warnings() {
        for t in [
            "ureq",
            "ureq::unversioned::transport",
            "ureq_proto::util",
            "rustls::conn",
        ] {
            assert!(!library_may_log(t, Level::Trace), "{t}");
            assert!(!library_may_log(t, Level::Debug), "{t}");
            assert!(!library_may_log(t, Level::Info), "{t}");
            assert!(library_may_log(t, Level::Warn), "{t}");
        }
        for t in ["kubeboot", "http", "certs", "source", "ureqx"] {
            assert!(library_may_log(t, Level::Trace), "{t}");
        }
    }
}
