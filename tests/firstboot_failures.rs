//! Every way `kubeboot firstboot` can fail on the way, end to end through
//! the binary, with `status.json` asserted: the phase, the error class,
//! whether a rerun may help, a message that says what happened, and no
//! secret anywhere. The API server is the strict stand-in
//! (tests/api_support); budgets are a few seconds, never minutes.

mod api_support;
mod cli_support;
mod net_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use api_support::{CLUSTER_INFO, Fault, FaultKind, Options, StandIn, kubelet_healthz};
use cli_support::{firstboot_args, render_control_plane, seed, text};
use net_support::{Reply, Server, ok, tls_config};
use serde_json::Value;

const TOKEN_ID: &str = "abcdef";
const TOKEN_SECRET: &str = "0123456789abcdef";

fn tmpdir(name: &str) -> PathBuf {
    cli_support::tmpdir("fail", name)
}

/// status.json, checked for the token secret and the certificate key.
fn status(root: &Path) -> Value {
    let s = std::fs::read_to_string(root.join("var/lib/kubeboot/status.json"))
        .expect("status.json written");
    assert!(
        !s.contains(TOKEN_SECRET),
        "token secret in status.json: {s}"
    );
    serde_json::from_str(&s).unwrap()
}

/// Asserts a failed run: exit 1, the status' phase ("" when it failed
/// before any phase ran: `null`), class and retryable,
/// its message containing every `needles`, no secret in the output, no
/// `done` marker.
fn assert_failed(
    root: &Path,
    o: &Output,
    phase: &str,
    class: &str,
    retryable: bool,
    needles: &[&str],
) -> Value {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for out in [&err, &text(&o.stdout)] {
        assert!(
            !out.contains(TOKEN_SECRET),
            "token secret in the output: {out}"
        );
    }
    let st = status(root);
    assert_eq!(st["result"], "failure", "{st}");
    let want_phase = if phase.is_empty() {
        Value::Null
    } else {
        phase.into()
    };
    assert_eq!(st["phase"], want_phase, "{st}");
    assert_eq!(st["errorClass"], class, "{st}");
    assert_eq!(st["retryable"], retryable, "{st}");
    let e = st["error"].as_str().unwrap();
    for n in needles {
        assert!(e.contains(n), "{n:?} not in {e:?}");
    }
    assert!(!root.join("var/lib/kubeboot/done").exists());
    st
}

