//! The phases that write the node's files: `userdata-files`, `certs`,
//! `kubeconfig`, `etcd`, `control-plane`, `control-plane-prepare`,
//! `kubelet-start` and `kubelet-finalize`. Each calls a pure renderer
//! (`pki`, `manifests`, `kubelet`) and `host::fs`, and records what it wrote.

use super::NodeRun;
use crate::envelope::CarriedFile;
use crate::error::Error;
use crate::host::fs;
use crate::host::paths::KUBELET_CLIENT_CURRENT;
use crate::pki::{self, kubeconfig};
use crate::{kubelet, manifests};

/// Writes files brought by the userdata or the cluster: absent → written
/// with their mode; present with the same bytes (cloud-init already wrote
/// them, or a rerun) → kept; present and different → refused, since a CA
/// must never be replaced behind the user's back.
pub(super) fn write_files(
    r: &mut NodeRun<'_>,
    phase: &'static str,
    files: &[CarriedFile],
) -> Result<(), Error> {
    for f in files {
        let path = r.input.paths.host(&f.path);
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
                fs::write_atomic(&r.input.paths.rooted(&path), &f.content, f.mode, r.sync())?;
                r.record(phase, path, "written", format!("mode {:04o}", f.mode));
            }
        }
    }
    Ok(())
}

pub(super) fn run_userdata_files(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let files = r.input.carried.clone();
    write_files(r, "userdata-files", &files)
}

