//! kubeboot's YAML emitter (`src/yaml.rs`) checked by parsers and an
//! emitter that are not kubeboot's:
//!
//! - every document kubeboot writes (the static pods, the kubelet
//!   configuration, ClusterConfiguration, the kube-proxy configuration,
//!   `config print`, the files of a rendered tree), for the example settings
//!   and for settings full of awkward user strings, reads back with PyYAML
//!   (`yaml.safe_load`, a YAML 1.1 reader) and with serde_norway to the JSON
//!   value it was built from, and is byte for byte what serde_norway's own
//!   emitter (libyaml's) writes for the same value;
//! - thousands of documents of tricky strings (type look-alikes,
//!   indicators, quotes, breaks, control and non-ASCII characters) and
//!   nested empty collections read back equal with PyYAML and serde_norway.

#[path = "cli_support/mod.rs"]
mod cli_support;
#[path = "peer_support/mod.rs"]
mod peer_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use kubeboot::config::model::{EnvVar, Settings};
use kubeboot::host::detect::Detected;
use kubeboot::manifests::{self, HostInputs};
use serde_json::{Value, json};

/// One document as kubeboot writes it, and the value it was made from
/// (`None` when only the text is reachable from outside: then the two
/// parsers are compared with each other).
struct Doc {
    name: String,
    yaml: String,
    value: Option<Value>,
    /// serde_norway's emitter's text for the same value
    theirs: String,
}

fn host() -> HostInputs {
    HostInputs {
        ca_trust_dirs: vec!["/usr/share/ca-certificates".into()],
        proxy_env: vec![EnvVar {
            name: "NO_PROXY".into(),
            value: "10.0.0.0/8,.svc".into(),
        }],
    }
}

/// Settings whose user strings need quoting: an init config whose
/// extraArgs, SANs and labels hold YAML look-alikes.
fn awkward() -> Settings {
    let text = r#"apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 10.0.0.5
nodeRegistration:
  name: cp-1
  kubeletExtraArgs:
  - name: node-labels
    value: "a=yes,b=no"
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.34.1
clusterName: "yes"
controlPlaneEndpoint: "cp.example.test:6443"
apiServer:
  certSANs: ["*.example.test", "10.0.0.5", "on"]
  extraArgs:
  - name: audit-log-path
    value: "-"
  - name: event-ttl
    value: "1h0m0s"
  - name: service-node-port-range
    value: "30000-32767"
  - name: cors-allowed-origins
    value: "'quoted', \"double\", #hash, a: b"
controllerManager:
  extraArgs:
  - name: node-monitor-grace-period
    value: "40s"
  - name: terminated-pod-gc-threshold
    value: "12500"
scheduler:
  extraArgs:
  - name: v
    value: "0"
"#;
    let facts =
        kubeboot::host::facts::HostFacts::given(Some("cp-1".into()), "10.0.0.5".parse().ok(), None);
    kubeboot::config::load(text.as_bytes(), "awkward", &facts)
        .unwrap_or_else(|e| panic!("{e}"))
        .settings
}

