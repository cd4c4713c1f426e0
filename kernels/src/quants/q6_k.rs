//! Q6_K: 6-bit K-quant, 6.5625 bits per weight (the output projection and
//! some FFN tensors of a Q4_K_M file).
//!
//! A super-block of 256 weights is 16 sub-blocks of 16 with an 8-bit signed
//! scale each and one f16 `d`: weight `x = d·sc_g·(q − 32)`, `q` in 0..=63.
//! The low 4 bits of `q` are in `ql`, the high 2 bits in `qh`, in two halves
//! of 128 weights: for `l` in 0..32, half `h` holds weights
//! `128h + l` (ql[l] low nibble, qh[l] bits 0-1), `128h + 32 + l` (ql[l+32]
//! low, bits 2-3), `128h + 64 + l` (ql[l] high, bits 4-5) and
//! `128h + 96 + l` (ql[l+32] high, bits 6-7), with `ql`/`qh` advancing by
//! 64/32 bytes per half.
//!
//! The SIMD kernels multiply the unsigned `q` and subtract the −32 offset once
//! per block as `32·Σ_g sc_g·bsums[g]`, using the activation's group sums.

use super::q8_k::{self, check_dot, nearest_int, QK_K};
use super::{gemv_rows, VecDot};
use crate::dispatch::{Backend, FormatKernels};
use crate::types::GgmlType;
use half::f16;

/// Q6_K super-block, as in ggml-common.h.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ6_K {
    /// quants, lower 4 bits
    pub ql: [u8; QK_K / 2],
    /// quants, upper 2 bits
    pub qh: [u8; QK_K / 4],
    /// scales, quantized with 8 bits
    pub scales: [i8; QK_K / 16],
    /// super-block scale
    pub d: f16,
}

/// Bytes of one [`BlockQ6_K`].
pub const BLOCK_Q6_K_BYTES: usize = 210;
const _: () = assert!(std::mem::size_of::<BlockQ6_K>() == BLOCK_Q6_K_BYTES);

/// Byte offsets inside a block.
const QL: usize = 0;
const QH: usize = 128;
const SCALES: usize = 192;
const D: usize = 208;

