//! Rotary position embeddings, as ggml-cpu's `ggml_compute_forward_rope_flt`.
//!
//! For position `p`, pair `k` (`i0 = 2k`, `k < n_dims/2`) is rotated by
//!
//! ```text
//! theta_scale = powf(freq_base, -2.0f/n_dims)
//! theta_k     = p · theta_scale^k          // as ggml: theta *= theta_scale, iteratively
//! theta       = theta_k / freq_factors[k]  // Llama 3.1 `rope_freqs`, if any
//! (cos, sin)  = rope_yarn(theta)           // freq_scale / YaRN ramp; plain when ext_factor = 0
//! ```
//!
//! and the pair is `(x[i0], x[i0+1])` in [`RopeMode::Normal`] (Llama) or
//! `(x[k], x[k + n_dims/2])` in [`RopeMode::Neox`] (Qwen, Gemma). Dimensions
//! at and past `n_dims` (partial rotation) are left as they are.
//!
//! The cos/sin of a position do not depend on the head: a model builds one
//! [`RopeCache`] per (layer kind, position) — [`RopeCache::set_position`] —
//! and applies it to every query and key head.

/// How the rotated pairs are laid out in a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    /// Adjacent pairs `(x[2k], x[2k+1])` (ggml `GGML_ROPE_TYPE_NORMAL`, Llama).
    Normal,
    /// Halves `(x[k], x[k + n_dims/2])` (ggml `GGML_ROPE_TYPE_NEOX`, Qwen2/3, Gemma 3).
    Neox,
}

/// RoPE hyper-parameters, with ggml's meaning (`ggml_rope_ext`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeParams {
    pub mode: RopeMode,
    /// Rotated dimensions per head (`n_rot`): even, at most the head size.
    pub n_dims: usize,
    /// `rope.freq_base` (10000, 500000, 1000000, …).
    pub freq_base: f32,
    /// Linear position scaling (`1 / rope.scaling.factor`); 1 = none.
    pub freq_scale: f32,
    /// YaRN extrapolation mix; 0 = plain RoPE.
    pub ext_factor: f32,
    /// Magnitude scaling of cos/sin (YaRN `attn_factor`); 1 = none.
    pub attn_factor: f32,
    /// YaRN ramp: rotations per context at which extrapolation starts (ggml default 32).
    pub beta_fast: f32,
    /// YaRN ramp: rotations per context at which interpolation is full (ggml default 1).
    pub beta_slow: f32,
    /// Context length the model was trained with (YaRN only).
    pub n_ctx_orig: u32,
}

impl RopeParams {
    /// Plain RoPE: no scaling, no YaRN.
    pub fn new(mode: RopeMode, n_dims: usize, freq_base: f32) -> RopeParams {
        RopeParams {
            mode,
            n_dims,
            freq_base,
            freq_scale: 1.0,
            ext_factor: 0.0,
            attn_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            n_ctx_orig: 0,
        }
    }
}

/// Invalid RoPE parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RopeError {
    #[error("RoPE rotates {0} dimensions: must be even and non-zero")]
    OddDims(usize),
    #[error("RoPE frequency factors: {got} given, {need} needed (n_dims/2)")]
    FreqFactors { got: usize, need: usize },
    #[error("RoPE freq_base {0} must be finite and > 0")]
    FreqBase(f32),
}

/// The cos/sin of one position for every rotated pair, built once per token
/// and applied to all heads. Holds `n_dims` floats: `[cos₀, sin₀, cos₁, sin₁, …]`.
#[derive(Clone, Debug)]
pub struct RopeCache {
    params: RopeParams,
    theta_scale: f32,
    corr_dims: [f32; 2],
    /// `n_dims / 2` divisors of θ, or empty.
    freq_factors: Vec<f32>,
    /// `[n_dims]`: cos, sin per pair.
    cos_sin: Vec<f32>,
}

impl RopeCache {
    /// A cache for `params` (and optional per-pair frequency factors), at position 0.
    pub fn new(params: RopeParams, freq_factors: Option<&[f32]>) -> Result<RopeCache, RopeError> {
        let n = params.n_dims;
        if n == 0 || !n.is_multiple_of(2) {
            return Err(RopeError::OddDims(n));
        }
        if !(params.freq_base.is_finite() && params.freq_base > 0.0) {
            return Err(RopeError::FreqBase(params.freq_base));
        }
        let freq_factors = match freq_factors {
            Some(ff) if ff.len() < n / 2 => {
                return Err(RopeError::FreqFactors {
                    got: ff.len(),
                    need: n / 2,
                })
            }
            Some(ff) => ff[..n / 2].to_vec(),
            None => Vec::new(),
        };
        let mut c = RopeCache {
            params,
            theta_scale: params.freq_base.powf(-2.0 / n as f32),
            corr_dims: yarn_corr_dims(
                n as i32,
                params.n_ctx_orig as i32,
                params.freq_base,
                params.beta_fast,
                params.beta_slow,
            ),
            freq_factors,
            cos_sin: vec![0.0; n],
        };
        c.set_position(0);
        Ok(c)
    }

