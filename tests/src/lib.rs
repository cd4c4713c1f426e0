//! Shared helpers for pistil's cross-crate tests: where the fixtures are.
//!
//! The fixtures under `tests/fixtures/` were made by independent tools
//! (llama.cpp, gguf-py); each folder's README says how.

use std::path::PathBuf;

/// `tests/fixtures/<rel>` in this checkout.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}
