//! `pistil run -m MODEL -p PROMPT`: generate once and stream the text to stdout.
//!
//! The prompt is templated as one user turn when the model file has its own
//! chat template (instruction-tuned models, DeepSeek R1), and run as raw text
//! otherwise (base models, as llama.cpp's completion does) or with `--raw`.
//! The thought of a reasoning model is printed dimmed on a terminal, between
//! `<think>` and `</think>` lines otherwise, or not at all (`--hide-thinking`).
//! `--verbose` ends with Ollama's statistics on stderr.
//!
//! Exit codes: 0 done, 1 error, 2 usage, 130 interrupted (Ctrl-C).

use std::io::{IsTerminal, Read};
use std::ops::ControlFlow;
use std::time::Instant;

use anyhow::{bail, Context};
use pistil_runtime::engine::{DoneReason, Engine, Prompt, Request};

use crate::common::{self, CtrlC, Interrupted, ModelArgs, ReplyPrinter, SamplingArgs, ThinkArgs};

/// Arguments of `pistil run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt (default: standard input, when it is not a terminal).
    #[arg(short = 'p', long = "prompt", value_name = "TEXT")]
    pub prompt: Option<String>,
    /// Tokens to generate at most (default: until the model stops or the context is full).
    #[arg(short = 'n', long = "n-predict", value_name = "N")]
    pub n_predict: Option<usize>,
    /// Compute threads (default: the board profile's).
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub think: ThinkArgs,
    /// Do not apply the chat template: the prompt is the model's input as is.
    #[arg(long)]
    pub raw: bool,
    /// Stop when the model writes this text (repeatable); it is not printed.
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
    /// A prompt longer than the context keeps its end instead of failing.
    #[arg(long)]
    pub truncate: bool,
    /// Print timings and token counts on stderr at the end.
    #[arg(long)]
    pub verbose: bool,
    /// Headless pipe mode: one JSON request per line on standard input (`{"prompt": …}` or
    /// `{"messages": […]}`, with `options`, `think`, `format`, `id`), JSON events on standard output,
    /// one per line (`token`, `thinking`, `done`, `error`). The flags above are the defaults.
    #[arg(long, conflicts_with_all = ["prompt", "raw", "truncate"])]
    pub jsonl: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.jsonl {
        return crate::headless::run_jsonl(&args);
    }
    let t0 = Instant::now();
    let prompt = match &args.prompt {
        Some(p) => p.clone(),
        None if !std::io::stdin().is_terminal() => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the prompt from standard input")?;
            s
        }
        None => bail!("no prompt: pass -p TEXT (or pipe it on standard input)"),
    };
    let loaded = common::load(&args.model, args.threads, args.verbose)?;
    let model = loaded.model.clone();
    let raw = args.raw || !model.has_own_template();
    if !args.raw && raw && args.verbose {
        eprintln!("pistil: the model has no chat template: the prompt is used as raw text");
    }
    let mut engine = Engine::new(model, &loaded.opts).context("creating the context")?;
    engine.set_interrupt(Some(common::interrupt_flag()));
    engine.set_thread_hook(loaded.thread_hook);
    CtrlC::install();

    let mut req = Request::new(Prompt::Text { text: prompt, raw });
    req.sampling = args.sampling.params();
    req.max_tokens = args.n_predict;
    req.stop = args.stop.clone();
    req.think = args.think.mode();
    req.truncate = args.truncate;

    let mut printer = ReplyPrinter::new(args.think.hide_thinking);
    CtrlC::begin();
    let result = engine.generate(&mut req, &mut |ev| {
        printer.event(&ev);
        ControlFlow::Continue(())
    });
    let interrupted = CtrlC::end();
    printer.finish();
    let stats = result?;
    if args.verbose {
        common::print_stats(&stats, loaded.load_duration, t0.elapsed());
    }
    if interrupted || stats.done_reason == DoneReason::Cancelled {
        return Err(Interrupted.into());
    }
    Ok(())
}
