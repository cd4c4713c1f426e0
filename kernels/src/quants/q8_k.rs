//! Q8_K: ggml's 8-bit activation format for the K-quants (Q2_K … Q6_K) and IQ4_XS.
//!
//! A super-block holds 256 values as `i8` with one `f32` scale and the sums of
//! each group of 16 quants (`bsums`), which the weight kernels use to apply the
//! K-quants' per-sub-block minimums (and Q6_K's −32 offset) without touching
//! the quants again.
//!
//! Quantization follows ggml's `quantize_row_q8_K_ref`, which is also what
//! ggml's x86 CPU backend runs for activations (`quantize_row_q8_K` there is a
//! plain call to the reference):
//!
//! - `max` = the value of largest magnitude (the first one, on ties), signed;
//! - `iscale = -127 / max`, `qs[j] = min(127, nearest_int(iscale * x[j]))`,
//!   where `nearest_int` rounds half to even (ggml's `+ 1.5·2²³` trick);
//! - `d = 1 / iscale`; `bsums[g] = Σ qs[16g .. 16g+16]`;
//! - an all-zero block is `d = 0`, all quants and sums 0 (ggml leaves `bsums`
//!   unset there; zero is the only value consistent with the quants).
//!
//! Quants are therefore in −127..=127. The weight kernels do not rely on that:
//! they are exact for any `i8`, −128 included.
//!
//! Every backend here performs the same f32 operations in the same order, so
//! all of them produce bit-identical blocks (tests check it), identical to
//! llama.cpp's on x86 — the platform the reference logits come from.
//!
//! This module also holds the small helpers the K-quant weight kernels share
//! (reading Q8_K fields from the activation bytes, horizontal sums).

use crate::dispatch::{ActKernels, Backend};
use crate::types::GgmlType;

/// Elements in a K-quant super-block (ggml's `QK_K`).
pub const QK_K: usize = 256;

/// Q8_K super-block, as in ggml-common.h.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_K {
    /// delta
    pub d: f32,
    /// quants
    pub qs: [i8; QK_K],
    /// sum of quants in groups of 16
    pub bsums: [i16; QK_K / 16],
}

/// Bytes of one [`BlockQ8_K`].
pub const BLOCK_Q8_K_BYTES: usize = 292;
const _: () = assert!(std::mem::size_of::<BlockQ8_K>() == BLOCK_Q8_K_BYTES);
const _: () = assert!(BLOCK_Q8_K_BYTES == 4 + QK_K + QK_K / 16 * 2);

/// Byte offset of `qs` inside a block.
pub(crate) const Q8K_QS: usize = 4;
/// Byte offset of `bsums` inside a block.
pub(crate) const Q8K_BSUMS: usize = 4 + QK_K;

/// ggml's `nearest_int`: round to nearest, ties to even, by adding 1.5·2²³ and
/// reading the mantissa. Exact for |x| ≤ 4194303; bit-for-bit what ggml does
/// for any input (NaN gives 0).
#[inline(always)]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Quantizes one super-block of 256 values (the reference every SIMD version
/// must reproduce bit for bit).
#[allow(non_snake_case)]
pub fn quantize_block_q8_K(x: &[f32; QK_K]) -> BlockQ8_K {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    let mut y: BlockQ8_K = bytemuck::Zeroable::zeroed();
    if amax == 0.0 {
        return y;
    }
    let iscale = -127.0 / max;
    for (q, &v) in y.qs.iter_mut().zip(x) {
        // `as i8` keeps the low byte, as C's int → int8_t conversion does.
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, g) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
        *s = g.iter().map(|&q| q as i16).sum();
    }
    y.d = 1.0 / iscale;
    y
}

/// Panics unless `x` is whole super-blocks and `y` can hold them.
#[inline]
fn check_quantize(x: &[f32], y: &[u8]) -> usize {
    assert!(
        x.len().is_multiple_of(QK_K),
        "quantize_row_q8_K: {} values is not a multiple of {QK_K}",
        x.len()
    );
    let nb = x.len() / QK_K;
    assert!(
        y.len() >= nb * BLOCK_Q8_K_BYTES,
        "quantize_row_q8_K: output holds {} bytes, {} blocks need {}",
        y.len(),
        nb,
        nb * BLOCK_Q8_K_BYTES
    );
    nb
}

