//! `ssdann-engine`: the online side of ssdann.
//!
//! It owns opening an index directory and checking it ([`verify`]); the query path (I/O
//! backends, beam search, node cache) and updates (labels, WAL, delta index,
//! StreamingMerge) build on the same modules. It reuses the builder's GreedySearch and
//! RobustPrune rather than writing them twice, and never reaches into `tools`.

pub mod error;
pub mod verify;

pub use error::EngineError;
pub use verify::{verify, VerifyReport};

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, EngineError>;
