//! [`State`]: the immutable part of one generation of an open index — header, PQ pivots and
//! codes, the slot → label map, the open sector file and the node cache (DiskANN, NeurIPS
//! 2019, §3: PQ codes in RAM, full vectors and lists on the SSD). The label map holds no
//! array: nothing for the identity, else `labels.bin` memory-mapped ([`SlotLabels`]).
//!
//! Invariants this module owns (checked in [`State::open`], never changed afterwards):
//! - `codes.len() == n × M` and `labels.len() == n`, where n = `header.n_slots`;
//! - `labels` is one-to-one, and its free slots number `n − header.live_count` (so a search
//!   on an index without free slots never reads the label map but for its results);
//! - the PQ pivots have the header's d and M;
//! - `index.ssd` is exactly `header.file_bytes()` long ([`IndexHeader::check_file_len`]);
//! - every cached record passed its block's CRC and its record check when loaded.
//!
//! The one mutable bit is [`State::superseded`], set once (false → true) by a merge that
//! starts rewriting blocks under this state.

use crate::error::EngineError;
use crate::io::{AlignedBuf, SectorFile};
use crate::navigation::{Navigation, NavigationSource};
use crate::options::OpenOptions;
use crate::Result;
use ssdann_builder::build::INDEX_FILE;
use ssdann_layout::labels::SlotLabels;
use ssdann_layout::pq::{read_codes, PQ_CODES_FILE, PQ_PIVOTS_FILE, PQ_REFINE_FILE};
use ssdann_layout::sector::check_block;
use ssdann_layout::{IndexHeader, PqCodebook, SECTOR_BYTES};
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The node cache: records of the nodes nearest the entry point.
#[derive(Default)]
pub(crate) struct NodeCache {
    /// Slot → byte offset of its record in `records`.
    pub(crate) slots: HashMap<u32, usize>,
    /// The cached records, each `record_bytes` long.
    pub(crate) records: Vec<u8>,
}

/// The immutable part of one generation of an open index (see the module docs).
pub(crate) struct State {
    pub(crate) dir: PathBuf,
    pub(crate) header: IndexHeader,
    pub(crate) pq: PqCodebook,
    /// The residual codebook of the neighbour codes in the records (format 2,
    /// `pq_refine.bin`); `None` for an index without them.
    pub(crate) refine: Option<PqCodebook>,
    /// n × M PQ codes.
    pub(crate) codes: Vec<u8>,
    /// n labels (`FREE_LABEL` for a free slot), checked one-to-one at open.
    pub(crate) labels: SlotLabels,
    pub(crate) file: Arc<SectorFile>,
    pub(crate) options: OpenOptions,
    pub(crate) cache: NodeCache,
    /// The navigation graph of entry points (`navigation.bin`, or built at open).
    pub(crate) navigation: Option<Navigation>,
    /// Where `navigation` came from.
    pub(crate) navigation_source: NavigationSource,
    /// PQ's error on near pairs: the header's (format minor 3), else measured at open
    /// (an older index); `None` for an inner-product index or one too small to measure.
    pub(crate) near_error: Option<ssdann_layout::near_error::NearError>,
    /// The early-termination ratio a search without its own uses
    /// ([`ssdann_layout::near_error::termination_ratio`] of `near_error`).
    pub(crate) default_termination: Option<f32>,
    /// Set when a merge starts rewriting blocks under this state: its searches may then read
    /// post-merge blocks, whose lists can name slots past this state's n (skipped, not an
    /// error). See `merge` for why such mixed reads still give correct answers.
    pub(crate) superseded: AtomicBool,
}

/// Reads `pq_refine.bin` when the header's records hold neighbour codes, checking its d and
/// M₂ against the header.
///
/// # Errors
/// [`EngineError::Layout`] for a missing or corrupt file, [`EngineError::Inconsistent`] when
/// its shape disagrees with `index.ssd`.
pub(crate) fn read_refine(dir: &Path, header: &IndexHeader) -> Result<Option<PqCodebook>> {
    let m2 = header.layout.nbr_code_m;
    if m2 == 0 {
        return Ok(None);
    }
    let path = dir.join(PQ_REFINE_FILE);
    let book = PqCodebook::read(&path)?;
    if book.dim() != header.dim as usize || book.m() != m2 {
        return Err(EngineError::Inconsistent {
            path,
            detail: format!(
                "the residual codebook has d = {}, M₂ = {} but index.ssd has d = {}, nbr_code_m = {m2}",
                book.dim(),
                book.m(),
                header.dim
            ),
        });
    }
    Ok(Some(book))
}

