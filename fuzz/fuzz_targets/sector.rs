//! Node blocks (docs/FORMAT.md, "Node blocks"): `NodeLayout::new`, `check_block`,
//! `NodeLayout::record` and `NodeRecord::check`, the checks every search and `verify` run on a
//! block read from disk. Input: mode byte, a 13-byte geometry prefix
//! `[dim: u16][element: u8][R: u16][n: u32][block: u32]`, then the block's bytes (cut or
//! zero-padded to `block_bytes`, as a read always returns whole blocks). Mode bit 0 re-seals
//! the block CRC so that mutated records reach the record checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{guarded, le_u32, Input};
use ssdann_layout::sector::{check_block, seal_block, NodeLayout};
use ssdann_layout::ElementType;

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let f = input.file;
    if f.len() < 13 {
        return;
    }
    let dim = usize::from(u16::from_le_bytes([f[0], f[1]])) + 1; // 1..=65536
    let Some(element) = ElementType::from_code(f[2] % 3) else {
        return;
    };
    let r = usize::from(u16::from_le_bytes([f[3], f[4]]) % 5000); // past MAX_DEGREE on purpose
    let (Some(n), Some(block)) = (le_u32(f, 5), le_u32(f, 9)) else {
        return;
    };
    let Ok(layout) = NodeLayout::new(dim, element, r) else {
        assert!(r == 0 || r > ssdann_layout::sector::MAX_DEGREE);
        return;
    };
    let mut bytes = f[13..].to_vec();
    bytes.resize(layout.block_bytes(), 0);
    if input.fix_checksums() {
        seal_block(&mut bytes);
    }
    let (n, block) = (u64::from(n).max(1), u64::from(block));
    guarded(bytes.len(), || {
        if check_block(&bytes).is_err() {
            return;
        }
        for i in 0..layout.nodes_per_block as u64 {
            let id = block * layout.nodes_per_block as u64 + i;
            let off = layout.offset_in_block(id);
            assert!(
                off + layout.record_bytes <= bytes.len() - 4,
                "record {id} overlaps the CRC"
            );
            let rec = layout.record(&bytes, off);
            assert_eq!(rec.vector.len(), layout.vector_bytes());
            let ok = rec.check(id, n, layout.max_degree).is_ok();
            let nbrs: Vec<u32> = rec.neighbors().collect();
            assert!(nbrs.len() <= layout.max_degree);
            if ok {
                assert_eq!(nbrs.len(), rec.degree as usize);
                assert!(nbrs.iter().all(|&x| u64::from(x) < n && u64::from(x) != id));
            }
        }
    });
});
