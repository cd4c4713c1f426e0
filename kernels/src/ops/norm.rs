//! RMSNorm, in ggml-cpu's order of operations (`ggml_compute_forward_rms_norm_f32`
//! followed by the `ggml_mul` with the weight):
//!
//! ```text
//! sum   = Σ (double)(x[i]*x[i])        // each square in f32, summed in f64, in order
//! mean  = (float)(sum / n)
//! scale = 1.0f / sqrtf(mean + eps)
//! out[i] = (x[i] * scale) * w[i]
//! ```
//!
//! Every step is IEEE-exact and in a fixed order, so the result is bit-identical
//! to ggml's on every CPU. (The f64 sum is a serial chain of `n` additions: a
//! few microseconds for a 4096-wide row, negligible next to a matrix-vector product.)

/// `out[i] = x[i] / sqrt(mean(x²) + eps) * w[i]`. `x`, `w`, `out`: one row of `n`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    debug_assert!(x.len() == w.len() && x.len() == out.len());
    let scale = rms_scale(x, eps);
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// [`rms_norm`] in place.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    debug_assert_eq!(x.len(), w.len());
    let scale = rms_scale(x, eps);
    for (v, &g) in x.iter_mut().zip(w) {
        *v = *v * scale * g;
    }
}

/// `1 / sqrt(mean(x²) + eps)` as ggml computes it (the f64 sum of f32 squares).
pub fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mut sum = 0f64;
    for &v in x {
        sum += (v * v) as f64;
    }
    let mean = (sum / x.len().max(1) as f64) as f32;
    1.0 / (mean + eps).sqrt()
}
