//! The in-memory delta index of FreshDiskANN (Singh et al. 2021, §3–4): inserted points at
//! full precision in a Vamana graph of their own, built incrementally with the builder's
//! GreedySearch and RobustPrune (one insertion = DiskANN Alg. 3's inner step), plus deletes
//! as tombstones that stay usable for navigation until a merge removes them.
//!
//! Inner product: the graph is built and searched on MIPS-to-L2 augmented vectors
//! `[x, sqrt(M² − ‖x‖²)]` with M the largest norm inserted so far (Bachrach et al., RecSys
//! 2014; the SSD build does the same), queried with `[q, 0]`: squared L2 there is
//! `‖q‖² + M² − 2 q·x`, which ranks exactly as −q·x, and RobustPrune's α rule gets a true
//! metric. A new largest norm re-augments the stored vectors (one coordinate each).
//!
//! Memory: d × 4 bytes per point (+ 8 for inner product) + its adjacency (≤ R ids, ~slack × R
//! before pruning) + a label map entry.

use ssdann_builder::greedy_search::{greedy_search, SearchScratch};
use ssdann_builder::robust_prune::{robust_prune, PruneScratch, DEFAULT_MAX_CANDIDATES};
use ssdann_layout::distance::normalize;
use ssdann_layout::Metric;
use std::collections::HashMap;

/// Graph parameters of the delta index (the build's R, L and α).
#[derive(Clone, Copy, Debug)]
pub struct DeltaParams {
    /// Maximum degree R.
    pub max_degree: usize,
    /// Insert list size L.
    pub build_l: usize,
    /// RobustPrune α.
    pub alpha: f32,
}

/// The delta index. `Clone` gives a merge a frozen copy (memory: the change set).
#[derive(Clone)]
pub struct DeltaIndex {
    dim: usize,
    /// Row length of `vectors`: d, or d + 1 for inner product (augmented).
    stride: usize,
    metric: Metric,
    /// The metric of the graph: squared L2 for inner product (augmented), else `metric`.
    graph_metric: Metric,
    /// Inner product: ‖x‖² of every point, and the largest (M²).
    norms_sq: Vec<f32>,
    max_norm_sq: f32,
    params: DeltaParams,
    /// n_delta × stride, normalized for cosine, augmented for inner product.
    vectors: Vec<f32>,
    labels: Vec<u64>,
    deleted: Vec<bool>,
    graph: Vec<Vec<u32>>,
    by_label: HashMap<u64, u32>,
    live: usize,
    /// Scratch of [`DeltaIndex::insert`] (the one-phase insert used by WAL replay).
    scratch: DeltaScratch,
    prune: PruneScratch,
    tmp: Vec<u32>,
}

/// Reusable buffers of [`DeltaIndex::plan_insert`].
#[derive(Clone, Default)]
pub struct DeltaScratch {
    search: SearchScratch,
    prune: PruneScratch,
    local: Vec<f32>,
    ids: Vec<u32>,
    out: Vec<u32>,
}

impl DeltaIndex {
    /// An empty delta index for `dim`-dimensional vectors.
    pub fn new(dim: usize, metric: Metric, params: DeltaParams) -> Self {
        let ip = metric == Metric::InnerProduct;
        DeltaIndex {
            dim,
            stride: if ip { dim + 1 } else { dim },
            metric,
            graph_metric: if ip { Metric::L2 } else { metric },
            norms_sq: Vec::new(),
            max_norm_sq: 0.0,
            params,
            vectors: Vec::new(),
            labels: Vec::new(),
            deleted: Vec::new(),
            graph: Vec::new(),
            by_label: HashMap::new(),
            live: 0,
            scratch: DeltaScratch::default(),
            prune: PruneScratch::default(),
            tmp: Vec::new(),
        }
    }

