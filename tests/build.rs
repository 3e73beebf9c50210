//! Builder acceptance tests (issue 2) on real data (or the generated stand-in).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::{recall_at_k, set_10k, standard_params};
use ssdann::builder::greedy_search::{greedy_search, SearchScratch};
use ssdann::builder::pq_train::{encode_all, train_pq};
use ssdann::layout::pq::{pq_distance, PQ_CENTROIDS};
use ssdann::layout::{IndexHeader, SECTOR_BYTES};
use ssdann::{build_index, verify, BuildParams, GroundTruth, Metric, NoProgress, VectorFile};
use std::path::Path;

/// Reads index.ssd back into (header, f32 vectors n × d, adjacency lists).
fn load_index(dir: &Path) -> (IndexHeader, Vec<f32>, Vec<Vec<u32>>) {
    let path = dir.join("index.ssd");
    let bytes = std::fs::read(&path).unwrap();
    let (h, _) = IndexHeader::choose(&path, &bytes[..2 * SECTOR_BYTES]).unwrap();
    let l = h.layout;
    let mut vecs = Vec::with_capacity(h.n_slots as usize * l.dim);
    let mut adj = Vec::with_capacity(h.n_slots as usize);
    for id in 0..h.n_slots {
        let off = l.block_offset_bytes(l.block_of(id)) as usize;
        let block = &bytes[off..off + l.block_bytes()];
        let rec = l.record(block, l.offset_in_block(id));
        vecs.extend(
            rec.vector
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        adj.push(rec.neighbors().collect());
    }
    (h, vecs, adj)
}

#[test]
fn built_graph_reaches_recall_097_in_memory_and_verifies() {
    let set = set_10k();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("idx");
    // exact vectors (the default would store f16): the records must hold the rows verbatim;
    // the builder still chooses neighbour codes (growth 2 on 384-d f32)
    let params = ssdann::BuildParams {
        f16_vectors: Some(false),
        ..standard_params()
    };
    let rep = build_index(&set.base, &out, &params, &NoProgress).unwrap();
    assert_eq!((rep.n, rep.dim, rep.pq_m), (10_000, 384, 48));
    assert_eq!((rep.nbr_code_m, rep.f16_vectors), (31, false));
    let v = verify(&out).unwrap();
    assert!(v.ok(), "verify problems: {:?}", v.problems);
    assert_eq!(v.nodes_checked, 10_000);

    let (h, vecs, adj) = load_index(&out);
    assert!(adj.iter().all(|a| a.len() <= 64));
    let labels = ssdann::layout::labels::read_labels(&out.join("labels.bin")).unwrap();
    let base = VectorFile::open(&set.base).unwrap();
    let bv = base.contiguous::<f32>().unwrap();
    for (slot, &label) in labels.iter().enumerate() {
        let l = label as usize;
        assert_eq!(
            &vecs[slot * 384..(slot + 1) * 384],
            &bv[l * 384..(l + 1) * 384],
            "slot {slot} must hold row {label} verbatim"
        );
    }
    let queries = VectorFile::open(&set.queries).unwrap();
    let q = queries.contiguous::<f32>().unwrap();
    let gt = GroundTruth::read(&set.gt).unwrap();
    let nq = gt.nq.min(queries.len());
    let mut scratch = SearchScratch::new(10_000);
    let found: Vec<Vec<u32>> = (0..nq)
        .map(|i| {
            greedy_search(
                &vecs,
                384,
                Metric::L2,
                &adj,
                h.entry_point as u32,
                &q[i * 384..(i + 1) * 384],
                100,
                &mut scratch,
            );
            scratch
                .queue
                .items()
                .iter()
                .take(10)
                .map(|c| labels[c.id as usize] as u32)
                .collect()
        })
        .collect();
    let recall = recall_at_k(&found, &gt, 10);
    eprintln!(
        "in-memory GreedySearch recall@10 at L=100 over {nq} queries: {recall:.4} (real data: {})",
        set.real
    );
    assert!(recall >= 0.97, "recall@10 {recall} < 0.97");
}

#[test]
fn corrupting_any_sector_or_the_header_fails_verify_naming_it() {
    let set = set_10k();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("idx");
    let p = BuildParams {
        max_degree: 16,
        build_l: 24,
        pq_bytes: Some(8),
        ..standard_params()
    };
    build_index(&set.base, &out, &p, &NoProgress).unwrap();
    assert!(verify(&out).unwrap().ok());
    let file = out.join("index.ssd");
    let good = std::fs::read(&file).unwrap();
    let sectors = good.len() / SECTOR_BYTES;
    // sector 0 (header slot 0), the first and last data sectors, one in the middle, and
    // the byte that stores a block's CRC
    for (sector, byte) in [
        (0usize, 17usize),
        (2, 0),
        (sectors / 2, 1000),
        (sectors - 1, 4095),
    ] {
        let mut bad = good.clone();
        bad[sector * SECTOR_BYTES + byte] ^= 0x40;
        std::fs::write(&file, &bad).unwrap();
        let rep = verify(&out).unwrap();
        assert!(!rep.ok(), "flip in sector {sector} not detected");
        let want = if sector == 0 {
            "header slot 0".to_string()
        } else {
            format!("sector {sector} ")
        };
        assert!(
            rep.problems.iter().any(|p| p.contains(&want)),
            "sector {sector}: problems {:?} do not name {want:?}",
            rep.problems
        );
    }
    std::fs::write(&file, &good[..good.len() - SECTOR_BYTES]).unwrap();
    let rep = verify(&out).unwrap();
    assert!(
        rep.problems
            .iter()
            .any(|p| p.contains("truncated") || p.contains("implies")),
        "{:?}",
        rep.problems
    );
    std::fs::write(&file, &good).unwrap();
    let codes = out.join("pq_codes.bin");
    let mut c = std::fs::read(&codes).unwrap();
    let mid = c.len() / 2;
    c[mid] ^= 1;
    std::fs::write(&codes, &c).unwrap();
    let rep = verify(&out).unwrap();
    assert!(
        rep.problems
            .iter()
            .any(|p| p.contains("pq_codes.bin") && p.contains("checksum mismatch in body")),
        "{:?}",
        rep.problems
    );
    std::fs::write(&codes, {
        c[mid] ^= 1;
        &c
    })
    .unwrap();
    assert!(verify(&out).unwrap().ok());
    // the navigation graph the build wrote is checked too
    let nav = out.join(ssdann::layout::navigation::NAVIGATION_FILE);
    let mut g = std::fs::read(&nav).unwrap();
    let at = g.len() - 10;
    g[at] ^= 1;
    std::fs::write(&nav, &g).unwrap();
    let rep = verify(&out).unwrap();
    assert!(
        rep.problems
            .iter()
            .any(|p| p.contains("navigation.bin") && p.contains("checksum mismatch in body")),
        "{:?}",
        rep.problems
    );
}

fn reconstruction_error(m: usize, data: &[f32], d: usize) -> f64 {
    let pq = train_pq(data, d, m, 7, &NoProgress);
    let codes = encode_all(&pq, data, d, &NoProgress);
    let mut rec = vec![0f32; d];
    let mut total = 0f64;
    for (x, code) in data.chunks_exact(d).zip(codes.chunks_exact(m)) {
        pq.decode(code, &mut rec);
        let err: f64 = x
            .iter()
            .zip(&rec)
            .map(|(&a, &b)| f64::from(a - b).powi(2))
            .sum();
        let norm: f64 = x.iter().map(|&a| f64::from(a).powi(2)).sum();
        total += err / norm.max(1e-12);
    }
    total / (data.len() / d) as f64
}

#[test]
fn pq_error_falls_with_m_and_pq_ranking_is_sane() {
    let set = set_10k();
    let base = VectorFile::open(&set.base).unwrap();
    let data = base.contiguous::<f32>().unwrap();
    let d = base.dim();
    let (e16, e64) = (
        reconstruction_error(16, &data, d),
        reconstruction_error(64, &data, d),
    );
    eprintln!("mean relative PQ reconstruction error: M=16 {e16:.4}, M=64 {e64:.4}");
    assert!(
        e64 < e16 * 0.8,
        "error did not fall enough with M: {e16} → {e64}"
    );
    assert!(e64 < 0.5, "M=64 error {e64} implausibly large");

    // Rank every base point by PQ (ADC) distance, M = 48: the true top-10 must mostly lie in
    // the PQ top-100 (threshold 0.90 on average over 200 queries).
    let m = 48;
    let pq = train_pq(&data, d, m, 7, &NoProgress);
    let codes = encode_all(&pq, &data, d, &NoProgress);
    let queries = VectorFile::open(&set.queries).unwrap();
    let q = queries.contiguous::<f32>().unwrap();
    let gt = GroundTruth::read(&set.gt).unwrap();
    let mut table = vec![0f32; m * PQ_CENTROIDS];
    let mut scratch = Vec::new();
    let mut found = 0usize;
    let nq = 200;
    for i in 0..nq {
        pq.adc_table(&q[i * d..(i + 1) * d], Metric::L2, &mut table, &mut scratch);
        let mut ranked: Vec<(f32, u32)> = codes
            .chunks_exact(m)
            .enumerate()
            .map(|(j, c)| (pq_distance(&table, c), j as u32))
            .collect();
        ranked.select_nth_unstable_by(100, |a, b| a.0.total_cmp(&b.0));
        let top: Vec<u32> = ranked[..100].iter().map(|e| e.1).collect();
        found += gt.row(i)[..10].iter().filter(|id| top.contains(id)).count();
    }
    let frac = found as f64 / (nq * 10) as f64;
    eprintln!("true top-10 inside PQ top-100 (M=48): {frac:.4}");
    assert!(
        frac >= 0.90,
        "PQ ranking: only {frac} of the true top-10 in the PQ top-100"
    );
}
