//! Generating a token allocates nothing: a counting allocator (counting only
//! on the generating thread, so the test harness does not interfere) sees the
//! same number of allocations for a 72-token generation as for an 8-token
//! one of the same request — the extra 64 tokens (sampling, detokenizing,
//! thought splitting, stop-string matching, events) cost zero allocations.
//! One compute thread: the model's own test covers its pool.

use pistil_runtime::engine::{
    Engine, EngineError, EngineOptions, Event, KvType, LoadMode, LoadedModel, LogitsConstraint,
    Message, Prompt, Request, SamplingParams, ThinkMode,
};
use pistil_tests::fixture;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ops::ControlFlow;
use std::sync::Arc;

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    let _ = ON.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; only counts
// (in const-initialised thread-locals, which never allocate).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Forbids end-of-generation tokens so every run reaches `max_tokens`.
struct NoEog(Vec<u32>);

impl LogitsConstraint for NoEog {
    fn apply(&mut self, logits: &mut [f32]) -> Result<(), EngineError> {
        for &t in &self.0 {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }
    fn accept(&mut self, _: u32) -> Result<(), EngineError> {
        Ok(())
    }
    fn is_finished(&self) -> bool {
        false
    }
}

/// Allocations made by one generation of `n` tokens (fresh cache each time).
fn allocs(
    e: &mut Engine,
    prompt: &Prompt,
    n: usize,
    sampling: &SamplingParams,
    stop: &[String],
) -> (usize, usize) {
    let eog = e.model().tokenizer.eog_tokens().to_vec();
    let mut req = Request::new(prompt.clone());
    req.sampling = sampling.clone();
    req.max_tokens = Some(n);
    req.stop = stop.to_vec();
    req.think = ThinkMode::Default;
    req.constraint = Some(Box::new(NoEog(eog)));
    e.clear();
    let mut bytes = 0usize;
    COUNT.with(|c| c.set(0));
    ON.with(|o| o.set(true));
    let stats = e.generate(&mut req, &mut |ev| {
        match ev {
            Event::Content(t) | Event::Thinking(t) => bytes += t.len(),
        }
        ControlFlow::Continue(())
    });
    ON.with(|o| o.set(false));
    let stats = stats.unwrap();
    assert_eq!(stats.gen_tokens, n);
    (COUNT.with(|c| c.get()), bytes)
}

#[test]
fn decoding_tokens_allocates_nothing() {
    for (file, kv) in [
        ("tiny-qwen2.q8_0.gguf", KvType::F16),
        ("tiny-gemma3.q4_k_m.gguf", KvType::Q8_0),
        ("tiny-llama.q4_0.gguf", KvType::F32),
    ] {
        let opts = EngineOptions {
            n_threads: 1,
            n_ctx: 160,
            n_batch: 64,
            kv_type: kv,
            load_mode: LoadMode::Mmap,
            spin: false,
            prompt_gemm: true,
        };
        let model =
            Arc::new(LoadedModel::load(&fixture(&format!("models/{file}")), &opts).unwrap());
        let mut e = Engine::new(model, &opts).unwrap();
        let prompts = [
            Prompt::Text {
                text: "The quick brown fox".into(),
                raw: true,
            },
            Prompt::Chat(vec![Message::user("The quick brown fox")]),
        ];
        for prompt in &prompts {
            for (sampling, stop) in [
                (SamplingParams::greedy(), vec![]),
                (
                    SamplingParams {
                        seed: Some(5),
                        repeat_penalty: 1.1,
                        ..SamplingParams::default()
                    },
                    vec!["\n\nUser:".to_string(), "zzz".to_string()],
                ),
            ] {
                // Warm the buffers once, then compare 8 and 72 tokens.
                allocs(&mut e, prompt, 72, &sampling, &stop);
                let (short, _) = allocs(&mut e, prompt, 8, &sampling, &stop);
                let (long, bytes) = allocs(&mut e, prompt, 72, &sampling, &stop);
                assert_eq!(
                    long,
                    short,
                    "{file} {prompt:?}: 64 more tokens ({bytes} bytes of text) cost {} allocations",
                    long as i64 - short as i64
                );
            }
        }
    }
}
