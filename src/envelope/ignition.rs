//! Ignition v3 configs (spec 3.0.0–3.5.0, as Fedora CoreOS, Flatcar and
//! Cluster API's Ignition bootstrap format write them): `storage.files[]`
//! entries for `/etc/kubeboot/config.yaml`, kubeadm configs and files
//! under `/etc/kubernetes/pki/`.
//!
//! `contents.source` must be a `data:` URL (base64 or percent-encoded),
//! optionally with `contents.compression: gzip`. For a config file an
//! `http://`/`https://` source becomes a [`ConfigUrl`] (with a `sha256-`
//! verification hash carried as its pin); every other scheme (s3://,
//! gs://, tftp://, arn:) is refused for files kubeboot reads, because
//! kubeboot runs without Ignition's cloud credentials. `mode` is the
//! decimal integer Ignition uses (420 = 0644, the default).

use serde_json::Value;

use super::{ConfigUrl, EnvelopeError, FileRole, Unwrapped, decode};

/// Spec versions kubeboot reads.
pub const SUPPORTED_VERSIONS: &[&str] = &["3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0"];

/// True when JSON text names an `"ignition"` key: sent to this envelope so
/// a malformed Ignition config gets a JSON error, not a YAML one.
pub(crate) fn looks_like_ignition(text: &[u8]) -> bool {
    text.windows(10).any(|w| w == b"\"ignition\"")
}

/// Unwraps an Ignition config.
pub fn unwrap(bytes: &[u8]) -> Result<Unwrapped, EnvelopeError> {
    let root: Value = serde_json::from_slice(bytes).map_err(|e| {
        EnvelopeError(format!(
            "ignition: invalid JSON at line {} column {} ({})",
            e.line(),
            e.column(),
            kind(&e)
        ))
    })?;
    let Value::Object(root) = root else {
        return Err(EnvelopeError(
            "ignition: the top level must be an object".into(),
        ));
    };
    let version = root
        .get("ignition")
        .and_then(|i| i.get("version"))
        .and_then(Value::as_str)
        .ok_or_else(|| EnvelopeError("ignition.version: missing or not a string".into()))?;
    if !SUPPORTED_VERSIONS.contains(&version) {
        let shown = super::shown_value(version, 20);
        let why = if version.starts_with("2.") || version.starts_with("1.") {
            "spec 1.x/2.x configs must be translated to spec 3 (e.g. with ignition-config-transpiler or butane)"
        } else if version.contains("experimental") {
            "experimental spec versions are not accepted"
        } else {
            "unknown spec version"
        };
        return Err(EnvelopeError(format!(
            "ignition.version: {shown} is not supported ({why}); kubeboot reads {}",
            SUPPORTED_VERSIONS.join(", ")
        )));
    }
    let mut u = Unwrapped::new(format!("ignition {version}"));
    if let Some(cfg) = root.get("ignition").and_then(|i| i.get("config")) {
        if cfg
            .get("replace")
            .is_some_and(|r| !r.is_null() && r.get("source").is_some_and(|s| !s.is_null()))
        {
            return Err(EnvelopeError(
                "ignition.config.replace: this config is replaced by another one, which kubeboot does not fetch; \
                 put the kubeboot files in this config"
                    .into(),
            ));
        }
        if cfg
            .get("merge")
            .and_then(Value::as_array)
            .is_some_and(|m| !m.is_empty())
        {
            u.warnings
                .push("ignition.config.merge: configs to merge are not fetched by kubeboot".into());
        }
    }
    let ignored: Vec<&str> = root
        .keys()
        .map(String::as_str)
        .filter(|k| !matches!(*k, "ignition" | "storage"))
        .collect();
    if !ignored.is_empty() {
        u.warnings.push(format!(
            "ignition: sections ignored by kubeboot: {}",
            ignored.join(", ")
        ));
    }
    let files = match root.get("storage") {
        None | Some(Value::Null) => return Ok(u),
        Some(Value::Object(s)) => match s.get("files") {
            None | Some(Value::Null) => return Ok(u),
            Some(Value::Array(f)) => f,
            Some(_) => {
                return Err(EnvelopeError(
                    "ignition storage.files: must be an array".into(),
                ));
            }
        },
        Some(_) => return Err(EnvelopeError("ignition storage: must be an object".into())),
    };
    for (i, f) in files.iter().enumerate() {
        file(&mut u, i, f)?;
    }
    Ok(u)
}

