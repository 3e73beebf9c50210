//! The byte format of the merge's redo journal `merge.journal` (docs/FORMAT.md,
//! "merge.journal"): encoding and decoding of its header, entries and commit entry. No I/O:
//! the engine streams the file and applies these rules (a journal may be gigabytes).
//!
//! Validation ([`parse`]) — recovery refuses, never guesses. The header must match the index
//! (block size; formats 3, 4: the generation the merge started from, and a bound on every
//! block number); every entry's CRC must hold and its block number must lie inside the index
//! the commit describes; the commit entry's header image must decode, keep the index's shape
//! and advance its generation by one, and its S must leave room for the trimmed WAL's next
//! sequence number. The block entries are fsynced before the commit entry is written, and the
//! commit entry is written twice: a valid copy proves every entry before it was durable, and
//! a copy damaged on the medium is survivable. From format 4 each copy starts on a sector
//! boundary and owns two whole sectors (no sector holds bytes of both), and records where the
//! block entries end, so a copy is accepted only where the entries it commits really end.
//! A journal with a valid commit copy and any damage before it is an error naming the file
//! and the entry. A journal with no valid commit copy is uncommitted — unless index.ssd's
//! header already carries the merge's generation (the flip happened, so the commit was
//! durable and is now damaged): that is an error too.
//!
//! ```text
//! header, formats 3 and 4 (40 bytes, under its CRC):
//!   0  8  magic "SSDMJRN4" ("SSDMJRN3")
//!   8  4  block_bytes (the index's block size; checked against index.ssd's header)
//!  12  4  reserved (0)
//!  16  8  base_generation: the header generation the merge started from
//!  24  8  blocks_after: blocks of index.ssd after the merge (every entry's block < it)
//!  32  4  reserved (0)
//!  36  4  CRC32 of bytes 0..36
//! header, formats 1 and 2 (16 bytes, no CRC; still finished on open): magic "SSDMJRN1" /
//!   "SSDMJRN2", block_bytes u32, 4 zero bytes
//! entry:             block u64, CRC32 u32 of (block bytes ‖ image), image
//!   block image:     block_bytes bytes (the new content of that block of index.ssd)
//!   commit (block = u64::MAX), format 4: slot u64, wal_seq u64, entries_end u64,
//!                                        labels_crc u32, codes_crc u32 (the body CRCs of
//!                                        the staged labels.bin.merge, pq_codes.bin.merge),
//!                                        header slot image (4 KB)
//!   commit,                 formats 2, 3: slot u64, wal_seq u64, header slot image (4 KB)
//!   commit,                     format 1: slot u64, header slot image (4096 B)
//! commit region, format 4: zeros from entries_end to the next multiple of 4096 (A), copy 1
//!   at A, copy 2 at A + 8192, each zero-padded to 8192 bytes; the file ends at A + 16384.
//! commit, format 3: two copies back to back right after the last entry; formats 1, 2: one.
//! ```

use crate::sector::SECTOR_BYTES;

mod parse;
mod staged;
pub use parse::{parse, CommittedJournal, ParsedJournal};
pub use staged::{check_staged, stored_body_crc, StagedFile};

