//! The Wyoming handle service over real TCP, with a pure-Rust client that
//! writes and reads events byte for byte as the `wyoming` Python package
//! does (header line, data bytes, payload), and a scripted assistant.

use std::time::Duration;

use pistil_iot::testing::{FakeAssistant, Script};
use pistil_iot::worker::Worker;
use pistil_iot::wyoming::{read_event, WyEvent, WyomingConfig, WyomingServer};
use pistil_iot::{AskPrompt, AssistError, Role, Think};
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

struct Client {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
}

/// Exactly what `wyoming.event.async_write_event` writes.
fn python_bytes(kind: &str, data: Value) -> Vec<u8> {
    let mut header = format!("{{\"type\": \"{kind}\", \"version\": \"1.10.2\"");
    let data_bytes = if data.as_object().is_some_and(|m| !m.is_empty()) {
        let d = serde_json::to_vec(&data).unwrap();
        header.push_str(&format!(", \"data_length\": {}", d.len()));
        d
    } else {
        Vec::new()
    };
    header.push_str("}\n");
    let mut b = header.into_bytes();
    b.extend(data_bytes);
    b
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        let (rd, wr) = s.into_split();
        Client {
            rd: BufReader::new(rd),
            wr,
        }
    }
    async fn send(&mut self, kind: &str, data: Value) {
        self.wr.write_all(&python_bytes(kind, data)).await.unwrap();
    }
    async fn recv(&mut self) -> WyEvent {
        tokio::time::timeout(Duration::from_secs(10), read_event(&mut self.rd))
            .await
            .expect("an event within 10 s")
            .expect("a well-formed event")
            .expect("not the end of the stream")
    }
}

async fn start(
    fake: FakeAssistant,
    config: WyomingConfig,
    queue: usize,
) -> (std::net::SocketAddr, Worker) {
    let worker = Worker::spawn(fake, queue).unwrap();
    let server = WyomingServer::new(config, worker.handle());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener));
    (addr, worker)
}

fn data(ev: &WyEvent) -> Value {
    Value::Object(ev.data.clone())
}

#[tokio::test]
async fn describe_transcript_conversations_ping() {
    let fake = FakeAssistant::new("deepseek-r1:1.5b");
    fake.push(Script::Answer {
        thinking: "The user greets me.".into(),
        content: "\n\nHello! How can I help?".into(),
    });
    let seen = fake.seen.clone();
    let config = WyomingConfig {
        languages: vec!["en".into(), "de".into()],
        system: Some("You are a voice assistant. Answer briefly.".into()),
        think: Think::Budget(64),
        ..WyomingConfig::default()
    };
    let (addr, _worker) = start(fake, config, 4).await;
    let mut c = Client::connect(addr).await;

    c.send("describe", json!({})).await;
    let info = c.recv().await;
    assert_eq!(info.kind, "info");
    let h = &data(&info)["handle"][0];
    assert_eq!(h["name"], "pistil");
    assert_eq!(h["installed"], true);
    assert_eq!(h["attribution"]["name"], "pistil");
    assert_eq!(h["models"][0]["name"], "deepseek-r1:1.5b");
    assert_eq!(h["models"][0]["languages"], json!(["en", "de"]));
    assert_eq!(h["supports_handled_streaming"], false);
    for k in ["asr", "tts", "intent", "wake"] {
        assert_eq!(data(&info)[k], json!([]), "{k}");
    }

    c.send("ping", json!({"text": "p1"})).await;
    let pong = c.recv().await;
    assert_eq!(
        (pong.kind.as_str(), data(&pong)),
        ("pong", json!({"text": "p1"}))
    );

    // Home Assistant's transcript: text, context with a conversation id, language.
    let ctx = json!({"conversation_id": "01HS6SP2XD", "device_id": "kitchen"});
    c.send(
        "transcript",
        json!({"text": "Hello there", "context": ctx, "language": "en"}),
    )
    .await;
    let h = c.recv().await;
    assert_eq!(h.kind, "handled");
    // The answer only (trimmed), never the thought; the context comes back.
    assert_eq!(
        data(&h),
        json!({"text": "Hello! How can I help?", "context": ctx})
    );

    // The next turn of the same conversation carries the history.
    c.send("transcript", json!({"text": "And again", "context": ctx}))
        .await;
    let h = c.recv().await;
    assert_eq!(data(&h)["text"], "echo: And again");
    // Another conversation starts fresh.
    c.send(
        "transcript",
        json!({"text": "Other", "context": {"conversation_id": "B"}}),
    )
    .await;
    assert_eq!(data(&c.recv().await)["text"], "echo: Other");
    // No context: answered, no history, no context back.
    c.send("transcript", json!({"text": "No context"})).await;
    assert_eq!(data(&c.recv().await), json!({"text": "echo: No context"}));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|a| a.think == Think::Budget(64)));
    let AskPrompt::Chat(turns) = &seen[1].prompt else {
        panic!()
    };
    let roles: Vec<Role> = turns.iter().map(|t| t.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant, Role::User]);
    assert_eq!(turns[1].content, "Hello! How can I help?");
    assert_eq!(turns[1].thinking.as_deref(), Some("The user greets me."));
    // The system message leads every request.
    assert_eq!(seen[1].messages()[0].role, Role::System);
    let AskPrompt::Chat(turns) = &seen[2].prompt else {
        panic!()
    };
    assert_eq!(turns.len(), 1);
}

