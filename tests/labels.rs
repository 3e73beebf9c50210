//! The slot → label map of an open index (issue 12, part 2: "an engine whose RAM is the PQ
//! codes"): identity labels hold nothing, any other map is `labels.bin` memory-mapped;
//! results are labels either way, through merges; a label on two slots, a damaged body and a
//! free-slot count that disagrees with the header are refused at open, naming the file.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use ssdann::builder::build_from_vectors;
use ssdann::engine::{EngineError, Index, MergeOptions, OpenOptions, SearchParams};
use ssdann::layout::labels::{read_labels, write_labels, FREE_LABEL, LABELS_FILE};
use ssdann::{BuildParams, LayoutError, NoProgress};
use std::path::{Path, PathBuf};

const N: usize = 1500;
const D: usize = 32;

fn build(tmp: &Path, reorder: bool) -> (PathBuf, Vec<f32>) {
    let (base, _) = ssdann::builder::synthetic::clustered(N, 0, D, 8, 41);
    let dir = tmp.join("idx");
    let params = BuildParams {
        max_degree: 24,
        build_l: 48,
        pq_bytes: Some(8),
        threads: Some(2),
        reorder,
        ..Default::default()
    };
    build_from_vectors(&base, D, &dir, &params, &NoProgress).unwrap();
    (dir, base)
}

fn ro() -> OpenOptions {
    OpenOptions {
        read_only: true,
        ..Default::default()
    }
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Searches base point `i` and checks that it finds itself first (label `expect_first`, at
/// distance 0) and that every hit's distance is the exact distance to the vector stored
/// under the label returned (`vector_of`): a mistranslated label fails the second check.
fn check_hits(idx: &Index, q: &[f32], expect_first: u64, vector_of: &dyn Fn(u64) -> Vec<f32>) {
    let hits = idx.search(q, 10, &SearchParams::new(64, 4)).unwrap();
    assert_eq!(hits.len(), 10);
    assert_eq!(hits[0].id, expect_first, "{hits:?}");
    assert!(hits[0].distance < 1e-4, "{hits:?}");
    for h in &hits {
        let exact = l2(q, &vector_of(h.id));
        assert!(
            (h.distance - exact).abs() <= 1e-3 * exact.max(1.0),
            "label {}: reported {} but its vector is at {exact}",
            h.id,
            h.distance
        );
    }
}

#[test]
fn identity_labels_hold_nothing_and_search_returns_row_numbers_through_updates_and_a_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, base) = build(tmp.path(), false);
    let on_disk = read_labels(&dir.join(LABELS_FILE)).unwrap();
    assert_eq!(on_disk, (0..N as u64).collect::<Vec<u64>>());
    let row = |l: u64| base[l as usize * D..(l as usize + 1) * D].to_vec();

    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    let m = idx.memory_report();
    assert_eq!(
        (m.labels_bytes, m.labels_mapped_bytes, m.label_map_bytes),
        (0, 0, 0)
    );
    assert_eq!(m.pq_codes_bytes, N * 8);
    assert_eq!(m.total_bytes(), idx.memory_bytes());
    assert_eq!(idx.max_label(), Some(N as u64 - 1));
    for i in (0..N).step_by(37) {
        check_hits(&idx, &row(i as u64), i as u64, &row);
    }

    // updates on identity labels need no label → slot map
    let new_label = 10 * N as u64;
    idx.delete(7).unwrap();
    idx.insert(new_label, &row(7)).unwrap();
    assert!(matches!(
        idx.delete(7),
        Err(EngineError::InvalidQuery { field: "label", .. })
    ));
    assert_eq!(idx.memory_report().label_map_bytes, 0);
    assert_eq!(idx.live_count(), N);
    let vector_of = |l: u64| if l == new_label { row(7) } else { row(l) };
    check_hits(&idx, &row(7), new_label, &vector_of);
    check_hits(&idx, &row(8), 8, &vector_of);

    // the merge reuses slot 7 for the new label: the map is no longer the identity
    idx.merge(&MergeOptions::default()).unwrap();
    let on_disk = read_labels(&dir.join(LABELS_FILE)).unwrap();
    assert_eq!(on_disk[7], new_label);
    let m = idx.memory_report();
    assert_eq!(
        (m.labels_bytes, m.labels_mapped_bytes, m.label_map_bytes),
        (0, N * 8, 0)
    );
    assert_eq!(idx.max_label(), Some(new_label));
    for i in (0..N).step_by(37).filter(|&i| i != 7) {
        check_hits(&idx, &row(i as u64), i as u64, &vector_of);
    }
    check_hits(&idx, &row(7), new_label, &vector_of);
    drop(idx);
    let idx = Index::open(&dir, ro()).unwrap();
    check_hits(&idx, &row(7), new_label, &vector_of);
    assert_eq!(idx.live_count(), N);
}

