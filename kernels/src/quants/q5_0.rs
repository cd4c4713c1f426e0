//! Q5_0: 32 5-bit quants and one f16 scale per block, `x = d * (q - 16)`.
//!
//! Gemma 3 270M's Q4_K_M file carries 81 Q5_0 tensors. The low 4 bits of
//! element `j < 16` are the low nibble of `qs[j]`, those of element `j + 16`
//! its high nibble; bit 4 of element `i` is bit `i` of the little-endian u32
//! `qh`. Activations are Q8_0.
//!
//! Kernels (exact integer block sums, scaled once per block):
//! - AVX2: the 32 `qh` bits are spread to bytes; `q - 16` is the nibble OR
//!   0xF0 where the high bit is clear; `maddubs` with the sign trick.
//! - AVX-512 VNNI: the unsigned 5-bit quant goes straight into `vpdpbusd`
//!   with the accumulator starting at `-16·Σy` (shared by the rows).
//! - NEON / dotprod: bits spread with `tbl` + `cmtst`, then as Q4_0.

use super::q8_0::{check_vec_dot, read_blocks, simd_entries, BlockQ8_0, QK8_0};
use crate::dispatch::{Backend, FormatKernels};
use crate::quants::{gemv_rows, VecDot};
use crate::types::GgmlType;
use half::f16;

/// Elements per block.
pub const QK5_0: usize = 32;

/// ggml's `block_q5_0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_0 {
    /// delta
    pub d: f16,
    /// 5-th bit of quants
    pub qh: [u8; 4],
    /// nibbles / quants
    pub qs: [u8; QK5_0 / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22 && QK5_0 == QK8_0);
const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ5_0>();
const ACT_BYTES: usize = std::mem::size_of::<BlockQ8_0>();

/// The 5-bit quants `0..32` of a block, in element order.
#[inline(always)]
pub(crate) fn unpack(b: &BlockQ5_0) -> [i32; QK5_0] {
    let qh = u32::from_le_bytes(b.qh);
    let mut q = [0i32; QK5_0];
    for j in 0..QK5_0 / 2 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        q[j] = ((b.qs[j] as u32 & 0x0f) | h0) as i32;
        q[j + 16] = ((b.qs[j] as u32 >> 4) | h1) as i32;
    }
    q
}

// ---------------------------------------------------------------- scalar --

/// `y[i] = d·(q[i] - 16)`.
pub fn dequantize_row_q5_0(x: &[u8], y: &mut [f32]) {
    assert!(
        y.len().is_multiple_of(QK5_0) && x.len() / BLOCK_BYTES >= y.len() / QK5_0,
        "dequantize_row_q5_0: {} bytes cannot give {} values",
        x.len(),
        y.len()
    );
    for (b, out) in read_blocks::<BlockQ5_0>(x).zip(y.chunks_exact_mut(QK5_0)) {
        let d = b.d.to_f32();
        for (o, q) in out.iter_mut().zip(unpack(&b)) {
            *o = (q - 16) as f32 * d;
        }
    }
}

/// ggml's `quantize_row_q5_0_ref`: `d = max/-16` (`max` the element of largest
/// magnitude), `q = min(31, ⌊x/d + 16.5⌋)`.
pub fn quantize_row_q5_0_ref(x: &[f32], y: &mut [u8]) {
    super::q8_0::check_quantize("quantize_row_q5_0_ref", x, y, BLOCK_BYTES);
    for (xb, yb) in x.chunks_exact(QK5_0).zip(y.chunks_exact_mut(BLOCK_BYTES)) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xb {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut b = BlockQ5_0 {
            d: f16::from_f32(d),
            qh: [0; 4],
            qs: [0; 16],
        };
        let mut qh = 0u32;
        for j in 0..QK5_0 / 2 {
            let q0 = ((xb[j] * id + 16.5) as i8).min(31) as u32;
            let q1 = ((xb[j + 16] * id + 16.5) as i8).min(31) as u32;
            b.qs[j] = ((q0 & 0x0f) | ((q1 & 0x0f) << 4)) as u8;
            qh |= ((q0 & 0x10) >> 4) << j;
            qh |= ((q1 & 0x10) >> 4) << (j + 16);
        }
        b.qh = qh.to_le_bytes();
        yb.copy_from_slice(bytemuck::bytes_of(&b));
    }
}

