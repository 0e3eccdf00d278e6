//! The shipped examples in `image/examples/`: real cloud-init accepts every
//! cloud-config (`cloud-init schema`), real Ignition accepts the Ignition
//! config (`ignition-validate`), openssl accepts the example CA, and
//! `envelope::unwrap` finds the expected documents and files in each.
//!
//! cloud-init, ignition and openssl are required: a missing tool fails the
//! test with the package to install.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kubeboot::envelope::{self, DocBody, Unwrapped};
use kubeboot::host::HostFacts;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("image/examples")
}

fn example(name: &str) -> Vec<u8> {
    fs::read(examples_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn facts() -> HostFacts {
    HostFacts::given(
        Some("cp-0".into()),
        Some("10.0.0.10".parse().unwrap()),
        None,
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kubeboot-examples-{}", std::process::id()));
    fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Runs a peer tool; panics with the Debian package name when it is missing.
fn run(tool: &str, package: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("{tool} is required for this test ({e}); install it: apt-get install {package}")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn cloud_init_schema(label: &str, text: &str) {
    let path = tmp(&format!("{label}.yaml"));
    fs::write(&path, text).unwrap();
    let (ok, out) = run(
        "cloud-init",
        "cloud-init",
        &["schema", "--config-file", path.to_str().unwrap()],
    );
    assert!(
        ok && out.contains("Valid cloud-config"),
        "cloud-init schema rejected {label}:\n{out}"
    );
}

fn origins(u: &Unwrapped) -> Vec<&str> {
    u.documents.iter().map(|d| d.origin.as_str()).collect()
}

fn paths(u: &Unwrapped) -> Vec<(&str, u32)> {
    u.files.iter().map(|f| (f.path.as_str(), f.mode)).collect()
}

#[test]
fn cloud_configs_pass_cloud_init_schema() {
    // cloud-init 22.4's schema has no additionalProperties: false at the top
    // level, so the unknown kubeboot: key is accepted (checked here).
    for name in [
        "controlplane-init.cloud-config.yaml",
        "worker.cloud-config.yaml",
    ] {
        cloud_init_schema(name, std::str::from_utf8(&example(name)).unwrap());
    }
    // cloud-init's schema command does not render jinja: validate what
    // kubeboot (and cloud-init) render the template to.
    for name in [
        "capi-kubeadm-init.cloud-config.yaml",
        "capi-kubeadm-join-worker.cloud-config.yaml",
        "capi-kubeadm-join-controlplane.cloud-config.yaml",
    ] {
        let capi = String::from_utf8(example(name)).unwrap();
        let rendered = envelope::jinja::render(&capi, &facts()).unwrap();
        assert!(!rendered.contains("{{"), "{name}");
        cloud_init_schema(&format!("{name} rendered"), &rendered);
    }
    // the cloud-config part of the MIME example
    let mime = example("worker-multipart.mime");
    let mail = mailparse::parse_mail(&mime).unwrap();
    let part = mail
        .subparts
        .iter()
        .find(|p| p.ctype.mimetype == "text/cloud-config")
        .unwrap();
    cloud_init_schema("mime-part", &part.get_body().unwrap());
}

#[test]
fn cloud_init_schema_really_checks() {
    // guard against a schema command that accepts everything
    let path = tmp("bad.yaml");
    fs::write(&path, "#cloud-config\nwrite_files: 3\n").unwrap();
    let (ok, out) = run(
        "cloud-init",
        "cloud-init",
        &["schema", "--config-file", path.to_str().unwrap()],
    );
    assert!(!ok, "{out}");
}

#[test]
fn ignition_example_passes_ignition_validate() {
    let path = examples_dir().join("worker.ign");
    let (ok, out) = run("ignition-validate", "ignition", &[path.to_str().unwrap()]);
    assert!(ok, "ignition-validate rejected worker.ign:\n{out}");
    // and it does reject a broken config
    let bad = tmp("bad.ign");
    fs::write(
        &bad,
        r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"rel"}]}}"#,
    )
    .unwrap();
    let (ok, _) = run("ignition-validate", "ignition", &[bad.to_str().unwrap()]);
    assert!(!ok);
}

#[test]
fn example_ca_is_real_and_workers_pin_it() {
    let u = envelope::unwrap(&example("capi-kubeadm-init.cloud-config.yaml"), &facts()).unwrap();
    let ca = u
        .files
        .iter()
        .find(|f| f.path == "/etc/kubernetes/pki/ca.crt")
        .unwrap();
    let path = tmp("ca.crt");
    fs::write(&path, &ca.content).unwrap();
    let (ok, out) = run(
        "openssl",
        "openssl",
        &["x509", "-in", path.to_str().unwrap(), "-noout", "-subject"],
    );
    assert!(ok && out.contains("CN = kubernetes"), "{out}");
    // the pin (sha256 of the DER SubjectPublicKeyInfo), as kubeadm computes it
    let (ok, pubkey) = run(
        "openssl",
        "openssl",
        &["x509", "-in", path.to_str().unwrap(), "-noout", "-pubkey"],
    );
    assert!(ok);
    let pem_path = tmp("ca.pub.pem");
    fs::write(&pem_path, pubkey).unwrap();
    let der_path = tmp("ca.pub.der");
    let (ok, out) = run(
        "openssl",
        "openssl",
        &[
            "pkey",
            "-pubin",
            "-in",
            pem_path.to_str().unwrap(),
            "-outform",
            "der",
            "-out",
            der_path.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let digest = ring::digest::digest(&ring::digest::SHA256, &fs::read(&der_path).unwrap());
    let pin: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    for name in [
        "worker.cloud-config.yaml",
        "worker.kubeboot.yaml",
        "pxe-worker.cmdline",
        "capi-kubeadm-join-worker.cloud-config.yaml",
        "capi-kubeadm-join-controlplane.cloud-config.yaml",
    ] {
        let text = String::from_utf8(example(name)).unwrap();
        assert!(
            text.contains(&format!("sha256:{pin}")),
            "{name} does not pin the example CA {pin}"
        );
    }
    for key in ["ca.key", "etcd/ca.key", "front-proxy-ca.key", "sa.key"] {
        let f = u
            .files
            .iter()
            .find(|f| f.path == format!("/etc/kubernetes/pki/{key}"))
            .unwrap();
        assert_eq!(f.mode, 0o600, "{key}");
    }
}

#[test]
fn unwrap_finds_the_documents_in_every_example() {
    let mut seen = Vec::new();
    for entry in fs::read_dir(examples_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            continue;
        }
        let u =
            envelope::unwrap(&example(&name), &facts()).unwrap_or_else(|e| panic!("{name}: {e}"));
        match name.as_str() {
            "controlplane-init.cloud-config.yaml" | "worker.cloud-config.yaml" => {
                assert_eq!(u.kind, "cloud-config");
                assert_eq!(origins(&u), vec!["cloud-config kubeboot key"]);
                let DocBody::Value(v) = &u.documents[0].body else {
                    panic!("{name}")
                };
                let role = if name.starts_with("worker") {
                    "worker"
                } else {
                    "control-plane"
                };
                assert_eq!(v["role"].as_str(), Some(role), "{name}");
                assert!(u.files.is_empty() && u.warnings.is_empty(), "{name}: {u:?}");
            }
            "capi-kubeadm-init.cloud-config.yaml" => {
                assert_eq!(u.kind, "jinja › cloud-config");
                assert_eq!(
                    origins(&u),
                    vec!["write_files[8] /run/kubeadm/kubeadm.yaml"]
                );
                let DocBody::Yaml(y) = &u.documents[0].body else {
                    panic!()
                };
                assert!(
                    y.contains("kind: InitConfiguration")
                        && y.contains("kind: ClusterConfiguration")
                );
                assert!(
                    y.contains("name: 'cp-0'") && y.contains("advertiseAddress: '10.0.0.10'"),
                    "{y}"
                );
                assert!(!y.contains("{{"));
                assert_eq!(
                    paths(&u),
                    vec![
                        // the example says 0640; carried PKI files get
                        // kubeadm's modes (certificates 0644, sa.pub and keys 0600)
                        ("/etc/kubernetes/pki/ca.crt", 0o644),
                        ("/etc/kubernetes/pki/ca.key", 0o600),
                        ("/etc/kubernetes/pki/etcd/ca.crt", 0o644),
                        ("/etc/kubernetes/pki/etcd/ca.key", 0o600),
                        ("/etc/kubernetes/pki/front-proxy-ca.crt", 0o644),
                        ("/etc/kubernetes/pki/front-proxy-ca.key", 0o600),
                        ("/etc/kubernetes/pki/sa.pub", 0o600),
                        ("/etc/kubernetes/pki/sa.key", 0o600),
                    ]
                );
                let (modes, other): (Vec<&String>, Vec<&String>) = u
                    .warnings
                    .iter()
                    .partition(|w| w.contains("kubeadm's mode"));
                assert_eq!(other.len(), 2, "{:?}", u.warnings); // placeholder file, runcmd
                assert_eq!(modes.len(), 4, "{modes:?}"); // the three CA certificates and sa.pub
            }
            "capi-kubeadm-join-worker.cloud-config.yaml"
            | "capi-kubeadm-join-controlplane.cloud-config.yaml" => {
                let cp = name.contains("controlplane");
                assert_eq!(u.kind, "jinja › cloud-config");
                assert_eq!(
                    origins(&u),
                    vec![if cp {
                        "write_files[8] /run/kubeadm/kubeadm-join-config.yaml"
                    } else {
                        "write_files[0] /run/kubeadm/kubeadm-join-config.yaml"
                    }]
                );
                assert!(u.from_cluster_api(), "{name}");
                let DocBody::Yaml(y) = &u.documents[0].body else {
                    panic!()
                };
                assert!(
                    y.contains("kind: JoinConfiguration") && !y.contains("{{"),
                    "{y}"
                );
                assert_eq!(y.contains("controlPlane:"), cp, "{y}");
                // CA material rides along for a control-plane join only,
                // exactly the init example's (the same cluster)
                let init =
                    envelope::unwrap(&example("capi-kubeadm-init.cloud-config.yaml"), &facts())
                        .unwrap();
                if cp {
                    assert_eq!(paths(&u), paths(&init));
                    for (a, b) in u.files.iter().zip(&init.files) {
                        assert_eq!(a.content, b.content, "{}", a.path);
                    }
                } else {
                    assert!(u.files.is_empty());
                }
                // placeholder file, runcmd; for the control plane also the four
                // CA file modes set to kubeadm's (as for the init example)
                let want = if cp { 6 } else { 2 };
                assert_eq!(u.warnings.len(), want, "{:?}", u.warnings);
                // kubeboot reads it as the join it is
                let loaded = kubeboot::config::from_unwrapped(u, &name, &facts()).unwrap();
                assert_eq!(
                    loaded.settings.mode,
                    if cp {
                        kubeboot::config::Mode::JoinControlPlane
                    } else {
                        kubeboot::config::Mode::JoinWorker
                    }
                );
                let join = loaded.settings.join.as_ref().unwrap();
                assert_eq!(join.api_server_endpoint.url(), "https://10.0.0.10:6443");
            }
            "worker.ign" => {
                assert_eq!(u.kind, "ignition 3.3.0");
                assert_eq!(
                    origins(&u),
                    vec!["ignition storage.files[0] /etc/kubeboot/config.yaml"]
                );
                let DocBody::Yaml(y) = &u.documents[0].body else {
                    panic!()
                };
                assert_eq!(y.as_bytes(), example("worker.kubeboot.yaml").as_slice());
            }
            "worker-multipart.mime" => {
                assert_eq!(u.kind, "MIME multipart");
                assert_eq!(origins(&u), vec!["MIME part 2 cloud-config kubeboot key"]);
                assert_eq!(u.warnings.len(), 1);
            }
            "worker.kubeboot.yaml" => {
                assert_eq!(u.kind, "kubeboot config");
                assert_eq!(origins(&u), vec!["userdata (bare config file)"]);
            }
            "pxe-worker.cmdline" => {
                assert_eq!(u.kind, "kernel command line");
                let DocBody::KernelArgs(a) = &u.documents[0].body else {
                    panic!()
                };
                let keys: Vec<&str> = a.iter().map(|(k, _)| k.as_str()).collect();
                assert_eq!(
                    keys,
                    vec!["role", "server", "token", "ca-cert-hash", "node-name"]
                );
                assert_eq!(u.warnings.len(), 1, "{:?}", u.warnings); // token on the command line
            }
            "pxe-worker-url.cmdline" => {
                assert!(u.documents.is_empty());
                assert_eq!(u.config_urls.len(), 1);
                let want =
                    ring::digest::digest(&ring::digest::SHA256, &example("worker.kubeboot.yaml"));
                let want: String = want.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(u.config_urls[0].sha256.as_deref(), Some(want.as_str()));
            }
            other => panic!("example {other} has no expectation here; add one"),
        }
        seen.push(name);
    }
    assert!(seen.len() >= 8, "{seen:?}");
}
