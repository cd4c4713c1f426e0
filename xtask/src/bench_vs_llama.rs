//! `cargo xtask bench-vs-llama`: pistil against llama.cpp, side by side, in one run.
//!
//! ```text
//! cargo xtask bench-vs-llama [--model PATH|NAME]... [-t 2] [-p 512] [-n 128] [-r 5]
//!     [--pistil BIN] [--python PY] [--bandwidth GBPS] [--no-ttft] [--llama-no-repack]
//!     [--markdown FILE] [--json FILE]
//! cargo xtask bench-vs-llama --insns [--plugin LIB] [--cpus cortex-a76,cortex-a72]
//!     [--insn-tokens 4,12] [--model PATH|NAME]
//! ```
//!
//! Speed (x86 or any host that runs both natively):
//! - pistil is the release build (`cargo build --release -p pistil`), run as
//!   `pistil bench -o json -r 1`; llama.cpp is the installed llama-cpp-python
//!   (`pip install llama-cpp-python` when missing: it compiles llama.cpp, which
//!   takes minutes), driven by `xtask/scripts/llama_bench.py`, which repeats
//!   llama-bench's procedure and defaults through the C API.
//! - Rounds alternate the two (A B, B A, A B, …), one repetition of each test
//!   per process, so a load change on a shared machine hits both alike. Each
//!   figure is the median of the rounds; the ratio is ours / llama.cpp's.
//! - Memory: every benchmark process is sampled (`/proc/PID/status` every
//!   20 ms): peak RSS (VmHWM), and the anonymous part (RssAnon, its peak over
//!   the samples) — the memory beyond the mapped weights (RssFile). The Python
//!   interpreter's own anonymous memory (measured by the driver before it loads
//!   the model) is subtracted from llama.cpp's.
//! - Time to first token from a warm page cache: wall time of
//!   `pistil run -n 1 --raw --temp 0` against the driver's time from before
//!   its model load to its first greedy token (Python's start-up excluded).
//! - With `--ceiling`, each pistil run also times the same decode with weight
//!   products that only read their weights (`pistil bench --ceiling`): a row
//!   of its own, and per round the real decode over the read-only one.
//! - Bandwidth: a 2-thread streaming read of a 1 GiB buffer (best 64 MiB block
//!   of 5 passes, as the kernel bench measures it); each tg figure is also shown
//!   as bytes of weights read per token × t/s as a % of it.
//!
//! Instructions (`--insns`, for the Pi's cores, which we cannot time here):
//! the aarch64 release build of `pistil bench -t 1 -p 0 -n N` under
//! `qemu-aarch64 -cpu CPU` with an instruction-counting TCG plugin
//! (`xtask/insncount/insncount.c`, built with gcc, or `--plugin LIB`), for two
//! token counts A < B: (count(B) − count(A)) / (B − A) instructions per token.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AARCH64: &str = "aarch64-unknown-linux-gnu";
/// llama.cpp reference on gemma3:270m, `-t 1`, cortex-a76, armv8.2-a+dotprod
/// build (instructions per generated token, measured with the same plugin).
const LLAMA_A76_INSNS_REPACK: f64 = 139e6;
const LLAMA_A76_INSNS_NO_REPACK: f64 = 222e6;
const TTFT_PROMPT: &str = "The capital of France is";

struct Opts {
    models: Vec<String>,
    threads: Vec<usize>,
    n_prompt: usize,
    n_gen: usize,
    reps: usize,
    pistil: Option<PathBuf>,
    python: String,
    bandwidth: Option<f64>,
    ttft: bool,
    llama_repack: bool,
    markdown: Option<PathBuf>,
    json: Option<PathBuf>,
    insns: bool,
    ceiling: bool,
    plugin: Option<PathBuf>,
    cpus: Vec<String>,
    insn_tokens: (usize, usize),
}

