//! `ssdann build` (the whole build in one process): its flags ([`BuildArgs`], which
//! `build plan` shares), the [`BuildParams`] they give, and the build with its report.

use crate::progress;
use anyhow::Result;
use ssdann_builder::build::{check_output, ExistingOutput};
use ssdann_builder::{build_index, BuildParams};
use ssdann_layout::Metric;
use std::path::PathBuf;

#[cfg(test)]
mod tests {
    #[test]
    fn neighbor_codes_that_cost_most_of_a_sector_get_a_note() {
        use ssdann_layout::ElementType::{F32, U8};
        // 128-d u8, R 64: 10 records a sector without codes, 1 with M₂ = 48
        let note = super::neighbor_code_note(128, U8, 64, 48, false).unwrap();
        assert!(note.contains("hold 10 records, with them 1"), "{note}");
        assert!(note.contains("10.0× larger"), "{note}");
        // 384-d f32 and f16 (2 and 3 records a sector without codes): no note
        assert_eq!(super::neighbor_code_note(384, F32, 64, 48, false), None);
        assert_eq!(super::neighbor_code_note(384, F32, 64, 43, true), None);
        // 96-d f32 at R 32: 7 a sector without codes, 1 with M₂ = 48
        let f32_96 = super::neighbor_code_note(96, F32, 32, 48, false).unwrap();
        assert!(f32_96.contains("hold 7 records, with them 1"), "{f32_96}");
    }
}

