//! Row conversions between f32 and the 16-bit float formats (IEEE half, bfloat16).
//!
//! Used by the F16/BF16 weight formats (dequantize a row), the F16/BF16
//! activation "quantizers" (convert a row), and any f16 buffer (a KV cache).
//! All rows are little-endian bytes, so tensor data can be passed as it sits
//! in a mapped GGUF file whatever its alignment.
//!
//! Conversions are exact (f16/bf16 → f32) or round to nearest even (f32 →
//! f16), on every path: x86 uses F16C (`vcvtph2ps`/`vcvtps2ph`); aarch64 uses
//! the ARMv8.0 Advanced SIMD `fcvtl`/`fcvtn` through `asm!`, because the
//! `float16x4_t` intrinsics are not stable Rust (and the `half` crate only uses
//! hardware when the CPU has the ARMv8.2 FP16 extension, which the Cortex-A53
//! and A72 lack). Other CPUs use `half`'s portable code. The results are the
//! same bits on every path (NaN payloads aside).
//!
//! bf16 → f32 is a 16-bit shift; f32 → bf16 rounds to nearest even and quiets
//! NaNs exactly as ggml's `ggml_compute_fp32_to_bf16`.

use crate::dispatch::Backend;

/// f16 (bits) → f32, portable.
#[inline(always)]
pub(crate) fn f16_bits_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// f32 → bf16 bits as ggml rounds them: to nearest even; a NaN stays a (quiet) NaN.
#[inline(always)]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        // NaN: keep the sign and top payload bits, force quiet.
        ((u >> 16) | 64) as u16
    } else {
        ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
    }
}

/// bf16 bits → f32 (exact).
#[inline(always)]
pub fn bf16_bits_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

#[track_caller]
fn check_len(what: &str, src_bytes: usize, elem_bytes: usize, dst_len: usize) {
    assert!(
        src_bytes / elem_bytes >= dst_len,
        "{what}: row of {dst_len} values needs {} bytes, got {src_bytes}",
        dst_len * elem_bytes
    );
}

// ---------------------------------------------------------------- scalar --

/// `dst[i] = f16 value i of src` (little-endian), portable code.
pub fn f16_to_f32_row_scalar(src: &[u8], dst: &mut [f32]) {
    check_len("f16_to_f32_row", src.len(), 2, dst.len());
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = f16_bits_to_f32(u16::from_le_bytes([s[0], s[1]]));
    }
}

/// `dst` = `src` as little-endian f16 (round to nearest even), portable code.
pub fn f32_to_f16_row_scalar(src: &[f32], dst: &mut [u8]) {
    check_len("f32_to_f16_row", dst.len(), 2, src.len());
    for (d, &s) in dst.chunks_exact_mut(2).zip(src) {
        d.copy_from_slice(&half::f16::from_f32(s).to_bits().to_le_bytes());
    }
}

/// `dst[i] = bf16 value i of src` (little-endian), portable code.
pub fn bf16_to_f32_row_scalar(src: &[u8], dst: &mut [f32]) {
    check_len("bf16_to_f32_row", src.len(), 2, dst.len());
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = bf16_bits_to_f32(u16::from_le_bytes([s[0], s[1]]));
    }
}

/// `dst` = `src` as little-endian bf16 (ggml's rounding), portable code.
pub fn f32_to_bf16_row(src: &[f32], dst: &mut [u8]) {
    check_len("f32_to_bf16_row", dst.len(), 2, src.len());
    for (d, &s) in dst.chunks_exact_mut(2).zip(src) {
        d.copy_from_slice(&f32_to_bf16_bits(s).to_le_bytes());
    }
}

