//! Q3_K: 3-bit K-quant, 3.4375 bits per weight (Q3_K_S/M files: the small
//! boards' 7B/8B option).
//!
//! 16 sub-blocks of 16 weights with 6-bit signed scales (stored +32), one f16
//! `d`: `x = d·(sc_g − 32)·q`, `q` in −4..=3. Weight `v = 128n + 32j + l`
//! (`n` in 0..2, `j` in 0..4, `l` in 0..32) has its low two bits in bits
//! `2j..2j+2` of `qs[32n + l]` and its high bit in bit `4n + j` of `hmask[l]`;
//! `q = low + 4·high − 4`.
//!
//! The SIMD kernels multiply the unsigned `low + 4·high` (0..=7) and subtract
//! the −4 offset once per block as `4·Σ_g s_g·bsums[g]`.

use super::q8_k::{self, check_dot, QK_K};
use super::{gemv_rows, VecDot};
use crate::dispatch::{Backend, FormatKernels};
use crate::types::GgmlType;
use half::f16;

/// Q3_K super-block, as in ggml-common.h.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ3_K {
    /// quants - high bit
    pub hmask: [u8; QK_K / 8],
    /// quants - low 2 bits
    pub qs: [u8; QK_K / 4],
    /// scales, quantized with 6 bits
    pub scales: [u8; 12],
    /// super-block scale
    pub d: f16,
}

/// Bytes of one [`BlockQ3_K`].
pub const BLOCK_Q3_K_BYTES: usize = 110;
const _: () = assert!(std::mem::size_of::<BlockQ3_K>() == BLOCK_Q3_K_BYTES);

/// Byte offsets inside a block. (The SIMD scale unpacks read 16 bytes from
/// `SCALES − 2`: they end exactly at the block's end.)
const HMASK: usize = 0;
const QS: usize = 32;
const SCALES: usize = 96;
const D: usize = 108;
const _: () = assert!(SCALES - 2 + 16 == BLOCK_Q3_K_BYTES);

/// The 16 six-bit scales, unpacked and made signed (`sc − 32`), from the 12
/// packed bytes (ggml's `aux` shuffle).
#[inline(always)]
fn unpack_scales(p: &[u8; 12]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let a = [
        u32::from_le_bytes([p[0], p[1], p[2], p[3]]),
        u32::from_le_bytes([p[4], p[5], p[6], p[7]]),
        u32::from_le_bytes([p[8], p[9], p[10], p[11]]),
    ];
    let t = a[2];
    let u: [u32; 4] = [
        (a[0] & KMASK2) | ((t & KMASK1) << 4),
        (a[1] & KMASK2) | (((t >> 2) & KMASK1) << 4),
        ((a[0] >> 4) & KMASK2) | (((t >> 4) & KMASK1) << 4),
        ((a[1] >> 4) & KMASK2) | (((t >> 6) & KMASK1) << 4),
    ];
    let b: [u8; 16] = bytemuck::cast(u);
    b.map(|v| v as i8 - 32)
}

/// The 256 quants of a block, −4..=3, in weight order.
#[inline]
fn unpack(b: &BlockQ3_K) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for (v, o) in q.iter_mut().enumerate() {
        let (n, j, l) = (v / 128, (v / 32) % 4, v % 32);
        let low = (b.qs[32 * n + l] >> (2 * j)) & 3;
        let high = (b.hmask[l] >> (4 * n + j)) & 1;
        *o = (low + 4 * high) as i8 - 4;
    }
    q
}

