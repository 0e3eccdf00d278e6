//! Durable, atomic file writes under a root that cannot be escaped through
//! symlinks.
//!
//! A write creates a temporary file in the target's directory, writes and
//! fsyncs it, sets its mode, renames it over the target and fsyncs the
//! directory. A reader therefore sees the old file or the new one, never a
//! half-written one, even across a power cut.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

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
        Ok(m) if m.file_type().is_symlink() => Err(symlink_refused(path)),
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
        Ok(()) if !umask_narrows(mode) => Ok(()),
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
    /// Never made durable, by this write or by its caller: a file that is
    /// replaced often and only read while the process runs or after it has
    /// written a durable version (the in-progress status). An existing
    /// file is replaced by exchanging it with the temp file
    /// (`renameat2(RENAME_EXCHANGE)`), then the temp file, now the old
    /// one, is removed: readers still see the old file or the new one,
    /// never a torn one, but ext4 does not write the new data out at once,
    /// as it does on a rename over an existing file (`auto_da_alloc`:
    /// about 0.2 ms against 0.04 ms on this machine's ext4). A power cut
    /// can leave the file empty.
    Never,
}

/// Atomically writes `data` to `path` with `mode`, creating parent
/// directories with mode 0755. Never follows a symlink under `root`.
///
/// The first write into a directory checks it (every component under the
/// root a real directory, created where missing, its mode made safe) and
/// reads it once for stale temp files; the directory is then kept open
/// ([`OpenDir`]) and this and later writes into it go through that
/// descriptor (`openat`, `renameat`): no path walk and no symlink check of
/// the directory per file, and no symlink swapped in above the directory
/// afterwards can redirect them. The file itself is checked on every write.
pub fn write_atomic(target: &HostPath, data: &[u8], mode: u32, sync: Sync) -> Result<(), FsError> {
    let (root, path) = (target.root(), target.path());
    let (dir, name) = dir_and_name("writing", path)?;
    if super::dryrun::active(path) {
        // recorded in the dry run's overlay, nothing touches the disk
        create_dir_all(root, dir, 0o755)?;
        exists_not_symlink(path)?;
        super::dryrun::write(path, data, mode);
        return Ok(());
    }
    let fd = open_dir(root, dir, name)?;
    match write_in(&fd, dir, path, name, data, mode, sync) {
        // the directory was removed since it was opened: check and open
        // it again, once
        Err(e) if e.op == "creating" && e.source.kind() == io::ErrorKind::NotFound => {
            forget_dir(root, dir);
            let fd = open_dir(root, dir, name)?;
            write_in(&fd, dir, path, name, data, mode, sync)
        }
        r => r,
    }
}

/// Creates `path` under its root as an empty file with `mode` (kept as it
/// is when it exists), through the same checked, open directory as
/// [`write_atomic`], with no temp file: an empty file has no content to
/// tear, only its name counts (a mark). Nothing in a dry run.
pub fn create_empty(target: &HostPath, mode: u32) -> Result<(), FsError> {
    use rustix::fs::{Mode, OFlags};
    let (root, path) = (target.root(), target.path());
    let (dir, name) = dir_and_name("creating", path)?;
    if super::dryrun::active(path) {
        return Ok(());
    }
    let fd = open_dir(root, dir, name)?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let f = rustix::fs::openat(&*fd, name, flags, Mode::from_raw_mode(mode))
        .map_err(|e| FsError::new("creating", path, e.into()))?;
    set_mode_exactly(&f, mode, path)
}

/// `path`'s directory and file name; an error for `op` naming `path`
/// when it has none (the root itself).
fn dir_and_name<'p>(op: &'static str, path: &'p Path) -> Result<(&'p Path, &'p OsStr), FsError> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(FsError::new(
            op,
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"),
        )),
    }
}

