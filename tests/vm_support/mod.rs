//! The QEMU TCG harness of the VM tests (`tests/vm_boot.rs`,
//! `tests/vm_images.rs`; docs/vm-test.md): the cached debootstrap base
//! tree (`image/vm/build-rootfs.sh`), the per-test disk
//! (`image/vm/prepare-image.sh`), bounded boots (direct kernel or PXE),
//! and reading the guest's report and files back from the ext4 image with
//! debugfs, without mounting anything.
//!
//! Gated by `KUBEBOOT_VM_TEST=1` ([`setup`]): the tests need root,
//! debootstrap and qemu-system-x86, and the first run downloads Debian from
//! the mirror (the only tests that talk to a non-loopback address, so they
//! must be asked for); without it each test prints a SKIP line, with it a
//! missing tool fails the test naming the Debian package. The guest's
//! network is QEMU user networking with `restrict=on`: DHCP (and TFTP) work,
//! nothing leaves the host.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
pub const KUBEBOOT: &str = env!("CARGO_BIN_EXE_kubeboot");

/// Debian packages this test needs on the host, by tool.
pub const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("debootstrap", "debootstrap"),
    ("mkfs.ext4", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("timeout", "coreutils"),
];

/// Bounds (generous: a slow shared 2-core machine, TCG emulation).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const PREPARE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

pub fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|d| d.join(tool).is_file())
}

/// Runs `cmd` under coreutils `timeout` (which kills the whole process group),
/// with stdout and stderr going to `log`. Panics with the log's tail on failure.
pub fn run_bounded(what: &str, cmd: &[&str], limit: Duration, log: &Path) -> Duration {
    run_bounded_env(what, cmd, &[], limit, log)
}

/// [`run_bounded`] with extra environment variables for the command.
pub fn run_bounded_env(
    what: &str,
    cmd: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
    log: &Path,
) -> Duration {
    match run_watched(what, cmd, env, limit, log, None) {
        Ok(took) => took,
        Err(()) => unreachable!("nothing watched"),
    }
}

/// The kernel's panic when, on a heavily loaded host, TCG delivered no
/// timer interrupt during its early IO-APIC timer check: an emulator
/// timing failure before the guest ran anything of ours.
pub const TIMER_CHECK_PANIC: &str = "IO-APIC + timer doesn't work!";

/// [`run_bounded_env`] that also watches the file `watch.0` once a second:
/// when it contains `watch.1`, the command is stopped (SIGTERM to
/// `timeout`, which passes it on) and `Err(())` returned.
fn run_watched(
    what: &str,
    cmd: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
    log: &Path,
    watch: Option<(&Path, &str)>,
) -> Result<Duration, ()> {
    let out = std::fs::File::create(log).expect("create log");
    let err = out.try_clone().expect("clone log");
    let start = Instant::now();
    let mut child = Command::new("timeout")
        .arg("-k")
        .arg("20")
        .arg(limit.as_secs().to_string())
        .args(cmd)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn timeout(1)");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for timeout(1)") {
            break status;
        }
        if let Some((file, needle)) = watch {
            let seen = std::fs::read(file).unwrap_or_default();
            if String::from_utf8_lossy(&seen).contains(needle) {
                let pid = child.id().to_string();
                let _ = Command::new("kill").args(["-TERM", &pid]).status();
                let _ = child.wait();
                eprintln!(
                    "vm: {what}: stopped after {:.1} s: {} shows {needle:?}",
                    start.elapsed().as_secs_f64(),
                    file.display()
                );
                return Err(());
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let took = start.elapsed();
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let why = if status.code() == Some(124) {
            format!("timed out after {} s", limit.as_secs())
        } else {
            format!("exited with {status}")
        };
        panic!(
            "{what} {why} (full log: {})\n--- last lines\n{}",
            log.display(),
            tail.join("\n")
        );
    }
    eprintln!("vm: {what}: {:.1} s", took.as_secs_f64());
    Ok(took)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Where base trees are cached: `$KUBEBOOT_VM_CACHE`, else `target/vm-cache`.
pub fn cache_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::env::var_os("KUBEBOOT_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.parent().unwrap_or(target).join("vm-cache"))
}

/// The cached base tree's directory, keyed by the recipe's SHA-256.
pub fn base_tree(cache: &Path, logs: &Path) -> PathBuf {
    let recipe = Path::new(REPO).join("image/vm/build-rootfs.sh");
    let text = std::fs::read(&recipe).expect("read image/vm/build-rootfs.sh");
    let key = hex(&ring::digest::digest(&ring::digest::SHA256, &text).as_ref()[..8]);
    let base = cache.join(format!("rootfs-{key}"));
    let built =
        |base: &Path| base.join("sbin/init").exists() || base.join("usr/sbin/init").exists();
    if built(&base) {
        eprintln!("vm: reusing cached base tree {}", base.display());
        return base;
    }
    // The tests in this file run in parallel and share the tree: one builds it
    // while the others wait on this lock, then find it built. (Two debootstraps
    // into the same `.partial` directory break each other.)
    std::fs::create_dir_all(cache).expect("create cache dir");
    let lock = std::fs::File::create(cache.join(format!("rootfs-{key}.lock")))
        .expect("create the base tree's lock file");
    lock.lock().expect("lock the base tree's lock file");
    if built(&base) {
        eprintln!("vm: base tree {} was built by another test", base.display());
        return base;
    }
    let took = run_bounded(
        "debootstrap base tree (first run only)",
        &[
            recipe.to_str().expect("utf-8 path"),
            base.to_str().expect("utf-8 path"),
        ],
        BUILD_TIMEOUT,
        &logs.join("build-rootfs.log"),
    );
    eprintln!(
        "vm: built base tree in {:.0} s (cached for later runs)",
        took.as_secs_f64()
    );
    base
}

/// Reads a file from the ext4 image with debugfs (no mount, no root tricks).
pub fn image_file(img: &Path, path: &str) -> Option<Vec<u8>> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(img)
        .stdin(Stdio::null())
        .output()
        .expect("run debugfs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || stderr.contains("File not found") {
        return None;
    }
    Some(out.stdout)
}

