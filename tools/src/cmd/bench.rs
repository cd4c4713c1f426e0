//! `pistil bench -m MODEL [-p 512] [-n 128] [-t 2,4] [-r 5] [-o md|json]`:
//! prompt processing and generation speed, measured and printed the way
//! llama.cpp's `llama-bench` does, so the two tables compare line by line.
//!
//! - `ppN`: N random tokens (BOS first when the model adds one) processed from
//!   an empty cache, in batches of `-b` (default 512: `pp512` is one batch).
//! - `tgN`: N single-token decodes from an empty cache (BOS, then random tokens).
//! - Each test runs once to warm up (a whole prompt for pp, one token for tg),
//!   then `-r` times; the cache is cleared before every repetition. t/s is
//!   tokens / time per repetition, shown as mean ± sample standard deviation.
//! - The context is `n_prompt + n_gen` of the test, as in llama-bench.
//!
//! `-o json` prints a JSON array with llama-bench's field names
//! (`model_type`, `model_size`, `model_n_params`, `n_threads`, `n_prompt`,
//! `n_gen`, `avg_ns`, `stddev_ns`, `avg_ts`, `stddev_ts`, `samples_ns`,
//! `samples_ts`, `backends`, `cpu_info`, `test_time`, …).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use pistil_kernels::Kernels;
use pistil_runtime::engine::{EngineOptions, LoadMode, LoadedModel};
use pistil_runtime::gguf::{file_type_name, Gguf};
use pistil_runtime::model::{Logits, StateOptions};
use pistil_runtime::plan::KvType;
use serde_json::{json, Value};

use crate::cmd::board::DetectArgs;
use crate::common;

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// llama-bench's markdown table.
    Md,
    /// A JSON array with llama-bench's field names.
    Json,
}

/// Arguments of `pistil bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model: a GGUF file or a downloaded catalog name (default: the board profile's).
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub model: Option<String>,
    /// Prompt lengths to test (comma-separated; 0 = none).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_name = "N,..",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test (comma-separated; 0 = none).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_name = "N,..",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Thread counts to test (comma-separated; default: the board profile's).
    #[arg(
        short = 't',
        long = "threads",
        value_name = "N,..",
        value_delimiter = ','
    )]
    pub threads: Vec<usize>,
    /// Repetitions of each test.
    #[arg(
        short = 'r',
        long = "repetitions",
        value_name = "N",
        default_value_t = 5
    )]
    pub repetitions: usize,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Md)]
    pub output: Format,
    /// Prompt tokens per forward step.
    #[arg(
        short = 'b',
        long = "batch-size",
        value_name = "N",
        default_value_t = 512
    )]
    pub batch_size: usize,
    /// KV cache type: f16, q8_0 or f32.
    #[arg(long = "cache-type", value_name = "TYPE", default_value = "f16")]
    pub cache_type: KvType,
    /// How the weights are loaded: mmap, mlock or none.
    #[arg(long = "load-mode", value_name = "MODE", default_value = "mmap")]
    pub load_mode: LoadMode,
    /// Skip the warm-up run.
    #[arg(long)]
    pub no_warmup: bool,
    /// Also run every generation test with weight products that only read
    /// the weights (no arithmetic): the memory ceiling of decode on this
    /// machine, through the same threads and matrices. Rows marked "read-only".
    #[arg(long)]
    pub ceiling: bool,
    /// Download a missing catalog model without asking.
    #[arg(short = 'y', long)]
    pub yes: bool,
    #[command(flatten)]
    pub detect: DetectArgs,
}

/// One test's results.
struct TestResult {
    n_prompt: usize,
    n_gen: usize,
    n_threads: usize,
    samples_ns: Vec<u64>,
    test_time: String,
}

