//! MIME multipart userdata (what `cloud-init devel make-mime`, Terraform's
//! `cloudinit_config` and many consoles produce): every leaf part is
//! unwrapped by its Content-Type, after its Content-Transfer-Encoding
//! (base64, quoted-printable) is undone by `mailparse`.
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
    let mail =
        mailparse::parse_mail(bytes).map_err(|e| EnvelopeError(format!("MIME userdata: {e}")))?;
    let mut leaves = Vec::new();
    collect_leaves(&mail, &mut leaves);
    if leaves.len() > MAX_PARTS {
        return Err(EnvelopeError(format!(
            "MIME userdata: {} parts; at most {MAX_PARTS} are accepted",
            leaves.len()
        )));
    }
    let mut u = Unwrapped::new("MIME multipart");
    for (i, part) in leaves.into_iter().enumerate() {
        let place = format!("MIME part {}", i + 1);
        if let Some(found) = part_contents(part, facts, depth).map_err(|e| e.at(&place))? {
            u.absorb_part(found, &place)?;
        }
    }
    Ok(u)
}

/// The non-multipart parts, depth first (a single-part message is its own leaf).
fn collect_leaves<'a>(
    m: &'a mailparse::ParsedMail<'a>,
    out: &mut Vec<&'a mailparse::ParsedMail<'a>>,
) {
    if m.ctype
        .mimetype
        .to_ascii_lowercase()
        .starts_with("multipart/")
    {
        for s in &m.subparts {
            collect_leaves(s, out);
        }
    } else {
        out.push(m);
    }
}

/// What one leaf part holds; `Ok(None)` for an empty part.
fn part_contents(
    part: &mailparse::ParsedMail<'_>,
    facts: &HostFacts,
    depth: usize,
) -> Result<Option<Unwrapped>, EnvelopeError> {
    let ctype = part.ctype.mimetype.to_ascii_lowercase();
    if let Some(u) = ignored_part(&ctype) {
        return Ok(Some(u));
    }
    let body = part
        .get_body_raw()
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
        HostFacts {
            hostname: Some("w-1".into()),
            default_address: Some("10.0.0.31".parse().unwrap()),
            default_ipv6: None,
        }
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
