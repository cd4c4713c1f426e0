//! Tokenizer speed: vocabulary load time and tokenize throughput on the three
//! real vocabularies in `tests/fixtures/tokenizer/`.
//!
//! `cargo bench -p pistil-runtime --bench tokenizer` (no harness: prints the
//! median of repeated runs). Pass `load-only <vocab>` to do a single
//! `Tokenizer::from_gguf` and exit (for instruction counting under qemu).

use pistil_runtime::gguf::{Gguf, LoadMode};
use pistil_runtime::tokenizer::{DecodeOptions, Tokenizer};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const VOCABS: [&str; 3] = ["deepseek-r1-qwen", "llama-bpe", "gemma3"];

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/tokenizer")
        .join(rel)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = f();
        times.push(t.elapsed());
        last = Some(r);
    }
    (median(times), last.expect("runs > 0"))
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("load-only") {
        let name = args.get(1).map(String::as_str).unwrap_or("gemma3");
        let gguf =
            Gguf::open(&fixture(&format!("{name}.vocab.gguf")), LoadMode::Read).expect("open");
        let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer");
        println!("{name}: {} tokens", tok.n_vocab());
        return;
    }

    let inputs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("inputs.json")).expect("inputs.json"),
    )
    .expect("json");
    let long: String = inputs["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .filter_map(|c| c["text"].as_str())
        .max_by_key(|t| t.chars().count())
        .expect("a long input")
        .to_string();
    println!(
        "long input: {} chars, {} bytes",
        long.chars().count(),
        long.len()
    );

    for name in VOCABS {
        let path = fixture(&format!("{name}.vocab.gguf"));
        let (t_open, gguf) = time(20, || Gguf::open(&path, LoadMode::Mmap).expect("open"));
        // Touch the file once so the load is not measuring page-cache misses.
        let (t_load, tok) = time(20, || Tokenizer::from_gguf(&gguf).expect("tokenizer"));
        let (t_enc, ids) = time(200, || tok.encode(&long, true, true).expect("encode"));
        let (t_dec, _) = time(200, || {
            tok.decode_bytes(
                &ids,
                DecodeOptions {
                    remove_special: false,
                    unparse_special: true,
                },
            )
            .expect("decode")
        });
        let per_100 = t_enc.as_secs_f64() * 1e3 / ids.len() as f64 * 100.0;
        println!(
            "{name:>17}: n_vocab {:>6}, merges {:>6}, heap {:>5.1} MiB | gguf open {:>6.2} ms | \
             Tokenizer::from_gguf {:>6.2} ms | encode {} tokens {:>6.3} ms ({:.0} tokens/ms, {:.4} ms per 100 tokens) | decode {:>6.3} ms",
            tok.n_vocab(),
            tok.n_merges(),
            tok.heap_bytes() as f64 / (1 << 20) as f64,
            t_open.as_secs_f64() * 1e3,
            t_load.as_secs_f64() * 1e3,
            ids.len(),
            t_enc.as_secs_f64() * 1e3,
            ids.len() as f64 / (t_enc.as_secs_f64() * 1e3),
            per_100,
            t_dec.as_secs_f64() * 1e3,
        );
    }
}
