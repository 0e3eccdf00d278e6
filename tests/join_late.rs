//! A worker that boots before its control plane joins once the control
//! plane answers, without a rerun: the real `kubeboot firstboot` with its
//! default budgets (no deadline for a join), time compressed by a 1 s
//! progress interval instead of 30 s.
//!
//! - `the_api_server_comes_up_late`: the API server's address refuses
//!   connections for a while (nothing listens), then a loopback forwarder
//!   opens it in front of the TLS API server stand-in.
//! - `the_api_server_answers_503_for_a_while`: the stand-in answers 503
//!   (with `Retry-After: 1`) to every request for a while, then serves.
//!
//! Both check, while the node waits: a progress line at least every
//! interval naming what it waits for, why, the attempt, the time so far and
//! the next try; sd_notify `STATUS=` datagrams on `$NOTIFY_SOCKET`;
//! `status.json` `in-progress` with phase `discovery`, and `kubeboot status`
//! saying so. Then: success, one run, no secret in the output.
//! The time from the control plane answering to the node's exit is printed
//! (the figure "time for a worker to join after a late control plane").

mod cli_support;

mod net_support;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cli_support::{fake_systemctl, kubeboot, render_control_plane, seed, text};
use net_support::{Reply, Server, ok, tls_config};

const TOKEN_ID: &str = "abcdef";
const TOKEN_SECRET: &str = "0123456789abcdef";
const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
/// How long the control plane stays away.
const DOWN: Duration = Duration::from_secs(6);

/// Forwards every connection on `listener` to 127.0.0.1:`to` (the control
/// plane's address "coming up").
fn forward(listener: TcpListener, to: u16) {
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            for (mut a, mut b) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut b);
                    let _ = b.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
}

/// The API server stand-in: cluster-info (signed, naming `public_port`),
/// 404 for the Node and kubelet-config; every request answered 503 with
/// `Retry-After: 1` while `unavailable` holds.
fn api_server(cp: &Path, public_port: u16, unavailable: Arc<AtomicBool>) -> Server {
    let pki = cp.join("etc/kubernetes/pki");
    let ca = std::fs::read(pki.join("ca.crt")).unwrap();
    let body = cli_support::cluster_info(&ca, public_port, TOKEN_ID, TOKEN_SECRET);
    let config = tls_config(&pki.join("apiserver.crt"), &pki.join("apiserver.key"), None);
    Server::https(config, move |req, _| {
        if unavailable.load(Ordering::SeqCst) {
            Reply::Respond(
                503,
                vec![("Retry-After".into(), "1".into())],
                b"{}".to_vec(),
            )
        } else if req.path == CLUSTER_INFO {
            ok(&body)
        } else {
            Reply::Respond(404, vec![], b"{}".to_vec())
        }
    })
}

/// A worker root seeded with userdata for `port`, and its fake systemctl.
fn worker(dir: &Path, cp: &Path, port: u16) -> (PathBuf, PathBuf) {
    let root = dir.join("worker");
    std::fs::create_dir_all(&root).unwrap();
    seed(
        &root,
        &format!(
            "#cloud-config\nkubeboot:\n  role: worker\n  server: 127.0.0.1:{port}\n  token: {TOKEN_ID}.{TOKEN_SECRET}\n  caCertHash: {}\n  node:\n    name: worker-1\n",
            cli_support::ca_hash(cp)
        ),
    );
    let systemctl = fake_systemctl(
        &dir.join("systemctl"),
        &root,
        &dir.join("systemctl.log"),
        false,
    );
    (root, systemctl)
}

/// What the running node showed while it waited.
struct Watched {
    /// stderr lines with the time each arrived.
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    /// sd_notify datagrams received.
    notes: Arc<Mutex<Vec<String>>>,
    child: std::process::Child,
}

/// Starts `kubeboot firstboot` on `root` with the default budgets, a 1 s
/// progress interval and `$NOTIFY_SOCKET` pointing at a socket in `dir`.
fn start(dir: &Path, root: &Path, systemctl: &Path, healthz: &str) -> Watched {
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let notes: Arc<Mutex<Vec<String>>> = Arc::default();
    let got = notes.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            got.lock().unwrap().push(text(&buf[..n]));
        }
    });
    let mut args = cli_support::firstboot_args_no_deadline(root, systemctl, healthz);
    args.extend(["--progress-interval".into(), "1".into()]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubeboot"))
        .args(&args)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let seen = lines.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines() {
            let Ok(l) = l else { break };
            seen.lock().unwrap().push((Instant::now(), l));
        }
    });
    Watched {
        lines,
        notes,
        child,
    }
}

