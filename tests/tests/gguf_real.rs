//! The GGUF reader on real files: the three vocab-only GGUFs, every tiny model,
//! and the real Gemma 3 270M. Expected values come from gguf-py 0.19.0
//! (`gguf.GGUFReader`), an independent reader, unless a comment says otherwise.

mod gguf_support;

use std::collections::BTreeMap;
use std::path::Path;

use pistil_kernels::GgmlType;
use pistil_runtime::gguf::{Gguf, GgufError, LoadMode, MetaValue, OpenOptions};
use pistil_tests::fixture;

fn open(path: &Path) -> Gguf {
    Gguf::open(path, LoadMode::Mmap).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strs(g: &Gguf, key: &str) -> Vec<String> {
    let arr = g
        .get_array(key)
        .unwrap()
        .unwrap_or_else(|| panic!("{key} missing"));
    arr.strs()
        .unwrap_or_else(|| panic!("{key} is not a string array"))
        .map(str::to_owned)
        .collect()
}

fn token_type_counts(g: &Gguf) -> BTreeMap<i32, usize> {
    let mut m = BTreeMap::new();
    let arr = g.get_array("tokenizer.ggml.token_type").unwrap().unwrap();
    for t in arr.i32s().unwrap() {
        *m.entry(t).or_insert(0) += 1;
    }
    m
}

fn total_len(v: &[String]) -> usize {
    v.iter().map(|s| s.len()).sum()
}

#[test]
fn deepseek_r1_qwen_vocab() {
    let g = open(&fixture("tokenizer/deepseek-r1-qwen.vocab.gguf"));
    // gguf-py 0.19.0: 27 KV pairs, 0 tensors, GGUF v3.
    assert_eq!(g.version(), 3);
    assert_eq!(g.len_metadata(), 27);
    assert_eq!(g.tensors().len(), 0);
    assert_eq!(g.architecture().unwrap(), "qwen2");
    assert_eq!(
        g.get_str("general.name").unwrap(),
        Some("DeepSeek R1 Distill Qwen 7B")
    );
    assert_eq!(
        g.get_str("general.organization").unwrap(),
        Some("Deepseek Ai")
    );
    assert_eq!(g.require_u32("qwen2.block_count").unwrap(), 28);
    assert_eq!(g.require_u32("qwen2.context_length").unwrap(), 131072);
    assert_eq!(g.require_u32("qwen2.embedding_length").unwrap(), 3584);
    assert_eq!(g.require_u32("qwen2.feed_forward_length").unwrap(), 18944);
    assert_eq!(g.require_u32("qwen2.attention.head_count").unwrap(), 28);
    assert_eq!(g.require_u32("qwen2.attention.head_count_kv").unwrap(), 4);
    assert_eq!(g.require_f32("qwen2.rope.freq_base").unwrap(), 10000.0);
    assert_eq!(
        g.require_f32("qwen2.attention.layer_norm_rms_epsilon")
            .unwrap(),
        1e-6
    );
    assert_eq!(g.require_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(
        g.require_str("tokenizer.ggml.pre").unwrap(),
        "deepseek-r1-qwen"
    );
    assert_eq!(
        g.require_u32("tokenizer.ggml.bos_token_id").unwrap(),
        151646
    );
    assert_eq!(
        g.require_u32("tokenizer.ggml.eos_token_id").unwrap(),
        151643
    );
    assert_eq!(
        g.require_u32("tokenizer.ggml.padding_token_id").unwrap(),
        151654
    );
    assert_eq!(
        g.get_bool("tokenizer.ggml.add_bos_token").unwrap(),
        Some(true)
    );
    assert_eq!(
        g.get_bool("tokenizer.ggml.add_eos_token").unwrap(),
        Some(false)
    );
    assert_eq!(g.require_u32("general.file_type").unwrap(), 15);
    assert_eq!(g.require_u32("general.quantization_version").unwrap(), 2);

    let tokens = strs(&g, "tokenizer.ggml.tokens");
    assert_eq!(tokens.len(), 152064);
    assert_eq!(&tokens[..3], ["!", "\"", "#"]);
    assert_eq!(tokens[1000], "atus");
    assert_eq!(tokens[100000], "ä¹Łæĺ¯");
    assert_eq!(tokens[152062], "[PAD152062]");
    assert_eq!(tokens[152063], "[PAD152063]");
    assert_eq!(total_len(&tokens), 1374176);
    let merges = strs(&g, "tokenizer.ggml.merges");
    assert_eq!(merges.len(), 151387);
    assert_eq!(&merges[..3], ["Ġ Ġ", "ĠĠ ĠĠ", "i n"]);
    assert_eq!(merges[1000], "ect or");
    assert_eq!(merges[100000], "äº ¡");
    assert_eq!(merges[151386], "â½ Ĺ");
    assert_eq!(total_len(&merges), 1520452);
    assert_eq!(
        token_type_counts(&g),
        BTreeMap::from([(1, 151643), (3, 18), (4, 4), (5, 399)])
    );
    let tmpl = g.require_str("tokenizer.chat_template").unwrap();
    assert_eq!(tmpl.len(), 2237); // bytes (2081 characters)
    assert_eq!(tmpl.chars().count(), 2081);
    assert!(tmpl.starts_with("{% if not add_generation_prompt is defined %}"));
}

#[test]
fn llama_bpe_vocab() {
    let g = open(&fixture("tokenizer/llama-bpe.vocab.gguf"));
    assert_eq!(g.version(), 3);
    assert_eq!(g.len_metadata(), 20);
    assert_eq!(g.architecture().unwrap(), "llama");
    assert_eq!(g.require_u32("llama.vocab_size").unwrap(), 128256);
    assert_eq!(g.require_u32("llama.rope.dimension_count").unwrap(), 128);
    assert_eq!(g.require_f32("llama.rope.freq_base").unwrap(), 500000.0);
    assert_eq!(
        g.require_f32("llama.attention.layer_norm_rms_epsilon")
            .unwrap(),
        1e-5
    );
    assert_eq!(g.require_u32("general.file_type").unwrap(), 1);
    assert_eq!(g.require_str("tokenizer.ggml.pre").unwrap(), "llama-bpe");
    assert_eq!(
        g.require_u32("tokenizer.ggml.bos_token_id").unwrap(),
        128000
    );
    assert_eq!(
        g.require_u32("tokenizer.ggml.eos_token_id").unwrap(),
        128001
    );
    assert_eq!(g.get_bool("tokenizer.ggml.add_bos_token").unwrap(), None);

    let tokens = strs(&g, "tokenizer.ggml.tokens");
    assert_eq!(tokens.len(), 128256);
    assert_eq!(tokens[1000], "indow");
    assert_eq!(tokens[100000], "IClient");
    assert_eq!(tokens[128254], "<|reserved_special_token_249|>");
    assert_eq!(tokens[128255], "<|reserved_special_token_250|>");
    assert_eq!(total_len(&tokens), 1073445);
    let merges = strs(&g, "tokenizer.ggml.merges");
    assert_eq!(merges.len(), 280147);
    assert_eq!(&merges[..3], ["Ġ Ġ", "Ġ ĠĠĠ", "ĠĠ ĠĠ"]);
    assert_eq!(merges[1000], "Ġels e");
    assert_eq!(merges[100000], "Ġw ashed");
    assert_eq!(merges[280145], "ãĥ¼ãĥ ¼");
    assert_eq!(merges[280146], "éĶ ¦");
    assert_eq!(total_len(&merges), 2963589);
    assert_eq!(
        token_type_counts(&g),
        BTreeMap::from([(1, 128000), (3, 256)])
    );
}

#[test]
fn gemma3_vocab() {
    let path = fixture("tokenizer/gemma3.vocab.gguf");
    let g = open(&path);
    assert_eq!(g.version(), 3);
    assert_eq!(g.len_metadata(), 33);
    assert_eq!(g.tensors().len(), 0);
    assert_eq!(g.architecture().unwrap(), "gemma3");
    assert_eq!(g.get_str("general.name").unwrap(), Some("Gemma 3 270m"));
    let tags = strs(&g, "general.tags");
    assert_eq!(tags, ["gemma3", "gemma", "google", "text-generation"]);
    assert_eq!(g.require_u32("gemma3.context_length").unwrap(), 32768);
    assert_eq!(g.require_u32("gemma3.embedding_length").unwrap(), 640);
    assert_eq!(g.require_u32("gemma3.block_count").unwrap(), 18);
    assert_eq!(g.require_u32("gemma3.feed_forward_length").unwrap(), 2048);
    assert_eq!(g.require_u32("gemma3.attention.head_count").unwrap(), 4);
    assert_eq!(g.require_u32("gemma3.attention.head_count_kv").unwrap(), 1);
    assert_eq!(g.require_u32("gemma3.attention.key_length").unwrap(), 256);
    assert_eq!(g.require_u32("gemma3.attention.value_length").unwrap(), 256);
    assert_eq!(
        g.require_u32("gemma3.attention.sliding_window").unwrap(),
        512
    );
    assert_eq!(g.require_f32("gemma3.rope.freq_base").unwrap(), 1e6);
    assert_eq!(
        g.get_bool("tokenizer.ggml.add_space_prefix").unwrap(),
        Some(false)
    );
    assert_eq!(
        g.get_bool("tokenizer.ggml.add_sep_token").unwrap(),
        Some(false)
    );
    assert_eq!(g.require_u32("tokenizer.ggml.unknown_token_id").unwrap(), 3);

    let tokens = strs(&g, "tokenizer.ggml.tokens");
    assert_eq!(tokens.len(), 262144);
    assert_eq!(&tokens[..3], ["<pad>", "<eos>", "<bos>"]);
    assert_eq!(tokens[1000], "put");
    assert_eq!(tokens[100000], "▁Reactive");
    assert_eq!(tokens[262142], "<unused6240>");
    assert_eq!(tokens[262143], "<unused6241>");
    assert_eq!(total_len(&tokens), 2315366);
    let scores: Vec<f32> = g
        .get_array("tokenizer.ggml.scores")
        .unwrap()
        .unwrap()
        .f32s()
        .unwrap()
        .collect();
    assert_eq!(scores.len(), 262144);
    assert_eq!(scores[0], -1000.0);
    assert_eq!(scores[1000], -506.0);
    assert_eq!(scores[100000], -99506.0);
    let sum: f64 = scores.iter().map(|&s| s as f64).sum();
    assert!((sum - -32640364576.0).abs() < 1.0, "{sum}");
    assert_eq!(
        token_type_counts(&g),
        BTreeMap::from([(1, 255474), (3, 6249), (4, 165), (6, 256)])
    );
    // gguf-py reports data_offset 6511168 (it always pads to the alignment);
    // gguf.cpp pads only when there are tensors, as we do.
    assert_eq!(g.file_size(), 6511168);
    assert_eq!((g.data_offset() as u64).next_multiple_of(32), 6511168);

    // Generic iteration visits every value, including all 262144 × 3 array elements.
    let mut n_elems = 0usize;
    for (k, v) in g.metadata() {
        assert!(!k.is_empty());
        if let MetaValue::Array(a) = v {
            assert_eq!(a.iter().count(), a.len(), "{k}");
            n_elems += a.len();
        }
    }
    assert_eq!(n_elems, 4 + 3 * 262144);
}

#[test]
fn typed_getters_name_the_key() {
    let g = open(&fixture("tokenizer/gemma3.vocab.gguf"));
    assert_eq!(g.get_u64("gemma3.context_length").unwrap(), Some(32768));
    assert_eq!(g.get_i64("gemma3.context_length").unwrap(), Some(32768));
    assert_eq!(g.get_u32("no.such.key").unwrap(), None);
    let off = g.value_offset("gemma3.context_length").unwrap();
    let e = g.get_str("gemma3.context_length").unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::MetaType {
                expected: "str",
                found: "u32",
                ..
            }
        ),
        "{e}"
    );
    gguf_support::assert_msg(&e, &["'gemma3.context_length'", &format!("offset {off}")]);
    let e = g.get_f32("gemma3.context_length").unwrap_err();
    assert!(matches!(e, GgufError::MetaType { .. }), "{e}");
    let e = g.get_u32("general.name").unwrap_err();
    assert!(matches!(e, GgufError::MetaType { .. }), "{e}");
    let e = g.get_array("general.name").unwrap_err();
    assert!(matches!(e, GgufError::MetaType { .. }), "{e}");
    let e = g.require_u32("gemma3.no_such_key").unwrap_err();
    assert!(matches!(e, GgufError::MissingKey { .. }), "{e}");
    gguf_support::assert_msg(&e, &["'gemma3.no_such_key'"]);
    // An array of strings has no f32/i32 view.
    let toks = g.get_array("tokenizer.ggml.tokens").unwrap().unwrap();
    assert!(toks.f32s().is_none() && toks.i32s().is_none() && toks.bools().is_none());
    assert_eq!(toks.elem_type_name(), "str");
}

