//! The model API's behaviour on the tiny fixtures: chunking, KV reuse and
//! truncation (including Gemma 3's sliding-window ring buffers), streamed
//! logits, the memory plan, and clear errors for bad input and bad files.

use pistil_runtime::gguf::{Gguf, LoadMode};
use pistil_runtime::model::{Arch, KvType, LoadOptions, Logits, Model, ModelError, StateOptions};
use pistil_tests::fixture;
use std::sync::Arc;

fn load(name: &str) -> Model {
    load_with(name, true)
}

/// `prompt_gemm: false`: batches through `gemv`, bit-identical to one token at a time.
fn load_with(name: &str, prompt_gemm: bool) -> Model {
    let g = Gguf::open(&fixture(&format!("models/{name}.gguf")), LoadMode::Mmap).unwrap();
    Model::load(
        Arc::new(g),
        &LoadOptions {
            n_threads: 2,
            spin: 100,
            prompt_gemm,
            // Every batch of 2+ tokens through the GEMMs (the default
            // threshold would leave these short prompts on gemv).
            gemm_min_tokens: 2,
            ..LoadOptions::default()
        },
    )
    .unwrap()
}

fn opts(n_ctx: usize, n_batch: usize, logits_rows: usize) -> StateOptions {
    StateOptions {
        n_ctx,
        n_batch,
        kv_type: KvType::F16,
        logits_rows,
    }
}

/// A deterministic token stream over the tiny vocabulary.
fn tokens(n: usize, seed: u32) -> Vec<u32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            9 + s % 500
        })
        .collect()
}

/// A batch split into chunks gives the same logits as one batch, and as one
/// token at a time (same arithmetic, any chunking) — through `gemv`. Through
/// the prompt GEMMs, any split into multi-token chunks gives the same bits;
/// a lone token (decode) goes through `gemv`, whose f32 order differs, so there
/// its logits are only close (the quantized models' llama.cpp budget, 1.0) with
/// the same top-1.
#[test]
fn chunking_does_not_change_logits() {
    for gemm in [false, true] {
        let m = load_with("tiny-llama.q4_k_m", gemm);
        let same = |a: &[f32], b: &[f32], what: &str| {
            if gemm {
                let d = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                assert!(d <= 1.0, "GEMM, {what}: |Δ| {d}");
                assert_eq!(argmax(a), argmax(b), "GEMM, {what}: top-1");
            } else {
                assert_eq!(a, b, "gemv, {what}");
            }
        };
        let ids = tokens(40, 7);
        let mut a = m.new_state(&opts(64, 64, 40)).unwrap();
        let all = m.forward(&mut a, &ids, Logits::All).unwrap().to_vec();
        let mut b = m.new_state(&opts(64, 7, 40)).unwrap();
        assert_eq!(m.forward(&mut b, &ids, Logits::All).unwrap(), &all[..]);
        // Only the last row reaches the output matrix: one token's product.
        let mut c = m.new_state(&opts(64, 7, 1)).unwrap();
        let last = m.forward(&mut c, &ids, Logits::Last).unwrap();
        same(last, &all[39 * 512..], "last row alone");
        // Streamed logits from index 30 on, 4 rows of memory.
        let mut d = m.new_state(&opts(64, 16, 4)).unwrap();
        let mut seen = Vec::new();
        m.forward_each(&mut d, &ids, 30, &mut |i, row| {
            assert_eq!(row, &all[i * 512..(i + 1) * 512], "row {i}");
            seen.push(i);
        })
        .unwrap();
        assert_eq!(seen, (30..40).collect::<Vec<_>>());
        // Logits::None fills the cache only; then one token.
        let mut e = m.new_state(&opts(64, 16, 1)).unwrap();
        assert!(m
            .forward(&mut e, &ids[..39], Logits::None)
            .unwrap()
            .is_empty());
        same(
            m.forward(&mut e, &ids[39..], Logits::Last).unwrap(),
            &all[39 * 512..],
            "last token decoded alone",
        );
    }
}

fn argmax(x: &[f32]) -> usize {
    (0..x.len()).fold(0, |b, i| if x[i] > x[b] { i } else { b })
}