/// `debugfs stat` of a path in the image: `Some(mode)` when it exists.
pub fn image_mode(img: &Path, path: &str) -> Option<u32> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {path}"))
        .arg(img)
        .stdin(Stdio::null())
        .output()
        .expect("run debugfs");
    let text = String::from_utf8_lossy(&out.stdout);
    // "Inode: 1234   Type: regular    Mode:  0600   Flags: 0x80000"
    let mode = text.split("Mode:").nth(1)?.split_whitespace().next()?;
    u32::from_str_radix(mode, 8).ok()
}

/// One `key=value` line of a boot report.
pub fn field<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("boot report has no {key}=...\n{report}"))
}

pub fn num(report: &str, key: &str) -> u64 {
    field(report, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number\n{report}"))
}

/// How QEMU boots the disk.
#[derive(Default)]
pub struct Boot<'a> {
    /// `None`: the tree's kernel and initrd directly (`-kernel`, `-initrd`,
    /// `root=/dev/vda` on the command line). `Some((dir, file))`: PXE, the
    /// NIC's iPXE ROM first (`-boot order=n`), QEMU's DHCP naming `file`
    /// and its TFTP server serving `dir` (`-netdev user,tftp=,bootfile=`).
    pub pxe: Option<(&'a Path, &'a str)>,
    /// `guestfwd=` rules added to the user network.
    pub guestfwd: Vec<String>,
}

/// The NIC's iPXE ROM (Debian `ipxe-qemu`, a dependency of
/// qemu-system-x86): legacy PXE and EFI in one, QEMU's default option ROM
/// for virtio-net-pci; checked for so that a missing package fails clearly.
pub const IPXE_ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";

