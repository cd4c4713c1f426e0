//! `pistil`: run DeepSeek's distilled reasoning models offline on a Raspberry Pi.
//!
//! This is the command-line edge: argument parsing (clap), logging, and turning
//! typed library errors into one clear line and a meaningful exit code.

mod cmd;
mod common;
mod headless;
mod model_arg;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "pistil", version, about, long_about = None)]
struct Cli {
    /// Log more (-v info, -vv debug, -vvv trace). `RUST_LOG` also works.
    #[arg(short = 'v', long = "log-verbose", action = clap::ArgAction::Count, global = true)]
    log_verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streamed to stdout.
    Run(cmd::run::Args),
    /// Chat with a model (history kept in the KV cache; works with piped input).
    Chat(cmd::chat::Args),
    /// Measure prompt and generation speed (llama-bench's table).
    Bench(cmd::bench::Args),
    /// Serve an Ollama- and OpenAI-compatible HTTP API (one model at a time).
    Serve(cmd::serve::Args),
    /// Answer Home Assistant voice pipelines: a Wyoming `handle` (conversation agent) service.
    Wyoming(cmd::wyoming::Args),
    /// Answer prompts that arrive over MQTT, publishing the replies.
    Mqtt(cmd::mqtt::Args),
    /// Run pistil on boot: write a systemd unit with MemoryMax from the board profile.
    InstallService(cmd::service::Args),
    /// Show what a GGUF file holds and the memory a run needs.
    Inspect(cmd::inspect::Args),
    /// Download a model from the catalog into the model cache.
    Pull(cmd::pull::Args),
    /// Tokenize text with a model's own vocabulary and print the ids.
    Tokenize(cmd::tokenize::Args),
    /// Show the detected board, its profile, CPU features and chosen kernels.
    Board(cmd::board::Args),
    /// Teacher-forced logits: the top-K next-token logits at every position of a token sequence.
    Eval(cmd::eval::Args),
    /// Perplexity of a text file (llama-perplexity's chunked method).
    Perplexity(cmd::perplexity::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server logs one line per request: info by default.
    let verbosity = match cli.command {
        Command::Serve(_) | Command::Wyoming(_) | Command::Mqtt(_) => cli.log_verbose.max(1),
        _ => cli.log_verbose,
    };
    init_logging(verbosity);
    let result = match cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::Chat(a) => cmd::chat::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Wyoming(a) => cmd::wyoming::run(a),
        Command::Mqtt(a) => cmd::mqtt::run(a),
        Command::InstallService(a) => cmd::service::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Pull(a) => cmd::pull::run(a),
        Command::Tokenize(a) => cmd::tokenize::run(a),
        Command::Board(a) => cmd::board::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Perplexity(a) => cmd::perplexity::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<common::Interrupted>().is_some() => ExitCode::from(130),
        Err(e) => {
            // One line: the error and its causes, outermost first.
            eprintln!("pistil: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbosity: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
