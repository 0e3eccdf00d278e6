//! `kubeboot certs renew all|NAME…`: kubeadm's certificate renewal
//! (`cmd/kubeadm/app/phases/certs/renewal/manager.go`, `RenewUsingLocalCA`).
//!
//! As kubeadm: only leaves signed by a CA whose key is on this node are
//! renewed (never a CA); the new certificate keeps the old one's subject
//! (CN and O), SANs and extended key usages (kubeadm's `certToConfig`), and
//! gets a NEW private key (`FileRenewer.Renew` in `filerenewer.go` calls
//! `pkiutil.NewCertAndKey`, which generates one), with the configured
//! validity and a 5-minute backdate. The client certificates embedded in
//! admin.conf, super-admin.conf, controller-manager.conf and scheduler.conf
//! are renewed in place (only the two data fields change); kubelet.conf is
//! left to the kubelet's own rotation, as kubeadm does.
//!
//! Ours on top: `--if-expiring-within` renews only what expires inside the
//! window (a key that no longer matches its certificate, e.g. after an
//! interrupted renewal, is always renewed); NotAfter never passes the CA's
//! own NotAfter; a leaf not signed by the CA on disk is refused; and the
//! static pods that read a renewed file are restarted by changing an
//! annotation in their manifests, in dependency order (etcd, API server,
//! controller manager, scheduler), so the kubelet recreates each pod.

use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use ring::rand::SystemRandom;
use serde::Serialize;
use time::OffsetDateTime;

use super::cert::{self, CertRequest};
use super::keys::Key;
use super::table;
use super::tree::{self, BACKDATE, CERT_MODE, SECRET_MODE, Writer};
use crate::config::{KeyAlgorithm, Settings};
use crate::error::{Error, Result};
use crate::host::Paths;
use crate::host::fs::{self, Sync};

/// The names `certs renew` accepts, sorted as kubeadm's `Certificates()`.
pub const NAMES: [&str; 11] = [
    "admin.conf",
    "apiserver",
    "apiserver-etcd-client",
    "apiserver-kubelet-client",
    "controller-manager.conf",
    "etcd-healthcheck-client",
    "etcd-peer",
    "etcd-server",
    "front-proxy-client",
    "scheduler.conf",
    "super-admin.conf",
];

/// The annotation bumped in a static pod manifest to make the kubelet
/// recreate the pod after its certificates were renewed.
pub const RESTART_ANNOTATION: &str = "kubeboot.dev/certs-renewed-at";

/// Static pods in restart order, and the certificates each one reads.
const PODS: [(&str, &[&str]); 4] = [
    ("etcd", &["etcd-server", "etcd-peer"]),
    (
        "kube-apiserver",
        &[
            "apiserver",
            "apiserver-kubelet-client",
            "apiserver-etcd-client",
            "front-proxy-client",
        ],
    ),
    ("kube-controller-manager", &["controller-manager.conf"]),
    ("kube-scheduler", &["scheduler.conf"]),
];

/// What renewal did with one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Renewed: new key and certificate written.
    Renewed,
    /// Outside the `--if-expiring-within` window: untouched.
    NotDue,
    /// The file is not on this node (kubeadm's `MISSING!`).
    Missing,
    /// Due, but its CA's key is not here (external CA): cannot sign.
    CannotSign,
    /// Renewal failed (the message says why).
    Failed,
}

/// One certificate's row of the report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// kubeadm's name.
    pub name: String,
    /// What happened.
    pub outcome: Outcome,
    /// The file (certificate or kubeconfig).
    pub file: String,
    /// NotAfter before, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_before: Option<String>,
    /// NotAfter after renewal, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<String>,
    /// Why (for not-due, cannot-sign, failed).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The whole run, as written to the renewal status file.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `success` (nothing due was left unrenewed) or `failure`.
    pub result: String,
    /// The window, as a Go duration, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// One row per certificate asked for, in kubeadm's order.
    pub certificates: Vec<Row>,
    /// Static pods whose manifests were changed, in the order changed.
    pub restarted: Vec<String>,
    /// What was seen of etcd's restart before the API server's manifest
    /// changed (a new etcd process, healthy), when etcd answered before.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restart_checks: Vec<String>,
    /// kubeboot's version.
    pub version: String,
    /// When the run finished, RFC 3339.
    pub finished_at: String,
}

impl Report {
    /// True when every certificate that was due got renewed.
    pub fn ok(&self) -> bool {
        self.certificates
            .iter()
            .all(|r| !matches!(r.outcome, Outcome::CannotSign | Outcome::Failed))
    }

    /// Certificates renewed.
    pub fn renewed(&self) -> usize {
        self.certificates
            .iter()
            .filter(|r| r.outcome == Outcome::Renewed)
            .count()
    }
}

