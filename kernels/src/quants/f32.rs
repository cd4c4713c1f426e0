//! F32 weights (norm vectors, the odd small matrix) with F32 activations.
//!
//! Also home of the float matvec machinery shared with [`super::f16`] and
//! [`super::bf16`]: each SIMD module has a `Load8` trait (eight elements of a
//! row → f32 lanes) and one `dot_rows::<L, R>` kernel over `R` rows, 16
//! elements per step with two accumulators per row; the tail (n mod 16) goes
//! through the format's scalar `vec_dot`.
//!
//! The scalar `vec_dot` accumulates in f64, as ggml's generic
//! `ggml_vec_dot_f32` does (`ggml_float`); the SIMD ones in f32 lanes, as
//! ggml's SIMD ones do.

use super::q8_0::{check_gemv, check_vec_dot, run_gemv};
use crate::dispatch::{ActKernels, Backend, FormatKernels};
use crate::quants::{gemv_rows, VecDot};
use crate::types::GgmlType;

/// Elements per SIMD step of the float kernels.
pub(crate) const STEP: usize = 16;

/// `y[i]` = little-endian f32 `i` of `x`.
pub fn dequantize_row_f32(x: &[u8], y: &mut [f32]) {
    assert!(
        x.len() / 4 >= y.len(),
        "dequantize_row_f32: {} bytes for {} values",
        x.len(),
        y.len()
    );
    for (o, c) in y.iter_mut().zip(x.chunks_exact(4)) {
        *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

/// The F32 "activation quantizer": `x` as little-endian bytes.
pub fn quantize_row_f32(x: &[f32], y: &mut [u8]) {
    assert!(
        y.len() / 4 >= x.len(),
        "quantize_row_f32: {} values into {} bytes",
        x.len(),
        y.len()
    );
    for (c, v) in y.chunks_exact_mut(4).zip(x) {
        c.copy_from_slice(&v.to_le_bytes());
    }
}

/// `Σ x·y` of two little-endian f32 rows, accumulated in f64.
pub fn vec_dot_f32(n: usize, x: &[u8], y: &[u8]) -> f32 {
    check_vec_dot(GgmlType::F32, GgmlType::F32, n, x, y);
    let f = |c: &[u8]| f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    let xs = x.chunks_exact(4).take(n);
    xs.zip(y.chunks_exact(4))
        .map(|(a, b)| (f(a) * f(b)) as f64)
        .sum::<f64>() as f32
}

/// `out[r] = simd(rows r, first n - n%16 elements) + scalar(tail)`: the driver
/// of every float format's SIMD `vec_dot`/`gemv`.
///
/// # Safety
/// `k4`/`k1` must be runnable on this CPU and read only the `n / 16 * 16`
/// first elements (`eb` bytes each) of the rows and of `a`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn float_gemv(
    t: GgmlType,
    n: usize,
    w: &[u8],
    row_bytes: usize,
    a: &[u8],
    out: &mut [f32],
    k4: super::q8_0::RowsKernel<4>,
    k1: super::q8_0::RowsKernel<1>,
    tail: fn(usize, &[u8], &[u8]) -> f32,
) {
    check_gemv(t, t, n, w, row_bytes, a, out.len());
    let eb = t.block_bytes();
    let main = n / STEP * STEP;
    // SAFETY: per the caller; check_gemv accepted the shapes, and the kernels
    // read `main` elements of each row and of `a`.
    unsafe { run_gemv(main / STEP, w, row_bytes, a, out, k4, k1) };
    if main < n {
        for (r, o) in out.iter_mut().enumerate() {
            let row = &w[r * row_bytes + main * eb..];
            *o += tail(n - main, row, &a[main * eb..]);
        }
    }
}

// ------------------------------------------------------------------- x86 --

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::STEP;
    use crate::quants::q8_0::avx2::hsum_ps;
    use core::arch::x86_64::*;

    /// Eight consecutive elements of a float row as f32 lanes.
    pub(crate) trait Load8 {
        /// Bytes per element.
        const BYTES: usize;
        /// # Safety
        /// `p` valid for reading `8 * BYTES` bytes; AVX2/FMA/F16C available.
        unsafe fn load8(p: *const u8) -> __m256;
    }

    pub(crate) struct F32;
    impl Load8 for F32 {
        const BYTES: usize = 4;
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn load8(p: *const u8) -> __m256 {
            // SAFETY: per the trait contract; unaligned load.
            unsafe { _mm256_loadu_ps(p as *const f32) }
        }
    }

    /// `Σ w·a` over the first `steps * 16` elements of `R` rows.
    ///
    /// # Safety
    /// See [`crate::quants::q8_0::RowsKernel`] (`steps` counts 16-element steps).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot_rows<L: Load8, const R: usize>(
        steps: usize,
        w: *const u8,
        row_bytes: usize,
        a: *const u8,
    ) -> [f32; R] {
        let mut acc0 = [_mm256_setzero_ps(); R];
        let mut acc1 = [_mm256_setzero_ps(); R];
        let half = 8 * L::BYTES;
        for i in 0..steps {
            // SAFETY: step i of a and of every row is in bounds (caller).
            unsafe {
                let ap = a.add(i * STEP * L::BYTES);
                let (y0, y1) = (L::load8(ap), L::load8(ap.add(half)));
                for r in 0..R {
                    let wp = w.add(r * row_bytes + i * STEP * L::BYTES);
                    acc0[r] = _mm256_fmadd_ps(L::load8(wp), y0, acc0[r]);
                    acc1[r] = _mm256_fmadd_ps(L::load8(wp.add(half)), y1, acc1[r]);
                }
            }
        }
        core::array::from_fn(|r| hsum_ps(_mm256_add_ps(acc0[r], acc1[r])))
    }
}

