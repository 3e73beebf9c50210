//! What the builder and the CLI do with an opened vector file, shared by the `vectors` and
//! `npy` targets: every accessor on the first and last rows, the contiguous view in the
//! file's own element type, and the NaN scan.

use ssdann_layout::{ElementType, VectorFile};

/// Exercises (outside the allocation guard, except `contiguous`) an opened `VectorFile` whose file is `file_bytes` long, asserting what `open`
/// promises (n, d ≥ 1, rows inside the file).
pub fn exercise(f: &VectorFile, file_bytes: usize) {
    let (n, d) = (f.len(), f.dim());
    assert!(n >= 1 && d >= 1 && !f.is_empty());
    let row_bytes = d * f.element_type().size_bytes();
    assert!(f.data_bytes() <= file_bytes as u64);
    let mut row = vec![0.0f32; d];
    for i in [0, n / 2, n - 1] {
        assert_eq!(f.row_bytes(i).len(), row_bytes);
        f.row_f32(i, &mut row);
    }
    // The copy `contiguous` makes of `.fvecs`/`.bvecs` rows is the reader's allocation.
    let (total, _) = crate::guarded(file_bytes, || match f.element_type() {
        ElementType::F32 => f.contiguous::<f32>().map(|c| c.len()),
        ElementType::U8 => f.contiguous::<u8>().map(|c| c.len()),
        ElementType::I8 => f.contiguous::<i8>().map(|c| c.len()),
    });
    assert_eq!(total.ok(), Some(n * d));
    let _ = f.check_finite();
}
