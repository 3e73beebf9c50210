//! `ssdann-builder`: the offline index build (DiskANN, NeurIPS 2019).
//!
//! It owns PQ training ([`kmeans`], [`pq_train`]), the Vamana graph ([`vamana`]: Alg. 3,
//! built from [`greedy_search`] = Alg. 1 and [`robust_prune`] = Alg. 2), and the writer that
//! lays nodes into 4 KB sectors ([`writer`]); [`build`] runs the stages in order and renames
//! the finished directory into place. The engine reuses GreedySearch, RobustPrune and the
//! [`neighbor_queue`] for its beam search, inserts and merges.
//!
//! It must not do query-time I/O scheduling (no io_uring here); its stages stay separable so
//! a partitioned (larger-than-RAM) build can reuse them.

pub mod build;
mod durable;
pub mod error;
pub mod greedy_search;
pub mod ground_truth;
pub mod kmeans;
pub mod navigation;
pub mod neighbor_queue;
pub mod output;
pub mod params;
pub mod partitioned;
pub mod pq_train;
pub mod progress;
pub mod refine;
pub mod reorder;
pub mod robust_prune;
pub mod synthetic;
pub mod vamana;
pub mod writer;

pub use build::{build_from_vectors, build_index, BuildParams, BuildReport, GraphPrecision};
pub use error::BuildError;
pub use progress::{NoProgress, Phase, Progress};

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, BuildError>;
