//! Local userdata sources: files already on the node (kubeboot's own config
//! file, Ignition's and cloud-init's locations) and the kernel command line.
//! They need no network and no platform detection, so they are always
//! asked first.
//!
//! Precedence ([`local_sources`], first found wins; the reasoning is in
//! `docs/userdata.md`):
//!
//! 1. kernel command line `/proc/cmdline` (only with `kubeboot.*` config args)
//! 2. `/etc/kubeboot/config.yaml`
//! 3. QEMU fw_cfg `opt/com.coreos/config`
//! 4. `/run/ignition.json`
//! 5. `/boot/ignition/config.ign`
//! 6. `/var/lib/cloud/seed/nocloud/user-data`
//! 7. `/var/lib/cloud/seed/nocloud-net/user-data`
//! 8. `/var/lib/cloud/instance/user-data.txt`
//! 9. `/usr/lib/ignition/user.ign`
//!
//! An explicit file given on the command line ([`FileSource::explicit`])
//! goes before all of them. Every path is resolved under `--root`, with
//! symlinks followed inside the root (cloud-init's `/var/lib/cloud/instance`
//! is an absolute symlink). Every read is bounded by
//! [`MAX_USERDATA_BYTES`].

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::{Fetch, Source, SourceError};
use crate::envelope::{MAX_USERDATA_BYTES, cmdline};
use crate::host::Paths;

/// A file that may hold userdata.
#[derive(Debug, Clone)]
pub struct FileSource {
    label: &'static str,
    /// The path as the user knows it (`/var/lib/cloud/seed/...`).
    shown: String,
    /// The root it is resolved under; `None` for an explicit file.
    root: Option<PathBuf>,
    path: PathBuf,
}

impl FileSource {
    /// A file the user named (`--userdata FILE`): read as given, not under `--root`.
    pub fn explicit(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        FileSource {
            label: "file",
            shown: path.display().to_string(),
            root: None,
            path,
        }
    }

    /// A well-known host path, resolved under the root of `paths`.
    pub fn host(paths: &Paths, label: &'static str, abs: &str) -> Self {
        FileSource {
            label,
            shown: abs.to_string(),
            root: Some(paths.root().to_path_buf()),
            path: PathBuf::from(abs),
        }
    }

    fn resolved(&self) -> io::Result<PathBuf> {
        match &self.root {
            None => Ok(self.path.clone()),
            Some(root) => resolve_under_root(root, &self.path),
        }
    }

    fn error(&self, message: String, retryable: bool) -> SourceError {
        SourceError {
            source_name: self.name(),
            message,
            retryable,
        }
    }
}

impl Source for FileSource {
    fn name(&self) -> String {
        match &self.root {
            Some(root) if root != Path::new("/") => {
                format!("{} {} (under {})", self.label, self.shown, root.display())
            }
            _ => format!("{} {}", self.label, self.shown),
        }
    }

    fn fetch(&self) -> Result<Fetch, SourceError> {
        let path = match self.resolved() {
            Ok(p) => p,
            Err(e) if is_absent(&e) => return Ok(Fetch::Absent("no such file".into())),
            Err(e) => return Err(self.error(format!("resolving the path: {e}"), false)),
        };
        match read_bounded(&path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => {
                Ok(Fetch::Absent("the file is empty".into()))
            }
            Ok(b) => Ok(Fetch::Found(b)),
            Err(e) if is_absent(&e) => Ok(Fetch::Absent("no such file".into())),
            Err(e) => Err(self.error(e.to_string(), e.kind() == io::ErrorKind::Interrupted)),
        }
    }
}

/// The kernel command line: found only when it carries `kubeboot.*`
/// configuration arguments.
#[derive(Debug, Clone)]
pub struct CmdlineSource {
    file: FileSource,
}

impl CmdlineSource {
    /// `/proc/cmdline` under the root of `paths`.
    pub fn new(paths: &Paths) -> Self {
        CmdlineSource {
            file: FileSource::host(paths, "kernel command line", "/proc/cmdline"),
        }
    }
}

impl Source for CmdlineSource {
    fn name(&self) -> String {
        self.file.name()
    }

