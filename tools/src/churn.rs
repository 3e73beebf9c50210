//! `ssdann churn`: the FreshDiskANN stability run (Singh et al. 2021, §5): build on the first
//! rows, then cycles of {delete a random fraction of the live points, insert as many rows that
//! are not live, merge}; after each cycle, recall@10 against the exact ground truth of the
//! live set, beside a fresh build of the same live set.

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use ssdann_builder::{build_from_vectors, BuildParams, NoProgress};
use ssdann_engine::{Index, MergeOptions, OpenOptions, SearchParams};
use ssdann_layout::{Metric, VectorFile};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct ChurnArgs {
    /// Directory with base.fbin and query.fbin.
    #[arg(long)]
    data: PathBuf,
    /// Rows of base.fbin in the initial build.
    #[arg(long, default_value_t = 90_000)]
    initial: usize,
    /// Cycles.
    #[arg(long, default_value_t = 5)]
    cycles: usize,
    /// Fraction of the live points deleted (and inserted) per cycle.
    #[arg(long, default_value_t = 0.05)]
    fraction: f64,
    /// Search list sizes L for the recall and reads figures (comma-separated; the first is
    /// the one searched during merges).
    #[arg(short = 'L', default_value = "50", value_delimiter = ',')]
    l: Vec<usize>,
    /// Recall@10 at which the merged and the fresh index's reads are compared
    /// (interpolated between the two L that bracket it; printed when both bracket it).
    #[arg(long, default_value_t = 0.95)]
    target_recall: f64,
    /// Beam width W.
    #[arg(short = 'W', default_value_t = 4)]
    w: usize,
    /// Queries used.
    #[arg(long, default_value_t = 1000)]
    nq: usize,
    /// PQ bytes.
    #[arg(long, default_value_t = 48)]
    pq_bytes: usize,
    /// Skip the fresh build per cycle (faster; no comparison).
    #[arg(long)]
    no_fresh: bool,
    /// Threads that keep searching during each merge (0 = none): prints their QPS and
    /// latencies during the merge beside the same threads' figures for 3 s before it.
    #[arg(long, default_value_t = 0)]
    search_threads: usize,
    /// Working directory (default: a temporary one).
    #[arg(long)]
    work: Option<PathBuf>,
}

/// Recall@10 and mean sector reads per query at each of `ls` (W = `w`).
fn recall(
    index: &Index,
    q: &[f32],
    truth: &[Vec<u64>],
    ls: &[usize],
    w: usize,
) -> Result<Vec<(f64, f64)>> {
    let mut out = Vec::with_capacity(ls.len());
    for &l in ls {
        let res = index.batch_search(q, 10, &SearchParams::new(l, w), None)?;
        let (mut hits, mut reads) = (0, 0u64);
        for (i, (nb, st)) in res.iter().enumerate() {
            hits += nb.iter().filter(|n| truth[i].contains(&n.id)).count();
            reads += u64::from(st.sector_reads);
        }
        let nq = res.len().max(1);
        out.push((hits as f64 / (nq * 10) as f64, reads as f64 / nq as f64));
    }
    Ok(out)
}

/// Reads at recall `target`, interpolated between the two points (recall, reads) sorted by
/// L that bracket it; `None` when none do.
fn reads_at(points: &[(f64, f64)], target: f64) -> Option<f64> {
    points.windows(2).find_map(|w| {
        let ((r0, s0), (r1, s1)) = (w[0], w[1]);
        (r0 <= target && target <= r1 && r1 > r0)
            .then(|| s0 + (target - r0) / (r1 - r0) * (s1 - s0))
    })
}

