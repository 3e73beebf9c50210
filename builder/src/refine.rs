//! Neighbour codes (format 2): the residual codebook trained after PQ, and every slot's
//! neighbour code, which the writer copies into each record that lists the slot
//! ([`ssdann_layout::sector::NodeLayout::with_neighbor_codes`]).
//!
//! A search expands a node from its record and scores the node's neighbours by their PQ code
//! (in RAM) plus the refinement stored beside their ids, so candidates are ranked with about
//! the accuracy of a PQ code of M + M₂ bytes while RAM holds M bytes per point. The two
//! levels are residual quantization (Juang & Gray 1982; the refinement is a PQ of
//! `x − PQ(x)`), with the cross term folded into one f32 per point so that the second
//! level is one more ADC lookup per subspace.

use crate::error::BuildError;
use crate::params::BuildParams;
use crate::pq_train::train_pq;
use crate::progress::Progress;
use rand::SeedableRng;
use rayon::prelude::*;
use ssdann_layout::pq::PqCodebook;
use ssdann_layout::{Element, ElementType, NodeLayout};

use ssdann_layout::sector::F16_MAX;

/// Points the residual codebook is trained on, at most (sampled at random).
pub const REFINE_TRAINING_SAMPLE: usize = 64 * 1024;

/// The residual codebook and every slot's neighbour code.
pub struct Refinement {
    /// The M₂-subspace codebook of the residuals (`pq_refine.bin`).
    pub codebook: PqCodebook,
    /// n × (M₂ + 4) bytes by slot: residual code, then the f32 term (LE).
    pub entries: Vec<u8>,
}

/// Trains the M₂ = `m2`-subspace residual codebook on up to [`REFINE_TRAINING_SAMPLE`] points
/// of `data` (n × d by original id) and encodes every slot: slot `s` holds original id
/// `perm[s]`, whose first-level code is `slot_codes[s]` (n × M by slot, under `pq`); with
/// `f16` (the records store f16 vectors) each point is encoded from its f16-rounded vector.
/// Memory: the training sample's residuals (≤ 64 Ki × d f32) and n × (M₂ + 4) bytes.
#[allow(clippy::too_many_arguments)]
pub fn train_and_encode<T: Element>(
    pq: &PqCodebook,
    data: &[T],
    dim: usize,
    perm: &[u32],
    slot_codes: &[u8],
    m2: usize,
    f16: bool,
    params: &BuildParams,
    progress: &dyn Progress,
) -> Refinement {
    let m = pq.m();
    let row = |s: usize, out: &mut [f32], _: bool| {
        let src = &data[perm[s] as usize * dim..(perm[s] as usize + 1) * dim];
        for (o, &v) in out.iter_mut().zip(src) {
            *o = v.to_f32();
        }
        Ok(())
    };
    let code = |s: usize| &slot_codes[s * m..(s + 1) * m];
    let sample = RefineSample {
        points: REFINE_TRAINING_SAMPLE,
        seed: params.seed,
    };
    match train_and_encode_rows(
        pq,
        perm.len(),
        dim,
        m2,
        f16,
        sample,
        params.metric,
        &row,
        &code,
        progress,
    ) {
        Ok(r) => r,
        Err(_) => unreachable!("the in-RAM rows cannot fail"),
    }
}

/// `row(i, out, random)`: point `i`'s stored vector as d f32 into `out` (`random`: a sample
/// access, not the sequential pass).
pub(crate) type RowFn<'a> = dyn Fn(usize, &mut [f32], bool) -> Result<(), BuildError> + Sync + 'a;

/// How many points the residual codebook trains on (at most), drawn with `seed`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RefineSample {
    pub(crate) points: usize,
    pub(crate) seed: u64,
}

