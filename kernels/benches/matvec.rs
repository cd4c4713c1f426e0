//! Matrix-vector throughput of every weight format, next to the machine's
//! memory read bandwidth.
//!
//! ```text
//! cargo bench -p pistil-kernels --bench matvec [-- OPTIONS]
//!   --formats q4_0,q4_k   weight formats to run (default: every format in the table)
//!   --threads 1,2         thread counts for the 4096x4096 runs (default 1,2)
//!   --big-threads N       threads for the 4096x14336 streaming run (default 2)
//!   --iters N             timed runs per measurement (default: enough for ~0.4 s)
//! ```
//! The same options are read from `PISTIL_BENCH_FORMATS`, `PISTIL_BENCH_THREADS`,
//! `PISTIL_BENCH_BIG_THREADS`, `PISTIL_BENCH_ITERS`; `PISTIL_KERNELS` picks the path.
//!
//! - Bandwidth: a streaming read (sum of u64) of a 1 GiB buffer in 64 MiB
//!   timed blocks, with each thread count used; the best block of 5 passes.
//! - 4096x4096: one matrix, repeated (on a desktop it sits in L2/L3: this is
//!   the kernel's compute speed).
//! - 4096x14336: the shape of a 7-8B model's FFN matrix; enough copies are
//!   cycled that the working set is at least 4x the last-level cache, so every
//!   call streams its weights from DRAM, as decode does.
//!
//! Times are the best of many runs. GB/s counts weight bytes only (the activation row is ~1% of it). Activations
//! are quantized once, outside the timing. Weights are random quant bytes with
//! small valid f16 scales. Output: a markdown table on stdout.

use pistil_kernels::matmul::{self, QMatrix};
use pistil_kernels::pool::ThreadPool;
use pistil_kernels::{GgmlType, Kernels};
use std::time::{Duration, Instant};

struct Opts {
    formats: Option<Vec<String>>,
    threads: Vec<usize>,
    big_threads: usize,
    iters: Option<usize>,
}

fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_ascii_lowercase())
        .filter(|x| !x.is_empty())
        .collect()
}

fn opts() -> Opts {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut o = Opts {
        formats: env("PISTIL_BENCH_FORMATS").map(|v| parse_list(&v)),
        threads: env("PISTIL_BENCH_THREADS")
            .map(|v| {
                parse_list(&v)
                    .iter()
                    .filter_map(|t| t.parse().ok())
                    .collect()
            })
            .unwrap_or_else(|| vec![1, 2]),
        big_threads: env("PISTIL_BENCH_BIG_THREADS")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(2),
        iters: env("PISTIL_BENCH_ITERS").and_then(|v| v.trim().parse().ok()),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let val = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--formats" => o.formats = Some(parse_list(&val)),
            "--threads" => {
                o.threads = parse_list(&val)
                    .iter()
                    .filter_map(|t| t.parse().ok())
                    .collect()
            }
            "--big-threads" => o.big_threads = val.parse().unwrap_or(o.big_threads),
            "--iters" => o.iters = val.parse().ok(),
            _ => {
                i += 1; // `--bench` and anything else cargo passes
                continue;
            }
        }
        i += 2;
    }
    o.threads.retain(|&t| t > 0);
    if o.threads.is_empty() {
        o.threads = vec![1];
    }
    o.big_threads = o.big_threads.max(1);
    o
}

/// Last-level cache size in bytes (Linux sysfs), or 32 MiB if unknown.
fn llc_bytes() -> usize {
    let mut best = 0usize;
    for idx in 0..8 {
        let p = format!("/sys/devices/system/cpu/cpu0/cache/index{idx}/size");
        if let Ok(s) = std::fs::read_to_string(&p) {
            let s = s.trim();
            let (num, mult) = match s.strip_suffix('K') {
                Some(n) => (n, 1024),
                None => match s.strip_suffix('M') {
                    Some(n) => (n, 1024 * 1024),
                    None => (s, 1),
                },
            };
            if let Ok(n) = num.parse::<usize>() {
                best = best.max(n * mult);
            }
        }
    }
    if best == 0 {
        32 << 20
    } else {
        best
    }
}