/// Searches from `threads` threads, cycling over `q`, until `run` returns; then reports
/// (searches, QPS, p50 µs, p99 µs, max µs) and what `run` returned.
fn with_searches<T>(
    index: &Index,
    q: &[f32],
    sp: &SearchParams,
    threads: usize,
    run: impl FnOnce() -> Result<T>,
) -> Result<(T, [f64; 5])> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let d = index.dim();
    let nq = q.len() / d;
    let done = AtomicBool::new(false);
    let t0 = Instant::now();
    let (r, mut lat) = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let done = &done;
                sc.spawn(move || -> Result<Vec<f64>> {
                    let mut lat = Vec::new();
                    let mut i = t;
                    while !done.load(Ordering::Acquire) {
                        let ts = Instant::now();
                        index.search(&q[(i % nq) * d..(i % nq + 1) * d], 10, sp)?;
                        lat.push(ts.elapsed().as_secs_f64() * 1e6);
                        i += threads;
                    }
                    Ok(lat)
                })
            })
            .collect();
        let r = run();
        done.store(true, Ordering::Release);
        let mut lat = Vec::new();
        for w in workers {
            match w.join() {
                Ok(l) => lat.extend(l?),
                Err(_) => bail!("a search thread panicked"),
            }
        }
        Ok((r, lat))
    })?;
    let secs = t0.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let stats = [
        lat.len() as f64,
        lat.len() as f64 / secs,
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN),
    ];
    Ok((r?, stats))
}