/// File name of the redo journal inside an index directory.
pub const JOURNAL_FILE: &str = "merge.journal";
/// Magic of a format-4 journal (the one this build writes: format 3's header, and commit
/// copies that each own whole sectors and record where the block entries end).
pub const JOURNAL_MAGIC: [u8; 8] = *b"SSDMJRN4";
/// Magic of a format-3 journal (a checksummed header that binds the journal to one index
/// generation and bounds its block numbers; commit copies back to back); still finished.
pub const JOURNAL_MAGIC_V3: [u8; 8] = *b"SSDMJRN3";
/// Magic of a format-2 journal (its commit entry records the WAL sequence number folded in).
pub const JOURNAL_MAGIC_V2: [u8; 8] = *b"SSDMJRN2";
/// Magic of a format-1 journal (its merge emptied the whole WAL); still finished on open.
pub const JOURNAL_MAGIC_V1: [u8; 8] = *b"SSDMJRN1";
/// Bytes of a format-3 or -4 journal header.
pub const JOURNAL_HEADER_BYTES: usize = 40;
/// Bytes of a format-1 or -2 journal header.
pub const JOURNAL_HEADER_BYTES_V2: usize = 16;
/// Bytes of an entry before its image: block number and CRC32.
pub const ENTRY_HEAD_BYTES: usize = 12;
/// The block number that marks the commit entry.
pub const COMMIT: u64 = u64::MAX;
/// Bytes each commit copy owns in a format-4 journal: two whole sectors, starting on a
/// sector boundary (a copy, head and image, is 4,140 bytes).
pub const COMMIT_COPY_BYTES: u64 = 2 * SECTOR_BYTES as u64;
/// Bytes of a format-4 commit entry's image: slot, S, entries_end, the two staged files'
/// body CRCs, header slot image.
pub const COMMIT_BYTES_V4: usize = 32 + SECTOR_BYTES;

// A format-4 commit copy (head and image) fits the sectors it owns.
const _: () = assert!((ENTRY_HEAD_BYTES + COMMIT_BYTES_V4) as u64 <= COMMIT_COPY_BYTES);
const _: () = assert!(COMMIT_COPY_BYTES.is_multiple_of(SECTOR_BYTES as u64));

/// The index the journal's tests, fuzz targets and seeds check journals against (not for
/// production use): 384-d f32 L2, R = 64 (two nodes per 4 KB block), 100 nodes (50 blocks),
/// entry point 3, built with L = 100, α = 1.2, PQ `pq_m` bytes, at header `generation`.
///
/// # Panics
/// Never: the layout of 384-d f32 with R = 64 is valid.
#[doc(hidden)]
pub fn example_index(generation: u64, pq_m: u32) -> crate::header::IndexHeader {
    use crate::{ElementType, Metric};
    let layout = match crate::sector::NodeLayout::new(384, ElementType::F32, 64) {
        Ok(l) => l,
        Err(e) => panic!("384-d f32 with R = 64 has a layout: {e}"),
    };
    crate::header::IndexHeader {
        generation,
        n_slots: 100,
        live_count: 100,
        dim: 384,
        element: ElementType::F32,
        metric: Metric::L2,
        max_degree: 64,
        layout,
        entry_point: 3,
        pq_m,
        build_l: 100,
        build_alpha: 1.2,
        saturated: false,
        near_error: None,
    }
}

/// Where a format-4 journal's first commit copy starts when its block entries end at byte
/// `entries_end`: the next sector boundary (`entries_end` itself when aligned).
pub fn commit_region_start(entries_end: u64) -> u64 {
    entries_end.div_ceil(SECTOR_BYTES as u64) * SECTOR_BYTES as u64
}

/// The header of a format-4 journal of `block_bytes`-byte block images, for a merge from
/// header generation `base_generation` to an index of `blocks_after` blocks.
pub fn encode_header(
    block_bytes: u32,
    base_generation: u64,
    blocks_after: u64,
) -> [u8; JOURNAL_HEADER_BYTES] {
    encode_header_v34(&JOURNAL_MAGIC, block_bytes, base_generation, blocks_after)
}

