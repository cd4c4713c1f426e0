//! The generation engine: a loaded model ([`LoadedModel`]: GGUF, weights,
//! tokenizer, chat template) and an inference context over it ([`Engine`]:
//! KV cache, sampler, streaming text) that runs one [`Request`] at a time.
//! The command line, the HTTP server and the IoT front ends are written
//! against this module.
//!
//! ```no_run
//! # use std::{ops::ControlFlow, sync::Arc};
//! # use pistil_runtime::engine::*;
//! let opts = EngineOptions::default();
//! let model = Arc::new(LoadedModel::load("model.gguf".as_ref(), &opts)?);
//! let mut engine = Engine::new(model, &opts)?;
//! let mut req = Request::new(Prompt::Chat(vec![Message::user("Why is the sky blue?")]));
//! let stats = engine.generate(&mut req, &mut |ev| {
//!     match ev {
//!         Event::Thinking(t) => eprint!("{t}"),
//!         Event::Content(t) => print!("{t}"),
//!     }
//!     ControlFlow::Continue(())
//! })?;
//! println!("\n{} tokens, {:?}", stats.gen_tokens, stats.done_reason);
//! # Ok::<(), EngineError>(())
//! ```
//!
//! One generation:
//!
//! 1. the prompt is rendered (chat template with the generation prompt, or
//!    raw text, or token ids) and tokenized;
//! 2. checked against the context (an error naming both numbers, or with
//!    [`Request::truncate`] the oldest tokens after BOS are dropped);
//! 3. the cache keeps the longest prefix it shares with the prompt (earlier
//!    turns of a chat) and only the rest is processed, in batches;
//! 4. then token by token: [`LogitsConstraint`] mask → [`Sampler`] → end of
//!    generation? → think budget (force `</think>`) → detokenize (whole UTF-8
//!    characters) → thought/answer split → stop strings → `sink` — until an
//!    end-of-generation token, a stop string, `max_tokens`, the end of the
//!    context, or the sink's `Break`.
//!
//! A decoded token allocates nothing: the logits copy, the sampler's
//! candidates and the text buffers are allocated once, and the events borrow
//! the text (`Event<'_>` holds `&str`).

mod conversation;
pub mod stream;

pub use crate::gguf::LoadMode;
pub use crate::plan::KvType;
pub use crate::sampler::{Sampler, SamplerError, SamplingParams};
pub use conversation::{Conversation, Transcript};

use crate::chat::reasoning::{THINK_CLOSE, THINK_OPEN};
use crate::chat::{
    prompt_opens_thinking, BuiltinTemplate, ChatError, ChatMessage, ChatTemplate, ThinkBudget,
};
use crate::gguf::{Gguf, GgufError};
use crate::model::{LoadOptions, Logits, MemoryPlan, Model, ModelError, State, StateOptions};
use crate::tokenizer::{Detokenizer, Tokenizer, TokenizerError};
use pistil_kernels::pool::DEFAULT_SPIN;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stream::{Halt, Kind, StopMatcher, ThoughtSplitter};

/// How a model is loaded and its context sized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// Compute threads (the model's pool, the caller included). Used by
    /// [`LoadedModel::load`].
    pub n_threads: usize,
    /// Context length in tokens (KV cache positions).
    pub n_ctx: usize,
    /// Most prompt tokens per forward step.
    pub n_batch: usize,
    /// KV cache element type.
    pub kv_type: KvType,
    /// How the GGUF is brought into memory. Used by [`LoadedModel::load`].
    pub load_mode: LoadMode,
    /// Idle workers spin briefly before parking (faster decode; `false`
    /// parks at once, for power or thermal headroom).
    pub spin: bool,
    /// Prompt batches through the formats' GEMMs (see
    /// [`LoadOptions::prompt_gemm`]); `false` makes a conversation continued
    /// from the KV cache bit-identical to the same text evaluated afresh.
    pub prompt_gemm: bool,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            n_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n_ctx: 4096,
            n_batch: 512,
            kv_type: KvType::F16,
            load_mode: LoadMode::Mmap,
            spin: true,
            prompt_gemm: true,
        }
    }
}

