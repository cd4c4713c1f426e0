//! OpenAI's API (`/v1/*`): chat completions, completions and models, with
//! server-sent events when `stream` is true. The thought of a reasoning model
//! is `reasoning_content` (`delta.reasoning_content` when streaming), as
//! llama.cpp and DeepSeek's API write it; `content` is the answer only.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pistil_runtime::constraint::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::backend::{DoneReason, Event, GenRequest, Prompt, Stats, Think};
use crate::error::{parse_body, ApiError, Flavor};
use crate::http::{json_response, start_job, stream_body, typed, unix_now, AppState};
use crate::ollama::chat_message;
use crate::options::{parse_response_format, parse_stop, predict_limit};
use crate::worker::{JobEvent, JobKind};

const F: Flavor = Flavor::OpenAi;
const SSE: &str = "text/event-stream";
const FINGERPRINT: &str = concat!("fp_pistil_", env!("CARGO_PKG_VERSION"));

/// OpenAI's `finish_reason`.
pub fn finish_reason(r: Option<DoneReason>) -> &'static str {
    match r {
        Some(DoneReason::Length | DoneReason::Context) => "length",
        _ => "stop",
    }
}

fn usage(s: &Stats) -> Value {
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.gen_tokens,
        "total_tokens": s.prompt_tokens + s.gen_tokens,
        "prompt_tokens_details": {"cached_tokens": s.cached_tokens},
    })
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

const DONE: &[u8] = b"data: [DONE]\n\n";

/// Sampling fields both endpoints take.
#[derive(Deserialize, Debug, Default)]
struct Sampling {
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    n: Option<i64>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    max_completion_tokens: Option<i64>,
    #[serde(default)]
    stop: Option<Value>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    #[serde(default)]
    frequency_penalty: Option<f32>,
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    // llama.cpp's extensions, accepted here too.
    #[serde(default)]
    top_k: Option<i64>,
    #[serde(default)]
    min_p: Option<f32>,
    #[serde(default)]
    repeat_penalty: Option<f32>,
}

#[derive(Deserialize, Debug, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

impl Sampling {
    fn apply(&self, req: &mut GenRequest) -> Result<(), ApiError> {
        let bad = |p: &str, m: String| ApiError::bad_param(p, m).flavor(F);
        if let Some(n) = self.n {
            if n != 1 {
                return Err(bad(
                    "n",
                    format!("n = {n} is not supported: only one choice (n = 1) is generated"),
                ));
            }
        }
        if matches!(self.logprobs, Some(Value::Bool(true))) {
            return Err(bad("logprobs", "logprobs are not supported".into()));
        }
        let s = &mut req.sampling;
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(bad(
                    "temperature",
                    format!("temperature must be between 0 and 2, not {t}"),
                ));
            }
            s.temperature = t;
        }
        if let Some(p) = self.top_p {
            if !(0.0..=1.0).contains(&p) {
                return Err(bad(
                    "top_p",
                    format!("top_p must be between 0 and 1, not {p}"),
                ));
            }
            s.top_p = p;
        }
        if let Some(k) = self.top_k {
            s.top_k = k.max(0) as usize;
        }
        if let Some(p) = self.min_p {
            if !(0.0..=1.0).contains(&p) {
                return Err(bad(
                    "min_p",
                    format!("min_p must be between 0 and 1, not {p}"),
                ));
            }
            s.min_p = p;
        }
        if let Some(r) = self.repeat_penalty {
            if r <= 0.0 {
                return Err(bad("repeat_penalty", "repeat_penalty must be > 0".into()));
            }
            s.repeat_penalty = r;
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if let Some(v) = v {
                if !(-2.0..=2.0).contains(&v) {
                    return Err(bad(
                        name,
                        format!("{name} must be between -2 and 2, not {v}"),
                    ));
                }
            }
        }
        if let Some(v) = self.presence_penalty {
            s.presence_penalty = v;
        }
        if let Some(v) = self.frequency_penalty {
            s.frequency_penalty = v;
        }
        if let Some(seed) = self.seed {
            s.seed = (seed >= 0).then_some(seed as u64);
        }
        let (key, limit) = match (self.max_completion_tokens, self.max_tokens) {
            (Some(n), _) => ("max_completion_tokens", Some(n)),
            (None, Some(n)) => ("max_tokens", Some(n)),
            (None, None) => ("max_tokens", None),
        };
        if let Some(n) = limit {
            if n < 1 {
                return Err(bad(key, format!("{key} must be at least 1, not {n}")));
            }
            req.max_tokens = predict_limit(n, key).map_err(|e| e.flavor(F))?;
        }
        if let Some(stop) = &self.stop {
            req.stop = parse_stop(stop, "stop").map_err(|e| e.flavor(F))?;
        }
        Ok(())
    }

    fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

