//! Memory planning: how much RAM a run of a model needs — the weights, the KV
//! cache at a given context size and cache type, and the scratch buffers of
//! one forward pass — read from the GGUF header alone (no weights touched).
//!
//! `pistil inspect` prints it, the board fit check compares it with the
//! board's RAM, and the model code sizes its buffers from the same numbers.
//!
//! KV cache, per layer `l` (as llama.cpp's `llama_kv_cache` allocates it):
//!
//! ```text
//! cells(l) × n_head_kv(l) × (key_length + value_length) × bytes per element
//! ```
//!
//! `key_length`/`value_length` default to `n_embd / n_head`. Layers with a
//! sliding window (Gemma 3: 5 of every 6) keep only a window-sized cache, as
//! llama.cpp's `llama_kv_cache_iswa` does: `cells = min(ctx, pad256(n_swa +
//! n_ubatch))`, the window plus one micro-batch of new tokens; the other layers
//! keep `ctx` cells.

use std::fmt;
use std::str::FromStr;

use crate::gguf::{Gguf, GgufError, MetaValue};

/// Element type of the KV cache (`--cache-type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvType {
    /// 4 bytes per element.
    F32,
    /// 2 bytes per element (the default, as in llama.cpp).
    #[default]
    F16,
    /// 34 bytes per block of 32 elements.
    Q8_0,
}

impl KvType {
    /// Every type, in command-line order.
    pub const ALL: [KvType; 3] = [KvType::F16, KvType::Q8_0, KvType::F32];

    /// The command-line name: `f16`, `q8_0`, `f32`.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// Bytes of a row of `n` elements (Q8_0: whole 32-element blocks).
    pub fn row_bytes(self, n: u64) -> u64 {
        match self {
            KvType::F32 => n * 4,
            KvType::F16 => n * 2,
            KvType::Q8_0 => n.div_ceil(32) * 34,
        }
    }
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown cache-type name.
#[derive(Debug, thiserror::Error)]
#[error("unknown KV cache type '{0}': expected f16, q8_0 or f32")]
pub struct ParseKvTypeError(String);

impl FromStr for KvType {
    type Err = ParseKvTypeError;
    fn from_str(s: &str) -> Result<KvType, ParseKvTypeError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            "q8_0" | "q8" => Ok(KvType::Q8_0),
            _ => Err(ParseKvTypeError(s.to_string())),
        }
    }
}

/// The shape of a model as far as memory is concerned, from its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDims {
    /// `general.architecture`.
    pub arch: String,
    /// `<arch>.block_count`.
    pub n_layer: u32,
    /// `<arch>.embedding_length`.
    pub n_embd: u32,
    /// `<arch>.attention.head_count` (largest over layers if per-layer).
    pub n_head: u32,
    /// `<arch>.attention.head_count_kv` per layer (default: `n_head`).
    pub n_head_kv: Vec<u32>,
    /// `<arch>.feed_forward_length` (largest over layers if per-layer).
    pub n_ff: u32,
    /// `<arch>.attention.key_length` (default `n_embd / n_head`).
    pub head_dim_k: u32,
    /// `<arch>.attention.value_length` (default `n_embd / n_head`).
    pub head_dim_v: u32,
    /// `<arch>.vocab_size`, else the length of `tokenizer.ggml.tokens`, else
    /// the rows of `token_embd.weight`.
    pub n_vocab: u32,
    /// `<arch>.context_length`: the longest context the model was trained for.
    pub context_length: u32,
    /// `<arch>.attention.sliding_window`, if the model uses one.
    pub sliding_window: Option<u32>,
    /// Per layer, whether it attends over the sliding window only.
    pub swa_layers: Vec<bool>,
}

