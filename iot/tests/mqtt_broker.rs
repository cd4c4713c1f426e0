//! The MQTT bridge against a real Mosquitto broker that the test starts on a
//! free loopback port (Debian package `mosquitto`; the binary is looked up
//! as `$MOSQUITTO`, /usr/sbin/mosquitto, then on `PATH`). Covers plain and
//! JSON requests, reply_to, error replies, the thinking topic, a full queue,
//! a broker restart in the middle (reconnection with backoff), refused
//! logins, and structured output through the real engine.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pistil_iot::engine::EngineAssistant;
use pistil_iot::mqtt::{run_bridge, MqttConfig, MqttError, ThinkingTopic};
use pistil_iot::testing::{FakeAssistant, Script};
use pistil_iot::worker::Worker;
use pistil_iot::Assistant;
use pistil_runtime::engine::{
    Engine, EngineOptions, KvType, LoadMode, LoadedModel, SamplingParams,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

/// A Mosquitto process on 127.0.0.1:port, killed on drop.
struct Broker {
    child: Option<Child>,
    port: u16,
    conf: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mosquitto_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MOSQUITTO") {
        return PathBuf::from(p);
    }
    let sbin = PathBuf::from("/usr/sbin/mosquitto");
    if sbin.exists() {
        return sbin;
    }
    PathBuf::from("mosquitto")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    /// Starts a broker; `users`: (name, password) pairs (then anonymous is refused).
    fn start(users: &[(&str, &str)]) -> Broker {
        let dir = std::env::temp_dir().join(format!(
            "pistil-mqtt-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut conf = format!("listener {port} 127.0.0.1\npersistence false\n");
        if users.is_empty() {
            conf.push_str("allow_anonymous true\n");
        } else {
            let pw = dir.join("passwd");
            std::fs::write(&pw, "").unwrap();
            for (u, p) in users {
                let st = Command::new("mosquitto_passwd")
                    .args(["-b", pw.to_str().unwrap(), u, p])
                    .status()
                    .expect("mosquitto_passwd (package mosquitto)");
                assert!(st.success());
            }
            conf.push_str(&format!(
                "allow_anonymous false\npassword_file {}\n",
                pw.display()
            ));
        }
        let conf_path = dir.join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut b = Broker {
            child: None,
            port,
            conf: conf_path,
            _dir: TempDir(dir),
        };
        b.launch();
        b
    }

    fn launch(&mut self) {
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start mosquitto ({e}); install the Debian package `mosquitto` or set $MOSQUITTO")
            });
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A test client: every message on its subscriptions arrives on `rx`; it
/// reconnects (and resubscribes) by itself.
struct TestClient {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

impl TestClient {
    fn new(port: u16, id: &str, subs: &[&str]) -> TestClient {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut el) = AsyncClient::new(o, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let subs: Vec<String> = subs.iter().map(|s| s.to_string()).collect();
        let c2 = client.clone();
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for s in &subs {
                            let _ = c2.try_subscribe(s.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        TestClient { client, rx }
    }

    async fn publish(&self, topic: &str, body: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, body.into())
            .await
            .unwrap();
    }

    /// The next message on `topic` within `secs`.
    async fn expect(&mut self, topic: &str, secs: u64) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("nothing on {topic} within {secs} s"))
                .expect("client alive");
            if got.0 == topic {
                return got.1;
            }
        }
    }

    /// Publishes a JSON request with `id` every 300 ms until its reply
    /// arrives on `reply` (the bridge may not be subscribed yet).
    async fn ask_until_answered(&mut self, topic: &str, reply: &str, id: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            assert!(
                Instant::now() < deadline,
                "no reply to {id} within {secs} s"
            );
            self.publish(topic, json!({"id": id, "prompt": "ping"}).to_string())
                .await;
            let until = tokio::time::Instant::now() + Duration::from_millis(300);
            while let Ok(Some((t, body))) = tokio::time::timeout_at(until, self.rx.recv()).await {
                if t == reply {
                    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                        if v["id"] == id {
                            return v;
                        }
                    }
                }
            }
        }
    }

    /// Drops queued messages (stray replies to repeated warm-up requests).
    async fn drain(&mut self, ms: u64) {
        let until = tokio::time::Instant::now() + Duration::from_millis(ms);
        while let Ok(Some(_)) = tokio::time::timeout_at(until, self.rx.recv()).await {}
    }
}

