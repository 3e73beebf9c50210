//! Errors of the engine.

use ssdann_layout::LayoutError;
use std::path::PathBuf;

/// An error opening, checking or searching an index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A format or file error (names the file, field and value).
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// An I/O error on `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The index's files disagree with each other (e.g. PQ codes for a different n).
    #[error("{}: {detail}", path.display())]
    Inconsistent {
        /// The index directory or file.
        path: PathBuf,
        /// What disagrees, with both values.
        detail: String,
    },
    /// The index directory is locked by another handle (one writer per index directory; any
    /// number of read-only handles, never beside a writer).
    #[error("{}: cannot open the index {wanted}: {held}; close it first, or open read-only (OpenOptions::read_only) beside other readers", path.display())]
    Locked {
        /// The index directory.
        path: PathBuf,
        /// What this open wanted.
        wanted: &'static str,
        /// Who holds it.
        held: &'static str,
    },
    /// The operation is not allowed on this handle (e.g. an insert on a read-only index, or
    /// an update in a forked child process).
    #[error("{}: {detail}", path.display())]
    NotAllowed {
        /// The index directory.
        path: PathBuf,
        /// What was refused and why.
        detail: String,
    },
    /// A query or search parameter is invalid.
    #[error("invalid {field} = {value}: {reason}")]
    InvalidQuery {
        /// Which argument.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        reason: String,
    },
}

impl EngineError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            source,
        }
    }
}
