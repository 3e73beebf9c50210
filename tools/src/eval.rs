//! `ssdann eval`: recall@k (strict and with distance ties), QPS, latency percentiles and
//! histogram, and I/O per query over a sweep of L and thread counts; the table and its JSON.

use crate::progress::bar;
use crate::search::MAX_L;
use crate::search::{check_k_w, check_l, load_queries, parse_list, SearchFlags};
use anyhow::{bail, Context, Result};
use ssdann_engine::{Index, Neighbor, SearchParams};
use ssdann_layout::GroundTruth;
use std::path::PathBuf;
use std::time::Instant;

/// recall@k's hit count as big-ann-benchmarks computes it (`compute_recall_with_distance_ties`):
/// the true set is the first `k` ground-truth ids plus every later one whose distance is
/// within 1e-6 of the k-th (real data has exact duplicates; a returned duplicate of a true
/// neighbour is a correct answer). `truth` and `truth_dist` are one ground-truth row.
fn hits_at_k_with_ties(found: &[Neighbor], truth: &[u32], truth_dist: &[f32], k: usize) -> usize {
    let kth = truth_dist[k - 1];
    let end = (k..truth.len())
        .find(|&i| (truth_dist[i] - kth).abs() >= 1e-6)
        .unwrap_or(truth.len());
    hits_at_k(found, &truth[..end], k)
}

/// How many of the first `k` of `found` are in `truth`. Ground-truth ids are u32: a label
/// that does not fit u32 matches none of them (never by truncation).
fn hits_at_k(found: &[Neighbor], truth: &[u32], k: usize) -> usize {
    found
        .iter()
        .take(k)
        .filter(|n| u32::try_from(n.id).is_ok_and(|id| truth.contains(&id)))
        .count()
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    /// Query vectors.
    #[arg(long)]
    queries: PathBuf,
    /// Ground truth (.ibin) for the queries.
    #[arg(long)]
    gt: PathBuf,
    /// recall@k (1..=10000).
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// Search list sizes to sweep (comma-separated; each ≤ 100000; those below k are skipped).
    #[arg(short = 'L', default_value = "10,20,30,50,75,100,150,200")]
    l: String,
    /// Thread counts to sweep (comma-separated).
    #[arg(long, default_value = "1,2")]
    threads: String,
    /// Use only the first N queries (N ≥ 1).
    #[arg(long)]
    nq: Option<usize>,
    /// Write the table as JSON too (with each row's latency histogram; `ssdann plot` draws it).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw the recall@k–QPS curve and the latency histogram (p50 / p99 marked) into this
    /// PNG. Drawn by the Python package's `ssdann` command (matplotlib): pip install
    /// './python[plot]'; this binary writes --json and says so.
    #[arg(long, value_name = "PNG")]
    plot: Option<PathBuf>,
    #[command(flatten)]
    search: SearchFlags,
}

/// One row of the eval table.
pub struct Row {
    pub threads: usize,
    pub l: usize,
    pub recall: f64,
    /// recall@k with distance ties counted (big-ann-benchmarks); `None` when the ground
    /// truth has no distances (`.ivecs`, an ids-only `.ibin`): ties cannot be told.
    pub recall_ties: Option<f64>,
    pub qps: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub reads: f64,
    pub cache_hits: f64,
    pub hops: f64,
    pub io_wait_us: f64,
    /// Latency histogram: 40 log-spaced bins from the fastest to the slowest query, as
    /// (bin edges µs (41), counts (40)).
    pub latency_hist: (Vec<f64>, Vec<u64>),
}