#[derive(clap::Args)]
pub(crate) struct BuildArgs {
    /// Vector file to index (n × d; f32, u8 or i8).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Output index directory (must not exist unless --force).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Distance: l2 (squared Euclidean), ip (inner product), cosine (f32 only).
    #[arg(long, default_value = "l2")]
    pub(crate) metric: Metric,
    /// Maximum graph degree R: more edges, better recall, bigger records.
    #[arg(short = 'R', long = "max-degree", default_value_t = 64)]
    pub(crate) r: usize,
    /// Build search list size L (≥ R): larger is slower to build and gives a better graph.
    #[arg(short = 'L', long = "build-l", default_value_t = 100)]
    pub(crate) l: usize,
    /// RobustPrune α of the second pass (≥ 1): larger keeps longer edges (fewer hops).
    #[arg(long, default_value_t = 1.2)]
    pub(crate) alpha: f32,
    /// PQ bytes per vector (subspaces M, 1..=d): the RAM an open index holds per point, and
    /// how well searches rank candidates before reading them (more bytes, fewer reads).
    /// Default: 1/8 of the raw vector bytes and at least d/4 — d/2 for f32, d/4 for u8/i8
    /// (e.g. 192 for 384-d f32, 32 for 128-d u8; docs/PERFORMANCE.md, "Default PQ bytes").
    #[arg(long)]
    pub(crate) pq_bytes: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Replace the output directory if it exists and is an ssdann index directory (an
    /// index.ssd with the header magic and only index files) or an empty directory. Anything
    /// else is refused, never deleted.
    #[arg(long)]
    pub(crate) force: bool,
    /// Hide progress bars.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Keep ids in input order instead of grouping graph neighbours into the same sector.
    #[arg(long)]
    pub(crate) no_reorder: bool,
    /// Precision of the RAM copy the graph is built on, for f32 data: f16 (half the memory
    /// traffic, default) or f32. The index always stores the exact input values.
    #[arg(long, default_value = "f16")]
    pub(crate) graph_precision: ssdann_builder::GraphPrecision,
    /// RAM the build may use, in GiB (e.g. 0.5). When the one-shot build would need more,
    /// the build is partitioned (DiskANN §4.3): k-means partitions sized to fit, each point
    /// in its 2 nearest, one Vamana graph per partition, merged and pruned to R. Its stages
    /// are kept in .OUT.partitioned/ beside the output until the index is complete.
    #[arg(long, value_name = "GiB")]
    pub(crate) memory_budget: Option<f64>,
    /// Vamana passes: 2 (α = 1, then --alpha; DiskANN's Algorithm 3) or 1 (the --alpha pass
    /// only, DiskANN's current schedule: 70–80% of the default build's time; recall at equal
    /// L within ±0.01 of two passes on the measured sets — docs/PERFORMANCE.md).
    #[arg(long, default_value_t = 2)]
    pub(crate) passes: usize,
    /// Continue an interrupted --memory-budget build from its last finished stage (the
    /// input and every parameter must be the same; otherwise it says which differs).
    #[arg(long, requires = "memory_budget")]
    pub(crate) resume: bool,
    /// Store each neighbour's residual PQ code in the node records (format 2): searches rank
    /// candidates about as well as with PQ codes of M + M₂ bytes while RAM still holds M
    /// bytes per point, so they read fewer sectors; records grow to one per 4 KB sector
    /// (M₂ = the most that fits, at most M). They pay where a record already fills most of a
    /// sector (384-d f32: 0.49× DiskANN's reads); where several records share one (128-d u8:
    /// ten) they only make the index larger. Inserts, deletes and merges maintain them
    /// (a merge writes the codes of every list it writes).
    #[arg(long)]
    pub(crate) neighbor_codes: bool,
    /// How records store f32 vectors: f32 (exact) or f16 (half the bytes: more records per
    /// sector, or longer neighbour codes; searches rank by the f16 vector's distance, ≤ 2⁻¹¹
    /// relative error per coordinate). Format 2; merges write f16 records. Default: f16
    /// where the builder chooses neighbour codes (see --max-index-growth), else exact.
    #[arg(long, value_parser = ["f32", "f16"])]
    pub(crate) vector_encoding: Option<String>,
    /// The disk-bytes ↔ reads trade: the builder stores neighbour codes (with f16 vectors
    /// for f32 data) when the index then takes at most this many times the bytes per point
    /// of plain records. 384-d f32, R = 64: growth 2 (two records a sector → one), chosen by
    /// the default, ~0.7× the reads at recall 0.95; 128-d u8: growth 10, not chosen. 1 =
    /// only where they cost no disk. `ssdann info` shows the choice. A --memory-budget build
    /// chooses alike, and writes plain records when the codes do not fit its budget (it
    /// says so).
    #[arg(long, default_value_t = ssdann_builder::params::DEFAULT_MAX_INDEX_GROWTH)]
    pub(crate) max_index_growth: f64,
    /// Do not saturate the graph. By default every node's list is filled up to R with the
    /// candidates RobustPrune's α rule dropped, closest first (DiskANN's saturate_graph): a
    /// record holds R neighbours whatever its degree, so the index does not grow and each
    /// read yields more candidates (0.78× the reads at recall 0.95 on a 128-d u8 set whose
    /// mean degree was 28; 0.93–0.97× on 384-d f32), each expansion costs more ADC, and
    /// the build's second pass ~10–60% more time. Kept by the budgeted build and by merges;
    /// the header records it. Needs α > 1 (the lists α = 1 leaves are not filled)
    #[arg(long)]
    pub(crate) no_saturate_graph: bool,
    /// The default (kept so that older scripts run): the graph is saturated.
    #[arg(long, hide = true, conflicts_with = "no_saturate_graph")]
    pub(crate) saturate_graph: bool,
}

pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub(crate) fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// The build parameters `a` gives.
pub(crate) fn build_params(a: &BuildArgs) -> Result<BuildParams> {
    Ok(BuildParams {
        metric: a.metric,
        max_degree: a.r,
        build_l: a.l,
        alpha: a.alpha,
        pq_bytes: a.pq_bytes,
        threads: a.threads,
        force: a.force,
        reorder: !a.no_reorder,
        graph_precision: a.graph_precision,
        memory_budget_bytes: a.memory_budget.map(budget_bytes).transpose()?,
        resume: a.resume,
        passes: a.passes,
        neighbor_codes: a.neighbor_codes,
        f16_vectors: a.vector_encoding.as_deref().map(|e| e == "f16"),
        max_index_growth: a.max_index_growth,
        saturate_graph: !a.no_saturate_graph,
        ..Default::default()
    })
}

pub(crate) fn cmd_build_all(a: BuildArgs) -> Result<()> {
    let params = build_params(&a)?;
    // The builder checks again before it swaps; this check is for the message (and fails
    // fast, before the data is read).
    if check_output(&a.out, a.force)? == ExistingOutput::Index {
        println!("replacing the existing index in {}", a.out.display());
    }
    let bars = progress::Bars::new(a.quiet);
    let t = std::time::Instant::now();
    let rep = build_index(&a.data, &a.out, &params, &bars)?;
    let total = t.elapsed();
    println!(
        "built {} ({} × {} {}, metric {}, R = {}, L = {}, α = {}, PQ M = {})",
        a.out.display(),
        rep.n,
        rep.dim,
        rep.element,
        a.metric,
        a.r,
        a.l,
        a.alpha,
        rep.pq_m
    );
    if rep.nbr_code_m > 0 {
        println!(
            "  neighbour codes: M₂ = {} bytes + an f32 term per list entry in each record (format 2){}",
            rep.nbr_code_m,
            if rep.f16_vectors { "; f16 vectors" } else { "" }
        );
        let f16 = rep.f16_vectors;
        if let Some(note) = neighbor_code_note(rep.dim, rep.element, a.r, rep.nbr_code_m, f16) {
            println!("  note: {note}");
        }
    }
    for (phase, d) in &rep.phases {
        println!("  {:<22} {:>9.2} s", phase.name(), d.as_secs_f64());
    }
    println!("  {:<22} {:>9.2} s", "total", total.as_secs_f64());
    println!("  mean degree            {:>9.1}", rep.mean_degree);
    println!("  index on disk          {:>12}", mib(rep.index_bytes));
    println!("  engine RAM (PQ)        {:>12}", mib(rep.engine_ram_bytes));
    if rep.partitions > 1 || a.memory_budget.is_some() {
        println!("  partitions             {:>9}", rep.partitions);
    }
    for (phase, peak) in &rep.peak_rss_by_stage {
        println!("  peak RSS after {:<22} {:>12}", phase.name(), mib(*peak));
    }
    println!(
        "  RAM estimate of build  {:>12}",
        mib(rep.memory_estimate_bytes)
    );
    if let Some(rss) = peak_rss_bytes() {
        println!("  peak RSS of build      {:>12}", mib(rss));
    }
    Ok(())
}

/// What `--neighbor-codes` costs in records per 4 KB sector, when it costs much: `Some` when
/// the records without codes would share a sector four or more to one (measured on 128-d
/// u8, ten to one: the codes made the index 9× larger and read no fewer sectors at equal
/// recall; docs/PERFORMANCE.md, "Another dtype and shape").
fn neighbor_code_note(
    dim: usize,
    element: ssdann_layout::ElementType,
    r: usize,
    nbr_code_m: usize,
    f16: bool,
) -> Option<String> {
    use ssdann_layout::sector::NodeLayout;
    let per_block = |m| {
        NodeLayout::with_encoding(dim, element, r, m, f16)
            .ok()
            .map(|l| (l.nodes_per_block, l.sectors_per_block))
    };
    let (plain, _) = per_block(0)?;
    let (coded, coded_sectors) = per_block(nbr_code_m)?;
    (plain >= 4 && coded * 4 <= plain).then(|| {
        format!(
            "without neighbour codes a 4 KB sector would hold {plain} records, with them {coded} \
             (the index {:.1}× larger); they pay where records already fill most of a sector \
             (384-d f32), and read no fewer sectors at equal recall on 128-d u8 \
             (docs/PERFORMANCE.md)",
            (plain * coded_sectors) as f64 / coded as f64
        )
    })
}

/// `--memory-budget` GiB → bytes.
fn budget_bytes(gib: f64) -> Result<u64> {
    if !(gib.is_finite() && gib > 0.0 && gib <= 1e6) {
        anyhow::bail!("invalid --memory-budget {gib}: must be a number of GiB in (0, 1000000]");
    }
    Ok((gib * (1u64 << 30) as f64) as u64)
}
