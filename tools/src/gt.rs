//! `ssdann gt`: exact ground truth by brute force (parallel, SIMD kernels, the base streamed
//! in chunks).

use crate::progress::bar;
use anyhow::{bail, Result};
use ssdann_builder::ground_truth::update_topk;
use ssdann_layout::{Element, ElementType, GroundTruth, Metric, VectorFile};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct GtArgs {
    /// Base vectors.
    #[arg(long)]
    base: PathBuf,
    /// Query vectors (same element type and d as the base).
    #[arg(long)]
    queries: PathBuf,
    /// Neighbours per query.
    #[arg(short, default_value_t = 100)]
    k: usize,
    /// Metric: l2, ip or cosine.
    #[arg(long, default_value = "l2")]
    metric: Metric,
    /// Output .ibin.
    #[arg(long)]
    out: PathBuf,
    /// Base rows per chunk (bounds the memory touched at once).
    #[arg(long, default_value_t = 65536)]
    chunk_rows: usize,
    /// Threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn gt_typed<T: Element>(
    base: &VectorFile,
    queries: &VectorFile,
    k: usize,
    metric: Metric,
    chunk_rows: usize,
) -> Result<Vec<Vec<(f32, u32)>>> {
    let d = base.dim();
    let mut q = queries.contiguous::<T>()?.into_owned();
    let cosine = metric == Metric::Cosine;
    if cosine {
        let qf: &mut [f32] = bytemuck::cast_slice_mut(&mut q);
        qf.chunks_exact_mut(d)
            .for_each(ssdann_layout::distance::normalize);
    }
    let all = base.contiguous::<T>()?;
    let mut best = vec![Vec::with_capacity(k + 1); queries.len()];
    let pb = bar(base.len() as u64, "ground truth", false);
    let mut start = 0;
    while start < base.len() {
        let end = (start + chunk_rows).min(base.len());
        if cosine {
            let mut chunk: Vec<f32> =
                bytemuck::cast_slice::<T, f32>(&all[start * d..end * d]).to_vec();
            chunk
                .chunks_exact_mut(d)
                .for_each(ssdann_layout::distance::normalize);
            update_topk::<f32>(
                bytemuck::cast_slice(&q),
                &chunk,
                d,
                metric,
                start as u32,
                k,
                &mut best,
            );
        } else {
            update_topk(
                &q,
                &all[start * d..end * d],
                d,
                metric,
                start as u32,
                k,
                &mut best,
            );
        }
        pb.inc((end - start) as u64);
        start = end;
    }
    pb.finish_and_clear();
    Ok(best)
}

/// Computes and writes exact ground truth; returns it.
pub fn compute_gt(
    base_p: &Path,
    queries_p: &Path,
    k: usize,
    metric: Metric,
    chunk_rows: usize,
    out: &Path,
) -> Result<GroundTruth> {
    let base = VectorFile::open(base_p)?;
    let queries = VectorFile::open(queries_p)?;
    if base.dim() != queries.dim() || base.element_type() != queries.element_type() {
        bail!(
            "{} is {} × {} but {} is {} × {}: they must match",
            base_p.display(),
            base.dim(),
            base.element_type(),
            queries_p.display(),
            queries.dim(),
            queries.element_type()
        );
    }
    if k == 0 || k > base.len() {
        bail!("-k {k}: must be in 1..={} (the base size)", base.len());
    }
    if metric == Metric::Cosine && base.element_type() != ElementType::F32 {
        bail!("--metric cosine needs f32 data");
    }
    let best = match base.element_type() {
        ElementType::F32 => gt_typed::<f32>(&base, &queries, k, metric, chunk_rows.max(1))?,
        ElementType::U8 => gt_typed::<u8>(&base, &queries, k, metric, chunk_rows.max(1))?,
        ElementType::I8 => gt_typed::<i8>(&base, &queries, k, metric, chunk_rows.max(1))?,
    };
    let gt = GroundTruth {
        nq: queries.len(),
        k,
        ids: best.iter().flat_map(|r| r.iter().map(|e| e.1)).collect(),
        distances: best
            .iter()
            .flat_map(|r| r.iter().map(|e| metric.reported(e.0)))
            .collect(),
    };
    gt.write(out)?;
    Ok(gt)
}

pub fn cmd_gt(a: GtArgs) -> Result<()> {
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(t) = a.threads {
        pool = pool.num_threads(t.max(1));
    }
    let pool = pool.build()?;
    let t = Instant::now();
    let gt =
        pool.install(|| compute_gt(&a.base, &a.queries, a.k, a.metric, a.chunk_rows, &a.out))?;
    println!(
        "exact top-{} of {} queries in {:.2} s → {}",
        gt.k,
        gt.nq,
        t.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}
