//! Q8_0: 32 signed bytes and one f16 scale per block (`x = d * q`).
//!
//! Q8_0 is both a weight format (whole tensors in Gemma 3 files, the odd
//! tensor of a Q4_K_M file) and the activation format of Q4_0, Q5_0, Q8_0 and
//! IQ4_NL weights: the input row of a matmul is quantized to Q8_0 once, then
//! every weight row is dotted with it in integer arithmetic, one f32 scale
//! product per block.
//!
//! This file also holds the pieces every "32-element block × Q8_0/Q8_1"
//! kernel shares: the bounds checks of the `vec_dot`/`gemv` contract, the
//! multi-row `gemv` driver, and the per-architecture integer dot helpers.
//!
//! Activations are quantized with **x86 ggml's arithmetic on every backend**
//! (`d = amax/127`, `id = 127/amax`, round half to even, x86 float→int
//! conversion rules), so all paths produce the same bytes and match the
//! activations of llama.cpp's x86 CPU backend. Weight files are written by
//! ggml's other, reference quantizer ([`quantize_row_q8_0_ref`]: `id = 1/d`,
//! round half away from zero).

use crate::dispatch::{ActKernels, Backend, FormatKernels};
use crate::quants::{gemv_rows, VecDot};
use crate::types::GgmlType;
use half::f16;

/// Elements per block.
pub const QK8_0: usize = 32;

/// ggml's `block_q8_0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_0 {
    /// delta
    pub d: f16,
    /// quants
    pub qs: [i8; QK8_0],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const BLOCK_BYTES: usize = std::mem::size_of::<BlockQ8_0>();

// ------------------------------------------------------- shared plumbing --

/// Blocks of type `B` read from `bytes` (any alignment), in order; a partial
/// trailing block is ignored.
#[inline(always)]
pub(crate) fn read_blocks<B: bytemuck::Pod>(bytes: &[u8]) -> impl Iterator<Item = B> + '_ {
    bytes
        .chunks_exact(std::mem::size_of::<B>())
        .map(bytemuck::pod_read_unaligned::<B>)
}

/// Checks the [`crate::dispatch::VecDotFn`] contract for weights of type
/// `wt` against activations of type `at` and returns the number of weight
/// blocks. A violation is a bug in the caller (the model code sizes every
/// buffer from validated tensor shapes), so it panics with the sizes.
#[track_caller]
pub(crate) fn check_vec_dot(wt: GgmlType, at: GgmlType, n: usize, w: &[u8], a: &[u8]) -> usize {
    let (Some(wb), Some(ab)) = (wt.row_bytes(n), at.row_bytes(n)) else {
        panic!("{wt}·{at} vec_dot: n = {n} is not a whole number of blocks");
    };
    assert!(
        w.len() >= wb && a.len() >= ab,
        "{wt}·{at} vec_dot of {n} values: weights {} bytes (need {wb}), activations {} bytes (need {ab})",
        w.len(),
        a.len()
    );
    n / wt.block_elems()
}

/// Checks the [`crate::dispatch::GemvFn`] contract (`rows` rows of `n` values,
/// `row_bytes` apart) and returns the number of blocks per row.
#[track_caller]
pub(crate) fn check_gemv(
    wt: GgmlType,
    at: GgmlType,
    n: usize,
    w: &[u8],
    row_bytes: usize,
    a: &[u8],
    rows: usize,
) -> usize {
    let nb = check_vec_dot(wt, at, n, w, a);
    let need_row = nb * wt.block_bytes();
    let need = match rows {
        0 => Some(0),
        _ => (rows - 1)
            .checked_mul(row_bytes)
            .and_then(|b| b.checked_add(need_row)),
    };
    assert!(
        row_bytes >= need_row && need.is_some_and(|need| w.len() >= need),
        "{wt} gemv of {rows} rows × {n}: row stride {row_bytes} (row needs {need_row}), weights {} bytes",
        w.len()
    );
    nb
}

/// A SIMD kernel computing the dot products of `R` weight rows (row `r`
/// starting at `w + r * row_bytes`) with one activation row `a`, `nb` blocks
/// each.
///
/// # Safety
/// The pointers must be valid for those reads, and the CPU must support the
/// kernel's target features.
pub(crate) type RowsKernel<const R: usize> =
    unsafe fn(nb: usize, w: *const u8, row_bytes: usize, a: *const u8) -> [f32; R];

/// `out[r]` = dot of row `r` with `a`, four rows at a time through `k4` (the
/// activation blocks are loaded once for the four), the rest through `k1`.
///
/// # Safety
/// `check_gemv` must have accepted the shapes (`nb` blocks per row,
/// `out.len()` rows), and the CPU must support the kernels' target features.
#[inline]
pub(crate) unsafe fn run_gemv(
    nb: usize,
    w: &[u8],
    row_bytes: usize,
    a: &[u8],
    out: &mut [f32],
    k4: RowsKernel<4>,
    k1: RowsKernel<1>,
) {
    let rows = out.len();
    let mut r = 0;
    while r + 4 <= rows {
        // SAFETY: rows r..r+4 lie inside w (checked by check_gemv); CPU per the caller.
        let v = unsafe { k4(nb, w.as_ptr().add(r * row_bytes), row_bytes, a.as_ptr()) };
        out[r..r + 4].copy_from_slice(&v);
        r += 4;
    }
    while r < rows {
        // SAFETY: as above, one row.
        out[r] = unsafe { k1(nb, w.as_ptr().add(r * row_bytes), row_bytes, a.as_ptr()) }[0];
        r += 1;
    }
}

/// Bytes the multi-row kernels prefetch ahead, at least: the lines a group
/// of rows will read this far on.
///
/// The kernels walk a group of rows in lockstep, which the hardware
/// prefetcher does not follow, so they prefetch the same offset of a later
/// group. One group on is far enough for long rows (4 rows of 4096 Q8_0
/// values are 17 KiB) but not for short ones: Gemma 3's output matrix has
/// 640-value rows, a group of 2.7 KiB, and one group on is read before the
/// line arrives. Measured on x86 (gemma3:270m decode): 2 groups on instead of
/// one made decode 1.27× faster on 2 threads, 1.38× on one; 2, 3, 4 or 6
/// groups on (5–16 KiB) were within 2.5% of each other.
const PREFETCH_DISTANCE: usize = 8 << 10;

/// The prefetch offset of a group of `rows` rows `row_bytes` apart: the same
/// place in the first later group at least [`PREFETCH_DISTANCE`] bytes on,
/// plus 512 bytes (the prefetcher is ahead of the loads within a row too).
#[inline]
pub(crate) fn prefetch_ahead(rows: usize, row_bytes: usize) -> usize {
    let group = (rows * row_bytes).max(1);
    PREFETCH_DISTANCE.div_ceil(group) * group + 512
}

/// The little-endian u16 at `p` (an f16 scale field).
///
/// # Safety
/// `p` must be valid for reading 2 bytes.
#[inline(always)]
pub(crate) unsafe fn read_u16(p: *const u8) -> u16 {
    // SAFETY: per the caller; read_unaligned has no alignment need.
    u16::from_le(unsafe { (p as *const u16).read_unaligned() })
}

/// Defines the safe table entries `$vec_dot` and `$gemv` of weight type `$wt`
/// (activations `$at`) around module `$m`'s `dot_rows::<R>` SIMD kernel.
macro_rules! simd_entries {
    ($wt:expr, $at:expr, $vec_dot:ident, $gemv:ident, $m:ident) => {
        fn $vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let nb = $crate::quants::q8_0::check_vec_dot($wt, $at, n, w, a);
            // SAFETY: `select` installs this only for a backend at or above the
            // module's, and `Kernels` only builds tables for backends the CPU
            // supports; the bounds were checked just above.
            unsafe { $m::dot_rows::<1>(nb, w.as_ptr(), 0, a.as_ptr())[0] }
        }
        fn $gemv(n: usize, w: &[u8], row_bytes: usize, a: &[u8], out: &mut [f32]) {
            let nb = $crate::quants::q8_0::check_gemv($wt, $at, n, w, row_bytes, a, out.len());
            // SAFETY: as for vec_dot; check_gemv accepted the shapes.
            unsafe {
                $crate::quants::q8_0::run_gemv(
                    nb,
                    w,
                    row_bytes,
                    a,
                    out,
                    $m::dot_rows::<4>,
                    $m::dot_rows::<1>,
                )
            }
        }
    };
}
pub(crate) use simd_entries;

// ---------------------------------------------------------------- scalar --

/// `y[i] = d * qs[i]`.
pub fn dequantize_row_q8_0(x: &[u8], y: &mut [f32]) {
    assert!(
        y.len().is_multiple_of(QK8_0) && x.len() / BLOCK_BYTES >= y.len() / QK8_0,
        "dequantize_row_q8_0: {} bytes cannot give {} values",
        x.len(),
        y.len()
    );
    for (b, out) in read_blocks::<BlockQ8_0>(x).zip(y.chunks_exact_mut(QK8_0)) {
        let d = b.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

/// ggml's `quantize_row_q8_0_ref`, the quantizer of Q8_0 *files*:
/// `d = amax/127`, `id = 1/d`, `q = round(x·id)` half away from zero.
pub fn quantize_row_q8_0_ref(x: &[f32], y: &mut [u8]) {
    check_quantize("quantize_row_q8_0_ref", x, y, BLOCK_BYTES);
    for (xb, yb) in x.chunks_exact(QK8_0).zip(y.chunks_exact_mut(BLOCK_BYTES)) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut b = BlockQ8_0 {
            d: f16::from_f32(d),
            qs: [0; QK8_0],
        };
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
        }
        yb.copy_from_slice(bytemuck::bytes_of(&b));
    }
}

