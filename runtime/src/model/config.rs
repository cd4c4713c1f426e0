//! Hyper-parameters of a model, read from the GGUF metadata (`<arch>.*` keys)
//! and its tensor shapes, with one clear error per missing or bad key.

use super::arch::{Arch, ArchDesc, FfnAct};
use super::ModelError;
use crate::gguf::{Gguf, MetaValue};
use pistil_kernels::ops::RopeMode;

/// How RoPE positions are scaled (`<arch>.rope.scaling.type`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor` (`freq_scale = 1/factor`).
    Linear { factor: f32 },
    /// YaRN with the original training context.
    Yarn { factor: f32, n_ctx_orig: u32 },
}

/// Everything the forward pass needs to know about a model's shape.
#[derive(Clone, Debug)]
pub struct Config {
    /// The architecture (`general.architecture`).
    pub arch: Arch,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Hidden width of the feed-forward network.
    pub n_ff: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (GQA: `n_head` is a multiple of it).
    pub n_head_kv: usize,
    /// Width of one query/key head (`attention.key_length`, default `n_embd / n_head`).
    pub head_dim_k: usize,
    /// Width of one value head (`attention.value_length`, default `head_dim_k`).
    pub head_dim_v: usize,
    /// Rows of the output layer = logits per token.
    pub n_vocab: usize,
    /// Context the model was trained for (`context_length`).
    pub n_ctx_train: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Rotated dimensions per head (`rope.dimension_count`, default `head_dim_k`).
    pub n_rot: usize,
    /// NORM (adjacent pairs) or NEOX (halves).
    pub rope_mode: RopeMode,
    /// `rope.freq_base` of full-attention layers.
    pub rope_freq_base: f32,
    /// Position scaling of full-attention layers.
    pub rope_scaling: RopeScaling,
    /// `rope.freq_base_swa` of sliding-window layers (Gemma 3: 10000).
    pub rope_freq_base_swa: f32,
    /// Sliding window in tokens, if the model has local layers.
    pub sliding_window: Option<usize>,
    /// Per layer: true if the layer attends only to the last `sliding_window` positions.
    pub swa_layers: Vec<bool>,
    /// Scale of the attention scores. Gemma 3 applies it to Q before attention
    /// (`q_scale`); the others in the softmax.
    pub attn_scale: f32,
    /// Gemma 3 scales the queries (`query_pre_attn_scalar`) instead of the scores.
    pub scale_q: bool,
    /// Gemma: the embeddings are multiplied by `√n_embd`.
    pub embd_scale: Option<f32>,
    /// `final_logit_softcapping` (Gemma 3 without sliding window only).
    pub final_logit_softcap: Option<f32>,
    /// Feed-forward activation.
    pub ffn_act: FfnAct,
}

fn key(arch: Arch, k: &str) -> String {
    format!("{}.{k}", arch.name())
}

fn req_usize(g: &Gguf, k: &str) -> Result<usize, ModelError> {
    let v = g.require_u64(k)?;
    let v = usize::try_from(v).map_err(|_| ModelError::BadConfig {
        key: k.to_string(),
        reason: format!("{v} does not fit this machine's address size"),
    })?;
    if v == 0 {
        return Err(ModelError::BadConfig {
            key: k.to_string(),
            reason: "must not be 0".into(),
        });
    }
    Ok(v)
}

fn opt_usize(g: &Gguf, k: &str) -> Result<Option<usize>, ModelError> {
    match g.get_u64(k)? {
        None => Ok(None),
        Some(v) => match usize::try_from(v) {
            Ok(v) if v > 0 => Ok(Some(v)),
            _ => Err(ModelError::BadConfig {
                key: k.to_string(),
                reason: format!("{v} is not a positive size"),
            }),
        },
    }
}

fn positive_f32(k: &str, v: f32) -> Result<f32, ModelError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(ModelError::BadConfig {
            key: k.to_string(),
            reason: format!("{v} must be a finite number > 0"),
        })
    }
}

