//! `#cloud-config`: the top-level `kubeboot:` mapping, and `write_files`
//! entries for `/etc/kubeboot/config.yaml`, kubeadm configs (Cluster API's
//! `/run/kubeadm/kubeadm.yaml` and friends, or any file whose content is
//! `apiVersion: kubeadm.k8s.io/...`) and files under `/etc/kubernetes/pki/`.
//!
//! `write_files` is decoded as cloud-init decodes it: `encoding` plain,
//! `b64`/`base64`, `gz`/`gzip`, `gz+b64` (and its spellings);
//! `permissions` an octal string such as `'0600'` (default 0644).
//! Other entries are ignored with a warning that names only the path.

use std::borrow::Cow;

use serde_norway::Value;

use super::{DocBody, Document, EnvelopeError, FileRole, Unwrapped, decode};

/// The encodings cloud-init accepts, for messages.
const ENCODINGS: &str =
    "b64, base64, gz, gzip, gz+b64, gz+base64, gzip+b64, gzip+base64, text/plain";

/// Unwraps a cloud-config document (the `#cloud-config` line is a YAML
/// comment, so the whole text is parsed).
pub fn unwrap(text: &str) -> Result<Unwrapped, EnvelopeError> {
    let mut u = Unwrapped::new("cloud-config");
    let (root, lifted) = parse(text)?;
    let map = match root {
        Value::Mapping(m) => m,
        Value::Null => return Ok(u),
        _ => {
            return Err(EnvelopeError(
                "cloud-config: the top level must be a mapping".into(),
            ));
        }
    };
    match map.get("kubeboot") {
        None => {}
        Some(Value::Mapping(_)) => {
            let value = map.get("kubeboot").cloned().unwrap_or(Value::Null);
            u.documents.push(Document {
                origin: "cloud-config kubeboot key".into(),
                field_prefix: "kubeboot.".into(),
                body: DocBody::Value(value),
            });
        }
        Some(Value::Null) => return Err(EnvelopeError("cloud-config: kubeboot: is empty".into())),
        Some(_) => {
            return Err(EnvelopeError(
                "cloud-config: kubeboot: must be a mapping".into(),
            ));
        }
    }
    match map.get("write_files") {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(entries)) => {
            for (i, entry) in entries.iter().enumerate() {
                write_file(&mut u, i, entry, &lifted)?;
            }
        }
        Some(_) => {
            return Err(EnvelopeError(
                "cloud-config: write_files must be a list".into(),
            ));
        }
    }
    for key in ["runcmd", "bootcmd"] {
        if map.contains_key(key) {
            u.warnings.push(format!(
                "cloud-config: {key} is ignored: kubeboot does not run commands"
            ));
        }
    }
    Ok(u)
}

/// A path as it may appear in a message: control characters replaced,
/// at most 200 characters.
fn shown_path(path: &str) -> String {
    path.chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn write_file(
    u: &mut Unwrapped,
    i: usize,
    entry: &Value,
    lifted: &[Lifted<'_>],
) -> Result<(), EnvelopeError> {
    let Value::Mapping(m) = entry else {
        return Err(EnvelopeError(format!(
            "write_files[{i}]: must be a mapping"
        )));
    };
    let path = match m.get("path") {
        Some(Value::String(p)) => p.as_str(),
        Some(_) => {
            return Err(EnvelopeError(format!(
                "write_files[{i}]: path must be a string"
            )));
        }
        None => return Err(EnvelopeError(format!("write_files[{i}]: path is missing"))),
    };
    let place = format!("write_files[{i}] ({})", shown_path(path));
    super::check_carried_path(path).map_err(|e| e.at(&place))?;
    let encoding = match m.get("encoding") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(EnvelopeError(format!("{place}: encoding must be a string"))),
    };
    let content = entry_content(m.get("content"), &encoding, lifted).map_err(|e| e.at(&place))?;
    let mode = permissions(m.get("permissions")).map_err(|e| e.at(&place))?;
    let append = matches!(m.get("append"), Some(Value::Bool(true)));
    let role = super::file_role(path, &content);
    if append && role != FileRole::Other {
        return Err(EnvelopeError(format!(
            "{place}: append: true is not supported for a file kubeboot reads"
        )));
    }
    super::carry(
        u,
        &place,
        format!("write_files[{i}] {path}"),
        path,
        content,
        mode,
    )
}

/// An entry's decoded content (borrowed where it can be).
fn entry_content<'a>(
    content: Option<&'a Value>,
    encoding: &str,
    lifted: &'a [Lifted<'a>],
) -> Result<Cow<'a, [u8]>, EnvelopeError> {
    match lifted_content(content, lifted) {
        // base64 skips whitespace, so the block's lines decode as they
        // stand; plain text gets the scalar's exact value
        Some(block) if is_base64(encoding) => decode_content(block.body.as_bytes(), encoding),
        Some(block) => Ok(Cow::Owned(block.text().into_bytes())),
        None => decode_content(content_bytes(content)?, encoding),
    }
}

