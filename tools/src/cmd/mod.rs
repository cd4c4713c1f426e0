//! One module per subcommand; each has an `Args` (clap) and a `run`.

pub mod bench;
pub mod board;
pub mod chat;
pub mod eval;
pub mod inspect;
pub mod mqtt;
pub mod perplexity;
pub mod pull;
pub mod run;
pub mod serve;
pub mod service;
pub mod tokenize;
pub mod wyoming;
