//! The PXE config URL against loopback HTTP and HTTPS servers: a throwaway
//! CA and server certificate made with rcgen, TLS served with rustls;
//! sha256 pins that match and do not, untrusted CAs, http only when
//! pinned, bounded redirects and sizes.

mod net_support;

use std::sync::Arc;

use kubeboot::userdata::url::{ConfigUrl, ConfigUrlSource};
use kubeboot::userdata::{Fetch, Source, SourceError};
use net_support::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const CONFIG: &[u8] = b"apiVersion: kubeboot.dev/v1alpha1\nkind: NodeConfig\nrole: worker\n";

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A throwaway CA: its PEM and a rustls server config for 127.0.0.1 signed by it.
fn tls_server_config() -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    ca.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("kubeboot throwaway test CA {n}"),
    );
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![
            CertificateDer::from(cert.der().to_vec()),
            CertificateDer::from(ca_cert.der().to_vec()),
        ],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    (ca_cert.pem(), Arc::new(config))
}

fn write_ca(name: &str, pem: &str) -> std::path::PathBuf {
    let dir = tmpdir(name);
    let p = dir.join("ca.pem");
    std::fs::write(&p, pem).unwrap();
    p
}

fn fetch(
    url: &str,
    pin: Option<&str>,
    ca: Option<std::path::PathBuf>,
) -> Result<Fetch, SourceError> {
    ConfigUrlSource::with_retry(ConfigUrl::new(url, pin, ca).unwrap(), quick_retry()).fetch()
}

#[test]
fn https_with_the_given_ca_and_pins() {
    let (ca_pem, cfg) = tls_server_config();
    let server = Server::https(cfg, |req, _| {
        if req.path == "/node.yaml" {
            ok(CONFIG)
        } else {
            status(404)
        }
    });
    let ca = write_ca("url-ca", &ca_pem);
    let url = format!("https://127.0.0.1:{}/node.yaml", server.port);

    match fetch(&url, None, Some(ca.clone())) {
        Ok(Fetch::Found(b)) => assert_eq!(b, CONFIG),
        other => panic!("{other:?}"),
    }
    match fetch(&url, Some(&sha256_hex(CONFIG)), Some(ca.clone())) {
        Ok(Fetch::Found(b)) => assert_eq!(b, CONFIG),
        other => panic!("{other:?}"),
    }
    let wrong = sha256_hex(b"something else");
    let err = fetch(&url, Some(&wrong), Some(ca.clone())).unwrap_err();
    assert!(!err.retryable, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("does not match") && msg.contains(&wrong) && msg.contains(&sha256_hex(CONFIG)),
        "{msg}"
    );

    let missing = format!("https://127.0.0.1:{}/other.yaml", server.port);
    assert!(matches!(
        fetch(&missing, None, Some(ca.clone())),
        Ok(Fetch::Absent(_))
    ));
    let _ = std::fs::remove_dir_all(ca.parent().unwrap());
}

#[test]
fn https_with_an_untrusted_ca_is_rejected_before_any_request() {
    let (_, cfg) = tls_server_config();
    let server = Server::https(cfg, |_, _| ok(CONFIG));
    let url = format!("https://127.0.0.1:{}/node.yaml", server.port);
    // Another throwaway CA as the given trust root.
    let (other_ca, _) = tls_server_config();
    let ca = write_ca("url-other-ca", &other_ca);
    let err = fetch(&url, None, Some(ca.clone())).unwrap_err();
    println!("untrusted CA: {err}");
    assert!(!err.retryable && err.to_string().contains("TLS"), "{err}");
    // The system roots do not trust it either (or there are none here).
    let err = fetch(&url, Some(&sha256_hex(CONFIG)), None).unwrap_err();
    println!("system roots: {err}");
    assert!(!err.retryable, "{err}");
    assert!(
        server.requests().is_empty(),
        "no HTTP request went over an unverified connection"
    );
    let _ = std::fs::remove_dir_all(ca.parent().unwrap());
}

#[test]
fn plain_http_only_with_a_pin() {
    let server = Server::http(|_, _| ok(CONFIG));
    let url = format!("{}/node.yaml", server.base());
    let err = ConfigUrl::new(&url, None, None).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(server.requests().is_empty());
    match fetch(&url, Some(&sha256_hex(CONFIG)), None) {
        Ok(Fetch::Found(b)) => assert_eq!(b, CONFIG),
        other => panic!("{other:?}"),
    }
    let err = fetch(&url, Some(&"00".repeat(32)), None).unwrap_err();
    assert!(
        !err.retryable && err.to_string().contains("does not match"),
        "{err}"
    );
}

#[test]
fn redirects_are_followed_and_bounded() {
    let pin = sha256_hex(CONFIG);
    let server = Server::http(|req, _| match req.path.as_str() {
        "/a" => Reply::Respond(302, vec![("Location".into(), "/b".into())], vec![]),
        "/b" => Reply::Respond(301, vec![("Location".into(), "c".into())], vec![]),
        "/c" => ok(CONFIG),
        _ => Reply::Respond(307, vec![("Location".into(), "/loop".into())], vec![]),
    });
    match fetch(&format!("{}/a", server.base()), Some(&pin), None) {
        Ok(Fetch::Found(b)) => assert_eq!(b, CONFIG),
        other => panic!("{other:?}"),
    }
    let before = server.requests().len();
    let err = fetch(&format!("{}/loop", server.base()), Some(&pin), None).unwrap_err();
    assert!(
        !err.retryable && err.to_string().contains("more than 5 redirects"),
        "{err}"
    );
    assert_eq!(
        server.requests().len() - before,
        6,
        "the first request and 5 redirects"
    );
}

#[test]
fn https_never_redirects_to_unpinned_http() {
    let (ca_pem, cfg) = tls_server_config();
    let plain = Server::http(|_, _| ok(CONFIG));
    let target = format!("{}/node.yaml", plain.base());
    let server = Server::https(cfg, move |_, _| {
        Reply::Respond(302, vec![("Location".into(), target.clone())], vec![])
    });
    let ca = write_ca("url-downgrade", &ca_pem);
    let err = fetch(
        &format!("https://127.0.0.1:{}/x", server.port),
        None,
        Some(ca.clone()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("refusing redirect"), "{err}");
    assert!(plain.requests().is_empty());
    let _ = std::fs::remove_dir_all(ca.parent().unwrap());
}

#[test]
fn oversized_bodies_are_refused_and_server_errors_retried() {
    let big = vec![b'#'; 16 * 1024 * 1024 + 1];
    let server = Server::http(move |req, n| match req.path.as_str() {
        "/big" => ok(&big),
        _ if n == 0 => status(503),
        _ => ok(CONFIG),
    });
    let pin = sha256_hex(CONFIG);
    let err = ConfigUrlSource::with_retry(
        ConfigUrl::new(&format!("{}/big", server.base()), Some(&pin), None).unwrap(),
        quick_retry(),
    )
    .fetch()
    .unwrap_err();
    assert!(
        !err.retryable && err.to_string().contains("larger than 16 MiB"),
        "{err}"
    );

    let server = Server::http(move |_, n| if n == 0 { status(503) } else { ok(CONFIG) });
    let src = ConfigUrlSource::with_retry(
        ConfigUrl::new(&format!("{}/c", server.base()), Some(&pin), None).unwrap(),
        quick_retry(),
    );
    assert!(src.name().contains(&pin), "{}", src.name());
    assert!(matches!(src.fetch(), Ok(Fetch::Found(_))));
    assert_eq!(server.requests().len(), 2);
}
