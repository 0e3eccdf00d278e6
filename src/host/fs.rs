//! Durable, atomic file writes under a root that cannot be escaped through
//! symlinks.
//!
//! A write creates a temporary file in the target's directory, writes and
//! fsyncs it, sets its mode, renames it over the target and fsyncs the
//! directory. A reader therefore sees the old file or the new one, never a
//! half-written one, even across a power cut.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::FsError;
use crate::host::paths::HostPath;

/// Refuses `path` when any existing component between `root` and `path`
/// (inclusive) is a symlink: a write must never be redirected out of the root.
pub fn check_no_symlinks(root: &Path, path: &Path) -> Result<(), FsError> {
    let rel = path.strip_prefix(root).map_err(|_| {
        FsError::new(
            "resolving",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "path is outside the root"),
        )
    })?;
    let mut cur = PathBuf::with_capacity(path.as_os_str().len() + 1);
    cur.push(root);
    for c in rel.components() {
        cur.push(c);
        if !exists_not_symlink(&cur)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Whether `path` exists, refusing it when it is a symlink (its parents are
/// not looked at).
fn exists_not_symlink(path: &Path) -> Result<bool, FsError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(FsError::new(
            "refusing to follow symlink",
            path,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "symlinks are not followed under --root",
            ),
        )),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FsError::new("inspecting", path, e)),
    }
}

/// Creates `dir` with `mode` and its missing parents with 0755 (existing
/// directories are left as they are), refusing symlinks under `root`. The
/// mode is set exactly (the umask does not narrow it).
pub fn create_dir_all(root: &Path, dir: &Path, mode: u32) -> Result<(), FsError> {
    if dir == root {
        // The root itself (e.g. a fresh render target) is the caller's.
        return fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| FsError::new("creating directory", dir, e));
    }
    check_no_symlinks(root, dir)?;
    if super::dryrun::active(dir) {
        if dir.is_dir() {
            return super::dirs::fix_unsafe_mode(dir, mode, true);
        }
        // recorded, with its missing parents (0755), instead of created
        let mut missing = dir;
        let mut leaf_mode = mode;
        while missing.starts_with(root) && missing != root && !missing.is_dir() {
            super::dryrun::create_dir(missing, leaf_mode);
            leaf_mode = 0o755;
            match missing.parent() {
                Some(p) => missing = p,
                None => break,
            }
        }
        return Ok(());
    }
    if dir.is_dir() {
        return super::dirs::fix_unsafe_mode(dir, mode, false);
    }
    if let Some(parent) = dir.parent()
        && !parent.is_dir()
    {
        create_dir_all(root, parent, 0o755)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(|e| FsError::new("setting mode of", dir, e)),
        // created concurrently: fine, it is a directory now
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(FsError::new("creating directory", dir, e)),
    }
}

/// Whether to fsync each file as it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// fsync the file and its directory on every write.
    Each,
    /// No per-file fsync; the function that wrote the files ends with one
    /// [`sync_filesystem`] (`syncfs`) when it wrote anything.
    Deferred,
    /// No per-file fsync and no `syncfs` either: the caller issues one
    /// [`sync_filesystem`] for the whole run before anything depends on the
    /// files (a node run syncs once, before the kubelet starts).
    Batched,
}

