//! A real systemd boot under QEMU: the kubeboot binary and `units/kubeboot.service`
//! installed into a minimal Debian bookworm image with a NoCloud seed, booted twice.
//!
//! Boot 1 proves that the unit runs at first boot after `network-online.target`,
//! finds `/var/lib/cloud/seed/nocloud/user-data`, writes the whole control-plane
//! node, enables and starts `kubelet.service` (a stand-in) through the real
//! systemd without deadlocking, records `status.json` and the marker, and prints
//! its console line on the serial console. Boot 2 of the same disk proves that
//! the unit is skipped by `ConditionPathExists=!/var/lib/kubeboot/done` and that
//! the status file is left alone.
//!
//! Two more tests boot from config disks instead of the seed directory and
//! prove kubeboot's real mount path, platform detected from the label only:
//! an OpenStack `config-2` drive on vfat, and NoCloud `cidata` disks on
//! iso9660 (firstboot) and vfat (a second read with `config show --source
//! auto` in the same boot). A kprobe trace of mount(2)/umount2(2) in the
//! guest shows each read-only mount and its unmount.
//!
//! The image recipe is `image/vm/` (see `docs/vm-test.md`). Gated by
//! `KUBEBOOT_VM_TEST=1`: it needs root, debootstrap and qemu-system-x86, and its
//! first run downloads Debian from the mirror (the only test that talks to a
//! non-loopback address, so it must be asked for); without it the test prints a
//! SKIP line. The guest's network is QEMU user networking with `restrict=on`:
//! DHCP works, nothing leaves the host.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const KUBEBOOT: &str = env!("CARGO_BIN_EXE_kubeboot");

/// Debian packages this test needs on the host, by tool.
const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("debootstrap", "debootstrap"),
    ("mkfs.ext4", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("timeout", "coreutils"),
];

/// Bounds (generous: a slow shared 2-core machine, TCG emulation).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const PREPARE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const BOOT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|d| d.join(tool).is_file())
}

/// Runs `cmd` under coreutils `timeout` (which kills the whole process group),
/// with stdout and stderr going to `log`. Panics with the log's tail on failure.
fn run_bounded(what: &str, cmd: &[&str], limit: Duration, log: &Path) -> Duration {
    run_bounded_env(what, cmd, &[], limit, log)
}

