//! X.509 certificates: issuing one from a request (kubeadm's template:
//! subject CN+O, random 63-bit serial, backdated NotBefore, KeyUsage,
//! ExtKeyUsage, sorted DNS SANs then IPs), and inspecting an existing one
//! (subject, SANs, usages, validity, signature) for load-or-create.

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::rc::Rc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::keys::{Key, describe_spki};
use crate::error::{Error, Result};

/// An extended key usage kubeadm uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eku {
    /// TLS server authentication.
    ServerAuth,
    /// TLS client authentication.
    ClientAuth,
}

/// Subject alternative names: DNS names de-duplicated and sorted, IPs
/// de-duplicated in first-seen order (kubeadm's `AltNames` handling).
/// Adding is O(log n) per DNS name and O(1) per IP, so thousands of
/// `apiServer.certSANs` cost linear-ish time, not a sort per insert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sans {
    /// DNS names, sorted (byte order).
    pub dns: BTreeSet<String>,
    /// IP addresses, in order.
    pub ips: Vec<IpAddr>,
    /// The same IPs, for O(1) de-duplication.
    seen_ips: HashSet<IpAddr>,
}

impl Sans {
    /// Adds an entry: an IP if it parses as one, else a DNS name.
    pub fn add(&mut self, entry: &str) {
        match entry.parse::<IpAddr>() {
            Ok(ip) => self.add_ip(ip),
            Err(_) => {
                if !self.dns.contains(entry) {
                    self.dns.insert(entry.to_string());
                }
            }
        }
    }

    /// Adds an IP address.
    pub fn add_ip(&mut self, ip: IpAddr) {
        if self.seen_ips.insert(ip) {
            self.ips.push(ip);
        }
    }

    /// The entries of `self` that `other` does not contain (DNS names
    /// compared case-insensitively), for messages.
    pub fn missing_from(&self, other: &Sans) -> Vec<String> {
        let theirs: HashSet<String> = other.dns.iter().map(|d| d.to_ascii_lowercase()).collect();
        let dns = self
            .dns
            .iter()
            .filter(|d| !theirs.contains(&d.to_ascii_lowercase()))
            .cloned();
        let ips = self
            .ips
            .iter()
            .filter(|i| !other.seen_ips.contains(i))
            .map(|i| i.to_string());
        dns.chain(ips).collect()
    }
}

/// What to put in a certificate.
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// Subject common name.
    pub cn: String,
    /// Subject organization, if any.
    pub org: Option<String>,
    /// A CA certificate (self-signed, CertSign usage, no EKU).
    pub is_ca: bool,
    /// Extended key usages (leaves only).
    pub usages: Vec<Eku>,
    /// Subject alternative names.
    pub sans: Sans,
    /// Start of validity (already backdated).
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

/// A CA's private key held for signing, shared by the CA and rcgen's
/// issuer made from it.
#[derive(Clone)]
struct SharedKey(Rc<Key>);

impl PublicKeyData for SharedKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        PublicKeyData::algorithm(&*self.0)
    }
}

impl rcgen::SigningKey for SharedKey {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        // `CaKey::issuer` loaded the key pair before any signature
        let pair = self.0.pair().map_err(|_| rcgen::Error::RingUnspecified)?;
        rcgen::SigningKey::sign(pair, msg)
    }
}

/// A CA that can sign: its certificate (DER) and private key. rcgen's
/// issuer (the CA's subject, key identifier and key usages, read from the
/// certificate) and ring's signing key are made the first time it signs
/// and reused for every certificate after: one parse of the CA
/// certificate and one load of its key per run, however many it signs.
pub struct CaKey {
    cert_der: Vec<u8>,
    key: SharedKey,
    issuer: OnceCell<Issuer<'static, SharedKey>>,
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaKey({:?})", self.key.0)
    }
}

impl CaKey {
    /// The CA of certificate `cert_der` (DER) with its private `key`.
    pub fn new(cert_der: Vec<u8>, key: Key) -> CaKey {
        CaKey {
            cert_der,
            key: SharedKey(Rc::new(key)),
            issuer: OnceCell::new(),
        }
    }