/// [`train_and_encode`] over rows fetched by `row(i, out, random)` (point `i`'s stored vector
/// as d f32 into `out`; `random` when the access is a random sample, not the sequential
/// pass) with first-level codes `code(i)`: trains on `sample.points` random points, then
/// encodes all `n` in order. Each point is encoded from its f16-rounded vector when `f16`.
///
/// # Errors
/// Whatever `row` returns.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_and_encode_rows<'c>(
    pq: &PqCodebook,
    n: usize,
    dim: usize,
    m2: usize,
    f16: bool,
    sample: RefineSample,
    metric: ssdann_layout::Metric,
    row: &RowFn<'_>,
    code: &(dyn Fn(usize) -> &'c [u8] + Sync),
    progress: &dyn Progress,
) -> Result<Refinement, BuildError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(sample.seed ^ 0x7265_6669_6e65);
    let rows: Vec<usize> = if n <= sample.points {
        (0..n).collect()
    } else {
        rand::seq::index::sample(&mut rng, n, sample.points).into_vec()
    };
    // The vector as its record stores it (f16-rounded with f16 vectors), so a merge
    // re-encodes the same code from the record.
    let stored = |i: usize, x: &mut [f32], random: bool| -> Result<(), BuildError> {
        row(i, x, random)?;
        if f16 {
            x.iter_mut()
                .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
        }
        Ok(())
    };
    let mut resid = vec![0f32; rows.len() * dim];
    resid.par_chunks_mut(dim).zip(&rows).try_for_each_init(
        || vec![0f32; dim],
        |rec, (out, &s)| {
            stored(s, out, n > sample.points)?;
            pq.decode(code(s), rec);
            out.iter_mut().zip(rec.iter()).for_each(|(o, &r)| *o -= r);
            Ok::<(), BuildError>(())
        },
    )?;
    let codebook = train_pq(&resid, dim, m2, sample.seed ^ 0x5151, progress);
    drop(resid);
    let cb = m2 + 4;
    let mut entries = vec![0u8; n * cb];
    entries.par_chunks_mut(cb).enumerate().try_for_each_init(
        || (vec![0f32; dim], Vec::new()),
        |(x, scratch), (s, out)| {
            stored(s, x, false)?;
            codebook.encode_refinement(pq, x, code(s), metric, out, scratch);
            Ok::<(), BuildError>(())
        },
    )?;
    Ok(Refinement { codebook, entries })
}

/// The record layout of a one-shot build: R neighbour slots, vectors as the element type or
/// (`params.f16_vectors`) as f16, and with `params.neighbor_codes` the largest M₂ ≤ `m` that
/// fits one 4 KB sector ([`NodeLayout::fit_neighbor_code_m`]). When neither is asked for,
/// [`auto_layout`] chooses by `params.max_index_growth`.
///
/// # Errors
/// [`BuildError::InvalidParameter`] naming `--vector-encoding` (f16 for u8/i8 data, or a
/// coordinate beyond ±65504, named by row and coordinate) or `--neighbor-codes` (no M₂ ≥ 8
/// fits: [`no_codes_fit`]); [`BuildError::Layout`] for an impossible geometry.
pub(crate) fn record_layout<T: Element>(
    params: &BuildParams,
    data: &[T],
    dim: usize,
    m: usize,
) -> Result<NodeLayout, BuildError> {
    let f16_asked = params.f16_vectors == Some(true);
    if !params.neighbor_codes && !f16_asked {
        return auto_layout::<T>(params, data, dim, m);
    }
    if f16_asked && T::TYPE != ElementType::F32 {
        return Err(BuildError::param(
            "--vector-encoding",
            "f16",
            format!(
                "only f32 data can be stored as f16 (this file is {})",
                T::TYPE
            ),
        ));
    }
    if f16_asked {
        if let Some(i) = beyond_f16(data) {
            return Err(BuildError::param(
                "--vector-encoding",
                "f16",
                format!(
                    "row {} coordinate {} = {} is beyond f16's range (±{F16_MAX}); store it as f32",
                    i / dim,
                    i % dim,
                    data[i].to_f32()
                ),
            ));
        }
    }
    let vector_bytes = dim * if f16_asked { 2 } else { T::TYPE.size_bytes() };
    let nbr_code_m = if params.neighbor_codes {
        NodeLayout::fit_neighbor_code_m(dim, vector_bytes, params.max_degree, m).ok_or_else(
            || {
                BuildError::param(
                    "--neighbor-codes",
                    true,
                    no_codes_fit(dim, params.max_degree, m),
                )
            },
        )?
    } else {
        0
    };
    let layout = NodeLayout::with_encoding(dim, T::TYPE, params.max_degree, nbr_code_m, f16_asked)?;
    Ok(layout)
}

/// The first coordinate (flat index) beyond f16's finite range, if any.
fn beyond_f16<T: Element>(data: &[T]) -> Option<usize> {
    data.par_iter()
        .position_first(|x| x.to_f32().abs() > F16_MAX)
}

/// Disk bytes per point of `layout` (a block's bytes over the records it holds).
fn bytes_per_point(layout: &NodeLayout) -> f64 {
    layout.block_bytes() as f64 / layout.nodes_per_block as f64
}

/// The default record layout (issue 28): neighbour codes — with f16 vectors for f32 data
/// whose coordinates f16 holds, unless `params.f16_vectors` is `Some(false)` — where the index grows by at most
/// `params.max_index_growth` × the plain layout's bytes per point; plain records otherwise
/// (a 128-d u8 record goes from ten a sector to one: growth 10).
///
/// # Errors
/// [`BuildError::Layout`] for an impossible geometry.
pub(crate) fn auto_layout<T: Element>(
    params: &BuildParams,
    data: &[T],
    dim: usize,
    m: usize,
) -> Result<NodeLayout, BuildError> {
    let f16 = T::TYPE == ElementType::F32
        && params.f16_vectors != Some(false)
        && beyond_f16(data).is_none();
    let (plain, coded) = candidate_layouts(params, dim, T::TYPE, m, f16)?;
    Ok(coded.unwrap_or(plain))
}