/// Whether `encoding` is decoded from base64 first (every encoding but
/// plain text; an unknown one is refused by [`decode_content`]).
fn is_base64(encoding: &str) -> bool {
    !matches!(
        encoding.trim().to_ascii_lowercase().as_str(),
        "" | "text/plain"
    )
}

/// A lifted block when `content` is its placeholder.
fn lifted_content<'a, 'b>(v: Option<&Value>, lifted: &'b [Lifted<'a>]) -> Option<&'b Lifted<'a>> {
    match v {
        Some(Value::String(s)) => lifted.iter().find(|l| l.token == *s),
        _ => None,
    }
}

/// The `content` value as bytes (a string, or empty), borrowed: a large
/// entry is not copied before kubeboot knows whether it keeps it.
fn content_bytes(v: Option<&Value>) -> Result<&[u8], EnvelopeError> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::String(s)) => Ok(s.as_bytes()),
        Some(_) => Err(EnvelopeError("content must be a string".into())),
    }
}

/// Applies a cloud-init `encoding` (plain text stays borrowed).
fn decode_content<'a>(raw: &'a [u8], encoding: &str) -> Result<Cow<'a, [u8]>, EnvelopeError> {
    Ok(Cow::Owned(
        match encoding.trim().to_ascii_lowercase().as_str() {
            "" | "text/plain" => return Ok(Cow::Borrowed(raw)),
            "b64" | "base64" => decode::base64(raw).map_err(|e| e.at("content"))?,
            // Raw gzip cannot live in a YAML string: cloud-init documents it as a
            // `!!binary` scalar, which serde_norway hands over as its base64 text.
            "gz" | "gzip" => {
                let zipped = decode::base64(raw)
                    .map_err(|e| e.at("content (gz needs a !!binary scalar)"))?;
                decode::gunzip(&zipped).map_err(|e| e.at("content"))?
            }
            "gz+b64" | "gz+base64" | "gzip+b64" | "gzip+base64" => {
                let zipped = decode::base64(raw).map_err(|e| e.at("content"))?;
                decode::gunzip(&zipped).map_err(|e| e.at("content"))?
            }
            other => {
                return Err(EnvelopeError(format!(
                    "encoding {} is not one of {ENCODINGS}",
                    super::shown_value(other, 16)
                )));
            }
        },
    ))
}

/// Parses `permissions` (an octal string; default 0644).
fn permissions(v: Option<&Value>) -> Result<u32, EnvelopeError> {
    match v {
        None | Some(Value::Null) => Ok(0o644),
        Some(Value::String(s)) => {
            let t = s.trim();
            let digits = t.strip_prefix("0o").unwrap_or(t);
            match u32::from_str_radix(digits, 8) {
                Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(m),
                _ => Err(EnvelopeError(format!(
                    "permissions {} is not an octal mode such as '0600'",
                    super::shown_value(t, 8)
                ))),
            }
        }
        // An unquoted 0600 arrives as the string "0600" (serde_norway keeps
        // leading-zero scalars as strings, which matches PyYAML's octal); an
        // unquoted 600 or 0o600 is a number whose meaning differs between
        // YAML 1.1 and 1.2, so it is refused rather than guessed.
        Some(Value::Number(_)) => Err(EnvelopeError(
            "permissions must be an octal string such as '0600', not a YAML number".into(),
        )),
        Some(_) => Err(EnvelopeError(
            "permissions must be a quoted octal string such as '0600'".into(),
        )),
    }
}

