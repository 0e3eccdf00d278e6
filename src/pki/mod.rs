//! The Kubernetes PKI under the certificate directory: kubeadm's certificate
//! tree as a declarative table ([`table::CERTS`]), load-or-create over it
//! ([`ensure_tree`]), key algorithms ([`keys`]), the CA pin hash
//! ([`ca_hash`]) and expiry checks ([`check_expiration`]).
//!
//! Generated keys are ECDSA P-256 (default) or P-384 through rcgen + ring.
//! RSA keys are not generated (ring cannot), but existing RSA and ECDSA CA
//! keys supplied by the user — PKCS#1, SEC1 or PKCS#8 — load and sign.

pub mod cert;
mod der;
pub mod expiry;
pub mod keys;
pub mod kubeconfig;
pub mod renew;
pub mod table;
pub(crate) mod tree;

use std::fmt;
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::config::Settings;
use crate::error::Result;
use crate::host::Paths;
use crate::host::fs::Sync;

pub use tree::{BACKDATE, CERT_MODE, SECRET_MODE};

/// What load-or-create did with one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Generated because nothing was there.
    Created,
    /// An existing valid file was reused untouched.
    Kept,
    /// Replaced or completed because the existing material did not fit (the reason).
    Regenerated(String),
    /// Written from CA material supplied in the config.
    Supplied,
}

/// One certificate, key pair or kubeconfig handled by a phase.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `certs` or `kubeconfig`.
    pub phase: &'static str,
    /// kubeadm's name (`ca`, `etcd-server`, `sa`, `admin.conf`).
    pub name: String,
    /// Files involved.
    pub paths: Vec<PathBuf>,
    /// What was done.
    pub action: Action,
    /// Public key algorithm: "ECDSA P-256", "RSA 2048", ...
    pub algorithm: String,
    /// Certificate NotAfter (none for `sa`).
    pub not_after: Option<OffsetDateTime>,
    /// A CA whose key is not here, or a leaf of one.
    pub externally_managed: bool,
}

impl Entry {
    /// What was done, without the phase: `wrote ca (ECDSA P-256, valid
    /// until 2036-11-24)`.
    pub fn summary(&self) -> String {
        let verb = match self.action {
            Action::Created => "wrote",
            Action::Kept => "using existing",
            Action::Regenerated(_) => "regenerated",
            Action::Supplied => "wrote supplied",
        };
        let mut s = format!("{verb} {} ({}", self.name, self.algorithm);
        if let Some(t) = self.not_after {
            s.push_str(&format!(", valid until {}", tree::day(t)));
        }
        if self.externally_managed {
            s.push_str(", externally managed");
        }
        s.push(')');
        if let Action::Regenerated(why) = &self.action {
            s.push_str(&format!(": {why}"));
        }
        s
    }
}

impl fmt::Display for Entry {
    /// `[certs] wrote ca (ECDSA P-256, valid until 2036-11-24)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.phase, self.summary())
    }
}

/// What a phase did, entry by entry, in table order.
#[derive(Debug, Clone, Default)]
pub struct PkiReport {
    /// One entry per certificate / key pair / kubeconfig.
    pub entries: Vec<Entry>,
}

impl PkiReport {
    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }
}