/// The 256 quants of a block, 0..=63, in weight order.
#[inline]
pub(crate) fn unpack(b: &BlockQ6_K) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for h in 0..2 {
        let (ql, qh) = (&b.ql[64 * h..64 * h + 64], &b.qh[32 * h..32 * h + 32]);
        let out = &mut q[128 * h..128 * h + 128];
        for l in 0..32 {
            out[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
            out[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            out[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            out[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    q
}

/// `y` = the values of the Q6_K blocks in `x` (ggml's `dequantize_row_q6_K`,
/// bit for bit: `d·sc` first, then `·(q − 32)`).
#[allow(non_snake_case)]
pub fn dequantize_row_q6_K(x: &[u8], y: &mut [f32]) {
    assert!(
        y.len().is_multiple_of(QK_K),
        "dequantize_row_q6_K: {} values",
        y.len()
    );
    let nb = y.len() / QK_K;
    assert!(
        x.len() >= nb * BLOCK_Q6_K_BYTES,
        "dequantize_row_q6_K: input too short"
    );
    for (xb, yb) in x
        .chunks_exact(BLOCK_Q6_K_BYTES)
        .zip(y.chunks_exact_mut(QK_K))
    {
        let b: BlockQ6_K = bytemuck::pod_read_unaligned(xb);
        let d = b.d.to_f32();
        for (i, (o, &q)) in yb.iter_mut().zip(unpack(&b).iter()).enumerate() {
            *o = d * b.scales[i / 16] as f32 * (q as i32 - 32) as f32;
        }
    }
}

/// ggml's `make_qx_quants` with `rmse_type = 1` and no importance weights:
/// a symmetric scale for values `x` quantized to −nmax..nmax−1 (stored
/// offset by nmax in `l`), chosen by a small search. Mirrors ggml's f32
/// operations one by one.
pub(crate) fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [u8]) -> f32 {
    const GROUP_MAX_EPS: f32 = 1e-15;
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l[..x.len()].fill(0);
        return 0.0;
    }
    let q = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let mut iscale = -nmax as f32 / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (i, &v) in x.iter().enumerate() {
        let li = q(iscale, v);
        l[i] = (li + nmax) as u8;
        let w = v * v;
        sumlx += w * v * li as f32;
        suml2 += w * li as f32 * li as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let li = q(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * li;
            suml2 += w * li * li;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (i, &v) in x.iter().enumerate() {
                l[i] = (q(iscale, v) + nmax) as u8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Quantizes `x` (a multiple of 256 values) to Q6_K blocks in `y`, as ggml's
/// `quantize_row_q6_K_ref` does — byte for byte, checked against ggml's output.
#[allow(non_snake_case)]
pub fn quantize_row_q6_K(x: &[f32], y: &mut [u8]) {
    const GROUP_MAX_EPS: f32 = 1e-15;
    assert!(
        x.len().is_multiple_of(QK_K),
        "quantize_row_q6_K: {} values",
        x.len()
    );
    let nb = x.len() / QK_K;
    assert!(
        y.len() >= nb * BLOCK_Q6_K_BYTES,
        "quantize_row_q6_K: output too short"
    );
    let mut l = [0u8; QK_K];
    for (xb, yb) in x
        .chunks_exact(QK_K)
        .zip(y.chunks_exact_mut(BLOCK_Q6_K_BYTES))
    {
        let mut scales = [0f32; 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for ib in 0..16 {
            let s = make_qx_quants(
                32,
                &xb[16 * ib..16 * ib + 16],
                &mut l[16 * ib..16 * ib + 16],
            );
            scales[ib] = s;
            if s.abs() > max_abs_scale {
                max_abs_scale = s.abs();
                max_scale = s;
            }
        }
        let mut b: BlockQ6_K = bytemuck::Zeroable::zeroed();
        if max_abs_scale >= GROUP_MAX_EPS {
            let iscale = -128.0 / max_scale;
            b.d = f16::from_f32(1.0 / iscale);
            for (o, &s) in b.scales.iter_mut().zip(&scales) {
                // MIN(127, ..) stored to int8_t: the low byte.
                *o = nearest_int(iscale * s).min(127) as i8;
            }
            for j in 0..16 {
                let d = b.d.to_f32() * b.scales[j] as f32;
                if d == 0.0 {
                    continue;
                }
                for ii in 0..16 {
                    let q = nearest_int(xb[16 * j + ii] / d).clamp(-32, 31);
                    l[16 * j + ii] = (q + 32) as u8;
                }
            }
            for h in 0..2 {
                let lh = &l[128 * h..128 * h + 128];
                for i in 0..32 {
                    b.ql[64 * h + i] = (lh[i] & 0xF) | ((lh[i + 64] & 0xF) << 4);
                    b.ql[64 * h + i + 32] = (lh[i + 32] & 0xF) | ((lh[i + 96] & 0xF) << 4);
                    b.qh[32 * h + i] = (lh[i] >> 4)
                        | ((lh[i + 32] >> 4) << 2)
                        | ((lh[i + 64] >> 4) << 4)
                        | ((lh[i + 96] >> 4) << 6);
                }
            }
        }
        yb.copy_from_slice(bytemuck::bytes_of(&b));
    }
}

/// Dot product of a Q6_K row with a Q8_K row, `n` values (scalar reference).
#[allow(non_snake_case)]
pub fn vec_dot_q6_K_q8_K(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check_dot("q6_K", n, w, BLOCK_Q6_K_BYTES, a);
    let mut sumf = 0.0f32;
    for (i, xb) in w.chunks_exact(BLOCK_Q6_K_BYTES).take(nb).enumerate() {
        let x: BlockQ6_K = bytemuck::pod_read_unaligned(xb);
        let y = q8_k::read_block(a, i);
        let q = unpack(&x);
        let mut isum = 0i32;
        for g in 0..16 {
            let s: i32 = (16 * g..16 * g + 16)
                .map(|k| (q[k] as i32 - 32) * y.qs[k] as i32)
                .sum();
            isum += x.scales[g] as i32 * s;
        }
        sumf += y.d * x.d.to_f32() * isum as f32;
    }
    sumf
}

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_q6_K_q8_K(n, w, a)
    }
}

/// Q6_K kernels for `level`.
pub(crate) fn select(level: Backend) -> FormatKernels {
    let scalar = FormatKernels {
        weight: GgmlType::Q6_K,
        act: GgmlType::Q8_K,
        dequantize_row: dequantize_row_q6_K,
        vec_dot: vec_dot_q6_K_q8_K,
        gemv: gemv_rows::<Scalar>,
        path: Backend::Scalar,
    };
    match level {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => FormatKernels {
            vec_dot: avx2_vec_dot,
            gemv: avx2_gemv,
            path: Backend::Avx2,
            ..scalar
        },
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => FormatKernels {
            vec_dot: avx512_vec_dot,
            gemv: avx512_gemv,
            path: Backend::Avx512,
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

crate::quants::q8_k::k_entries!("q6_K", BLOCK_Q6_K_BYTES);

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use crate::quants::q8_k::x86::*;
    use core::arch::x86_64::*;

    crate::quants::q8_k::gemv_in_groups!("avx2,fma,f16c");

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
        let m30 = _mm256_set1_epi8(0x30);
        // Per 32 weights k (0..4) of a half: the low 128-bit lane takes the
        // scale of group 2k, the high lane group 2k+1 (i16 lanes of the
        // half's 8 scales).
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
            let mut dd = [0f32; R];
            let mut sc = [[_mm256_setzero_si256(); 2]; R];
            for r in 0..R {
                let x = w.add(r * row_bytes + i * BLOCK_Q6_K_BYTES);
                let s8 = _mm_loadu_si128(x.add(SCALES) as *const __m128i);
                // −32 offset: Σ_g sc_g·bsums_g, subtracted ×32.
                let corr = _mm256_madd_epi16(_mm256_cvtepi8_epi16(s8), bs);
                sumi[r] = _mm256_sub_epi32(sumi[r], _mm256_slli_epi32(corr, 5));
                sc[r][0] = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(s8));
                sc[r][1] = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_srli_si128(s8, 8)));
                dd[r] = d8 * f16_at(x.add(D));
            }
            for h in 0..2 {
                let y: [__m256i; 4] = [
                    _mm256_loadu_si256(q8.add(128 * h) as *const __m256i),
                    _mm256_loadu_si256(q8.add(128 * h + 32) as *const __m256i),
                    _mm256_loadu_si256(q8.add(128 * h + 64) as *const __m256i),
                    _mm256_loadu_si256(q8.add(128 * h + 96) as *const __m256i),
                ];
                for r in 0..R {
                    let x = w.add(r * row_bytes + i * BLOCK_Q6_K_BYTES);
                    let b1 = _mm256_loadu_si256(x.add(QL + 64 * h) as *const __m256i);
                    let b2 = _mm256_loadu_si256(x.add(QL + 64 * h + 32) as *const __m256i);
                    let qh = _mm256_loadu_si256(x.add(QH + 32 * h) as *const __m256i);
                    // 16-bit shifts move bits across bytes, but `& 0x30` keeps
                    // only the two bits each byte got from itself.
                    let q: [__m256i; 4] = [
                        _mm256_or_si256(
                            _mm256_and_si256(b1, m4),
                            _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(b2, m4),
                            _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(b1, 4), m4),
                            _mm256_and_si256(qh, m30),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(b2, 4), m4),
                            _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30),
                        ),
                    ];
                    for k in 0..4 {
                        let p = _mm256_maddubs_epi16(q[k], y[k]);
                        let s = _mm256_shuffle_epi8(sc[r][h], shuf[k]);
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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use crate::quants::q8_k::x86::*;
    use core::arch::x86_64::*;

    crate::quants::q8_k::gemv_in_groups!("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c");

    /// Dot products of `R` rows with the Q8_K row `a`, 64 weights per
    /// instruction: the 64 `ql` bytes of a half give weights 0..64 (low
    /// nibbles) and 64..128 (high nibbles) in order; `qh` is broadcast to both
    /// 256-bit halves and shifted per half.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI; every row holds `nb` blocks, `a` holds `nb` Q8_K blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[inline]
    // Rows, chunks and groups index several parallel arrays.
    #[allow(clippy::needless_range_loop)]
    pub(super) unsafe fn dot_rows<const R: usize>(
        nb: usize,
        w: *const u8,
        row_bytes: usize,
        a: *const u8,
    ) -> [f32; R] {
        let m4 = _mm512_set1_epi8(0xF);
        let m30 = _mm512_set1_epi8(0x30);
        let lower: __mmask32 = 0x0000_FFFF;
        let upper: __mmask32 = 0xFFFF_0000;
        // 128-bit lane m of the low (high) product takes scale m (4+m) of the
        // half's 8 scales.
        let mut shuf = [_mm512_setzero_si512(); 2];
        for (t, s) in shuf.iter_mut().enumerate() {
            let mut bytes = [0u8; 64];
            for (b, v) in bytes.iter_mut().enumerate() {
                let g = 4 * t + b / 16;
                *v = (2 * g + (b & 1)) as u8;
            }
            *s = _mm512_loadu_si512(bytes.as_ptr() as *const _);
        }
        let mut acc = [_mm512_setzero_ps(); R];
        for i in 0..nb {
            let (d8, q8, bsums) = q8k_block(a, i);
            let bs = _mm256_loadu_si256(bsums as *const __m256i);
            let mut sumi = [_mm512_setzero_si512(); R];
            let mut dd = [0f32; R];
            let mut sc = [[_mm512_setzero_si512(); 2]; R];
            for r in 0..R {
                let x = w.add(r * row_bytes + i * BLOCK_Q6_K_BYTES);
                let s8 = _mm_loadu_si128(x.add(SCALES) as *const __m128i);
                let corr = _mm256_madd_epi16(_mm256_cvtepi8_epi16(s8), bs);
                sumi[r] = _mm512_zextsi256_si512(_mm256_sub_epi32(
                    _mm256_setzero_si256(),
                    _mm256_slli_epi32(corr, 5),
                ));
                sc[r][0] = _mm512_broadcast_i32x4(_mm_cvtepi8_epi16(s8));
                sc[r][1] = _mm512_broadcast_i32x4(_mm_cvtepi8_epi16(_mm_srli_si128(s8, 8)));
                dd[r] = d8 * f16_at(x.add(D));
            }
            for h in 0..2 {
                let y0 = _mm512_loadu_si512(q8.add(128 * h) as *const _);
                let y1 = _mm512_loadu_si512(q8.add(128 * h + 64) as *const _);
                for r in 0..R {
                    let x = w.add(r * row_bytes + i * BLOCK_Q6_K_BYTES);
                    let l = _mm512_loadu_si512(x.add(QL + 64 * h) as *const _);
                    let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                        x.add(QH + 32 * h) as *const __m256i
                    ));
                    // Low nibbles: qh bits 0-1 (lower half), 2-3 (upper half) → bits 4-5.
                    let t = _mm512_slli_epi16(qh, 2);
                    let hl = _mm512_and_si512(_mm512_mask_slli_epi16(t, lower, t, 2), m30);
                    // High nibbles: qh bits 4-5 (lower half), 6-7 (upper half) → bits 4-5.
                    let hh = _mm512_and_si512(_mm512_mask_srli_epi16(qh, upper, qh, 2), m30);
                    let q0 = _mm512_or_si512(_mm512_and_si512(l, m4), hl);
                    let q1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), hh);
                    let s0 = _mm512_shuffle_epi8(sc[r][h], shuf[0]);
                    let s1 = _mm512_shuffle_epi8(sc[r][h], shuf[1]);
                    sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(q0, y0), s0);
                    sumi[r] = _mm512_dpwssd_epi32(sumi[r], _mm512_maddubs_epi16(q1, y1), s1);
                }
            }
            for r in 0..R {
                acc[r] =
                    _mm512_fmadd_ps(_mm512_set1_ps(dd[r]), _mm512_cvtepi32_ps(sumi[r]), acc[r]);
            }
        }
        let mut out = [0f32; R];
        for r in 0..R {
            out[r] = _mm512_reduce_add_ps(acc[r]);
        }
        out
    }
}

