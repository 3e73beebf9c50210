//! `ssdann build plan | partition | merge | write | status`: the memory-budgeted build run
//! one stage at a time, each stage its own process — so a scheduler (a Slurm array, a
//! Kubernetes Job, Ray) can run the partition jobs on many machines that share the work
//! directory's filesystem. Same files and resume rules as `ssdann build --memory-budget`.

use crate::build::{build_params, mib, BuildArgs};
use crate::progress;
use anyhow::Result;
use ssdann_builder::partitioned::{plan_partitioned, plan_status, run_stage, Stage, StageReport};
use std::path::PathBuf;

/// A stage of the memory-budgeted build run on its own.
#[derive(clap::Subcommand)]
pub(crate) enum BuildStage {
    /// Stage 1: train PQ, encode every point, cut the k-means partitions (--memory-budget
    /// sizes them). Records the input and every parameter in .OUT.partitioned/MANIFEST and
    /// prints the number of partitions N; then run `build partition --part I` for every I
    /// in 0..N, in any order, on any machines that see that directory at the same path.
    Plan(BuildArgs),
    /// Stage 2: build the Vamana graph of partition I (the plan gives the input and the
    /// parameters). Partition jobs run side by side; one already built is skipped, so a
    /// job that died is simply run again.
    Partition {
        /// The output index directory given to `build plan`.
        #[arg(long)]
        out: PathBuf,
        /// The partition, 0..N (e.g. $SLURM_ARRAY_TASK_ID).
        #[arg(long)]
        part: usize,
        #[command(flatten)]
        run: StageRun,
    },
    /// Stage 3: merge the partition graphs into one (every partition must be built).
    Merge {
        /// The output index directory given to `build plan`.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        run: StageRun,
    },
    /// Stage 4: write the index (sector file, PQ codes, labels) into OUT and remove the
    /// work directory.
    Write {
        /// The output index directory given to `build plan`.
        #[arg(long)]
        out: PathBuf,
        /// Replace OUT if it is an ssdann index directory or empty (as `build --force`).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        run: StageRun,
    },
    /// Print a plan's progress: which partitions are built, whether the merge is done.
    Status {
        /// The output index directory given to `build plan`.
        #[arg(long)]
        out: PathBuf,
        /// Print only the number of partitions N (for scripts: `--array=0-$((N-1))`).
        #[arg(long)]
        count: bool,
    },
}

/// Options of a stage run after the plan.
#[derive(clap::Args)]
pub(crate) struct StageRun {
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Hide progress bars.
    #[arg(long, short)]
    quiet: bool,
}

pub(crate) fn cmd_stage(stage: BuildStage) -> Result<()> {
    let (out, stage, run, force) = match stage {
        BuildStage::Plan(a) => return cmd_plan(a),
        BuildStage::Status { out, count } => return cmd_status(out, count),
        BuildStage::Partition { out, part, run } => (out, Stage::Partition(part), run, false),
        BuildStage::Merge { out, run } => (out, Stage::Merge, run, false),
        BuildStage::Write { out, force, run } => (out, Stage::Write, run, force),
    };
    let bars = progress::Bars::new(run.quiet);
    let rep = run_stage(&out, stage, run.threads, force, &bars)?;
    print_report(&rep);
    if let Some(b) = &rep.build {
        println!(
            "built {} ({} × {} {}, PQ M = {}, {} partitions, mean degree {:.1}, {} on disk)",
            out.display(),
            b.n,
            b.dim,
            b.element,
            b.pq_m,
            b.partitions,
            b.mean_degree,
            mib(b.index_bytes)
        );
    }
    Ok(())
}

fn print_report(rep: &StageReport) {
    let what = match (rep.stage, rep.points) {
        (Stage::Partition(p), Some(n)) => {
            format!("partition {p} of {} ({n} points)", rep.partitions)
        }
        (s, _) => s.to_string(),
    };
    if rep.ran {
        println!(
            "{what}: done in {:.2} s, peak RSS {}",
            rep.seconds,
            mib(rep.peak_rss_bytes)
        );
    } else {
        println!("{what}: already done (nothing to do)");
    }
}

fn cmd_plan(a: BuildArgs) -> Result<()> {
    if a.memory_budget.is_none() {
        anyhow::bail!("build plan needs --memory-budget GiB: it sizes the partitions");
    }
    let out = a.out.clone();
    let params = build_params(&a)?;
    let bars = progress::Bars::new(a.quiet);
    let rep = plan_partitioned(&a.data, &a.out, &params, &bars)?;
    print_report(&rep);
    let o = out.display();
    println!(
        "planned {} partitions in {}\nnext: `ssdann build partition --out {o} --part I` for I in 0..{} \
         (any order, on machines that see both paths), then `ssdann build merge --out {o}` and \
         `ssdann build write --out {o}`",
        rep.partitions,
        rep.work_dir.display(),
        rep.partitions
    );
    Ok(())
}

fn cmd_status(out: PathBuf, count: bool) -> Result<()> {
    let s = plan_status(&out)?;
    if count {
        println!("{}", s.partitions);
        return Ok(());
    }
    let p = &s.plan.params;
    println!("plan in {}", s.plan.work_dir.display());
    println!("  data        {}", s.plan.data.display());
    println!(
        "  parameters  metric {:?}, R = {}, L = {}, α = {}, PQ M = {}, passes {}, budget {}",
        p.metric,
        p.max_degree,
        p.build_l,
        p.alpha,
        p.pq_bytes.unwrap_or(0),
        p.passes,
        mib(s.plan.budget)
    );
    let todo: Vec<String> = (0..s.partitions)
        .filter(|q| !s.graphs_done.contains(q))
        .map(|q| q.to_string())
        .collect();
    println!(
        "  partitions  {} built of {}{}",
        s.graphs_done.len(),
        s.partitions,
        if todo.is_empty() {
            String::new()
        } else {
            format!("; to build: {}", todo.join(" "))
        }
    );
    if let (Some(lo), Some(hi)) = (s.sizes.iter().min(), s.sizes.iter().max()) {
        println!("  sizes       {lo}..{hi} points per partition");
    }
    println!(
        "  merge       {}",
        if s.merged { "done" } else { "not done" }
    );
    Ok(())
}
