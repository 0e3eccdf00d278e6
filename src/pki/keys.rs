//! Private keys: generation (ECDSA P-256 / P-384 through rcgen + ring; RSA
//! 2048/3072/4096 through the `rsa` crate, since ring cannot generate RSA
//! keys — ring still does every RSA signature),
//! loading of user-supplied keys (RSA in PKCS#1 or PKCS#8, ECDSA in SEC1 or
//! PKCS#8), and the PEM encodings kubeadm writes (`EC PRIVATE KEY` for
//! ECDSA, `PUBLIC KEY` for `sa.pub`).

use std::cell::OnceCell;
use std::fmt;

use rcgen::{KeyPair, PublicKeyData};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::der;
use crate::config::KeyAlgorithm;
use crate::error::{Error, Result};

/// A private key that can sign certificates. `Debug` never shows it.
///
/// A generated key keeps ring's PKCS#8 document and the public point read
/// out of it; the ring signing key (whose construction computes the public
/// point again, as a consistency check) is built only when the key signs:
/// for a CA, not for the 13 leaf and service-account keys of a control
/// plane, so each of those costs one scalar multiplication, not two.
pub struct Key {
    alg: &'static rcgen::SignatureAlgorithm,
    pkcs8: zeroize::Zeroizing<Vec<u8>>,
    public: Vec<u8>,
    pair: OnceCell<KeyPair>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({}, <redacted>)", self.describe())
    }
}

