//! Envelopes: the formats userdata arrives in (cloud-config, cloud-config
//! archive, MIME multipart, gzip, Cluster API `## template: jinja`, Ignition
//! JSON, kernel arguments, a bare config file), unwrapped down to the config documents they carry
//! and the files they ask to be written.
//!
//! Pure: no host access beyond the [`HostFacts`] passed in for Cluster API
//! `## template: jinja` substitution.
//!
//! One function per envelope, one file per envelope; [`unwrap`] sniffs the
//! bytes and the private `dispatch` picks the envelope with one `match`
//! you can read top to bottom. Nested envelopes (gzip around MIME around
//! a jinja cloud-config) go back through `dispatch` with a depth bound.
//!
//! Messages never quote userdata content: they name the envelope, part,
//! entry index and path, and the rule that was broken.

use crate::host::HostFacts;

mod archive;
pub mod cloudconfig;
pub mod cmdline;
mod decode;
pub mod ignition;
mod include;
pub mod jinja;
mod mime;

/// Largest userdata accepted, before and after decompression.
pub const MAX_USERDATA_BYTES: usize = 16 * 1024 * 1024;

/// How many envelopes may be nested (gzip › MIME › jinja › cloud-config is 4).
const MAX_DEPTH: usize = 6;

/// More MIME parts or archive entries than this is not userdata anyone
/// writes; refuse it.
const MAX_PARTS: usize = 1000;

/// What was found inside one piece of userdata.
#[derive(Debug, Default)]
pub struct Unwrapped {
    /// The envelope kind that matched, e.g. `cloud-config`, `ignition 3.4.0`,
    /// `gzip › MIME multipart`.
    pub kind: String,
    /// Config documents, in the order found.
    pub documents: Vec<Document>,
    /// Files the envelope carries that must be on disk before the PKI work
    /// (e.g. Cluster API's CA certs and keys under /etc/kubernetes/pki/).
    pub files: Vec<CarriedFile>,
    /// `kubeboot.config=<url>` references (and remote Ignition sources) that
    /// still have to be fetched.
    pub config_urls: Vec<ConfigUrl>,
    /// Things the user should know (ignored parts, unsupported directives).
    pub warnings: Vec<String>,
}

impl Unwrapped {
    fn new(kind: impl Into<String>) -> Self {
        Unwrapped {
            kind: kind.into(),
            ..Default::default()
        }
    }

    /// Appends everything `other` found; `other.kind` is dropped.
    fn absorb(&mut self, other: Unwrapped) {
        self.documents.extend(other.documents);
        self.files.extend(other.files);
        self.config_urls.extend(other.config_urls);
        self.warnings.extend(other.warnings);
    }

    /// Appends what one part of a MIME message or archive found, `place`
    /// (`MIME part 2`, `cloud-config-archive[1]`) prefixed to its warnings
    /// and document origins. A PKI file carried by two parts is refused.
    fn absorb_part(&mut self, mut found: Unwrapped, place: &str) -> Result<(), EnvelopeError> {
        for f in &found.files {
            if self.files.iter().any(|g| g.path == f.path) {
                return Err(EnvelopeError(format!(
                    "{place}: {} is also carried by an earlier part",
                    f.path
                )));
            }
        }
        found.warnings = found
            .warnings
            .into_iter()
            .map(|w| format!("{place}: {w}"))
            .collect();
        for d in &mut found.documents {
            d.origin = format!("{place} {}", d.origin);
        }
        self.absorb(found);
        Ok(())
    }

    /// True when a config document was carried at one of Cluster API's
    /// kubeadm config paths ([`CLUSTER_API_CONFIG_PATHS`]).
    pub fn from_cluster_api(&self) -> bool {
        self.documents.iter().any(|d| {
            CLUSTER_API_CONFIG_PATHS
                .iter()
                .any(|p| d.origin.ends_with(&format!(" {p}")))
        })
    }

