//! IQ4_NL: 32 4-bit indices into a fixed non-linear table and one f16 scale
//! per block, `x = d * kvalues_iq4nl[q]`.
//!
//! The layout is Q4_0's (element `j < 16` is the low nibble of `qs[j]`,
//! `j + 16` the high one); only the decode differs. Activations are Q8_0.
//!
//! Kernels: the table is one 16-byte register, so the decode is one byte
//! shuffle (`pshufb` / `tbl`). AVX-512 VNNI looks up `kvalues + 128` (all
//! unsigned) and starts the `vpdpbusd` accumulator at `-128·Σy`.

use super::q8_0::{check_vec_dot, read_blocks, simd_entries, BlockQ8_0, QK8_0};
use crate::dispatch::{Backend, FormatKernels};
use crate::quants::{gemv_rows, VecDot};
use crate::types::GgmlType;
use half::f16;

/// Elements per block.
pub const QK4_NL: usize = 32;

/// ggml's `kvalues_iq4nl`: the 16 levels of the non-linear 4-bit grid.
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// ggml's `block_iq4_nl`.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIQ4_NL {
    /// delta
    pub d: f16,
    /// nibbles / table indices
    pub qs: [u8; QK4_NL / 2],
}

const _: () = assert!(std::mem::size_of::<BlockIQ4_NL>() == 18 && QK4_NL == QK8_0);
const BLOCK_BYTES: usize = std::mem::size_of::<BlockIQ4_NL>();
const ACT_BYTES: usize = std::mem::size_of::<BlockQ8_0>();

// ---------------------------------------------------------------- scalar --

/// `y[j] = d·kvalues[lo(qs[j])]`, `y[j+16] = d·kvalues[hi(qs[j])]`.
pub fn dequantize_row_iq4_nl(x: &[u8], y: &mut [f32]) {
    assert!(
        y.len().is_multiple_of(QK4_NL) && x.len() / BLOCK_BYTES >= y.len() / QK4_NL,
        "dequantize_row_iq4_nl: {} bytes cannot give {} values",
        x.len(),
        y.len()
    );
    for (b, out) in read_blocks::<BlockIQ4_NL>(x).zip(y.chunks_exact_mut(QK4_NL)) {
        let d = b.d.to_f32();
        let (lo, hi) = out.split_at_mut(QK4_NL / 2);
        for j in 0..QK4_NL / 2 {
            lo[j] = d * KVALUES_IQ4NL[(b.qs[j] & 0x0f) as usize] as f32;
            hi[j] = d * KVALUES_IQ4NL[(b.qs[j] >> 4) as usize] as f32;
        }
    }
}

/// `Σ x·y` of an IQ4_NL weight row and a Q8_0 activation row (ggml's
/// `ggml_vec_dot_iq4_nl_q8_0`).
pub fn vec_dot_iq4_nl_q8_0(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let nb = check_vec_dot(GgmlType::IQ4_NL, GgmlType::Q8_0, n, x, y);
    let xs = read_blocks::<BlockIQ4_NL>(x).take(nb);
    let ys = read_blocks::<BlockQ8_0>(y);
    let mut sumf = 0f32;
    for (bx, by) in xs.zip(ys) {
        let mut sumi = 0i32;
        for j in 0..QK4_NL / 2 {
            sumi += KVALUES_IQ4NL[(bx.qs[j] & 0x0f) as usize] as i32 * by.qs[j] as i32;
            sumi += KVALUES_IQ4NL[(bx.qs[j] >> 4) as usize] as i32 * by.qs[j + 16] as i32;
        }
        sumf += sumi as f32 * (bx.d.to_f32() * by.d.to_f32());
    }
    sumf
}

