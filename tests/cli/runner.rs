//! The phase runner through the command line: `--dry-run` output,
//! `--skip-phases`, single-phase runs (`init phase certs`), phase-name
//! checking, and role/command mismatches.

#[allow(unused_imports)]
use crate::cli_support;

use cli_support::{kubeboot, text};
use std::path::{Path, PathBuf};

fn setup(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let d = std::env::temp_dir().join(format!("kubeboot-runner-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let cfg = d.join("cp.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode:\n  name: cp-1\n  advertiseAddress: 127.0.0.1\n",
    )
    .unwrap();
    // A systemctl that fails loudly: these tests must never reach it unless they say so.
    let sc = d.join("systemctl");
    std::fs::write(
        &sc,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}/calls'\nexit 0\n",
            d.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sc, std::fs::Permissions::from_mode(0o755)).unwrap();
    (d.clone(), cfg, d.join("root"))
}

fn exists(root: &Path, p: &str) -> bool {
    root.join(p.trim_start_matches('/')).exists()
}

#[test]
fn dry_run_writes_nothing_and_starts_nothing() {
    let (d, cfg, root) = setup("dry");
    let sc = d.join("systemctl");
    let o = kubeboot(&[
        "init",
        "--dry-run",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--systemctl",
        sc.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("[dry-run] would write /etc/kubernetes/pki/ca.crt mode 0644"),
        "{out}"
    );
    assert!(
        out.contains(
            "[dry-run] would write /etc/kubernetes/manifests/kube-apiserver.yaml mode 0600"
        ),
        "{out}"
    );
    let err = text(&o.stderr);
    assert!(err.contains("would run: systemctl daemon-reload"), "{err}");
    assert!(!d.join("calls").exists(), "dry-run called systemctl");
    assert!(!root.exists(), "a dry run writes nothing under --root");
    assert!(
        !exists(&root, "/var/lib/kubeboot/status.json"),
        "dry-run records no outcome"
    );
    assert!(!exists(&root, "/var/lib/kubeboot/done"));
    // preflight and the waits do not run in a dry run
    assert!(
        !err.contains("[preflight] start") && !err.contains("[wait-control-plane] start"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn single_phase_runs_only_that_phase() {
    let (d, cfg, root) = setup("single");
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
    assert!(exists(&root, "/etc/kubernetes/pki/ca.crt"));
    assert!(exists(&root, "/etc/kubernetes/pki/etcd/peer.key"));
    assert!(
        !exists(&root, "/etc/kubernetes/admin.conf"),
        "kubeconfig phase ran"
    );
    assert!(
        !exists(&root, "/etc/kubernetes/manifests"),
        "control-plane phase ran"
    );
    assert!(
        !exists(&root, "/var/lib/kubeboot/status.json"),
        "status.json records full runs only"
    );
    assert!(
        text(&o.stdout).contains("phase certs done"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        !exists(&root, "/var/lib/kubeboot/done"),
        "a single phase does not finish the node"
    );
    // then the kubeconfig phase reuses the CA
    let ca = std::fs::read(root.join("etc/kubernetes/pki/ca.crt")).unwrap();
    let o = kubeboot(&[
        "init",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "phase",
        "kubeconfig",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(exists(&root, "/etc/kubernetes/admin.conf"));
    assert_eq!(
        std::fs::read(root.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        ca
    );
    let o = kubeboot(&[
        "init",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "phase",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("\"nope\" is not a phase"),
        "{}",
        text(&o.stderr)
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn skip_phases_are_recorded_and_checked() {
    let (d, cfg, root) = setup("skip");
    let sc = d.join("systemctl");
    let o = kubeboot(&[
        "init",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--systemctl",
        sc.to_str().unwrap(),
        "--skip-phases",
        "preflight,etcd,wait-control-plane,upload-config,mark-control-plane,bootstrap-token,addon,show-join-command",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!exists(&root, "/etc/kubernetes/manifests/etcd.yaml"));
    assert!(exists(
        &root,
        "/etc/kubernetes/manifests/kube-apiserver.yaml"
    ));
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("var/lib/kubeboot/status.json")).unwrap(),
    )
    .unwrap();
    let outcome = |name: &str| {
        st["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["outcome"]
            .clone()
    };
    assert_eq!(outcome("etcd"), "skipped");
    assert_eq!(outcome("preflight"), "skipped");
    assert_eq!(outcome("kubelet-start"), "done");
    let calls = std::fs::read_to_string(d.join("calls")).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        vec![
            "daemon-reload",
            "enable kubelet.service",
            "restart --no-block kubelet.service"
        ]
    );
    let o = kubeboot(&[
        "init",
        "--config",
        cfg.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--skip-phases",
        "certz",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("\"certz\" is not a phase") && err.contains("certs"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn init_refuses_a_join_config_and_join_lists_its_phases() {
    let (d, _, root) = setup("mismatch");
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("image/examples/worker.kubeboot.yaml");
    let o = kubeboot(&[
        "init",
        "--config",
        ex.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("run `kubeboot join`"),
        "{}",
        text(&o.stderr)
    );
    let o = kubeboot(&["join", "phase", "list"]);
    let out = text(&o.stdout);
    for p in [
        "preflight",
        "discovery",
        "kubelet-start",
        "kubelet-wait-bootstrap",
    ] {
        assert!(out.contains(p), "{out}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}
