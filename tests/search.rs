//! Query-engine acceptance tests (issue 3) on real data (or the generated stand-in).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{recall_at_k, set_10k, standard_params};
use ssdann::engine::{Index, IoBackend, NavigationSource, OpenOptions, SearchParams};
use ssdann::{
    build_index, BuildParams, EngineError, GroundTruth, LayoutError, NoProgress, VectorFile,
};
use std::sync::OnceLock;

/// One 10K index shared by the tests of this file (built once: R=64, L=100, α=1.2, M=48).
fn index_dir() -> &'static std::path::Path {
    static DIR: OnceLock<(tempfile::TempDir, std::path::PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let set = set_10k();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        build_index(&set.base, &dir, &standard_params(), &NoProgress).unwrap();
        (tmp, dir)
    })
    .1
}

/// A private copy of the shared 10K index (for tests that corrupt or update it).
fn copy_of_index() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("copy");
    std::fs::create_dir(&dir).unwrap();
    for f in [
        "index.ssd",
        "pq_pivots.bin",
        "pq_codes.bin",
        "labels.bin",
        "pq_refine.bin",
    ] {
        if f != "pq_refine.bin" || index_dir().join(f).exists() {
            std::fs::copy(index_dir().join(f), dir.join(f)).unwrap();
        }
    }
    (tmp, dir)
}

fn queries_and_gt() -> (Vec<f32>, usize, GroundTruth) {
    let set = set_10k();
    let q = VectorFile::open(&set.queries).unwrap();
    let gt = GroundTruth::read(&set.gt).unwrap();
    let nq = q.len().min(gt.nq).min(2000);
    (
        q.contiguous::<f32>().unwrap()[..nq * q.dim()].to_vec(),
        nq,
        gt,
    )
}

