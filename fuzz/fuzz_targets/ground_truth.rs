//! `GroundTruth::read` on `.ibin` (and its `.bin` alias) and `.ivecs`, then every row of what
//! it accepted, as recall computations do. Input: mode byte (its upper bits choose `ibin`,
//! `bin` or `ivecs`), then the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{with_file, Input};
use ssdann_layout::GroundTruth;

const EXTS: [&str; 3] = ["ibin", "bin", "ivecs"];

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let ext = EXTS[input.choose(EXTS.len())];
    with_file(ext, input.file, |p| {
        let Ok(gt) = GroundTruth::read(p) else { return };
        assert!(gt.nq >= 1 && gt.k >= 1);
        let cells = gt.nq.checked_mul(gt.k).expect("nq × k overflows");
        assert_eq!(gt.ids.len(), cells, "ids are not nq × k");
        assert!(gt.distances.is_empty() || gt.distances.len() == cells);
        assert!(4 * cells < input.file.len());
        for q in 0..gt.nq {
            assert_eq!(gt.row(q).len(), gt.k);
        }
    });
});
