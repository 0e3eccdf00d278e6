//! Platform detection over fake `/sys/class/dmi/id` trees, fake kernel
//! command lines, labelled disks and fw_cfg; and which sources each
//! platform gets (never a real address unless a cloud was detected, and
//! none at all for `none`).

mod net_support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use kubeboot::host::Paths;
use kubeboot::platform::{Platform, detect};
use kubeboot::userdata::Fetch;
use kubeboot::userdata::network::{NetOptions, sources_for};
use net_support::*;

const AZURE_TAG: &str = "7783-7084-3265-9085-8269-3286-77";

fn root_with(name: &str, dmi: &[(&str, &str)], cmdline: &str) -> std::path::PathBuf {
    let root = tmpdir(name);
    let dmi_dir = root.join("sys/class/dmi/id");
    fs::create_dir_all(&dmi_dir).unwrap();
    for (k, v) in dmi {
        fs::write(dmi_dir.join(k), format!("{v}\n")).unwrap();
    }
    fs::create_dir_all(root.join("proc")).unwrap();
    fs::write(
        root.join("proc/cmdline"),
        format!("BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro {cmdline}\n"),
    )
    .unwrap();
    root
}

fn detected(root: &Path, declared: Option<&str>) -> Platform {
    let d = detect(&Paths::new(root), declared).unwrap();
    println!("{} -> {} ({})", root.display(), d.platform, d.reason);
    d.platform
}

#[test]
fn dmi_trees_of_each_cloud() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Platform);
    let cases: &[Case] = &[
        (
            "aws-nitro",
            &[
                ("sys_vendor", "Amazon EC2"),
                ("product_name", "m5.large"),
                ("board_vendor", "Amazon EC2"),
            ],
            Platform::Ec2,
        ),
        (
            "aws-xen",
            &[
                ("sys_vendor", "Xen"),
                ("product_name", "HVM domU"),
                ("bios_vendor", "Xen"),
                ("bios_version", "4.11.amazon"),
            ],
            Platform::Ec2,
        ),
        (
            "aws-nitro-bios",
            &[("bios_vendor", "Amazon EC2")],
            Platform::Ec2,
        ),
        // Xen elsewhere is not EC2.
        (
            "xen",
            &[
                ("sys_vendor", "Xen"),
                ("bios_vendor", "Xen"),
                ("bios_version", "4.17"),
            ],
            Platform::None,
        ),
        (
            "gce",
            &[
                ("sys_vendor", "Google"),
                ("product_name", "Google Compute Engine"),
            ],
            Platform::Gce,
        ),
        (
            "azure",
            &[
                ("sys_vendor", "Microsoft Corporation"),
                ("product_name", "Virtual Machine"),
                ("chassis_asset_tag", AZURE_TAG),
            ],
            Platform::Azure,
        ),
        // Plain Hyper-V on a desk is not Azure.
        (
            "hyperv",
            &[
                ("sys_vendor", "Microsoft Corporation"),
                ("product_name", "Virtual Machine"),
            ],
            Platform::None,
        ),
        (
            "openstack",
            &[
                ("sys_vendor", "OpenStack Foundation"),
                ("product_name", "OpenStack Nova"),
            ],
            Platform::OpenStack,
        ),
        (
            "otc",
            &[
                ("sys_vendor", "QEMU"),
                ("chassis_asset_tag", "OpenTelekomCloud"),
            ],
            Platform::OpenStack,
        ),
        (
            "hetzner",
            &[("sys_vendor", "Hetzner"), ("product_name", "vServer")],
            Platform::Hetzner,
        ),
        (
            "digitalocean",
            &[("sys_vendor", "DigitalOcean"), ("product_name", "Droplet")],
            Platform::DigitalOcean,
        ),
        (
            "qemu",
            &[
                ("sys_vendor", "QEMU"),
                ("product_name", "Standard PC (Q35 + ICH9, 2009)"),
            ],
            Platform::Qemu,
        ),
        (
            "dell",
            &[
                ("sys_vendor", "Dell Inc."),
                ("product_name", "PowerEdge R650"),
            ],
            Platform::None,
        ),
        ("empty", &[], Platform::None),
    ];
    for (name, dmi, want) in cases {
        let root = root_with(name, dmi, "");
        assert_eq!(detected(&root, None), *want, "{name}");
        fs::remove_dir_all(&root).unwrap();
    }
}

