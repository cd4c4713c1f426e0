//! Q2_K: 2-bit K-quant, 2.625 bits per weight (Q2_K files: the only way a
//! 7B/8B model fits a 1 GB board).
//!
//! 16 sub-blocks of 16 weights, each with a 4-bit scale (low nibble of
//! `scales[g]`) and 4-bit minimum (high nibble); f16 `d` and `dmin` scale
//! them: `x = d·sc_g·q − dmin·m_g`, `q` in 0..=3. Weight `v = 128n + 32j + l`
//! (`n` in 0..2, `j` in 0..4, `l` in 0..32) is in bits `2j..2j+2` of
//! `qs[32n + l]`.
//!
//! The dot product with Q8_K applies the minimums through the activation's
//! group sums: `d8·(d·Σ_g sc_g·Σ q·q8 − dmin·Σ_g m_g·bsums[g])`.

use super::q8_k::{self, check_dot, QK_K};
use super::{gemv_rows, VecDot};
use crate::dispatch::{Backend, FormatKernels};
use crate::types::GgmlType;
use half::f16;

/// Q2_K super-block, as in ggml-common.h.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ2_K {
    /// scales and mins, quantized with 4 bits
    pub scales: [u8; QK_K / 16],
    /// quants
    pub qs: [u8; QK_K / 4],
    /// super-block scale for quantized scales
    pub d: f16,
    /// super-block scale for quantized mins
    pub dmin: f16,
}

/// Bytes of one [`BlockQ2_K`].
pub const BLOCK_Q2_K_BYTES: usize = 84;
const _: () = assert!(std::mem::size_of::<BlockQ2_K>() == BLOCK_Q2_K_BYTES);

/// Byte offsets inside a block.
const SCALES: usize = 0;
const QS: usize = 16;
const D: usize = 80;
const DMIN: usize = 82;

/// The 256 quants of a block, 0..=3, in weight order.
#[inline]
fn unpack(b: &BlockQ2_K) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for (v, o) in q.iter_mut().enumerate() {
        let (n, j, l) = (v / 128, (v / 32) % 4, v % 32);
        *o = (b.qs[32 * n + l] >> (2 * j)) & 3;
    }
    q
}

/// `y` = the values of the Q2_K blocks in `x` (ggml's `dequantize_row_q2_K`,
/// bit for bit).
#[allow(non_snake_case)]
pub fn dequantize_row_q2_K(x: &[u8], y: &mut [f32]) {
    assert!(
        y.len().is_multiple_of(QK_K),
        "dequantize_row_q2_K: {} values",
        y.len()
    );
    let nb = y.len() / QK_K;
    assert!(
        x.len() >= nb * BLOCK_Q2_K_BYTES,
        "dequantize_row_q2_K: input too short"
    );
    for (xb, yb) in x
        .chunks_exact(BLOCK_Q2_K_BYTES)
        .zip(y.chunks_exact_mut(QK_K))
    {
        let b: BlockQ2_K = bytemuck::pod_read_unaligned(xb);
        let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
        let q = unpack(&b);
        for g in 0..16 {
            let sc = b.scales[g];
            let (dl, ml) = (d * (sc & 0xF) as f32, min * (sc >> 4) as f32);
            for v in 16 * g..16 * g + 16 {
                yb[v] = dl * q[v] as f32 - ml;
            }
        }
    }
}

/// Dot product of a Q2_K row with a Q8_K row, `n` values (scalar reference).
#[allow(non_snake_case)]
pub fn vec_dot_q2_K_q8_K(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check_dot("q2_K", n, w, BLOCK_Q2_K_BYTES, a);
    let mut sumf = 0.0f32;
    for (i, xb) in w.chunks_exact(BLOCK_Q2_K_BYTES).take(nb).enumerate() {
        let x: BlockQ2_K = bytemuck::pod_read_unaligned(xb);
        let y = q8_k::read_block(a, i);
        let q = unpack(&x);
        let (mut isum, mut msum) = (0i32, 0i32);
        for g in 0..16 {
            let t: i32 = (16 * g..16 * g + 16)
                .map(|k| q[k] as i32 * y.qs[k] as i32)
                .sum();
            isum += (x.scales[g] & 0xF) as i32 * t;
            msum += (x.scales[g] >> 4) as i32 * y.bsums[g] as i32;
        }
        sumf += y.d * x.d.to_f32() * isum as f32 - y.d * x.dmin.to_f32() * msum as f32;
    }
    sumf
}

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_q2_K_q8_K(n, w, a)
    }
}

