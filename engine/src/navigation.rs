//! In-memory navigation graph for entry points (Starling, SIGMOD 2024, §4.2; PipeANN, OSDI
//! 2025): a small Vamana graph over a sample of the index's nodes, held in RAM and searched
//! before the disk beam search, so that the beam search starts from the sample nodes nearest
//! the query instead of from the one medoid — the first hops of a search from the medoid
//! only walk towards the query's neighbourhood, and each costs W reads.
//!
//! Built at open when [`crate::OpenOptions::navigation_nodes`] > 0, from what is already in
//! RAM: the graph is built over the sample's PQ reconstructions (no read of the sector file,
//! no extra file), then only the sample's PQ codes and lists are kept, and the search scores
//! nodes by ADC from the query's table (which the beam search computes anyway) — equal to
//! the distance to the reconstruction. RAM: `s × (M + ~4·NAV_R + 28)` bytes for s sample
//! nodes. A sample node freed by a later merge is skipped as a seed (a state's labels never
//! change, so this is a guard); a reused slot is still a valid node, only a worse seed.

use ssdann_builder::greedy_search::VisitedSet;
use ssdann_builder::neighbor_queue::NeighborQueue;
use ssdann_builder::progress::NoProgress;
use ssdann_builder::vamana::{build_vamana, VamanaParams};
use ssdann_layout::labels::SlotLabels;
use ssdann_layout::pq::{pq_distance, PQ_CENTROIDS};
use ssdann_layout::Metric;
use ssdann_layout::{IndexHeader, PqCodebook};

/// Degree R of the navigation graph.
pub const NAV_R: usize = 32;
/// Build list size L of the navigation graph.
const NAV_BUILD_L: usize = 64;

/// The navigation graph: sample slots, their PQ codes (s × M) and a Vamana graph over them
/// (ids 0..s index `slots`).
pub(crate) struct Navigation {
    slots: Vec<u32>,
    codes: Vec<u8>,
    m: usize,
    adjacency: Vec<Vec<u32>>,
    medoid: u32,
}

/// A search thread's state for [`Navigation::seeds`].
#[derive(Default)]
pub(crate) struct NavScratch {
    queue: NeighborQueue,
    visited: VisitedSet,
}

impl Navigation {
    /// Samples up to `count` live slots of an index state (its header, PQ codebook, n × M
    /// codes and labels) at an even stride and builds the graph (in the current rayon
    /// pool). `None` when the index has no live slot.
    pub(crate) fn build(
        header: &IndexHeader,
        pq: &PqCodebook,
        all_codes: &[u8],
        labels: &SlotLabels,
        count: usize,
    ) -> Option<Navigation> {
        let n = header.n_slots as usize;
        let live = header.live_count as usize;
        let count = count.min(live);
        if count == 0 {
            return None;
        }
        let dim = header.dim as usize;
        let m = pq.m();
        // An even stride over the slots, skipping free ones (at most n − live of them).
        let stride = (n / count).max(1);
        let mut slots = Vec::with_capacity(count);
        let mut s = 0;
        while slots.len() < count && s < n {
            if !labels.is_free(s) {
                slots.push(s as u32);
                s += stride;
            } else {
                s += 1;
            }
        }
        let mut codes = Vec::with_capacity(slots.len() * m);
        for &slot in &slots {
            codes.extend_from_slice(&all_codes[slot as usize * m..(slot as usize + 1) * m]);
        }
        // The reconstructions, only while the graph is built.
        let mut vectors = vec![0f32; slots.len() * dim];
        for (row, code) in vectors.chunks_exact_mut(dim).zip(codes.chunks_exact(m)) {
            pq.decode(code, row);
        }
        // Cosine indexes store unit vectors and search them in L2 (as the build does).
        let metric = if header.metric == Metric::Cosine {
            Metric::L2
        } else {
            header.metric
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
            codes,
            m,
            adjacency: graph.adjacency,
            medoid: graph.medoid,
        })
    }

    /// Sample nodes in the graph.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// RAM held, bytes (codes, lists, slots).
    pub(crate) fn ram_bytes(&self) -> usize {
        self.codes.len()
            + self.slots.len() * 4
            + self
                .adjacency
                .iter()
                .map(|l| l.capacity() * 4 + 24)
                .sum::<usize>()
    }

    /// GreedySearch of the navigation graph with list size `l`, nodes scored by ADC from
    /// `table` (the query's M × 256 table, as the beam search uses); appends the slots of
    /// the list, closest first, to `out`.
    pub(crate) fn seeds(
        &self,
        table: &[f32],
        l: usize,
        scratch: &mut NavScratch,
        out: &mut Vec<u32>,
    ) {
        let m = self.m;
        assert_eq!(
            table.len(),
            m * PQ_CENTROIDS,
            "navigation: not an M × 256 ADC table"
        );
        let adc = |i: u32| pq_distance(table, &self.codes[i as usize * m..(i as usize + 1) * m]);
        let NavScratch { queue, visited } = scratch;
        queue.reset(l.max(1));
        visited.reset(self.slots.len());
        visited.insert(self.medoid);
        queue.insert(self.medoid, adc(self.medoid));
        while let Some(c) = queue.pop_unexpanded() {
            for &nb in &self.adjacency[c.id as usize] {
                if visited.insert(nb) {
                    queue.insert(nb, adc(nb));
                }
            }
        }
        out.extend(queue.items().iter().map(|c| self.slots[c.id as usize]));
    }
}
