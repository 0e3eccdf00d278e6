//! Secret values (bootstrap token secrets, certificate keys, private key PEM)
//! wrapped so that they can never be printed by accident.
//!
//! `Debug`, `Display` and `Serialize` all print `<redacted>`; the only way to
//! reach the value is [`Secret::expose`], which makes every use greppable.

use std::fmt;

/// A string that must never reach logs, errors, status files or argv.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        let s = Secret(value.into());
        remember(&s.0);
        s
    }

    /// The secret value itself. Call sites are the audit list.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no value was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

/// Accepts only strings, and never echoes a wrongly typed value in its error
/// (serde's default "invalid type: integer `123`" would print the secret).
struct SecretVisitor;

impl SecretVisitor {
    fn wrong<E: serde::de::Error>(what: &str) -> E {
        E::custom(format_args!(
            "expected a string, found {what} (value not shown)"
        ))
    }
}

impl<'de> serde::de::Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(Self::wrong("a boolean"))
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(Self::wrong("a number"))
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(Self::wrong("a number"))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(Self::wrong("a number"))
    }
    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(Self::wrong("bytes"))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Secret, E> {
        Err(Self::wrong("null"))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(Self::wrong("a list"))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(Self::wrong("a mapping"))
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Overwrite the bytes before the allocation is freed.
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// The short secrets (token secrets, certificate keys) this process has
/// seen, so that [`scrub`] can remove them wherever they were pasted. Off
/// until [`remember_secrets`] (the binary turns it on; library users and
/// unit tests keep their messages as they are).
static SEEN: std::sync::Mutex<Option<Vec<Secret>>> = std::sync::Mutex::new(None);

/// Turns on remembering secrets for [`scrub`] (called once by `main`).
pub fn remember_secrets() {
    if let Ok(mut seen) = SEEN.lock()
        && seen.is_none()
    {
        *seen = Some(Vec::new());
    }
}

/// Remembers the secret values a parsed-but-not-yet-validated document
/// holds (`token`, `tlsBootstrapToken`, `certificateKey` at any depth), so
/// that an error raised before they are typed (an unknown field, a bad
/// server) cannot echo them. A token's secret half is remembered alone too.
pub fn remember_in(v: &serde_norway::Value) {
    match v {
        serde_norway::Value::Mapping(m) => {
            for (k, val) in m {
                if let (Some(k), Some(s)) = (k.as_str(), val.as_str())
                    && matches!(k, "token" | "tlsBootstrapToken" | "certificateKey")
                {
                    remember(s);
                    if let Some((_, secret)) = s.split_once('.') {
                        remember(secret);
                    }
                }
                remember_in(val);
            }
        }
        serde_norway::Value::Sequence(items) => items.iter().for_each(remember_in),
        serde_norway::Value::Tagged(t) => remember_in(&t.value),
        _ => {}
    }
}

fn remember(v: &str) {
    // Private keys are long and never quoted in messages; short values
    // (6..=128 bytes) are the ones a user pastes into the wrong field.
    if !(6..=128).contains(&v.len()) {
        return;
    }
    if let Ok(mut seen) = SEEN.lock()
        && let Some(list) = seen.as_mut()
        && !list.iter().any(|s| s.0 == v)
    {
        list.push(Secret(v.to_owned()));
    }
}

/// The longest user value quoted in a message (characters between `"`).
const MAX_QUOTED: usize = 40;

/// Removes anything secret-shaped from a message, log line or status
/// text: every secret this process has seen ([`remember_secrets`]), any
/// `[a-z0-9]{6}.[a-z0-9]{16}` (a bootstrap token), any run of 64 or more
/// hexadecimal digits not introduced by `sha256:` or `sha256 ` (a
/// certificate key; a CA pin or a content digest is public), and shortens every quoted value over
/// [`MAX_QUOTED`] characters. The one place messages pass before they are
/// shown (error `Display`, every log line, the status file).
pub fn scrub(text: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    if let Ok(seen) = SEEN.lock()
        && let Some(list) = seen.as_ref()
    {
        for s in list {
            if out.contains(s.0.as_str()) {
                out = Cow::Owned(out.replace(s.0.as_str(), "<redacted>"));
            }
        }
    }
    let shaped = redact_shapes(&out);
    let quoted = shorten_quoted(shaped.as_deref().unwrap_or(&out));
    match (quoted, shaped) {
        (Some(q), _) => Cow::Owned(q),
        (None, Some(s)) => Cow::Owned(s),
        (None, None) => out,
    }
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Tokens and long hex runs replaced; `None` when there were none.
fn redact_shapes(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        // a token: 6 token chars, '.', 16 token chars
        if i + 23 <= b.len()
            && b[i + 6] == b'.'
            && b[i..i + 6].iter().all(|&c| is_token_char(c))
            && b[i + 7..i + 23].iter().all(|&c| is_token_char(c))
        {
            out.push_str(&text[copied..i]);
            out.push_str("<redacted token>");
            i += 23;
            copied = i;
            continue;
        }
        if b[i].is_ascii_hexdigit() && (i == 0 || !b[i - 1].is_ascii_hexdigit()) {
            let end = i + b[i..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
            if end - i >= 64 && !after_sha256(&text[..i]) {
                out.push_str(&text[copied..i]);
                out.push_str("<redacted>");
                copied = end;
            }
            i = end;
            continue;
        }
        i += 1;
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// Whether `before` ends with `sha256` and one separator (`sha256:`,
/// `sha256 `, `sha256=`, `sha256-`): what follows is a public digest (a CA
/// pin, a content hash), not a certificate key.
fn after_sha256(before: &str) -> bool {
    let mut chars = before.chars().rev();
    matches!(chars.next(), Some(':' | ' ' | '=' | '-'))
        && before[..before.len() - 1]
            .to_ascii_lowercase()
            .ends_with("sha256")
}

/// Quoted values (`"..."`, as `{:?}` prints them) longer than
/// [`MAX_QUOTED`] characters cut to their start; `None` when none were.
fn shorten_quoted(text: &str) -> Option<String> {
    // A value to shorten takes more than MAX_QUOTED characters, each at least
    // one byte, between two quotes: most lines have no quote at all.
    if text.len() < MAX_QUOTED + 3 || !text.contains('"') {
        return None;
    }
    let mut out = String::new();
    let mut copied = 0;
    let mut rest = text.char_indices().peekable();
    while let Some((open, c)) = rest.next() {
        if c != '"' {
            continue;
        }
        // find the closing quote, skipping escapes
        let mut close = None;
        let mut escaped = false;
        let mut chars = 0;
        for (j, d) in rest.by_ref() {
            if escaped {
                escaped = false;
            } else if d == '\\' {
                escaped = true;
            } else if d == '"' {
                close = Some(j);
                break;
            }
            chars += 1;
        }
        let Some(close) = close else { break };
        if chars > MAX_QUOTED {
            let keep: String = text[open + 1..close].chars().take(16).collect();
            out.push_str(&text[copied..open]);
            out.push_str(&format!("\"{keep}…\" ({chars} characters)"));
            copied = close + 1;
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_secret_shapes_and_long_quotes() {
        let key = "0123456789abcdef".repeat(4);
        let pin = format!("sha256:{}", "ab".repeat(32));
        let msg = format!(
            "server: \"k9x2m4.q7w8e9r0t1y2u3i4\" bad; key {key}; pin {pin}; id abcdef.<redacted> kept"
        );
        let s = scrub(&msg);
        assert!(!s.contains("q7w8e9r0t1y2u3i4"), "{s}");
        assert!(!s.contains(&key), "{s}");
        assert!(s.contains(&pin), "a sha256 pin is public: {s}");
        let digest = format!("content sha256 {key} differs");
        assert_eq!(scrub(&digest), digest);
        assert!(s.contains("abcdef.<redacted> kept"), "{s}");
        let long = format!("name \"{}\" is bad", "x".repeat(300));
        let s = scrub(&long);
        assert!(s.len() < 80 && s.contains("(300 characters)"), "{s}");
        assert!(s.ends_with(" is bad"), "{s}");
        assert_eq!(scrub("plain text, \"short\""), "plain text, \"short\"");
        // a token with an upper-case or longer context is still cut out
        assert!(!scrub("xk9x2m4.q7w8e9r0t1y2u3i4z").contains("q7w8e9r0t1y2u3i4"));
    }

    #[test]
    fn never_prints() {
        let s = Secret::new("0123456789abcdef");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(s.expose(), "0123456789abcdef");
    }

    #[test]
    fn wrong_type_error_hides_value() {
        let e = serde_json::from_str::<Secret>("1234567890123").unwrap_err();
        assert!(!e.to_string().contains("1234567890123"), "{e}");
        let e = serde_norway::from_str::<Secret>("987654321").unwrap_err();
        assert!(!e.to_string().contains("987654321"), "{e}");
    }
}
