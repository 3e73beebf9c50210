//! Durability and trust (issue 11): one writer per index directory, read-only handles,
//! recovery that refuses instead of guessing, reserved labels and limits.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use ssdann::engine::{EngineError, Index, OpenOptions, SearchParams};
use std::path::{Path, PathBuf};

const D: usize = 16;

fn build(tmp: &Path) -> (PathBuf, Vec<f32>) {
    let (all, _) = ssdann::builder::synthetic::clustered(1200, 10, D, 6, 11);
    let dir = tmp.join("idx");
    common::build_small(&all, 1000, D, tmp, &dir);
    (dir, all)
}

fn ro() -> OpenOptions {
    OpenOptions {
        read_only: true,
        ..Default::default()
    }
}

fn is_locked<T>(r: Result<T, EngineError>) -> bool {
    matches!(r, Err(EngineError::Locked { .. }))
}

/// Between its fork and its exec, a child process holds every descriptor of this process —
/// the directory locks of other tests' open indexes included — so a lock dropped in that
/// window stays held until the exec (CLOEXEC closes it there), and a test that reopens right
/// after a drop sees `Locked` (a flake seen in CI's test profile). Every test holds this
/// shared; a child is spawned only under it exclusively.
static SPAWN: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn no_spawn() -> std::sync::RwLockReadGuard<'static, ()> {
    SPAWN.read().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_second_writer_is_refused_and_read_only_handles_share_but_not_with_a_writer() {
    let _no_spawn = no_spawn();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, all) = build(tmp.path());
    let w = Index::open(&dir, OpenOptions::default()).unwrap();
    let second = Index::open(&dir, OpenOptions::default());
    assert!(is_locked(second), "a second writer in the same process");
    assert!(
        is_locked(Index::open(&dir, ro())),
        "a reader beside a writer"
    );
    let msg = Index::open(&dir, OpenOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("cannot open the index to write"), "{msg}");
    w.insert(5000, &all[..D]).unwrap();
    drop(w);
    // readers share; a writer is refused while they are open; updates on them are refused
    let r1 = Index::open(&dir, ro()).unwrap();
    let r2 = Index::open(&dir, ro()).unwrap();
    assert!(is_locked(Index::open(&dir, OpenOptions::default())));
    let hits = r2.search(&all[..D], 1, &SearchParams::new(20, 4)).unwrap();
    assert!(hits[0].distance < 1e-6, "the WAL is replayed read-only too");
    assert!(matches!(
        r1.insert(6000, &all[..D]),
        Err(EngineError::NotAllowed { .. })
    ));
    assert!(matches!(r1.delete(1), Err(EngineError::NotAllowed { .. })));
    assert!(matches!(
        r1.merge(&Default::default()),
        Err(EngineError::NotAllowed { .. })
    ));
    drop((r1, r2));
    let w = Index::open(&dir, OpenOptions::default()).unwrap();
    assert_eq!(w.pending().2, 1, "the insert is still pending, once");
}

/// Run by `a_writer_in_another_process_is_refused` in a child process.
#[test]
fn child_process_opens_for_writing() {
    let Some(dir) = std::env::var_os("SSDANN_CHILD_OPEN") else {
        return; // only meaningful as the child
    };
    match Index::open(Path::new(&dir), OpenOptions::default()) {
        Err(EngineError::Locked { .. }) => std::process::exit(17),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => std::process::exit(0),
    }
}

#[test]
fn a_writer_in_another_process_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = build(tmp.path());
    let run_child = || {
        let _spawning = SPAWN.write().unwrap_or_else(|e| e.into_inner());
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_process_opens_for_writing", "--nocapture"])
            .env("SSDANN_CHILD_OPEN", &dir)
            .status()
            .unwrap()
            .code()
    };
    let w = Index::open(&dir, OpenOptions::default()).unwrap();
    assert_eq!(
        run_child(),
        Some(17),
        "the child must be refused while we write"
    );
    drop(w);
    assert_eq!(run_child(), Some(0), "and allowed once we closed");
}