fn usage() -> &'static str {
    "cargo xtask bench-vs-llama [OPTIONS]\n\n\
     pistil vs llama.cpp (llama-cpp-python) on the same GGUF, alternating runs.\n\n\
     options:\n  \
       -m, --model PATH|NAME   a GGUF file or a model-cache name (gemma3:270m); repeatable\n                          \
                               (default: gemma3:270m, plus the synthetic R1-Distill-Qwen-1.5B\n                          \
                               Q4_K_M in $XDG_CACHE_HOME/pistil/synth when present)\n  \
       -t N[,N..]              threads (default 2)\n  \
       -p N                    prompt tokens (default 512)\n  \
       -n N                    generated tokens (default 128)\n  \
       -r N                    rounds, each one repetition of each tool (default 5)\n  \
       --pistil BIN            use this pistil binary (default: build the release one)\n  \
       --python PY             Python with llama_cpp (default python3)\n  \
       --bandwidth GBPS        skip the read-bandwidth measurement\n  \
       --no-ttft               skip the time-to-first-token runs\n  \
       --llama-no-repack       llama.cpp without weight repacking (default: its default, on)\n  \
       --ceiling               also pistil's read-only decode (`pistil bench --ceiling`) each round\n  \
       --markdown FILE         also write the report as markdown\n  \
       --json FILE             also write every sample as JSON\n  \
       --insns                 aarch64 instructions per token under qemu instead of timings\n  \
       --plugin LIB            qemu instruction-count plugin (default: build xtask/insncount)\n  \
       --cpus A,B              qemu CPU models for --insns (default cortex-a76,cortex-a72)\n  \
       --insn-tokens A,B       generated-token counts whose difference is measured (default 4,12)\n"
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        models: Vec::new(),
        threads: vec![2],
        n_prompt: 512,
        n_gen: 128,
        reps: 5,
        pistil: None,
        python: "python3".into(),
        bandwidth: None,
        ttft: true,
        llama_repack: true,
        markdown: None,
        json: None,
        insns: false,
        ceiling: false,
        plugin: None,
        cpus: vec!["cortex-a76".into(), "cortex-a72".into()],
        insn_tokens: (4, 12),
    };
    let mut i = 0;
    let num = |v: Option<&String>, flag: &str| -> Result<usize> {
        v.with_context(|| format!("{flag} needs a value"))?
            .trim()
            .parse()
            .with_context(|| format!("{flag}: not a number"))
    };
    while i < args.len() {
        let a = args[i].as_str();
        let v = args.get(i + 1);
        let val = || v.cloned().with_context(|| format!("{a} needs a value"));
        let mut takes_value = true;
        match a {
            "-m" | "--model" => o.models.push(val()?),
            "-t" | "--threads" => {
                o.threads = val()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("-t: a comma-separated list of thread counts")?;
                if o.threads.is_empty() || o.threads.contains(&0) {
                    bail!("-t: thread counts must be at least 1");
                }
            }
            "-p" | "--n-prompt" => o.n_prompt = num(v, a)?,
            "-n" | "--n-gen" => o.n_gen = num(v, a)?,
            "-r" | "--repetitions" => o.reps = num(v, a)?.max(1),
            "--pistil" => o.pistil = Some(PathBuf::from(val()?)),
            "--python" => o.python = val()?,
            "--bandwidth" => {
                o.bandwidth = Some(val()?.parse().context("--bandwidth: GB/s as a number")?)
            }
            "--markdown" => o.markdown = Some(PathBuf::from(val()?)),
            "--json" => o.json = Some(PathBuf::from(val()?)),
            "--plugin" => o.plugin = Some(PathBuf::from(val()?)),
            "--cpus" => o.cpus = val()?.split(',').map(|s| s.trim().to_string()).collect(),
            "--insn-tokens" => {
                let v: Vec<usize> = val()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--insn-tokens A,B")?;
                match v[..] {
                    [a, b] if a < b => o.insn_tokens = (a, b),
                    _ => bail!("--insn-tokens: two counts A,B with A < B"),
                }
            }
            "--no-ttft" => {
                o.ttft = false;
                takes_value = false;
            }
            "--llama-no-repack" => {
                o.llama_repack = false;
                takes_value = false;
            }
            "--insns" => {
                o.insns = true;
                takes_value = false;
            }
            "--ceiling" => {
                o.ceiling = true;
                takes_value = false;
            }
            "-h" | "--help" => {
                eprint!("{}", usage());
                std::process::exit(0);
            }
            other => bail!("unknown option {other:?}\n\n{}", usage()),
        }
        i += if takes_value { 2 } else { 1 };
    }
    Ok(o)
}

/// Entry point of `cargo xtask bench-vs-llama`.
pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let models = resolve_models(&o.models)?;
    if o.insns {
        return insns(&o, &models);
    }
    let pistil = match &o.pistil {
        Some(p) => p.clone(),
        None => build_pistil(None)?,
    };
    ensure_llama_cpp(&o.python)?;
    let script = std::env::current_dir()?.join("xtask/scripts/llama_bench.py");
    let bw = match o.bandwidth {
        Some(b) => Bandwidth {
            by_threads: o.threads.iter().map(|&t| (t, b)).collect(),
            given: true,
        },
        None => {
            eprintln!("==> measuring read bandwidth (1 GiB buffer, best 64 MiB block of 5 passes)");
            let mut by_threads = Vec::new();
            let mut ts = o.threads.clone();
            ts.sort_unstable();
            ts.dedup();
            for t in ts {
                let b = read_bandwidth(t)?;
                eprintln!("    {t} thread(s): {b:.1} GB/s");
                by_threads.push((t, b));
            }
            Bandwidth {
                by_threads,
                given: false,
            }
        }
    };

    let mut report = Report::default();
    report.header(&o, &pistil, &bw)?;
    let mut all_json = Vec::new();
    for model in &models {
        let info = gguf_weights(model)
            .with_context(|| format!("reading the tensor table of {}", model.display()))?;
        for &t in &o.threads {
            let r = compare(&o, &pistil, &script, model, t)?;
            report.model_section(&o, model, &info, t, &r, &bw);
            all_json.push(r.to_json(model, t, &info));
        }
        if o.ttft {
            let tt = ttft(&o, &pistil, &script, model)?;
            report.ttft(model, &tt);
            all_json.push(serde_json::json!({
                "model": model.display().to_string(),
                "ttft_ours_s": tt.ours, "ttft_llama_s": tt.llama,
            }));
        }
    }
    println!("{}", report.text);
    if let Some(p) = &o.markdown {
        std::fs::write(p, &report.text).with_context(|| format!("writing {}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &o.json {
        std::fs::write(p, serde_json::to_string_pretty(&Value::Array(all_json))?)
            .with_context(|| format!("writing {}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Models and binaries

/// The model cache directory, as pistil's catalog finds it.
fn model_cache() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("PISTIL_MODELS") {
        return Some(PathBuf::from(d));
    }
    cache_home().map(|c| c.join("pistil/models"))
}

fn cache_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
}

/// The synthetic DeepSeek-R1-Distill-Qwen-1.5B Q4_K_M (see docs/PERFORMANCE.md).
fn synth_r1_1p5b() -> Option<PathBuf> {
    cache_home().map(|c| c.join("pistil/synth/deepseek-r1-distill-qwen-1.5b-q4_k_m.gguf"))
}

fn resolve_models(names: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let wanted: Vec<String> = if names.is_empty() {
        let mut v = vec!["gemma3:270m".to_string()];
        if let Some(s) = synth_r1_1p5b().filter(|p| p.exists()) {
            v.push(s.display().to_string());
        } else {
            eprintln!(
                "note: the synthetic R1-Distill-Qwen-1.5B file is not in the cache; \
                 docs/PERFORMANCE.md says how to make it (or pass --model)"
            );
        }
        v
    } else {
        names.to_vec()
    };
    for n in wanted {
        let p = PathBuf::from(&n);
        if p.is_file() {
            out.push(p);
            continue;
        }
        let cached = model_cache().map(|d| d.join(format!("{}.gguf", n.replace(':', "-"))));
        match cached {
            Some(c) if c.is_file() => out.push(c),
            _ => bail!(
                "model {n:?}: not a file, and not in the model cache ({}); \
                 `pistil pull {n}` fetches catalog models",
                model_cache()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| "no cache directory".into())
            ),
        }
    }
    Ok(out)
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Builds the release `pistil` (for `target`, or the host) and returns its path.
fn build_pistil(target: Option<&str>) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "-p", "pistil"]);
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    eprintln!(
        "==> cargo build --release -p pistil{}",
        target.map(|t| format!(" --target {t}")).unwrap_or_default()
    );
    let s = cmd.status().context("starting cargo")?;
    if !s.success() {
        bail!("building pistil failed ({s})");
    }
    let mut p = target_dir();
    if let Some(t) = target {
        p = p.join(t);
    }
    let p = p.join("release/pistil");
    if !p.is_file() {
        bail!("the build did not leave {}", p.display());
    }
    Ok(p)
}

