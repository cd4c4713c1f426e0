//! One module per GGUF block format: the `#[repr(C)]` block, its scalar
//! reference (always compiled), and its SIMD versions (NEON, NEON+dotprod,
//! AVX2, AVX-512), each selected through [`crate::Kernels`].
//!
//! Every module exposes `select(Backend) -> FormatKernels` (weight formats)
//! and/or `select_act(Backend) -> ActKernels` (activation formats), returning
//! the best implementation it has that does not exceed the given backend.

use crate::dispatch::{ActKernels, Backend, FormatKernels};

pub mod bf16;
pub mod f16;
pub mod f32;
pub(crate) mod gemm;
pub mod iq4_nl;
pub mod iq4_xs;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;

/// Weight formats pistil computes with, in GGUF id order.
pub(crate) const WEIGHT_FORMATS: &[fn(Backend) -> FormatKernels] = &[
    q4_0::select,
    q4_1::select,
    q5_0::select,
    q5_1::select,
    q8_0::select,
    q2_k::select,
    q3_k::select,
    q4_k::select,
    q5_k::select,
    q6_k::select,
    iq4_nl::select,
    iq4_xs::select,
    f32::select,
    f16::select,
    bf16::select,
];

/// Activation formats (the right operand of a quantized dot product).
pub(crate) const ACT_FORMATS: &[fn(Backend) -> ActKernels] = &[
    q8_0::select_act,
    q8_1::select_act,
    q8_k::select_act,
    f32::select_act,
    f16::select_act,
    bf16::select_act,
];

/// A kernel whose dot product is the unit of work; [`gemv_rows`] turns it into
/// a matrix-vector product over consecutive rows.
pub(crate) trait VecDot {
    fn vec_dot(n: usize, w: &[u8], a: &[u8]) -> f32;
}

/// `out[r] = K::vec_dot(n, row r, a)`: the plain row loop, for formats whose
/// SIMD code has no multi-row kernel.
pub(crate) fn gemv_rows<K: VecDot>(
    n: usize,
    w: &[u8],
    row_bytes: usize,
    a: &[u8],
    out: &mut [f32],
) {
    for (r, o) in out.iter_mut().enumerate() {
        *o = K::vec_dot(n, &w[r * row_bytes..(r + 1) * row_bytes], a);
    }
}
