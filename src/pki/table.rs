//! The certificate tree as data: one row per certificate, in kubeadm's
//! `GetDefaultCertList()` order (`cmd/kubeadm/app/phases/certs/certlist.go`).
//! Adding a certificate is adding a row; generation, validation and
//! `check-expiration` all read this table.

use super::cert::{Eku, Sans};
use crate::config::{Etcd, Settings};

/// How a row's subject common name is made.
#[derive(Debug, Clone, Copy)]
pub enum Cn {
    /// A fixed name.
    Fixed(&'static str),
    /// The node name (etcd server/peer).
    NodeName,
}

/// Which SAN rule a row uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanRule {
    /// No SANs (client certificates).
    None,
    /// A CA: its CN as the only DNS SAN.
    Ca,
    /// `GetAPIServerAltNames`.
    ApiServer,
    /// `GetEtcdAltNames` + `etcd.local.serverCertSANs`.
    EtcdServer,
    /// `GetEtcdPeerAltNames` + `etcd.local.peerCertSANs`.
    EtcdPeer,
}

/// One certificate of the tree.
#[derive(Debug, Clone, Copy)]
pub struct CertRow {
    /// kubeadm's name (`certs` sub-phase and `check-expiration` row).
    pub name: &'static str,
    /// File stem under the certificate directory (`etcd/server`).
    pub stem: &'static str,
    /// Name of the signing CA row; `None` for a self-signed CA.
    pub ca: Option<&'static str>,
    /// Subject CN.
    pub cn: Cn,
    /// Subject O.
    pub org: Option<&'static str>,
    /// Extended key usages (empty for CAs).
    pub usages: &'static [Eku],
    /// SAN rule.
    pub sans: SanRule,
    /// Belongs to stacked etcd (left out with external etcd).
    pub etcd: bool,
}

impl CertRow {
    /// True for a CA row.
    pub fn is_ca(&self) -> bool {
        self.ca.is_none()
    }
}

const SERVER: &[Eku] = &[Eku::ServerAuth];
const CLIENT: &[Eku] = &[Eku::ClientAuth];
const BOTH: &[Eku] = &[Eku::ServerAuth, Eku::ClientAuth];

const fn ca(name: &'static str, stem: &'static str, cn: &'static str, etcd: bool) -> CertRow {
    CertRow {
        name,
        stem,
        ca: None,
        cn: Cn::Fixed(cn),
        org: None,
        usages: &[],
        sans: SanRule::Ca,
        etcd,
    }
}

const fn leaf(
    name: &'static str,
    stem: &'static str,
    ca: &'static str,
    cn: Cn,
    org: Option<&'static str>,
    usages: &'static [Eku],
    sans: SanRule,
) -> CertRow {
    CertRow {
        name,
        stem,
        ca: Some(ca),
        cn,
        org,
        usages,
        sans,
        etcd: matches!(ca.as_bytes(), b"etcd-ca"),
    }
}

/// kubeadm's certificate list. CAs come before the leaves they sign.
pub const CERTS: &[CertRow] = &[
    ca("ca", "ca", "kubernetes", false),
    leaf(
        "apiserver",
        "apiserver",
        "ca",
        Cn::Fixed("kube-apiserver"),
        None,
        SERVER,
        SanRule::ApiServer,
    ),
    leaf(
        "apiserver-kubelet-client",
        "apiserver-kubelet-client",
        "ca",
        Cn::Fixed("kube-apiserver-kubelet-client"),
        Some("kubeadm:cluster-admins"),
        CLIENT,
        SanRule::None,
    ),
    ca("front-proxy-ca", "front-proxy-ca", "front-proxy-ca", false),
    leaf(
        "front-proxy-client",
        "front-proxy-client",
        "front-proxy-ca",
        Cn::Fixed("front-proxy-client"),
        None,
        CLIENT,
        SanRule::None,
    ),
    ca("etcd-ca", "etcd/ca", "etcd-ca", true),
    leaf(
        "etcd-server",
        "etcd/server",
        "etcd-ca",
        Cn::NodeName,
        None,
        BOTH,
        SanRule::EtcdServer,
    ),
    leaf(
        "etcd-peer",
        "etcd/peer",
        "etcd-ca",
        Cn::NodeName,
        None,
        BOTH,
        SanRule::EtcdPeer,
    ),
    leaf(
        "etcd-healthcheck-client",
        "etcd/healthcheck-client",
        "etcd-ca",
        Cn::Fixed("kube-etcd-healthcheck-client"),
        None,
        CLIENT,
        SanRule::None,
    ),
    leaf(
        "apiserver-etcd-client",
        "apiserver-etcd-client",
        "etcd-ca",
        Cn::Fixed("kube-apiserver-etcd-client"),
        None,
        CLIENT,
        SanRule::None,
    ),
];

/// The rows that apply to `settings` (no etcd rows with external etcd).
pub fn rows(settings: &Settings) -> impl Iterator<Item = &'static CertRow> + '_ {
    let local = settings.cluster.etcd.is_local();
    CERTS.iter().filter(move |r| local || !r.etcd)
}

/// The row named `name`.
pub fn row(name: &str) -> Option<&'static CertRow> {
    CERTS.iter().find(|r| r.name == name)
}

/// The CN of `row` for this node.
pub fn common_name(row: &CertRow, settings: &Settings) -> String {
    match row.cn {
        Cn::Fixed(s) => s.to_string(),
        Cn::NodeName => settings.node.name.clone(),
    }
}

/// The SANs `row` needs for this node.
pub fn sans(row: &CertRow, settings: &Settings) -> Sans {
    let mut s = Sans::default();
    let node = &settings.node;
    match row.sans {
        SanRule::None => {}
        SanRule::Ca => s.add(&common_name(row, settings)),
        SanRule::ApiServer => {
            let domain = &settings.cluster.dns_domain;
            for d in [
                node.name.as_str(),
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                &format!("kubernetes.default.svc.{domain}"),
            ] {
                s.add(d);
            }
            if let Some(ip) = settings.api_server_service_ip() {
                s.add_ip(ip);
            }
            s.add_ip(node.advertise_address);
            if let Some(ep) = &settings.cluster.control_plane_endpoint {
                s.add(&ep.host);
            }
            for extra in &settings.cluster.cert_sans {
                s.add(extra);
            }
        }
        SanRule::EtcdServer | SanRule::EtcdPeer => {
            s.add(&node.name);
            s.add("localhost");
            s.add_ip(node.advertise_address);
            s.add("127.0.0.1");
            s.add("::1");
            if let Etcd::Local {
                server_cert_sans,
                peer_cert_sans,
                ..
            } = &settings.cluster.etcd
            {
                let extra = if row.sans == SanRule::EtcdServer {
                    server_cert_sans
                } else {
                    peer_cert_sans
                };
                for e in extra {
                    s.add(e);
                }
            }
        }
    }
    s
}
