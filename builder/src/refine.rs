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
/// `perm[s]`, whose first-level code is `slot_codes[s]` (n × M by slot, under `pq`).
/// Memory: the training sample's residuals (≤ 64 Ki × d f32) and n × (M₂ + 4) bytes.
#[allow(clippy::too_many_arguments)]
pub fn train_and_encode<T: Element>(
    pq: &PqCodebook,
    data: &[T],
    dim: usize,
    perm: &[u32],
    slot_codes: &[u8],
    m2: usize,
    params: &BuildParams,
    progress: &dyn Progress,
) -> Refinement {
    let n = perm.len();
    let m = pq.m();
    let mut rng = rand::rngs::StdRng::seed_from_u64(params.seed ^ 0x7265_6669_6e65);
    let rows: Vec<usize> = if n <= REFINE_TRAINING_SAMPLE {
        (0..n).collect()
    } else {
        rand::seq::index::sample(&mut rng, n, REFINE_TRAINING_SAMPLE).into_vec()
    };
    let mut resid = vec![0f32; rows.len() * dim];
    resid.par_chunks_mut(dim).zip(&rows).for_each_init(
        || vec![0f32; dim],
        |rec, (out, &s)| {
            pq.decode(&slot_codes[s * m..(s + 1) * m], rec);
            let x = &data[perm[s] as usize * dim..(perm[s] as usize + 1) * dim];
            for ((o, &v), &r) in out.iter_mut().zip(x).zip(rec.iter()) {
                *o = v.to_f32() - r;
            }
        },
    );
    let codebook = train_pq(&resid, dim, m2, params.seed ^ 0x5151, progress);
    drop(resid);
    let cb = m2 + 4;
    let mut entries = vec![0u8; n * cb];
    entries.par_chunks_mut(cb).enumerate().for_each_init(
        || (vec![0f32; dim], Vec::new()),
        |(x, scratch), (s, out)| {
            let src = &data[perm[s] as usize * dim..(perm[s] as usize + 1) * dim];
            // From the vector as its record stores it (f16-rounded with f16 vectors), so a
            // merge re-encodes the same code from the record.
            for (o, &v) in x.iter_mut().zip(src) {
                *o = if params.f16_vectors {
                    half::f16::from_f32(v.to_f32()).to_f32()
                } else {
                    v.to_f32()
                };
            }
            codebook.encode_refinement(
                pq,
                x,
                &slot_codes[s * m..(s + 1) * m],
                params.metric,
                out,
                scratch,
            );
        },
    );
    Refinement { codebook, entries }
}

/// The record layout of a one-shot build: R neighbour slots, vectors as the element type or
/// (`params.f16_vectors`) as f16, and with `params.neighbor_codes` the largest M₂ ≤ `m` that
/// fits one 4 KB sector ([`NodeLayout::fit_neighbor_code_m`]).
///
/// # Errors
/// [`BuildError::InvalidParameter`] naming `--vector-encoding` (f16 for u8/i8 data, or a
/// coordinate beyond ±65504, named by row and coordinate) or `--neighbor-codes` (no room for
/// a 12-byte code); [`BuildError::Layout`] for an impossible geometry.
pub(crate) fn record_layout<T: Element>(
    params: &BuildParams,
    data: &[T],
    dim: usize,
    m: usize,
) -> Result<NodeLayout, BuildError> {
    if params.f16_vectors && T::TYPE != ElementType::F32 {
        return Err(BuildError::param(
            "--vector-encoding",
            "f16",
            format!(
                "only f32 data can be stored as f16 (this file is {})",
                T::TYPE
            ),
        ));
    }
    if params.f16_vectors {
        // f16's largest finite value is 65504: a larger coordinate would be stored as inf.
        if let Some(i) = data
            .par_iter()
            .position_first(|x| x.to_f32().abs() > F16_MAX)
        {
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
    let vector_bytes = dim
        * if params.f16_vectors {
            2
        } else {
            T::TYPE.size_bytes()
        };
    let nbr_code_m = if params.neighbor_codes {
        NodeLayout::fit_neighbor_code_m(dim, vector_bytes, params.max_degree, m).ok_or_else(|| {
            BuildError::param(
                "--neighbor-codes",
                true,
                format!(
                    "a record of {vector_bytes} + 4 + 4R (R = {}) bytes leaves no room for 12-byte neighbour codes in a 4 KB sector",
                    params.max_degree
                ),
            )
        })?
    } else {
        0
    };
    let layout = NodeLayout::with_encoding(
        dim,
        T::TYPE,
        params.max_degree,
        nbr_code_m,
        params.f16_vectors,
    )?;
    Ok(layout)
}
