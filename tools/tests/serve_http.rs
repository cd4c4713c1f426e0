//! `pistil serve` end to end: the built binary on a free loopback port, real
//! models (tiny random fixtures, and the cached gemma3:270m when present),
//! talked to over HTTP. Skipped under qemu (`PISTIL_UNDER_QEMU=1`).

mod pistil_bin;
mod serve_support;

use serde_json::{json, Value};
use serve_support::{fixture, gemma, read_some_then_drop, start, under_qemu};

fn tiny(name: &str) -> String {
    fixture(&format!("models/{name}.gguf"))
        .display()
        .to_string()
}

#[test]
fn tiny_r1_model_both_apis() {
    if under_qemu() {
        eprintln!("skipped under qemu");
        return;
    }
    let m = tiny("tiny-qwen2.q8_0");
    let s = start(&["-m", &m, "-c", "256", "-t", "2"]);
    let name = "tiny-qwen2.q8_0";

    let (st, tags) = s.get("/api/tags");
    assert_eq!(st, 200);
    let tags: Value = serde_json::from_str(&tags).unwrap();
    assert!(
        tags["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == name),
        "{tags}"
    );
    let (_, ps) = s.get("/api/ps");
    let ps: Value = serde_json::from_str(&ps).unwrap();
    assert_eq!(ps["models"][0]["name"], name);
    assert_eq!(ps["models"][0]["context_length"], 256);
    assert_eq!(ps["models"][0]["details"]["family"], "qwen2");

    // Ollama chat, streamed: the thought never leaks into `content`.
    let lines = s.lines(
        "/api/chat",
        &json!({"model": name, "messages": [{"role": "user", "content": "Why is the sky blue?"}],
                "options": {"num_predict": 24, "seed": 1}}),
    );
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true, "{last}");
    assert!(last["eval_count"].as_u64().unwrap() <= 24);
    for l in &lines {
        let c = l["message"]["content"].as_str().unwrap_or("");
        assert!(!c.contains("<think>") && !c.contains("</think>"), "{l}");
    }
    // think: false → the model is told not to think: no thought comes back.
    let lines = s.lines(
        "/api/chat",
        &json!({"model": name, "think": false, "messages": [{"role": "user", "content": "Hi"}],
                "options": {"num_predict": 8, "seed": 2}}),
    );
    assert!(
        lines.iter().all(|l| l["message"].get("thinking").is_none()),
        "{lines:?}"
    );

    // Generate, raw, not streamed.
    let (st, v) = s.post_json(
        "/api/generate",
        &json!({"model": name, "prompt": "The quick brown fox", "raw": true, "stream": false,
                "options": {"num_predict": 5, "temperature": 0}}),
    );
    assert_eq!(st, 200, "{v}");
    assert!(v["response"].is_string() && v["done"] == true);
    assert!(v["eval_count"].as_u64().unwrap() <= 5);

    // OpenAI, both ways; a follow-up reuses the cache.
    let msgs = json!([{"role": "user", "content": "Tell me about foxes."}]);
    let (st, v) = s.post_json(
        "/v1/chat/completions",
        &json!({"model": name, "messages": msgs, "max_tokens": 6, "seed": 3}),
    );
    assert_eq!(st, 200, "{v}");
    let first_prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
    let reply = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!reply.contains("</think>"));
    let longer = json!([{"role": "user", "content": "Tell me about foxes."},
                        {"role": "assistant", "content": reply},
                        {"role": "user", "content": "And wolves?"}]);
    let (_, v) = s.post_json(
        "/v1/chat/completions",
        &json!({"model": name, "messages": longer, "max_tokens": 4, "seed": 3}),
    );
    let cached = v["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        cached >= first_prompt / 2,
        "no KV reuse: {v} (first prompt {first_prompt})"
    );
    let (st, body) = s.post(
        "/v1/chat/completions",
        &json!({"model": name, "messages": msgs, "max_tokens": 4, "stream": true,
                "stream_options": {"include_usage": true}})
        .to_string(),
    );
    assert_eq!(st, 200);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    assert!(body.contains("\"usage\":{"), "{body}");

    // Errors: 4xx with the reason, and the server keeps serving.
    let long_prompt = "fox ".repeat(400);
    let (st, v) = s.post_json(
        "/api/generate",
        &json!({"model": name, "prompt": long_prompt, "stream": false}),
    );
    assert_eq!(st, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("context"), "{v}");
    let (st, v) = s.post_json("/api/generate", &json!({"model": "nope:7b", "prompt": "x"}));
    assert_eq!(st, 404, "{v}");
    let (st, _) = s.post("/api/chat", "{\"model\": ");
    assert_eq!(st, 400);

    // A client that disconnects mid-stream: then the next request works.
    read_some_then_drop(
        s.port,
        "/api/generate",
        &json!({"model": name, "prompt": "Once upon a time", "options": {"num_predict": 200}})
            .to_string(),
        200,
    );
    let (st, v) = s.post_json(
        "/api/generate",
        &json!({"model": name, "prompt": "Hello", "stream": false, "options": {"num_predict": 3}}),
    );
    assert_eq!(st, 200, "{v}");
    let log = s.log();
    assert!(
        log.contains("Cancelled"),
        "the dropped stream was not cancelled:\n{log}"
    );
    assert!(log.contains("POST /api/generate 200"), "{log}");
}

