//! The build's temporary directory `.NAME.building-PID` beside the output (locked while the
//! build runs), and the reaping of stale ones: only a dead process's, unlocked, holding
//! nothing but index files.

use super::{index_files_of, remove_index_dir, sibling_of};
use crate::durable::parent_of;
use crate::error::BuildError;
use crate::Result;
use ssdann_layout::storage::StorageRef;
use std::path::{Path, PathBuf};

/// The prefix of the temporary directories of builds into `out_dir`: `.NAME.building-`,
/// followed by the building process's id.
const BUILDING: &str = "building-";

pub(crate) fn temp_dir_for(out_dir: &Path) -> Result<PathBuf> {
    sibling_of(out_dir, &format!("{BUILDING}{}", std::process::id()))
}

/// A build's temporary directory, locked (an advisory `flock` on it) for as long as this
/// value lives, so that no other build reaps it.
#[derive(Debug)]
pub(crate) struct TempDir {
    /// `.NAME.building-PID` beside the output.
    pub(crate) path: PathBuf,
    _lock: std::fs::File,
}

/// Makes the temporary directory of a build into `out_dir` (`.NAME.building-PID`, see
/// [`temp_dir_for`]) through `storage`, after creating the output's missing parent
/// directories and reaping stale temporary directories of earlier builds into `out_dir`
/// ([`reap_stale_temp_dirs`]). A directory already at this process's name (an earlier build
/// of this process that failed) is removed first, if it holds nothing but index files and no
/// build of this process is using it.
///
/// # Errors
/// [`BuildError::BuildInProgress`] when a build in this process holds the directory;
/// [`BuildError::NotAnIndex`] when it holds anything but index files;
/// [`BuildError::Io`].
pub(crate) fn make_temp_dir(storage: &StorageRef, out_dir: &Path) -> Result<TempDir> {
    crate::durable::create_parents(storage, out_dir)?;
    reap_stale_temp_dirs(storage, out_dir)?;
    let path = temp_dir_for(out_dir)?;
    if std::fs::symlink_metadata(&path).is_ok() {
        let _held =
            lock_dir(&path)?.ok_or_else(|| BuildError::BuildInProgress { path: path.clone() })?;
        remove_index_dir(storage, &path)?;
    }
    storage
        .create_dir(&path)
        .map_err(|e| BuildError::io(&path, e))?;
    let lock =
        lock_dir(&path)?.ok_or_else(|| BuildError::BuildInProgress { path: path.clone() })?;
    Ok(TempDir { path, _lock: lock })
}

/// An exclusive advisory lock on directory `dir`: `None` when another open file holds one.
pub(super) fn lock_dir(dir: &Path) -> Result<Option<std::fs::File>> {
    let f = std::fs::File::open(dir).map_err(|e| BuildError::io(dir, e))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(BuildError::io(dir, e)),
    }
}

/// Whether process `pid` exists (`kill(pid, 0)`: 0, or EPERM for another user's process).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true; // not a pid this system hands out: never treat it as dead
    };
    if pid <= 0 {
        return true; // 0 and negatives name process groups, not a process
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled; nothing is
    // sent and no memory is touched.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes the temporary directories `.NAME.building-PID` that builds into `out_dir` left
/// behind when they were killed (or a crash cut them short, or the old index a `--force`
/// build swapped out was not deleted yet): only those whose process `PID` no longer exists,
/// that no process holds locked, and that hold nothing but regular files with index file
/// names. Anything else — another process's build, a directory with a file of the user's
/// in it, a symbolic link, another output's directories — is left as it is, silently.
/// Returns the directories removed.
///
/// # Errors
/// [`BuildError::Io`] when the parent directory cannot be read or a removal fails.
pub fn reap_stale_temp_dirs(storage: &StorageRef, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let Some(name) = out_dir.file_name() else {
        return Ok(Vec::new());
    };
    let prefix = format!(".{}.{BUILDING}", name.to_string_lossy());
    let parent = parent_of(out_dir);
    let entries = match std::fs::read_dir(&parent) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BuildError::io(&parent, e)),
    };
    let mut reaped = Vec::new();
    for e in entries {
        let e = e.map_err(|x| BuildError::io(&parent, x))?;
        let entry = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = entry.strip_prefix(&prefix) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid.to_string() != entry[prefix.len()..] || process_alive(pid) {
            continue;
        }
        let path = e.path();
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if !is_dir {
            continue;
        }
        let Some(_lock) = lock_dir(&path)? else {
            continue;
        };
        if index_files_of(&path)?.is_err() {
            continue;
        }
        remove_index_dir(storage, &path)?;
        reaped.push(path);
    }
    Ok(reaped)
}
