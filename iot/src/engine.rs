//! [`Assistant`] over the real generation engine.
//!
//! An [`Ask`] becomes an engine [`Request`]: its messages rendered with the
//! model's chat template (a base model without one continues a single
//! question as raw text, as `pistil run` does), sampling = the command line's settings with the
//! request's `options` on top, `format` → a [`JsonConstraint`] sized to the
//! room left in the context. With `format` the thought is skipped (an empty
//! one is pre-filled): a thought cannot be JSON, and the answer must be.

use std::ops::ControlFlow;
use std::sync::Arc;

use pistil_runtime::chat::ChatMessage;
use pistil_runtime::constraint::{JsonConstraint, TokenTable};
use pistil_runtime::engine::{
    self, Engine, EngineError, LogitsConstraint, Message, Prompt, Request, SamplingParams,
    ThinkMode,
};

use crate::assistant::{
    Ask, AskPrompt, AssistError, Assistant, DoneReason, Outcome, Piece, Role, Think,
};

/// The engine as an [`Assistant`].
pub struct EngineAssistant {
    engine: Engine,
    name: String,
    base: SamplingParams,
    table: Option<Arc<TokenTable>>,
}

impl EngineAssistant {
    /// Wraps `engine`; `base` is the sampling every request starts from.
    pub fn new(engine: Engine, base: SamplingParams) -> EngineAssistant {
        let name = engine.model().name.clone();
        EngineAssistant {
            engine,
            name,
            base,
            table: None,
        }
    }

    /// The engine (to set its interrupt flag, thread hook, …).
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    fn request(&mut self, ask: &Ask) -> Result<Request, AssistError> {
        let messages: Vec<Message> = ask
            .messages()
            .into_iter()
            .map(|t| Message {
                role: match t.role {
                    Role::System => engine::Role::System,
                    Role::User => engine::Role::User,
                    Role::Assistant => engine::Role::Assistant,
                    Role::Tool => engine::Role::Tool,
                },
                content: t.content,
                thinking: t.thinking,
            })
            .collect();
        let o = &ask.options;
        let n_ctx = self.engine.n_ctx();
        let b = &self.base;
        let sampling = SamplingParams {
            temperature: o.temperature.unwrap_or(b.temperature),
            top_k: o
                .top_k
                .map(|k| i32::try_from(k).unwrap_or(i32::MAX))
                .unwrap_or(b.top_k),
            top_p: o.top_p.unwrap_or(b.top_p),
            min_p: o.min_p.unwrap_or(b.min_p),
            repeat_penalty: o.repeat_penalty.unwrap_or(b.repeat_penalty),
            repeat_last_n: o.repeat_last_n.unwrap_or(b.repeat_last_n).min(n_ctx),
            presence_penalty: o.presence_penalty.unwrap_or(b.presence_penalty),
            frequency_penalty: o.frequency_penalty.unwrap_or(b.frequency_penalty),
            seed: o.seed.or(b.seed),
        };
        let think = match (&ask.format, ask.think) {
            (Some(_), _) | (None, Think::Off) => ThinkMode::Off,
            (None, Think::Default) => ThinkMode::Default,
            (None, Think::Budget(n)) => ThinkMode::Budget(n),
        };
        let constraint: Option<Box<dyn LogitsConstraint>> = match &ask.format {
            None => None,
            Some(schema) => {
                let lm = Arc::clone(self.engine.model());
                let table =
                    Arc::clone(self.table.get_or_insert_with(|| {
                        Arc::new(TokenTable::from_tokenizer(&lm.tokenizer))
                    }));
                let plen = prompt_len(&lm, &messages)?;
                if plen >= n_ctx {
                    return Err(AssistError::PromptTooLong {
                        prompt: plen,
                        n_ctx,
                    });
                }
                // Room in the context, less a margin for the pre-filled empty thought.
                let room = (n_ctx - plen).saturating_sub(8);
                let budget = ask.max_tokens().unwrap_or(usize::MAX).min(room);
                let c = JsonConstraint::new(Arc::clone(schema), table, budget)
                    .map_err(|e| AssistError::BadRequest(format!("format: {e}")))?;
                Some(Box::new(Json(c)))
            }
        };
        // A model without its own chat template (a base model) continues
        // text: a one-question request is given as is, like `pistil run` does
        // (a borrowed template makes such models ramble). Conversations still
        // use the built-in template of the architecture.
        let prompt = match (&ask.prompt, self.engine.model().has_own_template()) {
            (AskPrompt::Text(text), false) => Prompt::Text {
                text: match &ask.system {
                    Some(s) => format!("{s}\n\n{text}"),
                    None => text.clone(),
                },
                raw: true,
            },
            _ => Prompt::Chat(messages),
        };
        let mut req = Request::new(prompt);
        req.sampling = sampling;
        req.max_tokens = ask.max_tokens();
        req.stop = o.stop.clone().unwrap_or_default();
        req.think = think;
        req.constraint = constraint;
        req.truncate = false;
        Ok(req)
    }
}

/// Tokens of the rendered prompt (for the structured-output budget).
fn prompt_len(lm: &engine::LoadedModel, messages: &[Message]) -> Result<usize, AssistError> {
    let chat: Vec<ChatMessage> = messages
        .iter()
        .map(|m| ChatMessage {
            role: m.role.as_str().to_string(),
            content: m.content.clone(),
            thinking: m.thinking.clone(),
        })
        .collect();
    let text = lm
        .template
        .render_prompt(&chat)
        .map_err(|e| AssistError::BadRequest(format!("chat template: {e}")))?;
    lm.tokenizer
        .encode(&text, true, true)
        .map(|t| t.len())
        .map_err(|e| AssistError::BadRequest(e.to_string()))
}

/// The JSON constraint as the engine's trait.
struct Json(JsonConstraint);

impl LogitsConstraint for Json {
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

fn assist_error(e: EngineError) -> AssistError {
    match e {
        EngineError::PromptTooLong { prompt, n_ctx } => {
            AssistError::PromptTooLong { prompt, n_ctx }
        }
        EngineError::EmptyPrompt => AssistError::BadRequest("the prompt is empty".into()),
        EngineError::Template(e) => AssistError::BadRequest(format!("chat template: {e}")),
        EngineError::Sampler(e) => AssistError::BadRequest(format!("sampling: {e}")),
        other => AssistError::Engine(other.to_string()),
    }
}

impl Assistant for EngineAssistant {
    fn model_name(&self) -> &str {
        &self.name
    }

    fn generate(
        &mut self,
        ask: &Ask,
        sink: &mut dyn FnMut(Piece) -> ControlFlow<()>,
    ) -> Result<Outcome, AssistError> {
        let mut req = self.request(ask)?;
        let mut esink = |ev: engine::Event<'_>| match ev {
            engine::Event::Thinking(t) => sink(Piece::Thinking(t.to_string())),
            engine::Event::Content(t) => sink(Piece::Content(t.to_string())),
        };
        let s = self
            .engine
            .generate(&mut req, &mut esink)
            .map_err(assist_error)?;
        Ok(Outcome {
            done_reason: match s.done_reason {
                engine::DoneReason::Stop => DoneReason::Stop,
                engine::DoneReason::Length => DoneReason::Length,
                engine::DoneReason::Context => DoneReason::Context,
                engine::DoneReason::Cancelled => DoneReason::Cancelled,
            },
            prompt_tokens: s.prompt_tokens,
            cached_tokens: s.cached_tokens,
            prompt_eval: s.prompt_eval,
            gen_tokens: s.gen_tokens,
            eval: s.eval,
            total: s.total,
        })
    }
}
