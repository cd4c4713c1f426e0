//! The generation engine on the tiny fixture models (tests/fixtures/models,
//! made with llama.cpp — see its README): greedy continuations equal
//! llama.cpp's, KV prefix reuse gives the same tokens as a fresh context,
//! context limits, truncation, stop strings, cancellation, think modes and
//! logits constraints.

use pistil_runtime::engine::{
    Conversation, DoneReason, Engine, EngineError, EngineOptions, Event, KvType, LoadMode,
    LoadedModel, LogitsConstraint, Message, Prompt, Request, SamplingParams, Stats, ThinkMode,
};
use pistil_runtime::tokenizer::DecodeOptions;
use pistil_tests::fixture;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn opts(n_ctx: usize, kv: KvType) -> EngineOptions {
    EngineOptions {
        n_threads: 2,
        n_ctx,
        n_batch: 512,
        kv_type: kv,
        load_mode: LoadMode::Mmap,
        spin: false,
        prompt_gemm: true,
    }
}

fn load(name: &str) -> Arc<LoadedModel> {
    let path = fixture(&format!("models/{name}.gguf"));
    Arc::new(LoadedModel::load(&path, &opts(256, KvType::F32)).unwrap())
}

fn engine(name: &str, n_ctx: usize) -> Engine {
    Engine::new(load(name), &opts(n_ctx, KvType::F32)).unwrap()
}

