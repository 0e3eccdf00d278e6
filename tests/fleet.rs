//! A fleet at once: many worker joins (real `kubeboot firstboot`
//! processes, one root each) started together against one loopback API
//! server stand-in that admits at most `limit()` (4) requests in flight and
//! answers every request beyond that 429 with `Retry-After: 1`.
//!
//! Asserted, in every run: every worker joins (0 failures) and read its
//! own Node; the stand-in never served more than its limit; `Retry-After`
//! is honoured: a worker's Node read refused with 429 is sent again no
//! sooner than 1 s later (the Node path names the worker; both times are
//! the kernel's receive times of the two ClientHellos, so the stand-in's
//! own threads running late cannot hide a retry that came too soon).
//!
//! Measured and printed, not asserted (they depend on what else the
//! machine runs): how long starting the processes took, p50/p99 join time,
//! requests and 429s, peak concurrency, and the peak-window ratio: after
//! the first second, the most requests in a 100 ms window (sliding,
//! starting at any request) over the mean per 100 ms, with requests timed
//! three ways: as sent (kernel receive time of the ClientHello,
//! `SO_TIMESTAMPNS`), as accepted, as handled. The goals (300
//! started within 1 s; ratio at most 2) are printed as met or not.
//!
//! The default run starts 40 workers. `KUBEBOOT_FLEET=300 cargo test
//! --test fleet -- --nocapture` runs the 300 (and
//! `spawn_cost_of_the_fleets_processes`). The workers use `startSpread`
//! (random start delay) of one second per 30 workers, at least 2 s
//! (`FLEET_SPREAD` overrides it); `FLEET_LIMIT` (4) and `FLEET_SERVICE_MS`
//! (100) change the stand-in, `FLEET_SPAWNERS` (4) the threads that start
//! the workers, `KUBEBOOT_BIN` the binary (e.g. the static release build);
//! `FLEET_HIST=1` prints requests per 100 ms.

mod net_support;

#[path = "cli_support/mod.rs"]
mod cli_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cli_support::{render_control_plane, text};
use net_support::{Reply, Server, ok, tls_config};

const TOKEN_ID: &str = "abcdef";
const TOKEN_SECRET: &str = "0123456789abcdef";
const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
/// Requests the stand-in serves at once; more get 429.
fn limit() -> usize {
    env_or("FLEET_LIMIT", 4)
}
/// How long the stand-in takes to answer one request it admits.
fn service() -> Duration {
    Duration::from_millis(env_or("FLEET_SERVICE_MS", 100) as u64)
}

/// Threads that start the workers (`FLEET_SPAWNERS`, 4).
fn spawners() -> usize {
    env_or("FLEET_SPAWNERS", 4).max(1)
}

/// The binary under test: this build's, or `KUBEBOOT_BIN` (e.g. the
/// static release binary, to measure what spawning it costs).
fn binary() -> PathBuf {
    std::env::var_os("KUBEBOOT_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_kubeboot").into())
        .into()
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One request as the stand-in saw it.
#[derive(Clone)]
struct Seen {
    /// When the handler ran (after the TLS handshake).
    at: Instant,
    /// When the connection was accepted (before the handshake).
    accepted: Instant,
    /// When the kernel received the connection's first bytes (the client's
    /// ClientHello), if it said.
    sent: Option<Instant>,
    path: String,
    refused: bool,
}

struct StandIn {
    server: Server,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Most requests admitted at once (at most the limit).
    peak: Arc<AtomicUsize>,
    /// Most requests in the handler at once, the refused ones included.
    peak_all: Arc<AtomicUsize>,
}

