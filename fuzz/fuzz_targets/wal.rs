//! `wal::scan` (docs/FORMAT.md, "wal.log"; layout/src/wal.rs), the reader that decides what
//! replay keeps and what may be truncated. Input: mode byte, then the log. Mode bit 0
//! re-seals the header CRC and every record's CRC (walking records by their stated payload,
//! version 1 or 2 as the header says); mode bits 1.. pick the index's dimension: the
//! header's own d, or d + 1 (a log of another index).
//!
//! Oracles: valid + torn bytes = the file; a torn-header scan keeps nothing; every insert
//! has d floats; and truncating the torn tail (what the engine does) then scanning again
//! gives the same operations and no torn tail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{crc32, guarded, le_u32, Input};
use ssdann_layout::wal::{scan, WalOp, MAX_WAL_DIM, RECORD_HEAD_BYTES, RECORD_HEAD_BYTES_V1};
use std::path::Path;

/// Re-seals the CRCs of a log after mutation (version 1 if the header says 1, else 2).
fn fix_checksums(b: &mut [u8]) {
    if b.len() < 32 {
        return;
    }
    let crc = crc32(&b[..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    let v1 = le_u32(b, 8) == Some(1);
    let (head, len_at, crc_at, covered_from) = if v1 {
        (RECORD_HEAD_BYTES_V1, 0, 4, 8)
    } else {
        (RECORD_HEAD_BYTES, 4, 0, 4)
    };
    let mut off = 32;
    while off + head <= b.len() {
        let payload = le_u32(b, off + len_at).unwrap_or(0) as usize;
        let end = off + head + payload;
        if end > b.len() {
            break;
        }
        let crc = crc32(&b[off + covered_from..end]);
        b[off + crc_at..off + crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        off = end;
    }
}

/// The operations as comparable bits (a logged vector may hold NaN, and NaN != NaN).
fn bits(ops: &[WalOp]) -> Vec<(u64, Option<Vec<u32>>)> {
    ops.iter()
        .map(|op| match op {
            WalOp::Insert { label, vector } => {
                (*label, Some(vector.iter().map(|x| x.to_bits()).collect()))
            }
            WalOp::Delete { label } => (*label, None),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let mut log = input.file.to_vec();
    if input.fix_checksums() {
        fix_checksums(&mut log);
    }
    let stated = le_u32(&log, 12).unwrap_or(1) as usize;
    let dim = (stated + input.choose(2)).clamp(1, MAX_WAL_DIM);
    let path = Path::new("wal.log");
    let (first, _) = guarded(log.len(), || scan(path, &log, dim));
    let Ok(s) = first else { return };
    assert_eq!(s.valid_bytes + s.torn_bytes, log.len() as u64);
    if s.header_torn {
        assert!(s.ops.is_empty() && s.valid_bytes == 0);
    }
    for op in &s.ops {
        if let WalOp::Insert { vector, .. } = op {
            assert_eq!(vector.len(), dim);
        }
    }
    if s.torn_bytes > 0 {
        let kept = &log[..s.valid_bytes as usize];
        let (again, _) = guarded(kept.len(), || scan(path, kept, dim));
        let again = again.expect("scanning the log cut at valid_bytes fails");
        assert_eq!(
            again.torn_bytes, 0,
            "the truncated log still has a torn tail"
        );
        assert_eq!(
            bits(&again.ops),
            bits(&s.ops),
            "truncating the torn tail changed the operations"
        );
        assert_eq!(again.last_seq, s.last_seq);
    }
});
