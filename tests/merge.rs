//! StreamingMerge (issue 5): in place, crash-safe, and the merged index answers with the
//! post-merge contents.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use ssdann::engine::{Index, MergeOptions, OpenOptions, SearchParams};
use ssdann::{build_index, verify, BuildParams, Metric, NoProgress};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

const D: usize = 32;

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    all: Vec<f32>,
    deleted: Vec<u64>,
    inserted: Vec<u64>,
}

/// A 3,000-point index with 300 deletes, 300 inserts (rows 3000..3300, labels 10_000..)
/// and one replaced label pending in the WAL.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let (all, _) = ssdann::builder::synthetic::clustered(3400, 0, D, 12, 91);
    let path = tmp.path().join("b.fbin");
    ssdann::layout::dataset::write_bin(&path, 3000, D, &all[..3000 * D]).unwrap();
    let dir = tmp.path().join("idx");
    build_index(
        &path,
        &dir,
        &BuildParams {
            max_degree: 24,
            build_l: 48,
            pq_bytes: Some(8),
            threads: Some(2),
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    let deleted: Vec<u64> = (0..3000).step_by(10).collect();
    idx.delete_batch(&deleted).unwrap();
    let inserted: Vec<u64> = (0..300).map(|i| 10_000 + i).collect();
    let items: Vec<(u64, &[f32])> = inserted
        .iter()
        .enumerate()
        .map(|(i, &l)| (l, &all[(3000 + i) * D..(3001 + i) * D]))
        .collect();
    idx.insert_batch(&items).unwrap();
    idx.insert(1, &all[3399 * D..3400 * D]).unwrap(); // replace label 1
    drop(idx);
    Setup {
        _tmp: tmp,
        dir,
        all,
        deleted,
        inserted,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The contents every surviving state must show: deletes gone, inserts and the replacement
/// present, everything else findable.
fn check_contents(idx: &Index, s: &Setup) {
    let p = SearchParams { l: 48, w: 4 };
    let del: HashSet<u64> = s.deleted.iter().copied().collect();
    for &l in s.deleted.iter().take(60) {
        let q = &s.all[l as usize * D..(l as usize + 1) * D];
        let got = idx.search(q, 10, &p).unwrap();
        assert!(
            got.iter().all(|h| !del.contains(&h.id)),
            "deleted label returned: {got:?}"
        );
        assert!(
            got.iter().all(|h| h.id != u64::MAX),
            "a free slot was returned"
        );
    }
    let mut found = 0;
    for (i, &l) in s.inserted.iter().enumerate() {
        let q = &s.all[(3000 + i) * D..(3001 + i) * D];
        found += usize::from(idx.search(q, 1, &p).unwrap()[0].id == l);
    }
    assert!(
        found >= 295,
        "only {found}/300 inserted points find themselves"
    );
    let moved = &s.all[3399 * D..3400 * D];
    let top = idx.search(moved, 3, &p).unwrap();
    assert!(
        top.iter().any(|h| h.id == 1 && h.distance < 1e-6),
        "replaced label 1 not at its new vector: {top:?}"
    );
    let old1 = &s.all[D..2 * D];
    assert!(
        idx.search(old1, 10, &p)
            .unwrap()
            .iter()
            .all(|h| !(h.id == 1 && h.distance < 1e-6)),
        "label 1's old vector still returned"
    );
    let mut hits = 0;
    for l in (5..3000u64)
        .step_by(37)
        .filter(|l| !del.contains(l) && *l != 1)
    {
        let q = &s.all[l as usize * D..(l as usize + 1) * D];
        hits += usize::from(idx.search(q, 1, &p).unwrap()[0].id == l);
    }
    assert!(hits >= 70, "old points no longer find themselves: {hits}");
    assert_eq!(idx.live_count(), 3000 - 300 + 300);
}

#[test]
fn merge_folds_updates_in_place_and_empties_the_wal() {
    let s = setup();
    let before = Index::open(&s.dir, OpenOptions::default()).unwrap();
    assert_eq!(before.pending(), (301, 301, 601));
    check_contents(&before, &s);
    let size_before = std::fs::metadata(s.dir.join("index.ssd")).unwrap().len();
    let (after, rep) = before.merge(&MergeOptions::default()).unwrap();
    eprintln!("{rep:?}");
    assert_eq!((rep.deleted, rep.inserted), (301, 301));
    assert_eq!(after.pending(), (0, 0, 0));
    assert_eq!(
        after.header().n_slots,
        3000,
        "the 301 new points reuse the 301 freed slots"
    );
    assert_eq!(after.header().live_count, 3000);
    assert_eq!(after.header().generation, 2);
    assert_eq!(
        std::fs::metadata(s.dir.join("index.ssd")).unwrap().len(),
        size_before,
        "rewritten in place"
    );
    assert_eq!(
        std::fs::metadata(s.dir.join("wal.log")).unwrap().len(),
        32,
        "WAL emptied"
    );
    assert!(!s.dir.join("merge.journal").exists());
    check_contents(&after, &s);
    let v = verify(&s.dir).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    // recall of the merged graph against brute force over the live set
    let live: Vec<(u64, &[f32])> = (0..3000u64)
        .filter(|l| l % 10 != 0 && *l != 1)
        .map(|l| (l, &s.all[l as usize * D..(l as usize + 1) * D]))
        .chain((0..300).map(|i| (10_000 + i as u64, &s.all[(3000 + i) * D..(3001 + i) * D])))
        .chain(std::iter::once((1u64, &s.all[3399 * D..3400 * D])))
        .collect();
    let (_, queries) = ssdann::builder::synthetic::clustered(0, 100, D, 12, 91);
    let mut hits = 0;
    for q in queries.chunks_exact(D) {
        let mut bf: Vec<(f32, u64)> = live
            .iter()
            .map(|(l, v)| (ssdann::layout::distance::scalar::l2_sq_f32(q, v), *l))
            .collect();
        bf.sort_by(|a, b| a.0.total_cmp(&b.0));
        let truth: Vec<u64> = bf[..10].iter().map(|e| e.1).collect();
        hits += after
            .search(q, 10, &SearchParams { l: 48, w: 4 })
            .unwrap()
            .iter()
            .filter(|h| truth.contains(&h.id))
            .count();
    }
    let recall = hits as f64 / 1000.0;
    eprintln!("recall@10 after merge: {recall}");
    assert!(recall >= 0.9, "recall after merge {recall}");
    assert_eq!(after.metric(), Metric::L2);
}

#[test]
fn a_crash_at_any_write_of_a_merge_leaves_pre_or_post_merge_contents() {
    let s = setup();
    // count the writes of a full merge on a copy
    let probe = s.dir.parent().unwrap().join("probe");
    copy_dir(&s.dir, &probe);
    let (_, rep) = Index::open(&probe, OpenOptions::default())
        .unwrap()
        .merge(&MergeOptions::default())
        .unwrap();
    let total = rep.blocks_written as u64 * 2 + 12;
    let mut outcomes = (0, 0);
    for n in
        (0..total)
            .step_by((total / 12).max(1) as usize)
            .chain([total - 1, total - 2, total - 3])
    {
        let work = s.dir.parent().unwrap().join(format!("crash{n}"));
        copy_dir(&s.dir, &work);
        let idx = Index::open(&work, OpenOptions::default()).unwrap();
        let r = idx.merge(&MergeOptions {
            fail_after_writes: Some(n),
        });
        if r.is_ok() {
            continue; // the merge needed fewer writes than n
        }
        // "restart": open finishes or discards the journal
        let idx = Index::open(&work, OpenOptions::default()).unwrap();
        match idx.pending() {
            (301, 301, 601) => outcomes.0 += 1,
            (0, 0, 0) => outcomes.1 += 1,
            other => panic!("crash after {n} writes left pending {other:?}"),
        }
        check_contents(&idx, &s);
        let v = verify(&work).unwrap();
        assert!(v.ok(), "crash after {n} writes: {:?}", v.problems);
        assert!(!work.join("merge.journal").exists());
        std::fs::remove_dir_all(&work).unwrap();
    }
    eprintln!(
        "crash outcomes: {} pre-merge, {} post-merge",
        outcomes.0, outcomes.1
    );
    assert!(
        outcomes.0 > 0 && outcomes.1 > 0,
        "both sides of the commit point must be exercised: {outcomes:?}"
    );
}