/// The API server stand-in: cluster-info (signed), 404 for each Node and
/// for kubelet-config; 429 + `Retry-After: 1` beyond `limit()` in flight.
fn stand_in(cp: &Path) -> StandIn {
    let pki = cp.join("etc/kubernetes/pki");
    let ca = fs::read(pki.join("ca.crt")).unwrap();
    let body: Arc<Mutex<Vec<u8>>> = Arc::default();
    let served = body.clone();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let top = peak.clone();
    let peak_all = Arc::new(AtomicUsize::new(0));
    let top_all = peak_all.clone();
    let (limit, service) = (limit(), service());
    let server = Server::https_stamped(
        tls_config(&pki.join("apiserver.crt"), &pki.join("apiserver.key"), None),
        move |req, _| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            top_all.fetch_max(now, Ordering::SeqCst);
            let refused = now > limit;
            log.lock().unwrap().push(Seen {
                at: Instant::now(),
                accepted: req.accepted,
                sent: req.sent,
                path: req.path.clone(),
                refused,
            });
            let reply = if refused {
                Reply::Respond(
                    429,
                    vec![("Retry-After".into(), "1".into())],
                    b"{}".to_vec(),
                )
            } else {
                top.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(service);
                if req.path == CLUSTER_INFO {
                    ok(&served.lock().unwrap())
                } else {
                    Reply::Respond(404, vec![], b"{}".to_vec())
                }
            };
            in_flight.fetch_sub(1, Ordering::SeqCst);
            reply
        },
    );
    *body.lock().unwrap() = cli_support::cluster_info(&ca, server.port, TOKEN_ID, TOKEN_SECRET);
    StandIn {
        server,
        seen,
        peak,
        peak_all,
    }
}

