//! Helpers shared by the partitioned build's tests: generated inputs, budgets, file lists.

#![allow(clippy::unwrap_used, dead_code)] // tests: a failed unwrap is a failed test

use ssdann_builder::partitioned::budget::FIXED_BYTES;
use ssdann_builder::synthetic::clustered;
use ssdann_builder::BuildParams;
use ssdann_layout::dataset::write_bin;
use ssdann_layout::Metric;
use std::path::{Path, PathBuf};

/// Build parameters for tests: degree `r`, L = 2R, 8 PQ bytes, no sector reordering.
pub fn params(r: usize, metric: Metric) -> BuildParams {
    BuildParams {
        metric,
        max_degree: r,
        build_l: 2 * r,
        pq_bytes: Some(8),
        reorder: false,
        // plain records on both paths: these tests compare the one-shot and the budgeted
        // build's graphs and read their f32 vectors back (the budgeted build writes plain
        // records; the one-shot default would choose neighbour codes + f16 at d = 32, R = 24)
        max_index_growth: 1.0,
        ..Default::default()
    }
}

/// The budget model's RAM per point of a partition's Vamana build (budget.rs): the graph row,
/// ≈ 8 R of list, a 64-byte node + 16 of allocator header, the id map, and a visited bit for
/// each of 16 threads.
pub fn vamana_per_point(row_bytes: u64, r: usize) -> u64 {
    row_bytes + 8 * r as u64 + 80 + 4 + 2
}

/// A budget whose partitions hold at most `cap` points of `per_point` bytes each.
pub fn budget_for(cap: usize, per_point: u64) -> u64 {
    FIXED_BYTES + (cap as u64 * per_point) * 10 / 7 + 1
}

/// Writes `n` clustered d-dimensional f32 points to `dir/name`: (path, base, queries).
pub fn write_f32(
    dir: &Path,
    name: &str,
    n: usize,
    d: usize,
    seed: u64,
) -> (PathBuf, Vec<f32>, Vec<f32>) {
    let (base, q) = clustered(n, 100, d, 24, seed);
    let path = dir.join(name);
    write_bin(&path, n, d, &base).unwrap();
    (path, base, q)
}

/// Every file of `dir`, sorted by name: (name, bytes).
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}