impl Key {
    /// Generates a fresh key of `algorithm`.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Key> {
        let failed = |e: &dyn fmt::Display| {
            Error::Failed(format!("generating {} key: {e}", algorithm.as_str()))
        };
        let (alg, ring_alg) = match algorithm {
            KeyAlgorithm::EcdsaP256 => (
                &rcgen::PKCS_ECDSA_P256_SHA256,
                &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            ),
            KeyAlgorithm::EcdsaP384 => (
                &rcgen::PKCS_ECDSA_P384_SHA384,
                &ring::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            ),
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                let pkcs8 = rsa_pkcs8(algorithm.rsa_bits()).map_err(|e| failed(&e))?;
                let pair = KeyPair::try_from(pkcs8.as_slice()).map_err(|e| failed(&e))?;
                return Ok(Key::from_pair(pair));
            }
        };
        let doc = ring::signature::EcdsaKeyPair::generate_pkcs8(
            ring_alg,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|_| failed(&"the system random source failed"))?;
        let public = der::pkcs8_ec_public_point(doc.as_ref())
            .ok_or_else(|| failed(&"no public point in the generated key"))?
            .to_vec();
        Ok(Key {
            alg,
            pkcs8: zeroize::Zeroizing::new(doc.as_ref().to_vec()),
            public,
            pair: OnceCell::new(),
        })
    }

    /// A key from an rcgen key pair (loaded, or an RSA key made by `rsa`).
    fn from_pair(pair: KeyPair) -> Key {
        Key {
            alg: pair.algorithm(),
            pkcs8: zeroize::Zeroizing::new(pair.serialized_der().to_vec()),
            public: pair.der_bytes().to_vec(),
            pair: OnceCell::from(pair),
        }
    }

    /// Loads a PEM private key: `RSA PRIVATE KEY` (PKCS#1), `EC PRIVATE KEY`
    /// (SEC1, other blocks such as `EC PARAMETERS` are skipped) or
    /// `PRIVATE KEY` (PKCS#8). Only RSA and ECDSA P-256/P-384 are accepted.
    /// `origin` names the file or config field in errors.
    pub fn from_pem(pem_bytes: &[u8], origin: &str) -> Result<Key> {
        let blocks = pem::parse_many(pem_bytes)
            .map_err(|e| Error::Invalid(format!("{origin}: not a PEM private key: {e}")))?;
        let block = blocks
            .iter()
            .find(|b| {
                matches!(
                    b.tag(),
                    "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY"
                )
            })
            .ok_or_else(|| Error::Invalid(format!("{origin}: no PEM private key block found")))?;
        let pkcs8 = match block.tag() {
            "PRIVATE KEY" => Some(block.contents().to_vec()),
            "RSA PRIVATE KEY" => der::pkcs1_to_pkcs8(block.contents()),
            "EC PRIVATE KEY" => der::sec1_to_pkcs8(block.contents()),
            _ => {
                return Err(Error::Invalid(format!(
                    "{origin}: encrypted private keys are not supported; decrypt it first"
                )));
            }
        };
        let pkcs8 = pkcs8
            .ok_or_else(|| Error::Invalid(format!("{origin}: malformed {} block", block.tag())))?;
        let pair = KeyPair::try_from(pkcs8.as_slice()).map_err(|_| {
            Error::Invalid(format!(
                "{origin}: unsupported or malformed private key (supported: RSA 2048-8192 bits, ECDSA P-256, ECDSA P-384)"
            ))
        })?;
        if pair.algorithm() == &rcgen::PKCS_ED25519 {
            return Err(Error::Invalid(format!(
                "{origin}: Ed25519 keys are not supported by Kubernetes' PKI (supported: RSA, ECDSA P-256, ECDSA P-384)"
            )));
        }
        Ok(Key::from_pair(pair))
    }

    /// The key in the PEM form kubeadm writes (client-go keyutil): SEC1
    /// `EC PRIVATE KEY` for ECDSA, PKCS#1 `RSA PRIVATE KEY` for RSA, PKCS#8
    /// `PRIVATE KEY` otherwise.
    pub fn to_pem(&self) -> String {
        if let Some(sec1) = der::pkcs8_ec_to_sec1(&self.pkcs8).map(zeroize::Zeroizing::new) {
            return super::pem_encode("EC PRIVATE KEY", &sec1);
        }
        match der::pkcs8_rsa_to_pkcs1(&self.pkcs8).map(zeroize::Zeroizing::new) {
            Some(pkcs1) => super::pem_encode("RSA PRIVATE KEY", &pkcs1),
            None => super::pem_encode("PRIVATE KEY", &self.pkcs8),
        }
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        self.subject_public_key_info()
    }

    /// The public key as a `PUBLIC KEY` PEM (PKIX), as in `sa.pub`.
    pub fn public_pem(&self) -> String {
        super::pem_encode("PUBLIC KEY", &self.spki_der())
    }

    /// "ECDSA P-256", "RSA 2048", ... (an ECDSA key's name comes from its
    /// algorithm, which names the curve; others are read from the SPKI).
    pub fn describe(&self) -> String {
        if self.alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            return "ECDSA P-256".into();
        }
        if self.alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            return "ECDSA P-384".into();
        }
        describe_spki_der(&self.spki_der())
    }

    /// The rcgen key pair, for signing: built from the PKCS#8 document the
    /// first time the key signs.
    pub(crate) fn pair(&self) -> Result<&KeyPair> {
        if let Some(p) = self.pair.get() {
            return Ok(p);
        }
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from(self.pkcs8.as_slice());
        let p = KeyPair::from_pkcs8_der_and_sign_algo(&der, self.alg)
            .map_err(|e| Error::Failed(format!("loading a generated key for signing: {e}")))?;
        Ok(self.pair.get_or_init(|| p))
    }
}

/// The subject public key of a certificate issued for this key.
impl PublicKeyData for Key {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

/// ring's system RNG as the `rand_core` RNG the `rsa` crate draws from (one
/// randomness source for every key). `fill_bytes` cannot fail by signature:
/// a failure is remembered and the key made from it is thrown away.
struct SystemRng {
    rng: ring::rand::SystemRandom,
    failed: bool,
}

impl rsa::rand_core::RngCore for SystemRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        use ring::rand::SecureRandom;
        if self.rng.fill(dest).is_err() {
            self.failed = true;
        }
    }
    fn try_fill_bytes(
        &mut self,
        dest: &mut [u8],
    ) -> std::result::Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        if self.failed {
            return Err(rsa::rand_core::Error::from(std::num::NonZeroU32::MIN));
        }
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for SystemRng {}