/// What to renew and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// kubeadm names; empty = all.
    pub names: Vec<String>,
    /// Renew only what expires within this many seconds.
    pub window_seconds: Option<u64>,
    /// The window as the status file shows it (`720h0m0s`).
    pub window_label: Option<String>,
    /// The key algorithm for new keys; `None` = the old key's (ECDSA
    /// P-384 stays P-384, anything else becomes P-256).
    pub key_algorithm: Option<KeyAlgorithm>,
    /// Change the affected static pod manifests.
    pub restart_pods: bool,
    /// How long to wait for the kubelet to restart etcd (a new process,
    /// healthy) before the next manifest changes (0: do not wait).
    pub restart_wait: std::time::Duration,
    /// How long to wait for the kubelet to restart the API server (seen
    /// gone, then `/livez` 200) before the controller manager's and the
    /// scheduler's manifests change (0: do not wait).
    pub apiserver_wait: std::time::Duration,
}

/// Checks names against kubeadm's list; `all` alone means every one.
pub fn resolve_names(args: &[String]) -> Result<Vec<String>> {
    if args.iter().any(|a| a == "all") {
        if args.len() > 1 {
            return Err(Error::Invalid(
                "certs renew: `all` cannot be combined with names".into(),
            ));
        }
        return Ok(NAMES.iter().map(|s| s.to_string()).collect());
    }
    let mut out: Vec<String> = Vec::new();
    for a in args {
        if !NAMES.contains(&a.as_str()) {
            return Err(Error::Invalid(format!(
                "certs renew: {a:?} is not a certificate kubeadm renews; one of: all, {}",
                NAMES.join(", ")
            )));
        }
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out.sort_by_key(|n| NAMES.iter().position(|x| x == n));
    Ok(out)
}

/// Parses a window: a Go duration (`720h`) or whole days (`30d`).
pub fn parse_window(s: &str) -> Option<u64> {
    match s.strip_suffix('d') {
        Some(days) if !days.is_empty() && days.bytes().all(|b| b.is_ascii_digit()) => {
            days.parse::<u64>().ok()?.checked_mul(86400)
        }
        _ => crate::config::resolve::parse_duration(s),
    }
}

/// RFC 3339 in UTC, whole seconds (`2026-11-28T08:00:31Z`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A certificate in a file, or the client certificate in a kubeconfig.
enum Source {
    /// `<dir>/<stem>.crt` + `.key`, signed by the CA row `ca`.
    Pki {
        crt: PathBuf,
        key: PathBuf,
        ca: &'static str,
    },
    /// A kubeconfig under /etc/kubernetes, signed by `ca`.
    Kubeconfig(PathBuf),
}

fn source(name: &str, settings: &Settings, paths: &Paths) -> Result<Source> {
    if name.ends_with(".conf") {
        return Ok(Source::Kubeconfig(paths.kubernetes_dir().join(name)));
    }
    let row = table::row(name)
        .filter(|r| !r.is_ca())
        .ok_or_else(|| Error::Invalid(format!("certs renew: unknown certificate {name:?}")))?;
    let dir = paths.pki_dir(&settings.cluster.certificates_dir);
    Ok(Source::Pki {
        crt: dir.join(format!("{}.crt", row.stem)),
        key: dir.join(format!("{}.key", row.stem)),
        ca: row.ca.unwrap_or("ca"),
    })
}

/// A certificate (DER) and its key (PEM) when there is one.
type CertAndKey = (Vec<u8>, Option<Vec<u8>>);

/// The current certificate (DER) and key (PEM) of a source; `None` when
/// the certificate is missing.
fn read_current(src: &Source, w: &Writer<'_>, paths: &Paths) -> Result<Option<CertAndKey>> {
    match src {
        Source::Pki { crt, key, .. } => {
            let Some(b) = w.read(crt)? else {
                return Ok(None);
            };
            let der = cert::der_from_pem(&b, &crt.display().to_string())?;
            Ok(Some((der, w.read(key)?)))
        }
        Source::Kubeconfig(path) => {
            let Some(b) = w.read(path)? else {
                return Ok(None);
            };
            let (cert_pem, key) = crate::pki::kubeconfig::client_cert_and_key(&b, paths)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
            let der = cert::der_from_pem(&cert_pem, &path.display().to_string())?;
            Ok(Some((der, Some(key.expose().as_bytes().to_vec()))))
        }
    }
}

/// Replaces the embedded client certificate and key of a kubeconfig,
/// leaving every other byte as it was.
fn rewrite_kubeconfig(
    text: &str,
    old_cert_pem: &[u8],
    old_key_pem: &[u8],
    cert_pem: &str,
    key_pem: &str,
) -> std::result::Result<String, String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (oc, ok) = (b64.encode(old_cert_pem), b64.encode(old_key_pem));
    let field = |name: &str, value: &str| format!("{name}: {value}");
    let c_old = field("client-certificate-data", &oc);
    let k_old = field("client-key-data", &ok);
    if text.matches(&c_old).count() != 1 || text.matches(&k_old).count() != 1 {
        return Err(
            "its client certificate and key are not embedded once each (client-certificate-data, \
             client-key-data); kubeboot renews embedded ones only"
                .into(),
        );
    }
    Ok(text
        .replace(
            &c_old,
            &field("client-certificate-data", &b64.encode(cert_pem)),
        )
        .replace(&k_old, &field("client-key-data", &b64.encode(key_pem))))
}