    fn is_empty(&self) -> bool {
        self.documents.is_empty() && self.config_urls.is_empty()
    }
}

/// One config document found in an envelope.
#[derive(Debug, Clone)]
pub struct Document {
    /// Where it came from, for messages: `cloud-config kubeboot key`,
    /// `write_files[3] /run/kubeadm/kubeadm.yaml`, `kernel command line`.
    pub origin: String,
    /// Prefix for field paths in messages (`kubeboot.` inside a cloud-config).
    pub field_prefix: String,
    /// The document itself.
    pub body: DocBody,
}

/// The content of a config document.
#[derive(Debug, Clone)]
pub enum DocBody {
    /// YAML text: a kubeboot NodeConfig or a kubeadm multi-document config.
    Yaml(String),
    /// A kubeboot NodeConfig already parsed as a YAML mapping (the
    /// cloud-config `kubeboot:` key).
    Value(serde_norway::Value),
    /// `kubeboot.*` kernel arguments, key without the `kubeboot.` prefix.
    KernelArgs(Vec<(String, String)>),
}

/// A file an envelope carries (cloud-init `write_files`, Ignition `storage.files`).
#[derive(Clone)]
pub struct CarriedFile {
    /// Absolute host path.
    pub path: String,
    /// Decoded content (may be a private key: never print it).
    pub content: Vec<u8>,
    /// File mode: kubeadm's for PKI files (0600 keys and sa.pub, 0644 certificates).
    pub mode: u32,
}

impl std::fmt::Debug for CarriedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarriedFile")
            .field("path", &self.path)
            .field("bytes", &self.content.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// A config to fetch from a URL (PXE `kubeboot.config=`, or an Ignition
/// `storage.files` entry for a config path whose source is http(s)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigUrl {
    /// The URL (`http://` or `https://`).
    pub url: String,
    /// Optional pinned sha256 of the content, lowercase hex.
    pub sha256: Option<String>,
}

/// Why userdata could not be unwrapped. Always "invalid input".
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnvelopeError(pub String);

impl EnvelopeError {
    /// Prefixes the message with where it happened (`MIME part 2: ...`).
    fn at(self, place: impl std::fmt::Display) -> Self {
        EnvelopeError(format!("{place}: {}", self.0))
    }
}

/// Finds the config documents and carried files inside `bytes`.
///
/// Accepts a bare kubeboot or kubeadm config file, `#cloud-config`,
/// `#cloud-config-archive`, MIME multipart, gzip, Cluster API
/// `## template: jinja`, Ignition 3.0.0–3.5.0 JSON and a kernel command
/// line. Fails when the input is malformed, exceeds [`MAX_USERDATA_BYTES`],
/// names URLs to include (`#include`, `text/x-include-url`), or carries no
/// kubeboot config at all.
pub fn unwrap(bytes: &[u8], facts: &HostFacts) -> Result<Unwrapped, EnvelopeError> {
    if bytes.len() > MAX_USERDATA_BYTES {
        return Err(EnvelopeError(format!(
            "userdata is {} bytes; the limit is {MAX_USERDATA_BYTES} bytes",
            bytes.len()
        )));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(EnvelopeError("userdata is empty".into()));
    }
    let found = dispatch(bytes, facts, 0)?;
    if found.is_empty() {
        let mut msg = format!("{}: carries no kubeboot config", found.kind);
        msg.push_str(
            " (expected a kubeboot: key or a write_files/storage.files entry for /etc/kubeboot/config.yaml \
             or a kubeadm config, a bare kubeboot.dev/kubeadm.k8s.io YAML file, or kubeboot.* kernel arguments)",
        );
        for w in &found.warnings {
            msg.push_str("; ");
            msg.push_str(w);
        }
        return Err(EnvelopeError(msg));
    }
    Ok(found)
}

