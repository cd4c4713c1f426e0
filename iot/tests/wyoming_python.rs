//! The Wyoming handle service against the `wyoming` Python package's own
//! `AsyncTcpClient` (what Home Assistant's conversation agent uses):
//! tests/python/wyoming/handle_client.py. Needs `python3` with
//! `pip install -r tests/python/requirements.txt`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use pistil_iot::engine::EngineAssistant;
use pistil_iot::testing::{FakeAssistant, Script};
use pistil_iot::worker::Worker;
use pistil_iot::wyoming::{WyomingConfig, WyomingServer};
use pistil_iot::{Assistant, Options, Think};
use pistil_runtime::engine::{
    Engine, EngineOptions, KvType, LoadMode, LoadedModel, SamplingParams,
};
use serde_json::{json, Value};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python/wyoming/handle_client.py")
}

/// Serves `assistant` on a free port and runs the Python client against it.
fn run_python_client<A: Assistant + 'static>(assistant: A, config: WyomingConfig) -> Value {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let worker = Worker::spawn(assistant, 4).unwrap();
    let server = WyomingServer::new(config, worker.handle());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(server.serve(listener));
    let out = Command::new("python3")
        .arg(script())
        .arg(port.to_string())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the Python wyoming client failed (is the `wyoming` package installed? \
         pip install -r tests/python/requirements.txt):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn python_client_with_a_scripted_model() {
    let fake = FakeAssistant::new("deepseek-r1:1.5b");
    fake.push(Script::Answer {
        thinking: "2+2 is 4.".into(),
        content: "\n\nFour.".into(),
    });
    let seen = fake.seen.clone();
    let config = WyomingConfig {
        languages: vec!["en".into()],
        ..WyomingConfig::default()
    };
    let v = run_python_client(fake, config);
    let info = &v["info"];
    assert_eq!(info["name"], "pistil");
    assert_eq!(info["installed"], true);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["supports_handled_streaming"], false);
    assert_eq!(
        info["models"],
        json!([{"name": "deepseek-r1:1.5b", "installed": true, "languages": ["en"]}])
    );
    assert_eq!(v["pong"], "hi");
    let a = &v["answers"];
    let ctx_a = json!({"conversation_id": "conv-A", "device_id": "kitchen"});
    assert_eq!(
        a[0],
        json!({"type": "handled", "text": "Four.", "context": ctx_a})
    );
    assert_eq!(
        a[1],
        json!({"type": "handled", "text": "echo: And times three?", "context": ctx_a})
    );
    assert_eq!(a[2]["text"], "echo: Héllo from B");
    assert_eq!(a[2]["context"], json!({"conversation_id": "conv-B"}));
    assert_eq!(a[3]["type"], "not-handled");
    // The second turn of conversation A carried the first exchange; B did not.
    let seen = seen.lock().unwrap();
    assert_eq!(seen[1].messages().len(), 3);
    assert_eq!(seen[2].messages().len(), 1);
}

#[test]
fn python_client_with_the_tiny_engine() {
    let opts = EngineOptions {
        n_threads: 2,
        n_ctx: 256,
        n_batch: 256,
        kv_type: KvType::F32,
        load_mode: LoadMode::Mmap,
        spin: false,
        prompt_gemm: true,
    };
    let path = pistil_tests::fixture("models/tiny-qwen2.q8_0.gguf");
    let lm = Arc::new(LoadedModel::load(&path, &opts).unwrap());
    let engine = Engine::new(lm, &opts).unwrap();
    let config = WyomingConfig {
        think: Think::Off,
        options: Options {
            num_predict: Some(16),
            seed: Some(3),
            ..Options::default()
        },
        ..WyomingConfig::default()
    };
    let v = run_python_client(
        EngineAssistant::new(engine, SamplingParams::default()),
        config,
    );
    let a = &v["answers"];
    for i in 0..3 {
        assert_eq!(a[i]["type"], "handled", "{}", a[i]);
        assert!(a[i]["text"].is_string());
    }
    assert_eq!(a[1]["context"]["conversation_id"], "conv-A");
}
