//! Generated text on its way to the caller: the thought/answer split and the
//! stop strings, both streaming and allocation-free once their buffers have
//! grown to the longest piece they hold.
//!
//! ```text
//! token ─► Detokenizer ─► ThoughtSplitter ─┬─ Thinking(&str) ─────────────► sink
//!          (whole UTF-8)   (<think>…</think>)└─ Content(&str) ─► StopMatcher ─► sink
//! ```
//!
//! [`ThoughtSplitter`] follows [`crate::chat::ReasoningParser`]'s rules (tags
//! by token id when the vocabulary has them as single tokens, else by text
//! across pieces; the thought's surrounding whitespace and the answer's
//! leading whitespace are trimmed), writing into a reused buffer instead of
//! returning a `Vec` of `String`s per token.

use crate::chat::reasoning::{THINK_CLOSE, THINK_OPEN};
use std::ops::ControlFlow;

/// What a piece of text is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Inside `<think>…</think>`.
    Thinking,
    /// The answer.
    Content,
}

/// Why the stream stops early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halt {
    /// The sink asked to stop.
    Cancelled,
    /// A stop string was generated.
    Stop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Only whitespace so far: `<think>` here opens a thought.
    Start,
    Thinking,
    Content,
}

/// Streaming thought/answer splitter (see the module docs).
#[derive(Debug)]
pub struct ThoughtSplitter {
    /// `(<think>, </think>)` ids when both are single tokens.
    tag_ids: Option<(u32, u32)>,
    /// `false`: everything is content, verbatim (raw completions).
    enabled: bool,
    state: State,
    /// Held-back text: a possible partial tag, or trailing/leading whitespace.
    pending: String,
    trim_leading: bool,
}

impl ThoughtSplitter {
    /// A splitter; `starts_in_thinking` when the prompt opened the thought.
    /// With `enabled = false` text passes through as content, untouched.
    pub fn new(tag_ids: Option<(u32, u32)>, starts_in_thinking: bool, enabled: bool) -> Self {
        ThoughtSplitter {
            tag_ids,
            enabled,
            state: if starts_in_thinking {
                State::Thinking
            } else {
                State::Start
            },
            pending: String::with_capacity(64),
            trim_leading: true,
        }
    }

    /// Resets for a new stream, keeping the buffer.
    pub fn reset(&mut self, starts_in_thinking: bool, enabled: bool) {
        self.enabled = enabled;
        self.state = if starts_in_thinking {
            State::Thinking
        } else {
            State::Start
        };
        self.pending.clear();
        self.trim_leading = true;
    }

    /// Whether the stream is inside a thought now.
    pub fn is_thinking(&self) -> bool {
        self.enabled && self.state == State::Thinking
    }

    /// Adds generated token `id` whose text is `text`.
    pub fn push<F>(&mut self, id: u32, text: &str, out: &mut F) -> ControlFlow<Halt>
    where
        F: FnMut(Kind, &str) -> ControlFlow<Halt>,
    {
        if !self.enabled {
            return emit(out, Kind::Content, text);
        }
        match self.tag_ids {
            Some((open, close)) => {
                if id == open && self.state == State::Start {
                    self.pending.clear();
                    self.state = State::Thinking;
                    self.trim_leading = true;
                    ControlFlow::Continue(())
                } else if id == close {
                    // A stray `</think>` in the answer is dropped.
                    if self.state != State::Content {
                        self.close_thought(out)?;
                    }
                    ControlFlow::Continue(())
                } else {
                    self.feed(text, false, out)
                }
            }
            None => self.feed(text, true, out),
        }
    }

    /// Ends the stream: flushes what was held back (an unclosed thought stays a thought).
    pub fn finish<F>(&mut self, out: &mut F) -> ControlFlow<Halt>
    where
        F: FnMut(Kind, &str) -> ControlFlow<Halt>,
    {
        if !self.enabled {
            return ControlFlow::Continue(());
        }
        let r = match self.state {
            State::Thinking => emit(out, Kind::Thinking, self.pending.trim_end()),
            State::Start | State::Content => {
                if self.pending.trim().is_empty() {
                    ControlFlow::Continue(())
                } else {
                    emit(out, Kind::Content, &self.pending)
                }
            }
        };
        self.pending.clear();
        r
    }

    fn close_thought<F>(&mut self, out: &mut F) -> ControlFlow<Halt>
    where
        F: FnMut(Kind, &str) -> ControlFlow<Halt>,
    {
        let r = if self.state == State::Thinking {
            emit(out, Kind::Thinking, self.pending.trim_end())
        } else {
            ControlFlow::Continue(())
        };
        self.pending.clear();
        self.state = State::Content;
        self.trim_leading = true;
        r
    }

    /// Drops leading whitespace of `pending`; `false` if nothing else is left.
    fn trim_pending_start(&mut self) -> bool {
        let ws = self.pending.len() - self.pending.trim_start().len();
        self.pending.drain(..ws);
        !self.pending.is_empty()
    }

