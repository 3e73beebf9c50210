//! The memory-budgeted, partitioned build (issue 12, part 1) on generated data: graph quality
//! against the one-shot build, `--resume` after an interruption in every stage, and the
//! errors a budget or a work directory can produce.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use ssdann_builder::greedy_search::{greedy_search, SearchScratch};
use ssdann_builder::partitioned::budget::FIXED_BYTES;
use ssdann_builder::synthetic::clustered;
use ssdann_builder::{build_index, BuildError, BuildParams, NoProgress};
use ssdann_layout::dataset::write_bin;
use ssdann_layout::{IndexHeader, Metric, Vector, SECTOR_BYTES};
use std::path::Path;

mod common;
use common::{budget_for, files, params, vamana_per_point, write_f32};

/// Reads index.ssd back: (header, vectors as stored bytes per slot, adjacency lists).
fn load(dir: &Path) -> (IndexHeader, Vec<Vec<u8>>, Vec<Vec<u32>>) {
    let path = dir.join("index.ssd");
    let bytes = std::fs::read(&path).unwrap();
    let (h, _) = IndexHeader::choose(&path, &bytes[..2 * SECTOR_BYTES]).unwrap();
    let l = h.layout;
    let (mut vecs, mut adj) = (Vec::new(), Vec::new());
    for id in 0..h.n_slots {
        let off = l.block_offset_bytes(l.block_of(id)) as usize;
        let rec = l.record(&bytes[off..off + l.block_bytes()], l.offset_in_block(id));
        vecs.push(rec.vector.to_vec());
        adj.push(rec.neighbors().collect());
    }
    (h, vecs, adj)
}

/// In-memory recall@10 of GreedySearch (list size `l`) over the index's graph and exact
/// vectors, from its entry point, for `queries`; ids translated through labels.bin.
fn in_memory_recall<T: Vector>(
    dir: &Path,
    base: &[T],
    queries: &[T],
    d: usize,
    metric: Metric,
    l: usize,
) -> f64 {
    let (h, vecs, adj) = load(dir);
    let labels = ssdann_layout::labels::read_labels(&dir.join("labels.bin")).unwrap();
    let data: Vec<T> = vecs
        .iter()
        .flat_map(|v| bytemuck::cast_slice::<u8, T>(v).to_vec())
        .collect();
    let n = base.len() / d;
    let mut s = SearchScratch::new(n);
    let mut hits = 0usize;
    let nq = queries.len() / d;
    for q in queries.chunks_exact(d) {
        let mut exact: Vec<(f32, usize)> = (0..n)
            .map(|i| (T::distance(metric, q, &base[i * d..(i + 1) * d]), i))
            .collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0));
        let truth: Vec<usize> = exact[..10].iter().map(|e| e.1).collect();
        greedy_search(&data, d, metric, &adj, h.entry_point as u32, q, l, &mut s);
        hits += s.queue.items()[..10]
            .iter()
            .filter(|c| truth.contains(&(labels[c.id as usize] as usize)))
            .count();
    }
    hits as f64 / (10 * nq) as f64
}