fn documents() -> Vec<Doc> {
    let det = Detected::default();
    let mut out = Vec::new();
    let cases = [
        ("control-plane", kubeboot::config::examples::control_plane()),
        ("worker", kubeboot::config::examples::worker()),
        ("awkward", awkward()),
    ];
    for (case, s) in &cases {
        for (component, pod) in manifests::render_all(s, &host()) {
            out.push(Doc {
                name: format!("{case}/{component}.yaml"),
                yaml: manifests::to_yaml(&pod).unwrap(),
                value: Some(serde_json::to_value(&pod).unwrap()),
                theirs: serde_norway::to_string(&pod).unwrap(),
            });
        }
        let kubelet = kubeboot::kubelet::config_value(s, &det);
        out.push(Doc {
            name: format!("{case}/kubelet config.yaml"),
            yaml: kubeboot::kubelet::config_yaml(s, &det).unwrap(),
            theirs: serde_norway::to_string(&kubelet).unwrap(),
            value: Some(kubelet),
        });
        let cc = kubeboot::api::objects::cluster_configuration(s);
        let uploaded = kubeboot::api::objects::upload_config(s, "kind: KubeletConfiguration\n")
            .unwrap()
            .into_iter()
            .find_map(|o| {
                o.body["data"]["ClusterConfiguration"]
                    .as_str()
                    .map(str::to_string)
            })
            .expect("kubeadm-config ConfigMap");
        out.push(Doc {
            name: format!("{case}/ClusterConfiguration"),
            yaml: uploaded,
            theirs: serde_norway::to_string(&cc).unwrap(),
            value: Some(cc),
        });
        if s.mode.is_control_plane() {
            let proxy = kubeboot::api::addons::kube_proxy(s)
                .unwrap()
                .into_iter()
                .find_map(|o| o.body["data"]["config.conf"].as_str().map(str::to_string))
                .expect("kube-proxy ConfigMap");
            // kubeadm embeds it without the final newline
            let yaml = format!("{proxy}\n");
            out.push(Doc {
                name: format!("{case}/kube-proxy config.conf"),
                theirs: reemitted(&yaml),
                yaml,
                value: None,
            });
        }
    }
    out
}

/// serde_norway's emitter's text for what serde_norway reads from `yaml`
/// (its `Value` keeps the mapping order of the text).
fn reemitted(yaml: &str) -> String {
    let v: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
    serde_norway::to_string(&v).unwrap()
}

/// Every `.yaml`/`.conf` file kubeboot writes for `kubeboot ARGS --root
/// DIR`, as documents with no known value.
fn rendered_files(dir: &Path, args: &[&str], min: usize) -> Vec<Doc> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--root", dir.to_str().unwrap()]);
    let o = cli_support::kubeboot(&all);
    assert!(o.status.success(), "{}", cli_support::text(&o.stderr));
    let mut out = Vec::new();
    for rel in cli_support::files_under(dir, &[]) {
        if !rel.extension().is_some_and(|x| x == "yaml" || x == "conf") {
            continue;
        }
        let yaml = std::fs::read_to_string(dir.join(&rel)).unwrap();
        let name = rel.display().to_string();
        // kubeadm's instance-config template quotes its one value;
        // kubeboot writes it from a format string, as kubeadm does
        let theirs = if name.ends_with("instance-config.yaml") {
            yaml.clone()
        } else {
            reemitted(&yaml)
        };
        out.push(Doc {
            name,
            theirs,
            yaml,
            value: None,
        });
    }
    assert!(
        out.len() >= min,
        "too few documents under {}",
        dir.display()
    );
    out
}

