//! Q4_1: 32 4-bit quants, an f16 scale and an f16 minimum per block,
//! `x = d·q + m`.
//!
//! Element `j < 16` is the low nibble of `qs[j]`, `j + 16` its high nibble.
//! Activations are Q8_1, whose `s = d_y·Σy` turns the offset into one
//! product per block: `Σ (d_x q + m)·d_y y = d_x d_y Σ q y + m·s`.
//!
//! Kernels: the quants are unsigned (0..15), so no sign trick is needed:
//! `maddubs` (AVX2), `vpdpbusd` (AVX-512 VNNI), `smull`/`sadalp` (NEON),
//! `sdot` (dotprod).

use super::q8_0::{check_vec_dot, read_blocks, simd_entries, QK8_0};
use super::q8_1::BlockQ8_1;
use crate::dispatch::{Backend, FormatKernels};
use crate::quants::{gemv_rows, VecDot};
use crate::types::GgmlType;
use half::f16;

/// Elements per block.
pub const QK4_1: usize = 32;

/// ggml's `block_q4_1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_1 {
    /// delta
    pub d: f16,
    /// min
    pub m: f16,
    /// nibbles / quants
    pub qs: [u8; QK4_1 / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20 && QK4_1 == QK8_0);
const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ4_1>();
const ACT_BYTES: usize = std::mem::size_of::<BlockQ8_1>();

// ---------------------------------------------------------------- scalar --

