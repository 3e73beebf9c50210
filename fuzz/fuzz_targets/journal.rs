//! `journal::parse` (docs/FORMAT.md, "merge.journal"; layout/src/journal.rs), the reader that
//! decides whether recovery finishes a merge, discards it, or refuses. Input: mode byte, then
//! the journal. The index it is checked against: 384-d f32, R = 64 (two nodes per 4 KB
//! block), 100 nodes at generation 5 — or (mode bit 1) already flipped to generation 6.
//! Mode bit 0 re-seals the format-3/4 header CRC and every entry's CRC (walking entries by
//! their block numbers; format 4's commit copies at their sector boundaries).
//!
//! Oracles: a committed journal's every block lies below the committed index's block count
//! and its image inside the file; the new header keeps the index's shape and advances the
//! generation from the base by one; a journal found uncommitted never has a readable format-3/4
//! header whose merge index.ssd's (flipped) generation already carries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{fix_journal_checksums, guarded, Input};
use ssdann_layout::header::IndexHeader;
use ssdann_layout::journal::{parse, ParsedJournal};
use std::path::Path;

fn index(generation: u64) -> IndexHeader {
    ssdann_layout::journal::example_index(generation, 8)
}

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let mut j = input.file.to_vec();
    if input.fix_checksums() {
        fix_journal_checksums(&mut j, None);
    }
    let cur = index(5 + input.choose(2) as u64);
    let (r, _) = guarded(j.len(), || {
        parse(Path::new("merge.journal"), &j, j.len() as u64, &cur)
    });
    if let Ok(ParsedJournal::Uncommitted) = r {
        if let Ok(h) = ssdann_layout::journal::decode_header(&j) {
            assert!(
                h.base_generation.is_none_or(|g| g + 1 != cur.generation),
                "a journal of a merge from {:?} found uncommitted at generation {}",
                h.base_generation,
                cur.generation
            );
        }
    }
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