/// `y` = the values of the Q3_K blocks in `x` (ggml's `dequantize_row_q3_K`,
/// bit for bit).
#[allow(non_snake_case)]
pub fn dequantize_row_q3_K(x: &[u8], y: &mut [f32]) {
    assert!(
        y.len().is_multiple_of(QK_K),
        "dequantize_row_q3_K: {} values",
        y.len()
    );
    let nb = y.len() / QK_K;
    assert!(
        x.len() >= nb * BLOCK_Q3_K_BYTES,
        "dequantize_row_q3_K: input too short"
    );
    for (xb, yb) in x
        .chunks_exact(BLOCK_Q3_K_BYTES)
        .zip(y.chunks_exact_mut(QK_K))
    {
        let b: BlockQ3_K = bytemuck::pod_read_unaligned(xb);
        let d = b.d.to_f32();
        let s = unpack_scales(&b.scales);
        let q = unpack(&b);
        for (v, o) in yb.iter_mut().enumerate() {
            *o = d * s[v / 16] as f32 * q[v] as f32;
        }
    }
}

/// Dot product of a Q3_K row with a Q8_K row, `n` values (scalar reference).
#[allow(non_snake_case)]
pub fn vec_dot_q3_K_q8_K(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check_dot("q3_K", n, w, BLOCK_Q3_K_BYTES, a);
    let mut sumf = 0.0f32;
    for (i, xb) in w.chunks_exact(BLOCK_Q3_K_BYTES).take(nb).enumerate() {
        let x: BlockQ3_K = bytemuck::pod_read_unaligned(xb);
        let y = q8_k::read_block(a, i);
        let s = unpack_scales(&x.scales);
        let q = unpack(&x);
        let mut isum = 0i32;
        for (g, &sg) in s.iter().enumerate() {
            let t: i32 = (16 * g..16 * g + 16)
                .map(|k| q[k] as i32 * y.qs[k] as i32)
                .sum();
            isum += sg as i32 * t;
        }
        sumf += y.d * x.d.to_f32() * isum as f32;
    }
    sumf
}

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_q3_K_q8_K(n, w, a)
    }
}

