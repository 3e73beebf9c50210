//! `ssdann`: build, check and query SSD-resident ANN indexes from the command line.
//!
//! The command is this library's [`run`]: the `ssdann` binary (src/main.rs) calls it with the
//! process's arguments, and the Python package's `ssdann` console script calls the same
//! function compiled into its extension module, so `pip install ./python` installs the
//! command too.
//!
//! # Module order
//!
//! Imports inside the command run one way, each module using only those before it; the
//! crate root (the command line and `info`, `verify`) sits above them all:
//!
//! `progress → gt → generate → build → stages → search → eval → demo → update → churn`
//!
//! - `progress`: the progress bars; `gt`: exact ground truth; `generate`: synthetic data;
//! - `build`: `ssdann build`'s flags and the whole build; `stages`: one stage of a
//!   memory-budgeted build per process, on the same flags;
//! - `search` (the search flags and checks every query command shares) → `eval` → `demo`
//!   (build, then eval, on generated or given data);
//! - `update`: insert, delete, merge; `churn`: the FreshDiskANN stability run.
//!
//! `tools/check-imports.sh` checks this order.

mod build;
mod churn;
mod demo;
mod eval;
mod generate;
mod gt;
mod progress;
mod search;
mod stages;
mod update;

use anyhow::{Context, Result};
use build::BuildArgs;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[cfg(test)]
mod tests {
    #[test]
    fn an_os_error_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io.to_string();
        let e = anyhow::Error::new(io).context(format!("q.fbin: {text}"));
        assert_eq!(super::error_chain(&e), format!("q.fbin: {text}"));
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::error_chain(&e), "outer: inner");
    }
}

#[derive(Parser)]
#[command(
    name = "ssdann",
    version,
    about = "Disk-resident approximate nearest-neighbour index (DiskANN-style Vamana graph + PQ, 4 KB sectors)",
    long_about = "ssdann builds a Vamana graph over your vectors, packs each node's full vector and neighbour list into \
checksummed 4 KB sectors on the SSD, and keeps only PQ codes in RAM.\n\n\
Typical use:\n  ssdann build --data base.fbin --out idx\n  ssdann info idx\n  ssdann verify idx"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build an index directory from a vector file (.fbin/.u8bin/.i8bin/.fvecs/.bvecs/.npy);
    /// or, with a subcommand, one stage of a memory-budgeted build (plan, partition, merge,
    /// write, status) for running its partitions on many machines.
    Build(BuildCmd),
    /// Print an index's header (parameters, sizes, generation).
    Info {
        /// Index directory.
        dir: PathBuf,
    },
    /// Check every checksum and graph invariant of an index; exits non-zero on any problem.
    Verify {
        /// Index directory.
        dir: PathBuf,
    },
    /// Search an index for every query in a file; writes the ids and distances (.ibin).
    Search(search::SearchArgs),
    /// Measure recall@k, QPS, latency and I/O per query over a sweep of L and thread counts.
    Eval(eval::EvalArgs),
    /// Exact ground truth by brute force (parallel, SIMD, streams the base in chunks).
    Gt(gt::GtArgs),
    /// Build, evaluate and print the recall/QPS table on a generated data set (or --data DIR).
    Demo(demo::DemoArgs),
    /// Insert (or replace) points: WAL first, then the in-memory delta index.
    Insert(update::InsertArgs),
    /// Delete points by label: WAL first, then tombstones.
    Delete(update::DeleteArgs),
    /// Fold pending inserts and deletes into the sector file in place (StreamingMerge).
    Merge(update::MergeArgs),
    /// FreshDiskANN stability run: cycles of delete 5% / insert 5% / merge, recall per cycle
    /// against exact ground truth and against a fresh build of the same live set.
    Churn(churn::ChurnArgs),
    /// Write a synthetic data set of a stated distribution (clustered f32 or u8) for scale
    /// tests, streamed to disk; then `ssdann gt` for its ground truth.
    Generate(generate::GenerateArgs),
    /// Draw eval JSON files (eval --json) as a recall@k–QPS plot and a latency histogram
    /// (PNG). Provided by the Python package's ssdann command (pip install './python[plot]').
    Plot {
        /// eval --json files (one line per file, thread count and cache size)
        #[arg(required = true)]
        json: Vec<PathBuf>,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
        /// The L whose latency histogram is drawn (default: the largest at one thread).
        #[arg(short = 'L')]
        l: Option<usize>,
    },
}