/// Quantizes `x` (a multiple of 256 values) into Q8_K blocks in `y`
/// (`x.len() / 256 * 292` bytes). Scalar reference.
#[allow(non_snake_case)]
pub fn quantize_row_q8_K(x: &[f32], y: &mut [u8]) {
    let nb = check_quantize(x, y);
    let xs: &[[f32; QK_K]] = bytemuck::cast_slice(&x[..nb * QK_K]);
    for (xb, yb) in xs.iter().zip(y.chunks_exact_mut(BLOCK_Q8_K_BYTES)) {
        yb.copy_from_slice(bytemuck::bytes_of(&quantize_block_q8_K(xb)));
    }
}

/// `y[i] = d * qs[i]` for Q8_K blocks in `x` (for tests and debugging; ggml's
/// `dequantize_row_q8_K`).
#[allow(non_snake_case)]
pub fn dequantize_row_q8_K(x: &[u8], y: &mut [f32]) {
    assert!(
        y.len().is_multiple_of(QK_K),
        "dequantize_row_q8_K: {} values",
        y.len()
    );
    let nb = y.len() / QK_K;
    assert!(
        x.len() >= nb * BLOCK_Q8_K_BYTES,
        "dequantize_row_q8_K: input too short"
    );
    for (xb, yb) in x
        .chunks_exact(BLOCK_Q8_K_BYTES)
        .zip(y.chunks_exact_mut(QK_K))
    {
        let b: BlockQ8_K = bytemuck::pod_read_unaligned(xb);
        for (o, &q) in yb.iter_mut().zip(&b.qs) {
            *o = b.d * q as f32;
        }
    }
}

/// Reads block `i` of a Q8_K row (any alignment).
#[inline(always)]
pub(crate) fn read_block(a: &[u8], i: usize) -> BlockQ8_K {
    bytemuck::pod_read_unaligned(&a[i * BLOCK_Q8_K_BYTES..(i + 1) * BLOCK_Q8_K_BYTES])
}

/// Checks a K-quant dot product's operands: `n` is whole super-blocks, the
/// weight row has `n / 256` blocks of `block_bytes`, the activation row as
/// many Q8_K blocks. Returns the block count. A violation is a bug in the
/// caller (the runtime validates tensor shapes at load), reported by panic —
/// the SIMD kernels' memory safety rests on these checks.
#[inline]
pub(crate) fn check_dot(fmt: &str, n: usize, w: &[u8], block_bytes: usize, a: &[u8]) -> usize {
    assert!(
        n.is_multiple_of(QK_K),
        "vec_dot_{fmt}_q8_K: n = {n} is not a multiple of {QK_K}"
    );
    let nb = n / QK_K;
    assert!(
        w.len() >= nb * block_bytes,
        "vec_dot_{fmt}_q8_K: weight row has {} bytes, {nb} blocks need {}",
        w.len(),
        nb * block_bytes
    );
    assert!(
        a.len() >= nb * BLOCK_Q8_K_BYTES,
        "vec_dot_{fmt}_q8_K: activation row has {} bytes, {nb} Q8_K blocks need {}",
        a.len(),
        nb * BLOCK_Q8_K_BYTES
    );
    nb
}

/// Checks a K-quant gemv's operands (see [`check_dot`]) for `rows` rows of
/// `row_bytes` each.
#[inline]
pub(crate) fn check_gemv(
    fmt: &str,
    n: usize,
    w: &[u8],
    row_bytes: usize,
    block_bytes: usize,
    a: &[u8],
    rows: usize,
) -> usize {
    let nb = check_dot(fmt, n, &[], 0, a);
    assert!(
        row_bytes >= nb * block_bytes,
        "gemv_{fmt}_q8_K: row stride {row_bytes} is shorter than a row ({} bytes)",
        nb * block_bytes
    );
    if rows > 0 {
        assert!(
            w.len() >= (rows - 1) * row_bytes + nb * block_bytes,
            "gemv_{fmt}_q8_K: {} bytes of weights cannot hold {rows} rows of {row_bytes}",
            w.len()
        );
    }
    nb
}