/// A histogram of the positive values `sorted` (ascending) in `bins` log-spaced bins from
/// the smallest to the largest: (bins + 1 edges, bins counts). Empty input: no bins.
fn log_histogram(sorted: &[f64], bins: usize) -> (Vec<f64>, Vec<u64>) {
    let (Some(&lo), Some(&hi)) = (sorted.first(), sorted.last()) else {
        return (Vec::new(), Vec::new());
    };
    let lo = lo.max(1e-3);
    let hi = hi.max(lo * 1.000_001);
    let step = (hi / lo).ln() / bins as f64;
    let edges: Vec<f64> = (0..=bins).map(|i| lo * (step * i as f64).exp()).collect();
    let mut counts = vec![0u64; bins];
    for &v in sorted {
        let b = (((v.max(lo) / lo).ln() / step) as usize).min(bins - 1);
        counts[b] += 1;
    }
    (edges, counts)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs the sweep; prints rows as they complete.
#[allow(clippy::too_many_arguments)]
pub fn run_eval(
    index: &Index,
    q: &[f32],
    nq: usize,
    gt: &GroundTruth,
    k: usize,
    ls: &[usize],
    search: &SearchParams,
    threads: &[usize],
    quiet: bool,
) -> Result<Vec<Row>> {
    if gt.k < k {
        bail!(
            "ground truth has only {} neighbours per query; recall@{k} needs {k}",
            gt.k
        );
    }
    if gt.nq < nq {
        bail!("ground truth has {} queries but {nq} are evaluated", gt.nq);
    }
    if nq == 0 {
        bail!("no queries to evaluate (--nq must be at least 1)");
    }
    // Ids no point of the index carries: the ground truth of another base (recall would
    // silently be near 0).
    let max_label = index.max_label().unwrap_or(0);
    for i in 0..nq {
        if let Some(&id) = gt.row(i)[..k].iter().find(|&&id| u64::from(id) > max_label) {
            bail!(
                "ground truth row {i} lists id {id}, but the index's largest label is {max_label} \
                 ({} points): is this the ground truth of the index's base file?",
                index.len()
            );
        }
    }
    check_k_w(k, search.w)?;
    if let Some(&l) = ls.iter().find(|&&l| l > MAX_L) {
        check_l(l, k)?;
    }
    let d = index.dim();
    // Ties are told by distance: a ground truth without distances gives strict recall only.
    let with_distances = !gt.distances.is_empty();
    if !with_distances {
        println!(
            "note: the ground truth has no distances (.ivecs or an ids-only .ibin): +ties \
             (recall with distance ties counted) is n/a; recall@k is the strict id match"
        );
    }
    println!(
        "{:>3} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>6} {:>8}",
        "thr",
        "L",
        "recall@k",
        "+ties",
        "QPS",
        "mean_us",
        "p50_us",
        "p95_us",
        "p99_us",
        "p99.9_us",
        "reads",
        "cache",
        "hops",
        "io_us"
    );
    let mut rows = Vec::new();
    let pb = bar((threads.len() * ls.len()) as u64, "eval", quiet);
    for &t in threads {
        for &l in ls {
            if l < k {
                pb.suspend(|| println!("skipping L = {l} < k = {k}"));
                pb.inc(1);
                continue;
            }
            let params = SearchParams { l, ..*search };
            let warm = nq.min(200);
            index.batch_search(&q[..warm * d], k, &params, Some(t))?;
            let t0 = Instant::now();
            let res = index.batch_search(&q[..nq * d], k, &params, Some(t))?;
            let secs = t0.elapsed().as_secs_f64();
            let (mut hits, mut hits_ties) = (0usize, 0usize);
            for (i, (nb, _)) in res.iter().enumerate() {
                hits += hits_at_k(nb, &gt.row(i)[..k], k);
                if with_distances {
                    let dist = &gt.distances[i * gt.k..(i + 1) * gt.k];
                    hits_ties += hits_at_k_with_ties(nb, gt.row(i), dist, k);
                }
            }
            let mut lat: Vec<f64> = res.iter().map(|r| r.1.total_us).collect();
            lat.sort_by(|a, b| a.total_cmp(b));
            let mean = |f: &dyn Fn(&ssdann_engine::SearchStats) -> f64| {
                res.iter().map(|r| f(&r.1)).sum::<f64>() / nq as f64
            };
            let row = Row {
                threads: t,
                l,
                recall: hits as f64 / (nq * k) as f64,
                recall_ties: with_distances.then(|| hits_ties as f64 / (nq * k) as f64),
                qps: nq as f64 / secs,
                mean_us: lat.iter().sum::<f64>() / nq as f64,
                p50_us: percentile(&lat, 50.0),
                p95_us: percentile(&lat, 95.0),
                p99_us: percentile(&lat, 99.0),
                p999_us: percentile(&lat, 99.9),
                reads: mean(&|s| f64::from(s.sector_reads)),
                cache_hits: mean(&|s| f64::from(s.cache_hits)),
                hops: mean(&|s| f64::from(s.hops)),
                io_wait_us: mean(&|s| s.io_wait_us),
                latency_hist: log_histogram(&lat, 40),
            };
            let ties = row
                .recall_ties
                .map_or_else(|| "n/a".to_string(), |r| format!("{r:.4}"));
            pb.suspend(|| println!(
                "{:>3} {:>5} {:>9.4} {:>9} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>8.1} {:>7.1} {:>6.1} {:>8.0}",
                row.threads, row.l, row.recall, ties, row.qps, row.mean_us, row.p50_us, row.p95_us, row.p99_us, row.p999_us, row.reads, row.cache_hits, row.hops, row.io_wait_us
            ));
            rows.push(row);
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    Ok(rows)
}

fn rows_json(rows: &[Row], extra: serde_json::Value) -> serde_json::Value {
    let r: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "threads": r.threads, "L": r.l, "recall": r.recall, "recall_ties": r.recall_ties, "qps": r.qps, "mean_us": r.mean_us,
                "p50_us": r.p50_us, "p95_us": r.p95_us, "p99_us": r.p99_us, "p999_us": r.p999_us,
                "sector_reads": r.reads, "cache_hits": r.cache_hits, "hops": r.hops, "io_wait_us": r.io_wait_us,
                "latency_hist": {"edges_us": r.latency_hist.0, "counts": r.latency_hist.1},
            })
        })
        .collect();
    serde_json::json!({ "params": extra, "rows": r })
}