#[test]
fn partitioned_graph_recall_is_within_002_of_the_one_shot_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, d, r) = (5000usize, 32usize, 24usize);
    let (path, base, q) = write_f32(tmp.path(), "base.fbin", n, d, 11);
    for metric in [Metric::L2, Metric::InnerProduct] {
        let one = tmp.path().join(format!("one-{metric:?}"));
        let rep1 = build_index(&path, &one, &params(r, metric), &NoProgress).unwrap();
        assert_eq!(rep1.partitions, 1);
        let part = tmp.path().join(format!("part-{metric:?}"));
        // Partitions of at most ~2,000 of the 2 × 5,000 assignments: ≥ 5 partitions.
        let budget = budget_for(2000, vamana_per_point(64, r));
        let p = BuildParams {
            memory_budget_bytes: Some(budget),
            ..params(r, metric)
        };
        let rep2 = build_index(&path, &part, &p, &NoProgress).unwrap();
        assert!(rep2.partitions >= 4, "{} partitions", rep2.partitions);
        assert!(
            rep2.mean_degree > r as f64 * 0.5,
            "degree {}",
            rep2.mean_degree
        );
        let work = tmp.path().join(format!(".part-{metric:?}.partitioned"));
        assert!(!work.exists(), "work dir removed");
        let (r1, r2) = (
            in_memory_recall(&one, &base, &q, d, metric, 40),
            in_memory_recall(&part, &base, &q, d, metric, 40),
        );
        assert!(r1 >= 0.9, "{metric:?}: one-shot recall {r1}");
        assert!(
            r2 >= r1 - 0.02,
            "{metric:?}: partitioned {r2} vs one-shot {r1}"
        );
        // Labels are the identity and the vectors are the input rows.
        let labels = ssdann_layout::labels::read_labels(&part.join("labels.bin")).unwrap();
        assert!(labels.iter().enumerate().all(|(i, &l)| l == i as u64));
        let (h, vecs, _) = load(&part);
        assert_eq!((h.n_slots, h.layout.dim), (n as u64, d));
        assert_eq!(
            bytemuck::cast_slice::<u8, f32>(&vecs[1234]),
            &base[1234 * d..1235 * d]
        );
    }
}

#[test]
fn partitioned_u8_and_cosine_builds_search_well() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, d, r) = (3000usize, 24usize, 16usize);
    let (fbase, q) = clustered(n, 50, d, 16, 5);
    let to_u8 = |v: &[f32]| {
        v.iter()
            .map(|x| ((x + 1.0) * 127.0) as u8)
            .collect::<Vec<u8>>()
    };
    let (ubase, uq) = (to_u8(&fbase), to_u8(&q));
    let upath = tmp.path().join("b.u8bin");
    write_bin(&upath, n, d, &ubase).unwrap();
    let budget = budget_for(1200, vamana_per_point(24, r));
    let out = tmp.path().join("u8");
    let p = BuildParams {
        memory_budget_bytes: Some(budget),
        ..params(r, Metric::L2)
    };
    let rep = build_index(&upath, &out, &p, &NoProgress).unwrap();
    assert!(rep.partitions >= 4, "{} partitions", rep.partitions);
    let rec = in_memory_recall(&out, &ubase, &uq, d, Metric::L2, 40);
    assert!(rec >= 0.9, "u8 recall {rec}");
    // Cosine: stored vectors are normalized, as in the one-shot build.
    let scaled: Vec<f32> = fbase
        .iter()
        .enumerate()
        .map(|(i, x)| x * (1.0 + (i / d % 7) as f32))
        .collect();
    let fpath = tmp.path().join("s.fbin");
    write_bin(&fpath, n, d, &scaled).unwrap();
    let out = tmp.path().join("cos");
    let p = BuildParams {
        memory_budget_bytes: Some(budget_for(1200, vamana_per_point(48, r))),
        ..params(r, Metric::Cosine)
    };
    let rep = build_index(&fpath, &out, &p, &NoProgress).unwrap();
    assert!(rep.partitions >= 4);
    let (_, vecs, _) = load(&out);
    let v: &[f32] = bytemuck::cast_slice(&vecs[77]);
    assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
    assert!(in_memory_recall(&out, &fbase, &q, d, Metric::Cosine, 40) >= 0.9);
}

