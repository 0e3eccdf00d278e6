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
pub mod metadata;
pub mod network;
pub mod openstack;
pub mod url;

/// What asking one source gave, for `config show --source auto` and the
/// status file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempted {
    /// The source's name (where it looked).
    pub source: String,
    /// "found N bytes", the absent reason, or the error.
    pub outcome: String,
}

/// The result of asking sources in order.
#[derive(Debug)]
pub enum Search {
    /// A source held userdata; `tried` ends with it.
    Found {
        /// The source that held it.
        source: String,
        /// The raw bytes (for the envelope layer).
        data: Vec<u8>,
        /// Every source asked, in order.
        tried: Vec<Attempted>,
    },
    /// No source held userdata.
    NotFound {
        /// Every source asked, in order.
        tried: Vec<Attempted>,
        /// Whether a source failed in a way a later attempt may fix (so
        /// "no userdata" may not be the final answer).
        retryable: bool,
    },
}

/// Asks `sources` in order and stops at the first that holds userdata.
///
/// A source that exists but fails (unreadable file, metadata service
/// erroring past its budget) also stops the search: a higher-precedence
/// source is never skipped silently in favour of a lower one, which could
/// boot the node with a stale or unintended config. The result is then
/// `NotFound` with the error as the last attempt, retryable as the error is.
pub fn first_found(sources: &[Box<dyn Source>]) -> Search {
    let mut tried = Vec::new();
    for s in sources {
        let source = s.name();
        match s.fetch() {
            Ok(Fetch::Found(data)) => {
                tried.push(Attempted {
                    source: source.clone(),
                    outcome: format!("found {} bytes", data.len()),
                });
                return Search::Found {
                    source,
                    data,
                    tried,
                };
            }
            Ok(Fetch::Absent(why)) => tried.push(Attempted {
                source,
                outcome: why,
            }),
            Err(e) => {
                tried.push(Attempted {
                    source,
                    outcome: format!("error: {}", e.message),
                });
                return Search::NotFound {
                    tried,
                    retryable: e.retryable,
                };
            }
        }
    }
    Search::NotFound {
        tried,
        retryable: false,
    }
}
