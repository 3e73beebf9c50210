//! Distance kernels: squared L2 and inner product for f32, u8 and i8 vectors.
//!
//! One safe public function per kernel (`l2_sq_f32`, `dot_f32`, `l2_sq_u8`, ...). The first
//! call detects the CPU once (AVX2 + FMA on x86-64) and caches a table of function pointers;
//! every later call is one indirect call. The [`scalar`] module holds the reference versions
//! that every SIMD path is tested against (proptest, lengths 0..=1024 with odd tails).
//!
//! Integer kernels are exact: u8/i8 sums are accumulated in 32-bit integers, which cannot
//! overflow for dimensions up to [`MAX_INT_DIM`], and returned as f32.

mod kinds;

pub use kinds::{ElementType, Metric};
use std::sync::OnceLock;

/// Largest dimension for which the u8/i8 kernels' 32-bit accumulators cannot overflow
/// (255² × 2 per lane per 16 elements stays below 2³¹ up to this length).
pub const MAX_INT_DIM: usize = 65_536;

/// A vector coordinate type the graph algorithms can compute distances on: the stored
/// element types (f32, u8, i8) and `half::f16`, which the builder uses for a half-size
/// in-RAM copy of f32 data during graph construction.
pub trait Vector: bytemuck::Pod + Send + Sync + Copy + 'static {
    /// Squared L2 distance of two equal-length slices.
    fn l2_sq(a: &[Self], b: &[Self]) -> f32;
    /// Inner product of two equal-length slices.
    fn dot(a: &[Self], b: &[Self]) -> f32;
    /// The value as f32 (exact for u8, i8 and f16).
    fn to_f32(self) -> f32;
    /// The ranking distance under `metric` (squared L2, or negated inner product).
    #[inline]
    fn distance(metric: Metric, a: &[Self], b: &[Self]) -> f32 {
        if metric.uses_l2() {
            Self::l2_sq(a, b)
        } else {
            -Self::dot(a, b)
        }
    }
    /// Squared L2 with early abandon: returns the exact distance when it is ≤ `bound`, and
    /// otherwise some value > `bound` (possibly a partial sum). Squared L2 only grows as
    /// coordinates are added, so no close point is ever lost.
    #[inline]
    fn l2_sq_bounded(a: &[Self], b: &[Self], bound: f32) -> f32 {
        let _ = bound;
        Self::l2_sq(a, b)
    }
}

/// A vector element type the index can store: f32, u8 or i8.
pub trait Element: Vector + PartialEq + std::fmt::Debug {
    /// The format code of this type.
    const TYPE: ElementType;
}

impl Vector for half::f16 {
    #[inline]
    fn l2_sq(a: &[half::f16], b: &[half::f16]) -> f32 {
        l2_sq_f16(a, b)
    }
    #[inline]
    fn dot(a: &[half::f16], b: &[half::f16]) -> f32 {
        dot_f16(a, b)
    }
    #[inline]
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}

impl Element for f32 {
    const TYPE: ElementType = ElementType::F32;
}

