//! The Vamana graph build (DiskANN, NeurIPS 2019, Algorithm 3).
//!
//! Entry point: the medoid (the point closest to the mean). Two passes over all points in a
//! random order, the first with α = 1 and the second with the build α: for each point p,
//! GreedySearch from the medoid with list size L gives the expanded set V; RobustPrune over
//! V ∪ N_out(p) sets p's out-neighbours; every new neighbour j gets the back-edge j → p, and
//! when j's list overflows (more than `slack × R`, as in DiskANN's GRAPH_SLACK_FACTOR) it is
//! RobustPruned back to R. A last step prunes every list still longer than R.
//!
//! # Parallelism
//! Points are inserted in parallel (rayon, the caller's pool). Each adjacency list has its
//! own mutex, held only to copy a list out or write one back; there is no global lock.

use crate::greedy_search::{greedy_search, GraphView, SearchScratch};
use crate::progress::{Phase, Progress};
use crate::robust_prune::{robust_prune, saturate, PruneScratch, DEFAULT_MAX_CANDIDATES};
use parking_lot::Mutex;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use ssdann_layout::{Metric, Vector};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// Parameters of a Vamana build.
#[derive(Clone, Debug)]
pub struct VamanaParams {
    /// Maximum out-degree R.
    pub max_degree: usize,
    /// Build list size L (≥ R recommended).
    pub build_l: usize,
    /// α of the second pass (the first uses 1.0).
    pub alpha: f32,
    /// Overflow allowance before a back-edge triggers a prune (DiskANN uses 1.3).
    pub slack: f32,
    /// Largest RobustPrune candidate pool.
    pub max_candidates: usize,
    /// Seed of the insertion order.
    pub seed: u64,
    /// Passes over the points: 2 (α = 1, then the build α; the paper's Alg. 3) or 1 (the
    /// build α only, as DiskANN's later releases do: 70–80% of the two-pass build's time,
    /// measured in docs/PERFORMANCE.md).
    pub passes: usize,
    /// Graph saturation ([`crate::robust_prune::saturate`]): every RobustPrune of a pass
    /// with α > 1 fills the list up to R with the candidates α covered. Default false.
    pub saturate: bool,
}

impl Default for VamanaParams {
    fn default() -> Self {
        VamanaParams {
            max_degree: 64,
            build_l: 100,
            alpha: 1.2,
            slack: 1.3,
            max_candidates: DEFAULT_MAX_CANDIDATES,
            seed: 0x5eed,
            passes: 2,
            saturate: false,
        }
    }
}

/// A built graph: adjacency lists (each ≤ R, no self-loops, ids < n) and the entry point.
#[derive(Clone, Debug)]
pub struct Graph {
    /// Out-neighbours of each node.
    pub adjacency: Vec<Vec<u32>>,
    /// The medoid: entry point of every search.
    pub medoid: u32,
    /// Wall time of pass 1 and pass 2 (the final cleanup counts in pass 2).
    pub pass_times: [std::time::Duration; 2],
}

impl Graph {
    /// Mean out-degree.
    pub fn mean_degree(&self) -> f64 {
        self.adjacency.iter().map(Vec::len).sum::<usize>() as f64
            / self.adjacency.len().max(1) as f64
    }
}

/// One node's adjacency during the build: its list under a lock, and the address of the
/// list's heap block published beside it, so a search can prefetch the list of the node it
/// will expand next without taking the lock (a stale address only wastes the prefetch). One
/// cache line per node: the lock, the list header and the address arrive together.
#[repr(align(64))]
struct Node {
    list: Mutex<Vec<u32>>,
    head: AtomicPtr<u32>,
}

struct LockedGraph(Vec<Node>);

impl LockedGraph {
    fn new(n: usize) -> Self {
        LockedGraph(
            (0..n)
                .map(|_| Node {
                    list: Mutex::new(Vec::new()),
                    head: AtomicPtr::new(std::ptr::null_mut()),
                })
                .collect(),
        )
    }
    /// Locks node `id`'s list; [`Self::publish`] after changing it.
    fn lock(&self, id: u32) -> parking_lot::MutexGuard<'_, Vec<u32>> {
        self.0[id as usize].list.lock()
    }
    /// Records where node `id`'s list now lives (call with the lock held, after a write).
    fn publish(&self, id: u32, list: &[u32]) {
        self.0[id as usize]
            .head
            .store(list.as_ptr().cast_mut(), Ordering::Relaxed);
    }
}