pub fn cmd_churn(a: ChurnArgs) -> Result<()> {
    crate::search::check_k_w(10, a.w)?;
    if a.l.is_empty() {
        bail!("-L: give at least one list size");
    }
    for &l in &a.l {
        crate::search::check_l(l, 10)?;
    }
    let mut ls = a.l.clone();
    ls.sort_unstable();
    if a.nq == 0 {
        bail!("--nq 0: must be at least 1");
    }
    let base = VectorFile::open(a.data.join("base.fbin"))?;
    let qf = VectorFile::open(a.data.join("query.fbin"))?;
    let (n, d) = (base.len(), base.dim());
    if a.initial >= n || a.initial == 0 {
        bail!("--initial {} must be in 1..{n}", a.initial);
    }
    let all = base.contiguous::<f32>()?;
    let nq = a.nq.min(qf.len());
    let q = qf.contiguous::<f32>()?[..nq * d].to_vec();
    let work = match &a.work {
        Some(w) => w.clone(),
        None => std::env::temp_dir().join(format!("ssdann-churn-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work)?;
    let params = BuildParams {
        pq_bytes: Some(a.pq_bytes),
        force: true,
        ..Default::default()
    };
    let sp = SearchParams::new(a.l[0], a.w);
    let t = Instant::now();
    build_from_vectors(
        &all[..a.initial * d],
        d,
        &work.join("idx"),
        &params,
        &NoProgress,
    )?;
    println!(
        "initial build of {} rows: {:.1} s",
        a.initial,
        t.elapsed().as_secs_f64()
    );
    let index = Index::open(&work.join("idx"), OpenOptions::default())?;
    let mut live: Vec<u64> = (0..a.initial as u64).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261123);
    println!(
        "{:>5} {:>8} {:>8} {:>8} {:>10} {:>10} {:>7} {:>11} {:>12} {:>8}",
        "cycle",
        "live",
        "deleted",
        "inserted",
        "merge_s",
        "rebuild_s",
        "ratio",
        "recall_mrg",
        "recall_fresh",
        "diff"
    );
    for cycle in 1..=a.cycles {
        let k = (live.len() as f64 * a.fraction).round() as usize;
        live.shuffle(&mut rng);
        let deleted: Vec<u64> = live.split_off(live.len() - k);
        let live_set: std::collections::HashSet<u64> = live.iter().copied().collect();
        let deleted_set: std::collections::HashSet<u64> = deleted.iter().copied().collect();
        let mut unused: Vec<u64> = (0..n as u64)
            .filter(|r| !live_set.contains(r) && !deleted_set.contains(r))
            .collect();
        unused.shuffle(&mut rng);
        let inserted: Vec<u64> = unused.into_iter().take(k).collect();
        index.delete_batch(&deleted)?;
        let items: Vec<(u64, &[f32])> = inserted
            .iter()
            .map(|&r| (r, &all[r as usize * d..(r as usize + 1) * d]))
            .collect();
        index.insert_batch(&items)?;
        if a.search_threads > 0 {
            let ((), s) = with_searches(&index, &q, &sp, a.search_threads, || {
                std::thread::sleep(std::time::Duration::from_secs(3));
                Ok(())
            })?;
            eprintln!("  {} search threads before the merge: {:.0} QPS, p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs", a.search_threads, s[1], s[2], s[3], s[4]);
        }
        let t = Instant::now();
        let (rep, s) = with_searches(&index, &q, &sp, a.search_threads, || {
            Ok(index.merge(&MergeOptions::default())?)
        })?;
        let merge_s = t.elapsed().as_secs_f64();
        eprintln!("  merge phases (delete, insert, patch, commit, apply) s: {:.2?}; {} repaired, {} blocks", rep.phase_seconds, rep.repaired, rep.blocks_written);
        if a.search_threads > 0 {
            eprintln!("  {} search threads during the merge: {} searches, {:.0} QPS, p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs", a.search_threads, s[0], s[1], s[2], s[3], s[4]);
        }
        live.extend_from_slice(&inserted);
        live.sort_unstable();
        // exact ground truth of the live set (labels are row numbers)
        let mut gathered = Vec::with_capacity(live.len() * d);
        for &r in &live {
            gathered.extend_from_slice(&all[r as usize * d..(r as usize + 1) * d]);
        }
        let knn = ssdann_builder::ground_truth::exact_knn(&q, &gathered, d, Metric::L2, 10);
        let truth: Vec<Vec<u64>> = knn
            .iter()
            .map(|row| row.iter().map(|e| live[e.1 as usize]).collect())
            .collect();
        let merged = recall(&index, &q, &truth, &ls, a.w)?;
        let (rebuild_s, fresh) = if a.no_fresh {
            (f64::NAN, vec![(f64::NAN, f64::NAN); ls.len()])
        } else {
            let t = Instant::now();
            build_from_vectors(&gathered, d, &work.join("fresh"), &params, &NoProgress)?;
            let rebuild_s = t.elapsed().as_secs_f64();
            let fresh = Index::open(&work.join("fresh"), OpenOptions::default())?;
            // fresh labels are positions in `gathered`: map them to rows
            let pos_truth: Vec<Vec<u64>> = knn
                .iter()
                .map(|row| row.iter().map(|e| u64::from(e.1)).collect())
                .collect();
            (rebuild_s, recall(&fresh, &q, &pos_truth, &ls, a.w)?)
        };
        let (r_merged, r_fresh) = (merged[0].0, fresh[0].0);
        println!(
            "{cycle:>5} {:>8} {:>8} {:>8} {merge_s:>10.2} {rebuild_s:>10.2} {:>7.3} {r_merged:>11.4} {r_fresh:>12.4} {:>8.4}",
            live.len(), deleted.len(), inserted.len(), merge_s / rebuild_s, r_merged - r_fresh
        );
        for (i, &l) in ls.iter().enumerate() {
            println!(
                "      L = {l:>4}: merged recall {:.4}, {:.1} reads; fresh recall {:.4}, {:.1} reads",
                merged[i].0, merged[i].1, fresh[i].0, fresh[i].1
            );
        }
        if let (Some(m), Some(f)) = (
            reads_at(&merged, a.target_recall),
            reads_at(&fresh, a.target_recall),
        ) {
            println!(
                "      reads at recall {}: merged {m:.1}, fresh {f:.1}, ratio {:.3}",
                a.target_recall,
                m / f
            );
        }
    }
    if a.work.is_none() {
        std::fs::remove_dir_all(&work).ok();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::reads_at;

    #[test]
    fn reads_at_a_recall_interpolate_between_the_bracketing_list_sizes() {
        let pts = [(0.90, 10.0), (0.96, 20.0), (0.99, 50.0)];
        assert!((reads_at(&pts, 0.93).unwrap() - 15.0).abs() < 1e-9);
        assert!((reads_at(&pts, 0.98).unwrap() - 40.0).abs() < 1e-9);
        assert_eq!(reads_at(&pts, 0.995), None);
        assert_eq!(reads_at(&pts, 0.5), None);
    }
}
