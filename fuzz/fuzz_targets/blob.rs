//! `blob::read_blob` (docs/FORMAT.md, "Blob files") on any magic, field count and body
//! length. Input: mode byte, then the file; mode bit 0 repairs both CRCs, the mode's upper
//! bits choose the highest version accepted (1..=4). The expected magic is the file's own, so
//! that every input gets past it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{with_file, Input};
use ssdann_layout::blob::{read_blob, MAX_BLOB_FIELDS};

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let file = input.blob_file();
    let mut magic = [0u8; 8];
    let m = file.len().min(8);
    magic[..m].copy_from_slice(&file[..m]);
    let max_version = input.choose(4) as u32 + 1;
    if let Ok(b) = with_file("bin", &file, |p| read_blob(p, &magic, max_version)) {
        assert!(b.fields.len() <= MAX_BLOB_FIELDS);
        assert!((1..=max_version).contains(&b.version));
        assert_eq!(file.len(), 32 + 8 * b.fields.len() + b.body.len());
        assert_eq!(
            &file[file.len() - 4 - b.body.len()..file.len() - 4],
            &b.body[..]
        );
    }
});