impl Config {
    /// Reads the configuration of the model in `g`: the architecture, then
    /// every hyper-parameter from `<arch>.*` metadata. The vocabulary size is
    /// the row count of `token_embd.weight`.
    pub fn from_gguf(g: &Gguf) -> Result<Config, ModelError> {
        let name = g.architecture()?;
        let arch = Arch::from_name(name).ok_or_else(|| ModelError::UnknownArch {
            arch: name.to_string(),
            supported: Arch::supported_list(),
        })?;
        let d: &ArchDesc = arch.desc();
        let k = |s: &str| key(arch, s);

        let n_layer = req_usize(g, &k("block_count"))?;
        let n_embd = req_usize(g, &k("embedding_length"))?;
        let n_ff = req_usize(g, &k("feed_forward_length"))?;
        let n_head = req_usize(g, &k("attention.head_count"))?;
        let n_head_kv = opt_usize(g, &k("attention.head_count_kv"))?.unwrap_or(n_head);
        if n_head % n_head_kv != 0 {
            return Err(ModelError::BadConfig {
                key: k("attention.head_count_kv"),
                reason: format!("{n_head} query heads is not a multiple of {n_head_kv} KV heads"),
            });
        }
        let head_dim_k = match opt_usize(g, &k("attention.key_length"))? {
            Some(v) => v,
            None if n_embd % n_head == 0 => n_embd / n_head,
            None => {
                return Err(ModelError::BadConfig {
                    key: k("attention.key_length"),
                    reason: format!(
                        "absent, and n_embd {n_embd} is not a multiple of {n_head} heads"
                    ),
                })
            }
        };
        let head_dim_v = opt_usize(g, &k("attention.value_length"))?.unwrap_or(head_dim_k);
        let n_ctx_train = req_usize(g, &k("context_length"))?;
        let eps_key = k("attention.layer_norm_rms_epsilon");
        let rms_eps = g.require_f32(&eps_key)?;
        if !(rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(ModelError::BadConfig {
                key: eps_key,
                reason: format!("{rms_eps} is not a valid epsilon"),
            });
        }
        let n_rot = opt_usize(g, &k("rope.dimension_count"))?.unwrap_or(head_dim_k);
        if n_rot > head_dim_k || n_rot % 2 != 0 {
            return Err(ModelError::BadConfig {
                key: k("rope.dimension_count"),
                reason: format!("{n_rot} must be even and at most the head size {head_dim_k}"),
            });
        }
        let base_key = k("rope.freq_base");
        let rope_freq_base = match g.get_f32(&base_key)? {
            Some(v) => positive_f32(&base_key, v)?,
            None => d.default_rope_base,
        };
        let rope_scaling = rope_scaling(g, arch)?;
        let swa_base_key = k("rope.freq_base_swa");
        let rope_freq_base_swa = match g.get_f32(&swa_base_key)? {
            Some(v) => positive_f32(&swa_base_key, v)?,
            None => 10_000.0,
        };

        let (sliding_window, swa_layers) = if d.sliding_window {
            sliding_window(g, arch, n_layer)?
        } else {
            (None, vec![false; n_layer])
        };

        // Attention scale. Gemma 3 scales Q by 1/√head_dim (query_pre_attn_scalar =
        // head_dim), except the 27B (62 layers), which uses n_embd / n_head —
        // llama.cpp's `f_attention_scale` for LLM_ARCH_GEMMA3.
        let scale_key = k("attention.scale");
        let attn_scale = match (arch, g.get_f32(&scale_key)?) {
            (Arch::Gemma3, _) if n_layer == 62 => 1.0 / ((n_embd / n_head) as f32).sqrt(),
            (Arch::Gemma3, _) => 1.0 / (head_dim_k as f32).sqrt(),
            (_, Some(s)) if s != 0.0 => positive_f32(&scale_key, s)?,
            _ => 1.0 / (head_dim_k as f32).sqrt(),
        };

        let final_logit_softcap = if arch == Arch::Gemma3 && sliding_window.is_none() {
            let sk = k("final_logit_softcapping");
            Some(match g.get_f32(&sk)? {
                Some(v) => positive_f32(&sk, v)?,
                None => 30.0,
            })
        } else {
            None
        };

        Ok(Config {
            arch,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_vocab: vocab_size(g, arch, n_embd)?,
            n_ctx_train,
            rms_eps,
            n_rot,
            rope_mode: d.rope_mode,
            rope_freq_base,
            rope_scaling,
            rope_freq_base_swa,
            sliding_window,
            swa_layers,
            attn_scale,
            scale_q: d.scale_q,
            embd_scale: d.embd_scale.then(|| (n_embd as f32).sqrt()),
            final_logit_softcap,
            ffn_act: d.ffn_act,
        })
    }

    /// Query width (`n_head · head_dim_k`).
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim_k
    }

    /// Key width (`n_head_kv · head_dim_k`).
    pub fn k_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_k
    }

    /// Value width (`n_head_kv · head_dim_v`).
    pub fn v_dim(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }

    /// Attention output width (`n_head · head_dim_v`).
    pub fn attn_out_dim(&self) -> usize {
        self.n_head * self.head_dim_v
    }

    /// KV positions layer `il` keeps for a context of `n_ctx` processed in
    /// batches of up to `n_batch`: `n_ctx` for full attention; for a
    /// sliding-window layer [`crate::plan::swa_kv_cells`] (the window plus a
    /// batch, padded; used as a ring buffer).
    pub fn kv_positions(&self, il: usize, n_ctx: usize, n_batch: usize) -> usize {
        match (self.sliding_window, self.swa_layers.get(il)) {
            (Some(w), Some(true)) => {
                let c = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
                crate::plan::swa_kv_cells(c(w), c(n_batch), c(n_ctx)) as usize
            }
            _ => n_ctx,
        }
    }
}

