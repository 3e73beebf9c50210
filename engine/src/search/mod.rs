//! Searching one index state: the query check, the DiskANN beam search ([`beam`]), its
//! pipelined variant ([`pipelined`]), and the per-thread contexts they run in ([`context`]).
//! The result types ([`Neighbor`], [`SearchParams`], [`SearchStats`]) are public.

mod beam;
pub(crate) mod context;
mod pipelined;
pub mod visited;

pub(crate) use beam::beam_search;
pub(crate) use context::ContextPool;
pub use context::SearchContext;

use crate::error::EngineError;
pub use crate::options::{MAX_K, MAX_L, MAX_W};
use crate::state::State;
use crate::Result;

/// Per-query search parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchParams {
    /// Search list size L (≥ k).
    pub l: usize,
    /// Beam width W: nodes expanded (sectors read in one submission) per round.
    pub w: usize,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams { l: 100, w: 4 }
    }
}

/// One result: the point's label (its id; the row number in the build file) and its
/// distance to the query (squared L2; negated inner product; cosine distance `1 - cos`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbor {
    /// Label of the point.
    pub id: u64,
    /// Distance to the query, per the index metric.
    pub distance: f32,
}

/// What one search did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SearchStats {
    /// Rounds of the beam search (pipelined search: waits for read completions).
    pub hops: u32,
    /// Sectors read from the SSD (a multi-sector block counts its sectors).
    pub sector_reads: u32,
    /// Nodes expanded from the node cache (no I/O).
    pub cache_hits: u32,
    /// Nodes expanded in total.
    pub nodes_expanded: u32,
    /// Time spent waiting for reads, µs.
    pub io_wait_us: f64,
    /// Wall time of the whole search, µs.
    pub total_us: f64,
}

/// Checks a query and parameters.
pub(crate) fn check_query(
    state: &State,
    query: &[f32],
    k: usize,
    params: &SearchParams,
) -> Result<()> {
    let bad = |field: &'static str, value: String, reason: String| {
        Err(EngineError::InvalidQuery {
            field,
            value,
            reason,
        })
    };
    if query.len() != state.dim() {
        return bad(
            "query dimension",
            query.len().to_string(),
            format!("the index has d = {}", state.dim()),
        );
    }
    if let Some(i) = query.iter().position(|x| !x.is_finite()) {
        return bad(
            "query",
            format!("{} at position {i}", query[i]),
            "values must be finite".into(),
        );
    }
    if k == 0 || k > MAX_K {
        return bad("k", k.to_string(), format!("must be in 1..={MAX_K}"));
    }
    if params.l < k || params.l > MAX_L {
        return bad(
            "L",
            params.l.to_string(),
            format!("must be in k..={MAX_L} (k = {k})"),
        );
    }
    if params.w == 0 || params.w > state.options.max_beam_width {
        return bad(
            "W",
            params.w.to_string(),
            format!(
                "must be in 1..={} (OpenOptions::max_beam_width)",
                state.options.max_beam_width
            ),
        );
    }
    Ok(())
}