/// The safe kernel-table entries of a K-quant format whose SIMD modules
/// (`avx2`, `avx512`, `neon`, `dotprod`) each define `dot_rows::<R>` and
/// `gemv`: `avx2_vec_dot`, `avx2_gemv`, … .
///
/// SAFETY (of every entry): the format's `select` installs an entry only for
/// its own backend, and `Kernels` is built only after
/// `CpuFeatures::supports(backend)` confirmed the CPU features the `unsafe fn`
/// enables; `check_dot`/`check_gemv` proved that every row holds `nb` blocks
/// and the activation `nb` Q8_K blocks, which is all the kernels read.
macro_rules! k_entries {
    ($fmt:literal, $block_bytes:expr) => {
        $crate::quants::q8_k::k_entries!(@one $fmt, $block_bytes, "x86_64", avx2, avx2_vec_dot, avx2_gemv);
        $crate::quants::q8_k::k_entries!(@one $fmt, $block_bytes, "x86_64", avx512, avx512_vec_dot, avx512_gemv);
        $crate::quants::q8_k::k_entries!(@one $fmt, $block_bytes, "aarch64", neon, neon_vec_dot, neon_gemv);
        $crate::quants::q8_k::k_entries!(@one $fmt, $block_bytes, "aarch64", dotprod, dotprod_vec_dot, dotprod_gemv);
    };
    ($fmt:literal, $block_bytes:expr, no_avx512) => {
        $crate::quants::q8_k::k_entries!(@one $fmt, $block_bytes, "x86_64", avx2, avx2_vec_dot, avx2_gemv);
        $crate::quants::q8_k::k_entries!(@one $fmt, $block_bytes, "aarch64", neon, neon_vec_dot, neon_gemv);
        $crate::quants::q8_k::k_entries!(@one $fmt, $block_bytes, "aarch64", dotprod, dotprod_vec_dot, dotprod_gemv);
    };
    (@one $fmt:literal, $block_bytes:expr, $arch:literal, $m:ident, $dot:ident, $gemv:ident) => {
        #[cfg(target_arch = $arch)]
        fn $dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let nb = $crate::quants::q8_k::check_dot($fmt, n, w, $block_bytes, a);
            // SAFETY: see `k_entries!`.
            unsafe { $m::dot_rows::<1>(nb, w.as_ptr(), 0, a.as_ptr())[0] }
        }
        #[cfg(target_arch = $arch)]
        fn $gemv(n: usize, w: &[u8], row_bytes: usize, a: &[u8], out: &mut [f32]) {
            let nb =
                $crate::quants::q8_k::check_gemv($fmt, n, w, row_bytes, $block_bytes, a, out.len());
            // SAFETY: see `k_entries!`.
            unsafe { $m::gemv(nb, w.as_ptr(), row_bytes, a.as_ptr(), out) }
        }
    };
}
pub(crate) use k_entries;

/// Rows per multi-row kernel call in `gemv` (see `gemv_in_groups!`).
///
/// Measured on x86 (AMD EPYC, single thread, 4096-wide rows): 2 or 4 rows
/// sharing the activation loads are never faster from L3, and from DRAM they
/// fall to 4–8 GB/s against 18–20 GB/s for one row at a time — interleaved
/// row streams defeat the hardware prefetcher. ggml's CPU kernels are
/// single-row too. The kernels stay generic over the row count so that a
/// board where it pays can use it; re-measure on the Pis.
pub(crate) const GEMV_ROWS: usize = 1;

/// Defines `gemv` in a SIMD module from its `dot_rows::<R>`: `out[r] = dot(row
/// r)` in groups of `$rows` rows sharing the activation loads, then one row at
/// a time.
macro_rules! gemv_in_groups {
    ($feat:literal) => {
        $crate::quants::q8_k::gemv_in_groups!($feat, { $crate::quants::q8_k::GEMV_ROWS });
    };
    ($feat:literal, $rows:expr) => {
        /// # Safety
        /// CPU features as enabled; `w` holds `out.len()` rows of `row_bytes`
        /// (each ≥ `nb` blocks) and `a` holds `nb` Q8_K blocks.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn gemv(
            nb: usize,
            w: *const u8,
            row_bytes: usize,
            a: *const u8,
            out: &mut [f32],
        ) {
            let mut chunks = out.chunks_exact_mut($rows);
            let mut r = 0;
            for o in &mut chunks {
                o.copy_from_slice(&dot_rows::<{ $rows }>(
                    nb,
                    w.add(r * row_bytes),
                    row_bytes,
                    a,
                ));
                r += $rows;
            }
            for o in chunks.into_remainder() {
                *o = dot_rows::<1>(nb, w.add(r * row_bytes), row_bytes, a)[0];
                r += 1;
            }
        }
    };
}
pub(crate) use gemv_in_groups;

