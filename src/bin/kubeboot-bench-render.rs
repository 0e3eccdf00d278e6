//! Benchmark of the PKI + kubeconfig render of a full control-plane node
//! (init: 3 CAs, 7 leaves, sa, 5 kubeconfigs = 16 keys), into fresh temp
//! directories.
//!
//! ```text
//! kubeboot-bench-render [--runs N] [--dir DIR] [--sync each|deferred|both] [--p384]
//!     renders N times per sync mode under DIR (default: the temp dir) and
//!     prints median / p90 / max in milliseconds and the peak RSS (VmHWM).
//! kubeboot-bench-render --once DIR [--sync each|deferred] [--p384]
//!     renders once into DIR (which must not hold a tree yet) and exits: for
//!     whole-process timing with hyperfine or `/usr/bin/time -v`.
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use kubeboot::config::KeyAlgorithm;
use kubeboot::config::examples::pki_control_plane as control_plane_settings;
use kubeboot::host::Paths;
use kubeboot::host::fs::Sync;

struct Opts {
    runs: usize,
    dir: PathBuf,
    syncs: Vec<Sync>,
    once: Option<PathBuf>,
    p384: bool,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        runs: 50,
        dir: std::env::temp_dir(),
        syncs: vec![Sync::Each, Sync::Deferred],
        once: None,
        p384: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => {
                o.runs = value()?
                    .parse()
                    .map_err(|_| "--runs needs a number".to_string())?
            }
            "--dir" => o.dir = PathBuf::from(value()?),
            "--once" => o.once = Some(PathBuf::from(value()?)),
            "--p384" => o.p384 = true,
            "--sync" => {
                o.syncs = match value()?.as_str() {
                    "each" => vec![Sync::Each],
                    "deferred" => vec![Sync::Deferred],
                    "both" => vec![Sync::Each, Sync::Deferred],
                    other => {
                        return Err(format!(
                            "--sync: unknown mode {other:?} (each, deferred, both)"
                        ));
                    }
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(o)
}

fn render(root: &Path, sync: Sync, p384: bool) -> Result<usize, String> {
    let mut s = control_plane_settings();
    if p384 {
        s.cluster.key_algorithm = KeyAlgorithm::EcdsaP384;
    }
    let paths = Paths::new(root);
    let now = time::OffsetDateTime::now_utc();
    let certs = kubeboot::pki::ensure_tree(&s, &paths, now, sync).map_err(|e| e.to_string())?;
    let kcs = kubeboot::pki::kubeconfig::ensure_kubeconfigs(&s, &paths, now, sync)
        .map_err(|e| e.to_string())?;
    Ok(certs.entries.len() + kcs.entries.len())
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kubeboot-bench-render: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = &o.once {
        return match render(dir, o.syncs[0], o.p384) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kubeboot-bench-render: {e}");
                ExitCode::FAILURE
            }
        };
    }
    for sync in &o.syncs {
        let mut times = Vec::with_capacity(o.runs);
        let mut entries = 0;
        for i in 0..o.runs {
            let root = o
                .dir
                .join(format!("kubeboot-bench-{}-{i}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            let start = Instant::now();
            match render(&root, *sync, o.p384) {
                Ok(n) => entries = n,
                Err(e) => {
                    eprintln!("kubeboot-bench-render: {e}");
                    return ExitCode::FAILURE;
                }
            }
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            let _ = std::fs::remove_dir_all(&root);
        }
        times.sort_by(f64::total_cmp);
        // a closed stdout (`| head`) must not panic
        let _ = writeln!(
            std::io::stdout(),
            "sync={:<8} runs={} entries={} median={:.2}ms p90={:.2}ms max={:.2}ms",
            format!("{sync:?}").to_lowercase(),
            o.runs,
            entries,
            percentile(&times, 0.5),
            percentile(&times, 0.9),
            times[times.len() - 1]
        );
    }
    match peak_rss_kib() {
        Some(k) => writeln!(
            std::io::stdout(),
            "peak RSS (VmHWM) {:.1} MiB",
            k as f64 / 1024.0
        ),
        None => writeln!(std::io::stdout(), "peak RSS unavailable"),
    }
    .ok();
    ExitCode::SUCCESS
}