/// What the first bytes of a piece of userdata say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Gzip,
    Jinja,
    CloudConfig,
    Mime,
    Ignition,
    Script,
    /// `#cloud-config-archive`.
    Archive,
    /// `#include` or `#include-once` (refused).
    Include(&'static str),
    /// A cloud-init format kubeboot does not read (boothooks, part handlers, ...).
    OtherCloudInit(&'static str),
    KernelArgs,
    Yaml,
}

fn sniff(bytes: &[u8]) -> Sniffed {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Sniffed::Gzip;
    }
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let first_line = String::from_utf8_lossy(first_line);
    let first = first_line.trim_end();
    if jinja::is_header(first) {
        return Sniffed::Jinja;
    }
    if first.starts_with("#cloud-config-archive") {
        return Sniffed::Archive;
    }
    if first.starts_with("#cloud-config-jsonp") {
        return Sniffed::OtherCloudInit("#cloud-config-jsonp");
    }
    if first.starts_with("#cloud-config") {
        return Sniffed::CloudConfig;
    }
    for name in ["#include-once", "#include"] {
        if first.starts_with(name) {
            return Sniffed::Include(name);
        }
    }
    for (prefix, name) in [
        ("#cloud-boothook", "#cloud-boothook"),
        ("#part-handler", "#part-handler"),
        ("#upstart-job", "#upstart-job"),
    ] {
        if first.starts_with(prefix) {
            return Sniffed::OtherCloudInit(name);
        }
    }
    if first.starts_with("#!") {
        return Sniffed::Script;
    }
    // cloud-init's own test: a MIME-Version header in the first 4 KiB.
    let head = &text[..text.len().min(4096)];
    if first.to_ascii_lowercase().starts_with("content-type:")
        || head
            .windows(13)
            .any(|w| w.eq_ignore_ascii_case(b"mime-version:"))
    {
        return Sniffed::Mime;
    }
    if text.trim_ascii_start().starts_with(b"{") && ignition::looks_like_ignition(text) {
        return Sniffed::Ignition;
    }
    if cmdline::looks_like_cmdline(text) {
        return Sniffed::KernelArgs;
    }
    Sniffed::Yaml
}

/// Unwraps one piece of userdata of any kind; `depth` counts enclosing envelopes.
fn dispatch(bytes: &[u8], facts: &HostFacts, depth: usize) -> Result<Unwrapped, EnvelopeError> {
    if depth >= MAX_DEPTH {
        return Err(EnvelopeError(format!(
            "envelopes are nested more than {MAX_DEPTH} deep"
        )));
    }
    match sniff(bytes) {
        Sniffed::Gzip => {
            let inner = decode::gunzip(bytes).map_err(|e| e.at("gzip userdata"))?;
            let mut u = dispatch(&inner, facts, depth + 1)?;
            u.kind = format!("gzip › {}", u.kind);
            Ok(u)
        }
        Sniffed::Jinja => {
            let text = decode::utf8(bytes).map_err(|e| e.at("jinja template"))?;
            let rendered = jinja::render(text, facts)?;
            let mut u = dispatch(rendered.as_bytes(), facts, depth + 1)?;
            u.kind = format!("jinja › {}", u.kind);
            Ok(u)
        }
        Sniffed::CloudConfig => {
            let text = decode::utf8(bytes).map_err(|e| e.at("cloud-config"))?;
            cloudconfig::unwrap(text)
        }
        Sniffed::Mime => mime::unwrap(bytes, facts, depth),
        Sniffed::Archive => {
            let text = decode::utf8(bytes).map_err(|e| e.at("cloud-config-archive"))?;
            archive::unwrap(text, facts, depth)
        }
        Sniffed::Include(name) => {
            include::refuse(&format!("{name} userdata"), &String::from_utf8_lossy(bytes))
        }
        Sniffed::Ignition => ignition::unwrap(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)),
        Sniffed::Script => {
            let mut u = Unwrapped::new("shell script");
            u.warnings
                .push("a shell script was ignored: kubeboot does not run scripts".into());
            Ok(u)
        }
        Sniffed::OtherCloudInit(name) => {
            let mut u = Unwrapped::new(name);
            u.warnings.push(format!(
                "{name} userdata was ignored: kubeboot does not read that cloud-init format"
            ));
            Ok(u)
        }
        Sniffed::KernelArgs => {
            let text = decode::utf8(bytes).map_err(|e| e.at("kernel command line"))?;
            cmdline::unwrap(text)
        }
        Sniffed::Yaml => bare_config(bytes),
    }
}

