//! Ollama's API (`/api/*`), with the shapes its clients parse: NDJSON
//! streams by default, durations in nanoseconds, `{"error": "..."}` errors.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pistil_runtime::catalog::{self, Progress, PullOptions};
use pistil_runtime::constraint::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::backend::{ChatMessage, DoneReason, Event, GenRequest, ModelInfo, Prompt, Stats, Think};
use crate::error::{parse_body, ApiError, Flavor};
use crate::http::{
    json_response, now_rfc3339, rfc3339, start_job, stream_body, typed, AppState, Running,
};
use crate::options::{apply_ollama_options, parse_format, parse_think, KeepAlive};
use crate::worker::{JobEvent, JobKind};

const NDJSON: &str = "application/x-ndjson";
const F: Flavor = Flavor::Ollama;

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// `done_reason` as Ollama writes it.
pub fn done_reason(r: Option<DoneReason>) -> &'static str {
    match r {
        Some(DoneReason::Length | DoneReason::Context) => "length",
        _ => "stop",
    }
}

/// The statistics of a final object.
#[derive(Serialize, Debug, Clone, Default)]
pub struct Timings {
    total_duration: u64,
    load_duration: u64,
    /// Prompt tokens evaluated (not those reused from the cache), as Ollama counts.
    prompt_eval_count: usize,
    prompt_eval_duration: u64,
    eval_count: usize,
    eval_duration: u64,
}

impl Timings {
    fn new(stats: &Stats, load: Duration, total: Duration) -> Timings {
        Timings {
            total_duration: ns(total),
            load_duration: ns(load),
            prompt_eval_count: stats.prompt_tokens.saturating_sub(stats.cached_tokens),
            prompt_eval_duration: ns(stats.prompt_eval),
            eval_count: stats.gen_tokens,
            eval_duration: ns(stats.eval),
        }
    }
}

#[derive(Serialize)]
struct GenerateChunk<'a> {
    model: &'a str,
    created_at: String,
    response: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a str>,
    done: bool,
}

#[derive(Serialize)]
struct GenerateFinal<'a> {
    model: &'a str,
    created_at: String,
    response: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a str>,
    done: bool,
    done_reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a [u32]>,
    #[serde(flatten)]
    timings: Timings,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'a str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a str>,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    model: &'a str,
    created_at: String,
    message: OutMessage<'a>,
    done: bool,
}

#[derive(Serialize)]
struct ChatFinal<'a> {
    model: &'a str,
    created_at: String,
    message: OutMessage<'a>,
    done_reason: &'a str,
    done: bool,
    #[serde(flatten)]
    timings: Timings,
}

fn line<T: Serialize>(v: &T) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_else(|e| {
        json!({ "error": format!("cannot encode: {e}") })
            .to_string()
            .into_bytes()
    });
    b.push(b'\n');
    Bytes::from(b)
}

fn error_line(msg: &str) -> Bytes {
    line(&json!({ "error": msg }))
}

/// `/api/generate` body.
#[derive(Deserialize, Debug, Default)]
struct GenerateBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    images: Option<Vec<Value>>,
    #[serde(default)]
    format: Option<Json>,
    #[serde(default)]
    options: Option<Value>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    raw: Option<bool>,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    context: Option<Vec<i64>>,
    #[serde(default)]
    think: Option<Value>,
}

/// A message of `/api/chat`.
#[derive(Deserialize, Debug, Default)]
struct MessageBody {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    images: Option<Vec<Value>>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

/// `/api/chat` body.
#[derive(Deserialize, Debug, Default)]
struct ChatBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Option<Vec<MessageBody>>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    format: Option<Json>,
    #[serde(default)]
    options: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    think: Option<Value>,
}

fn keep_alive(v: &Option<Value>) -> Result<Option<KeepAlive>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => KeepAlive::parse(v)
            .map(Some)
            .map_err(|m| ApiError::bad_param("keep_alive", m)),
    }
}

