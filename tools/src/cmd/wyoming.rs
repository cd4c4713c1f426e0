//! `pistil wyoming`: a Wyoming `handle` service — the conversation agent of a
//! Home Assistant voice pipeline (or wyoming-satellite), answered by the local
//! model. See `pistil_iot::wyoming` for the protocol.
//!
//! ```text
//! pistil wyoming --host 0.0.0.0 --port 10800 -m deepseek-r1:1.5b --no-think \
//!     --system "You are a voice assistant. Answer in one or two short sentences."
//! ```
//!
//! Home Assistant: Settings → Devices & services → Add integration → Wyoming
//! Protocol → host of the Pi, port 10800; then pick "pistil" as the
//! conversation agent of a voice assistant.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;
use pistil_iot::worker::Worker;
use pistil_iot::wyoming::{WyomingConfig, WyomingServer};

use crate::common::{ModelArgs, SamplingArgs};
use crate::headless::{self, AnswerArgs, GpioArgs};

/// Arguments of `pistil wyoming`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on. Wyoming has no authentication: use 0.0.0.0 only on a trusted network
    /// (Home Assistant on another machine needs it).
    #[arg(
        long,
        value_name = "HOST",
        default_value = "127.0.0.1",
        env = "PISTIL_WYOMING_HOST"
    )]
    pub host: String,
    /// TCP port.
    #[arg(
        long,
        short = 'p',
        value_name = "PORT",
        default_value_t = 10800,
        env = "PISTIL_WYOMING_PORT"
    )]
    pub port: u16,
    /// Compute threads (default: the board profile's).
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub answer: AnswerArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Language the service advertises (repeatable, e.g. --language en --language de; default:
    /// any).
    #[arg(long = "language", value_name = "CODE")]
    pub languages: Vec<String>,
    /// Conversations remembered (by Home Assistant's conversation id; least recently used
    /// forgotten first).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub conversations: usize,
    /// Messages remembered per conversation (oldest dropped first, and more when the context is
    /// full).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub history: usize,
    /// Stream answers as handled-start/handled-chunk/handled-stop (for clients that read them;
    /// Home Assistant reads the plain `handled`).
    #[arg(long)]
    pub stream: bool,
    /// Requests that may wait while one runs; more get `not-handled` ("busy") at once.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub queue: usize,
    /// Program name shown by Home Assistant.
    #[arg(long, value_name = "NAME", default_value = "pistil")]
    pub name: String,
    #[command(flatten)]
    pub gpio: GpioArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let addr: SocketAddr = (args.host.as_str(), args.port)
        .to_socket_addrs()
        .with_context(|| format!("--host {}: not an address", args.host))?
        .next()
        .with_context(|| format!("--host {}: no address", args.host))?;
    let assistant = headless::load_assistant(&args.model, args.threads, &args.sampling, false)?;
    let model = pistil_iot::Assistant::model_name(&assistant).to_string();
    let worker = Worker::spawn(assistant, args.queue).context("starting the model thread")?;
    let _panel = headless::start_panel(args.gpio.led_pin, None, &worker.handle(), |_| {})?;
    let defaults = args.answer.defaults();
    let config = WyomingConfig {
        name: args.name.clone(),
        description: format!("pistil: {model}, offline on this device"),
        languages: args.languages.clone(),
        system: defaults.system,
        think: defaults.think,
        options: defaults.options,
        max_conversations: args.conversations.max(1),
        max_messages: args.history.max(2),
        stream: args.stream,
        ..WyomingConfig::default()
    };
    let server = WyomingServer::new(config, worker.handle());
    let rt = headless::runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        eprintln!(
            "pistil wyoming: handle service on tcp://{} (model {model}); Ctrl-C to stop",
            listener.local_addr().unwrap_or(addr)
        );
        tokio::select! {
            r = server.serve(listener) => r.context("serving")?,
            _ = headless::shutdown_signal() => eprintln!("pistil wyoming: stopping"),
        }
        anyhow::Ok(())
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
