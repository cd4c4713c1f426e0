//! Chat histories keyed by a conversation id (Wyoming's
//! `context.conversation_id`), bounded twice: at most `capacity`
//! conversations (the least recently used is forgotten) and at most
//! `max_messages` messages each (the oldest user/assistant pair goes first).
//!
//! There is one KV cache, shared: when requests alternate between
//! conversations each one re-processes its prompt. That costs prompt time,
//! never correctness; the engine's prefix reuse makes the common case — one
//! conversation going on — cheap.

use std::collections::HashMap;

use crate::assistant::Turn;

/// The bounded store.
#[derive(Debug)]
pub struct Conversations {
    capacity: usize,
    max_messages: usize,
    clock: u64,
    map: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    turns: Vec<Turn>,
    last_used: u64,
}

impl Conversations {
    /// At most `capacity` conversations of at most `max_messages` messages
    /// (both at least 1 and 2 respectively).
    pub fn new(capacity: usize, max_messages: usize) -> Conversations {
        Conversations {
            capacity: capacity.max(1),
            max_messages: max_messages.max(2),
            clock: 0,
            map: HashMap::new(),
        }
    }

    /// The history of `id` (empty if unknown), marking it used.
    pub fn history(&mut self, id: &str) -> Vec<Turn> {
        self.clock += 1;
        let now = self.clock;
        match self.map.get_mut(id) {
            Some(e) => {
                e.last_used = now;
                e.turns.clone()
            }
            None => Vec::new(),
        }
    }

    /// Appends a user question and the assistant's answer to `id`'s history
    /// (creating it, and forgetting the least recently used conversation if
    /// the store is full).
    pub fn record(&mut self, id: &str, user: Turn, assistant: Turn) {
        self.clock += 1;
        let now = self.clock;
        if !self.map.contains_key(id) && self.map.len() >= self.capacity {
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            {
                self.map.remove(&oldest);
            }
        }
        let e = self.map.entry(id.to_string()).or_insert_with(|| Entry {
            turns: Vec::new(),
            last_used: now,
        });
        e.last_used = now;
        e.turns.push(user);
        e.turns.push(assistant);
        while e.turns.len() > self.max_messages {
            let n = 2.min(e.turns.len());
            e.turns.drain(..n);
        }
    }

    /// Drops the oldest user/assistant pair of `id` (used when the prompt no
    /// longer fits the context). Returns false if there was nothing to drop.
    pub fn shorten(&mut self, id: &str) -> bool {
        match self.map.get_mut(id) {
            Some(e) if !e.turns.is_empty() => {
                let n = 2.min(e.turns.len());
                e.turns.drain(..n);
                true
            }
            _ => false,
        }
    }

    /// Forgets `id`.
    pub fn forget(&mut self, id: &str) {
        self.map.remove(id);
    }

    /// Conversations held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if none is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(c: &mut Conversations, id: &str, q: &str) {
        c.record(id, Turn::user(q), Turn::assistant(format!("a-{q}"), None));
    }

    #[test]
    fn lru_eviction_and_message_cap() {
        let mut c = Conversations::new(2, 4);
        pair(&mut c, "a", "1");
        pair(&mut c, "b", "1");
        // Touch a, so b is the least recently used.
        assert_eq!(c.history("a").len(), 2);
        pair(&mut c, "c", "1");
        assert_eq!(c.len(), 2);
        assert!(c.history("b").is_empty());
        assert_eq!(c.history("a").len(), 2);
        pair(&mut c, "a", "2");
        pair(&mut c, "a", "3");
        let h = c.history("a");
        let texts: Vec<_> = h.iter().map(|t| t.content.as_str()).collect();
        assert_eq!(texts, ["2", "a-2", "3", "a-3"]);
        assert!(c.shorten("a"));
        assert_eq!(c.history("a").len(), 2);
        assert!(c.shorten("a"));
        assert!(!c.shorten("a"));
        c.forget("c");
        assert_eq!(c.len(), 1);
    }
}