/// `Σ x·y` of a Q5_0 weight row and a Q8_0 activation row (ggml's
/// `ggml_vec_dot_q5_0_q8_0`).
pub fn vec_dot_q5_0_q8_0(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let nb = check_vec_dot(GgmlType::Q5_0, GgmlType::Q8_0, n, x, y);
    let xs = read_blocks::<BlockQ5_0>(x).take(nb);
    let ys = read_blocks::<BlockQ8_0>(y);
    let mut sumf = 0f32;
    for (bx, by) in xs.zip(ys) {
        let sumi: i32 = unpack(&bx)
            .iter()
            .zip(&by.qs)
            .map(|(&q, &v)| (q - 16) * v as i32)
            .sum();
        sumf += sumi as f32 * (bx.d.to_f32() * by.d.to_f32());
    }
    sumf
}

// ------------------------------------------------------------------- x86 --

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{ACT_BYTES, BLOCK_BYTES};
    use crate::quants::q8_0::avx2::{bits_32, mul_sum_i8_ps, nibbles_32};
    use crate::quants::q8_0::x86::BlockDot;
    use core::arch::x86_64::*;

    /// Q5_0 blocks: `q - 16` = nibble | (h ? 0 : 0xF0) as signed bytes, sign trick + `maddubs`.
    pub(super) struct Q5_0;
    impl BlockDot for Q5_0 {
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
                let hi = _mm256_andnot_si256(bits_32(wb.add(2)), _mm256_set1_epi8(0xf0u8 as i8));
                let x = _mm256_or_si256(nibbles_32(wb.add(6)), hi);
                mul_sum_i8_ps(x, y)
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
        unsafe { crate::quants::q8_0::x86::avx2::drive::<Q5_0, R>(nb, w, row_bytes, a) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{ACT_BYTES, BLOCK_BYTES};
    use crate::quants::q8_0::avx2::{bits_32, nibbles_32};
    use crate::quants::q8_0::x86::BlockDot;
    use core::arch::x86_64::*;

    /// Q5_0 blocks: the unsigned 5-bit quant into `vpdpbusd`, accumulator preset to `-16·Σy`.
    pub(super) struct Q5_0;
    impl BlockDot for Q5_0 {
        const W_BYTES: usize = BLOCK_BYTES;
        const A_BYTES: usize = ACT_BYTES;
        const A_QS: usize = 2;
        const HAS_MIN: bool = false;
        type Shared = __m256i;
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn shared(y: __m256i) -> __m256i {
            let sy = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), y);
            _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<4>(sy))
        }
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn dot(wb: *const u8, y: __m256i, shared: __m256i) -> __m256 {
            // SAFETY: per the trait contract (one whole block at `wb`).
            unsafe {
                let hb = _mm256_and_si256(bits_32(wb.add(2)), _mm256_set1_epi8(0x10));
                let q = _mm256_or_si256(nibbles_32(wb.add(6)), hb);
                _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(shared, q, y))
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
        unsafe { crate::quants::q8_0::x86::avx512::drive::<Q5_0, R>(nb, w, row_bytes, a) }
    }
}

// --------------------------------------------------------------- aarch64 --