impl Vector for f32 {
    #[inline]
    fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
        l2_sq_f32(a, b)
    }
    #[inline]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot_f32(a, b)
    }
    #[inline]
    fn l2_sq_bounded(a: &[f32], b: &[f32], bound: f32) -> f32 {
        l2_sq_f32_bounded(a, b, bound)
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Element for u8 {
    const TYPE: ElementType = ElementType::U8;
}

impl Vector for u8 {
    #[inline]
    fn l2_sq(a: &[u8], b: &[u8]) -> f32 {
        l2_sq_u8(a, b)
    }
    #[inline]
    fn dot(a: &[u8], b: &[u8]) -> f32 {
        dot_u8(a, b)
    }
    #[inline]
    fn to_f32(self) -> f32 {
        f32::from(self)
    }
}

impl Element for i8 {
    const TYPE: ElementType = ElementType::I8;
}

impl Vector for i8 {
    #[inline]
    fn l2_sq(a: &[i8], b: &[i8]) -> f32 {
        l2_sq_i8(a, b)
    }
    #[inline]
    fn dot(a: &[i8], b: &[i8]) -> f32 {
        dot_i8(a, b)
    }
    #[inline]
    fn to_f32(self) -> f32 {
        f32::from(self)
    }
}

type KernelF32 = fn(&[f32], &[f32]) -> f32;
type KernelU8 = fn(&[u8], &[u8]) -> f32;
type KernelI8 = fn(&[i8], &[i8]) -> f32;

/// The kernels chosen for this CPU.
struct Kernels {
    name: &'static str,
    l2_f16: fn(&[half::f16], &[half::f16]) -> f32,
    dot_f16: fn(&[half::f16], &[half::f16]) -> f32,
    l2_f32_f16: fn(&[f32], &[u8]) -> f32,
    dot_f32_f16: fn(&[f32], &[u8]) -> f32,
    l2_f32: KernelF32,
    l2_f32_bounded: fn(&[f32], &[f32], f32) -> f32,
    dot_f32: KernelF32,
    l2_u8: KernelU8,
    dot_u8: KernelU8,
    l2_i8: KernelI8,
    dot_i8: KernelI8,
}

static KERNELS: OnceLock<Kernels> = OnceLock::new();

fn kernels() -> &'static Kernels {
    KERNELS.get_or_init(detect)
}

fn detect() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        if std::env::var_os("SSDANN_FORCE_SCALAR").is_none()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            let f16c = is_x86_feature_detected!("f16c");
            return Kernels {
                name: "avx2+fma",
                l2_f16: if f16c {
                    avx2::l2_sq_f16
                } else {
                    scalar::l2_sq_f16
                },
                dot_f16: if f16c { avx2::dot_f16 } else { scalar::dot_f16 },
                l2_f32_f16: if f16c {
                    avx2::l2_sq_f32_f16
                } else {
                    scalar::l2_sq_f32_f16
                },
                dot_f32_f16: if f16c {
                    avx2::dot_f32_f16
                } else {
                    scalar::dot_f32_f16
                },
                l2_f32: avx2::l2_sq_f32,
                l2_f32_bounded: avx2::l2_sq_f32_bounded,
                dot_f32: avx2::dot_f32,
                l2_u8: avx2::l2_sq_u8,
                dot_u8: avx2::dot_u8,
                l2_i8: avx2::l2_sq_i8,
                dot_i8: avx2::dot_i8,
            };
        }
    }
    Kernels {
        name: "scalar",
        l2_f16: scalar::l2_sq_f16,
        dot_f16: scalar::dot_f16,
        l2_f32_f16: scalar::l2_sq_f32_f16,
        dot_f32_f16: scalar::dot_f32_f16,
        l2_f32: scalar::l2_sq_f32,
        l2_f32_bounded: |a, b, _| scalar::l2_sq_f32(a, b),
        dot_f32: scalar::dot_f32,
        l2_u8: scalar::l2_sq_u8,
        dot_u8: scalar::dot_u8,
        l2_i8: scalar::l2_sq_i8,
        dot_i8: scalar::dot_i8,
    }
}

/// Name of the kernel set chosen for this CPU ("avx2+fma" or "scalar"); the environment
/// variable `SSDANN_FORCE_SCALAR` forces the scalar set (read once, at first use).
pub fn kernel_name() -> &'static str {
    kernels().name
}

/// Squared L2 distance `Σ (a[i] - b[i])²` of two f32 vectors of equal length d.
///
/// # Panics
/// If `a.len() != b.len()` (a caller bug, never input-dependent: callers validate d).
#[inline]
pub fn l2_sq_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "l2_sq_f32: length mismatch");
    (kernels().l2_f32)(a, b)
}

/// Squared L2 of two f32 vectors with early abandon: checks the partial sum every 64
/// coordinates and returns as soon as it exceeds `bound` (then the result is only known to
/// be > `bound`); otherwise the exact distance.
///
/// # Panics
/// If `a.len() != b.len()`.
#[inline]
pub fn l2_sq_f32_bounded(a: &[f32], b: &[f32], bound: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "l2_sq_f32_bounded: length mismatch");
    (kernels().l2_f32_bounded)(a, b, bound)
}