struct Renewer<'a> {
    settings: &'a Settings,
    paths: &'a Paths,
    opts: &'a Options,
    now: OffsetDateTime,
    rng: SystemRandom,
    w: Writer<'a>,
    /// The CAs loaded so far, each read, parsed and loaded for signing once
    /// for all the certificates it renews.
    cas: HashMap<&'static str, Rc<tree::Ca>>,
}

impl Renewer<'_> {
    /// The CA `name`, read from disk the first time it is asked for.
    fn ca(&mut self, name: &'static str) -> Result<Rc<tree::Ca>> {
        if let Some(ca) = self.cas.get(name) {
            return Ok(ca.clone());
        }
        let ca = Rc::new(tree::load_ca(self.settings, self.paths, &self.w, name)?);
        self.cas.insert(name, ca.clone());
        Ok(ca)
    }

    fn one(&mut self, name: &str) -> Result<Row> {
        let src = source(name, self.settings, self.paths)?;
        let (file, ca_name) = match &src {
            Source::Pki { crt, ca, .. } => (crt.clone(), *ca),
            Source::Kubeconfig(p) => (p.clone(), "ca"),
        };
        let mut row = Row {
            name: name.to_string(),
            outcome: Outcome::Missing,
            file: file.display().to_string(),
            expires_before: None,
            expires_after: None,
            message: String::new(),
        };
        let Some((der, key_pem)) = read_current(&src, &self.w, self.paths)? else {
            row.message = format!("{} is not on this node", file.display());
            return Ok(row);
        };
        let origin = file.display().to_string();
        let info = cert::inspect(&der, &origin)?;
        row.expires_before = Some(rfc3339(info.not_after));
        let key = match &key_pem {
            Some(k) => Key::from_pem(k, &format!("{origin} key")).ok(),
            None => None,
        };
        let pair_ok = key.as_ref().is_some_and(|k| k.spki_der() == info.spki);
        if let Some(window) = self.opts.window_seconds {
            let left = info.not_after - self.now;
            if pair_ok && left.whole_seconds() > i64::try_from(window).unwrap_or(i64::MAX) {
                row.outcome = Outcome::NotDue;
                row.message = format!(
                    "{} left, outside the {} window",
                    super::expiry::short_duration(left),
                    super::expiry::short_duration(time::Duration::seconds(
                        i64::try_from(window).unwrap_or(i64::MAX)
                    ))
                );
                return Ok(row);
            }
        }
        let ca = self.ca(ca_name)?;
        let Some(ca_key) = &ca.key else {
            row.outcome = Outcome::CannotSign;
            row.message = format!(
                "cannot sign: the {ca_name} CA's key is not on this node (external CA mode: only {} is); \
                 have your CA issue a new certificate with the same subject and SANs",
                ca.path.display()
            );
            return Ok(row);
        };
        if !cert::signed_by(&der, &ca.der) {
            row.outcome = Outcome::Failed;
            row.message = format!(
                "not renewed: it is not signed by the {ca_name} CA in {}",
                ca.path.display()
            );
            return Ok(row);
        }
        if info.is_ca {
            return Err(Error::Failed(format!(
                "{origin}: is a CA certificate; certs renew never renews CAs"
            )));
        }
        if info.orgs.len() > 1 {
            row.outcome = Outcome::Failed;
            row.message = format!(
                "not renewed: its subject has {} organizations; kubeboot issues one",
                info.orgs.len()
            );
            return Ok(row);
        }
        let ca_info = cert::inspect(&ca.der, &ca.path.display().to_string())?;
        let mut not_after = tree::not_after(
            self.now,
            self.settings.cluster.cert_validity_seconds,
            "certificateValidity",
        )?;
        if not_after > ca_info.not_after {
            log::warn!(
                target: "renew",
                "{name}: the {ca_name} CA expires on {}; the renewed certificate ends then too",
                tree::day(ca_info.not_after)
            );
            not_after = ca_info.not_after;
        }
        let req = CertRequest {
            cn: info.cn.clone(),
            org: info.orgs.first().cloned(),
            is_ca: false,
            usages: info.usages.clone(),
            sans: info.sans.clone(),
            not_before: self.now - BACKDATE,
            not_after,
        };
        let algorithm = self
            .opts
            .key_algorithm
            .unwrap_or(if info.algorithm == "ECDSA P-384" {
                KeyAlgorithm::EcdsaP384
            } else {
                KeyAlgorithm::EcdsaP256
            });
        let new_key = Key::generate(algorithm)?;
        let new_der = cert::issue(&req, &new_key, Some(ca_key), &self.rng)?;
        let cert_pem = cert::to_pem(&new_der);
        let key_pem_new = new_key.to_pem();
        match &src {
            Source::Pki { crt, key, .. } => {
                // key first: a crash in between leaves a pair that does not
                // match, which the next run renews whatever the window
                self.w.write(key, key_pem_new.as_bytes(), SECRET_MODE)?;
                self.w.write(crt, cert_pem.as_bytes(), CERT_MODE)?;
            }
            Source::Kubeconfig(path) => {
                let text = self.w.read(path)?.unwrap_or_default();
                let text = String::from_utf8(text)
                    .map_err(|_| Error::Invalid(format!("{}: not UTF-8 text", path.display())))?;
                let old_cert = cert::to_pem(&der);
                let old_key = key_pem.unwrap_or_default();
                let new_text = rewrite_kubeconfig(
                    &text,
                    old_cert.as_bytes(),
                    &old_key,
                    &cert_pem,
                    &key_pem_new,
                )
                .or_else(|_| {
                    // the embedded PEM may differ in layout from ours: match the exact bytes
                    let (c, k) =
                        crate::pki::kubeconfig::client_cert_and_key(text.as_bytes(), self.paths)?;
                    rewrite_kubeconfig(&text, &c, k.expose().as_bytes(), &cert_pem, &key_pem_new)
                })
                .map_err(|e| Error::Failed(format!("{}: {e}", path.display())))?;
                self.w.write(path, new_text.as_bytes(), SECRET_MODE)?;
            }
        }
        row.outcome = Outcome::Renewed;
        row.expires_after = Some(rfc3339(not_after));
        if !pair_ok {
            row.message = "its key did not match the certificate (an interrupted renewal?)".into();
        }
        Ok(row)
    }
}

