//! Tokenizer metadata that is wrong or unusual: every case is a clear error
//! naming the key (or a documented fallback), never a panic; and random text
//! never panics and round-trips through the real vocabularies.

use pistil_runtime::gguf::{Gguf, LoadMode};
use pistil_runtime::tokenizer::{DecodeOptions, Tokenizer, TokenizerError};
use pistil_tests::fixture;

/// A metadata value for [`gguf`].
enum V<'a> {
    Str(&'a str),
    U32(u32),
    Bool(bool),
    Strs(Vec<String>),
    I32s(Vec<i32>),
    F32s(Vec<f32>),
}

/// A GGUF v3 file with only metadata.
fn gguf(kvs: &[(&str, V<'_>)]) -> Gguf {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    let s = |b: &mut Vec<u8>, s: &str| {
        b.extend_from_slice(&(s.len() as u64).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
    };
    for (k, v) in kvs {
        s(&mut b, k);
        match v {
            V::Str(x) => {
                b.extend_from_slice(&8u32.to_le_bytes());
                s(&mut b, x);
            }
            V::U32(x) => {
                b.extend_from_slice(&4u32.to_le_bytes());
                b.extend_from_slice(&x.to_le_bytes());
            }
            V::Bool(x) => {
                b.extend_from_slice(&7u32.to_le_bytes());
                b.push(u8::from(*x));
            }
            V::Strs(xs) => {
                b.extend_from_slice(&9u32.to_le_bytes());
                b.extend_from_slice(&8u32.to_le_bytes());
                b.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                for x in xs {
                    s(&mut b, x);
                }
            }
            V::I32s(xs) => {
                b.extend_from_slice(&9u32.to_le_bytes());
                b.extend_from_slice(&5u32.to_le_bytes());
                b.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                xs.iter()
                    .for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
            }
            V::F32s(xs) => {
                b.extend_from_slice(&9u32.to_le_bytes());
                b.extend_from_slice(&6u32.to_le_bytes());
                b.extend_from_slice(&(xs.len() as u64).to_le_bytes());
                xs.iter()
                    .for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
            }
        }
    }
    Gguf::from_bytes(b).expect("valid GGUF")
}

fn strs(xs: &[&str]) -> V<'static> {
    V::Strs(xs.iter().map(|s| s.to_string()).collect())
}

/// A tiny byte-level BPE vocabulary: "a", "b", "ab", "Ġ", "Ġab", "<s>".
fn bpe(extra: Vec<(&'static str, V<'static>)>) -> Result<Tokenizer, TokenizerError> {
    let mut kvs = vec![
        ("general.architecture", V::Str("qwen2")),
        ("tokenizer.ggml.model", V::Str("gpt2")),
        ("tokenizer.ggml.pre", V::Str("qwen2")),
        (
            "tokenizer.ggml.tokens",
            strs(&["a", "b", "ab", "Ġ", "Ġab", "<s>"]),
        ),
        ("tokenizer.ggml.token_type", V::I32s(vec![1, 1, 1, 1, 1, 3])),
        ("tokenizer.ggml.merges", strs(&["a b", "Ġ ab", "x y"])),
        ("tokenizer.ggml.bos_token_id", V::U32(5)),
    ];
    for (k, v) in extra {
        kvs.retain(|(kk, _)| *kk != k);
        kvs.push((k, v));
    }
    Tokenizer::from_gguf(&gguf(&kvs))
}

fn err_msg(r: Result<Tokenizer, TokenizerError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tiny_bpe_works() {
    let tok = bpe(vec![]).unwrap();
    assert_eq!(tok.encode("ab ab", false, false).unwrap(), [2, 4]);
    assert_eq!(tok.encode("<s>ab", true, true).unwrap(), [5, 2]); // qwen2 default: no BOS added
                                                                  // Characters outside the vocabulary have no byte token in this vocabulary:
                                                                  // dropped, as llama.cpp does.
    assert_eq!(tok.encode("zab", false, false).unwrap(), [2]);
    let tok = bpe(vec![("tokenizer.ggml.add_bos_token", V::Bool(true))]).unwrap();
    assert_eq!(tok.encode("ab", true, false).unwrap(), [5, 2]);
    assert_eq!(
        tok.decode(&[5, 2, 4], DecodeOptions::default()).unwrap(),
        "ab ab"
    );
}

#[test]
fn bad_metadata_is_a_clear_error() {
    let m = err_msg(bpe(vec![("tokenizer.ggml.pre", V::Str("mystery-pre"))]));
    assert!(
        m.contains("mystery-pre") && m.contains("tokenizer.ggml.pre") && m.contains("qwen2"),
        "{m}"
    );
    let m = err_msg(bpe(vec![("tokenizer.ggml.pre", V::Str(""))]));
    assert!(m.contains("pre-tokenizer"), "{m}");
    let m = err_msg(bpe(vec![("tokenizer.ggml.model", V::Str("bert"))]));
    assert!(
        m.contains("bert") && m.contains("tokenizer.ggml.model"),
        "{m}"
    );
    let m = err_msg(bpe(vec![("tokenizer.ggml.tokens", V::I32s(vec![1, 2]))]));
    assert!(
        m.contains("tokenizer.ggml.tokens") && m.contains("strings"),
        "{m}"
    );
    let m = err_msg(bpe(vec![("tokenizer.ggml.tokens", strs(&[]))]));
    assert!(m.contains("empty"), "{m}");
    let m = err_msg(bpe(vec![("tokenizer.ggml.token_type", V::I32s(vec![1]))]));
    assert!(
        m.contains("tokenizer.ggml.token_type") && m.contains("6 tokens"),
        "{m}"
    );
    let m = err_msg(bpe(vec![(
        "tokenizer.ggml.token_type",
        V::F32s(vec![1.0; 6]),
    )]));
    assert!(m.contains("tokenizer.ggml.token_type"), "{m}");
    let m = err_msg(bpe(vec![("tokenizer.ggml.merges", V::U32(3))]));
    assert!(m.contains("tokenizer.ggml.merges"), "{m}");
    let m = err_msg(bpe(vec![(
        "tokenizer.ggml.tokens",
        strs(&["a", "b", "ab", "Ġ", "a", "<s>"]),
    )]));
    assert!(m.contains("duplicate") && m.contains("ids 0 and 4"), "{m}");
    let m = err_msg(bpe(vec![
        ("tokenizer.ggml.add_bos_token", V::Bool(true)),
        ("tokenizer.ggml.bos_token_id", V::U32(99)),
    ]));
    assert!(
        m.contains("tokenizer.ggml.add_bos_token") && m.contains("bos_token_id"),
        "{m}"
    );
    let m = err_msg(bpe(vec![("tokenizer.ggml.bos_token_id", V::Str("5"))]));
    assert!(m.contains("tokenizer.ggml.bos_token_id"), "{m}");

    let no_tok = gguf(&[("general.architecture", V::Str("llama"))]);
    let m = Tokenizer::from_gguf(&no_tok).unwrap_err().to_string();
    assert!(m.contains("tokenizer.ggml.model"), "{m}");
    let no_merges = gguf(&[
        ("tokenizer.ggml.model", V::Str("gpt2")),
        ("tokenizer.ggml.pre", V::Str("llama-bpe")),
        ("tokenizer.ggml.tokens", strs(&["a"])),
        ("tokenizer.ggml.bos_token_id", V::U32(0)),
    ]);
    let m = Tokenizer::from_gguf(&no_merges).unwrap_err().to_string();
    assert!(m.contains("tokenizer.ggml.merges"), "{m}");

    // Out-of-range ids decode to an error, not a panic.
    let tok = bpe(vec![]).unwrap();
    let e = tok
        .decode(&[6], DecodeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("token id 6") && e.contains("6 tokens"), "{e}");
    assert_eq!(tok.token_to_piece(6), None);
    assert_eq!(tok.token_text(99), None);
}

#[test]
fn sentencepiece_without_byte_tokens() {
    let kvs = [
        ("tokenizer.ggml.model", V::Str("llama")),
        (
            "tokenizer.ggml.tokens",
            strs(&["<unk>", "<s>", "</s>", "▁a", "a", "▁"]),
        ),
        (
            "tokenizer.ggml.scores",
            V::F32s(vec![0.0, 0.0, 0.0, -1.0, -2.0, -3.0]),
        ),
        ("tokenizer.ggml.token_type", V::I32s(vec![2, 3, 3, 1, 1, 1])),
    ];
    let tok = Tokenizer::from_gguf(&gguf(&kvs)).unwrap();
    // SPM defaults: BOS 1, add_bos, add_space_prefix.
    assert_eq!(tok.encode("a a", true, false).unwrap(), [1, 3, 3]);
    let e = tok.encode("a é", true, false).unwrap_err().to_string();
    assert!(e.contains("byte-fallback") && e.contains("<0xC3>"), "{e}");
    // add_space_prefix: llama_detokenize drops the first token's leading
    // space, only when that token comes first (not after BOS).
    assert_eq!(
        tok.decode(&[3, 3], DecodeOptions::default()).unwrap(),
        "a a"
    );
    assert_eq!(
        tok.decode(&[1, 3, 3], DecodeOptions::default()).unwrap(),
        " a a"
    );
}

/// Deterministic xorshift for the random-text tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// Random strings from pieces that stress every rule: letters, digits in
/// several scripts, whitespace runs, CR/LF, punctuation, contractions, CJK,
/// emoji with ZWJ, combining marks, special-token fragments, `▁`.
fn random_text(rng: &mut Rng) -> String {
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "hello",
        " world",
        "1",
        "2024",
        "٣",
        "१२",
        "１２",
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "\n\n\n",
        "'s",
        "'LL",
        "'",
        "!",
        "?",
        "...",
        "—",
        "中文",
        "日本語",
        "한국어",
        "😀",
        "👩\u{200d}👩\u{200d}👧",
        "🇫🇷",
        "e\u{301}",
        "\u{200b}",
        "\u{a0}",
        "\u{3000}",
        "<",
        ">",
        "<think>",
        "</think>",
        "<｜User｜>",
        "<|im_end|>",
        "<start_of_turn>",
        "<0x0A>",
        "▁",
        "\u{0}",
        "\u{7f}",
        "ß",
        "İ",
        "Ω",
        "ﬁ",
        "𝔘",
        "\u{feff}",
        "x",
    ];
    let n = (rng.next() % 24) as usize;
    (0..n).map(|_| rng.pick(PIECES)).collect()
}

#[test]
fn random_text_round_trips() {
    let load = |name: &str| {
        let g = Gguf::open(
            &fixture(&format!("tokenizer/{name}.vocab.gguf")),
            LoadMode::Mmap,
        )
        .unwrap();
        Tokenizer::from_gguf(&g).unwrap()
    };
    let qwen = load("deepseek-r1-qwen");
    let llama = load("llama-bpe");
    let gemma = load("gemma3");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let opts = DecodeOptions {
        remove_special: false,
        unparse_special: true,
    };
    for i in 0..3000 {
        let text = random_text(&mut rng);
        for (mode, parse) in [("plain", false), ("special", true)] {
            // Byte-level BPE is lossless.
            let ids = qwen.encode(&text, false, parse).unwrap();
            assert_eq!(
                qwen.decode(&ids, opts).unwrap(),
                text,
                "qwen {mode} #{i}: {text:?}"
            );
            // Llama 3: lossless before clean_up_tokenization_spaces.
            let ids = llama.encode(&text, false, parse).unwrap();
            let raw: Vec<u8> = ids
                .iter()
                .flat_map(|&id| llama.token_to_piece(id).unwrap().to_vec())
                .collect();
            assert_eq!(
                String::from_utf8(raw).unwrap(),
                text,
                "llama {mode} #{i}: {text:?}"
            );
            // SentencePiece with byte fallback: lossless except that `▁` is a space.
            let ids = gemma.encode(&text, false, parse).unwrap();
            assert_eq!(
                gemma.decode(&ids, opts).unwrap(),
                text.replace('▁', " "),
                "gemma {mode} #{i}: {text:?}"
            );
        }
    }
}
