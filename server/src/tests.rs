//! The HTTP layer over the fake backend, through real sockets: shapes of
//! both APIs, streaming, errors, queueing, cancellation, keep-alive, API key,
//! structured output.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backend::{ModelInfo, ModelSpec};
use crate::fake::{FakeBackend, FakeCounters};
use crate::http::{app_state, serve_on, ServerConfig};
use crate::models::{ModelSource, ResolveError};
use crate::options::KeepAlive;

/// Models "fake", "other" and "broken" (fails to load).
struct FakeModels;

impl ModelSource for FakeModels {
    fn resolve(&self, name: &str, loaded: Option<&ModelSpec>) -> Result<ModelSpec, ResolveError> {
        let name = if name.is_empty() {
            loaded.map(|l| l.name.as_str()).unwrap_or("fake")
        } else {
            name.strip_suffix(":latest").unwrap_or(name)
        };
        match name {
            "fake" | "other" | "broken" => Ok(ModelSpec {
                name: name.into(),
                path: format!("/models/{name}.gguf").into(),
            }),
            _ => Err(ResolveError::Unknown {
                name: name.into(),
                known: vec!["fake".into(), "other".into()],
            }),
        }
    }
    fn list(&self) -> Vec<ModelInfo> {
        ["fake", "other"]
            .iter()
            .map(|n| ModelInfo {
                name: n.to_string(),
                path: format!("/models/{n}.gguf").into(),
                size: 1234,
                ..ModelInfo::default()
            })
            .collect()
    }
    fn describe(&self, spec: &ModelSpec) -> Result<ModelInfo, String> {
        Ok(ModelInfo {
            name: spec.name.clone(),
            template: "{{ messages }}".into(),
            capabilities: vec!["completion".into()],
            ..ModelInfo::default()
        })
    }
}

struct Server {
    base: String,
    addr: std::net::SocketAddr,
    counters: Arc<FakeCounters>,
    agent: ureq::Agent,
    _rt: tokio::runtime::Runtime,
}

fn start(delay_ms: u64, queue: usize, api_key: Option<&str>) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = FakeBackend::new(Duration::from_millis(delay_ms));
    let counters = backend.counters.clone();
    let cfg = ServerConfig {
        queue,
        api_key: api_key.map(str::to_string),
        keep_alive: KeepAlive::For(Duration::from_secs(300)),
        body_limit: 64 * 1024,
        ..ServerConfig::default()
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let state = {
        let _g = rt.enter();
        app_state(&cfg, backend, Arc::new(FakeModels))
    };
    rt.spawn(serve_on(listener, state, std::future::pending()));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    Server {
        base: format!("http://{addr}"),
        addr,
        counters,
        agent,
        _rt: rt,
    }
}

impl Server {
    fn get(&self, path: &str) -> (u16, String) {
        let mut r = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }
    fn post(&self, path: &str, body: &str) -> (u16, String) {
        let mut r = self
            .agent
            .post(format!("{}{path}", self.base))
            .send(body)
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }
    fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, t) = self.post(path, &body.to_string());
        (
            s,
            serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}")),
        )
    }
    /// NDJSON lines of a streamed answer.
    fn lines(&self, path: &str, body: Value) -> Vec<Value> {
        let (s, t) = self.post(path, &body.to_string());
        assert_eq!(s, 200, "{t}");
        t.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
    /// SSE `data:` payloads.
    fn sse(&self, path: &str, body: Value) -> Vec<String> {
        let (s, t) = self.post(path, &body.to_string());
        assert_eq!(s, 200, "{t}");
        t.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("{e:?}"))
                    .to_string()
            })
            .collect()
    }
}

