//! The byte-level pushdown matcher: which bytes may come next, and the
//! shortest text that finishes the value from here.
//!
//! The state is a stack of [`Frame`]s, top last. Each byte goes to the top
//! frame; a frame that is done pops itself (containers and strings on their
//! closing byte; numbers and literals when the next byte cannot continue
//! them, which is then fed to the frame below). Whitespace is an optional
//! [`Frame::Ws`] pushed where JSON allows it and llama.cpp's JSON grammars
//! put it: nothing, one space, or a newline and up to 20 spaces/tabs — so
//! even a model that is pure noise cannot write whitespace forever.
//!
//! Strings are valid UTF-8 with the escapes `\" \\ \/ \b \f \n \r \t` (no
//! `\u`, so no lone surrogates that some parsers reject); no control bytes.

use super::number::NumState;
use super::schema::{JsonSchema, Node, NodeId};

/// Most whitespace bytes after a newline at one place.
const MAX_INDENT: u8 = 20;

/// Whitespace seen at one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WsSt {
    /// Nothing yet.
    Start,
    /// One space: no more.
    Space,
    /// A newline and this many spaces/tabs.
    Indent(u8),
}

/// Where in an object the matcher is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjPh {
    /// After `{`.
    Open,
    /// After a key (`cur`), before `:`.
    AfterKey,
    /// After a value, before `,` or `}`.
    AfterValue,
    /// After `,`, before a key.
    AfterComma,
}

/// One level of the matcher's stack.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    /// A value of `node`, nothing written yet.
    Value(NodeId),
    /// Optional whitespace.
    Ws(WsSt),
    /// A typed object; `cur` is the property written last.
    Obj { node: NodeId, ph: ObjPh, cur: u16 },
    /// A key of a typed object: candidates `base + i` for each bit `i` of `mask`, `pos` bytes matched.
    Key {
        node: NodeId,
        base: u16,
        mask: u64,
        pos: u16,
    },
    /// A free-form object.
    Map { node: NodeId, ph: ObjPh },
    /// An array with `count` items started.
    Arr { node: NodeId, ph: ObjPh, count: u32 },
    /// Inside a string (after the opening quote).
    Str {
        /// Characters still required.
        min_left: u32,
        /// Characters still allowed (`u32::MAX`: unbounded).
        max_left: u32,
        /// After a backslash.
        esc: bool,
        /// UTF-8 continuation bytes still expected, and the range of the next one.
        need: u8,
        lo: u8,
        hi: u8,
    },
    /// A number.
    Num { node: NodeId, st: NumState },
    /// One of a literal set: bit `i` of `mask` = `lits[i]` still matches after `pos` bytes.
    Lit { node: NodeId, mask: u64, pos: u16 },
}

/// The matcher's state. Cloning is cheap (a short `Vec`); `clone_from` reuses it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Matcher {
    pub stack: Vec<Frame>,
}

/// Continuing after a frame handled (or refused) a byte.
enum Step {
    Done,
    Refeed,
    Reject,
}

fn first_required(props: &[super::schema::Prop], from: usize) -> Option<usize> {
    props
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, p)| p.required)
        .map(|(i, _)| i)
}

/// Candidate mask of keys that may come at property index `next`: every one
/// up to and including the first required one.
fn key_candidates(props: &[super::schema::Prop], next: usize) -> u64 {
    let end = first_required(props, next).map_or(props.len(), |r| r + 1);
    let mut mask = 0u64;
    for i in next..end.min(next + 64) {
        mask |= 1 << (i - next);
    }
    mask
}

impl Matcher {
    /// A matcher at the start of a value of the schema's root.
    pub fn new(schema: &JsonSchema) -> Matcher {
        Matcher {
            stack: vec![Frame::Value(schema.root)],
        }
    }

    /// The value is complete and nothing can follow.
    pub fn is_finished(&self) -> bool {
        self.stack.is_empty()
    }

