//! `pistil run` end to end on the tiny fixture models (tests/fixtures/models).

mod pistil_bin;

use std::process::Output;

use pistil_bin::fixture_model as model;

fn pistil(args: &[&str]) -> Output {
    pistil_bin::pistil_command()
        .args(args)
        .env("PISTIL_BOARD", "generic-x86_64")
        .env_remove("RUST_LOG")
        .output()
        .expect("run pistil")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}, stderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).expect("UTF-8 output")
}

#[test]
fn greedy_output_is_deterministic() {
    let m = model("tiny-qwen2.q8_0");
    let args = [
        "run",
        "-m",
        &m,
        "-p",
        "The quick brown fox",
        "-n",
        "8",
        "--temp",
        "0",
        "--seed",
        "1",
    ];
    let a = ok(&pistil(&args));
    assert!(!a.trim().is_empty());
    assert_eq!(a, ok(&pistil(&args)));
    // Loading without mmap (read into memory) gives the same text.
    let mut no_mmap = args.to_vec();
    no_mmap.push("--no-mmap");
    assert_eq!(a, ok(&pistil(&no_mmap)));
    let mut mlock = args.to_vec();
    mlock.extend(["--load-mode", "mlock"]);
    assert_eq!(a, ok(&pistil(&mlock)));
    // A seeded sampled run is reproducible too.
    let sampled = [
        "run",
        "-m",
        &m,
        "-p",
        "The quick brown fox",
        "-n",
        "12",
        "--seed",
        "42",
        "--raw",
    ];
    assert_eq!(ok(&pistil(&sampled)), ok(&pistil(&sampled)));
}

#[test]
fn thinking_markers_and_hiding() {
    // tiny-qwen2 has DeepSeek R1's template, which opens a thought: without a
    // terminal the thought is printed between <think> lines.
    let m = model("tiny-qwen2.q8_0");
    let base = [
        "run",
        "-m",
        &m,
        "-p",
        "The quick brown fox",
        "-n",
        "6",
        "--temp",
        "0",
    ];
    let shown = ok(&pistil(&base));
    let mut hide = base.to_vec();
    hide.push("--hide-thinking");
    let hidden = ok(&pistil(&hide));
    assert!(!hidden.contains("<think>"), "{hidden:?}");
    if shown.starts_with("<think>\n") {
        assert!(shown.len() > hidden.len());
    }
    // --no-think: no thought at all.
    let mut off = base.to_vec();
    off.push("--no-think");
    assert!(!ok(&pistil(&off)).contains("<think>"));
}

#[test]
fn verbose_prints_ollama_stats() {
    let m = model("tiny-gemma3.q8_0");
    let o = pistil(&[
        "run",
        "-m",
        &m,
        "-p",
        "The quick brown fox",
        "-n",
        "5",
        "--temp",
        "0",
        "--verbose",
    ]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    for field in [
        "total duration:",
        "load duration:",
        "prompt eval count:",
        "prompt eval duration:",
        "prompt eval rate:",
        "eval count:           5 token(s)",
        "eval duration:",
        "eval rate:",
    ] {
        assert!(err.contains(field), "missing {field:?} in:\n{err}");
    }
}

#[test]
fn errors_are_one_line_with_exit_codes() {
    let m = model("tiny-llama.q8_0");
    let long = "the quick brown fox jumps over the lazy dog ".repeat(10);
    let o = pistil(&["run", "-m", &m, "-p", &long, "-c", "32", "-n", "4"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("the context holds 32"), "{err}");
    // With --truncate it runs.
    ok(&pistil(&[
        "run",
        "-m",
        &m,
        "-p",
        &long,
        "-c",
        "32",
        "-n",
        "4",
        "--truncate",
        "--temp",
        "0",
    ]));
    // Usage errors: clap's exit code 2.
    assert_eq!(
        pistil(&["run", "-m", &m, "-p", "x", "--temp", "hot"])
            .status
            .code(),
        Some(2)
    );
    // A missing file.
    let o = pistil(&["run", "-m", "/nonexistent/model.gguf", "-p", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim().lines().count(), 1);
}

#[test]
fn stop_strings_are_not_printed() {
    let m = model("tiny-gemma3.f32");
    let full = ok(&pistil(&[
        "run",
        "-m",
        &m,
        "-p",
        "The quick",
        "-n",
        "16",
        "--temp",
        "0",
        "--raw",
    ]));
    let Some(cut) = full.char_indices().nth(4).map(|(i, _)| i) else {
        return;
    };
    let stop: String = full[cut..].chars().take(2).collect();
    let out = ok(&pistil(&[
        "run",
        "-m",
        &m,
        "-p",
        "The quick",
        "-n",
        "16",
        "--temp",
        "0",
        "--raw",
        "--stop",
        &stop,
    ]));
    let want = &full[..full.find(&stop).unwrap_or(full.len())];
    assert_eq!(out.trim_end_matches('\n'), want.trim_end_matches('\n'));
}
