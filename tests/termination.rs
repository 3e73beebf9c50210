//! The default early termination (issue 28): every index carries its own ratio, taken from
//! PQ's error on near pairs measured by the build (`ssdann_layout::near_error`), and a
//! search without a ratio of its own uses it.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{exact_ground_truth, recall_at_k, set_10k, standard_params};
use ssdann::engine::{Index, OpenOptions, SearchParams};
use ssdann::layout::dataset::write_bin;
use ssdann::layout::near_error::termination_ratio;
use ssdann::{build_index, BuildParams, GroundTruth, NoProgress, VectorFile};
use std::path::Path;

/// `nq` queries of `dir`'s index at list size `l`: (ids, mean sector reads).
fn run(index: &Index, q: &[f32], nq: usize, l: usize, r: Option<f32>) -> (Vec<Vec<u32>>, f64) {
    let d = index.dim();
    let params = SearchParams {
        termination_ratio: r,
        ..SearchParams::new(l, 4)
    };
    let mut ids = Vec::new();
    let mut reads = 0.0;
    for i in 0..nq {
        let (hits, stats) = index
            .search_with_stats(&q[i * d..(i + 1) * d], 10, &params)
            .unwrap();
        ids.push(hits.iter().map(|h| h.id as u32).collect());
        reads += f64::from(stats.sector_reads);
    }
    (ids, reads / nq as f64)
}

/// Rewrites header slot 0 of `dir/index.ssd` as format minor 2 wrote it: no measure.
fn as_minor_2(dir: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("index.ssd"))
        .unwrap();
    let mut b = vec![0u8; 4096];
    f.read_exact_at(&mut b, 0).unwrap();
    assert_eq!(u16::from_le_bytes([b[10], b[11]]), 3, "written as minor 3");
    b[10..12].copy_from_slice(&2u16.to_le_bytes());
    b[124..132].fill(0); // near_error, near_scale
    let crc = crc32fast::hash(&b[..4092]);
    b[4092..].copy_from_slice(&crc.to_le_bytes());
    f.write_all_at(&b, 0).unwrap();
}

#[test]
fn searches_default_to_the_ratio_the_build_measured_and_keep_recalls_ceiling() {
    let set = set_10k();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    build_index(&set.base, &dir, &standard_params(), &NoProgress).unwrap();
    let index = Index::open(&dir, OpenOptions::default()).unwrap();
    let measured = index
        .header()
        .near_error
        .expect("the build measures PQ's error");
    assert_eq!(index.near_error(), Some(measured));
    let r = index.default_termination_ratio().unwrap();
    assert_eq!(r, termination_ratio(measured.error));
    assert!((1.15..3.0).contains(&r), "r = {r}");

    let qf = VectorFile::open(&set.queries).unwrap();
    let gt = GroundTruth::read(&set.gt).unwrap();
    let nq = 300;
    let q = qf.contiguous::<f32>().unwrap()[..nq * qf.dim()].to_vec();
    // no ratio of its own: the index's, query by query (same ids, same reads)
    let (def_ids, def_reads) = run(&index, &q, nq, 150, None);
    let (own_ids, own_reads) = run(&index, &q, nq, 150, Some(r));
    assert_eq!((def_ids.clone(), def_reads), (own_ids, own_reads));
    // off expands all L: more reads; recall's ceiling holds within 0.005
    let (off_ids, off_reads) = run(&index, &q, nq, 150, Some(f32::INFINITY));
    let (rd, ro) = (
        recall_at_k(&def_ids, &gt, 10),
        recall_at_k(&off_ids, &gt, 10),
    );
    eprintln!("L = 150: default r = {r:.3}: recall {rd:.4}, {def_reads:.1} reads; off: {ro:.4}, {off_reads:.1}");
    assert!(def_reads < 0.95 * off_reads, "{def_reads} vs {off_reads}");
    assert!(rd >= ro - 0.005, "{rd} vs {ro}");

    // An index written before format minor 3 gets the same measure at open: the same
    // samples of the same records.
    drop(index);
    as_minor_2(&dir);
    let old = Index::open(&dir, OpenOptions::default()).unwrap();
    assert_eq!(old.header().near_error, None);
    assert_eq!(old.near_error(), Some(measured));
    assert_eq!(old.default_termination_ratio(), Some(r));
    assert!(ssdann::engine::verify(&dir).unwrap().ok());

    // A damaged record among the samples leaves such an index openable, with no default
    // termination (the measure is an optimisation; the block is refused where it is read).
    let h = old.header();
    drop(old);
    let first_sample = (h.n_slots / 256) / 2;
    let at = h.layout.block_offset_bytes(h.layout.block_of(first_sample)) + 10;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("index.ssd"))
            .unwrap();
        f.write_all_at(&[0xA5, 0x5A, 0xA5], at).unwrap();
    }
    let damaged = Index::open(&dir, OpenOptions::default()).unwrap();
    assert_eq!(damaged.near_error(), None);
    assert_eq!(damaged.default_termination_ratio(), None);
}

