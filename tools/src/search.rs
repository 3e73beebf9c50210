//! `ssdann search`, and the flags and checks every query command shares (`eval`, `demo`,
//! `churn`).

use anyhow::{bail, Context, Result};
use ssdann_engine::{Index, IoBackend, Neighbor, OpenOptions, SearchParams, SearchStats};
use ssdann_layout::dataset::npy_bytes;
use ssdann_layout::labels::FREE_LABEL;
use ssdann_layout::{GroundTruth, VectorFile};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The engine's limits on k (`-k`: results are nq × k), L (`-L`: each search thread's
/// candidate list grows with L) and W (`-W`: each search thread holds W sector buffers and
/// an I/O ring of W entries).
pub use ssdann_engine::search::{MAX_K, MAX_L, MAX_W};

/// Checks k and W against [`MAX_K`] and [`MAX_W`] (and both against 0), before the index is
/// opened or anything is allocated for them.
///
/// # Errors
/// A message naming the flag, its value and the allowed range.
pub fn check_k_w(k: usize, w: usize) -> Result<()> {
    if k == 0 || k > MAX_K {
        bail!("-k {k}: must be in 1..={MAX_K}");
    }
    if w == 0 || w > MAX_W {
        bail!("-W {w}: must be in 1..={MAX_W}");
    }
    Ok(())
}

/// Checks a search list size L against k and [`MAX_L`].
///
/// # Errors
/// A message naming L, its value and the allowed range.
pub fn check_l(l: usize, k: usize) -> Result<()> {
    if l < k || l > MAX_L {
        bail!("-L {l}: must be in k..={MAX_L} (k = {k})");
    }
    Ok(())
}

pub(crate) fn parse_list(s: &str, what: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .with_context(|| format!("{what}: {x:?} is not a number"))
        })
        .collect()
}

/// Loads a query file as f32 rows (u8/i8 converted exactly).
pub(crate) fn load_queries(path: &Path, dim: usize) -> Result<(usize, Vec<f32>)> {
    let f = VectorFile::open(path)?;
    if f.dim() != dim {
        bail!(
            "{}: queries have d = {} but the index has d = {dim}",
            path.display(),
            f.dim()
        );
    }
    let mut q = vec![0f32; f.len() * dim];
    for (i, row) in q.chunks_exact_mut(dim).enumerate() {
        f.row_f32(i, row);
    }
    Ok((f.len(), q))
}

/// The parameters every searching command takes (`search`, `eval`; the same set as Rust
/// `SearchParams` + `OpenOptions`, Python `Index(...)` + `search` / `batch_search`, and
/// `ssdann.distributed.evaluate`): the beam width and early termination of each query, and
/// how the index is opened (cache, navigation graph, I/O). The search loop's own A/B levers
/// are hidden (benchmarks only).
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct SearchFlags {
    /// Beam width W (1..=1024): sectors read per round in one submission once the search
    /// has converged (the descent reads one per round).
    #[arg(short = 'W', default_value_t = 4)]
    pub w: usize,
    /// Early termination: stop once the closest unexpanded candidate's PQ distance exceeds
    /// R × the k-th best exact distance instead of expanding all L candidates: fewer reads
    /// at large L; too small an R caps recall. Default: the index's own R, 1 + max(1.5 ×
    /// PQ's error on near pairs, 0.15), measured by the build (`ssdann info` prints it);
    /// `off` (or `inf`): expand all L; a number ≥ 1 (l2/cosine indexes) overrides it.
    #[arg(long, value_name = "R|off", value_parser = parse_termination)]
    pub termination_ratio: Option<f32>,
    /// Nodes to keep in RAM (BFS from the entry point, or see --cache-samples).
    #[arg(long, default_value_t = 0)]
    pub cache_nodes: usize,
    /// RAM for the node cache in bytes (e.g. 2000000): as many whole sector records as it
    /// pays for, when more than --cache-nodes.
    #[arg(long, default_value_t = 0)]
    pub cache_bytes: u64,
    /// Choose the cached nodes by how often N sample searches at open expand them
    /// (DiskANN's cache from sample queries; samples = PQ reconstructions of evenly spaced
    /// points) instead of BFS from the entry point; 0 = BFS.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub cache_samples: usize,
    /// Navigation graph of entry points (searches start from its nodes nearest the query
    /// instead of the medoid). Default: the index's navigation.bin, written by the build
    /// (an index built before it gets one of 5% of its points built at open); 0 = none;
    /// N = N nodes built at open (an A/B lever).
    #[arg(long, value_name = "N")]
    pub nav_nodes: Option<usize>,
    /// I/O backend: io_uring or pread.
    #[arg(long, default_value = "io_uring")]
    pub io: IoBackend,
    /// Check each sector's CRC32 on read.
    #[arg(long)]
    pub verify_reads: bool,
    /// Busy-poll read completions for up to US µs per wait before sleeping (io_uring only;
    /// 0 = off, at most 10000): saves waking the thread after each read (costly on a VM).
    /// A wait spins only while no more searches run than the machine has cores.
    #[arg(long, value_name = "US", default_value_t = ssdann_engine::DEFAULT_BUSY_POLL_US)]
    pub busy_poll_us: u32,
    /// Benchmark lever: do not expand co-located nodes of fetched sectors (DiskANN's
    /// behaviour).
    #[arg(long, hide = true)]
    pub no_sector_reuse: bool,
    /// Benchmark lever: W reads from the first round (no dynamic beam).
    #[arg(long, hide = true)]
    pub no_dynamic_beam: bool,
    /// Benchmark lever: no look-ahead rounds.
    #[arg(long, hide = true)]
    pub no_look_ahead: bool,
}