/// The 40-byte header of a format-3 (`JOURNAL_MAGIC_V3`) or format-4 (`JOURNAL_MAGIC`)
/// journal (format 3: for tests of the old format's reader).
pub fn encode_header_v34(
    magic: &[u8; 8],
    block_bytes: u32,
    base_generation: u64,
    blocks_after: u64,
) -> [u8; JOURNAL_HEADER_BYTES] {
    let mut h = [0u8; JOURNAL_HEADER_BYTES];
    h[..8].copy_from_slice(magic);
    h[8..12].copy_from_slice(&block_bytes.to_le_bytes());
    h[16..24].copy_from_slice(&base_generation.to_le_bytes());
    h[24..32].copy_from_slice(&blocks_after.to_le_bytes());
    let crc = crc32fast::hash(&h[..36]);
    h[36..40].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The 16-byte header of a format-1 or -2 journal (for tests of the old formats' reader).
pub fn encode_header_v2(magic: &[u8; 8], block_bytes: u32) -> [u8; JOURNAL_HEADER_BYTES_V2] {
    let mut h = [0u8; JOURNAL_HEADER_BYTES_V2];
    h[..8].copy_from_slice(magic);
    h[8..12].copy_from_slice(&block_bytes.to_le_bytes());
    h
}

/// A decoded journal header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalHeader {
    /// Format version (1, 2, 3 or 4).
    pub version: u32,
    /// Bytes of every block image.
    pub block_bytes: usize,
    /// Bytes of the header itself (where the first entry starts).
    pub header_bytes: usize,
    /// The header generation the merge started from (formats 3, 4; None before).
    pub base_generation: Option<u64>,
    /// Blocks of index.ssd after the merge (formats 3, 4; None before).
    pub blocks_after: Option<u64>,
}

impl JournalHeader {
    /// Bytes of the commit entry's image.
    pub fn commit_bytes(&self) -> usize {
        match self.version {
            1 => 8 + SECTOR_BYTES,
            4 => COMMIT_BYTES_V4,
            _ => 16 + SECTOR_BYTES,
        }
    }
    /// Bytes of the image of an entry for `block`.
    pub fn image_bytes(&self, block: u64) -> usize {
        if block == COMMIT {
            self.commit_bytes()
        } else {
            self.block_bytes
        }
    }
}

/// Why a journal header is not readable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Not a journal's magic, or shorter than its header.
    NotAJournal,
    /// A format-3 or -4 header whose CRC or reserved fields are wrong.
    Damaged(String),
}

/// Decodes a journal header from the first bytes of the file (`head` may be longer than
/// the header).
///
/// # Errors
/// [`HeaderError`].
pub fn decode_header(head: &[u8]) -> std::result::Result<JournalHeader, HeaderError> {
    if head.len() < JOURNAL_HEADER_BYTES_V2 {
        return Err(HeaderError::NotAJournal);
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let u64_at = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let magic = &head[..8];
    if magic == JOURNAL_MAGIC || magic == JOURNAL_MAGIC_V3 {
        if head.len() < JOURNAL_HEADER_BYTES {
            return Err(HeaderError::NotAJournal);
        }
        let stored = u32_at(36);
        let got = crc32fast::hash(&head[..36]);
        if stored != got {
            return Err(HeaderError::Damaged(format!(
                "header checksum mismatch (stored {stored:#010x}, computed {got:#010x})"
            )));
        }
        if u32_at(12) != 0 || u32_at(32) != 0 {
            return Err(HeaderError::Damaged(
                "reserved header fields are not 0".into(),
            ));
        }
        return Ok(JournalHeader {
            version: if magic == JOURNAL_MAGIC { 4 } else { 3 },
            block_bytes: u32_at(8) as usize,
            header_bytes: JOURNAL_HEADER_BYTES,
            base_generation: Some(u64_at(16)),
            blocks_after: Some(u64_at(24)),
        });
    }
    let version = if magic == JOURNAL_MAGIC_V2 {
        2
    } else if magic == JOURNAL_MAGIC_V1 {
        1
    } else {
        return Err(HeaderError::NotAJournal);
    };
    Ok(JournalHeader {
        version,
        block_bytes: u32_at(8) as usize,
        header_bytes: JOURNAL_HEADER_BYTES_V2,
        base_generation: None,
        blocks_after: None,
    })
}

/// The CRC32 an entry for `block` with `image` carries.
pub fn entry_crc(block: u64, image: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&block.to_le_bytes());
    h.update(image);
    h.finalize()
}

/// Appends the entry (head and image) for `block` to `out`.
pub fn encode_entry(block: u64, image: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&entry_crc(block, image).to_le_bytes());
    out.extend_from_slice(image);
}

