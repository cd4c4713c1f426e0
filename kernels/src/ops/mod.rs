//! The element-wise math of a transformer layer, in ggml-cpu's order of
//! operations so that pistil's activations track llama.cpp's:
//!
//! - [`rms_norm`]: `x / sqrt(mean(x²) + eps) * w`, the sum of squares in f64
//!   as ggml does.
//! - [`softmax`]: max-subtracted, ggml's vector `exp`, f64 sum, optional
//!   scale and additive mask (attention).
//! - [`rope`]: rotary embeddings, normal (adjacent pairs) and NeoX (halves),
//!   with ggml's θ recurrence, frequency factors (Llama 3.1 `rope_freqs`),
//!   partial rotation and YaRN; a per-position cos/sin cache is built once
//!   per token and applied to every head.
//! - [`gelu`]: GELU (tanh form) exact in f32, or as ggml-cpu computes it
//!   (input rounded to f16, looked up in a 65,536-entry f16 table), plain and
//!   gated (GEGLU).
//! - [`Ops`]: the SIMD-dispatched kernels: SiLU and SwiGLU, the softmax core,
//!   f32 `dot`/`axpy`, and the attention helpers over an f16 KV cache
//!   (`dot_f16`: f32 query · f16 key row; `axpy_f16`: `out += w · v_row`).
//!   Every backend computes the same bits as the scalar twin ([`scalar`]).
//! - [`add`], [`mul`], [`scale`]: in place.
//!
//! Slices of unequal length are a programming error: the functions process
//! the common prefix (`min` of the lengths) and check with `debug_assert!`.

pub mod gelu;
pub mod norm;
pub mod rope;
pub mod scalar;
pub mod softmax;

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

pub use gelu::{geglu, geglu_exact, gelu, gelu_exact};
pub use norm::{rms_norm, rms_norm_inplace};
pub use rope::{RopeCache, RopeMode, RopeParams};
pub use softmax::{softmax, softmax_ext};

use crate::dispatch::{Backend, CpuFeatures, DispatchError, Kernels};
use half::f16;
use std::sync::OnceLock;

type UnaryFn = fn(&[f32], &mut [f32]);
type BinaryFn = fn(&[f32], &[f32], &mut [f32]);
type ExpSumFn = fn(&mut [f32], f32) -> f64;
type DotFn = fn(&[f32], &[f32]) -> f32;
type AxpyFn = fn(f32, &[f32], &mut [f32]);
type DotF16Fn = fn(&[f32], &[f16]) -> f32;
type AxpyF16Fn = fn(f32, &[f16], &mut [f32]);

/// The SIMD-dispatched element-wise kernels for one backend. All backends
/// give bit-identical results (see [`scalar`]); the SIMD ones are just faster.
#[derive(Clone, Copy)]
pub struct Ops {
    /// The backend the table was built for.
    pub backend: Backend,
    /// Which implementation the kernels actually use (the best one at or below
    /// `backend`: `Dotprod` uses the NEON code).
    pub path: Backend,
    silu: UnaryFn,
    swiglu: BinaryFn,
    exp_sum: ExpSumFn,
    dot: DotFn,
    axpy: AxpyFn,
    dot_f16: DotF16Fn,
    axpy_f16: AxpyF16Fn,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .finish()
    }
}

static OPS: OnceLock<Ops> = OnceLock::new();

