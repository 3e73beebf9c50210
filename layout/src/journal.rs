//! The byte format of the merge's redo journal `merge.journal` (docs/FORMAT.md,
//! "merge.journal"): encoding and decoding of its header, entries and commit entry. No I/O:
//! the engine streams the file and applies these rules (a journal may be gigabytes).
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

use crate::sector::SECTOR_BYTES;

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
pub fn decode_header(head: &[u8]) -> Result<JournalHeader, HeaderError> {
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