/// Atomically writes `data` to `path` with `mode`, creating parent
/// directories with mode 0755. Never follows a symlink under `root`.
pub fn write_atomic(target: &HostPath, data: &[u8], mode: u32, sync: Sync) -> Result<(), FsError> {
    let (root, path) = (target.root(), target.path());
    let dir = path.parent().ok_or_else(|| {
        FsError::new(
            "writing",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"),
        )
    })?;
    // `create_dir_all` refuses a symlink anywhere in `dir` and a `dir`
    // outside the root (`dir` equal to the root is the caller's): only the
    // file itself is left to check
    create_dir_all(root, dir, 0o755)?;
    exists_not_symlink(path)?;
    if super::dryrun::write(path, data, mode) {
        return Ok(());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale_temps(dir, &name);
    let tmp = dir.join(temp_name(&name));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&tmp)
            .map_err(|e| FsError::new("creating", &tmp, e))?;
        // The umask may have narrowed the mode; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| FsError::new("setting mode of", &tmp, e))?;
        f.write_all(data)
            .map_err(|e| FsError::new("writing", &tmp, e))?;
        if sync == Sync::Each {
            f.sync_all().map_err(|e| FsError::new("syncing", &tmp, e))?;
        }
        fs::rename(&tmp, path).map_err(|e| FsError::new("renaming into", path, e))?;
        if sync == Sync::Each {
            fsync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Counts temp files made by this process, so that no two writers (two
/// processes, or two threads of one) ever share a temp name.
static TEMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

const TEMP_SUFFIX: &str = ".kubeboot-tmp";

/// `.<name>.<pid>-<n>.kubeboot-tmp`: unique per process and per write.
fn temp_name(name: &str) -> String {
    let n = TEMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(".{name}.{}-{n}{TEMP_SUFFIX}", std::process::id())
}

/// Removes temp files for `name` left in `dir` by a run that died before
/// its rename (a crash, a power cut): those of a process that no longer
/// exists. A live process's temp file is never touched. The directory
/// is read with `getdents64` into a buffer on the stack (rustix's
/// `RawDir`): no allocation per entry, as every write scans its directory.
fn remove_stale_temps(dir: &Path, name: &str) {
    use rustix::fs::{AtFlags, Mode, OFlags, RawDir};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::open(dir, flags, Mode::empty()) else {
        return;
    };
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut entries = RawDir::new(&fd, &mut buf);
    let old_fixed = format!(".{name}{TEMP_SUFFIX}");
    let prefix = format!(".{name}.");
    while let Some(Ok(e)) = entries.next() {
        let Ok(file) = e.file_name().to_str() else {
            continue;
        };
        let stale = if file == old_fixed {
            // the fixed name of earlier versions: no writer uses it now
            true
        } else {
            let Some((pid, n)) = file
                .strip_prefix(&prefix)
                .and_then(|f| f.strip_suffix(TEMP_SUFFIX))
                .and_then(|f| f.split_once('-'))
            else {
                continue;
            };
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            // another file's temp (`.<name>.<more>.<pid>-<n>`) does not parse
            if !digits(pid) || !digits(n) {
                continue;
            }
            !Path::new("/proc").join(pid).exists()
        };
        if stale {
            let _ = rustix::fs::unlinkat(&fd, e.file_name(), AtFlags::empty());
        }
    }
}

/// Reads a file that an earlier step must have written: absent is a
/// failure naming the path and `hint` (who writes it), read errors carry
/// the path. The one helper for "read this or say why not".
pub fn read_required(path: &Path, hint: &str) -> Result<Vec<u8>, crate::error::Error> {
    read_optional(path)?.ok_or_else(|| {
        crate::error::Error::Failed(if hint.is_empty() {
            format!("{}: missing", path.display())
        } else {
            format!("{}: missing ({hint})", path.display())
        })
    })
}

/// fsyncs a directory so a rename inside it is durable.
pub fn fsync_dir(dir: &Path) -> Result<(), FsError> {
    if super::dryrun::active(dir) {
        return Ok(());
    }
    let d = fs::File::open(dir).map_err(|e| FsError::new("opening directory", dir, e))?;
    d.sync_all()
        .map_err(|e| FsError::new("syncing directory", dir, e))
}

/// Flushes the whole filesystem holding `path` with one `syncfs(2)`.
pub fn sync_filesystem(path: &Path) -> Result<(), FsError> {
    if super::dryrun::active(path) {
        return Ok(());
    }
    let f = fs::File::open(path).map_err(|e| FsError::new("opening", path, e))?;
    rustix::fs::syncfs(&f).map_err(|e| FsError::new("syncing filesystem of", path, e.into()))
}

/// Reads a file, mapping "not found" to `Ok(None)`.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FsError> {
    if let Some(Some(b)) = super::dryrun::read(path) {
        return Ok(Some(b));
    }
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FsError::new("reading", path, e)),
    }
}

