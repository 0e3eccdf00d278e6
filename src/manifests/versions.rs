//! Every Kubernetes-version-dependent fact kubeboot renders, in one table.
//!
//! One row per supported minor. Anything that differs between minors
//! (image tags, probe endpoints, named probe ports, etcd 3.5 vs 3.6 flag
//! spellings, kubelet flags) is a column here and nowhere else; renderers
//! ask [`for_version`] and never compare version numbers themselves.
//!
//! Sources: kubeadm's `constants.go` (`SupportedEtcdVersion`, `PauseVersion`,
//! `CoreDNSVersion`), `manifests.go`/`local.go` probes, PR #126945 (scheduler
//! `/livez` + `/readyz`, 1.32), PR #132776 (named `probe-port`, 1.34),
//! `features.go` (`NodeLocalCRISocket` beta/on in 1.34).
//!
//! What each image tag was checked against (kubernetes/kubernetes
//! `cmd/kubeadm/app/constants/constants.go`; the etcd tag is per patch
//! release, since the etcd bumps are backported to the three newest
//! branches, so the row holds the newest tag seen):
//!
//! * **1.32** — all three confirmed in kubeadm's own file at commit
//!   00886ac01fec1c8432967e8bb597828f46a9ba8b, a release-1.32 state (its
//!   `SupportedEtcdVersion` ends at key 32, `32: "3.5.24-0"`;
//!   `PauseVersion = "3.10"`; `CoreDNSVersion = "v1.11.3"`). The same file's
//!   `DefaultEtcdVersion` still says `3.5.16-0`: earlier 1.32 patch
//!   releases defaulted to an older etcd.
//! * **1.33** — not found in kubeadm's own file: no stored release-1.33
//!   version of `constants.go` could be read. Seen only in a third-party copy
//!   of kubeadm's constants (`SupportedEtcdVersion` with
//!   `33: "3.5.24-0"`) and in third-party tables (`CoreDNS v1.12.0` for
//!   1.33, `pause 3.10` for 1.33). The 1.33.0 release had etcd `3.5.21-0`
//!   (a kubernetes etcd-bump guide shows `33: "3.5.21-0"`). Unconfirmed.
//! * **1.34** — not found in kubeadm's own file either. Seen only in the
//!   same third-party copy (`34: "3.6.5-0"`; 1.34.0 shipped `3.6.4-0`), a
//!   third-party test fixture quoting kubeadm's `CoreDNSVersion = "v1.12.1"`
//!   for 1.34, and `PauseVersion = "3.10.1"` quoted for kubeadm 1.35 (3.10.1
//!   for 1.34 itself is unconfirmed). Override with `etcd.local.imageTag` /
//!   `dns.imageTag` if a mirror differs.

/// The version-dependent facts for one Kubernetes minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionFacts {
    /// Minor version (`34` for v1.34.x).
    pub minor: u32,
    /// Default etcd image tag.
    pub etcd_tag: &'static str,
    /// pause (sandbox) image tag.
    pub pause_tag: &'static str,
    /// CoreDNS image tag.
    pub coredns_tag: &'static str,
    /// kube-scheduler probes: `/livez` + `/readyz` (true) or `/healthz` only.
    pub scheduler_livez_readyz: bool,
    /// Probes use the named container port `probe-port` (1.34+).
    pub named_probe_port: bool,
    /// `NodeLocalCRISocket` is on by default: the CRI socket goes to
    /// `/var/lib/kubelet/instance-config.yaml`, not to the kubelet flags.
    pub node_local_cri_socket: bool,
    /// kubeadm passes `--pod-infra-container-image` to the kubelet.
    pub pod_infra_flag: bool,
    /// kubeadm's `ControlPlaneKubeletLocalMode` gate is on by default: a
    /// control-plane node's kubelet talks to its own API server (init's
    /// kubelet.conf, a control-plane join's TLS bootstrap) instead of the
    /// control-plane endpoint. Alpha and off in 1.31/1.32, beta and on from
    /// 1.33 (kubernetes/kubernetes PR #129956, `cmd/kubeadm/app/features/features.go`
    /// at v1.33.0; GA in 1.35).
    pub control_plane_kubelet_local_mode: bool,
    /// The kernel check of kubeadm's `SystemVerification`, from the
    /// k8s.io/system-validators release it vendors.
    pub kernel_rule: KernelRule,
}

/// How k8s.io/system-validators judges the kernel release
/// (`validators/types_unix.go` `KernelSpec.Versions`, `kernel_validator.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelRule {
    /// v1.9.x (Kubernetes 1.32, 1.33): 4.19 or newer, else an error.
    AtLeast419Error,
    /// v1.10.1 and later (Kubernetes 1.34, kubernetes PR #131919): the
    /// 5.4, 5.10 and 5.15 series or 6.x and newer, else only a warning.
    LtsListWarning,
}

