//! How an index is opened ([`OpenOptions`]) and how its WAL is synced ([`SyncMode`]): plain
//! values every layer of the engine reads; this module imports nothing of the engine but
//! [`crate::io::IoBackend`] and [`crate::storage::StorageRef`].

use crate::io::IoBackend;
use crate::storage::StorageRef;

/// Largest k a search accepts (checked before anything is sized by it).
pub const MAX_K: usize = 10_000;
/// Largest search list size L (the one limit builds, searches and the header's `build_l`
/// share: [`ssdann_layout::header::MAX_LIST_SIZE`]).
pub const MAX_L: usize = ssdann_layout::header::MAX_LIST_SIZE;
/// Largest beam width W, and largest [`OpenOptions::max_beam_width`] (each search thread
/// holds that many blocks of buffers).
pub const MAX_W: usize = 1024;
pub use crate::io::MAX_BUSY_POLL_US;
/// Default [`OpenOptions::busy_poll_us`]: 1 ms, longer than a typical read's wait (minilm
/// on this VM: ~60–100 µs per round), bounded, and spent only where it cannot take a core
/// from another search (docs/PERFORMANCE.md: 1.25–1.30× the QPS at one thread).
pub const DEFAULT_BUSY_POLL_US: u32 = 1000;

/// How the node cache chooses its nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CachePolicy {
    /// The nodes nearest the entry point by BFS hops (DiskANN's `cache_bfs_levels`).
    #[default]
    Bfs,
    /// The nodes that `samples` searches expand most often (DiskANN's cache from sample
    /// queries, `generate_cache_list_from_sample_queries`), topped up in BFS order when
    /// fewer nodes were expanded than the cache holds. The sample queries are the PQ
    /// reconstructions of evenly spaced live points (no file to supply), searched at open
    /// (and when a merge reopens the index) with L = 100, W = 4: about `samples` × 50
    /// reads added to each (2,000 samples: ~5 s on pypi-minilm-100k here). On that set, at
    /// 1,000 / 5,000 cached nodes, 0.98× / 0.95× the reads of the BFS choice
    /// (docs/PERFORMANCE.md, "Node cache by bytes").
    SampleVisits {
        /// Sample searches (e.g. 2,000).
        samples: usize,
    },
}