/// A per-layer integer key: a scalar for all layers or an array of `n_layer`.
fn per_layer(g: &Gguf, key: &str, n_layer: u32) -> Result<Option<Vec<u32>>, GgufError> {
    let n = n_layer as usize;
    match g.get(key) {
        None => Ok(None),
        Some(MetaValue::Array(a)) => {
            let vals: Option<Vec<u32>> = a
                .ints()
                .map(|it| it.map(|v| u32::try_from(v).unwrap_or(0)).collect());
            match vals {
                Some(v) if v.len() == n => Ok(Some(v)),
                _ => Err(GgufError::MetaType {
                    key: key.to_string(),
                    offset: g.value_offset(key).unwrap_or(0),
                    expected: "integer or array of one integer per layer",
                    found: "arr",
                }),
            }
        }
        Some(_) => Ok(g.get_u32(key)?.map(|v| vec![v; n])),
    }
}

impl ModelDims {
    /// Reads the dimensions from a model's metadata. Required: architecture,
    /// block count, embedding length, head count; the rest have llama.cpp's
    /// defaults.
    pub fn from_gguf(g: &Gguf) -> Result<ModelDims, GgufError> {
        let arch = g.architecture()?.to_string();
        let k = |s: &str| format!("{arch}.{s}");
        let n_layer = g.require_u32(&k("block_count"))?;
        let n_embd = g.require_u32(&k("embedding_length"))?;
        let heads = per_layer(g, &k("attention.head_count"), n_layer)?.ok_or_else(|| {
            GgufError::MissingKey {
                key: k("attention.head_count"),
            }
        })?;
        let n_head = heads.iter().copied().max().unwrap_or(0);
        let n_head_kv =
            per_layer(g, &k("attention.head_count_kv"), n_layer)?.unwrap_or_else(|| heads.clone());
        let n_ff = per_layer(g, &k("feed_forward_length"), n_layer)?
            .and_then(|v| v.into_iter().max())
            .unwrap_or(4 * n_embd);
        let default_head_dim = n_embd.checked_div(n_head).unwrap_or(0);
        let head_dim_k = g
            .get_u32(&k("attention.key_length"))?
            .unwrap_or(default_head_dim);
        let head_dim_v = g
            .get_u32(&k("attention.value_length"))?
            .unwrap_or(default_head_dim);
        let n_vocab = match g.get_u32(&k("vocab_size"))? {
            Some(v) => v,
            None => match g.get_array("tokenizer.ggml.tokens")? {
                Some(a) => u32::try_from(a.len()).unwrap_or(u32::MAX),
                None => g
                    .tensor("token_embd.weight")
                    .map_or(0, |t| u32::try_from(t.n_rows()).unwrap_or(u32::MAX)),
            },
        };
        let context_length = g.get_u32(&k("context_length"))?.unwrap_or(0);
        let sliding_window = g
            .get_u32(&k("attention.sliding_window"))?
            .filter(|&w| w > 0);
        let swa_layers = swa_layers(
            g,
            &arch,
            &k("attention.sliding_window_pattern"),
            n_layer,
            sliding_window,
        )?;
        Ok(ModelDims {
            arch,
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            n_ff,
            head_dim_k,
            head_dim_v,
            n_vocab,
            context_length,
            sliding_window,
            swa_layers,
        })
    }

    /// Number of sliding-window layers.
    pub fn n_layer_swa(&self) -> u32 {
        self.swa_layers.iter().filter(|&&s| s).count() as u32
    }
}

/// Which layers use the sliding window: the file's
/// `<arch>.attention.sliding_window_pattern` (one bool per layer, or a period
/// `n`: layer `il` is local iff `il % n < n - 1`), else llama.cpp's built-in
/// pattern for the architecture (Gemma 3: 6, Gemma 2: 2, Cohere 2: 4); none
/// without a window.
fn swa_layers(
    g: &Gguf,
    arch: &str,
    key: &str,
    n_layer: u32,
    window: Option<u32>,
) -> Result<Vec<bool>, GgufError> {
    let n = n_layer as usize;
    if window.is_none() {
        return Ok(vec![false; n]);
    }
    let period =
        |p: u32| -> Vec<bool> { (0..n_layer).map(|il| p == 0 || il % p < p - 1).collect() };
    match g.get(key) {
        Some(MetaValue::Array(a)) => match a.bools() {
            Some(b) if a.len() == n => Ok(b.collect()),
            _ => Err(GgufError::MetaType {
                key: key.to_string(),
                offset: g.value_offset(key).unwrap_or(0),
                expected: "array of one bool per layer",
                found: "arr",
            }),
        },
        Some(_) => Ok(period(g.require_u32(key)?)),
        None => Ok(match arch {
            "gemma3" => period(6),
            "gemma2" => period(2),
            "cohere2" => period(4),
            // A window without a known pattern: plan full caches (safe side).
            _ => vec![false; n],
        }),
    }
}

