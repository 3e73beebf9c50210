//! Progress reporting for long build and merge phases (the CLI draws bars; the library stays
//! silent).

/// A phase of the build or of a merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Loading and validating the data (NaN/inf scan, cosine normalization).
    Load,
    /// k-means training of the PQ pivots.
    PqTraining,
    /// Encoding every point with the PQ codebook.
    PqEncoding,
    /// Vamana pass 1 (α = 1).
    VamanaPass1,
    /// Vamana pass 2 (α = build α).
    VamanaPass2,
    /// Sector-aware reordering of node ids.
    Reorder,
    /// Partitioned build: k-means partitions and the assignment of every point to its 2
    /// nearest.
    Partition,
    /// Partitioned build: the union of the partition graphs, pruned to R.
    GraphMerge,
    /// Writing the sector file and PQ files.
    Writing,
    /// StreamingMerge delete phase (blocks of the sector file).
    MergeDelete,
    /// StreamingMerge insert phase (new points).
    MergeInsert,
    /// StreamingMerge patch phase (blocks receiving new points or back-edges).
    MergePatch,
    /// StreamingMerge: writing the journal's blocks in place.
    MergeApply,
}

impl Phase {
    /// Short human name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Load => "load + validate",
            Phase::PqTraining => "PQ training",
            Phase::PqEncoding => "PQ encoding",
            Phase::VamanaPass1 => "Vamana pass 1 (α=1)",
            Phase::VamanaPass2 => "Vamana pass 2",
            Phase::Reorder => "sector reordering",
            Phase::Partition => "partitioning",
            Phase::GraphMerge => "merging graphs",
            Phase::Writing => "writing",
            Phase::MergeDelete => "merge: delete phase",
            Phase::MergeInsert => "merge: insert phase",
            Phase::MergePatch => "merge: patch phase",
            Phase::MergeApply => "merge: in place",
        }
    }
}

/// Receives progress; called from worker threads, so it must be `Sync`.
pub trait Progress: Sync {
    /// A phase starts with `total` units of work.
    fn start(&self, phase: Phase, total: u64);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The current phase is over.
    fn finish(&self);
    /// A one-line note between phases (e.g. "partition 3/8: 215,004 points"); ignored by
    /// default.
    fn message(&self, msg: &str) {
        let _ = msg;
    }
}

/// Ignores all progress.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: Phase, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
