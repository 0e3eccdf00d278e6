//! `--dry-run`: the file phases run as usual, but every write under the
//! root lands in an in-memory overlay instead of on disk. Later phases read
//! what earlier ones "wrote" through the overlay (the kubeconfig phase
//! needs the CA the certs phase made), and at the end the run lists each
//! file it would write with its mode, size and whether it would be
//! created, kept or replaced. Nothing under `--root` changes.
//!
//! [`crate::host::fs`] consults the overlay in its writers and readers;
//! the overlay applies only to writes under the root it was started for.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

struct Overlay {
    root: PathBuf,
    files: BTreeMap<PathBuf, (Vec<u8>, u32)>,
    dirs: BTreeMap<PathBuf, u32>,
}

static OVERLAY: Mutex<Option<Overlay>> = Mutex::new(None);

/// One file or directory a dry run would write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The path (under the root).
    pub path: PathBuf,
    /// The mode it would get.
    pub mode: u32,
    /// Its size in bytes (0 for a directory).
    pub size: usize,
    /// `created`, `kept` (same content and mode on disk) or `replaced`.
    pub action: &'static str,
    /// A directory rather than a file.
    pub dir: bool,
}

/// Starts a dry run for `root`: from now on writes under it are kept in memory.
pub fn begin(root: &Path) {
    if let Ok(mut o) = OVERLAY.lock() {
        *o = Some(Overlay {
            root: root.to_path_buf(),
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
        });
    }
}

/// Ends the dry run: what it would have written, compared with the disk.
pub fn end() -> Vec<Planned> {
    let Some(o) = OVERLAY.lock().ok().and_then(|mut o| o.take()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (path, mode) in o.dirs {
        let action = match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() && m.permissions().mode() & 0o7777 == mode => "kept",
            Ok(_) => "replaced",
            Err(_) => "created",
        };
        out.push(Planned {
            path,
            mode,
            size: 0,
            action,
            dir: true,
        });
    }
    for (path, (data, mode)) in o.files {
        let on_disk = std::fs::read(&path).ok();
        let disk_mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o7777);
        let action = match on_disk {
            None => "created",
            Some(d) if d == data && disk_mode.is_ok_and(|m| m == mode) => "kept",
            Some(_) => "replaced",
        };
        out.push(Planned {
            path,
            mode,
            size: data.len(),
            action,
            dir: false,
        });
    }
    out
}

fn with<T>(path: &Path, f: impl FnOnce(&mut Overlay) -> T) -> Option<T> {
    let mut guard = OVERLAY.lock().ok()?;
    let o = guard.as_mut()?;
    if !path.starts_with(&o.root) {
        return None;
    }
    Some(f(o))
}

/// Records a file write; `true` when a dry run took it (nothing is written).
pub(crate) fn write(path: &Path, data: &[u8], mode: u32) -> bool {
    with(path, |o| {
        o.files.insert(path.to_path_buf(), (data.to_vec(), mode));
    })
    .is_some()
}

/// Records a directory; `true` when a dry run took it.
pub(crate) fn create_dir(path: &Path, mode: u32) -> bool {
    with(path, |o| {
        o.dirs.entry(path.to_path_buf()).or_insert(mode);
    })
    .is_some()
}

/// A file's content as a dry run sees it: `Some(Some(bytes))` when the run
/// "wrote" it, `Some(None)` when a dry run is active but did not write it
/// (read the disk), `None` when no dry run is active for this path.
pub(crate) fn read(path: &Path) -> Option<Option<Vec<u8>>> {
    with(path, |o| o.files.get(path).map(|(d, _)| d.clone()))
}

/// Whether a dry run is active for `path` (syncs are then skipped).
pub(crate) fn active(path: &Path) -> bool {
    with(path, |_| ()).is_some()
}