/// How to open an index.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Nodes held in RAM (their whole sector records), chosen by [`Self::cache_policy`].
    /// Expanding one counts as a cache hit, not a read. Default 0.
    pub cache_nodes: usize,
    /// RAM for the node cache, in bytes (default 0): when it holds more records than
    /// `cache_nodes`, the cache takes `cache_bytes / (record bytes + 16)` nodes instead
    /// (16 bytes of index per entry).
    pub cache_bytes: u64,
    /// How the cached nodes are chosen. Default [`CachePolicy::Bfs`].
    pub cache_policy: CachePolicy,
    /// I/O backend. Default io_uring.
    pub io: IoBackend,
    /// Check each block's CRC32 on every read (off by default); a mismatch is an error.
    pub verify_reads: bool,
    /// Beam width each search thread's buffers are made for at first (default 16): a search
    /// at a larger W (up to [`MAX_W`]) makes a context with buffers for it, once per thread.
    pub max_beam_width: usize,
    /// Expand, without another read, the other nodes of every fetched block that are
    /// already candidates (Starling-style sector reuse; builds co-locate graph neighbours).
    /// Default true; false gives DiskANN's one-node-per-read behaviour.
    pub sector_reuse: bool,
    /// Dynamic beam width (default true; false is a benchmark lever, A/B only): rounds
    /// expand one node while the search is still descending (each round finds a candidate
    /// closer than the node it expanded), then W once it has converged — fewer reads for the
    /// first hops' walk (docs/PERFORMANCE.md: 0.91× reads at recall 0.95 on minilm).
    pub dynamic_beam: bool,
    /// Look-ahead rounds (default true; false is a benchmark lever, A/B only): once a search
    /// has converged, the next round's reads go out as soon as this round's land, before
    /// this round's nodes are expanded, so that the expansion's CPU runs under the reads;
    /// the next round is then chosen without the candidates this round finds. Each search
    /// thread holds 2 × W read buffers instead of W.
    pub look_ahead: bool,
    /// Busy polling of read completions (default [`DEFAULT_BUSY_POLL_US`]; 0 = off): each
    /// wait for a read spins on the io_uring completion queue for up to this many µs before
    /// it sleeps in the kernel, so that a completion does not have to wake the thread (an
    /// interrupt to an idle core and a context switch, most costly on a VM). A wait spins
    /// only while no more searches run in the process than the machine has cores, at most
    /// one per core; otherwise it sleeps at once (so it cannot take a core another search
    /// needs; other work of the process may still see those cores busy). At most
    /// [`MAX_BUSY_POLL_US`] (more: `Index::open` returns `EngineError::InvalidQuery` naming
    /// `busy_poll_us`); the pread backend ignores it (its reads block).
    pub busy_poll_us: u32,
    /// The navigation graph of entry points (searches start from its nodes nearest the
    /// query instead of the medoid: 0.85–0.92× the reads at recall 0.95–0.98 on 384-d f32,
    /// 0.60× on 128-d u8; docs/PERFORMANCE.md). `None` (default): the index's
    /// `navigation.bin`, written by the builder; an index built before that file existed
    /// gets the default size (5% of the live points, 256..=2^20) built at open, a Vamana
    /// build over the sample's PQ reconstructions (~0.1 s per 1,000 nodes at 384-d on
    /// 2 cores). `Some(0)`: none (the medoid). `Some(k)`: k nodes built at open (an A/B
    /// lever; capped at the live count). RAM ≈ nodes × (M + 160) bytes.
    pub navigation_nodes: Option<usize>,
    /// When inserts and deletes are fsynced to the WAL (see [`SyncMode`] for
    /// what each mode can lose in a crash). Default `Always`.
    pub sync: SyncMode,
    /// Open without the right to write (default false): no inserts, deletes or merges, no
    /// recovery of an interrupted merge (an unfinished journal is an error: open read-write
    /// once to finish it), and a torn WAL tail is ignored rather than truncated. Read-only
    /// handles share the directory lock with each other but not with a writer.
    pub read_only: bool,
    /// Where the engine's durable writes go (WAL, merge journal, in-place writes, renames):
    /// the operating system by default; tests plug in a crash or fault backend.
    pub storage: StorageRef,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            cache_nodes: 0,
            cache_bytes: 0,
            cache_policy: CachePolicy::Bfs,
            io: IoBackend::IoUring,
            verify_reads: false,
            max_beam_width: 16,
            sector_reuse: true,
            sync: SyncMode::Always,
            dynamic_beam: true,
            look_ahead: true,
            busy_poll_us: DEFAULT_BUSY_POLL_US,
            navigation_nodes: None,
            read_only: false,
            storage: StorageRef::default(),
        }
    }
}

/// When appended records are fsynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// fsync before `append` returns (default).
    #[default]
    Always,
    /// fsync from a background thread within this many milliseconds.
    Interval(u64),
    /// Never fsync; the OS writes the file back when it chooses.
    Never,
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "always" => Ok(SyncMode::Always),
            "never" => Ok(SyncMode::Never),
            _ => s
                .strip_prefix("interval=")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|&ms| ms > 0)
                .map(SyncMode::Interval)
                .ok_or_else(|| format!("unknown sync mode {s:?} (expected always, interval=MS with MS > 0, or never)")),
        }
    }
}

impl OpenOptions {
    /// Nodes the cache holds for sector records of `record_bytes` each: the larger of
    /// `cache_nodes` and what `cache_bytes` pays for.
    pub fn cache_count(&self, record_bytes: usize) -> usize {
        let by_bytes = self.cache_bytes / (record_bytes as u64 + 16);
        self.cache_nodes
            .max(usize::try_from(by_bytes).unwrap_or(usize::MAX))
    }
}