/// Makes sure `python -c "import llama_cpp"` works, installing
/// llama-cpp-python with pip when it does not.
fn ensure_llama_cpp(python: &str) -> Result<()> {
    let ok = |py: &str| {
        Command::new(py)
            .args(["-c", "import llama_cpp"])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if ok(python) {
        return Ok(());
    }
    eprintln!(
        "==> llama_cpp is not importable by {python}: `{python} -m pip install llama-cpp-python`\n    \
         (pip compiles llama.cpp for this CPU: this takes several minutes)"
    );
    let s = Command::new(python)
        .args(["-m", "pip", "install", "llama-cpp-python"])
        .status()
        .with_context(|| format!("starting {python} -m pip"))?;
    if !s.success() || !ok(python) {
        bail!("could not install llama-cpp-python with {python} -m pip ({s})");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Running a process while sampling its memory

/// Memory fields of /proc/PID/status, kB.
#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    hwm: u64,
    rss_anon: u64,
    rss_file: u64,
}

fn read_status(pid: u32) -> Option<Mem> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut m = Mem::default();
    let mut seen = 0;
    for line in s.lines() {
        let (k, v) = line.split_once(':')?;
        let kb = || v.split_whitespace().next().and_then(|x| x.parse().ok());
        match k {
            "VmHWM" => {
                m.hwm = kb()?;
                seen += 1
            }
            "RssAnon" => {
                m.rss_anon = kb()?;
                seen += 1
            }
            "RssFile" => {
                m.rss_file = kb()?;
                seen += 1
            }
            _ => {}
        }
    }
    (seen == 3).then_some(m)
}

/// What a sampled process left: its stdout, wall time, the last memory sample
/// and the peak anonymous memory over all samples.
struct Sampled {
    stdout: String,
    wall: Duration,
    last: Mem,
    peak_anon: u64,
    peak_file: u64,
}

fn run_sampled(cmd: &mut Command) -> Result<Sampled> {
    let desc = format!("{cmd:?}");
    let t0 = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {desc}"))?;
    let pid = child.id();
    let mut out = child.stdout.take().context("child stdout")?;
    let mut err = child.stderr.take().context("child stderr")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let ereader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut last = Mem::default();
    let mut peak_anon = 0;
    let mut peak_file = 0;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if let Some(m) = read_status(pid) {
            peak_anon = peak_anon.max(m.rss_anon);
            peak_file = peak_file.max(m.rss_file);
            last = m;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = t0.elapsed();
    let stdout = reader.join().unwrap_or_default();
    let stderr = ereader.join().unwrap_or_default();
    if !status.success() {
        bail!("{desc} failed ({status}):\n{stderr}");
    }
    Ok(Sampled {
        stdout,
        wall,
        last,
        peak_anon,
        peak_file,
    })
}

// ---------------------------------------------------------------------------
// The comparison

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    Ours,
    Llama,
}

#[derive(Default)]
struct Side {
    /// Seconds per repetition, one per round.
    pp_s: Vec<f64>,
    tg_s: Vec<f64>,
    /// pistil with `--ceiling`: the read-only decode's seconds per repetition.
    ceiling_tg_s: Vec<f64>,
    /// Peak RSS (VmHWM) and anonymous memory per process, kB.
    hwm: Vec<u64>,
    anon: Vec<u64>,
    file: Vec<u64>,
    /// llama.cpp only: the interpreter's anonymous memory before the model load.
    baseline_anon: Vec<u64>,
    info: Option<Value>,
}

struct Comparison {
    ours: Side,
    llama: Side,
    n_prompt: usize,
    n_gen: usize,
}

fn compare(
    o: &Opts,
    pistil: &Path,
    script: &Path,
    model: &Path,
    threads: usize,
) -> Result<Comparison> {
    let mut c = Comparison {
        ours: Side::default(),
        llama: Side::default(),
        n_prompt: o.n_prompt,
        n_gen: o.n_gen,
    };
    let name = model
        .file_name()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    for round in 0..o.reps {
        let order = if round % 2 == 0 {
            [Tool::Ours, Tool::Llama]
        } else {
            [Tool::Llama, Tool::Ours]
        };
        for tool in order {
            eprintln!(
                "==> {name}, {threads} thread(s), round {}/{}: {}",
                round + 1,
                o.reps,
                if tool == Tool::Ours {
                    "pistil"
                } else {
                    "llama.cpp"
                }
            );
            match tool {
                Tool::Ours => {
                    let mut cmd = Command::new(pistil);
                    cmd.arg("bench").arg("-m").arg(model);
                    cmd.args(["-t", &threads.to_string(), "-r", "1", "-o", "json"]);
                    cmd.args(["-p", &o.n_prompt.to_string(), "-n", &o.n_gen.to_string()]);
                    if o.ceiling {
                        cmd.arg("--ceiling");
                    }
                    let s = run_sampled(&mut cmd)?;
                    let v: Value = serde_json::from_str(s.stdout.trim())
                        .with_context(|| format!("pistil bench printed no JSON:\n{}", s.stdout))?;
                    take_samples(&mut c.ours, &v)?;
                    push_mem(&mut c.ours, &s, 0);
                    c.ours.info.get_or_insert(v);
                }
                Tool::Llama => {
                    let mut cmd = Command::new(&o.python);
                    cmd.arg(script).arg("bench").arg("--model").arg(model);
                    cmd.args(["-t", &threads.to_string(), "-r", "1"]);
                    cmd.args(["-p", &o.n_prompt.to_string(), "-n", &o.n_gen.to_string()]);
                    if !o.llama_repack {
                        cmd.arg("--no-repack");
                    }
                    let s = run_sampled(&mut cmd)?;
                    let v: Value = serde_json::from_str(s.stdout.trim()).with_context(|| {
                        format!("the llama.cpp driver printed no JSON:\n{}", s.stdout)
                    })?;
                    let tests = v.get("tests").cloned().unwrap_or(Value::Null);
                    take_samples(&mut c.llama, &tests)?;
                    let base = v["baseline"]["RssAnon"].as_u64().unwrap_or(0);
                    push_mem(&mut c.llama, &s, base);
                    c.llama.info.get_or_insert(v);
                }
            }
        }
    }
    Ok(c)
}

/// Appends the seconds of the pp and tg rows (`n_prompt`/`n_gen`, `samples_ns`)
/// of a llama-bench-like JSON array; the tg rows of `pistil bench --ceiling`'s
/// read-only decode (backend "… read-only") go to `ceiling_tg_s`.
fn take_samples(side: &mut Side, rows: &Value) -> Result<()> {
    let rows = rows.as_array().context("expected a JSON array of tests")?;
    for row in rows {
        let np = row["n_prompt"].as_u64().unwrap_or(0);
        let ng = row["n_gen"].as_u64().unwrap_or(0);
        let read_only = row["backends"]
            .as_str()
            .is_some_and(|b| b.contains("read-only"));
        let ns = row["samples_ns"]
            .as_array()
            .context("a test without samples_ns")?;
        for s in ns.iter().filter_map(Value::as_f64) {
            match (np, ng) {
                (p, 0) if p > 0 && !read_only => side.pp_s.push(s / 1e9),
                (0, g) if g > 0 && read_only => side.ceiling_tg_s.push(s / 1e9),
                (0, g) if g > 0 => side.tg_s.push(s / 1e9),
                _ => {}
            }
        }
    }
    Ok(())
}

fn push_mem(side: &mut Side, s: &Sampled, baseline_anon: u64) {
    side.hwm.push(s.last.hwm);
    side.anon.push(s.peak_anon);
    side.file.push(s.peak_file);
    side.baseline_anon.push(baseline_anon);
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, 0.0);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    if v.len() < 2 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64;
    (m, var.sqrt())
}

