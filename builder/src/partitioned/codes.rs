//! The record layout of the budgeted build's write stage (issue 28): the same choice as the
//! one-shot build's (`refine::record_layout` — neighbour codes, with f16 vectors for f32
//! data, where the index grows by at most `max_index_growth`), made from the input file
//! row by row, and the neighbour codes of every row trained and encoded within the budget.
//!
//! Memory at the write stage: the PQ codes (n × M), the neighbour codes (n × (M₂ + 4), twice
//! when the sector order permutes them) and the residual sample (≤ 64 Ki × d f32, smaller
//! when the budget asks). Where that does not fit, the default falls back to plain records
//! and says so; an explicit `--neighbor-codes` is refused, naming the budget.

use super::budget::FIXED_BYTES;
use super::rows::{Access, Rows};
use crate::params::BuildParams;
use crate::progress::Progress;
use crate::refine::{candidate_layouts, train_and_encode_rows, RefineSample, Refinement};
use crate::BuildError;
use rayon::prelude::*;
use ssdann_layout::sector::F16_MAX;
use ssdann_layout::{ElementType, NodeLayout, PqCodebook};
use std::path::Path;

/// Fewest points the residual codebook trains on: below this the budget is too small for
/// neighbour codes (256 centroids per subspace need a few samples each).
const MIN_REFINE_SAMPLE: usize = 4096;

/// The write stage's record layout and, for a coded one, the residual codebook and every
/// row's neighbour code (by input row).
pub(crate) struct StageLayout {
    pub(crate) layout: NodeLayout,
    pub(crate) refine: Option<Refinement>,
}

