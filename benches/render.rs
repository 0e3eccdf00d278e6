//! `kubeboot render` of a full control-plane node (16 ECDSA P-256 keys, 33
//! files, one syncfs) side by side with the Go reference
//! (`benches/go/pkiref`: Go's crypto/x509 making the keys and certificates of
//! the same tree, fsync per file — what kubeadm pays at least), in one run,
//! interleaved (the order alternates every round), whole processes both.
//! Prints medians and the ratio kubeboot / Go; absolute times drift ±25% on
//! a shared machine, the ratio holds. The ≤ 0.5x goal is reported as
//! PASS/FAIL and never fails the build.
//!
//! With `KUBEBOOT_BENCH_CALLGRIND=1` and valgrind installed, each side also
//! runs once under callgrind and the instruction counts and their ratio are
//! printed.
//!
//! `cargo bench --bench render`; `KUBEBOOT_BENCH_RUNS` (default 40),
//! `KUBEBOOT_BENCH_DIR` (default the system temp dir: its file system
//! decides what fsync costs), `KUBEBOOT_BENCH_BIN` (default this build's
//! `kubeboot`; give the static release binary to measure what ships),
//! `KUBEBOOT_BENCH_BASELINE` (another kubeboot binary, e.g. main's: run in
//! the same interleaved rounds, with the median of its per-round ratios).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const GOAL: f64 = 0.5;

fn binary() -> PathBuf {
    std::env::var_os("KUBEBOOT_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kubeboot")))
}

fn run(cmd: &mut Command) {
    let o = cmd.output().expect("spawn");
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Builds the Go reference offline (stdlib only) into `dir`.
fn build_go(dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/go/pkiref/main.go");
    let bin = dir.join("pkiref");
    let o = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOPROXY", "off")
        .env("GO111MODULE", "off")
        .env("CGO_ENABLED", "0")
        .env("HOME", dir)
        .output()
        .ok()?;
    if !o.status.success() {
        panic!("go build: {}", String::from_utf8_lossy(&o.stderr));
    }
    Some(bin)
}

#[derive(Clone, Copy)]
enum Side {
    Kubeboot,
    Go,
    GoNoFsync,
    Baseline,
}

fn baseline() -> Option<PathBuf> {
    std::env::var_os("KUBEBOOT_BENCH_BASELINE").map(PathBuf::from)
}

fn command(side: Side, go: &Path, out: &Path) -> Command {
    match side {
        Side::Kubeboot | Side::Baseline => {
            let bin = match side {
                Side::Baseline => baseline().expect("KUBEBOOT_BENCH_BASELINE"),
                _ => binary(),
            };
            let mut c = Command::new(bin);
            c.args(["render", "--example", "control-plane", "--root"])
                .arg(out);
            c
        }
        Side::Go | Side::GoNoFsync => {
            let mut c = Command::new(go);
            c.arg("-dir").arg(out);
            if matches!(side, Side::GoNoFsync) {
                c.arg("-nofsync");
            }
            c
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Instructions executed by `cmd` under callgrind (the `summary:` line).
fn callgrind(cmd: Command, out: &Path) -> Option<u64> {
    let file = out.with_extension("callgrind");
    let o = Command::new("valgrind")
        .args(["--tool=callgrind", "--trace-children=no"])
        // Go's asynchronous preemption signals trip callgrind's signal handling
        .env("GODEBUG", "asyncpreemptoff=1")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .output()
        .ok()?;
    if !o.status.success() {
        eprintln!("callgrind failed: {}", String::from_utf8_lossy(&o.stderr));
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    let _ = std::fs::remove_file(&file);
    text.lines()
        .find_map(|l| l.strip_prefix("summary: ").or(l.strip_prefix("totals: ")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn main() {
    let runs: usize = std::env::var("KUBEBOOT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
        .max(1);
    let base = std::env::var_os("KUBEBOOT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("kubeboot-bench-render-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let Some(go) = build_go(&base) else {
        eprintln!("SKIP render bench: no `go` (Debian golang-go) to build the reference");
        return;
    };
    let mut sides = vec![Side::Kubeboot, Side::Go, Side::GoNoFsync];
    if baseline().is_some() {
        sides.push(Side::Baseline);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    for round in 0..runs + 2 {
        let mut order: Vec<usize> = (0..sides.len()).collect();
        order.rotate_left(round % sides.len());
        for i in order {
            let out = base.join(format!("out-{i}"));
            let _ = std::fs::remove_dir_all(&out);
            let mut cmd = command(sides[i], &go, &out);
            let t = Instant::now();
            run(&mut cmd);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if round >= 2 {
                times[i].push(ms);
            }
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
    let per_round = |i: usize| median(times[0].iter().zip(&times[i]).map(|(k, b)| k / b).collect());
    let baseline_ratio = (sides.len() > 3).then(|| (median(times[3].clone()), per_round(3)));
    let times: [Vec<f64>; 3] = [times[0].clone(), times[1].clone(), times[2].clone()];
    let [kb, go_fsync, go_plain] = times.map(median);
    println!(
        "render, whole process, {runs} interleaved rounds, in {}",
        base.parent().unwrap_or(&base).display()
    );
    println!("  kubeboot render --example control-plane  median {kb:>7.2} ms");
    println!("  Go crypto/x509, fsync per file           median {go_fsync:>7.2} ms");
    println!("  Go crypto/x509, no fsync                 median {go_plain:>7.2} ms");
    let ratio = kb / go_fsync;
    println!(
        "  ratio kubeboot / Go (fsync per file) {ratio:.2}x   goal <= {GOAL}x: {}",
        if ratio <= GOAL { "PASS" } else { "FAIL" }
    );
    println!(
        "  ratio kubeboot / Go (no fsync)       {:.2}x",
        kb / go_plain
    );
    if let Some((b, ratio)) = baseline_ratio {
        println!("  baseline kubeboot                        median {b:>7.2} ms");
        println!(
            "  ratio kubeboot / baseline            {:.2}x (medians), {ratio:.2}x (median of per-round ratios)",
            kb / b
        );
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!(
            "  load average {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if std::env::var_os("KUBEBOOT_BENCH_CALLGRIND").is_some() {
        let out = base.join("cg");
        let count = |side| {
            let _ = std::fs::remove_dir_all(&out);
            let n = callgrind(command(side, &go, &out), &out);
            let _ = std::fs::remove_dir_all(&out);
            n
        };
        match (count(Side::Kubeboot), count(Side::Go)) {
            (Some(k), Some(g)) => println!(
                "  instructions (callgrind): kubeboot {k}, Go {g}, ratio {:.2}x   goal <= {GOAL}x: {}",
                k as f64 / g as f64,
                if (k as f64 / g as f64) <= GOAL {
                    "PASS"
                } else {
                    "FAIL"
                }
            ),
            _ => eprintln!("SKIP callgrind: valgrind missing or failed"),
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}
