//! Which platform this node runs on, decided from local signals only: the
//! declared platform (`--platform`), the kernel command line, DMI strings,
//! labelled config disks and QEMU's fw_cfg. Never from the network: a
//! metadata service is only ever contacted once this module has named the
//! platform that serves it.
//!
//! Order (first match wins):
//! 1. `--platform NAME` (the `declared` argument);
//! 2. `kubeboot.platform=NAME` on `/proc/cmdline`;
//! 3. `ignition.platform.id=NAME` on `/proc/cmdline`;
//! 4. DMI (`/sys/class/dmi/id/{sys_vendor,product_name,chassis_asset_tag,board_vendor,bios_vendor,bios_version}`);
//! 5. a block device labelled `cidata`/`CIDATA` (NoCloud) or `config-2` (config drive);
//! 6. QEMU (`/sys/firmware/qemu_fw_cfg` or DMI vendor `QEMU`);
//! 7. otherwise `none`: no network source is used.
//!
//! Everything is read under `--root`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::error::Error;
use crate::host::Paths;
use crate::host::disks;

/// A platform kubeboot knows how to read userdata on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    /// Nothing matched: no network or disk source.
    None,
    /// Amazon EC2 (IMDSv2).
    Ec2,
    /// Google Compute Engine.
    Gce,
    /// Microsoft Azure (IMDS userData).
    Azure,
    /// OpenStack (config drive, then the metadata service).
    OpenStack,
    /// Hetzner Cloud.
    Hetzner,
    /// DigitalOcean.
    DigitalOcean,
    /// A NoCloud `cidata` disk.
    NoCloud,
    /// An OpenStack-style `config-2` disk without a metadata service.
    ConfigDrive,
    /// QEMU without a cloud: config disks only.
    Qemu,
    /// Bare metal: config disks only (PXE uses `kubeboot.config=`).
    Metal,
}

impl Platform {
    /// Every platform, in documentation order.
    pub const ALL: [Platform; 11] = [
        Platform::Ec2,
        Platform::Gce,
        Platform::Azure,
        Platform::OpenStack,
        Platform::Hetzner,
        Platform::DigitalOcean,
        Platform::NoCloud,
        Platform::ConfigDrive,
        Platform::Qemu,
        Platform::Metal,
        Platform::None,
    ];

    /// The canonical name (Ignition's `ignition.platform.id` where one exists).
    pub fn name(self) -> &'static str {
        match self {
            Platform::None => "none",
            Platform::Ec2 => "aws",
            Platform::Gce => "gcp",
            Platform::Azure => "azure",
            Platform::OpenStack => "openstack",
            Platform::Hetzner => "hetzner",
            Platform::DigitalOcean => "digitalocean",
            Platform::NoCloud => "nocloud",
            Platform::ConfigDrive => "configdrive",
            Platform::Qemu => "qemu",
            Platform::Metal => "metal",
        }
    }

    /// Parses a name; accepts the canonical names and the aliases `ec2`,
    /// `gce`, `config-2`.
    pub fn from_name(name: &str) -> Option<Platform> {
        let p = match name.trim().to_ascii_lowercase().as_str() {
            "none" => Platform::None,
            "aws" | "ec2" => Platform::Ec2,
            "gcp" | "gce" => Platform::Gce,
            "azure" => Platform::Azure,
            "openstack" => Platform::OpenStack,
            "hetzner" => Platform::Hetzner,
            "digitalocean" => Platform::DigitalOcean,
            "nocloud" => Platform::NoCloud,
            "configdrive" | "config-2" => Platform::ConfigDrive,
            "qemu" => Platform::Qemu,
            "metal" => Platform::Metal,
            _ => return None,
        };
        Some(p)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Platform::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Platform::ALL.iter().map(|p| p.name()).collect();
            Error::Invalid(format!(
                "unknown platform {s:?}; known: {}",
                names.join(", ")
            ))
        })
    }
}

/// The decision and why it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The platform.
    pub platform: Platform,
    /// One line saying which signal decided it.
    pub reason: String,
}

/// Azure's fixed DMI chassis asset tag.
const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085-8269-3286-77";

/// Decides the platform (see the module doc for the order). `declared`
/// is `--platform`. Errors only on an unknown declared or
/// `kubeboot.platform=` name (exit 2); unreadable signals count as absent.
pub fn detect(paths: &Paths, declared: Option<&str>) -> Result<Detection, Error> {
    if let Some(name) = declared {
        let platform: Platform = name.parse()?;
        return Ok(Detection {
            platform,
            reason: format!("declared with --platform {name}"),
        });
    }
    let cmdline = std::fs::read_to_string(paths.proc_cmdline()).unwrap_or_default();
    if let Some(name) = cmdline_arg(&cmdline, "kubeboot.platform") {
        let platform: Platform = name
            .parse()
            .map_err(|e| Error::Invalid(format!("kernel command line kubeboot.platform: {e}")))?;
        return Ok(Detection {
            platform,
            reason: format!("kernel command line kubeboot.platform={name}"),
        });
    }
    if let Some(name) = cmdline_arg(&cmdline, "ignition.platform.id") {
        return Ok(match Platform::from_name(name) {
            Some(platform) => Detection {
                platform,
                reason: format!("kernel command line ignition.platform.id={name}"),
            },
            None => Detection {
                platform: Platform::None,
                reason: format!(
                    "kernel command line ignition.platform.id={name}: kubeboot has no source for it"
                ),
            },
        });
    }
    let dmi = Dmi::read(&paths.host("/sys/class/dmi/id"));
    if let Some(d) = dmi.platform() {
        return Ok(d);
    }
    if let Some((dev, label)) = disks::find_labelled(paths, disks::Kind::NoCloud) {
        return Ok(Detection {
            platform: Platform::NoCloud,
            reason: format!("block device {} is labelled {label}", dev.display()),
        });
    }
    if let Some((dev, label)) = disks::find_labelled(paths, disks::Kind::ConfigDrive) {
        return Ok(Detection {
            platform: Platform::ConfigDrive,
            reason: format!("block device {} is labelled {label}", dev.display()),
        });
    }
    if dmi.sys_vendor == "QEMU" {
        return Ok(Detection {
            platform: Platform::Qemu,
            reason: "DMI sys_vendor is QEMU".into(),
        });
    }
    if paths.host("/sys/firmware/qemu_fw_cfg").is_dir() {
        return Ok(Detection {
            platform: Platform::Qemu,
            reason: "QEMU fw_cfg is present".into(),
        });
    }
    Ok(Detection {
        platform: Platform::None,
        reason: "no platform declared on the command line or kernel command line, \
                 no known DMI vendor, no cidata/config-2 disk, no QEMU fw_cfg"
            .into(),
    })
}

