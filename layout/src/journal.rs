//! The byte format of the merge's redo journal `merge.journal` (docs/FORMAT.md,
//! "merge.journal"): encoding and decoding of its header, entries and commit entry. No I/O:
//! the engine streams the file and applies these rules (a journal may be gigabytes).
//!
//! Validation ([`parse`]) — recovery refuses, never guesses. The header must match the index
//! (block size; format 3: the generation the merge started from, and a bound on every block
//! number); every entry's CRC must hold and its block number must lie inside the index the
//! commit describes; the commit entry's header image must decode, keep the index's shape and
//! advance its generation by one. The block entries are fsynced before the commit entry is
//! written, and the commit entry is written twice: a valid copy proves every entry before it
//! was durable, and a copy damaged on the medium is survivable. A journal with a valid commit
//! copy and any damage before it is an error naming the file and the entry. A journal with
//! no valid commit copy is uncommitted.
//!
//! ```text
//! header, format 3 (40 bytes, under its CRC):
//!   0  8  magic "SSDMJRN3"
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
//!   commit (block = u64::MAX), formats 2, 3: slot u64, wal_seq u64, header slot image (4 KB)
//!   commit,                    format 1: slot u64, header slot image (4096 B)
//! ```

use crate::error::LayoutError;
use crate::header::IndexHeader;
use crate::sector::SECTOR_BYTES;
use crate::Result;
use std::collections::BTreeMap;
use std::path::Path;

/// File name of the redo journal inside an index directory.
pub const JOURNAL_FILE: &str = "merge.journal";
/// Magic of a format-3 journal (the one this build writes: a checksummed header that binds
/// the journal to one index generation and bounds its block numbers).
pub const JOURNAL_MAGIC: [u8; 8] = *b"SSDMJRN3";
/// Magic of a format-2 journal (its commit entry records the WAL sequence number folded in).
pub const JOURNAL_MAGIC_V2: [u8; 8] = *b"SSDMJRN2";
/// Magic of a format-1 journal (its merge emptied the whole WAL); still finished on open.
pub const JOURNAL_MAGIC_V1: [u8; 8] = *b"SSDMJRN1";
/// Bytes of a format-3 journal header.
pub const JOURNAL_HEADER_BYTES: usize = 40;
/// Bytes of a format-1 or -2 journal header.
pub const JOURNAL_HEADER_BYTES_V2: usize = 16;
/// Bytes of an entry before its image: block number and CRC32.
pub const ENTRY_HEAD_BYTES: usize = 12;
/// The block number that marks the commit entry.
pub const COMMIT: u64 = u64::MAX;

/// The header of a format-3 journal of `block_bytes`-byte block images, for a merge from
/// header generation `base_generation` to an index of `blocks_after` blocks.
pub fn encode_header(
    block_bytes: u32,
    base_generation: u64,
    blocks_after: u64,
) -> [u8; JOURNAL_HEADER_BYTES] {
    let mut h = [0u8; JOURNAL_HEADER_BYTES];
    h[..8].copy_from_slice(&JOURNAL_MAGIC);
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
    /// Format version (1, 2 or 3).
    pub version: u32,
    /// Bytes of every block image.
    pub block_bytes: usize,
    /// Bytes of the header itself (where the first entry starts).
    pub header_bytes: usize,
    /// The header generation the merge started from (format 3; None before).
    pub base_generation: Option<u64>,
    /// Blocks of index.ssd after the merge (format 3; None before).
    pub blocks_after: Option<u64>,
}

