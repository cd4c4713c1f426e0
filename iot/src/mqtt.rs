//! The MQTT bridge (`pistil mqtt`): prompts arrive on a topic, answers are
//! published on a reply topic.
//!
//! ## Requests
//! A message on the subscribed topic (`--topic`, wildcards allowed) is either
//! - **plain text**: the prompt itself (anything not starting with `{`); or
//! - **JSON**: the request of [`crate::request`] (`prompt` or `messages`,
//!   `system`, `options`, `think`, `format`, `id`) plus `reply_to`.
//!
//! ## Replies (QoS 1, not retained)
//! On `reply_to` if given, else on `<the request's topic>/reply`.
//! - To a plain-text request: the answer as plain text (`error: …` on failure).
//! - To a JSON request: `{"id", "model", "response", "done_reason",
//!   "prompt_eval_count", "eval_count", "total_duration",
//!   "prompt_eval_duration", "eval_duration"}` (Ollama's names, durations in
//!   ns); with `format`, also `"json"`: the answer parsed. On failure
//!   `{"id", "error"}`.
//!
//! With `thinking_topic` set (`--thinking`), the thought is published there
//! (one message per request, same plain/JSON shape with a `thinking` field)
//! before the answer.
//!
//! ## Robustness
//! - Requests wait in the worker's bounded queue; when it is full the
//!   request gets an error reply at once ("busy").
//! - The broker going away is logged and retried with exponential backoff
//!   (0.5 s doubling to `max_backoff`); after each (re)connection the topic
//!   is subscribed again. Replies produced while disconnected are sent after
//!   the reconnection. A refused login (bad credentials, not authorized) is
//!   fatal: retrying cannot fix it.
//! - Messages on topics ending in `/reply` or `/thinking` are ignored (so a
//!   wildcard subscription never answers its own replies), and so are
//!   retained messages (a retained prompt would be answered again at every
//!   reconnection).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::assistant::{Ask, AssistError, Outcome, Reply};
use crate::request::{parse_request, salvage_id, Defaults};
use crate::worker::WorkerHandle;

/// Largest MQTT packet accepted or sent.
pub const MAX_PACKET: usize = 1 << 20;

/// How to reach the broker and what to listen to.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port (1883).
    pub port: u16,
    /// Topic filter of the prompts (wildcards allowed).
    pub topic: String,
    /// MQTT client id (unique per broker).
    pub client_id: String,
    /// Login, if the broker wants one.
    pub credentials: Option<(String, String)>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// Start a fresh session (false: the broker keeps the subscription and
    /// queues QoS 1 prompts while pistil is away).
    pub clean_session: bool,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// Publish thoughts on this topic (`None` = never).
    pub thinking_topic: Option<ThinkingTopic>,
    /// What requests leave unset.
    pub defaults: Defaults,
}

/// Where thoughts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThinkingTopic {
    /// `<the request's topic>/thinking`.
    BesideRequest,
    /// This topic.
    Fixed(String),
}

impl MqttConfig {
    /// A config with the usual settings for `host:port` and `topic`.
    pub fn new(host: &str, port: u16, topic: &str) -> MqttConfig {
        MqttConfig {
            host: host.to_string(),
            port,
            topic: topic.to_string(),
            client_id: "pistil".into(),
            credentials: None,
            keep_alive: Duration::from_secs(30),
            clean_session: false,
            max_backoff: Duration::from_secs(30),
            thinking_topic: None,
            defaults: Defaults::default(),
        }
    }
}

/// Why the bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The broker refused the login: retrying cannot help.
    #[error("the MQTT broker at {addr} refused the connection: {reason}")]
    Refused {
        /// `host:port`.
        addr: String,
        /// The broker's reason.
        reason: String,
    },
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
}

/// A prompt injected from outside MQTT (the GPIO button): answered like a
/// plain-text request and published on `reply_topic`.
#[derive(Debug, Clone)]
pub struct LocalPrompt {
    /// The question.
    pub prompt: String,
    /// Where the answer goes.
    pub reply_topic: String,
}