    fn issuer(&self, what: &dyn Fn() -> String) -> Result<&Issuer<'static, SharedKey>> {
        if let Some(i) = self.issuer.get() {
            return Ok(i);
        }
        self.key.0.pair()?;
        let issuer = Issuer::from_ca_cert_der(&self.cert_der.as_slice().into(), self.key.clone())
            .map_err(|e| {
            Error::Invalid(format!("{}: reading the CA certificate: {e}", what()))
        })?;
        Ok(self.issuer.get_or_init(|| issuer))
    }
}

/// A crypto-random serial in [1, 2^63-1), as kubeadm's `NewSignedCert`.
fn random_serial(rng: &SystemRandom) -> Result<SerialNumber> {
    loop {
        let mut b = [0u8; 8];
        rng.fill(&mut b)
            .map_err(|_| Error::Failed("reading random bytes for a serial number".into()))?;
        b[0] &= 0x7f;
        let v = u64::from_be_bytes(b);
        if v != 0 && v != u64::MAX >> 1 {
            let bytes = v.to_be_bytes();
            let skip = bytes.iter().take_while(|x| **x == 0).count();
            return Ok(SerialNumber::from_slice(&bytes[skip..]));
        }
    }
}

/// Issues a certificate for `subject_key`: self-signed when `signer` is
/// `None`, else signed by the CA. Returns the DER.
pub fn issue(
    req: &CertRequest,
    subject_key: &Key,
    signer: Option<&CaKey>,
    rng: &SystemRandom,
) -> Result<Vec<u8>> {
    let what = || format!("issuing certificate {:?}", req.cn);
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(org) = &req.org {
        dn.push(DnType::OrganizationName, org.as_str());
    }
    dn.push(DnType::CommonName, req.cn.as_str());
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial(rng)?);
    params.not_before = req.not_before;
    params.not_after = req.not_after;
    for d in &req.sans.dns {
        let name = d.clone().try_into().map_err(|e| {
            Error::Invalid(format!(
                "{}: SAN {d:?} is not a valid DNS name: {e}",
                what()
            ))
        })?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in &req.sans.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    if req.is_ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
    } else {
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = req
            .usages
            .iter()
            .map(|u| match u {
                Eku::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
                Eku::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            })
            .collect();
        params.use_authority_key_identifier_extension = true;
    }
    let cert = match signer {
        None => params.self_signed(subject_key.pair()?),
        Some(ca) => params.signed_by(subject_key, ca.issuer(&what)?),
    };
    cert.map(|c| c.der().to_vec())
        .map_err(|e| Error::Failed(format!("{}: {e}", what())))
}

/// Facts read from an existing certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject common name.
    pub cn: String,
    /// Subject organizations.
    pub orgs: Vec<String>,
    /// BasicConstraints CA flag.
    pub is_ca: bool,
    /// SANs found.
    pub sans: Sans,
    /// Extended key usages found (server/client only).
    pub usages: Vec<Eku>,
    /// NotBefore.
    pub not_before: OffsetDateTime,
    /// NotAfter.
    pub not_after: OffsetDateTime,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// "ECDSA P-256", "RSA 2048", ...
    pub algorithm: String,
}

fn parse<'a>(der: &'a [u8], origin: &str) -> Result<X509Certificate<'a>> {
    match X509Certificate::from_der(der) {
        Ok((_, c)) => Ok(c),
        Err(e) => Err(Error::Invalid(format!(
            "{origin}: not a valid X.509 certificate: {e}"
        ))),
    }
}

