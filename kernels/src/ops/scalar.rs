//! The scalar twins of the SIMD element-wise kernels: always compiled, the
//! reference every SIMD path must equal **bit for bit**.
//!
//! Two arithmetic choices make that possible:
//!
//! - Sums use a fixed 16-lane layout: element `i` goes to lane `i % 16`, each
//!   lane accumulates with an unfused multiply then add, and the 16 lanes are
//!   reduced by [`tree16`] (the halving order of `_mm512_reduce_add_ps`). An
//!   AVX-512 register, two AVX2 registers or four NEON registers hold the same
//!   16 lanes and do the same operations in the same order.
//! - `exp` is [`expf`]: ggml-cpu's vector `ggml_v_expf` (the Arm optimized-
//!   routines polynomial, as in its AVX-512 form) with fused multiply-adds,
//!   which every backend has (`f32::mul_add` here, `vfmaq_f32`, `vfmadd`).

/// `0x1.8p23`: adding it rounds a float to an integer in the low mantissa bits.
const EXP_SHIFT: f32 = 12_582_912.0;
/// `0x1.715476p+0` = log2(e) rounded to f32.
const LOG2E: f32 = f32::from_bits(0x3FB8_AA3B);
/// `0x1.62e4p-1`: ln 2, high part.
const LN2_HI: f32 = f32::from_bits(0x3F31_7200);
/// `0x1.7f7d1cp-20`: ln 2, low part.
const LN2_LO: f32 = f32::from_bits(0x35BF_BE8E);
/// Polynomial coefficients of `exp(b) - 1` on `|b| <= ln2/2`, highest last.
const EXP_C1: f32 = f32::from_bits(0x3F7F_FFF6); // 0x1.ffffecp-1
const EXP_C2: f32 = f32::from_bits(0x3EFF_FEDB); // 0x1.fffdb6p-2
const EXP_C3: f32 = f32::from_bits(0x3E2A_AF33); // 0x1.555e66p-3
const EXP_C4: f32 = f32::from_bits(0x3D2B_9F17); // 0x1.573e2ep-5
const EXP_C5: f32 = f32::from_bits(0x3C07_2010); // 0x1.0e4020p-7

/// The constants, for the SIMD versions (same values, one place).
pub(crate) mod exp_consts {
    pub(crate) const SHIFT: f32 = super::EXP_SHIFT;
    pub(crate) const LOG2E: f32 = super::LOG2E;
    pub(crate) const LN2_HI: f32 = super::LN2_HI;
    pub(crate) const LN2_LO: f32 = super::LN2_LO;
    pub(crate) const C1: f32 = super::EXP_C1;
    pub(crate) const C2: f32 = super::EXP_C2;
    pub(crate) const C3: f32 = super::EXP_C3;
    pub(crate) const C4: f32 = super::EXP_C4;
    pub(crate) const C5: f32 = super::EXP_C5;
}

/// `e^x` as ggml-cpu computes it in its vector loops (`ggml_v_expf`): max error
/// 1.45 ulp + 0.5; above 88.38 → +inf, below −103.97 → 0 (through subnormals).
///
/// `x = n·ln2 + b` with `n = round(x·log2e)`, `e^b ≈ 1 + c1·b + … + c5·b⁵`
/// evaluated with fused multiply-adds, then scaled by `2^n` with one correct
/// rounding (as `_mm512_scalef_ps`). `|n| > 192` gives 0 or +inf.
#[inline]
pub fn expf(x: f32) -> f32 {
    let z = x.mul_add(LOG2E, EXP_SHIFT);
    let n = z - EXP_SHIFT;
    let b = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let u = b * b;
    let j = EXP_C5
        .mul_add(b, EXP_C4)
        .mul_add(u, EXP_C3.mul_add(b, EXP_C2))
        .mul_add(u, EXP_C1.mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // j·2^n rounded once: the f64 product is exact (24-bit j, |n| <= 192), the
    // cast to f32 rounds to nearest even, subnormals and overflow included.
    let scale = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    (j as f64 * scale) as f32
}

/// Sum of 16 lanes in the fixed halving order shared by every backend:
/// `l[i] + l[i+8]`, then `+4`, then `+2`, then `+1`.
#[inline]
pub fn tree16(l: &[f32; 16]) -> f32 {
    let mut t8 = [0f32; 8];
    for i in 0..8 {
        t8[i] = l[i + 8] + l[i];
    }
    let mut t4 = [0f32; 4];
    for i in 0..4 {
        t4[i] = t8[i + 4] + t8[i];
    }
    let t2 = [t4[0] + t4[2], t4[1] + t4[3]];
    t2[0] + t2[1]
}

/// SiLU `x / (1 + e^-x)` per element (ggml `ggml_v_silu`).
pub fn silu(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v / (1.0 + expf(-v));
    }
}