#[track_caller]
pub(crate) fn check_quantize(what: &str, x: &[f32], y: &[u8], block_bytes: usize) {
    assert!(
        x.len().is_multiple_of(QK8_0) && y.len() / block_bytes >= x.len() / QK8_0,
        "{what}: {} values (need a multiple of {QK8_0}) into {} bytes",
        x.len(),
        y.len()
    );
}

/// x86's `cvtps2dq` on an already rounded value: out of range and NaN give
/// `i32::MIN` ("integer indefinite").
#[inline(always)]
fn cvt_x86(v: f32) -> i32 {
    if v.is_nan() || v.abs() >= 2_147_483_648.0 {
        i32::MIN
    } else {
        v as i32
    }
}

/// One activation block quantized with x86 ggml's arithmetic: returns the f32
/// scale `d` (stored rounded to f16), the quants, and the sum of the quants as
/// x86 computes it for Q8_1 (the wrapping i32 sum of the converted values
/// before saturation to i8; it differs from the sum of the quants only in the
/// degenerate `amax < 127/f32::MAX` case).
#[inline]
pub(crate) fn quantize_block_x86(x: &[f32]) -> (f32, [i8; QK8_0], i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut qs = [0i8; QK8_0];
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        let i = cvt_x86((v * id).round_ties_even());
        sum = sum.wrapping_add(i);
        // packs_epi32 + packs_epi16: signed saturation to i8.
        *q = i.clamp(-128, 127) as i8;
    }
    (d, qs, sum)
}

/// Quantizes an activation row to Q8_0 exactly as x86 ggml's
/// `quantize_row_q8_0` does (`id = 127/amax`, round half to even). Every
/// backend's quantizer produces these bytes (for finite inputs).
pub fn quantize_row_q8_0(x: &[f32], y: &mut [u8]) {
    check_quantize("quantize_row_q8_0", x, y, BLOCK_BYTES);
    for (xb, yb) in x.chunks_exact(QK8_0).zip(y.chunks_exact_mut(BLOCK_BYTES)) {
        let (d, qs, _) = quantize_block_x86(xb);
        let b = BlockQ8_0 {
            d: f16::from_f32(d),
            qs,
        };
        yb.copy_from_slice(bytemuck::bytes_of(&b));
    }
}

/// `Σ x·y` of a Q8_0 weight row and a Q8_0 activation row: per block the
/// exact integer sum times `d_x·d_y` (ggml's `ggml_vec_dot_q8_0_q8_0`).
/// Activation quants are in `[-127, 127]` (as the quantizers make them).
pub fn vec_dot_q8_0_q8_0(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let nb = check_vec_dot(GgmlType::Q8_0, GgmlType::Q8_0, n, x, y);
    let xs = read_blocks::<BlockQ8_0>(x).take(nb);
    let ys = read_blocks::<BlockQ8_0>(y);
    let mut sumf = 0f32;
    for (bx, by) in xs.zip(ys) {
        let sumi: i32 = bx
            .qs
            .iter()
            .zip(&by.qs)
            .map(|(&a, &b)| a as i32 * b as i32)
            .sum();
        sumf += sumi as f32 * (bx.d.to_f32() * by.d.to_f32());
    }
    sumf
}

