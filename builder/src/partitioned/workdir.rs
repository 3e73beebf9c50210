//! The partitioned build's work directory: `.NAME.partitioned/` beside the output. Every
//! stage writes its output there under a temporary name, fsyncs it and renames it into
//! place, so a file under its final name is a finished stage (or a finished partition), and
//! `--resume` continues from the first stage whose file is missing. A `MANIFEST` records the
//! input and every parameter that shapes the result; resuming with any of them changed is
//! refused, naming the field. Every write, fsync, rename and removal goes through
//! `BuildParams::storage` (the fsync sites are listed in `crate::durable`).

use crate::BuildError;
use ssdann_layout::blob::{write_blob_via, BlobReader};
use ssdann_layout::storage::StorageRef;
use std::path::{Path, PathBuf};

/// The manifest's file name (also what marks a directory as a partitioned build's own).
pub const MANIFEST: &str = "MANIFEST";
/// The first line of the manifest.
pub const MANIFEST_HEADER: &str = "ssdann partitioned build, work directory v1";
/// Centroids of the partitions (blob: fields [C, graph d], body C × gd f32 transposed).
pub const PARTITIONS_FILE: &str = "partitions.bin";
/// The merged graph (blob: fields [n, R, medoid], body n × (1 + R) u32).
pub const MERGED_FILE: &str = "merged.graph";
/// Blob magic of the partitions file.
pub const PARTITIONS_MAGIC: [u8; 8] = *b"SSDPARTS";
/// Blob magic of a partition's id list.
pub const IDS_MAGIC: [u8; 8] = *b"SSDPIDS1";
/// Blob magic of a partition's graph and of the merged graph.
pub const GRAPH_MAGIC: [u8; 8] = *b"SSDPGRPH";

/// `part-XXXX.ids`: the ascending input rows of partition `p` (fields [count]).
pub fn ids_path(dir: &Path, p: usize) -> PathBuf {
    dir.join(format!("part-{p:04}.ids"))
}

/// `part-XXXX.graph`: partition `p`'s Vamana graph in input row ids (fields [count, R],
/// body count × (1 + R) u32: degree, then R neighbour slots), rows in the order of its ids.
pub fn graph_path(dir: &Path, p: usize) -> PathBuf {
    dir.join(format!("part-{p:04}.graph"))
}

/// The work directory of a build into `out_dir`.
///
/// # Errors
/// [`BuildError::InvalidParameter`] when `out_dir` names no directory.
pub fn work_dir_for(out_dir: &Path) -> Result<PathBuf, BuildError> {
    crate::output::sibling_of(out_dir, "partitioned")
}

fn tmp_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Writes a blob under a temporary name, fsyncs it (site `site`), renames it to `path` and
/// fsyncs the directory: `path` exists only complete.
///
/// # Errors
/// [`BuildError::Io`] / [`BuildError::Layout`] naming the file.
pub fn write_blob_atomic(
    storage: &StorageRef,
    site: &'static str,
    path: &Path,
    magic: &[u8; 8],
    fields: &[u64],
    body: &[u8],
) -> Result<(), BuildError> {
    let tmp = tmp_of(path);
    write_blob_via(storage, site, &tmp, magic, 1, fields, body)?;
    commit(storage, &tmp, path)
}

/// Renames a finished, fsynced temporary file into place and fsyncs its directory (site
/// `partitioned.commit`): the stage (or partition) is done.
///
/// # Errors
/// [`BuildError::Io`].
pub fn commit(storage: &StorageRef, tmp: &Path, path: &Path) -> Result<(), BuildError> {
    storage
        .rename(tmp, path)
        .map_err(|e| BuildError::io(path, e))?;
    let dir = crate::durable::parent_of(path);
    crate::durable::fsync_dir(storage, &dir, "partitioned.commit")
}

/// A [`ssdann_layout::blob::BlobWriter`] to `path`'s temporary name, its fsync named
/// `site`; [`commit`] it after `finish`.
///
/// # Errors
/// [`BuildError::Layout`].
pub fn blob_writer(
    storage: &StorageRef,
    site: &'static str,
    path: &Path,
    magic: &[u8; 8],
    fields: &[u64],
    body_bytes: u64,
) -> Result<(ssdann_layout::blob::BlobWriter, PathBuf), BuildError> {
    let tmp = tmp_of(path);
    let w = ssdann_layout::blob::BlobWriter::create_via(
        storage, site, &tmp, magic, 1, fields, body_bytes,
    )?;
    Ok((w, tmp))
}

