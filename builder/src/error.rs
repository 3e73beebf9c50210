//! Errors of the builder.

use ssdann_layout::LayoutError;
use std::path::PathBuf;

/// An error from an index build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A dataset or format error (names the file, field and value).
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A build parameter is out of range.
    #[error("invalid build parameter {field} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name as the CLI spells it (`-R`, `-L`, `--pq-bytes`, ...).
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// The output directory exists and `force` was not given.
    #[error("{}: output directory already exists (pass --force to replace it; --force replaces only an ssdann index directory or an empty directory)", path.display())]
    OutputExists {
        /// The directory.
        path: PathBuf,
    },
    /// `force` was given but the output path is neither an ssdann index directory nor an
    /// empty directory, so replacing it could delete the user's own files
    /// ([`crate::build::check_output`] states the rule).
    #[error("{}: not an ssdann index directory ({reason}); refusing to delete it", path.display())]
    NotAnIndex {
        /// The output path (or, after the swap, the old directory moved aside).
        path: PathBuf,
        /// Why: a file, a symbolic link, a foreign entry (named), no `index.ssd`, or an
        /// `index.ssd` without the header magic.
        reason: String,
    },
    /// `force` would replace an index that a process has open (it holds the directory's
    /// lock).
    #[error("{}: the index is open in a process (it holds the directory's lock); close it before replacing it", path.display())]
    InUse {
        /// The output directory.
        path: PathBuf,
    },
    /// `force` needs an atomic exchange of the old output and the new index
    /// (`renameat2(RENAME_EXCHANGE)`), which this file system or kernel refuses (e.g. NFS;
    /// Linux before 3.15; any other OS). Nothing was replaced: the old index is as it was
    /// and the new one was discarded.
    #[error("{}: cannot replace it atomically: the file system refused to exchange two directories ({source}); the old index is kept — remove it yourself and build again without --force", path.display())]
    SwapUnsupported {
        /// The output directory.
        path: PathBuf,
        /// The error of `renameat2`.
        #[source]
        source: std::io::Error,
    },
    /// Another budgeted build into the same output is running: it holds the lock on the
    /// work directory `path`.
    #[error("{}: another build into the same output is running (it holds this work directory's lock); wait for it or stop it", path.display())]
    BuildInProgress {
        /// The work directory.
        path: PathBuf,
    },
    /// `--memory-budget` cannot hold even one partition of the smallest useful size.
    #[error("--memory-budget {budget} bytes is too small for this data: {reason}; the minimum is {minimum} bytes ({:.2} GiB)", *minimum as f64 / (1u64 << 30) as f64)]
    BudgetTooSmall {
        /// The budget given, in bytes.
        budget: u64,
        /// The smallest budget that can build this data, in bytes.
        minimum: u64,
        /// What does not fit.
        reason: String,
    },
    /// `--resume` found a work directory made by a build with other inputs or parameters.
    #[error("{}: cannot resume: it was made with {field} = {old}, this build has {field} = {new} (run without --resume to start over)", path.display())]
    ResumeMismatch {
        /// The work directory.
        path: PathBuf,
        /// The first field that differs.
        field: String,
        /// Its value in the work directory.
        old: String,
        /// Its value in this build.
        new: String,
    },
    /// A stage run on its own ([`crate::partitioned::stages`]) found an earlier stage's
    /// output missing.
    #[error("{}: {missing} not done yet; run {next} first", path.display())]
    StageMissing {
        /// The work directory.
        path: PathBuf,
        /// What is missing (the plan, partition graphs by number, the merge).
        missing: String,
        /// The command that makes it.
        next: String,
    },
    /// A stage run on its own found the input changed since the plan was made.
    #[error("{}: the plan was made with {field} = {old}, the input now has {field} = {new}; plan again (`ssdann build plan`)", path.display())]
    PlanMismatch {
        /// The work directory.
        path: PathBuf,
        /// The first field that differs.
        field: String,
        /// Its value in the plan.
        old: String,
        /// Its value now.
        new: String,
    },
    /// Another process is building the same partition (it holds the lock on its id file).
    #[error("{}: partition {part} is being built by another process (it holds this file's lock)", path.display())]
    PartitionInProgress {
        /// The partition's `part-XXXX.ids`.
        path: PathBuf,
        /// The partition.
        part: usize,
    },
    /// The build stopped at a test hook (`BuildParams::interrupt_at`), as a kill would.
    #[error("build interrupted at {stage} (test hook)")]
    Interrupted {
        /// The point it stopped at.
        stage: String,
    },
    /// An I/O error on `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BuildError::Io {
            path: path.into(),
            source,
        }
    }
    /// Shorthand for [`BuildError::InvalidParameter`].
    pub fn param(field: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        BuildError::InvalidParameter {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
