//! Build parameters (the CLI's flags) and their validation against the data shape.

use crate::error::BuildError;
use crate::vamana::VamanaParams;
use crate::Result;
use ssdann_layout::header::MAX_LIST_SIZE;
use ssdann_layout::storage::StorageRef;
use ssdann_layout::Metric;

/// Largest worker thread count a build (and a batch search: the engine's
/// `index::MAX_THREADS` is this constant) accepts; checked before a pool is made.
pub const MAX_THREADS: usize = 1024;

/// Default of [`BuildParams::max_index_growth`]: neighbour codes (with f16 vectors for f32
/// data) where the index at most doubles (measured in docs/PERFORMANCE.md: 384-d f32 reads
/// ~0.7× at recall 0.95 for 2× the disk; 128-d u8 would grow 10× and read no fewer).
pub const DEFAULT_MAX_INDEX_GROWTH: f64 = 2.0;

/// Build parameters (the CLI's flags).
#[derive(Clone, Debug)]
pub struct BuildParams {
    /// Distance metric.
    pub metric: Metric,
    /// Maximum degree R (`-R`, default 64).
    pub max_degree: usize,
    /// Build list size L (`-L`, default 100; R ..= [`MAX_LIST_SIZE`], the search limit).
    pub build_l: usize,
    /// α of the second Vamana pass (`--alpha`, default 1.2; ≥ 1).
    pub alpha: f32,
    /// PQ subspaces M (`--pq-bytes`); `None` = [`crate::pq_train::default_pq_m`].
    pub pq_bytes: Option<usize>,
    /// Worker threads (1 ..= [`MAX_THREADS`]); `None` = all cores.
    pub threads: Option<usize>,
    /// Replace an existing output directory, if it is an ssdann index directory or empty
    /// (never anything else: see [`crate::output::check_output`]).
    pub force: bool,
    /// Seed for sampling and insertion order (builds are deterministic for one thread).
    pub seed: u64,
    /// Permute node ids so that graph neighbours share a sector ([`crate::reorder`]).
    /// Default true; results are translated back to row numbers through `labels.bin`.
    pub reorder: bool,
    /// Precision of the in-RAM vectors the graph is built on, for f32 data (u8/i8 data is
    /// always used as is). Default [`GraphPrecision::F16`]. The sector file and the PQ codes
    /// always hold the input's exact values.
    pub graph_precision: GraphPrecision,
    /// RAM the build may use, in bytes (`--memory-budget`, in GiB on the CLI). `None`: no
    /// limit, one-shot build. When the one-shot build's estimate
    /// ([`crate::partitioned::budget::Shape::one_shot_bytes`]) exceeds it, the partitioned
    /// build runs ([`crate::partitioned`]): k-means partitions sized from the budget, a
    /// Vamana graph per partition, merged; sector reordering when the merged graph fits.
    pub memory_budget_bytes: Option<u64>,
    /// Vamana passes (`--passes`, default 2): 2 = α = 1 then α (DiskANN Alg. 3); 1 = the α
    /// pass only (about half the graph time; slightly lower recall at equal L).
    pub passes: usize,
    /// Partitioned build only: continue an interrupted build from its last finished stage
    /// (`--resume`). Without it, an earlier build's work directory is removed and the build
    /// starts over.
    pub resume: bool,
    /// Test hook: stop at this point of the partitioned build as a kill would (see
    /// `partitioned::interrupt`).
    #[doc(hidden)]
    pub interrupt_at: Option<String>,
    /// Always store each neighbour's residual PQ code in the node records
    /// (`--neighbor-codes`, format 2; default false: the builder decides by
    /// `max_index_growth`): records grow to one per 4 KB sector and a search ranks the
    /// neighbours of every node it reads by PQ + this refinement, at no extra RAM
    /// ([`ssdann_layout::sector::NodeLayout::with_neighbor_codes`]). M₂ is the largest that
    /// fits the sector, at most M. Inserts, deletes and merges maintain them (a merge writes the
    /// codes of every list it writes).
    pub neighbor_codes: bool,
    /// Store the vectors of f32 data as IEEE half floats (`--vector-encoding f16`, format 2):
    /// `Some(true)` f16, `Some(false)` exact, `None` (default) as the builder decides with
    /// neighbour codes (`max_index_growth`). d × 2 bytes per record instead of d × 4, so more records share a
    /// sector or, with `neighbor_codes`, longer neighbour codes fit. Searches then rank by
    /// the distance to the f16 vector. f32 input only; merges write f16 records, and an insert
    /// beyond ±65504 is refused.
    pub f16_vectors: Option<bool>,
    /// The disk-bytes ↔ reads knob (`--max-index-growth`; default
    /// [`DEFAULT_MAX_INDEX_GROWTH`] = 2): unless `neighbor_codes` or `f16_vectors` ask
    /// for a layout, the one-shot builder stores neighbour codes — with f16 vectors for f32
    /// data — when the index then takes at most this many times the bytes per point of
    /// plain records (384-d f32, R = 64: 2 plain records a sector → 1 coded, growth 2: chosen;
    /// 128-d u8: 10 → 1, growth 10: not). 1 = only where they cost no disk. The choice is
    /// recorded in the header (`ssdann info`). The budgeted build chooses alike and falls back to
    /// plain records (saying so) when the codes do not fit its budget.
    pub max_index_growth: f64,
    /// Graph saturation (DiskANN's `saturate_graph`; default **true**, `--no-saturate-graph`
    /// turns it off): each node's list is filled up to R with the candidates RobustPrune's
    /// α rule covered (in the α > 1 pass: with α = 1 it does nothing). A record has room
    /// for R neighbours whatever its degree, so the index does not grow and each read yields
    /// more candidates; expansions cost more ADC (measured in docs/PERFORMANCE.md: 0.78×
    /// the reads on a 128-d u8 set whose mean degree was 28, 0.93–0.97× on 384-d f32).
    /// Every build path keeps it: the partitioned build saturates its partition graphs and
    /// the lists its merge prunes; the header records it ([`IndexHeader::saturated`]) and an
    /// update's merge saturates the lists it prunes.
    ///
    /// [`IndexHeader::saturated`]: ssdann_layout::IndexHeader::saturated
    pub saturate_graph: bool,
    /// Where the build's writes, fsyncs, renames and removals go (default: the OS). Tests
    /// pass a recording backend to replay a crash at every sync point (`tests/crash_build`).
    pub storage: StorageRef,
}

