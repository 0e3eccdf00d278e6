//! `certs check-expiration`: the expiry of every certificate of the PKI
//! table and of every kubeconfig the kubeconfig table marks as renewed, in
//! kubeadm's two tables.

use time::OffsetDateTime;

use super::{cert, kubeconfig, table, tree};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::host::Paths;
use crate::host::fs::Sync;

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
/// kubeconfigs kubeadm renews (the kubeconfig table's `renewed` rows: all
/// but kubelet.conf, whose certificate the kubelet rotates) and reports
/// their expiry.
/// Leaves are sorted by name, then the CAs. Missing files give rows with
/// `expires: None`; a file that exists but does not parse is an error.
pub fn check_expiration(
    settings: &Settings,
    paths: &Paths,
    now: OffsetDateTime,
) -> Result<Vec<ExpirationRow>> {
    let w = tree::Writer {
        paths,
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
    for name in kubeconfig::KUBECONFIGS
        .iter()
        .filter(|k| k.renewed)
        .map(|k| k.file)
    {
        let path = paths.kubernetes_dir().join(name);
        let origin = path.display().to_string();
        let der = match w.read(&path)? {
            Some(b) => Some(
                kubeconfig::client_cert_der(&b, paths)
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
        for (c, width) in r.iter().zip(&widths) {
            line.push_str(c);
            line.push_str(&" ".repeat(width - c.chars().count() + 3));
        }
        // the last column's padding goes with the trailing spaces
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
        // each unit's first value, as k8s.io/apimachinery/pkg/util/duration's
        // ShortHumanDuration gives it (`seconds < 60`, `minutes < 60`,
        // `hours < 24`, `hours < 24*365`; -1 s is still "0s")
        for (secs, want) in [
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3600, "1h"),
            (86400, "1d"),
            (365 * 86400, "1y"),
        ] {
            assert_eq!(short_duration(d(secs)), want, "{secs} s");
        }
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