/// PyYAML's reading of every `yaml`, as JSON values; `None`
/// when python3 or its yaml module is missing (after the SKIP rule).
fn pyyaml(test: &str, dir: &Path, yamls: &[&str]) -> Option<Vec<Value>> {
    if !peer_support::python_module(test, "yaml", "pip install pyyaml") {
        return None;
    }
    let input = dir.join("yamls.json");
    std::fs::write(&input, serde_json::to_vec(yamls).unwrap()).unwrap();
    let script = "import sys, json, yaml\n\
                  docs = json.load(open(sys.argv[1]))\n\
                  json.dump([yaml.safe_load(d) for d in docs], sys.stdout)\n";
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(&input)
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", cli_support::text(&o.stderr));
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

fn scratch(name: &str) -> PathBuf {
    cli_support::tmpdir("yaml", name)
}

#[test]
fn kubeboot_documents_match_libyaml_and_read_back_in_two_parsers() {
    let dir = scratch("documents");
    let mut docs = documents();
    docs.extend(rendered_files(
        &dir.join("cp"),
        &["render", "--example", "control-plane"],
        10,
    ));
    docs.extend(rendered_files(
        &dir.join("worker"),
        &["render", "--example", "worker"],
        1,
    ));
    for (i, args) in [
        &["config", "print", "init-defaults"][..],
        &["config", "print", "join-defaults"][..],
    ]
    .iter()
    .enumerate()
    {
        let o = cli_support::kubeboot(args);
        assert!(o.status.success(), "{}", cli_support::text(&o.stderr));
        // a stream of documents: each one on its own
        for (j, yaml) in cli_support::text(&o.stdout)
            .split("\n---\n")
            .map(|d| d.trim_start_matches("---\n"))
            .enumerate()
        {
            let yaml = format!("{}\n", yaml.trim_end_matches('\n'));
            docs.push(Doc {
                name: format!("config print {i} document {j}"),
                theirs: reemitted(&yaml),
                yaml,
                value: None,
            });
        }
    }
    assert!(docs.len() > 30, "{} documents", docs.len());
    let mut differing = Vec::new();
    for d in &docs {
        // (c) libyaml's bytes, except where a YAML 1.1 look-alike is quoted
        if d.yaml != d.theirs {
            assert!(
                only_quotes_added(&d.yaml, &d.theirs),
                "{}: not what serde_norway writes\nours:\n{}\nserde_norway:\n{}",
                d.name,
                d.yaml,
                d.theirs
            );
            differing.push(d);
        }
        // (a) serde_norway reads back the value
        let back: Value = serde_norway::from_str(&d.yaml).unwrap();
        if let Some(v) = &d.value {
            assert_eq!(
                &back, v,
                "{}: serde_norway reads back another value",
                d.name
            );
        }
    }
    let yamls: Vec<&str> = docs.iter().map(|d| d.yaml.as_str()).collect();
    let Some(py) = pyyaml("yaml_emitter documents", &dir, &yamls) else {
        return;
    };
    for (d, py) in docs.iter().zip(py) {
        assert_eq!(py, expected(d), "{}: PyYAML reads another value", d.name);
    }
    // Each deliberate difference from serde_norway's text fixes a misreading:
    // PyYAML reads serde_norway's text to another value.
    assert!(
        !differing.is_empty(),
        "the awkward settings need YAML 1.1 quoting"
    );
    let theirs: Vec<&str> = differing.iter().map(|d| d.theirs.as_str()).collect();
    let py = pyyaml("yaml_emitter documents", &dir, &theirs).unwrap_or_default();
    for (d, py) in differing.iter().zip(py) {
        assert_ne!(py, expected(d), "{}: quoted for nothing", d.name);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The value `d` was made from (serde_norway's reading when unknown).
fn expected(d: &Doc) -> Value {
    match &d.value {
        Some(v) => v.clone(),
        None => serde_norway::from_str(&d.yaml).unwrap(),
    }
}

/// True when `ours` is `theirs` with some plain scalars at the end of a
/// line single-quoted (`key: on` → `key: 'on'`, `- yes` → `- 'yes'`).
fn only_quotes_added(ours: &str, theirs: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), theirs.lines().collect());
    a.len() == b.len()
        && a.iter().zip(&b).all(|(o, t)| {
            o == t
                || t.rsplit_once(' ')
                    .is_some_and(|(head, tok)| *o == format!("{head} '{tok}'"))
        })
}

/// Strings that trip YAML emitters and YAML 1.1 readers.
const TRICKY: &[&str] = &[
    "",
    " ",
    "a",
    "true",
    "True",
    "false",
    "no",
    "No",
    "NO",
    "yes",
    "on",
    "Off",
    "y",
    "n",
    "~",
    "null",
    "NULL",
    "0",
    "-0",
    "1",
    "-1",
    "+1",
    "007",
    "08",
    "0x1F",
    "-0x1F",
    "0o17",
    "0b11",
    "0b1_1",
    "1e3",
    "1E-3",
    "1.5e+3",
    "1.",
    ".5",
    "+.5",
    "1_000",
    "1_0.5",
    "12:30",
    "1:2:3",
    "1:20:30.5",
    ".inf",
    "-.Inf",
    ".nan",
    "nan",
    "inf",
    "2026-11-28",
    "2026-1-2 3:04:05",
    "2026-11-28T10:00:00Z",
    "<<",
    "=",
    "-",
    "- a",
    "--",
    "---",
    "...",
    "?",
    "? a",
    ":",
    ": a",
    "a:",
    "a: b",
    "a:b",
    "#",
    "a #b",
    "a#b",
    ",",
    "[a]",
    "{a}",
    "{}",
    "[]",
    "&a",
    "*a",
    "!a",
    "!!int",
    "|",
    ">",
    "'",
    "\"",
    "''",
    "%",
    "@",
    "`",
    "a'b",
    "a\"b",
    "\\",
    "a\\nb",
    "\n",
    "\n\n",
    "a\n",
    "a\nb",
    "a\n\n",
    "\na",
    " a",
    "a ",
    "a \nb",
    "a\n b",
    "\r",
    "a\r\nb",
    "\t",
    "a\tb",
    "\u{0}",
    "\u{7}",
    "\u{1b}",
    "\u{7f}",
    "\u{85}",
    "\u{a0}",
    "\u{2028}",
    "\u{2029}",
    "\u{feff}",
    "\u{fffe}",
    "é",
    "日本語",
    "🙂",
    "Ω: x",
    "--a=b c",
    "10.0.0.1",
    "::1",
    "[::1]:6443",
    "https://h:6443",
    "system:node:x",
    "v1.34.1",
    "0600",
    "64Mi",
    "10s",
    "#!/bin/sh\necho hi\n",
];

/// xorshift64*: a fixed sequence, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

fn string(r: &mut Rng) -> String {
    (0..1 + r.below(3))
        .map(|_| TRICKY[r.below(TRICKY.len())])
        .collect()
}

fn value(r: &mut Rng, depth: u32) -> Value {
    match r.below(if depth > 2 { 3 } else { 6 }) {
        0 => TRICKY[r.below(TRICKY.len())].into(),
        1 => string(r).into(),
        2 => [
            json!(null),
            json!(true),
            json!(7),
            json!(-2.5),
            json!(1e300),
        ][r.below(5)]
        .clone(),
        3 | 4 => Value::Object(
            (0..r.below(4))
                .map(|_| (string(r), value(r, depth + 1)))
                .collect(),
        ),
        _ => Value::Array((0..r.below(4)).map(|_| value(r, depth + 1)).collect()),
    }
}

#[test]
fn tricky_strings_and_empty_collections_read_back_in_two_parsers() {
    let mut values: Vec<Value> = Vec::new();
    for s in TRICKY {
        values.push(json!({ "k": s, *s: [s, { "n": s }], "e": {}, "l": [], "m": [{}, []] }));
        values.push(json!([s, [s], { *s: { *s: {} } }]));
        values.push(json!(s));
    }
    let mut r = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..2000 {
        values.push(value(&mut r, 0));
    }
    let yamls: Vec<String> = values
        .iter()
        .map(|v| kubeboot::yaml::to_string(v).unwrap())
        .collect();
    for (v, y) in values.iter().zip(&yamls) {
        let back: Value =
            serde_norway::from_str(y).unwrap_or_else(|e| panic!("serde_norway: {e}\n{y}"));
        assert_eq!(&back, v, "serde_norway reads another value from\n{y}");
    }
    let dir = scratch("tricky");
    let refs: Vec<&str> = yamls.iter().map(String::as_str).collect();
    let Some(py) = pyyaml("yaml_emitter tricky", &dir, &refs) else {
        return;
    };
    for ((v, y), py) in values.iter().zip(&yamls).zip(py) {
        assert_eq!(&py, v, "PyYAML reads another value from\n{y}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
