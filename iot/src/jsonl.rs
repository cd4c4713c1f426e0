//! Headless pipe mode (`pistil run --jsonl`): one JSON request per line on
//! stdin, JSON events on stdout, one per line, flushed as they happen — so a
//! voice pipeline (speech-to-text → pistil → text-to-speech) is plain pipes.
//!
//! Requests are described in [`crate::request`]. Events (`id` is present when
//! the request had one):
//!
//! ```text
//! {"type":"thinking","id":…,"text":"…"}     a piece of the thought
//! {"type":"token","id":…,"text":"…"}        a piece of the answer
//! {"type":"done","id":…,"done_reason":"stop","response":"<whole answer>",
//!  "stats":{"prompt_tokens":…,"cached_tokens":…,"gen_tokens":…,
//!           "prompt_eval_ms":…,"eval_ms":…,"total_ms":…,"tokens_per_second":…}}
//! {"type":"error","id":…,"message":"…"}     the request failed; the loop goes on
//! ```
//!
//! Blank lines are skipped; a bad line gives one `error` event and the loop
//! continues; end of input ends the loop cleanly. If stdout is closed (the
//! next program in the pipe exited), the running generation is cancelled and
//! the loop ends with the write error.

use std::io::{self, BufRead, Write};
use std::ops::ControlFlow;

use serde_json::{json, Map, Value};

use crate::assistant::{Assistant, Outcome, Piece, Reply};
use crate::request::{parse_request, salvage_id, Defaults};

/// Longest request line accepted (longer lines are skipped with an error event).
pub const MAX_LINE: usize = 16 << 20;

/// What a [`run_jsonl`] loop did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonlSummary {
    /// Requests answered (a `done` event was written).
    pub answered: usize,
    /// Lines that produced an `error` event.
    pub errors: usize,
}

/// Runs the pipe loop until end of input.
///
/// Returns the counts, or the I/O error that stopped it (reading the input or
/// writing an event; a closed output is `BrokenPipe`).
pub fn run_jsonl<A, R, W>(assistant: &mut A, input: R, output: W) -> io::Result<JsonlSummary>
where
    A: Assistant + ?Sized,
    R: BufRead,
    W: Write,
{
    run_jsonl_with(assistant, &Defaults::default(), input, output)
}

/// [`run_jsonl`] with defaults for what requests leave unset (the command
/// line's `--system`, `--think`, sampling flags).
pub fn run_jsonl_with<A, R, W>(
    assistant: &mut A,
    defaults: &Defaults,
    input: R,
    mut output: W,
) -> io::Result<JsonlSummary>
where
    A: Assistant + ?Sized,
    R: BufRead,
    W: Write,
{
    let mut input = input;
    let mut summary = JsonlSummary::default();
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let line = match read_line_bounded(&mut input, &mut buf, MAX_LINE)? {
            LineRead::Eof => break,
            LineRead::TooLong => {
                line_no += 1;
                summary.errors += 1;
                write_event(
                    &mut output,
                    error_event(
                        &Value::Null,
                        &format!("line {line_no}: longer than {MAX_LINE} bytes, skipped"),
                    ),
                )?;
                continue;
            }
            LineRead::Line => {
                line_no += 1;
                match std::str::from_utf8(&buf) {
                    Ok(s) => s,
                    Err(e) => {
                        summary.errors += 1;
                        write_event(
                            &mut output,
                            error_event(
                                &Value::Null,
                                &format!("line {line_no}: not UTF-8 text ({e})"),
                            ),
                        )?;
                        continue;
                    }
                }
            }
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let req = match parse_request(line) {
            Ok(mut r) => {
                defaults.apply(&mut r);
                r
            }
            Err(e) => {
                summary.errors += 1;
                write_event(
                    &mut output,
                    error_event(&salvage_id(line), &format!("line {line_no}: {e}")),
                )?;
                continue;
            }
        };

        let mut reply = Reply::default();
        let mut write_err: Option<io::Error> = None;
        let result = assistant.generate(&req.ask, &mut |piece| {
            reply.push(&piece);
            let (kind, text) = match &piece {
                Piece::Thinking(t) => ("thinking", t),
                Piece::Content(t) => ("token", t),
            };
            let mut ev = Map::new();
            ev.insert("type".into(), kind.into());
            put_id(&mut ev, &req.id);
            ev.insert("text".into(), text.as_str().into());
            match write_event(&mut output, Value::Object(ev)) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    write_err = Some(e);
                    ControlFlow::Break(())
                }
            }
        });
        if let Some(e) = write_err {
            return Err(e);
        }
        match result {
            Ok(outcome) => {
                summary.answered += 1;
                write_event(&mut output, done_event(&req.id, &reply, &outcome))?;
            }
            Err(e) => {
                summary.errors += 1;
                write_event(&mut output, error_event(&req.id, &e.to_string()))?;
            }
        }
    }
    output.flush()?;
    Ok(summary)
}