/// The 128 quants (0..=63) of half `h` of the block at `x`, in weight order,
/// as eight 16-byte vectors (= the half's 8 scale groups).
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
#[inline]
unsafe fn neon_unpack_half(x: *const u8, h: usize) -> [core::arch::aarch64::uint8x16_t; 8] {
    use core::arch::aarch64::*;
    let m4 = vdupq_n_u8(0xF);
    let m30 = vdupq_n_u8(0x30);
    let b = vld1q_u8_x4(x.add(QL + 64 * h));
    let qh = vld1q_u8_x2(x.add(QH + 32 * h));
    let (h0, h1) = (qh.0, qh.1);
    [
        vorrq_u8(vandq_u8(b.0, m4), vandq_u8(vshlq_n_u8(h0, 4), m30)),
        vorrq_u8(vandq_u8(b.1, m4), vandq_u8(vshlq_n_u8(h1, 4), m30)),
        vorrq_u8(vandq_u8(b.2, m4), vandq_u8(vshlq_n_u8(h0, 2), m30)),
        vorrq_u8(vandq_u8(b.3, m4), vandq_u8(vshlq_n_u8(h1, 2), m30)),
        vorrq_u8(vshrq_n_u8(b.0, 4), vandq_u8(h0, m30)),
        vorrq_u8(vshrq_n_u8(b.1, 4), vandq_u8(h1, m30)),
        vorrq_u8(vshrq_n_u8(b.2, 4), vandq_u8(vshrq_n_u8(h0, 2), m30)),
        vorrq_u8(vshrq_n_u8(b.3, 4), vandq_u8(vshrq_n_u8(h1, 2), m30)),
    ]
}

