//! `kubeboot certs renew` end to end on a control plane rendered by the
//! binary with `certificateValidity: 240h` (leaves that expire in 10 days,
//! inside the 30-day window): everything due is renewed; openssl verifies
//! each new certificate against the unchanged CA and reads the same
//! subject, SANs and usages as before; the keys are new (kubeadm's
//! renewal generates one); kubectl reads the renewed kubeconfigs; the four
//! static pod manifests changed only by the restart annotation and still
//! validate as Pods; a second run changes nothing. External-CA mode says
//! per certificate that it cannot sign. The restarts go in a safe order:
//! the controller manager's and the scheduler's manifests change only once
//! the restarted API server answers `/livez` again (a loopback stand-in
//! for it that goes away when its manifest changes and comes back late).

mod cli_support;
mod net_support;
mod pki_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cli_support::{kubeboot, render_config, text};
use pki_support::{openssl, run, snapshot, tmp};

const LEAVES: [(&str, &str, &str); 7] = [
    ("apiserver", "apiserver", "ca"),
    ("apiserver-kubelet-client", "apiserver-kubelet-client", "ca"),
    ("front-proxy-client", "front-proxy-client", "front-proxy-ca"),
    ("etcd-server", "etcd/server", "etcd/ca"),
    ("etcd-peer", "etcd/peer", "etcd/ca"),
    (
        "etcd-healthcheck-client",
        "etcd/healthcheck-client",
        "etcd/ca",
    ),
    ("apiserver-etcd-client", "apiserver-etcd-client", "etcd/ca"),
];
const KUBECONFIGS: [&str; 4] = [
    "admin.conf",
    "super-admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
];
const PODS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
const CAS: [&str; 3] = ["ca", "front-proxy-ca", "etcd/ca"];

/// Renders a control plane whose leaves last 10 days.
fn short_lived(name: &str) -> (PathBuf, PathBuf) {
    let dir = tmp(&format!("renew-{name}"));
    let root = render_config(
        &dir,
        "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\ncluster:\n  certificateValidity: 240h\n  certSANs: [cp.example.internal, 192.0.2.100]\nnode:\n  name: cp-1\n  advertiseAddress: 127.0.0.1\n",
    );
    (dir, root)
}

fn renew(root: &Path, args: &[&str]) -> Output {
    let mut all = vec!["certs", "renew"];
    all.extend_from_slice(args);
    // nothing runs these nodes' etcd: never wait for a restart (an etcd
    // of someone else's on 127.0.0.1:2381 must not be mistaken for ours)
    all.extend_from_slice(&["--restart-wait", "0", "--root", root.to_str().unwrap()]);
    kubeboot(&all)
}

fn pki(root: &Path) -> PathBuf {
    root.join("etc/kubernetes/pki")
}

/// openssl's view of a certificate: subject, SANs, extended key usage.
fn identity(crt: &Path) -> String {
    openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-ext",
        "subjectAltName,extendedKeyUsage",
        "-in",
        crt.to_str().unwrap(),
    ])
}

/// NotAfter as openssl prints it in ISO 8601, e.g. `2026-12-08 08:00:31Z`.
fn openssl_not_after(crt: &Path) -> String {
    let out = openssl(&[
        "x509",
        "-noout",
        "-enddate",
        "-dateopt",
        "iso_8601",
        "-in",
        crt.to_str().unwrap(),
    ]);
    out.trim().strip_prefix("notAfter=").unwrap().to_string()
}

/// NotAfter as Unix seconds, read by openssl.
fn not_after(crt: &Path) -> i64 {
    let out = openssl_not_after(crt);
    let s = out.trim_end_matches('Z');
    let n: Vec<i64> = s
        .split(|c: char| !c.is_ascii_digit())
        .map(|x| x.parse().unwrap())
        .collect();
    let date = time::Date::from_calendar_date(
        n[0] as i32,
        time::Month::try_from(n[1] as u8).unwrap(),
        n[2] as u8,
    )
    .unwrap();
    date.with_hms(n[3] as u8, n[4] as u8, n[5] as u8)
        .unwrap()
        .assume_utc()
        .unix_timestamp()
}

fn verify(ca: &Path, crt: &Path) {
    let out = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        crt.to_str().unwrap(),
    ]);
    assert!(out.trim().ends_with(": OK"), "{out}");
}

