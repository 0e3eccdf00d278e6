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
pub mod examples;
pub mod keys;
pub mod renew;
pub mod table;
pub(crate) mod tree;

use std::fmt;
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::config::Settings;
use crate::error::{Error, Result};
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
    /// True when the entry wrote files.
    pub fn wrote(&self) -> bool {
        self.action != Action::Kept
    }
}

impl fmt::Display for Entry {
    /// `[certs] wrote ca (ECDSA P-256, valid until 2036-11-24)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.action {
            Action::Created => "wrote",
            Action::Kept => "using existing",
            Action::Regenerated(_) => "regenerated",
            Action::Supplied => "wrote supplied",
        };
        write!(
            f,
            "[{}] {verb} {} ({}",
            self.phase, self.name, self.algorithm
        )?;
        if let Some(t) = self.not_after {
            write!(f, ", valid until {}", tree::day(t))?;
        }
        if self.externally_managed {
            f.write_str(", externally managed")?;
        }
        f.write_str(")")?;
        if let Action::Regenerated(why) = &self.action {
            write!(f, ": {why}")?;
        }
        Ok(())
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
    tree::ensure(settings, paths, now, sync)
}

/// kubeadm's `--discovery-token-ca-cert-hash` of a PEM CA certificate:
/// `sha256:<hex>` over its DER SubjectPublicKeyInfo.
pub fn ca_hash(cert_pem: &[u8]) -> Result<String> {
    let der = cert::der_from_pem(cert_pem, "CA certificate")?;
    let info = cert::inspect(&der, "CA certificate")?;
    Ok(spki_hash(&info.spki))
}

/// PEM-encodes `der` under `tag` with LF line endings (as Go writes PEM).
pub(crate) fn pem_encode(tag: &str, der: Vec<u8>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, der), config)
}

/// `sha256:<hex>` of a DER SubjectPublicKeyInfo.
pub fn spki_hash(spki_der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, spki_der);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in d.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// One row of `certs check-expiration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpirationRow {
    /// kubeadm's name (`apiserver`, `admin.conf`, `etcd-ca`).
    pub name: String,
    /// True for a certificate authority.
    pub is_ca: bool,
    /// NotAfter; `None` when the file is missing.
    pub expires: Option<OffsetDateTime>,
    /// Time left (negative once expired); `None` when missing.
    pub residual: Option<time::Duration>,
    /// The signing CA's name (leaves only).
    pub ca: Option<String>,
    /// The CA's key is not on this node.
    pub externally_managed: bool,
}

/// Reads every certificate of the tree and the client certificates of the
/// kubeconfigs (admin.conf, controller-manager.conf, scheduler.conf,
/// super-admin.conf, as kubeadm lists them) and reports their expiry.
/// Leaves are sorted by name, then the CAs. Missing files give rows with
/// `expires: None`; a file that exists but does not parse is an error.
pub fn check_expiration(
    settings: &Settings,
    paths: &Paths,
    now: OffsetDateTime,
) -> Result<Vec<ExpirationRow>> {
    let w = tree::Writer {
        root: paths.root(),
        sync: Sync::Deferred,
        wrote: false,
    };
    let dir = paths.pki_dir(&settings.cluster.certificates_dir);
    let has_key =
        |stem: &str| -> Result<bool> { Ok(w.read(&dir.join(format!("{stem}.key")))?.is_some()) };
    let row_for = |name: &str,
                   is_ca: bool,
                   der: Option<Vec<u8>>,
                   ca: Option<&str>,
                   origin: &str|
     -> Result<_> {
        let expires = match der {
            Some(d) => Some(cert::inspect(&d, origin)?.not_after),
            None => None,
        };
        let ca_stem = table::row(ca.unwrap_or(name))
            .map(|r| r.stem)
            .unwrap_or("ca");
        Ok(ExpirationRow {
            name: name.to_string(),
            is_ca,
            expires,
            residual: expires.map(|t| t - now),
            ca: ca.map(str::to_string),
            externally_managed: !has_key(ca_stem)?,
        })
    };
    let mut leaves = Vec::new();
    let mut cas = Vec::new();
    for row in table::rows(settings) {
        let crt = dir.join(format!("{}.crt", row.stem));
        let origin = crt.display().to_string();
        let der = match w.read(&crt)? {
            Some(b) => Some(cert::der_from_pem(&b, &origin)?),
            None => None,
        };
        let r = row_for(row.name, row.is_ca(), der, row.ca, &origin)?;
        if row.is_ca() {
            cas.push(r)
        } else {
            leaves.push(r)
        }
    }
    for name in [
        "admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "super-admin.conf",
    ] {
        let path = paths.kubernetes_dir().join(name);
        let origin = path.display().to_string();
        let der = match w.read(&path)? {
            Some(b) => Some(
                crate::kubeconfig::client_cert_der(&b, paths)
                    .map_err(|e| Error::Invalid(format!("{origin}: {e}")))?,
            ),
            None => None,
        };
        leaves.push(row_for(name, false, der, Some("ca"), &origin)?);
    }
    leaves.sort_by(|a, b| a.name.cmp(&b.name));
    leaves.extend(cas);
    Ok(leaves)
}

