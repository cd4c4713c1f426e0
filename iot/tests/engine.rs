//! The front ends over the real engine, on the tiny R1-template fixture model
//! (tests/fixtures/models/tiny-qwen2.q8_0.gguf: random weights, the real R1
//! chat template with `<think>`/`</think>`; see that folder's README).
//! The text is noise; what is checked is the plumbing: events, stats,
//! thinking kept apart, options reaching the sampler, structured output.

use std::sync::Arc;

use pistil_iot::engine::EngineAssistant;
use pistil_iot::{run_jsonl, Ask, Assistant, Options, Piece, Think};
use pistil_runtime::engine::{
    Engine, EngineOptions, KvType, LoadMode, LoadedModel, SamplingParams,
};
use pistil_tests::fixture;
use serde_json::Value;

fn assistant() -> EngineAssistant {
    let opts = EngineOptions {
        n_threads: 2,
        n_ctx: 256,
        n_batch: 256,
        kv_type: KvType::F32,
        load_mode: LoadMode::Mmap,
        spin: false,
        prompt_gemm: true,
    };
    let path = fixture("models/tiny-qwen2.q8_0.gguf");
    let mut lm = LoadedModel::load(&path, &opts).unwrap();
    lm.name = "tiny-qwen2".into();
    let engine = Engine::new(Arc::new(lm), &opts).unwrap();
    EngineAssistant::new(engine, SamplingParams::default())
}

fn ask_all(a: &mut EngineAssistant, ask: &Ask) -> (String, String, pistil_iot::Outcome) {
    let (mut c, mut t) = (String::new(), String::new());
    let o = a
        .generate(ask, &mut |p| {
            match p {
                Piece::Content(s) => c.push_str(&s),
                Piece::Thinking(s) => t.push_str(&s),
            }
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    (c, t, o)
}

#[test]
fn jsonl_over_the_engine() {
    let mut a = assistant();
    assert_eq!(a.model_name(), "tiny-qwen2");
    let input = concat!(
        "{\"id\":1,\"prompt\":\"The quick brown fox\",\"options\":{\"temperature\":0,\"num_predict\":12}}\n",
        "{\"id\":2,\"prompt\":\"The quick brown fox\",\"options\":{\"temperature\":0,\"num_predict\":12}}\n",
        "{\"id\":3,\"prompt\":\"x\",\"options\":{\"top_k\":-1}}\n",
        "{\"id\":4,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"},{\"role\":\"user\",\"content\":\"again\"}],\"think\":false,\"options\":{\"num_predict\":5,\"seed\":7}}\n",
    );
    let mut out = Vec::new();
    let s = run_jsonl(&mut a, input.as_bytes(), &mut out).unwrap();
    assert_eq!((s.answered, s.errors), (3, 1));
    let ev: Vec<Value> = std::str::from_utf8(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done: Vec<&Value> = ev.iter().filter(|e| e["type"] == "done").collect();
    assert_eq!(done.len(), 3);
    // Greedy twice on the same prompt: the same text, the second from the KV cache.
    let text = |id: i64| -> String {
        ev.iter()
            .filter(|e| e["id"] == id && (e["type"] == "token" || e["type"] == "thinking"))
            .map(|e| e["text"].as_str().unwrap())
            .collect()
    };
    assert_eq!(text(1), text(2));
    assert_eq!(done[0]["stats"]["gen_tokens"], 12);
    assert_eq!(done[0]["done_reason"], "length");
    assert!(
        done[1]["stats"]["cached_tokens"].as_u64().unwrap() > 0,
        "{}",
        done[1]
    );
    // A bad option is an error event naming it.
    let err = ev.iter().find(|e| e["type"] == "error").unwrap();
    assert_eq!(err["id"], 3);
    assert!(err["message"].as_str().unwrap().contains("top_k"), "{err}");
    // think:false: no thinking events.
    assert!(ev
        .iter()
        .all(|e| !(e["id"] == 4 && e["type"] == "thinking")));
    assert_eq!(done[2]["stats"]["gen_tokens"], 5);
}

#[test]
fn think_budget_and_format_gives_json() {
    let mut a = assistant();
    // A think budget reaches the engine (this fixture's template does not
    // open a thought, so the noise model rarely writes one: only the limits
    // are checked).
    let mut ask = Ask::text("Why is the sky blue?");
    ask.think = Think::Budget(4);
    ask.options = Options {
        temperature: Some(0.0),
        num_predict: Some(16),
        ..Options::default()
    };
    let (_content, _thinking, o) = ask_all(&mut a, &ask);
    assert!(o.gen_tokens <= 16);

    // Structured output: the answer parses and matches the schema, whatever the noise model prefers.
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"warm": {"type": "boolean"}, "celsius": {"type": "integer", "minimum": -50, "maximum": 60}},
        "required": ["warm", "celsius"]
    });
    let mut ask = Ask::text("Is 21 C warm?");
    ask.format = Some(pistil_iot::request::parse_format(&schema).unwrap());
    ask.options = Options {
        num_predict: Some(48),
        seed: Some(1),
        ..Options::default()
    };
    let (content, thinking, _) = ask_all(&mut a, &ask);
    assert!(
        thinking.trim().is_empty(),
        "no thought with format: {thinking:?}"
    );
    let v: Value =
        serde_json::from_str(content.trim()).unwrap_or_else(|e| panic!("{content:?}: {e}"));
    assert!(v["warm"].is_boolean(), "{v}");
    let c = v["celsius"].as_i64().unwrap();
    assert!((-50..=60).contains(&c), "{v}");
}