// ------------------------------------------------------------------- x86 --

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    //! AVX2 building blocks shared by the Q*_0/Q*_1/IQ4_NL kernels, and Q8_0's own.
    use super::{BLOCK_BYTES, QK8_0};
    use core::arch::x86_64::*;

    /// Sum of the 8 lanes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) fn hsum_ps(x: __m256) -> f32 {
        let r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
        let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
        let r = _mm_add_ss(r, _mm_movehdup_ps(r));
        _mm_cvtss_f32(r)
    }

    /// `Σ xᵢ·yᵢ` of signed bytes in 8 i32 lanes (each lane: 4 products) as f32.
    /// Exact when `y` has no -128 (`maddubs` then sums pairs of products of
    /// magnitude ≤ 128·127 in i16 without saturating).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) fn mul_sum_i8_ps(x: __m256i, y: __m256i) -> __m256 {
        // |x| as unsigned bytes, and y with x's sign: maddubs wants u8 × i8.
        let ax = _mm256_sign_epi8(x, x);
        let sy = _mm256_sign_epi8(y, x);
        mul_sum_u8_i8_ps(ax, sy)
    }

    /// `Σ uᵢ·yᵢ` with `u` unsigned bytes, `y` signed, as 8 f32 lanes (exact
    /// while `|u₀y₀ + u₁y₁| < 2¹⁵`).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) fn mul_sum_u8_i8_ps(u: __m256i, y: __m256i) -> __m256 {
        let dot = _mm256_maddubs_epi16(u, y);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(dot, _mm256_set1_epi16(1)))
    }

    /// 16 bytes of nibbles → 32 bytes in `0..16`: low nibbles first, then high
    /// (ggml's element order within a 4-bit block).
    ///
    /// # Safety
    /// `p` must be valid for reading 16 bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) unsafe fn nibbles_32(p: *const u8) -> __m256i {
        // SAFETY: per the caller; unaligned load.
        let t = unsafe { _mm_loadu_si128(p as *const __m128i) };
        let both = _mm256_set_m128i(_mm_srli_epi16::<4>(t), t);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
    }

    /// The 32 bits at `p` spread to 32 bytes: byte `i` is 0xFF if bit `i` is set.
    ///
    /// # Safety
    /// `p` must be valid for reading 4 bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) unsafe fn bits_32(p: *const u8) -> __m256i {
        // SAFETY: per the caller.
        let x = unsafe { (p as *const u32).read_unaligned() };
        // Byte i of the result takes byte i/8 of x…
        let shuf = _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x as i32), shuf);
        // …and is all-ones after OR-ing every bit but bit (i mod 8) iff that bit is set.
        let mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
        _mm256_cmpeq_epi8(_mm256_or_si256(bytes, mask), _mm256_set1_epi64x(-1))
    }

    /// Q8_0 blocks for the x86 driver (sign trick + `maddubs`).
    pub(crate) struct Q8_0;
    impl super::x86::BlockDot for Q8_0 {
        const W_BYTES: usize = BLOCK_BYTES;
        const A_BYTES: usize = BLOCK_BYTES;
        const A_QS: usize = 2;
        const HAS_MIN: bool = false;
        type Shared = ();
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn shared(_: __m256i) {}
        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn dot(wb: *const u8, y: __m256i, _: ()) -> __m256 {
            // SAFETY: per the trait contract.
            mul_sum_i8_ps(
                unsafe { _mm256_loadu_si256(wb.add(2) as *const __m256i) },
                y,
            )
        }
    }

    /// Q8_0 × Q8_0, `R` rows.
    ///
    /// # Safety
    /// See [`super::RowsKernel`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot_rows<const R: usize>(
        nb: usize,
        w: *const u8,
        row_bytes: usize,
        a: *const u8,
    ) -> [f32; R] {
        // SAFETY: per the caller.
        unsafe { super::x86::avx2::drive::<Q8_0, R>(nb, w, row_bytes, a) }
    }

    /// One block of x86 ggml's activation quantizer: returns the f32 `d` and
    /// the 8 i32 lanes of quant sums (for Q8_1), storing the quants at `qs`.
    ///
    /// # Safety
    /// `x` valid for reading 32 f32, `qs` for writing 32 bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) unsafe fn quantize_block(x: *const f32, qs: *mut u8) -> (f32, __m256i) {
        // SAFETY: per the caller.
        let (v0, v1, v2, v3) = unsafe {
            (
                _mm256_loadu_ps(x),
                _mm256_loadu_ps(x.add(8)),
                _mm256_loadu_ps(x.add(16)),
                _mm256_loadu_ps(x.add(24)),
            )
        };
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_andnot_ps(sign, v0);
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v1));
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v2));
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v3));
        let m4 = _mm_max_ps(_mm256_extractf128_ps::<1>(m), _mm256_castps256_ps128(m));
        let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        let amax = _mm_cvtss_f32(m4);
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        let i0 = _mm256_cvtps_epi32(_mm256_round_ps::<NEAREST>(_mm256_mul_ps(v0, id)));
        let i1 = _mm256_cvtps_epi32(_mm256_round_ps::<NEAREST>(_mm256_mul_ps(v1, id)));
        let i2 = _mm256_cvtps_epi32(_mm256_round_ps::<NEAREST>(_mm256_mul_ps(v2, id)));
        let i3 = _mm256_cvtps_epi32(_mm256_round_ps::<NEAREST>(_mm256_mul_ps(v3, id)));
        let sums = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        // i32 → i16 → i8 with signed saturation; the packs work per 128-bit half,
        // the permute restores element order.
        let p01 = _mm256_packs_epi32(i0, i1);
        let p23 = _mm256_packs_epi32(i2, i3);
        let p = _mm256_packs_epi16(p01, p23);
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: per the caller.
        unsafe { _mm256_storeu_si256(qs as *mut __m256i, p) };
        (d, sums)
    }

    /// Q8_0 activation row (x86 ggml's `quantize_row_q8_0`).
    ///
    /// # Safety
    /// AVX2/FMA/F16C; `x.len()` a multiple of 32, `y` holding `x.len()/32` blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn quantize_row(x: &[f32], y: &mut [u8]) {
        for (xb, yb) in x.chunks_exact(QK8_0).zip(y.chunks_exact_mut(BLOCK_BYTES)) {
            // SAFETY: xb has 32 floats, yb 34 bytes.
            let (d, _) = unsafe { quantize_block(xb.as_ptr(), yb.as_mut_ptr().add(2)) };
            yb[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    //! The multi-row block loop shared by every 32-element format's x86 kernels.
    //!
    //! A format supplies [`BlockDot`]: the integer dot product of one weight
    //! block with one activation block as 8 f32 lanes. The driver applies the
    //! scales (`d_x·d_y`, and `m_x·s_y` for the Q*_1 formats), keeps two
    //! accumulators per row (even and odd blocks, so that a single row is not
    //! bound by the latency of one FMA chain), and sums the lanes at the end.
    //! Scales are converted with a broadcast `vcvtph2ps`, which writes the whole
    //! register: a scalar conversion (`vpinsrw`) would merge into whatever
    //! register LLVM picks — in practice an accumulator — and chain every block
    //! to the previous one.
    use super::read_u16;
    use core::arch::x86_64::*;

    /// One format's block dot product for one x86 feature level.
    pub(crate) trait BlockDot {
        /// Bytes per weight block.
        const W_BYTES: usize;
        /// Bytes per activation block (34 for Q8_0, 36 for Q8_1).
        const A_BYTES: usize;
        /// Offset of the quants in the activation block.
        const A_QS: usize;
        /// Whether the weight block has an offset `m` (at byte 2) to be
        /// multiplied by the activation's `s` (at byte 2).
        const HAS_MIN: bool;
        /// Per-activation-block values shared by the rows (e.g. `-8·Σy`).
        type Shared: Copy;
        /// # Safety
        /// The CPU has the implementation's target features.
        unsafe fn shared(y: __m256i) -> Self::Shared;
        /// `Σ q·y` of the weight block at `wb` as 8 f32 lanes (exact integers).
        ///
        /// # Safety
        /// `wb` valid for reading `W_BYTES`; the CPU has the target features.
        unsafe fn dot(wb: *const u8, y: __m256i, s: Self::Shared) -> __m256;
    }

    /// A nibble format whose two halves (elements 0–15 and 16–31 of a block)
    /// are the low and high nibbles of the same 16 bytes: two blocks are
    /// decoded together, block A's and B's quants side by side in one
    /// register per half, against the activations rearranged the same way
    /// (`ylo` = A's 0–15 | B's 0–15, `yhi` = A's 16–31 | B's 16–31).
    pub(crate) trait PairDot: BlockDot {
        /// Per-activation-pair values shared by the rows.
        type Shared2: Copy;
        /// # Safety
        /// The CPU has the implementation's target features.
        unsafe fn shared2(ylo: __m256i, yhi: __m256i) -> Self::Shared2;
        /// `Σ q·y` of the blocks at `wa` and `wa + W_BYTES`: lanes 0–3 hold
        /// block A's partial sums, lanes 4–7 block B's (exact integers as f32).
        ///
        /// # Safety
        /// `wa` valid for reading `2 * W_BYTES`; the CPU has the target features.
        unsafe fn dot2(wa: *const u8, ylo: __m256i, yhi: __m256i, s: Self::Shared2) -> __m256;
    }

    /// Prefetch (to L2) the `span` bytes `ahead`
    /// ([`crate::quants::q8_0::prefetch_ahead`]) of each of the `R` rows at
    /// `wb`. R interleaved row streams defeat the hardware prefetcher; fetching
    /// a later group's rows while this group is computed keeps a multi-row
    /// matvec as fast from DRAM as a single sequential stream. A prefetch is a
    /// hint that never faults, hence `wrapping_add` past the end of the matrix.
    #[inline(always)]
    fn prefetch_rows<const R: usize>(wb: *const u8, row_bytes: usize, ahead: usize, span: usize) {
        for r in 0..R {
            let p = wb.wrapping_add(r * row_bytes + ahead);
            let mut off = 0;
            while off < span {
                // SAFETY: prefetching is a hint; any address is allowed and nothing is read.
                unsafe { _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(off) as *const i8) };
                off += 64;
            }
        }
    }

    macro_rules! driver {
        ($drive:ident, $step:ident, $drive2:ident, $step2:ident, $features:literal) => {
            /// The f16 at `p` as 8 equal f32 lanes.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn f16_bcast(p: *const u8) -> __m256 {
                // SAFETY: per the callers (2 readable bytes).
                _mm256_cvtph_ps(_mm_set1_epi16(unsafe { read_u16(p) } as i16))
            }

            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn $step<B: BlockDot, const R: usize>(
                wb: *const u8,
                row_bytes: usize,
                ab: *const u8,
                acc: &mut [__m256; R],
                msum: &mut [__m256; R],
            ) {
                // SAFETY: one block of `a` and of each of the R rows (caller).
                unsafe {
                    let dy = f16_bcast(ab);
                    let y = _mm256_loadu_si256(ab.add(B::A_QS) as *const __m256i);
                    let shared = B::shared(y);
                    let sy = if B::HAS_MIN { f16_bcast(ab.add(2)) } else { dy };
                    for r in 0..R {
                        let wb = wb.add(r * row_bytes);
                        let d = _mm256_mul_ps(f16_bcast(wb), dy);
                        acc[r] = _mm256_fmadd_ps(d, B::dot(wb, y, shared), acc[r]);
                        if B::HAS_MIN {
                            msum[r] = _mm256_fmadd_ps(f16_bcast(wb.add(2)), sy, msum[r]);
                        }
                    }
                }
            }

            /// The f16s at `p` and `q` as 4 + 4 f32 lanes.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn f16_pair(p: *const u8, q: *const u8) -> __m256 {
                // SAFETY: per the callers (2 readable bytes at each).
                let (a, b) = unsafe { (read_u16(p) as i16, read_u16(q) as i16) };
                _mm256_cvtph_ps(_mm_unpacklo_epi64(_mm_set1_epi16(a), _mm_set1_epi16(b)))
            }

            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn $step2<B: PairDot, const R: usize>(
                wb: *const u8,
                row_bytes: usize,
                ab: *const u8,
                acc: &mut [__m256; R],
                msum: &mut [__m256; R],
            ) {
                // SAFETY: two blocks of `a` and of each of the R rows (caller).
                unsafe {
                    let bb = ab.add(B::A_BYTES);
                    let ya = _mm256_loadu_si256(ab.add(B::A_QS) as *const __m256i);
                    let yb = _mm256_loadu_si256(bb.add(B::A_QS) as *const __m256i);
                    let ylo = _mm256_permute2x128_si256::<0x20>(ya, yb);
                    let yhi = _mm256_permute2x128_si256::<0x31>(ya, yb);
                    let shared = B::shared2(ylo, yhi);
                    let dy = f16_pair(ab, bb);
                    let sy = if B::HAS_MIN {
                        f16_pair(ab.add(2), bb.add(2))
                    } else {
                        dy
                    };
                    for r in 0..R {
                        let wa = wb.add(r * row_bytes);
                        let d = _mm256_mul_ps(f16_pair(wa, wa.add(B::W_BYTES)), dy);
                        acc[r] = _mm256_fmadd_ps(d, B::dot2(wa, ylo, yhi, shared), acc[r]);
                        if B::HAS_MIN {
                            let m = f16_pair(wa.add(2), wa.add(B::W_BYTES + 2));
                            msum[r] = _mm256_fmadd_ps(m, sy, msum[r]);
                        }
                    }
                }
            }

            /// `R` rows × `nb` blocks, two blocks per step ([`PairDot`]).
            ///
            /// # Safety
            /// See [`super::RowsKernel`].
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn $drive2<B: PairDot, const R: usize>(
                nb: usize,
                w: *const u8,
                row_bytes: usize,
                a: *const u8,
            ) -> [f32; R] {
                let zero = _mm256_setzero_ps();
                let (mut acc0, mut acc1, mut msum) = ([zero; R], [zero; R], [zero; R]);
                let mut tail = [zero; R];
                let ahead = crate::quants::q8_0::prefetch_ahead(R, row_bytes);
                let mut ib = 0;
                // SAFETY: blocks ib..ib+4 < nb of a and of each row are in bounds (caller).
                unsafe {
                    while ib + 4 <= nb {
                        let (wb, ab) = (w.add(ib * B::W_BYTES), a.add(ib * B::A_BYTES));
                        if R > 1 {
                            prefetch_rows::<R>(wb, row_bytes, ahead, 4 * B::W_BYTES);
                        }
                        $step2::<B, R>(wb, row_bytes, ab, &mut acc0, &mut msum);
                        let (wb, ab) = (wb.add(2 * B::W_BYTES), ab.add(2 * B::A_BYTES));
                        // A second accumulator only helps a single row (one FMA
                        // chain); R rows already interleave R chains.
                        let odd = if R == 1 { &mut acc1 } else { &mut acc0 };
                        $step2::<B, R>(wb, row_bytes, ab, odd, &mut msum);
                        ib += 4;
                    }
                    if ib + 2 <= nb {
                        let (wb, ab) = (w.add(ib * B::W_BYTES), a.add(ib * B::A_BYTES));
                        $step2::<B, R>(wb, row_bytes, ab, &mut acc0, &mut msum);
                        ib += 2;
                    }
                    if ib < nb {
                        let (wb, ab) = (w.add(ib * B::W_BYTES), a.add(ib * B::A_BYTES));
                        $step::<B, R>(wb, row_bytes, ab, &mut acc1, &mut tail);
                    }
                }
                let mut out = [0f32; R];
                for r in 0..R {
                    out[r] = crate::quants::q8_0::avx2::hsum_ps(_mm256_add_ps(acc0[r], acc1[r]));
                    if B::HAS_MIN {
                        // Each pair's m·s sits in 4 lanes; the tail's in every lane.
                        out[r] += 0.25 * crate::quants::q8_0::avx2::hsum_ps(msum[r]);
                        out[r] += _mm256_cvtss_f32(tail[r]);
                    }
                }
                out
            }

            /// `R` rows × `nb` blocks.
            ///
            /// # Safety
            /// See [`super::RowsKernel`].
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn $drive<B: BlockDot, const R: usize>(
                nb: usize,
                w: *const u8,
                row_bytes: usize,
                a: *const u8,
            ) -> [f32; R] {
                let zero = _mm256_setzero_ps();
                let (mut acc0, mut acc1, mut msum) = ([zero; R], [zero; R], [zero; R]);
                let ahead = crate::quants::q8_0::prefetch_ahead(R, row_bytes);
                let mut ib = 0;
                // SAFETY: blocks ib, ib+1 < nb of a and of each row are in bounds (caller).
                unsafe {
                    while ib + 2 <= nb {
                        let (wb, ab) = (w.add(ib * B::W_BYTES), a.add(ib * B::A_BYTES));
                        if R > 1 {
                            prefetch_rows::<R>(wb, row_bytes, ahead, 2 * B::W_BYTES);
                        }
                        $step::<B, R>(wb, row_bytes, ab, &mut acc0, &mut msum);
                        let (wb, ab) = (wb.add(B::W_BYTES), ab.add(B::A_BYTES));
                        // A second accumulator only helps a single row (one FMA
                        // chain); R rows already interleave R chains.
                        let odd = if R == 1 { &mut acc1 } else { &mut acc0 };
                        $step::<B, R>(wb, row_bytes, ab, odd, &mut msum);
                        ib += 2;
                    }
                    if ib < nb {
                        let (wb, ab) = (w.add(ib * B::W_BYTES), a.add(ib * B::A_BYTES));
                        $step::<B, R>(wb, row_bytes, ab, &mut acc0, &mut msum);
                    }
                }
                let mut out = [0f32; R];
                for r in 0..R {
                    out[r] = crate::quants::q8_0::avx2::hsum_ps(_mm256_add_ps(acc0[r], acc1[r]));
                    if B::HAS_MIN {
                        out[r] += _mm256_cvtss_f32(msum[r]);
                    }
                }
                out
            }
        };
    }

    pub(crate) mod avx2 {
        use super::*;
        driver!(drive, step, drive2, step2, "avx2,fma,f16c");
    }
    pub(crate) mod avx512 {
        use super::*;
        driver!(
            drive,
            step,
            drive2,
            step2,
            "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"
        );
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    //! AVX-512 VNNI (256-bit `vpdpbusd` through AVX-512VL) building blocks, and Q8_0's kernel.
    use super::BLOCK_BYTES;
    use core::arch::x86_64::*;

    /// `Σ uᵢ·yᵢ` (u unsigned, y signed bytes) in 8 i32 lanes as f32: one `vpdpbusd`
    /// (always exact: no 16-bit intermediate).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    pub(crate) fn mul_sum_u8_i8_ps(u: __m256i, y: __m256i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, y))
    }

    /// `Σ xᵢ·yᵢ` of signed bytes (y without -128), 8 lanes as f32.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    pub(crate) fn mul_sum_i8_ps(x: __m256i, y: __m256i) -> __m256 {
        mul_sum_u8_i8_ps(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
    }

    /// Q8_0 blocks for the x86 driver (sign trick + `vpdpbusd`).
    pub(crate) struct Q8_0;
    impl super::x86::BlockDot for Q8_0 {
        const W_BYTES: usize = BLOCK_BYTES;
        const A_BYTES: usize = BLOCK_BYTES;
        const A_QS: usize = 2;
        const HAS_MIN: bool = false;
        type Shared = ();
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn shared(_: __m256i) {}
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn dot(wb: *const u8, y: __m256i, _: ()) -> __m256 {
            // SAFETY: per the trait contract.
            mul_sum_i8_ps(
                unsafe { _mm256_loadu_si256(wb.add(2) as *const __m256i) },
                y,
            )
        }
    }

    /// Q8_0 × Q8_0, `R` rows.
    ///
    /// # Safety
    /// See [`super::RowsKernel`].
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(crate) unsafe fn dot_rows<const R: usize>(
        nb: usize,
        w: *const u8,
        row_bytes: usize,
        a: *const u8,
    ) -> [f32; R] {
        // SAFETY: per the caller.
        unsafe { super::x86::avx512::drive::<Q8_0, R>(nb, w, row_bytes, a) }
    }
}

