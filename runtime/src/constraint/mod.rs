//! Structured output: sampling constrained so the reply is JSON that parses
//! and matches a JSON schema — always, even from a model that is pure noise
//! and even when the token budget runs out.
//!
//! - [`JsonSchema`] compiles a schema (or "any JSON object") into a node
//!   graph ([`schema`] lists the supported subset; unsupported assertions
//!   are refused, never silently ignored).
//! - [`TokenTable`] holds the vocabulary's bytes in a prefix tree (built once
//!   per model).
//! - [`JsonConstraint`] is one request's state: [`apply`](JsonConstraint::apply)
//!   sets the logits of every token that may not come next to −∞,
//!   [`accept`](JsonConstraint::accept) advances past the sampled token.
//!
//! ## How a token is checked
//! The matcher ([`matcher`]) is a byte-level pushdown automaton. Tokens are
//! checked by walking the prefix tree with it, so a refused first byte drops
//! its whole subtree. Inside a string, where almost every token fits, the
//! tokens that are plain text are allowed from a precomputed list and only
//! the rest (quotes, backslashes, control bytes, partial UTF-8) are walked.
//!
//! ## The token budget
//! The constraint knows how many tokens may still be generated. From any
//! state the matcher computes the shortest completion; a token is allowed
//! only if, after it, that completion still fits in the tokens left (one
//! byte per token at worst — every vocabulary used here has a token for
//! each byte). So the JSON is closed before `max_tokens` or the end of the
//! context, whatever the model prefers.
//!
//! ## Why not llguidance
//! llguidance (what llama.cpp can use) was built and measured: as a
//! dependency it compiles a 29 MB static library and a cdylib besides the
//! rlib (its crate-type list), and it turns on serde_json's `preserve_order`
//! for the whole workspace, changing other crates' JSON output; and it has no
//! way to ask for the shortest completion, which the budget guarantee above
//! needs. The subset here is what users send, checked byte by byte.

mod json;
mod matcher;
mod number;
mod schema;
mod vocab;

use std::sync::Arc;

pub use json::{quote, Json};
pub use schema::{JsonSchema, SchemaError, ANY_DEPTH, MAX_ALTERNATIVES};
pub use vocab::TokenTable;

use matcher::Matcher;

/// Why a constraint could not be set up or followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// Even the shortest JSON the schema allows does not fit in the tokens available.
    #[error("structured output needs at least {needed} tokens for the shortest valid JSON, but only {available} may be generated; raise num_predict/max_tokens or the context")]
    BudgetTooSmall {
        /// Tokens the shortest valid output takes (one per byte at worst).
        needed: usize,
        /// Tokens available.
        available: usize,
    },
    /// The vocabulary cannot spell what the schema needs.
    #[error("the model's vocabulary has no single-byte token for byte 0x{byte:02x}, which structured output needs")]
    MissingByte {
        /// The byte.
        byte: u8,
    },
    /// A token the mask did not allow was accepted (an engine bug).
    #[error("token {token} does not continue the JSON here")]
    Rejected {
        /// The token.
        token: u32,
    },
    /// No token may follow (a bug in the matcher; reported instead of looping).
    #[error("structured output reached a state no token can continue")]
    DeadEnd,
}

/// One request's structured-output state.
pub struct JsonConstraint {
    schema: Arc<JsonSchema>,
    table: Arc<TokenTable>,
    m: Matcher,
    /// Tokens that may still be generated, this one included.
    remaining: usize,
    done: bool,
    /// Bytes of the longest usable token.
    max_token_len: usize,
    // Scratch, reused across calls.
    allowed: Vec<u64>,
    states: Vec<Matcher>,
    ends: Vec<u32>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for JsonConstraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonConstraint")
            .field("remaining", &self.remaining)
            .field("done", &self.done)
            .field("stack", &self.m.stack.len())
            .finish()
    }
}

