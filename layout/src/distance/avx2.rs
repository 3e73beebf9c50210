//! AVX2 + FMA kernels. Each public fn is a safe wrapper that is only ever stored in the
//! kernel table after `is_x86_feature_detected!("avx2")` and `("fma")` returned true.
use std::arch::x86_64::*;

#[inline]
unsafe fn hsum256_ps(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    _mm_cvtss_f32(s)
}

/// Sum of the 8 i32 lanes, in i64 (the lanes may each be near 2^29; their sum is not).
#[inline]
unsafe fn hsum256_epi32(v: __m256i) -> i64 {
    let mut lanes = [0i32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, v);
    lanes.iter().map(|&x| i64::from(x)).sum()
}

#[target_feature(enable = "avx2,fma")]
unsafe fn l2_sq_f32_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc_k) in acc.iter_mut().enumerate() {
            let d = _mm256_sub_ps(
                _mm256_loadu_ps(pa.add(i + 8 * k)),
                _mm256_loadu_ps(pb.add(i + 8 * k)),
            );
            *acc_k = _mm256_fmadd_ps(d, d, *acc_k);
        }
        i += 32;
    }
    while i + 8 <= n {
        let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
        acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum256_ps(s);
    while i < n {
        let d = *pa.add(i) - *pb.add(i);
        sum += d * d;
        i += 1;
    }
    sum
}

#[target_feature(enable = "avx2,fma")]
unsafe fn l2_sq_f32_bounded_impl(a: &[f32], b: &[f32], bound: f32) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for half in 0..2 {
            for (k, acc_k) in acc.iter_mut().enumerate() {
                let o = i + 32 * half + 8 * k;
                let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(o)), _mm256_loadu_ps(pb.add(o)));
                *acc_k = _mm256_fmadd_ps(d, d, *acc_k);
            }
        }
        i += 64;
        if i < n {
            let partial = hsum256_ps(_mm256_add_ps(
                _mm256_add_ps(acc[0], acc[1]),
                _mm256_add_ps(acc[2], acc[3]),
            ));
            if partial > bound {
                return partial;
            }
        }
    }
    let rest = l2_sq_f32_impl(&a[i..], &b[i..]);
    hsum256_ps(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    )) + rest
}

pub(super) fn l2_sq_f32_bounded(a: &[f32], b: &[f32], bound: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "l2_sq_f32_bounded: length mismatch");
    debug_assert!(features());
    // SAFETY: equal lengths (checked above); installed only after AVX2+FMA detection.
    unsafe { l2_sq_f32_bounded_impl(a, b, bound) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc_k) in acc.iter_mut().enumerate() {
            *acc_k = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8 * k)),
                _mm256_loadu_ps(pb.add(i + 8 * k)),
                *acc_k,
            );
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(
            _mm256_loadu_ps(pa.add(i)),
            _mm256_loadu_ps(pb.add(i)),
            acc[0],
        );
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum256_ps(s);
    while i < n {
        sum += *pa.add(i) * *pb.add(i);
        i += 1;
    }
    sum
}

/// f16 kernels: 8 halves → 8 floats with F16C (`vcvtph2ps`), then the f32 FMA loop.
macro_rules! f16_kernel {
    ($name:ident, $diff:expr, $scalar:path) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(a: &[half::f16], b: &[half::f16]) -> f32 {
            let n = a.len();
            let (pa, pb) = (a.as_ptr() as *const __m128i, b.as_ptr() as *const __m128i);
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (k, acc_k) in acc.iter_mut().enumerate() {
                    let va = _mm256_cvtph_ps(_mm_loadu_si128(pa.add((i + 8 * k) / 8)));
                    let vb = _mm256_cvtph_ps(_mm_loadu_si128(pb.add((i + 8 * k) / 8)));
                    *acc_k = if $diff {
                        let d = _mm256_sub_ps(va, vb);
                        _mm256_fmadd_ps(d, d, *acc_k)
                    } else {
                        _mm256_fmadd_ps(va, vb, *acc_k)
                    };
                }
                i += 32;
            }
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            hsum256_ps(s) + $scalar(&a[i..], &b[i..])
        }
    };
}
/// f32 query × stored f16 vector (little-endian bytes, 2 per coordinate, any alignment):
/// 8 halves → 8 floats with F16C straight from the record, no decoded copy.
macro_rules! f32_f16_kernel {
    ($name:ident, $diff:expr, $scalar:path) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn $name(q: &[f32], v: &[u8]) -> f32 {
            let n = q.len();
            let (pq, pv) = (q.as_ptr(), v.as_ptr());
            let term = |a: __m256, b: __m256, acc: __m256| {
                if $diff {
                    let d = _mm256_sub_ps(a, b);
                    _mm256_fmadd_ps(d, d, acc)
                } else {
                    _mm256_fmadd_ps(a, b, acc)
                }
            };
            let half8 =
                |i: usize| _mm256_cvtph_ps(_mm_loadu_si128(pv.add(2 * i) as *const __m128i));
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i + 32 <= n {
                for (k, acc_k) in acc.iter_mut().enumerate() {
                    *acc_k = term(_mm256_loadu_ps(pq.add(i + 8 * k)), half8(i + 8 * k), *acc_k);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] = term(_mm256_loadu_ps(pq.add(i)), half8(i), acc[0]);
                i += 8;
            }
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            hsum256_ps(s) + $scalar(&q[i..], &v[2 * i..])
        }
    };
}
f32_f16_kernel!(l2_sq_f32_f16_impl, true, super::scalar::l2_sq_f32_f16);
f32_f16_kernel!(dot_f32_f16_impl, false, super::scalar::dot_f32_f16);
f16_kernel!(l2_sq_f16_impl, true, super::scalar::l2_sq_f16);
f16_kernel!(dot_f16_impl, false, super::scalar::dot_f16);