// --------------------------------------------------------------- aarch64 --

#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    //! ARMv8.0 NEON building blocks (no `sdot`) shared by the 32-block kernels, and Q8_0's.
    use super::{quantize_block_x86, BLOCK_BYTES, QK8_0};
    use core::arch::aarch64::*;

    /// `Σ x·y` over 32 signed bytes (`x0,x1` × `y0,y1`) in 4 i32 lanes:
    /// `smull`+`smlal` put two products in each i16 lane (|·| ≤ 2·128·127 <
    /// 2¹⁵, so exact when one side has no -128), `sadalp` widens to i32.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) fn dot_i8x32(
        x0: int8x16_t,
        x1: int8x16_t,
        y0: int8x16_t,
        y1: int8x16_t,
    ) -> int32x4_t {
        let lo = vmlal_s8(
            vmull_s8(vget_low_s8(x0), vget_low_s8(y0)),
            vget_low_s8(x1),
            vget_low_s8(y1),
        );
        let hi = vmlal_high_s8(vmull_high_s8(x0, y0), x1, y1);
        vpadalq_s16(vpaddlq_s16(lo), hi)
    }

    /// Q8_0 weight blocks for the NEON drivers.
    pub(crate) struct Q8_0;
    impl super::arm::NeonBlock for Q8_0 {
        const W_BYTES: usize = BLOCK_BYTES;
        const A_BYTES: usize = BLOCK_BYTES;
        const A_QS: usize = 2;
        const HAS_MIN: bool = false;
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn decode(wb: *const u8) -> (int8x16_t, int8x16_t) {
            // SAFETY: per the trait contract (one whole block at `wb`).
            unsafe {
                (
                    vld1q_s8(wb.add(2) as *const i8),
                    vld1q_s8(wb.add(18) as *const i8),
                )
            }
        }
    }

    /// Q8_0 × Q8_0, `R` rows.
    ///
    /// # Safety
    /// See [`super::RowsKernel`].
    #[target_feature(enable = "neon")]
    pub(crate) unsafe fn dot_rows<const R: usize>(
        nb: usize,
        w: *const u8,
        row_bytes: usize,
        a: *const u8,
    ) -> [f32; R] {
        let mut out = [0f32; R];
        if R == 4 {
            // SAFETY: per the caller.
            out.copy_from_slice(&unsafe {
                super::arm::dot4_neon(&super::arm::Q8_0Rows, nb, w, row_bytes, a)
            });
        } else {
            // SAFETY: per the caller.
            out = unsafe { super::arm::drive_neon::<Q8_0, R>(nb, w, row_bytes, a) };
        }
        out
    }

    /// One activation block with x86 ggml's arithmetic (`vcvtnq` rounds half to
    /// even like `_mm256_round_ps`); returns `d` and the sum of the quants.
    ///
    /// # Safety
    /// `x` valid for reading 32 f32, `qs` for writing 32 bytes.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) unsafe fn quantize_block(x: *const f32, qs: *mut u8) -> (f32, i32) {
        // SAFETY: per the caller.
        let v: [float32x4_t; 8] = core::array::from_fn(|i| unsafe { vld1q_f32(x.add(4 * i)) });
        let mut m = vabsq_f32(v[0]);
        for vi in &v[1..] {
            m = vmaxq_f32(m, vabsq_f32(*vi));
        }
        let amax = vmaxvq_f32(m);
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        if !id.is_finite() || !amax.is_finite() {
            // amax below ~7.5e-37 (127/amax overflows) or infinite (inf·0): x86
            // turns the non-finite products into -128s where `vcvtnq` would
            // saturate or give 0; the portable twin reproduces x86.
            // SAFETY: per the caller.
            let xs = unsafe { core::slice::from_raw_parts(x, QK8_0) };
            let (d, q, sum) = quantize_block_x86(xs);
            // SAFETY: per the caller.
            unsafe { core::ptr::copy_nonoverlapping(q.as_ptr() as *const u8, qs, QK8_0) };
            return (d, sum);
        }
        let i: [int32x4_t; 8] = core::array::from_fn(|k| vcvtnq_s32_f32(vmulq_n_f32(v[k], id)));
        let h: [int16x8_t; 4] =
            core::array::from_fn(|k| vqmovn_high_s32(vqmovn_s32(i[2 * k]), i[2 * k + 1]));
        let b0 = vqmovn_high_s16(vqmovn_s16(h[0]), h[1]);
        let b1 = vqmovn_high_s16(vqmovn_s16(h[2]), h[3]);
        let sum = vaddvq_s32(vpadalq_s16(
            vpaddlq_s16(vaddq_s16(h[0], h[1])),
            vaddq_s16(h[2], h[3]),
        ));
        // SAFETY: per the caller.
        unsafe {
            vst1q_s8(qs as *mut i8, b0);
            vst1q_s8(qs.add(16) as *mut i8, b1);
        }
        (d, sum)
    }

    /// Q8_0 activation row.
    ///
    /// # Safety
    /// NEON; `x.len()` a multiple of 32, `y` holding `x.len()/32` blocks.
    #[target_feature(enable = "neon")]
    pub(crate) unsafe fn quantize_row(x: &[f32], y: &mut [u8]) {
        for (xb, yb) in x.chunks_exact(QK8_0).zip(y.chunks_exact_mut(BLOCK_BYTES)) {
            // SAFETY: xb has 32 floats, yb 34 bytes.
            let (d, _) = unsafe { quantize_block(xb.as_ptr(), yb.as_mut_ptr().add(2)) };
            yb[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub(crate) mod arm {
    //! The multi-row block loop shared by every 32-element format's NEON and
    //! NEON+dotprod kernels.
    //!
    //! A format supplies [`NeonBlock`]: the decode of one weight block to 32
    //! signed bytes (two registers, elements 0–15 and 16–31). The driver does the
    //! integer dot product (`smull`/`smlal`/`sadalp` on ARMv8.0, two `sdot` with
    //! dotprod), converts the R rows' f16 scales with one `fcvtl` (the scales go
    //! into the lanes of one register, lane r = row r), applies them with a
    //! by-lane FMA, keeps two accumulators per row (even and odd blocks), and
    //! prefetches the next group of rows (R short interleaved streams are hard
    //! on the hardware prefetchers of small cores).
    use super::read_u16;
    use crate::f16conv::neon::h2f;
    use core::arch::aarch64::*;
    use core::arch::asm;

    /// One format's block decode.
    pub(crate) trait NeonBlock {
        /// Bytes per weight block.
        const W_BYTES: usize;
        /// Bytes per activation block (34 for Q8_0, 36 for Q8_1).
        const A_BYTES: usize;
        /// Offset of the quants in the activation block.
        const A_QS: usize;
        /// Whether the weight block has an offset `m` (at byte 2) to be
        /// multiplied by the activation's `s` (at byte 2).
        const HAS_MIN: bool;
        /// The 32 weights of the block at `wb` as signed bytes (elements 0–15,
        /// 16–31); with one `dot_i8x32`-safe magnitude (no -128 unless the
        /// activation side has none either, which ours never has).
        ///
        /// # Safety
        /// `wb` valid for reading `W_BYTES`; NEON available.
        unsafe fn decode(wb: *const u8) -> (int8x16_t, int8x16_t);
    }

    /// The f16 fields at `p + r * row_bytes`, `r < R ≤ 4`, as f32 lanes
    /// (`fcvtl`, ARMv8.0); lanes ≥ R are 0.
    ///
    /// # Safety
    /// Each field valid for reading 2 bytes; NEON available.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) unsafe fn scales<const R: usize>(p: *const u8, row_bytes: usize) -> float32x4_t {
        const { assert!(R >= 1 && R <= 4) };
        let mut h = vdup_n_u16(0);
        // SAFETY: per the caller.
        unsafe {
            h = vset_lane_u16::<0>(read_u16(p), h);
            if R > 1 {
                h = vset_lane_u16::<1>(read_u16(p.add(row_bytes)), h);
            }
            if R > 2 {
                h = vset_lane_u16::<2>(read_u16(p.add(2 * row_bytes)), h);
            }
            if R > 3 {
                h = vset_lane_u16::<3>(read_u16(p.add(3 * row_bytes)), h);
            }
        }
        let f: float32x4_t;
        // SAFETY: `fcvtl` is an ARMv8.0 Advanced SIMD instruction on registers only.
        unsafe {
            asm!("fcvtl {f:v}.4s, {h:v}.4h", h = in(vreg) h, f = out(vreg) f,
                 options(pure, nomem, nostack, preserves_flags));
        }
        f
    }

    /// `acc + x * s[r]` (by-lane FMA; `r < 4`).
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) fn fma_lane(
        acc: float32x4_t,
        x: float32x4_t,
        s: float32x4_t,
        r: usize,
    ) -> float32x4_t {
        match r {
            0 => vfmaq_laneq_f32::<0>(acc, x, s),
            1 => vfmaq_laneq_f32::<1>(acc, x, s),
            2 => vfmaq_laneq_f32::<2>(acc, x, s),
            _ => vfmaq_laneq_f32::<3>(acc, x, s),
        }
    }

    /// Lane `r` of `v` (`r < 4`).
    #[target_feature(enable = "neon")]
    #[inline]
    fn lane(v: float32x4_t, r: usize) -> f32 {
        match r {
            0 => vgetq_lane_f32::<0>(v),
            1 => vgetq_lane_f32::<1>(v),
            2 => vgetq_lane_f32::<2>(v),
            _ => vgetq_lane_f32::<3>(v),
        }
    }

    /// Prefetch (to L2) the `span` bytes `ahead` ([`crate::quants::q8_0::prefetch_ahead`])
    /// of each of the `R` rows at `wb`. `prfm` is a hint that never faults. The
    /// register-offset form (`prfm [row, off]`) reuses the row addresses the
    /// loads already hold, so a prefetch costs one instruction.
    #[inline(always)]
    pub(crate) fn prefetch_rows<const R: usize>(
        wb: *const u8,
        row_bytes: usize,
        ahead: usize,
        span: usize,
    ) {
        for r in 0..R {
            let p = wb.wrapping_add(r * row_bytes);
            let mut off = 0;
            while off < span {
                // SAFETY: a prefetch hint reads nothing and cannot fault.
                unsafe {
                    asm!("prfm pldl2keep, [{p}, {o}]", p = in(reg) p, o = in(reg) ahead + off,
                         options(nostack, preserves_flags, readonly));
                }
                off += 64;
            }
        }
    }

    /// The activation block at `*pa` (`d` as f32, quants 0–15 and 16–31);
    /// advances `*pa` by one block.
    ///
    /// # Safety
    /// `*pa` valid for reading one block; NEON available.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) unsafe fn act_block(pa: &mut *const u8) -> (f32, int8x16_t, int8x16_t) {
        let (h, y0, y1): (u16, int8x16_t, int8x16_t);
        // SAFETY: per the caller: post-indexed loads of the 2 + 32 bytes of the block.
        unsafe {
            asm!("ldr {h:h}, [{p}], #2",
                 "ldp {y0:q}, {y1:q}, [{p}], #32",
                 p = inout(reg) *pa, h = out(vreg) h, y0 = out(vreg) y0, y1 = out(vreg) y1,
                 options(pure, readonly, nostack, preserves_flags));
        }
        (crate::f16conv::neon::h2f(h), y0, y1)
    }

    /// A weight format walked by the four-row kernels ([`dot4_dotprod`], [`dot4_neon`]): reads one block at `*p` with
    /// post-indexed loads (advancing `*p` by one block), writing its f16 scale
    /// to lane `L` of `h` and returning its 32 weights as signed bytes
    /// (elements 0–15, 16–31).
    pub(crate) trait RowBlocks {
        /// Whether the kernel's loop takes two blocks per iteration (two
        /// interleaved decodes can run out of registers: Q5_0's spill).
        const PAIRS: bool = true;
        /// # Safety
        /// `*p` valid for reading one block; NEON available.
        unsafe fn row_block<const L: usize>(
            &self,
            p: &mut *const u8,
            h: &mut uint16x4_t,
        ) -> (int8x16_t, int8x16_t);
    }

    /// The f16 at `*p` into lane `L` of `h` (lane 0: a scalar load that clears
    /// the other lanes, so no dependency on the previous block's scales;
    /// lanes 1–3 insert); advances `*p` by 2.
    ///
    /// # Safety
    /// `*p` valid for reading 2 bytes.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) unsafe fn scale_lane<const L: usize>(p: &mut *const u8, h: &mut uint16x4_t) {
        // SAFETY: per the caller: one post-indexed 2-byte load.
        unsafe {
            if L == 0 {
                asm!(
                    "ldr {h:h}, [{p}], #2",
                    p = inout(reg) * p,
                    h = out(vreg) * h,
                    options(pure, readonly, nostack, preserves_flags)
                );
            } else {
                asm!("ld1 {{{h:v}.h}}[{l}], [{p}], #2",
                     l = const L, p = inout(reg) *p, h = inout(vreg) *h,
                     options(pure, readonly, nostack, preserves_flags));
            }
        }
    }

    /// Q8_0 rows for [`dot4`]: scale, then the 32 quants with one `ldp`.
    pub(crate) struct Q8_0Rows;
    impl RowBlocks for Q8_0Rows {
        #[target_feature(enable = "neon")]
        #[inline]
        unsafe fn row_block<const L: usize>(
            &self,
            p: &mut *const u8,
            h: &mut uint16x4_t,
        ) -> (int8x16_t, int8x16_t) {
            let (x0, x1): (int8x16_t, int8x16_t);
            // SAFETY: per the trait contract: the 2 + 32 bytes of the block.
            unsafe {
                scale_lane::<L>(p, h);
                asm!("ldp {x0:q}, {x1:q}, [{p}], #32",
                     p = inout(reg) *p, x0 = out(vreg) x0, x1 = out(vreg) x1,
                     options(pure, readonly, nostack, preserves_flags));
            }
            (x0, x1)
        }
    }

    /// The running state of the four-row kernels: the four rows' `sdot` accumulators
    /// (never cleared: each row's i32 lanes hold the running sums of its
    /// blocks), their `addp` reduction after the previous block, and two f32
    /// accumulators (even and odd blocks), lane r = row r.
    struct Four {
        s: [int32x4_t; 4],
        prev: int32x4_t,
        acc: [float32x4_t; 2],
    }

    // The four-row kernel, stamped for NEON (`$dot` the `smull`/`sadalp` dot,
    // fresh each block: `$cumulative` false) and for dotprod (`sdot` into the
    // rows' never-cleared sums: `$cumulative` true).
    macro_rules! four_rows {
        ($dot4:ident, $block4:ident, $features:literal, $cumulative:literal, $dot:path) => {
        /// One block of four rows: the integer dot of each row with the
        /// activation block, times `d_x·d_y`, into `acc[k]`.
        ///
        /// The block's dots are `addp(addp(s0,s1),addp(s2,s3))` after the block
        /// minus the same before it: `sdot` and `addp` are linear, and i32 wraps,
        /// so the difference is exact (each block's sum is below 2¹⁹) however
        /// long the row; this replaces four register clears per block by one
        /// subtraction.
        ///
        /// # Safety
        /// Each pointer valid for reading one block; the CPU has `$features`.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn $block4<T: RowBlocks>(
            t: &T,
            p: &mut [*const u8; 4],
            pa: &mut *const u8,
            st: &mut Four,
            k: usize,
        ) {
            // SAFETY: per the caller.
            unsafe {
                let (dy, y0, y1) = act_block(pa);
                let mut h = vdup_n_u16(0);
                let dot = |s, (x0, x1): (int8x16_t, int8x16_t)| $dot(s, x0, x1, y0, y1);
                st.s[0] = dot(st.s[0], t.row_block::<0>(&mut p[0], &mut h));
                st.s[1] = dot(st.s[1], t.row_block::<1>(&mut p[1], &mut h));
                st.s[2] = dot(st.s[2], t.row_block::<2>(&mut p[2], &mut h));
                st.s[3] = dot(st.s[3], t.row_block::<3>(&mut p[3], &mut h));
                let tot = vpaddq_s32(vpaddq_s32(st.s[0], st.s[1]), vpaddq_s32(st.s[2], st.s[3]));
                // Lane r = the exact integer dot of row r with this block.
                let s = if $cumulative {
                    let s = vsubq_s32(tot, st.prev);
                    st.prev = tot;
                    s
                } else {
                    tot
                };
                let f: float32x4_t;
                // SAFETY: `fcvtl` is an ARMv8.0 Advanced SIMD instruction on registers only.
                asm!("fcvtl {f:v}.4s, {h:v}.4h", h = in(vreg) h, f = out(vreg) f,
                     options(pure, nomem, nostack, preserves_flags));
                st.acc[k] = vfmaq_f32(st.acc[k], vcvtq_f32_s32(s), vmulq_n_f32(f, dy));
            }
        }

        /// Four rows of a format whose scale is one f16 `d` (`x = d·q`) against
        /// Q8_0 activations: the rows and the activations are walked with
        /// post-indexed loads, the four rows' integer dots are reduced to one
        /// vector with `addp`, and one `scvtf` and one FMA apply the scales of
        /// all four.
        ///
        /// # Safety
        /// See [`super::RowsKernel`].
        #[target_feature(enable = $features)]
        #[inline]
        pub(crate) unsafe fn $dot4<T: RowBlocks>(
            t: &T,
            nb: usize,
            w: *const u8,
            row_bytes: usize,
            a: *const u8,
        ) -> [f32; 4] {
            let mut p: [*const u8; 4] = core::array::from_fn(|r| w.wrapping_add(r * row_bytes));
            let mut pa = a;
            let ahead = crate::quants::q8_0::prefetch_ahead(4, row_bytes);
            let mut st = Four {
                s: [vdupq_n_s32(0); 4],
                prev: vdupq_n_s32(0),
                acc: [vdupq_n_f32(0.0); 2],
            };
            // SAFETY: the caller guarantees nb blocks of `a` and of each row; each
            // block4 call consumes one.
            // The same place in a later group of rows (`prefetch_ahead`): one
            // line per row per iteration (hints, never fault). Two Q8_0 blocks
            // are 68 bytes, so at most a line in 17 is left to the hardware.
            let prefetch = |p: &[*const u8; 4]| {
                for &pr in p {
                    // SAFETY: a prefetch hint reads nothing and cannot fault.
                    unsafe {
                        asm!("prfm pldl2keep, [{p}, {o}]", p = in(reg) pr, o = in(reg) ahead,
                             options(nostack, preserves_flags, readonly));
                    }
                }
            };
            // SAFETY: the caller guarantees nb blocks of `a` and of each row; each
            // block4 call consumes one.
            unsafe {
                if T::PAIRS {
                    for _ in 0..nb / 2 {
                        prefetch(&p);
                        $block4(t, &mut p, &mut pa, &mut st, 0);
                        $block4(t, &mut p, &mut pa, &mut st, 1);
                    }
                    if nb % 2 == 1 {
                        $block4(t, &mut p, &mut pa, &mut st, 0);
                    }
                } else {
                    for _ in 0..nb {
                        prefetch(&p);
                        $block4(t, &mut p, &mut pa, &mut st, 0);
                    }
                }
            }
            let v = vaddq_f32(st.acc[0], st.acc[1]);
            [
                vgetq_lane_f32::<0>(v),
                vgetq_lane_f32::<1>(v),
                vgetq_lane_f32::<2>(v),
                vgetq_lane_f32::<3>(v),
            ]
        }
        };
    }

    /// `sdot` of a block into the running sums `s`.
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    fn sdot_acc(
        s: int32x4_t,
        x0: int8x16_t,
        x1: int8x16_t,
        y0: int8x16_t,
        y1: int8x16_t,
    ) -> int32x4_t {
        use super::dotprod::sdot;
        sdot(sdot(s, x0, y0), x1, y1)
    }

    /// A block's dot on ARMv8.0 (`s` unused: no running sums).
    #[target_feature(enable = "neon")]
    #[inline]
    fn dot_fresh(
        _: int32x4_t,
        x0: int8x16_t,
        x1: int8x16_t,
        y0: int8x16_t,
        y1: int8x16_t,
    ) -> int32x4_t {
        super::neon::dot_i8x32(x0, x1, y0, y1)
    }

    four_rows!(dot4_neon, block4_neon, "neon", false, dot_fresh);
    four_rows!(dot4_dotprod, block4_dotprod, "neon,dotprod", true, sdot_acc);

    // Two shapes of step. One row (R = 1): the 4 lanes of the block's integer
    // dot are converted and scaled by one FMA into the row's accumulator, whose
    // lanes are summed at the end. Groups of four rows (R a multiple of 4):
    // the four rows' lane vectors are first summed to one vector (two levels
    // of `addp`, lane r = row r, exact in i32), so one `scvtf` and one FMA by
    // the vector of the four rows' scales serve four rows, and the
    // accumulator's lanes are the rows' results (no final horizontal sums).
    macro_rules! driver {
        ($drive:ident, $step:ident, $features:literal, $dot:path) => {
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn $step<B: NeonBlock, const R: usize>(
                wb: *const u8,
                row_bytes: usize,
                ab: *const u8,
                acc: &mut [float32x4_t; R],
                msum: &mut [float32x4_t; R],
            ) {
                // SAFETY: one block of `a` and of each of the R rows (caller).
                unsafe {
                    let dy = h2f(read_u16(ab));
                    let y0 = vld1q_s8(ab.add(B::A_QS) as *const i8);
                    let y1 = vld1q_s8(ab.add(B::A_QS + 16) as *const i8);
                    let sy = if B::HAS_MIN {
                        h2f(read_u16(ab.add(2)))
                    } else {
                        0.0
                    };
                    if R % 4 == 0 {
                        for g in 0..R / 4 {
                            let wg = wb.add(4 * g * row_bytes);
                            let d = vmulq_n_f32(scales::<4>(wg, row_bytes), dy);
                            if B::HAS_MIN {
                                let m = scales::<4>(wg.add(2), row_bytes);
                                msum[g] = vfmaq_n_f32(msum[g], m, sy);
                            }
                            let s: [int32x4_t; 4] = core::array::from_fn(|r| {
                                let (x0, x1) = B::decode(wg.add(r * row_bytes));
                                $dot(x0, x1, y0, y1)
                            });
                            let s = vpaddq_s32(vpaddq_s32(s[0], s[1]), vpaddq_s32(s[2], s[3]));
                            acc[g] = vfmaq_f32(acc[g], vcvtq_f32_s32(s), d);
                        }
                    } else {
                        let d = vmulq_n_f32(scales::<R>(wb, row_bytes), dy);
                        if B::HAS_MIN {
                            msum[0] = vfmaq_n_f32(msum[0], scales::<R>(wb.add(2), row_bytes), sy);
                        }
                        for r in 0..R {
                            let (x0, x1) = B::decode(wb.add(r * row_bytes));
                            let p = vcvtq_f32_s32($dot(x0, x1, y0, y1));
                            acc[r] = fma_lane(acc[r], p, d, r);
                        }
                    }
                }
            }

            /// `R` rows × `nb` blocks (`R` ≤ 4 or a multiple of 4).
            ///
            /// # Safety
            /// See [`super::RowsKernel`].
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn $drive<B: NeonBlock, const R: usize>(
                nb: usize,
                w: *const u8,
                row_bytes: usize,
                a: *const u8,
            ) -> [f32; R] {
                const { assert!(R <= 4 || R % 4 == 0) };
                let zero = vdupq_n_f32(0.0);
                let (mut acc0, mut acc1, mut msum) = ([zero; R], [zero; R], [zero; R]);
                let ahead = crate::quants::q8_0::prefetch_ahead(R, row_bytes);
                let mut ib = 0;
                // SAFETY: blocks ib, ib+1 < nb of a and of each row are in bounds (caller).
                unsafe {
                    while ib + 2 <= nb {
                        let (wb, ab) = (w.add(ib * B::W_BYTES), a.add(ib * B::A_BYTES));
                        if R > 1 {
                            prefetch_rows::<R>(wb, row_bytes, ahead, 2 * B::W_BYTES);
                        }
                        $step::<B, R>(wb, row_bytes, ab, &mut acc0, &mut msum);
                        let (wb, ab) = (wb.add(B::W_BYTES), ab.add(B::A_BYTES));
                        // A second accumulator helps one chain per row or per
                        // group of four (latency of the FMA); with 2 or 3 rows
                        // the rows' chains already interleave.
                        let odd = if R == 1 || R % 4 == 0 {
                            &mut acc1
                        } else {
                            &mut acc0
                        };
                        $step::<B, R>(wb, row_bytes, ab, odd, &mut msum);
                        ib += 2;
                    }
                    if ib < nb {
                        let (wb, ab) = (w.add(ib * B::W_BYTES), a.add(ib * B::A_BYTES));
                        $step::<B, R>(wb, row_bytes, ab, &mut acc0, &mut msum);
                    }
                }
                let mut out = [0f32; R];
                if R % 4 == 0 {
                    for g in 0..R / 4 {
                        let v = vaddq_f32(acc0[g], acc1[g]);
                        for j in 0..4 {
                            out[4 * g + j] = lane(v, j);
                            if B::HAS_MIN {
                                out[4 * g + j] += lane(msum[g], j);
                            }
                        }
                    }
                } else {
                    for r in 0..R {
                        out[r] = vaddvq_f32(vaddq_f32(acc0[r], acc1[r]));
                        if B::HAS_MIN {
                            out[r] += lane(msum[0], r);
                        }
                    }
                }
                out
            }
        };
    }

    /// `Σ x·y` with two `sdot`.
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    fn dot_sdot(x0: int8x16_t, x1: int8x16_t, y0: int8x16_t, y1: int8x16_t) -> int32x4_t {
        use super::dotprod::sdot;
        sdot(sdot(vdupq_n_s32(0), x0, y0), x1, y1)
    }

    driver!(drive_neon, step_neon, "neon", super::neon::dot_i8x32);
    driver!(drive_dotprod, step_dotprod, "neon,dotprod", dot_sdot);
}

