//! Q5_K: 5-bit K-quant, 5.5 bits per weight (some tensors of Q4_K_M files,
//! most of Q5_K_M).
//!
//! Like [Q4_K](super::q4_k) — 8 sub-blocks of 32 with 6-bit scales and
//! minimums, `x = d·sc_j·q − dmin·m_j` — with a fifth bit per weight in `qh`:
//! in chunk `c` of 64 weights, weight `64c + l` has `qh[l]` bit `2c` and
//! weight `64c + 32 + l` bit `2c + 1`, so `q` is in 0..=31.

use super::q4_k::{get_scale_min_k4, scale_words, unpack_scales_mins, K_SCALE_SIZE};
use super::q8_k::{self, check_dot, QK_K};
use super::{gemv_rows, VecDot};
use crate::dispatch::{Backend, FormatKernels};
use crate::types::GgmlType;
use half::f16;

/// Q5_K super-block, as in ggml-common.h.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_K {
    /// super-block scale for quantized scales
    pub d: f16,
    /// super-block scale for quantized mins
    pub dmin: f16,
    /// scales and mins, quantized with 6 bits
    pub scales: [u8; K_SCALE_SIZE],
    /// quants, high bit
    pub qh: [u8; QK_K / 8],
    /// quants, low 4 bits
    pub qs: [u8; QK_K / 2],
}

/// Bytes of one [`BlockQ5_K`].
pub const BLOCK_Q5_K_BYTES: usize = 176;
const _: () = assert!(std::mem::size_of::<BlockQ5_K>() == BLOCK_Q5_K_BYTES);

/// Byte offsets inside a block.
const SCALES: usize = 4;
const QH: usize = 16;
const QS: usize = 48;

/// The 256 quants of a block, 0..=31, in weight order.
#[inline]
pub(crate) fn unpack(b: &BlockQ5_K) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for (c, ql) in b.qs.chunks_exact(32).enumerate() {
        for l in 0..32 {
            let h = b.qh[l] >> (2 * c);
            q[64 * c + l] = (ql[l] & 0xF) | ((h & 1) << 4);
            q[64 * c + 32 + l] = (ql[l] >> 4) | (((h >> 1) & 1) << 4);
        }
    }
    q
}

/// `y` = the values of the Q5_K blocks in `x` (ggml's `dequantize_row_q5_K`,
/// bit for bit).
#[allow(non_snake_case)]
pub fn dequantize_row_q5_K(x: &[u8], y: &mut [f32]) {
    assert!(
        y.len().is_multiple_of(QK_K),
        "dequantize_row_q5_K: {} values",
        y.len()
    );
    let nb = y.len() / QK_K;
    assert!(
        x.len() >= nb * BLOCK_Q5_K_BYTES,
        "dequantize_row_q5_K: input too short"
    );
    for (xb, yb) in x
        .chunks_exact(BLOCK_Q5_K_BYTES)
        .zip(y.chunks_exact_mut(QK_K))
    {
        let b: BlockQ5_K = bytemuck::pod_read_unaligned(xb);
        let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
        let q = unpack(&b);
        for j in 0..8 {
            let (sc, m) = get_scale_min_k4(j, &b.scales);
            let (dl, ml) = (d * sc as f32, min * m as f32);
            for l in 32 * j..32 * j + 32 {
                yb[l] = dl * q[l] as f32 - ml;
            }
        }
    }
}

