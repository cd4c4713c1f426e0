//! The pipe mode's loop (`pistil run --jsonl`) with a scripted assistant:
//! event shapes, ids, bad lines, errors, EOF, a closed output.

use std::io::{self, Write};

use pistil_iot::testing::{FakeAssistant, Script};
use pistil_iot::{run_jsonl, run_jsonl_with, AssistError, Defaults, Think};
use serde_json::Value;

fn events(out: &[u8]) -> Vec<Value> {
    std::str::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn requests_bad_lines_and_eof() {
    let mut fake = FakeAssistant::new("fake");
    fake.push(Script::Answer {
        thinking: "hmm ok".into(),
        content: "It is warm.".into(),
    });
    fake.push(Script::Fail(AssistError::PromptTooLong {
        prompt: 300,
        n_ctx: 256,
    }));
    let input = concat!(
        "{\"id\": 1, \"prompt\": \"Is 21 C warm?\"}\n",
        "\n",
        "this is not json\n",
        "{\"id\": \"b\", \"prompt\": 3}\n",
        "{\"id\": [2], \"messages\": [{\"role\": \"user\", \"content\": \"long\"}]}\n",
        "{\"prompt\": \"no id\", \"think\": false, \"options\": {\"num_predict\": 1}}", // no final newline
    );
    let mut out = Vec::new();
    let summary = run_jsonl(&mut fake, input.as_bytes(), &mut out).unwrap();
    assert_eq!((summary.answered, summary.errors), (2, 3));
    let ev = events(&out);
    let kinds: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "thinking", "thinking", "token", "token", "token", "done", "error", "error", "error",
            "token", "done"
        ]
    );
    // Ids are echoed on every event of a request.
    assert!(ev[..6].iter().all(|e| e["id"] == 1));
    let text: String = ev[2..5]
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "It is warm.");
    let done = &ev[5];
    assert_eq!(done["done_reason"], "stop");
    assert_eq!(done["response"], "It is warm.");
    assert_eq!(done["stats"]["gen_tokens"], 5);
    for k in [
        "prompt_tokens",
        "cached_tokens",
        "prompt_eval_ms",
        "eval_ms",
        "total_ms",
        "tokens_per_second",
    ] {
        assert!(done["stats"][k].is_number(), "{k}");
    }
    // A line that is not JSON: no id, the line number.
    assert!(ev[6].get("id").is_none());
    assert!(
        ev[6]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 3: bad request"),
        "{}",
        ev[6]
    );
    // A bad request keeps its id.
    assert_eq!(ev[7]["id"], "b");
    assert!(ev[7]["message"].as_str().unwrap().contains("line 4"));
    // An engine error names the problem.
    assert_eq!(ev[8]["id"], serde_json::json!([2]));
    assert!(ev[8]["message"]
        .as_str()
        .unwrap()
        .contains("longer than the context"));
    // think:false → no thinking events; num_predict 1 → length.
    assert!(ev[9].get("id").is_none());
    assert_eq!(ev[10]["done_reason"], "length");
    assert_eq!(ev[10]["response"], "echo: ");
    // What the assistant was asked.
    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].think, Think::Off);
}

#[test]
fn defaults_apply_to_requests() {
    let mut fake = FakeAssistant::new("fake");
    let defaults = Defaults {
        system: Some("Be brief.".into()),
        think: Think::Budget(16),
        ..Defaults::default()
    };
    let mut out = Vec::new();
    run_jsonl_with(&mut fake, &defaults, &b"{\"prompt\":\"q\"}\n"[..], &mut out).unwrap();
    let seen = fake.seen();
    assert_eq!(seen[0].system.as_deref(), Some("Be brief."));
    assert_eq!(seen[0].think, Think::Budget(16));
}

/// A writer that fails after `ok` writes, like a pipe whose reader exited.
struct ClosesAfter {
    ok: usize,
}

impl Write for ClosesAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.ok == 0 {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        self.ok -= 1;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn closed_output_cancels_and_returns_the_error() {
    let mut fake = FakeAssistant::new("fake");
    let input = "{\"prompt\":\"one two three four five six seven\"}\n{\"prompt\":\"never\"}\n";
    let e = run_jsonl(&mut fake, input.as_bytes(), ClosesAfter { ok: 2 }).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    // The second request was never started.
    assert_eq!(fake.seen().len(), 1);
}

#[test]
fn invalid_utf8_and_over_long_lines() {
    let mut fake = FakeAssistant::new("fake");
    let mut input = b"\xff\xfe\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', pistil_iot::jsonl::MAX_LINE + 1));
    input.extend(b"\n{\"prompt\":\"ok\"}\n");
    let mut out = Vec::new();
    let s = run_jsonl(&mut fake, &input[..], &mut out).unwrap();
    assert_eq!((s.answered, s.errors), (1, 2));
    let ev = events(&out);
    assert!(ev[0]["message"].as_str().unwrap().contains("not UTF-8"));
    assert!(ev[1]["message"].as_str().unwrap().contains("longer than"));
    assert_eq!(ev.last().unwrap()["type"], "done");
}
