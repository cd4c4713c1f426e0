//! Glue shared by the commands that run a model (`run`, `chat`, `bench`):
//! the model and sampling flags, board detection → defaults → memory fit →
//! load, Ctrl-C, terminal styling and the `--verbose` statistics.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use pistil_boards::{detect, fit, Board, FitDecision, MemoryNeed};
use pistil_runtime::engine::{
    EngineOptions, Event, LoadedModel, SamplingParams, Stats, ThinkMode, ThreadHook,
};
use pistil_runtime::gguf::{Gguf, LoadMode};
use pistil_runtime::plan::{self, KvType, ModelDims, PlanParams};

use crate::cmd::board::DetectArgs;
use crate::model_arg::{resolve_model, Consent};

/// The run was stopped by Ctrl-C: `main` exits with 130.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Which model, and how to load it.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model: a GGUF file or a catalog name (`gemma3:270m`, `deepseek-r1:1.5b`); default: the
    /// board profile's model (downloaded first, with consent, if missing).
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub model: Option<String>,
    /// Context size in tokens (default: the board profile's, capped by the model's).
    #[arg(short = 'c', long = "ctx-size", value_name = "N")]
    pub ctx_size: Option<u32>,
    /// KV cache type: f16, q8_0 or f32 (default: the board profile's).
    #[arg(long = "cache-type", value_name = "TYPE")]
    pub cache_type: Option<KvType>,
    /// How the weights are loaded: mmap, mlock or none (read into memory). Default: mmap, or
    /// mlock when the board profile asks for it and memory allows.
    #[arg(long = "load-mode", value_name = "MODE")]
    pub load_mode: Option<LoadMode>,
    /// Same as --load-mode none.
    #[arg(long = "no-mmap", conflicts_with = "load_mode")]
    pub no_mmap: bool,
    /// Prompt tokens per forward step.
    #[arg(
        short = 'b',
        long = "batch-size",
        value_name = "N",
        default_value_t = 512
    )]
    pub batch_size: usize,
    /// Load even if the memory check says the model does not fit, and allow a context above the
    /// board's limit.
    #[arg(long)]
    pub force: bool,
    /// Download a missing catalog model without asking.
    #[arg(short = 'y', long)]
    pub yes: bool,
    #[command(flatten)]
    pub detect: DetectArgs,
}

/// Sampling flags (llama.cpp's names and defaults).
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy.
    #[arg(long = "temp", value_name = "T", default_value_t = 0.8)]
    pub temp: f32,
    /// Top-k sampling; 0 = off.
    #[arg(long = "top-k", value_name = "N", default_value_t = 40)]
    pub top_k: i32,
    /// Top-p (nucleus) sampling; 1.0 = off.
    #[arg(long = "top-p", value_name = "P", default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p sampling; 0.0 = off.
    #[arg(long = "min-p", value_name = "P", default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalise repeated tokens; 1.0 = off.
    #[arg(long = "repeat-penalty", value_name = "X", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the penalties look back over; 0 = off.
    #[arg(long = "repeat-last-n", value_name = "N", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Presence penalty; 0 = off.
    #[arg(long = "presence-penalty", value_name = "X", default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Frequency penalty; 0 = off.
    #[arg(long = "frequency-penalty", value_name = "X", default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Random seed (default: from the clock).
    #[arg(short = 's', long = "seed", value_name = "N")]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    /// The engine's sampling parameters.
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
        }
    }
}

/// Thinking flags of `run` and `chat`.
#[derive(clap::Args, Debug, Clone)]
pub struct ThinkArgs {
    /// Do not print the model's thinking (it still thinks).
    #[arg(long)]
    pub hide_thinking: bool,
    /// Cap the thinking at N tokens, then make the model answer.
    #[arg(long, value_name = "N", conflicts_with = "no_think")]
    pub think_budget: Option<usize>,
    /// Skip the thinking (an empty thought is pre-filled).
    #[arg(long)]
    pub no_think: bool,
}

impl ThinkArgs {
    pub fn mode(&self) -> ThinkMode {
        match (self.no_think, self.think_budget) {
            (true, _) => ThinkMode::Off,
            (false, Some(n)) => ThinkMode::Budget(n),
            (false, None) => ThinkMode::Default,
        }
    }
}

/// A model ready to run, with the settings chosen for it.
pub struct Loaded {
    pub model: Arc<LoadedModel>,
    pub opts: EngineOptions,
    /// The thermal governor, polled once per token.
    pub thread_hook: Option<ThreadHook>,
    /// Time from the start of [`load`] (detection, fit check, load).
    pub load_duration: Duration,
}

