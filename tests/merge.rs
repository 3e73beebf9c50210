//! StreamingMerge (issue 5): in place, crash-safe, and the merged index answers with the
//! post-merge contents.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use ssdann::engine::{Index, MergeOptions, OpenOptions, SearchParams};
use ssdann::{verify, Metric};
use std::collections::HashSet;
use std::path::PathBuf;

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
    let dir = tmp.path().join("idx");
    common::build_small(&all, 3000, D, tmp.path(), &dir);
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

/// The report of a full merge of a copy of the set-up index (how many writes it makes).
fn probe_merge(s: &Setup) -> ssdann::engine::MergeReport {
    common::probe_merge(&s.dir)
}

/// The contents every surviving state must show: deletes gone, inserts and the replacement
/// present, everything else findable.
fn check_contents(idx: &Index, s: &Setup) {
    let p = SearchParams::new(48, 4);
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
    let after = Index::open(&s.dir, OpenOptions::default()).unwrap();
    assert_eq!(after.pending(), (301, 301, 601));
    check_contents(&after, &s);
    let size_before = std::fs::metadata(s.dir.join("index.ssd")).unwrap().len();
    let rep = after.merge(&MergeOptions::default()).unwrap();
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
            .search(q, 10, &SearchParams::new(48, 4))
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
    let rep = probe_merge(&s);
    let total = rep.blocks_written as u64 * 2 + 12;
    let mut outcomes = (0, 0);
    for n in
        (0..total)
            .step_by((total / 12).max(1) as usize)
            .chain([total - 1, total - 2, total - 3])
    {
        let work = s.dir.parent().unwrap().join(format!("crash{n}"));
        common::copy_dir(&s.dir, &work);
        let idx = Index::open(&work, OpenOptions::default()).unwrap();
        let r = idx.merge(&MergeOptions {
            fail_after_writes: Some(n),
            ..Default::default()
        });
        if r.is_ok() {
            continue; // the merge needed fewer writes than n
        }
        drop(idx);
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

/// The vector a label has after the updates of [`setup`] (None: deleted).
fn vector_of(s: &Setup, label: u64) -> Option<&[f32]> {
    match label {
        1 => Some(&s.all[3399 * D..3400 * D]),
        77_777 => Some(&s.all[3398 * D..3399 * D]),
        l if (30_000..30_040).contains(&l) => {
            Some(&s.all[(3300 + (l - 30_000) as usize) * D..(3301 + (l - 30_000) as usize) * D])
        }
        l if (10_000..10_300).contains(&l) => {
            Some(&s.all[(3000 + (l - 10_000) as usize) * D..(3001 + (l - 10_000) as usize) * D])
        }
        l if l % 10 == 0 => None,
        l => Some(&s.all[l as usize * D..(l as usize + 1) * D]),
    }
}

#[test]
fn searches_run_during_a_merge_and_see_consistent_points() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let s = setup();
    let idx = Index::open(&s.dir, OpenOptions::default()).unwrap();
    // 40 more inserts than deletes: the merge also grows the file, so searches on the
    // pre-merge state meet lists naming slots past its n
    let grow: Vec<(u64, &[f32])> = (0..40u64)
        .map(|i| (30_000 + i, vector_of(&s, 30_000 + i).unwrap()))
        .collect();
    idx.insert_batch(&grow).unwrap();
    let done = AtomicBool::new(false);
    let searches = AtomicU64::new(0);
    let self_hits = AtomicU64::new(0);
    let p = SearchParams::new(48, 4);
    // Queries: live points of every kind (old, inserted, replaced); each must find itself,
    // and every result's distance must be that of the label's one true vector.
    let probes: Vec<u64> = (1..3000u64)
        .step_by(7)
        .filter(|l| l % 10 != 0)
        .chain((10_000..10_300).step_by(3))
        .chain(30_000..30_040)
        .chain([1])
        .collect();
    let rep = std::thread::scope(|sc| {
        for t in 0..2 {
            let (idx, s, done, searches, self_hits, probes) =
                (&idx, &s, &done, &searches, &self_hits, &probes);
            sc.spawn(move || {
                let mut i = t;
                while !done.load(Ordering::Acquire) {
                    let label = probes[i % probes.len()];
                    let q = vector_of(s, label).unwrap();
                    let got = idx.search(q, 5, &p).unwrap();
                    for h in &got {
                        let v = vector_of(s, h.id).unwrap_or_else(|| {
                            panic!("deleted label {} returned during the merge", h.id)
                        });
                        let exact = ssdann::layout::distance::scalar::l2_sq_f32(q, v);
                        assert!(
                            (h.distance - exact).abs() <= 1e-3 * exact.max(1.0),
                            "label {} at distance {} but its vector is at {exact}",
                            h.id,
                            h.distance
                        );
                    }
                    self_hits.fetch_add(u64::from(got[0].id == label), Ordering::Relaxed);
                    searches.fetch_add(1, Ordering::Release);
                    i += 2;
                }
            });
        }
        // Updates issued while the merge computes go through at once (they do not wait for
        // the merge) and are part of the state it swaps in.
        let (idx_r, s_r) = (&idx, &s);
        let (hook, during) = common::during_merge();
        let updater = sc.spawn(move || {
            during.wait_frozen();
            idx_r.insert(77_777, &s_r.all[3398 * D..3399 * D]).unwrap();
            // one being merged in, one on the SSD
            idx_r.delete_batch(&[10_005, 13]).unwrap();
            // They went through while the merge waited in its hook: had they waited for the
            // merge, the hook's bounded wait would have panicked, naming them.
            during.resume();
        });
        let before = searches.load(Ordering::Acquire);
        let rep = idx
            .merge(&MergeOptions {
                apply_pause: Some(std::time::Duration::from_millis(15)),
                after_freeze: Some(hook),
                ..Default::default()
            })
            .unwrap();
        let during = searches.load(Ordering::Acquire) - before;
        updater.join().unwrap();
        done.store(true, Ordering::Release);
        assert!(
            during >= 20,
            "only {during} searches finished during the merge"
        );
        rep
    });
    eprintln!("{rep:?}; {} searches", searches.load(Ordering::Relaxed));
    assert!(
        rep.phase_seconds[4] >= 0.03,
        "the apply phase was too short to overlap searches: {rep:?}"
    );
    let total = searches.load(Ordering::Relaxed);
    let hits = self_hits.load(Ordering::Relaxed);
    assert!(
        hits as f64 >= 0.97 * total as f64,
        "{hits}/{total} searches found their own point"
    );
    let check_after = |idx: &Index| {
        assert_eq!(
            idx.pending(),
            (1, 2, 3),
            "the updates made during the merge are pending in the new state"
        );
        assert_eq!(idx.header().n_slots, 3040);
        assert_eq!(
            idx.search(&s.all[3398 * D..3399 * D], 1, &p).unwrap()[0].id,
            77_777
        );
        for gone in [10_005u64, 13] {
            let q = vector_of(&s, gone).unwrap();
            assert!(
                idx.search(q, 10, &p).unwrap().iter().all(|h| h.id != gone),
                "{gone} deleted during the merge is back"
            );
        }
    };
    check_after(&idx);
    drop(idx);
    // the WAL kept exactly the updates made during the merge
    let idx = Index::open(&s.dir, OpenOptions::default()).unwrap();
    check_after(&idx);
    idx.delete(77_777).unwrap();
    idx.delete_batch(&grow.iter().map(|g| g.0).collect::<Vec<_>>())
        .unwrap();
    let back: Vec<(u64, &[f32])> = [10_005u64, 13]
        .iter()
        .map(|&l| (l, vector_of(&s, l).unwrap()))
        .collect();
    idx.insert_batch(&back).unwrap();
    check_contents(&idx, &s);
}

#[test]
fn a_failed_merge_before_its_commit_leaves_the_index_serving_and_updatable() {
    let s = setup();
    let idx = Index::open(&s.dir, OpenOptions::default()).unwrap();
    let e = idx
        .merge(&MergeOptions {
            fail_after_writes: Some(3),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        e.to_string().contains("injected fault after 3 writes"),
        "{e}"
    );
    assert_eq!(idx.pending(), (301, 301, 601));
    check_contents(&idx, &s);
    idx.insert(55_555, &s.all[3398 * D..3399 * D]).unwrap();
    idx.delete(55_555).unwrap();
    let rep = idx.merge(&MergeOptions::default()).unwrap();
    assert_eq!((rep.deleted, rep.inserted), (301, 301));
    assert_eq!(idx.pending(), (0, 0, 0));
    check_contents(&idx, &s);
}

#[test]
fn a_failed_merge_after_its_commit_keeps_searches_right_and_refuses_updates_until_reopened() {
    let s = setup();
    let idx = Index::open(&s.dir, OpenOptions::default()).unwrap();
    // journal appends + commit, then a few in-place block writes: the failure lands mid-apply
    let rep = probe_merge(&s);
    let e = idx
        .merge(&MergeOptions {
            fail_after_writes: Some(rep.journal_writes + rep.blocks_written as u64 / 2),
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("injected fault"), "{e}");
    // half the blocks are new: the pre-merge state must still answer exactly
    check_contents(&idx, &s);
    let refused = idx
        .insert(66_666, &s.all[3398 * D..3399 * D])
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("a merge failed after its commit")
            && refused.contains("reopen the index to finish it"),
        "{refused}"
    );
    assert!(idx
        .merge(&MergeOptions::default())
        .unwrap_err()
        .to_string()
        .contains("reopen the index"));
    drop(idx);
    let idx = Index::open(&s.dir, OpenOptions::default()).unwrap();
    assert_eq!(idx.pending(), (0, 0, 0), "reopening finished the merge");
    check_contents(&idx, &s);
    assert!(verify(&s.dir).unwrap().ok());
}

#[test]
fn a_later_merge_reuses_slots_an_earlier_one_left_free() {
    let s = setup();
    let idx = Index::open(&s.dir, OpenOptions::default()).unwrap();
    idx.merge(&MergeOptions::default()).unwrap();
    // 200 deletes, no inserts: 200 slots left free
    let extra: Vec<u64> = (3..3000u64)
        .step_by(15)
        .filter(|l| l % 10 != 0 && *l != 1)
        .take(200)
        .collect();
    idx.delete_batch(&extra).unwrap();
    idx.merge(&MergeOptions::default()).unwrap();
    assert_eq!(
        (idx.header().n_slots, idx.header().live_count),
        (3000, 2800)
    );
    // 250 inserts: 200 take the free slots, 50 grow the file
    let items: Vec<(u64, &[f32])> = (0..250u64)
        .map(|i| {
            (
                20_000 + i,
                &s.all[(3000 + i as usize) * D + 1..(3000 + i as usize) * D + 1 + D],
            )
        })
        .collect();
    idx.insert_batch(&items).unwrap();
    idx.merge(&MergeOptions::default()).unwrap();
    assert_eq!(
        (idx.header().n_slots, idx.header().live_count),
        (3050, 3050)
    );
    assert!(verify(&s.dir).unwrap().ok());
    let mut found = 0;
    // the graph's reach, not early termination's (at k = 1 it costs 2–4 of these 250)
    let all_l = SearchParams::new(48, 4).without_termination();
    for (l, v) in &items {
        found += usize::from(idx.search(v, 1, &all_l).unwrap()[0].id == *l);
    }
    assert!(
        found >= 240,
        "{found}/250 reinserted points find themselves"
    );
    let gone: HashSet<u64> = extra.iter().copied().collect();
    for &l in extra.iter().take(40) {
        let q = &s.all[l as usize * D..(l as usize + 1) * D];
        assert!(idx
            .search(q, 10, &SearchParams::new(48, 4))
            .unwrap()
            .iter()
            .all(|h| !gone.contains(&h.id)));
    }
}

#[test]
fn updates_made_during_a_merge_survive_a_crash_after_its_commit() {
    let s = setup();
    let full = probe_merge(&s);
    let idx = Index::open(&s.dir, OpenOptions::default()).unwrap();
    let (hook, during) = common::during_merge();
    let e = std::thread::scope(|sc| {
        sc.spawn(|| {
            during.wait_frozen();
            idx.insert(88_888, &s.all[3397 * D..3398 * D]).unwrap();
            idx.delete(17).unwrap();
            during.resume();
        });
        // the crash comes halfway through the in-place writes, after the commit
        let fail = Some(full.journal_writes + full.blocks_written as u64 / 2);
        idx.merge(&MergeOptions {
            fail_after_writes: fail,
            after_freeze: Some(hook),
            ..Default::default()
        })
        .unwrap_err()
    });
    assert!(e.to_string().contains("injected fault"), "{e}");
    drop(idx);
    let idx = Index::open(&s.dir, OpenOptions::default()).unwrap();
    assert_eq!(
        idx.pending(),
        (1, 1, 2),
        "recovery finished the merge and kept the two later updates"
    );
    let p = SearchParams::new(48, 4);
    let v = &s.all[3397 * D..3398 * D];
    let top = idx.search(v, 1, &p).unwrap()[0];
    assert!(
        top.id == 88_888 && common::at_own_vector(top.distance, v),
        "{top:?}"
    );
    assert!(idx
        .search(&s.all[17 * D..18 * D], 10, &p)
        .unwrap()
        .iter()
        .all(|h| h.id != 17));
    check_contents(&idx, &s);
    assert!(verify(&s.dir).unwrap().ok());
}

/// Searches, inserts, deletes and three merges all at once; afterwards (and after a reopen)
/// the index holds exactly what a model of the acknowledged updates says.
#[test]
fn searches_updates_and_merges_together_match_a_model_of_the_acknowledged_updates() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    let s = setup();
    let idx = Index::open(&s.dir, OpenOptions::default()).unwrap();
    // the model: label → row of `s.all` holding its vector
    let mut model: HashMap<u64, usize> = (0..3000u64)
        .filter(|l| l % 10 != 0 && *l != 1)
        .map(|l| (l, l as usize))
        .collect();
    model.insert(1, 3399);
    model.extend((0..300).map(|i| (10_000 + i as u64, 3000 + i)));
    let model = std::sync::Mutex::new(model);
    let done = AtomicBool::new(false);
    let p = SearchParams::new(48, 4);
    std::thread::scope(|sc| {
        // a searcher: every result is a label whose vector (old or new) gives its distance
        sc.spawn(|| {
            let mut i = 0usize;
            while !done.load(Ordering::Acquire) {
                let q = &s.all[(i % 3400) * D..(i % 3400 + 1) * D];
                for h in idx.search(q, 5, &p).unwrap() {
                    let rows: Vec<usize> = match h.id {
                        1 => vec![1, 3399],
                        l if l >= 40_000 => vec![(l - 40_000) as usize],
                        l if l >= 10_000 => vec![3000 + (l - 10_000) as usize],
                        l => vec![l as usize],
                    };
                    let ok = rows.iter().any(|&r| {
                        (ssdann::layout::distance::scalar::l2_sq_f32(q, &s.all[r * D..(r + 1) * D])
                            - h.distance)
                            .abs()
                            <= 1e-3 * h.distance.max(1.0)
                    });
                    assert!(
                        ok,
                        "label {} at distance {} matches none of its vectors",
                        h.id, h.distance
                    );
                }
                i += 7;
            }
        });
        // an updater: inserts new labels 40_000 + row (rows 0..3000 reused as vectors) and
        // deletes live ones, recording each acknowledged update in the model
        sc.spawn(|| {
            let mut r = 5usize;
            while !done.load(Ordering::Acquire) {
                let label = 40_000 + r as u64;
                idx.insert(label, &s.all[r * D..(r + 1) * D]).unwrap();
                model.lock().unwrap().insert(label, r);
                let victim = 2 + 3 * (r as u64 % 900); // in 2..2700, never 1
                if model.lock().unwrap().contains_key(&victim) {
                    idx.delete(victim).unwrap();
                    model.lock().unwrap().remove(&victim);
                }
                r = (r + 37) % 3000;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        for _ in 0..3 {
            std::thread::sleep(std::time::Duration::from_millis(150));
            // a window after the freeze in which the updater's inserts and deletes land
            idx.merge(&MergeOptions {
                after_freeze: Some(ssdann::engine::MergeHook::new(|| {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                })),
                ..Default::default()
            })
            .unwrap();
        }
        done.store(true, Ordering::Release);
    });
    let model = model.into_inner().unwrap();
    eprintln!("{} live labels in the model", model.len());
    let check = |idx: &Index| {
        eprintln!("pending {:?}", idx.pending());
        assert_eq!(idx.live_count(), model.len());
        let mut found = 0;
        for (&label, &row) in &model {
            let got = idx.search(&s.all[row * D..(row + 1) * D], 3, &p).unwrap();
            // label 40_000 + r shares row r's vector with label r while both live: either may rank first
            let v = &s.all[row * D..(row + 1) * D];
            found += usize::from(
                got.iter()
                    .any(|h| h.id == label && common::at_own_vector(h.distance, v)),
            );
        }
        assert!(
            found as f64 >= 0.98 * model.len() as f64,
            "{found}/{} live labels found at their vectors",
            model.len()
        );
        let gone: Vec<u64> = (2..2700u64)
            .step_by(3)
            .filter(|l| !model.contains_key(l))
            .collect();
        assert!(!gone.is_empty());
        for &l in gone.iter().take(100) {
            let got = idx
                .search(&s.all[l as usize * D..(l as usize + 1) * D], 10, &p)
                .unwrap();
            assert!(got.iter().all(|h| h.id != l), "deleted label {l} returned");
        }
    };
    check(&idx);
    drop(idx);
    let idx = Index::open(&s.dir, OpenOptions::default()).unwrap();
    check(&idx);
    assert!(verify(&s.dir).unwrap().ok());
}

/// The builder's navigation.bin survives merges as it is (no rebuild at the swap), and the
/// merged index, searched from its seeds, holds the merged contents.
#[test]
fn a_merge_keeps_the_navigation_file_and_searches_from_it() {
    let s = setup();
    let nav = s.dir.join(ssdann::layout::navigation::NAVIGATION_FILE);
    let before = std::fs::read(&nav).unwrap();
    let idx = Index::open(&s.dir, OpenOptions::default()).unwrap();
    assert_eq!(
        idx.navigation_source(),
        ssdann::engine::NavigationSource::File
    );
    let nodes = idx.navigation_nodes();
    assert!(nodes > 0);
    idx.merge(&MergeOptions::default()).unwrap();
    assert_eq!(
        idx.navigation_source(),
        ssdann::engine::NavigationSource::File
    );
    assert_eq!(idx.navigation_nodes(), nodes);
    check_contents(&idx, &s);
    drop(idx);
    assert_eq!(
        std::fs::read(&nav).unwrap(),
        before,
        "the merge rewrote navigation.bin"
    );
    let idx = Index::open(&s.dir, OpenOptions::default()).unwrap();
    check_contents(&idx, &s);
}

#[test]
fn a_navigation_graph_is_rebuilt_with_the_merged_state_and_never_seeds_a_freed_point() {
    let s = setup();
    let nav = OpenOptions {
        navigation_nodes: Some(400),
        ..Default::default()
    };
    let idx = Index::open(&s.dir, nav).unwrap();
    // 400 of the 3,000 slots at a stride of 7: the deleted labels (every 10th) are among them.
    assert_eq!(idx.navigation_nodes(), 400);
    assert!(idx.memory_report().navigation_bytes > 400 * 4);
    check_contents(&idx, &s);
    idx.merge(&MergeOptions::default()).unwrap();
    assert_eq!(idx.navigation_nodes(), 400, "rebuilt over the merged state");
    check_contents(&idx, &s);
    // A merge that only deletes leaves free slots: the navigation graph skips them.
    idx.delete_batch(&(2..3000u64).step_by(10).collect::<Vec<_>>())
        .unwrap();
    idx.merge(&MergeOptions::default()).unwrap();
    assert!(idx.header().live_count < idx.header().n_slots);
    let gone: HashSet<u64> = (2..3000u64).step_by(10).collect();
    for &l in gone.iter().take(100) {
        let q = &s.all[l as usize * D..(l as usize + 1) * D];
        let got = idx.search(q, 10, &SearchParams::new(48, 4)).unwrap();
        assert!(
            got.iter()
                .all(|h| !gone.contains(&h.id) && h.id != u64::MAX),
            "a deleted point or a free slot returned: {got:?}"
        );
    }
}

/// Every node's list in `dir`'s index.ssd (slot order).
fn lists(dir: &std::path::Path) -> (ssdann::layout::IndexHeader, Vec<Vec<u32>>) {
    use ssdann::layout::{IndexHeader, SECTOR_BYTES};
    let path = dir.join("index.ssd");
    let bytes = std::fs::read(&path).unwrap();
    let (h, _) = IndexHeader::choose(&path, &bytes[..2 * SECTOR_BYTES]).unwrap();
    let l = h.layout;
    let adj = (0..h.n_slots)
        .map(|id| {
            let off = l.block_offset_bytes(l.block_of(id)) as usize;
            let rec = l.record(&bytes[off..off + l.block_bytes()], l.offset_in_block(id));
            rec.neighbors().collect()
        })
        .collect();
    (h, adj)
}

/// A merge of a saturated index saturates the lists it prunes (the new nodes' and the
/// overflowing back-edge targets'), so every list stays full; before, the merge's RobustPrune
/// cut them back to what the α rule keeps.
#[test]
fn a_merge_keeps_a_saturated_graph_saturated() {
    let tmp = tempfile::tempdir().unwrap();
    // low-dimensional uniform data: the α rule leaves lists well below R
    let (n, extra, d, r) = (2000usize, 300usize, 4usize, 16usize);
    let mut rng = ssdann::builder::synthetic::SplitMix64(5);
    let all: Vec<f32> = (0..(n + extra) * d)
        .map(|_| rng.unit() * 2.0 - 1.0)
        .collect();
    let path = tmp.path().join("b.fbin");
    ssdann::layout::dataset::write_bin(&path, n, d, &all[..n * d]).unwrap();
    let mut min_new = Vec::new();
    for saturate in [false, true] {
        let dir = tmp.path().join(format!("sat-{saturate}"));
        let params = ssdann::BuildParams {
            max_degree: r,
            build_l: 2 * r,
            pq_bytes: Some(2),
            threads: Some(2),
            saturate_graph: saturate,
            ..Default::default()
        };
        ssdann::build_index(&path, &dir, &params, &ssdann::NoProgress).unwrap();
        let idx = Index::open(&dir, OpenOptions::default()).unwrap();
        let items: Vec<(u64, &[f32])> = (n..n + extra)
            .map(|i| (i as u64, &all[i * d..(i + 1) * d]))
            .collect();
        idx.insert_batch(&items).unwrap();
        idx.merge(&MergeOptions::default()).unwrap();
        drop(idx);
        let (h, adj) = lists(&dir);
        assert_eq!(h.saturated, saturate);
        assert_eq!(adj.len(), n + extra);
        if saturate {
            for (i, l) in adj.iter().enumerate() {
                assert_eq!(l.len(), r, "slot {i}: {l:?}");
                let mut u = l.clone();
                u.sort_unstable();
                u.dedup();
                assert_eq!(u.len(), r, "duplicate edge at slot {i}");
                assert!(!l.contains(&(i as u32)), "self loop at {i}");
            }
        }
        min_new.push(adj[n..].iter().map(Vec::len).sum::<usize>() as f64 / extra as f64);
    }
    assert!(
        min_new[0] < 0.8 * r as f64,
        "unsaturated merge: {}",
        min_new[0]
    );
}