/// `ssdann build`: the whole build, or one stage of a memory-budgeted one.
#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Stage by stage (the partitions on many machines; README, \"Scale out\"):\n  \
ssdann build plan --data base.fbin --out idx --memory-budget 8\n  \
ssdann build partition --out idx --part I      # for I in 0..N, anywhere\n  \
ssdann build merge --out idx\n  \
ssdann build write --out idx"
)]
pub(crate) struct BuildCmd {
    #[command(subcommand)]
    stage: Option<stages::BuildStage>,
    #[command(flatten)]
    args: Option<BuildArgs>,
}

pub(crate) fn cmd_build(c: BuildCmd) -> Result<()> {
    match (c.stage, c.args) {
        (Some(stage), _) => stages::cmd_stage(stage),
        (None, Some(a)) => build::cmd_build_all(a),
        (None, None) => anyhow::bail!("build needs --data and --out (see ssdann build --help)"),
    }
}

fn cmd_info(dir: PathBuf) -> Result<()> {
    let path = dir.join(ssdann_builder::build::INDEX_FILE);
    let mut f = std::fs::File::open(&path).with_context(|| {
        format!(
            "{}: cannot open (is {} an ssdann index?)",
            path.display(),
            dir.display()
        )
    })?;
    let mut slots = vec![0u8; 2 * ssdann_layout::SECTOR_BYTES];
    std::io::Read::read_exact(&mut f, &mut slots)
        .with_context(|| format!("{}: shorter than the two header slots", path.display()))?;
    let (h, slot) = ssdann_layout::IndexHeader::choose(&path, &slots)?;
    let l = h.layout;
    println!("index            {}", dir.display());
    println!(
        "format           v{}.{} (header slot {slot}, generation {})",
        h.major(),
        ssdann_layout::header::FORMAT_VERSION_MINOR,
        h.generation
    );
    println!(
        "points           {} slots, {} live",
        h.n_slots, h.live_count
    );
    println!(
        "vectors          d = {}, {}, metric {}",
        h.dim, h.element, h.metric
    );
    println!(
        "graph            R = {}, entry point {}, built with L = {}, α = {}{}",
        h.max_degree,
        h.entry_point,
        h.build_l,
        h.build_alpha,
        if h.saturated { ", saturated" } else { "" }
    );
    let nav = dir.join(ssdann_layout::navigation::NAVIGATION_FILE);
    match ssdann_layout::blob::read_blob_fields(
        &nav,
        &ssdann_layout::navigation::NAVIGATION_MAGIC,
        ssdann_layout::navigation::NAVIGATION_VERSION,
    ) {
        Ok((_, f)) => println!(
            "navigation       {} entry-point nodes, R = {} (navigation.bin)",
            f.first().copied().unwrap_or(0),
            f.get(1).copied().unwrap_or(0)
        ),
        Err(_) if !nav.exists() => println!(
            "navigation       no navigation.bin (built before it): an open builds {} nodes",
            ssdann_builder::navigation::default_nodes(h.live_count as usize)
        ),
        Err(e) => println!("navigation       unreadable: {e}"),
    }
    println!(
        "records          {} bytes, {} per block, {} sector(s) per block",
        l.record_bytes, l.nodes_per_block, l.sectors_per_block
    );
    println!(
        "sector file      {} bytes ({} blocks)",
        h.file_bytes(),
        l.blocks_for(h.n_slots)
    );
    println!("PQ               M = {} bytes per vector", h.pq_m);
    if l.nbr_code_m > 0 {
        println!(
            "neighbour codes  M₂ = {} bytes + f32 per list entry (format 2.x, pq_refine.bin)",
            l.nbr_code_m
        );
    }
    if l.f16_vectors {
        println!("vectors stored   as f16 (d × 2 bytes per record; format 2.x)");
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let termination = match h.near_error {
        Some(e) => format!(
            "early termination r = {:.3} (1 + max(1.5 × {:.3}, 0.15): PQ's error on near \
             pairs, measured by the build, applied at distances ≥ {:.4}; --termination-ratio \
             off: off)",
            ssdann_layout::near_error::termination_ratio(e.error),
            e.error,
            e.scale
        ),
        None if !h.metric.uses_l2() => "no early termination (inner product)".into(),
        None => "early termination from PQ's error on near pairs, measured at open (an index \
                 written before format minor 3, or too small to measure)"
            .into(),
    };
    println!(
        "search defaults  W = 4, dynamic beam + look-ahead rounds, busy polling {} µs while \
         searches ≤ {cores} cores (--busy-poll-us 0: off), {termination}",
        ssdann_engine::DEFAULT_BUSY_POLL_US
    );
    // The cross-checks FORMAT.md promises, from the files' headers and real sizes only.
    let mut problems = Vec::new();
    let len = f.metadata()?.len();
    if let Err(e) = h.check_file_len(&path, len) {
        problems.push(e.to_string());
    }
    use ssdann_layout::blob::read_blob_fields;
    use ssdann_layout::pq::{PQ_CODES_MAGIC, PQ_FILE_VERSION, PQ_PIVOTS_MAGIC};
    let expect = |name: &str, magic: &[u8; 8], version: u32, want: &[(&str, u64)]| {
        let p = dir.join(name);
        match read_blob_fields(&p, magic, version) {
            Ok((_, fields)) => want
                .iter()
                .enumerate()
                .filter(|(i, (_, v))| fields.get(*i) != Some(v))
                .map(|(i, (what, v))| {
                    format!(
                        "{}: {what} = {:?}, index.ssd has {v}",
                        p.display(),
                        fields.get(i)
                    )
                })
                .collect::<Vec<_>>(),
            Err(e) => vec![e.to_string()],
        }
    };
    problems.extend(expect(
        ssdann_layout::pq::PQ_PIVOTS_FILE,
        &PQ_PIVOTS_MAGIC,
        PQ_FILE_VERSION,
        &[("d", u64::from(h.dim)), ("M", u64::from(h.pq_m))],
    ));
    if l.nbr_code_m > 0 {
        problems.extend(expect(
            ssdann_layout::pq::PQ_REFINE_FILE,
            &PQ_PIVOTS_MAGIC,
            PQ_FILE_VERSION,
            &[("d", u64::from(h.dim)), ("M₂", l.nbr_code_m as u64)],
        ));
    }
    problems.extend(expect(
        ssdann_layout::pq::PQ_CODES_FILE,
        &PQ_CODES_MAGIC,
        PQ_FILE_VERSION,
        &[("n", h.n_slots), ("M", u64::from(h.pq_m))],
    ));
    problems.extend(expect(
        ssdann_layout::labels::LABELS_FILE,
        &ssdann_layout::labels::LABELS_MAGIC,
        ssdann_layout::labels::LABELS_VERSION,
        &[("n", h.n_slots)],
    ));
    if problems.is_empty() {
        println!(
            "files            consistent (sector file length, PQ pivots, PQ codes, labels{})",
            if l.nbr_code_m > 0 {
                ", residual codebook"
            } else {
                ""
            }
        );
        ram_at_open(&dir, h.n_slots);
    }
    for p in &problems {
        println!("PROBLEM          {p}");
    }
    let wal = dir.join(ssdann_engine::wal::WAL_FILE);
    if wal.exists() {
        match ssdann_engine::wal::check(&wal, h.dim as usize) {
            Ok(r) => println!(
                "updates          {} pending WAL records (inserts and deletes not merged yet)",
                r.ops.len()
            ),
            Err(e) => println!("updates          WAL unreadable: {e}"),
        }
    } else {
        println!("updates          none pending");
    }
    if dir.join(ssdann_engine::merge::JOURNAL_FILE).exists() {
        println!("merge            an interrupted merge journal is present; the next open finishes or discards it");
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "{}: the index files disagree ({} problem(s) above)",
            dir.display(),
            problems.len()
        );
    }
    Ok(())
}

