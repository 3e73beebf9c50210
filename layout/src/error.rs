//! Errors of the `layout` crate: every variant names the file and what was wrong with it.

use std::path::PathBuf;

/// An error reading, validating or writing a dataset or index file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// An operating-system I/O error on `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file name's extension is not a format this crate reads.
    #[error("{}: unsupported file extension {ext:?} (expected .fbin, .u8bin, .i8bin, .fvecs, .bvecs, .ivecs, .npy or .ibin)", path.display())]
    UnsupportedExtension {
        /// The file.
        path: PathBuf,
        /// Its extension ("" when it has none).
        ext: String,
    },
    /// A header field holds a value that is not allowed (zero count, unknown type, ...).
    #[error("{}: field `{field}` = {value}: {reason}", path.display())]
    InvalidField {
        /// The file.
        path: PathBuf,
        /// The field's name as the format spec calls it.
        field: &'static str,
        /// The value found.
        value: String,
        /// Why it is not allowed.
        reason: String,
    },
    /// The file's length disagrees with the counts in its header.
    #[error("{}: file is {actual_bytes} bytes but {detail} implies {expected_bytes} bytes (truncated, extended or wrong header?)", path.display())]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Length implied by the header.
        expected_bytes: u64,
        /// Real length.
        actual_bytes: u64,
        /// Which fields imply the expected length.
        detail: String,
    },
    /// A NaN or infinite value in a vector file.
    #[error("{}: row {row}, column {column}: value {value} is not finite (NaN or infinity)", path.display())]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// Row (0-based) holding the value.
        row: u64,
        /// Column (0-based).
        column: u32,
        /// The value.
        value: f32,
    },
    /// A stored CRC32 does not match the bytes it covers.
    #[error("{}: checksum mismatch in {what}: stored {expected:#010x}, computed {got:#010x}", path.display())]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// Which structure (e.g. "header slot 0", "sector 5678", "body").
        what: String,
        /// CRC32 stored in the file.
        expected: u32,
        /// CRC32 of the bytes as read.
        got: u32,
    },
    /// The bytes are not what the format allows (bad magic, inconsistent fields, ...).
    #[error("{}: corrupt {what}: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which structure.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// An argument given by the caller is out of range (not a file problem).
    #[error("invalid argument `{field}` = {value}: {reason}")]
    InvalidArgument {
        /// Argument name.
        field: &'static str,
        /// Value given.
        value: String,
        /// Why it is not allowed.
        reason: String,
    },
}

impl LayoutError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LayoutError::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`LayoutError::InvalidField`].
    pub fn field(
        path: impl Into<PathBuf>,
        field: &'static str,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        LayoutError::InvalidField {
            path: path.into(),
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`LayoutError::Corrupt`].
    pub fn corrupt(
        path: impl Into<PathBuf>,
        what: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        LayoutError::Corrupt {
            path: path.into(),
            what: what.into(),
            detail: detail.into(),
        }
    }
}
