//! Searching one index state: the query check, the DiskANN beam search ([`beam`]), and the
//! per-thread contexts it runs in ([`context`]).
//! The result types ([`Neighbor`], [`SearchParams`], [`SearchStats`]) are public.

mod beam;
pub(crate) mod context;
pub mod visited;

pub(crate) use beam::beam_search;
pub(crate) use context::ContextPool;
pub use context::SearchContext;

use crate::error::EngineError;
pub use crate::options::{MAX_K, MAX_L, MAX_W};
use crate::state::State;
use crate::Result;

/// Per-query search parameters: the one set every surface takes (`Index::search`,
/// `Index::batch_search`, `ssdann search` / `eval`, Python `Index.search` / `batch_search`,
/// `ssdann.distributed.evaluate`), each with the same limits, checked before anything is sized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchParams {
    /// Search list size L: candidates kept (k ≤ L ≤ [`MAX_L`]). Larger: higher recall, more
    /// reads. Default 100.
    pub l: usize,
    /// Beam width W: sectors read per round in one submission once the search has converged
    /// (1 ≤ W ≤ [`MAX_W`]). Default 4.
    pub w: usize,
    /// Early termination ratio r: the search stops once its closest unexpanded candidate's
    /// approximate (PQ) distance exceeds r × the k-th best exact distance found so far,
    /// instead of expanding all L candidates. Fewer reads at high L; too small an r caps
    /// recall. `None` (the default): the index's own ratio, 1 + max(1.5 × PQ's error on
    /// near pairs, 0.15), measured by the build ([`crate::Index::default_termination_ratio`];
    /// none on an inner-product index). `Some(f32::INFINITY)`: off. Otherwise ≥ 1, and a
    /// finite r only on an l2 or cosine index ([`EngineError::InvalidQuery`] naming
    /// `termination_ratio`).
    pub termination_ratio: Option<f32>,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            l: 100,
            w: 4,
            termination_ratio: None,
        }
    }
}

impl SearchParams {
    /// L and W, every other parameter at its default.
    pub const fn new(l: usize, w: usize) -> Self {
        SearchParams {
            l,
            w,
            termination_ratio: None,
        }
    }

    /// The same parameters with early termination off: every one of the L candidates is
    /// expanded.
    pub const fn without_termination(self) -> Self {
        SearchParams {
            termination_ratio: Some(f32::INFINITY),
            ..self
        }
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
    /// Rounds of the beam search.
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
    if let Some(r) = params.termination_ratio {
        if !(r >= 1.0 && (r == f32::INFINITY || state.header.metric.uses_l2())) {
            return bad(
                "termination_ratio",
                r.to_string(),
                format!(
                    "must be ≥ 1 (inf: off), and finite only on an l2 or cosine index (this \
                     one is {})",
                    state.header.metric
                ),
            );
        }
    }
    if params.w == 0 || params.w > MAX_W {
        return bad("W", params.w.to_string(), format!("must be in 1..={MAX_W}"));
    }
    Ok(())
}
