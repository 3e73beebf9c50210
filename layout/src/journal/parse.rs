//! Parsing and validating a journal against the index it belongs to (the rules: the parent
//! module's docs, "Validation"; docs/FORMAT.md, "merge.journal").

use super::{
    commit_region_start, decode_commit, decode_entry_head, decode_header, entry_crc, HeaderError,
    JournalHeader, ReadAt, COMMIT, COMMIT_BYTES_V4, COMMIT_COPY_BYTES, ENTRY_HEAD_BYTES,
};
use crate::error::LayoutError;
use crate::header::IndexHeader;
use crate::sector::SECTOR_BYTES;
use crate::wal::MAX_SEQ;
use crate::Result;
use std::collections::BTreeMap;
use std::path::Path;

/// Sequential reads through a [`ReadAt`] in 1 MiB chunks.
struct Sequential<'a> {
    f: &'a dyn ReadAt,
    buf: Vec<u8>,
    /// File offset of `buf[0]`, and of the next byte to hand out.
    start: u64,
    pos: u64,
    total: u64,
}

impl<'a> Sequential<'a> {
    fn new(f: &'a dyn ReadAt, pos: u64, total: u64) -> Self {
        Sequential {
            f,
            buf: Vec::new(),
            start: pos,
            pos,
            total,
        }
    }
    fn read_exact(&mut self, out: &mut [u8]) -> std::io::Result<()> {
        let end = self.pos + out.len() as u64;
        if end > self.start + self.buf.len() as u64 {
            let len = (out.len() as u64)
                .max(1 << 20)
                .min(self.total.saturating_sub(self.pos));
            if len < out.len() as u64 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.resize(len as usize, 0);
            self.f.read_exact_at(&mut self.buf, self.pos)?;
            self.start = self.pos;
        }
        let at = (self.pos - self.start) as usize;
        out.copy_from_slice(&self.buf[at..at + out.len()]);
        self.pos = end;
        Ok(())
    }
}

/// A parsed, validated, committed journal: where the latest image of each block lies in the
/// journal (CRCs checked while parsing; images are read again, block by block, when
/// applied), and the new header slot.
pub struct CommittedJournal {
    /// Block → byte offset of its latest image in the journal.
    pub blocks: BTreeMap<u64, u64>,
    /// Bytes of every block image.
    pub block_bytes: usize,
    /// The last WAL sequence number the merge folded in (`u64::MAX`: all of them).
    pub wal_seq: u64,
    /// Header slot (0 or 1) the new header goes to.
    pub slot: u64,
    /// The body CRC32s of the label map and the PQ codes the merge renames into place
    /// (format 4; None before: the files are then checked for n and M only).
    pub staged_crcs: Option<[u32; 2]>,
    /// The new header slot image (4096 bytes), and its decoded form.
    pub header: Vec<u8>,
    pub new_header: IndexHeader,
}

/// What [`parse`] found.
pub enum ParsedJournal {
    /// A valid, committed journal: finish it (boxed: it holds the header images).
    Committed(Box<CommittedJournal>),
    /// No valid commit entry, and index.ssd still at the merge's base generation: a merge
    /// that stopped before its commit fsync returned.
    Uncommitted,
}

fn damaged(path: &Path, what: String) -> LayoutError {
    LayoutError::corrupt(path, "merge journal", what)
}

/// The image of a valid commit entry of `commit_len` image bytes at byte `at`, if one lies
/// there whole (head says commit, CRC holds).
fn commit_copy(f: &dyn ReadAt, at: u64, total: u64, commit_len: usize) -> Option<Vec<u8>> {
    let n = (ENTRY_HEAD_BYTES + commit_len) as u64;
    if at.checked_add(n)? > total {
        return None;
    }
    let mut e = vec![0u8; n as usize];
    f.read_exact_at(&mut e, at).ok()?;
    let mut eh = [0u8; ENTRY_HEAD_BYTES];
    eh.copy_from_slice(&e[..ENTRY_HEAD_BYTES]);
    let (block, stored) = decode_entry_head(&eh);
    (block == COMMIT && entry_crc(block, &e[ENTRY_HEAD_BYTES..]) == stored)
        .then(|| e.split_off(ENTRY_HEAD_BYTES))
}

