//! MIME multipart userdata (what `cloud-init devel make-mime`, Terraform's
//! `cloudinit_config` and many consoles produce): every leaf part is
//! unwrapped by its Content-Type, after its Content-Transfer-Encoding
//! (base64, quoted-printable) is undone. The MIME reader is kubeboot's own
//! (headers, Content-Type parameters, multipart delimiters, transfer
//! encodings: what userdata uses), not a mail library with every charset
//! table (docs/building.md: about 180 KB of the binary).
//!
//! `text/cloud-config` and `text/jinja2` are read; `text/cloud-config-archive`
//! is unpacked like `#cloud-config-archive`; `text/plain`,
//! `text/x-not-multipart` and `application/octet-stream` are sniffed like
//! top-level userdata; gzip parts are decompressed and sniffed; include
//! lists are refused (see [`super::include`]); scripts, boothooks and
//! unknown types are ignored with a warning.
//! Parts are numbered from 1 in document order, for messages.

use super::{
    EnvelopeError, HostFacts, MAX_PARTS, Sniffed, Unwrapped, archive, cloudconfig, decode,
    dispatch, include, jinja, sniff,
};

/// Content types cloud-init runs or fetches, which kubeboot ignores.
const IGNORED_TYPES: &[(&str, &str)] = &[
    ("text/x-shellscript", "a shell script"),
    ("text/x-shellscript-per-boot", "a shell script"),
    ("text/x-shellscript-per-instance", "a shell script"),
    ("text/x-shellscript-per-once", "a shell script"),
    ("text/cloud-boothook", "a boothook"),
    ("text/part-handler", "a part handler"),
    ("text/upstart-job", "an upstart job"),
];

pub(crate) fn unwrap(
    bytes: &[u8],
    facts: &HostFacts,
    depth: usize,
) -> Result<Unwrapped, EnvelopeError> {
    let mail = Part::parse(bytes);
    let mut leaves = Vec::new();
    collect_leaves(mail, 0, &mut leaves)?;
    let mut u = Unwrapped::new("MIME multipart");
    for (i, part) in leaves.into_iter().enumerate() {
        let place = format!("MIME part {}", i + 1);
        if let Some(found) = part_contents(&part, facts, depth).map_err(|e| e.at(&place))? {
            u.absorb_part(found, &place)?;
        }
    }
    Ok(u)
}

/// Deepest multipart nesting accepted (cloud-init's tools make one level).
const MAX_NESTING: usize = 100;

/// One MIME entity: its media type (lower case), parameters it needs, and
/// its body with the transfer encoding still applied.
struct Part<'a> {
    mimetype: String,
    boundary: Option<String>,
    transfer_encoding: String,
    body: &'a [u8],
}

