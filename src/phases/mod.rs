//! The init and join plans: which phases run, in which order, for each
//! role. The phases themselves are thin: they call the pure renderers
//! (`pki`, `kubeconfig`, `manifests`, `kubelet`) and the host layer.
//!
//! Phase names follow kubeadm's (`kubeadm init phase certs` ↔
//! `kubeboot init phase certs`), plus `userdata-files`, which puts files
//! the userdata carries (Cluster API's CA certificates and keys) on disk
//! before any PKI work.

pub mod runner;
pub mod wait;

use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;

use crate::api;
use crate::config::{Mode, Settings};
use crate::envelope::CarriedFile;
use crate::error::Error;
use crate::host::Paths;
use crate::host::detect::Detected;
use crate::host::fs::{self, Sync};
use crate::host::preflight::{self, Probes};
use crate::host::systemd::InitSystem;
use crate::{kubeconfig, kubelet, manifests, pki};

pub use runner::{Outcome, Phase, PhaseError, PhaseRecord, RunOptions};

/// What a run may do beyond writing files under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effects {
    /// Everything: preflight, starting the kubelet, network, waits.
    Full,
    /// `--dry-run`: write under --root, start nothing, contact nothing.
    DryRun,
    /// `render`: offline file phases only, into an image or test tree.
    Render,
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
            discovery: api::client::DEFAULT_DISCOVERY_BUDGET,
            health: Duration::from_secs(240),
            tls_bootstrap: Duration::from_secs(300),
            kubelet_healthz: "http://127.0.0.1:10248/healthz".into(),
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

/// Everything the phases of one run share.
pub struct NodeRun<'a> {
    /// The validated configuration.
    pub settings: Settings,
    /// Host paths under --root.
    pub paths: Paths,
    /// What the run may do.
    pub effects: Effects,
    /// The init system (systemctl, or a recording fake).
    pub init: &'a dyn InitSystem,
    /// Host probes for preflight.
    pub probes: &'a dyn Probes,
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
    /// Files written or kept, in order.
    pub written: Vec<Written>,
    /// The cluster information discovery verified (join).
    pub cluster_info: Option<api::discovery::ClusterInfo>,
    /// The cluster's KubeletConfiguration (kube-system/kubelet-config), when it has one.
    pub cluster_kubelet_config: Option<String>,
    /// The API client as `admin.conf`'s user, made by the first API phase
    /// that needs it and shared by the rest (one TLS connection, not one each).
    pub admin: std::cell::OnceCell<api::kube::Kube>,
    /// Files were written since the last `syncfs`.
    pub unsynced: bool,
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
        if self.unsynced {
            fs::sync_filesystem(self.paths.root()).map_err(Error::from)?;
            self.unsynced = false;
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
        self.effects == Effects::Full
    }

    fn record(&mut self, phase: &'static str, path: PathBuf, action: &str, detail: String) {
        if action != "kept" {
            self.unsynced = true;
        }
        self.written.push(Written {
            phase,
            path,
            action: action.into(),
            detail,
        });
    }
}

fn is_cp(r: &NodeRun<'_>) -> bool {
    r.settings.mode.is_control_plane()
}

fn local_etcd(r: &NodeRun<'_>) -> bool {
    is_cp(r) && r.settings.cluster.etcd.is_local()
}

/// Shared by init and join: files the userdata carries go on disk first.
fn userdata_files<'a>() -> Phase<NodeRun<'a>> {
    Phase {
        name: "userdata-files",
        summary: "write the files the userdata carries (CA material)",
        run_if: |r| !r.carried.is_empty(),
        run: write_carried,
    }
}