/// Dot product of a Q5_K row with a Q8_K row, `n` values (scalar reference).
#[allow(non_snake_case)]
pub fn vec_dot_q5_K_q8_K(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check_dot("q5_K", n, w, BLOCK_Q5_K_BYTES, a);
    let mut sumf = 0.0f32;
    for (i, xb) in w.chunks_exact(BLOCK_Q5_K_BYTES).take(nb).enumerate() {
        let x: BlockQ5_K = bytemuck::pod_read_unaligned(xb);
        let y = q8_k::read_block(a, i);
        let sm: [u8; 16] = bytemuck::cast(unpack_scales_mins(scale_words(&x.scales)));
        let q = unpack(&x);
        let mut isum = 0i32;
        let mut msum = 0i32;
        for j in 0..8 {
            let s: i32 = (32 * j..32 * j + 32)
                .map(|k| q[k] as i32 * y.qs[k] as i32)
                .sum();
            isum += sm[j] as i32 * s;
            msum += sm[8 + j] as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
        }
        sumf += y.d * x.d.to_f32() * isum as f32 - y.d * x.dmin.to_f32() * msum as f32;
    }
    sumf
}

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_q5_K_q8_K(n, w, a)
    }
}

/// Q5_K kernels for `level` (no AVX-512 version: the AVX2 one serves).
pub(crate) fn select(level: Backend) -> FormatKernels {
    let scalar = FormatKernels {
        weight: GgmlType::Q5_K,
        act: GgmlType::Q8_K,
        dequantize_row: dequantize_row_q5_K,
        vec_dot: vec_dot_q5_K_q8_K,
        gemv: gemv_rows::<Scalar>,
        path: Backend::Scalar,
    };
    match level {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 | Backend::Avx512 => FormatKernels {
            vec_dot: avx2_vec_dot,
            gemv: avx2_gemv,
            path: Backend::Avx2,
            ..scalar
        },
        #[cfg(target_arch = "aarch64")]
        Backend::Neon => FormatKernels {
            vec_dot: neon_vec_dot,
            gemv: neon_gemv,
            path: Backend::Neon,
            ..scalar
        },
        #[cfg(target_arch = "aarch64")]
        Backend::Dotprod => FormatKernels {
            vec_dot: dotprod_vec_dot,
            gemv: dotprod_gemv,
            path: Backend::Dotprod,
            ..scalar
        },
        _ => scalar,
    }
}