/// Sets the mode of the file just created as `f` (`path` in errors) to
/// `mode` again when the umask took bits out of it ([`umask_narrows`]);
/// under systemd's 0022 nothing is done.
pub(crate) fn set_mode_exactly(
    f: &impl std::os::fd::AsFd,
    mode: u32,
    path: &Path,
) -> Result<(), FsError> {
    if umask_narrows(mode) {
        rustix::fs::fchmod(f, rustix::fs::Mode::from_raw_mode(mode))
            .map_err(|e| FsError::new("setting mode of", path, e.into()))?;
    }
    Ok(())
}

/// Writes `data` as `name` in the open directory `dir_fd` (`dir` and
/// `path` name them in errors): a new temp file, its mode set exactly (the
/// umask may have narrowed it), the data, an fsync with [`Sync::Each`],
/// the rename over `name`, the directory's fsync with [`Sync::Each`].
fn write_in(
    dir_fd: &OwnedFd,
    dir: &Path,
    path: &Path,
    name: &OsStr,
    data: &[u8],
    mode: u32,
    sync: Sync,
) -> Result<(), FsError> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    // a regular file is there to be replaced
    let replaces = match rustix::fs::statat(dir_fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
            return Err(symlink_refused(path));
        }
        Ok(st) => FileType::from_raw_mode(st.st_mode) == FileType::RegularFile,
        Err(rustix::io::Errno::NOENT) => false,
        Err(e) => return Err(FsError::new("inspecting", path, e.into())),
    };
    let tmp = temp_name(&name.to_string_lossy());
    let mode = Mode::from_raw_mode(mode);
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let f = rustix::fs::openat(dir_fd, &tmp, flags, mode)
        .map_err(|e| FsError::new("creating", dir.join(&tmp), e.into()))?;
    let result = (|| {
        set_mode_exactly(&f, mode.bits(), &dir.join(&tmp))?;
        let mut file = fs::File::from(f);
        file.write_all(data)
            .map_err(|e| FsError::new("writing", dir.join(&tmp), e))?;
        if sync == Sync::Each {
            file.sync_all()
                .map_err(|e| FsError::new("syncing", dir.join(&tmp), e))?;
        }
        drop(file);
        if sync == Sync::Never && replaces && exchange(dir_fd, &tmp, name) {
            // the temp name now holds the old file
            let _ = rustix::fs::unlinkat(dir_fd, &tmp, AtFlags::empty());
            return Ok(());
        }
        rustix::fs::renameat(dir_fd, &tmp, dir_fd, name)
            .map_err(|e| FsError::new("renaming into", path, e.into()))?;
        if sync == Sync::Each {
            rustix::fs::fsync(dir_fd)
                .map_err(|e| FsError::new("syncing directory", dir, e.into()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir_fd, &tmp, AtFlags::empty());
    }
    result
}

/// Exchanges `tmp` and `name` in `dir_fd` ([`Sync::Never`]); false when
/// there is nothing to exchange with (no `name` yet) or the file system
/// cannot exchange: the caller renames instead.
fn exchange(dir_fd: &OwnedFd, tmp: &str, name: &OsStr) -> bool {
    use rustix::fs::RenameFlags;
    rustix::fs::renameat_with(dir_fd, tmp, dir_fd, name, RenameFlags::EXCHANGE).is_ok()
}

/// A directory [`write_atomic`] has checked and scanned, held open for
/// the writes after.
struct OpenDir {
    root: PathBuf,
    dir: PathBuf,
    fd: Arc<OwnedFd>,
    /// Temp files the scan found (any writer's, dead or alive), not yet
    /// removed: each is looked at when its file is written.
    temps: Vec<OsString>,
}

/// The directories [`write_atomic`] holds open, most recent last. A run
/// writes into about ten; the oldest are closed beyond [`MAX_OPEN_DIRS`].
static OPEN_DIRS: Mutex<Vec<OpenDir>> = Mutex::new(Vec::new());
const MAX_OPEN_DIRS: usize = 16;

/// The open directory `dir` under `root`, after removing the stale temp
/// files of `name` in it; checked, created and scanned when it is not open
/// yet.
fn open_dir(root: &Path, dir: &Path, name: &OsStr) -> Result<Arc<OwnedFd>, FsError> {
    let name = name.to_string_lossy();
    {
        let mut dirs = OPEN_DIRS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = dirs.iter_mut().find(|d| d.dir == dir && d.root == root) {
            remove_stale_temps(&d.fd, &mut d.temps, &name);
            return Ok(d.fd.clone());
        }
    }
    create_dir_all(root, dir, 0o755)?;
    use rustix::fs::{Mode, OFlags};
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if dir != root {
        // checked above; the root itself is the caller's and may be a link
        flags |= OFlags::NOFOLLOW;
    }
    let fd = rustix::fs::open(dir, flags, Mode::empty())
        .map_err(|e| FsError::new("opening directory", dir, e.into()))?;
    let mut temps = scan_temps(&fd);
    remove_stale_temps(&fd, &mut temps, &name);
    let fd = Arc::new(fd);
    let mut dirs = OPEN_DIRS.lock().unwrap_or_else(|p| p.into_inner());
    dirs.retain(|d| !(d.dir == dir && d.root == root));
    if dirs.len() >= MAX_OPEN_DIRS {
        dirs.remove(0);
    }
    dirs.push(OpenDir {
        root: root.to_path_buf(),
        dir: dir.to_path_buf(),
        fd: fd.clone(),
        temps,
    });
    Ok(fd)
}

/// The open directory `dir` under `root`, if [`write_atomic`] holds it.
fn cached_dir(root: &Path, dir: &Path) -> Option<Arc<OwnedFd>> {
    let dirs = OPEN_DIRS.lock().unwrap_or_else(|p| p.into_inner());
    let d = dirs.iter().find(|d| d.dir == dir && d.root == root)?;
    Some(d.fd.clone())
}

/// Reads `path` under `root`, refusing a symlink anywhere under the root
/// ([`check_no_symlinks`]); a missing file is `None`. In a directory
/// [`write_atomic`] holds open the file is opened through that descriptor
/// (`O_NOFOLLOW`), with no walk of the path.
pub fn read_under(root: &Path, path: &Path) -> Result<Option<Vec<u8>>, FsError> {
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name())
        && !super::dryrun::active(path)
        && let Some(fd) = cached_dir(root, dir)
    {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        return match rustix::fs::openat(&*fd, name, flags, Mode::empty()) {
            Ok(f) => {
                let mut b = Vec::new();
                fs::File::from(f)
                    .read_to_end(&mut b)
                    .map_err(|e| FsError::new("reading", path, e))?;
                Ok(Some(b))
            }
            // missing, unless the directory itself was removed since
            // (a new one may stand in its place): then read by path
            Err(rustix::io::Errno::NOENT) if !removed(&fd) => Ok(None),
            Err(rustix::io::Errno::NOENT) => {
                forget_dir(root, dir);
                check_no_symlinks(root, path)?;
                read_optional(path)
            }
            Err(rustix::io::Errno::LOOP) => Err(symlink_refused(path)),
            Err(e) => Err(FsError::new("reading", path, e.into())),
        };
    }
    check_no_symlinks(root, path)?;
    read_optional(path)
}

/// Whether the open directory `fd` was removed (no name links to it).
fn removed(fd: &OwnedFd) -> bool {
    rustix::fs::fstat(fd).map_or(true, |st| st.st_nlink == 0)
}

/// Closes `dir` (it was removed): the next write checks it again.
fn forget_dir(root: &Path, dir: &Path) {
    let mut dirs = OPEN_DIRS.lock().unwrap_or_else(|p| p.into_inner());
    dirs.retain(|d| !(d.dir == dir && d.root == root));
}

fn symlink_refused(path: &Path) -> FsError {
    FsError::new(
        "refusing to follow symlink",
        path,
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "symlinks are not followed under --root",
        ),
    )
}

