//! Neighbour codes (issue 13, parts 1, 4 and 7; format 2): records that hold each
//! neighbour's residual PQ code rank candidates better at the same RAM, so a search reads
//! fewer sectors for the same recall; the format is refused where it cannot be honoured.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{recall_at_k, set_10k, standard_params};
use ssdann::engine::{Index, OpenOptions, SearchParams};
use ssdann::{build_index, BuildError, EngineError, GroundTruth, NoProgress, VectorFile};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The 10K set built with the standard parameters and f16 vectors + neighbour codes.
fn f16_index() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("f16");
        let params = ssdann::BuildParams {
            neighbor_codes: true,
            f16_vectors: Some(true),
            ..standard_params()
        };
        build_index(&set_10k().base, &dir, &params, &NoProgress).unwrap();
        (tmp, dir)
    })
    .1
}

/// The 10K set built twice with the standard parameters: (plain, with neighbour codes).
fn indexes() -> &'static (PathBuf, PathBuf) {
    static DIRS: OnceLock<(tempfile::TempDir, (PathBuf, PathBuf))> = OnceLock::new();
    &DIRS
        .get_or_init(|| {
            let set = set_10k();
            let tmp = tempfile::tempdir().unwrap();
            let (plain, coded) = (tmp.path().join("plain"), tmp.path().join("coded"));
            // plain records: growth 1 rules out the default's neighbour codes
            let plain_params = ssdann::BuildParams {
                max_index_growth: 1.0,
                ..standard_params()
            };
            build_index(&set.base, &plain, &plain_params, &NoProgress).unwrap();
            let params = ssdann::BuildParams {
                neighbor_codes: true,
                ..standard_params()
            };
            build_index(&set.base, &coded, &params, &NoProgress).unwrap();
            (tmp, (plain, coded))
        })
        .1
}

/// (recall@10, mean sector reads) of 1,000 queries at list size `l`, W = 4, one thread.
fn measure(dir: &Path, l: usize) -> (f64, f64) {
    let set = set_10k();
    let q = VectorFile::open(&set.queries).unwrap();
    let gt = GroundTruth::read(&set.gt).unwrap();
    let nq = q.len().min(gt.nq).min(1000);
    let qv = &q.contiguous::<f32>().unwrap()[..nq * q.dim()];
    let opts = OpenOptions {
        read_only: true,
        verify_reads: true,
        ..Default::default()
    };
    let idx = Index::open(dir, opts).unwrap();
    let r = idx
        .batch_search(qv, 10, &SearchParams::new(l, 4), Some(1))
        .unwrap();
    let ids: Vec<Vec<u32>> = r
        .iter()
        .map(|(n, _)| n.iter().map(|x| x.id as u32).collect())
        .collect();
    let reads = r.iter().map(|x| f64::from(x.1.sector_reads)).sum::<f64>() / nq as f64;
    (recall_at_k(&ids, &gt, 10), reads)
}

