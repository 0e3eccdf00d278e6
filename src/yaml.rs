//! The YAML emitter for every document kubeboot writes (static pods, the
//! kubelet configuration, the kube-proxy and ClusterConfiguration
//! documents, `config print`, a rewritten kubeconfig).
//!
//! It is a `serde::Serializer` that writes block-style YAML byte for byte
//! as serde_norway (libyaml's emitter, unicode on, no line width) writes
//! the same value: block mappings and sequences with a two-space indent, a
//! sequence under a mapping key not indented, `{}`/`[]` for empty
//! collections, and libyaml's choice of scalar style (plain, single-quoted,
//! double-quoted with escapes, or a `|` literal block for text with line
//! breaks), with serde_norway's rule that a string which would read back as
//! null, a bool or a number is single-quoted. Beyond serde_norway, strings
//! a YAML 1.1 reader would misread (`no`, `on`, `1_000`, `2026-11-28`) are
//! quoted too (`str_style`). Tests compare it with serde_norway's output
//! and read what it writes back with PyYAML and serde_norway.
//!
//! Parsing stays with serde_norway; this replaces only the writing side,
//! which through libyaml cost 30% of a control-plane render's instructions
//! (docs/building.md, "The YAML emitter").
//!
//! Not supported (kubeboot writes none of them; each is an error, never a
//! wrong document): enum variants carrying data (serde_norway writes them
//! as YAML tags), byte strings, and mapping keys that are not scalars. A
//! serde_norway `Value::Tagged` is written as the one-entry mapping it
//! serializes to, not as a tag.

use serde::ser::{self, Serialize};
use std::fmt;

/// An error of [`to_string`]: a value YAML (or this emitter) cannot write.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// `value` as one YAML document, as serde_norway's `to_string` writes it.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let mut e = Emitter::new();
    value.serialize(&mut e)?;
    e.finish()
}

/// `value` as a YAML scalar that fits on one line (for documents written
/// from a template, as kubeadm writes kubeconfigs): what [`to_string`]
/// writes for it as a mapping value, except that text with line breaks is
/// double-quoted instead of a `|` block.
pub fn inline_scalar(value: &str) -> String {
    let mut e = Emitter::new();
    // a simple key's context: the same choices, but never a block scalar
    e.ctx = Ctx {
        mapping: true,
        simple_key: true,
    };
    match e.string(value) {
        Ok(()) => e.out,
        // a scalar alone cannot fail; double quotes read back in any case
        Err(_) => format!("{value:?}"),
    }
}

/// The style a scalar asks for; libyaml may pick a stronger one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    Any,
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
}

/// Where the next node goes (libyaml's `*_context` flags).
#[derive(Clone, Copy, Default)]
struct Ctx {
    mapping: bool,
    simple_key: bool,
}

/// An open collection whose first entry may not have come yet.
struct Frame {
    map: bool,
    first: bool,
    /// the `mapping` context the collection itself was emitted in
    in_mapping: bool,
    /// the current key was written as a simple key (`k: v`, not `? k`)
    simple: bool,
}

struct Emitter {
    out: String,
    column: usize,
    whitespace: bool,
    indention: bool,
    indent: i32,
    indents: Vec<i32>,
    ctx: Ctx,
    frames: Vec<Frame>,
    /// nodes started at depth 0 (one document only)
    roots: u32,
}

impl Emitter {
    fn new() -> Self {
        Emitter {
            out: String::with_capacity(4096),
            column: 0,
            whitespace: true,
            indention: true,
            indent: -1,
            indents: Vec::with_capacity(16),
            ctx: Ctx::default(),
            frames: Vec::with_capacity(16),
            roots: 0,
        }
    }

    fn finish(mut self) -> Result<String> {
        if self.roots != 1 || !self.frames.is_empty() {
            return Err(Error("no complete YAML document was serialized".into()));
        }
        // document end (implicit); serde_norway's to_string ends there,
        // without the stream end that would add `...` after a `|+` block
        self.write_indent();
        Ok(self.out)
    }

    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    /// libyaml's WRITE_BREAK: a `\n` is a line break, any other break
    /// character is copied as it is.
    fn write_break(&mut self, c: char) {
        self.out.push(c);
        self.column = 0;
    }

    fn write_indent(&mut self) {
        let indent = self.indent.max(0) as usize;
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(&mut self, ind: &str, need_ws: bool, is_ws: bool, is_indention: bool) {
        if need_ws && !self.whitespace {
            self.put(' ');
        }
        self.out.push_str(ind);
        self.column += ind.chars().count();
        self.whitespace = is_ws;
        self.indention = self.indention && is_indention;
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { 2 } else { 0 };
        } else if !indentless {
            self.indent += 2;
        }
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().unwrap_or(-1);
    }

    /// Called before every node: a second root is refused.
    fn node_start(&mut self) -> Result<()> {
        if self.frames.is_empty() {
            self.roots += 1;
            if self.roots > 1 {
                return Err(Error("more than one YAML document".into()));
            }
        }
        Ok(())
    }

    fn scalar(&mut self, value: &str, requested: Style) -> Result<()> {
        self.scalar_analyzed(value, requested, &analyze(value))
    }