impl GraphView for LockedGraph {
    #[inline]
    fn neighbors_into(&self, id: u32, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.lock(id));
    }
    #[inline]
    fn prefetch(&self, id: u32) {
        ssdann_layout::distance::prefetch(std::slice::from_ref(&self.0[id as usize]), 1);
    }
    #[inline]
    fn prefetch_list(&self, id: u32) {
        let head = self.0[id as usize].head.load(Ordering::Relaxed);
        // A list of R = 64 ids spans four lines; the first two cover most lists' first use.
        ssdann_layout::distance::prefetch_addr(head.cast_const().cast(), 2);
    }
}

/// The point nearest to the mean of `data` (n × d): DiskANN's entry point.
pub fn medoid<T: Vector>(data: &[T], dim: usize, metric: Metric) -> u32 {
    let n = data.len() / dim;
    let sum = data
        .par_chunks(dim * 4096)
        .map(|block| {
            let mut s = vec![0f64; dim];
            for row in block.chunks_exact(dim) {
                s.iter_mut()
                    .zip(row)
                    .for_each(|(a, &x)| *a += f64::from(x.to_f32()));
            }
            s
        })
        .reduce(
            || vec![0f64; dim],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let mean: Vec<f32> = sum.iter().map(|&s| (s / n as f64) as f32).collect();
    let _ = metric; // the medoid is taken in L2 for every metric, as DiskANN does
    let (_, best) = data
        .par_chunks(dim)
        .enumerate()
        .map(|(i, row)| {
            let d: f32 = row
                .iter()
                .zip(&mean)
                .map(|(&x, &m)| (x.to_f32() - m) * (x.to_f32() - m))
                .sum();
            (d, i as u32)
        })
        .reduce(
            || (f32::INFINITY, 0),
            |a, b| if (b.0, b.1) < (a.0, a.1) { b } else { a },
        );
    best
}

struct Worker {
    search: SearchScratch,
    prune: PruneScratch,
    out: Vec<u32>,
    nbrs: Vec<u32>,
}

/// Builds a Vamana graph over `data` (n × d row-major) in the current rayon pool.
///
/// # Panics
/// If `data.len()` is not a multiple of `dim`, or n ≥ 2³² (callers validate both).
pub fn build_vamana<T: Vector>(
    data: &[T],
    dim: usize,
    metric: Metric,
    params: &VamanaParams,
    progress: &dyn Progress,
) -> Graph {
    assert!(
        dim > 0 && data.len().is_multiple_of(dim),
        "data is not n × d"
    );
    let n = data.len() / dim;
    assert!(n < u32::MAX as usize, "n must fit in u32");
    let medoid = medoid(data, dim, metric);
    let r = params.max_degree;
    let slack_r = ((r as f32 * params.slack).ceil() as usize).max(r);
    let graph = LockedGraph::new(n);
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(params.seed);
    let vec_of = |id: u32| &data[id as usize * dim..(id as usize + 1) * dim];

    let mut pass_times = [std::time::Duration::ZERO; 2];
    let mut t = std::time::Instant::now();
    let schedule: &[(Phase, f32)] = if params.passes == 1 {
        &[(Phase::VamanaPass2, params.alpha)]
    } else {
        &[
            (Phase::VamanaPass1, 1.0f32),
            (Phase::VamanaPass2, params.alpha),
        ]
    };
    for &(pass, alpha) in schedule {
        if pass == Phase::VamanaPass2 && params.passes != 1 {
            pass_times[0] = t.elapsed();
            t = std::time::Instant::now();
        }
        order.shuffle(&mut rng);
        let saturating = params.saturate && alpha > 1.0;
        // RobustPrune of node u's candidate pool to R (α of this pass), then saturated to R
        // in pass 2 when asked for.
        let prune_to_r = |u: u32, prune: &mut PruneScratch, out: &mut Vec<u32>| {
            robust_prune(
                data,
                dim,
                metric,
                u,
                alpha,
                r,
                params.max_candidates,
                prune,
                out,
            );
            if saturating {
                saturate(prune, r, out);
            }
        };
        progress.start(pass, n as u64);
        let done = AtomicU64::new(0);
        order.par_iter().with_min_len(64).for_each_init(
            || Worker {
                search: SearchScratch::new(n),
                prune: PruneScratch::default(),
                out: Vec::new(),
                nbrs: Vec::new(),
            },
            |w, &p| {
                let xp = vec_of(p);
                greedy_search(
                    data,
                    dim,
                    metric,
                    &graph,
                    medoid,
                    xp,
                    params.build_l,
                    &mut w.search,
                );
                w.prune.pool.clear();
                w.prune.pool.extend(w.search.expanded.iter().copied());
                graph.neighbors_into(p, &mut w.nbrs);
                for &nb in &w.nbrs {
                    w.prune.pool.push((T::distance(metric, xp, vec_of(nb)), nb));
                }
                prune_to_r(p, &mut w.prune, &mut w.out);
                {
                    let mut mine = graph.lock(p);
                    mine.clear();
                    mine.extend_from_slice(&w.out);
                    graph.publish(p, &mine);
                }
                for &j in &w.out {
                    let mut list = graph.lock(j);
                    if list.contains(&p) {
                        continue;
                    }
                    if list.len() < slack_r {
                        list.push(p);
                        graph.publish(j, &list);
                        continue;
                    }
                    let xj = vec_of(j);
                    w.prune.pool.clear();
                    w.prune.pool.push((T::distance(metric, xj, xp), p));
                    for &nb in list.iter() {
                        w.prune.pool.push((T::distance(metric, xj, vec_of(nb)), nb));
                    }
                    prune_to_r(j, &mut w.prune, &mut w.nbrs);
                    list.clear();
                    list.extend_from_slice(&w.nbrs);
                    graph.publish(j, &list);
                }
                let k = done.fetch_add(1, Ordering::Relaxed) + 1;
                if k.is_multiple_of(1024) {
                    progress.advance(1024);
                }
            },
        );
        progress.advance(done.load(Ordering::Relaxed) % 1024);
        progress.finish();
    }

    // Final cleanup: lists that grew past R through back-edges are pruned to R.
    let alpha = params.alpha;
    let adjacency: Vec<Vec<u32>> = graph
        .0
        .into_par_iter()
        .enumerate()
        .map_init(PruneScratch::default, |prune, (j, node)| {
            let mut list = node.list.into_inner();
            if list.len() > r {
                let xj = vec_of(j as u32);
                prune.pool.clear();
                prune.pool.extend(
                    list.iter()
                        .map(|&nb| (T::distance(metric, xj, vec_of(nb)), nb)),
                );
                let mut out = Vec::with_capacity(r);
                robust_prune(
                    data,
                    dim,
                    metric,
                    j as u32,
                    alpha,
                    r,
                    params.max_candidates,
                    prune,
                    &mut out,
                );
                if params.saturate && alpha > 1.0 {
                    saturate(prune, r, &mut out);
                }
                list = out;
            }
            list.shrink_to_fit();
            list
        })
        .collect();
    pass_times[1] = t.elapsed();
    Graph {
        adjacency,
        medoid,
        pass_times,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use rand::Rng;

    #[test]
    fn small_random_graph_is_valid_and_searchable() {
        let (n, d) = (2000usize, 16usize);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let data: Vec<f32> = (0..n * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let params = VamanaParams {
            max_degree: 16,
            build_l: 40,
            ..Default::default()
        };
        let g = build_vamana(&data, d, Metric::L2, &params, &NoProgress);
        for (i, l) in g.adjacency.iter().enumerate() {
            assert!(l.len() <= 16, "degree");
            assert!(!l.contains(&(i as u32)), "self loop");
            assert!(l.iter().all(|&x| (x as usize) < n));
        }
        assert!(g.mean_degree() > 8.0, "mean degree {}", g.mean_degree());
        // every point finds itself
        let mut s = SearchScratch::new(n);
        let mut hits = 0;
        for p in (0..n).step_by(20) {
            greedy_search(
                &data,
                d,
                Metric::L2,
                &g.adjacency,
                g.medoid,
                &data[p * d..(p + 1) * d],
                20,
                &mut s,
            );
            hits += usize::from(s.queue.items()[0].id == p as u32);
        }
        assert!(hits >= 98, "self-recall {hits}/100");
    }

    #[test]
    fn a_saturated_graph_fills_every_list_to_r_with_no_duplicate_or_self_edge() {
        // low-dimensional data: the α rule prunes lists well below R
        let (n, d, r) = (3000usize, 4usize, 24usize);
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let data: Vec<f32> = (0..n * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let params = VamanaParams {
            max_degree: r,
            build_l: 48,
            ..Default::default()
        };
        let plain = build_vamana(&data, d, Metric::L2, &params, &NoProgress);
        let saturated = build_vamana(
            &data,
            d,
            Metric::L2,
            &VamanaParams {
                saturate: true,
                ..params
            },
            &NoProgress,
        );
        assert!(
            plain.mean_degree() < 0.8 * r as f64,
            "pruned lists: mean degree {}",
            plain.mean_degree()
        );
        for (i, l) in saturated.adjacency.iter().enumerate() {
            assert_eq!(l.len(), r, "node {i}");
            assert!(!l.contains(&(i as u32)), "self loop at {i}");
            let mut u = l.clone();
            u.sort_unstable();
            u.dedup();
            assert_eq!(u.len(), r, "duplicate edge at {i}");
        }
    }
}