fn convert_kv(k: pistil_boards::KvType) -> KvType {
    k.name().parse().unwrap_or_default()
}

/// Detects the board (a failure is a warning: built-in defaults are used).
pub fn detect_board(args: &DetectArgs) -> Option<Board> {
    match detect(&args.options()) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("pistil: warning: board detection failed ({e}); using built-in defaults");
            None
        }
    }
}

/// KV bytes per token (the slope at `ctx`) and the rest (sliding-window
/// layers' fixed caches), from the memory plan at two context sizes. The KV
/// size is concave in the context, so this tangent never underestimates a
/// shorter context that the fit check may pick.
fn kv_line(dims: &ModelDims, weights: u64, ctx: u32, kv: KvType, ubatch: u32) -> (u64, u64) {
    let at = |c: u32| {
        plan::estimate_dims(
            dims,
            weights,
            &PlanParams {
                ctx: c,
                kv_type: kv,
                n_ubatch: ubatch,
            },
        )
        .kv_cache
    };
    let hi = at(ctx);
    let step = (ctx / 2).clamp(1, 256);
    let lo = at(ctx.saturating_sub(step).max(1));
    let per_token = (hi.saturating_sub(lo)).div_ceil(u64::from(step));
    let fixed = hi.saturating_sub(per_token * u64::from(ctx));
    (per_token, fixed)
}

/// Resolves `-m`, detects the board, picks threads/context/KV type, checks
/// the memory fit (lowering the context or refusing, unless `--force`) and
/// loads the model. `threads` overrides the profile's.
pub fn load(args: &ModelArgs, threads: Option<usize>, verbose: bool) -> anyhow::Result<Loaded> {
    let t0 = Instant::now();
    let board = detect_board(&args.detect);
    let default_model = board
        .as_ref()
        .map(|b| b.settings.default_model.clone())
        .unwrap_or_else(|| "gemma3:270m".to_string());
    let consent = Consent::from_yes_flag(args.yes);
    let path = resolve_model(args.model.as_deref(), &default_model, consent)?;
    let name = args.model.clone().unwrap_or(default_model);

    // The header alone (mapped, nothing read) for the plan.
    let header =
        Gguf::open(&path, LoadMode::Mmap).with_context(|| format!("opening {}", path.display()))?;
    let dims =
        ModelDims::from_gguf(&header).with_context(|| format!("reading {}", path.display()))?;
    let model_ctx = dims.context_length;
    let kv_type = args
        .cache_type
        .or_else(|| board.as_ref().map(|b| convert_kv(b.settings.kv_type)))
        .unwrap_or_default();
    let n_threads = threads
        .or_else(|| board.as_ref().map(|b| b.settings.threads))
        .unwrap_or_else(|| EngineOptions::default().n_threads)
        .max(1);
    let ubatch = args.batch_size.max(1) as u32;
    let mut load_mode = match (args.no_mmap, args.load_mode) {
        (true, _) => Some(LoadMode::Read),
        (false, m) => m,
    };

    let ctx = match &board {
        Some(b) => {
            let (ctx, note) = b.settings.context_for(args.ctx_size, model_ctx, args.force);
            if let Some(note) = note.filter(|_| args.ctx_size.is_some() || verbose) {
                eprintln!("pistil: note: {note}");
            }
            let (per_token, fixed) = kv_line(&dims, header.tensor_bytes(), ctx, kv_type, ubatch);
            let est = plan::estimate_dims(
                &dims,
                header.tensor_bytes(),
                &PlanParams {
                    ctx,
                    kv_type,
                    n_ubatch: ubatch,
                },
            );
            let need = MemoryNeed::new(est.weights, per_token, est.scratch + fixed, ctx)
                .with_model(name.clone());
            let decision = fit(&b.settings, &b.facts.memory, &need, args.force);
            match &decision {
                FitDecision::Fits(_) => {}
                FitDecision::ContextLowered { plan, requested } => eprintln!(
                    "pistil: note: context lowered from {requested} to {} tokens to fit in the memory \
                     available ({} MiB usable on {})",
                    plan.ctx,
                    plan.usable >> 20,
                    b.settings.board_name
                ),
                FitDecision::Forced { shortfall, .. } => eprintln!(
                    "pistil: warning: --force: loading although {} MiB more than is available is \
                     needed; the board may swap or kill the process",
                    shortfall.div_ceil(1 << 20)
                ),
                FitDecision::Refused(_) => {}
            }
            let plan = decision.into_result()?;
            if load_mode.is_none() && plan.mlock {
                load_mode = Some(LoadMode::MmapLocked);
            }
            plan.ctx
        }
        None => args.ctx_size.unwrap_or_else(|| plan::default_ctx(&dims)),
    };
    let opts = EngineOptions {
        n_threads,
        n_ctx: ctx.max(1) as usize,
        n_batch: args.batch_size.max(1),
        kv_type,
        load_mode: load_mode.unwrap_or(LoadMode::Mmap),
        spin: true,
        prompt_gemm: true,
    };
    let model = if opts.load_mode == LoadMode::Mmap {
        LoadedModel::from_gguf(Arc::new(header), &opts)
    } else {
        drop(header);
        LoadedModel::load(&path, &opts)
    }
    .with_context(|| format!("loading {}", path.display()))?;
    let mut model = model;
    model.name = name;
    let thread_hook = board.as_ref().map(|b| {
        let mut gov = pistil_boards::ThermalGovernor::new(
            b.sensor.clone(),
            pistil_boards::GovernorConfig::new(
                b.settings.thermal.soft_c,
                b.settings.thermal.hard_c,
            ),
            n_threads,
        );
        Box::new(move || gov.poll()) as ThreadHook
    });
    if verbose {
        eprintln!(
            "pistil: {} ({}), {} threads, context {}, KV {}, load mode {}{}",
            model.name,
            path.display(),
            n_threads,
            opts.n_ctx,
            opts.kv_type,
            opts.load_mode,
            board
                .as_ref()
                .map(|b| format!(", board {}", b.settings.board_name))
                .unwrap_or_default()
        );
    }
    Ok(Loaded {
        model: Arc::new(model),
        opts,
        thread_hook,
        load_duration: t0.elapsed(),
    })
}