// ------------------------------------------------------------------- x86 --

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use core::arch::x86_64::*;

    /// Eight f16 at `p` → f32.
    ///
    /// # Safety
    /// `p` must be valid for reading 16 bytes; the CPU must have AVX and F16C.
    #[target_feature(enable = "avx,f16c")]
    #[inline]
    pub(crate) unsafe fn load8_f16(p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 16 readable bytes; loadu has no alignment need.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }

    /// # Safety
    /// The CPU must have AVX, F16C (`Backend::Avx2`); `src.len() >= 2 * dst.len()`.
    #[target_feature(enable = "avx2,f16c")]
    pub(crate) unsafe fn f16_to_f32_row(src: &[u8], dst: &mut [f32]) {
        let n8 = dst.len() / 8 * 8;
        let (head, tail) = dst.split_at_mut(n8);
        for (i, d) in head.chunks_exact_mut(8).enumerate() {
            // SAFETY: i*8+8 <= dst.len(), and src holds 2 bytes per dst element.
            unsafe { _mm256_storeu_ps(d.as_mut_ptr(), load8_f16(src.as_ptr().add(16 * i))) };
        }
        super::f16_to_f32_row_scalar(&src[2 * n8..], tail);
    }

    /// # Safety
    /// The CPU must have AVX, F16C; `dst.len() >= 2 * src.len()`.
    #[target_feature(enable = "avx2,f16c")]
    pub(crate) unsafe fn f32_to_f16_row(src: &[f32], dst: &mut [u8]) {
        let n8 = src.len() / 8 * 8;
        for (i, s) in src[..n8].chunks_exact(8).enumerate() {
            // SAFETY: s has 8 floats; dst holds 2 bytes per src element.
            unsafe {
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(s.as_ptr()));
                _mm_storeu_si128(dst.as_mut_ptr().add(16 * i) as *mut __m128i, h);
            }
        }
        super::f32_to_f16_row_scalar(&src[n8..], &mut dst[2 * n8..]);
    }

    /// # Safety
    /// The CPU must have AVX2; `src.len() >= 2 * dst.len()`.
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn bf16_to_f32_row(src: &[u8], dst: &mut [f32]) {
        let n8 = dst.len() / 8 * 8;
        let (head, tail) = dst.split_at_mut(n8);
        for (i, d) in head.chunks_exact_mut(8).enumerate() {
            // SAFETY: as in f16_to_f32_row.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(16 * i) as *const __m128i);
                let f = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
                _mm256_storeu_ps(d.as_mut_ptr(), _mm256_castsi256_ps(f));
            }
        }
        super::bf16_to_f32_row_scalar(&src[2 * n8..], tail);
    }
}

// --------------------------------------------------------------- aarch64 --

#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use core::arch::aarch64::*;
    use core::arch::asm;

    /// One f16 (bits) → f32 with the ARMv8.0 scalar `fcvt`: a block scale.
    #[inline(always)]
    pub(crate) fn h2f(bits: u16) -> f32 {
        let r: f32;
        // SAFETY: `fcvt Sd, Hn` is in the ARMv8.0 base FP instruction set, which every
        // aarch64 CPU Rust targets has; it only touches the named registers.
        unsafe {
            asm!("fcvt {r:s}, {h:h}", h = in(vreg) bits, r = lateout(vreg) r,
                 options(pure, nomem, nostack, preserves_flags));
        }
        r
    }

    /// Eight f16 at `p` → two f32x4 (`fcvtl`/`fcvtl2`, ARMv8.0 Advanced SIMD).
    ///
    /// # Safety
    /// `p` must be valid for reading 16 bytes.
    #[target_feature(enable = "neon")]
    #[inline]
    pub(crate) unsafe fn load8_f16(p: *const u8) -> (float32x4_t, float32x4_t) {
        // SAFETY: the caller guarantees 16 readable bytes; vld1q_u8 has no alignment need.
        let h = unsafe { vld1q_u8(p) };
        let lo: float32x4_t;
        let hi: float32x4_t;
        // SAFETY: register-only conversion instructions of ARMv8.0 Advanced SIMD.
        unsafe {
            asm!("fcvtl {lo:v}.4s, {h:v}.4h", "fcvtl2 {hi:v}.4s, {h:v}.8h",
                 h = in(vreg) h, lo = out(vreg) lo, hi = out(vreg) hi,
                 options(pure, nomem, nostack, preserves_flags));
        }
        (lo, hi)
    }

    /// # Safety
    /// NEON must be available; `src.len() >= 2 * dst.len()`.
    #[target_feature(enable = "neon")]
    pub(crate) unsafe fn f16_to_f32_row(src: &[u8], dst: &mut [f32]) {
        let n8 = dst.len() / 8 * 8;
        let (head, tail) = dst.split_at_mut(n8);
        for (i, d) in head.chunks_exact_mut(8).enumerate() {
            // SAFETY: d holds 8 floats; src holds 2 bytes per dst element.
            unsafe {
                let (lo, hi) = load8_f16(src.as_ptr().add(16 * i));
                vst1q_f32(d.as_mut_ptr(), lo);
                vst1q_f32(d.as_mut_ptr().add(4), hi);
            }
        }
        super::f16_to_f32_row_scalar(&src[2 * n8..], tail);
    }

    /// # Safety
    /// NEON must be available; `dst.len() >= 2 * src.len()`.
    #[target_feature(enable = "neon")]
    pub(crate) unsafe fn f32_to_f16_row(src: &[f32], dst: &mut [u8]) {
        let n8 = src.len() / 8 * 8;
        for (i, s) in src[..n8].chunks_exact(8).enumerate() {
            // SAFETY: s holds 8 floats; dst holds 2 bytes per src element; fcvtn/fcvtn2
            // are register-only ARMv8.0 instructions rounding per FPCR (nearest even).
            unsafe {
                let a = vld1q_f32(s.as_ptr());
                let b = vld1q_f32(s.as_ptr().add(4));
                let h: uint8x16_t;
                asm!("fcvtn {h:v}.4h, {a:v}.4s", "fcvtn2 {h:v}.8h, {b:v}.4s",
                     a = in(vreg) a, b = in(vreg) b, h = out(vreg) h,
                     options(pure, nomem, nostack, preserves_flags));
                vst1q_u8(dst.as_mut_ptr().add(16 * i), h);
            }
        }
        super::f32_to_f16_row_scalar(&src[n8..], &mut dst[2 * n8..]);
    }

    /// # Safety
    /// NEON must be available; `src.len() >= 2 * dst.len()`.
    #[target_feature(enable = "neon")]
    pub(crate) unsafe fn bf16_to_f32_row(src: &[u8], dst: &mut [f32]) {
        let n8 = dst.len() / 8 * 8;
        let (head, tail) = dst.split_at_mut(n8);
        for (i, d) in head.chunks_exact_mut(8).enumerate() {
            // SAFETY: as in f16_to_f32_row.
            unsafe {
                let h = vreinterpretq_u16_u8(vld1q_u8(src.as_ptr().add(16 * i)));
                let lo = vshll_n_u16::<16>(vget_low_u16(h));
                let hi = vshll_high_n_u16::<16>(h);
                vst1q_f32(d.as_mut_ptr(), vreinterpretq_f32_u32(lo));
                vst1q_f32(d.as_mut_ptr().add(4), vreinterpretq_f32_u32(hi));
            }
        }
        super::bf16_to_f32_row_scalar(&src[2 * n8..], tail);
    }
}