/// What gguf-py 0.19.0 says about each tiny model: file size, KV pairs,
/// tensors, data offset, tensor bytes, elements, and the sum of every byte of
/// tensor data (numpy, `t.data.view(uint8).sum()`), which checks every offset.
/// (file, size, n_kv, n_tensors, data_offset, tensor_bytes, n_elements, byte_sum)
type TinyRow = (&'static str, u64, usize, usize, usize, u64, u64, u64);
const TINY: &[TinyRow] = &[
    (
        "tiny-gemma3.f32.gguf",
        5272160,
        29,
        41,
        14432,
        5257728,
        1314432,
        659724999,
    ),
    (
        "tiny-gemma3.q4_0.gguf",
        800352,
        29,
        41,
        14432,
        785920,
        1314432,
        100426688,
    ),
    (
        "tiny-gemma3.q4_k_m.gguf",
        825696,
        29,
        41,
        14432,
        811264,
        1314432,
        103351116,
    ),
    (
        "tiny-gemma3.q8_0.gguf",
        1421920,
        29,
        41,
        14432,
        1407488,
        1314432,
        173859520,
    ),
    (
        "tiny-llama.f32.gguf",
        5790464,
        26,
        31,
        16000,
        5774464,
        1443616,
        725272312,
    ),
    (
        "tiny-llama.q4_0.gguf",
        868096,
        26,
        31,
        16000,
        852096,
        1443616,
        109325646,
    ),
    (
        "tiny-llama.q4_k_m.gguf",
        893440,
        26,
        31,
        16000,
        877440,
        1443616,
        111991016,
    ),
    (
        "tiny-llama.q8_0.gguf",
        1555200,
        26,
        31,
        16000,
        1539200,
        1443616,
        190573112,
    ),
    (
        "tiny-qwen2.f32.gguf",
        5796832,
        24,
        39,
        16352,
        5780480,
        1445120,
        726004634,
    ),
    (
        "tiny-qwen2.q4_0.gguf",
        874464,
        24,
        39,
        16352,
        858112,
        1445120,
        110068655,
    ),
    (
        "tiny-qwen2.q4_k_m.gguf",
        899808,
        24,
        39,
        16352,
        883456,
        1445120,
        112792009,
    ),
    (
        "tiny-qwen2.q6_k.gguf",
        1212384,
        24,
        39,
        16352,
        1196032,
        1445120,
        144998953,
    ),
    (
        "tiny-qwen2.q8_0.gguf",
        1561568,
        24,
        39,
        16352,
        1545216,
        1445120,
        191292550,
    ),
    (
        "tiny-qwen3.f32.gguf",
        5792096,
        24,
        36,
        16224,
        5775872,
        1443968,
        725474550,
    ),
    (
        "tiny-qwen3.q4_0.gguf",
        869728,
        24,
        36,
        16224,
        853504,
        1443968,
        109516569,
    ),
    (
        "tiny-qwen3.q4_k_m.gguf",
        895072,
        24,
        36,
        16224,
        878848,
        1443968,
        112071100,
    ),
    (
        "tiny-qwen3.q8_0.gguf",
        1556832,
        24,
        36,
        16224,
        1540608,
        1443968,
        190770183,
    ),
];

#[test]
fn tiny_models_match_gguf_py_and_ref_json() {
    for &(file, size, n_kv, n_tensors, data_off, bytes, elems, byte_sum) in TINY {
        let path = fixture(&format!("models/{file}"));
        let g = open(&path);
        assert_eq!(g.file_size(), size, "{file}");
        assert_eq!(g.len_metadata(), n_kv, "{file}");
        assert_eq!(g.tensors().len(), n_tensors, "{file}");
        assert_eq!(g.data_offset(), data_off, "{file}");
        assert_eq!(g.alignment(), 32, "{file}");
        assert_eq!(g.tensor_bytes(), bytes, "{file}");
        assert_eq!(g.n_params(), elems, "{file}");
        let mut sum = 0u64;
        for t in g.tensors() {
            let d = g.tensor_data(t);
            assert_eq!(d.len() as u64, t.size, "{file} {}", t.name);
            // Mapped at a page boundary, so file alignment is pointer alignment.
            assert_eq!(d.as_ptr() as usize % 32, 0, "{file} {}", t.name);
            assert_eq!(g.tensor(&t.name), Some(t));
            sum += d.iter().map(|&b| b as u64).sum::<u64>();
        }
        assert_eq!(sum, byte_sum, "{file}: tensor data differs from gguf-py's");

        // ref.json (written by the fixture generator from llama.cpp's view).
        let ref_path = path.with_file_name(file.replace(".gguf", ".ref.json"));
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&ref_path).unwrap()).unwrap();
        assert_eq!(r["model_size"].as_u64(), Some(size));
        let arch = r["arch"].as_str().unwrap();
        assert_eq!(g.architecture().unwrap(), arch);
        let mut seen = 0;
        for (ty, names) in r["tensor_types"].as_object().unwrap() {
            for name in names.as_array().unwrap() {
                let name = name.as_str().unwrap();
                let t = g
                    .tensor(name)
                    .unwrap_or_else(|| panic!("{file}: no {name}"));
                assert_eq!(t.ty.to_string(), *ty, "{file} {name}");
                seen += 1;
            }
        }
        assert_eq!(seen, n_tensors, "{file}");
        let dims = &r["dims"];
        let key = |k: &str| g.require_u32(&format!("{arch}.{k}")).unwrap() as u64;
        assert_eq!(key("embedding_length"), dims["n_embd"].as_u64().unwrap());
        assert_eq!(
            key("attention.head_count"),
            dims["n_head"].as_u64().unwrap()
        );
        assert_eq!(
            key("attention.head_count_kv"),
            dims["n_head_kv"].as_u64().unwrap()
        );
        assert_eq!(key("feed_forward_length"), dims["n_ff"].as_u64().unwrap());
        assert_eq!(key("block_count"), dims["n_layer"].as_u64().unwrap());
        assert_eq!(key("context_length"), dims["n_ctx"].as_u64().unwrap());
        let emb = g.tensor("token_embd.weight").unwrap();
        assert_eq!(
            emb.dims,
            [
                dims["n_embd"].as_u64().unwrap(),
                dims["n_vocab"].as_u64().unwrap()
            ]
        );
        assert_eq!(emb.row_len() as u64, dims["n_embd"].as_u64().unwrap());
        assert_eq!(emb.n_rows() as u64, dims["n_vocab"].as_u64().unwrap());
        if arch == "gemma3" {
            let pat: Vec<bool> = g
                .get_array("gemma3.attention.sliding_window_pattern")
                .unwrap()
                .unwrap()
                .bools()
                .unwrap()
                .collect();
            let want: Vec<bool> = dims["swa_pattern"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_bool().unwrap())
                .collect();
            assert_eq!(pat, want);
        }
    }
}