/// Applies the fields both endpoints share.
fn common(
    req: &mut GenRequest,
    options: &Option<Value>,
    format: &Option<Json>,
    think: &Option<Value>,
) -> Result<(), ApiError> {
    if let Some(o) = options {
        apply_ollama_options(req, o)?;
    }
    req.think = match think {
        Some(t) => parse_think(t)?,
        None => Think::Default,
    };
    req.format = parse_format(format.as_ref())?;
    if req.format.is_some() {
        // Structured output: the reply is the JSON itself, no thought before it,
        // and a stop string must not cut it short.
        req.think = Think::Off;
        req.stop.clear();
    }
    Ok(())
}

fn no_images(images: &Option<Vec<Value>>) -> Result<(), ApiError> {
    if images.as_ref().is_some_and(|i| !i.is_empty()) {
        return Err(ApiError::bad_param(
            "images",
            "images are not supported: pistil runs text models",
        ));
    }
    Ok(())
}

/// `POST /api/generate`.
pub async fn generate(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match generate_inner(&st, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn generate_inner(
    st: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = st.body(body, F)?;
    let b: GenerateBody = parse_body(&bytes, F)?;
    let spec = st.resolve(&b.model, F)?;
    let model_name = if b.model.is_empty() {
        spec.name.clone()
    } else {
        b.model.clone()
    };
    let ka = keep_alive(&b.keep_alive)?;
    no_images(&b.images)?;
    if b.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_param(
            "suffix",
            format!("\"{model_name}\" does not support insert (suffix)"),
        ));
    }
    if b.template.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_param(
            "template",
            "template overrides are not supported: the model's own chat template is used (send raw: true with a formatted prompt instead)",
        ));
    }
    if b.context.as_ref().is_some_and(|c| !c.is_empty()) {
        tracing::debug!(
            "ignoring `context` (deprecated); send the whole conversation to /api/chat"
        );
    }
    let prompt = b.prompt.clone().unwrap_or_default();
    if prompt.is_empty() {
        return load_or_unload(st, spec, &model_name, ka, false).await;
    }
    let raw = b.raw.unwrap_or(false);
    let p = match (&b.system, raw) {
        (Some(sys), false) if !sys.is_empty() => Prompt::Chat(vec![
            ChatMessage {
                role: "system".into(),
                content: sys.clone(),
                thinking: None,
            },
            ChatMessage {
                role: "user".into(),
                content: prompt,
                thinking: None,
            },
        ]),
        _ => Prompt::Text {
            text: prompt,
            raw,
            system: None,
        },
    };
    let mut req = GenRequest::new(p);
    common(&mut req, &b.options, &b.format, &b.think)?;
    let stream = b.stream.unwrap_or(true);
    let running = start_job(st, spec, JobKind::Generate(Box::new(req)), ka, F).await?;
    if !stream {
        let (c, load) = running
            .collect()
            .await
            .map_err(|e| ApiError::from(e).flavor(F))?;
        let total = c.stats.total + load;
        let out = GenerateFinal {
            model: &model_name,
            created_at: now_rfc3339(),
            response: &c.content,
            thinking: (!c.thinking.is_empty()).then_some(c.thinking.as_str()),
            done: true,
            done_reason: done_reason(c.stats.done_reason),
            context: c.stats.context.as_deref(),
            timings: Timings::new(&c.stats, load, total),
        };
        return Ok(json_response(StatusCode::OK, &out));
    }
    let body = stream_body(running, model_name, |model, running, ev| match ev {
        Some(JobEvent::Piece(Event::Content(t))) => (
            Some(line(&GenerateChunk {
                model,
                created_at: now_rfc3339(),
                response: &t,
                thinking: None,
                done: false,
            })),
            false,
        ),
        Some(JobEvent::Piece(Event::Thinking(t))) => (
            Some(line(&GenerateChunk {
                model,
                created_at: now_rfc3339(),
                response: "",
                thinking: Some(&t),
                done: false,
            })),
            false,
        ),
        Some(JobEvent::Loaded(_)) => (None, false),
        Some(JobEvent::Done(Ok(stats))) => (
            Some(line(&GenerateFinal {
                model,
                created_at: now_rfc3339(),
                response: "",
                thinking: None,
                done: true,
                done_reason: done_reason(stats.done_reason),
                context: stats.context.as_deref(),
                timings: Timings::new(&stats, running.load, stats.total + running.load),
            })),
            true,
        ),
        Some(JobEvent::Done(Err(e))) => (Some(error_line(&e.to_string())), true),
        None => (Some(error_line("the engine thread has stopped")), true),
    });
    Ok(typed(StatusCode::OK, NDJSON, body))
}