/// A parsed message: what to ask and how to answer.
#[derive(Debug)]
struct Incoming {
    ask: Ask,
    id: Value,
    plain: bool,
    reply_topic: String,
    thinking_topic: Option<String>,
    json_format: bool,
}

/// Publishes plain-text or JSON replies.
#[derive(Clone)]
struct Publisher {
    client: AsyncClient,
    model: Arc<str>,
}

impl Publisher {
    async fn send(&self, topic: &str, body: Vec<u8>) {
        if let Err(e) = self
            .client
            .publish(topic, QoS::AtLeastOnce, false, body)
            .await
        {
            tracing::warn!("mqtt: cannot queue the reply on {topic}: {e}");
        }
    }

    async fn error(&self, topic: &str, plain: bool, id: &Value, message: &str) {
        let body = if plain {
            format!("error: {message}").into_bytes()
        } else {
            let mut m = Map::new();
            if !id.is_null() {
                m.insert("id".into(), id.clone());
            }
            m.insert("error".into(), message.into());
            serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
        };
        self.send(topic, body).await;
    }

    async fn answer(&self, inc: &Incoming, reply: &Reply, o: &Outcome) {
        if let (Some(t), Some(thought)) = (&inc.thinking_topic, reply.thinking_opt()) {
            let body = if inc.plain {
                thought.into_bytes()
            } else {
                let mut m = Map::new();
                if !inc.id.is_null() {
                    m.insert("id".into(), inc.id.clone());
                }
                m.insert("thinking".into(), thought.into());
                serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
            };
            self.send(t, body).await;
        }
        let answer = reply.content.trim();
        let body = if inc.plain {
            answer.as_bytes().to_vec()
        } else {
            let mut m = Map::new();
            if !inc.id.is_null() {
                m.insert("id".into(), inc.id.clone());
            }
            m.insert("model".into(), self.model.as_ref().into());
            m.insert("response".into(), answer.into());
            if inc.json_format {
                if let Ok(v) = serde_json::from_str::<Value>(answer) {
                    m.insert("json".into(), v);
                }
            }
            m.insert("done_reason".into(), o.done_reason.as_str().into());
            m.insert("prompt_eval_count".into(), o.prompt_tokens.into());
            m.insert("eval_count".into(), o.gen_tokens.into());
            m.insert("total_duration".into(), ns(o.total));
            m.insert("prompt_eval_duration".into(), ns(o.prompt_eval));
            m.insert("eval_duration".into(), ns(o.eval));
            serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
        };
        self.send(&inc.reply_topic, body).await;
    }
}

