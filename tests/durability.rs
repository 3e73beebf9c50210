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

#[test]
fn a_second_writer_is_refused_and_read_only_handles_share_but_not_with_a_writer() {
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
    let hits = r2
        .search(&all[..D], 1, &SearchParams { l: 20, w: 4 })
        .unwrap();
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
        field(idx.search(
            q,
            1_000_000_000,
            &SearchParams {
                l: 1_000_000_000,
                w: 4
            }
        )),
        "k"
    );
    assert_eq!(
        field(idx.search(
            q,
            10,
            &SearchParams {
                l: 1_000_000_000,
                w: 4
            }
        )),
        "L"
    );
    assert_eq!(
        field(idx.search(
            q,
            10,
            &SearchParams {
                l: 20,
                w: 1_000_000_000
            }
        )),
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
    assert_eq!(idx.pending(), (0, 0, 0));
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

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn verify_reports_a_half_applied_merge_as_needing_recovery_not_as_damage() {
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
    copy_dir(&dir, &probe);
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