/// Where a valid commit entry lies near the end of the file, if one does: formats 1–3 at the
/// last two entry positions (the commit is always last, written twice in format 3); format 4
/// at any sector boundary of the last three commit-copy sizes (its copies own whole sectors at
/// the end, or, torn before the commit fsync, near it).
fn tail_commit(f: &dyn ReadAt, total: u64) -> Option<u64> {
    for commit_len in [16 + SECTOR_BYTES, 8 + SECTOR_BYTES] {
        let n = (ENTRY_HEAD_BYTES + commit_len) as u64;
        for copies in [1, 2] {
            let Some(at) = total.checked_sub(copies * n) else {
                continue;
            };
            if commit_copy(f, at, total, commit_len).is_some() {
                return Some(at);
            }
        }
    }
    let sector = SECTOR_BYTES as u64;
    let lo = (total.saturating_sub(3 * COMMIT_COPY_BYTES) / sector * sector).max(sector);
    (lo..total)
        .step_by(SECTOR_BYTES)
        .find(|&at| commit_copy(f, at, total, COMMIT_BYTES_V4).is_some())
}

/// Checks a commit entry's new header against the index's current one (`cur`) and the
/// journal header.
fn check_commit(
    jh: &JournalHeader,
    cur: &IndexHeader,
    slot: u64,
    wal_seq: u64,
    new: &IndexHeader,
) -> std::result::Result<(), String> {
    if slot > 1 {
        return Err(format!("header slot {slot} (0 or 1)"));
    }
    // recovery trims the WAL to start at S + 1, which must be a sequence number (< 2^62);
    // format 1's S is u64::MAX by definition ("every record")
    if jh.version >= 2 && wal_seq >= MAX_SEQ - 1 {
        return Err(format!(
            "S = {wal_seq}: the trimmed WAL would start at S + 1, but sequence numbers stay below {MAX_SEQ}"
        ));
    }
    let same_shape = new.dim == cur.dim
        && new.element == cur.element
        && new.metric == cur.metric
        && new.max_degree == cur.max_degree
        && new.layout == cur.layout
        && new.pq_m == cur.pq_m;
    if !same_shape {
        return Err(
            "its header changes the index's shape (d, type, metric, R, layout or M)".into(),
        );
    }
    // the live index is either still before the merge (generation g) or already flipped (g + 1)
    let base = jh.base_generation.unwrap_or(new.generation.wrapping_sub(1));
    if base.checked_add(1) != Some(new.generation)
        || (cur.generation != base && cur.generation != new.generation)
    {
        return Err(format!(
            "its header has generation {} for a merge from {base}, but index.ssd is at generation {}",
            new.generation, cur.generation
        ));
    }
    let blocks = new.layout.blocks_for(new.n_slots);
    if let Some(after) = jh.blocks_after {
        if blocks != after {
            return Err(format!(
                "its header has {blocks} blocks, the journal header {after}"
            ));
        }
    }
    Ok(())
}

/// The block entries from the header on, up to the first byte that is not a valid block
/// entry.
struct Scan {
    /// Block → byte offset of its latest image.
    blocks: BTreeMap<u64, u64>,
    /// Where the valid block entries end.
    stop: u64,
    /// Why they end there (for errors).
    why: String,
    /// The entry at `stop` is marked as a commit entry.
    at_commit: bool,
}

fn scan_blocks(path: &Path, f: &dyn ReadAt, jh: &JournalHeader, total: u64) -> Result<Scan> {
    let io = |e| LayoutError::io(path, e);
    let mut r = Sequential::new(f, jh.header_bytes as u64, total);
    let mut off = jh.header_bytes as u64;
    let eh_len = ENTRY_HEAD_BYTES as u64;
    let mut blocks = BTreeMap::new();
    let mut image = vec![0u8; jh.block_bytes];
    let block_limit = jh.blocks_after.unwrap_or(u64::MAX);
    let end = |blocks, stop, why: &str, at_commit| {
        Ok(Scan {
            blocks,
            stop,
            why: why.into(),
            at_commit,
        })
    };
    loop {
        if off == total {
            return end(blocks, off, "the file ends before a commit entry", false);
        }
        if off + eh_len > total {
            return end(
                blocks,
                off,
                "an entry cut short by the end of the file",
                false,
            );
        }
        let mut eh = [0u8; ENTRY_HEAD_BYTES];
        r.read_exact(&mut eh).map_err(io)?;
        let (block, stored) = decode_entry_head(&eh);
        if block == COMMIT {
            return end(blocks, off, "the commit entry fails its checksum", true);
        }
        if block >= block_limit {
            let why = format!("block {block} ≥ the {block_limit} blocks the merge writes");
            return end(blocks, off, &why, false);
        }
        if off + eh_len + jh.block_bytes as u64 > total {
            return end(
                blocks,
                off,
                "an entry cut short by the end of the file",
                false,
            );
        }
        r.read_exact(&mut image).map_err(io)?;
        if entry_crc(block, &image) != stored {
            let why = format!("the entry for block {block} fails its checksum");
            return end(blocks, off, &why, false);
        }
        blocks.insert(block, off + eh_len);
        off += eh_len + jh.block_bytes as u64;
    }
}