#[test]
fn a_merge_keeps_the_measure_and_an_inner_product_index_has_none() {
    let d = 16;
    let (all, _) = ssdann::builder::synthetic::clustered(3000, 0, d, 8, 5);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    common::build_small(&all, 2900, d, tmp.path(), &dir);
    let index = Index::open(&dir, OpenOptions::default()).unwrap();
    let before = index.near_error().expect("measured");
    for i in 2900..3000 {
        index.insert(i as u64, &all[i * d..(i + 1) * d]).unwrap();
    }
    index.delete_batch(&(0..50).collect::<Vec<u64>>()).unwrap();
    index.merge(&Default::default()).unwrap();
    assert_eq!(index.header().near_error, Some(before));
    drop(index);
    let reopened = Index::open(&dir, OpenOptions::default()).unwrap();
    assert_eq!(reopened.near_error(), Some(before));

    let path = tmp.path().join("ip.fbin");
    write_bin(&path, 3000, d, &all).unwrap();
    let ip = tmp.path().join("ip");
    let params = BuildParams {
        metric: ssdann::Metric::InnerProduct,
        max_degree: 24,
        build_l: 48,
        pq_bytes: Some(8),
        ..Default::default()
    };
    build_index(&path, &ip, &params, &NoProgress).unwrap();
    let index = Index::open(&ip, OpenOptions::default()).unwrap();
    assert_eq!(index.header().near_error, None);
    assert_eq!(index.default_termination_ratio(), None);
    // off is accepted on an inner-product index; a finite ratio is not
    let q = &all[..d];
    let off = SearchParams::new(50, 4).without_termination();
    assert_eq!(index.search(q, 10, &off).unwrap()[0].id, 0);
    let finite = SearchParams {
        termination_ratio: Some(1.5),
        ..SearchParams::new(50, 4)
    };
    let err = index.search(q, 10, &finite).unwrap_err().to_string();
    assert!(err.contains("termination_ratio"), "{err}");
}

/// Clusters of near-duplicates put a query's 10th neighbour at almost no distance, far
/// below PQ's error: a purely relative margin (r × d₁₀) stops such a search as soon as it
/// has found ten of them. The margin stays absolute below the measured scale.
#[test]
fn near_duplicate_clusters_keep_their_recall_under_the_default_termination() {
    let d = 32;
    let (mut base, _) = ssdann::builder::synthetic::clustered(6000, 0, d, 20, 77);
    let mut rng = 12345u64;
    let mut noise = |s: f32| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * s
    };
    // 100 points each get 30 near-copies; each query is one more copy
    let mut queries = Vec::new();
    for g in 0..100 {
        let src = base[g * 60 * d..(g * 60 + 1) * d].to_vec();
        for _ in 0..30 {
            base.extend(src.iter().map(|&x| x + noise(2e-3)));
        }
        queries.extend(src.iter().map(|&x| x + noise(2e-3)));
    }
    let n = base.len() / d;
    let gt = exact_ground_truth(&queries, &base, d, 10);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("b.fbin");
    write_bin(&path, n, d, &base).unwrap();
    let dir = tmp.path().join("idx");
    let params = BuildParams {
        max_degree: 32,
        build_l: 64,
        pq_bytes: Some(8),
        ..Default::default()
    };
    build_index(&path, &dir, &params, &NoProgress).unwrap();
    let index = Index::open(&dir, OpenOptions::default()).unwrap();
    let (def_ids, def_reads) = run(&index, &queries, 100, 100, None);
    let (off_ids, off_reads) = run(&index, &queries, 100, 100, Some(f32::INFINITY));
    let (rd, ro) = (
        recall_at_k(&def_ids, &gt, 10),
        recall_at_k(&off_ids, &gt, 10),
    );
    eprintln!(
        "near-duplicates: r = {:?}, {:?}: recall {rd:.4} at {def_reads:.1} reads; off {ro:.4} at {off_reads:.1}",
        index.default_termination_ratio(),
        index.near_error()
    );
    assert!(ro >= 0.9, "{ro}");
    assert!(rd >= ro - 0.02, "default {rd} vs off {ro}");
}