/// [`run_bounded`] with extra environment variables for the command.
fn run_bounded_env(
    what: &str,
    cmd: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
    log: &Path,
) -> Duration {
    let out = std::fs::File::create(log).expect("create log");
    let err = out.try_clone().expect("clone log");
    let start = Instant::now();
    let status = Command::new("timeout")
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
        .status()
        .expect("spawn timeout(1)");
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
    eprintln!("vm_boot: {what}: {:.1} s", took.as_secs_f64());
    took
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Where base trees are cached: `$KUBEBOOT_VM_CACHE`, else `target/vm-cache`.
fn cache_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::env::var_os("KUBEBOOT_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.parent().unwrap_or(target).join("vm-cache"))
}

/// The cached base tree's directory, keyed by the recipe's SHA-256.
fn base_tree(cache: &Path, logs: &Path) -> PathBuf {
    let recipe = Path::new(REPO).join("image/vm/build-rootfs.sh");
    let text = std::fs::read(&recipe).expect("read image/vm/build-rootfs.sh");
    let key = hex(&ring::digest::digest(&ring::digest::SHA256, &text).as_ref()[..8]);
    let base = cache.join(format!("rootfs-{key}"));
    let built =
        |base: &Path| base.join("sbin/init").exists() || base.join("usr/sbin/init").exists();
    if built(&base) {
        eprintln!("vm_boot: reusing cached base tree {}", base.display());
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
        eprintln!(
            "vm_boot: base tree {} was built by another test",
            base.display()
        );
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
        "vm_boot: built base tree in {:.0} s (cached for later runs)",
        took.as_secs_f64()
    );
    base
}

/// Reads a file from the ext4 image with debugfs (no mount, no root tricks).
fn image_file(img: &Path, path: &str) -> Option<Vec<u8>> {
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
fn image_mode(img: &Path, path: &str) -> Option<u32> {
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
fn field<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("boot report has no {key}=...\n{report}"))
}

fn num(report: &str, key: &str) -> u64 {
    field(report, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number\n{report}"))
}

fn boot(work: &Path, n: u32, accel: &str) -> String {
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
        "-kernel",
        kernel.to_str().expect("utf-8 path"),
        "-initrd",
        initrd.to_str().expect("utf-8 path"),
        "-append",
        "root=/dev/vda rw console=ttyS0 systemd.unit=multi-user.target \
             systemd.show_status=1 loglevel=4 panic=-1",
        "-drive",
        &drive,
        "-netdev",
        "user,id=n,restrict=on",
        "-device",
        "virtio-net-pci,netdev=n",
        "-no-reboot",
    ];
    for seed in &seeds {
        args.extend(["-drive", seed.as_str()]);
    }
    run_bounded(
        &format!("boot {n} (accel {accel})"),
        &args,
        BOOT_TIMEOUT,
        &work.join(format!("qemu-{n}.log")),
    );
    let text = std::fs::read(&console).expect("read console log");
    String::from_utf8_lossy(&text).into_owned()
}

fn report(img: &Path, n: u32, console: &str) -> String {
    let path = format!("/var/lib/kubeboot-vm/report-{n}.txt");
    let bytes = image_file(img, &path)
        .unwrap_or_else(|| panic!("boot {n} wrote no {path}; console:\n{console}"));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One event the guest's mount/umount kprobes caught
/// (`files/kubeboot-vm-trace`), from the report's trace section.
#[derive(Debug)]
struct Probe {
    comm: String,
    pid: u32,
    event: String,
    args: Vec<(String, String)>,
}

impl Probe {
    fn arg(&self, key: &str) -> &str {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("trace event has no {key}: {self:?}"))
    }
}

/// Parses trace lines like
/// `kubeboot-240 [000] d.... 22.84: mount: (__x64_sys_mount+0x0/0xd0) dev="/dev/vdb" ... flags=0xf`.
fn probes(report: &str) -> Vec<Probe> {
    let section = report
        .split("--- trace")
        .nth(1)
        .and_then(|r| r.split("--- status.json").next())
        .unwrap_or_else(|| panic!("the report has no trace section:\n{report}"));
    let mut out = Vec::new();
    for line in section.lines().skip(1) {
        let line = line.trim();
        let Some((head, rest)) = line.split_once(": (") else {
            continue;
        };
        let Some((_, args)) = rest.split_once(") ") else {
            continue;
        };
        let mut words = head.split_whitespace();
        let Some((comm, pid)) = words.next().and_then(|t| t.rsplit_once('-')) else {
            continue;
        };
        let (Ok(pid), Some(event)) = (pid.parse(), words.last()) else {
            continue;
        };
        out.push(Probe {
            comm: comm.to_string(),
            pid,
            event: event.to_string(),
            args: args
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect(),
        });
    }
    out
}

/// The mount/umount syscalls made by kubeboot processes.
fn kubeboot_probes(report: &str) -> Vec<Probe> {
    assert_eq!(
        field(report, "trace_probes"),
        "4",
        "the mount/umount kprobes were not armed:\n{report}"
    );
    probes(report)
        .into_iter()
        .filter(|p| p.comm == "kubeboot")
        .collect()
}

/// Asserts from the syscall trace that a kubeboot process mounted `dev`
/// with filesystem `fstype` read-only (`MS_RDONLY|MS_NOSUID|MS_NODEV|
/// MS_NOEXEC` = 0xf) on its private `/run/kubeboot/disk-<pid>-<label>`,
/// the mount succeeded, and the same process unmounted it (umount2
/// returned 0). Returns that process's pid.
fn assert_disk_mounted(report: &str, dev: &str, fstype: &str, label: &str) -> u32 {
    let events = kubeboot_probes(report);
    let i = events
        .iter()
        .position(|p| p.event == "mount" && p.arg("dev") == dev)
        .unwrap_or_else(|| panic!("no kubeboot mount of {dev} in the trace: {events:#?}"));
    let m = &events[i];
    let dir = format!("/run/kubeboot/disk-{}-{label}", m.pid);
    assert_eq!(m.arg("fstype"), fstype, "{m:?}");
    assert_eq!(m.arg("dir"), dir, "{m:?}");
    assert_eq!(
        m.arg("flags"),
        "0xf",
        "not MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC: {m:?}"
    );
    let same: Vec<&Probe> = events[i + 1..].iter().filter(|p| p.pid == m.pid).collect();
    let names: Vec<&str> = same.iter().map(|p| p.event.as_str()).collect();
    assert!(
        names.starts_with(&["mount_ret", "umount", "umount_ret"]),
        "after mounting {dev}, process {} made {names:?}, want mount_ret, umount, umount_ret",
        m.pid
    );
    assert_eq!(
        same[0].arg("ret"),
        "0",
        "mount(2) of {dev} failed: {:?}",
        same[0]
    );
    assert_eq!(same[1].arg("dir"), dir, "{:?}", same[1]);
    assert_eq!(
        same[2].arg("ret"),
        "0",
        "umount2(2) of {dir} failed: {:?}",
        same[2]
    );
    m.pid
}

/// Makes the disk image with config disks `disks` (`LABEL:FS:USER_DATA`,
/// attached as /dev/vdb, /dev/vdc, ... in this order), boots it once and
/// returns the image, the console and the report.
fn boot_with_disks(
    name: &str,
    disks: &[String],
    second_read: Option<&str>,
) -> (PathBuf, String, String) {
    assert!(rustix_is_root(), "KUBEBOOT_VM_TEST=1 needs root");
    for (tool, package) in [
        ("genisoimage", "genisoimage"),
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
    ] {
        assert!(
            on_path(tool),
            "{tool} (Debian package {package}) is required"
        );
    }
    let accel = std::env::var("KUBEBOOT_VM_ACCEL").unwrap_or_else(|_| "tcg".into());
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let work = target.join(name);
    std::fs::create_dir_all(&work).expect("create work dir");
    let base = base_tree(&cache_dir(), &work);
    let disk = work.join("disk");
    let prepare = Path::new(REPO).join("image/vm/prepare-image.sh");
    let userdata = Path::new(REPO).join("image/vm/files/user-data");
    let list = disks.join(" ");
    let mut env = vec![("DISKS", list.as_str())];
    if let Some(label) = second_read {
        env.push(("SECOND_READ", label));
    }
    run_bounded_env(
        "prepare disk image with config disks",
        &[
            prepare.to_str().expect("utf-8 path"),
            base.to_str().expect("utf-8 path"),
            KUBEBOOT,
            userdata.to_str().expect("utf-8 path"),
            disk.to_str().expect("utf-8 path"),
        ],
        &env,
        PREPARE_TIMEOUT,
        &work.join("prepare.log"),
    );
    for i in 1..=disks.len() {
        assert!(
            disk.join(format!("seed-{i}.img")).is_file(),
            "no seed-{i}.img"
        );
    }
    let img = disk.join("disk.img");
    assert!(
        image_file(&img, "/var/lib/cloud/seed/nocloud/user-data").is_none(),
        "no seed directory in this image"
    );
    let console = boot(&disk, 1, &accel);
    let r = report(&img, 1, &console);
    eprintln!("vm_boot {name}: report:\n{r}");
    (img, console, r)
}

/// The test's userdata with the cluster renamed, so that what kubeboot read
/// shows which disk it came from. Written to the target dir; returns its path.
fn userdata_named(cluster: &str) -> PathBuf {
    let text = std::fs::read_to_string(Path::new(REPO).join("image/vm/files/user-data"))
        .expect("read image/vm/files/user-data");
    let from = "  cluster:\n    name: vmtest\n";
    assert!(
        text.contains(from),
        "user-data has no cluster name to replace"
    );
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("user-data-{cluster}"));
    std::fs::write(
        &out,
        text.replace(from, &format!("  cluster:\n    name: {cluster}\n")),
    )
    .expect("write user-data copy");
    out
}