/// Q3_K kernels for `level` (no AVX-512 version: the AVX2 one serves).
pub(crate) fn select(level: Backend) -> FormatKernels {
    let scalar = FormatKernels {
        weight: GgmlType::Q3_K,
        act: GgmlType::Q8_K,
        dequantize_row: dequantize_row_q3_K,
        vec_dot: vec_dot_q3_K_q8_K,
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

crate::quants::q8_k::k_entries!("q3_K", BLOCK_Q3_K_BYTES, no_avx512);

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use crate::quants::q8_k::x86::*;
    use core::arch::x86_64::*;

    crate::quants::q8_k::gemv_in_groups!("avx2,fma,f16c");

    /// Bit `k` of every byte of `v` moved to bit 2 (16-bit shifts: the bit
    /// that lands on bit 2 of a byte always comes from that byte).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn bit_to_4(v: __m256i, k: usize) -> __m256i {
        let m = _mm256_set1_epi8(4);
        match k {
            0 => _mm256_and_si256(_mm256_slli_epi16(v, 2), m),
            1 => _mm256_and_si256(_mm256_slli_epi16(v, 1), m),
            2 => _mm256_and_si256(v, m),
            3 => _mm256_and_si256(_mm256_srli_epi16(v, 1), m),
            4 => _mm256_and_si256(_mm256_srli_epi16(v, 2), m),
            5 => _mm256_and_si256(_mm256_srli_epi16(v, 3), m),
            6 => _mm256_and_si256(_mm256_srli_epi16(v, 4), m),
            _ => _mm256_and_si256(_mm256_srli_epi16(v, 5), m),
        }
    }

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

    /// [`unpack_scales`] in SIMD for the block at `x`: the 16 scales − 32 as
    /// bytes. Reads the 16 bytes that end at the block's end (the scales and
    /// `d`), so it never reads past a row.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(super) unsafe fn scales_sse(x: *const u8) -> __m128i {
        let v = _mm_srli_si128(_mm_loadu_si128(x.add(SCALES - 2) as *const __m128i), 2);
        // Low 4 bits: scale j < 8 in the low nibble of byte j, j ≥ 8 in the
        // high nibble of byte j − 8.
        let lo = _mm_and_si128(
            _mm_unpacklo_epi64(v, _mm_srli_epi16(v, 4)),
            _mm_set1_epi8(0xF),
        );
        // High 2 bits: byte 8 + j%4, bits 2·(j/4): dword 2 to every dword k,
        // shifted right by 2k.
        let h = _mm_srlv_epi32(_mm_shuffle_epi32(v, 0xAA), _mm_setr_epi32(0, 2, 4, 6));
        let h = _mm_slli_epi16(_mm_and_si128(h, _mm_set1_epi8(3)), 4);
        _mm_sub_epi8(_mm_or_si128(lo, h), _mm_set1_epi8(32))
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
        // Per 32 weights j of a half: low 128-bit lane → group 2j, high → 2j+1.
        let mut shuf = [_mm256_setzero_si256(); 4];
        for (k, s) in shuf.iter_mut().enumerate() {
            let lo = _mm_set1_epi16((((4 * k + 1) << 8) | (4 * k)) as i16);
            let hi = _mm_set1_epi16((((4 * k + 3) << 8) | (4 * k + 2)) as i16);
            *s = _mm256_set_m128i(hi, lo);
        }
        let mut acc = [_mm256_setzero_ps(); R];
        for i in 0..nb {
            let (d8, q8, bsums) = q8k_block(a, i);
            let bs = _mm256_loadu_si256(bsums as *const __m256i);
            let mut sumi = [_mm256_setzero_si256(); R];
            let mut sc = [[_mm256_setzero_si256(); 2]; R];
            let mut hm = [_mm256_setzero_si256(); R];
            let mut dd = [0f32; R];
            for r in 0..R {
                let x = w.add(r * row_bytes + i * BLOCK_Q3_K_BYTES);
                let s8 = scales_sse(x);
                let corr = _mm256_madd_epi16(_mm256_cvtepi8_epi16(s8), bs);
                sumi[r] = _mm256_sub_epi32(sumi[r], _mm256_slli_epi32(corr, 2));
                sc[r][0] = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(s8));
                sc[r][1] = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128(s8, 8)));
                hm[r] = _mm256_loadu_si256(x.add(HMASK) as *const __m256i);
                dd[r] = d8 * f16_at(x.add(D));
            }
            for n in 0..2 {
                for j in 0..4 {
                    let y = _mm256_loadu_si256(q8.add(128 * n + 32 * j) as *const __m256i);
                    for r in 0..R {
                        let x = w.add(r * row_bytes + i * BLOCK_Q3_K_BYTES);
                        let bits = _mm256_loadu_si256(x.add(QS + 32 * n) as *const __m256i);
                        let u = _mm256_or_si256(field(bits, j), bit_to_4(hm[r], 4 * n + j));
                        let p = _mm256_maddubs_epi16(u, y);
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
            out[r] = hsum_ps(acc[r]);
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
            let m1 = vdupq_n_u8(1);
            let m3 = vdupq_n_u8(3);
            let mut acc = [vdupq_n_f32(0.0); R];
            let mut off = [0f32; R];
            for i in 0..nb {
                let (d8, q8, bsums) = q8k_block(a, i);
                let bs = load_bsums(bsums);
                let mut sumi = [vdupq_n_s32(0); R];
                let mut sc = [vdupq_n_s8(0); R];
                let mut hm = [uint8x16x2_t(vdupq_n_u8(0), vdupq_n_u8(0)); R];
                let mut dd = [0f32; R];
                for r in 0..R {
                    let x = w.add(r * row_bytes + i * BLOCK_Q3_K_BYTES);
                    sc[r] = neon_scales(x);
                    dd[r] = d8 * f16_at(x.add(D));
                    off[r] += dd[r] * (4 * scaled_bsums(sc[r], bs)) as f32;
                    hm[r] = vld1q_u8_x2(x.add(HMASK));
                }
                for n in 0..2 {
                    let y0 = vld1q_s8_x4(q8.add(128 * n) as *const i8);
                    let y1 = vld1q_s8_x4(q8.add(128 * n + 64) as *const i8);
                    let y = [y0.0, y0.1, y0.2, y0.3, y1.0, y1.1, y1.2, y1.3];
                    for r in 0..R {
                        let x = w.add(r * row_bytes + i * BLOCK_Q3_K_BYTES);
                        let mut q = vld1q_u8_x2(x.add(QS + 32 * n));
                        let h = &mut hm[r];
                        let mut p = [vdupq_n_s32(0); 8];
                        for j in 0..4 {
                            // low 2 bits | high bit · 4, then advance both.
                            let u0 = vorrq_u8(vandq_u8(q.0, m3), vshlq_n_u8(vandq_u8(h.0, m1), 2));
                            let u1 = vorrq_u8(vandq_u8(q.1, m3), vshlq_n_u8(vandq_u8(h.1, m1), 2));
                            q.0 = vshrq_n_u8(q.0, 2);
                            q.1 = vshrq_n_u8(q.1, 2);
                            h.0 = vshrq_n_u8(h.0, 1);
                            h.1 = vshrq_n_u8(h.1, 1);
                            p[2 * j] = $dot16(u0, y[2 * j]);
                            p[2 * j + 1] = $dot16(u1, y[2 * j + 1]);
                        }
                        // Four groups per multiply: pairwise-add tree, then the scales.
                        let s = if n == 0 {
                            vmovl_s8(vget_low_s8(sc[r]))
                        } else {
                            vmovl_high_s8(sc[r])
                        };
                        sumi[r] = vmlaq_s32(
                            sumi[r],
                            hsum4(p[0], p[1], p[2], p[3]),
                            vmovl_s16(vget_low_s16(s)),
                        );
                        sumi[r] =
                            vmlaq_s32(sumi[r], hsum4(p[4], p[5], p[6], p[7]), vmovl_high_s16(s));
                    }
                }
                for r in 0..R {
                    acc[r] = vmlaq_n_f32(acc[r], vcvtq_f32_s32(sumi[r]), dd[r]);
                }
            }
            let mut out = [0f32; R];
            for r in 0..R {
                out[r] = vaddvq_f32(acc[r]) - off[r];
            }
            out
        }
    };
}