/// `Σ_g sc_g·bsums_g` for the block at `x` (the −32 offset, before ×32).
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
#[inline]
unsafe fn neon_offset(x: *const u8, bs: core::arch::aarch64::int16x8x2_t) -> i32 {
    use core::arch::aarch64::*;
    let s = vld1q_s8(x.add(SCALES) as *const i8);
    let (s0, s1) = (vmovl_s8(vget_low_s8(s)), vmovl_high_s8(s));
    let p = vmull_s16(vget_low_s16(s0), vget_low_s16(bs.0));
    let p = vmlal_high_s16(p, s0, bs.0);
    let p = vmlal_s16(p, vget_low_s16(s1), vget_low_s16(bs.1));
    let p = vmlal_high_s16(p, s1, bs.1);
    vaddvq_s32(p)
}

/// NEON and NEON+dotprod share everything but the 16-weight dot product.
///
/// Per half block: the 8 group dot products (4 lanes each) are reduced four
/// at a time by pairwise adds into `[Σ_0, Σ_1, Σ_2, Σ_3]` and multiplied by
/// the groups' scales in one multiply-add per 4 groups.
#[cfg(target_arch = "aarch64")]
macro_rules! neon_dot_rows {
    ($feat:literal, $dot16:ident) => {
        crate::quants::q8_k::gemv_in_groups!($feat);

        /// Dot products of `R` rows with the Q8_K row `a`.
        ///
        /// # Safety
        /// CPU features as enabled; every row holds `nb` blocks, `a` holds
        /// `nb` Q8_K blocks.
        // Rows, halves and groups index several parallel arrays.
        #[allow(clippy::needless_range_loop)]
        #[target_feature(enable = $feat)]
        #[inline]
        pub(super) unsafe fn dot_rows<const R: usize>(
            nb: usize,
            w: *const u8,
            row_bytes: usize,
            a: *const u8,
        ) -> [f32; R] {
            let mut acc = [vdupq_n_f32(0.0); R];
            let mut off = [0f32; R];
            for i in 0..nb {
                let (d8, q8, bsums) = q8k_block(a, i);
                let bs = load_bsums(bsums);
                for r in 0..R {
                    let x = w.add(r * row_bytes + i * BLOCK_Q6_K_BYTES);
                    let dd = d8 * f16_at(x.add(D));
                    off[r] += dd * (32 * neon_offset(x, bs)) as f32;
                    let sc = vld1q_s8(x.add(SCALES) as *const i8);
                    let sc = [vmovl_s8(vget_low_s8(sc)), vmovl_high_s8(sc)];
                    let mut sumi = vdupq_n_s32(0);
                    for h in 0..2 {
                        let y0 = vld1q_s8_x4(q8.add(128 * h) as *const i8);
                        let y1 = vld1q_s8_x4(q8.add(128 * h + 64) as *const i8);
                        let y = [y0.0, y0.1, y0.2, y0.3, y1.0, y1.1, y1.2, y1.3];
                        let q = neon_unpack_half(x, h);
                        let mut p = [vdupq_n_s32(0); 8];
                        for g in 0..8 {
                            p[g] = $dot16(vreinterpretq_s8_u8(q[g]), y[g]);
                        }
                        let s_lo = vmovl_s16(vget_low_s16(sc[h]));
                        let s_hi = vmovl_high_s16(sc[h]);
                        sumi = vmlaq_s32(sumi, hsum4(p[0], p[1], p[2], p[3]), s_lo);
                        sumi = vmlaq_s32(sumi, hsum4(p[4], p[5], p[6], p[7]), s_hi);
                    }
                    acc[r] = vmlaq_n_f32(acc[r], vcvtq_f32_s32(sumi), dd);
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

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::*;
    use crate::quants::q8_k::arm::*;
    use core::arch::aarch64::*;

    /// Σ of 16 byte products (weights 0..=63) as 4 lanes, ARMv8.0 NEON:
    /// `smull`+`smlal` (2 products per i16 lane: ≤ 2·63·128 = 16128, no
    /// overflow), then a pairwise widening add.
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn dot16(q: int8x16_t, y: int8x16_t) -> int32x4_t {
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
    unsafe fn dot16(q: int8x16_t, y: int8x16_t) -> int32x4_t {
        sdot(vdupq_n_s32(0), q, y)
    }

    neon_dot_rows!("neon,dotprod", dot16);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::q8_k::{select_act, BLOCK_Q8_K_BYTES};
    use crate::testutil::*;

    fn random_blocks(rng: &mut Rng, count: usize) -> Vec<u8> {
        blocks(count, |_| BlockQ6_K {
            ql: rng.bytes(QK_K / 2).try_into().unwrap(),
            qh: rng.bytes(QK_K / 4).try_into().unwrap(),
            scales: bytemuck::cast::<[u8; 16], [i8; 16]>(rng.bytes(16).try_into().unwrap()),
            d: rng.signed_scale_f16(-3.0, -1.0),
        })
    }

    crate::quants::q8_k::multirow_test!(BLOCK_Q6_K_BYTES, random_blocks, x86: [avx2 => Avx2, avx512 => Avx512], arm: [neon => Neon, dotprod => Dotprod]);

    #[test]
    fn block_layout() {
        assert_eq!(BLOCK_Q6_K_BYTES, GgmlType::Q6_K.block_bytes());
        let b: BlockQ6_K = bytemuck::Zeroable::zeroed();
        let base = &b as *const _ as usize;
        assert_eq!(b.qh.as_ptr() as usize - base, QH);
        assert_eq!(b.scales.as_ptr() as usize - base, SCALES);
        assert_eq!(&b.d as *const _ as usize - base, D);
        assert_eq!(b.ql.as_ptr() as usize - base, QL);
    }

    #[test]
    fn simd_matches_scalar() {
        let mut rng = Rng::new(61);
        for nblocks in [1usize, 2, 3, 16] {
            let w = random_blocks(&mut rng, 7 * nblocks);
            let x = rng.normals(nblocks * QK_K, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("Q6_K {nblocks} blocks"),
            );
        }
    }

    /// Extreme quants (0 and 63) and scales (−128, 127), large `d`,
    /// activations at ±127 and −128.
    #[test]
    fn overflow_stress() {
        let nb = 3;
        let mk = |q: u8, sc: i8| BlockQ6_K {
            ql: [(q & 0xF) * 0x11; QK_K / 2],
            qh: [(q >> 4) * 0x55; QK_K / 4],
            scales: [sc; 16],
            d: f16::from_f32(1.0),
        };
        let cases = [mk(0, -128), mk(63, 127), mk(0, 127), mk(63, -128)];
        let w = blocks(cases.len() * nb, |i| cases[i / nb]);
        let row_bytes = nb * BLOCK_Q6_K_BYTES;
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
            for (r, c) in cases.iter().enumerate() {
                let q = (c.ql[0] & 0xF) as i32 | (((c.qh[0] & 3) as i32) << 4);
                let exact = (nb * QK_K) as f64 * c.scales[0] as f64 * (q - 32) as f64 * fill as f64;
                let want = vec_dot_q6_K_q8_K(nb * QK_K, &w[r * row_bytes..], &a) as f64;
                assert_close(
                    &format!("scalar row {r} fill {fill}"),
                    want,
                    exact,
                    1e-6 * exact.abs(),
                );
            }
            for b in backends() {
                let fk = select(b);
                let mut out = vec![0.0; cases.len()];
                (fk.gemv)(nb * QK_K, &w, row_bytes, &a, &mut out);
                for (r, &o) in out.iter().enumerate() {
                    let want = vec_dot_q6_K_q8_K(nb * QK_K, &w[r * row_bytes..], &a) as f64;
                    assert_close(
                        &format!("{b} fill {fill} row {r}"),
                        o as f64,
                        want,
                        1e-6 * want.abs(),
                    );
                    let v = (fk.vec_dot)(nb * QK_K, &w[r * row_bytes..], &a) as f64;
                    assert_close(
                        &format!("{b} vec_dot fill {fill} row {r}"),
                        v,
                        want,
                        1e-6 * want.abs(),
                    );
                }
            }
        }
    }

    #[test]
    fn reference_quantizer_matches_ggml() {
        let x = f32s_le(&fixture("quant-extra/q6_k.quantize.input.f32.bin"));
        let want = fixture("quant-extra/q6_k.quantize.blocks.bin");
        let mut got = vec![0u8; want.len()];
        quantize_row_q6_K(&x, &mut got);
        for (i, (g, w)) in got
            .chunks(BLOCK_Q6_K_BYTES)
            .zip(want.chunks(BLOCK_Q6_K_BYTES))
            .enumerate()
        {
            assert_eq!(g, w, "block {i}");
        }
    }

    #[test]
    fn error_budgets() {
        let n = 4096;
        let x = synthetic(n, 0.0);
        let mut w = vec![0u8; GgmlType::Q6_K.row_bytes(n).unwrap()];
        quantize_row_q6_K(&x, &mut w);
        let mut y = vec![0.0; n];
        dequantize_row_q6_K(&w, &mut y);
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
}
