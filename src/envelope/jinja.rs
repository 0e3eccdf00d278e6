//! Cluster API's `## template: jinja` userdata, rendered without a jinja
//! engine: the few instance-data variables that can be known locally
//! (hostname, default-route IPv4 address) are substituted from
//! [`HostFacts`]; anything else — another variable, a filter, a
//! `{% ... %}` statement, a `{# ... #}` comment — is refused with the line
//! and the variable named, so a template never renders half-right.

use std::net::IpAddr;

use super::EnvelopeError;
use crate::host::HostFacts;

/// True when `line` is cloud-init's jinja header (`## template: jinja`,
/// spaces and case as cloud-init allows them).
pub fn is_header(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("##") else {
        return false;
    };
    let rest = rest.trim().to_ascii_lowercase();
    rest.strip_prefix("template:")
        .is_some_and(|kind| kind.trim() == "jinja")
}

/// What a known variable stands for.
#[derive(Clone, Copy)]
enum Fact {
    Hostname,
    Ipv4,
    Ipv6,
}

/// Variables kubeboot can answer locally, in the spellings cloud-init
/// accepts (`ds.meta_data` keys have their `-` turned into `_` by
/// cloud-init; the bracket forms keep the original key).
const KNOWN: &[(&str, Fact)] = &[
    ("ds.meta_data.local_hostname", Fact::Hostname),
    ("ds.meta_data.hostname", Fact::Hostname),
    ("ds.meta_data['local-hostname']", Fact::Hostname),
    ("ds.meta_data[\"local-hostname\"]", Fact::Hostname),
    ("ds.meta_data['local_hostname']", Fact::Hostname),
    ("ds.meta_data[\"local_hostname\"]", Fact::Hostname),
    ("ds.meta_data['hostname']", Fact::Hostname),
    ("ds.meta_data[\"hostname\"]", Fact::Hostname),
    ("v1.local_hostname", Fact::Hostname),
    ("local_hostname", Fact::Hostname),
    ("ds.meta_data.local_ipv4", Fact::Ipv4),
    ("ds.meta_data['local-ipv4']", Fact::Ipv4),
    ("ds.meta_data[\"local-ipv4\"]", Fact::Ipv4),
    ("ds.meta_data['local_ipv4']", Fact::Ipv4),
    ("ds.meta_data[\"local_ipv4\"]", Fact::Ipv4),
    ("v1.local_ipv4", Fact::Ipv4),
    ("local_ipv4", Fact::Ipv4),
    // cloud-init defines `local-ipv6` in the datasource's meta-data only
    // (VMware guestinfo: the address of the IPv6 default-route interface);
    // there is no v1 or top-level alias, so none is accepted here.
    ("ds.meta_data.local_ipv6", Fact::Ipv6),
    ("ds.meta_data['local-ipv6']", Fact::Ipv6),
    ("ds.meta_data[\"local-ipv6\"]", Fact::Ipv6),
    ("ds.meta_data['local_ipv6']", Fact::Ipv6),
    ("ds.meta_data[\"local_ipv6\"]", Fact::Ipv6),
];

