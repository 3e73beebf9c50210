//! The byte format of the write-ahead log `wal.log` (docs/FORMAT.md, "wal.log"): encoding,
//! decoding and the validation rules that decide what replay may keep. No I/O and no
//! policy: the engine reads the file, calls [`scan`], and truncates only what it allows
//! (FreshDiskANN, Singh et al. 2021, §4: updates are durable before they are applied).
//!
//! ```text
//! file header (32 bytes, every field under the CRC):
//!   0  8  magic "SSDWAL01"
//!   8  4  version (2; version 1 is still read)
//!  12  4  dim d (1 ..= MAX_WAL_DIM)
//!  16  8  first_seq: sequence number of the first record (0 stands for 1; < MAX_SEQ)
//!  24  4  reserved (0)
//!  28  4  CRC32 of bytes 0..28
//! record, version 2 (37 + P bytes):
//!   0  4  CRC32 of bytes 4 .. 37+P (the length and every other field included)
//!   4  4  payload_bytes P: exactly 0 for a delete, exactly 4d for an insert
//!   8  8  sequence number (the first record has first_seq; +1 per record)
//!  16  4  group_len G ≥ 1: records in this record's append (one group commit)
//!  20  4  group_index: this record's place in its group, 0 ..< G
//!  24  1  kind: 1 = insert, 2 = delete
//!  25  8  label (u64; never 2^64 − 1, the free-slot marker)
//!  33  4  reserved (0)
//!  37  P  vector: d × f32 (insert only)
//! record, version 1 (25 + P bytes): P u32, CRC32 u32 of bytes 8..25+P, seq u64, kind u8,
//!   label u64, vector — its length is outside its CRC.
//! ```
//!
//! Validation ([`scan`], version 2): records are read in order, each checked against the
//! only legal lengths before its CRC. A group (one append, one fsync) is all or nothing:
//! - the file ends inside a group, or a group's record is damaged, and **no valid record of
//!   a later group** follows anywhere after it: that group is a torn append that never
//!   completed (never acknowledged) — a torn tail; [`WalScan::valid_bytes`] ends where the
//!   group starts, and none of its records are kept;
//! - a damaged record followed by a valid record of a later group (or of no group it could
//!   belong to): acknowledged data is damaged — an error naming the damaged record's offset.
//!
//! Version 1 logs (no groups: a record is an append) get the same checks: each record's
//! length against the only legal sizes before its CRC, and a damaged record is a torn tail
//! only when it is the last — no valid record follows it at any offset; anything else is
//! an error. The engine rewrites a version-1 log as version 2 before appending to it.

use crate::error::LayoutError;
use crate::Result;
use std::path::Path;

/// Magic of `wal.log`.
pub const WAL_MAGIC: [u8; 8] = *b"SSDWAL01";
/// Version of `wal.log` written by this build.
pub const WAL_VERSION: u32 = 2;
/// Largest dimension a log may declare (checked before any allocation sized by it).
pub const MAX_WAL_DIM: usize = 1 << 16;
/// Sequence numbers stay below this (2^62): counters never wrap.
pub const MAX_SEQ: u64 = 1 << 62;
/// File name inside an index directory.
pub const WAL_FILE: &str = "wal.log";
/// Bytes of the file header.
pub const WAL_HEADER_BYTES: usize = 32;
/// Bytes of a (version 2) record before its payload.
pub const RECORD_HEAD_BYTES: usize = 37;
/// Bytes of a version-1 record before its payload.
pub const RECORD_HEAD_BYTES_V1: usize = 25;
/// The label no record may carry (the label map's free-slot marker).
pub const RESERVED_LABEL: u64 = u64::MAX;

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

