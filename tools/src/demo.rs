//! `ssdann demo`: build an index of a generated (or given) data set, then evaluate it
//! (recall@10, QPS and latency over a sweep of L and thread counts).

use crate::build::BuildArgs;
use crate::eval::run_eval;
use crate::gt::compute_gt;
use crate::search::{load_queries, parse_list, SearchFlags};
use anyhow::{bail, Context, Result};
use ssdann_engine::{Index, OpenOptions};
use ssdann_layout::{GroundTruth, Metric};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Directory with base.fbin, query.fbin and gt.ibin (e.g. ../shared/data/pypi-minilm-100k).
    /// Without it, a clustered data set (20,000 × 128, 1,000 queries) is generated.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Search list sizes to sweep.
    #[arg(short = 'L', default_value = "10,20,30,50,75,100")]
    l: String,
    /// Thread counts to sweep.
    #[arg(long, default_value = "1,2")]
    threads: String,
    /// Use only the first N queries.
    #[arg(long, default_value_t = 1000)]
    nq: usize,
    /// Keep the index in DIR (which must not exist) and print how to query it; a generated
    /// data set is kept beside it in DIR-data/. Without --out the index is built in a
    /// temporary directory and removed.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn cmd_demo(a: DemoArgs) -> Result<()> {
    if a.nq == 0 {
        bail!("--nq 0: must be at least 1");
    }
    if let Some(o) = &a.out {
        if o.exists() {
            bail!(
                "{}: already exists (demo --out makes a new index directory)",
                o.display()
            );
        }
    }
    let tmp = tempfile_dir()?;
    // generated data: kept beside a kept index, else in the temporary directory
    let data_dir = match &a.out {
        Some(o) => {
            let mut name = o.file_name().unwrap_or_default().to_os_string();
            name.push("-data");
            let d = o.with_file_name(name);
            if a.data.is_none() {
                if d.exists() {
                    bail!(
                        "{}: already exists (demo --out keeps its generated data there)",
                        d.display()
                    );
                }
                std::fs::create_dir_all(&d)
                    .with_context(|| format!("{}: cannot create", d.display()))?;
            }
            d
        }
        None => tmp.clone(),
    };
    let (base, queries, gt_path) = match &a.data {
        Some(dir) => (
            dir.join("base.fbin"),
            dir.join("query.fbin"),
            dir.join("gt.ibin"),
        ),
        None => {
            let (n, nq, d) = (20_000usize, 1_000usize, 128usize);
            println!(
                "generating a clustered data set: {n} × {d} f32 base, {nq} queries (deterministic)"
            );
            let (b, q) = ssdann_builder::synthetic::clustered(n, nq, d, 48, 20261123);
            let base = data_dir.join("base.fbin");
            let queries = data_dir.join("query.fbin");
            ssdann_layout::dataset::write_bin(&base, n, d, &b)?;
            ssdann_layout::dataset::write_bin(&queries, nq, d, &q)?;
            let gt = data_dir.join("gt.ibin");
            compute_gt(&base, &queries, 10, Metric::L2, 65536, &gt)?;
            (base, queries, gt)
        }
    };
    for p in [&base, &queries, &gt_path] {
        if !p.exists() {
            bail!(
                "{}: not found (--data must hold base.fbin, query.fbin and gt.ibin)",
                p.display()
            );
        }
    }
    let out = a.out.clone().unwrap_or_else(|| tmp.join("index"));
    crate::build::cmd_build_all(BuildArgs {
        data: base,
        out: out.clone(),
        metric: Metric::L2,
        r: 64,
        l: 100,
        alpha: 1.2,
        pq_bytes: None,
        threads: None,
        force: a.out.is_none(),
        quiet: false,
        no_reorder: false,
        graph_precision: Default::default(),
        memory_budget: None,
        passes: 2,
        resume: false,
        neighbor_codes: false,
        vector_encoding: None,
        max_index_growth: ssdann_builder::params::DEFAULT_MAX_INDEX_GROWTH,
        no_saturate_graph: false,
        saturate_graph: false,
    })?;
    let index = Index::open(&out, OpenOptions::default())?;
    let (nq_all, q) = load_queries(&queries, index.dim())?;
    let gt = GroundTruth::read(&gt_path)?;
    let nq = a.nq.min(nq_all).min(gt.nq);
    println!(
        "\nbeam search over {} (W = 4, k = 10, {} queries, I/O {}{})",
        out.display(),
        nq,
        index.io_backend_name(),
        if index.direct_io() {
            ", O_DIRECT"
        } else {
            ", page cache"
        }
    );
    run_eval(
        &index,
        &q,
        nq,
        &gt,
        10,
        &parse_list(&a.l, "-L")?,
        &SearchFlags::default().params(10),
        &parse_list(&a.threads, "--threads")?,
        false,
    )?;
    std::fs::remove_dir_all(&tmp).ok();
    if a.out.is_some() {
        println!(
            "\nkept the index in {o}; query it with\n  ssdann search --index {o} --queries {q} --out results.npy\n  ssdann eval --index {o} --queries {q} --gt {g}",
            o = out.display(),
            q = queries.display(),
            g = gt_path.display()
        );
    }
    Ok(())
}

/// A fresh temporary directory under $TMPDIR (removed by the caller).
fn tempfile_dir() -> Result<PathBuf> {
    let p = std::env::temp_dir().join(format!("ssdann-demo-{}", std::process::id()));
    if p.exists() {
        std::fs::remove_dir_all(&p)?;
    }
    std::fs::create_dir_all(&p).with_context(|| format!("{}: cannot create", p.display()))?;
    Ok(p)
}