crate::quants::q8_k::k_entries!("q5_K", BLOCK_Q5_K_BYTES, no_avx512);

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use crate::quants::q8_k::x86::*;
    use core::arch::x86_64::*;

    crate::quants::q8_k::gemv_in_groups!("avx2,fma,f16c");

    /// Bit `k` of every byte of `v`, moved to bit 4 (16-bit shifts: the bit
    /// that lands on bit 4 of a byte always comes from that byte).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn bit_to_16(v: __m256i, k: usize) -> __m256i {
        let m = _mm256_set1_epi8(0x10);
        match k {
            0 => _mm256_and_si256(_mm256_slli_epi16(v, 4), m),
            1 => _mm256_and_si256(_mm256_slli_epi16(v, 3), m),
            2 => _mm256_and_si256(_mm256_slli_epi16(v, 2), m),
            3 => _mm256_and_si256(_mm256_slli_epi16(v, 1), m),
            4 => _mm256_and_si256(v, m),
            5 => _mm256_and_si256(_mm256_srli_epi16(v, 1), m),
            6 => _mm256_and_si256(_mm256_srli_epi16(v, 2), m),
            _ => _mm256_and_si256(_mm256_srli_epi16(v, 3), m),
        }
    }

    /// Dot products of `R` rows (`row_bytes` apart from `w`) with the Q8_K row `a`.
    ///
    /// # Safety
    /// AVX2+FMA+F16C; every row holds `nb` blocks, `a` holds `nb` Q8_K blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    // Rows, chunks and groups index several parallel arrays.
    #[allow(clippy::needless_range_loop)]
    pub(super) unsafe fn dot_rows<const R: usize>(
        nb: usize,
        w: *const u8,
        row_bytes: usize,
        a: *const u8,
    ) -> [f32; R] {
        let m4 = _mm256_set1_epi8(0xF);
        let mut shuf = [_mm256_setzero_si256(); 8];
        for (k, s) in shuf.iter_mut().enumerate() {
            *s = _mm256_set1_epi16((((2 * k + 1) << 8) | (2 * k)) as i16);
        }
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc_m = [_mm_setzero_ps(); R];
        for i in 0..nb {
            let (d8, q8, bsums) = q8k_block(a, i);
            let bs = _mm256_loadu_si256(bsums as *const __m256i);
            let bs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
            let mut scales = [_mm256_setzero_si256(); R];
            let mut qh = [_mm256_setzero_si256(); R];
            let mut dd = [0f32; R];
            for r in 0..R {
                let x = w.add(r * row_bytes + i * BLOCK_Q5_K_BYTES);
                let u =
                    unpack_scales_mins(scale_words(&*(x.add(SCALES) as *const [u8; K_SCALE_SIZE])));
                let sm = _mm256_cvtepu8_epi16(_mm_setr_epi32(
                    u[0] as i32,
                    u[1] as i32,
                    u[2] as i32,
                    u[3] as i32,
                ));
                let prod = _mm_madd_epi16(_mm256_extracti128_si256(sm, 1), bs);
                let dmin = d8 * f16_at(x.add(2));
                acc_m[r] = _mm_fmadd_ps(_mm_set1_ps(-dmin), _mm_cvtepi32_ps(prod), acc_m[r]);
                scales[r] = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sm));
                qh[r] = _mm256_loadu_si256(x.add(QH) as *const __m256i);
                dd[r] = d8 * f16_at(x);
            }
            let mut sumi = [_mm256_setzero_si256(); R];
            for c in 0..QK_K / 64 {
                let q8l = _mm256_loadu_si256(q8.add(64 * c) as *const __m256i);
                let q8h = _mm256_loadu_si256(q8.add(64 * c + 32) as *const __m256i);
                for r in 0..R {
                    let x = w.add(r * row_bytes + i * BLOCK_Q5_K_BYTES + QS + 32 * c);
                    let bits = _mm256_loadu_si256(x as *const __m256i);
                    let lo = _mm256_or_si256(_mm256_and_si256(bits, m4), bit_to_16(qh[r], 2 * c));
                    let hi = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4),
                        bit_to_16(qh[r], 2 * c + 1),
                    );
                    let sl = _mm256_shuffle_epi8(scales[r], shuf[2 * c]);
                    let sh = _mm256_shuffle_epi8(scales[r], shuf[2 * c + 1]);
                    let pl = _mm256_madd_epi16(sl, _mm256_maddubs_epi16(lo, q8l));
                    let ph = _mm256_madd_epi16(sh, _mm256_maddubs_epi16(hi, q8h));
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(pl, ph));
                }
            }
            for r in 0..R {
                acc[r] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dd[r]), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            }
        }
        let mut out = [0f32; R];
        for r in 0..R {
            out[r] = hsum_ps(acc[r]) + hsum_ps128(acc_m[r]);
        }
        out
    }
}

