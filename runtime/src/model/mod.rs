//! Model graphs, the KV cache and the forward pass.
//!
//! - [`Model`]: the immutable part — the [`Config`] read from the GGUF
//!   metadata, the weights (views into the mapped file, never copied) and the
//!   thread pool. Share it between threads behind an `Arc`.
//! - [`State`]: one inference context — the KV cache, every scratch buffer
//!   and the logits, all allocated once by [`Model::new_state`] for a chosen
//!   context and batch size, plus the token ids the cache holds (for prefix
//!   reuse across turns). Decoding a token allocates nothing.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use pistil_runtime::gguf::{Gguf, LoadMode};
//! # use pistil_runtime::model::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gguf = Arc::new(Gguf::open("model.gguf".as_ref(), LoadMode::Mmap)?);
//! let model = Model::load(gguf, &LoadOptions { n_threads: 4, ..LoadOptions::default() })?;
//! let mut state = model.new_state(&StateOptions { n_ctx: 4096, ..StateOptions::default() })?;
//! let logits = model.forward(&mut state, &[2, 651, 6037], Logits::Last)?; // prompt: one batch
//! let next = argmax(logits);
//! let logits = model.forward(&mut state, &[next], Logits::Last)?;         // decode: one token
//! # let _ = logits; Ok(()) }
//! # fn argmax(x: &[f32]) -> u32 { 0 }
//! ```
//!
//! The four architectures (qwen2, llama, qwen3, gemma3) are switches over one
//! transformer block ([`arch`]); weights of any GGML type go through the
//! kernel table, and activations are quantized exactly as ggml does, once per
//! input and activation type, so the logits track llama.cpp's.

pub mod arch;
mod attention;
pub mod config;
mod fdot;
mod forward;
mod kv;
mod shared;
mod weights;

pub use crate::plan::{KvType, ParseKvTypeError};
pub use arch::{Arch, FfnAct};
pub use config::{Config, RopeScaling};

use crate::gguf::{Gguf, GgufError};
use kv::{KvBuf, KvCache, LayerKv};
use pistil_kernels::dispatch::DispatchError;
use pistil_kernels::matmul::MatError;
use pistil_kernels::ops::rope::RopeError;
use pistil_kernels::ops::{Ops, RopeCache, RopeParams};
use pistil_kernels::pool::{PoolError, ThreadPool, DEFAULT_SPIN};
use pistil_kernels::{GgmlType, Kernels};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use weights::Weights;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("unsupported model architecture {arch:?} (pistil runs: {supported})")]
    UnknownArch { arch: String, supported: String },
    #[error("metadata key {key}: {reason}")]
    BadConfig { key: String, reason: String },
    #[error("tensor {name} is missing (required by the {arch} architecture)")]
    MissingTensor { name: String, arch: &'static str },
    #[error("tensor {name} has shape {found}, expected {expected}")]
    TensorShape {
        name: String,
        expected: String,
        found: String,
    },
    #[error("tensor {tensor} has type {ty}, which pistil cannot compute with on this CPU")]
    UnsupportedType { tensor: String, ty: GgmlType },
    #[error("tensor {tensor}: {source}")]
    Matrix {
        tensor: String,
        #[source]
        source: MatError,
    },
    #[error("kernels: {0}")]
    Kernels(String),
    #[error("thread pool: {0}")]
    Pool(#[from] PoolError),
    #[error("RoPE: {0}")]
    Rope(#[from] RopeError),
    #[error("invalid option: {0}")]
    Options(String),
    #[error("context is full: {needed} tokens needed, the context holds {n_ctx}")]
    ContextFull { n_ctx: usize, needed: usize },
    #[error("token id {id} is outside the vocabulary (0..{n_vocab})")]
    InvalidToken { id: u32, n_vocab: usize },
    #[error("no tokens to process")]
    NoTokens,
    #[error("logits for {requested} positions asked, the state holds {capacity} (StateOptions::logits_rows)")]
    LogitsCapacity { requested: usize, capacity: usize },
    #[error("this state was created by another model")]
    StateMismatch,
    #[error(transparent)]
    Matmul(#[from] MatError),
}

impl From<&DispatchError> for ModelError {
    fn from(e: &DispatchError) -> ModelError {
        ModelError::Kernels(e.to_string())
    }
}

/// How a model is loaded.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Threads of the model's pool (the caller included); the board profile decides.
    pub n_threads: usize,
    /// Spin iterations of an idle worker before it parks
    /// ([`pistil_kernels::pool::DEFAULT_SPIN`]; 0 = park at once, lowest power).
    pub spin: u32,
    /// Multiply prompt batches through the formats' GEMMs (the default; a
    /// batch's logits then differ from token-by-token decoding in the last
    /// bits, as llama.cpp's do with its tiled/repacked GEMMs). `false` runs
    /// every product through `gemv`: batched and one-at-a-time results are
    /// then bit-identical, at ~2× the prompt time.
    pub prompt_gemm: bool,
    /// Fewest tokens in a batch for the GEMMs
    /// ([`pistil_kernels::matmul::GEMM_MIN_TOKENS`]; shorter batches take
    /// `gemv`, which is faster there).
    pub gemm_min_tokens: usize,
    /// The kernel table to compute with; `None` = the process's
    /// ([`Kernels::try_get`]). `pistil bench --ceiling` passes
    /// [`Kernels::read_probe`].
    pub kernels: Option<&'static Kernels>,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            n_threads: 1,
            spin: DEFAULT_SPIN,
            prompt_gemm: true,
            gemm_min_tokens: pistil_kernels::matmul::GEMM_MIN_TOKENS,
            kernels: None,
        }
    }
}

