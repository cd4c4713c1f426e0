//! Chat: messages → prompt text with the model's own Jinja chat template
//! (`tokenizer.chat_template`), and the `<think>…</think>` reasoning of
//! DeepSeek R1 models ([`reasoning`]).
//!
//! The template is rendered with minijinja configured like Hugging Face
//! transformers (see `jinja.rs`); the output equals jinja2's for the R1,
//! ChatML, Llama 3 and Gemma templates (`tests/chat_templates.rs`, goldens in
//! `tests/fixtures/chat/`). Files without a template get a built-in one chosen
//! from the vocabulary and architecture ([`BuiltinTemplate`]).
//!
//! Assistant turns are stored with their thought apart ([`ChatMessage::thinking`]):
//! the template only sees `content` (and `reasoning_content` for templates,
//! like Qwen 3's, that want it), so earlier thoughts are not fed back.

mod jinja;
pub mod reasoning;

pub use reasoning::{ReasoningEvent, ReasoningParser, ThinkBudget};

use crate::gguf::{Gguf, GgufError};
use crate::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (or `tool`).
    pub role: String,
    /// The text; for an assistant turn, the answer without its thought.
    pub content: String,
    /// An assistant turn's thought (`<think>` block), kept apart from the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            thinking: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> ChatMessage {
        ChatMessage::new("system", content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> ChatMessage {
        ChatMessage::new("user", content)
    }

    /// An assistant answer.
    pub fn assistant(content: impl Into<String>) -> ChatMessage {
        ChatMessage::new("assistant", content)
    }

    /// An assistant answer with the thought that preceded it.
    pub fn assistant_with_thinking(
        content: impl Into<String>,
        thinking: impl Into<String>,
    ) -> ChatMessage {
        ChatMessage {
            thinking: Some(thinking.into()),
            ..ChatMessage::assistant(content)
        }
    }
}

/// What the template sees of a message.
#[derive(Serialize)]
struct TemplateMessage<'a> {
    role: &'a str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
}

/// Why a chat template could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Reading `tokenizer.chat_template` failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The template does not parse.
    #[error("chat template ({origin}) does not parse: {detail}")]
    Parse {
        /// Where the template came from.
        origin: String,
        /// minijinja's message, with the line.
        detail: String,
    },
    /// Rendering failed (a `raise_exception`, a type error in the template…).
    #[error("chat template ({origin}) failed: {detail}")]
    Render {
        /// Where the template came from.
        origin: String,
        /// minijinja's message, with the line.
        detail: String,
    },
    /// No template in the file and no built-in one fits the model.
    #[error(
        "the model has no chat template (tokenizer.chat_template) and pistil has no built-in one for \
         architecture `{arch}`"
    )]
    NoTemplate {
        /// `general.architecture`.
        arch: String,
    },
}

