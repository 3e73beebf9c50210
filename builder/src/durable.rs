//! The builder's own file writes through a [`Storage`] backend (`BuildParams::storage`):
//! an appending writer, directory creation and directory fsyncs. Every fsync names its site
//! so the crash simulator (`tests/crash_build`) can drop one site at a time; the sites are:
//!
//! | site                      | what it makes durable                                          |
//! |---------------------------|----------------------------------------------------------------|
//! | `build.index_ssd`         | `index.ssd` ([`crate::writer`])                                 |
//! | `build.pq_pivots`         | `pq_pivots.bin` of the one-shot build                           |
//! | `build.pq_refine`         | `pq_refine.bin` (neighbour codes)                               |
//! | `build.pq_codes`          | `pq_codes.bin` written into the temporary directory             |
//! | `build.labels`            | `labels.bin`                                                    |
//! | `build.copy`              | a stage file copied (not linked) into the temporary directory   |
//! | `build.temp_dir`          | the temporary directory's entries, before the install           |
//! | `build.parent`            | parent directories of the output that the build created         |
//! | `build.install`           | the output's entry after the rename or exchange into place      |
//! | `partitioned.manifest`    | the work directory's `MANIFEST`                                 |
//! | `partitioned.pq_pivots`   | the PQ stage's pivots                                           |
//! | `partitioned.pq_codes`    | the PQ stage's codes                                            |
//! | `partitioned.ids`         | each `part-XXXX.ids`                                            |
//! | `partitioned.partitions`  | `partitions.bin`, the partition stage's mark                    |
//! | `partitioned.graph`       | each `part-XXXX.graph`                                          |
//! | `partitioned.merged`      | `merged.graph`                                                  |
//! | `partitioned.commit`      | the work directory's entries after a stage file's rename        |

use crate::error::BuildError;
use crate::Result;
use ssdann_layout::storage::StorageRef;
use std::fs::File;
use std::path::{Path, PathBuf};

/// fsyncs directory `path` through `storage`, naming `site`.
///
/// # Errors
/// [`BuildError::Io`] naming `path`.
pub(crate) fn fsync_dir(storage: &StorageRef, path: &Path, site: &'static str) -> Result<()> {
    storage
        .sync_dir(path, site)
        .map_err(|e| BuildError::io(path, e))
}

/// The directory that holds `path` (`.` for a bare name).
pub(crate) fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates the missing ancestors of `path` (not `path` itself), outermost first, and fsyncs
/// the directory holding each one (site `build.parent`), so that an output the build
/// installs there stays reachable after a power loss.
///
/// # Errors
/// [`BuildError::Io`] naming the directory.
pub(crate) fn create_parents(storage: &StorageRef, path: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut p = parent_of(path);
    while !p.exists() {
        missing.push(p.clone());
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => p = q.to_path_buf(),
            _ => break,
        }
    }
    for dir in missing.iter().rev() {
        match storage.create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(BuildError::io(dir, e)),
        }
        fsync_dir(storage, &parent_of(dir), "build.parent")?;
    }
    Ok(())
}

/// Bytes a [`FileWriter`] gathers before each write.
const CHUNK_BYTES: usize = 1 << 20;

/// Writes a new file front to back through a [`Storage`](ssdann_layout::storage::Storage)
/// backend, in writes of up to 1 MiB.
pub(crate) struct FileWriter {
    storage: StorageRef,
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    offset: u64,
}

impl FileWriter {
    /// Creates (or empties) `path`.
    ///
    /// # Errors
    /// [`BuildError::Io`] naming it.
    pub(crate) fn create(storage: &StorageRef, path: &Path) -> Result<FileWriter> {
        let file = storage
            .open_rw(path, true, true)
            .map_err(|e| BuildError::io(path, e))?;
        Ok(FileWriter {
            storage: storage.clone(),
            path: path.into(),
            file,
            buf: Vec::new(),
            offset: 0,
        })
    }

    /// Appends `bytes`.
    ///
    /// # Errors
    /// [`BuildError::Io`] naming the file.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.storage
            .write_at(&self.file, &self.path, &self.buf, self.offset)
            .map_err(|e| BuildError::io(&self.path, e))?;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is left and fsyncs (site `site`).
    ///
    /// # Errors
    /// [`BuildError::Io`] naming the file.
    pub(crate) fn finish(mut self, site: &'static str) -> Result<()> {
        self.flush()?;
        self.storage
            .sync(&self.file, &self.path, site)
            .map_err(|e| BuildError::io(&self.path, e))
    }

    /// Writes what is left, without an fsync (a scratch file read back by this process).
    ///
    /// # Errors
    /// [`BuildError::Io`] naming the file.
    pub(crate) fn finish_unsynced(mut self) -> Result<()> {
        self.flush()
    }
}