/// Q2_K kernels for `level` (no AVX-512 version: the AVX2 one serves).
pub(crate) fn select(level: Backend) -> FormatKernels {
    let scalar = FormatKernels {
        weight: GgmlType::Q2_K,
        act: GgmlType::Q8_K,
        dequantize_row: dequantize_row_q2_K,
        vec_dot: vec_dot_q2_K_q8_K,
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

crate::quants::q8_k::k_entries!("q2_K", BLOCK_Q2_K_BYTES, no_avx512);

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use crate::quants::q8_k::x86::*;
    use core::arch::x86_64::*;

    crate::quants::q8_k::gemv_in_groups!("avx2,fma,f16c");

    /// Bits `2j..2j+2` of every byte, as 0..=3.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn field(v: __m256i, j: usize) -> __m256i {
        let m3 = _mm256_set1_epi8(3);
        match j {
            0 => _mm256_and_si256(v, m3),
            1 => _mm256_and_si256(_mm256_srli_epi16(v, 2), m3),
            2 => _mm256_and_si256(_mm256_srli_epi16(v, 4), m3),
            _ => _mm256_and_si256(_mm256_srli_epi16(v, 6), m3),
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
        let m4 = _mm_set1_epi8(0xF);
        // Per 32 weights j of a half: low 128-bit lane → group 2j, high → 2j+1.
        let mut shuf = [_mm256_setzero_si256(); 4];
        for (k, s) in shuf.iter_mut().enumerate() {
            let lo = _mm_set1_epi16((((4 * k + 1) << 8) | (4 * k)) as i16);
            let hi = _mm_set1_epi16((((4 * k + 3) << 8) | (4 * k + 2)) as i16);
            *s = _mm256_set_m128i(hi, lo);
        }
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc_m = [_mm256_setzero_ps(); R];
        for i in 0..nb {
            let (d8, q8, bsums) = q8k_block(a, i);
            let bs = _mm256_loadu_si256(bsums as *const __m256i);
            let mut sc = [[_mm256_setzero_si256(); 2]; R];
            let mut dd = [0f32; R];
            for r in 0..R {
                let x = w.add(r * row_bytes + i * BLOCK_Q2_K_BYTES);
                let s8 = _mm_loadu_si128(x.add(SCALES) as *const __m128i);
                let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), m4));
                let prod = _mm256_madd_epi16(mins, bs);
                let dmin = d8 * f16_at(x.add(DMIN));
                acc_m[r] =
                    _mm256_fmadd_ps(_mm256_set1_ps(-dmin), _mm256_cvtepi32_ps(prod), acc_m[r]);
                let s = _mm_and_si128(s8, m4);
                sc[r][0] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(s));
                sc[r][1] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_srli_si128(s, 8)));
                dd[r] = d8 * f16_at(x.add(D));
            }
            let mut sumi = [_mm256_setzero_si256(); R];
            for n in 0..2 {
                for j in 0..4 {
                    let y = _mm256_loadu_si256(q8.add(128 * n + 32 * j) as *const __m256i);
                    for r in 0..R {
                        let x = w.add(r * row_bytes + i * BLOCK_Q2_K_BYTES);
                        let bits = _mm256_loadu_si256(x.add(QS + 32 * n) as *const __m256i);
                        let p = _mm256_maddubs_epi16(field(bits, j), y);
                        let s = _mm256_shuffle_epi8(sc[r][n], shuf[j]);
                        sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(s, p));
                    }
                }
            }
            for r in 0..R {
                acc[r] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dd[r]), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            }
        }
        let mut out = [0f32; R];
        for r in 0..R {
            out[r] = hsum_ps(_mm256_add_ps(acc[r], acc_m[r]));
        }
        out
    }
}