#[tokio::test]
async fn empty_failed_busy_and_too_long() {
    let mut fake = FakeAssistant::new("m");
    fake.push(Script::Fail(AssistError::Engine("the model broke".into())));
    fake.piece_delay = Duration::from_millis(30);
    let (addr, _worker) = start(fake.clone(), WyomingConfig::default(), 0).await;
    let mut c = Client::connect(addr).await;
    let ctx = json!({"conversation_id": "x"});

    c.send("transcript", json!({"text": "  ", "context": ctx}))
        .await;
    let ev = c.recv().await;
    assert_eq!(ev.kind, "not-handled");
    assert_eq!(data(&ev)["context"], ctx);

    c.send("transcript", json!({"text": "q", "context": ctx}))
        .await;
    let ev = c.recv().await;
    assert_eq!(ev.kind, "error");
    assert_eq!(data(&ev)["text"], "the model broke");

    // Queue of 0: while one request runs, another connection is told "busy".
    let mut c2 = Client::connect(addr).await;
    c.send(
        "transcript",
        json!({"text": "a b c d e f g h i j", "context": ctx}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    c2.send("transcript", json!({"text": "me too"})).await;
    let ev = c2.recv().await;
    assert_eq!(ev.kind, "not-handled");
    assert!(
        data(&ev)["text"].as_str().unwrap().contains("busy"),
        "{:?}",
        ev
    );
    assert_eq!(c.recv().await.kind, "handled");

    // A prompt too long for the context: the oldest turns are dropped and it is retried.
    fake.push(Script::Fail(AssistError::PromptTooLong {
        prompt: 300,
        n_ctx: 256,
    }));
    c.send("transcript", json!({"text": "long", "context": ctx}))
        .await;
    let ev = c.recv().await;
    assert_eq!(data(&ev)["text"], "echo: long");
    let seen = fake.seen();
    let last = seen.last().unwrap().messages();
    // The history (one exchange) was forgotten on the retry.
    assert_eq!(last.len(), 1, "{last:?}");
}

#[tokio::test]
async fn streaming_when_enabled() {
    let fake = FakeAssistant::new("m");
    fake.push(Script::Answer {
        thinking: "hidden".into(),
        content: "\nOne two three".into(),
    });
    let config = WyomingConfig {
        stream: true,
        ..WyomingConfig::default()
    };
    let (addr, _worker) = start(fake, config, 2).await;
    let mut c = Client::connect(addr).await;
    c.send("describe", json!({})).await;
    assert_eq!(
        data(&c.recv().await)["handle"][0]["supports_handled_streaming"],
        true
    );
    let ctx = json!({"conversation_id": "s"});
    c.send("transcript", json!({"text": "count", "context": ctx}))
        .await;
    let start = c.recv().await;
    assert_eq!(
        (start.kind.as_str(), data(&start)),
        ("handled-start", json!({"context": ctx}))
    );
    let mut text = String::new();
    loop {
        let ev = c.recv().await;
        match ev.kind.as_str() {
            "handled-chunk" => text.push_str(ev.str_field("text").unwrap()),
            "handled-stop" => break,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(text, "One two three");
}

#[tokio::test]
async fn closing_the_connection_cancels_the_answer() {
    let mut fake = FakeAssistant::new("m");
    fake.piece_delay = Duration::from_millis(20);
    let (addr, worker) = start(fake, WyomingConfig::default(), 2).await;
    let h = worker.handle();
    let mut c = Client::connect(addr).await;
    let long: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
    c.send("transcript", json!({"text": long.join(" ")})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(c);
    // The worker is free again well before 200 pieces × 20 ms.
    let t = std::time::Instant::now();
    loop {
        if let Ok(mut job) = h.submit(pistil_iot::Ask::text("after")) {
            while job.next().await.is_some() {}
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn bad_bytes_get_an_error_event_and_the_server_lives_on() {
    let (addr, _worker) = start(FakeAssistant::new("m"), WyomingConfig::default(), 2).await;
    let mut c = Client::connect(addr).await;
    c.wr.write_all(b"this is not json\n").await.unwrap();
    let ev = c.recv().await;
    assert_eq!(ev.kind, "error");
    assert_eq!(ev.data.get("code"), Some(&json!("bad-event")));
    // Unknown events are ignored; audio payloads are read and skipped.
    let mut c = Client::connect(addr).await;
    let mut chunk = python_bytes(
        "audio-chunk",
        json!({"rate": 16000, "width": 2, "channels": 1}),
    );
    // Insert the payload length into the header.
    let nl = chunk.iter().position(|&b| b == b'\n').unwrap();
    let header = String::from_utf8(chunk[..nl].to_vec())
        .unwrap()
        .replace('}', ", \"payload_length\": 4}");
    let rest = chunk.split_off(nl + 1);
    let mut bytes = header.into_bytes();
    bytes.push(b'\n');
    bytes.extend(rest);
    bytes.extend([1, 2, 3, 4]);
    c.wr.write_all(&bytes).await.unwrap();
    c.send("transcript", json!({"text": "still here"})).await;
    assert_eq!(
        c.recv().await.data.get("text"),
        Some(&json!("echo: still here"))
    );
}
