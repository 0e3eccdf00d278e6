//! `#cloud-config`: the top-level `kubeboot:` mapping, and `write_files`
//! entries for `/etc/kubeboot/config.yaml`, kubeadm configs (Cluster API's
//! `/run/kubeadm/kubeadm.yaml` and friends, or any file whose content is
//! `apiVersion: kubeadm.k8s.io/...`) and files under `/etc/kubernetes/pki/`.
//!
//! `write_files` is decoded as cloud-init decodes it: `encoding` plain,
//! `b64`/`base64`, `gz`/`gzip`, `gz+b64` (and its spellings);
//! `permissions` an octal string such as `'0600'` (default 0644).
//! Other entries are ignored with a warning that names only the path.

use serde_norway::Value;

use super::{DocBody, Document, EnvelopeError, FileRole, Unwrapped, decode};

/// The encodings cloud-init accepts, for messages.
const ENCODINGS: &str =
    "b64, base64, gz, gzip, gz+b64, gz+base64, gzip+b64, gzip+base64, text/plain";

/// Unwraps a cloud-config document (the `#cloud-config` line is a YAML
/// comment, so the whole text is parsed).
pub fn unwrap(text: &str) -> Result<Unwrapped, EnvelopeError> {
    let mut u = Unwrapped::new("cloud-config");
    let root = decode::yaml_value(text).map_err(|e| e.at("cloud-config"))?;
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
                write_file(&mut u, i, entry)?;
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

fn write_file(u: &mut Unwrapped, i: usize, entry: &Value) -> Result<(), EnvelopeError> {
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
    let raw = content_bytes(m.get("content")).map_err(|e| e.at(&place))?;
    let encoding = match m.get("encoding") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(EnvelopeError(format!("{place}: encoding must be a string"))),
    };
    let content = decode_content(raw, &encoding).map_err(|e| e.at(&place))?;
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

/// The `content` value as bytes (a string, or empty).
fn content_bytes(v: Option<&Value>) -> Result<Vec<u8>, EnvelopeError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(_) => Err(EnvelopeError("content must be a string".into())),
    }
}

/// Applies a cloud-init `encoding`.
fn decode_content(raw: Vec<u8>, encoding: &str) -> Result<Vec<u8>, EnvelopeError> {
    match encoding.trim().to_ascii_lowercase().as_str() {
        "" | "text/plain" => Ok(raw),
        "b64" | "base64" => decode::base64(&raw).map_err(|e| e.at("content")),
        // Raw gzip cannot live in a YAML string: cloud-init documents it as a
        // `!!binary` scalar, which serde_norway hands over as its base64 text.
        "gz" | "gzip" => {
            let zipped =
                decode::base64(&raw).map_err(|e| e.at("content (gz needs a !!binary scalar)"))?;
            decode::gunzip(&zipped).map_err(|e| e.at("content"))
        }
        "gz+b64" | "gz+base64" | "gzip+b64" | "gzip+base64" => {
            let zipped = decode::base64(&raw).map_err(|e| e.at("content"))?;
            decode::gunzip(&zipped).map_err(|e| e.at("content"))
        }
        other => Err(EnvelopeError(format!(
            "encoding {} is not one of {ENCODINGS}",
            super::shown_value(other, 16)
        ))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::io::Write;

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