impl TestResult {
    fn samples_ts(&self) -> Vec<f64> {
        let n = (self.n_prompt + self.n_gen) as f64;
        self.samples_ns
            .iter()
            .map(|&t| if t > 0 { 1e9 * n / t as f64 } else { 0.0 })
            .collect()
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Sample standard deviation (n − 1), 0 for fewer than 2 samples — as llama-bench.
fn stdev(v: &[f64]) -> f64 {
    if v.len() <= 1 {
        return 0.0;
    }
    let m = mean(v);
    let sq = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>();
    (sq / (v.len() - 1) as f64).sqrt()
}

/// llama.cpp's model size label (`llm_type_name`) for the architectures pistil runs.
fn size_label(g: &Gguf) -> String {
    let arch = g.architecture().unwrap_or("?");
    let u = |k: &str| {
        g.get_u32(&format!("{arch}.{k}"))
            .ok()
            .flatten()
            .unwrap_or(0)
    };
    let (n_layer, n_embd, n_head) = (
        u("block_count"),
        u("embedding_length"),
        u("attention.head_count"),
    );
    let n_head_kv = u("attention.head_count_kv");
    let n_vocab = g
        .get_array("tokenizer.ggml.tokens")
        .ok()
        .flatten()
        .map(|a| a.len())
        .unwrap_or(0);
    let s = match (arch, n_layer) {
        ("gemma3", 18) => "270M",
        ("gemma3", 26) => "1B",
        ("gemma3", 34) => "4B",
        ("gemma3", 48) => "12B",
        ("gemma3", 62) => "27B",
        ("qwen2", 24) if n_embd == 1024 => "0.5B",
        ("qwen2", 24) => "1B",
        ("qwen2", 28) if n_embd == 1536 => "1.5B",
        ("qwen2", 28) | ("qwen2", 32) => "7B",
        ("qwen2", 36) => "3B",
        ("qwen2", 40) if n_head == 20 => "4B",
        ("qwen2", 40) => "13B",
        ("qwen2", 48) => "14B",
        ("qwen2", 64) => "32B",
        ("qwen2", 80) => "70B",
        ("qwen3", 28) if n_embd == 1024 => "0.6B",
        ("qwen3", 28) => "1.7B",
        ("qwen3", 36) if n_embd == 2560 => "4B",
        ("qwen3", 36) => "8B",
        ("qwen3", 40) => "14B",
        ("qwen3", 64) => "32B",
        ("llama", 16) | ("llama", 22) => "1B",
        ("llama", 26) | ("llama", 28) => "3B",
        ("llama", 32) if n_vocab == 128256 => "8B",
        ("llama", 32) => "7B",
        ("llama", 40) => "13B",
        ("llama", 48) => "34B",
        ("llama", 60) => "30B",
        ("llama", 80) if n_head == n_head_kv => "65B",
        ("llama", 80) => "70B",
        _ => "?B",
    };
    s.to_string()
}

/// `model_type` as llama-bench prints it: `gemma3 270M Q4_K - Medium`.
fn model_type(g: &Gguf) -> String {
    let arch = g.architecture().unwrap_or("?");
    let ftype = g
        .get_u32("general.file_type")
        .ok()
        .flatten()
        .and_then(file_type_name)
        .unwrap_or_else(|| "unknown type".into());
    format!("{arch} {} {ftype}", size_label(g))
}

fn cpu_info(board: Option<&pistil_boards::Board>) -> String {
    board
        .and_then(|b| {
            b.facts
                .cpu
                .model_name
                .clone()
                .or_else(|| b.facts.cpu.model.clone())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// RFC 3339 UTC time, as llama-bench's `test_time`.
fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// xorshift64* for the random prompt tokens.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % u64::from(n.max(1))) as u32
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.repetitions == 0 {
        bail!("-r must be at least 1");
    }
    let margs = common::ModelArgs {
        model: args.model.clone(),
        ctx_size: None,
        cache_type: Some(args.cache_type),
        load_mode: Some(args.load_mode),
        no_mmap: false,
        batch_size: args.batch_size,
        force: true,
        yes: args.yes,
        detect: args.detect.clone(),
    };
    let (path, _name, board) = common::model_path(&margs)?;
    let gguf = Arc::new(
        Gguf::open(&path, args.load_mode).with_context(|| format!("opening {}", path.display()))?,
    );
    let threads: Vec<usize> = if args.threads.is_empty() {
        vec![board
            .as_ref()
            .map(|b| b.settings.threads)
            .unwrap_or_else(|| EngineOptions::default().n_threads)]
    } else {
        args.threads.clone()
    };
    if threads.contains(&0) {
        bail!("-t: thread counts must be at least 1");
    }
    let mtype = model_type(&gguf);
    let size = gguf.tensor_bytes();
    let n_params = gguf.n_params();
    let backend = Kernels::try_get()
        .map(|k| format!("CPU ({})", k.backend.name()))
        .unwrap_or_else(|_| "CPU".into());
    let cpu = cpu_info(board.as_ref());
    let filename = path.display().to_string();

    let md = args.output == Format::Md;
    if md {
        print_md_header();
    }
    let mut json_rows: Vec<Value> = Vec::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // The real kernels, then (with --ceiling) the read-only table, which only
    // makes sense for generation: a prompt is bound by arithmetic, not reads.
    let mut variants: Vec<(Option<&'static Kernels>, String)> = vec![(None, backend.clone())];
    if args.ceiling {
        let probe = Kernels::read_probe().map_err(|e| anyhow::anyhow!("{e}"))?;
        let name = format!("{} read-only", probe.backend.name());
        variants.push((Some(probe), format!("CPU ({name})")));
    }
    for (&nt, (kernels, backend)) in threads
        .iter()
        .flat_map(|nt| variants.iter().map(move |v| (nt, v)))
    {
        let opts = EngineOptions {
            n_threads: nt,
            n_ctx: 1,
            n_batch: args.batch_size.max(1),
            kv_type: args.cache_type,
            load_mode: args.load_mode,
            spin: true,
            prompt_gemm: true,
        };
        let lm = LoadedModel::from_gguf_with(gguf.clone(), &opts, *kernels)
            .with_context(|| format!("loading {}", path.display()))?;
        let model = &lm.model;
        let n_vocab = model.vocab_size() as u32;
        let bos = lm.tokenizer.bos().filter(|_| lm.tokenizer.add_bos());
        let tests: Vec<(usize, usize)> = args
            .n_prompt
            .iter()
            .filter(|&&p| p > 0 && kernels.is_none())
            .map(|&p| (p, 0))
            .chain(args.n_gen.iter().filter(|&&n| n > 0).map(|&n| (0, n)))
            .collect();
        for (n_prompt, n_gen) in tests {
            let mut state = model
                .new_state(&StateOptions {
                    n_ctx: n_prompt + n_gen,
                    n_batch: args.batch_size.max(1),
                    kv_type: args.cache_type,
                    logits_rows: 1,
                })
                .context("creating the context")?;
            let mut prompt: Vec<u32> = Vec::with_capacity(n_prompt);
            let mut run_once = |state: &mut pistil_runtime::model::State,
                                rng: &mut Rng,
                                np: usize,
                                ng: usize|
             -> anyhow::Result<()> {
                state.clear();
                if np > 0 {
                    prompt.clear();
                    for i in 0..np {
                        prompt.push(match (i, bos) {
                            (0, Some(b)) => b,
                            _ => rng.below(n_vocab),
                        });
                    }
                    model.forward(state, &prompt, Logits::Last)?;
                }
                let mut t = bos.unwrap_or_else(|| rng.below(n_vocab));
                for _ in 0..ng {
                    model.forward(state, &[t], Logits::Last)?;
                    t = rng.below(n_vocab);
                }
                Ok(())
            };
            if !args.no_warmup {
                run_once(&mut state, &mut rng, n_prompt, n_gen.min(1))?;
            }
            let test_time = now_rfc3339();
            let mut samples_ns = Vec::with_capacity(args.repetitions);
            for _ in 0..args.repetitions {
                state.clear();
                let t0 = Instant::now();
                run_once(&mut state, &mut rng, n_prompt, n_gen)?;
                samples_ns.push(t0.elapsed().as_nanos() as u64);
            }
            let r = TestResult {
                n_prompt,
                n_gen,
                n_threads: nt,
                samples_ns,
                test_time,
            };
            if md {
                print_md_row(&mtype, size, n_params, backend, &r);
            } else {
                json_rows.push(json_row(
                    &r, &mtype, size, n_params, backend, &cpu, &filename, &args,
                ));
            }
        }
    }
    if !md {
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(json_rows))?
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn json_row(
    r: &TestResult,
    mtype: &str,
    size: u64,
    n_params: u64,
    backend: &str,
    cpu: &str,
    filename: &str,
    args: &Args,
) -> Value {
    let ns: Vec<f64> = r.samples_ns.iter().map(|&t| t as f64).collect();
    let ts = r.samples_ts();
    json!({
        "build_commit": env!("CARGO_PKG_VERSION"),
        "build_number": 0,
        "cpu_info": cpu,
        "gpu_info": "",
        "backends": backend,
        "model_filename": filename,
        "model_type": mtype,
        "model_size": size,
        "model_n_params": n_params,
        "n_batch": args.batch_size,
        "n_ubatch": args.batch_size,
        "n_threads": r.n_threads,
        "type_k": args.cache_type.name(),
        "type_v": args.cache_type.name(),
        "n_gpu_layers": 0,
        "load_mode": args.load_mode.name(),
        "flash_attn": 0,
        "n_prompt": r.n_prompt,
        "n_gen": r.n_gen,
        "n_depth": 0,
        "test_time": r.test_time,
        "avg_ns": mean(&ns) as u64,
        "stddev_ns": stdev(&ns) as u64,
        "avg_ts": mean(&ts),
        "stddev_ts": stdev(&ts),
        "samples_ns": r.samples_ns,
        "samples_ts": ts,
    })
}

/// Column widths as llama-bench's markdown printer (negative: left-aligned).
const COLUMNS: [(&str, i32); 7] = [
    ("model", -30),
    ("size", 10),
    ("params", 10),
    ("backend", -10),
    ("threads", 7),
    ("test", 15),
    ("t/s", 20),
];

fn cell(s: &str, width: i32) -> String {
    let w = width.unsigned_abs() as usize;
    if width < 0 {
        format!(" {s:<w$} |")
    } else {
        format!(" {s:>w$} |")
    }
}

fn print_md_header() {
    let mut head = String::from("|");
    let mut sep = String::from("|");
    for (name, w) in COLUMNS {
        head.push_str(&cell(name, w));
        let dashes = "-".repeat(w.unsigned_abs() as usize - 1);
        sep.push_str(&format!(" {dashes}{} |", if w > 0 { ":" } else { "-" }));
    }
    println!("{head}\n{sep}");
}

fn print_md_row(mtype: &str, size: u64, n_params: u64, backend: &str, r: &TestResult) {
    let size_s = if size < 1 << 30 {
        format!("{:.2} MiB", size as f64 / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", size as f64 / 1024.0 / 1024.0 / 1024.0)
    };
    let params_s = if n_params < 1_000_000_000 {
        format!("{:.2} M", n_params as f64 / 1e6)
    } else {
        format!("{:.2} B", n_params as f64 / 1e9)
    };
    let test = match (r.n_prompt, r.n_gen) {
        (p, 0) => format!("pp{p}"),
        (0, g) => format!("tg{g}"),
        (p, g) => format!("pp{p}+tg{g}"),
    };
    let ts = r.samples_ts();
    let ts_s = format!("{:.2} ± {:.2}", mean(&ts), stdev(&ts));
    let values = [
        mtype.to_string(),
        size_s,
        params_s,
        backend.to_string(),
        r.n_threads.to_string(),
        test,
        ts_s,
    ];
    let mut row = String::from("|");
    for ((_, w), v) in COLUMNS.iter().zip(values.iter()) {
        row.push_str(&cell(v, *w));
    }
    println!("{row}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_like_llama_bench() {
        assert_eq!(stdev(&[1.0]), 0.0);
        assert!((stdev(&[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
        assert_eq!(mean(&[2.0, 4.0]), 3.0);
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z'));
    }
}