/// `y[j] = d·lo(qs[j]) + m`, `y[j+16] = d·hi(qs[j]) + m`.
pub fn dequantize_row_q4_1(x: &[u8], y: &mut [f32]) {
    assert!(
        y.len().is_multiple_of(QK4_1) && x.len() / BLOCK_BYTES >= y.len() / QK4_1,
        "dequantize_row_q4_1: {} bytes cannot give {} values",
        x.len(),
        y.len()
    );
    for (b, out) in read_blocks::<BlockQ4_1>(x).zip(y.chunks_exact_mut(QK4_1)) {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        let (lo, hi) = out.split_at_mut(QK4_1 / 2);
        for j in 0..QK4_1 / 2 {
            lo[j] = (b.qs[j] & 0x0f) as f32 * d + m;
            hi[j] = (b.qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// ggml's `quantize_row_q4_1_ref`: `d = (max - min)/15`, `m = min`,
/// `q = min(15, ⌊(x - min)/d + 0.5⌋)`.
pub fn quantize_row_q4_1_ref(x: &[f32], y: &mut [u8]) {
    super::q8_0::check_quantize("quantize_row_q4_1_ref", x, y, BLOCK_BYTES);
    for (xb, yb) in x.chunks_exact(QK4_1).zip(y.chunks_exact_mut(BLOCK_BYTES)) {
        let min = xb.iter().fold(f32::MAX, |m, &v| if v < m { v } else { m });
        let max = xb.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut b = BlockQ4_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qs: [0; QK4_1 / 2],
        };
        for j in 0..QK4_1 / 2 {
            let q0 = (((xb[j] - min) * id + 0.5) as i8).min(15) as u8;
            let q1 = (((xb[j + 16] - min) * id + 0.5) as i8).min(15) as u8;
            b.qs[j] = q0 | (q1 << 4);
        }
        yb.copy_from_slice(bytemuck::bytes_of(&b));
    }
}

/// `Σ x·y` of a Q4_1 weight row and a Q8_1 activation row (ggml's
/// `ggml_vec_dot_q4_1_q8_1`).
pub fn vec_dot_q4_1_q8_1(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let nb = check_vec_dot(GgmlType::Q4_1, GgmlType::Q8_1, n, x, y);
    let xs = read_blocks::<BlockQ4_1>(x).take(nb);
    let ys = read_blocks::<BlockQ8_1>(y);
    let mut sumf = 0f32;
    for (bx, by) in xs.zip(ys) {
        let mut sumi = 0i32;
        for j in 0..QK4_1 / 2 {
            sumi += (bx.qs[j] & 0x0f) as i32 * by.qs[j] as i32;
            sumi += (bx.qs[j] >> 4) as i32 * by.qs[j + 16] as i32;
        }
        sumf += (bx.d.to_f32() * by.d.to_f32()) * sumi as f32 + bx.m.to_f32() * by.s.to_f32();
    }
    sumf
}

// ------------------------------------------------------------------- x86 --

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{ACT_BYTES, BLOCK_BYTES};
    use crate::quants::q8_0::avx2::{mul_sum_u8_i8_ps, nibbles_32};
    use crate::quants::q8_0::x86::{BlockDot, PairDot};
    use core::arch::x86_64::*;

    /// Q4_1 blocks: unsigned nibbles, `maddubs`.
    pub(super) struct Q4_1;
    impl BlockDot for Q4_1 {
        const W_BYTES: usize = BLOCK_BYTES;
        const A_BYTES: usize = ACT_BYTES;
        const A_QS: usize = 4;
        const HAS_MIN: bool = true;
        type Shared = ();
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn shared(_: __m256i) {}
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn dot(wb: *const u8, y: __m256i, _: ()) -> __m256 {
            // SAFETY: per the trait contract (one whole block at `wb`).
            unsafe { mul_sum_u8_i8_ps(nibbles_32(wb.add(4)), y) }
        }
    }

    impl PairDot for Q4_1 {
        type Shared2 = ();
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn shared2(_: __m256i, _: __m256i) {}
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn dot2(wa: *const u8, ylo: __m256i, yhi: __m256i, _: ()) -> __m256 {
            const W: usize = <Q4_1 as BlockDot>::W_BYTES;
            // SAFETY: per the trait contract (two whole blocks at `wa`).
            unsafe {
                let t = _mm256_loadu2_m128i(
                    wa.add(4 + W) as *const __m128i,
                    wa.add(4) as *const __m128i,
                );
                let lo = _mm256_and_si256(t, _mm256_set1_epi8(0x0f));
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(t), _mm256_set1_epi8(0x0f));
                // q·|y| ≤ 15·127: the two halves' pair sums add up in i16.
                let p =
                    _mm256_add_epi16(_mm256_maddubs_epi16(lo, ylo), _mm256_maddubs_epi16(hi, yhi));
                _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)))
            }
        }
    }

    /// `R` rows through the shared x86 driver.
    ///
    /// # Safety
    /// See [`crate::quants::q8_0::RowsKernel`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_rows<const R: usize>(
        nb: usize,
        w: *const u8,
        row_bytes: usize,
        a: *const u8,
    ) -> [f32; R] {
        // SAFETY: per the caller.
        unsafe { crate::quants::q8_0::x86::avx2::drive2::<Q4_1, R>(nb, w, row_bytes, a) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{ACT_BYTES, BLOCK_BYTES};
    use crate::quants::q8_0::avx2::nibbles_32;
    use crate::quants::q8_0::avx512::mul_sum_u8_i8_ps;
    use crate::quants::q8_0::x86::{BlockDot, PairDot};
    use core::arch::x86_64::*;

    /// Q4_1 blocks: unsigned nibbles, `vpdpbusd`.
    pub(super) struct Q4_1;
    impl BlockDot for Q4_1 {
        const W_BYTES: usize = BLOCK_BYTES;
        const A_BYTES: usize = ACT_BYTES;
        const A_QS: usize = 4;
        const HAS_MIN: bool = true;
        type Shared = ();
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn shared(_: __m256i) {}
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn dot(wb: *const u8, y: __m256i, _: ()) -> __m256 {
            // SAFETY: per the trait contract (one whole block at `wb`).
            unsafe { mul_sum_u8_i8_ps(nibbles_32(wb.add(4)), y) }
        }
    }

    impl PairDot for Q4_1 {
        type Shared2 = ();
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn shared2(_: __m256i, _: __m256i) {}
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn dot2(wa: *const u8, ylo: __m256i, yhi: __m256i, _: ()) -> __m256 {
            const W: usize = <Q4_1 as BlockDot>::W_BYTES;
            // SAFETY: per the trait contract (two whole blocks at `wa`).
            unsafe {
                let t = _mm256_loadu2_m128i(
                    wa.add(4 + W) as *const __m128i,
                    wa.add(4) as *const __m128i,
                );
                let lo = _mm256_and_si256(t, _mm256_set1_epi8(0x0f));
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(t), _mm256_set1_epi8(0x0f));
                let z = _mm256_setzero_si256();
                _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(
                    _mm256_dpbusd_epi32(z, lo, ylo),
                    hi,
                    yhi,
                ))
            }
        }
    }

    /// `R` rows through the shared x86 driver.
    ///
    /// # Safety
    /// See [`crate::quants::q8_0::RowsKernel`].
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn dot_rows<const R: usize>(
        nb: usize,
        w: *const u8,
        row_bytes: usize,
        a: *const u8,
    ) -> [f32; R] {
        // SAFETY: per the caller.
        unsafe { crate::quants::q8_0::x86::avx512::drive2::<Q4_1, R>(nb, w, row_bytes, a) }
    }
}