fn median_u(v: &[u64]) -> f64 {
    median(&v.iter().map(|&x| x as f64).collect::<Vec<_>>())
}

impl Comparison {
    fn tps(&self, tool: Tool, pp: bool) -> Vec<f64> {
        let side = if tool == Tool::Ours {
            &self.ours
        } else {
            &self.llama
        };
        let (n, s) = if pp {
            (self.n_prompt, &side.pp_s)
        } else {
            (self.n_gen, &side.tg_s)
        };
        s.iter().map(|&t| n as f64 / t).collect()
    }

    fn to_json(&self, model: &Path, threads: usize, info: &WeightInfo) -> Value {
        let side = |s: &Side| {
            serde_json::json!({
                "pp_s": s.pp_s, "tg_s": s.tg_s, "ceiling_tg_s": s.ceiling_tg_s, "vm_hwm_kb": s.hwm, "peak_rss_anon_kb": s.anon,
                "rss_file_kb": s.file, "interpreter_anon_kb": s.baseline_anon,
            })
        };
        serde_json::json!({
            "model": model.display().to_string(),
            "threads": threads,
            "n_prompt": self.n_prompt,
            "n_gen": self.n_gen,
            "weight_bytes_per_token": info.bytes_per_token,
            "ours": side(&self.ours),
            "llama": side(&self.llama),
            "llama_settings": self.llama.info.as_ref().map(|v| v["settings"].clone()),
        })
    }
}