/// The first (row, coordinate, value) of `rows` beyond f16's finite range, if any (one
/// sequential pass).
fn beyond_f16(rows: &Rows<'_>, n: usize) -> Result<Option<(usize, usize, f32)>, BuildError> {
    let dim = rows.dim;
    (0..n)
        .into_par_iter()
        .with_min_len(1024)
        .map_init(
            || vec![0f32; dim],
            |x, i| -> Result<Option<(usize, usize, f32)>, BuildError> {
                rows.stored(i, x, Access::Sequential)?;
                Ok(x.iter()
                    .position(|v| v.abs() > F16_MAX)
                    .map(|j| (i, j, x[j])))
            },
        )
        .try_reduce(
            || None,
            |a, b| {
                Ok(match (a, b) {
                    (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
                    (a, b) => a.or(b),
                })
            },
        )
}

/// The layout the parameters and the data's shape ask for, before any pass over the data:
/// with `--neighbor-codes` or f16 asked for, that layout (refused when no code fits);
/// otherwise the choice by `max_index_growth` (None: plain records).
fn wanted_layout(
    params: &BuildParams,
    dim: usize,
    elem: ElementType,
    m: usize,
    f16: bool,
) -> Result<Option<NodeLayout>, BuildError> {
    let r = params.max_degree;
    let f16_asked = params.f16_vectors == Some(true);
    if params.neighbor_codes || f16_asked {
        let forced = BuildParams {
            max_index_growth: 64.0,
            ..params.clone()
        };
        let coded = candidate_layouts(&forced, dim, elem, m, f16)?.1;
        return match coded {
            Some(l) if params.neighbor_codes => Ok(Some(l)),
            // f16 asked for without codes
            _ if !params.neighbor_codes => {
                Ok(Some(NodeLayout::with_encoding(dim, elem, r, 0, true)?))
            }
            _ => Err(BuildError::param(
                "--neighbor-codes",
                true,
                crate::refine::no_codes_fit(dim, r, m),
            )),
        };
    }
    Ok(candidate_layouts(params, dim, elem, m, f16)?.1)
}

/// Points the residual codebook may train on at the write stage under `budget` bytes, for
/// n rows of `dim` values, PQ M = `m`, and `layout`'s neighbour codes (held twice when
/// `permuted`); `Err` says why none fit (fewer than [`MIN_REFINE_SAMPLE`]).
fn refine_sample(
    n: usize,
    dim: usize,
    m: usize,
    layout: &NodeLayout,
    budget: u64,
    permuted: bool,
) -> Result<usize, String> {
    // Memory: the PQ codes, the neighbour codes (a permuted copy too), the residual sample.
    let cb = layout.nbr_code_bytes() as u64;
    let held = n as u64 * (m as u64 + cb * if permuted { 2 } else { 1 });
    // the sample's residuals (d f32 a point) and k-means' work on them (as much again)
    let room = budget.saturating_sub(FIXED_BYTES).saturating_sub(held);
    let sample =
        ((room / (dim as u64 * 4 * 2)) as usize).min(crate::refine::REFINE_TRAINING_SAMPLE);
    if sample < MIN_REFINE_SAMPLE.min(n) {
        let need = FIXED_BYTES + held + MIN_REFINE_SAMPLE as u64 * dim as u64 * 8;
        return Err(format!(
            "neighbour codes need about {} MiB at the write stage, the budget is {} MiB",
            need >> 20,
            budget >> 20
        ));
    }
    Ok(sample)
}

/// Refuses an explicit `--neighbor-codes` that the write stage could not hold under
/// `budget`, before any stage runs (the write stage applies the same rules to the layout it
/// chooses). Where the data may get either vectors (f32 data, f16 neither asked for nor
/// refused: the write stage tries f16 first, exact vectors when a row is beyond f16's
/// range), it refuses only when neither layout fits a sector and the budget, so it never
/// refuses what the write stage would accept.
///
/// # Errors
/// [`BuildError::InvalidParameter`] naming `--vector-encoding` (f16 asked for u8/i8 data) or
/// `--neighbor-codes` (no code fits a sector, or the budget cannot hold them).
pub(crate) fn check_explicit_codes(
    params: &BuildParams,
    n: usize,
    dim: usize,
    elem: ElementType,
    m: usize,
    budget: u64,
) -> Result<(), BuildError> {
    if !params.neighbor_codes {
        return Ok(());
    }
    let f16_asked = params.f16_vectors == Some(true);
    if f16_asked && elem != ElementType::F32 {
        return Err(f16_for_integers(elem));
    }
    let candidates: &[bool] = if f16_asked {
        &[true]
    } else if elem == ElementType::F32 && params.f16_vectors != Some(false) {
        &[false, true]
    } else {
        &[false]
    };
    let mut refusal = None;
    for &f16 in candidates {
        let fits = wanted_layout(params, dim, elem, m, f16).and_then(|layout| match layout {
            None => Ok(()),
            Some(l) => refine_sample(n, dim, m, &l, budget, params.reorder)
                .map(|_| ())
                .map_err(|why| BuildError::param("--neighbor-codes", true, why)),
        });
        match fits {
            Ok(()) => return Ok(()),
            Err(e) => refusal = Some(e),
        }
    }
    Err(refusal.unwrap_or_else(|| BuildError::param("--neighbor-codes", true, "no layout")))
}

/// The refusal of f16 vectors for u8/i8 data.
fn f16_for_integers(elem: ElementType) -> BuildError {
    BuildError::param(
        "--vector-encoding",
        "f16",
        format!("only f32 data can be stored as f16 (this file is {elem})"),
    )
}

/// Chooses the write stage's layout for `n` rows of `dim` `elem` values (PQ M = `m`, codes by
/// row in `codes_path` under `pq`) and, for a coded layout, trains and encodes the
/// neighbour codes within `budget` bytes (`permuted`: the sector order will copy them).
///
/// # Errors
/// [`BuildError::InvalidParameter`] naming `--vector-encoding` (f16 asked for u8/i8 data, or
/// a coordinate beyond ±65504) or `--neighbor-codes` (no room in a sector, or a budget too
/// small for them); [`BuildError::Io`] / [`BuildError::Layout`] reading the rows or codes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stage_layout(
    params: &BuildParams,
    rows: &Rows<'_>,
    n: usize,
    elem: ElementType,
    m: usize,
    pq: &PqCodebook,
    codes_path: &Path,
    budget: u64,
    permuted: bool,
    progress: &dyn Progress,
) -> Result<StageLayout, BuildError> {
    let dim = rows.dim;
    let r = params.max_degree;
    let plain = NodeLayout::new(dim, elem, r)?;
    let f16_asked = params.f16_vectors == Some(true);
    if f16_asked && elem != ElementType::F32 {
        return Err(f16_for_integers(elem));
    }
    let plain_only = StageLayout {
        layout: plain,
        refine: None,
    };
    // Which layout the data asks for, before any pass over it.
    let mut f16 = elem == ElementType::F32 && params.f16_vectors != Some(false);
    let wanted = |f16: bool| wanted_layout(params, dim, elem, m, f16);
    let Some(mut layout) = wanted(f16)? else {
        return Ok(plain_only);
    };
    if layout.f16_vectors {
        if let Some((i, j, v)) = beyond_f16(rows, n)? {
            if f16_asked {
                return Err(BuildError::param(
                    "--vector-encoding",
                    "f16",
                    format!("row {i} coordinate {j} = {v} is beyond f16's range (±{F16_MAX}); store it as f32"),
                ));
            }
            f16 = false;
            match wanted(f16)? {
                Some(l) => layout = l,
                None => return Ok(plain_only),
            }
        }
    }
    if layout.nbr_code_m == 0 {
        return Ok(StageLayout {
            layout,
            refine: None,
        });
    }
    let sample = match refine_sample(n, dim, m, &layout, budget, permuted) {
        Ok(sample) => sample,
        Err(why) if params.neighbor_codes => {
            return Err(BuildError::param("--neighbor-codes", true, why))
        }
        Err(why) => {
            progress.message(&format!("plain records: {why}"));
            return Ok(plain_only);
        }
    };
    let (cn, cm, codes) = ssdann_layout::pq::read_codes(codes_path)?;
    if (cn, cm) != (n, m) {
        return Err(BuildError::Layout(ssdann_layout::LayoutError::field(
            codes_path,
            "n × M",
            format!("{cn} × {cm}"),
            format!("the build has {n} rows and M = {m}"),
        )));
    }
    let row = |i: usize, out: &mut [f32], random: bool| {
        let access = if random {
            Access::Random
        } else {
            Access::Sequential
        };
        rows.stored(i, out, access)
    };
    let code = |i: usize| &codes[i * m..(i + 1) * m];
    let refine = train_and_encode_rows(
        pq,
        n,
        dim,
        layout.nbr_code_m,
        layout.f16_vectors,
        RefineSample {
            points: sample,
            seed: params.seed,
        },
        params.metric,
        &row,
        &code,
        progress,
    )?;
    Ok(StageLayout {
        layout,
        refine: Some(refine),
    })
}