#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use super::{ACT_BYTES, BLOCK_BYTES};
    use crate::quants::q8_0::arm::{scale_lane, NeonBlock, RowBlocks};
    use core::arch::aarch64::*;
    use core::arch::asm;
    /// Byte `i` of the table picks byte `i/8` of the broadcast `qh` (first 16
    /// elements from bytes 0–1, the next 16 from bytes 2–3)…
    static SPREAD: [u8; 32] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //
        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    ];
    /// …and keeps bit `i mod 8` of it.
    static BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];

    /// The 32 bits at `p` as bytes: 0xFF where the bit is set.
    ///
    /// # Safety
    /// `p` valid for reading 4 bytes.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) unsafe fn bits_32(p: *const u8) -> (uint8x16_t, uint8x16_t) {
        // SAFETY: per the caller; the tables are 16/32 bytes.
        unsafe {
            let v = vreinterpretq_u8_u32(vdupq_n_u32((p as *const u32).read_unaligned()));
            let bit = vld1q_u8(BIT.as_ptr());
            let lo = vtstq_u8(vqtbl1q_u8(v, vld1q_u8(SPREAD.as_ptr())), bit);
            let hi = vtstq_u8(vqtbl1q_u8(v, vld1q_u8(SPREAD.as_ptr().add(16))), bit);
            (lo, hi)
        }
    }

    /// [`bits_32`] of the complement of the 32 bits at `p`: 0xFF where the
    /// bit is clear.
    ///
    /// # Safety
    /// `p` valid for reading 4 bytes.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) unsafe fn not_bits_32(p: *const u8) -> (uint8x16_t, uint8x16_t) {
        // SAFETY: per the caller; the tables are 16/32 bytes.
        unsafe {
            let v = vreinterpretq_u8_u32(vdupq_n_u32(!(p as *const u32).read_unaligned()));
            let bit = vld1q_u8(BIT.as_ptr());
            let lo = vtstq_u8(vqtbl1q_u8(v, vld1q_u8(SPREAD.as_ptr())), bit);
            let hi = vtstq_u8(vqtbl1q_u8(v, vld1q_u8(SPREAD.as_ptr().add(16))), bit);
            (lo, hi)
        }
    }

    pub(super) struct Q5_0;
    impl NeonBlock for Q5_0 {
        const W_BYTES: usize = BLOCK_BYTES;
        const A_BYTES: usize = ACT_BYTES;
        const A_QS: usize = 2;
        const HAS_MIN: bool = false;
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn decode(wb: *const u8) -> (int8x16_t, int8x16_t) {
            // SAFETY: per the trait contract (one whole block at `wb`).
            unsafe {
                // 0xFF where the high bit is clear: the spread of `!qh`.
                let (nl, nh) = not_bits_32(wb.add(2));
                let v = vld1q_u8(wb.add(6));
                // nibble | (h ? 0 : 0xF0), read as i8, is q - 16: the low
                // nibbles inserted under the mask's high nibble (`bit`), the
                // high nibbles shifted into it (`sri`).
                (
                    vreinterpretq_s8_u8(vbslq_u8(vdupq_n_u8(0x0f), v, nl)),
                    vreinterpretq_s8_u8(vsriq_n_u8::<4>(nh, v)),
                )
            }
        }
    }

    /// Q5_0 rows for the four-row kernel, with the decode tables in registers.
    pub(super) struct Q5_0Rows {
        pub(super) spread_lo: uint8x16_t,
        pub(super) spread_hi: uint8x16_t,
        pub(super) bit: uint8x16_t,
        pub(super) low4: uint8x16_t,
    }

    impl Q5_0Rows {
        /// The tables, loaded.
        #[target_feature(enable = "neon")]
        #[inline]
        pub(super) fn new() -> Q5_0Rows {
            // SAFETY: the tables are 32 and 16 bytes.
            unsafe {
                Q5_0Rows {
                    spread_lo: vld1q_u8(SPREAD.as_ptr()),
                    spread_hi: vld1q_u8(SPREAD.as_ptr().add(16)),
                    bit: vld1q_u8(BIT.as_ptr()),
                    low4: vdupq_n_u8(0x0f),
                }
            }
        }
    }

    impl RowBlocks for Q5_0Rows {
        const PAIRS: bool = false;
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn row_block<const L: usize>(
            &self,
            p: &mut *const u8,
            h: &mut uint16x4_t,
        ) -> (int8x16_t, int8x16_t) {
            let (qh, qs): (uint8x16_t, uint8x16_t);
            // SAFETY: per the trait contract: the 2 + 4 + 16 bytes of the block
            // (`ld1r` has no alignment need).
            unsafe {
                scale_lane::<L>(p, h);
                asm!("ld1r {{{qh:v}.4s}}, [{p}], #4",
                     "ldr {qs:q}, [{p}], #16",
                     p = inout(reg) *p, qh = out(vreg) qh, qs = out(vreg) qs,
                     options(pure, readonly, nostack, preserves_flags));
            }
            // 0xFF where the high bit is clear; then nibble | (h ? 0 : 0xF0),
            // read as i8, is q - 16 (as in the NEON decode).
            let n = vmvnq_u8(qh);
            let nl = vtstq_u8(vqtbl1q_u8(n, self.spread_lo), self.bit);
            let nh = vtstq_u8(vqtbl1q_u8(n, self.spread_hi), self.bit);
            (
                vreinterpretq_s8_u8(vbslq_u8(self.low4, qs, nl)),
                vreinterpretq_s8_u8(vsriq_n_u8::<4>(nh, qs)),
            )
        }
    }

    /// `R` rows: groups of four through the post-indexed four-row kernel,
    /// others through the shared NEON driver.
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
        let mut out = [0f32; R];
        if R == 4 {
            let t = Q5_0Rows::new();
            // SAFETY: per the caller.
            out.copy_from_slice(&unsafe {
                crate::quants::q8_0::arm::dot4_neon(&t, nb, w, row_bytes, a)
            });
        } else {
            // SAFETY: per the caller.
            out = unsafe { crate::quants::q8_0::arm::drive_neon::<Q5_0, R>(nb, w, row_bytes, a) };
        }
        out
    }
}

#[cfg(target_arch = "aarch64")]
mod dotprod {
    use crate::quants::q8_0::arm::dot4_dotprod;

