//! `kubeboot reset`: undo what kubeboot did to this node, as `kubeadm
//! reset` does (`cmd/kubeadm/app/cmd/reset.go`, phases in
//! `cmd/kubeadm/app/cmd/phases/reset/`):
//!
//! 1. **remove-etcd-member** (`removeetcdmember.go`; kubeadm's
//!    `RemoveStackedEtcdMemberFromCluster` in `phases/etcd/local.go`): on a
//!    node with `etcd.yaml`, find this node's member (by `--name`, else by
//!    its peer URL) and remove it through the OTHER members, so the cluster
//!    does not keep a dead voter. The only member of a cluster is not
//!    removed (kubeadm skips it too). Ours on top: before removing, the
//!    remaining voting members are asked for `status`; when fewer than a
//!    quorum of the voters left after the removal answer, reset refuses
//!    (exit 1, nothing touched) unless `--force`. kubeadm only warns when
//!    removal fails and carries on; kubeboot stops instead (again unless
//!    `--force`), so the etcd data directory is never deleted while this
//!    member still counts as a voter.
//! 2. **cleanup-node** (`cleanupnode.go`): stop the kubelet, then delete the
//!    contents of `/etc/kubernetes/manifests`, `/var/lib/kubelet` and the
//!    certificate directory (kept with `--keep-pki`; kubeadm has no such
//!    flag), the kubeconfigs (admin, super-admin, kubelet,
//!    bootstrap-kubelet, controller-manager, scheduler), the etcd data
//!    directory (the `etcd-data` hostPath of etcd.yaml, as kubeadm's
//!    `getEtcdDataDir`), and kubeboot's own state: status.json,
//!    renew-status.json and the run-once marker (so the next boot
//!    bootstraps again). Mount points are never descended into (kubeadm
//!    unmounts them first; kubeboot leaves them and says so). Like kubeadm,
//!    containers, CNI configuration and iptables rules are not touched, and
//!    the Node object stays in the API (a printed hint says how to remove it).
//!
//! Every removed path is printed; with `--dry-run` nothing is removed or
//! changed and the same list is printed as "would remove".

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::etcd::{EtcdClient, Member};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::host::Paths;
use crate::secret::Secret;

/// What `etcd.yaml` says about the local member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalEtcd {
    /// `--name`.
    pub name: String,
    /// `--advertise-client-urls`.
    pub client_urls: Vec<String>,
    /// `--initial-advertise-peer-urls`.
    pub peer_urls: Vec<String>,
    /// The `etcd-data` hostPath, else `--data-dir`.
    pub data_dir: String,
}

/// The part of the etcd static pod that [`local_etcd`] reads. Small
/// structs instead of k8s-openapi's `Pod`: its generated decoder (every
/// volume and probe kind) cost a few hundred KiB of the binary
/// (docs/building.md); unknown fields are ignored.
#[derive(serde::Deserialize)]
struct EtcdPod {
    spec: Option<EtcdPodSpec>,
}

#[derive(serde::Deserialize)]
struct EtcdPodSpec {
    #[serde(default)]
    containers: Vec<EtcdContainer>,
    volumes: Option<Vec<EtcdVolume>>,
}

#[derive(serde::Deserialize)]
struct EtcdContainer {
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct EtcdVolume {
    name: String,
    #[serde(rename = "hostPath")]
    host_path: Option<EtcdHostPath>,
}

#[derive(serde::Deserialize)]
struct EtcdHostPath {
    path: String,
}

/// Reads the etcd static pod manifest (text) for the member's identity.
pub fn local_etcd(manifest: &str) -> std::result::Result<LocalEtcd, String> {
    let pod: EtcdPod = serde_norway::from_str(manifest).map_err(|e| format!("not a Pod: {e}"))?;
    let spec = pod.spec.ok_or("no spec")?;
    let c = spec.containers.first().ok_or("no container")?;
    let mut out = LocalEtcd::default();
    let list = |v: &str| {
        v.split(',')
            .map(|u| u.trim_end_matches('/').to_string())
            .collect()
    };
    for a in c.command.iter().flatten().chain(c.args.iter().flatten()) {
        let Some((k, v)) = a.strip_prefix("--").and_then(|f| f.split_once('=')) else {
            continue;
        };
        match k {
            "name" => out.name = v.to_string(),
            "advertise-client-urls" => out.client_urls = list(v),
            "initial-advertise-peer-urls" => out.peer_urls = list(v),
            "data-dir" => out.data_dir = v.to_string(),
            _ => {}
        }
    }
    if let Some(p) = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "etcd-data")
        .and_then(|v| v.host_path.as_ref())
    {
        out.data_dir = p.path.clone();
    }
    if out.name.is_empty() || out.client_urls.is_empty() {
        return Err("no --name or --advertise-client-urls in the etcd command".into());
    }
    if out.data_dir.is_empty() {
        out.data_dir = "/var/lib/etcd".into();
    }
    Ok(out)
}