pub fn cmd_eval(a: EvalArgs) -> Result<()> {
    let ls = parse_list(&a.l, "-L")?;
    let threads = parse_list(&a.threads, "--threads")?;
    if threads.contains(&0) {
        bail!("--threads: 0 is not a thread count");
    }
    check_k_w(a.k, a.search.w)?;
    if let Some(&l) = ls.iter().find(|&&l| l > MAX_L) {
        check_l(l, a.k)?;
    }
    if a.nq == Some(0) {
        bail!("--nq 0: must be at least 1");
    }
    if let Some(p) = &a.plot {
        bail!(
            "--plot {}: plots are drawn by the Python package's ssdann command (pip install './python[plot]'); \
             with this binary, run eval with --json FILE, then `ssdann plot FILE --out {}` from the Python install",
            p.display(),
            p.display()
        );
    }
    let index = Index::open(&a.index, a.search.open_options())?;
    let (nq_all, q) = load_queries(&a.queries, index.dim())?;
    let gt = GroundTruth::read(&a.gt)?;
    let nq = a.nq.unwrap_or(nq_all).min(nq_all);
    if gt.nq < nq {
        bail!(
            "{}: ground truth has {} rows but {nq} queries would be evaluated (of {}); pass --nq {} to evaluate the first {}",
            a.gt.display(),
            gt.nq,
            a.queries.display(),
            gt.nq,
            gt.nq
        );
    }
    println!(
        "index {} (n = {}, d = {}, {}), {} queries, k = {}, W = {}, termination {}, cache {} nodes, I/O {} ({})",
        a.index.display(),
        index.len(),
        index.dim(),
        index.metric(),
        nq,
        a.k,
        a.search.w,
        match a.search.termination_ratio.or(index.default_termination_ratio()) {
            Some(r) if r.is_finite() => format!("r = {r:.3}"),
            _ => "off".into(),
        },
        index.cached_nodes(),
        index.io_backend_name(),
        if index.direct_io() {
            "O_DIRECT"
        } else {
            "page cache: O_DIRECT refused by the filesystem"
        }
    );
    let rows = run_eval(
        &index,
        &q,
        nq,
        &gt,
        a.k,
        &ls,
        &a.search.params(a.k),
        &threads,
        false,
    )?;
    if let Some(j) = a.json {
        let mut extra = serde_json::json!({"index": a.index, "queries": a.queries, "nq": nq, "k": a.k, "cache_nodes": index.cached_nodes(), "io": index.io_backend_name(), "o_direct": index.direct_io()});
        if let (Some(e), serde_json::Value::Object(f)) = (extra.as_object_mut(), a.search.json()) {
            e.extend(f);
        }
        std::fs::write(&j, serde_json::to_string_pretty(&rows_json(&rows, extra))?)
            .with_context(|| format!("{}: cannot write", j.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use super::*;
    use crate::search::tests::nb;

    /// Before, `n.id as u32` made label 2^32 + 5 match truth id 5.
    #[test]
    fn a_label_above_u32_never_matches_a_truth_id_by_truncation() {
        let truth = [5u32, 7, 9];
        let found = [nb((1 << 32) + 5), nb(7), nb(u64::from(u32::MAX) + 10)];
        assert_eq!(hits_at_k(&found, &truth, 3), 1);
        assert_eq!(hits_at_k(&found, &truth, 1), 0);
        assert_eq!(hits_at_k(&[nb(5), nb(9)], &truth, 3), 2);
    }

    /// Before, `.ibin` output stored `h.id as u32`: label 2^32 + 3 was written as 3.

    #[test]
    fn recall_with_ties_counts_a_returned_duplicate_of_the_kth_neighbour() {
        // truth: 1, 2 (k = 2), then 7 ties 2's distance, 8 does not
        let truth = [1u32, 2, 7, 8];
        let dist = [0.5f32, 1.0, 1.0 + 5e-7, 1.5];
        let found = [nb(1), nb(7)];
        assert_eq!(
            hits_at_k(&found, &truth[..2], 2),
            1,
            "strict: 7 is not in the top 2"
        );
        assert_eq!(hits_at_k_with_ties(&found, &truth, &dist, 2), 2);
        assert_eq!(hits_at_k_with_ties(&[nb(1), nb(8)], &truth, &dist, 2), 1);
        // a ground truth of exactly k columns: nothing beyond it to tie
        assert_eq!(hits_at_k_with_ties(&found, &truth[..2], &dist[..2], 2), 1);
    }

    #[test]
    fn the_latency_histogram_counts_every_query_in_log_spaced_bins() {
        let lat = [100.0, 110.0, 150.0, 1000.0, 9000.0, 10000.0];
        let (edges, counts) = log_histogram(&lat, 4);
        assert_eq!(edges.len(), 5);
        assert!((edges[0] - 100.0).abs() < 1e-9 && (edges[4] - 10000.0).abs() < 1e-6);
        assert!((edges[2] - 1000.0).abs() < 1e-6, "log-spaced: {edges:?}");
        assert_eq!(counts, [3, 0, 1, 2]);
        assert_eq!(log_histogram(&[], 4), (vec![], vec![]));
        let (_, one) = log_histogram(&[5.0], 3);
        assert_eq!(one.iter().sum::<u64>(), 1);
    }
}
