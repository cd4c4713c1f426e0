//! Decoding a token performs no heap allocation: a counting global allocator
//! watches 64 decode steps (after the prompt and a first token) of tiny models
//! of each architecture, with one thread and with a pool of three, for every
//! KV cache type.
//!
//! A `harness = false` binary (see Cargo.toml): no test-harness thread runs
//! beside it, so every allocation counted is the model's.

use pistil_runtime::gguf::{Gguf, LoadMode};
use pistil_runtime::model::{KvType, LoadOptions, Logits, Model, StateOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/models")
        .join(name)
}

fn main() {
    decode_allocates_nothing();
    println!(
        "decode_alloc: 0 allocations in 64 decode steps (5 models × 1|3 threads × f16|f32|q8_0 KV)"
    );
}

fn decode_allocates_nothing() {
    for file in [
        "tiny-qwen2.q4_k_m.gguf",
        "tiny-llama.q4_0.gguf",
        "tiny-qwen3.q8_0.gguf",
        "tiny-gemma3.q4_k_m.gguf",
        "tiny-gemma3.f32.gguf",
    ] {
        let g = Arc::new(Gguf::open(&fixture(file), LoadMode::Mmap).unwrap());
        for n_threads in [1, 3] {
            let m = Model::load(
                Arc::clone(&g),
                &LoadOptions {
                    n_threads,
                    spin: 100,
                    ..LoadOptions::default()
                },
            )
            .unwrap();
            for kv_type in [KvType::F16, KvType::F32, KvType::Q8_0] {
                let mut st = m
                    .new_state(&StateOptions {
                        n_ctx: 128,
                        n_batch: 16,
                        kv_type,
                        logits_rows: 1,
                    })
                    .unwrap();
                let prompt: Vec<u32> = (1..21).collect();
                let mut next = argmax(m.forward(&mut st, &prompt, Logits::Last).unwrap());
                next = argmax(m.forward(&mut st, &[next], Logits::Last).unwrap());

                ALLOCS.store(0, Ordering::SeqCst);
                COUNTING.store(true, Ordering::SeqCst);
                for _ in 0..64 {
                    let logits = m.forward(&mut st, &[next], Logits::Last).unwrap();
                    next = argmax(logits);
                }
                COUNTING.store(false, Ordering::SeqCst);
                let n = ALLOCS.load(Ordering::SeqCst);
                assert_eq!(
                    n, 0,
                    "{file}, {n_threads} threads, KV {kv_type}: {n} allocations in 64 decode steps"
                );
                assert_eq!(st.n_past(), 20 + 1 + 64);
            }
        }
    }
}

fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}
