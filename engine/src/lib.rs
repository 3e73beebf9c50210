//! `ssdann-engine`: the online side of ssdann.
//!
//! It owns opening an index directory ([`Index::open`]) and checking it ([`verify`]), the
//! sector I/O backends ([`io`]: io_uring and pread, O_DIRECT), the DiskANN beam search
//! ([`beam_search`]) and the node cache. Updates (labels, WAL, delta index, StreamingMerge)
//! build on the same modules. It reuses the builder's candidate list, visited set,
//! GreedySearch and RobustPrune rather than writing them twice, and never reaches into
//! `tools`.

pub mod beam_search;
pub mod delta;
pub mod error;
pub mod index;
pub mod io;
pub mod merge;
pub mod updates;
pub mod verify;
pub mod visited;
pub mod wal;

pub use error::EngineError;
pub use index::{Index, Neighbor, OpenOptions, SearchParams, SearchStats};
pub use io::IoBackend;
pub use merge::{MergeOptions, MergeReport};
pub use verify::{verify, VerifyReport};
pub use wal::SyncMode;

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, EngineError>;

#[cfg(test)]
mod tests {
    #[test]
    fn index_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::Index>();
    }
}
