//! What the HTTP layer asks of a model runner: load a model, generate one
//! reply while streaming its pieces, unload.
//!
//! The server is written against [`Backend`] so its shapes, streaming,
//! queueing and cancellation are tested with a fast fake
//! ([`crate::fake::FakeBackend`]) as well as with the real engine
//! ([`crate::engine_backend::EngineBackend`]). A backend lives on the worker
//! thread ([`crate::worker`]); it runs one request at a time and never touches
//! the async runtime.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pistil_runtime::constraint::JsonSchema;
use serde::Serialize;

/// A model a request named, resolved to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name clients see and use (`gemma3:270m`, or a file's stem).
    pub name: String,
    /// The GGUF file.
    pub path: PathBuf,
}

/// Ollama's `details` object of a model.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ModelDetails {
    /// Always empty (no model is derived from another here).
    pub parent_model: String,
    /// Always `gguf`.
    pub format: String,
    /// `general.architecture` (`qwen2`, `llama`, `gemma3`).
    pub family: String,
    /// `[family]`.
    pub families: Vec<String>,
    /// `1.8B`, `268M`.
    pub parameter_size: String,
    /// `Q4_K_M` (llama.cpp file-type name).
    pub quantization_level: String,
}

/// Everything the API reports about a model (`/api/tags`, `/api/show`, `/api/ps`).
#[derive(Debug, Clone, Default)]
pub struct ModelInfo {
    /// The name clients use.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// File size in bytes.
    pub size: u64,
    /// A sha256 hex string: the catalog's checksum of the file when known,
    /// else a digest of (path, size, mtime) — an identity, not a content hash.
    pub digest: String,
    /// File modification time.
    pub modified: Option<std::time::SystemTime>,
    /// Ollama's `details`.
    pub details: ModelDetails,
    /// Context length the model was trained for (0 if unknown).
    pub context_length: u64,
    /// Context the loaded engine uses (0 when not loaded).
    pub n_ctx: u64,
    /// The chat template's source text, if any.
    pub template: String,
    /// `completion`, plus `thinking` for models that write a thought.
    pub capabilities: Vec<String>,
    /// GGUF metadata for `/api/show` (`model_info`), big arrays left out.
    pub model_info: serde_json::Map<String, serde_json::Value>,
    /// Bytes the loaded model holds in memory (weights + KV + scratch; 0 if unknown).
    pub memory_bytes: u64,
}

/// One chat message, as the API gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    pub content: String,
    /// An assistant message's thought, if the client sent it back.
    pub thinking: Option<String>,
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// A completion prompt (`/api/generate`, `/v1/completions`).
    Text {
        /// The prompt.
        text: String,
        /// No template: the text is fed as is (Ollama `raw`, OpenAI completions).
        raw: bool,
        /// A system message to put before it (templated prompts only).
        system: Option<String>,
    },
    /// A conversation rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
}

/// Whether the model should write its thought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Think {
    /// The model decides (R1 thinks); the thought is returned separately.
    #[default]
    Default,
    /// Ask the model to think (same as default for R1 models).
    On,
    /// Ask the model not to think (R1: an empty thought is pre-filled).
    Off,
}

/// Sampling settings (llama.cpp's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1 = off.
    pub top_p: f32,
    /// 0 = off.
    pub min_p: f32,
    /// 1 = off.
    pub repeat_penalty: f32,
    /// Tokens looked back for the penalties (0 = off, -1 in the API = the context).
    pub repeat_last_n: usize,
    /// OpenAI-style presence penalty (0 = off).
    pub presence_penalty: f32,
    /// OpenAI-style frequency penalty (0 = off).
    pub frequency_penalty: f32,
    /// Seed; `None` = random.
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

/// One generation request, API-neutral.
#[derive(Debug, Clone)]
pub struct GenRequest {
    /// What to continue.
    pub prompt: Prompt,
    /// How to sample.
    pub sampling: Sampling,
    /// Most tokens to generate; `None` = until end of turn or the context is full.
    pub max_tokens: Option<usize>,
    /// Stop strings (never part of the output).
    pub stop: Vec<String>,
    /// Thinking.
    pub think: Think,
    /// Structured output: the reply is JSON matching this schema.
    pub format: Option<Arc<JsonSchema>>,
    /// Context size asked for (Ollama `num_ctx`); the backend caps it to what fits.
    pub num_ctx: Option<usize>,
}

impl GenRequest {
    /// A request with default sampling.
    pub fn new(prompt: Prompt) -> GenRequest {
        GenRequest {
            prompt,
            sampling: Sampling::default(),
            max_tokens: None,
            stop: Vec::new(),
            think: Think::Default,
            format: None,
            num_ctx: None,
        }
    }
}

/// A piece of the reply (whole UTF-8; stop strings never included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Part of the thought.
    Thinking(String),
    /// Part of the answer.
    Content(String),
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoneReason {
    /// End of turn or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The context is full.
    Context,
    /// The client went away.
    Cancelled,
}

/// What one generation cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Prompt tokens (all of them, cached or not).
    pub prompt_tokens: usize,
    /// Prompt tokens reused from the KV cache of the previous request.
    pub cached_tokens: usize,
    /// Time spent evaluating the prompt (the uncached part).
    pub prompt_eval: Duration,
    /// Tokens generated.
    pub gen_tokens: usize,
    /// Time spent generating.
    pub eval: Duration,
    /// Why it ended (`None` only for an empty generation).
    pub done_reason: Option<DoneReason>,
    /// Prompt + generation wall time.
    pub total: Duration,
    /// The prompt and reply token ids, when the backend provides them (Ollama `context`).
    pub context: Option<Vec<u32>>,
}

/// Why a backend call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum BackendError {
    /// The model file could not be loaded.
    #[error("cannot load model {name}: {detail}")]
    Load {
        /// The model.
        name: String,
        /// Why.
        detail: String,
    },
    /// The model does not fit in this board's memory.
    #[error("{0}")]
    DoesNotFit(String),
    /// The prompt does not fit in the context.
    #[error("the prompt is {prompt} tokens, longer than the context of {n_ctx} tokens; shorten it or raise num_ctx")]
    PromptTooLong {
        /// Prompt tokens.
        prompt: usize,
        /// Context size.
        n_ctx: usize,
    },
    /// The request cannot be served (bad template input, bad option).
    #[error("{0}")]
    BadRequest(String),
    /// Anything else (an engine failure); the server stays up.
    #[error("{0}")]
    Internal(String),
}

/// A model runner. Called from one thread only, one call at a time.
pub trait Backend: Send + 'static {
    /// Load `spec` (the previous model, if any, was unloaded first).
    fn load(&mut self, spec: &ModelSpec) -> Result<ModelInfo, BackendError>;
    /// Free the loaded model.
    fn unload(&mut self);
    /// Generate one reply with the loaded model, streaming pieces to `sink`;
    /// `sink` returning `Break` cancels (checked after every token).
    fn generate(
        &mut self,
        req: &GenRequest,
        sink: &mut dyn FnMut(Event) -> ControlFlow<()>,
    ) -> Result<Stats, BackendError>;
}
