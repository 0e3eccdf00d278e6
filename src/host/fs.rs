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
use std::path::Path;

use crate::error::FsError;

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
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(FsError::new(
                    "refusing to follow symlink",
                    &cur,
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "symlinks are not followed under --root",
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(FsError::new("inspecting", &cur, e)),
        }
    }
    Ok(())
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
    if dir.is_dir() {
        return Ok(());
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
    /// Leave syncing to a later [`sync_filesystem`] call (one `syncfs`).
    Deferred,
}

/// Atomically writes `data` to `path` with `mode`, creating parent
/// directories with mode 0755. Never follows a symlink under `root`.
pub fn write_atomic(
    root: &Path,
    path: &Path,
    data: &[u8],
    mode: u32,
    sync: Sync,
) -> Result<(), FsError> {
    let dir = path.parent().ok_or_else(|| {
        FsError::new(
            "writing",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"),
        )
    })?;
    create_dir_all(root, dir, 0o755)?;
    check_no_symlinks(root, path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.kubeboot-tmp"));
    let _ = fs::remove_file(&tmp);
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
    let d = fs::File::open(dir).map_err(|e| FsError::new("opening directory", dir, e))?;
    d.sync_all()
        .map_err(|e| FsError::new("syncing directory", dir, e))
}

/// Flushes the whole filesystem holding `path` with one `syncfs(2)`.
pub fn sync_filesystem(path: &Path) -> Result<(), FsError> {
    let f = fs::File::open(path).map_err(|e| FsError::new("opening", path, e))?;
    rustix::fs::syncfs(&f).map_err(|e| FsError::new("syncing filesystem of", path, e.into()))
}

/// Reads a file, mapping "not found" to `Ok(None)`.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FsError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FsError::new("reading", path, e)),
    }
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
        write_atomic(&root, &p, b"one", 0o600, Sync::Each).unwrap();
        write_atomic(&root, &p, b"two", 0o600, Sync::Deferred).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            !root
                .join("etc/kubernetes/pki/.ca.key.kubeboot-tmp")
                .exists()
        );
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
    fn refuses_symlink_escape() {
        let root = tmpdir("link");
        let outside = tmpdir("link-outside");
        std::os::unix::fs::symlink(&outside, root.join("etc")).unwrap();
        let err = write_atomic(&root, &root.join("etc/x"), b"x", 0o644, Sync::Each).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!outside.join("x").exists());
        // a symlinked final component is refused too
        fs::remove_file(root.join("etc")).unwrap();
        fs::create_dir(root.join("etc")).unwrap();
        std::os::unix::fs::symlink(outside.join("y"), root.join("etc/y")).unwrap();
        assert!(write_atomic(&root, &root.join("etc/y"), b"y", 0o644, Sync::Each).is_err());
        assert!(!outside.join("y").exists());
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }
}
