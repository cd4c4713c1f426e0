//! The seam between the front ends (Wyoming, MQTT, JSON lines, GPIO button)
//! and whatever generates the answers.
//!
//! Every front end builds an [`Ask`] and hands it to an [`Assistant`]; the
//! assistant streams [`Piece`]s back and ends with an [`Outcome`]. The real
//! implementation wraps the generation engine ([`crate::engine`]); tests use
//! [`crate::testing::FakeAssistant`], so the protocols, queues, reconnection
//! and conversation bookkeeping are tested in milliseconds and without a model.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use pistil_runtime::constraint::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Who said it.
    pub role: Role,
    /// What was said (for the assistant: the answer only).
    pub content: String,
    /// The assistant's thought, kept apart: templates drop it from later turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
}

impl Turn {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Turn {
        Turn {
            role: Role::User,
            content: content.into(),
            thinking: None,
        }
    }

    /// An assistant message with its thought.
    pub fn assistant(content: impl Into<String>, thinking: Option<String>) -> Turn {
        Turn {
            role: Role::Assistant,
            content: content.into(),
            thinking,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Turn {
        Turn {
            role: Role::System,
            content: content.into(),
            thinking: None,
        }
    }
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq)]
pub enum AskPrompt {
    /// One user message, rendered with the model's chat template.
    Text(String),
    /// A conversation, rendered with the model's chat template.
    Chat(Vec<Turn>),
}

/// Whether the model writes its thought before the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Think {
    /// The model decides (R1 models think, Gemma does not).
    #[default]
    Default,
    /// Skip the thought (an empty one is pre-filled).
    Off,
    /// Think at most this many tokens, then answer.
    Budget(usize),
}

/// Sampling overrides in Ollama's `options` names. `None` keeps the engine's
/// default (llama.cpp's: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, …).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// 0 = greedy.
    pub temperature: Option<f32>,
    /// 0 = off.
    pub top_k: Option<usize>,
    /// 1 = off.
    pub top_p: Option<f32>,
    /// 0 = off.
    pub min_p: Option<f32>,
    /// 1 = off.
    pub repeat_penalty: Option<f32>,
    /// Tokens looked back for the penalties.
    pub repeat_last_n: Option<usize>,
    /// OpenAI-style presence penalty.
    pub presence_penalty: Option<f32>,
    /// OpenAI-style frequency penalty.
    pub frequency_penalty: Option<f32>,
    /// Random seed (same seed + same prompt = same answer).
    pub seed: Option<u64>,
    /// Most tokens to generate (Ollama `num_predict`; negative = no limit).
    pub num_predict: Option<i64>,
    /// Stop strings (never part of the answer).
    pub stop: Option<Vec<String>>,
}

impl Options {
    /// These options, with every unset one taken from `defaults`.
    pub fn or(&self, defaults: &Options) -> Options {
        Options {
            temperature: self.temperature.or(defaults.temperature),
            top_k: self.top_k.or(defaults.top_k),
            top_p: self.top_p.or(defaults.top_p),
            min_p: self.min_p.or(defaults.min_p),
            repeat_penalty: self.repeat_penalty.or(defaults.repeat_penalty),
            repeat_last_n: self.repeat_last_n.or(defaults.repeat_last_n),
            presence_penalty: self.presence_penalty.or(defaults.presence_penalty),
            frequency_penalty: self.frequency_penalty.or(defaults.frequency_penalty),
            seed: self.seed.or(defaults.seed),
            num_predict: self.num_predict.or(defaults.num_predict),
            stop: self.stop.clone().or_else(|| defaults.stop.clone()),
        }
    }
}

/// One request to the assistant, front-end neutral.
#[derive(Debug, Clone)]
pub struct Ask {
    /// What to continue.
    pub prompt: AskPrompt,
    /// A system message put first (ignored if the chat already starts with one).
    pub system: Option<String>,
    /// Sampling overrides.
    pub options: Options,
    /// Thinking.
    pub think: Think,
    /// Structured output: the answer is JSON matching this schema.
    pub format: Option<Arc<JsonSchema>>,
}