/// The phases of `init` (first control-plane node), in order.
pub fn init_phases<'a>() -> Vec<Phase<NodeRun<'a>>> {
    vec![
        Phase {
            name: "preflight",
            summary: "check the host can run a control plane",
            run_if: |r| r.live(),
            run: run_preflight,
        },
        userdata_files(),
        Phase {
            name: "certs",
            summary: "load or create the certificate tree",
            run_if: is_cp,
            run: run_certs,
        },
        Phase {
            name: "kubeconfig",
            summary: "load or create the kubeconfig files",
            run_if: is_cp,
            run: run_kubeconfigs,
        },
        Phase {
            name: "etcd",
            summary: "write the local etcd static pod",
            run_if: local_etcd,
            run: run_etcd,
        },
        Phase {
            name: "control-plane",
            summary: "write the control-plane static pods",
            run_if: is_cp,
            run: run_control_plane,
        },
        Phase {
            name: "kubelet-start",
            summary: "write the kubelet configuration and (re)start the kubelet",
            run_if: |_| true,
            run: run_kubelet_start,
        },
        Phase {
            name: "wait-control-plane",
            summary: "wait for the kubelet and the control-plane components to be healthy",
            run_if: |r| r.live(),
            run: wait::control_plane,
        },
        Phase {
            name: "upload-config",
            summary: "upload kube-system/kubeadm-config and kubelet-config with the RBAC to read them",
            run_if: |r| r.live(),
            run: run_upload_config,
        },
        Phase {
            name: "upload-certs",
            summary: "upload the shared CAs to kube-system/kubeadm-certs, encrypted with the certificate key",
            run_if: |r| r.live() && r.settings.certificate_key.is_some(),
            run: run_upload_certs,
        },
        mark_control_plane(),
        Phase {
            name: "bootstrap-token",
            summary: "create the bootstrap tokens, their RBAC and kube-public/cluster-info",
            run_if: |r| r.live(),
            run: run_bootstrap_token,
        },
        Phase {
            name: "addon",
            summary: "install the CoreDNS and kube-proxy addons",
            run_if: |r| r.live(),
            run: run_addon,
        },
        Phase {
            name: "kubelet-finalize",
            summary: "point kubelet.conf at the kubelet's rotated client certificate",
            run_if: |r| r.live(),
            run: run_kubelet_finalize,
        },
        Phase {
            name: "show-join-command",
            summary: "print the worker join configuration (without the token secret)",
            run_if: |r| r.live(),
            run: run_show_join_command,
        },
    ]
}

/// Shared by init and a control-plane join: label and taint the Node.
fn mark_control_plane<'a>() -> Phase<NodeRun<'a>> {
    Phase {
        name: "mark-control-plane",
        summary: "label and taint this node as a control-plane node",
        run_if: |r| is_cp(r) && r.live(),
        run: run_mark_control_plane,
    }
}

/// The phases of `join` (worker or control plane), in order.
pub fn join_phases<'a>() -> Vec<Phase<NodeRun<'a>>> {
    vec![
        Phase {
            name: "preflight",
            summary: "check the host can join",
            run_if: |r| r.live(),
            run: run_preflight,
        },
        userdata_files(),
        Phase {
            name: "discovery",
            summary: "fetch and verify the cluster CA with the bootstrap token",
            run_if: |r| r.live(),
            run: run_discovery,
        },
        Phase {
            name: "download-certs",
            summary: "download the shared CAs from kube-system/kubeadm-certs with the certificate key",
            run_if: |r| {
                is_cp(r)
                    && r.live()
                    && r.settings
                        .join
                        .as_ref()
                        .is_some_and(|j| j.certificate_key.is_some())
            },
            run: run_download_certs,
        },
        Phase {
            name: "control-plane-prepare",
            summary: "certificates, kubeconfigs and static pods for a joining control plane",
            run_if: is_cp,
            run: run_control_plane_prepare,
        },
        Phase {
            name: "kubelet-start",
            summary: "write the kubelet configuration and bootstrap kubeconfig, (re)start the kubelet",
            run_if: |_| true,
            run: run_kubelet_start,
        },
        Phase {
            name: "etcd-join",
            summary: "add this node to the etcd cluster",
            run_if: |r| local_etcd(r) && r.live(),
            run: run_etcd_join,
        },
        Phase {
            name: "wait-bootstrap",
            summary: "wait for the kubelet's TLS bootstrap to finish",
            run_if: |r| r.live(),
            run: wait::tls_bootstrap,
        },
        Phase {
            name: "wait-control-plane",
            summary: "wait for this node's control-plane components to be healthy",
            run_if: |r| is_cp(r) && r.live(),
            run: wait::control_plane,
        },
        mark_control_plane(),
    ]
}

/// The phases for `mode`.
pub fn phases_for<'a>(mode: Mode) -> Vec<Phase<NodeRun<'a>>> {
    if mode == Mode::Init {
        init_phases()
    } else {
        join_phases()
    }
}