/// Writes `part-XXXX.ids` (u32 little-endian body) atomically (site `partitioned.ids`).
///
/// # Errors
/// As [`write_blob_atomic`].
pub fn write_u32_blob(
    storage: &StorageRef,
    path: &Path,
    fields: &[u64],
    body: &[u8],
) -> Result<(), BuildError> {
    write_blob_atomic(storage, "partitioned.ids", path, &IDS_MAGIC, fields, body)
}

/// Reads a partition's ids, checking the count against the body and that every id is < n
/// and ascending.
///
/// # Errors
/// [`BuildError::Layout`] naming the file (bad header, checksum, size or id).
pub fn read_ids(path: &Path, n: usize) -> Result<Vec<u32>, BuildError> {
    let mut r = BlobReader::open(path, &IDS_MAGIC, 1)?;
    let count = r.fields.first().copied().unwrap_or(u64::MAX);
    if r.fields.len() != 1 || count.checked_mul(4) != Some(r.body_bytes) || count > n as u64 {
        return Err(ssdann_layout::LayoutError::corrupt(
            path,
            "count",
            format!("{count} ids in a body of {} bytes (n = {n})", r.body_bytes),
        )
        .into());
    }
    let mut bytes = vec![0u8; r.body_bytes as usize];
    r.read(&mut bytes)?;
    r.finish()?;
    let ids: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(k) =
        (0..ids.len()).find(|&k| ids[k] as usize >= n || (k > 0 && ids[k] <= ids[k - 1]))
    {
        return Err(ssdann_layout::LayoutError::corrupt(
            path,
            "id",
            format!("entry {k} = {} is out of order or ≥ n = {n}", ids[k]),
        )
        .into());
    }
    Ok(ids)
}

/// The manifest text of a build: one `key = value` line per input property and parameter.
pub fn manifest_text(entries: &[(&str, String)]) -> String {
    let mut s = format!("{MANIFEST_HEADER}\n");
    for (k, v) in entries {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s
}

/// Takes the exclusive lock on work directory `dir` (an advisory `flock` on the directory;
/// `None` when it does not exist yet). Held for the whole build so that a second build into
/// the same output — with or without `--resume` — cannot read, remove or overwrite its
/// stages.
///
/// # Errors
/// [`BuildError::BuildInProgress`] naming `dir` when another build holds it;
/// [`BuildError::Io`].
pub fn lock(dir: &Path) -> Result<Option<std::fs::File>, BuildError> {
    let f = match std::fs::File::open(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BuildError::io(dir, e)),
    };
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(BuildError::BuildInProgress { path: dir.into() })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(BuildError::io(dir, e)),
    }
}

/// Takes a shared lock on work directory `dir`: held by each partition job of a build run
/// stage by stage ([`super::stages`]), so that partition jobs run together while a whole
/// build, a plan, a merge or a write (which take [`lock`]) cannot run beside them.
///
/// # Errors
/// [`BuildError::BuildInProgress`] naming `dir` when a process holds the exclusive lock;
/// [`BuildError::Io`] (also when `dir` does not exist).
pub fn lock_shared(dir: &Path) -> Result<Option<std::fs::File>, BuildError> {
    let f = std::fs::File::open(dir).map_err(|e| BuildError::io(dir, e))?;
    match f.try_lock_shared() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(BuildError::BuildInProgress { path: dir.into() })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(BuildError::io(dir, e)),
    }
}

/// The number of partitions `partitions.bin` in work directory `dir` holds (its header's
/// count).
///
/// # Errors
/// [`BuildError::Layout`] naming the file.
pub fn read_partition_count(dir: &Path) -> Result<usize, BuildError> {
    let path = dir.join(PARTITIONS_FILE);
    let (_, fields) = ssdann_layout::blob::read_blob_fields(&path, &PARTITIONS_MAGIC, 1)?;
    Ok(fields.first().copied().unwrap_or(0) as usize)
}