/// Prints the RAM an open index holds, by structure (opens it read-only: the WAL is
/// replayed, nothing is written).
fn ram_at_open(dir: &std::path::Path, n: u64) {
    let opts = ssdann_engine::OpenOptions {
        read_only: true,
        ..Default::default()
    };
    match ssdann_engine::Index::open(dir, opts) {
        Ok(idx) => {
            let m = idx.memory_report();
            let mib = |b: usize| b as f64 / (1 << 20) as f64;
            let per = |b: usize| b as f64 / n.max(1) as f64;
            let labels = if m.labels_mapped_bytes == 0 {
                "0 B (identity: slot = label)".to_string()
            } else {
                format!(
                    "mapped from labels.bin ({:.1} MiB of file, {:.1} B/point, not held)",
                    mib(m.labels_mapped_bytes),
                    per(m.labels_mapped_bytes)
                )
            };
            println!(
                "RAM at open      {:.1} MiB: PQ codes {:.1} MiB ({:.1} B/point), labels {labels}, label map {:.1} MiB ({:.1} B/point, built on the first update), PQ pivots {:.2} MiB, pending updates {:.2} MiB",
                mib(m.total_bytes()),
                mib(m.pq_codes_bytes),
                per(m.pq_codes_bytes),
                mib(m.label_map_bytes),
                per(m.label_map_bytes),
                mib(m.pq_pivots_bytes),
                mib(m.pending_bytes),
            );
        }
        Err(e) => println!("RAM at open      not measured ({e})"),
    }
}

