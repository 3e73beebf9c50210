//! PQ's error on near pairs: the measure an index's default early-termination ratio is
//! taken from (format minor 3, [`crate::IndexHeader::near_error`]).
//!
//! Early termination (`SearchParams::termination_ratio` in the engine) stops a search once
//! its closest unexpanded candidate's *approximate* distance (PQ ADC, refined by neighbour
//! codes where the records hold them) exceeds r × the k-th best *exact* distance found so
//! far. A candidate that belongs in the top k but whose approximate distance errs upward by
//! more than (r − 1) × d_k is cut off. How large r must be therefore depends on how far the
//! approximation errs relative to the k-th nearest distance d_k — on a 384-d text set with
//! neighbour codes a few percent, on a 128-d u8 set with 32-byte PQ 40% or more — so no one
//! ratio fits every index (docs/perf/log.md, "The search side of one fast path").
//!
//! The measure (ssdann's own; no paper): each of up to [`SAMPLE_NODES`] evenly spaced live
//! nodes is a query. Its first [`PAIRS_PER_NODE`] listed live neighbours are the near points.
//! For each one, the error is (approximate − exact) / d_k, where d_k is the [`RANK_K`]-th
//! smallest of those exact distances, counted over the neighbours with exact ≤ d_k (the
//! ones that would be results). Samples whose d_k is below a quarter of the median d_k
//! are left out of the error: clusters of near-duplicates put the 10th neighbour at almost
//! no distance, where PQ's error, which does not shrink with the distance, looks unbounded
//! relative to it. The measure is the [`QUANTILE`] of these errors ([`NearError::error`])
//! and the smallest d_k it covered, ¼ of the median ([`NearError::scale`]).
//!
//! The search applies the margin at no less than that scale ([`stop_threshold`]): a query
//! whose k-th neighbour is much nearer than any measured (a near-duplicate cluster, common
//! in real catalogues) keeps the absolute margin it would have there. On a 860K-point set of
//! package descriptions, a purely relative margin capped recall@10 at 0.87.

use crate::distance::{l2_sq_f32, normalize, Metric};
use crate::error::LayoutError;
use crate::header::IndexHeader;
use crate::pq::{pq_distance, PqCodebook, PQ_CENTROIDS};
use crate::sector::NodeRecord;
use crate::ElementType;
use std::path::Path;

/// Nodes sampled as queries.
pub const SAMPLE_NODES: usize = 256;
/// Listed neighbours measured per sampled node.
pub const PAIRS_PER_NODE: usize = 16;
/// The rank whose exact distance d_k scales the errors (recall@10's k).
pub const RANK_K: usize = 10;
/// The quantile of the errors that is stored.
pub const QUANTILE: f64 = 0.99;
/// Fewer measured pairs than this: no measure (a tiny index; the search then has no
/// default termination).
pub const MIN_PAIRS: usize = 100;
/// [`termination_ratio`] = 1 + max([`MARGIN`] × error, [`FLOOR`]).
pub const MARGIN: f32 = 1.5;
/// The least margin over 1 (see [`termination_ratio`]).
pub const FLOOR: f32 = 0.15;
/// Samples whose d_k is below this share of the median d_k are left out of the error (module
/// docs); the smallest d_k measured, this share × the median, is [`NearError::scale`].
pub const MEASURED_SHARE: f32 = 0.25;
pub use crate::header::{NearError, MAX_NEAR_ERROR};

/// Where a search with ratio `r` stops: once its closest unexpanded candidate's approximate
/// distance exceeds d_k + (r − 1) × max(d_k, `scale`) — r × d_k at the index's typical
/// neighbour distance and beyond, an absolute margin below it. `scale` = 0: r × d_k.
/// `dk`, `scale` and the result are in the index's ranking distance (squared L2; for
/// cosine, of the normalized vectors).
#[inline]
pub fn stop_threshold(r: f32, dk: f32, scale: f32) -> f32 {
    dk + (r - 1.0) * dk.max(scale)
}

/// The default early-termination ratio of an index whose measure's error is `near_error`:
/// 1 + max(1.5 × error, 0.15).
///
/// The margin 1.5 covers what the pair measure cannot see: a search that stops also leaves
/// unexpanded the candidates whose *neighbours* would have been results. Measured on
/// 1,000 queries (docs/perf/log.md, 2026-12-08): a 384-d f32 set with neighbour codes
/// (error 0.12 → r = 1.19) keeps recall@10's ceiling at 0.998 and reads 5.6% less at
/// recall 0.98; a 128-d u8 set (0.44 → r = 1.66) keeps its ceiling at 1.0, where r = 1.2
/// would cap it at 0.95. The floor keeps r ≥ 1.15 for an index whose approximation is
/// nearly exact: at r = 1.1 the path effect alone cost the text set 0.012 of recall.
pub fn termination_ratio(near_error: f32) -> f32 {
    1.0 + (MARGIN * near_error).max(FLOOR)
}

