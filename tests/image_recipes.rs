//! The image recipes in `image/`, each built or checked by the tool that
//! consumes it: the `/usr` install enabled by `systemctl --root preset`, the
//! sysext image read back by the filesystem's own reader (`fsck.erofs
//! --extract`, `unsquashfs -l`), the mkosi configuration parsed by
//! `mkosi summary`, and the iPXE script's kernel command line accepted by
//! `kubeboot config validate`. A missing tool prints a SKIP line, or fails
//! when KUBEBOOT_REQUIRE_PEERS=1 (.ci/run installs them all).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KUBEBOOT: &str = env!("CARGO_BIN_EXE_kubeboot");

/// The binary an image gets: the static release build when .ci/run made
/// one (`KUBEBOOT_RELEASE_BIN`), else this test build.
fn image_binary() -> PathBuf {
    std::env::var_os("KUBEBOOT_RELEASE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(KUBEBOOT))
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kubeboot-image-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Whether `tool` is on PATH; a SKIP line (or a failure under
/// KUBEBOOT_REQUIRE_PEERS=1) when it is not.
fn have(tool: &str, package: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var_os("KUBEBOOT_REQUIRE_PEERS").is_some_and(|v| v == "1") {
            panic!("{test}: {tool} is missing (Debian {package}; .ci/run installs it)");
        }
        eprintln!("SKIP {test}: {tool} is missing (Debian {package})");
    }
    found
}

fn ok(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Every file and symlink under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let t = std::fs::symlink_metadata(&p).unwrap().file_type();
            if t.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

const USR_LAYOUT: [&str; 3] = [
    "usr/bin/kubeboot",
    "usr/lib/systemd/system-preset/50-kubeboot.preset",
    "usr/lib/systemd/system/kubeboot.service",
];

#[test]
fn usr_install_is_only_usr_and_the_preset_enables_the_unit() {
    let root = tmpdir("usr");
    ok(Command::new(repo("image/install-into-root.sh"))
        .arg("--usr")
        .arg(&root)
        .arg(KUBEBOOT));
    assert_eq!(tree(&root), USR_LAYOUT);
    let mode = std::fs::metadata(root.join("usr/bin/kubeboot"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        std::fs::read(root.join("usr/bin/kubeboot")).unwrap(),
        std::fs::read(KUBEBOOT).unwrap()
    );
    if have("systemctl", "systemd", "usr_install preset") {
        // what systemd does on the first boot of an image with an empty /etc
        ok(Command::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .args(["preset", "kubeboot.service"]));
        let link = root.join("etc/systemd/system/multi-user.target.wants/kubeboot.service");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/usr/lib/systemd/system/kubeboot.service")
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}

fn check_sysext_tree(x: &Path, name: &str) {
    let mut want: Vec<String> = USR_LAYOUT.iter().map(|s| s.to_string()).collect();
    want.push(format!(
        "usr/lib/extension-release.d/extension-release.{name}"
    ));
    want.push("usr/lib/systemd/system/multi-user.target.wants/kubeboot.service".into());
    want.sort();
    assert_eq!(tree(x), want);
    let release = std::fs::read_to_string(x.join(format!(
        "usr/lib/extension-release.d/extension-release.{name}"
    )))
    .unwrap();
    assert!(release.lines().any(|l| l == "ID=_any"), "{release}");
    assert_eq!(
        std::fs::read_link(
            x.join("usr/lib/systemd/system/multi-user.target.wants/kubeboot.service")
        )
        .unwrap(),
        Path::new("../kubeboot.service")
    );
    assert_eq!(
        std::fs::read(x.join("usr/bin/kubeboot")).unwrap(),
        std::fs::read(image_binary()).unwrap(),
        "the binary in the image differs"
    );
    let unit = std::fs::read_to_string(x.join("usr/lib/systemd/system/kubeboot.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/kubeboot firstboot"));
}

#[test]
fn sysext_erofs_image_reads_back_with_fsck_erofs() {
    if !have("mkfs.erofs", "erofs-utils", "sysext erofs") {
        return;
    }
    let dir = tmpdir("sysext-erofs");
    let img = dir.join("kubeboot.raw");
    ok(Command::new(repo("image/sysext/build-sysext.sh"))
        .arg(&img)
        .arg(image_binary()));
    let x = dir.join("x");
    // fsck.erofs checks every inode and extracts without mounting
    ok(Command::new("fsck.erofs")
        .arg(format!("--extract={}", x.display()))
        .arg(&img));
    check_sysext_tree(&x, "kubeboot");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sysext_squashfs_image_lists_and_extracts_with_unsquashfs() {
    if !have("mksquashfs", "squashfs-tools", "sysext squashfs") {
        return;
    }
    let dir = tmpdir("sysext-squashfs");
    let img = dir.join("kubeboot-k8s.raw");
    ok(Command::new(repo("image/sysext/build-sysext.sh"))
        .arg(&img)
        .arg(image_binary())
        .env("KUBEBOOT_SYSEXT_FS", "squashfs"));
    let list = ok(Command::new("unsquashfs").arg("-lln").arg(&img));
    let list = String::from_utf8_lossy(&list.stdout);
    // owned by root (built without root), the binary executable
    let bin = list
        .lines()
        .find(|l| l.ends_with("/usr/bin/kubeboot"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(bin.starts_with("-rwxr-xr-x 0/0 "), "{bin}");
    let x = dir.join("x");
    ok(Command::new("unsquashfs")
        .args(["-q", "-d"])
        .arg(&x)
        .arg(&img));
    check_sysext_tree(&x, "kubeboot-k8s");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mkosi_accepts_the_configuration() {
    if !have("mkosi", "mkosi", "mkosi summary") {
        return;
    }
    let dir = tmpdir("mkosi");
    std::fs::copy(repo("image/mkosi/mkosi.conf"), dir.join("mkosi.conf")).unwrap();
    let o = ok(Command::new("mkosi").arg("summary").current_dir(&dir));
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    for want in [
        "Distribution: debian",
        "Release: bookworm",
        "Output Format: gpt_ext4",
        "Bootable: yes",
        "linux-image-amd64",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(
        text.contains(&format!(
            "Extra Trees: {}",
            dir.join("kubeboot.tree").display()
        )),
        "{text}"
    );
    // and mkosi does check: the same file with a bad value is refused
    let conf = std::fs::read_to_string(dir.join("mkosi.conf")).unwrap();
    std::fs::write(
        dir.join("mkosi.conf"),
        conf.replace("Format=gpt_ext4", "Format=no-such-format"),
    )
    .unwrap();
    let bad = Command::new("mkosi")
        .arg("summary")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The iPXE script's kernel command line with the variables set, as iPXE
/// expands them.
fn ipxe_cmdline(script: &str, vars: &[(&str, &str)]) -> String {
    let kernel = script
        .lines()
        .find(|l| l.starts_with("kernel "))
        .expect("a kernel line");
    let mut line = kernel.trim_start_matches("kernel ").to_string();
    for (k, v) in vars {
        line = line.replace(&format!("${{{k}}}"), v);
    }
    assert!(!line.contains("${"), "unexpanded variable: {line}");
    // the image name comes first on iPXE's command line, as BOOT_IMAGE= does on GRUB's
    line.split_once(' ')
        .map(|(_, args)| args.to_string())
        .unwrap()
}

#[test]
fn ipxe_worker_script_command_line_is_a_valid_worker_join() {
    let script = std::fs::read_to_string(repo("image/pxe/worker.ipxe")).unwrap();
    assert!(script.starts_with("#!ipxe\n"));
    assert!(script.lines().any(|l| l == "initrd initrd.img"));
    assert!(script.lines().any(|l| l == "boot"));
    let dir = tmpdir("ipxe");
    let hash = "sha256:a5c1107a20290cfd98e8ec46a53f94c3894f0a6fef4d0628c47f00e6a43bd18b";
    let cmdline = ipxe_cmdline(
        &script,
        &[
            ("kb-server", "10.0.0.10:6443"),
            ("kb-token", "abcdef.0123456789abcdef"),
            ("kb-hash", hash),
            ("kb-extra", "kubeboot.node-name=pxe-7"),
        ],
    );
    let f = dir.join("cmdline");
    std::fs::write(&f, format!("{cmdline}\n")).unwrap();
    let o = ok(Command::new(KUBEBOOT).args(["config", "validate"]).arg(&f));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("ok (") && out.contains("join-worker"), "{out}");
    let shown = ok(Command::new(KUBEBOOT).args(["config", "show"]).arg(&f));
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("pxe-7") && shown.contains("10.0.0.10:6443"),
        "{shown}"
    );
    assert!(
        !shown.contains("0123456789abcdef"),
        "the token secret leaked: {shown}"
    );
    // without the optional node name the line is still a complete join
    let plain = ipxe_cmdline(
        &script,
        &[
            ("kb-server", "10.0.0.10:6443"),
            ("kb-token", "abcdef.0123456789abcdef"),
            ("kb-hash", hash),
            ("kb-extra", ""),
        ],
    );
    std::fs::write(&f, format!("{plain}\n")).unwrap();
    ok(Command::new(KUBEBOOT).args(["config", "validate"]).arg(&f));
    std::fs::remove_dir_all(&dir).unwrap();
}