/// Boots the disk in `work` (boot number `n`, console to
/// `work/console-N.log`), bounded by [`BOOT_TIMEOUT`]. Returns the serial
/// console and how long the boot took (QEMU start to power-off).
pub fn boot(work: &Path, n: u32, accel: &str, how: &Boot<'_>) -> (String, Duration) {
    let console = work.join(format!("console-{n}.log"));
    let img = work.join("disk.img");
    let drive = format!("file={},if=virtio,format=raw", img.display());
    // The config disks prepare-image.sh made (DISKS), in order: /dev/vdb, ...
    let seeds: Vec<String> = (1..)
        .map(|i| work.join(format!("seed-{i}.img")))
        .take_while(|p| p.exists())
        .map(|p| format!("file={},if=virtio,format=raw,readonly=on", p.display()))
        .collect();
    let serial = format!("file:{}", console.display());
    let kernel = work.join("vmlinuz");
    let initrd = work.join("initrd.img");
    let machine = format!("q35,accel={accel}");
    let mut netdev = "user,id=n,restrict=on".to_string();
    // With PXE the NIC's option ROM is QEMU's default for virtio-net-pci,
    // IPXE_ROM, found in QEMU's data directories. (Naming it with
    // `romfile=` made SeaBIOS find no network boot device in QEMU 7.2.)
    let nic = "virtio-net-pci,netdev=n";
    if let Some((dir, file)) = how.pxe {
        write!(netdev, ",tftp={},bootfile={file}", dir.display()).expect("fmt");
    }
    for rule in &how.guestfwd {
        write!(netdev, ",guestfwd={rule}").expect("fmt");
    }
    let mut args = vec![
        "qemu-system-x86_64",
        "-machine",
        &machine,
        "-m",
        "1024",
        "-smp",
        "1",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        &serial,
    ];
    if how.pxe.is_some() {
        args.extend(["-boot", "order=n,strict=on"]);
    } else {
        args.extend([
            "-kernel",
            kernel.to_str().expect("utf-8 path"),
            "-initrd",
            initrd.to_str().expect("utf-8 path"),
            "-append",
            "root=/dev/vda rw console=ttyS0 systemd.unit=multi-user.target \
                 systemd.show_status=1 loglevel=4 panic=-1 no_timer_check",
        ]);
    }
    args.extend([
        "-drive",
        &drive,
        "-netdev",
        &netdev,
        "-device",
        nic,
        "-no-reboot",
    ]);
    for seed in &seeds {
        args.extend(["-drive", seed.as_str()]);
    }
    let name = work
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The kernel's early timer check can fail under TCG on a loaded host
    // (TIMER_CHECK_PANIC). Direct boots pass `no_timer_check`; a PXE boot's
    // command line is worker.ipxe's, so there the boot is stopped and
    // started again (at most twice): nothing of the image has run yet.
    for attempt in 1..=3 {
        let what = format!("{name} boot {n} (accel {accel})");
        let watch = Some((console.as_path(), TIMER_CHECK_PANIC));
        let log = work.join(format!("qemu-{n}.log"));
        let run = run_watched(&what, &args, &[], BOOT_TIMEOUT, &log, watch);
        let text = std::fs::read(&console).expect("read console log");
        let text = String::from_utf8_lossy(&text).into_owned();
        // (with panic=-1 the guest may reboot, so QEMU exits, before the
        // watch looks)
        match run {
            Ok(took) if !text.contains(TIMER_CHECK_PANIC) => return (text, took),
            _ if attempt < 3 => {
                let _ = std::fs::rename(&console, work.join(format!("console-{n}-{attempt}.log")));
                eprintln!("vm: {what}: the guest kernel's timer check failed; booting again");
            }
            _ => {}
        }
    }
    panic!(
        "{name} boot {n}: the guest kernel's timer check failed three times ({TIMER_CHECK_PANIC})"
    )
}

/// The report `files/kubeboot-vm-report` wrote in boot `n`.
pub fn report(img: &Path, n: u32, console: &str) -> String {
    let path = format!("/var/lib/kubeboot-vm/report-{n}.txt");
    let bytes = image_file(img, &path)
        .unwrap_or_else(|| panic!("boot {n} wrote no {path}; console:\n{console}"));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Writes the host file `local` to `path` in the ext4 image (mode 0600,
/// root-owned), replacing what was there, with `debugfs -w` (no mount).
pub fn image_replace(img: &Path, path: &str, local: &Path) {
    let (dir, name) = path.rsplit_once('/').expect("absolute path");
    let script = format!(
        "cd {dir}\nrm {name}\nwrite {} {name}\nsif {name} mode 0100600\nsif {name} uid 0\nsif {name} gid 0\n",
        local.display()
    );
    let out = Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg("-")
        .arg(img)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())?;
            c.wait_with_output()
        })
        .expect("run debugfs -w");
    assert!(out.status.success(), "debugfs -w: {out:?}");
    let got = image_file(img, path).expect("the replaced file");
    assert_eq!(
        got,
        std::fs::read(local).expect("read local file"),
        "debugfs did not write {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(image_mode(img, path), Some(0o600), "{path}");
}