/// Structured output from random-weight models (pure noise: the worst case)
/// always parses and matches the schema.
#[test]
fn structured_output_from_noise_models() {
    if under_qemu() {
        eprintln!("skipped under qemu");
        return;
    }
    let schema = json!({
        "type": "object",
        "properties": {
            "device": {"type": "string", "maxLength": 16},
            "level": {"type": "integer", "minimum": 0, "maximum": 100},
            "on": {"type": "boolean"},
            "mode": {"enum": ["auto", "manual"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}
        },
        "required": ["device", "level", "on", "mode"]
    });
    for model in ["tiny-qwen2.q8_0", "tiny-gemma3.q8_0"] {
        let s = start(&["-m", &tiny(model), "-c", "256", "-t", "2"]);
        for seed in 0..12u64 {
            let n = [48, 64, 160][(seed % 3) as usize];
            let (st, v) = s.post_json(
                "/api/chat",
                &json!({"model": model, "stream": false, "format": schema,
                        "messages": [{"role": "user", "content": "Set the lamp."}],
                        "options": {"seed": seed, "temperature": 1.5, "top_k": 0, "top_p": 1.0,
                                    "min_p": 0.0, "num_predict": n}}),
            );
            assert_eq!(st, 200, "{model} seed {seed}: {v}");
            let text = v["message"]["content"].as_str().unwrap();
            let out: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("{model} seed {seed} n {n}: {e}: {text:?}"));
            assert!(out["device"].as_str().unwrap().chars().count() <= 16);
            let level = out["level"].as_i64().unwrap();
            assert!((0..=100).contains(&level), "{text}");
            assert!(out["on"].is_boolean());
            assert!(["auto", "manual"].contains(&out["mode"].as_str().unwrap()));
            if let Some(tags) = out.get("tags") {
                assert!(tags.as_array().unwrap().len() <= 3);
            }
            assert!(v["eval_count"].as_u64().unwrap() <= n, "{v}");
        }
        // JSON mode and OpenAI's response_format.
        for seed in 0..6u64 {
            let (_, v) = s.post_json(
                "/api/generate",
                &json!({"model": model, "prompt": "JSON please", "format": "json", "stream": false,
                        "options": {"seed": seed, "temperature": 1.2, "num_predict": 40}}),
            );
            let out: Value = serde_json::from_str(v["response"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{model} json mode seed {seed}: {e}: {v}"));
            assert!(out.is_object());
            let (_, v) = s.post_json(
                "/v1/chat/completions",
                &json!({"model": model, "seed": seed, "max_tokens": 40, "temperature": 1.5,
                        "messages": [{"role": "user", "content": "x"}],
                        "response_format": {"type": "json_schema", "json_schema": {"name": "r",
                            "schema": {"type": "object", "properties": {"ok": {"type": "boolean"},
                                       "n": {"type": "number", "minimum": -1, "maximum": 1}},
                                       "required": ["ok", "n"]}}}}),
            );
            let text = v["choices"][0]["message"]["content"].as_str().unwrap();
            let out: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {v}"));
            assert!(out["ok"].is_boolean());
            assert!((-1.0..=1.0).contains(&out["n"].as_f64().unwrap()), "{text}");
        }
    }
}

/// A few requests against the real gemma3:270m, if it is in the model cache.
#[test]
fn gemma3_270m_as_a_user_would() {
    if under_qemu() {
        eprintln!("skipped under qemu");
        return;
    }
    let Some(path) = gemma() else {
        eprintln!("skipped: gemma3:270m is not in the model cache (pistil pull gemma3:270m)");
        return;
    };
    let s = start(&["-m", "gemma3:270m", "-c", "1024"]);
    let _ = path;
    let (st, v) = s.post_json(
        "/api/generate",
        &json!({"model": "gemma3:270m", "prompt": "Why is the sky blue?", "stream": false,
                "options": {"num_predict": 16, "temperature": 0}}),
    );
    assert_eq!(st, 200, "{v}");
    assert!(!v["response"].as_str().unwrap().is_empty());
    assert!(v["eval_count"].as_u64().unwrap() <= 16);
    assert!(v["prompt_eval_count"].as_u64().unwrap() > 5);
    let (st, body) = s.post(
        "/v1/chat/completions",
        &json!({"model": "gemma3:270m", "stream": true, "max_tokens": 8,
                "messages": [{"role": "system", "content": "You are a helpful assistant."},
                             {"role": "user", "content": "Hello!"}]})
        .to_string(),
    );
    assert_eq!(st, 200);
    assert!(body.trim_end().ends_with("data: [DONE]"));
    let (st, v) = s.post_json(
        "/api/chat",
        &json!({"model": "gemma3:270m", "stream": false,
                "format": {"type": "object", "properties": {"name": {"type": "string"},
                           "age": {"type": "integer", "minimum": 0, "maximum": 150}},
                           "required": ["name", "age"]},
                "messages": [{"role": "user", "content": "Tom is 31 years old. Reply in JSON with his name and age."}],
                "options": {"temperature": 0, "num_predict": 64}}),
    );
    assert_eq!(st, 200, "{v}");
    let out: Value = serde_json::from_str(v["message"]["content"].as_str().unwrap()).unwrap();
    assert!(out["name"].is_string() && out["age"].is_u64(), "{out}");
}

/// `POST /api/pull` as Ollama clients use it: a model already in the cache
/// streams Ollama's status lines and ends with `success` (no download: the
/// cache holds a file of the catalog size); `stream: false` answers one
/// object; an unknown name is a 404 naming the catalog; bad JSON a 400.
#[test]
fn api_pull_statuses() {
    if under_qemu() {
        eprintln!("skipped under qemu");
        return;
    }
    let models = std::env::temp_dir().join(format!("pistil-serve-pull-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&models);
    std::fs::create_dir_all(&models).unwrap();
    // gemma3:270m's catalog size, sparse: pull finds it up to date.
    std::fs::File::create(models.join("gemma3-270m.gguf"))
        .unwrap()
        .set_len(253_113_024)
        .unwrap();
    let m = tiny("tiny-qwen2.q8_0");
    let s = serve_support::start_env(
        &["-m", &m, "-c", "256", "-t", "1"],
        &[("PISTIL_MODELS", models.to_str().unwrap())],
    );

    let lines = s.lines("/api/pull", &json!({"model": "gemma3:270m"}));
    let statuses: Vec<&str> = lines.iter().filter_map(|v| v["status"].as_str()).collect();
    assert_eq!(statuses.first(), Some(&"pulling manifest"), "{lines:?}");
    assert_eq!(statuses.last(), Some(&"success"), "{lines:?}");
    assert!(lines.iter().all(|v| v.get("error").is_none()), "{lines:?}");

    let (st, v) = s.post_json(
        "/api/pull",
        &json!({"name": "gemma3:270m", "stream": false}),
    );
    assert_eq!((st, &v["status"]), (200, &json!("success")), "{v}");

    let (st, v) = s.post_json("/api/pull", &json!({"model": "llama9:1t"}));
    assert_eq!(st, 404, "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("llama9:1t") && err.contains("deepseek-r1:1.5b"),
        "{err}"
    );

    let (st, body) = s.post("/api/pull", "{\"model\": ");
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("error"), "{body}");
    drop(s);
    let _ = std::fs::remove_dir_all(&models);
}
