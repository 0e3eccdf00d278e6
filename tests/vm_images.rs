//! VM boots of the ways images carry kubeboot (issue 9), in the harness of
//! `tests/vm_boot.rs` (`tests/vm_support`; docs/vm-test.md):
//!
//! - `vm_pxe_worker_joins_from_the_kernel_command_line`: a real PXE boot.
//!   QEMU's user network (`restrict=on`) serves DHCP and TFTP; the NIC's
//!   iPXE ROM runs the shipped `image/pxe/worker.ipxe`, which loads the
//!   kernel and initrd with `kubeboot.role=worker kubeboot.server=...
//!   kubeboot.token=... kubeboot.ca-cert-hash=...`; kubeboot reads them from
//!   `/proc/cmdline` and joins the strict API stand-in (tests/api_support)
//!   listening on the host's 127.0.0.1, reached only through a `guestfwd`
//!   rule.
//! - `vm_sysext_kubeboot_runs_from_the_extension`: the image has no
//!   kubeboot; `systemd-sysext` merges the image that
//!   `image/sysext/build-sysext.sh` built, and the unit from the extension
//!   runs the binary from the extension.
//! - `vm_failed_first_boot_then_fixed_userdata_succeeds`: bad userdata
//!   fails the first boot (console line naming the field, status
//!   `invalid-input`, no marker); the fixed userdata succeeds on the next.
//!
//! Gated by `KUBEBOOT_VM_TEST=1` like the other VM tests.

mod api_support;
mod net_support;
mod vm_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use api_support::{CLUSTER_INFO, Options, StandIn};
use base64::Engine;
use vm_support::{
    Boot, KUBEBOOT, boot, field, image_file, image_mode, image_replace, prepare, report, setup,
    userdata, userdata_variant,
};

/// The bootstrap token of the PXE boot (a throwaway for the stand-in).
const TOKEN_ID: &str = "vmpxe1";
const TOKEN_SECRET: &str = "0123456789abcdef";
/// Where the guest reaches the API stand-in: an address of QEMU's user
/// network that only the `guestfwd` rule answers.
const API_GUEST: &str = "10.0.2.100:6443";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn status(img: &Path) -> serde_json::Value {
    let s = image_file(img, "/var/lib/kubeboot/status.json").expect("no status.json in the image");
    serde_json::from_slice(&s).expect("status.json is JSON")
}

/// Bad userdata, then good: the first boot fails as invalid input, the
/// second (same disk, userdata replaced) succeeds.
#[test]
fn vm_failed_first_boot_then_fixed_userdata_succeeds() {
    let Some(accel) = setup("failed then fixed", &[]) else {
        return;
    };
    let bad = userdata_variant(
        "bad-pod-subnet",
        "podSubnet: 10.244.0.0/16",
        "podSubnet: 10.244.0.0/33",
    );
    let vm = prepare("vm-fail-fix", Some(&bad), &[]);
    let img = &vm.img;

    // Boot 1: the userdata is refused, nothing is written.
    let (console1, took1) = boot(&vm.disk, 1, &accel, &Boot::default());
    let r1 = report(img, 1, &console1);
    eprintln!("vm_images fail-fix: boot 1 report:\n{r1}");
    let line = console1
        .lines()
        .find(|l| l.contains("kubeboot: reading userdata FAILED"))
        .unwrap_or_else(|| panic!("no failure line on the console of boot 1:\n{console1}"));
    assert!(
        line.contains("kubeboot.cluster.podSubnet")
            && line.contains("\"10.244.0.0/33\" is not a CIDR"),
        "the console line does not name the field and value: {line}"
    );
    assert_eq!(field(&r1, "kubeboot.service.Result"), "exit-code", "{r1}");
    assert_eq!(field(&r1, "kubeboot.service.ExecMainStatus"), "2", "{r1}");
    let st1 = status(img);
    assert_eq!(st1["result"], "failure", "{st1}");
    assert_eq!(st1["errorClass"], "invalid-input", "{st1}");
    assert_eq!(st1["retryable"], false, "{st1}");
    let e = st1["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("kubeboot.cluster.podSubnet")
            && e.contains("/var/lib/cloud/seed/nocloud/user-data"),
        "{e}"
    );
    assert!(
        image_mode(img, "/var/lib/kubeboot/done").is_none(),
        "marker after a failed run"
    );
    for p in [
        "/etc/kubernetes/pki/ca.key",
        "/etc/kubernetes/admin.conf",
        "/var/lib/kubelet/config.yaml",
    ] {
        assert!(image_mode(img, p).is_none(), "{p} written by a failed run");
    }
    assert_eq!(field(&r1, "kubelet.service.ActiveState"), "inactive");

    // Fix the userdata in place (debugfs -w, no mount), boot 2 succeeds.
    image_replace(img, "/var/lib/cloud/seed/nocloud/user-data", &userdata());
    let (console2, took2) = boot(&vm.disk, 2, &accel, &Boot::default());
    let r2 = report(img, 2, &console2);
    eprintln!("vm_images fail-fix: boot 2 report:\n{r2}");
    assert!(
        console2.contains("kubeboot: init succeeded"),
        "boot 2 did not succeed:\n{console2}"
    );
    assert_eq!(field(&r2, "kubeboot.service.ConditionResult"), "yes");
    assert_eq!(field(&r2, "kubeboot.service.Result"), "success");
    assert_eq!(field(&r2, "kubelet.service.ActiveState"), "active");
    let st2 = status(img);
    assert_eq!(st2["result"], "success", "{st2}");
    assert_eq!(st2["role"], "init", "{st2}");
    assert!(st2.get("errorClass").is_none(), "{st2}");
    assert!(
        image_mode(img, "/var/lib/kubeboot/done").is_some(),
        "no marker after boot 2"
    );
    assert_eq!(image_mode(img, "/etc/kubernetes/pki/ca.key"), Some(0o600));
    eprintln!(
        "vm_images fail-fix: boot 1 {:.0} s, boot 2 {:.0} s",
        took1.as_secs_f64(),
        took2.as_secs_f64()
    );
    vm_support::cleanup(&vm.disk);
}