/// Parses and validates a journal (the file `path`, for errors) of `total` bytes, read
/// through `f`, against the index's current header `cur` (see the module docs, "Validation").
/// Reads the entries in order, in large sequential reads, and allocates no more than one
/// image beside the block map (bounded by the file's size).
///
/// # Errors
/// [`LayoutError::Corrupt`] naming the file and the entry for a damaged committed journal,
/// a journal without a valid commit while index.ssd already carries the merge's generation,
/// or a journal that does not belong to this index; [`LayoutError::Io`].
pub fn parse(path: &Path, f: &dyn ReadAt, total: u64, cur: &IndexHeader) -> Result<ParsedJournal> {
    let io = |e| LayoutError::io(path, e);
    let bb_now = cur.layout.block_bytes();
    let mut head = vec![0u8; super::JOURNAL_HEADER_BYTES.min(total as usize)];
    f.read_exact_at(&mut head, 0).map_err(io)?;
    let jh = match decode_header(&head) {
        Ok(h) => h,
        Err(e) => {
            return match (e, tail_commit(f, total)) {
                (_, Some(at)) => Err(damaged(
                    path,
                    format!("the header is unreadable but a valid commit entry lies at byte offset {at}: a committed journal is damaged; refusing to recover or delete it"),
                )),
                (HeaderError::NotAJournal, None) | (HeaderError::Damaged(_), None) => {
                    Ok(ParsedJournal::Uncommitted)
                }
            };
        }
    };
    if jh.block_bytes != bb_now {
        return Err(damaged(
            path,
            format!("header block_bytes = {} but index.ssd's blocks are {bb_now} bytes: not this index's journal", jh.block_bytes),
        ));
    }
    if let Some(g) = jh.base_generation {
        if g != cur.generation && g.checked_add(1) != Some(cur.generation) {
            return Err(damaged(
                path,
                format!("header base_generation = {g} but index.ssd is at generation {}: not this index's journal", cur.generation),
            ));
        }
    }
    let scan = scan_blocks(path, f, &jh, total)?;
    let found = if jh.version == 4 {
        commit_v4(path, f, &jh, total, &scan)?
    } else {
        commit_v123(path, f, &jh, total, &scan)?
    };
    if let Some((at, image)) = found {
        return commit(path, &jh, cur, at, &image, scan.blocks);
    }
    if let Some(at) = tail_commit(f, total) {
        return Err(damaged(
            path,
            format!("entry at byte offset {}: {}; a valid commit entry lies at byte offset {at}: a committed journal is damaged; refusing to recover or delete it", scan.stop, scan.why),
        ));
    }
    if let Some(g) = jh
        .base_generation
        .filter(|g| g.checked_add(1) == Some(cur.generation))
    {
        return Err(damaged(
            path,
            format!("no valid commit entry (entries end at byte offset {}: {}), but index.ssd's header is already at generation {}, the one this merge from {g} commits: the commit was durable and is damaged; refusing to recover or delete it", scan.stop, scan.why, cur.generation),
        ));
    }
    Ok(ParsedJournal::Uncommitted)
}