fn run_preflight(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let report = preflight::run(&r.settings, &r.paths, r.probes, &r.ignore_preflight);
    for w in report.warnings() {
        log::warn!(target: "preflight", "{w}");
    }
    report.into_result().map(|_| ())
}

/// Writes files brought by the userdata or the cluster: absent → written
/// with their mode; present with the same bytes (cloud-init already wrote
/// them, or a rerun) → kept; present and different → refused, since a CA
/// must never be replaced behind the user's back.
fn write_files(
    r: &mut NodeRun<'_>,
    phase: &'static str,
    files: &[CarriedFile],
) -> Result<(), Error> {
    for f in files {
        let path = r.paths.host(&f.path);
        match fs::read_optional(&path)? {
            Some(existing) if existing == f.content => {
                r.record(phase, path, "kept", "already on disk".into());
            }
            Some(_) => {
                return Err(Error::Failed(format!(
                    "{}: exists with different content than {phase} brings; refusing to overwrite it (remove it to use the new copy)",
                    path.display()
                )));
            }
            None => {
                fs::write_atomic(r.paths.root(), &path, &f.content, f.mode, r.sync())?;
                r.record(phase, path, "written", format!("mode {:04o}", f.mode));
            }
        }
    }
    Ok(())
}

fn write_carried(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let files = std::mem::take(&mut r.carried);
    let result = write_files(r, "userdata-files", &files);
    r.carried = files;
    result
}

fn record_report(r: &mut NodeRun<'_>, phase: &'static str, report: &pki::PkiReport) {
    for e in &report.entries {
        let line = e.to_string();
        let line = line
            .split_once("] ")
            .map_or(line.as_str(), |(_, rest)| rest);
        log::info!(target: phase, "{line}");
        let action = match &e.action {
            pki::Action::Created => "created",
            pki::Action::Kept => "kept",
            pki::Action::Regenerated(_) => "regenerated",
            pki::Action::Supplied => "supplied",
        };
        let detail = match e.not_after {
            Some(t) => format!("{}, until {}", e.algorithm, t.date()),
            None => e.algorithm.clone(),
        };
        for p in &e.paths {
            r.record(phase, p.clone(), action, detail.clone());
        }
    }
}

fn run_certs(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let report = pki::ensure_tree(&r.settings, &r.paths, r.now, r.sync())?;
    record_report(r, "certs", &report);
    Ok(())
}

fn run_kubeconfigs(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let report = kubeconfig::ensure_kubeconfigs(&r.settings, &r.paths, r.now, r.sync())?;
    record_report(r, "kubeconfig", &report);
    Ok(())
}

fn write_pods(
    r: &mut NodeRun<'_>,
    phase: &'static str,
    want: fn(&str) -> bool,
) -> Result<(), Error> {
    let pods: Vec<_> = manifests::render_all(&r.settings, &r.host_inputs)
        .into_iter()
        .filter(|(n, _)| want(n))
        .collect();
    for p in manifests::write_pods(&r.paths, &pods, r.sync())? {
        log::info!(target: phase, "wrote {}", p.display());
        r.record(phase, p, "written", String::new());
    }
    Ok(())
}

fn run_etcd(r: &mut NodeRun<'_>) -> Result<(), Error> {
    write_pods(r, "etcd", |n| n == manifests::ETCD)
}

fn run_control_plane(r: &mut NodeRun<'_>) -> Result<(), Error> {
    write_pods(r, "control-plane", |n| n != manifests::ETCD)
}

fn run_control_plane_prepare(r: &mut NodeRun<'_>) -> Result<(), Error> {
    // The shared CAs must be present: carried by the userdata (Cluster API
    // style) or downloaded with the certificate key (download-certs).
    let ca = r
        .paths
        .host(format!("{}/ca.key", r.settings.cluster.certificates_dir));
    if !ca.exists() {
        return Err(Error::Failed(format!(
            "{}: missing; give certificateKey (the init node must have run upload-certs) or carry ca.crt/ca.key, sa.key/sa.pub, front-proxy-ca and etcd/ca in the userdata",
            ca.display()
        )));
    }
    run_certs(r)?;
    run_kubeconfigs(r)?;
    write_pods(r, "control-plane-prepare", |n| n != manifests::ETCD)
}