/// What to do about this node's etcd member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberPlan {
    /// Remove member `id` through `through` (the healthy other voters' client URLs).
    Remove {
        /// This node's member.
        me: Member,
        /// Client URLs of the other members that answered.
        through: Vec<String>,
    },
    /// This node is the cluster's only member: nothing to remove.
    OnlyMember,
    /// No member has this node's name or peer URL (removed already).
    NotAMember,
}

/// Decides what removing `local`'s member from `members` means, given
/// which other members answered `status` (`healthy`, client URLs). Refuses
/// (an error naming the numbers) when the voters left after the removal
/// would not have a healthy quorum.
pub fn plan(
    local: &LocalEtcd,
    members: &[Member],
    healthy: &[String],
) -> std::result::Result<MemberPlan, String> {
    let me = members
        .iter()
        .find(|m| m.name == local.name || m.peer_urls.iter().any(|u| local.peer_urls.contains(u)));
    let Some(me) = me else {
        return Ok(MemberPlan::NotAMember);
    };
    let others: Vec<&Member> = members.iter().filter(|m| m.id != me.id).collect();
    if others.is_empty() {
        return Ok(MemberPlan::OnlyMember);
    }
    let voters_after: Vec<&&Member> = others.iter().filter(|m| !m.is_learner).collect();
    let answering = |m: &Member| m.client_urls.iter().any(|u| healthy.contains(u));
    let healthy_voters = voters_after.iter().filter(|m| answering(m)).count();
    let quorum = voters_after.len() / 2 + 1;
    if voters_after.is_empty() || healthy_voters < quorum {
        return Err(format!(
            "removing {} would leave {} voting member(s), of which {healthy_voters} answer; a quorum needs {quorum}",
            me.label(),
            voters_after.len()
        ));
    }
    let through = others
        .iter()
        .filter(|m| answering(m))
        .flat_map(|m| {
            m.client_urls
                .iter()
                .filter(|u| healthy.contains(u))
                .cloned()
        })
        .collect();
    Ok(MemberPlan::Remove {
        me: me.clone(),
        through,
    })
}

/// Options of a reset.
#[derive(Debug, Clone)]
pub struct Options {
    /// Remove nothing; print what would be removed.
    pub dry_run: bool,
    /// Go on when the etcd member cannot be removed safely.
    pub force: bool,
    /// Keep the certificate directory.
    pub keep_pki: bool,
    /// etcd client URLs to start from instead of etcd.yaml's.
    pub etcd_endpoints: Vec<String>,
    /// The systemctl program.
    pub systemctl: String,
    /// How long etcd calls may retry.
    pub timeout: Duration,
}

/// An etcd client as `etcd/healthcheck-client`, verified with `etcd/ca.crt`.
fn etcd_client(
    settings: &Settings,
    paths: &Paths,
    endpoints: Vec<String>,
    budget: Duration,
) -> Result<EtcdClient> {
    let dir = paths.pki_dir(&settings.cluster.certificates_dir);
    let read = |name: &str| -> Result<Vec<u8>> {
        let p = dir.join(name);
        crate::host::fs::read_optional(&p)?.ok_or_else(|| {
            Error::Failed(format!(
                "{}: missing; it is needed to reach etcd and remove this member",
                p.display()
            ))
        })
    };
    let ca = read("etcd/ca.crt")?;
    let cert = read("etcd/healthcheck-client.crt")?;
    let key = String::from_utf8(read("etcd/healthcheck-client.key")?)
        .map_err(|_| Error::Failed("etcd/healthcheck-client.key is not PEM text".into()))?;
    Ok(EtcdClient::new(endpoints, &ca, &cert, &Secret::new(key), budget)?.with_label("reset"))
}