/// Squared L2 distance of two f16 vectors (accumulated in f32), AVX2 + F16C when present.
///
/// # Panics
/// If `a.len() != b.len()`.
#[inline]
pub fn l2_sq_f16(a: &[half::f16], b: &[half::f16]) -> f32 {
    assert_eq!(a.len(), b.len(), "l2_sq_f16: length mismatch");
    (kernels().l2_f16)(a, b)
}

/// Inner product of two f16 vectors (accumulated in f32).
///
/// # Panics
/// If `a.len() != b.len()`.
#[inline]
pub fn dot_f16(a: &[half::f16], b: &[half::f16]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f16: length mismatch");
    (kernels().dot_f16)(a, b)
}

/// Squared L2 distance between an f32 vector (d values) and an f16 vector given as its
/// little-endian bytes (2 × d, any alignment — e.g. a format-2 record's vector), accumulated
/// in f32; AVX2 + F16C when present.
///
/// # Panics
/// If `half_le.len() != 2 × query.len()`.
#[inline]
pub fn l2_sq_f32_f16(query: &[f32], half_le: &[u8]) -> f32 {
    assert_eq!(
        2 * query.len(),
        half_le.len(),
        "l2_sq_f32_f16: length mismatch"
    );
    (kernels().l2_f32_f16)(query, half_le)
}

/// Inner product of an f32 vector and an f16 vector given as its little-endian bytes (as
/// [`l2_sq_f32_f16`]).
///
/// # Panics
/// If `half_le.len() != 2 × query.len()`.
#[inline]
pub fn dot_f32_f16(query: &[f32], half_le: &[u8]) -> f32 {
    assert_eq!(
        2 * query.len(),
        half_le.len(),
        "dot_f32_f16: length mismatch"
    );
    (kernels().dot_f32_f16)(query, half_le)
}

/// Converts f32 values to f16 (round to nearest even), vectorized where the CPU can.
///
/// # Panics
/// If the lengths differ.
pub fn f32_to_f16(src: &[f32], dst: &mut [half::f16]) {
    use half::slice::HalfFloatSliceExt;
    dst.convert_from_f32_slice(src);
}

/// Inner product `Σ a[i]·b[i]` of two f32 vectors of equal length.
///
/// # Panics
/// If `a.len() != b.len()`.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_f32: length mismatch");
    (kernels().dot_f32)(a, b)
}

/// Exact squared L2 distance of two u8 vectors (length ≤ [`MAX_INT_DIM`]), as f32.
///
/// # Panics
/// If the lengths differ or exceed [`MAX_INT_DIM`].
#[inline]
pub fn l2_sq_u8(a: &[u8], b: &[u8]) -> f32 {
    assert!(
        a.len() == b.len() && a.len() <= MAX_INT_DIM,
        "l2_sq_u8: bad lengths"
    );
    (kernels().l2_u8)(a, b)
}

/// Exact inner product of two u8 vectors (length ≤ [`MAX_INT_DIM`]), as f32.
///
/// # Panics
/// If the lengths differ or exceed [`MAX_INT_DIM`].
#[inline]
pub fn dot_u8(a: &[u8], b: &[u8]) -> f32 {
    assert!(
        a.len() == b.len() && a.len() <= MAX_INT_DIM,
        "dot_u8: bad lengths"
    );
    (kernels().dot_u8)(a, b)
}

/// Exact squared L2 distance of two i8 vectors (length ≤ [`MAX_INT_DIM`]), as f32.
///
/// # Panics
/// If the lengths differ or exceed [`MAX_INT_DIM`].
#[inline]
pub fn l2_sq_i8(a: &[i8], b: &[i8]) -> f32 {
    assert!(
        a.len() == b.len() && a.len() <= MAX_INT_DIM,
        "l2_sq_i8: bad lengths"
    );
    (kernels().l2_i8)(a, b)
}

/// Exact inner product of two i8 vectors (length ≤ [`MAX_INT_DIM`]), as f32.
///
/// # Panics
/// If the lengths differ or exceed [`MAX_INT_DIM`].
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> f32 {
    assert!(
        a.len() == b.len() && a.len() <= MAX_INT_DIM,
        "dot_i8: bad lengths"
    );
    (kernels().dot_i8)(a, b)
}

