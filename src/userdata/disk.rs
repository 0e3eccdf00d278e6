//! Config disks: a NoCloud seed disk labelled `cidata`/`CIDATA` (vfat or
//! iso9660, userdata in `/user-data`) and an OpenStack config drive
//! labelled `config-2` (userdata in `/openstack/latest/user_data`).
//!
//! The disk is found by `host::disks` (udev's by-label links, else a
//! superblock scan of small block devices). When the device is already mounted (per
//! `/proc/self/mounts`) the file is read there; otherwise the device is
//! mounted read-only (`MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC`) on a fresh
//! 0700 directory under `/run/kubeboot`, the file is read, and the disk is
//! unmounted and the directory removed. A directory can also be given
//! directly (`Disk::from_dir`). Everything is resolved under `--root`.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

use super::{Fetch, Source, SourceError};
use crate::host::Paths;
use crate::host::disks::{FsType, Kind, find_labelled, probe_label};
use crate::net::http::MAX_BODY;

/// A config disk source.
pub struct Disk {
    kind: Kind,
    paths: Paths,
    dir: Option<PathBuf>,
}

impl Disk {
    /// Looks for the disk under `paths` when fetched.
    pub fn new(paths: &Paths, kind: Kind) -> Self {
        Disk {
            kind,
            paths: paths.clone(),
            dir: None,
        }
    }

    /// Reads from a directory holding the disk's files (already mounted,
    /// or a copy given on the command line).
    pub fn from_dir(kind: Kind, dir: impl Into<PathBuf>) -> Self {
        Disk {
            kind,
            paths: Paths::new("/"),
            dir: Some(dir.into()),
        }
    }

    fn err(&self, message: String, retryable: bool) -> SourceError {
        SourceError {
            source_name: self.name(),
            message,
            retryable,
        }
    }

    fn read_from(&self, dir: &Path) -> Result<Fetch, SourceError> {
        let path = dir.join(self.kind.file());
        // O_NONBLOCK: a FIFO on the medium must not hang the boot
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(&path);
        let f = match f {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Fetch::Absent(format!(
                    "{} has no {}",
                    dir.display(),
                    self.kind.file()
                )));
            }
            Err(e) => return Err(self.err(format!("opening {}: {e}", path.display()), false)),
        };
        if !f.metadata().is_ok_and(|m| m.is_file()) {
            return Err(self.err(format!("{} is not a regular file", path.display()), false));
        }
        let mut data = Vec::new();
        f.take(MAX_BODY + 1)
            .read_to_end(&mut data)
            .map_err(|e| self.err(format!("reading {}: {e}", path.display()), false))?;
        if data.len() as u64 > MAX_BODY {
            return Err(self.err(
                format!("{} is larger than {} MiB", path.display(), MAX_BODY >> 20),
                false,
            ));
        }
        if data.is_empty() {
            return Ok(Fetch::Absent(format!("{} is empty", path.display())));
        }
        Ok(Fetch::Found(data))
    }

    /// Where `dev` is mounted already, per the root's `/proc/self/mounts`.
    fn mounted_at(&self, dev: &Path) -> Option<PathBuf> {
        let mounts = fs::read_to_string(self.paths.host("/proc/self/mounts")).ok()?;
        let want = fs::canonicalize(dev).ok()?;
        mounts.lines().find_map(|line| {
            let mut it = line.split_whitespace();
            let (source, target) = (it.next()?, it.next()?);
            let source = fs::canonicalize(self.paths.host(unescape(source))).ok()?;
            (source == want).then(|| self.paths.host(unescape(target)))
        })
    }

    fn mount_and_read(&self, dev: &Path) -> Result<Fetch, SourceError> {
        let types: Vec<FsType> = match probe_label(dev) {
            Some((t, _)) => vec![t],
            None => vec![FsType::Iso9660, FsType::Vfat],
        };
        let base = self.paths.run_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .map_err(|e| self.err(format!("creating {}: {e}", base.display()), false))?;
        let dir = base.join(format!(
            "disk-{}-{}",
            std::process::id(),
            self.kind.labels()[0]
        ));
        if dir.exists() {
            let _ = rustix::mount::unmount(&dir, UnmountFlags::DETACH);
            let _ = fs::remove_dir(&dir);
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| self.err(format!("creating {}: {e}", dir.display()), false))?;
        let flags =
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        let mut last = None;
        for t in &types {
            match rustix::mount::mount(dev, &dir, t.as_str(), flags, c"") {
                Ok(()) => {
                    let _guard = Mounted(&dir);
                    return self.read_from(&dir);
                }
                Err(e) => {
                    let hint = if e == rustix::io::Errno::NODEV {
                        format!(" (the kernel has no {} filesystem driver)", t.as_str())
                    } else {
                        String::new()
                    };
                    last = Some(format!(
                        "mounting {} ({}) read-only on {}: {e}{hint}",
                        dev.display(),
                        t.as_str(),
                        dir.display()
                    ))
                }
            }
        }
        let _ = fs::remove_dir(&dir);
        Err(self.err(last.unwrap_or_default(), false))
    }
}

/// Unmounts (lazily if busy) and removes the mount point when dropped.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        if rustix::mount::unmount(self.0, UnmountFlags::empty()).is_err() {
            let _ = rustix::mount::unmount(self.0, UnmountFlags::DETACH);
        }
        let _ = fs::remove_dir(self.0);
    }
}

/// Undoes the octal escapes of `/proc/self/mounts` (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Source for Disk {
    fn name(&self) -> String {
        match &self.dir {
            Some(d) => format!(
                "{} {}",
                self.kind.name(),
                d.join(self.kind.file()).display()
            ),
            None => format!(
                "{} labelled {}",
                self.kind.name(),
                self.kind.labels().join("/")
            ),
        }
    }

    fn fetch(&self) -> Result<Fetch, SourceError> {
        if let Some(dir) = &self.dir {
            return self.read_from(dir);
        }
        let Some((dev, _)) = find_labelled(&self.paths, self.kind) else {
            return Ok(Fetch::Absent(format!(
                "no block device labelled {}",
                self.kind.labels().join(" or ")
            )));
        };
        match self.mounted_at(&dev) {
            Some(dir) => self.read_from(&dir),
            None => self.mount_and_read(&dev),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mount_fields() {
        assert_eq!(unescape("/media/a\\040b"), "/media/a b");
        assert_eq!(unescape("/x\\"), "/x\\");
        assert_eq!(unescape("/x\\04"), "/x\\04");
    }
}