/// [`unpack_scales`] in NEON for the block at `x`: the 16 scales − 32.
/// Reads the 16 bytes that end at the block's end (the scales and `d`), so
/// it never reads past a row.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
#[inline]
unsafe fn neon_scales(x: *const u8) -> core::arch::aarch64::int8x16_t {
    use core::arch::aarch64::*;
    let v = vld1q_u8(x.add(SCALES - 2));
    let v = vextq_u8(v, v, 2); // bytes 0..12 = the packed scales
                               // Low 4 bits: scale j < 8 in the low nibble of byte j, j ≥ 8 in the high
                               // nibble of byte j − 8.
    let lo = vcombine_u8(
        vand_u8(vget_low_u8(v), vdup_n_u8(0xF)),
        vshr_n_u8(vget_low_u8(v), 4),
    );
    // High 2 bits: byte 8 + j%4, bits 2·(j/4): word 2 to every word k,
    // shifted right by 2k.
    let h = vdupq_laneq_u32::<2>(vreinterpretq_u32_u8(v));
    let shifts = vld1q_s32([0, -2, -4, -6].as_ptr());
    let h = vandq_u8(vreinterpretq_u8_u32(vshlq_u32(h, shifts)), vdupq_n_u8(3));
    let s = vorrq_u8(lo, vshlq_n_u8(h, 4));
    vsubq_s8(vreinterpretq_s8_u8(s), vdupq_n_s8(32))
}