pub fn is_root() -> bool {
    // Effective uid 0, read without adding a dependency feature.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Whether the VM tests were asked for (`KUBEBOOT_VM_TEST=1`); a SKIP line
/// on stderr when not.
pub fn requested(what: &str) -> bool {
    if std::env::var("KUBEBOOT_VM_TEST").as_deref() == Ok("1") {
        return true;
    }
    // Written to the stderr handle, not through eprintln!: libtest
    // captures the macros' output of passing tests, and a skip must show.
    let _ = writeln!(
        std::io::stderr(),
        "SKIP vm {what}: set KUBEBOOT_VM_TEST=1 (needs root, qemu-system-x86, debootstrap, \
         e2fsprogs, and the Debian mirror for the first, cached, image build; docs/vm-test.md)"
    );
    false
}

/// `None` (after a SKIP line) unless the VM tests were asked for; then
/// fails unless root and every tool of [`TOOLS`] and `extra` (tool,
/// Debian package) is there. Returns the accelerator
/// (`KUBEBOOT_VM_ACCEL`, default `tcg`).
pub fn setup(what: &str, extra: &[(&str, &str)]) -> Option<String> {
    if !requested(what) {
        return None;
    }
    let missing: Vec<String> = TOOLS
        .iter()
        .chain(extra)
        .filter(|(t, _)| !on_path(t) && !Path::new(t).is_file())
        .map(|(t, p)| format!("{t} (Debian package {p})"))
        .collect();
    assert!(
        missing.is_empty(),
        "KUBEBOOT_VM_TEST=1 but missing: {} (./test.sh installs them as root)",
        missing.join(", ")
    );
    assert!(
        is_root(),
        "KUBEBOOT_VM_TEST=1 needs root: debootstrap chroots and the image keeps root-owned files"
    );
    Some(std::env::var("KUBEBOOT_VM_ACCEL").unwrap_or_else(|_| "tcg".into()))
}

/// One test's disk: `work` = `target/tmp/<name>`, the disk directory
/// `work/disk` (kernel, initrd, seeds, consoles) and its `disk.img`.
pub struct Vm {
    pub work: PathBuf,
    pub disk: PathBuf,
    pub img: PathBuf,
}

/// Makes test `name`'s disk from the cached base tree with
/// `image/vm/prepare-image.sh` (`userdata`: a file, or `None` for no
/// userdata in the image; `env`: the script's variants, e.g. `DISKS`,
/// `SYSEXT`, `PXE`, `KUBEBOOT_ARGS`).
pub fn prepare(name: &str, userdata: Option<&Path>, env: &[(&str, &str)]) -> Vm {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let work = target.join(name);
    std::fs::create_dir_all(&work).expect("create work dir");
    let base = base_tree(&cache_dir(), &work);
    let disk = work.join("disk");
    let prepare = Path::new(REPO).join("image/vm/prepare-image.sh");
    let userdata = userdata.map_or("none", |p| p.to_str().expect("utf-8 path"));
    run_bounded_env(
        &format!("{name}: prepare disk image"),
        &[
            prepare.to_str().expect("utf-8 path"),
            base.to_str().expect("utf-8 path"),
            KUBEBOOT,
            userdata,
            disk.to_str().expect("utf-8 path"),
        ],
        env,
        PREPARE_TIMEOUT,
        &work.join("prepare.log"),
    );
    let img = disk.join("disk.img");
    Vm { work, disk, img }
}

/// Removes the big files of a disk directory (the disk and seed images, the
/// kernel, the initrd, the TFTP directory) once a test has passed; the
/// consoles, QEMU's and prepare's logs stay for reading.
pub fn cleanup(disk: &Path) {
    let Ok(entries) = std::fs::read_dir(disk) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if name == "tftp" {
            let _ = std::fs::remove_dir_all(&p);
        } else if name.ends_with(".img") || name == "vmlinuz" {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// The VM userdata (`image/vm/files/user-data`) with `from` replaced by
/// `to`, written to `target/tmp/user-data-<name>`; returns its path.
pub fn userdata_variant(name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(Path::new(REPO).join("image/vm/files/user-data"))
        .expect("read image/vm/files/user-data");
    assert!(text.contains(from), "user-data has no {from:?} to replace");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("user-data-{name}"));
    std::fs::write(&out, text.replace(from, to)).expect("write user-data copy");
    out
}

/// The test's userdata, unchanged.
pub fn userdata() -> PathBuf {
    Path::new(REPO).join("image/vm/files/user-data")
}
