//! Compatibility (issue 11, part 11; tantivy's compat tests): small indexes of each format
//! this build writes are checked in under tests/compat/ and must keep opening, searching and
//! recovering exactly as when they were written — from now on, every later build reads them.
//!
//! - `wal2-journal3/pending`: an index with pending inserts and deletes in a version-2 WAL;
//! - `wal2-journal3/unfinished-merge`: an index whose merge was committed to a format-3
//!   journal and stopped half way through its in-place writes.
//!
//! - `format2-codes`: a format-2.1 index built with neighbour codes and f16 vectors
//!   (`tests/compat/format2-codes`, written by `write_format2_fixture`).
//!
//! Each fixture holds `expect.txt`: lines `query_row label label …` (the top-5 labels of
//! base row `query_row`'s vector, after recovery) and `live N`.
//! Regenerate (only when a new format version is added, into a new directory):
//! `SSDANN_WRITE_COMPAT=1 cargo test --release --test compat -- --ignored`.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use ssdann::engine::{Index, MergeOptions, OpenOptions, SearchParams};
use std::path::{Path, PathBuf};

const D: usize = 8;
const SP: SearchParams = SearchParams::new(40, 4);

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat/wal2-journal3")
}

fn data() -> Vec<f32> {
    ssdann::builder::synthetic::clustered(400, 4, D, 5, 20261130).0
}

fn expectations(idx: &Index, all: &[f32]) -> String {
    let mut s = String::new();
    for row in [0usize, 7, 123, 299, 350] {
        let hits = idx.search(&all[row * D..(row + 1) * D], 5, &SP).unwrap();
        let ids: Vec<String> = hits.iter().map(|h| h.id.to_string()).collect();
        s += &format!("{row} {}\n", ids.join(" "));
    }
    s += &format!("live {}\n", idx.live_count());
    s
}

#[test]
#[ignore = "writes the fixtures; run with SSDANN_WRITE_COMPAT=1"]
fn write_fixtures() {
    if std::env::var_os("SSDANN_WRITE_COMPAT").is_none() {
        return;
    }
    let all = data();
    let tmp = tempfile::tempdir().unwrap();
    let built = tmp.path().join("built");
    common::build_small(&all, 300, D, tmp.path(), &built);
    let updates = |dir: &Path| {
        let idx = Index::open(dir, OpenOptions::default()).unwrap();
        for i in 0..40u64 {
            let r = 300 + i as usize;
            idx.insert(10_000 + i, &all[r * D..(r + 1) * D]).unwrap();
        }
        idx.delete_batch(&[3, 7, 11, 10_005]).unwrap();
        idx
    };
    // pending: updates in the WAL, not merged
    let pending = fixtures().join("pending");
    let _ = std::fs::remove_dir_all(&pending);
    common::copy_dir(&built, &pending);
    let idx = updates(&pending);
    let expect = expectations(&idx, &all);
    drop(idx);
    std::fs::write(pending.join("expect.txt"), expect).unwrap();
    // unfinished merge: probe the merge's write count on a copy, then stop half way through
    let probe = tmp.path().join("probe");
    common::copy_dir(&built, &probe);
    let rep = updates(&probe).merge(&MergeOptions::default()).unwrap();
    let unfinished = fixtures().join("unfinished-merge");
    let _ = std::fs::remove_dir_all(&unfinished);
    common::copy_dir(&built, &unfinished);
    let idx = updates(&unfinished);
    idx.merge(&MergeOptions {
        fail_after_writes: Some(rep.journal_writes + rep.blocks_written as u64 / 2),
        ..Default::default()
    })
    .unwrap_err();
    drop(idx);
    // the expectations come from a finished copy
    let done = tmp.path().join("done");
    common::copy_dir(&unfinished, &done);
    let idx = Index::open(&done, OpenOptions::default()).unwrap();
    std::fs::write(unfinished.join("expect.txt"), expectations(&idx, &all)).unwrap();
}

fn check(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    common::copy_dir(&fixtures().join(name), &dir);
    let expect = std::fs::read_to_string(dir.join("expect.txt")).unwrap();
    std::fs::remove_file(dir.join("expect.txt")).unwrap();
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    assert_eq!(expectations(&idx, &data()), expect, "{name}");
    drop(idx);
    assert!(ssdann::verify(&dir).unwrap().ok(), "{name}");
    (tmp, dir)
}

#[test]
fn an_index_with_a_pending_version_2_wal_opens_and_answers_as_written() {
    let (_tmp, dir) = check("pending");
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    assert_eq!(idx.pending(), (39, 3, 44));
}

#[test]
fn an_unfinished_format_3_merge_is_reported_then_finished_as_written() {
    let name = "unfinished-merge";
    let raw = tempfile::tempdir().unwrap();
    common::copy_dir(&fixtures().join(name), raw.path());
    let v = ssdann::verify(raw.path()).unwrap();
    assert!(v.needs_recovery.is_some() && v.problem_count == 0, "{v:?}");
    let (_tmp, dir) = check(name);
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    assert_eq!(idx.pending(), (0, 0, 0));
    assert!(!dir.join("merge.journal").exists());
}

fn format2_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat/format2-codes")
}

#[test]
#[ignore = "writes the fixture; run with SSDANN_WRITE_COMPAT=1"]
fn write_format2_fixture() {
    if std::env::var_os("SSDANN_WRITE_COMPAT").is_none() {
        return;
    }
    let all = data();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("b.fbin");
    ssdann::layout::dataset::write_bin(&path, 300, D, &all[..300 * D]).unwrap();
    let params = ssdann::BuildParams {
        max_degree: 24,
        build_l: 48,
        pq_bytes: Some(8),
        threads: Some(1),
        neighbor_codes: true,
        f16_vectors: Some(true),
        ..Default::default()
    };
    let out = format2_fixture();
    let _ = std::fs::remove_dir_all(&out);
    ssdann::build_index(&path, &out, &params, &ssdann::NoProgress).unwrap();
    let idx = Index::open(&out, OpenOptions::default()).unwrap();
    let expect = expectations(&idx, &all);
    drop(idx);
    std::fs::write(out.join("expect.txt"), expect).unwrap();
}

#[test]
fn a_format_2_index_with_neighbor_codes_and_f16_vectors_opens_and_answers_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("f2");
    common::copy_dir(&format2_fixture(), &dir);
    let expect = std::fs::read_to_string(dir.join("expect.txt")).unwrap();
    std::fs::remove_file(dir.join("expect.txt")).unwrap();
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    let h = idx.header();
    assert!(h.layout.nbr_code_m > 0 && h.layout.f16_vectors);
    assert_eq!(expectations(&idx, &data()), expect);
    drop(idx);
    assert!(ssdann::verify(&dir).unwrap().ok());
}