    fn fetch(&self) -> Result<Fetch, SourceError> {
        match self.file.fetch()? {
            Fetch::Absent(why) => Ok(Fetch::Absent(why)),
            Fetch::Found(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                if cmdline::has_config_args(&text) {
                    Ok(Fetch::Found(bytes))
                } else {
                    Ok(Fetch::Absent("no kubeboot.* arguments".into()))
                }
            }
        }
    }
}

/// The local sources in precedence order (see the module documentation).
pub fn local_sources(paths: &Paths) -> Vec<Box<dyn Source>> {
    let file = |label, abs| Box::new(FileSource::host(paths, label, abs)) as Box<dyn Source>;
    vec![
        Box::new(CmdlineSource::new(paths)),
        file("kubeboot config", crate::host::paths::KUBEBOOT_CONFIG_PATH),
        file(
            "ignition qemu fw_cfg",
            "/sys/firmware/qemu_fw_cfg/by_name/opt/com.coreos/config/raw",
        ),
        file("ignition fetched config", "/run/ignition.json"),
        file("ignition boot partition", "/boot/ignition/config.ign"),
        file("nocloud seed", "/var/lib/cloud/seed/nocloud/user-data"),
        file(
            "nocloud-net seed",
            "/var/lib/cloud/seed/nocloud-net/user-data",
        ),
        file(
            "cloud-init instance copy",
            "/var/lib/cloud/instance/user-data.txt",
        ),
        file("ignition image config", "/usr/lib/ignition/user.ign"),
    ]
}

fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Reads at most [`MAX_USERDATA_BYTES`]; a longer file is an error. Works
/// for procfs and sysfs files, whose reported size is 0 or a page.
pub(crate) fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let f = open_regular(path)?;
    let mut out = Vec::new();
    f.take(MAX_USERDATA_BYTES as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > MAX_USERDATA_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than the {MAX_USERDATA_BYTES}-byte userdata limit"),
        ));
    }
    Ok(out)
}

/// Opens `path` for reading without blocking (`O_NONBLOCK`: opening a FIFO
/// with no writer would otherwise wait forever) and refuses anything but a
/// regular file: a FIFO, socket or device is not userdata.
pub(crate) fn open_regular(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let t = f.metadata()?.file_type();
    if t.is_file() {
        return Ok(f);
    }
    let what = if t.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory, not a file",
        ));
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}, not a regular file; userdata is read from regular files only"),
    ))
}