/// A bare config file: a kubeboot NodeConfig or kubeadm multi-document YAML.
fn bare_config(bytes: &[u8]) -> Result<Unwrapped, EnvelopeError> {
    if bytes.contains(&0) {
        return Err(EnvelopeError(
            "userdata is binary data in no known format (not gzip, cloud-config, MIME, Ignition, \
             kernel arguments or a YAML config)"
                .into(),
        ));
    }
    let text = decode::utf8(bytes).map_err(|e| e.at("userdata"))?;
    let docs = decode::yaml_documents(text).map_err(|e| e.at("YAML userdata"))?;
    let mut api_versions = Vec::new();
    let mut has_kubeboot_key = false;
    for doc in &docs {
        if let serde_norway::Value::Mapping(m) = doc {
            if let Some(serde_norway::Value::String(v)) = m.get("apiVersion") {
                api_versions.push(v.clone());
            }
            has_kubeboot_key |= m.contains_key("kubeboot");
        }
    }
    let kubeboot = api_versions.iter().any(|v| v.starts_with("kubeboot.dev/"));
    let kubeadm = api_versions
        .iter()
        .any(|v| v.starts_with("kubeadm.k8s.io/"));
    if !kubeboot && !kubeadm {
        let hint = if has_kubeboot_key {
            "; it has a kubeboot: key, so it is probably a cloud-config missing its first line \"#cloud-config\""
        } else {
            ""
        };
        return Err(EnvelopeError(format!(
            "userdata is not a recognised format: YAML without an apiVersion of kubeboot.dev/... or \
             kubeadm.k8s.io/... (and not #cloud-config, MIME, gzip, Ignition or kernel arguments){hint}"
        )));
    }
    let kind = match (kubeboot, kubeadm) {
        (true, true) => "kubeboot and kubeadm config",
        (true, false) => "kubeboot config",
        _ => "kubeadm config",
    };
    let mut u = Unwrapped::new(kind);
    u.documents.push(Document {
        origin: "userdata (bare config file)".into(),
        field_prefix: String::new(),
        body: DocBody::Yaml(text.strip_prefix('\u{feff}').unwrap_or(text).to_string()),
    });
    Ok(u)
}

/// How a carried file (cloud-init `write_files`, Ignition `storage.files`)
/// is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileRole {
    /// `/etc/kubeboot/config.yaml`.
    KubebootConfig,
    /// A kubeadm config (by path, or by `apiVersion: kubeadm.k8s.io/` content).
    KubeadmConfig,
    /// Under `/etc/kubernetes/pki/`: lands on disk before the PKI work.
    Pki,
    /// Anything else: ignored with a warning.
    Other,
}

/// Where Cluster API's kubeadm bootstrap provider (CABPK) writes the
/// kubeadm config of an init and of a join: a config carried there is
/// Cluster API userdata.
pub const CLUSTER_API_CONFIG_PATHS: [&str; 2] = [
    "/run/kubeadm/kubeadm.yaml",
    "/run/kubeadm/kubeadm-join-config.yaml",
];

/// Paths Cluster API's kubeadm bootstrap provider writes its kubeadm config to.
const KUBEADM_CONFIG_PATHS: &[&str] = &[
    CLUSTER_API_CONFIG_PATHS[0],
    CLUSTER_API_CONFIG_PATHS[1],
    "/tmp/kubeadm.yaml",
    "/tmp/kubeadm-join-config.yaml",
    "/etc/kubeadm.yml",
];