/// Whether the process's umask takes bits out of `mode` when a file or
/// directory is created with it, so that the mode must be set again
/// (`fchmod`) to be exact. Under systemd the umask is 0022 and kubeboot's
/// modes (0600, 0644, 0700, 0755) come out whole: no `fchmod` (a journaled
/// inode change on ext4) per file. The umask is read once, from
/// `/proc/self/status` (`Umask:`, Linux 4.7+: reading it with `umask(2)`
/// means setting it); unknown, every mode is set again.
fn umask_narrows(mode: u32) -> bool {
    static UMASK: OnceLock<u32> = OnceLock::new();
    let umask = *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("Umask:"))?;
                u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
            })
            .unwrap_or(0o7777)
    });
    mode & umask & 0o7777 != 0
}

/// Counts temp files made by this process, so that no two writers (two
/// processes, or two threads of one) ever share a temp name.
static TEMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

const TEMP_SUFFIX: &str = ".kubeboot-tmp";

/// `.<name>.<pid>-<n>.kubeboot-tmp`: unique per process and per write.
fn temp_name(name: &str) -> String {
    let n = TEMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(".{name}.{}-{n}{TEMP_SUFFIX}", pid())
}

/// This process's id, asked of the kernel once (musl does not cache it).
fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// The temp files in the open directory `fd` (`.<...>.kubeboot-tmp`),
/// read once with `getdents64` into a buffer on the stack (rustix's
/// `RawDir`).
fn scan_temps(fd: &OwnedFd) -> Vec<OsString> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut entries = rustix::fs::RawDir::new(fd, &mut buf);
    let mut temps = Vec::new();
    while let Some(Ok(e)) = entries.next() {
        let file = e.file_name().to_bytes();
        if file.starts_with(b".") && file.ends_with(TEMP_SUFFIX.as_bytes()) {
            temps.push(OsStr::from_bytes(file).to_os_string());
        }
    }
    temps
}

