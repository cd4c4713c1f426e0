//! One module per subcommand; each has an `Args` (clap) and a `run`.

pub mod bench;
pub mod board;
pub mod chat;
pub mod inspect;
pub mod pull;
pub mod run;
pub mod tokenize;