#[test]
fn gemma3_270m_real_model() {
    let path = pistil_tests::real_model("gemma3:270m");
    let g = open(&path);
    // gguf-py 0.19.0 on the same file.
    assert_eq!(g.file_size(), 253113024);
    assert_eq!(g.len_metadata(), 33);
    assert_eq!(g.tensors().len(), 236);
    assert_eq!(g.data_offset(), 6525120);
    assert_eq!(g.require_u32("gemma3.block_count").unwrap(), 18);
    assert_eq!(g.require_u32("gemma3.embedding_length").unwrap(), 640);
    let mut counts: BTreeMap<GgmlType, usize> = BTreeMap::new();
    for t in g.tensors() {
        *counts.entry(t.ty).or_insert(0) += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([
            (GgmlType::F32, 109),
            (GgmlType::Q5_0, 81),
            (GgmlType::Q4_K, 27),
            (GgmlType::Q8_0, 10),
            (GgmlType::Q6_K, 9),
        ])
    );
    assert_eq!(g.tensor_bytes(), 246587904);
    assert_eq!(g.n_params(), 268098176);
    let first = &g.tensors()[0];
    assert_eq!(
        (first.name.as_str(), first.ty, first.dims.as_slice()),
        ("output_norm.weight", GgmlType::F32, &[640u64][..])
    );
    let last = g.tensors().last().unwrap();
    assert_eq!(last.name, "blk.17.post_ffw_norm.weight");
    assert_eq!(g.data_offset() as u64 + last.offset, 253110464);
    let file = g.bytes().as_ptr_range();
    for t in g.tensors() {
        let d = g.tensor_data(t);
        assert_eq!(d.len() as u64, t.size, "{}", t.name);
        let r = d.as_ptr_range();
        assert!(file.start <= r.start && r.end <= file.end, "{}", t.name);
        assert_eq!((g.data_offset() as u64 + t.offset) % 32, 0, "{}", t.name);
    }
    // Per-layer tensors for all 18 layers.
    for il in 0..18 {
        assert!(g.tensor(&format!("blk.{il}.attn_q.weight")).is_some());
    }
    assert!(g.tensor("blk.18.attn_q.weight").is_none());
}

