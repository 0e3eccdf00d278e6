//! The commands that run a node: `render` (offline), `init`, `join` and
//! `firstboot` (find the userdata, then init or join). They build a
//! [`NodeRun`], hand the phase list to the runner, and record the outcome.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use crate::config::{self, Loaded, Mode};
use crate::error::{Error, Result};
use crate::host::detect::{self, CgroupDriver, Detected};
use crate::host::lock::RunLock;
use crate::host::systemd::{InitSystem, Systemctl};
use crate::host::{HostFacts, Paths};
use crate::phases::preflight::HostProbes;
use crate::phases::{
    self, Budgets, Capabilities, Effects, Inputs, NodeRun, Outcome, RunOptions, RunState, runner,
};
use crate::platform;
use crate::status::{self, Status};
use crate::userdata::{self, Source, local, network};

// Where the configuration comes from, for commands that run a node.
// Global: `init phase certs --config F` and `init --config F phase certs`
// both work, as with kubeadm.
// (A plain comment, not a doc comment: clap would make it the about text
// of the subcommand, whose arguments are built after it: cli::command.)
#[allow(missing_docs)]
#[derive(Debug, Args, Clone)]
pub struct SourceArgs {
    /// A config file in any accepted envelope (kubeboot or kubeadm YAML, cloud-config, MIME, Ignition, gzip).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where to look for userdata: `auto` (local sources, then the platform's) or `file:PATH`.
    #[arg(long, global = true, value_name = "SPEC", conflicts_with = "config")]
    pub source: Option<String>,
    /// Host root: every path kubeboot reads or writes is under it.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Platform override (skips detection), e.g. aws, gcp, azure, openstack, hetzner, digitalocean, nocloud, none.
    #[arg(long, global = true, value_name = "NAME")]
    pub platform: Option<String>,
    /// Base URL of the platform's metadata service (tests point it at 127.0.0.1).
    #[arg(long, global = true, value_name = "URL")]
    pub metadata_url: Option<String>,
    /// How long each network userdata source (the platform's metadata service, a
    /// `kubeboot.config=` URL) may spend, all attempts and waits together (default 60).
    #[arg(long, global = true, value_name = "SECS")]
    pub metadata_timeout: Option<u64>,
}

impl SourceArgs {
    /// The budget of each network userdata source: `--metadata-timeout`,
    /// else [`network::DEFAULT_BUDGET`].
    fn network_budget(&self) -> Duration {
        self.metadata_timeout
            .map_or(network::DEFAULT_BUDGET, Duration::from_secs)
    }
}

// Arguments of `firstboot`.
// (A plain comment, not a doc comment: clap would make it the about text
// of the subcommand, whose arguments are built after it: cli::command.)
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct FirstbootArgs {
    /// Source selection.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Run options.
    #[command(flatten)]
    pub opts: RunOptions,
}

// Arguments of `init` and `join`.
// (A plain comment, not a doc comment: clap would make it the about text
// of the subcommand, whose arguments are built after it: cli::command.)
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Source selection.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Run options.
    #[command(flatten)]
    pub opts: RunOptions,
    /// Run a single phase (`phase NAME`) instead of all.
    #[command(subcommand)]
    pub phase: Option<PhaseCommand>,
}

// `init phase NAME` / `join phase NAME` (its help text is set per
// command by `cli::command`). A plain comment, not a doc comment: clap
// would make it the about text of `init`/`join`, whose arguments are
// built after it (cli::command).
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum PhaseCommand {
    /// Run one phase or sub-phase by name; `list` prints the phase tree.
    Phase {
        /// Phase name (`certs`, `certs/apiserver`, `addon/all`), or `list`.
        name: String,
    },
}

// Arguments of `render`.
// (A plain comment, not a doc comment: clap would make it the about text
// of the subcommand, whose arguments are built after it: cli::command.)
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Config file (any envelope).
    #[arg(long, value_name = "FILE", required_unless_present = "example")]
    pub config: Option<PathBuf>,
    /// Render a built-in example instead: `control-plane` or `worker`.
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    pub example: Option<String>,
    /// Directory to render the node's files into.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// A directory of kubeadm patch files; replaces `patches.directory` of the config.
    #[arg(long, value_name = "DIR")]
    pub patches: Option<PathBuf>,
}