/// The value of the last `key=value` on a kernel command line (the kernel's
/// own rule: later wins). Double quotes around a value are removed.
pub fn cmdline_arg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    let mut found = None;
    for word in split_cmdline(cmdline) {
        if let Some(v) = word.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
            found = Some(v.trim_matches('"'));
        }
    }
    found
}

/// Splits a kernel command line on whitespace, keeping double-quoted
/// spans (`a="b c"`) in one word.
fn split_cmdline(cmdline: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in cmdline.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push(&cmdline[s..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        out.push(&cmdline[s..]);
    }
    out
}

/// The DMI strings detection looks at (empty when unreadable).
#[derive(Debug, Default)]
struct Dmi {
    sys_vendor: String,
    product_name: String,
    chassis_asset_tag: String,
    board_vendor: String,
    bios_vendor: String,
    bios_version: String,
}

impl Dmi {
    fn read(dir: &Path) -> Dmi {
        let field = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Dmi {
            sys_vendor: field("sys_vendor"),
            product_name: field("product_name"),
            chassis_asset_tag: field("chassis_asset_tag"),
            board_vendor: field("board_vendor"),
            bios_vendor: field("bios_vendor"),
            bios_version: field("bios_version"),
        }
    }

    fn platform(&self) -> Option<Detection> {
        let hit = |platform, what: &str, value: &str| {
            Some(Detection {
                platform,
                reason: format!("DMI {what} is {value:?}"),
            })
        };
        if self.chassis_asset_tag == AZURE_ASSET_TAG {
            return hit(
                Platform::Azure,
                "chassis_asset_tag",
                &self.chassis_asset_tag,
            );
        }
        // Nitro instances: sys_vendor/board_vendor/bios_vendor "Amazon EC2";
        // Xen instances: bios_vendor "Xen" with a bios_version like "4.11.amazon".
        for (what, v) in [
            ("sys_vendor", &self.sys_vendor),
            ("board_vendor", &self.board_vendor),
            ("bios_vendor", &self.bios_vendor),
        ] {
            if v == "Amazon EC2" {
                return hit(Platform::Ec2, what, v);
            }
        }
        if self.bios_vendor == "Xen" && self.bios_version.ends_with(".amazon") {
            return hit(Platform::Ec2, "bios_version", &self.bios_version);
        }
        if self.product_name == "Google Compute Engine" {
            return hit(Platform::Gce, "product_name", &self.product_name);
        }
        if self.sys_vendor == "Google" {
            return hit(Platform::Gce, "sys_vendor", &self.sys_vendor);
        }
        if self.sys_vendor == "Hetzner" {
            return hit(Platform::Hetzner, "sys_vendor", &self.sys_vendor);
        }
        if self.sys_vendor == "DigitalOcean" {
            return hit(Platform::DigitalOcean, "sys_vendor", &self.sys_vendor);
        }
        if matches!(
            self.product_name.as_str(),
            "OpenStack Nova" | "OpenStack Compute"
        ) {
            return hit(Platform::OpenStack, "product_name", &self.product_name);
        }
        if self.sys_vendor == "OpenStack Foundation" {
            return hit(Platform::OpenStack, "sys_vendor", &self.sys_vendor);
        }
        if self.chassis_asset_tag == "OpenTelekomCloud" {
            return hit(
                Platform::OpenStack,
                "chassis_asset_tag",
                &self.chassis_asset_tag,
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Platform::ALL {
            assert_eq!(Platform::from_name(p.name()), Some(p));
        }
        assert_eq!(Platform::from_name("EC2"), Some(Platform::Ec2));
        let err = "vmware".parse::<Platform>().unwrap_err().to_string();
        assert!(
            err.contains("unknown platform \"vmware\"") && err.contains("digitalocean"),
            "{err}"
        );
    }

    #[test]
    fn cmdline_args() {
        let c = "BOOT_IMAGE=/vmlinuz root=/dev/vda1 quiet a=\"x y\" kubeboot.platform=gcp kubeboot.platform=aws\n";
        assert_eq!(cmdline_arg(c, "kubeboot.platform"), Some("aws"));
        assert_eq!(cmdline_arg(c, "a"), Some("x y"));
        assert_eq!(cmdline_arg(c, "root"), Some("/dev/vda1"));
        assert_eq!(cmdline_arg(c, "quiet"), None);
        assert_eq!(cmdline_arg(c, "kubeboot"), None);
        assert_eq!(cmdline_arg("", "x"), None);
    }
}