fn run_download_certs(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let (Some(join), Some(info)) = (r.settings.join.clone(), r.cluster_info.clone()) else {
        return Err(Error::Failed(
            "download-certs needs the discovery phase first".into(),
        ));
    };
    let Some(ck) = &join.certificate_key else {
        return Err(Error::Invalid("download-certs: no certificateKey".into()));
    };
    let key = api::certs::key_bytes(ck)?;
    let body = match api::client::get_with_token(
        &info.server,
        api::certs::SECRET_PATH,
        &info.ca_pem,
        &join.token,
        r.budgets.discovery,
    )? {
        (200, body) => body,
        (404, _) => {
            return Err(Error::Failed(format!(
                "{}: not found; run `kubeadm init phase upload-certs --upload-certs` on a control-plane node (the Secret expires after 2 hours)",
                api::certs::SECRET_PATH
            )));
        }
        (status, _) => {
            return Err(Error::Failed(format!(
                "{}: HTTP {status}",
                api::certs::SECRET_PATH
            )));
        }
    };
    let files = api::certs::files_from_secret(&body, &r.settings, &key)?;
    // the same keep/refuse rules as files carried by the userdata
    write_files(r, "download-certs", &files)
}

/// kubeadm's etcd-join (1.32–1.34, learner mode): the existing members'
/// client URLs from the etcd pods' annotation (read as `admin.conf`'s
/// user), synced with the member list; every member answers `status`
/// (check-etcd) before anything changes; `member add` as a learner with
/// this node's peer URL (reused on a rerun); etcd.yaml with the full
/// `--initial-cluster` and `--initial-cluster-state=existing`; `member
/// promote` once the learner (started by the kubelet from that manifest)
/// has caught up; then every member, this one included, answers `status`.
fn run_etcd_join(r: &mut NodeRun<'_>) -> Result<(), Error> {
    use api::etcd;
    let Some(info) = r.cluster_info.clone() else {
        return Err(Error::Failed(
            "etcd-join needs the discovery phase first".into(),
        ));
    };
    let admin = r.paths.host("/etc/kubernetes/admin.conf");
    let bytes = fs::read_optional(&admin)?.ok_or_else(|| {
        Error::Failed(format!(
            "{}: missing (control-plane-prepare writes it)",
            admin.display()
        ))
    })?;
    let (cert, key) = kubeconfig::client_cert_and_key(&bytes, &r.paths)
        .map_err(|e| Error::Failed(format!("{}: {e}", admin.display())))?;
    let endpoints =
        etcd::endpoints_from_api(&info.server, &info.ca_pem, &cert, &key, r.budgets.discovery)?;
    log::info!(target: "etcd-join", "etcd client URLs from the etcd pods: {}", endpoints.join(","));
    let pki = |f: &str| -> Result<Vec<u8>, Error> {
        let p = r
            .paths
            .host(format!("{}/{f}", r.settings.cluster.certificates_dir));
        fs::read_optional(&p)?.ok_or_else(|| Error::Failed(format!("{}: missing", p.display())))
    };
    let ca = pki("etcd/ca.crt")?;
    let hc_cert = pki("etcd/healthcheck-client.crt")?;
    let hc_key = String::from_utf8(pki("etcd/healthcheck-client.key")?)
        .map(crate::secret::Secret::new)
        .map_err(|_| Error::Failed("etcd/healthcheck-client.key is not PEM text".into()))?;
    let mut client = etcd::EtcdClient::new(endpoints, &ca, &hc_cert, &hc_key, r.budgets.health)?;
    let synced = client.sync_endpoints()?;
    log::info!(target: "etcd-join", "etcd endpoints from the member list: {}", synced.join(","));
    client.check_health()?;
    log::info!(target: "etcd-join", "check-etcd: every etcd member answers status");
    let adv = r.settings.node.advertise_address;
    let peer_url = etcd::peer_url(adv);
    let joined = client.join_member(&peer_url)?;
    if joined.added {
        log::info!(target: "etcd-join", "added learner {:016x} with peer URL {peer_url}", joined.id);
    } else {
        log::info!(target: "etcd-join", "member {:016x} already has peer URL {peer_url}; not adding another", joined.id);
    }
    let members = etcd::initial_cluster(&joined.members, &peer_url);
    let Some(pod) = manifests::etcd_with(&r.settings, &r.host_inputs, &members) else {
        return Err(Error::Failed(
            "etcd-join: this node has no local etcd to render".into(),
        ));
    };
    for p in manifests::write_pods(&r.paths, &[(manifests::ETCD, pod)], r.sync())? {
        log::info!(target: "etcd-join", "wrote {}", p.display());
        r.record("etcd-join", p, "written", String::new());
    }
    r.flush()?;
    let name = r.settings.node.name.clone();
    match client.promote(joined.id, &name, r.budgets.health)? {
        etcd::Promoted::Now(n) => {
            log::info!(target: "etcd-join", "member {name} ({:016x}) promoted to a voting member ({n} attempt(s))", joined.id)
        }
        etcd::Promoted::Already => {
            log::info!(target: "etcd-join", "member {name} ({:016x}) already is a voting member", joined.id)
        }
    }
    client.wait_available(&etcd::client_url(adv), r.budgets.health)?;
    log::info!(target: "etcd-join", "every etcd member answers status");
    Ok(())
}