/// Before, `--memory-budget` refused saturation: the partition merge's RobustPrune would have
/// cut the merged lists back below R. Now the partitions are built saturated and every list
/// the merge prunes is saturated again, and the header records it.
#[test]
fn a_budgeted_build_keeps_the_graph_saturated_and_says_so_in_the_header() {
    let tmp = tempfile::tempdir().unwrap();
    // low-dimensional uniform data: the α rule leaves lists well below R
    let (n, d, r) = (3000usize, 4usize, 16usize);
    let mut rng = ssdann_builder::synthetic::SplitMix64(7);
    let base: Vec<f32> = (0..n * d).map(|_| rng.unit() * 2.0 - 1.0).collect();
    let path = tmp.path().join("b.fbin");
    write_bin(&path, n, d, &base).unwrap();
    let budget = budget_for(1000, vamana_per_point(16, r));
    let mut degrees = Vec::new();
    for saturate in [false, true] {
        let out = tmp.path().join(format!("sat-{saturate}"));
        let p = BuildParams {
            memory_budget_bytes: Some(budget),
            saturate_graph: saturate,
            pq_bytes: Some(2),
            ..params(r, Metric::L2)
        };
        let rep = build_index(&path, &out, &p, &NoProgress).unwrap();
        assert!(rep.partitions >= 3, "{} partitions", rep.partitions);
        let (h, _, adj) = load(&out);
        assert_eq!(h.saturated, saturate);
        for (i, l) in adj.iter().enumerate() {
            let mut u = l.clone();
            u.sort_unstable();
            u.dedup();
            assert_eq!(u.len(), l.len(), "duplicate edge at {i}");
            assert!(!l.contains(&(i as u32)), "self loop at {i}");
        }
        degrees.push(adj.iter().map(Vec::len).sum::<usize>() as f64 / n as f64);
    }
    assert!(
        degrees[0] < 0.8 * r as f64,
        "unsaturated: mean degree {}",
        degrees[0]
    );
    assert!(
        degrees[1] > 0.99 * r as f64,
        "saturated: mean degree {}",
        degrees[1]
    );
}

#[test]
fn resume_after_an_interruption_in_each_stage_gives_the_same_index() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, d, r) = (3000usize, 16usize, 16usize);
    let (path, _, _) = write_f32(tmp.path(), "base.fbin", n, d, 3);
    let base_params = BuildParams {
        memory_budget_bytes: Some(budget_for(1000, vamana_per_point(32, r))),
        threads: Some(1), // deterministic
        ..params(r, Metric::L2)
    };
    let reference = tmp.path().join("ref");
    let rep = build_index(&path, &reference, &base_params, &NoProgress).unwrap();
    assert!(rep.partitions >= 6, "{} partitions", rep.partitions);
    let want = files(&reference);
    let work = tmp.path().join(".out.partitioned");
    for point in ["pq", "partition", "graph-0", "graph-3", "merge", "write"] {
        let out = tmp.path().join("out");
        let stop = BuildParams {
            interrupt_at: Some(point.into()),
            ..base_params.clone()
        };
        let e = build_index(&path, &out, &stop, &NoProgress).unwrap_err();
        assert!(
            matches!(&e, BuildError::Interrupted { stage } if stage == point),
            "{e}"
        );
        assert!(!out.exists(), "{point}: no index before the build finishes");
        assert!(
            work.join("MANIFEST").exists(),
            "{point}: work directory kept"
        );
        if point == "graph-3" {
            // finished partitions are kept; the interrupted one left only a temporary file
            assert!(work.join("part-0002.graph").exists());
            assert!(!work.join("part-0003.graph").exists());
            assert!(work.join("part-0003.graph.tmp").exists());
        }
        let resume = BuildParams {
            resume: true,
            ..base_params.clone()
        };
        build_index(&path, &out, &resume, &NoProgress).unwrap();
        assert_eq!(files(&out), want, "{point}: resumed build differs");
        assert!(!work.exists(), "{point}: work directory removed at the end");
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn resume_refuses_other_parameters_and_damaged_stage_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, d, r) = (2000usize, 16usize, 16usize);
    let (path, _, _) = write_f32(tmp.path(), "base.fbin", n, d, 4);
    let p = BuildParams {
        memory_budget_bytes: Some(budget_for(800, vamana_per_point(32, r))),
        ..params(r, Metric::L2)
    };
    let out = tmp.path().join("out");
    let work = tmp.path().join(".out.partitioned");
    let stop = BuildParams {
        interrupt_at: Some("graph-2".into()),
        ..p.clone()
    };
    build_index(&path, &out, &stop, &NoProgress).unwrap_err();
    // Other R: refused, naming the field; nothing removed.
    let other = BuildParams {
        max_degree: 12,
        build_l: 32,
        resume: true,
        ..p.clone()
    };
    let e = build_index(&path, &out, &other, &NoProgress).unwrap_err();
    assert!(
        matches!(&e, BuildError::ResumeMismatch { field, .. } if field == "R"),
        "{e}"
    );
    assert!(
        e.to_string().contains("R = 16") && e.to_string().contains("R = 12"),
        "{e}"
    );
    assert!(work.join("part-0001.graph").exists());
    // A damaged finished stage: the resumed merge refuses, naming the file.
    let g = work.join("part-0001.graph");
    let mut bytes = std::fs::read(&g).unwrap();
    let k = bytes.len() / 2;
    bytes[k] ^= 0x10;
    std::fs::write(&g, &bytes).unwrap();
    let resume = BuildParams {
        resume: true,
        ..p.clone()
    };
    let e = build_index(&path, &out, &resume, &NoProgress).unwrap_err();
    assert!(e.to_string().contains("part-0001.graph"), "{e}");
    assert!(!out.exists());
    // Without --resume the build starts over and succeeds.
    build_index(&path, &out, &p, &NoProgress).unwrap();
    assert!(!work.exists());
}