    /// The value is complete here (a number or literal at the top level may
    /// still be extended, but may also end).
    pub fn can_end(&self, schema: &JsonSchema) -> bool {
        self.stack.iter().all(|f| match f {
            Frame::Ws(_) => true,
            Frame::Num { node, st } => match schema.nodes.get(*node as usize) {
                Some(Node::Num(spec)) => st.is_complete(spec),
                _ => false,
            },
            Frame::Lit { node, mask, pos } => lit_complete(schema, *node, *mask, *pos),
            _ => false,
        })
    }

    /// Whether the top frame is a plain string position: any character
    /// may follow (subject to `max_left`). Returns `(min_left, max_left)`.
    pub fn in_plain_string(&self) -> Option<(u32, u32)> {
        match self.stack.last() {
            Some(Frame::Str {
                min_left,
                max_left,
                esc: false,
                need: 0,
                ..
            }) => Some((*min_left, *max_left)),
            _ => None,
        }
    }

    /// Feeds one byte; `false` if it may not come here (the state is then
    /// unspecified: callers step a copy).
    pub fn step(&mut self, schema: &JsonSchema, b: u8) -> bool {
        loop {
            match self.step_top(schema, b) {
                Step::Done => return true,
                Step::Reject => return false,
                Step::Refeed => continue,
            }
        }
    }