/// `--patches DIR`: the directory's patches replace the config's
/// (`patches.directory`); files skipped are warned about.
pub fn use_patches(loaded: &mut Loaded, dir: Option<&Path>) -> Result<()> {
    let Some(dir) = dir else { return Ok(()) };
    let (patches, warnings) =
        config::patches::load(dir).map_err(|e| Error::Invalid(format!("--patches: {e}")))?;
    loaded.settings.patches = patches;
    for w in warnings {
        log::warn!("--patches: {w}");
    }
    Ok(())
}

/// Reads a file given on the command line (bounded like every userdata
/// source); a missing, unreadable or oversized file is invalid input.
pub fn read_input(path: &std::path::Path) -> Result<Vec<u8>> {
    crate::userdata::local::read_bounded(path)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

/// Loads and validates a config file (any envelope).
pub fn load_file(path: &std::path::Path, facts: &HostFacts) -> Result<Loaded> {
    let bytes = read_input(path)?;
    config::load(&bytes, &path.display().to_string(), facts)
}

/// kubeadm's name of a phase given by its old kubeboot name
/// (`config::PHASE_ALIASES`), with a warning; any other name as it is.
fn kubeadm_phase_name(name: &str, what: &str) -> String {
    match config::phase_alias(name) {
        Some(new) => {
            log::warn!("{what}: {name:?} is kubeboot's old name of kubeadm's {new:?}; use {new:?}");
            new.to_string()
        }
        None => name.to_string(),
    }
}

/// Logs the config's warnings, each naming its field or place.
pub fn log_warnings(loaded: &Loaded) {
    for w in &loaded.settings.warnings {
        if w.field.is_empty() {
            // envelope warnings already say where in the userdata they are
            log::warn!("{}: {}", loaded.source, w.message);
        } else {
            log::warn!("{}: {}: {}", loaded.origin, w.field, w.message);
        }
    }
}

/// The config format's name, as `config show`/`validate` print it.
pub fn format_name(f: &config::parse::Format) -> String {
    match f {
        config::parse::Format::Kubeboot => "kubeboot NodeConfig".into(),
        config::parse::Format::Kubeadm(v) => format!("kubeadm {v}"),
        config::parse::Format::KernelArgs => "kernel command line".into(),
    }
}

/// Prints the resolved settings as JSON (secrets redacted).
pub fn print_settings(loaded: &Loaded) -> Result<()> {
    let out = serde_json::json!({
        "source": loaded.origin,
        "format": format_name(&loaded.format),
        "envelope": loaded.envelope.kind,
        "carriedFiles": loaded.envelope.files.iter().map(|f| serde_json::json!({
            "path": f.path, "mode": format!("{:04o}", f.mode), "bytes": f.content.len()
        })).collect::<Vec<_>>(),
        "settings": loaded.settings,
    });
    let text = serde_json::to_string_pretty(&out)
        .map_err(|e| Error::Failed(format!("encoding JSON: {e}")))?;
    crate::outln!("{text}");
    Ok(())
}

/// An init system for offline runs: any call is a bug, reported as an error.
struct Offline;

impl Offline {
    fn refuse(what: &str) -> Result<()> {
        Err(Error::Failed(format!(
            "internal error: {what} requested during an offline run"
        )))
    }
}

impl InitSystem for Offline {
    fn daemon_reload(&self) -> Result<()> {
        Offline::refuse("daemon-reload")
    }
    fn enable(&self, unit: &str) -> Result<()> {
        Offline::refuse(&format!("enable {unit}"))
    }
    fn start_no_block(&self, unit: &str) -> Result<()> {
        Offline::refuse(&format!("start {unit}"))
    }
    fn restart(&self, unit: &str) -> Result<()> {
        Offline::refuse(&format!("restart {unit}"))
    }
    fn is_active(&self, unit: &str) -> Result<bool> {
        Offline::refuse(&format!("is-active {unit}")).map(|_| false)
    }
}

fn detected_for(paths: &Paths, effects: Effects) -> Detected {
    let mut d = detect::detect(paths);
    if effects == Effects::Render && !paths.cgroup_dir().exists() {
        // An image tree has no running system to inspect: use what a
        // systemd host with cgroup v2 needs (kubeadm's defaults).
        d.cgroup_version = 2;
        d.cgroup_driver = CgroupDriver::Systemd;
        d.swap_on = false;
        d.notes = vec!["render: no running host under --root; assuming cgroup v2 with the systemd cgroup driver".into()];
    }
    d
}

fn ensure_root(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root)
        .map_err(|e| Error::Invalid(format!("--root {}: {e}", root.display())))
}

