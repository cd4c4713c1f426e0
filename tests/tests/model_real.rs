//! The real Gemma 3 270M (Q4_K_M) against llama.cpp
//! (tests/fixtures/real/gemma3-270m-q4_k_m.teacher-forced.json, see its README):
//! teacher-forced top-8 logits at every position of three prompts, and the
//! greedy continuation of "The capital of France is".
//!
//! Under qemu (`PISTIL_UNDER_QEMU=1`) only the capital prompt's first
//! positions run: the 262k-row output layer is slow there.

use pistil_runtime::gguf::{Gguf, LoadMode};
use pistil_runtime::model::{KvType, LoadOptions, Logits, Model, StateOptions};
use pistil_tests::{fixture, real_model};
use serde_json::Value;
use std::sync::Arc;

/// Top-1 must equal llama.cpp's wherever its top1 − top2 margin exceeds this.
const TOP1_MARGIN: f64 = 1.0;
/// Our logit of each of llama.cpp's top-8 ids must be within this of its value
/// (llama.cpp differs from itself by up to 1.05 between batched and token by token),
/// through `gemv` — the same block sums as llama.cpp's classic kernels, which
/// made the reference.
const TOP8_TOL: f32 = 2.0;
/// The same through the prompt GEMMs (the default), which sum each block's f32
/// terms in another order: llama.cpp's own default build (its tiled GEMM, F16
/// cache) lands up to 2.08 from this reference on these prompts
/// (`max_abs_diff_top8_vs_llama_cpp_defaults_kv_f16_fa_auto`); 2.5 = that
/// spread plus 20%.
const TOP8_TOL_GEMM: f32 = 2.5;
/// Median of those differences over a prompt (the README's suggestion; llama.cpp
/// batched vs token by token: up to 0.25).
const TOP8_MEDIAN_TOL: f32 = 0.3;
/// The greedy text must equal llama.cpp's up to its first step whose margin is below this.
const NEAR_TIE: f64 = 0.05;
/// Positions of the capital prompt checked under qemu.
const QEMU_POSITIONS: usize = 8;

fn under_qemu() -> bool {
    std::env::var_os("PISTIL_UNDER_QEMU").is_some_and(|v| v == "1")
}