// -------------------------------------------------------- safe wrappers --

#[cfg(target_arch = "x86_64")]
fn f16_to_f32_row_avx2(src: &[u8], dst: &mut [f32]) {
    check_len("f16_to_f32_row", src.len(), 2, dst.len());
    // SAFETY: installed only for Backend::Avx2 and up, which `Kernels` and the public
    // functions below check the CPU supports (AVX2 + FMA + F16C); lengths checked above.
    unsafe { x86::f16_to_f32_row(src, dst) }
}
#[cfg(target_arch = "x86_64")]
fn f32_to_f16_row_avx2(src: &[f32], dst: &mut [u8]) {
    check_len("f32_to_f16_row", dst.len(), 2, src.len());
    // SAFETY: as in f16_to_f32_row_avx2.
    unsafe { x86::f32_to_f16_row(src, dst) }
}
#[cfg(target_arch = "x86_64")]
fn bf16_to_f32_row_avx2(src: &[u8], dst: &mut [f32]) {
    check_len("bf16_to_f32_row", src.len(), 2, dst.len());
    // SAFETY: as in f16_to_f32_row_avx2.
    unsafe { x86::bf16_to_f32_row(src, dst) }
}
#[cfg(target_arch = "aarch64")]
fn f16_to_f32_row_neon(src: &[u8], dst: &mut [f32]) {
    check_len("f16_to_f32_row", src.len(), 2, dst.len());
    // SAFETY: installed only for Backend::Neon and up, which are checked to be
    // supported by this CPU; lengths checked above.
    unsafe { neon::f16_to_f32_row(src, dst) }
}
#[cfg(target_arch = "aarch64")]
fn f32_to_f16_row_neon(src: &[f32], dst: &mut [u8]) {
    check_len("f32_to_f16_row", dst.len(), 2, src.len());
    // SAFETY: as in f16_to_f32_row_neon.
    unsafe { neon::f32_to_f16_row(src, dst) }
}
#[cfg(target_arch = "aarch64")]
fn bf16_to_f32_row_neon(src: &[u8], dst: &mut [f32]) {
    check_len("bf16_to_f32_row", src.len(), 2, dst.len());
    // SAFETY: as in f16_to_f32_row_neon.
    unsafe { neon::bf16_to_f32_row(src, dst) }
}

/// The three row converters of one backend, with the backend they really use.
#[derive(Clone, Copy)]
pub(crate) struct RowConv {
    pub f16_to_f32: fn(&[u8], &mut [f32]),
    pub f32_to_f16: fn(&[f32], &mut [u8]),
    pub bf16_to_f32: fn(&[u8], &mut [f32]),
    pub path: Backend,
}

