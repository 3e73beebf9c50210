//! `ssdann-engine`: the online side of ssdann.
//!
//! It owns opening an index directory ([`Index::open`]) and checking it ([`verify`]), the
//! sector I/O backends ([`io`]: io_uring and pread, O_DIRECT), the DiskANN beam search
//! ([`search`]), the node cache, and updates (WAL, delta index, tombstones, StreamingMerge).
//! It reuses the builder's candidate list, GreedySearch and RobustPrune rather than writing
//! them twice, and never reaches into `tools`. Byte formats (sector file, WAL, merge journal)
//! are `ssdann_layout`'s; this crate decides I/O and policy.
//!
//! # Module order
//!
//! Imports inside the engine run one way, each module using only those before it:
//!
//! `error → io → storage → options → navigation → state → search → updates → snapshot → merge → index → verify`
//!
//! - [`io`]: aligned buffers, the sector file, the io_uring / pread readers;
//! - [`storage`]: the durable-write side of file I/O behind a trait (crash and fault tests);
//! - `options`: [`OpenOptions`] and [`SyncMode`];
//! - `navigation`: the in-memory navigation graph of entry points (an open option);
//! - `state`: the immutable part of one generation (header, PQ codes, labels, cache);
//! - [`search`]: the query check, beam search, search contexts;
//! - [`updates`]: the WAL ([`updates::wal`]), the delta index ([`updates::delta`]), tombstones;
//! - `snapshot`: a state plus its pending updates — what one search or update works on;
//! - [`merge`]: StreamingMerge's plan, delete, insert and patch phases and its journal;
//! - `index`: [`Index`], the public handle, and the lock protocol (written there, once).
//!
//! `tools/check-imports.sh` checks this order (and that no engine file is over 600 lines).

pub mod error;
mod index;
pub mod io;
pub mod merge;
mod navigation;
mod options;
pub mod search;
mod snapshot;
mod state;
pub mod storage;
pub mod updates;
pub mod verify;

pub use error::EngineError;
pub use index::Index;
pub use io::IoBackend;
pub use merge::{MergeHook, MergeOptions, MergeReport};
pub use navigation::NavigationSource;
pub use options::{CachePolicy, OpenOptions, SyncMode, DEFAULT_BUSY_POLL_US, MAX_BUSY_POLL_US};
pub use search::{Neighbor, SearchParams, SearchStats};
pub use snapshot::MemoryReport;
pub use storage::{OsStorage, Storage, StorageRef};
pub use updates::wal;
pub use verify::{verify, VerifyReport};

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
