//! The certificate tree checked with real openssl: chains, subjects, key
//! usages, SANs, modes, the CA pin hash, reruns, regeneration of one leaf.

#[allow(unused_imports)]
use crate::pki_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use kubeboot::config::examples::{
    pki_control_plane as control_plane_settings, pki_worker as worker_settings,
};
use kubeboot::config::{Etcd, KeyAlgorithm};
use kubeboot::host::Paths;
use kubeboot::pki::{self, Action};
use pki_support::*;

struct Expect {
    stem: &'static str,
    ca: &'static str,
    subject: &'static [&'static str],
    eku: &'static str,
    purpose: &'static str,
    hosts: &'static [&'static str],
    ips: &'static [&'static str],
}

const LEAVES: &[Expect] = &[
    Expect {
        stem: "apiserver",
        ca: "ca",
        subject: &["CN = kube-apiserver"],
        eku: "TLS Web Server Authentication",
        purpose: "sslserver",
        hosts: &[
            "cp-1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "k8s.example.test",
            "api.example.test",
        ],
        ips: &["10.96.0.1", "10.0.0.10", "203.0.113.7"],
    },
    Expect {
        stem: "apiserver-kubelet-client",
        ca: "ca",
        subject: &[
            "O = kubeadm:cluster-admins",
            "CN = kube-apiserver-kubelet-client",
        ],
        eku: "TLS Web Client Authentication",
        purpose: "sslclient",
        hosts: &[],
        ips: &[],
    },
    Expect {
        stem: "front-proxy-client",
        ca: "front-proxy-ca",
        subject: &["CN = front-proxy-client"],
        eku: "TLS Web Client Authentication",
        purpose: "sslclient",
        hosts: &[],
        ips: &[],
    },
    Expect {
        stem: "etcd/server",
        ca: "etcd/ca",
        subject: &["CN = cp-1"],
        eku: "TLS Web Server Authentication, TLS Web Client Authentication",
        purpose: "sslserver",
        hosts: &["cp-1", "localhost", "etcd.example.test"],
        ips: &["10.0.0.10", "127.0.0.1", "::1"],
    },
    Expect {
        stem: "etcd/peer",
        ca: "etcd/ca",
        subject: &["CN = cp-1"],
        eku: "TLS Web Server Authentication, TLS Web Client Authentication",
        purpose: "sslclient",
        hosts: &["cp-1", "localhost"],
        ips: &["10.0.0.10", "127.0.0.1", "::1"],
    },
    Expect {
        stem: "etcd/healthcheck-client",
        ca: "etcd/ca",
        subject: &["CN = kube-etcd-healthcheck-client"],
        eku: "TLS Web Client Authentication",
        purpose: "sslclient",
        hosts: &[],
        ips: &[],
    },
    Expect {
        stem: "apiserver-etcd-client",
        ca: "etcd/ca",
        subject: &["CN = kube-apiserver-etcd-client"],
        eku: "TLS Web Client Authentication",
        purpose: "sslclient",
        hosts: &[],
        ips: &[],
    },
];

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn every_certificate_passes_openssl() {
    let root = tmp("openssl");
    let (certs, kcs) = render(&control_plane_settings(), &root);
    let dir = pki(&root);
    let names: Vec<_> = certs.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ca",
            "apiserver",
            "apiserver-kubelet-client",
            "front-proxy-ca",
            "front-proxy-client",
            "etcd-ca",
            "etcd-server",
            "etcd-peer",
            "etcd-healthcheck-client",
            "apiserver-etcd-client",
            "sa"
        ]
    );
    assert!(
        certs
            .entries
            .iter()
            .chain(&kcs.entries)
            .all(|e| e.action == Action::Created)
    );
    // the report's day is the notAfter day openssl reads from ca.crt
    let ca_crt = dir.join("ca.crt");
    let end = openssl(&[
        "x509",
        "-in",
        ca_crt.to_str().unwrap(),
        "-noout",
        "-enddate",
        "-dateopt",
        "iso_8601",
    ]);
    let day = end
        .trim()
        .strip_prefix("notAfter=")
        .unwrap()
        .get(..10)
        .unwrap();
    assert_eq!(
        certs.entries[0].to_string(),
        format!("[certs] wrote ca (ECDSA P-256, valid until {day})")
    );

    for (ca, cn) in [
        ("ca", "kubernetes"),
        ("front-proxy-ca", "front-proxy-ca"),
        ("etcd/ca", "etcd-ca"),
    ] {
        let crt = dir.join(format!("{ca}.crt"));
        let c = crt.to_str().unwrap();
        let text = openssl(&["x509", "-in", c, "-noout", "-text"]);
        assert!(text.contains("CA:TRUE"), "{ca}: {text}");
        assert!(
            text.contains("Digital Signature, Key Encipherment, Certificate Sign"),
            "{ca}: {text}"
        );
        assert!(
            text.contains(&format!("Subject: CN = {cn}")),
            "{ca}: {text}"
        );
        assert!(text.contains(&format!("DNS:{cn}")), "{ca}: {text}");
        assert!(text.contains("ASN1 OID: prime256v1"), "{ca}: {text}");
        assert!(!text.contains("Extended Key Usage"), "{ca}: {text}");
        // self-signed and valid on its own
        assert!(openssl(&["verify", "-CAfile", c, c]).contains(": OK"));
        // validity: 10 years (87600 h) from now, NotBefore backdated 5 minutes
        let dates = openssl(&["x509", "-in", c, "-noout", "-startdate", "-enddate"]);
        assert!(dates.contains("notBefore="), "{dates}");
        assert_eq!(mode(&crt), 0o644);
        assert_eq!(mode(&dir.join(format!("{ca}.key"))), 0o600);
        // the key's curve, read from its public half (never print the private key)
        let sh = format!(
            "openssl pkey -in {} -pubout | openssl pkey -pubin -noout -text",
            dir.join(format!("{ca}.key")).display()
        );
        let key = run(Command::new("sh").arg("-c").arg(sh));
        assert!(key.contains("ASN1 OID: prime256v1"), "{key}");
    }

    for e in LEAVES {
        let crt = dir.join(format!("{}.crt", e.stem));
        let c = crt.to_str().unwrap();
        let ca = dir.join(format!("{}.crt", e.ca));
        let out = openssl(&[
            "verify",
            "-purpose",
            e.purpose,
            "-CAfile",
            ca.to_str().unwrap(),
            c,
        ]);
        assert!(out.contains(": OK"), "{}: {out}", e.stem);
        // and not by another CA
        let other = if e.ca == "ca" { "etcd/ca" } else { "ca" };
        let bad = output(
            Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(dir.join(format!("{other}.crt")))
                .arg(c),
        );
        assert!(!bad.status.success(), "{} verified against {other}", e.stem);

        let text = openssl(&["x509", "-in", c, "-noout", "-text"]);
        let subject = openssl(&["x509", "-in", c, "-noout", "-subject"]);
        for s in e.subject {
            assert!(subject.contains(s), "{}: {subject}", e.stem);
        }
        assert!(text.contains("CA:FALSE"), "{}: {text}", e.stem);
        assert!(
            text.contains("Digital Signature, Key Encipherment\n"),
            "{}: {text}",
            e.stem
        );
        assert!(!text.contains("Certificate Sign"), "{}: {text}", e.stem);
        assert!(
            text.contains(&format!(
                "X509v3 Extended Key Usage: \n                {}\n",
                e.eku
            )),
            "{}: {text}",
            e.stem
        );
        if e.hosts.is_empty() {
            assert!(
                !text.contains("Subject Alternative Name"),
                "{}: {text}",
                e.stem
            );
        }
        for h in e.hosts {
            let out = openssl(&["x509", "-in", c, "-noout", "-checkhost", h]);
            assert!(out.contains("does match"), "{}: {out}", e.stem);
        }
        for ip in e.ips {
            let out = openssl(&["x509", "-in", c, "-noout", "-checkip", ip]);
            assert!(out.contains("does match"), "{}: {out}", e.stem);
        }
        let nope = openssl(&[
            "x509",
            "-in",
            c,
            "-noout",
            "-checkhost",
            "evil.example.test",
        ]);
        assert!(nope.contains("does NOT match"), "{nope}");
        assert_eq!(mode(&crt), 0o644);
        assert_eq!(mode(&dir.join(format!("{}.key", e.stem))), 0o600);
        // the key matches the certificate
        let k = dir.join(format!("{}.key", e.stem));
        let pub_from_key = openssl(&["pkey", "-in", k.to_str().unwrap(), "-pubout"]);
        let pub_from_cert = openssl(&["x509", "-in", c, "-noout", "-pubkey"]);
        assert_eq!(pub_from_key, pub_from_cert, "{}", e.stem);
    }

    // apiserver SANs exactly kubeadm's, DNS sorted then IPs in order
    let text = openssl(&[
        "x509",
        "-in",
        dir.join("apiserver.crt").to_str().unwrap(),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    assert!(
        text.contains(
            "DNS:api.example.test, DNS:cp-1, DNS:k8s.example.test, DNS:kubernetes, DNS:kubernetes.default, \
             DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, IP Address:10.96.0.1, \
             IP Address:10.0.0.10, IP Address:203.0.113.7"
        ),
        "{text}"
    );
    // localhost is not in the apiserver certificate (kubeadm)
    let lh = openssl(&[
        "x509",
        "-in",
        dir.join("apiserver.crt").to_str().unwrap(),
        "-noout",
        "-checkhost",
        "localhost",
    ]);
    assert!(lh.contains("does NOT match"), "{lh}");

    // validity: leaf 1 year, CA 10 years, both from now - 5 min
    let now = time::OffsetDateTime::now_utc();
    let ca = certs.get("ca").unwrap().not_after.unwrap();
    let leaf = certs.get("apiserver").unwrap().not_after.unwrap();
    assert!((ca - now - time::Duration::hours(87600)).abs() < time::Duration::minutes(2));
    assert!((leaf - now - time::Duration::hours(8760)).abs() < time::Duration::minutes(2));
    let start = openssl(&[
        "x509",
        "-in",
        dir.join("apiserver.crt").to_str().unwrap(),
        "-noout",
        "-startdate",
    ]);
    let start = start.trim().trim_start_matches("notBefore=");
    let fmt = time::format_description::parse_borrowed::<2>(
        "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT",
    )
    .unwrap();
    let nb = time::PrimitiveDateTime::parse(start, &fmt)
        .unwrap()
        .assume_utc();
    assert!(
        (now - nb - time::Duration::minutes(5)).abs() < time::Duration::minutes(1),
        "{start}"
    );

    // serials are random, positive and distinct
    let mut serials: Vec<String> = [
        "ca",
        "apiserver",
        "front-proxy-ca",
        "etcd/server",
        "etcd/peer",
    ]
    .iter()
    .map(|s| {
        openssl(&[
            "x509",
            "-in",
            dir.join(format!("{s}.crt")).to_str().unwrap(),
            "-noout",
            "-serial",
        ])
    })
    .collect();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 5);

    // sa.key / sa.pub
    assert_eq!(mode(&dir.join("sa.key")), 0o600);
    assert_eq!(mode(&dir.join("sa.pub")), 0o600);
    let sa_pub = openssl(&[
        "pkey",
        "-in",
        dir.join("sa.key").to_str().unwrap(),
        "-pubout",
    ]);
    assert_eq!(sa_pub, std::fs::read_to_string(dir.join("sa.pub")).unwrap());
    assert!(
        std::fs::read_to_string(dir.join("sa.key"))
            .unwrap()
            .starts_with("-----BEGIN EC PRIVATE KEY-----\n")
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn ca_hash_equals_openssl_pipeline() {
    let root = tmp("hash");
    render(&control_plane_settings(), &root);
    let ca = pki(&root).join("ca.crt");
    let ours = pki::ca_hash(&std::fs::read(&ca).unwrap()).unwrap();
    let sh = format!(
        "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | sha256sum",
        ca.display()
    );
    let out = run(Command::new("sh").arg("-c").arg(sh));
    let hex = out.split_whitespace().next().unwrap();
    assert_eq!(ours, format!("sha256:{hex}"));
    assert!(
        pki::ca_hash(b"not a cert")
            .unwrap_err()
            .to_string()
            .contains("CA certificate")
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn rerun_changes_nothing_and_one_deleted_leaf_is_regenerated_alone() {
    let root = tmp("rerun");
    let s = control_plane_settings();
    render(&s, &root);
    let before = snapshot(&root);
    let (certs, kcs) = render(&s, &root);
    assert!(
        certs
            .entries
            .iter()
            .chain(&kcs.entries)
            .all(|e| e.action == Action::Kept),
        "{certs}{kcs}"
    );
    assert!(
        certs
            .get("ca")
            .unwrap()
            .to_string()
            .starts_with("[certs] using existing ca")
    );
    assert_eq!(before, snapshot(&root), "a rerun changed bytes");

    let dir = pki(&root);
    std::fs::remove_file(dir.join("apiserver.crt")).unwrap();
    std::fs::remove_file(dir.join("apiserver.key")).unwrap();
    let (certs, kcs) = render(&s, &root);
    for e in certs.entries.iter().chain(&kcs.entries) {
        let want = if e.name == "apiserver" {
            Action::Created
        } else {
            Action::Kept
        };
        assert_eq!(e.action, want, "{e}");
    }
    let after = snapshot(&root);
    assert_eq!(before.len(), after.len());
    for ((p1, b1), (p2, b2)) in before.iter().zip(&after) {
        assert_eq!(p1, p2);
        let leaf = p1.ends_with("apiserver.crt") || p1.ends_with("apiserver.key");
        assert_eq!(b1 != b2, leaf, "{} changed={}", p1.display(), b1 != b2);
    }
    let out = openssl(&[
        "verify",
        "-CAfile",
        dir.join("ca.crt").to_str().unwrap(),
        dir.join("apiserver.crt").to_str().unwrap(),
    ]);
    assert!(out.contains(": OK"));

    // a leaf whose SANs no longer fit the config is regenerated with its key kept
    let key_before = std::fs::read(dir.join("etcd/server.key")).unwrap();
    let mut s2 = s.clone();
    s2.node.advertise_address = "10.0.0.99".parse().unwrap();
    let (certs, _) = render(&s2, &root);
    match &certs.get("etcd-server").unwrap().action {
        Action::Regenerated(why) => assert!(why.contains("10.0.0.99"), "{why}"),
        a => panic!("{a:?}"),
    }
    assert_eq!(certs.get("ca").unwrap().action, Action::Kept);
    assert_eq!(
        key_before,
        std::fs::read(dir.join("etcd/server.key")).unwrap()
    );
    let out = openssl(&[
        "x509",
        "-in",
        dir.join("etcd/server.crt").to_str().unwrap(),
        "-noout",
        "-checkip",
        "10.0.0.99",
    ]);
    assert!(out.contains("does match"));
    std::fs::remove_dir_all(&root).unwrap();
}

/// A leaf whose key or certificate cannot be read is made anew when its
/// CA can sign (and the report says why); with an external CA (no CA key)
/// it is an error that names the file and what is wrong with it.
#[test]
fn unreadable_leaf_files_are_replaced_only_when_the_ca_can_sign() {
    let root = tmp("unreadable");
    let s = control_plane_settings();
    render(&s, &root);
    let dir = pki(&root);
    let garbage_key = b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
    let regenerated = |why_has: &str| {
        let (certs, _) = render(&s, &root);
        match &certs.get("apiserver").unwrap().action {
            Action::Regenerated(why) => assert!(why.contains(why_has), "{why}"),
            a => panic!("apiserver: {a:?}, expected regenerated because {why_has}"),
        }
        assert_eq!(certs.get("ca").unwrap().action, Action::Kept);
        openssl_verify(&dir.join("ca.crt"), &dir.join("apiserver.crt"));
        assert_eq!(
            cert_public(&dir.join("apiserver.crt")),
            key_public(&dir.join("apiserver.key"))
        );
    };
    std::fs::write(dir.join("apiserver.key"), garbage_key).unwrap();
    regenerated("apiserver.key was missing or unreadable");
    std::fs::write(dir.join("apiserver.crt"), b"hello").unwrap();
    let key = std::fs::read(dir.join("apiserver.key")).unwrap();
    regenerated("does not parse");
    assert_eq!(key, std::fs::read(dir.join("apiserver.key")).unwrap());
    std::fs::remove_file(dir.join("apiserver.crt")).unwrap();
    std::fs::write(dir.join("apiserver.key"), garbage_key).unwrap();
    regenerated("apiserver.crt was missing");

    // external CA: the same garbage key is an error about that key
    std::fs::remove_file(dir.join("ca.key")).unwrap();
    std::fs::write(dir.join("apiserver.key"), garbage_key).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let e = pki::ensure_tree(&s, &Paths::new(&root), now, kubeboot::host::fs::Sync::Each)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("apiserver.key") && e.contains("malformed EC PRIVATE KEY block"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(dir.join("apiserver.key")).unwrap(),
        garbage_key
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_ca_is_never_replaced_and_bad_inputs_name_the_file() {
    let root = tmp("bad");
    let s = control_plane_settings();
    render(&s, &root);
    let dir = pki(&root);
    let paths = Paths::new(&root);
    let now = time::OffsetDateTime::now_utc();
    let ensure = || pki::ensure_tree(&s, &paths, now, kubeboot::host::fs::Sync::Deferred);

    // garbage PEM in the CA certificate
    let ca_crt = std::fs::read(dir.join("ca.crt")).unwrap();
    std::fs::write(
        dir.join("ca.crt"),
        b"-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = ensure().unwrap_err();
    assert!(
        e.to_string()
            .contains(&dir.join("ca.crt").display().to_string()),
        "{e}"
    );
    assert_eq!(e.exit_code(), 2);
    std::fs::write(dir.join("ca.crt"), b"hello").unwrap();
    assert!(ensure().unwrap_err().to_string().contains("ca.crt"));

    // a CA key that does not match the certificate
    std::fs::write(dir.join("ca.crt"), &ca_crt).unwrap();
    let fp_key = std::fs::read(dir.join("front-proxy-ca.key")).unwrap();
    let ca_key = std::fs::read(dir.join("ca.key")).unwrap();
    std::fs::write(dir.join("ca.key"), &fp_key).unwrap();
    let e = ensure().unwrap_err().to_string();
    assert!(e.contains("ca.key") && e.contains("does not match"), "{e}");
    std::fs::write(dir.join("ca.key"), &ca_key).unwrap();

    // garbage key
    std::fs::write(
        dir.join("ca.key"),
        b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = ensure().unwrap_err().to_string();
    assert!(e.contains("ca.key"), "{e}");
    std::fs::write(dir.join("ca.key"), &ca_key).unwrap();

    // an expired CA
    let old = root.join("old");
    let long_ago = now - time::Duration::days(4000);
    let mut short = s.clone();
    short.cluster.ca_validity_seconds = 86400;
    pki::ensure_tree(
        &short,
        &Paths::new(&old),
        long_ago,
        kubeboot::host::fs::Sync::Deferred,
    )
    .unwrap();
    let e = pki::ensure_tree(
        &s,
        &Paths::new(&old),
        now,
        kubeboot::host::fs::Sync::Deferred,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("ca.crt") && e.contains("expired"), "{e}");

    // validity periods too long for X.509 are refused, not a panic
    for (ca_secs, leaf_secs, field) in [
        (
            u64::MAX,
            s.cluster.cert_validity_seconds,
            "caCertificateValidityPeriod",
        ),
        (
            s.cluster.ca_validity_seconds,
            400_000 * 365 * 86400,
            "certificateValidityPeriod",
        ),
    ] {
        let mut long = s.clone();
        long.cluster.ca_validity_seconds = ca_secs;
        long.cluster.cert_validity_seconds = leaf_secs;
        let long_root = Paths::new(root.join("long"));
        let e = pki::ensure_tree(&long, &long_root, now, kubeboot::host::fs::Sync::Deferred)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{e}");
    }

    // the CA was never touched by any of this
    assert_eq!(ca_crt, std::fs::read(dir.join("ca.crt")).unwrap());
    ensure().unwrap();
    assert_eq!(ca_crt, std::fs::read(dir.join("ca.crt")).unwrap());

    // a symlinked pki directory is refused, not followed
    let outside = tmp("bad-outside");
    let lroot = tmp("bad-link");
    std::fs::create_dir_all(lroot.join("etc/kubernetes")).unwrap();
    std::os::unix::fs::symlink(&outside, lroot.join("etc/kubernetes/pki")).unwrap();
    let e = pki::ensure_tree(&s, &Paths::new(&lroot), now, kubeboot::host::fs::Sync::Each)
        .unwrap_err()
        .to_string();
    assert!(e.contains("symlink"), "{e}");
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    for d in [root, outside, lroot] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn external_etcd_worker_join_and_p384() {
    let root = tmp("variants");
    let mut s = control_plane_settings();
    s.cluster.etcd = Etcd::External {
        endpoints: vec!["https://10.0.0.50:2379".into()],
        ca_file: "/etc/etcd/ca.crt".into(),
        cert_file: "/etc/etcd/client.crt".into(),
        key_file: "/etc/etcd/client.key".into(),
    };
    s.cluster.key_algorithm = KeyAlgorithm::EcdsaP384;
    let (certs, _) = render(&s, &root);
    let names: Vec<_> = certs.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ca",
            "apiserver",
            "apiserver-kubelet-client",
            "front-proxy-ca",
            "front-proxy-client",
            "sa"
        ]
    );
    assert!(!pki(&root).join("etcd").exists());
    let text = openssl(&[
        "x509",
        "-in",
        pki(&root).join("apiserver.crt").to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(
        text.contains("secp384r1") && text.contains("ecdsa-with-SHA384"),
        "{text}"
    );
    assert_eq!(certs.get("ca").unwrap().algorithm, "ECDSA P-384");

    // a worker has no PKI of its own
    let wroot = tmp("variants-worker");
    let (certs, kcs) = render(&worker_settings(), &wroot);
    assert!(certs.entries.is_empty() && kcs.entries.is_empty());

    // a control-plane join needs the shared CAs
    let jroot = tmp("variants-join");
    let mut j = control_plane_settings();
    j.mode = kubeboot::config::Mode::JoinControlPlane;
    let e = pki::ensure_tree(
        &j,
        &Paths::new(&jroot),
        time::OffsetDateTime::now_utc(),
        kubeboot::host::fs::Sync::Each,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("ca.crt") && e.contains("control-plane join"),
        "{e}"
    );
    // with the shared files copied from the first node, it makes its own leaves
    j.node.name = "cp-2".into();
    let first = tmp("variants-first");
    render(&control_plane_settings(), &first);
    for f in [
        "ca.crt",
        "ca.key",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "etcd/ca.crt",
        "etcd/ca.key",
        "sa.key",
        "sa.pub",
    ] {
        let dst = pki(&jroot).join(f);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(pki(&first).join(f), dst).unwrap();
    }
    // the CAs alone are not enough: the service-account key is shared
    // too, and a join never makes one of its own
    let nosa = tmp("variants-nosa");
    for f in ["ca", "front-proxy-ca", "etcd/ca"] {
        for ext in ["crt", "key"] {
            let dst = pki(&nosa).join(format!("{f}.{ext}"));
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(pki(&jroot).join(format!("{f}.{ext}")), dst).unwrap();
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let e = pki::ensure_tree(&j, &Paths::new(&nosa), now, kubeboot::host::fs::Sync::Each)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sa.key") && e.contains("control-plane join"),
        "{e}"
    );
    assert!(!pki(&nosa).join("sa.key").exists());
    std::fs::remove_dir_all(&nosa).unwrap();
    let (certs, kcs) = render(&j, &jroot);
    assert_eq!(certs.get("ca").unwrap().action, Action::Kept);
    assert_eq!(certs.get("apiserver").unwrap().action, Action::Created);
    let kc: Vec<_> = kcs.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        kc,
        ["admin.conf", "controller-manager.conf", "scheduler.conf"]
    );
    let out = openssl(&[
        "x509",
        "-in",
        pki(&jroot).join("etcd/peer.crt").to_str().unwrap(),
        "-noout",
        "-checkhost",
        "cp-2",
    ]);
    assert!(out.contains("does match"));
    for d in [root, wroot, jroot, first] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn expiration_table() {
    let root = tmp("expiry");
    let s = control_plane_settings();
    let now = time::OffsetDateTime::now_utc();
    render_at(&s, &root, now);
    std::fs::remove_file(pki(&root).join("front-proxy-client.crt")).unwrap();
    let rows = pki::expiry::check_expiration(&s, &Paths::new(&root), now).unwrap();
    let names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "admin.conf",
            "apiserver",
            "apiserver-etcd-client",
            "apiserver-kubelet-client",
            "controller-manager.conf",
            "etcd-healthcheck-client",
            "etcd-peer",
            "etcd-server",
            "front-proxy-client",
            "scheduler.conf",
            "super-admin.conf",
            "ca",
            "front-proxy-ca",
            "etcd-ca"
        ]
    );
    let table = pki::expiry::format_expiration_table(&rows);
    assert!(
        table.starts_with("!MISSING! front-proxy-client\n"),
        "{table}"
    );
    assert!(
        table.contains("CERTIFICATE                EXPIRES"),
        "{table}"
    );
    let admin = table.lines().find(|l| l.starts_with("admin.conf")).unwrap();
    assert!(
        admin.contains(" 364d ") && admin.contains("   ca   ") && admin.ends_with("no"),
        "{admin}"
    );
    let ca = table.lines().find(|l| l.starts_with("ca ")).unwrap();
    assert!(ca.contains(" 9y ") || ca.contains(" 10y "), "{ca}");
    // without ca.key the CA is externally managed
    std::fs::remove_file(pki(&root).join("ca.key")).unwrap();
    let rows = pki::expiry::check_expiration(&s, &Paths::new(&root), now).unwrap();
    assert!(
        rows.iter()
            .find(|r| r.name == "apiserver")
            .unwrap()
            .externally_managed
    );
    assert!(
        rows.iter()
            .find(|r| r.name == "ca")
            .unwrap()
            .externally_managed
    );
    assert!(
        !rows
            .iter()
            .find(|r| r.name == "etcd-server")
            .unwrap()
            .externally_managed
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn crash_residue_converges() {
    // What a crash before the deferred syncfs can leave: empty files, or a
    // CA key whose certificate never reached the disk.
    let root = tmp("crash");
    let s = control_plane_settings();
    render(&s, &root);
    let dir = pki(&root);
    let ca_key = std::fs::read(dir.join("ca.key")).unwrap();
    std::fs::write(dir.join("ca.crt"), b"").unwrap();
    std::fs::write(dir.join("apiserver.key"), b"").unwrap();
    std::fs::write(dir.join("sa.pub"), b"").unwrap();
    std::fs::write(root.join("etc/kubernetes/admin.conf"), b"").unwrap();
    let (certs, kcs) = render(&s, &root);
    assert!(
        matches!(certs.get("ca").unwrap().action, Action::Regenerated(_)),
        "{certs}"
    );
    assert!(
        matches!(
            certs.get("apiserver").unwrap().action,
            Action::Regenerated(_)
        ),
        "{certs}"
    );
    assert!(
        matches!(certs.get("sa").unwrap().action, Action::Regenerated(_)),
        "{certs}"
    );
    assert_eq!(certs.get("front-proxy-ca").unwrap().action, Action::Kept);
    assert_eq!(kcs.get("admin.conf").unwrap().action, Action::Created);
    // the re-issued CA certificate differs, so kubeconfigs embedding the old one follow it
    match &kcs.get("scheduler.conf").unwrap().action {
        Action::Regenerated(why) => assert!(why.contains("certificate-authority-data"), "{why}"),
        a => panic!("{a:?}"),
    }
    assert_eq!(
        ca_key,
        std::fs::read(dir.join("ca.key")).unwrap(),
        "the CA key was replaced"
    );
    // leaves issued before the crash still verify against the re-issued CA certificate
    let ca = dir.join("ca.crt");
    for leaf in ["apiserver.crt", "apiserver-kubelet-client.crt"] {
        let out = openssl(&[
            "verify",
            "-CAfile",
            ca.to_str().unwrap(),
            dir.join(leaf).to_str().unwrap(),
        ]);
        assert!(out.contains(": OK"), "{out}");
    }
    let before = snapshot(&root);
    render(&s, &root);
    assert_eq!(before, snapshot(&root));
    std::fs::remove_dir_all(&root).unwrap();
}

/// Issue 11 item 5: kubeadm's `encryptionAlgorithm: RSA-2048` (its default)
/// gives an RSA-2048 tree: openssl reads every key as a 2048-bit RSA key in
/// the PKCS#1 `RSA PRIVATE KEY` form kubeadm writes, every certificate is
/// signed sha256WithRSAEncryption and chains to its CA.
#[test]
fn kubeadm_rsa_2048_tree_passes_openssl() {
    let config = "apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration: {name: cp-1}
localAPIEndpoint: {advertiseAddress: 10.0.0.10}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
encryptionAlgorithm: RSA-2048
";
    let facts = kubeboot::host::HostFacts::given(
        Some("cp-1".into()),
        Some("10.0.0.10".parse().unwrap()),
        None,
    );
    let loaded = kubeboot::config::load(config.as_bytes(), "rsa.yaml", &facts).unwrap();
    assert_eq!(loaded.settings.cluster.key_algorithm, KeyAlgorithm::Rsa2048);
    let root = tmp("rsa2048");
    let (certs, kcs) = render(&loaded.settings, &root);
    assert!(certs.entries.iter().all(|e| e.algorithm == "RSA 2048"));
    assert!(kcs.entries.iter().all(|e| e.algorithm == "RSA 2048"));
    let dir = pki(&root);
    for (stem, ca) in CERT_PAIRS {
        let key = dir.join(format!("{stem}.key"));
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{stem}");
        let text = openssl(&["pkey", "-in", key.to_str().unwrap(), "-noout", "-text"]);
        assert!(text.contains("Private-Key: (2048 bit"), "{stem}: {text}");
        let crt = dir.join(format!("{stem}.crt"));
        let text = openssl(&["x509", "-in", crt.to_str().unwrap(), "-noout", "-text"]);
        assert!(text.contains("sha256WithRSAEncryption"), "{stem}: {text}");
        openssl_verify(&dir.join(format!("{ca}.crt")), &crt);
    }
    let sa = openssl(&[
        "pkey",
        "-in",
        dir.join("sa.key").to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(sa.contains("Private-Key: (2048 bit"), "{sa}");
    std::fs::remove_dir_all(root).unwrap();
}

/// `kubeboot render`: the kubeconfig phase signs with the cluster CA the
/// certs phase of the same run created (not read back from disk). Every
/// kubeconfig's client certificate verifies with openssl against `ca.crt`
/// as a TLS client, its key is the certificate's key, and its
/// certificate-authority-data is `ca.crt`; a second render keeps them all.
#[test]
fn rendered_kubeconfigs_are_signed_by_the_ca_on_disk() {
    let root = tmp("render-kubeconfigs");
    let render_cli = || {
        run(Command::new(env!("CARGO_BIN_EXE_kubeboot")).args([
            "render",
            "--example",
            "control-plane",
            "--root",
            root.to_str().unwrap(),
        ]))
    };
    render_cli();
    let ca = pki(&root).join("ca.crt");
    let ca_pem = std::fs::read(&ca).unwrap();
    let confs = [
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ];
    for conf in confs {
        let path = root.join("etc/kubernetes").join(conf);
        assert_eq!(
            kubeconfig_field(&path, "clusters", "cluster", "certificate-authority-data"),
            ca_pem,
            "{conf}"
        );
        let (crt, key) = kubeconfig_client_files(&path, &root.join(conf));
        let out = openssl(&[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            ca.to_str().unwrap(),
            crt.to_str().unwrap(),
        ]);
        assert!(out.contains(": OK"), "{conf}: {out}");
        assert_eq!(
            openssl(&["x509", "-in", crt.to_str().unwrap(), "-noout", "-pubkey"]),
            openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]),
            "{conf}: the client key is not the certificate's key"
        );
        std::fs::remove_file(&crt).unwrap();
        std::fs::remove_file(&key).unwrap();
    }
    let before = snapshot(&root.join("etc/kubernetes"));
    let out = render_cli();
    for conf in confs {
        let line = out.lines().find(|l| l.contains(conf)).unwrap_or_default();
        assert!(!line.contains("created"), "{conf}: {out}");
    }
    assert_eq!(before, snapshot(&root.join("etc/kubernetes")));
    std::fs::remove_dir_all(&root).unwrap();
}

/// A kubeconfig whose current context names another user (the cluster
/// name unchanged) does not fit: it is regenerated, the report says why,
/// and the new one names kubeadm's user again.
#[test]
fn a_kubeconfig_of_another_user_is_regenerated() {
    let root = tmp("kubeconfig-user");
    let s = control_plane_settings();
    render(&s, &root);
    let admin = root.join("etc/kubernetes/admin.conf");
    let text = std::fs::read_to_string(&admin).unwrap();
    assert!(text.contains("name: kubernetes-admin\n"), "{text}");
    std::fs::write(&admin, text.replace("kubernetes-admin", "someone-else")).unwrap();
    let (_, kcs) = render(&s, &root);
    match &kcs.get("admin.conf").unwrap().action {
        Action::Regenerated(why) => assert!(why.contains("someone-else"), "{why}"),
        a => panic!("admin.conf: {a:?}"),
    }
    let again = std::fs::read_to_string(&admin).unwrap();
    assert!(
        again.contains("name: kubernetes-admin\n") && !again.contains("someone-else"),
        "{again}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// The public key (PEM) openssl reads from a certificate file.
fn cert_public(crt: &Path) -> String {
    openssl(&["x509", "-in", crt.to_str().unwrap(), "-noout", "-pubkey"])
}

/// The public key (PEM) openssl derives from a private key file.
fn key_public(key: &Path) -> String {
    openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"])
}

/// Every key of the control plane under `root`, checked with openssl:
/// each certificate and kubeconfig carries the public key of the private
/// key beside it and chains to its CA, `sa.pub` is `sa.key`'s, the keys
/// are on `curve`, and all 16 are different.
fn check_keys(root: &Path, scratch: &Path, curve: &str) {
    let dir = pki(root);
    let mut publics = std::collections::BTreeSet::new();
    for (stem, ca) in CERT_PAIRS {
        let crt = dir.join(format!("{stem}.crt"));
        let public = key_public(&dir.join(format!("{stem}.key")));
        assert_eq!(
            cert_public(&crt),
            public,
            "{stem}: certificate and key differ"
        );
        openssl_verify(&dir.join(format!("{ca}.crt")), &crt);
        let text = openssl(&["x509", "-in", crt.to_str().unwrap(), "-noout", "-text"]);
        assert!(text.contains(curve), "{stem}: not {curve}: {text}");
        assert!(publics.insert(public), "{stem}: a key used twice");
    }
    let sa = key_public(&dir.join("sa.key"));
    assert_eq!(std::fs::read_to_string(dir.join("sa.pub")).unwrap(), sa);
    assert!(publics.insert(sa), "sa: a key used twice");
    std::fs::create_dir_all(scratch).unwrap();
    for conf in [
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ] {
        let path = root.join("etc/kubernetes").join(conf);
        let (crt, key) = kubeconfig_client_files(&path, &scratch.join(conf));
        let public = key_public(&key);
        assert_eq!(
            cert_public(&crt),
            public,
            "{conf}: certificate and key differ"
        );
        openssl_verify(&dir.join("ca.crt"), &crt);
        assert!(publics.insert(public), "{conf}: a key used twice");
    }
    assert_eq!(publics.len(), 16);
}

/// A fresh tree (its CA certificates written after the leaves, once the
/// new CA keys' `syncfs` on its own thread has returned) and a rerun that
/// remakes some keys: each key lands beside its own certificate and each
/// certificate chains to its CA, checked with openssl, for P-256 and P-384.
#[test]
fn fresh_and_rerun_keys_match_their_certificates() {
    for (alg, curve) in [
        (KeyAlgorithm::EcdsaP256, "prime256v1"),
        (KeyAlgorithm::EcdsaP384, "secp384r1"),
    ] {
        let root = tmp(&format!("keys-{alg:?}"));
        let mut s = control_plane_settings();
        s.cluster.key_algorithm = alg;
        render(&s, &root);
        check_keys(&root, &root.join("scratch"), curve);
        let dir = pki(&root);
        for f in [
            "apiserver.key",
            "apiserver.crt",
            "etcd/peer.key",
            "sa.key",
            "sa.pub",
        ] {
            std::fs::remove_file(dir.join(f)).unwrap();
        }
        std::fs::remove_file(root.join("etc/kubernetes/scheduler.conf")).unwrap();
        let (certs, kcs) = render(&s, &root);
        let created: Vec<_> = certs
            .entries
            .iter()
            .chain(&kcs.entries)
            .filter(|e| e.action != Action::Kept)
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(created, ["apiserver", "etcd-peer", "sa", "scheduler.conf"]);
        check_keys(&root, &root.join("scratch2"), curve);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