// --------------------------------------------------------------- aarch64 --

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{ACT_BYTES, BLOCK_BYTES};
    use crate::quants::q8_0::arm::NeonBlock;
    use core::arch::aarch64::*;

    pub(super) struct Q4_1;
    impl NeonBlock for Q4_1 {
        const W_BYTES: usize = BLOCK_BYTES;
        const A_BYTES: usize = ACT_BYTES;
        const A_QS: usize = 4;
        const HAS_MIN: bool = true;
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn decode(wb: *const u8) -> (int8x16_t, int8x16_t) {
            // SAFETY: per the trait contract (one whole block at `wb`).
            unsafe {
                let v = vld1q_u8(wb.add(4));
                let lo = vandq_u8(v, vdupq_n_u8(0x0f));
                let hi = vshrq_n_u8::<4>(v);
                (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi))
            }
        }
    }

    /// `R` rows through the shared NEON driver.
    ///
    /// # Safety
    /// See [`crate::quants::q8_0::RowsKernel`].
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn dot_rows<const R: usize>(
        nb: usize,
        w: *const u8,
        row_bytes: usize,
        a: *const u8,
    ) -> [f32; R] {
        // SAFETY: per the caller.
        unsafe { crate::quants::q8_0::arm::drive_neon::<Q4_1, R>(nb, w, row_bytes, a) }
    }
}

#[cfg(target_arch = "aarch64")]
mod dotprod {
    /// `R` rows through the shared NEON+dotprod driver.
    ///
    /// # Safety
    /// See [`crate::quants::q8_0::RowsKernel`].
    #[target_feature(enable = "neon,dotprod")]
    pub(super) unsafe fn dot_rows<const R: usize>(
        nb: usize,
        w: *const u8,
        row_bytes: usize,
        a: *const u8,
    ) -> [f32; R] {
        // SAFETY: per the caller.
        unsafe {
            crate::quants::q8_0::arm::drive_dotprod::<super::neon::Q4_1, R>(nb, w, row_bytes, a)
        }
    }
}

// ------------------------------------------------------- dispatch table --

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_q4_1_q8_1(n, w, a)
    }
}

#[cfg(target_arch = "x86_64")]
simd_entries!(
    GgmlType::Q4_1,
    GgmlType::Q8_1,
    vec_dot_avx2,
    gemv_avx2,
    avx2
);
#[cfg(target_arch = "x86_64")]
simd_entries!(
    GgmlType::Q4_1,
    GgmlType::Q8_1,
    vec_dot_avx512,
    gemv_avx512,
    avx512
);
#[cfg(target_arch = "aarch64")]
simd_entries!(
    GgmlType::Q4_1,
    GgmlType::Q8_1,
    vec_dot_neon,
    gemv_neon,
    neon
);
#[cfg(target_arch = "aarch64")]
simd_entries!(
    GgmlType::Q4_1,
    GgmlType::Q8_1,
    vec_dot_dotprod,
    gemv_dotprod,
    dotprod
);

