//! The control-plane kubeconfigs under `/etc/kubernetes` (kubeadm's
//! `kubeconfig` phase): admin.conf, super-admin.conf (init only),
//! kubelet.conf (init only), controller-manager.conf and scheduler.conf,
//! each with the cluster CA and a client certificate + key embedded, mode
//! 0600, with kubeadm's cluster/user/context names. Load-or-create: a valid
//! existing file is kept byte for byte.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SystemRandom;
use serde::Deserialize;
use time::OffsetDateTime;

use super::cert::{self, Eku, Sans};
use super::keys::Key;
use super::tree::{self, Ca, LeafSpec, Writer};
use super::{Action, Entry, PkiReport, SECRET_MODE};
use crate::config::{Mode, Settings};
use crate::error::{Error, Result};
use crate::host::Paths;
use crate::host::fs::Sync;
use crate::secret::Secret;

/// Which API server URL a kubeconfig points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// The control-plane endpoint (or the local endpoint when none is set).
    ControlPlane,
    /// This node's advertise address and bind port.
    Local,
    /// The kubelet's: [`Server::Local`] when kubeadm's
    /// `ControlPlaneKubeletLocalMode` is on (1.33+ by default), else
    /// [`Server::ControlPlane`] (kubeadm's `kubeconfig/kubelet` phase,
    /// `cmd/kubeadm/app/phases/kubeconfig/kubeconfig.go`).
    Kubelet,
}

/// One kubeconfig file of the table.
#[derive(Debug, Clone, Copy)]
pub struct KubeconfigRow {
    /// File name under `/etc/kubernetes`.
    pub file: &'static str,
    /// User name = client certificate CN; `None` = `system:node:<node name>`.
    pub user: Option<&'static str>,
    /// Client certificate O.
    pub org: Option<&'static str>,
    /// Server URL.
    pub server: Server,
    /// Written by `init` only (not on a control-plane join).
    pub init_only: bool,
    /// Its client certificate is kubeadm's to renew (listed by `certs
    /// check-expiration`); false for kubelet.conf, which the kubelet rotates.
    pub renewed: bool,
}

/// kubeadm's kubeconfig files, in its sub-phase order.
pub const KUBECONFIGS: &[KubeconfigRow] = &[
    KubeconfigRow {
        file: "admin.conf",
        user: Some("kubernetes-admin"),
        org: Some("kubeadm:cluster-admins"),
        server: Server::ControlPlane,
        init_only: false,
        renewed: true,
    },
    KubeconfigRow {
        file: "super-admin.conf",
        user: Some("kubernetes-super-admin"),
        org: Some("system:masters"),
        server: Server::ControlPlane,
        init_only: true,
        renewed: true,
    },
    KubeconfigRow {
        file: "kubelet.conf",
        user: None,
        org: Some("system:nodes"),
        server: Server::Kubelet,
        init_only: true,
        renewed: false,
    },
    KubeconfigRow {
        file: "controller-manager.conf",
        user: Some("system:kube-controller-manager"),
        org: None,
        server: Server::Local,
        init_only: false,
        renewed: true,
    },
    KubeconfigRow {
        file: "scheduler.conf",
        user: Some("system:kube-scheduler"),
        org: None,
        server: Server::Local,
        init_only: false,
        renewed: true,
    },
];

/// The rows that apply to this node's mode (none on a worker).
pub fn rows(settings: &Settings) -> impl Iterator<Item = &'static KubeconfigRow> + '_ {
    KUBECONFIGS.iter().filter(move |r| match settings.mode {
        Mode::Init => true,
        Mode::JoinControlPlane => !r.init_only,
        Mode::JoinWorker => false,
    })
}

/// The user name (and client certificate CN) of `row` on this node.
pub fn user_name(row: &KubeconfigRow, settings: &Settings) -> String {
    match row.user {
        Some(u) => u.to_string(),
        None => format!("system:node:{}", settings.node.name),
    }
}