#[cfg(target_arch = "aarch64")]
pub(crate) mod dotprod {
    //! NEON + ARMv8.2 `dotprod` building blocks, and Q8_0's kernel.
    use core::arch::aarch64::*;
    use core::arch::asm;

    /// `acc[i] += Σ_{j<4} a[4i+j]·b[4i+j]` (`sdot`; `vdotq_s32` is not stable Rust).
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    pub(crate) fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: `sdot` is enabled by this function's target features; it only
        // reads and writes the named vector registers.
        unsafe {
            asm!("sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                 acc = inout(vreg) acc, a = in(vreg) a, b = in(vreg) b,
                 options(pure, nomem, nostack, preserves_flags));
        }
        acc
    }

    /// Q8_0 × Q8_0, `R` rows.
    ///
    /// # Safety
    /// See [`super::RowsKernel`].
    #[target_feature(enable = "neon,dotprod")]
    pub(crate) unsafe fn dot_rows<const R: usize>(
        nb: usize,
        w: *const u8,
        row_bytes: usize,
        a: *const u8,
    ) -> [f32; R] {
        let mut out = [0f32; R];
        if R == 4 {
            // SAFETY: per the caller.
            out.copy_from_slice(&unsafe {
                super::arm::dot4_dotprod(&super::arm::Q8_0Rows, nb, w, row_bytes, a)
            });
        } else {
            // SAFETY: per the caller.
            out = unsafe { super::arm::drive_dotprod::<super::neon::Q8_0, R>(nb, w, row_bytes, a) };
        }
        out
    }
}