/// How long the named phase took, from status.json.
fn phase_millis(st: &Value, phase: &str) -> f64 {
    st["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == phase)
        .unwrap_or_else(|| panic!("{phase} not in {st}"))["millis"]
        .as_f64()
        .unwrap_or_else(|| panic!("no millis for {phase}: {st}"))
}

/// A fake systemctl that records nothing and plays no kubelet: a restart
/// never brings kubelet.conf (the TLS bootstrap never completes).
fn inert_systemctl(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("systemctl-inert");
    std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn playing_systemctl(dir: &Path, root: &Path) -> PathBuf {
    cli_support::fake_systemctl_tls_bootstrap(
        &dir.join("systemctl"),
        root,
        &dir.join("systemctl.log"),
        false,
    )
}

fn kubeboot_cmd(args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubeboot"));
    c.args(args);
    c
}

fn ca_hash(pki: &Path) -> String {
    let o = cli_support::kubeboot(&["certs", "ca-hash", pki.join("ca.crt").to_str().unwrap()]);
    assert!(o.status.success());
    text(&o.stdout).trim().to_string()
}

// ------------------------------------------------------------- worker side

/// A cluster for a worker to join: the stand-in with kubeadm's RBAC, the
/// bootstrap token and cluster-info (signed now unless `signed` is false),
/// serving `serving_pki`'s apiserver certificate; the CA in cluster-info
/// and the pin are `cluster_pki`'s.
struct Join {
    dir: PathBuf,
    root: PathBuf,
    api: StandIn,
    cluster_pki: PathBuf,
}

fn join_cluster(name: &str, signer: bool, other_serving_ca: bool) -> Join {
    let dir = tmpdir(name);
    let cp = render_control_plane(&dir);
    let cluster_pki = cp.join("etc/kubernetes/pki");
    let serving_pki = if other_serving_ca {
        let other = dir.join("other");
        std::fs::create_dir_all(&other).unwrap();
        render_control_plane(&other).join("etc/kubernetes/pki")
    } else {
        cluster_pki.clone()
    };
    let api = StandIn::start(
        &serving_pki.join("apiserver.crt"),
        &serving_pki.join("apiserver.key"),
        &cluster_pki.join("ca.crt"),
        Options {
            signer,
            ..Options::default()
        },
    );
    let ca = std::fs::read(cluster_pki.join("ca.crt")).unwrap();
    api.seed_cluster(&ca, TOKEN_ID, TOKEN_SECRET);
    let root = dir.join("worker");
    seed(
        &root,
        &format!(
            "#cloud-config\nkubeboot:\n  role: worker\n  server: 127.0.0.1:{}\n  token: {TOKEN_ID}.{TOKEN_SECRET}\n  caCertHash: {}\n  node:\n    name: worker-1\n",
            api.port(),
            ca_hash(&cluster_pki)
        ),
    );
    Join {
        dir,
        root,
        api,
        cluster_pki,
    }
}

fn join(j: &Join, systemctl: &Path, healthz: &Server, wait: &str, discovery: &str) -> Output {
    let args = firstboot_args(
        &j.root,
        systemctl,
        &format!("{}/healthz", healthz.base()),
        wait,
        discovery,
    );
    j.api.run(&mut kubeboot_cmd(&args))
}

/// A failed discovery leaves no bootstrap-kubelet.conf (it holds the token).
fn assert_no_bootstrap_conf(root: &Path) {
    let conf = root.join("etc/kubernetes/bootstrap-kubelet.conf");
    assert!(!conf.exists(), "{} written", conf.display());
}

#[test]
fn cluster_info_without_a_signature_for_the_token_fails_discovery_within_its_budget() {
    // no bootstrap signer: cluster-info never gets a jws-kubeconfig-abcdef
    let j = join_cluster("unsigned", false, false);
    let healthz = kubelet_healthz(0);
    let start = Instant::now();
    let o = join(&j, &playing_systemctl(&j.dir, &j.root), &healthz, "5", "2");
    let took = start.elapsed();
    let st = assert_failed(
        &j.root,
        &o,
        "discovery",
        "failed",
        true,
        &[CLUSTER_INFO, "gave up after 2 s"],
    );
    let e = st["error"].as_str().unwrap();
    assert!(e.contains(TOKEN_ID) && e.contains("signature"), "{e}");
    // the 2 s budget bounds the phase (slack for a busy machine)
    let ms = phase_millis(&st, "discovery");
    assert!((1900.0..12000.0).contains(&ms), "discovery took {ms} ms");
    assert!(took < Duration::from_secs(60), "{took:?}");
    // it kept asking (anonymously) while the signature was missing
    let reads = j.api.log().iter().filter(|l| l.url == CLUSTER_INFO).count();
    assert!(reads >= 2, "{reads} reads");
    assert_no_bootstrap_conf(&j.root);
    std::fs::remove_dir_all(&j.dir).unwrap();
}

#[test]
fn a_verified_refetch_served_with_another_ca_is_untrusted() {
    // cluster-info (signed, and carrying the pinned CA) is served by a
    // server whose certificate another CA issued
    let j = join_cluster("other-ca", true, true);
    let healthz = kubelet_healthz(0);
    let o = join(&j, &playing_systemctl(&j.dir, &j.root), &healthz, "5", "5");
    assert_failed(
        &j.root,
        &o,
        "discovery",
        "untrusted-cluster",
        false,
        &["failed TLS verification with the pinned CA"],
    );
    assert_no_bootstrap_conf(&j.root);
    assert!(!j.root.join("etc/kubernetes/pki/ca.crt").exists());
    let _ = &j.cluster_pki;
    std::fs::remove_dir_all(&j.dir).unwrap();
}

#[test]
fn cluster_info_changing_between_the_fetches_is_untrusted() {
    let j = join_cluster("changed", true, false);
    // right after the first (unverified) read, cluster-info names another
    // server; the signer re-signs it, so only the comparison can tell
    j.api.after_first_get(CLUSTER_INFO, |cm| {
        let kc = cm["data"]["kubeconfig"].as_str().unwrap();
        let changed = kc.replace("server: https://127.0.0.1:", "server: https://127.0.0.2:");
        assert_ne!(changed, kc);
        cm["data"]["kubeconfig"] = changed.into();
    });
    let healthz = kubelet_healthz(0);
    let o = join(&j, &playing_systemctl(&j.dir, &j.root), &healthz, "5", "5");
    assert_failed(
        &j.root,
        &o,
        "discovery",
        "untrusted-cluster",
        false,
        &["changed between the unverified and the verified fetch"],
    );
    assert_no_bootstrap_conf(&j.root);
    std::fs::remove_dir_all(&j.dir).unwrap();
}

/// kubeadm waits while cluster-info is not readable (RBAC for anonymous not
/// there yet: 401/403/404) and says so; another refusal is named by its status.
#[test]
fn cluster_info_refused_is_retried_and_named_by_its_status() {
    for (code, not_yet) in [(403, true), (400, false)] {
        let j = join_cluster(&format!("refused-{code}"), true, false);
        j.api
            .fault(Fault::new("GET", CLUSTER_INFO, FaultKind::Status(code)));
        let o = join(
            &j,
            &playing_systemctl(&j.dir, &j.root),
            &kubelet_healthz(0),
            "5",
            "2",
        );
        let st = assert_failed(
            &j.root,
            &o,
            "discovery",
            "failed",
            true,
            &[CLUSTER_INFO, "gave up after 2 s", &format!("HTTP {code} ")],
        );
        let e = st["error"].as_str().unwrap();
        assert_eq!(e.contains("cluster-info not readable yet"), not_yet, "{e}");
        let reads = j.api.log().iter().filter(|l| l.url == CLUSTER_INFO).count();
        assert!(reads >= 2, "{code}: {reads} reads");
        std::fs::remove_dir_all(&j.dir).unwrap();
    }
}

#[test]
fn a_verified_refetch_refused_fails_naming_its_status() {
    let j = join_cluster("refetch-404", true, false);
    // the anonymous read passes; the read over the pinned CA gets 404
    j.api
        .fault(Fault::new("GET", CLUSTER_INFO, FaultKind::Status(404)).skip(1));
    let o = join(
        &j,
        &playing_systemctl(&j.dir, &j.root),
        &kubelet_healthz(0),
        "5",
        "5",
    );
    assert_failed(
        &j.root,
        &o,
        "discovery",
        "failed",
        true,
        &["the verified fetch returned HTTP 404 Not Found"],
    );
    assert_no_bootstrap_conf(&j.root);
    std::fs::remove_dir_all(&j.dir).unwrap();
}

/// kubeadm checks the pins it is given even with unsafeSkipCAVerification
/// (cmd/kubeadm/app/discovery/token/token.go skips the CA check only for an
/// empty pin set): a wrong pin beside the flag is refused; the flag alone
/// joins, with a warning.
#[test]
fn unsafe_skip_ca_verification_still_checks_given_pins() {
    let j = join_cluster("skip-pinned", true, false);
    let other = j.dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let wrong = ca_hash(&render_control_plane(&other).join("etc/kubernetes/pki"));
    let userdata = |pin: &str| {
        format!(
            "#cloud-config\nkubeboot:\n  role: worker\n  server: 127.0.0.1:{}\n  token: {TOKEN_ID}.{TOKEN_SECRET}\n  unsafeSkipCAVerification: true\n{pin}  node:\n    name: worker-1\n",
            j.api.port()
        )
    };
    seed(&j.root, &userdata(&format!("  caCertHash: {wrong}\n")));
    let systemctl = playing_systemctl(&j.dir, &j.root);
    let o = join(&j, &systemctl, &kubelet_healthz(0), "5", "5");
    assert_failed(
        &j.root,
        &o,
        "discovery",
        "untrusted-cluster",
        false,
        &["does not match any caCertHash"],
    );
    assert!(!text(&o.stderr).contains("CA not pinned"));
    // the same cluster, the flag and no pin: trusted as served, with a warning
    seed(&j.root, &userdata(""));
    let o = join(&j, &systemctl, &kubelet_healthz(0), "5", "5");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("CA not pinned (unsafeSkipCAVerification)"));
    std::fs::remove_dir_all(&j.dir).unwrap();
}

#[test]
fn a_tls_bootstrap_that_never_completes_fails_wait_bootstrap_within_its_budget() {
    let j = join_cluster("no-tls-bootstrap", true, false);
    let healthz = kubelet_healthz(1);
    let o = join(&j, &inert_systemctl(&j.dir), &healthz, "2", "5");
    let st = assert_failed(
        &j.root,
        &o,
        "kubelet-wait-bootstrap",
        "failed",
        true,
        &[
            "did not finish its TLS bootstrap within 2 s",
            "kubelet.conf",
        ],
    );
    let ms = phase_millis(&st, "kubelet-wait-bootstrap");
    assert!(
        (1900.0..12000.0).contains(&ms),
        "kubelet-wait-bootstrap took {ms} ms"
    );
    // the kubelet was healthy (after one 503): the wait was for kubelet.conf
    assert!(healthz.requests().len() >= 2);
    // the bootstrap kubeconfig stays for the kubelet's next try
    assert!(
        j.root
            .join("etc/kubernetes/bootstrap-kubelet.conf")
            .is_file()
    );
    std::fs::remove_dir_all(&j.dir).unwrap();
}

#[test]
fn a_kubelet_never_healthy_fails_wait_bootstrap_within_its_budget() {
    let j = join_cluster("kubelet-unhealthy", true, false);
    let healthz = kubelet_healthz(usize::MAX);
    let o = join(&j, &playing_systemctl(&j.dir, &j.root), &healthz, "2", "5");
    let st = assert_failed(
        &j.root,
        &o,
        "kubelet-wait-bootstrap",
        "failed",
        true,
        &[
            "kubelet did not become healthy within 2 s",
            "HTTP 503",
            &healthz.base(),
        ],
    );
    let ms = phase_millis(&st, "kubelet-wait-bootstrap");
    assert!((1900.0..12000.0).contains(&ms), "took {ms} ms");
    assert!(healthz.requests().len() >= 2, "polled, not asked once");
    std::fs::remove_dir_all(&j.dir).unwrap();
}

// --------------------------------------------------------------- init side

struct Init {
    dir: PathBuf,
    root: PathBuf,
    api: StandIn,
    _stubs: [Server; 2],
    systemctl: PathBuf,
}

fn init_cluster(name: &str) -> Init {
    let dir = tmpdir(name);
    let root = render_control_plane(&dir);
    let pki = root.join("etc/kubernetes/pki");
    let api = StandIn::start_pki(
        &pki,
        Options {
            node: Some("cp-1".into()),
            ..Options::default()
        },
    );
    let stub = || {
        Server::https(
            tls_config(
                &pki.join("front-proxy-client.crt"),
                &pki.join("front-proxy-client.key"),
                None,
            ),
            |_, _| ok(b"ok"),
        )
    };
    let (kcm, sched) = (stub(), stub());
    seed(
        &root,
        &format!(
            "#cloud-config\nkubeboot:\n  role: control-plane\n  node:\n    name: cp-1\n    advertiseAddress: 127.0.0.1\n    bindPort: {}\n  cluster:\n    controllerManager:\n      extraArgs:\n        secure-port: \"{}\"\n    scheduler:\n      extraArgs:\n        secure-port: \"{}\"\n",
            api.port(),
            kcm.port,
            sched.port
        ),
    );
    let systemctl = playing_systemctl(&dir, &root);
    Init {
        dir,
        root,
        api,
        _stubs: [kcm, sched],
        systemctl,
    }
}

fn init(c: &Init, healthz: &Server, wait: &str) -> Output {
    let args = firstboot_args(
        &c.root,
        &c.systemctl,
        &format!("{}/healthz", healthz.base()),
        wait,
        "5",
    );
    c.api.run(&mut kubeboot_cmd(&args))
}

/// The statuses the stand-in answered for `method` requests whose URL
/// ends with `suffix`, in order.
fn statuses(api: &StandIn, method: &str, suffix: &str) -> Vec<u16> {
    api.log()
        .iter()
        .filter(|l| l.method == method && l.url.ends_with(suffix))
        .map(|l| l.status)
        .collect()
}

#[test]
fn a_kubelet_never_healthy_fails_wait_control_plane_within_its_budget() {
    let c = init_cluster("init-kubelet-unhealthy");
    let healthz = kubelet_healthz(usize::MAX);
    let o = init(&c, &healthz, "2");
    let st = assert_failed(
        &c.root,
        &o,
        "wait-control-plane",
        "failed",
        true,
        &["kubelet did not become healthy within 2 s", "HTTP 503"],
    );
    let ms = phase_millis(&st, "wait-control-plane");
    assert!((1900.0..12000.0).contains(&ms), "took {ms} ms");
    assert!(healthz.requests().len() >= 2);
    assert!(
        c.api.log().is_empty(),
        "no API call before the kubelet is healthy"
    );
    std::fs::remove_dir_all(&c.dir).unwrap();
}

#[test]
fn init_waits_for_an_unhealthy_kubelet_to_become_healthy() {
    let c = init_cluster("init-kubelet-late");
    let healthz = kubelet_healthz(3);
    let o = init(&c, &healthz, "20");
    assert!(o.status.success(), "{}", text(&o.stderr));
    // every unhealthy answer was seen, then the healthy one, before any
    // API request
    assert!(
        healthz.requests().len() >= 4,
        "{}",
        healthz.requests().len()
    );
    std::fs::remove_dir_all(&c.dir).unwrap();
}

#[test]
fn a_503_during_upload_config_is_retried() {
    let c = init_cluster("init-503");
    c.api
        .fault(Fault::new("POST", "/configmaps", FaultKind::Status(503)).times(2));
    let o = init(&c, &kubelet_healthz(0), "20");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let seen = statuses(&c.api, "POST", "/namespaces/kube-system/configmaps");
    assert_eq!(&seen[..3], [503, 503, 201], "{seen:?}");
    std::fs::remove_dir_all(&c.dir).unwrap();
}

#[test]
fn a_429_with_retry_after_during_bootstrap_token_is_retried() {
    let c = init_cluster("init-429");
    c.api
        .fault(Fault::new("POST", "/secrets", FaultKind::TooMany(1)).times(2));
    let o = init(&c, &kubelet_healthz(0), "20");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let seen = statuses(&c.api, "POST", "/namespaces/kube-system/secrets");
    assert_eq!(&seen[..3], [429, 429, 201], "{seen:?}");
    std::fs::remove_dir_all(&c.dir).unwrap();
}

#[test]
fn a_connection_reset_mid_response_is_retried() {
    let c = init_cluster("init-reset");
    c.api
        .fault(Fault::new("POST", "/clusterroles", FaultKind::Reset).times(1));
    let o = init(&c, &kubelet_healthz(0), "20");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let seen = statuses(&c.api, "POST", "/clusterroles");
    assert_eq!(&seen[..2], [0, 201], "reset, then created: {seen:?}");
    std::fs::remove_dir_all(&c.dir).unwrap();
}

#[test]
fn a_response_slower_than_the_attempt_timeout_is_retried() {
    let c = init_cluster("init-slow");
    // attempts time out after 5 s (Retry::within); this answer takes 6 s
    c.api.fault(
        Fault::new(
            "GET",
            "/api/v1/nodes/cp-1",
            FaultKind::Slow(Duration::from_secs(6)),
        )
        .times(1),
    );
    let o = init(&c, &kubelet_healthz(0), "20");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let gets = statuses(&c.api, "GET", "/api/v1/nodes/cp-1");
    assert!(gets.len() >= 2, "{gets:?}");
    std::fs::remove_dir_all(&c.dir).unwrap();
}

#[test]
fn a_persistent_500_fails_bootstrap_token_retryably_within_its_budget() {
    let c = init_cluster("init-500");
    c.api.fault(Fault::new(
        "POST",
        "/namespaces/kube-system/secrets",
        FaultKind::Status(500),
    ));
    let o = init(&c, &kubelet_healthz(0), "3");
    let st = assert_failed(
        &c.root,
        &o,
        "bootstrap-token",
        "failed",
        true,
        &[
            "POST https://127.0.0.1:",
            "/api/v1/namespaces/kube-system/secrets",
            "HTTP 500",
        ],
    );
    let ms = phase_millis(&st, "bootstrap-token");
    assert!((2500.0..15000.0).contains(&ms), "took {ms} ms");
    assert!(statuses(&c.api, "POST", "/secrets").len() >= 2, "retried");
    std::fs::remove_dir_all(&c.dir).unwrap();
}

// ------------------------------------------------------- metadata service

#[test]
fn a_failing_metadata_service_is_reported_with_its_url_and_status() {
    let dir = tmpdir("metadata");
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    // GCE's metadata server refusing (403 is final: no budget to wait out)
    let server = Server::http(|_, _| Reply::Respond(403, vec![], b"forbidden".to_vec()));
    let o = Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args([
            "firstboot",
            "--root",
            root.to_str().unwrap(),
            "--platform",
            "gcp",
        ])
        .args(["--metadata-url", &server.base()])
        .output()
        .unwrap();
    // no phase ran: the search for userdata failed first
    assert_failed(
        &root,
        &o,
        "",
        "no-userdata",
        false,
        &["gce metadata", &server.base(), "HTTP 403"],
    );
    assert!(!server.requests().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An EC2 metadata service that hands out a session token and then answers
/// every user-data read 503: retried with backoff within the source's
/// budget (`--metadata-timeout 3`, the runtime knob for the 60 s default),
/// then a retryable failure before any phase (class `failed`: a source
/// failed transiently, so a retry may find the userdata; `no-userdata` is
/// for sources that answered "nothing here") that names the URL and the
/// status, never the session token, within its budget.
#[test]
fn a_metadata_service_answering_503_fails_retryably_within_its_budget() {
    const SESSION: &str = "AQAEAFakeImdsSessionToken0123456789==";
    let dir = tmpdir("metadata-503");
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = Server::http(|req, _| {
        if req.method == "PUT" && req.path == "/latest/api/token" {
            Reply::Respond(200, vec![], SESSION.as_bytes().to_vec())
        } else {
            Reply::Respond(503, vec![], b"unavailable".to_vec())
        }
    });
    let started = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args([
            "firstboot",
            "--root",
            root.to_str().unwrap(),
            "--platform",
            "aws",
            "--metadata-timeout",
            "3",
            "--log-level",
            "debug",
        ])
        .args(["--metadata-url", &server.base()])
        .output()
        .unwrap();
    let took = started.elapsed();
    let st = assert_failed(
        &root,
        &o,
        "",
        "failed",
        true,
        &["no userdata found", &server.base(), "HTTP 503", "gave up"],
    );
    // retried, with the session token, until the budget was spent
    let reads: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/latest/user-data")
        .collect();
    assert!(reads.len() >= 2, "{} user-data reads", reads.len());
    assert!(
        reads
            .iter()
            .all(|r| r.header("X-aws-ec2-metadata-token") == Some(SESSION))
    );
    // the bound: the 3 s budget was spent (the loop stops when less than
    // 50 ms is left), not the 60 s default (slack for a busy machine)
    assert!(took >= Duration::from_millis(2500), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    // the session token is a secret: not in the status file or the output
    let status_text = std::fs::read_to_string(root.join("var/lib/kubeboot/status.json")).unwrap();
    for out in [status_text, text(&o.stderr), text(&o.stdout)] {
        assert!(!out.contains(SESSION), "{out}");
    }
    assert!(st["error"].as_str().unwrap().contains("ec2"), "{st}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// --------------------------------------------------------------- disk full

/// Runs `args` (a kubeboot command line) in a private mount namespace
/// where `root/etc/kubernetes` is a tmpfs of `size`; `None` when this
/// machine cannot make one (no CAP_SYS_ADMIN).
fn with_small_disk(root: &Path, size: &str, args: &[String]) -> Option<Output> {
    let target = root.join("etc/kubernetes");
    std::fs::create_dir_all(&target).unwrap();
    let script = format!(
        "mount -t tmpfs -o size={size} kubeboot-test {} || exit 97; exec \"$@\"",
        target.display()
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(env!("CARGO_BIN_EXE_kubeboot"))
        .args(args)
        .output()
        .expect("unshare (util-linux)");
    if o.status.code() == Some(97)
        || (o.status.code() == Some(1) && text(&o.stderr).starts_with("unshare:"))
    {
        if std::env::var("KUBEBOOT_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("cannot mount a tmpfs here: {}", text(&o.stderr));
        }
        eprintln!(
            "SKIP disk full: cannot mount a tmpfs here: {}",
            text(&o.stderr)
        );
        return None;
    }
    Some(o)
}

#[test]
fn a_full_disk_fails_with_class_filesystem() {
    let dir = tmpdir("disk-full");
    let root = dir.join("root");
    seed(
        &root,
        "#cloud-config\nkubeboot:\n  role: control-plane\n  node:\n    name: cp-1\n    advertiseAddress: 127.0.0.1\n",
    );
    let systemctl = playing_systemctl(&dir, &root);
    let args = firstboot_args(&root, &systemctl, "http://127.0.0.1:9/healthz", "2", "2");
    // 16 KiB: the first few certificates fit, the rest do not
    let Some(o) = with_small_disk(&root, "16k", &args) else {
        return;
    };
    let st = assert_failed(
        &root,
        &o,
        "certs",
        "filesystem",
        true,
        &["etc/kubernetes/pki"],
    );
    let e = st["error"].as_str().unwrap();
    assert!(
        e.contains("No space left on device") || e.contains("os error 28"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
