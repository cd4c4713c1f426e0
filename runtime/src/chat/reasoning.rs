//! Reasoning models (DeepSeek R1 and its distills) think first, inside
//! `<think>…</think>`, then answer. [`ReasoningParser`] splits the generated
//! stream into thought and answer as it arrives; [`ThinkBudget`] caps the
//! thought by forcing `</think>` after N tokens.
//!
//! Both prefer token ids: in the R1 vocabularies `<think>` and `</think>` are
//! single tokens, so a model that writes the text "<think>" in its answer (as
//! several ordinary tokens) is not mistaken for a new thought. Without such
//! tokens they match the tag text, across piece boundaries.

use crate::tokenizer::{Tokenizer, TokenizerError};

/// Opening tag.
pub const THINK_OPEN: &str = "<think>";
/// Closing tag.
pub const THINK_CLOSE: &str = "</think>";

/// A piece of the split stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReasoningEvent {
    /// Text of the thought (shown dimmed, or hidden; never spoken).
    Thinking(String),
    /// Text of the answer.
    Content(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace so far: a `<think>` here opens a thought.
    Start,
    /// Inside the thought.
    Thinking,
    /// In the answer.
    Content,
}

/// Streaming thought/answer splitter.
///
/// Feed each generated token with [`push_token`](Self::push_token) (its id and
/// the text the detokenizer produced for it), or plain text with
/// [`push_text`](Self::push_text); call [`finish`](Self::finish) at the end.
/// Whitespace around the thought is trimmed: the thought's leading and
/// trailing whitespace, and the answer's leading whitespace (R1 writes
/// `<think>\n…\n</think>\n\n` before the answer).
#[derive(Clone, Debug)]
pub struct ReasoningParser {
    /// `(<think>, </think>)` token ids, if both are single tokens.
    tag_ids: Option<(u32, u32)>,
    state: State,
    /// Text held back: a possible partial tag, or whitespace that may be trimmed.
    pending: String,
    /// Drop leading whitespace of what comes next.
    trim_leading: bool,
}

impl ReasoningParser {
    /// A parser for `tok`'s vocabulary. `starts_in_thinking`: the prompt
    /// already opened the thought (see [`super::prompt_opens_thinking`]).
    pub fn for_tokenizer(tok: &Tokenizer, starts_in_thinking: bool) -> ReasoningParser {
        let ids = tok.token_id(THINK_OPEN).zip(tok.token_id(THINK_CLOSE));
        ReasoningParser::new(ids, starts_in_thinking)
    }

    /// A parser with the tags' token ids (or `None` to match tag text).
    pub fn new(tag_ids: Option<(u32, u32)>, starts_in_thinking: bool) -> ReasoningParser {
        ReasoningParser {
            tag_ids,
            state: if starts_in_thinking {
                State::Thinking
            } else {
                State::Start
            },
            pending: String::new(),
            trim_leading: true,
        }
    }

    /// Whether the stream is inside a thought now.
    pub fn is_thinking(&self) -> bool {
        self.state == State::Thinking
    }

    /// Adds generated token `id`, whose text is `text`.
    pub fn push_token(&mut self, id: u32, text: &str) -> Vec<ReasoningEvent> {
        let mut ev = Vec::new();
        match self.tag_ids {
            Some((open, close)) => {
                if id == open && self.state == State::Start {
                    self.pending.clear();
                    self.state = State::Thinking;
                    self.trim_leading = true;
                } else if id == close && self.state != State::Content {
                    self.close_thought(&mut ev);
                } else if id == close {
                    // A stray `</think>` in the answer: not text to show or speak.
                } else {
                    self.feed(text, false, &mut ev);
                }
            }
            None => self.feed(text, true, &mut ev),
        }
        ev
    }

    /// Adds generated text (tags matched as text, even split across calls).
    pub fn push_text(&mut self, text: &str) -> Vec<ReasoningEvent> {
        let mut ev = Vec::new();
        self.feed(text, true, &mut ev);
        ev
    }