#[test]
fn load_modes_agree() {
    for rel in [
        "models/tiny-qwen2.q4_k_m.gguf",
        "tokenizer/llama-bpe.vocab.gguf",
    ] {
        let path = fixture(rel);
        let reference = Gguf::open(&path, LoadMode::Mmap).unwrap();
        assert!(reference.is_mapped());
        for mode in LoadMode::ALL {
            let g = Gguf::open(&path, mode).unwrap_or_else(|e| panic!("{rel} {mode}: {e}"));
            assert_eq!(g.is_mapped(), mode != LoadMode::Read, "{rel} {mode}");
            assert_eq!(g.path(), Some(path.as_path()));
            assert_eq!(g.bytes(), reference.bytes(), "{rel} {mode}");
            // Mapped: page aligned. Read: the 64-byte aligned heap buffer.
            assert_eq!(g.bytes().as_ptr() as usize % 64, 0, "{rel} {mode}");
            assert_eq!(g.len_metadata(), reference.len_metadata());
            assert_eq!(g.tensors(), reference.tensors());
            for t in g.tensors() {
                assert_eq!(g.tensor_data(t), reference.tensor_data(t));
            }
        }
        // Header-only open (what `pistil inspect` does).
        let g = Gguf::open_with(
            &path,
            OpenOptions {
                mode: LoadMode::Mmap,
                prefetch: false,
            },
        )
        .unwrap();
        assert_eq!(g.tensors(), reference.tensors());
    }
    // Names as on the command line.
    for (s, m) in [
        ("mmap", LoadMode::Mmap),
        ("mlock", LoadMode::MmapLocked),
        ("none", LoadMode::Read),
    ] {
        assert_eq!(s.parse::<LoadMode>().unwrap(), m);
        assert_eq!(m.to_string(), s);
    }
    assert!("bogus".parse::<LoadMode>().is_err());
    assert_eq!(LoadMode::default(), LoadMode::Mmap);
}

