//! `pistil tokenize` end to end on the vocab-only GGUFs in
//! `tests/fixtures/tokenizer/` (ids from llama.cpp, see that folder's README).

mod pistil_bin;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};

fn vocab(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/tokenizer")
        .join(format!("{name}.vocab.gguf"))
        .display()
        .to_string()
}

fn pistil(args: &[&str]) -> Output {
    pistil_bin::pistil_command()
        .args(args)
        .output()
        .expect("run pistil")
}

fn ids(o: &Output) -> Vec<u32> {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("a JSON array of ids")
}

#[test]
fn prints_llama_cpp_ids() {
    let m = vocab("deepseek-r1-qwen");
    assert_eq!(
        ids(&pistil(&["tokenize", "-m", &m, "Hello world"])),
        [151646, 9707, 1879]
    );
    assert_eq!(
        ids(&pistil(&["tokenize", "-m", &m, "--no-bos", "Hello world"])),
        [9707, 1879]
    );
    let o = pistil(&["tokenize", "-m", &m, "Hello world"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "[151646, 9707, 1879]\n");

    let chat = "<｜User｜><｜User｜><｜Assistant｜>";
    assert_eq!(
        ids(&pistil(&["tokenize", "-m", &m, chat])),
        [151646, 151644, 151644, 151645]
    );
    let plain = ids(&pistil(&[
        "tokenize",
        "-m",
        &m,
        "--no-bos",
        "--no-special",
        chat,
    ]));
    assert!(
        !plain.contains(&151644),
        "control tokens must not be parsed: {plain:?}"
    );
    assert_eq!(&plain[..4], &[27, 130957, 1474, 130957]);

    let g = vocab("gemma3");
    assert_eq!(
        ids(&pistil(&["tokenize", "-m", &g, "<start_of_turn>user\n"]))[..2],
        [2, 105]
    );
}

#[test]
fn pieces_and_stdin() {
    let m = vocab("deepseek-r1-qwen");
    let o = pistil(&["tokenize", "-m", &m, "--pieces", "Hi 😀"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let arr = v.as_array().expect("array");
    assert_eq!(arr[0]["id"], 151646);
    assert_eq!(arr[0]["piece"], "<｜begin▁of▁sentence｜>");
    assert_eq!(arr[1]["piece"], "Hi");
    // The emoji is split over byte-level tokens: partial pieces carry their bytes.
    let bytes: Vec<u8> = arr[2..]
        .iter()
        .flat_map(|t| match t.get("bytes") {
            Some(b) => serde_json::from_value::<Vec<u8>>(b.clone()).unwrap(),
            None => t["piece"].as_str().unwrap().as_bytes().to_vec(),
        })
        .collect();
    assert_eq!(String::from_utf8(bytes).unwrap(), " 😀");

    let mut child = pistil_bin::pistil_command()
        .args(["tokenize", "-m", &m, "--stdin", "--no-bos"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hello world")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(ids(&o), [9707, 1879]);
}

#[test]
fn errors_are_one_line() {
    let o = pistil(&["tokenize", "-m", "/nonexistent/model.gguf", "x"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("pistil: error:"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    // A GGUF without a tokenizer: a tiny model fixture has one, so use a
    // non-GGUF file instead to check the message names the file.
    let o = pistil(&["tokenize", "-m", file!(), "x"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cli_tokenize.rs"));
}
