//! Malformed-input sweep for `envelope::unwrap`: truncated examples and
//! fixtures, binary noise, a 64 MiB input, deep nesting (YAML, JSON, MIME,
//! gzip, cloud-config archives inside MIME inside jinja), YAML alias bombs,
//! gzip bombs, wrong types (archive entries too), include lists, invalid
//! UTF-8, unknown Ignition versions. Every case must return (an error where the
//! input is invalid) without panicking; no case may leak the marker secret.
//!
//! Durations are printed (`--nocapture`) for the docs, never asserted.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use kubeboot::envelope::{MAX_USERDATA_BYTES, unwrap};
use kubeboot::host::HostFacts;

const SECRET: &str = "abcdef.0123456789abcdef";

fn facts() -> HostFacts {
    HostFacts::given(
        Some("node-1".into()),
        Some("10.0.0.21".parse().unwrap()),
        Some("2001:db8::21".parse().unwrap()),
    )
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Unwraps `input`, expecting an error whose text contains `want`.
fn expect_err(label: &str, input: &[u8], want: &str) {
    let t = Instant::now();
    let r = unwrap(input, &facts());
    let took = t.elapsed();
    match r {
        Ok(u) => panic!("{label}: expected an error, got {u:?}"),
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains(want),
                "{label}: error {e:?} does not contain {want:?}"
            );
            assert!(!e.contains(SECRET), "{label}: leaks the secret: {e}");
            println!(
                "{label}: {} bytes rejected in {took:?}: {}",
                input.len(),
                shorten(&e)
            );
        }
    }
}

