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
    syslog: Option<Mutex<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>>,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let target = r.target();
        let prefix = if target.starts_with("kubeboot") {
            String::new()
        } else {
            format!("[{target}] ")
        };
        let level = match r.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            _ => "",
        };
        let line = format!("{level}{prefix}{}", r.args());
        let _ = writeln!(std::io::stderr().lock(), "{line}");
        if let Some(s) = &self.syslog
            && let Ok(mut s) = s.lock()
        {
            let _ = match r.level() {
                Level::Error => s.err(&line),
                Level::Warn => s.warning(&line),
                Level::Info => s.info(&line),
                Level::Debug | Level::Trace => s.debug(&line),
            };
        }
    }

    fn flush(&self) {}
}

/// Installs the logger. `to_syslog` sends a copy of every line to
/// `/dev/log` when it exists.
pub fn init(level: LevelFilter, to_syslog: bool) {
    let syslog = if to_syslog && std::path::Path::new("/dev/log").exists() {
        let f = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "kubeboot".into(),
            pid: std::process::id(),
        };
        syslog::unix(f).ok().map(Mutex::new)
    } else {
        None
    };
    let logger = Box::new(Logger { level, syslog });
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
