//! The navigation graph of entry points (Starling, SIGMOD 2024, §4.2; PipeANN, OSDI 2025):
//! a small Vamana graph over an even-stride sample of the index's nodes, built over their PQ
//! reconstructions, searched in RAM before the disk beam search so that it starts near the
//! query instead of at the one medoid (each hop from the medoid costs W reads).
//!
//! The builder writes it once into `navigation.bin` ([`ssdann_layout::navigation`]) after the
//! PQ codes, on every build path (one-shot, memory-budgeted, staged); the engine loads it at
//! open, and builds one in RAM only for an index written before the file existed.
//!
//! Size: [`default_nodes`] — 5% of the points, at least [`MIN_NAV_NODES`] (or all of them),
//! at most [`MAX_NAV_NODES`]. RAM at search time ≈ s × (M + 4 + 4·[`NAV_R`]) bytes, about a
//! fifth of the PQ codes' at M = 48 (measured in docs/PERFORMANCE.md: 0.85–0.92× the reads
//! at recall 0.95–0.98 on 384-d f32, 0.60× on 128-d u8).

use crate::progress::NoProgress;
use crate::vamana::{build_vamana, VamanaParams};
use crate::Result;
use ssdann_layout::blob::BlobReader;
use ssdann_layout::navigation::{NavigationGraph, NAVIGATION_FILE};
use ssdann_layout::pq::{PQ_CODES_MAGIC, PQ_FILE_VERSION};
use ssdann_layout::storage::StorageRef;
use ssdann_layout::{LayoutError, Metric, PqCodebook};
use std::path::Path;

/// Degree R of the navigation graph.
pub const NAV_R: usize = 32;
/// Build list size L of the navigation graph.
const NAV_BUILD_L: usize = 64;
/// Fewest sample nodes a default navigation graph has (all points when fewer).
pub const MIN_NAV_NODES: usize = 256;
/// Most sample nodes a default navigation graph has.
pub const MAX_NAV_NODES: usize = 1 << 20;

/// The default sample size for `n` points: n / 20, clamped to
/// [`MIN_NAV_NODES`]..=[`MAX_NAV_NODES`] and to n.
pub fn default_nodes(n: usize) -> usize {
    (n / 20).clamp(MIN_NAV_NODES, MAX_NAV_NODES).min(n)
}

/// Peak RAM of building a graph of `s` nodes of dimension `dim`, bytes: the f32
/// reconstructions, the lists (with Vamana's slack) and the per-thread scratch.
pub fn build_bytes(s: usize, dim: usize) -> u64 {
    s as u64 * (4 * dim as u64 + 8 * NAV_R as u64 + 96) + (4 << 20)
}

/// An even stride of `count` slots of `0..n`, skipping those `is_free` says are free.
pub fn sample_slots(n: usize, count: usize, is_free: impl Fn(usize) -> bool) -> Vec<u32> {
    let mut slots = Vec::with_capacity(count.min(n));
    if count == 0 {
        return slots;
    }
    let stride = (n / count).max(1);
    let mut s = 0;
    while slots.len() < count && s < n {
        if is_free(s) {
            s += 1;
        } else {
            slots.push(s as u32);
            s += stride;
        }
    }
    slots
}

/// Builds the graph over `slots` whose PQ codes are `codes` (s × M, in order), in the
/// current rayon pool: a one-pass Vamana graph (R = [`NAV_R`], L = 64) over the codes'
/// reconstructions. Cosine indexes store unit vectors and are navigated in L2, as built.
pub fn build_graph(
    pq: &PqCodebook,
    metric: Metric,
    slots: Vec<u32>,
    codes: &[u8],
) -> NavigationGraph {
    let (dim, m) = (pq.dim(), pq.m());
    let mut vectors = vec![0f32; slots.len() * dim];
    for (row, code) in vectors.chunks_exact_mut(dim).zip(codes.chunks_exact(m)) {
        pq.decode(code, row);
    }
    let metric = if metric == Metric::Cosine {
        Metric::L2
    } else {
        metric
    };
    let params = VamanaParams {
        max_degree: NAV_R,
        build_l: NAV_BUILD_L,
        passes: 1,
        ..Default::default()
    };
    let graph = build_vamana(&vectors, dim, metric, &params, &NoProgress);
    NavigationGraph {
        slots,
        adjacency: graph.adjacency,
        medoid: graph.medoid,
        r: NAV_R,
    }
}

/// Builds the default navigation graph of a new index of `n` points (no slot free) whose PQ
/// codes are in `codes_path`, and writes it to `dir`/[`NAVIGATION_FILE`] through `storage`.
/// `ram_cap` bounds the build's RAM ([`build_bytes`]; a budgeted build passes its budget):
/// the sample shrinks to fit it. Streams the codes file (its CRC checked), holding only the
/// sample's codes. Returns the sample size (0: nothing written, for n = 0).
///
/// # Errors
/// [`LayoutError`] from reading the codes (naming the file) or writing the graph.
pub fn write_default(
    storage: &StorageRef,
    dir: &Path,
    codes_path: &Path,
    pq: &PqCodebook,
    metric: Metric,
    n: usize,
    ram_cap: Option<u64>,
) -> Result<usize> {
    let mut count = default_nodes(n);
    if let Some(cap) = ram_cap {
        while count > MIN_NAV_NODES.min(n) && build_bytes(count, pq.dim()) > cap {
            count /= 2;
        }
    }
    let slots = sample_slots(n, count, |_| false);
    if slots.is_empty() {
        return Ok(0);
    }
    let m = pq.m();
    let mut reader = BlobReader::open(codes_path, &PQ_CODES_MAGIC, PQ_FILE_VERSION)?;
    if reader.fields.first() != Some(&(n as u64)) || reader.fields.get(1) != Some(&(m as u64)) {
        return Err(LayoutError::field(
            codes_path,
            "n × M",
            format!("{:?}", reader.fields),
            format!("expected {n} × {m}"),
        )
        .into());
    }
    let mut codes = vec![0u8; slots.len() * m];
    let mut row = vec![0u8; m];
    let mut next = 0;
    for slot in 0..n {
        reader.read(&mut row)?;
        if slots.get(next) == Some(&(slot as u32)) {
            codes[next * m..(next + 1) * m].copy_from_slice(&row);
            next += 1;
        }
    }
    reader.finish()?;
    let graph = build_graph(pq, metric, slots, &codes);
    let s = graph.slots.len();
    graph.write_via(storage, "build.navigation", &dir.join(NAVIGATION_FILE), m)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_size_is_five_percent_within_its_bounds_and_the_sample_skips_free_slots() {
        assert_eq!(default_nodes(100), 100);
        assert_eq!(default_nodes(2000), 256);
        assert_eq!(default_nodes(100_000), 5000);
        assert_eq!(default_nodes(1 << 30), MAX_NAV_NODES);
        assert_eq!(sample_slots(10, 5, |_| false), vec![0, 2, 4, 6, 8]);
        assert_eq!(sample_slots(10, 5, |s| s % 2 == 0), vec![1, 3, 5, 7, 9]);
        assert_eq!(sample_slots(10, 20, |_| false).len(), 10);
        assert!(sample_slots(10, 0, |_| false).is_empty());
    }
}
