//! Bounded, jittered waits: the kubelet's healthz, the control-plane
//! components' health endpoints, and the kubelet's TLS bootstrap.
//!
//! Every wait has a budget (which may be "no deadline": a joining node
//! waits for its cluster as long as it takes) and logs a progress line at
//! least every 30 s while it waits; a bounded wait ends with an error that
//! says what was polled, how often, and the last answer.

use std::time::Duration;

use super::NodeRun;
use crate::error::Error;
use crate::manifests;
use crate::net::http::{self, Method, Retry, Step};

/// Polls `url` with GET until it answers 200, within `budget`.
pub fn until_ok(what: &str, agent: &ureq::Agent, url: &str, budget: Duration) -> Result<(), Error> {
    until_ok_by(what, url, budget, |t| {
        http::send(agent, Method::Get, url, &[], t)
    })
}

/// [`until_ok`] with `get` making each attempt at `url`.
fn until_ok_by(
    what: &str,
    url: &str,
    budget: Duration,
    mut get: impl FnMut(Duration) -> Step<http::Reply>,
) -> Result<(), Error> {
    let r = http::retry_watched(
        &Retry::within(budget),
        &format!("{what} health at {url}"),
        |t| match get(t) {
            Step::Done(reply) if reply.status == 200 => Step::Done(()),
            Step::Done(reply) => Step::Again(http::status_text(reply.status)),
            Step::Again(w) => Step::Again(w),
            // TLS errors may be a component still starting with a fresh cert.
            Step::Stop(w) => Step::Again(w),
        },
        |_| "HTTP 200".into(),
    );
    match r {
        Ok(((), tried)) => {
            log::info!(target: "wait", "{what} is healthy ({url}, {tried})");
            Ok(())
        }
        Err(http::GaveUp::Budget(t) | http::GaveUp::Permanent(t)) => Err(Error::Failed(format!(
            "{what} did not become healthy within {} s ({url}: {t})",
            budget.as_secs()
        ))),
    }
}

/// Removes `bootstrap-kubelet.conf` (it holds the token) once the kubelet
/// has its own credentials. Already gone (a rerun) is fine; any other error
/// fails the phase, so the token never silently stays on disk.
fn remove_bootstrap_conf(path: &std::path::Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Failed(format!("removing {}: {e}", path.display()))),
    }
}