impl JsonConstraint {
    /// A constraint for `schema` over `table`'s vocabulary, allowing at most
    /// `max_tokens` tokens (the request's limit and the context's room).
    pub fn new(
        schema: Arc<JsonSchema>,
        table: Arc<TokenTable>,
        max_tokens: usize,
    ) -> Result<JsonConstraint, ConstraintError> {
        // Bytes a completion may need as single tokens.
        let mut needed: Vec<u8> = b"{}[],:\"-.0123456789a".to_vec();
        needed.extend(0x80..=0xBF);
        for t in &schema.min_text {
            needed.extend_from_slice(t);
        }
        for n in &schema.nodes {
            if let schema::Node::Object { props } = n {
                for p in props {
                    needed.extend_from_slice(&p.key);
                }
            }
            if let schema::Node::Lits(lits) = n {
                for l in lits {
                    needed.extend_from_slice(l);
                }
            }
        }
        needed.sort_unstable();
        needed.dedup();
        for &b in &needed {
            if table.single.get(b as usize).copied().flatten().is_none() {
                return Err(ConstraintError::MissingByte { byte: b });
            }
        }
        let min = schema.min_text().len();
        if min > max_tokens {
            return Err(ConstraintError::BudgetTooSmall {
                needed: min,
                available: max_tokens,
            });
        }
        let max_token_len = (0..table.n_vocab() as u32)
            .map(|t| table.bytes(t).len())
            .max()
            .unwrap_or(1);
        let m = Matcher::new(&schema);
        Ok(JsonConstraint {
            allowed: vec![0; table.n_vocab().div_ceil(64)],
            schema,
            table,
            m,
            remaining: max_tokens,
            done: false,
            max_token_len,
            states: Vec::new(),
            ends: Vec::new(),
            buf: Vec::new(),
        })
    }

    /// The JSON is complete: generation should stop.
    pub fn is_finished(&self) -> bool {
        self.done || self.m.is_finished()
    }