/// `read_record(slot, out)` of [`measure`]: fills `out` with the slot's record.
pub type ReadRecord<'a, E> = dyn FnMut(u32, &mut Vec<u8>) -> Result<(), E> + 'a;
/// `code_of(slot, out)` of [`measure`]: fills `out` with the slot's M-byte PQ code.
pub type CodeOf<'a, E> = dyn FnMut(u32, &mut [u8]) -> Result<(), E> + 'a;

/// What [`measure`] reads from an index.
pub struct Source<'a> {
    /// `index.ssd`'s header (layout, metric, n, R).
    pub header: &'a IndexHeader,
    /// `index.ssd`'s path, named in errors.
    pub path: &'a Path,
    /// The PQ codebook (M subspaces).
    pub pq: &'a PqCodebook,
    /// The residual codebook when the records hold neighbour codes.
    pub refine: Option<&'a PqCodebook>,
}

/// Measures PQ's error on near pairs (module docs). `is_free(slot)`: a deleted slot (never
/// sampled or measured); `read_record(slot, out)` fills `out` with the slot's record
/// (`record_bytes` bytes, from a block whose checksum the caller checked); `code_of(slot,
/// out)` fills the slot's M-byte PQ code.
///
/// Returns `None` for an inner-product index (termination is for squared-L2 distances) or
/// when fewer than [`MIN_PAIRS`] pairs could be measured. Memory: a few d-float buffers
/// and the pairs (≤ 4,096 × 8 bytes). Reads: ≤ [`SAMPLE_NODES`] × (1 + [`PAIRS_PER_NODE`]) records.
///
/// # Errors
/// What the closures return (the caller's error type `E`); [`LayoutError::Corrupt`] naming
/// `path` for a record whose degree exceeds R or whose list names a slot ≥ n.
pub fn measure<E: From<LayoutError>>(
    src: &Source<'_>,
    is_free: &dyn Fn(u32) -> bool,
    read_record: &mut ReadRecord<'_, E>,
    code_of: &mut CodeOf<'_, E>,
) -> Result<Option<NearError>, E> {
    let h = src.header;
    let layout = h.layout;
    let n = h.n_slots;
    if !h.metric.uses_l2() || n < 2 {
        return Ok(None);
    }
    let d = h.dim as usize;
    let m = src.pq.m();
    let cb = layout.nbr_code_bytes();
    let mut table = vec![0f32; m * PQ_CENTROIDS];
    let mut table2 = vec![0f32; src.refine.map_or(0, |r| r.m() * PQ_CENTROIDS)];
    let (mut scratch, mut q, mut v) = (Vec::new(), vec![0f32; d], vec![0f32; d]);
    let (mut rec_i, mut rec_j, mut code) = (Vec::new(), Vec::new(), vec![0u8; m]);
    let mut samples: Vec<(f32, Vec<(f32, f32)>)> = Vec::new();
    let step = (n / SAMPLE_NODES as u64).max(1);
    let mut slot = step / 2;
    while slot < n {
        let id = slot as u32;
        slot += step;
        if is_free(id) {
            continue;
        }
        let rec = checked(src, id, &mut rec_i, read_record)?;
        decode(&layout, rec.vector, &mut q);
        if h.metric == Metric::Cosine {
            normalize(&mut q);
        }
        src.pq.adc_table(&q, h.metric, &mut table, &mut scratch);
        if let Some(refine) = src.refine {
            refine.refine_table(src.pq, &q, h.metric, &mut table2, &mut scratch);
        }
        let mut pairs = Vec::with_capacity(PAIRS_PER_NODE);
        for (j, nb) in rec.neighbors().enumerate() {
            if pairs.len() == PAIRS_PER_NODE {
                break;
            }
            if is_free(nb) {
                continue;
            }
            code_of(nb, &mut code)?;
            let mut approx = pq_distance(&table, &code);
            if let Some(c) = rec
                .neighbor_codes
                .get(j * cb..(j + 1) * cb)
                .filter(|_| cb > 0)
            {
                let (c2, t) = c.split_at(cb - 4);
                approx += pq_distance(&table2, c2) + f32::from_le_bytes([t[0], t[1], t[2], t[3]]);
            }
            decode(
                &layout,
                checked(src, nb, &mut rec_j, read_record)?.vector,
                &mut v,
            );
            pairs.push((approx, l2_sq_f32(&q, &v)));
        }
        if pairs.len() >= RANK_K {
            let mut exact: Vec<f32> = pairs.iter().map(|p| p.1).collect();
            exact.sort_by(f32::total_cmp);
            samples.push((exact[RANK_K - 1], pairs));
        }
    }
    Ok(error_quantile(&samples))
}