/// `Σ_g s_g·bsums_g` (the −4 offset, before ×4).
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
#[inline]
unsafe fn scaled_bsums(
    s: core::arch::aarch64::int8x16_t,
    bs: core::arch::aarch64::int16x8x2_t,
) -> i32 {
    use core::arch::aarch64::*;
    let (s0, s1) = (vmovl_s8(vget_low_s8(s)), vmovl_high_s8(s));
    let p = vmull_s16(vget_low_s16(s0), vget_low_s16(bs.0));
    let p = vmlal_high_s16(p, s0, bs.0);
    let p = vmlal_s16(p, vget_low_s16(s1), vget_low_s16(bs.1));
    vaddvq_s32(vmlal_high_s16(p, s1, bs.1))
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
        blocks(count, |_| BlockQ3_K {
            hmask: rng.bytes(QK_K / 8).try_into().unwrap(),
            qs: rng.bytes(QK_K / 4).try_into().unwrap(),
            scales: rng.bytes(12).try_into().unwrap(),
            d: rng.signed_scale_f16(-3.0, -1.0),
        })
    }

    crate::quants::q8_k::multirow_test!(BLOCK_Q3_K_BYTES, random_blocks, x86: [avx2 => Avx2], arm: [neon => Neon, dotprod => Dotprod]);

    #[test]
    fn block_layout() {
        assert_eq!(BLOCK_Q3_K_BYTES, GgmlType::Q3_K.block_bytes());
        let b: BlockQ3_K = bytemuck::Zeroable::zeroed();
        let base = &b as *const _ as usize;
        assert_eq!(b.qs.as_ptr() as usize - base, QS);
        assert_eq!(b.scales.as_ptr() as usize - base, SCALES);
        assert_eq!(&b.d as *const _ as usize - base, D);
        // The scale shuffle agrees with a direct reading of ggml's layout:
        // scale j: low 4 bits in byte j%8 (high nibble for j ≥ 8), high 2
        // bits in byte 8 + j%4 at bit 2·(j/4).
        let mut rng = Rng::new(3);
        let p: [u8; 12] = rng.bytes(12).try_into().unwrap();
        let s = unpack_scales(&p);
        for (j, &v) in s.iter().enumerate() {
            let lo = if j < 8 { p[j] & 0xF } else { p[j - 8] >> 4 };
            let hi = (p[8 + j % 4] >> (2 * (j / 4))) & 3;
            assert_eq!(v as i32, (lo | (hi << 4)) as i32 - 32, "scale {j}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sse_scale_unpack() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut rng = Rng::new(5);
        for _ in 0..64 {
            let blk: [u8; BLOCK_Q3_K_BYTES] = rng.bytes(BLOCK_Q3_K_BYTES).try_into().unwrap();
            let want = unpack_scales(blk[SCALES..SCALES + 12].try_into().unwrap());
            let mut got = [0i8; 16];
            // SAFETY: AVX2 checked above; `blk` is one whole block.
            unsafe {
                core::arch::x86_64::_mm_storeu_si128(
                    got.as_mut_ptr() as *mut _,
                    super::avx2::scales_sse(blk.as_ptr()),
                )
            };
            assert_eq!(got, want);
        }
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn neon_scale_unpack() {
        let mut rng = Rng::new(5);
        for _ in 0..64 {
            let blk: [u8; BLOCK_Q3_K_BYTES] = rng.bytes(BLOCK_Q3_K_BYTES).try_into().unwrap();
            let want = unpack_scales(blk[SCALES..SCALES + 12].try_into().unwrap());
            let mut got = [0i8; 16];
            // SAFETY: NEON is baseline on aarch64; `blk` is one whole block.
            unsafe {
                core::arch::aarch64::vst1q_s8(got.as_mut_ptr(), super::neon_scales(blk.as_ptr()))
            };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn simd_matches_scalar() {
        let mut rng = Rng::new(31);
        for nblocks in [1usize, 2, 3, 16] {
            let w = random_blocks(&mut rng, 7 * nblocks);
            let x = rng.normals(nblocks * QK_K, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("Q3_K {nblocks} blocks"),
            );
        }
    }

    /// Extreme quants (−4, 3) and scales (−32, 31), activations at ±127 and −128.
    #[test]
    fn overflow_stress() {
        let nb = 3;
        // scales all 0 → −32; all 0xFF → 31. Quants: qs 0 + hmask 0 → −4; all 1s → 3.
        let mk = |q: u8, s: u8| BlockQ3_K {
            hmask: [q; QK_K / 8],
            qs: [q; QK_K / 4],
            scales: [s; 12],
            d: f16::from_f32(1.0),
        };
        let cases = [
            (mk(0, 0), -4.0, -32.0),
            (mk(0xFF, 0xFF), 3.0, 31.0),
            (mk(0, 0xFF), -4.0, 31.0),
        ];
        let w = blocks(cases.len() * nb, |i| cases[i / nb].0);
        let row_bytes = nb * BLOCK_Q3_K_BYTES;
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
            for b in backends() {
                let fk = select(b);
                let mut out = vec![0.0; cases.len()];
                (fk.gemv)(nb * QK_K, &w, row_bytes, &a, &mut out);
                for (r, &(_, q, s)) in cases.iter().enumerate() {
                    let exact = (nb * QK_K) as f64 * q * s * fill as f64;
                    let v = (fk.vec_dot)(nb * QK_K, &w[r * row_bytes..], &a) as f64;
                    let tol = 1e-6 * exact.abs();
                    assert_close(
                        &format!("{b} gemv fill {fill} row {r}"),
                        out[r] as f64,
                        exact,
                        tol,
                    );
                    assert_close(&format!("{b} vec_dot fill {fill} row {r}"), v, exact, tol);
                }
            }
        }
    }

    /// Budgets of the f32 reference on ggml's synthetic signal, with a plain
    /// symmetric quantizer (Q3_K files come from ggml's quantizer; the
    /// kernels only need realistic blocks).
    #[test]
    fn error_budgets() {
        let n = 4096;
        let x = synthetic(n, 0.0);
        let w = simple_quantize(&x);
        let mut y = vec![0.0; n];
        dequantize_row_q3_K(&w, &mut y);
        let err = rmse(&x, &y);
        assert!(
            err < MAX_QUANTIZATION_TOTAL_ERROR_3BITS,
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
            // Per group: scale so that the largest magnitude maps to −4 (as ggml: sign of max).
            let mut gs = [0f32; 16];
            for (g, s) in gs.iter_mut().enumerate() {
                let m = xb[16 * g..16 * g + 16].iter().fold(0f32, |m, &v| {
                    if v.abs() > m.abs() {
                        v
                    } else {
                        m
                    }
                });
                *s = -m / 4.0;
            }
            let amax = gs
                .iter()
                .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = -amax / 32.0;
            let ls: Vec<i32> = gs
                .iter()
                .map(|&s| {
                    if d != 0.0 {
                        ((s / d).round() as i32).clamp(-32, 31)
                    } else {
                        0
                    }
                })
                .collect();
            let mut b: BlockQ3_K = bytemuck::Zeroable::zeroed();
            b.d = f16::from_f32(d);
            for (j, &l) in ls.iter().enumerate() {
                let l = (l + 32) as u8;
                if j < 8 {
                    b.scales[j] |= l & 0xF;
                } else {
                    b.scales[j - 8] |= (l & 0xF) << 4;
                }
                b.scales[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
            }
            let s = unpack_scales(&b.scales);
            let df = b.d.to_f32();
            for v in 0..QK_K {
                let dl = df * s[v / 16] as f32;
                let q = if dl != 0.0 {
                    (xb[v] / dl).round().clamp(-4.0, 3.0) as i32
                } else {
                    0
                } + 4;
                let (n, j, l) = (v / 128, (v / 32) % 4, v % 32);
                b.qs[32 * n + l] |= ((q & 3) as u8) << (2 * j);
                b.hmask[l] |= ((q >> 2) as u8) << (4 * n + j);
            }
            out.extend_from_slice(bytemuck::bytes_of(&b));
        }
        out
    }
}
