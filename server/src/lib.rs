//! # pistil-server
//!
//! `pistil serve`: an Ollama- and OpenAI-compatible HTTP API over pistil's
//! generation engine, for one model at a time on a small board.
//!
//! - [`http`]: the router (axum on a 2-thread tokio runtime; the cores belong
//!   to the kernels), API key, request log, body limit, graceful shutdown.
//! - [`ollama`] (`/api/*`) and [`openai`] (`/v1/*`): the two APIs, streaming
//!   (NDJSON / server-sent events) or not.
//! - [`worker`]: the engine thread and its bounded FIFO queue. HTTP handlers
//!   never block on it: `/`, `/api/version`, `/api/tags`, `/api/ps` and
//!   `/health` answer at once while a generation runs; a full queue is a 503
//!   at once; a client that goes away cancels its generation within a token.
//! - [`backend`]: what the worker asks of a model runner; [`engine_backend`]
//!   is the real one, [`fake`] a fast stand-in for tests.
//! - [`options`]: request parameters (Ollama `options`, `keep_alive`,
//!   `think`, `format`; OpenAI sampling fields, `response_format`).
//! - [`models`]: model names → files; what `/api/tags` and `/api/show` say.
//!
//! Structured output (`format`, `response_format`) is
//! [`pistil_runtime::constraint`]: the reply always parses and matches the
//! schema.

pub mod backend;
pub mod engine_backend;
pub mod error;
pub mod fake;
pub mod http;
pub mod models;
pub mod ollama;
pub mod openai;
pub mod options;
pub mod worker;

pub use backend::{Backend, ModelSpec};
pub use http::{run, shutdown_signal, ServerConfig};
pub use options::KeepAlive;

#[cfg(test)]
mod tests;
