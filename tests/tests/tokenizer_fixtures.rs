//! pistil's tokenizer against llama.cpp's, on the real vocabularies of
//! DeepSeek-R1-Distill-Qwen (gpt2, `deepseek-r1-qwen`), Llama 3 (gpt2,
//! `llama-bpe`) and Gemma 3 (SentencePiece): 89 strings × 3 modes each, plus
//! detokenization, from `tests/fixtures/tokenizer/` (see its README).

use pistil_runtime::gguf::{Gguf, LoadMode};
use pistil_runtime::tokenizer::{DecodeOptions, Tokenizer};
use pistil_tests::fixture;
use serde::Deserialize;

#[derive(Deserialize)]
struct VocabCases {
    n_vocab: usize,
    bos: u32,
    eos: u32,
    add_bos: bool,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids_bos_special: Vec<u32>,
    ids_special: Vec<u32>,
    ids_plain: Vec<u32>,
    detok: String,
}

fn load(name: &str) -> (Tokenizer, VocabCases) {
    let gguf = Gguf::open(
        &fixture(&format!("tokenizer/{name}.vocab.gguf")),
        LoadMode::Mmap,
    )
    .unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let json = std::fs::read_to_string(fixture(&format!("tokenizer/{name}.json"))).unwrap();
    let cases: VocabCases = serde_json::from_str(&json).unwrap();
    (tok, cases)
}

fn short(s: &str) -> String {
    let s: String = s.chars().take(60).collect();
    format!("{s:?}")
}

/// Runs every case in every mode; reports all mismatches at once.
fn check(name: &str) {
    let (tok, v) = load(name);
    assert_eq!(tok.n_vocab(), v.n_vocab, "{name}: n_vocab");
    assert_eq!(tok.bos(), Some(v.bos), "{name}: bos");
    assert_eq!(tok.eos(), Some(v.eos), "{name}: eos");
    assert_eq!(tok.add_bos(), v.add_bos, "{name}: add_bos");

    let mut failures = Vec::new();
    let mut ok = [0usize; 4];
    for c in &v.cases {
        let modes = [
            ("bos+special", true, true, &c.ids_bos_special),
            ("special", false, true, &c.ids_special),
            ("plain", false, false, &c.ids_plain),
        ];
        for (m, (mode, add, parse, want)) in modes.into_iter().enumerate() {
            let got = tok.encode(&c.text, add, parse).unwrap();
            if &got == want {
                ok[m] += 1;
            } else {
                failures.push(format!(
                    "{name} {mode} {}:\n   got  {got:?}\n   want {want:?}",
                    short(&c.text)
                ));
            }
        }
        let opts = DecodeOptions {
            remove_special: false,
            unparse_special: true,
        };
        let detok = tok.decode_bytes(&c.ids_special, opts).unwrap();
        if detok == c.detok.as_bytes() {
            ok[3] += 1;
        } else {
            failures.push(format!(
                "{name} detok {}:\n   got  {:?}\n   want {:?}",
                short(&c.text),
                String::from_utf8_lossy(&detok),
                c.detok
            ));
        }
    }
    let n = v.cases.len();
    eprintln!(
        "{name}: bos+special {}/{n}, special {}/{n}, plain {}/{n}, detok {}/{n}",
        ok[0], ok[1], ok[2], ok[3]
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn deepseek_r1_qwen_matches_llama_cpp() {
    check("deepseek-r1-qwen");
}

#[test]
fn llama_bpe_matches_llama_cpp() {
    check("llama-bpe");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check("gemma3");
}

/// End-of-generation sets and special ids as llama.cpp reports them
/// (`llama_vocab_is_eog`, `llama_vocab_eot` via llama-cpp-python 0.3.36 on the
/// same files).
#[test]
fn special_ids_match_llama_cpp() {
    let (tok, _) = load("deepseek-r1-qwen");
    assert_eq!(tok.eog_tokens(), &[128247, 151643, 151662, 151663, 151664]);
    assert_eq!(tok.eot(), Some(151643));
    assert_eq!(tok.pad(), Some(151654));
    assert_eq!(tok.token_id("<think>"), Some(151648));
    assert_eq!(tok.token_id("</think>"), Some(151649));
    assert!(tok.is_eog(151643) && !tok.is_eog(151648));

    let (tok, _) = load("llama-bpe");
    assert_eq!(tok.eog_tokens(), &[128001, 128009]);
    assert_eq!(tok.eot(), Some(128009));

    let (tok, _) = load("gemma3");
    assert_eq!(tok.eog_tokens(), &[1, 106, 212]);
    assert_eq!(tok.eot(), Some(106));
    assert_eq!(tok.pad(), Some(0));
    assert_eq!(tok.unk(), Some(3));
}