#[test]
fn io_uring_beam_search_reaches_095_and_pread_returns_the_same_ids() {
    let (q, nq, gt) = queries_and_gt();
    let uring = Index::open(
        index_dir(),
        OpenOptions {
            read_only: true,
            io: IoBackend::IoUring,
            ..Default::default()
        },
    )
    .unwrap();
    let pread = Index::open(
        index_dir(),
        OpenOptions {
            read_only: true,
            io: IoBackend::Pread,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(pread.io_backend_name(), "pread");
    eprintln!(
        "backend: {}, O_DIRECT: {}",
        uring.io_backend_name(),
        uring.direct_io()
    );
    let params = SearchParams::new(100, 4);
    let a = uring.batch_search(&q, 10, &params, Some(2)).unwrap();
    let b = pread.batch_search(&q, 10, &params, Some(1)).unwrap();
    let ids =
        |r: &[(Vec<ssdann::engine::Neighbor>, ssdann::engine::SearchStats)]| -> Vec<Vec<u32>> {
            r.iter()
                .map(|(n, _)| n.iter().map(|x| x.id as u32).collect())
                .collect()
        };
    let (ia, ib) = (ids(&a), ids(&b));
    assert_eq!(ia, ib, "io_uring and pread disagree");
    let recall = recall_at_k(&ia, &gt, 10);
    let reads = a.iter().map(|r| f64::from(r.1.sector_reads)).sum::<f64>() / nq as f64;
    eprintln!("disk beam search recall@10 at L=100, W=4: {recall:.4}, {reads:.1} reads/query");
    assert!(recall >= 0.95, "recall@10 {recall} < 0.95");
    assert!(a
        .iter()
        .all(|r| r.1.sector_reads > 0 && r.1.hops > 0 && r.1.cache_hits == 0));
    // distances are exact squared L2 and sorted
    let base = VectorFile::open(&set_10k().base).unwrap();
    let bv = base.contiguous::<f32>().unwrap();
    let d = base.dim();
    for (qi, (hits, _)) in a.iter().enumerate().take(20) {
        for w in hits.windows(2) {
            assert!(w[0].distance <= w[1].distance);
        }
        let h = hits[0];
        let exact = ssdann::layout::distance::scalar::l2_sq_f32(
            &q[qi * d..(qi + 1) * d],
            &bv[h.id as usize * d..(h.id as usize + 1) * d],
        );
        assert!(
            (exact - h.distance).abs() < 1e-4,
            "distance {} vs exact {exact}",
            h.distance
        );
    }
}

#[test]
fn node_cache_counts_hits_and_keeps_results() {
    let (q, _, _) = queries_and_gt();
    let q = &q[..200 * 384];
    // Without sector reuse a cache hit and a read expand the same nodes, so the walk is the
    // same; only the co-located nodes' free exact distances (no block is read for a cached
    // node) may change the tail of a result list.
    let plain = Index::open(
        index_dir(),
        OpenOptions {
            read_only: true,
            sector_reuse: false,
            ..Default::default()
        },
    )
    .unwrap();
    let cached = Index::open(
        index_dir(),
        OpenOptions {
            read_only: true,
            cache_nodes: 100,
            sector_reuse: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(cached.cached_nodes(), 100);
    let p = SearchParams::new(50, 4);
    let a = plain.batch_search(q, 10, &p, Some(1)).unwrap();
    let b = cached.batch_search(q, 10, &p, Some(1)).unwrap();
    let hits: u32 = b.iter().map(|r| r.1.cache_hits).sum();
    assert!(hits > 0, "no cache hits");
    let mut same = 0;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0[0].id, y.0[0].id, "nearest neighbour differs");
        same +=
            x.0.iter()
                .filter(|n| y.0.iter().any(|m| m.id == n.id))
                .count();
        assert!(y.1.sector_reads <= x.1.sector_reads);
        assert_eq!(x.1.nodes_expanded, y.1.nodes_expanded);
    }
    assert!(same >= 1990, "only {same}/2000 results agree");
}

#[test]
fn bad_queries_are_errors_not_panics() {
    let idx = Index::open(
        index_dir(),
        OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let q = vec![0.1f32; 384];
    let p = SearchParams::new(20, 4);
    let field = |r: Result<Vec<ssdann::engine::Neighbor>, EngineError>| match r {
        Err(EngineError::InvalidQuery { field, .. }) => field,
        other => panic!("expected InvalidQuery, got {other:?}"),
    };
    assert_eq!(field(idx.search(&q[..383], 10, &p)), "query dimension");
    let mut nan = q.clone();
    nan[7] = f32::NAN;
    assert_eq!(field(idx.search(&nan, 10, &p)), "query");
    assert_eq!(field(idx.search(&q, 0, &p)), "k");
    assert_eq!(field(idx.search(&q, 30, &p)), "L");
    assert_eq!(field(idx.search(&q, 10, &SearchParams::new(20, 0))), "W");
    // one limit for W on every surface: MAX_W, whatever max_beam_width preallocated
    assert_eq!(
        field(idx.search(
            &q,
            10,
            &SearchParams::new(20, ssdann::engine::search::MAX_W + 1)
        )),
        "W"
    );
    assert_eq!(
        idx.search(&q, 10, &SearchParams::new(20, 17))
            .unwrap()
            .len(),
        10
    );
    assert!(matches!(
        idx.batch_search(&q[..100], 10, &p, Some(1)),
        Err(EngineError::InvalidQuery {
            field: "queries",
            ..
        })
    ));
    assert_eq!(idx.search(&q, 10, &p).unwrap().len(), 10);
}

#[test]
fn verify_reads_turns_a_flipped_byte_into_an_error() {
    let (_tmp, dir) = copy_of_index();
    let (q, _, _) = queries_and_gt();
    let q0 = &q[..384];
    // Corrupt the block of the entry point: every search reads it first.
    let idx = Index::open(
        &dir,
        OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let layout = idx.header().layout;
    let entry = idx.header().entry_point;
    let block = layout.block_of(entry);
    let sector = layout.block_sector(block);
    drop(idx);
    let path = dir.join("index.ssd");
    let mut bytes = std::fs::read(&path).unwrap();
    let off = layout.block_offset_bytes(block) as usize + layout.offset_in_block(entry) + 5;
    bytes[off] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let checked = Index::open(
        &dir,
        OpenOptions {
            read_only: true,
            verify_reads: true,
            // searches start at the entry point, whose block is flipped
            navigation_nodes: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    match checked.search(q0, 10, &SearchParams::new(20, 4)) {
        Err(EngineError::Layout(LayoutError::ChecksumMismatch { what, .. })) => {
            assert!(what.contains(&format!("sector {sector}")), "{what}")
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    // without verify_reads the flip goes unnoticed (a silent wrong distance is possible) —
    // which is exactly why the flag exists; the search itself must not panic.
    let unchecked = Index::open(
        &dir,
        OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(unchecked.search(q0, 10, &SearchParams::new(20, 4)).is_ok());
}

#[test]
fn open_rejects_inconsistent_or_truncated_files() {
    let (tmp, dir) = copy_of_index();
    // PQ codes of another n
    ssdann::layout::pq::write_codes(&dir.join("pq_codes.bin"), 10, 48, &[0u8; 480]).unwrap();
    assert!(matches!(
        Index::open(
            &dir,
            OpenOptions {
                read_only: true,
                ..Default::default()
            }
        ),
        Err(EngineError::Inconsistent { .. })
    ));
    std::fs::copy(index_dir().join("pq_codes.bin"), dir.join("pq_codes.bin")).unwrap();
    // a truncated sector file
    let path = dir.join("index.ssd");
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 4096).unwrap();
    assert!(matches!(
        Index::open(
            &dir,
            OpenOptions {
                read_only: true,
                ..Default::default()
            }
        ),
        Err(EngineError::Layout(LayoutError::SizeMismatch { .. }))
    ));
    assert!(matches!(
        Index::open(
            &tmp.path().join("nope"),
            OpenOptions {
                read_only: true,
                ..Default::default()
            }
        ),
        Err(EngineError::Io { .. })
    ));
}

/// Cosine and inner-product indexes: results match brute force under that metric.
#[test]
fn cosine_and_inner_product_indexes_rank_by_their_metric() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, nq, d) = (3000usize, 50usize, 48usize);
    let (mut base, queries) = ssdann::builder::synthetic::clustered(n, nq, d, 12, 11);
    // give the rows different norms so cosine, IP and L2 rankings differ
    for (i, row) in base.chunks_exact_mut(d).enumerate() {
        let s = 0.5 + (i % 7) as f32 * 0.25;
        row.iter_mut().for_each(|x| *x *= s);
    }
    let path = tmp.path().join("b.fbin");
    ssdann::layout::dataset::write_bin(&path, n, d, &base).unwrap();
    for metric in [ssdann::Metric::Cosine, ssdann::Metric::InnerProduct] {
        let dir = tmp.path().join(metric.name());
        let p = BuildParams {
            metric,
            max_degree: 32,
            build_l: 64,
            pq_bytes: Some(12),
            threads: Some(2),
            ..Default::default()
        };
        build_index(&path, &dir, &p, &NoProgress).unwrap();
        let idx = Index::open(
            &dir,
            OpenOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(idx.metric(), metric);
        // early termination compares squared-L2 distances: an ip index refuses it
        let early = idx.search(
            &queries[..d],
            10,
            &SearchParams {
                termination_ratio: Some(1.2),
                ..SearchParams::new(64, 4)
            },
        );
        match (metric, early) {
            (ssdann::Metric::Cosine, Ok(_)) => {}
            (ssdann::Metric::InnerProduct, Err(EngineError::InvalidQuery { field, .. })) => {
                assert_eq!(field, "termination_ratio");
            }
            (m, r) => panic!("{m}: termination_ratio gave {:?}", r.map(|_| ())),
        }
        let mut hits = 0;
        for q in queries.chunks_exact(d) {
            let got = idx.search(q, 10, &SearchParams::new(64, 4)).unwrap();
            // brute force under the metric
            let qn: f32 = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            let mut all: Vec<(f32, u64)> = base
                .chunks_exact(d)
                .enumerate()
                .map(|(i, x)| {
                    let dot: f32 = q.iter().zip(x).map(|(a, b)| a * b).sum();
                    let dist = match metric {
                        ssdann::Metric::Cosine => {
                            1.0 - dot / (qn * x.iter().map(|v| v * v).sum::<f32>().sqrt())
                        }
                        _ => -dot,
                    };
                    (dist, i as u64)
                })
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            let truth: Vec<u64> = all[..10].iter().map(|e| e.1).collect();
            hits += got.iter().filter(|h| truth.contains(&h.id)).count();
            // reported distances are the metric's own
            let best = got[0];
            let expect = all.iter().find(|e| e.1 == best.id).unwrap().0;
            assert!(
                (best.distance - expect).abs() < 1e-3,
                "{metric}: reported {} vs {expect}",
                best.distance
            );
        }
        let recall = hits as f64 / (nq * 10) as f64;
        eprintln!("{metric}: recall@10 {recall:.3}");
        assert!(recall >= 0.9, "{metric}: recall@10 {recall}");
    }
}

/// The default round loop (look-ahead rounds and the dynamic beam) on `io`, reading and
/// checking every block.
fn default_loop(io: IoBackend) -> OpenOptions {
    OpenOptions {
        read_only: true,
        io,
        verify_reads: true,
        ..Default::default()
    }
}

#[test]
fn the_default_loop_matches_plain_rounds_on_both_backends_and_with_a_cache() {
    matches_the_round_based_search();
}

/// The default loop on io_uring, on pread and with a node cache: recall within 0.01 of
/// plain rounds of W (no look-ahead, no dynamic beam: the bench levers off), reads within
/// 15 %, the same top result on both backends.
fn matches_the_round_based_search() {
    let mode = "default loop";
    let (q, _, gt) = queries_and_gt();
    let params = SearchParams::new(100, 4);
    let run = |options: OpenOptions| {
        let idx = Index::open(index_dir(), options).unwrap();
        let r = idx.batch_search(&q, 10, &params, Some(2)).unwrap();
        let ids: Vec<Vec<u32>> = r
            .iter()
            .map(|(n, _)| n.iter().map(|x| x.id as u32).collect())
            .collect();
        let reads = r.iter().map(|x| f64::from(x.1.sector_reads)).sum::<f64>() / r.len() as f64;
        let hits = r.iter().map(|x| u64::from(x.1.cache_hits)).sum::<u64>();
        (recall_at_k(&ids, &gt, 10), reads, hits, ids)
    };
    let base = OpenOptions {
        read_only: true,
        verify_reads: true,
        dynamic_beam: false,
        look_ahead: false,
        ..Default::default()
    };
    let (base_recall, base_reads, _, _) = run(base);
    let (ur, ureads, _, uids) = run(default_loop(IoBackend::IoUring));
    let (pr, _, _, pids) = run(default_loop(IoBackend::Pread));
    let (cr, _, chits, _) = run(OpenOptions {
        cache_nodes: 500,
        ..default_loop(IoBackend::IoUring)
    });
    eprintln!("recall@10 round-based {base_recall:.4} ({base_reads:.1} reads), {mode} io_uring {ur:.4} ({ureads:.1}), pread {pr:.4}, cached {cr:.4} ({chits} cache hits)");
    for r in [ur, pr, cr] {
        assert!(
            r >= 0.95 && r >= base_recall - 0.01,
            "{mode} recall {r} vs {base_recall}"
        );
    }
    assert!(
        ureads <= base_reads * 1.15,
        "{mode} search reads {ureads} vs {base_reads}"
    );
    assert!(chits > 0, "the node cache was not used");
    // pread completes reads in submission order, io_uring in any order: the top result is
    // the same point for nearly every query
    let same = uids.iter().zip(&pids).filter(|(a, b)| a[0] == b[0]).count();
    assert!(
        same as f64 >= 0.97 * uids.len() as f64,
        "{same}/{} top results agree",
        uids.len()
    );
}

#[test]
fn searches_with_reads_in_flight_that_meet_corrupt_blocks_fail_cleanly_and_the_next_ones_run() {
    let (_tmp, dir) = copy_of_index();
    let (q, nq, _) = queries_and_gt();
    let idx = Index::open(
        &dir,
        OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let (layout, n, entry) = (
        idx.header().layout,
        idx.header().n_slots,
        idx.header().entry_point,
    );
    drop(idx);
    // flip a byte in every 40th block but the entry point's (some searches meet one, some
    // not): failures come after several
    // reads (with other reads of the same wait possibly in flight; the readers' `drain` that
    // frees their slots is tested in engine/src/io.rs)
    let path = dir.join("index.ssd");
    let mut bytes = std::fs::read(&path).unwrap();
    let entry_block = layout.block_of(entry);
    for b in (1..layout.blocks_for(n))
        .step_by(40)
        .filter(|&b| b != entry_block)
    {
        bytes[layout.block_offset_bytes(b) as usize + 7] ^= 0x40;
    }
    std::fs::write(&path, &bytes).unwrap();
    for io in [IoBackend::IoUring, IoBackend::Pread] {
        let mode = "default loop";
        let idx = Index::open(&dir, default_loop(io)).unwrap();
        let d = idx.dim();
        let (mut ok, mut bad) = (0, 0);
        // one thread: every search reuses the same context after the failures before it
        for qi in 0..nq.min(200) {
            match idx.search(&q[qi * d..(qi + 1) * d], 10, &SearchParams::new(50, 8)) {
                Ok(hits) => {
                    assert_eq!(hits.len(), 10);
                    ok += 1;
                }
                Err(EngineError::Layout(LayoutError::ChecksumMismatch { .. })) => bad += 1,
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        eprintln!("{mode} {io:?}: {ok} searches succeeded, {bad} hit a corrupt block");
        assert!(bad > 0, "no search met a corrupt block");
        assert!(ok > 0, "no search ran cleanly after the failures");
    }
}

#[test]
fn a_navigation_graph_starts_searches_nearer_the_query_fewer_reads_same_recall() {
    let (q, nq, gt) = queries_and_gt();
    let d = q.len() / nq;
    // (recall@10, mean reads) of `idx` at list size l
    let run = |idx: &Index, l: usize| {
        let (mut found, mut reads) = (Vec::new(), 0u64);
        for qi in q.chunks_exact(d) {
            let (res, st) = idx
                .search_with_stats(qi, 10, &SearchParams::new(l, 4))
                .unwrap();
            found.push(res.iter().map(|h| h.id as u32).collect::<Vec<_>>());
            reads += u64::from(st.sector_reads);
        }
        (recall_at_k(&found, &gt, 10), reads as f64 / nq as f64)
    };
    let mut rows = Vec::new();
    // Some(0): none; None (the default): the index's navigation.bin, written by the build
    for nav in [Some(0), None] {
        let idx = Index::open(
            index_dir(),
            OpenOptions {
                read_only: true,
                navigation_nodes: nav,
                ..Default::default()
            },
        )
        .unwrap();
        let (want_source, want_nodes) = match nav {
            Some(_) => (NavigationSource::Off, 0),
            None => (
                NavigationSource::File,
                ssdann::builder::navigation::default_nodes(idx.header().live_count as usize),
            ),
        };
        assert_eq!(idx.navigation_source(), want_source);
        assert_eq!(idx.navigation_nodes(), want_nodes);
        assert_eq!(idx.memory_report().navigation_bytes > 0, nav.is_none());
        rows.push(if nav.is_some() {
            vec![(30, run(&idx, 30))]
        } else {
            [30, 35, 40, 45]
                .iter()
                .map(|&l| (l, run(&idx, l)))
                .collect()
        });
    }
    let (r0, s0) = rows[0][0].1;
    eprintln!(
        "medoid start, L = 30: recall {r0:.4}, {s0:.1} reads; navigation: {:?}",
        rows[1]
    );
    // at the same L, fewer reads: the search starts nearer the query
    let (_, (_, s1)) = rows[1][0];
    assert!(s1 < 0.95 * s0, "reads {s1} vs {s0}");
    // at no more reads, the same recall within 0.01 — at equal L it can be less: real set,
    // medoid 0.9898 at 34.9 reads, navigation 0.9864 at 31.2 (L = 30); the generated
    // stand-in, medoid 0.9743 at 42.0, navigation 0.9532 at 30.0 (L = 30), 0.9886 at 40.0
    // (L = 40)
    let (l, (r1, s1)) = *rows[1].iter().rev().find(|(_, (_, s))| *s <= s0).unwrap();
    assert!(
        r1 >= r0 - 0.01,
        "navigation at L = {l}: recall {r1} at {s1} reads; medoid at L = 30: {r0} at {s0}"
    );
}

/// An index built before navigation.bin existed gets the default graph built at open; a
/// damaged file is refused naming it, with nothing changed, and open builds one once it is
/// removed.
#[test]
fn an_index_without_a_navigation_file_builds_one_at_open_and_a_damaged_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    common::copy_dir(index_dir(), &dir);
    let nav = dir.join(ssdann::layout::navigation::NAVIGATION_FILE);
    let good = std::fs::read(&nav).unwrap();
    let ro = || OpenOptions {
        read_only: true,
        ..Default::default()
    };
    let mut bad = good.clone();
    let at = bad.len() - 9; // inside the last list
    bad[at] ^= 0x40;
    std::fs::write(&nav, &bad).unwrap();
    let before = common::dir_bytes(&dir);
    match Index::open(&dir, ro()) {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("navigation.bin"), "{msg}");
            assert_eq!(msg.matches("navigation.bin").count(), 1, "{msg}");
            assert!(msg.contains("remove the file"), "{msg}");
        }
        Ok(_) => panic!("a damaged navigation.bin was accepted"),
    }
    assert_eq!(
        common::dir_bytes(&dir),
        before,
        "a refused open changed a file"
    );
    std::fs::remove_file(&nav).unwrap();
    let idx = Index::open(&dir, ro()).unwrap();
    assert_eq!(idx.navigation_source(), NavigationSource::BuiltAtOpen);
    let live = idx.header().live_count as usize;
    assert_eq!(
        idx.navigation_nodes(),
        ssdann::builder::navigation::default_nodes(live)
    );
    assert!(!nav.exists(), "a read-only open wrote navigation.bin");
}

#[test]
fn a_dynamic_beam_reads_less_on_the_descent_at_about_the_same_recall() {
    let p = SearchParams::new(30, 4);
    let fixed = OpenOptions {
        dynamic_beam: false,
        ..Default::default()
    };
    let (r0, s0, h0) = recall_reads_rounds(fixed, &p);
    // the default: the dynamic beam
    let (r1, s1, h1) = recall_reads_rounds(OpenOptions::default(), &p);
    eprintln!(
        "L = 30: W = 4 recall {r0:.4}, {s0:.1} reads, {h0:.1} rounds; dynamic {r1:.4}, {s1:.1} reads, {h1:.1} rounds"
    );
    // How many reads the one-read descent saves depends on how long the walk down from the
    // medoid is: real 10K set fewer (0.91× at recall 0.95 on the 100K set, docs/PERFORMANCE.md),
    // the generated stand-in 35.9 against 36.0 (its clusters are reached in a hop or two).
    // Never more than a fixed W's, and always more rounds (mutation: the dynamic beam
    // ignored gives equal rounds and fails).
    assert!(s1 <= 1.01 * s0, "reads {s1} vs {s0}");
    assert!(
        h1 > h0,
        "the descent takes one read per round: rounds {h1} vs {h0}"
    );
    assert!(r1 >= r0 - 0.01, "recall {r1} vs {r0}");
}

#[test]
fn early_termination_stops_short_of_l_at_about_the_same_recall_and_refuses_a_ratio_below_1() {
    // off: every one of the L candidates expanded (the default is the index's own ratio,
    // tests/termination.rs)
    let p = SearchParams::new(100, 4).without_termination();
    let (r0, s0, _) = recall_reads_rounds(OpenOptions::default(), &p);
    let early = SearchParams {
        termination_ratio: Some(1.05),
        ..p
    };
    let (r1, s1, _) = recall_reads_rounds(OpenOptions::default(), &early);
    let tightest = SearchParams {
        termination_ratio: Some(1.0),
        ..p
    };
    let (rt, st, _) = recall_reads_rounds(OpenOptions::default(), &tightest);
    eprintln!(
        "L = 100: all L expanded recall {r0:.4}, {s0:.1} reads; ratio 1.05 {r1:.4}, {s1:.1} reads; 1.0 {rt:.4}, {st:.1} reads"
    );
    // A search with a ratio follows the same path and stops no later, so it never reads more;
    // how much sooner it stops depends on the data: the real 10K set 59.2 against 89.0 reads
    // at 1.05 (recall 0.9948 against 0.9972), the generated stand-in 71.2 against 71.3 (its
    // candidates' PQ distances stay below the k-th best distance until the list is spent).
    // Mutation: the ratio ignored gives equal reads at 1.0 and fails.
    assert!(
        st < s0,
        "ratio 1.0 stopped no search short: {st} vs {s0} reads"
    );
    assert!(
        s1 <= s0 && st <= s1,
        "reads {st} (1.0) / {s1} (1.05) / {s0} (off)"
    );
    assert!(r1 >= r0 - 0.01, "recall {r1} vs {r0}");
    let idx = Index::open(
        index_dir(),
        OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let (q, nq, _) = queries_and_gt();
    for bad in [0.5f32, f32::NAN, f32::NEG_INFINITY, 0.999] {
        let bad_params = SearchParams {
            termination_ratio: Some(bad),
            ..p
        };
        match idx.search(&q[..q.len() / nq], 10, &bad_params) {
            Err(EngineError::InvalidQuery { field, .. }) => assert_eq!(field, "termination_ratio"),
            r => panic!("ratio {bad}: {r:?}"),
        }
    }
}

#[test]
fn busy_polling_returns_the_same_neighbours_from_the_same_reads_and_refuses_a_budget_past_its_limit(
) {
    let (q, nq, _) = queries_and_gt();
    let d = q.len() / nq;
    let p = SearchParams::new(40, 4);
    // A round waits for all of its reads, so the order in which they land changes nothing.
    let open = |busy_poll_us: u32, look_ahead: bool| {
        Index::open(
            index_dir(),
            OpenOptions {
                read_only: true,
                busy_poll_us,
                look_ahead,
                dynamic_beam: look_ahead,
                ..Default::default()
            },
        )
        .unwrap()
    };
    for look_ahead in [false, true] {
        let (plain, polled) = (open(0, look_ahead), open(1000, look_ahead));
        for qi in q.chunks_exact(d).take(100) {
            let (a, sa) = plain.search_with_stats(qi, 10, &p).unwrap();
            let (b, sb) = polled.search_with_stats(qi, 10, &p).unwrap();
            assert_eq!(a, b, "look-ahead {look_ahead}");
            assert_eq!(
                (sa.sector_reads, sa.hops),
                (sb.sector_reads, sb.hops),
                "look-ahead {look_ahead}"
            );
        }
    }
    let too_long = ssdann::engine::MAX_BUSY_POLL_US + 1;
    match Index::open(
        index_dir(),
        OpenOptions {
            read_only: true,
            busy_poll_us: too_long,
            ..Default::default()
        },
    ) {
        Err(EngineError::InvalidQuery { field, value, .. }) => {
            assert_eq!((field, value), ("busy_poll_us", too_long.to_string()));
        }
        r => panic!("{:?}", r.map(|_| ())),
    }
}

/// recall@10, mean reads and mean rounds of the shared 10K index's queries opened with
/// `options` (read-only) at `p`.
fn recall_reads_rounds(options: OpenOptions, p: &SearchParams) -> (f64, f64, f64) {
    let (q, nq, gt) = queries_and_gt();
    let d = q.len() / nq;
    let idx = Index::open(
        index_dir(),
        OpenOptions {
            read_only: true,
            ..options
        },
    )
    .unwrap();
    let (mut found, mut reads, mut hops) = (Vec::new(), 0u64, 0u64);
    for qi in q.chunks_exact(d) {
        let (res, st) = idx.search_with_stats(qi, 10, p).unwrap();
        found.push(res.iter().map(|h| h.id as u32).collect::<Vec<_>>());
        reads += u64::from(st.sector_reads);
        hops += u64::from(st.hops);
    }
    let per = |x: u64| x as f64 / nq as f64;
    (recall_at_k(&found, &gt, 10), per(reads), per(hops))
}

#[test]
fn a_cache_chosen_by_sample_searches_reads_less_than_bfs_with_the_same_results() {
    use ssdann::engine::CachePolicy;
    let p = SearchParams::new(50, 4);
    let record = {
        let idx = Index::open(
            index_dir(),
            OpenOptions {
                read_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        idx.header().layout.record_bytes as u64
    };
    // 300 nodes paid for in bytes (16 bytes of index per entry), chosen both ways.
    let bytes = 300 * (record + 16);
    let bfs = OpenOptions {
        cache_bytes: bytes,
        ..Default::default()
    };
    let sampled = OpenOptions {
        cache_bytes: bytes,
        cache_policy: CachePolicy::SampleVisits { samples: 1000 },
        ..Default::default()
    };
    for o in [&bfs, &sampled] {
        let idx = Index::open(
            index_dir(),
            OpenOptions {
                read_only: true,
                ..o.clone()
            },
        )
        .unwrap();
        assert_eq!(idx.cached_nodes(), 300);
    }
    let (r_none, reads_none, _) = recall_reads_rounds(OpenOptions::default(), &p);
    let (r_bfs, reads_bfs, _) = recall_reads_rounds(bfs, &p);
    let (r_hot, reads_hot, _) = recall_reads_rounds(sampled, &p);
    eprintln!("recall {r_none:.4} / {r_bfs:.4} / {r_hot:.4}, reads {reads_none:.1} / {reads_bfs:.1} / {reads_hot:.1} (none / BFS / sampled)");
    // A cache changes which reads happen, not what is found.
    assert!((r_hot - r_none).abs() <= 0.002 && (r_bfs - r_none).abs() <= 0.002);
    assert!(reads_bfs < reads_none);
    assert!(
        reads_hot < reads_bfs,
        "sampled cache {reads_hot:.2} reads vs BFS {reads_bfs:.2}"
    );
}

/// With many nodes in a sector (32-d f32: 17 records a 4 KB block), look-ahead rounds must
/// not cost reads: a look-ahead round must not read again a block that the round before it
/// has just fetched (its candidates there are expanded from RAM first: sector reuse), and
/// none is chosen before the search has converged (with or without the dynamic beam).
/// Without the first, look-ahead searches here read ~1.15× the blocks of the same search
/// without look-ahead; without the second, ~1.15× at a fixed W.
#[test]
fn look_ahead_rounds_do_not_reread_the_blocks_just_fetched() {
    let (n, nq, d) = (20_000, 300, 32);
    let (base, q) = ssdann::builder::synthetic::clustered(n, nq, d, 64, 7);
    let gt = common::exact_ground_truth(&q, &base, d, 10);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    common::build_small(&base, n, d, tmp.path(), &dir);
    let p = SearchParams::new(30, 4);
    let run = |dynamic_beam: bool, look_ahead: bool| {
        let idx = Index::open(
            &dir,
            OpenOptions {
                read_only: true,
                dynamic_beam,
                look_ahead,
                ..Default::default()
            },
        )
        .unwrap();
        let (mut found, mut reads) = (Vec::new(), 0u64);
        for qi in q.chunks_exact(d) {
            let (res, st) = idx.search_with_stats(qi, 10, &p).unwrap();
            found.push(res.iter().map(|h| h.id as u32).collect::<Vec<_>>());
            reads += u64::from(st.sector_reads);
        }
        (recall_at_k(&found, &gt, 10), reads as f64 / nq as f64)
    };
    for dynamic in [true, false] {
        let ((r0, s0), (r1, s1)) = (run(dynamic, false), run(dynamic, true));
        eprintln!("L = 30, 32-d, dynamic beam {dynamic}: rounds recall {r0:.4}, {s0:.2} reads; look-ahead {r1:.4}, {s1:.2} reads");
        assert!(
            s1 <= 1.1 * s0,
            "dynamic {dynamic}: look-ahead reads {s1} vs {s0}"
        );
        assert!(r1 >= r0 - 0.01, "dynamic {dynamic}: recall {r1} vs {r0}");
    }
}
