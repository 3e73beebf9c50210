//! Updates (issue 5, first part): WAL-logged inserts and deletes, delta index, tombstones,
//! replay on open, and searches running concurrently with updates.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use ssdann::engine::{EngineError, Index, OpenOptions, SearchParams, SyncMode};
use std::path::Path;

const D: usize = 32;

fn build(dir: &Path) -> (Vec<f32>, Vec<f32>) {
    let (all, queries) = ssdann::builder::synthetic::clustered(4000, 50, D, 12, 77);
    common::build_small(&all, 3000, D, dir, &dir.join("idx"));
    (all, queries)
}

fn ids(idx: &Index, q: &[f32], k: usize) -> Vec<u64> {
    idx.search(q, k, &SearchParams::new(48, 4))
        .unwrap()
        .iter()
        .map(|n| n.id)
        .collect()
}

#[test]
fn deletes_are_never_returned_inserts_are_found_and_replay_restores_both() {
    let tmp = tempfile::tempdir().unwrap();
    let (all, queries) = build(tmp.path());
    let dir = tmp.path().join("idx");
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    // every base point finds itself; delete 300 of them
    let deleted: Vec<u64> = (0..3000).step_by(10).collect();
    idx.delete_batch(&deleted).unwrap();
    for &l in deleted.iter().take(50) {
        let q = &all[l as usize * D..(l as usize + 1) * D];
        assert!(!ids(&idx, q, 10).contains(&l), "deleted label {l} returned");
    }
    // insert 1000 new points (rows 3000..4000) under labels 10_000..
    let items: Vec<(u64, &[f32])> = (0..1000)
        .map(|i| (10_000 + i as u64, &all[(3000 + i) * D..(3001 + i) * D]))
        .collect();
    idx.insert_batch(&items).unwrap();
    let mut found = 0;
    for i in (0..1000).step_by(10) {
        let q = &all[(3000 + i) * D..(3001 + i) * D];
        found += usize::from(ids(&idx, q, 1)[0] == 10_000 + i as u64);
    }
    assert!(
        found >= 98,
        "only {found}/100 inserted points found themselves"
    );
    // replace: label 5 moves to the vector of row 3999
    let moved = &all[3999 * D..4000 * D];
    idx.insert(5, moved).unwrap();
    let top = idx.search(moved, 2, &SearchParams::new(48, 4)).unwrap();
    assert!(
        top.iter().any(|n| n.id == 5 && n.distance < 1e-6),
        "{top:?}"
    );
    assert_eq!(idx.pending(), (1001, 301, 1301));
    assert_eq!(idx.live_count(), 3000 - 300 + 1000);
    let before: Vec<Vec<u64>> = queries.chunks_exact(D).map(|q| ids(&idx, q, 10)).collect();
    drop(idx);

    // reopen: the WAL replays into the same state
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    assert_eq!(idx.pending(), (1001, 301, 1301));
    let after: Vec<Vec<u64>> = queries.chunks_exact(D).map(|q| ids(&idx, q, 10)).collect();
    assert_eq!(before, after);
    // bad updates are errors and log nothing
    assert!(
        matches!(
            idx.delete(10),
            Err(EngineError::InvalidQuery { field: "label", .. })
        ),
        "10 is already deleted"
    );
    assert!(matches!(
        idx.delete(999_999),
        Err(EngineError::InvalidQuery { field: "label", .. })
    ));
    assert!(matches!(
        idx.insert(1, &[0.0; 5]),
        Err(EngineError::InvalidQuery {
            field: "vector dimension",
            ..
        })
    ));
    let mut nan = moved.to_vec();
    nan[3] = f32::NAN;
    assert!(matches!(
        idx.insert(1, &nan),
        Err(EngineError::InvalidQuery {
            field: "vector",
            ..
        })
    ));
    assert_eq!(idx.pending().2, 1301);
}

#[test]
fn every_sync_mode_survives_a_reopen() {
    for mode in [SyncMode::Always, SyncMode::Interval(10), SyncMode::Never] {
        let tmp = tempfile::tempdir().unwrap();
        let (all, _) = build(tmp.path());
        let dir = tmp.path().join("idx");
        let idx = Index::open(
            &dir,
            OpenOptions {
                sync: mode,
                ..Default::default()
            },
        )
        .unwrap();
        for i in 0..20 {
            idx.insert(
                50_000 + i,
                &all[(3000 + i as usize) * D..(3001 + i as usize) * D],
            )
            .unwrap();
        }
        idx.delete(7).unwrap();
        drop(idx);
        let idx = Index::open(&dir, OpenOptions::default()).unwrap();
        assert_eq!(idx.pending(), (20, 1, 21), "{mode:?}");
    }
}

#[test]
fn a_corrupt_wal_record_in_the_middle_fails_open_naming_its_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let (all, _) = build(tmp.path());
    let dir = tmp.path().join("idx");
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    for i in 0..3 {
        idx.insert(
            60_000 + i,
            &all[(3000 + i as usize) * D..(3001 + i as usize) * D],
        )
        .unwrap();
    }
    drop(idx);
    let wal = dir.join("wal.log");
    let mut bytes = std::fs::read(&wal).unwrap();
    let rec = ssdann::engine::wal::RECORD_HEAD_BYTES + 4 * D;
    bytes[32 + rec + 30] ^= 0x01; // inside the second of three records
    std::fs::write(&wal, &bytes).unwrap();
    match Index::open(&dir, OpenOptions::default()) {
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains(&format!("WAL record at byte offset {}", 32 + rec))
                    && m.contains("checksum mismatch"),
                "{m}"
            );
        }
        Ok(_) => panic!("a corrupt acknowledged record was skipped"),
    }
    // a torn last record is cut off with a warning and the first two survive
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[32 + rec + 30] ^= 0x01;
    bytes.truncate(bytes.len() - 7);
    std::fs::write(&wal, &bytes).unwrap();
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    assert_eq!(idx.pending(), (2, 0, 2));
}

#[test]
fn searches_run_during_updates_and_never_see_a_deleted_point() {
    let tmp = tempfile::tempdir().unwrap();
    let (all, _) = build(tmp.path());
    let idx =
        std::sync::Arc::new(Index::open(&tmp.path().join("idx"), OpenOptions::default()).unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deleted = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let mut searchers = Vec::new();
    for t in 0..2 {
        let (idx, stop, deleted, all) = (idx.clone(), stop.clone(), deleted.clone(), all.clone());
        searchers.push(std::thread::spawn(move || {
            let mut n = 0usize;
            let mut i = t * 7;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 20_000 {
                let label = (i * 13) % 3000;
                let snapshot: std::collections::HashSet<u64> = deleted.lock().unwrap().clone();
                let got = idx
                    .search(
                        &all[label * D..(label + 1) * D],
                        10,
                        &SearchParams::new(32, 4),
                    )
                    .unwrap();
                assert!(
                    got.iter().all(|h| !snapshot.contains(&h.id)),
                    "a point deleted before the search was returned"
                );
                assert_eq!(got.len(), 10);
                n += 1;
                i += 1;
            }
            n
        }));
    }
    for i in 0..200u64 {
        let l = i * 15 + 1;
        idx.delete(l).unwrap();
        deleted.lock().unwrap().insert(l);
        let row = 3000 + (i as usize % 1000);
        idx.insert(100_000 + i, &all[row * D..(row + 1) * D])
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let total: usize = searchers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0);
    assert_eq!(idx.pending(), (200, 200, 400));
}