/// Runs `req`, returning (content, thinking, stats).
fn run(e: &mut Engine, req: &mut Request) -> (String, String, Stats) {
    let (mut content, mut thinking) = (String::new(), String::new());
    let stats = e
        .generate(req, &mut |ev| {
            match ev {
                Event::Content(t) => content.push_str(t),
                Event::Thinking(t) => thinking.push_str(t),
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    (content, thinking, stats)
}

fn greedy(prompt: Prompt, n: usize) -> Request {
    let mut r = Request::new(prompt);
    r.sampling = SamplingParams::greedy();
    r.max_tokens = Some(n);
    r
}

fn reference(name: &str) -> (Vec<u32>, Vec<u32>) {
    let text = std::fs::read_to_string(fixture(&format!("models/{name}.ref.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |x: &serde_json::Value| -> Vec<u32> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect()
    };
    (ids(&v["prompt_ids"]), ids(&v["greedy"]["ids"]))
}

#[test]
fn greedy_continuation_equals_llama_cpp() {
    for name in [
        "tiny-qwen2.f32",
        "tiny-llama.f32",
        "tiny-qwen3.f32",
        "tiny-gemma3.f32",
        "tiny-qwen2.q8_0",
        "tiny-gemma3.q4_0",
    ] {
        let (prompt, want) = reference(name);
        let mut e = engine(name, 256);
        let mut req = greedy(Prompt::Tokens(prompt.clone()), want.len());
        let (_, _, stats) = run(&mut e, &mut req);
        assert_eq!(e.generated(), &want[..], "{name}");
        assert_eq!(stats.done_reason, DoneReason::Length, "{name}");
        assert_eq!(stats.gen_tokens, want.len());
        assert_eq!(stats.prompt_tokens, prompt.len());
        // Again on the same engine: the whole prompt is cached (but the last token).
        let (_, _, stats) = run(&mut e, &mut req);
        assert_eq!(e.generated(), &want[..], "{name}, second run");
        assert_eq!(stats.cached_tokens, prompt.len() - 1, "{name}");
    }
}

/// A second chat turn reuses the first turn's KV cache. Through `gemv`
/// (`prompt_gemm: false`) the arithmetic of a continued conversation is that
/// of the same text evaluated afresh, so the tokens are the same; through the
/// prompt GEMMs (the default) the fresh evaluation multiplies in batches what
/// the continued one decoded token by token, which differs in the last bits
/// (as llama.cpp's prompt cache does), so only the reuse itself is checked.
#[test]
fn kv_reuse_across_chat_turns_matches_a_fresh_context() {
    for prompt_gemm in [false, true] {
        let o = EngineOptions {
            prompt_gemm,
            ..opts(256, KvType::F16)
        };
        let path = fixture("models/tiny-qwen2.q8_0.gguf");
        let model = Arc::new(LoadedModel::load(&path, &o).unwrap());
        let mut e = Engine::new(model.clone(), &o).unwrap();
        let mut conv = Conversation::new();
        conv.push_user("The quick brown fox");
        let mut req = greedy(conv.prompt(), 12);
        let (answer, thinking, s1) = run(&mut e, &mut req);
        assert_eq!(s1.cached_tokens, 0);
        conv.push_assistant(answer, Some(thinking).filter(|t| !t.is_empty()));
        conv.push_user("jumps over the lazy dog");
        let mut req = greedy(conv.prompt(), 12);
        let (_, _, s2) = run(&mut e, &mut req);
        let reused = e.generated().to_vec();
        assert!(
            s2.cached_tokens >= s1.prompt_tokens - 1,
            "turn 2 reuses turn 1's prompt: {} cached of {}",
            s2.cached_tokens,
            s2.prompt_tokens
        );
        assert!(s2.prompt_evaluated() < s2.prompt_tokens);
        let mut fresh = Engine::new(model, &o).unwrap();
        let (_, _, s3) = run(&mut fresh, &mut req);
        assert_eq!(s3.cached_tokens, 0);
        if !prompt_gemm {
            // A fresh engine over the same conversation generates the same tokens.
            assert_eq!(fresh.generated(), &reused[..]);
        }
        // clear() forgets the cache.
        e.clear();
        let (_, _, s4) = run(&mut e, &mut req);
        assert_eq!(s4.cached_tokens, 0);
    }
}

#[test]
fn context_limits() {
    let (prompt, _) = reference("tiny-qwen2.f32");
    let mut e = engine("tiny-qwen2.f32", 16);
    // 24 prompt tokens, context 16: a clear error naming both numbers.
    let mut req = greedy(Prompt::Tokens(prompt.clone()), 4);
    let err = e
        .generate(&mut req, &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::PromptTooLong {
                prompt: 24,
                n_ctx: 16
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("24") && msg.contains("16"), "{msg}");
    // With truncate: BOS kept, the end kept, room left for the 4 tokens.
    req.truncate = true;
    let (_, _, s) = run(&mut e, &mut req);
    assert_eq!(s.prompt_tokens, 12);
    assert_eq!(s.truncated_tokens, 12);
    assert_eq!(s.gen_tokens, 4);
    assert_eq!(s.done_reason, DoneReason::Length);
    // Generation runs into the end of the context: stops cleanly.
    let mut e = engine("tiny-qwen2.f32", 30);
    let mut req = greedy(Prompt::Tokens(prompt), 1000);
    let (_, _, s) = run(&mut e, &mut req);
    assert_eq!(s.done_reason, DoneReason::Context);
    assert_eq!(
        s.gen_tokens, 7,
        "30 positions - 24 prompt + the last sampled token"
    );
    assert_eq!(e.n_past(), 30);
}

#[test]
fn stop_strings_cut_the_text() {
    let mut e = engine("tiny-gemma3.f32", 256);
    let (prompt, _) = reference("tiny-gemma3.f32");
    let mut req = greedy(Prompt::Tokens(prompt.clone()), 16);
    let (full, _, _) = run(&mut e, &mut req);
    // llama.cpp's greedy text is "Titititcccccc likeememememem".
    assert!(full.starts_with("Titititcccccc"), "{full:?}");
    let mut req = greedy(Prompt::Tokens(prompt.clone()), 16);
    req.stop = vec!["ccc".into(), "zz".into()];
    let mut pieces = Vec::new();
    let s = e
        .generate(&mut req, &mut |ev| {
            if let Event::Content(t) = ev {
                pieces.push(t.to_string());
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(pieces.concat(), "Tititit");
    assert_eq!(s.done_reason, DoneReason::Stop);
    // A stop string that never completes: everything comes out at the end.
    let mut req = greedy(Prompt::Tokens(prompt), 16);
    req.stop = vec!["memx".into()];
    let (text, _, s) = run(&mut e, &mut req);
    assert_eq!(text, full);
    assert_eq!(s.done_reason, DoneReason::Length);
}

#[test]
fn cancel_within_one_token() {
    let mut e = engine("tiny-llama.f32", 256);
    let (prompt, _) = reference("tiny-llama.f32");
    let mut req = greedy(Prompt::Tokens(prompt.clone()), 100);
    let mut events = 0;
    let s = e
        .generate(&mut req, &mut |_| {
            events += 1;
            if events == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(s.done_reason, DoneReason::Cancelled);
    assert!(s.gen_tokens <= 4, "{}", s.gen_tokens);
    // The interrupt flag (Ctrl-C) works too, before the prompt is processed.
    let flag = Arc::new(AtomicBool::new(true));
    e.set_interrupt(Some(flag.clone()));
    let (_, _, s) = run(&mut e, &mut req);
    assert_eq!((s.done_reason, s.gen_tokens), (DoneReason::Cancelled, 0));
    flag.store(false, Ordering::Relaxed);
    let (_, _, s) = run(&mut e, &mut req);
    assert_eq!(s.done_reason, DoneReason::Length);
}

/// Allows only tokens in `allowed`; finished after `n` tokens.
struct OnlyThese {
    allowed: Vec<u32>,
    seen: Vec<u32>,
    n: usize,
}

impl LogitsConstraint for OnlyThese {
    fn apply(&mut self, logits: &mut [f32]) -> Result<(), EngineError> {
        for (i, l) in logits.iter_mut().enumerate() {
            if !self.allowed.contains(&(i as u32)) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }
    fn accept(&mut self, token: u32) -> Result<(), EngineError> {
        self.seen.push(token);
        Ok(())
    }
    fn is_finished(&self) -> bool {
        self.seen.len() >= self.n
    }
}

#[test]
fn constraint_masks_and_finishes() {
    let mut e = engine("tiny-qwen3.q8_0", 256);
    let (prompt, _) = reference("tiny-qwen3.q8_0");
    for temp in [0.0, 1.5] {
        let mut req = Request::new(Prompt::Tokens(prompt.clone()));
        req.sampling = SamplingParams {
            temperature: temp,
            seed: Some(3),
            ..SamplingParams::default()
        };
        req.max_tokens = Some(50);
        req.constraint = Some(Box::new(OnlyThese {
            allowed: vec![97, 98, 99, 300],
            seen: Vec::new(),
            n: 5,
        }));
        let (_, _, s) = run(&mut e, &mut req);
        assert_eq!(s.done_reason, DoneReason::Stop);
        assert_eq!(s.gen_tokens, 5);
        assert!(e.generated().iter().all(|t| [97, 98, 99, 300].contains(t)));
    }
    // A constraint that allows nothing: an error, not a panic or a loop.
    let mut req = greedy(Prompt::Tokens(prompt), 5);
    req.constraint = Some(Box::new(OnlyThese {
        allowed: vec![],
        seen: Vec::new(),
        n: 5,
    }));
    let err = e
        .generate(&mut req, &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert!(err.to_string().contains("no token can be sampled"), "{err}");
}

#[test]
fn think_modes_on_an_r1_vocabulary() {
    // tiny-qwen2 carries DeepSeek R1's vocabulary specials and chat template.
    let model = load("tiny-qwen2.q8_0");
    assert!(model.can_think());
    assert!(model.has_own_template());
    let mut e = Engine::new(model.clone(), &opts(256, KvType::F16)).unwrap();
    let msgs = vec![Message::user("The quick brown fox")];
    let tok = &model.tokenizer;
    let think_close = tok.token_id("</think>").unwrap();
    let text_of = |ids: &[u32]| {
        let o = DecodeOptions {
            remove_special: false,
            unparse_special: true,
        };
        tok.decode(ids, o).unwrap()
    };

    // Off: the prompt ends with an empty thought; nothing is thinking.
    let mut req = greedy(Prompt::Chat(msgs.clone()), 8);
    req.think = ThinkMode::Off;
    let (_, thinking, s) = run(&mut e, &mut req);
    assert!(thinking.is_empty(), "{thinking:?}");
    let prompt = text_of(&e.cached_tokens()[..s.prompt_tokens]);
    assert!(prompt.ends_with("<think>\n\n</think>\n\n"), "{prompt:?}");
    assert_eq!(prompt.matches("<think>").count(), 1, "{prompt:?}");

    // Default: the R1 template opens the thought; the reply starts thinking.
    let rendered = model
        .template
        .render_prompt(&[pistil_runtime::chat::ChatMessage::user(
            "The quick brown fox",
        )])
        .unwrap();
    let opens = rendered.ends_with("<think>\n");

    // Budget(3): `</think>` is forced after 3 thinking tokens (unless the
    // model closed or ended the thought itself before).
    let mut req = greedy(Prompt::Chat(msgs), 20);
    req.think = ThinkMode::Budget(3);
    let (_, _, s) = run(&mut e, &mut req);
    let gen = e.generated().to_vec();
    let forced = tok.encode("\n</think>\n\n", false, true).unwrap();
    if opens && !gen[..gen.len().min(3)].contains(&think_close) && s.gen_tokens > 3 {
        assert_eq!(&gen[3..3 + forced.len()], &forced[..], "{gen:?}");
    }
}

#[test]
fn sampling_is_seeded() {
    let (prompt, _) = reference("tiny-llama.q8_0");
    let mut e = engine("tiny-llama.q8_0", 256);
    let mut go = |seed| {
        let mut req = Request::new(Prompt::Tokens(prompt.clone()));
        req.sampling = SamplingParams {
            temperature: 1.0,
            seed: Some(seed),
            ..SamplingParams::default()
        };
        req.max_tokens = Some(24);
        let (_, _, s) = run(&mut e, &mut req);
        assert_eq!(s.seed, seed as u32);
        e.generated().to_vec()
    };
    let a = go(11);
    assert_eq!(a, go(11));
    assert_ne!(a, go(12));
}