/// NEON and NEON+dotprod share everything but the 32-weight dot product.
#[cfg(target_arch = "aarch64")]
macro_rules! neon_dot_rows {
    ($feat:literal, $dot32:ident) => {
        crate::quants::q8_k::gemv_in_groups!($feat);

        /// Dot products of `R` rows with the Q8_K row `a`.
        ///
        /// # Safety
        /// CPU features as enabled; every row holds `nb` blocks, `a` holds
        /// `nb` Q8_K blocks.
        #[target_feature(enable = $feat)]
        #[inline]
        // Rows, chunks and groups index several parallel arrays.
        #[allow(clippy::needless_range_loop)]
        pub(super) unsafe fn dot_rows<const R: usize>(
            nb: usize,
            w: *const u8,
            row_bytes: usize,
            a: *const u8,
        ) -> [f32; R] {
            let m4 = vdupq_n_u8(0xF);
            let m1 = vdupq_n_u8(1);
            let m2 = vdupq_n_u8(2);
            let mut acc = [vdupq_n_f32(0.0); R];
            let mut summ = [0f32; R];
            for i in 0..nb {
                let (d8, q8, bsums) = q8k_block(a, i);
                let bs = load_bsums(bsums);
                let bs = vpaddq_s16(bs.0, bs.1);
                let mut sc = [[0u8; 16]; R];
                let mut dd = [0f32; R];
                let mut qh = [uint8x16x2_t(vdupq_n_u8(0), vdupq_n_u8(0)); R];
                for r in 0..R {
                    let x = w.add(r * row_bytes + i * BLOCK_Q5_K_BYTES);
                    sc[r] = bytemuck::cast(unpack_scales_mins(scale_words(
                        &*(x.add(SCALES) as *const [u8; K_SCALE_SIZE]),
                    )));
                    let mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(sc[r].as_ptr().add(8))));
                    let prod =
                        vmlal_high_s16(vmull_s16(vget_low_s16(mins), vget_low_s16(bs)), mins, bs);
                    summ[r] += d8 * f16_at(x.add(2)) * vaddvq_s32(prod) as f32;
                    dd[r] = d8 * f16_at(x);
                    qh[r] = vld1q_u8_x2(x.add(QH));
                }
                let mut p = [[vdupq_n_s32(0); 8]; R];
                for c in 0..QK_K / 64 {
                    let y = vld1q_s8_x4(q8.add(64 * c) as *const i8);
                    for r in 0..R {
                        let x = w.add(r * row_bytes + i * BLOCK_Q5_K_BYTES + QS + 32 * c);
                        let bits = vld1q_u8_x2(x);
                        let h = &mut qh[r];
                        let l0 = vorrq_u8(vandq_u8(bits.0, m4), vshlq_n_u8(vandq_u8(h.0, m1), 4));
                        let l1 = vorrq_u8(vandq_u8(bits.1, m4), vshlq_n_u8(vandq_u8(h.1, m1), 4));
                        let h0 = vorrq_u8(vshrq_n_u8(bits.0, 4), vshlq_n_u8(vandq_u8(h.0, m2), 3));
                        let h1 = vorrq_u8(vshrq_n_u8(bits.1, 4), vshlq_n_u8(vandq_u8(h.1, m2), 3));
                        h.0 = vshrq_n_u8(h.0, 2);
                        h.1 = vshrq_n_u8(h.1, 2);
                        p[r][2 * c] = $dot32(l0, l1, y.0, y.1);
                        p[r][2 * c + 1] = $dot32(h0, h1, y.2, y.3);
                    }
                }
                for r in 0..R {
                    // Four sub-blocks per multiply: pairwise-add tree, then the scales.
                    let s = vmovl_u8(vld1_u8(sc[r].as_ptr()));
                    let s_lo = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(s)));
                    let s_hi = vreinterpretq_s32_u32(vmovl_high_u16(s));
                    let q = &p[r];
                    let sumi = vmulq_s32(hsum4(q[0], q[1], q[2], q[3]), s_lo);
                    let sumi = vmlaq_s32(sumi, hsum4(q[4], q[5], q[6], q[7]), s_hi);
                    acc[r] = vmlaq_n_f32(acc[r], vcvtq_f32_s32(sumi), dd[r]);
                }
            }
            let mut out = [0f32; R];
            for r in 0..R {
                out[r] = vaddvq_f32(acc[r]) - summ[r];
            }
            out
        }
    };
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::*;
    use crate::quants::q8_k::arm::*;
    use core::arch::aarch64::*;

    /// Σ of 32 byte products (weights 0..=31) as 4 lanes: `smull`/`smlal`
    /// with 4 products per i16 lane (≤ 4·31·128 = 15872), then widen.
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn dot32(q0: uint8x16_t, q1: uint8x16_t, y0: int8x16_t, y1: int8x16_t) -> int32x4_t {
        let (q0, q1) = (vreinterpretq_s8_u8(q0), vreinterpretq_s8_u8(q1));
        let p = vmull_s8(vget_low_s8(q0), vget_low_s8(y0));
        let p = vmlal_high_s8(p, q0, y0);
        let p = vmlal_s8(p, vget_low_s8(q1), vget_low_s8(y1));
        vpaddlq_s16(vmlal_high_s8(p, q1, y1))
    }

    neon_dot_rows!("neon", dot32);
}