    /// The parameters.
    pub fn params(&self) -> &RopeParams {
        &self.params
    }

    /// Recomputes cos/sin for position `pos` (ggml `ggml_rope_cache_init`). No allocation.
    pub fn set_position(&mut self, pos: i32) {
        let p = &self.params;
        let mut theta = pos as f32;
        for (k, cs) in self.cos_sin.chunks_exact_mut(2).enumerate() {
            let ff = self.freq_factors.get(k).copied().unwrap_or(1.0);
            let (c, s) = rope_yarn(
                theta / ff,
                p.freq_scale,
                self.corr_dims,
                2 * k,
                p.ext_factor,
                p.attn_factor,
            );
            cs[0] = c;
            cs[1] = s;
            theta *= self.theta_scale;
        }
    }

    /// `[cos₀, sin₀, cos₁, sin₁, …]` of the current position.
    pub fn cos_sin(&self) -> &[f32] {
        &self.cos_sin
    }

    /// Rotates one head in place (`head.len() >= n_dims`; the rest is untouched).
    pub fn apply(&self, head: &mut [f32]) {
        let n = self.params.n_dims;
        debug_assert!(head.len() >= n);
        match self.params.mode {
            RopeMode::Normal => {
                for (x, cs) in head[..n]
                    .chunks_exact_mut(2)
                    .zip(self.cos_sin.chunks_exact(2))
                {
                    let (x0, x1) = (x[0], x[1]);
                    (x[0], x[1]) = rotate(x0, x1, cs[0], cs[1]);
                }
            }
            RopeMode::Neox => {
                let (lo, hi) = head[..n].split_at_mut(n / 2);
                for ((a, b), cs) in lo
                    .iter_mut()
                    .zip(hi.iter_mut())
                    .zip(self.cos_sin.chunks_exact(2))
                {
                    let (x0, x1) = (*a, *b);
                    (*a, *b) = rotate(x0, x1, cs[0], cs[1]);
                }
            }
        }
    }

    /// Rotates every head of `x` (`[n_heads][head_dim]`) in place.
    pub fn apply_heads(&self, x: &mut [f32], head_dim: usize) {
        debug_assert!(head_dim >= self.params.n_dims && x.len().is_multiple_of(head_dim));
        for head in x.chunks_exact_mut(head_dim) {
            self.apply(head);
        }
    }
}

/// Rotates the pair `(x0, x1)` by the angle whose cos and sin are given, with
/// the fused multiply-adds GCC makes of ggml's `x0*cos - x1*sin` and
/// `x0*sin + x1*cos` (`-ffp-contract=fast`, the GNU C/C++ default, on FMA
/// hardware: x86 builds with `-march=native` and every aarch64 build). With plain
/// multiplies ~15% of the outputs would differ from llama.cpp's by an ulp.
#[inline]
fn rotate(x0: f32, x1: f32, cos: f32, sin: f32) -> (f32, f32) {
    (x0.mul_add(cos, -(x1 * sin)), x0.mul_add(sin, x1 * cos))
}

/// ggml's `rope_yarn_ramp`.
fn yarn_ramp(low: f32, high: f32, i0: usize) -> f32 {
    let y = ((i0 / 2) as f32 - low) / (high - low).max(0.001);
    1.0 - y.clamp(0.0, 1.0)
}

/// ggml's `rope_yarn`: cos and sin of the (possibly YaRN-corrected) angle.
fn rope_yarn(
    theta_extrap: f32,
    freq_scale: f32,
    corr_dims: [f32; 2],
    i0: usize,
    ext_factor: f32,
    mut mscale: f32,
) -> (f32, f32) {
    let theta_interp = freq_scale * theta_extrap;
    let mut theta = theta_interp;
    if ext_factor != 0.0 {
        let ramp_mix = yarn_ramp(corr_dims[0], corr_dims[1], i0) * ext_factor;
        // Fused as GCC contracts ggml's `theta_interp*(1 - ramp_mix) + theta_extrap*ramp_mix`
        // and `1.0f + 0.1f*logf(1.0f/freq_scale)` (checked against ggml's YaRN golden).
        theta = theta_interp.mul_add(1.0 - ramp_mix, theta_extrap * ramp_mix);
        mscale *= 0.1f32.mul_add((1.0 / freq_scale).ln(), 1.0);
    }
    (theta.cos() * mscale, theta.sin() * mscale)
}

/// ggml's `ggml_rope_yarn_corr_dims`: the first and last dimension of the YaRN ramp.
fn yarn_corr_dims(
    n_dims: i32,
    n_ctx_orig: i32,
    base: f32,
    beta_fast: f32,
    beta_slow: f32,
) -> [f32; 2] {
    let corr_dim = |n_rot: f32| {
        n_dims as f32 * (n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln()
            / (2.0 * base.ln())
    };
    let start = corr_dim(beta_fast).floor();
    let end = corr_dim(beta_slow).ceil();
    [start.max(0.0), end.min((n_dims - 1) as f32)]
}