/// Precision of the vectors the Vamana graph is built on (f32 input only).
///
/// The build is bound by memory traffic: each insertion's GreedySearch reads ~2,000–2,800
/// random vectors (measured on pypi-minilm-100k, R = 64, L = 100). An f16 copy halves those
/// bytes; distances then carry ~1e-3 relative error, far below the gaps RobustPrune and
/// GreedySearch decide on. Costs n × d × 2 bytes of RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GraphPrecision {
    /// Build on a half-precision copy (F16C conversion in the distance kernel).
    #[default]
    F16,
    /// Build on the f32 values themselves (no copy).
    F32,
}

impl std::str::FromStr for GraphPrecision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f16" => Ok(GraphPrecision::F16),
            "f32" => Ok(GraphPrecision::F32),
            o => Err(format!(
                "unknown graph precision {o:?} (expected f16 or f32)"
            )),
        }
    }
}

impl Default for BuildParams {
    fn default() -> Self {
        BuildParams {
            metric: Metric::L2,
            max_degree: 64,
            build_l: 100,
            alpha: 1.2,
            pq_bytes: None,
            threads: None,
            force: false,
            seed: 0x0055_da22,
            reorder: true,
            graph_precision: GraphPrecision::F16,
            memory_budget_bytes: None,
            passes: 2,
            resume: false,
            interrupt_at: None,
            neighbor_codes: false,
            f16_vectors: None,
            max_index_growth: DEFAULT_MAX_INDEX_GROWTH,
            saturate_graph: true,
            storage: StorageRef::default(),
        }
    }
}

impl BuildParams {
    /// The Vamana parameters of this build (R, L, α, seed, passes; DiskANN's slack and
    /// candidate cap).
    pub fn vamana(&self) -> VamanaParams {
        VamanaParams {
            max_degree: self.max_degree,
            build_l: self.build_l,
            alpha: self.alpha,
            seed: self.seed,
            passes: self.passes,
            saturate: self.saturate_graph,
            ..Default::default()
        }
    }

