//! Directory modes: a directory kubeboot writes into that already exists
//! but any other user may write to (group/world-writable, or with
//! setuid/setgid/sticky bits) is set to kubeadm's mode for it, with a
//! warning naming it. A directory that is merely more readable than
//! kubeadm would create it is left as it is (kubeadm's `MkdirAll` does not
//! change existing directories either).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::FsError;

/// Bits no directory kubeboot writes into may keep: writable by group or
/// others, setuid, setgid, sticky.
const UNSAFE: u32 = 0o7022;

/// Sets the existing directory `dir` to `mode` when its current mode has
/// [`UNSAFE`] bits; `dry` only reports what would change.
pub(crate) fn fix_unsafe_mode(dir: &Path, mode: u32, dry: bool) -> Result<(), FsError> {
    let m = std::fs::symlink_metadata(dir).map_err(|e| FsError::new("inspecting", dir, e))?;
    let current = m.permissions().mode() & 0o7777;
    if !m.is_dir() || current & UNSAFE == 0 {
        return Ok(());
    }
    let want = mode & !UNSAFE;
    if dry {
        log::warn!(
            "{}: mode {current:04o} lets other users write into it; a run would set it to {want:04o} (kubeadm's mode)",
            dir.display()
        );
        return Ok(());
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(want))
        .map_err(|e| FsError::new("setting mode of", dir, e))?;
    log::warn!(
        "{}: was mode {current:04o}, which lets other users write into it; set to {want:04o} (kubeadm's mode)",
        dir.display()
    );
    Ok(())
}