/// Integer kernels: widen 16 bytes to 16 × i16 (`$widen`), then `_mm256_madd_epi16`
/// (pairwise products summed into 8 × i32). `$diff` selects L2 (subtract first) or dot.
macro_rules! int_kernel {
    ($name:ident, $t:ty, $widen:ident, $diff:expr, $scalar:path) => {
        #[target_feature(enable = "avx2")]
        unsafe fn $name(a: &[$t], b: &[$t]) -> f32 {
            let n = a.len();
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = _mm256_setzero_si256();
            let mut i = 0;
            while i + 16 <= n {
                let va = $widen(_mm_loadu_si128(pa.add(i) as *const __m128i));
                let vb = $widen(_mm_loadu_si128(pb.add(i) as *const __m128i));
                let prod = if $diff {
                    let d = _mm256_sub_epi16(va, vb);
                    _mm256_madd_epi16(d, d)
                } else {
                    _mm256_madd_epi16(va, vb)
                };
                acc = _mm256_add_epi32(acc, prod);
                i += 16;
            }
            (hsum256_epi32(acc) + $scalar(&a[i..], &b[i..])) as f32
        }
    };
}

int_kernel!(
    l2_sq_u8_impl,
    u8,
    _mm256_cvtepu8_epi16,
    true,
    super::scalar::l2_int
);
int_kernel!(
    dot_u8_impl,
    u8,
    _mm256_cvtepu8_epi16,
    false,
    super::scalar::dot_int
);
int_kernel!(
    l2_sq_i8_impl,
    i8,
    _mm256_cvtepi8_epi16,
    true,
    super::scalar::l2_int
);
int_kernel!(
    dot_i8_impl,
    i8,
    _mm256_cvtepi8_epi16,
    false,
    super::scalar::dot_int
);

macro_rules! safe_wrapper {
    ($name:ident, $imp:ident, $t:ty) => {
        pub(super) fn $name(a: &[$t], b: &[$t]) -> f32 {
            assert_eq!(
                a.len(),
                b.len(),
                concat!(stringify!($name), ": length mismatch")
            );
            debug_assert!(features());
            // SAFETY: the lengths are equal (checked above) and the impls read only
            // indices < a.len() == b.len(); these wrappers are installed in the kernel
            // table only after runtime detection found AVX2 and FMA (and debug builds
            // check it again here).
            unsafe { $imp(a, b) }
        }
    };
}
/// Whether this CPU has what the AVX2 kernels need (debug-build re-check).
fn features() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}
pub(super) fn l2_sq_f16(a: &[half::f16], b: &[half::f16]) -> f32 {
    assert_eq!(a.len(), b.len(), "l2_sq_f16: length mismatch");
    debug_assert!(features() && is_x86_feature_detected!("f16c"));
    // SAFETY: equal lengths (checked above); installed only after AVX2, FMA and F16C
    // detection; 16-byte loads stay within `i + 32 <= n` halves.
    unsafe { l2_sq_f16_impl(a, b) }
}
pub(super) fn dot_f16(a: &[half::f16], b: &[half::f16]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f16: length mismatch");
    debug_assert!(features() && is_x86_feature_detected!("f16c"));
    // SAFETY: as for l2_sq_f16.
    unsafe { dot_f16_impl(a, b) }
}
pub(super) fn l2_sq_f32_f16(q: &[f32], v: &[u8]) -> f32 {
    assert_eq!(2 * q.len(), v.len(), "l2_sq_f32_f16: length mismatch");
    debug_assert!(features() && is_x86_feature_detected!("f16c"));
    // SAFETY: v holds 2 bytes per coordinate of q (checked above); the 16-byte loads read
    // halves i..i + 8 only while i + 8 <= q.len(); installed only after AVX2, FMA and F16C
    // detection.
    unsafe { l2_sq_f32_f16_impl(q, v) }
}
pub(super) fn dot_f32_f16(q: &[f32], v: &[u8]) -> f32 {
    assert_eq!(2 * q.len(), v.len(), "dot_f32_f16: length mismatch");
    debug_assert!(features() && is_x86_feature_detected!("f16c"));
    // SAFETY: as for l2_sq_f32_f16.
    unsafe { dot_f32_f16_impl(q, v) }
}
safe_wrapper!(l2_sq_f32, l2_sq_f32_impl, f32);
safe_wrapper!(dot_f32, dot_f32_impl, f32);
safe_wrapper!(l2_sq_u8, l2_sq_u8_impl, u8);
safe_wrapper!(dot_u8, dot_u8_impl, u8);
safe_wrapper!(l2_sq_i8, l2_sq_i8_impl, i8);
safe_wrapper!(dot_i8, dot_i8_impl, i8);
