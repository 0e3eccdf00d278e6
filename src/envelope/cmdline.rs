//! The kernel command line: a parser that follows the kernel's own quoting
//! rules (`lib/cmdline.c` `next_arg`), and the `kubeboot.*` envelope built
//! on it (PXE fleets put role and join material in the boot arguments).
//!
//! Rules, as the kernel applies them:
//! - words are separated by ASCII whitespace; a double quote toggles
//!   "inside quotes" wherever it appears, and whitespace inside quotes
//!   does not split;
//! - `key="value with spaces"`: a quote right after `=` is dropped, and so
//!   is a quote that ends the word;
//! - `"key=value with spaces"`: a quote that starts the word is dropped,
//!   and so is a quote that ends it;
//! - other quotes stay in the value (`a=b"c d"e` gives `b"c d"e`);
//! - a word without `=` has an empty value;
//! - a bare `--` ends the kernel's arguments (the rest belongs to init).

use super::{ConfigUrl, DocBody, Document, EnvelopeError, Unwrapped};

/// Splits a kernel command line into `(key, value)` pairs, in order.
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(is_space);
        if rest.is_empty() {
            break;
        }
        let (word, after) = next_word(rest);
        rest = after;
        let (key, value) = split_word(word);
        if value.is_none() && key == "--" {
            break;
        }
        out.push((key.to_string(), value.unwrap_or_default().to_string()));
    }
    out
}

/// The kernel's `isspace` for the command line.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// One word (up to unquoted whitespace) and the text after it.
fn next_word(s: &str) -> (&str, &str) {
    let mut in_quote = false;
    for (i, c) in s.char_indices() {
        if c == '"' {
            in_quote = !in_quote;
        } else if is_space(c) && !in_quote {
            return (&s[..i], &s[i..]);
        }
    }
    (s, "")
}

/// Splits one word into key and optional value, dropping the quotes the
/// kernel drops.
fn split_word(word: &str) -> (&str, Option<&str>) {
    let quoted_start = word.starts_with('"');
    let body = if quoted_start { &word[1..] } else { word };
    // The kernel's `equals` is the first '=' anywhere in the word, quoted or
    // not, except at index 0 (it uses 0 to mean "none seen yet").
    match body.get(1..).and_then(|b| b.find('=')).map(|i| i + 1) {
        None => {
            let key = if quoted_start {
                body.strip_suffix('"').unwrap_or(body)
            } else {
                body
            };
            (key, None)
        }
        Some(eq) => {
            let key = &body[..eq];
            let mut value = &body[eq + 1..];
            let value_quoted = value.starts_with('"');
            if value_quoted {
                value = &value[1..];
            }
            if quoted_start || value_quoted {
                value = value.strip_suffix('"').unwrap_or(value);
            }
            (key, Some(value))
        }
    }
}

/// True when `text` is one line (a trailing newline allowed) holding at
/// least one `kubeboot.` argument: what `/proc/cmdline` or a PXE file looks like.
pub(crate) fn looks_like_cmdline(text: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(text) else {
        return false;
    };
    let line = text.trim_end_matches(['\n', '\r']);
    !line.contains('\n') && has_config_args(line)
}

/// True when the command line has a `kubeboot.*` argument that configures
/// the node (anything but `kubeboot.platform=`, which only names the platform).
pub fn has_config_args(text: &str) -> bool {
    parse(text)
        .iter()
        .any(|(k, _)| is_kubeboot_key(k) && k != "kubeboot.platform")
}

/// `kubeboot.` followed by a name made of letters, digits, `.`, `-`, `_`.
fn is_kubeboot_key(key: &str) -> bool {
    key.strip_prefix(PREFIX).is_some_and(|name| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    })
}

const PREFIX: &str = "kubeboot.";

/// Keys that are secrets: the kernel command line is world-readable.
const SECRET_KEYS: &[&str] = &["token", "certificate-key"];