impl JournalHeader {
    /// Bytes of the commit entry's image.
    pub fn commit_bytes(&self) -> usize {
        if self.version == 1 {
            8 + SECTOR_BYTES
        } else {
            16 + SECTOR_BYTES
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
    /// A format-3 header whose CRC or reserved fields are wrong.
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
    if magic == JOURNAL_MAGIC {
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
            version: 3,
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
    /// The new header slot image (4096 bytes).
    pub header: Vec<u8>,
}

/// The image of a format-2/3 commit entry.
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
    let (wal_seq, header_at) = if h.version == 1 {
        (u64::MAX, 8)
    } else {
        (word(1), 16)
    };
    CommitEntry {
        slot: word(0),
        wal_seq,
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
    /// The new header slot image (4096 bytes), and its decoded form.
    pub header: Vec<u8>,
    pub new_header: IndexHeader,
}

/// What [`parse`] found.
pub enum ParsedJournal {
    /// A valid, committed journal: finish it.
    Committed(CommittedJournal),
    /// No valid commit entry: a merge that stopped before its commit fsync returned.
    Uncommitted,
}

fn damaged(path: &Path, what: String) -> LayoutError {
    LayoutError::corrupt(path, "merge journal", what)
}

/// Where a valid commit entry lies among the last two entry positions of the file (the
/// commit is always last, written twice from format 3), if one does.
fn tail_commit(f: &dyn ReadAt, total: u64) -> Option<u64> {
    for commit_len in [16 + SECTOR_BYTES, 8 + SECTOR_BYTES] {
        let n = (ENTRY_HEAD_BYTES + commit_len) as u64;
        for copies in [1, 2] {
            let Some(at) = total.checked_sub(copies * n) else {
                continue;
            };
            let mut e = vec![0u8; n as usize];
            if f.read_exact_at(&mut e, at).is_err() {
                continue;
            }
            let mut eh = [0u8; ENTRY_HEAD_BYTES];
            eh.copy_from_slice(&e[..ENTRY_HEAD_BYTES]);
            let (block, stored) = decode_entry_head(&eh);
            if block == COMMIT && entry_crc(block, &e[ENTRY_HEAD_BYTES..]) == stored {
                return Some(at);
            }
        }
    }
    None
}

/// Checks a commit entry's new header against the index's current one (`cur`) and the
/// journal header.
fn check_commit(
    path: &Path,
    jh: &JournalHeader,
    cur: &IndexHeader,
    slot: u64,
    new: &IndexHeader,
) -> std::result::Result<(), String> {
    if slot > 1 {
        return Err(format!("header slot {slot} (0 or 1)"));
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
    let _ = path;
    Ok(())
}

/// Parses and validates a journal (the file `path`, for errors) of `total` bytes, read
/// through `f`, against the index's current header `cur` (see the module docs, "Validation").
/// Reads the entries in order, in large sequential reads, and allocates no more than one
/// image beside the block map (bounded by the file's size).
///
/// # Errors
/// [`LayoutError::Corrupt`] naming the file and the entry for a damaged committed journal,
/// or a journal that does not belong to this index; [`LayoutError::Io`].
pub fn parse(path: &Path, f: &dyn ReadAt, total: u64, cur: &IndexHeader) -> Result<ParsedJournal> {
    let io = |e| LayoutError::io(path, e);
    let bb_now = cur.layout.block_bytes();
    let mut head = vec![0u8; JOURNAL_HEADER_BYTES.min(total as usize)];
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
    let mut r = Sequential::new(f, jh.header_bytes as u64, total);
    let mut off = jh.header_bytes as u64;
    let eh_len = ENTRY_HEAD_BYTES as u64;
    let mut blocks = BTreeMap::new();
    let mut image = vec![0u8; jh.block_bytes.max(jh.commit_bytes())];
    let block_limit = jh.blocks_after.unwrap_or(u64::MAX);
    // The first bad entry, if any: (offset, what is wrong).
    let bad: (u64, String) = loop {
        if off == total {
            break (off, "the file ends before a commit entry".into());
        }
        if off + eh_len > total {
            break (off, "an entry cut short by the end of the file".into());
        }
        let mut eh = [0u8; ENTRY_HEAD_BYTES];
        r.read_exact(&mut eh).map_err(io)?;
        let (block, stored) = decode_entry_head(&eh);
        if block != COMMIT && block >= block_limit {
            break (
                off,
                format!("block {block} ≥ the {block_limit} blocks the merge writes"),
            );
        }
        let len = jh.image_bytes(block);
        if off + eh_len + len as u64 > total {
            break (off, "an entry cut short by the end of the file".into());
        }
        r.read_exact(&mut image[..len]).map_err(io)?;
        if entry_crc(block, &image[..len]) != stored {
            break (
                off,
                format!("the entry for block {block} fails its checksum"),
            );
        }
        if block == COMMIT {
            let end = off + eh_len + len as u64;
            let copy_len = eh_len + len as u64;
            // formats 1, 2: one copy; format 3: a second copy follows (valid and equal, or
            // damaged: the first copy is the commit)
            // (a second copy cut short is a torn write of it: the first copy commits)
            if end != total && !(jh.version == 3 && total - end <= copy_len) {
                break (
                    end,
                    format!("{} bytes follow the commit entry", total - end),
                );
            }
            if end + copy_len == total {
                let mut second = vec![0u8; copy_len as usize];
                f.read_exact_at(&mut second, end).map_err(io)?;
                let mut eh2 = [0u8; ENTRY_HEAD_BYTES];
                eh2.copy_from_slice(&second[..ENTRY_HEAD_BYTES]);
                let (b2, crc2) = decode_entry_head(&eh2);
                let valid = b2 == COMMIT && entry_crc(b2, &second[ENTRY_HEAD_BYTES..]) == crc2;
                if valid && second[ENTRY_HEAD_BYTES..] != image[..len] {
                    break (end, "the two copies of the commit entry differ".into());
                }
            }
            return commit(path, &jh, cur, off, &image[..len], blocks);
        }
        blocks.insert(block, off + eh_len);
        off += eh_len + len as u64;
    };
    if let Some(at) = tail_commit(f, total) {
        // the first copy of the commit is damaged and the second, right after it, is valid
        let copy_len = (ENTRY_HEAD_BYTES + jh.commit_bytes()) as u64;
        if jh.version == 3 && bad.0 + copy_len == at {
            let mut second = vec![0u8; copy_len as usize];
            f.read_exact_at(&mut second, at).map_err(io)?;
            return commit(path, &jh, cur, at, &second[ENTRY_HEAD_BYTES..], blocks);
        }
        return Err(damaged(
            path,
            format!("entry at byte offset {}: {}; a valid commit entry lies at byte offset {at}: a committed journal is damaged; refusing to recover or delete it", bad.0, bad.1),
        ));
    }
    Ok(ParsedJournal::Uncommitted)
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
    check_commit(path, jh, cur, c.slot, &new).map_err(|why| {
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
    Ok(ParsedJournal::Committed(CommittedJournal {
        blocks,
        block_bytes: jh.block_bytes,
        wal_seq: c.wal_seq,
        slot: c.slot,
        header: c.header,
        new_header: new,
    }))
}