fn cmd_verify(dir: PathBuf) -> Result<bool> {
    let rep = ssdann_engine::verify(&dir)?;
    for p in &rep.problems {
        println!("PROBLEM: {p}");
    }
    if rep.problem_count as usize > rep.problems.len() {
        println!(
            "... and {} more problems",
            rep.problem_count as usize - rep.problems.len()
        );
    }
    for n in &rep.notes {
        println!("note: {n}");
    }
    if let Some(why) = &rep.needs_recovery {
        println!("NEEDS RECOVERY: {why}");
        println!("(run any read-write command, e.g. `ssdann merge --index {}`, to finish it; then verify again)", dir.display());
        return Ok(false);
    }
    if rep.ok() {
        println!("OK: {} blocks, {} nodes, {} edges; header slot {}; PQ files match; {} pending WAL records", rep.blocks_checked, rep.nodes_checked, rep.edges, rep.slot, rep.wal_records);
        Ok(true)
    } else {
        println!(
            "FAILED: {} problem(s) in {}",
            rep.problem_count,
            dir.display()
        );
        Ok(false)
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message
/// before it already contains (an OS error wrapped with its path would otherwise print
/// "No such file or directory (os error 2)" twice).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Sends the library's log records (recovery notes, I/O fallbacks, background fsync
/// failures: the `log` facade the engine writes to) to stderr as `warning: …` / `error: …`
/// lines, at level `warn` unless `SSDANN_LOG` says otherwise (`env_logger` filter syntax:
/// `info`, `debug`, `ssdann_engine=debug`, `off`). The `ssdann` binary and the Python module
/// call it once at start; a second call (a logger already set) does nothing.
pub fn init_logging() {
    use std::io::Write;
    let filter = std::env::var("SSDANN_LOG").unwrap_or_else(|_| "warn".to_string());
    let _already_set = env_logger::Builder::new()
        .parse_filters(&filter)
        .format(|buf, record| {
            let word = match record.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "note",
                log::Level::Debug | log::Level::Trace => "debug",
            };
            writeln!(buf, "{word}: {}", record.args())
        })
        .try_init();
}

/// Runs the `ssdann` command with `args` (the first is the program name, as in
/// `std::env::args_os()`) and returns its exit status: 0 success, 1 a check failed
/// (`verify` found problems), 2 an error (printed to stderr, as is a usage error; `--help`
/// and `--version` print to stdout and return 0).
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let res = match cli.cmd {
        Cmd::Build(a) => cmd_build(a).map(|_| true),
        Cmd::Info { dir } => cmd_info(dir).map(|_| true),
        Cmd::Verify { dir } => cmd_verify(dir),
        Cmd::Search(a) => search::cmd_search(a).map(|_| true),
        Cmd::Eval(a) => eval::cmd_eval(a).map(|_| true),
        Cmd::Gt(a) => gt::cmd_gt(a).map(|_| true),
        Cmd::Generate(a) => generate::cmd_generate(a).map(|_| true),
        Cmd::Demo(a) => demo::cmd_demo(a).map(|_| true),
        Cmd::Insert(a) => update::cmd_insert(a).map(|_| true),
        Cmd::Delete(a) => update::cmd_delete(a).map(|_| true),
        Cmd::Merge(a) => update::cmd_merge(a).map(|_| true),
        Cmd::Churn(a) => churn::cmd_churn(a).map(|_| true),
        Cmd::Plot { out, .. } => Err(anyhow::anyhow!(
            "plot {}: plots are drawn by the Python package's ssdann command (matplotlib): pip install './python[plot]', then run the same command line",
            out.display()
        )),
    };
    match res {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            2
        }
    }
}
