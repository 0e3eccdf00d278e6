//! The `kubeboot` binary as a user runs it: render, config validate/show,
//! token generate, certs ca-hash/check-expiration, exit codes and messages,
//! and a malformed-input sweep through the command line.

#[allow(unused_imports)]
use crate::cli_support;

use cli_support::{kubeboot, text};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir(name: &str) -> std::path::PathBuf {
    cli_support::tmpdir("cli", name)
}

/// Every regular file under `root` with its bytes and mode.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if e.path().ends_with("var/lib/kubeboot/lock") {
                // the run lock names its last holder's pid: run state, not node files
            } else {
                out.insert(
                    e.path(),
                    (
                        std::fs::read(e.path()).unwrap(),
                        m.permissions().mode() & 0o7777,
                    ),
                );
            }
        }
    }
    out
}

#[test]
fn render_example_control_plane_then_rerun_changes_nothing() {
    let root = tmpdir("render");
    let rs = root.to_str().unwrap();
    let o = kubeboot(&["render", "--example", "control-plane", "--root", rs]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for f in [
        "/etc/kubernetes/pki/ca.crt",
        "/etc/kubernetes/pki/etcd/peer.key",
        "/etc/kubernetes/pki/sa.pub",
        "/etc/kubernetes/admin.conf",
        "/etc/kubernetes/super-admin.conf",
        "/etc/kubernetes/manifests/kube-apiserver.yaml",
        "/etc/kubernetes/manifests/etcd.yaml",
        "/var/lib/kubelet/config.yaml",
        "/var/lib/kubelet/kubeadm-flags.env",
    ] {
        assert!(out.contains(f), "{f} not reported:\n{out}");
        assert!(
            root.join(f.trim_start_matches('/')).is_file(),
            "{f} not written"
        );
    }
    assert!(
        out.contains("certs") && out.contains(" ms"),
        "no per-phase timings:\n{out}"
    );
    let before = snapshot(&root);
    for (p, (_, mode)) in &before {
        let name = p.to_string_lossy();
        if name.ends_with(".key")
            || name.ends_with(".conf")
            || name.ends_with("sa.pub")
            || name.ends_with("manifests/etcd.yaml")
        {
            assert_eq!(*mode, 0o600, "{name}");
        }
        if name.ends_with(".crt") {
            assert_eq!(*mode, 0o644, "{name}");
        }
    }
    // rerun: every file kept byte for byte
    let o = kubeboot(&["render", "--example", "control-plane", "--root", rs]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("kept"), "{}", text(&o.stdout));
    assert_eq!(before, snapshot(&root), "a rerun changed files");
    // delete one leaf: only it is regenerated
    let leaf = root.join("etc/kubernetes/pki/apiserver.crt");
    std::fs::remove_file(&leaf).unwrap();
    let o = kubeboot(&["render", "--example", "control-plane", "--root", rs]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let after = snapshot(&root);
    let changed: Vec<_> = before
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert_eq!(changed, vec![&leaf], "only apiserver.crt may change");
    std::fs::remove_dir_all(&root).unwrap();
}

/// `kubeboot render --example worker --root ROOT`, which must succeed.
fn render_worker(root: &std::path::Path) {
    let o = kubeboot(&[
        "render",
        "--example",
        "worker",
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn render_worker_writes_kubelet_files_only() {
    let root = tmpdir("render-worker");
    render_worker(&root);
    assert!(root.join("var/lib/kubelet/config.yaml").is_file());
    assert!(!root.join("etc/kubernetes/pki/ca.key").exists());
    assert!(!root.join("etc/kubernetes/admin.conf").exists());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn ca_hash_matches_openssl_and_check_expiration_lists_the_tree() {
    let root = tmpdir("cahash");
    let rs = root.to_str().unwrap();
    assert!(
        kubeboot(&["render", "--example", "control-plane", "--root", rs])
            .status
            .success()
    );
    let ca = root.join("etc/kubernetes/pki/ca.crt");
    let o = kubeboot(&["certs", "ca-hash", ca.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ours = text(&o.stdout).trim().to_string();
    let sh = format!(
        "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform der | sha256sum",
        ca.display()
    );
    let theirs = Command::new("sh")
        .arg("-c")
        .arg(&sh)
        .output()
        .expect("openssl (Debian package openssl) is required");
    assert!(theirs.status.success(), "{}", text(&theirs.stderr));
    let hex = text(&theirs.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(ours, format!("sha256:{hex}"));
    let o = kubeboot(&["certs", "check-expiration", "--root", rs]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    for n in [
        "admin.conf",
        "apiserver",
        "etcd-server",
        "front-proxy-client",
        "ca",
        "etcd-ca",
    ] {
        assert!(table.contains(n), "{n} missing:\n{table}");
    }
    let o = kubeboot(&["certs", "ca-hash", root.join("nope.crt").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("nope.crt"), "{}", text(&o.stderr));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn token_generate_is_well_formed_and_random() {
    let a = text(&kubeboot(&["token", "generate"]).stdout)
        .trim()
        .to_string();
    let b = text(&kubeboot(&["token", "generate"]).stdout)
        .trim()
        .to_string();
    for t in [&a, &b] {
        let (id, secret) = t.split_once('.').unwrap();
        assert_eq!((id.len(), secret.len()), (6, 16), "{t}");
        assert!(
            t.bytes()
                .all(|c| c == b'.' || c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{t}"
        );
    }
    assert_ne!(a, b);
}

#[test]
fn every_shipped_example_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("image/examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            continue;
        }
        let o = kubeboot(&["config", "validate", p.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", p.display(), text(&o.stderr));
        assert!(text(&o.stdout).contains(": ok ("), "{}", text(&o.stdout));
        n += 1;
    }
    assert!(n >= 5, "expected at least five examples, found {n}");
}

#[test]
fn validate_names_the_field_and_never_prints_the_secret() {
    let dir = tmpdir("validate");
    let f = dir.join("user-data.yaml");
    std::fs::write(
        &f,
        "#cloud-config\nkubeboot:\n  role: worker\n  server: 10.0.0.10:6443\n  token: abcdef.0123456789ABCDEF\n  caCertHash: sha256:1234\n",
    )
    .unwrap();
    let o = kubeboot(&["config", "validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("user-data.yaml") && err.contains("kubeboot.token:"),
        "{err}"
    );
    assert!(err.contains("kubeboot.caCertHash:"), "{err}");
    assert!(
        !err.contains("0123456789ABCDEF") && !err.contains("0123456789abcdef"),
        "secret leaked: {err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_show_redacts_secrets() {
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("image/examples/worker.cloud-config.yaml");
    let o = kubeboot(&["config", "show", ex.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let token = v["settings"]["join"]["token"].as_str().unwrap();
    assert!(token.ends_with(".<redacted>"), "{token}");
    assert!(
        v["settings"]["join"]["apiServerEndpoint"]
            .as_str()
            .unwrap()
            .contains(':')
    );
    assert!(!out.contains("0123456789abcdef"), "{out}");
}

#[test]
fn kubeadm_addon_fields_are_acted_on() {
    let f =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubeadm-v1beta4-addons.yaml");
    let o = kubeboot(&["config", "show", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&o.stdout)).unwrap();
    let c = &v["settings"]["cluster"];
    assert_eq!(
        c["dns"],
        serde_json::json!({"disabled": true, "imageRepository": "mirror.example.test/dns", "imageTag": "v1.12.0-patch.1"})
    );
    assert_eq!(c["proxy"], serde_json::json!({"disabled": true}));
    assert_eq!(
        v["settings"]["warnings"],
        serde_json::json!([]),
        "no 'not acted on' warning"
    );

    // a tag that is not one: exit 2, the kubeadm field named
    let dir = tmpdir("addons");
    let bad = dir.join("kubeadm.yaml");
    let text_in = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&bad, text_in.replace("v1.12.0-patch.1", "v1.12:0")).unwrap();
    let o = kubeboot(&["config", "validate", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("ClusterConfiguration.dns.imageTag:") && err.contains("is not an image tag"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_exit_2_and_version_works() {
    let o = kubeboot(&["render", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    let o = kubeboot(&["init", "phase", "bogus", "--config", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(2));
    let o = kubeboot(&["version"]);
    assert!(o.status.success());
    assert!(text(&o.stdout).starts_with("kubeboot "));
    let o = kubeboot(&["init", "phase", "list"]);
    assert!(o.status.success());
    let phases = text(&o.stdout);
    for p in [
        "preflight",
        "certs",
        "kubeconfig",
        "etcd",
        "control-plane",
        "kubelet-start",
        "wait-control-plane",
    ] {
        assert!(phases.contains(p), "{p}:\n{phases}");
    }
}

#[test]
fn malformed_inputs_exit_2_with_a_message() {
    let dir = tmpdir("malformed");
    let mut huge = b"#cloud-config\nkubeboot:\n  role: worker\n".to_vec();
    huge.resize(64 * 1024 * 1024, b' ');
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 0..9u8 {
        let prev = (b'a' + i) as char;
        let next = (b'b' + i) as char;
        bomb.push_str(&format!("{next}: &{next} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        (
            "binary",
            (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        (
            "invalid-utf8",
            b"#cloud-config\nkubeboot:\n  role: \xff\xfe\n".to_vec(),
        ),
        (
            "truncated-json",
            b"{\"ignition\": {\"version\": \"3.3.0\"}, \"storage\": {\"files\": [".to_vec(),
        ),
        (
            "unknown-ignition",
            b"{\"ignition\": {\"version\": \"9.0.0\"}}".to_vec(),
        ),
        ("wrong-types", b"role: [worker]\nserver: {a: 1}\n".to_vec()),
        (
            "deep",
            format!(
                "#cloud-config\nkubeboot: {}{}\n",
                "[".repeat(5000),
                "]".repeat(5000)
            )
            .into_bytes(),
        ),
        (
            "alias-bomb",
            format!("apiVersion: kubeboot.dev/v1alpha1\nrole: worker\n{bomb}").into_bytes(),
        ),
        ("huge", huge),
    ];
    for (name, bytes) in cases {
        let f = dir.join(name);
        std::fs::write(&f, &bytes).unwrap();
        let o = kubeboot(&["config", "validate", f.to_str().unwrap()]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("error:") && err.contains(name),
            "{name}: message must name the file: {err}"
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn image_install_script_puts_binary_and_enabled_unit_in_a_tree() {
    let root = tmpdir("install");
    let o = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("image/install-into-root.sh"))
        .arg(&root)
        .arg(env!("CARGO_BIN_EXE_kubeboot"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(root.join("usr/bin/kubeboot").is_file());
    let link = root.join("etc/systemd/system/multi-user.target.wants/kubeboot.service");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../kubeboot.service")
    );
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/kubeboot.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/kubeboot firstboot"));
    // the daily certificate renewal: both units, the timer enabled
    let timer = root.join("etc/systemd/system/timers.target.wants/kubeboot-certs-renew.timer");
    assert_eq!(
        std::fs::read_link(&timer).unwrap(),
        Path::new("../kubeboot-certs-renew.timer")
    );
    let renew =
        std::fs::read_to_string(root.join("etc/systemd/system/kubeboot-certs-renew.service"))
            .unwrap();
    assert!(renew.contains("ExecStart=/usr/bin/kubeboot certs renew all --if-expiring-within"));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn journal_stream_gets_priority_prefixes() {
    use std::os::unix::fs::MetadataExt;
    let dir = tmpdir("journal");
    let err_path = dir.join("stderr");
    let err_file = std::fs::File::create(&err_path).unwrap();
    let meta = err_file.metadata().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args([
            "render",
            "--example",
            "worker",
            "--root",
            dir.join("root").to_str().unwrap(),
        ])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(err_file)
        .output()
        .unwrap();
    assert!(o.status.success());
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        err.lines().next().is_some_and(|l| l.starts_with("<6>[")),
        "{err}"
    );
    assert!(err.lines().all(|l| l.starts_with('<')), "{err}");
    // without the journal: plain lines
    let o = kubeboot(&[
        "render",
        "--example",
        "worker",
        "--root",
        dir.join("root2").to_str().unwrap(),
    ]);
    assert!(text(&o.stderr).lines().all(|l| !l.starts_with('<')));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// README's first command, as a newcomer types it: `cargo run` must pick the
/// `kubeboot` binary (src/bin/ holds a second one, so Cargo.toml needs
/// `default-run`), and the arguments after `--` must render a control plane.
#[test]
fn readme_main_command_runs() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("cargo run"))
        .expect("README.md has a `cargo run` command");
    let (cargo_part, args) = line.split_once(" -- ").expect("`cargo run ... -- ARGS`");
    assert!(!cargo_part.contains("--bin"), "{line}");
    // The test command: README gives ./test.sh, which ends in cargo test,
    // and CI runs exactly that script.
    assert!(
        readme.lines().any(|l| l.trim() == "./test.sh"),
        "README.md gives `./test.sh`"
    );
    let script = std::fs::read_to_string(repo.join("test.sh")).unwrap();
    assert!(
        script
            .lines()
            .any(|l| l.starts_with("exec cargo test --locked")),
        "test.sh runs cargo test"
    );
    let ci = std::fs::read_to_string(repo.join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l == "exec ./test.sh"),
        ".ci/run calls ./test.sh"
    );
    let extra_bins = std::fs::read_dir(repo.join("src/bin"))
        .map(|d| d.count())
        .unwrap_or(0);
    let manifest = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
    assert!(
        extra_bins == 0
            || manifest
                .lines()
                .any(|l| l.trim() == "default-run = \"kubeboot\""),
        "src/bin/ has {extra_bins} more binaries: `cargo run` needs default-run = \"kubeboot\" in Cargo.toml"
    );
    let mut args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
    let root = tmpdir("readme");
    let at = args.iter().position(|a| a == "--root").expect("--root") + 1;
    args[at] = root.to_str().unwrap().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = kubeboot(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("rendered a control-plane"), "{out}");
    assert!(
        root.join("etc/kubernetes/manifests/kube-apiserver.yaml")
            .is_file()
    );
    // "prints what it wrote": every file in the tree is listed once, with
    // the mode it has on disk, and nothing else is listed as a file
    use std::os::unix::fs::PermissionsExt;
    // (the run lock, var/lib/kubeboot/lock, is kubeboot's own, not a node file)
    let mut on_disk: Vec<(String, String)> = cli_support::files_under(&root, &["var/lib/kubeboot"])
        .into_iter()
        .map(|rel| {
            let m = std::fs::symlink_metadata(root.join(&rel)).unwrap();
            let mode = format!("{:04o}", m.permissions().mode() & 0o7777);
            (mode, format!("/{}", rel.display()))
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 3 && w[0].len() == 4 && w[0].starts_with('0') && w[2].starts_with('/'))
                .then(|| (w[0].to_string(), w[2].to_string()))
        })
        .collect();
    listed.sort();
    assert!(on_disk.len() > 30, "{on_disk:?}");
    assert_eq!(listed, on_disk, "the listing and the tree differ:\n{out}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// `kubeboot render ... | head -1`: a reader that goes away early must not
/// turn a finished render into a panic (stdout is the journal at boot).
#[test]
fn closed_stdout_is_not_a_panic() {
    let root = tmpdir("closed-stdout");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args(["render", "--example", "control-plane", "--root"])
        .arg(&root)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before the first line
    let o = child.wait_with_output().unwrap();
    let err = text(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(root.join("etc/kubernetes/admin.conf").is_file());
    std::fs::remove_dir_all(&root).unwrap();
}

/// A worker's kubelet-start leaves the kubelet's staticPodPath present,
/// empty and private, as kubeadm's join does (through the command, not the
/// library's render).
#[test]
fn a_rendered_worker_has_an_empty_private_manifests_dir() {
    use std::os::unix::fs::PermissionsExt;
    let root = tmpdir("worker-manifests");
    render_worker(&root);
    let dir = root.join("etc/kubernetes/manifests");
    let m = std::fs::metadata(&dir).expect("no /etc/kubernetes/manifests on a worker");
    assert_eq!(m.permissions().mode() & 0o7777, 0o700);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&root).unwrap();
}

/// A cloud-config like the one `benches/validate-memory.py` calls
/// many-small (20,000 small entries read entry by entry, then one base64
/// block large enough to be lifted out before the parse), with `bad` in
/// place of entry 17,345 when given.
fn many_small(bad: Option<&str>) -> String {
    use base64::Engine;
    let mut s = String::from(
        "#cloud-config\nkubeboot:\n  apiVersion: kubeboot.dev/v1alpha1\n  role: worker\n  server: 10.0.0.10:6443\n  token: abcdef.0123456789abcdef\n  caCertHash: sha256:a5c1107a20290cfd98e8ec46a53f94c3894f0a6fef4d0628c47f00e6a43bd18b\nwrite_files:\n",
    );
    for i in 0..20_000 {
        match bad {
            Some(b) if i == 17_345 => s.push_str(b),
            _ => s.push_str(&format!(
                "  - path: /opt/small/file-{i}.txt\n    content: small file {i}\n"
            )),
        }
    }
    let data: Vec<u8> = (0..150_000u32).map(|i| (i * 7 + i / 5) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    s.push_str("  - path: /opt/blob.bin\n    encoding: b64\n    content: |\n");
    for line in b64.as_bytes().chunks(76) {
        s.push_str("      ");
        s.push_str(std::str::from_utf8(line).unwrap());
        s.push('\n');
    }
    s
}

#[test]
fn validate_reads_twenty_thousand_entries_and_names_a_bad_one_by_index() {
    let dir = tmpdir("many-small");
    let f = dir.join("user-data");
    std::fs::write(&f, many_small(None)).unwrap();
    let o = kubeboot(&["config", "validate", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains(": ok (kubeboot NodeConfig, join-worker)"),
        "{}",
        text(&o.stdout)
    );
    // every ignored entry is still named, in order
    let err = text(&o.stderr);
    let ignored: Vec<&str> = err.lines().filter(|l| l.contains("): ignored")).collect();
    assert_eq!(ignored.len(), 20_001, "{}", &err[..err.len().min(2000)]);
    assert!(ignored[17_345].contains("write_files[17345] (/opt/small/file-17345.txt)"));
    assert!(ignored[20_000].contains("write_files[20000] (/opt/blob.bin)"));

    for (bad, want) in [
        (
            "  - path: /opt/x\n    permissions: 600\n",
            "write_files[17345] (/opt/x): permissions must be an octal string such as '0600', not a YAML number",
        ),
        ("  - content: x\n", "write_files[17345]: path is missing"),
        (
            "  - path: /etc/kubeboot/config.yaml\n    content: 'role: worker'\n    append: true\n",
            "write_files[17345] (/etc/kubeboot/config.yaml): append: true is not supported",
        ),
        (
            "  - path: /opt/x\n    path: /opt/y\n",
            "write_files[17345]: duplicate entry with key \"path\" at line 34699",
        ),
    ] {
        std::fs::write(&f, many_small(Some(bad))).unwrap();
        let o = kubeboot(&["config", "validate", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        let err = text(&o.stderr);
        assert!(err.contains(want), "{bad:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // a bad character in the lifted block, past the 20,000 entries
    let text_in = many_small(None);
    let at = text_in.rfind("      ").unwrap() + 10;
    let mut bytes = text_in.into_bytes();
    bytes[at] = b'*';
    std::fs::write(&f, bytes).unwrap();
    let o = kubeboot(&["config", "validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("write_files[20000] (/opt/blob.bin): content: not valid base64 (invalid character at offset"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every subcommand's own help opens with the line its parent's help
/// lists it by. Subcommand arguments are built only when the command line
/// reaches them (deferred), after the subcommand's about text: a doc
/// comment on an `Args` struct would then replace that text in the
/// subcommand's own help (`cli::command`). Also: `help init phase` and
/// `help join phase` are in the bash completion's `help` tree.
#[test]
fn each_subcommand_help_opens_with_its_listed_summary() {
    fn walk(cmd: &clap::Command, path: &mut Vec<String>, checked: &mut usize) {
        for sub in cmd.get_subcommands() {
            path.push(sub.get_name().to_string());
            if let Some(about) = sub.get_about() {
                let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
                args.push("--help");
                let o = kubeboot(&args);
                assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
                let out = text(&o.stdout);
                assert_eq!(
                    out.lines().next().unwrap_or_default(),
                    about.to_string().lines().next().unwrap_or_default(),
                    "kubeboot {}",
                    args.join(" ")
                );
                *checked += 1;
            }
            walk(sub, path, checked);
            path.pop();
        }
    }
    let mut checked = 0;
    walk(&kubeboot::cli::command(), &mut Vec::new(), &mut checked);
    assert!(checked >= 20, "only {checked} subcommands checked");
    let bash = text(&kubeboot(&["completion", "bash"]).stdout);
    for cmd in ["init", "join"] {
        assert!(
            bash.contains(&format!("kubeboot__subcmd__help__subcmd__{cmd},phase)")),
            "no `help {cmd} phase` in the bash completion"
        );
    }
}