/// The best converters not exceeding `level` (the caller has checked the CPU
/// supports `level`).
pub(crate) fn select(level: Backend) -> RowConv {
    #[cfg(target_arch = "x86_64")]
    if level >= Backend::Avx2 {
        return RowConv {
            f16_to_f32: f16_to_f32_row_avx2,
            f32_to_f16: f32_to_f16_row_avx2,
            bf16_to_f32: bf16_to_f32_row_avx2,
            path: Backend::Avx2,
        };
    }
    #[cfg(target_arch = "aarch64")]
    if matches!(level, Backend::Neon | Backend::Dotprod) {
        return RowConv {
            f16_to_f32: f16_to_f32_row_neon,
            f32_to_f16: f32_to_f16_row_neon,
            bf16_to_f32: bf16_to_f32_row_neon,
            path: Backend::Neon,
        };
    }
    let _ = level;
    RowConv {
        f16_to_f32: f16_to_f32_row_scalar,
        f32_to_f16: f32_to_f16_row_scalar,
        bf16_to_f32: bf16_to_f32_row_scalar,
        path: Backend::Scalar,
    }
}

/// Converters for this CPU (detected once).
fn best() -> &'static RowConv {
    static BEST: std::sync::OnceLock<RowConv> = std::sync::OnceLock::new();
    BEST.get_or_init(|| select(crate::CpuFeatures::detect().best()))
}

/// `dst[i]` = f16 value `i` of `src` (little-endian; `src` holds at least
/// `2 * dst.len()` bytes), with this CPU's fastest conversion.
pub fn f16_to_f32_row(src: &[u8], dst: &mut [f32]) {
    (best().f16_to_f32)(src, dst)
}

/// `dst` = `src` as little-endian f16, rounded to nearest even (`dst` holds at
/// least `2 * src.len()` bytes), with this CPU's fastest conversion.
pub fn f32_to_f16_row(src: &[f32], dst: &mut [u8]) {
    (best().f32_to_f16)(src, dst)
}

/// `dst[i]` = bf16 value `i` of `src` (little-endian; `src` holds at least
/// `2 * dst.len()` bytes), with this CPU's fastest conversion.
pub fn bf16_to_f32_row(src: &[u8], dst: &mut [f32]) {
    (best().bf16_to_f32)(src, dst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{backends, Rng};

    /// Every f16 bit pattern plus random f32 values, through every backend.
    #[test]
    fn all_backends_convert_like_half() {
        let all: Vec<u8> = (0..=u16::MAX).flat_map(|b| b.to_le_bytes()).collect();
        let mut rng = Rng::new(3);
        let mut xs = rng.normals(1000, 1000.0);
        xs.extend(rng.normals(1000, 1e-5)); // f16 subnormals
        xs.extend([
            0.0,
            -0.0,
            65504.0,
            65520.0,
            -1e9,
            f32::INFINITY,
            1e-8,
            5.96e-8,
        ]);
        for b in backends() {
            let c = select(b);
            for n in [0usize, 1, 7, 8, 9, 65536] {
                let mut got = vec![0f32; n];
                (c.f16_to_f32)(&all, &mut got);
                for (i, g) in got.iter().enumerate() {
                    let want = half::f16::from_bits(i as u16).to_f32();
                    let same = g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan());
                    assert!(same, "{b}: f16 {i:#06x} → {g} want {want}");
                }
                let mut got = vec![0f32; n];
                (c.bf16_to_f32)(&all, &mut got);
                for (i, g) in got.iter().enumerate() {
                    assert_eq!(g.to_bits(), (i as u32) << 16, "{b}: bf16 {i:#06x}");
                }
            }
            for n in [0usize, 3, 8, 13, xs.len()] {
                let mut got = vec![0u8; 2 * n];
                (c.f32_to_f16)(&xs[..n], &mut got);
                for (i, g) in got.chunks_exact(2).enumerate() {
                    let want = half::f16::from_f32(xs[i]).to_bits();
                    assert_eq!(u16::from_le_bytes([g[0], g[1]]), want, "{b}: f32 {}", xs[i]);
                }
            }
        }
    }

    #[test]
    fn bf16_rounding_is_ggml_s() {
        assert_eq!(f32_to_bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 is a tie between 0x3f80 and 0x3f81: to even.
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16_bits(f32::NAN) & 0x7fc0, 0x7fc0);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16_bits(f32::MAX), 0x7f80); // rounds up to inf
        for v in [0.5f32, -3.25, 1e-39, 3e38] {
            assert_eq!(
                f32_to_bf16_bits(v),
                half::bf16::from_f32(v).to_bits(),
                "{v}"
            );
        }
    }

    #[test]
    fn scale_helpers_match_half() {
        for bits in (0..=u16::MAX).step_by(7) {
            let want = half::f16::from_bits(bits).to_f32();
            let check =
                |got: f32| got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan());
            assert!(check(f16_bits_to_f32(bits)));
            #[cfg(target_arch = "aarch64")]
            assert!(check(neon::h2f(bits)), "{bits:#x}");
        }
    }
}