/// `kubeboot render`: every file a node needs, offline, then a report.
pub fn render(args: &RenderArgs, lock_wait: Duration) -> Result<()> {
    ensure_root(&args.root)?;
    let paths = Paths::new(&args.root);
    let _lock = RunLock::acquire(&paths, lock_wait)?;
    let facts = HostFacts::detect(Paths::this_machine_proc());
    let mut loaded = match (&args.example, &args.config) {
        (Some(name), _) => {
            let text = config::examples::by_name(name).ok_or_else(|| {
                Error::Invalid(format!(
                    "--example {name:?}: built-in examples are control-plane and worker"
                ))
            })?;
            config::load(text.as_bytes(), &format!("built-in example {name}"), &facts)?
        }
        (None, Some(f)) => load_file(f, &facts)?,
        (None, None) => {
            return Err(Error::Invalid(
                "render: give --config FILE or --example NAME".into(),
            ));
        }
    };
    log_warnings(&loaded);
    use_patches(&mut loaded, args.patches.as_deref())?;
    let start = Instant::now();
    let report = render_loaded(&loaded, &paths)?;
    let total = start.elapsed().as_secs_f64() * 1000.0;
    print_report(&report, total, &args.root);
    Ok(())
}

/// What an offline render did.
pub struct RenderReport {
    /// The settings rendered.
    pub settings: config::Settings,
    /// Files written or kept, in order.
    pub written: Vec<phases::Written>,
    /// Per-phase records.
    pub records: Vec<phases::PhaseRecord>,
}

/// Renders every file a node needs under `paths` from a loaded config,
/// offline (the library form of `kubeboot render`).
pub fn render_loaded(loaded: &Loaded, paths: &Paths) -> Result<RenderReport> {
    let init = Offline;
    let probes = HostProbes::new(paths);
    let mut run = node_run(loaded, paths, Effects::Render, &init, &probes, Vec::new());
    let list = phases::phases_for(loaded.settings.mode);
    let skip = &loaded.settings.skip_phases;
    runner::check_names(&list, skip, "skipPhases")?;
    phases::check_patches(&run)?;
    let (records, result) = run_phases(&list, &mut run, skip, None, &mut |_, _| {});
    result.map_err(wrap_phase)?;
    Ok(RenderReport {
        settings: run.input.settings,
        written: run.state.written,
        records,
    })
}

/// Runs the phases, then makes whatever they wrote since the last sync
/// durable (one `syncfs` at most; `NodeRun::finish`).
fn run_phases<'a>(
    list: &[phases::Phase<phases::NodeRun<'a>>],
    run: &mut phases::NodeRun<'a>,
    skip: &[String],
    only: Option<&str>,
    on_start: &mut dyn FnMut(&'static str, &[phases::PhaseRecord]),
) -> (Vec<phases::PhaseRecord>, Result<(), phases::PhaseError>) {
    let (records, mut result) = runner::run_observed(list, run, skip, only, on_start);
    if result.is_ok()
        && let Err(error) = run.finish()
    {
        result = Err(runner::PhaseError {
            phase: "sync",
            error,
        });
    }
    (records, result)
}

/// A failed phase's error as the command reports it: `phase X failed: ...`,
/// keeping the class (and so the exit code and retryability).
fn wrap_phase(e: phases::PhaseError) -> Error {
    let msg = e.to_string();
    match e.error {
        Error::Invalid(_) => Error::Invalid(msg),
        Error::Untrusted(_) => Error::Untrusted(msg),
        Error::NoUserdata(_) => Error::NoUserdata(msg),
        Error::HostUnfit(_) => Error::HostUnfit(msg),
        Error::Fs(_) | Error::Failed(_) => Error::Failed(msg),
    }
}

fn print_report(run: &RenderReport, total_ms: f64, root: &Path) {
    use std::fmt::Write as _;
    use std::os::unix::fs::PermissionsExt;
    // one write to stdout for the whole report, not one per line
    let mut text = String::new();
    let _ = writeln!(
        text,
        "rendered {} node ({}, Kubernetes {}) into {}:",
        match run.settings.mode {
            Mode::Init => "a control-plane (init)",
            Mode::JoinControlPlane => "a joining control-plane",
            Mode::JoinWorker => "a worker",
        },
        run.settings.node.name,
        run.settings.cluster.kubernetes_version,
        root.display()
    );
    let mut seen = std::collections::BTreeSet::new();
    for w in &run.written {
        if !seen.insert(w.path.clone()) {
            continue;
        }
        let mode = std::fs::metadata(&w.path)
            .map(|m| format!("{:04o}", m.permissions().mode() & 0o7777))
            .unwrap_or_default();
        let rel = w
            .path
            .strip_prefix(root)
            .map(|p| format!("/{}", p.display()))
            .unwrap_or_else(|_| w.path.display().to_string());
        let _ = writeln!(text, "  {mode}  {:<11} {rel:<52} {}", w.action, w.detail);
    }
    text.push_str("phases:\n");
    for r in &run.records {
        let _ = match r.outcome {
            Outcome::Done => writeln!(text, "  {:<20} {:>8.2} ms", r.name, r.millis),
            other => writeln!(
                text,
                "  {:<20} {:>8}",
                r.name,
                serde_json::to_value(other)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        };
    }
    let _ = writeln!(text, "total {total_ms:.2} ms ({} files)", seen.len());
    crate::out!("{text}");
}

fn node_run<'a>(
    loaded: &Loaded,
    paths: &Paths,
    effects: Effects,
    init: &'a dyn InitSystem,
    probes: &'a HostProbes,
    ignore: Vec<String>,
) -> NodeRun<'a> {
    NodeRun {
        input: Inputs {
            settings: loaded.settings.clone(),
            paths: paths.clone(),
            effects,
            carried: loaded.envelope.files.clone(),
            now: time::OffsetDateTime::now_utc(),
            detected: detected_for(paths, effects),
            host_inputs: crate::manifests::HostInputs::detect(paths, std::env::vars()),
            ignore_preflight: ignore,
            budgets: Budgets::default(),
        },
        caps: Capabilities::new(init, probes),
        state: RunState::default(),
    }
}

