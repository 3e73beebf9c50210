//! ADC (asymmetric distance computation, Jégou et al., TPAMI 2011, §4): the PQ distance of
//! a code is the sum of its M entries of the query's M × 256 table
//! ([`crate::pq::PqCodebook::adc_table`]). Re-exported from [`crate::pq`], which comes after
//! it: a code byte indexes one of [`PQ_CENTROIDS`] entries of a table row.

/// Centroids per subspace (one byte per code): the width of a row of the ADC table.
pub const PQ_CENTROIDS: usize = 256;

/// PQ distance of one code: `Σ_m table[m][code[m]]` (table is `M × 256`; the sum runs over
/// the first min(M, code length) subspaces).
///
/// Eight partial sums: a lookup is an L1/L2 load (the M × 1 KB table does not fit L1 at
/// M = 48), and one or two running sums would make each addition wait for the previous
/// one (4 cycles of FP-add latency per subspace); eight independent chains keep the loads
/// the bound. The sums are combined pairwise, so the result is deterministic but may
/// differ from a left-to-right sum in the last bits.
#[inline]
pub fn pq_distance(table: &[f32], code: &[u8]) -> f32 {
    let (rows, _) = table.as_chunks::<PQ_CENTROIDS>();
    let m = code.len().min(rows.len());
    let (rows8, rows_tail) = rows[..m].as_chunks::<8>();
    let (code8, code_tail) = code[..m].as_chunks::<8>();
    let mut acc = [0.0f32; 8];
    for (r, c) in rows8.iter().zip(code8) {
        for i in 0..8 {
            acc[i] += r[i][usize::from(c[i])];
        }
    }
    for (i, (r, &c)) in rows_tail.iter().zip(code_tail).enumerate() {
        acc[i] += r[usize::from(c)];
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// PQ distances of many nodes: `out[i] = pq_distance(table, codes[ids[i]])` where `codes` is
/// the `n × M` code matrix.
pub fn pq_distances(table: &[f32], codes: &[u8], m: usize, ids: &[u32], out: &mut [f32]) {
    for (o, &id) in out.iter_mut().zip(ids) {
        let c = &codes[id as usize * m..(id as usize + 1) * m];
        *o = pq_distance(table, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_m_scan() {
        let table: Vec<f32> = (0..3 * 256).map(|x| x as f32).collect();
        assert_eq!(pq_distance(&table, &[1, 2, 3]), 1.0 + 258.0 + 515.0);
        assert_eq!(pq_distance(&table[..512], &[1, 2]), 1.0 + 258.0);
        assert_eq!(pq_distance(&table[..256], &[5]), 5.0);
    }

    #[test]
    fn pq_distance_is_the_sum_of_the_table_entries_for_every_m() {
        // every M from 1 to 70 (the eight-sum body and every tail length), codes and table
        // from a fixed LCG; the reference is an f64 left-to-right sum
        let mut x = 7u64;
        let mut next = || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as u32
        };
        let table: Vec<f32> = (0..70 * PQ_CENTROIDS)
            .map(|_| (next() % 10_000) as f32 / 100.0)
            .collect();
        for m in 1..=70 {
            let code: Vec<u8> = (0..m).map(|_| (next() % 256) as u8).collect();
            let want: f64 = code
                .iter()
                .enumerate()
                .map(|(j, &c)| f64::from(table[j * PQ_CENTROIDS + usize::from(c)]))
                .sum();
            let got = pq_distance(&table[..m * PQ_CENTROIDS], &code);
            assert!(
                (f64::from(got) - want).abs() <= 1e-5 * want,
                "M = {m}: {got} vs {want}"
            );
            // a table of fewer rows than the code: the sum stops at the table's last row
            if m > 1 {
                let short = pq_distance(&table[..(m - 1) * PQ_CENTROIDS], &code);
                let want_short =
                    want - f64::from(table[(m - 1) * PQ_CENTROIDS + usize::from(code[m - 1])]);
                assert!(
                    (f64::from(short) - want_short).abs() <= 1e-5 * want.max(1.0),
                    "M = {m} short"
                );
            }
        }
    }
}
