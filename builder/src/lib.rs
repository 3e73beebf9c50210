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
//!
//! # Module order
//!
//! Imports inside the builder run one way, each module using only those before it:
//!
//! `error → progress → synthetic → ground_truth → durable → neighbor_queue → greedy_search → robust_prune → vamana → kmeans → pq_train → params → refine → reorder → writer → navigation → output → start → report → partitioned → build`
//!
//! - `error`, [`progress`], and the test and demo data ([`synthetic`], [`ground_truth`]);
//! - `durable`: every write through `Storage`, the table of fsync sites;
//! - the graph: [`neighbor_queue`] → [`greedy_search`] → [`robust_prune`] → [`vamana`];
//! - PQ: [`kmeans`] → [`pq_train`]; then [`params`] ([`BuildParams`]) and [`refine`] (the
//!   neighbour codes), [`reorder`], [`writer`] (`index.ssd` and a new index's header),
//!   [`navigation`];
//! - [`output`]: the index directory's file names, the temporary directory and the install;
//!   `start`: what every build starts with (input, parameter and output checks, the thread
//!   pool); `report`: [`BuildReport`], what every build returns;
//! - [`partitioned`]: the memory-budgeted build, from the shared modules above only;
//! - [`build`]: the one-shot build and [`build_index`], which hands a build over its budget
//!   to `partitioned` through that module's entry points (`shape_of`, `shape`,
//!   `build_partitioned`). `build` re-exports the shared items (`build::INDEX_FILE`,
//!   `build::BuildReport`, …) for other crates; inside the builder they are named from the
//!   module that defines them.
//!
//! `tools/check-imports.sh` checks this order.

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
mod report;
pub mod robust_prune;
mod start;
pub mod synthetic;
pub mod vamana;
pub mod writer;

pub use build::{build_from_vectors, build_index};
pub use error::BuildError;
pub use params::{BuildParams, GraphPrecision};
pub use progress::{NoProgress, Phase, Progress};
pub use report::BuildReport;

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, BuildError>;