/// Userdata found by a source: its name and bytes.
struct Found {
    source: String,
    bytes: Vec<u8>,
}

/// Finds the userdata the way `firstboot` does: `--config`/`--source
/// file:`, else local sources, else the platform's sources.
/// With `offline` (`--dry-run`), only local sources are read: a dry run
/// contacts nothing, metadata services included.
fn find_userdata(src: &SourceArgs, paths: &Paths, offline: bool) -> Result<(Found, Vec<String>)> {
    if let Some(f) = &src.config {
        return Ok((
            Found {
                source: f.display().to_string(),
                bytes: read_input(f)?,
            },
            vec![],
        ));
    }
    match src.source.as_deref() {
        None | Some("auto") => {}
        Some(spec) if spec.starts_with("file:") => {
            let f = Path::new(&spec[5..]);
            return Ok((
                Found {
                    source: f.display().to_string(),
                    bytes: read_input(f)?,
                },
                vec![],
            ));
        }
        Some(other) => {
            return Err(Error::Invalid(format!(
                "--source {other:?}: expected auto or file:PATH"
            )));
        }
    }
    let mut explain = Vec::new();
    let detection = platform::detect(paths, src.platform.as_deref())?;
    explain.push(format!(
        "platform: {} ({})",
        detection.platform.name(),
        detection.reason
    ));
    let mut sources: Vec<Box<dyn Source>> = local::local_sources(paths);
    let mut opts = network::NetOptions::new(paths);
    opts.metadata_url = src.metadata_url.clone();
    opts.budget = src.network_budget();
    // A `kubeboot.config=` URL is not a network source here: the kernel
    // command line (a local source, asked first) yields it, and
    // `load_found` fetches it. One path, one fetch.
    if offline {
        explain.push("dry run: network sources not asked".into());
    } else {
        sources.extend(network::sources_for(detection.platform, &opts));
    }
    match network::first_found(&sources) {
        network::Search::Found {
            source,
            data,
            tried,
        } => {
            for t in tried {
                explain.push(format!("tried {}: {}", t.source, t.outcome));
            }
            explain.push(format!("using {source}"));
            Ok((
                Found {
                    source,
                    bytes: data,
                },
                explain,
            ))
        }
        network::Search::NotFound { tried, retryable } => {
            for t in tried {
                explain.push(format!("tried {}: {}", t.source, t.outcome));
            }
            let msg = format!("no userdata found\n{}", explain.join("\n"));
            if retryable {
                Err(Error::Failed(msg))
            } else {
                Err(Error::NoUserdata(msg))
            }
        }
    }
}

