//! The search hot path performs no heap allocation once a thread's context is warm
//! (issue 3): a counting global allocator around `Index::search_into`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use ssdann::engine::{Index, OpenOptions, SearchParams};
use ssdann::{build_index, BuildParams, NoProgress};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn warm_search_allocates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, nq, d) = (3000, 50, 64);
    let (base, queries) = ssdann::builder::synthetic::clustered(n, nq, d, 16, 3);
    let path = tmp.path().join("b.fbin");
    ssdann::layout::dataset::write_bin(&path, n, d, &base).unwrap();
    let dir = tmp.path().join("idx");
    build_index(
        &path,
        &dir,
        &BuildParams {
            max_degree: 24,
            build_l: 40,
            pq_bytes: Some(16),
            threads: Some(1),
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    for cache in [0, 200] {
        let idx = Index::open(
            &dir,
            OpenOptions {
                cache_nodes: cache,
                ..Default::default()
            },
        )
        .unwrap();
        let p = SearchParams::new(40, 4);
        let mut out = Vec::with_capacity(10);
        // warm the context (largest L first so no buffer grows later)
        for q in queries.chunks_exact(d) {
            idx.search_into(q, 10, &p, &mut out).unwrap();
        }
        ALLOCS.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        let mut found = 0;
        for q in queries.chunks_exact(d) {
            idx.search_into(q, 10, &p, &mut out).unwrap();
            found += out.len();
        }
        COUNTING.store(false, Ordering::Relaxed);
        assert_eq!(found, nq * 10);
        assert_eq!(
            ALLOCS.load(Ordering::Relaxed),
            0,
            "heap allocations on the warm search path (cache {cache})"
        );
    }
}