#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use super::STEP;
    use core::arch::aarch64::*;

    /// Eight consecutive elements of a float row as two f32x4.
    pub(crate) trait Load8 {
        /// Bytes per element.
        const BYTES: usize;
        /// # Safety
        /// `p` valid for reading `8 * BYTES` bytes; NEON available.
        unsafe fn load8(p: *const u8) -> (float32x4_t, float32x4_t);
    }

    pub(crate) struct F32;
    impl Load8 for F32 {
        const BYTES: usize = 4;
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn load8(p: *const u8) -> (float32x4_t, float32x4_t) {
            // SAFETY: per the trait contract; vld1q_u8 has no alignment need.
            unsafe {
                (
                    vreinterpretq_f32_u8(vld1q_u8(p)),
                    vreinterpretq_f32_u8(vld1q_u8(p.add(16))),
                )
            }
        }
    }

    /// `Σ w·a` over the first `steps * 16` elements of `R` rows.
    ///
    /// # Safety
    /// See [`crate::quants::q8_0::RowsKernel`] (`steps` counts 16-element steps).
    #[target_feature(enable = "neon")]
    pub(crate) unsafe fn dot_rows<L: Load8, const R: usize>(
        steps: usize,
        w: *const u8,
        row_bytes: usize,
        a: *const u8,
    ) -> [f32; R] {
        let mut acc = [[vdupq_n_f32(0.0); 4]; R];
        let half = 8 * L::BYTES;
        for i in 0..steps {
            // SAFETY: step i of a and of every row is in bounds (caller).
            unsafe {
                let ap = a.add(i * STEP * L::BYTES);
                let (y0, y1) = L::load8(ap);
                let (y2, y3) = L::load8(ap.add(half));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let wp = w.add(r * row_bytes + i * STEP * L::BYTES);
                    let (x0, x1) = L::load8(wp);
                    let (x2, x3) = L::load8(wp.add(half));
                    acc[0] = vfmaq_f32(acc[0], x0, y0);
                    acc[1] = vfmaq_f32(acc[1], x1, y1);
                    acc[2] = vfmaq_f32(acc[2], x2, y2);
                    acc[3] = vfmaq_f32(acc[3], x3, y3);
                }
            }
        }
        core::array::from_fn(|r| {
            let [a0, a1, a2, a3] = acc[r];
            vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)))
        })
    }
}

// ------------------------------------------------------- dispatch table --

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_f32(n, w, a)
    }
}