#[test]
fn reordered_labels_are_mapped_and_every_result_is_translated_through_the_map() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, base) = build(tmp.path(), true);
    let on_disk = read_labels(&dir.join(LABELS_FILE)).unwrap();
    let moved = on_disk
        .iter()
        .enumerate()
        .filter(|&(s, &l)| l != s as u64)
        .count();
    assert!(moved > N / 2, "the build reordered only {moved} slots");
    let mut sorted = on_disk.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..N as u64).collect::<Vec<u64>>());
    let row = |l: u64| base[l as usize * D..(l as usize + 1) * D].to_vec();

    let idx = Index::open(&dir, ro()).unwrap();
    let m = idx.memory_report();
    assert_eq!(
        (m.labels_bytes, m.labels_mapped_bytes, m.label_map_bytes),
        (0, N * 8, 0)
    );
    // the mapped labels are file-backed: not in the RAM total
    assert_eq!(
        m.total_bytes(),
        m.pq_codes_bytes
            + m.pq_pivots_bytes
            + m.node_cache_bytes
            + m.pending_bytes
            + m.navigation_bytes
    );
    assert_eq!(idx.max_label(), Some(N as u64 - 1));
    for i in (0..N).step_by(23) {
        check_hits(&idx, &row(i as u64), i as u64, &row);
    }
    drop(idx);

    // updates build the label → slot map from the mapped labels
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    idx.delete(11).unwrap();
    assert!(idx.memory_report().label_map_bytes >= N * 17);
    let hits = idx.search(&row(11), 10, &SearchParams::new(64, 4)).unwrap();
    assert!(hits.iter().all(|h| h.id != 11), "{hits:?}");
    check_hits(&idx, &row(12), 12, &row);
}

/// Rewrites labels.bin of `dir` (a valid file, CRC and all) with `labels` and returns the
/// error of a read-only open and `verify`'s problems.
fn open_with(dir: &Path, labels: &[u64]) -> (EngineError, Vec<String>) {
    write_labels(&dir.join(LABELS_FILE), labels).unwrap();
    match Index::open(dir, ro()) {
        Ok(_) => panic!("an index opened with a bad labels.bin"),
        Err(e) => (e, ssdann::verify(dir).unwrap().problems),
    }
}

#[test]
fn a_label_on_two_slots_a_damaged_body_and_a_wrong_free_count_are_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = build(tmp.path(), true);
    let path = dir.join(LABELS_FILE);
    let good = read_labels(&path).unwrap();
    let shown = path.display().to_string();

    // a label below n on two slots
    // Open and verify both refuse `dup`, naming labels.bin and the duplicated label.
    let refuses_duplicate = |dup: &[u64], label: u64| {
        let (e, problems) = open_with(&dir, dup);
        let msg = format!("label {label} is mapped to two slots");
        assert!(
            matches!(&e, EngineError::Layout(LayoutError::Corrupt { .. })),
            "{e:?}"
        );
        assert!(
            e.to_string().contains(&shown) && e.to_string().contains(&msg),
            "{e}"
        );
        assert!(problems.iter().any(|p| p.contains(&msg)), "{problems:?}");
    };
    let mut dup = good.clone();
    dup[100] = dup[200];
    refuses_duplicate(&dup, good[200]);

    // a label past n on two slots
    let mut dup = good.clone();
    dup[3] = 1 << 40;
    dup[N - 1] = 1 << 40;
    refuses_duplicate(&dup, 1 << 40);

    // a free slot the header does not count (live_count = n)
    let mut freed = good.clone();
    freed[5] = FREE_LABEL;
    let (e, problems) = open_with(&dir, &freed);
    assert!(
        matches!(&e, EngineError::Inconsistent { .. })
            && e.to_string().contains(&shown)
            && e.to_string().contains(&format!(
                "1 free slots (label 2^64 - 1) but index.ssd has n = {N}, live_count = {N}"
            )),
        "{e}"
    );
    assert!(
        problems.iter().any(|p| p.contains("1 free slots")),
        "{problems:?}"
    );

    // one flipped bit in the body: the body CRC, checked at open
    write_labels(&path, &good).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[36 + 8 * 700] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let Err(e) = Index::open(&dir, ro()) else {
        panic!("an index opened with a flipped bit in labels.bin")
    };
    assert!(
        matches!(
            &e,
            EngineError::Layout(LayoutError::ChecksumMismatch { what, .. }) if what == "body"
        ) && e.to_string().contains(&shown),
        "{e}"
    );

    // restored, it opens
    write_labels(&path, &good).unwrap();
    assert!(Index::open(&dir, ro()).is_ok());
}