/// Unwraps found userdata; when it only points at a config URL (PXE
/// `kubeboot.config=`), fetches that (pinned, bounded) and loads it instead.
fn load_found(
    found: &Found,
    facts: &HostFacts,
    paths: &Paths,
    offline: bool,
    budget: Duration,
) -> Result<Loaded> {
    let unwrapped = crate::envelope::unwrap(&found.bytes, facts)
        .map_err(|e| Error::Invalid(format!("{}: {e}", found.source)))?;
    let Some(cu) = unwrapped
        .config_urls
        .first()
        .filter(|_| unwrapped.documents.is_empty())
    else {
        let loaded = config::from_unwrapped(unwrapped, &found.source, facts)?;
        warn_if_readable_secret(found, &loaded, paths);
        return Ok(loaded);
    };
    if offline {
        return Err(Error::Invalid(format!(
            "{}: the userdata points at {}; a dry run contacts nothing: fetch it and pass --config FILE",
            found.source, cu.url
        )));
    }
    // The kernel command line may also name a CA file for the URL.
    let cfg = match userdata::url::ConfigUrl::from_cmdline(paths)? {
        Some(c) if c.url == cu.url => c,
        _ => userdata::url::ConfigUrl::new(&cu.url, cu.sha256.as_deref(), None)?,
    };
    let source = userdata::url::ConfigUrlSource::new(cfg, budget);
    let name = source.name();
    match source.fetch() {
        Ok(userdata::Fetch::Found(bytes)) => {
            log::info!(target: "source", "{}: fetched {} bytes from {name}", found.source, bytes.len());
            let inner = crate::envelope::unwrap(&bytes, facts)
                .map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
            if inner.documents.is_empty() {
                return Err(Error::Invalid(format!(
                    "{name}: holds no config (a config URL may not point to another URL)"
                )));
            }
            config::from_unwrapped(inner, &name, facts)
        }
        Ok(userdata::Fetch::Absent(why)) => Err(Error::NoUserdata(format!("{name}: {why}"))),
        Err(e) if e.retryable => Err(Error::Failed(e.to_string())),
        Err(e) => Err(Error::Invalid(e.to_string())),
    }
}

/// Warns, as for a token on the kernel command line, when the kubeboot
/// config file holds a token or certificate key and every local user may
/// read it.
fn warn_if_readable_secret(found: &Found, loaded: &Loaded, paths: &Paths) {
    use std::os::unix::fs::PermissionsExt;
    let path = crate::host::paths::KUBEBOOT_CONFIG_PATH;
    if !found.source.starts_with(&format!("kubeboot config {path}")) {
        return;
    }
    let s = &loaded.settings;
    let secret = s.join.is_some()
        || s.certificate_key.is_some()
        || s.bootstrap_tokens.iter().any(|t| t.token.is_some());
    let mode = local::resolve_under_root(paths.root(), Path::new(path))
        .and_then(std::fs::metadata)
        .map(|m| m.permissions().mode() & 0o7777);
    if let Ok(mode) = mode
        && secret
        && mode & 0o004 != 0
    {
        log::warn!(
            target: "source",
            "{path} (mode {mode:04o}) holds a bootstrap token or certificate key and is readable by every local user; \
             make it 0600, or prefer kubeboot.config=<url> with kubeboot.config.sha256"
        );
    }
}

/// `config show --source auto`: resolve like firstboot, print the decision and the settings.
pub fn show_auto(src: &SourceArgs) -> Result<()> {
    let paths = Paths::new(&src.root);
    let facts = HostFacts::detect(&paths.proc());
    let (found, explain) = find_userdata(src, &paths, false)?;
    for line in &explain {
        log::info!(target: "source", "{line}");
    }
    let loaded = load_found(&found, &facts, &paths, false, src.network_budget())?;
    log_warnings(&loaded);
    print_settings(&loaded)
}

/// `kubeboot firstboot`: run once, from whatever userdata the node has.
pub fn firstboot(args: &FirstbootArgs, lock_wait: Duration) -> Result<()> {
    let paths = Paths::new(&args.source.root);
    // Held from before the marker check to after the marker is written:
    // a second run waits, then finds the marker.
    let _lock = if args.opts.dry_run {
        None
    } else {
        Some(RunLock::acquire(&paths, lock_wait)?)
    };
    if status::marker_exists(&paths) && !args.opts.dry_run {
        crate::outln!(
            "kubeboot: this node was bootstrapped already ({} exists); nothing to do",
            paths.marker().display()
        );
        return Ok(());
    }
    run_node(&args.source, &paths, &args.opts, None)
}

