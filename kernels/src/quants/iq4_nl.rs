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
        y.len() % QK4_NL == 0 && x.len() / BLOCK_BYTES >= y.len() / QK4_NL,
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
    use crate::quants::q8_0::avx2::{h2f, hsum_ps, mul_sum_i8_ps, nibbles_32};
    use crate::quants::q8_0::read_u16;
    use core::arch::x86_64::*;

    /// IQ4_NL × Q8_0, `R` rows.
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
        let mut acc = [_mm256_setzero_ps(); R];
        // SAFETY: the table is 16 bytes.
        let table = unsafe {
            _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i))
        };
        for ib in 0..nb {
            // SAFETY: block ib of a and of every row is in bounds (caller).
            unsafe {
                let ab = a.add(ib * ACT_BYTES);
                let dy = h2f(read_u16(ab));
                let y = _mm256_loadu_si256(ab.add(2) as *const __m256i);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let wb = w.add(r * row_bytes + ib * BLOCK_BYTES);
                    let x = _mm256_shuffle_epi8(table, nibbles_32(wb.add(2)));
                    let d = _mm256_set1_ps(h2f(read_u16(wb)) * dy);
                    *acc = _mm256_fmadd_ps(d, mul_sum_i8_ps(x, y), *acc);
                }
            }
        }
        acc.map(|v| hsum_ps(v))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{ACT_BYTES, BLOCK_BYTES, KVALUES_IQ4NL};
    use crate::quants::q8_0::avx2::{h2f, hsum_ps, nibbles_32};
    use crate::quants::q8_0::read_u16;
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

    /// IQ4_NL × Q8_0, `R` rows: `vpdpbusd(-128·Σy, kvalues[q] + 128, y)`.
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
        let mut acc = [_mm256_setzero_ps(); R];
        // SAFETY: the table is 16 bytes.
        let table = unsafe {
            _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_U8.as_ptr() as *const __m128i))
        };
        let ones = _mm256_set1_epi8(1);
        for ib in 0..nb {
            // SAFETY: block ib of a and of every row is in bounds (caller).
            unsafe {
                let ab = a.add(ib * ACT_BYTES);
                let dy = h2f(read_u16(ab));
                let y = _mm256_loadu_si256(ab.add(2) as *const __m256i);
                let sy = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, y);
                let base = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<7>(sy));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let wb = w.add(r * row_bytes + ib * BLOCK_BYTES);
                    let u = _mm256_shuffle_epi8(table, nibbles_32(wb.add(2)));
                    let s = _mm256_dpbusd_epi32(base, u, y);
                    let d = _mm256_set1_ps(h2f(read_u16(wb)) * dy);
                    *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), *acc);
                }
            }
        }
        acc.map(|v| hsum_ps(v))
    }
}

// --------------------------------------------------------------- aarch64 --

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{ACT_BYTES, BLOCK_BYTES, KVALUES_IQ4NL};
    use crate::quants::q8_0::neon::{dot_i8x32, h2f};
    use crate::quants::q8_0::read_u16;
    use core::arch::aarch64::*;

    /// The 32 weights `kvalues[q]` of the block whose `qs` is at `p`.
    ///
    /// # Safety
    /// `p` valid for reading 16 bytes.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(super) unsafe fn decode(table: int8x16_t, p: *const u8) -> (int8x16_t, int8x16_t) {
        // SAFETY: per the caller.
        let v = unsafe { vld1q_u8(p) };
        let lo = vqtbl1q_s8(table, vandq_u8(v, vdupq_n_u8(0x0f)));
        let hi = vqtbl1q_s8(table, vshrq_n_u8::<4>(v));
        (lo, hi)
    }

    /// The table in a register.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(super) fn table() -> int8x16_t {
        // SAFETY: KVALUES_IQ4NL is 16 bytes.
        unsafe { vld1q_s8(KVALUES_IQ4NL.as_ptr()) }
    }

    /// IQ4_NL × Q8_0, `R` rows (|kvalue·y| ≤ 127·127: two per i16 lane fit).
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
        let mut acc = [vdupq_n_f32(0.0); R];
        let t = table();
        for ib in 0..nb {
            // SAFETY: block ib of a and of every row is in bounds (caller).
            unsafe {
                let ab = a.add(ib * ACT_BYTES);
                let dy = h2f(read_u16(ab));
                let y0 = vld1q_s8(ab.add(2) as *const i8);
                let y1 = vld1q_s8(ab.add(18) as *const i8);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let wb = w.add(r * row_bytes + ib * BLOCK_BYTES);
                    let (x0, x1) = decode(t, wb.add(2));
                    let p = dot_i8x32(x0, x1, y0, y1);
                    *acc = vfmaq_n_f32(*acc, vcvtq_f32_s32(p), h2f(read_u16(wb)) * dy);
                }
            }
        }
        acc.map(|v| vaddvq_f32(v))
    }
}

#[cfg(target_arch = "aarch64")]
mod dotprod {
    use super::{ACT_BYTES, BLOCK_BYTES};
    use crate::quants::q8_0::dotprod::sdot;
    use crate::quants::q8_0::neon::h2f;
    use crate::quants::q8_0::read_u16;
    use core::arch::aarch64::*;

    /// IQ4_NL × Q8_0, `R` rows.
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
        let mut acc = [vdupq_n_f32(0.0); R];
        let t = super::neon::table();
        for ib in 0..nb {
            // SAFETY: block ib of a and of every row is in bounds (caller).
            unsafe {
                let ab = a.add(ib * ACT_BYTES);
                let dy = h2f(read_u16(ab));
                let y0 = vld1q_s8(ab.add(2) as *const i8);
                let y1 = vld1q_s8(ab.add(18) as *const i8);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let wb = w.add(r * row_bytes + ib * BLOCK_BYTES);
                    let (x0, x1) = super::neon::decode(t, wb.add(2));
                    let p = sdot(sdot(vdupq_n_s32(0), x0, y0), x1, y1);
                    *acc = vfmaq_n_f32(*acc, vcvtq_f32_s32(p), h2f(read_u16(wb)) * dy);
                }
            }
        }
        acc.map(|v| vaddvq_f32(v))
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
        for (nblocks, rows) in [(1, 5), (3, 7), (64, 6), (128, 9)] {
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
