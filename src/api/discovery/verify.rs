//! The verification half of token discovery (pure): the detached JWS
//! signature the bootstrap signer made with the join token over the
//! cluster-info kubeconfig, and the CA public key pin. The HTTP fetches are
//! in the parent module.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::config::BootstrapToken;
use crate::error::Error;

/// The cluster information a joining node trusts after discovery.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    /// The API server URL from the signed kubeconfig.
    pub server: String,
    /// The cluster CA certificate(s), PEM.
    pub ca_pem: Vec<u8>,
    /// The signed kubeconfig text, exactly as served.
    pub kubeconfig: String,
}

/// The parts of a ConfigMap discovery reads.
#[derive(Debug, Deserialize)]
pub struct ConfigMap {
    /// `data`.
    #[serde(default)]
    pub data: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<NamedCluster>,
}

#[derive(Debug, Deserialize)]
struct NamedCluster {
    cluster: ClusterEntry,
}

#[derive(Debug, Deserialize)]
struct ClusterEntry {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    ca_data: Option<String>,
}

/// The compact detached JWS (`<header>..<signature>`) the bootstrap signer
/// stores for `payload` under a token, HS256 keyed with the token secret.
pub fn sign_detached(payload: &str, token: &BootstrapToken) -> String {
    let header = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, token.id);
    let h = URL_SAFE_NO_PAD.encode(header.as_bytes());
    let sig = hs256(&h, payload, token);
    format!("{h}..{sig}")
}

fn hs256(header_b64: &str, payload: &str, token: &BootstrapToken) -> String {
    let signing_input = format!(
        "{header_b64}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes())
    );
    // go-jose pads the 16-byte secret with zeros to 32 bytes; HMAC pads short
    // keys with zeros to the block size anyway, so the MAC is the same.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.secret.expose().as_bytes());
    URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, signing_input.as_bytes()).as_ref())
}

/// Checks the detached JWS `jws` over `payload` with `token`.
pub fn verify_detached(jws: &str, payload: &str, token: &BootstrapToken) -> Result<(), Error> {
    let bad = |why: &str| {
        Error::Untrusted(format!(
            "cluster-info signature for token id {} is invalid ({why}): the API server cannot be trusted with this token",
            token.id
        ))
    };
    let mut parts = jws.split('.');
    let (Some(h), Some(""), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not a detached compact JWS"));
    };
    let header = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| bad("header is not base64url"))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| bad("header is not JSON"))?;
    if header.get("alg").and_then(|v| v.as_str()) != Some("HS256") {
        return Err(bad("algorithm is not HS256"));
    }
    if header.get("kid").and_then(|v| v.as_str()) != Some(token.id.as_str()) {
        return Err(bad("key id does not match the token id"));
    }
    let expected = hs256(h, payload, token);
    let got = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| bad("signature is not base64url"))?;
    let want = URL_SAFE_NO_PAD
        .decode(&expected)
        .map_err(|_| bad("internal encoding error"))?;
    if got.len() != want.len() || !constant_time_eq(&got, &want) {
        return Err(bad("signature mismatch"));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `sha256:<hex>` pin of every certificate in `pem`.
pub fn pins_of(pem: &[u8]) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for block in ::pem::parse_many(pem)
        .map_err(|e| Error::Failed(format!("cluster CA is not valid PEM: {e}")))?
    {
        if block.tag() != "CERTIFICATE" {
            continue;
        }
        let (_, cert) = x509_parser::parse_x509_certificate(block.contents())
            .map_err(|e| Error::Failed(format!("cluster CA certificate does not parse: {e}")))?;
        out.push(crate::pki::spki_hash(cert.tbs_certificate.subject_pki.raw));
    }
    Ok(out)
}