    /// `R` rows: groups of four through the post-indexed four-row kernel,
    /// others through the shared NEON+dotprod driver.
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
        let mut out = [0f32; R];
        if R == 4 {
            let t = super::neon::Q5_0Rows::new();
            // SAFETY: per the caller.
            out.copy_from_slice(&unsafe { dot4_dotprod(&t, nb, w, row_bytes, a) });
        } else {
            // SAFETY: per the caller.
            out = unsafe {
                crate::quants::q8_0::arm::drive_dotprod::<super::neon::Q5_0, R>(nb, w, row_bytes, a)
            };
        }
        out
    }
}

// ------------------------------------------------------- dispatch table --

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_q5_0_q8_0(n, w, a)
    }
}

#[cfg(target_arch = "x86_64")]
simd_entries!(
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    vec_dot_avx2,
    gemv_avx2,
    avx2
);
#[cfg(target_arch = "x86_64")]
simd_entries!(
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    vec_dot_avx512,
    gemv_avx512,
    avx512
);
#[cfg(target_arch = "aarch64")]
simd_entries!(
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    vec_dot_neon,
    gemv_neon,
    neon
);
#[cfg(target_arch = "aarch64")]
simd_entries!(
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    vec_dot_dotprod,
    gemv_dotprod,
    dotprod
);

/// Q5_0 kernels for `level`.
pub(crate) fn select(level: Backend) -> FormatKernels {
    let k = |vec_dot, gemv, path| FormatKernels {
        weight: GgmlType::Q5_0,
        act: GgmlType::Q8_0,
        dequantize_row: dequantize_row_q5_0,
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
        _ => k(vec_dot_q5_0_q8_0, gemv_rows::<Scalar>, Backend::Scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::q8_0::select_act;
    use crate::testutil::*;

    /// RMS error of quantize → dequantize on ggml's synthetic signal.
    const Q5_0_QUANT_ERROR: f64 = MAX_QUANTIZATION_TOTAL_ERROR;
    /// `|vec_dot - f32 dot| / n` on ggml's synthetic signal.
    const Q5_0_DOT_ERROR: f64 = MAX_DOT_PRODUCT_ERROR;

    fn random_blocks(rng: &mut Rng, count: usize) -> Vec<u8> {
        blocks(count, |_| {
            let mut b = BlockQ5_0 {
                d: rng.signed_scale_f16(-3.0, -1.0),
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
        let blocks = fixture("quant/q5_0.blocks.bin");
        let want = f32s_le(&fixture("quant/q5_0.f32.bin"));
        let mut got = vec![0f32; want.len()];
        dequantize_row_q5_0(&blocks, &mut got);
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
        quantize_row_q5_0_ref(&x, &mut wq);
        let mut deq = vec![0f32; n];
        dequantize_row_q5_0(&wq, &mut deq);
        let e = rmse(&x, &deq);
        assert!(e < Q5_0_QUANT_ERROR, "rmse {e}");
        for b in backends() {
            let (fk, ak) = (select(b), select_act(b));
            let got = (fk.vec_dot)(n, &wq, &quantize(&ak, &y)) as f64;
            let err = (got - dot_f64(&x, &y)).abs() / n as f64;
            assert!(err < Q5_0_DOT_ERROR, "{b}: dot error {err}");
        }
    }

    #[test]
    fn simd_matches_scalar() {
        let mut rng = Rng::new(50);
        for (nblocks, rows) in [(1, 5), (2, 3), (3, 7), (5, 4), (6, 5), (64, 6), (128, 9)] {
            let w = random_blocks(&mut rng, nblocks * rows);
            let x = rng.normals(nblocks * 32, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("q5_0 {nblocks}b×{rows}"),
            );
        }
        let w = fixture("quant/q5_0.blocks.bin");
        check_backends(
            select,
            select_act,
            &w,
            &synthetic(256, 0.7),
            SIMD_REL_BUDGET,
            "q5_0 fixture",
        );
    }

    #[test]
    fn overflow_stress() {
        // q = 0 (-16) and q = 31 (+15) everywhere, huge scales, activations ±127.
        for (qs, qh, sign) in [
            (0x00u8, 0x00u8, 1.0f32),
            (0xff, 0xff, 1.0),
            (0x00, 0x00, -1.0),
            (0xff, 0xff, -1.0),
        ] {
            let nb = 35;
            let w = blocks(nb * 5, |i| BlockQ5_0 {
                d: f16::from_f32(if i % 2 == 0 { 65504.0 } else { -0.5 }),
                qh: [qh; 4],
                qs: [qs; 16],
            });
            let x: Vec<f32> = (0..nb * 32)
                .map(|i| sign * if i % 4 == 1 { -1e3 } else { 1e3 })
                .collect();
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("q5_0 stress {qs:#x}"),
            );
        }
    }
}
