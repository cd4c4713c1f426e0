//! NEON (ARMv8.0 Advanced SIMD) versions of the element-wise kernels: four
//! `float32x4_t` hold the 16 lanes of the scalar twin, so every result is the
//! same bits as [`super::scalar`]. f16 rows are widened with `fcvtl`
//! ([`crate::f16conv::neon::load8_f16`]).

use super::scalar;
use super::scalar::exp_consts as k;
use crate::f16conv::neon::load8_f16;
use core::arch::aarch64::*;
use half::f16;

/// ggml's vector `exp` on 4 lanes (`ggml_v_expf`, with the AVX-512 form's
/// polynomial and a once-rounded `2^n` scaling in two exact steps).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn exp4(x: float32x4_t) -> float32x4_t {
    let r = vdupq_n_f32(k::SHIFT);
    let z = vfmaq_f32(r, x, vdupq_n_f32(k::LOG2E));
    let n = vsubq_f32(z, r);
    let b = vfmsq_f32(
        vfmsq_f32(x, n, vdupq_n_f32(k::LN2_HI)),
        n,
        vdupq_n_f32(k::LN2_LO),
    );
    let u = vmulq_f32(b, b);
    let t54 = vfmaq_f32(vdupq_n_f32(k::C4), vdupq_n_f32(k::C5), b);
    let t32 = vfmaq_f32(vdupq_n_f32(k::C2), vdupq_n_f32(k::C3), b);
    let p = vfmaq_f32(t32, t54, u);
    let q = vfmaq_f32(vdupq_n_f32(1.0), vdupq_n_f32(k::C1), b);
    let j = vfmaq_f32(q, p, u);
    let ni = vcvtq_s32_f32(n);
    let n1 = vshrq_n_s32::<1>(ni);
    let n2 = vsubq_s32(ni, n1);
    let bias = vdupq_n_s32(127);
    let k1 = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(n1, bias)));
    let k2 = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(n2, bias)));
    let res = vmulq_f32(vmulq_f32(j, k1), k2);
    let big = vcagtq_f32(n, vdupq_n_f32(192.0));
    let le0 = vclezq_f32(n);
    let alt = vbslq_f32(le0, vdupq_n_f32(0.0), vdupq_n_f32(f32::INFINITY));
    vbslq_f32(big, alt, res)
}

#[inline]
#[target_feature(enable = "neon")]
fn silu4(x: float32x4_t) -> float32x4_t {
    vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), exp4(vnegq_f32(x))))
}

/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn silu(x: &[f32], out: &mut [f32]) {
    let n = x.len().min(out.len());
    let n4 = n / 4 * 4;
    for i in (0..n4).step_by(4) {
        // SAFETY: i + 4 <= n for both slices.
        unsafe { vst1q_f32(out.as_mut_ptr().add(i), silu4(vld1q_f32(x.as_ptr().add(i)))) };
    }
    scalar::silu(&x[n4..n], &mut out[n4..n]);
}

/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let n = gate.len().min(up.len()).min(out.len());
    let n4 = n / 4 * 4;
    for i in (0..n4).step_by(4) {
        // SAFETY: i + 4 <= n for all three slices.
        unsafe {
            let g = vld1q_f32(gate.as_ptr().add(i));
            let u = vld1q_f32(up.as_ptr().add(i));
            vst1q_f32(out.as_mut_ptr().add(i), vmulq_f32(silu4(g), u));
        }
    }
    scalar::swiglu(&gate[n4..n], &up[n4..n], &mut out[n4..n]);
}