#[test]
fn plain_endpoints() {
    let s = start(0, 4, None);
    assert_eq!(s.get("/"), (200, "Ollama is running".into()));
    let r = s.agent.head(format!("{}/", s.base)).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (st, v) = s.get("/api/version");
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&v).unwrap();
    assert!(v["version"].as_str().unwrap().starts_with("0."));
    assert!(v["pistil_version"].is_string());
    let (st, h) = s.get("/health");
    assert_eq!(st, 200, "{h}");
    let (st, t) = s.get("/api/tags");
    let t: Value = serde_json::from_str(&t).unwrap();
    assert_eq!(st, 200);
    assert_eq!(t["models"][0]["name"], "fake");
    assert_eq!(t["models"][0]["model"], "fake");
    assert!(t["models"][0]["modified_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let (st, m) = s.get("/v1/models");
    let m: Value = serde_json::from_str(&m).unwrap();
    assert_eq!((st, m["object"].as_str()), (200, Some("list")));
    assert_eq!(m["data"][0]["object"], "model");
    let (st, e) = s.get("/api/nothing");
    assert_eq!(st, 404);
    assert!(serde_json::from_str::<Value>(&e).unwrap()["error"].is_string());
    let (st, e) = s.get("/v1/nothing");
    assert_eq!(st, 404);
    assert!(serde_json::from_str::<Value>(&e).unwrap()["error"]["message"].is_string());
    let (st, e) = s.get("/api/generate");
    assert_eq!(st, 405, "{e}");
    let (st, v) = s.post_json("/api/show", json!({"model": "fake"}));
    assert_eq!(st, 200);
    assert_eq!(v["template"], "{{ messages }}");
    assert!(v["modelfile"].as_str().unwrap().contains("FROM"));
}

#[test]
fn ollama_generate_and_chat() {
    let s = start(0, 4, None);
    // Non-streamed generate.
    let (st, v) = s.post_json(
        "/api/generate",
        json!({"model": "fake", "prompt": "Why is the sky blue?", "stream": false,
               "options": {"num_predict": 3, "temperature": 0}}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["model"], "fake");
    assert_eq!(v["response"], "word0 word1 word2");
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "length");
    assert_eq!(v["eval_count"], 3);
    for k in [
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_duration",
    ] {
        assert!(v[k].is_u64(), "{k}: {v}");
    }
    assert!(v["load_duration"].as_u64().unwrap() > 0 || v["total_duration"].as_u64().unwrap() > 0);
    assert!(v.get("thinking").is_none());

    // Streamed (the default), with a thought kept out of `response`.
    let lines = s.lines(
        "/api/generate",
        json!({"model": "fake", "prompt": "think first", "options": {"num_predict": 2}}),
    );
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["response"], "");
    assert!(last["eval_count"].is_u64());
    let thought: String = lines
        .iter()
        .filter_map(|l| l["thinking"].as_str())
        .collect();
    let response: String = lines
        .iter()
        .filter_map(|l| l["response"].as_str())
        .collect();
    assert_eq!(thought, "hmm let me think");
    assert_eq!(response, "word0 word1");
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));

    // think: false → no thought.
    let (_, v) = s.post_json(
        "/api/generate",
        json!({"model": "fake", "prompt": "think first", "stream": false, "think": false}),
    );
    assert!(v.get("thinking").is_none(), "{v}");

    // Chat, streamed and not.
    let lines = s.lines(
        "/api/chat",
        json!({"model": "fake", "messages": [{"role": "user", "content": "think please"}],
               "options": {"num_predict": 2}}),
    );
    assert!(lines.iter().all(|l| l["message"]["role"] == "assistant"));
    let thought: String = lines
        .iter()
        .filter_map(|l| l["message"]["thinking"].as_str())
        .collect();
    let content: String = lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert_eq!(thought, "hmm let me think");
    assert_eq!(content, "word0 word1");
    let last = lines.last().unwrap();
    assert_eq!(
        (last["done"].as_bool(), last["done_reason"].as_str()),
        (Some(true), Some("length"))
    );

    let (st, v) = s.post_json(
        "/api/chat",
        json!({"model": "fake", "stream": false,
               "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}),
    );
    assert_eq!(st, 200);
    assert_eq!(
        v["message"]["content"],
        "word0 word1 word2 word3 word4 word5 word6 word7"
    );
    assert_eq!(v["done_reason"], "stop");

    // A follow-up that extends the conversation: only the new part is evaluated.
    let history = json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "word0 word1"}, {"role": "user", "content": "more"}]);
    let (_, first) = s.post_json(
        "/api/chat",
        json!({"model": "fake", "stream": false, "messages": history}),
    );
    let mut longer = history.as_array().unwrap().clone();
    longer.push(json!({"role": "assistant", "content": "x"}));
    longer.push(json!({"role": "user", "content": "again"}));
    let (_, second) = s.post_json(
        "/api/chat",
        json!({"model": "fake", "stream": false, "messages": longer}),
    );
    assert!(
        second["prompt_eval_count"].as_u64().unwrap()
            < first["prompt_eval_count"].as_u64().unwrap(),
        "{first} {second}"
    );

    // Load and unload requests.
    let (_, v) = s.post_json("/api/generate", json!({"model": "fake"}));
    assert_eq!(v["done_reason"], "load");
    let (_, ps) = s.post_json(
        "/api/chat",
        json!({"model": "fake", "messages": [], "keep_alive": 0}),
    );
    assert_eq!(ps["done_reason"], "unload");
    assert_eq!(ps["message"]["role"], "assistant");
    let (_, ps) = s.get("/api/ps");
    assert_eq!(
        serde_json::from_str::<Value>(&ps).unwrap()["models"],
        json!([])
    );
}