impl SearchFlags {
    /// The options to open the index with (read-only).
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            cache_nodes: self.cache_nodes,
            cache_bytes: self.cache_bytes,
            cache_policy: if self.cache_samples > 0 {
                ssdann_engine::CachePolicy::SampleVisits {
                    samples: self.cache_samples,
                }
            } else {
                ssdann_engine::CachePolicy::Bfs
            },
            navigation_nodes: self.nav_nodes,
            io: self.io,
            verify_reads: self.verify_reads,
            max_beam_width: self.w.max(16),
            sector_reuse: !self.no_sector_reuse,
            dynamic_beam: !self.no_dynamic_beam,
            look_ahead: !self.no_look_ahead,
            busy_poll_us: self.busy_poll_us,
            read_only: true,
            ..Default::default()
        }
    }

    /// The per-query parameters at list size `l`.
    pub fn params(&self, l: usize) -> SearchParams {
        SearchParams {
            termination_ratio: self.termination_ratio,
            ..SearchParams::new(l, self.w)
        }
    }

    /// The flags as JSON (for `eval --json`).
    pub fn json(&self) -> serde_json::Value {
        let termination = match self.termination_ratio {
            None => serde_json::json!("index"),
            Some(r) if r.is_infinite() => serde_json::json!("off"),
            Some(r) => serde_json::json!(r),
        };
        serde_json::json!({"W": self.w, "termination_ratio": termination,
            "cache_samples": self.cache_samples, "nav_nodes": self.nav_nodes,
            "busy_poll_us": self.busy_poll_us, "sector_reuse": !self.no_sector_reuse,
            "dynamic_beam": !self.no_dynamic_beam, "look_ahead": !self.no_look_ahead})
    }
}

/// `--termination-ratio`: `off` / `inf` (∞: never stop early) or a number ≥ 1.
fn parse_termination(s: &str) -> Result<f32, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(f32::INFINITY);
    }
    match s.parse::<f32>() {
        Ok(r) if r >= 1.0 => Ok(r),
        _ => Err(format!("`{s}`: expected a ratio ≥ 1, or `off`")),
    }
}

impl Default for SearchFlags {
    fn default() -> Self {
        SearchFlags {
            w: 4,
            termination_ratio: None,
            cache_nodes: 0,
            cache_bytes: 0,
            cache_samples: 0,
            nav_nodes: None,
            io: IoBackend::IoUring,
            verify_reads: false,
            busy_poll_us: ssdann_engine::DEFAULT_BUSY_POLL_US,
            no_sector_reuse: false,
            no_dynamic_beam: false,
            no_look_ahead: false,
        }
    }
}

#[derive(clap::Args)]
pub struct SearchArgs {
    /// Index directory.
    #[arg(long)]
    index: PathBuf,
    /// Query vectors (same d as the index).
    #[arg(long)]
    queries: PathBuf,
    /// Neighbours per query (1..=10000).
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// Search list size L (k..=100000): larger = better recall, more reads.
    #[arg(short = 'L', default_value_t = 100)]
    l: usize,
    /// Output file, by extension: .ibin (big-ann-benchmarks: u32 nq, u32 k, nq × k u32
    /// labels, nq × k f32 distances; refused if a label is ≥ 2^32 − 1), .u64bin (the same
    /// with u64 labels), or .npy (an nq × k uint64 array of labels, with the nq × k float32
    /// distances beside it in NAME.distances.npy). A missing result is label 2^32 − 1
    /// (.ibin) or 2^64 − 1 (.u64bin, .npy) with distance +inf.
    #[arg(long)]
    out: PathBuf,
    /// Search threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    search: SearchFlags,
}