#[test]
fn neighbor_codes_reach_the_same_recall_with_fewer_reads() {
    let (plain, coded) = indexes();
    let h = Index::open(
        coded,
        OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap()
    .header();
    // 384-d f32, R = 64, M = 48: M₂ = 31 fits, one record per sector.
    assert_eq!((h.layout.nbr_code_m, h.layout.nodes_per_block), (31, 1));
    assert!(coded.join("pq_refine.bin").exists());
    // Reads at equal recall, interpolated over an L sweep of each index (the same rule on the
    // real 10K set and on the generated stand-in, whose recall per L differs).
    let sweep = |dir: &Path| -> Vec<(f64, f64)> {
        [15, 20, 30, 40, 50, 75, 100]
            .iter()
            .map(|&l| measure(dir, l))
            .collect()
    };
    let (plain_rows, coded_rows) = (sweep(plain), sweep(coded));
    let target = 0.95;
    let at = |rows: &[(f64, f64)]| -> Option<f64> {
        rows.windows(2).find_map(|w| {
            let ((r0, s0), (r1, s1)) = (w[0], w[1]);
            (r0 <= target && target <= r1 && r1 > r0)
                .then(|| s0 + (target - r0) / (r1 - r0) * (s1 - s0))
        })
    };
    eprintln!("plain (recall, reads) by L: {plain_rows:.4?}\nneighbour codes: {coded_rows:.4?}");
    let reads_plain = at(&plain_rows).expect("plain reaches recall 0.95 within L = 15..100");
    let reads_coded = at(&coded_rows).expect("codes reach recall 0.95 within L = 15..100");
    // What the codes buy on any data: routing accuracy — more recall at the same L (real 10K
    // set, 2026-12-07: +0.050 / +0.043 / +0.027 at L = 15 / 20 / 30; the generated stand-in:
    // +0.127 / +0.110 / +0.079). With the refinement switched off in push_neighbors (the
    // mutation check) the gain is gone and this fails.
    for (k, l) in [15, 20, 30].iter().enumerate() {
        let (rp, rc) = (plain_rows[k].0, coded_rows[k].0);
        assert!(
            rc >= rp + 0.02,
            "L = {l}: neighbour codes recall {rc:.4}, plain {rp:.4}"
        );
    }
    // Reads at equal recall: fewer, but how many fewer depends on the data. The coded index
    // has one record per sector, the plain one two, whose co-location (sector reuse) gives
    // back part of the routing gain: real 10K set 23.2 against 28.8 reads (0.81×); generated
    // stand-in 43.5 against 44.7 (0.97×). docs/PERFORMANCE.md has the full-size figures.
    assert!(
        reads_coded <= reads_plain,
        "at recall@10 {target}: neighbour codes read {reads_coded:.1} sectors, plain {reads_plain:.1}"
    );
}

/// recall@10 of 1,000 queries at L = 50 on an open index whose labels are the base rows, or
/// `moved + row` for a row re-inserted under a new label; and the mean sector reads.
fn recall_open(idx: &Index, moved: u64) -> (f64, f64) {
    let set = set_10k();
    let q = VectorFile::open(&set.queries).unwrap();
    let gt = GroundTruth::read(&set.gt).unwrap();
    let nq = q.len().min(gt.nq).min(1000);
    let qv = &q.contiguous::<f32>().unwrap()[..nq * q.dim()];
    let r = idx
        .batch_search(qv, 10, &SearchParams::new(50, 4), Some(1))
        .unwrap();
    let ids: Vec<Vec<u32>> = r
        .iter()
        .map(|(hits, _)| {
            hits.iter()
                .map(|h| (if h.id >= moved { h.id - moved } else { h.id }) as u32)
                .collect()
        })
        .collect();
    let reads = r.iter().map(|x| f64::from(x.1.sector_reads)).sum::<f64>() / nq as f64;
    (recall_at_k(&ids, &gt, 10), reads)
}

/// Checks every neighbour code in `dir`'s index.ssd: all records that list a slot hold the
/// same code for it, and that code is the one encoded from the slot's own stored vector and
/// PQ code (checked exactly for `exact` slots and every 25th other). Returns the number of
/// (record, neighbour) pairs checked.
fn check_codes(dir: &Path, exact: &[u32]) -> usize {
    use ssdann::layout::labels::{read_labels, FREE_LABEL};
    use ssdann::layout::pq::read_codes;
    use ssdann::layout::{IndexHeader, PqCodebook, SECTOR_BYTES};
    use std::collections::HashMap;
    let path = dir.join("index.ssd");
    let bytes = std::fs::read(&path).unwrap();
    let (h, _) = IndexHeader::choose(&path, &bytes[..2 * SECTOR_BYTES]).unwrap();
    let l = h.layout;
    let cb = l.nbr_code_bytes();
    assert!(cb > 0 && l.f16_vectors);
    let pq = PqCodebook::read(&dir.join("pq_pivots.bin")).unwrap();
    let refine = PqCodebook::read(&dir.join("pq_refine.bin")).unwrap();
    let (n, m, codes) = read_codes(&dir.join("pq_codes.bin")).unwrap();
    assert_eq!(n as u64, h.n_slots);
    let labels = read_labels(&dir.join("labels.bin")).unwrap();
    let rec = |id: u32| {
        let id = u64::from(id);
        let off = l.block_offset_bytes(l.block_of(id)) as usize;
        l.record(&bytes[off..off + l.block_bytes()], l.offset_in_block(id))
    };
    let mut seen: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut pairs = 0;
    for s in 0..n as u32 {
        if labels[s as usize] == FREE_LABEL {
            continue;
        }
        let r = rec(s);
        for (k, x) in r.neighbors().enumerate() {
            assert_ne!(
                labels[x as usize], FREE_LABEL,
                "node {s} lists free slot {x}"
            );
            let code = &r.neighbor_codes[k * cb..(k + 1) * cb];
            let first = seen.entry(x).or_insert_with(|| code.to_vec());
            assert_eq!(
                first.as_slice(),
                code,
                "slot {x}: node {s} holds another code for it"
            );
            pairs += 1;
        }
    }
    let mut scratch = Vec::new();
    let mut want = vec![0u8; cb];
    for (&x, code) in &seen {
        if x % 25 != 0 && !exact.contains(&x) {
            continue;
        }
        let v: Vec<f32> = ssdann::layout::distance::scalar::f16_le_values(rec(x).vector).collect();
        let c1 = &codes[x as usize * m..(x as usize + 1) * m];
        refine.encode_refinement(&pq, &v, c1, h.metric, &mut want, &mut scratch);
        assert_eq!(
            code, &want,
            "slot {x}: its code is not the one its vector encodes to"
        );
    }
    pairs
}

/// Inserts, deletes and merges maintain an index with f16 vectors and neighbour codes: the
/// merge writes f16 records and every listed slot's code (new points', repaired and patched
/// lists'), so recall holds and every code is the one its slot's vector encodes to.
#[test]
fn f16_vectors_and_neighbor_codes_take_inserts_deletes_and_merges() {
    let set = set_10k();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("f16");
    common::copy_dir(f16_index(), &dir);
    let base = VectorFile::open(&set.base).unwrap();
    let d = base.dim();
    let all = base.contiguous::<f32>().unwrap();
    let idx = Index::open(&dir, OpenOptions::default()).unwrap();
    let moved = 1u64 << 40;
    let (recall0, reads0) = recall_open(&idx, moved);
    // 5% deleted; each deleted row re-inserted under label `moved + row`.
    let rows: Vec<u64> = (0..base.len() as u64).step_by(20).collect();
    idx.delete_batch(&rows).unwrap();
    let items: Vec<(u64, &[f32])> = rows
        .iter()
        .map(|&r| (moved + r, &all[r as usize * d..(r as usize + 1) * d]))
        .collect();
    idx.insert_batch(&items).unwrap();
    // f16's range is checked before anything is logged
    let mut big = all[..d].to_vec();
    big[7] = 1e6;
    match idx.insert(moved - 1, &big).unwrap_err() {
        EngineError::InvalidQuery { field, reason, .. } => {
            assert_eq!(field, "vector");
            assert!(reason.contains("f16"), "{reason}");
        }
        other => panic!("expected InvalidQuery, got {other:?}"),
    }
    let (recall_pending, _) = recall_open(&idx, moved);
    let report = idx.merge(&Default::default()).unwrap();
    assert_eq!((report.deleted, report.inserted), (rows.len(), rows.len()));
    let (recall1, reads1) = recall_open(&idx, moved);
    drop(idx);
    eprintln!(
        "recall@10 at L = 50: built {recall0:.4} ({reads0:.1} reads), pending {recall_pending:.4}, merged {recall1:.4} ({reads1:.1} reads)"
    );
    assert!(
        recall_pending >= recall0 - 0.01,
        "{recall_pending} vs {recall0}"
    );
    assert!(
        recall1 >= recall0 - 0.01,
        "after the merge {recall1} vs {recall0}"
    );
    // the re-inserted points took the freed slots: check all of their codes exactly
    let labels = ssdann::layout::labels::read_labels(&dir.join("labels.bin")).unwrap();
    let new_slots: Vec<u32> = (0..labels.len() as u32)
        .filter(|&s| labels[s as usize] >= moved && labels[s as usize] != u64::MAX)
        .collect();
    assert_eq!(new_slots.len(), rows.len());
    assert!(check_codes(&dir, &new_slots) > 10_000 * 32);
    // and the index reopens and verifies
    let v = ssdann::verify(&dir).unwrap();
    assert!(v.ok(), "{v:?}");
}

#[test]
fn a_missing_or_foreign_residual_codebook_is_named() {
    let (_, coded) = indexes();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    common::copy_dir(coded, &dir);
    std::fs::remove_file(dir.join("pq_refine.bin")).unwrap();
    let ro = || OpenOptions {
        read_only: true,
        ..Default::default()
    };
    let err = Index::open(&dir, ro())
        .err()
        .expect("opened without pq_refine.bin");
    let msg = err.to_string();
    assert!(
        matches!(err, EngineError::Layout(_)) && msg.contains("pq_refine.bin"),
        "{msg}"
    );
    // the first-level codebook in its place: d agrees, M (48) is not M₂ (31)
    std::fs::copy(dir.join("pq_pivots.bin"), dir.join("pq_refine.bin")).unwrap();
    match Index::open(&dir, ro())
        .err()
        .expect("opened with a foreign codebook")
    {
        EngineError::Inconsistent { path, detail } => {
            assert!(path.ends_with("pq_refine.bin"), "{}", path.display());
            assert!(
                detail.contains("M₂ = 48") && detail.contains("nbr_code_m = 31"),
                "{detail}"
            );
        }
        other => panic!("expected Inconsistent, got {other:?}"),
    }
}

#[test]
fn neighbor_codes_are_refused_where_they_do_not_fit_or_the_budget_cannot_hold_them() {
    let set = set_10k();
    let tmp = tempfile::tempdir().unwrap();
    let err = |p: ssdann::BuildParams| {
        build_index(&set.base, &tmp.path().join("x"), &p, &NoProgress).unwrap_err()
    };
    // R = 600: 1,536 + 4 + 2,400 bytes leave 152 bytes for 600 codes.
    for budget in [None, Some(1 << 30)] {
        match err(ssdann::BuildParams {
            neighbor_codes: true,
            max_degree: 600,
            build_l: 600,
            memory_budget_bytes: budget,
            ..standard_params()
        }) {
            BuildError::InvalidParameter { field, reason, .. } => {
                assert_eq!(field, "--neighbor-codes");
                assert!(
                    reason.contains("R = 600 neighbours") && reason.ends_with("none fits"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(!tmp.path().join("x").exists());
    // A budget that holds partitions of 10K × 384 but not the codes' training sample: an
    // explicit --neighbor-codes is refused before any stage runs (no work directory), not
    // at the write stage after every partition graph is built.
    match err(ssdann::BuildParams {
        neighbor_codes: true,
        memory_budget_bytes: Some(70 << 20),
        ..standard_params()
    }) {
        BuildError::InvalidParameter { field, reason, .. } => {
            assert_eq!(field, "--neighbor-codes");
            assert!(
                reason.contains("at the write stage, the budget is 70 MiB"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!tmp.path().join(".x.partitioned").exists());
    assert!(!tmp.path().join("x").exists());
}

/// A memory-budgeted build chooses the record layout as the one-shot build does — f16 +
/// 43-byte neighbour codes on 384-d f32 — trains and encodes the codes within its budget,
/// and its index reaches the one-shot index's recall, every code the one its slot encodes to.
#[test]
fn a_budgeted_build_writes_the_same_neighbour_codes_and_f16_records() {
    let set = set_10k();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("budgeted");
    let params = ssdann::BuildParams {
        memory_budget_bytes: Some(80 << 20),
        ..standard_params()
    };
    let rep = build_index(&set.base, &dir, &params, &NoProgress).unwrap();
    assert!(rep.partitions > 1, "{} partitions", rep.partitions);
    assert_eq!((rep.nbr_code_m, rep.f16_vectors), (43, true));
    let opts = || OpenOptions {
        read_only: true,
        ..Default::default()
    };
    let (budgeted, one_shot) = (
        Index::open(&dir, opts()).unwrap(),
        Index::open(f16_index(), opts()).unwrap(),
    );
    assert_eq!(budgeted.header().layout, one_shot.header().layout);
    let (rb, reads_b) = recall_open(&budgeted, u64::MAX);
    let (ro, reads_o) = recall_open(&one_shot, u64::MAX);
    eprintln!(
        "L = 50: budgeted {rb:.4} ({reads_b:.1} reads), one-shot {ro:.4} ({reads_o:.1} reads)"
    );
    assert!(rb >= ro - 0.01, "budgeted {rb:.4} vs one-shot {ro:.4}");
    drop(budgeted);
    let labels = ssdann::layout::labels::read_labels(&dir.join("labels.bin")).unwrap();
    let first: Vec<u32> = (0..labels.len() as u32).take(200).collect();
    assert!(check_codes(&dir, &first) > 10_000 * 32);
}

#[test]
fn f16_vectors_make_room_for_longer_codes_and_keep_distances_within_f16_error() {
    let (_, coded) = indexes();
    let dir = f16_index();
    let idx = Index::open(
        dir,
        OpenOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .unwrap();
    let h = idx.header();
    // 768 + 4 + 256 bytes leave 47 per neighbour: M₂ = 43 (31 with f32 vectors).
    assert_eq!(
        (
            h.layout.nbr_code_m,
            h.layout.f16_vectors,
            h.layout.vector_bytes()
        ),
        (43, true, 768)
    );
    let (r16, reads16) = measure(dir, 30);
    let (r32, reads32) = measure(coded, 30);
    eprintln!("L=30: f16 + M₂ 43: {r16:.4}, {reads16:.1} reads; f32 + M₂ 31: {r32:.4}, {reads32:.1} reads");
    assert!(
        r16 >= r32 - 0.003,
        "f16 vectors + M₂ 43: {r16:.4} < f32 + M₂ 31: {r32:.4}"
    );
    // reported distances: squared L2 to the f16 vector, within f16 rounding of the exact one
    let set = set_10k();
    let base = VectorFile::open(&set.base).unwrap();
    let bv = base.contiguous::<f32>().unwrap();
    let q = VectorFile::open(&set.queries).unwrap();
    let qv = q.contiguous::<f32>().unwrap();
    let d = base.dim();
    for qi in 0..20 {
        let hits = idx
            .search(&qv[qi * d..(qi + 1) * d], 10, &SearchParams::new(50, 4))
            .unwrap();
        for hit in hits {
            let row = hit.id as usize;
            let exact = ssdann::layout::distance::scalar::l2_sq_f32(
                &qv[qi * d..(qi + 1) * d],
                &bv[row * d..(row + 1) * d],
            );
            assert!(
                (exact - hit.distance).abs() <= 2e-3 * exact.max(1e-3),
                "{} vs exact {exact}",
                hit.distance
            );
        }
    }
    // f32 data beyond f16's range is refused, naming the row and coordinate; u8 data too
    let tmp = tempfile::tempdir().unwrap();
    let big_path = tmp.path().join("big.fbin");
    let mut big: Vec<f32> = (0..200 * 8).map(|i| (i % 13) as f32).collect();
    big[57 * 8 + 3] = 70_000.0;
    ssdann::layout::dataset::write_bin(&big_path, 200, 8, &big).unwrap();
    let u8_path = tmp.path().join("b.u8bin");
    let data: Vec<u8> = (0..200 * 8).map(|i| (i * 37 % 251) as u8).collect();
    ssdann::layout::dataset::write_bin(&u8_path, 200, 8, &data).unwrap();
    for (path, why) in [(&big_path, "row 57 coordinate 3 = 70000"), (&u8_path, "u8")] {
        let params = ssdann::BuildParams {
            f16_vectors: Some(true),
            max_degree: 8,
            build_l: 16,
            pq_bytes: Some(4),
            ..Default::default()
        };
        match build_index(path, &tmp.path().join("x"), &params, &NoProgress).unwrap_err() {
            BuildError::InvalidParameter { field, reason, .. } => {
                assert_eq!(field, "--vector-encoding");
                assert!(reason.contains(why), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