/// Adds or replaces `RESTART_ANNOTATION: <value>` in a static pod
/// manifest's `metadata.annotations`, keeping every other line; the result
/// is checked to parse with the annotation set.
pub fn bump_annotation(manifest: &str, value: &str) -> std::result::Result<String, String> {
    let entry = format!("    {RESTART_ANNOTATION}: \"{value}\"");
    let lines: Vec<&str> = manifest.lines().collect();
    let meta = lines
        .iter()
        .position(|l| *l == "metadata:")
        .ok_or("no top-level metadata")?;
    let block_end = lines[meta + 1..]
        .iter()
        .position(|l| !l.starts_with(' ') && !l.is_empty())
        .map_or(lines.len(), |i| meta + 1 + i);
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    match (meta + 1..block_end).find(|&i| lines[i] == "  annotations:") {
        Some(a) => {
            let ann_end = (a + 1..block_end)
                .find(|&i| !lines[i].starts_with("    "))
                .unwrap_or(block_end);
            match (a + 1..ann_end)
                .find(|&i| lines[i].starts_with(&format!("    {RESTART_ANNOTATION}:")))
            {
                Some(i) => out[i] = entry,
                None => out.insert(ann_end, entry),
            }
        }
        None => {
            out.insert(meta + 1, entry);
            out.insert(meta + 1, "  annotations:".into());
        }
    }
    let mut text = out.join("\n");
    if manifest.ends_with('\n') {
        text.push('\n');
    }
    let v: serde_norway::Value = serde_norway::from_str(&text)
        .map_err(|e| format!("does not parse after the change: {e}"))?;
    if v["metadata"]["annotations"][RESTART_ANNOTATION].as_str() != Some(value) {
        return Err("the annotation did not land in metadata.annotations".into());
    }
    Ok(text)
}

