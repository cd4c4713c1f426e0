//! The `-m` argument every command takes, and the download progress display.
//!
//! `-m` is a path to a GGUF file or a catalog name (`gemma3:270m`,
//! `deepseek-r1:7b`). A catalog name that is not cached yet is pulled first:
//!
//! - on a terminal (stdin and stderr are terminals) the user is asked
//!   `Download gemma3:270m (253 MB)? [Y/n]`, unless `--yes`;
//! - with stdin not a terminal (scripts, pipes, services) there is nobody to
//!   ask, so the model is pulled without asking, and what is being downloaded
//!   (name, size, destination) is printed on stderr first;
//! - [`Consent::Never`] never downloads and says how to (`pistil pull NAME`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use pistil_runtime::catalog::{self, human_bytes, Entry, Progress, PullOptions, Resolved};

/// Whether a command may download the model its `-m` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // `Never` is for commands that must not touch the network
pub enum Consent {
    /// Ask on a terminal; without a terminal, download and say so.
    Ask,
    /// Download without asking (`--yes`).
    Yes,
    /// Never download: fail with how to pull the model.
    Never,
}

impl Consent {
    /// `Yes` when the command's `--yes` flag is set, else `Ask`.
    #[allow(dead_code)]
    pub fn from_yes_flag(yes: bool) -> Consent {
        if yes {
            Consent::Yes
        } else {
            Consent::Ask
        }
    }
}

/// Resolve a command's `-m` (or `default_model` when absent) to a model file,
/// pulling a catalog model that is not cached yet as `consent` allows.
#[allow(dead_code)] // used by the model-running commands
pub fn resolve_model(
    arg: Option<&str>,
    default_model: &str,
    consent: Consent,
) -> anyhow::Result<PathBuf> {
    let name = arg.unwrap_or(default_model);
    let entry = match catalog::resolve(name)? {
        Resolved::Path(p) => return Ok(p),
        Resolved::NeedsPull(entry) => entry,
    };
    let size = entry
        .size
        .map(human_bytes)
        .unwrap_or_else(|| "size unknown".into());
    let dir = catalog::models_dir();
    match consent {
        Consent::Never => bail!(
            "model {name} is not downloaded yet; run `pistil pull {name}`, or pass -m /path/to/model.gguf"
        ),
        Consent::Ask if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() => {
            eprint!("Download {name} ({size}) into {}? [Y/n] ", dir.display());
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer).context("reading the answer")?;
            let a = answer.trim().to_ascii_lowercase();
            if !(a.is_empty() || a == "y" || a == "yes") {
                bail!("not downloading {name}; pass -m /path/to/model.gguf to use a file you have");
            }
        }
        Consent::Ask | Consent::Yes => {
            eprintln!("pistil: downloading {name} ({size}) into {}", dir.display());
        }
    }
    pull_with_progress(entry, &PullOptions::default())
}

/// Pull `entry` into the model cache with a progress display on stderr; returns the file.
pub fn pull_with_progress(entry: &Entry, opts: &PullOptions) -> anyhow::Result<PathBuf> {
    let mut progress = CliProgress::new(&entry.name);
    let result = catalog::pull(entry, opts, &mut progress);
    progress.finish();
    let outcome = result.with_context(|| format!("pulling {}", entry.name))?;
    Ok(outcome.path().to_path_buf())
}

/// Download progress on stderr: an indicatif bar on a terminal, else a plain
/// line about every 5% (logs stay readable).
pub struct CliProgress {
    name: String,
    bar: Option<indicatif::ProgressBar>,
    terminal: bool,
    total: Option<u64>,
    done: u64,
    /// Last reported step: percent (known total) or 100 MB units (unknown total).
    last_step: u64,
}

impl CliProgress {
    /// A progress display for pulling `name`.
    pub fn new(name: &str) -> CliProgress {
        CliProgress {
            name: name.to_string(),
            bar: None,
            terminal: std::io::stderr().is_terminal(),
            total: None,
            done: 0,
            last_step: 0,
        }
    }

    /// Remove the bar (call when the pull ends, either way).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// The plain line for the current count, if a new ~5% step was reached.
    fn plain_line(&mut self) -> Option<String> {
        match self.total {
            Some(total) if total > 0 => {
                let pct = (self.done.min(total) * 100) / total;
                let step = pct / 5 * 5;
                (step > self.last_step).then(|| {
                    self.last_step = step;
                    format!(
                        "{}: {step}% ({} of {})",
                        self.name,
                        human_bytes(self.done),
                        human_bytes(total)
                    )
                })
            }
            _ => {
                let step = self.done / 100_000_000;
                (step > self.last_step).then(|| {
                    self.last_step = step;
                    format!("{}: {}", self.name, human_bytes(self.done))
                })
            }
        }
    }
}

impl Progress for CliProgress {
    fn on_start(&mut self, total: Option<u64>) {
        self.total = total;
        self.done = 0;
        self.last_step = 0;
        if self.terminal {
            self.finish();
            let bar = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let template = match total {
                Some(_) => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                None => "{msg} {spinner} {bytes} {bytes_per_sec}",
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(self.name.clone());
            self.bar = Some(bar);
        } else {
            let size = total
                .map(human_bytes)
                .unwrap_or_else(|| "size unknown".into());
            eprintln!("{}: downloading ({size})", self.name);
        }
    }

    fn on_bytes(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        } else if !self.terminal {
            if let Some(line) = self.plain_line() {
                eprintln!("{line}");
            }
        }
    }

    fn on_status(&mut self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("{}: {msg}", self.name)),
            None => eprintln!("{}: {msg}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_every_five_percent() {
        let mut p = CliProgress::new("m");
        p.terminal = false;
        p.total = Some(1000);
        let mut lines = Vec::new();
        for _ in 0..100 {
            p.done += 10;
            if let Some(l) = p.plain_line() {
                lines.push(l);
            }
        }
        assert_eq!(lines.len(), 20, "{lines:?}");
        assert_eq!(lines[0], "m: 5% (50 B of 1 kB)");
        assert_eq!(lines[19], "m: 100% (1 kB of 1 kB)");

        // Unknown total: a line every 100 MB.
        let mut p = CliProgress::new("m");
        p.done = 250_000_000;
        assert_eq!(p.plain_line().as_deref(), Some("m: 250 MB"));
        assert_eq!(p.plain_line(), None);
    }

    #[test]
    fn resolve_model_paths_and_uncached_names() {
        let dir = std::env::temp_dir().join(format!("pistil-model-arg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::env::set_var("PISTIL_MODELS", &dir);

        // A path is returned as is.
        let file = dir.join("mine.gguf");
        std::fs::write(&file, b"GGUF").unwrap();
        let got = resolve_model(Some(file.to_str().unwrap()), "gemma3:270m", Consent::Never);
        assert_eq!(got.unwrap(), file);

        // Not cached + Never: an error saying how to pull it.
        let err = resolve_model(None, "gemma3:270m", Consent::Never)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pistil pull gemma3:270m"), "{err}");

        // Cached: its path.
        std::fs::write(dir.join("gemma3-270m.gguf"), b"GGUF").unwrap();
        let got = resolve_model(None, "gemma3:270m", Consent::Never).unwrap();
        assert_eq!(got, dir.join("gemma3-270m.gguf"));

        // Unknown: the catalog's error, listing the names.
        let err = resolve_model(Some("nope:1b"), "gemma3:270m", Consent::Yes).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("neither a file nor a known model") && err.contains("deepseek-r1:7b"),
            "{err}"
        );

        let _ = std::fs::remove_dir_all(&dir);
    }
}