#[test]
fn a_read_only_open_of_an_index_with_an_unfinished_merge_is_refused_and_changes_nothing() {
    let _no_spawn = no_spawn();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = build(tmp.path());
    std::fs::write(dir.join("merge.journal"), b"SSDMJRN2 not a real journal").unwrap();
    let e = Index::open(&dir, ro()).err().unwrap();
    assert!(
        matches!(e, EngineError::NotAllowed { .. }) && e.to_string().contains("needs recovery"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(dir.join("merge.journal")).unwrap(),
        b"SSDMJRN2 not a real journal"
    );
}

#[test]
fn limits_are_checked_before_anything_is_sized_and_the_reserved_label_is_refused() {
    let _no_spawn = no_spawn();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, all) = build(tmp.path());
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    let q = &all[..D];
    let field = |r: Result<Vec<ssdann::engine::Neighbor>, EngineError>| match r {
        Err(EngineError::InvalidQuery { field, .. }) => field,
        other => panic!("expected an invalid query, got {other:?}"),
    };
    // each would once have tried to allocate for a billion entries (or aborted)
    assert_eq!(
        field(idx.search(q, 1_000_000_000, &SearchParams::new(1_000_000_000, 4))),
        "k"
    );
    assert_eq!(
        field(idx.search(q, 10, &SearchParams::new(1_000_000_000, 4))),
        "L"
    );
    assert_eq!(
        field(idx.search(q, 10, &SearchParams::new(20, 1_000_000_000))),
        "W"
    );
    let wide = Index::open(
        &dir,
        OpenOptions {
            max_beam_width: 1_000_000_000,
            read_only: true,
            ..Default::default()
        },
    );
    drop(idx);
    assert!(matches!(
        wide,
        Err(EngineError::InvalidQuery {
            field: "max_beam_width",
            ..
        }) | Err(EngineError::Locked { .. })
    ));
    let wide = Index::open(
        &dir,
        OpenOptions {
            max_beam_width: 1_000_000_000,
            ..Default::default()
        },
    );
    assert!(matches!(
        wide,
        Err(EngineError::InvalidQuery {
            field: "max_beam_width",
            ..
        })
    ));
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    // RAM by structure: n = 1,000 points, M = 8 PQ bytes; the (reordered) labels are
    // mapped, not held; the label → slot map is built only when an update needs it
    let m = idx.memory_report();
    assert_eq!(
        (
            m.pq_codes_bytes,
            m.labels_bytes,
            m.labels_mapped_bytes,
            m.label_map_bytes
        ),
        (8_000, 0, 8_000, 0)
    );
    assert_eq!(m.total_bytes(), idx.memory_bytes());
    idx.delete(999).unwrap();
    assert!(idx.memory_report().label_map_bytes >= 1_000 * 17);
    assert_eq!(idx.live_count(), 999);
    assert!(matches!(
        idx.batch_search(q, 1, &SearchParams::default(), Some(1_000_000_000)),
        Err(EngineError::InvalidQuery {
            field: "threads",
            ..
        })
    ));
    // 2^64 - 1 marks a free slot in labels.bin: an insert under it is refused, nothing logged
    let e = idx.insert(u64::MAX, q).unwrap_err();
    assert!(
        matches!(e, EngineError::InvalidQuery { field: "label", .. })
            && e.to_string().contains("reserved"),
        "{e}"
    );
    assert_eq!(idx.pending(), (0, 1, 1));
    assert!(matches!(
        idx.insert_batch(&[]),
        Err(EngineError::InvalidQuery {
            field: "batch size",
            ..
        })
    ));
}

