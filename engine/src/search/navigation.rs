//! In-memory navigation graph for entry points (Starling, SIGMOD 2024, §4.2; PipeANN, OSDI
//! 2025): a small Vamana graph over a sample of the index's nodes, held in RAM and searched
//! before the disk beam search, so that the beam search starts from the sample nodes nearest
//! the query instead of from the one medoid — the first hops of a search from the medoid
//! only walk towards the query's neighbourhood, and each costs W reads.
//!
//! Built at open when [`crate::OpenOptions::navigation_nodes`] > 0, from what is already in
//! RAM: the sample's vectors are their PQ reconstructions (no read of the sector file, no
//! extra file). RAM: `s × (4d + ~4·NAV_R)` bytes for s sample nodes. A sample node freed by a
//! later merge is skipped as a seed; a reused slot is still a valid node, only a worse seed.

use crate::state::State;
use ssdann_builder::greedy_search::{greedy_search, SearchScratch};
use ssdann_builder::progress::NoProgress;
use ssdann_builder::vamana::{build_vamana, VamanaParams};
use ssdann_layout::Metric;

/// Degree R of the navigation graph.
pub const NAV_R: usize = 32;
/// Build list size L of the navigation graph.
const NAV_BUILD_L: usize = 64;

/// The navigation graph: sample slots, their PQ-reconstructed vectors (s × d) and a Vamana
/// graph over them (ids 0..s index `slots`).
pub(crate) struct Navigation {
    slots: Vec<u32>,
    vectors: Vec<f32>,
    dim: usize,
    metric: Metric,
    adjacency: Vec<Vec<u32>>,
    medoid: u32,
}

impl Navigation {
    /// Samples up to `count` live slots of `state` at an even stride and builds the graph
    /// (in the current rayon pool). `None` when the index has no live slot.
    pub(crate) fn build(state: &State, count: usize) -> Option<Navigation> {
        let n = state.header.n_slots as usize;
        let live = state.header.live_count as usize;
        let count = count.min(live);
        if count == 0 {
            return None;
        }
        let dim = state.dim();
        let m = state.pq.m();
        // An even stride over the slots, skipping free ones (at most n − live of them).
        let stride = (n / count).max(1);
        let mut slots = Vec::with_capacity(count);
        let mut s = 0;
        while slots.len() < count && s < n {
            if !state.labels.is_free(s) {
                slots.push(s as u32);
                s += stride;
            } else {
                s += 1;
            }
        }
        let mut vectors = vec![0f32; slots.len() * dim];
        for (row, &slot) in vectors.chunks_exact_mut(dim).zip(&slots) {
            let code = &state.codes[slot as usize * m..(slot as usize + 1) * m];
            state.pq.decode(code, row);
        }
        // Cosine indexes store unit vectors and search them in L2 (as the build does).
        let metric = if state.header.metric == Metric::Cosine {
            Metric::L2
        } else {
            state.header.metric
        };
        let params = VamanaParams {
            max_degree: NAV_R,
            build_l: NAV_BUILD_L,
            passes: 1,
            ..Default::default()
        };
        let graph = build_vamana(&vectors, dim, metric, &params, &NoProgress);
        Some(Navigation {
            slots,
            vectors,
            dim,
            metric,
            adjacency: graph.adjacency,
            medoid: graph.medoid,
        })
    }

    /// Sample nodes in the graph.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// RAM held, bytes (vectors, lists, slots).
    pub(crate) fn ram_bytes(&self) -> usize {
        self.vectors.len() * 4
            + self.slots.len() * 4
            + self
                .adjacency
                .iter()
                .map(|l| l.capacity() * 4 + 24)
                .sum::<usize>()
    }

    /// GreedySearch of the navigation graph for `query` (normalized already for cosine)
    /// with list size `l`; appends the slots of the list, closest first, to `out`.
    pub(crate) fn seeds(
        &self,
        query: &[f32],
        l: usize,
        scratch: &mut SearchScratch,
        out: &mut Vec<u32>,
    ) {
        debug_assert_eq!(query.len(), self.dim);
        greedy_search(
            &self.vectors,
            self.dim,
            self.metric,
            self.adjacency.as_slice(),
            self.medoid,
            query,
            l,
            scratch,
        );
        out.extend(
            scratch
                .queue
                .items()
                .iter()
                .map(|c| self.slots[c.id as usize]),
        );
    }
}