/// The number of ids `part-XXXX.ids` holds (its header's count, checked against its size).
///
/// # Errors
/// [`BuildError::Layout`] naming the file.
pub fn read_ids_count(path: &Path) -> Result<u64, BuildError> {
    let (_, fields) = ssdann_layout::blob::read_blob_fields(path, &IDS_MAGIC, 1)?;
    Ok(fields.first().copied().unwrap_or(0))
}

/// What a work directory holds when a build starts.
#[derive(Debug, PartialEq, Eq)]
pub enum Existing {
    /// No work directory.
    Absent,
    /// A work directory whose manifest was never committed (a build cut short as it began):
    /// empty, or holding only `MANIFEST.tmp`.
    Unstarted,
    /// Our work directory, made by a build with the same manifest.
    Same,
    /// Our work directory, made by a build with a different manifest: (field, old, new).
    Different(String, String, String),
}

/// Whether `dir` is empty or holds only `MANIFEST.tmp` (a regular file).
fn unstarted(dir: &Path) -> Result<bool, BuildError> {
    for e in std::fs::read_dir(dir).map_err(|e| BuildError::io(dir, e))? {
        let e = e.map_err(|e| BuildError::io(dir, e))?;
        let is_file = e.file_type().is_ok_and(|t| t.is_file());
        if !(is_file && e.file_name() == "MANIFEST.tmp") {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Classifies `dir` against the manifest `want`.
///
/// # Errors
/// [`BuildError::NotAnIndex`] when `dir` exists but holds no manifest of ours and is not
/// [`Existing::Unstarted`] (never deleted or reused); [`BuildError::Io`].
pub fn inspect(dir: &Path, want: &str) -> Result<Existing, BuildError> {
    if !dir.exists() {
        return Ok(Existing::Absent);
    }
    let path = dir.join(MANIFEST);
    let have = match std::fs::read_to_string(&path) {
        Ok(s) if s.starts_with(MANIFEST_HEADER) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && unstarted(dir)? => {
            return Ok(Existing::Unstarted)
        }
        _ => {
            return Err(BuildError::NotAnIndex {
                path: dir.into(),
                reason: format!("no {MANIFEST} of a partitioned build in it"),
            })
        }
    };
    if have == want {
        return Ok(Existing::Same);
    }
    let pairs = |s: &str| -> Vec<(String, String)> {
        s.lines()
            .skip(1)
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (old, new) = (pairs(&have), pairs(want));
    for (k, v) in &new {
        let o = old
            .iter()
            .find(|(ok, _)| ok == k)
            .map(|(_, ov)| ov.clone())
            .unwrap_or_else(|| "(absent)".into());
        if &o != v {
            return Ok(Existing::Different(k.clone(), o, v.clone()));
        }
    }
    Ok(Existing::Different(
        "manifest".into(),
        "(other)".into(),
        "(this build)".into(),
    ))
}

/// Removes our work directory through `storage`: only the files a partitioned build makes,
/// then the directory (an unknown file makes it refuse, leaving the directory).
///
/// # Errors
/// [`BuildError::NotAnIndex`] naming a foreign entry; [`BuildError::Io`].
pub fn remove(storage: &StorageRef, dir: &Path) -> Result<(), BuildError> {
    let ours = |name: &str| {
        name == MANIFEST
            || name == PARTITIONS_FILE
            || name == MERGED_FILE
            || name.starts_with("part-")
            || name.starts_with("pq_")
            || name.ends_with(".tmp")
    };
    let entries = std::fs::read_dir(dir).map_err(|e| BuildError::io(dir, e))?;
    let mut files = Vec::new();
    for e in entries {
        let e = e.map_err(|e| BuildError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !ours(&name) || !is_file {
            return Err(BuildError::NotAnIndex {
                path: dir.into(),
                reason: format!("{name:?} is not a file a partitioned build makes"),
            });
        }
        files.push(e.path());
    }
    for f in files {
        storage.remove(&f).map_err(|e| BuildError::io(&f, e))?;
    }
    storage.remove_dir(dir).map_err(|e| BuildError::io(dir, e))
}