/// Why loading or generating failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The prompt does not fit in the context (and `truncate` was not asked).
    #[error(
        "the prompt is {prompt} tokens long but the context holds {n_ctx}; use a larger context \
         (-c) or a shorter prompt"
    )]
    PromptTooLong {
        /// Prompt tokens.
        prompt: usize,
        /// Context length.
        n_ctx: usize,
    },
    /// Nothing to process.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// Opening the GGUF failed.
    #[error("{}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: GgufError,
    },
    /// The model could not be loaded or run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Tokenizing or detokenizing failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The chat template failed.
    #[error(transparent)]
    Template(#[from] ChatError),
    /// The structured-output constraint failed.
    #[error("structured output: {0}")]
    Constraint(Box<dyn std::error::Error + Send + Sync>),
    /// Bad sampling settings, or nothing left to sample.
    #[error(transparent)]
    Sampler(#[from] SamplerError),
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    /// The name templates use: `system`, `user`, `assistant`, `tool`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "tool" => Some(Role::Tool),
            _ => None,
        }
    }
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    /// The text; for an assistant turn the answer without its thought.
    pub content: String,
    /// An assistant turn's thought, kept apart (the template decides whether it is shown again).
    pub thinking: Option<String>,
}

impl Message {
    /// A message.
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
            thinking: None,
        }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Message {
        Message::new(Role::System, content)
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Message {
        Message::new(Role::User, content)
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new(Role::Assistant, content)
    }

    fn to_chat(&self) -> ChatMessage {
        ChatMessage {
            role: self.role.as_str().to_string(),
            content: self.content.clone(),
            thinking: self.thinking.clone(),
        }
    }
}

/// What to generate from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// A completion. `raw`: the text as is (Ollama's `raw`; special-token
    /// text such as `<｜User｜>` is parsed, as llama.cpp does); otherwise it is
    /// templated as one user turn.
    Text { text: String, raw: bool },
    /// A chat, rendered with the model's template and its generation prompt.
    Chat(Vec<Message>),
    /// Token ids, as is.
    Tokens(Vec<u32>),
}

/// How much the model may think (reasoning models).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThinkMode {
    /// The model decides (R1 models think).
    #[default]
    Default,
    /// No thought: an empty `<think>\n\n</think>\n\n` is pre-filled.
    Off,
    /// At most this many thinking tokens, then `</think>` is forced.
    Budget(usize),
}

/// Structured output: masks logits before sampling and learns each sampled token.
pub trait LogitsConstraint: Send {
    /// Sets the logits of tokens that may not come next to −∞.
    fn apply(&mut self, logits: &mut [f32]) -> Result<(), EngineError>;
    /// Advances past the sampled token.
    fn accept(&mut self, token: u32) -> Result<(), EngineError>;
    /// The output is complete: generation stops.
    fn is_finished(&self) -> bool;
}

/// One generation request.
pub struct Request {
    pub prompt: Prompt,
    pub sampling: SamplingParams,
    /// Most tokens to generate; `None`: until end of generation or of the context.
    pub max_tokens: Option<usize>,
    /// Stop strings (matched on the answer text, never emitted).
    pub stop: Vec<String>,
    pub think: ThinkMode,
    /// Structured output.
    pub constraint: Option<Box<dyn LogitsConstraint>>,
    /// A prompt longer than the context: `false` → [`EngineError::PromptTooLong`],
    /// `true` → the oldest tokens after BOS are dropped.
    pub truncate: bool,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("prompt", &self.prompt)
            .field("sampling", &self.sampling)
            .field("max_tokens", &self.max_tokens)
            .field("stop", &self.stop)
            .field("think", &self.think)
            .field("constraint", &self.constraint.is_some())
            .field("truncate", &self.truncate)
            .finish()
    }
}

impl Request {
    /// A request with llama.cpp's default sampling, no limits.
    pub fn new(prompt: Prompt) -> Request {
        Request {
            prompt,
            sampling: SamplingParams::default(),
            max_tokens: None,
            stop: Vec::new(),
            think: ThinkMode::Default,
            constraint: None,
            truncate: false,
        }
    }
}

/// A piece of generated text: whole UTF-8 characters, never part of a stop string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Text of the thought.
    Thinking(&'a str),
    /// Text of the answer.
    Content(&'a str),
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoneReason {
    /// An end-of-generation token, a stop string, or a finished constraint.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The context is full.
    Context,
    /// The sink (or the interrupt flag) stopped it.
    Cancelled,
}

impl DoneReason {
    /// `stop`, `length`, `context`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            DoneReason::Stop => "stop",
            DoneReason::Length => "length",
            DoneReason::Context => "context",
            DoneReason::Cancelled => "cancelled",
        }
    }
}

