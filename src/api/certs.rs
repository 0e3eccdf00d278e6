//! `download-certs`: the shared control-plane CAs and service-account keys
//! that `kubeadm init --upload-certs` put in the `kube-system/kubeadm-certs`
//! Secret, each AES-256-GCM encrypted with the certificate key
//! (nonce ‖ ciphertext ‖ tag, 12-byte nonce), decrypted here.

use std::collections::BTreeMap;

use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::config::{Etcd, Settings};
use crate::envelope::CarriedFile;
use crate::error::Error;
use crate::secret::Secret;

/// Path of the Secret.
pub const SECRET_PATH: &str = "/api/v1/namespaces/kube-system/secrets/kubeadm-certs";

/// Secret data key → host path, for this cluster's etcd topology.
pub fn layout(s: &Settings) -> Vec<(&'static str, String)> {
    let dir = s.cluster.certificates_dir.trim_end_matches('/');
    let mut v = vec![
        ("ca.crt", format!("{dir}/ca.crt")),
        ("ca.key", format!("{dir}/ca.key")),
        ("front-proxy-ca.crt", format!("{dir}/front-proxy-ca.crt")),
        ("front-proxy-ca.key", format!("{dir}/front-proxy-ca.key")),
        ("sa.pub", format!("{dir}/sa.pub")),
        ("sa.key", format!("{dir}/sa.key")),
    ];
    match &s.cluster.etcd {
        Etcd::Local { .. } => {
            v.push(("etcd-ca.crt", format!("{dir}/etcd/ca.crt")));
            v.push(("etcd-ca.key", format!("{dir}/etcd/ca.key")));
        }
        Etcd::External {
            ca_file,
            cert_file,
            key_file,
            ..
        } => {
            v.push(("external-etcd-ca.crt", ca_file.clone()));
            v.push(("external-etcd.crt", cert_file.clone()));
            v.push(("external-etcd.key", key_file.clone()));
        }
    }
    v
}

/// Decrypts one value: nonce ‖ ciphertext ‖ tag.
pub fn decrypt(key: &[u8; 32], blob: &[u8]) -> Option<Vec<u8>> {
    if blob.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return None;
    }
    let (nonce, sealed) = blob.split_at(NONCE_LEN);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = sealed.to_vec();
    let plain = key.open_in_place(nonce, Aad::empty(), &mut buf).ok()?;
    Some(plain.to_vec())
}

/// Encrypts like kubeadm's upload-certs (the upload-certs phase and
/// tests). `nonce` must be unique per key.
pub fn encrypt(key: &[u8; 32], nonce: [u8; NONCE_LEN], plain: &[u8]) -> Option<Vec<u8>> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let mut buf = plain.to_vec();
    k.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
        .ok()?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Some(out)
}

/// The certificate key as 32 bytes (the config checked it is 64 hex digits).
pub fn key_bytes(k: &Secret) -> Result<[u8; 32], Error> {
    let hex = k.expose().as_bytes();
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return Err(Error::Invalid(
            "certificateKey: must be 64 hexadecimal characters".into(),
        ));
    }
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair)
            .ok()
            .and_then(|p| u8::from_str_radix(p, 16).ok());
        out[i] = s.ok_or_else(|| {
            Error::Invalid("certificateKey: must be 64 hexadecimal characters".into())
        })?;
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct SecretObject {
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// Decrypts the kubeadm-certs Secret (JSON body) into the files to write.
/// Any value that does not decrypt aborts (a wrong certificate key); empty
/// values (files the init node did not have) are skipped.
pub fn files_from_secret(
    body: &[u8],
    s: &Settings,
    key: &[u8; 32],
) -> Result<Vec<CarriedFile>, Error> {
    let secret: SecretObject = serde_json::from_slice(body)
        .map_err(|e| Error::Failed(format!("{SECRET_PATH}: not a Secret: {e}")))?;
    let mut out = Vec::new();
    for (data_key, path) in layout(s) {
        let Some(b64) = secret.data.get(data_key) else {
            continue;
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| Error::Failed(format!("{SECRET_PATH}: {data_key} is not base64")))?;
        if blob.is_empty() {
            continue;
        }
        let content = decrypt(key, &blob).ok_or_else(|| {
            Error::Untrusted(format!(
                "{SECRET_PATH}: {data_key} does not decrypt with the certificate key (wrong certificateKey, or the certs were uploaded with another key)"
            ))
        })?;
        let mode = if data_key.ends_with(".key") {
            0o600
        } else {
            0o644
        };
        out.push(CarriedFile {
            path,
            content,
            mode,
        });
    }
    if !out.iter().any(|f| f.path.ends_with("/ca.key")) {
        return Err(Error::Failed(format!(
            "{SECRET_PATH}: holds no ca.key; was `kubeadm init phase upload-certs --upload-certs` run?"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let key = [7u8; 32];
        let blob = encrypt(&key, [1; 12], b"-----BEGIN EC PRIVATE KEY-----").unwrap();
        assert_eq!(blob.len(), 12 + 30 + 16);
        assert_eq!(
            decrypt(&key, &blob).unwrap(),
            b"-----BEGIN EC PRIVATE KEY-----"
        );
        assert!(decrypt(&[8u8; 32], &blob).is_none());
        assert!(decrypt(&key, &blob[..20]).is_none());
        let k = key_bytes(&Secret::new("0f".repeat(32))).unwrap();
        assert_eq!(k, [0x0f; 32]);
        assert!(key_bytes(&Secret::new("zz".repeat(32))).is_err());
    }

    /// The length check at its edge: an empty file seals to exactly nonce
    /// and tag (28 bytes) and opens to nothing; anything shorter (down to
    /// no bytes at all, shorter than the nonce) is refused, never a panic.
    #[test]
    fn the_shortest_sealed_value_opens_and_shorter_ones_are_refused() {
        let key = [7u8; 32];
        let blob = encrypt(&key, [1; 12], b"").unwrap();
        assert_eq!(blob.len(), NONCE_LEN + AES_256_GCM.tag_len());
        assert_eq!(decrypt(&key, &blob), Some(vec![]));
        for n in 0..blob.len() {
            assert_eq!(decrypt(&key, &blob[..n]), None, "{n} bytes");
        }
    }
}
