//! The few DER manipulations the key formats need: wrapping PKCS#1 RSA and
//! SEC1 EC private keys into PKCS#8 (the only form ring loads), and turning
//! ring's PKCS#8 EC keys into the SEC1 `EC PRIVATE KEY` form kubeadm writes.
//!
//! Only definite-length DER is accepted; anything else is an error, never a
//! panic.

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_CONTEXT_0: u8 = 0xa0;

/// OID 1.2.840.10045.2.1 (id-ecPublicKey), content bytes.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// OID 1.2.840.113549.1.1.1 (rsaEncryption), content bytes.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// One parsed TLV: its tag, its content, and the whole encoding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub raw: &'a [u8],
}

/// Reads one TLV from the front of `input`, returning it and the rest.
pub(crate) fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    if end > input.len() {
        return None;
    }
    Some((
        Tlv {
            tag,
            content: &input[header..end],
            raw: &input[..end],
        },
        &input[end..],
    ))
}

/// Splits the content of a constructed value into its elements.
pub(crate) fn elements(mut content: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tlv, rest) = read_tlv(content)?;
        out.push(tlv);
        content = rest;
    }
    Some(out)
}

/// Encodes one TLV.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn pkcs8(algorithm: &[u8], private_key: &[u8]) -> Vec<u8> {
    let mut body = tlv(TAG_INTEGER, &[0]);
    body.extend(tlv(TAG_SEQUENCE, algorithm));
    body.extend(tlv(TAG_OCTET_STRING, private_key));
    tlv(TAG_SEQUENCE, &body)
}

/// Wraps a PKCS#1 `RSAPrivateKey` into a PKCS#8 `PrivateKeyInfo`.
pub(crate) fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Option<Vec<u8>> {
    let (outer, rest) = read_tlv(pkcs1)?;
    if outer.tag != TAG_SEQUENCE || !rest.is_empty() {
        return None;
    }
    let mut alg = tlv(TAG_OID, OID_RSA_ENCRYPTION);
    alg.extend(tlv(TAG_NULL, &[]));
    Some(pkcs8(&alg, pkcs1))
}

/// Wraps a SEC1 `ECPrivateKey` (which must name its curve in `[0]`) into a
/// PKCS#8 `PrivateKeyInfo`.
pub(crate) fn sec1_to_pkcs8(sec1: &[u8]) -> Option<Vec<u8>> {
    let (outer, rest) = read_tlv(sec1)?;
    if outer.tag != TAG_SEQUENCE || !rest.is_empty() {
        return None;
    }
    let parts = elements(outer.content)?;
    let params = parts.iter().find(|t| t.tag == TAG_CONTEXT_0)?;
    let (curve, _) = read_tlv(params.content)?;
    if curve.tag != TAG_OID {
        return None;
    }
    let mut alg = tlv(TAG_OID, OID_EC_PUBLIC_KEY);
    alg.extend_from_slice(curve.raw);
    Some(pkcs8(&alg, sec1))
}

/// Turns a PKCS#8 EC key (as ring makes it: no `[0]` parameters inside)
/// into SEC1 with the curve in `[0]`, as Go's `x509.MarshalECPrivateKey`
/// writes it.
pub(crate) fn pkcs8_ec_to_sec1(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let (outer, _) = read_tlv(pkcs8)?;
    let parts = elements(outer.content)?;
    let alg = elements(parts.get(1)?.content)?;
    let curve = alg.get(1)?;
    if alg.first()?.content != OID_EC_PUBLIC_KEY || curve.tag != TAG_OID {
        return None;
    }
    let inner = parts.get(2)?;
    if inner.tag != TAG_OCTET_STRING {
        return None;
    }
    let (ec, _) = read_tlv(inner.content)?;
    let fields = elements(ec.content)?;
    let mut body = Vec::with_capacity(ec.content.len() + 16);
    for f in &fields {
        if f.tag == TAG_CONTEXT_0 {
            continue;
        }
        if f.tag == 0xa1 {
            body.extend(tlv(TAG_CONTEXT_0, curve.raw));
        }
        body.extend_from_slice(f.raw);
    }
    Some(tlv(TAG_SEQUENCE, &body))
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` whose
/// algorithm is rsaEncryption (None for any other key).
pub(crate) fn pkcs8_rsa_to_pkcs1(pkcs8: &[u8]) -> Option<Vec<u8>> {
    let (outer, _) = read_tlv(pkcs8)?;
    let parts = elements(outer.content)?;
    let alg = elements(parts.get(1)?.content)?;
    if alg.first()?.content != OID_RSA_ENCRYPTION {
        return None;
    }
    let inner = parts.get(2)?;
    (inner.tag == TAG_OCTET_STRING).then(|| inner.content.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_round_trip() {
        let content = vec![7u8; 300];
        let enc = tlv(TAG_OCTET_STRING, &content);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (t, rest) = read_tlv(&enc).unwrap();
        assert_eq!(t.content, &content[..]);
        assert!(rest.is_empty());
    }

    #[test]
    fn truncated_input_is_rejected() {
        assert!(read_tlv(&[0x30, 0x82, 0x01]).is_none());
        assert!(read_tlv(&[0x30, 0x05, 0x00]).is_none());
        assert!(read_tlv(&[0x30, 0x80]).is_none());
        assert!(pkcs1_to_pkcs8(b"garbage").is_none());
        assert!(sec1_to_pkcs8(&[0x30, 0x00]).is_none());
        assert!(pkcs8_ec_to_sec1(&[]).is_none());
    }
}