/// Removes the temp files for `name` among `temps` (found in the open
/// directory `fd`) that a run left when it died before its rename (a
/// crash, a power cut): those of a process that no longer exists, and the
/// fixed name of earlier versions. A live process's temp file is never
/// touched.
fn remove_stale_temps(fd: &OwnedFd, temps: &mut Vec<OsString>, name: &str) {
    if temps.is_empty() {
        return;
    }
    let old_fixed = format!(".{name}{TEMP_SUFFIX}");
    let prefix = format!(".{name}.");
    temps.retain(|t| {
        let Some(file) = t.to_str() else {
            return true;
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
                return true;
            };
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            // another file's temp (`.<name>.<more>.<pid>-<n>`) does not parse
            if !digits(pid) || !digits(n) {
                return true;
            }
            !Path::new("/proc").join(pid).exists()
        };
        if stale {
            let _ = rustix::fs::unlinkat(fd, t, rustix::fs::AtFlags::empty());
        }
        !stale
    });
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

    /// `Sync::Never` creates a missing file, replaces an existing one with
    /// a new file (a reader holding the old one keeps its content: the
    /// old file was exchanged out, not written over), sets the mode, leaves
    /// no temp file, and refuses to replace a directory, as a rename does.
    #[test]
    fn never_synced_writes_replace_by_exchange() {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let root = tmpdir("never");
        let paths = crate::host::Paths::new(&root);
        let p = root.join("var/lib/kubeboot/status.json");
        write_atomic(&paths.rooted(&p), b"first", 0o600, Sync::Never).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"first");
        let mut held = fs::File::open(&p).unwrap();
        let before = fs::metadata(&p).unwrap().ino();
        write_atomic(&paths.rooted(&p), b"second", 0o644, Sync::Never).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert_ne!(fs::metadata(&p).unwrap().ino(), before, "a new file");
        let mut old = String::new();
        held.read_to_string(&mut old).unwrap();
        assert_eq!(old, "first", "the old file is untouched");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let left: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["status.json"], "no temp file left");
        let d = root.join("var/lib/kubeboot/dir");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("inside"), b"x").unwrap();
        assert!(write_atomic(&paths.rooted(&d), b"y", 0o644, Sync::Never).is_err());
        assert_eq!(fs::read(d.join("inside")).unwrap(), b"x");
        fs::remove_dir_all(&root).unwrap();
    }

    /// `create_empty` makes an empty file with its mode, keeps an existing
    /// one as it is, and never follows a symlink in the name's place.
    #[test]
    fn create_empty_makes_a_mark_and_follows_no_symlink() {
        let root = tmpdir("mark");
        let outside = tmpdir("mark-outside");
        let paths = crate::host::Paths::new(&root);
        let p = root.join("etc/kubernetes/pki/.mark");
        create_empty(&paths.rooted(&p), 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::write(&p, b"kept").unwrap();
        create_empty(&paths.rooted(&p), 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"kept");
        let link = root.join("etc/kubernetes/pki/.linked");
        std::os::unix::fs::symlink(outside.join("target"), &link).unwrap();
        assert!(create_empty(&paths.rooted(&link), 0o600).is_err());
        assert!(!outside.join("target").exists());
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&outside).unwrap();
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

    /// After its first write a directory is held open: a later write into
    /// it neither follows a symlink swapped in above it, nor fails when the
    /// directory was removed meanwhile (it is checked and created again);
    /// a stale temp file the first scan found is removed when its file is
    /// written; a read through the open directory refuses a symlink.
    #[test]
    fn writes_through_an_open_directory() {
        let root = tmpdir("open-dir");
        let outside = tmpdir("open-dir-outside");
        let paths = crate::host::Paths::new(&root);
        let dir = root.join("etc/kubernetes");
        fs::create_dir_all(&dir).unwrap();
        let stale = dir.join(format!(".b.conf.0-1{TEMP_SUFFIX}"));
        fs::write(&stale, b"x").unwrap();
        write_atomic(
            &paths.rooted("/etc/kubernetes/a.conf"),
            b"a",
            0o600,
            Sync::Deferred,
        )
        .unwrap();
        assert!(stale.exists(), "only a.conf's temp files are looked at");
        write_atomic(
            &paths.rooted("/etc/kubernetes/b.conf"),
            b"b",
            0o644,
            Sync::Each,
        )
        .unwrap();
        assert!(!stale.exists(), "b.conf's stale temp file is removed");
        assert_eq!(
            fs::metadata(dir.join("b.conf"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o644
        );
        assert_eq!(
            read_under(&root, &dir.join("a.conf")).unwrap(),
            Some(b"a".to_vec())
        );
        assert_eq!(read_under(&root, &dir.join("none")).unwrap(), None);
        std::os::unix::fs::symlink(outside.join("l"), dir.join("link")).unwrap();
        let err = read_under(&root, &dir.join("link")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        let err = write_atomic(
            &paths.rooted("/etc/kubernetes/link"),
            b"l",
            0o644,
            Sync::Deferred,
        )
        .unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!outside.join("l").exists());

        // the directory moved away and a symlink put in its place
        fs::rename(root.join("etc"), root.join("moved")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("etc")).unwrap();
        let _ = write_atomic(
            &paths.rooted("/etc/kubernetes/c.conf"),
            b"c",
            0o600,
            Sync::Deferred,
        );
        assert!(!outside.join("kubernetes/c.conf").exists() && !outside.join("c.conf").exists());

        // the directory removed and made again with a file in it: read by
        // path, not reported missing through the old descriptor
        fs::remove_file(root.join("etc")).unwrap();
        fs::remove_dir_all(root.join("moved")).unwrap();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("e.conf"), b"e").unwrap();
        assert_eq!(
            read_under(&root, &dir.join("e.conf")).unwrap(),
            Some(b"e".to_vec())
        );
        fs::remove_dir_all(root.join("etc")).unwrap();
        // the directory removed: created again, with the file
        write_atomic(
            &paths.rooted("/etc/kubernetes/d.conf"),
            b"d",
            0o600,
            Sync::Deferred,
        )
        .unwrap();
        assert_eq!(fs::read(dir.join("d.conf")).unwrap(), b"d");
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }
}
