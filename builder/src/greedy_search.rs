//! GreedySearch over an in-memory graph with full-precision vectors (DiskANN, NeurIPS 2019,
//! Algorithm 1): start at the entry point, repeatedly expand the closest unexpanded
//! candidate of a list of size L, and stop when all L are expanded. Returns the list (the
//! approximate nearest neighbours) and the expanded set V (the candidates RobustPrune uses).

use crate::neighbor_queue::NeighborQueue;
use ssdann_layout::{Metric, Vector};

/// How many candidates ahead the search prefetches vectors.
const PREFETCH_AHEAD: usize = 4;
/// Cache lines prefetched per vector (a 384-d f32 vector is 24 lines).
const PREFETCH_LINES: usize = 32;

/// Read access to adjacency lists during a search (locked graph during build, plain lists
/// after).
pub trait GraphView: Sync {
    /// Appends the out-neighbours of `id` to `out` (after clearing it).
    fn neighbors_into(&self, id: u32, out: &mut Vec<u32>);
    /// A hint that `id`'s list will be read soon: fetch what locates it (a cache prefetch);
    /// no effect by default.
    #[inline]
    fn prefetch(&self, _id: u32) {}
    /// The second step of the hint, some work after [`GraphView::prefetch`]: fetch the
    /// list itself. No effect by default.
    #[inline]
    fn prefetch_list(&self, _id: u32) {}
}

impl GraphView for [Vec<u32>] {
    fn neighbors_into(&self, id: u32, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self[id as usize]);
    }
}

impl GraphView for Vec<Vec<u32>> {
    fn neighbors_into(&self, id: u32, out: &mut Vec<u32>) {
        self.as_slice().neighbors_into(id, out)
    }
}

/// A visited set over ids `0..n`: one bit per id (n/8 bytes, so it stays in cache where a
/// 4-byte stamp per id would not: 25 KB instead of 800 KB at n = 200K), reset by clearing
/// only the words of the ids marked since the last reset (O(visited), not O(n)).
#[derive(Clone, Debug, Default)]
pub struct VisitedSet {
    bits: Vec<u64>,
    touched: Vec<u32>,
}

impl VisitedSet {
    /// A set for ids `0..n`.
    pub fn new(n: usize) -> Self {
        VisitedSet {
            bits: vec![0; n.div_ceil(64)],
            touched: Vec::new(),
        }
    }
    /// Forgets every id; grows to `n` ids if needed.
    pub fn reset(&mut self, n: usize) {
        for &id in &self.touched {
            self.bits[id as usize >> 6] = 0;
        }
        self.touched.clear();
        if self.bits.len() < n.div_ceil(64) {
            self.bits.resize(n.div_ceil(64), 0);
        }
    }
    /// Marks `id`; returns true if it was not marked before.
    #[inline]
    pub fn insert(&mut self, id: u32) -> bool {
        let word = &mut self.bits[id as usize >> 6];
        let bit = 1u64 << (id & 63);
        if *word & bit != 0 {
            false
        } else {
            *word |= bit;
            self.touched.push(id);
            true
        }
    }
}

/// Reusable per-thread state of [`greedy_search`]: no allocation per search once warm.
#[derive(Clone, Debug, Default)]
pub struct SearchScratch {
    /// The candidate list L.
    pub queue: NeighborQueue,
    /// Visited ids.
    pub visited: VisitedSet,
    /// Expanded nodes V with their distance to the query, in expansion order.
    pub expanded: Vec<(f32, u32)>,
    nbrs: Vec<u32>,
    fresh: Vec<u32>,
}

impl SearchScratch {
    /// Scratch for graphs of up to `n` nodes.
    pub fn new(n: usize) -> Self {
        SearchScratch {
            visited: VisitedSet::new(n),
            ..Default::default()
        }
    }
}