#[test]
fn openai_shapes() {
    let s = start(0, 4, None);
    let (st, v) = s.post_json(
        "/v1/chat/completions",
        json!({"model": "fake", "messages": [{"role": "user", "content": "think hard"}], "max_tokens": 2}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"]["content"], "word0 word1");
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        "hmm let me think"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["usage"]["total_tokens"].as_u64(),
        Some(
            v["usage"]["prompt_tokens"].as_u64().unwrap()
                + v["usage"]["completion_tokens"].as_u64().unwrap()
        )
    );

    // Streamed, with usage.
    let events = s.sse(
        "/v1/chat/completions",
        json!({"model": "fake", "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": [{"type": "text", "text": "think"}]}], "max_tokens": 2}),
    );
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        (reasoning.as_str(), content.as_str()),
        ("hmm let me think", "word0 word1")
    );
    let n = chunks.len();
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(chunks[n - 1]["usage"]["completion_tokens"], 6);
    assert!(chunks[0]["usage"].is_null());

    // Completions.
    let (st, v) = s.post_json(
        "/v1/completions",
        json!({"model": "fake", "prompt": "Once", "max_tokens": 3, "stop": "word2"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], "word0 word1");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let events = s.sse(
        "/v1/completions",
        json!({"model": "fake", "prompt": "Once", "stream": true}),
    );
    assert_eq!(events.last().unwrap(), "[DONE]");

    // n > 1: a clear 400 naming the field.
    let (st, v) = s.post_json(
        "/v1/chat/completions",
        json!({"model": "fake", "n": 2, "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(st, 400);
    assert_eq!(v["error"]["param"], "n");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // Unknown model: 404 in OpenAI's shape.
    let (st, v) = s.post_json(
        "/v1/chat/completions",
        json!({"model": "gpt-5", "messages": [{"role": "user", "content": "x"}]}),
    );
    assert_eq!(st, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
}

#[test]
fn bad_input_gets_clear_4xx() {
    let s = start(0, 4, None);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("/api/generate", "{not json".into(), 400, "invalid JSON"),
        ("/api/generate", r#"{"model": "fake", "prompt": 5}"#.into(), 400, "'prompt'"),
        ("/api/generate", r#"{"model": "fake", "prompt": "x", "stream": "yes"}"#.into(), 400, "'stream'"),
        ("/api/generate", r#"{"model": "nope", "prompt": "x"}"#.into(), 404, "not found"),
        ("/api/generate", r#"{"model": "fake", "prompt": "x", "options": {"num_predict": -7}}"#.into(), 400, "num_predict"),
        ("/api/generate", r#"{"model": "fake", "prompt": "x", "keep_alive": "forever"}"#.into(), 400, "keep_alive"),
        ("/api/generate", r#"{"model": "fake", "prompt": "x", "format": "yaml"}"#.into(), 400, "format"),
        ("/api/generate", r#"{"model": "fake", "prompt": "x", "format": {"type": "string", "pattern": "a"}}"#.into(), 400, "pattern"),
        ("/api/generate", r#"{"model": "fake", "prompt": "x", "images": ["aGk="]}"#.into(), 400, "images"),
        ("/api/generate", "".into(), 400, "missing request body"),
        ("/api/generate", format!(r#"{{"model": "fake", "prompt": "{}"}}"#, "w ".repeat(300)), 400, "longer than the context"),
        ("/api/chat", r#"{"model": "fake", "messages": [{"role": "robot", "content": "x"}]}"#.into(), 400, "robot"),
        ("/api/chat", r#"{"model": "fake", "messages": "hi"}"#.into(), 400, "'messages'"),
        ("/api/chat", r#"{"model": "fake", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}"#.into(), 400, "tools"),
        ("/api/generate", r#"{"model": "broken", "prompt": "x"}"#.into(), 500, "cannot load model broken"),
        ("/api/generate", r#"{"model": "fake", "prompt": "please fail"}"#.into(), 500, "fake engine failure"),
        ("/v1/chat/completions", r#"{"model": "fake", "messages": []}"#.into(), 400, "messages"),
        ("/v1/chat/completions", r#"{"model": "fake", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}"#.into(), 400, "max_tokens"),
        ("/v1/chat/completions", r#"{"model": "fake", "messages": [{"role": "user", "content": "x"}], "temperature": 9}"#.into(), 400, "temperature"),
        ("/v1/completions", r#"{"model": "fake", "prompt": [1, 2]}"#.into(), 400, "prompt"),
    ];
    for (path, body, status, needle) in cases {
        let (st, text) = s.post(path, &body);
        assert_eq!(st, status, "{path} {body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let msg = v["error"]["message"]
            .as_str()
            .or(v["error"].as_str())
            .unwrap_or_else(|| panic!("no error message: {text}"));
        assert!(msg.contains(needle), "{path} {body}: {msg}");
    }
    // Too big a body: 413 in JSON.
    let big = format!(
        r#"{{"model": "fake", "prompt": "{}"}}"#,
        "a".repeat(100_000)
    );
    let (st, text) = s.post("/api/generate", &big);
    assert_eq!(st, 413, "{text}");
    assert!(serde_json::from_str::<Value>(&text).unwrap()["error"].is_string());
    // A panicking engine: an error, then the next request works.
    let (st, text) = s.post(
        "/api/generate",
        r#"{"model": "fake", "prompt": "panic now", "stream": false}"#,
    );
    assert_eq!(st, 500, "{text}");
    let (st, v) = s.post_json(
        "/api/generate",
        json!({"model": "fake", "prompt": "hello", "stream": false}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["response"],
        "word0 word1 word2 word3 word4 word5 word6 word7"
    );
}

/// Sends a streamed request on a raw socket, reads the headers and one chunk.
fn open_stream(addr: std::net::SocketAddr, path: &str, body: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    // Headers, then the first chunk of the body.
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let mut chunk = [0u8; 64];
    let n = r.read(&mut chunk).unwrap();
    assert!(n > 0);
    c
}

#[test]
fn disconnect_cancels_and_server_stays_healthy() {
    let s = start(20, 4, None);
    let c = open_stream(
        s.addr,
        "/api/generate",
        r#"{"model": "fake", "prompt": "long", "options": {"num_predict": 500}}"#,
    );
    drop(c);
    let t0 = Instant::now();
    while s.counters.cancelled.load(Ordering::SeqCst) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "generation not cancelled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // It stopped within a couple of tokens of the drop, far from 500.
    assert!(s.counters.tokens.load(Ordering::SeqCst) < 50);
    let (st, v) = s.post_json(
        "/api/generate",
        json!({"model": "fake", "prompt": "next", "stream": false, "options": {"num_predict": 2}}),
    );
    assert_eq!(st, 200);
    assert_eq!(v["response"], "word0 word1");

    // A non-streamed request whose client goes away is cancelled too.
    let before = s.counters.cancelled.load(Ordering::SeqCst);
    let mut c = TcpStream::connect(s.addr).unwrap();
    let body =
        r#"{"model": "fake", "prompt": "long", "stream": false, "options": {"num_predict": 500}}"#;
    write!(
        c,
        "POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(c);
    let t0 = Instant::now();
    while s.counters.cancelled.load(Ordering::SeqCst) == before {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "non-streamed generation not cancelled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // Same with OpenAI streaming.
    let before = s.counters.cancelled.load(Ordering::SeqCst);
    let c = open_stream(
        s.addr,
        "/v1/chat/completions",
        r#"{"model": "fake", "stream": true, "max_tokens": 500, "messages": [{"role": "user", "content": "x"}]}"#,
    );
    drop(c);
    let t0 = Instant::now();
    while s.counters.cancelled.load(Ordering::SeqCst) == before {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "generation not cancelled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn queue_is_bounded_and_status_never_blocks() {
    // 30 ms per token, 10 tokens: 300 ms per request; one running + one waiting.
    let s = Arc::new(start(30, 1, None));
    let mut handles = Vec::new();
    for _ in 0..5 {
        let s = s.clone();
        handles.push(std::thread::spawn(move || {
            s.post("/api/generate", r#"{"model": "fake", "prompt": "x", "stream": false, "options": {"num_predict": 10}}"#)
        }));
        std::thread::sleep(Duration::from_millis(5));
    }
    // While generating: the status endpoints answer at once.
    std::thread::sleep(Duration::from_millis(50));
    for path in ["/", "/api/version", "/api/tags", "/api/ps", "/health"] {
        let t0 = Instant::now();
        let (st, _) = s.get(path);
        assert_eq!(st, 200, "{path}");
        assert!(
            t0.elapsed() < Duration::from_millis(250),
            "{path} took {:?}",
            t0.elapsed()
        );
    }
    let (_, ps) = s.get("/api/ps");
    let ps: Value = serde_json::from_str(&ps).unwrap();
    assert_eq!(ps["models"][0]["name"], "fake");
    assert!(ps["models"][0]["expires_at"].is_string());
    let results: Vec<(u16, String)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let busy: Vec<&String> = results
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(ok + busy.len(), 5, "{results:?}");
    assert!(ok >= 2 && !busy.is_empty(), "{results:?}");
    assert!(busy[0].contains("server busy"), "{}", busy[0]);
    // Afterwards the queue is empty again.
    let (st, _) = s.post(
        "/api/generate",
        r#"{"model": "fake", "prompt": "x", "stream": false, "options": {"num_predict": 1}}"#,
    );
    assert_eq!(st, 200);
}

#[test]
fn models_switch_and_keep_alive() {
    let s = start(0, 4, None);
    let gen = |model: &str, ka: Value| {
        s.post_json(
            "/api/generate",
            json!({"model": model, "prompt": "x", "stream": false, "keep_alive": ka,
                                              "options": {"num_predict": 1}}),
        )
    };
    assert_eq!(gen("fake", json!("5m")).0, 200);
    let ps = |s: &Server| serde_json::from_str::<Value>(&s.get("/api/ps").1).unwrap();
    assert_eq!(ps(&s)["models"][0]["name"], "fake");
    assert_eq!(gen("other:latest", json!(-1)).0, 200);
    let p = ps(&s);
    assert_eq!(p["models"][0]["name"], "other");
    assert!(
        p["models"][0]["expires_at"]
            .as_str()
            .unwrap()
            .starts_with("2286"),
        "{p}"
    );
    assert_eq!(s.counters.loads.load(Ordering::SeqCst), 2);
    assert_eq!(gen("other", json!(0)).0, 200);
    assert_eq!(ps(&s)["models"], json!([]));
    // A short keep-alive expires by itself.
    assert_eq!(gen("fake", json!("200ms")).0, 200);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(ps(&s)["models"], json!([]));
}

#[test]
fn api_key() {
    let s = start(0, 4, Some("sekret"));
    assert_eq!(s.get("/").0, 200);
    assert_eq!(s.get("/health").0, 200);
    let (st, t) = s.get("/api/tags");
    assert_eq!(st, 401);
    assert!(t.contains("Authorization"), "{t}");
    let (st, t) = s.get("/v1/models");
    assert_eq!(st, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&t).unwrap()["error"]["type"],
        "authentication_error"
    );
    let r = s
        .agent
        .get(format!("{}/api/tags", s.base))
        .header("Authorization", "Bearer wrong")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = s
        .agent
        .get(format!("{}/api/tags", s.base))
        .header("Authorization", "Bearer sekret")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn structured_output_always_parses() {
    let s = start(0, 4, None);
    let schema = json!({"type": "object",
        "properties": {"room": {"type": "string", "maxLength": 10},
                       "temp": {"type": "number", "minimum": -20, "maximum": 50},
                       "on": {"type": "boolean"},
                       "mode": {"enum": ["heat", "cool", "off"]}},
        "required": ["room", "temp", "on", "mode"]});
    for seed in 0..40 {
        let n = [50, 80, 200][seed % 3];
        let (st, v) = s.post_json(
            "/api/chat",
            json!({"model": "fake", "stream": false, "format": schema,
                   "messages": [{"role": "user", "content": "status?"}],
                   "options": {"seed": seed, "num_predict": n}}),
        );
        assert_eq!(st, 200, "{v}");
        let out: Value = serde_json::from_str(v["message"]["content"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}: {v}"));
        let t = out["temp"].as_f64().unwrap();
        assert!((-20.0..=50.0).contains(&t));
        assert!(out["room"].as_str().unwrap().chars().count() <= 10);
        assert!(out["on"].is_boolean());
        assert!(["heat", "cool", "off"].contains(&out["mode"].as_str().unwrap()));
    }
    // json mode and OpenAI's response_format.
    let (_, v) = s.post_json(
        "/api/generate",
        json!({"model": "fake", "prompt": "x", "format": "json", "stream": false, "options": {"num_predict": 30}}),
    );
    let out: Value = serde_json::from_str(v["response"].as_str().unwrap()).unwrap();
    assert!(out.is_object());
    let (_, v) = s.post_json(
        "/v1/chat/completions",
        json!({"model": "fake", "max_tokens": 50, "messages": [{"role": "user", "content": "x"}],
               "response_format": {"type": "json_schema", "json_schema": {"name": "t", "strict": true,
                   "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
                              "additionalProperties": false}}}}),
    );
    let out: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(out["ok"].is_boolean());
    // Too few tokens for any valid JSON: a clear error.
    let (st, v) = s.post_json(
        "/api/generate",
        json!({"model": "fake", "prompt": "x", "format": schema, "stream": false, "options": {"num_predict": 5}}),
    );
    assert_eq!(st, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("at least"), "{v}");
}