/// The API server URL of `row` on this node.
pub fn server_url(row: &KubeconfigRow, settings: &Settings) -> String {
    match row.server {
        Server::ControlPlane => settings.control_plane_endpoint(),
        Server::Local => settings.local_endpoint(),
        Server::Kubelet if crate::kubelet::control_plane_kubelet_local_mode(settings) => {
            settings.local_endpoint()
        }
        Server::Kubelet => settings.control_plane_endpoint(),
    }
    .url()
}

/// Renders a kubeconfig as client-go's `clientcmd` writes it (keys sorted,
/// data embedded, context `<user>@<cluster>`).
pub fn render(
    cluster: &str,
    server: &str,
    user: &str,
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> String {
    let auth = format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        B64.encode(cert_pem),
        B64.encode(key_pem)
    );
    render_with_auth(cluster, server, user, ca_pem, &auth)
}

/// `bootstrap-kubelet.conf` as `kubeadm join` writes it after token
/// discovery: cluster `kubernetes`, user `tls-bootstrap-token-user`, token auth.
/// The result holds the token secret: write it 0600 and never log it.
pub fn render_bootstrap(
    server: &str,
    ca_pem: &[u8],
    token: &crate::config::BootstrapToken,
) -> String {
    let auth = format!("    token: {}\n", token.expose());
    render_with_auth(
        "kubernetes",
        server,
        "tls-bootstrap-token-user",
        ca_pem,
        &auth,
    )
}

fn render_with_auth(cluster: &str, server: &str, user: &str, ca_pem: &[u8], auth: &str) -> String {
    let context = format!("{user}@{cluster}");
    format!(
        "apiVersion: v1\n\
         clusters:\n\
         - cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: {cluster}\n\
         contexts:\n\
         - context:\n    cluster: {cluster}\n    user: {user}\n  name: {context}\n\
         current-context: {context}\n\
         kind: Config\n\
         preferences: {{}}\n\
         users:\n\
         - name: {user}\n  user:\n{auth}",
        ca = B64.encode(ca_pem),
        cluster = yaml_str(cluster),
        user = yaml_str(user),
        context = yaml_str(&context),
    )
}

/// A name as a YAML scalar on one line, quoted as kubeboot's emitter
/// quotes a mapping value (`system:node:x` stays plain; `@x`, `123`, `yes`,
/// `a: b` are quoted).
fn yaml_str(s: &str) -> String {
    crate::yaml::inline_scalar(s)
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: Option<T>,
}

#[derive(Deserialize)]
struct KcCluster {
    server: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    ca_data: Option<String>,
}

#[derive(Deserialize)]
struct KcContext {
    cluster: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize)]
struct KcUser {
    #[serde(rename = "client-certificate-data")]
    cert_data: Option<String>,
    #[serde(rename = "client-key-data")]
    key_data: Option<String>,
    #[serde(rename = "client-certificate")]
    cert_file: Option<String>,
    #[serde(rename = "client-key")]
    key_file: Option<String>,
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<Named<KcCluster>>,
    #[serde(default)]
    contexts: Vec<Named<KcContext>>,
    #[serde(default)]
    users: Vec<Named<KcUser>>,
    #[serde(rename = "current-context", default)]
    current_context: String,
}

/// The current context's cluster and user of a kubeconfig.
struct Current<'a> {
    cluster_name: &'a str,
    cluster: &'a KcCluster,
    user_name: &'a str,
    user: &'a KcUser,
}

fn current(kc: &Kubeconfig) -> Result<Current<'_>, String> {
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == kc.current_context)
        .and_then(|c| c.value.as_ref())
        .ok_or_else(|| format!("current-context {:?} is not defined", kc.current_context))?;
    let cluster_name = ctx.cluster.as_deref().unwrap_or_default();
    let user_name = ctx.user.as_deref().unwrap_or_default();
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.value.as_ref())
        .ok_or_else(|| format!("cluster {cluster_name:?} is not defined"))?;
    let user = kc
        .users
        .iter()
        .find(|u| u.name == user_name)
        .and_then(|u| u.value.as_ref())
        .ok_or_else(|| format!("user {user_name:?} is not defined"))?;
    Ok(Current {
        cluster_name,
        cluster,
        user_name,
        user,
    })
}

fn decode(field: &str, data: &str) -> Result<Vec<u8>, String> {
    B64.decode(data.trim())
        .map_err(|_| format!("{field} is not valid base64"))
}

