//! `upload-certs` and `download-certs`: the shared control-plane CAs and
//! service-account keys that `kubeadm init --upload-certs` puts in the
//! `kube-system/kubeadm-certs` Secret, each AES-256-GCM encrypted with the
//! certificate key (nonce ‖ ciphertext ‖ tag, 12-byte nonce): encrypted and
//! uploaded ([`upload`]) on init, downloaded and decrypted ([`download`])
//! on a control-plane join.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::SecureRandom;
use serde_json::Value;

use super::discovery::{self, ClusterInfo};
use super::kube::Kube;
use super::objects::{self, Update};
use crate::config::{BootstrapToken, Etcd, Settings};
use crate::envelope::CarriedFile;
use crate::error::Error;
use crate::host::{Paths, fs};
use crate::net::http::{self, Method};
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

/// `upload-certs`: reads the shared files of [`layout`] under `paths`
/// (kubeadm stores a file it does not have as an empty value), encrypts
/// each with the certificate key `ck` and a fresh nonce, and uploads them
/// (see [`upload_encrypted`]). Returns the owner token's id.
pub fn upload(
    kube: &Kube,
    s: &Settings,
    paths: &Paths,
    ck: &Secret,
    now: time::OffsetDateTime,
) -> Result<String, Error> {
    let key = key_bytes(ck)?;
    let rng = ring::rand::SystemRandom::new();
    let mut encrypted = Vec::new();
    for (data_key, path) in layout(s) {
        let file = paths.host(&path);
        let Some(plain) = fs::read_optional(&file)? else {
            encrypted.push((data_key, Vec::new()));
            continue;
        };
        let mut nonce = [0u8; 12];
        rng.fill(&mut nonce)
            .map_err(|_| Error::Failed("the system random number generator failed".into()))?;
        let blob = encrypt(&key, nonce, &plain)
            .ok_or_else(|| Error::Failed(format!("encrypting {}", file.display())))?;
        encrypted.push((data_key, blob));
    }
    upload_encrypted(kube, encrypted, now)
}

/// `download-certs`: reads kubeadm-certs with the bootstrap token over TLS
/// verified with the discovered CA and decrypts it with the certificate key
/// into the files to write. A missing Secret names the kubeadm command that
/// makes it.
pub fn download(
    info: &ClusterInfo,
    token: &BootstrapToken,
    s: &Settings,
    ck: &Secret,
    budget: Duration,
) -> Result<Vec<CarriedFile>, Error> {
    let key = key_bytes(ck)?;
    let body = match discovery::get_with_token(
        &info.server,
        SECRET_PATH,
        &info.ca_pem,
        token,
        budget,
    )? {
        (200, body) => body,
        (404, _) => {
            return Err(Error::Failed(format!(
                "{SECRET_PATH}: not found; run `kubeadm init phase upload-certs --upload-certs` on a control-plane node (the Secret expires after 2 hours)"
            )));
        }
        (status, _) => {
            return Err(Error::Failed(format!("{SECRET_PATH}: HTTP {status}")));
        }
    };
    files_from_secret(&body, s, &key)
}