/// Renders a `## template: jinja` document: drops the header line and
/// substitutes the known variables. Line numbers in errors count the
/// header as line 1.
pub fn render(text: &str, facts: &HostFacts) -> Result<String, EnvelopeError> {
    let (first, body) = text.split_once('\n').unwrap_or((text, ""));
    let body_start_line = if is_header(first.trim_end_matches('\r')) {
        2
    } else {
        1
    };
    let body = if body_start_line == 2 { body } else { text };
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    let mut line = body_start_line;
    while let Some(open) = find_open(rest) {
        let (before, tag) = rest.split_at(open);
        line += before.matches('\n').count();
        out.push_str(before);
        let place = format!("jinja template line {line}");
        match &tag[..2] {
            "{%" => {
                return Err(EnvelopeError(format!(
                    "{place}: {{% {} %}} statements are not supported (kubeboot substitutes only {})",
                    statement_keyword(&tag[2..]),
                    known_summary()
                )));
            }
            "{#" => {
                return Err(EnvelopeError(format!(
                    "{place}: {{# ... #}} comments are not supported"
                )));
            }
            _ => {}
        }
        let inner_and_rest = &tag[2..];
        let Some(close) = inner_and_rest.find("}}") else {
            return Err(EnvelopeError(format!(
                "{place}: \"{{{{\" is not closed by \"}}}}\""
            )));
        };
        let expr = &inner_and_rest[..close];
        if expr.contains('\n') {
            return Err(EnvelopeError(format!(
                "{place}: a {{{{ ... }}}} expression spans lines"
            )));
        }
        let value = lookup(expr.trim(), facts).map_err(|e| e.at(&place))?;
        out.push_str(&value);
        rest = &inner_and_rest[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Byte offset of the next `{{`, `{%` or `{#`.
fn find_open(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(1)).find(|&i| b[i] == b'{' && matches!(b[i + 1], b'{' | b'%' | b'#'))
}

/// The first word of a statement (`if`, `for`, `set`), at most 16 safe
/// characters, so a message can name it without echoing the template.
fn statement_keyword(after_open: &str) -> String {
    let word: String = after_open
        .trim_start_matches(['-', '+', ' ', '\t'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(16)
        .collect();
    if word.is_empty() {
        "...".into()
    } else {
        format!("{word} ...")
    }
}

fn known_summary() -> &'static str {
    "{{ ds.meta_data.local_hostname }}, {{ ds.meta_data.hostname }}, {{ v1.local_hostname }}, \
     {{ local_hostname }}, {{ ds.meta_data.local_ipv4 }}, {{ v1.local_ipv4 }}, {{ local_ipv4 }}, \
     {{ ds.meta_data.local_ipv6 }}"
}

/// The value of one `{{ expr }}`.
fn lookup(expr: &str, facts: &HostFacts) -> Result<String, EnvelopeError> {
    let shown: String = expr.chars().take(80).collect();
    let Some((_, fact)) = KNOWN.iter().find(|(k, _)| *k == expr) else {
        return Err(EnvelopeError(format!(
            "variable \"{shown}\" is not known locally; kubeboot substitutes only {}",
            known_summary()
        )));
    };
    match fact {
        Fact::Hostname => {
            let h = facts.hostname().ok_or_else(|| {
                EnvelopeError(format!(
                    "variable \"{shown}\" needs the hostname, which this host does not have"
                ))
            })?;
            if h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
            {
                return Err(EnvelopeError(format!(
                    "variable \"{shown}\": the hostname is not a plain DNS name, refusing to substitute it"
                )));
            }
            Ok(h.to_string())
        }
        Fact::Ipv4 => match facts.default_address() {
            Some(IpAddr::V4(a)) => Ok(a.to_string()),
            _ => Err(EnvelopeError(format!(
                "variable \"{shown}\" needs the IPv4 address of the default-route interface, which is not known"
            ))),
        },
        Fact::Ipv6 => facts.default_ipv6().map(|a| a.to_string()).ok_or_else(|| {
            EnvelopeError(format!(
                "variable \"{shown}\" needs a global IPv6 address on the IPv6 default-route interface, which this host does not have"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts::given(
            Some("cp-0".into()),
            Some("10.0.0.10".parse().unwrap()),
            Some("2001:db8:0:1::10".parse().unwrap()),
        )
    }

    #[test]
    fn header_variants() {
        assert!(is_header("## template: jinja"));
        assert!(is_header("##template:jinja  "));
        assert!(is_header("## Template: Jinja"));
        assert!(!is_header("## template: basic"));
        assert!(!is_header("#cloud-config"));
    }

    #[test]
    fn substitutes_known_variables() {
        let t = "## template: jinja\n#cloud-config\nname: '{{ ds.meta_data.local_hostname }}'\nip: {{v1.local_ipv4}}\nh: {{ ds.meta_data[\"local-hostname\"] }}/{{ local_hostname }}\n";
        let r = render(t, &facts()).unwrap();
        assert_eq!(
            r,
            "#cloud-config\nname: 'cp-0'\nip: 10.0.0.10\nh: cp-0/cp-0\n"
        );
    }

    #[test]
    fn substitutes_the_ipv6_address_in_every_spelling() {
        let t = "## template: jinja\na: {{ ds.meta_data.local_ipv6 }}\nb: '{{ ds.meta_data['local-ipv6'] }}'\nc: {{ ds.meta_data[\"local_ipv6\"] }}\nd: {{ds.meta_data['local_ipv6']}}\ne: {{ ds.meta_data[\"local-ipv6\"] }}\n";
        let r = render(t, &facts()).unwrap();
        assert_eq!(
            r,
            "a: 2001:db8:0:1::10\nb: '2001:db8:0:1::10'\nc: 2001:db8:0:1::10\nd: 2001:db8:0:1::10\ne: 2001:db8:0:1::10\n"
        );
        // The substituted plain scalar is a string to a YAML reader.
        let v: serde_norway::Value = serde_norway::from_str(&r).unwrap();
        assert_eq!(v["a"].as_str(), Some("2001:db8:0:1::10"));
        // Dual stack: IPv4 and IPv6 side by side.
        let r = render(
            "## template: jinja\nips: [{{ ds.meta_data.local_ipv4 }}, '{{ ds.meta_data.local_ipv6 }}']\n",
            &facts(),
        )
        .unwrap();
        assert_eq!(r, "ips: [10.0.0.10, '2001:db8:0:1::10']\n");
        // Names cloud-init does not define stay unknown.
        for name in ["v1.local_ipv6", "local_ipv6", "ds.meta_data.ipv6"] {
            let e = render(
                &format!("## template: jinja\nx: {{{{ {name} }}}}\n"),
                &facts(),
            )
            .unwrap_err()
            .0;
            assert!(
                e.starts_with(&format!(
                    "jinja template line 2: variable \"{name}\" is not known locally"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn refuses_unknown_variables_with_line() {
        let t = "## template: jinja\n#cloud-config\na: 1\nregion: {{ v1.region }}\n";
        let e = render(t, &facts()).unwrap_err().0;
        assert!(
            e.starts_with("jinja template line 4: variable \"v1.region\" is not known locally"),
            "{e}"
        );
        let e = render(
            "## template: jinja\nx: {{ local_hostname | upper }}\n",
            &facts(),
        )
        .unwrap_err()
        .0;
        assert!(
            e.contains("line 2") && e.contains("local_hostname | upper"),
            "{e}"
        );
    }

    #[test]
    fn refuses_statements_and_comments() {
        let e = render("## template: jinja\n#cloud-config\n{% if v1.platform == 'ec2' %}\nsecret: s3cr3t\n{% endif %}\n", &facts())
            .unwrap_err()
            .0;
        assert!(
            e.starts_with("jinja template line 3: {% if ... %} statements are not supported"),
            "{e}"
        );
        assert!(!e.contains("ec2") && !e.contains("s3cr3t"), "{e}");
        let e = render("## template: jinja\n{# note #}\n", &facts())
            .unwrap_err()
            .0;
        assert!(e.contains("line 2") && e.contains("comments"), "{e}");
        let e = render("## template: jinja\na: {{ local_hostname\n", &facts())
            .unwrap_err()
            .0;
        assert!(e.contains("not closed"), "{e}");
    }

    #[test]
    fn missing_facts_are_named() {
        let none = HostFacts::default();
        let e = render("## template: jinja\nn: {{ v1.local_hostname }}\n", &none)
            .unwrap_err()
            .0;
        assert!(e.contains("needs the hostname"), "{e}");
        let v6 = HostFacts::given(
            Some("a".into()),
            Some("fd00::1".parse().unwrap()),
            Some("fd00::1".parse().unwrap()),
        );
        let e = render("## template: jinja\nn: {{ local_ipv4 }}\n", &v6)
            .unwrap_err()
            .0;
        assert!(e.contains("IPv4 address"), "{e}");
        let e = render(
            "## template: jinja\nn: {{ ds.meta_data.local_ipv6 }}\n",
            &none,
        )
        .unwrap_err()
        .0;
        assert!(e.contains("global IPv6 address"), "{e}");
        let odd = HostFacts::given(Some("a: b".into()), None, None);
        let e = render("## template: jinja\nn: {{ local_hostname }}\n", &odd)
            .unwrap_err()
            .0;
        assert!(e.contains("not a plain DNS name"), "{e}");
    }

    #[test]
    fn text_without_tags_is_unchanged_and_crlf_header_works() {
        assert_eq!(
            render("## template: jinja\r\na: {b}\n", &facts()).unwrap(),
            "a: {b}\n"
        );
    }
}