fn ns(d: Duration) -> Value {
    json!(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// True for topics the bridge publishes on (never treated as prompts).
fn is_reply_topic(topic: &str) -> bool {
    topic.ends_with("/reply") || topic.ends_with("/thinking")
}

/// Whether `topic` contains MQTT wildcards.
pub fn has_wildcards(topic: &str) -> bool {
    topic.contains('+') || topic.contains('#')
}

fn thinking_topic(cfg: &MqttConfig, request_topic: &str) -> Option<String> {
    match &cfg.thinking_topic {
        None => None,
        Some(ThinkingTopic::BesideRequest) => Some(format!("{request_topic}/thinking")),
        Some(ThinkingTopic::Fixed(t)) => Some(t.clone()),
    }
}

/// Turns a message into a request, or into the error reply to send:
/// `Err((reply_topic, plain, id, message))`.
fn parse_message(
    cfg: &MqttConfig,
    topic: &str,
    payload: &[u8],
) -> Result<Incoming, (String, bool, Value, String)> {
    let default_reply = format!("{topic}/reply");
    let text = match std::str::from_utf8(payload) {
        Ok(t) => t.trim(),
        Err(e) => {
            return Err((
                default_reply,
                true,
                Value::Null,
                format!("the message is not UTF-8 text ({e})"),
            ))
        }
    };
    if !text.starts_with('{') {
        if text.is_empty() {
            return Err((default_reply, true, Value::Null, "empty prompt".into()));
        }
        return Ok(Incoming {
            ask: cfg.defaults.ask(text),
            id: Value::Null,
            plain: true,
            reply_topic: default_reply,
            thinking_topic: thinking_topic(cfg, topic),
            json_format: false,
        });
    }
    match parse_request(text) {
        Ok(mut req) => {
            cfg.defaults.apply(&mut req);
            let reply_topic = match req.reply_to.take() {
                Some(t) if t.is_empty() || has_wildcards(&t) => {
                    return Err((
                        default_reply,
                        false,
                        req.id,
                        format!("\"reply_to\" must be a topic name without wildcards, not {t:?}"),
                    ))
                }
                Some(t) => t,
                None => default_reply,
            };
            Ok(Incoming {
                json_format: req.ask.format.is_some(),
                ask: req.ask,
                id: req.id,
                plain: false,
                reply_topic,
                thinking_topic: thinking_topic(cfg, topic),
            })
        }
        Err(e) => {
            // Answer where the sender listens, if that much can be read.
            let v = serde_json::from_str::<Value>(text).ok();
            let reply_topic = v
                .as_ref()
                .and_then(|v| v.get("reply_to"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty() && !has_wildcards(t))
                .map(str::to_string)
                .unwrap_or(default_reply);
            Err((reply_topic, false, salvage_id(text), e.to_string()))
        }
    }
}

/// Runs the bridge until `shutdown` completes (then disconnects cleanly).
/// `local` delivers prompts from outside MQTT (the GPIO button).
pub async fn run_bridge(
    cfg: MqttConfig,
    worker: WorkerHandle,
    mut local: mpsc::UnboundedReceiver<LocalPrompt>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), MqttError> {
    if cfg.topic.is_empty() {
        return Err(MqttError::Config("the MQTT topic is empty".into()));
    }
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    opts.set_keep_alive(cfg.keep_alive)
        .set_clean_session(cfg.clean_session)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if let Some((u, p)) = &cfg.credentials {
        opts.set_credentials(u.clone(), p.clone());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let publisher = Publisher {
        client: client.clone(),
        model: Arc::from(worker.model_name()),
    };
    let initial_backoff = Duration::from_millis(500);
    let mut backoff = initial_backoff;
    let mut connected_once = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(lp) = local.recv() => {
                let inc = Incoming {
                    ask: cfg.defaults.ask(&lp.prompt),
                    id: Value::Null,
                    plain: true,
                    reply_topic: lp.reply_topic,
                    thinking_topic: None,
                    json_format: false,
                };
                dispatch(&worker, &publisher, inc).await;
            }
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    tracing::info!(
                        "mqtt: connected to {addr} (session {}), subscribing to {}",
                        if ack.session_present { "resumed" } else { "new" },
                        cfg.topic
                    );
                    connected_once = true;
                    backoff = initial_backoff;
                    if let Err(e) = client.try_subscribe(cfg.topic.clone(), QoS::AtLeastOnce) {
                        tracing::warn!("mqtt: cannot subscribe to {}: {e}", cfg.topic);
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                        tracing::error!("mqtt: the broker refused the subscription to {}", cfg.topic);
                    } else {
                        tracing::info!("mqtt: listening on {}", cfg.topic);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.retain {
                        tracing::debug!("mqtt: ignoring a retained message on {}", p.topic);
                        continue;
                    }
                    if is_reply_topic(&p.topic) {
                        continue;
                    }
                    match parse_message(&cfg, &p.topic, &p.payload) {
                        Ok(inc) => dispatch(&worker, &publisher, inc).await,
                        Err((topic, plain, id, msg)) => {
                            tracing::info!("mqtt: bad request on {}: {msg}", p.topic);
                            let publisher = publisher.clone();
                            tokio::spawn(async move { publisher.error(&topic, plain, &id, &msg).await });
                        }
                    }
                }
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) if is_fatal(code) => {
                    return Err(MqttError::Refused { addr, reason: format!("{code:?}") });
                }
                Err(e) => {
                    if connected_once {
                        tracing::warn!("mqtt: connection to {addr} lost: {e}; retrying in {backoff:?}");
                    } else {
                        tracing::warn!("mqtt: cannot connect to {addr}: {e}; retrying in {backoff:?}");
                    }
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(cfg.max_backoff.max(initial_backoff));
                }
            },
        }
    }
    // Best effort: say goodbye, and let the event loop send it.
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
    }
    Ok(())
}