/// The model file a command names, resolved like `load` does (for `bench`).
pub fn model_path(args: &ModelArgs) -> anyhow::Result<(PathBuf, String, Option<Board>)> {
    let board = detect_board(&args.detect);
    let default_model = board
        .as_ref()
        .map(|b| b.settings.default_model.clone())
        .unwrap_or_else(|| "gemma3:270m".to_string());
    let path = resolve_model(
        args.model.as_deref(),
        &default_model,
        Consent::from_yes_flag(args.yes),
    )?;
    Ok((path, args.model.clone().unwrap_or(default_model), board))
}

// ---- Ctrl-C ---------------------------------------------------------------

/// Ctrl-C handling: the first press while generating stops the generation
/// (the engine polls [`interrupt_flag`]); a second press, or one while not
/// generating, exits with 130.
pub struct CtrlC;

static INTERRUPT: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static GENERATING: AtomicBool = AtomicBool::new(false);
static PRESSES: AtomicU8 = AtomicU8::new(0);

impl CtrlC {
    /// Installs the handler (once).
    pub fn install() {
        let flag = interrupt_flag();
        let r = ctrlc::set_handler(move || {
            let n = PRESSES.fetch_add(1, Ordering::SeqCst);
            if GENERATING.load(Ordering::SeqCst) && n == 0 {
                flag.store(true, Ordering::SeqCst);
            } else {
                // Leave the terminal tidy: reset styling, end the line.
                let mut err = std::io::stderr();
                let _ = writeln!(err, "{}", if style_stdout() { "\x1b[0m" } else { "" });
                std::process::exit(130);
            }
        });
        if let Err(e) = r {
            tracing::warn!("cannot install the Ctrl-C handler: {e}");
        }
    }

    /// Marks the start of a generation (clears a previous interrupt).
    pub fn begin() {
        interrupt_flag().store(false, Ordering::SeqCst);
        PRESSES.store(0, Ordering::SeqCst);
        GENERATING.store(true, Ordering::SeqCst);
    }

    /// Marks the end of a generation; whether it was interrupted.
    pub fn end() -> bool {
        GENERATING.store(false, Ordering::SeqCst);
        let hit = interrupt_flag().swap(false, Ordering::SeqCst);
        PRESSES.store(0, Ordering::SeqCst);
        hit
    }
}

/// The flag the engine polls.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    INTERRUPT
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone()
}

// ---- Terminal ---------------------------------------------------------------

/// Whether stdout takes ANSI styling: a terminal, `TERM` not `dumb`, no `NO_COLOR`.
pub fn style_stdout() -> bool {
    std::io::stdout().is_terminal() && ansi_allowed()
}

