//! User-supplied CAs made by real openssl (RSA PKCS#1 and PKCS#8, ECDSA SEC1
//! and PKCS#8) sign leaves that openssl verifies; inline CA material is
//! written or refused; external-CA mode keeps leaves and refuses to invent.

#[allow(unused_imports)]
use crate::pki_support;

use std::path::Path;

use kubeboot::config::CaMaterial;
use kubeboot::config::examples::pki_control_plane as control_plane_settings;
use kubeboot::host::Paths;
use kubeboot::host::fs::Sync;
use kubeboot::pki::{self, Action};
use kubeboot::secret::Secret;
use pki_support::*;

/// Makes `ca.key` + `ca.crt` (CN kubernetes) in `dir` with openssl.
fn openssl_ca(dir: &Path, keygen: &[&str], to_pkcs8: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let key = dir.join("ca.key");
    let k = key.to_str().unwrap();
    let mut args: Vec<&str> = keygen
        .iter()
        .map(|a| if *a == "OUT" { k } else { a })
        .collect();
    if !keygen.contains(&"OUT") {
        args.extend(["-out", k]);
    }
    openssl(&args);
    if to_pkcs8 {
        let tmp = dir.join("ca.key.p8");
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            k,
            "-out",
            tmp.to_str().unwrap(),
        ]);
        std::fs::rename(&tmp, &key).unwrap();
    }
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        k,
        "-subj",
        "/CN=kubernetes",
        "-days",
        "3650",
        "-out",
        dir.join("ca.crt").to_str().unwrap(),
    ]);
}

fn verify(ca: &Path, leaf: &Path) {
    let out = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        leaf.to_str().unwrap(),
    ]);
    assert!(out.contains(": OK"), "{out}");
}