/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn exp_sum(x: &mut [f32], max: f32) -> f64 {
    let m = vdupq_n_f32(max);
    let mut sum = 0f64;
    let mut chunks = x.chunks_exact_mut(16);
    for c in &mut chunks {
        let mut l = [0f32; 16];
        for q in 0..4 {
            // SAFETY: c and l have 16 elements; q * 4 + 4 <= 16.
            unsafe {
                let v = exp4(vsubq_f32(vld1q_f32(c.as_ptr().add(4 * q)), m));
                vst1q_f32(c.as_mut_ptr().add(4 * q), v);
                vst1q_f32(l.as_mut_ptr().add(4 * q), v);
            }
        }
        sum += scalar::tree16(&l) as f64;
    }
    scalar::exp_sum_tail(chunks.into_remainder(), max, sum)
}

/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let full = n / 16 * 16;
    let mut acc = [vdupq_n_f32(0.0); 4];
    for i in (0..full).step_by(16) {
        for (q, s) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16 <= n for both slices.
            unsafe {
                let p = vmulq_f32(
                    vld1q_f32(a.as_ptr().add(i + 4 * q)),
                    vld1q_f32(b.as_ptr().add(i + 4 * q)),
                );
                *s = vaddq_f32(*s, p);
            }
        }
    }
    let mut l = [0f32; 16];
    for (q, s) in acc.iter().enumerate() {
        // SAFETY: l holds 16 floats.
        unsafe { vst1q_f32(l.as_mut_ptr().add(4 * q), *s) };
    }
    scalar::dot_tail(&a[full..n], &b[full..n], &mut l);
    scalar::tree16(&l)
}

/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let n4 = n / 4 * 4;
    let va = vdupq_n_f32(a);
    for i in (0..n4).step_by(4) {
        // SAFETY: i + 4 <= n for both slices.
        unsafe {
            let py = y.as_mut_ptr().add(i);
            let p = vmulq_f32(va, vld1q_f32(x.as_ptr().add(i)));
            vst1q_f32(py, vaddq_f32(vld1q_f32(py), p));
        }
    }
    scalar::axpy(a, &x[n4..n], &mut y[n4..n]);
}

/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn dot_f16(q: &[f32], k: &[f16]) -> f32 {
    let n = q.len().min(k.len());
    let full = n / 16 * 16;
    let mut acc = [vdupq_n_f32(0.0); 4];
    for i in (0..full).step_by(16) {
        // SAFETY: i + 16 <= n for both slices (16 f16 = 32 bytes).
        unsafe {
            let pk = k.as_ptr().add(i) as *const u8;
            let (k0, k1) = load8_f16(pk);
            let (k2, k3) = load8_f16(pk.add(16));
            for (qi, (s, kv)) in acc.iter_mut().zip([k0, k1, k2, k3]).enumerate() {
                *s = vaddq_f32(*s, vmulq_f32(vld1q_f32(q.as_ptr().add(i + 4 * qi)), kv));
            }
        }
    }
    let mut l = [0f32; 16];
    for (qi, s) in acc.iter().enumerate() {
        // SAFETY: l holds 16 floats.
        unsafe { vst1q_f32(l.as_mut_ptr().add(4 * qi), *s) };
    }
    scalar::dot_f16_tail(&q[full..n], &k[full..n], &mut l);
    scalar::tree16(&l)
}

/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn axpy_f16(w: f32, v: &[f16], out: &mut [f32]) {
    let n = v.len().min(out.len());
    let n8 = n / 8 * 8;
    let vw = vdupq_n_f32(w);
    for i in (0..n8).step_by(8) {
        // SAFETY: i + 8 <= n for both slices (8 f16 = 16 bytes).
        unsafe {
            let (lo, hi) = load8_f16(v.as_ptr().add(i) as *const u8);
            let po = out.as_mut_ptr().add(i);
            vst1q_f32(po, vaddq_f32(vld1q_f32(po), vmulq_f32(vw, lo)));
            vst1q_f32(
                po.add(4),
                vaddq_f32(vld1q_f32(po.add(4)), vmulq_f32(vw, hi)),
            );
        }
    }
    scalar::axpy_f16(w, &v[n8..n], &mut out[n8..n]);
}