#[test]
fn budget_errors_and_foreign_work_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _, _) = write_f32(tmp.path(), "base.fbin", 2000, 16, 9);
    let out = tmp.path().join("out");
    let p = BuildParams {
        memory_budget_bytes: Some(FIXED_BYTES + 1000),
        ..params(16, Metric::L2)
    };
    let e = build_index(&path, &out, &p, &NoProgress).unwrap_err();
    match &e {
        BuildError::BudgetTooSmall { minimum, .. } => {
            assert!(*minimum > FIXED_BYTES + 1000);
            // the minimum it names is enough
            let ok = BuildParams {
                memory_budget_bytes: Some(*minimum),
                ..p.clone()
            };
            build_index(&path, &out, &ok, &NoProgress).unwrap();
        }
        e => panic!("expected BudgetTooSmall, got {e}"),
    }
    assert!(e.to_string().contains("the minimum is"), "{e}");
    // A directory with the work directory's name that is not ours: refused, left alone.
    let out2 = tmp.path().join("out2");
    let foreign = tmp.path().join(".out2.partitioned");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
    let p2 = BuildParams {
        memory_budget_bytes: Some(budget_for(800, vamana_per_point(32, 16))),
        ..params(16, Metric::L2)
    };
    let e = build_index(&path, &out2, &p2, &NoProgress).unwrap_err();
    assert!(matches!(e, BuildError::NotAnIndex { .. }), "{e}");
    assert_eq!(std::fs::read(foreign.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn more_than_2_pow_32_minus_2_points_is_refused_before_anything_is_read() {
    // A sparse .u8bin of n = 2^32 - 1 one-byte rows: its header is valid and its size
    // matches, but slots are u32 with u32::MAX reserved.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("huge.u8bin");
    let n = u32::MAX;
    let mut head = n.to_le_bytes().to_vec();
    head.extend_from_slice(&1u32.to_le_bytes());
    std::fs::write(&path, &head).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(8 + u64::from(n)).unwrap();
    let out = tmp.path().join("out");
    for budget in [None, Some(1u64 << 30)] {
        let p = BuildParams {
            memory_budget_bytes: budget,
            ..params(16, Metric::L2)
        };
        let e = build_index(&path, &out, &p, &NoProgress).unwrap_err();
        assert!(e.to_string().contains("at most 2^32 - 2 points"), "{e}");
        assert!(e.to_string().contains("huge.u8bin"), "{e}");
    }
    assert!(!out.exists());
}

/// Fraction of out-edges that land in their node's own block.
fn same_block_fraction(dir: &Path) -> f64 {
    let (h, _, adj) = load(dir);
    let npb = h.layout.nodes_per_block as u64;
    let (mut same, mut all) = (0usize, 0usize);
    for (u, list) in adj.iter().enumerate() {
        all += list.len();
        same += list
            .iter()
            .filter(|&&v| u64::from(v) / npb == u as u64 / npb)
            .count();
    }
    same as f64 / all.max(1) as f64
}

/// Fraction of points whose exact nearest neighbour (brute force over `base`, n × d, input
/// rows) shares their block (`labels.bin` maps slots to rows).
fn nearest_in_block_fraction(dir: &Path, base: &[f32], d: usize) -> f64 {
    let (h, _, _) = load(dir);
    let npb = h.layout.nodes_per_block as u64;
    let labels = ssdann_layout::labels::read_labels(&dir.join("labels.bin")).unwrap();
    let n = labels.len();
    let mut slot_of = vec![0u64; n];
    labels
        .iter()
        .enumerate()
        .for_each(|(s, &r)| slot_of[r as usize] = s as u64);
    let row = |r: usize| &base[r * d..(r + 1) * d];
    let same = (0..n)
        .filter(|&u| {
            let nn = (0..n)
                .filter(|&v| v != u)
                .min_by(|&a, &b| {
                    f32::distance(Metric::L2, row(u), row(a)).total_cmp(&f32::distance(
                        Metric::L2,
                        row(u),
                        row(b),
                    ))
                })
                .unwrap();
            slot_of[u] / npb == slot_of[nn] / npb
        })
        .count();
    same as f64 / n as f64
}

#[test]
fn partitioned_build_reorders_sectors_when_the_graph_fits_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let (n, d, r) = (5000usize, 32usize, 24usize);
    let (path, base, q) = write_f32(tmp.path(), "base.fbin", n, d, 21);
    let budget = budget_for(2000, vamana_per_point(64, r));
    let plain = tmp.path().join("plain");
    let p = BuildParams {
        memory_budget_bytes: Some(budget),
        threads: Some(1),
        ..params(r, Metric::L2)
    };
    build_index(&path, &plain, &p, &NoProgress).unwrap();
    let ordered = tmp.path().join("ordered");
    let po = BuildParams {
        reorder: true,
        ..p.clone()
    };
    let rep = build_index(&path, &ordered, &po, &NoProgress).unwrap();
    assert!(rep.partitions >= 4);
    // labels: a permutation of the rows, and each slot holds its row's vector
    let labels = ssdann_layout::labels::read_labels(&ordered.join("labels.bin")).unwrap();
    let mut sorted = labels.clone();
    sorted.sort_unstable();
    assert!(sorted.iter().enumerate().all(|(i, &l)| l == i as u64));
    assert!(labels.iter().enumerate().any(|(i, &l)| l != i as u64));
    let (h, vecs, _) = load(&ordered);
    for s in [0usize, 17, 4999] {
        let row = labels[s] as usize;
        assert_eq!(
            bytemuck::cast_slice::<u8, f32>(&vecs[s]),
            &base[row * d..(row + 1) * d]
        );
    }
    assert!(h.layout.nodes_per_block > 1);
    // the same graph, relabelled: the same recall; more edges inside a block
    let (r1, r2) = (
        in_memory_recall(&plain, &base, &q, d, Metric::L2, 40),
        in_memory_recall(&ordered, &base, &q, d, Metric::L2, 40),
    );
    assert!((r1 - r2).abs() <= 0.01, "plain {r1} ordered {r2}");
    let (f1, f2) = (same_block_fraction(&plain), same_block_fraction(&ordered));
    // the one-shot build's reordering (exact distances) on the same data, for reference
    let one = tmp.path().join("one");
    build_index(
        &path,
        &one,
        &BuildParams {
            reorder: true,
            threads: Some(1),
            ..params(r, Metric::L2)
        },
        &NoProgress,
    )
    .unwrap();
    let f0 = same_block_fraction(&one);
    eprintln!(
        "same-block edges: partitioned plain {f1:.3}, ordered {f2:.3}; one-shot ordered {f0:.3}"
    );
    assert!(
        f2 > 10.0 * f1 && f2 > 0.8 * f0,
        "same-block edges: plain {f1:.3}, ordered {f2:.3}, one-shot {f0:.3}"
    );
    // blocks filled by exact distance, as the one-shot build fills them: as many points
    // share a block with their nearest neighbour as in the one-shot index, within 10%
    let (nn0, nn2) = (
        nearest_in_block_fraction(&one, &base, d),
        nearest_in_block_fraction(&ordered, &base, d),
    );
    eprintln!("nearest neighbour in the block: one-shot {nn0:.3}, partitioned {nn2:.3}");
    // (0.135 vs 0.144 here; by list order alone 0.121)
    assert!(
        nn2 >= 0.9 * nn0,
        "nearest in block: one-shot {nn0}, ordered {nn2}"
    );
    // the budgeted write stage measures PQ's error on near pairs as the one-shot build does
    // (the default early-termination ratio comes from it): same data, a like figure
    let e0 = load(&one).0.near_error.expect("one-shot measure").error;
    for dir in [&plain, &ordered] {
        let e = load(dir).0.near_error.expect("budgeted measure").error;
        assert!(
            e > 0.5 * e0 && e < 2.0 * e0,
            "{}: {e} vs one-shot {e0}",
            dir.display()
        );
    }
    // PQ codes follow the slots: slot s has the code the plain index gives row labels[s]
    let (_, m, c1) = ssdann_layout::pq::read_codes(&plain.join("pq_codes.bin")).unwrap();
    let (_, _, c2) = ssdann_layout::pq::read_codes(&ordered.join("pq_codes.bin")).unwrap();
    for s in [0usize, 1234, 4999] {
        let row = labels[s] as usize;
        assert_eq!(&c2[s * m..(s + 1) * m], &c1[row * m..(row + 1) * m]);
    }
    // A budget that holds partitions of ≤ ~1,200 points (334,100 bytes beyond the fixed
    // part, at the model's ~245 bytes per point) but not the flat graph (5,000 × 112
    // bytes): the order is computed from lists read by pread (n × 16 bytes), so the
    // sectors are still reordered and the graph is still good.
    let tight_dir = tmp.path().join("tight");
    let tight = BuildParams {
        memory_budget_bytes: Some(FIXED_BYTES + 334_100),
        ..po.clone()
    };
    let rep = build_index(&path, &tight_dir, &tight, &NoProgress).unwrap();
    assert!(rep.partitions >= 10, "{}", rep.partitions);
    let labels = ssdann_layout::labels::read_labels(&tight_dir.join("labels.bin")).unwrap();
    assert!(labels.iter().enumerate().any(|(i, &l)| l != i as u64));
    let ft = same_block_fraction(&tight_dir);
    assert!(
        ft > 10.0 * f1,
        "same-block edges: tight {ft:.3}, plain {f1:.3}"
    );
    let rt = in_memory_recall(&tight_dir, &base, &q, d, Metric::L2, 40);
    eprintln!(
        "{} partitions of ≤ ~550 points: recall {rt} (plain {r1})",
        rep.partitions
    );
    assert!(rt >= 0.9, "{rt}");
}

#[test]
fn a_second_build_into_the_same_output_is_refused_while_the_first_holds_the_work_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _, _) = write_f32(tmp.path(), "base.fbin", 2000, 16, 5);
    let out = tmp.path().join("out");
    let work = tmp.path().join(".out.partitioned");
    let p = BuildParams {
        memory_budget_bytes: Some(budget_for(800, vamana_per_point(32, 16))),
        ..params(16, Metric::L2)
    };
    let stop = BuildParams {
        interrupt_at: Some("graph-1".into()),
        ..p.clone()
    };
    build_index(&path, &out, &stop, &NoProgress).unwrap_err();
    let before = files(&work);
    // Another process's build holds the work directory (an flock on it, as a build does).
    let held = std::fs::File::open(&work).unwrap();
    held.lock().unwrap();
    for resume in [true, false] {
        let again = BuildParams {
            resume,
            ..p.clone()
        };
        let e = build_index(&path, &out, &again, &NoProgress).unwrap_err();
        assert!(matches!(e, BuildError::BuildInProgress { .. }), "{e}");
        assert!(e.to_string().contains(".out.partitioned"), "{e}");
        assert_eq!(
            files(&work),
            before,
            "resume = {resume}: the work directory was touched"
        );
    }
    drop(held);
    let resume = BuildParams {
        resume: true,
        ..p.clone()
    };
    build_index(&path, &out, &resume, &NoProgress).unwrap();
    assert!(!work.exists());
}