fn shorten(s: &str) -> String {
    if s.len() > 110 {
        format!("{}...", &s[..s.floor_char_boundary(110)])
    } else {
        s.to_string()
    }
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn all_inputs() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for e in std::fs::read_dir(root.join("image/examples")).unwrap() {
        let p = e.unwrap().path();
        out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
    }
    for env in std::fs::read_dir(root.join("tests/fixtures")).unwrap() {
        let env = env.unwrap().path();
        if !env.is_dir() {
            continue;
        }
        for case in std::fs::read_dir(&env).unwrap() {
            for f in std::fs::read_dir(case.unwrap().path()).unwrap() {
                let p = f.unwrap().path();
                if p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("input")
                {
                    let data = std::fs::read(&p).unwrap();
                    if data.len() < 1024 * 1024 {
                        out.push((p.display().to_string(), data));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn truncated_inputs_never_panic() {
    let t = Instant::now();
    let mut calls = 0;
    for (name, data) in all_inputs() {
        let step = (data.len() / 300).max(1);
        let mut cut = 0;
        while cut < data.len() {
            // Ok or Err are both fine for a prefix; a panic fails the test.
            if let Err(e) = unwrap(&data[..cut], &facts()) {
                assert!(!e.to_string().contains(SECRET), "{name} cut at {cut}: {e}");
            }
            calls += 1;
            cut += step;
        }
    }
    println!("{calls} truncated inputs in {:?}", t.elapsed());
}

#[test]
fn bit_flipped_inputs_never_panic() {
    let mut rng = Rng(0x5eed);
    let mut calls = 0;
    for (name, data) in all_inputs() {
        for _ in 0..40 {
            let mut d = data.clone();
            for _ in 0..=(rng.next() % 4) {
                if d.is_empty() {
                    break;
                }
                let i = (rng.next() as usize) % d.len();
                d[i] ^= 1 << (rng.next() % 8);
            }
            if let Err(e) = unwrap(&d, &facts()) {
                assert!(!e.to_string().contains(SECRET), "{name}: {e}");
            }
            calls += 1;
        }
    }
    println!("{calls} bit-flipped inputs");
}

#[test]
fn binary_noise() {
    let mut rng = Rng(42);
    for n in [1usize, 2, 3, 10, 100, 4096, 1 << 20] {
        let noise = rng.bytes(n);
        let _ = unwrap(&noise, &facts());
        let mut with_magic = vec![0x1f, 0x8b];
        with_magic.extend(&noise);
        expect_err(
            &format!("gzip magic + {n} noise bytes"),
            &with_magic,
            "gzip",
        );
        let mut cc = b"#cloud-config\n".to_vec();
        cc.extend(&noise);
        let _ = unwrap(&cc, &facts());
    }
    let mut zeros = b"apiVersion: kubeboot.dev/v1alpha1\n".to_vec();
    zeros.extend([0u8; 64]);
    expect_err("NUL bytes", &zeros, "binary data");
}

#[test]
fn huge_inputs() {
    expect_err("64 MiB", &vec![b'#'; 64 * 1024 * 1024], "the limit is");
    expect_err(
        "limit + 1",
        &vec![b' '; MAX_USERDATA_BYTES + 1],
        "the limit is",
    );
    let mut at_limit = b"#cloud-config\nkubeboot: {role: worker}\nx: ".to_vec();
    at_limit.resize(MAX_USERDATA_BYTES, b'a');
    let t = Instant::now();
    let u = unwrap(&at_limit, &facts()).unwrap();
    println!("16 MiB cloud-config accepted in {:?}", t.elapsed());
    assert_eq!(u.documents.len(), 1);
    // gzip bombs, plain and nested
    let bomb = gz(&vec![0u8; MAX_USERDATA_BYTES + 1]);
    expect_err("gzip bomb", &bomb, "gzip bomb");
    expect_err("gzip of a gzip bomb", &gz(&bomb), "gzip bomb");
    let cc = format!(
        "#cloud-config\nwrite_files:\n- path: /etc/kubeboot/config.yaml\n  encoding: gz+b64\n  content: {}\n",
        b64(&bomb)
    );
    expect_err(
        "write_files gzip bomb",
        cc.as_bytes(),
        "write_files[0] (/etc/kubeboot/config.yaml): content: decompresses to more than",
    );
    // gzip nested beyond the envelope depth
    let mut nested = b"#cloud-config\nkubeboot: {role: worker}\n".to_vec();
    for _ in 0..10 {
        nested = gz(&nested);
    }
    expect_err("gzip nested 10 deep", &nested, "nested more than");
}

#[test]
fn deep_nesting() {
    let deep_yaml = format!(
        "#cloud-config\nkubeboot: {}1{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    expect_err(
        "YAML nested 100000 deep",
        deep_yaml.as_bytes(),
        "nest more than 1000 levels deep",
    );
    let deep_map = format!(
        "#cloud-config\nkubeboot: {}{}\n",
        "{a: ".repeat(50_000),
        "}".repeat(50_000)
    );
    expect_err(
        "YAML mappings nested 50000 deep",
        deep_map.as_bytes(),
        "nest more than 1000 levels deep",
    );
    let all_brackets = format!(
        "#cloud-config\nkubeboot: {}",
        "[".repeat(MAX_USERDATA_BYTES - 30)
    );
    expect_err(
        "16 MiB of [",
        all_brackets.as_bytes(),
        "nest more than 1000 levels deep",
    );
    let just_under = format!(
        "#cloud-config\nkubeboot: {}1{}\n",
        "[".repeat(1000),
        "]".repeat(1000)
    );
    expect_err(
        "YAML nested 1000 deep",
        just_under.as_bytes(),
        "recursion limit exceeded",
    );
    let mut block = String::from("#cloud-config\nkubeboot:\n");
    for i in 1..3000 {
        block.push_str(&" ".repeat(i));
        block.push_str("a:\n");
    }
    expect_err(
        "block mappings nested 3000 deep",
        block.as_bytes(),
        "recursion limit exceeded",
    );
    let deep_json = format!(
        r#"{{"ignition":{{"version":"3.3.0"}},"x":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    expect_err(
        "JSON nested 100000 deep",
        deep_json.as_bytes(),
        "ignition: invalid JSON",
    );
    let mut mime = String::from("#cloud-config\nkubeboot: {role: worker}\n");
    for i in 0..150 {
        mime = format!(
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n{}\n--b{i}--\n",
            if i == 0 {
                format!("Content-Type: text/cloud-config\n\n{mime}")
            } else {
                mime
            }
        );
    }
    expect_err("MIME nested 150 deep", mime.as_bytes(), "MIME userdata");
    let archive = format!("#cloud-config-archive\n{}", "- '#!/bin/sh'\n".repeat(1001));
    expect_err(
        "archive with 1001 entries",
        archive.as_bytes(),
        "cloud-config-archive: 1001 parts; at most 1000 are accepted",
    );
    // Archives and MIME messages inside each other (an archive's jinja
    // entry is dispatched again once rendered): the depth bound holds.
    let mut nested = String::from("#cloud-config\nkubeboot: {role: worker}\n");
    for i in 0..8 {
        let entry = format!(
            "- {{type: text/jinja2, content: {}}}\n",
            serde_json::to_string(&format!("## template: jinja\n{nested}")).unwrap()
        );
        nested = if i % 2 == 0 {
            format!("#cloud-config-archive\n{entry}")
        } else {
            format!(
                "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\nContent-Type: text/cloud-config-archive\n\n{entry}--b{i}--\n"
            )
        };
        if i == 1 {
            let u = unwrap(nested.as_bytes(), &facts()).unwrap();
            assert_eq!(
                u.documents[0].origin,
                "MIME part 1 cloud-config-archive[0] cloud-config-archive[0] cloud-config kubeboot key"
            );
        }
    }
    expect_err(
        "archives and MIME nested 8 deep",
        nested.as_bytes(),
        "envelopes are nested more than 6 deep",
    );
    let mut many =
        String::from("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"q\"\n\n");
    for _ in 0..5000 {
        many.push_str("--q\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n");
    }
    many.push_str("--q--\n");
    expect_err(
        "MIME with 5000 parts",
        many.as_bytes(),
        "at most 1000 are accepted",
    );
}

#[test]
fn yaml_alias_bombs() {
    let mut bomb = String::from(
        "#cloud-config\nkubeboot:\n  a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "  a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    expect_err(
        "alias bomb in kubeboot:",
        bomb.as_bytes(),
        "repetition limit exceeded",
    );
    let bare = bomb.replace(
        "#cloud-config\nkubeboot:\n",
        "apiVersion: kubeboot.dev/v1alpha1\nx:\n",
    );
    expect_err(
        "alias bomb in a bare config",
        bare.as_bytes(),
        "repetition limit exceeded",
    );
    let wf = format!(
        "#cloud-config\nwrite_files:\n- path: /etc/x\n  content: x\nbomb:\n{}",
        bomb.split_once("kubeboot:\n").unwrap().1
    );
    expect_err(
        "alias bomb beside write_files",
        wf.as_bytes(),
        "repetition limit exceeded",
    );
}

#[test]
fn wrong_types() {
    for (label, input, want) in [
        (
            "kubeboot scalar",
            "#cloud-config\nkubeboot: 3\n",
            "kubeboot: must be a mapping",
        ),
        (
            "kubeboot list",
            "#cloud-config\nkubeboot: [a]\n",
            "kubeboot: must be a mapping",
        ),
        (
            "write_files string",
            "#cloud-config\nwrite_files: abc\n",
            "write_files must be a list",
        ),
        (
            "write_files entry list",
            "#cloud-config\nwrite_files: [[1]]\n",
            "write_files[0]: must be a mapping",
        ),
        (
            "encoding list",
            "#cloud-config\nwrite_files: [{path: /etc/kubeboot/config.yaml, encoding: [1], content: x}]\n",
            "encoding must be a string",
        ),
        (
            "content map",
            "#cloud-config\nwrite_files: [{path: /etc/kubeboot/config.yaml, content: {a: 1}}]\n",
            "content must be a string",
        ),
        (
            "top level scalar",
            "#cloud-config\n42\n",
            "top level must be a mapping",
        ),
        (
            "ignition version number",
            r#"{"ignition":{"version":3}}"#,
            "ignition.version: missing or not a string",
        ),
        (
            "storage array",
            r#"{"ignition":{"version":"3.3.0"},"storage":[]}"#,
            "storage: must be an object",
        ),
        (
            "file path number",
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":3}]}}"#,
            "storage.files[0].path",
        ),
        (
            "contents string",
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/kubeboot/config.yaml","contents":"x"}]}}"#,
            "contents: must be an object",
        ),
        (
            "source number",
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/kubeboot/config.yaml","contents":{"source":1}}]}}"#,
            "contents.source: must be a string",
        ),
        (
            "mode negative",
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/kubeboot/config.yaml","mode":-1}]}}"#,
            "mode: must be a decimal integer",
        ),
        (
            "archive mapping",
            "#cloud-config-archive\n{type: text/cloud-config}\n",
            "cloud-config-archive: the top level must be a list of parts",
        ),
        (
            "archive entry number",
            "#cloud-config-archive\n- 1\n",
            "cloud-config-archive[0]: must be a mapping",
        ),
        (
            "archive entry list",
            "#cloud-config-archive\n- [a]\n",
            "cloud-config-archive[0]: must be a mapping",
        ),
        (
            "archive type number",
            "#cloud-config-archive\n- {type: 1, content: x}\n",
            "cloud-config-archive[0]: type must be a string",
        ),
        (
            "archive type without slash",
            "#cloud-config-archive\n- {type: text, content: x}\n",
            "is not a MIME type",
        ),
        (
            "archive content list",
            "#cloud-config-archive\n- {content: [x]}\n",
            "cloud-config-archive[0]: content must be a string",
        ),
        (
            "archive cloud-config entry a scalar",
            "#cloud-config-archive\n- {type: text/cloud-config, content: '42'}\n",
            "cloud-config-archive[0]: cloud-config: the top level must be a mapping",
        ),
        (
            "archive jinja entry with a statement",
            "#cloud-config-archive\n- {type: text/jinja2, content: \"## template: jinja\\n{% if x %}\"}\n",
            "cloud-config-archive[0]: jinja template line 2",
        ),
        (
            "include with a URL",
            "#include\nhttp://10.0.0.2/x\n",
            "#include userdata is not supported",
        ),
        (
            "include-url part in MIME",
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=q\n\n--q\nContent-Type: text/x-include-once-url\n\nhttp://10.0.0.2/x\n--q--\n",
            "MIME part 1: text/x-include-once-url part is not supported",
        ),
        (
            "include listing nothing",
            "#include\n# later\n",
            "#include userdata: carries no kubeboot config",
        ),
        (
            "mode float",
            r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"/etc/kubeboot/config.yaml","mode":4.2}]}}"#,
            "mode: must be a decimal integer",
        ),
    ] {
        expect_err(label, input.as_bytes(), want);
    }
}

#[test]
fn invalid_utf8() {
    expect_err(
        "cloud-config",
        b"#cloud-config\nkubeboot: {role: w\xffker}\n",
        "cloud-config: not valid UTF-8 (at byte 32)",
    );
    expect_err(
        "bare",
        b"apiVersion: kubeboot.dev/v1alpha1\nrole: \xc3\x28\n",
        "not valid UTF-8",
    );
    let cc = format!(
        "#cloud-config\nwrite_files:\n- path: /etc/kubeboot/config.yaml\n  encoding: b64\n  content: {}\n",
        b64(b"role: \xfe\xff")
    );
    expect_err(
        "decoded config",
        cc.as_bytes(),
        "write_files[0] (/etc/kubeboot/config.yaml): content is not valid UTF-8 (at byte 6)",
    );
    expect_err(
        "jinja",
        b"## template: jinja\n#cloud-config\n\xff\n",
        "jinja template: not valid UTF-8",
    );
    expect_err(
        "ignition",
        b"{\"ignition\":{\"version\":\"3.3.0\xff\"}}",
        "ignition: invalid JSON",
    );
    // binary PKI content is fine: keys may be DER
    let cc = format!(
        "#cloud-config\nkubeboot: {{role: control-plane}}\nwrite_files:\n- path: /etc/kubernetes/pki/ca.der\n  encoding: b64\n  content: {}\n",
        b64(b"\x30\x82\xff\xfe")
    );
    let u = unwrap(cc.as_bytes(), &facts()).unwrap();
    assert_eq!(u.files[0].content, b"\x30\x82\xff\xfe");
}

#[test]
fn ignition_top_level_must_be_an_object() {
    let e = kubeboot::envelope::ignition::unwrap(br#"["ignition"]"#)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "ignition: the top level must be an object");
}

#[test]
fn unknown_ignition_versions() {
    for v in [
        "2.2.0",
        "3.6.0",
        "3.3",
        "3.3.0 ",
        "",
        "3.0.0-experimental",
        "4.0.0",
        "1.0.0",
    ] {
        let input = format!(r#"{{"ignition":{{"version":"{v}"}}}}"#);
        expect_err(
            &format!("ignition version {v:?}"),
            input.as_bytes(),
            "ignition.version",
        );
    }
}

#[test]
fn secrets_never_reach_messages() {
    // A secret in places that produce errors or warnings. (A jinja variable
    // name is echoed on purpose: it is an expression, never a value.)
    for input in [
        format!(
            "#cloud-config\nwrite_files:\n- path: /etc/kubeboot/config.yaml\n  encoding: {SECRET}\n  content: x\n"
        ),
        format!(
            "#cloud-config\nwrite_files:\n- path: /etc/kubeboot/config.yaml\n  permissions: '{SECRET}'\n  content: x\n"
        ),
        format!(
            "#cloud-config\nwrite_files:\n- path: /etc/kubeboot/config.yaml\n  encoding: b64\n  content: '{SECRET}'\n"
        ),
        format!("#cloud-config\nkubeboot: {{token: {SECRET}\n"),
        format!("## template: jinja\n{{% set x = '{SECRET}' %}}\n"),
        format!(r#"{{"ignition":{{"version":"{SECRET}"}}}}"#),
        format!(
            r#"{{"ignition":{{"version":"3.3.0"}},"storage":{{"files":[{{"path":"/etc/kubeboot/config.yaml","contents":{{"source":"data:;base64,{SECRET}!"}}}}]}}}}"#
        ),
        format!(r#"{{"ignition":{{"version":"3.3.0"}},"x":"{SECRET}",}}"#),
        format!("kubeboot.config={SECRET} kubeboot.role=worker"),
        format!("kubeboot.config.sha256={SECRET} kubeboot.role=worker"),
        format!("token: {SECRET}\n"),
        format!("#include\nhttps://boot.example/c?token={SECRET}\n"),
        format!("#cloud-config-archive\n- {{type: '{SECRET}', content: x}}\n"),
        format!(
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=q\n\n--q\nContent-Type: text/x-include-url\n\nhttp://a/{SECRET}\n--q--\n"
        ),
    ] {
        match unwrap(input.as_bytes(), &facts()) {
            Err(e) => assert!(
                !e.to_string().contains(SECRET) && !e.to_string().contains("0123456789abcdef"),
                "leak: {e}"
            ),
            Ok(u) => {
                for w in &u.warnings {
                    assert!(!w.contains("0123456789abcdef"), "leak: {w}");
                }
            }
        }
    }
}
