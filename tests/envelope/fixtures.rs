//! Runs every case under `tests/fixtures/<envelope>/<case>/` through
//! `envelope::unwrap`.
//!
//! A case holds `input*` (the userdata), and either `expected.json` (kind,
//! documents, carried files by path/mode/sha256, config URLs, warnings, all
//! compared exactly) or `error.txt` (the exact error message). An optional
//! `facts.json` sets the host facts (`hostname`, `address`, `ipv6`; default:
//! hostname `node-1`, address `10.0.0.21`, IPv6 address `2001:db8::21`). Every message is also checked to carry no secret.

use std::fs;
use std::path::{Path, PathBuf};

use kubeboot::envelope::{DocBody, Unwrapped, unwrap};
use kubeboot::host::HostFacts;
use serde_json::{Value, json};

/// Strings that stand for secrets in the fixtures; no message may contain them.
const SECRETS: &[&str] = &[
    "0123456789abcdef",
    "PRIVATE KEY",
    "MHcCAQEEIfake",
    "dG9rZW46IHNlY3JldAo",
];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn cases() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for env in fs::read_dir(fixtures_dir()).unwrap() {
        let env = env.unwrap().path();
        if !env.is_dir() {
            continue;
        }
        for case in fs::read_dir(&env).unwrap() {
            out.push(case.unwrap().path());
        }
    }
    out.sort();
    out
}

fn input_of(case: &Path) -> Vec<u8> {
    let mut inputs: Vec<PathBuf> = fs::read_dir(case)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("input")
        })
        .collect();
    assert_eq!(
        inputs.len(),
        1,
        "{}: exactly one input file",
        case.display()
    );
    fs::read(inputs.pop().unwrap()).unwrap()
}

fn facts_of(case: &Path) -> HostFacts {
    match fs::read_to_string(case.join("facts.json")) {
        Ok(t) => {
            let v: Value = serde_json::from_str(&t).unwrap();
            HostFacts::given(
                v["hostname"].as_str().map(str::to_owned),
                v["address"].as_str().map(|a| a.parse().unwrap()),
                v["ipv6"].as_str().map(|a| a.parse().unwrap()),
            )
        }
        Err(_) => HostFacts::given(
            Some("node-1".into()),
            Some("10.0.0.21".parse().unwrap()),
            Some("2001:db8::21".parse().unwrap()),
        ),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The unwrapped result in the fixtures' JSON shape.
fn to_json(u: &Unwrapped) -> Value {
    let documents: Vec<Value> = u
        .documents
        .iter()
        .map(|d| {
            let mut o = json!({"origin": d.origin, "field_prefix": d.field_prefix});
            match &d.body {
                DocBody::Yaml(t) => o["yaml"] = json!(t),
                DocBody::Value(v) => o["value"] = serde_json::to_value(v).unwrap(),
                DocBody::KernelArgs(a) => o["kernel_args"] = json!(a),
            }
            o
        })
        .collect();
    let files: Vec<Value> = u
        .files
        .iter()
        .map(|f| json!({"path": f.path, "mode": format!("{:04o}", f.mode), "sha256": sha256_hex(&f.content)}))
        .collect();
    let urls: Vec<Value> = u
        .config_urls
        .iter()
        .map(|c| json!({"url": c.url, "sha256": c.sha256}))
        .collect();
    json!({"kind": u.kind, "documents": documents, "files": files, "config_urls": urls, "warnings": u.warnings})
}

fn assert_no_secret(case: &Path, text: &str) {
    for s in SECRETS {
        assert!(
            !text.contains(s),
            "{}: message leaks {s:?}: {text}",
            case.display()
        );
    }
}

#[test]
fn every_fixture() {
    let cases = cases();
    assert!(cases.len() >= 30, "fixtures missing: {}", cases.len());
    let (mut positive, mut negative) = (0, 0);
    let mut failures = Vec::new();
    for case in &cases {
        match std::panic::catch_unwind(|| check(case)) {
            Ok(true) => positive += 1,
            Ok(false) => negative += 1,
            Err(_) => failures.push(case.display().to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "failed fixtures (details above): {failures:#?}"
    );
    println!("{positive} positive and {negative} negative fixtures passed");
    assert!(positive >= 10 && negative >= 10);
}

/// Checks one case; true for a positive case, false for a negative one.
fn check(case: &Path) -> bool {
    {
        let input = input_of(case);
        let result = unwrap(&input, &facts_of(case));
        if let Ok(expected) = fs::read_to_string(case.join("expected.json")) {
            let expected: Value = serde_json::from_str(&expected).unwrap();
            let got =
                result.unwrap_or_else(|e| panic!("{}: unexpected error: {e}", case.display()));
            for w in &got.warnings {
                assert_no_secret(case, w);
            }
            assert_no_secret(case, &format!("{:?}", got.files));
            let got = to_json(&got);
            assert_eq!(
                got,
                expected,
                "{}:\n got {}",
                case.display(),
                serde_json::to_string_pretty(&got).unwrap()
            );
            true
        } else {
            let want = fs::read_to_string(case.join("error.txt"))
                .unwrap_or_else(|_| panic!("{}: needs expected.json or error.txt", case.display()));
            let e = match result {
                Err(e) => e.to_string(),
                Ok(u) => panic!("{}: expected an error, got {u:?}", case.display()),
            };
            assert_eq!(e, want.trim_end_matches('\n'), "{}", case.display());
            assert_no_secret(case, &e);
            false
        }
    }
}
