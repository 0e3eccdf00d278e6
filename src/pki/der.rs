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

/// The public point (the `[1] publicKey` BIT STRING's bits) inside a
/// PKCS#8 EC key, as ring's `generate_pkcs8` writes it: read, not computed.
pub(crate) fn pkcs8_ec_public_point(pkcs8: &[u8]) -> Option<&[u8]> {
    let (outer, _) = read_tlv(pkcs8)?;
    let parts = elements(outer.content)?;
    let inner = parts.get(2)?;
    if inner.tag != TAG_OCTET_STRING {
        return None;
    }
    let (ec, _) = read_tlv(inner.content)?;
    let public = elements(ec.content)?.into_iter().find(|f| f.tag == 0xa1)?;
    let (bits, _) = read_tlv(public.content)?;
    match bits.content.split_first() {
        // BIT STRING with no unused bits
        Some((0, point)) if bits.tag == 0x03 && !point.is_empty() => Some(point),
        _ => None,
    }
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

    /// X.690 8.1.3: 0x80 is BER's indefinite form (never DER, refused
    /// however many bytes follow); a long form has 1 to 126 length bytes,
    /// of which this reader takes up to four (a 16 MiB value needs four).
    #[test]
    fn length_headers_take_one_to_four_bytes_and_never_the_indefinite_form() {
        let mut indefinite = vec![0x30, 0x80];
        indefinite.extend([0u8; 200]);
        assert!(read_tlv(&indefinite).is_none());
        assert!(read_tlv(&[0x04, 0x85, 0, 0, 0, 0, 1, 0xaa]).is_none());
        let len = 1usize << 24;
        let mut big = vec![0x04, 0x84, 0x01, 0x00, 0x00, 0x00];
        big.resize(6 + len, 0x5a);
        let (t, rest) = read_tlv(&big).unwrap();
        assert_eq!((t.tag, t.content.len(), rest.len()), (0x04, len, 0));
        assert_eq!(tlv(TAG_OCTET_STRING, t.content)[..6], big[..6]);
        assert_eq!(
            tlv(TAG_OCTET_STRING, &big[..70_000])[..5],
            [4, 0x83, 1, 0x11, 0x70]
        );
        assert_eq!(tlv(TAG_OCTET_STRING, &[0; 128])[..3], [4, 0x81, 0x80]);
        assert_eq!(tlv(TAG_OCTET_STRING, &[0; 127])[..2], [4, 0x7f]);
    }

    #[test]
    fn truncated_input_is_rejected() {
        assert!(read_tlv(&[0x30, 0x82, 0x01]).is_none());
        assert!(read_tlv(&[0x30, 0x05, 0x00]).is_none());
        assert!(read_tlv(&[0x30, 0x80]).is_none());
        assert!(pkcs1_to_pkcs8(b"garbage").is_none());
        assert!(sec1_to_pkcs8(&[0x30, 0x00]).is_none());
        assert!(pkcs8_ec_to_sec1(&[]).is_none());
        assert!(pkcs8_ec_public_point(&[]).is_none());
        assert!(pkcs8_ec_public_point(&[0x30, 0x00]).is_none());
    }

    /// A P-256 key as openssl writes it (`openssl genpkey -algorithm EC
    /// -pkeyopt ec_paramgen_curve:P-256 -outform DER | openssl pkcs8 -topk8
    /// -nocrypt -inform DER -outform DER`), and its public point as openssl
    /// prints it (`openssl pkey -inform DER -pubout -outform DER | tail -c 65`).
    const OPENSSL_P256_PKCS8: &str = "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b020101042052666e7134cc6322de98fd73945af85ce08dc3b9df5dbab4312ffe74dfe985c0a144034200049f7dc07279ec7f847aab630fa09fa614ac26e2fc54ed27f2071385ac1b69277714c3d5fc2ab990b9425c5dc0efd26a5cc3c1c03ffe3113b02e4050275989d3df";
    const OPENSSL_P256_POINT: &str = "049f7dc07279ec7f847aab630fa09fa614ac26e2fc54ed27f2071385ac1b69277714c3d5fc2ab990b9425c5dc0efd26a5cc3c1c03ffe3113b02e4050275989d3df";

    /// The same key as `openssl ec -inform DER -outform DER` writes it:
    /// SEC1 with the curve in `[0]`.
    const OPENSSL_P256_SEC1: &str = "3077020101042052666e7134cc6322de98fd73945af85ce08dc3b9df5dbab4312ffe74dfe985c0a00a06082a8648ce3d030107a144034200049f7dc07279ec7f847aab630fa09fa614ac26e2fc54ed27f2071385ac1b69277714c3d5fc2ab990b9425c5dc0efd26a5cc3c1c03ffe3113b02e4050275989d3df";
    /// A throwaway 512-bit RSA key (`openssl genrsa -traditional 512`) as
    /// `openssl rsa -traditional -outform DER` (PKCS#1) and `openssl pkcs8
    /// -topk8 -nocrypt -outform DER` (PKCS#8) write it.
    const OPENSSL_RSA512_PKCS1: &str = "3082013b020100024100cad14b14ad9e9d8671bd28ee041f8e8baa7b1cca9b5ecff143d099f6f3f814e42e1c9230eb518ef818648e99818fa51fe90527aa5c0b546a37021eda8b28a3d3020301000102405fab6e2128ecc31da2153a735bda8ee0eedff7ead2735cdf4fbfdc80930098c95a06e53f81b6871cb95c505464b501ac501ebd220cd9d831341ee1908e5b5681022100f7b1c898bb29e7b745ba0cdc68fa3ade3469595441ce0819bd58c4be9f31cea1022100d19e48f41983a6199dd74b0fb734205445f71a335f38ab2c59cb9f1c8086e1f3022100a807f0484438125c8f2dbec9cb616d8c0e4c2570764fb9c9145d62e2da0624e1022100a32915980b141201f67e520ad58b596ebf56eba9f9005f1c9278904cdb2e224902207643486c384f19808461a74ba860f41da694ff507a10c7cd3f560e5fd9f3642a";
    const OPENSSL_RSA512_PKCS8: &str = "30820155020100300d06092a864886f70d01010105000482013f3082013b020100024100cad14b14ad9e9d8671bd28ee041f8e8baa7b1cca9b5ecff143d099f6f3f814e42e1c9230eb518ef818648e99818fa51fe90527aa5c0b546a37021eda8b28a3d3020301000102405fab6e2128ecc31da2153a735bda8ee0eedff7ead2735cdf4fbfdc80930098c95a06e53f81b6871cb95c505464b501ac501ebd220cd9d831341ee1908e5b5681022100f7b1c898bb29e7b745ba0cdc68fa3ade3469595441ce0819bd58c4be9f31cea1022100d19e48f41983a6199dd74b0fb734205445f71a335f38ab2c59cb9f1c8086e1f3022100a807f0484438125c8f2dbec9cb616d8c0e4c2570764fb9c9145d62e2da0624e1022100a32915980b141201f67e520ad58b596ebf56eba9f9005f1c9278904cdb2e224902207643486c384f19808461a74ba860f41da694ff507a10c7cd3f560e5fd9f3642a";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_public_point_is_the_bit_string_openssl_wrote() {
        let mut der = unhex(OPENSSL_P256_PKCS8);
        let point = unhex(OPENSSL_P256_POINT);
        assert_eq!(pkcs8_ec_public_point(&der), Some(&point[..]));
        // `[1] { BIT STRING (66 bytes) 00 04 ... }`: the same bytes tagged
        // as an OCTET STRING are not a public key.
        let at = der
            .windows(5)
            .position(|w| w == [0xa1, 0x44, 0x03, 0x42, 0x00])
            .unwrap();
        der[at + 2] = TAG_OCTET_STRING;
        assert_eq!(pkcs8_ec_public_point(&der), None);
    }
    /// The conversions give what openssl gives, byte for byte, and refuse
    /// what is not one DER SEQUENCE (another tag, trailing bytes) or an EC
    /// key whose parameters are not a named curve.
    #[test]
    fn conversions_match_openssl_and_refuse_other_shapes() {
        let (p1, p8) = (unhex(OPENSSL_RSA512_PKCS1), unhex(OPENSSL_RSA512_PKCS8));
        assert_eq!(pkcs1_to_pkcs8(&p1), Some(p8.clone()));
        assert_eq!(pkcs8_rsa_to_pkcs1(&p8), Some(p1.clone()));
        let ec8 = unhex(OPENSSL_P256_PKCS8);
        let sec1 = unhex(OPENSSL_P256_SEC1);
        assert_eq!(pkcs8_ec_to_sec1(&ec8), Some(sec1.clone()));
        assert!(sec1_to_pkcs8(&sec1).is_some());
        for good in [&p1, &sec1] {
            let mut trailing = good.clone();
            trailing.push(0);
            let mut retagged = good.clone();
            retagged[0] = TAG_CONTEXT_0;
            for bad in [trailing, retagged] {
                assert!(pkcs1_to_pkcs8(&bad).is_none());
                assert!(sec1_to_pkcs8(&bad).is_none());
            }
        }
        let inner = elements(read_tlv(&ec8).unwrap().0.content).unwrap()[2].content;
        let mut null_params = tlv(TAG_OID, OID_EC_PUBLIC_KEY);
        null_params.extend(tlv(TAG_NULL, &[]));
        assert!(pkcs8_ec_to_sec1(&pkcs8(&null_params, inner)).is_none());
    }
}
