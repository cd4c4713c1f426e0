//! Q8_1: the activation format of Q4_1 and Q5_1 weights — Q8_0 plus `s`,
//! the block's `d·Σq`, so that a weight block's offset `m` contributes
//! `m·s` without touching the quants.
//!
//! Quantized with x86 ggml's arithmetic on every backend (as Q8_0 is, see
//! [`super::q8_0`]): `d = amax/127`, `id = 127/amax`, quants rounded half to
//! even, `s = f16(d·Σq)` with the f32 `d` (not the stored f16 one).

use super::q8_0::{check_quantize, quantize_block_x86, QK8_0};
use crate::dispatch::{ActKernels, Backend};
use crate::types::GgmlType;
use half::f16;

/// Elements per block.
pub const QK8_1: usize = 32;

/// ggml's `block_q8_1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_1 {
    /// delta
    pub d: f16,
    /// d * sum(qs[i])
    pub s: f16,
    /// quants
    pub qs: [i8; QK8_1],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36 && QK8_1 == QK8_0);
pub(crate) const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ8_1>();

/// Quantizes an activation row to Q8_1 exactly as x86 ggml's
/// `quantize_row_q8_1` does. Every backend produces these bytes (for finite
/// inputs).
pub fn quantize_row_q8_1(x: &[f32], y: &mut [u8]) {
    check_quantize("quantize_row_q8_1", x, y, BLOCK_BYTES);
    for (xb, yb) in x.chunks_exact(QK8_1).zip(y.chunks_exact_mut(BLOCK_BYTES)) {
        let (d, qs, sum) = quantize_block_x86(xb);
        let b = BlockQ8_1 {
            d: f16::from_f32(d),
            s: f16::from_f32(d * sum as f32),
            qs,
        };
        yb.copy_from_slice(bytemuck::bytes_of(&b));
    }
}

