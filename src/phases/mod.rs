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

// How to run a node's phases: the options `init`, `join` and `firstboot`
// share (the command line spells them) plus `only` (`init phase NAME`).
// (A plain comment, not a doc comment: clap would make it the about text
// of the subcommand, whose arguments are built after it: cli::command.)
#[allow(missing_docs)]
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
    /// Deadline of token discovery in seconds, 0 for none (overrides `timeouts.discovery`; default: none for a join).
    #[arg(long, global = true, value_name = "SECS")]
    pub discovery_timeout: Option<u64>,
    /// Deadline of each other wait (kubelet, control plane, TLS bootstrap, etcd and API calls) in seconds, 0 for none (overrides `timeouts.*`; default: kubeadm's, none for a join's waits on its cluster).
    #[arg(long, global = true, value_name = "SECS")]
    pub wait_timeout: Option<u64>,
    /// Seconds between two progress lines of a wait (default 30; tests shorten it).
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        hide = true,
        default_value_t = 30.0
    )]
    pub progress_interval: f64,
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
    /// A directory of kubeadm patch files (`target[suffix][+patchtype].{json,yaml}`); replaces `patches.directory` of the config.
    #[arg(long, global = true, value_name = "DIR")]
    pub patches: Option<PathBuf>,
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
            discovery_timeout: None,
            wait_timeout: None,
            progress_interval: 30.0,
            kubelet_healthz_url: DEFAULT_KUBELET_HEALTHZ.into(),
            systemctl: "systemctl".into(),
            patches: None,
            only: None,
        }
    }
}

/// Bounds on the waits and network steps; tests shorten them.
/// [`NO_DEADLINE`] means a wait retries until it succeeds (or fails for a
/// reason no retry fixes).
#[derive(Debug, Clone)]
pub struct Budgets {
    /// Token discovery and the join's reads with the bootstrap token
    /// (kubeadm `timeouts.discovery`: 5 min).
    pub discovery: Duration,
    /// Each control-plane component's health (kubeadm
    /// `timeouts.controlPlaneComponentHealthCheck`: 4 min).
    pub health: Duration,
    /// The kubelet's healthz (kubeadm `timeouts.kubeletHealthCheck`: 4 min).
    pub kubelet: Duration,
    /// TLS bootstrap: waiting for the kubelet to write kubelet.conf
    /// (kubeadm `timeouts.tlsBootstrap`: 5 min).
    pub tls_bootstrap: Duration,
    /// One etcd call with its retries, the learner's promotion included
    /// (kubeadm `timeouts.etcdAPICall`: 2 min).
    pub etcd: Duration,
    /// One API server call with its retries (kubeadm
    /// `timeouts.kubernetesAPICall`: 1 min; kubeboot's init keeps 4 min,
    /// which also bounds its wait for the Node to register).
    pub api: Duration,
    /// The kubelet's healthz URL.
    pub kubelet_healthz: String,
}

pub use crate::net::http::NO_DEADLINE;

impl Default for Budgets {
    /// kubeadm's defaults (an init node's budgets).
    fn default() -> Self {
        Budgets {
            discovery: api::discovery::DEFAULT_DISCOVERY_BUDGET,
            health: Duration::from_secs(DEFAULT_WAIT_SECS),
            kubelet: Duration::from_secs(DEFAULT_WAIT_SECS),
            tls_bootstrap: Duration::from_secs(300),
            etcd: Duration::from_secs(120),
            api: Duration::from_secs(DEFAULT_WAIT_SECS),
            kubelet_healthz: DEFAULT_KUBELET_HEALTHZ.into(),
        }
    }
}