/// The kernel-argument envelope: every `kubeboot.*` argument becomes one
/// [`DocBody::KernelArgs`] pair (key without the prefix, `_` spelled `-`),
/// except `kubeboot.config=` and `kubeboot.config.sha256=`, which become a
/// [`ConfigUrl`].
pub(crate) fn unwrap(text: &str) -> Result<Unwrapped, EnvelopeError> {
    let mut u = Unwrapped::new("kernel command line");
    let mut args = Vec::new();
    let mut url: Option<String> = None;
    let mut sha: Option<String> = None;
    for (key, value) in parse(text) {
        if !is_kubeboot_key(&key) {
            if key.starts_with(PREFIX) {
                let shown: String = key.chars().filter(|c| !c.is_control()).take(40).collect();
                return Err(EnvelopeError(format!(
                    "kernel command line: {shown:?} is not a valid kubeboot.* argument name"
                )));
            }
            continue;
        }
        let name = key[PREFIX.len()..].replace('_', "-");
        match name.as_str() {
            "config" => {
                if url.is_some() {
                    return Err(EnvelopeError(
                        "kernel command line: kubeboot.config is given more than once".into(),
                    ));
                }
                if !(value.starts_with("http://") || value.starts_with("https://"))
                    || value.len() <= "https://".len()
                {
                    return Err(EnvelopeError(
                        "kernel command line: kubeboot.config must be an http:// or https:// URL"
                            .into(),
                    ));
                }
                url = Some(value);
            }
            "config.sha256" => {
                if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(EnvelopeError(
                        "kernel command line: kubeboot.config.sha256 must be 64 hexadecimal digits"
                            .into(),
                    ));
                }
                sha = Some(value.to_ascii_lowercase());
            }
            // Read by platform detection, not node configuration.
            "platform" => {}
            _ => {
                if SECRET_KEYS.contains(&name.as_str()) {
                    u.warnings.push(format!(
                        "kernel command line: kubeboot.{name} is readable by every local user through /proc/cmdline; \
                         prefer kubeboot.config=<url> with kubeboot.config.sha256"
                    ));
                }
                args.push((name, value));
            }
        }
    }
    match (url, sha) {
        (Some(url), sha256) => {
            if url.starts_with("http://") && sha256.is_none() {
                u.warnings.push(
                    "kernel command line: kubeboot.config is a plain http:// URL without kubeboot.config.sha256; \
                     its content cannot be verified"
                        .into(),
                );
            }
            u.config_urls.push(ConfigUrl { url, sha256 });
        }
        (None, Some(_)) => {
            return Err(EnvelopeError(
                "kernel command line: kubeboot.config.sha256 is given without kubeboot.config"
                    .into(),
            ));
        }
        (None, None) => {}
    }
    if !args.is_empty() {
        u.documents.push(Document {
            origin: "kernel command line".into(),
            field_prefix: PREFIX.into(),
            body: DocBody::KernelArgs(args),
        });
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<(String, String)> {
        parse(s)
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn plain_words_and_flags() {
        assert_eq!(
            p("ro quiet root=/dev/sda1\n"),
            kv(&[("ro", ""), ("quiet", ""), ("root", "/dev/sda1")])
        );
        assert_eq!(p(""), kv(&[]));
        assert_eq!(p("  \t\n "), kv(&[]));
        assert_eq!(p("a=b=c"), kv(&[("a", "b=c")]));
        assert_eq!(p("a="), kv(&[("a", "")]));
        // an '=' at the very start is not the separator (kernel quirk)
        assert_eq!(p("=x =a=b"), kv(&[("=x", ""), ("=a", "b")]));
    }

    #[test]
    fn quoted_values() {
        assert_eq!(
            p(r#"a="value with spaces" b=1"#),
            kv(&[("a", "value with spaces"), ("b", "1")])
        );
        assert_eq!(
            p(r#""a=value with spaces" b=1"#),
            kv(&[("a", "value with spaces"), ("b", "1")])
        );
        assert_eq!(p(r#"a=b"c d"e x"#), kv(&[("a", r#"b"c d"e"#), ("x", "")]));
        assert_eq!(
            p(r#""quoted flag" y"#),
            kv(&[("quoted flag", ""), ("y", "")])
        );
        assert_eq!(p(r#"a="""#), kv(&[("a", "")]));
    }

    #[test]
    fn unterminated_quote_runs_to_the_end() {
        assert_eq!(p(r#"a="x y z"#), kv(&[("a", "x y z")]));
        assert_eq!(p(r#"a=1 "b=2 3"#), kv(&[("a", "1"), ("b", "2 3")]));
    }

    #[test]
    fn double_dash_ends_kernel_arguments() {
        assert_eq!(p("a=1 -- kubeboot.role=worker"), kv(&[("a", "1")]));
        // "--" with a value is an ordinary argument
        assert_eq!(p("--=x b"), kv(&[("--", "x"), ("b", "")]));
        // a quoted "--" is still "--" to the kernel
        assert_eq!(p(r#"a "--" b"#), kv(&[("a", "")]));
    }

    #[test]
    fn unicode_and_tabs() {
        assert_eq!(p("k=ä\tz=\"ü ö\""), kv(&[("k", "ä"), ("z", "ü ö")]));
    }

    #[test]
    fn detection() {
        assert!(looks_like_cmdline(
            b"BOOT_IMAGE=/vmlinuz ro kubeboot.role=worker\n"
        ));
        assert!(!looks_like_cmdline(b"BOOT_IMAGE=/vmlinuz ro quiet\n"));
        assert!(!looks_like_cmdline(
            b"apiVersion: kubeboot.dev/v1alpha1\nrole: worker\n"
        ));
        assert!(!looks_like_cmdline(b"ro -- kubeboot.role=worker"));
        assert!(!looks_like_cmdline(b"ro kubeboot.platform=metal\n"));
        assert!(has_config_args(
            "kubeboot.platform=metal kubeboot.config=https://a/b"
        ));
        assert!(!looks_like_cmdline(
            b"{apiVersion: kubeboot.dev/v1alpha1, role: worker}"
        ));
    }

    #[test]
    fn envelope_collects_kubeboot_args_and_config_url() {
        let hash = "A".repeat(64);
        let u = unwrap(&format!(
            "ro kubeboot.platform=metal kubeboot.role=worker kubeboot.server=10.0.0.10:6443 kubeboot.node_name=w1 \
             kubeboot.config=https://boot.example/w1.yaml kubeboot.config.sha256={hash}\n"
        ))
        .unwrap();
        let DocBody::KernelArgs(args) = &u.documents[0].body else {
            panic!()
        };
        assert_eq!(
            args,
            &kv(&[
                ("role", "worker"),
                ("server", "10.0.0.10:6443"),
                ("node-name", "w1")
            ])
        );
        assert_eq!(u.documents[0].field_prefix, "kubeboot.");
        assert_eq!(
            u.config_urls,
            vec![ConfigUrl {
                url: "https://boot.example/w1.yaml".into(),
                sha256: Some("a".repeat(64))
            }]
        );
        assert!(u.warnings.is_empty());
    }

    #[test]
    fn envelope_errors_and_warnings() {
        let e = unwrap("kubeboot.config.sha256=abc").unwrap_err().0;
        assert!(e.contains("64 hexadecimal"), "{e}");
        let e = unwrap(&format!("kubeboot.config.sha256={}", "a".repeat(64)))
            .unwrap_err()
            .0;
        assert!(e.contains("without kubeboot.config"), "{e}");
        let e = unwrap("kubeboot.config=ftp://x/y").unwrap_err().0;
        assert!(e.contains("http:// or https://"), "{e}");
        let e = unwrap("kubeboot.config=https://a/b kubeboot.config=https://c/d")
            .unwrap_err()
            .0;
        assert!(e.contains("more than once"), "{e}");
        let u = unwrap("kubeboot.role=worker kubeboot.token=abcdef.0123456789abcdef").unwrap();
        assert_eq!(u.warnings.len(), 1);
        assert!(!u.warnings[0].contains("0123456789abcdef"));
        let u = unwrap("kubeboot.config=http://10.0.0.1/c.yaml").unwrap();
        assert!(u.warnings[0].contains("cannot be verified"));
    }
}
