//! Q4_0: 32 4-bit quants and one f16 scale per block, `x = d * (q - 8)`.
//!
//! The format of DeepSeek's Q4_0 files and of many Q4_0 tensors elsewhere.
//! Element `j < 16` of a block is the low nibble of `qs[j]`, element `j + 16`
//! its high nibble. Activations are Q8_0 (see [`super::q8_0`]).
//!
//! Kernels: the integer sum `Σ (q-8)·y` per block is exact on every path and
//! scaled once by `d_x·d_y`.
//! - NEON (ARMv8.0): nibbles by mask/shift, minus 8, `smull`/`smlal`/`sadalp`.
//! - NEON+dotprod: the same decode, two `sdot` per block.
//! - AVX2: nibbles unpacked to 32 bytes, minus 8, `maddubs` with the sign trick.
//! - AVX-512 VNNI: the nibbles (0..15) stay unsigned for `vpdpbusd`, whose
//!   accumulator starts at `-8·Σy` (computed once per activation block and
//!   shared by the rows), so one instruction does the whole block.

use super::q8_0::{check_vec_dot, read_blocks, simd_entries, BlockQ8_0, QK8_0};
use crate::dispatch::{Backend, FormatKernels};
use crate::quants::{gemv_rows, VecDot};
use crate::types::GgmlType;
use half::f16;

/// Elements per block.
pub const QK4_0: usize = 32;