#[test]
fn command_line_and_declared_platform_come_first() {
    let aws = [("sys_vendor", "Amazon EC2")];
    let root = root_with("cmdline-kubeboot", &aws, "kubeboot.platform=hetzner");
    assert_eq!(detected(&root, None), Platform::Hetzner);
    assert_eq!(
        detected(&root, Some("gcp")),
        Platform::Gce,
        "--platform beats the kernel command line"
    );
    assert_eq!(detected(&root, Some("none")), Platform::None);
    let err = detect(&Paths::new(&root), Some("vmware")).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");

    let root = root_with("cmdline-ignition", &aws, "ignition.platform.id=openstack");
    assert_eq!(detected(&root, None), Platform::OpenStack);
    let root = root_with(
        "cmdline-both",
        &[],
        "ignition.platform.id=gcp kubeboot.platform=azure",
    );
    assert_eq!(
        detected(&root, None),
        Platform::Azure,
        "kubeboot.platform beats ignition.platform.id"
    );

    // An Ignition platform kubeboot has no source for: none, with a reason.
    let root = root_with("cmdline-vmware", &aws, "ignition.platform.id=vmware");
    let d = detect(&Paths::new(&root), None).unwrap();
    assert_eq!(d.platform, Platform::None);
    assert!(d.reason.contains("vmware"), "{}", d.reason);

    let root = root_with("cmdline-bogus", &[], "kubeboot.platform=bogus");
    let err = detect(&Paths::new(&root), None).unwrap_err().to_string();
    assert!(
        err.contains("kubeboot.platform") && err.contains("bogus"),
        "{err}"
    );
    for n in [
        "cmdline-kubeboot",
        "cmdline-ignition",
        "cmdline-both",
        "cmdline-vmware",
        "cmdline-bogus",
    ] {
        let _ = fs::remove_dir_all(tmpdir(n));
    }
}