/// Appends the records of `ops` — one group commit, sequence numbers `first_seq`,
/// `first_seq + 1`, … — to `out`.
///
/// # Panics
/// On an empty `ops` or more than `u32::MAX` of them (caller bugs: an append is non-empty
/// and bounded by the engine's batch limit).
pub fn encode_group(first_seq: u64, ops: &[WalOp], out: &mut Vec<u8>) {
    assert!(!ops.is_empty(), "a WAL group holds at least one record");
    let group_len = u32::try_from(ops.len()).expect("a WAL group holds at most u32::MAX records");
    for (i, op) in ops.iter().enumerate() {
        let (kind, label, payload): (u8, u64, &[f32]) = match op {
            WalOp::Insert { label, vector } => (1, *label, vector),
            WalOp::Delete { label } => (2, *label, &[]),
        };
        let start = out.len();
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(&((payload.len() * 4) as u32).to_le_bytes());
        out.extend_from_slice(&(first_seq + i as u64).to_le_bytes());
        out.extend_from_slice(&group_len.to_le_bytes());
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.push(kind);
        out.extend_from_slice(&label.to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        payload
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        let crc = crc32fast::hash(&out[start + 4..]);
        out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Appends a version-1 record (for tests of the old format's reader).
pub fn encode_record_v1(seq: u64, op: &WalOp, out: &mut Vec<u8>) {
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

/// The 32-byte header of a version-1 log (for tests of the old format's reader).
pub fn encode_header_v1(dim: u32, first_seq: u64) -> [u8; WAL_HEADER_BYTES] {
    let mut h = encode_header(dim, first_seq);
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
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
    /// Format version of the log (1 or 2).
    pub version: u32,
    /// The header itself never became durable (a crash while the log was being created):
    /// no record can have been acknowledged; the whole file is the torn tail.
    pub header_torn: bool,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// A decoded, validated file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalHeader {
    /// Format version (1 or 2).
    pub version: u32,
    /// Sequence number of the first record (a stored 0 reads as 1).
    pub first_seq: u64,
}

/// Validates the file header of `bytes` (the whole log of `path`) for dimension `dim`.
///
/// # Errors
/// [`LayoutError`] for a short file, a bad magic or CRC, an unknown version, a dimension ≠
/// `dim` or out of range, a reserved field ≠ 0, or a first_seq ≥ [`MAX_SEQ`].
pub fn decode_header(path: &Path, bytes: &[u8], dim: usize) -> Result<WalHeader> {
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
    if version != 1 && version != WAL_VERSION {
        return Err(LayoutError::field(
            path,
            "version",
            version,
            "this build reads WAL versions 1 and 2",
        ));
    }
    if fdim != dim || fdim == 0 || fdim > MAX_WAL_DIM {
        return Err(LayoutError::field(
            path,
            "dim",
            fdim,
            format!("the index has d = {dim} (limit {MAX_WAL_DIM})"),
        ));
    }
    let reserved = u32_at(bytes, 24);
    if reserved != 0 {
        return Err(LayoutError::field(path, "reserved", reserved, "must be 0"));
    }
    let first_seq = u64_at(bytes, 16).max(1);
    if first_seq >= MAX_SEQ {
        return Err(LayoutError::field(
            path,
            "first_seq",
            first_seq,
            format!("sequence numbers stay below {MAX_SEQ}"),
        ));
    }
    Ok(WalHeader { version, first_seq })
}

fn record_err(path: &Path, offset: usize, detail: String) -> LayoutError {
    LayoutError::corrupt(path, format!("WAL record at byte offset {offset}"), detail)
}

/// Reads every record of the log `bytes` (the whole file `path`, for errors) of dimension
/// `dim`, applying the validation rules of the module docs. The bytes are not modified.
///
/// # Errors
/// [`LayoutError`] for a bad header (see [`decode_header`]) and, naming the record's byte
/// offset: a damaged record (illegal length or kind, CRC failure, cut short) that a valid
/// record follows (of a later group, in version 2); in version 1, also a CRC-valid record
/// with a sequence gap, a sequence number ≥ [`MAX_SEQ`] or the reserved label.
pub fn scan(path: &Path, bytes: &[u8], dim: usize) -> Result<WalScan> {
    let h = match decode_header(path, bytes, dim) {
        Ok(h) => h,
        Err(e) => {
            // A header that is short, zeroed or fails its CRC, in a file where no valid
            // record starts anywhere, is a log whose creation never completed (its header
            // is fsynced before the first append returns): nothing was acknowledged.
            let unreadable = bytes.len() < WAL_HEADER_BYTES
                || bytes[..8] != WAL_MAGIC
                || crc32fast::hash(&bytes[..28]) != u32_at(bytes, 28);
            if unreadable && dim > 0 && dim <= MAX_WAL_DIM && !any_valid_record(bytes, 0, dim) {
                return Ok(WalScan {
                    torn_bytes: bytes.len() as u64,
                    version: WAL_VERSION,
                    header_torn: true,
                    ..Default::default()
                });
            }
            return Err(e);
        }
    };
    if h.version == 1 {
        scan_v1(path, bytes, dim, h.first_seq)
    } else {
        scan_v2(path, bytes, dim, h.first_seq)
    }
}

/// One decoded version-1 record whose length is legal and whose CRC matches.
struct RecordV1 {
    seq: u64,
    kind: u8,
    label: u64,
    end: usize,
}

/// A record's kind (1 insert, 2 delete) and its payload's length for that kind (an insert
/// carries d f32, a delete nothing): both record formats share the rule.
fn check_payload(kind: u8, payload: usize, dim: usize) -> std::result::Result<(), Bad> {
    let legal = match kind {
        1 => 4 * dim,
        2 => 0,
        k => return Err(Bad::Invalid(format!("unknown kind {k}"))),
    };
    if payload != legal {
        return Err(Bad::Invalid(format!(
            "payload of {payload} bytes for kind {kind} (legal: {legal})"
        )));
    }
    Ok(())
}

/// Decodes the version-1 record at `off`, checking its length (which lies outside its CRC)
/// against the only legal sizes for its kind before the CRC — the rule of version 2, so a
/// damaged length is a damaged record, never a file that seems to end early.
fn decode_v1(bytes: &[u8], off: usize, dim: usize) -> std::result::Result<RecordV1, Bad> {
    let len = bytes.len();
    if len - off < RECORD_HEAD_BYTES_V1 {
        return Err(Bad::Short);
    }
    let payload = u32_at(bytes, off) as usize;
    let kind = bytes[off + 16];
    check_payload(kind, payload, dim)?;
    let end = off + RECORD_HEAD_BYTES_V1 + payload;
    if end > len {
        return Err(Bad::Short);
    }
    let stored = u32_at(bytes, off + 4);
    let got = crc32fast::hash(&bytes[off + 8..end]);
    if stored != got {
        return Err(Bad::Invalid(format!(
            "checksum mismatch (stored {stored:#010x}, computed {got:#010x})"
        )));
    }
    Ok(RecordV1 {
        seq: u64_at(bytes, off + 8),
        kind,
        label: u64_at(bytes, off + 17),
        end,
    })
}

/// Version 1 has no groups: every record is its own append. A damaged record (illegal
/// length, bad CRC, cut short) is a torn tail only when no valid record follows it at any
/// byte offset — it was the last record; otherwise it is an error naming its offset. A
/// record whose CRC matches but whose sequence number, sequence range or label is wrong is
/// an error wherever it is.
fn scan_v1(path: &Path, bytes: &[u8], dim: usize, first_seq: u64) -> Result<WalScan> {
    let mut rep = WalScan {
        last_seq: first_seq - 1,
        version: 1,
        ..Default::default()
    };
    let len = bytes.len();
    let mut off = WAL_HEADER_BYTES;
    let damaged: Option<(usize, String)> = loop {
        if off == len {
            break None;
        }
        let rec = match decode_v1(bytes, off, dim) {
            Ok(r) => r,
            Err(Bad::Short) => break Some((off, "cut short by the end of the file".into())),
            Err(Bad::Invalid(why)) => break Some((off, why)),
        };
        let expected = rep.last_seq + 1;
        if rec.seq != expected {
            return Err(record_err(
                path,
                off,
                format!("sequence number {}, expected {expected}", rec.seq),
            ));
        }
        if rec.seq >= MAX_SEQ {
            return Err(record_err(
                path,
                off,
                format!(
                    "sequence number {}: sequence numbers stay below {MAX_SEQ}",
                    rec.seq
                ),
            ));
        }
        if rec.label == RESERVED_LABEL {
            return Err(record_err(path, off, "the reserved label 2^64 - 1".into()));
        }
        rep.ops.push(if rec.kind == 1 {
            WalOp::Insert {
                label: rec.label,
                vector: bytes[off + RECORD_HEAD_BYTES_V1..rec.end]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            }
        } else {
            WalOp::Delete { label: rec.label }
        });
        rep.last_seq = rec.seq;
        off = rec.end;
    };
    let Some((d_off, why)) = damaged else {
        rep.valid_bytes = len as u64;
        return Ok(rep);
    };
    // Any valid record after the damaged one proves it was not the last: acknowledged data.
    let mut p = d_off + 1;
    while p + RECORD_HEAD_BYTES_V1 <= len {
        if let Ok(r) = decode_v1(bytes, p, dim) {
            return Err(record_err(
                path,
                d_off,
                format!(
                    "{why}; a valid record follows at byte offset {p} (sequence number {}): \
                     acknowledged updates are damaged; refusing to skip them",
                    r.seq
                ),
            ));
        }
        p += 1;
    }
    rep.valid_bytes = d_off as u64;
    rep.torn_bytes = (len - d_off) as u64;
    Ok(rep)
}

/// Whether a valid version-2 record starts at any byte offset ≥ `from`.
fn any_valid_record(bytes: &[u8], from: usize, dim: usize) -> bool {
    (from..bytes.len().saturating_sub(RECORD_HEAD_BYTES - 1))
        .any(|p| decode_v2(bytes, p, dim).is_ok())
}

/// One decoded version-2 record.
struct Record {
    seq: u64,
    group_len: u32,
    group_index: u32,
    op: WalOp,
    end: usize,
}

/// Why the bytes at an offset are not a valid version-2 record.
enum Bad {
    /// The file ends before the record does.
    Short,
    /// A field is not what the format allows, or the CRC does not match.
    Invalid(String),
}

/// Decodes the version-2 record at `off`, checking the length against the only legal
/// sizes before the CRC, and every field.
fn decode_v2(bytes: &[u8], off: usize, dim: usize) -> std::result::Result<Record, Bad> {
    let len = bytes.len();
    if len - off < RECORD_HEAD_BYTES {
        return Err(Bad::Short);
    }
    let payload = u32_at(bytes, off + 4) as usize;
    let kind = bytes[off + 24];
    check_payload(kind, payload, dim)?;
    let end = off + RECORD_HEAD_BYTES + payload;
    if end > len {
        return Err(Bad::Short);
    }
    let stored = u32_at(bytes, off);
    let got = crc32fast::hash(&bytes[off + 4..end]);
    if stored != got {
        return Err(Bad::Invalid(format!(
            "checksum mismatch (stored {stored:#010x}, computed {got:#010x})"
        )));
    }
    let seq = u64_at(bytes, off + 8);
    let group_len = u32_at(bytes, off + 16);
    let group_index = u32_at(bytes, off + 20);
    let label = u64_at(bytes, off + 25);
    let reserved = u32_at(bytes, off + 33);
    if group_len == 0 || group_index >= group_len || reserved != 0 || seq >= MAX_SEQ {
        return Err(Bad::Invalid(format!(
            "group {group_index} of {group_len}, reserved {reserved}, sequence number {seq}"
        )));
    }
    if label == RESERVED_LABEL {
        return Err(Bad::Invalid("the reserved label 2^64 - 1".into()));
    }
    let op = if kind == 1 {
        WalOp::Insert {
            label,
            vector: bytes[off + RECORD_HEAD_BYTES..end]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        }
    } else {
        WalOp::Delete { label }
    };
    Ok(Record {
        seq,
        group_len,
        group_index,
        op,
        end,
    })
}

fn scan_v2(path: &Path, bytes: &[u8], dim: usize, first_seq: u64) -> Result<WalScan> {
    let len = bytes.len();
    let mut rep = WalScan {
        last_seq: first_seq - 1,
        version: 2,
        ..Default::default()
    };
    // The group being read: (offset of its first record, its first sequence number, its
    // length, ops before it).
    let mut group: Option<(usize, u64, u32, usize)> = None;
    let mut off = WAL_HEADER_BYTES;
    let damaged: Option<(usize, String)> = loop {
        if off == len {
            break None;
        }
        let rec = match decode_v2(bytes, off, dim) {
            Ok(r) => r,
            Err(Bad::Short) => break Some((off, "cut short by the end of the file".into())),
            Err(Bad::Invalid(why)) => break Some((off, why)),
        };
        let expected = rep.last_seq + 1;
        let fits = match group {
            None => rec.group_index == 0,
            Some((_, g0, glen, _)) => {
                rec.group_len == glen && u64::from(rec.group_index) == expected - g0
            }
        };
        if rec.seq != expected || !fits {
            break Some((
                off,
                format!(
                    "sequence number {} (group {} of {}), expected {expected}",
                    rec.seq, rec.group_index, rec.group_len
                ),
            ));
        }
        if rec.group_index == 0 {
            group = Some((off, rec.seq, rec.group_len, rep.ops.len()));
        }
        rep.ops.push(rec.op);
        rep.last_seq = rec.seq;
        if rec.group_index + 1 == rec.group_len {
            group = None;
        }
        off = rec.end;
    };
    // Where the torn group (if any) starts, and its first sequence number.
    let (cut, cut_seq) = match (damaged.as_ref(), group) {
        (None, None) => {
            rep.valid_bytes = len as u64;
            return Ok(rep);
        }
        (_, Some((g_off, g_seq, _, ops_before))) => {
            rep.ops.truncate(ops_before);
            rep.last_seq = g_seq - 1;
            (g_off, g_seq)
        }
        (Some(&(d_off, _)), None) => (d_off, rep.last_seq + 1),
    };
    // A valid record after the damage that belongs to a later group (or to no group that
    // the torn one could be) proves that acknowledged records are damaged.
    let from = damaged.as_ref().map_or(len, |&(d, _)| d + 1);
    let mut p = from;
    while p + RECORD_HEAD_BYTES <= len {
        if let Ok(r) = decode_v2(bytes, p, dim) {
            let its_group = r.seq.checked_sub(u64::from(r.group_index));
            if its_group != Some(cut_seq) {
                let (d_off, why) = damaged.unwrap_or((cut, String::new()));
                return Err(record_err(
                    path,
                    d_off,
                    format!(
                        "{why}; a valid record of a later group follows at byte offset {p} \
                         (sequence number {}): acknowledged updates are damaged; refusing to \
                         skip them",
                        r.seq
                    ),
                ));
            }
        }
        p += 1;
    }
    rep.valid_bytes = cut as u64;
    rep.torn_bytes = (len - cut) as u64;
    Ok(rep)
}