impl fmt::Display for PkiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Load-or-create the whole certificate tree for `settings` (kubeadm's
/// `certs` phase): CA material supplied in the config is written first
/// (refused if it conflicts with a different CA on disk); existing valid
/// files are kept; missing or invalid leaves are issued by their CA; a CA is
/// never regenerated over an existing one; a CA certificate without its key
/// is external-CA mode, where every leaf must already exist and verify.
/// `sa.key`/`sa.pub` are included. With external etcd the etcd rows are
/// left out; a worker gets an empty report. On a control-plane join the
/// shared CAs and `sa.key` must already be present.
///
/// `now` is the start time (truncated to seconds): NotBefore is `now - 5
/// min`, NotAfter `now + validity`. With [`Sync::Deferred`] one `syncfs` is
/// issued before returning if anything was written.
pub fn ensure_tree(
    settings: &Settings,
    paths: &Paths,
    now: OffsetDateTime,
    sync: Sync,
) -> Result<PkiReport> {
    Ok(tree::ensure(settings, paths, now, sync, &|_| true)?.0)
}

/// [`ensure_tree`] for the certificates `want` names (kubeadm's
/// `certs/<name>` sub-phases: `ca`, `apiserver`, ..., `sa`; a CA that a
/// selected leaf needs is loaded from disk, never created), also handing back the cluster CA (`ca`, with its
/// key when at hand) when the run loaded or created it, so that the
/// kubeconfig phase signs with it without reading it again
/// ([`kubeconfig::ensure_kubeconfigs_with`]).
pub(crate) fn ensure_tree_keeping_ca(
    settings: &Settings,
    paths: &Paths,
    now: OffsetDateTime,
    sync: Sync,
    want: &dyn Fn(&str) -> bool,
) -> Result<(PkiReport, Option<tree::Ca>)> {
    tree::ensure(settings, paths, now, sync, want)
}

/// kubeadm's `--discovery-token-ca-cert-hash` of a PEM CA certificate:
/// `sha256:<hex>` over its DER SubjectPublicKeyInfo.
pub fn ca_hash(cert_pem: &[u8]) -> Result<String> {
    let der = cert::der_from_pem(cert_pem, "CA certificate")?;
    let info = cert::inspect(&der, "CA certificate")?;
    Ok(spki_hash(&info.spki))
}

/// PEM-encodes `der` under `tag` with LF line endings and 64-column lines
/// (as Go's encoding/pem writes it). Each 48 bytes of input are one
/// line of base64, written straight into the result: no intermediate
/// copy of the (possibly secret) input or of its base64.
pub(crate) fn pem_encode(tag: &str, der: &[u8]) -> String {
    use base64::Engine;
    let lines = der.len().div_ceil(48);
    let mut out = String::with_capacity(2 * tag.len() + 32 + der.len().div_ceil(3) * 4 + lines);
    out.push_str("-----BEGIN ");
    out.push_str(tag);
    out.push_str("-----\n");
    for chunk in der.chunks(48) {
        base64::engine::general_purpose::STANDARD.encode_string(chunk, &mut out);
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(tag);
    out.push_str("-----\n");
    out
}

/// `sha256:<hex>` of a DER SubjectPublicKeyInfo.
pub fn spki_hash(spki_der: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(spki_der))
}

/// The SHA-256 of `bytes`, in lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut s = String::with_capacity(64);
    for b in d.as_ref() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    /// A report prints one line per entry, in the tree's order.
    #[test]
    fn a_report_prints_each_entry_on_its_line() {
        let dir = std::env::temp_dir().join(format!("kubeboot-pki-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let paths = crate::host::Paths::new(&dir);
        let settings = crate::config::examples::pki_control_plane();
        let now = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let report = super::ensure_tree(&settings, &paths, now, super::Sync::Deferred).unwrap();
        let lines: Vec<String> = report.entries.iter().map(|e| e.to_string()).collect();
        // kubeadm's certs phase: 10 certificates and sa
        assert_eq!(lines.len(), 11, "{lines:?}");
        assert_eq!(report.to_string(), lines.join("\n") + "\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The PEM writer matches the pem crate's encoder (LF, 64 columns) for
    /// every length around the line and padding boundaries.
    #[test]
    fn pem_encode_matches_the_pem_crate() {
        for n in (0..200).chain([1000, 1217]) {
            let der: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
            let want = pem::encode_config(&pem::Pem::new("EC PRIVATE KEY", der.clone()), config);
            assert_eq!(super::pem_encode("EC PRIVATE KEY", &der), want, "{n} bytes");
        }
    }
}
