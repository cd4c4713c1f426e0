//! A scripted [`Assistant`] for tests of the front ends (here and in the
//! `pistil` binary's tests): answers instantly, records what it was asked.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::assistant::{Ask, AskPrompt, AssistError, Assistant, DoneReason, Outcome, Piece, Role};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Script {
    /// Stream this thought and answer (split in pieces at spaces).
    Answer {
        /// The thought ("" = none).
        thinking: String,
        /// The answer.
        content: String,
    },
    /// Fail with this error.
    Fail(AssistError),
}

/// A fake model. Without a script it echoes: the answer is
/// `"echo: <last user message>"` with the thought `"thinking about <it>"`.
#[derive(Debug, Clone)]
pub struct FakeAssistant {
    name: String,
    script: Arc<Mutex<VecDeque<Script>>>,
    /// Every request seen, in order.
    pub seen: Arc<Mutex<Vec<Ask>>>,
    /// Time spent per piece (to test queueing and cancellation).
    pub piece_delay: Duration,
}

impl FakeAssistant {
    /// An echoing fake named `name`.
    pub fn new(name: &str) -> FakeAssistant {
        FakeAssistant {
            name: name.to_string(),
            script: Arc::new(Mutex::new(VecDeque::new())),
            seen: Arc::new(Mutex::new(Vec::new())),
            piece_delay: Duration::ZERO,
        }
    }

    /// Queue a scripted answer (used before falling back to echoing).
    pub fn push(&self, s: Script) {
        if let Ok(mut q) = self.script.lock() {
            q.push_back(s);
        }
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Ask> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn last_user(ask: &Ask) -> String {
    match &ask.prompt {
        AskPrompt::Text(t) => t.clone(),
        AskPrompt::Chat(turns) => turns
            .iter()
            .rev()
            .find(|t| t.role == Role::User)
            .map(|t| t.content.clone())
            .unwrap_or_default(),
    }
}

fn pieces(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        cur.push(c);
        if c == ' ' {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Assistant for FakeAssistant {
    fn model_name(&self) -> &str {
        &self.name
    }

    fn generate(
        &mut self,
        ask: &Ask,
        sink: &mut dyn FnMut(Piece) -> ControlFlow<()>,
    ) -> Result<Outcome, AssistError> {
        let start = Instant::now();
        if let Ok(mut s) = self.seen.lock() {
            s.push(ask.clone());
        }
        let scripted = self.script.lock().ok().and_then(|mut q| q.pop_front());
        let q = last_user(ask);
        let (thinking, content) = match scripted {
            Some(Script::Fail(e)) => return Err(e),
            Some(Script::Answer { thinking, content }) => (thinking, content),
            None => (format!("thinking about {q}"), format!("echo: {q}")),
        };
        let mut all: Vec<Piece> = Vec::new();
        if ask.think != crate::assistant::Think::Off {
            all.extend(pieces(&thinking).into_iter().map(Piece::Thinking));
        }
        all.extend(pieces(&content).into_iter().map(Piece::Content));
        let limit = ask.max_tokens().unwrap_or(usize::MAX);
        let mut n = 0;
        let mut reason = DoneReason::Stop;
        for p in all {
            if n == limit {
                reason = DoneReason::Length;
                break;
            }
            if !self.piece_delay.is_zero() {
                std::thread::sleep(self.piece_delay);
            }
            n += 1;
            if sink(p).is_break() {
                reason = DoneReason::Cancelled;
                break;
            }
        }
        let total = start.elapsed();
        Ok(Outcome {
            done_reason: reason,
            prompt_tokens: ask
                .messages()
                .iter()
                .map(|m| m.content.split_whitespace().count() + 4)
                .sum(),
            cached_tokens: 0,
            prompt_eval: Duration::ZERO,
            gen_tokens: n,
            eval: total,
            total,
        })
    }
}