/// upload-certs as kubeadm's `UploadCerts` does it: a new short-lived
/// bootstrap token ([`objects::certs_owner_token_spec`], 2 hours, generated
/// with the crate's token generator; only its public id is logged), its
/// Secret read back for its UID, then `kube-system/kubeadm-certs` (the
/// `encrypted` files) with a controller reference to that Secret and the
/// RBAC to read it. When the token expires the token cleaner deletes its
/// Secret and garbage collection deletes kubeadm-certs with it.
///
/// On a rerun kubeadm piles up one such token per run (each lives 2 h);
/// here the token that owned the previous kubeadm-certs is expired at once
/// instead (a merge patch of its `expiration` to `now`, after kubeadm-certs
/// has a new owner, so the collector keeps the Secret), when it is still
/// there and carries kubeadm's description: at most one live owner token.
/// Returns the new token's id.
fn upload_encrypted(
    kube: &Kube,
    encrypted: Vec<(&str, Vec<u8>)>,
    now: time::OffsetDateTime,
) -> Result<String, Error> {
    let previous = match kube.get(SECRET_PATH)? {
        (200, body) => serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| objects::certs_owner_name(&v)),
        (404, _) => None,
        (s, body) => return Err(kube.refused("GET", SECRET_PATH, s, &body, true)),
    };
    let spec = objects::certs_owner_token_spec();
    let mut created = None;
    // a fresh id that exists already (1 in 36^6) is drawn again, never replaced
    for _ in 0..3 {
        let token = BootstrapToken::generate()?;
        let obj = objects::object(&objects::token_secret(&spec, &token, now), Update::Replace);
        match kube.create(&obj)? {
            (200 | 201, _) => {
                created = Some((token.id, obj.item));
                break;
            }
            (409, _) => continue,
            (s, body) => return Err(kube.refused("POST", &obj.collection, s, &body, true)),
        }
    }
    let Some((id, item)) = created else {
        return Err(Error::Failed(
            "upload-certs: every generated token id already existed (3 tries)".into(),
        ));
    };
    let name = format!("bootstrap-token-{id}");
    // read back for the UID, as kubeadm's getSecretOwnerRef does
    let uid = match kube.get(&item)? {
        (200, body) => serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.pointer("/metadata/uid")?.as_str().map(str::to_string))
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                Error::Failed(format!(
                    "GET {}{item}: the Secret has no metadata.uid to own kubeadm-certs",
                    kube.base
                ))
            })?,
        (s, body) => return Err(kube.refused("GET", &item, s, &body, true)),
    };
    log::info!(target: "upload-certs", "created Secret kube-system/{name} (no usages, expires in 2 h); kubeadm-certs is deleted with it");
    kube.apply_all(
        "upload-certs",
        &objects::kubeadm_certs(encrypted, objects::secret_controller_ref(&name, &uid)),
    )?;
    if let Some(old) = previous.filter(|o| *o != name) {
        retire_certs_owner(kube, &old, now);
    }
    Ok(id)
}

/// Expires the token Secret `name` that owned the previous kubeadm-certs,
/// when it is still there and is kubeadm's certs token. Only logs on
/// failure: the new kubeadm-certs is in place and the old token expires
/// by itself within 2 hours.
fn retire_certs_owner(kube: &Kube, name: &str, now: time::OffsetDateTime) {
    let path = format!("/api/v1/namespaces/{}/secrets/{name}", objects::KUBE_SYSTEM);
    let is_certs_token = |body: &[u8]| -> bool {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return false;
        };
        let description = v
            .pointer("/data/description")
            .and_then(Value::as_str)
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
        v.get("type").and_then(Value::as_str) == Some(objects::BOOTSTRAP_TOKEN_TYPE)
            && description.as_deref() == Some(objects::CERTS_TOKEN_DESCRIPTION.as_bytes())
    };
    let outcome = match kube.get(&path) {
        Ok((200, body)) if is_certs_token(&body) => {
            let patch = objects::expire_token_patch(now).to_string();
            match kube.call(Method::MergePatch(patch.as_bytes()), "PATCH", &path) {
                Ok((200, _)) => Ok("expired it (the token cleaner deletes it)"),
                Ok((404, _)) => Ok("it is gone already"),
                Ok((s, _)) => Err(format!("PATCH {path}: {}", http::status_text(s))),
                Err(e) => Err(e.to_string()),
            }
        }
        Ok((200, _)) => Ok("left alone: not kubeadm's certs token"),
        Ok((404, _)) => Ok("it is gone already"),
        Ok((s, _)) => Err(format!("GET {path}: {}", http::status_text(s))),
        Err(e) => Err(e.to_string()),
    };
    match outcome {
        Ok(what) => {
            log::info!(target: "upload-certs", "previous owner of kubeadm-certs, Secret kube-system/{name}: {what}")
        }
        Err(e) => {
            log::warn!(target: "upload-certs", "could not expire the previous owner of kubeadm-certs, Secret kube-system/{name} (it expires by itself): {e}")
        }
    }
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