/// A unit test that runs a format's multi-row kernels (`dot_rows::<3>`) on
/// every backend this CPU has and compares each row with the scalar
/// `vec_dot` (`gemv` runs one row at a time, see [`GEMV_ROWS`], so this keeps
/// the multi-row code checked).
#[cfg(test)]
macro_rules! multirow_test {
    ($bb:expr, $rand:ident, x86: [$($xm:ident => $xb:ident),*], arm: [$($am:ident => $ab:ident),*]) => {
        #[test]
        fn multi_row_kernels_match_single_row() {
            use crate::testutil::{abs_dot_f64, assert_close, backends, quantize, Rng, SIMD_REL_BUDGET};
            let mut rng = Rng::new(99);
            let (nb, rows) = (3usize, 3usize);
            let w = $rand(&mut rng, rows * nb);
            let x = rng.normals(nb * QK_K, 1.0);
            let a = quantize(&$crate::quants::q8_k::select_act(Backend::Scalar), &x);
            let row_bytes = nb * $bb;
            let scalar = select(Backend::Scalar);
            for b in backends() {
                #[allow(unused_mut)]
                let mut got: Option<[f32; 3]> = None;
                $(
                    #[cfg(target_arch = "x86_64")]
                    if b == Backend::$xb {
                        // SAFETY: `backends()` lists only what this CPU runs;
                        // `w` holds 3 rows of `nb` blocks, `a` `nb` Q8_K blocks.
                        got = Some(unsafe { super::$xm::dot_rows::<3>(nb, w.as_ptr(), row_bytes, a.as_ptr()) });
                    }
                )*
                $(
                    #[cfg(target_arch = "aarch64")]
                    if b == Backend::$ab {
                        // SAFETY: as above.
                        got = Some(unsafe { super::$am::dot_rows::<3>(nb, w.as_ptr(), row_bytes, a.as_ptr()) });
                    }
                )*
                let Some(got) = got else { continue };
                for r in 0..rows {
                    let row = &w[r * row_bytes..(r + 1) * row_bytes];
                    let want = (scalar.vec_dot)(nb * QK_K, row, &a) as f64;
                    let mut deq = vec![0f32; nb * QK_K];
                    (scalar.dequantize_row)(row, &mut deq);
                    let tol = SIMD_REL_BUDGET * abs_dot_f64(&deq, &x) + f64::from(f32::MIN_POSITIVE);
                    assert_close(&format!("{b} dot_rows::<3> row {r}"), got[r] as f64, want, tol);
                }
            }
        }
    };
}
#[cfg(test)]
pub(crate) use multirow_test;

/// Shared x86 helpers of the K-quant kernels.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use core::arch::x86_64::*;

    /// Sum of the 8 lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) unsafe fn hsum_ps(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Sum of the 4 lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) unsafe fn hsum_ps128(s: __m128) -> f32 {
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// The f16 at `p` (any alignment) as f32, by F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) unsafe fn f16_at(p: *const u8) -> f32 {
        let h = core::ptr::read_unaligned(p as *const u16);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
    }

    /// Q8_K block `i` of the row at `a`: (`d`, pointer to `qs`, pointer to `bsums`).
    #[inline(always)]
    pub(crate) unsafe fn q8k_block(a: *const u8, i: usize) -> (f32, *const u8, *const u8) {
        let b = a.add(i * super::BLOCK_Q8_K_BYTES);
        (
            core::ptr::read_unaligned(b as *const f32),
            b.add(super::Q8K_QS),
            b.add(super::Q8K_BSUMS),
        )
    }
}

/// Shared AArch64 helpers of the K-quant kernels.
#[cfg(target_arch = "aarch64")]
pub(crate) mod arm {
    use core::arch::aarch64::*;