fn ansi_allowed() -> bool {
    let dumb = std::env::var("TERM").map(|t| t == "dumb").unwrap_or(false);
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !dumb && !no_color
}

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Writes a reply's events to stdout as they come: the thought dimmed on a
/// terminal, between `<think>` / `</think>` lines otherwise (or hidden).
pub struct ReplyPrinter {
    out: std::io::Stdout,
    ansi: bool,
    hide_thinking: bool,
    in_thought: bool,
    wrote_thought: bool,
    /// Something was written (for the final newline).
    pub wrote: bool,
    ends_with_newline: bool,
}

impl ReplyPrinter {
    pub fn new(hide_thinking: bool) -> ReplyPrinter {
        ReplyPrinter {
            out: std::io::stdout(),
            ansi: style_stdout(),
            hide_thinking,
            in_thought: false,
            wrote_thought: false,
            wrote: false,
            ends_with_newline: true,
        }
    }

    fn write(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        let mut o = self.out.lock();
        let _ = o.write_all(s.as_bytes());
        let _ = o.flush();
        self.wrote = true;
        self.ends_with_newline = s.ends_with('\n');
    }

    /// Prints one event.
    pub fn event(&mut self, ev: &Event<'_>) {
        match *ev {
            Event::Thinking(t) => {
                if self.hide_thinking {
                    return;
                }
                if !self.in_thought {
                    self.in_thought = true;
                    self.wrote_thought = true;
                    if self.ansi {
                        self.write(DIM);
                    } else {
                        self.write("<think>\n");
                    }
                }
                self.write(t);
            }
            Event::Content(t) => {
                self.close_thought();
                self.write(t);
            }
        }
    }

    fn close_thought(&mut self) {
        if self.in_thought {
            self.in_thought = false;
            if self.ansi {
                self.write(RESET);
                self.write("\n\n");
            } else {
                self.write("\n</think>\n\n");
            }
        }
    }

    /// Ends the reply: closes a thought, ends the line.
    pub fn finish(&mut self) {
        self.close_thought();
        if self.wrote && !self.ends_with_newline {
            self.write("\n");
        }
        let _ = self.wrote_thought;
    }
}

// ---- Statistics -------------------------------------------------------------

/// A duration as Go prints it (Ollama's `--verbose`): `1.234567s`, `12.345ms`, `950µs`.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        "0s".into()
    } else if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        trim_float(ns as f64 / 1e3, "µs")
    } else if ns < 1_000_000_000 {
        trim_float(ns as f64 / 1e6, "ms")
    } else {
        let s = d.as_secs_f64();
        if s >= 60.0 {
            let m = (s / 60.0).floor();
            let rest = s - m * 60.0;
            format!("{}m{}", m as u64, trim_float(rest, "s"))
        } else {
            trim_float(s, "s")
        }
    }
}

fn trim_float(v: f64, unit: &str) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{unit}")
}

/// Ollama-style statistics on stderr.
pub fn print_stats(stats: &Stats, load: Duration, total: Duration) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "total duration:       {}", go_duration(total));
    let _ = writeln!(e, "load duration:        {}", go_duration(load));
    let _ = writeln!(
        e,
        "prompt eval count:    {} token(s)",
        stats.prompt_evaluated()
    );
    if stats.cached_tokens > 0 {
        let _ = writeln!(e, "prompt cached count:  {} token(s)", stats.cached_tokens);
    }
    if stats.truncated_tokens > 0 {
        let _ = writeln!(
            e,
            "prompt truncated:     {} token(s)",
            stats.truncated_tokens
        );
    }
    let _ = writeln!(
        e,
        "prompt eval duration: {}",
        go_duration(stats.prompt_eval)
    );
    let _ = writeln!(
        e,
        "prompt eval rate:     {:.2} tokens/s",
        stats.prompt_eval_rate()
    );
    let _ = writeln!(e, "eval count:           {} token(s)", stats.gen_tokens);
    let _ = writeln!(e, "eval duration:        {}", go_duration(stats.eval));
    let _ = writeln!(e, "eval rate:            {:.2} tokens/s", stats.eval_rate());
    let _ = writeln!(e, "done reason:          {}", stats.done_reason.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_go() {
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_micros(12_345)), "12.345ms");
        assert_eq!(go_duration(Duration::from_micros(950)), "950µs");
        assert_eq!(go_duration(Duration::from_secs(75)), "1m15s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