/// The supported minors, oldest first.
pub const TABLE: &[VersionFacts] = &[
    VersionFacts {
        minor: 32,
        etcd_tag: "3.5.24-0",
        pause_tag: "3.10",
        coredns_tag: "v1.11.3",
        scheduler_livez_readyz: true,
        named_probe_port: false,
        node_local_cri_socket: false,
        pod_infra_flag: true,
        control_plane_kubelet_local_mode: false,
        kernel_rule: KernelRule::AtLeast419Error,
    },
    VersionFacts {
        minor: 33,
        etcd_tag: "3.5.24-0",
        pause_tag: "3.10",
        coredns_tag: "v1.12.0",
        scheduler_livez_readyz: true,
        named_probe_port: false,
        node_local_cri_socket: false,
        pod_infra_flag: true,
        control_plane_kubelet_local_mode: true,
        kernel_rule: KernelRule::AtLeast419Error,
    },
    VersionFacts {
        minor: 34,
        etcd_tag: "3.6.5-0",
        pause_tag: "3.10.1",
        coredns_tag: "v1.12.1",
        scheduler_livez_readyz: true,
        named_probe_port: true,
        node_local_cri_socket: true,
        pod_infra_flag: true,
        control_plane_kubelet_local_mode: true,
        kernel_rule: KernelRule::LtsListWarning,
    },
];

/// `(major, minor, patch)` of a `v1.x.y` version string: the config
/// parser's function, so both agree on what a version is.
pub use crate::config::resolve::parse_version as parse;

/// The row for a Kubernetes version, and a warning when the version is not
/// in the table (the nearest row is used, as kubeadm does for etcd).
pub fn for_version(version: &str) -> (&'static VersionFacts, Option<String>) {
    let newest = &TABLE[TABLE.len() - 1];
    let oldest = &TABLE[0];
    let Some((major, minor, _)) = parse(version) else {
        return (
            newest,
            Some(format!(
                "cannot parse Kubernetes version {version:?}; using the v1.{} defaults",
                newest.minor
            )),
        );
    };
    if let Some(row) = TABLE.iter().find(|r| major == 1 && r.minor == minor) {
        return (row, None);
    }
    let row = if major > 1 || minor > newest.minor {
        newest
    } else {
        oldest
    };
    (
        row,
        Some(format!(
            "Kubernetes {version} is outside the supported v1.{}-v1.{} range; using the v1.{} defaults",
            oldest.minor, newest.minor, row.minor
        )),
    )
}

/// The facts for a version, without the warning.
pub fn facts(version: &str) -> &'static VersionFacts {
    for_version(version).0
}

/// True when an etcd image tag is etcd 3.6 or newer (which renamed the
/// `--experimental-*` flags kubeadm sets).
pub fn etcd_is_36_or_newer(tag: &str) -> bool {
    let t = tag.strip_prefix('v').unwrap_or(tag);
    let mut it = t.split(['.', '-']);
    let major: u32 = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    let minor: u32 = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    (major, minor) >= (3, 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(parse("v1.34.1"), Some((1, 34, 1)));
        assert_eq!(parse("1.33.0-rc.1"), Some((1, 33, 0)));
        assert_eq!(parse("v1.x.0"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn table_is_sorted_and_contiguous() {
        for w in TABLE.windows(2) {
            assert_eq!(w[0].minor + 1, w[1].minor);
        }
        assert!(TABLE.len() >= 3);
    }

    #[test]
    fn known_rows_and_differences() {
        let (r32, w) = for_version("v1.32.9");
        assert!(w.is_none());
        assert!(!r32.named_probe_port && !etcd_is_36_or_newer(r32.etcd_tag));
        let r34 = facts("v1.34.0");
        assert!(
            r34.named_probe_port && r34.node_local_cri_socket && etcd_is_36_or_newer(r34.etcd_tag)
        );
        assert_eq!(facts("v1.33.2").minor, 33);
    }

    /// The image tags, as the module doc records them: 1.32 confirmed in
    /// kubeadm's constants.go (commit 00886ac0…), 1.33/1.34 from
    /// third-party copies only.
    #[test]
    fn image_tags_per_minor() {
        let tags: Vec<(u32, &str, &str, &str)> = TABLE
            .iter()
            .map(|r| (r.minor, r.etcd_tag, r.pause_tag, r.coredns_tag))
            .collect();
        assert_eq!(
            tags,
            [
                (32, "3.5.24-0", "3.10", "v1.11.3"),
                (33, "3.5.24-0", "3.10", "v1.12.0"),
                (34, "3.6.5-0", "3.10.1", "v1.12.1"),
            ]
        );
    }

    /// The major version decides before the minor: 2.x is newer than any
    /// row, 0.x older, whatever its minor.
    #[test]
    fn other_major_versions_use_the_nearest_end_of_the_table() {
        let newest = TABLE[TABLE.len() - 1].minor;
        let (r, w) = for_version("v2.0.0");
        assert_eq!(r.minor, newest);
        assert!(w.unwrap().contains("v2.0.0"));
        let (r, w) = for_version(&format!("v0.{newest}.0"));
        assert_eq!(r.minor, TABLE[0].minor);
        assert!(w.is_some());
    }

    #[test]
    fn out_of_range_uses_nearest_with_warning() {
        let (r, w) = for_version("v1.40.0");
        assert_eq!(r.minor, 34);
        assert!(w.unwrap().contains("v1.40.0"));
        let (r, w) = for_version("v1.20.0");
        assert_eq!(r.minor, 32);
        assert!(w.is_some());
        let (r, w) = for_version("latest");
        assert_eq!(r.minor, 34);
        assert!(w.unwrap().contains("cannot parse"));
    }

    #[test]
    fn etcd_tag_generation() {
        assert!(!etcd_is_36_or_newer("3.5.24-0"));
        assert!(etcd_is_36_or_newer("3.6.0-0"));
        assert!(etcd_is_36_or_newer("v3.7.1"));
        assert!(!etcd_is_36_or_newer("garbage"));
    }
}
