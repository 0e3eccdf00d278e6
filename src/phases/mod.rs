//! The phases of a node run. [`plan`] says which phases run, in which
//! order, for each role; the phase bodies are short checklists, one file
//! per group: [`files`] (the node's files, through the pure renderers and
//! `host::fs`), [`join`] and [`cluster`] (through `api`), [`wait`] (bounded
//! health waits) and [`preflight`]. The generic [`runner`] runs a plan.
//!
//! A phase sees one [`NodeRun`]: its [`Inputs`] (read-only), its
//! [`Capabilities`] (init system, probes, API clients by [`Client`]) and
//! the [`RunState`] earlier phases left (files written, what discovery
//! learned, tokens created).

mod cluster;
mod dryrun;
mod files;
mod join;
pub mod plan;
pub mod preflight;
pub mod runner;
pub mod wait;

use std::cell::OnceCell;
use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;

use crate::api;
use crate::config::{BootstrapToken, Settings};
use crate::envelope::CarriedFile;
use crate::error::Error;
use crate::host::Paths;
use crate::host::detect::Detected;
use crate::host::fs::{self, Sync};
use crate::host::systemd::InitSystem;
use crate::manifests;

pub use dryrun::dry_run_requests;
pub use plan::{init_phases, join_phases, phases_for};
use preflight::Probes;
pub use runner::{Outcome, Phase, PhaseError, PhaseRecord};

/// What a run may do beyond writing files under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effects {
    /// Everything: preflight, starting the kubelet, network, waits.
    Full,
    /// `--dry-run`: write nothing under --root (writes go to the in-memory
    /// overlay of [`crate::host::dryrun`]), start nothing, contact nothing.
    DryRun,
    /// `render`: offline file phases only, into an image or test tree.
    Render,
}

/// How to run a node's phases: the options `init`, `join` and `firstboot`
/// share (the command line spells them) plus `only` (`init phase NAME`).
#[derive(Debug, clap::Args, Clone)]
pub struct RunOptions {
    /// Comma-separated phases to skip.
    #[arg(long, global = true, value_name = "LIST", value_delimiter = ',')]
    pub skip_phases: Vec<String>,
    /// Write nothing, start nothing, contact nothing: print each file that would be written and each API request that would be sent.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Comma-separated preflight checks whose errors become warnings (kubeadm's names), or `all`.
    #[arg(long, global = true, value_name = "LIST", value_delimiter = ',')]
    pub ignore_preflight_errors: Vec<String>,
    /// How long token discovery may take, in seconds (kubeadm: 300).
    #[arg(long, global = true, value_name = "SECS", default_value_t = DEFAULT_DISCOVERY_SECS)]
    pub discovery_timeout: u64,
    /// How long each health wait (kubelet, control plane, TLS bootstrap) may take, in seconds (kubeadm: 240).
    #[arg(long, global = true, value_name = "SECS", default_value_t = DEFAULT_WAIT_SECS)]
    pub wait_timeout: u64,
    /// The kubelet's healthz URL (its healthzPort; tests point it at 127.0.0.1).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = DEFAULT_KUBELET_HEALTHZ
    )]
    pub kubelet_healthz_url: String,
    /// The systemctl program to drive units with (a wrapper in image builds or tests).
    #[arg(long, global = true, value_name = "PATH", default_value = "systemctl")]
    pub systemctl: String,
    /// Run only this phase (`init phase NAME`); not a flag of its own.
    #[arg(skip)]
    pub only: Option<String>,
}

/// kubeadm's token discovery timeout, in seconds.
pub const DEFAULT_DISCOVERY_SECS: u64 = 300;
/// kubeadm's health wait, in seconds.
pub const DEFAULT_WAIT_SECS: u64 = 240;
/// The kubelet's default healthz URL.
pub const DEFAULT_KUBELET_HEALTHZ: &str = "http://127.0.0.1:10248/healthz";

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            skip_phases: Vec::new(),
            dry_run: false,
            ignore_preflight_errors: Vec::new(),
            discovery_timeout: DEFAULT_DISCOVERY_SECS,
            wait_timeout: DEFAULT_WAIT_SECS,
            kubelet_healthz_url: DEFAULT_KUBELET_HEALTHZ.into(),
            systemctl: "systemctl".into(),
            only: None,
        }
    }
}

/// Bounds on the waits and network steps; tests shorten them.
#[derive(Debug, Clone)]
pub struct Budgets {
    /// Token discovery (kubeadm: 5 min).
    pub discovery: Duration,
    /// Kubelet health and control-plane health (kubeadm: 4 min each).
    pub health: Duration,
    /// TLS bootstrap: waiting for the kubelet to write kubelet.conf (kubeadm: 5 min).
    pub tls_bootstrap: Duration,
    /// The kubelet's healthz URL.
    pub kubelet_healthz: String,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            discovery: api::discovery::DEFAULT_DISCOVERY_BUDGET,
            health: Duration::from_secs(DEFAULT_WAIT_SECS),
            tls_bootstrap: Duration::from_secs(300),
            kubelet_healthz: DEFAULT_KUBELET_HEALTHZ.into(),
        }
    }
}

/// One file a phase wrote or kept, for the report `render` prints.
#[derive(Debug, Clone)]
pub struct Written {
    /// The phase.
    pub phase: &'static str,
    /// Path under the root.
    pub path: PathBuf,
    /// `created`, `kept`, `regenerated`, `written`.
    pub action: String,
    /// Extra detail (algorithm, expiry).
    pub detail: String,
}