/// Decodes an entry head: (block number, stored CRC32).
pub fn decode_entry_head(eh: &[u8; ENTRY_HEAD_BYTES]) -> (u64, u32) {
    let mut b8 = [0u8; 8];
    b8.copy_from_slice(&eh[..8]);
    (
        u64::from_le_bytes(b8),
        u32::from_le_bytes([eh[8], eh[9], eh[10], eh[11]]),
    )
}

/// The commit entry: which header slot to write, the last WAL sequence number folded in,
/// and the new header slot image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitEntry {
    /// Header slot (0 or 1) the new header goes to.
    pub slot: u64,
    /// The last WAL sequence number the merge folded in (`u64::MAX`: all of them, format 1).
    pub wal_seq: u64,
    /// Where the block entries end, the offset the first copy's sector boundary is taken
    /// from (format 4; None before).
    pub entries_end: Option<u64>,
    /// The body CRC32s of the staged `labels.bin.merge` and `pq_codes.bin.merge` that the
    /// merge renames into place (format 4; None before).
    pub staged_crcs: Option<[u32; 2]>,
    /// The new header slot image (4096 bytes).
    pub header: Vec<u8>,
}

/// The commit region of a format-4 journal whose block entries end at byte `entries_end`:
/// zeros up to the next sector boundary, then the commit entry (`c.slot`, S = `c.wal_seq`,
/// `entries_end`, `c.staged_crcs`, the new header slot image `c.header`) twice, each copy
/// zero-padded to [`COMMIT_COPY_BYTES`]. Written at `entries_end`; the journal then ends on
/// a sector boundary. (`c.entries_end` is ignored: `entries_end` is recorded.)
pub fn encode_commit_region(entries_end: u64, c: &CommitEntry) -> Vec<u8> {
    let mut image = Vec::with_capacity(COMMIT_BYTES_V4);
    image.extend_from_slice(&c.slot.to_le_bytes());
    image.extend_from_slice(&c.wal_seq.to_le_bytes());
    image.extend_from_slice(&entries_end.to_le_bytes());
    for crc in c.staged_crcs.unwrap_or_default() {
        image.extend_from_slice(&crc.to_le_bytes());
    }
    image.extend_from_slice(&c.header);
    let pad = (commit_region_start(entries_end) - entries_end) as usize;
    let mut out = vec![0u8; pad];
    for _ in 0..2 {
        let at = out.len();
        encode_entry(COMMIT, &image, &mut out);
        out.resize(at + COMMIT_COPY_BYTES as usize, 0);
    }
    out
}

/// The image of a format-2/3 commit entry (format 4: [`encode_commit_region`]).
pub fn encode_commit(slot: u64, wal_seq: u64, header: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(16 + header.len());
    c.extend_from_slice(&slot.to_le_bytes());
    c.extend_from_slice(&wal_seq.to_le_bytes());
    c.extend_from_slice(header);
    c
}

/// Decodes a commit entry's image (`image.len() == h.commit_bytes()`).
pub fn decode_commit(h: &JournalHeader, image: &[u8]) -> CommitEntry {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&image[8 * i..8 * i + 8]);
        u64::from_le_bytes(w)
    };
    let crc_at =
        |at: usize| u32::from_le_bytes([image[at], image[at + 1], image[at + 2], image[at + 3]]);
    let (wal_seq, entries_end, staged_crcs, header_at) = match h.version {
        1 => (u64::MAX, None, None, 8),
        4 => (word(1), Some(word(2)), Some([crc_at(24), crc_at(28)]), 32),
        _ => (word(1), None, None, 16),
    };
    CommitEntry {
        slot: word(0),
        wal_seq,
        entries_end,
        staged_crcs,
        header: image[header_at..].to_vec(),
    }
}

/// Positioned reads of a journal's bytes (a file, or a byte slice in tests and fuzzing).
pub trait ReadAt {
    /// Fills `buf` from byte `offset`.
    ///
    /// # Errors
    /// The I/O error, or `UnexpectedEof` past the end.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(buf.len()).filter(|&e| e <= self.len()) {
            Some(end) => {
                buf.copy_from_slice(&self[start..end]);
                Ok(())
            }
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

#[cfg(test)]
mod tests;