fn start_bridge(
    cfg: MqttConfig,
    assistant: impl Assistant + 'static,
    queue: usize,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), MqttError>>,
    Worker,
) {
    let worker = Worker::spawn(assistant, queue).unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (_local_tx, local_rx) = mpsc::unbounded_channel();
    let h = worker.handle();
    let task = tokio::spawn(async move {
        let _keep = _local_tx;
        run_bridge(cfg, h, local_rx, async {
            let _ = stop_rx.await;
        })
        .await
    });
    (stop_tx, task, worker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_replies_busy_and_broker_restart() {
    let mut broker = Broker::start(&[]);
    let mut fake = FakeAssistant::new("gemma3:270m");
    fake.piece_delay = Duration::from_millis(5);
    fake.push(Script::Answer {
        thinking: "warm-up".into(),
        content: "pong".into(),
    });
    let mut cfg = MqttConfig::new("127.0.0.1", broker.port, "pt/ask");
    cfg.client_id = "pistil-bridge-test".into();
    cfg.max_backoff = Duration::from_secs(1);
    cfg.thinking_topic = Some(ThinkingTopic::BesideRequest);
    let (stop, task, _worker) = start_bridge(cfg, fake.clone(), 0);
    let mut c = TestClient::new(broker.port, "tester", &["pt/#", "custom/reply"]);

    let v = c
        .ask_until_answered("pt/ask", "pt/ask/reply", "warmup", 15)
        .await;
    assert_eq!(v["model"], "gemma3:270m");
    c.drain(400).await;

    // Plain text in, plain text out; the thought on its own topic first.
    c.publish("pt/ask", "Is 30 C hot?").await;
    assert_eq!(
        c.expect("pt/ask/thinking", 10).await,
        b"thinking about Is 30 C hot?"
    );
    assert_eq!(c.expect("pt/ask/reply", 10).await, b"echo: Is 30 C hot?");

    // JSON in (with reply_to), JSON out.
    c.publish(
        "pt/ask",
        json!({"id": "r1", "prompt": "Temperature 21 C", "reply_to": "custom/reply", "think": false, "options": {"num_predict": 2}})
            .to_string(),
    )
    .await;
    let v: Value = serde_json::from_slice(&c.expect("custom/reply", 10).await).unwrap();
    assert_eq!(v["id"], "r1");
    assert_eq!(v["response"], "echo: Temperature");
    assert_eq!(v["done_reason"], "length");
    assert_eq!(v["eval_count"], 2);
    for k in [
        "prompt_eval_count",
        "total_duration",
        "prompt_eval_duration",
        "eval_duration",
    ] {
        assert!(v[k].is_u64(), "{k}: {v}");
    }
    assert!(v.get("thinking").is_none());

    // A bad request gets an error reply carrying its id.
    c.publish("pt/ask", r#"{"id": 7, "prompt": "x", "temperature": 0}"#)
        .await;
    let v: Value = serde_json::from_slice(&c.expect("pt/ask/reply", 10).await).unwrap();
    assert_eq!(v["id"], 7);
    assert!(v["error"].as_str().unwrap().contains("temperature"), "{v}");

    // Queue 0: a request while one runs is refused at once.
    let long: Vec<String> = (0..100).map(|i| format!("w{i}")).collect();
    c.publish(
        "pt/ask",
        json!({"id": "long", "prompt": long.join(" ")}).to_string(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.publish(
        "pt/ask",
        json!({"id": "second", "prompt": "me too"}).to_string(),
    )
    .await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let body = c.expect("pt/ask/reply", 20).await;
        got.push(serde_json::from_slice::<Value>(&body).unwrap());
    }
    assert_eq!(got[0]["id"], "second");
    assert!(
        got[0]["error"].as_str().unwrap().contains("busy"),
        "{}",
        got[0]
    );
    assert_eq!(got[1]["id"], "long");
    assert_eq!(got[1]["done_reason"], "stop");

    // The broker goes away and comes back on the same port.
    broker.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    broker.launch();
    let v = c
        .ask_until_answered("pt/ask", "pt/ask/reply", "after-restart", 30)
        .await;
    assert_eq!(v["response"], "echo: ping");

    let _ = stop.send(());
    let r = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_accepted_and_refused() {
    let broker = Broker::start(&[("pi", "s3cret")]);
    // Wrong password: the bridge stops with a clear error instead of retrying forever.
    let mut cfg = MqttConfig::new("127.0.0.1", broker.port, "auth/ask");
    cfg.client_id = "bridge-bad".into();
    cfg.credentials = Some(("pi".into(), "wrong".into()));
    let (_stop, task, _w) = start_bridge(cfg, FakeAssistant::new("m"), 2);
    let r = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("refused") && e.contains(&broker.port.to_string()),
        "{e}"
    );

    let mut cfg = MqttConfig::new("127.0.0.1", broker.port, "auth/ask");
    cfg.client_id = "bridge-good".into();
    cfg.credentials = Some(("pi".into(), "s3cret".into()));
    let (stop, _task, _w) = start_bridge(cfg, FakeAssistant::new("m"), 2);
    let mut o = MqttOptions::new("tester-auth", "127.0.0.1", broker.port);
    o.set_credentials("pi", "s3cret");
    let (client, mut el) = AsyncClient::new(o, 16);
    let (tx, rx) = mpsc::unbounded_channel();
    let c2 = client.clone();
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = c2.try_subscribe("auth/#", QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    let mut c = TestClient { client, rx };
    let v = c
        .ask_until_answered("auth/ask", "auth/ask/reply", "a1", 15)
        .await;
    assert_eq!(v["response"], "echo: ping");
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_output_through_the_engine() {
    let broker = Broker::start(&[]);
    let opts = EngineOptions {
        n_threads: 2,
        n_ctx: 256,
        n_batch: 256,
        kv_type: KvType::F32,
        load_mode: LoadMode::Mmap,
        spin: false,
        prompt_gemm: true,
    };
    let lm =
        LoadedModel::load(&pistil_tests::fixture("models/tiny-qwen2.q8_0.gguf"), &opts).unwrap();
    let engine = Engine::new(Arc::new(lm), &opts).unwrap();
    let mut cfg = MqttConfig::new("127.0.0.1", broker.port, "sensors/+/ask");
    cfg.client_id = "bridge-engine".into();
    let (stop, _task, _w) = start_bridge(
        cfg,
        EngineAssistant::new(engine, SamplingParams::default()),
        4,
    );
    let mut c = TestClient::new(broker.port, "tester-engine", &["sensors/#"]);
    let _ = c
        .ask_until_answered(
            "sensors/kitchen/ask",
            "sensors/kitchen/ask/reply",
            "warm",
            20,
        )
        .await;
    c.drain(500).await;
    let req = json!({
        "id": "t1",
        "prompt": "The kitchen is 31 C. Should the fan be on?",
        "format": {
            "type": "object",
            "properties": {"fan": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 40}},
            "required": ["fan", "reason"]
        },
        "options": {"num_predict": 64, "seed": 5}
    });
    // Under qemu the warm-up request may have been repeated several times and
    // its late answers arrive first (skipped), and those repeats may still fill
    // the bridge's queue (a "busy" error for t1: asked again, up to 5 times).
    let mut v = Value::Null;
    for _ in 0..5 {
        c.publish("sensors/kitchen/ask", req.to_string()).await;
        v = loop {
            let v: Value =
                serde_json::from_slice(&c.expect("sensors/kitchen/ask/reply", 60).await).unwrap();
            if v["id"] != "warm" {
                break v;
            }
        };
        if v.get("error").is_none() {
            break;
        }
        eprintln!("t1 refused ({v}); asking again");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(v["id"], "t1");
    let parsed: Value =
        serde_json::from_str(v["response"].as_str().unwrap_or_else(|| panic!("{v}"))).unwrap();
    assert_eq!(v["json"], parsed);
    assert!(parsed["fan"].is_boolean(), "{v}");
    assert!(
        parsed["reason"].as_str().unwrap().chars().count() <= 40,
        "{v}"
    );
    let _ = stop.send(());
}