/// While the control plane is away: status.json and `kubeboot status` say
/// in-progress in discovery. Returns when both were seen.
fn check_in_progress(root: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = std::fs::read_to_string(root.join("var/lib/kubeboot/status.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
        if let Some(st) = st
            && st["result"] == "in-progress"
            && st["phase"] == "discovery"
        {
            assert_eq!(st["role"], "join-worker", "{st}");
            let o = kubeboot(&["status", "--root", root.to_str().unwrap()]);
            let out = text(&o.stdout);
            assert!(o.status.success(), "{}", text(&o.stderr));
            assert!(
                out.contains("join-worker: IN PROGRESS, step discovery"),
                "{out}"
            );
            assert!(out.contains("preflight"), "timeline: {out}");
            let o = kubeboot(&["status", "--root", root.to_str().unwrap(), "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(v["statuses"]["first boot"]["result"], "in-progress", "{v}");
            assert_eq!(v["marker"], false);
            return;
        }
        assert!(Instant::now() < deadline, "no in-progress status.json");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for the node to exit (bounded), then checks the run: success,
/// progress lines at least every interval while it waited, saying `why`,
/// STATUS= notifications, no secret. Returns the time from `up` to exit.
fn finish(mut w: Watched, root: &Path, port: u16, why: &str, up: Instant) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = w.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the node did not finish joining");
        std::thread::sleep(Duration::from_millis(20));
    };
    let joined_after = up.elapsed();
    // let the reader threads drain
    std::thread::sleep(Duration::from_millis(200));
    let lines = w.lines.lock().unwrap().clone();
    let all: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    let stdout = {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut w.child.stdout.take().unwrap(), &mut s).unwrap();
        s
    };
    assert!(status.success(), "{status}\nstderr:\n{all}");
    assert!(stdout.contains("join-worker succeeded"), "{stdout}");
    assert!(!all.contains(TOKEN_SECRET) && !stdout.contains(TOKEN_SECRET));
    let want = format!(
        "[discovery] waiting for cluster-info at https://127.0.0.1:{port}{CLUSTER_INFO}: {why}"
    );
    let waits: Vec<&(Instant, String)> = lines.iter().filter(|(_, l)| l.contains(&want)).collect();
    assert!(
        waits.len() >= 3,
        "expected a progress line per second for {DOWN:?}:\n{all}"
    );
    for (_, l) in &waits {
        assert!(
            l.contains("(attempt ") && l.contains(" so far, next try in "),
            "{l}"
        );
    }
    // At least one line per interval (1 s): no gap above 3 s, a margin
    // for a busy 2-core machine.
    for pair in waits.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap < Duration::from_secs(3),
            "{gap:?} between\n{}\n{}",
            pair[0].1,
            pair[1].1
        );
    }
    assert!(
        all.contains("cluster-info at") && all.contains(": ready after "),
        "{all}"
    );
    let notes = w.notes.lock().unwrap().clone();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("STATUS=discovery: waiting for cluster-info")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("STATUS=kubelet-wait-bootstrap: ")),
        "{notes:?}"
    );
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("var/lib/kubeboot/status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(st["result"], "success", "{st}");
    assert!(root.join("var/lib/kubeboot/done").exists());
    joined_after
}

#[test]
fn the_api_server_comes_up_late() {
    let dir = cli_support::tmpdir("late", "refused");
    let cp = render_control_plane(&dir);
    let port = net_support::closed_port();
    let api = api_server(&cp, port, Arc::default());
    let healthz = Server::http(|_, _| ok(b"ok"));
    let (root, systemctl) = worker(&dir, &cp, port);
    let started = Instant::now();
    let w = start(
        &dir,
        &root,
        &systemctl,
        &format!("{}/healthz", healthz.base()),
    );
    check_in_progress(&root);
    std::thread::sleep(DOWN.saturating_sub(started.elapsed()));
    // the control plane comes up at the address the node was given
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let up = Instant::now();
    forward(listener, api.port);
    let after = finish(w, &root, port, "connection refused", up);
    eprintln!(
        "figure: worker joined {:.2} s after its API server came up ({:.1} s after it started)",
        after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        api.requests().iter().any(|r| r.path == CLUSTER_INFO),
        "the stand-in was asked"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_api_server_answers_503_for_a_while() {
    let dir = cli_support::tmpdir("late", "503");
    let cp = render_control_plane(&dir);
    let unavailable = Arc::new(AtomicBool::new(true));
    // the stand-in listens on its own port; cluster-info names it
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let api = api_server(&cp, port, unavailable.clone());
    forward(listener, api.port);
    let healthz = Server::http(|_, _| ok(b"ok"));
    let (root, systemctl) = worker(&dir, &cp, port);
    let started = Instant::now();
    let w = start(
        &dir,
        &root,
        &systemctl,
        &format!("{}/healthz", healthz.base()),
    );
    check_in_progress(&root);
    std::thread::sleep(DOWN.saturating_sub(started.elapsed()));
    unavailable.store(false, Ordering::SeqCst);
    let up = Instant::now();
    let after = finish(
        w,
        &root,
        port,
        "HTTP 503 Service Unavailable, Retry-After 1 s",
        up,
    );
    eprintln!(
        "figure: worker joined {:.2} s after its API server stopped answering 503 ({:.1} s after it started)",
        after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // Retry-After honoured: no two cluster-info requests less than 1 s
    // apart while the stand-in said 503 with Retry-After: 1.
    let reqs = api.requests();
    let n503 = reqs.iter().filter(|r| r.path == CLUSTER_INFO).count();
    assert!(n503 >= 2, "{n503}");
    assert!(
        n503 <= DOWN.as_secs() as usize + 3,
        "{n503} cluster-info requests in {DOWN:?} with Retry-After: 1"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