// ------------------------------------------------------------------- x86 --

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{ACT_BYTES, BLOCK_BYTES, KVALUES_IQ4NL};
    use crate::quants::q8_0::avx2::{mul_sum_i8_ps, nibbles_32};
    use crate::quants::q8_0::x86::{BlockDot, PairDot};
    use core::arch::x86_64::*;

    /// The 16 levels in both 128-bit lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn table() -> __m256i {
        // SAFETY: the table is 16 bytes.
        unsafe {
            _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i))
        }
    }

    /// IQ4_NL blocks: levels by `pshufb`, sign trick + `maddubs`.
    pub(super) struct IQ4NL;
    impl BlockDot for IQ4NL {
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
                let x = _mm256_shuffle_epi8(table(), nibbles_32(wb.add(2)));
                mul_sum_i8_ps(x, y)
            }
        }
    }

    impl PairDot for IQ4NL {
        type Shared2 = ();
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn shared2(_: __m256i, _: __m256i) {}
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn dot2(wa: *const u8, ylo: __m256i, yhi: __m256i, _: ()) -> __m256 {
            const W: usize = <IQ4NL as BlockDot>::W_BYTES;
            // SAFETY: per the trait contract (two whole blocks at `wa`).
            unsafe {
                let t = _mm256_loadu2_m128i(
                    wa.add(2 + W) as *const __m128i,
                    wa.add(2) as *const __m128i,
                );
                let lo = _mm256_and_si256(t, _mm256_set1_epi8(0x0f));
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(t), _mm256_set1_epi8(0x0f));
                let (t, ones) = (table(), _mm256_set1_epi16(1));
                let (lo, hi) = (_mm256_shuffle_epi8(t, lo), _mm256_shuffle_epi8(t, hi));
                // |k|·|y| ≤ 127·127: a pair sum nearly fills i16, so widen each half.
                let plo = _mm256_maddubs_epi16(_mm256_sign_epi8(lo, lo), _mm256_sign_epi8(ylo, lo));
                let phi = _mm256_maddubs_epi16(_mm256_sign_epi8(hi, hi), _mm256_sign_epi8(yhi, hi));
                let s =
                    _mm256_add_epi32(_mm256_madd_epi16(plo, ones), _mm256_madd_epi16(phi, ones));
                _mm256_cvtepi32_ps(s)
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
        unsafe { crate::quants::q8_0::x86::avx2::drive2::<IQ4NL, R>(nb, w, row_bytes, a) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{ACT_BYTES, BLOCK_BYTES, KVALUES_IQ4NL};
    use crate::quants::q8_0::avx2::nibbles_32;
    use crate::quants::q8_0::x86::{BlockDot, PairDot};
    use core::arch::x86_64::*;

    /// `kvalues + 128`: the table as unsigned bytes for `vpdpbusd`.
    static KVALUES_U8: [u8; 16] = {
        let mut t = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            t[i] = (KVALUES_IQ4NL[i] as i16 + 128) as u8;
            i += 1;
        }
        t
    };

    /// The unsigned levels in both 128-bit lanes.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn table() -> __m256i {
        // SAFETY: the table is 16 bytes.
        unsafe {
            _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_U8.as_ptr() as *const __m128i))
        }
    }

    /// IQ4_NL blocks: `kvalues + 128` by `pshufb` into `vpdpbusd`, accumulator preset to `-128·Σy`.
    pub(super) struct IQ4NL;
    impl BlockDot for IQ4NL {
        const W_BYTES: usize = BLOCK_BYTES;
        const A_BYTES: usize = ACT_BYTES;
        const A_QS: usize = 2;
        const HAS_MIN: bool = false;
        type Shared = __m256i;
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn shared(y: __m256i) -> __m256i {
            let sy = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), y);
            _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<7>(sy))
        }
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn dot(wb: *const u8, y: __m256i, shared: __m256i) -> __m256 {
            // SAFETY: per the trait contract (one whole block at `wb`).
            unsafe {
                let u = _mm256_shuffle_epi8(table(), nibbles_32(wb.add(2)));
                _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(shared, u, y))
            }
        }
    }

    impl PairDot for IQ4NL {
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
            _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<7>(sy))
        }
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn dot2(wa: *const u8, ylo: __m256i, yhi: __m256i, shared: __m256i) -> __m256 {
            const W: usize = <IQ4NL as BlockDot>::W_BYTES;
            // SAFETY: per the trait contract (two whole blocks at `wa`).
            unsafe {
                let t = _mm256_loadu2_m128i(
                    wa.add(2 + W) as *const __m128i,
                    wa.add(2) as *const __m128i,
                );
                let lo = _mm256_and_si256(t, _mm256_set1_epi8(0x0f));
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(t), _mm256_set1_epi8(0x0f));
                let t = table();
                let (lo, hi) = (_mm256_shuffle_epi8(t, lo), _mm256_shuffle_epi8(t, hi));
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
        unsafe { crate::quants::q8_0::x86::avx512::drive2::<IQ4NL, R>(nb, w, row_bytes, a) }
    }
}

// --------------------------------------------------------------- aarch64 --

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{ACT_BYTES, BLOCK_BYTES, KVALUES_IQ4NL};
    use crate::quants::q8_0::arm::NeonBlock;
    use core::arch::aarch64::*;

    pub(super) struct IQ4NL;
    impl NeonBlock for IQ4NL {
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
                let t = vld1q_s8(KVALUES_IQ4NL.as_ptr());
                (vqtbl1q_s8(t, lo), vqtbl1q_s8(t, hi))
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
        unsafe { crate::quants::q8_0::arm::drive_neon::<IQ4NL, R>(nb, w, row_bytes, a) }
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
            crate::quants::q8_0::arm::drive_dotprod::<super::neon::IQ4NL, R>(nb, w, row_bytes, a)
        }
    }
}

