//! Glue shared by the headless front ends (crate `pistil-iot`): `pistil run
//! --jsonl`, `pistil wyoming`, `pistil mqtt` — loading the model into an
//! [`EngineAssistant`], the answer flags (`--system`, `--no-think`,
//! `--think-budget`, `--max-tokens`), the GPIO flags, and shutdown on
//! Ctrl-C / SIGTERM.

use std::ops::ControlFlow;

use anyhow::Context;
use pistil_iot::engine::EngineAssistant;
use pistil_iot::gpio::{self, ButtonEvent, PanelThread, Status};
use pistil_iot::worker::WorkerHandle;
use pistil_iot::{Ask, AssistError, Assistant, Defaults, Options, Outcome, Piece, Think};
use pistil_runtime::engine::{Engine, ThinkMode};

use crate::common::{self, CtrlC, ModelArgs, SamplingArgs};

/// Completes on Ctrl-C or SIGTERM (systemd's stop); shared with `pistil serve`.
pub use pistil_server::shutdown_signal;

/// How answers are made, for the services (`wyoming`, `mqtt`).
#[derive(clap::Args, Debug, Clone)]
pub struct AnswerArgs {
    /// System message put before every conversation (e.g. "You are a voice assistant. Answer in
    /// one or two short sentences.").
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Skip the thinking of reasoning models (an empty thought is pre-filled): much faster
    /// answers on a Pi.
    #[arg(long, conflicts_with = "think_budget")]
    pub no_think: bool,
    /// Cap the thinking at N tokens, then make the model answer.
    #[arg(long, value_name = "N")]
    pub think_budget: Option<usize>,
    /// Most tokens per answer (thought included); a request's `num_predict` overrides it.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
}

impl AnswerArgs {
    /// The thinking mode.
    pub fn think(&self) -> Think {
        match (self.no_think, self.think_budget) {
            (true, _) => Think::Off,
            (false, Some(n)) => Think::Budget(n),
            (false, None) => Think::Default,
        }
    }

    /// What requests leave unset.
    pub fn defaults(&self) -> Defaults {
        Defaults {
            system: self.system.clone(),
            think: self.think(),
            options: Options {
                num_predict: self
                    .max_tokens
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                ..Options::default()
            },
        }
    }
}

/// Status LED and button pins (BCM numbers), for the services.
#[derive(clap::Args, Debug, Clone)]
pub struct GpioArgs {
    /// GPIO pin (BCM number) of a status LED: off idle, slow blink listening, fast blink
    /// thinking, on while answering, double blink after an error. Needs a build with the `gpio`
    /// feature (the aarch64 Debian package has it).
    #[arg(long, value_name = "BCM")]
    pub led_pin: Option<u8>,
}

/// Loads the model (board profile, fit check) into an engine wrapped as an assistant.
pub fn load_assistant(
    model: &ModelArgs,
    threads: Option<usize>,
    sampling: &SamplingArgs,
    verbose: bool,
) -> anyhow::Result<EngineAssistant> {
    let loaded = common::load(model, threads, verbose)?;
    let mut engine =
        Engine::new(loaded.model.clone(), &loaded.opts).context("creating the context")?;
    engine.set_thread_hook(loaded.thread_hook);
    Ok(EngineAssistant::new(engine, sampling.params()))
}

/// Starts the LED (and optionally button) thread following `worker`'s status.
pub fn start_panel(
    led: Option<u8>,
    button: Option<u8>,
    worker: &WorkerHandle,
    mut on_button: impl FnMut(ButtonEvent) + Send + 'static,
) -> anyhow::Result<Option<PanelThread>> {
    if led.is_none() && button.is_none() {
        return Ok(None);
    }
    let pins = gpio::open_pins(led, button)?;
    let w = worker.clone();
    let panel = gpio::spawn_panel(pins, worker.status(), move |ev| {
        match ev {
            ButtonEvent::Pressed => w.set_status(Status::Listening),
            ButtonEvent::Released => w.set_status(Status::Idle),
        }
        on_button(ev);
    })
    .context("starting the GPIO thread")?;
    Ok(Some(panel))
}

/// A tokio runtime for a service: two threads (the cores belong to the kernels).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("pistil-io")
        .build()
        .context("starting the async runtime")
}

/// The assistant with Ctrl-C wired to the engine: a press during a
/// generation cancels it (its `done` says `cancelled`), a press while
/// waiting for input exits with 130.
struct Interruptible(EngineAssistant);

impl Assistant for Interruptible {
    fn model_name(&self) -> &str {
        self.0.model_name()
    }
    fn generate(
        &mut self,
        ask: &Ask,
        sink: &mut dyn FnMut(Piece) -> ControlFlow<()>,
    ) -> Result<Outcome, AssistError> {
        CtrlC::begin();
        let r = self.0.generate(ask, sink);
        CtrlC::end();
        r
    }
}

/// `pistil run --jsonl`: the pipe loop over stdin/stdout, with `run`'s
/// flags as the defaults of every request.
pub fn run_jsonl(args: &crate::cmd::run::Args) -> anyhow::Result<()> {
    let mut assistant = load_assistant(&args.model, args.threads, &args.sampling, args.verbose)?;
    assistant
        .engine_mut()
        .set_interrupt(Some(common::interrupt_flag()));
    CtrlC::install();
    let defaults = Defaults {
        system: None,
        think: match args.think.mode() {
            ThinkMode::Default => Think::Default,
            ThinkMode::Off => Think::Off,
            ThinkMode::Budget(n) => Think::Budget(n),
        },
        options: Options {
            num_predict: args.n_predict.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            stop: (!args.stop.is_empty()).then(|| args.stop.clone()),
            ..Options::default()
        },
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut a = Interruptible(assistant);
    match pistil_iot::run_jsonl_with(&mut a, &defaults, stdin.lock(), stdout.lock()) {
        Ok(s) => {
            if args.verbose {
                eprintln!("pistil: {} answered, {} errors", s.answered, s.errors);
            }
            Ok(())
        }
        // The next program in the pipe exited: nothing more to say.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("the JSON-lines pipe"),
    }
}