/// NEON and NEON+dotprod share everything but the 16-weight dot product.
#[cfg(target_arch = "aarch64")]
macro_rules! neon_dot_rows {
    ($feat:literal, $dot16:ident) => {
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
            let m3 = vdupq_n_u8(3);
            let mut acc = [vdupq_n_f32(0.0); R];
            let mut summ = [0f32; R];
            for i in 0..nb {
                let (d8, q8, bsums) = q8k_block(a, i);
                let bs = load_bsums(bsums);
                let mut sumi = [vdupq_n_s32(0); R];
                let mut sc = [[0u8; 16]; R];
                let mut dd = [0f32; R];
                for r in 0..R {
                    let x = w.add(r * row_bytes + i * BLOCK_Q2_K_BYTES);
                    let s = vld1q_u8(x.add(SCALES));
                    vst1q_u8(sc[r].as_mut_ptr(), vandq_u8(s, vdupq_n_u8(0xF)));
                    let m = vshrq_n_u8(s, 4);
                    let (m0, m1) = (
                        vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(m))),
                        vreinterpretq_s16_u16(vmovl_high_u8(m)),
                    );
                    let p = vmull_s16(vget_low_s16(m0), vget_low_s16(bs.0));
                    let p = vmlal_high_s16(p, m0, bs.0);
                    let p = vmlal_s16(p, vget_low_s16(m1), vget_low_s16(bs.1));
                    let p = vmlal_high_s16(p, m1, bs.1);
                    summ[r] += d8 * f16_at(x.add(DMIN)) * vaddvq_s32(p) as f32;
                    dd[r] = d8 * f16_at(x.add(D));
                }
                for n in 0..2 {
                    let y0 = vld1q_s8_x4(q8.add(128 * n) as *const i8);
                    let y1 = vld1q_s8_x4(q8.add(128 * n + 64) as *const i8);
                    let y = [y0.0, y0.1, y0.2, y0.3, y1.0, y1.1, y1.2, y1.3];
                    for r in 0..R {
                        let x = w.add(r * row_bytes + i * BLOCK_Q2_K_BYTES);
                        let mut q = vld1q_u8_x2(x.add(QS + 32 * n));
                        let mut p = [vdupq_n_s32(0); 8];
                        for j in 0..4 {
                            let u0 = vandq_u8(q.0, m3);
                            let u1 = vandq_u8(q.1, m3);
                            q.0 = vshrq_n_u8(q.0, 2);
                            q.1 = vshrq_n_u8(q.1, 2);
                            p[2 * j] = $dot16(u0, y[2 * j]);
                            p[2 * j + 1] = $dot16(u1, y[2 * j + 1]);
                        }
                        // Four groups per multiply: pairwise-add tree, then the scales.
                        let s = vmovl_u8(vld1_u8(sc[r].as_ptr().add(8 * n)));
                        let s_lo = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(s)));
                        let s_hi = vreinterpretq_s32_u32(vmovl_high_u16(s));
                        sumi[r] = vmlaq_s32(sumi[r], hsum4(p[0], p[1], p[2], p[3]), s_lo);
                        sumi[r] = vmlaq_s32(sumi[r], hsum4(p[4], p[5], p[6], p[7]), s_hi);
                    }
                }
                for r in 0..R {
                    acc[r] = vmlaq_n_f32(acc[r], vcvtq_f32_s32(sumi[r]), dd[r]);
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

    /// Σ of 16 byte products as 4 lanes (`smull`/`smlal`, then widen).
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn dot16(q: uint8x16_t, y: int8x16_t) -> int32x4_t {
        let q = vreinterpretq_s8_u8(q);
        vpaddlq_s16(vmlal_high_s8(
            vmull_s8(vget_low_s8(q), vget_low_s8(y)),
            q,
            y,
        ))
    }

    neon_dot_rows!("neon", dot16);
}

#[cfg(target_arch = "aarch64")]
mod dotprod {
    use super::*;
    use crate::quants::q8_k::arm::*;
    use core::arch::aarch64::*;

    /// Σ of 16 byte products as 4 lanes, by `sdot`.
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    unsafe fn dot16(q: uint8x16_t, y: int8x16_t) -> int32x4_t {
        sdot(vdupq_n_s32(0), vreinterpretq_s8_u8(q), y)
    }

    neon_dot_rows!("neon,dotprod", dot16);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::q8_k::{select_act, BLOCK_Q8_K_BYTES};
    use crate::testutil::*;

    fn random_blocks(rng: &mut Rng, count: usize) -> Vec<u8> {
        blocks(count, |_| BlockQ2_K {
            scales: rng.bytes(QK_K / 16).try_into().unwrap(),
            qs: rng.bytes(QK_K / 4).try_into().unwrap(),
            d: rng.scale_f16(-3.0, -1.0),
            dmin: rng.scale_f16(-3.0, -1.0),
        })
    }

    crate::quants::q8_k::multirow_test!(BLOCK_Q2_K_BYTES, random_blocks, x86: [avx2 => Avx2], arm: [neon => Neon, dotprod => Dotprod]);

