//! `ssdann verify`: checks every checksum and every structural invariant of an index
//! directory (docs/FORMAT.md): both header slots, the CRC32 of every node block, every
//! record's degree ≤ R, neighbour ids < n and no self-loops, and that the PQ files match the
//! header (same d, M and n).

use crate::error::EngineError;
use crate::Result;
use ssdann_builder::build::INDEX_FILE;
use ssdann_layout::pq::{read_codes, PQ_CODES_FILE, PQ_PIVOTS_FILE};
use ssdann_layout::sector::{check_block, SECTOR_BYTES};
use ssdann_layout::{IndexHeader, LayoutError, PqCodebook};
use std::io::Read;
use std::path::Path;

/// Most problems listed before verify stops collecting (it still reports the count).
pub const MAX_LISTED_PROBLEMS: usize = 100;

/// The outcome of [`verify`].
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// The header in force (None when no slot is valid).
    pub header: Option<IndexHeader>,
    /// Which slot is in force.
    pub slot: usize,
    /// Blocks checked.
    pub blocks_checked: u64,
    /// Nodes checked.
    pub nodes_checked: u64,
    /// Total edges seen.
    pub edges: u64,
    /// Problems found (the first [`MAX_LISTED_PROBLEMS`]), each naming where.
    pub problems: Vec<String>,
    /// Total problems found.
    pub problem_count: u64,
    /// Pending updates in the WAL (records).
    pub wal_records: u64,
    /// Observations that are not problems (pending work the next open will do).
    pub notes: Vec<String>,
    /// Set when a committed merge journal is unfinished: the sector file may be half
    /// rewritten until a read-write open finishes the merge (the block checks are skipped).
    pub needs_recovery: Option<String>,
}

impl VerifyReport {
    /// Whether the index passed every check (and needs no recovery).
    pub fn ok(&self) -> bool {
        self.problem_count == 0 && self.needs_recovery.is_none()
    }
    fn problem(&mut self, p: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(p);
        }
    }
}

