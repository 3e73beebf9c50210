//! The durable-write side of the engine's file I/O: the [`Storage`] trait, its default
//! [`OsStorage`] and the shared handle [`StorageRef`], defined in `ssdann_layout::storage`
//! (the builder writes through it too) and re-exported here. Every write, truncation, fsync,
//! rename, removal and directory fsync of the WAL, the merge journal, the merge's in-place
//! block and header writes and its staged files goes through it; every `sync` and
//! `sync_dir` names its *site* (e.g. `"wal.append"`), so a crash test can drop one site's
//! fsyncs to prove that each one matters.

pub use ssdann_layout::storage::{OsStorage, Storage, StorageRef};
