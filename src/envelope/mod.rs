//! Envelopes: the formats userdata arrives in (cloud-config, MIME multipart,
//! gzip, Ignition JSON, kernel arguments), unwrapped down to the config
//! documents they carry and the files they ask to be written.
//!
//! Pure: no host access beyond the [`HostFacts`] passed in for Cluster API
//! `## template: jinja` substitution.

use crate::host::HostFacts;

/// Largest userdata accepted, before and after decompression.
pub const MAX_USERDATA_BYTES: usize = 16 * 1024 * 1024;

/// What was found inside one piece of userdata.
#[derive(Debug, Default)]
pub struct Unwrapped {
    /// The envelope kind that matched, e.g. `cloud-config`, `ignition 3.4.0`.
    pub kind: String,
    /// Config documents, in the order found.
    pub documents: Vec<Document>,
    /// Files the envelope carries that must be on disk before the PKI work
    /// (e.g. Cluster API's CA certs and keys under /etc/kubernetes/pki/).
    pub files: Vec<CarriedFile>,
    /// `kubeboot.config=<url>` references that still have to be fetched.
    pub config_urls: Vec<ConfigUrl>,
    /// Things the user should know (ignored parts, unsupported directives).
    pub warnings: Vec<String>,
}

/// One config document found in an envelope.
#[derive(Debug, Clone)]
pub struct Document {
    /// Where it came from, for messages: `cloud-config kubeboot key`,
    /// `write_files[3] /run/kubeadm/kubeadm.yaml`, `kernel command line`.
    pub origin: String,
    /// Prefix for field paths in messages (`kubeboot.` inside a cloud-config).
    pub field_prefix: String,
    /// The document itself.
    pub body: DocBody,
}

/// The content of a config document.
#[derive(Debug, Clone)]
pub enum DocBody {
    /// YAML text: a kubeboot NodeConfig or a kubeadm multi-document config.
    Yaml(String),
    /// A kubeboot NodeConfig already parsed as a YAML mapping (the
    /// cloud-config `kubeboot:` key).
    Value(serde_norway::Value),
    /// `kubeboot.*` kernel arguments, key without the `kubeboot.` prefix.
    KernelArgs(Vec<(String, String)>),
}

/// A file an envelope carries (cloud-init `write_files`, Ignition `storage.files`).
#[derive(Clone)]
pub struct CarriedFile {
    /// Absolute host path.
    pub path: String,
    /// Decoded content (may be a private key: never print it).
    pub content: Vec<u8>,
    /// File mode (default 0644).
    pub mode: u32,
}

impl std::fmt::Debug for CarriedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarriedFile")
            .field("path", &self.path)
            .field("bytes", &self.content.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// A config to fetch from a URL (PXE `kubeboot.config=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigUrl {
    /// The URL.
    pub url: String,
    /// Optional pinned sha256 of the content, lowercase hex.
    pub sha256: Option<String>,
}

/// Why userdata could not be unwrapped. Always "invalid input".
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvelopeError(pub String);

/// Finds the config documents and carried files inside `bytes`.
pub fn unwrap(bytes: &[u8], facts: &HostFacts) -> Result<Unwrapped, EnvelopeError> {
    let _ = (bytes, facts);
    Err(EnvelopeError("envelope parsing is not implemented yet".into()))
}
