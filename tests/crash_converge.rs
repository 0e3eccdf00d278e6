//! Crash safety: kill kubeboot with SIGKILL at every file rename and at
//! every write(2) during `render`, and at every rename during a live
//! `init` (fsync per file), then rerun and show the tree converges: the
//! rerun succeeds, no empty or temporary files remain, a further rerun
//! changes nothing, and the certificates verify with openssl.
//!
//! The kill is injected by strace (`-e inject=...:signal=KILL:when=N`), so
//! the shipped binary carries no fault-injection code.

mod cli_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tmpdir(name: &str) -> std::path::PathBuf {
    cli_support::tmpdir("crash", name)
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_kubeboot")
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// Runs `args` under strace, killed at the `n`th call of `syscalls`.
/// Returns true when the kill happened (the run did not finish).
fn run_killed_at(syscalls: &str, n: usize, args: &[&str]) -> bool {
    let o = Command::new("strace")
        .args(["-f", "-o", "/dev/null", "-e", &format!("trace={syscalls}")])
        .arg("-e")
        .arg(format!("inject={syscalls}:signal=KILL:when={n}"))
        .arg(bin())
        .args(args)
        .output()
        .expect("strace is required (Debian package strace)");
    !o.status.success()
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

/// The invariants a converged tree keeps.
fn assert_converged(root: &Path, rerun: &[&str], what: &str) {
    let o = run(rerun);
    assert!(
        o.status.success(),
        "{what}: rerun failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let first = snapshot(root);
    for (p, bytes) in &first {
        let name = p.to_string_lossy();
        assert!(
            !name.contains(".kubeboot-tmp"),
            "{what}: temporary file left: {name}"
        );
        assert!(
            !bytes.is_empty() || name.ends_with("/done"),
            "{what}: empty file: {name}"
        );
    }
    let o = run(rerun);
    assert!(o.status.success(), "{what}: second rerun failed");
    let second = snapshot(root);
    let changed: Vec<_> = first
        .keys()
        .filter(|k| first.get(*k) != second.get(*k))
        .collect();
    // status.json carries a timestamp and the run lock its holder's pid;
    // everything else must be a fixpoint
    let changed: Vec<_> = changed
        .into_iter()
        .filter(|p| {
            !p.ends_with("var/lib/kubeboot/status.json") && !p.ends_with("var/lib/kubeboot/lock")
        })
        .collect();
    assert!(
        changed.is_empty(),
        "{what}: not converged, a further rerun changed {changed:?}"
    );
}

fn openssl_verify_tree(root: &Path) {
    let pki = root.join("etc/kubernetes/pki");
    for (ca, leaves) in [
        (
            "ca.crt",
            &["apiserver.crt", "apiserver-kubelet-client.crt"][..],
        ),
        ("front-proxy-ca.crt", &["front-proxy-client.crt"][..]),
        (
            "etcd/ca.crt",
            &[
                "etcd/server.crt",
                "etcd/peer.crt",
                "etcd/healthcheck-client.crt",
                "apiserver-etcd-client.crt",
            ][..],
        ),
    ] {
        for leaf in leaves {
            let o = Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(pki.join(ca))
                .arg(pki.join(leaf))
                .output()
                .expect("openssl is required (Debian package openssl)");
            assert!(
                o.status.success(),
                "{leaf}: {}",
                String::from_utf8_lossy(&o.stdout)
            );
        }
    }
}

/// A power cut keeps only what was synced, and unsynced writes reach the
/// disk in any order: a cut can leave a new CA's valid `ca.crt` beside an
/// empty `ca.key`. The run marks each CA it makes before writing it (an
/// empty `.kubeboot-new-ca.<name>.<sha256>` file, renamed into place
/// before any CA file), makes everything durable with one `syncfs` and
/// removes the marks after it; a rerun that finds a lost key beside a
/// marked certificate makes the CA anew (tests/hardening.rs), and without
/// a mark refuses. strace lists the renames and syncs of a control-plane
/// render: the three marks come before every CA key and certificate, the
/// run syncs once, last, with no per-file fsync, and no mark is left.
#[test]
fn new_cas_are_marked_before_they_are_written_and_synced_once() {
    let base = tmpdir("ca-order");
    let root = base.join("root");
    let calls = traced_render(&root, &base.join("trace"));
    let pos = |suffix: &str| {
        calls
            .iter()
            .position(|c| c.ends_with(suffix))
            .unwrap_or_else(|| panic!("no rename to {suffix} in {calls:?}"))
    };
    // the marks are created in place (empty files, no temp file): strace
    // the same render again into a fresh root for the order of their
    // `openat(O_CREAT)` against the CA files' renames
    let root2 = base.join("root2");
    let trace2 = base.join("trace-marks");
    let o = Command::new("strace")
        .args(["-f", "-o"])
        .arg(&trace2)
        .args(["-e", "trace=openat,rename,renameat,renameat2"])
        .arg(bin())
        .args(["render", "--example", "control-plane", "--root"])
        .arg(&root2)
        .output()
        .expect("strace is required (Debian package strace)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let order: Vec<String> = std::fs::read_to_string(&trace2)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("ENOENT") && !l.contains("kubeboot-tmp\", O_"))
        .filter_map(|l| {
            if l.contains("O_CREAT") && l.contains("\".kubeboot-new-ca.") {
                Some("mark".to_string())
            } else if l.contains("rename") && l.contains(" = 0") {
                let to = l.rsplit_once(", \"")?.1.split('"').next()?;
                Some(to.to_string())
            } else {
                None
            }
        })
        .collect();
    let marks: Vec<usize> = (0..order.len()).filter(|&i| order[i] == "mark").collect();
    assert_eq!(marks.len(), 3, "{order:?}");
    let last_mark = *marks.last().unwrap();
    let first_ca_file = order
        .iter()
        .position(|c| c == "ca.key" || c == "ca.crt" || c.starts_with("front-proxy-ca."))
        .unwrap_or_else(|| panic!("no CA file renamed: {order:?}"));
    assert!(last_mark < first_ca_file, "{order:?}");
    let _ = pos("pki/ca.crt");
    let count = |calls: &[String], what: &str| calls.iter().filter(|c| *c == what).count();
    assert_eq!(
        (count(&calls, "sync"), count(&calls, "fsync")),
        (1, 0),
        "syncfs and fsync calls: {calls:?}"
    );
    // the last call is the run's syncfs, after every file
    assert_eq!(calls.last().map(String::as_str), Some("sync"), "{calls:?}");
    let left: Vec<_> = std::fs::read_dir(root.join("etc/kubernetes/pki"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "marks or temp files left: {left:?}");

    // A rerun creates no CA: no CA file or mark is renamed, and the only
    // syncfs is the run's last one.
    let again = traced_render(&root, &base.join("trace-again"));
    assert!(
        !again.iter().any(|c| c.contains("/pki/")),
        "a rerun replaced PKI files: {again:?}"
    );
    assert_eq!(
        (count(&again, "sync"), count(&again, "fsync")),
        (1, 0),
        "syncfs and fsync calls of the rerun: {again:?}"
    );
    assert_eq!(again.last().map(String::as_str), Some("sync"), "{again:?}");
    std::fs::remove_dir_all(&base).unwrap();
}

/// A mark left by a run that stopped before its sync (killed: its files
/// are in the page cache, not yet on disk) is removed by the next run, with
/// no PKI file rewritten, and only after a `syncfs` (one, the run's own
/// here): removing it before the files are durable would turn a later
/// power cut's lost key into a refusal.
#[test]
fn a_stale_new_ca_mark_is_removed_after_a_sync() {
    let base = tmpdir("stale-mark");
    let root = base.join("root");
    let _ = traced_render(&root, &base.join("trace"));
    let mark = root.join(format!(
        "etc/kubernetes/pki/.kubeboot-new-ca.ca.{}",
        "ab".repeat(32)
    ));
    std::fs::write(&mark, b"").unwrap();
    let again = traced_render(&root, &base.join("trace-again"));
    assert!(!mark.exists(), "the stale mark is still there");
    assert_eq!(
        again.iter().filter(|c| *c == "sync").count(),
        1,
        "{again:?}"
    );
    assert!(
        !again.iter().any(|c| c.contains("/pki/")),
        "the rerun rewrote PKI files: {again:?}"
    );
    std::fs::remove_dir_all(&base).unwrap();
}

/// `kubeboot render --example control-plane --root ROOT` under strace: its
/// renames (the renamed-to path), `syncfs` ("sync", where it returned) and
/// `fsync`/`fdatasync` ("fsync") calls, in order.
fn traced_render(root: &Path, trace: &Path) -> Vec<String> {
    let root = root.to_str().unwrap();
    traced(
        &["render", "--example", "control-plane", "--root", root],
        trace,
    )
}

/// As [`traced_render`], for any kubeboot command.
fn traced(args: &[&str], trace: &Path) -> Vec<String> {
    let o = Command::new("strace")
        .args(["-f", "-y", "-o"])
        .arg(trace)
        .args([
            "-e",
            "trace=rename,renameat,renameat2,syncfs,fsync,fdatasync",
        ])
        .arg(bin())
        .args(args)
        .output()
        .expect("strace is required (Debian package strace)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(trace).unwrap();
    let mut calls = Vec::new();
    // a call another thread interrupts is printed in two lines,
    // `PID call(ARGS <unfinished ...>` and later `PID <... call resumed>REST`:
    // joined, it counts where it returned (a sync on its own thread)
    let mut pending: BTreeMap<String, String> = BTreeMap::new();
    for raw in text.lines() {
        let pid = raw.split_whitespace().next().unwrap_or("").to_string();
        if let Some(start) = raw.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, start.to_string());
            continue;
        }
        let joined;
        let line = match raw.split_once(" resumed>") {
            Some((_, rest)) if raw.contains("<... ") => {
                joined = format!("{}{rest}", pending.remove(&pid).unwrap_or_default());
                joined.as_str()
            }
            _ => raw,
        };
        if line.contains("syncfs(") {
            calls.push("sync".to_string());
        } else if line.contains("fsync(") || line.contains("fdatasync(") {
            calls.push("fsync".to_string());
        } else if line.contains("rename") && line.contains(" = 0") {
            // `rename(FROM, "TO")`, or `renameat(FD</DIR>, FROM, FD</DIR>, "TO")`
            // (`-y` prints the directory a descriptor names)
            let (before, to) = line.rsplit_once(", \"").unwrap();
            let to = to.split('"').next().unwrap();
            match before.strip_suffix('>').and_then(|b| b.rsplit_once('<')) {
                Some((_, dir)) => calls.push(format!("{dir}/{to}")),
                None => calls.push(to.to_string()),
            }
        }
    }
    calls
}

/// Kills `render` at every rename, then at every write(2), and checks convergence each time.
#[test]
fn render_killed_anywhere_converges() {
    let base = tmpdir("render");
    for syscalls in ["rename,renameat,renameat2", "write"] {
        let mut n = 1;
        loop {
            let root = base.join(format!("{}-{n}", syscalls.split(',').next().unwrap()));
            let rs = root.to_str().unwrap().to_string();
            let args = ["render", "--example", "control-plane", "--root", &rs];
            if !run_killed_at(syscalls, n, &args) {
                break; // the run finished before the n-th call: every point was covered
            }
            assert_converged(&root, &args, &format!("render killed at {syscalls} #{n}"));
            if n % 10 == 1 {
                openssl_verify_tree(&root);
            }
            std::fs::remove_dir_all(&root).unwrap();
            n += 1;
            assert!(n < 1000, "runaway loop");
        }
        println!(
            "render: killed at each of {} {syscalls} calls; every rerun converged",
            n - 1
        );
        assert!(
            n > 30,
            "expected at least 30 {syscalls} calls, saw {}",
            n - 1
        );
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// The phases an offline control-plane firstboot skips: those that need a
/// running API server, and preflight (the test host is not a node).
const OFFLINE_SKIP: &str = "preflight,wait-control-plane,upload-config,mark-control-plane,bootstrap-token,addon,show-join-command";

/// A fake `systemctl` that always succeeds and a control-plane config
/// (cp-1 on 127.0.0.1), both in `base`, for an offline firstboot.
fn offline_init(base: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let systemctl = base.join("systemctl");
    std::fs::write(&systemctl, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = base.join("cp.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode:\n  name: cp-1\n  advertiseAddress: 127.0.0.1\n",
    )
    .unwrap();
    (systemctl, cfg)
}

/// Kills a live `init` (fsync per file; fake systemctl; no waits) at every
/// rename; the next `firstboot` converges and records success.
#[test]
fn firstboot_killed_at_every_rename_converges() {
    let base = tmpdir("firstboot");
    let (systemctl, cfg) = offline_init(&base);
    let mut n = 1;
    loop {
        let root = base.join(format!("n{n}"));
        std::fs::create_dir_all(&root).unwrap();
        let rs = root.to_str().unwrap().to_string();
        let args = [
            "firstboot",
            "--config",
            cfg.to_str().unwrap(),
            "--root",
            &rs,
            "--platform",
            "none",
            "--systemctl",
            systemctl.to_str().unwrap(),
            "--skip-phases",
            OFFLINE_SKIP,
        ];
        if !run_killed_at("rename,renameat,renameat2", n, &args) {
            break;
        }
        assert!(
            !root.join("var/lib/kubeboot/done").exists(),
            "marker before the run finished (kill #{n})"
        );
        // rerun until done; a completed run writes the marker, so further
        // reruns are no-ops and the tree is a fixpoint
        assert_converged(&root, &args, &format!("firstboot killed at rename #{n}"));
        let st = std::fs::read_to_string(root.join("var/lib/kubeboot/status.json")).unwrap();
        assert!(st.contains("\"result\": \"success\""), "{st}");
        if n % 10 == 1 {
            openssl_verify_tree(&root);
        }
        std::fs::remove_dir_all(&root).unwrap();
        n += 1;
        assert!(n < 1000, "runaway loop");
    }
    println!(
        "firstboot: killed at each of {} renames; every rerun converged",
        n - 1
    );
    assert!(n > 30);
    std::fs::remove_dir_all(&base).unwrap();
}

/// `certs renew` makes what it renewed durable with one `syncfs`, after
/// the last renewed certificate and kubeconfig is renamed into place and
/// before its status file says it renewed them.
#[test]
fn renewed_files_are_synced_before_the_renewal_is_recorded() {
    let base = tmpdir("renew-sync");
    let root = base.join("root");
    let _ = traced_render(&root, &base.join("trace-render"));
    let root_s = root.to_str().unwrap();
    let args = [
        "certs",
        "renew",
        "all",
        "--restart-wait",
        "0",
        "--root",
        root_s,
    ];
    let calls = traced(&args, &base.join("trace"));
    let syncs: Vec<usize> = (0..calls.len()).filter(|&i| calls[i] == "sync").collect();
    assert_eq!(syncs.len(), 1, "syncfs calls: {calls:?}");
    let renamed = |i: usize, part: &str| calls[i].contains(part);
    let (pki, confs) = (
        (0..calls.len()).filter(|&i| renamed(i, "/pki/")).count(),
        (0..calls.len())
            .filter(|&i| calls[i].ends_with(".conf"))
            .count(),
    );
    // kubeadm's `certs renew all`: 7 leaves (key and certificate) and 4
    // kubeconfigs (not kubelet.conf: the kubelet rotates its own)
    assert_eq!((pki, confs), (14, 4), "{calls:?}");
    let sync = syncs[0];
    for (i, c) in calls.iter().enumerate() {
        if renamed(i, "/pki/") || c.ends_with(".conf") {
            assert!(i < sync, "{c} renamed after the syncfs: {calls:?}");
        }
        if renamed(i, "/manifests/") || c.ends_with("renew-status.json") {
            assert!(i > sync, "{c} renamed before the syncfs: {calls:?}");
        }
    }
    assert_eq!(calls.last().map(String::as_str), Some("fsync"), "{calls:?}");
    std::fs::remove_dir_all(&base).unwrap();
}

/// A run of one phase (`init phase control-plane`, which stops before
/// kubelet-start and its sync) still makes what it wrote durable: one
/// `syncfs` after the last manifest is renamed into place.
#[test]
fn a_single_phase_run_syncs_what_it_wrote() {
    let base = tmpdir("phase-sync");
    let root = base.join("root");
    let cfg = base.join("cp.yaml");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(
        &cfg,
        "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode: {name: cp-1, advertiseAddress: 127.0.0.1}\n",
    )
    .unwrap();
    let (c, r) = (cfg.to_str().unwrap(), root.to_str().unwrap());
    let phase = |name: &str, trace: &str| {
        traced(
            &["init", "phase", name, "--config", c, "--root", r],
            &base.join(trace),
        )
    };
    let _ = phase("certs", "trace-certs");
    let calls = phase("control-plane", "trace");
    let manifests: Vec<usize> = (0..calls.len())
        .filter(|&i| calls[i].contains("/manifests/"))
        .collect();
    assert_eq!(manifests.len(), 3, "{calls:?}");
    let syncs: Vec<usize> = (0..calls.len()).filter(|&i| calls[i] == "sync").collect();
    assert_eq!(syncs.len(), 1, "syncfs calls: {calls:?}");
    assert!(syncs[0] > manifests[2], "{calls:?}");
    std::fs::remove_dir_all(&base).unwrap();
}

/// The end of a successful firstboot: the run's `syncfs` (before the
/// kubelet starts), then the final status (its file fsynced, renamed,
/// its directory fsynced), then the run-once marker, whose name alone is
/// made durable (its directory fsynced; its content, a time for people,
/// is not: a marker counts by existing). strace with `-y` names what
/// each fsync flushed.
#[test]
fn a_finished_firstboot_records_its_status_then_the_marker_durably() {
    let base = tmpdir("finish-sync");
    let root = base.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let (systemctl, cfg) = offline_init(&base);
    let trace = base.join("trace");
    let o = Command::new("strace")
        .args(["-f", "-y", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=renameat,renameat2,rename,syncfs,fsync,fdatasync",
        ])
        .arg(bin())
        .args(["firstboot", "--config"])
        .arg(&cfg)
        .arg("--root")
        .arg(&root)
        .args(["--platform", "none", "--systemctl"])
        .arg(&systemctl)
        .args(["--skip-phases", OFFLINE_SKIP])
        .output()
        .expect("strace is required (Debian package strace)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let state = root.join("var/lib/kubeboot");
    let state = state.to_str().unwrap();
    // each call, shortened: `syncfs`, `fsync <what>`, `rename <to>`
    let calls: Vec<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter(|l| l.contains(" = 0"))
        .filter_map(|l| {
            if l.contains("syncfs(") {
                Some("syncfs".to_string())
            } else if l.contains("fsync(") {
                let what = l.split('<').nth(1)?.split('>').next()?;
                Some(format!("fsync {}", what.replace(state, "STATE")))
            } else if l.contains("rename") {
                let to = l.rsplit_once(", \"")?.1.split('"').next()?;
                Some(format!("rename {to}"))
            } else {
                None
            }
        })
        .collect();
    let n = calls.len();
    assert!(n > 6, "{calls:#?}");
    let last_sync = calls.iter().rposition(|c| c == "syncfs").unwrap();
    // after the syncfs only in-progress statuses (never synced) until the end
    assert!(
        calls[last_sync + 1..n - 5]
            .iter()
            .all(|c| c == "rename status.json"),
        "{calls:#?}"
    );
    assert!(
        calls[n - 5].starts_with("fsync STATE/.status.json."),
        "{calls:#?}"
    );
    assert_eq!(
        calls[n - 4..],
        [
            "rename status.json",
            "fsync STATE",
            "rename done",
            "fsync STATE"
        ],
        "{calls:#?}"
    );
    assert!(std::path::Path::new(state).join("done").exists());
    std::fs::remove_dir_all(&base).unwrap();
}