/// The binary the sysext image carries: the static release build when
/// .ci/run made one (`KUBEBOOT_RELEASE_BIN`), else this test build (the
/// guest's glibc is bookworm's, as the build machine's).
fn image_binary() -> PathBuf {
    std::env::var_os("KUBEBOOT_RELEASE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(KUBEBOOT))
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read binary");
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// kubeboot from a system extension: the tree has no `/usr/bin/kubeboot`
/// and no `kubeboot.service`; `/var/lib/extensions/kubeboot.raw` (EROFS,
/// `image/sysext/build-sysext.sh`) is merged by `systemd-sysext.service`;
/// the unit and its `multi-user.target.wants` link come from the
/// extension, and the binary that ran is the extension's.
#[test]
fn vm_sysext_kubeboot_runs_from_the_extension() {
    let Some(accel) = setup("sysext", &[("mkfs.erofs", "erofs-utils")]) else {
        return;
    };
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-sysext");
    std::fs::create_dir_all(&work).expect("work dir");
    let raw = work.join("kubeboot.raw");
    let bin = image_binary();
    let out = Command::new(Path::new(vm_support::REPO).join("image/sysext/build-sysext.sh"))
        .arg(&raw)
        .arg(&bin)
        .output()
        .expect("run build-sysext.sh");
    assert!(
        out.status.success(),
        "build-sysext.sh: {}",
        text(&out.stderr)
    );
    let raw_s = raw.to_str().expect("utf-8 path");
    let vm = prepare("vm-sysext", Some(&userdata()), &[("SYSEXT", raw_s)]);
    let img = &vm.img;
    // Not installed into the tree: only the extension carries kubeboot.
    for p in [
        "/usr/bin/kubeboot",
        "/usr/lib/systemd/system/kubeboot.service",
        "/etc/systemd/system/kubeboot.service",
        "/lib/systemd/system/kubeboot.service",
    ] {
        assert!(image_mode(img, p).is_none(), "{p} is in the image tree");
    }
    assert!(image_mode(img, "/var/lib/extensions/kubeboot.raw").is_some());

    let (console, took) = boot(&vm.disk, 1, &accel, &Boot::default());
    let r = report(img, 1, &console);
    eprintln!("vm_images sysext: report:\n{r}");
    assert_eq!(field(&r, "systemd-sysext.service.Result"), "success", "{r}");
    let sysext = r
        .split("--- systemd-sysext status")
        .nth(1)
        .and_then(|s| s.split("--- ").next())
        .expect("no systemd-sysext status in the report");
    eprintln!("vm_images sysext: systemd-sysext status:\n{sysext}");
    assert!(
        sysext
            .lines()
            .any(|l| l.trim_start().starts_with("/usr") && l.contains("kubeboot")),
        "systemd-sysext status does not show kubeboot merged into /usr:\n{sysext}"
    );
    assert!(
        field(&r, "usr_mount").starts_with("overlay"),
        "/usr is not the sysext overlay: {}",
        field(&r, "usr_mount")
    );
    // The unit came from the extension and ran the extension's binary.
    // (Debian 12's systemd searches /lib/systemd/system first; the tree is
    // merged-/usr, so that is the extension's /usr/lib/systemd/system.)
    assert!(
        [
            "/usr/lib/systemd/system/kubeboot.service",
            "/lib/systemd/system/kubeboot.service"
        ]
        .contains(&field(&r, "kubeboot.service.FragmentPath")),
        "kubeboot.service is not the extension's: {}",
        field(&r, "kubeboot.service.FragmentPath")
    );
    assert_eq!(field(&r, "kubeboot.service.Result"), "success", "{r}");
    assert_eq!(field(&r, "kubeboot.service.ExecMainStatus"), "0");
    assert_eq!(field(&r, "kubeboot_sha256"), sha256_hex(&bin));
    assert!(
        console.contains("kubeboot: init succeeded"),
        "no success line on the console:\n{console}"
    );
    assert_eq!(field(&r, "kubelet.service.ActiveState"), "active");
    let st = status(img);
    assert_eq!(st["result"], "success", "{st}");
    assert!(image_mode(img, "/var/lib/kubeboot/done").is_some());
    assert_eq!(image_mode(img, "/etc/kubernetes/pki/ca.key"), Some(0o600));
    // The merge is an overlay: the tree itself still has no binary.
    assert!(image_mode(img, "/usr/bin/kubeboot").is_none());
    eprintln!("vm_images sysext: boot {:.0} s", took.as_secs_f64());
    vm_support::cleanup(&vm.disk);
    let _ = std::fs::remove_file(&raw);
}

/// `sha256:<hex>` of the CA's SubjectPublicKeyInfo, computed by openssl
/// (not by kubeboot): `openssl x509 -pubkey | openssl pkey -pubin -outform DER`.
fn openssl_pin(ca: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("openssl x509 -in \"$1\" -noout -pubkey | openssl pkey -pubin -outform DER")
        .arg("sh")
        .arg(ca)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "openssl: {}",
        text(&out.stderr)
    );
    let d = ring::digest::digest(&ring::digest::SHA256, &out.stdout);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A real PXE boot of a worker whose join material is on the kernel
/// command line. QEMU's user network (`restrict=on`: nothing leaves the
/// host) answers DHCP naming `boot.ipxe` and serves `WORK/tftp` over TFTP;
/// the virtio NIC's iPXE ROM fetches `boot.ipxe`, which sets `kb-server`,
/// `kb-token`, `kb-hash` and `kb-node-name` and chains to the shipped
/// `image/pxe/worker.ipxe` (copied unchanged), exactly as that script's
/// header says to; the script loads `vmlinuz` and `initrd.img` over TFTP
/// and boots them with its kernel line. QEMU is given no kernel, initrd or
/// command line of its own. The root filesystem is the test's disk (the
/// initrd names it: `files/initrd-root.conf`), so kubeboot runs from
/// `kubeboot.service` under the real systemd, reads `/proc/cmdline` and
/// joins the strict API stand-in, which listens on the host's 127.0.0.1
/// and is reached from the guest at 10.0.2.100:6443 only through a
/// `guestfwd` rule (socat per connection).
///
/// "Joined" without a kubelet: discovery verified cluster-info with the
/// token's signature and the pinned CA (the stand-in saw the requests),
/// `bootstrap-kubelet.conf` names the discovery endpoint, the pinned CA and
/// the token user, and the kubelet (a stand-in unit) was enabled and
/// started. The TLS bootstrap (`kubelet-wait-bootstrap`) is the kubelet's work and
/// is skipped here (`--skip-phases`, in a drop-in with
/// `--ignore-preflight-errors all`, which a command-line config cannot
/// set); tests/cli/firstboot.rs covers it with a fake kubelet.
#[test]
fn vm_pxe_worker_joins_from_the_kernel_command_line() {
    let Some(accel) = setup(
        "pxe",
        &[
            ("socat", "socat"),
            ("cpio", "cpio"),
            ("openssl", "openssl"),
            (vm_support::IPXE_ROM, "ipxe-qemu"),
        ],
    ) else {
        return;
    };
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-pxe");
    let _ = std::fs::remove_dir_all(work.join("cp"));
    std::fs::create_dir_all(&work).expect("work dir");

    // The cluster: a control plane's PKI whose API server certificate
    // covers the address the guest uses (advertiseAddress 10.0.2.100).
    let cfg = work.join("cp.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubeboot.dev/v1alpha1\nrole: control-plane\nnode:\n  name: cp-1\n  advertiseAddress: 10.0.2.100\n",
    )
    .expect("write cp.yaml");
    let cp = work.join("cp");
    let out = Command::new(KUBEBOOT)
        .args(["render", "--config"])
        .arg(&cfg)
        .arg("--root")
        .arg(&cp)
        .output()
        .expect("run kubeboot render");
    assert!(out.status.success(), "render: {}", text(&out.stderr));
    let pki = cp.join("etc/kubernetes/pki");
    let ca = std::fs::read(pki.join("ca.crt")).expect("ca.crt");
    let pin = openssl_pin(&pki.join("ca.crt"));
    let api = StandIn::start_pki(&pki, Options::default());
    let endpoint = format!("https://{API_GUEST}");
    api.seed_cluster_at(&ca, TOKEN_ID, TOKEN_SECRET, &endpoint);
    // The cluster's kubelet configuration (as `kubeadm init` uploads it),
    // with a cluster domain the node can only have learnt from it.
    api.insert(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kubelet-config", "namespace": "kube-system"},
        "data": {"kubelet": "apiVersion: kubelet.config.k8s.io/v1beta1\n\
            kind: KubeletConfiguration\ncgroupDriver: systemd\n\
            clusterDNS:\n- 10.96.0.10\nclusterDomain: pxe.test\n"}
    }));

    let args = "--ignore-preflight-errors all --skip-phases kubelet-wait-bootstrap \
                --discovery-timeout 600 --wait-timeout 600";
    let vm = prepare("vm-pxe", None, &[("PXE", "1"), ("KUBEBOOT_ARGS", args)]);
    let img = &vm.img;
    let tftp = vm.disk.join("tftp");
    assert_eq!(
        std::fs::read(tftp.join("worker.ipxe")).expect("tftp/worker.ipxe"),
        std::fs::read(Path::new(vm_support::REPO).join("image/pxe/worker.ipxe"))
            .expect("image/pxe/worker.ipxe"),
        "the TFTP server must serve the shipped script unchanged"
    );
    assert!(
        image_file(img, "/var/lib/cloud/seed/nocloud/user-data").is_none(),
        "the PXE image has no userdata"
    );
    // What a PXE menu or embedded script sets before chaining
    // (worker.ipxe's header).
    std::fs::write(
        tftp.join("boot.ipxe"),
        format!(
            "#!ipxe\nset kb-server {API_GUEST}\nset kb-token {TOKEN_ID}.{TOKEN_SECRET}\n\
             set kb-hash {pin}\nset kb-node-name pxe-worker-1\n\
             chain tftp://${{next-server}}/worker.ipxe\n"
        ),
    )
    .expect("write boot.ipxe");
    let how = Boot {
        pxe: Some((&tftp, "boot.ipxe")),
        guestfwd: vec![format!(
            "tcp:{API_GUEST}-cmd:socat - TCP:127.0.0.1:{}",
            api.port()
        )],
    };
    let (console, took) = boot(&vm.disk, 1, &accel, &how);
    api.check();
    let r = report(img, 1, &console);
    assert!(
        !r.contains(TOKEN_SECRET),
        "the token secret is in the guest's report (journal, status)"
    );
    eprintln!("vm_images pxe: report:\n{r}");

    // The kernel line is worker.ipxe's, with the values boot.ipxe set.
    let cmdline = field(&r, "cmdline");
    let want = format!(
        "initrd=initrd.img console=ttyS0 ro kubeboot.role=worker kubeboot.server={API_GUEST} \
         kubeboot.token={TOKEN_ID}.<redacted> kubeboot.ca-cert-hash={pin} \
         kubeboot.node-name=pxe-worker-1"
    );
    assert!(
        cmdline.contains(&want),
        "the kernel command line is not worker.ipxe's:\n{cmdline}\nwant it to contain\n{want}"
    );
    assert!(!cmdline.contains("root="), "{cmdline}");
    assert!(
        r.contains("[source] using kernel command line /proc/cmdline"),
        "kubeboot did not read /proc/cmdline:\n{r}"
    );

    // The join, from the guest's side.
    assert!(
        console.contains("kubeboot: join-worker succeeded"),
        "no join success on the console:\n{console}"
    );
    assert_eq!(field(&r, "kubeboot.service.Result"), "success", "{r}");
    assert_eq!(field(&r, "kubelet.service.ActiveState"), "active");
    assert_eq!(field(&r, "kubelet.service.UnitFileState"), "enabled");
    let st = status(img);
    assert_eq!(st["result"], "success", "{st}");
    assert_eq!(st["role"], "join-worker", "{st}");
    assert!(
        st["source"]
            .as_str()
            .is_some_and(|s| s.contains("/proc/cmdline")),
        "{st}"
    );
    let outcome = |name: &str| {
        st["phases"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == name))
            .map(|p| p["outcome"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no phase {name}: {st}"))
    };
    assert_eq!(outcome("discovery"), "done", "{st}");
    assert_eq!(outcome("kubelet-start"), "done", "{st}");
    assert_eq!(outcome("kubelet-wait-bootstrap"), "skipped", "{st}");
    assert!(image_mode(img, "/var/lib/kubeboot/done").is_some());

    // The files: the pinned CA, and a bootstrap kubeconfig for the
    // discovery endpoint with that CA and the token user.
    assert_eq!(
        image_file(img, "/etc/kubernetes/pki/ca.crt").as_deref(),
        Some(ca.as_slice()),
        "ca.crt is not the pinned cluster CA"
    );
    assert_eq!(
        image_mode(img, "/etc/kubernetes/bootstrap-kubelet.conf"),
        Some(0o600)
    );
    let boot_conf = text(
        &image_file(img, "/etc/kubernetes/bootstrap-kubelet.conf").expect("bootstrap-kubelet.conf"),
    );
    assert!(
        boot_conf
            .lines()
            .any(|l| l.trim() == format!("server: {endpoint}")),
        "bootstrap-kubelet.conf does not name {endpoint}:\n{}",
        boot_conf.replace(TOKEN_SECRET, "<redacted>")
    );
    let ca_data = boot_conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .expect("certificate-authority-data");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(ca_data.trim())
            .expect("base64"),
        ca,
        "bootstrap-kubelet.conf's CA is not the pinned CA"
    );
    assert!(
        boot_conf.contains(&format!("token: {TOKEN_ID}.{TOKEN_SECRET}")),
        "bootstrap-kubelet.conf does not carry the bootstrap token"
    );
    let kubelet = text(&image_file(img, "/var/lib/kubelet/config.yaml").expect("config.yaml"));
    assert!(
        kubelet
            .lines()
            .any(|l| l.trim() == "clusterDomain: pxe.test"),
        "the kubelet configuration is not the cluster's (kube-system/kubelet-config):\n{kubelet}"
    );
    assert!(
        r.contains("using the cluster's kubelet configuration (kube-system/kubelet-config)"),
        "{r}"
    );

    // The join, from the stand-in's side: what crossed the forward.
    let log = api.log();
    for l in &log {
        eprintln!(
            "vm_images pxe: stand-in saw {} {} -> {} ({})",
            l.method, l.url, l.status, l.user
        );
    }
    let served = |url: &str, user: &str| {
        log.iter().any(|l| {
            l.method == "GET" && l.url.starts_with(url) && l.status == 200 && l.user == user
        })
    };
    assert!(
        served(CLUSTER_INFO, "system:anonymous"),
        "the stand-in served no cluster-info: {log:?}"
    );
    assert!(
        served(
            "/api/v1/namespaces/kube-system/configmaps/kubelet-config",
            &format!("system:bootstrap:{TOKEN_ID}")
        ),
        "kubelet-config was not read with the bootstrap token: {log:?}"
    );
    assert!(
        log.iter()
            .all(|l| (l.method == "GET" && l.user != "system:anonymous")
                || l.url.starts_with(CLUSTER_INFO)),
        "anonymous requests beyond cluster-info, or writes: {log:?}"
    );
    eprintln!("vm_images pxe: boot {:.0} s", took.as_secs_f64());
    vm_support::cleanup(&vm.disk);
}
