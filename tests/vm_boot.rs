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

mod vm_support;

use std::path::{Path, PathBuf};

use vm_support::{Boot, boot, field, image_file, image_mode, num, prepare, report, setup};

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

/// The tools the config disk tests need besides the harness's.
const DISK_TOOLS: &[(&str, &str)] = &[
    ("genisoimage", "genisoimage"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
];

/// Makes the disk image with config disks `disks` (`LABEL:FS:USER_DATA`,
/// attached as /dev/vdb, /dev/vdc, ... in this order), boots it once and
/// returns the image, the console and the report.
fn boot_with_disks(
    name: &str,
    accel: &str,
    disks: &[String],
    second_read: Option<&str>,
) -> (PathBuf, String, String) {
    let list = disks.join(" ");
    let mut env = vec![("DISKS", list.as_str())];
    if let Some(label) = second_read {
        env.push(("SECOND_READ", label));
    }
    let vm = prepare(name, Some(&vm_support::userdata()), &env);
    for i in 1..=disks.len() {
        assert!(
            vm.disk.join(format!("seed-{i}.img")).is_file(),
            "no seed-{i}.img"
        );
    }
    assert!(
        image_file(&vm.img, "/var/lib/cloud/seed/nocloud/user-data").is_none(),
        "no seed directory in this image"
    );
    let (console, _) = boot(&vm.disk, 1, accel, &Boot::default());
    let r = report(&vm.img, 1, &console);
    eprintln!("vm_boot {name}: report:\n{r}");
    (vm.img, console, r)
}

/// The test's userdata with the cluster renamed, so that what kubeboot read
/// shows which disk it came from. Written to the target dir; returns its path.
fn userdata_named(cluster: &str) -> PathBuf {
    vm_support::userdata_variant(
        cluster,
        "  cluster:\n    name: vmtest\n",
        &format!("  cluster:\n    name: {cluster}\n"),
    )
}

#[test]
fn vm_boot_first_boot_runs_once() {
    let Some(accel) = setup("first boot", &[]) else {
        return;
    };
    let started = std::time::Instant::now();

    // 1. The base tree (cached) and this run's disk.
    let vm = prepare("vm-boot", Some(&vm_support::userdata()), &[]);
    let (disk, img, work) = (vm.disk, vm.img, vm.work);

    // 2. First boot: kubeboot runs.
    let (console1, _) = boot(&disk, 1, &accel, &Boot::default());
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
    let (console2, _) = boot(&disk, 2, &accel, &Boot::default());
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
    vm_support::cleanup(&disk);
}

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
    let Some(accel) = setup("cidata", DISK_TOOLS) else {
        return;
    };
    let vfat_data = userdata_named("vmtest-cidata-vfat");
    let disks = [
        "cidata:iso9660".to_string(),
        format!("CIDATA:vfat:{}", vfat_data.display()),
    ];
    let (img, console, r) = boot_with_disks("vm-boot-cidata", &accel, &disks, Some("cidata"));
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
    vm_support::cleanup(img.parent().expect("disk dir"));
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
    let Some(accel) = setup("config-2", DISK_TOOLS) else {
        return;
    };
    let data = userdata_named("vmtest-config-2");
    let disks = [format!("config-2:vfat:{}", data.display())];
    let (img, console, r) = boot_with_disks("vm-boot-config-2", &accel, &disks, None);
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
    vm_support::cleanup(img.parent().expect("disk dir"));
}
