//! What a build did ([`BuildReport`]): the one-shot build ([`crate::build`]) and the
//! partitioned one ([`crate::partitioned`]) both return it.

use crate::progress::Phase;
use ssdann_layout::ElementType;
use std::time::Duration;

/// What a build did.
#[derive(Clone, Debug)]
pub struct BuildReport {
    /// Points n.
    pub n: usize,
    /// Dimension d.
    pub dim: usize,
    /// Element type.
    pub element: ElementType,
    /// PQ subspaces M.
    pub pq_m: usize,
    /// Residual PQ subspaces M₂ of the neighbour codes in the records (0: none).
    pub nbr_code_m: usize,
    /// Whether the records store f32 data's vectors as f16.
    pub f16_vectors: bool,
    /// Entry point (medoid), as a row number of the input.
    pub medoid: u32,
    /// Mean out-degree of the graph.
    pub mean_degree: f64,
    /// Wall time of each phase, in order.
    pub phases: Vec<(Phase, Duration)>,
    /// Bytes of the index directory on disk.
    pub index_bytes: u64,
    /// Bytes of RAM the engine needs to serve the index without a node cache (PQ codes +
    /// pivots).
    pub engine_ram_bytes: u64,
    /// Partitions the graph was built in (1: the one-shot build).
    pub partitions: usize,
    /// Partitioned build: the process's peak RSS (bytes) measured after each stage, in
    /// order (empty for the one-shot build).
    pub peak_rss_by_stage: Vec<(Phase, u64)>,
    /// The build's own estimate of its peak RAM, in bytes (the budget's accounting).
    pub memory_estimate_bytes: u64,
}
