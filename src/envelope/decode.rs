//! Shared decoders for the envelopes: bounded gzip, forgiving base64,
//! UTF-8 with a byte offset in the message, and YAML through serde_norway
//! (whose alias-repetition and recursion limits stop "billion laughs").

use std::io::Read;

use base64::Engine;
use serde::Deserialize;

use super::{EnvelopeError, MAX_USERDATA_BYTES};

/// Decompresses gzip (one or more members), refusing output larger than
/// [`MAX_USERDATA_BYTES`] without ever holding more than that in memory.
pub(crate) fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    let limit = MAX_USERDATA_BYTES as u64 + 1;
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| EnvelopeError(format!("not valid gzip data ({e})")))?;
    if out.len() > MAX_USERDATA_BYTES {
        return Err(EnvelopeError(format!(
            "decompresses to more than {MAX_USERDATA_BYTES} bytes (limit); refusing a possible gzip bomb"
        )));
    }
    Ok(out)
}

/// Decodes base64 the way cloud-init (Python's `b64decode`) does: ASCII
/// whitespace is skipped and padding is optional.
///
/// Decoded in chunks of 4 KiB of base64 (whole quanta, so only the last
/// chunk can hold padding) straight into an output of the final size: no
/// whitespace-free copy of the whole input is made.
pub(crate) fn base64(text: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    const CHUNK: usize = 4096;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 3);
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut offset = 0;
    let mut flush = |chunk: &mut Vec<u8>, out: &mut Vec<u8>| {
        let r = engine.decode_vec(&chunk[..], out).map_err(|e| {
            EnvelopeError(format!(
                "not valid base64 ({})",
                describe_base64_error(&e, offset)
            ))
        });
        offset += chunk.len();
        chunk.clear();
        r
    };
    for &b in text {
        if b.is_ascii_whitespace() {
            continue;
        }
        if chunk.len() == CHUNK {
            flush(&mut chunk, &mut out)?;
        }
        chunk.push(b);
    }
    flush(&mut chunk, &mut out)?;
    Ok(out)
}

/// Describes a base64 error without echoing the offending byte (it may be
/// part of a secret).
/// `base` is where the failing chunk starts in the whitespace-free input.
fn describe_base64_error(e: &base64::DecodeError, base: usize) -> String {
    match e {
        base64::DecodeError::InvalidByte(at, _) => {
            format!("invalid character at offset {}", base + at)
        }
        base64::DecodeError::InvalidLength(n) => format!("invalid length {}", base + n),
        base64::DecodeError::InvalidLastSymbol { offset, .. } => {
            format!("invalid last symbol at offset {}", base + offset)
        }
        base64::DecodeError::InvalidPadding => "invalid padding".into(),
    }
}

/// The bytes as UTF-8 text (a leading byte-order mark is dropped).
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, EnvelopeError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| EnvelopeError(format!("not valid UTF-8 (at byte {})", e.valid_up_to())))?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// Deepest `[`/`{` nesting let through to the YAML parser. serde_norway
/// refuses anything deeper than 128 anyway, but only after libyaml has
/// scanned the whole input, which takes time quadratic in the flow depth
/// (20 000 levels: 3 s; 16 MiB of `[`: hours). The count is raw (brackets
/// inside quoted or block scalars count too), hence the generous bound.
const MAX_FLOW_DEPTH: usize = 1000;