// ---------------------------------------------------------------------------
// Time to first token

struct Ttft {
    ours: Vec<f64>,
    llama: Vec<f64>,
}

fn ttft(o: &Opts, pistil: &Path, script: &Path, model: &Path) -> Result<Ttft> {
    let t = o.threads.first().copied().unwrap_or(2).to_string();
    let ours = || {
        let mut c = Command::new(pistil);
        c.arg("run").arg("-m").arg(model);
        c.args([
            "-p",
            TTFT_PROMPT,
            "-n",
            "1",
            "-t",
            &t,
            "-c",
            "512",
            "--raw",
            "--temp",
            "0",
        ]);
        c
    };
    let llama = || {
        let mut c = Command::new(&o.python);
        c.arg(script).arg("ttft").arg("--model").arg(model);
        c.args(["-t", &t, "--prompt", TTFT_PROMPT]);
        if !o.llama_repack {
            c.arg("--no-repack");
        }
        c
    };
    eprintln!("==> time to first token: warming the page cache");
    run_sampled(&mut ours())?;
    run_sampled(&mut llama())?;
    let mut r = Ttft {
        ours: Vec::new(),
        llama: Vec::new(),
    };
    for round in 0..o.reps {
        for first in [round % 2 == 0, round % 2 != 0] {
            if first {
                r.ours.push(run_sampled(&mut ours())?.wall.as_secs_f64());
            } else {
                let s = run_sampled(&mut llama())?;
                let v: Value = serde_json::from_str(s.stdout.trim())
                    .context("the llama.cpp driver printed no JSON")?;
                r.llama.push(
                    v["load_to_first_token_s"]
                        .as_f64()
                        .context("load_to_first_token_s")?,
                );
            }
        }
    }
    Ok(r)
}

// ---------------------------------------------------------------------------
// Memory bandwidth

struct Bandwidth {
    by_threads: Vec<(usize, f64)>,
    given: bool,
}

impl Bandwidth {
    fn get(&self, t: usize) -> Option<f64> {
        self.by_threads.iter().find(|(n, _)| *n == t).map(|x| x.1)
    }
}

/// Streaming read bandwidth in GB/s with `threads` threads, as the kernel
/// bench measures it: a 1 GiB buffer read in 64 MiB blocks, each block split
/// among the threads and timed on its own; the best block of 5 passes.
fn read_bandwidth(threads: usize) -> Result<f64> {
    use std::sync::{Barrier, Mutex};
    const BLOCK: usize = 64 << 20;
    const WORDS: usize = (1 << 30) / 8;
    let buf: Vec<u64> = (0..WORDS as u64).map(|i| i.wrapping_mul(0x9E37)).collect();
    let n_blocks = WORDS * 8 / BLOCK;
    let words_per_block = BLOCK / 8;
    let barrier = Barrier::new(threads);
    let best = Mutex::new(f64::MAX);
    std::thread::scope(|s| {
        for ith in 0..threads {
            let (buf, barrier, best) = (&buf, &barrier, &best);
            s.spawn(move || {
                let mut sink = 0u64;
                for _pass in 0..5 {
                    for b in 0..n_blocks {
                        let blk = &buf[b * words_per_block..(b + 1) * words_per_block];
                        let per = words_per_block / threads;
                        let mine = &blk[ith * per..(ith + 1) * per];
                        barrier.wait();
                        let t = Instant::now();
                        let mut acc = [0u64; 8];
                        for c in mine.chunks_exact(8) {
                            for (a, &x) in acc.iter_mut().zip(c) {
                                *a = a.wrapping_add(x);
                            }
                        }
                        sink = sink.wrapping_add(acc.iter().fold(0, |x, &y| x.wrapping_add(y)));
                        barrier.wait();
                        if ith == 0 {
                            let e = t.elapsed().as_secs_f64();
                            let mut g = best.lock().unwrap_or_else(|p| p.into_inner());
                            *g = g.min(e);
                        }
                    }
                }
                std::hint::black_box(sink);
            });
        }
    });
    let best = best.into_inner().unwrap_or_else(|p| p.into_inner());
    if !(best > 0.0 && best.is_finite()) {
        return Err(anyhow!("bandwidth measurement failed"));
    }
    Ok(BLOCK as f64 / best / 1e9)
}

// ---------------------------------------------------------------------------
// Bytes of weights read per generated token, from the GGUF tensor table

struct WeightInfo {
    /// Every tensor's data, except the token embedding when a separate output
    /// matrix exists (decode reads one embedding row).
    bytes_per_token: u64,
    total: u64,
    arch: String,
}

