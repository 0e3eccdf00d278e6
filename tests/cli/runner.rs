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

/// The API requests `--dry-run` lists, for the phase list of the run.
fn dry_run_sends(cfg: &Path, root: &Path, cmd: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = cmd.to_vec();
    args.extend(["--dry-run", "--config", cfg.to_str().unwrap()]);
    args.extend(["--root", root.to_str().unwrap()]);
    args.extend(extra);
    let o = kubeboot(&args);
    assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    text(&o.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("[dry-run] would send "))
        .map(str::to_string)
        .collect()
}

fn has(lines: &[String], part: &str) -> bool {
    lines.iter().any(|l| l.contains(part))
}

#[test]
fn dry_run_lists_the_requests_of_the_selected_phases_and_versions_only() {
    let (d, _, root) = setup("dryreq");
    // a 64-hex certificate key made for this test (never printed: stdout only lists requests)
    let key: String = (0..64)
        .map(|i| b"0123456789abcdef"[(i * 7) % 16] as char)
        .collect();
    let cp = |version: &str, with_key: bool| {
        let p = d.join(format!("cp-{version}-{with_key}.yaml"));
        let mut y = format!(
            "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode: {{name: cp-1, advertiseAddress: 127.0.0.1}}\ncluster: {{kubernetesVersion: {version}}}\n"
        );
        if with_key {
            y.push_str(&format!("certificateKey: {key}\n"));
        }
        std::fs::write(&p, y).unwrap();
        p
    };
    let join = |role: &str, version: &str| {
        let p = d.join(format!("join-{role}-{version}.yaml"));
        let mut y = format!(
            "apiVersion: kubeboot.dev/v1alpha1\nrole: {role}\nnode: {{name: n-1, advertiseAddress: 127.0.0.1}}\ncluster: {{kubernetesVersion: {version}}}\nserver: 10.0.0.10:6443\ntoken: abcdef.0123456789abcdef\ncaCertHash: sha256:a5c1107a20290cfd98e8ec46a53f94c3894f0a6fef4d0628c47f00e6a43bd18b\n"
        );
        if role == "control-plane" {
            y.push_str(&format!("certificateKey: {key}\n"));
        }
        std::fs::write(&p, y).unwrap();
        p
    };
    const CRI: &str = "CRI socket annotation";
    const MARK: &str = "control-plane label and taints";
    const CERTS: &str = "Secret kube-system/kubeadm-certs";
    const COREDNS: &str = "Deployment kube-system/coredns";
    const PROXY: &str = "DaemonSet kube-system/kube-proxy";
    const KUBELET_CM: &str = "ConfigMap kube-system/kubelet-config";
    const KUBEADM_CM: &str = "ConfigMap kube-system/kubeadm-config";

    // kubeadm 1.33 annotates the Node with its CRI socket; 1.34 does not
    // (NodeLocalCRISocket); kubeadm-certs only with a certificate key
    let all = dry_run_sends(&cp("v1.33.2", true), &root, &["init"], &[]);
    for want in [
        CRI,
        MARK,
        CERTS,
        COREDNS,
        PROXY,
        KUBELET_CM,
        KUBEADM_CM,
        "GET /livez",
    ] {
        assert!(has(&all, want), "{want} not in {all:#?}");
    }
    let v134 = dry_run_sends(&cp("v1.34.1", false), &root, &["init"], &[]);
    assert!(!has(&v134, CRI) && !has(&v134, CERTS), "{v134:#?}");
    assert!(has(&v134, MARK) && has(&v134, COREDNS), "{v134:#?}");

    // skipped sub-phases take their requests with them
    let some = dry_run_sends(
        &cp("v1.33.2", true),
        &root,
        &["init"],
        &[
            "--skip-phases",
            "addon/coredns,upload-config/kubelet,upload-certs",
        ],
    );
    assert!(!has(&some, COREDNS) && has(&some, PROXY), "{some:#?}");
    assert!(
        !has(&some, KUBELET_CM) && !has(&some, CRI) && has(&some, KUBEADM_CM),
        "{some:#?}"
    );
    assert!(!has(&some, CERTS) && has(&some, MARK), "{some:#?}");

    // one sub-phase alone lists only its own requests
    let one = dry_run_sends(
        &cp("v1.33.2", true),
        &root,
        &["init", "phase", "addon/kube-proxy"],
        &[],
    );
    assert!(
        !one.is_empty()
            && one
                .iter()
                .all(|l| l.contains("kube-proxy") || l.contains("node-proxier")),
        "{one:#?}"
    );

    // a worker: discovery, the CRI annotation on 1.33 only, never the control-plane label
    let w133 = dry_run_sends(&join("worker", "v1.33.2"), &root, &["join"], &[]);
    assert!(
        has(&w133, "kube-public/cluster-info") && has(&w133, CRI),
        "{w133:#?}"
    );
    assert!(!has(&w133, MARK) && !has(&w133, CERTS), "{w133:#?}");
    let w134 = dry_run_sends(&join("worker", "v1.34.1"), &root, &["join"], &[]);
    assert!(!has(&w134, CRI) && !has(&w134, MARK), "{w134:#?}");

    // a control-plane join (its prepare phase needs the CA, which a dry run cannot download)
    let skip_prepare = ["--skip-phases", "control-plane-prepare"];
    let c = dry_run_sends(
        &join("control-plane", "v1.34.1"),
        &root,
        &["join"],
        &skip_prepare,
    );
    assert!(
        has(&c, MARK) && has(&c, CERTS) && has(&c, "labelSelector=component%3Detcd"),
        "{c:#?}"
    );
    let c = dry_run_sends(
        &join("control-plane", "v1.34.1"),
        &root,
        &["join"],
        &[
            "--skip-phases",
            "control-plane-prepare,control-plane-join/mark-control-plane,discovery",
        ],
    );
    assert!(
        !has(&c, MARK) && !has(&c, "cluster-info") && has(&c, CERTS),
        "{c:#?}"
    );

    // disabled addons send nothing; a control-plane join without a
    // certificate key downloads no certificates, one with external etcd
    // lists no etcd pods (kubeadm's join runs etcd-join for a local etcd only)
    let no_addons = d.join("cp-no-addons.yaml");
    std::fs::write(
        &no_addons,
        "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode: {name: cp-1, advertiseAddress: 127.0.0.1}\ncluster: {kubernetesVersion: v1.34.1, proxy: {disabled: true}, dns: {disabled: true}}\n",
    )
    .unwrap();
    let n = dry_run_sends(&no_addons, &root, &["init"], &[]);
    assert!(!has(&n, PROXY) && !has(&n, COREDNS), "{n:#?}");
    assert!(has(&n, MARK), "{n:#?}");
    let cp_join = |name: &str, extra: &str| {
        let p = d.join(name);
        std::fs::write(
            &p,
            format!("apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode: {{name: n-1, advertiseAddress: 127.0.0.1}}\nserver: 10.0.0.10:6443\ntoken: abcdef.0123456789abcdef\ncaCertHash: sha256:a5c1107a20290cfd98e8ec46a53f94c3894f0a6fef4d0628c47f00e6a43bd18b\n{extra}"),
        )
        .unwrap();
        dry_run_sends(&p, &root, &["join"], &skip_prepare)
    };
    // (Cluster API's way: the CA files come in the userdata, no key)
    let carried = d.join("cp-join-carried.yaml");
    std::fs::write(
        &carried,
        "#cloud-config\nwrite_files:\n- path: /etc/kubernetes/pki/ca.crt\n  content: placeholder\nkubeboot:\n  role: control-plane\n  node: {name: n-1, advertiseAddress: 127.0.0.1}\n  server: 10.0.0.10:6443\n  token: abcdef.0123456789abcdef\n  caCertHash: sha256:a5c1107a20290cfd98e8ec46a53f94c3894f0a6fef4d0628c47f00e6a43bd18b\n  cluster: {kubernetesVersion: v1.34.1}\n",
    )
    .unwrap();
    let no_key = dry_run_sends(&carried, &root, &["join"], &skip_prepare);
    assert!(!has(&no_key, CERTS), "{no_key:#?}");
    assert!(
        has(&no_key, "labelSelector=component%3Detcd") && has(&no_key, MARK),
        "{no_key:#?}"
    );
    let external = cp_join(
        "cp-join-external.yaml",
        &format!(
            "certificateKey: {key}\ncluster: {{kubernetesVersion: v1.34.1, etcd: {{external: {{endpoints: [\"https://10.0.0.20:2379\"], caFile: /etc/etcd/ca.crt, certFile: /etc/etcd/client.crt, keyFile: /etc/etcd/client.key}}}}}}\n"
        ),
    );
    assert!(
        !has(&external, "labelSelector=component%3Detcd"),
        "{external:#?}"
    );
    assert!(
        has(&external, CERTS) && has(&external, MARK),
        "{external:#?}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// `phase list` prints kubeadm's tree: `/all` and the sub-phases under a
/// phase that has them, nothing under one that has none; a narrowed run
/// says which sub-phases it runs, a whole one does not.
#[test]
fn phase_tree_and_the_narrowed_sub_phase_line() {
    let (d, cfg, root) = setup("tree");
    let o = kubeboot(&["init", "phase", "list"]);
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    let at = |name: &str| {
        lines
            .iter()
            .position(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not in:\n{out}"))
    };
    let certs = at("certs");
    assert!(lines[certs + 1].trim_start().starts_with("/all "), "{out}");
    assert!(lines[certs + 2].trim_start().starts_with("/ca "), "{out}");
    let preflight = at("preflight");
    assert!(!lines[preflight + 1].trim_start().starts_with('/'), "{out}");
    let subs = lines
        .iter()
        .filter(|l| l.trim_start().starts_with("/all "))
        .count();
    assert_eq!(
        subs, 7,
        "certs, kubeconfig, etcd, control-plane, upload-config, kubelet-finalize, addon:\n{out}"
    );

    let run = |phase: &str| {
        let o = kubeboot(&[
            "init",
            "phase",
            phase,
            "--config",
            cfg.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stderr)
    };
    let err = run("certs");
    assert!(!err.contains("sub-phases:"), "{err}");
    let err = run("certs/apiserver");
    assert!(err.contains("[certs] sub-phases: apiserver"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}