/// The current user's client certificate (PEM) and key (PEM), embedded or
/// referenced by file (resolved under the root, as kubelet-finalize writes).
fn client_material(u: &KcUser, paths: &Paths) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read = |f: &str| {
        std::fs::read(paths.host(f))
            .map_err(|e| format!("reading {}: {e}", paths.host(f).display()))
    };
    let cert = match (&u.cert_data, &u.cert_file) {
        (Some(d), _) => decode("client-certificate-data", d)?,
        (None, Some(f)) => read(f)?,
        (None, None) => return Err("the user has no client certificate".into()),
    };
    let key = match (&u.key_data, &u.key_file) {
        (Some(d), _) => decode("client-key-data", d)?,
        (None, Some(f)) => read(f)?,
        (None, None) => return Err("the user has no client key".into()),
    };
    Ok((cert, key))
}

/// The DER client certificate of a kubeconfig's current user (for
/// `check-expiration`). The error says what is wrong, without the path.
pub fn client_cert_der(kubeconfig: &[u8], paths: &Paths) -> Result<Vec<u8>, String> {
    let kc: Kubeconfig =
        serde_norway::from_slice(kubeconfig).map_err(|e| format!("not a kubeconfig: {e}"))?;
    let cur = current(&kc)?;
    let (cert_pem, _) = client_material(cur.user, paths)?;
    cert::der_from_pem(&cert_pem, "client certificate").map_err(|e| e.to_string())
}

/// The current user's client certificate and private key (both PEM) of a
/// kubeconfig, embedded or referenced by file (under the root), for a
/// client that authenticates as that user (etcd-join reads `admin.conf`).
/// The error says what is wrong, never the key.
pub fn client_cert_and_key(kubeconfig: &[u8], paths: &Paths) -> Result<(Vec<u8>, Secret), String> {
    let kc: Kubeconfig =
        serde_norway::from_slice(kubeconfig).map_err(|e| format!("not a kubeconfig: {e}"))?;
    let cur = current(&kc)?;
    let (cert_pem, key_pem) = client_material(cur.user, paths)?;
    let key =
        String::from_utf8(key_pem).map_err(|_| "the client key is not PEM text".to_string())?;
    Ok((cert_pem, Secret::new(key)))
}

/// The current context's API server URL and cluster CA (PEM, from
/// `certificate-authority-data`) of a kubeconfig, for a client that talks
/// to the server it names (`kubeboot token` reads `admin.conf`).
pub fn server_and_ca(kubeconfig: &[u8]) -> Result<(String, Vec<u8>), String> {
    let kc: Kubeconfig =
        serde_norway::from_slice(kubeconfig).map_err(|e| format!("not a kubeconfig: {e}"))?;
    let cur = current(&kc)?;
    let server = cur
        .cluster
        .server
        .clone()
        .ok_or("the current cluster has no server")?;
    let ca = decode(
        "certificate-authority-data",
        cur.cluster
            .ca_data
            .as_deref()
            .ok_or("the current cluster has no certificate-authority-data")?,
    )?;
    Ok((server, ca))
}

/// The current cluster's server URL of a kubeconfig.
pub fn server(kubeconfig: &[u8]) -> Result<String, String> {
    let kc: Kubeconfig =
        serde_norway::from_slice(kubeconfig).map_err(|e| format!("not a kubeconfig: {e}"))?;
    current(&kc)?
        .cluster
        .server
        .clone()
        .ok_or_else(|| "its current cluster has no server".to_string())
}

struct Want<'a> {
    cluster: &'a str,
    server: String,
    user: String,
    spec: LeafSpec,
}