/// Safe F32/F16/BF16 table entries around `$m::dot_rows::<$load, R>`, with
/// `$scalar` for the tails.
macro_rules! float_entries {
    ($t:expr, $vec_dot:ident, $gemv:ident, $m:ident, $load:ty, $scalar:path) => {
        fn $vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let mut out = [0f32];
            $gemv(n, w, 0, a, &mut out);
            out[0]
        }
        fn $gemv(n: usize, w: &[u8], row_bytes: usize, a: &[u8], out: &mut [f32]) {
            // A single row may be passed with stride 0 by vec_dot.
            let stride = if out.len() <= 1 {
                row_bytes.max(n * $t.block_bytes())
            } else {
                row_bytes
            };
            // SAFETY: `select` installs this only for a backend at or above the
            // module's, and `Kernels` only builds tables for backends the CPU
            // supports; float_gemv checks the shapes before running the kernels.
            unsafe {
                $crate::quants::f32::float_gemv(
                    $t,
                    n,
                    w,
                    stride,
                    a,
                    out,
                    $m::dot_rows::<$load, 4>,
                    $m::dot_rows::<$load, 1>,
                    $scalar,
                )
            }
        }
    };
}
pub(crate) use float_entries;

#[cfg(target_arch = "x86_64")]
float_entries!(
    GgmlType::F32,
    vec_dot_avx2,
    gemv_avx2,
    avx2,
    avx2::F32,
    vec_dot_f32
);
#[cfg(target_arch = "aarch64")]
float_entries!(
    GgmlType::F32,
    vec_dot_neon,
    gemv_neon,
    neon,
    neon::F32,
    vec_dot_f32
);

/// F32 kernels for `level`.
pub(crate) fn select(level: Backend) -> FormatKernels {
    let k = |vec_dot, gemv, path| FormatKernels {
        weight: GgmlType::F32,
        act: GgmlType::F32,
        dequantize_row: dequantize_row_f32,
        vec_dot,
        gemv,
        path,
    };
    match level {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 | Backend::Avx512 => k(vec_dot_avx2, gemv_avx2, Backend::Avx2),
        #[cfg(target_arch = "aarch64")]
        Backend::Neon | Backend::Dotprod => k(vec_dot_neon, gemv_neon, Backend::Neon),
        _ => k(vec_dot_f32, gemv_rows::<Scalar>, Backend::Scalar),
    }
}

/// The F32 activation "quantizer" (a copy) for any level.
pub(crate) fn select_act(_level: Backend) -> ActKernels {
    ActKernels {
        act: GgmlType::F32,
        quantize_row: quantize_row_f32,
        path: Backend::Scalar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    /// SIMD (f32 lanes) vs scalar (f64) for float rows: relative to `Σ|w·x|`.
    const F32_SIMD_BUDGET: f64 = SIMD_REL_BUDGET;
    /// Against the exact dot: f32 rounding of the products and sums only.
    const F32_DOT_ERROR: f64 = 1e-6;

    #[test]
    fn simd_matches_scalar() {
        let mut rng = Rng::new(32);
        for (n, rows) in [(1, 3), (15, 5), (16, 4), (33, 9), (256, 6), (4096, 4)] {
            let w: Vec<u8> = rng
                .normals(n * rows, 1.0)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            let x = rng.normals(n, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                F32_SIMD_BUDGET,
                &format!("f32 {n}×{rows}"),
            );
        }
    }

    #[test]
    fn dot_error_is_tiny() {
        let n = 4096;
        let w: Vec<u8> = synthetic(n, 0.0)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let y = synthetic(n, 1.0);
        for b in backends() {
            let e = dot_error(&select(b), &select_act(b), n, &w, &y);
            assert!(e < F32_DOT_ERROR, "{b}: {e}");
        }
    }

    #[test]
    fn overflow_stress() {
        // Large magnitudes (products near 1e36) and cancellation.
        let n = 100;
        let w: Vec<u8> = (0..n * 4)
            .flat_map(|i| (if i % 2 == 0 { 1e18f32 } else { -1e18 }).to_le_bytes())
            .collect();
        let x: Vec<f32> = (0..n)
            .map(|i| if i % 3 == 0 { 3e17 } else { -1e18 })
            .collect();
        check_backends(select, select_act, &w, &x, F32_SIMD_BUDGET, "f32 stress");
    }
}
