//! `pistil pull NAME`: download a catalog model into the model cache, verified.
//! `pistil pull --list`: the catalog, with sizes and what is cached.

use anyhow::{bail, Context};
use pistil_runtime::catalog::{self, human_bytes, CatalogError, PullOptions, PullOutcome};

use crate::model_arg::CliProgress;

/// Arguments of `pistil pull`.
#[derive(clap::Args)]
pub struct Args {
    /// Catalog model to download (e.g. gemma3:270m, deepseek-r1:1.5b); see --list.
    #[arg(required_unless_present = "list")]
    name: Option<String>,

    /// List the catalog: names, sizes, whether each model is cached.
    #[arg(long, conflicts_with_all = ["name", "force"])]
    list: bool,

    /// Download again even if a verified copy is cached.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.list {
        return list();
    }
    let Some(name) = args.name.as_deref() else {
        bail!("name a model to pull (see `pistil pull --list`)");
    };
    let cat = catalog::catalog()?;
    let Some(entry) = cat.get(name) else {
        if std::path::Path::new(name).is_file() {
            bail!("'{name}' is a file already: pass it with -m, there is nothing to pull");
        }
        return Err(CatalogError::Unknown {
            name: name.to_string(),
            known: cat.names(),
        }
        .into());
    };

    warn_if_ram_is_short(entry.min_ram_mb, &entry.name);
    let opts = PullOptions {
        force: args.force,
        ..PullOptions::default()
    };
    let mut progress = CliProgress::new(&entry.name);
    let result = catalog::pull(entry, &opts, &mut progress);
    progress.finish();
    match result.with_context(|| format!("pulling {name}"))? {
        PullOutcome::Downloaded(path) => {
            let check = if entry.sha256.is_some() {
                "size and sha256 verified"
            } else {
                "checked against the server's size and checksum"
            };
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            println!(
                "{name}: saved {} ({}, {check})",
                path.display(),
                human_bytes(size)
            );
        }
        PullOutcome::UpToDate(path) => {
            println!("{name}: already up to date: {}", path.display());
        }
    }
    Ok(())
}

/// `pistil pull --list`.
fn list() -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let cat = catalog::catalog()?;
    let dir = catalog::models_dir();
    let mut table = String::new();
    let _ = writeln!(table, "model cache: {}", dir.display());
    let _ = writeln!(
        table,
        "{:<22} {:>8}  {:<10} {:<9} DESCRIPTION",
        "NAME", "SIZE", "CACHED", "RAM"
    );
    for e in &cat.models {
        let path = dir.join(e.file_name());
        let partial = dir.join(format!("{}.partial", e.file_name()));
        let cached = if path.is_file() {
            "yes".to_string()
        } else if let Ok(m) = std::fs::metadata(&partial) {
            match e.size {
                Some(s) if s > 0 => format!("partial {}%", m.len().min(s) * 100 / s),
                _ => "partial".to_string(),
            }
        } else {
            "no".to_string()
        };
        let size = e.size.map(human_bytes).unwrap_or_else(|| "?".into());
        let ram = format!("{:.1} GB", e.min_ram_mb as f64 / 1024.0);
        let _ = writeln!(
            table,
            "{:<22} {:>8}  {:<10} {:<9} {}",
            e.name, size, cached, ram, e.description
        );
    }
    print_stdout(&table)
}

/// Write `text` to stdout; a closed pipe (`pistil pull --list | head`) is not an error.
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A warning (not an error: the model may be pulled for another machine) when
/// this machine has less RAM than the model's hint.
fn warn_if_ram_is_short(min_ram_mb: u64, name: &str) {
    let Some(total_mb) = total_ram_mb() else {
        return;
    };
    if total_mb < min_ram_mb {
        eprintln!(
            "pistil: warning: {name} wants about {min_ram_mb} MB of RAM; this machine has {total_mb} MB"
        );
    }
}

/// `MemTotal` from /proc/meminfo, in MiB.
fn total_ram_mb() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}
