//! `#cloud-config-archive` (and MIME parts of type
//! `text/cloud-config-archive`): a YAML list of parts, each a mapping with
//! `content`, optional `type` and `filename` (and headers), or a bare
//! string standing for its content.
//!
//! Read as cloud-init 22.4 reads it (`UserDataProcessor._explode_archive`):
//! an entry without `type` gets the type its content starts with
//! (`#!` a shell script, `## template: jinja` jinja, `#cloud-config` ...),
//! and `text/cloud-config` when nothing matches. Each entry then becomes a
//! part that cloud-init hands straight to its part handlers, without
//! unpacking it further, so kubeboot reads `text/cloud-config` and
//! `text/jinja2` entries exactly as it reads those MIME parts and ignores
//! every other type with a warning (scripts, boothooks, and also gzip,
//! include lists and nested archives, which cloud-init does not open inside
//! an archive either). Entries are numbered from 0, as `write_files` is.

use serde_norway::Value;

use super::{EnvelopeError, HostFacts, MAX_PARTS, Unwrapped, decode, mime};

/// Content prefixes and the type cloud-init gives an entry without `type`,
/// longest first (cloud-init's `INCLUSION_TYPES_MAP`).
const STARTS: &[(&str, &str)] = &[
    (
        "text/x-shellscript-per-instance",
        "text/x-shellscript-per-instance",
    ),
    ("text/x-shellscript-per-boot", "text/x-shellscript-per-boot"),
    ("text/x-shellscript-per-once", "text/x-shellscript-per-once"),
    ("#cloud-config-archive", "text/cloud-config-archive"),
    ("#cloud-config-jsonp", "text/cloud-config-jsonp"),
    ("## template: jinja", "text/jinja2"),
    ("#cloud-boothook", "text/cloud-boothook"),
    ("#include-once", "text/x-include-once-url"),
    ("#part-handler", "text/part-handler"),
    ("#cloud-config", "text/cloud-config"),
    ("#include", "text/x-include-url"),
    ("#!", "text/x-shellscript"),
];

/// The type cloud-init gives an entry without `type`.
fn type_of_untyped(content: &str) -> &'static str {
    let head: String = content.trim_start().chars().take(40).collect();
    let head = head.to_ascii_lowercase();
    STARTS
        .iter()
        .find(|(prefix, _)| head.starts_with(prefix))
        .map_or("text/cloud-config", |(_, t)| t)
}

/// Unwraps a cloud-config archive; `depth` counts enclosing envelopes.
pub(crate) fn unwrap(
    text: &str,
    facts: &HostFacts,
    depth: usize,
) -> Result<Unwrapped, EnvelopeError> {
    let mut u = Unwrapped::new("cloud-config-archive");
    let entries = match decode::yaml_value(text).map_err(|e| e.at("cloud-config-archive"))? {
        Value::Sequence(s) => s,
        Value::Null => return Ok(u),
        _ => {
            return Err(EnvelopeError(
                "cloud-config-archive: the top level must be a list of parts".into(),
            ));
        }
    };
    if entries.len() > MAX_PARTS {
        return Err(EnvelopeError(format!(
            "cloud-config-archive: {} parts; at most {MAX_PARTS} are accepted",
            entries.len()
        )));
    }
    for (i, entry) in entries.iter().enumerate() {
        let place = format!("cloud-config-archive[{i}]");
        if let Some(found) = entry_contents(entry, facts, depth).map_err(|e| e.at(&place))? {
            u.absorb_part(found, &place)?;
        }
    }
    Ok(u)
}

