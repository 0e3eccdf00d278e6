//! Load-or-create over the certificate table: supplied CA material is
//! written first, existing valid files are kept, missing or invalid leaves
//! are (re)issued by their CA, a CA is never replaced, and a CA without
//! its key means external-CA mode (its leaves must already be valid).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ring::rand::SystemRandom;
use time::OffsetDateTime;

use super::cert::{self, CaKey, CertInfo, CertRequest, Eku, Sans};
use super::keys::Key;
use super::table::{self, CertRow};
use super::{Action, Entry, PkiReport};
use crate::config::{CaMaterial, Mode, Settings};
use crate::error::{Error, Result};
use crate::host::Paths;
use crate::host::fs::{self, Sync};

/// kubeadm's `CertificateBackdate`: NotBefore is five minutes before now.
pub const BACKDATE: time::Duration = time::Duration::minutes(5);

/// Mode of private keys, kubeconfigs and `sa.pub`.
pub const SECRET_MODE: u32 = 0o600;
/// Mode of certificates.
pub const CERT_MODE: u32 = 0o644;

/// Writes files under the root, remembering whether anything was written.
pub(crate) struct Writer<'a> {
    pub paths: &'a Paths,
    pub sync: Sync,
    pub wrote: bool,
}

impl Writer<'_> {
    pub fn write(&mut self, path: &Path, data: &[u8], mode: u32) -> Result<()> {
        fs::write_atomic(&self.paths.rooted(path), data, mode, self.sync)?;
        self.wrote = true;
        Ok(())
    }

    /// Creates the empty file `path` (a mark: only its name counts), made
    /// durable as the writes are ([`fs::create_empty`]; fsynced with
    /// [`Sync::Each`]). Transient, so nothing in a dry run (not among the
    /// files it lists).
    pub fn mark(&mut self, path: &Path) -> Result<()> {
        fs::create_empty(&self.paths.rooted(path), SECRET_MODE)?;
        if self.sync == Sync::Each
            && let Some(dir) = path.parent()
        {
            fs::fsync_dir(dir)?;
        }
        self.wrote = true;
        Ok(())
    }

    /// With deferred syncing, one `syncfs` covering everything written.
    pub fn finish(&self, dir: &Path) -> Result<()> {
        if self.wrote && self.sync == Sync::Deferred {
            fs::sync_filesystem(dir)?;
        }
        Ok(())
    }

    /// Reads a file under the root (refusing symlinks); a missing or empty
    /// file is `None` (an empty file can only be left by a crash).
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        Ok(self.read_raw(path)?.filter(|b| !b.is_empty()))
    }

    /// As [`Writer::read`], but an empty file is `Some(empty)`.
    pub fn read_raw(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        Ok(fs::read_under(self.paths.root(), path)?)
    }
}

/// A CA ready to sign (or, without a key, to verify only).
pub(crate) struct Ca {
    pub der: Vec<u8>,
    /// `None`: external CA mode (the key is not on this node).
    pub key: Option<CaKey>,
    pub path: PathBuf,
}

impl Ca {
    /// A CA from its certificate (DER) and, when at hand, its key.
    pub fn new(der: Vec<u8>, key: Option<Key>, path: PathBuf) -> Ca {
        Ca {
            key: key.map(|k| CaKey::new(der.clone(), k)),
            der,
            path,
        }
    }

    /// The CA for signing; `None` without its key.
    pub fn signer(&self) -> Option<&CaKey> {
        self.key.as_ref()
    }
}

/// What a leaf certificate must be.
pub(crate) struct LeafSpec {
    pub cn: String,
    pub org: Option<String>,
    pub usages: Vec<Eku>,
    pub sans: Sans,
}