#[derive(Deserialize, Debug)]
struct ChatMessageBody {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

#[derive(Deserialize, Debug)]
struct ChatBody {
    #[serde(default)]
    model: String,
    messages: Vec<ChatMessageBody>,
    #[serde(flatten)]
    sampling: Sampling,
    #[serde(default)]
    response_format: Option<Json>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    reasoning_effort: Option<String>,
}

/// Message content: a string, or a list of `{"type": "text", "text": ...}` parts.
fn content_text(v: Option<Value>) -> Result<String, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        out.push_str(p.get("text").and_then(Value::as_str).unwrap_or(""))
                    }
                    Some(other) => {
                        return Err(ApiError::bad_param(
                            "messages",
                            format!(
                                "content parts of type \"{other}\" are not supported (text only)"
                            ),
                        )
                        .flavor(F))
                    }
                    None => {
                        return Err(ApiError::bad_param(
                            "messages",
                            "a content part has no \"type\"",
                        )
                        .flavor(F))
                    }
                }
            }
            Ok(out)
        }
        Some(other) => Err(ApiError::bad_param(
            "messages",
            format!("message content must be a string or a list of parts, not {other}"),
        )
        .flavor(F)),
    }
}

fn model_obj(id: &str, created: u64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "pistil"})
}

/// `GET /v1/models`.
pub async fn models(State(st): State<Arc<AppState>>) -> Response {
    let models = st.models.clone();
    let list = tokio::task::spawn_blocking(move || models.list())
        .await
        .unwrap_or_default();
    let secs = |m: &crate::backend::ModelInfo| {
        m.modified
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let mut data: Vec<Value> = list.iter().map(|m| model_obj(&m.name, secs(m))).collect();
    if let Some(l) = st.worker.status().loaded {
        if !list.iter().any(|m| m.path == l.spec.path) {
            data.push(model_obj(&l.spec.name, secs(&l.info)));
        }
    }
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{model}`.
pub async fn model(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match st.resolve(&id, F) {
        Ok(spec) => json_response(StatusCode::OK, &model_obj(&spec.name, unix_now())),
        Err(e) => e.into_response(),
    }
}

/// `POST /v1/chat/completions`.
pub async fn chat(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match chat_inner(&st, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn chat_inner(
    st: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = st.body(body, F)?;
    let b: ChatBody = parse_body(&bytes, F)?;
    let spec = st.resolve(&b.model, F)?;
    let model_name = if b.model.is_empty() {
        spec.name.clone()
    } else {
        b.model.clone()
    };
    if b.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_param(
            "tools",
            format!("\"{model_name}\" does not support tools"),
        )
        .flavor(F));
    }
    if b.messages.is_empty() {
        return Err(ApiError::bad_param("messages", "messages must not be empty").flavor(F));
    }
    let mut messages = Vec::with_capacity(b.messages.len());
    for m in b.messages {
        if m.tool_calls.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::bad_param(
                "messages",
                format!("\"{model_name}\" does not support tools"),
            )
            .flavor(F));
        }
        messages.push(chat_message(
            &m.role,
            content_text(m.content)?,
            m.reasoning_content,
            F,
        )?);
    }
    let mut req = GenRequest::new(Prompt::Chat(messages));
    b.sampling.apply(&mut req)?;
    req.think = match b.reasoning_effort.as_deref() {
        None => Think::Default,
        Some("none" | "minimal") => Think::Off,
        Some("low" | "medium" | "high") => Think::On,
        Some(other) => {
            return Err(ApiError::bad_param(
                "reasoning_effort",
                format!(
                    "reasoning_effort must be none, minimal, low, medium or high, not \"{other}\""
                ),
            )
            .flavor(F))
        }
    };
    req.format = parse_response_format(b.response_format.as_ref()).map_err(|e| e.flavor(F))?;
    if req.format.is_some() {
        req.think = Think::Off;
        req.stop.clear();
    }
    let id = format!("chatcmpl-{}", st.next_id());
    let created = unix_now();
    let stream = b.sampling.stream.unwrap_or(false);
    let include_usage = b.sampling.include_usage();
    let running = start_job(st, spec, JobKind::Generate(Box::new(req)), None, F).await?;
    if !stream {
        let (c, _) = running
            .collect()
            .await
            .map_err(|e| ApiError::from(e).flavor(F))?;
        let mut message = json!({"role": "assistant", "content": c.content, "refusal": null});
        if !c.thinking.is_empty() {
            message["reasoning_content"] = Value::String(c.thinking);
        }
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "id": id, "object": "chat.completion", "created": created, "model": model_name,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"index": 0, "message": message, "logprobs": null,
                             "finish_reason": finish_reason(c.stats.done_reason)}],
                "usage": usage(&c.stats),
            }),
        ));
    }
    struct S {
        id: String,
        model: String,
        created: u64,
        include_usage: bool,
        sent_role: bool,
        finished: bool,
    }
    let s = S {
        id,
        model: model_name,
        created,
        include_usage,
        sent_role: false,
        finished: false,
    };
    let body = stream_body(running, s, |s, _running, ev| {
        let chunk = |s: &S, delta: Value, finish: Option<&str>| {
            let mut v = json!({
                "id": s.id, "object": "chat.completion.chunk", "created": s.created, "model": s.model,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            });
            if s.include_usage {
                v["usage"] = Value::Null;
            }
            sse(&v)
        };
        let with_role = |s: &mut S, mut delta: Value| {
            if !s.sent_role {
                delta["role"] = Value::String("assistant".into());
                s.sent_role = true;
            }
            delta
        };
        match ev {
            Some(JobEvent::Piece(Event::Content(t))) => {
                let d = with_role(s, json!({"content": t}));
                (Some(chunk(s, d, None)), false)
            }
            Some(JobEvent::Piece(Event::Thinking(t))) => {
                let d = with_role(s, json!({"content": null, "reasoning_content": t}));
                (Some(chunk(s, d, None)), false)
            }
            Some(JobEvent::Loaded(_)) => (None, false),
            Some(JobEvent::Done(Ok(stats))) if !s.finished => {
                s.finished = true;
                let d = with_role(s, json!({}));
                let mut out = chunk(s, d, Some(finish_reason(stats.done_reason))).to_vec();
                if s.include_usage {
                    out.extend_from_slice(&sse(&json!({
                        "id": s.id, "object": "chat.completion.chunk", "created": s.created,
                        "model": s.model, "system_fingerprint": FINGERPRINT,
                        "choices": [], "usage": usage(&stats),
                    })));
                }
                out.extend_from_slice(DONE);
                (Some(Bytes::from(out)), true)
            }
            Some(JobEvent::Done(Ok(_))) => (None, true),
            Some(JobEvent::Done(Err(e))) => {
                let err = ApiError::from(e).flavor(F).body();
                let mut out = sse(&err).to_vec();
                out.extend_from_slice(DONE);
                (Some(Bytes::from(out)), true)
            }
            None => (
                Some(sse(&ApiError::internal("the engine thread has stopped")
                    .flavor(F)
                    .body())),
                true,
            ),
        }
    });
    Ok(typed(StatusCode::OK, SSE, body))
}

#[derive(Deserialize, Debug)]
struct CompletionBody {
    #[serde(default)]
    model: String,
    prompt: Value,
    #[serde(flatten)]
    sampling: Sampling,
    #[serde(default)]
    echo: Option<bool>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    best_of: Option<i64>,
    #[serde(default)]
    response_format: Option<Json>,
}

/// `POST /v1/completions`: the prompt is continued as is (no chat template).
pub async fn completions(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match completions_inner(&st, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn completions_inner(
    st: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = st.body(body, F)?;
    let b: CompletionBody = parse_body(&bytes, F)?;
    let spec = st.resolve(&b.model, F)?;
    let model_name = if b.model.is_empty() {
        spec.name.clone()
    } else {
        b.model.clone()
    };
    let prompt = match &b.prompt {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_string()
        }
        Value::Array(_) => {
            return Err(ApiError::bad_param(
                "prompt",
                "prompt must be one string (batches and token arrays are not supported)",
            )
            .flavor(F))
        }
        other => {
            return Err(ApiError::bad_param(
                "prompt",
                format!("prompt must be a string, not {other}"),
            )
            .flavor(F))
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::bad_param("prompt", "prompt must not be empty").flavor(F));
    }
    if b.echo == Some(true) {
        return Err(ApiError::bad_param("echo", "echo is not supported").flavor(F));
    }
    if b.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(
            ApiError::bad_param("suffix", "suffix (fill-in-the-middle) is not supported").flavor(F),
        );
    }
    if b.best_of.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_param("best_of", "best_of must be 1").flavor(F));
    }
    let mut req = GenRequest::new(Prompt::Text {
        text: prompt,
        raw: true,
        system: None,
    });
    // OpenAI's default for completions is 16 tokens.
    req.max_tokens = Some(16);
    b.sampling.apply(&mut req)?;
    req.format = parse_response_format(b.response_format.as_ref()).map_err(|e| e.flavor(F))?;
    if req.format.is_some() {
        req.stop.clear();
    }
    let id = format!("cmpl-{}", st.next_id());
    let created = unix_now();
    let stream = b.sampling.stream.unwrap_or(false);
    let include_usage = b.sampling.include_usage();
    let running = start_job(st, spec, JobKind::Generate(Box::new(req)), None, F).await?;
    if !stream {
        let (c, _) = running
            .collect()
            .await
            .map_err(|e| ApiError::from(e).flavor(F))?;
        // A raw completion has no separate thought: the text is the text.
        let text = c.thinking + &c.content;
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "id": id, "object": "text_completion", "created": created, "model": model_name,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"text": text, "index": 0, "logprobs": null,
                             "finish_reason": finish_reason(c.stats.done_reason)}],
                "usage": usage(&c.stats),
            }),
        ));
    }
    let body = stream_body(
        running,
        (id, model_name, created, include_usage),
        |s, _r, ev| {
            let (id, model, created, include_usage) = &*s;
            let chunk = |text: &str, finish: Option<&str>| {
                let mut v = json!({
                    "id": id, "object": "text_completion", "created": created, "model": model,
                    "system_fingerprint": FINGERPRINT,
                    "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
                });
                if *include_usage {
                    v["usage"] = Value::Null;
                }
                sse(&v)
            };
            match ev {
                Some(JobEvent::Piece(Event::Content(t))) => (Some(chunk(&t, None)), false),
                // A raw completion has no separate thought: the text is the text.
                Some(JobEvent::Piece(Event::Thinking(t))) => (Some(chunk(&t, None)), false),
                Some(JobEvent::Loaded(_)) => (None, false),
                Some(JobEvent::Done(Ok(stats))) => {
                    let mut out = chunk("", Some(finish_reason(stats.done_reason))).to_vec();
                    if *include_usage {
                        out.extend_from_slice(&sse(&json!({
                        "id": id, "object": "text_completion", "created": created, "model": model,
                        "system_fingerprint": FINGERPRINT, "choices": [], "usage": usage(&stats),
                    })));
                    }
                    out.extend_from_slice(DONE);
                    (Some(Bytes::from(out)), true)
                }
                Some(JobEvent::Done(Err(e))) => {
                    let mut out = sse(&ApiError::from(e).flavor(F).body()).to_vec();
                    out.extend_from_slice(DONE);
                    (Some(Bytes::from(out)), true)
                }
                None => (
                    Some(sse(&ApiError::internal("the engine thread has stopped")
                        .flavor(F)
                        .body())),
                    true,
                ),
            }
        },
    );
    Ok(typed(StatusCode::OK, SSE, body))
}