/// A fresh RSA key of `bits` bits (public exponent 65537, as Go's
/// `rsa.GenerateKey` that kubeadm calls), as PKCS#8 DER.
fn rsa_pkcs8(bits: usize) -> std::result::Result<zeroize::Zeroizing<Vec<u8>>, String> {
    use rsa::pkcs8::EncodePrivateKey;
    let mut rng = SystemRng {
        rng: ring::rand::SystemRandom::new(),
        failed: false,
    };
    let key = rsa::RsaPrivateKey::new(&mut rng, bits).map_err(|e| e.to_string())?;
    if rng.failed {
        return Err("the system random number generator failed".into());
    }
    let doc = key.to_pkcs8_der().map_err(|e| e.to_string())?;
    Ok(zeroize::Zeroizing::new(doc.as_bytes().to_vec()))
}

/// Describes a DER SubjectPublicKeyInfo: "ECDSA P-256", "RSA 2048", ...
pub fn describe_spki_der(spki: &[u8]) -> String {
    match SubjectPublicKeyInfo::from_der(spki) {
        Ok((_, info)) => describe_spki(&info),
        Err(_) => "unknown".to_string(),
    }
}

/// Describes a parsed SubjectPublicKeyInfo.
pub fn describe_spki(info: &SubjectPublicKeyInfo<'_>) -> String {
    match info.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(_)) => {
            let curve = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256".to_string(),
                Some("1.3.132.0.34") => "ECDSA P-384".to_string(),
                Some("1.3.132.0.35") => "ECDSA P-521".to_string(),
                Some(other) => format!("ECDSA {other}"),
                None => "ECDSA".to_string(),
            }
        }
        _ => info.algorithm.algorithm.to_id_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_kubeadm_pem() {
        for (alg, name) in [
            (KeyAlgorithm::EcdsaP256, "ECDSA P-256"),
            (KeyAlgorithm::EcdsaP384, "ECDSA P-384"),
            (KeyAlgorithm::Rsa2048, "RSA 2048"),
        ] {
            let k = Key::generate(alg).unwrap();
            assert_eq!(k.describe(), name);
            // the name from the algorithm is the one read from the SPKI
            assert_eq!(describe_spki_der(&k.spki_der()), name);
            let pem = k.to_pem();
            let tag = if name.starts_with("RSA") { "RSA" } else { "EC" };
            assert!(
                pem.starts_with(&format!("-----BEGIN {tag} PRIVATE KEY-----")),
                "{pem}"
            );
            let back = Key::from_pem(pem.as_bytes(), "test").unwrap();
            assert_eq!(back.spki_der(), k.spki_der());
            assert_eq!(format!("{k:?}"), format!("Key({name}, <redacted>)"));
        }
    }

    /// The `rsa` crate's key generation calls only some of `RngCore`; the
    /// others must draw from the system source all the same.
    #[test]
    fn the_rsa_rng_adapter_draws_fresh_values() {
        use rsa::rand_core::RngCore;
        let mut rng = SystemRng {
            rng: ring::rand::SystemRandom::new(),
            failed: false,
        };
        let wide: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        let narrow: Vec<u32> = (0..4).map(|_| rng.next_u32()).collect();
        // four equal draws from the OS source: probability 2^-192 (2^-96)
        assert!(wide.windows(2).any(|w| w[0] != w[1]), "{wide:?}");
        assert!(narrow.windows(2).any(|w| w[0] != w[1]), "{narrow:?}");
        let mut blocks = [[0u8; 32]; 2];
        for b in &mut blocks {
            rng.try_fill_bytes(b).unwrap();
        }
        // a block left at zero, or two equal blocks: probability 2^-255
        assert!(blocks[0] != [0; 32] && blocks[0] != blocks[1]);
        assert!(!rng.failed);
    }

    #[test]
    fn garbage_names_origin() {
        let e = Key::from_pem(b"hello", "/x/ca.key")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x/ca.key"), "{e}");
        let e = Key::from_pem(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "/x/ca.key",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/x/ca.key") && e.contains("supported"), "{e}");
    }
}