/// What one entry holds; `Ok(None)` for an empty one.
fn entry_contents(
    entry: &Value,
    facts: &HostFacts,
    depth: usize,
) -> Result<Option<Unwrapped>, EnvelopeError> {
    let (ctype, content, launch_index) = match entry {
        Value::String(s) => (None, s.as_str(), false),
        Value::Mapping(m) => {
            let ctype = match m.get("type") {
                None | Some(Value::Null) => None,
                Some(Value::String(t)) => Some(t.trim().to_ascii_lowercase()),
                Some(_) => return Err(EnvelopeError("type must be a string".into())),
            };
            let content = match m.get("content") {
                None | Some(Value::Null) => "",
                Some(Value::String(s)) => s.as_str(),
                Some(_) => return Err(EnvelopeError("content must be a string".into())),
            };
            (ctype, content, m.contains_key("launch-index"))
        }
        _ => {
            return Err(EnvelopeError(
                "must be a mapping (type, content, filename) or a string".into(),
            ));
        }
    };
    let ctype = match ctype {
        Some(t) => match t.split_once('/') {
            Some((main, sub)) if !main.is_empty() && !sub.is_empty() => t,
            _ => {
                return Err(EnvelopeError(format!(
                    "type {} is not a MIME type such as text/cloud-config",
                    super::shown_value(&t, 16)
                )));
            }
        },
        None => type_of_untyped(content).to_string(),
    };
    if content.trim().is_empty() {
        return Ok(None);
    }
    match ctype.as_str() {
        "text/cloud-config" | "text/jinja2" => {
            if launch_index {
                return Err(EnvelopeError(
                    "launch-index is not supported: kubeboot cannot know the instance's launch \
                     index locally, so it cannot tell whether this part is meant for this node"
                        .into(),
                ));
            }
            mime::config_part(&ctype, content.as_bytes(), facts, depth).map(Some)
        }
        t => Ok(Some(mime::ignored_part(t).unwrap_or_else(|| {
            let mut u = Unwrapped::new(t.to_string());
            u.warnings.push(format!(
                "part of type {} ignored (cloud-init does not open it inside an archive either)",
                mime::shown_type(t)
            ));
            u
        }))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::DocBody;

    fn facts() -> HostFacts {
        HostFacts::given(
            Some("w-2".into()),
            Some("10.0.0.32".parse().unwrap()),
            Some("2001:db8::32".parse().unwrap()),
        )
    }

    #[test]
    fn untyped_entries_get_cloud_inits_type() {
        assert_eq!(type_of_untyped("#cloud-config\na: 1"), "text/cloud-config");
        assert_eq!(type_of_untyped("  #!/bin/sh\n"), "text/x-shellscript");
        assert_eq!(type_of_untyped("## Template: Jinja\n"), "text/jinja2");
        assert_eq!(
            type_of_untyped("#cloud-config-archive\n"),
            "text/cloud-config-archive"
        );
        assert_eq!(
            type_of_untyped("#include-once\n"),
            "text/x-include-once-url"
        );
        assert_eq!(type_of_untyped("#include\n"), "text/x-include-url");
        assert_eq!(type_of_untyped("kubeboot: {}"), "text/cloud-config");
        assert_eq!(type_of_untyped(""), "text/cloud-config");
        assert_eq!(type_of_untyped("ééééé"), "text/cloud-config");
    }

    #[test]
    fn reads_cloud_config_and_jinja_entries_in_order() {
        let text = "#cloud-config-archive\n\
- type: text/x-shellscript\n  content: |\n    #!/bin/sh\n    echo abcdef.0123456789abcdef\n\
- content: |\n    #cloud-config\n    kubeboot:\n      role: worker\n\
- \"## template: jinja\\n#cloud-config\\nwrite_files:\\n- path: /run/kubeadm/kubeadm.yaml\\n  content: 'apiVersion: kubeadm.k8s.io/v1beta4\\n\\n    kind: JoinConfiguration\\n\\n    nodeRegistration: {name: {{ ds.meta_data.local_hostname }}}'\\n\"\n\
- type: text/x-include-url\n  content: http://10.0.0.2/x\n\
- filename: empty.cfg\n";
        let u = unwrap(text, &facts(), 0).unwrap();
        assert_eq!(u.kind, "cloud-config-archive");
        let origins: Vec<&str> = u.documents.iter().map(|d| d.origin.as_str()).collect();
        assert_eq!(
            origins,
            [
                "cloud-config-archive[1] cloud-config kubeboot key",
                "cloud-config-archive[2] write_files[0] /run/kubeadm/kubeadm.yaml"
            ]
        );
        let DocBody::Yaml(y) = &u.documents[1].body else {
            panic!()
        };
        assert!(y.contains("name: w-2"), "{y}");
        assert_eq!(
            u.warnings,
            [
                "cloud-config-archive[0]: text/x-shellscript part ignored: kubeboot does not run or fetch a shell script",
                "cloud-config-archive[3]: part of type text/x-include-url ignored (cloud-init does not open it inside an archive either)"
            ]
        );
    }

    #[test]
    fn malformed_entries_are_named() {
        for (text, want) in [
            (
                "#cloud-config-archive\na: 1\n",
                "cloud-config-archive: the top level must be a list of parts",
            ),
            (
                "#cloud-config-archive\n- 3\n",
                "cloud-config-archive[0]: must be a mapping (type, content, filename) or a string",
            ),
            (
                "#cloud-config-archive\n- {type: [x], content: a}\n",
                "cloud-config-archive[0]: type must be a string",
            ),
            (
                "#cloud-config-archive\n- {content: {a: 1}}\n",
                "cloud-config-archive[0]: content must be a string",
            ),
            (
                "#cloud-config-archive\n- {type: cloud-config, content: a}\n",
                "cloud-config-archive[0]: type \"cloud-config\" is not a MIME type such as text/cloud-config",
            ),
            (
                "#cloud-config-archive\n- {type: text/, content: a}\n",
                "cloud-config-archive[0]: type \"text/\" is not a MIME type",
            ),
            (
                "#cloud-config-archive\n- {content: \"kubeboot: 3\"}\n",
                "cloud-config-archive[0]: cloud-config: kubeboot: must be a mapping",
            ),
            (
                "#cloud-config-archive\n- {launch-index: 1, content: \"kubeboot: {role: worker}\"}\n",
                "cloud-config-archive[0]: launch-index is not supported",
            ),
            ("#cloud-config-archive\n[", "cloud-config-archive: "),
        ] {
            let e = unwrap(text, &facts(), 0).unwrap_err().0;
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
        // launch-index on a part kubeboot ignores anyway is fine.
        let u = unwrap(
            "#cloud-config-archive\n- {launch-index: 1, type: text/x-shellscript, content: \"#!/bin/sh\"}\n",
            &facts(),
            0,
        )
        .unwrap();
        assert_eq!(u.warnings.len(), 1);
    }

    #[test]
    fn duplicate_pki_files_across_entries_are_refused() {
        let e = unwrap(
            "#cloud-config-archive\n- \"write_files: [{path: /etc/kubernetes/pki/ca.crt, content: X}]\"\n- \"write_files: [{path: /etc/kubernetes/pki/ca.crt, content: Y}]\"\n",
            &facts(),
            0,
        )
        .unwrap_err()
        .0;
        assert_eq!(
            e,
            "cloud-config-archive[1]: /etc/kubernetes/pki/ca.crt is also carried by an earlier part"
        );
    }
}
