//! Golden node trees from the shipped binary: `kubeboot render --example
//! control-plane` and `--example worker` into temp roots, every file listed
//! as `MODE PATH KIND` with a masked digest of its content, compared with
//! `tests/golden/tree-control-plane.txt` and `tests/golden/tree-worker.txt`.
//! Regenerate with `KUBEBOOT_UPDATE_GOLDEN=1 cargo test --test golden_tree`.
//!
//! The digests keep what is the same on every render and mask the rest:
//!
//! - certificates: subject, issuer, SANs, key usage, extended key usage and
//!   basic constraints (`openssl x509 -noout -subject -issuer -ext ...`) and
//!   the validity period's length (notAfter − notBefore); serials, dates
//!   and keys are not shown;
//! - private and public keys: the key type only (first line of
//!   `openssl pkey -noout -text`, plus the curve for EC keys);
//! - kubeconfigs: the YAML with every `*-data:` (and `token:`) value
//!   replaced by `<masked>`, followed by the digest of each embedded
//!   certificate;
//! - everything else (static pods, kubelet files): the content itself.
//!
//! What would depend on this machine is pinned: the render runs without
//! any `*_proxy` variable (kubeboot copies them into the static pods), the
//! temp root holds no CA trust directory (kubeboot looks for them under
//! `--root`), and the cgroup driver is render's fixed assumption. The
//! worker example names no node, so its node name is the hostname; the
//! name the binary reports is masked as `<hostname>` where it stands as a
//! flag value (`--hostname-override=<hostname>`), the only place it appears.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;

#[path = "node_common/mod.rs"]
mod node_common;

use node_common::TempRoot;

/// Renders a built-in example into `root`; returns the node name reported.
fn render(example: &str, root: &Path) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubeboot"));
    for (k, _) in std::env::vars() {
        if k.to_ascii_lowercase().ends_with("_proxy") {
            c.env_remove(k);
        }
    }
    let out = c
        .args(["render", "--example", example, "--root"])
        .arg(root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubeboot render --example {example}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // "rendered a <mode> node (<name>, Kubernetes <version>) into <root>:"
    stdout
        .split_once(" node (")
        .and_then(|(_, rest)| rest.split_once(", Kubernetes"))
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| panic!("no node name in the render report:\n{stdout}"))
}