fn run_discovery(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let Some(join) = r.settings.join.clone() else {
        return Err(Error::Invalid("discovery: no join configuration".into()));
    };
    let info = api::client::discover(&join, r.budgets.discovery)?;
    log::info!(target: "discovery", "cluster CA verified; API server {}", info.server);
    // ca.crt next to the kubeconfigs, as kubeadm writes it (0644).
    let ca_path = r
        .paths
        .host(format!("{}/ca.crt", r.settings.cluster.certificates_dir));
    fs::write_atomic(r.paths.root(), &ca_path, &info.ca_pem, 0o644, r.sync())?;
    r.record("discovery", ca_path, "written", "cluster CA".into());
    let text = kubeconfig::render_bootstrap(&info.server, &info.ca_pem, &join.token);
    let kc = r.paths.host("/etc/kubernetes/bootstrap-kubelet.conf");
    fs::write_atomic(r.paths.root(), &kc, text.as_bytes(), 0o600, r.sync())?;
    r.record(
        "discovery",
        kc,
        "written",
        "token auth (tls-bootstrap-token-user)".into(),
    );
    // As kubeadm join: refuse to impersonate a node that is up, and take the
    // kubelet configuration the cluster was initialised with.
    if api::client::node_is_ready(
        &info,
        &join.token,
        &r.settings.node.name,
        r.budgets.discovery,
    )? {
        return Err(Error::Invalid(format!(
            "a Node named {:?} already exists in the cluster and is Ready; give this machine another node.name (or delete that Node)",
            r.settings.node.name
        )));
    }
    r.cluster_kubelet_config =
        api::client::cluster_kubelet_config(&info, &join.token, r.budgets.discovery)?;
    match &r.cluster_kubelet_config {
        Some(_) => {
            log::info!(target: "discovery", "using the cluster's kubelet configuration (kube-system/kubelet-config)")
        }
        None => {
            log::info!(target: "discovery", "the cluster has no readable kube-system/kubelet-config; the kubelet configuration is derived from this node's settings")
        }
    }
    r.cluster_info = Some(info);
    Ok(())
}

fn run_kubelet_start(r: &mut NodeRun<'_>) -> Result<(), Error> {
    for n in &r.detected.notes {
        log::info!(target: "kubelet-start", "detected: {n}");
    }
    if !r.settings.mode.is_control_plane() {
        // the kubelet's staticPodPath: present and empty on a worker, as kubeadm leaves it
        manifests::write_pods(&r.paths, &[], r.sync())?;
    }
    for p in kubelet::write_all_with(
        &r.settings,
        &r.detected,
        &r.paths,
        r.sync(),
        r.cluster_kubelet_config.as_deref(),
    )? {
        log::info!(target: "kubelet-start", "wrote {}", p.display());
        r.record("kubelet-start", p, "written", String::new());
    }
    // everything the kubelet will read is on disk before it starts
    r.flush()?;
    if r.live() {
        kubelet::start(r.init)?;
        log::info!(target: "kubelet-start", "kubelet restarted (systemctl restart --no-block kubelet)");
    } else {
        log::info!(target: "kubelet-start", "would run: systemctl daemon-reload; systemctl enable kubelet; systemctl restart --no-block kubelet");
    }
    Ok(())
}

