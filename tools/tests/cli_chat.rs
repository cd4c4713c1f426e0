//! `pistil chat` with piped standard input (headless): one turn per line,
//! the conversation kept in the KV cache, `/clear` and `/bye`.

mod pistil_bin;

use std::io::Write;
use std::process::{Output, Stdio};

use pistil_bin::fixture_model as model;

fn chat(model_name: &str, input: &str, extra: &[&str]) -> Output {
    let m = model(model_name);
    let mut args = vec![
        "chat",
        "-m",
        m.as_str(),
        "--temp",
        "0",
        "-n",
        "8",
        "--verbose",
    ];
    args.extend_from_slice(extra);
    let mut child = pistil_bin::pistil_command()
        .args(&args)
        .env("PISTIL_BOARD", "generic-x86_64")
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pistil");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The "prompt cached count" of each turn (0 when the line is absent).
fn cached_per_turn(stderr: &str) -> Vec<usize> {
    let mut turns = Vec::new();
    for line in stderr.lines() {
        if line.starts_with("total duration:") {
            turns.push(0);
        }
        if let Some(rest) = line.strip_prefix("prompt cached count:") {
            let n = rest.trim().split(' ').next().unwrap().parse().unwrap();
            if let Some(last) = turns.last_mut() {
                *last = n;
            }
        }
    }
    turns
}

#[test]
fn two_turns_reuse_the_cache() {
    for name in ["tiny-qwen2.q8_0", "tiny-gemma3.q8_0"] {
        let o = chat(name, "The quick brown fox\njumps over the dog\n", &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        let cached = cached_per_turn(&err);
        assert_eq!(cached.len(), 2, "{err}");
        assert_eq!(cached[0], 0);
        assert!(cached[1] > 5, "the second turn reuses the first: {err}");
        // No prompts, no ANSI without a terminal.
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(!out.contains(">>>") && !out.contains('\x1b'), "{out:?}");
    }
}

#[test]
fn clear_forgets_and_bye_ends() {
    let o = chat(
        "tiny-llama.q8_0",
        "Hello there\n/clear\nHello there\n/bye\nnot answered\n",
        &["--hide-thinking"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(cached_per_turn(&err), vec![0, 0], "{err}");
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let answers: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    // Greedy: the same question after /clear gets the same answer.
    let half = out.len() / 2;
    assert_eq!(&out[..half], &out[half..], "{answers:?}");
}