impl LeafSpec {
    pub fn request(&self, settings: &Settings, now: OffsetDateTime) -> Result<CertRequest> {
        Ok(CertRequest {
            cn: self.cn.clone(),
            org: self.org.clone(),
            is_ca: false,
            usages: self.usages.clone(),
            sans: self.sans.clone(),
            not_before: now - BACKDATE,
            not_after: not_after(
                now,
                settings.cluster.cert_validity_seconds,
                "certificateValidityPeriod",
            )?,
        })
    }

    /// Why an existing certificate + key does not fit, or `Ok` with its facts.
    pub fn check(
        &self,
        cert_der: &[u8],
        key: &Key,
        ca: &Ca,
        now: OffsetDateTime,
    ) -> Result<CertInfo, String> {
        let info = cert::inspect(cert_der, "")
            .map_err(|_| "the certificate does not parse".to_string())?;
        if !cert::signed_by(cert_der, &ca.der) {
            return Err(format!(
                "it is not signed by the CA in {}",
                ca.path.display()
            ));
        }
        if info.not_after <= now {
            return Err(format!("it expired on {}", day(info.not_after)));
        }
        if info.spki != key.spki_der() {
            return Err("the private key does not match the certificate".into());
        }
        if info.cn != self.cn {
            return Err(format!("its CN is {:?}, expected {:?}", info.cn, self.cn));
        }
        if let Some(org) = self.org.as_ref().filter(|o| !info.orgs.contains(o)) {
            return Err(format!("its O is {:?}, expected {org:?}", info.orgs));
        }
        if let Some(u) = self.usages.iter().find(|u| !info.usages.contains(u)) {
            return Err(format!("it lacks the {u:?} extended key usage"));
        }
        let missing = self.sans.missing_from(&info.sans);
        if !missing.is_empty() {
            return Err(format!("its SANs do not cover {}", missing.join(", ")));
        }
        Ok(info)
    }
}

/// `now + seconds`, or an error naming `field` when that is past year 9999.
pub(crate) fn not_after(now: OffsetDateTime, seconds: u64, field: &str) -> Result<OffsetDateTime> {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| now.checked_add(time::Duration::seconds(s)))
        .filter(|t| t.year() <= 9999)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{field}: {seconds} seconds is too long (NotAfter past year 9999)"
            ))
        })
}

/// `2036-11-26`.
pub(crate) fn day(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

fn supplied<'a>(settings: &'a Settings, name: &str) -> Option<&'a CaMaterial> {
    let s = &settings.supplied_cas;
    match name {
        "ca" => Some(&s.ca),
        "front-proxy-ca" => Some(&s.front_proxy_ca),
        "etcd-ca" => Some(&s.etcd_ca),
        _ => None,
    }
}

/// A CA [`Tree::new_cas`] made and wrote.
struct NewCa {
    key: Key,
    der: Vec<u8>,
    info: CertInfo,
    action: Action,
}

/// The name of the empty file that marks a CA certificate (its PEM
/// bytes, as written) as made by a run that has not synced yet:
/// `.kubeboot-new-ca.<name>.<sha256 hex>`, in the certificates
/// directory. See [`Tree::new_cas`].
fn new_ca_mark(name: &str, cert_pem: &[u8]) -> String {
    format!("{NEW_CA_MARK}{name}.{}", super::sha256_hex(cert_pem))
}

const NEW_CA_MARK: &str = ".kubeboot-new-ca.";

/// Settles the marks of new CAs in the certificates directory `dir` once
/// what they cover is durable: none, nothing to do (one directory read);
/// some, they are removed, after a `syncfs` unless `synced` says the
/// caller has just made one. A mark left by a run that stopped before its
/// sync (killed, failed) is thus removed only once the files of that run
/// are durable too. Nothing in a dry run or without the directory.
pub(crate) fn settle_new_ca_marks(dir: &Path, synced: bool) -> Result<()> {
    if crate::host::dryrun::active(dir) {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let marks: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(NEW_CA_MARK))
        .map(|e| e.path())
        .collect();
    if marks.is_empty() {
        return Ok(());
    }
    if !synced {
        fs::sync_filesystem(dir)?;
    }
    for m in marks {
        let _ = std::fs::remove_file(m);
    }
    Ok(())
}

