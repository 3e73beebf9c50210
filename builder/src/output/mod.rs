//! Where a build writes: the rule for replacing an existing output (`force`) — only what an
//! earlier build or the engine made, never the user's own files —, the temporary directory
//! `.NAME.building-PID` and the reaping of stale ones, the atomic install (a rename, or with
//! `force` an exchange), and the removal of a replaced index directory, file by file.

use crate::durable::{fsync_dir, parent_of};
use crate::error::BuildError;
use crate::Result;
use ssdann_layout::header::{HEADER_MAGIC, HEADER_SLOT_BYTES};
use ssdann_layout::journal::JOURNAL_FILE;
use ssdann_layout::labels::LABELS_FILE;
use ssdann_layout::navigation::NAVIGATION_FILE;
use ssdann_layout::pq::{PQ_CODES_FILE, PQ_PIVOTS_FILE, PQ_REFINE_FILE};
use ssdann_layout::storage::StorageRef;
use ssdann_layout::wal::WAL_FILE;
use std::path::{Path, PathBuf};

mod temp_dir;
use temp_dir::lock_dir;
pub use temp_dir::reap_stale_temp_dirs;
#[cfg(test)]
use temp_dir::temp_dir_for;
pub(crate) use temp_dir::{make_temp_dir, TempDir};

/// File name of the sector file inside an index directory.
pub const INDEX_FILE: &str = "index.ssd";

/// Every file name an index directory may hold (docs/FORMAT.md): the build's five files (six
/// with neighbour codes: `pq_refine.bin`; `navigation.bin` is absent from indexes built
/// before it), the
/// WAL ([`WAL_FILE`]) and the temporary file of a WAL trim (the engine's
/// `path.with_extension("log.trim")`), and a merge's journal ([`JOURNAL_FILE`]). A merge also
/// stages `NAME.merge` beside `NAME` (see [`is_index_file_name`]). The CLI's tests check
/// these against the engine's names.
pub const INDEX_DIR_FILES: [&str; 9] = [
    INDEX_FILE,
    NAVIGATION_FILE,
    PQ_PIVOTS_FILE,
    PQ_REFINE_FILE,
    PQ_CODES_FILE,
    LABELS_FILE,
    WAL_FILE,
    "wal.log.trim",
    JOURNAL_FILE,
];

/// Whether `name` is a file an index directory may hold: one of [`INDEX_DIR_FILES`], or one
/// of them followed by `.merge` (a merge's staged copy).
pub fn is_index_file_name(name: &str) -> bool {
    let base = name.strip_suffix(".merge").unwrap_or(name);
    INDEX_DIR_FILES.contains(&base)
}

/// What an existing output path holds, as [`check_output`] classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExistingOutput {
    /// Nothing is there.
    Absent,
    /// An empty directory.
    EmptyDirectory,
    /// An ssdann index directory (see [`check_output`]).
    Index,
}