/// The run being planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanParams {
    /// Context size in tokens (`-c`).
    pub ctx: u32,
    /// KV cache element type (`--cache-type`).
    pub kv_type: KvType,
    /// Tokens per forward pass during prompt processing (llama.cpp's
    /// `--ubatch-size`, default 512): sizes the activations and the window
    /// caches.
    pub n_ubatch: u32,
}

/// The default context when none is given: the model's, capped at this.
pub const DEFAULT_CTX_CAP: u32 = 4096;
/// llama.cpp's default micro-batch.
pub const DEFAULT_UBATCH: u32 = 512;

impl PlanParams {
    /// The model's context length capped at [`DEFAULT_CTX_CAP`], f16 cache,
    /// [`DEFAULT_UBATCH`].
    pub fn defaults_for(dims: &ModelDims) -> PlanParams {
        PlanParams {
            ctx: default_ctx(dims),
            kv_type: KvType::F16,
            n_ubatch: DEFAULT_UBATCH,
        }
    }
}

/// The model's context length capped at [`DEFAULT_CTX_CAP`] (4096 when the
/// model does not say).
pub fn default_ctx(dims: &ModelDims) -> u32 {
    match dims.context_length {
        0 => DEFAULT_CTX_CAP,
        c => c.min(DEFAULT_CTX_CAP),
    }
}

/// What a run needs, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Tensor data (mapped or read).
    pub weights: u64,
    /// KV cache for all layers.
    pub kv_cache: u64,
    /// Activations and logits of one forward pass of `n_ubatch` tokens.
    pub scratch: u64,
    /// The sum.
    pub total: u64,
    /// Cells (token positions) of the full-attention layers' caches.
    pub kv_cells: u32,
    /// Cells of the sliding-window layers' caches (0 if none).
    pub kv_cells_swa: u32,
}

/// KV cells of a sliding-window layer (the model's cache allocates exactly
/// this): the window plus one micro-batch of new tokens, padded to 256 as
/// llama.cpp's `llama_kv_cache_iswa` does, at most the context. Always at
/// least `window + n_ubatch - 1`, what a ring buffer needs to process a batch.
pub fn swa_kv_cells(window: u32, n_ubatch: u32, ctx: u32) -> u32 {
    let want = (window as u64 + n_ubatch.max(1) as u64).min(ctx as u64);
    want.next_multiple_of(256).min(ctx as u64) as u32
}

/// Plans a run of the model in `g`.
pub fn estimate(g: &Gguf, p: &PlanParams) -> Result<MemoryEstimate, GgufError> {
    let dims = ModelDims::from_gguf(g)?;
    Ok(estimate_dims(&dims, g.tensor_bytes(), p))
}

