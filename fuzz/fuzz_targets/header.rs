//! `IndexHeader::decode` and `IndexHeader::choose` on two mutated header slots
//! (docs/FORMAT.md, "Header slot"). Input: mode byte, then the first two sectors of
//! `index.ssd`; mode bit 0 re-seals each slot's CRC32 so that mutated fields reach the
//! cross-checks. Oracles: a decoded slot re-encodes to the same defined fields; `choose`
//! picks a slot that decodes on its own, with the highest generation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{crc32, guarded, Input};
use ssdann_layout::header::{IndexHeader, HEADER_CRC_OFFSET, HEADER_SLOT_BYTES};
use std::path::Path;

/// Bytes of a slot that `encode` derives from the decoded header: all defined fields except
/// version_minor (10..12; a v1 reader ignores it) and the reserved bytes 46..48, 100..104.
const DEFINED: [std::ops::Range<usize>; 4] = [0..10, 12..46, 48..100, 104..120];

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let mut slots = input.file.to_vec();
    if input.fix_checksums() {
        for s in slots.chunks_exact_mut(HEADER_SLOT_BYTES) {
            let crc = crc32(&s[..HEADER_CRC_OFFSET]);
            s[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let path = Path::new("index.ssd");
    let ((decoded, chosen), _) = guarded(slots.len(), || {
        let decoded: Vec<_> = (0..2)
            .map(|i| {
                let lo = (i * HEADER_SLOT_BYTES).min(slots.len());
                IndexHeader::decode(path, i, &slots[lo..]).ok()
            })
            .collect();
        (decoded, IndexHeader::choose(path, &slots))
    });
    for (i, h) in decoded.iter().enumerate() {
        let Some(h) = h else { continue };
        let raw = &slots[i * HEADER_SLOT_BYTES..(i + 1) * HEADER_SLOT_BYTES];
        let enc = h.encode();
        for r in DEFINED {
            assert_eq!(
                raw[r.clone()],
                enc[r.clone()],
                "slot {i}: bytes {r:?} do not re-encode"
            );
        }
        // The geometry a decoded header promises is self-consistent.
        let l = &h.layout;
        assert!(h.entry_point < h.n_slots && h.live_count <= h.n_slots);
        assert!(l.nodes_per_block * l.record_bytes + 4 <= l.block_bytes());
        assert_eq!(
            h.file_bytes(),
            l.block_offset_bytes(l.block_of(h.n_slots - 1) + 1)
        );
    }
    match chosen {
        Ok((h, s)) => {
            let own = decoded[s]
                .as_ref()
                .expect("choose returned a slot that does not decode");
            assert_eq!(own.encode(), h.encode());
            if let Some(other) = &decoded[1 - s] {
                assert!(
                    other.generation < h.generation || (s == 0 && other.generation == h.generation),
                    "choose took generation {} (slot {s}) over {}",
                    h.generation,
                    other.generation
                );
            }
        }
        Err(_) => assert!(
            slots.len() < 2 * HEADER_SLOT_BYTES || decoded.iter().all(Option::is_none),
            "choose refused two slots of which one decodes"
        ),
    }
});
