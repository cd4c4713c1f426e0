//! The real [`Backend`]: pistil's generation engine.
//!
//! Loading is delegated to a [`Loader`] (the `pistil` binary passes one that
//! detects the board, picks threads / context / KV type and checks the
//! memory fit, as `pistil run` does). The [`Engine`] is kept between
//! requests, so a chat that extends the previous conversation reuses its KV
//! cache: only the new tokens are processed.
//!
//! A request's `num_ctx` reloads the context when it differs from the one the
//! current context was sized for (Ollama does the same); requests without it
//! keep whatever is loaded.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use pistil_runtime::chat::ChatMessage as TplMessage;
use pistil_runtime::constraint::{JsonConstraint, TokenTable};
use pistil_runtime::engine::{
    self, Engine, EngineError, EngineOptions, LoadedModel, LogitsConstraint, Message, Role,
    SamplingParams, ThinkMode, ThreadHook,
};

use crate::backend::{
    Backend, BackendError, DoneReason, Event, GenRequest, ModelInfo, ModelSpec, Prompt, Stats,
    Think,
};
use crate::models::describe_gguf;

/// What a [`Loader`] hands back.
pub struct LoadedParts {
    /// The model.
    pub model: Arc<LoadedModel>,
    /// The options to build its context with.
    pub opts: EngineOptions,
    /// The thermal governor, polled once per token.
    pub thread_hook: Option<ThreadHook>,
}

/// Loads a model file, with an optional requested context size.
pub type Loader = Box<dyn FnMut(&ModelSpec, Option<usize>) -> Result<LoadedParts, String> + Send>;

/// A loader with no board knowledge: all CPUs, a context of `n_ctx`
/// (capped by the model's), memory-mapped weights.
pub fn plain_loader(n_threads: Option<usize>, n_ctx: usize) -> Loader {
    Box::new(move |spec: &ModelSpec, want: Option<usize>| {
        let mut opts = EngineOptions::default();
        if let Some(t) = n_threads {
            opts.n_threads = t.max(1);
        }
        let model = LoadedModel::load(&spec.path, &opts).map_err(|e| e.to_string())?;
        let trained = model.context_length();
        let ctx = want.unwrap_or(n_ctx).max(16);
        opts.n_ctx = if trained > 0 { ctx.min(trained) } else { ctx };
        Ok(LoadedParts {
            model: Arc::new(model),
            opts,
            thread_hook: None,
        })
    })
}

struct Current {
    spec: ModelSpec,
    engine: Engine,
    opts: EngineOptions,
    /// The `num_ctx` this context was made for (`None`: the default).
    requested_ctx: Option<usize>,
    table: Option<Arc<TokenTable>>,
}

/// The engine as a [`Backend`].
pub struct EngineBackend {
    loader: Loader,
    cur: Option<Current>,
}

impl EngineBackend {
    /// A backend loading models with `loader`.
    pub fn new(loader: Loader) -> EngineBackend {
        EngineBackend { loader, cur: None }
    }

    fn open(&mut self, spec: &ModelSpec, want: Option<usize>) -> Result<Current, BackendError> {
        let parts = (self.loader)(spec, want).map_err(|detail| {
            if detail.contains("does not fit") || detail.contains("memory") {
                BackendError::DoesNotFit(detail)
            } else {
                BackendError::Load {
                    name: spec.name.clone(),
                    detail,
                }
            }
        })?;
        let mut engine =
            Engine::new(parts.model.clone(), &parts.opts).map_err(|e| BackendError::Load {
                name: spec.name.clone(),
                detail: e.to_string(),
            })?;
        engine.set_thread_hook(parts.thread_hook);
        Ok(Current {
            spec: spec.clone(),
            engine,
            opts: parts.opts,
            requested_ctx: want,
            table: None,
        })
    }

    fn info(cur: &Current) -> ModelInfo {
        let lm = cur.engine.model();
        let meta = std::fs::metadata(&cur.spec.path);
        let mut info = match &meta {
            Ok(m) => describe_gguf(&cur.spec, &lm.gguf, m),
            Err(_) => ModelInfo {
                name: cur.spec.name.clone(),
                path: cur.spec.path.clone(),
                ..ModelInfo::default()
            },
        };
        if let Ok(Some(e)) = pistil_runtime::catalog::find(&cur.spec.name) {
            if let Some(h) = &e.sha256 {
                info.digest = h.clone();
            }
        }
        info.n_ctx = cur.engine.n_ctx() as u64;
        info.memory_bytes = cur.engine.memory_plan().map(|p| p.total()).unwrap_or(0);
        info.capabilities = crate::models::capabilities(lm.can_think());
        info
    }
}

