//! `ssdann-layout`: the bytes and the math shared by the builder and the engine.
//!
//! It owns
//! - the on-disk format of an index directory (docs/FORMAT.md): the two generation-stamped
//!   header slots ([`header`]), the fixed-slot node records packed into checksummed 4 KB
//!   sectors ([`sector`]), and the checksummed auxiliary files such as the PQ pivots and
//!   codes ([`blob`], [`pq`]);
//! - the durable-write trait every writer of those files goes through ([`storage`]: the
//!   crash simulator's and the fault tests' hook);
//! - the dataset readers and writers (big-ann-benchmarks `.fbin/.u8bin/.i8bin/.ibin`,
//!   TEXMEX `.fvecs/.bvecs/.ivecs`, `.npy`) in [`dataset`];
//! - the distance kernels (squared L2 and inner product for f32, u8, i8; AVX2/FMA with runtime
//!   detection and a scalar reference) in [`distance`];
//! - the PQ codebook: encoding, ADC tables and PQ distance scans in [`pq`], and the
//!   nearest-centroid kernel of k-means and encoding in [`nearest`].
//!
//! It must not know about graphs, I/O scheduling or threads: `layout` does no I/O
//! scheduling and builds nothing; the builder and the engine sit on top of it.
//!
//! # Module order
//!
//! Imports inside `layout` run one way, each module using only those before it:
//!
//! `error → storage → blob → distance → dataset → sector → header → labels → navigation → pq_adc → pq → pq_refine → near_error → nearest → wal → journal`
//!
//! - `error`; [`storage`] (the durable-write trait); [`blob`] (checksummed auxiliary files);
//! - [`distance`]: the kernels, [`Element`] and [`ElementType`]; [`dataset`] reads and writes
//!   vector files of those types (and re-exports `ElementType`);
//! - [`sector`] → [`header`] → [`labels`], [`navigation`]: the index files;
//! - PQ: [`pq_adc`] (the table scans and `PQ_CENTROIDS`, re-exported by `pq`) → [`pq`] (the
//!   codebook and its files) → [`pq_refine`] (neighbour codes) → [`near_error`] (PQ's error
//!   on near pairs, the default early-termination ratio; its stored form is the header's
//!   [`header::NearError`]) → [`nearest`];
//! - [`wal`], then [`journal`] (a merge's journal, which names every other file).
//!
//! `tools/check-imports.sh` checks this order.

pub mod blob;
pub mod dataset;
pub mod distance;
pub mod error;
pub mod header;
pub mod journal;
pub mod labels;
pub mod navigation;
pub mod near_error;
pub mod nearest;
pub mod pq;
pub mod pq_adc;
pub mod pq_refine;
pub mod sector;
pub mod storage;
pub mod wal;

pub use dataset::{GroundTruth, VectorFile};
pub use distance::{Element, ElementType, Metric, Vector};
pub use error::LayoutError;
pub use header::IndexHeader;
pub use pq::PqCodebook;
pub use sector::{NodeLayout, SECTOR_BYTES};

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, LayoutError>;

// The format is little-endian and the readers cast mapped bytes to `[f32]`/`[u32]` in place.
#[cfg(not(target_endian = "little"))]
compile_error!(
    "ssdann supports little-endian targets only (docs/FORMAT.md: numbers are little-endian)"
);