struct Tree<'a> {
    settings: &'a Settings,
    dir: PathBuf,
    now: OffsetDateTime,
    rng: SystemRandom,
    w: Writer<'a>,
    cas: HashMap<&'static str, Ca>,
    /// The CAs this run creates ([`Tree::new_cas`]), already written, key
    /// and certificate, for [`Tree::ca`] to report and keep.
    new_cas: HashMap<&'static str, NewCa>,
    report: PkiReport,
}

/// Load-or-create the certificate tree; see [`super::ensure_tree`]. Also
/// returns the cluster CA (`ca`) when this run loaded or created it, for
/// the kubeconfig phase to sign with.
pub(crate) fn ensure(
    settings: &Settings,
    paths: &Paths,
    now: OffsetDateTime,
    sync: Sync,
    want: &dyn Fn(&str) -> bool,
) -> Result<(PkiReport, Option<Ca>)> {
    let mut t = Tree {
        settings,
        dir: paths.pki_dir(&settings.cluster.certificates_dir),
        now: now.replace_nanosecond(0).unwrap_or(now),
        rng: SystemRandom::new(),
        w: Writer {
            paths,
            sync,
            wrote: false,
        },
        cas: HashMap::new(),
        new_cas: HashMap::new(),
        report: PkiReport::default(),
    };
    if settings.mode == Mode::JoinWorker {
        return Ok((t.report, None));
    }
    t.new_cas(want)?;
    for row in table::rows(settings) {
        if row.is_ca() {
            if want(row.name) {
                t.ca(row)?;
            } else if table::rows(settings).any(|l| l.ca == Some(row.name) && want(l.name)) {
                // a selected leaf needs this CA: it must already be on disk
                let (crt, _) = t.files(row.stem);
                if !crt.exists()
                    && supplied(settings, row.name).is_none_or(|m| m.cert_pem.is_none())
                {
                    return Err(Error::Failed(format!(
                        "{}: missing; run `phase certs/{}` first",
                        crt.display(),
                        row.name
                    )));
                }
                let n = t.report.entries.len();
                t.ca(row)?;
                t.report.entries.truncate(n);
            }
        } else if want(row.name) {
            t.leaf(row)?;
        }
    }
    if want("sa") {
        t.service_account()?;
    }
    t.w.finish(&t.dir)?;
    if sync == Sync::Deferred {
        // synced by `finish` when anything was written (a node run,
        // `Sync::Batched`, settles them after its own syncfs:
        // `NodeRun::flush`)
        settle_new_ca_marks(&t.dir, t.w.wrote)?;
    } else if sync == Sync::Each {
        settle_new_ca_marks(&t.dir, false)?;
    }
    let ca = t.cas.remove("ca");
    Ok((t.report, ca))
}