    /// Checks the parameters against the data shape, before anything is sized by them.
    ///
    /// # Errors
    /// [`BuildError::InvalidParameter`] naming the flag and the value: R outside
    /// 1..=[`ssdann_layout::sector::MAX_DEGREE`], L zero, < R or > [`MAX_LIST_SIZE`] (the
    /// largest L a search accepts), α < 1 or not finite, `--pq-bytes` zero or > d, passes
    /// not 1 or 2, threads outside 1..=[`MAX_THREADS`], and the one-shot-only options with
    /// a memory budget.
    pub fn validate(&self, dim: usize) -> Result<()> {
        if self.max_degree == 0 || self.max_degree > ssdann_layout::sector::MAX_DEGREE {
            return Err(BuildError::param(
                "-R",
                self.max_degree,
                format!("must be in 1..={}", ssdann_layout::sector::MAX_DEGREE),
            ));
        }
        if self.build_l == 0 {
            return Err(BuildError::param("-L", self.build_l, "must be at least 1"));
        }
        // Each build thread sizes a candidate list by L: the search limit bounds it.
        if self.build_l > MAX_LIST_SIZE {
            return Err(BuildError::param(
                "-L",
                self.build_l,
                format!("must be at most {MAX_LIST_SIZE} (the largest L a search accepts)"),
            ));
        }
        if self.build_l < self.max_degree {
            return Err(BuildError::param(
                "-L",
                self.build_l,
                format!("must be ≥ R ({})", self.max_degree),
            ));
        }
        if !(self.alpha.is_finite() && self.alpha >= 1.0) {
            return Err(BuildError::param(
                "--alpha",
                self.alpha,
                "must be a finite number ≥ 1",
            ));
        }
        if let Some(m) = self.pq_bytes {
            if m == 0 || m > dim {
                return Err(BuildError::param(
                    "--pq-bytes",
                    m,
                    format!("must be in 1..=d ({dim})"),
                ));
            }
        }
        if !(1..=2).contains(&self.passes) {
            return Err(BuildError::param("--passes", self.passes, "must be 1 or 2"));
        }
        if let Some(t) = self.threads {
            if t == 0 || t > MAX_THREADS {
                return Err(BuildError::param(
                    "--threads",
                    t,
                    format!("must be in 1..={MAX_THREADS}"),
                ));
            }
        }
        if !(1.0..=64.0).contains(&self.max_index_growth) {
            return Err(BuildError::param(
                "--max-index-growth",
                self.max_index_growth,
                "must be in 1..=64 (× the bytes per point of plain records)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use super::*;

    fn err(p: BuildParams) -> String {
        p.validate(16).unwrap_err().to_string()
    }

    /// Before, L had no upper bound: `-L 1000000000` aborted allocating 12 GB per thread.
    #[test]
    fn every_size_is_checked_against_the_search_limits_before_anything_is_allocated() {
        let p = |f: &dyn Fn(&mut BuildParams)| {
            let mut p = BuildParams::default();
            f(&mut p);
            p
        };
        let cases: [(BuildParams, &str); 5] = [
            (
                p(&|p| p.build_l = 1_000_000_000),
                "invalid build parameter -L = 1000000000: must be at most 100000 (the \
                 largest L a search accepts)",
            ),
            (
                p(&|p| p.build_l = MAX_LIST_SIZE + 1),
                "invalid build parameter -L = 100001: must be at most 100000 (the largest L a \
                 search accepts)",
            ),
            (
                p(&|p| p.threads = Some(1_000_000)),
                "invalid build parameter --threads = 1000000: must be in 1..=1024",
            ),
            (
                p(&|p| p.threads = Some(0)),
                "invalid build parameter --threads = 0: must be in 1..=1024",
            ),
            (
                p(&|p| p.max_degree = 4097),
                "invalid build parameter -R = 4097: must be in 1..=4096",
            ),
        ];
        for (params, want) in cases {
            assert_eq!(err(params), want);
        }
        // the limits themselves are accepted
        p(&|p| {
            p.build_l = MAX_LIST_SIZE;
            p.max_degree = ssdann_layout::sector::MAX_DEGREE;
            p.threads = Some(MAX_THREADS);
        })
        .validate(16)
        .unwrap();
    }
}
