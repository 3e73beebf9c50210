//! `journal::parse` (docs/FORMAT.md, "merge.journal"; layout/src/journal.rs), the reader that
//! decides whether recovery finishes a merge, discards it, or refuses. Input: mode byte, then
//! the journal. The index it is checked against: 384-d f32, R = 64 (two nodes per 4 KB
//! block), 100 nodes at generation 5 — or (mode bit 1) already flipped to generation 6.
//! Mode bit 0 re-seals the format-3 header CRC and every entry's CRC (walking entries by
//! their block numbers: a commit entry is 4,112 bytes, a block entry 4,096).
//!
//! Oracles: a committed journal's every block lies below the committed index's block count
//! and its image inside the file; the new header keeps the index's shape and advances the
//! generation from the base by one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{crc32, guarded, le_u64, Input};
use ssdann_layout::header::IndexHeader;
use ssdann_layout::journal::{
    parse, ParsedJournal, COMMIT, ENTRY_HEAD_BYTES, JOURNAL_HEADER_BYTES,
};
use ssdann_layout::sector::{NodeLayout, SECTOR_BYTES};
use ssdann_layout::{ElementType, Metric};
use std::path::Path;

fn index(generation: u64) -> IndexHeader {
    IndexHeader {
        generation,
        n_slots: 100,
        live_count: 100,
        dim: 384,
        element: ElementType::F32,
        metric: Metric::L2,
        max_degree: 64,
        layout: NodeLayout::new(384, ElementType::F32, 64).expect("valid layout"),
        entry_point: 3,
        pq_m: 8,
        build_l: 100,
        build_alpha: 1.2,
    }
}

/// Re-seals the CRCs of a format-3 journal after mutation.
fn fix_checksums(b: &mut [u8]) {
    if b.len() < JOURNAL_HEADER_BYTES || &b[..8] != b"SSDMJRN3" {
        return;
    }
    let crc = crc32(&b[..36]);
    b[36..40].copy_from_slice(&crc.to_le_bytes());
    let mut off = JOURNAL_HEADER_BYTES;
    while off + ENTRY_HEAD_BYTES <= b.len() {
        let block = le_u64(b, off).unwrap_or(0);
        let len = if block == COMMIT {
            16 + SECTOR_BYTES
        } else {
            4096
        };
        let end = off + ENTRY_HEAD_BYTES + len;
        if end > b.len() {
            break;
        }
        let mut covered = b[off..off + 8].to_vec();
        covered.extend_from_slice(&b[off + ENTRY_HEAD_BYTES..end]);
        let crc = crc32(&covered);
        b[off + 8..off + 12].copy_from_slice(&crc.to_le_bytes());
        off = end;
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let mut j = input.file.to_vec();
    if input.fix_checksums() {
        fix_checksums(&mut j);
    }
    let cur = index(5 + input.choose(2) as u64);
    let (r, _) = guarded(j.len(), || {
        parse(Path::new("merge.journal"), &j, j.len() as u64, &cur)
    });
    if let Ok(ParsedJournal::Committed(c)) = r {
        let blocks = c.new_header.layout.blocks_for(c.new_header.n_slots);
        for (&b, &at) in &c.blocks {
            assert!(b < blocks, "block {b} past the committed {blocks} blocks");
            assert!(at as usize + c.block_bytes <= j.len(), "image past the end");
        }
        assert_eq!(c.new_header.layout, cur.layout);
        assert!(
            c.new_header.generation == 6,
            "generation {}",
            c.new_header.generation
        );
        assert!(c.slot <= 1);
    }
});
