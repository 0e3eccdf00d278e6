//! X.509 certificates: issuing one from a request (kubeadm's template:
//! subject CN+O, random 63-bit serial, backdated NotBefore, KeyUsage,
//! ExtKeyUsage, sorted DNS SANs then IPs), and inspecting an existing one
//! (subject, SANs, usages, validity, signature) for load-or-create.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SanType, SerialNumber,
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

/// The CA that signs a leaf: its certificate (DER) and key.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    /// CA certificate, DER.
    pub cert_der: &'a [u8],
    /// CA private key.
    pub key: &'a Key,
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
    signer: Option<Signer<'_>>,
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
        Some(s) => {
            let issuer =
                Issuer::from_ca_cert_der(&s.cert_der.into(), s.key.pair()?).map_err(|e| {
                    Error::Invalid(format!("{}: reading the CA certificate: {e}", what()))
                })?;
            params.signed_by(subject_key, &issuer)
        }
    };
    cert.map(|c| c.der().to_vec())
        .map_err(|e| Error::Failed(format!("{}: {e}", what())))
}

/// Facts read from an existing certificate.
#[derive(Debug, Clone)]
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
    super::pem_encode("CERTIFICATE", der.to_vec())
}