    #[inline(never)] // once, not in every Serialize impl (binary size)
    fn scalar_analyzed(&mut self, value: &str, requested: Style, a: &Analysis) -> Result<()> {
        self.node_start()?;
        let ctx = self.ctx;
        let mut style = if requested == Style::Any {
            Style::Plain
        } else {
            requested
        };
        if ctx.simple_key && a.multiline {
            style = Style::DoubleQuoted;
        }
        if style == Style::Plain && (!a.block_plain || (value.is_empty() && ctx.simple_key)) {
            style = Style::SingleQuoted;
        }
        if style == Style::SingleQuoted && !a.single_quoted {
            style = Style::DoubleQuoted;
        }
        if style == Style::Literal && (!a.block || ctx.simple_key) {
            style = Style::DoubleQuoted;
        }
        self.increase_indent(true, false);
        match style {
            Style::Plain | Style::Any => self.write_plain(value),
            Style::SingleQuoted => self.write_single_quoted(value),
            Style::DoubleQuoted => self.write_double_quoted(value),
            Style::Literal => self.write_literal(value),
        }
        self.pop_indent();
        Ok(())
    }

    fn write_plain(&mut self, value: &str) {
        if !self.whitespace && !value.is_empty() {
            self.put(' ');
        }
        // plain is never chosen for text with line breaks
        self.out.push_str(value);
        self.column += value.chars().count();
        self.whitespace = false;
        self.indention = false;
    }