#[test]
fn labelled_disks_and_fw_cfg() {
    let root = root_with("labels", &[("sys_vendor", "QEMU")], "");
    fs::create_dir_all(root.join("dev/disk/by-label")).unwrap();
    fs::write(root.join("dev/sr0"), b"").unwrap();
    std::os::unix::fs::symlink("../../sr0", root.join("dev/disk/by-label/config-2")).unwrap();
    assert_eq!(detected(&root, None), Platform::ConfigDrive);
    std::os::unix::fs::symlink("../../sr0", root.join("dev/disk/by-label/CIDATA")).unwrap();
    assert_eq!(
        detected(&root, None),
        Platform::NoCloud,
        "cidata is checked before config-2"
    );
    // A cloud's DMI wins over a disk.
    fs::write(
        root.join("sys/class/dmi/id/product_name"),
        "Google Compute Engine\n",
    )
    .unwrap();
    assert_eq!(detected(&root, None), Platform::Gce);
    fs::remove_dir_all(&root).unwrap();

    let root = root_with("fwcfg", &[], "");
    fs::create_dir_all(root.join("sys/firmware/qemu_fw_cfg/by_name")).unwrap();
    assert_eq!(detected(&root, None), Platform::Qemu);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn nothing_matched_means_no_sources_and_no_network() {
    let server = Server::http(|_, _| status(404));
    let root = root_with("none", &[("sys_vendor", "Dell Inc.")], "");
    let paths = Paths::new(&root);
    let start = Instant::now();
    let d = detect(&paths, None).unwrap();
    let took = start.elapsed();
    println!(
        "no-match detection took {took:?} (measured, not asserted): {}",
        d.reason
    );
    assert_eq!(d.platform, Platform::None);
    let mut opts = NetOptions::new(&paths);
    opts.metadata_url = Some(server.base());
    let sources = sources_for(d.platform, &opts);
    assert!(
        sources.is_empty(),
        "{:?}",
        sources.iter().map(|s| s.name()).collect::<Vec<_>>()
    );
    // Even without --metadata-url, `none` constructs no source at all, so no real address.
    assert!(sources_for(Platform::None, &NetOptions::new(&paths)).is_empty());
    // The same over this machine's real root (reads only; whatever it finds).
    let start = Instant::now();
    let real = detect(&Paths::new("/"), None).unwrap();
    println!(
        "detection over / took {:?} (measured, not asserted): {} ({})",
        start.elapsed(),
        real.platform,
        real.reason
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.requests().len(), 0, "zero network requests");
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn metadata_url_replaces_the_real_address_for_every_cloud() {
    // Answers an IMDSv2 token PUT, and 404 to everything else.
    let server = Server::http(|req, _| {
        if req.method == "PUT" {
            ok(b"token")
        } else {
            status(404)
        }
    });
    let root = tmpdir("override");
    let paths = Paths::new(&root);
    let mut opts = NetOptions::new(&paths);
    opts.metadata_url = Some(server.base());
    opts.budget = Duration::from_secs(10);
    let clouds = [
        Platform::Ec2,
        Platform::Gce,
        Platform::Azure,
        Platform::OpenStack,
        Platform::Hetzner,
        Platform::DigitalOcean,
    ];
    for p in Platform::ALL {
        let sources = sources_for(p, &opts);
        let names: Vec<String> = sources.iter().map(|s| s.name()).collect();
        println!("{p}: {names:?}");
        assert!(
            names.iter().all(|n| !n.contains("169.254")),
            "{p}: {names:?}"
        );
        let network = names.iter().filter(|n| n.contains(&server.base())).count();
        assert_eq!(network, usize::from(clouds.contains(&p)), "{p}: {names:?}");
        if clouds.contains(&p) {
            let before = server.requests().len();
            for s in &sources {
                // OpenStack's config drive is absent here; the service answers 404.
                let got = s.fetch();
                assert!(matches!(got, Ok(Fetch::Absent(_))), "{}: {got:?}", s.name());
            }
            assert!(
                server.requests().len() > before,
                "{p} asked the loopback server"
            );
        }
    }
    // Without --metadata-url the real address is the default, for clouds only (not fetched here).
    let defaults = NetOptions::new(&paths);
    for p in Platform::ALL {
        let real = sources_for(p, &defaults)
            .iter()
            .any(|s| s.name().contains("169.254.169.254"));
        assert_eq!(real, clouds.contains(&p), "{p}");
    }
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn first_found_reports_every_source_asked() {
    use kubeboot::host::disks::Kind;
    use kubeboot::userdata::disk::Disk;
    use kubeboot::userdata::network::{Search, first_found};
    use kubeboot::userdata::{Source, gce, openstack};
    let server = Server::http(|req, _| match req.path.as_str() {
        "/openstack/latest/user_data" => status(404),
        _ => ok(b"#cloud-config\n"),
    });
    let root = tmpdir("first-found");
    let paths = Paths::new(&root);
    let absent: Vec<Box<dyn Source>> = vec![
        Box::new(Disk::new(&paths, Kind::ConfigDrive)),
        Box::new(openstack::OpenStack::new(
            &server.base(),
            Duration::from_secs(10),
        )),
    ];
    match first_found(&absent) {
        Search::NotFound { tried, retryable } => {
            println!("{tried:#?}");
            assert!(!retryable);
            assert_eq!(tried.len(), 2);
            assert!(
                tried[0]
                    .outcome
                    .contains("no block device labelled config-2"),
                "{:?}",
                tried[0]
            );
            assert!(
                tried[1].outcome.contains("HTTP 404") && tried[1].source.contains("127.0.0.1"),
                "{:?}",
                tried[1]
            );
        }
        other => panic!("{other:?}"),
    }
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let sources: Vec<Box<dyn Source>> = vec![
        Box::new(openstack::OpenStack::with_retry(&closed, impatient_retry())),
        Box::new(gce::Gce::new(&server.base(), Duration::from_secs(10))),
    ];
    // A source that fails stops the search (retryable, since the failure
    // was transient): the lower-precedence gce source is never asked.
    match first_found(&sources) {
        Search::NotFound { tried, retryable } => {
            assert!(retryable);
            assert_eq!(tried.len(), 1, "{tried:?}");
            assert!(
                tried[0].outcome.starts_with("error: ") && tried[0].outcome.contains("connection"),
                "{:?}",
                tried[0]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        server
            .requests()
            .iter()
            .all(|r| !r.path.contains("computeMetadata"))
    );
    fs::remove_dir_all(&root).unwrap();
}
