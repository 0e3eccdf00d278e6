//! Userdata that arrives in the wild: a Cluster API kubeadm cloud-config
//! (jinja header, CA files in write_files) rendered into a node that uses
//! the carried CAs; and `config show --source auto` / `firstboot` reading a
//! metadata service given with --platform and --metadata-url (loopback).

#[allow(unused_imports)]
use crate::cli_support;

#[allow(unused_imports)]
use crate::net_support;

use std::path::Path;
use std::process::Command;

use kubeboot::config;
use kubeboot::host::{HostFacts, Paths};
use net_support::{Reply, Server, ok};

fn tmpdir(name: &str) -> std::path::PathBuf {
    cli_support::tmpdir("src", name)
}

#[test]
fn cluster_api_userdata_renders_with_the_carried_cas() {
    let ex = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("image/examples/capi-kubeadm-init.cloud-config.yaml");
    let bytes = std::fs::read(&ex).unwrap();
    let facts = HostFacts::given(
        Some("capi-cp-abcde".into()),
        Some("10.0.0.5".parse().unwrap()),
        None,
    );
    let loaded = config::load(&bytes, "capi example", &facts).unwrap();
    assert_eq!(
        loaded.settings.node.name, "capi-cp-abcde",
        "jinja hostname substituted"
    );
    assert_eq!(
        loaded.settings.node.advertise_address.to_string(),
        "10.0.0.5"
    );
    let carried_ca = loaded
        .envelope
        .files
        .iter()
        .find(|f| f.path == "/etc/kubernetes/pki/ca.crt")
        .unwrap()
        .content
        .clone();
    let carried_sa = loaded
        .envelope
        .files
        .iter()
        .find(|f| f.path == "/etc/kubernetes/pki/sa.key")
        .unwrap()
        .content
        .clone();
    let root = tmpdir("capi");
    let report = kubeboot::run::render_loaded(&loaded, &Paths::new(&root)).unwrap();
    let pki = root.join("etc/kubernetes/pki");
    assert_eq!(
        std::fs::read(pki.join("ca.crt")).unwrap(),
        carried_ca,
        "the carried CA is used, not regenerated"
    );
    assert_eq!(std::fs::read(pki.join("sa.key")).unwrap(), carried_sa);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(pki.join("ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(report.written.iter().any(|w| w.phase == "userdata-files"));
    // leaves are signed by the carried CA
    let o = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(pki.join("ca.crt"))
        .arg(pki.join("apiserver.crt"))
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    // a different CA already on disk is never overwritten by the userdata
    std::fs::write(
        pki.join("front-proxy-ca.crt"),
        b"-----BEGIN CERTIFICATE-----\nnot this one\n",
    )
    .unwrap();
    let err = kubeboot::run::render_loaded(&loaded, &Paths::new(&root))
        .err()
        .expect("must refuse");
    assert!(
        err.to_string().contains("front-proxy-ca.crt") && err.to_string().contains("refusing"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn config_show_auto_reads_the_declared_platforms_metadata_service() {
    let userdata = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("image/examples/worker.cloud-config.yaml"),
    )
    .unwrap();
    let server = Server::http(move |req, _| {
        if req.header("Metadata-Flavor") != Some("Google") {
            return Reply::Respond(403, vec![], b"missing Metadata-Flavor".to_vec());
        }
        if req.path == "/computeMetadata/v1/instance/attributes/user-data" {
            ok(&userdata)
        } else {
            Reply::Respond(404, vec![], vec![])
        }
    });
    let root = tmpdir("gce");
    let o = Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args([
            "config",
            "show",
            "--source",
            "auto",
            "--root",
            root.to_str().unwrap(),
            "--platform",
            "gcp",
        ])
        .args(["--metadata-url", &server.base()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("platform: gcp") && err.contains("using gce metadata"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["settings"]["mode"], "join-worker");
    assert!(v["source"].as_str().unwrap().contains("127.0.0.1"));
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("Metadata-Flavor") == Some("Google"))
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn dry_run_contacts_no_metadata_service() {
    let server = Server::http(|_, _| ok(b"#cloud-config\nkubeboot: {role: worker}\n"));
    let root = tmpdir("dry-net");
    let o = Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args([
            "firstboot",
            "--dry-run",
            "--root",
            root.to_str().unwrap(),
            "--platform",
            "gcp",
        ])
        .args(["--metadata-url", &server.base()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no userdata found") && err.contains("dry run: network sources not asked"),
        "{err}"
    );
    assert!(
        server.requests().is_empty(),
        "a dry run sent {:?}",
        server.requests()
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// PXE: `kubeboot.config=<url>` pinned by `kubeboot.config.sha256=` on the
/// kernel command line is fetched once, checked, and its config used.
#[test]
fn kernel_command_line_config_url_is_fetched_once_and_pinned() {
    let config = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("image/examples/worker.kubeboot.yaml"),
    )
    .unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, &config);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let served = config.clone();
    let server = Server::http(move |_, _| ok(&served));
    let root = tmpdir("pxe-url");
    std::fs::create_dir_all(root.join("proc")).unwrap();
    let cmdline = |sha: &str| {
        format!(
            "BOOT_IMAGE=/vmlinuz ro kubeboot.config={}/nodes/w.yaml kubeboot.config.sha256={sha}\n",
            server.base()
        )
    };
    std::fs::write(root.join("proc/cmdline"), cmdline(&hex)).unwrap();
    let show = || {
        Command::new(env!("CARGO_BIN_EXE_kubeboot"))
            .args([
                "config",
                "show",
                "--source",
                "auto",
                "--root",
                root.to_str().unwrap(),
                "--platform",
                "none",
            ])
            .output()
            .unwrap()
    };
    let o = show();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["settings"]["mode"], "join-worker");
    assert_eq!(server.requests().len(), 1, "fetched exactly once");
    // a wrong pin is refused (exit 2), naming both hashes
    std::fs::write(root.join("proc/cmdline"), cmdline(&"0".repeat(64))).unwrap();
    let o = show();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&hex), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// Runs `kubeboot args` at `--log-level trace` with the syslog copy
/// captured; returns the output and the capture.
fn traced(dir: &Path, args: &[&str]) -> (std::process::Output, cli_support::SyslogCapture) {
    let syslog = cli_support::SyslogCapture::new(dir);
    let o = Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args(["--log-level", "trace"])
        .args(args)
        .env("KUBEBOOT_SYSLOG_SOCKET", &syslog.path)
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    (o, syslog)
}

/// A worker cloud-config whose comment carries `canary`: userdata content
/// must never be logged, at any level.
fn userdata_with(canary: &str) -> Vec<u8> {
    let mut u = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("image/examples/worker.cloud-config.yaml"),
    )
    .unwrap();
    u.extend_from_slice(format!("\n# {canary}\n").as_bytes());
    u
}

/// EC2 (IMDSv2: its session token is a canary too), GCE and a config URL
/// at `--log-level trace`: neither the userdata nor the session token
/// reaches stderr, stdout, syslog or the status file; an endless metadata
/// body ends at its limit without flooding stderr.
#[test]
fn no_userdata_or_session_token_at_trace_level() {
    const CANARY: &str = "canary-userdata-7f3e9a1c";
    const SESSION: &str = "imdsv2-session-canary-52b8d0";
    let dir = tmpdir("trace");
    let mut commands = 0;
    let userdata = userdata_with(CANARY);
    let ec2_userdata = userdata.clone();
    let ec2 = Server::http(
        move |req, _| match (req.method.as_str(), req.path.as_str()) {
            ("PUT", "/latest/api/token") => ok(SESSION.as_bytes()),
            ("GET", "/latest/user-data")
                if req.header("X-aws-ec2-metadata-token") == Some(SESSION) =>
            {
                ok(&ec2_userdata)
            }
            _ => Reply::Respond(401, vec![], vec![]),
        },
    );
    let gce_userdata = userdata.clone();
    let gce = Server::http(move |req, _| {
        if req.path == "/computeMetadata/v1/instance/attributes/user-data" {
            ok(&gce_userdata)
        } else {
            Reply::Respond(404, vec![], vec![])
        }
    });
    for (platform, server) in [("aws", &ec2), ("gcp", &gce)] {
        let root = dir.join(platform);
        std::fs::create_dir_all(&root).unwrap();
        for cmd in [
            vec!["config", "show", "--source", "auto"],
            vec![
                "firstboot",
                "--systemctl",
                "/bin/false",
                "--discovery-timeout",
                "1",
            ],
        ] {
            let mut args = cmd.clone();
            args.extend(["--root", root.to_str().unwrap(), "--platform", platform]);
            let base = server.base();
            args.extend(["--metadata-url", &base]);
            let (o, syslog) = traced(&dir, &args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("using ") && err.contains("127.0.0.1"),
                "{platform} {cmd:?}: userdata not found: {err}"
            );
            cli_support::assert_no_canary(CANARY, &o, &syslog, &root);
            cli_support::assert_no_canary(SESSION, &o, &syslog, &root);
            commands += 1;
        }
    }
    // a config URL on the kernel command line (pinned)
    let url_userdata = userdata.clone();
    let hex = {
        let d = ring::digest::digest(&ring::digest::SHA256, &userdata);
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let cfg = Server::http(move |_, _| ok(&url_userdata));
    let root = dir.join("url");
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(
        root.join("proc/cmdline"),
        format!(
            "ro kubeboot.config={}/w.yaml kubeboot.config.sha256={hex}\n",
            cfg.base()
        ),
    )
    .unwrap();
    for cmd in [
        vec!["config", "show", "--source", "auto"],
        vec![
            "firstboot",
            "--systemctl",
            "/bin/false",
            "--discovery-timeout",
            "1",
        ],
    ] {
        let mut args = cmd.clone();
        args.extend(["--root", root.to_str().unwrap(), "--platform", "none"]);
        let (o, syslog) = traced(&dir, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("fetched"), "{cmd:?}: {err}");
        cli_support::assert_no_canary(CANARY, &o, &syslog, &root);
        commands += 1;
    }
    // an endless body: stops at the 16 MiB limit, a few lines of stderr
    let endless = Server::http(|_, _| Reply::Endless(vec![b'A'; 64 * 1024]));
    let root = dir.join("endless");
    std::fs::create_dir_all(&root).unwrap();
    let start = std::time::Instant::now();
    let base = endless.base();
    let (o, _syslog) = traced(
        &dir,
        &[
            "config",
            "show",
            "--source",
            "auto",
            "--root",
            root.to_str().unwrap(),
            "--platform",
            "gcp",
            "--metadata-url",
            &base,
        ],
    );
    commands += 1;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("larger than 16 MiB"), "{err}");
    assert!(
        o.stderr.len() < 64 * 1024,
        "{} bytes of stderr for an endless body",
        o.stderr.len()
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );
    eprintln!("trace canary sweep (sources): {commands} commands, canary hits 0");
    std::fs::remove_dir_all(&dir).unwrap();
}