    /// Ends the stream: flushes held-back text (an unclosed thought stays a thought).
    pub fn finish(&mut self) -> Vec<ReasoningEvent> {
        let mut ev = Vec::new();
        let rest = std::mem::take(&mut self.pending);
        match self.state {
            State::Thinking => {
                let t = rest.trim_end();
                emit(&mut ev, true, t);
            }
            State::Start | State::Content => {
                if !rest.trim().is_empty() {
                    emit(&mut ev, false, &rest);
                }
            }
        }
        ev
    }

    fn close_thought(&mut self, ev: &mut Vec<ReasoningEvent>) {
        // Whitespace held back before the tag is the thought's tail: dropped.
        let rest = std::mem::take(&mut self.pending);
        if self.state == State::Thinking {
            emit(ev, true, rest.trim_end());
        }
        self.state = State::Content;
        self.trim_leading = true;
    }

    fn feed(&mut self, text: &str, match_tags: bool, ev: &mut Vec<ReasoningEvent>) {
        self.pending.push_str(text);
        loop {
            match self.state {
                State::Start => {
                    let t = self.pending.trim_start();
                    if t.is_empty() {
                        return; // only whitespace yet
                    }
                    if match_tags && t.starts_with(THINK_OPEN) {
                        self.pending = t[THINK_OPEN.len()..].to_string();
                        self.state = State::Thinking;
                        self.trim_leading = true;
                        continue;
                    }
                    if match_tags && THINK_OPEN.starts_with(t) {
                        return; // maybe the start of `<think>`
                    }
                    self.state = State::Content;
                    self.trim_leading = true;
                }
                State::Thinking => {
                    if self.trim_leading {
                        let t = self.pending.trim_start();
                        if t.is_empty() {
                            self.pending.clear();
                            return;
                        }
                        self.pending = t.to_string();
                        self.trim_leading = false;
                    }
                    if match_tags {
                        if let Some(p) = self.pending.find(THINK_CLOSE) {
                            let after = self.pending[p + THINK_CLOSE.len()..].to_string();
                            self.pending.truncate(p);
                            self.close_thought(ev);
                            self.pending = after;
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
                    let out: String = self.pending[..ws_start].to_string();
                    self.pending.drain(..ws_start);
                    emit(ev, true, &out);
                    return;
                }
                State::Content => {
                    let mut out = std::mem::take(&mut self.pending);
                    if self.trim_leading {
                        let t = out.trim_start();
                        if t.is_empty() {
                            return;
                        }
                        out = t.to_string();
                        self.trim_leading = false;
                    }
                    emit(ev, false, &out);
                    return;
                }
            }
        }
    }
}

/// Appends text to the events, merging with the last event of the same kind.
fn emit(ev: &mut Vec<ReasoningEvent>, thinking: bool, text: &str) {
    if text.is_empty() {
        return;
    }
    match (ev.last_mut(), thinking) {
        (Some(ReasoningEvent::Thinking(s)), true) | (Some(ReasoningEvent::Content(s)), false) => {
            s.push_str(text)
        }
        _ => ev.push(if thinking {
            ReasoningEvent::Thinking(text.to_string())
        } else {
            ReasoningEvent::Content(text.to_string())
        }),
    }
}

/// Length of the longest suffix of `s` that is a proper prefix of `tag`.
fn partial_suffix(s: &str, tag: &str) -> usize {
    (1..tag.len().min(s.len() + 1))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && tag.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}

/// A cap on thinking: the generation loop calls [`on_token`](Self::on_token)
/// with every sampled token; after `max` thinking tokens it returns the tokens
/// to inject (`\n</think>\n\n`) so the model moves on to the answer.
///
/// ```
/// # use pistil_runtime::chat::ThinkBudget;
/// // <think> = 10, </think> = 11, forced close = [1, 11, 2]
/// let mut b = ThinkBudget::new(2, vec![10], vec![11], vec![1, 11, 2], false);
/// assert_eq!(b.on_token(10), None); // opens the thought
/// assert_eq!(b.on_token(5), None); // 1st thinking token
/// assert_eq!(b.on_token(6), Some(&[1, 11, 2][..])); // 2nd: budget spent
/// assert_eq!(b.on_token(7), None); // answering
/// ```
#[derive(Clone, Debug)]
pub struct ThinkBudget {
    max: usize,
    used: usize,
    state: BudgetState,
    open: Vec<u32>,
    close: Vec<u32>,
    forced: Vec<u32>,
    recent: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BudgetState {
    Before,
    Thinking,
    Done,
}

impl ThinkBudget {
    /// A budget of `max` thinking tokens. `open`/`close` are the token
    /// sequences of `<think>`/`</think>`, `forced` what to inject when the
    /// budget runs out; `starts_in_thinking` if the prompt opened the thought.
    pub fn new(
        max: usize,
        open: Vec<u32>,
        close: Vec<u32>,
        forced: Vec<u32>,
        starts_in_thinking: bool,
    ) -> ThinkBudget {
        ThinkBudget {
            max,
            used: 0,
            state: if starts_in_thinking {
                BudgetState::Thinking
            } else {
                BudgetState::Before
            },
            open,
            close,
            forced,
            recent: Vec::new(),
        }
    }

    /// A budget for `tok`'s vocabulary: tags and `\n</think>\n\n` tokenized with it.
    pub fn for_tokenizer(
        tok: &Tokenizer,
        max: usize,
        starts_in_thinking: bool,
    ) -> Result<ThinkBudget, TokenizerError> {
        let enc = |s: &str| tok.encode(s, false, true);
        Ok(ThinkBudget::new(
            max,
            enc(THINK_OPEN)?,
            enc(THINK_CLOSE)?,
            enc("\n</think>\n\n")?,
            starts_in_thinking,
        ))
    }

    /// Before the first token: with a zero budget and the thought already
    /// open, the closing tokens to inject right away.
    pub fn on_start(&mut self) -> Option<&[u32]> {
        if self.state == BudgetState::Thinking && self.used >= self.max {
            self.state = BudgetState::Done;
            return Some(&self.forced);
        }
        None
    }

    /// Records sampled token `id`; returns tokens to inject after it, once,
    /// when the thought reaches its budget. Injected tokens need not be
    /// passed back in.
    pub fn on_token(&mut self, id: u32) -> Option<&[u32]> {
        let keep = self.open.len().max(self.close.len()).max(1);
        self.recent.push(id);
        if self.recent.len() > keep {
            self.recent.remove(0);
        }
        match self.state {
            BudgetState::Done => None,
            BudgetState::Before => {
                if !self.open.is_empty() && self.recent.ends_with(&self.open) {
                    self.state = BudgetState::Thinking;
                    self.used = 0;
                    if self.max == 0 {
                        self.state = BudgetState::Done;
                        return Some(&self.forced);
                    }
                }
                None
            }
            BudgetState::Thinking => {
                if !self.close.is_empty() && self.recent.ends_with(&self.close) {
                    self.state = BudgetState::Done;
                    return None;
                }
                self.used += 1;
                if self.used >= self.max {
                    self.state = BudgetState::Done;
                    return Some(&self.forced);
                }
                None
            }
        }
    }

    /// Thinking tokens counted so far.
    pub fn thinking_tokens(&self) -> usize {
        self.used
    }

    /// Whether the thought is open.
    pub fn is_thinking(&self) -> bool {
        self.state == BudgetState::Thinking
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReasoningEvent::{Content as C, Thinking as T};

    /// Splits `chunks` with text matching; merges all events.
    fn run_text(chunks: &[&str], starts_in_thinking: bool) -> Vec<ReasoningEvent> {
        let mut p = ReasoningParser::new(None, starts_in_thinking);
        let mut all = Vec::new();
        for c in chunks {
            for e in p.push_text(c) {
                merge(&mut all, e);
            }
        }
        for e in p.finish() {
            merge(&mut all, e);
        }
        all
    }

    fn merge(all: &mut Vec<ReasoningEvent>, e: ReasoningEvent) {
        match e {
            T(s) => emit(all, true, &s),
            C(s) => emit(all, false, &s),
        }
    }

    #[test]
    fn splits_thought_and_answer() {
        let want = vec![T("a plan".into()), C("The answer.".into())];
        assert_eq!(
            run_text(&["<think>\na plan\n</think>\n\nThe answer."], false),
            want
        );
        // Every possible split into single characters.
        let chars: Vec<String> = "<think>\na plan\n</think>\n\nThe answer."
            .chars()
            .map(String::from)
            .collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(run_text(&refs, false), want);
        // Tags split in odd places.
        assert_eq!(
            run_text(
                &["<thi", "nk>a pl", "an</th", "ink", ">\n\nThe answer."],
                false
            ),
            want
        );
    }

    #[test]
    fn template_opened_thought() {
        assert_eq!(
            run_text(&["Let me see.\n", "</think>", "\n\n42"], true),
            vec![T("Let me see.".into()), C("42".into())]
        );
    }

    #[test]
    fn models_that_never_think() {
        assert_eq!(
            run_text(&["\nHello", " there <think> is a tag"], false),
            vec![C("Hello there <think> is a tag".into())]
        );
        assert_eq!(run_text(&["<th", "ree"], false), vec![C("<three".into())]);
        assert_eq!(run_text(&["  "], false), vec![]);
    }

    #[test]
    fn unfinished_thought_stays_thought() {
        assert_eq!(
            run_text(&["<think>hmm </thi"], false),
            vec![T("hmm </thi".into())]
        );
    }

    #[test]
    fn by_token_ids() {
        // 7 = <think>, 8 = </think>; the text "<think>" from other ids is content.
        let mut p = ReasoningParser::new(Some((7, 8)), false);
        let mut all = Vec::new();
        for (id, t) in [
            (7, "<think>"),
            (1, "\n"),
            (2, "x<"),
            (3, "/think>y"),
            (1, "\n"),
            (8, "</think>"),
            (1, "\n\n"),
            (4, "ok <think>"),
        ] {
            for e in p.push_token(id, t) {
                merge(&mut all, e);
            }
        }
        for e in p.finish() {
            merge(&mut all, e);
        }
        assert_eq!(all, vec![T("x</think>y".into()), C("ok <think>".into())]);
    }

    #[test]
    fn budget() {
        let forced = vec![1, 11, 2];
        // Prompt opened the thought: count from the first token.
        let mut b = ThinkBudget::new(3, vec![10], vec![11], forced.clone(), true);
        assert_eq!(b.on_start(), None);
        assert_eq!(b.on_token(5), None);
        assert_eq!(b.on_token(5), None);
        assert_eq!(b.on_token(5), Some(&forced[..]));
        assert!(!b.is_thinking());
        assert_eq!(b.on_token(5), None);
        assert_eq!(b.thinking_tokens(), 3);

        // The model closes the thought itself within budget: nothing forced.
        let mut b = ThinkBudget::new(3, vec![10], vec![11], forced.clone(), false);
        assert_eq!(b.on_token(10), None);
        assert!(b.is_thinking());
        assert_eq!(b.on_token(5), None);
        assert_eq!(b.on_token(11), None);
        assert_eq!(b.on_token(5), None);
        assert_eq!(b.on_token(5), None);

        // Zero budget.
        let mut b = ThinkBudget::new(0, vec![10], vec![11], forced.clone(), true);
        assert_eq!(b.on_start(), Some(&forced[..]));
        let mut b = ThinkBudget::new(0, vec![10], vec![11], forced.clone(), false);
        assert_eq!(b.on_token(10), Some(&forced[..]));

        // Multi-token tags.
        let mut b = ThinkBudget::new(2, vec![3, 4], vec![5, 6], forced.clone(), false);
        assert_eq!(b.on_token(3), None);
        assert_eq!(b.on_token(4), None);
        assert!(b.is_thinking());
        assert_eq!(b.on_token(5), None);
        assert_eq!(b.on_token(6), None); // </think> completed: done, nothing forced
        assert!(!b.is_thinking());
    }
}