/// Gemma 3's sliding-window layers keep a ring of `window + n_batch` (padded)
/// positions; past it the ring wraps. A state whose ring wraps gives the same
/// logits as one that keeps every position, and KV reuse rolls back inside
/// the ring but not beyond it.
#[test]
fn gemma3_ring_buffer() {
    let m = load("tiny-gemma3.f32");
    let ids = tokens(600, 3);
    // n_ctx 640 > the model's 256: allowed (a warning), positions are just numbers here.
    let mut full = m.new_state(&opts(640, 600, 1)).unwrap(); // local layers keep 640
    let mut ring = m.new_state(&opts(640, 32, 1)).unwrap(); // local layers keep 256
    let plan_full = m.memory_plan(&opts(640, 600, 1)).unwrap();
    let plan_ring = m.memory_plan(&opts(640, 32, 1)).unwrap();
    assert!(
        plan_ring.kv < plan_full.kv,
        "{plan_ring:?} vs {plan_full:?}"
    );
    let a = m.forward(&mut full, &ids, Logits::Last).unwrap().to_vec();
    let b = m.forward(&mut ring, &ids, Logits::Last).unwrap().to_vec();
    assert_eq!(a, b);

    // Roll back 10 tokens (less than a batch): kept, and re-processing gives the same.
    assert_eq!(ring.truncate(590), 590);
    assert_eq!(ring.n_past(), 590);
    assert_eq!(
        m.forward(&mut ring, &ids[590..], Logits::Last).unwrap(),
        &a[..]
    );
    // Roll back past what the ring holds: the cache must start over.
    assert_eq!(ring.truncate(100), 0);
    assert_eq!(ring.n_past(), 0);
    // The full state can roll back anywhere.
    assert_eq!(full.truncate(100), 100);
}

/// Prefix reuse: only the new suffix is processed and the logits are those of
/// a fresh run; at least one token is always left to process.
#[test]
fn reuse_prefix() {
    let m = load("tiny-qwen3.q4_0");
    let turn1 = tokens(30, 11);
    let mut turn2 = turn1[..25].to_vec();
    turn2.extend(tokens(10, 12));
    let mut st = m.new_state(&opts(128, 32, 1)).unwrap();
    m.forward(&mut st, &turn1, Logits::Last).unwrap();
    let cached = st.reuse_prefix(&turn2);
    assert_eq!(cached, 25);
    let got = m
        .forward(&mut st, &turn2[cached..], Logits::Last)
        .unwrap()
        .to_vec();
    let mut fresh = m.new_state(&opts(128, 32, 1)).unwrap();
    assert_eq!(
        m.forward(&mut fresh, &turn2, Logits::Last).unwrap(),
        &got[..]
    );
    assert_eq!(st.tokens(), &turn2[..]);
    // The same prompt again: everything but the last token is reused.
    assert_eq!(st.reuse_prefix(&turn2), turn2.len() - 1);
    st.clear();
    assert_eq!(st.n_past(), 0);
}

#[test]
fn input_errors_are_clear() {
    let m = load("tiny-qwen2.q8_0");
    let mut st = m.new_state(&opts(32, 8, 4)).unwrap();
    let e = m
        .forward(&mut st, &tokens(33, 1), Logits::Last)
        .unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::ContextFull {
                n_ctx: 32,
                needed: 33
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("33") && e.to_string().contains("32"),
        "{e}"
    );
    let e = m.forward(&mut st, &[1, 512], Logits::Last).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::InvalidToken {
                id: 512,
                n_vocab: 512
            }
        ),
        "{e}"
    );
    assert!(matches!(
        m.forward(&mut st, &[], Logits::Last),
        Err(ModelError::NoTokens)
    ));
    let e = m.forward(&mut st, &tokens(5, 1), Logits::All).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::LogitsCapacity {
                requested: 5,
                capacity: 4
            }
        ),
        "{e}"
    );
    assert_eq!(
        st.n_past(),
        0,
        "a rejected input leaves the cache untouched"
    );
    // Filling the context exactly works; one more token is an error.
    m.forward(&mut st, &tokens(32, 2), Logits::None).unwrap();
    let e = m.forward(&mut st, &[3], Logits::Last).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::ContextFull {
                n_ctx: 32,
                needed: 33
            }
        ),
        "{e}"
    );
    // A state belongs to the model that made it.
    let other = load("tiny-qwen2.q8_0");
    let mut st2 = other.new_state(&opts(32, 8, 1)).unwrap();
    assert!(matches!(
        m.forward(&mut st2, &[1], Logits::Last),
        Err(ModelError::StateMismatch)
    ));
    // Options.
    assert!(m.new_state(&opts(0, 8, 1)).is_err());
    assert!(m.new_state(&opts(8, 0, 1)).is_err());
}