fn is_fatal(code: ConnectReturnCode) -> bool {
    matches!(
        code,
        ConnectReturnCode::BadUserNamePassword
            | ConnectReturnCode::NotAuthorized
            | ConnectReturnCode::BadClientId
            | ConnectReturnCode::RefusedProtocolVersion
    )
}

/// Queues a request and answers it in a task (or answers "busy" at once).
async fn dispatch(worker: &WorkerHandle, publisher: &Publisher, inc: Incoming) {
    match worker.submit(inc.ask.clone()) {
        Err(busy) => {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                publisher
                    .error(&inc.reply_topic, inc.plain, &inc.id, &busy.to_string())
                    .await
            });
        }
        Ok(job) => {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                match job.collect(|_| {}).await {
                    Ok((reply, outcome)) => publisher.answer(&inc, &reply, &outcome).await,
                    Err(e) => {
                        let msg = match &e {
                            AssistError::PromptTooLong { .. } => format!("{e}; shorten the prompt"),
                            _ => e.to_string(),
                        };
                        publisher
                            .error(&inc.reply_topic, inc.plain, &inc.id, &msg)
                            .await
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MqttConfig {
        MqttConfig::new("localhost", 1883, "home/ask")
    }

    #[test]
    fn plain_and_json_messages() {
        let c = cfg();
        let inc = parse_message(&c, "home/ask", b"  Is 30 C hot?\n").unwrap();
        assert!(inc.plain);
        assert_eq!(inc.reply_topic, "home/ask/reply");
        assert_eq!(inc.ask.messages()[0].content, "Is 30 C hot?");
        let inc = parse_message(
            &c,
            "home/ask",
            br#"{"id":1,"prompt":"x","reply_to":"a/b","format":"json"}"#,
        )
        .unwrap();
        assert!(!inc.plain);
        assert!(inc.json_format);
        assert_eq!(inc.reply_topic, "a/b");
        assert_eq!(inc.id, json!(1));
    }

    #[test]
    fn bad_messages_get_error_replies_where_the_sender_listens() {
        let c = cfg();
        let (t, plain, id, msg) =
            parse_message(&c, "home/ask", br#"{"id":"z","reply_to":"me/r"}"#).unwrap_err();
        assert_eq!((t.as_str(), plain, id), ("me/r", false, json!("z")));
        assert!(msg.contains("missing"), "{msg}");
        let (t, _, _, msg) =
            parse_message(&c, "home/ask", br#"{"prompt":"x","reply_to":"a/#"}"#).unwrap_err();
        assert_eq!(t, "home/ask/reply");
        assert!(msg.contains("wildcards"), "{msg}");
        let (_, plain, _, msg) = parse_message(&c, "home/ask", b"\xff\xfe").unwrap_err();
        assert!(plain && msg.contains("UTF-8"), "{msg}");
        let (_, _, _, msg) = parse_message(&c, "home/ask", b"{not json").unwrap_err();
        assert!(msg.contains("bad request"), "{msg}");
    }

    #[test]
    fn thinking_topics_and_reply_topic_guard() {
        let mut c = cfg();
        c.thinking_topic = Some(ThinkingTopic::BesideRequest);
        let inc = parse_message(&c, "home/ask", b"q").unwrap();
        assert_eq!(inc.thinking_topic.as_deref(), Some("home/ask/thinking"));
        assert!(is_reply_topic("home/ask/reply"));
        assert!(is_reply_topic("home/ask/thinking"));
        assert!(!is_reply_topic("home/ask"));
        assert!(
            has_wildcards("home/+/ask") && has_wildcards("home/#") && !has_wildcards("home/ask")
        );
    }
}