/// The directory whose files are carried to the PKI phase.
const PKI_DIR: &str = "/etc/kubernetes/pki/";

fn file_role(path: &str, content: &[u8]) -> FileRole {
    if path == crate::host::paths::KUBEBOOT_CONFIG_PATH {
        FileRole::KubebootConfig
    } else if path.starts_with(PKI_DIR) {
        FileRole::Pki
    } else if KUBEADM_CONFIG_PATHS.contains(&path) || mentions_kubeadm_api(content) {
        FileRole::KubeadmConfig
    } else {
        FileRole::Other
    }
}

/// True when some top-level YAML line is `apiVersion: kubeadm.k8s.io/...`.
fn mentions_kubeadm_api(content: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(content) else {
        return false;
    };
    text.lines().any(|l| {
        l.strip_prefix("apiVersion:")
            .map(|v| {
                v.trim()
                    .trim_matches(|c| c == '"' || c == '\'')
                    .starts_with("kubeadm.k8s.io/")
            })
            .unwrap_or(false)
    })
}

/// A short user-written value (an encoding name, a mode, a version) as it
/// may appear in a message: quoted when it is at most `max` characters of
/// `[A-Za-z0-9.+/_-]`, otherwise only its length, so that a secret pasted
/// into the wrong field is never echoed.
fn shown_value(v: &str, max: usize) -> String {
    let n = v.chars().count();
    if n <= max
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-./_".contains(&b))
    {
        format!("{v:?}")
    } else {
        format!("(a {n}-character value)")
    }
}

/// kubeadm's mode for a file under the PKI directory, whatever the
/// userdata asks: 0600 for private keys and `sa.pub` (kubeadm writes the
/// service-account public key with the key's mode), 0644 for certificates
/// and anything else (never setuid/setgid/sticky, never group/world-writable).
/// See kubeadm's `pkiutil.WriteKey` / `WritePublicKey` (0600) and
/// `WriteCert` (0644) in cmd/kubeadm/app/util/pkiutil/pki_helpers.go.
fn pki_file_mode(path: &str) -> u32 {
    if path.ends_with(".key") || path.ends_with("/sa.pub") {
        0o600
    } else {
        0o644
    }
}

/// Checks that a carried path is absolute and has no `.`/`..` components.
fn check_carried_path(path: &str) -> Result<(), EnvelopeError> {
    if !path.starts_with('/') {
        return Err(EnvelopeError("path must be absolute".into()));
    }
    if path.split('/').any(|c| c == ".." || c == ".") || path.contains('\0') {
        return Err(EnvelopeError(
            "path must not contain \".\" or \"..\" components".into(),
        ));
    }
    if path.ends_with('/') {
        return Err(EnvelopeError(format!(
            "path {path} ends with \"/\": it names a directory, not a file"
        )));
    }
    if DIRECTORIES_KUBEBOOT_NEEDS.contains(&path) {
        return Err(EnvelopeError(format!(
            "path {path} is a directory kubeboot needs; a file cannot take its place"
        )));
    }
    Ok(())
}

/// Directories kubeboot (like kubeadm) creates and writes into: a carried
/// file may not be written in their place.
const DIRECTORIES_KUBEBOOT_NEEDS: &[&str] = &[
    "/etc/kubernetes",
    "/etc/kubernetes/pki",
    "/etc/kubernetes/pki/etcd",
    "/etc/kubernetes/manifests",
    "/etc/kubeboot",
    "/var/lib/kubelet",
    "/var/lib/kubelet/pki",
    "/var/lib/etcd",
    "/var/lib/kubeboot",
];

