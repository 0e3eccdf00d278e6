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
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration or userdata is invalid (names the field or file).
    #[error("{0}")]
    Invalid(String),
    /// A file-system operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The cluster could not be trusted (signature or CA pin mismatch):
    /// retrying will not help; the join material must be fixed.
    #[error("{0}")]
    Untrusted(String),
    /// No source held userdata (exit 1; the message lists what was tried).
    #[error("{0}")]
    NoUserdata(String),
    /// The host is not fit to become this node (a preflight check failed):
    /// a rerun fails the same way until the host is fixed.
    #[error("{0}")]
    HostUnfit(String),
    /// Any other runtime failure.
    #[error("{0}")]
    Failed(String),
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

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
