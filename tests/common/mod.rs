//! Test data: the real pypi-minilm set from `SSDANN_TEST_DATA` (default `../shared/data`),
//! or — only where it is absent, e.g. a user's fresh clone — a deterministic clustered set
//! of the same shape with exact ground truth, so the same assertions run either way.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use ssdann::layout::dataset::write_bin;
use ssdann::{GroundTruth, Metric};
use std::path::PathBuf;

/// Paths of a base file, a query file and their ground truth.
pub struct TestSet {
    pub base: PathBuf,
    pub queries: PathBuf,
    pub gt: PathBuf,
    pub real: bool,
    _tmp: Option<tempfile::TempDir>,
}

pub fn data_root() -> PathBuf {
    std::env::var_os("SSDANN_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

/// The 10K base set with its queries and exact top-100 (real when available).
pub fn set_10k() -> TestSet {
    let dir = data_root().join("pypi-minilm-100k");
    let (base, queries, gt) = (
        dir.join("base10k.fbin"),
        dir.join("query.fbin"),
        dir.join("gt10k.ibin"),
    );
    if base.exists() && queries.exists() && gt.exists() {
        return TestSet {
            base,
            queries,
            gt,
            real: true,
            _tmp: None,
        };
    }
    eprintln!(
        "NOTE: {} not found; using the generated clustered stand-in (10,000 × 384)",
        dir.display()
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let (n, nq, d) = (10_000, 1_000, 384);
    let (b, q) = ssdann::builder::synthetic::clustered(n, nq, d, 64, 20261123);
    let g = exact_ground_truth(&q, &b, d, 100);
    let base = tmp.path().join("base10k.fbin");
    let queries = tmp.path().join("query.fbin");
    let gtp = tmp.path().join("gt10k.ibin");
    write_bin(&base, n, d, &b).expect("write base");
    write_bin(&queries, nq, d, &q).expect("write queries");
    g.write(&gtp).expect("write gt");
    TestSet {
        base,
        queries,
        gt: gtp,
        real: false,
        _tmp: Some(tmp),
    }
}

/// The exact squared-L2 top-`k` of each query (`queries`: nq × d, `base`: n × d, row-major).
pub fn exact_ground_truth(queries: &[f32], base: &[f32], d: usize, k: usize) -> GroundTruth {
    let knn = ssdann::builder::ground_truth::exact_knn(queries, base, d, Metric::L2, k);
    GroundTruth {
        nq: queries.len() / d,
        k,
        ids: knn.iter().flat_map(|r| r.iter().map(|e| e.1)).collect(),
        distances: knn.iter().flat_map(|r| r.iter().map(|e| e.0)).collect(),
    }
}

/// recall@k of `found` (ids per query) against the first k ids of each ground-truth row.
pub fn recall_at_k(found: &[Vec<u32>], gt: &GroundTruth, k: usize) -> f64 {
    let mut hits = 0usize;
    for (q, f) in found.iter().enumerate() {
        let truth = &gt.row(q)[..k];
        hits += f.iter().take(k).filter(|id| truth.contains(id)).count();
    }
    hits as f64 / (found.len() * k) as f64
}

/// Writes the first `n` rows of `all` (row length `d`) to `b.fbin` in `work` and builds a
/// small index (R = 24, L = 48, 8 PQ bytes, 2 threads) at `out`.
pub fn build_small(all: &[f32], n: usize, d: usize, work: &std::path::Path, out: &std::path::Path) {
    let path = work.join("b.fbin");
    write_bin(&path, n, d, &all[..n * d]).unwrap();
    let params = ssdann::BuildParams {
        max_degree: 24,
        build_l: 48,
        pq_bytes: Some(8),
        threads: Some(2),
        ..Default::default()
    };
    ssdann::build_index(&path, out, &params, &ssdann::NoProgress).unwrap();
}

/// Whether `distance` (squared L2) is that of a point stored at the query `v` itself: 0 for
/// exact records, ≤ 2⁻²²·‖v‖² for f16 records (each coordinate rounded to 11 bits).
pub fn at_own_vector(distance: f32, v: &[f32]) -> bool {
    let norm2: f32 = v.iter().map(|x| x * x).sum();
    distance <= 2.5e-7 * norm2
}

/// The build parameters of the project's 100K figures (R = 64, L = 100, α = 1.2, 48 PQ
/// bytes, 2 threads).
pub fn standard_params() -> ssdann::BuildParams {
    ssdann::BuildParams {
        max_degree: 64,
        build_l: 100,
        alpha: 1.2,
        pq_bytes: Some(48),
        threads: Some(2),
        ..Default::default()
    }
}

/// Copies the regular files of directory `from` into `to` (created if absent).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// The report of a full merge of a copy of the index in `dir` (how many writes a merge of its
/// pending updates makes), the copy made beside it and removed after.
#[allow(dead_code)] // not every test binary that includes this module merges
pub fn probe_merge(dir: &std::path::Path) -> ssdann::engine::MergeReport {
    let probe = dir.parent().unwrap().join("probe");
    copy_dir(dir, &probe);
    let rep = ssdann::engine::Index::open(&probe, Default::default())
        .unwrap()
        .merge(&Default::default())
        .unwrap();
    std::fs::remove_dir_all(&probe).unwrap();
    rep
}

/// Every regular file of `dir` with its bytes, sorted by name (to assert that nothing
/// changed).
#[allow(dead_code)] // not every test binary that includes this module needs it
pub fn dir_bytes(dir: &std::path::Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// Updates "during a merge" without a sleep: [`during_merge`] gives a hook for
/// `MergeOptions::after_freeze` and its other end. Once the merge has frozen what it folds
/// in, it signals, then waits (up to 20 s) until the test calls [`DuringMerge::resume`] —
/// so updates issued between [`DuringMerge::wait_frozen`] and `resume` happen while the merge
/// runs, and must not wait for it (if they did, the hook's wait times out and the merge
/// panics, naming it).
pub struct DuringMerge {
    frozen: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    resume: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
}

impl DuringMerge {
    /// Blocks until the merge has frozen its updates (up to 20 s; panics after).
    pub fn wait_frozen(&self) {
        self.frozen
            .lock()
            .unwrap()
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the merge never reached the point after freezing its updates");
    }
    /// Lets the merge go on computing.
    pub fn resume(&self) {
        self.resume
            .lock()
            .unwrap()
            .send(())
            .expect("the merge is gone");
    }
}

/// A hook for `MergeOptions::after_freeze` and the test's end of it ([`DuringMerge`]).
pub fn during_merge() -> (ssdann::engine::MergeHook, DuringMerge) {
    let (frozen_tx, frozen) = std::sync::mpsc::channel();
    let (resume, resume_rx) = std::sync::mpsc::channel::<()>();
    let frozen_tx = std::sync::Mutex::new(frozen_tx);
    let resume_rx = std::sync::Mutex::new(resume_rx);
    let hook = ssdann::engine::MergeHook::new(move || {
        frozen_tx.lock().unwrap().send(()).unwrap();
        resume_rx
            .lock()
            .unwrap()
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the updates issued during the merge did not finish: they waited for it");
    });
    let during = DuringMerge {
        frozen: std::sync::Mutex::new(frozen),
        resume: std::sync::Mutex::new(resume),
    };
    (hook, during)
}