/// Reads the tensor table of a GGUF file (the sizes come from the offsets:
/// each tensor runs to the next one's start, the last to the end of the file).
fn gguf_weights(path: &Path) -> Result<WeightInfo> {
    use std::io::{BufReader, Seek};
    let f = std::fs::File::open(path)?;
    let file_len = f.metadata()?.len();
    let mut r = BufReader::new(f);
    let u32_ = |r: &mut BufReader<std::fs::File>| -> Result<u32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    };
    let u64_ = |r: &mut BufReader<std::fs::File>| -> Result<u64> {
        let mut b = [0u8; 8];
        r.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    };
    let string = |r: &mut BufReader<std::fs::File>| -> Result<String> {
        let n = u64_(r)?;
        if n > 1 << 20 {
            bail!("string of {n} bytes");
        }
        let mut b = vec![0u8; n as usize];
        r.read_exact(&mut b)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    };
    if u32_(&mut r)? != u32::from_le_bytes(*b"GGUF") {
        bail!("not a GGUF file");
    }
    let version = u32_(&mut r)?;
    if version < 2 {
        bail!("GGUF version {version} is not supported");
    }
    let n_tensors = u64_(&mut r)?;
    let n_kv = u64_(&mut r)?;
    let mut alignment = 32u64;
    let mut arch = String::new();
    // Skips (or reads) one metadata value of type `ty`.
    fn skip(r: &mut BufReader<std::fs::File>, ty: u32) -> Result<Option<u64>> {
        let fixed = |ty: u32| match ty {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        if let Some(n) = fixed(ty) {
            let mut b = [0u8; 8];
            r.read_exact(&mut b[..n])?;
            return Ok(Some(u64::from_le_bytes(b)));
        }
        match ty {
            8 => {
                let mut b = [0u8; 8];
                r.read_exact(&mut b)?;
                r.seek_relative(i64::try_from(u64::from_le_bytes(b))?)?;
            }
            9 => {
                let mut b = [0u8; 4];
                r.read_exact(&mut b)?;
                let et = u32::from_le_bytes(b);
                let mut b = [0u8; 8];
                r.read_exact(&mut b)?;
                let n = u64::from_le_bytes(b);
                match fixed(et) {
                    Some(sz) => r.seek_relative(i64::try_from(n * sz as u64)?)?,
                    None => {
                        for _ in 0..n {
                            skip(r, et)?;
                        }
                    }
                }
            }
            _ => bail!("unknown GGUF value type {ty}"),
        }
        Ok(None)
    }
    for _ in 0..n_kv {
        let key = string(&mut r)?;
        let ty = u32_(&mut r)?;
        if key == "general.architecture" && ty == 8 {
            arch = string(&mut r)?;
            continue;
        }
        let v = skip(&mut r, ty)?;
        if key == "general.alignment" {
            alignment = v.unwrap_or(32).max(1);
        }
    }
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = string(&mut r)?;
        let nd = u32_(&mut r)?;
        for _ in 0..nd {
            u64_(&mut r)?;
        }
        let _ty = u32_(&mut r)?;
        let off = u64_(&mut r)?;
        tensors.push((off, name));
    }
    let pos = r.stream_position()?;
    let data = pos.div_ceil(alignment) * alignment;
    tensors.sort();
    let mut total = 0;
    let mut embd = 0;
    let mut has_output = false;
    for (i, (off, name)) in tensors.iter().enumerate() {
        let end = tensors.get(i + 1).map(|t| t.0).unwrap_or(file_len - data);
        let size = end.saturating_sub(*off);
        total += size;
        if name == "token_embd.weight" {
            embd = size;
        }
        if name == "output.weight" {
            has_output = true;
        }
    }
    Ok(WeightInfo {
        bytes_per_token: if has_output { total - embd } else { total },
        total,
        arch,
    })
}

// ---------------------------------------------------------------------------
// The report

#[derive(Default)]
struct Report {
    text: String,
}

