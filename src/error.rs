//! The top-level error type and its mapping to exit codes.
//!
//! Exit codes: 0 success, 1 failure (retrying may help, or the host is not
//! fit), 2 invalid input or usage (fix the userdata or command line).

use std::io;
use std::path::PathBuf;

/// Exit code for invalid input or usage.
pub const EXIT_INVALID: i32 = 2;
/// Exit code for runtime failures.
pub const EXIT_FAILURE: i32 = 1;

/// Any error kubeboot reports.
///
/// Its `Display` passes every message through [`crate::secret::scrub`]:
/// whatever a message quotes (a value pasted into the wrong field, a URL,
/// a server's answer), no token, certificate key or known secret reaches
/// the console, the journal or the status file, and quoted values are short.
#[derive(Debug)]
pub enum Error {
    /// The configuration or userdata is invalid (names the field or file).
    Invalid(String),
    /// A file-system operation failed.
    Fs(FsError),
    /// The cluster could not be trusted (signature or CA pin mismatch):
    /// retrying will not help; the join material must be fixed.
    Untrusted(String),
    /// No source held userdata (exit 1; the message lists what was tried).
    NoUserdata(String),
    /// The host is not fit to become this node (a preflight check failed):
    /// a rerun fails the same way until the host is fixed.
    HostUnfit(String),
    /// Any other runtime failure.
    Failed(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Invalid(m)
            | Error::Untrusted(m)
            | Error::NoUserdata(m)
            | Error::HostUnfit(m)
            | Error::Failed(m) => f.write_str(&crate::secret::scrub(m)),
            Error::Fs(e) => f.write_str(&crate::secret::scrub(&e.to_string())),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Fs(e) => std::error::Error::source(e),
            _ => None,
        }
    }
}

impl From<FsError> for Error {
    fn from(e: FsError) -> Self {
        Error::Fs(e)
    }
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) => EXIT_INVALID,
            Error::Fs(_)
            | Error::Failed(_)
            | Error::HostUnfit(_)
            | Error::NoUserdata(_)
            | Error::Untrusted(_) => EXIT_FAILURE,
        }
    }

    /// Whether rerunning (rebooting) without changing the userdata or the
    /// host may help. This and [`Error::class`] are the one place that
    /// decides; the status file and the exit code only ask.
    pub fn retryable(&self) -> bool {
        matches!(self, Error::Fs(_) | Error::Failed(_))
    }

    /// A short machine-readable class, for the status file.
    pub fn class(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid-input",
            Error::Fs(_) => "filesystem",
            Error::NoUserdata(_) => "no-userdata",
            Error::Untrusted(_) => "untrusted-cluster",
            // the status file's documented class for preflight failures
            Error::Failed(_) | Error::HostUnfit(_) => "failed",
        }
    }
}

/// An I/O failure with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct FsError {
    /// What was being done ("writing", "creating directory", ...).
    pub op: &'static str,
    /// The path involved.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl FsError {
    /// Wraps an I/O error with an operation and a path.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        FsError {
            op,
            path: path.into(),
            source,
        }
    }
}

impl Error {
    /// The same error (same class, exit code and retryability) with `what`
    /// in front: `what: message`. The one way context (a file, a URL, a
    /// step) is added where an error crosses an I/O boundary. A
    /// filesystem error already names its path and is kept as it is.
    pub fn context(self, what: impl std::fmt::Display) -> Error {
        match self {
            Error::Invalid(m) => Error::Invalid(format!("{what}: {m}")),
            Error::Untrusted(m) => Error::Untrusted(format!("{what}: {m}")),
            Error::NoUserdata(m) => Error::NoUserdata(format!("{what}: {m}")),
            Error::HostUnfit(m) => Error::HostUnfit(format!("{what}: {m}")),
            Error::Failed(m) => Error::Failed(format!("{what}: {m}")),
            Error::Fs(e) => Error::Fs(e),
        }
    }
}

/// [`Error::context`] on a `Result`.
pub trait Context<T> {
    /// Adds `what` in front of the error, keeping its class.
    fn context(self, what: impl std::fmt::Display) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(what))
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
