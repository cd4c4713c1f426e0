//! The supported architectures, each described once as a set of switches over
//! one shared transformer block (see `forward.rs`):
//!
//! ```text
//! x = embd[token] (· √n_embd: gemma3)
//! per layer:
//!   h = rms_norm(x) · attn_norm
//!   q, k, v = Wq h (+bq), Wk h (+bk), Wv h (+bv)        biases: qwen2
//!   q, k = rms_norm per head · q_norm, k_norm            qk_norm: qwen3, gemma3
//!   q, k = rope(q, k, pos)                               NORM: llama (+ rope_freqs), NEOX: others
//!   q = q · attn_scale                                   gemma3 (else the scale is in the softmax)
//!   a = Wo · attention(q, K, V)                          GQA, causal, sliding window: gemma3 local layers
//!   a = rms_norm(a) · post_attention_norm                post_norms: gemma3
//!   x = x + a
//!   h = rms_norm(x) · ffn_norm
//!   f = Wdown · (act(Wgate h) ⊙ Wup h)                   SiLU, GELU-tanh: gemma3
//!   f = rms_norm(f) · post_ffw_norm                      post_norms: gemma3
//!   x = x + f
//! logits = Wout · (rms_norm(x) · output_norm)            Wout = token_embd if output.weight is absent
//! ```

use pistil_kernels::ops::RopeMode;
use std::fmt;

/// A model architecture pistil can run (`general.architecture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// Qwen 2 (DeepSeek-R1-Distill-Qwen 1.5B/7B/14B).
    Qwen2,
    /// Llama 3.x (DeepSeek-R1-Distill-Llama-8B).
    Llama,
    /// Qwen 3 (DeepSeek-R1-0528-Qwen3-8B).
    Qwen3,
    /// Gemma 3.
    Gemma3,
}

/// Feed-forward activation of the gated FFN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnAct {
    /// `silu(gate) · up` (SwiGLU).
    Silu,
    /// `gelu_tanh(gate) · up` (GEGLU), as ggml computes it (f16 table).
    GeluTanh,
}

/// Whether a per-layer tensor must, may, or must not be present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Required,
    Optional,
    Absent,
}

/// The switches that make one architecture out of the shared block.
#[derive(Clone, Copy, Debug)]
pub struct ArchDesc {
    /// `blk.N.attn_{q,k,v}.bias`.
    pub qkv_bias: Need,
    /// `blk.N.attn_{q,k}_norm.weight`: RMSNorm over each head before RoPE.
    pub qk_norm: bool,
    /// `blk.N.post_attention_norm.weight` / `post_ffw_norm.weight`.
    pub post_norms: bool,
    /// RoPE pair layout.
    pub rope_mode: RopeMode,
    /// `rope.freq_base` when the key is absent (llama.cpp's default).
    pub default_rope_base: f32,
    /// `rope_freqs.weight`: per-pair frequency divisors (Llama 3.1 scaling).
    pub rope_freqs: bool,
    /// Embeddings multiplied by √n_embd.
    pub embd_scale: bool,
    /// Q multiplied by the attention scale before attention (not the scores).
    pub scale_q: bool,
    /// Has sliding-window layers (`attention.sliding_window` required).
    pub sliding_window: bool,
    pub ffn_act: FfnAct,
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 4] = [Arch::Qwen2, Arch::Llama, Arch::Qwen3, Arch::Gemma3];

    /// The GGUF name (`general.architecture`, metadata key prefix).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Qwen2 => "qwen2",
            Arch::Llama => "llama",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
        }
    }

    /// The architecture named `name`, if supported.
    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// "qwen2, llama, qwen3, gemma3", for error messages.
    pub fn supported_list() -> String {
        Arch::ALL.map(Arch::name).join(", ")
    }

    /// This architecture's description.
    pub fn desc(self) -> &'static ArchDesc {
        match self {
            Arch::Qwen2 => &QWEN2,
            Arch::Llama => &LLAMA,
            Arch::Qwen3 => &QWEN3,
            Arch::Gemma3 => &GEMMA3,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Qwen 2: Q/K/V biases, NEOX RoPE (llama.cpp `src/models/qwen2.cpp`).
const QWEN2: ArchDesc = ArchDesc {
    qkv_bias: Need::Required,
    qk_norm: false,
    post_norms: false,
    rope_mode: RopeMode::Neox,
    default_rope_base: 10_000.0,
    rope_freqs: false,
    embd_scale: false,
    scale_q: false,
    sliding_window: false,
    ffn_act: FfnAct::Silu,
};

/// Llama: NORM RoPE with optional Llama-3.1 frequency factors; biases are
/// optional in llama.cpp's loader (`src/models/llama.cpp`).
const LLAMA: ArchDesc = ArchDesc {
    qkv_bias: Need::Optional,
    qk_norm: false,
    post_norms: false,
    rope_mode: RopeMode::Normal,
    default_rope_base: 10_000.0,
    rope_freqs: true,
    embd_scale: false,
    scale_q: false,
    sliding_window: false,
    ffn_act: FfnAct::Silu,
};

/// Qwen 3: per-head Q/K RMSNorm before RoPE, no biases (`src/models/qwen3.cpp`).
const QWEN3: ArchDesc = ArchDesc {
    qkv_bias: Need::Absent,
    qk_norm: true,
    post_norms: false,
    rope_mode: RopeMode::Neox,
    default_rope_base: 10_000.0,
    rope_freqs: false,
    embd_scale: false,
    scale_q: false,
    sliding_window: false,
    ffn_act: FfnAct::Silu,
};

/// Gemma 3: scaled embeddings, Q/K norms, post-norms, GEGLU, Q scaled by
/// 1/√head_dim before attention, interleaved sliding-window layers, tied
/// output (`src/models/gemma3.cpp`).
const GEMMA3: ArchDesc = ArchDesc {
    qkv_bias: Need::Absent,
    qk_norm: true,
    post_norms: true,
    rope_mode: RopeMode::Neox,
    default_rope_base: 10_000.0,
    rope_freqs: false,
    embd_scale: true,
    scale_q: true,
    sliding_window: true,
    ffn_act: FfnAct::GeluTanh,
};