/// What a run is given; the phases only read it.
pub struct Inputs {
    /// The validated configuration.
    pub settings: Settings,
    /// Host paths under --root.
    pub paths: Paths,
    /// What the run may do.
    pub effects: Effects,
    /// Files carried by the userdata (written by `userdata-files`).
    pub carried: Vec<CarriedFile>,
    /// Start time (certificate validity is computed from it).
    pub now: OffsetDateTime,
    /// What the host runs (cgroups, runtime driver, swap).
    pub detected: Detected,
    /// Host facts the static pods depend on (CA trust dirs, proxy variables), read once.
    pub host_inputs: manifests::HostInputs,
    /// Extra preflight errors to ignore (command line).
    pub ignore_preflight: Vec<String>,
    /// Bounds on waits.
    pub budgets: Budgets,
}

impl Inputs {
    /// A file of the certificate directory, under the root (`ca.crt`,
    /// `etcd/ca.key`).
    pub fn pki_file(&self, file: &str) -> PathBuf {
        self.paths
            .pki_dir(&self.settings.cluster.certificates_dir)
            .join(file)
    }
}

/// Whose API client: the kubeconfig a phase authenticates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// `admin.conf` (`kubeadm:cluster-admins`), made once per run and shared.
    Admin,
    /// `super-admin.conf` (`system:masters`), for the one binding
    /// `admin.conf` cannot create on a fresh cluster.
    SuperAdmin,
}

impl Client {
    /// The kubeconfig file under `/etc/kubernetes`.
    pub fn kubeconfig(self) -> &'static str {
        match self {
            Client::Admin => "admin.conf",
            Client::SuperAdmin => "super-admin.conf",
        }
    }
}

/// What a run acts through besides files.
pub struct Capabilities<'a> {
    /// The init system (systemctl, or a recording fake).
    pub init: &'a dyn InitSystem,
    /// Host probes for preflight.
    pub probes: &'a dyn Probes,
    /// The API client as `admin.conf`'s user, made by the first API phase
    /// that needs it and shared by the rest (one TLS connection, not one each).
    admin: OnceCell<api::kube::Kube>,
}

impl<'a> Capabilities<'a> {
    /// Capabilities with no API client made yet.
    pub fn new(init: &'a dyn InitSystem, probes: &'a dyn Probes) -> Self {
        Capabilities {
            init,
            probes,
            admin: OnceCell::new(),
        }
    }
}

/// What the phases leave for later phases and the report.
#[derive(Default)]
pub struct RunState {
    /// Files written or kept, in order.
    pub written: Vec<Written>,
    /// The cluster information discovery verified (join).
    pub cluster_info: Option<api::discovery::ClusterInfo>,
    /// The cluster's KubeletConfiguration (kube-system/kubelet-config), when it has one.
    pub cluster_kubelet_config: Option<String>,
    /// The bootstrap tokens `bootstrap-token` created (given or generated), in config order.
    pub tokens: Vec<BootstrapToken>,
    /// The sub-phases of the running phase that were selected (all of them
    /// unless `phase NAME/SUB` or a skip narrowed it).
    pub subs: Vec<&'static str>,
}

impl runner::SubPhases for NodeRun<'_> {
    fn select_subs(&mut self, subs: Vec<&'static str>) {
        self.state.subs = subs;
    }
}

/// Everything the phases of one run share.
pub struct NodeRun<'a> {
    /// What the run is given.
    pub input: Inputs,
    /// What it acts through.
    pub caps: Capabilities<'a>,
    /// What the phases produced so far.
    pub state: RunState,
}

impl NodeRun<'_> {
    fn sync(&self) -> Sync {
        // Files are written without a per-file fsync and each phase that
        // writes ends with one syncfs (`flush`), always before the kubelet
        // is started: measured 72 fsyncs → 10 fsyncs + 7 syncfs for an init,
        // 20–25 ms → 12–15 ms own time (benches/firstboot.rs). Nothing is
        // visible outside the node before it is on disk; CA keys are still
        // fsynced before their certificates (pki); an empty file left by a
        // power cut counts as absent on the rerun; the status file and the
        // run-once marker keep a per-file fsync.
        Sync::Deferred
    }

    /// One `syncfs` of the root's filesystem, at the end of a phase that wrote.
    fn flush(&self) -> Result<(), Error> {
        fs::sync_filesystem(self.input.paths.root()).map_err(Error::from)
    }

    fn live(&self) -> bool {
        self.input.effects == Effects::Full
    }

    /// Whether sub-phase `sub` of the running phase was selected.
    fn wants(&self, sub: &str) -> bool {
        self.state.subs.contains(&sub)
    }

    /// "wrote", or "would write" in a dry run (whose writes stay in memory).
    fn wrote(&self) -> &'static str {
        if self.input.effects == Effects::DryRun {
            "would write"
        } else {
            "wrote"
        }
    }

    fn record(&mut self, phase: &'static str, path: PathBuf, action: &str, detail: String) {
        self.state.written.push(Written {
            phase,
            path,
            action: action.into(),
            detail,
        });
    }

    /// An API client as `who`'s user; API calls retry within the health
    /// budget. `admin.conf`'s is made once per run and shared.
    fn client(&self, who: Client) -> Result<api::kube::Kube, Error> {
        let make = || {
            api::kube::Kube::from_kubeconfig(
                &self.input.settings,
                &self.input.paths,
                who.kubeconfig(),
                self.input.budgets.health,
            )
        };
        if who != Client::Admin {
            return make();
        }
        if let Some(k) = self.caps.admin.get() {
            return Ok(k.clone());
        }
        let k = make()?;
        Ok(self.caps.admin.get_or_init(|| k).clone())
    }
}
