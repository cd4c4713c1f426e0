//! Q5_1: 32 5-bit quants, an f16 scale and an f16 minimum per block,
//! `x = d·q + m`.
//!
//! The low 4 bits of element `j < 16` are the low nibble of `qs[j]`, those of
//! `j + 16` its high nibble; bit 4 of element `i` is bit `i` of the
//! little-endian u32 `qh`. Activations are Q8_1 (`s = d_y·Σy`), so the
//! offset costs one product per block: `d_x d_y Σ q y + m·s`.
//!
//! Kernels: the quants are unsigned (0..31): `qh` bits spread to bytes
//! (`pshufb`+`pcmpeqb` / `tbl`+`cmtst`) OR-ed as 0x10 onto the nibbles, then
//! `maddubs` (AVX2), `vpdpbusd` (AVX-512 VNNI), `smull`/`sadalp` (NEON),
//! `sdot` (dotprod).

use super::q8_0::{check_vec_dot, read_blocks, simd_entries, QK8_0};
use super::q8_1::BlockQ8_1;
use crate::dispatch::{Backend, FormatKernels};
use crate::quants::{gemv_rows, VecDot};
use crate::types::GgmlType;
use half::f16;

/// Elements per block.
pub const QK5_1: usize = 32;

/// ggml's `block_q5_1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_1 {
    /// delta
    pub d: f16,
    /// min
    pub m: f16,
    /// 5-th bit of quants
    pub qh: [u8; 4],
    /// nibbles / quants
    pub qs: [u8; QK5_1 / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24 && QK5_1 == QK8_0);
const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ5_1>();
const ACT_BYTES: usize = std::mem::size_of::<BlockQ8_1>();

// ---------------------------------------------------------------- scalar --

/// The 5-bit quants `0..32` of a block, in element order.
#[inline(always)]
fn unpack(b: &BlockQ5_1) -> [i32; QK5_1] {
    let qh = u32::from_le_bytes(b.qh);
    let mut q = [0i32; QK5_1];
    for j in 0..QK5_1 / 2 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        q[j] = ((b.qs[j] as u32 & 0x0f) | h0) as i32;
        q[j + 16] = ((b.qs[j] as u32 >> 4) | h1) as i32;
    }
    q
}

/// `y[i] = d·q[i] + m`.
pub fn dequantize_row_q5_1(x: &[u8], y: &mut [f32]) {
    assert!(
        y.len().is_multiple_of(QK5_1) && x.len() / BLOCK_BYTES >= y.len() / QK5_1,
        "dequantize_row_q5_1: {} bytes cannot give {} values",
        x.len(),
        y.len()
    );
    for (b, out) in read_blocks::<BlockQ5_1>(x).zip(y.chunks_exact_mut(QK5_1)) {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        for (o, q) in out.iter_mut().zip(unpack(&b)) {
            *o = q as f32 * d + m;
        }
    }
}

/// ggml's `quantize_row_q5_1_ref`: `d = (max - min)/31`, `m = min`,
/// `q = ⌊(x - min)/d + 0.5⌋`.
pub fn quantize_row_q5_1_ref(x: &[f32], y: &mut [u8]) {
    super::q8_0::check_quantize("quantize_row_q5_1_ref", x, y, BLOCK_BYTES);
    for (xb, yb) in x.chunks_exact(QK5_1).zip(y.chunks_exact_mut(BLOCK_BYTES)) {
        let min = xb.iter().fold(f32::MAX, |m, &v| if v < m { v } else { m });
        let max = xb.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut b = BlockQ5_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qh: [0; 4],
            qs: [0; QK5_1 / 2],
        };
        let mut qh = 0u32;
        for j in 0..QK5_1 / 2 {
            // C's (uint8_t) cast of a value in [0.5, 31.5].
            let q0 = ((xb[j] - min) * id + 0.5) as u8 as u32;
            let q1 = ((xb[j + 16] - min) * id + 0.5) as u8 as u32;
            b.qs[j] = ((q0 & 0x0f) | ((q1 & 0x0f) << 4)) as u8;
            qh |= ((q0 & 0x10) >> 4) << j;
            qh |= ((q1 & 0x10) >> 4) << (j + 16);
        }
        b.qh = qh.to_le_bytes();
        yb.copy_from_slice(bytemuck::bytes_of(&b));
    }
}