/// ggml's `block_q4_0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_0 {
    /// delta
    pub d: f16,
    /// nibbles / quants
    pub qs: [u8; QK4_0 / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ4_0>();
const _: () = assert!(BLOCK_BYTES == 18 && QK4_0 == QK8_0);
const ACT_BYTES: usize = std::mem::size_of::<BlockQ8_0>();

// ---------------------------------------------------------------- scalar --

/// `y[j] = d·(lo(qs[j]) - 8)`, `y[j+16] = d·(hi(qs[j]) - 8)`.
pub fn dequantize_row_q4_0(x: &[u8], y: &mut [f32]) {
    assert!(
        y.len().is_multiple_of(QK4_0) && x.len() / BLOCK_BYTES >= y.len() / QK4_0,
        "dequantize_row_q4_0: {} bytes cannot give {} values",
        x.len(),
        y.len()
    );
    for (b, out) in read_blocks::<BlockQ4_0>(x).zip(y.chunks_exact_mut(QK4_0)) {
        let d = b.d.to_f32();
        let (lo, hi) = out.split_at_mut(QK4_0 / 2);
        for j in 0..QK4_0 / 2 {
            lo[j] = ((b.qs[j] & 0x0f) as i32 - 8) as f32 * d;
            hi[j] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// ggml's `quantize_row_q4_0_ref`: `d = max/-8` where `max` is the element of
/// largest magnitude (so it maps to -8 exactly), `q = min(15, ⌊x/d + 8.5⌋)`.
pub fn quantize_row_q4_0_ref(x: &[f32], y: &mut [u8]) {
    super::q8_0::check_quantize("quantize_row_q4_0_ref", x, y, BLOCK_BYTES);
    for (xb, yb) in x.chunks_exact(QK4_0).zip(y.chunks_exact_mut(BLOCK_BYTES)) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xb {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut b = BlockQ4_0 {
            d: f16::from_f32(d),
            qs: [0; QK4_0 / 2],
        };
        for j in 0..QK4_0 / 2 {
            // C's (int8_t) cast truncates; x·id + 8.5 >= 0.5 here, so this is ⌊·⌋.
            let q0 = ((xb[j] * id + 8.5) as i8).min(15) as u8;
            let q1 = ((xb[j + 16] * id + 8.5) as i8).min(15) as u8;
            b.qs[j] = q0 | (q1 << 4);
        }
        yb.copy_from_slice(bytemuck::bytes_of(&b));
    }
}

/// `Σ x·y` of a Q4_0 weight row and a Q8_0 activation row (ggml's
/// `ggml_vec_dot_q4_0_q8_0`).
pub fn vec_dot_q4_0_q8_0(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let nb = check_vec_dot(GgmlType::Q4_0, GgmlType::Q8_0, n, x, y);
    let xs = read_blocks::<BlockQ4_0>(x).take(nb);
    let ys = read_blocks::<BlockQ8_0>(y);
    let mut sumf = 0f32;
    for (bx, by) in xs.zip(ys) {
        let mut sumi = 0i32;
        for j in 0..QK4_0 / 2 {
            let v0 = (bx.qs[j] & 0x0f) as i32 - 8;
            let v1 = (bx.qs[j] >> 4) as i32 - 8;
            sumi += v0 * by.qs[j] as i32 + v1 * by.qs[j + 16] as i32;
        }
        sumf += sumi as f32 * (bx.d.to_f32() * by.d.to_f32());
    }
    sumf
}

// ------------------------------------------------------------------- x86 --

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{ACT_BYTES, BLOCK_BYTES};
    use crate::quants::q8_0::avx2::{mul_sum_i8_ps, nibbles_32};
    use crate::quants::q8_0::x86::{BlockDot, PairDot};
    use core::arch::x86_64::*;

    /// Q4_0 blocks: `q - 8` as signed bytes, sign trick + `maddubs`.
    pub(super) struct Q4_0;
    impl BlockDot for Q4_0 {
        const W_BYTES: usize = BLOCK_BYTES;
        const A_BYTES: usize = ACT_BYTES;
        const A_QS: usize = 2;
        const HAS_MIN: bool = false;
        type Shared = ();
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn shared(_: __m256i) {}
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn dot(wb: *const u8, y: __m256i, _: ()) -> __m256 {
            // SAFETY: per the trait contract (one whole block at `wb`).
            unsafe {
                let x = _mm256_sub_epi8(nibbles_32(wb.add(2)), _mm256_set1_epi8(8));
                mul_sum_i8_ps(x, y)
            }
        }
    }

    impl PairDot for Q4_0 {
        type Shared2 = ();
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn shared2(_: __m256i, _: __m256i) {}
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn dot2(wa: *const u8, ylo: __m256i, yhi: __m256i, _: ()) -> __m256 {
            const W: usize = <Q4_0 as BlockDot>::W_BYTES;
            // SAFETY: per the trait contract (two whole blocks at `wa`).
            unsafe {
                let t = _mm256_loadu2_m128i(
                    wa.add(2 + W) as *const __m128i,
                    wa.add(2) as *const __m128i,
                );
                let lo = _mm256_and_si256(t, _mm256_set1_epi8(0x0f));
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(t), _mm256_set1_epi8(0x0f));
                let (m8, ones) = (_mm256_set1_epi8(8), _mm256_set1_epi16(1));
                let (lo, hi) = (_mm256_sub_epi8(lo, m8), _mm256_sub_epi8(hi, m8));
                // |q - 8|·|y| ≤ 8·127: the two halves' pair sums add up in i16.
                let plo = _mm256_maddubs_epi16(_mm256_sign_epi8(lo, lo), _mm256_sign_epi8(ylo, lo));
                let phi = _mm256_maddubs_epi16(_mm256_sign_epi8(hi, hi), _mm256_sign_epi8(yhi, hi));
                _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_add_epi16(plo, phi), ones))
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
        unsafe { crate::quants::q8_0::x86::avx2::drive2::<Q4_0, R>(nb, w, row_bytes, a) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{ACT_BYTES, BLOCK_BYTES};
    use crate::quants::q8_0::avx2::nibbles_32;
    use crate::quants::q8_0::x86::{BlockDot, PairDot};
    use core::arch::x86_64::*;

    /// Q4_0 blocks: unsigned nibbles into `vpdpbusd`, accumulator preset to `-8·Σy`.
    pub(super) struct Q4_0;
    impl BlockDot for Q4_0 {
        const W_BYTES: usize = BLOCK_BYTES;
        const A_BYTES: usize = ACT_BYTES;
        const A_QS: usize = 2;
        const HAS_MIN: bool = false;
        type Shared = __m256i;
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn shared(y: __m256i) -> __m256i {
            let sy = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), y);
            _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<3>(sy))
        }
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn dot(wb: *const u8, y: __m256i, shared: __m256i) -> __m256 {
            // SAFETY: per the trait contract (one whole block at `wb`).
            unsafe { _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(shared, nibbles_32(wb.add(2)), y)) }
        }
    }

    impl PairDot for Q4_0 {
        type Shared2 = __m256i;
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn shared2(ylo: __m256i, yhi: __m256i) -> __m256i {
            let ones = _mm256_set1_epi8(1);
            let sy = _mm256_dpbusd_epi32(
                _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, ylo),
                ones,
                yhi,
            );
            _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<3>(sy))
        }
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn dot2(wa: *const u8, ylo: __m256i, yhi: __m256i, shared: __m256i) -> __m256 {
            const W: usize = <Q4_0 as BlockDot>::W_BYTES;
            // SAFETY: per the trait contract (two whole blocks at `wa`).
            unsafe {
                let t = _mm256_loadu2_m128i(
                    wa.add(2 + W) as *const __m128i,
                    wa.add(2) as *const __m128i,
                );
                let lo = _mm256_and_si256(t, _mm256_set1_epi8(0x0f));
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(t), _mm256_set1_epi8(0x0f));
                _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(
                    _mm256_dpbusd_epi32(shared, lo, ylo),
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
        unsafe { crate::quants::q8_0::x86::avx512::drive2::<Q4_0, R>(nb, w, row_bytes, a) }
    }
}