#[test]
fn from_bytes_is_aligned_and_owns() {
    let bytes = std::fs::read(fixture("models/tiny-gemma3.q8_0.gguf")).unwrap();
    let g = Gguf::from_bytes(bytes.clone()).unwrap();
    assert_eq!(g.path(), None);
    assert!(!g.is_mapped());
    assert_eq!(g.bytes(), &bytes[..]);
    assert_eq!(g.bytes().as_ptr() as usize % 64, 0);
    for t in g.tensors() {
        assert_eq!(g.tensor_data(t).as_ptr() as usize % 32, 0);
    }
}

#[test]
fn gguf_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Gguf>();
    check::<GgufError>();
}

#[test]
fn missing_file_names_the_path() {
    let p = fixture("models/no-such-file.gguf");
    let e = Gguf::open(&p, LoadMode::Mmap).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }), "{e}");
    gguf_support::assert_msg(&e, &["no-such-file.gguf"]);
}

/// Parse time of the biggest vocab (262,144 strings): a few ms natively.
#[test]
fn vocab_parse_is_fast() {
    let bytes = std::fs::read(fixture("tokenizer/gemma3.vocab.gguf")).unwrap();
    let mut best = std::time::Duration::MAX;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        Gguf::validate(&bytes).unwrap();
        best = best.min(t.elapsed());
    }
    eprintln!("gemma3.vocab.gguf ({} bytes): parse {best:?}", bytes.len());
    // Generous: qemu is 10-50x slower than native.
    assert!(best < std::time::Duration::from_secs(2), "{best:?}");
}