/// A block scalar this size or larger under a `content:` key is lifted out
/// of the text before the YAML parse ([`lift`]).
const LIFT_AT: usize = 64 * 1024;

/// A literal block scalar (`content: |`, `|-`, `|+`) taken out of the
/// cloud-config text before parsing: its lines, borrowed from the text,
/// and the placeholder its key holds in the parsed value.
///
/// Why: libyaml builds a scalar in a buffer it grows by doubling and
/// zeroes (16 MiB resident for an 8.4 MB scalar), serde_norway then copies
/// every event before the value is built, and the value copies it again:
/// three to four times the content on top of the input. A lifted block
/// costs nothing until its entry is decoded, and base64 (which skips
/// whitespace) decodes straight from its lines (docs/building.md).
struct Lifted<'a> {
    token: String,
    /// The block's lines as they stand in the text, indentation included.
    body: &'a str,
    /// The content indentation (spaces).
    indent: usize,
    /// The chomping indicator: `-` strip, `+` keep, none clip.
    chomp: Option<char>,
}

impl Lifted<'_> {
    /// The scalar's value as YAML defines a literal block: each line
    /// without its indentation, line breaks kept, the trailing ones chomped.
    fn text(&self) -> String {
        let mut out = String::with_capacity(self.body.len());
        for line in self.body.split_inclusive('\n') {
            let (content, brk) = match line.strip_suffix('\n') {
                Some(c) => (c, "\n"),
                None => (line, ""),
            };
            out.push_str(content.get(self.indent..).unwrap_or(""));
            out.push_str(brk);
        }
        match self.chomp {
            Some('+') => {}
            Some(_) => out.truncate(out.trim_end_matches('\n').len()),
            None => {
                let had_break = out.ends_with('\n');
                out.truncate(out.trim_end_matches('\n').len());
                if had_break && !out.is_empty() {
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Parses the cloud-config: with its large `content:` blocks lifted out
/// when that is certain to give the same value (else, and for any error,
/// the whole text as it stands: error positions then match the input).
fn parse(text: &str) -> Result<(Value, Vec<Lifted<'_>>), EnvelopeError> {
    if let Some((rest, lifted)) = lift(text)
        && let Ok(root) = decode::yaml_value(&rest)
        && placeholders_in_place(&root, &lifted)
    {
        return Ok((root, lifted));
    }
    let root = decode::yaml_value(text).map_err(|e| e.at("cloud-config"))?;
    Ok((root, Vec::new()))
}

/// Whether each placeholder is the whole `content` of exactly one
/// `write_files` entry (a block header that was not what it looked like,
/// say inside a quoted string, leaves its placeholder elsewhere).
fn placeholders_in_place(root: &Value, lifted: &[Lifted<'_>]) -> bool {
    let Some(Value::Sequence(entries)) = root.get("write_files") else {
        return false;
    };
    let mut seen = vec![0usize; lifted.len()];
    for e in entries {
        if let Some(Value::String(c)) = e.get("content")
            && let Some(k) = lifted.iter().position(|l| l.token == *c)
        {
            seen[k] += 1;
        }
    }
    seen.iter().all(|&n| n == 1)
}

/// Leading spaces of a line.
fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// A block scalar header: the column its parent's content starts at (the
/// key, or the last `- `), whether it is `content: |` that may be lifted,
/// and its chomping indicator. `None` when the line holds no block header.
fn block_header(line: &str) -> Option<(usize, bool, Option<char>)> {
    let mut col = indentation(line);
    let mut rest = &line[col..];
    while let Some(r) = rest.strip_prefix("- ") {
        let skip = 2 + (r.len() - r.trim_start_matches(' ').len());
        if r.trim_start_matches(' ').is_empty() {
            return None;
        }
        col += skip;
        rest = &rest[skip..];
    }
    // drop a comment (" #") and trailing spaces
    let code = match rest.find(" #") {
        Some(i) => &rest[..i],
        None => rest,
    }
    .trim_end_matches(' ');
    let last = code.rsplit(' ').next().unwrap_or(code);
    let indicator = last.starts_with(['|', '>'])
        && last[1..]
            .chars()
            .all(|c| matches!(c, '+' | '-' | '0'..='9'))
        && last.len() <= 3;
    if !indicator {
        return None;
    }
    let liftable = code.strip_prefix("content:").is_some_and(|v| {
        v.starts_with(' ') && matches!(v.trim_start_matches(' '), "|" | "|-" | "|+")
    });
    let chomp = last[1..].chars().find(|c| matches!(c, '+' | '-'));
    Some((col, liftable, chomp))
}

/// Takes every large `content: |` block out of `text`, leaving a
/// placeholder plain scalar on its header line. `None` (parse the text as
/// it stands) when there is nothing to lift or the text has anything this
/// line scanner does not follow exactly: CR line ends, tabs in
/// indentation, a less indented line inside a block, a blank line longer
/// than the block's indentation before its first line.
fn lift(text: &str) -> Option<(String, Vec<Lifted<'_>>)> {
    const TOKEN: &str = "kubeboot-lifted-content-block-";
    if text.len() < LIFT_AT || text.contains('\r') || text.contains(TOKEN) {
        return None;
    }
    // (byte offset, line) of every line, '\n' included
    let mut lines = Vec::new();
    let mut at = 0;
    for l in text.split_inclusive('\n') {
        lines.push((at, l));
        at += l.len();
    }
    let mut out = String::new();
    let mut lifted = Vec::new();
    let mut copied = 0; // text[..copied] is accounted for in `out`
    let mut i = 0;
    while i < lines.len() {
        let (start, line) = lines[i];
        i += 1;
        let Some((col, liftable, chomp)) = block_header(line.trim_end_matches('\n')) else {
            continue;
        };
        // the block: blank lines and lines indented past `col`
        let first = i;
        let mut indent = None;
        while i < lines.len() {
            let l = lines[i].1.trim_end_matches('\n');
            let lead = &l[..l.len() - l.trim_start_matches([' ', '\t']).len()];
            if lead.contains('\t') {
                return None;
            }
            let blank = l.trim_start_matches(' ').is_empty();
            let n = indentation(l);
            match indent {
                _ if blank => {}
                None if n > col => indent = Some(n),
                Some(m) if n >= m => {}
                Some(_) if n > col => return None,
                _ => break,
            }
            i += 1;
        }
        let Some(m) = indent else {
            continue;
        };
        let end = lines.get(i).map_or(text.len(), |(o, _)| *o);
        let body_start = lines[first].0;
        // blank lines before the first content line must not be longer
        // than the content indentation (YAML refuses them)
        if lines[first..i]
            .iter()
            .take_while(|(_, l)| l.trim_start_matches(' ').trim_end_matches('\n').is_empty())
            .any(|(_, l)| l.trim_end_matches('\n').len() > m)
        {
            return None;
        }
        if !liftable || end - body_start < LIFT_AT {
            continue;
        }
        let token = format!("{TOKEN}{}", lifted.len());
        let key = start + line.find("content:")?;
        out.push_str(&text[copied..key]);
        out.push_str("content: ");
        out.push_str(&token);
        out.push('\n');
        copied = end;
        lifted.push(Lifted {
            token,
            body: &text[body_start..end],
            indent: m,
            chomp,
        });
    }
    if lifted.is_empty() {
        return None;
    }
    out.push_str(&text[copied..]);
    Some((out, lifted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::io::Write;

    /// Each `write_files` entry's decoded content, with large blocks lifted
    /// (`parse`) and, as the oracle, from serde_norway's parse of the whole
    /// text; and whether anything was lifted.
    fn both_ways(text: &str) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, bool) {
        let contents = |root: &Value, lifted: &[Lifted<'_>]| -> Vec<Vec<u8>> {
            let Some(Value::Sequence(entries)) = root.get("write_files") else {
                return Vec::new();
            };
            entries
                .iter()
                .map(|e| {
                    let enc = e.get("encoding").and_then(Value::as_str).unwrap_or("");
                    entry_content(e.get("content"), enc, lifted)
                        .unwrap()
                        .into_owned()
                })
                .collect()
        };
        let (root, lifted) = parse(text).unwrap();
        let fast = contents(&root, &lifted);
        let whole = decode::yaml_value(text).unwrap();
        (fast, contents(&whole, &[]), !lifted.is_empty())
    }

    /// `n` lines of `width` characters, each with `indent` spaces.
    fn lines(n: usize, width: usize, indent: usize, seed: usize) -> String {
        (0..n)
            .map(|i| {
                let c = (b'a' + ((i + seed) % 26) as u8) as char;
                format!("{}{}\n", " ".repeat(indent), c.to_string().repeat(width))
            })
            .collect()
    }

    #[test]
    fn lifted_blocks_decode_as_the_whole_parse_does() {
        let big = lines(1200, 70, 6, 0); // 91 KB, past LIFT_AT
        let head = "#cloud-config\nwrite_files:\n";
        let b64 = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 80_000]);
        let b64_lines: String = b64
            .as_bytes()
            .chunks(76)
            .map(|c| format!("      {}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        // pseudo-random bytes: gzip leaves them large
        let mut x = 1u32;
        let noise: Vec<u8> = (0..60_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect();
        let gz_b64 = base64::engine::general_purpose::STANDARD.encode(gz(&noise));
        let gz_lines: String = gz_b64
            .as_bytes()
            .chunks(60)
            .map(|c| format!("      {}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let cases: Vec<(String, bool)> = vec![
            // clip, strip, keep; a comment after the indicator
            (
                format!("{head}  - path: /a\n    content: |\n{big}  - path: /b\n    content: x\n"),
                true,
            ),
            (
                format!("{head}  - path: /a\n    content: |-\n{big}\n\n  - path: /b\n"),
                true,
            ),
            (
                format!("{head}  - path: /a\n    content: |+ # keep\n{big}\n  \n\n"),
                true,
            ),
            (
                format!("{head}  - path: /a\n    content: |\n{big}\n\n"),
                true,
            ),
            // the key first in its entry, under `- `
            (format!("{head}  - content: |\n{big}    path: /a\n"), true),
            // blank lines (short and empty) inside, a more indented line,
            // spaces-only lines longer than the indentation, no final line break
            (
                format!(
                    "{head}  - path: /a\n    content: |\n{big}\n   \n{}        deeper\n          \n{big}      last",
                    lines(3, 10, 6, 1)
                ),
                true,
            ),
            // base64 and gzip+base64 decoded straight from the lines
            (
                format!("{head}  - path: /a\n    encoding: b64\n    content: |\n{b64_lines}"),
                true,
            ),
            (
                format!("{head}  - path: /a\n    content: |\n{gz_lines}    encoding: gz+b64\n"),
                true,
            ),
            // two blocks, and a small one left in place
            (
                format!(
                    "{head}  - path: /a\n    content: |\n{big}  - path: /s\n    content: |\n      small\n  - path: /b\n    content: |-\n{}",
                    lines(900, 80, 8, 5)
                ),
                true,
            ),
            // not lifted: folded, an indentation indicator, a less indented
            // line inside the block, a tab, CR line ends
            (format!("{head}  - path: /a\n    content: >\n{big}"), false),
            (
                format!(
                    "{head}  - path: /a\n    content: |2\n{}",
                    lines(1200, 70, 6, 0)
                ),
                false,
            ),
            (
                format!("{head}  - path: /a\n    content: |\n{big}     # trailing\n  - path: /b\n"),
                false,
            ),
            (
                format!("{head}  - path: /a\n    content: |\n{big}      \tx\n"),
                false,
            ),
            (
                format!("{head}  - path: /a\r\n    content: |\r\n{big}"),
                false,
            ),
            // a header that is not one: inside a quoted string, inside
            // another block's text (which is lifted whole), and under a key
            // that is not write_files
            (
                format!("{head}  - path: /a\n    content: \"x\n    content: |\n{big}    \"\n"),
                false,
            ),
            (
                format!(
                    "{head}  - path: /a\n    content: |\n      text:\n      content: |\n{}",
                    lines(1200, 70, 8, 0)
                ),
                true, // the outer block, whole
            ),
            (
                format!("#cloud-config\nother:\n  content: |\n{big}write_files: []\n"),
                false,
            ),
        ];
        for (i, (text, lifts)) in cases.iter().enumerate() {
            let (fast, whole, lifted) = both_ways(text);
            assert_eq!(fast, whole, "case {i}: contents differ");
            assert_eq!(lifted, *lifts, "case {i}: lifted");
            assert!(!whole.is_empty() || i == cases.len() - 1, "case {i}");
        }
    }

    #[test]
    fn a_bad_document_with_a_large_block_reports_the_error_of_the_text() {
        let big = lines(1200, 70, 6, 0);
        let text = format!(
            "#cloud-config\nwrite_files:\n  - path: /a\n    content: |\n{big}  - path: [\n"
        );
        let e = unwrap(&text).err().unwrap().0;
        let whole = decode::yaml_value(&text)
            .err()
            .unwrap()
            .at("cloud-config")
            .0;
        assert_eq!(e, whole);
        assert!(e.contains("line 1206"), "{e}");
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    fn yaml_docs(u: &Unwrapped) -> Vec<(&str, &str)> {
        u.documents
            .iter()
            .filter_map(|d| match &d.body {
                DocBody::Yaml(t) => Some((d.origin.as_str(), t.as_str())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn kubeboot_key_becomes_a_value_document() {
        let u =
            unwrap("#cloud-config\nkubeboot:\n  role: worker\n  server: 10.0.0.10:6443\n").unwrap();
        assert_eq!(u.documents.len(), 1);
        assert_eq!(u.documents[0].field_prefix, "kubeboot.");
        let DocBody::Value(Value::Mapping(m)) = &u.documents[0].body else {
            panic!()
        };
        assert_eq!(m.get("role"), Some(&Value::String("worker".into())));
    }

    #[test]
    fn every_write_files_encoding() {
        let cfg = b"apiVersion: kubeboot.dev/v1alpha1\nrole: worker\n";
        for (enc, content) in [
            ("", String::from_utf8(cfg.to_vec()).unwrap()),
            ("text/plain", String::from_utf8(cfg.to_vec()).unwrap()),
            ("b64", b64(cfg)),
            ("BASE64", b64(cfg)),
            ("gz+b64", b64(&gz(cfg))),
            ("gzip+base64", b64(&gz(cfg))),
            ("gz+base64", b64(&gz(cfg))),
            ("gzip+b64", b64(&gz(cfg))),
        ] {
            let y = format!(
                "#cloud-config\nwrite_files:\n- path: /etc/kubeboot/config.yaml\n  encoding: '{enc}'\n  content: {content:?}\n"
            );
            let u = unwrap(&y).unwrap_or_else(|e| panic!("{enc}: {e}"));
            assert_eq!(
                yaml_docs(&u),
                vec![(
                    "write_files[0] /etc/kubeboot/config.yaml",
                    std::str::from_utf8(cfg).unwrap()
                )],
                "{enc}"
            );
        }
        // gz with a !!binary scalar, as cloud-init documents it
        let y = format!(
            "#cloud-config\nwrite_files:\n- path: /etc/kubeboot/config.yaml\n  encoding: gz\n  content: !!binary |\n    {}\n",
            b64(&gz(cfg))
        );
        let u = unwrap(&y).unwrap();
        assert_eq!(yaml_docs(&u)[0].1, std::str::from_utf8(cfg).unwrap());
    }

    #[test]
    fn unknown_encoding_names_entry_and_encoding() {
        let y = "#cloud-config\nwrite_files:\n- path: /etc/a\n  content: x\n- path: /etc/b\n  content: x\n- path: /etc/kubeboot/config.yaml\n  encoding: b65\n  content: c2VjcmV0\n";
        let e = unwrap(y).unwrap_err().0;
        assert_eq!(
            e,
            format!(
                "write_files[2] (/etc/kubeboot/config.yaml): encoding \"b65\" is not one of {ENCODINGS}"
            )
        );
    }

    #[test]
    fn pki_files_and_modes() {
        let y = "#cloud-config\nwrite_files:\n- path: /etc/kubernetes/pki/ca.crt\n  permissions: '0640'\n  content: CERT\n\
                 - path: /etc/kubernetes/pki/ca.key\n  permissions: '0600'\n  content: KEY\n\
                 - path: /etc/kubernetes/pki/sa.key\n  content: SAKEY\n\
                 - path: /etc/kubernetes/pki/sa.pub\n  content: SAPUB\n";
        let u = unwrap(y).unwrap();
        let files: Vec<(&str, u32)> = u.files.iter().map(|f| (f.path.as_str(), f.mode)).collect();
        assert_eq!(
            files,
            vec![
                ("/etc/kubernetes/pki/ca.crt", 0o644),
                ("/etc/kubernetes/pki/ca.key", 0o600),
                ("/etc/kubernetes/pki/sa.key", 0o600),
                ("/etc/kubernetes/pki/sa.pub", 0o600),
            ]
        );
        assert_eq!(u.files[1].content, b"KEY");
        assert_eq!(
            u.warnings,
            vec![
                "write_files[0] (/etc/kubernetes/pki/ca.crt): mode 0640 set to 0644, kubeadm's mode for certificates",
                "write_files[2] (/etc/kubernetes/pki/sa.key): mode 0644 set to 0600, kubeadm's mode for private keys and sa.pub",
                "write_files[3] (/etc/kubernetes/pki/sa.pub): mode 0644 set to 0600, kubeadm's mode for private keys and sa.pub",
            ]
        );
        // Debug never shows content
        assert!(!format!("{:?}", u.files).contains("KEY\""));
    }

    #[test]
    fn kubeadm_config_by_path_or_content_other_files_warned() {
        let y = "#cloud-config\nwrite_files:\n- path: /run/kubeadm/kubeadm.yaml\n  content: |\n    kind: InitConfiguration\n\
                 - path: /root/cfg.yaml\n  content: |\n    ---\n    apiVersion: kubeadm.k8s.io/v1beta4\n    kind: JoinConfiguration\n\
                 - path: /etc/motd\n  content: hello secret world\n";
        let u = unwrap(y).unwrap();
        let origins: Vec<&str> = yaml_docs(&u).iter().map(|d| d.0).collect();
        assert_eq!(
            origins,
            vec![
                "write_files[0] /run/kubeadm/kubeadm.yaml",
                "write_files[1] /root/cfg.yaml"
            ]
        );
        assert_eq!(u.warnings.len(), 1);
        assert!(
            u.warnings[0].starts_with("write_files[2] (/etc/motd): ignored"),
            "{:?}",
            u.warnings
        );
        assert!(!u.warnings[0].contains("secret"));
    }

    #[test]
    fn permission_errors() {
        for (perm, want) in [
            ("'0999'", "not an octal mode"),
            ("'rw-r--r--'", "not an octal mode"),
            ("'077777'", "not an octal mode"),
            ("600", "not a YAML number"),
            ("0o600", "not a YAML number"),
            ("[1]", "quoted octal string"),
        ] {
            let y = format!(
                "#cloud-config\nwrite_files:\n- path: /etc/kubeboot/config.yaml\n  permissions: {perm}\n  content: x\n"
            );
            let e = unwrap(&y).unwrap_err().0;
            assert!(
                e.starts_with("write_files[0] (/etc/kubeboot/config.yaml): permissions")
                    && e.contains(want),
                "{perm}: {e}"
            );
        }
        // the parsed mode shows in the warning (PKI files get kubeadm's mode)
        for (perm, want) in [("0600", "0600"), ("'0o640'", "0640"), ("'755'", "0755")] {
            let y = format!(
                "#cloud-config\nwrite_files:\n- path: /etc/kubernetes/pki/ca.crt\n  permissions: {perm}\n  content: x\n"
            );
            let u = unwrap(&y).unwrap();
            assert_eq!(u.files[0].mode, 0o644, "{perm}");
            assert!(
                u.warnings[0].contains(&format!("mode {want} set to")),
                "{perm}: {:?}",
                u.warnings
            );
        }
    }

    #[test]
    fn structural_errors() {
        for (y, want) in [
            ("#cloud-config\n- a\n", "top level must be a mapping"),
            (
                "#cloud-config\nkubeboot: [1]\n",
                "kubeboot: must be a mapping",
            ),
            ("#cloud-config\nkubeboot:\n", "kubeboot: is empty"),
            (
                "#cloud-config\nwrite_files: {}\n",
                "write_files must be a list",
            ),
            (
                "#cloud-config\nwrite_files: [3]\n",
                "write_files[0]: must be a mapping",
            ),
            (
                "#cloud-config\nwrite_files: [{content: x}]\n",
                "write_files[0]: path is missing",
            ),
            (
                "#cloud-config\nwrite_files: [{path: 3}]\n",
                "write_files[0]: path must be a string",
            ),
            (
                "#cloud-config\nwrite_files: [{path: etc/x}]\n",
                "write_files[0] (etc/x): path must be absolute",
            ),
            (
                "#cloud-config\nwrite_files: [{path: /etc/kubeboot/config.yaml}]\n",
                "config file is empty",
            ),
            (
                "#cloud-config\nwrite_files: [{path: /etc/kubernetes/pki/ca.crt, content: [1]}]\n",
                "content must be a string",
            ),
            (
                "#cloud-config\nwrite_files: [{path: /etc/kubeboot/config.yaml, content: x, append: true}]\n",
                "append: true is not supported",
            ),
            (
                "#cloud-config\nwrite_files: [{path: /etc/kubeboot/config.yaml, content: x}, {path: /etc/kubeboot/config.yaml, content: y}]\n",
                "write_files[1] (/etc/kubeboot/config.yaml): the same path is given twice",
            ),
            (
                "#cloud-config\nwrite_files: [{path: /etc/kubeboot/config.yaml, encoding: b64, content: '%%%'}]\n",
                "not valid base64",
            ),
            (
                "#cloud-config\nwrite_files: [{path: /etc/kubeboot/config.yaml, encoding: gz, content: '%%'}]\n",
                "gz needs a !!binary scalar",
            ),
            (
                "#cloud-config\nwrite_files: [{path: /etc/kubeboot/config.yaml, encoding: gz, content: YWJj}]\n",
                "not valid gzip",
            ),
            (
                "#cloud-config\nkubeboot: {a: 1\n",
                "cloud-config: invalid YAML",
            ),
        ] {
            let e = unwrap(y).unwrap_err().0;
            assert!(e.contains(want), "{y:?}: {e}");
        }
    }

    #[test]
    fn runcmd_is_reported_and_empty_config_is_empty() {
        let u = unwrap("#cloud-config\nruncmd: [kubeadm init]\n").unwrap();
        assert!(u.documents.is_empty());
        assert_eq!(
            u.warnings,
            vec!["cloud-config: runcmd is ignored: kubeboot does not run commands"]
        );
        assert!(unwrap("#cloud-config\n").unwrap().documents.is_empty());
    }
}