/// `kubeboot init` / `kubeboot join`.
pub fn init_or_join(args: &RunArgs, init: bool, lock_wait: Duration) -> Result<()> {
    let paths = Paths::new(&args.source.root);
    let only = match &args.phase {
        Some(PhaseCommand::Phase { name }) if name == "list" => {
            let list = if init {
                phases::init_phases()
            } else {
                phases::join_phases()
            };
            crate::out!("{}", runner::tree(&list));
            return Ok(());
        }
        Some(PhaseCommand::Phase { name }) => Some(name.clone()),
        None => None,
    };
    if args.source.config.is_none() && args.source.source.is_none() {
        return Err(Error::Invalid(format!(
            "{}: give --config FILE (or --source auto|file:PATH)",
            if init { "init" } else { "join" }
        )));
    }
    let opts = RunOptions {
        only,
        ..args.opts.clone()
    };
    let _lock = if opts.dry_run {
        None
    } else {
        Some(RunLock::acquire(&paths, lock_wait)?)
    };
    run_node(&args.source, &paths, &opts, Some(init))
}

fn run_node(
    src: &SourceArgs,
    paths: &Paths,
    run_opts: &RunOptions,
    expect_init: Option<bool>,
) -> Result<()> {
    let started = Instant::now();
    let effects = if run_opts.dry_run {
        Effects::DryRun
    } else {
        Effects::Full
    };
    // status.json records full runs only: a single-phase run (`init phase
    // certs`) never replaces the record of the last first boot.
    let record = effects == Effects::Full && run_opts.only.is_none();
    let (source, mut loaded) = find_and_load(src, paths, effects, record, started)?;
    use_patches(&mut loaded, run_opts.patches.as_deref())?;
    let mode = loaded.settings.mode;
    if let Some(init) = expect_init
        && init != (mode == Mode::Init)
    {
        return Err(Error::Invalid(format!(
            "{source}: this configuration is for a {} node; run `kubeboot {}`",
            mode.as_str(),
            if mode == Mode::Init { "init" } else { "join" }
        )));
    }
    let systemctl = Systemctl::with_program(run_opts.systemctl.clone());
    let init_system: &dyn InitSystem = if effects == Effects::Full {
        &systemctl
    } else {
        &Offline
    };
    let probes = HostProbes::new(paths);
    let mut ignore = loaded.settings.node.ignore_preflight_errors.clone();
    ignore.extend(run_opts.ignore_preflight_errors.iter().cloned());
    let mut run = node_run(&loaded, paths, effects, init_system, &probes, ignore);
    run.input.budgets = budgets(&loaded.settings, run_opts);
    crate::progress::set_interval(Duration::from_secs_f64(
        run_opts.progress_interval.clamp(0.001, 3600.0),
    ));
    let list = phases::phases_for(mode);
    let mut skip_all: Vec<String> = run_opts
        .skip_phases
        .iter()
        .map(|n| kubeadm_phase_name(n, "--skip-phases"))
        .collect();
    skip_all.extend(loaded.settings.skip_phases.iter().cloned());
    runner::check_names(&list, &skip_all, "--skip-phases")?;
    phases::check_patches(&run)?;
    let only_name = run_opts
        .only
        .as_deref()
        .map(|n| kubeadm_phase_name(n, "phase"));
    let only = only_name.as_deref();
    if let Some(o) = only {
        runner::check_names(&list, &[o.to_string()], "phase")?;
    }
    if effects == Effects::DryRun {
        crate::host::dryrun::begin(paths.root());
    }
    let role = mode.as_str().to_string();
    let started_at = status::now_rfc3339();
    let mut in_progress = |phase: &'static str, so_far: &[phases::PhaseRecord]| {
        // status.json records full live runs only (not `init phase NAME`)
        if effects != Effects::Full || only.is_some() {
            return;
        }
        let mut st = Status::in_progress(role.clone(), phase, started_at.clone());
        st.source = Some(source.clone());
        st.phases = so_far.to_vec();
        st.total_millis = started.elapsed().as_secs_f64() * 1000.0;
        // a status is a report: failing to write it does not stop the run
        if let Err(e) = status::write_progress(paths, &st) {
            log::warn!("could not write the status file: {e}");
        }
    };
    let (records, result) = run_phases(&list, &mut run, &skip_all, only, &mut in_progress);
    if effects == Effects::DryRun {
        return finish_dry_run(paths, &run, &skip_all, only, result);
    }
    if let (Some(phase), Ok(())) = (only, &result) {
        crate::outln!(
            "kubeboot: phase {phase} done in {:.0} ms (status.json keeps the record of the last full run)",
            started.elapsed().as_secs_f64() * 1000.0
        );
        return Ok(());
    }
    if !record {
        return result.map_err(wrap_phase);
    }
    let outcome = RunRecord {
        role,
        started_at,
        source,
        from_cluster_api: loaded.envelope.from_cluster_api(),
    };
    record_outcome(paths, outcome, records, result, started)
}

