//! `pistil serve` with the official `ollama` and `openai` Python clients:
//! starts an open server and one with `--api-key` (a tiny R1-template model
//! loaded), then runs `python3 -m pytest tests/python/test_clients.py -q` against them.
//!
//! Needs python3 with the packages of `tests/python/requirements.txt`
//! (`pip install -r tests/python/requirements.txt`); without them this test
//! fails and says so. Skipped under qemu (`PISTIL_UNDER_QEMU=1`).

mod pistil_bin;
mod serve_support;

use std::path::PathBuf;
use std::process::Command;

use serve_support::{fixture, start, under_qemu};

#[test]
fn official_python_clients() {
    if under_qemu() {
        eprintln!("skipped under qemu");
        return;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let install = "pip install -r tests/python/requirements.txt";
    let probe = Command::new("python3")
        .args(["-c", "import openai, ollama, pytest, pydantic, httpx"])
        .output();
    match probe {
        Err(e) => panic!("python3 is needed for this test ({e}); install it, then: {install}"),
        Ok(o) if !o.status.success() => panic!(
            "the Python clients are missing ({}); install them with: {install}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
        Ok(_) => {}
    }
    let model = fixture("models/tiny-qwen2.q8_0.gguf").display().to_string();
    let open = start(&["-m", &model, "-c", "256", "-t", "2"]);
    let keyed = start(&[
        "-m",
        &model,
        "-c",
        "256",
        "-t",
        "2",
        "--api-key",
        "py-test-key",
    ]);
    let out = Command::new("python3")
        .args([
            "-m",
            "pytest",
            "tests/python/test_clients.py",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(&repo)
        .env("PISTIL_URL", &open.base)
        .env("PISTIL_MODEL", "tiny-qwen2.q8_0")
        .env("PISTIL_KEYED_URL", &keyed.base)
        .env("PISTIL_KEY", "py-test-key")
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client tests failed:\n{stdout}\n{stderr}\n--- server log ---\n{}",
        open.log()
    );
    eprintln!("{}", stdout.lines().last().unwrap_or(""));
}