/// Built-in templates for files that carry none. The ChatML, Llama 3 and
/// Gemma ones produce exactly llama.cpp's built-in formats; the DeepSeek-R1
/// one is DeepSeek's own template with the later `<think>\n` generation prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinTemplate {
    /// `<｜User｜>…<｜Assistant｜>` (DeepSeek R1 and its distills).
    DeepSeekR1,
    /// `<|im_start|>role\n…<|im_end|>` (Qwen 2 / Qwen 3).
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>` (Llama 3).
    Llama3,
    /// `<start_of_turn>role\n…<end_of_turn>` (Gemma), system text merged into the first user turn.
    Gemma,
}

impl BuiltinTemplate {
    /// The Jinja source.
    pub fn source(self) -> &'static str {
        match self {
            BuiltinTemplate::DeepSeekR1 => include_str!("templates/deepseek-r1.jinja"),
            BuiltinTemplate::ChatMl => include_str!("templates/chatml.jinja"),
            BuiltinTemplate::Llama3 => include_str!("templates/llama3.jinja"),
            BuiltinTemplate::Gemma => include_str!("templates/gemma.jinja"),
        }
    }

    /// A short name (`deepseek-r1`, `chatml`, `llama3`, `gemma`).
    pub fn name(self) -> &'static str {
        match self {
            BuiltinTemplate::DeepSeekR1 => "deepseek-r1",
            BuiltinTemplate::ChatMl => "chatml",
            BuiltinTemplate::Llama3 => "llama3",
            BuiltinTemplate::Gemma => "gemma",
        }
    }

    /// The built-in template for a model: R1 if the vocabulary has R1's
    /// chat tokens, else by architecture (and the chat tokens it has).
    pub fn for_model(arch: &str, tok: &Tokenizer) -> Option<BuiltinTemplate> {
        let has = |t: &str| tok.token_id(t).is_some();
        if has("<｜User｜>") && has("<｜Assistant｜>") {
            return Some(BuiltinTemplate::DeepSeekR1);
        }
        match arch {
            "gemma" | "gemma2" | "gemma3" | "gemma3n" => Some(BuiltinTemplate::Gemma),
            "llama" if has("<|start_header_id|>") => Some(BuiltinTemplate::Llama3),
            "qwen2" | "qwen3" | "qwen2moe" | "qwen3moe" => Some(BuiltinTemplate::ChatMl),
            _ if has("<|im_start|>") => Some(BuiltinTemplate::ChatMl),
            _ if has("<start_of_turn>") => Some(BuiltinTemplate::Gemma),
            _ if has("<|start_header_id|>") => Some(BuiltinTemplate::Llama3),
            _ => None,
        }
    }
}

/// Where a [`ChatTemplate`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateOrigin {
    /// The GGUF's `tokenizer.chat_template`.
    Gguf,
    /// A built-in template (the file had none).
    Builtin(BuiltinTemplate),
    /// Given by the caller.
    Custom,
}

impl std::fmt::Display for TemplateOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateOrigin::Gguf => f.write_str("tokenizer.chat_template"),
            TemplateOrigin::Builtin(b) => write!(f, "built-in {}", b.name()),
            TemplateOrigin::Custom => f.write_str("custom"),
        }
    }
}

/// A compiled chat template with the model's BOS/EOS texts.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    origin: TemplateOrigin,
    source: String,
    bos_token: String,
    eos_token: String,
    /// The tokenizer adds BOS itself (`render_prompt` then drops a leading BOS text).
    tokenizer_adds_bos: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// The model's template: `tokenizer.chat_template` if present, else a
    /// built-in one ([`BuiltinTemplate::for_model`], logged).
    pub fn from_gguf(gguf: &Gguf, tok: &Tokenizer) -> Result<ChatTemplate, ChatError> {
        if let Some(src) = gguf.get_str("tokenizer.chat_template")? {
            return ChatTemplate::compile(src.to_string(), TemplateOrigin::Gguf, tok);
        }
        let arch = gguf.get_str("general.architecture")?.unwrap_or("");
        let builtin = BuiltinTemplate::for_model(arch, tok)
            .ok_or_else(|| ChatError::NoTemplate { arch: arch.into() })?;
        tracing::info!(
            "the model has no tokenizer.chat_template; using the built-in {} template (architecture {arch})",
            builtin.name()
        );
        ChatTemplate::builtin(builtin, tok)
    }

    /// A built-in template with `tok`'s BOS/EOS.
    pub fn builtin(which: BuiltinTemplate, tok: &Tokenizer) -> Result<ChatTemplate, ChatError> {
        ChatTemplate::compile(
            which.source().to_string(),
            TemplateOrigin::Builtin(which),
            tok,
        )
    }

    /// A template given as Jinja source, with `tok`'s BOS/EOS.
    pub fn from_source(source: &str, tok: &Tokenizer) -> Result<ChatTemplate, ChatError> {
        ChatTemplate::compile(source.to_string(), TemplateOrigin::Custom, tok)
    }

    /// A template with explicit BOS/EOS texts (no tokenizer: tests, tools).
    pub fn with_tokens(
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<ChatTemplate, ChatError> {
        let mut t = ChatTemplate::compile_raw(source.to_string(), TemplateOrigin::Custom)?;
        t.bos_token = bos_token.to_string();
        t.eos_token = eos_token.to_string();
        Ok(t)
    }

    fn compile(
        source: String,
        origin: TemplateOrigin,
        tok: &Tokenizer,
    ) -> Result<ChatTemplate, ChatError> {
        let mut t = ChatTemplate::compile_raw(source, origin)?;
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
        t.bos_token = text(tok.bos());
        t.eos_token = text(tok.eos());
        t.tokenizer_adds_bos = tok.add_bos();
        Ok(t)
    }

    fn compile_raw(source: String, origin: TemplateOrigin) -> Result<ChatTemplate, ChatError> {
        let mut env = jinja::environment();
        env.add_template_owned(NAME, source.clone())
            .map_err(|e| ChatError::Parse {
                origin: origin.to_string(),
                detail: detail(&e),
            })?;
        Ok(ChatTemplate {
            env,
            origin,
            source,
            bos_token: String::new(),
            eos_token: String::new(),
            tokenizer_adds_bos: false,
        })
    }

    /// Renders `messages`, ending with the assistant's turn opened when
    /// `add_generation_prompt`. This is the template's exact output (what
    /// jinja2 gives), including any BOS text it writes.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let msgs: Vec<TemplateMessage<'_>> = messages
            .iter()
            .map(|m| TemplateMessage {
                role: &m.role,
                content: &m.content,
                reasoning_content: m.thinking.as_deref(),
            })
            .collect();
        let ctx = minijinja::context! {
            messages => msgs,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        let render_err = |e: minijinja::Error| ChatError::Render {
            origin: self.origin.to_string(),
            detail: detail(&e),
        };
        let tmpl = self.env.get_template(NAME).map_err(render_err)?;
        tmpl.render(ctx).map_err(render_err)
    }

    /// The prompt to generate the next assistant turn from: [`render`](Self::render)
    /// with the generation prompt, without a leading BOS text when the
    /// tokenizer adds BOS itself. Tokenize it with
    /// `encode(prompt, add_special = true, parse_special = true)` to get
    /// exactly one BOS (llama.cpp's `common_chat_templates_apply` does the same).
    ///
    /// Messages are part of that text, so control-token text a user types
    /// (`<｜Assistant｜>`) becomes a control token too — as in llama.cpp and
    /// Ollama. Callers that must prevent it can reject or escape such text.
    pub fn render_prompt(&self, messages: &[ChatMessage]) -> Result<String, ChatError> {
        let text = self.render(messages, true)?;
        if self.tokenizer_adds_bos && !self.bos_token.is_empty() {
            if let Some(rest) = text.strip_prefix(self.bos_token.as_str()) {
                return Ok(rest.to_string());
            }
        }
        Ok(text)
    }

    /// Where the template came from.
    pub fn origin(&self) -> TemplateOrigin {
        self.origin
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The BOS text the template sees as `bos_token`.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// The EOS text the template sees as `eos_token`.
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }
}

/// minijinja's error with its line and cause.
fn detail(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// Whether a rendered prompt leaves the model inside a thought: it ends with
/// an opened `<think>` (the newer R1 templates' generation prompt,
/// `<｜Assistant｜><think>\n`). Generation then starts in the thought.
pub fn prompt_opens_thinking(prompt: &str) -> bool {
    prompt.trim_end().ends_with("<think>")
}
