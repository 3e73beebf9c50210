//! The durable-write side of the engine's file I/O, behind one trait ([`Storage`]): every
//! write, truncation, fsync, rename, removal and directory fsync of the WAL, the merge
//! journal, the merge's in-place block and header writes and its staged files goes through
//! it. [`OsStorage`] (the default) performs them; a test backend can record them (to replay
//! a crash at every sync point, with each unsynced write kept, dropped, torn or zero-filled
//! and un-fsynced directory entries lost — redb's crash backend, SQLite's crash VFS) or fail
//! them (EIO, ENOSPC). Reads are not routed: they see the files as written.
//!
//! Every `sync` and `sync_dir` call names its *site* (e.g. `"wal.append"`): a crash test can
//! then drop one site's fsyncs to prove that each one matters.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// File operations that change what is on disk. Each method has the real operation as its
/// default: a backend overrides what it observes or fails. `path` always names `file`.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Opens `path` for reading and writing; `create` makes a new directory entry when it is
    /// absent, `truncate` empties it.
    ///
    /// # Errors
    /// The OS error.
    fn open_rw(&self, path: &Path, create: bool, truncate: bool) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(truncate)
            .open(path)
    }
    /// Writes all of `data` at byte `offset`.
    ///
    /// # Errors
    /// The OS error (a short write is retried until done or failed).
    fn write_at(&self, file: &File, path: &Path, data: &[u8], offset: u64) -> io::Result<()> {
        let _ = path;
        file.write_all_at(data, offset)
    }
    /// Sets the file's length (truncates or extends with zeros).
    ///
    /// # Errors
    /// The OS error.
    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        let _ = path;
        file.set_len(len)
    }
    /// fsyncs the file's data and size (`fdatasync`-strength or stronger).
    ///
    /// # Errors
    /// The OS error; the caller must treat the file's unsynced writes as lost.
    fn sync(&self, file: &File, path: &Path, site: &'static str) -> io::Result<()> {
        let _ = (path, site);
        file.sync_all()
    }
    /// Renames `from` to `to` (replacing `to`), within one directory.
    ///
    /// # Errors
    /// The OS error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    /// Removes the file `path`.
    ///
    /// # Errors
    /// The OS error.
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    /// fsyncs directory `dir`, making the entries created, renamed or removed in it durable.
    ///
    /// # Errors
    /// The OS error.
    fn sync_dir(&self, dir: &Path, site: &'static str) -> io::Result<()> {
        let _ = site;
        File::open(dir).and_then(|d| d.sync_all())
    }
    /// Tells the backend that `path` was just created, written whole and fsynced by code
    /// outside this trait (layout's blob writers, for the merge's staged files).
    ///
    /// # Errors
    /// A backend's injected error.
    fn wrote_file(&self, path: &Path, site: &'static str) -> io::Result<()> {
        let _ = (path, site);
        Ok(())
    }
}

/// The operating system's file I/O (the default backend).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsStorage;

impl Storage for OsStorage {}

/// A shared handle on a [`Storage`] backend (the default is [`OsStorage`]).
#[derive(Clone, Debug)]
pub struct StorageRef(pub Arc<dyn Storage>);

impl Default for StorageRef {
    fn default() -> Self {
        StorageRef(Arc::new(OsStorage))
    }
}

impl std::ops::Deref for StorageRef {
    type Target = dyn Storage;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}