#[test]
fn a_crc_valid_block_naming_a_neighbour_past_n_fails_the_merge_cleanly() {
    let _no_spawn = no_spawn();
    use ssdann::layout::sector::seal_block;
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = build(tmp.path());
    let h = Index::open(&dir, ro()).unwrap().header();
    let l = h.layout;
    // node 10's first neighbour := 1,000,000, with the block's CRC made valid again
    let path = dir.join("index.ssd");
    let mut bytes = std::fs::read(&path).unwrap();
    let b = l.block_of(10);
    let start = l.block_offset_bytes(b) as usize;
    let at = start + l.offset_in_block(10) + l.vector_bytes() + 4;
    bytes[at..at + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
    seal_block(&mut bytes[start..start + l.block_bytes()]);
    std::fs::write(&path, &bytes).unwrap();
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    idx.delete(10).unwrap();
    let e = idx.merge(&Default::default()).unwrap_err().to_string();
    assert!(
        e.contains(&format!("sector {}", l.block_sector(b))) && e.contains("1000000"),
        "{e}"
    );
    // the merge stopped before its commit: the index is as it was, the delete still pending
    drop(idx);
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    assert_eq!(idx.pending(), (0, 1, 1));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn verify_reports_a_half_applied_merge_as_needing_recovery_not_as_damage() {
    let _no_spawn = no_spawn();
    use ssdann::engine::MergeOptions;
    let tmp = tempfile::tempdir().unwrap();
    let (dir, all) = build(tmp.path());
    {
        let idx = Index::open(&dir, OpenOptions::default()).unwrap();
        for i in 0..150u64 {
            idx.insert(
                5000 + i,
                &all[(1000 + i as usize) * D..(1001 + i as usize) * D],
            )
            .unwrap();
        }
        idx.delete_batch(&(0..100).collect::<Vec<u64>>()).unwrap();
    }
    // how many writes the merge makes before its in-place phase, on a copy
    let probe = tmp.path().join("probe");
    common::copy_dir(&dir, &probe);
    let rep = Index::open(&probe, OpenOptions::default())
        .unwrap()
        .merge(&MergeOptions::default())
        .unwrap();
    assert!(rep.blocks_written > 4, "{rep:?}");
    // stop half way through the in-place writes (after the commit)
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    let half = rep.journal_writes + rep.blocks_written as u64 / 2;
    idx.merge(&MergeOptions {
        fail_after_writes: Some(half),
        ..Default::default()
    })
    .unwrap_err();
    drop(idx);
    let v = ssdann::verify(&dir).unwrap();
    assert!(!v.ok());
    assert_eq!(v.problem_count, 0, "{:?}", v.problems);
    assert!(
        v.needs_recovery
            .as_deref()
            .unwrap_or("")
            .contains("the next read-write open finishes it"),
        "{:?}",
        v.needs_recovery
    );
    // a read-write open finishes it
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    assert_eq!(idx.pending(), (0, 0, 0));
    drop(idx);
    assert!(ssdann::verify(&dir).unwrap().ok());
}

#[test]
fn build_force_refuses_to_replace_an_index_that_is_open() {
    let _no_spawn = no_spawn();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, all) = build(tmp.path());
    let idx = Index::open(&dir, ro()).unwrap();
    let params = ssdann::BuildParams {
        max_degree: 24,
        build_l: 48,
        pq_bytes: Some(8),
        force: true,
        ..Default::default()
    };
    let e =
        ssdann::builder::build_from_vectors(&all[..500 * D], D, &dir, &params, &ssdann::NoProgress)
            .unwrap_err();
    assert!(matches!(e, ssdann::BuildError::InUse { .. }), "{e}");
    assert_eq!(idx.len(), 1000, "the open index is untouched");
    drop(idx);
    ssdann::builder::build_from_vectors(&all[..500 * D], D, &dir, &params, &ssdann::NoProgress)
        .unwrap();
    assert_eq!(Index::open(&dir, ro()).unwrap().len(), 500);
}

#[test]
fn a_header_generation_at_its_limit_refuses_the_merge_instead_of_wrapping() {
    let _no_spawn = no_spawn();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, all) = build(tmp.path());
    // rewrite the header in force with a CRC-valid generation of 2^64 - 1 (encode seals
    // it): refused where the slot is decoded, naming the file, the field and the value
    let path = dir.join("index.ssd");
    let mut bytes = std::fs::read(&path).unwrap();
    let (mut h, slot) = ssdann::layout::IndexHeader::choose(&path, &bytes[..8192]).unwrap();
    h.generation = u64::MAX;
    bytes[slot * 4096..(slot + 1) * 4096].copy_from_slice(&h.encode());
    std::fs::write(&path, &bytes).unwrap();
    let e = Index::open(&dir, OpenOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{}: field `generation` = 18446744073709551615: header slot {slot}: generations \
             stay below 2^62 = 4611686018427387904",
            path.display()
        )
    );
    // the highest legal generation, 2^62 - 1: opens, but a merge cannot advance it
    h.generation = ssdann::layout::header::MAX_GENERATION - 1;
    bytes[slot * 4096..(slot + 1) * 4096].copy_from_slice(&h.encode());
    std::fs::write(&path, &bytes).unwrap();
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    idx.insert(7000, &all[1100 * D..1101 * D]).unwrap();
    let e = idx.merge(&Default::default()).unwrap_err().to_string();
    assert!(e.contains("cannot advance"), "{e}");
    drop(idx);
    // nothing changed: the header, and the insert still pending
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    assert_eq!(idx.pending(), (1, 0, 1));
}

/// A storage whose WAL fsync blocks until released.
#[derive(Debug, Default)]
struct SlowSync {
    entered: std::sync::Mutex<bool>,
    release: std::sync::Condvar,
    released: std::sync::Mutex<bool>,
}

impl ssdann::engine::Storage for SlowSync {
    fn sync(&self, f: &std::fs::File, p: &Path, site: &'static str) -> std::io::Result<()> {
        if site == "wal.append" {
            *self.entered.lock().unwrap() = true;
            let mut r = self.released.lock().unwrap();
            while !*r {
                r = self.release.wait(r).unwrap();
            }
        }
        f.sync_all().map(|_| {
            let _ = p;
        })
    }
}