/// The constraint as the engine's trait.
struct Constraint(JsonConstraint);

impl LogitsConstraint for Constraint {
    fn apply(&mut self, logits: &mut [f32]) -> Result<(), EngineError> {
        self.0
            .apply(logits)
            .map_err(|e| EngineError::Constraint(Box::new(e)))
    }
    fn accept(&mut self, token: u32) -> Result<(), EngineError> {
        self.0
            .accept(token)
            .map_err(|e| EngineError::Constraint(Box::new(e)))
    }
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

fn engine_prompt(p: &Prompt) -> Result<engine::Prompt, BackendError> {
    Ok(match p {
        Prompt::Text {
            text,
            raw,
            system: None,
        } => engine::Prompt::Text {
            text: text.clone(),
            raw: *raw,
        },
        Prompt::Text {
            text,
            system: Some(sys),
            ..
        } => engine::Prompt::Chat(vec![
            Message::system(sys.clone()),
            Message::user(text.clone()),
        ]),
        Prompt::Chat(msgs) => {
            let mut out = Vec::with_capacity(msgs.len());
            for m in msgs {
                let role = Role::parse(&m.role).ok_or_else(|| {
                    BackendError::BadRequest(format!("unknown message role \"{}\"", m.role))
                })?;
                out.push(Message {
                    role,
                    content: m.content.clone(),
                    thinking: m.thinking.clone(),
                });
            }
            engine::Prompt::Chat(out)
        }
    })
}

/// Prompt tokens as the engine will count them (render + tokenize), plus the
/// pre-filled empty thought: what the constraint's budget must leave room for.
fn prompt_len(
    lm: &LoadedModel,
    p: &engine::Prompt,
    think_off: bool,
) -> Result<usize, BackendError> {
    let bad = |e: &dyn std::fmt::Display| BackendError::BadRequest(e.to_string());
    let text = match p {
        engine::Prompt::Tokens(t) => return Ok(t.len()),
        engine::Prompt::Text { text, raw: true } => {
            return lm
                .tokenizer
                .encode(text, true, true)
                .map(|v| v.len())
                .map_err(|e| bad(&e))
        }
        engine::Prompt::Text { text, raw: false } => lm
            .template
            .render_prompt(&[TplMessage::user(text.as_str())])
            .map_err(|e| bad(&e))?,
        engine::Prompt::Chat(msgs) => {
            let chat: Vec<TplMessage> = msgs
                .iter()
                .map(|m| TplMessage {
                    role: m.role.as_str().to_string(),
                    content: m.content.clone(),
                    thinking: m.thinking.clone(),
                })
                .collect();
            lm.template.render_prompt(&chat).map_err(|e| bad(&e))?
        }
    };
    let n = lm
        .tokenizer
        .encode(&text, true, true)
        .map_err(|e| bad(&e))?
        .len();
    Ok(n + if think_off && lm.can_think() { 8 } else { 0 })
}

fn sampling(s: &crate::backend::Sampling, n_ctx: usize) -> SamplingParams {
    SamplingParams {
        temperature: s.temperature,
        top_k: s.top_k.min(i32::MAX as usize) as i32,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        repeat_last_n: s.repeat_last_n.min(n_ctx),
        presence_penalty: s.presence_penalty,
        frequency_penalty: s.frequency_penalty,
        seed: s.seed,
    }
}

fn backend_error(e: EngineError) -> BackendError {
    match e {
        EngineError::PromptTooLong { prompt, n_ctx } => {
            BackendError::PromptTooLong { prompt, n_ctx }
        }
        EngineError::EmptyPrompt => BackendError::BadRequest("the prompt is empty".into()),
        EngineError::Template(e) => BackendError::BadRequest(format!("chat template: {e}")),
        EngineError::Sampler(e) => BackendError::BadRequest(format!("sampling: {e}")),
        other => BackendError::Internal(other.to_string()),
    }
}

impl Backend for EngineBackend {
    fn load(&mut self, spec: &ModelSpec) -> Result<ModelInfo, BackendError> {
        self.cur = None;
        let cur = self.open(spec, None)?;
        let info = Self::info(&cur);
        self.cur = Some(cur);
        Ok(info)
    }