/// Why an existing kubeconfig does not fit, or its client certificate facts.
fn check(
    bytes: &[u8],
    want: &Want<'_>,
    ca: &Ca,
    now: OffsetDateTime,
    paths: &Paths,
) -> Result<cert::CertInfo, String> {
    let kc: Kubeconfig =
        serde_norway::from_slice(bytes).map_err(|e| format!("it does not parse: {e}"))?;
    let cur = current(&kc)?;
    if cur.cluster_name != want.cluster || cur.user_name != want.user {
        return Err(format!(
            "its current context uses cluster {:?} and user {:?}, expected {:?} and {:?}",
            cur.cluster_name, cur.user_name, want.cluster, want.user
        ));
    }
    if cur.cluster.server.as_deref() != Some(want.server.as_str()) {
        return Err(format!(
            "its server is {:?}, expected {:?}",
            cur.cluster.server, want.server
        ));
    }
    let ca_pem = decode(
        "certificate-authority-data",
        cur.cluster.ca_data.as_deref().unwrap_or_default(),
    )?;
    match cert::der_from_pem(&ca_pem, "") {
        Ok(der) if der == ca.der => {}
        _ => {
            return Err(format!(
                "its certificate-authority-data is not the CA in {}",
                ca.path.display()
            ));
        }
    }
    let (cert_pem, key_pem) = client_material(cur.user, paths)?;
    let key = Key::from_pem(&key_pem, "client key")
        .map_err(|_| "its client key does not parse".to_string())?;
    let der = cert::der_from_pem(&cert_pem, "")
        .map_err(|_| "its client certificate does not parse".to_string())?;
    want.spec.check(&der, &key, ca, now)
}

/// Load-or-create the control-plane kubeconfigs (kubeadm's `kubeconfig`
/// phase) from the CA in the certificate directory, which the certs phase
/// must have made. A valid existing file (right CA, server, names, a client
/// certificate that verifies, is not expired and matches its key) is kept
/// untouched; a missing or invalid one is written (0600). Without `ca.key`
/// (external CA) every kubeconfig must already exist and be valid.
/// A worker gets an empty report.
pub fn ensure_kubeconfigs(
    settings: &Settings,
    paths: &Paths,
    now: OffsetDateTime,
    sync: Sync,
) -> Result<PkiReport> {
    ensure_kubeconfigs_only(settings, paths, now, sync, &|_| true)
}

/// [`ensure_kubeconfigs`] for the files `want` names by kubeadm's
/// `kubeconfig/<name>` sub-phase names (`admin`, `super-admin`, `kubelet`,
/// `controller-manager`, `scheduler`: the file name without `.conf`).
pub fn ensure_kubeconfigs_only(
    settings: &Settings,
    paths: &Paths,
    now: OffsetDateTime,
    sync: Sync,
    want: &dyn Fn(&str) -> bool,
) -> Result<PkiReport> {
    ensure_kubeconfigs_with(settings, paths, now, sync, want, None)
}

/// [`ensure_kubeconfigs_only`] with the cluster CA the certs phase of the
/// same run holds (`ca`: loaded, checked or created there, its signing key
/// ready), so that the CA is not read, parsed and loaded again; `None`
/// reads it from the certificate directory.
pub(crate) fn ensure_kubeconfigs_with(
    settings: &Settings,
    paths: &Paths,
    now: OffsetDateTime,
    sync: Sync,
    want: &dyn Fn(&str) -> bool,
    ca: Option<&Ca>,
) -> Result<PkiReport> {
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let mut report = PkiReport::default();
    let mut w = Writer {
        paths,
        sync,
        wrote: false,
    };
    if settings.mode == Mode::JoinWorker {
        return Ok(report);
    }
    let loaded;
    let ca = match ca {
        Some(ca) => ca,
        None => {
            loaded = tree::load_ca(settings, paths, &w, "ca")?;
            &loaded
        }
    };
    let ca_pem = cert::to_pem(&ca.der);
    let rng = SystemRandom::new();
    for row in rows(settings).filter(|r| want(r.file.trim_end_matches(".conf"))) {
        let path: PathBuf = paths.kubernetes_dir().join(row.file);
        let want = Want {
            cluster: &settings.cluster.name,
            server: server_url(row, settings),
            user: user_name(row, settings),
            spec: LeafSpec {
                cn: user_name(row, settings),
                org: row.org.map(str::to_string),
                usages: vec![Eku::ClientAuth],
                sans: Sans::default(),
            },
        };
        let problem = match w.read(&path)? {
            Some(bytes) => match check(&bytes, &want, ca, now, paths) {
                Ok(info) => {
                    report
                        .entries
                        .push(entry(row, &path, Action::Kept, &info, ca.key.is_none()));
                    continue;
                }
                Err(why) => Some(why),
            },
            None => None,
        };
        let Some(signer) = ca.signer() else {
            let why = problem.unwrap_or_else(|| "it is missing".into());
            return Err(Error::Invalid(format!(
                "{}: {why}; the cluster CA has no key at hand (external CA mode), so this kubeconfig must be \
                 supplied and valid",
                path.display()
            )));
        };
        let key = Key::generate(settings.cluster.key_algorithm)?;
        let req = want.spec.request(settings, now)?;
        let der = cert::issue(&req, &key, Some(signer), &rng)?;
        let text = render(
            want.cluster,
            &want.server,
            &want.user,
            ca_pem.as_bytes(),
            cert::to_pem(&der).as_bytes(),
            key.to_pem().as_bytes(),
        );
        w.write(&path, text.as_bytes(), SECRET_MODE)?;
        let info = cert::issued_info(&req, &key);
        let action = match problem {
            None => Action::Created,
            Some(why) => Action::Regenerated(why),
        };
        report.entries.push(entry(row, &path, action, &info, false));
    }
    w.finish(&paths.kubernetes_dir())?;
    Ok(report)
}