    /// `acc + Σ` of each group of 4 `a·b` byte products (the `sdot`
    /// instruction; `vdotq_s32` is not stable in Rust yet).
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    pub(crate) unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        core::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack)
        );
        acc
    }

    /// Q8_K block `i` of the row at `a`: (`d`, pointer to `qs`, pointer to `bsums`).
    #[inline(always)]
    pub(crate) unsafe fn q8k_block(a: *const u8, i: usize) -> (f32, *const u8, *const u8) {
        let b = a.add(i * super::BLOCK_Q8_K_BYTES);
        (
            core::ptr::read_unaligned(b as *const f32),
            b.add(super::Q8K_QS),
            b.add(super::Q8K_BSUMS),
        )
    }

    /// `[Σa, Σb, Σc, Σd]`: the lane sums of four vectors (two rounds of
    /// pairwise adds), so that four groups' dot products meet their four
    /// scales in one multiply.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) unsafe fn hsum4(
        a: int32x4_t,
        b: int32x4_t,
        c: int32x4_t,
        d: int32x4_t,
    ) -> int32x4_t {
        vpaddq_s32(vpaddq_s32(a, b), vpaddq_s32(c, d))
    }

    /// The 16 `bsums` at `p` (any alignment).
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) unsafe fn load_bsums(p: *const u8) -> int16x8x2_t {
        int16x8x2_t(
            vreinterpretq_s16_u8(vld1q_u8(p)),
            vreinterpretq_s16_u8(vld1q_u8(p.add(16))),
        )
    }

    /// The f16 at `p` (any alignment) as f32, by the ARMv8.0 `fcvt` (the
    /// `half` crate's conversion checks CPU features at every call).
    #[inline(always)]
    pub(crate) unsafe fn f16_at(p: *const u8) -> f32 {
        crate::f16conv::neon::h2f(core::ptr::read_unaligned(p as *const u16))
    }
}