/// Issue 28 ("the budget holds at every stage"): every stage's working set is in the budget
/// model, and a budget below the smallest one that fits every stage is refused naming it.
#[test]
fn the_budget_model_counts_every_stage_and_refuses_naming_the_true_minimum() {
    use ssdann_builder::partitioned::budget::{
        min_partition, stage_bytes, Shape, PAGE_ALLOWANCE_FRACTION, PROGRAM_BYTES,
    };
    // The set of the report: 200K × 128 u8, R = 64, PQ M = 32, 2 threads.
    let s = Shape {
        n: 200_000,
        dim: 128,
        elem_bytes: 1,
        graph_dim: 128,
        graph_elem_bytes: 1,
        max_degree: 64,
        pq_m: 32,
        threads: 2,
    };
    let min = min_partition(64);
    let minimum = s.minimum_budget(min);
    assert!(s.fits(minimum, min));
    assert!(!s.fits(minimum - 1, min));
    let gib = (1u64 << 30) as f64;
    for budget in [minimum, (0.08 * gib) as u64, (0.5 * gib) as u64] {
        let stage = stage_bytes(budget);
        let pages = (budget as f64 * PAGE_ALLOWANCE_FRACTION) as u64;
        assert!(PROGRAM_BYTES + stage + pages <= budget, "{budget}");
        let cap = s.partition_cap(budget);
        assert!(cap as u64 * s.vamana_bytes_per_point() <= stage);
        let sample = s.partition_sample(budget, usize::MAX) as u64;
        assert!(sample * s.partition_sample_row_bytes() <= stage);
        let parts = s.planned_parts(cap);
        let plan = s.merge_plan(budget, parts).unwrap();
        let streams = parts as u64 * plan.records_per_read as u64 * (4 * 65 + 4);
        assert!(streams + plan.chunk_rows as u64 * s.merge_row_bytes() <= stage);
    }
    // 100M points: at the smallest partitions the merge reads 1.5M partition files at once,
    // more than the stage buffers hold: the minimum counts the merge, above the partition
    // graph's own minimum.
    let big = Shape {
        n: 100_000_000,
        ..s
    };
    let graph_only = (FIXED_BYTES..)
        .find(|&b| big.partition_cap(b) >= min)
        .unwrap();
    let minimum = big.minimum_budget(min);
    assert!(minimum > graph_only, "{minimum} vs {graph_only}");
    assert!(big.fits(minimum, min) && !big.fits(minimum - 1, min));
    assert!(big
        .merge_plan(graph_only, big.planned_parts(big.partition_cap(graph_only)))
        .is_none());

    // A build below the minimum: refused before anything is written, naming exactly the
    // model's minimum.
    let tmp = tempfile::tempdir().unwrap();
    let (path, _, _) = write_f32(tmp.path(), "base.fbin", 2000, 16, 9);
    let out = tmp.path().join("out");
    let p = BuildParams {
        memory_budget_bytes: Some(FIXED_BYTES / 2),
        threads: Some(2),
        ..params(16, Metric::L2)
    };
    let file = ssdann_layout::VectorFile::open(&path).unwrap();
    let want =
        ssdann_builder::partitioned::shape_of(&file, &p, 2).minimum_budget(min_partition(16));
    match build_index(&path, &out, &p, &NoProgress).unwrap_err() {
        BuildError::BudgetTooSmall {
            budget, minimum, ..
        } => {
            assert_eq!(budget, FIXED_BYTES / 2);
            assert_eq!(minimum, want);
        }
        e => panic!("expected BudgetTooSmall, got {e}"),
    }
    assert!(!out.exists());
    assert!(!tmp.path().join(".out.partitioned").exists());
}
