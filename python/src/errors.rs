//! Engine, build and layout errors as Python exceptions: the exception types, the mapping
//! by error kind, the Python spellings in messages, and the argument checks that raise.

use numpy::{PyUntypedArray, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{
    PyBlockingIOError, PyException, PyFileExistsError, PyFileNotFoundError, PyIsADirectoryError,
    PyNotADirectoryError, PyOSError, PyPermissionError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use ssdann::{BuildError, EngineError, LayoutError};

create_exception!(
    ssdann,
    CorruptIndexError,
    PyException,
    "An index file failed a checksum or format check; the message names the file and the \
     field or offset. Nothing was changed on disk. Run `ssdann verify DIR` for every problem."
);

create_exception!(
    ssdann,
    IndexLockedError,
    PyBlockingIOError,
    "The index directory is open in another handle (this or another process): one writer \
     per directory, any number of read_only=True handles but never beside a writer."
);

/// The message with the CLI's and the Rust API's spellings replaced by this module's
/// parameter names (`--force` → `force=True`, `-R` → `R`, ...).
pub(crate) fn python_names(msg: String) -> String {
    const NAMES: [(&str, &str); 17] = [
        ("parameter --max-index-growth", "parameter max_index_growth"),
        ("parameter --neighbor-codes", "parameter neighbor_codes"),
        ("parameter --saturate-graph", "parameter saturate_graph"),
        ("parameter --vector-encoding", "parameter vector_encoding"),
        (
            "pass --force to replace it; --force replaces",
            "pass force=True to replace it; force=True replaces",
        ),
        (
            "(run without --resume to start over)",
            "(build with resume=False to start over)",
        ),
        ("--memory-budget ", "memory_budget_gb: "),
        (
            "(OpenOptions::max_beam_width)",
            "(the largest W an Index allows)",
        ),
        ("(OpenOptions::read_only)", "(read_only=True)"),
        ("build again without --force", "build again without force=True"),
        ("parameter --pq-bytes", "parameter pq_bytes"),
        ("parameter --alpha", "parameter alpha"),
        ("parameter --passes", "parameter passes"),
        ("parameter --threads", "parameter threads"),
        ("parameter --metric", "parameter metric"),
        ("parameter -R ", "parameter R "),
        ("parameter -L ", "parameter L "),
    ];
    NAMES.iter().fold(msg, |m, (cli, py)| m.replace(cli, py))
}

/// An OS error as the Python exception of its kind (FileNotFoundError, NotADirectoryError,
/// PermissionError, ...), else OSError.
pub(crate) fn os_err(msg: String, source: &std::io::Error) -> PyErr {
    use std::io::ErrorKind as K;
    match source.kind() {
        K::NotFound => PyFileNotFoundError::new_err(msg),
        K::PermissionDenied => PyPermissionError::new_err(msg),
        K::NotADirectory => PyNotADirectoryError::new_err(msg),
        K::IsADirectory => PyIsADirectoryError::new_err(msg),
        K::AlreadyExists => PyFileExistsError::new_err(msg),
        _ => PyOSError::new_err(msg),
    }
}

pub(crate) fn layout_err(e: &LayoutError, index_side: bool) -> PyErr {
    let msg = python_names(e.to_string());
    match e {
        LayoutError::Io { source, .. } => os_err(msg, source),
        LayoutError::ChecksumMismatch { .. } | LayoutError::Corrupt { .. } => {
            CorruptIndexError::new_err(msg)
        }
        LayoutError::SizeMismatch { .. } | LayoutError::InvalidField { .. } if index_side => {
            CorruptIndexError::new_err(msg)
        }
        _ => PyValueError::new_err(msg),
    }
}

pub(crate) fn engine_err(e: EngineError) -> PyErr {
    let msg = python_names(e.to_string());
    match &e {
        EngineError::Layout(l) => layout_err(l, true),
        EngineError::Io { source, .. } => os_err(msg, source),
        EngineError::Inconsistent { .. } => CorruptIndexError::new_err(msg),
        EngineError::InvalidQuery { .. } => PyValueError::new_err(msg),
        EngineError::Locked { .. } => IndexLockedError::new_err(msg),
        EngineError::NotAllowed { .. } => PyPermissionError::new_err(msg),
        _ => PyException::new_err(msg),
    }
}

pub(crate) fn build_err(e: BuildError) -> PyErr {
    let msg = python_names(e.to_string());
    match &e {
        BuildError::Layout(l) => layout_err(l, false),
        BuildError::OutputExists { .. } => PyFileExistsError::new_err(msg),
        BuildError::InUse { .. }
        | BuildError::BuildInProgress { .. }
        | BuildError::PartitionInProgress { .. } => IndexLockedError::new_err(msg),
        BuildError::StageMissing { .. } => PyRuntimeError::new_err(msg),
        BuildError::Io { source, .. } | BuildError::SwapUnsupported { source, .. } => {
            os_err(msg, source)
        }
        _ => PyValueError::new_err(msg),
    }
}

/// Checks that `path` is an index directory before opening it, with the hint the CLI gives:
/// FileNotFoundError (no such path, or a directory without index.ssd), NotADirectoryError.
pub(crate) fn check_index_dir(path: &std::path::Path) -> PyResult<()> {
    if !path.exists() {
        return Err(PyFileNotFoundError::new_err(format!(
            "{}: no such index directory",
            path.display()
        )));
    }
    if !path.is_dir() {
        return Err(PyNotADirectoryError::new_err(format!(
            "{}: not a directory (an index is a directory made by ssdann.build(data, out_dir))",
            path.display()
        )));
    }
    if !path.join("index.ssd").exists() {
        return Err(PyFileNotFoundError::new_err(format!(
            "{}: not an ssdann index directory (no index.ssd); make one with ssdann.build(data, \"{}\")",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// Refuses arrays of the wrong dtype with a message that says how to convert.
pub(crate) fn dtype_error(what: &str, found: &str, allowed: &str) -> PyErr {
    let hint = if found == "float64" {
        " (convert with .astype(np.float32); ssdann never changes precision silently)"
    } else {
        ""
    };
    PyValueError::new_err(format!(
        "{what}: dtype {found} is not supported; expected {allowed}{hint}"
    ))
}

/// numpy's name of the array's dtype ("float32", "uint8", "float64", ...).
pub(crate) fn dtype_name(arr: &Bound<'_, PyUntypedArray>) -> String {
    arr.dtype()
        .str()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "?".into())
}
