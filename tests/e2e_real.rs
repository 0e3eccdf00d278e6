//! End to end against a real control plane, from binaries the user
//! supplies: `KUBEBOOT_E2E_BIN_DIR` names a directory holding
//! `kube-apiserver` (and `kube-controller-manager` for the join step; an
//! `etcd` there is preferred over Debian's `/usr/bin/etcd`). Without it the
//! test prints one loud `SKIP e2e_real: ...` line on stderr and returns;
//! see docs/e2e.md.
//!
//! With the binaries:
//!
//! 1. `kubeboot render` a control-plane node (advertise 127.0.0.1,
//!    `node.bindPort` a free port, the Kubernetes version of
//!    `kube-apiserver --version`);
//! 2. etcd runs `etcd.yaml` as `etcd_manifest` runs it (paths mapped
//!    through the pod's hostPath volumes under the root, ports rewritten);
//! 3. `kube-apiserver` runs `kube-apiserver.yaml`'s command (every path
//!    flag mapped the same way, `--etcd-servers` at etcd's port, bound to
//!    127.0.0.1) until `kubectl --kubeconfig admin.conf get --raw /livez`
//!    answers `ok`;
//! 4. `kubeboot init phase upload-config` and `phase bootstrap-token` run
//!    against it; kubectl checks kube-system/kubeadm-config,
//!    kube-system/kubelet-config, kube-public/cluster-info, the
//!    bootstrap-token Secret and that system:anonymous may read
//!    cluster-info;
//! 5. with `kube-controller-manager` (its `kube-controller-manager.yaml`
//!    command, `--secure-port` free) the real bootstrap signer adds
//!    `jws-kubeconfig-<id>` to cluster-info, and a worker
//!    `kubeboot join phase discovery` with that token and `kubeboot certs
//!    ca-hash` must verify it and write bootstrap-kubelet.conf.
//!
//! Every process is killed at the end, also on panic (`Kill` guards).
//! The token secret is never printed: commands that return it have only
//! their stderr shown.

#[path = "node_common/mod.rs"]
mod node_common;

#[path = "etcd_support/mod.rs"]
mod etcd_support;

#[path = "pod_support/mod.rs"]
mod pod_support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use etcd_support::{Kill, command, free_port, show, wait_healthy};
use node_common::TempRoot;
use pod_support::{
    container_command, create_host_dirs, etcd_args, flags, known_flags, pod_args, read_pod, render,
    rewrite_ports,
};

const DEBIAN_ETCD: &str = "/usr/bin/etcd";
const KUBECTL: &str = "kubectl";
const USAGE: &str = "set KUBEBOOT_E2E_BIN_DIR to a directory holding kube-apiserver (and kube-controller-manager for the join step); docs/e2e.md";
/// How long each component may take to come up, and the signer to sign.
const LIMIT: Duration = Duration::from_secs(120);
/// The version rendered when `kube-apiserver --version` cannot be read.
const FALLBACK_VERSION: &str = "v1.33.4";

/// One line on stderr that shows even when the test passes (the harness
/// captures only `eprintln!`).
fn loud(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The binary directory, or `None` after a loud SKIP line.
fn bin_dir() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("KUBEBOOT_E2E_BIN_DIR") else {
        loud(&format!("SKIP e2e_real: {USAGE}"));
        return None;
    };
    let dir = PathBuf::from(dir);
    let api = dir.join("kube-apiserver");
    if !api.is_file() {
        loud(&format!(
            "SKIP e2e_real: {} is missing: {USAGE}",
            api.display()
        ));
        return None;
    }
    Some(dir)
}

/// `v1.M.P` from `kube-apiserver --version` ("Kubernetes v1.33.4"), which
/// must be within kubeboot's v1.32–v1.34; the fallback when unreadable.
fn kubernetes_version(api: &Path) -> String {
    let out = command(&api.display().to_string())
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", api.display()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let parsed = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v'))
        .and_then(|v| {
            let core = v.split(['-', '+']).next()?;
            let parts: Vec<u32> = core
                .split('.')
                .map(|n| n.parse().ok())
                .collect::<Option<_>>()?;
            match parts[..] {
                [1, minor, patch] => Some((minor, patch)),
                _ => None,
            }
        });
    match parsed {
        Some((minor, patch)) => {
            assert!(
                (32..=34).contains(&minor),
                "{} is v1.{minor}.{patch}; kubeboot renders v1.32–v1.34: supply binaries of one of those",
                api.display()
            );
            format!("v1.{minor}.{patch}")
        }
        None => {
            loud(&format!(
                "e2e_real: could not read a version from `{} --version` ({:?}); rendering {FALLBACK_VERSION}",
                api.display(),
                text.trim()
            ));
            FALLBACK_VERSION.into()
        }
    }
}