impl State {
    /// Opens the files of the index in `dir` and checks them against each other (no journal
    /// recovery, no WAL: the callers above do those).
    ///
    /// # Errors
    /// [`EngineError::Layout`] for a missing, short or corrupt file; [`EngineError::Inconsistent`]
    /// when the files disagree; [`EngineError::InvalidQuery`] for `max_beam_width` = 0.
    pub(crate) fn open(dir: &Path, options: OpenOptions) -> Result<State> {
        let path = dir.join(INDEX_FILE);
        let file = SectorFile::open(&path)?;
        let len = file
            .file
            .metadata()
            .map_err(|e| EngineError::io(&path, e))?
            .len();
        let mut slots = AlignedBuf::new(2 * SECTOR_BYTES);
        if len < 2 * SECTOR_BYTES as u64 {
            return Err(ssdann_layout::LayoutError::SizeMismatch {
                path,
                expected_bytes: 8192,
                actual_bytes: len,
                detail: "the two header slots".into(),
            }
            .into());
        }
        file.file
            .read_exact_at(slots.as_mut_slice(), 0)
            .map_err(|e| EngineError::io(&path, e))?;
        let (header, _) = IndexHeader::choose(&path, slots.as_slice())?;
        header.check_file_len(&path, len)?;
        let pq = PqCodebook::read(&dir.join(PQ_PIVOTS_FILE))?;
        if pq.dim() != header.dim as usize || pq.m() != header.pq_m as usize {
            return Err(EngineError::Inconsistent {
                path: dir.join(PQ_PIVOTS_FILE),
                detail: format!(
                    "PQ pivots have d = {}, M = {} but index.ssd has d = {}, M = {}",
                    pq.dim(),
                    pq.m(),
                    header.dim,
                    header.pq_m
                ),
            });
        }
        let refine = read_refine(dir, &header)?;
        let (cn, cm, codes) = read_codes(&dir.join(PQ_CODES_FILE))?;
        if cn as u64 != header.n_slots || cm != header.pq_m as usize {
            return Err(EngineError::Inconsistent {
                path: dir.join(PQ_CODES_FILE),
                detail: format!(
                    "PQ codes are n = {cn}, M = {cm} but index.ssd has n = {}, M = {}",
                    header.n_slots, header.pq_m
                ),
            });
        }
        let labels_path = dir.join(ssdann_layout::labels::LABELS_FILE);
        let labels = SlotLabels::open(&labels_path)?;
        if labels.len() as u64 != header.n_slots {
            return Err(EngineError::Inconsistent {
                path: labels_path,
                detail: format!(
                    "{} labels but index.ssd has n = {}",
                    labels.len(),
                    header.n_slots
                ),
            });
        }
        // header.live_count ≤ n_slots: IndexHeader::decode checks it
        if labels.free_slots() as u64 != header.n_slots.saturating_sub(header.live_count) {
            return Err(EngineError::Inconsistent {
                path: labels_path,
                detail: format!(
                    "{} free slots (label 2^64 - 1) but index.ssd has n = {}, live_count = {}",
                    labels.free_slots(),
                    header.n_slots,
                    header.live_count
                ),
            });
        }
        if options.max_beam_width == 0 || options.max_beam_width > crate::options::MAX_W {
            return Err(EngineError::InvalidQuery {
                field: "max_beam_width",
                value: options.max_beam_width.to_string(),
                reason: format!("must be in 1..={}", crate::options::MAX_W),
            });
        }
        if options.busy_poll_us > crate::options::MAX_BUSY_POLL_US {
            return Err(EngineError::InvalidQuery {
                field: "busy_poll_us",
                value: options.busy_poll_us.to_string(),
                reason: format!("must be in 0..={} µs", crate::options::MAX_BUSY_POLL_US),
            });
        }
        let mut state = State {
            dir: dir.into(),
            header,
            pq,
            refine,
            codes,
            labels,
            file,
            options,
            cache: NodeCache::default(),
            navigation: None,
            navigation_source: NavigationSource::Off,
            near_error: None,
            default_termination: None,
            superseded: AtomicBool::new(false),
        };
        state.near_error = match state.header.near_error {
            Some(e) => Some(e),
            // an optimisation's input: a damaged record it samples leaves the default off
            // (and the block is refused where a search reads it), not the index unopenable
            None => state.measure_near_error().unwrap_or_else(|e| {
                log::warn!(
                    "{}: PQ's error on near pairs not measured ({e}); searches default to no \
                     early termination",
                    state.file.path.display()
                );
                None
            }),
        };
        state.default_termination = state
            .near_error
            .map(|e| ssdann_layout::near_error::termination_ratio(e.error));
        let count = state
            .options
            .cache_count(state.header.layout.record_bytes)
            .min(state.header.n_slots as usize);
        // Sample visits need searches: the snapshot, which owns them, fills that cache.
        if count > 0 && state.options.cache_policy == crate::options::CachePolicy::Bfs {
            let ids = state.bfs_order(count, &[])?;
            state.cache = state.load_cache(&ids)?;
        }
        (state.navigation, state.navigation_source) = Navigation::load(
            &state.dir,
            &state.header,
            &state.pq,
            &state.codes,
            &state.labels,
            state.options.navigation_nodes,
        )?;
        Ok(state)
    }