    fn write_single_quoted(&mut self, value: &str) {
        self.write_indicator("'", true, false, false);
        let mut breaks = false;
        for c in value.chars() {
            if c == ' ' {
                self.put(c);
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
        if breaks {
            self.write_indent();
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double_quoted(&mut self, value: &str) {
        self.write_indicator("\"", true, false, false);
        for c in value.chars() {
            if !is_printable(c) || c == '\u{feff}' || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                let short = match c {
                    '\0' => Some('0'),
                    '\u{7}' => Some('a'),
                    '\u{8}' => Some('b'),
                    '\t' => Some('t'),
                    '\n' => Some('n'),
                    '\u{b}' => Some('v'),
                    '\u{c}' => Some('f'),
                    '\r' => Some('r'),
                    '\u{1b}' => Some('e'),
                    '"' => Some('"'),
                    '\\' => Some('\\'),
                    '\u{85}' => Some('N'),
                    '\u{a0}' => Some('_'),
                    '\u{2028}' => Some('L'),
                    '\u{2029}' => Some('P'),
                    _ => None,
                };
                match short {
                    Some(s) => self.put(s),
                    None => {
                        let v = c as u32;
                        let (letter, digits) = if v <= 0xFF {
                            ('x', 2)
                        } else if v <= 0xFFFF {
                            ('u', 4)
                        } else {
                            ('U', 8)
                        };
                        self.put(letter);
                        for k in (0..digits).rev() {
                            let d = (v >> (k * 4)) & 0xF;
                            self.put(char::from_digit(d, 16).unwrap_or('0').to_ascii_uppercase());
                        }
                    }
                }
            } else {
                self.put(c);
            }
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_literal(&mut self, value: &str) {
        self.write_indicator("|", true, false, false);
        // block scalar hints: an indentation indicator when the text starts
        // with a space or a break, then the chomping indicator
        if value.starts_with(|c: char| c == ' ' || is_break(c)) {
            self.write_indicator("2", false, false, false);
        }
        let mut rev = value.chars().rev();
        let chomp = match (rev.next(), rev.next()) {
            (None, _) => Some("-"),
            (Some(last), _) if !is_break(last) => Some("-"),
            (Some(_), None) => Some("+"),
            (Some(_), Some(before)) if is_break(before) => Some("+"),
            _ => None,
        };
        if let Some(chomp) = chomp {
            self.write_indicator(chomp, false, false, false);
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for c in value.chars() {
            if is_break(c) {
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
    }

    #[inline(never)] // once, not in every Serialize impl (binary size)
    fn start_collection(&mut self, map: bool) -> Result<()> {
        self.node_start()?;
        self.frames.push(Frame {
            map,
            first: true,
            in_mapping: self.ctx.mapping,
            simple: true,
        });
        Ok(())
    }

    #[inline(never)] // once, not in every Serialize impl (binary size)
    fn end_collection(&mut self) -> Result<()> {
        let frame = self
            .frames
            .pop()
            .ok_or_else(|| Error("collection end without a start".into()))?;
        if frame.first {
            // empty: libyaml writes it in flow style
            let (open, close) = if frame.map { ("{", "}") } else { ("[", "]") };
            self.write_indicator(open, true, true, false);
            self.write_indicator(close, false, false, false);
        } else {
            self.pop_indent();
        }
        Ok(())
    }

    fn top(&mut self) -> Result<&mut Frame> {
        self.frames
            .last_mut()
            .ok_or_else(|| Error("entry outside a collection".into()))
    }

    #[inline(never)] // once, not in every Serialize impl (binary size)
    fn sequence_item(&mut self) -> Result<()> {
        let frame = self.top()?;
        let first = std::mem::replace(&mut frame.first, false);
        let in_mapping = frame.in_mapping;
        if first {
            let indentless = in_mapping && !self.indention;
            self.increase_indent(false, indentless);
        }
        self.write_indent();
        self.write_indicator("-", true, false, true);
        self.ctx = Ctx {
            mapping: false,
            simple_key: false,
        };
        Ok(())
    }

    #[inline(never)] // once, not in every Serialize impl (binary size)
    fn mapping_key(&mut self, text: &str, style: Style, a: &Analysis) -> Result<()> {
        let frame = self.top()?;
        let first = std::mem::replace(&mut frame.first, false);
        if first {
            self.increase_indent(false, false);
        }
        self.write_indent();
        // libyaml's check_simple_key: one line, at most 128 bytes
        let simple = !a.multiline && text.len() <= 128;
        self.top()?.simple = simple;
        if simple {
            self.ctx = Ctx {
                mapping: true,
                simple_key: true,
            };
        } else {
            self.write_indicator("?", true, false, true);
            self.ctx = Ctx {
                mapping: true,
                simple_key: false,
            };
        }
        self.scalar_analyzed(text, style, a)
    }

    #[inline(never)] // once, not in every Serialize impl (binary size)
    fn mapping_value(&mut self) -> Result<()> {
        if self.top()?.simple {
            self.write_indicator(":", false, false, false);
        } else {
            self.write_indent();
            self.write_indicator(":", true, false, true);
        }
        self.ctx = Ctx {
            mapping: true,
            simple_key: false,
        };
        Ok(())
    }

    /// A struct field's key and the `:` before its value.
    #[inline(never)] // once, not in every Serialize impl (binary size)
    fn struct_field(&mut self, name: &str) -> Result<()> {
        let a = analyze(name);
        self.mapping_key(name, str_style(name, a.newline), &a)?;
        self.mapping_value()
    }

    #[inline(never)] // once, not in every Serialize impl (binary size)
    fn string(&mut self, v: &str) -> Result<()> {
        let a = analyze(v);
        self.scalar_analyzed(v, str_style(v, a.newline), &a)
    }
}

/// serde_norway's choice for a string: a literal block when it has a
/// newline, single quotes when plain it would read back as something else.
/// One addition: strings a YAML 1.1 reader takes for something else (`no`,
/// `on`, `1_000`, `12:30`, `2026-11-28`, `<<`) are single-quoted too, so
/// that PyYAML and go-yaml v2 (sigs.k8s.io/yaml, which the kubelet reads
/// its files with) read back the same string; serde_norway, a YAML 1.2
/// reader, writes them plain.
fn str_style(v: &str, newline: bool) -> Style {
    if newline {
        Style::Literal
    } else if may_not_be_a_string(v) && (resolves_to_non_string(v) || yaml11_non_string(v)) {
        Style::SingleQuoted
    } else {
        Style::Any
    }
}

/// A cheap first look: only these first bytes (or an empty string) can
/// start a null, bool, number, timestamp, `<<` or `=` in YAML 1.1 or 1.2.
fn may_not_be_a_string(v: &str) -> bool {
    let b = v.as_bytes();
    match b.first() {
        None | Some(b'0'..=b'9') => true,
        // a sign or a dot is followed by a digit, a dot, or `inf`/`nan`
        Some(b'+' | b'-' | b'.') => matches!(
            b.get(1),
            Some(b'0'..=b'9' | b'.' | b'i' | b'I' | b'n' | b'N') | None
        ),
        Some(b'~' | b'<' | b'=') => v.len() <= 2,
        Some(b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'y' | b'Y' | b'o' | b'O') => v.len() <= 5,
        _ => false,
    }
}

/// True when serde_norway's resolver reads plain `v` as null, a bool or a
/// number (or as a digit string YAML 1.2 would not call a number, which it
/// quotes too).
fn resolves_to_non_string(v: &str) -> bool {
    v.is_empty()
        || matches!(
            v,
            "null" | "Null" | "NULL" | "~" | "true" | "True" | "TRUE" | "false" | "False" | "FALSE"
        )
        || is_unsigned_int(v)
        || is_negative_int(v)
        || leading_zero_digits(v)
        || is_float(v)
}

/// True when a YAML 1.1 reader resolves plain `v` to something other than
/// a string: PyYAML's implicit resolvers (`yaml/resolver.py`: bool, int,
/// float, merge, null, timestamp, value) plus go-yaml v2's `y`/`n`.
fn yaml11_non_string(v: &str) -> bool {
    matches!(
        v,
        "yes"
            | "Yes"
            | "YES"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
            | "y"
            | "Y"
            | "n"
            | "N"
            | "<<"
            | "="
    ) || yaml11_int(v)
        || yaml11_float(v)
        || yaml11_timestamp(v)
}

fn all_of(s: &str, f: impl Fn(u8) -> bool) -> bool {
    s.bytes().all(f)
}

fn digit_(b: u8) -> bool {
    b.is_ascii_digit() || b == b'_'
}

/// `[0-9][0-9_]*` when `lead` is `b'0'`, `[1-9][0-9_]*` when it is `b'1'`.
fn decimal_(s: &str, lead: u8) -> bool {
    s.as_bytes()
        .first()
        .is_some_and(|&b| (lead..=b'9').contains(&b))
        && all_of(&s[1..], digit_)
}

/// `<head>(:[0-5]?[0-9])+` with `<head>` = `decimal_(lead)`.
fn sexagesimal(s: &str, lead: u8) -> bool {
    let mut parts = s.split(':');
    let head = parts.next().unwrap_or("");
    let mut n = 0;
    for p in parts {
        let ok = match p.as_bytes() {
            [d] => d.is_ascii_digit(),
            [a, d] => (b'0'..=b'5').contains(a) && d.is_ascii_digit(),
            _ => false,
        };
        if !ok {
            return false;
        }
        n += 1;
    }
    n > 0 && decimal_(head, lead)
}

fn unsigned(v: &str) -> &str {
    v.strip_prefix(['-', '+']).unwrap_or(v)
}

fn yaml11_int(v: &str) -> bool {
    let t = unsigned(v);
    let tail = |p: &str, f: fn(u8) -> bool| {
        t.strip_prefix(p)
            .is_some_and(|r| !r.is_empty() && all_of(r, f))
    };
    tail("0b", |b| matches!(b, b'0' | b'1' | b'_'))
        || tail("0", |b| matches!(b, b'0'..=b'7' | b'_'))
        || t == "0"
        || decimal_(t, b'1')
        || tail("0x", |b| b.is_ascii_hexdigit() || b == b'_')
        || sexagesimal(t, b'1')
}

/// `[eE][-+][0-9]+` or nothing.
fn exponent(s: &str) -> bool {
    s.is_empty()
        || s.strip_prefix(['e', 'E'])
            .and_then(|r| r.strip_prefix(['-', '+']))
            .is_some_and(|r| !r.is_empty() && all_of(r, |b| b.is_ascii_digit()))
}

fn split_exp(s: &str) -> (&str, &str) {
    s.find(['e', 'E']).map_or((s, ""), |i| s.split_at(i))
}

fn yaml11_float(v: &str) -> bool {
    let t = unsigned(v);
    // [0-9][0-9_]*\.[0-9_]*(exp)?
    let fixed = t.split_once('.').is_some_and(|(int, frac)| {
        let (frac, exp) = split_exp(frac);
        decimal_(int, b'0') && all_of(frac, digit_) && exponent(exp)
    });
    // \.[0-9][0-9_]*(exp)?, without a sign
    let bare = v.strip_prefix('.').is_some_and(|r| {
        let (digits, exp) = split_exp(r);
        decimal_(digits, b'0') && exponent(exp)
    });
    // [0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*
    let sexa = t
        .rsplit_once('.')
        .is_some_and(|(head, frac)| sexagesimal(head, b'0') && all_of(frac, digit_));
    fixed
        || bare
        || sexa
        || matches!(t, ".inf" | ".Inf" | ".INF")
        || matches!(v, ".nan" | ".NaN" | ".NAN")
}

/// A superset of YAML 1.1's timestamp: four digits, `-`, a digit, and
/// nothing but digits and `-:.TtZ+`, space or tab after.
fn yaml11_timestamp(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() >= 6
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5].is_ascii_digit()
        && all_of(v, |c| c.is_ascii_digit() || b"-:.TtZ+ \t".contains(&c))
}

/// `0123`, `-007`: leading zeros followed by digits only.
fn leading_zero_digits(v: &str) -> bool {
    let s = v.strip_prefix(['-', '+']).unwrap_or(v);
    s.len() > 1 && s.starts_with('0') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

fn radix_prefixed(s: &str, neg: bool) -> bool {
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = s.strip_prefix(prefix) {
            if neg {
                if i128::from_str_radix(&format!("-{rest}"), radix).is_ok() {
                    return true;
                }
            } else if !rest.starts_with(['+', '-']) && u128::from_str_radix(rest, radix).is_ok() {
                return true;
            }
        }
    }
    false
}

fn is_unsigned_int(v: &str) -> bool {
    let s = v.strip_prefix('+').unwrap_or(v);
    if radix_prefixed(s, false) {
        return true;
    }
    !s.starts_with(['+', '-']) && !leading_zero_digits(v) && s.parse::<u128>().is_ok()
}

fn is_negative_int(v: &str) -> bool {
    if v.strip_prefix('-')
        .is_some_and(|rest| radix_prefixed(rest, true))
    {
        return true;
    }
    !leading_zero_digits(v) && v.parse::<i128>().is_ok()
}

fn is_float(v: &str) -> bool {
    let s = match v.strip_prefix('+') {
        Some(s) if s.starts_with(['+', '-']) => return false,
        Some(s) => s,
        None => v,
    };
    matches!(s, ".inf" | ".Inf" | ".INF")
        || matches!(v, "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN" | ".NAN")
        || s.parse::<f64>().is_ok_and(f64::is_finite)
}

/// What libyaml's `analyze_scalar` finds out about a scalar.
struct Analysis {
    /// a `\n` (serde_norway's test for a literal block)
    newline: bool,
    multiline: bool,
    block_plain: bool,
    single_quoted: bool,
    block: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blankz(c: Option<char>) -> bool {
    match c {
        None | Some('\0' | ' ' | '\t') => true,
        Some(c) => is_break(c),
    }
}

/// libyaml's IS_PRINTABLE (for UTF-8 text).
fn is_printable(c: char) -> bool {
    matches!(c as u32,
        0x0A | 0x20..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x10000..)
        && c != '\u{feff}'
}

/// Bytes that need no look in a scalar: ASCII letters, digits, `/._=-+`.
const SAFE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'=' | b'-' | b'+');
        i += 1;
    }
    t
};

fn analyze(value: &str) -> Analysis {
    // most of what kubeboot writes: names, paths, images, flags
    if value.bytes().all(|b| SAFE[b as usize]) && !value.is_empty() {
        return Analysis {
            newline: false,
            multiline: false,
            // a lone `-` is a sequence entry
            block_plain: !(value.starts_with("---") || value.starts_with("...") || value == "-"),
            single_quoted: true,
            block: true,
        };
    }
    if value.is_empty() {
        return Analysis {
            newline: false,
            multiline: false,
            block_plain: true,
            single_quoted: true,
            block: false,
        };
    }
    let mut block_indicators = value.starts_with("---") || value.starts_with("...");
    let (mut line_breaks, mut special, mut newline) = (false, false, false);
    let (mut leading_space, mut leading_break) = (false, false);
    let (mut trailing_space, mut trailing_break) = (false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_whitespace = true;
    let mut chars = value.chars().peekable();
    let mut first = true;
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let followed_by_whitespace = is_blankz(next);
        if first {
            if "#,[]{}&*!|>'\"%@`".contains(c) {
                block_indicators = true;
            }
            if (c == '?' || c == ':' || c == '-') && followed_by_whitespace {
                block_indicators = true;
            }
        } else if (c == ':' && followed_by_whitespace) || (c == '#' && preceded_by_whitespace) {
            block_indicators = true;
        }
        if !is_printable(c) {
            special = true;
        }
        let last = next.is_none();
        if c == ' ' {
            leading_space |= first;
            trailing_space |= last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            line_breaks = true;
            newline |= c == '\n';
            leading_break |= first;
            trailing_break |= last;
            space_break |= previous_space;
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blankz(Some(c));
        first = false;
    }
    let edges = leading_space || leading_break || trailing_space || trailing_break;
    Analysis {
        newline,
        multiline: line_breaks,
        block_plain: !(edges
            || break_space
            || space_break
            || special
            || line_breaks
            || block_indicators),
        single_quoted: !(break_space || space_break || special),
        block: !(trailing_space || space_break || special),
    }
}

/// A mapping key, rendered to its text and the style it asks for.
struct Key {
    text: String,
    style: Style,
}

/// Serializes a mapping key: scalars only.
struct KeySerializer;

fn plain_key(text: String) -> Result<Key> {
    Ok(Key {
        text,
        style: Style::Plain,
    })
}

fn key_refused<T>() -> Result<T> {
    Err(Error("a YAML mapping key must be a scalar".into()))
}

impl ser::Serializer for KeySerializer {
    type Ok = Key;
    type Error = Error;
    type SerializeSeq = ser::Impossible<Key, Error>;
    type SerializeTuple = ser::Impossible<Key, Error>;
    type SerializeTupleStruct = ser::Impossible<Key, Error>;
    type SerializeTupleVariant = ser::Impossible<Key, Error>;
    type SerializeMap = ser::Impossible<Key, Error>;
    type SerializeStruct = ser::Impossible<Key, Error>;
    type SerializeStructVariant = ser::Impossible<Key, Error>;

    fn serialize_bool(self, v: bool) -> Result<Key> {
        plain_key(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<Key> {
        plain_key(v.to_string())
    }
    fn serialize_i128(self, v: i128) -> Result<Key> {
        plain_key(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<Key> {
        plain_key(v.to_string())
    }
    fn serialize_u128(self, v: u128) -> Result<Key> {
        plain_key(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<Key> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<Key> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<Key> {
        self.serialize_i64(v.into())
    }
    fn serialize_u8(self, v: u8) -> Result<Key> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<Key> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<Key> {
        self.serialize_u64(v.into())
    }
    fn serialize_f32(self, v: f32) -> Result<Key> {
        plain_key(float32_text(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Key> {
        plain_key(float64_text(v))
    }
    fn serialize_char(self, v: char) -> Result<Key> {
        Ok(Key {
            text: v.to_string(),
            style: Style::SingleQuoted,
        })
    }
    fn serialize_str(self, v: &str) -> Result<Key> {
        Ok(Key {
            text: v.to_string(),
            style: str_style(v, v.contains('\n')),
        })
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Key> {
        key_refused()
    }
    fn serialize_none(self) -> Result<Key> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Key> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Key> {
        plain_key("null".into())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Key> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<Key> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Key> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Key> {
        key_refused()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq> {
        key_refused()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        key_refused()
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        key_refused()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        key_refused()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
        key_refused()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
        key_refused()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        key_refused()
    }
}

/// serde_norway's float text: ryu's shortest form, `.inf`, `-.inf`, `.nan`
/// (`f32` goes through ryu's `f32` form, as serde_norway's does).
fn float_text<F: ryu::Float>(v: F, class: std::num::FpCategory, negative: bool) -> String {
    match class {
        std::num::FpCategory::Nan => ".nan".into(),
        std::num::FpCategory::Infinite if negative => "-.inf".into(),
        std::num::FpCategory::Infinite => ".inf".into(),
        _ => yaml11_exponent(ryu::Buffer::new().format_finite(v)),
    }
}

fn float64_text(v: f64) -> String {
    float_text(v, v.classify(), v.is_sign_negative())
}

fn float32_text(v: f32) -> String {
    float_text(v, v.classify(), v.is_sign_negative())
}

/// ryu writes `1e16` and `1.5e-7`; YAML 1.1 (PyYAML, go-yaml v2) reads a
/// float only with a dot and a signed exponent, so those become `1.0e+16`
/// and `1.5e-7` (serde_norway writes ryu's text as it is).
fn yaml11_exponent(text: &str) -> String {
    let Some((mantissa, exp)) = text.split_once('e') else {
        return text.to_string();
    };
    let dot = if mantissa.contains('.') { "" } else { ".0" };
    let sign = if exp.starts_with('-') { "" } else { "+" };
    format!("{mantissa}{dot}e{sign}{exp}")
}

fn variant_refused<T>() -> Result<T> {
    Err(Error(
        "an enum variant with data has no YAML form in kubeboot's emitter".into(),
    ))
}

impl ser::Serializer for &mut Emitter {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.scalar(if v { "true" } else { "false" }, Style::Plain)
    }
    fn serialize_i64(self, v: i64) -> Result<()> {
        self.scalar(itoa::Buffer::new().format(v), Style::Plain)
    }
    fn serialize_i128(self, v: i128) -> Result<()> {
        self.scalar(itoa::Buffer::new().format(v), Style::Plain)
    }
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.scalar(itoa::Buffer::new().format(v), Style::Plain)
    }
    fn serialize_u128(self, v: u128) -> Result<()> {
        self.scalar(itoa::Buffer::new().format(v), Style::Plain)
    }
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<()> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.serialize_i64(v.into())
    }
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.serialize_u64(v.into())
    }
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.scalar(&float32_text(v), Style::Plain)
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.scalar(&float64_text(v), Style::Plain)
    }
    fn serialize_char(self, v: char) -> Result<()> {
        self.scalar(v.encode_utf8(&mut [0u8; 4]), Style::SingleQuoted)
    }
    fn serialize_str(self, v: &str) -> Result<()> {
        self.string(v)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<()> {
        Err(Error("byte strings have no YAML form".into()))
    }
    fn serialize_none(self) -> Result<()> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<()> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<()> {
        self.scalar("null", Style::Plain)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<()> {
        self.string(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<()> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<()> {
        variant_refused()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self> {
        self.start_collection(false)?;
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self> {
        self.serialize_seq(None)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self> {
        self.serialize_seq(None)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        variant_refused()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self> {
        self.start_collection(true)?;
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        variant_refused()
    }
}

impl ser::SerializeSeq for &mut Emitter {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        self.sequence_item()?;
        v.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        self.end_collection()
    }
}

impl ser::SerializeTuple for &mut Emitter {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<()> {
        self.end_collection()
    }
}

impl ser::SerializeTupleStruct for &mut Emitter {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<()> {
        self.end_collection()
    }
}

impl ser::SerializeMap for &mut Emitter {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<()> {
        let key = k.serialize(KeySerializer)?;
        self.mapping_key(&key.text, key.style, &analyze(&key.text))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        self.mapping_value()?;
        v.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        self.end_collection()
    }
}

impl ser::SerializeStruct for &mut Emitter {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, v: &T) -> Result<()> {
        self.struct_field(name)?;
        v.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        self.end_collection()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Strings that trip YAML emitters: type look-alikes, indicators,
    /// spaces and breaks at the edges, quotes, control and non-ASCII text.
    pub(crate) const TRICKY: &[&str] = &[
        "",
        " ",
        "  ",
        "a",
        "true",
        "false",
        "True",
        "FALSE",
        "yes",
        "no",
        "No",
        "on",
        "off",
        "y",
        "n",
        "Y",
        "N",
        "null",
        "Null",
        "~",
        "0",
        "1",
        "-1",
        "+1",
        "007",
        "-007",
        "0x1F",
        "0X1F",
        "-0x1F",
        "0o17",
        "0b101",
        "0b2",
        "0x",
        "1e3",
        "1E3",
        "1e+3",
        "1.",
        ".5",
        "-.5",
        "1.5",
        "1_000",
        "1_0.5",
        "12:30",
        "1:20:30.5",
        "190:20:30",
        ".inf",
        "-.inf",
        "+.inf",
        ".nan",
        ".NaN",
        "nan",
        "inf",
        "infinity",
        "NaN",
        "2026-11-28",
        "2026-11-28T10:00:00Z",
        "2001-12-14 21:59:43.10 -5",
        "1234-5",
        "<<",
        "=",
        "-",
        "--",
        "---",
        "--- a",
        "...",
        "....",
        "-a",
        "- a",
        "?",
        "? a",
        "?a",
        ":",
        ":a",
        ": a",
        "a:",
        "a: b",
        "a:b",
        "a :b",
        "#",
        "#a",
        "a#b",
        "a #b",
        "a# b",
        ",",
        "a,b",
        "[",
        "]",
        "{",
        "}",
        "{}",
        "[]",
        "&a",
        "*a",
        "!a",
        "!!str",
        "|",
        ">",
        "'",
        "\"",
        "%",
        "@",
        "`",
        "'a'",
        "\"a\"",
        "a'b",
        "a\"b",
        "it's",
        "\\",
        "a\\b",
        "\\n",
        "\n",
        "\n\n",
        "a\n",
        "a\nb",
        "a\n\n",
        "a\nb\n",
        "\na",
        " a",
        "a ",
        " a ",
        "a \nb",
        "a\n b",
        "a\n\nb",
        "a\r\nb",
        "\r",
        "a\rb",
        "\t",
        "a\tb",
        "\ta",
        "a\t",
        "\u{0}",
        "\u{8}",
        "a\u{b}b",
        "\u{c}",
        "a\u{7}b",
        "\u{1b}[0m",
        "\u{7f}",
        "\u{85}",
        "a\u{85}b",
        "\u{a0}",
        "a\u{a0}b",
        "\u{2028}",
        "a\u{2028}b",
        "a\u{2029}",
        "\u{feff}a",
        "\u{fffe}",
        "\u{ffff}",
        "\u{e000}",
        "\u{d7ff}",
        "é",
        "ünïcödé",
        "日本語",
        "🙂",
        "a🙂b",
        "Ω: x",
        "--flag=value",
        "--a=b c",
        "/etc/kubernetes/pki",
        "10.0.0.1",
        "10.96.0.0/12",
        "::1",
        "[::1]:6443",
        "fd00::/8",
        "https://cp.example.test:6443",
        "system:node:cp-1",
        "registry.k8s.io/etcd:3.5.16-0",
        "v1.34.1",
        "0600",
        "64Mi",
        "100m",
        "10s",
        "1h0m0s",
        "key=value:NoSchedule",
        "*.example.test",
        "a b  c",
        "a  ",
        "multi\nline\ntext\n",
        "trailing space \nx",
        "x\n ",
        "x\n\t",
        "#!/bin/sh\necho hi\n",
    ];

    fn long_strings() -> Vec<String> {
        vec![
            "k".repeat(128),
            "k".repeat(129),
            "a b ".repeat(40),
            "x".repeat(5000),
        ]
    }

    /// True when `v` holds a string this emitter quotes on purpose where
    /// serde_norway writes it plain (YAML 1.1 look-alikes), or a float with
    /// an exponent.
    fn deliberately_different(v: &Value) -> bool {
        match v {
            Value::String(s) => yaml11_non_string(s) && !resolves_to_non_string(s),
            Value::Number(n) => n.is_f64() && n.to_string().contains('e'),
            Value::Array(a) => a.iter().any(deliberately_different),
            Value::Object(m) => m.iter().any(|(k, v)| {
                deliberately_different(&Value::String(k.clone())) || deliberately_different(v)
            }),
            _ => false,
        }
    }

    /// Ours equals serde_norway's bytes (unless deliberately different) and
    /// serde_norway reads ours back as `v`.
    fn check(v: &Value) {
        let ours = to_string(v).unwrap();
        if !deliberately_different(v) {
            let theirs = serde_norway::to_string(v).unwrap();
            assert_eq!(ours, theirs, "for {v:?}");
        }
        let back: Value = serde_norway::from_str(&ours).unwrap_or_else(|e| panic!("{e}: {ours}"));
        assert_eq!(&back, v, "read back from:\n{ours}");
    }

    fn shapes(s: &str) -> Vec<Value> {
        vec![
            json!({ "k": s }),
            json!({ s: "v" }),
            json!({ s: s }),
            json!([s]),
            json!({ "a": [s, { s: s, "b": [s] }], "c": { "d": s } }),
            json!([[s, [s]], { "x": { s: [] } }]),
            json!({ "e": {}, "f": [], "g": [{}], "h": [[]], "i": { s: {} } }),
        ]
    }

    #[test]
    fn tricky_strings_match_serde_norway_and_read_back() {
        for s in TRICKY {
            for v in shapes(s) {
                check(&v);
            }
        }
        for s in long_strings() {
            for v in shapes(&s) {
                check(&v);
            }
        }
    }

    #[test]
    fn inline_scalars_are_mapping_values_on_one_line() {
        for s in TRICKY {
            let line = format!("k: {}\n", inline_scalar(s));
            assert_eq!(line.lines().count(), 1, "{s:?}: {line}");
            let back: Value = serde_norway::from_str(&line).unwrap();
            assert_eq!(back, json!({ "k": s }), "{line}");
            if !s.chars().any(is_break) {
                assert_eq!(line, to_string(&json!({ "k": s })).unwrap());
            }
        }
    }

    #[test]
    fn root_scalars_and_empties() {
        for v in [
            json!({}),
            json!([]),
            json!(null),
            json!(true),
            json!(0),
            json!(-17),
            json!(u64::MAX),
            json!(1.5),
            json!(0.1),
            json!("text"),
            json!("a\n\n"),
            json!({ "k": "a\n\n" }),
            json!({ "k": "a\n\n", "l": "b\n" }),
            json!([{}, [], [[]], [{}], { "a": {} }]),
            json!({ "a": [[1, 2], [[3]], []], "b": [{ "c": [] }] }),
        ] {
            check(&v);
        }
    }

    #[test]
    fn yaml11_look_alikes_are_quoted() {
        for s in [
            "yes",
            "no",
            "on",
            "Off",
            "y",
            "N",
            "1_000",
            "12:30",
            "1:20:30.5",
            "2026-11-28",
            "<<",
            "=",
            "1_0.5",
            "0b1_0",
        ] {
            assert_eq!(
                to_string(&json!({ "k": s })).unwrap(),
                format!("k: '{s}'\n")
            );
        }
        for s in [
            "10.0.0.1",
            "v1.34.1",
            "1.2.3",
            "12:60",
            "0:30",
            "noon",
            "yesterday",
        ] {
            assert_eq!(to_string(&json!({ "k": s })).unwrap(), format!("k: {s}\n"));
        }
        assert_eq!(
            to_string(&json!([1e16, 1.5e-7, 0.5])).unwrap(),
            "- 1.0e+16\n- 1.5e-7\n- 0.5\n"
        );
    }

    /// xorshift64*: a fixed sequence, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn random_string(r: &mut Rng) -> String {
        const PIECES: &[&str] = &[
            "a", "Z", "0", "1", "9", " ", "  ", ":", ": ", "#", " #", "-", "- ", "?", "'", "\"",
            "\\", "\n", "\r", "\t", ",", "[", "]", "{", "}", "&", "*", "!", "|", ">", "%", "@",
            "`", ".", "e", "x", "_", "+", "~", "é", "日", "🙂", "\u{85}", "\u{a0}", "\u{2028}",
            "\u{feff}", "\u{0}", "\u{1b}", "true", "no", "null", "0x", "---", "...",
        ];
        (0..r.below(6))
            .map(|_| PIECES[r.below(PIECES.len())])
            .collect()
    }

    fn random_value(r: &mut Rng, depth: u32) -> Value {
        match if depth > 3 { r.below(4) } else { r.below(7) } {
            0 => Value::String(random_string(r)),
            1 => json!(r.next() as i64 >> r.below(60)),
            2 => TRICKY[r.below(TRICKY.len())].into(),
            3 => [
                json!(null),
                json!(true),
                json!(false),
                json!(0.25),
                json!(-3.5),
            ][r.below(5)]
            .clone(),
            4 | 5 => Value::Object(
                (0..r.below(4))
                    .map(|_| (random_string(r), random_value(r, depth + 1)))
                    .collect(),
            ),
            _ => Value::Array(
                (0..r.below(4))
                    .map(|_| random_value(r, depth + 1))
                    .collect(),
            ),
        }
    }

    #[test]
    fn random_documents_match_serde_norway_and_read_back() {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..3000 {
            let v = Value::Object(
                (0..1 + r.below(4))
                    .map(|_| (random_string(&mut r), random_value(&mut r, 0)))
                    .collect(),
            );
            check(&v);
        }
    }

    #[test]
    fn typed_structs_and_options_match_serde_norway() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Inner {
            name: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            port: Option<u16>,
            tags: Vec<String>,
            ratio: f32,
            c: char,
        }
        #[derive(serde::Serialize)]
        enum Kind {
            Plain,
        }
        #[derive(serde::Serialize)]
        struct Outer {
            inner: Vec<Inner>,
            kind: Kind,
            unit: (),
            tuple: (u8, i128, String),
            map: std::collections::BTreeMap<u32, Option<bool>>,
        }
        let v = Outer {
            inner: vec![
                Inner {
                    name: "a".into(),
                    port: Some(6443),
                    tags: vec![],
                    ratio: 0.5,
                    c: 'x',
                },
                Inner {
                    name: "true".into(),
                    port: None,
                    tags: vec!["x: y".into(), "z\n".into()],
                    ratio: -2.0,
                    c: '\'',
                },
            ],
            kind: Kind::Plain,
            unit: (),
            tuple: (7, -5, "0123".into()),
            map: [(1, Some(true)), (2, None)].into_iter().collect(),
        };
        assert_eq!(to_string(&v).unwrap(), serde_norway::to_string(&v).unwrap());
    }

    #[test]
    fn refused_values_are_errors() {
        #[derive(serde::Serialize)]
        enum E {
            Data(u8),
        }
        let message = |r: Result<String>| r.unwrap_err().to_string();
        assert!(message(to_string(&E::Data(1))).contains("enum variant with data"));
        let mut m = std::collections::BTreeMap::new();
        m.insert(vec![1], 2);
        assert_eq!(
            message(to_string(&m)),
            "a YAML mapping key must be a scalar"
        );
        assert_eq!(
            message(to_string(serde_bytes_like())),
            "byte strings have no YAML form"
        );
    }

    struct Bytes;
    impl Serialize for Bytes {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(b"x")
        }
    }
    fn serde_bytes_like() -> &'static Bytes {
        &Bytes
    }
}