#[test]
fn vm_boot_first_boot_runs_once() {
    if std::env::var("KUBEBOOT_VM_TEST").as_deref() != Ok("1") {
        // Written to the stderr handle, not through eprintln!: libtest
        // captures the macros' output of passing tests, and a skip must show.
        let _ = writeln!(
            std::io::stderr(),
            "SKIP vm_boot: set KUBEBOOT_VM_TEST=1 (needs root, qemu-system-x86, debootstrap, \
             e2fsprogs, and the Debian mirror for the first, cached, image build; \
             ~4 min first run, ~2 min cached; docs/vm-test.md)"
        );
        return;
    }
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(t, _)| !on_path(t))
        .map(|(t, p)| format!("{t} (Debian package {p})"))
        .collect();
    assert!(
        missing.is_empty(),
        "KUBEBOOT_VM_TEST=1 but missing: {}; apt-get install qemu-system-x86 debootstrap e2fsprogs",
        missing.join(", ")
    );
    assert!(
        rustix_is_root(),
        "KUBEBOOT_VM_TEST=1 needs root: debootstrap chroots and the image keeps root-owned files"
    );
    let accel = std::env::var("KUBEBOOT_VM_ACCEL").unwrap_or_else(|_| "tcg".into());
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let cache = cache_dir();
    let work = target.join("vm-boot");
    std::fs::create_dir_all(&work).expect("create work dir");
    let logs = work.clone();
    let started = Instant::now();

    // 1. The base tree (cached) and this run's disk.
    let base = base_tree(&cache, &logs);
    let disk = work.join("disk");
    let prepare = Path::new(REPO).join("image/vm/prepare-image.sh");
    let userdata = Path::new(REPO).join("image/vm/files/user-data");
    run_bounded(
        "prepare disk image",
        &[
            prepare.to_str().expect("utf-8 path"),
            base.to_str().expect("utf-8 path"),
            KUBEBOOT,
            userdata.to_str().expect("utf-8 path"),
            disk.to_str().expect("utf-8 path"),
        ],
        PREPARE_TIMEOUT,
        &logs.join("prepare.log"),
    );
    let img = disk.join("disk.img");

    // 2. First boot: kubeboot runs.
    let console1 = boot(&disk, 1, &accel);
    let r1 = report(&img, 1, &console1);
    eprintln!("vm_boot: boot 1 report:\n{r1}");
    assert!(
        console1.contains("kubeboot: init succeeded"),
        "no `kubeboot: init succeeded` on the serial console of boot 1:\n{console1}"
    );
    assert_eq!(field(&r1, "kubeboot.service.ConditionResult"), "yes");
    assert_eq!(field(&r1, "kubeboot.service.Result"), "success");
    assert_eq!(field(&r1, "kubeboot.service.ExecMainStatus"), "0");
    assert_eq!(field(&r1, "kubeboot.service.ActiveState"), "active");
    // Ordering: the network was online (systemd-networkd-wait-online
    // succeeded under restrict=on) before kubeboot's process started.
    assert_eq!(field(&r1, "network-online.target.ActiveState"), "active");
    assert_eq!(
        field(&r1, "systemd-networkd-wait-online.service.Result"),
        "success"
    );
    let online = num(&r1, "network-online.target.ActiveEnterTimestampMonotonic");
    let kb_start = num(&r1, "kubeboot.service.ExecMainStartTimestampMonotonic");
    assert!(
        online > 0 && kb_start >= online,
        "kubeboot started ({kb_start} us) before network-online.target ({online} us)"
    );
    // No deadlock: kubeboot enabled and started the kubelet, finished, and
    // the kubelet is running (it is not enabled in the image itself).
    assert_eq!(field(&r1, "kubelet.service.ActiveState"), "active");
    assert_eq!(field(&r1, "kubelet.service.UnitFileState"), "enabled");
    let kubelet_start = num(&r1, "kubelet.service.ExecMainStartTimestampMonotonic");
    assert!(
        kubelet_start >= kb_start,
        "the kubelet ran before kubeboot started it"
    );
    // Before=multi-user.target: the boot "finished" only after kubeboot did.
    assert_eq!(field(&r1, "multi-user.target.ActiveState"), "active");
    let kb_done = num(&r1, "kubeboot.service.ActiveEnterTimestampMonotonic");
    let mu = num(&r1, "multi-user.target.ActiveEnterTimestampMonotonic");
    assert!(
        mu >= kb_done,
        "multi-user.target ({mu} us) was reached before kubeboot finished ({kb_done} us)"
    );
    // The guest's address came from QEMU's DHCP under restrict=on.
    assert!(
        r1.contains("DHCPv4 address 10.0.2.15"),
        "systemd-networkd did not get 10.0.2.15 by DHCP:\n{r1}"
    );
    assert!(
        r1.contains("using nocloud seed /var/lib/cloud/seed/nocloud/user-data"),
        "the journal does not say the NoCloud seed was used:\n{r1}"
    );
    // The seed directory is read in place: kubeboot mounted nothing.
    let mounts = kubeboot_probes(&r1);
    assert!(mounts.is_empty(), "kubeboot mounted something: {mounts:#?}");
    assert!(
        console1.contains("[kubelet-start] kubelet restarted"),
        "kubeboot's progress is not on the serial console:\n{console1}"
    );

    // The node on disk.
    let status1 = image_file(&img, "/var/lib/kubeboot/status.json")
        .expect("no /var/lib/kubeboot/status.json after boot 1");
    let st: serde_json::Value = serde_json::from_slice(&status1).expect("status.json is JSON");
    assert_eq!(st["result"], "success", "{st}");
    assert_eq!(st["role"], "init", "{st}");
    assert!(
        st["source"]
            .as_str()
            .is_some_and(|s| s.contains("/var/lib/cloud/seed/nocloud/user-data")),
        "status source: {st}"
    );
    assert!(
        image_mode(&img, "/var/lib/kubeboot/done").is_some(),
        "no marker /var/lib/kubeboot/done after boot 1"
    );
    for (path, mode) in [
        ("/etc/kubernetes/pki/ca.crt", 0o644),
        ("/etc/kubernetes/pki/ca.key", 0o600),
        ("/etc/kubernetes/pki/apiserver.crt", 0o644),
        ("/etc/kubernetes/pki/apiserver-kubelet-client.key", 0o600),
        ("/etc/kubernetes/pki/front-proxy-ca.crt", 0o644),
        ("/etc/kubernetes/pki/sa.key", 0o600),
        ("/etc/kubernetes/pki/sa.pub", 0o600),
        ("/etc/kubernetes/pki/etcd/ca.crt", 0o644),
        ("/etc/kubernetes/pki/etcd/server.key", 0o600),
        ("/etc/kubernetes/admin.conf", 0o600),
        ("/etc/kubernetes/super-admin.conf", 0o600),
        ("/etc/kubernetes/controller-manager.conf", 0o600),
        ("/etc/kubernetes/scheduler.conf", 0o600),
        ("/etc/kubernetes/kubelet.conf", 0o600),
        ("/etc/kubernetes/manifests/etcd.yaml", 0o600),
        ("/etc/kubernetes/manifests/kube-apiserver.yaml", 0o600),
        (
            "/etc/kubernetes/manifests/kube-controller-manager.yaml",
            0o600,
        ),
        ("/etc/kubernetes/manifests/kube-scheduler.yaml", 0o600),
        ("/var/lib/kubelet/config.yaml", 0o600),
        ("/var/lib/kubelet/kubeadm-flags.env", 0o644),
    ] {
        let got = image_mode(&img, path).unwrap_or_else(|| panic!("{path} missing after boot 1"));
        assert_eq!(got, mode, "{path}: mode {got:04o}, want {mode:04o}");
    }
    let apiserver = image_file(&img, "/etc/kubernetes/manifests/kube-apiserver.yaml")
        .expect("kube-apiserver.yaml");
    assert!(
        String::from_utf8_lossy(&apiserver).contains("--advertise-address=10.0.2.15"),
        "the API server manifest does not advertise the guest's address"
    );

    // 3. Second boot of the same disk: the unit is skipped.
    let console2 = boot(&disk, 2, &accel);
    let r2 = report(&img, 2, &console2);
    eprintln!("vm_boot: boot 2 report:\n{r2}");
    assert!(
        !console2.contains("kubeboot: init succeeded"),
        "kubeboot ran again on boot 2:\n{console2}"
    );
    assert_eq!(field(&r2, "kubeboot.service.ConditionResult"), "no");
    assert_eq!(field(&r2, "kubeboot.service.ActiveState"), "inactive");
    assert_eq!(
        field(&r2, "kubeboot.service.ExecMainStartTimestampMonotonic"),
        "0"
    );
    assert!(
        r2.contains("ConditionPathExists=!/var/lib/kubeboot/done"),
        "boot 2's journal does not show the skip by the marker condition:\n{r2}"
    );
    // The kubelet, enabled by kubeboot in boot 1, now starts on its own.
    assert_eq!(field(&r2, "kubelet.service.ActiveState"), "active");
    let status2 = image_file(&img, "/var/lib/kubeboot/status.json").expect("status.json");
    assert_eq!(status1, status2, "status.json changed on boot 2");

    eprintln!(
        "vm_boot: total {:.0} s (work dir {})",
        started.elapsed().as_secs_f64(),
        work.display()
    );
}