fn rope_scaling(g: &Gguf, arch: Arch) -> Result<RopeScaling, ModelError> {
    let tk = key(arch, "rope.scaling.type");
    let fk = key(arch, "rope.scaling.factor");
    let factor = match g.get_f32(&fk)? {
        Some(f) => Some(positive_f32(&fk, f)?),
        None => None,
    };
    let ty = g.get_str(&tk)?;
    let factor = factor.filter(|&f| f != 1.0);
    Ok(match (ty, factor) {
        (None | Some("none"), _) | (_, None) => RopeScaling::None,
        (Some("linear"), Some(factor)) => RopeScaling::Linear { factor },
        (Some("yarn"), Some(factor)) => {
            let ok = key(arch, "rope.scaling.original_context_length");
            let n_ctx_orig =
                g.get_u32(&ok)?
                    .ok_or(ModelError::Gguf(crate::gguf::GgufError::MissingKey {
                        key: ok.clone(),
                    }))?;
            RopeScaling::Yarn { factor, n_ctx_orig }
        }
        (Some(other), Some(_)) => {
            return Err(ModelError::BadConfig {
                key: tk,
                reason: format!("RoPE scaling {other:?} is not supported (none, linear, yarn are)"),
            })
        }
    })
}

/// Gemma 3's sliding window and which layers use it: the key
/// `<arch>.attention.sliding_window_pattern` as one bool per layer, or as a
/// period `n` (layer `il` is local iff `il % n < n - 1`); absent, llama.cpp's
/// default period 6.
fn sliding_window(
    g: &Gguf,
    arch: Arch,
    n_layer: usize,
) -> Result<(Option<usize>, Vec<bool>), ModelError> {
    let wk = key(arch, "attention.sliding_window");
    let window = req_usize(g, &wk)?;
    let pk = key(arch, "attention.sliding_window_pattern");
    let period = |n: usize| -> Vec<bool> {
        (0..n_layer)
            .map(|il| n == 0 || il % n < n.saturating_sub(1))
            .collect()
    };
    let layers = match g.get(&pk) {
        None => period(6),
        Some(MetaValue::Array(a)) => {
            let bools: Option<Vec<bool>> = a.bools().map(|it| it.collect());
            match bools {
                Some(v) if v.len() == n_layer => v,
                Some(v) => {
                    return Err(ModelError::BadConfig {
                        key: pk,
                        reason: format!("{} entries for {n_layer} layers", v.len()),
                    })
                }
                None => {
                    return Err(ModelError::BadConfig {
                        key: pk,
                        reason: format!("an array of {}, expected bool", a.elem_type_name()),
                    })
                }
            }
        }
        Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) => period(n),
            None => {
                return Err(ModelError::BadConfig {
                    key: pk,
                    reason: format!("a {}, expected bool array or period", v.type_name()),
                })
            }
        },
    };
    Ok((Some(window), layers))
}

/// The vocabulary size: the rows of `token_embd.weight`, which must equal the
/// tokenizer's token count when the file has one.
fn vocab_size(g: &Gguf, arch: Arch, n_embd: usize) -> Result<usize, ModelError> {
    let t = g
        .tensor("token_embd.weight")
        .ok_or_else(|| ModelError::MissingTensor {
            name: "token_embd.weight".into(),
            arch: arch.name(),
        })?;
    let rows = if t.dims.len() == 2 {
        usize::try_from(t.dims[1]).ok()
    } else {
        None
    };
    let Some(rows) = rows.filter(|_| t.row_len() == n_embd) else {
        return Err(ModelError::TensorShape {
            name: t.name.clone(),
            expected: format!("[{n_embd}, n_vocab]"),
            found: t.shape_string(),
        });
    };
    if let Some(tokens) = g.get_array("tokenizer.ggml.tokens")? {
        if tokens.len() != rows {
            return Err(ModelError::TensorShape {
                name: t.name.clone(),
                expected: format!(
                    "[{n_embd}, {}] (the tokenizer has {} tokens)",
                    tokens.len(),
                    tokens.len()
                ),
                found: t.shape_string(),
            });
        }
    }
    Ok(rows)
}
