//! `labels::read_labels` (docs/FORMAT.md, "labels.bin"). Input: mode byte, then the file;
//! mode bit 0 repairs both blob CRCs so that mutated counts and labels reach the checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{with_file, Input};
use ssdann_layout::labels::{read_labels, FREE_LABEL};

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let file = input.blob_file();
    if let Ok(labels) = with_file("bin", &file, read_labels) {
        assert!(labels.len() * 8 < file.len());
        let mut live: Vec<u64> = labels.into_iter().filter(|&l| l != FREE_LABEL).collect();
        let n = live.len();
        live.sort_unstable();
        live.dedup();
        assert_eq!(live.len(), n, "read_labels accepted a duplicate label");
    }
});
