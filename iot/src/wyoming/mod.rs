//! A Wyoming `handle` service: the conversation agent of a Home Assistant
//! voice pipeline (or any Wyoming client) answered by the local model.
//!
//! What a client sends and gets back (see [`protocol`] for the framing):
//!
//! | client sends | pistil answers |
//! |---|---|
//! | `describe` | `info` with one `handle` program: name, description, attribution, installed, version, models (with languages) |
//! | `ping {text?}` | `pong {text?}` |
//! | `transcript {text, language?, context?}` | `handled {text, context}` — the answer only, never the thought; or, with streaming on, `handled-start {context}`, `handled-chunk {text}`…, `handled-stop` |
//! | an empty `transcript`, or one while the queue is full | `not-handled {text, context}` |
//! | a `transcript` the model fails on | `error {text, code}` |
//! | anything else (audio, …) | nothing (ignored) |
//!
//! Home Assistant sends `context: {"conversation_id": …}` with every
//! transcript; each conversation keeps its own chat history
//! ([`Conversations`]: LRU-bounded, oldest turns dropped first, and dropped
//! further when the prompt outgrows the context). A client that closes the
//! connection while its answer is being generated cancels it within a token.

pub mod protocol;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use crate::assistant::{Ask, AskPrompt, AssistError, Options, Piece, Reply, Think, Turn};
use crate::conversations::Conversations;
use crate::worker::{Busy, JobEvent, WorkerHandle};
pub use protocol::{
    encode_event, read_event, write_event, ProtocolError, WyEvent, WYOMING_VERSION,
};

/// How the service describes itself and answers.
#[derive(Debug, Clone)]
pub struct WyomingConfig {
    /// Program name shown by Home Assistant.
    pub name: String,
    /// Program description.
    pub description: String,
    /// Program version.
    pub version: String,
    /// Who made the program, and where it is from.
    pub attribution: (String, String),
    /// Who made the model, and where it is from (empty if unknown).
    pub model_attribution: (String, String),
    /// Languages to advertise (empty = any: Home Assistant then offers it for every language).
    pub languages: Vec<String>,
    /// System message of every conversation.
    pub system: Option<String>,
    /// Thinking (a voice answer waits for the whole thought: `Off` or a budget keeps it short).
    pub think: Think,
    /// Sampling settings of every answer (e.g. `num_predict` to keep answers short).
    pub options: Options,
    /// Conversations remembered (least recently used forgotten first).
    pub max_conversations: usize,
    /// Messages remembered per conversation.
    pub max_messages: usize,
    /// Stream answers as `handled-start`/`handled-chunk`/`handled-stop`
    /// (advertised as `supports_handled_streaming`); off = one `handled`.
    pub stream: bool,
    /// Connections served at once (more are refused with an `error`).
    pub max_connections: usize,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
}