    /// Feeds bytes; `false` at the first refused one.
    pub fn step_all(&mut self, schema: &JsonSchema, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.step(schema, b))
    }

    fn step_top(&mut self, schema: &JsonSchema, b: u8) -> Step {
        let nodes = &schema.nodes;
        let Some(top) = self.stack.last_mut() else {
            return Step::Reject;
        };
        match top {
            Frame::Ws(st) => {
                let next = match (b, *st) {
                    (b' ', WsSt::Start) => WsSt::Space,
                    (b'\n', WsSt::Start) => WsSt::Indent(0),
                    (b' ' | b'\t', WsSt::Indent(n)) if n < MAX_INDENT => WsSt::Indent(n + 1),
                    (b' ' | b'\t' | b'\n' | b'\r', _) => return Step::Reject,
                    _ => {
                        self.stack.pop();
                        return Step::Refeed;
                    }
                };
                *st = next;
                Step::Done
            }
            Frame::Value(node) => {
                let node = *node;
                match nodes.get(node as usize) {
                    Some(Node::Object { .. }) if b == b'{' => {
                        *top = Frame::Obj {
                            node,
                            ph: ObjPh::Open,
                            cur: 0,
                        };
                        self.stack.push(Frame::Ws(WsSt::Start));
                        Step::Done
                    }
                    Some(Node::Map { .. }) if b == b'{' => {
                        *top = Frame::Map {
                            node,
                            ph: ObjPh::Open,
                        };
                        self.stack.push(Frame::Ws(WsSt::Start));
                        Step::Done
                    }
                    Some(Node::Array { .. }) if b == b'[' => {
                        *top = Frame::Arr {
                            node,
                            ph: ObjPh::Open,
                            count: 0,
                        };
                        self.stack.push(Frame::Ws(WsSt::Start));
                        Step::Done
                    }
                    Some(Node::Str { min, max }) if b == b'"' => {
                        *top = Frame::Str {
                            min_left: *min,
                            max_left: max.unwrap_or(u32::MAX),
                            esc: false,
                            need: 0,
                            lo: 0,
                            hi: 0,
                        };
                        Step::Done
                    }
                    Some(Node::Num(_)) => {
                        *top = Frame::Num {
                            node,
                            st: NumState::START,
                        };
                        Step::Refeed
                    }
                    Some(Node::Lits(lits)) => {
                        let n = lits.len().min(64);
                        *top = Frame::Lit {
                            node,
                            mask: if n == 64 { u64::MAX } else { (1u64 << n) - 1 },
                            pos: 0,
                        };
                        Step::Refeed
                    }
                    Some(Node::AnyOf { alts, dispatch }) => {
                        match alts.get(dispatch[b as usize] as usize) {
                            Some(&alt) => {
                                *top = Frame::Value(alt);
                                Step::Refeed
                            }
                            None => Step::Reject,
                        }
                    }
                    _ => Step::Reject,
                }
            }
            Frame::Obj { node, ph, cur } => {
                let Some(Node::Object { props }) = nodes.get(*node as usize) else {
                    return Step::Reject;
                };
                let next = if *ph == ObjPh::Open {
                    0
                } else {
                    *cur as usize + 1
                };
                match (*ph, b) {
                    (ObjPh::Open | ObjPh::AfterComma, b'"') => {
                        let mask = key_candidates(props, next);
                        if mask == 0 {
                            return Step::Reject;
                        }
                        let node = *node;
                        self.stack.push(Frame::Key {
                            node,
                            base: next as u16,
                            mask,
                            pos: 0,
                        });
                        Step::Refeed
                    }
                    (ObjPh::Open, b'}') | (ObjPh::AfterValue, b'}') => {
                        if first_required(props, next).is_some() {
                            return Step::Reject;
                        }
                        self.stack.pop();
                        Step::Done
                    }
                    (ObjPh::AfterKey, b':') => {
                        let Some(p) = props.get(*cur as usize) else {
                            return Step::Reject;
                        };
                        let child = p.node;
                        *ph = ObjPh::AfterValue;
                        self.stack.push(Frame::Ws(WsSt::Start));
                        self.stack.push(Frame::Value(child));
                        self.stack.push(Frame::Ws(WsSt::Start));
                        Step::Done
                    }
                    (ObjPh::AfterValue, b',') => {
                        if key_candidates(props, next) == 0 {
                            return Step::Reject;
                        }
                        *ph = ObjPh::AfterComma;
                        self.stack.push(Frame::Ws(WsSt::Start));
                        Step::Done
                    }
                    _ => Step::Reject,
                }
            }
            Frame::Key {
                node,
                base,
                mask,
                pos,
            } => {
                let Some(Node::Object { props }) = nodes.get(*node as usize) else {
                    return Step::Reject;
                };
                let p = *pos as usize;
                let mut new_mask = 0u64;
                let mut done: Option<usize> = None;
                for i in 0..64 {
                    if *mask & (1 << i) == 0 {
                        continue;
                    }
                    let Some(prop) = props.get(*base as usize + i) else {
                        continue;
                    };
                    if prop.key.get(p) == Some(&b) {
                        new_mask |= 1 << i;
                        if prop.key.len() == p + 1 {
                            done = Some(*base as usize + i);
                        }
                    }
                }
                if new_mask == 0 {
                    return Step::Reject;
                }
                match done {
                    // Keys are quoted, so no key is a prefix of another.
                    Some(idx) => {
                        self.stack.pop();
                        if let Some(Frame::Obj { ph, cur, .. }) = self.stack.last_mut() {
                            *ph = ObjPh::AfterKey;
                            *cur = idx as u16;
                        }
                        self.stack.push(Frame::Ws(WsSt::Start));
                    }
                    None => {
                        *mask = new_mask;
                        *pos += 1;
                    }
                }
                Step::Done
            }
            Frame::Map { node, ph } => {
                let Some(Node::Map { value }) = nodes.get(*node as usize) else {
                    return Step::Reject;
                };
                let value = *value;
                match (*ph, b) {
                    (ObjPh::Open | ObjPh::AfterComma, b'"') => {
                        *ph = ObjPh::AfterKey;
                        self.stack.push(Frame::Ws(WsSt::Start));
                        self.stack.push(Frame::Str {
                            min_left: 0,
                            max_left: u32::MAX,
                            esc: false,
                            need: 0,
                            lo: 0,
                            hi: 0,
                        });
                        Step::Done
                    }
                    (ObjPh::Open | ObjPh::AfterValue, b'}') => {
                        self.stack.pop();
                        Step::Done
                    }
                    (ObjPh::AfterKey, b':') => {
                        *ph = ObjPh::AfterValue;
                        self.stack.push(Frame::Ws(WsSt::Start));
                        self.stack.push(Frame::Value(value));
                        self.stack.push(Frame::Ws(WsSt::Start));
                        Step::Done
                    }
                    (ObjPh::AfterValue, b',') => {
                        *ph = ObjPh::AfterComma;
                        self.stack.push(Frame::Ws(WsSt::Start));
                        Step::Done
                    }
                    _ => Step::Reject,
                }
            }
            Frame::Arr { node, ph, count } => {
                let Some(Node::Array { items, min, max }) = nodes.get(*node as usize) else {
                    return Step::Reject;
                };
                let (items, min, max) = (*items, *min, *max);
                let room = max.is_none_or(|m| *count < m);
                match (*ph, b) {
                    (ObjPh::Open, b']') | (ObjPh::AfterValue, b']') => {
                        if *count < min {
                            return Step::Reject;
                        }
                        self.stack.pop();
                        Step::Done
                    }
                    (ObjPh::AfterValue, b',') if room => {
                        *ph = ObjPh::AfterComma;
                        self.stack.push(Frame::Ws(WsSt::Start));
                        Step::Done
                    }
                    (ObjPh::Open | ObjPh::AfterComma, _) if room => {
                        *count += 1;
                        *ph = ObjPh::AfterValue;
                        self.stack.push(Frame::Ws(WsSt::Start));
                        self.stack.push(Frame::Value(items));
                        Step::Refeed
                    }
                    _ => Step::Reject,
                }
            }
            Frame::Str {
                min_left,
                max_left,
                esc,
                need,
                lo,
                hi,
            } => {
                if *need > 0 {
                    if b < *lo || b > *hi {
                        return Step::Reject;
                    }
                    *need -= 1;
                    *lo = 0x80;
                    *hi = 0xBF;
                    return Step::Done;
                }
                if *esc {
                    if !b"\"\\/bfnrt".contains(&b) {
                        return Step::Reject;
                    }
                    *esc = false;
                    return Step::Done;
                }
                if b == b'"' {
                    if *min_left > 0 {
                        return Step::Reject;
                    }
                    self.stack.pop();
                    return Step::Done;
                }
                // Every other byte starts a character.
                let (n, l, h) = match b {
                    0x00..=0x1F => return Step::Reject,
                    b'\\' => (0, 0, 0),
                    0x20..=0x7F => (0, 0, 0),
                    0xC2..=0xDF => (1, 0x80, 0xBF),
                    0xE0 => (2, 0xA0, 0xBF),
                    0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
                    0xED => (2, 0x80, 0x9F),
                    0xF0 => (3, 0x90, 0xBF),
                    0xF1..=0xF3 => (3, 0x80, 0xBF),
                    0xF4 => (3, 0x80, 0x8F),
                    _ => return Step::Reject,
                };
                if *max_left == 0 {
                    return Step::Reject;
                }
                if *max_left != u32::MAX {
                    *max_left -= 1;
                }
                *min_left = min_left.saturating_sub(1);
                *esc = b == b'\\';
                *need = n;
                *lo = l;
                *hi = h;
                Step::Done
            }
            Frame::Num { node, st } => {
                let Some(Node::Num(spec)) = nodes.get(*node as usize) else {
                    return Step::Reject;
                };
                match st.step(spec, b) {
                    Some(ns) => {
                        *st = ns;
                        Step::Done
                    }
                    None if st.is_complete(spec) => {
                        self.stack.pop();
                        Step::Refeed
                    }
                    None => Step::Reject,
                }
            }
            Frame::Lit { node, mask, pos } => {
                let Some(Node::Lits(lits)) = nodes.get(*node as usize) else {
                    return Step::Reject;
                };
                let p = *pos as usize;
                let mut new_mask = 0u64;
                for (i, l) in lits.iter().enumerate().take(64) {
                    if *mask & (1 << i) != 0 && l.get(p) == Some(&b) {
                        new_mask |= 1 << i;
                    }
                }
                if new_mask == 0 {
                    // Nothing continues: if a literal ended here, hand the byte down.
                    let ended = lits
                        .iter()
                        .enumerate()
                        .take(64)
                        .any(|(i, l)| *mask & (1 << i) != 0 && l.len() == p);
                    if ended {
                        self.stack.pop();
                        return Step::Refeed;
                    }
                    return Step::Reject;
                }
                *mask = new_mask;
                *pos += 1;
                // Ended with nothing longer possible: done now.
                let p = *pos as usize;
                let (mut ended, mut longer) = (false, false);
                for (i, l) in lits.iter().enumerate().take(64) {
                    if new_mask & (1 << i) != 0 {
                        ended |= l.len() == p;
                        longer |= l.len() > p;
                    }
                }
                if ended && !longer {
                    self.stack.pop();
                }
                Step::Done
            }
        }
    }

    /// The shortest text that completes the value from here (`None` only if
    /// the state is a dead end, which the matcher never enters).
    ///
    /// Built by feeding the matcher a greedy choice at each step, so it is
    /// valid by construction; and the choice only depends on the state, so
    /// after consuming its first byte the completion is its own remainder —
    /// what the token budget relies on.
    pub fn completion(&self, schema: &JsonSchema, out: &mut Vec<u8>) -> bool {
        out.clear();
        let mut m = self.clone();
        for _ in 0..100_000 {
            if m.stack.is_empty() {
                return true;
            }
            let chunk = m.next_chunk(schema);
            match chunk {
                Chunk::Pop => {
                    m.stack.pop();
                }
                Chunk::Bytes(bytes) => {
                    if bytes.is_empty() || !m.step_all(schema, &bytes) {
                        return false;
                    }
                    out.extend_from_slice(&bytes);
                }
            }
        }
        false
    }

    /// Length of [`Matcher::completion`].
    pub fn completion_len(&self, schema: &JsonSchema, scratch: &mut Vec<u8>) -> Option<usize> {
        self.completion(schema, scratch).then_some(scratch.len())
    }

    fn next_chunk(&self, schema: &JsonSchema) -> Chunk {
        let nodes = &schema.nodes;
        let Some(top) = self.stack.last() else {
            return Chunk::Pop;
        };
        let bytes: Vec<u8> = match top {
            Frame::Ws(_) => return Chunk::Pop,
            Frame::Value(node) => match nodes.get(*node as usize) {
                Some(Node::Object { .. } | Node::Map { .. }) => b"{".to_vec(),
                Some(Node::Array { .. }) => b"[".to_vec(),
                Some(Node::Str { .. }) => b"\"".to_vec(),
                // Numbers, literals and alternatives: their whole shortest text.
                _ => schema
                    .min_text
                    .get(*node as usize)
                    .cloned()
                    .unwrap_or_default(),
            },
            Frame::Obj { node, ph, cur } => {
                let Some(Node::Object { props }) = nodes.get(*node as usize) else {
                    return Chunk::Bytes(Vec::new());
                };
                let next = if *ph == ObjPh::Open {
                    0
                } else {
                    *cur as usize + 1
                };
                match ph {
                    ObjPh::Open | ObjPh::AfterComma => match first_required(props, next) {
                        Some(r) => props.get(r).map(|p| p.key.clone()).unwrap_or_default(),
                        None if *ph == ObjPh::Open => b"}".to_vec(),
                        None => shortest_prop(schema, props, next)
                            .map(|i| props[i].key.clone())
                            .unwrap_or_default(),
                    },
                    ObjPh::AfterKey => b":".to_vec(),
                    ObjPh::AfterValue => {
                        if first_required(props, next).is_some() {
                            b",".to_vec()
                        } else {
                            b"}".to_vec()
                        }
                    }
                }
            }
            Frame::Key {
                node,
                base,
                mask,
                pos,
            } => {
                let Some(Node::Object { props }) = nodes.get(*node as usize) else {
                    return Chunk::Bytes(Vec::new());
                };
                let cands: Vec<usize> = (0..64)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| *base as usize + i)
                    .filter(|&i| i < props.len())
                    .collect();
                // The required one if it is there (it must be written anyway), else the shortest.
                let pick = cands
                    .iter()
                    .copied()
                    .find(|&i| props[i].required)
                    .or_else(|| {
                        cands.iter().copied().min_by_key(|&i| {
                            props[i].key.len()
                                + schema
                                    .min_text
                                    .get(props[i].node as usize)
                                    .map_or(0, Vec::len)
                        })
                    });
                match pick {
                    Some(i) => props[i]
                        .key
                        .get(*pos as usize..)
                        .unwrap_or_default()
                        .to_vec(),
                    None => Vec::new(),
                }
            }
            Frame::Map { ph, .. } => match ph {
                ObjPh::Open | ObjPh::AfterValue => b"}".to_vec(),
                ObjPh::AfterKey => b":".to_vec(),
                ObjPh::AfterComma => b"\"\"".to_vec(),
            },
            Frame::Arr { node, ph, count } => {
                let Some(Node::Array { items, min, .. }) = nodes.get(*node as usize) else {
                    return Chunk::Bytes(Vec::new());
                };
                let item = || {
                    schema
                        .min_text
                        .get(*items as usize)
                        .cloned()
                        .unwrap_or_default()
                };
                match ph {
                    ObjPh::Open if *min == 0 => b"]".to_vec(),
                    ObjPh::Open | ObjPh::AfterComma => item(),
                    ObjPh::AfterValue if *count < *min => b",".to_vec(),
                    _ => b"]".to_vec(),
                }
            }
            Frame::Str {
                min_left,
                esc,
                need,
                lo,
                ..
            } => {
                if *need > 0 {
                    vec![*lo]
                } else if *esc {
                    b"n".to_vec()
                } else if *min_left > 0 {
                    vec![b'a'; *min_left as usize]
                } else {
                    b"\"".to_vec()
                }
            }
            Frame::Num { node, st } => {
                let Some(Node::Num(spec)) = nodes.get(*node as usize) else {
                    return Chunk::Bytes(Vec::new());
                };
                match st.shortest_completion(spec) {
                    Some(t) if t.is_empty() => return Chunk::Pop,
                    Some(t) => t,
                    None => Vec::new(),
                }
            }
            Frame::Lit { node, mask, pos } => {
                let Some(Node::Lits(lits)) = nodes.get(*node as usize) else {
                    return Chunk::Bytes(Vec::new());
                };
                if lit_complete(schema, *node, *mask, *pos) {
                    return Chunk::Pop;
                }
                lits.iter()
                    .enumerate()
                    .take(64)
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, l)| l)
                    .min_by_key(|l| l.len())
                    .and_then(|l| l.get(*pos as usize..))
                    .unwrap_or_default()
                    .to_vec()
            }
        };
        Chunk::Bytes(bytes)
    }
}