/// Decides whether a build may write `out_dir`, and what it would replace.
///
/// The rule for `force`: a build replaces only what an earlier build (or the engine) made.
/// That is an empty directory, or a directory that holds an `index.ssd` whose first or second
/// header slot starts with [`HEADER_MAGIC`] (docs/FORMAT.md, "Header slot"; only those 8
/// bytes of each slot are read) and nothing but regular files named in [`INDEX_DIR_FILES`]
/// (or their `.merge` copies). Anything else may hold the user's own files and is never
/// deleted.
///
/// # Errors
/// - [`BuildError::OutputExists`]: something is at `out_dir` and `force` is false.
/// - [`BuildError::NotAnIndex`] (with `force`): `out_dir` is a file or a symbolic link, or a
///   directory with an entry that is not an index file (the error names the first, in name
///   order), without `index.ssd`, or whose `index.ssd` lacks the header magic.
/// - [`BuildError::Io`]: the path or the directory could not be read.
pub fn check_output(out_dir: &Path, force: bool) -> Result<ExistingOutput> {
    let meta = match std::fs::symlink_metadata(out_dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ExistingOutput::Absent),
        Err(e) => return Err(BuildError::io(out_dir, e)),
    };
    if !force {
        return Err(BuildError::OutputExists {
            path: out_dir.into(),
        });
    }
    let refuse = |reason: String| BuildError::NotAnIndex {
        path: out_dir.into(),
        reason,
    };
    if meta.file_type().is_symlink() {
        return Err(refuse("it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(refuse("it is a file, not a directory".into()));
    }
    let mut names = Vec::new();
    let mut foreign = Vec::new();
    for entry in std::fs::read_dir(out_dir).map_err(|e| BuildError::io(out_dir, e))? {
        let entry = entry.map_err(|e| BuildError::io(out_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry
            .file_type()
            .map_err(|e| BuildError::io(entry.path(), e))?
            .is_file();
        if is_file && is_index_file_name(&name) {
            names.push(name);
        } else {
            foreign.push(name);
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        let more = match foreign.len() - 1 {
            0 => String::new(),
            1 => " and 1 other entry that is not an index file".into(),
            m => format!(" and {m} other entries that are not index files"),
        };
        return Err(refuse(format!("contains `{}`{more}", foreign[0])));
    }
    if names.is_empty() {
        return Ok(ExistingOutput::EmptyDirectory);
    }
    if !names.iter().any(|n| n == INDEX_FILE) {
        return Err(refuse(format!("it holds no `{INDEX_FILE}`")));
    }
    if !has_header_magic(&out_dir.join(INDEX_FILE))? {
        return Err(refuse(format!(
            "`{INDEX_FILE}` does not start with the ssdann header magic"
        )));
    }
    Ok(ExistingOutput::Index)
}

/// Whether header slot 0 or slot 1 of the sector file at `path` starts with
/// [`HEADER_MAGIC`] (a torn or corrupt slot 0 still leaves slot 1). Reads 8 bytes per slot.
fn has_header_magic(path: &Path) -> Result<bool> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).map_err(|e| BuildError::io(path, e))?;
    let mut magic = [0u8; HEADER_MAGIC.len()];
    for slot in 0..2u64 {
        match f.read_exact_at(&mut magic, slot * HEADER_SLOT_BYTES as u64) {
            Ok(()) if magic == HEADER_MAGIC => return Ok(true),
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(BuildError::io(path, e)),
        }
    }
    Ok(false)
}

/// Deletes the index directory `old` (an old output the build swapped out, or a stale
/// temporary directory) through `storage`: each index file by name, then the directory
/// itself, which fails if anything else appeared in it meanwhile (then it is kept).
///
/// # Errors
/// [`BuildError::NotAnIndex`] naming an entry that is not a regular index file (nothing of
/// it is deleted); [`BuildError::Io`].
pub(crate) fn remove_index_dir(storage: &StorageRef, old: &Path) -> Result<()> {
    let files = index_files_of(old)?.map_err(|name| BuildError::NotAnIndex {
        path: old.into(),
        reason: format!(
            "`{name}` is in it, and only an index's own files are ever deleted; the directory \
             is kept here"
        ),
    })?;
    for f in &files {
        storage.remove(f).map_err(|x| BuildError::io(f, x))?;
    }
    storage.remove_dir(old).map_err(|e| BuildError::io(old, e))
}

/// The paths of the entries of `dir` when every one is a regular file with an index file
/// name ([`is_index_file_name`]); otherwise `Err(name)` of the first other one.
fn index_files_of(dir: &Path) -> Result<std::result::Result<Vec<PathBuf>, String>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| BuildError::io(dir, e))? {
        let e = e.map_err(|x| BuildError::io(dir, x))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_file = e
            .file_type()
            .map_err(|x| BuildError::io(e.path(), x))?
            .is_file();
        if !(is_file && is_index_file_name(&name)) {
            return Ok(Err(name));
        }
        files.push(e.path());
    }
    Ok(Ok(files))
}

/// `.NAME.SUFFIX` beside `out_dir` (NAME its last component): where a build keeps what is
/// not an index yet.
///
/// # Errors
/// [`BuildError::InvalidParameter`] when `out_dir` names no directory.
pub(crate) fn sibling_of(out_dir: &Path, suffix: &str) -> Result<PathBuf> {
    let name = out_dir
        .file_name()
        .ok_or_else(|| BuildError::param("--out", out_dir.display(), "must name a directory"))?
        .to_string_lossy()
        .into_owned();
    Ok(parent_of(out_dir).join(format!(".{name}.{suffix}")))
}

