//! The memory-budgeted, partitioned build (DiskANN, NeurIPS 2019, §4.3): for data whose
//! one-shot build does not fit in `--memory-budget`.
//!
//! Stages, each writing its output into the work directory ([`workdir`]) so that an
//! interrupted build resumes from the last finished one (`--resume`) and each partition is
//! an independent job:
//! 1. **PQ**: train on a sample sized from the budget, encode every point streaming
//!    (`pq_pivots.bin`, `pq_codes.bin`).
//! 2. **Partition** ([`shard`]): k-means on a sample; C sized so every partition fits the
//!    budget; each point joins its 2 nearest partitions (`partitions.bin`, `part-XXXX.ids`).
//! 3. **Partition graphs** ([`graphs`]): a Vamana graph per partition over its own points
//!    only (`part-XXXX.graph`).
//! 4. **Merge**: the union of each point's lists, RobustPruned to R, streamed in row order
//!    (`merged.graph`), from the global medoid.
//! 5. **Write** ([`order`]): when the merged graph fits in the budget, it is loaded and
//!    block-ordered (sector reordering, list order standing for distance) and the index is
//!    written in that order (`labels.bin` maps slots to rows); otherwise the sector file is
//!    streamed from `merged.graph` in input order (`labels.bin` is the identity). Then the
//!    PQ files and the swap into place exactly as the one-shot build does.
//!
//! RAM: one partition's graph at a time plus bounded buffers; the mapped input's pages are
//! dropped whenever a stage has read [`budget::PAGE_ALLOWANCE_FRACTION`] of the budget.

pub mod budget;
mod codes;
pub(crate) mod graphs;
pub(crate) mod order;
pub(crate) mod rows;
mod run;
pub(crate) mod shard;
pub mod stages;
pub mod workdir;
mod write;

use crate::params::BuildParams;
use crate::pq_train;
use crate::progress::{Phase, Progress};
use crate::report::BuildReport;
use crate::BuildError;
use budget::Shape;
use run::Run;
use ssdann_layout::{ElementType, Metric, VectorFile};
use std::path::Path;

pub use stages::{
    plan_partitioned, plan_status, read_plan, run_stage, Plan, PlanStatus, Stage, StageReport,
};

/// Test hook: makes the build stop with [`BuildError::Interrupted`] at the named point
/// (`pq`, `partition`, `graph-N`, `merge`, `write`: each after the stage's output is written
/// under its temporary name and before it is renamed into place, as a kill would).
fn interrupt(params: &BuildParams, point: &str) -> Result<(), BuildError> {
    if params.interrupt_at.as_deref() == Some(point) {
        return Err(BuildError::Interrupted {
            stage: point.to_string(),
        });
    }
    Ok(())
}

/// The build's [`Shape`] for `file` under `params` (with `threads` build threads).
pub fn shape_of(file: &VectorFile, params: &BuildParams, threads: usize) -> Shape {
    let elem = file.element_type();
    let dim = file.dim();
    let m = params
        .pq_bytes
        .unwrap_or_else(|| pq_train::default_pq_m(dim, elem.size_bytes()));
    shape(file.len(), dim, elem, params, m, threads)
}

/// The [`Shape`] of a build of `n` × `dim` points of type `elem` under `params`, with `pq_m`
/// PQ bytes and `threads` build threads (the one-shot build reports its own estimate with it).
pub fn shape(
    n: usize,
    dim: usize,
    elem: ElementType,
    params: &BuildParams,
    pq_m: usize,
    threads: usize,
) -> Shape {
    Shape::new(
        n,
        dim,
        elem.size_bytes(),
        dim + usize::from(params.metric == Metric::InnerProduct),
        rows::graph_type(elem, params),
        params.max_degree,
        pq_m,
        threads,
    )
}

/// Runs the partitioned build of `file` into `out_dir` under `budget` bytes (in the current
/// rayon pool; the caller validated `params` and the output path).
///
/// # Errors
/// [`BuildError::BudgetTooSmall`] when one partition of the smallest useful size does not
/// fit; [`BuildError::ResumeMismatch`] when `--resume` finds a work directory made with
/// other inputs; every error of the one-shot build.
pub fn build_partitioned(
    file: &VectorFile,
    out_dir: &Path,
    params: &BuildParams,
    budget: u64,
    progress: &dyn Progress,
) -> Result<BuildReport, BuildError> {
    let mut run = Run::new(file, out_dir, params, budget, None, progress)?;
    let lock = run.open_work_dir(params.resume)?;
    run.pq()?;
    let parts = run.partitions()?;
    for p in 0..parts {
        run.graph(p, parts)?;
    }
    run.graphs_done();
    run.merge(parts)?;
    let report = run.write(out_dir, parts)?;
    drop(lock);
    Ok(report)
}

/// (current, peak) resident set size of this process in bytes (Linux `/proc/self/status`;
/// `(0, 0)` elsewhere).
pub fn rss_bytes() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Hands the heap pages the allocator keeps after a stage back to the system, so that the
/// next stage starts from the program's own RSS (glibc keeps freed small blocks in its
/// arenas: 25 MiB measured after the partition graphs of a 200K-point build).
fn release_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the system; it touches no live
    // allocation and is thread-safe in glibc.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Records and reports the peak RSS after a stage, once the heap's free pages are released
/// ([`release_heap`]).
fn note_rss(progress: &dyn Progress, peaks: &mut Vec<(Phase, u64)>, phase: Phase, budget: u64) {
    release_heap();
    let (now, peak) = rss_bytes();
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    progress.message(&format!(
        "after {}: RSS {:.0} MiB, peak so far {:.0} MiB (budget {:.0} MiB)",
        phase.name(),
        mib(now),
        mib(peak),
        mib(budget)
    ));
    peaks.push((phase, peak));
}