/// Refuses YAML whose flow collections nest deeper than [`MAX_FLOW_DEPTH`].
pub(crate) fn check_flow_depth(text: &str) -> Result<(), EnvelopeError> {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    let line = text.as_bytes()[..i].iter().filter(|&&c| c == b'\n').count() + 1;
                    return Err(EnvelopeError(format!(
                        "invalid YAML: [ and {{ nest more than {MAX_FLOW_DEPTH} levels deep (at line {line})"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses one YAML document (after the flow-depth check).
pub(crate) fn yaml_value(text: &str) -> Result<serde_norway::Value, EnvelopeError> {
    check_flow_depth(text)?;
    serde_norway::from_str(text).map_err(yaml_error)
}

/// Parses every document of a YAML stream. Errors carry serde_norway's
/// line/column but never the content.
pub(crate) fn yaml_documents(text: &str) -> Result<Vec<serde_norway::Value>, EnvelopeError> {
    check_flow_depth(text)?;
    let mut docs = Vec::new();
    for de in serde_norway::Deserializer::from_str(text) {
        docs.push(serde_norway::Value::deserialize(de).map_err(yaml_error)?);
    }
    Ok(docs)
}

/// A serde_norway error as an envelope error (its messages carry a
/// position and the rule, never a scalar's value).
pub(crate) fn yaml_error(e: serde_norway::Error) -> EnvelopeError {
    EnvelopeError(format!("invalid YAML: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn base64_across_chunks_matches_a_whole_decode() {
        use base64::Engine;
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        let enc = base64::engine::general_purpose::STANDARD.encode(&data);
        // line-wrapped at 76 like `base64`, with CRLF and indentation
        let wrapped: String = enc
            .as_bytes()
            .chunks(76)
            .map(|l| format!("  {}\r\n", std::str::from_utf8(l).unwrap()))
            .collect();
        assert_eq!(base64(wrapped.as_bytes()).unwrap(), data);
        assert_eq!(base64(enc.trim_end_matches('=').as_bytes()).unwrap(), data);
        // the offset of a bad character counts from the start, past the first chunk
        let mut bad = enc.clone().into_bytes();
        bad[5000] = b'*';
        let e = base64(&bad).unwrap_err().to_string();
        assert!(e.contains("offset 5000"), "{e}");
        assert!(!e.contains('*'), "{e}");
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gunzip_round_trip_and_multi_member() {
        assert_eq!(gunzip(&gzip(b"hello")).unwrap(), b"hello");
        let mut two = gzip(b"a");
        two.extend(gzip(b"b"));
        assert_eq!(gunzip(&two).unwrap(), b"ab");
        assert!(
            gunzip(b"\x1f\x8b\x08\x00garbage")
                .unwrap_err()
                .0
                .contains("not valid gzip")
        );
    }

    #[test]
    fn gunzip_refuses_bombs() {
        // 17 MiB of zeros compress to ~17 KiB.
        let bomb = gzip(&vec![0u8; MAX_USERDATA_BYTES + 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        let e = gunzip(&bomb).unwrap_err().0;
        assert!(e.contains("gzip bomb"), "{e}");
    }

    #[test]
    fn base64_is_forgiving_about_whitespace_and_padding() {
        assert_eq!(base64(b"aGVs\nbG8=\n").unwrap(), b"hello");
        assert_eq!(base64(b"aGVsbG8").unwrap(), b"hello");
        let e = base64(b"aGV$bG8=").unwrap_err().0;
        assert!(e.contains("offset 3") && !e.contains('$'), "{e}");
    }

    #[test]
    fn yaml_alias_bomb_is_refused() {
        let bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n\
                    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n\
                    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n\
                    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n\
                    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n\
                    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n\
                    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n\
                    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n\
                    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
        let e = yaml_documents(bomb).unwrap_err().0;
        assert!(e.contains("repetition limit exceeded"), "{e}");
        // a few honest aliases are fine
        let ok = yaml_documents("a: &a {x: 1}\nb: *a\nc: *a\n").unwrap();
        assert_eq!(ok.len(), 1);
    }

    #[test]
    fn yaml_deep_nesting_is_refused() {
        // deeper than serde_norway's limit, shallower than the pre-check
        let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
        let e = yaml_documents(&deep).unwrap_err().0;
        assert!(e.contains("recursion limit exceeded"), "{e}");
        // refused before libyaml sees it
        let deeper = format!("a: 1\nb: {}1{}", "{x: ".repeat(5000), "}".repeat(5000));
        let e = yaml_documents(&deeper).unwrap_err().0;
        assert_eq!(
            e,
            "invalid YAML: [ and { nest more than 1000 levels deep (at line 2)"
        );
        // balanced brackets in long flat text are fine
        assert!(check_flow_depth(&"[a] {b} ".repeat(100_000)).is_ok());
    }

    #[test]
    fn utf8_reports_offset() {
        assert_eq!(utf8(b"\xef\xbb\xbfabc").unwrap(), "abc");
        assert!(utf8(b"ab\xffc").unwrap_err().0.contains("at byte 2"));
    }
}