/// A client as the user of `file` (`admin.conf`'s is made once per run and
/// shared); API calls retry within the health budget.
fn admin_client(r: &NodeRun<'_>, file: &str) -> Result<api::kube::Kube, Error> {
    let make = || api::kube::Kube::from_kubeconfig(&r.settings, &r.paths, file, r.budgets.health);
    if file != "admin.conf" {
        return make();
    }
    if let Some(k) = r.admin.get() {
        return Ok(k.clone());
    }
    let k = make()?;
    Ok(r.admin.get_or_init(|| k).clone())
}

/// kubeadm's upload-config: first the `kubeadm:cluster-admins` binding
/// (kubeadm ensures it when it first builds its client), then
/// kubeadm-config and kubelet-config with their RBAC.
fn run_upload_config(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let kube = admin_client(r, "admin.conf")?;
    api::kube::ensure_cluster_admins(&kube, || admin_client(r, "super-admin.conf"))?;
    log::info!(target: "upload-config", "ClusterRoleBinding kubeadm:cluster-admins present");
    let path = r.paths.kubelet_dir().join(kubelet::CONFIG_FILE);
    let bytes = fs::read_optional(&path)?.ok_or_else(|| {
        Error::Failed(format!(
            "{}: missing (kubelet-start writes it)",
            path.display()
        ))
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::Failed(format!("{}: not UTF-8 text", path.display())))?;
    let objs = api::objects::upload_config(&r.settings, &text).map_err(Error::Failed)?;
    kube.apply_all("upload-config", &objs)?;
    // kubeadm 1.32/1.33 (NodeLocalCRISocket off) keep the CRI socket on the Node
    if !kubelet::node_local_cri_socket(&r.settings) {
        let (name, sock) = (&r.settings.node.name, &r.settings.node.cri_socket);
        let set = kube.annotate_cri_socket(name, sock, r.budgets.health)?;
        log::info!(target: "upload-config", "Node {name}: annotation {}={sock} ({})", api::objects::ANNOTATION_CRI_SOCKET, if set { "set" } else { "already present" });
    }
    Ok(())
}

/// kubeadm's addon phase: CoreDNS, then kube-proxy, each unless disabled.
fn run_addon(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let c = &r.settings.cluster;
    for (off, what) in [
        (c.dns.disabled, "CoreDNS: dns.disabled"),
        (c.proxy.disabled, "kube-proxy: proxy.disabled"),
    ] {
        if off {
            log::info!(target: "addon", "not installing {what}");
        }
    }
    let kube = admin_client(r, "admin.conf")?;
    let objs = api::addons::all(&r.settings).map_err(Error::Failed)?;
    kube.apply_all("addon", &objs)
}

fn run_upload_certs(r: &mut NodeRun<'_>) -> Result<(), Error> {
    use ring::rand::SecureRandom;
    let Some(ck) = r.settings.certificate_key.clone() else {
        return Ok(());
    };
    let key = api::certs::key_bytes(&ck)?;
    let rng = ring::rand::SystemRandom::new();
    let mut encrypted = Vec::new();
    for (data_key, path) in api::certs::layout(&r.settings) {
        let file = r.paths.host(&path);
        // kubeadm stores a file it does not have as an empty value
        let Some(plain) = fs::read_optional(&file)? else {
            encrypted.push((data_key, Vec::new()));
            continue;
        };
        let mut nonce = [0u8; 12];
        rng.fill(&mut nonce)
            .map_err(|_| Error::Failed("the system random number generator failed".into()))?;
        let blob = api::certs::encrypt(&key, nonce, &plain)
            .ok_or_else(|| Error::Failed(format!("encrypting {}", file.display())))?;
        encrypted.push((data_key, blob));
    }
    let kube = admin_client(r, "admin.conf")?;
    api::kube::upload_certs(&kube, encrypted, r.now)?;
    log::info!(target: "upload-certs", "shared certificates stored in kube-system/kubeadm-certs (decryptable only with the certificate key)");
    Ok(())
}

fn run_mark_control_plane(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let kube = admin_client(r, "admin.conf")?;
    let name = &r.settings.node.name;
    let changed = kube.mark_control_plane(name, &r.settings.node.taints, r.budgets.health)?;
    let taints: Vec<String> = r
        .settings
        .node
        .taints
        .iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    log::info!(
        target: "mark-control-plane",
        "Node {name}: labels {}, {}; taints [{}] ({})",
        api::objects::LABEL_CONTROL_PLANE,
        api::objects::LABEL_EXCLUDE_LB,
        taints.join(", "),
        if changed { "patched" } else { "already present" }
    );
    Ok(())
}

/// kubeadm's bootstrap-token: a Secret per token (generated when the
/// config gives none; kept in the run for show-join-command), the RBAC
/// that lets tokens bootstrap kubelets, `kube-public/cluster-info` and the
/// anonymous read of it. The controller manager signs cluster-info.
fn run_bootstrap_token(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let kube = admin_client(r, "admin.conf")?;
    let mut objs = Vec::new();
    for spec in &mut r.settings.bootstrap_tokens {
        let token = match &spec.token {
            Some(t) => t.clone(),
            None => {
                let t = crate::cli::generate_token()?;
                spec.token = Some(t.clone());
                t
            }
        };
        objs.push(api::objects::object(
            &api::objects::token_secret(spec, &token, r.now),
            api::objects::Update::Replace,
        ));
    }
    objs.extend(api::objects::bootstrap_rbac());
    let ca_path = r
        .paths
        .host(format!("{}/ca.crt", r.settings.cluster.certificates_dir));
    let ca = fs::read_optional(&ca_path)?
        .ok_or_else(|| Error::Failed(format!("{}: missing", ca_path.display())))?;
    let server = r.settings.control_plane_endpoint().url();
    objs.extend(api::objects::cluster_info(&server, &ca));
    kube.apply_all("bootstrap-token", &objs)
}

/// Prints the worker join as a kubeboot NodeConfig. The token secret is
/// never printed: the line names the Secret holding it.
fn run_show_join_command(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let Some(token) = r
        .settings
        .bootstrap_tokens
        .iter()
        .find_map(|t| t.token.as_ref())
    else {
        log::info!(target: "show-join-command", "no bootstrap token was created; create one with `kubeadm token create`");
        return Ok(());
    };
    let ca_path = r
        .paths
        .host(format!("{}/ca.crt", r.settings.cluster.certificates_dir));
    let ca = fs::read_optional(&ca_path)?
        .ok_or_else(|| Error::Failed(format!("{}: missing", ca_path.display())))?;
    let hash = pki::ca_hash(&ca)?;
    let text = api::objects::join_config(
        &r.settings.control_plane_endpoint().to_string(),
        &token.id,
        &hash,
    );
    log::info!(target: "show-join-command", "join a worker with this userdata (kubeboot NodeConfig):");
    for line in text.lines() {
        log::info!(target: "show-join-command", "  {line}");
    }
    Ok(())
}

/// Where the kubelet keeps its rotating client certificate (cert and key in one file).
pub const KUBELET_CLIENT_CURRENT: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";

/// `kubelet-finalize` (kubeadm's enable-client-cert-rotation): once the
/// kubelet has its own rotating client certificate, `kubelet.conf` refers
/// to that file instead of embedding the certificate kubeboot issued, so
/// rotation keeps it valid past the first year; then the kubelet restarts.
/// When the kubelet has not written the file yet, nothing changes.
fn run_kubelet_finalize(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let pem = r.paths.host(KUBELET_CLIENT_CURRENT);
    if !pem.exists() {
        log::info!(target: "kubelet-finalize", "{} does not exist yet; kubelet.conf keeps its embedded client certificate", pem.display());
        return Ok(());
    }
    let conf = r.paths.host("/etc/kubernetes/kubelet.conf");
    let text = fs::read_optional(&conf)?
        .ok_or_else(|| Error::Failed(format!("{}: missing", conf.display())))?;
    let updated = kubeconfig::reference_client_file(&text, KUBELET_CLIENT_CURRENT)
        .map_err(|e| Error::Failed(format!("{}: {e}", conf.display())))?;
    if updated.as_bytes() == text.as_slice() {
        return Ok(());
    }
    fs::write_atomic(r.paths.root(), &conf, updated.as_bytes(), 0o600, r.sync())?;
    r.record(
        "kubelet-finalize",
        conf,
        "written",
        format!("client certificate from {KUBELET_CLIENT_CURRENT}"),
    );
    r.flush()?;
    r.init.restart(kubelet::KUBELET_UNIT)?;
    log::info!(target: "kubelet-finalize", "kubelet.conf now uses {KUBELET_CLIENT_CURRENT}; kubelet restarted");
    Ok(())
}