/// Phase 1: this node's etcd member. Returns whether the etcd data
/// directory may be deleted.
fn remove_member(
    settings: &Settings,
    paths: &Paths,
    local: &LocalEtcd,
    opts: &Options,
) -> Result<bool> {
    let refuse = |why: String| -> Result<bool> {
        if opts.dry_run {
            crate::outln!(
                "[reset] would stop here{}: {why}",
                if opts.force {
                    " (but --force goes on)"
                } else {
                    " (without --force)"
                }
            );
            return Ok(false);
        }
        if opts.force {
            log::warn!(target: "reset", "{why}; going on because of --force (the member stays in the etcd cluster: remove it with etcdctl member remove)");
            Ok(!opts.dry_run)
        } else {
            Err(Error::Failed(format!(
                "{why}; nothing was removed. Bring the other members up, or use --force to reset anyway"
            )))
        }
    };
    let endpoints = if opts.etcd_endpoints.is_empty() {
        local.client_urls.clone()
    } else {
        opts.etcd_endpoints.clone()
    };
    let mut client = match etcd_client(settings, paths, endpoints, opts.timeout) {
        Ok(c) => c,
        Err(e) => return refuse(format!("cannot reach etcd: {e}")),
    };
    let members = match client.member_list() {
        Ok(m) => m,
        Err(e) => return refuse(format!("cannot list the etcd members: {e}")),
    };
    let probe = Duration::from_secs(5).min(opts.timeout);
    let healthy: Vec<String> = members
        .iter()
        .filter(|m| m.name != local.name)
        .flat_map(|m| m.client_urls.iter())
        .filter(|u| client.answers_status(u, probe))
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    match plan(local, &members, &healthy) {
        Err(why) => refuse(format!("refusing to remove this node's etcd member: {why}")),
        Ok(MemberPlan::NotAMember) => {
            crate::outln!(
                "[reset] etcd: no member named {} or with peer URL {} (removed already)",
                local.name,
                local.peer_urls.join(",")
            );
            Ok(!opts.dry_run)
        }
        Ok(MemberPlan::OnlyMember) => {
            crate::outln!(
                "[reset] etcd: {} is the cluster's only member; not removing it (the cluster ends with this node)",
                local.name
            );
            Ok(!opts.dry_run)
        }
        Ok(MemberPlan::Remove { me, through }) => {
            if opts.dry_run {
                crate::outln!(
                    "[reset] would remove etcd member {} through {}",
                    me.label(),
                    through.join(",")
                );
                return Ok(false);
            }
            client.set_endpoints(through.clone());
            client.remove_member(me.id)?;
            let after = client.member_list()?;
            if after.iter().any(|m| m.id == me.id) {
                return Err(Error::Failed(format!(
                    "reset: etcd member {} is still listed after member remove",
                    me.label()
                )));
            }
            crate::outln!(
                "[reset] removed etcd member {} through {}; {} member(s) remain",
                me.label(),
                through.join(","),
                after.len()
            );
            Ok(true)
        }
    }
}

/// Removes `path` (a file, symlink or directory tree) without crossing
/// into another filesystem; returns the mount points left behind. An entry
/// that vanishes meanwhile counts as removed: the etcd this reset just took
/// out of its cluster may still be running (stopping the kubelet does not stop
/// its containers) and delete files of its own data directory.
fn remove_tree(path: &Path, dev: u64) -> std::io::Result<Vec<PathBuf>> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if gone(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return match std::fs::remove_file(path) {
            Err(e) if !gone(&e) => Err(e),
            _ => Ok(Vec::new()),
        };
    }
    if meta.dev() != dev {
        return Ok(vec![path.to_path_buf()]);
    }
    // a writer inside may add an entry after the listing: list again, a few times
    for _ in 0..3 {
        let entries = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) if gone(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut left = Vec::new();
        for e in entries {
            match e {
                Ok(e) => left.extend(remove_tree(&e.path(), dev)?),
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if !left.is_empty() {
            return Ok(left);
        }
        match std::fs::remove_dir(path) {
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => continue,
            Err(e) if !gone(&e) => return Err(e),
            _ => return Ok(Vec::new()),
        }
    }
    std::fs::remove_dir(path).map(|()| Vec::new())
}

/// What cleanup removed (or would remove), and what it left.
#[derive(Debug, Default)]
struct Cleanup {
    removed: Vec<PathBuf>,
    left: Vec<PathBuf>,
}

impl Cleanup {
    fn path(&mut self, root: &Path, p: &Path, dry_run: bool) -> Result<()> {
        // a symlinked directory on the way could lead outside the root; a
        // symlink at `p` itself is removed as a link (never followed)
        if let Some(parent) = p.parent() {
            crate::host::fs::check_no_symlinks(root, parent)?;
        }
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return Ok(());
        };
        if dry_run {
            self.removed.push(p.to_path_buf());
            return Ok(());
        }
        let parent_dev = p
            .parent()
            .and_then(|d| std::fs::metadata(d).ok())
            .map_or(meta.dev(), |m| m.dev());
        let left = remove_tree(p, parent_dev)
            .map_err(|e| Error::Failed(format!("removing {}: {e}", p.display())))?;
        if left.is_empty() {
            self.removed.push(p.to_path_buf());
        } else {
            self.left.extend(left);
        }
        Ok(())
    }

    /// The contents of `dir` (kubeadm's `CleanDir`): the directory stays.
    fn contents(&mut self, root: &Path, dir: &Path, dry_run: bool) -> Result<()> {
        if let Err(e) = crate::host::fs::check_no_symlinks(root, dir) {
            log::warn!(target: "reset", "{e}; leaving {} as it is (clean it by hand)", dir.display());
            self.left.push(dir.to_path_buf());
            return Ok(());
        }
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for e in entries {
            self.path(root, &e, dry_run)?;
        }
        Ok(())
    }
}