// ------------------------------------------------------- dispatch table --

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_iq4_nl_q8_0(n, w, a)
    }
}

#[cfg(target_arch = "x86_64")]
simd_entries!(
    GgmlType::IQ4_NL,
    GgmlType::Q8_0,
    vec_dot_avx2,
    gemv_avx2,
    avx2
);
#[cfg(target_arch = "x86_64")]
simd_entries!(
    GgmlType::IQ4_NL,
    GgmlType::Q8_0,
    vec_dot_avx512,
    gemv_avx512,
    avx512
);
#[cfg(target_arch = "aarch64")]
simd_entries!(
    GgmlType::IQ4_NL,
    GgmlType::Q8_0,
    vec_dot_neon,
    gemv_neon,
    neon
);
#[cfg(target_arch = "aarch64")]
simd_entries!(
    GgmlType::IQ4_NL,
    GgmlType::Q8_0,
    vec_dot_dotprod,
    gemv_dotprod,
    dotprod
);

/// IQ4_NL kernels for `level`.
pub(crate) fn select(level: Backend) -> FormatKernels {
    let k = |vec_dot, gemv, path| FormatKernels {
        weight: GgmlType::IQ4_NL,
        act: GgmlType::Q8_0,
        dequantize_row: dequantize_row_iq4_nl,
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
        _ => k(vec_dot_iq4_nl_q8_0, gemv_rows::<Scalar>, Backend::Scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::q8_0::select_act;
    use crate::testutil::*;

    /// `|vec_dot - f32 dot| / n` with the dequantized weights and unquantized
    /// activations (the activation's Q8_0 rounding is the only error).
    const IQ4_NL_DOT_ERROR: f64 = MAX_DOT_PRODUCT_ERROR;

    fn random_blocks(rng: &mut Rng, count: usize) -> Vec<u8> {
        blocks(count, |_| {
            let mut b = BlockIQ4_NL {
                d: rng.signed_scale_f16(-3.0, -1.0),
                qs: [0; 16],
            };
            rng.fill(&mut b.qs);
            b
        })
    }

    #[test]
    fn dequantize_matches_gguf_py_golden() {
        let blocks = fixture("quant/iq4_nl.blocks.bin");
        let want = f32s_le(&fixture("quant/iq4_nl.f32.bin"));
        let mut got = vec![0f32; want.len()];
        dequantize_row_iq4_nl(&blocks, &mut got);
        assert!(got
            .iter()
            .zip(&want)
            .all(|(g, w)| g.to_bits() == w.to_bits()));
    }

    #[test]
    fn dot_error_within_ggml_budget() {
        let mut rng = Rng::new(41);
        let n = 4096;
        let w = random_blocks(&mut rng, n / 32);
        let y = synthetic(n, 1.0);
        for b in backends() {
            let e = dot_error(&select(b), &select_act(b), n, &w, &y);
            assert!(e < IQ4_NL_DOT_ERROR, "{b}: {e}");
        }
    }

    #[test]
    fn simd_matches_scalar() {
        let mut rng = Rng::new(44);
        for (nblocks, rows) in [(1, 5), (2, 3), (3, 7), (5, 4), (6, 5), (64, 6), (128, 9)] {
            let w = random_blocks(&mut rng, nblocks * rows);
            let x = rng.normals(nblocks * 32, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("iq4_nl {nblocks}b×{rows}"),
            );
        }
        let w = fixture("quant/iq4_nl.blocks.bin");
        check_backends(
            select,
            select_act,
            &w,
            &synthetic(1024, 0.1),
            SIMD_REL_BUDGET,
            "iq4_nl fixture",
        );
    }

    #[test]
    fn overflow_stress() {
        // Index 0 (-127) and 15 (+113) everywhere, huge scales, activations ±127.
        for (q, sign) in [(0x00u8, 1.0f32), (0xff, 1.0), (0x00, -1.0), (0xf0, -1.0)] {
            let nb = 37;
            let w = blocks(nb * 5, |i| BlockIQ4_NL {
                d: f16::from_f32(if i % 2 == 1 { -65504.0 } else { 0.125 }),
                qs: [q; 16],
            });
            let x: Vec<f32> = (0..nb * 32)
                .map(|i| sign * if i % 6 == 0 { -7.0 } else { 7.0 })
                .collect();
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("iq4_nl stress {q:#x}"),
            );
        }
    }
}