#[cfg(target_arch = "aarch64")]
mod dotprod {
    use super::*;
    use crate::quants::q8_k::arm::*;
    use core::arch::aarch64::*;

    /// Σ of 32 byte products as 4 lanes, by `sdot`.
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    unsafe fn dot32(q0: uint8x16_t, q1: uint8x16_t, y0: int8x16_t, y1: int8x16_t) -> int32x4_t {
        let z = vdupq_n_s32(0);
        sdot(
            sdot(z, vreinterpretq_s8_u8(q0), y0),
            vreinterpretq_s8_u8(q1),
            y1,
        )
    }

    neon_dot_rows!("neon,dotprod", dot32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::q8_k::{select_act, BLOCK_Q8_K_BYTES};
    use crate::testutil::*;

    fn random_blocks(rng: &mut Rng, count: usize) -> Vec<u8> {
        blocks(count, |_| BlockQ5_K {
            d: rng.scale_f16(-3.0, -1.0),
            dmin: rng.scale_f16(-3.0, -1.0),
            scales: rng.bytes(K_SCALE_SIZE).try_into().unwrap(),
            qh: rng.bytes(QK_K / 8).try_into().unwrap(),
            qs: rng.bytes(QK_K / 2).try_into().unwrap(),
        })
    }

    crate::quants::q8_k::multirow_test!(BLOCK_Q5_K_BYTES, random_blocks, x86: [avx2 => Avx2], arm: [neon => Neon, dotprod => Dotprod]);

    #[test]
    fn block_layout() {
        assert_eq!(BLOCK_Q5_K_BYTES, GgmlType::Q5_K.block_bytes());
        let b: BlockQ5_K = bytemuck::Zeroable::zeroed();
        let base = &b as *const _ as usize;
        assert_eq!(b.scales.as_ptr() as usize - base, SCALES);
        assert_eq!(b.qh.as_ptr() as usize - base, QH);
        assert_eq!(b.qs.as_ptr() as usize - base, QS);
    }

    #[test]
    fn simd_matches_scalar() {
        let mut rng = Rng::new(51);
        for nblocks in [1usize, 2, 3, 16] {
            let w = random_blocks(&mut rng, 7 * nblocks);
            let x = rng.normals(nblocks * QK_K, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("Q5_K {nblocks} blocks"),
            );
        }
    }

    /// All-maximal quants (31) and 6-bit scales/mins, activations at ±127 and −128.
    #[test]
    fn overflow_stress() {
        let nb = 3;
        let max_block = BlockQ5_K {
            d: f16::from_f32(1.0),
            dmin: f16::from_f32(1.0),
            scales: [0xFF; K_SCALE_SIZE],
            qh: [0xFF; QK_K / 8],
            qs: [0xFF; QK_K / 2],
        };
        let zero_q = BlockQ5_K {
            qh: [0; QK_K / 8],
            qs: [0; QK_K / 2],
            ..max_block
        };
        let w = blocks(2 * nb, |i| if i / nb == 0 { max_block } else { zero_q });
        let row_bytes = nb * BLOCK_Q5_K_BYTES;
        for fill in [127i8, -127, -128] {
            let mut a = vec![0u8; nb * BLOCK_Q8_K_BYTES];
            for blk in a.chunks_exact_mut(BLOCK_Q8_K_BYTES) {
                let b = q8_k::BlockQ8_K {
                    d: 1.0,
                    qs: [fill; QK_K],
                    bsums: [16 * fill as i16; 16],
                };
                blk.copy_from_slice(bytemuck::bytes_of(&b));
            }
            let exact = [(63.0 * 31.0 - 63.0), -63.0].map(|e| (nb * QK_K) as f64 * e * fill as f64);
            for b in backends() {
                let fk = select(b);
                let mut out = vec![0.0; 2];
                (fk.gemv)(nb * QK_K, &w, row_bytes, &a, &mut out);
                for r in 0..2 {
                    let v = (fk.vec_dot)(nb * QK_K, &w[r * row_bytes..], &a) as f64;
                    let tol = 1e-6 * exact[r].abs();
                    assert_close(
                        &format!("{b} gemv fill {fill} row {r}"),
                        out[r] as f64,
                        exact[r],
                        tol,
                    );
                    assert_close(
                        &format!("{b} vec_dot fill {fill} row {r}"),
                        v,
                        exact[r],
                        tol,
                    );
                }
            }
        }
    }

    /// Budgets of the f32 reference: weights on ggml's synthetic signal,
    /// quantized here by rounding to the nearest level of each sub-block's
    /// [min, max] (Q5_K files come from ggml's quantizer; the kernels only
    /// need realistic blocks).
    #[test]
    fn error_budgets() {
        let n = 4096;
        let x = synthetic(n, 0.0);
        let w = simple_quantize(&x);
        let mut y = vec![0.0; n];
        dequantize_row_q5_K(&w, &mut y);
        let err = rmse(&x, &y);
        assert!(
            err < MAX_QUANTIZATION_TOTAL_ERROR,
            "quantization error {err}"
        );
        let xa = synthetic(n, 1.0);
        for b in backends() {
            let e = dot_error(&select(b), &select_act(b), n, &w, &xa);
            assert!(e < MAX_DOT_PRODUCT_ERROR, "{b}: dot product error {e}");
        }
    }

    /// A plain affine Q5_K quantizer for tests.
    fn simple_quantize(x: &[f32]) -> Vec<u8> {
        let mut out = Vec::new();
        for xb in x.chunks_exact(QK_K) {
            let mut sc = [0f32; 8];
            let mut mn = [0f32; 8];
            for j in 0..8 {
                let s = &xb[32 * j..32 * j + 32];
                let lo = s.iter().fold(f32::MAX, |m, &v| m.min(v)).min(0.0);
                let hi = s.iter().fold(f32::MIN, |m, &v| m.max(v));
                sc[j] = (hi - lo) / 31.0;
                mn[j] = -lo;
            }
            let d = sc.iter().fold(0f32, |m, &v| m.max(v)) / 63.0;
            let dmin = mn.iter().fold(0f32, |m, &v| m.max(v)) / 63.0;
            let ls = sc.map(|s| {
                if d > 0.0 {
                    ((s / d).round() as u8).min(63)
                } else {
                    0
                }
            });
            let lm = mn.map(|m| {
                if dmin > 0.0 {
                    ((m / dmin).round() as u8).min(63)
                } else {
                    0
                }
            });
            let mut b = BlockQ5_K {
                d: f16::from_f32(d),
                dmin: f16::from_f32(dmin),
                scales: super::super::q4_k::pack_scales_mins(&ls, &lm),
                qh: [0; QK_K / 8],
                qs: [0; QK_K / 2],
            };
            let (df, mf) = (b.d.to_f32(), b.dmin.to_f32());
            let mut q = [0u8; QK_K];
            for j in 0..8 {
                let (s, m) = get_scale_min_k4(j, &b.scales);
                let (dl, ml) = (df * s as f32, mf * m as f32);
                for k in 32 * j..32 * j + 32 {
                    q[k] = if dl > 0.0 {
                        ((xb[k] + ml) / dl).round().clamp(0.0, 31.0) as u8
                    } else {
                        0
                    };
                }
            }
            for c in 0..4 {
                for l in 0..32 {
                    let (a, hb) = (q[64 * c + l], q[64 * c + 32 + l]);
                    b.qs[32 * c + l] = (a & 0xF) | ((hb & 0xF) << 4);
                    b.qh[l] |= ((a >> 4) << (2 * c)) | ((hb >> 4) << (2 * c + 1));
                }
            }
            out.extend_from_slice(bytemuck::bytes_of(&b));
        }
        out
    }
}