/// Ollama's load (empty prompt) and unload (empty prompt, `keep_alive: 0`).
async fn load_or_unload(
    st: &AppState,
    spec: crate::backend::ModelSpec,
    model_name: &str,
    ka: Option<KeepAlive>,
    chat: bool,
) -> Result<Response, ApiError> {
    let unload = ka == Some(KeepAlive::For(Duration::ZERO));
    let kind = if unload {
        JobKind::Unload
    } else {
        JobKind::Load
    };
    let running = start_job(st, spec, kind, ka, F).await?;
    running
        .collect()
        .await
        .map_err(|e| ApiError::from(e).flavor(F))?;
    let reason = if unload { "unload" } else { "load" };
    let v = if chat {
        json!({"model": model_name, "created_at": now_rfc3339(),
               "message": {"role": "assistant", "content": ""},
               "done_reason": reason, "done": true})
    } else {
        json!({"model": model_name, "created_at": now_rfc3339(), "response": "",
               "done": true, "done_reason": reason})
    };
    Ok(json_response(StatusCode::OK, &v))
}

/// Turns API messages into engine messages (shared with the OpenAI API).
pub fn chat_message(
    role: &str,
    content: String,
    thinking: Option<String>,
    flavor: Flavor,
) -> Result<ChatMessage, ApiError> {
    let role = match role {
        "system" | "user" | "assistant" | "tool" => role,
        "developer" => "system",
        other => {
            return Err(ApiError::bad_param(
                "messages",
                format!("unknown message role \"{other}\" (system, user, assistant or tool)"),
            )
            .flavor(flavor))
        }
    };
    Ok(ChatMessage {
        role: role.to_string(),
        content,
        thinking: thinking.filter(|t| !t.is_empty()),
    })
}

/// `POST /api/chat`.
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
    let ka = keep_alive(&b.keep_alive)?;
    if b.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::bad_param(
            "tools",
            format!("\"{model_name}\" does not support tools"),
        ));
    }
    let msgs = b.messages.unwrap_or_default();
    if msgs.is_empty() {
        return load_or_unload(st, spec, &model_name, ka, true).await;
    }
    let mut messages = Vec::with_capacity(msgs.len());
    for m in msgs {
        no_images(&m.images)?;
        if m.tool_calls.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::bad_param(
                "messages",
                format!("\"{model_name}\" does not support tools"),
            ));
        }
        messages.push(chat_message(
            &m.role,
            m.content.unwrap_or_default(),
            m.thinking,
            F,
        )?);
    }
    let mut req = GenRequest::new(Prompt::Chat(messages));
    common(&mut req, &b.options, &b.format, &b.think)?;
    let stream = b.stream.unwrap_or(true);
    let running = start_job(st, spec, JobKind::Generate(Box::new(req)), ka, F).await?;
    if !stream {
        let (c, load) = running
            .collect()
            .await
            .map_err(|e| ApiError::from(e).flavor(F))?;
        let out = ChatFinal {
            model: &model_name,
            created_at: now_rfc3339(),
            message: OutMessage {
                role: "assistant",
                content: &c.content,
                thinking: (!c.thinking.is_empty()).then_some(c.thinking.as_str()),
            },
            done_reason: done_reason(c.stats.done_reason),
            done: true,
            timings: Timings::new(&c.stats, load, c.stats.total + load),
        };
        return Ok(json_response(StatusCode::OK, &out));
    }
    let body = stream_body(running, model_name, chat_stream_map);
    Ok(typed(StatusCode::OK, NDJSON, body))
}

