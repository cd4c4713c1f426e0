//! # pistil-kernels
//!
//! The math of pistil: GGUF's quantized block formats and the loops that stream
//! them. A Raspberry Pi generates tokens exactly as fast as these loops read
//! weights, so this crate is the product's heart.
//!
//! - [`types`]: every GGML tensor type with its id and block geometry.
//! - [`quants`]: one module per block format — `#[repr(C)]` block struct with a
//!   compile-time size check, a scalar reference that is always compiled, and
//!   SIMD versions: NEON (ARMv8.0, Cortex-A53/A72), NEON+`dotprod` (Cortex-A76),
//!   AVX2 and AVX-512 (x86 development machines). Kernels follow ggml's naming,
//!   `vec_dot_<weight>_<activation>`.
//! - [`dispatch`]: CPU features detected once at start-up fill a [`Kernels`]
//!   table; one aarch64 binary serves every Pi. `PISTIL_KERNELS` overrides.
//! - [`probe`]: the same table with products that only read their weights,
//!   to measure the memory ceiling of decode (`pistil bench --ceiling`).
//!
//! Nothing here allocates in a hot loop, and nothing depends on `target-cpu`.

pub mod dispatch;
pub mod f16conv;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod probe;
pub mod quants;
pub mod types;

#[cfg(test)]
pub(crate) mod testutil;

pub use dispatch::{Backend, CpuFeatures, FormatKernels, Kernels};
pub use types::GgmlType;