impl Ops {
    /// The process-wide table, for the backend of [`Kernels::try_get`] (the
    /// detected CPU or `PISTIL_KERNELS`); the best supported backend if that
    /// override is invalid (the kernel table reports that error itself).
    pub fn get() -> &'static Ops {
        OPS.get_or_init(|| {
            let b = match Kernels::try_get() {
                Ok(k) => k.backend,
                Err(_) => CpuFeatures::detect().best(),
            };
            // `b` is supported by construction, so the fallback is never taken.
            Ops::for_backend(b).unwrap_or_else(|_| Ops::scalar())
        })
    }

    /// The table for an explicit backend (an error if this CPU cannot run it).
    pub fn for_backend(backend: Backend) -> Result<Ops, DispatchError> {
        let features = CpuFeatures::detect();
        if !features.supports(backend) {
            return Err(DispatchError::Unsupported {
                requested: backend,
                arch: features.arch,
                have: features.names().join(", "),
            });
        }
        Ok(Ops::select(backend))
    }

    /// The portable scalar table.
    pub fn scalar() -> Ops {
        Ops {
            backend: Backend::Scalar,
            path: Backend::Scalar,
            silu: scalar::silu,
            swiglu: scalar::swiglu,
            exp_sum: scalar::exp_sum,
            dot: scalar::dot,
            axpy: scalar::axpy,
            dot_f16: scalar::dot_f16,
            axpy_f16: scalar::axpy_f16,
        }
    }

    fn select(backend: Backend) -> Ops {
        #[cfg(target_arch = "x86_64")]
        {
            if backend >= Backend::Avx2 {
                return x86_table(backend);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if matches!(backend, Backend::Neon | Backend::Dotprod) {
                return neon_table(backend);
            }
        }
        Ops {
            backend,
            ..Ops::scalar()
        }
    }

    /// SiLU `x·σ(x)` of every element of `x` into `out`.
    #[inline]
    pub fn silu(&self, x: &[f32], out: &mut [f32]) {
        debug_assert_eq!(x.len(), out.len());
        (self.silu)(x, out)
    }

    /// SiLU in place.
    #[inline]
    pub fn silu_inplace(&self, x: &mut [f32]) {
        // The kernels take separate input and output slices: go through a small
        // stack buffer, one chunk at a time (no allocation).
        let mut buf = [0f32; 256];
        for c in x.chunks_mut(256) {
            let b = &mut buf[..c.len()];
            (self.silu)(c, b);
            c.copy_from_slice(b);
        }
    }

    /// SwiGLU `silu(gate) * up` into `out` (ggml `swiglu`).
    #[inline]
    pub fn swiglu(&self, gate: &[f32], up: &[f32], out: &mut [f32]) {
        debug_assert!(gate.len() == up.len() && up.len() == out.len());
        (self.swiglu)(gate, up, out)
    }

    /// SwiGLU in place: `gate[i] = silu(gate[i]) * up[i]`.
    #[inline]
    pub fn swiglu_inplace(&self, gate: &mut [f32], up: &[f32]) {
        debug_assert_eq!(gate.len(), up.len());
        let mut buf = [0f32; 256];
        for (g, u) in gate.chunks_mut(256).zip(up.chunks(256)) {
            let b = &mut buf[..g.len()];
            (self.swiglu)(g, u, b);
            g.copy_from_slice(b);
        }
    }

    /// `x[i] = e^(x[i] - max)`; returns `Σ x[i]` in f64 (the softmax core).
    #[inline]
    pub fn exp_sum(&self, x: &mut [f32], max: f32) -> f64 {
        (self.exp_sum)(x, max)
    }

    /// `Σ a[i]·b[i]`.
    #[inline]
    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        (self.dot)(a, b)
    }

    /// `y[i] += a·x[i]`.
    #[inline]
    pub fn axpy(&self, a: f32, x: &[f32], y: &mut [f32]) {
        debug_assert_eq!(x.len(), y.len());
        (self.axpy)(a, x, y)
    }

    /// Attention score: `Σ q[i]·k[i]` of an f32 query with an f16 key row.
    #[inline]
    pub fn dot_f16(&self, q: &[f32], k: &[f16]) -> f32 {
        debug_assert_eq!(q.len(), k.len());
        (self.dot_f16)(q, k)
    }

    /// Attention output: `out[i] += w·v[i]` for an f16 value row.
    #[inline]
    pub fn axpy_f16(&self, w: f32, v: &[f16], out: &mut [f32]) {
        debug_assert_eq!(v.len(), out.len());
        (self.axpy_f16)(w, v, out)
    }
}

