//! GELU, tanh form: `0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²)))`.
//!
//! Two flavours:
//!
//! - [`gelu_exact`] / [`geglu_exact`]: the formula in f32 (libm `tanhf`).
//! - [`gelu`] / [`geglu`]: what ggml-cpu computes (`GGML_GELU_FP16`, its
//!   default): the input is rounded to f16 and the result looked up in a
//!   65,536-entry f16 table built from the f32 formula; inputs `<= -10` give 0
//!   and inputs `>= 10` give `x` (`ggml_vec_gelu_f32`, `ggml_vec_geglu_f32`).
//!   Gemma 3's feed-forward uses this in llama.cpp, so this is the one that
//!   reproduces its activations.
//!
//! The table is built once, lazily, exactly as ggml's `ggml_cpu_init` fills
//! `ggml_table_gelu_f16` in a GCC build with FMA: GCC contracts
//! `1.0f + GELU_COEF_A*x*x` into `fma(GELU_COEF_A*x, x, 1.0f)`, and without that
//! contraction one entry (x = −1.999) differs. It is checked bit for bit
//! against ggml's own table in `tests/fixtures/ops/gelu_table.f16.bin`.

use half::f16;
use std::sync::OnceLock;

const GELU_COEF_A: f32 = 0.044715;
const SQRT_2_OVER_PI: f32 = 0.797_884_6; // 0.79788456080286535587989211986876f

/// GELU of one f32, in f32 (ggml's `ggml_gelu_f32` as GCC compiles it).
#[inline]
pub fn gelu_f32(x: f32) -> f32 {
    let inner = SQRT_2_OVER_PI * x * (GELU_COEF_A * x).mul_add(x, 1.0);
    0.5 * x * (1.0 + inner.tanh())
}

static TABLE: OnceLock<Box<[u16]>> = OnceLock::new();

/// ggml's `ggml_table_gelu_f16`: entry `i` is `f16(gelu_f32(f32(f16 bits i)))`.
pub fn gelu_table() -> &'static [u16] {
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|i| f16::from_f32(gelu_f32(f16::from_bits(i).to_f32())).to_bits())
            .collect()
    })
}

/// ggml-cpu's GELU of one value: clamps at ±10, else f16 table lookup.
#[inline]
fn gelu_lookup(table: &[u16], x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let i = f16::from_f32(x).to_bits() as usize;
        f16::from_bits(table[i]).to_f32()
    }
}

/// GELU as ggml-cpu computes it (f16 table), `x` into `out`.
pub fn gelu(x: &[f32], out: &mut [f32]) {
    debug_assert_eq!(x.len(), out.len());
    let t = gelu_table();
    for (o, &v) in out.iter_mut().zip(x) {
        *o = gelu_lookup(t, v);
    }
}

/// GEGLU as ggml-cpu computes it: `gelu(gate) * up`, with `gate <= -10` giving
/// exactly `0.0` and `gate >= 10` giving `gate * up` (`ggml_vec_geglu_f32`).
pub fn geglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    debug_assert!(gate.len() == up.len() && up.len() == out.len());
    let t = gelu_table();
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = if g <= -10.0 {
            0.0
        } else if g >= 10.0 {
            g * u
        } else {
            let i = f16::from_f32(g).to_bits() as usize;
            f16::from_bits(t[i]).to_f32() * u
        };
    }
}

/// GELU by the f32 formula, `x` into `out`.
pub fn gelu_exact(x: &[f32], out: &mut [f32]) {
    debug_assert_eq!(x.len(), out.len());
    for (o, &v) in out.iter_mut().zip(x) {
        *o = gelu_f32(v);
    }
}

/// GEGLU by the f32 formula: `gelu(gate) * up`.
pub fn geglu_exact(gate: &[f32], up: &[f32], out: &mut [f32]) {
    debug_assert!(gate.len() == up.len() && up.len() == out.len());
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = gelu_f32(g) * u;
    }
}