fn rustix_is_root() -> bool {
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

fn vm_test_requested(what: &str) -> bool {
    if std::env::var("KUBEBOOT_VM_TEST").as_deref() == Ok("1") {
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIP vm_boot {what}: set KUBEBOOT_VM_TEST=1 (docs/vm-test.md)"
    );
    false
}

/// Checks the node kubeboot wrote from a config disk: the run succeeded,
/// `status.json` names `source`, the marker is there, and the cluster is
/// the one the disk's userdata named.
fn assert_node_from_disk(img: &Path, console: &str, r: &str, source: &str, cluster: &str) {
    assert!(console.contains("kubeboot: init succeeded"), "{console}");
    assert_eq!(field(r, "kubeboot.service.Result"), "success", "{r}");
    let status = image_file(img, "/var/lib/kubeboot/status.json").expect("status.json");
    let st: serde_json::Value = serde_json::from_slice(&status).expect("JSON");
    assert_eq!(st["result"], "success", "{st}");
    assert_eq!(st["role"], "init", "{st}");
    assert_eq!(st["source"].as_str(), Some(source), "{st}");
    assert!(
        image_mode(img, "/var/lib/kubeboot/done").is_some(),
        "no marker"
    );
    for (path, mode) in [
        ("/etc/kubernetes/pki/ca.key", 0o600),
        ("/etc/kubernetes/admin.conf", 0o600),
        ("/etc/kubernetes/manifests/kube-apiserver.yaml", 0o600),
        ("/var/lib/kubelet/config.yaml", 0o600),
    ] {
        assert_eq!(image_mode(img, path), Some(mode), "{path}");
    }
    let admin = image_file(img, "/etc/kubernetes/admin.conf").expect("admin.conf");
    assert!(
        String::from_utf8_lossy(&admin).contains(&format!("name: {cluster}")),
        "admin.conf does not name cluster {cluster}: the config did not come from the disk"
    );
    assert_eq!(
        field(r, "kubeboot_mounts"),
        "0",
        "a config-disk mount was left behind (/proc/self/mountinfo):\n{r}"
    );
}

/// NoCloud disks, iso9660 and vfat, in one boot. `/dev/vdb` is iso9660
/// labelled `cidata` (genisoimage), `/dev/vdc` vfat labelled `CIDATA`
/// (mkfs.vfat + mcopy, no host mount), each with its own cluster name.
/// kubeboot's firstboot detects the NoCloud platform from the label
/// (`/dev/disk/by-label/cidata` is looked up before `CIDATA`), mounts the
/// iso9660 disk read-only, reads it, unmounts it and writes the node. Then
/// the report removes the `cidata` link and runs `kubeboot config show
/// --source auto`: the same detection and source chain now find the vfat
/// disk by its label and mount it (the kernel loads fat/vfat and the nls
/// modules on demand). A kprobe trace of mount(2)/umount2(2) shows each
/// mount's device, type and read-only flags, and each unmount.
#[test]
fn vm_boot_reads_a_cidata_disk() {
    if !vm_test_requested("cidata") {
        return;
    }
    let vfat_data = userdata_named("vmtest-cidata-vfat");
    let disks = [
        "cidata:iso9660".to_string(),
        format!("CIDATA:vfat:{}", vfat_data.display()),
    ];
    let (img, console, r) = boot_with_disks("vm-boot-cidata", &disks, Some("cidata"));
    assert!(
        r.contains("platform: nocloud (block device /dev/vdb is labelled cidata)"),
        "platform not detected from the disk label:\n{r}"
    );
    assert!(
        r.contains("using nocloud disk labelled cidata/CIDATA"),
        "the cidata disk was not the source:\n{r}"
    );
    assert_node_from_disk(
        &img,
        &console,
        &r,
        "nocloud disk labelled cidata/CIDATA",
        "vmtest",
    );
    let firstboot = assert_disk_mounted(&r, "/dev/vdb", "iso9660", "cidata");
    assert!(
        r.contains(&format!(
            "kubeboot[{firstboot}]: [source] using nocloud disk"
        )),
        "the iso9660 mount was not firstboot's:\n{r}"
    );

    // The second read: the vfat disk, found by its label.
    assert_eq!(field(&r, "second_read_exit"), "0", "{r}");
    let show = assert_disk_mounted(&r, "/dev/vdc", "vfat", "cidata");
    assert_ne!(show, firstboot);
    let second = r
        .split("--- kubeboot config show")
        .nth(1)
        .expect("second read section");
    // (the reason names the label as found on the disk)
    assert!(
        second.contains("platform: nocloud (block device /dev/vdc is labelled CIDATA)"),
        "the vfat disk was not detected by its label:\n{second}"
    );
    assert!(
        second.contains("\"vmtest-cidata-vfat\""),
        "config show did not print the vfat disk's cluster name:\n{second}"
    );
    let modules = field(&r, "fs_modules");
    for m in ["isofs", "fat", "vfat"] {
        assert!(
            modules.split_whitespace().any(|x| x == m),
            "module {m} not loaded: {modules}"
        );
    }
}

/// An OpenStack config drive: vfat labelled `config-2` (lowercase, as
/// Nova's `mkfs.vfat -n config-2` makes it; built with mkfs.vfat + mcopy,
/// no host mount) holding `openstack/latest/user_data` and
/// `meta_data.json`, as `/dev/vdb`. kubeboot detects the `configdrive`
/// platform from the label (no `--platform`), mounts the disk vfat
/// read-only in its private directory, reads the userdata, unmounts it and
/// writes the node.
#[test]
fn vm_boot_reads_a_vfat_config_drive() {
    if !vm_test_requested("config-2") {
        return;
    }
    let data = userdata_named("vmtest-config-2");
    let disks = [format!("config-2:vfat:{}", data.display())];
    let (img, console, r) = boot_with_disks("vm-boot-config-2", &disks, None);
    assert!(
        r.contains("platform: configdrive (block device /dev/vdb is labelled config-2)"),
        "platform not detected from the disk label:\n{r}"
    );
    assert!(
        r.contains("using config-drive disk labelled config-2/CONFIG-2"),
        "the config drive was not the source:\n{r}"
    );
    assert_node_from_disk(
        &img,
        &console,
        &r,
        "config-drive disk labelled config-2/CONFIG-2",
        "vmtest-config-2",
    );
    let pid = assert_disk_mounted(&r, "/dev/vdb", "vfat", "config-2");
    assert!(
        r.contains(&format!(
            "kubeboot[{pid}]: [source] using config-drive disk"
        )),
        "the vfat mount was not firstboot's:\n{r}"
    );
    let mounts = kubeboot_probes(&r)
        .iter()
        .filter(|p| p.event == "mount")
        .count();
    assert_eq!(
        mounts, 1,
        "kubeboot mounted more than the config drive:\n{r}"
    );
    let modules = field(&r, "fs_modules");
    assert!(
        modules.split_whitespace().any(|x| x == "vfat"),
        "the vfat module was not loaded: {modules}"
    );
}
