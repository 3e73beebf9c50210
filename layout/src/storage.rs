//! The durable-write side of file I/O, behind one trait ([`Storage`]): every write,
//! truncation, fsync, rename, removal and directory fsync of the engine's WAL, merge journal,
//! in-place block and header writes and staged files, and of the builder's output (the
//! sector file, the blob files, the partitioned build's stage files, the temporary and
//! work directories and the install into place) goes through it. [`OsStorage`] (the default)
//! performs them; a test backend can record them (to replay a crash at every sync point, with
//! each unsynced write kept, dropped, torn or zero-filled and un-fsynced directory entries
//! lost — redb's crash backend, SQLite's crash VFS) or fail them (EIO, ENOSPC). Reads are not
//! routed: they see the files as written.
//!
//! Every `sync` and `sync_dir` call names its *site* (e.g. `"wal.append"`,
//! `"build.install"`): a crash test can then drop one site's fsyncs to prove that each one
//! matters.
//!
//! It lives in `layout` because the blob writers here ([`crate::blob::BlobWriter`]) write
//! through it; the engine re-exports it as `ssdann_engine::storage`.

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
    /// Swaps the directory entries `a` and `b` (both must exist) in one atomic step, within
    /// one directory: Linux `renameat2(RENAME_EXCHANGE)`. A crash leaves either both old
    /// entries or both new ones.
    ///
    /// # Errors
    /// The OS error: `EINVAL` or `ENOTSUP`/`EOPNOTSUPP` where the file system cannot
    /// exchange (e.g. NFS), `ENOSYS` on kernels before 3.15; [`io::ErrorKind::Unsupported`]
    /// off Linux.
    fn exchange(&self, a: &Path, b: &Path) -> io::Result<()> {
        exchange_paths(a, b)
    }
    /// Makes `to` a second name (hard link) of the file `from`.
    ///
    /// # Errors
    /// The OS error (`EXDEV` across file systems).
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }
    /// Removes the file `path`.
    ///
    /// # Errors
    /// The OS error.
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    /// Creates the directory `path` (its parent must exist).
    ///
    /// # Errors
    /// The OS error (`AlreadyExists` included).
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }
    /// Removes the empty directory `path`.
    ///
    /// # Errors
    /// The OS error (`DirectoryNotEmpty` included).
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
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
    /// outside this trait (the engine's merge staged files, written by the blob writers with
    /// the OS backend).
    ///
    /// # Errors
    /// A backend's injected error.
    fn wrote_file(&self, path: &Path, site: &'static str) -> io::Result<()> {
        let _ = (path, site);
        Ok(())
    }
}

/// `renameat2(a, b, RENAME_EXCHANGE)`.
#[cfg(target_os = "linux")]
fn exchange_paths(a: &Path, b: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both pointers are NUL-terminated strings that live until the call returns; the
    // raw syscall (not glibc's wrapper, absent before glibc 2.28) takes exactly these five
    // arguments and touches no memory of ours besides reading the two paths.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange_paths(_: &Path, _: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "an atomic exchange of two directory entries needs Linux renameat2(RENAME_EXCHANGE)",
    ))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use super::*;

    #[test]
    fn exchange_swaps_two_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(a.join("x"), b"old").unwrap();
        std::fs::write(b.join("y"), b"new").unwrap();
        OsStorage.exchange(&a, &b).unwrap();
        assert_eq!(std::fs::read(a.join("y")).unwrap(), b"new");
        assert_eq!(std::fs::read(b.join("x")).unwrap(), b"old");
        assert!(!a.join("x").exists() && !b.join("y").exists());
        let e = OsStorage
            .exchange(&a, &tmp.path().join("none"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    }
}
