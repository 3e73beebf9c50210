//! `navigation::NavigationGraph::read` (docs/FORMAT.md, "navigation.bin") against an index
//! of n slots and M PQ bytes. Input: mode byte, then the file; mode bit 0 repairs both blob
//! CRCs so that mutated counts, slots and lists reach the checks; the mode's upper bits
//! choose n (1, 41 or 2^32 − 1) with M = 8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssdann_fuzz::{with_file, Input};
use ssdann_layout::navigation::{NavigationGraph, MAX_NAV_DEGREE};

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let file = input.blob_file();
    let n = [1u64, 41, u64::from(u32::MAX)][input.choose(3)];
    if let Ok(g) = with_file("bin", &file, |p| NavigationGraph::read(p, n, 8)) {
        let s = g.slots.len();
        assert!(s >= 1 && s as u64 <= n && (g.medoid as usize) < s);
        assert!(g.r >= 1 && g.r <= MAX_NAV_DEGREE);
        assert!(g.slots.windows(2).all(|w| w[0] < w[1]));
        assert!(g.slots.iter().all(|&x| u64::from(x) < n));
        assert_eq!(g.adjacency.len(), s);
        assert!(g.adjacency.iter().all(|l| l.len() <= g.r && l.iter().all(|&j| (j as usize) < s)));
        assert!(s * 4 * (1 + g.r) < file.len());
    }
});