    /// Live (not deleted) points.
    pub fn live(&self) -> usize {
        self.live
    }
    /// Slots used, deleted ones included.
    pub fn slots(&self) -> usize {
        self.labels.len()
    }
    /// Whether `label` is live here.
    pub fn contains(&self, label: u64) -> bool {
        self.by_label.contains_key(&label)
    }
    /// Bytes of RAM held (vectors, labels, graph).
    pub fn memory_bytes(&self) -> usize {
        self.vectors.len() * 4
            + self.norms_sq.len() * 4
            + self.labels.len() * 9
            + self
                .graph
                .iter()
                .map(|l| l.capacity() * 4 + 24)
                .sum::<usize>()
            + self.by_label.len() * 16
    }
    /// The live points: (label, vector), in insertion order.
    pub fn live_points(&self) -> impl Iterator<Item = (u64, &[f32])> + '_ {
        (0..self.labels.len())
            .filter(|&i| !self.deleted[i])
            .map(|i| {
                (
                    self.labels[i],
                    &self.vectors[i * self.stride..i * self.stride + self.dim],
                )
            })
    }

    fn entry(&self) -> u32 {
        0
    }

    /// The stored row of `vector`: normalized for cosine, augmented for inner product with
    /// the largest norm so far (or its own, when larger).
    fn row(&self, vector: &[f32]) -> Vec<f32> {
        let mut x = vector.to_vec();
        if self.metric == Metric::Cosine {
            normalize(&mut x);
        }
        if self.metric == Metric::InnerProduct {
            let nsq: f32 = vector.iter().map(|v| v * v).sum();
            x.push((self.max_norm_sq.max(nsq) - nsq).max(0.0).sqrt());
        }
        x
    }

    /// Phase 1 of an insert, with shared access (searches may run at the same time): the
    /// new point's out-list — GreedySearch from the entry point with list size L, then
    /// RobustPrune (DiskANN Alg. 1 and 2) over the nodes it expanded. `vector` has length d
    /// and is finite (the caller validated it).
    pub fn plan_insert(&self, vector: &[f32], scratch: &mut DeltaScratch) -> Vec<u32> {
        let n = self.labels.len();
        if n == 0 {
            return Vec::new();
        }
        let p = self.params;
        let x = self.row(vector);
        greedy_search(
            &self.vectors,
            self.stride,
            self.graph_metric,
            &self.graph,
            self.entry(),
            &x,
            p.build_l,
            &mut scratch.search,
        );
        // RobustPrune over the candidates, with the new point as row n of a local matrix
        scratch.local.clear();
        scratch.ids.clear();
        for c in scratch.search.expanded.iter() {
            scratch.ids.push(c.1);
        }
        scratch.local.extend_from_slice(&x);
        for &id in &scratch.ids {
            let i = id as usize;
            scratch
                .local
                .extend_from_slice(&self.vectors[i * self.stride..(i + 1) * self.stride]);
        }
        scratch.prune.pool.clear();
        scratch.prune.pool.extend(
            scratch
                .search
                .expanded
                .iter()
                .enumerate()
                .map(|(k, &(dist, _))| (dist, k as u32 + 1)),
        );
        robust_prune(
            &scratch.local,
            self.stride,
            self.graph_metric,
            0,
            p.alpha,
            p.max_degree,
            DEFAULT_MAX_CANDIDATES,
            &mut scratch.prune,
            &mut scratch.out,
        );
        scratch
            .out
            .iter()
            .map(|&k| scratch.ids[k as usize - 1])
            .collect()
    }

    /// Phase 2 of an insert, with exclusive access: adds `vector` under `label` with the
    /// out-list `planned` from [`DeltaIndex::plan_insert`] (computed on this same graph: no
    /// insert may come between the two), and its back-edges (RobustPrune on overflow). An
    /// existing live `label` is deleted first (replace).
    pub fn apply_insert(&mut self, label: u64, vector: &[f32], planned: &[u32]) {
        self.delete(label);
        let d = self.stride;
        let id = self.labels.len() as u32;
        self.vectors.extend_from_slice(vector);
        if self.metric == Metric::Cosine {
            normalize(&mut self.vectors[id as usize * d..]);
        }
        if self.metric == Metric::InnerProduct {
            let nsq: f32 = vector.iter().map(|x| x * x).sum();
            if nsq > self.max_norm_sq {
                // a new largest norm: re-augment every stored point for the new M
                self.max_norm_sq = nsq;
                for (i, &n2) in self.norms_sq.iter().enumerate() {
                    self.vectors[i * d + self.dim] = (nsq - n2).max(0.0).sqrt();
                }
            }
            self.norms_sq.push(nsq);
            self.vectors.push((self.max_norm_sq - nsq).max(0.0).sqrt());
        }
        self.labels.push(label);
        self.deleted.push(false);
        self.graph.push(planned.to_vec());
        self.by_label.insert(label, id);
        self.live += 1;
        let p = self.params;
        let x = self.vectors[id as usize * d..(id as usize + 1) * d].to_vec();
        for &j in planned {
            let j = j as usize;
            if self.graph[j].contains(&id) {
                continue;
            }
            if self.graph[j].len() < p.max_degree {
                self.graph[j].push(id);
                continue;
            }
            let xj = &self.vectors[j * d..(j + 1) * d];
            self.prune.pool.clear();
            self.prune
                .pool
                .push((distance(self.graph_metric, xj, &x), id));
            for &nb in &self.graph[j] {
                self.prune.pool.push((
                    distance(
                        self.graph_metric,
                        xj,
                        &self.vectors[nb as usize * d..(nb as usize + 1) * d],
                    ),
                    nb,
                ));
            }
            robust_prune(
                &self.vectors,
                d,
                self.graph_metric,
                j as u32,
                p.alpha,
                p.max_degree,
                DEFAULT_MAX_CANDIDATES,
                &mut self.prune,
                &mut self.tmp,
            );
            self.graph[j].clone_from(&self.tmp);
        }
    }

    /// Inserts `vector` (length d, finite: the caller validated it) under `label`; an
    /// existing live `label` is deleted first (replace). [`DeltaIndex::plan_insert`] then
    /// [`DeltaIndex::apply_insert`].
    pub fn insert(&mut self, label: u64, vector: &[f32]) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let planned = self.plan_insert(vector, &mut scratch);
        self.apply_insert(label, vector, &planned);
        self.scratch = scratch;
    }

    /// Deletes `label` if it is live here (a tombstone: the point keeps navigating searches
    /// but is never returned). Returns whether it was.
    pub fn delete(&mut self, label: u64) -> bool {
        match self.by_label.remove(&label) {
            Some(id) => {
                self.deleted[id as usize] = true;
                self.live -= 1;
                true
            }
            None => false,
        }
    }

    /// The (distance, label) of up to `k` live points nearest `query` (length d, already
    /// normalized for cosine), by GreedySearch with list size `l`; distances are the ranking
    /// distances (squared L2, or the negated inner product). `query` may be extended in
    /// place (the augmented coordinate for inner product) and is restored before returning.
    pub fn search(
        &self,
        query: &mut Vec<f32>,
        k: usize,
        l: usize,
        scratch: &mut SearchScratch,
        out: &mut Vec<(f32, u64)>,
    ) {
        out.clear();
        if self.live == 0 {
            return;
        }
        let ip = self.metric == Metric::InnerProduct;
        if ip {
            query.push(0.0);
        }
        greedy_search(
            &self.vectors,
            self.stride,
            self.graph_metric,
            &self.graph,
            self.entry(),
            query,
            l.max(k),
            scratch,
        );
        if ip {
            query.pop();
        }
        let (d, s) = (self.dim, self.stride);
        out.extend(
            scratch
                .queue
                .items()
                .iter()
                .filter(|c| !self.deleted[c.id as usize])
                .take(k)
                .map(|c| {
                    let i = c.id as usize;
                    let dist = if ip {
                        -ssdann_layout::distance::dot_f32(query, &self.vectors[i * s..i * s + d])
                    } else {
                        c.dist
                    };
                    (dist, self.labels[i])
                }),
        );
    }
}

fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    <f32 as ssdann_layout::Vector>::distance(metric, a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_graph_finds_neighbours_and_honours_tombstones() {
        let (n, d) = (1500usize, 24usize);
        let (base, queries) = ssdann_builder::synthetic::clustered(n, 40, d, 10, 5);
        let mut delta = DeltaIndex::new(
            d,
            Metric::L2,
            DeltaParams {
                max_degree: 24,
                build_l: 48,
                alpha: 1.2,
            },
        );
        for (i, v) in base.chunks_exact(d).enumerate() {
            delta.insert(1000 + i as u64, v);
        }
        assert_eq!(delta.live(), n);
        let gt = ssdann_builder::ground_truth::exact_knn(&queries, &base, d, Metric::L2, 10);
        let mut scratch = SearchScratch::default();
        let mut out = Vec::new();
        let mut hits = 0;
        for (qi, q) in queries.chunks_exact(d).enumerate() {
            delta.search(&mut q.to_vec(), 10, 48, &mut scratch, &mut out);
            let truth: Vec<u64> = gt[qi].iter().map(|e| 1000 + u64::from(e.1)).collect();
            hits += out.iter().filter(|(_, l)| truth.contains(l)).count();
        }
        assert!(
            hits as f64 / 400.0 >= 0.95,
            "delta recall {}",
            hits as f64 / 400.0
        );
        // deleted labels are never returned; re-inserting a label replaces it
        let q = &base[..d];
        delta.search(&mut q.to_vec(), 1, 48, &mut scratch, &mut out);
        assert_eq!(out[0].1, 1000);
        assert!(delta.delete(1000));
        assert!(!delta.delete(1000));
        delta.search(&mut q.to_vec(), 10, 48, &mut scratch, &mut out);
        assert!(out.iter().all(|&(_, l)| l != 1000));
        let mut moved: Vec<f32> = base[d..2 * d].to_vec();
        delta.insert(1000, &moved);
        delta.search(&mut moved, 2, 48, &mut scratch, &mut out);
        assert!(out.iter().any(|&(dist, l)| l == 1000 && dist < 1e-6));
        assert_eq!(delta.live(), n);
        assert_eq!(delta.live_points().filter(|(l, _)| *l == 1000).count(), 1);
    }

    #[test]
    fn inner_product_delta_ranks_by_the_exact_inner_product() {
        // varied norms (the case where −dot is not a metric and MIPS-to-L2 matters), in an
        // order whose norms grow, so that M is raised and the points re-augmented many times
        let (n, d) = (1200usize, 16usize);
        let (mut base, queries) = ssdann_builder::synthetic::clustered(n, 30, d, 8, 9);
        for (i, v) in base.chunks_exact_mut(d).enumerate() {
            let scale = 0.5 + 2.0 * i as f32 / n as f32;
            v.iter_mut().for_each(|x| *x *= scale);
        }
        let mut delta = DeltaIndex::new(
            d,
            Metric::InnerProduct,
            DeltaParams {
                max_degree: 24,
                build_l: 64,
                alpha: 1.2,
            },
        );
        for (i, v) in base.chunks_exact(d).enumerate() {
            delta.insert(i as u64, v);
        }
        assert_eq!(delta.live_points().next().map(|(_, v)| v.len()), Some(d));
        let gt =
            ssdann_builder::ground_truth::exact_knn(&queries, &base, d, Metric::InnerProduct, 10);
        let (mut scratch, mut out) = (SearchScratch::default(), Vec::new());
        let mut hits = 0;
        for (qi, q) in queries.chunks_exact(d).enumerate() {
            let mut qv = q.to_vec();
            delta.search(&mut qv, 10, 64, &mut scratch, &mut out);
            assert_eq!(qv.len(), d, "the query is restored");
            for w in out.windows(2) {
                assert!(w[0].0 <= w[1].0, "results not ordered by −dot: {out:?}");
            }
            for &(dist, l) in &out {
                let v = &base[l as usize * d..(l as usize + 1) * d];
                let exact = -ssdann_layout::distance::scalar::dot_f32(q, v);
                assert!(
                    (dist - exact).abs() <= 1e-3 * exact.abs().max(1.0),
                    "label {l}: {dist} vs −dot {exact}"
                );
            }
            let truth: Vec<u64> = gt[qi].iter().map(|e| u64::from(e.1)).collect();
            hits += out.iter().filter(|(_, l)| truth.contains(l)).count();
        }
        let recall = hits as f64 / 300.0;
        assert!(recall >= 0.95, "inner-product delta recall@10 {recall}");
    }
}