/// Checks the index in directory `dir`; problems in the data are reported in the
/// [`VerifyReport`], not as `Err`.
///
/// # Errors
/// [`EngineError::Io`] when `index.ssd` cannot be opened or read at all.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    let mut rep = VerifyReport::default();
    let path = dir.join(INDEX_FILE);
    let mut f = std::fs::File::open(&path).map_err(|e| EngineError::io(&path, e))?;
    let len = f.metadata().map_err(|e| EngineError::io(&path, e))?.len();
    let mut slots = vec![0u8; 2 * SECTOR_BYTES];
    if len < slots.len() as u64 {
        rep.problem(format!(
            "{}: file is {len} bytes, shorter than the two 4096-byte header slots",
            path.display()
        ));
        return Ok(rep);
    }
    f.read_exact(&mut slots)
        .map_err(|e| EngineError::io(&path, e))?;
    // Each slot on its own: a corrupt slot is a problem even when the other one is fine.
    for s in 0..2 {
        let bytes = &slots[s * SECTOR_BYTES..(s + 1) * SECTOR_BYTES];
        if s == 1 && bytes.iter().all(|&b| b == 0) {
            continue; // never written: allowed
        }
        if let Err(e) = IndexHeader::decode(&path, s, bytes) {
            rep.problem(e.to_string());
        }
    }
    let (header, slot) = match IndexHeader::choose(&path, &slots) {
        Ok(x) => x,
        Err(e) => {
            if rep.problem_count == 0 {
                rep.problem(e.to_string());
            }
            return Ok(rep);
        }
    };
    rep.slot = slot;
    // A committed merge journal means index.ssd may be half rewritten: that is not damage,
    // and the block checks would only list its symptoms. Say what the next open does.
    let jpath = dir.join(crate::merge::JOURNAL_FILE);
    if jpath.exists() {
        match crate::merge::journal::parse(&jpath, &header) {
            Ok(crate::merge::journal::Parsed::Committed(c)) => {
                rep.needs_recovery = Some(format!(
                    "{}: an interrupted merge is committed ({} blocks, generation {} → {}); the next read-write open finishes it",
                    jpath.display(),
                    c.blocks.len(),
                    header.generation.min(c.new_header.generation),
                    c.new_header.generation
                ));
                rep.header = Some(header);
                return Ok(rep);
            }
            Ok(crate::merge::journal::Parsed::Uncommitted) => rep.notes.push(format!(
                "{}: an uncommitted merge journal; the next read-write open discards it (the index is as before that merge)",
                jpath.display()
            )),
            Err(e) => rep.problem(e.to_string()),
        }
    }
    let layout = header.layout;
    if let Err(e) = header.check_file_len(&path, len) {
        rep.problem(e.to_string());
    }
    let n = header.n_slots;
    let blocks = layout.blocks_for(n);
    let block_bytes = layout.block_bytes();
    let avail_blocks =
        (len.saturating_sub(2 * SECTOR_BYTES as u64) / block_bytes as u64).min(blocks);
    let per_batch = ((8usize << 20) / block_bytes).max(1);
    let mut buf = vec![0u8; per_batch * block_bytes];
    let mut b = 0u64;
    while b < avail_blocks {
        let nb = (per_batch as u64).min(avail_blocks - b) as usize;
        let chunk = &mut buf[..nb * block_bytes];
        f.read_exact(chunk).map_err(|e| EngineError::io(&path, e))?;
        for (k, block) in chunk.chunks_exact(block_bytes).enumerate() {
            let bi = b + k as u64;
            rep.blocks_checked += 1;
            if let Err((stored, got)) = check_block(block) {
                let e = LayoutError::ChecksumMismatch {
                    path: path.clone(),
                    what: format!(
                        "sector {} (block {bi}, nodes {}..{})",
                        layout.block_sector(bi),
                        bi * layout.nodes_per_block as u64,
                        ((bi + 1) * layout.nodes_per_block as u64).min(n)
                    ),
                    expected: stored,
                    got,
                };
                rep.problem(e.to_string());
                continue;
            }
            let first = bi * layout.nodes_per_block as u64;
            for id in first..(first + layout.nodes_per_block as u64).min(n) {
                let rec = layout.record(block, layout.offset_in_block(id));
                rep.nodes_checked += 1;
                rep.edges += u64::from(rec.degree.min(header.max_degree));
                if let Err(p) = rec.check(id, n, header.max_degree as usize) {
                    rep.problem(format!(
                        "{}: sector {}: {p}",
                        path.display(),
                        layout.block_sector(bi)
                    ));
                }
            }
        }
        b += nb as u64;
    }
    if avail_blocks < blocks {
        rep.problem(format!(
            "{}: truncated: {} of {blocks} node blocks present",
            path.display(),
            avail_blocks
        ));
    }
    match PqCodebook::read(&dir.join(PQ_PIVOTS_FILE)) {
        Ok(pq) => {
            if pq.dim() != header.dim as usize || pq.m() != header.pq_m as usize {
                rep.problem(format!(
                    "{}: d = {}, M = {} but index.ssd has d = {}, M = {}",
                    dir.join(PQ_PIVOTS_FILE).display(),
                    pq.dim(),
                    pq.m(),
                    header.dim,
                    header.pq_m
                ));
            }
        }
        Err(e) => rep.problem(e.to_string()),
    }
    if let Err(e) = crate::state::read_refine(dir, &header) {
        rep.problem(e.to_string());
    }
    match read_codes(&dir.join(PQ_CODES_FILE)) {
        Ok((cn, cm, _)) => {
            if cn as u64 != n || cm != header.pq_m as usize {
                rep.problem(format!(
                    "{}: n = {cn}, M = {cm} but index.ssd has n = {n}, M = {}",
                    dir.join(PQ_CODES_FILE).display(),
                    header.pq_m
                ));
            }
        }
        Err(e) => rep.problem(e.to_string()),
    }
    let nav = dir.join(ssdann_layout::navigation::NAVIGATION_FILE);
    if nav.exists() {
        let m = header.pq_m as usize;
        if let Err(e) = ssdann_layout::navigation::NavigationGraph::read(&nav, n, m) {
            rep.problem(e.to_string());
        }
    }
    let labels_path = dir.join(ssdann_layout::labels::LABELS_FILE);
    // the checks of read_labels, without a copy of the map in RAM
    match ssdann_layout::labels::SlotLabels::open(&labels_path) {
        Ok(l) if l.len() as u64 != n => rep.problem(format!(
            "{}: {} labels but index.ssd has n = {n}",
            labels_path.display(),
            l.len()
        )),
        Ok(l) if l.free_slots() as u64 != n.saturating_sub(header.live_count) => {
            rep.problem(format!(
                "{}: {} free slots (label 2^64 - 1) but index.ssd has n = {n}, live_count = {}",
                labels_path.display(),
                l.free_slots(),
                header.live_count
            ))
        }
        Ok(_) => {}
        Err(e) => rep.problem(e.to_string()),
    }
    let wal = dir.join(crate::updates::wal::WAL_FILE);
    if wal.exists() {
        match crate::updates::wal::check(&wal, header.dim as usize) {
            Ok(r) => {
                rep.wal_records = r.ops.len() as u64;
                if r.truncated_bytes > 0 {
                    rep.notes.push(format!("{}: a torn tail of {} bytes (an unacknowledged append) will be truncated on open", wal.display(), r.truncated_bytes));
                }
            }
            Err(e) => rep.problem(e.to_string()),
        }
    }
    rep.header = Some(header);
    Ok(rep)
}
