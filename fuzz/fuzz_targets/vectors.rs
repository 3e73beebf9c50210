//! `VectorFile::open` on `.fbin`, `.u8bin`, `.i8bin`, `.fvecs` and `.bvecs` (layout/src/
//! dataset.rs), then every accessor on what it accepted. Input: mode byte (its upper bits
//! choose the extension, in that order), then the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{vectors::exercise, with_file, Input};
use ssdann_layout::VectorFile;

const EXTS: [&str; 5] = ["fbin", "u8bin", "i8bin", "fvecs", "bvecs"];

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let ext = EXTS[input.choose(EXTS.len())];
    // The file stays in place (mapped) until the next input overwrites it.
    if let Ok(f) = with_file(ext, input.file, |p| VectorFile::open(p)) {
        exercise(&f, input.file.len());
    }
});