/// The kubeconfig's client certificate, as kubectl reads it, into a file.
fn client_cert(kubeconfig: &Path, out: &Path) -> PathBuf {
    let b64 = run(Command::new("kubectl").args([
        "config",
        "view",
        "--raw",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "-o",
        "jsonpath={.users[0].user.client-certificate-data}",
    ]));
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap();
    std::fs::write(out, pem).unwrap();
    out.to_path_buf()
}

fn pubkey_of_cert(crt: &Path) -> String {
    openssl(&["x509", "-noout", "-pubkey", "-in", crt.to_str().unwrap()])
}

fn pubkey_of_key(key: &Path) -> String {
    openssl(&["pkey", "-pubout", "-in", key.to_str().unwrap()])
}

/// The lines of `after` that are not in `before` (and vice versa).
fn line_diff(before: &str, after: &str) -> (Vec<String>, Vec<String>) {
    let b: Vec<&str> = before.lines().collect();
    let a: Vec<&str> = after.lines().collect();
    let added = a
        .iter()
        .filter(|l| !b.contains(l))
        .map(|s| s.to_string())
        .collect();
    let removed = b
        .iter()
        .filter(|l| !a.contains(l))
        .map(|s| s.to_string())
        .collect();
    (added, removed)
}

#[test]
fn expiring_certificates_are_renewed_against_the_unchanged_cas_and_a_rerun_changes_nothing() {
    let (dir, root) = short_lived("all");
    let pki = pki(&root);
    let kdir = root.join("etc/kubernetes");
    let ca_before: Vec<Vec<u8>> = CAS
        .iter()
        .flat_map(|c| [format!("{c}.crt"), format!("{c}.key")])
        .map(|f| std::fs::read(pki.join(f)).unwrap())
        .collect();
    let mut before = Vec::new();
    for (name, stem, _) in LEAVES {
        let crt = pki.join(format!("{stem}.crt"));
        let key = std::fs::read(pki.join(format!("{stem}.key"))).unwrap();
        before.push((name, identity(&crt), not_after(&crt), key));
    }
    let mut kc_before = Vec::new();
    for kc in KUBECONFIGS {
        let crt = client_cert(&kdir.join(kc), &dir.join(format!("{kc}.before.crt")));
        kc_before.push((
            kc,
            identity(&crt),
            not_after(&crt),
            std::fs::read_to_string(kdir.join(kc)).unwrap(),
        ));
    }
    let manifests_before: Vec<String> = PODS
        .iter()
        .map(|p| std::fs::read_to_string(kdir.join(format!("manifests/{p}.yaml"))).unwrap())
        .collect();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (name, _, exp, _) in &before {
        // the override made them expire inside the window
        assert!(*exp - now < 11 * 86400, "{name} expires too late to be due");
    }

    let o = renew(&root, &["all", "--if-expiring-within", "30d"]);
    assert!(
        o.status.success(),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let out = text(&o.stdout);
    eprintln!("first run:\n{out}");
    assert_eq!(out.matches(": renewed (").count(), 11, "{out}");
    // the log's summary counts the same rows
    let err = text(&o.stderr);
    assert!(
        err.contains("11 certificate(s) renewed; status in "),
        "{err}"
    );

    // every CA byte for byte
    let ca_after: Vec<Vec<u8>> = CAS
        .iter()
        .flat_map(|c| [format!("{c}.crt"), format!("{c}.key")])
        .map(|f| std::fs::read(pki.join(f)).unwrap())
        .collect();
    assert!(ca_before == ca_after, "a CA file changed");

    for ((name, id, exp, old_key), (_, stem, ca)) in before.iter().zip(LEAVES) {
        let crt = pki.join(format!("{stem}.crt"));
        let key = pki.join(format!("{stem}.key"));
        verify(&pki.join(format!("{ca}.crt")), &crt);
        assert_eq!(&identity(&crt), id, "{name}: subject/SANs/usages changed");
        let new_exp = not_after(&crt);
        eprintln!(
            "{name}: NotAfter {} -> {}",
            time::OffsetDateTime::from_unix_timestamp(*exp)
                .unwrap()
                .date(),
            time::OffsetDateTime::from_unix_timestamp(new_exp)
                .unwrap()
                .date()
        );
        // 365 days from now (defaults: no config given), give or take a minute
        assert!(
            (new_exp - now - 365 * 86400).abs() < 120,
            "{name}: {new_exp}"
        );
        assert!(new_exp > *exp);
        let new_key = std::fs::read(&key).unwrap();
        assert_ne!(
            &new_key, old_key,
            "{name}: kubeadm's renewal makes a new key"
        );
        assert_eq!(
            pubkey_of_cert(&crt),
            pubkey_of_key(&key),
            "{name}: key and cert pair"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    for (kc, id, exp, text_before) in &kc_before {
        let path = kdir.join(kc);
        let crt = client_cert(&path, &dir.join(format!("{kc}.after.crt")));
        verify(&pki.join("ca.crt"), &crt);
        assert_eq!(&identity(&crt), id, "{kc}: subject changed");
        assert!(not_after(&crt) > *exp + 300 * 86400, "{kc}");
        // only the two client data lines changed
        let after = std::fs::read_to_string(&path).unwrap();
        let (added, removed) = line_diff(text_before, &after);
        let data_line = |l: &String| {
            l.trim_start().starts_with("client-certificate-data: ")
                || l.trim_start().starts_with("client-key-data: ")
        };
        assert!(
            added.len() == 2 && added.iter().all(data_line),
            "{kc}: {added:?}"
        );
        assert!(
            removed.len() == 2 && removed.iter().all(data_line),
            "{kc}: {removed:?}"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // the manifests changed by exactly the annotation, and still validate as Pods
    for (pod, m_before) in PODS.iter().zip(&manifests_before) {
        let path = kdir.join(format!("manifests/{pod}.yaml"));
        let after = std::fs::read_to_string(&path).unwrap();
        let (added, removed) = line_diff(m_before, &after);
        assert!(removed.is_empty(), "{pod}: {removed:?}");
        assert!(
            added
                .iter()
                .any(|l| l.starts_with("    kubeboot.dev/certs-renewed-at: \"")),
            "{pod}: {added:?}"
        );
        assert!(added.len() <= 2, "{pod}: {added:?}");
        kubernetes_validate(&path);
    }
    let status: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("var/lib/kubeboot/renew-status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(status["result"], "success");
    assert_eq!(status["window"], "720h0m0s");
    assert_eq!(
        status["restarted"],
        serde_json::json!([
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler"
        ])
    );
    // --restart-wait 0: no pod's restart is checked, so none is reported
    assert_eq!(status.get("restartChecks"), None, "{status}");
    let certs = status["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 11);
    assert!(
        certs
            .iter()
            .all(|c| c["outcome"] == "renewed" && c["expiresAfter"].is_string())
    );
    // a certificate file's expiresAfter is its NotAfter as openssl prints it
    // (`notAfter=2027-11-28 08:00:31Z`), in RFC 3339
    let mut files = 0;
    for c in certs {
        let file = PathBuf::from(c["file"].as_str().unwrap());
        if file.extension().is_some_and(|e| e == "crt") {
            let file = if file.is_absolute() {
                file
            } else {
                root.join(file)
            };
            let want = openssl_not_after(&file).replacen(' ', "T", 1);
            assert_eq!(c["expiresAfter"], want.as_str(), "{c}");
            files += 1;
        }
    }
    assert!(files >= 7, "{certs:?}");

    // a second run inside the same window: nothing is due, nothing changes
    let snap = |r: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        snapshot(r)
            .into_iter()
            .filter(|(p, _)| !p.ends_with("renew-status.json") && !p.ends_with("kubeboot/lock"))
            .collect()
    };
    let files = snap(&root);
    let o = renew(&root, &["all", "--if-expiring-within", "30d"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert_eq!(out.matches(": not due (").count(), 11, "{out}");
    assert!(out.contains("no static pod restarted"), "{out}");
    assert!(files == snap(&root), "the second run changed files");
    let status: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("var/lib/kubeboot/renew-status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(status["restarted"], serde_json::json!([]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_named_certificate_restarts_only_its_pod() {
    let (dir, root) = short_lived("one");
    let kdir = root.join("etc/kubernetes");
    let files = snapshot(&root);
    // no window: renewed unconditionally, as kubeadm's `certs renew NAME`
    let o = renew(&root, &["scheduler.conf"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let changed: Vec<PathBuf> = snapshot(&root)
        .into_iter()
        .filter(|(p, b)| !files.iter().any(|(q, c)| q == p && c == b))
        .map(|(p, _)| p.strip_prefix(&root).unwrap().to_path_buf())
        .filter(|p| !p.ends_with("var/lib/kubeboot/lock"))
        .collect();
    assert_eq!(
        changed,
        [
            PathBuf::from("etc/kubernetes/manifests/kube-scheduler.yaml"),
            PathBuf::from("etc/kubernetes/scheduler.conf"),
            PathBuf::from("var/lib/kubeboot/renew-status.json"),
        ]
    );
    // --no-restart leaves the manifests alone
    let before = std::fs::read(kdir.join("manifests/kube-apiserver.yaml")).unwrap();
    let o = renew(&root, &["apiserver", "--no-restart"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        std::fs::read(kdir.join("manifests/kube-apiserver.yaml")).unwrap(),
        before
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn external_ca_mode_says_per_certificate_that_it_cannot_sign() {
    let (dir, root) = short_lived("external");
    let pki = pki(&root);
    std::fs::remove_file(pki.join("ca.key")).unwrap();
    let apiserver_before = std::fs::read(pki.join("apiserver.crt")).unwrap();
    let o = renew(&root, &["all"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for name in [
        "apiserver",
        "apiserver-kubelet-client",
        "admin.conf",
        "super-admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("{name} in {out}"));
        assert!(
            line.contains("cannot sign") && line.contains("external CA"),
            "{line}"
        );
    }
    // leaves of CAs whose keys are here are still renewed
    for name in ["front-proxy-client", "etcd-server", "apiserver-etcd-client"] {
        assert!(out.contains(&format!("{name}: renewed")), "{out}");
    }
    assert_eq!(
        std::fs::read(pki.join("apiserver.crt")).unwrap(),
        apiserver_before
    );
    let err = text(&o.stderr);
    assert!(err.contains("could not be renewed"), "{err}");
    let status: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("var/lib/kubeboot/renew-status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(status["result"], "failure");
    // front-proxy and etcd certs were renewed, so their pods restart
    assert_eq!(
        status["restarted"],
        serde_json::json!(["etcd", "kube-apiserver"])
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_are_usage_errors() {
    let (dir, root) = short_lived("bad");
    for (args, needle) in [
        (vec!["kubelet.conf"], "kubelet.conf"),
        (vec!["ca"], "\"ca\""),
        (vec!["all", "apiserver"], "all"),
        (
            vec!["all", "--if-expiring-within", "soon"],
            "--if-expiring-within",
        ),
    ] {
        let o = renew(&root, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            text(&o.stderr).contains(needle),
            "{args:?}: {}",
            text(&o.stderr)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The manifest against the Kubernetes OpenAPI schema (PyPI
/// kubernetes-validate, strict).
fn kubernetes_validate(path: &Path) {
    match Command::new("kubernetes-validate")
        .args(["--strict", "-k", "1.34.0"])
        .arg(path)
        .output()
    {
        Ok(o) => assert!(
            o.status.success(),
            "{}: {}{}",
            path.display(),
            text(&o.stdout),
            text(&o.stderr)
        ),
        Err(e) if std::env::var("KUBEBOOT_REQUIRE_PEERS").as_deref() != Ok("1") => {
            eprintln!("SKIP kubernetes-validate of {}: {e}", path.display())
        }
        Err(e) => panic!("kubernetes-validate is required: {e}"),
    }
}

/// A stand-in for this node's API server on 127.0.0.1: `/livez` answers
/// 200 while `up`, else 503 (the old pod gone, the new one starting);
/// serves the node's own apiserver certificate (verified with its CA).
struct FakeApiServer {
    server: net_support::Server,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    livez: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

fn fake_api_server(pki: &Path) -> FakeApiServer {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let up = std::sync::Arc::new(AtomicBool::new(true));
    let livez = std::sync::Arc::new(AtomicUsize::new(0));
    let (u, n) = (up.clone(), livez.clone());
    let server = net_support::Server::https(
        net_support::tls_config(&pki.join("apiserver.crt"), &pki.join("apiserver.key"), None),
        move |req, _| {
            if req.path != "/livez" {
                return net_support::Reply::Respond(404, vec![], b"{}".to_vec());
            }
            n.fetch_add(1, Ordering::SeqCst);
            if u.load(Ordering::SeqCst) {
                net_support::ok(b"ok")
            } else {
                net_support::Reply::Respond(503, vec![], b"not live".to_vec())
            }
        },
    );
    FakeApiServer { server, up, livez }
}

/// When each of the three manifests was first seen with the restart
/// annotation, and when the API server came back; the kubelet's part:
/// once the API server's manifest changes, its pod goes away (`/livez`
/// 503) and the new one is live `back_after` later (never, if `None`).
struct Seen {
    apiserver: Option<std::time::Instant>,
    back: Option<std::time::Instant>,
    controller_manager: Option<std::time::Instant>,
    scheduler: Option<std::time::Instant>,
}

fn play_kubelet(
    root: &Path,
    api: &FakeApiServer,
    back_after: Option<std::time::Duration>,
    mut renew: std::process::Child,
) -> (Output, Seen) {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let m = root.join("etc/kubernetes/manifests");
    let changed = |pod: &str| {
        std::fs::read_to_string(m.join(format!("{pod}.yaml")))
            .unwrap()
            .contains("kubeboot.dev/certs-renewed-at")
    };
    let mut seen = Seen {
        apiserver: None,
        back: None,
        controller_manager: None,
        scheduler: None,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = Instant::now();
        if seen.apiserver.is_none() && changed("kube-apiserver") {
            seen.apiserver = Some(now);
            api.up.store(false, Ordering::SeqCst);
        }
        if let (Some(t), Some(after), None) = (seen.apiserver, back_after, seen.back)
            && now >= t + after
        {
            // noted before it answers, so nothing can see it live earlier
            seen.back = Some(now);
            api.up.store(true, Ordering::SeqCst);
        }
        if seen.controller_manager.is_none() && changed("kube-controller-manager") {
            seen.controller_manager = Some(now);
        }
        if seen.scheduler.is_none() && changed("kube-scheduler") {
            seen.scheduler = Some(now);
        }
        if renew.try_wait().unwrap().is_some() {
            break;
        }
        assert!(now < deadline, "certs renew did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    // the last changes, written just before the exit
    if seen.controller_manager.is_none() && changed("kube-controller-manager") {
        seen.controller_manager = Some(Instant::now());
    }
    if seen.scheduler.is_none() && changed("kube-scheduler") {
        seen.scheduler = Some(Instant::now());
    }
    (renew.wait_with_output().unwrap(), seen)
}

/// Renders a short-lived control plane whose API server listens on the
/// fake's port, and starts the fake.
fn node_with_fake_api_server(name: &str) -> (PathBuf, PathBuf, FakeApiServer) {
    let dir = tmp(&format!("renew-{name}"));
    // the CA and the apiserver certificate first: the fake serves them
    let ca_dir = dir.join("pki-src");
    std::fs::create_dir_all(&ca_dir).unwrap();
    let seed = render_config(
        &ca_dir,
        "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode:\n  name: cp-1\n  advertiseAddress: 127.0.0.1\n",
    );
    let api = fake_api_server(&pki(&seed));
    // the node, with those CAs (carried PKI is kept) and the fake's port
    let root = dir.join("cp");
    std::fs::create_dir_all(root.join("etc/kubernetes")).unwrap();
    let o = Command::new("cp")
        .arg("-a")
        .arg(pki(&seed))
        .arg(root.join("etc/kubernetes/"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rendered = render_config(
        &dir,
        &format!(
            "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\ncluster:\n  certificateValidity: 240h\nnode:\n  name: cp-1\n  advertiseAddress: 127.0.0.1\n  bindPort: {}\n",
            api.server.port
        ),
    );
    assert_eq!(rendered, root);
    let manifest =
        std::fs::read_to_string(root.join("etc/kubernetes/manifests/kube-apiserver.yaml")).unwrap();
    assert!(
        manifest.contains(&format!("- --secure-port={}", api.server.port)),
        "{manifest}"
    );
    (dir, root, api)
}

fn spawn_renew(root: &Path, wait: &str) -> std::process::Child {
    // etcd's certificates are not named: nothing here plays etcd
    Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args([
            "certs",
            "renew",
            "apiserver",
            "controller-manager.conf",
            "scheduler.conf",
            "--restart-wait",
            wait,
            "--root",
            root.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_controller_manager_and_scheduler_change_only_after_the_api_server_is_back() {
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let (dir, root, api) = node_with_fake_api_server("order");
    let renew = spawn_renew(&root, "60");
    let (o, seen) = play_kubelet(&root, &api, Some(Duration::from_secs(3)), renew);
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let api_changed = seen.apiserver.expect("the API server's manifest changed");
    let back = seen.back.unwrap_or_else(|| {
        panic!("certs renew ended before the API server was back: it did not wait for it\n{stderr}")
    });
    let cm = seen
        .controller_manager
        .expect("controller manager's manifest changed");
    let sched = seen.scheduler.expect("scheduler's manifest changed");
    assert!(
        cm >= back && sched >= back,
        "changed {:?} (controller manager) and {:?} (scheduler) after the API server's manifest, but it was back only after {:?}",
        cm - api_changed,
        sched - api_changed,
        back - api_changed
    );
    // it asked /livez before (live), while it was gone, and once back
    assert!(api.livez.load(Ordering::SeqCst) >= 3);
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("var/lib/kubeboot/renew-status.json")).unwrap(),
    )
    .unwrap();
    let checks = status["restartChecks"].to_string();
    assert!(
        checks.contains("kube-apiserver restarted and is live"),
        "{status}"
    );
    // the controller manager and scheduler have no probe: no line for them
    assert_eq!(
        status["restartChecks"].as_array().unwrap().len(),
        1,
        "{status}"
    );
    assert_eq!(
        status["restarted"],
        serde_json::json!([
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler"
        ])
    );
    eprintln!(
        "figure: the API server was back {:.1} s after its manifest changed; the controller manager's manifest changed {:.1} s after it, the scheduler's {:.1} s",
        (back - api_changed).as_secs_f64(),
        (cm - api_changed).as_secs_f64(),
        (sched - api_changed).as_secs_f64()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// No kubelet restarts the API server: it stays live throughout, which is
/// not a restart (kubeadm's wait looks for the pod going away and back).
#[test]
fn an_api_server_that_never_goes_down_is_not_taken_for_restarted() {
    let (dir, root, _api) = node_with_fake_api_server("never-down");
    let o = spawn_renew(&root, "3").wait_with_output().unwrap();
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("var/lib/kubeboot/renew-status.json")).unwrap(),
    )
    .unwrap();
    let checks = status["restartChecks"].to_string();
    assert!(
        checks.contains("kube-apiserver was not seen restarted and live")
            && !checks.contains("restarted and is live ("),
        "{status}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_api_server_that_never_comes_back_is_waited_for_only_within_the_bound() {
    use std::time::{Duration, Instant};
    let (dir, root, api) = node_with_fake_api_server("never-back");
    let started = Instant::now();
    let renew = spawn_renew(&root, "2");
    let (o, seen) = play_kubelet(&root, &api, None, renew);
    let stderr = text(&o.stderr);
    // the renewal itself succeeded: exit 0, a warning, the others changed
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("kube-apiserver was not seen restarted and live"),
        "{stderr}"
    );
    let cm = seen
        .controller_manager
        .expect("controller manager's manifest changed");
    assert!(cm - seen.apiserver.unwrap() >= Duration::from_secs(2));
    assert!(seen.scheduler.is_some());
    // bounded (generous: the machine is slow and shared)
    assert!(started.elapsed() < Duration::from_secs(60));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_api_server_manifest_without_its_address_is_reported_not_waited_for() {
    let (dir, root) = short_lived("no-address");
    let manifest = root.join("etc/kubernetes/manifests/kube-apiserver.yaml");
    let m = std::fs::read_to_string(&manifest).unwrap();
    assert!(m.contains("    - --advertise-address=127.0.0.1\n"), "{m}");
    std::fs::write(
        &manifest,
        m.replace("    - --advertise-address=127.0.0.1\n", ""),
    )
    .unwrap();
    let o = spawn_renew(&root, "3").wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("var/lib/kubeboot/renew-status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        status["restartChecks"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    assert!(
        status["restartChecks"][0]
            .as_str()
            .unwrap()
            .starts_with("kube-apiserver not waited for: no --advertise-address in "),
        "{status}"
    );
    assert!(text(&o.stdout).contains("kube-apiserver not waited for"));
    std::fs::remove_dir_all(dir).unwrap();
}