/// The activation quantizer for `level` (all paths give identical bytes).
pub(crate) fn select_act(level: Backend) -> ActKernels {
    let scalar = ActKernels {
        act: GgmlType::Q8_K,
        quantize_row: quantize_row_q8_K,
        path: Backend::Scalar,
    };
    match level {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 | Backend::Avx512 => ActKernels {
            quantize_row: avx2_quantize_row,
            path: Backend::Avx2,
            ..scalar
        },
        #[cfg(target_arch = "aarch64")]
        Backend::Neon | Backend::Dotprod => ActKernels {
            quantize_row: neon_quantize_row,
            path: Backend::Neon,
            ..scalar
        },
        _ => scalar,
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_quantize_row(x: &[f32], y: &mut [u8]) {
    let nb = check_quantize(x, y);
    // SAFETY: `select_act` installs this only for Avx2/Avx512, and the kernel
    // table is built only after `CpuFeatures::supports` confirmed AVX2+FMA+F16C;
    // `check_quantize` proved `x` holds `nb` blocks and `y` their bytes.
    unsafe { avx2::quantize_row(x.as_ptr(), y.as_mut_ptr(), nb) }
}

#[cfg(target_arch = "aarch64")]
fn neon_quantize_row(x: &[f32], y: &mut [u8]) {
    let nb = check_quantize(x, y);
    // SAFETY: NEON is part of the aarch64 base ISA and this is installed only
    // for the Neon/Dotprod levels; `check_quantize` proved the sizes.
    unsafe { neon::quantize_row(x.as_ptr(), y.as_mut_ptr(), nb) }
}

/// Shared tail of the SIMD quantizers: given `amax` (the largest |x|, NaNs
/// ignored), the signed value it came from — the first such element, as the
/// scalar loop picks it.
#[inline(always)]
fn signed_max(x: &[f32; QK_K], amax: f32) -> f32 {
    x.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0)
}

/// Finishes a block whose quants are written: bsums and `d`.
#[inline(always)]
fn finish_block(blk: &mut BlockQ8_K, iscale: f32) {
    for (s, g) in blk.bsums.iter_mut().zip(blk.qs.chunks_exact(16)) {
        *s = g.iter().map(|&q| q as i16).sum();
    }
    blk.d = 1.0 / iscale;
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use core::arch::x86_64::*;

    /// Quantizes `nb` blocks from `x` into `y` (`nb * 292` bytes).
    ///
    /// # Safety
    /// The CPU must have AVX2; `x` must hold `nb * 256` floats and `y`
    /// `nb * 292` bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn quantize_row(x: *const f32, y: *mut u8, nb: usize) {
        let sign = _mm256_set1_ps(-0.0);
        let magic = _mm256_set1_ps(12_582_912.0);
        let mant = _mm256_set1_epi32(0x007f_ffff);
        let bias = _mm256_set1_epi32(0x0040_0000);
        let max127 = _mm256_set1_epi32(127);
        let low_byte = _mm256_set1_epi32(0xff);
        let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for i in 0..nb {
            let xb = x.add(i * QK_K);
            // amax: `max(|v|, acc)` returns acc when |v| is NaN, so NaNs are
            // skipped exactly as the scalar `ax > amax` skips them.
            let mut m = _mm256_setzero_ps();
            for k in 0..QK_K / 8 {
                let v = _mm256_andnot_ps(sign, _mm256_loadu_ps(xb.add(8 * k)));
                m = _mm256_max_ps(v, m);
            }
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), m);
            let amax = lanes
                .iter()
                .copied()
                .fold(0.0f32, |a, b| if b > a { b } else { a });
            let xs = &*(xb as *const [f32; QK_K]);
            let mut blk: BlockQ8_K = bytemuck::Zeroable::zeroed();
            if amax != 0.0 {
                let iscale = -127.0 / signed_max(xs, amax);
                let vs = _mm256_set1_ps(iscale);
                for k in 0..QK_K / 32 {
                    let mut q = [_mm256_setzero_si256(); 4];
                    for (t, qt) in q.iter_mut().enumerate() {
                        let v = _mm256_mul_ps(vs, _mm256_loadu_ps(xb.add(32 * k + 8 * t)));
                        // nearest_int: same f32 add, same bits as the scalar trick.
                        let r = _mm256_castps_si256(_mm256_add_ps(v, magic));
                        let r = _mm256_sub_epi32(_mm256_and_si256(r, mant), bias);
                        // min(127, v), then keep the low byte like `as i8`.
                        *qt = _mm256_and_si256(_mm256_min_epi32(r, max127), low_byte);
                    }
                    // Pack 32 x u32 (each ≤ 255) → 32 x u8, restoring order.
                    let a = _mm256_packus_epi32(q[0], q[1]);
                    let b = _mm256_packus_epi32(q[2], q[3]);
                    let p = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b), perm);
                    _mm256_storeu_si256(blk.qs.as_mut_ptr().add(32 * k) as *mut __m256i, p);
                }
                finish_block(&mut blk, iscale);
            }
            core::ptr::copy_nonoverlapping(
                bytemuck::bytes_of(&blk).as_ptr(),
                y.add(i * BLOCK_Q8_K_BYTES),
                BLOCK_Q8_K_BYTES,
            );
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::*;
    use core::arch::aarch64::*;

    /// Quantizes `nb` blocks from `x` into `y` (`nb * 292` bytes).
    ///
    /// # Safety
    /// `x` must hold `nb * 256` floats and `y` `nb * 292` bytes.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn quantize_row(x: *const f32, y: *mut u8, nb: usize) {
        let magic = vdupq_n_f32(12_582_912.0);
        let mant = vdupq_n_u32(0x007f_ffff);
        let bias = vdupq_n_s32(0x0040_0000);
        let max127 = vdupq_n_s32(127);
        for i in 0..nb {
            let xb = x.add(i * QK_K);
            // vmaxnm returns the number when the other operand is a quiet NaN:
            // NaNs are skipped, as in the scalar loop.
            let mut m = vdupq_n_f32(0.0);
            for k in 0..QK_K / 4 {
                m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(xb.add(4 * k))));
            }
            let amax = vmaxnmvq_f32(m);
            let xs = &*(xb as *const [f32; QK_K]);
            let mut blk: BlockQ8_K = bytemuck::Zeroable::zeroed();
            if amax != 0.0 {
                let iscale = -127.0 / signed_max(xs, amax);
                let vs = vdupq_n_f32(iscale);
                for k in 0..QK_K / 8 {
                    let mut h = [vdup_n_s16(0); 2];
                    for (t, ht) in h.iter_mut().enumerate() {
                        let v = vmulq_f32(vs, vld1q_f32(xb.add(8 * k + 4 * t)));
                        let r = vreinterpretq_u32_f32(vaddq_f32(v, magic));
                        let r = vsubq_s32(vreinterpretq_s32_u32(vandq_u32(r, mant)), bias);
                        // min(127, v); the truncating narrows keep the low byte.
                        *ht = vmovn_s32(vminq_s32(r, max127));
                    }
                    let q = vmovn_s16(vcombine_s16(h[0], h[1]));
                    vst1_s8(blk.qs.as_mut_ptr().add(8 * k), q);
                }
                finish_block(&mut blk, iscale);
            }
            core::ptr::copy_nonoverlapping(
                bytemuck::bytes_of(&blk).as_ptr(),
                y.add(i * BLOCK_Q8_K_BYTES),
                BLOCK_Q8_K_BYTES,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_act_backends, quantize, synthetic, Rng};

    fn quantize_with(level: Backend, x: &[f32]) -> Vec<u8> {
        quantize(&select_act(level), x)
    }

    #[test]
    fn block_layout() {
        assert_eq!(BLOCK_Q8_K_BYTES, GgmlType::Q8_K.block_bytes());
        assert_eq!(QK_K, GgmlType::Q8_K.block_elems());
        let b: BlockQ8_K = bytemuck::Zeroable::zeroed();
        let base = &b as *const _ as usize;
        assert_eq!(b.qs.as_ptr() as usize - base, Q8K_QS);
        assert_eq!(b.bsums.as_ptr() as usize - base, Q8K_BSUMS);
    }

    #[test]
    fn reference_semantics() {
        // Largest magnitude is negative: iscale = -127/max > 0, so it maps to -127.
        let mut x = [0.0f32; QK_K];
        x[3] = -2.0;
        x[4] = 1.0;
        x[5] = 2.0; // same magnitude later: the first (-2) wins
        let b = quantize_block_q8_K(&x);
        assert_eq!(b.qs[3], -127);
        assert_eq!(b.qs[5], 127);
        assert_eq!(b.qs[4], 64); // 63.5 rounds half to even
        assert_eq!(b.d, 1.0 / (127.0 / 2.0));
        assert_eq!(b.bsums[0], 64);
        // A tie exactly at .5 rounds to even.
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(3.5), 4);
        // All zeros.
        let z = quantize_block_q8_K(&[0.0; QK_K]);
        assert_eq!(z.d, 0.0);
        assert!(z.qs.iter().all(|&q| q == 0) && z.bsums.iter().all(|&s| s == 0));
    }

    fn inputs() -> Vec<Vec<f32>> {
        let mut rng = Rng::new(7);
        let mut rows = Vec::new();
        rows.push(synthetic(QK_K * 4, 0.0));
        rows.push(rng.f32s(QK_K * 3, -10.0, 10.0));
        rows.push(rng.normals(QK_K * 2, 0.3));
        // Ties: values that land exactly on .5 after scaling (max = 127).
        let mut t: Vec<f32> = (0..QK_K).map(|i| (i as f32 - 128.0) * 0.5).collect();
        t[0] = -127.0;
        rows.push(t);
        // One all-zero block between others, a single outlier, tiny values, negatives.
        let mut z = synthetic(QK_K * 3, 1.0);
        z[QK_K..2 * QK_K].fill(0.0);
        z[2 * QK_K + 17] = 1e4;
        rows.push(z);
        rows.push((0..QK_K).map(|i| (i as f32 + 1.0) * 1e-30).collect());
        rows.push((0..QK_K).map(|i| -1.0 - i as f32).collect());
        // Equal magnitudes of both signs: the first decides the sign of d.
        rows.push(
            (0..QK_K)
                .map(|i| if i % 2 == 0 { 3.0 } else { -3.0 })
                .collect(),
        );
        rows.push(
            (0..QK_K)
                .map(|i| if i % 2 == 0 { -3.0 } else { 3.0 })
                .collect(),
        );
        rows
    }

    #[test]
    fn every_backend_is_bit_identical() {
        for (i, x) in inputs().iter().enumerate() {
            check_act_backends(select_act, x, &format!("Q8_K input {i}"));
        }
    }

    #[test]
    fn reference_is_close_to_input() {
        let x = synthetic(QK_K * 2, 0.0);
        let q = quantize_with(Backend::Scalar, &x);
        let mut y = vec![0.0; x.len()];
        dequantize_row_q8_K(&q, &mut y);
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= amax / 127.0 * 0.5 * 1.0001, "{a} vs {b}");
        }
        for i in 0..2 {
            let b = read_block(&q, i);
            for g in 0..16 {
                let s: i32 = b.qs[16 * g..16 * g + 16].iter().map(|&v| v as i32).sum();
                assert_eq!(s, b.bsums[g] as i32);
            }
            assert!(b.qs.iter().all(|&v| v >= -127));
        }
    }
}
