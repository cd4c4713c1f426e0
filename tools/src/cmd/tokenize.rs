//! `pistil tokenize`.

/// Arguments of `pistil tokenize`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`pistil tokenize` is not built yet")
}