/// The regular files under `dir` and their bytes, in the order of Go's
/// `filepath.Walk` (names sorted bytewise, a sub-directory's files where
/// its name sorts), as kubeadm reads a patches directory. `dir` must be a
/// directory; at most 4096 files of at most 1 MiB each.
pub fn walk_files(dir: &Path) -> Result<Vec<(std::path::PathBuf, Vec<u8>)>, String> {
    const MAX_FILES: usize = 4096;
    const MAX_BYTES: u64 = 1 << 20;
    fn walk(dir: &Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) -> Result<(), String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        names.sort();
        for n in names {
            let p = dir.join(n);
            let meta = fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            if meta.is_dir() {
                walk(&p, out)?;
                continue;
            }
            if out.len() >= MAX_FILES {
                return Err(format!("more than {MAX_FILES} files"));
            }
            let len = fs::metadata(&p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .len();
            if len > MAX_BYTES {
                return Err(format!("{}: larger than {MAX_BYTES} bytes", p.display()));
            }
            let b = fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            out.push((p, b));
        }
        Ok(())
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err("not a directory".into());
    }
    let mut out = Vec::new();
    walk(dir, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kubeboot-fs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_with_mode_and_replaces() {
        let root = tmpdir("mode");
        let p = root.join("etc/kubernetes/pki/ca.key");
        let paths = crate::host::Paths::new(&root);
        write_atomic(&paths.rooted(&p), b"one", 0o600, Sync::Each).unwrap();
        write_atomic(&paths.rooted(&p), b"two", 0o600, Sync::Deferred).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let left: Vec<_> = fs::read_dir(root.join("etc/kubernetes/pki"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["ca.key"], "no temp file left");
        sync_filesystem(&root).unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn parents_get_0755_and_the_leaf_its_mode() {
        let root = tmpdir("dirs");
        let leaf = root.join("var/lib/etcd");
        create_dir_all(&root, &leaf, 0o700).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&leaf), 0o700);
        assert_eq!(mode(&root.join("var")), 0o755);
        assert_eq!(mode(&root.join("var/lib")), 0o755);
        // an existing directory keeps its mode
        create_dir_all(&root, &root.join("var"), 0o700).unwrap();
        assert_eq!(mode(&root.join("var")), 0o755);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn temp_names_are_unique_and_stale_ones_are_removed() {
        let a = temp_name("ca.key");
        let b = temp_name("ca.key");
        assert_ne!(a, b);
        assert!(
            a.starts_with(&format!(".ca.key.{}-", std::process::id())),
            "{a}"
        );
        let root = tmpdir("stale");
        let dir = root.join("pki");
        fs::create_dir_all(&dir).unwrap();
        // a dead run's temp (pid 0 is never a process in /proc), the old
        // fixed name, and one of a live process (this one)
        let dead = dir.join(format!(".ca.key.0-7{TEMP_SUFFIX}"));
        let old = dir.join(format!(".ca.key{TEMP_SUFFIX}"));
        let live = dir.join(format!(".ca.key.{}-999{TEMP_SUFFIX}", std::process::id()));
        for p in [&dead, &old, &live] {
            fs::write(p, b"x").unwrap();
        }
        // enough other entries that the directory takes several reads
        for i in 0..200 {
            fs::write(dir.join(format!("{i:0>60}.crt")), b"").unwrap();
        }
        let paths = crate::host::Paths::new(&root);
        write_atomic(
            &paths.rooted(dir.join("ca.key")),
            b"k",
            0o600,
            Sync::Deferred,
        )
        .unwrap();
        assert!(!dead.exists() && !old.exists());
        assert!(live.exists(), "a live writer's temp file is kept");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn refuses_symlink_escape() {
        let root = tmpdir("link");
        let outside = tmpdir("link-outside");
        std::os::unix::fs::symlink(&outside, root.join("etc")).unwrap();
        let paths = crate::host::Paths::new(&root);
        let err = write_atomic(&paths.rooted("/etc/x"), b"x", 0o644, Sync::Each).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!outside.join("x").exists());
        // a symlinked final component is refused too
        fs::remove_file(root.join("etc")).unwrap();
        fs::create_dir(root.join("etc")).unwrap();
        std::os::unix::fs::symlink(outside.join("y"), root.join("etc/y")).unwrap();
        assert!(write_atomic(&paths.rooted("/etc/y"), b"y", 0o644, Sync::Each).is_err());
        assert!(!outside.join("y").exists());
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }
}