/// `Σ x·y` of a Q5_1 weight row and a Q8_1 activation row (ggml's
/// `ggml_vec_dot_q5_1_q8_1`).
pub fn vec_dot_q5_1_q8_1(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let nb = check_vec_dot(GgmlType::Q5_1, GgmlType::Q8_1, n, x, y);
    let xs = read_blocks::<BlockQ5_1>(x).take(nb);
    let ys = read_blocks::<BlockQ8_1>(y);
    let mut sumf = 0f32;
    for (bx, by) in xs.zip(ys) {
        let sumi: i32 = unpack(&bx)
            .iter()
            .zip(&by.qs)
            .map(|(&q, &v)| q * v as i32)
            .sum();
        sumf += (bx.d.to_f32() * by.d.to_f32()) * sumi as f32 + bx.m.to_f32() * by.s.to_f32();
    }
    sumf
}

// ------------------------------------------------------------------- x86 --

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{ACT_BYTES, BLOCK_BYTES};
    use crate::quants::q8_0::avx2::{bits_32, mul_sum_u8_i8_ps, nibbles_32};
    use crate::quants::q8_0::x86::BlockDot;
    use core::arch::x86_64::*;

    /// Q5_1 blocks: nibble | 0x10·h (unsigned), `maddubs`.
    pub(super) struct Q5_1;
    impl BlockDot for Q5_1 {
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
            unsafe {
                let hb = _mm256_and_si256(bits_32(wb.add(4)), _mm256_set1_epi8(0x10));
                mul_sum_u8_i8_ps(_mm256_or_si256(nibbles_32(wb.add(8)), hb), y)
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
        unsafe { crate::quants::q8_0::x86::avx2::drive::<Q5_1, R>(nb, w, row_bytes, a) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{ACT_BYTES, BLOCK_BYTES};
    use crate::quants::q8_0::avx2::{bits_32, nibbles_32};
    use crate::quants::q8_0::avx512::mul_sum_u8_i8_ps;
    use crate::quants::q8_0::x86::BlockDot;
    use core::arch::x86_64::*;

    /// Q5_1 blocks: nibble | 0x10·h (unsigned), `vpdpbusd`.
    pub(super) struct Q5_1;
    impl BlockDot for Q5_1 {
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
            unsafe {
                let hb = _mm256_and_si256(bits_32(wb.add(4)), _mm256_set1_epi8(0x10));
                mul_sum_u8_i8_ps(_mm256_or_si256(nibbles_32(wb.add(8)), hb), y)
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
        unsafe { crate::quants::q8_0::x86::avx512::drive::<Q5_1, R>(nb, w, row_bytes, a) }
    }
}

// --------------------------------------------------------------- aarch64 --

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{ACT_BYTES, BLOCK_BYTES};
    use crate::quants::q5_0::neon::bits_32;
    use crate::quants::q8_0::arm::NeonBlock;
    use core::arch::aarch64::*;

    pub(super) struct Q5_1;
    impl NeonBlock for Q5_1 {
        const W_BYTES: usize = BLOCK_BYTES;
        const A_BYTES: usize = ACT_BYTES;
        const A_QS: usize = 4;
        const HAS_MIN: bool = true;
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn decode(wb: *const u8) -> (int8x16_t, int8x16_t) {
            // SAFETY: per the trait contract (one whole block at `wb`).
            unsafe {
                let (hl, hh) = bits_32(wb.add(4));
                let v = vld1q_u8(wb.add(8));
                let lo = vandq_u8(v, vdupq_n_u8(0x0f));
                let hi = vshrq_n_u8::<4>(v);
                let b4 = vdupq_n_u8(0x10);
                (
                    vreinterpretq_s8_u8(vorrq_u8(lo, vandq_u8(hl, b4))),
                    vreinterpretq_s8_u8(vorrq_u8(hi, vandq_u8(hh, b4))),
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
        unsafe { crate::quants::q8_0::arm::drive_neon::<Q5_1, R>(nb, w, row_bytes, a) }
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
            crate::quants::q8_0::arm::drive_dotprod::<super::neon::Q5_1, R>(nb, w, row_bytes, a)
        }
    }
}

// ------------------------------------------------------- dispatch table --

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_q5_1_q8_1(n, w, a)
    }
}

#[cfg(target_arch = "x86_64")]
simd_entries!(
    GgmlType::Q5_1,
    GgmlType::Q8_1,
    vec_dot_avx2,
    gemv_avx2,
    avx2
);
#[cfg(target_arch = "x86_64")]
simd_entries!(
    GgmlType::Q5_1,
    GgmlType::Q8_1,
    vec_dot_avx512,
    gemv_avx512,
    avx512
);
#[cfg(target_arch = "aarch64")]
simd_entries!(
    GgmlType::Q5_1,
    GgmlType::Q8_1,
    vec_dot_neon,
    gemv_neon,
    neon
);
#[cfg(target_arch = "aarch64")]
simd_entries!(
    GgmlType::Q5_1,
    GgmlType::Q8_1,
    vec_dot_dotprod,
    gemv_dotprod,
    dotprod
);

/// Q5_1 kernels for `level`.
pub(crate) fn select(level: Backend) -> FormatKernels {
    let k = |vec_dot, gemv, path| FormatKernels {
        weight: GgmlType::Q5_1,
        act: GgmlType::Q8_1,
        dequantize_row: dequantize_row_q5_1,
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
        _ => k(vec_dot_q5_1_q8_1, gemv_rows::<Scalar>, Backend::Scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::q8_1::select_act;
    use crate::testutil::*;

    /// RMS error of quantize → dequantize on ggml's synthetic signal.
    const Q5_1_QUANT_ERROR: f64 = MAX_QUANTIZATION_TOTAL_ERROR;
    /// `|vec_dot - f32 dot| / n` on ggml's synthetic signal.
    const Q5_1_DOT_ERROR: f64 = MAX_DOT_PRODUCT_ERROR;

    fn random_blocks(rng: &mut Rng, count: usize) -> Vec<u8> {
        blocks(count, |_| {
            let mut b = BlockQ5_1 {
                d: rng.scale_f16(-3.0, -1.0),
                m: rng.signed_scale_f16(-2.0, 0.0),
                qh: [0; 4],
                qs: [0; 16],
            };
            rng.fill(&mut b.qh);
            rng.fill(&mut b.qs);
            b
        })
    }

    #[test]
    fn dequantize_matches_gguf_py_golden() {
        let blocks = fixture("quant/q5_1.blocks.bin");
        let want = f32s_le(&fixture("quant/q5_1.f32.bin"));
        let mut got = vec![0f32; want.len()];
        dequantize_row_q5_1(&blocks, &mut got);
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
        quantize_row_q5_1_ref(&x, &mut wq);
        let mut deq = vec![0f32; n];
        dequantize_row_q5_1(&wq, &mut deq);
        let e = rmse(&x, &deq);
        assert!(e < Q5_1_QUANT_ERROR, "rmse {e}");
        for b in backends() {
            let (fk, ak) = (select(b), select_act(b));
            let got = (fk.vec_dot)(n, &wq, &quantize(&ak, &y)) as f64;
            let err = (got - dot_f64(&x, &y)).abs() / n as f64;
            assert!(err < Q5_1_DOT_ERROR, "{b}: dot error {err}");
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
                &format!("q5_1 {nblocks}b×{rows}"),
            );
        }
        let w = fixture("quant/q5_1.blocks.bin");
        check_backends(
            select,
            select_act,
            &w,
            &synthetic(512, 0.9),
            SIMD_REL_BUDGET,
            "q5_1 fixture",
        );
    }

    #[test]
    fn overflow_stress() {
        // Extreme quants, huge d and m, activations ±127 — but |x| small enough
        // that Q8_1's `s = d·Σq` (f16, ≤ 65504) stays finite, as it must.
        for (q, sign) in [(0x00u8, 1.0f32), (0xff, 1.0), (0xff, -1.0), (0x0f, -1.0)] {
            let nb = 33;
            let w = blocks(nb * 5, |i| BlockQ5_1 {
                d: f16::from_f32(if i % 2 == 0 { 65504.0 } else { 0.5 }),
                m: f16::from_f32(if i % 3 == 0 { -65504.0 } else { 2.0 }),
                qh: [q; 4],
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
                &format!("q5_1 stress {q:#x}"),
            );
        }
    }
}
