//! Hardening (issue 10): one run at a time, a dry run that writes nothing,
//! no secret at any log level or in any error, safe modes for every file,
//! reads that never block. Each test drives the real binary on a fake root;
//! PKI trees are checked with openssl, never with kubeboot's own code.

mod cli_support;
mod net_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cli_support::text;
use net_support::{Server, ok};

fn tmpdir(name: &str) -> PathBuf {
    cli_support::tmpdir("hard", name)
}

const CP: &str = "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode:\n  name: cp-1\n  advertiseAddress: 127.0.0.1\n";

/// The phases of an init that need a running API server: skipped by the
/// concurrency test, whose trees are checked offline.
const API_PHASES: &str =
    "wait-control-plane,upload-config,mark-control-plane,bootstrap-token,addon,kubelet-finalize";

fn write(p: &Path, s: &str) -> PathBuf {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
    p.to_path_buf()
}

#[allow(dead_code)]
fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The binary under test; `KUBEBOOT_BIN` runs these tests against another
/// build (e.g. main's, to see them fail there).
fn bin() -> Command {
    let mut c = Command::new(
        std::env::var_os("KUBEBOOT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_kubeboot").into()),
    );
    c.env_remove("KUBEBOOT_LOCK_TIMEOUT");
    c
}

#[allow(dead_code)]
fn kubeboot(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

/// Like [`kubeboot`], with the lock wait (seconds) in the environment.
fn kubeboot_lock_wait(wait: &str, args: &[&str]) -> Output {
    bin()
        .env("KUBEBOOT_LOCK_TIMEOUT", wait)
        .args(args)
        .output()
        .unwrap()
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl (Debian package openssl) must be installed")
}

/// What is wrong with the PKI tree under `root`, checked with openssl:
/// each CA key is its certificate's key, and admin.conf's client
/// certificate, the apiserver and front-proxy-client certificates are
/// signed by their CAs.
fn tree_faults(root: &Path) -> Vec<String> {
    use base64::Engine;
    let pki = root.join("etc/kubernetes/pki");
    let mut faults = Vec::new();
    for ca in ["ca", "front-proxy-ca", "etcd/ca"] {
        let crt = pki.join(format!("{ca}.crt"));
        let key = pki.join(format!("{ca}.key"));
        let a = openssl(&["x509", "-in", crt.to_str().unwrap(), "-noout", "-pubkey"]);
        let b = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
        if !a.status.success() || !b.status.success() || a.stdout != b.stdout {
            faults.push(format!("{ca}.key is not the key of {ca}.crt"));
        }
    }
    let admin = root.join("etc/kubernetes/admin.conf");
    let leaf = std::fs::read_to_string(&admin)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
                .map(str::to_string)
        })
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    match leaf {
        Some(pem) => {
            let f = root.join("admin-client.crt");
            std::fs::write(&f, pem).unwrap();
            if !verify(&pki.join("ca.crt"), &f) {
                faults.push("admin.conf's certificate is not signed by ca.crt".into());
            }
        }
        None => faults.push("admin.conf has no client certificate".into()),
    }
    for (ca, leaf) in [
        ("ca", "apiserver"),
        ("front-proxy-ca", "front-proxy-client"),
        ("etcd/ca", "etcd/server"),
    ] {
        if !verify(
            &pki.join(format!("{ca}.crt")),
            &pki.join(format!("{leaf}.crt")),
        ) {
            faults.push(format!("{leaf}.crt is not signed by {ca}.crt"));
        }
    }
    faults
}

fn verify(ca: &Path, leaf: &Path) -> bool {
    let o = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        leaf.to_str().unwrap(),
    ]);
    o.status.success()
}

/// Holds `<root>/var/lib/kubeboot/lock` like another kubeboot run would
/// (an flock, our pid written in it).
fn hold_lock(root: &Path) -> std::fs::File {
    use std::io::Write;
    let p = root.join("var/lib/kubeboot/lock");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&p)
        .unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    writeln!(f, "{}", std::process::id()).unwrap();
    f
}