/// A dry run's report: the files it would write, then (when the phases
/// passed) the API requests it would send.
fn finish_dry_run(
    paths: &Paths,
    run: &NodeRun<'_>,
    skip_all: &[String],
    only: Option<&str>,
    result: std::result::Result<(), phases::PhaseError>,
) -> Result<()> {
    let requests = if result.is_ok() {
        phases::dry_run_requests(run, skip_all, only)
    } else {
        Ok(Vec::new())
    };
    print_dry_run(paths, &crate::host::dryrun::end());
    for line in requests? {
        crate::outln!("[dry-run] would send {line}");
    }
    result.map_err(wrap_phase)
}

/// What a full run's record says besides its phases.
struct RunRecord {
    role: String,
    started_at: String,
    source: String,
    from_cluster_api: bool,
}

/// Records a full run's outcome: status.json (and, on success, Cluster
/// API's sentinel where the userdata came from it, and the run-once
/// marker) and the console line.
fn record_outcome(
    paths: &Paths,
    o: RunRecord,
    records: Vec<phases::PhaseRecord>,
    result: std::result::Result<(), phases::PhaseError>,
    started: Instant,
) -> Result<()> {
    let mut st = match &result {
        Ok(()) => Status::success(
            o.role,
            records
                .iter()
                .rev()
                .find(|r| r.outcome == Outcome::Done)
                .map(|r| r.name.to_string()),
        ),
        Err(e) => Status::failure(o.role, Some(e.phase.to_string()), &e.error),
    };
    st.started_at = Some(o.started_at);
    st.source = Some(o.source);
    st.phases = records;
    st.total_millis = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(()) => {
            status::write(paths, &st)?;
            if o.from_cluster_api {
                status::write_cluster_api_sentinel(paths)?;
                log::info!(target: "kubeboot", "wrote Cluster API's {}", status::CLUSTER_API_SENTINEL);
            }
            status::write_marker(paths)?;
            crate::outln!("{}", st.console_line());
            Ok(())
        }
        Err(e) => {
            write_failure(paths, &st);
            Err(wrap_phase(e))
        }
    }
}

/// The run's budgets: the command line's `--discovery-timeout` and
/// `--wait-timeout` (0: no deadline) win over the config's `timeouts`,
/// which win over the defaults for the node's role
/// ([`Budgets::for_mode`]).
fn budgets(settings: &config::Settings, opts: &RunOptions) -> Budgets {
    let secs = |s: u64| {
        if s == 0 {
            phases::NO_DEADLINE
        } else {
            Duration::from_secs(s)
        }
    };
    let mut b = Budgets::for_mode(settings.mode, &settings.timeouts);
    if let Some(d) = opts.discovery_timeout {
        b.discovery = secs(d);
    }
    if let Some(w) = opts.wait_timeout.map(secs) {
        (b.health, b.kubelet, b.tls_bootstrap, b.etcd, b.api) = (w, w, w, w, w);
    }
    b.kubelet_healthz = opts.kubelet_healthz_url.clone();
    b
}

/// Finds and loads the userdata for a node run. A failure here, before the
/// phases, is recorded in the status file too (live runs only).
fn find_and_load(
    src: &SourceArgs,
    paths: &Paths,
    effects: Effects,
    record: bool,
    started: Instant,
) -> Result<(String, Loaded)> {
    let record_failure = |e: &Error, source: Option<String>| {
        if record {
            let mut st = Status::failure("unknown".into(), None, e);
            st.source = source;
            st.total_millis = started.elapsed().as_secs_f64() * 1000.0;
            write_failure(paths, &st);
        }
    };
    let facts = HostFacts::detect(&paths.proc());
    let offline = effects == Effects::DryRun;
    let (found, explain) =
        find_userdata(src, paths, offline).inspect_err(|e| record_failure(e, None))?;
    for line in &explain {
        log::info!(target: "source", "{line}");
    }
    let loaded = load_found(&found, &facts, paths, offline, src.network_budget())
        .inspect_err(|e| record_failure(e, Some(found.source.clone())))?;
    log_warnings(&loaded);
    Ok((found.source, loaded))
}

