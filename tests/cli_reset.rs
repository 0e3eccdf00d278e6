//! `kubeboot reset` on nodes without a local etcd member (no etcd needed):
//! a worker, and a control plane whose etcd.yaml is gone (external etcd,
//! or a reset interrupted after the manifests were removed), with
//! `--dry-run` and `--keep-pki`. The stacked-etcd case with a real
//! three-member cluster is `tests/etcd_reset.rs`.

mod cli_support;

use std::path::{Path, PathBuf};

use cli_support::{files_under, kubeboot, recording_systemctl, render_config, text, tmpdir};

fn files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir, &[])
}

fn put(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

fn reset(root: &Path, systemctl: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "reset",
        "--root",
        root.to_str().unwrap(),
        "--systemctl",
        systemctl.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    kubeboot(&args)
}

#[test]
fn a_worker_is_reset_and_a_dry_run_changes_nothing() {
    let dir = tmpdir("reset", "worker");
    let root = render_config(
        &dir,
        "apiVersion: kubeboot.dev/v1alpha1\nrole: worker\nserver: 127.0.0.1:6443\ntoken: abcdef.0123456789abcdef\ncaCertHash: sha256:0000000000000000000000000000000000000000000000000000000000000000\nnode:\n  name: w-1\n",
    );
    // what the join and the kubelet leave behind
    put(&root, "etc/kubernetes/kubelet.conf", "apiVersion: v1\n");
    put(&root, "etc/kubernetes/pki/ca.crt", "CA\n");
    put(
        &root,
        "var/lib/kubelet/pki/kubelet-client-current.pem",
        "x\n",
    );
    put(&root, "var/lib/kubeboot/status.json", "{}\n");
    put(&root, "var/lib/kubeboot/done", "t\n");
    // not kubeboot's: stays
    put(&root, "etc/cni/net.d/10-flannel.conflist", "{}\n");
    put(
        &root,
        "etc/kubeboot/config.yaml",
        "apiVersion: kubeboot.dev/v1alpha1\nrole: worker\nserver: 127.0.0.1:6443\ntoken: abcdef.0123456789abcdef\ncaCertHash: sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
    );
    let (script, log) = recording_systemctl(&dir);
    let before = files(&root);

    let o = reset(&root, &script, &["--dry-run"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("[reset] would stop kubelet.service"), "{out}");
    assert!(
        out.contains(&format!(
            "[reset] would remove {}",
            root.join("var/lib/kubeboot/done").display()
        )),
        "{out}"
    );
    assert_eq!(files(&root), before, "a dry run changed files");
    assert!(!log.exists(), "a dry run ran systemctl");

    let o = reset(&root, &script, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("no local etcd member"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "stop kubelet.service\n"
    );
    assert_eq!(
        files(&root),
        [
            PathBuf::from("etc/cni/net.d/10-flannel.conflist"),
            PathBuf::from("etc/kubeboot/config.yaml"),
            // the one-run-at-a-time lock reset itself holds
            PathBuf::from("var/lib/kubeboot/lock"),
        ]
    );
    for gone in before.iter().filter(|p| {
        !p.starts_with("etc/cni")
            && !p.starts_with("etc/kubeboot")
            && !p.ends_with("var/lib/kubeboot/lock")
    }) {
        let shown = root.join(gone);
        // files directly in a cleaned directory are listed one by one;
        // deeper ones under their top directory
        let listed = out.lines().any(|l| {
            l.strip_prefix("[reset] removed ")
                .is_some_and(|p| shown.starts_with(p))
        });
        assert!(listed, "{} not reported:\n{out}", gone.display());
    }
    // the directories stay, as kubeadm's CleanDir leaves them
    assert!(root.join("var/lib/kubelet").is_dir() && root.join("etc/kubernetes/pki").is_dir());
    // a second reset finds nothing more to do
    let o = reset(&root, &script, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        !text(&o.stdout).contains("[reset] removed "),
        "{}",
        text(&o.stdout)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keep_pki_keeps_the_certificates_and_the_configured_etcd_dir_is_emptied() {
    let dir = tmpdir("reset", "keep-pki");
    let root = render_config(
        &dir,
        "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode:\n  name: cp-1\n  advertiseAddress: 127.0.0.1\n",
    );
    // etcd.yaml gone (external etcd, or an earlier interrupted reset): no
    // member to remove, and the configured data directory is emptied, as
    // kubeadm's getEtcdDataDir falls back to it
    std::fs::remove_file(root.join("etc/kubernetes/manifests/etcd.yaml")).unwrap();
    put(&root, "var/lib/etcd/member/snap/db", "data\n");
    let pki_before: Vec<PathBuf> = files(&root)
        .into_iter()
        .filter(|p| p.starts_with("etc/kubernetes/pki"))
        .collect();
    assert!(pki_before.len() > 20, "{pki_before:?}");
    let (script, _) = recording_systemctl(&dir);
    let o = reset(&root, &script, &["--keep-pki"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("(--keep-pki)"), "{out}");
    let left: Vec<PathBuf> = files(&root)
        .into_iter()
        .filter(|p| !p.ends_with("var/lib/kubeboot/lock"))
        .collect();
    assert_eq!(left, pki_before);
    assert!(
        out.contains(&format!(
            "[reset] removed {}",
            root.join("var/lib/etcd/member").display()
        )),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn symlinks_are_removed_as_links_and_never_followed() {
    let dir = tmpdir("reset", "symlinks");
    let root = dir.join("root");
    let outside = dir.join("outside");
    put(&outside, "precious", "keep me\n");
    put(&outside, "dir/also-precious", "keep me too\n");
    // a link inside a cleaned directory, to a file outside the root
    put(
        &root,
        "etc/kubernetes/manifests/kube-apiserver.yaml",
        "kind: Pod\n",
    );
    std::os::unix::fs::symlink(
        outside.join("precious"),
        root.join("etc/kubernetes/manifests/link.yaml"),
    )
    .unwrap();
    // a cleaned directory that is itself a symlink to a directory outside
    std::fs::create_dir_all(root.join("var/lib")).unwrap();
    std::os::unix::fs::symlink(outside.join("dir"), root.join("var/lib/kubelet")).unwrap();
    let (script, _) = recording_systemctl(&dir);
    let o = reset(&root, &script, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(!root.join("etc/kubernetes/manifests/link.yaml").exists());
    assert!(
        !root
            .join("etc/kubernetes/manifests/kube-apiserver.yaml")
            .exists()
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("precious")).unwrap(),
        "keep me\n"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("dir/also-precious")).unwrap(),
        "keep me too\n"
    );
    assert!(
        out.contains(&format!(
            "[reset] left {}",
            root.join("var/lib/kubelet").display()
        )),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
