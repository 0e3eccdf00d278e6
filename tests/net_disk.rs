//! Config disks built with the real tools (genisoimage for iso9660,
//! mkfs.vfat + mcopy for vfat): found by their label through sysfs or
//! /dev/disk/by-label, mounted read-only through a loop device where the
//! machine allows it (each test prints which path ran), otherwise read
//! through a directory; already-mounted disks are read in place.

mod net_support;
#[path = "peer_support/mod.rs"]
mod peer_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kubeboot::host::Paths;
use kubeboot::host::disks::{FsType, Kind, probe_label};
use kubeboot::platform::{Platform, detect};
use kubeboot::userdata::disk::Disk;
use kubeboot::userdata::{Fetch, Source};
use net_support::*;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("running {cmd:?}: {e} (install genisoimage, dosfstools, mtools)")
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The files of a config disk, in a directory.
fn content(dir: &Path, kind: Kind, userdata: &[u8]) {
    let file = dir.join(kind.file());
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, userdata).unwrap();
    if kind == Kind::NoCloud {
        fs::write(dir.join("meta-data"), "instance-id: iid-test\n").unwrap();
    }
}

fn iso(dir: &Path, label: &str, out: &Path) {
    run(Command::new("genisoimage")
        .args(["-quiet", "-V", label, "-r", "-J", "-o"])
        .arg(out)
        .arg(dir));
}

fn vfat(dir: &Path, label: &str, out: &Path) {
    run(Command::new("mkfs.vfat")
        .args(["-C", "-n", label])
        .arg(out)
        .arg("2048"));
    for entry in fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        run(Command::new("mcopy")
            .args(["-s", "-i"])
            .arg(out)
            .arg(&p)
            .arg(format!("::{}", p.file_name().unwrap().to_string_lossy())));
    }
}

/// A mount error that means "this machine does not let us mount" (std's
/// text for EPERM, EACCES, ENODEV), not a wrong mount.
fn cannot_mount_here(msg: &str) -> bool {
    ["(os error 1)", "(os error 13)", "(os error 19)"]
        .iter()
        .any(|e| msg.contains(e))
}

/// A losetup failure that means there is no loop device to be had here
/// (none free, no /dev/loop-control, not permitted), not a bad image.
fn no_loop_device_here(msg: &str) -> bool {
    [
        "cannot find an unused loop device",
        "Permission denied",
        "Operation not permitted",
        "No such file or directory",
        "No such device",
        "could not find any free loop device",
    ]
    .iter()
    .any(|e| msg.contains(e))
}

