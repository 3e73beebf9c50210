//! # ssdann
//!
//! A disk-resident, SSD-optimized approximate-nearest-neighbour index: a Vamana graph
//! (DiskANN, NeurIPS 2019) whose nodes — full vector plus neighbour list — are packed into
//! checksummed 4 KB sectors, with only product-quantization codes kept in RAM.
//!
//! This crate re-exports the public API of the workspace:
//! - [`layout`]: dataset files, distance kernels, the PQ codebook and the on-disk format;
//! - [`builder`]: the offline build ([`build_index`]);
//! - [`engine`]: opening and checking an index ([`verify`]).
//!
//! ```no_run
//! use ssdann::{build_index, BuildParams, NoProgress};
//! let params = BuildParams { pq_bytes: Some(48), ..Default::default() };
//! let report = build_index("base.fbin".as_ref(), "idx".as_ref(), &params, &NoProgress)?;
//! assert!(ssdann::verify("idx".as_ref())?.ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// The README's Rust snippets, compiled and run as doctests (`cargo test --workspace`), so
/// that they work as written.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use ssdann_builder as builder;
pub use ssdann_engine as engine;
pub use ssdann_layout as layout;

pub use ssdann_builder::{
    build_index, BuildError, BuildParams, BuildReport, NoProgress, Phase, Progress,
};
pub use ssdann_engine::{verify, EngineError, VerifyReport};
pub use ssdann_layout::{ElementType, GroundTruth, LayoutError, Metric, VectorFile};
