//! `catalog::resolve` / `cached_path` / `models_dir` against a temporary model
//! cache. One test function: the cache location comes from process-wide
//! environment variables, so the cases run in sequence.

use pistil_runtime::catalog::{self, Resolved};
use std::path::PathBuf;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pistil-resolve-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn models_dir_and_resolve() {
    let root = temp_dir("root");

    // models_dir: PISTIL_MODELS, else XDG_CACHE_HOME/pistil/models, else HOME/.cache/pistil/models.
    std::env::remove_var("PISTIL_MODELS");
    std::env::set_var("XDG_CACHE_HOME", root.join("xdg"));
    assert_eq!(catalog::models_dir(), root.join("xdg/pistil/models"));
    std::env::set_var("XDG_CACHE_HOME", "");
    std::env::set_var("HOME", root.join("home"));
    assert_eq!(
        catalog::models_dir(),
        root.join("home/.cache/pistil/models")
    );
    let models = root.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::env::set_var("PISTIL_MODELS", &models);
    assert_eq!(catalog::models_dir(), models);

    // A catalog name that is not cached → NeedsPull; cached_path → None.
    assert!(catalog::cached_path("gemma3:270m").is_none());
    match catalog::resolve("gemma3:270m").unwrap() {
        Resolved::NeedsPull(e) => assert_eq!(e.name, "gemma3:270m"),
        other => panic!("expected NeedsPull, got {other:?}"),
    }
    // A leftover partial download does not count as cached.
    std::fs::write(models.join("gemma3-270m.gguf.partial"), b"half").unwrap();
    assert!(catalog::cached_path("gemma3:270m").is_none());

    // Cached → its path.
    let cached = models.join("gemma3-270m.gguf");
    std::fs::write(&cached, b"GGUF").unwrap();
    assert_eq!(catalog::cached_path("gemma3:270m"), Some(cached.clone()));
    match catalog::resolve("gemma3:270m").unwrap() {
        Resolved::Path(p) => assert_eq!(p, cached),
        other => panic!("expected Path, got {other:?}"),
    }
    // Names with more colons/dots map the same way.
    match catalog::resolve("deepseek-r1:1.5b").unwrap() {
        Resolved::NeedsPull(e) => assert_eq!(e.path(), models.join("deepseek-r1-1.5b.gguf")),
        other => panic!("expected NeedsPull, got {other:?}"),
    }

    // An existing path → that path, even if it looks nothing like a catalog name.
    let file = root.join("my model.gguf");
    std::fs::write(&file, b"GGUF").unwrap();
    match catalog::resolve(file.to_str().unwrap()).unwrap() {
        Resolved::Path(p) => assert_eq!(p, file),
        other => panic!("expected Path, got {other:?}"),
    }

    // Neither → an error that says so and lists the catalog.
    for bad in [
        "/no/such/file.gguf",
        "gemma3:9000b",
        "",
        root.to_str().unwrap(),
    ] {
        let err = catalog::resolve(bad).unwrap_err().to_string();
        assert!(err.contains("neither a file nor a known model"), "{err}");
        assert!(
            err.contains("gemma3:270m") && err.contains("deepseek-r1:7b"),
            "{err}"
        );
    }
    assert!(catalog::cached_path("not-a-model").is_none());

    let _ = std::fs::remove_dir_all(&root);
}