/// Renews the certificates `opts` names under `paths` (see the module
/// doc), then restarts the static pods that read a renewed one.
pub fn renew(
    settings: &Settings,
    paths: &Paths,
    opts: &Options,
    now: OffsetDateTime,
) -> Result<Report> {
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let mut r = Renewer {
        settings,
        paths,
        opts,
        now,
        rng: SystemRandom::new(),
        w: Writer {
            paths,
            sync: Sync::Deferred,
            wrote: false,
        },
        cas: HashMap::new(),
    };
    let names = if opts.names.is_empty() {
        resolve_names(&["all".to_string()])?
    } else {
        opts.names.clone()
    };
    let mut rows = Vec::new();
    for name in &names {
        let row = match r.one(name) {
            Ok(row) => row,
            Err(e) => Row {
                name: name.clone(),
                outcome: Outcome::Failed,
                file: String::new(),
                expires_before: None,
                expires_after: None,
                message: e.to_string(),
            },
        };
        rows.push(row);
    }
    // everything renewed is on disk before any pod is restarted
    r.w.finish(&paths.kubernetes_dir())?;
    let mut restarted = Vec::new();
    let mut checks = Vec::new();
    if opts.restart_pods {
        let stamp = rfc3339(now);
        for (pod, uses) in PODS {
            let renewed = rows
                .iter()
                .any(|row| row.outcome == Outcome::Renewed && uses.contains(&row.name.as_str()));
            if !renewed {
                continue;
            }
            let path = paths.manifests_dir().join(format!("{pod}.yaml"));
            let Some(bytes) = r.w.read(&path)? else {
                continue; // not a static pod on this node (external etcd, say)
            };
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::Failed(format!("{}: not UTF-8 text", path.display())))?;
            let new = bump_annotation(&text, &stamp)
                .map_err(|e| Error::Failed(format!("{}: {e}", path.display())))?;
            // etcd is waited for (the API server needs it back) when it
            // answers now: its process start time before the change
            let etcd_before = (pod == "etcd" && !opts.restart_wait.is_zero())
                .then(|| etcd_metrics_url(&text))
                .flatten()
                .and_then(|url| etcd_started_at(&url).map(|t| (url, t)));
            // the API server is waited for before the controller manager's
            // and the scheduler's manifests change (they talk to it): its
            // /livez, and whether it answered before the change
            let api_probe = if pod == "kube-apiserver" && !opts.apiserver_wait.is_zero() {
                let ca = r.w.read(
                    &paths
                        .pki_dir(&settings.cluster.certificates_dir)
                        .join("ca.crt"),
                )?;
                ca.and_then(|ca| ApiProbe::from_manifest(&text, &ca))
                    .map(|p| {
                        let live = p.live();
                        (p, live)
                    })
            } else {
                None
            };
            fs::write_atomic(&paths.rooted(&path), new.as_bytes(), 0o600, Sync::Each)?;
            log::info!(target: "renew", "changed {} so the kubelet restarts {pod}", path.display());
            restarted.push(pod.to_string());
            if let Some((url, before)) = etcd_before {
                checks.push(wait_etcd_restart(&url, before, opts.restart_wait));
            }
            match api_probe {
                Some((probe, true)) => {
                    checks.push(probe.wait_restart(opts.apiserver_wait));
                }
                // as with etcd: a server that did not answer before is not
                // waited for (nothing talks to it now either)
                Some((probe, false)) => {
                    let line = format!(
                        "kube-apiserver did not answer {} before its manifest changed; not waited for",
                        probe.url
                    );
                    log::info!(target: "renew", "{line}");
                    checks.push(line);
                }
                None if pod == "kube-apiserver" && !opts.apiserver_wait.is_zero() => {
                    let line = format!(
                        "kube-apiserver not waited for: no --advertise-address in {} or no CA certificate to verify it with",
                        path.display()
                    );
                    log::warn!(target: "renew", "{line}");
                    checks.push(line);
                }
                None => {}
            }
        }
    }
    let mut report = Report {
        result: String::new(),
        window: opts.window_label.clone(),
        certificates: rows,
        restarted,
        restart_checks: checks,
        version: env!("CARGO_PKG_VERSION").to_string(),
        finished_at: rfc3339(OffsetDateTime::now_utc()),
    };
    report.result = if report.ok() { "success" } else { "failure" }.into();
    Ok(report)
}

/// etcd's metrics URL (`--listen-metrics-urls`, plain HTTP on loopback in
/// kubeadm's manifest), which serves `/metrics` and `/health` without
/// credentials.
fn etcd_metrics_url(manifest: &str) -> Option<String> {
    manifest.lines().find_map(|l| {
        let v = l.trim_start().strip_prefix("- --listen-metrics-urls=")?;
        let first = v.split(',').next()?.trim().trim_end_matches('/');
        first.starts_with("http://").then(|| first.to_string())
    })
}

/// GET `url` once (2 s): the body of a 200 answer.
fn get_once(url: &str) -> Option<Vec<u8>> {
    let agent = crate::net::http::agent(None);
    match crate::net::http::send(
        &agent,
        crate::net::http::Method::Get,
        url,
        &[],
        std::time::Duration::from_secs(2),
    ) {
        crate::net::http::Step::Done(r) if r.status == 200 => Some(r.body),
        _ => None,
    }
}

/// The `process_start_time_seconds` etcd reports on its metrics listener.
fn etcd_started_at(metrics_url: &str) -> Option<f64> {
    let body = get_once(&format!("{metrics_url}/metrics"))?;
    String::from_utf8_lossy(&body).lines().find_map(|l| {
        l.strip_prefix("process_start_time_seconds ")?
            .trim()
            .parse()
            .ok()
    })
}