/// Collects carried files by role into `u`. `place` names the entry for
/// messages (`write_files[2] (/etc/kubeboot/config.yaml)`), `origin` names
/// it for documents (`write_files[2] /etc/kubeboot/config.yaml`).
fn carry(
    u: &mut Unwrapped,
    place: &str,
    origin: String,
    path: &str,
    content: std::borrow::Cow<'_, [u8]>,
    mode: u32,
) -> Result<(), EnvelopeError> {
    match file_role(path, &content) {
        FileRole::KubebootConfig | FileRole::KubeadmConfig => {
            let text = String::from_utf8(content.into_owned()).map_err(|e| {
                EnvelopeError(format!(
                    "{place}: content is not valid UTF-8 (at byte {})",
                    e.utf8_error().valid_up_to()
                ))
            })?;
            if text.trim().is_empty() {
                return Err(EnvelopeError(format!("{place}: config file is empty")));
            }
            if u.documents
                .iter()
                .any(|d| d.origin.ends_with(&format!(" {path}")))
            {
                return Err(EnvelopeError(format!(
                    "{place}: the same path is given twice"
                )));
            }
            u.documents.push(Document {
                origin,
                field_prefix: String::new(),
                body: DocBody::Yaml(text),
            });
        }
        FileRole::Pki => {
            if content.is_empty() {
                return Err(EnvelopeError(format!("{place}: PKI file is empty")));
            }
            if u.files.iter().any(|f| f.path == path) {
                return Err(EnvelopeError(format!(
                    "{place}: the same path is given twice"
                )));
            }
            let want = pki_file_mode(path);
            if mode != want {
                u.warnings.push(format!(
                    "{place}: mode {mode:04o} set to {want:04o}, kubeadm's mode for {}",
                    if want == 0o600 {
                        "private keys and sa.pub"
                    } else {
                        "certificates"
                    }
                ));
            }
            u.files.push(CarriedFile {
                path: path.to_string(),
                content: content.into_owned(),
                mode: want,
            });
        }
        FileRole::Other => {
            u.warnings.push(format!(
                "{place}: ignored (kubeboot only reads {}, kubeadm configs and files under {PKI_DIR})",
                crate::host::paths::KUBEBOOT_CONFIG_PATH
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts::given(
            Some("node-1".into()),
            Some("10.0.0.21".parse().unwrap()),
            None,
        )
    }

    #[test]
    fn sniffs_each_kind() {
        assert_eq!(sniff(b"\x1f\x8b\x08"), Sniffed::Gzip);
        assert_eq!(
            sniff(b"## template: jinja\n#cloud-config\n"),
            Sniffed::Jinja
        );
        assert_eq!(
            sniff(b"#cloud-config\nkubeboot: {}\n"),
            Sniffed::CloudConfig
        );
        assert_eq!(sniff(b"\xef\xbb\xbf#cloud-config\n"), Sniffed::CloudConfig);
        assert_eq!(sniff(b"#cloud-config-archive\n- a\n"), Sniffed::Archive);
        assert_eq!(sniff(b"#include\nhttp://x\n"), Sniffed::Include("#include"));
        assert_eq!(
            sniff(b"#include-once\nhttp://x\n"),
            Sniffed::Include("#include-once")
        );
        assert_eq!(
            sniff(b"#cloud-boothook\n"),
            Sniffed::OtherCloudInit("#cloud-boothook")
        );
        assert_eq!(
            sniff(b"Content-Type: multipart/mixed; boundary=x\n"),
            Sniffed::Mime
        );
        assert_eq!(sniff(b"From: x\nMIME-Version: 1.0\n"), Sniffed::Mime);
        assert_eq!(sniff(b"#!/bin/sh\necho\n"), Sniffed::Script);
        assert_eq!(
            sniff(br#"{"ignition":{"version":"3.3.0"}}"#),
            Sniffed::Ignition
        );
        assert_eq!(
            sniff(b"ro quiet kubeboot.role=worker\n"),
            Sniffed::KernelArgs
        );
        assert_eq!(
            sniff(b"apiVersion: kubeboot.dev/v1alpha1\nrole: worker\n"),
            Sniffed::Yaml
        );
        assert_eq!(
            sniff(b"{apiVersion: kubeboot.dev/v1alpha1, role: worker}"),
            Sniffed::Yaml
        );
    }

    #[test]
    fn bare_kubeboot_and_kubeadm_configs() {
        let u = unwrap(
            b"apiVersion: kubeboot.dev/v1alpha1\nkind: NodeConfig\nrole: worker\n",
            &facts(),
        )
        .unwrap();
        assert_eq!(u.kind, "kubeboot config");
        assert!(
            matches!(&u.documents[0].body, DocBody::Yaml(t) if t.starts_with("apiVersion: kubeboot.dev/"))
        );
        let u = unwrap(
            b"---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n",
            &facts(),
        )
        .unwrap();
        assert_eq!(u.kind, "kubeadm config");
        assert_eq!(u.documents.len(), 1);
    }

    #[test]
    fn bare_yaml_without_api_version_is_refused_with_a_hint() {
        let e = unwrap(b"kubeboot:\n  role: worker\n", &facts())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing its first line \"#cloud-config\""),
            "{e}"
        );
        let e = unwrap(b"hello: world\n", &facts()).unwrap_err().to_string();
        assert!(e.contains("not a recognised format"), "{e}");
    }

    #[test]
    fn ignition_with_byte_order_mark() {
        let e = unwrap(
            b"\xef\xbb\xbf{\"ignition\":{\"version\":\"3.3.0\"}}",
            &facts(),
        )
        .unwrap_err()
        .0;
        assert!(
            e.starts_with("ignition 3.3.0: carries no kubeboot config"),
            "{e}"
        );
    }

    #[test]
    fn empty_and_oversized_inputs() {
        assert_eq!(
            unwrap(b" \n\t", &facts()).unwrap_err().to_string(),
            "userdata is empty"
        );
        let big = vec![b'a'; MAX_USERDATA_BYTES + 1];
        assert!(
            unwrap(&big, &facts())
                .unwrap_err()
                .to_string()
                .contains("the limit is")
        );
    }

    #[test]
    fn script_only_userdata_says_what_was_ignored() {
        let e = unwrap(b"#!/bin/bash\nkubeadm init\n", &facts())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("shell script: carries no kubeboot config"),
            "{e}"
        );
        assert!(e.contains("kubeboot does not run scripts"), "{e}");
        assert!(!e.contains("kubeadm init"), "{e}");
    }

    #[test]
    fn file_roles() {
        assert_eq!(
            file_role("/etc/kubeboot/config.yaml", b""),
            FileRole::KubebootConfig
        );
        assert_eq!(file_role("/etc/kubernetes/pki/ca.key", b""), FileRole::Pki);
        assert_eq!(
            file_role("/run/kubeadm/kubeadm.yaml", b""),
            FileRole::KubeadmConfig
        );
        assert_eq!(
            file_role(
                "/root/k.yaml",
                b"---\napiVersion: \"kubeadm.k8s.io/v1beta3\"\n"
            ),
            FileRole::KubeadmConfig
        );
        assert_eq!(
            file_role("/root/k.yaml", b"  apiVersion: kubeadm.k8s.io/v1beta3\n"),
            FileRole::Other
        );
        assert_eq!(file_role("/etc/hosts", b"127.0.0.1 x\n"), FileRole::Other);
    }

    #[test]
    fn carried_paths_must_be_clean() {
        assert!(check_carried_path("/etc/kubernetes/pki/ca.crt").is_ok());
        assert!(check_carried_path("etc/x").is_err());
        assert!(check_carried_path("/etc/kubernetes/pki/../../shadow").is_err());
        assert!(check_carried_path("/etc/./x").is_err());
    }
}