pub fn cmd_search(a: SearchArgs) -> Result<()> {
    check_k_w(a.k, a.search.w)?;
    check_l(a.l, a.k)?;
    let index = Index::open(&a.index, a.search.open_options())?;
    let (nq, q) = load_queries(&a.queries, index.dim())?;
    let t = Instant::now();
    let res = index.batch_search(&q, a.k, &a.search.params(a.l), a.threads)?;
    let secs = t.elapsed().as_secs_f64();
    write_results(&a.out, a.k, &res)?;
    let reads: f64 = res.iter().map(|r| f64::from(r.1.sector_reads)).sum::<f64>() / nq as f64;
    println!(
        "searched {nq} queries in {secs:.2} s ({:.0} QPS), {reads:.1} sector reads/query; wrote {}",
        nq as f64 / secs,
        a.out.display()
    );
    Ok(())
}

/// Writes `search --out`: nq × k labels and distances, the id width chosen by the
/// extension (see [`SearchArgs`]'s `--out`). The file is written only once every label is
/// known to fit.
///
/// # Errors
/// A label that does not fit .ibin's u32 ids (or equals its missing-result marker
/// `u32::MAX`), named with its query row and rank; an I/O error naming the file.
fn write_results(path: &Path, k: usize, res: &[(Vec<Neighbor>, SearchStats)]) -> Result<()> {
    let nq = res.len();
    let cell = |q: usize, j: usize| res[q].0.get(j);
    let distances = (0..nq).flat_map(|q| (0..k).map(move |j| (q, j)));
    let distances: Vec<f32> = distances
        .map(|(q, j)| cell(q, j).map_or(f32::INFINITY, |h| h.distance))
        .collect();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(ext, "ibin" | "u64bin" | "npy") {
        bail!(
            "{}: unknown output extension {ext:?} (use .ibin for u32 labels, .u64bin or .npy for u64 labels)",
            path.display()
        );
    }
    if ext == "npy" {
        let ids: Vec<u8> = (0..nq)
            .flat_map(|q| (0..k).map(move |j| (q, j)))
            .flat_map(|(q, j)| cell(q, j).map_or(FREE_LABEL, |h| h.id).to_le_bytes())
            .collect();
        let dist: Vec<u8> = distances.iter().flat_map(|x| x.to_le_bytes()).collect();
        let dpath = path.with_extension("distances.npy");
        for (p, bytes) in [
            (path.to_path_buf(), npy_bytes("<u8", nq, k, &ids)),
            (dpath, npy_bytes("<f4", nq, k, &dist)),
        ] {
            std::fs::write(&p, bytes).with_context(|| format!("{}: cannot write", p.display()))?;
        }
        return Ok(());
    }
    if ext == "u64bin" {
        let mut b = Vec::with_capacity(8 + nq * k * 12);
        b.extend_from_slice(&u32::try_from(nq)?.to_le_bytes());
        b.extend_from_slice(&u32::try_from(k)?.to_le_bytes());
        for q in 0..nq {
            for j in 0..k {
                b.extend_from_slice(&cell(q, j).map_or(FREE_LABEL, |h| h.id).to_le_bytes());
            }
        }
        distances
            .iter()
            .for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        let mut f = std::fs::File::create(path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        f.write_all(&b)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        return Ok(());
    }
    let mut ids = Vec::with_capacity(nq * k);
    for q in 0..nq {
        for j in 0..k {
            let id = match cell(q, j) {
                None => u32::MAX,
                Some(h) => match u32::try_from(h.id) {
                    Ok(id) if id != u32::MAX => id,
                    _ => bail!(
                        "query row {q}, rank {j}: label {} does not fit the u32 ids of {} \
                         (.ibin holds labels up to {}; {} marks a missing result); write to a \
                         .u64bin file for 64-bit labels",
                        h.id,
                        path.display(),
                        u32::MAX - 1,
                        u32::MAX
                    ),
                },
            };
            ids.push(id);
        }
    }
    GroundTruth {
        nq,
        k,
        ids,
        distances,
    }
    .write(path)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use super::*;

    /// `SearchFlags::default()` (the demo's, and any caller's without a command line) is
    /// exactly what the flags give when none is passed.
    #[test]
    fn search_flags_default_is_the_command_lines_default() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cmd {
            #[command(flatten)]
            f: SearchFlags,
        }
        assert_eq!(Cmd::parse_from(["ssdann"]).f, SearchFlags::default());
        assert_eq!(
            SearchFlags::default().open_options().busy_poll_us,
            ssdann_engine::DEFAULT_BUSY_POLL_US
        );
    }

    /// A result with label `id` (distance 1.5), for the tests of this module and eval's.
    pub(crate) fn nb(id: u64) -> Neighbor {
        Neighbor { id, distance: 1.5 }
    }

    #[test]
    fn ibin_output_refuses_a_label_that_does_not_fit_and_u64bin_keeps_it() {
        let tmp = tempfile::tempdir().unwrap();
        let big = (1u64 << 32) + 3;
        let res = vec![
            (vec![nb(1), nb(2)], SearchStats::default()),
            (vec![nb(4), nb(big)], SearchStats::default()),
        ];
        let ibin = tmp.path().join("r.ibin");
        let err = format!("{:#}", write_results(&ibin, 2, &res).unwrap_err());
        assert!(
            err.contains("query row 1, rank 1: label 4294967299")
                && err.contains("r.ibin")
                && err.contains(".u64bin"),
            "{err}"
        );
        assert!(!ibin.exists(), "a refused result file was written");
        // u32::MAX itself is the missing-result marker of .ibin
        let edge = vec![(vec![nb(u64::from(u32::MAX))], SearchStats::default())];
        assert!(write_results(&ibin, 1, &edge).is_err());
        // labels that fit: the same bytes as before
        let small = vec![(vec![nb(1)], SearchStats::default())];
        write_results(&ibin, 2, &small).unwrap();
        let gt = GroundTruth::read(&ibin).unwrap();
        assert_eq!(gt.ids, [1, u32::MAX]);
        assert_eq!(gt.distances, [1.5, f32::INFINITY]);

        let u64bin = tmp.path().join("r.u64bin");
        let mut short = res.clone();
        short[0].0.pop();
        write_results(&u64bin, 2, &short).unwrap();
        let b = std::fs::read(&u64bin).unwrap();
        assert_eq!(b.len(), 8 + 4 * 8 + 4 * 4);
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!((u32_at(0), u32_at(4)), (2, 2));
        let ids: Vec<u64> = (0..4).map(|i| u64_at(8 + 8 * i)).collect();
        assert_eq!(ids, [1, FREE_LABEL, 4, big]);
        let d: Vec<f32> = (0..4).map(|i| f32::from_bits(u32_at(40 + 4 * i))).collect();
        assert_eq!(d, [1.5, f32::INFINITY, 1.5, 1.5]);
    }

    #[test]
    fn npy_output_is_a_u64_label_array_with_the_distances_beside_it_and_other_extensions_are_refused(
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let big = (1u64 << 40) + 1;
        let res = vec![
            (vec![nb(3), nb(big)], SearchStats::default()),
            (vec![nb(9)], SearchStats::default()),
        ];
        let p = tmp.path().join("r.npy");
        write_results(&p, 2, &res).unwrap();
        let b = std::fs::read(&p).unwrap();
        let header_len = u16::from_le_bytes([b[8], b[9]]) as usize;
        let header = std::str::from_utf8(&b[10..10 + header_len]).unwrap();
        assert!(
            header.contains("'descr': '<u8'") && header.contains("(2, 2)"),
            "{header}"
        );
        let ids: Vec<u64> = b[10 + header_len..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(ids, [3, big, 9, FREE_LABEL]);
        let d = VectorFile::open(tmp.path().join("r.distances.npy")).unwrap();
        assert_eq!(
            &*d.contiguous::<f32>().unwrap(),
            &[1.5, 1.5, 1.5, f32::INFINITY]
        );
        let txt = tmp.path().join("r.txt");
        let err = format!("{:#}", write_results(&txt, 2, &res).unwrap_err());
        assert!(err.contains("unknown output extension \"txt\""), "{err}");
        assert!(!txt.exists());
    }

    #[test]
    fn limits_are_checked_and_named() {
        let msg = |r: Result<()>| format!("{:#}", r.unwrap_err());
        assert_eq!(msg(check_k_w(0, 4)), "-k 0: must be in 1..=10000");
        assert_eq!(
            msg(check_k_w(1_000_000_000, 4)),
            "-k 1000000000: must be in 1..=10000"
        );
        assert_eq!(msg(check_k_w(10, 0)), "-W 0: must be in 1..=1024");
        assert_eq!(
            msg(check_k_w(10, MAX_W + 1)),
            "-W 1025: must be in 1..=1024"
        );
        assert_eq!(msg(check_l(5, 10)), "-L 5: must be in k..=100000 (k = 10)");
        assert_eq!(
            msg(check_l(MAX_L + 1, 10)),
            "-L 100001: must be in k..=100000 (k = 10)"
        );
        check_k_w(MAX_K, MAX_W).unwrap();
        check_l(MAX_L, MAX_K).unwrap();
    }
}
