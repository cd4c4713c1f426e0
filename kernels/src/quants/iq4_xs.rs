//! IQ4_XS: non-linear 4-bit super-blocks, 4.25 bits per weight.
//!
//! 8 sub-blocks of 32 weights, each with a 6-bit scale (low 4 bits in
//! `scales_l`, high 2 bits in `scales_h`, stored +32) and one f16 `d`:
//! `x = d·(ls − 32)·kvalues_iq4nl[q]`, `q` a 4-bit index into IQ4_NL's 16
//! levels. Sub-block `ib` takes `qs[16ib .. 16ib+16]`: low nibbles are its
//! weights 0..16, high nibbles 16..32.
//!
//! The levels are looked up with a byte shuffle (`pshufb` / `tbl`) and
//! multiplied as signed bytes with the Q8_K activations.

use super::iq4_nl::KVALUES_IQ4NL;
use super::q8_k::{self, check_dot, QK_K};
use super::{gemv_rows, VecDot};
use crate::dispatch::{Backend, FormatKernels};
use crate::types::GgmlType;
use half::f16;

/// IQ4_XS super-block, as in ggml-common.h.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIQ4_XS {
    /// super-block scale
    pub d: f16,
    /// high 2 bits of the 8 sub-block scales
    pub scales_h: u16,
    /// low 4 bits of the 8 sub-block scales
    pub scales_l: [u8; QK_K / 64],
    /// 4-bit indices into `kvalues_iq4nl`
    pub qs: [u8; QK_K / 2],
}

/// Bytes of one [`BlockIQ4_XS`].
pub const BLOCK_IQ4_XS_BYTES: usize = 136;
const _: () = assert!(std::mem::size_of::<BlockIQ4_XS>() == BLOCK_IQ4_XS_BYTES);

/// Byte offsets inside a block.
const SCALES_H: usize = 2;
const SCALES_L: usize = 4;
const QS: usize = 8;

/// The 8 sub-block scales, `ls − 32`, from `scales_h` and `scales_l`.
#[inline(always)]
fn unpack_scales(scales_h: u16, scales_l: &[u8; 4]) -> [i16; 8] {
    let mut s = [0i16; 8];
    for (ib, o) in s.iter_mut().enumerate() {
        let lo = (scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
        let hi = ((scales_h >> (2 * ib)) & 3) as u8;
        *o = (lo | (hi << 4)) as i16 - 32;
    }
    s
}

/// `y` = the values of the IQ4_XS blocks in `x` (ggml's
/// `dequantize_row_iq4_xs`, bit for bit: `d·(ls − 32)` first).
#[allow(non_snake_case)]
pub fn dequantize_row_iq4_xs(x: &[u8], y: &mut [f32]) {
    assert!(
        y.len().is_multiple_of(QK_K),
        "dequantize_row_iq4_xs: {} values",
        y.len()
    );
    let nb = y.len() / QK_K;
    assert!(
        x.len() >= nb * BLOCK_IQ4_XS_BYTES,
        "dequantize_row_iq4_xs: input too short"
    );
    for (xb, yb) in x
        .chunks_exact(BLOCK_IQ4_XS_BYTES)
        .zip(y.chunks_exact_mut(QK_K))
    {
        let b: BlockIQ4_XS = bytemuck::pod_read_unaligned(xb);
        let d = b.d.to_f32();
        let s = unpack_scales(b.scales_h, &b.scales_l);
        for (ib, (q, out)) in
            b.qs.chunks_exact(16)
                .zip(yb.chunks_exact_mut(32))
                .enumerate()
        {
            let dl = d * s[ib] as f32;
            for j in 0..16 {
                out[j] = dl * KVALUES_IQ4NL[(q[j] & 0xF) as usize] as f32;
                out[j + 16] = dl * KVALUES_IQ4NL[(q[j] >> 4) as usize] as f32;
            }
        }
    }
}

/// Dot product of an IQ4_XS row with a Q8_K row, `n` values (scalar reference).
#[allow(non_snake_case)]
pub fn vec_dot_iq4_xs_q8_K(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check_dot("iq4_xs", n, w, BLOCK_IQ4_XS_BYTES, a);
    let mut sumf = 0.0f32;
    for (i, xb) in w.chunks_exact(BLOCK_IQ4_XS_BYTES).take(nb).enumerate() {
        let x: BlockIQ4_XS = bytemuck::pod_read_unaligned(xb);
        let y = q8_k::read_block(a, i);
        let s = unpack_scales(x.scales_h, &x.scales_l);
        let mut isum = 0i32;
        for (ib, q) in x.qs.chunks_exact(16).enumerate() {
            let q8 = &y.qs[32 * ib..32 * ib + 32];
            let mut t = 0i32;
            for j in 0..16 {
                t += KVALUES_IQ4NL[(q[j] & 0xF) as usize] as i32 * q8[j] as i32;
                t += KVALUES_IQ4NL[(q[j] >> 4) as usize] as i32 * q8[j + 16] as i32;
            }
            isum += s[ib] as i32 * t;
        }
        sumf += y.d * x.d.to_f32() * isum as f32;
    }
    sumf
}

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_iq4_xs_q8_K(n, w, a)
    }
}

