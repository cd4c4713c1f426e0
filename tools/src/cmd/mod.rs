//! One module per subcommand; each has an `Args` (clap) and a `run`.

pub mod board;
pub mod inspect;
pub mod pull;
pub mod tokenize;