/// The memory plan is exactly what a state allocates.
#[test]
fn memory_plan_matches_state() {
    let m = load("tiny-gemma3.q4_k_m");
    let c = m.config();
    for kv_type in [KvType::F32, KvType::F16, KvType::Q8_0] {
        let o = StateOptions {
            n_ctx: 256,
            n_batch: 64,
            kv_type,
            logits_rows: 3,
        };
        let p = m.memory_plan(&o).unwrap();
        let per_value = match kv_type {
            KvType::F32 => 4.0,
            KvType::F16 => 2.0,
            KvType::Q8_0 => 34.0 / 32.0,
        };
        // 3 layers (2 local, 1 global; every ring is the whole 256 here), K and V.
        let kv = (3 * 256 * c.n_head_kv * (c.head_dim_k + c.head_dim_v)) as f64 * per_value;
        assert_eq!(p.kv, kv as u64, "{kv_type}");
        assert_eq!(p.logits, 3 * 512 * 4);
        assert_eq!(p.weights, m.gguf().tensor_bytes());
        assert!(p.total() > p.weights + p.kv);
    }
}

/// GGUF files built in memory: a tiny valid header with chosen metadata.
fn gguf_with(kvs: &[(&str, Val)]) -> Gguf {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // tensors
    b.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        b.extend_from_slice(&(k.len() as u64).to_le_bytes());
        b.extend_from_slice(k.as_bytes());
        match v {
            Val::Str(s) => {
                b.extend_from_slice(&8u32.to_le_bytes());
                b.extend_from_slice(&(s.len() as u64).to_le_bytes());
                b.extend_from_slice(s.as_bytes());
            }
            Val::U32(x) => {
                b.extend_from_slice(&4u32.to_le_bytes());
                b.extend_from_slice(&x.to_le_bytes());
            }
            Val::F32(x) => {
                b.extend_from_slice(&6u32.to_le_bytes());
                b.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    while b.len() % 32 != 0 {
        b.push(0);
    }
    Gguf::from_bytes(b).unwrap()
}

enum Val {
    Str(&'static str),
    U32(u32),
    F32(f32),
}

#[test]
fn file_errors_are_clear() {
    let load = |g: Gguf| Model::load(Arc::new(g), &LoadOptions::default()).unwrap_err();
    let e = load(gguf_with(&[("general.architecture", Val::Str("mamba"))]));
    let msg = e.to_string();
    assert!(
        msg.contains("mamba") && msg.contains("qwen2, llama, qwen3, gemma3"),
        "{msg}"
    );
    assert_eq!(Arch::supported_list(), "qwen2, llama, qwen3, gemma3");

    let e = load(gguf_with(&[("general.architecture", Val::Str("qwen2"))]));
    assert!(e.to_string().contains("qwen2.block_count"), "{e}");

    let e = load(gguf_with(&[
        ("general.architecture", Val::Str("llama")),
        ("llama.block_count", Val::U32(2)),
        ("llama.embedding_length", Val::U32(64)),
        ("llama.feed_forward_length", Val::U32(128)),
        ("llama.attention.head_count", Val::U32(3)),
        ("llama.attention.head_count_kv", Val::U32(2)),
    ]));
    assert!(
        e.to_string().contains("llama.attention.head_count_kv"),
        "{e}"
    );

    let e = load(gguf_with(&[
        ("general.architecture", Val::Str("gemma3")),
        ("gemma3.block_count", Val::U32(2)),
        ("gemma3.embedding_length", Val::U32(64)),
        ("gemma3.feed_forward_length", Val::U32(128)),
        ("gemma3.attention.head_count", Val::U32(2)),
        ("gemma3.context_length", Val::U32(128)),
        ("gemma3.attention.layer_norm_rms_epsilon", Val::F32(1e-6)),
    ]));
    assert!(
        e.to_string().contains("gemma3.attention.sliding_window"),
        "{e}"
    );

    let e = load(gguf_with(&[
        ("general.architecture", Val::Str("qwen2")),
        ("qwen2.block_count", Val::U32(2)),
        ("qwen2.embedding_length", Val::U32(64)),
        ("qwen2.feed_forward_length", Val::U32(128)),
        ("qwen2.attention.head_count", Val::U32(2)),
        ("qwen2.context_length", Val::U32(128)),
        ("qwen2.attention.layer_norm_rms_epsilon", Val::F32(1e-6)),
    ]));
    assert!(
        matches!(&e, ModelError::MissingTensor { name, .. } if name == "token_embd.weight"),
        "{e}"
    );
}