// --------------------------------------------------------------- aarch64 --

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{ACT_BYTES, BLOCK_BYTES};
    use crate::quants::q8_0::arm::NeonBlock;
    use core::arch::aarch64::*;

    pub(super) struct Q4_0;
    impl NeonBlock for Q4_0 {
        const W_BYTES: usize = BLOCK_BYTES;
        const A_BYTES: usize = ACT_BYTES;
        const A_QS: usize = 2;
        const HAS_MIN: bool = false;
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn decode(wb: *const u8) -> (int8x16_t, int8x16_t) {
            // SAFETY: per the trait contract (one whole block at `wb`).
            unsafe {
                let v = vld1q_u8(wb.add(2));
                let lo = vandq_u8(v, vdupq_n_u8(0x0f));
                let hi = vshrq_n_u8::<4>(v);
                let off = vdupq_n_s8(8);
                (
                    vsubq_s8(vreinterpretq_s8_u8(lo), off),
                    vsubq_s8(vreinterpretq_s8_u8(hi), off),
                )
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
        unsafe { crate::quants::q8_0::arm::drive_neon::<Q4_0, R>(nb, w, row_bytes, a) }
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
            crate::quants::q8_0::arm::drive_dotprod::<super::neon::Q4_0, R>(nb, w, row_bytes, a)
        }
    }
}

// ------------------------------------------------------- dispatch table --

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_q4_0_q8_0(n, w, a)
    }
}

#[cfg(target_arch = "x86_64")]
simd_entries!(
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    vec_dot_avx2,
    gemv_avx2,
    avx2
);
#[cfg(target_arch = "x86_64")]
simd_entries!(
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    vec_dot_avx512,
    gemv_avx512,
    avx512
);
#[cfg(target_arch = "aarch64")]
simd_entries!(
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    vec_dot_neon,
    gemv_neon,
    neon
);
#[cfg(target_arch = "aarch64")]
simd_entries!(
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    vec_dot_dotprod,
    gemv_dotprod,
    dotprod
);