/// The files and directories a dry run would write, one line each.
fn print_dry_run(paths: &Paths, planned: &[crate::host::dryrun::Planned]) {
    for p in planned {
        let shown = p
            .path
            .strip_prefix(paths.root())
            .map(|r| format!("/{}", r.display()))
            .unwrap_or_else(|_| p.path.display().to_string());
        if p.dir {
            crate::outln!(
                "[dry-run] would write directory {shown} mode {:04o} ({})",
                p.mode,
                p.action
            );
        } else {
            crate::outln!(
                "[dry-run] would write {shown} mode {:04o}, {} bytes ({})",
                p.mode,
                p.size,
                p.action
            );
        }
    }
    crate::outln!(
        "[dry-run] {} files and directories; nothing was written under {}",
        planned.len(),
        paths.root().display()
    );
}

/// Records a failure: the status file (a failure to write it is logged, the
/// original error still wins) and the one console line.
fn write_failure(paths: &Paths, st: &Status) {
    if let Err(w) = status::write(paths, st) {
        log::error!("could not write the status file: {w}");
    }
    // stderr: the console line of a failure (never a panic if it is closed)
    let _ = writeln!(std::io::stderr().lock(), "{}", st.console_line());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(discovery: Option<u64>, wait: Option<u64>) -> RunOptions {
        RunOptions {
            skip_phases: vec![],
            dry_run: false,
            ignore_preflight_errors: vec![],
            discovery_timeout: discovery,
            wait_timeout: wait,
            progress_interval: 30.0,
            kubelet_healthz_url: "http://127.0.0.1:1/healthz".into(),
            systemctl: "systemctl".into(),
            patches: None,
            only: None,
        }
    }

    fn settings(text: &str) -> config::Settings {
        let facts = HostFacts::given(Some("n1".into()), Some("192.0.2.7".parse().unwrap()), None);
        let text = format!("apiVersion: kubeboot.dev/v1alpha1\n{text}");
        config::load(text.as_bytes(), "test", &facts)
            .unwrap()
            .settings
    }

    const WORKER: &str = "role: worker\nserver: 10.0.0.10:6443\ntoken: abcdef.0123456789abcdef\nunsafeSkipCAVerification: true\n";

    #[test]
    fn a_join_waits_for_its_cluster_without_a_deadline_by_default() {
        let b = budgets(&settings(WORKER), &opts(None, None));
        for d in [b.discovery, b.kubelet, b.tls_bootstrap, b.etcd, b.api] {
            assert_eq!(d, phases::NO_DEADLINE);
        }
        // this node's own control-plane components: kubeadm's 4 minutes
        assert_eq!(b.health, Duration::from_secs(240));
        assert_eq!(b.kubelet_healthz, "http://127.0.0.1:1/healthz");
        // an init node keeps kubeadm's defaults
        let b = budgets(&settings("role: control-plane\n"), &opts(None, None));
        assert_eq!(b.kubelet, Duration::from_secs(240));
        assert_eq!(b.tls_bootstrap, Duration::from_secs(300));
        assert_eq!(b.etcd, Duration::from_secs(120));
    }

    #[test]
    fn timeouts_win_over_defaults_and_flags_over_timeouts() {
        let s = settings(&format!(
            "{WORKER}timeouts:\n  discovery: 10m\n  tlsBootstrap: 1m\n  controlPlaneComponentHealthCheck: 0\n"
        ));
        let b = budgets(&s, &opts(None, None));
        assert_eq!(b.discovery, Duration::from_secs(600));
        assert_eq!(b.tls_bootstrap, Duration::from_secs(60));
        assert_eq!(b.health, phases::NO_DEADLINE);
        assert_eq!(b.kubelet, phases::NO_DEADLINE);
        let b = budgets(&s, &opts(Some(7), Some(0)));
        assert_eq!(b.discovery, Duration::from_secs(7));
        for d in [b.health, b.kubelet, b.tls_bootstrap, b.etcd, b.api] {
            assert_eq!(d, phases::NO_DEADLINE);
        }
        let b = budgets(&s, &opts(Some(0), Some(3)));
        assert_eq!(b.discovery, phases::NO_DEADLINE);
        assert_eq!(b.tls_bootstrap, Duration::from_secs(3));
    }
}
