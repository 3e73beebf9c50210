//! `ssdann insert | delete`: updates through the WAL into the delta index / tombstones.

use crate::progress::bar;
use anyhow::{bail, Context, Result};
use ssdann_engine::{Index, OpenOptions, SyncMode};
use ssdann_layout::labels::FREE_LABEL;
use ssdann_layout::VectorFile;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Reads labels: one unsigned integer per line (blank lines and `#` comments skipped).
///
/// # Errors
/// The file cannot be read; a line is not a u64; a line holds the reserved label
/// [`FREE_LABEL`] (2^64 − 1, the mark of a free slot in `labels.bin`). Each names the file
/// and the line (counted from 1).
fn read_labels(path: &Path) -> Result<Vec<u64>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let label = t.parse::<u64>().with_context(|| {
            format!(
                "{}: line {}: {t:?} is not a label (an unsigned integer)",
                path.display(),
                i + 1
            )
        })?;
        if label == FREE_LABEL {
            bail!(
                "{}: line {}: label {label} is reserved (2^64 − 1 marks a free slot); labels \
                 must be at most {}",
                path.display(),
                i + 1,
                FREE_LABEL - 1
            );
        }
        out.push(label);
    }
    Ok(out)
}

/// Opens the index whose WAL appends are fsynced per `sync`.
fn open_with_sync(dir: &Path, sync: SyncMode) -> Result<Index> {
    Ok(Index::open(
        dir,
        OpenOptions {
            sync,
            ..Default::default()
        },
    )?)
}

#[derive(clap::Args)]
pub struct InsertArgs {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    /// Vectors to insert (same d as the index).
    #[arg(long)]
    data: PathBuf,
    /// Labels, one per line, one per vector (default: continue after the largest label);
    /// each at most 2^64 − 2 (2^64 − 1 is reserved).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// WAL durability: always (fsync per batch), interval=MS, or never.
    #[arg(long, default_value = "always")]
    sync: SyncMode,
    /// Vectors per WAL group commit.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Insert only the first N vectors of the file.
    #[arg(long)]
    limit: Option<usize>,
}

pub fn cmd_insert(a: InsertArgs) -> Result<()> {
    let index = open_with_sync(&a.index, a.sync)?;
    let f = VectorFile::open(&a.data)?;
    if f.dim() != index.dim() {
        bail!(
            "{}: vectors have d = {} but the index has d = {}",
            a.data.display(),
            f.dim(),
            index.dim()
        );
    }
    let n = a.limit.unwrap_or(f.len()).min(f.len());
    let labels = match &a.labels {
        Some(p) => {
            let l = read_labels(p)?;
            if l.len() < n {
                bail!("{}: {} labels for {n} vectors", p.display(), l.len());
            }
            l
        }
        None => {
            // after the largest label; `end` ≤ u64::MAX, so the last label (end − 1) is
            // never the reserved FREE_LABEL
            let max = index.max_label();
            let first = max.map_or(Some(0), |m| m.checked_add(1));
            match first.and_then(|f| Some((f, f.checked_add(n as u64)?))) {
                Some((first, end)) => (first..end).collect(),
                _ => bail!(
                    "{}: the largest label is {max:?}; {n} more after it would reach the \
                     reserved label 2^64 − 1 (pass --labels)",
                    a.index.display()
                ),
            }
        }
    };
    let d = f.dim();
    let mut rows = vec![0f32; n * d];
    for (i, r) in rows.chunks_exact_mut(d).enumerate() {
        f.row_f32(i, r);
    }
    let pb = bar(n as u64, "insert", false);
    let t = Instant::now();
    let batch = a.batch.max(1);
    for start in (0..n).step_by(batch) {
        let end = (start + batch).min(n);
        let items: Vec<(u64, &[f32])> = (start..end)
            .map(|i| (labels[i], &rows[i * d..(i + 1) * d]))
            .collect();
        index.insert_batch(&items)?;
        pb.inc((end - start) as u64);
    }
    pb.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    let (delta, tomb, wal) = index.pending();
    println!("inserted {n} vectors in {secs:.2} s ({:.0} vectors/s, sync {:?}, {batch} per group commit); pending: {delta} in the delta index, {tomb} tombstones, {wal} WAL records", n as f64 / secs, a.sync);
    Ok(())
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    /// Labels to delete, one per line (2^64 − 1 is reserved and refused).
    #[arg(long)]
    labels: PathBuf,
    /// WAL durability: always, interval=MS, or never.
    #[arg(long, default_value = "always")]
    sync: SyncMode,
}

pub fn cmd_delete(a: DeleteArgs) -> Result<()> {
    let index = open_with_sync(&a.index, a.sync)?;
    let labels = read_labels(&a.labels)?;
    let t = Instant::now();
    index.delete_batch(&labels)?;
    let (delta, tomb, wal) = index.pending();
    println!("deleted {} labels in {:.3} s; pending: {delta} in the delta index, {tomb} tombstones, {wal} WAL records", labels.len(), t.elapsed().as_secs_f64());
    Ok(())
}

#[derive(clap::Args)]
pub struct MergeArgs {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    /// Test hook: sleep this many ms after each batch of in-place block writes (lets
    /// crash tests kill the process while the journal is half applied).
    #[arg(long, hide = true)]
    apply_pause_ms: Option<u64>,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
}

pub fn cmd_merge(a: MergeArgs) -> Result<()> {
    let index = Index::open(&a.index, OpenOptions::default())?;
    let (delta, tomb, wal) = index.pending();
    if delta == 0 && tomb == 0 {
        println!("nothing to merge ({wal} WAL records, no pending inserts or deletes)");
        return Ok(());
    }
    let rep = index.merge_with_progress(
        &ssdann_engine::MergeOptions {
            apply_pause: a.apply_pause_ms.map(std::time::Duration::from_millis),
            ..Default::default()
        },
        &crate::progress::Bars::new(a.quiet),
    )?;
    println!(
        "merged {} inserts and {} deletes in {:.2} s: {} nodes repaired, {} blocks rewritten in place; now {} slots, {} live, generation {}",
        rep.inserted, rep.deleted, rep.seconds, rep.repaired, rep.blocks_written, rep.n_slots, index.header().live_count, index.header().generation
    );
    let p = rep.phase_seconds;
    println!("phases: delete {:.2} s, insert {:.2} s, patch {:.2} s, stage + commit {:.2} s, apply in place {:.2} s", p[0], p[1], p[2], p[3], p[4]);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use super::*;

    /// Before, u64::MAX parsed as an ordinary label.
    #[test]
    fn the_reserved_label_is_refused_with_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("labels.txt");
        std::fs::write(
            &p,
            "# mine\n7\n\n18446744073709551614\n18446744073709551615\n",
        )
        .unwrap();
        let err = format!("{:#}", read_labels(&p).unwrap_err());
        assert!(
            err.contains(&format!(
                "{}: line 5: label 18446744073709551615 is reserved",
                p.display()
            )),
            "{err}"
        );
        std::fs::write(&p, "7\n18446744073709551614\n").unwrap();
        assert_eq!(read_labels(&p).unwrap(), [7, u64::MAX - 1]);
    }
}
