//! `VectorFile::open` on NumPy `.npy` files (versions 1, 2, 3; the header is parsed as
//! text), then every accessor on what it accepted. Input: mode byte (unused, kept so that
//! every target's seeds have the same framing), then the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{vectors::exercise, with_file, Input};
use ssdann_layout::VectorFile;

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    // The file stays in place (mapped) until the next input overwrites it.
    if let Ok(f) = with_file("npy", input.file, |p| VectorFile::open(p)) {
        exercise(&f, input.file.len());
    }
});
