//! The byte format of the write-ahead log `wal.log` (docs/FORMAT.md, "wal.log"): encoding,
//! decoding and the validation rules that decide what replay may keep. No I/O and no
//! policy: the engine reads the file, calls [`scan`], and decides what to do with a torn
//! tail (FreshDiskANN, Singh et al. 2021, §4: updates are durable before they are applied).
//!
//! ```text
//! file header (32 bytes):
//!   0  8  magic "SSDWAL01"
//!   8  4  version (1)
//!  12  4  dim d
//!  16  8  first_seq: sequence number of the first record (0 stands for 1)
//!  24  4  reserved (0)
//!  28  4  CRC32 of bytes 0..28
//! record (25 + payload bytes):
//!   0  4  payload_bytes P (0 for delete, 4d for insert)
//!   4  4  CRC32 of bytes 8 .. 25+P
//!   8  8  sequence number (the first record has first_seq; +1 per record)
//!  16  1  kind: 1 = insert, 2 = delete
//!  17  8  label (u64)            -- at offset 17, unaligned
//!  25  P  vector: d × f32 (insert only)
//! ```
//!
//! Validation ([`scan`]): records are read in order. A record cut short by the end of the
//! file, or the last record failing its CRC, is a torn tail (an append that never
//! completed, never acknowledged). A CRC failure or a sequence gap with more bytes after it
//! is corruption of acknowledged data: an error naming its byte offset.

use crate::error::LayoutError;
use crate::Result;
use std::path::Path;

/// Magic of `wal.log`.
pub const WAL_MAGIC: [u8; 8] = *b"SSDWAL01";
/// Version of `wal.log`.
pub const WAL_VERSION: u32 = 1;
/// File name inside an index directory.
pub const WAL_FILE: &str = "wal.log";
/// Bytes of the file header.
pub const WAL_HEADER_BYTES: usize = 32;
/// Bytes of a record before its payload.
pub const RECORD_HEAD_BYTES: usize = 25;

/// One logged update.
#[derive(Clone, Debug, PartialEq)]
pub enum WalOp {
    /// Insert (or replace) `label` with `vector` (d f32 values).
    Insert {
        /// External label.
        label: u64,
        /// The vector.
        vector: Vec<f32>,
    },
    /// Delete `label`.
    Delete {
        /// External label.
        label: u64,
    },
}