/// The sizes of one inference context.
#[derive(Clone, Debug)]
pub struct StateOptions {
    /// Context length in tokens (KV cache positions).
    pub n_ctx: usize,
    /// Most tokens per forward step (a longer input is split); sizes the
    /// activation buffers. Clamped to `n_ctx`.
    pub n_batch: usize,
    /// KV cache element type.
    pub kv_type: KvType,
    /// Rows of logits the state holds: 1 for generation; the input length
    /// for [`Logits::All`] (teacher forcing).
    pub logits_rows: usize,
}

impl Default for StateOptions {
    fn default() -> StateOptions {
        StateOptions {
            n_ctx: 4096,
            n_batch: 512,
            kv_type: KvType::F16,
            logits_rows: 1,
        }
    }
}

/// Which positions of a forward step produce logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (generation).
    Last,
    /// Every token's, `[n_tokens][n_vocab]` (needs `logits_rows >= n_tokens`).
    All,
    /// None (fill the cache only).
    None,
}

/// Memory of a model with one [`State`], in bytes, from the same sizes
/// [`Model::new_state`] allocates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    pub n_ctx: usize,
    pub n_batch: usize,
    pub kv_type: KvType,
    /// Tensor data in the file (mapped, not copied; resident once touched).
    pub weights: u64,
    /// Norm weights and biases the model copies out as f32.
    pub model_heap: u64,
    /// The KV cache.
    pub kv: u64,
    /// Activations, quantized activations, attention scratch, RoPE tables, token ids.
    pub scratch: u64,
    /// The logits buffer.
    pub logits: u64,
}

impl MemoryPlan {
    /// Everything: weights + model heap + state.
    pub fn total(&self) -> u64 {
        self.weights + self.model_heap + self.state_bytes()
    }

    /// What one [`State`] allocates.
    pub fn state_bytes(&self) -> u64 {
        self.kv + self.scratch + self.logits
    }
}

static NEXT_MODEL_ID: AtomicU64 = AtomicU64::new(1);

/// A loaded model: configuration, weights (in the mapped file) and thread pool.
pub struct Model {
    gguf: Arc<Gguf>,
    config: Config,
    kernels: &'static Kernels,
    gemm_min_tokens: usize,
    ops: &'static Ops,
    pool: ThreadPool,
    w: Weights,
    id: u64,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("arch", &self.config.arch)
            .field("n_layer", &self.config.n_layer)
            .field("n_embd", &self.config.n_embd)
            .field("n_vocab", &self.config.n_vocab)
            .field("n_threads", &self.pool.n_threads())
            .finish()
    }
}

/// Per-slot activation sizes and attention scratch sizes shared by
/// [`Model::new_state`] and [`Model::memory_plan`] (one formula for both).
struct Layout {
    n_ctx: usize,
    n_batch: usize,
    logits_rows: usize,
    kv_type: KvType,
    /// Per layer: positions kept.
    kv_caps: Vec<usize>,
    /// Per activation slot: bytes of one quantized row of the widest input.
    act_row_bytes: Vec<usize>,
    n_threads: usize,
    /// RoPE tables: 1, or 2 with sliding-window layers (their own base).
    n_rope_kinds: usize,
}

