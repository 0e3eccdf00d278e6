//! Config disks as block devices: which labels mark a NoCloud seed
//! (`cidata`/`CIDATA`) or an OpenStack config drive (`config-2`), and how
//! one is found under `--root`: `/dev/disk/by-label/<label>` or, where
//! udev has not run, the label read from the superblock (ISO 9660 or FAT)
//! of every small block device in `/sys/class/block`. Reading the userdata
//! from a found disk (mounting it) is `userdata::disk`'s job.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::host::Paths;

/// Which kind of config disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// NoCloud seed (`cidata`).
    NoCloud,
    /// OpenStack config drive (`config-2`).
    ConfigDrive,
}

impl Kind {
    /// The filesystem labels that mark this kind of disk.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Kind::NoCloud => &["cidata", "CIDATA"],
            Kind::ConfigDrive => &["config-2", "CONFIG-2"],
        }
    }

    /// The userdata file inside the filesystem.
    pub fn file(self) -> &'static str {
        match self {
            Kind::NoCloud => "user-data",
            Kind::ConfigDrive => "openstack/latest/user_data",
        }
    }

    /// How messages name a disk of this kind.
    pub fn name(self) -> &'static str {
        match self {
            Kind::NoCloud => "nocloud disk",
            Kind::ConfigDrive => "config-drive disk",
        }
    }
}

/// A filesystem type a config disk may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    /// ISO 9660 (genisoimage / mkisofs).
    Iso9660,
    /// FAT12/16/32.
    Vfat,
}

impl FsType {
    /// The name `mount` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Iso9660 => "iso9660",
            FsType::Vfat => "vfat",
        }
    }
}

/// Reads the filesystem type and label from the start of a device or
/// image: the ISO 9660 primary volume descriptor's volume identifier, or
/// the FAT boot sector's volume label. `None` when neither is there.
pub fn probe_label(dev: &Path) -> Option<(FsType, String)> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    // A block device or an image file; never a FIFO (which would block).
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(dev)
        .ok()?;
    let t = f.metadata().ok()?.file_type();
    if !(t.is_block_device() || t.is_file()) {
        return None;
    }
    let mut buf = vec![0u8; 0x8000 + 2048];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let buf = &buf[..n];
    // ISO 9660: descriptor type 1, "CD001", volume identifier at 40..72.
    if let Some(pvd) = buf.get(0x8000..0x8000 + 72)
        && pvd[0] == 1
        && &pvd[1..6] == b"CD001"
    {
        return Some((FsType::Iso9660, label_text(&pvd[40..72])));
    }
    // FAT: 0x55AA signature; FAT32 has zero sectors-per-FAT at 0x16 and its
    // extended boot record (signature 0x29) at 0x42, FAT12/16 at 0x26.
    let sector = buf.get(..512)?;
    if sector[510..512] != [0x55, 0xAA] {
        return None;
    }
    let fat32 = sector[0x16] == 0 && sector[0x17] == 0;
    let (sig, label, fstype) = if fat32 {
        (0x42, 0x47, 0x52)
    } else {
        (0x26, 0x2B, 0x36)
    };
    if sector[sig] != 0x29 || !sector[fstype..fstype + 3].starts_with(b"FAT") {
        return None;
    }
    Some((FsType::Vfat, label_text(&sector[label..label + 11])))
}

fn label_text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

/// The largest device the sysfs scan reads a label from.
const MAX_CONFIG_DISK: u64 = 64 * 1024 * 1024;

/// Finds a block device labelled for `kind`, under the root: first
/// `/dev/disk/by-label/<label>`, then a superblock scan of small devices
/// from `/sys/class/block`. Returns the device and its label as found
/// (`cidata` or `CIDATA`, ...).
pub fn find_labelled(paths: &Paths, kind: Kind) -> Option<(PathBuf, String)> {
    for label in kind.labels() {
        let link = paths.host("/dev/disk/by-label").join(label);
        if fs::symlink_metadata(&link).is_ok() {
            return Some((resolve_under_root(paths, &link), label.to_string()));
        }
    }
    let entries = fs::read_dir(paths.host("/sys/class/block")).ok()?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        if name.starts_with("ram") || name.starts_with("zram") {
            continue;
        }
        let sectors = fs::read_to_string(paths.host("/sys/class/block").join(&name).join("size"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if sectors == 0 || sectors.saturating_mul(512) > MAX_CONFIG_DISK {
            continue;
        }
        let dev = paths.host("/dev").join(&name);
        if let Some((_, label)) = probe_label(&dev)
            && kind.labels().iter().any(|l| l.eq_ignore_ascii_case(&label))
        {
            return Some((dev, label));
        }
    }
    None
}

/// Resolves a udev symlink (`../../sr0`) lexically under the root.
fn resolve_under_root(paths: &Paths, link: &Path) -> PathBuf {
    let Ok(target) = fs::read_link(link) else {
        return link.to_path_buf();
    };
    if target.is_absolute() {
        return paths.host(&target);
    }
    let rel = link
        .parent()
        .and_then(|p| p.strip_prefix(paths.root()).ok())
        .unwrap_or(Path::new(""));
    let mut parts: Vec<Component> = rel.components().collect();
    for c in target.components() {
        match c {
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(_) => parts.push(c),
            _ => {}
        }
    }
    paths.host(parts.iter().collect::<PathBuf>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_fat_boot_sector() {
        let dir = std::env::temp_dir().join(format!("kubeboot-disk-probe-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut s = vec![0u8; 512];
        s[0x16] = 1; // FAT12/16
        s[0x26] = 0x29;
        s[0x2B..0x2B + 11].copy_from_slice(b"CIDATA     ");
        s[0x36..0x3E].copy_from_slice(b"FAT12   ");
        s[510] = 0x55;
        s[511] = 0xAA;
        fs::write(dir.join("img"), &s).unwrap();
        assert_eq!(
            probe_label(&dir.join("img")),
            Some((FsType::Vfat, "CIDATA".into()))
        );
        s[511] = 0;
        fs::write(dir.join("img"), &s).unwrap();
        assert_eq!(probe_label(&dir.join("img")), None);
        assert_eq!(probe_label(&dir.join("missing")), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resolves_udev_links_under_root() {
        let dir = std::env::temp_dir().join(format!("kubeboot-disk-link-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("dev/disk/by-label")).unwrap();
        std::os::unix::fs::symlink("../../../../sr0", dir.join("dev/disk/by-label/cidata"))
            .unwrap();
        std::os::unix::fs::symlink("/dev/sr1", dir.join("dev/disk/by-label/config-2")).unwrap();
        let paths = Paths::new(&dir);
        assert_eq!(
            find_labelled(&paths, Kind::NoCloud),
            Some((dir.join("sr0"), "cidata".to_string()))
        );
        assert_eq!(
            find_labelled(&paths, Kind::ConfigDrive),
            Some((dir.join("dev/sr1"), "config-2".to_string()))
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