/// The plain record layout and — when neighbour codes fit and the index grows by at most
/// `params.max_index_growth` — the coded one (f16 vectors when `f16`).
///
/// # Errors
/// [`BuildError::Layout`] for an impossible geometry.
pub(crate) fn candidate_layouts(
    params: &BuildParams,
    dim: usize,
    elem: ElementType,
    m: usize,
    f16: bool,
) -> Result<(NodeLayout, Option<NodeLayout>), BuildError> {
    let r = params.max_degree;
    let plain = NodeLayout::new(dim, elem, r)?;
    let vector_bytes = dim * if f16 { 2 } else { elem.size_bytes() };
    let Some(m2) = NodeLayout::fit_neighbor_code_m(dim, vector_bytes, r, m) else {
        return Ok((plain, None));
    };
    let coded = NodeLayout::with_encoding(dim, elem, r, m2, f16)?;
    let growth = bytes_per_point(&coded) / bytes_per_point(&plain);
    Ok((
        plain,
        (growth <= params.max_index_growth + 1e-9).then_some(coded),
    ))
}

/// Why no neighbour code fits: M₂ must be ≥ 8 bytes and at most the PQ bytes M, d, and what
/// a 4 KB sector leaves beside a record of R neighbours (M₂ + 4 bytes per neighbour).
pub(crate) fn no_codes_fit(dim: usize, r: usize, m: usize) -> String {
    format!(
        "neighbour codes need M₂ ≥ 8 bytes, at most the PQ bytes (M = {m}), d (= {dim}) and what a \
         4 KB sector leaves beside a record of R = {r} neighbours (M₂ + 4 bytes each): none fits"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use super::*;

    /// (nbr_code_m, f16_vectors, nodes per block) the default chooses for `n` × `dim` rows of
    /// `fill` (M = `m`, R = 64) under `params`.
    fn chosen<T: Element + Copy>(
        dim: usize,
        m: usize,
        fill: T,
        params: &BuildParams,
    ) -> (usize, bool, usize) {
        let data = vec![fill; 4 * dim];
        let l = record_layout(params, &data, dim, m).unwrap();
        (l.nbr_code_m, l.f16_vectors, l.nodes_per_block)
    }

    #[test]
    fn the_default_layout_is_chosen_from_the_record_size_per_sector() {
        let p = BuildParams::default();
        // 384-d f32: 2 plain records a sector → 1 coded (growth 2): f16 + 43-byte codes
        assert_eq!(chosen(384, 48, 0.5f32, &p), (43, true, 1));
        // 768-d f32: 1 → 1 (growth 1)
        assert!(chosen(768, 96, 0.5f32, &p).1);
        // 128-d f32: 5 plain records a sector; coded 1 (growth 5): plain
        assert_eq!(chosen(128, 64, 0.5f32, &p), (0, false, 5));
        // 128-d u8: 10 → 1 (growth 10): plain
        assert_eq!(chosen(128, 32, 7u8, &p), (0, false, 10));
        // the knob: growth 1 keeps 384-d f32 plain; 10 takes codes for 128-d u8
        let one = BuildParams {
            max_index_growth: 1.0,
            ..Default::default()
        };
        assert_eq!(chosen(384, 48, 0.5f32, &one), (0, false, 2));
        let ten = BuildParams {
            max_index_growth: 10.0,
            ..Default::default()
        };
        assert_eq!(chosen(128, 32, 7u8, &ten).0, 32);
        // exact vectors asked for: codes of 31 bytes beside f32 vectors
        let exact = BuildParams {
            f16_vectors: Some(false),
            ..Default::default()
        };
        assert_eq!(chosen(384, 48, 0.5f32, &exact), (31, false, 1));
        // data beyond f16's range: codes beside exact vectors, not an error
        assert_eq!(chosen(384, 48, 1e6f32, &p), (31, false, 1));
        // asked for explicitly, f16 beyond its range is refused
        let f16 = BuildParams {
            f16_vectors: Some(true),
            ..Default::default()
        };
        let data = vec![1e6f32; 384];
        assert!(record_layout(&f16, &data, 384, 48).is_err());
        // codes asked for with PQ M = 4 < 8: refused, saying why (not "no room")
        let codes = BuildParams {
            neighbor_codes: true,
            ..Default::default()
        };
        let e = record_layout(&codes, &[0.5f32; 128], 128, 4).unwrap_err();
        assert!(
            e.to_string()
                .contains("M₂ ≥ 8 bytes, at most the PQ bytes (M = 4)"),
            "{e}"
        );
        assert!(record_layout(&codes, &[0.5f32; 128], 128, 8).is_ok());
    }
}
