//! Softmax as ggml-cpu's `ggml_compute_forward_soft_max_f32`:
//!
//! ```text
//! w[i]  = x[i]*scale (+ mask[i])       // the scaled, masked scores
//! max   = max_i w[i]
//! y[i]  = exp(w[i] - max)              // ggml's vector exp, see ops::scalar::expf
//! sum   = Σ y[i]                       // f64, 16-element chunks reduced in f32 first
//! y[i] *= (float)(1.0 / sum)
//! ```
//!
//! A row whose every entry is masked (`-inf`) has no defined softmax; ggml
//! asserts on it. Here it comes out as all zeros.

use super::Ops;

/// In-place softmax of one row with the process-wide kernels ([`Ops::get`]).
pub fn softmax(x: &mut [f32]) {
    softmax_with(Ops::get(), x, 1.0, None)
}

/// In-place `softmax(x*scale + mask)` of one row (attention scores: `scale` is
/// usually `1/sqrt(head_dim)`, `mask` holds 0 or `-inf` per key position).
pub fn softmax_ext(x: &mut [f32], scale: f32, mask: Option<&[f32]>) {
    softmax_with(Ops::get(), x, scale, mask)
}

/// [`softmax_ext`] with an explicit kernel table.
pub fn softmax_with(ops: &Ops, x: &mut [f32], scale: f32, mask: Option<&[f32]>) {
    if scale != 1.0 {
        for v in x.iter_mut() {
            *v *= scale;
        }
    }
    if let Some(m) = mask {
        debug_assert_eq!(m.len(), x.len());
        for (v, &mv) in x.iter_mut().zip(m) {
            *v += mv;
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &v in x.iter() {
        max = if v > max { v } else { max };
    }
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let sum = ops.exp_sum(x, max);
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}
