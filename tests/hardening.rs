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
