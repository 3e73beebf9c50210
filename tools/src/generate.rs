//! `ssdann generate`: a synthetic data set of a stated distribution, streamed to disk (10M+
//! rows without holding them in RAM) — for build-memory and open-time figures at scales no
//! real set here reaches. Ground truth: `ssdann gt`.

use crate::progress::bar;
use anyhow::{bail, Context, Result};
use ssdann_builder::synthetic::Clustered;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// Output directory (created); receives base.fbin / base.u8bin and query.fbin /
    /// query.u8bin.
    #[arg(long)]
    out: PathBuf,
    /// Base rows n.
    #[arg(short, long)]
    n: usize,
    /// Dimension d.
    #[arg(short, long, default_value_t = 96)]
    dim: usize,
    /// Element type: f32 (rows of unit L2 norm) or u8 (not normalized; 128 + 40·x, clamped).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Query rows, drawn from the same distribution after the base rows.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Cluster centres: each row is a centre (N(0, 1) per coordinate) plus Gaussian noise
    /// of σ uniform in [0.35, 0.65).
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// Seed (the output is the same on every machine for a seed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Hide the progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn write_rows(
    path: &Path,
    n: usize,
    d: usize,
    u8s: bool,
    g: &mut Clustered,
    quiet: bool,
) -> Result<()> {
    let f = std::fs::File::create(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(8 << 20, f);
    let io = |e: std::io::Error| anyhow::anyhow!("{}: {e}", path.display());
    w.write_all(&(n as u32).to_le_bytes()).map_err(io)?;
    w.write_all(&(d as u32).to_le_bytes()).map_err(io)?;
    let pb = bar(
        n as u64,
        &format!("{}", path.file_name().unwrap_or_default().to_string_lossy()),
        quiet,
    );
    let (mut row, mut bytes) = (vec![0f32; d], vec![0u8; d]);
    for i in 0..n {
        if u8s {
            g.next_u8(&mut bytes, &mut row);
            w.write_all(&bytes).map_err(io)?;
        } else {
            g.next_f32(&mut row);
            w.write_all(bytemuck::cast_slice(&row)).map_err(io)?;
        }
        if i % 65536 == 65535 {
            pb.inc(65536);
        }
    }
    w.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    pb.finish_and_clear();
    Ok(())
}

pub fn cmd_generate(a: GenerateArgs) -> Result<()> {
    let u8s = match a.dtype.as_str() {
        "f32" => false,
        "u8" => true,
        o => bail!("invalid --dtype {o:?}: expected f32 or u8"),
    };
    if a.n == 0 || a.n >= u32::MAX as usize {
        bail!("invalid -n {}: must be in 1..=4294967294", a.n);
    }
    if a.dim == 0 || a.dim > ssdann_layout::dataset::MAX_DIM {
        bail!(
            "invalid --dim {}: must be in 1..={}",
            a.dim,
            ssdann_layout::dataset::MAX_DIM
        );
    }
    if a.clusters == 0 || a.clusters > 1 << 20 {
        bail!("invalid --clusters {}: must be in 1..=1048576", a.clusters);
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("{}: cannot create", a.out.display()))?;
    let ext = if u8s { "u8bin" } else { "fbin" };
    let mut g = Clustered::new(a.dim, a.clusters, a.seed);
    let base = a.out.join(format!("base.{ext}"));
    write_rows(&base, a.n, a.dim, u8s, &mut g, a.quiet)?;
    let query = a.out.join(format!("query.{ext}"));
    if a.queries > 0 {
        write_rows(&query, a.queries, a.dim, u8s, &mut g, a.quiet)?;
    }
    println!(
        "wrote {} ({} × {} {}, {} clusters, seed {}){}",
        base.display(),
        a.n,
        a.dim,
        a.dtype,
        a.clusters,
        a.seed,
        if a.queries > 0 {
            format!(" and {} ({} queries)", query.display(), a.queries)
        } else {
            String::new()
        }
    );
    println!(
        "ground truth: ssdann gt --base {} --queries {} --out {}",
        base.display(),
        query.display(),
        a.out.join("gt.ibin").display()
    );
    Ok(())
}