/// Resolves the absolute host path `abs` under `root`, following symlinks
/// as if `root` were `/` (absolute targets restart at `root`, `..` never
/// climbs above it). Gives up after 40 links, like the kernel.
pub fn resolve_under_root(root: &Path, abs: &Path) -> io::Result<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> = components(abs);
    pending.reverse();
    let mut cur = root.to_path_buf();
    let mut depth = 0usize; // components of `cur` below root
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if depth > 0 {
                cur.pop();
                depth -= 1;
            }
            continue;
        }
        let next = cur.join(&part);
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::other("too many levels of symbolic links"));
                }
                let target = std::fs::read_link(&next)?;
                if target.is_absolute() {
                    cur = root.to_path_buf();
                    depth = 0;
                }
                let mut t = components(&target);
                t.reverse();
                pending.extend(t);
            }
            Ok(_) => {
                cur = next;
                depth += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Nothing further to resolve: the rest is appended as is.
                cur = next;
                while let Some(p) = pending.pop() {
                    cur.push(p);
                }
                return Ok(cur);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

/// The normal and `..` components of a path (root and `.` dropped).
fn components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::userdata::{Search, first_found};
    use std::fs;

    fn tmproot(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kubeboot-local-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn put(root: &Path, abs: &str, data: &[u8]) {
        let p = root.join(abs.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    #[test]
    fn nothing_found_lists_every_source() {
        let root = tmproot("none");
        let paths = Paths::new(&root);
        let Search::NotFound {
            tried: attempts,
            retryable,
        } = first_found(&local_sources(&paths))
        else {
            panic!("found userdata in an empty root");
        };
        assert!(!retryable);
        assert_eq!(attempts.len(), 9);
        assert!(
            attempts.iter().all(|a| a.outcome == "no such file"),
            "{attempts:?}"
        );
        assert!(
            attempts[0]
                .source
                .starts_with("kernel command line /proc/cmdline (under "),
            "{}",
            attempts[0].source
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn precedence_and_reasons() {
        let root = tmproot("prec");
        let paths = Paths::new(&root);
        put(
            &root,
            "/proc/cmdline",
            b"BOOT_IMAGE=/vmlinuz ro kubeboot.platform=metal\n",
        );
        put(&root, "/etc/kubeboot/config.yaml", b"\n\n");
        put(
            &root,
            "/var/lib/cloud/seed/nocloud/user-data",
            b"#cloud-config\nkubeboot: {role: worker}\n",
        );
        put(&root, "/usr/lib/ignition/user.ign", b"{}");
        let Search::Found {
            source: name,
            data: bytes,
            tried: attempts,
        } = first_found(&local_sources(&paths))
        else {
            panic!("nothing found");
        };
        assert_eq!(
            name,
            format!(
                "nocloud seed /var/lib/cloud/seed/nocloud/user-data (under {})",
                root.display()
            )
        );
        assert!(bytes.starts_with(b"#cloud-config"));
        let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(outcomes[0], "no kubeboot.* arguments");
        assert_eq!(outcomes[1], "the file is empty");
        assert_eq!(outcomes[5], format!("found {} bytes", bytes.len()));
        assert_eq!(attempts.len(), 6);
        // the kernel command line wins once it has kubeboot args
        put(
            &root,
            "/proc/cmdline",
            b"ro kubeboot.role=worker kubeboot.server=10.0.0.10:6443\n",
        );
        let Search::Found { source, .. } = first_found(&local_sources(&paths)) else {
            panic!("nothing found");
        };
        assert!(source.starts_with("kernel command line"));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = tmproot("link");
        let paths = Paths::new(&root);
        put(
            &root,
            "/var/lib/cloud/instances/i-123/user-data.txt",
            b"#cloud-config\nkubeboot: {role: worker}\n",
        );
        // cloud-init's link is absolute: it must resolve under the root, not on this host
        std::os::unix::fs::symlink(
            "/var/lib/cloud/instances/i-123",
            root.join("var/lib/cloud/instance"),
        )
        .unwrap();
        let src = FileSource::host(
            &paths,
            "cloud-init instance copy",
            "/var/lib/cloud/instance/user-data.txt",
        );
        assert!(matches!(src.fetch().unwrap(), Fetch::Found(b) if b.starts_with(b"#cloud-config")));
        // ../ cannot climb out of the root
        fs::create_dir_all(root.join("etc/kubeboot")).unwrap();
        std::os::unix::fs::symlink(
            "../../../../../../../../etc/hostname",
            root.join("etc/kubeboot/config.yaml"),
        )
        .unwrap();
        assert_eq!(
            resolve_under_root(&root, Path::new("/etc/kubeboot/config.yaml")).unwrap(),
            root.join("etc/hostname")
        );
        // loops are reported
        std::os::unix::fs::symlink("/loop", root.join("loop")).unwrap();
        let e = FileSource::host(&paths, "x", "/loop/a")
            .fetch()
            .unwrap_err();
        assert!(e.to_string().contains("symbolic links"), "{e}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn failures_stop_the_search_and_limits_hold() {
        let root = tmproot("fail");
        let paths = Paths::new(&root);
        fs::create_dir_all(root.join("etc/kubeboot/config.yaml")).unwrap();
        put(&root, "/usr/lib/ignition/user.ign", b"{}");
        let Search::NotFound {
            tried: attempts, ..
        } = first_found(&local_sources(&paths))
        else {
            panic!("an unreadable higher-precedence source must stop the search");
        };
        assert!(
            attempts.last().unwrap().outcome.starts_with("error: ")
                && attempts.last().unwrap().outcome.contains("directory"),
            "{attempts:?}"
        );
        assert_eq!(attempts.len(), 2);
        let big = root.join("big");
        let f = fs::File::create(&big).unwrap();
        f.set_len(MAX_USERDATA_BYTES as u64 + 1).unwrap();
        let e = FileSource::explicit(&big).fetch().unwrap_err();
        assert!(e.to_string().contains("userdata limit"), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("file {}", big.display()))
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