impl Budgets {
    /// The budgets of a node in `mode` with the config's `timeouts`.
    ///
    /// A join waits for the existing cluster without a deadline by default:
    /// discovery, the reads with the token, the kubelet's health and TLS
    /// bootstrap (both need the API server), etcd and API calls against
    /// the cluster. Fleets boot in any order, and a worker that boots
    /// before its control plane must join once it answers. Only this
    /// node's own control-plane components keep kubeadm's 4 minutes. An
    /// init node keeps kubeadm's defaults. Every value given in `timeouts`
    /// wins over these defaults.
    pub fn for_mode(mode: crate::config::Mode, t: &crate::config::model::Timeouts) -> Budgets {
        let base = Budgets::default();
        let join = mode != crate::config::Mode::Init;
        let cluster = |d: Duration| if join { NO_DEADLINE } else { d };
        Budgets {
            discovery: t.discovery.unwrap_or(cluster(base.discovery)),
            health: t
                .control_plane_component_health_check
                .unwrap_or(base.health),
            kubelet: t.kubelet_health_check.unwrap_or(cluster(base.kubelet)),
            tls_bootstrap: t.tls_bootstrap.unwrap_or(cluster(base.tls_bootstrap)),
            etcd: t.etcd_api_call.unwrap_or(cluster(base.etcd)),
            api: t.kubernetes_api_call.unwrap_or(cluster(base.api)),
            kubelet_healthz: base.kubelet_healthz,
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
    /// Files were written since the last `syncfs`.
    pub unsynced: bool,
    /// The certs phase ran since the last `syncfs`: the certificates
    /// directory may hold marks of new CAs to remove after the next one
    /// (`pki::tree::settle_new_ca_marks`; the certs phase is the only one
    /// that makes them, so no other run reads the directory for them).
    pub ca_marks_to_settle: bool,
    /// The cluster CA as the certs phase left it (checked or created, its
    /// signing key loaded), for the kubeconfig phase of the same run, which
    /// takes it (the key is not kept for the rest of the run).
    pub(crate) cluster_ca: Option<crate::pki::tree::Ca>,
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

/// Applies every patch to what it targets once, before anything is
/// written, so a patch that does not apply stops the run (exit 2, naming
/// its file) with nothing half-written: the static pods, init's kubelet
/// configuration and the CoreDNS Deployment. (A join's kubelet
/// configuration comes from the cluster; its patches are applied, and
/// checked, before kubelet-start writes any file.)
pub fn check_patches(r: &NodeRun<'_>) -> Result<(), Error> {
    let s = &r.input.settings;
    if s.patches.files.is_empty() {
        return Ok(());
    }
    manifests::render_patched(s, &r.input.host_inputs)?;
    if s.mode == crate::config::Mode::Init {
        crate::kubelet::patched(s, crate::kubelet::config_yaml(s, &r.input.detected)?)?;
        if !s.cluster.dns.disabled {
            api::addons::coredns(s)?;
        }
    }
    Ok(())
}

impl NodeRun<'_> {
    fn sync(&self) -> Sync {
        // One syncfs per run, before anything outside the process depends
        // on the files: before the kubelet is (re)started, and before an
        // etcd member is promoted (the cluster's quorum then counts on its
        // manifest). No per-file fsync, no per-phase syncfs: measured 72
        // fsyncs → 10 fsyncs + 7 syncfs → 1 syncfs for an init
        // (docs/building.md). A power cut before that syncfs leaves empty
        // or missing files, which the rerun treats as absent (a CA whose key
        // is empty is made anew, pki/tree.rs); the status file and the
        // run-once marker keep a per-file fsync and come after.
        Sync::Batched
    }

    /// One `syncfs` of the root's filesystem, when anything was written
    /// since the last one.
    fn flush(&mut self) -> Result<(), Error> {
        let synced = self.state.unsynced;
        if self.state.unsynced {
            fs::sync_filesystem(self.input.paths.root()).map_err(Error::from)?;
            self.state.unsynced = false;
        }
        if self.state.ca_marks_to_settle {
            // the new CAs are durable now: their marks have done their work
            // (marks of an earlier run that stopped before its sync: after a
            // syncfs of their own)
            crate::pki::tree::settle_new_ca_marks(
                &self
                    .input
                    .paths
                    .pki_dir(&self.input.settings.cluster.certificates_dir),
                synced,
            )?;
            self.state.ca_marks_to_settle = false;
        }
        Ok(())
    }

    /// The end of a successful run: whatever a phase wrote after the last
    /// sync (or a run that stopped before `kubelet-start`) is made durable
    /// before the status file and the run-once marker say "done".
    pub fn finish(&mut self) -> Result<(), Error> {
        self.flush()
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
        if action != "kept" {
            self.state.unsynced = true;
        }
        self.state.written.push(Written {
            phase,
            path,
            action: action.into(),
            detail,
        });
    }

    /// An API client as `who`'s user; API calls retry within the API call
    /// budget. `admin.conf`'s is made once per run and shared.
    fn client(&self, who: Client) -> Result<api::kube::Kube, Error> {
        let make = || {
            api::kube::Kube::from_kubeconfig(
                &self.input.settings,
                &self.input.paths,
                who.kubeconfig(),
                self.input.budgets.api,
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
