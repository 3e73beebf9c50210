//! Scalar reference kernels: the definition every SIMD kernel is tested against.

/// Reference squared L2 for f32.
pub fn l2_sq_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}
/// Reference inner product for f32.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
/// Reference squared L2 for f16 (in f32).
pub fn l2_sq_f16(a: &[half::f16], b: &[half::f16]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x.to_f32() - y.to_f32()) * (x.to_f32() - y.to_f32()))
        .sum()
}
/// Reference inner product for f16 (in f32).
pub fn dot_f16(a: &[half::f16], b: &[half::f16]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x.to_f32() * y.to_f32()).sum()
}
/// The f32 values of little-endian f16 bytes (`v.len() / 2` of them; an odd last byte is
/// ignored): how an f16 record's vector is decoded wherever it is needed as f32.
pub fn f16_le_values(v: &[u8]) -> impl Iterator<Item = f32> + '_ {
    v.chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
}
/// Reference squared L2 of an f32 vector and little-endian f16 bytes (in f32).
pub fn l2_sq_f32_f16(q: &[f32], v: &[u8]) -> f32 {
    q.iter()
        .zip(f16_le_values(v))
        .map(|(x, y)| (x - y) * (x - y))
        .sum()
}
/// Reference inner product of an f32 vector and little-endian f16 bytes (in f32).
pub fn dot_f32_f16(q: &[f32], v: &[u8]) -> f32 {
    q.iter().zip(f16_le_values(v)).map(|(x, y)| x * y).sum()
}
/// Exact integer squared L2 of two u8 or i8 slices.
pub(crate) fn l2_int<T: Copy + Into<i64>>(a: &[T], b: &[T]) -> i64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x.into() - y.into();
            d * d
        })
        .sum()
}
/// Exact integer inner product of two u8 or i8 slices.
pub(crate) fn dot_int<T: Copy + Into<i64>>(a: &[T], b: &[T]) -> i64 {
    a.iter().zip(b).map(|(&x, &y)| x.into() * y.into()).sum()
}
/// Reference squared L2 for u8 (exact sum, rounded once to f32).
pub fn l2_sq_u8(a: &[u8], b: &[u8]) -> f32 {
    l2_int(a, b) as f32
}
/// Reference inner product for u8 (exact sum, rounded once to f32).
pub fn dot_u8(a: &[u8], b: &[u8]) -> f32 {
    dot_int(a, b) as f32
}
/// Reference squared L2 for i8 (exact sum, rounded once to f32).
pub fn l2_sq_i8(a: &[i8], b: &[i8]) -> f32 {
    l2_int(a, b) as f32
}
/// Reference inner product for i8 (exact sum, rounded once to f32).
pub fn dot_i8(a: &[i8], b: &[i8]) -> f32 {
    dot_int(a, b) as f32
}