impl<'a> Part<'a> {
    /// Splits headers from the body (at the first empty line) and reads
    /// Content-Type (default `text/plain`, as RFC 2045 says) and
    /// Content-Transfer-Encoding. Folded header lines are unfolded.
    fn parse(bytes: &'a [u8]) -> Part<'a> {
        let mut headers: Vec<String> = Vec::new();
        let mut rest = bytes;
        let mut body: &[u8] = &[];
        while !rest.is_empty() {
            let (line, next) = split_line(rest);
            rest = next;
            if line.is_empty() {
                body = rest;
                break;
            }
            let text = String::from_utf8_lossy(line);
            match headers.last_mut() {
                Some(last) if line[0] == b' ' || line[0] == b'\t' => {
                    last.push(' ');
                    last.push_str(text.trim());
                }
                _ => headers.push(text.into_owned()),
            }
        }
        let header = |name: &str| {
            headers.iter().find_map(|h| {
                let (n, v) = h.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let ctype = header("Content-Type").unwrap_or_default();
        let mut fields = ctype.split(';');
        let mut mimetype = fields.next().unwrap_or("").trim().to_ascii_lowercase();
        if !mimetype.contains('/') {
            mimetype = "text/plain".into();
        }
        let boundary = fields.find_map(|f| {
            let (k, v) = f.split_once('=')?;
            k.trim().eq_ignore_ascii_case("boundary").then(|| {
                let v = v.trim();
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
                    .to_string()
            })
        });
        Part {
            mimetype,
            boundary,
            transfer_encoding: header("Content-Transfer-Encoding")
                .unwrap_or_default()
                .to_ascii_lowercase(),
            body,
        }
    }

    /// The body with its Content-Transfer-Encoding undone.
    fn decoded(&self) -> Result<std::borrow::Cow<'a, [u8]>, EnvelopeError> {
        Ok(match self.transfer_encoding.as_str() {
            "base64" => decode::base64(self.body)?.into(),
            "quoted-printable" => quoted_printable(self.body).into(),
            _ => self.body.into(),
        })
    }
}

/// One line and the rest; the line without its LF or CRLF.
fn split_line(b: &[u8]) -> (&[u8], &[u8]) {
    let (line, rest) = match b.iter().position(|&c| c == b'\n') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b[b.len()..]),
    };
    (line.strip_suffix(b"\r").unwrap_or(line), rest)
}

/// The body parts of a multipart body (RFC 2046 §5.1.1): delimiter lines
/// are `--BOUNDARY` (trailing whitespace allowed), the last `--BOUNDARY--`;
/// the line break before a delimiter belongs to it; the preamble and the
/// epilogue are dropped.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut at = 0;
    while at < body.len() {
        let (line, rest) = split_line(&body[at..]);
        let line_end = body.len() - rest.len();
        if let Some(tail) = line.strip_prefix(delimiter.as_bytes()) {
            let closing = tail.starts_with(b"--");
            let tail = if closing { &tail[2..] } else { tail };
            if tail.iter().all(|c| *c == b' ' || *c == b'\t') {
                if let Some(s) = start {
                    // drop the line break that precedes the delimiter
                    let mut end = at;
                    if end > s && body[end - 1] == b'\n' {
                        end -= 1;
                        if end > s && body[end - 1] == b'\r' {
                            end -= 1;
                        }
                    }
                    parts.push(&body[s..end.max(s)]);
                }
                if closing {
                    return parts;
                }
                start = Some(line_end);
            }
        }
        at = line_end;
    }
    // no closing delimiter: the last part runs to the end
    if let Some(s) = start {
        parts.push(&body[s..]);
    }
    parts
}

