//! `PqCodebook::read` (docs/FORMAT.md, "pq_pivots.bin"), then what the engine and builder do
//! with an accepted codebook: encode, decode and ADC tables for both metrics. Input: mode
//! byte, then the file; mode bit 0 repairs both blob CRCs so that mutated d, M, offsets and
//! floats reach the codebook's own checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{with_file, Input};
use ssdann_layout::pq::PQ_CENTROIDS;
use ssdann_layout::{Metric, PqCodebook};

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let file = input.blob_file();
    let Ok(pq) = with_file("bin", &file, PqCodebook::read) else {
        return;
    };
    let (d, m) = (pq.dim(), pq.m());
    assert!(m >= 1 && m <= d);
    assert_eq!(pq.offsets().len(), m + 1);
    assert!(pq.offsets().windows(2).all(|w| w[0] < w[1]));
    assert_eq!((pq.offsets()[0], pq.offsets()[m]), (0, d));
    let x: Vec<f32> = pq.centroid().iter().map(|c| c + 0.5).collect();
    let mut code = vec![0u8; m];
    let mut scratch = Vec::new();
    pq.encode(&x, &mut code, &mut scratch);
    let mut back = vec![0.0f32; d];
    pq.decode(&code, &mut back);
    let mut table = vec![0.0f32; m * PQ_CENTROIDS];
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        pq.adc_table(&x, metric, &mut table, &mut scratch);
    }
});