/// Runs a reset (see the module doc) and prints what was removed.
pub fn reset(settings: &Settings, paths: &Paths, opts: &Options) -> Result<()> {
    let manifest = paths.manifests_dir().join("etcd.yaml");
    let mut data_dir = None;
    let mut node_name = settings.node.name.clone();
    match crate::host::fs::read_optional(&manifest)? {
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let local = local_etcd(&text)
                .map_err(|e| Error::Failed(format!("{}: {e}", manifest.display())))?;
            node_name = local.name.clone();
            if remove_member(settings, paths, &local, opts)? || opts.dry_run {
                data_dir = Some(paths.host(&local.data_dir));
            }
        }
        None => {
            crate::outln!(
                "[reset] no {}: no local etcd member on this node",
                manifest.display()
            );
            if let crate::config::Etcd::Local { data_dir: d, .. } = &settings.cluster.etcd {
                // kubeadm's getEtcdDataDir falls back to the configured directory
                data_dir = Some(paths.host(d));
            }
        }
    }
    if opts.dry_run {
        crate::outln!("[reset] would stop kubelet.service");
    } else if let Err(e) = crate::host::systemd::Systemctl::with_program(&opts.systemctl)
        .stop(crate::kubelet::KUBELET_UNIT)
    {
        log::warn!(target: "reset", "the kubelet could not be stopped ({e}); make sure it is stopped");
    } else {
        crate::outln!("[reset] stopped kubelet.service");
    }
    let root = paths.root();
    let mut c = Cleanup::default();
    c.contents(root, &paths.manifests_dir(), opts.dry_run)?;
    if let Some(d) = &data_dir {
        c.contents(root, d, opts.dry_run)?;
    }
    c.contents(root, &paths.kubelet_dir(), opts.dry_run)?;
    if !opts.keep_pki {
        c.contents(
            root,
            &paths.pki_dir(&settings.cluster.certificates_dir),
            opts.dry_run,
        )?;
    }
    for f in [
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "bootstrap-kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ] {
        c.path(root, &paths.kubernetes_dir().join(f), opts.dry_run)?;
    }
    for f in ["status.json", "renew-status.json", "done"] {
        c.path(root, &paths.state_dir().join(f), opts.dry_run)?;
    }
    let verb = if opts.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for p in &c.removed {
        crate::outln!("[reset] {verb} {}", p.display());
    }
    for p in &c.left {
        crate::outln!(
            "[reset] left {} (a mount point or a symlinked directory; remove it by hand)",
            p.display()
        );
    }
    if opts.keep_pki {
        crate::outln!(
            "[reset] kept {} (--keep-pki)",
            paths.pki_dir(&settings.cluster.certificates_dir).display()
        );
    }
    crate::outln!(
        "[reset] not touched, as with kubeadm: containers, CNI configuration (/etc/cni/net.d), iptables/IPVS rules, \
         $HOME/.kube/config; the Node object stays in the cluster (kubectl delete node {node_name})"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: u64, name: &str, learner: bool) -> Member {
        Member {
            id,
            name: name.into(),
            peer_urls: vec![format!("https://{name}:2380")],
            client_urls: vec![format!("https://{name}:2379")],
            is_learner: learner,
        }
    }

    fn local(name: &str) -> LocalEtcd {
        LocalEtcd {
            name: name.into(),
            client_urls: vec![format!("https://{name}:2379")],
            peer_urls: vec![format!("https://{name}:2380")],
            data_dir: "/var/lib/etcd".into(),
        }
    }

    #[test]
    fn remove_tree_counts_entries_deleted_meanwhile_as_removed() {
        let base = std::env::temp_dir().join(format!("kubeboot-rmtree-{}", std::process::id()));
        let dir = base.join("member");
        std::fs::create_dir_all(dir.join("wal")).unwrap();
        let names: Vec<PathBuf> = (0..2000)
            .map(|i| dir.join("wal").join(format!("{i:05}.wal")))
            .collect();
        for n in &names {
            std::fs::write(n, b"x").unwrap();
        }
        let dev = std::fs::metadata(&base).unwrap().dev();
        // another process (etcd) deletes the same files, from the other end
        let other = names.clone();
        let t = std::thread::spawn(move || {
            for n in other.iter().rev() {
                let _ = std::fs::remove_file(n);
            }
        });
        let left = remove_tree(&dir, dev);
        t.join().unwrap();
        assert_eq!(left.unwrap(), Vec::<PathBuf>::new());
        assert!(!dir.exists());
        // a path that is already gone is removed
        assert_eq!(remove_tree(&dir, dev).unwrap(), Vec::<PathBuf>::new());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn quorum_rules() {
        let three = [m(1, "a", false), m(2, "b", false), m(3, "c", false)];
        let up = |names: &[&str]| {
            names
                .iter()
                .map(|n| format!("https://{n}:2379"))
                .collect::<Vec<_>>()
        };
        // 3 voters, both others up: remove through them
        match plan(&local("c"), &three, &up(&["a", "b"])).unwrap() {
            MemberPlan::Remove { me, through } => {
                assert_eq!(me.id, 3);
                assert_eq!(through, up(&["a", "b"]));
            }
            other => panic!("{other:?}"),
        }
        // 2 voters left, only 1 answers: quorum of 2 needs 2
        let e = plan(&local("c"), &three, &up(&["a"])).unwrap_err();
        assert!(
            e.contains("2 voting member(s), of which 1 answer; a quorum needs 2"),
            "{e}"
        );
        // 2 members: the other must answer
        let two = [m(1, "a", false), m(2, "b", false)];
        assert!(plan(&local("b"), &two, &up(&["a"])).is_ok());
        assert!(plan(&local("b"), &two, &[]).is_err());
        // only a learner would remain: no voter left
        let with_learner = [m(1, "a", true), m(2, "b", false)];
        assert!(plan(&local("b"), &with_learner, &up(&["a"])).is_err());
        // the only member, or not a member at all
        assert_eq!(
            plan(&local("a"), &[m(1, "a", false)], &[]).unwrap(),
            MemberPlan::OnlyMember
        );
        assert_eq!(
            plan(&local("z"), &three, &[]).unwrap(),
            MemberPlan::NotAMember
        );
        // found by peer URL when the name differs
        let mut renamed = local("x");
        renamed.peer_urls = vec!["https://c:2380".into()];
        assert!(matches!(
            plan(&renamed, &three, &up(&["a", "b"])).unwrap(),
            MemberPlan::Remove { .. }
        ));
    }

    #[test]
    fn reads_the_etcd_manifest() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\nspec:\n  containers:\n  - name: etcd\n    command:\n    - etcd\n    - --name=cp-1\n    - --advertise-client-urls=https://10.0.0.1:2379\n    - --initial-advertise-peer-urls=https://10.0.0.1:2380\n    - --data-dir=/var/lib/etcd\n  volumes:\n  - name: etcd-data\n    hostPath:\n      path: /data/etcd\n      type: DirectoryOrCreate\n";
        let l = local_etcd(text).unwrap();
        assert_eq!(l.name, "cp-1");
        assert_eq!(l.client_urls, ["https://10.0.0.1:2379"]);
        assert_eq!(l.data_dir, "/data/etcd");
        assert!(local_etcd("kind: Pod\n").is_err());
    }
}