#[test]
fn openssl_made_cas_of_every_format_sign_verifiable_leaves() {
    let cases: &[(&str, &[&str], bool, &str, &str)] = &[
        (
            "rsa-pkcs1",
            &["genrsa", "-traditional", "-out", "OUT", "2048"],
            false,
            "BEGIN RSA PRIVATE KEY",
            "RSA 2048",
        ),
        (
            "rsa-pkcs8",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:3072",
            ],
            false,
            "BEGIN PRIVATE KEY",
            "RSA 3072",
        ),
        (
            "ec-sec1",
            &["ecparam", "-name", "prime256v1", "-genkey"],
            false,
            "BEGIN EC PARAMETERS",
            "ECDSA P-256",
        ),
        (
            "ec-pkcs8",
            &["ecparam", "-name", "prime256v1", "-genkey"],
            true,
            "BEGIN PRIVATE KEY",
            "ECDSA P-256",
        ),
        (
            "ec384-sec1",
            &["ecparam", "-name", "secp384r1", "-genkey", "-noout"],
            false,
            "BEGIN EC PRIVATE KEY",
            "ECDSA P-384",
        ),
    ];
    for (name, keygen, p8, marker, alg) in cases {
        let root = tmp(&format!("supplied-{name}"));
        let dir = pki(&root);
        openssl_ca(&dir, keygen, *p8);
        let key_text = std::fs::read_to_string(dir.join("ca.key")).unwrap();
        assert!(
            key_text.contains(marker),
            "{name}: first line {:?}",
            key_text.lines().next()
        );
        let ca_before = std::fs::read(dir.join("ca.crt")).unwrap();
        let (certs, kcs) = render(&control_plane_settings(), &root);
        let ca = certs.get("ca").unwrap();
        assert_eq!(ca.action, Action::Kept, "{name}");
        assert_eq!(ca.algorithm, *alg, "{name}");
        assert!(!ca.externally_managed);
        assert_eq!(
            ca_before,
            std::fs::read(dir.join("ca.crt")).unwrap(),
            "{name}: CA changed"
        );
        for leaf in ["apiserver.crt", "apiserver-kubelet-client.crt"] {
            verify(&dir.join("ca.crt"), &dir.join(leaf));
        }
        // kubeconfig client certs are signed by it too
        let admin = root.join("etc/kubernetes/admin.conf");
        let cert = kubeconfig_field(&admin, "users", "user", "client-certificate-data");
        let cert_file = root.join("admin.crt");
        std::fs::write(&cert_file, cert).unwrap();
        verify(&dir.join("ca.crt"), &cert_file);
        assert_eq!(kcs.get("admin.conf").unwrap().action, Action::Created);
        if alg.starts_with("RSA") {
            let text = openssl(&[
                "x509",
                "-in",
                dir.join("apiserver.crt").to_str().unwrap(),
                "-noout",
                "-text",
            ]);
            assert!(text.contains("sha256WithRSAEncryption"), "{text}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}

#[test]
fn inline_ca_material_is_written_then_kept_and_conflicts_are_refused() {
    let made = tmp("inline-made");
    openssl_ca(
        &made,
        &["genrsa", "-traditional", "-out", "OUT", "2048"],
        false,
    );
    let cert_pem = std::fs::read_to_string(made.join("ca.crt")).unwrap();
    let key_pem = std::fs::read_to_string(made.join("ca.key")).unwrap();
    let mut s = control_plane_settings();
    s.supplied_cas.ca = CaMaterial {
        cert_pem: Some(cert_pem.clone()),
        key_pem: Some(Secret::new(key_pem.clone())),
    };

    let root = tmp("inline");
    let (certs, _) = render(&s, &root);
    assert_eq!(certs.get("ca").unwrap().action, Action::Supplied);
    assert!(
        certs
            .get("ca")
            .unwrap()
            .to_string()
            .starts_with("[certs] wrote supplied ca (RSA 2048")
    );
    assert_eq!(
        std::fs::read_to_string(pki(&root).join("ca.crt")).unwrap(),
        cert_pem
    );
    assert_eq!(
        std::fs::read_to_string(pki(&root).join("ca.key")).unwrap(),
        key_pem
    );
    verify(
        &pki(&root).join("ca.crt"),
        &pki(&root).join("apiserver.crt"),
    );
    let before = snapshot(&root);
    let (certs, _) = render(&s, &root);
    assert_eq!(certs.get("ca").unwrap().action, Action::Kept);
    assert_eq!(before, snapshot(&root));

    // another CA supplied over the existing one is refused, naming the file
    let other = tmp("inline-other");
    openssl_ca(
        &other,
        &["ecparam", "-name", "prime256v1", "-genkey"],
        false,
    );
    let mut s2 = control_plane_settings();
    s2.supplied_cas.ca.cert_pem = Some(std::fs::read_to_string(other.join("ca.crt")).unwrap());
    let now = time::OffsetDateTime::now_utc();
    let e = pki::ensure_tree(&s2, &Paths::new(&root), now, Sync::Deferred).unwrap_err();
    assert!(
        e.to_string().contains("ca.crt") && e.to_string().contains("different CA"),
        "{e}"
    );
    assert_eq!(e.exit_code(), 2);
    assert_eq!(before, snapshot(&root));

    // a key that does not match the supplied certificate
    let mut s3 = control_plane_settings();
    s3.supplied_cas.etcd_ca = CaMaterial {
        cert_pem: Some(cert_pem.clone()),
        key_pem: Some(Secret::new(
            std::fs::read_to_string(other.join("ca.key")).unwrap(),
        )),
    };
    let e = pki::ensure_tree(
        &s3,
        &Paths::new(tmp("inline-mismatch")),
        now,
        Sync::Deferred,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("etcd-ca") && e.contains("does not match"), "{e}");
    assert!(!e.contains("PRIVATE KEY"), "{e}");

    // garbage supplied PEM
    let mut s4 = control_plane_settings();
    s4.supplied_cas.front_proxy_ca.cert_pem =
        Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into());
    let e = pki::ensure_tree(&s4, &Paths::new(tmp("inline-garbage")), now, Sync::Deferred)
        .unwrap_err()
        .to_string();
    assert!(e.contains("front-proxy-ca"), "{e}");

    // a certificate only (no key) → external CA mode for that CA: leaves must exist
    let mut s5 = control_plane_settings();
    s5.supplied_cas.ca.cert_pem = Some(cert_pem);
    let e = pki::ensure_tree(
        &s5,
        &Paths::new(tmp("inline-certonly")),
        now,
        Sync::Deferred,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("apiserver.crt") && e.contains("external CA"),
        "{e}"
    );

    for d in [
        "inline-made",
        "inline",
        "inline-other",
        "inline-mismatch",
        "inline-garbage",
        "inline-certonly",
    ] {
        let _ = std::fs::remove_dir_all(tmp_path(d));
    }
}

fn tmp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kubeboot-pki-{name}-{}", std::process::id()))
}

#[test]
fn external_ca_mode_keeps_valid_leaves_and_refuses_to_invent() {
    let root = tmp("external");
    let s = control_plane_settings();
    render(&s, &root);
    let dir = pki(&root);
    std::fs::remove_file(dir.join("ca.key")).unwrap();
    let before = snapshot(&root);
    let (certs, kcs) = render(&s, &root);
    assert_eq!(before, snapshot(&root));
    let ca = certs.get("ca").unwrap();
    assert!(ca.externally_managed && ca.action == Action::Kept, "{ca}");
    assert!(ca.to_string().contains("externally managed"));
    assert!(certs.get("apiserver").unwrap().action == Action::Kept);
    assert!(kcs.entries.iter().all(|e| e.action == Action::Kept));

    let now = time::OffsetDateTime::now_utc();
    let paths = Paths::new(&root);
    std::fs::remove_file(dir.join("apiserver.crt")).unwrap();
    let e = pki::ensure_tree(&s, &paths, now, Sync::Deferred)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("apiserver.crt") && e.contains("external CA"),
        "{e}"
    );
    std::fs::write(
        dir.join("apiserver.crt"),
        &before
            .iter()
            .find(|(p, _)| p.ends_with("apiserver.crt"))
            .unwrap()
            .1,
    )
    .unwrap();
    pki::ensure_tree(&s, &paths, now, Sync::Deferred).unwrap();

    // a leaf that is no certificate at all: refused with the parser's
    // reason, and left as it is
    std::fs::write(dir.join("apiserver.crt"), b"not a certificate\n").unwrap();
    let e = pki::ensure_tree(&s, &paths, now, Sync::Deferred)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("apiserver.crt") && e.contains("no PEM CERTIFICATE block"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(dir.join("apiserver.crt")).unwrap(),
        b"not a certificate\n"
    );

    // a leaf from another CA is refused in external mode
    let other = tmp("external-other");
    render(&s, &other);
    std::fs::copy(pki(&other).join("apiserver.crt"), dir.join("apiserver.crt")).unwrap();
    std::fs::copy(pki(&other).join("apiserver.key"), dir.join("apiserver.key")).unwrap();
    let e = pki::ensure_tree(&s, &paths, now, Sync::Deferred)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("apiserver.crt") && e.contains("not signed by the CA"),
        "{e}"
    );

    // kubeconfigs too
    std::fs::remove_file(root.join("etc/kubernetes/scheduler.conf")).unwrap();
    let e = kubeboot::pki::kubeconfig::ensure_kubeconfigs(&s, &paths, now, Sync::Deferred)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("scheduler.conf") && e.contains("external CA"),
        "{e}"
    );
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}