fn port_arg(args: &[crate::config::Arg], default: u16) -> u16 {
    manifests::arg_value(args, "secure-port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(default)
}

/// `wait-control-plane`: kubelet healthz, then the API server's `/livez`
/// (verified with the cluster CA), the controller manager's `/healthz` and
/// the scheduler's `/livez` (their self-signed serving certs are not
/// verified, as kubeadm does).
pub fn control_plane(r: &mut NodeRun<'_>) -> Result<(), Error> {
    let budget = r.input.budgets.health;
    until_ok(
        "kubelet",
        &http::agent(None),
        &r.input.budgets.kubelet_healthz,
        r.input.budgets.kubelet,
    )?;
    let local = r.input.settings.local_endpoint().url();
    let api = format!("{local}/livez");
    // When this node's API server is the control-plane endpoint (no load
    // balancer in front), it is polled as admin.conf's user: the TLS
    // connection that answers stays open in the client the API phases
    // share, instead of one handshake here and another for them. The
    // server is verified with the cluster CA either way.
    let admin = if local == r.input.settings.control_plane_endpoint().url() {
        r.client(super::Client::Admin).ok()
    } else {
        None
    };
    match admin {
        Some(kube) => until_ok_by("kube-apiserver", &api, budget, |t| {
            kube.attempt(Method::Get, "/livez", t)
        })?,
        None => {
            let ca = crate::host::fs::read_required(&r.input.pki_file("ca.crt"), "")?;
            let roots = http::certs_from_pem(&ca);
            until_ok("kube-apiserver", &http::agent(Some(roots)), &api, budget)?;
        }
    }
    let unverified = http::agent_unverified();
    let kcm = port_arg(
        &r.input.settings.cluster.controller_manager.extra_args,
        10257,
    );
    until_ok(
        "kube-controller-manager",
        &unverified,
        &format!("https://127.0.0.1:{kcm}/healthz"),
        budget,
    )?;
    let sched = port_arg(&r.input.settings.cluster.scheduler.extra_args, 10259);
    until_ok(
        "kube-scheduler",
        &unverified,
        &format!("https://127.0.0.1:{sched}/livez"),
        budget,
    )
}

/// `kubelet-wait-bootstrap`: kubelet healthz, then `/etc/kubernetes/kubelet.conf`
/// (written by the kubelet once its client certificate is issued), then
/// remove `bootstrap-kubelet.conf` (it holds the token).
pub fn tls_bootstrap(r: &mut NodeRun<'_>) -> Result<(), Error> {
    until_ok(
        "kubelet",
        &http::agent(None),
        &r.input.budgets.kubelet_healthz,
        r.input.budgets.kubelet,
    )?;
    let kubelet_conf = r.input.paths.kubelet_conf();
    let budget = r.input.budgets.tls_bootstrap;
    // Polled once a second, as kubeadm does.
    let poll = Retry {
        budget,
        attempt_timeout: Duration::from_secs(1),
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(1),
    };
    let waited = http::retry_watched(
        &poll,
        &format!("the kubelet's TLS bootstrap ({})", kubelet_conf.display()),
        |_| {
            if kubelet_conf.exists() {
                Step::Done(())
            } else {
                Step::Again("not written yet: the kubelet's CSR is not approved and signed yet (`journalctl -u kubelet`)".into())
            }
        },
        |_| "written".into(),
    );
    if waited.is_err() {
        return Err(Error::Failed(format!(
            "the kubelet did not finish its TLS bootstrap within {} s: {} was not written (is the CSR approved? `journalctl -u kubelet`)",
            budget.as_secs(),
            kubelet_conf.display()
        )));
    }
    log::info!(target: "kubelet-wait-bootstrap", "TLS bootstrap done: {} written by the kubelet", kubelet_conf.display());
    remove_bootstrap_conf(&r.input.paths.bootstrap_kubelet_conf())?;
    // kubeadm's join (kubelet-wait-bootstrap, `cmd/kubeadm/app/cmd/phases/join/kubelet.go`,
    // v1.32/v1.33): with NodeLocalCRISocket off, the Node gets the
    // `kubeadm.alpha.kubernetes.io/cri-socket` annotation, written as the
    // node itself (kubelet.conf). From 1.34 the socket is in instance-config.yaml.
    if !crate::kubelet::node_local_cri_socket(&r.input.settings) {
        let s = &r.input.settings;
        let kube =
            crate::api::kube::Kube::from_kubelet_conf(s, &r.input.paths, r.input.budgets.health)?;
        let (name, sock) = (&s.node.name, &s.node.cri_socket);
        let set = kube.annotate_cri_socket(name, sock, r.input.budgets.health)?;
        log::info!(target: "kubelet-wait-bootstrap", "Node {name}: annotation {}={sock} ({})", crate::api::objects::ANNOTATION_CRI_SOCKET, if set { "set" } else { "already present" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A health endpoint on 127.0.0.1 that answers every request with
    /// `status`, counting the requests.
    fn endpoint(status: &'static str) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/healthz", l.local_addr().unwrap());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = hits.clone();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut buf = [0u8; 2048];
                let _ = c.read(&mut buf);
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = "not ok";
                let _ = write!(
                    c,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, hits)
    }

    #[test]
    fn an_endpoint_answering_500_is_not_healthy() {
        let (url, hits) = endpoint("500 Internal Server Error");
        let e = until_ok("kubelet", &http::agent(None), &url, Duration::from_secs(2)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("did not become healthy within 2 s"), "{msg}");
        assert!(msg.contains("500"), "{msg}");
        assert!(
            hits.load(std::sync::atomic::Ordering::SeqCst) >= 2,
            "it polled again"
        );
    }

    /// A refusal is not health either: the API server answers an anonymous
    /// `/livez` 401 or 403 when anonymous access is off (kubeadm polls
    /// until 200, `cmd/kubeadm/app/util/apiclient/wait.go`).
    #[test]
    fn an_endpoint_answering_403_is_not_healthy() {
        let (url, hits) = endpoint("403 Forbidden");
        let e = until_ok(
            "kube-apiserver",
            &http::agent(None),
            &url,
            Duration::from_secs(2),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("did not become healthy within 2 s") && e.contains("403"),
            "{e}"
        );
        assert!(
            hits.load(std::sync::atomic::Ordering::SeqCst) >= 2,
            "it polled again"
        );
    }

    #[test]
    fn an_endpoint_answering_200_is_healthy() {
        let (url, hits) = endpoint("200 OK");
        until_ok("kubelet", &http::agent(None), &url, Duration::from_secs(30)).unwrap();
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn the_bootstrap_kubeconfig_is_removed_or_the_phase_fails() {
        let dir = std::env::temp_dir().join(format!("kubeboot-wait-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("bootstrap-kubelet.conf");
        std::fs::write(&conf, "token").unwrap();
        remove_bootstrap_conf(&conf).unwrap();
        assert!(!conf.exists());
        // a rerun: already gone is fine
        remove_bootstrap_conf(&conf).unwrap();
        // anything else (here: a directory in its place) fails, naming the file
        std::fs::create_dir(&conf).unwrap();
        let e = remove_bootstrap_conf(&conf).unwrap_err().to_string();
        assert!(e.contains("bootstrap-kubelet.conf"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