/// Streaming read bandwidth in GB/s with the pool's threads: the 1 GiB buffer
/// is read in 64 MiB blocks (each twice the size of a desktop LLC, and not
/// re-read until the other 960 MiB have passed), each block timed on its own;
/// the best block of `passes` passes over the buffer counts. Short timed
/// pieces and best-of keep other processes' noise out, as for the matvecs.
fn read_bandwidth(pool: &ThreadPool, buf: &[u8], passes: usize) -> f64 {
    const BLOCK: usize = 64 << 20;
    let mut best = f64::MAX;
    for _ in 0..passes {
        for block in buf.chunks_exact(BLOCK) {
            let t = Instant::now();
            std::hint::black_box(read_bytes(pool, block));
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    BLOCK as f64 / best / 1e9
}

/// Sums `bytes` as u64 words with the pool's threads (a plain streaming read).
fn read_bytes(pool: &ThreadPool, bytes: &[u8]) -> u64 {
    let (_, words, _) = bytemuck::pod_align_to::<u8, u64>(bytes);
    let total = std::sync::atomic::AtomicU64::new(0);
    pool.run(&|ith, nth| {
        let (a, b) = pistil_kernels::pool::split_range(words.len(), ith, nth, 1024);
        let mut acc = [0u64; 8];
        for c in words[a..b].chunks_exact(8) {
            for (s, &v) in acc.iter_mut().zip(c) {
                *s = s.wrapping_add(v);
            }
        }
        let v = acc.iter().fold(0u64, |x, &y| x.wrapping_add(y));
        total.fetch_add(v, std::sync::atomic::Ordering::Relaxed);
    });
    total.into_inner()
}

/// Times `f` (already warmed up): `iters` runs, or as many as fit in ~0.4 s
/// (at least 5); returns the best (smallest) seconds per run: on a shared
/// machine the best run is the one least disturbed by other processes.
fn time_it(iters: Option<usize>, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let n = iters.unwrap_or_else(|| {
        let t = Instant::now();
        f();
        let one = t.elapsed().max(Duration::from_micros(1));
        ((0.4 / one.as_secs_f64()) as usize).clamp(5, 2000)
    });
    let mut ts: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    ts[0]
}

fn random_matrix(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let bytes = rows
        * ty.row_bytes(cols)
            .expect("cols is a whole number of blocks");
    let mut v = vec![0u8; bytes];
    assert!(
        matmul::fill_random_weights(ty, seed, &mut v),
        "no random filler for {ty}"
    );
    v
}

fn main() {
    let o = opts();
    let k = match Kernels::try_get() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let formats: Vec<_> = k
        .formats()
        .filter(|f| match &o.formats {
            Some(list) => list
                .iter()
                .any(|n| n == f.weight.name().to_ascii_lowercase().as_str()),
            None => true,
        })
        .copied()
        .collect();
    let max_threads = o
        .threads
        .iter()
        .copied()
        .chain([o.big_threads])
        .max()
        .unwrap_or(1);
    let pools: Vec<ThreadPool> = (1..=max_threads)
        .map(|n| ThreadPool::new(n).expect("thread pool"))
        .collect();
    let pool = |n: usize| &pools[n - 1];

    // --- memory read bandwidth ---
    eprintln!("measuring read bandwidth (1 GiB buffer)...");
    let buf: Vec<u8> = (0..(1usize << 30)).map(|i| (i * 7) as u8).collect();
    let mut bw = vec![0f64; max_threads + 1];
    let mut bw_threads: Vec<usize> = o.threads.clone();
    bw_threads.push(o.big_threads);
    bw_threads.sort_unstable();
    bw_threads.dedup();
    for &t in &bw_threads {
        bw[t] = read_bandwidth(pool(t), &buf, 5);
    }
    drop(buf);

    let llc = llc_bytes();
    let all_names: Vec<String> = k.formats().map(|f| f.weight.to_string()).collect();
    println!("### Kernels: matvec throughput\n");
    println!(
        "kernel path: `{}` (best available: {}); formats registered: {}",
        k.backend,
        k.features.best(),
        all_names.join(", ")
    );
    println!("last-level cache: {} MiB\n", llc >> 20);
    println!("| memory read bandwidth (streaming read of a 1 GiB buffer, best 64 MiB block of 5 passes) | GB/s |");
    println!("|---|---:|");
    for &t in &bw_threads {
        println!(
            "| {t} thread{} | {:.1} |",
            if t > 1 { "s" } else { "" },
            bw[t]
        );
    }
    println!();
    // The cost of one parallel hand-off (what every matrix of a token pays
    // once): the median of many empty jobs (the best one would only show the
    // caller taking over a worker's share before the worker woke up).
    for t in 2..=max_threads {
        let sink = std::sync::atomic::AtomicUsize::new(0);
        let mut ts: Vec<f64> = (0..5000)
            .map(|_| {
                let start = Instant::now();
                pool(t).run(&|ith, _| {
                    sink.fetch_add(ith, std::sync::atomic::Ordering::Relaxed);
                });
                start.elapsed().as_secs_f64()
            })
            .collect();
        ts.sort_by(f64::total_cmp);
        println!(
            "pool.run round trip, empty job, {t} threads: median {:.2} µs, 90th percentile {:.2} µs\n",
            ts[ts.len() / 2] * 1e6,
            ts[ts.len() * 9 / 10] * 1e6
        );
    }

    let mut header = String::from("| format | path | bits/weight |");
    let mut rule = String::from("|---|---|---:|");
    for &t in &o.threads {
        header += &format!(" 4096² {t}T GB/s (% of {t}T bw) |");
        rule += "---:|";
    }
    let bt = o.big_threads;
    header += &format!(" 4096×14336 {bt}T streamed GB/s (% of {bt}T bw) | plain read of those buffers, {bt}T GB/s |");
    rule += "---:|---:|";
    println!("{header}\n{rule}");

    let mut pp_lines = Vec::new();
    for fk in &formats {
        let ty = fk.weight;
        let bpw = ty.block_bytes() as f64 * 8.0 / ty.block_elems() as f64;
        let mut line = format!("| {ty} | {} | {bpw:.2} |", fk.path);
        let cols = 4096;
        // x: a random activation row, quantized once.
        let x: Vec<f32> = (0..14336)
            .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
            .collect();

        // 4096 x 4096, repeated.
        let data = random_matrix(ty, 4096, cols, 1);
        let w = QMatrix::new(k, ty, 4096, cols, &data).expect("matrix");
        let mut xq = vec![0u8; w.act_row_bytes(k).expect("act")];
        matmul::quantize_act(k, fk.act, cols, &x[..cols], &mut xq).expect("quantize");
        let mut y = vec![0f32; 4096];
        for &t in &o.threads {
            let s = time_it(o.iters, || {
                matmul::matvec(pool(t), k, &w, &xq, &mut y).expect("matvec");
            });
            let gbs = data.len() as f64 / s / 1e9;
            line += &format!(" {gbs:.1} ({:.0}%) |", 100.0 * gbs / bw[t]);
            eprintln!("{ty} 4096x4096 {t}T: {:.1} us, {gbs:.1} GB/s", s * 1e6);
        }
        drop(data);

        // 4096 x 14336 (rows x cols as in ggml: 4096 outputs of 14336 inputs, the FFN
        // down projection of an 8B model), cycled through >= 4x LLC of copies.
        let (rows, cols) = (4096, 14336);
        let one = rows * ty.row_bytes(cols).expect("blocks");
        let copies = (4 * llc).div_ceil(one).max(2);
        let mats: Vec<Vec<u8>> = (0..copies)
            .map(|c| random_matrix(ty, rows, cols, 10 + c as u64))
            .collect();
        let ws: Vec<QMatrix> = mats
            .iter()
            .map(|d| QMatrix::new(k, ty, rows, cols, d).expect("matrix"))
            .collect();
        let mut xq = vec![0u8; ws[0].act_row_bytes(k).expect("act")];
        matmul::quantize_act(k, fk.act, cols, &x, &mut xq).expect("quantize");
        let mut y = vec![0f32; rows];
        let mut next = 0;
        let s = time_it(o.iters.map(|n| n.max(copies)), || {
            matmul::matvec(pool(bt), k, &ws[next], &xq, &mut y).expect("matvec");
            next = (next + 1) % copies;
        });
        let gbs = one as f64 / s / 1e9;
        // The same buffers, read plainly by the same threads: what this access
        // pattern (matrix-sized buffers, cycled) allows.
        let mut next = 0;
        let sr = time_it(o.iters.map(|n| n.max(copies)), || {
            std::hint::black_box(read_bytes(pool(bt), &mats[next]));
            next = (next + 1) % copies;
        });
        let rgbs = one as f64 / sr / 1e9;
        line += &format!(" {gbs:.1} ({:.0}%) | {rgbs:.1} |", 100.0 * gbs / bw[bt]);
        eprintln!(
            "{ty} 4096x14336 {bt}T over {copies} copies ({} MiB): {:.1} us, {gbs:.1} GB/s",
            (copies * one) >> 20,
            s * 1e6
        );
        println!("{line}");
        pp_lines.push(prompt_line(k, fk, &pools, o.iters));
    }

    println!("\n#### Prompt path: `matmul` 14336x4096 x 64 tokens vs 64 `matvec` calls\n");
    let mut h = String::from("| format |");
    let mut r = String::from("|---|");
    for t in 1..=pools.len() {
        h += &format!(" matmul {t}T tok/s | matvec×64 {t}T tok/s |");
        r += "---:|---:|";
    }
    println!("{h}\n{r}");
    for l in pp_lines {
        println!("{l}");
    }
}

/// One row of the prompt-path table: tokens per second through one 14336x4096
/// matrix (an 8B model's FFN gate/up, larger than a desktop LLC in every
/// 4-bit-and-up format) with `matmul` (64 tokens at once) and with 64 `matvec` calls.
fn prompt_line(
    k: &Kernels,
    fk: &pistil_kernels::FormatKernels,
    pools: &[ThreadPool],
    iters: Option<usize>,
) -> String {
    let (rows, n, nt) = (14336, 4096, 64);
    let data = random_matrix(fk.weight, rows, n, 3);
    let w = QMatrix::new(k, fk.weight, rows, n, &data).expect("matrix");
    let x: Vec<f32> = (0..n * nt)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let arb = w.act_row_bytes(k).expect("act");
    let mut xq = vec![0u8; arb * nt];
    matmul::quantize_act(k, fk.act, n, &x, &mut xq).expect("quantize");
    let mut y = vec![0f32; rows * nt];
    let mut line = format!("| {} |", fk.weight);
    for p in pools {
        let s = time_it(iters.map(|i| i.min(20)), || {
            matmul::matmul(p, k, &w, &xq, nt, &mut y).expect("matmul");
        });
        let s1 = time_it(iters.map(|i| i.min(20)), || {
            for t in 0..nt {
                matmul::matvec(
                    p,
                    k,
                    &w,
                    &xq[t * arb..(t + 1) * arb],
                    &mut y[t * rows..(t + 1) * rows],
                )
                .expect("matvec");
            }
        });
        line += &format!(" {:.0} | {:.0} |", nt as f64 / s, nt as f64 / s1);
    }
    line
}