/// The stats object shared by the pipe mode and the MQTT replies.
pub fn stats_json(o: &Outcome) -> Value {
    let eval_s = o.eval.as_secs_f64();
    let tps = if eval_s > 0.0 {
        o.gen_tokens as f64 / eval_s
    } else {
        0.0
    };
    json!({
        "prompt_tokens": o.prompt_tokens,
        "cached_tokens": o.cached_tokens,
        "gen_tokens": o.gen_tokens,
        "prompt_eval_ms": ms(o.prompt_eval),
        "eval_ms": ms(o.eval),
        "total_ms": ms(o.total),
        "tokens_per_second": (tps * 100.0).round() / 100.0,
    })
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn put_id(ev: &mut Map<String, Value>, id: &Value) {
    if !id.is_null() {
        ev.insert("id".into(), id.clone());
    }
}

fn done_event(id: &Value, reply: &Reply, o: &Outcome) -> Value {
    let mut ev = Map::new();
    ev.insert("type".into(), "done".into());
    put_id(&mut ev, id);
    ev.insert("done_reason".into(), o.done_reason.as_str().into());
    ev.insert("response".into(), reply.content.as_str().into());
    ev.insert("stats".into(), stats_json(o));
    Value::Object(ev)
}

fn error_event(id: &Value, message: &str) -> Value {
    let mut ev = Map::new();
    ev.insert("type".into(), "error".into());
    put_id(&mut ev, id);
    ev.insert("message".into(), message.into());
    Value::Object(ev)
}

fn write_event<W: Write>(out: &mut W, ev: Value) -> io::Result<()> {
    let mut line = serde_json::to_vec(&ev).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

enum LineRead {
    Eof,
    Line,
    TooLong,
}

/// Reads one line (without its `\n`) into `buf`, at most `max` bytes; a
/// longer line is consumed up to its end and reported as `TooLong`.
fn read_line_bounded<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<LineRead> {
    let mut too_long = false;
    let mut read_any = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(match (read_any, too_long) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        read_any = true;
        let (take, found) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let data = chunk.get(..take).unwrap_or(chunk);
        let data = if found {
            data.get(..take - 1).unwrap_or(data)
        } else {
            data
        };
        if !too_long {
            if buf.len() + data.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(data);
            }
        }
        r.consume(take);
        if found {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lines() {
        let mut r = io::BufReader::with_capacity(4, &b"abc\nlonglongline\n\nxy"[..]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            buf.clear();
            match read_line_bounded(&mut r, &mut buf, 8).unwrap() {
                LineRead::Eof => break,
                LineRead::TooLong => got.push("<too long>".to_string()),
                LineRead::Line => got.push(String::from_utf8(buf.clone()).unwrap()),
            }
        }
        assert_eq!(got, ["abc", "<too long>", "", "xy"]);
    }
}