fn record_report(r: &mut NodeRun<'_>, phase: &'static str, report: &pki::PkiReport) {
    for e in &report.entries {
        let line = e.summary();
        match line.strip_prefix("wrote") {
            Some(rest) if r.wrote() != "wrote" => log::info!(target: phase, "{}{rest}", r.wrote()),
            _ => log::info!(target: phase, "{line}"),
        }
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

/// `certs` and its sub-phases (`certs/apiserver`, ...).
pub(super) fn run_certs(r: &mut NodeRun<'_>) -> Result<(), Error> {
    certs(r, &|_| true)
}

pub(super) fn run_certs_phase(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let subs = r.state.subs.clone();
    certs(r, &|n| subs.contains(&n))
}

fn certs(r: &mut NodeRun<'_>, want: &dyn Fn(&str) -> bool) -> Result<(), Error> {
    let (report, ca) = pki::ensure_tree_keeping_ca(
        &r.input.settings,
        &r.input.paths,
        r.input.now,
        r.sync(),
        want,
    )?;
    r.state.cluster_ca = ca;
    r.state.ca_marks_to_settle = true;
    record_report(r, "certs", &report);
    Ok(())
}

/// `kubeconfig` and its sub-phases (`kubeconfig/admin`, ...).
pub(super) fn run_kubeconfigs(r: &mut NodeRun<'_>) -> Result<(), Error> {
    kubeconfigs(r, &|_| true)
}

pub(super) fn run_kubeconfigs_phase(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let subs = r.state.subs.clone();
    kubeconfigs(r, &|n| subs.contains(&n))
}

fn kubeconfigs(r: &mut NodeRun<'_>, want: &dyn Fn(&str) -> bool) -> Result<(), Error> {
    // taken: the CA's private key is held no longer than this phase
    let ca = r.state.cluster_ca.take();
    let report = kubeconfig::ensure_kubeconfigs_with(
        &r.input.settings,
        &r.input.paths,
        r.input.now,
        r.sync(),
        want,
        ca.as_ref(),
    )?;
    record_report(r, "kubeconfig", &report);
    Ok(())
}

pub(super) fn write_pods(
    r: &mut NodeRun<'_>,
    phase: &'static str,
    want: &dyn Fn(&str) -> bool,
) -> Result<(), Error> {
    // only the wanted pods are built (the etcd phase writes one of four)
    let s = &r.input.settings;
    let pods = manifests::render_wanted(s, &r.input.host_inputs, want)
        .into_iter()
        .map(|(c, pod)| Ok((c, manifests::patched_yaml(s, c, &pod)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    for p in manifests::write_manifests(&r.input.paths, &pods, r.sync())? {
        log::info!(target: phase, "{} {}", r.wrote(), p.display());
        r.record(phase, p, "written", String::new());
    }
    Ok(())
}

pub(super) fn run_etcd(r: &mut NodeRun<'_>) -> Result<(), Error> {
    // kubeadm creates the local etcd's data directory 0700 before writing
    // the manifest (cmd/kubeadm/app/cmd/phases/init/etcd.go), rather than
    // leaving it to the kubelet's DirectoryOrCreate (0755).
    if let crate::config::Etcd::Local { data_dir, .. } = &r.input.settings.cluster.etcd {
        let dir = r.input.paths.host(data_dir);
        fs::create_dir_all(r.input.paths.root(), &dir, 0o700)?;
    }
    write_pods(r, "etcd", &|n| n == manifests::ETCD)
}

/// `control-plane` and its sub-phases: `apiserver` is the `kube-apiserver`
/// pod, and so on.
pub(super) fn run_control_plane(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let subs = r.state.subs.clone();
    write_pods(r, "control-plane", &|n| {
        n != manifests::ETCD && subs.iter().any(|s| n.strip_prefix("kube-") == Some(*s))
    })
}

pub(super) fn run_control_plane_prepare(r: &mut NodeRun<'_>) -> Result<(), Error> {
    // The shared CAs must be present: carried by the userdata (Cluster API
    // style) or downloaded with the certificate key (download-certs).
    let ca = r.input.pki_file("ca.key");
    if !ca.exists() {
        return Err(Error::Failed(format!(
            "{}: missing; give certificateKey (the init node must have run upload-certs) or carry ca.crt/ca.key, sa.key/sa.pub, front-proxy-ca and etcd/ca in the userdata",
            ca.display()
        )));
    }
    if r.wants("certs") {
        run_certs(r)?;
    }
    if r.wants("kubeconfig") {
        run_kubeconfigs(r)?;
    }
    if r.wants("control-plane") {
        write_pods(r, "control-plane-prepare", &|n| n != manifests::ETCD)?;
    }
    Ok(())
}

pub(super) fn run_kubelet_start(r: &mut NodeRun<'_>) -> Result<(), Error> {
    for n in &r.input.detected.notes {
        log::info!(target: "kubelet-start", "detected: {n}");
    }
    if !r.input.settings.mode.is_control_plane() {
        // the kubelet's staticPodPath: present and empty on a worker, as kubeadm leaves it
        manifests::write_pods(&r.input.paths, &[], r.sync())?;
    }
    for p in kubelet::write_all(
        &r.input.settings,
        &r.input.detected,
        &r.input.paths,
        r.sync(),
        r.state.cluster_kubelet_config.as_deref(),
    )? {
        log::info!(target: "kubelet-start", "{} {}", r.wrote(), p.display());
        r.record("kubelet-start", p, "written", String::new());
    }
    // everything the kubelet will read is on disk before it starts
    r.flush()?;
    if r.live() {
        kubelet::start(r.caps.init)?;
        log::info!(target: "kubelet-start", "kubelet restarted (systemctl restart --no-block kubelet)");
    } else {
        log::info!(target: "kubelet-start", "would run: systemctl daemon-reload; systemctl enable kubelet; systemctl restart --no-block kubelet");
    }
    Ok(())
}

/// `kubelet-finalize` (kubeadm's enable-client-cert-rotation): once the
/// kubelet has its own rotating client certificate, `kubelet.conf` refers
/// to that file instead of embedding the certificate kubeboot issued, so
/// rotation keeps it valid past the first year; then the kubelet restarts.
/// When the kubelet has not written the file yet, nothing changes.
pub(super) fn run_kubelet_finalize(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let pem = r.input.paths.kubelet_client_current();
    if !pem.exists() {
        log::info!(target: "kubelet-finalize", "{} does not exist yet; kubelet.conf keeps its embedded client certificate", pem.display());
        return Ok(());
    }
    let conf = r.input.paths.kubelet_conf();
    let text = fs::read_required(&conf, "")?;
    let updated = kubeconfig::reference_client_file(&text, KUBELET_CLIENT_CURRENT)
        .map_err(|e| Error::Failed(format!("{}: {e}", conf.display())))?;
    if updated.as_bytes() == text.as_slice() {
        return Ok(());
    }
    fs::write_atomic(
        &r.input.paths.rooted(&conf),
        updated.as_bytes(),
        0o600,
        r.sync(),
    )?;
    r.record(
        "kubelet-finalize",
        conf,
        "written",
        format!("client certificate from {KUBELET_CLIENT_CURRENT}"),
    );
    r.flush()?;
    r.caps.init.restart(kubelet::KUBELET_UNIT)?;
    log::info!(target: "kubelet-finalize", "kubelet.conf now uses {KUBELET_CLIENT_CURRENT}; kubelet restarted");
    Ok(())
}