enum Chunk {
    Pop,
    Bytes(Vec<u8>),
}

fn lit_complete(schema: &JsonSchema, node: NodeId, mask: u64, pos: u16) -> bool {
    match schema.nodes.get(node as usize) {
        Some(Node::Lits(lits)) => lits
            .iter()
            .enumerate()
            .take(64)
            .any(|(i, l)| mask & (1 << i) != 0 && l.len() == pos as usize),
        _ => false,
    }
}

/// The optional property from `next` on with the shortest `key:value`.
fn shortest_prop(schema: &JsonSchema, props: &[super::schema::Prop], next: usize) -> Option<usize> {
    (next..props.len()).min_by_key(|&i| {
        props[i].key.len()
            + schema
                .min_text
                .get(props[i].node as usize)
                .map_or(0, Vec::len)
    })
}

#[cfg(test)]
mod tests {
    use super::super::json::Json;
    use super::*;

    fn schema(s: &str) -> JsonSchema {
        JsonSchema::compile(&serde_json::from_str::<Json>(s).unwrap()).unwrap()
    }

    fn accepts(s: &JsonSchema, text: &str) -> bool {
        let mut m = Matcher::new(s);
        m.step_all(s, text.as_bytes()) && (m.is_finished() || m.can_end(s))
    }