#[test]
fn a_search_never_waits_for_an_insert_s_fsync() {
    let _no_spawn = no_spawn();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, all) = build(tmp.path());
    let slow = std::sync::Arc::new(SlowSync::default());
    let idx = Index::open(
        &dir,
        OpenOptions {
            storage: ssdann::engine::StorageRef(slow.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    // something pending, so that searches take the delta/tombstone path too
    *slow.released.lock().unwrap() = true;
    idx.insert(8000, &all[1100 * D..1101 * D]).unwrap();
    idx.delete(3).unwrap();
    *slow.released.lock().unwrap() = false;
    let (idx, all) = (&idx, &all);
    std::thread::scope(|s| {
        let writer = s.spawn(move || idx.insert(8001, &all[1101 * D..1102 * D]));
        while !*slow.entered.lock().unwrap() {
            std::thread::yield_now();
        }
        *slow.entered.lock().unwrap() = false;
        // the insert is inside its fsync now; searches must complete (b7bacb7: they queued
        // behind the write side of the update lock, held through the fsync — a deadlock here)
        let (tx, rx) = std::sync::mpsc::channel();
        s.spawn(move || {
            for r in 0..50 {
                let q = &all[r * D..(r + 1) * D];
                let hits = idx.search(q, 5, &SearchParams::new(20, 4)).unwrap();
                assert!(hits.iter().all(|h| h.id != 3));
            }
            tx.send(()).unwrap();
        });
        let done = rx.recv_timeout(std::time::Duration::from_secs(20));
        *slow.released.lock().unwrap() = true;
        slow.release.notify_all();
        writer.join().unwrap().unwrap();
        assert!(done.is_ok(), "searches waited for the insert's fsync");
    });
    assert_eq!(idx.pending(), (2, 1, 3));
}

/// Fails every write to `index.ssd` after the first `ok` of them, with `errno`.
#[derive(Debug)]
struct FailingInPlace {
    ok: usize,
    seen: std::sync::atomic::AtomicUsize,
    errno: i32,
}

impl ssdann::engine::Storage for FailingInPlace {
    fn write_at(&self, f: &std::fs::File, p: &Path, d: &[u8], o: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        if p.file_name().is_some_and(|n| n == "index.ssd")
            && self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= self.ok
        {
            return Err(std::io::Error::from_raw_os_error(self.errno));
        }
        f.write_all_at(d, o)
    }
}

#[test]
fn eio_or_enospc_on_in_place_writes_leaves_an_index_that_reopens_with_every_update() {
    let _no_spawn = no_spawn();
    for (ok, errno) in [(0, libc::EIO), (3, libc::ENOSPC), (1_000_000, libc::EIO)] {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, all) = build(tmp.path());
        let storage = std::sync::Arc::new(FailingInPlace {
            ok,
            seen: Default::default(),
            errno,
        });
        let idx = Index::open(
            &dir,
            OpenOptions {
                storage: ssdann::engine::StorageRef(storage),
                ..Default::default()
            },
        )
        .unwrap();
        for i in 0..30u64 {
            idx.insert(
                9000 + i,
                &all[(1000 + i as usize) * D..(1001 + i as usize) * D],
            )
            .unwrap();
        }
        idx.delete_batch(&[1, 2, 3]).unwrap();
        let merged = idx.merge(&Default::default());
        if ok < 1_000_000 {
            let e = merged.unwrap_err().to_string();
            assert!(e.contains(&format!("os error {errno}")), "{e}");
            // committed: searches still answer, updates wait for a reopen
            let hits = idx
                .search(&all[1005 * D..1006 * D], 1, &SearchParams::new(20, 4))
                .unwrap();
            assert_eq!(hits[0].id, 9005);
            assert!(idx
                .insert(9999, &all[..D])
                .unwrap_err()
                .to_string()
                .contains("reopen"));
        } else {
            merged.unwrap();
        }
        drop(idx);
        let idx = Index::open(&dir, OpenOptions::default()).unwrap();
        assert_eq!(idx.pending(), (0, 0, 0), "ok = {ok}");
        for i in 0..30u64 {
            let q = &all[(1000 + i as usize) * D..(1001 + i as usize) * D];
            let hits = idx.search(q, 1, &SearchParams::new(20, 4)).unwrap();
            assert!(
                hits[0].id == 9000 + i && hits[0].distance < 1e-5,
                "ok = {ok}, label {}",
                9000 + i
            );
        }
        for l in [1u64, 2, 3] {
            let q = &all[l as usize * D..(l as usize + 1) * D];
            let hits = idx.search(q, 5, &SearchParams::new(20, 4)).unwrap();
            assert!(hits.iter().all(|h| h.id != l), "deleted label {l} returned");
        }
        drop(idx);
        assert!(ssdann::verify(&dir).unwrap().ok());
    }
}
