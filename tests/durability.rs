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