/// Q4_1 kernels for `level`.
pub(crate) fn select(level: Backend) -> FormatKernels {
    let k = |vec_dot, gemv, path| FormatKernels {
        weight: GgmlType::Q4_1,
        act: GgmlType::Q8_1,
        dequantize_row: dequantize_row_q4_1,
        vec_dot,
        gemv,
        path,
    };
    match level {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => k(vec_dot_avx512, gemv_avx512, Backend::Avx512),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => k(vec_dot_avx2, gemv_avx2, Backend::Avx2),
        #[cfg(target_arch = "aarch64")]
        Backend::Dotprod => k(vec_dot_dotprod, gemv_dotprod, Backend::Dotprod),
        #[cfg(target_arch = "aarch64")]
        Backend::Neon => k(vec_dot_neon, gemv_neon, Backend::Neon),
        _ => k(vec_dot_q4_1_q8_1, gemv_rows::<Scalar>, Backend::Scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::q8_1::select_act;
    use crate::testutil::*;

    /// RMS error of quantize → dequantize on ggml's synthetic signal.
    const Q4_1_QUANT_ERROR: f64 = MAX_QUANTIZATION_TOTAL_ERROR;
    /// `|vec_dot - f32 dot| / n` on ggml's synthetic signal.
    const Q4_1_DOT_ERROR: f64 = MAX_DOT_PRODUCT_ERROR;

    fn random_blocks(rng: &mut Rng, count: usize) -> Vec<u8> {
        blocks(count, |_| {
            let mut b = BlockQ4_1 {
                d: rng.scale_f16(-3.0, -1.0),
                m: rng.signed_scale_f16(-2.0, 0.0),
                qs: [0; 16],
            };
            rng.fill(&mut b.qs);
            b
        })
    }

    #[test]
    fn dequantize_matches_gguf_py_golden() {
        let blocks = fixture("quant/q4_1.blocks.bin");
        let want = f32s_le(&fixture("quant/q4_1.f32.bin"));
        let mut got = vec![0f32; want.len()];
        dequantize_row_q4_1(&blocks, &mut got);
        assert!(got
            .iter()
            .zip(&want)
            .all(|(g, w)| g.to_bits() == w.to_bits()));
    }

    #[test]
    fn quantization_and_dot_error_within_ggml_budgets() {
        let n = 4096;
        let x = synthetic(n, 0.0);
        let y = synthetic(n, 1.0);
        let mut wq = vec![0u8; n / 32 * BLOCK_BYTES];
        quantize_row_q4_1_ref(&x, &mut wq);
        let mut deq = vec![0f32; n];
        dequantize_row_q4_1(&wq, &mut deq);
        let e = rmse(&x, &deq);
        assert!(e < Q4_1_QUANT_ERROR, "rmse {e}");
        for b in backends() {
            let (fk, ak) = (select(b), select_act(b));
            let got = (fk.vec_dot)(n, &wq, &quantize(&ak, &y)) as f64;
            let err = (got - dot_f64(&x, &y)).abs() / n as f64;
            assert!(err < Q4_1_DOT_ERROR, "{b}: dot error {err}");
        }
    }

    #[test]
    fn simd_matches_scalar() {
        let mut rng = Rng::new(41);
        for (nblocks, rows) in [(1, 5), (2, 3), (3, 7), (5, 4), (6, 5), (64, 6), (128, 9)] {
            let w = random_blocks(&mut rng, nblocks * rows);
            let x = rng.normals(nblocks * 32, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("q4_1 {nblocks}b×{rows}"),
            );
        }
        let w = fixture("quant/q4_1.blocks.bin");
        check_backends(
            select,
            select_act,
            &w,
            &synthetic(512, 0.9),
            SIMD_REL_BUDGET,
            "q4_1 fixture",
        );
    }

    #[test]
    fn overflow_stress() {
        // Extreme quants, huge d and m, activations ±127 — but |x| small enough
        // that Q8_1's `s = d·Σq` (f16, ≤ 65504) stays finite, as it must.
        for (q, sign) in [(0x00u8, 1.0f32), (0xff, 1.0), (0xff, -1.0), (0x0f, -1.0)] {
            let nb = 33;
            let w = blocks(nb * 5, |i| BlockQ4_1 {
                d: f16::from_f32(if i % 2 == 0 { 65504.0 } else { 0.5 }),
                m: f16::from_f32(if i % 3 == 0 { -65504.0 } else { 2.0 }),
                qs: [q; 16],
            });
            let x: Vec<f32> = (0..nb * 32)
                .map(|i| sign * if i % 7 == 0 { -100.0 } else { 100.0 })
                .collect();
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("q4_1 stress {q:#x}"),
            );
        }
    }
}