/// The 32-byte file header for dimension `dim` whose first record has sequence number
/// `first_seq` (0 stands for 1).
pub fn encode_header(dim: u32, first_seq: u64) -> [u8; WAL_HEADER_BYTES] {
    let mut h = [0u8; WAL_HEADER_BYTES];
    h[..8].copy_from_slice(&WAL_MAGIC);
    h[8..12].copy_from_slice(&WAL_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&dim.to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends the record of `op` with sequence number `seq` to `out`.
pub fn encode_record(seq: u64, op: &WalOp, out: &mut Vec<u8>) {
    let (kind, label, payload): (u8, u64, &[f32]) = match op {
        WalOp::Insert { label, vector } => (1, *label, vector),
        WalOp::Delete { label } => (2, *label, &[]),
    };
    let start = out.len();
    out.extend_from_slice(&((payload.len() * 4) as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&label.to_le_bytes());
    payload
        .iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What [`scan`] found in a log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WalScan {
    /// Every valid record's operation, in order.
    pub ops: Vec<WalOp>,
    /// Sequence number of the last valid record (first_seq − 1 when there is none).
    pub last_seq: u64,
    /// Byte length of the header plus every valid record: where a torn tail starts.
    pub valid_bytes: u64,
    /// Bytes of torn tail after `valid_bytes` (0 when the file ends cleanly).
    pub torn_bytes: u64,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Validates the file header of `bytes` (the whole log of `path`) for dimension `dim`;
/// returns first_seq (0 read as 1).
///
/// # Errors
/// [`LayoutError`] for a short file, a bad magic, CRC, version, or a dimension ≠ `dim`.
pub fn decode_header(path: &Path, bytes: &[u8], dim: usize) -> Result<u64> {
    if bytes.len() < WAL_HEADER_BYTES {
        return Err(LayoutError::corrupt(
            path,
            "WAL header",
            format!(
                "file is {} bytes, shorter than the 32-byte header",
                bytes.len()
            ),
        ));
    }
    if bytes[..8] != WAL_MAGIC {
        return Err(LayoutError::corrupt(path, "WAL header", "bad magic"));
    }
    let stored = u32_at(bytes, 28);
    let got = crc32fast::hash(&bytes[..28]);
    if stored != got {
        return Err(LayoutError::ChecksumMismatch {
            path: path.into(),
            what: "WAL header".into(),
            expected: stored,
            got,
        });
    }
    let version = u32_at(bytes, 8);
    let fdim = u32_at(bytes, 12) as usize;
    if version != WAL_VERSION {
        return Err(LayoutError::field(
            path,
            "version",
            version,
            "this build reads WAL version 1",
        ));
    }
    if fdim != dim {
        return Err(LayoutError::field(
            path,
            "dim",
            fdim,
            format!("the index has d = {dim}"),
        ));
    }
    Ok(u64_at(bytes, 16).max(1))
}

fn record_err(path: &Path, offset: usize, detail: String) -> LayoutError {
    LayoutError::corrupt(path, format!("WAL record at byte offset {offset}"), detail)
}

/// Reads every record of the log `bytes` (the whole file `path`, for errors) of dimension
/// `dim`, applying the validation rules of the module docs. The bytes are not modified.
///
/// # Errors
/// [`LayoutError`] for a bad header (see [`decode_header`]) and, naming the record's byte
/// offset, a CRC failure or sequence gap with more bytes after it, or an unknown kind or
/// payload size.
pub fn scan(path: &Path, bytes: &[u8], dim: usize) -> Result<WalScan> {
    let first_seq = decode_header(path, bytes, dim)?;
    let mut rep = WalScan {
        last_seq: first_seq - 1,
        ..Default::default()
    };
    let mut off = WAL_HEADER_BYTES;
    let len = bytes.len();
    let mut torn_at: Option<usize> = None;
    while off < len {
        if len - off < RECORD_HEAD_BYTES {
            torn_at = Some(off);
            break;
        }
        let payload = u32_at(bytes, off) as usize;
        let end = off
            .checked_add(RECORD_HEAD_BYTES)
            .and_then(|x| x.checked_add(payload));
        let end = match end {
            Some(e) if e <= len => e,
            _ => {
                // Cut short by the end of the file: a torn append, never acknowledged.
                torn_at = Some(off);
                break;
            }
        };
        let stored = u32_at(bytes, off + 4);
        let got = crc32fast::hash(&bytes[off + 8..end]);
        if stored != got {
            if end == len {
                torn_at = Some(off);
                break;
            }
            return Err(record_err(path, off, format!("checksum mismatch (stored {stored:#010x}, computed {got:#010x}) with {} more bytes after it: acknowledged updates may be lost; refusing to skip it", len - end)));
        }
        let seq = u64_at(bytes, off + 8);
        if seq != rep.last_seq + 1 {
            return Err(record_err(
                path,
                off,
                format!("sequence number {seq}, expected {}", rep.last_seq + 1),
            ));
        }
        let kind = bytes[off + 16];
        let label = u64_at(bytes, off + 17);
        let op = match (kind, payload) {
            (1, p) if p == 4 * dim => WalOp::Insert {
                label,
                vector: bytes[off + 25..end]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            },
            (2, 0) => WalOp::Delete { label },
            (k, p) => {
                return Err(record_err(
                    path,
                    off,
                    format!(
                        "kind {k} with a {p}-byte payload (insert needs {} bytes, delete 0)",
                        4 * dim
                    ),
                ))
            }
        };
        rep.ops.push(op);
        rep.last_seq = seq;
        off = end;
    }
    let valid = torn_at.unwrap_or(len);
    rep.valid_bytes = valid as u64;
    rep.torn_bytes = (len - valid) as u64;
    Ok(rep)
}