/// GreedySearch (Alg. 1) for `query` (length d) over `graph`, whose node `i` has the vector
/// `data[i·d .. (i+1)·d]` (`data` is n × d row-major), from `start`, with list size `l`.
///
/// On return `scratch.queue` holds the best `l` nodes by exact distance (closest first) and
/// `scratch.expanded` the expanded set V. Distances are squared L2 for L2/cosine and the
/// negated inner product for IP.
///
/// # Allocates
/// Only when the scratch grows (first use, larger L or n).
#[allow(clippy::too_many_arguments)]
pub fn greedy_search<T: Vector, G: GraphView + ?Sized>(
    data: &[T],
    dim: usize,
    metric: Metric,
    graph: &G,
    start: u32,
    query: &[T],
    l: usize,
    scratch: &mut SearchScratch,
) {
    let n = data.len() / dim;
    scratch.queue.reset(l.max(1));
    scratch.visited.reset(n);
    scratch.expanded.clear();
    let vec_of = |id: u32| &data[id as usize * dim..(id as usize + 1) * dim];
    scratch.visited.insert(start);
    scratch
        .queue
        .insert(start, T::distance(metric, query, vec_of(start)));
    while let Some(c) = scratch.queue.pop_unexpanded() {
        // The next expansion is most often the next unexpanded candidate: start fetching its
        // list now, while this node's neighbours are scored.
        let next = scratch.queue.peek_unexpanded();
        if let Some(next) = next {
            graph.prefetch(next);
        }
        scratch.expanded.push((c.dist, c.id));
        graph.neighbors_into(c.id, &mut scratch.nbrs);
        scratch.fresh.clear();
        for &nb in &scratch.nbrs {
            if scratch.visited.insert(nb) {
                scratch.fresh.push(nb);
            }
        }
        // Software pipelining: prefetch the vector PREFETCH_AHEAD ids ahead of the one whose
        // distance is computed (vectors are random accesses into a large array).
        for &nb in scratch.fresh.iter().take(PREFETCH_AHEAD) {
            ssdann_layout::distance::prefetch(vec_of(nb), PREFETCH_LINES);
        }
        let half = scratch.fresh.len() / 2;
        for (k, &nb) in scratch.fresh.iter().enumerate() {
            if k == half {
                if let Some(next) = next {
                    graph.prefetch_list(next);
                }
            }
            if let Some(&ahead) = scratch.fresh.get(k + PREFETCH_AHEAD) {
                ssdann_layout::distance::prefetch(vec_of(ahead), PREFETCH_LINES);
            }
            // Early abandon (exact): a candidate whose partial squared L2 already exceeds the
            // worst of a full list can never enter it.
            let d = if metric.uses_l2() {
                T::l2_sq_bounded(query, vec_of(nb), scratch.queue.admission_bound())
            } else {
                T::distance(metric, query, vec_of(nb))
            };
            scratch.queue.insert(nb, d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exact_neighbours_on_a_line_graph() {
        // points 0..50 on a line, each linked to its two neighbours: greedy walks to the query.
        let data: Vec<f32> = (0..50).map(|i| i as f32).collect();
        let graph: Vec<Vec<u32>> = (0..50u32)
            .map(|i| {
                [i.checked_sub(1), (i + 1 < 50).then_some(i + 1)]
                    .into_iter()
                    .flatten()
                    .collect()
            })
            .collect();
        let mut s = SearchScratch::new(50);
        greedy_search(&data, 1, Metric::L2, &graph, 0, &[37.2f32], 3, &mut s);
        let ids: Vec<u32> = s.queue.items().iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![37, 38, 36]);
        assert!(s.expanded.iter().any(|&(_, id)| id == 37));
        let mut v = VisitedSet::new(4);
        assert!(v.insert(3) && !v.insert(3));
        v.reset(4);
        assert!(v.insert(3));
        // ids in one word and across words, then growth: a reset forgets all of them
        let mut v = VisitedSet::new(130);
        for id in [0, 5, 63, 64, 129] {
            assert!(v.insert(id) && !v.insert(id), "{id}");
        }
        v.reset(300);
        for id in [0, 5, 63, 64, 129, 299] {
            assert!(v.insert(id), "{id} after reset");
        }
    }
}
