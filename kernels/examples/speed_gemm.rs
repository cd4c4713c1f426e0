//! Prompt-path speed: `matmul::matmul` (the format's GEMM when it has one;
//! `PISTIL_GEMM=0` leaves the GEMMs out of the table)
//! against the per-token `gemv` path, on model-shaped matrices.
//!
//! ```text
//! cargo run --release -p pistil-kernels --example speed_gemm [-- FORMATS [TOKENS [THREADS]]]
//!     FORMATS  comma list (default q4_k,q6_k,q5_0,q8_0,q4_0)
//!     TOKENS   tokens per product (default 128), THREADS (default 1)
//! ```
//! Shapes: 1536×1536, 8960×1536 and 1536×8960 (R1-Distill-Qwen-1.5B) and
//! 2048×640 (Gemma 3 270M). Prints the best of several runs, as GMAC/s and
//! tokens/s through that one matrix, and the GEMM/gemv ratio.

use pistil_kernels::matmul::{self, QMatrix};
use pistil_kernels::pool::ThreadPool;
use pistil_kernels::{GgmlType, Kernels};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let formats = args
        .first()
        .cloned()
        .unwrap_or_else(|| "q4_k,q6_k,q5_0,q8_0,q4_0".into());
    let n_tokens: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(128);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let k = Kernels::get();
    let pool = ThreadPool::new(threads).expect("pool");
    println!(
        "backend {}, {n_tokens} tokens, {threads} thread(s)\n\n| format | shape | GEMM GMAC/s | gemv GMAC/s | GEMM / gemv |\n|---|---|---:|---:|---:|",
        k.backend
    );
    for f in formats.split(',') {
        let Some(ty) = k
            .formats()
            .map(|f| f.weight)
            .find(|t| t.name().eq_ignore_ascii_case(f.trim()))
        else {
            eprintln!("unknown format {f}");
            continue;
        };
        for (rows, cols) in [(1536, 1536), (8960, 1536), (1536, 8960), (2048, 640)] {
            let Some(rb) = ty.row_bytes(cols) else {
                continue;
            };
            let mut data = vec![0u8; rows * rb];
            matmul::fill_random_weights(ty, 1, &mut data);
            let w = QMatrix::new(k, ty, rows, cols, &data).expect("matrix");
            let act = matmul::act_type(k, ty).expect("act");
            let x: Vec<f32> = (0..n_tokens * cols)
                .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
                .collect();
            let arb = w.act_row_bytes(k).expect("act bytes");
            let mut xq = vec![0u8; n_tokens * arb];
            matmul::quantize_act(k, act, cols, &x, &mut xq).expect("quantize");
            let mut y = vec![0f32; rows * n_tokens];
            let best = |f: &mut dyn FnMut()| {
                f();
                let mut b = f64::MAX;
                for _ in 0..5 {
                    let t = Instant::now();
                    f();
                    b = b.min(t.elapsed().as_secs_f64());
                }
                b
            };
            let t_gemm = best(&mut || matmul::matmul(&pool, k, &w, &xq, n_tokens, &mut y).unwrap());
            let mut y1 = vec![0f32; rows];
            let t_gemv = best(&mut || {
                for t in 0..n_tokens {
                    matmul::matvec(&pool, k, &w, &xq[t * arb..(t + 1) * arb], &mut y1).unwrap();
                }
            });
            let macs = (rows * cols * n_tokens) as f64;
            println!(
                "| {ty} | {rows}×{cols} | {:.1} | {:.1} | {:.2}× |",
                macs / t_gemm / 1e9,
                macs / t_gemv / 1e9,
                t_gemv / t_gemm
            );
        }
    }
    let _ = GgmlType::F32;
}
