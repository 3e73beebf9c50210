//! Benchmark (issue 11, part 7): search latency while a stream of single-vector inserts runs
//! (each insert fsynced to the WAL before it returns, `SyncMode::Always`).
//!
//! Builds a 10,000-point index from `base10k.fbin` (R = 32, L = 64, 48 PQ bytes), then runs
//! one search thread (k = 10, L = 50, W = 4, queries from `query.fbin`) alone for `--secs`
//! seconds, and again while another thread inserts `--inserts` vectors (rows 10,000.. of
//! `base.fbin`, one per call). Prints the search latency percentiles (µs) of both phases and
//! the insert rate.
//!
//! An optional third argument caps the insert rate (inserts per second), so that two builds
//! can be compared at the same insert load.
//!
//! ```sh
//! cargo run --release --example search_during_inserts -- ../shared/data/pypi-minilm-100k 10000 [RATE]
//! ```

use ssdann::engine::{Index, OpenOptions, SearchParams};
use ssdann::layout::VectorFile;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let data = std::path::PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| "../shared/data/pypi-minilm-100k".into()),
    );
    let inserts: usize = args.get(2).map_or(Ok(10_000), |s| s.parse())?;
    let rate: Option<f64> = args.get(3).map(|s| s.parse()).transpose()?;
    let tmp = tempfile::tempdir_in(".")?;
    let dir = tmp.path().join("idx");
    let params = ssdann::BuildParams {
        max_degree: 32,
        build_l: 64,
        pq_bytes: Some(48),
        ..Default::default()
    };
    let t = Instant::now();
    ssdann::build_index(
        &data.join("base10k.fbin"),
        &dir,
        &params,
        &ssdann::NoProgress,
    )?;
    eprintln!("built in {:.1} s", t.elapsed().as_secs_f64());
    let base = VectorFile::open(data.join("base.fbin"))?;
    let queries = VectorFile::open(data.join("query.fbin"))?;
    let d = base.dim();
    let idx = Index::open(&dir, OpenOptions::default())?;
    let sp = SearchParams::new(50, 4);
    let mut q = vec![0f32; d];
    let search_for = |stop: &AtomicBool, max_s: f64| -> Vec<f64> {
        let mut lat = Vec::new();
        let mut q = vec![0f32; d];
        let t0 = Instant::now();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) && t0.elapsed().as_secs_f64() < max_s {
            queries.row_f32(i % queries.len(), &mut q);
            let t = Instant::now();
            let _ = idx.search(&q, 10, &sp);
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            i += 1;
        }
        lat
    };
    // warm-up
    for i in 0..200 {
        queries.row_f32(i, &mut q);
        idx.search(&q, 10, &sp)?;
    }
    let secs = 5.0;
    let never = AtomicBool::new(false);
    let mut alone = search_for(&never, secs);
    let done = AtomicBool::new(false);
    let (mut during, insert_s) = std::thread::scope(|s| {
        let h = s.spawn(|| search_for(&done, 600.0));
        let t = Instant::now();
        let mut v = vec![0f32; d];
        for i in 0..inserts {
            if let Some(r) = rate {
                let due = t + std::time::Duration::from_secs_f64(i as f64 / r);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            base.row_f32(10_000 + i, &mut v);
            idx.insert(1_000_000 + i as u64, &v).expect("insert");
        }
        let insert_s = t.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        (h.join().expect("search thread"), insert_s)
    });
    println!(
        "searches alone:           n = {:6}, p50 {:8.0} µs, p99 {:8.0} µs, max {:8.0} µs",
        alone.len(),
        pct(&mut alone, 0.5),
        pct(&mut alone, 0.99),
        pct(&mut alone, 1.0)
    );
    println!(
        "searches during inserts:  n = {:6}, p50 {:8.0} µs, p99 {:8.0} µs, max {:8.0} µs",
        during.len(),
        pct(&mut during, 0.5),
        pct(&mut during, 0.99),
        pct(&mut during, 1.0)
    );
    println!(
        "inserts: {inserts} in {insert_s:.1} s ({:.0} / s, each fsynced)",
        inserts as f64 / insert_s
    );
    Ok(())
}