    #[test]
    fn objects_in_order_with_optional_skips() {
        let s = schema(
            r#"{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},
                "c":{"type":"boolean"}},"required":["b"]}"#,
        );
        for ok in [
            r#"{"b":"x"}"#,
            r#"{"a":1,"b":""}"#,
            r#"{"a": -5, "b": "hé", "c": true}"#,
            "{\n  \"b\": \"x\",\n  \"c\": false\n}",
            r#"{ "b" : "q\"\n" }"#,
        ] {
            assert!(accepts(&s, ok), "{ok}");
        }
        for bad in [
            r#"{}"#,
            r#"{"a":1}"#,
            r#"{"b":"x","a":1}"#,
            r#"{"b":1}"#,
            r#"{"b":"x",}"#,
            r#"{"b":"x"}  "#,
            r#"{"b":"x"} "#,
            r#"{"b":"\u0041"}"#,
            "{\"b\":\"tab\there\"}",
            r#"{  "b":"x"}"#,
            r#"{"d":1,"b":"x"}"#,
        ] {
            assert!(!accepts(&s, bad), "{bad}");
        }
    }

    #[test]
    fn strings_are_utf8_and_length_checked() {
        let s = schema(r#"{"type":"string","minLength":2,"maxLength":3}"#);
        assert!(accepts(&s, "\"ab\"") && accepts(&s, "\"aé€\"") && accepts(&s, "\"\\n\\t\""));
        assert!(!accepts(&s, "\"a\"") && !accepts(&s, "\"abcd\""));
        let mut m = Matcher::new(&s);
        assert!(m.step(&s, b'"'));
        assert!(!m.clone().step(&s, 0xFF));
        assert!(!m.clone().step(&s, 0x80));
        assert!(m.step(&s, 0xE2));
        assert!(!m.clone().step(&s, b'a'));
    }

    #[test]
    fn literals_and_numbers_end_on_the_next_byte() {
        let s = schema(r#"{"type":"array","items":{"enum":[1,12,"x"]},"maxItems":2}"#);
        assert!(accepts(&s, "[1,12]") && accepts(&s, "[\"x\"]") && accepts(&s, "[]"));
        assert!(!accepts(&s, "[13]") && !accepts(&s, "[1,1,1]") && !accepts(&s, "[1 2]"));
        let n = schema(r#"{"type":"number"}"#);
        let mut m = Matcher::new(&n);
        assert!(m.step_all(&n, b"12"));
        assert!(!m.is_finished() && m.can_end(&n));
    }

    #[test]
    fn free_form_json() {
        let s = JsonSchema::any_object();
        for ok in [
            "{}",
            r#"{"a":[1,2.5,{"b":null}],"c":"d","e":true}"#,
            "{\"k\": [\n  {}\n]}",
        ] {
            assert!(accepts(&s, ok), "{ok}");
        }
        for bad in [
            "[]",
            "\"x\"",
            "{\"a\":}",
            "{\"a\":tru}",
            "{\"a\":01}",
            "{\"a\":1e5}",
        ] {
            assert!(!accepts(&s, bad), "{bad}");
        }
    }

    #[test]
    fn completions_are_valid_and_shrink_by_one_per_byte() {
        let s = schema(
            r#"{"type":"object","properties":{"name":{"type":"string","minLength":3},
                "n":{"type":"integer","minimum":100,"maximum":200},
                "tags":{"type":"array","items":{"enum":["on","off"]},"minItems":2},
                "opt":{"type":"boolean"}},"required":["name","n","tags"]}"#,
        );
        let text = br#"{"name":"abcd","n":150,"tags":["on","off","on"],"opt":true}"#;
        let mut m = Matcher::new(&s);
        let mut buf = Vec::new();
        for (i, &b) in text.iter().enumerate() {
            // From every prefix, the completion finishes the value...
            assert!(m.completion(&s, &mut buf), "at {i}");
            let comp = buf.clone();
            let mut f = m.clone();
            assert!(
                f.step_all(&s, &comp) && f.is_finished(),
                "at {i}: {:?}",
                String::from_utf8_lossy(&comp)
            );
            // ...and following its first byte leaves exactly its remainder.
            if let Some(&c0) = comp.first() {
                let mut g = m.clone();
                assert!(g.step(&s, c0));
                assert!(g.completion(&s, &mut buf));
                assert_eq!(buf.len(), comp.len() - 1, "at {i}");
            }
            assert!(m.step(&s, b), "byte {i} '{}'", b as char);
        }
        assert!(m.is_finished());
        assert!(Matcher::new(&s).completion(&s, &mut buf));
        assert_eq!(buf, br#"{"name":"aaa","n":100,"tags":["on","on"]}"#);
    }
}