/// `kubeboot firstboot` on `root` with no platform to probe and a
/// systemctl that always fails, plus `extra` arguments.
fn firstboot_offline(root: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "firstboot",
        "--platform",
        "none",
        "--root",
        root.to_str().unwrap(),
        "--systemctl",
        "/bin/false",
    ];
    args.extend_from_slice(extra);
    kubeboot(&args)
}
#[test]
fn a_second_run_waits_for_the_lock_then_fails_naming_the_holder() {
    let dir = tmpdir("lock");
    let cfg = write(&dir.join("cp.yaml"), CP);
    let root = dir.join("root");
    let held = hold_lock(&root);
    let started = std::time::Instant::now();
    let o = kubeboot_lock_wait(
        "1",
        &[
            "render",
            "--config",
            cfg.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert!(
        !root.join("etc/kubernetes").exists(),
        "nothing written while another run holds the lock"
    );
    // init and firstboot wait for the same lock
    let fb = kubeboot_lock_wait(
        "0",
        &[
            "firstboot",
            "--config",
            cfg.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--platform",
            "none",
        ],
    );
    assert_eq!(fb.status.code(), Some(1), "{}", text(&fb.stderr));
    assert!(text(&fb.stderr).contains("holds"), "{}", text(&fb.stderr));
    assert!(!root.join("var/lib/kubeboot/status.json").exists());
    drop(held);
    // released: the same command now runs
    let o = kubeboot_lock_wait(
        "1",
        &[
            "render",
            "--config",
            cfg.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts `kubeboot args` with output captured.
fn spawn(args: &[String]) -> std::process::Child {
    bin()
        .env("KUBEBOOT_LOCK_TIMEOUT", "120")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// 20 pairs of `render` and 20 pairs of `firstboot` (init, API phases
/// skipped), each pair started together on one fresh root. Every tree must
/// verify with openssl; a `success` status beside a broken tree is the bug
/// this guards against.
#[test]
fn concurrent_pairs_on_one_root_leave_a_sound_tree() {
    const PAIRS: usize = 20;
    const BATCH: usize = 5;
    let dir = tmpdir("stress");
    let cfg = write(&dir.join("cp.yaml"), CP);
    let healthz = Server::http(|_, _| ok(b"ok"));
    let sc = write(&dir.join("systemctl"), "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(&sc, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut verified = 0;
    let mut successes = 0;
    for kind in ["render", "firstboot"] {
        for batch in 0..PAIRS / BATCH {
            let mut running = Vec::new();
            for i in 0..BATCH {
                let root = dir.join(format!("{kind}-{}", batch * BATCH + i));
                let args: Vec<String> = if kind == "render" {
                    ["render", "--config", cfg.to_str().unwrap()]
                        .map(str::to_string)
                        .to_vec()
                } else {
                    cli_support::seed(&root, CP);
                    let mut a = cli_support::firstboot_args(
                        &root,
                        &sc,
                        &format!("{}/healthz", healthz.base()),
                        "20",
                        "20",
                    );
                    a.extend(["--skip-phases".into(), API_PHASES.into()]);
                    a
                };
                let mut args = args;
                if kind == "render" {
                    args.extend(["--root".into(), root.to_str().unwrap().into()]);
                }
                let pair = (spawn(&args), spawn(&args));
                running.push((root, pair));
            }
            for (root, (a, b)) in running {
                let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
                for o in &outs {
                    assert!(
                        o.status.success(),
                        "{kind} on {}: {}",
                        root.display(),
                        text(&o.stderr)
                    );
                }
                let faults = tree_faults(&root);
                assert!(
                    faults.is_empty(),
                    "{kind} pair on {}: {faults:?}",
                    root.display()
                );
                verified += 1;
                if kind == "firstboot" {
                    let st =
                        std::fs::read_to_string(root.join("var/lib/kubeboot/status.json")).unwrap();
                    if st.contains("\"result\": \"success\"") {
                        successes += 1;
                    }
                    // the second run waited, then found the marker
                    let said: String = outs.iter().map(|o| text(&o.stdout)).collect();
                    assert!(said.contains("bootstrapped already"), "{said}");
                }
                std::fs::remove_dir_all(&root).unwrap();
            }
        }
    }
    eprintln!(
        "concurrency: {} pairs run, {verified} trees verified with openssl, {successes} firstboot successes, 0 broken",
        2 * PAIRS
    );
    assert_eq!(verified, 2 * PAIRS);
    assert_eq!(successes, PAIRS);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A control plane rendered into `dir/src` (for real CA material).
fn rendered(dir: &Path) -> PathBuf {
    let cfg = write(&dir.join("src.yaml"), CP);
    let root = dir.join("src");
    let o = kubeboot(&[
        "render",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    root
}

fn render_into(cfg: &Path, root: &Path) -> Output {
    kubeboot(&[
        "render",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ])
}

/// A cloud-config for the control plane carrying `files` (path, mode,
/// content) as base64 write_files entries.
fn cloud_config(files: &[(&str, &str, Vec<u8>)]) -> String {
    use base64::Engine;
    let mut s = String::from(
        "#cloud-config\nkubeboot:\n  role: control-plane\n  node:\n    name: cp-1\n    advertiseAddress: 127.0.0.1\nwrite_files:\n",
    );
    for (path, perm, content) in files {
        s += &format!(
            "- path: {path}\n  permissions: '{perm}'\n  encoding: b64\n  content: {}\n",
            base64::engine::general_purpose::STANDARD.encode(content)
        );
    }
    s
}

#[test]
fn carried_pki_files_get_kubeadms_modes_with_a_warning() {
    let dir = tmpdir("pkimodes");
    let src = rendered(&dir);
    let pki = src.join("etc/kubernetes/pki");
    let read = |n: &str| std::fs::read(pki.join(n)).unwrap();
    let cfg = write(
        &dir.join("ud.yaml"),
        &cloud_config(&[
            ("/etc/kubernetes/pki/ca.crt", "0666", read("ca.crt")),
            ("/etc/kubernetes/pki/ca.key", "4755", read("ca.key")),
            ("/etc/kubernetes/pki/sa.pub", "0644", read("sa.pub")),
            ("/etc/kubernetes/pki/sa.key", "0600", read("sa.key")),
            (
                "/etc/kubernetes/pki/front-proxy-ca.crt",
                "7777",
                read("front-proxy-ca.crt"),
            ),
            (
                "/etc/kubernetes/pki/front-proxy-ca.key",
                "6777",
                read("front-proxy-ca.key"),
            ),
        ]),
    );
    let root = dir.join("root");
    let o = render_into(&cfg, &root);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    let got = root.join("etc/kubernetes/pki");
    for (name, want) in [
        ("ca.crt", 0o644),
        ("ca.key", 0o600),
        ("sa.pub", 0o600),
        ("sa.key", 0o600),
        ("front-proxy-ca.crt", 0o644),
        ("front-proxy-ca.key", 0o600),
    ] {
        assert_eq!(mode(&got.join(name)), want, "{name}");
    }
    for narrowed in [
        "ca.crt",
        "ca.key",
        "sa.pub",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
    ] {
        assert!(
            err.lines().any(|l| l.contains("warning")
                && l.contains(&format!("/etc/kubernetes/pki/{narrowed}"))
                && l.contains("mode")),
            "no warning naming {narrowed}: {err}"
        );
    }
    assert!(
        !err.lines()
            .any(|l| l.contains("warning") && l.contains("/etc/kubernetes/pki/sa.key")),
        "sa.key's mode was already right: {err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn write_files_naming_a_directory_kubeboot_needs_is_refused_at_validation() {
    let dir = tmpdir("wfdir");
    for path in [
        "/etc/kubernetes/pki/",
        "/etc/kubernetes/pki",
        "/etc/kubernetes/pki/etcd",
        "/etc/kubernetes/pki/etcd/",
        "/etc/kubernetes/pki/x/",
    ] {
        let cfg = write(
            &dir.join("ud.yaml"),
            &cloud_config(&[(path, "0644", b"x".to_vec())]),
        );
        let o = kubeboot(&["config", "validate", cfg.to_str().unwrap()]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{path}: {err}");
        assert!(err.contains("write_files[0]"), "{path}: {err}");
        assert!(err.contains("directory"), "{path}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The SHA-256 of `file` in hex, by coreutils' `sha256sum`.
fn sha256_hex(file: &Path) -> String {
    let o = Command::new("sha256sum").arg(file).output().unwrap();
    assert!(o.status.success());
    text(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A power cut before the creating run's sync can leave a CA certificate
/// beside a lost (empty or missing) key. The run marked the certificate
/// (`.kubeboot-new-ca.<name>.<sha256>`, removed after its sync), so the
/// rerun knows nothing outside had the CA and makes it anew; the new tree
/// verifies with openssl, and no mark is left. A mark for another
/// certificate vouches for nothing: the rerun refuses, naming the key.
#[test]
fn a_ca_cut_off_before_its_sync_is_made_anew_only_when_marked() {
    let dir = tmpdir("cutoff");
    let cfg = write(&dir.join("cp.yaml"), CP);
    for (case, lose) in [("empty", true), ("missing", false)] {
        let root = dir.join(case);
        let o = render_into(&cfg, &root);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let pki = root.join("etc/kubernetes/pki");
        let old_crt = std::fs::read(pki.join("ca.crt")).unwrap();
        // the state a cut leaves: the certificate, the key lost, the mark
        let mark = pki.join(format!(
            ".kubeboot-new-ca.ca.{}",
            sha256_hex(&pki.join("ca.crt"))
        ));
        std::fs::write(&mark, b"").unwrap();
        if lose {
            std::fs::write(pki.join("ca.key"), b"").unwrap();
        } else {
            std::fs::remove_file(pki.join("ca.key")).unwrap();
        }
        let o = render_into(&cfg, &root);
        let err = text(&o.stderr);
        assert!(o.status.success(), "{case}: {err}");
        assert!(err.contains("made anew"), "{case}: {err}");
        assert_ne!(
            std::fs::read(pki.join("ca.crt")).unwrap(),
            old_crt,
            "{case}"
        );
        assert!(
            !std::fs::read(pki.join("ca.key")).unwrap().is_empty(),
            "{case}"
        );
        assert_eq!(tree_faults(&root), Vec::<String>::new(), "{case}");
        let left: Vec<_> = std::fs::read_dir(&pki)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{case}: {left:?}");
    }
    // a mark that names another certificate
    let root = dir.join("other");
    assert!(render_into(&cfg, &root).status.success());
    let pki = root.join("etc/kubernetes/pki");
    std::fs::write(
        pki.join(format!(".kubeboot-new-ca.ca.{}", "0".repeat(64))),
        b"",
    )
    .unwrap();
    std::fs::write(pki.join("ca.key"), b"").unwrap();
    let o = render_into(&cfg, &root);
    let err = text(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{err}");
    let last = err.lines().rfind(|l| l.starts_with("error")).unwrap_or("");
    assert!(last.contains("ca.key"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_empty_ca_key_beside_a_valid_ca_crt_is_named() {
    let dir = tmpdir("emptykey");
    let src = rendered(&dir);
    let root = dir.join("root");
    let pki = root.join("etc/kubernetes/pki");
    std::fs::create_dir_all(&pki).unwrap();
    std::fs::copy(src.join("etc/kubernetes/pki/ca.crt"), pki.join("ca.crt")).unwrap();
    std::fs::write(pki.join("ca.key"), b"").unwrap();
    let cfg = write(&dir.join("cp.yaml"), CP);
    let o = render_into(&cfg, &root);
    let err = text(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{err}");
    let last = err.lines().rfind(|l| l.starts_with("error")).unwrap_or("");
    assert!(last.contains("ca.key"), "{err}");
    assert!(!last.contains("apiserver.crt"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_single_phase_run_keeps_the_record_of_the_last_full_run() {
    let dir = tmpdir("phasestatus");
    let root = dir.join("root");
    let cfg = write(&dir.join("cp.yaml"), CP);
    let failed =
        "{\n  \"result\": \"failure\",\n  \"role\": \"init\",\n  \"phase\": \"preflight\"\n}\n";
    let st = write(&root.join("var/lib/kubeboot/status.json"), failed);
    let o = kubeboot(&[
        "init",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "phase",
        "certs",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(root.join("etc/kubernetes/pki/ca.crt").exists());
    assert_eq!(std::fs::read_to_string(&st).unwrap(), failed);
    assert!(!root.join("var/lib/kubeboot/done").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

const WORKER_TOKEN: &str = "abcdef.0123456789abcdef";

fn worker_config() -> String {
    format!(
        "apiVersion: kubeboot.dev/v1alpha1\nrole: worker\nserver: 127.0.0.1:6443\ntoken: {WORKER_TOKEN}\ncaCertHash: sha256:{}\n",
        "0".repeat(64)
    )
}

#[test]
fn a_world_readable_config_file_holding_a_token_is_warned_about() {
    let dir = tmpdir("readable");
    let root = dir.join("root");
    let cfg = write(&root.join("etc/kubeboot/config.yaml"), &worker_config());
    let show = |cfg_mode: u32| {
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(cfg_mode)).unwrap();
        let o = kubeboot(&[
            "config",
            "show",
            "--source",
            "auto",
            "--platform",
            "none",
            "--root",
            root.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stderr)
    };
    let err = show(0o644);
    assert!(
        err.lines().any(|l| l.starts_with("warning")
            && l.contains("/etc/kubeboot/config.yaml")
            && l.contains("readable by every local user")),
        "{err}"
    );
    assert!(!err.contains("0123456789abcdef"), "{err}");
    let err = show(0o600);
    assert!(!err.contains("readable by every local user"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn mkfifo(p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

/// Runs `kubeboot args`, killing it after 20 s (a blocked read).
fn kubeboot_bounded(args: &[&str]) -> Output {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!("blocked: {args:?}: {}", text(&o.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_fifo_where_userdata_is_read_never_blocks() {
    let dir = tmpdir("fifo");
    // a file given on the command line
    let f = dir.join("ud.fifo");
    mkfifo(&f);
    let o = kubeboot_bounded(&["config", "validate", f.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ud.fifo") && err.contains("not a regular file"),
        "{err}"
    );
    // the kubeboot config file and the NoCloud seed, found by --source auto
    for at in [
        "etc/kubeboot/config.yaml",
        "var/lib/cloud/seed/nocloud/user-data",
    ] {
        let root = dir.join(at.replace('/', "-"));
        mkfifo(&root.join(at));
        for args in [
            vec!["config", "show", "--source", "auto"],
            vec!["firstboot", "--systemctl", "/bin/false"],
        ] {
            let mut args = args;
            args.extend(["--platform", "none", "--root", root.to_str().unwrap()]);
            let o = kubeboot_bounded(&args);
            let err = text(&o.stderr);
            assert_ne!(o.status.code(), Some(0), "{args:?}: {err}");
            assert!(err.contains("not a regular file"), "{args:?}: {err}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A token and a certificate key pasted into the wrong fields: no error,
/// log line or status file shows them (or the configured secret), and
/// quoted values stay short.
#[test]
fn a_secret_pasted_into_the_wrong_field_is_never_echoed() {
    const TOKEN: &str = "k9x2m4.q7w8e9r0t1y2u3i4";
    const SECRET: &str = "q7w8e9r0t1y2u3i4";
    let key = "0123456789abcdef".repeat(4);
    let pin = format!("caCertHash: sha256:{}", "a".repeat(64));
    let head = "apiVersion: kubeboot.dev/v1alpha1\nrole: worker\n";
    let good = format!("server: 10.0.0.1:6443\ntoken: {TOKEN}\n");
    let cases = [
        format!("{head}server: {TOKEN}\ntoken: {TOKEN}\n{pin}\n"),
        format!("{head}{good}caCertHash: {TOKEN}\n"),
        format!("{head}{good}caCertHash: {key}\n"),
        format!("{head}{good}{pin}\n{TOKEN}: 1\n"),
        // the configured secret alone, as a key name and as the server
        format!("{head}{good}{pin}\n{SECRET}: 1\n"),
        format!("{head}server: {SECRET}\ntoken: {TOKEN}\n{pin}\n"),
        format!("{head}{good}{pin}\nnode:\n  name: {key}\n"),
        format!("{head}server: https://10.0.0.1:6443/{key}\ntoken: {TOKEN}\n{pin}\n"),
        format!(
            "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\ncertificateKey: {key}\nnode:\n  name: {key}\n"
        ),
        format!(
            "## template: jinja\n#cloud-config\nkubeboot:\n  role: worker\n  server: '{{{{ {TOKEN} }}}}'\n"
        ),
        format!(
            "#cloud-config\nwrite_files:\n- path: /etc/kubernetes/pki/ca.crt\n  encoding: {TOKEN}\n  content: x\n"
        ),
        format!(
            "{head}{good}{pin}\nnode:\n  name: \"{}\"\n",
            "x".repeat(300)
        ),
    ];
    let dir = tmpdir("pasted");
    let mut runs = 0;
    for (i, case) in cases.iter().enumerate() {
        let cfg = write(&dir.join(format!("c{i}.yaml")), case);
        let root = dir.join(format!("root{i}"));
        cli_support::seed(&root, case);
        let validate = kubeboot(&["config", "validate", cfg.to_str().unwrap()]);
        let fb = firstboot_offline(&root, &[]);
        for o in [&validate, &fb] {
            assert_ne!(o.status.code(), Some(0), "case {i} was accepted: {case}");
            runs += 1;
        }
        let status =
            std::fs::read_to_string(root.join("var/lib/kubeboot/status.json")).unwrap_or_default();
        assert!(status.contains("\"failure\""), "case {i}: {status}");
        for (what, t) in [
            ("validate stderr", text(&validate.stderr)),
            ("validate stdout", text(&validate.stdout)),
            ("firstboot stderr", text(&fb.stderr)),
            ("firstboot stdout", text(&fb.stdout)),
            ("status.json", status),
        ] {
            assert!(!t.contains(SECRET), "case {i}: secret in {what}: {t}");
            assert!(!t.contains(&key), "case {i}: key in {what}: {t}");
            assert!(
                !t.contains(&"x".repeat(60)),
                "case {i}: a long value quoted in {what}: {t}"
            );
        }
    }
    eprintln!(
        "pasted secrets: {} cases, {runs} runs, 0 echoes",
        cases.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every file (path and mode) and its metadata under `root`, recursively.
fn tree_state(root: &Path) -> Vec<(PathBuf, u32, Vec<u8>, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let bytes = if m.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).unwrap()
            };
            out.push((p, m.permissions().mode(), bytes, m.modified().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_dry_run_writes_nothing_and_lists_files_and_requests() {
    let dir = tmpdir("dryrun");
    let cfg = write(&dir.join("cp.yaml"), CP);
    // a fresh root: not even created
    let fresh = dir.join("fresh");
    let o = kubeboot(&[
        "init",
        "--dry-run",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        fresh.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!fresh.exists(), "a dry run created --root");
    let out = text(&o.stdout);
    for line in [
        "would write /etc/kubernetes/pki/ca.key mode 0600, ",
        "would write /etc/kubernetes/pki/ca.crt mode 0644, ",
        "would write /etc/kubernetes/admin.conf mode 0600, ",
        "would write directory /etc/kubernetes/manifests mode 0700 (created)",
        "would send POST /api/v1/namespaces/kube-system/configmaps (ConfigMap kube-system/kubeadm-config)",
        "would send PATCH /api/v1/nodes/cp-1 (Node cp-1: control-plane label and taints)",
        "would send POST /apis/apps/v1/namespaces/kube-system/deployments (Deployment kube-system/coredns)",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    assert!(out.contains("bytes (created)"), "{out}");
    let err = text(&o.stderr);
    assert!(
        err.contains("[certs] would write ca") && !err.contains("] wrote "),
        "a dry run's log says it wrote: {err}"
    );
    // an existing node: kept, replaced and created, nothing touched
    let root = dir.join("node");
    let o = render_into(&cfg, &root);
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::remove_file(root.join("etc/kubernetes/admin.conf")).unwrap();
    let kubelet = root.join("var/lib/kubelet/config.yaml");
    let mut edited = std::fs::read(&kubelet).unwrap();
    edited.extend_from_slice(b"# edited\n");
    std::fs::write(&kubelet, &edited).unwrap();
    let before = tree_state(&root);
    let o = kubeboot(&[
        "init",
        "--dry-run",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(before == tree_state(&root), "a dry run changed the tree");
    let out = text(&o.stdout);
    for (file, action) in [
        ("/etc/kubernetes/admin.conf", "created"),
        ("/var/lib/kubelet/config.yaml", "replaced"),
        ("/etc/kubernetes/manifests/kube-apiserver.yaml", "kept"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("would write {file} mode"))
                    && l.ends_with(&format!("({action})"))),
            "{file} {action}:\n{out}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn world_writable_directories_get_kubeadms_modes_and_etcd_data_is_0700() {
    let dir = tmpdir("dirmodes");
    let cfg = write(&dir.join("cp.yaml"), CP);
    let root = dir.join("root");
    let dirs = [
        ("etc/kubernetes/manifests", 0o700),
        ("etc/kubernetes/pki", 0o755),
        ("var/lib/kubelet", 0o700),
    ];
    for (d, _) in dirs {
        let p = root.join(d);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let o = render_into(&cfg, &root);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    for (d, want) in dirs {
        assert_eq!(mode(&root.join(d)), want, "{d}");
        assert!(
            err.lines()
                .any(|l| l.starts_with("warning") && l.contains(&format!("{d}: was mode 0777"))),
            "no warning for {d}: {err}"
        );
    }
    // the stacked etcd's data directory, as kubeadm creates it
    assert_eq!(mode(&root.join("var/lib/etcd")), 0o700);
    // a rerun has nothing to fix
    let o = render_into(&cfg, &root);
    assert!(o.status.success());
    assert!(!text(&o.stderr).contains("was mode"), "{}", text(&o.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_userdata_says_reading_userdata_failed() {
    let dir = tmpdir("words");
    let root = dir.join("root");
    cli_support::seed(&root, "apiVersion: kubeboot.dev/v1alpha1\nrole: wizard\n");
    let o = firstboot_offline(&root, &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("kubeboot: reading userdata FAILED: "), "{err}");
    assert!(
        !err.contains("unknown FAILED") && !err.contains("phase -"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_worker_lists_control_plane_phases_as_not_applicable() {
    let dir = tmpdir("notapplicable");
    let root = dir.join("root");
    let port = net_support::closed_port();
    cli_support::seed(
        &root,
        &worker_config().replace("127.0.0.1:6443", &format!("127.0.0.1:{port}")),
    );
    let o = firstboot_offline(
        &root,
        &[
            "--ignore-preflight-errors",
            "all",
            "--discovery-timeout",
            "1",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("var/lib/kubeboot/status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(st["phase"], "discovery", "{st}");
    let outcome = |name: &str| {
        st["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no phase {name}: {st}"))["outcome"]
            .clone()
    };
    assert_eq!(outcome("control-plane-join"), "not-applicable", "{st}");
    assert_eq!(outcome("kubelet-start"), "not-run", "{st}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn preflight_errors_are_one_line_per_check_printed_once() {
    let dir = tmpdir("preflight");
    let root = dir.join("root");
    cli_support::seed(&root, CP);
    let o = firstboot_offline(&root, &[]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let checks: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split_once("[ERROR ").map(|(_, rest)| rest))
        .collect();
    assert!(!checks.is_empty(), "no preflight error listed: {err}");
    for c in &checks {
        assert_eq!(
            checks.iter().filter(|d| *d == c).count(),
            1,
            "{c} printed more than once: {err}"
        );
        assert_eq!(
            c.matches("[ERROR ").count(),
            0,
            "two checks on one line: {err}"
        );
    }
    for l in err.lines() {
        assert!(l.len() < 400, "a {}-character line: {l}", l.len());
    }
    // ignored, each error is still shown once, as a warning (kubeadm prints
    // an ignored check as "[WARNING <name>]"), and the run gets past preflight
    let o = firstboot_offline(&root, &["--ignore-preflight-errors", "all"]);
    let err2 = text(&o.stderr);
    assert!(!err2.contains("[ERROR "), "{err2}");
    for c in &checks {
        let name = c.split(']').next().unwrap();
        let shown = err2
            .lines()
            .filter(|l| l.contains(&format!("[WARNING {name}]")) && l.ends_with("(ignored)"))
            .count();
        assert_eq!(
            shown, 1,
            "{name} not shown once as an ignored warning: {err2}"
        );
    }
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("var/lib/kubeboot/status.json")).unwrap(),
    )
    .unwrap();
    assert_ne!(st["phase"], "preflight", "{st}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_show_refuses_a_file_and_config_together() {
    let dir = tmpdir("showboth");
    let a = write(&dir.join("a.yaml"), CP);
    let b = write(&dir.join("b.yaml"), &worker_config());
    let o = kubeboot(&[
        "config",
        "show",
        a.to_str().unwrap(),
        "--config",
        b.to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not both"), "{err}");
    assert!(o.stdout.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_upper_case_node_name_is_refused_like_kubeadm() {
    let dir = tmpdir("nodename");
    let cfg = write(
        &dir.join("w.yaml"),
        &format!("{}node:\n  name: Worker-01\n", worker_config()),
    );
    let o = kubeboot(&["config", "validate", cfg.to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("node.name") && err.contains("Worker-01"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The opens of route tables and the netlink sockets of `kubeboot render
/// --config CFG --root ROOT`, as strace lists them.
fn host_reads(dir: &Path, name: &str, config: &str) -> Vec<String> {
    let cfg = write(&dir.join(format!("{name}.yaml")), config);
    let trace = dir.join(format!("{name}.trace"));
    let o = Command::new("strace")
        .args(["-f", "-o"])
        .arg(&trace)
        .args(["-e", "trace=open,openat,socket"])
        .arg(bin().get_program())
        .args(["render", "--config"])
        .arg(&cfg)
        .arg("--root")
        .arg(dir.join(name))
        .output()
        .expect("strace is required (Debian package strace)");
    assert!(!o.stdout.is_empty() || !o.stderr.is_empty(), "no output");
    std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter(|l| l.contains("route\"") || l.contains("AF_NETLINK"))
        .map(str::to_owned)
        .collect()
}

/// The host's route tables and interface addresses are read only when a
/// default needs them: a config naming the node and its advertise address
/// reads neither (no route table opened, no netlink socket); one without
/// the address opens the route table (strace sees the read when it
/// happens, so the first assertion is not vacuous).
#[test]
fn host_routes_are_read_only_when_a_default_needs_them() {
    let dir = tmpdir("lazy-facts");
    let given = host_reads(&dir, "given", CP);
    assert!(given.is_empty(), "{given:#?}");
    let asked = host_reads(
        &dir,
        "asked",
        "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode:\n  name: cp-1\n",
    );
    assert!(
        asked.iter().any(|l| l.contains("net/route\"")),
        "{asked:#?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The in-progress status is replaced at each phase's start by exchanging
/// it with the new file (`renameat2(RENAME_EXCHANGE)`: ext4 does not force
/// the new data out, as it does on a rename over a file), while the final
/// status, fsynced, is renamed over it (strace). The file `kubeboot
/// status` reads is then the failure, whole.
#[test]
fn progress_statuses_are_exchanged_and_the_final_one_renamed() {
    let dir = tmpdir("exchange");
    let root = dir.join("root");
    cli_support::seed(&root, CP);
    let trace = dir.join("trace");
    let o = Command::new("strace")
        .args(["-f", "-o"])
        .arg(&trace)
        .args(["-e", "trace=rename,renameat,renameat2,fsync"])
        .arg(bin().get_program())
        .args(["firstboot", "--platform", "none", "--root"])
        .arg(&root)
        .args([
            "--systemctl",
            "/bin/false",
            "--ignore-preflight-errors",
            "all",
        ])
        .output()
        .expect("strace is required (Debian package strace)");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let text_ = std::fs::read_to_string(&trace).unwrap();
    let onto_status: Vec<&str> = text_
        .lines()
        .filter(|l| l.contains("\"status.json\"") && l.contains(" = 0"))
        .collect();
    let exchanged = onto_status
        .iter()
        .filter(|l| l.contains("RENAME_EXCHANGE"))
        .count();
    // preflight's start creates the file; certs, kubeconfig, etcd,
    // control-plane and kubelet-start replace it
    assert!(exchanged >= 5, "{onto_status:#?}");
    let last = onto_status.last().unwrap();
    assert!(!last.contains("RENAME_EXCHANGE"), "{onto_status:#?}");
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("var/lib/kubeboot/status.json")).unwrap())
            .unwrap();
    assert_eq!(st["result"], "failure", "{st}");
    assert_eq!(st["phase"], "kubelet-start", "{st}");
    let left: Vec<_> = std::fs::read_dir(root.join("var/lib/kubeboot"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("kubeboot-tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every path under `root` (relative) with its mode.
fn modes_under(root: &Path) -> Vec<(PathBuf, u32)> {
    tree_state(root)
        .into_iter()
        .map(|(p, mode, _, _)| (p.strip_prefix(root).unwrap().to_path_buf(), mode & 0o7777))
        .collect()
}

/// The modes kubeboot writes do not depend on the umask it is started
/// with: a render under umask 077 (which would take the group and other
/// bits out of 0644 and 0755) gives the same mode for every file and
/// directory as one under systemd's 0022, in which kubeboot's modes come
/// out whole and it sets none again (strace); `ca.crt` stays
/// world-readable.
#[test]
fn modes_do_not_depend_on_the_umask() {
    let dir = tmpdir("umask");
    let render = |umask: &str, name: &str| {
        let root = dir.join(name);
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(bin().get_program())
            .args(["render", "--example", "control-plane", "--root"])
            .arg(&root)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        modes_under(&root)
    };
    let usual = render("022", "usual");
    let tight = render("077", "tight");
    assert_eq!(usual, tight);
    // and modes are set again only when the umask narrows them: none
    // under 0022, some under 0077 (strace sees them when they are made)
    let chmods = |umask: &str, name: &str| {
        let trace = dir.join(format!("{name}.trace"));
        let o = Command::new("strace")
            .args(["-f", "-o"])
            .arg(&trace)
            .args(["-e", "trace=chmod,fchmod,fchmodat"])
            .args(["sh", "-c"])
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(bin().get_program())
            .args(["render", "--example", "control-plane", "--root"])
            .arg(dir.join(name))
            .output()
            .expect("strace is required (Debian package strace)");
        assert!(o.status.success(), "{}", text(&o.stderr));
        std::fs::read_to_string(&trace)
            .unwrap()
            .lines()
            .filter(|l| l.contains("chmod") && l.contains(" = 0"))
            .count()
    };
    assert_eq!(chmods("022", "traced-usual"), 0);
    assert!(chmods("077", "traced-tight") > 10);
    let mode_of = |rel: &str| {
        tight
            .iter()
            .find(|(p, _)| p == Path::new(rel))
            .map(|(_, m)| *m)
            .unwrap_or_else(|| panic!("{rel} missing: {tight:#?}"))
    };
    assert_eq!(mode_of("etc/kubernetes/pki/ca.crt"), 0o644);
    assert_eq!(mode_of("etc/kubernetes/pki/ca.key"), 0o600);
    assert_eq!(mode_of("etc/kubernetes/pki"), 0o755);
    std::fs::remove_dir_all(&dir).unwrap();
}
