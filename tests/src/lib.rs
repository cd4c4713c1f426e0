//! Shared helpers for pistil's cross-crate tests: where the fixtures and the
//! real models are.
//!
//! The fixtures under `tests/fixtures/` were made by independent tools
//! (llama.cpp, gguf-py); each folder's README says how.

use std::path::PathBuf;

/// `tests/fixtures/<rel>` in this checkout.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// The model cache directory, as `pistil pull` uses it: `$PISTIL_MODELS`, else
/// `$XDG_CACHE_HOME/pistil/models`, else `~/.cache/pistil/models`.
fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PISTIL_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("pistil").join("models");
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home)
        .join(".cache")
        .join("pistil")
        .join("models")
}

/// Path of a real model from the catalog (e.g. `gemma3:270m`) in the model cache.
///
/// Real-model tests are part of the suite: `cargo xtask test` pulls the model
/// once before running the tests. A missing model is a test failure with the
/// command that fixes it, not a silent skip.
pub fn real_model(name: &str) -> PathBuf {
    let path = models_dir().join(format!("{}.gguf", name.replace(':', "-")));
    assert!(
        path.is_file(),
        "{name} is not in the model cache ({}); run `cargo run --release -p pistil -- pull {name}` \
         (cargo xtask test does this before the tests)",
        path.display()
    );
    path
}
