//! Userdata sources: where the bytes come from (a file, the NoCloud seed
//! directory, Ignition's config locations, the kernel command line, cloud
//! metadata services, config disks, a config URL).
//!
//! A source fetches bytes or says "nothing here"; it never writes to the
//! host. The envelope layer turns the bytes into config documents.

pub mod local;

/// The outcome of asking one source.
#[derive(Debug)]
pub enum Fetch {
    /// Userdata was found.
    Found(Vec<u8>),
    /// The source exists but holds no userdata (404, empty, missing file).
    Absent(String),
}

/// A failure to read a source that exists (I/O error, 5xx after retries, timeout).
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct SourceError {
    /// The source's name, e.g. `nocloud seed /var/lib/cloud/seed/nocloud/user-data`.
    pub source_name: String,
    /// What went wrong.
    pub message: String,
    /// Whether a retry (next boot) may help.
    pub retryable: bool,
}

/// One place userdata may come from.
pub trait Source {
    /// A human name that says where it looked (path or URL).
    fn name(&self) -> String;
    /// Reads the userdata.
    fn fetch(&self) -> Result<Fetch, SourceError>;
}

pub mod azure;
pub mod digitalocean;
pub mod disk;
pub mod ec2;
pub mod gce;
pub mod hetzner;
pub mod http;
pub mod network;
pub mod openstack;
pub mod url;
