//! `pistil inspect`.

/// Arguments of `pistil inspect`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`pistil inspect` is not built yet")
}