fn golden() -> Value {
    let p = fixture("real/gemma3-270m-q4_k_m.teacher-forced.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// `prompt_gemm: false` multiplies prompts through `gemv`, as llama.cpp's
/// classic kernels (the reference's settings) do.
fn load(n_threads: usize, prompt_gemm: bool) -> Model {
    let g = Gguf::open(&real_model("gemma3:270m"), LoadMode::Mmap).unwrap();
    Model::load(
        Arc::new(g),
        &LoadOptions {
            n_threads,
            spin: 1000,
            prompt_gemm,
            ..LoadOptions::default()
        },
    )
    .unwrap()
}

fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

fn median(v: &mut [f32]) -> f32 {
    v.sort_by(f32::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Teacher forcing: prompt + llama.cpp's greedy ids in one batch (F32 KV, as
/// the reference), every position's logits vs its top 8; through `gemv` and
/// through the prompt GEMMs.
#[test]
fn gemma3_270m_teacher_forced_top8() {
    let g = golden();
    let mut report = String::from(
        "\n| path | prompt | positions | top-8 max |Δ| | median |Δ| | top-1 checked / equal |\n|---|---|---|---|---|---|\n",
    );
    let mut failures = Vec::new();
    for (path, gemm, tol) in [("gemv", false, TOP8_TOL), ("GEMM", true, TOP8_TOL_GEMM)] {
        let m = load(2, gemm);
        assert_eq!(m.vocab_size(), g["n_vocab"].as_u64().unwrap() as usize);
        teacher_forced(&g, &m, path, tol, &mut report, &mut failures);
    }
    eprintln!("{report}");
    assert!(failures.is_empty(), "{failures:#?}");
}

fn teacher_forced(
    g: &Value,
    m: &Model,
    path: &str,
    tol: f32,
    report: &mut String,
    failures: &mut Vec<String>,
) {
    let n_vocab = m.vocab_size();
    for case in g["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        if under_qemu() && name != "capital" {
            continue;
        }
        let mut input = ids(&case["prompt_ids"]);
        input.extend(ids(&case["greedy_ids"]));
        let positions = case["positions"].as_array().unwrap();
        let n = if under_qemu() {
            QEMU_POSITIONS
        } else {
            positions.len()
        };
        input.truncate(n);
        let mut st = m
            .new_state(&StateOptions {
                n_ctx: 1024,
                n_batch: 512,
                kv_type: KvType::F32,
                logits_rows: n,
            })
            .unwrap();
        let logits = m.forward(&mut st, &input, Logits::All).unwrap();
        let mut diffs = Vec::new();
        let (mut checked, mut equal) = (0, 0);
        for (t, pos) in positions.iter().take(n).enumerate() {
            let row = &logits[t * n_vocab..(t + 1) * n_vocab];
            let top8 = pos["top8"].as_array().unwrap();
            for pair in top8 {
                let id = pair[0].as_u64().unwrap() as usize;
                let want = pair[1].as_f64().unwrap() as f32;
                diffs.push((row[id] - want).abs());
            }
            let margin = pos["margin"].as_f64().unwrap();
            if margin > TOP1_MARGIN {
                checked += 1;
                let want = top8[0][0].as_u64().unwrap() as usize;
                if argmax(row) == want {
                    equal += 1;
                } else {
                    failures.push(format!(
                        "{path} {name} position {t}: top-1 {} vs llama.cpp {want} (margin {margin})",
                        argmax(row)
                    ));
                }
            }
        }
        let max = diffs.iter().copied().fold(0.0, f32::max);
        let med = median(&mut diffs);
        *report +=
            &format!("| {path} | {name} | {n} | {max:.2e} | {med:.2e} | {checked} / {equal} |\n");
        if max > tol {
            failures.push(format!(
                "{path} {name}: top-8 logits differ by up to {max} (budget {tol})"
            ));
        }
        if med > TOP8_MEDIAN_TOL {
            failures.push(format!(
                "{path} {name}: median top-8 difference {med} (budget {TOP8_MEDIAN_TOL})"
            ));
        }
    }
}

/// Greedy "The capital of France is": prompt in one batch, then one token per
/// step (F16 KV, as pistil runs by default, and F32 KV); the ids must equal
/// llama.cpp's up to its first near-tie. Prompt through `gemv` (the reference's
/// classic kernels): a free-running greedy text only stays comparable while the
/// arithmetic is (the GEMM path is held to the teacher-forced budgets above).
#[test]
fn gemma3_270m_greedy_capital() {
    let g = golden();
    let case = &g["cases"][0];
    assert_eq!(case["name"], "capital");
    let prompt = ids(&case["prompt_ids"]);
    let want = ids(&case["greedy_ids"]);
    let margins: Vec<f64> = case["greedy_margins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let first_tie = margins
        .iter()
        .position(|&m| m < NEAR_TIE)
        .unwrap_or(want.len());
    let n_gen = if under_qemu() { 3 } else { want.len() };
    let m = load(2, false);
    for kv_type in [KvType::F32, KvType::F16] {
        let mut st = m
            .new_state(&StateOptions {
                n_ctx: 256,
                n_batch: 64,
                kv_type,
                logits_rows: 1,
            })
            .unwrap();
        let mut got = Vec::new();
        let mut next = argmax(m.forward(&mut st, &prompt, Logits::Last).unwrap()) as u32;
        for _ in 0..n_gen {
            got.push(next);
            if got.len() == n_gen {
                break;
            }
            next = argmax(m.forward(&mut st, &[next], Logits::Last).unwrap()) as u32;
        }
        let same = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        eprintln!(
            "KV {kv_type}: greedy ids equal llama.cpp's for {same} of {n_gen} tokens (its first near-tie: step {first_tie})"
        );
        assert!(
            same >= first_tie.min(n_gen),
            "KV {kv_type}: greedy diverges at step {same} before llama.cpp's first near-tie ({first_tie}): {got:?} vs {want:?}"
        );
    }
}

/// Diagnostic: per-position max |Δ| of the top 8 (`--ignored --nocapture`).
#[test]
#[ignore]
fn gemma3_270m_per_position_report() {
    let g = golden();
    let m = load(2, true);
    let n_vocab = m.vocab_size();
    for case in g["cases"].as_array().unwrap() {
        let mut input = ids(&case["prompt_ids"]);
        input.extend(ids(&case["greedy_ids"]));
        let positions = case["positions"].as_array().unwrap();
        let mut st = m
            .new_state(&StateOptions {
                n_ctx: 1024,
                n_batch: 512,
                kv_type: KvType::F32,
                logits_rows: input.len(),
            })
            .unwrap();
        let logits = m.forward(&mut st, &input, Logits::All).unwrap();
        let v: Vec<String> = positions
            .iter()
            .enumerate()
            .map(|(t, pos)| {
                let row = &logits[t * n_vocab..(t + 1) * n_vocab];
                let d = pos["top8"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (row[p[0].as_u64().unwrap() as usize] - p[1].as_f64().unwrap() as f32).abs()
                    })
                    .fold(0.0, f32::max);
                format!("{d:.0e}")
            })
            .collect();
        eprintln!("{}: {}", case["name"], v.join(" "));
    }
}