/// Waits until a new etcd process (another start time than `before`) says
/// it is healthy on `/health`, within `budget`; the line says what was seen.
fn wait_etcd_restart(metrics_url: &str, before: f64, budget: std::time::Duration) -> String {
    let start = std::time::Instant::now();
    log::info!(target: "renew", "waiting up to {} s for the kubelet to restart etcd ({metrics_url})", budget.as_secs());
    loop {
        let restarted = etcd_started_at(metrics_url).is_some_and(|t| t != before);
        let healthy = || {
            get_once(&format!("{metrics_url}/health"))
                .is_some_and(|b| String::from_utf8_lossy(&b).contains("\"health\":\"true\""))
        };
        if restarted && healthy() {
            let line = format!(
                "etcd restarted and is healthy ({metrics_url}, {} s after its manifest changed)",
                start.elapsed().as_secs()
            );
            log::info!(target: "renew", "{line}");
            return line;
        }
        if start.elapsed() >= budget {
            let line = format!(
                "etcd was not seen restarted and healthy on {metrics_url} within {} s; going on (is the kubelet running?)",
                budget.as_secs()
            );
            log::warn!(target: "renew", "{line}");
            return line;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// The API server's `/livez` on this node, as kubeadm's liveness probe
/// reads it (`https://<advertise-address>:<secure-port>/livez`), the
/// server verified with the cluster CA.
struct ApiProbe {
    url: String,
    agent: ureq::Agent,
}

impl ApiProbe {
    /// From the kube-apiserver manifest's `--advertise-address` and
    /// `--secure-port` (6443 when absent); `None` without an address or a
    /// CA certificate.
    fn from_manifest(manifest: &str, ca_pem: &[u8]) -> Option<ApiProbe> {
        let flag = |name: &str| {
            manifest.lines().find_map(|l| {
                l.trim_start()
                    .strip_prefix(&format!("- --{name}="))
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
        };
        let addr: std::net::IpAddr = flag("advertise-address")?.parse().ok()?;
        let port: u16 = match flag("secure-port") {
            Some(p) => p.parse().ok()?,
            None => 6443,
        };
        let roots = crate::net::http::certs_from_pem(ca_pem);
        if roots.is_empty() {
            return None;
        }
        Some(ApiProbe {
            url: format!("https://{}/livez", std::net::SocketAddr::new(addr, port)),
            agent: crate::net::http::agent(Some(roots)),
        })
    }

    /// `/livez` answers 200 now (one try, 2 s).
    fn live(&self) -> bool {
        matches!(
            crate::net::http::send(
                &self.agent,
                crate::net::http::Method::Get,
                &self.url,
                &[],
                std::time::Duration::from_secs(2),
            ),
            crate::net::http::Step::Done(r) if r.status == 200
        )
    }

    /// Waits, within `budget`, until the API server, live before its
    /// manifest changed, restarted and is live again: seen not live (the
    /// old pod gone), then live. The line says what was seen.
    fn wait_restart(&self, budget: std::time::Duration) -> String {
        let start = std::time::Instant::now();
        let url = &self.url;
        log::info!(target: "renew", "waiting up to {} s for the kubelet to restart kube-apiserver ({url}) before the controller manager's and the scheduler's manifests change", budget.as_secs());
        let mut seen_down = false;
        loop {
            let live = self.live();
            if live && seen_down {
                let line = format!(
                    "kube-apiserver restarted and is live ({url}, {} s after its manifest changed)",
                    start.elapsed().as_secs()
                );
                log::info!(target: "renew", "{line}");
                return line;
            }
            seen_down |= !live;
            if start.elapsed() >= budget {
                let line = format!(
                    "kube-apiserver was not seen restarted and live on {url} within {} s; going on (is the kubelet running?)",
                    budget.as_secs()
                );
                log::warn!(target: "renew", "{line}");
                return line;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
}

/// `/var/lib/kubeboot/renew-status.json`.
pub fn status_file(paths: &Paths) -> PathBuf {
    paths.state_dir().join("renew-status.json")
}

/// Writes the report as the renewal status file (0644, atomic, durable).
pub fn write_status(paths: &Paths, report: &Report) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(report)
        .map_err(|e| Error::Failed(format!("encoding the renewal status: {e}")))?;
    text.push(b'\n');
    fs::write_atomic(&paths.rooted(status_file(paths)), &text, 0o644, Sync::Each)?;
    Ok(())
}

/// One line per certificate, as printed and logged.
pub fn describe(row: &Row) -> String {
    let day = |s: &Option<String>| {
        s.as_deref()
            .map(|t| t.get(..10).unwrap_or(t).to_string())
            .unwrap_or_default()
    };
    match row.outcome {
        Outcome::Renewed => format!(
            "{}: renewed (was valid until {}, now until {}){}",
            row.name,
            day(&row.expires_before),
            day(&row.expires_after),
            if row.message.is_empty() {
                String::new()
            } else {
                format!("; {}", row.message)
            }
        ),
        Outcome::NotDue => format!(
            "{}: not due (expires {}, {})",
            row.name,
            day(&row.expires_before),
            row.message
        ),
        Outcome::Missing => format!("MISSING! {}: {}", row.name, row.message),
        Outcome::CannotSign => format!("{}: {}", row.name, row.message),
        Outcome::Failed => format!("{}: FAILED: {}", row.name, row.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kubeadm() {
        assert_eq!(resolve_names(&["all".into()]).unwrap().len(), 11);
        assert_eq!(
            resolve_names(&["scheduler.conf".into(), "apiserver".into()]).unwrap(),
            ["apiserver", "scheduler.conf"]
        );
        assert!(resolve_names(&["kubelet.conf".into()]).is_err());
        assert!(resolve_names(&["ca".into()]).is_err());
        assert!(resolve_names(&["all".into(), "apiserver".into()]).is_err());
    }

    #[test]
    fn a_kubeconfig_is_rewritten_only_when_cert_and_key_are_embedded_once_each() {
        use base64::Engine;
        let b64 = |b: &str| base64::engine::general_purpose::STANDARD.encode(b);
        let (oc, ok) = ("OLD CERT", "OLD KEY");
        let head = "apiVersion: v1\nusers:\n- name: u\n  user:\n";
        let cert = format!("    client-certificate-data: {}\n", b64(oc));
        let key = format!("    client-key-data: {}\n", b64(ok));
        let both = format!("{head}{cert}{key}");
        let out = rewrite_kubeconfig(&both, oc.as_bytes(), ok.as_bytes(), "NEW C", "NEW K");
        assert_eq!(
            out.unwrap(),
            format!(
                "{head}    client-certificate-data: {}\n    client-key-data: {}\n",
                b64("NEW C"),
                b64("NEW K")
            )
        );
        // a key (or certificate) kept in a file, or either embedded twice:
        // refused as a whole, nothing half-renewed
        for text in [
            format!("{head}{cert}    client-key: /etc/kubernetes/pki/u.key\n"),
            format!("{head}    client-certificate: /etc/kubernetes/pki/u.crt\n{key}"),
            format!("{head}{cert}{key}{cert}"),
            format!("{head}{cert}{key}{key}"),
        ] {
            let err = rewrite_kubeconfig(&text, oc.as_bytes(), ok.as_bytes(), "NEW C", "NEW K")
                .unwrap_err();
            assert!(err.contains("not embedded once each"), "{err}");
        }
    }

    /// A control-plane tree made at a fixed time in a fresh temp dir.
    fn fresh_tree(name: &str) -> (PathBuf, Paths, Settings) {
        let dir =
            std::env::temp_dir().join(format!("kubeboot-renew-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let paths = Paths::new(&dir);
        let settings = crate::config::examples::pki_control_plane();
        let t0 = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        crate::pki::ensure_tree(&settings, &paths, t0, Sync::Deferred).unwrap();
        (dir, paths, settings)
    }

    /// `certs renew apiserver`, no pod restarts, within `window` if given.
    fn apiserver_only(window: Option<u64>) -> Options {
        Options {
            names: vec!["apiserver".into()],
            window_seconds: window,
            window_label: None,
            key_algorithm: None,
            restart_pods: false,
            restart_wait: std::time::Duration::ZERO,
            apiserver_wait: std::time::Duration::ZERO,
        }
    }

    /// NotAfter (Unix seconds) and public key length of a PEM certificate,
    /// as x509-parser reads them.
    fn not_after_and_key_len(crt: &std::path::Path) -> (i64, usize) {
        let pem = std::fs::read(crt).unwrap();
        let (_, p) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        let c = p.parse_x509().unwrap();
        (
            c.validity().not_after.timestamp(),
            c.public_key().subject_public_key.data.len(),
        )
    }

    /// `--if-expiring-within W` renews what has at most W left, to the
    /// second; NotAfter as x509-parser reads it from the file.
    #[test]
    fn the_window_includes_its_last_second() {
        let (dir, paths, settings) = fresh_tree("edge");
        let crt = dir.join("etc/kubernetes/pki/apiserver.crt");
        let not_after = || not_after_and_key_len(&crt).0;
        let end = not_after();
        let window = 86_400;
        let opts = apiserver_only(Some(window));
        let at = |left: i64| OffsetDateTime::from_unix_timestamp(end - left).unwrap();
        let one = |left: i64| {
            let r = renew(&settings, &paths, &opts, at(left)).unwrap();
            assert_eq!(r.certificates.len(), 1);
            r.certificates[0].outcome.clone()
        };
        // one second more than the window: not due, nothing written
        assert_eq!(one(window as i64 + 1), Outcome::NotDue);
        assert_eq!(not_after(), end);
        // exactly the window left: due
        assert_eq!(one(window as i64), Outcome::Renewed);
        assert!(not_after() > end);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Renewed unconditionally near the CA's end: the new certificate
    /// stops with its CA, keeps its key algorithm (P-256), and says nothing
    /// about its key unless the key on disk did not match. x509-parser
    /// reads the files.
    #[test]
    fn a_renewal_stops_with_its_ca_and_keeps_the_key_algorithm() {
        let (dir, paths, settings) = fresh_tree("ca-end");
        let pki = dir.join("etc/kubernetes/pki");
        let read = |f: &str| not_after_and_key_len(&pki.join(f));
        let (ca_end, _) = read("ca.crt");
        let opts = apiserver_only(None);
        // 30 days before the CA ends: a year's validity would outlive it
        let now = OffsetDateTime::from_unix_timestamp(ca_end - 30 * 86400).unwrap();
        let r = renew(&settings, &paths, &opts, now).unwrap();
        let row = &r.certificates[0];
        assert_eq!(row.outcome, Outcome::Renewed);
        assert_eq!(row.message, "", "the old pair matched");
        // an uncompressed P-256 point is 65 bytes (P-384: 97)
        assert_eq!(read("apiserver.crt"), (ca_end, 65));
        // a key that is not the certificate's: renewed, and said so
        std::fs::copy(
            pki.join("front-proxy-client.key"),
            pki.join("apiserver.key"),
        )
        .unwrap();
        let r = renew(&settings, &paths, &opts, now).unwrap();
        let row = &r.certificates[0];
        assert_eq!(row.outcome, Outcome::Renewed);
        assert!(row.message.contains("did not match"), "{}", row.message);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Only a 200 answer's body counts as etcd's word (a proxy's error page
    /// may say anything); one loopback connection per answer.
    #[test]
    fn get_once_takes_the_body_of_a_200_answer_only() {
        use std::io::{Read, Write};
        let serve = |status: &'static str| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}/health", l.local_addr().unwrap());
            let t = std::thread::spawn(move || {
                let (mut c, _) = l.accept().unwrap();
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = c.read(&mut buf).unwrap();
                    assert!(n > 0, "request cut short");
                    got.extend_from_slice(&buf[..n]);
                }
                let body = "{\"health\":\"true\"}";
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                c.write_all(answer.as_bytes()).unwrap();
            });
            (url, t)
        };
        let (url, t) = serve("200 OK");
        assert_eq!(
            get_once(&url).as_deref(),
            Some(&b"{\"health\":\"true\"}"[..])
        );
        t.join().unwrap();
        for status in ["503 Service Unavailable", "404 Not Found"] {
            let (url, t) = serve(status);
            assert_eq!(get_once(&url), None, "{status}");
            t.join().unwrap();
        }
    }

    #[test]
    fn windows() {
        assert_eq!(parse_window("30d"), Some(30 * 86400));
        assert_eq!(parse_window("720h"), Some(30 * 86400));
        assert_eq!(parse_window("d"), None);
        // only digits before the `d`: Rust's integer parser would take
        // "+5", and Go's duration syntax has no days unit to fall back on
        assert_eq!(parse_window("+5d"), None);
        assert_eq!(parse_window("5hd"), None);
        assert_eq!(parse_window("soon"), None);
    }

    #[test]
    fn the_api_servers_livez_comes_from_its_manifest() {
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem();
        let ca = ca.as_bytes();
        let v4 = "spec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --advertise-address=10.0.0.10\n    - --secure-port=8443\n";
        let v6 = "    - --advertise-address=fd00::10\n";
        // a CA that does not parse as a certificate: no probe
        assert!(ApiProbe::from_manifest(v4, b"not pem").is_none());
        assert_eq!(
            ApiProbe::from_manifest(v4, ca).unwrap().url,
            "https://10.0.0.10:8443/livez"
        );
        // IPv6 in brackets; the default port without --secure-port
        assert_eq!(
            ApiProbe::from_manifest(v6, ca).unwrap().url,
            "https://[fd00::10]:6443/livez"
        );
        assert!(ApiProbe::from_manifest("    - --secure-port=6443\n", ca).is_none());
    }

    #[test]
    fn annotation_is_added_or_replaced_and_nothing_else_changes() {
        let without = "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    component: kube-scheduler\n  name: kube-scheduler\nspec:\n  containers: []\n";
        let once = bump_annotation(without, "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(
            once,
            without.replace(
                "metadata:\n",
                "metadata:\n  annotations:\n    kubeboot.dev/certs-renewed-at: \"2026-01-01T00:00:00Z\"\n"
            )
        );
        let twice = bump_annotation(&once, "2027-01-01T00:00:00Z").unwrap();
        assert_eq!(twice, once.replace("2026-01-01", "2027-01-01"));
        let with = "apiVersion: v1\nkind: Pod\nmetadata:\n  annotations:\n    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://10.0.0.1:2379\n  labels:\n    component: etcd\n  name: etcd\nspec: {}\n";
        let out = bump_annotation(with, "x").unwrap();
        assert!(
            out.contains(
                "https://10.0.0.1:2379\n    kubeboot.dev/certs-renewed-at: \"x\"\n  labels:"
            ),
            "{out}"
        );
        assert!(bump_annotation("kind: Pod\n", "x").is_err());
        // annotations as the last field of metadata (key order is free in
        // YAML), ours on the block's last line: replaced there, not added twice
        let last = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  annotations:\n    kubeboot.dev/certs-renewed-at: \"1\"\nspec: {}\n";
        assert_eq!(
            bump_annotation(last, "2").unwrap(),
            last.replace("\"1\"", "\"2\"")
        );
        // metadata first in the file, with annotations: replaced in place
        let first = "metadata:\n  annotations:\n    kubeboot.dev/certs-renewed-at: \"1\"\n  name: etcd\nspec: {}\n";
        assert_eq!(
            bump_annotation(first, "2").unwrap(),
            first.replace("\"1\"", "\"2\"")
        );
        // a label of the same name just before the annotations, and a later
        // top-level field with an `annotations:` of its own: both left alone
        let lookalikes = "metadata:\n  labels:\n    kubeboot.dev/certs-renewed-at: \"l\"\n  annotations:\n    a: b\n  name: x\nspec:\n  annotations:\n    c: d\n";
        assert_eq!(
            bump_annotation(lookalikes, "2").unwrap(),
            lookalikes.replace(
                "    a: b\n",
                "    a: b\n    kubeboot.dev/certs-renewed-at: \"2\"\n"
            )
        );
        let no_annotations = "metadata:\n  name: x\nspec:\n  annotations:\n    c: d\n";
        assert_eq!(
            bump_annotation(no_annotations, "2").unwrap(),
            no_annotations.replace(
                "metadata:\n",
                "metadata:\n  annotations:\n    kubeboot.dev/certs-renewed-at: \"2\"\n"
            )
        );
    }
}
