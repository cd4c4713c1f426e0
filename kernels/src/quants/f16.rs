//! F16 weights with F16 activations: ggml's `ggml_vec_dot_f16` — both rows
//! are IEEE half, products and sums are taken in f32 (f64 in the scalar
//! reference, as ggml's generic code does).
//!
//! The activation row is converted to f16 once (round to nearest even), so a
//! matvec reads 2 bytes per weight and per activation, as llama.cpp does.
//! Conversions: F16C on x86, `fcvtl` on ARMv8.0 NEON (see [`crate::f16conv`]).

use super::f32::{float_entries, STEP};
use super::q8_0::check_vec_dot;
use crate::dispatch::{ActKernels, Backend, FormatKernels};
use crate::f16conv;
use crate::quants::{gemv_rows, VecDot};
use crate::types::GgmlType;

/// `y[i]` = f16 value `i` of `x` (little-endian), exactly.
pub fn dequantize_row_f16(x: &[u8], y: &mut [f32]) {
    f16conv::f16_to_f32_row_scalar(x, y)
}

/// The F16 activation "quantizer": `x` rounded to f16 (nearest even).
pub fn quantize_row_f16(x: &[f32], y: &mut [u8]) {
    f16conv::f32_to_f16_row_scalar(x, y)
}

/// `Σ x·y` of two f16 rows: f32 products accumulated in f64.
pub fn vec_dot_f16(n: usize, x: &[u8], y: &[u8]) -> f32 {
    check_vec_dot(GgmlType::F16, GgmlType::F16, n, x, y);
    let f = |c: &[u8]| f16conv::f16_bits_to_f32(u16::from_le_bytes([c[0], c[1]]));
    let xs = x.chunks_exact(2).take(n);
    xs.zip(y.chunks_exact(2))
        .map(|(a, b)| (f(a) * f(b)) as f64)
        .sum::<f64>() as f32
}

const _: () = assert!(STEP == 16);

#[cfg(target_arch = "x86_64")]
mod avx2 {
    pub(super) use crate::quants::f32::avx2::dot_rows;
    use crate::quants::f32::avx2::Load8;
    use core::arch::x86_64::*;

    pub(super) struct F16;
    impl Load8 for F16 {
        const BYTES: usize = 2;
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn load8(p: *const u8) -> __m256 {
            // SAFETY: per the trait contract (16 readable bytes, F16C).
            unsafe { crate::f16conv::x86::load8_f16(p) }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    pub(super) use crate::quants::f32::neon::dot_rows;
    use crate::quants::f32::neon::Load8;
    use core::arch::aarch64::*;

    pub(super) struct F16;
    impl Load8 for F16 {
        const BYTES: usize = 2;
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn load8(p: *const u8) -> (float32x4_t, float32x4_t) {
            // SAFETY: per the trait contract (16 readable bytes).
            unsafe { crate::f16conv::neon::load8_f16(p) }
        }
    }
}

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_f16(n, w, a)
    }
}

#[cfg(target_arch = "x86_64")]
float_entries!(
    GgmlType::F16,
    vec_dot_avx2,
    gemv_avx2,
    avx2,
    avx2::F16,
    vec_dot_f16
);
#[cfg(target_arch = "aarch64")]
float_entries!(
    GgmlType::F16,
    vec_dot_neon,
    gemv_neon,
    neon,
    neon::F16,
    vec_dot_f16
);

/// F16 kernels for `level`.
pub(crate) fn select(level: Backend) -> FormatKernels {
    let conv = f16conv::select(level);
    let k = |vec_dot, gemv, path| FormatKernels {
        weight: GgmlType::F16,
        act: GgmlType::F16,
        dequantize_row: conv.f16_to_f32,
        vec_dot,
        gemv,
        path,
    };
    match level {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 | Backend::Avx512 => k(vec_dot_avx2, gemv_avx2, Backend::Avx2),
        #[cfg(target_arch = "aarch64")]
        Backend::Neon | Backend::Dotprod => k(vec_dot_neon, gemv_neon, Backend::Neon),
        _ => k(vec_dot_f16, gemv_rows::<Scalar>, Backend::Scalar),
    }
}

/// The F16 activation converter for `level`.
pub(crate) fn select_act(level: Backend) -> ActKernels {
    let conv = f16conv::select(level);
    ActKernels {
        act: GgmlType::F16,
        quantize_row: conv.f32_to_f16,
        path: conv.path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    /// SIMD (f32 lanes) vs scalar (f64), relative to `Σ|w·x|`.
    const F16_SIMD_BUDGET: f64 = SIMD_REL_BUDGET;
    /// `|vec_dot - f32 dot| / n`: the activation's rounding to f16 only
    /// (relative 2^-11 per element on values ≤ 2.1 → ≤ ~2e-3 per term).
    const F16_DOT_ERROR: f64 = 1e-3;

    fn f16_row(v: &[f32]) -> Vec<u8> {
        v.iter()
            .flat_map(|x| half::f16::from_f32(*x).to_bits().to_le_bytes())
            .collect()
    }

    #[test]
    fn dequantize_matches_gguf_py_golden() {
        let blocks = fixture("quant/f16.blocks.bin");
        let want = f32s_le(&fixture("quant/f16.f32.bin"));
        for b in backends() {
            let mut got = vec![0f32; want.len()];
            (select(b).dequantize_row)(&blocks, &mut got);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(g, w)| g.to_bits() == w.to_bits()),
                "{b}"
            );
        }
    }

    #[test]
    fn simd_matches_scalar() {
        let mut rng = Rng::new(16);
        for (n, rows) in [(1, 3), (15, 5), (16, 4), (47, 9), (256, 6), (4096, 5)] {
            let w = f16_row(&rng.normals(n * rows, 1.0));
            let x = rng.normals(n, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                F16_SIMD_BUDGET,
                &format!("f16 {n}×{rows}"),
            );
        }
    }

    #[test]
    fn dot_error_within_budget() {
        let n = 4096;
        let w = f16_row(&synthetic(n, 0.0));
        let y = synthetic(n, 1.0);
        for b in backends() {
            let e = dot_error(&select(b), &select_act(b), n, &w, &y);
            assert!(e < F16_DOT_ERROR, "{b}: {e}");
        }
    }

    #[test]
    fn overflow_stress() {
        // ±65504 weights and activations: products ~4e9, fine in f32.
        let n = 80;
        let w: Vec<u8> = f16_row(
            &(0..n * 3)
                .map(|i| if i % 3 == 0 { -65504.0 } else { 65504.0 })
                .collect::<Vec<_>>(),
        );
        let x: Vec<f32> = (0..n)
            .map(|i| if i % 2 == 0 { 65504.0 } else { -65000.0 })
            .collect();
        check_backends(select, select_act, &w, &x, F16_SIMD_BUDGET, "f16 stress");
    }
}