    /// Dimension d.
    pub(crate) fn dim(&self) -> usize {
        self.header.dim as usize
    }

    /// Checks block `b`'s CRC32.
    ///
    /// # Errors
    /// [`EngineError::Layout`] (checksum mismatch naming the sector).
    pub(crate) fn check_block(&self, block: &[u8], b: u64) -> Result<()> {
        check_block(block).map_err(|(expected, got)| {
            ssdann_layout::LayoutError::ChecksumMismatch {
                path: self.file.path.clone(),
                what: format!("sector {} (block {b})", self.header.layout.block_sector(b)),
                expected,
                got,
            }
            .into()
        })
    }

    /// Reads the block holding node `id` with pread (open-time use), checking its CRC.
    fn read_block_for(&self, id: u32, buf: &mut AlignedBuf) -> Result<()> {
        let l = self.header.layout;
        let b = l.block_of(u64::from(id));
        let off = l.block_offset_bytes(b);
        self.file
            .file
            .read_exact_at(&mut buf.as_mut_slice()[..l.block_bytes()], off)
            .map_err(|e| EngineError::io(&self.file.path, e))?;
        self.check_block(&buf.as_slice()[..l.block_bytes()], b)
    }

    /// The first `count` slots in BFS order from the entry point, skipping `exclude`
    /// (reads each visited node's block with pread, checking it).
    ///
    /// # Errors
    /// [`EngineError::Layout`] / [`EngineError::Inconsistent`] for a damaged block or record.
    pub(crate) fn bfs_order(&self, count: usize, exclude: &[u32]) -> Result<Vec<u32>> {
        let l = self.header.layout;
        let skip: std::collections::HashSet<u32> = exclude.iter().copied().collect();
        let mut out = Vec::with_capacity(count);
        let mut buf = AlignedBuf::new(l.block_bytes());
        let mut frontier = std::collections::VecDeque::new();
        let entry = self.header.entry_point as u32;
        frontier.push_back(entry);
        let mut seen = std::collections::HashSet::new();
        seen.insert(entry);
        while let Some(id) = frontier.pop_front() {
            if out.len() >= count {
                break;
            }
            let rec = self.checked_record(id, &mut buf)?;
            if !skip.contains(&id) {
                out.push(id);
            }
            for nb in l.record(buf.as_slice(), rec).neighbors() {
                if seen.insert(nb) {
                    frontier.push_back(nb);
                }
            }
        }
        Ok(out)
    }

    /// Measures PQ's error on near pairs from the sector file (an index whose header has no
    /// measure: written before format minor 3). Reads ≤ 256 × 17 records with pread.
    ///
    /// # Errors
    /// As [`Self::bfs_order`].
    fn measure_near_error(&self) -> Result<Option<ssdann_layout::near_error::NearError>> {
        let l = self.header.layout;
        let m = self.pq.m();
        let src = ssdann_layout::near_error::Source {
            header: &self.header,
            path: &self.file.path,
            pq: &self.pq,
            refine: self.refine.as_ref(),
        };
        let mut buf = AlignedBuf::new(l.block_bytes());
        ssdann_layout::near_error::measure(
            &src,
            &|id| self.labels.is_free(id as usize),
            &mut |id, out| {
                let off = self.checked_record(id, &mut buf)?;
                out.clear();
                out.extend_from_slice(&buf.as_slice()[off..off + l.record_bytes]);
                Ok(())
            },
            // ids < n: `measure` checks every list against n, and the codes are n × M
            &mut |id, out| {
                out.copy_from_slice(&self.codes[id as usize * m..(id as usize + 1) * m]);
                Ok(())
            },
        )
    }

    /// Reads node `id`'s block into `buf` and checks its record; returns the record's
    /// offset in the block.
    fn checked_record(&self, id: u32, buf: &mut AlignedBuf) -> Result<usize> {
        let l = self.header.layout;
        self.read_block_for(id, buf)?;
        let off = l.offset_in_block(u64::from(id));
        l.record(buf.as_slice(), off)
            .check(
                u64::from(id),
                self.header.n_slots,
                self.header.max_degree as usize,
            )
            .map_err(|detail| EngineError::Inconsistent {
                path: self.file.path.clone(),
                detail,
            })?;
        Ok(off)
    }

    /// A node cache of the records of `ids`.
    ///
    /// # Errors
    /// As [`Self::bfs_order`].
    pub(crate) fn load_cache(&self, ids: &[u32]) -> Result<NodeCache> {
        let l = self.header.layout;
        let mut cache = NodeCache {
            slots: HashMap::with_capacity(ids.len()),
            records: Vec::with_capacity(ids.len() * l.record_bytes),
        };
        let mut buf = AlignedBuf::new(l.block_bytes());
        for &id in ids {
            let off = self.checked_record(id, &mut buf)?;
            cache.slots.insert(id, cache.records.len());
            cache
                .records
                .extend_from_slice(&buf.as_slice()[off..off + l.record_bytes]);
        }
        Ok(cache)
    }
}
