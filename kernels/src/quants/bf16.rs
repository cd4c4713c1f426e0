//! BF16 weights with BF16 activations: ggml's `ggml_vec_dot_bf16` — both rows
//! are bfloat16 (the top half of an f32), products and sums in f32 (f64 in
//! the scalar reference, as ggml's generic code does).
//!
//! The activation row is rounded to bf16 once, as ggml does
//! (`ggml_compute_fp32_to_bf16`: nearest even, NaNs kept quiet). Widening
//! bf16 → f32 is a 16-bit shift on every path.

use super::f32::{float_entries, STEP};
use super::q8_0::check_vec_dot;
use crate::dispatch::{ActKernels, Backend, FormatKernels};
use crate::f16conv;
use crate::quants::{gemv_rows, VecDot};
use crate::types::GgmlType;

/// `y[i]` = bf16 value `i` of `x` (little-endian), exactly.
pub fn dequantize_row_bf16(x: &[u8], y: &mut [f32]) {
    f16conv::bf16_to_f32_row_scalar(x, y)
}

/// The BF16 activation "quantizer": `x` rounded to bf16 as ggml rounds.
pub fn quantize_row_bf16(x: &[f32], y: &mut [u8]) {
    f16conv::f32_to_bf16_row(x, y)
}

/// `Σ x·y` of two bf16 rows: f32 products accumulated in f64.
pub fn vec_dot_bf16(n: usize, x: &[u8], y: &[u8]) -> f32 {
    check_vec_dot(GgmlType::BF16, GgmlType::BF16, n, x, y);
    let f = |c: &[u8]| f16conv::bf16_bits_to_f32(u16::from_le_bytes([c[0], c[1]]));
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

    pub(super) struct BF16;
    impl Load8 for BF16 {
        const BYTES: usize = 2;
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn load8(p: *const u8) -> __m256 {
            // SAFETY: per the trait contract (16 readable bytes).
            let h = unsafe { _mm_loadu_si128(p as *const __m128i) };
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    pub(super) use crate::quants::f32::neon::dot_rows;
    use crate::quants::f32::neon::Load8;
    use core::arch::aarch64::*;

    pub(super) struct BF16;
    impl Load8 for BF16 {
        const BYTES: usize = 2;
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn load8(p: *const u8) -> (float32x4_t, float32x4_t) {
            // SAFETY: per the trait contract (16 readable bytes).
            let h = vreinterpretq_u16_u8(unsafe { vld1q_u8(p) });
            (
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(h))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(h)),
            )
        }
    }
}

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_bf16(n, w, a)
    }
}

#[cfg(target_arch = "x86_64")]
float_entries!(
    GgmlType::BF16,
    vec_dot_avx2,
    gemv_avx2,
    avx2,
    avx2::BF16,
    vec_dot_bf16
);
#[cfg(target_arch = "aarch64")]
float_entries!(
    GgmlType::BF16,
    vec_dot_neon,
    gemv_neon,
    neon,
    neon::BF16,
    vec_dot_bf16
);

/// BF16 kernels for `level`.
pub(crate) fn select(level: Backend) -> FormatKernels {
    let conv = f16conv::select(level);
    let k = |vec_dot, gemv, path| FormatKernels {
        weight: GgmlType::BF16,
        act: GgmlType::BF16,
        dequantize_row: conv.bf16_to_f32,
        vec_dot,
        gemv,
        path,
    };
    match level {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 | Backend::Avx512 => k(vec_dot_avx2, gemv_avx2, Backend::Avx2),
        #[cfg(target_arch = "aarch64")]
        Backend::Neon | Backend::Dotprod => k(vec_dot_neon, gemv_neon, Backend::Neon),
        _ => k(vec_dot_bf16, gemv_rows::<Scalar>, Backend::Scalar),
    }
}

/// The BF16 activation converter (portable; an activation row is small).
pub(crate) fn select_act(_level: Backend) -> ActKernels {
    ActKernels {
        act: GgmlType::BF16,
        quantize_row: quantize_row_bf16,
        path: Backend::Scalar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    /// SIMD (f32 lanes) vs scalar (f64), relative to `Σ|w·x|`.
    const BF16_SIMD_BUDGET: f64 = SIMD_REL_BUDGET;
    /// `|vec_dot - f32 dot| / n`: the activation's rounding to bf16 only
    /// (relative 2^-8 per element on values ≤ 2.1 → ≤ ~2e-2 per term, averaging out).
    const BF16_DOT_ERROR: f64 = 5e-3;

    fn bf16_row(v: &[f32]) -> Vec<u8> {
        v.iter()
            .flat_map(|x| f16conv::f32_to_bf16_bits(*x).to_le_bytes())
            .collect()
    }

    #[test]
    fn dequantize_matches_gguf_py_golden() {
        let blocks = fixture("quant/bf16.blocks.bin");
        let want = f32s_le(&fixture("quant/bf16.f32.bin"));
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
        let mut rng = Rng::new(216);
        for (n, rows) in [(1, 3), (15, 5), (16, 4), (47, 9), (256, 6), (4096, 5)] {
            let w = bf16_row(&rng.normals(n * rows, 1.0));
            let x = rng.normals(n, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                BF16_SIMD_BUDGET,
                &format!("bf16 {n}×{rows}"),
            );
        }
    }

    #[test]
    fn dot_error_within_budget() {
        let n = 4096;
        let w = bf16_row(&synthetic(n, 0.0));
        let y = synthetic(n, 1.0);
        for b in backends() {
            let e = dot_error(&select(b), &select_act(b), n, &w, &y);
            assert!(e < BF16_DOT_ERROR, "{b}: {e}");
        }
    }

    #[test]
    fn overflow_stress() {
        // Huge magnitudes (products ~1e37) with cancellation.
        let n = 80;
        let w = bf16_row(
            &(0..n * 3)
                .map(|i| if i % 3 == 0 { -3e18 } else { 3e18 })
                .collect::<Vec<_>>(),
        );
        let x: Vec<f32> = (0..n)
            .map(|i| if i % 2 == 0 { 2e18 } else { -1e18 })
            .collect();
        check_backends(select, select_act, &w, &x, BF16_SIMD_BUDGET, "bf16 stress");
    }
}