/// `y[i] = d·qs[i]` (for tests and debugging: Q8_1 is never a weight type).
pub fn dequantize_row_q8_1(x: &[u8], y: &mut [f32]) {
    assert!(
        y.len().is_multiple_of(QK8_1) && x.len() / BLOCK_BYTES >= y.len() / QK8_1,
        "dequantize_row_q8_1: {} bytes cannot give {} values",
        x.len(),
        y.len()
    );
    for (b, out) in super::q8_0::read_blocks::<BlockQ8_1>(x).zip(y.chunks_exact_mut(QK8_1)) {
        let d = b.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{BLOCK_BYTES, QK8_1};
    use crate::quants::q8_0::avx2::quantize_block;
    use core::arch::x86_64::*;

    /// # Safety
    /// AVX2/FMA/F16C; `x.len()` a multiple of 32, `y` holding `x.len()/32` blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn quantize_row(x: &[f32], y: &mut [u8]) {
        for (xb, yb) in x.chunks_exact(QK8_1).zip(y.chunks_exact_mut(BLOCK_BYTES)) {
            // SAFETY: xb has 32 floats, yb 36 bytes (quants at offset 4).
            let (d, sums) = unsafe { quantize_block(xb.as_ptr(), yb.as_mut_ptr().add(4)) };
            let s = _mm_add_epi32(
                _mm256_castsi256_si128(sums),
                _mm256_extracti128_si256::<1>(sums),
            );
            let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
            let sum = _mm_cvtsi128_si32(s);
            let head = [half::f16::from_f32(d), half::f16::from_f32(d * sum as f32)];
            yb[..4].copy_from_slice(bytemuck::cast_slice(&head));
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{BLOCK_BYTES, QK8_1};
    use crate::quants::q8_0::neon::quantize_block;

    /// # Safety
    /// NEON; `x.len()` a multiple of 32, `y` holding `x.len()/32` blocks.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn quantize_row(x: &[f32], y: &mut [u8]) {
        for (xb, yb) in x.chunks_exact(QK8_1).zip(y.chunks_exact_mut(BLOCK_BYTES)) {
            // SAFETY: xb has 32 floats, yb 36 bytes (quants at offset 4).
            let (d, sum) = unsafe { quantize_block(xb.as_ptr(), yb.as_mut_ptr().add(4)) };
            let head = [half::f16::from_f32(d), half::f16::from_f32(d * sum as f32)];
            yb[..4].copy_from_slice(bytemuck::cast_slice(&head));
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn quantize_row_avx2(x: &[f32], y: &mut [u8]) {
    check_quantize("quantize_row_q8_1", x, y, BLOCK_BYTES);
    // SAFETY: installed only for Avx2 and up, which the table checked; sizes checked.
    unsafe { avx2::quantize_row(x, y) }
}

#[cfg(target_arch = "aarch64")]
fn quantize_row_neon(x: &[f32], y: &mut [u8]) {
    check_quantize("quantize_row_q8_1", x, y, BLOCK_BYTES);
    // SAFETY: installed only for Neon and up, which the table checked; sizes checked.
    unsafe { neon::quantize_row(x, y) }
}

/// Q8_1 activation quantizer for `level`.
pub(crate) fn select_act(level: Backend) -> ActKernels {
    let k = |quantize_row, path| ActKernels {
        act: GgmlType::Q8_1,
        quantize_row,
        path,
    };
    match level {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 | Backend::Avx512 => k(quantize_row_avx2, Backend::Avx2),
        #[cfg(target_arch = "aarch64")]
        Backend::Neon | Backend::Dotprod => k(quantize_row_neon, Backend::Neon),
        _ => k(quantize_row_q8_1, Backend::Scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn q8_1_is_q8_0_plus_sum() {
        let mut rng = Rng::new(81);
        let x = rng.normals(32 * 16, 2.0);
        let mut a = vec![0u8; 16 * 34];
        let mut b = vec![0u8; 16 * 36];
        super::super::q8_0::quantize_row_q8_0(&x, &mut a);
        quantize_row_q8_1(&x, &mut b);
        for (qa, qb) in a.chunks_exact(34).zip(b.chunks_exact(36)) {
            assert_eq!(qa[..2], qb[..2]);
            assert_eq!(qa[2..], qb[4..]);
            let blk: BlockQ8_1 = bytemuck::pod_read_unaligned(qb);
            let sum: i32 = blk.qs.iter().map(|&q| q as i32).sum();
            let s = blk.s.to_f32();
            let approx = blk.d.to_f32() * sum as f32;
            assert!(
                (s - approx).abs() <= 1e-3 * approx.abs() + 1e-6,
                "s {s} vs {approx}"
            );
        }
    }

    #[test]
    fn activation_quantizers_agree_on_every_backend() {
        let mut rng = Rng::new(18);
        let mut x = rng.normals(32 * 64, 1.0);
        x.extend(rng.normals(32 * 4, 1e-30));
        x.extend(synthetic(32 * 8, 2.0));
        x.extend([0.0; 32]);
        let mut tiny = [0f32; 32];
        tiny[3] = 3e-38;
        x.extend(tiny);
        let mut ties: Vec<f32> = (0..32).map(|i| 15.5 - i as f32).collect();
        ties[31] = -127.0;
        x.extend(ties);
        let mut inf = rng.normals(32, 1.0);
        inf[0] = -f32::INFINITY;
        x.extend(inf);
        check_act_backends(select_act, &x, "q8_1 act");
    }

    #[test]
    fn dequantize_round_trip() {
        let x = synthetic(64, 0.0);
        let mut q = vec![0u8; 2 * 36];
        quantize_row_q8_1(&x, &mut q);
        let mut y = vec![0f32; 64];
        dequantize_row_q8_1(&q, &mut y);
        assert!(rmse(&x, &y) < MAX_QUANTIZATION_TOTAL_ERROR);
    }
}