/// One fake `systemctl` for every worker: `restart ... kubelet` plays the
/// TLS bootstrap under `$FLEET_ROOT` (each worker's environment).
fn systemctl(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("systemctl");
    fs::write(
        &p,
        "#!/bin/sh\ncase \"$*\" in *restart*kubelet*)\n  mkdir -p \"$FLEET_ROOT/etc/kubernetes\"\n  echo 'apiVersion: v1' > \"$FLEET_ROOT/etc/kubernetes/kubelet.conf\";;\nesac\nexit 0\n",
    )
    .unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The largest number of requests in any window `[t, t + width)` that
/// starts at a request at or after `from`, and the mean per `width` over
/// `[from, last request]`.
fn peak_window(times: &[Instant], from: Instant, width: Duration) -> (usize, f64) {
    let after: Vec<Instant> = times.iter().copied().filter(|t| *t >= from).collect();
    let Some(last) = after.last() else {
        return (0, 0.0);
    };
    let span = last.duration_since(from).max(width);
    let mean = after.len() as f64 * width.as_secs_f64() / span.as_secs_f64();
    let mut max = 0;
    let mut j = 0;
    for i in 0..after.len() {
        while j < after.len() && after[j] < after[i] + width {
            j += 1;
        }
        max = max.max(j - i);
    }
    (max, mean)
}

#[test]
fn a_fleet_joins_at_once_without_bursts() {
    // the measured run sets KUBEBOOT_FLEET=300
    let measured = std::env::var_os("KUBEBOOT_FLEET").is_some();
    let size = env_or("KUBEBOOT_FLEET", 40);
    // the start spread grows with the fleet
    let spread = env_or("FLEET_SPREAD", size.div_ceil(30).max(2));
    let dir = cli_support::tmpdir("fleet", &size.to_string());
    let cp = render_control_plane(&dir);
    let api = stand_in(&cp);
    let healthz = Server::http(|_, _| ok(b"ok"));
    let healthz_url = format!("{}/healthz", healthz.base());
    let sc = systemctl(&dir);
    let pin = cli_support::ca_hash(&cp);
    let roots: Vec<PathBuf> = (0..size)
        .map(|i| {
            let root = dir.join(format!("w{i:03}"));
            fs::create_dir_all(&root).unwrap();
            fs::write(
                root.join("config.yaml"),
                format!(
                    "apiVersion: kubeboot.dev/v1alpha1\nrole: worker\nserver: 127.0.0.1:{}\ntoken: {TOKEN_ID}.{TOKEN_SECRET}\ncaCertHash: {pin}\nstartSpread: {spread}s\nnode:\n  name: worker-{i:03}\n",
                    api.server.port
                ),
            )
            .unwrap();
            root
        })
        .collect();

    // Start them all, within one second: `spawners()` threads, each
    // starting its share; each spawn call is timed (fork/exec of the
    // binary, which returns once the child has exec'd).
    let bin = binary();
    // each worker's command, its stderr file opened, before the clock starts
    let commands: Vec<(usize, Command)> = roots
        .iter()
        .enumerate()
        .map(|(i, root)| {
            let mut args = cli_support::firstboot_args_no_deadline(root, &sc, &healthz_url);
            args.extend([
                "--config".into(),
                root.join("config.yaml").display().to_string(),
            ]);
            let mut cmd = Command::new(&bin);
            cmd.args(&args)
                .env("FLEET_ROOT", root)
                .stdout(Stdio::null())
                .stderr(fs::File::create(root.join("stderr.log")).unwrap());
            (i, cmd)
        })
        .collect();
    let k = spawners();
    let mut chunks: Vec<Vec<(usize, Command)>> = (0..k).map(|_| Vec::new()).collect();
    for (i, cmd) in commands {
        chunks[i % k].push((i, cmd));
    }
    let t0 = Instant::now();
    let threads: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            std::thread::spawn(move || {
                chunk
                    .into_iter()
                    .map(|(i, mut cmd)| {
                        let started = Instant::now();
                        let child = cmd.spawn().unwrap();
                        (i, child, started, started.elapsed())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut children: Vec<_> = threads
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    let spawned_in = t0.elapsed();
    let mut costs: Vec<Duration> = children.iter().map(|c| c.3).collect();
    costs.sort();
    // reaped by polling (a thread per child would compete with the spawn)
    let mut done: Vec<(usize, bool, Duration)> = Vec::new();
    while !children.is_empty() {
        children.retain_mut(|(i, child, started, _)| match child.try_wait().unwrap() {
            Some(st) => {
                done.push((*i, st.success(), started.elapsed()));
                false
            }
            None => true,
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    let total = t0.elapsed();

    let failed: Vec<usize> = done.iter().filter(|d| !d.1).map(|d| d.0).collect();
    let first_failure = failed
        .first()
        .map(|i| fs::read_to_string(roots[*i].join("stderr.log")).unwrap_or_default())
        .unwrap_or_default();
    let mut times: Vec<Duration> = done.iter().map(|d| d.2).collect();
    times.sort();
    let seen = api.seen.lock().unwrap().clone();
    let from = t0 + Duration::from_secs(1);
    let width = Duration::from_millis(100);
    // arrivals as the handler saw them, and as the listener accepted them
    let handled: Vec<Instant> = seen.iter().map(|s| s.at).collect();
    let mut accepted: Vec<Instant> = seen.iter().map(|s| s.accepted).collect();
    accepted.sort();
    // as the clients sent them: the kernel's receive time of each ClientHello
    let mut sent: Vec<Instant> = seen.iter().filter_map(|s| s.sent).collect();
    sent.sort();
    let (max_sent, mean_sent) = peak_window(&sent, from, width);
    let ratio_sent = max_sent as f64 / mean_sent.max(f64::MIN_POSITIVE);

    let (max_window, mean_window) = peak_window(&handled, from, width);
    let ratio = max_window as f64 / mean_window.max(f64::MIN_POSITIVE);
    let (max_acc, mean_acc) = peak_window(&accepted, from, width);
    let ratio_acc = max_acc as f64 / mean_acc.max(f64::MIN_POSITIVE);
    let refused = seen.iter().filter(|s| s.refused).count();

    // Retry-After: a worker's Node read refused at t is asked again no
    // sooner than t + 1 s (the Node path names the worker). Both times as
    // the client sent them (the kernel's receive times) when known: the
    // stand-in's own threads running late cannot hide a retry that came
    // too soon.
    let gap = |a: &Seen, b: &Seen| match (a.sent, b.sent) {
        (Some(x), Some(y)) => y.saturating_duration_since(x),
        _ => b.at.saturating_duration_since(a.at),
    };
    let mut too_soon = Vec::new();
    let mut checked = 0;
    for (k, s) in seen.iter().enumerate() {
        if !s.refused || !s.path.starts_with("/api/v1/nodes/") {
            continue;
        }
        if let Some(next) = seen[k + 1..].iter().find(|n| n.path == s.path) {
            checked += 1;
            if gap(s, next) < Duration::from_secs(1) {
                too_soon.push((s.path.clone(), gap(s, next)));
            }
        }
    }
    if std::env::var_os("FLEET_HIST").is_some() {
        // requests per 100 ms from the first spawn, as sent (else as
        // accepted): (admitted, refused)
        let bins = (total.as_millis() / 100 + 1) as usize;
        let mut h = vec![(0, 0); bins];
        for s in &seen {
            let at = s.sent.unwrap_or(s.accepted);
            let b = (at.saturating_duration_since(t0).as_millis() / 100) as usize;
            if s.refused {
                h[b.min(bins - 1)].1 += 1;
            } else {
                h[b.min(bins - 1)].0 += 1;
            }
        }
        for (k, row) in h.chunks(10).enumerate() {
            eprintln!("{k:>3} s: {row:?}");
        }
    }
    eprintln!(
        "figure: fleet of {size} workers ({}, spawned by {} threads in {:.2} s, one spawn p50 {:.1} ms, max {:.1} ms; startSpread {spread} s, limit {} in flight, {} ms per request): failures {}, join time p50 {:.2} s, p99 {:.2} s, all done in {:.1} s; {} requests, {refused} answered 429; peak concurrency {} admitted, {} with the refused; after the first second the busiest 100 ms held {max_sent} requests as sent (kernel receive time of {} ClientHellos) vs a mean of {mean_sent:.1} (ratio {ratio_sent:.2}), {max_acc} requests as accepted vs a mean of {mean_acc:.1} (ratio {ratio_acc:.2}), {max_window} as handled vs {mean_window:.1} (ratio {ratio:.2}); Retry-After checked on {checked} refused Node reads, {} too soon",
        binary().display(),
        k,
        spawned_in.as_secs_f64(),
        percentile(&costs, 0.5).as_secs_f64() * 1000.0,
        percentile(&costs, 1.0).as_secs_f64() * 1000.0,
        limit(),
        service().as_millis(),
        failed.len(),
        percentile(&times, 0.50).as_secs_f64(),
        percentile(&times, 0.99).as_secs_f64(),
        total.as_secs_f64(),
        seen.len(),
        api.peak.load(Ordering::SeqCst),
        api.peak_all.load(Ordering::SeqCst),
        sent.len(),
        too_soon.len(),
    );

    assert_eq!(done.len(), size);
    assert!(
        failed.is_empty(),
        "failed: {failed:?}\nfirst failure's stderr:\n{first_failure}"
    );
    // the default run's stand-in (limit 4) is always overloaded; a
    // measured run may choose a roomier one
    assert!(
        measured || refused > 0,
        "the stand-in never refused: the test did not load it"
    );
    assert!(api.peak.load(Ordering::SeqCst) <= limit());
    assert!(
        too_soon.is_empty(),
        "Retry-After not honoured: {too_soon:?}"
    );
    // The two timing goals are measured, not asserted: how long
    // starting 300 processes takes and how evenly requests arrive depend
    // on what else the machine runs (see docs/operations.md, "A fleet at
    // once", for the figures and what shapes them).
    eprintln!(
        "goals: {size} processes started within 1 s: {} ({:.2} s); after the first second no 100 ms window above 2x the mean (as sent): {} ({ratio_sent:.2})",
        if spawned_in <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        },
        spawned_in.as_secs_f64(),
        if ratio_sent <= 2.0 { "met" } else { "NOT met" },
    );
    // every worker asked for its own Node
    for i in 0..size {
        let p = format!("/api/v1/nodes/worker-{i:03}");
        assert!(seen.iter().any(|s| s.path == p && !s.refused), "{p}");
    }
    let sample = fs::read_to_string(roots[0].join("stderr.log")).unwrap();
    assert!(
        !sample.contains(TOKEN_SECRET),
        "{}",
        text(sample.as_bytes())
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// What starting the fleet's processes costs by itself: `KUBEBOOT_FLEET`
/// (300) copies of `<binary> --version`, started from 1, 2, 4 and 8
/// threads; printed, not asserted (a measurement: run with
/// `KUBEBOOT_FLEET=300 cargo test --test fleet spawn -- --nocapture`, and
/// `KUBEBOOT_BIN=` for the static release binary).
#[test]
fn spawn_cost_of_the_fleets_processes() {
    let Some(size) = std::env::var("KUBEBOOT_FLEET")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        eprintln!(
            "SKIP spawn_cost_of_the_fleets_processes: a measurement, run with KUBEBOOT_FLEET=300"
        );
        return;
    };
    let bin = binary();
    for threads in [1usize, 2, 4, 8] {
        let t0 = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|j| {
                let bin = bin.clone();
                std::thread::spawn(move || {
                    (j..size)
                        .step_by(threads)
                        .map(|_| {
                            Command::new(&bin)
                                .arg("--version")
                                .stdout(Stdio::null())
                                .spawn()
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let children: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let spawned = t0.elapsed();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        eprintln!(
            "figure: {size} x `{} --version` from {threads} thread(s): all started in {:.3} s, all exited in {:.3} s",
            bin.display(),
            spawned.as_secs_f64(),
            t0.elapsed().as_secs_f64()
        );
    }
}