/// A safe wrapper around a `#[target_feature]` kernel, for the table.
macro_rules! wrap {
    ($name:ident, $f:path, ($($a:ident: $t:ty),*) $(-> $r:ty)?) => {
        fn $name($($a: $t),*) $(-> $r)? {
            // SAFETY: the table holding this wrapper is built (`Ops::select`) only for
            // a backend that `CpuFeatures::supports` confirmed on this CPU, which
            // implies every feature the kernel is compiled for.
            unsafe { $f($($a),*) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
fn x86_table(backend: Backend) -> Ops {
    use x86::{avx2, avx512};
    wrap!(silu2, avx2::silu, (x: &[f32], o: &mut [f32]));
    wrap!(swiglu2, avx2::swiglu, (g: &[f32], u: &[f32], o: &mut [f32]));
    wrap!(exp_sum2, avx2::exp_sum, (x: &mut [f32], m: f32) -> f64);
    wrap!(dot2, avx2::dot, (a: &[f32], b: &[f32]) -> f32);
    wrap!(axpy2, avx2::axpy, (a: f32, x: &[f32], y: &mut [f32]));
    wrap!(dot_f16_2, avx2::dot_f16, (q: &[f32], k: &[f16]) -> f32);
    wrap!(axpy_f16_2, avx2::axpy_f16, (w: f32, v: &[f16], o: &mut [f32]));
    wrap!(silu5, avx512::silu, (x: &[f32], o: &mut [f32]));
    wrap!(swiglu5, avx512::swiglu, (g: &[f32], u: &[f32], o: &mut [f32]));
    wrap!(exp_sum5, avx512::exp_sum, (x: &mut [f32], m: f32) -> f64);
    wrap!(dot5, avx512::dot, (a: &[f32], b: &[f32]) -> f32);
    wrap!(dot_f16_5, avx512::dot_f16, (q: &[f32], k: &[f16]) -> f32);
    if backend >= Backend::Avx512 {
        Ops {
            backend,
            path: Backend::Avx512,
            silu: silu5,
            swiglu: swiglu5,
            exp_sum: exp_sum5,
            dot: dot5,
            axpy: axpy2, // memory-bound: the AVX2 loop already saturates it
            dot_f16: dot_f16_5,
            axpy_f16: axpy_f16_2,
        }
    } else {
        Ops {
            backend,
            path: Backend::Avx2,
            silu: silu2,
            swiglu: swiglu2,
            exp_sum: exp_sum2,
            dot: dot2,
            axpy: axpy2,
            dot_f16: dot_f16_2,
            axpy_f16: axpy_f16_2,
        }
    }
}

#[cfg(target_arch = "aarch64")]
fn neon_table(backend: Backend) -> Ops {
    wrap!(silu_n, neon::silu, (x: &[f32], o: &mut [f32]));
    wrap!(swiglu_n, neon::swiglu, (g: &[f32], u: &[f32], o: &mut [f32]));
    wrap!(exp_sum_n, neon::exp_sum, (x: &mut [f32], m: f32) -> f64);
    wrap!(dot_n, neon::dot, (a: &[f32], b: &[f32]) -> f32);
    wrap!(axpy_n, neon::axpy, (a: f32, x: &[f32], y: &mut [f32]));
    wrap!(dot_f16_n, neon::dot_f16, (q: &[f32], k: &[f16]) -> f32);
    wrap!(axpy_f16_n, neon::axpy_f16, (w: f32, v: &[f16], o: &mut [f32]));
    Ops {
        backend,
        path: Backend::Neon,
        silu: silu_n,
        swiglu: swiglu_n,
        exp_sum: exp_sum_n,
        dot: dot_n,
        axpy: axpy_n,
        dot_f16: dot_f16_n,
        axpy_f16: axpy_f16_n,
    }
}

/// `y[i] += x[i]` (residual connections).
pub fn add(y: &mut [f32], x: &[f32]) {
    debug_assert_eq!(y.len(), x.len());
    for (a, &b) in y.iter_mut().zip(x) {
        *a += b;
    }
}

/// `y[i] *= x[i]`.
pub fn mul(y: &mut [f32], x: &[f32]) {
    debug_assert_eq!(y.len(), x.len());
    for (a, &b) in y.iter_mut().zip(x) {
        *a *= b;
    }
}

/// `y[i] *= s`.
pub fn scale(y: &mut [f32], s: f32) {
    for a in y {
        *a *= s;
    }
}
