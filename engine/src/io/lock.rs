//! One writer per index directory (docs/ARCHITECTURE.md, "Cross-cutting concerns"): an advisory lock
//! (`flock(2)` through `std::fs::File::try_lock`) on the directory itself, held for the life
//! of an open `Index`. A handle that may write takes it exclusively; read-only handles take
//! it shared, so any number of them may open together but never beside a writer (whose
//! in-place merge writes and WAL they would not see).
//!
//! The lock belongs to the open file description: two handles in one process conflict like
//! two processes do; a forked child inherits its parent's lock (the engine refuses updates
//! in a process other than the one that opened the index; see `Index`).

use crate::error::EngineError;
use crate::Result;
use std::path::Path;

/// A held lock on an index directory; released on drop (or when the process exits).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    /// Takes the lock on `dir` without waiting: exclusive for a writer, shared for a
    /// read-only handle.
    ///
    /// # Errors
    /// - [`EngineError::Locked`] when another handle holds a conflicting lock;
    /// - [`EngineError::Io`] when `dir` cannot be opened or locked.
    pub(crate) fn acquire(dir: &Path, exclusive: bool) -> Result<DirLock> {
        let file = std::fs::File::open(dir).map_err(|e| EngineError::io(dir, e))?;
        let r = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match r {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(EngineError::Locked {
                path: dir.into(),
                wanted: if exclusive {
                    "to write (inserts, deletes, merges, recovery)"
                } else {
                    "read-only"
                },
                held: if exclusive {
                    "another handle (in this or another process) has it open"
                } else {
                    "another handle (in this or another process) has it open for writing"
                },
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(EngineError::io(dir, e)),
        }
    }
}
