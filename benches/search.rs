//! PQ (ADC table build, PQ distance scan) and one end-to-end disk search on the 10K index.
//! Uses ../shared/data/pypi-minilm-100k (SSDANN_TEST_DATA) when present, else a generated set.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ssdann::engine::{Index, OpenOptions, SearchParams};
use ssdann::layout::pq::{pq_distances, PQ_CENTROIDS};
use ssdann::{build_index, BuildParams, Metric, NoProgress, VectorFile};
use std::path::PathBuf;

fn data() -> (PathBuf, PathBuf, Option<tempfile::TempDir>) {
    let root = std::env::var_os("SSDANN_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let dir = root.join("pypi-minilm-100k");
    if dir.join("base10k.fbin").exists() {
        return (dir.join("base10k.fbin"), dir.join("query.fbin"), None);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (b, q) = ssdann::builder::synthetic::clustered(10_000, 1000, 384, 64, 1);
    let (bp, qp) = (tmp.path().join("b.fbin"), tmp.path().join("q.fbin"));
    ssdann::layout::dataset::write_bin(&bp, 10_000, 384, &b).expect("write");
    ssdann::layout::dataset::write_bin(&qp, 1000, 384, &q).expect("write");
    (bp, qp, Some(tmp))
}

fn benches(c: &mut Criterion) {
    let (base, queries, _keep) = data();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("idx");
    let p = BuildParams {
        max_degree: 64,
        build_l: 100,
        alpha: 1.2,
        pq_bytes: Some(48),
        threads: Some(2),
        ..Default::default()
    };
    build_index(&base, &dir, &p, &NoProgress).expect("build");
    let index = Index::open(&dir, OpenOptions::default()).expect("open");
    let qf = VectorFile::open(&queries).expect("queries");
    let q = qf.contiguous::<f32>().expect("f32");
    let d = qf.dim();
    let pq = ssdann::layout::PqCodebook::read(&dir.join("pq_pivots.bin")).expect("pivots");
    let (n, m, codes) = ssdann::layout::pq::read_codes(&dir.join("pq_codes.bin")).expect("codes");

    let mut g = c.benchmark_group("pq");
    let mut table = vec![0f32; m * PQ_CENTROIDS];
    let mut scratch = Vec::new();
    g.bench_function("adc_table/384d/M48", |b| {
        b.iter(|| pq.adc_table(black_box(&q[..d]), Metric::L2, &mut table, &mut scratch))
    });
    let ids: Vec<u32> = (0..1000u32).map(|i| (i * 7919) % n as u32).collect();
    let mut out = vec![0f32; ids.len()];
    g.bench_function("pq_distances/M48/1000_random_ids", |b| {
        b.iter(|| pq_distances(black_box(&table), &codes, m, &ids, &mut out))
    });
    g.finish();

    let mut g = c.benchmark_group("search");
    g.sample_size(20);
    for l in [50usize, 100] {
        let mut i = 0usize;
        let mut res = Vec::with_capacity(10);
        g.bench_function(
            format!("disk_beam_search/10k/L{l}/W4/{}", index.io_backend_name()),
            |b| {
                b.iter(|| {
                    let qi = &q[(i % 1000) * d..(i % 1000 + 1) * d];
                    i += 1;
                    index
                        .search_into(qi, 10, &SearchParams::new(l, 4), &mut res)
                        .expect("search")
                })
            },
        );
    }
    g.finish();
}

criterion_group!(search, benches);
criterion_main!(search);
