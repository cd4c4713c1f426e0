//! `pistil mqtt`: answer prompts that arrive over MQTT. See `pistil_iot::mqtt`
//! for the message formats.
//!
//! ```text
//! pistil mqtt --broker localhost --topic home/pistil/ask --no-think
//! mosquitto_pub -t home/pistil/ask -m 'Is 31 °C in the kitchen too hot?'
//! mosquitto_sub -t home/pistil/ask/reply
//! ```

use std::time::Duration;

use anyhow::{bail, Context};
use pistil_iot::gpio::ButtonEvent;
use pistil_iot::mqtt::{has_wildcards, run_bridge, LocalPrompt, MqttConfig, ThinkingTopic};
use pistil_iot::worker::Worker;

use crate::common::{ModelArgs, SamplingArgs};
use crate::headless::{self, AnswerArgs, GpioArgs};

/// Arguments of `pistil mqtt`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// MQTT broker: HOST or HOST:PORT (port 1883 by default). Plain TCP, no TLS: use a broker on
    /// this machine or a trusted network.
    #[arg(long, value_name = "HOST[:PORT]", env = "PISTIL_MQTT_BROKER")]
    pub broker: String,
    /// Topic (filter) the prompts arrive on; `+`/`#` wildcards allowed. Answers go to
    /// `<topic of the message>/reply` unless a JSON request names `reply_to`.
    #[arg(
        long,
        value_name = "TOPIC",
        default_value = "pistil/ask",
        env = "PISTIL_MQTT_TOPIC"
    )]
    pub topic: String,
    /// MQTT client id (default: pistil-<hostname>); the broker keeps its session (subscription,
    /// queued QoS 1 prompts) across reconnections.
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// Broker user name.
    #[arg(long, value_name = "NAME", env = "PISTIL_MQTT_USERNAME")]
    pub username: Option<String>,
    /// Broker password (better: the PISTIL_MQTT_PASSWORD environment variable).
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "PISTIL_MQTT_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    pub password: Option<String>,
    /// Start with a fresh session: prompts sent while pistil was away are not delivered.
    #[arg(long)]
    pub clean_session: bool,
    /// Publish the model's thought too: on TOPIC if given, else on `<topic of the message>/thinking`.
    #[arg(long, value_name = "TOPIC", num_args = 0..=1, default_missing_value = "")]
    pub thinking: Option<String>,
    /// Prompts that may wait while one is answered; more get an error reply ("busy") at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub queue: usize,
    /// Keep-alive interval in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub keep_alive: u64,
    /// Compute threads (default: the board profile's).
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub answer: AnswerArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub gpio: GpioArgs,
    /// GPIO pin (BCM number) of a push button to ground: while held the LED shows "listening";
    /// on release --button-prompt is asked.
    #[arg(long, value_name = "BCM", requires = "button_prompt")]
    pub button_pin: Option<u8>,
    /// The prompt the button asks; the answer is published on --button-topic.
    #[arg(long, value_name = "TEXT", requires = "button_pin")]
    pub button_prompt: Option<String>,
    /// Where the button's answer goes (default: `<topic>/reply`, `pistil/button/reply` if the
    /// topic has wildcards).
    #[arg(long, value_name = "TOPIC")]
    pub button_topic: Option<String>,
}

/// `HOST[:PORT]` → (host, port); IPv6 literals as `[::1]:1883`.
fn parse_broker(s: &str) -> anyhow::Result<(String, u16)> {
    let s = s.trim();
    if s.is_empty() {
        bail!("--broker is empty");
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .context("--broker: unclosed '[' in an IPv6 address")?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p
                .parse()
                .with_context(|| format!("--broker {s}: bad port {p:?}"))?,
            None if tail.is_empty() => 1883,
            None => bail!("--broker {s}: expected [ADDRESS]:PORT"),
        };
        return Ok((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let port = p
                .parse()
                .with_context(|| format!("--broker {s}: bad port {p:?}"))?;
            Ok((h.to_string(), port))
        }
        _ => Ok((s.to_string(), 1883)),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (host, port) = parse_broker(&args.broker)?;
    if args.topic.is_empty() {
        bail!("--topic is empty");
    }
    let mut cfg = MqttConfig::new(&host, port, &args.topic);
    cfg.client_id = args
        .client_id
        .clone()
        .unwrap_or_else(|| format!("pistil-{}", hostname()));
    cfg.credentials = args
        .username
        .clone()
        .map(|u| (u, args.password.clone().unwrap_or_default()));
    cfg.clean_session = args.clean_session;
    cfg.keep_alive = Duration::from_secs(args.keep_alive.max(5));
    cfg.thinking_topic = match args.thinking.as_deref() {
        None => None,
        Some("") => Some(ThinkingTopic::BesideRequest),
        Some(t) if has_wildcards(t) => {
            bail!("--thinking {t}: a topic to publish on cannot have wildcards")
        }
        Some(t) => Some(ThinkingTopic::Fixed(t.to_string())),
    };
    cfg.defaults = args.answer.defaults();
    let button_topic = match (&args.button_topic, has_wildcards(&args.topic)) {
        (Some(t), _) if has_wildcards(t) => {
            bail!("--button-topic {t}: no wildcards in a topic to publish on")
        }
        (Some(t), _) => t.clone(),
        (None, false) => format!("{}/reply", args.topic),
        (None, true) => "pistil/button/reply".into(),
    };

    let assistant = headless::load_assistant(&args.model, args.threads, &args.sampling, false)?;
    let model = pistil_iot::Assistant::model_name(&assistant).to_string();
    let worker = Worker::spawn(assistant, args.queue).context("starting the model thread")?;
    let (local_tx, local_rx) = tokio::sync::mpsc::unbounded_channel();
    let prompt = args.button_prompt.clone();
    let _panel = headless::start_panel(
        args.gpio.led_pin,
        args.button_pin,
        &worker.handle(),
        move |ev| {
            if let (ButtonEvent::Released, Some(p)) = (ev, &prompt) {
                let _ = local_tx.send(LocalPrompt {
                    prompt: p.clone(),
                    reply_topic: button_topic.clone(),
                });
            }
        },
    )?;
    let rt = headless::runtime()?;
    eprintln!(
        "pistil mqtt: {model} answering {} on {host}:{port} as {}; Ctrl-C to stop",
        args.topic, cfg.client_id
    );
    let r = rt.block_on(run_bridge(
        cfg,
        worker.handle(),
        local_rx,
        headless::shutdown_signal(),
    ));
    rt.shutdown_timeout(Duration::from_secs(1));
    r.context("pistil mqtt")?;
    eprintln!("pistil mqtt: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_broker;

    #[test]
    fn broker_addresses() {
        assert_eq!(
            parse_broker("localhost").unwrap(),
            ("localhost".into(), 1883)
        );
        assert_eq!(
            parse_broker("10.0.0.2:1884").unwrap(),
            ("10.0.0.2".into(), 1884)
        );
        assert_eq!(parse_broker("[::1]:1885").unwrap(), ("::1".into(), 1885));
        assert_eq!(parse_broker("[::1]").unwrap(), ("::1".into(), 1883));
        assert_eq!(parse_broker("::1").unwrap(), ("::1".into(), 1883));
        assert!(parse_broker("host:port").is_err());
        assert!(parse_broker("").is_err());
    }
}