    #[test]
    fn block_layout() {
        assert_eq!(BLOCK_Q2_K_BYTES, GgmlType::Q2_K.block_bytes());
        let b: BlockQ2_K = bytemuck::Zeroable::zeroed();
        let base = &b as *const _ as usize;
        assert_eq!(b.scales.as_ptr() as usize - base, SCALES);
        assert_eq!(b.qs.as_ptr() as usize - base, QS);
        assert_eq!(&b.d as *const _ as usize - base, D);
        assert_eq!(&b.dmin as *const _ as usize - base, DMIN);
    }

    #[test]
    fn simd_matches_scalar() {
        let mut rng = Rng::new(21);
        for nblocks in [1usize, 2, 3, 16] {
            let w = random_blocks(&mut rng, 7 * nblocks);
            let x = rng.normals(nblocks * QK_K, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("Q2_K {nblocks} blocks"),
            );
        }
    }

    /// All-maximal quants (3), scales and mins (15), activations at ±127 and −128.
    #[test]
    fn overflow_stress() {
        let nb = 3;
        let max_block = BlockQ2_K {
            scales: [0xFF; 16],
            qs: [0xFF; QK_K / 4],
            d: f16::from_f32(1.0),
            dmin: f16::from_f32(1.0),
        };
        let zero_q = BlockQ2_K {
            qs: [0; QK_K / 4],
            ..max_block
        };
        let w = blocks(2 * nb, |i| if i / nb == 0 { max_block } else { zero_q });
        let row_bytes = nb * BLOCK_Q2_K_BYTES;
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
            let exact = [15.0 * 3.0 - 15.0, -15.0].map(|e| (nb * QK_K) as f64 * e * fill as f64);
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

    /// Budgets of the f32 reference on ggml's synthetic signal, with a plain
    /// affine quantizer (Q2_K files come from ggml's quantizer; the kernels
    /// only need realistic blocks).
    #[test]
    fn error_budgets() {
        let n = 4096;
        let x = synthetic(n, 0.0);
        let w = simple_quantize(&x);
        let mut y = vec![0.0; n];
        dequantize_row_q2_K(&w, &mut y);
        let err = rmse(&x, &y);
        assert!(
            err < MAX_QUANTIZATION_TOTAL_ERROR_2BITS,
            "quantization error {err}"
        );
        let xa = synthetic(n, 1.0);
        for b in backends() {
            let e = dot_error(&select(b), &select_act(b), n, &w, &xa);
            assert!(
                e < MAX_DOT_PRODUCT_ERROR_LOWBIT,
                "{b}: dot product error {e}"
            );
        }
    }

    fn simple_quantize(x: &[f32]) -> Vec<u8> {
        let mut out = Vec::new();
        for xb in x.chunks_exact(QK_K) {
            let mut sc = [0f32; 16];
            let mut mn = [0f32; 16];
            for g in 0..16 {
                let s = &xb[16 * g..16 * g + 16];
                let lo = s.iter().fold(f32::MAX, |m, &v| m.min(v)).min(0.0);
                let hi = s.iter().fold(f32::MIN, |m, &v| m.max(v));
                sc[g] = (hi - lo) / 3.0;
                mn[g] = -lo;
            }
            let d = sc.iter().fold(0f32, |m, &v| m.max(v)) / 15.0;
            let dmin = mn.iter().fold(0f32, |m, &v| m.max(v)) / 15.0;
            let mut b: BlockQ2_K = bytemuck::Zeroable::zeroed();
            b.d = f16::from_f32(d);
            b.dmin = f16::from_f32(dmin);
            for g in 0..16 {
                let ls = if d > 0.0 {
                    ((sc[g] / d).round() as u8).min(15)
                } else {
                    0
                };
                let lm = if dmin > 0.0 {
                    ((mn[g] / dmin).round() as u8).min(15)
                } else {
                    0
                };
                b.scales[g] = ls | (lm << 4);
            }
            let (df, mf) = (b.d.to_f32(), b.dmin.to_f32());
            for (v, &xv) in xb.iter().enumerate() {
                let sc = b.scales[v / 16];
                let (dl, ml) = (df * (sc & 0xF) as f32, mf * (sc >> 4) as f32);
                let q = if dl > 0.0 {
                    ((xv + ml) / dl).round().clamp(0.0, 3.0) as u8
                } else {
                    0
                };
                let (n, j, l) = (v / 128, (v / 32) % 4, v % 32);
                b.qs[32 * n + l] |= q << (2 * j);
            }
            out.extend_from_slice(bytemuck::bytes_of(&b));
        }
        out
    }
}
