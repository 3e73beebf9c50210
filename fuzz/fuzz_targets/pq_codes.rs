//! `pq::read_codes` (docs/FORMAT.md, "pq_codes.bin"), then a PQ distance scan over every code
//! it returned. Input: mode byte, then the file; mode bit 0 repairs both blob CRCs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{with_file, Input};
use ssdann_layout::pq::{pq_distances, read_codes, PQ_CENTROIDS};

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let file = input.blob_file();
    if let Ok((n, m, codes)) = with_file("bin", &file, read_codes) {
        assert!(m >= 1);
        assert_eq!(n.checked_mul(m), Some(codes.len()));
        // What the engine does with them: ADC scans (bounded, the table is M × 256 floats).
        if m <= 4096 && n > 0 {
            let table = vec![1.0f32; m * PQ_CENTROIDS];
            let ids: Vec<u32> = (0..n.min(64) as u32).chain([(n - 1) as u32]).collect();
            let mut out = vec![0.0f32; ids.len()];
            pq_distances(&table, &codes, m, &ids, &mut out);
            assert!(out.iter().all(|&x| x == m as f32));
        }
    }
});