/// What a generation did, and how long it took.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// Prompt tokens (after any truncation).
    pub prompt_tokens: usize,
    /// Of those, already in the KV cache (not processed again).
    pub cached_tokens: usize,
    /// Prompt tokens dropped by `truncate`.
    pub truncated_tokens: usize,
    /// Processing the uncached prompt tokens.
    pub prompt_eval: Duration,
    /// Tokens generated (sampled, plus any forced `</think>`).
    pub gen_tokens: usize,
    /// From the end of the prompt to the end of generation.
    pub eval: Duration,
    pub done_reason: DoneReason,
    /// The whole call (rendering and tokenizing included).
    pub total: Duration,
    /// The seed the sampler used.
    pub seed: u32,
}

impl Stats {
    /// Prompt tokens actually processed.
    pub fn prompt_evaluated(&self) -> usize {
        self.prompt_tokens - self.cached_tokens
    }

    /// Prompt tokens per second.
    pub fn prompt_eval_rate(&self) -> f64 {
        rate(self.prompt_evaluated(), self.prompt_eval)
    }

    /// Generated tokens per second.
    pub fn eval_rate(&self) -> f64 {
        rate(self.gen_tokens, self.eval)
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Everything loaded for one model: the GGUF, model weights, tokenizer, chat
/// template. Shared between engines (`Arc`).
pub struct LoadedModel {
    /// Display name (the file stem unless the caller sets a catalog name).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    pub gguf: Arc<Gguf>,
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
    pub template: Arc<ChatTemplate>,
    /// Time to load (open + weights + tokenizer + template).
    pub load_time: Duration,
    /// `(<think>, </think>)` ids when the vocabulary has both as single tokens.
    think_tags: Option<(u32, u32)>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("model", &self.model)
            .field("template", &self.template.origin())
            .field("load_time", &self.load_time)
            .finish_non_exhaustive()
    }
}

impl LoadedModel {
    /// Opens `path` with `opts.load_mode` and loads everything, with
    /// `opts.n_threads` compute threads.
    pub fn load(path: &Path, opts: &EngineOptions) -> Result<LoadedModel, EngineError> {
        let t0 = Instant::now();
        let gguf = Gguf::open(path, opts.load_mode).map_err(|source| EngineError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut m = LoadedModel::from_gguf(Arc::new(gguf), opts)?;
        m.load_time = t0.elapsed();
        Ok(m)
    }

    /// Loads from an already open GGUF (`load_time` then excludes the open).
    pub fn from_gguf(gguf: Arc<Gguf>, opts: &EngineOptions) -> Result<LoadedModel, EngineError> {
        LoadedModel::from_gguf_with(gguf, opts, None)
    }

    /// [`LoadedModel::from_gguf`] computing with `kernels` instead of the
    /// process's table when given (see [`LoadOptions::kernels`]).
    pub fn from_gguf_with(
        gguf: Arc<Gguf>,
        opts: &EngineOptions,
        kernels: Option<&'static pistil_kernels::Kernels>,
    ) -> Result<LoadedModel, EngineError> {
        let t0 = Instant::now();
        let path = gguf.path().map(Path::to_path_buf).unwrap_or_default();
        let model = Model::load(
            gguf.clone(),
            &LoadOptions {
                n_threads: opts.n_threads.max(1),
                spin: if opts.spin { DEFAULT_SPIN } else { 0 },
                prompt_gemm: opts.prompt_gemm,
                kernels,
                ..LoadOptions::default()
            },
        )?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let template = load_template(&gguf, &tokenizer)?;
        let think_tags = tokenizer
            .token_id(THINK_OPEN)
            .zip(tokenizer.token_id(THINK_CLOSE));
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        Ok(LoadedModel {
            name,
            path,
            gguf,
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            template: Arc::new(template),
            load_time: t0.elapsed(),
            think_tags,
        })
    }

    /// Whether the file carries its own chat template (`tokenizer.chat_template`);
    /// without one a built-in template stands in (a base model, most likely).
    pub fn has_own_template(&self) -> bool {
        self.template.origin() == crate::chat::TemplateOrigin::Gguf
    }

    /// Whether the model writes a `<think>` thought (R1 vocabularies).
    pub fn can_think(&self) -> bool {
        self.think_tags.is_some()
    }

    /// Context length the model was trained with.
    pub fn context_length(&self) -> usize {
        self.model.config().n_ctx_train
    }
}

/// The file's template; one that fails to parse is replaced by the built-in
/// one for the model (with a warning) rather than making the model unusable.
fn load_template(gguf: &Gguf, tok: &Tokenizer) -> Result<ChatTemplate, EngineError> {
    match ChatTemplate::from_gguf(gguf, tok) {
        Ok(t) => Ok(t),
        Err(e @ ChatError::Parse { .. }) => {
            let arch = gguf
                .get_str("general.architecture")
                .ok()
                .flatten()
                .unwrap_or("");
            match BuiltinTemplate::for_model(arch, tok) {
                Some(b) => {
                    tracing::warn!("{e}; using the built-in {} template instead", b.name());
                    Ok(ChatTemplate::builtin(b, tok)?)
                }
                None => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Called once per token: the compute threads to use now (a thermal governor).
pub type ThreadHook = Box<dyn FnMut() -> usize + Send>;

/// One inference context bound to a loaded model: KV cache, scratch, logits
/// and text buffers. One generation at a time.
pub struct Engine {
    model: Arc<LoadedModel>,
    state: State,
    /// `[n_vocab]`: the logits being sampled (a copy the constraint and penalties may change).
    logits: Vec<f32>,
    detok: Detokenizer,
    split: ThoughtSplitter,
    /// Tokens fed to the model next: the sampled one plus forced ones.
    feed: Vec<u32>,
    /// The last generation's tokens (sampled and forced), capacity `n_ctx + 64`.
    generated: Vec<u32>,
    thread_hook: Option<ThreadHook>,
    threads_wanted: usize,
    interrupt: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.model.name)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A context of `opts.n_ctx` tokens (`n_batch`, `kv_type`) over `model`;
    /// allocates the KV cache and every buffer once.
    pub fn new(model: Arc<LoadedModel>, opts: &EngineOptions) -> Result<Engine, EngineError> {
        let state = model.model.new_state(&StateOptions {
            n_ctx: opts.n_ctx,
            n_batch: opts.n_batch,
            kv_type: opts.kv_type,
            logits_rows: 1,
        })?;
        let n_vocab = model.model.vocab_size();
        let threads = model.model.n_threads();
        Ok(Engine {
            state,
            logits: vec![0.0; n_vocab],
            detok: Detokenizer::new(),
            split: ThoughtSplitter::new(model.think_tags, false, true),
            feed: Vec::with_capacity(16),
            generated: Vec::with_capacity(opts.n_ctx + 64),
            thread_hook: None,
            threads_wanted: threads,
            interrupt: None,
            model,
        })
    }

    /// The model.
    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    /// Forgets the KV cache (chat `/clear`).
    pub fn clear(&mut self) {
        self.state.clear();
    }

    /// Context length.
    pub fn n_ctx(&self) -> usize {
        self.state.n_ctx()
    }

    /// Tokens in the KV cache.
    pub fn n_past(&self) -> usize {
        self.state.n_past()
    }

    /// The ids of the tokens in the KV cache (the last prompt and what was
    /// generated after it, but the final sampled token).
    pub fn cached_tokens(&self) -> &[u32] {
        self.state.tokens()
    }

    /// The memory of the model with this context.
    pub fn memory_plan(&self) -> Result<MemoryPlan, EngineError> {
        Ok(self.model.model.memory_plan(&StateOptions {
            n_ctx: self.state.n_ctx(),
            n_batch: self.state.n_batch(),
            kv_type: self.state.kv_type(),
            logits_rows: 1,
        })?)
    }

    /// A flag checked between prompt batches and before every token: when
    /// set, the generation ends as [`DoneReason::Cancelled`] (Ctrl-C). The
    /// engine never clears it.
    pub fn set_interrupt(&mut self, flag: Option<Arc<AtomicBool>>) {
        self.interrupt = flag;
    }

    /// A hook polled once per token for the number of compute threads to use
    /// (the board's thermal governor). A change takes effect at the next
    /// forward pass (the pool parks the threads left out) and is logged.
    pub fn set_thread_hook(&mut self, hook: Option<ThreadHook>) {
        self.thread_hook = hook;
    }

    /// The tokens of the last generation: every sampled token (an
    /// end-of-generation token excluded) and any forced `</think>` tokens.
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    /// The thread count the hook last asked for.
    pub fn threads_wanted(&self) -> usize {
        self.threads_wanted
    }

    fn interrupted(&self) -> bool {
        is_set(&self.interrupt)
    }

    /// The prompt as token ids, whether it was templated, and whether the
    /// rendered prompt leaves the model inside an opened thought.
    fn prompt_tokens(&self, req: &Request) -> Result<(Vec<u32>, bool, bool), EngineError> {
        let m = &self.model;
        let text = match &req.prompt {
            Prompt::Tokens(ids) => return Ok((ids.clone(), false, false)),
            Prompt::Text { text, raw: true } => {
                return Ok((m.tokenizer.encode(text, true, true)?, false, false));
            }
            Prompt::Text { text, raw: false } => m
                .template
                .render_prompt(&[ChatMessage::user(text.as_str())])?,
            Prompt::Chat(msgs) => {
                let chat: Vec<ChatMessage> = msgs.iter().map(Message::to_chat).collect();
                m.template.render_prompt(&chat)?
            }
        };
        let mut text = text;
        let mut opens = prompt_opens_thinking(&text);
        if req.think == ThinkMode::Off && m.can_think() {
            // Pre-fill an empty thought: `<think>\n\n</think>\n\n`.
            if opens {
                let tail = text.trim_end_matches(['\n', ' ']);
                let cut = tail.len();
                text.truncate(cut);
                text.push_str("\n\n</think>\n\n");
            } else {
                text.push_str("<think>\n\n</think>\n\n");
            }
            opens = false;
        }
        Ok((m.tokenizer.encode(&text, true, true)?, true, opens))
    }

    /// Runs `req` to completion, streaming its text to `sink`. `sink`
    /// returning `Break` cancels within the token ([`DoneReason::Cancelled`]).
    /// The request is `&mut` because its [`LogitsConstraint`] advances with
    /// every token.
    pub fn generate(
        &mut self,
        req: &mut Request,
        sink: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    ) -> Result<Stats, EngineError> {
        let t_start = Instant::now();
        let lm = Arc::clone(&self.model);
        let tok = &*lm.tokenizer;
        let (mut ids, templated, opens_thinking) = self.prompt_tokens(req)?;
        if ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }

        // The context.
        let n_ctx = self.state.n_ctx();
        let mut truncated = 0;
        if ids.len() >= n_ctx {
            if !req.truncate {
                return Err(EngineError::PromptTooLong {
                    prompt: ids.len(),
                    n_ctx,
                });
            }
            truncated = truncate_prompt(&mut ids, n_ctx, req.max_tokens, tok.bos());
            tracing::info!(
                "prompt truncated: the {truncated} oldest tokens dropped to fit the context of {n_ctx}"
            );
        }

        let mut sampler = Sampler::new(&req.sampling, self.logits.len())?;
        let from = ids.len().saturating_sub(req.sampling.repeat_last_n);
        for &t in &ids[from..] {
            sampler.accept(t);
        }
        let mut stats = Stats {
            prompt_tokens: ids.len(),
            cached_tokens: 0,
            truncated_tokens: truncated,
            prompt_eval: Duration::ZERO,
            gen_tokens: 0,
            eval: Duration::ZERO,
            done_reason: DoneReason::Stop,
            total: Duration::ZERO,
            seed: sampler.seed(),
        };

        // The prompt: reuse the cached prefix, process the rest in batches.
        let t_prompt = Instant::now();
        let cached = self.state.reuse_prefix(&ids);
        stats.cached_tokens = cached;
        let rest = &ids[cached..];
        let nb = self.state.n_batch().max(1);
        let n_chunks = rest.len().div_ceil(nb);
        for (i, chunk) in rest.chunks(nb).enumerate() {
            if self.interrupted() {
                stats.done_reason = DoneReason::Cancelled;
                stats.prompt_eval = t_prompt.elapsed();
                stats.total = t_start.elapsed();
                return Ok(stats);
            }
            if i + 1 < n_chunks {
                lm.model.forward(&mut self.state, chunk, Logits::None)?;
            } else {
                let out = lm.model.forward(&mut self.state, chunk, Logits::Last)?;
                self.logits.copy_from_slice(out);
            }
        }
        stats.prompt_eval = t_prompt.elapsed();

        // Generation.
        let t_eval = Instant::now();
        let mut budget = match (req.think, templated && lm.can_think()) {
            (ThinkMode::Budget(n), true) => {
                Some(ThinkBudget::for_tokenizer(tok, n, opens_thinking)?)
            }
            _ => None,
        };
        // Reset, keeping the buffers' capacity (a left-over partial character is dropped).
        let _ = self.detok.finish();
        self.split.reset(opens_thinking, templated);
        let mut out = Output {
            tok,
            detok: &mut self.detok,
            split: &mut self.split,
            stop: StopMatcher::new(&req.stop),
            sink,
            stopped: false,
        };
        let max_tokens = req.max_tokens.unwrap_or(usize::MAX);
        let constraint = &mut req.constraint;

        // Tokens to feed before sampling again: the sampled one and any
        // forced `</think>`; at the start, a zero budget's forced close.
        self.feed.clear();
        self.generated.clear();
        if let Some(forced) = budget.as_mut().and_then(|b| b.on_start()) {
            self.feed.extend_from_slice(forced);
            self.generated.extend_from_slice(forced);
        }
        // Forced tokens at the end of `feed` not yet written out as text.
        let mut n_forced = self.feed.len();
        let done = loop {
            if stats.gen_tokens >= max_tokens {
                break DoneReason::Length;
            }
            if !self.feed.is_empty() {
                if self.state.n_past() + self.feed.len() > n_ctx {
                    break DoneReason::Context;
                }
                let logits = lm
                    .model
                    .forward(&mut self.state, &self.feed, Logits::Last)?;
                self.logits.copy_from_slice(logits);
                if n_forced > 0 {
                    stats.gen_tokens += n_forced;
                    if let Some(r) = out.tokens(&self.feed[self.feed.len() - n_forced..])? {
                        break r;
                    }
                }
            }
            if let Some(hook) = self.thread_hook.as_mut() {
                poll_threads(hook, &mut self.threads_wanted, &lm.model);
            }
            if is_set(&self.interrupt) {
                break DoneReason::Cancelled;
            }
            if let Some(c) = constraint.as_mut() {
                c.apply(&mut self.logits)?;
            }
            let id = sampler.sample(&mut self.logits)?;
            sampler.accept(id);
            if let Some(c) = constraint.as_mut() {
                c.accept(id)?;
            }
            if tok.is_eog(id) {
                break DoneReason::Stop;
            }
            stats.gen_tokens += 1;
            self.generated.push(id);
            if let Some(r) = out.tokens(&[id])? {
                break r;
            }
            if constraint.as_ref().is_some_and(|c| c.is_finished()) {
                break DoneReason::Stop;
            }
            self.feed.clear();
            self.feed.push(id);
            n_forced = 0;
            if let Some(forced) = budget.as_mut().and_then(|b| b.on_token(id)) {
                self.feed.extend_from_slice(forced);
                self.generated.extend_from_slice(forced);
                n_forced = forced.len();
            }
        };
        stats.done_reason = done;
        if out.flush_needed(done) {
            if let ControlFlow::Break(Halt::Cancelled) = out.flush() {
                stats.done_reason = DoneReason::Cancelled;
            }
        }
        stats.eval = t_eval.elapsed();
        stats.total = t_start.elapsed();
        Ok(stats)
    }
}

fn is_set(flag: &Option<Arc<AtomicBool>>) -> bool {
    flag.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// Asks the thread hook; logs a change (the pool size is fixed at load).
fn poll_threads(hook: &mut ThreadHook, wanted: &mut usize, model: &Model) {
    let n = hook().max(1);
    if n != *wanted {
        let now = model.set_active_threads(n);
        tracing::warn!(
            "compute threads: {} -> {now} (of {}), as the thermal governor asks",
            *wanted,
            model.n_threads()
        );
        *wanted = n;
    }
}

/// Where generated tokens go: detokenizer → thought splitter → stop strings → sink.
struct Output<'e, 's> {
    tok: &'e Tokenizer,
    detok: &'e mut Detokenizer,
    split: &'e mut ThoughtSplitter,
    stop: StopMatcher,
    sink: &'s mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    /// A stop string ended the generation.
    stopped: bool,
}

/// Thinking text to the sink; answer text through the stop strings to the sink.
fn route(
    stop: &mut StopMatcher,
    sink: &mut dyn FnMut(Event<'_>) -> ControlFlow<()>,
    kind: Kind,
    text: &str,
) -> ControlFlow<Halt> {
    let mut send = |ev: Event<'_>| match sink(ev) {
        ControlFlow::Continue(()) => ControlFlow::Continue(()),
        ControlFlow::Break(()) => ControlFlow::Break(Halt::Cancelled),
    };
    match kind {
        Kind::Thinking => send(Event::Thinking(text)),
        Kind::Content => stop.push(text, &mut |t| send(Event::Content(t))),
    }
}

impl Output<'_, '_> {
    /// Writes out generated tokens; `Some(reason)` when the generation must end.
    fn tokens(&mut self, ids: &[u32]) -> Result<Option<DoneReason>, EngineError> {
        for &id in ids {
            let text = self.detok.push(self.tok, id)?;
            let (stop, sink) = (&mut self.stop, &mut *self.sink);
            let r = self
                .split
                .push(id, text, &mut |kind, t| route(stop, sink, kind, t));
            match r {
                ControlFlow::Continue(()) => {}
                ControlFlow::Break(Halt::Stop) => {
                    self.stopped = true;
                    return Ok(Some(DoneReason::Stop));
                }
                ControlFlow::Break(Halt::Cancelled) => return Ok(Some(DoneReason::Cancelled)),
            }
        }
        Ok(None)
    }

    /// Whether held-back text must still be written out.
    fn flush_needed(&self, done: DoneReason) -> bool {
        done != DoneReason::Cancelled && !self.stopped
    }

    /// Writes out what the detokenizer, the splitter and the stop matcher hold.
    fn flush(&mut self) -> ControlFlow<Halt> {
        let (stop, sink) = (&mut self.stop, &mut *self.sink);
        let mut out = |kind, t: &str| route(stop, sink, kind, t);
        let tail = self.detok.finish();
        if !tail.is_empty() {
            // The last token's unfinished character (U+FFFD); no id to match tags with.
            self.split.push(u32::MAX, tail, &mut out)?;
        }
        self.split.finish(&mut out)?;
        let sink = &mut *self.sink;
        self.stop.finish(&mut |t| match sink(Event::Content(t)) {
            ControlFlow::Continue(()) => ControlFlow::Continue(()),
            ControlFlow::Break(()) => ControlFlow::Break(Halt::Cancelled),
        })
    }
}

/// Drops the oldest prompt tokens (after a leading BOS) so the prompt leaves
/// room in the context: `min(max_tokens or n_ctx/4, n_ctx/2)` positions, at
/// least one. Returns how many were dropped.
fn truncate_prompt(
    ids: &mut Vec<u32>,
    n_ctx: usize,
    max_tokens: Option<usize>,
    bos: Option<u32>,
) -> usize {
    let room = max_tokens.unwrap_or(n_ctx / 4).min(n_ctx / 2).max(1);
    let keep = n_ctx.saturating_sub(room).max(1);
    if ids.len() <= keep {
        return 0;
    }
    let head = usize::from(bos.is_some() && ids.first().copied() == bos && keep > 1);
    let drop = ids.len() - keep;
    ids.drain(head..head + drop);
    drop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_bos_and_the_end() {
        let mut ids: Vec<u32> = (0..100).collect();
        let dropped = truncate_prompt(&mut ids, 64, Some(8), Some(0));
        assert_eq!(ids.len(), 56);
        assert_eq!(dropped, 44);
        assert_eq!(ids[0], 0);
        assert_eq!(ids[1], 45);
        assert_eq!(*ids.last().unwrap(), 99);
        // No BOS: just the last part; default room n_ctx/4.
        let mut ids: Vec<u32> = (1..=100).collect();
        truncate_prompt(&mut ids, 64, None, Some(0));
        assert_eq!(ids.len(), 48);
        assert_eq!(ids[0], 53);
    }

    #[test]
    fn engine_is_send() {
        fn send<T: Send>() {}
        send::<Engine>();
        fn sync<T: Send + Sync>() {}
        sync::<LoadedModel>();
    }
}