fn chat_stream_map(
    model: &mut String,
    running: &Running,
    ev: Option<JobEvent>,
) -> (Option<Bytes>, bool) {
    let chunk = |content: &str, thinking: Option<&str>| {
        line(&ChatChunk {
            model,
            created_at: now_rfc3339(),
            message: OutMessage {
                role: "assistant",
                content,
                thinking,
            },
            done: false,
        })
    };
    match ev {
        Some(JobEvent::Piece(Event::Content(t))) => (Some(chunk(&t, None)), false),
        Some(JobEvent::Piece(Event::Thinking(t))) => (Some(chunk("", Some(&t))), false),
        Some(JobEvent::Loaded(_)) => (None, false),
        Some(JobEvent::Done(Ok(stats))) => (
            Some(line(&ChatFinal {
                model,
                created_at: now_rfc3339(),
                message: OutMessage {
                    role: "assistant",
                    content: "",
                    thinking: None,
                },
                done_reason: done_reason(stats.done_reason),
                done: true,
                timings: Timings::new(&stats, running.load, stats.total + running.load),
            })),
            true,
        ),
        Some(JobEvent::Done(Err(e))) => (Some(error_line(&e.to_string())), true),
        None => (Some(error_line("the engine thread has stopped")), true),
    }
}

fn model_entry(m: &ModelInfo) -> Value {
    json!({
        "name": m.name,
        "model": m.name,
        "modified_at": rfc3339(m.modified.unwrap_or(SystemTime::UNIX_EPOCH)),
        "size": m.size,
        "digest": m.digest,
        "details": m.details,
    })
}

/// `GET /api/tags`: the models available without a download.
pub async fn tags(State(st): State<Arc<AppState>>) -> Response {
    let models = st.models.clone();
    let list = tokio::task::spawn_blocking(move || models.list())
        .await
        .unwrap_or_default();
    let mut out: Vec<Value> = list.iter().map(model_entry).collect();
    if let Some(l) = st.worker.status().loaded {
        if !list.iter().any(|m| m.path == l.spec.path) {
            out.push(model_entry(&l.info));
        }
    }
    json_response(StatusCode::OK, &json!({ "models": out }))
}

/// `GET /api/ps`: the loaded model.
pub async fn ps(State(st): State<Arc<AppState>>) -> Response {
    let s = st.worker.status();
    let models: Vec<Value> = s
        .loaded
        .iter()
        .map(|l| {
            // "Forever" as a far date, as Ollama does.
            let expires = l
                .expires_at
                .unwrap_or(SystemTime::UNIX_EPOCH + Duration::from_secs(10_000_000_000));
            json!({
                "name": l.spec.name,
                "model": l.spec.name,
                "size": if l.info.memory_bytes > 0 { l.info.memory_bytes } else { l.info.size },
                "digest": l.info.digest,
                "details": l.info.details,
                "expires_at": rfc3339(expires),
                "size_vram": 0,
                "context_length": l.info.n_ctx,
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "models": models }))
}

#[derive(Deserialize, Default)]
struct ShowBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    verbose: Option<bool>,
}

/// `POST /api/show`.
pub async fn show(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r = async {
        let bytes = st.body(body, F)?;
        let b: ShowBody = parse_body(&bytes, F)?;
        let name = if b.model.is_empty() { b.name } else { b.model };
        if name.is_empty() {
            return Err(ApiError::bad_param("model", "model is required"));
        }
        let _ = b.verbose;
        let spec = st.resolve(&name, F)?;
        let models = st.models.clone();
        let spec2 = spec.clone();
        let info = tokio::task::spawn_blocking(move || models.describe(&spec2))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(ApiError::internal)?;
        let modelfile = format!(
            "# Modelfile generated by pistil\n# To build a new Modelfile based on this one, replace the FROM line with:\n# FROM {name}\n\nFROM {}\n",
            spec.path.display()
        );
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "license": "",
                "modelfile": modelfile,
                "parameters": "",
                "template": info.template,
                "details": info.details,
                "model_info": info.model_info,
                "capabilities": info.capabilities,
                "modified_at": rfc3339(info.modified.unwrap_or(SystemTime::UNIX_EPOCH)),
            }),
        ))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize, Default)]
struct PullBody {
    #[serde(default)]
    model: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    insecure: Option<bool>,
}

/// Pull progress as Ollama's status objects.
struct PullProgress {
    tx: tokio::sync::mpsc::UnboundedSender<Value>,
    digest: String,
    total: Option<u64>,
    done: u64,
    last: std::time::Instant,
}

