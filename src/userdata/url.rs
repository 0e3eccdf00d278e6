//! A config URL, as a PXE-booted node gets it on the kernel command line:
//! `kubeboot.config=<url>`, optionally `kubeboot.config.sha256=<hex>` (the
//! fetched bytes must hash to it) and `kubeboot.config.ca=<path>` (a PEM
//! CA bundle under `--root` to verify HTTPS with instead of the system
//! roots).
//!
//! Rules: `https://` is verified against the CA file or the system roots
//! (`rustls-native-certs`: `SSL_CERT_FILE`/`SSL_CERT_DIR` or the
//! distribution bundle); `http://` is accepted only when a sha256 pins the
//! content; at most [`MAX_REDIRECTS`] redirects, never from https to
//! unpinned http; bodies over 16 MiB are refused; a hash mismatch is a
//! permanent error. Transient failures are retried within the budget like
//! the metadata services.

use std::path::PathBuf;
use std::time::Duration;

use super::metadata;
use super::{Fetch, Source, SourceError};
use crate::error::Error;
use crate::host::Paths;
use crate::net::http::{self, Method, Reply, Retry, Step};
use crate::platform::cmdline_arg;

/// Redirects followed per attempt.
pub const MAX_REDIRECTS: usize = 5;

/// Where the config is and how to trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigUrl {
    /// The URL (`https://` or pinned `http://`).
    pub url: String,
    /// The SHA-256 the content must have.
    pub sha256: Option<[u8; 32]>,
    /// A PEM CA bundle to verify HTTPS with (instead of the system roots).
    pub ca_file: Option<PathBuf>,
}

impl ConfigUrl {
    /// Validates a URL, an optional hex SHA-256 pin and an optional CA file.
    pub fn new(
        url: &str,
        sha256_hex: Option<&str>,
        ca_file: Option<PathBuf>,
    ) -> Result<Self, Error> {
        let sha256 = sha256_hex.map(parse_sha256).transpose()?;
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("http://") {
            if sha256.is_none() {
                return Err(Error::Invalid(format!(
                    "kubeboot.config={url}: plain http:// is only accepted with kubeboot.config.sha256= pinning the content"
                )));
            }
        } else if !lower.starts_with("https://") {
            return Err(Error::Invalid(format!(
                "kubeboot.config={url}: only https:// and pinned http:// URLs are supported"
            )));
        }
        Ok(ConfigUrl {
            url: url.to_string(),
            sha256,
            ca_file,
        })
    }

    /// Reads `kubeboot.config=`, `kubeboot.config.sha256=` and
    /// `kubeboot.config.ca=` (a path resolved under the root) from the
    /// root's `/proc/cmdline`. `None` when there is no `kubeboot.config=`.
    pub fn from_cmdline(paths: &Paths) -> Result<Option<Self>, Error> {
        let cmdline = std::fs::read_to_string(paths.proc_cmdline()).unwrap_or_default();
        let Some(url) = cmdline_arg(&cmdline, "kubeboot.config") else {
            return Ok(None);
        };
        let ca = cmdline_arg(&cmdline, "kubeboot.config.ca").map(|p| paths.host(p));
        ConfigUrl::new(url, cmdline_arg(&cmdline, "kubeboot.config.sha256"), ca).map(Some)
    }
}

fn parse_sha256(hex: &str) -> Result<[u8; 32], Error> {
    let bad = || {
        Error::Invalid(format!(
            "kubeboot.config.sha256={hex}: expected 64 hex digits"
        ))
    };
    let hex = hex.trim();
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Fetches a [`ConfigUrl`].
pub struct ConfigUrlSource {
    cfg: ConfigUrl,
    retry: Retry,
}

impl ConfigUrlSource {
    /// Fetches `cfg` within `budget`.
    pub fn new(cfg: ConfigUrl, budget: Duration) -> Self {
        Self::with_retry(cfg, Retry::within(budget))
    }

    /// Like [`ConfigUrlSource::new`] with an explicit retry shape.
    pub fn with_retry(cfg: ConfigUrl, retry: Retry) -> Self {
        ConfigUrlSource { cfg, retry }
    }

    fn err(&self, message: String, retryable: bool) -> SourceError {
        SourceError {
            source_name: self.name(),
            message,
            retryable,
        }
    }

    /// The trust roots: the CA file, else the system roots.
    fn roots(&self) -> Result<Vec<ureq::tls::Certificate<'static>>, SourceError> {
        if let Some(path) = &self.cfg.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| self.err(format!("reading CA file {}: {e}", path.display()), false))?;
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                    Ok(_) => {}
                    Err(e) => {
                        return Err(self.err(format!("CA file {}: {e}", path.display()), false));
                    }
                }
            }
            if certs.is_empty() {
                return Err(self.err(
                    format!("CA file {} holds no certificate", path.display()),
                    false,
                ));
            }
            return Ok(certs);
        }
        let loaded = rustls_native_certs::load_native_certs();
        let certs: Vec<_> = loaded
            .certs
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
            .collect();
        if certs.is_empty() && self.cfg.url.to_ascii_lowercase().starts_with("https://") {
            return Err(self.err(
                "no system CA certificates found (SSL_CERT_FILE, SSL_CERT_DIR or the distribution bundle); \
                 give kubeboot.config.ca=<PEM file>"
                    .into(),
                false,
            ));
        }
        Ok(certs)
    }

    /// One attempt: GET, following at most [`MAX_REDIRECTS`] redirects.
    fn attempt(&self, agent: &ureq::Agent, timeout: Duration) -> Step<Reply> {
        let mut url = self.cfg.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let reply = match http::send(agent, Method::Get, &url, &[], timeout) {
                Step::Done(r) => r,
                other => return other,
            };
            if !matches!(reply.status, 301 | 302 | 303 | 307 | 308) {
                return Step::Done(reply);
            }
            let Some(loc) = reply.location else {
                return Step::Stop(format!(
                    "{} from {url} without a Location",
                    http::status_text(reply.status)
                ));
            };
            let next = resolve(&url, &loc);
            let lower = next.to_ascii_lowercase();
            let allowed = lower.starts_with("https://")
                || (lower.starts_with("http://") && self.cfg.sha256.is_some());
            if !allowed {
                return Step::Stop(format!(
                    "refusing redirect from {url} to {next} (only https, or http with a sha256 pin)"
                ));
            }
            url = next;
        }
        Step::Stop(format!("more than {MAX_REDIRECTS} redirects"))
    }
}