/// A serde_json error's category (its message may quote input).
fn kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "wrong type",
        serde_json::error::Category::Eof => "unexpected end of input",
    }
}

fn file(u: &mut Unwrapped, i: usize, f: &Value) -> Result<(), EnvelopeError> {
    let at = format!("ignition storage.files[{i}]");
    let Value::Object(f) = f else {
        return Err(EnvelopeError(format!("{at}: must be an object")));
    };
    let path = f
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| EnvelopeError(format!("{at}.path: missing or not a string")))?;
    super::check_carried_path(path).map_err(|e| e.at(format!("{at}.path")))?;
    let shown: String = path
        .chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let mode = match f.get("mode") {
        None | Some(Value::Null) => 0o644,
        Some(m) => match m.as_u64() {
            Some(m) if m <= 0o7777 => m as u32,
            _ => {
                return Err(EnvelopeError(format!(
                    "{at}.mode: must be a decimal integer from 0 to 4095 (0o7777)"
                )));
            }
        },
    };
    let contents = match f.get("contents") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => Some(c),
        Some(_) => return Err(EnvelopeError(format!("{at}.contents: must be an object"))),
    };
    let source = match contents.and_then(|c| c.get("source")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            return Err(EnvelopeError(format!(
                "{at}.contents.source: must be a string"
            )));
        }
    };
    let compression = match contents.and_then(|c| c.get("compression")) {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) if s.is_empty() || s == "gzip" => s.as_str(),
        Some(_) => {
            return Err(EnvelopeError(format!(
                "{at}.contents.compression: must be \"gzip\" or empty"
            )));
        }
    };
    let appends = f
        .get("append")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let by_path = super::file_role(path, b"");
    let Some(source) = source else {
        return super::carry(
            u,
            &format!("{at} ({shown})"),
            format!("{at} {path}"),
            path,
            Vec::new().into(),
            mode,
        );
    };
    if source.starts_with("data:") {
        let data = data_url(source).map_err(|e| e.at(format!("{at}.contents.source")))?;
        let content = if compression == "gzip" {
            decode::gunzip(&data).map_err(|e| e.at(format!("{at}.contents (compression gzip)")))?
        } else {
            data
        };
        if appends && super::file_role(path, &content) != FileRole::Other {
            return Err(EnvelopeError(format!(
                "{at}.append: appending is not supported for a file kubeboot reads"
            )));
        }
        return super::carry(
            u,
            &format!("{at} ({shown})"),
            format!("{at} {path}"),
            path,
            content.into(),
            mode,
        );
    }
    let scheme: String = source
        .split(':')
        .next()
        .unwrap_or("")
        .chars()
        .take(16)
        .collect();
    match by_path {
        FileRole::Other => {
            u.warnings.push(format!(
                "{at} ({shown}): ignored (a {scheme}: source that kubeboot does not read)"
            ));
            Ok(())
        }
        FileRole::Pki => Err(EnvelopeError(format!(
            "{at}.contents.source: a {scheme}: source for a PKI file; kubeboot reads PKI files only from data: URLs"
        ))),
        FileRole::KubebootConfig | FileRole::KubeadmConfig => {
            if !(source.starts_with("https://") || source.starts_with("http://")) {
                return Err(EnvelopeError(format!(
                    "{at}.contents.source: kubeboot fetches config files only from data:, http:// and https:// \
                     URLs, not {scheme}:"
                )));
            }
            if compression == "gzip" {
                return Err(EnvelopeError(format!(
                    "{at}.contents.compression: gzip is not supported for a remote config file"
                )));
            }
            let sha256 = verification_sha256(contents.and_then(|c| c.get("verification")))
                .map_err(|e| e.at(format!("{at}.contents.verification.hash")))?;
            u.config_urls.push(ConfigUrl {
                url: source.to_string(),
                sha256,
            });
            Ok(())
        }
    }
}

/// Decodes a `data:` URL (base64 or percent-encoded), without echoing it.
fn data_url(source: &str) -> Result<Vec<u8>, EnvelopeError> {
    let url = data_url::DataUrl::process(source)
        .map_err(|e| EnvelopeError(format!("not a valid data: URL ({e})")))?;
    let (body, _fragment) = url
        .decode_to_vec()
        .map_err(|_| EnvelopeError("the data: URL's base64 body is invalid".into()))?;
    Ok(body)
}