/// Hints the CPU to pull `v` into cache (one prefetch per 64-byte line, up to `max_lines`
/// lines). A no-op off x86-64.
#[inline(always)]
pub fn prefetch<T>(v: &[T], max_lines: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let bytes = std::mem::size_of_val(v);
        let p = v.as_ptr() as *const i8;
        let mut off = 0;
        let mut lines = 0;
        while off < bytes && lines < max_lines {
            // SAFETY: prefetch is only a hint and never faults; `p + off` stays inside `v`.
            unsafe { std::arch::x86_64::_mm_prefetch(p.add(off), std::arch::x86_64::_MM_HINT_T0) };
            off += 64;
            lines += 1;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (v, max_lines);
}

/// Prefetches `lines` cache lines from `p` into L1: a hint that never faults, so `p` may be
/// null, stale or freed (it is never dereferenced).
#[inline]
pub fn prefetch_addr(p: *const u8, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    for l in 0..lines {
        // SAFETY: prefetch is only a hint, never faults and never dereferences; wrapping_add
        // makes no claim that the address is in bounds of anything.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                p.wrapping_add(64 * l).cast(),
                std::arch::x86_64::_MM_HINT_T0,
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, lines);
}

/// L2-normalizes `v` in place (for cosine). A zero vector is left as it is.
pub fn normalize(v: &mut [f32]) {
    let norm = dot_f32(v, v).sqrt();
    if norm > 0.0 {
        let inv = 1.0 / norm;
        v.iter_mut().for_each(|x| *x *= inv);
    }
}

pub mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    #[should_panic(expected = "length mismatch")]
    fn the_simd_wrappers_check_lengths_themselves() {
        // reached without the public function's check: the wrapper must not read past `b`
        let _ = avx2::l2_sq_u8(&[1u8; 40], &[1u8; 8]);
    }

    fn f64_l2(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum()
    }
    fn f64_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
    }
    fn pair<T: std::fmt::Debug + Clone>(
        s: impl Strategy<Value = T> + Clone,
    ) -> impl Strategy<Value = (Vec<T>, Vec<T>)> {
        (0usize..=1024).prop_flat_map(move |n| {
            (
                proptest::collection::vec(s.clone(), n),
                proptest::collection::vec(s.clone(), n),
            )
        })
    }

    proptest! {
        #[test]
        fn f32_kernels_match_f64_reference((a, b) in pair(-100.0f32..100.0)) {
            let tol = |r: f64| 1e-3 * (1.0 + r.abs()) + 1e-4 * a.len() as f64;
            let r = f64_l2(&a, &b);
            prop_assert!((f64::from(l2_sq_f32(&a, &b)) - r).abs() <= tol(r));
            prop_assert!((f64::from(scalar::l2_sq_f32(&a, &b)) - r).abs() <= tol(r));
            let r = f64_dot(&a, &b);
            prop_assert!((f64::from(dot_f32(&a, &b)) - r).abs() <= tol(r));
        }

        #[test]
        fn bounded_l2_is_exact_below_the_bound_and_above_it_otherwise((a, b) in pair(-10.0f32..10.0), frac in 0.0f32..1.5) {
            let exact = l2_sq_f32(&a, &b);
            let bound = exact * frac;
            let got = l2_sq_f32_bounded(&a, &b, bound);
            if exact <= bound {
                prop_assert!((got - exact).abs() <= 1e-3 * (1.0 + exact));
            } else {
                prop_assert!(got > bound || (got - exact).abs() <= 1e-3 * (1.0 + exact));
            }
            prop_assert!((l2_sq_f32_bounded(&a, &b, f32::INFINITY) - exact).abs() <= 1e-3 * (1.0 + exact));
        }

        #[test]
        fn f16_kernels_match_the_reference((a, b) in pair(-4.0f32..4.0)) {
            let (mut ha, mut hb) = (vec![half::f16::ZERO; a.len()], vec![half::f16::ZERO; b.len()]);
            f32_to_f16(&a, &mut ha);
            f32_to_f16(&b, &mut hb);
            let r = scalar::l2_sq_f16(&ha, &hb);
            prop_assert!((l2_sq_f16(&ha, &hb) - r).abs() <= 1e-3 * (1.0 + r.abs()));
            let r = scalar::dot_f16(&ha, &hb);
            prop_assert!((dot_f16(&ha, &hb) - r).abs() <= 1e-3 * (1.0 + r.abs()));
            // f16 distances track f32 ones to ~1e-3 relative
            let exact = f64_l2(&a, &b) as f32;
            prop_assert!((l2_sq_f16(&ha, &hb) - exact).abs() <= 2e-3 * (1.0 + exact));
        }

        #[test]
        fn f32_by_f16_kernels_match_the_reference_at_any_alignment((a, b) in pair(-4.0f32..4.0), shift in 0usize..2) {
            let mut hb = vec![half::f16::ZERO; b.len()];
            f32_to_f16(&b, &mut hb);
            // the record's bytes, starting at an odd address when shift = 1
            let mut raw = vec![0u8; shift];
            raw.extend(hb.iter().flat_map(|h| h.to_le_bytes()));
            let v = &raw[shift..];
            let r = scalar::l2_sq_f32_f16(&a, v);
            prop_assert!((l2_sq_f32_f16(&a, v) - r).abs() <= 1e-3 * (1.0 + r.abs()));
            let hf: Vec<f32> = hb.iter().map(|h| h.to_f32()).collect();
            prop_assert!((r - scalar::l2_sq_f32(&a, &hf)).abs() <= 1e-4 * (1.0 + r.abs()));
            let r = scalar::dot_f32_f16(&a, v);
            prop_assert!((dot_f32_f16(&a, v) - r).abs() <= 1e-3 * (1.0 + r.abs()));
            prop_assert!((r - scalar::dot_f32(&a, &hf)).abs() <= 1e-4 * (1.0 + r.abs()));
        }

        #[test]
        fn u8_kernels_are_exact((a, b) in pair(any::<u8>())) {
            prop_assert_eq!(l2_sq_u8(&a, &b), scalar::l2_sq_u8(&a, &b));
            prop_assert_eq!(dot_u8(&a, &b), scalar::dot_u8(&a, &b));
        }

        #[test]
        fn i8_kernels_are_exact((a, b) in pair(any::<i8>())) {
            prop_assert_eq!(l2_sq_i8(&a, &b), scalar::l2_sq_i8(&a, &b));
            prop_assert_eq!(dot_i8(&a, &b), scalar::dot_i8(&a, &b));
        }
    }

    #[test]
    fn integer_extremes_do_not_overflow() {
        let a = vec![255u8; MAX_INT_DIM];
        let b = vec![0u8; MAX_INT_DIM];
        assert_eq!(l2_sq_u8(&a, &b), (65025.0f64 * MAX_INT_DIM as f64) as f32);
        assert_eq!(dot_u8(&a, &a), (65025.0f64 * MAX_INT_DIM as f64) as f32);
        let c = vec![-128i8; MAX_INT_DIM];
        let d = vec![127i8; MAX_INT_DIM];
        assert_eq!(l2_sq_i8(&c, &d), (65025.0f64 * MAX_INT_DIM as f64) as f32);
    }

    #[test]
    fn metric_round_trips() {
        for m in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            assert_eq!(Metric::from_code(m.code()), Some(m));
            assert_eq!(m.name().parse::<Metric>(), Ok(m));
        }
        assert_eq!(Metric::from_code(9), None);
        assert!("hamming".parse::<Metric>().is_err());
        // another library's spelling is refused, naming the metric meant
        for (alias, meant) in [
            ("mips", "\"ip\""),
            ("L2", "\"l2\""),
            ("angular", "\"cosine\""),
        ] {
            let e = alias.parse::<Metric>().unwrap_err();
            assert!(e.contains(&format!("did you mean {meant}")), "{alias}: {e}");
        }
    }

    #[test]
    fn normalize_gives_unit_norm() {
        let mut v = vec![3.0f32, 4.0];
        normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0f32; 3];
        normalize(&mut z);
        assert_eq!(z, vec![0.0; 3]);
    }
}