/// SwiGLU `silu(gate) * up` per element (ggml `ggml_vec_swiglu_f32`).
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + expf(-g)) * u;
    }
}

/// `x[i] = e^(x[i] - max)` in place; returns the sum in the order ggml's
/// AVX-512 build uses: each 16-element chunk reduced by [`tree16`] in f32 and
/// added to an f64, then the tail elements one by one in f64.
pub fn exp_sum(x: &mut [f32], max: f32) -> f64 {
    let mut sum = 0f64;
    let mut chunks = x.chunks_exact_mut(16);
    for c in &mut chunks {
        let mut l = [0f32; 16];
        for (i, v) in c.iter_mut().enumerate() {
            *v = expf(*v - max);
            l[i] = *v;
        }
        sum += tree16(&l) as f64;
    }
    exp_sum_tail(chunks.into_remainder(), max, sum)
}

/// The tail part of [`exp_sum`] (fewer than 16 elements), shared by the SIMD versions.
#[inline]
pub(crate) fn exp_sum_tail(tail: &mut [f32], max: f32, mut sum: f64) -> f64 {
    for v in tail {
        *v = expf(*v - max);
        sum += *v as f64;
    }
    sum
}

/// `Σ a[i]·b[i]` in the 16-lane order (see the module doc).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut l = [0f32; 16];
    let full = n / 16 * 16;
    for (ca, cb) in a[..full].chunks_exact(16).zip(b[..full].chunks_exact(16)) {
        for i in 0..16 {
            l[i] += ca[i] * cb[i];
        }
    }
    dot_tail(&a[full..n], &b[full..n], &mut l);
    tree16(&l)
}

/// Adds the tail products (fewer than 16) to lanes `0..tail` (shared by the SIMD versions).
#[inline]
pub(crate) fn dot_tail(a: &[f32], b: &[f32], l: &mut [f32; 16]) {
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        l[i] += x * y;
    }
}

/// `y[i] += a * x[i]` (unfused multiply, then add).
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// `Σ q[i]·k[i]` for an f32 query and an f16 key row, in the 16-lane order.
pub fn dot_f16(q: &[f32], k: &[half::f16]) -> f32 {
    let n = q.len().min(k.len());
    let mut l = [0f32; 16];
    let full = n / 16 * 16;
    for (cq, ck) in q[..full].chunks_exact(16).zip(k[..full].chunks_exact(16)) {
        for i in 0..16 {
            l[i] += cq[i] * ck[i].to_f32();
        }
    }
    dot_f16_tail(&q[full..n], &k[full..n], &mut l);
    tree16(&l)
}

/// Adds the tail products of [`dot_f16`] to lanes `0..tail`.
#[inline]
pub(crate) fn dot_f16_tail(q: &[f32], k: &[half::f16], l: &mut [f32; 16]) {
    for (i, (&x, &y)) in q.iter().zip(k).enumerate() {
        l[i] += x * y.to_f32();
    }
}

/// `out[i] += w * v[i]` for an f16 value row (unfused multiply, then add).
pub fn axpy_f16(w: f32, v: &[half::f16], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(v) {
        *o += w * x.to_f32();
    }
}