/// Runs openssl with `input` on stdin; returns stdout. On failure only
/// stderr is shown (stdout may hold key material).
fn openssl(args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("openssl is required (Debian package openssl): {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Subject, issuer, extensions and validity length of a PEM certificate.
fn cert_digest(pem: &[u8]) -> Vec<String> {
    let text = openssl(
        &[
            "x509",
            "-noout",
            "-subject",
            "-issuer",
            "-ext",
            "subjectAltName,keyUsage,extendedKeyUsage,basicConstraints",
        ],
        pem,
    );
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    let cert = p.parse_x509().unwrap();
    let secs = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    lines.push(format!(
        "validity: {}d {:02}:{:02}:{:02}",
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60
    ));
    lines
}

/// The key type of `openssl pkey -text`: its first line and, for EC keys,
/// the curve lines (never the key material).
fn key_digest(pem: &[u8], public: bool) -> Vec<String> {
    let mut args = vec!["pkey", "-noout", "-text"];
    if public {
        args.push("-pubin");
    }
    let text = openssl(&args, pem);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().to_string();
    std::iter::once(first)
        .chain(
            lines
                .filter(|l| l.starts_with("ASN1 OID:") || l.starts_with("NIST CURVE:"))
                .map(str::to_string),
        )
        .collect()
}

/// The kubeconfig with `*-data:` and `token:` values masked, then the
/// digest of every embedded certificate.
fn kubeconfig_digest(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut certs = Vec::new();
    for line in text.lines() {
        let key = line.trim_start().trim_start_matches("- ");
        match key.split_once(": ") {
            Some((k, v)) if k.ends_with("-data") || k == "token" => {
                let indent = &line[..line.len() - key.len()];
                lines.push(format!("{indent}{k}: <masked>"));
                if k.starts_with("certificate-authority") || k.starts_with("client-certificate") {
                    let pem = base64::engine::general_purpose::STANDARD
                        .decode(v.trim())
                        .unwrap_or_else(|e| panic!("{k}: not base64: {e}"));
                    certs.push((k.to_string(), pem));
                }
            }
            _ => lines.push(line.to_string()),
        }
    }
    for (k, pem) in certs {
        lines.push(format!("# embedded {k}:"));
        lines.extend(cert_digest(&pem).into_iter().map(|l| format!("#   {l}")));
    }
    lines
}

/// Replaces `name` by `<hostname>` where it stands as a whole flag value:
/// after `=` and before a space, a quote, a comma or the line end.
fn mask_hostname(line: &str, name: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(name) {
        let before = if i > 0 {
            rest[..i].chars().last()
        } else {
            out.chars().last()
        };
        let after = rest[i + name.len()..].chars().next();
        let starts = before == Some('=');
        let ends = matches!(after, None | Some(' ' | '"' | ','));
        out.push_str(&rest[..i]);
        out.push_str(if starts && ends { "<hostname>" } else { name });
        rest = &rest[i + name.len()..];
    }
    out.push_str(rest);
    out
}

/// Every file under `root`: its mode, root-relative path and kind, then its
/// masked digest indented by four spaces.
fn listing(root: &Path, hostname: Option<&str>) -> String {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = format!("/{}", p.strip_prefix(root).unwrap().display());
                // the run lock holds the last holder's pid: run state, not node content
                if rel != "/var/lib/kubeboot/lock" {
                    files.insert(rel, p);
                }
            }
        }
    }
    let mut out = String::new();
    for (rel, p) in files {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        let bytes = std::fs::read(&p).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap_or_else(|_| panic!("{rel}: not UTF-8"));
        let top = |k: &str| text.lines().any(|l| l == format!("kind: {k}"));
        let (kind, digest) = if text.contains("-----BEGIN CERTIFICATE-----") {
            ("certificate", cert_digest(&bytes))
        } else if text.contains("PRIVATE KEY-----") {
            ("private-key", key_digest(&bytes, false))
        } else if text.contains("-----BEGIN PUBLIC KEY-----") {
            ("public-key", key_digest(&bytes, true))
        } else if top("Config") {
            ("kubeconfig", kubeconfig_digest(&text))
        } else {
            let kind = if top("Pod") {
                "static-pod"
            } else if top("KubeletConfiguration") {
                "kubelet-config"
            } else {
                "text"
            };
            (kind, text.lines().map(str::to_string).collect())
        };
        out.push_str(&format!("{mode:04o} {rel} {kind}\n"));
        for line in digest {
            let line = match hostname {
                Some(h) => mask_hostname(&line, h),
                None => line,
            };
            out.push_str(format!("    {line}").trim_end());
            out.push('\n');
        }
    }
    out
}

fn compare(example: &str, mask_host: bool) {
    let tmp = TempRoot::new(&format!("golden-tree-{example}"));
    let name = render(example, tmp.path());
    let got = listing(tmp.path(), mask_host.then_some(name.as_str()));
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("tree-{example}.txt"));
    if std::env::var_os("KUBEBOOT_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (KUBEBOOT_UPDATE_GOLDEN=1 writes it)",
            golden.display()
        )
    });
    if got != want {
        let diff: Vec<String> = got
            .lines()
            .zip(want.lines())
            .enumerate()
            .filter(|(_, (g, w))| g != w)
            .take(10)
            .map(|(i, (g, w))| format!("line {}:\n  got:  {g}\n  want: {w}", i + 1))
            .collect();
        panic!(
            "the {example} tree differs from {} ({} vs {} lines):\n{}\n\nfull listing:\n{got}",
            golden.display(),
            got.lines().count(),
            want.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn control_plane_tree_matches_golden() {
    compare("control-plane", false);
}

#[test]
fn worker_tree_matches_golden() {
    compare("worker", true);
}

#[test]
fn hostname_masking_is_by_whole_value() {
    assert_eq!(
        mask_hostname("ARGS=\"--hostname-override=vm --x=y\"", "vm"),
        "ARGS=\"--hostname-override=<hostname> --x=y\""
    );
    assert_eq!(
        mask_hostname("staticPodPath: /var/lib/kubelet/vm", "kubelet"),
        "staticPodPath: /var/lib/kubelet/vm"
    );
    assert_eq!(
        mask_hostname("cgroupDriver: systemd", "systemd"),
        "cgroupDriver: systemd"
    );
    assert_eq!(
        mask_hostname("--a=node,--b=node-1", "node"),
        "--a=<hostname>,--b=node-1"
    );
}