impl Progress for PullProgress {
    fn on_start(&mut self, total: Option<u64>) {
        self.total = total;
        self.done = 0;
        let _ = self.tx.send(json!({
            "status": format!("pulling {}", short_digest(&self.digest)),
            "digest": self.digest, "total": total.unwrap_or(0),
        }));
    }
    fn on_bytes(&mut self, n: u64) {
        self.done += n;
        if self.last.elapsed() >= Duration::from_millis(200) || Some(self.done) == self.total {
            self.last = std::time::Instant::now();
            let _ = self.tx.send(json!({
                "status": format!("pulling {}", short_digest(&self.digest)),
                "digest": self.digest,
                "total": self.total.unwrap_or(0),
                "completed": self.done,
            }));
        }
    }
    fn on_status(&mut self, msg: &str) {
        let _ = self.tx.send(json!({ "status": msg }));
    }
}

fn short_digest(d: &str) -> String {
    let h = d.strip_prefix("sha256:").unwrap_or(d);
    h.chars().take(12).collect()
}

/// `POST /api/pull`: downloads a catalog model, streaming progress.
pub async fn pull(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r = async {
        let bytes = st.body(body, F)?;
        let b: PullBody = parse_body(&bytes, F)?;
        let _ = b.insecure;
        let name = if b.model.is_empty() { b.name } else { b.model };
        let bare = name
            .strip_suffix(":latest")
            .or_else(|| name.strip_suffix("-latest"))
            .unwrap_or(&name);
        let entry = catalog::find(bare)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!(
                        "pull model manifest: file does not exist: \"{name}\" is not in pistil's catalog ({})",
                        catalog::catalog()
                            .map(|c| c.names().join(", "))
                            .unwrap_or_default()
                    ),
                )
            })?;
        let digest = format!(
            "sha256:{}",
            entry.sha256.clone().unwrap_or_else(|| entry.file_name())
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let _ = tx.send(json!({"status": "pulling manifest"}));
        let entry = entry.clone();
        std::thread::Builder::new()
            .name("pistil-pull".into())
            .spawn(move || {
                let mut p = PullProgress {
                    tx: tx.clone(),
                    digest,
                    total: None,
                    done: 0,
                    last: std::time::Instant::now(),
                };
                match catalog::pull(&entry, &PullOptions::default(), &mut p) {
                    Ok(_) => {
                        let _ = tx.send(json!({"status": "verifying sha256 digest"}));
                        let _ = tx.send(json!({"status": "writing manifest"}));
                        let _ = tx.send(json!({"status": "success"}));
                    }
                    Err(e) => {
                        let _ = tx.send(json!({"error": e.to_string()}));
                    }
                }
            })
            .map_err(|e| ApiError::internal(format!("cannot start the download: {e}")))?;
        if b.stream == Some(false) {
            let mut last = json!({"status": "success"});
            while let Some(v) = rx.recv().await {
                if v.get("error").is_some() {
                    return Ok(json_response(StatusCode::INTERNAL_SERVER_ERROR, &v));
                }
                last = v;
            }
            return Ok(json_response(StatusCode::OK, &last));
        }
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|v| (Ok::<Bytes, std::convert::Infallible>(line(&v)), rx))
        });
        Ok(typed(StatusCode::OK, NDJSON, Body::from_stream(stream)))
    }
    .await;
    r.unwrap_or_else(|e: ApiError| e.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_object_shape() {
        let stats = Stats {
            prompt_tokens: 30,
            cached_tokens: 20,
            prompt_eval: Duration::from_millis(5),
            gen_tokens: 7,
            eval: Duration::from_millis(70),
            done_reason: Some(DoneReason::Length),
            total: Duration::from_millis(80),
            context: None,
        };
        let b = line(&ChatFinal {
            model: "m",
            created_at: "2024-01-01T00:00:00Z".into(),
            message: OutMessage {
                role: "assistant",
                content: "",
                thinking: None,
            },
            done_reason: done_reason(stats.done_reason),
            done: true,
            timings: Timings::new(&stats, Duration::from_millis(3), Duration::from_millis(83)),
        });
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["done_reason"], "length");
        assert_eq!(v["prompt_eval_count"], 10);
        assert_eq!(v["eval_count"], 7);
        assert_eq!(v["eval_duration"], 70_000_000);
        assert_eq!(v["load_duration"], 3_000_000);
        assert_eq!(v["total_duration"], 83_000_000);
        assert_eq!(v["message"]["role"], "assistant");
        assert!(v["message"].get("thinking").is_none());
        assert!(b.ends_with(b"\n"));
    }
}