    fn feed<F>(&mut self, text: &str, match_tags: bool, out: &mut F) -> ControlFlow<Halt>
    where
        F: FnMut(Kind, &str) -> ControlFlow<Halt>,
    {
        self.pending.push_str(text);
        loop {
            match self.state {
                State::Start => {
                    let t = self.pending.trim_start();
                    if t.is_empty() {
                        return ControlFlow::Continue(());
                    }
                    if match_tags && t.starts_with(THINK_OPEN) {
                        let cut = self.pending.len() - t.len() + THINK_OPEN.len();
                        self.pending.drain(..cut);
                        self.state = State::Thinking;
                        self.trim_leading = true;
                        continue;
                    }
                    if match_tags && THINK_OPEN.starts_with(t) {
                        return ControlFlow::Continue(()); // maybe the start of `<think>`
                    }
                    self.state = State::Content;
                    self.trim_leading = true;
                }
                State::Thinking => {
                    if self.trim_leading {
                        if !self.trim_pending_start() {
                            return ControlFlow::Continue(());
                        }
                        self.trim_leading = false;
                    }
                    if match_tags {
                        if let Some(p) = self.pending.find(THINK_CLOSE) {
                            emit(out, Kind::Thinking, self.pending[..p].trim_end())?;
                            self.pending.drain(..p + THINK_CLOSE.len());
                            self.state = State::Content;
                            self.trim_leading = true;
                            continue;
                        }
                    }
                    // Emit all but a possible partial tag and trailing whitespace.
                    let hold = if match_tags {
                        partial_suffix(&self.pending, THINK_CLOSE)
                    } else {
                        0
                    };
                    let body_end = self.pending.len() - hold;
                    let ws_start = self.pending[..body_end].trim_end().len();
                    let r = emit(out, Kind::Thinking, &self.pending[..ws_start]);
                    self.pending.drain(..ws_start);
                    return r;
                }
                State::Content => {
                    if self.trim_leading {
                        if !self.trim_pending_start() {
                            return ControlFlow::Continue(());
                        }
                        self.trim_leading = false;
                    }
                    let r = emit(out, Kind::Content, &self.pending);
                    self.pending.clear();
                    return r;
                }
            }
        }
    }
}

fn emit<F>(out: &mut F, kind: Kind, text: &str) -> ControlFlow<Halt>
where
    F: FnMut(Kind, &str) -> ControlFlow<Halt>,
{
    if text.is_empty() {
        ControlFlow::Continue(())
    } else {
        out(kind, text)
    }
}

/// Length of the longest suffix of `s` that is a proper prefix of `pat`.
pub(crate) fn partial_suffix(s: &str, pat: &str) -> usize {
    (1..pat.len().min(s.len() + 1))
        .rev()
        .find(|&n| {
            s.is_char_boundary(s.len() - n)
                && pat.as_bytes().starts_with(&s.as_bytes()[s.len() - n..])
        })
        .unwrap_or(0)
}