fn cmd_output(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        self.text.push_str(s.as_ref());
        self.text.push('\n');
    }

    fn header(&mut self, o: &Opts, pistil: &Path, bw: &Bandwidth) -> Result<()> {
        let date = cmd_output(Command::new("date").arg("-u"));
        let commit = cmd_output(Command::new("git").args(["rev-parse", "--short", "HEAD"]));
        let dirty = !cmd_output(Command::new("git").args([
            "status",
            "--porcelain",
            "--untracked-files=no",
        ]))
        .is_empty();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|x| x.1.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.into());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        self.line("## pistil vs llama.cpp (`cargo xtask bench-vs-llama`)\n");
        self.line(format!("- Date: {date}"));
        self.line(format!(
            "- Commit: `{commit}`{}",
            if dirty {
                " (with uncommitted changes in the tree)"
            } else {
                ""
            }
        ));
        self.line(format!(
            "- Machine: {cpu}, {cores} CPUs seen; load average at the start: {}",
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        ));
        self.line(format!("- pistil: `{}`", pistil.display()));
        let args: Vec<String> = std::env::args().skip(1).collect();
        self.line(format!("- Command: `cargo xtask {}`", args.join(" ")));
        self.line(format!(
            "- Method: {} rounds alternating the two tools (A B, B A, …), one repetition of \
             pp{} and tg{} per process; medians over the rounds. llama.cpp: llama-cpp-python's \
             build, llama-bench's defaults (n_batch 2048, n_ubatch 512, KV f16, flash attention \
             auto, weight repacking {}, ggml thread pool with poll 50).",
            o.reps,
            o.n_prompt,
            o.n_gen,
            if o.llama_repack { "on" } else { "off" }
        ));
        let bws: Vec<String> = bw
            .by_threads
            .iter()
            .map(|(t, b)| format!("{b:.1} GB/s with {t} thread(s)"))
            .collect();
        self.line(format!(
            "- Read bandwidth: {}{}",
            bws.join(", "),
            if bw.given {
                " (given with --bandwidth)"
            } else {
                " (1 GiB streaming read, best 64 MiB block)"
            }
        ));
        self.line("");
        Ok(())
    }

    fn model_section(
        &mut self,
        o: &Opts,
        model: &Path,
        info: &WeightInfo,
        threads: usize,
        c: &Comparison,
        bw: &Bandwidth,
    ) {
        let mtype = c
            .ours
            .info
            .as_ref()
            .and_then(|v| v.get(0))
            .and_then(|r| r["model_type"].as_str())
            .unwrap_or(&info.arch)
            .to_string();
        let llama_sys = c
            .llama
            .info
            .as_ref()
            .and_then(|v| v["system_info"].as_str())
            .unwrap_or("")
            .to_string();
        let ours_backend = c
            .ours
            .info
            .as_ref()
            .and_then(|v| v.get(0))
            .and_then(|r| r["backends"].as_str())
            .unwrap_or("CPU")
            .to_string();
        self.line(format!(
            "### {mtype} — `{}`, {threads} thread(s)\n",
            model
                .file_name()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default()
        ));
        self.line(format!(
            "Weights {:.1} MiB; read per generated token {:.1} MiB.{}\n",
            info.total as f64 / 1048576.0,
            info.bytes_per_token as f64 / 1048576.0,
            if llama_sys.is_empty() {
                String::new()
            } else {
                format!(" llama.cpp system info: `{llama_sys}`")
            }
        ));
        self.line("| tool | backend | test | t/s median | t/s mean ± sd | ours / llama.cpp |");
        self.line("|---|---|---|---:|---:|---:|");
        for (pp, test) in [
            (true, format!("pp{}", o.n_prompt)),
            (false, format!("tg{}", o.n_gen)),
        ] {
            if (pp && o.n_prompt == 0) || (!pp && o.n_gen == 0) {
                continue;
            }
            let ours = c.tps(Tool::Ours, pp);
            let llama = c.tps(Tool::Llama, pp);
            let (mo, so) = mean_sd(&ours);
            let (ml, sl) = mean_sd(&llama);
            let ratio = median(&ours) / median(&llama);
            self.line(format!(
                "| pistil | {ours_backend} | {test} | {:.2} | {mo:.2} ± {so:.2} | **{ratio:.2}×** |",
                median(&ours)
            ));
            self.line(format!(
                "| llama.cpp | CPU | {test} | {:.2} | {ml:.2} ± {sl:.2} | |",
                median(&llama)
            ));
            let ceiling: Vec<f64> = c
                .ours
                .ceiling_tg_s
                .iter()
                .map(|&t| c.n_gen as f64 / t)
                .collect();
            if !pp && !ceiling.is_empty() {
                let (mc, sc) = mean_sd(&ceiling);
                self.line(format!(
                    "| pistil, weights only read (`--ceiling`) | {ours_backend} read-only | {test} | {:.2} | \
                     {mc:.2} ± {sc:.2} | {:.2}× |",
                    median(&ceiling),
                    median(&ceiling) / median(&llama)
                ));
            }
        }
        if !c.ours.ceiling_tg_s.is_empty() && o.n_gen > 0 {
            // Per round: the real decode over the read-only one of the same process.
            let per_round: Vec<f64> = c
                .ours
                .tg_s
                .iter()
                .zip(&c.ours.ceiling_tg_s)
                .map(|(r, q)| q / r)
                .collect();
            self.line(format!(
                "\npistil's decode / its read-only decode (the same process, per round): median {:.2} \
                 (rounds: {}). Near 1: the weights' arithmetic costs nothing beyond reading them \
                 through this pipeline.",
                median(&per_round),
                per_round.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")
            ));
        }
        if o.n_gen > 0 {
            if let Some(b) = bw.get(threads) {
                let gb = info.bytes_per_token as f64 / 1e9;
                let ours = median(&c.tps(Tool::Ours, false));
                let llama = median(&c.tps(Tool::Llama, false));
                self.line(format!(
                    "\ntg as a share of the read bandwidth ({b:.1} GB/s, {threads}T): pistil {:.1} GB/s \
                     = **{:.0}%**, llama.cpp {:.1} GB/s = {:.0}% (limit {:.1} t/s).",
                    ours * gb,
                    100.0 * ours * gb / b,
                    llama * gb,
                    100.0 * llama * gb / b,
                    b / gb
                ));
            }
        }
        let mib = |kb: f64| kb / 1024.0;
        let base = median_u(&c.llama.baseline_anon);
        self.line("\n| memory (median over the processes) | pistil | llama.cpp |");
        self.line("|---|---:|---:|");
        self.line(format!(
            "| peak RSS (VmHWM) | {:.1} MiB | {:.1} MiB |",
            mib(median_u(&c.ours.hwm)),
            mib(median_u(&c.llama.hwm))
        ));
        self.line(format!(
            "| peak mapped-file resident (RssFile) | {:.1} MiB | {:.1} MiB |",
            mib(median_u(&c.ours.file)),
            mib(median_u(&c.llama.file))
        ));
        self.line(format!(
            "| peak anonymous memory (RssAnon) | {:.1} MiB | {:.1} MiB |",
            mib(median_u(&c.ours.anon)),
            mib(median_u(&c.llama.anon))
        ));
        let ours_beyond = median_u(&c.ours.anon);
        let llama_beyond = median(
            &c.llama
                .anon
                .iter()
                .zip(&c.llama.baseline_anon)
                .map(|(&a, &b)| a.saturating_sub(b) as f64)
                .collect::<Vec<_>>(),
        );
        self.line(format!(
            "| **beyond the mapped weights** (llama.cpp: minus the Python interpreter's {:.1} MiB) | **{:.1} MiB** | **{:.1} MiB** |",
            mib(base),
            mib(ours_beyond),
            mib(llama_beyond)
        ));
        self.line("");
    }

    fn ttft(&mut self, model: &Path, t: &Ttft) {
        self.line(format!(
            "Time to first token, warm page cache, `{}` (prompt {TTFT_PROMPT:?}, median of {}): \
             pistil {:.3} s (`pistil run -n 1` wall time), llama.cpp {:.3} s (model load + \
             context + prompt + first token, in process; Python start-up excluded) — ratio {:.2}×.\n",
            model.file_name().map(|s| s.to_string_lossy()).unwrap_or_default(),
            t.ours.len(),
            median(&t.ours),
            median(&t.llama),
            median(&t.ours) / median(&t.llama)
        ));
    }
}