/// Moves the finished, fsynced build directory `tmp` to `out_dir`: a rename when `out_dir`
/// is absent; with `force`, an index or empty directory there is swapped with `tmp` in one
/// atomic step (`renameat2(RENAME_EXCHANGE)`; never anything else, never an index a process
/// has open). Then the parent is fsynced (site `build.install`) and, after a swap, the old
/// directory (now at `tmp`'s name) is deleted file by file. A crash at any point leaves
/// `out_dir` holding the old index (or nothing, when there was none) or the new one, whole;
/// an old index not deleted yet stays at `tmp`'s name, which a later build reaps
/// ([`reap_stale_temp_dirs`]).
///
/// # Errors
/// [`BuildError::OutputExists`], [`BuildError::NotAnIndex`], [`BuildError::InUse`] (the
/// temporary directory is removed first), [`BuildError::SwapUnsupported`] (the file system
/// cannot exchange two directories; the temporary directory is removed and the old index
/// kept), [`BuildError::Io`].
pub(crate) fn install_output(
    storage: &StorageRef,
    tmp: TempDir,
    out_dir: &Path,
    force: bool,
) -> Result<()> {
    let discard = |tmp: TempDir| remove_index_dir(storage, &tmp.path);
    // Again: the output path may have changed while the build ran.
    let existing = match check_output(out_dir, force) {
        Ok(x) => x,
        Err(e) => {
            discard(tmp)?;
            return Err(e);
        }
    };
    let parent = parent_of(out_dir);
    if existing == ExistingOutput::Absent {
        storage
            .rename(&tmp.path, out_dir)
            .map_err(|e| BuildError::io(out_dir, e))?;
        return fsync_dir(storage, &parent, "build.install");
    }
    // --force on an index or an empty directory. An open index holds an advisory lock on its
    // directory (the engine's one-writer rule; readers share it): never replace an index
    // that a process is using.
    let Some(lock) = lock_dir(out_dir)? else {
        discard(tmp)?;
        return Err(BuildError::InUse {
            path: out_dir.into(),
        });
    };
    if let Err(e) = storage.exchange(&tmp.path, out_dir) {
        let unsupported = e.kind() == std::io::ErrorKind::Unsupported
            || matches!(
                e.raw_os_error(),
                Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
            );
        discard(tmp)?;
        return Err(if unsupported {
            BuildError::SwapUnsupported {
                path: out_dir.into(),
                source: e,
            }
        } else {
            BuildError::io(out_dir, e)
        });
    }
    fsync_dir(storage, &parent, "build.install")?;
    drop(lock);
    // The old directory is at the temporary name now.
    remove_index_dir(storage, &tmp.path).map_err(|e| match e {
        BuildError::NotAnIndex { path, reason } => BuildError::NotAnIndex {
            path,
            reason: format!("{reason}; the new index is in place"),
        },
        e => e,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use super::*;
    use crate::build::{build_from_vectors, BuildParams, BuildReport};
    use crate::progress::NoProgress;
    use crate::progress::{Phase, Progress};
    use ssdann_layout::IndexHeader;
    use std::path::PathBuf;

    fn small() -> (Vec<f32>, usize) {
        let d = 8;
        (crate::synthetic::clustered(300, 0, d, 4, 11).0, d)
    }

    fn params(force: bool, max_degree: usize) -> BuildParams {
        BuildParams {
            max_degree,
            build_l: 24,
            pq_bytes: Some(4),
            threads: Some(1),
            force,
            ..Default::default()
        }
    }

    fn build(out: &Path, force: bool, max_degree: usize) -> Result<BuildReport> {
        let (data, d) = small();
        build_from_vectors(&data, d, out, &params(force, max_degree), &NoProgress)
    }

    fn max_degree_of(dir: &Path) -> u32 {
        let bytes = std::fs::read(dir.join(INDEX_FILE)).unwrap();
        let (h, _) =
            IndexHeader::choose(&dir.join(INDEX_FILE), &bytes[..2 * HEADER_SLOT_BYTES]).unwrap();
        h.max_degree
    }

    /// Entries of `dir` other than `keep`, sorted (temporary or moved-aside directories).
    fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !keep.contains(&n.as_str()))
            .collect();
        v.sort();
        v
    }

    /// Before this check, `force` deleted any directory (remove_dir_all): the user's file
    /// was gone and the build succeeded.
    #[test]
    fn force_refuses_a_directory_with_user_files_and_keeps_them() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("notes.txt"), b"mine").unwrap();
        let err = build(&out, true, 8).unwrap_err();
        assert!(
            matches!(&err, BuildError::NotAnIndex { path, reason }
                if path == &out && reason.contains("`notes.txt`")),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("not an ssdann index directory") && msg.contains("refusing to delete it"),
            "{msg}"
        );
        assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"mine");
        assert_eq!(leftovers(tmp.path(), &["out"]), Vec::<String>::new());

        // an index with one foreign file among its own is refused too, and kept whole
        let idx = tmp.path().join("idx");
        build(&idx, false, 8).unwrap();
        std::fs::write(idx.join("results.ibin"), b"x").unwrap();
        std::fs::create_dir(idx.join("sub")).unwrap();
        let err = build(&idx, true, 12).unwrap_err().to_string();
        assert!(
            err.contains("contains `results.ibin` and 1 other entry that is not an index file"),
            "{err}"
        );
        assert_eq!(max_degree_of(&idx), 8);
        assert!(idx.join("results.ibin").exists() && idx.join("sub").exists());
    }

    #[test]
    fn force_refuses_files_links_and_look_alikes() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"mine").unwrap();
        let err = build(&file, true, 8).unwrap_err().to_string();
        assert!(err.contains("it is a file, not a directory"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"mine");

        let target = tmp.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = build(&link, true, 8).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");

        // index file names, but no index.ssd
        let partial = tmp.path().join("partial");
        std::fs::create_dir(&partial).unwrap();
        std::fs::write(partial.join("labels.bin"), b"x").unwrap();
        let err = build(&partial, true, 8).unwrap_err().to_string();
        assert!(err.contains("holds no `index.ssd`"), "{err}");

        // an index.ssd that is not ours (no magic in either slot; short file)
        let fake = tmp.path().join("fake");
        std::fs::create_dir(&fake).unwrap();
        std::fs::write(fake.join(INDEX_FILE), vec![7u8; 2 * HEADER_SLOT_BYTES]).unwrap();
        let err = build(&fake, true, 8).unwrap_err().to_string();
        assert!(
            err.contains("does not start with the ssdann header magic"),
            "{err}"
        );
        std::fs::write(fake.join(INDEX_FILE), b"SSD").unwrap();
        assert!(build(&fake, true, 8).is_err());
        assert!(fake.join(INDEX_FILE).exists());
        assert_eq!(
            leftovers(tmp.path(), &["file", "target", "link", "partial", "fake"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn force_replaces_an_index_or_an_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let idx = tmp.path().join("idx");
        build(&idx, false, 8).unwrap();
        assert_eq!(check_output(&idx, true).unwrap(), ExistingOutput::Index);
        // the files an updated or merging index holds are its own
        for name in [
            "wal.log",
            "merge.journal",
            "labels.bin.merge",
            "wal.log.trim",
        ] {
            std::fs::write(idx.join(name), b"x").unwrap();
        }
        let err = build(&idx, false, 12).unwrap_err();
        assert!(matches!(err, BuildError::OutputExists { .. }), "{err:?}");
        build(&idx, true, 12).unwrap();
        assert_eq!(max_degree_of(&idx), 12);
        assert!(!idx.join("wal.log").exists() && !idx.join("merge.journal").exists());
        assert_eq!(leftovers(tmp.path(), &["idx"]), Vec::<String>::new());

        // the live header in slot 1 (as after a merge) and slot 0 torn: slot 1's magic still
        // identifies the index
        let mut bytes = std::fs::read(idx.join(INDEX_FILE)).unwrap();
        bytes.copy_within(..HEADER_SLOT_BYTES, HEADER_SLOT_BYTES);
        bytes[..8].fill(0);
        std::fs::write(idx.join(INDEX_FILE), &bytes).unwrap();
        assert_eq!(check_output(&idx, true).unwrap(), ExistingOutput::Index);

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(
            check_output(&empty, true).unwrap(),
            ExistingOutput::EmptyDirectory
        );
        assert!(matches!(
            check_output(&empty, false),
            Err(BuildError::OutputExists { .. })
        ));
        build(&empty, true, 8).unwrap();
        assert_eq!(max_degree_of(&empty), 8);
        assert_eq!(
            leftovers(tmp.path(), &["idx", "empty"]),
            Vec::<String>::new()
        );
        assert_eq!(
            check_output(&tmp.path().join("none"), false).unwrap(),
            ExistingOutput::Absent
        );
    }

    /// Drops a user file into the output directory once the graph build starts (after the
    /// first check).
    struct DropsAFile(PathBuf);
    impl Progress for DropsAFile {
        fn start(&self, phase: Phase, _: u64) {
            if phase == Phase::VamanaPass1 {
                std::fs::write(self.0.join("notes.txt"), b"mine").unwrap();
            }
        }
        fn advance(&self, _: u64) {}
        fn finish(&self) {}
    }

    #[test]
    fn force_checks_again_before_the_swap() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let (data, d) = small();
        let err = build_from_vectors(&data, d, &out, &params(true, 8), &DropsAFile(out.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`notes.txt`"), "{err}");
        assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"mine");
        assert_eq!(leftovers(tmp.path(), &["out"]), Vec::<String>::new());
    }

    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    /// Before the reaper, every killed build left its `.NAME.building-PID` for good.
    #[test]
    fn stale_temp_dirs_are_reaped_only_when_dead_unlocked_and_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let out = root.join("idx");
        let dir = |name: &str, files: &[&str]| {
            let d = root.join(name);
            std::fs::create_dir(&d).unwrap();
            for f in files {
                std::fs::write(d.join(f), b"x").unwrap();
            }
            d
        };
        let dead = [dead_pid(), dead_pid(), dead_pid(), dead_pid()];
        let stale = dir(
            &format!(".idx.building-{}", dead[0]),
            &["index.ssd", "labels.bin"],
        );
        let empty = dir(&format!(".idx.building-{}", dead[1]), &[]);
        let users = dir(
            &format!(".idx.building-{}", dead[2]),
            &["index.ssd", "notes.txt"],
        );
        let alive = dir(".idx.building-1", &["index.ssd"]); // init never dies
        let locked = dir(&format!(".idx.building-{}", dead[3]), &["index.ssd"]);
        let held = std::fs::File::open(&locked).unwrap();
        held.try_lock().unwrap();
        let other = dir(&format!(".other.building-{}", dead[0]), &["index.ssd"]);
        let zero = dir(&format!(".idx.building-0{}", dead[0]), &["index.ssd"]);
        let suffix = dir(&format!(".idx.building-{}.old", dead[0]), &["index.ssd"]);
        let sub = dir(&format!(".idx.building-{}", dead[1] + 1_000_000_000), &[]);
        std::fs::create_dir(sub.join("nested")).unwrap();
        let file = root.join(format!(".idx.building-{}", u32::MAX));
        std::fs::write(&file, b"x").unwrap();

        let mut reaped = reap_stale_temp_dirs(&StorageRef::default(), &out).unwrap();
        reaped.sort();
        let mut want = vec![stale.clone(), empty.clone()];
        want.sort();
        assert_eq!(reaped, want);
        assert!(!stale.exists() && !empty.exists());
        for kept in [&users, &alive, &locked, &other, &zero, &suffix, &sub, &file] {
            assert!(kept.exists(), "{kept:?} was removed");
        }
        assert_eq!(std::fs::read(users.join("notes.txt")).unwrap(), b"x");
        drop(held);

        // a build into the output reaps the one it may now (unlocked), and leaves the rest
        let locked_files = std::fs::read_dir(&locked).unwrap().count();
        assert_eq!(locked_files, 1);
        build(&out, false, 8).unwrap();
        assert!(!locked.exists());
        assert_eq!(leftovers(root, &["idx"]), {
            let mut v: Vec<String> = [&users, &alive, &other, &zero, &suffix, &sub, &file]
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        });
    }

    /// A directory at this process's own temporary name is removed only when it holds
    /// nothing but index files (before, `remove_dir_all` deleted whatever was there).
    #[test]
    fn a_temp_dir_with_a_foreign_file_at_our_name_is_refused_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("idx");
        let ours = temp_dir_for(&out).unwrap();
        std::fs::create_dir(&ours).unwrap();
        std::fs::write(ours.join("index.ssd"), b"x").unwrap();
        build(&out, false, 8).unwrap();
        assert!(
            !ours.exists(),
            "an index-only leftover at our name is replaced"
        );

        let out2 = tmp.path().join("idx2");
        let ours = temp_dir_for(&out2).unwrap();
        std::fs::create_dir(&ours).unwrap();
        std::fs::write(ours.join("notes.txt"), b"mine").unwrap();
        let err = build(&out2, false, 8).unwrap_err();
        assert!(
            matches!(&err, BuildError::NotAnIndex { reason, .. } if reason.contains("`notes.txt`")),
            "{err:?}"
        );
        assert_eq!(std::fs::read(ours.join("notes.txt")).unwrap(), b"mine");
        assert!(!out2.exists());
    }

    /// `--force` swaps the old index and the new one in one exchange: the old directory's
    /// inode ends up at the temporary name and is deleted there, the new one at the output.
    #[test]
    fn force_exchanges_the_directories_and_removes_the_old_one() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let idx = tmp.path().join("idx");
        build(&idx, false, 8).unwrap();
        let old_ino = std::fs::metadata(&idx).unwrap().ino();
        build(&idx, true, 12).unwrap();
        assert_ne!(std::fs::metadata(&idx).unwrap().ino(), old_ino);
        assert_eq!(max_degree_of(&idx), 12);
        assert_eq!(leftovers(tmp.path(), &["idx"]), Vec::<String>::new());
    }

    #[test]
    fn missing_parent_directories_are_created() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("a/b/idx");
        build(&out, false, 8).unwrap();
        assert_eq!(max_degree_of(&out), 8);
    }
}