/// Stop strings over the answer text: text is passed on only once it can no
/// longer be the start of a stop string; a stop string and what follows it
/// are never passed on.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    longest: usize,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> StopMatcher {
        let stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        let longest = stops.iter().map(String::len).max().unwrap_or(0);
        StopMatcher {
            held: String::with_capacity(longest * 2 + 64),
            stops,
            longest,
        }
    }

    /// Whether there are stop strings at all.
    pub fn is_active(&self) -> bool {
        !self.stops.is_empty()
    }

    /// Adds answer text; passes on what is safe. `Break(Halt::Stop)` when a
    /// stop string completed (the text before it has been passed on).
    pub fn push<F>(&mut self, text: &str, out: &mut F) -> ControlFlow<Halt>
    where
        F: FnMut(&str) -> ControlFlow<Halt>,
    {
        if self.stops.is_empty() {
            return if text.is_empty() {
                ControlFlow::Continue(())
            } else {
                out(text)
            };
        }
        self.held.push_str(text);
        // The earliest stop string in the held text.
        let hit = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(pos) = hit {
            if pos > 0 {
                out(&self.held[..pos])?;
            }
            self.held.clear();
            return ControlFlow::Break(Halt::Stop);
        }
        let hold = self
            .stops
            .iter()
            .map(|s| partial_suffix(&self.held, s))
            .max()
            .unwrap_or(0);
        debug_assert!(hold < self.longest.max(1));
        let safe = self.held.len() - hold;
        let r = if safe > 0 {
            out(&self.held[..safe])
        } else {
            ControlFlow::Continue(())
        };
        self.held.drain(..safe);
        r
    }

    /// Ends the stream: the held text was not a stop string after all.
    pub fn finish<F>(&mut self, out: &mut F) -> ControlFlow<Halt>
    where
        F: FnMut(&str) -> ControlFlow<Halt>,
    {
        let r = if self.held.is_empty() {
            ControlFlow::Continue(())
        } else {
            out(&self.held)
        };
        self.held.clear();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(
        chunks: &[(u32, &str)],
        ids: Option<(u32, u32)>,
        starts: bool,
    ) -> Vec<(Kind, String)> {
        let mut s = ThoughtSplitter::new(ids, starts, true);
        let mut got: Vec<(Kind, String)> = Vec::new();
        let mut out = |k: Kind, t: &str| {
            match got.last_mut() {
                Some((lk, lt)) if *lk == k => lt.push_str(t),
                _ => got.push((k, t.to_string())),
            }
            ControlFlow::Continue(())
        };
        for &(id, t) in chunks {
            let _ = s.push(id, t, &mut out);
        }
        let _ = s.finish(&mut out);
        got
    }

    #[test]
    fn split_like_reasoning_parser() {
        use Kind::*;
        let whole = "<think>\na plan\n</think>\n\nThe answer.";
        let want = vec![
            (Thinking, "a plan".to_string()),
            (Content, "The answer.".to_string()),
        ];
        assert_eq!(split_all(&[(0, whole)], None, false), want);
        let chars: Vec<String> = whole.chars().map(String::from).collect();
        let pieces: Vec<(u32, &str)> = chars.iter().map(|c| (0, c.as_str())).collect();
        assert_eq!(split_all(&pieces, None, false), want);
        // Template-opened thought, tags by id.
        assert_eq!(
            split_all(
                &[(1, "Let me see.\n"), (8, "</think>"), (1, "\n\n42")],
                Some((7, 8)),
                true
            ),
            vec![(Thinking, "Let me see.".into()), (Content, "42".into())]
        );
        // No thought: leading whitespace trimmed, tag text later is content.
        assert_eq!(
            split_all(&[(0, "\nHello"), (0, " there <think> x")], None, false),
            vec![(Content, "Hello there <think> x".into())]
        );
        // Unclosed thought stays a thought.
        assert_eq!(
            split_all(&[(0, "<think>hmm </thi")], None, false),
            vec![(Thinking, "hmm </thi".into())]
        );
        // By id: text "</think>" from ordinary tokens stays in the thought.
        assert_eq!(
            split_all(
                &[
                    (7, "<think>"),
                    (1, "x</think>y"),
                    (8, "</think>"),
                    (1, "ok")
                ],
                Some((7, 8)),
                false
            ),
            vec![(Thinking, "x</think>y".into()), (Content, "ok".into())]
        );
    }

    #[test]
    fn disabled_is_verbatim() {
        let mut s = ThoughtSplitter::new(None, false, false);
        let mut got = String::new();
        for t in [" the", " <think>", "\n"] {
            let _ = s.push(0, t, &mut |_, x: &str| {
                got.push_str(x);
                ControlFlow::Continue(())
            });
        }
        assert_eq!(got, " the <think>\n");
    }

    fn stop_all(stops: &[&str], pieces: &[&str]) -> (String, bool, Vec<String>) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut got = String::new();
        let mut emitted = Vec::new();
        let mut stopped = false;
        for p in pieces {
            let r = m.push(p, &mut |t: &str| {
                got.push_str(t);
                emitted.push(t.to_string());
                ControlFlow::Continue(())
            });
            if r == ControlFlow::Break(Halt::Stop) {
                stopped = true;
                break;
            }
        }
        if !stopped {
            let _ = m.finish(&mut |t: &str| {
                got.push_str(t);
                emitted.push(t.to_string());
                ControlFlow::Continue(())
            });
        }
        (got, stopped, emitted)
    }

    #[test]
    fn stop_strings() {
        // Split across pieces; nothing of the stop string is emitted.
        let (got, stopped, emitted) =
            stop_all(&["\nUser:"], &["Hi", " there\n", "Us", "er:", " more"]);
        assert_eq!(got, "Hi there");
        assert!(stopped);
        assert!(emitted.iter().all(|e| !e.contains('\n')), "{emitted:?}");
        // A false start is released when it cannot match any more.
        let (got, stopped, _) = stop_all(&["STOP"], &["a ST", "x", "b"]);
        assert_eq!((got.as_str(), stopped), ("a STxb", false));
        // Held text at the end is flushed.
        let (got, stopped, _) = stop_all(&["STOP"], &["a ST"]);
        assert_eq!((got.as_str(), stopped), ("a ST", false));
        // Earliest of several.
        let (got, _, _) = stop_all(&["cd", "b"], &["abcd"]);
        assert_eq!(got, "a");
        // Multi-byte characters.
        let (got, stopped, _) = stop_all(&["é!"], &["caf", "é", "!"]);
        assert_eq!((got.as_str(), stopped), ("caf", true));
        // No stops: passthrough.
        let (got, _, _) = stop_all(&[], &["x", "y"]);
        assert_eq!(got, "xy");
    }
}
