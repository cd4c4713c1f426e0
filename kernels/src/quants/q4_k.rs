//! Q4_K: 4-bit K-quant, 4.5 bits per weight (most tensors of a Q4_K_M file).
//!
//! A super-block of 256 weights is 8 sub-blocks of 32, each with a 6-bit scale
//! and a 6-bit minimum; `d` and `dmin` (f16) scale those. Weight
//! `x = d·sc_j·q − dmin·m_j` with `q` in 0..=15.
//!
//! Quants are stored in 4 chunks of 32 bytes: chunk `c` holds sub-block `2c`
//! in the low nibbles and sub-block `2c+1` in the high nibbles.
//!
//! The dot product with a Q8_K activation block is
//! `d8·d·Σ_j sc_j·Σ q·q8 − d8·dmin·Σ_j m_j·(bsums[2j] + bsums[2j+1])`:
//! the minimums use the activation's precomputed group sums. The integer sums
//! are exact on every path; only the order of the f32 accumulation differs.

use super::q8_k::{self, check_dot, nearest_int, QK_K};
use super::{gemv_rows, VecDot};
use crate::dispatch::{Backend, FormatKernels};
use crate::types::GgmlType;
use half::f16;

/// Bytes in the packed scales/minimums of Q4_K and Q5_K (ggml's `K_SCALE_SIZE`).
pub const K_SCALE_SIZE: usize = 12;

/// Q4_K super-block, as in ggml-common.h.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_K {
    /// super-block scale for quantized scales
    pub d: f16,
    /// super-block scale for quantized mins
    pub dmin: f16,
    /// scales and mins, quantized with 6 bits
    pub scales: [u8; K_SCALE_SIZE],
    /// 4--bit quants
    pub qs: [u8; QK_K / 2],
}

/// Bytes of one [`BlockQ4_K`].
pub const BLOCK_Q4_K_BYTES: usize = 144;
const _: () = assert!(std::mem::size_of::<BlockQ4_K>() == BLOCK_Q4_K_BYTES);

/// ggml's `get_scale_min_k4`: the 6-bit scale and minimum of sub-block `j`
/// (0..8) from the 12 packed bytes.
#[inline(always)]
pub fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// All 8 scales then all 8 minimums, unpacked from the 12 packed bytes (as
/// four little-endian words: scales 0-3, 4-7, mins 0-3, 4-7) — ggml's `utmp`
/// shuffle, which the SIMD kernels load straight into a register.
#[inline(always)]
pub(crate) fn unpack_scales_mins(s: [u32; 3]) -> [u32; 4] {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    [
        s[0] & KMASK1,
        (s[2] & KMASK2) | (((s[0] >> 6) & KMASK3) << 4),
        s[1] & KMASK1,
        ((s[2] >> 4) & KMASK2) | (((s[1] >> 6) & KMASK3) << 4),
    ]
}

/// The 12 scale bytes at `p` as three little-endian words.
#[inline(always)]
pub(crate) fn scale_words(p: &[u8; K_SCALE_SIZE]) -> [u32; 3] {
    [
        u32::from_le_bytes([p[0], p[1], p[2], p[3]]),
        u32::from_le_bytes([p[4], p[5], p[6], p[7]]),
        u32::from_le_bytes([p[8], p[9], p[10], p[11]]),
    ]
}

/// [`unpack_scales_mins`] in SIMD: the 8 scales then 8 minimums as 16 bytes,
/// from the 12 packed bytes at `p` (reads 16 bytes: the 4 after the scales
/// are the block's first quants).
///
/// # Safety
/// SSSE3; `p` must be readable for 16 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn scales_mins_sse(p: *const u8) -> core::arch::x86_64::__m128i {
    use core::arch::x86_64::*;
    let s = _mm_loadu_si128(p as *const __m128i);
    // a = [s0-3, s8-11, s4-7, s8-11], b = [0, s0-3, 0, s4-7]
    let a = _mm_shuffle_epi8(
        s,
        _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11),
    );
    let b = _mm_shuffle_epi8(
        s,
        _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7),
    );
    let low = _mm_and_si128(
        a,
        _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0),
    );
    let mhi = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15);
    let high_nib = _mm_and_si128(_mm_srli_epi16(a, 4), mhi);
    // Bits 6-7 of s0-7 become bits 4-5 (the 16-bit shift's spill is masked off).
    let top = _mm_and_si128(_mm_srli_epi16(b, 2), _mm_set1_epi8(0x30));
    _mm_or_si128(_mm_or_si128(low, high_nib), top)
}