/// Q4_0 kernels for `level`.
pub(crate) fn select(level: Backend) -> FormatKernels {
    let k = |vec_dot, gemv, path| FormatKernels {
        weight: GgmlType::Q4_0,
        act: GgmlType::Q8_0,
        dequantize_row: dequantize_row_q4_0,
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
        _ => k(vec_dot_q4_0_q8_0, gemv_rows::<Scalar>, Backend::Scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::q8_0::select_act;
    use crate::testutil::*;

    /// RMS error of quantize → dequantize on ggml's synthetic signal.
    const Q4_0_QUANT_ERROR: f64 = MAX_QUANTIZATION_TOTAL_ERROR;
    /// `|vec_dot - f32 dot| / n` on ggml's synthetic signal.
    const Q4_0_DOT_ERROR: f64 = MAX_DOT_PRODUCT_ERROR;

    fn random_blocks(rng: &mut Rng, count: usize) -> Vec<u8> {
        blocks(count, |_| {
            let mut b = BlockQ4_0 {
                d: rng.signed_scale_f16(-3.0, -1.0),
                qs: [0; 16],
            };
            rng.fill(&mut b.qs);
            b
        })
    }

    #[test]
    fn dequantize_matches_gguf_py_golden() {
        let blocks = fixture("quant/q4_0.blocks.bin");
        let want = f32s_le(&fixture("quant/q4_0.f32.bin"));
        let mut got = vec![0f32; want.len()];
        dequantize_row_q4_0(&blocks, &mut got);
        assert!(got
            .iter()
            .zip(&want)
            .all(|(g, w)| g.to_bits() == w.to_bits()));
    }

    #[test]
    fn reference_quantizer_follows_ggml() {
        // max-magnitude element maps to -8 exactly; others round to nearest.
        let mut x = [0f32; 32];
        x[0] = -4.0; // d = 0.5, q = 0
        x[1] = -1.3; // -1.3/0.5 = -2.6 → ⌊-2.6 + 8.5⌋ = 5
        x[17] = 3.9; // 7.8 + 8.5 → 16, clamped to 15
        let mut y = [0u8; 18];
        quantize_row_q4_0_ref(&x, &mut y);
        let b: BlockQ4_0 = bytemuck::pod_read_unaligned(&y);
        assert_eq!(b.d.to_f32(), 0.5);
        assert_eq!(b.qs[0] & 15, 0);
        assert_eq!(b.qs[1] & 15, 5);
        assert_eq!(b.qs[1] >> 4, 15);
        assert_eq!(b.qs[2], 8 | (8 << 4));
        // A positive maximum: d < 0 and it still maps to q = 0 (value -8·d).
        let mut deq = [0f32; 32];
        x[0] = 4.0;
        quantize_row_q4_0_ref(&x, &mut y);
        dequantize_row_q4_0(&y, &mut deq);
        assert_eq!(deq[0], 4.0);
    }

    #[test]
    fn quantization_and_dot_error_within_ggml_budgets() {
        let n = 4096;
        let x = synthetic(n, 0.0);
        let y = synthetic(n, 1.0);
        let mut wq = vec![0u8; n / 32 * BLOCK_BYTES];
        quantize_row_q4_0_ref(&x, &mut wq);
        let mut deq = vec![0f32; n];
        dequantize_row_q4_0(&wq, &mut deq);
        let e = rmse(&x, &deq);
        assert!(e < Q4_0_QUANT_ERROR, "rmse {e}");
        for b in backends() {
            let (fk, ak) = (select(b), select_act(b));
            let got = (fk.vec_dot)(n, &wq, &quantize(&ak, &y)) as f64;
            let err = (got - dot_f64(&x, &y)).abs() / n as f64;
            assert!(err < Q4_0_DOT_ERROR, "{b}: dot error {err}");
        }
    }

    #[test]
    fn simd_matches_scalar() {
        let mut rng = Rng::new(40);
        for (nblocks, rows) in [(1, 5), (2, 3), (3, 7), (5, 4), (6, 5), (64, 6), (128, 9)] {
            let w = random_blocks(&mut rng, nblocks * rows);
            let x = rng.normals(nblocks * 32, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("q4_0 {nblocks}b×{rows}"),
            );
        }
        let w = fixture("quant/q4_0.blocks.bin");
        check_backends(
            select,
            select_act,
            &w,
            &synthetic(512, 0.3),
            SIMD_REL_BUDGET,
            "q4_0 fixture",
        );
    }

    #[test]
    fn overflow_stress() {
        // All-minimal (-8) and all-maximal (7) quants, huge scales, activations
        // at ±amax so that every activation quant is ±127.
        for (q, sign) in [(0x00u8, 1.0f32), (0xff, 1.0), (0x00, -1.0), (0x0f, -1.0)] {
            let nb = 33;
            let w = blocks(nb * 5, |i| BlockQ4_0 {
                d: f16::from_f32(if i % 3 == 0 { -65504.0 } else { 0.25 }),
                qs: [q; 16],
            });
            let x: Vec<f32> = (0..nb * 32)
                .map(|i| sign * if i % 5 == 0 { -3e4 } else { 3e4 })
                .collect();
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("q4_0 stress {q:#x}"),
            );
        }
    }
}
