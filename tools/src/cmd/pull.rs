//! `pistil pull`.

/// Arguments of `pistil pull`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`pistil pull` is not built yet")
}