impl Ask {
    /// A plain question with default settings.
    pub fn text(prompt: impl Into<String>) -> Ask {
        Ask {
            prompt: AskPrompt::Text(prompt.into()),
            system: None,
            options: Options::default(),
            think: Think::Default,
            format: None,
        }
    }

    /// The messages this request renders to: the system message (if any and
    /// not already first), then the conversation or the one user message.
    pub fn messages(&self) -> Vec<Turn> {
        let mut out = Vec::new();
        let has_system = matches!(&self.prompt, AskPrompt::Chat(t) if t.first().is_some_and(|m| m.role == Role::System));
        if let (Some(s), false) = (&self.system, has_system) {
            out.push(Turn::system(s.clone()));
        }
        match &self.prompt {
            AskPrompt::Text(t) => out.push(Turn::user(t.clone())),
            AskPrompt::Chat(turns) => out.extend(turns.iter().cloned()),
        }
        out
    }

    /// Most tokens to generate, from `num_predict` (negative or absent = no limit).
    pub fn max_tokens(&self) -> Option<usize> {
        match self.options.num_predict {
            Some(n) if n >= 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => None,
        }
    }
}

/// A piece of the reply, whole UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Part of the thought.
    Thinking(String),
    /// Part of the answer.
    Content(String),
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DoneReason {
    /// End of turn or a stop string.
    Stop,
    /// `num_predict` reached.
    Length,
    /// The context is full.
    Context,
    /// The caller stopped it.
    Cancelled,
}

impl DoneReason {
    /// The name used on the wire (`stop`, `length`, `context`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            DoneReason::Stop => "stop",
            DoneReason::Length => "length",
            DoneReason::Context => "context",
            DoneReason::Cancelled => "cancelled",
        }
    }
}

/// What one generation did and cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Why it ended.
    pub done_reason: DoneReason,
    /// Prompt tokens (cached or not).
    pub prompt_tokens: usize,
    /// Prompt tokens reused from the KV cache.
    pub cached_tokens: usize,
    /// Time evaluating the uncached prompt.
    pub prompt_eval: Duration,
    /// Tokens generated (thought and answer).
    pub gen_tokens: usize,
    /// Time generating.
    pub eval: Duration,
    /// Wall time of the whole request.
    pub total: Duration,
}

/// Why a request failed. The front end reports it and keeps running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssistError {
    /// The prompt does not fit in the context.
    #[error("the prompt is {prompt} tokens, longer than the context of {n_ctx} tokens")]
    PromptTooLong {
        /// Prompt tokens.
        prompt: usize,
        /// Context size.
        n_ctx: usize,
    },
    /// The request cannot be served as given (bad option, bad schema, template error).
    #[error("{0}")]
    BadRequest(String),
    /// The engine failed; the next request may succeed.
    #[error("{0}")]
    Engine(String),
}

/// Something that answers [`Ask`]s, one at a time.
pub trait Assistant: Send {
    /// The model's name, as reported to clients (`gemma3:270m`, a file stem).
    fn model_name(&self) -> &str;

    /// Generate one reply, streaming pieces to `sink`; `sink` returning
    /// `Break` cancels (checked after every token).
    fn generate(
        &mut self,
        ask: &Ask,
        sink: &mut dyn FnMut(Piece) -> ControlFlow<()>,
    ) -> Result<Outcome, AssistError>;
}

impl<A: Assistant + ?Sized> Assistant for Box<A> {
    fn model_name(&self) -> &str {
        (**self).model_name()
    }

    fn generate(
        &mut self,
        ask: &Ask,
        sink: &mut dyn FnMut(Piece) -> ControlFlow<()>,
    ) -> Result<Outcome, AssistError> {
        (**self).generate(ask, sink)
    }
}

/// The reply of one request, collected.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    /// The answer.
    pub content: String,
    /// The thought (empty if none).
    pub thinking: String,
}

impl Reply {
    /// Appends a piece.
    pub fn push(&mut self, piece: &Piece) {
        match piece {
            Piece::Thinking(t) => self.thinking.push_str(t),
            Piece::Content(t) => self.content.push_str(t),
        }
    }

    /// The thought, or `None` if the model wrote none.
    pub fn thinking_opt(&self) -> Option<String> {
        let t = self.thinking.trim();
        (!t.is_empty()).then(|| t.to_string())
    }
}