// ------------------------------------------------------- dispatch table --

struct Scalar;
impl VecDot for Scalar {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
        vec_dot_q8_0_q8_0(n, w, a)
    }
}

#[cfg(target_arch = "x86_64")]
simd_entries!(
    GgmlType::Q8_0,
    GgmlType::Q8_0,
    vec_dot_avx2,
    gemv_avx2,
    avx2
);
#[cfg(target_arch = "x86_64")]
simd_entries!(
    GgmlType::Q8_0,
    GgmlType::Q8_0,
    vec_dot_avx512,
    gemv_avx512,
    avx512
);
#[cfg(target_arch = "aarch64")]
simd_entries!(
    GgmlType::Q8_0,
    GgmlType::Q8_0,
    vec_dot_neon,
    gemv_neon,
    neon
);
#[cfg(target_arch = "aarch64")]
simd_entries!(
    GgmlType::Q8_0,
    GgmlType::Q8_0,
    vec_dot_dotprod,
    gemv_dotprod,
    dotprod
);

#[cfg(target_arch = "x86_64")]
fn quantize_row_avx2(x: &[f32], y: &mut [u8]) {
    check_quantize("quantize_row_q8_0", x, y, BLOCK_BYTES);
    // SAFETY: installed only for Avx2 and up, which the table checked; sizes checked.
    unsafe { avx2::quantize_row(x, y) }
}