fn entry(
    row: &KubeconfigRow,
    path: &Path,
    action: Action,
    info: &cert::CertInfo,
    external: bool,
) -> Entry {
    Entry {
        phase: "kubeconfig",
        name: row.file.to_string(),
        paths: vec![path.to_path_buf()],
        action,
        algorithm: info.algorithm.clone(),
        not_after: Some(info.not_after),
        externally_managed: external,
    }
}

/// Rewrites a kubeconfig so its (first) user takes the client certificate
/// and key from `file` (one PEM holding both, as the kubelet writes
/// `kubelet-client-current.pem`) instead of embedded data. Other fields are
/// kept. Errors say what is missing, never the key material.
pub fn reference_client_file(kubeconfig: &[u8], file: &str) -> Result<String, String> {
    let mut v: serde_norway::Value =
        serde_norway::from_slice(kubeconfig).map_err(|e| format!("not a kubeconfig: {e}"))?;
    let user = v
        .get_mut("users")
        .and_then(|u| u.as_sequence_mut())
        .and_then(|u| u.first_mut())
        .and_then(|u| u.get_mut("user"))
        .and_then(|u| u.as_mapping_mut())
        .ok_or("no user entry")?;
    for k in ["client-certificate-data", "client-key-data"] {
        user.remove(k);
    }
    user.insert("client-certificate".into(), file.into());
    user.insert("client-key".into(), file.into());
    crate::yaml::to_string(&v).map_err(|e| format!("encoding: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reference_client_file_replaces_embedded_data_only() {
        let text = render(
            "k",
            "https://10.0.0.1:6443",
            "system:node:a",
            b"CA",
            b"CERT",
            b"KEY",
        );
        let out = reference_client_file(
            text.as_bytes(),
            "/var/lib/kubelet/pki/kubelet-client-current.pem",
        )
        .unwrap();
        assert!(
            !out.contains("client-certificate-data") && !out.contains("client-key-data"),
            "{out}"
        );
        assert!(
            out.contains("client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem"),
            "{out}"
        );
        assert!(
            out.contains("certificate-authority-data") && out.contains("https://10.0.0.1:6443"),
            "{out}"
        );
        assert!(
            reference_client_file(b"apiVersion: v1\n", "/x")
                .unwrap_err()
                .contains("no user")
        );
    }

    use super::*;

    #[test]
    fn yaml_scalars() {
        assert_eq!(
            yaml_str("kubernetes-admin@kubernetes"),
            "kubernetes-admin@kubernetes"
        );
        assert_eq!(yaml_str("system:node:cp-1"), "system:node:cp-1");
        assert_eq!(yaml_str("@x"), "'@x'");
        assert_eq!(yaml_str("123"), "'123'");
        assert_eq!(yaml_str("yes"), "'yes'");
        assert_eq!(yaml_str("a: b"), "'a: b'");
        assert_eq!(yaml_str("a\nb"), "\"a\\nb\"");
    }
}