/// Resolves a Location header against the URL it came from.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let origin_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{}{rest}", &base[..scheme_end]);
    }
    if location.starts_with('/') {
        return format!("{}{location}", &base[..origin_end]);
    }
    let path = base[origin_end..].split(['?', '#']).next().unwrap_or("");
    let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
    let dir = if dir.is_empty() { "/" } else { dir };
    format!("{}{dir}{location}", &base[..origin_end])
}

impl Source for ConfigUrlSource {
    fn name(&self) -> String {
        match &self.cfg.sha256 {
            Some(h) => format!("config url {} (sha256 {})", self.cfg.url, to_hex(h)),
            None => format!("config url {}", self.cfg.url),
        }
    }

    fn fetch(&self) -> Result<Fetch, SourceError> {
        let agent = http::agent(Some(self.roots()?));
        let (reply, tried) = match http::retry(
            &self.retry,
            |t| self.attempt(&agent, t),
            |r: &Reply| http::status_text(r.status),
        ) {
            Ok(v) => v,
            Err(g) => {
                return Err(metadata::gave_up_error(&self.name(), g, ""));
            }
        };
        let found = metadata::interpret(&self.name(), reply, &tried)?;
        if let (Fetch::Found(bytes), Some(want)) = (&found, &self.cfg.sha256) {
            let got = ring::digest::digest(&ring::digest::SHA256, bytes);
            if got.as_ref() != want {
                return Err(self.err(
                    format!(
                        "content sha256 {} does not match the pinned sha256 {} ({tried})",
                        to_hex(got.as_ref()),
                        to_hex(want)
                    ),
                    false,
                ));
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_schemes_and_pins() {
        let pin = "ab".repeat(32);
        assert!(ConfigUrl::new("https://h/x", None, None).is_ok());
        assert!(ConfigUrl::new("http://h/x", Some(&pin), None).is_ok());
        let e = ConfigUrl::new("http://h/x", None, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("only accepted with kubeboot.config.sha256"),
            "{e}"
        );
        assert!(ConfigUrl::new("ftp://h/x", None, None).is_err());
        assert!(ConfigUrl::new("https://h/x", Some("abc"), None).is_err());
        assert!(ConfigUrl::new("https://h/x", Some(&"zz".repeat(32)), None).is_err());
        assert_eq!(
            ConfigUrl::new("https://h/x", Some(&pin), None)
                .unwrap()
                .sha256,
            Some([0xab; 32])
        );
    }

    #[test]
    fn resolves_locations() {
        assert_eq!(resolve("https://a:1/b/c?q", "/d"), "https://a:1/d");
        assert_eq!(resolve("https://a:1/b/c", "d"), "https://a:1/b/d");
        assert_eq!(resolve("https://a:1", "d"), "https://a:1/d");
        assert_eq!(resolve("https://a/b", "//c/d"), "https://c/d");
        assert_eq!(resolve("https://a/b", "http://c/d"), "http://c/d");
    }

    #[test]
    fn reads_the_kernel_command_line() {
        let dir = std::env::temp_dir().join(format!("kubeboot-url-cmdline-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("proc")).unwrap();
        let paths = Paths::new(&dir);
        assert_eq!(ConfigUrl::from_cmdline(&paths).unwrap(), None);
        std::fs::write(
            dir.join("proc/cmdline"),
            "quiet kubeboot.config=https://10.0.0.1/n.yaml kubeboot.config.ca=/etc/ca.pem\n",
        )
        .unwrap();
        let c = ConfigUrl::from_cmdline(&paths).unwrap().unwrap();
        assert_eq!(
            (c.url.as_str(), c.ca_file),
            ("https://10.0.0.1/n.yaml", Some(dir.join("etc/ca.pem")))
        );
        std::fs::write(
            dir.join("proc/cmdline"),
            "kubeboot.config=http://10.0.0.1/n.yaml\n",
        )
        .unwrap();
        assert!(ConfigUrl::from_cmdline(&paths).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