/// `sha256-<hex>` becomes a pin; `sha512-` cannot be carried and is refused
/// rather than dropped (dropping a pin would weaken the config).
fn verification_sha256(v: Option<&Value>) -> Result<Option<String>, EnvelopeError> {
    let hash = match v.and_then(|v| v.get("hash")) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(h)) => h,
        Some(_) => return Err(EnvelopeError("must be a string".into())),
    };
    match hash.strip_prefix("sha256-") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(Some(hex.to_ascii_lowercase())),
        Some(_) => Err(EnvelopeError("sha256- must be followed by 64 hexadecimal digits".into())),
        None => Err(EnvelopeError(
            "kubeboot pins remote configs by sha256 only; use a sha256-<hex> hash (spec 3.2.0 and later)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::DocBody;
    use base64::Engine;

    fn cfg(version: &str, files: &str) -> String {
        format!(r#"{{"ignition":{{"version":"{version}"}},"storage":{{"files":[{files}]}}}}"#)
    }

    #[test]
    fn base64_and_percent_encoded_data_urls() {
        let b = base64::engine::general_purpose::STANDARD
            .encode("apiVersion: kubeboot.dev/v1alpha1\nrole: worker\n");
        let c = cfg(
            "3.3.0",
            &format!(
                r#"{{"path":"/etc/kubeboot/config.yaml","mode":384,"contents":{{"source":"data:;base64,{b}"}}}},
                   {{"path":"/run/kubeadm/kubeadm.yaml","contents":{{"source":"data:,apiVersion%3A%20kubeadm.k8s.io%2Fv1beta4%0Akind%3A%20JoinConfiguration%0A"}}}}"#
            ),
        );
        let u = unwrap(c.as_bytes()).unwrap();
        assert_eq!(u.kind, "ignition 3.3.0");
        let texts: Vec<&str> = u
            .documents
            .iter()
            .map(|d| {
                if let DocBody::Yaml(t) = &d.body {
                    t.as_str()
                } else {
                    ""
                }
            })
            .collect();
        assert_eq!(
            texts,
            vec![
                "apiVersion: kubeboot.dev/v1alpha1\nrole: worker\n",
                "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n"
            ]
        );
        assert_eq!(
            u.documents[0].origin,
            "ignition storage.files[0] /etc/kubeboot/config.yaml"
        );
    }

    #[test]
    fn gzip_compression_and_pki_modes() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"-----BEGIN EC PRIVATE KEY-----\n").unwrap();
        let b = base64::engine::general_purpose::STANDARD.encode(e.finish().unwrap());
        let c = cfg(
            "3.4.0",
            &format!(
                r#"{{"path":"/etc/kubernetes/pki/ca.key","mode":384,"contents":{{"compression":"gzip","source":"data:;base64,{b}"}}}}"#
            ),
        );
        let u = unwrap(c.as_bytes()).unwrap();
        assert_eq!(u.files.len(), 1);
        assert_eq!(u.files[0].mode, 0o600);
        assert_eq!(u.files[0].content, b"-----BEGIN EC PRIVATE KEY-----\n");
    }

    #[test]
    fn remote_sources() {
        let hash = "b".repeat(64);
        let c = cfg(
            "3.2.0",
            &format!(
                r#"{{"path":"/etc/kubeboot/config.yaml","contents":{{"source":"https://boot.example/c.yaml","verification":{{"hash":"sha256-{hash}"}}}}}},
                 {{"path":"/etc/motd","contents":{{"source":"s3://bucket/motd"}}}}"#
            ),
        );
        let u = unwrap(c.as_bytes()).unwrap();
        assert_eq!(
            u.config_urls,
            vec![ConfigUrl {
                url: "https://boot.example/c.yaml".into(),
                sha256: Some(hash)
            }]
        );
        assert_eq!(
            u.warnings,
            vec![
                "ignition storage.files[1] (/etc/motd): ignored (a s3: source that kubeboot does not read)"
            ]
        );
        for (files, want) in [
            (
                r#"{"path":"/etc/kubeboot/config.yaml","contents":{"source":"s3://b/c"}}"#,
                "storage.files[0].contents.source: kubeboot fetches config files only from data:",
            ),
            (
                r#"{"path":"/etc/kubernetes/pki/ca.key","contents":{"source":"https://x/ca.key"}}"#,
                "kubeboot reads PKI files only from data: URLs",
            ),
            (
                r#"{"path":"/etc/kubeboot/config.yaml","contents":{"source":"https://x/c","verification":{"hash":"sha512-00"}}}"#,
                "pins remote configs by sha256 only",
            ),
        ] {
            let e = unwrap(cfg("3.3.0", files).as_bytes()).unwrap_err().0;
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn versions() {
        for v in SUPPORTED_VERSIONS {
            assert!(unwrap(cfg(v, "").as_bytes()).is_ok(), "{v}");
        }
        for (v, want) in [
            ("2.3.0", "translated to spec 3"),
            ("3.6.0-experimental", "experimental"),
            ("9.9.9", "unknown spec"),
        ] {
            let e = unwrap(cfg(v, "").as_bytes()).unwrap_err().0;
            assert!(
                e.starts_with("ignition.version:") && e.contains(want),
                "{e}"
            );
        }
        let e = unwrap(br#"{"ignition":{}}"#).unwrap_err().0;
        assert_eq!(e, "ignition.version: missing or not a string");
    }

    #[test]
    fn field_errors_name_the_field() {
        for (files, want) in [
            (
                r#"{"path":"/etc/kubeboot/config.yaml","mode":"0644"}"#,
                "storage.files[0].mode: must be a decimal integer",
            ),
            (
                r#"{"path":"/etc/kubeboot/config.yaml","mode":99999}"#,
                "storage.files[0].mode",
            ),
            (r#"{"mode":420}"#, "storage.files[0].path: missing"),
            (
                r#"{"path":"rel"}"#,
                "storage.files[0].path: path must be absolute",
            ),
            (
                r#"{"path":"/etc/kubeboot/config.yaml","contents":{"source":"data:;base64,@@@"}}"#,
                "storage.files[0].contents.source: the data: URL's base64 body is invalid",
            ),
            (
                r#"{"path":"/etc/kubeboot/config.yaml","contents":{"source":"data:nocomma"}}"#,
                "storage.files[0].contents.source: not a valid data: URL",
            ),
            (
                r#"{"path":"/etc/kubeboot/config.yaml","contents":{"source":"data:,x","compression":"xz"}}"#,
                "compression: must be \"gzip\"",
            ),
            (
                r#"{"path":"/etc/kubeboot/config.yaml","contents":{"source":"data:,x","compression":"gzip"}}"#,
                "(compression gzip): not valid gzip",
            ),
            (
                r#"{"path":"/etc/kubeboot/config.yaml"}"#,
                "config file is empty",
            ),
            (
                r#"{"path":"/etc/kubeboot/config.yaml","contents":{"source":"data:,x"},"append":[{"source":"data:,y"}]}"#,
                "append: appending is not supported",
            ),
            (r#"3"#, "storage.files[0]: must be an object"),
        ] {
            let e = unwrap(cfg("3.3.0", files).as_bytes()).unwrap_err().0;
            assert!(e.contains(want), "{files}: {e}");
        }
        let e = unwrap(br#"{"ignition":{"version":"3.3.0"},"storage":{"files":{}}}"#)
            .unwrap_err()
            .0;
        assert_eq!(e, "ignition storage.files: must be an array");
        let e = unwrap(br#"{"ignition":{"version":"3.3.0"},"#)
            .unwrap_err()
            .0;
        assert!(e.starts_with("ignition: invalid JSON at line 1"), "{e}");
    }

    #[test]
    fn replace_is_refused_merge_and_sections_warned() {
        let e = unwrap(
            br#"{"ignition":{"version":"3.3.0","config":{"replace":{"source":"https://x"}}}}"#,
        )
        .unwrap_err()
        .0;
        assert!(e.starts_with("ignition.config.replace"), "{e}");
        let u = unwrap(br#"{"ignition":{"version":"3.3.0","config":{"merge":[{"source":"https://x"}]}},"systemd":{},"passwd":{}}"#).unwrap();
        assert_eq!(u.warnings.len(), 2);
        assert!(
            u.warnings[1].contains("systemd, passwd") || u.warnings[1].contains("passwd, systemd"),
            "{:?}",
            u.warnings
        );
    }
}