/// Quoted-printable (RFC 2045 §6.7), leniently: `=XX` is a byte, `=` at a
/// line end is a soft break, anything else is kept as it is.
fn quoted_printable(b: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(b'\n'), _) => {
                    i += 2;
                    continue;
                }
                (Some(b'\r'), Some(b'\n')) => {
                    i += 3;
                    continue;
                }
                (Some(&h), Some(&l)) => {
                    if let (Some(h), Some(l)) = (hex(h), hex(l)) {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The non-multipart parts, depth first (a single-part message is its own
/// leaf). At most [`MAX_PARTS`] leaves and [`MAX_NESTING`] levels.
fn collect_leaves<'a>(
    m: Part<'a>,
    level: usize,
    out: &mut Vec<Part<'a>>,
) -> Result<(), EnvelopeError> {
    if level > MAX_NESTING {
        return Err(EnvelopeError(format!(
            "MIME userdata: multipart nested more than {MAX_NESTING} levels deep"
        )));
    }
    if !m.mimetype.starts_with("multipart/") {
        if out.len() == MAX_PARTS {
            return Err(EnvelopeError(format!(
                "MIME userdata: more than {MAX_PARTS} parts; at most {MAX_PARTS} are accepted"
            )));
        }
        out.push(m);
        return Ok(());
    }
    let Some(boundary) = m.boundary.as_deref().filter(|b| !b.is_empty()) else {
        return Err(EnvelopeError(format!(
            "MIME userdata: {} without a boundary parameter",
            shown_type(&m.mimetype)
        )));
    };
    for body in split_multipart(m.body, boundary) {
        collect_leaves(Part::parse(body), level + 1, out)?;
    }
    Ok(())
}

/// What one leaf part holds; `Ok(None)` for an empty part.
fn part_contents(
    part: &Part<'_>,
    facts: &HostFacts,
    depth: usize,
) -> Result<Option<Unwrapped>, EnvelopeError> {
    let ctype = part.mimetype.clone();
    if let Some(u) = ignored_part(&ctype) {
        return Ok(Some(u));
    }
    let body = part
        .decoded()
        .map_err(|e| EnvelopeError(format!("cannot undo the transfer encoding: {e}")))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let u = match ctype.as_str() {
        "text/cloud-config" | "text/jinja2" => config_part(&ctype, &body, facts, depth)?,
        "text/cloud-config-archive" => archive::unwrap(decode::utf8(&body)?, facts, depth + 1)?,
        t if include::TYPES.contains(&t) => {
            include::refuse(&format!("{t} part"), &String::from_utf8_lossy(&body))?
        }
        "text/plain"
        | "text/x-not-multipart"
        | "application/octet-stream"
        | "application/gzip"
        | "application/x-gzip" => dispatch(&body, facts, depth + 1)?,
        _ => {
            let mut u = Unwrapped::new(ctype.clone());
            u.warnings
                .push(format!("part of type {} ignored", shown_type(&ctype)));
            u
        }
    };
    Ok(Some(u))
}

/// A `text/cloud-config` or `text/jinja2` part (of MIME or of an archive).
pub(crate) fn config_part(
    ctype: &str,
    body: &[u8],
    facts: &HostFacts,
    depth: usize,
) -> Result<Unwrapped, EnvelopeError> {
    // A cloud-config part may itself carry the jinja header.
    if ctype == "text/jinja2" || sniff(body) == Sniffed::Jinja {
        let text = decode::utf8(body)?;
        let rendered = jinja::render(text, facts)?;
        return dispatch(rendered.as_bytes(), facts, depth + 1);
    }
    cloudconfig::unwrap(decode::utf8(body)?)
}

/// The warning for a part kubeboot never runs (scripts, boothooks, ...),
/// or `None` for other types.
pub(crate) fn ignored_part(ctype: &str) -> Option<Unwrapped> {
    let (_, what) = IGNORED_TYPES.iter().find(|(t, _)| *t == ctype)?;
    let mut u = Unwrapped::new(ctype.to_string());
    u.warnings.push(format!(
        "{ctype} part ignored: kubeboot does not run or fetch {what}"
    ));
    Some(u)
}

/// A content type as it may appear in a message (no control characters,
/// at most 64 characters).
pub(crate) fn shown_type(ctype: &str) -> String {
    ctype.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::DocBody;

    fn facts() -> HostFacts {
        HostFacts::given(Some("w-1".into()), Some("10.0.0.31".parse().unwrap()), None)
    }

    const MIME: &str = "Content-Type: multipart/mixed; boundary=\"BOUNDARY\"\nMIME-Version: 1.0\n\n\
--BOUNDARY\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\n\n#!/bin/sh\necho secret-script\n\
--BOUNDARY\nContent-Type: text/cloud-config; charset=\"us-ascii\"\nContent-Transfer-Encoding: base64\n\n\
I2Nsb3VkLWNvbmZpZwprdWJlYm9vdDoKICByb2xlOiB3b3JrZXIK\n\
--BOUNDARY\nContent-Type: text/jinja2\n\n## template: jinja\n#cloud-config\nwrite_files:\n- path: /run/kubeadm/kubeadm.yaml\n  content: |\n    apiVersion: kubeadm.k8s.io/v1beta4\n    kind: JoinConfiguration\n    nodeRegistration:\n      name: '{{ ds.meta_data.local_hostname }}'\n\
--BOUNDARY--\n";

    #[test]
    fn reads_cloud_config_and_jinja_parts_ignores_scripts() {
        let u = unwrap(MIME.as_bytes(), &facts(), 0).unwrap();
        assert_eq!(u.documents.len(), 2);
        assert_eq!(
            u.documents[0].origin,
            "MIME part 2 cloud-config kubeboot key"
        );
        assert_eq!(
            u.documents[1].origin,
            "MIME part 3 write_files[0] /run/kubeadm/kubeadm.yaml"
        );
        let DocBody::Yaml(y) = &u.documents[1].body else {
            panic!()
        };
        assert!(y.contains("name: 'w-1'"), "{y}");
        assert_eq!(u.warnings.len(), 1);
        assert!(
            u.warnings[0].starts_with("MIME part 1: text/x-shellscript part ignored"),
            "{:?}",
            u.warnings
        );
        assert!(!u.warnings[0].contains("secret-script"));
    }

    #[test]
    fn errors_name_the_part() {
        let bad = MIME.replace("{{ ds.meta_data.local_hostname }}", "{{ v1.region }}");
        let e = unwrap(bad.as_bytes(), &facts(), 0).unwrap_err().0;
        assert!(
            e.starts_with("MIME part 3: jinja template line 9: variable \"v1.region\""),
            "{e}"
        );
        let bad = MIME.replace(
            "I2Nsb3VkLWNvbmZpZwprdWJlYm9vdDoKICByb2xlOiB3b3JrZXIK",
            "I2Nsb3VkLWNvbmZpZwprdWJlYm9vdDogWzFdCg==",
        );
        let e = unwrap(bad.as_bytes(), &facts(), 0).unwrap_err().0;
        assert_eq!(e, "MIME part 2: cloud-config: kubeboot: must be a mapping");
    }

    #[test]
    fn unknown_types_are_warned_and_plain_parts_sniffed() {
        let m = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: image/png\n\nxx\n\
--b\nContent-Type: text/plain\n\nkubeboot.role=worker kubeboot.server=10.0.0.10:6443\n--b--\n";
        let u = unwrap(m.as_bytes(), &facts(), 0).unwrap();
        assert_eq!(
            u.warnings,
            vec!["MIME part 1: part of type image/png ignored"]
        );
        assert!(matches!(&u.documents[0].body, DocBody::KernelArgs(a) if a.len() == 2));
    }

    /// The leaves kubeboot's reader finds: (type, decoded body).
    fn leaves(m: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        collect_leaves(Part::parse(m), 0, &mut out).unwrap();
        out.iter()
            .map(|p| (p.mimetype.clone(), p.decoded().unwrap().into_owned()))
            .collect()
    }

    /// The same through mailparse, a mail library.
    fn mailparse_leaves(m: &[u8]) -> Vec<(String, Vec<u8>)> {
        fn walk(p: &mailparse::ParsedMail<'_>, out: &mut Vec<(String, Vec<u8>)>) {
            if p.ctype.mimetype.starts_with("multipart/") {
                p.subparts.iter().for_each(|s| walk(s, out));
            } else {
                out.push((p.ctype.mimetype.clone(), p.get_body_raw().unwrap()));
            }
        }
        let mut out = Vec::new();
        walk(&mailparse::parse_mail(m).unwrap(), &mut out);
        out
    }

    #[test]
    fn the_reader_agrees_with_mailparse() {
        let qp = "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nkubeboot.role=3Dworker =\nkubeboot.x=3D1\n";
        let cases = [
            MIME.to_string(),
            MIME.replace('\n', "\r\n"),
            format!("MIME-Version: 1.0\nContent-Type: multipart/mixed;\n boundary=\"==X==\"\n\npreamble\n--==X==\n{qp}--==X==\nContent-Type: multipart/alternative; boundary=in\n\n--in\nContent-Type: TEXT/Cloud-Config\n\n#cloud-config\na: 1\n--in--\n--==X==--\nepilogue\n"),
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nno headers\n--b  \nContent-Type: text/x-shellscript\n\n#!/bin/sh\n--b--".into(),
        ];
        for m in &cases {
            assert_eq!(leaves(m.as_bytes()), mailparse_leaves(m.as_bytes()), "{m}");
        }
    }

    #[test]
    fn deep_nesting_and_missing_boundaries_are_errors_not_crashes() {
        let mut m = String::from("#cloud-config\n");
        for i in 0..200 {
            m = format!("Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n{m}\n--b{i}--\n");
        }
        let e = unwrap(m.as_bytes(), &facts(), 0).unwrap_err().0;
        assert!(e.contains("nested more than"), "{e}");
        let e = unwrap(b"Content-Type: multipart/mixed\n\n--b\n", &facts(), 0)
            .unwrap_err()
            .0;
        assert!(e.contains("without a boundary"), "{e}");
    }

    #[test]
    fn duplicate_pki_files_across_parts_are_refused() {
        let part = "Content-Type: text/cloud-config\n\n#cloud-config\nwrite_files:\n- path: /etc/kubernetes/pki/ca.crt\n  content: X\n";
        let m = format!(
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n{part}--b\n{part}--b--\n"
        );
        let e = unwrap(m.as_bytes(), &facts(), 0).unwrap_err().0;
        assert!(
            e.starts_with("MIME part 2: /etc/kubernetes/pki/ca.crt is also carried"),
            "{e}"
        );
    }
}