impl Tree<'_> {
    fn files(&self, stem: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{stem}.crt")),
            self.dir.join(format!("{stem}.key")),
        )
    }

    fn push(&mut self, row: &CertRow, action: Action, info: &CertInfo, external: bool) {
        let (crt, key) = self.files(row.stem);
        let paths = if external { vec![crt] } else { vec![crt, key] };
        self.report.entries.push(Entry {
            phase: "certs",
            name: row.name.to_string(),
            paths,
            action,
            algorithm: info.algorithm.clone(),
            not_after: Some(info.not_after),
            externally_managed: external,
        });
    }

    /// Writes CA material supplied in the config where the files are absent;
    /// refuses when it conflicts with what is on disk.
    fn write_supplied(&mut self, row: &CertRow, crt: &Path, key: &Path) -> Result<bool> {
        let Some(m) = supplied(self.settings, row.name) else {
            return Ok(false);
        };
        let field = format!("supplied {} certificate authority", row.name);
        let Some(cert_pem) = &m.cert_pem else {
            if m.key_pem.is_some() {
                return Err(Error::Invalid(format!(
                    "{field}: a key was given without its certificate"
                )));
            }
            return Ok(false);
        };
        let der = cert::der_from_pem(cert_pem.as_bytes(), &field)?;
        let info = cert::inspect(&der, &field)?;
        let mut wrote = false;
        match self.w.read(crt)? {
            Some(existing) => {
                let on_disk = cert::der_from_pem(&existing, &crt.display().to_string())?;
                if on_disk != der {
                    return Err(Error::Invalid(format!(
                        "{}: holds a different CA than the {field} in the config; refusing to replace a CA",
                        crt.display()
                    )));
                }
            }
            None => {
                self.w.write(crt, cert_pem.as_bytes(), CERT_MODE)?;
                wrote = true;
            }
        }
        if let Some(key_pem) = &m.key_pem {
            let k = Key::from_pem(key_pem.expose().as_bytes(), &format!("{field} key"))?;
            if k.spki_der() != info.spki {
                return Err(Error::Invalid(format!(
                    "{field}: the key does not match the certificate"
                )));
            }
            match self.w.read(key)? {
                Some(existing) => {
                    let on_disk = Key::from_pem(&existing, &key.display().to_string())?;
                    if on_disk.spki_der() != k.spki_der() {
                        return Err(Error::Invalid(format!(
                            "{}: holds a different key than the {field} in the config",
                            key.display()
                        )));
                    }
                }
                None => {
                    self.w
                        .write(key, key_pem.expose().as_bytes(), SECRET_MODE)?;
                    wrote = true;
                }
            }
        }
        Ok(wrote)
    }

    /// Creates every CA this run creates: selected, nothing supplied in
    /// the config, and either neither file on disk, or a certificate whose
    /// key was lost before it reached the disk (below). Each is made in
    /// memory, then written: first an empty *mark* per CA
    /// ([`new_ca_mark`]: its name carries the certificate's SHA-256), then
    /// the keys and the certificates. The run's one `syncfs` makes them
    /// durable together and the marks are then removed
    /// ([`settle_new_ca_marks`]).
    ///
    /// Why the marks: unsynced writes reach the disk in any order, so a
    /// power cut before the sync can leave a valid `ca.crt` beside an empty
    /// or missing `ca.key`. A CA that something may trust is never
    /// replaced, and nothing in those two files says whether it could have
    /// left the node. The mark says it could not: it exists only until the
    /// creating run's sync, before which nothing outside the process has
    /// the CA (the kubelet is started after it, `render` returns after it).
    /// File systems that journal metadata in order (ext4, XFS) make a
    /// file's name durable no later than the names created after it, so the
    /// mark survives whenever the certificate does; where it did not, the
    /// rerun refuses, as it would without marks. A CA whose key is lost
    /// with no mark for its certificate is refused ([`Tree::ca`]).
    fn new_cas(&mut self, want: &dyn Fn(&str) -> bool) -> Result<()> {
        if self.settings.mode == Mode::JoinControlPlane {
            return Ok(());
        }
        let mut made = Vec::new();
        for row in table::rows(self.settings) {
            let given = supplied(self.settings, row.name)
                .is_some_and(|m| m.cert_pem.is_some() || m.key_pem.is_some());
            if !row.is_ca() || !want(row.name) || given {
                continue;
            }
            let (crt, keyp) = self.files(row.stem);
            let crt_bytes = self.w.read(&crt)?;
            let key_raw = self.w.read_raw(&keyp)?;
            let cut_off = match &crt_bytes {
                // the key lost, the certificate marked as not yet synced
                Some(pem) => {
                    key_raw.as_ref().is_none_or(|k| k.is_empty())
                        && self
                            .w
                            .read_raw(&self.dir.join(new_ca_mark(row.name, pem)))?
                            .is_some()
                }
                None => false,
            };
            if !cut_off && (crt_bytes.is_some() || key_raw.is_some()) {
                continue;
            }
            let key = Key::generate(self.settings.cluster.key_algorithm)?;
            let (der, info) = self.issue_ca(row, &key)?;
            let pem = cert::to_pem(&der);
            let action = if cut_off {
                Action::Regenerated(
                    "its key was lost before the run that made it synced (a power cut): \
                     nothing outside could have had it, so it is made anew"
                        .into(),
                )
            } else {
                Action::Created
            };
            made.push((row, key, der, pem, info, action));
        }
        for (row, _, _, pem, _, _) in &made {
            let mark = self.dir.join(new_ca_mark(row.name, pem.as_bytes()));
            self.w.mark(&mark)?;
        }
        for (row, key, _, _, _, _) in &made {
            let (_, keyp) = self.files(row.stem);
            self.w.write(&keyp, key.to_pem().as_bytes(), SECRET_MODE)?;
        }
        for (row, key, der, pem, info, action) in made {
            let (crt, _) = self.files(row.stem);
            self.w.write(&crt, pem.as_bytes(), CERT_MODE)?;
            self.new_cas.insert(
                row.name,
                NewCa {
                    key,
                    der,
                    info,
                    action,
                },
            );
        }
        Ok(())
    }

    fn ca(&mut self, row: &'static CertRow) -> Result<()> {
        let (crt, keyp) = self.files(row.stem);
        if let Some(n) = self.new_cas.remove(row.name) {
            // made and written by `new_cas`
            return self.keep_ca(row, n.der, Some(n.key), n.action, crt, &n.info);
        }
        let supplied = self.write_supplied(row, &crt, &keyp)?;
        let crt_bytes = self.w.read(&crt)?;
        let key_bytes = self.w.read_raw(&keyp)?;
        let join = self.settings.mode == Mode::JoinControlPlane;
        // An empty CA key beside its certificate is refused with an error
        // naming the key (never a new CA over it: something may already
        // trust that CA, and a CA is never replaced), unless the run that
        // made the CA was cut off before its sync (`new_cas` made it anew).
        // A *missing* key is external-CA mode.
        if crt_bytes.is_some() && key_bytes.as_ref().is_some_and(|b| b.is_empty()) {
            return Err(Error::Invalid(format!(
                "{}: the {} CA's private key is empty (beside {}); restore the key, or remove the \
                 empty file to use the certificate as an external CA",
                keyp.display(),
                row.name,
                crt.display()
            )));
        }
        let key = match key_bytes.as_ref().filter(|b| !b.is_empty()) {
            Some(b) => Some(Key::from_pem(b, &keyp.display().to_string())?),
            None => None,
        };
        let (der, key, action, info) = match (crt_bytes, key) {
            (Some(b), key) => {
                let origin = crt.display().to_string();
                let der = cert::der_from_pem(&b, &origin)?;
                let info = cert::inspect(&der, &origin)?;
                if !info.is_ca {
                    return Err(Error::Invalid(format!(
                        "{origin}: is not a CA certificate (no CA basic constraint)"
                    )));
                }
                if info.not_after <= self.now {
                    return Err(Error::Invalid(format!(
                        "{origin}: the {} certificate authority expired on {}; renew it before bootstrapping",
                        row.name,
                        day(info.not_after)
                    )));
                }
                if key.as_ref().is_some_and(|k| k.spki_der() != info.spki) {
                    return Err(Error::Invalid(format!(
                        "{}: the private key does not match the certificate {origin}",
                        keyp.display()
                    )));
                }
                (
                    der,
                    key,
                    if supplied {
                        Action::Supplied
                    } else {
                        Action::Kept
                    },
                    info,
                )
            }
            (None, _) if join => {
                return Err(Error::Failed(format!(
                    "{}: the shared {} certificate authority is missing; a control-plane join needs the \
                     cluster's CAs (download them with the certificate key, or supply them in the config)",
                    crt.display(),
                    row.name
                )));
            }
            (None, Some(k)) => {
                // Only the key survived (a crash between the two writes):
                // no certificate ever existed, so nothing trusts it yet.
                let (der, info) = self.issue_ca(row, &k)?;
                self.w
                    .write(&crt, cert::to_pem(&der).as_bytes(), CERT_MODE)?;
                (
                    der,
                    Some(k),
                    Action::Regenerated(
                        "the certificate was missing; reused the existing key".into(),
                    ),
                    info,
                )
            }
            (None, None) => {
                // Not reached in a tree run (`new_ca_keys` made this key);
                // the key first all the same.
                let k = Key::generate(self.settings.cluster.key_algorithm)?;
                let (der, info) = self.issue_ca(row, &k)?;
                self.w.write(&keyp, k.to_pem().as_bytes(), SECRET_MODE)?;
                self.w
                    .write(&crt, cert::to_pem(&der).as_bytes(), CERT_MODE)?;
                let action = Action::Created;
                (der, Some(k), action, info)
            }
        };
        self.keep_ca(row, der, key, action, crt, &info)
    }

    /// Reports a CA (`info`: its facts) and keeps it for signing its leaves.
    fn keep_ca(
        &mut self,
        row: &'static CertRow,
        der: Vec<u8>,
        key: Option<Key>,
        action: Action,
        crt: PathBuf,
        info: &CertInfo,
    ) -> Result<()> {
        let external = key.is_none();
        self.push(row, action, info, external);
        self.cas.insert(row.name, Ca::new(der, key, crt));
        Ok(())
    }

    /// A new self-signed CA certificate (DER) for `key`, and its facts.
    fn issue_ca(&self, row: &CertRow, key: &Key) -> Result<(Vec<u8>, CertInfo)> {
        let req = CertRequest {
            cn: table::common_name(row, self.settings),
            org: None,
            is_ca: true,
            usages: Vec::new(),
            sans: table::sans(row, self.settings),
            not_before: self.now - BACKDATE,
            not_after: not_after(
                self.now,
                self.settings.cluster.ca_validity_seconds,
                "caCertificateValidityPeriod",
            )?,
        };
        let der = cert::issue(&req, key, None, &self.rng)?;
        Ok((der, cert::issued_info(&req, key)))
    }

    fn leaf(&mut self, row: &'static CertRow) -> Result<()> {
        let (crt, keyp) = self.files(row.stem);
        let ca_name = row.ca.unwrap_or("ca");
        let ca = self.cas.get(ca_name).ok_or_else(|| {
            Error::Failed(format!(
                "internal: CA {ca_name} not loaded before {}",
                row.name
            ))
        })?;
        let spec = LeafSpec {
            cn: table::common_name(row, self.settings),
            org: row.org.map(str::to_string),
            usages: row.usages.to_vec(),
            sans: table::sans(row, self.settings),
        };
        let crt_bytes = self.w.read(&crt)?;
        let key_bytes = self.w.read(&keyp)?;
        let external = ca.key.is_none();
        // An unreadable key is replaced when the CA can sign; otherwise an error.
        let key = match &key_bytes {
            Some(b) => match Key::from_pem(b, &keyp.display().to_string()) {
                Ok(k) => Some(k),
                Err(e) if external => return Err(e),
                Err(_) => None,
            },
            None => None,
        };
        let problem = match (&crt_bytes, &key) {
            (Some(b), Some(k)) => {
                let origin = crt.display().to_string();
                let checked = match cert::der_from_pem(b, &origin) {
                    Ok(der) => spec.check(&der, k, ca, self.now),
                    Err(e) if external => return Err(e),
                    Err(_) => Err("the certificate does not parse".to_string()),
                };
                match checked {
                    Ok(info) => {
                        self.push(row, Action::Kept, &info, false);
                        return Ok(());
                    }
                    Err(why) => Some(why),
                }
            }
            (None, None) if key_bytes.is_none() => None,
            (None, _) => Some(format!("{} was missing", crt.display())),
            (Some(_), None) => Some(format!("{} was missing or unreadable", keyp.display())),
        };
        if external {
            let why = problem.unwrap_or_else(|| "it is missing".into());
            return Err(Error::Invalid(format!(
                "{}: {why}; the {} CA has no key at hand (external CA mode), so this certificate must be \
                 supplied and valid",
                crt.display(),
                ca_name
            )));
        }
        let (key, new_key) = match key {
            Some(k) => (k, false),
            None => (Key::generate(self.settings.cluster.key_algorithm)?, true),
        };
        let req = spec.request(self.settings, self.now)?;
        let der = cert::issue(&req, &key, ca.signer(), &self.rng)?;
        if new_key {
            self.w.write(&keyp, key.to_pem().as_bytes(), SECRET_MODE)?;
        }
        self.w
            .write(&crt, cert::to_pem(&der).as_bytes(), CERT_MODE)?;
        let info = cert::issued_info(&req, &key);
        let action = match problem {
            None => Action::Created,
            Some(why) => Action::Regenerated(why),
        };
        self.push(row, action, &info, false);
        Ok(())
    }

    /// `sa.key` / `sa.pub`: an existing `sa.key` is reused untouched.
    fn service_account(&mut self) -> Result<()> {
        let keyp = self.dir.join("sa.key");
        let pubp = self.dir.join("sa.pub");
        let (key, mut action) = match self.w.read(&keyp)? {
            Some(b) => (
                Key::from_pem(&b, &keyp.display().to_string())?,
                Action::Kept,
            ),
            None if self.settings.mode == Mode::JoinControlPlane => {
                return Err(Error::Failed(format!(
                    "{}: the shared service-account key is missing; a control-plane join needs it \
                     (download it with the certificate key)",
                    keyp.display()
                )));
            }
            None => {
                let k = Key::generate(self.settings.cluster.key_algorithm)?;
                self.w.write(&keyp, k.to_pem().as_bytes(), SECRET_MODE)?;
                (k, Action::Created)
            }
        };
        let public = key.public_pem();
        let current = self.w.read(&pubp)?;
        if current.as_deref() != Some(public.as_bytes()) {
            self.w.write(&pubp, public.as_bytes(), SECRET_MODE)?;
            if action == Action::Kept {
                action = Action::Regenerated(format!(
                    "{} was missing or did not match sa.key",
                    pubp.display()
                ));
            }
        }
        self.report.entries.push(Entry {
            phase: "certs",
            name: "sa".into(),
            paths: vec![keyp, pubp],
            action,
            algorithm: key.describe(),
            not_after: None,
            externally_managed: false,
        });
        Ok(())
    }
}

/// Loads the cluster CA (`ca.crt`, and `ca.key` when present) for the
/// kubeconfig phase.
pub(crate) fn load_ca(
    settings: &Settings,
    paths: &Paths,
    w: &Writer<'_>,
    name: &str,
) -> Result<Ca> {
    let row =
        table::row(name).ok_or_else(|| Error::Failed(format!("internal: no CA row {name}")))?;
    let dir = paths.pki_dir(&settings.cluster.certificates_dir);
    let crt = dir.join(format!("{}.crt", row.stem));
    let keyp = dir.join(format!("{}.key", row.stem));
    let b = w.read(&crt)?.ok_or_else(|| {
        Error::Failed(format!(
            "{}: the {name} certificate authority is missing; run the certs phase first",
            crt.display()
        ))
    })?;
    let der = cert::der_from_pem(&b, &crt.display().to_string())?;
    let key = match w.read(&keyp)? {
        Some(k) => Some(Key::from_pem(&k, &keyp.display().to_string())?),
        None => None,
    };
    Ok(Ca::new(der, key, crt))
}