    /// Tokens that may still be generated.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Sets the logit of every token that may not come next to −∞
    /// (`logits` may be longer than the vocabulary: the rest is masked too).
    pub fn apply(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        self.compute_allowed()?;
        for (t, l) in logits.iter_mut().enumerate() {
            let on = self
                .allowed
                .get(t / 64)
                .is_some_and(|w| w & (1 << (t % 64)) != 0);
            if !on {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Whether token `t` is allowed now (computes the mask; for tests and callers
    /// that check one sampled token).
    pub fn allows(&mut self, t: u32) -> Result<bool, ConstraintError> {
        self.compute_allowed()?;
        Ok(self.bit(t))
    }

    /// Every allowed token now (for tests).
    pub fn allowed_tokens(&mut self) -> Result<Vec<u32>, ConstraintError> {
        self.compute_allowed()?;
        Ok((0..self.table.n_vocab() as u32)
            .filter(|&t| self.bit(t))
            .collect())
    }

    fn bit(&self, t: u32) -> bool {
        self.allowed
            .get(t as usize / 64)
            .is_some_and(|w| w & (1 << (t % 64)) != 0)
    }

    fn set(allowed: &mut [u64], t: u32) {
        if let Some(w) = allowed.get_mut(t as usize / 64) {
            *w |= 1 << (t % 64);
        }
    }

    /// Advances past the sampled token.
    pub fn accept(&mut self, token: u32) -> Result<(), ConstraintError> {
        if self.table.is_eog(token) {
            if self.m.is_finished() || self.m.can_end(&self.schema) {
                self.done = true;
                return Ok(());
            }
            return Err(ConstraintError::Rejected { token });
        }
        let bytes = self.table.bytes(token);
        if self.done || bytes.is_empty() || !self.m.step_all(&self.schema, bytes) {
            return Err(ConstraintError::Rejected { token });
        }
        self.remaining = self.remaining.saturating_sub(1);
        Ok(())
    }

    fn compute_allowed(&mut self) -> Result<(), ConstraintError> {
        self.allowed.iter_mut().for_each(|w| *w = 0);
        let schema = &*self.schema;
        let table = &*self.table;
        if self.done || self.m.is_finished() || self.remaining == 0 {
            for &t in &table.eog {
                Self::set(&mut self.allowed, t);
            }
            return Ok(());
        }
        let cur_len = self
            .m
            .completion_len(schema, &mut self.buf)
            .ok_or(ConstraintError::DeadEnd)?;
        let left_after = self.remaining - 1;
        // Far from the budget, no single token can push the completion past it.
        let zone = cur_len + (self.max_token_len + 1) * schema.max_growth >= left_after;
        let fits = |m: &Matcher, buf: &mut Vec<u8>| -> bool {
            !zone
                || m.completion_len(schema, buf)
                    .is_some_and(|l| l <= left_after)
        };

        if let Some((min_left, max_left)) = self.m.in_plain_string() {
            // Plain text tokens: only the length limits matter; each one
            // shortens the completion by the characters it fills of min_left.
            for &(t, c) in &table.plain {
                if c <= max_left && cur_len - c.min(min_left) as usize <= left_after {
                    Self::set(&mut self.allowed, t);
                }
            }
            let mut s = self.m.clone();
            for &t in &table.other {
                s.clone_from(&self.m);
                if s.step_all(schema, table.bytes(t)) && fits(&s, &mut self.buf) {
                    Self::set(&mut self.allowed, t);
                }
            }
        } else {
            // Walk the prefix tree; states[d] is the matcher after d bytes.
            if self.states.is_empty() {
                self.states.push(self.m.clone());
            }
            self.states[0].clone_from(&self.m);
            self.ends.clear();
            let n = table.trie_byte.len();
            let mut i = 0usize;
            while i < n {
                while self.ends.last().is_some_and(|&e| i as u32 >= e) {
                    self.ends.pop();
                }
                let d = self.ends.len() + 1;
                if self.states.len() <= d {
                    self.states.push(self.m.clone());
                }
                let (before, after) = self.states.split_at_mut(d);
                let st = &mut after[0];
                st.clone_from(&before[d - 1]);
                let sub = table.trie_sub[i].max(1) as usize;
                if !st.step(schema, table.trie_byte[i]) {
                    i += sub;
                    continue;
                }
                let tok = table.trie_tok[i];
                if tok != u32::MAX && fits(st, &mut self.buf) {
                    Self::set(&mut self.allowed, tok);
                    for dup in table.dups_of(i as u32) {
                        Self::set(&mut self.allowed, dup);
                    }
                }
                if sub > 1 {
                    self.ends.push((i + sub) as u32);
                }
                i += 1;
            }
        }
        if self.m.can_end(schema) {
            for &t in &table.eog {
                Self::set(&mut self.allowed, t);
            }
        }
        if self.allowed.iter().all(|&w| w == 0) {
            // Cannot happen (the completion's first byte always fits); still,
            // never leave the sampler with nothing: force that byte.
            let forced = self
                .m
                .completion(schema, &mut self.buf)
                .then(|| self.buf.first().copied())
                .flatten()
                .and_then(|b| table.single.get(b as usize).copied().flatten());
            match forced {
                Some(t) => {
                    tracing::warn!("structured output: empty mask, forcing token {t}");
                    Self::set(&mut self.allowed, t);
                }
                None => return Err(ConstraintError::DeadEnd),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level vocabulary: all 256 bytes, then some multi-byte pieces
    /// typical of BPE vocabularies, then EOS.
    fn vocab() -> (Vec<Vec<u8>>, u32) {
        let mut v: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for p in [
            "{\"",
            "\":",
            "\",",
            "\"}",
            " \"",
            "\":\"",
            "true",
            "false",
            "null",
            "name",
            "age",
            " the",
            "ing",
            "\n  ",
            "\n",
            "  ",
            "12",
            "345",
            "0.",
            "é",
            "€",
            "\\n",
            "\"\n}",
            "}}",
            "]}",
            ", ",
            "[\"",
            "\"]",
            "hello world",
            "\u{1F600}",
        ] {
            v.push(p.as_bytes().to_vec());
        }
        v.push(Vec::new()); // EOS (no bytes)
        let eos = (v.len() - 1) as u32;
        (v, eos)
    }

    fn table() -> (Arc<TokenTable>, u32) {
        let (v, eos) = vocab();
        let t = TokenTable::build(v.len(), |i| Some(v[i as usize].as_slice()), &[eos]);
        (Arc::new(t), eos)
    }

    /// xorshift for reproducible noise.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Samples uniformly among allowed tokens until finished or out of budget.
    fn run_noise(schema: &Arc<JsonSchema>, budget: usize, seed: u64) -> String {
        let (t, eos) = table();
        let mut c = JsonConstraint::new(schema.clone(), t.clone(), budget).unwrap();
        let mut rng = Rng(seed | 1);
        let mut out = Vec::new();
        for _ in 0..budget {
            if c.is_finished() {
                break;
            }
            let allowed = c.allowed_tokens().unwrap();
            assert!(!allowed.is_empty());
            let tok = allowed[(rng.next() % allowed.len() as u64) as usize];
            c.accept(tok).unwrap();
            // Every state the mask lets the model reach can still be completed.
            let mut buf = Vec::new();
            assert!(
                c.m.completion(&c.schema, &mut buf),
                "dead end after {:?}",
                String::from_utf8_lossy(&out)
            );
            if tok == eos {
                break;
            }
            out.extend_from_slice(t.bytes(tok));
        }
        String::from_utf8(out).expect("constrained output is UTF-8")
    }

    #[test]
    fn noise_always_parses_within_budget() {
        let schemas = [
            r#"{"type":"object","properties":{"name":{"type":"string","maxLength":12},
               "age":{"type":"integer","minimum":0,"maximum":150},
               "tags":{"type":"array","items":{"type":"string"},"maxItems":3},
               "ok":{"type":"boolean"},"color":{"enum":["red","green","blue"]}},
               "required":["name","age","ok"]}"#,
            r#"{"type":"object"}"#,
            r#"{"type":"array","items":{"type":"number","minimum":-1,"maximum":1},"minItems":1}"#,
            r#"{"type":"object","properties":{"a":{"anyOf":[{"type":"integer"},{"type":"null"}]},
               "b":{"type":"object","properties":{"c":{"type":"string","minLength":3}},"required":["c"]}},
               "required":["a","b"]}"#,
            r#"{"type":"array","items":{"type":"integer","minimum":0,"maximum":5},"maxItems":4}"#,
            r#"{"type":"array","items":{"type":"integer","minimum":-3,"maximum":-1}}"#,
        ];
        for (si, s) in schemas.iter().enumerate() {
            let doc: Json = serde_json::from_str(s).unwrap();
            let schema = Arc::new(JsonSchema::compile(&doc).unwrap());
            let min = schema.min_text().len();
            for seed in 0..60u64 {
                let budget = [min, min + 3, min + 20, 200][(seed % 4) as usize];
                let out = run_noise(&schema, budget, seed * 7919 + si as u64);
                let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| {
                    panic!("schema {si} seed {seed} budget {budget}: {e}: {out:?}")
                });
                if si == 0 {
                    let age = v["age"].as_i64().unwrap_or_else(|| panic!("{out}"));
                    assert!((0..=150).contains(&age), "{out}");
                    assert!(v["name"].as_str().unwrap().chars().count() <= 12);
                    assert!(v["ok"].is_boolean());
                }
                if si == 2 {
                    for x in v.as_array().unwrap() {
                        let x = x.as_f64().unwrap();
                        assert!((-1.0..=1.0).contains(&x), "{out}");
                    }
                }
                if si == 3 {
                    assert!(v["b"]["c"].as_str().unwrap().chars().count() >= 3, "{out}");
                }
            }
        }
    }

    #[test]
    fn too_small_a_budget_is_an_error() {
        let (t, _) = table();
        let s = Arc::new(
            JsonSchema::compile(
                &serde_json::from_str(
                    r#"{"type":"object","properties":{"x":{"type":"string"}},"required":["x"]}"#,
                )
                .unwrap(),
            )
            .unwrap(),
        );
        let e = JsonConstraint::new(s, t, 5).unwrap_err();
        assert_eq!(
            e,
            ConstraintError::BudgetTooSmall {
                needed: 8,
                available: 5
            }
        );
    }

    #[test]
    fn mask_matches_token_by_token_check() {
        // The trie walk and the string fast path agree with checking each
        // token on its own.
        let (t, eos) = table();
        let s = Arc::new(JsonSchema::any_object());
        let mut c = JsonConstraint::new(s.clone(), t.clone(), 1000).unwrap();
        for tok_text in ["{\"", "name", "\":", " \"", "hello world", "é", "\\n"] {
            let allowed = c.allowed_tokens().unwrap();
            for id in 0..t.n_vocab() as u32 {
                let mut m = c.m.clone();
                let ok = id != eos && !t.bytes(id).is_empty() && m.step_all(&s, t.bytes(id));
                assert_eq!(
                    allowed.contains(&id),
                    ok,
                    "token {:?} after prefix",
                    t.bytes(id)
                );
            }
            let id = (0..t.n_vocab() as u32)
                .find(|&i| t.bytes(i) == tok_text.as_bytes())
                .unwrap();
            c.accept(id).unwrap();
        }
    }

    /// The real R1-Qwen (152k), Llama 3 (128k) and Gemma 3 (262k)
    /// vocabularies: noise still parses, and the mask cost per token.
    #[test]
    fn real_vocabularies() {
        if std::env::var_os("PISTIL_UNDER_QEMU").is_some_and(|v| v == "1") {
            return;
        }
        use crate::gguf::{Gguf, LoadMode};
        use crate::tokenizer::Tokenizer;
        let doc: Json = serde_json::from_str(
            r#"{"type":"object","properties":{"name":{"type":"string","maxLength":20},
               "age":{"type":"integer","minimum":0,"maximum":120},"tags":{"type":"array",
               "items":{"type":"string"},"maxItems":3}},"required":["name","age"]}"#,
        )
        .unwrap();
        let schema = Arc::new(JsonSchema::compile(&doc).unwrap());
        for f in ["deepseek-r1-qwen", "llama-bpe", "gemma3"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../tests/fixtures/tokenizer/{f}.vocab.gguf"));
            let gguf = Gguf::open(&path, LoadMode::Mmap).unwrap();
            let tok = Tokenizer::from_gguf(&gguf).unwrap();
            let t0 = std::time::Instant::now();
            let table = Arc::new(TokenTable::from_tokenizer(&tok));
            let build = t0.elapsed();
            let (mut masks, mut mask_time) = (0u32, std::time::Duration::ZERO);
            for seed in 1..=3u64 {
                let budget = 60;
                let mut c = JsonConstraint::new(schema.clone(), table.clone(), budget).unwrap();
                let mut rng = Rng(seed * 0x9E37_79B9);
                let mut out = Vec::new();
                let mut logits = vec![0f32; tok.n_vocab()];
                for _ in 0..budget {
                    if c.is_finished() {
                        break;
                    }
                    for l in logits.iter_mut() {
                        *l = (rng.next() % 1000) as f32;
                    }
                    let t = std::time::Instant::now();
                    c.apply(&mut logits).unwrap();
                    mask_time += t.elapsed();
                    masks += 1;
                    let best = (0..logits.len())
                        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
                        .unwrap() as u32;
                    c.accept(best).unwrap();
                    if table.is_eog(best) {
                        break;
                    }
                    out.extend_from_slice(tok.token_to_piece(best).unwrap());
                }
                let text = String::from_utf8(out).unwrap();
                let v: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{f} seed {seed}: {e}: {text:?}"));
                assert!((0..=120).contains(&v["age"].as_i64().unwrap()), "{text}");
            }
            eprintln!(
                "{f}: {} tokens, table built in {:.1} ms ({} trie nodes), mask {:.2} ms/token",
                tok.n_vocab(),
                build.as_secs_f64() * 1e3,
                table.trie_byte.len(),
                mask_time.as_secs_f64() * 1e3 / f64::from(masks.max(1))
            );
        }
    }
}
