//! The cloud-config archive fixtures against real cloud-init (Debian
//! package `cloud-init`, 22.4 here): cloud-init's own `UserDataProcessor`
//! explodes each archive into parts, and the test checks that
//! - the part types cloud-init assigns are the ones kubeboot assumes (typed
//!   entries, and untyped ones sniffed by their first line);
//! - every part kubeboot treats as ignored is one cloud-init gives a type
//!   kubeboot does not read, and no `text/cloud-config`/`text/jinja2` part
//!   is ignored by kubeboot;
//! - every `text/cloud-config` part passes `cloud-init schema --config-file`.
//!
//! `cloud-init schema` itself refuses the archive format ("Cloud-config is
//! not a YAML dict"), hence the per-part validation. A missing cloud-init
//! fails the test: it is a required test tool (see `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use kubeboot::envelope::unwrap;
use kubeboot::host::HostFacts;

/// cloud-init's Python (its module lives in the system Python's dist-packages).
const PYTHON: &str = "/usr/bin/python3";

const EXPLODE: &str = r#"
import base64, json, sys
from cloudinit import helpers, user_data
msg = user_data.UserDataProcessor(helpers.Paths({})).process(open(sys.argv[1], "rb").read())
for part in msg.walk():
    if part.get_content_maintype() == "multipart":
        continue
    payload = part.get_payload(decode=True) or b""
    print(json.dumps([part.get_content_type(), base64.b64encode(payload).decode()]))
"#;

fn fixture(case: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(case);
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("input")
        })
        .unwrap_or_else(|| panic!("{}: no input", dir.display()))
}

/// The parts cloud-init makes of `input`: (content type, payload).
fn explode(input: &Path) -> Vec<(String, Vec<u8>)> {
    let out = Command::new(PYTHON)
        .args(["-c", EXPLODE])
        .arg(input)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON} (needed with cloud-init): {e}"));
    assert!(
        out.status.success(),
        "cloud-init's UserDataProcessor failed on {} (is the Debian package cloud-init installed?): {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (t, b): (String, String) = serde_json::from_str(l).unwrap();
            (
                t,
                base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
            )
        })
        .collect()
}

/// Runs `cloud-init schema` on one cloud-config part.
fn schema_check(label: &str, payload: &[u8]) {
    let dir = std::env::temp_dir().join(format!("kubeboot-archive-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.yaml", label.replace(['/', '[', ']', ' '], "_")));
    // cloud-init's cloud-config handler reads a part without the header;
    // `cloud-init schema` insists on it.
    let mut text = payload.to_vec();
    if !text.starts_with(b"#cloud-config") {
        text.splice(0..0, b"#cloud-config\n".iter().copied());
    }
    std::fs::write(&file, &text).unwrap();
    let out = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&file)
        .output()
        .expect("cloud-init (Debian package cloud-init) must be installed");
    assert!(
        out.status.success(),
        "{label}: cloud-init schema refused the part: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&file);
}

fn facts() -> HostFacts {
    HostFacts::given(
        Some("node-6".into()),
        Some("10.0.0.21".parse().unwrap()),
        Some("fd00:10::21".parse().unwrap()),
    )
}

/// Types kubeboot reads in an archive; everything else is ignored.
const READ: &[&str] = &["text/cloud-config", "text/jinja2"];

fn check(case: &str, want_types: &[&str], top_level_archive: bool) {
    let input = fixture(case);
    let parts = explode(&input);
    let types: Vec<&str> = parts.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, want_types, "{case}: cloud-init's part types");
    for (i, (t, payload)) in parts.iter().enumerate() {
        if t == "text/cloud-config" && !payload.iter().all(u8::is_ascii_whitespace) {
            schema_check(&format!("{case} part {i}"), payload);
        }
    }
    let u = unwrap(&std::fs::read(&input).unwrap(), &facts()).unwrap();
    if top_level_archive {
        for (i, t) in types.iter().enumerate() {
            let prefix = format!("cloud-config-archive[{i}]: ");
            let ignored = u.warnings.iter().any(|w| {
                w.strip_prefix(&prefix).is_some_and(|rest| {
                    rest.starts_with(&format!("{t} part ignored"))
                        || rest.starts_with(&format!("part of type {t} ignored"))
                })
            });
            assert_eq!(
                ignored,
                !READ.contains(t),
                "{case}: entry {i} ({t}): kubeboot's warnings {:?}",
                u.warnings
            );
        }
    }
    println!(
        "{case}: cloud-init parts {types:?}; kubeboot found {} document(s)",
        u.documents.len()
    );
}

#[test]
fn archive_parts_are_typed_as_cloud_init_types_them() {
    check(
        "cloud-config-archive/parts",
        &[
            "text/x-shellscript",
            "text/cloud-config",
            "text/cloud-boothook",
            "text/cloud-config",
            "text/x-include-url",
            "text/cloud-config",
        ],
        true,
    );
}

#[test]
fn jinja_archive_entry() {
    check("cloud-config-archive/jinja-ipv6", &["text/jinja2"], true);
}

#[test]
fn archive_inside_mime() {
    check(
        "mime/archive-part",
        &["text/x-shellscript", "text/cloud-config"],
        false,
    );
}
