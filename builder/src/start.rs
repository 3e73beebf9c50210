//! How every build starts, the one-shot build ([`crate::build`]) and the partitioned one's
//! stages ([`crate::partitioned`]) alike: the input opened (no more points than an index
//! holds), the parameters checked against d, the output path checked
//! ([`crate::output::check_output`]), and the thread pool made.

use crate::error::BuildError;
use crate::output::check_output;
use crate::params::BuildParams;
use crate::Result;
use ssdann_layout::VectorFile;
use std::path::Path;

/// Opens a build's input, refusing more points than an index holds.
pub(crate) fn open_input(data_path: &Path) -> Result<VectorFile> {
    let file = VectorFile::open(data_path)?;
    if file.len() >= u32::MAX as usize {
        // Slots are u32 and u32::MAX is reserved (docs/FORMAT.md, "Limits").
        return Err(ssdann_layout::LayoutError::field(
            file.path(),
            "n",
            file.len(),
            "at most 2^32 - 2 points per index",
        )
        .into());
    }
    Ok(file)
}

/// Validates the parameters against d, refuses an `out_dir` that [`check_output`] refuses,
/// and makes the build's thread pool.
pub(crate) fn prepare(
    params: &BuildParams,
    dim: usize,
    out_dir: &Path,
) -> Result<rayon::ThreadPool> {
    params.validate(dim)?;
    check_output(out_dir, params.force)?;
    thread_pool(params.threads)
}

/// A rayon pool of `threads` threads (`None`: all cores).
pub(crate) fn thread_pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(t) = threads {
        pool = pool.num_threads(t);
    }
    pool.build()
        .map_err(|e| BuildError::param("--threads", threads.unwrap_or(0), e.to_string()))
}