/// Formats 1–3: the commit entry right after the block entries (format 3: a second copy
/// after it, valid and equal, damaged, or torn; or only the second copy valid): its byte
/// offset and image, if valid.
fn commit_v123(
    path: &Path,
    f: &dyn ReadAt,
    jh: &JournalHeader,
    total: u64,
    scan: &Scan,
) -> Result<Option<(u64, Vec<u8>)>> {
    let len = jh.commit_bytes();
    let copy_len = (ENTRY_HEAD_BYTES + len) as u64;
    let off = scan.stop;
    if let Some(image) = scan
        .at_commit
        .then(|| commit_copy(f, off, total, len))
        .flatten()
    {
        let end = off + copy_len;
        // formats 1, 2: one copy; format 3: a second copy follows (valid and equal, or
        // damaged: the first copy is the commit; cut short: a torn write of it)
        if end != total && !(jh.version == 3 && total - end <= copy_len) {
            return Err(damaged(
                path,
                format!(
                    "entry at byte offset {end}: {} bytes follow the commit entry",
                    total - end
                ),
            ));
        }
        if let Some(second) = commit_copy(f, end, total, len) {
            if second != image {
                return Err(damaged(
                    path,
                    format!(
                        "entry at byte offset {end}: the two copies of the commit entry differ"
                    ),
                ));
            }
        }
        return Ok(Some((off, image)));
    }
    // the first copy of the commit is damaged and the second, right after it, is valid
    if jh.version == 3 && off + 2 * copy_len == total {
        if let Some(image) = commit_copy(f, off + copy_len, total, len) {
            return Ok(Some((off + copy_len, image)));
        }
    }
    Ok(None)
}

/// Format 4: the commit copies at the first sector boundary at or after the block entries'
/// end and 8 KB after it; a copy counts only when it records that same end (so a damaged
/// last block entry can never pass for the end of the entries). Its byte offset and image,
/// if one does.
fn commit_v4(
    path: &Path,
    f: &dyn ReadAt,
    jh: &JournalHeader,
    total: u64,
    scan: &Scan,
) -> Result<Option<(u64, Vec<u8>)>> {
    let first = commit_region_start(scan.stop);
    let at = [first, first + COMMIT_COPY_BYTES];
    let copies = at.map(|a| commit_copy(f, a, total, COMMIT_BYTES_V4));
    if let [Some(a), Some(b)] = &copies {
        if a != b {
            return Err(damaged(
                path,
                format!(
                    "entry at byte offset {}: the two copies of the commit entry differ",
                    at[1]
                ),
            ));
        }
    }
    for (k, copy) in copies.into_iter().enumerate() {
        let Some(image) = copy else { continue };
        let ends = decode_commit(jh, &image).entries_end;
        if ends != Some(scan.stop) {
            return Err(damaged(
                path,
                format!("entry at byte offset {}: {}; the commit entry at byte offset {} says the entries end at {}: a committed journal is damaged; refusing to recover or delete it", scan.stop, scan.why, at[k], ends.unwrap_or(0)),
            ));
        }
        let region_end = first + 2 * COMMIT_COPY_BYTES;
        if total > region_end {
            return Err(damaged(
                path,
                format!(
                    "entry at byte offset {region_end}: {} bytes follow the commit entry",
                    total - region_end
                ),
            ));
        }
        return Ok(Some((at[k], image)));
    }
    Ok(None)
}

/// Validates the commit entry (image `image`, at byte offset `off`) and returns the
/// committed journal.
fn commit(
    path: &Path,
    jh: &JournalHeader,
    cur: &IndexHeader,
    off: u64,
    image: &[u8],
    blocks: BTreeMap<u64, u64>,
) -> Result<ParsedJournal> {
    let c = decode_commit(jh, image);
    let new = IndexHeader::decode(path, (c.slot & 1) as usize, &c.header)
        .map_err(|e| damaged(path, format!("the commit entry at byte offset {off}: {e}")))?;
    check_commit(jh, cur, c.slot, c.wal_seq, &new).map_err(|why| {
        damaged(
            path,
            format!("the commit entry at byte offset {off}: {why}"),
        )
    })?;
    let nb = new.layout.blocks_for(new.n_slots);
    if let Some((&b, _)) = blocks.range(nb..).next() {
        return Err(damaged(
            path,
            format!("an entry for block {b} lies past the {nb} blocks of the committed index"),
        ));
    }
    Ok(ParsedJournal::Committed(Box::new(CommittedJournal {
        blocks,
        block_bytes: jh.block_bytes,
        wal_seq: c.wal_seq,
        slot: c.slot,
        staged_crcs: c.staged_crcs,
        header: c.header,
        new_header: new,
    })))
}