/// Verifies a `cluster-info` ConfigMap (JSON body) fetched without TLS
/// verification: signature with `token`, then the CA pin (unless
/// `skip_pin`, which the config only allows with unsafeSkipCAVerification).
pub fn verify_cluster_info(
    body: &[u8],
    token: &BootstrapToken,
    pins: &[String],
    skip_pin: bool,
) -> Result<ClusterInfo, Error> {
    let cm: ConfigMap = serde_json::from_slice(body)
        .map_err(|e| Error::Failed(format!("cluster-info ConfigMap is not valid JSON: {e}")))?;
    let kubeconfig = cm
        .data
        .get("kubeconfig")
        .ok_or_else(|| Error::Failed("cluster-info ConfigMap has no kubeconfig key".into()))?;
    let key = format!("jws-kubeconfig-{}", token.id);
    let jws = cm.data.get(&key).ok_or_else(|| {
        Error::Failed(format!(
            "cluster-info has no signature for token id {} ({key}); the token may be unknown, expired, or not yet signed by the controller manager",
            token.id
        ))
    })?;
    verify_detached(jws, kubeconfig, token)?;
    let kc: Kubeconfig = serde_norway::from_str(kubeconfig)
        .map_err(|e| Error::Failed(format!("cluster-info kubeconfig does not parse: {e}")))?;
    let cluster = kc
        .clusters
        .into_iter()
        .next()
        .ok_or_else(|| Error::Failed("cluster-info kubeconfig has no cluster".into()))?
        .cluster;
    let ca_b64 = cluster.ca_data.ok_or_else(|| {
        Error::Failed("cluster-info kubeconfig has no certificate-authority-data".into())
    })?;
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(ca_b64.trim())
        .map_err(|_| {
            Error::Failed("cluster-info certificate-authority-data is not base64".into())
        })?;
    if !skip_pin {
        let have = pins_of(&ca_pem)?;
        let ok = pins
            .iter()
            .any(|p| have.iter().any(|h| h.eq_ignore_ascii_case(p)));
        if !ok {
            return Err(Error::Untrusted(format!(
                "the cluster CA does not match any caCertHash: the server offered {}; refusing to join",
                have.join(", ")
            )));
        }
    }
    Ok(ClusterInfo {
        server: cluster.server,
        ca_pem,
        kubeconfig: kubeconfig.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn token() -> BootstrapToken {
        BootstrapToken {
            id: "abcdef".into(),
            secret: Secret::new("0123456789abcdef"),
        }
    }

    #[test]
    fn jws_round_trip_and_tamper() {
        let t = token();
        let jws = sign_detached("payload", &t);
        assert!(jws.contains(".."));
        verify_detached(&jws, "payload", &t).unwrap();
        assert!(verify_detached(&jws, "payload2", &t).is_err());
        let other = BootstrapToken {
            id: "abcdef".into(),
            secret: Secret::new("fedcba9876543210"),
        };
        let e = verify_detached(&jws, "payload", &other)
            .unwrap_err()
            .to_string();
        assert!(
            !e.contains("0123456789abcdef") && !e.contains("fedcba9876543210"),
            "{e}"
        );
        let wrong_kid = BootstrapToken {
            id: "zzzzzz".into(),
            secret: Secret::new("0123456789abcdef"),
        };
        assert!(verify_detached(&jws, "payload", &wrong_kid).is_err());
        assert!(verify_detached("x.y.z", "payload", &t).is_err());
    }

    /// Two signature bytes flipped by the same bit: the comparison must
    /// still see the difference (an XOR-accumulating compare would not).
    #[test]
    fn a_signature_with_two_equal_flips_is_refused() {
        let t = token();
        let jws = sign_detached("payload", &t);
        let (head, sig) = jws.split_once("..").unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[0] ^= 0x01;
        raw[1] ^= 0x01;
        let forged = format!("{head}..{}", URL_SAFE_NO_PAD.encode(&raw));
        assert!(verify_detached(&forged, "payload", &t).is_err());
    }

    /// cluster-info for `ca_pem` at server `https://10.0.0.1:6443`, signed for `t`.
    fn cluster_info(ca_pem: &str, t: &BootstrapToken) -> Vec<u8> {
        let kc = format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://10.0.0.1:6443\n  name: \"\"\nkind: Config\n",
            base64::engine::general_purpose::STANDARD.encode(ca_pem)
        );
        let jws = sign_detached(&kc, t);
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": kc, format!("jws-kubeconfig-{}", t.id): jws},
        }))
        .unwrap()
    }

    /// A correctly signed cluster-info is trusted only when its CA matches a
    /// pin (in any hex case), unless pinning is skipped on purpose.
    #[test]
    fn the_pin_decides_unless_skipped() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()])
            .unwrap()
            .cert
            .pem();
        let other = rcgen::generate_simple_self_signed(vec!["other".into()])
            .unwrap()
            .cert
            .pem();
        let t = token();
        let body = cluster_info(&ca, &t);
        let pin = pins_of(ca.as_bytes()).unwrap().remove(0);
        let other_pin = pins_of(other.as_bytes()).unwrap().remove(0);
        assert_ne!(pin, other_pin);
        let info = verify_cluster_info(&body, &t, std::slice::from_ref(&pin), false).unwrap();
        assert_eq!(info.server, "https://10.0.0.1:6443");
        assert_eq!(info.ca_pem, ca.as_bytes());
        verify_cluster_info(&body, &t, &[pin.to_uppercase()], false).unwrap();
        let err =
            verify_cluster_info(&body, &t, std::slice::from_ref(&other_pin), false).unwrap_err();
        assert!(matches!(err, Error::Untrusted(_)), "{err}");
        assert!(
            err.to_string().contains(&pin),
            "names the offered CA: {err}"
        );
        verify_cluster_info(&body, &t, &[other_pin], true).unwrap();
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256 of a fixed input, computed independently with
        // `printf ... | openssl dgst -sha256 -hmac 0123456789abcdef -binary | basenc --base64url`.
        let t = token();
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"abcdef"}"#);
        assert_eq!(h, "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9");
        let sig = hs256(&h, "hello", &t);
        assert_eq!(sig, "MxsnbCjBaYzcbNIFa06F-wuF9LX26rhMlrL4zA1511s");
    }
}