    fn unload(&mut self) {
        self.cur = None;
    }

    fn generate(
        &mut self,
        req: &GenRequest,
        sink: &mut dyn FnMut(Event) -> ControlFlow<()>,
    ) -> Result<Stats, BackendError> {
        // A different num_ctx: a new context (the model is loaded again; its
        // pages are still in the page cache).
        let reload = match (&self.cur, req.num_ctx) {
            (Some(c), Some(n)) => c.requested_ctx != Some(n),
            _ => false,
        };
        let mut load_time = Duration::ZERO;
        if reload {
            let Some(old) = self.cur.take() else {
                return Err(BackendError::Internal("no model loaded".into()));
            };
            let spec = old.spec.clone();
            let (old_model, old_opts, old_ctx) = (
                old.engine.model().clone(),
                old.opts.clone(),
                old.requested_ctx,
            );
            drop(old);
            let t0 = std::time::Instant::now();
            match self.open(&spec, req.num_ctx) {
                Ok(c) => {
                    tracing::info!(
                        "num_ctx {}: new context of {} tokens",
                        req.num_ctx.unwrap_or(0),
                        c.engine.n_ctx()
                    );
                    self.cur = Some(c);
                    load_time = t0.elapsed();
                }
                Err(e) => {
                    // Back to the previous context so the server keeps working.
                    let engine = Engine::new(old_model, &old_opts).map_err(backend_error)?;
                    self.cur = Some(Current {
                        spec,
                        engine,
                        opts: old_opts,
                        requested_ctx: old_ctx,
                        table: None,
                    });
                    return Err(BackendError::BadRequest(format!(
                        "num_ctx {}: {e}",
                        req.num_ctx.unwrap_or(0)
                    )));
                }
            }
        }
        let Some(cur) = self.cur.as_mut() else {
            return Err(BackendError::Internal("no model loaded".into()));
        };
        let n_ctx = cur.engine.n_ctx();
        let prompt = engine_prompt(&req.prompt)?;
        let think = match req.think {
            Think::Default | Think::On => ThinkMode::Default,
            Think::Off => ThinkMode::Off,
        };
        let constraint: Option<Box<dyn LogitsConstraint>> = match &req.format {
            None => None,
            Some(schema) => {
                let lm = cur.engine.model().clone();
                let table = cur
                    .table
                    .get_or_insert_with(|| Arc::new(TokenTable::from_tokenizer(&lm.tokenizer)))
                    .clone();
                let plen = prompt_len(&lm, &prompt, think == ThinkMode::Off)?;
                if plen >= n_ctx {
                    return Err(BackendError::PromptTooLong {
                        prompt: plen,
                        n_ctx,
                    });
                }
                // Room in the context, with a margin for template differences.
                let room = (n_ctx - plen).saturating_sub(8);
                let budget = req.max_tokens.unwrap_or(usize::MAX).min(room);
                let c = JsonConstraint::new(schema.clone(), table, budget)
                    .map_err(|e| BackendError::BadRequest(e.to_string()))?;
                Some(Box::new(Constraint(c)))
            }
        };
        let mut ereq = engine::Request::new(prompt);
        ereq.sampling = sampling(&req.sampling, n_ctx);
        ereq.max_tokens = req.max_tokens;
        ereq.stop = req.stop.clone();
        ereq.think = think;
        ereq.constraint = constraint;
        ereq.truncate = false;
        let mut esink = |ev: engine::Event<'_>| match ev {
            engine::Event::Thinking(t) => sink(Event::Thinking(t.to_string())),
            engine::Event::Content(t) => sink(Event::Content(t.to_string())),
        };
        let s = cur
            .engine
            .generate(&mut ereq, &mut esink)
            .map_err(backend_error)?;
        Ok(Stats {
            prompt_tokens: s.prompt_tokens,
            cached_tokens: s.cached_tokens,
            prompt_eval: s.prompt_eval,
            gen_tokens: s.gen_tokens,
            eval: s.eval,
            done_reason: Some(match s.done_reason {
                engine::DoneReason::Stop => DoneReason::Stop,
                engine::DoneReason::Length => DoneReason::Length,
                engine::DoneReason::Context => DoneReason::Context,
                engine::DoneReason::Cancelled => DoneReason::Cancelled,
            }),
            total: s.total + load_time,
            context: None,
        })
    }
}
