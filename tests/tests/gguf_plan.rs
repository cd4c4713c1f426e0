//! The memory plan (`pistil_runtime::plan`) against llama.cpp's own numbers
//! for the same files: llama-cpp-python 0.3.36 (llama.cpp 0c1e570), `n_ubatch`
//! 512, `swa_full=False`, flash attention off, printing `llama_kv_cache: size
//! = ...` for the full-attention and the sliding-window caches.

mod gguf_support;

use pistil_runtime::gguf::{file_type_name, Gguf, LoadMode};
use pistil_runtime::plan::{self, KvType, ModelDims, PlanParams};
use pistil_tests::fixture;

const MIB: u64 = 1024 * 1024;

#[test]
fn gemma3_270m_kv_cache_matches_llama_cpp() {
    let g = Gguf::open(&pistil_tests::real_model("gemma3:270m"), LoadMode::Mmap).unwrap();
    let d = ModelDims::from_gguf(&g).unwrap();
    assert_eq!((d.n_layer, d.n_embd, d.n_head, d.n_ff), (18, 640, 4, 2048));
    assert_eq!((d.head_dim_k, d.head_dim_v, d.n_vocab), (256, 256, 262144));
    assert_eq!((d.context_length, d.sliding_window), (32768, Some(512)));
    // llama.cpp: "layer N ... is_swa = 1" for all but 5, 11, 17.
    let global: Vec<usize> = (0..18).filter(|&il| !d.swa_layers[il]).collect();
    assert_eq!(global, [5, 11, 17]);
    assert!(d.n_head_kv.iter().all(|&h| h == 1));

    let p = PlanParams::defaults_for(&d);
    assert_eq!((p.ctx, p.kv_type, p.n_ubatch), (4096, KvType::F16, 512));
    let e = plan::estimate(&g, &p).unwrap();
    // llama.cpp, n_ctx 4096: 12.00 MiB (4096 cells, 3 layers) + 15.00 MiB (1024 cells, 15 layers).
    assert_eq!((e.kv_cells, e.kv_cells_swa), (4096, 1024));
    assert_eq!(e.kv_cache, 27 * MIB);
    // llama.cpp: "CPU_Mapped model buffer size = 235.16 MiB".
    assert_eq!(e.weights, 246587904);
    assert_eq!(e.total, e.weights + e.kv_cache + e.scratch);
    // One forward pass of 512 tokens without materialising 512 rows of logits
    // (llama.cpp's compute buffer, 514.5 MiB, reserves logits for every token).
    assert!(
        e.scratch > 40 * MIB && e.scratch < 80 * MIB,
        "{}",
        e.scratch
    );

    // llama.cpp, n_ctx 32768: 96.00 MiB (32768 cells, 3 layers) + 15.00 MiB.
    let e = plan::estimate(&g, &PlanParams { ctx: 32768, ..p }).unwrap();
    assert_eq!(e.kv_cache, 111 * MIB);
    // llama.cpp pads n_ctx to 256 (700 → 768): 2.25 MiB + 11.25 MiB at 768 cells.
    let e = plan::estimate(&g, &PlanParams { ctx: 768, ..p }).unwrap();
    assert_eq!(e.kv_cache, 27 * MIB / 2);
    assert_eq!(e.kv_cells_swa, 768);
    // Q8_0 and F32 caches scale by 34/64 and 2 per element.
    let q8 = plan::estimate(
        &g,
        &PlanParams {
            kv_type: KvType::Q8_0,
            ..p
        },
    )
    .unwrap();
    assert_eq!(q8.kv_cache, 27 * MIB / 64 * 34);
    let f32 = plan::estimate(
        &g,
        &PlanParams {
            kv_type: KvType::F32,
            ..p
        },
    )
    .unwrap();
    assert_eq!(f32.kv_cache, 54 * MIB);

    assert_eq!(
        file_type_name(g.require_u32("general.file_type").unwrap()).as_deref(),
        Some("Q4_K - Medium")
    );
}

#[test]
fn tiny_models_dims_and_file_types() {
    // llama_cpp_desc in each ref.json is llama.cpp's "<arch> ?B <file type name>".
    for arch in ["gemma3", "llama", "qwen2", "qwen3"] {
        for quant in ["f32", "q8_0", "q4_0", "q4_k_m"] {
            let path = fixture(&format!("models/tiny-{arch}.{quant}.gguf"));
            let g = Gguf::open(&path, LoadMode::Read).unwrap();
            let r: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(fixture(&format!("models/tiny-{arch}.{quant}.ref.json")))
                    .unwrap(),
            )
            .unwrap();
            let desc = r["llama_cpp_desc"].as_str().unwrap();
            let name = file_type_name(g.require_u32("general.file_type").unwrap()).unwrap();
            assert!(desc.ends_with(&name), "{desc:?} vs {name:?}");

            let d = ModelDims::from_gguf(&g).unwrap();
            let dims = &r["dims"];
            assert_eq!(d.n_embd as u64, dims["n_embd"].as_u64().unwrap());
            assert_eq!(d.n_head as u64, dims["n_head"].as_u64().unwrap());
            assert_eq!(
                d.n_head_kv,
                vec![dims["n_head_kv"].as_u64().unwrap() as u32; 3]
            );
            assert_eq!(d.head_dim_k as u64, dims["head_dim"].as_u64().unwrap());
            assert_eq!(d.n_vocab as u64, dims["n_vocab"].as_u64().unwrap());
            assert_eq!(d.n_ff as u64, dims["n_ff"].as_u64().unwrap());
            if arch == "gemma3" {
                assert_eq!(d.sliding_window, Some(8));
                assert_eq!(d.swa_layers, [true, true, false]);
            } else {
                assert_eq!(d.n_layer_swa(), 0);
            }
            // ctx 256, f32 KV as in the fixtures: 3 layers × 256 × 2 heads × 128 × 4 bytes,
            // except gemma3's two window layers (8 + 512 capped at 256 cells: the same).
            let e = plan::estimate(
                &g,
                &PlanParams {
                    ctx: 256,
                    kv_type: KvType::F32,
                    n_ubatch: 512,
                },
            )
            .unwrap();
            assert_eq!(e.kv_cache, 3 * 256 * 2 * 128 * 4, "{arch} {quant}");
        }
    }
}

#[test]
fn vocab_only_file_has_dims_but_no_weights() {
    let g = Gguf::open(
        &fixture("tokenizer/deepseek-r1-qwen.vocab.gguf"),
        LoadMode::Mmap,
    )
    .unwrap();
    let d = ModelDims::from_gguf(&g).unwrap();
    // DeepSeek-R1-Distill-Qwen-7B: 28 layers, 4 KV heads of 128, no vocab_size key.
    assert_eq!((d.n_layer, d.head_dim_k, d.n_vocab), (28, 128, 152064));
    let e = plan::estimate(&g, &PlanParams::defaults_for(&d)).unwrap();
    assert_eq!(e.weights, 0);
    // 28 layers × 4096 cells × 4 KV heads × (128 + 128) × 2 bytes = 224 MiB.
    assert_eq!(e.kv_cache, 224 * MIB);
}
