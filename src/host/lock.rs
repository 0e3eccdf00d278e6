//! One run at a time: every command that writes under `--root` holds an
//! exclusive `flock(2)` on `<root>/var/lib/kubeboot/lock` for its whole
//! run. A second run waits a bounded time for it, then fails (exit 1)
//! naming the holder's pid, which the holder writes into the lock file.
//!
//! The lock is released by the kernel when the process exits, however it
//! exits (crash, kill -9): a stale lock file never blocks a later run.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};

use crate::error::Error;
use crate::error::FsError;
use crate::host::Paths;
use crate::host::fs;

/// The lock file under the root.
pub const LOCK: &str = "/var/lib/kubeboot/lock";

/// How long a second run waits for the first by default (`--lock-timeout`).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// A held run lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the run lock under `paths`' root, waiting at most `wait` for
    /// another run to release it.
    pub fn acquire(paths: &Paths, wait: Duration) -> Result<RunLock, Error> {
        let path = paths.host(LOCK);
        let dir = paths.state_dir();
        fs::create_dir_all(paths.root(), &dir, 0o755)?;
        fs::check_no_symlinks(paths.root(), &path)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(|e| FsError::new("opening the run lock", &path, e))?;
        // 0644 whatever the umask, as every file kubeboot writes
        fs::set_mode_exactly(&file, 0o644, &path)?;
        let start = Instant::now();
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                    if start.elapsed() >= wait {
                        return Err(Error::Failed(format!(
                            "another kubeboot run ({}) holds {}; gave up after waiting {} s (--lock-timeout)",
                            holder(&mut file),
                            path.display(),
                            wait.as_secs()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(FsError::new("locking", &path, io::Error::from(e)).into());
                }
            }
        }
        let pid = format!("{}\n", std::process::id());
        let write = (|| {
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(pid.as_bytes())
        })();
        write.map_err(|e| FsError::new("writing the run lock", &path, e))?;
        log::debug!("holding the run lock {}", path.display());
        Ok(RunLock { _file: file, path })
    }
}

/// "pid N" from the lock file, or a note that the holder did not say yet.
fn holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.rewind();
    let _ = Read::by_ref(file).take(32).read_to_string(&mut s);
    match s.trim().parse::<u32>() {
        Ok(pid) => format!("pid {pid}"),
        Err(_) => "pid unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_then_names_the_holder() {
        let root = std::env::temp_dir().join(format!("kubeboot-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let paths = Paths::new(&root);
        let held = RunLock::acquire(&paths, Duration::ZERO).unwrap();
        // flock locks belong to the open file description: a second open
        // in the same process conflicts like another process would.
        let err = RunLock::acquire(&paths, Duration::from_millis(200)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert_eq!(err.exit_code(), 1);
        drop(held);
        let again = RunLock::acquire(&paths, Duration::ZERO).unwrap();
        assert!(again.path().ends_with("var/lib/kubeboot/lock"));
        drop(again);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