/// kubeadm's `ShortHumanDuration`: `364d`, `9y`, `23h`, `<invalid>`.
pub fn short_duration(d: time::Duration) -> String {
    let s = d.whole_seconds();
    if s < -1 {
        "<invalid>".into()
    } else if s < 0 {
        "0s".into()
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86400 {
        format!("{}h", s / 3600)
    } else if s < 86400 * 365 {
        format!("{}d", s / 86400)
    } else {
        format!("{}y", s / (86400 * 365))
    }
}

fn go_date(t: OffsetDateTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = t.to_offset(time::UtcOffset::UTC);
    let m = MONTHS[usize::from(u8::from(t.month())).saturating_sub(1) % 12];
    format!(
        "{m} {:02}, {} {:02}:{:02} UTC",
        t.day(),
        t.year(),
        t.hour(),
        t.minute()
    )
}

pub(crate) fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The two tables `kubeadm certs check-expiration` prints (certificates,
/// then certificate authorities); missing files print as `!MISSING! name`.
pub fn format_expiration_table(rows: &[ExpirationRow]) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let mut missing = String::new();
    let mut leaves = vec![vec![
        "CERTIFICATE".to_string(),
        "EXPIRES".into(),
        "RESIDUAL TIME".into(),
        "CERTIFICATE AUTHORITY".into(),
        "EXTERNALLY MANAGED".into(),
    ]];
    let mut cas = vec![vec![
        "CERTIFICATE AUTHORITY".to_string(),
        "EXPIRES".into(),
        "RESIDUAL TIME".into(),
        "EXTERNALLY MANAGED".into(),
    ]];
    for r in rows {
        let (Some(exp), Some(res)) = (r.expires, r.residual) else {
            missing.push_str(&format!("!MISSING! {}\n", r.name));
            continue;
        };
        if r.is_ca {
            cas.push(vec![
                r.name.clone(),
                go_date(exp),
                short_duration(res),
                yes_no(r.externally_managed),
            ]);
        } else {
            leaves.push(vec![
                r.name.clone(),
                go_date(exp),
                short_duration(res),
                r.ca.clone().unwrap_or_default(),
                yes_no(r.externally_managed),
            ]);
        }
    }
    format!("{missing}{}\n{}", columns(&leaves), columns(&cas))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_match_kubeadm() {
        let d = time::Duration::seconds;
        assert_eq!(short_duration(d(-5)), "<invalid>");
        assert_eq!(short_duration(d(30)), "30s");
        assert_eq!(short_duration(d(3599)), "59m");
        assert_eq!(short_duration(d(86399)), "23h");
        assert_eq!(short_duration(d(364 * 86400 + 5)), "364d");
        assert_eq!(short_duration(d(3650 * 86400)), "10y");
    }

    #[test]
    fn go_dates() {
        let t = time::Date::from_calendar_date(2027, time::Month::November, 26)
            .unwrap()
            .with_hms(19, 34, 7)
            .unwrap()
            .assume_utc();
        assert_eq!(go_date(t), "Nov 26, 2027 19:34 UTC");
    }
}