/// Plans a run from dimensions and the weights' size.
///
/// Scratch is an estimate of one forward pass over `n_ubatch` tokens with
/// f32 activations: per token the residual, normed input and attention output
/// (3 × `n_embd`), Q/K/V, the attention scores over the context
/// (`n_head` × ctx, no flash attention), the FFN's gate and up projections
/// (2 × `n_ff`) and an 8-bit copy of the widest activation for the quantized
/// dot products; plus one row of logits (`n_vocab`) and an f32 row of
/// dequantized embedding.
pub fn estimate_dims(d: &ModelDims, weights: u64, p: &PlanParams) -> MemoryEstimate {
    let ctx = p.ctx.max(1);
    let kv_cells_swa = match d.sliding_window {
        Some(w) if d.swa_layers.iter().any(|&s| s) => swa_kv_cells(w, p.n_ubatch, ctx),
        _ => 0,
    };
    let kv_cache: u64 = (0..d.n_layer as usize)
        .map(|il| {
            let cells = if d.swa_layers.get(il).copied().unwrap_or(false) {
                kv_cells_swa
            } else {
                ctx
            } as u64;
            let kv_heads = d.n_head_kv.get(il).copied().unwrap_or(d.n_head) as u64;
            let k = p.kv_type.row_bytes(kv_heads * d.head_dim_k as u64);
            let v = p.kv_type.row_bytes(kv_heads * d.head_dim_v as u64);
            cells * (k + v)
        })
        .sum();

    let (embd, ff, heads) = (d.n_embd as u64, d.n_ff as u64, d.n_head as u64);
    let max_kv_heads = d.n_head_kv.iter().copied().max().unwrap_or(d.n_head) as u64;
    let q = heads * d.head_dim_k as u64;
    let attn_out = heads * d.head_dim_v as u64;
    let kv = max_kv_heads * (d.head_dim_k as u64 + d.head_dim_v as u64);
    let widest = embd.max(ff).max(attn_out);
    let per_token_f32 = 3 * embd.max(attn_out) + q + kv + heads * ctx as u64 + 2 * ff;
    let per_token_bytes = per_token_f32 * 4 + widest.div_ceil(32) * 36;
    let scratch = p.n_ubatch.max(1) as u64 * per_token_bytes + (d.n_vocab as u64 + embd) * 4;

    MemoryEstimate {
        weights,
        kv_cache,
        scratch,
        total: weights + kv_cache + scratch,
        kv_cells: ctx,
        kv_cells_swa,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemma3_270m() -> ModelDims {
        ModelDims {
            arch: "gemma3".into(),
            n_layer: 18,
            n_embd: 640,
            n_head: 4,
            n_head_kv: vec![1; 18],
            n_ff: 2048,
            head_dim_k: 256,
            head_dim_v: 256,
            n_vocab: 262144,
            context_length: 32768,
            sliding_window: Some(512),
            swa_layers: (0..18).map(|il| il % 6 < 5).collect(),
        }
    }

    #[test]
    fn kv_cache_gemma3_iswa() {
        let d = gemma3_270m();
        assert_eq!(d.n_layer_swa(), 15);
        let p = PlanParams::defaults_for(&d);
        assert_eq!(p.ctx, 4096);
        let e = estimate_dims(&d, 0, &p);
        // 3 global layers × 4096 cells + 15 local × 1024 (512 + 512), each
        // cell 1 head × (256 + 256) × 2 bytes.
        assert_eq!(e.kv_cells_swa, 1024);
        assert_eq!(e.kv_cache, (3 * 4096 + 15 * 1024) * 512 * 2);
        // A context shorter than the window: every layer has ctx cells.
        let e = estimate_dims(&d, 0, &PlanParams { ctx: 300, ..p });
        assert_eq!(e.kv_cells_swa, 300);
        assert_eq!(e.kv_cache, 18 * 300 * 512 * 2);
    }

    #[test]
    fn kv_types() {
        let mut d = gemma3_270m();
        d.sliding_window = None;
        d.swa_layers = vec![false; 18];
        let bytes = |t| {
            estimate_dims(
                &d,
                0,
                &PlanParams {
                    ctx: 1000,
                    kv_type: t,
                    n_ubatch: 1,
                },
            )
            .kv_cache
        };
        assert_eq!(bytes(KvType::F32), 18 * 1000 * 512 * 4);
        assert_eq!(bytes(KvType::F16), 18 * 1000 * 512 * 2);
        assert_eq!(bytes(KvType::Q8_0), 18 * 1000 * 2 * (256 / 32 * 34));
        for t in KvType::ALL {
            assert_eq!(t.to_string().parse::<KvType>().unwrap(), t);
        }
        assert!("q4_0".parse::<KvType>().is_err());
    }

    #[test]
    fn total_is_the_sum() {
        let d = gemma3_270m();
        let e = estimate_dims(&d, 1234, &PlanParams::defaults_for(&d));
        assert_eq!(e.total, e.weights + e.kv_cache + e.scratch);
        assert!(e.scratch > d.n_vocab as u64 * 4);
    }
}
