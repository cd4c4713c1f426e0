//! # pistil-iot
//!
//! pistil as an appliance on a Raspberry Pi: the front ends that let other
//! programs and devices talk to the model without a person at a terminal.
//!
//! - [`wyoming`]: a Wyoming `handle` service (the JSON-lines-over-TCP
//!   protocol of Home Assistant's voice pipelines and wyoming-satellite):
//!   `transcript` in, `handled` (the answer, never the thought) out, one
//!   conversation per `context.conversation_id`.
//! - [`mqtt`]: an MQTT bridge: prompts arrive on a topic, answers go to a
//!   reply topic (QoS 1, reconnects with backoff, bounded queue).
//! - [`jsonl`]: the pipe mode of `pistil run --jsonl`: JSON requests on
//!   stdin, JSON events on stdout.
//! - [`gpio`]: a status LED (idle / listening / thinking / speaking / error
//!   blink patterns) and a debounced button, logic tested on any machine;
//!   real pins through rpi-pal with the `gpio` feature on aarch64 Linux.
//!
//! All of them talk to the model through the [`Assistant`] trait
//! ([`engine::EngineAssistant`] for the real engine); [`worker`] runs it on
//! its own thread, one request at a time, behind a bounded queue.

pub mod assistant;
pub mod conversations;
pub mod engine;
pub mod gpio;
pub mod jsonl;
pub mod mqtt;
pub mod request;
pub mod testing;
pub mod worker;
pub mod wyoming;

pub use assistant::{
    Ask, AskPrompt, AssistError, Assistant, DoneReason, Options, Outcome, Piece, Reply, Role,
    Think, Turn,
};
pub use jsonl::{run_jsonl, run_jsonl_with, JsonlSummary};
pub use request::Defaults;