/// IQ4_XS kernels for `level` (no AVX-512 version: the AVX2 one serves).
pub(crate) fn select(level: Backend) -> FormatKernels {
    let scalar = FormatKernels {
        weight: GgmlType::IQ4_XS,
        act: GgmlType::Q8_K,
        dequantize_row: dequantize_row_iq4_xs,
        vec_dot: vec_dot_iq4_xs_q8_K,
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

crate::quants::q8_k::k_entries!("iq4_xs", BLOCK_IQ4_XS_BYTES, no_avx512);

/// The 8 scales (`ls − 32`) of the block at `x`.
#[inline(always)]
unsafe fn scales_at(x: *const u8) -> [i16; 8] {
    let h = core::ptr::read_unaligned(x.add(SCALES_H) as *const u16);
    unpack_scales(u16::from_le(h), &*(x.add(SCALES_L) as *const [u8; 4]))
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use crate::quants::q8_k::x86::*;
    use core::arch::x86_64::*;

    crate::quants::q8_k::gemv_in_groups!("avx2,fma,f16c");

    /// Dot products of `R` rows (`row_bytes` apart from `w`) with the Q8_K
    /// row `a`. Signed × signed bytes go through `maddubs` as
    /// `|y| · (kv·sign y)`: |y| ≤ 128 fits u8 (also for y = −128) and
    /// |kv| ≤ 127, so pair sums stay below 2·128·127 — no saturation.
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
        let table =
            _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i));
        let mut shuf = [_mm256_setzero_si256(); 8];
        for (k, s) in shuf.iter_mut().enumerate() {
            *s = _mm256_set1_epi16((((2 * k + 1) << 8) | (2 * k)) as i16);
        }
        let mut acc = [_mm256_setzero_ps(); R];
        for i in 0..nb {
            let (d8, q8, _) = q8k_block(a, i);
            let mut sc = [_mm256_setzero_si256(); R];
            let mut dd = [0f32; R];
            for r in 0..R {
                let x = w.add(r * row_bytes + i * BLOCK_IQ4_XS_BYTES);
                let s = scales_at(x);
                sc[r] = _mm256_broadcastsi128_si256(_mm_loadu_si128(s.as_ptr() as *const __m128i));
                dd[r] = d8 * f16_at(x);
            }
            let mut sumi = [_mm256_setzero_si256(); R];
            for ib in 0..8 {
                let y = _mm256_loadu_si256(q8.add(32 * ib) as *const __m256i);
                let ay = _mm256_abs_epi8(y);
                for r in 0..R {
                    let x = w.add(r * row_bytes + i * BLOCK_IQ4_XS_BYTES + QS + 16 * ib);
                    let b = _mm_loadu_si128(x as *const __m128i);
                    let idx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), m4);
                    let kv = _mm256_shuffle_epi8(table, idx);
                    let p = _mm256_maddubs_epi16(ay, _mm256_sign_epi8(kv, y));
                    let s = _mm256_shuffle_epi8(sc[r], shuf[ib]);
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(s, p));
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
            let table = vld1q_s8(KVALUES_IQ4NL.as_ptr());
            let mut acc = [vdupq_n_f32(0.0); R];
            for i in 0..nb {
                let (d8, q8, _) = q8k_block(a, i);
                let mut sc = [[0i16; 8]; R];
                let mut dd = [0f32; R];
                for r in 0..R {
                    let x = w.add(r * row_bytes + i * BLOCK_IQ4_XS_BYTES);
                    sc[r] = scales_at(x);
                    dd[r] = d8 * f16_at(x);
                }
                // Four sub-blocks at a time: their dot products (4 lanes each)
                // meet their scales in one multiply after a pairwise-add tree.
                let mut sumi = [vdupq_n_s32(0); R];
                for half in 0..2 {
                    let mut p = [[vdupq_n_s32(0); 4]; R];
                    for k in 0..4 {
                        let ib = 4 * half + k;
                        let y = vld1q_s8_x2(q8.add(32 * ib) as *const i8);
                        for r in 0..R {
                            let x = w.add(r * row_bytes + i * BLOCK_IQ4_XS_BYTES + QS + 16 * ib);
                            let b = vld1q_u8(x);
                            let lo = vqtbl1q_s8(table, vandq_u8(b, m4));
                            let hi = vqtbl1q_s8(table, vshrq_n_u8(b, 4));
                            p[r][k] = $dot32(lo, hi, y.0, y.1);
                        }
                    }
                    for r in 0..R {
                        let s = vmovl_s16(vld1_s16(sc[r].as_ptr().add(4 * half)));
                        let q = &p[r];
                        sumi[r] = vmlaq_s32(sumi[r], hsum4(q[0], q[1], q[2], q[3]), s);
                    }
                }
                for r in 0..R {
                    acc[r] = vmlaq_n_f32(acc[r], vcvtq_f32_s32(sumi[r]), dd[r]);
                }
            }
            let mut out = [0f32; R];
            for r in 0..R {
                out[r] = vaddvq_f32(acc[r]);
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

    /// Σ of 32 signed byte products as 4 lanes: `smull`+`smlal` (2 products
    /// per i16 lane: ≤ 2·127·128 = 32512, no overflow), then widen.
    #[target_feature(enable = "neon")]
    #[inline]
    unsafe fn dot32(q0: int8x16_t, q1: int8x16_t, y0: int8x16_t, y1: int8x16_t) -> int32x4_t {
        let p0 = vmlal_high_s8(vmull_s8(vget_low_s8(q0), vget_low_s8(y0)), q0, y0);
        let p1 = vmlal_high_s8(vmull_s8(vget_low_s8(q1), vget_low_s8(y1)), q1, y1);
        vpadalq_s16(vpaddlq_s16(p0), p1)
    }

    neon_dot_rows!("neon", dot32);
}

#[cfg(target_arch = "aarch64")]
mod dotprod {
    use super::*;
    use crate::quants::q8_k::arm::*;
    use core::arch::aarch64::*;

    /// Σ of 32 signed byte products as 4 lanes, by `sdot`.
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
        blocks(count, |_| BlockIQ4_XS {
            d: rng.signed_scale_f16(-3.0, -1.0),
            scales_h: rng.next_u32() as u16,
            scales_l: rng.bytes(4).try_into().unwrap(),
            qs: rng.bytes(QK_K / 2).try_into().unwrap(),
        })
    }

    crate::quants::q8_k::multirow_test!(BLOCK_IQ4_XS_BYTES, random_blocks, x86: [avx2 => Avx2], arm: [neon => Neon, dotprod => Dotprod]);

    #[test]
    fn block_layout() {
        assert_eq!(BLOCK_IQ4_XS_BYTES, GgmlType::IQ4_XS.block_bytes());
        let b: BlockIQ4_XS = bytemuck::Zeroable::zeroed();
        let base = &b as *const _ as usize;
        assert_eq!(&b.scales_h as *const _ as usize - base, SCALES_H);
        assert_eq!(b.scales_l.as_ptr() as usize - base, SCALES_L);
        assert_eq!(b.qs.as_ptr() as usize - base, QS);
    }

    #[test]
    fn simd_matches_scalar() {
        let mut rng = Rng::new(44);
        for nblocks in [1usize, 2, 3, 16] {
            let w = random_blocks(&mut rng, 7 * nblocks);
            let x = rng.normals(nblocks * QK_K, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("IQ4_XS {nblocks} blocks"),
            );
        }
    }

    /// The extreme levels (−127 and 113) and scales (−32, 31), activations at
    /// ±127 and −128.
    #[test]
    fn overflow_stress() {
        let nb = 3;
        // ls = 0 → −32; ls = 63 → 31. Index 0 → −127; index 15 → 113.
        let mk = |q: u8, ls_max: bool| BlockIQ4_XS {
            d: f16::from_f32(1.0),
            scales_h: if ls_max { 0xFFFF } else { 0 },
            scales_l: [if ls_max { 0xFF } else { 0 }; 4],
            qs: [q * 0x11; QK_K / 2],
        };
        let cases = [
            (mk(0, false), -127.0, -32.0),
            (mk(15, true), 113.0, 31.0),
            (mk(0, true), -127.0, 31.0),
        ];
        let w = blocks(cases.len() * nb, |i| cases[i / nb].0);
        let row_bytes = nb * BLOCK_IQ4_XS_BYTES;
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
                for (r, &(_, kv, s)) in cases.iter().enumerate() {
                    let exact = (nb * QK_K) as f64 * kv * s * fill as f64;
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
    /// nearest-level quantizer (IQ4_XS files come from ggml's quantizer; the
    /// kernels only need realistic blocks).
    #[test]
    fn error_budgets() {
        let n = 4096;
        let x = synthetic(n, 0.0);
        let w = simple_quantize(&x);
        let mut y = vec![0.0; n];
        dequantize_row_iq4_xs(&w, &mut y);
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

    fn simple_quantize(x: &[f32]) -> Vec<u8> {
        let mut out = Vec::new();
        for xb in x.chunks_exact(QK_K) {
            // Per sub-block: the largest magnitude maps to ±127 (the outer level).
            let mut ds = [0f32; 8];
            for (ib, d) in ds.iter_mut().enumerate() {
                let m = xb[32 * ib..32 * ib + 32].iter().fold(0f32, |m, &v| {
                    if v.abs() > m.abs() {
                        v
                    } else {
                        m
                    }
                });
                *d = -m / 127.0;
            }
            let amax = ds
                .iter()
                .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = -amax / 32.0;
            let mut b: BlockIQ4_XS = bytemuck::Zeroable::zeroed();
            b.d = f16::from_f32(d);
            for (ib, &dl) in ds.iter().enumerate() {
                let l = if d != 0.0 {
                    ((dl / d).round() as i32).clamp(-32, 31)
                } else {
                    0
                } + 32;
                b.scales_l[ib / 2] |= ((l & 0xF) as u8) << (4 * (ib % 2));
                b.scales_h |= ((l >> 4) as u16) << (2 * ib);
            }
            let s = unpack_scales(b.scales_h, &b.scales_l);
            let df = b.d.to_f32();
            for ib in 0..8 {
                let dl = df * s[ib] as f32;
                let near = |v: f32| {
                    (0..16u8)
                        .min_by(|&p, &q| {
                            let e = |i: u8| (dl * KVALUES_IQ4NL[i as usize] as f32 - v).abs();
                            e(p).total_cmp(&e(q))
                        })
                        .unwrap()
                };
                for j in 0..16 {
                    let (lo, hi) = (near(xb[32 * ib + j]), near(xb[32 * ib + 16 + j]));
                    b.qs[16 * ib + j] = lo | (hi << 4);
                }
            }
            out.extend_from_slice(bytemuck::bytes_of(&b));
        }
        out
    }
}