impl Default for WyomingConfig {
    fn default() -> Self {
        WyomingConfig {
            name: "pistil".into(),
            description: "pistil: a local language model on this device".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            attribution: (
                "pistil".into(),
                "https://github.com/pistil-rs/pistil".into(),
            ),
            model_attribution: (String::new(), String::new()),
            languages: Vec::new(),
            system: None,
            think: Think::Default,
            options: Options::default(),
            max_conversations: 16,
            max_messages: 20,
            stream: false,
            max_connections: 16,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// The service: configuration, the model worker, the conversations.
pub struct WyomingServer {
    config: WyomingConfig,
    worker: WorkerHandle,
    conversations: Mutex<Conversations>,
    slots: Arc<Semaphore>,
}

enum Incoming {
    Event(WyEvent),
    Error(ProtocolError),
}

/// What ended the handling of a transcript.
enum Flow {
    Continue,
    Closed,
}

impl WyomingServer {
    /// A service answering with `worker`'s model.
    pub fn new(config: WyomingConfig, worker: WorkerHandle) -> Arc<WyomingServer> {
        let conversations = Conversations::new(config.max_conversations, config.max_messages);
        let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
        Arc::new(WyomingServer {
            config,
            worker,
            conversations: Mutex::new(conversations),
            slots,
        })
    }

    /// The `info` event answering `describe`.
    pub fn info_event(&self) -> WyEvent {
        let c = &self.config;
        let model = self.worker.model_name();
        let handle = json!({
            "name": c.name,
            "description": c.description,
            "attribution": {"name": c.attribution.0, "url": c.attribution.1},
            "installed": true,
            "version": c.version,
            "models": [{
                "name": model,
                "description": format!("{model} (local)"),
                "attribution": {"name": c.model_attribution.0, "url": c.model_attribution.1},
                "installed": true,
                "version": null,
                "languages": c.languages,
            }],
            "supports_handled_streaming": c.stream,
            "supports_home_control": false,
        });
        let data = json!({
            "asr": [], "tts": [], "handle": [handle], "intent": [], "wake": [], "mic": [], "snd": [],
        });
        WyEvent::new("info", as_map(data))
    }

    /// Accepts connections forever (until the listener fails).
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait and go on.
                    tracing::warn!("wyoming: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let server = Arc::clone(&self);
            tokio::spawn(async move {
                tracing::debug!("wyoming: connection from {peer}");
                server.handle_connection(stream).await;
                tracing::debug!("wyoming: {peer} closed");
            });
        }
    }

    /// Serves one connection until the client closes it.
    pub async fn handle_connection<S>(self: Arc<Self>, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (rd, mut wr) = tokio::io::split(stream);
        let Ok(_slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            let _ = write_event(
                &mut wr,
                &error_event(
                    "too many connections to the pistil Wyoming service; try again",
                    "busy",
                ),
            )
            .await;
            return;
        };
        // A reader task turns the byte stream into events, so a closed
        // connection or a ping is noticed while an answer is generated.
        let (tx, mut incoming) = mpsc::channel::<Incoming>(16);
        let reader = tokio::spawn(async move {
            let mut rd = BufReader::new(rd);
            loop {
                match read_event(&mut rd).await {
                    Ok(Some(ev)) => {
                        if tx.send(Incoming::Event(ev)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Incoming::Error(e)).await;
                        return;
                    }
                }
            }
        });
        let mut pending: VecDeque<WyEvent> = VecDeque::new();
        loop {
            let ev = match pending.pop_front() {
                Some(ev) => ev,
                None => match tokio::time::timeout(self.config.idle_timeout, incoming.recv()).await
                {
                    Ok(Some(Incoming::Event(ev))) => ev,
                    Ok(Some(Incoming::Error(e))) => {
                        tracing::warn!("wyoming: {e}");
                        let _ =
                            write_event(&mut wr, &error_event(&e.to_string(), "bad-event")).await;
                        break;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        tracing::debug!("wyoming: idle connection closed");
                        break;
                    }
                },
            };
            let result = match ev.kind.as_str() {
                "describe" => write_event(&mut wr, &self.info_event())
                    .await
                    .map(|_| Flow::Continue),
                "ping" => write_event(&mut wr, &pong(&ev))
                    .await
                    .map(|_| Flow::Continue),
                "transcript" => {
                    self.transcript(&ev, &mut incoming, &mut pending, &mut wr)
                        .await
                }
                other => {
                    tracing::debug!("wyoming: ignoring a {other} event");
                    Ok(Flow::Continue)
                }
            };
            match result {
                Ok(Flow::Continue) => {}
                Ok(Flow::Closed) => break,
                Err(e) => {
                    tracing::debug!("wyoming: write failed: {e}");
                    break;
                }
            }
        }
        reader.abort();
    }

    async fn transcript<W: AsyncWrite + Unpin>(
        &self,
        ev: &WyEvent,
        incoming: &mut mpsc::Receiver<Incoming>,
        pending: &mut VecDeque<WyEvent>,
        wr: &mut W,
    ) -> std::io::Result<Flow> {
        let text = ev.str_field("text").unwrap_or("").trim().to_string();
        let context = ev.data.get("context").and_then(Value::as_object).cloned();
        let conv_id = context
            .as_ref()
            .and_then(|c| match c.get("conversation_id") {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            });
        if text.is_empty() {
            write_event(wr, &not_handled("I did not hear a question.", &context)).await?;
            return Ok(Flow::Continue);
        }
        loop {
            let mut turns = match &conv_id {
                Some(id) => self.lock_conversations().history(id),
                None => Vec::new(),
            };
            let had_history = !turns.is_empty();
            turns.push(Turn::user(text.clone()));
            let ask = Ask {
                prompt: AskPrompt::Chat(turns),
                system: self.config.system.clone(),
                options: self.config.options.clone(),
                think: self.config.think,
                format: None,
            };
            let mut job = match self.worker.submit(ask) {
                Ok(j) => j,
                Err(b @ Busy::QueueFull(_)) => {
                    write_event(wr, &not_handled(&format!("Sorry, I am {b}"), &context)).await?;
                    return Ok(Flow::Continue);
                }
                Err(b @ Busy::Stopped) => {
                    write_event(wr, &error_event(&b.to_string(), "stopped")).await?;
                    return Ok(Flow::Closed);
                }
            };
            let mut reply = Reply::default();
            let mut started = false;
            let outcome = loop {
                tokio::select! {
                    jev = job.next() => match jev {
                        Some(JobEvent::Piece(p)) => {
                            if let (true, Piece::Content(t)) = (self.config.stream, &p) {
                                let chunk = if started { t.as_str() } else { t.trim_start() };
                                if !chunk.is_empty() {
                                    if !started {
                                        started = true;
                                        write_event(wr, &with_context("handled-start", Map::new(), &context)).await?;
                                    }
                                    write_event(wr, &WyEvent::new("handled-chunk", as_map(json!({"text": chunk})))).await?;
                                }
                            }
                            reply.push(&p);
                        }
                        Some(JobEvent::Done(r)) => break r,
                        None => break Err(AssistError::Engine("the model worker stopped".into())),
                    },
                    inc = incoming.recv() => match inc {
                        Some(Incoming::Event(e)) if e.kind == "ping" => write_event(wr, &pong(&e)).await?,
                        Some(Incoming::Event(e)) => pending.push_back(e),
                        // Closed or broken: dropping the job cancels the generation.
                        Some(Incoming::Error(_)) | None => return Ok(Flow::Closed),
                    },
                }
            };
            match outcome {
                Ok(_) => {
                    let answer = reply.content.trim().to_string();
                    if let Some(id) = &conv_id {
                        self.lock_conversations().record(
                            id,
                            Turn::user(text.clone()),
                            Turn::assistant(answer.clone(), reply.thinking_opt()),
                        );
                    }
                    if self.config.stream {
                        if !started {
                            write_event(wr, &with_context("handled-start", Map::new(), &context))
                                .await?;
                        }
                        write_event(wr, &WyEvent::new("handled-stop", Map::new())).await?;
                    } else {
                        let data = as_map(json!({"text": answer}));
                        write_event(wr, &with_context("handled", data, &context)).await?;
                    }
                    return Ok(Flow::Continue);
                }
                Err(AssistError::PromptTooLong { .. }) if had_history && !started => {
                    // Forget the oldest exchange and try again.
                    if let Some(id) = &conv_id {
                        self.lock_conversations().shorten(id);
                    }
                }
                Err(e) => {
                    write_event(wr, &error_event(&e.to_string(), "generation-failed")).await?;
                    return Ok(Flow::Continue);
                }
            }
        }
    }

    fn lock_conversations(&self) -> std::sync::MutexGuard<'_, Conversations> {
        // A panic while holding the lock leaves consistent data (plain Vec edits).
        self.conversations.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn as_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn with_context(
    kind: &str,
    mut data: Map<String, Value>,
    context: &Option<Map<String, Value>>,
) -> WyEvent {
    if let Some(c) = context {
        data.insert("context".into(), Value::Object(c.clone()));
    }
    WyEvent::new(kind, data)
}

fn not_handled(text: &str, context: &Option<Map<String, Value>>) -> WyEvent {
    with_context("not-handled", as_map(json!({"text": text})), context)
}

fn error_event(text: &str, code: &str) -> WyEvent {
    WyEvent::new("error", as_map(json!({"text": text, "code": code})))
}

fn pong(ping: &WyEvent) -> WyEvent {
    let mut data = Map::new();
    if let Some(t) = ping.data.get("text") {
        data.insert("text".into(), t.clone());
    }
    WyEvent::new("pong", data)
}
