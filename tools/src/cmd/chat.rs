//! `pistil chat -m MODEL`: an interactive conversation with the model's chat
//! template. The conversation stays in the KV cache between turns, so each
//! turn only processes its new tokens (`--verbose` shows the cached count).
//!
//! Commands: `/clear` (forget the conversation), `/exit` or `/bye` (or
//! Ctrl-D), `/help`. A message over several lines goes between `"""` lines.
//!
//! With standard input not a terminal (a pipe, a script) there are no prompts
//! and no styling: every input line is one turn and each answer is printed
//! followed by a newline, until end of input. `TERM=dumb` or `NO_COLOR` turns
//! styling off on a terminal. Ctrl-C stops the answer being written and
//! returns to the prompt; at the prompt, a second Ctrl-C exits (code 130).

use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;
use std::time::Instant;

use anyhow::Context;
use pistil_runtime::engine::{Conversation, Engine, Request, Transcript};

use crate::common::{self, CtrlC, ModelArgs, ReplyPrinter, SamplingArgs, ThinkArgs};

/// Arguments of `pistil chat`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Compute threads (default: the board profile's).
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<usize>,
    /// A system message for the conversation.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Tokens per answer at most (default: until the model stops or the context is full).
    #[arg(short = 'n', long = "n-predict", value_name = "N")]
    pub n_predict: Option<usize>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub think: ThinkArgs,
    /// Stop an answer when the model writes this text (repeatable).
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Print timings and token counts on stderr after each answer.
    #[arg(long)]
    pub verbose: bool,
}

const HELP: &str = "Commands:
  /clear   forget the conversation
  /exit    leave (also /bye, Ctrl-D)
  /help    this help
Write a message over several lines between \"\"\" lines.
Ctrl-C stops the answer being written.";

/// One line of input, or the end.
enum Input {
    Line(String),
    Eof,
}

fn read_message(stdin: &mut impl BufRead, interactive: bool) -> anyhow::Result<Input> {
    let prompt = |p: &str| {
        if interactive {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(p.as_bytes());
            let _ = o.flush();
        }
    };
    prompt(">>> ");
    let mut line = String::new();
    if stdin
        .read_line(&mut line)
        .context("reading standard input")?
        == 0
    {
        return Ok(Input::Eof);
    }
    let first = line.trim_end_matches(['\n', '\r']);
    if let Some(rest) = first.strip_prefix("\"\"\"") {
        // Multi-line: until a line ending with """.
        let mut text = String::new();
        if let Some(one) = rest.strip_suffix("\"\"\"") {
            return Ok(Input::Line(one.to_string()));
        }
        text.push_str(rest);
        loop {
            prompt("... ");
            let mut l = String::new();
            if stdin.read_line(&mut l).context("reading standard input")? == 0 {
                return Ok(Input::Line(text));
            }
            let l = l.trim_end_matches(['\n', '\r']);
            if !text.is_empty() {
                text.push('\n');
            }
            if let Some(end) = l.strip_suffix("\"\"\"") {
                text.push_str(end);
                return Ok(Input::Line(text));
            }
            text.push_str(l);
        }
    }
    Ok(Input::Line(first.to_string()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let loaded = common::load(&args.model, args.threads, args.verbose)?;
    let model = loaded.model.clone();
    if !model.has_own_template() {
        eprintln!(
            "pistil: note: {} has no chat template of its own (a base model?); using the {} template",
            model.name,
            model.template.origin()
        );
    }
    let mut engine = Engine::new(model.clone(), &loaded.opts).context("creating the context")?;
    engine.set_interrupt(Some(common::interrupt_flag()));
    engine.set_thread_hook(loaded.thread_hook);
    CtrlC::install();
    let mut load_duration = Some(loaded.load_duration);

    let mut conv = match &args.system {
        Some(s) => Conversation::with_system(s.clone()),
        None => Conversation::new(),
    };
    if interactive {
        eprintln!("{} — /help for commands, /bye to leave", model.name);
    }
    let mut stdin = std::io::stdin().lock();
    loop {
        let line = match read_message(&mut stdin, interactive)? {
            Input::Eof => {
                if interactive {
                    println!();
                }
                return Ok(());
            }
            Input::Line(l) => l,
        };
        let cmd = line.trim();
        match cmd {
            "" => continue,
            "/exit" | "/bye" | "/quit" => return Ok(()),
            "/clear" => {
                conv.clear();
                engine.clear();
                if interactive {
                    eprintln!("Cleared the conversation.");
                }
                continue;
            }
            "/help" | "/?" => {
                println!("{HELP}");
                continue;
            }
            c if c.starts_with('/') && !c.contains(char::is_whitespace) => {
                eprintln!("Unknown command {c}; /help lists them.");
                continue;
            }
            _ => {}
        }
        let t0 = Instant::now();
        conv.push_user(line);
        let mut req = Request::new(conv.prompt());
        req.sampling = args.sampling.params();
        req.max_tokens = args.n_predict;
        req.stop = args.stop.clone();
        req.think = args.think.mode();
        let mut printer = ReplyPrinter::new(args.think.hide_thinking);
        let mut transcript = Transcript::default();
        CtrlC::begin();
        let result = engine.generate(&mut req, &mut |ev| {
            printer.event(&ev);
            transcript.push(&ev);
            ControlFlow::Continue(())
        });
        let interrupted = CtrlC::end();
        printer.finish();
        let stats = match result {
            Ok(s) => s,
            Err(e) => {
                // The turn failed (e.g. the conversation no longer fits): say so, keep chatting.
                conv.pop_unanswered();
                eprintln!("pistil: error: {e}");
                if !interactive {
                    return Err(e.into());
                }
                continue;
            }
        };
        if transcript.content.is_empty() && transcript.thinking.is_empty() {
            conv.pop_unanswered();
        } else {
            conv.push_assistant(transcript.content.clone(), transcript.thinking());
        }
        if interactive {
            println!();
        }
        if interrupted && interactive {
            eprintln!("(stopped)");
        }
        if args.verbose {
            let load = load_duration.take().unwrap_or_default();
            common::print_stats(&stats, load, t0.elapsed() + load);
        }
    }
}