#[cfg(target_arch = "aarch64")]
fn quantize_row_neon(x: &[f32], y: &mut [u8]) {
    check_quantize("quantize_row_q8_0", x, y, BLOCK_BYTES);
    // SAFETY: installed only for Neon and up, which the table checked; sizes checked.
    unsafe { neon::quantize_row(x, y) }
}

/// Q8_0 weight kernels for `level`.
pub(crate) fn select(level: Backend) -> FormatKernels {
    let k = |vec_dot, gemv, path| FormatKernels {
        weight: GgmlType::Q8_0,
        act: GgmlType::Q8_0,
        dequantize_row: dequantize_row_q8_0,
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
        _ => k(vec_dot_q8_0_q8_0, gemv_rows::<Scalar>, Backend::Scalar),
    }
}

/// Q8_0 activation quantizer for `level`.
pub(crate) fn select_act(level: Backend) -> ActKernels {
    let k = |quantize_row, path| ActKernels {
        act: GgmlType::Q8_0,
        quantize_row,
        path,
    };
    match level {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 | Backend::Avx512 => k(quantize_row_avx2, Backend::Avx2),
        #[cfg(target_arch = "aarch64")]
        Backend::Neon | Backend::Dotprod => k(quantize_row_neon, Backend::Neon),
        _ => k(quantize_row_q8_0, Backend::Scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    /// The quantization of the synthetic signal: ggml's budget (Q8_0 is far inside it).
    const Q8_0_QUANT_ERROR: f64 = MAX_QUANTIZATION_TOTAL_ERROR;
    /// `|vec_dot - f32 dot| / n` budget (ggml's `MAX_DOT_PRODUCT_ERROR`).
    const Q8_0_DOT_ERROR: f64 = MAX_DOT_PRODUCT_ERROR;

    fn random_rows(rng: &mut Rng, nblocks: usize) -> Vec<u8> {
        blocks(nblocks, |_| {
            let mut b = BlockQ8_0 {
                d: rng.scale_f16(-3.0, -1.0),
                qs: [0; 32],
            };
            rng.fill(bytemuck::cast_slice_mut(&mut b.qs));
            b
        })
    }

    #[test]
    fn prefetch_reaches_a_whole_group_at_least_the_distance_on() {
        // 4 rows of 4096 Q8_0 values: one group is already past the distance.
        let long = 4096 / 32 * BLOCK_BYTES;
        assert_eq!(prefetch_ahead(4, long), 4 * long + 512);
        // Gemma 3's output rows (640 values): 2720-byte groups, 4 of them on.
        let short = 640 / 32 * BLOCK_BYTES;
        assert_eq!(prefetch_ahead(4, short), 4 * (4 * short) + 512);
        for row_bytes in [0, 1, 22, 34, 440, 2047, 2048, 2049, 1 << 20] {
            let a = prefetch_ahead(4, row_bytes) - 512;
            assert!(a >= PREFETCH_DISTANCE, "{row_bytes}");
            assert_eq!(a % (4 * row_bytes).max(1), 0, "{row_bytes}");
        }
    }

    #[test]
    fn reference_quantizer_matches_gguf_py_golden() {
        let x = f32s_le(&fixture("quant/q8_0.input.f32.bin"));
        let want = fixture("quant/q8_0.quantized.bin");
        let mut got = vec![0u8; want.len()];
        quantize_row_q8_0_ref(&x, &mut got);
        assert_eq!(got, want);
    }

    /// The activation quantizer differs from the file quantizer only on exact
    /// ties (half to even vs away from zero) and by `127/amax` vs `1/d` rounding.
    #[test]
    fn activation_quantizer_is_close_to_golden_and_rounds_ties_to_even() {
        let x = f32s_le(&fixture("quant/q8_0.input.f32.bin"));
        let want = fixture("quant/q8_0.quantized.bin");
        let mut got = vec![0u8; want.len()];
        quantize_row_q8_0(&x, &mut got);
        for (i, (g, w)) in got.chunks_exact(34).zip(want.chunks_exact(34)).enumerate() {
            assert_eq!(g[..2], w[..2], "block {i}: d");
            for j in 2..34 {
                assert!(
                    (g[j] as i8 as i32 - w[j] as i8 as i32).abs() <= 1,
                    "block {i} q{j}"
                );
            }
        }
        // Row 13 of the golden has amax 127 (d = 1) and exact .5 ties.
        let mut tie = [0f32; 32];
        tie[0] = 127.0;
        tie[1] = 2.5;
        tie[2] = -29.5;
        tie[3] = 3.5;
        let mut q = [0u8; 34];
        quantize_row_q8_0(&tie, &mut q);
        assert_eq!([q[3] as i8, q[4] as i8, q[5] as i8], [2, -30, 4]);
        quantize_row_q8_0_ref(&tie, &mut q);
        assert_eq!([q[3] as i8, q[4] as i8, q[5] as i8], [3, -30, 4]);
    }

    #[test]
    fn activation_quantizer_edge_cases_match_x86() {
        // All zero: d = 0, q = 0.
        let mut q = [0xAAu8; 34];
        quantize_row_q8_0(&[0.0; 32], &mut q);
        assert!(q.iter().all(|&b| b == 0));
        // amax so small that 127/amax overflows: x86 stores -128 everywhere.
        let mut x = [0f32; 32];
        x[5] = 1e-38;
        quantize_row_q8_0(&x, &mut q);
        assert_eq!(&q[..2], &[0, 0]);
        assert!(q[2..].iter().all(|&b| b as i8 == -128));
    }

    #[test]
    fn activation_quantizers_agree_on_every_backend() {
        let mut rng = Rng::new(80);
        let mut x = rng.normals(32 * 64, 1.0);
        x.extend(rng.normals(32 * 8, 1e-30)); // f16 d underflows to 0
        x.extend(synthetic(32 * 8, 0.0));
        x.extend([0.0; 32]);
        let mut tiny = [0f32; 32];
        tiny[7] = -2e-38;
        x.extend(tiny);
        let mut ties: Vec<f32> = (0..32).map(|i| i as f32 - 15.5).collect();
        ties[0] = 127.0;
        x.extend(ties);
        let mut inf = rng.normals(32, 1.0);
        inf[9] = f32::INFINITY;
        inf[20] = -f32::INFINITY;
        x.extend(inf);
        x.extend(f32s_le(&fixture("quant/q8_0.input.f32.bin")));
        check_act_backends(select_act, &x, "q8_0 act");
    }

    #[test]
    fn dequantize_matches_gguf_py_golden() {
        let blocks = fixture("quant/q8_0.blocks.bin");
        let want = f32s_le(&fixture("quant/q8_0.f32.bin"));
        let mut got = vec![0f32; want.len()];
        dequantize_row_q8_0(&blocks, &mut got);
        assert!(got
            .iter()
            .zip(&want)
            .all(|(g, w)| g.to_bits() == w.to_bits()));
    }

    #[test]
    fn simd_matches_scalar() {
        let mut rng = Rng::new(8);
        for (nblocks, rows) in [(1, 5), (2, 3), (5, 4), (6, 5), (7, 9), (64, 6), (128, 4)] {
            let w = random_rows(&mut rng, nblocks * rows);
            let x = rng.normals(nblocks * 32, 1.0);
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("q8_0 {nblocks}b×{rows}"),
            );
        }
        // The fixture's blocks (random bytes, so -128 included) as 8 rows of 8 blocks.
        let w = fixture("quant/q8_0.blocks.bin");
        let x = synthetic(256, 0.5);
        check_backends(select, select_act, &w, &x, SIMD_REL_BUDGET, "q8_0 fixture");
    }

    #[test]
    fn overflow_stress() {
        // Extreme quants on both sides: weights -128/127, activations ±127
        // (amax everywhere), large scales.
        for (wq, sign) in [(-128i8, 1.0f32), (127, 1.0), (-128, -1.0), (127, -1.0)] {
            let nb = 40;
            let w = blocks(nb * 3, |i| BlockQ8_0 {
                d: f16::from_f32(if i % 2 == 0 { 60000.0 } else { 1.0 }),
                qs: [wq; 32],
            });
            let x: Vec<f32> = (0..nb * 32)
                .map(|i| sign * 1000.0 * if i % 3 == 0 { -1.0 } else { 1.0 })
                .collect();
            check_backends(
                select,
                select_act,
                &w,
                &x,
                SIMD_REL_BUDGET,
                &format!("q8_0 stress {wq} {sign}"),
            );
        }
    }

    /// Rows long enough that a running i32 sum of their block dots wraps
    /// (4400 blocks of −128·127·32 each, all the same sign), four rows and a
    /// fifth: the multi-row kernels must still give each block's exact sum.
    /// The scales alternate in sign so that the f32 sums stay small (f32
    /// accumulation error is not what this is about).
    #[test]
    fn long_rows_past_i32() {
        let nb = 4400;
        let w = blocks(nb * 5, |i| BlockQ8_0 {
            d: f16::from_f32(if i % 2 == 0 { 0.5 } else { -0.5 }),
            qs: [if i % 7 == 0 { 127 } else { -128 }; 32],
        });
        let x = vec![1000.0f32; nb * 32];
        check_backends(
            select,
            select_act,
            &w,
            &x,
            SIMD_REL_BUDGET,
            "q8_0 long rows",
        );
    }

    #[test]
    fn quantization_and_dot_error_within_ggml_budgets() {
        let n = 4096;
        let x = synthetic(n, 0.0);
        let y = synthetic(n, 1.0);
        let mut wq = vec![0u8; n / 32 * 34];
        quantize_row_q8_0_ref(&x, &mut wq);
        let mut deq = vec![0f32; n];
        dequantize_row_q8_0(&wq, &mut deq);
        assert!(rmse(&x, &deq) < Q8_0_QUANT_ERROR, "rmse {}", rmse(&x, &deq));
        for b in backends() {
            let (fk, ak) = (select(b), select_act(b));
            // ggml's form: weights quantized from f32, compared with the f32 dot.
            let got = (fk.vec_dot)(n, &wq, &quantize(&ak, &y)) as f64;
            let err = (got - dot_f64(&x, &y)).abs() / n as f64;
            assert!(err < Q8_0_DOT_ERROR, "{b}: dot error {err}");
            assert!(dot_error(&fk, &ak, n, &wq, &y) < Q8_0_DOT_ERROR);
        }
    }
}