impl Model {
    /// Loads the model in `gguf`: reads the [`Config`], checks every tensor's
    /// shape and type, and starts the thread pool. The weights stay in the
    /// file's memory.
    pub fn load(gguf: Arc<Gguf>, opts: &LoadOptions) -> Result<Model, ModelError> {
        let kernels = match opts.kernels {
            Some(k) => k,
            None => Kernels::try_get().map_err(ModelError::from)?,
        };
        let config = Config::from_gguf(&gguf)?;
        let w = Weights::load(&gguf, kernels, &config)?;
        if opts.n_threads == 0 {
            return Err(ModelError::Options("n_threads must be at least 1".into()));
        }
        let pool = ThreadPool::with_spin(opts.n_threads, opts.spin)?;
        tracing::debug!(
            "model {}: {} layers, n_embd {}, {} heads / {} KV, vocab {}, acts {:?}",
            config.arch,
            config.n_layer,
            config.n_embd,
            config.n_head,
            config.n_head_kv,
            config.n_vocab,
            w.acts
        );
        Ok(Model {
            gguf,
            config,
            kernels,
            // Without the GEMMs every batch takes `gemv`, as a single token does.
            gemm_min_tokens: if opts.prompt_gemm {
                opts.gemm_min_tokens
            } else {
                usize::MAX
            },
            ops: Ops::get(),
            pool,
            w,
            id: NEXT_MODEL_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Logits per token.
    pub fn vocab_size(&self) -> usize {
        self.config.n_vocab
    }

    /// The file the weights live in.
    pub fn gguf(&self) -> &Arc<Gguf> {
        &self.gguf
    }

    /// Threads of the pool.
    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// Uses only `n` of the pool's threads from the next forward pass on
    /// (clamped to `1..=n_threads`); the thermal governor lowers it under
    /// sustained throttling and restores it when cool. Returns the count in effect.
    pub fn set_active_threads(&self, n: usize) -> usize {
        self.pool.set_active_threads(n)
    }

    /// Whether the output layer reuses the token embedding.
    pub fn tied_output(&self) -> bool {
        self.w.tied_output
    }

    /// The activation types the weight matrices multiply (ggml `vec_dot_type`).
    pub fn activation_types(&self) -> &[GgmlType] {
        &self.w.acts
    }

    fn layout(&self, opts: &StateOptions) -> Result<Layout, ModelError> {
        let c = &self.config;
        if opts.n_ctx == 0 {
            return Err(ModelError::Options("n_ctx must be at least 1".into()));
        }
        if opts.n_batch == 0 {
            return Err(ModelError::Options("n_batch must be at least 1".into()));
        }
        if opts.n_ctx > c.n_ctx_train {
            tracing::warn!(
                "context {} is longer than the {} tokens the model was trained with",
                opts.n_ctx,
                c.n_ctx_train
            );
        }
        for (what, n) in [("key", c.head_dim_k), ("value", c.head_dim_v)] {
            if kv::row_bytes(opts.kv_type, n).is_none() {
                return Err(ModelError::Options(format!(
                    "a {} KV cache needs {what} heads of a multiple of {} values; this model's are {n}",
                    opts.kv_type,
                    kv::ggml_type(opts.kv_type).block_elems()
                )));
            }
        }
        let n_batch = opts.n_batch.min(opts.n_ctx);
        // The widest input of each activation type: E (q/k/v, gate/up, output),
        // attn_out_dim (wo), n_ff (down).
        let mut max_cols = vec![0usize; self.w.acts.len()];
        let mut see = |m: &weights::Mat| {
            if let Some(c) = max_cols.get_mut(m.slot) {
                *c = (*c).max(m.cols);
            }
        };
        see(&self.w.output);
        for l in &self.w.layers {
            for m in [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down] {
                see(m);
            }
        }
        let mut act_row_bytes = Vec::with_capacity(self.w.acts.len());
        for (&a, &cols) in self.w.acts.iter().zip(&max_cols) {
            act_row_bytes.push(a.row_bytes(cols).ok_or_else(|| {
                ModelError::Options(format!(
                    "{cols} columns is not a whole number of {a} blocks"
                ))
            })?);
        }
        Ok(Layout {
            n_ctx: opts.n_ctx,
            n_batch,
            logits_rows: opts.logits_rows.max(1),
            kv_type: opts.kv_type,
            kv_caps: (0..c.n_layer)
                .map(|il| c.kv_positions(il, opts.n_ctx, n_batch))
                .collect(),
            act_row_bytes,
            n_threads: self.pool.n_threads(),
            n_rope_kinds: if c.sliding_window.is_some() { 2 } else { 1 },
        })
    }

    /// The memory this model needs with one [`State`] of `opts`: exactly what
    /// [`Model::new_state`] allocates, plus the weights.
    pub fn memory_plan(&self, opts: &StateOptions) -> Result<MemoryPlan, ModelError> {
        let l = self.layout(opts)?;
        let c = &self.config;
        let kv: u64 = l
            .kv_caps
            .iter()
            .map(|&cap| {
                KvBuf::bytes(l.kv_type, c.n_head_kv * cap, c.head_dim_k)
                    + KvBuf::bytes(l.kv_type, c.n_head_kv * cap, c.head_dim_v)
            })
            .sum();
        let f = 4u64;
        let b = l.n_batch as u64;
        let acts = b
            * (2 * c.n_embd
                + c.q_dim()
                + c.k_dim()
                + c.v_dim()
                + c.attn_out_dim()
                + c.n_embd
                + 2 * c.n_ff) as u64
            * f;
        let qacts: u64 = l.act_row_bytes.iter().map(|&r| r as u64 * b).sum();
        let attn = l.n_threads as u64 * attn_scratch_bytes(c, &l);
        let rope = l.n_rope_kinds as u64 * b * (c.n_rot as u64 * f + c.n_rot as u64 / 2 * f);
        let tokens = l.n_ctx as u64 * 4;
        Ok(MemoryPlan {
            n_ctx: l.n_ctx,
            n_batch: l.n_batch,
            kv_type: l.kv_type,
            weights: self.gguf.tensor_bytes(),
            model_heap: self.w.heap_bytes,
            kv,
            scratch: acts + qacts + attn + rope + tokens,
            logits: l.logits_rows as u64 * c.n_vocab as u64 * f,
        })
    }

    /// A new inference context: allocates the KV cache and every buffer a
    /// forward step uses, once.
    pub fn new_state(&self, opts: &StateOptions) -> Result<State, ModelError> {
        let l = self.layout(opts)?;
        let c = &self.config;
        let b = l.n_batch;
        let kv = KvCache {
            ty: l.kv_type,
            n_head_kv: c.n_head_kv,
            head_dim_k: c.head_dim_k,
            head_dim_v: c.head_dim_v,
            layers: l
                .kv_caps
                .iter()
                .enumerate()
                .map(|(il, &cap)| LayerKv {
                    cap,
                    window: match c.swa_layers.get(il) {
                        Some(true) => c.sliding_window,
                        _ => None,
                    },
                    k: KvBuf::new(l.kv_type, c.n_head_kv * cap, c.head_dim_k),
                    v: KvBuf::new(l.kv_type, c.n_head_kv * cap, c.head_dim_v),
                })
                .collect(),
        };
        let mut rope = Vec::with_capacity(l.n_rope_kinds);
        for kind in 0..l.n_rope_kinds {
            let params = self.rope_params(kind == 1);
            let ff = if kind == 0 {
                self.w.rope_freqs.as_deref()
            } else {
                None
            };
            let mut caches = Vec::with_capacity(b);
            for _ in 0..b {
                caches.push(RopeCache::new(params, ff)?);
            }
            rope.push(caches);
        }
        let attn = (0..l.n_threads)
            .map(|_| attention::Scratch::new(c, l.n_ctx, l.kv_type))
            .collect();
        Ok(State {
            model_id: self.id,
            n_ctx: l.n_ctx,
            n_batch: b,
            kv_type: l.kv_type,
            logits_rows: l.logits_rows,
            tokens: Vec::with_capacity(l.n_ctx),
            kv,
            x: vec![0.0; b * c.n_embd],
            xn: vec![0.0; b * c.n_embd],
            q: vec![0.0; b * c.q_dim()],
            k: vec![0.0; b * c.k_dim()],
            v: vec![0.0; b * c.v_dim()],
            att: vec![0.0; b * c.attn_out_dim()],
            tmp: vec![0.0; b * c.n_embd],
            gate: vec![0.0; b * c.n_ff],
            up: vec![0.0; b * c.n_ff],
            qa: l.act_row_bytes.iter().map(|&r| vec![0u8; r * b]).collect(),
            rope,
            attn,
            logits: vec![0.0; l.logits_rows * c.n_vocab],
            n_logits: 0,
        })
    }

    /// RoPE parameters of full-attention (`swa = false`) or sliding-window layers.
    fn rope_params(&self, swa: bool) -> RopeParams {
        let c = &self.config;
        let base = if swa {
            c.rope_freq_base_swa
        } else {
            c.rope_freq_base
        };
        let mut p = RopeParams::new(c.rope_mode, c.n_rot, base);
        if !swa {
            match c.rope_scaling {
                RopeScaling::None => {}
                RopeScaling::Linear { factor } => p.freq_scale = 1.0 / factor,
                RopeScaling::Yarn { factor, n_ctx_orig } => {
                    p.freq_scale = 1.0 / factor;
                    p.ext_factor = 1.0;
                    p.n_ctx_orig = n_ctx_orig;
                }
            }
        }
        p
    }
}

/// Bytes of one thread's attention scratch (see [`attention::Scratch`]).
fn attn_scratch_bytes(c: &Config, l: &Layout) -> u64 {
    attention::Scratch::bytes(c, l.n_ctx, l.kv_type)
}

/// One inference context: KV cache, scratch buffers, logits, and the ids of
/// the tokens in the cache. Made by [`Model::new_state`]; used with the model
/// that made it.
pub struct State {
    model_id: u64,
    n_ctx: usize,
    n_batch: usize,
    kv_type: KvType,
    logits_rows: usize,
    /// The token ids in the cache, position by position.
    tokens: Vec<u32>,
    kv: KvCache,
    /// `[n_batch][n_embd]`: the residual stream.
    x: Vec<f32>,
    /// `[n_batch][n_embd]`: normed input of a matrix group.
    xn: Vec<f32>,
    /// `[n_batch][q_dim]`, `[n_batch][k_dim]`, `[n_batch][v_dim]`.
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// `[n_batch][attn_out_dim]`: attention output.
    att: Vec<f32>,
    /// `[n_batch][n_embd]`: output of `wo` / `down`.
    tmp: Vec<f32>,
    /// `[n_batch][n_ff]` each.
    gate: Vec<f32>,
    up: Vec<f32>,
    /// Per activation slot: `[n_batch][row bytes]` quantized activations.
    qa: Vec<Vec<u8>>,
    /// Per RoPE kind (full, sliding): `[n_batch]` cos/sin tables.
    rope: Vec<Vec<RopeCache>>,
    /// Per thread: attention scratch.
    attn: Vec<attention::Scratch>,
    /// `[logits_rows][n_vocab]`.
    logits: Vec<f32>,
    /// Rows of `logits` written by the last forward step.
    n_logits: usize,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("n_ctx", &self.n_ctx)
            .field("n_batch", &self.n_batch)
            .field("kv_type", &self.kv_type)
            .field("n_past", &self.tokens.len())
            .finish()
    }
}

impl State {
    /// Tokens in the cache (the position the next token gets).
    pub fn n_past(&self) -> usize {
        self.tokens.len()
    }

    /// The ids of the tokens in the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Context length.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Most tokens per forward step.
    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    /// KV cache element type.
    pub fn kv_type(&self) -> KvType {
        self.kv_type
    }

    /// Rows of logits the state can hold.
    pub fn logits_rows(&self) -> usize {
        self.logits_rows
    }

    /// The logits of the last forward step (`[rows][n_vocab]`).
    pub fn logits(&self) -> &[f32] {
        let n = self.logits.len() / self.logits_rows.max(1) * self.n_logits;
        self.logits.get(..n).unwrap_or_default()
    }

    /// Forgets every cached token.
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.n_logits = 0;
    }

    /// Keeps the first `n` cached tokens and forgets the rest; returns how
    /// many are kept: `min(n, n_past)`, or 0 when a sliding-window layer's ring
    /// no longer holds the window before position `n` (a rollback of more than
    /// `n_batch` tokens on Gemma 3): the caller then re-processes from the start.
    pub fn truncate(&mut self, n: usize) -> usize {
        let old = self.tokens.len();
        if n >= old {
            return old;
        }
        for l in &self.kv.layers {
            if let (Some(window), true) = (l.window, l.cap < self.n_ctx) {
                // The ring holds positions old - cap .. old; the next token, at
                // position n, needs n - window + 1 .. n.
                if (n + 1).saturating_sub(window) < old.saturating_sub(l.cap) {
                    self.clear();
                    return 0;
                }
            }
        }
        self.tokens.truncate(n);
        self.n_logits = 0;
        n
    }

    /// Length of the common prefix of the cached tokens and `ids`.
    pub fn common_prefix(&self, ids: &[u32]) -> usize {
        self.tokens
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count()
    }

    /// Prepares to process `ids` reusing the cache: truncates it to the
    /// longest common prefix, keeping at least one token of `ids` to process
    /// (its logits are needed), and returns how many leading ids are already
    /// cached. Feed `ids[returned..]` to [`Model::forward`].
    pub fn reuse_prefix(&mut self, ids: &[u32]) -> usize {
        let keep = self.common_prefix(ids).min(ids.len().saturating_sub(1));
        self.truncate(keep)
    }
}