/// A loop device for `image`, detached when dropped.
struct Loop(String);
impl Loop {
    fn attach(image: &Path) -> Result<Loop, String> {
        let out = Command::new("losetup")
            .args(["-f", "--show", "-r"])
            .arg(image)
            .output()
            .map_err(|e| {
                assert!(
                    !peer_support::required(),
                    "KUBEBOOT_REQUIRE_PEERS=1 and losetup (util-linux) cannot run: {e}"
                );
                format!("No such file or directory: losetup: {e}")
            })?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Loop(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    }
}
impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// A fake root where `/sys/class/block/vdb` is a small disk whose
/// `/dev/vdb` is `image` (no udev, so no /dev/disk/by-label).
fn root_with_disk(name: &str, image: &Path) -> PathBuf {
    let root = tmpdir(&format!("{name}-root"));
    let sectors = fs::metadata(image).unwrap().len().div_ceil(512);
    fs::create_dir_all(root.join("sys/class/block/vdb")).unwrap();
    fs::create_dir_all(root.join("sys/class/block/vda")).unwrap();
    fs::write(
        root.join("sys/class/block/vdb/size"),
        format!("{sectors}\n"),
    )
    .unwrap();
    // A big system disk is never read.
    fs::write(root.join("sys/class/block/vda/size"), "41943040\n").unwrap();
    fs::create_dir_all(root.join("dev")).unwrap();
    fs::copy(image, root.join("dev/vdb")).unwrap();
    root
}

/// Detects, then fetches through a loop-device mount when possible, else
/// through a directory; returns the bytes and prints which path ran.
fn fetch_disk(name: &str, kind: Kind, fstype: FsType, build: fn(&Path, &str, &Path), label: &str) {
    let work = tmpdir(name);
    let userdata = gzip_body();
    content(&work.join("files"), kind, &userdata);
    let image = work.join("disk.img");
    build(&work.join("files"), label, &image);
    assert_eq!(
        probe_label(&image),
        Some((fstype, label.to_string())),
        "{name}: probing the image made by the real tool"
    );

    let root = root_with_disk(name, &image);
    let paths = Paths::new(&root);
    let d = detect(&paths, None).unwrap();
    let want = if kind == Kind::NoCloud {
        Platform::NoCloud
    } else {
        Platform::ConfigDrive
    };
    assert_eq!(d.platform, want, "{name}: {}", d.reason);
    assert!(d.reason.contains("dev/vdb"), "{}", d.reason);

    let mounted = match Loop::attach(&image) {
        Ok(lo) => {
            fs::remove_file(root.join("dev/vdb")).unwrap();
            std::os::unix::fs::symlink(&lo.0, root.join("dev/vdb")).unwrap();
            match Disk::new(&paths, kind).fetch() {
                Ok(Fetch::Found(got)) => {
                    assert_eq!(got, userdata, "{name}");
                    println!(
                        "{name}: mounted read-only via loop device {} and read {}",
                        lo.0,
                        kind.file()
                    );
                    true
                }
                Ok(other) => panic!("{name}: {other:?}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains("read-only") && msg.contains(fstype_name(fstype)),
                        "{msg}"
                    );
                    // Only "not allowed / no driver here" may skip the mount:
                    // EPERM, EACCES (no CAP_SYS_ADMIN, a container), ENODEV
                    // (no driver for the filesystem). EINVAL (a bad
                    // superblock, the wrong type tried) and the rest are
                    // kubeboot's fault and fail the test.
                    assert!(
                        cannot_mount_here(&msg),
                        "{name}: mounting the disk failed for a reason other than this machine not allowing it: {msg}"
                    );
                    peer_support::skip_line(&format!(
                        "SKIP {name} loop mount: this machine cannot mount it ({msg}); reading through a directory"
                    ));
                    false
                }
            }
        }
        Err(e) => {
            assert!(
                no_loop_device_here(&e),
                "{name}: losetup failed for a reason other than no loop device here: {e}"
            );
            peer_support::skip_line(&format!(
                "SKIP {name} loop mount: no loop device ({e}); reading through a directory"
            ));
            false
        }
    };
    // The private mount point is gone either way.
    let leftovers: Vec<_> = fs::read_dir(root.join("run/kubeboot"))
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{name}: {leftovers:?}");
    if !mounted {
        match Disk::from_dir(kind, work.join("files")).fetch() {
            Ok(Fetch::Found(got)) => assert_eq!(got, userdata, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(&work).unwrap();
}

fn fstype_name(t: FsType) -> &'static str {
    match t {
        FsType::Iso9660 => "iso9660",
        FsType::Vfat => "vfat",
    }
}

#[test]
fn cidata_iso9660() {
    fetch_disk("cidata-iso", Kind::NoCloud, FsType::Iso9660, iso, "cidata");
}

#[test]
fn cidata_vfat() {
    fetch_disk("cidata-vfat", Kind::NoCloud, FsType::Vfat, vfat, "CIDATA");
}

#[test]
fn config_drive_iso9660() {
    fetch_disk(
        "config2-iso",
        Kind::ConfigDrive,
        FsType::Iso9660,
        iso,
        "config-2",
    );
}

#[test]
fn already_mounted_disk_is_read_in_place() {
    let root = tmpdir("mounted");
    fs::create_dir_all(root.join("dev/disk/by-label")).unwrap();
    fs::write(root.join("dev/sr0"), b"not a filesystem").unwrap();
    std::os::unix::fs::symlink("../../sr0", root.join("dev/disk/by-label/config-2")).unwrap();
    fs::create_dir_all(root.join("proc/self")).unwrap();
    fs::write(
        root.join("proc/self/mounts"),
        "proc /proc proc rw 0 0\n/dev/sr0 /media/config\\0402 iso9660 ro 0 0\n",
    )
    .unwrap();
    content(&root.join("media/config 2"), Kind::ConfigDrive, MIME_BODY);
    match Disk::new(&Paths::new(&root), Kind::ConfigDrive).fetch() {
        Ok(Fetch::Found(got)) => assert_eq!(got, MIME_BODY),
        other => panic!("{other:?}"),
    }
    assert!(!root.join("run/kubeboot").exists(), "nothing was mounted");
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn missing_disk_or_file_is_absent() {
    let root = tmpdir("nodisk");
    let got = Disk::new(&Paths::new(&root), Kind::NoCloud)
        .fetch()
        .unwrap();
    assert!(
        matches!(&got, Fetch::Absent(w) if w.contains("cidata")),
        "{got:?}"
    );
    fs::create_dir_all(root.join("seed")).unwrap();
    let got = Disk::from_dir(Kind::NoCloud, root.join("seed"))
        .fetch()
        .unwrap();
    assert!(
        matches!(&got, Fetch::Absent(w) if w.contains("user-data")),
        "{got:?}"
    );
    fs::write(root.join("seed/user-data"), b"").unwrap();
    assert!(matches!(
        Disk::from_dir(Kind::NoCloud, root.join("seed")).fetch(),
        Ok(Fetch::Absent(_))
    ));
    fs::remove_dir_all(&root).unwrap();
}