// ---------------------------------------------------------------------------
// aarch64 instructions per token

fn insns(o: &Opts, models: &[PathBuf]) -> Result<()> {
    let bin = match &o.pistil {
        Some(p) => p.clone(),
        None => build_pistil(Some(AARCH64))?,
    };
    let plugin = match &o.plugin {
        Some(p) => p.clone(),
        None => build_plugin()?,
    };
    let sysroot =
        std::env::var("PISTIL_QEMU_SYSROOT").unwrap_or_else(|_| "/usr/aarch64-linux-gnu".into());
    let (a, b) = o.insn_tokens;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "## aarch64 instructions per generated token (qemu-aarch64 + instruction-count plugin)\n"
    );
    let _ = writeln!(
        text,
        "`pistil bench -t 1 -p 0 -n N -r 1` under `qemu-aarch64 -cpu CPU`, N = {a} and {b}: \
         (count({b}) − count({a})) / {}.\n",
        b - a
    );
    let _ = writeln!(text, "| model | cpu | kernels | instructions/token | vs llama.cpp a76 (139 M repack / 222 M plain) |");
    let _ = writeln!(text, "|---|---|---|---:|---:|");
    for model in models {
        for cpu in &o.cpus {
            let count = |n: usize| -> Result<u64> {
                let out = std::env::temp_dir()
                    .join(format!("pistil-insns-{}-{cpu}-{n}.txt", std::process::id()));
                let mut c = Command::new("qemu-aarch64");
                c.args(["-cpu", cpu, "-L", &sysroot, "-plugin"])
                    .arg(&plugin)
                    .args(["-d", "plugin", "-D"])
                    .arg(&out)
                    .arg(&bin)
                    .arg("bench")
                    .arg("-m")
                    .arg(model)
                    .args(["-t", "1", "-p", "0", "-n", &n.to_string(), "-r", "1"]);
                eprintln!("==> {cpu}: {n} tokens");
                let s = c
                    .output()
                    .context("starting qemu-aarch64 (apt install qemu-user)")?;
                if !s.status.success() {
                    bail!(
                        "qemu run failed ({}): {}",
                        s.status,
                        String::from_utf8_lossy(&s.stderr)
                    );
                }
                let log = std::fs::read_to_string(&out)
                    .with_context(|| format!("the plugin wrote no {}", out.display()))?;
                let _ = std::fs::remove_file(&out);
                log.lines()
                    .find_map(|l| l.strip_prefix("insns: "))
                    .and_then(|v| v.trim().parse().ok())
                    .with_context(|| format!("no `insns: N` line in the plugin output: {log}"))
            };
            let ca = count(a)?;
            let cb = count(b)?;
            let per = cb.saturating_sub(ca) as f64 / (b - a) as f64;
            let kernels = if cpu.contains("a76") || cpu == "max" {
                "dotprod"
            } else {
                "neon"
            };
            let _ = writeln!(
                text,
                "| {} | {cpu} | {kernels} | {:.1} M | {:.2}× / {:.2}× |",
                model
                    .file_name()
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default(),
                per / 1e6,
                per / LLAMA_A76_INSNS_REPACK,
                per / LLAMA_A76_INSNS_NO_REPACK
            );
        }
    }
    println!("{text}");
    if let Some(p) = &o.markdown {
        std::fs::write(p, &text)?;
    }
    Ok(())
}

/// Builds `xtask/insncount/insncount.c` into the target directory.
fn build_plugin() -> Result<PathBuf> {
    let src = std::env::current_dir()?.join("xtask/insncount/insncount.c");
    let dir = target_dir().join("insncount");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join("libinsncount.so");
    eprintln!(
        "==> gcc -O2 -shared -fPIC -o {} {}",
        out.display(),
        src.display()
    );
    let s = Command::new("gcc")
        .args(["-O2", "-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .context("starting gcc (needed to build the qemu plugin; or pass --plugin)")?;
    if !s.success() {
        bail!("building the qemu plugin failed ({s})");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pistil bench --ceiling -o json` rows: the read-only tg row is kept
    /// apart from the real one, and pp rows go to pp.
    #[test]
    fn ceiling_rows_are_kept_apart() {
        let rows = serde_json::json!([
            {"n_prompt": 512, "n_gen": 0, "backends": "CPU (avx512)", "samples_ns": [2e9]},
            {"n_prompt": 0, "n_gen": 128, "backends": "CPU (avx512)", "samples_ns": [4e9]},
            {"n_prompt": 0, "n_gen": 128, "backends": "CPU (avx512 read-only)", "samples_ns": [3e9]},
        ]);
        let mut side = Side::default();
        take_samples(&mut side, &rows).unwrap();
        assert_eq!(side.pp_s, [2.0]);
        assert_eq!(side.tg_s, [4.0]);
        assert_eq!(side.ceiling_tg_s, [3.0]);
        assert!(take_samples(&mut side, &serde_json::json!({})).is_err());
    }
}