/// The last 4000 characters of a log file, for failure messages.
fn tail(log: &Path) -> String {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    let cut = s.len().saturating_sub(4000);
    let cut = (cut..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    s[cut..].to_string()
}

/// Starts `program args`, stderr and stdout to `log`; killed on drop.
fn spawn(program: &Path, args: &[String], log: &Path) -> Kill {
    let file = std::fs::File::create(log).unwrap();
    let child = command(&program.display().to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    Kill(child)
}

/// Panics with the log when the process has exited.
fn alive(p: &mut Kill, what: &str, log: &Path) {
    if let Ok(Some(status)) = p.0.try_wait() {
        panic!("{what} exited with {status}:\n{}", tail(log));
    }
}

/// kubectl as admin.conf's user.
fn kubectl(admin: &Path, args: &[&str]) -> Output {
    command(KUBECTL)
        .arg(format!("--kubeconfig={}", admin.display()))
        .arg("--request-timeout=10s")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{KUBECTL} is required (Debian package kubectl): {e}"))
}

/// kubectl that must succeed; its stdout.
fn kubectl_ok(admin: &Path, args: &[&str]) -> String {
    let o = kubectl(admin, args);
    assert!(o.status.success(), "kubectl {args:?}: {}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The kubeboot binary with `args`; panics with its output on failure.
fn kubeboot(args: &[&str]) -> Output {
    let o = command(env!("CARGO_BIN_EXE_kubeboot"))
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "kubeboot {args:?}: {}", show(&o));
    o
}

/// Waits (bounded by [`LIMIT`]) until `check` returns `Ok`, panicking
/// with its last complaint and the log of `p` when `p` exits or the time
/// is up.
fn wait_for(p: &mut Kill, what: &str, log: &Path, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let last = match check() {
            Ok(()) => return,
            Err(e) => e,
        };
        alive(p, what, log);
        assert!(
            Instant::now() < deadline,
            "{what}: not ready within {LIMIT:?}; last: {last}\nlog:\n{}",
            tail(log)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn real_control_plane_runs_kubeboot_api_phases_and_join_discovery() {
    let Some(dir) = bin_dir() else { return };
    let apiserver_bin = dir.join("kube-apiserver");
    let kcm_bin = dir.join("kube-controller-manager");
    let etcd_bin = if dir.join("etcd").is_file() {
        dir.join("etcd")
    } else {
        PathBuf::from(DEBIAN_ETCD)
    };
    assert!(
        etcd_bin.is_file(),
        "{DEBIAN_ETCD} is required (Debian package etcd-server), or put an etcd in {}",
        dir.display()
    );
    let version = kubernetes_version(&apiserver_bin);
    loud(&format!(
        "e2e_real: Kubernetes {version} from {}, etcd {}",
        dir.display(),
        etcd_bin.display()
    ));

    let tmp = TempRoot::new("e2e-real");
    let root = tmp.path().join("cp");
    std::fs::create_dir_all(&root).unwrap();
    let port = free_port();
    let cfg = tmp.file(
        "cp.yaml",
        &format!(
            "apiVersion: kubeboot.dev/v1alpha1\nkind: NodeConfig\nrole: control-plane\ncluster:\n  name: e2e\n  kubernetesVersion: {version}\nnode:\n  name: cp-e2e\n  advertiseAddress: 127.0.0.1\n  bindPort: {port}\n"
        ),
    );
    render(&cfg, &root);
    let admin = root.join("etc/kubernetes/admin.conf");
    let ca_crt = root.join("etc/kubernetes/pki/ca.crt");

    // etcd, as etcd_manifest runs it.
    let etcd_spec = read_pod(&root, "etcd.yaml");
    let etcd_flags = flags(&container_command(&etcd_spec));
    let etcd_name = etcd_bin.display().to_string();
    let known = known_flags(&etcd_name);
    let unknown: Vec<&String> = etcd_flags.keys().filter(|n| !known.contains(n)).collect();
    assert!(
        unknown.is_empty(),
        "{etcd_name} does not know the rendered etcd flags {unknown:?} (Kubernetes {version} renders for a newer etcd): put that etcd release's binary in {}/etcd",
        dir.display()
    );
    let (client, peer, metrics) = (free_port(), free_port(), free_port());
    let ports = BTreeMap::from([(2379, client), (2380, peer), (2381, metrics)]);
    create_host_dirs(&etcd_spec, &root);
    let etcd_log = tmp.path().join("etcd.log");
    let mut etcd = spawn(
        &etcd_bin,
        &etcd_args(&etcd_spec, &etcd_flags, &root, &ports),
        &etcd_log,
    );
    wait_healthy(&mut etcd, metrics, &etcd_log, LIMIT);

    // kube-apiserver, as kube-apiserver.yaml runs it.
    let api_spec = read_pod(&root, "kube-apiserver.yaml");
    let api_flags = flags(&container_command(&api_spec));
    assert_eq!(api_flags["secure-port"], port.to_string());
    create_host_dirs(&api_spec, &root);
    let api_args = pod_args(
        &api_spec,
        &root,
        &[
            (
                "etcd-servers",
                rewrite_ports(&api_flags["etcd-servers"], &ports),
            ),
            ("bind-address", "127.0.0.1".into()),
        ],
    );
    let api_log = tmp.path().join("kube-apiserver.log");
    let mut api = spawn(&apiserver_bin, &api_args, &api_log);
    // Live, then ready (RBAC bootstrapped), then the system namespaces
    // the phases write into.
    for check in [
        &["get", "--raw", "/livez"][..],
        &["get", "--raw", "/readyz"],
        &["get", "namespace", "kube-system", "-o", "name"],
        &["get", "namespace", "kube-public", "-o", "name"],
    ] {
        wait_for(&mut api, "kube-apiserver", &api_log, || {
            let o = kubectl(&admin, check);
            let out = String::from_utf8_lossy(&o.stdout);
            let ready = if check[1] == "--raw" {
                out.trim() == "ok"
            } else {
                out.trim().starts_with("namespace/")
            };
            match o.status.success() && ready {
                true => Ok(()),
                false => Err(format!("kubectl {check:?}: {}", show(&o))),
            }
        });
    }

    // kube-controller-manager (for the bootstrap signer), when supplied.
    let kcm = if kcm_bin.is_file() {
        let spec = read_pod(&root, "kube-controller-manager.yaml");
        create_host_dirs(&spec, &root);
        let args = pod_args(&spec, &root, &[("secure-port", free_port().to_string())]);
        let log = tmp.path().join("kube-controller-manager.log");
        let p = spawn(&kcm_bin, &args, &log);
        Some((p, log))
    } else {
        loud(&format!(
            "SKIP e2e_real join step: {} is missing; only the init API phases run: {USAGE}",
            kcm_bin.display()
        ));
        None
    };

    // init's API phases, the real binary against the real API server.
    let (cfg_s, root_s) = (cfg.to_str().unwrap(), root.to_str().unwrap());
    for phase in ["upload-config", "bootstrap-token"] {
        kubeboot(&[
            "init",
            "--config",
            cfg_s,
            "--root",
            root_s,
            "--wait-timeout",
            "120",
            "phase",
            phase,
        ]);
    }
    for (ns, cm) in [
        ("kube-system", "kubeadm-config"),
        ("kube-system", "kubelet-config"),
        ("kube-public", "cluster-info"),
    ] {
        kubectl_ok(&admin, &["get", "configmap", cm, "-n", ns, "-o", "name"]);
    }
    let secrets = kubectl_ok(
        &admin,
        &[
            "get",
            "secrets",
            "-n",
            "kube-system",
            "--field-selector=type=bootstrap.kubernetes.io/token",
            "-o",
            "name",
        ],
    );
    let secret_name = secrets
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret/"))
        .unwrap_or_else(|| panic!("no bootstrap-token Secret in kube-system: {secrets:?}"))
        .to_string();
    assert!(secret_name.starts_with("bootstrap-token-"), "{secret_name}");
    let can = kubectl(
        &admin,
        &[
            "auth",
            "can-i",
            "--as=system:anonymous",
            "get",
            "configmap/cluster-info",
            "-n",
            "kube-public",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&can.stdout).trim(),
        "yes",
        "system:anonymous may not read cluster-info: {}",
        show(&can)
    );

    let Some((mut kcm, kcm_log)) = kcm else {
        return;
    };

    // The token, from the Secret (never printed).
    let field = |key: &str| {
        let o = kubectl(
            &admin,
            &[
                "get",
                "secret",
                &secret_name,
                "-n",
                "kube-system",
                "-o",
                &format!("go-template={{{{index .data \"{key}\" | base64decode}}}}"),
            ],
        );
        assert!(
            o.status.success(),
            "reading {key} of {secret_name}: {} {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let (id, token_secret) = (field("token-id"), field("token-secret"));
    assert_eq!(secret_name, format!("bootstrap-token-{id}"));
    assert!(
        id.len() == 6 && token_secret.len() == 16,
        "{secret_name}: token-id {id:?} or its token-secret ({} characters) is malformed",
        token_secret.len()
    );

    // The real bootstrap signer signs cluster-info for this token.
    let jws = format!("jws-kubeconfig-{id}");
    wait_for(&mut kcm, "kube-controller-manager", &kcm_log, || {
        let o = kubectl(
            &admin,
            &[
                "get",
                "configmap",
                "cluster-info",
                "-n",
                "kube-public",
                "-o",
                "json",
            ],
        );
        let cm: serde_json::Value = serde_json::from_slice(&o.stdout)
            .map_err(|e| format!("kubectl get configmap cluster-info: {e}: {}", show(&o)))?;
        match cm["data"].get(&jws) {
            Some(_) => Ok(()),
            None => Err(format!("cluster-info has no {jws} yet")),
        }
    });
    alive(&mut api, "kube-apiserver", &api_log);

    // A worker's token discovery verifies that signature and the CA pin.
    let pin =
        String::from_utf8_lossy(&kubeboot(&["certs", "ca-hash", ca_crt.to_str().unwrap()]).stdout)
            .trim()
            .to_string();
    let wroot = tmp.path().join("worker");
    std::fs::create_dir_all(&wroot).unwrap();
    let wcfg = tmp.path().join("worker.yaml");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&wcfg)
            .unwrap();
        write!(
            f,
            "apiVersion: kubeboot.dev/v1alpha1\nkind: NodeConfig\nrole: worker\nserver: 127.0.0.1:{port}\ntoken: {id}.{token_secret}\ncaCertHash: {pin}\nnode:\n  name: worker-e2e\n  advertiseAddress: 127.0.0.1\n"
        )
        .unwrap();
    }
    let out = command(env!("CARGO_BIN_EXE_kubeboot"))
        .args(["join", "--config"])
        .arg(&wcfg)
        .arg("--root")
        .arg(&wroot)
        .args(["--discovery-timeout", "120", "phase", "discovery"])
        .output()
        .unwrap();
    let said = show(&out);
    assert!(
        !said.contains(&token_secret),
        "kubeboot join printed the token secret"
    );
    assert!(
        out.status.success(),
        "kubeboot join phase discovery: {said}"
    );
    assert!(
        wroot
            .join("etc/kubernetes/bootstrap-kubelet.conf")
            .is_file(),
        "discovery wrote no bootstrap-kubelet.conf: {said}"
    );
    assert_eq!(
        std::fs::read(wroot.join("etc/kubernetes/pki/ca.crt")).unwrap(),
        std::fs::read(&ca_crt).unwrap(),
        "the worker's ca.crt is not the cluster CA"
    );
    assert!(
        said.contains("using the cluster's kubelet configuration"),
        "the bootstrap token could not read kube-system/kubelet-config: {said}"
    );
    alive(&mut kcm, "kube-controller-manager", &kcm_log);
    drop(kcm);
    drop(api);
    drop(etcd);
}