#[inline]
fn check_dequantize(x: &[u8], y: &[f32]) -> usize {
    assert!(
        y.len().is_multiple_of(QK_K),
        "dequantize_row_q4_K: {} values",
        y.len()
    );
    let nb = y.len() / QK_K;
    assert!(
        x.len() >= nb * BLOCK_Q4_K_BYTES,
        "dequantize_row_q4_K: {} bytes cannot hold {nb} blocks",
        x.len()
    );
    nb
}

/// `y` = the values of the Q4_K blocks in `x` (ggml's `dequantize_row_q4_K`,
/// bit for bit).
#[allow(non_snake_case)]
pub fn dequantize_row_q4_K(x: &[u8], y: &mut [f32]) {
    let nb = check_dequantize(x, y);
    for (xb, yb) in x
        .chunks_exact(BLOCK_Q4_K_BYTES)
        .zip(y.chunks_exact_mut(QK_K))
        .take(nb)
    {
        let b: BlockQ4_K = bytemuck::pod_read_unaligned(xb);
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        for (c, (q, out)) in
            b.qs.chunks_exact(32)
                .zip(yb.chunks_exact_mut(64))
                .enumerate()
        {
            let (sc, m) = get_scale_min_k4(2 * c, &b.scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = get_scale_min_k4(2 * c + 1, &b.scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            for l in 0..32 {
                out[l] = d1 * (q[l] & 0xF) as f32 - m1;
                out[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// ggml's `make_qkx2_quants`: the scale and (positive) minimum of an affine
/// `n`-value group quantized to 0..=nmax, by a weighted search. Writes the
/// quants to `l`. Mirrors ggml's f32 operations one by one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l[..n].fill(0);
        return (0.0, -min);
    }
    let err = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * l[i] as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let w = weights[i];
            let q = q as f32;
            sum_l += w * q;
            sum_l2 += w * q * q;
            sum_xl += w * q * x[i];
        }
        let dd = sum_w * sum_l2 - sum_l * sum_l;
        if dd > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / dd;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / dd;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Packs 8 six-bit scales and minimums into the 12 bytes Q4_K/Q5_K store.
pub(crate) fn pack_scales_mins(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; K_SCALE_SIZE] {
    let mut s = [0u8; K_SCALE_SIZE];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// Quantizes `x` (a multiple of 256 values) to Q4_K blocks in `y`, as ggml's
/// `quantize_row_q4_K_ref` does (the quantizer llama.cpp uses without an
/// importance matrix) — byte for byte, checked against ggml's output.
#[allow(non_snake_case)]
pub fn quantize_row_q4_K(x: &[f32], y: &mut [u8]) {
    assert!(
        x.len().is_multiple_of(QK_K),
        "quantize_row_q4_K: {} values",
        x.len()
    );
    let nb = x.len() / QK_K;
    assert!(
        y.len() >= nb * BLOCK_Q4_K_BYTES,
        "quantize_row_q4_K: output too short"
    );
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    for (xb, yb) in x
        .chunks_exact(QK_K)
        .zip(y.chunks_exact_mut(BLOCK_Q4_K_BYTES))
    {
        let mut scales = [0f32; 8];
        let mut mins = [0f32; 8];
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for j in 0..8 {
            let xs = &xb[32 * j..32 * j + 32];
            let mut sum_x2 = 0.0f32;
            for &v in xs {
                sum_x2 += v * v;
            }
            let av_x = (sum_x2 / 32.0).sqrt();
            for (w, &v) in weights.iter_mut().zip(xs) {
                *w = av_x + v.abs();
            }
            let (s, m) = make_qkx2_quants(
                15,
                xs,
                &weights,
                &mut l[32 * j..32 * j + 32],
                &mut laux,
                -1.0,
                0.1,
                20,
                false,
            );
            scales[j] = s;
            mins[j] = m;
            if s > max_scale {
                max_scale = s;
            }
            if m > max_min {
                max_min = m;
            }
        }
        let inv_scale = if max_scale > 0.0 {
            63.0 / max_scale
        } else {
            0.0
        };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        let mut ls = [0u8; 8];
        let mut lm = [0u8; 8];
        for j in 0..8 {
            // `uint8_t ls = nearest_int(..)` keeps the low byte, then MIN(63, ..).
            ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
            lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
        }
        let mut b = BlockQ4_K {
            d: f16::from_f32(max_scale / 63.0),
            dmin: f16::from_f32(max_min / 63.0),
            scales: pack_scales_mins(&ls, &lm),
            qs: [0; QK_K / 2],
        };
        let (d_all, dmin_all) = (b.d.to_f32(), b.dmin.to_f32());
        for j in 0..8 {
            let (sc, m) = get_scale_min_k4(j, &b.scales);
            let d = d_all * sc as f32;
            if d == 0.0 {
                continue;
            }
            let dm = dmin_all * m as f32;
            for ii in 0..32 {
                l[32 * j + ii] = nearest_int((xb[32 * j + ii] + dm) / d).clamp(0, 15) as u8;
            }
        }
        for (c, q) in b.qs.chunks_exact_mut(32).enumerate() {
            for (i, v) in q.iter_mut().enumerate() {
                *v = l[64 * c + i] | (l[64 * c + i + 32] << 4);
            }
        }
        yb.copy_from_slice(bytemuck::bytes_of(&b));
    }
}

/// Dot product of a Q4_K row with a Q8_K row, `n` values (scalar reference).
#[allow(non_snake_case)]
pub fn vec_dot_q4_K_q8_K(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check_dot("q4_K", n, w, BLOCK_Q4_K_BYTES, a);
    let mut sumf = 0.0f32;
    for (i, xb) in w.chunks_exact(BLOCK_Q4_K_BYTES).take(nb).enumerate() {
        let x: BlockQ4_K = bytemuck::pod_read_unaligned(xb);
        let y = q8_k::read_block(a, i);
        let sm: [u8; 16] = bytemuck::cast(unpack_scales_mins(scale_words(&x.scales)));
        let mut isum = 0i32;
        for (c, q) in x.qs.chunks_exact(32).enumerate() {
            let q8 = &y.qs[64 * c..64 * c + 64];
            let (mut lo, mut hi) = (0i32, 0i32);
            for l in 0..32 {
                lo += (q[l] & 0xF) as i32 * q8[l] as i32;
                hi += (q[l] >> 4) as i32 * q8[l + 32] as i32;
            }
            isum += sm[2 * c] as i32 * lo + sm[2 * c + 1] as i32 * hi;
        }
        let mut msum = 0i32;
        for j in 0..8 {
            msum += sm[8 + j] as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
        }
        let d = y.d * x.d.to_f32();
        let dmin = y.d * x.dmin.to_f32();
        sumf += d * isum as f32 - dmin * msum as f32;
    }
    sumf
}

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_q4_K_q8_K(n, w, a)
    }
}

/// Q4_K kernels for `level`.
pub(crate) fn select(level: Backend) -> FormatKernels {
    let scalar = FormatKernels {
        weight: GgmlType::Q4_K,
        act: GgmlType::Q8_K,
        dequantize_row: dequantize_row_q4_K,
        vec_dot: vec_dot_q4_K_q8_K,
        gemv: gemv_rows::<Scalar>,
        path: Backend::Scalar,
    };
    match level {
        // AVX-512 versions (64 weights per zmm instruction; or this loop on
        // ymm with VNNI's vpdpwssd) were measured on AMD Zen 4 and are no
        // faster than AVX2 (22.2 vs 22.6 GB/s single-thread from L2/L3):
        // the AVX-512 level uses the AVX2 kernel.
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

crate::quants::q8_k::k_entries!("q4_K", BLOCK_Q4_K_BYTES, no_avx512);

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
        // Byte shuffles that broadcast i16 lane k of a 128-bit half to all 8 lanes.
        let mut shuf = [_mm256_setzero_si256(); 8];
        for (k, s) in shuf.iter_mut().enumerate() {
            *s = _mm256_set1_epi16((((2 * k + 1) << 8) | (2 * k)) as i16);
        }
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc_m = [_mm_setzero_ps(); R];
        for i in 0..nb {
            let (d8, q8, bsums) = q8k_block(a, i);
            // bsums[2j] + bsums[2j+1] for the 8 sub-blocks of 32.
            let bs = _mm256_loadu_si256(bsums as *const __m256i);
            let bs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
            let mut scales = [_mm256_setzero_si256(); R];
            let mut dd = [_mm256_setzero_ps(); R];
            for r in 0..R {
                let x = w.add(r * row_bytes + i * BLOCK_Q4_K_BYTES);
                // 8 scales then 8 mins, as i16.
                let sm = _mm256_cvtepu8_epi16(scales_mins_sse(x.add(4)));
                let prod = _mm_madd_epi16(_mm256_extracti128_si256(sm, 1), bs);
                // [d, dmin] · d8 from one F16C conversion.
                let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(core::ptr::read_unaligned(
                    x as *const i32,
                )));
                let dm = _mm_mul_ps(dm, _mm_set1_ps(d8));
                acc_m[r] = _mm_fnmadd_ps(
                    _mm_shuffle_ps(dm, dm, 0x55),
                    _mm_cvtepi32_ps(prod),
                    acc_m[r],
                );
                scales[r] = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sm));
                dd[r] = _mm256_broadcastss_ps(dm);
            }
            let mut sumi = [_mm256_setzero_si256(); R];
            for c in 0..QK_K / 64 {
                let q8l = _mm256_loadu_si256(q8.add(64 * c) as *const __m256i);
                let q8h = _mm256_loadu_si256(q8.add(64 * c + 32) as *const __m256i);
                for r in 0..R {
                    let x = w.add(r * row_bytes + i * BLOCK_Q4_K_BYTES + 16 + 32 * c);
                    let bits = _mm256_loadu_si256(x as *const __m256i);
                    let lo = _mm256_and_si256(bits, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
                    let sl = _mm256_shuffle_epi8(scales[r], shuf[2 * c]);
                    let sh = _mm256_shuffle_epi8(scales[r], shuf[2 * c + 1]);
                    let pl = _mm256_madd_epi16(sl, _mm256_maddubs_epi16(lo, q8l));
                    let ph = _mm256_madd_epi16(sh, _mm256_maddubs_epi16(hi, q8h));
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(pl, ph));
                }
            }
            for r in 0..R {
                acc[r] = _mm256_fmadd_ps(dd[r], _mm256_cvtepi32_ps(sumi[r]), acc[r]);
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
///
/// Per block: the 8 sub-block dot products (4 lanes each) are reduced four at
/// a time by pairwise adds into `[Σ_0, Σ_1, Σ_2, Σ_3]`, then multiplied by the
/// scale vector — one multiply-add per 4 sub-blocks instead of one per
/// sub-block.
#[cfg(target_arch = "aarch64")]
macro_rules! neon_dot_rows {
    ($feat:literal, $dot32:ident) => {
        crate::quants::q8_k::gemv_in_groups!($feat);

        /// Dot products of `R` rows with the Q8_K row `a`.
        ///
        /// # Safety
        /// CPU features as enabled; every row holds `nb` blocks, `a` holds
        /// `nb` Q8_K blocks.
        // Rows, chunks and groups index several parallel arrays.
        #[allow(clippy::needless_range_loop)]
        #[target_feature(enable = $feat)]
        #[inline]
        pub(super) unsafe fn dot_rows<const R: usize>(
            nb: usize,
            w: *const u8,
            row_bytes: usize,
            a: *const u8,
        ) -> [f32; R] {
            let m4 = vdupq_n_u8(0xF);
            let mut acc = [vdupq_n_f32(0.0); R];
            let mut summ = [0f32; R];
            for i in 0..nb {
                let (d8, q8, bsums) = q8k_block(a, i);
                let bs = load_bsums(bsums);
                let bs = vpaddq_s16(bs.0, bs.1);
                let y0 = vld1q_s8_x4(q8 as *const i8);
                let y1 = vld1q_s8_x4(q8.add(64) as *const i8);
                let y2 = vld1q_s8_x4(q8.add(128) as *const i8);
                let y3 = vld1q_s8_x4(q8.add(192) as *const i8);
                let y = [y0, y1, y2, y3];
                for r in 0..R {
                    let x = w.add(r * row_bytes + i * BLOCK_Q4_K_BYTES);
                    // 8 scales then 8 mins.
                    let smb: [u8; 16] = bytemuck::cast(unpack_scales_mins(scale_words(
                        &*(x.add(4) as *const [u8; K_SCALE_SIZE]),
                    )));
                    let smv = vld1q_u8(smb.as_ptr());
                    let sm = vmovl_u8(vget_low_u8(smv));
                    let mins = vreinterpretq_s16_u16(vmovl_high_u8(smv));
                    let prod =
                        vmlal_high_s16(vmull_s16(vget_low_s16(mins), vget_low_s16(bs)), mins, bs);
                    summ[r] += d8 * f16_at(x.add(2)) * vaddvq_s32(prod) as f32;
                    let mut p = [vdupq_n_s32(0); 8];
                    for c in 0..QK_K / 64 {
                        let bits = vld1q_u8_x2(x.add(16 + 32 * c));
                        let l0 = vreinterpretq_s8_u8(vandq_u8(bits.0, m4));
                        let l1 = vreinterpretq_s8_u8(vandq_u8(bits.1, m4));
                        let h0 = vreinterpretq_s8_u8(vshrq_n_u8(bits.0, 4));
                        let h1 = vreinterpretq_s8_u8(vshrq_n_u8(bits.1, 4));
                        p[2 * c] = $dot32(l0, l1, y[c].0, y[c].1);
                        p[2 * c + 1] = $dot32(h0, h1, y[c].2, y[c].3);
                    }
                    let s_lo = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(sm)));
                    let s_hi = vreinterpretq_s32_u32(vmovl_high_u16(sm));
                    let sumi = vmulq_s32(hsum4(p[0], p[1], p[2], p[3]), s_lo);
                    let sumi = vmlaq_s32(sumi, hsum4(p[4], p[5], p[6], p[7]), s_hi);
                    acc[r] = vmlaq_n_f32(acc[r], vcvtq_f32_s32(sumi), d8 * f16_at(x));
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

    /// Σ of 32 byte products (weights 0..=15) as 4 lanes, ARMv8.0 NEON (no
    /// `sdot`): `smull`/`smlal` with 4 products per i16 lane (≤ 4·15·128 =
    /// 7680, no overflow), then a pairwise widening add.
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn dot32(q0: int8x16_t, q1: int8x16_t, y0: int8x16_t, y1: int8x16_t) -> int32x4_t {
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
    unsafe fn dot32(q0: int8x16_t, q1: int8x16_t, y0: int8x16_t, y1: int8x16_t) -> int32x4_t {
        sdot(sdot(vdupq_n_s32(0), q0, y0), q1, y1)
    }

    neon_dot_rows!("neon,dotprod", dot32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::q8_k::{select_act, BLOCK_Q8_K_BYTES};
    use crate::testutil::*;

    fn random_blocks(rng: &mut Rng, count: usize) -> Vec<u8> {
        blocks(count, |_| BlockQ4_K {
            d: rng.scale_f16(-3.0, -1.0),
            dmin: rng.scale_f16(-3.0, -1.0),
            scales: rng.bytes(K_SCALE_SIZE).try_into().unwrap(),
            qs: rng.bytes(QK_K / 2).try_into().unwrap(),
        })
    }

    crate::quants::q8_k::multirow_test!(BLOCK_Q4_K_BYTES, random_blocks, x86: [avx2 => Avx2], arm: [neon => Neon, dotprod => Dotprod]);

    #[test]
    fn block_layout() {
        assert_eq!(BLOCK_Q4_K_BYTES, GgmlType::Q4_K.block_bytes());
        for j in 0..8 {
            let mut rng = Rng::new(j as u64);
            let s: [u8; 12] = rng.bytes(12).try_into().unwrap();
            let u: [u8; 16] = bytemuck::cast(unpack_scales_mins(scale_words(&s)));
            assert_eq!((u[j], u[8 + j]), get_scale_min_k4(j, &s));
        }
    }

    #[test]
    fn simd_matches_scalar() {
        let mut rng = Rng::new(41);
        for nblocks in [1usize, 2, 3, 16] {
            let rows = 7;
            let w = random_blocks(&mut rng, rows * nblocks);
            let x = rng.normals(nblocks * QK_K, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("Q4_K {nblocks} blocks"),
            );
        }
    }

    /// All-maximal quants and 6-bit scales/mins, large `d`, activations at the
    /// Q8_K extremes (±127 and the −128 no quantizer makes).
    #[test]
    fn overflow_stress() {
        let max_block = BlockQ4_K {
            d: f16::from_f32(1.0),
            dmin: f16::from_f32(1.0),
            scales: [0xFF; K_SCALE_SIZE],
            qs: [0xFF; QK_K / 2],
        };
        let nb = 3;
        let w = blocks(4 * nb, |i| {
            if i / nb == 3 {
                BlockQ4_K {
                    qs: [0; QK_K / 2],
                    ..max_block
                }
            } else {
                max_block
            }
        });
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
            let row_bytes = nb * BLOCK_Q4_K_BYTES;
            let want: Vec<f32> = (0..4)
                .map(|r| vec_dot_q4_K_q8_K(nb * QK_K, &w[r * row_bytes..], &a))
                .collect();
            // Every element is (63·15 − 63)·q8 (and −63·q8 in the zero-quant row).
            let exact = (nb * QK_K) as f64 * (63.0 * 15.0 - 63.0) * fill as f64;
            assert_close("scalar", want[0] as f64, exact, 1e-6 * exact.abs());
            assert_close("scalar", want[3] as f64, -exact / 14.0, 1e-6 * exact.abs());
            for b in backends() {
                let fk = select(b);
                let mut out = vec![0.0; 4];
                (fk.gemv)(nb * QK_K, &w, row_bytes, &a, &mut out);
                out.push((fk.vec_dot)(nb * QK_K, &w, &a));
                for (r, &o) in out.iter().enumerate() {
                    let want = want[r % 4] as f64;
                    assert_close(
                        &format!("{b} fill {fill} row {r}"),
                        o as f64,
                        want,
                        1e-6 * want.abs(),
                    );
                }
            }
        }
    }

    #[test]
    fn reference_quantizer_matches_ggml() {
        let x = f32s_le(&fixture("quant-extra/q4_k.quantize.input.f32.bin"));
        let want = fixture("quant-extra/q4_k.quantize.blocks.bin");
        let mut got = vec![0u8; want.len()];
        quantize_row_q4_K(&x, &mut got);
        for (i, (g, w)) in got
            .chunks(BLOCK_Q4_K_BYTES)
            .zip(want.chunks(BLOCK_Q4_K_BYTES))
            .enumerate()
        {
            assert_eq!(g, w, "block {i}");
        }
    }

    #[test]
    fn error_budgets() {
        let n = 4096;
        let x = synthetic(n, 0.0);
        let mut w = vec![0u8; GgmlType::Q4_K.row_bytes(n).unwrap()];
        quantize_row_q4_K(&x, &mut w);
        let mut y = vec![0.0; n];
        dequantize_row_q4_K(&w, &mut y);
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