/// Reads facts from a DER certificate. `origin` names it in errors.
pub fn inspect(der: &[u8], origin: &str) -> Result<CertInfo> {
    let c = parse(der, origin)?;
    let attr = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let subject = c.subject();
    let cn = attr(&mut subject.iter_common_name())
        .into_iter()
        .next()
        .unwrap_or_default();
    let orgs = attr(&mut subject.iter_organization());
    let mut sans = Sans::default();
    if let Ok(Some(ext)) = c.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                GeneralName::DNSName(d) => sans.add(d),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(&b[..]) {
                        sans.add_ip(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(&b[..]) {
                        sans.add_ip(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    let mut usages = Vec::new();
    if let Ok(Some(eku)) = c.extended_key_usage() {
        if eku.value.server_auth {
            usages.push(Eku::ServerAuth);
        }
        if eku.value.client_auth {
            usages.push(Eku::ClientAuth);
        }
    }
    let is_ca = matches!(c.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    Ok(CertInfo {
        cn,
        orgs,
        is_ca,
        sans,
        usages,
        not_before: c.validity().not_before.to_datetime(),
        not_after: c.validity().not_after.to_datetime(),
        spki: c.public_key().raw.to_vec(),
        algorithm: describe_spki(c.public_key()),
    })
}

/// The facts of the certificate [`issue`] made from `req` for
/// `subject_key`: what [`inspect`] reads back from it, without parsing
/// the certificate kubeboot has just built. Times as the certificate
/// holds them (UTC, whole seconds).
pub fn issued_info(req: &CertRequest, subject_key: &Key) -> CertInfo {
    let written = |t: OffsetDateTime| {
        t.replace_nanosecond(0)
            .unwrap_or(t)
            .to_offset(time::UtcOffset::UTC)
    };
    let usages = [Eku::ServerAuth, Eku::ClientAuth]
        .into_iter()
        .filter(|u| !req.is_ca && req.usages.contains(u))
        .collect();
    CertInfo {
        cn: req.cn.clone(),
        orgs: req.org.iter().cloned().collect(),
        is_ca: req.is_ca,
        sans: req.sans.clone(),
        usages,
        not_before: written(req.not_before),
        not_after: written(req.not_after),
        spki: subject_key.spki_der(),
        algorithm: subject_key.describe(),
    }
}

/// True when `child_der`'s signature verifies with `ca_der`'s public key
/// and its issuer name is the CA's subject.
pub fn signed_by(child_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, child)), Ok((_, ca))) = (
        X509Certificate::from_der(child_der),
        X509Certificate::from_der(ca_der),
    ) else {
        return false;
    };
    child.issuer().as_raw() == ca.subject().as_raw()
        && child.verify_signature(Some(ca.public_key())).is_ok()
}

/// The DER of the first `CERTIFICATE` block in a PEM file, checked to parse.
pub fn der_from_pem(pem_bytes: &[u8], origin: &str) -> Result<Vec<u8>> {
    let blocks = pem::parse_many(pem_bytes)
        .map_err(|e| Error::Invalid(format!("{origin}: not a PEM certificate: {e}")))?;
    let der = blocks
        .into_iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .ok_or_else(|| Error::Invalid(format!("{origin}: no PEM CERTIFICATE block found")))?;
    parse(&der, origin)?;
    Ok(der)
}

/// PEM-encodes a DER certificate.
pub fn to_pem(der: &[u8]) -> String {
    super::pem_encode("CERTIFICATE", der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyAlgorithm;

    fn request(cn: &str, is_ca: bool, not_after: OffsetDateTime) -> CertRequest {
        let mut sans = Sans::default();
        for s in [
            "b.example.test",
            "A.example.test",
            "10.0.0.1",
            "::1",
            "a.example.test",
        ] {
            sans.add(s);
        }
        CertRequest {
            cn: cn.into(),
            org: (!is_ca).then(|| "system:masters".to_string()),
            is_ca,
            // in the opposite order to the one a certificate is read in
            usages: if is_ca {
                Vec::new()
            } else {
                vec![Eku::ClientAuth, Eku::ServerAuth]
            },
            sans,
            // nanoseconds and a non-UTC offset: the certificate holds neither
            not_before: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
                .unwrap()
                .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap()),
            not_after,
        }
    }

    /// 2039-09-18: far enough for every test's certificates.
    fn in_2039() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(2_200_000_000).unwrap()
    }

    /// A fresh self-signed P-256 CA named `cn`: its certificate and signer.
    fn p256_ca(cn: &str) -> (Vec<u8>, CaKey) {
        let key = Key::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let der = issue(
            &request(cn, true, in_2039()),
            &key,
            None,
            &SystemRandom::new(),
        )
        .unwrap();
        (der.clone(), CaKey::new(der, key))
    }

    /// The authority key identifier of `c`, as x509-parser reads it.
    fn aki(c: &X509Certificate<'_>) -> Option<Vec<u8>> {
        match c
            .get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
        {
            Ok(Some(e)) => match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    /// What `issued_info` says of a certificate is what x509-parser reads
    /// back from it, for a CA and for a leaf it signs, with UTCTime and
    /// GeneralizedTime validity, for ECDSA and RSA keys.
    #[test]
    fn issued_info_is_what_the_certificate_says() {
        let rng = SystemRandom::new();
        let in_2040 = OffsetDateTime::from_unix_timestamp(2_200_000_000).unwrap();
        let in_2100 = OffsetDateTime::from_unix_timestamp(4_200_000_000).unwrap();
        for (alg, not_after) in [
            (KeyAlgorithm::EcdsaP256, in_2040),
            (KeyAlgorithm::EcdsaP384, in_2100),
            (KeyAlgorithm::Rsa2048, in_2040),
        ] {
            let ca_key = Key::generate(alg).unwrap();
            let req = request("ca", true, not_after);
            let ca_der = issue(&req, &ca_key, None, &rng).unwrap();
            assert_eq!(issued_info(&req, &ca_key), inspect(&ca_der, "").unwrap());
            let ca = CaKey::new(ca_der.clone(), ca_key);
            let key = Key::generate(alg).unwrap();
            let req = request("leaf", false, not_after);
            let der = issue(&req, &key, Some(&ca), &rng).unwrap();
            assert_eq!(issued_info(&req, &key), inspect(&der, "").unwrap());
            assert!(signed_by(&der, &ca_der));
        }
    }

    /// One CA signs several certificates with the issuer it made once;
    /// every one names the CA as issuer, carries its key identifier and
    /// verifies with its key.
    #[test]
    fn a_ca_key_signs_many_certificates() {
        let rng = SystemRandom::new();
        let not_after = in_2039();
        let (ca_der, ca) = p256_ca("ca");
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let ski = match ca_cert
            .get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        {
            Ok(Some(e)) => match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => k.0.to_vec(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        for i in 0..3 {
            let key = Key::generate(KeyAlgorithm::EcdsaP256).unwrap();
            let der = issue(
                &request(&format!("leaf-{i}"), false, not_after),
                &key,
                Some(&ca),
                &rng,
            )
            .unwrap();
            assert!(signed_by(&der, &ca_der), "leaf {i}");
            let (_, c) = X509Certificate::from_der(&der).unwrap();
            assert_eq!(c.issuer().as_raw(), ca_cert.subject().as_raw());
            assert_eq!(aki(&c), Some(ski.clone()), "leaf {i}");
        }
    }
    /// Serials as kubeadm's `NewSignedCert` draws them: uniform in
    /// [1, 2^63-1), positive, and different per certificate. 40 serials read
    /// back by x509-parser: a top bit forced on or a top byte forced to
    /// 0x7f shows in all of them (each chance of missing it: 2^-40).
    #[test]
    fn serials_are_random_positive_63_bit_numbers() {
        let rng = SystemRandom::new();
        let (_, ca) = p256_ca("ca");
        let key = Key::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let req = request("leaf", false, in_2039());
        let serials: Vec<u64> = (0..40)
            .map(|_| {
                let der = issue(&req, &key, Some(&ca), &rng).unwrap();
                let (_, c) = X509Certificate::from_der(&der).unwrap();
                let s = c.tbs_certificate.serial.clone();
                assert!(s.bits() <= 63, "serial {s} has more than 63 bits");
                u64::try_from(s).unwrap()
            })
            .collect();
        assert!(serials.iter().all(|s| (1..(1u64 << 63) - 1).contains(s)));
        assert!(serials.iter().any(|s| s >> 56 != 0x7f), "{serials:x?}");
        let distinct: HashSet<u64> = serials.iter().copied().collect();
        assert_eq!(distinct.len(), serials.len());
    }
    /// A CA prints as its key's algorithm, never its key.
    #[test]
    fn a_ca_prints_without_its_key() {
        let (_, ca) = p256_ca("ca");
        assert_eq!(format!("{ca:?}"), "CaKey(Key(ECDSA P-256, <redacted>))");
    }
    /// `signed_by` says yes only for the CA that signed: not for another
    /// CA of the same name (right issuer name, wrong signature), not for a
    /// CA of another name. openssl's `verify` agrees in each case.
    #[test]
    fn signed_by_needs_the_name_and_the_signature() {
        let rng = SystemRandom::new();
        let not_after = in_2039();
        let (ca_der, signer) = p256_ca("ca");
        let (twin_der, _) = p256_ca("ca");
        let (other_der, _) = p256_ca("other");
        let key = Key::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let leaf = issue(
            &request("leaf", false, not_after),
            &key,
            Some(&signer),
            &rng,
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("kubeboot-signed-by-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = |name: &str, der: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, to_pem(der)).unwrap();
            path
        };
        let leaf_pem = pem("leaf.crt", &leaf);
        for (name, der, expected) in [
            ("ca.crt", &ca_der, true),
            ("twin.crt", &twin_der, false),
            ("other.crt", &other_der, false),
        ] {
            assert_eq!(signed_by(&leaf, der), expected, "{name}");
            let verified = std::process::Command::new("openssl")
                .args(["verify", "-no-CApath", "-no-CAfile", "-CAfile"])
                .arg(pem(name, der))
                .arg(&leaf_pem)
                .output()
                .expect("openssl");
            assert_eq!(
                verified.status.success(),
                expected,
                "openssl verify with {name}"
            );
        }
        assert!(!signed_by(b"not DER", &ca_der));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A CA request that lists usages gets none: a CA carries no extended
    /// key usage, as kubeadm's CAs, and `issued_info` says so too.
    #[test]
    fn a_ca_carries_no_extended_key_usage_even_when_asked() {
        let rng = SystemRandom::new();
        let not_after = in_2039();
        let key = Key::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let mut req = request("ca", true, not_after);
        req.usages = vec![Eku::ServerAuth, Eku::ClientAuth];
        let der = issue(&req, &key, None, &rng).unwrap();
        let read = inspect(&der, "").unwrap();
        assert!(read.usages.is_empty());
        assert_eq!(issued_info(&req, &key), read);
    }
    /// A CA certificate made elsewhere without a subject key identifier
    /// (openssl, `subjectKeyIdentifier=none`): the leaves it signs name the
    /// CA's key by the SHA-256 of its public key info (RFC 7093 method 1,
    /// first 160 bits), computed here from the bytes openssl wrote.
    #[test]
    fn a_ca_without_a_key_identifier_is_named_by_its_public_key() {
        let dir = std::env::temp_dir().join(format!("kubeboot-no-ski-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = Key::generate(KeyAlgorithm::EcdsaP256).unwrap();
        std::fs::write(dir.join("ca.key"), key.to_pem()).unwrap();
        let made = std::process::Command::new("openssl")
            .args("req -x509 -new -key ca.key -subj /CN=ext-ca -days 2".split(' '))
            .args(["-outform", "DER", "-out", "ca.der"])
            .args(["-addext", "subjectKeyIdentifier=none"])
            .args(["-addext", "authorityKeyIdentifier=none"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,digitalSignature"])
            .current_dir(&dir)
            .status()
            .expect("openssl");
        assert!(made.success());
        let ca_der = std::fs::read(dir.join("ca.der")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let spki_hash = ring::digest::digest(&ring::digest::SHA256, ca_cert.public_key().raw);
        let ca = CaKey::new(ca_der.clone(), key);
        let leaf_key = Key::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let not_after = OffsetDateTime::now_utc() + time::Duration::days(1);
        let req = request("leaf", false, not_after);
        let der = issue(&req, &leaf_key, Some(&ca), &SystemRandom::new()).unwrap();
        assert!(signed_by(&der, &ca_der));
        let (_, leaf) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(aki(&leaf).as_deref(), Some(&spki_hash.as_ref()[..20]));
    }
}
