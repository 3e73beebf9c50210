//! Distance kernels: SIMD (dispatched) against the scalar reference.
//! f32 384-d (pypi-minilm) and u8 128-d (SIFT/BIGANN shape).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ssdann::layout::distance::{self, scalar};

fn vecs<T: Copy>(n: usize, f: impl Fn(usize) -> T) -> (Vec<T>, Vec<T>) {
    (
        (0..n).map(&f).collect(),
        (0..n).map(|i| f(i * 7 + 3)).collect(),
    )
}

fn kernels(c: &mut Criterion) {
    let mut g = c.benchmark_group("distance");
    g.throughput(Throughput::Elements(1));
    let (a, b) = vecs(384, |i| ((i * 37) % 101) as f32 / 101.0 - 0.5);
    g.bench_function(format!("l2_sq_f32/384/{}", distance::kernel_name()), |x| {
        x.iter(|| distance::l2_sq_f32(black_box(&a), black_box(&b)))
    });
    g.bench_function("l2_sq_f32/384/scalar", |x| {
        x.iter(|| scalar::l2_sq_f32(black_box(&a), black_box(&b)))
    });
    g.bench_function(format!("dot_f32/384/{}", distance::kernel_name()), |x| {
        x.iter(|| distance::dot_f32(black_box(&a), black_box(&b)))
    });
    g.bench_function("dot_f32/384/scalar", |x| {
        x.iter(|| scalar::dot_f32(black_box(&a), black_box(&b)))
    });
    let (a, b) = vecs(128, |i| ((i * 37) % 251) as u8);
    g.bench_function(format!("l2_sq_u8/128/{}", distance::kernel_name()), |x| {
        x.iter(|| distance::l2_sq_u8(black_box(&a), black_box(&b)))
    });
    g.bench_function("l2_sq_u8/128/scalar", |x| {
        x.iter(|| scalar::l2_sq_u8(black_box(&a), black_box(&b)))
    });
    g.bench_function(format!("dot_u8/128/{}", distance::kernel_name()), |x| {
        x.iter(|| distance::dot_u8(black_box(&a), black_box(&b)))
    });
    let (a, b) = vecs(128, |i| ((i * 37) % 251) as u8 as i8);
    g.bench_function(format!("l2_sq_i8/128/{}", distance::kernel_name()), |x| {
        x.iter(|| distance::l2_sq_i8(black_box(&a), black_box(&b)))
    });
    g.bench_function("l2_sq_i8/128/scalar", |x| {
        x.iter(|| scalar::l2_sq_i8(black_box(&a), black_box(&b)))
    });
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
