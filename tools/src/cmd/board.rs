//! `pistil board`.

/// Arguments of `pistil board`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`pistil board` is not built yet")
}