/// The [`QUANTILE`] of (approx − exact) / d_k over the samples (d_k, pairs), leaving out
/// samples with d_k < ¼ of the median (module docs), and the median; `None` below
/// [`MIN_PAIRS`] pairs.
fn error_quantile(samples: &[(f32, Vec<(f32, f32)>)]) -> Option<NearError> {
    let mut dks: Vec<f32> = samples.iter().map(|s| s.0).collect();
    dks.sort_by(f32::total_cmp);
    let median = *dks.get(dks.len() / 2)?;
    let mut errors: Vec<f32> = samples
        .iter()
        .filter(|(dk, _)| *dk > 0.0 && *dk >= MEASURED_SHARE * median)
        .flat_map(|(dk, pairs)| {
            pairs
                .iter()
                .filter(move |p| p.1 <= *dk)
                .map(move |&(a, e)| (a - e) / dk)
        })
        .filter(|e| e.is_finite())
        .collect();
    if errors.len() < MIN_PAIRS {
        return None;
    }
    errors.sort_by(f32::total_cmp);
    let at = ((errors.len() - 1) as f64 * QUANTILE).round() as usize;
    Some(NearError {
        error: errors[at].clamp(0.0, MAX_NEAR_ERROR),
        scale: MEASURED_SHARE * median,
    })
}

/// Reads slot `id`'s record into `buf` and checks its degree and list.
fn checked<'b, E: From<LayoutError>>(
    src: &Source<'_>,
    id: u32,
    buf: &'b mut Vec<u8>,
    read_record: &mut ReadRecord<'_, E>,
) -> Result<NodeRecord<'b>, E> {
    let layout = src.header.layout;
    read_record(id, buf)?;
    if buf.len() != layout.record_bytes {
        return Err(LayoutError::corrupt(
            src.path,
            format!("node {id}"),
            format!(
                "record of {} bytes, expected {}",
                buf.len(),
                layout.record_bytes
            ),
        )
        .into());
    }
    let rec = layout.record(buf, 0);
    rec.check(
        u64::from(id),
        src.header.n_slots,
        src.header.max_degree as usize,
    )
    .map_err(|detail| E::from(LayoutError::corrupt(src.path, format!("node {id}"), detail)))?;
    Ok(rec)
}

/// A record's stored vector (element type or f16, little-endian) as f32.
fn decode(layout: &crate::sector::NodeLayout, bytes: &[u8], out: &mut [f32]) {
    if layout.f16_vectors {
        for (x, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *x = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
        }
        return;
    }
    match layout.element {
        ElementType::F32 => {
            for (x, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        ElementType::U8 => out
            .iter_mut()
            .zip(bytes)
            .for_each(|(x, &b)| *x = f32::from(b)),
        ElementType::I8 => out
            .iter_mut()
            .zip(bytes)
            .for_each(|(x, &b)| *x = f32::from(b as i8)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_the_margin_over_the_error_with_a_floor() {
        assert!((termination_ratio(0.124) - 1.186).abs() < 1e-6);
        assert!((termination_ratio(0.44) - 1.66).abs() < 1e-6);
        assert_eq!(termination_ratio(0.0), 1.15);
    }

    #[test]
    fn the_margin_is_relative_above_the_scale_and_absolute_below_it() {
        assert_eq!(stop_threshold(1.5, 4.0, 2.0), 6.0);
        assert_eq!(stop_threshold(1.5, 0.01, 2.0), 1.01);
        assert_eq!(stop_threshold(1.5, 4.0, 0.0), 6.0);
    }

    #[test]
    fn the_quantile_skips_near_duplicate_samples_and_far_pairs() {
        // 20 samples at d_k = 1 whose pairs err by 0.01 × i (i = 0..10), plus pairs beyond
        // d_k (never results) that err by 5, plus one near-duplicate sample (d_k = 0.01) whose
        // pairs err by 100 relative to it.
        let mut samples = Vec::new();
        for _ in 0..20 {
            let mut pairs: Vec<(f32, f32)> =
                (0..10).map(|i| (1.0 + 0.01 * i as f32, 1.0)).collect();
            pairs.push((7.0, 2.0));
            samples.push((1.0, pairs));
        }
        samples.push((0.01, vec![(1.01, 0.01); 10]));
        let q = error_quantile(&samples).unwrap();
        assert!((q.error - 0.09).abs() < 1e-5, "{q:?}");
        assert_eq!(q.scale, 0.25);
        // fewer than MIN_PAIRS pairs: no measure
        assert_eq!(error_quantile(&samples[..5]), None);
    }
}
