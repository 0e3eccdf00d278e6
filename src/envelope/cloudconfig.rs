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
use std::fmt;

use serde::Deserialize;
use serde::de::value::{EnumAccessDeserializer, MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde_norway::{Mapping, Value};

use super::{DocBody, Document, EnvelopeError, FileRole, Unwrapped, decode};

/// The encodings cloud-init accepts, for messages.
const ENCODINGS: &str =
    "b64, base64, gz, gzip, gz+b64, gz+base64, gzip+b64, gzip+base64, text/plain";

/// Unwraps a cloud-config document (the `#cloud-config` line is a YAML
/// comment, so the whole text is parsed).
pub fn unwrap(text: &str) -> Result<Unwrapped, EnvelopeError> {
    let (root, lifted) = parse(text)?;
    unwrap_root(root, &lifted)
}

/// What the parsed cloud-config carries.
fn unwrap_root(root: Root, lifted: &[Lifted<'_>]) -> Result<Unwrapped, EnvelopeError> {
    let mut u = Unwrapped::new("cloud-config");
    let top = match root {
        Root::Mapping(top) => top,
        Root::Other(Value::Null) => return Ok(u),
        Root::Other(_) => {
            return Err(EnvelopeError(
                "cloud-config: the top level must be a mapping".into(),
            ));
        }
    };
    match top.kubeboot {
        None => {}
        Some(value @ Value::Mapping(_)) => {
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
    match top.write_files {
        None | Some(WriteFiles::Other(Value::Null)) => {}
        Some(WriteFiles::Entries(entries)) => {
            for (i, entry) in entries.into_iter().enumerate() {
                write_file(&mut u, i, entry, lifted)?;
            }
        }
        Some(WriteFiles::Other(_)) => {
            return Err(EnvelopeError(
                "cloud-config: write_files must be a list".into(),
            ));
        }
    }
    for (key, present) in [("runcmd", top.runcmd), ("bootcmd", top.bootcmd)] {
        if present {
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
    entry: Entry,
    lifted: &[Lifted<'_>],
) -> Result<(), EnvelopeError> {
    let Entry::Mapping {
        path,
        encoding,
        content,
        permissions: perm,
        append,
    } = entry
    else {
        return Err(EnvelopeError(format!(
            "write_files[{i}]: must be a mapping"
        )));
    };
    let path = match path {
        Field::Str(p) => p,
        Field::Absent => return Err(EnvelopeError(format!("write_files[{i}]: path is missing"))),
        _ => {
            return Err(EnvelopeError(format!(
                "write_files[{i}]: path must be a string"
            )));
        }
    };
    let place = format!("write_files[{i}] ({})", shown_path(&path));
    super::check_carried_path(&path).map_err(|e| e.at(&place))?;
    let encoding = match &encoding {
        Field::Absent | Field::Null => "",
        Field::Str(s) => s,
        _ => return Err(EnvelopeError(format!("{place}: encoding must be a string"))),
    };
    let content = entry_content(&content, encoding, lifted).map_err(|e| e.at(&place))?;
    let mode = permissions(&perm).map_err(|e| e.at(&place))?;
    let role = super::file_role(&path, &content);
    if append && role != FileRole::Other {
        return Err(EnvelopeError(format!(
            "{place}: append: true is not supported for a file kubeboot reads"
        )));
    }
    super::carry(
        u,
        &place,
        format!("write_files[{i}] {path}"),
        &path,
        content,
        mode,
    )
}

/// An entry's decoded content (borrowed where it can be).
fn entry_content<'a>(
    content: &'a Field,
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
fn lifted_content<'a, 'b>(v: &Field, lifted: &'b [Lifted<'a>]) -> Option<&'b Lifted<'a>> {
    match v {
        Field::Str(s) => lifted.iter().find(|l| *l.token == **s),
        _ => None,
    }
}

/// The `content` value as bytes (a string, or empty), borrowed: a large
/// entry is not copied before kubeboot knows whether it keeps it.
fn content_bytes(v: &Field) -> Result<&[u8], EnvelopeError> {
    match v {
        Field::Absent | Field::Null => Ok(&[]),
        Field::Str(s) => Ok(s.as_bytes()),
        _ => Err(EnvelopeError("content must be a string".into())),
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
fn permissions(v: &Field) -> Result<u32, EnvelopeError> {
    match v {
        Field::Absent | Field::Null => Ok(0o644),
        Field::Str(s) => {
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
        Field::Number => Err(EnvelopeError(
            "permissions must be an octal string such as '0600', not a YAML number".into(),
        )),
        Field::Other => Err(EnvelopeError(
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
fn parse(text: &str) -> Result<(Root, Vec<Lifted<'_>>), EnvelopeError> {
    if let Some((rest, lifted)) = lift(text)
        && let Ok(root) = parse_root(&rest)
        && placeholders_in_place(&root, &lifted)
    {
        return Ok((root, lifted));
    }
    let root = parse_root(text).map_err(|e| e.at("cloud-config"))?;
    Ok((root, Vec::new()))
}

/// Whether each placeholder is the whole `content` of exactly one
/// `write_files` entry (a block header that was not what it looked like,
/// say inside a quoted string, leaves its placeholder elsewhere).
fn placeholders_in_place(root: &Root, lifted: &[Lifted<'_>]) -> bool {
    let Root::Mapping(Top {
        write_files: Some(WriteFiles::Entries(entries)),
        ..
    }) = root
    else {
        return false;
    };
    let mut seen = vec![0usize; lifted.len()];
    for e in entries {
        if let Entry::Mapping { content, .. } = e
            && let Some(k) = lifted.iter().position(|l| Some(&*l.token) == content.str())
        {
            seen[k] += 1;
        }
    }
    seen.iter().all(|&n| n == 1)
}

/// The parsed cloud-config, reduced to what [`unwrap`] reads.
///
/// Why not a `serde_norway::Value`: a value tree costs about 0.6 KiB per
/// `write_files` entry (a map with its keys and values), 11 MiB for 20,000
/// small entries, and it lived beside serde_norway's list of every event
/// of the document. Here each entry is read as a `Value`, reduced to an
/// [`Entry`] and dropped at once; everything else is read exactly as
/// `Value` reads it, so the same inputs are accepted and refused, with
/// the same messages (docs/building.md).
#[derive(Debug)]
enum Root {
    /// A top level that is not a mapping (`Null` for an empty document).
    Other(Value),
    Mapping(Top),
}

/// The top-level keys [`unwrap`] reads; every other key's value is read
/// (and so checked) as a `Value` and dropped.
#[derive(Debug, Default)]
struct Top {
    kubeboot: Option<Value>,
    write_files: Option<WriteFiles>,
    runcmd: bool,
    bootcmd: bool,
}

#[derive(Debug)]
enum WriteFiles {
    Entries(Vec<Entry>),
    /// Not a list (`Null` for `write_files:` with nothing after it).
    Other(Value),
}

/// One `write_files` entry: the fields [`write_file`] checks, each as much
/// of its value as the checks tell apart.
#[derive(Debug)]
enum Entry {
    NotMapping,
    Mapping {
        path: Field,
        encoding: Field,
        content: Field,
        permissions: Field,
        /// `append: true` (a YAML boolean).
        append: bool,
    },
}

/// A field of a `write_files` entry.
#[derive(Debug)]
enum Field {
    Absent,
    Null,
    Str(Box<str>),
    Number,
    /// A boolean, list, mapping or tagged value.
    Other,
}

impl Field {
    fn str(&self) -> Option<&str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl Entry {
    fn from_value(v: Value) -> Entry {
        let Value::Mapping(mut m) = v else {
            return Entry::NotMapping;
        };
        let mut field = |key: &str| match m.remove(key) {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(Value::String(s)) => Field::Str(s.into_boxed_str()),
            Some(Value::Number(_)) => Field::Number,
            Some(_) => Field::Other,
        };
        let (path, encoding, content, permissions) = (
            field("path"),
            field("encoding"),
            field("content"),
            field("permissions"),
        );
        Entry::Mapping {
            path,
            encoding,
            content,
            permissions,
            append: matches!(m.get("append"), Some(Value::Bool(true))),
        }
    }
}

/// Parses one YAML document into a [`Root`] (after the flow-depth check).
fn parse_root(text: &str) -> Result<Root, EnvelopeError> {
    decode::check_flow_depth(text)?;
    TopSeed
        .deserialize(serde_norway::Deserializer::from_str(text))
        .map_err(decode::yaml_error)
}

/// The `Visitor` methods of serde_norway's own `Value` (its
/// `value/de.rs`), each result wrapped by `$wrap`: the visitors below
/// stream one kind of node and must read every other as `Value` does.
macro_rules! as_value {
    ($wrap:expr) => {
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any YAML value")
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
            Ok($wrap(Value::Bool(b)))
        }
        fn visit_i64<E: de::Error>(self, i: i64) -> Result<Self::Value, E> {
            Ok($wrap(Value::Number(i.into())))
        }
        fn visit_u64<E: de::Error>(self, u: u64) -> Result<Self::Value, E> {
            Ok($wrap(Value::Number(u.into())))
        }
        fn visit_f64<E: de::Error>(self, f: f64) -> Result<Self::Value, E> {
            Ok($wrap(Value::Number(f.into())))
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok($wrap(Value::String(s.to_owned())))
        }
        fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
            Ok($wrap(Value::String(s)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($wrap(Value::Null))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($wrap(Value::Null))
        }
        fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
            Value::deserialize(EnumAccessDeserializer::new(data)).map($wrap)
        }
    };
}

/// Reads the top level; a mapping key by key.
struct TopSeed;

impl<'de> DeserializeSeed<'de> for TopSeed {
    type Value = Root;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Root, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed {
    type Value = Root;
    as_value!(Root::Other);

    fn visit_seq<A: SeqAccess<'de>>(self, data: A) -> Result<Root, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(data)).map(Root::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut data: A) -> Result<Root, A::Error> {
        // a key given twice is refused as serde_norway's `Mapping` refuses it
        let mut keys = Mapping::new();
        let mut top = Top::default();
        while let Some(key) = data.next_key::<Value>()? {
            if keys.contains_key(&key) {
                return Err(de::Error::custom(duplicate_key(&key)));
            }
            // a plain string key only (`Value::as_str` would see through a
            // tag, `Mapping::get` does not)
            let name = match &key {
                Value::String(s) => s.as_str(),
                _ => "",
            };
            match name {
                "kubeboot" => top.kubeboot = Some(data.next_value()?),
                "write_files" => top.write_files = Some(data.next_value_seed(WriteFilesSeed)?),
                _ => {
                    data.next_value::<Value>()?;
                    top.runcmd |= name == "runcmd";
                    top.bootcmd |= name == "bootcmd";
                }
            }
            keys.insert(key, Value::Null);
        }
        Ok(Root::Mapping(top))
    }
}

/// serde_norway's message for a key given twice (its `DuplicateKeyError`).
fn duplicate_key(key: &Value) -> String {
    match key {
        Value::Null => "duplicate entry with null key".into(),
        Value::Bool(b) => format!("duplicate entry with key `{b}`"),
        Value::Number(n) => format!("duplicate entry with key {n}"),
        Value::String(s) => format!("duplicate entry with key {s:?}"),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => {
            "duplicate entry in YAML map".into()
        }
    }
}

/// Reads `write_files`; a list entry by entry, each reduced to an [`Entry`].
struct WriteFilesSeed;

impl<'de> DeserializeSeed<'de> for WriteFilesSeed {
    type Value = WriteFiles;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<WriteFiles, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for WriteFilesSeed {
    type Value = WriteFiles;
    as_value!(WriteFiles::Other);

    fn visit_map<A: MapAccess<'de>>(self, data: A) -> Result<WriteFiles, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(data)).map(WriteFiles::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut data: A) -> Result<WriteFiles, A::Error> {
        let mut entries = Vec::new();
        while let Some(v) = data.next_element::<Value>()? {
            entries.push(Entry::from_value(v));
        }
        entries.shrink_to_fit();
        Ok(WriteFiles::Entries(entries))
    }
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
    // the capacity grown by doubling is given back (a large allocation
    // shrinks in place)
    out.shrink_to_fit();
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
        let contents = |root: &Root, lifted: &[Lifted<'_>]| -> Vec<Vec<u8>> {
            let Root::Mapping(Top {
                write_files: Some(WriteFiles::Entries(entries)),
                ..
            }) = root
            else {
                return Vec::new();
            };
            entries
                .iter()
                .map(|e| {
                    let Entry::Mapping {
                        encoding, content, ..
                    } = e
                    else {
                        panic!("not a mapping")
                    };
                    entry_content(content, encoding.str().unwrap_or(""), lifted)
                        .unwrap()
                        .into_owned()
                })
                .collect()
        };
        let (root, lifted) = parse(text).unwrap();
        let fast = contents(&root, &lifted);
        let whole = parse_root(text).unwrap();
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

    /// The oracle for the streaming read ([`TopSeed`]): the whole document
    /// read as one `serde_norway::Value` by serde_norway itself, the keys
    /// then looked up in it (how `unwrap` read a cloud-config before).
    fn root_from_whole_value(text: &str) -> Result<Root, EnvelopeError> {
        let v = decode::yaml_value(text)?;
        let Value::Mapping(m) = v else {
            return Ok(Root::Other(v));
        };
        Ok(Root::Mapping(Top {
            kubeboot: m.get("kubeboot").cloned(),
            write_files: m.get("write_files").map(|w| match w {
                Value::Sequence(es) => {
                    WriteFiles::Entries(es.iter().cloned().map(Entry::from_value).collect())
                }
                other => WriteFiles::Other(other.clone()),
            }),
            runcmd: m.contains_key("runcmd"),
            bootcmd: m.contains_key("bootcmd"),
        }))
    }

    /// Asserts that the streaming read and the oracle agree on `text`: the
    /// same parse (or the same error) and the same unwrapped result.
    fn assert_read_as_whole_value(label: &str, text: &str) {
        let streamed = parse_root(text);
        let whole = root_from_whole_value(text);
        assert_eq!(
            format!("{streamed:?}"),
            format!("{whole:?}"),
            "{label}: parse"
        );
        let streamed = streamed.and_then(|r| unwrap_root(r, &[]));
        let whole = whole.and_then(|r| unwrap_root(r, &[]));
        assert_eq!(
            format!("{streamed:?}"),
            format!("{whole:?}"),
            "{label}: unwrapped"
        );
    }

    #[test]
    fn the_streaming_read_accepts_and_refuses_what_a_whole_value_does() {
        let deep = |n: usize| format!("write_files: {}{}\n", "[".repeat(n), "]".repeat(n));
        let cases = [
            "",
            "#cloud-config\n",
            "~\n",
            "- a\n",
            "3\n",
            "'text'\n",
            "\"esc\\tx\"\n",
            "true\n",
            "-3\n",
            "1.5\n",
            ".nan\n",
            "write_files: true\n",
            "write_files: -3\n",
            "write_files: 18446744073709551615\n",
            "write_files: 1.5\n",
            "write_files: \"a\\tb\"\n",
            "write_files: !!null ''\n",
            "kubeboot: -3\n",
            "kubeboot: \"x\\ty\"\n",
            "x: 1\n7: 2\n",
            "!tag {a: 1}\n",
            "write_files:\n",
            "write_files: {a: 1}\n",
            "write_files: {a: 1, a: 2}\n",
            "write_files: !custom [a]\n",
            "write_files: x\n",
            "write_files: []\nwrite_files: []\n",
            "write_files: [{path: /etc/a}]\nwrite_files: 3\n",
            "a: 1\na: 2\n",
            "1: x\n1: y\n",
            "~: a\nnull: b\n",
            "true: 1\ntrue: 2\n",
            "1.5: a\n1.5: b\n",
            "? [a]\n: 1\n? [a]\n: 2\n",
            "? {a: 1}\n: x\n? {a: 1}\n: y\n",
            "!k kubeboot: {role: worker}\n",
            "!k write_files: [3]\n!k runcmd: [a]\n",
            "? !!str write_files\n: [3]\n",
            "kubeboot: &k {role: worker}\nother: *k\n",
            "kubeboot: {role: worker, role: x}\n",
            "kubeboot: [1]\n",
            "kubeboot:\n",
            "kubeboot: !t {a: 1}\n",
            "base: &w [{path: /etc/kubeboot/config.yaml, content: 'role: worker'}]\nwrite_files: *w\n",
            "write_files:\n  - &e {path: /etc/kubeboot/config.yaml, content: 'role: worker'}\n  - *e\n",
            "write_files:\n  - {path: /a, path: /b}\n",
            "write_files:\n  - {path: /etc/a, <<: {content: x}}\n",
            "write_files:\n  - path: !foo /etc/a\n",
            "write_files:\n  - {path: /etc/kubeboot/config.yaml, content: !!binary cm9sZTogd29ya2Vy}\n",
            "write_files:\n  - {path: /etc/kubeboot/config.yaml, content: 'role: worker', append: 'true'}\n",
            "write_files:\n  - {path: /etc/kubeboot/config.yaml, content: 'role: worker', append: true}\n",
            "write_files:\n  - {path: /etc/a, permissions: 0o600}\n",
            "write_files:\n  - {path: /etc/a, permissions: 0600}\n",
            "write_files:\n  - {path: /etc/a, permissions: !!str 600}\n",
            "write_files:\n  - {path: /etc/a, permissions: 6.0e2}\n",
            "write_files:\n  - {path: /etc/a, encoding: [b64]}\n",
            "write_files:\n  - {path: /etc/a, content: 12}\n",
            "write_files:\n  - {path: ~}\n",
            "write_files:\n- 1\n- ~\n- [a]\n",
            "write_files:\n- path: /etc/kubernetes/pki/ca.crt\n  content: CERT\n  permissions: '0600'\n- path: /etc/motd\n  content: hi\n",
            "write_files: [{path: /etc/a, content: x}\n",
            "runcmd: [a]\nbootcmd: [b]\nkubeboot: {role: worker}\n",
            "runcmd:\n",
            "a: 1\n---\nb: 2\n",
            "---\n...\n",
            &deep(120),
            &deep(140),
            &format!("a: {}{}\n", "[".repeat(140), "]".repeat(140)),
        ];
        for (i, text) in cases.iter().enumerate() {
            assert_read_as_whole_value(&format!("case {i} {text:?}"), text);
        }
    }

    #[test]
    fn twenty_thousand_entries_are_read_as_a_whole_value_and_errors_name_the_index() {
        let head = "#cloud-config\nkubeboot:\n  role: worker\nwrite_files:\n";
        let entries: Vec<String> = (0..20_000)
            .map(|i| format!("  - path: /opt/small/file-{i}.txt\n    content: small file {i}\n"))
            .collect();
        let with = |bad: &str| {
            let mut e = entries.clone();
            e[17_345] = bad.to_string();
            format!("{head}{}", e.concat())
        };
        let good = format!("{head}{}", entries.concat());
        assert_read_as_whole_value("good", &good);
        let u = unwrap(&good).unwrap();
        assert_eq!(u.documents.len(), 1);
        assert_eq!(u.warnings.len(), 20_000);
        assert!(
            u.warnings[17_345]
                .starts_with("write_files[17345] (/opt/small/file-17345.txt): ignored"),
            "{}",
            u.warnings[17_345]
        );
        for (bad, want) in [
            (
                "  - path: opt/x\n",
                "write_files[17345] (opt/x): path must be absolute",
            ),
            ("  - [a]\n", "write_files[17345]: must be a mapping"),
            ("  - content: x\n", "write_files[17345]: path is missing"),
            (
                "  - path: /etc/kubeboot/config.yaml\n    permissions: 600\n    content: x\n",
                "write_files[17345] (/etc/kubeboot/config.yaml): permissions must be an octal string",
            ),
            (
                "  - path: /etc/kubeboot/config.yaml\n    encoding: b64\n    content: '%%'\n",
                "write_files[17345] (/etc/kubeboot/config.yaml): content: not valid base64",
            ),
            (
                "  - path: /opt/a\n    path: /opt/b\n",
                "cloud-config: invalid YAML: write_files[17345]: duplicate entry with key \"path\" at line 34695 column 5",
            ),
        ] {
            let text = with(bad);
            assert_read_as_whole_value(bad, &text);
            let e = unwrap(&text).unwrap_err().0;
            assert!(e.starts_with(want), "{bad:?}: {e}");
        }
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
