//! `pistil serve`: an Ollama- and OpenAI-compatible HTTP API (crate
//! `pistil-server`), one model at a time.
//!
//! ```text
//! pistil serve                      # 127.0.0.1:11434; the board's default model on first use
//! pistil serve -m deepseek-r1:1.5b  # load at start (/health is 503 until it is ready)
//! pistil serve --host 0.0.0.0 --api-key KEY   # exposed: require `Authorization: Bearer KEY`
//! ```
//!
//! Models are loaded the way `pistil run` loads them (board profile → threads,
//! context, KV type; memory fit check), on the worker thread, when a request
//! names one. The model given with `-m` stays loaded (`--keep-alive` default
//! `-1`); others are unloaded after 5 minutes idle, as Ollama does, unless a
//! request's `keep_alive` or `--keep-alive` says otherwise.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use anyhow::{bail, Context};
use pistil_server::engine_backend::{EngineBackend, LoadedParts, Loader};
use pistil_server::models::{file_model_name, CatalogModels};
use pistil_server::{KeepAlive, ModelSpec, ServerConfig};

use crate::common::{self, ModelArgs};
use crate::model_arg::{resolve_model, Consent};

/// Arguments of `pistil serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on. The default answers this machine only; use 0.0.0.0 to serve the
    /// network (then consider --api-key).
    #[arg(
        long,
        value_name = "HOST",
        default_value = "127.0.0.1",
        env = "PISTIL_HOST"
    )]
    pub host: String,
    /// Port (Ollama's is 11434).
    #[arg(
        long,
        short = 'p',
        value_name = "PORT",
        default_value_t = 11434,
        env = "PISTIL_PORT"
    )]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every endpoint but `/` and `/health`.
    #[arg(
        long,
        value_name = "KEY",
        env = "PISTIL_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Requests that may wait while one runs; more get 503 at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub queue: usize,
    /// Compute threads (default: the board profile's).
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<usize>,
    /// How long a model stays loaded after a request: "5m", "1h", "0" (unload at once), "-1"
    /// (forever). Default: -1 for the -m model, 5m otherwise. Requests may set their own.
    #[arg(long, value_name = "DURATION", env = "PISTIL_KEEP_ALIVE")]
    pub keep_alive: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let addr: SocketAddr = (args.host.as_str(), args.port)
        .to_socket_addrs()
        .with_context(|| format!("--host {}: not an address", args.host))?
        .next()
        .with_context(|| format!("--host {}: no address", args.host))?;
    if args.queue == 0 {
        bail!("--queue must be at least 1");
    }
    let keep_alive = match &args.keep_alive {
        Some(s) => KeepAlive::parse_str(s).map_err(anyhow::Error::msg)?,
        None if args.model.model.is_some() => KeepAlive::Forever,
        None => KeepAlive::For(std::time::Duration::from_secs(300)),
    };

    // The model to load at start (-m), resolved (and pulled, with consent) now.
    let board = common::detect_board(&args.model.detect);
    let default_model = board
        .as_ref()
        .map(|b| b.settings.default_model.clone())
        .unwrap_or_else(|| "gemma3:270m".to_string());
    let preload = match &args.model.model {
        Some(m) => {
            let path = resolve_model(
                Some(m),
                &default_model,
                Consent::from_yes_flag(args.model.yes),
            )?;
            let name = if pistil_runtime::catalog::find(m).ok().flatten().is_some() {
                m.clone()
            } else {
                file_model_name(&path)
            };
            Some(ModelSpec { name, path })
        }
        None => None,
    };
    let models = Arc::new(CatalogModels::new(Some(
        preload
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| default_model.clone()),
    )));
    if let Some(p) = &preload {
        models.add_file(p.clone());
    }

    // Loads a model the way `pistil run` does: board profile, fit check.
    let base = args.model.clone();
    let threads = args.threads;
    let loader: Loader = Box::new(move |spec: &ModelSpec, num_ctx: Option<usize>| {
        let mut a = base.clone();
        a.model = Some(spec.path.display().to_string());
        if let Some(n) = num_ctx {
            a.ctx_size = Some(n.min(u32::MAX as usize) as u32);
        }
        let l = common::load(&a, threads, false).map_err(|e| format!("{e:#}"))?;
        Ok(LoadedParts {
            model: l.model,
            opts: l.opts,
            thread_hook: l.thread_hook,
        })
    });

    let cfg = ServerConfig {
        addr,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        queue: args.queue,
        keep_alive,
        preload: preload.clone(),
        ..ServerConfig::default()
    };
    let exposed = !addr.ip().is_loopback();
    let keyed = cfg.api_key.is_some();
    let start_model = preload.as_ref().map(|p| p.name.clone());
    pistil_server::run(cfg, EngineBackend::new(loader), models, move |a| {
        eprintln!("pistil serve: listening on http://{a} (Ollama API at /api, OpenAI API at /v1)");
        match &start_model {
            Some(m) => eprintln!("pistil serve: loading {m}; /health answers 200 when it is ready"),
            None => eprintln!(
                "pistil serve: default model {default_model} (loaded on the first request; `pistil pull {default_model}` if it is not downloaded)"
            ),
        }
        if exposed && !keyed {
            eprintln!(
                "pistil serve: warning: listening on {} without --api-key: anyone on the network can use it",
                a.ip()
            );
        }
    })
    .context("pistil serve")
}
