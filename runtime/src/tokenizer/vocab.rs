//! The vocabulary: token texts, attributes, scores and a text → id table.
//!
//! Loading is the part users wait for, so it is kept to a few linear passes:
//! the GGUF string array is copied once into one blob (it is already laid out
//! as `[u64 len][bytes]…`), token *i*'s text is a span of that blob, and the
//! text → id table is a [`hashbrown::HashTable`] of bare `u32` ids that hashes
//! and compares through the blob (no per-token allocation, 4 bytes a slot).

use super::TokenizerError;
use crate::gguf::{Gguf, MetaArray, ValueType};
use hashbrown::HashTable;
use rustc_hash::FxHasher;
use std::hash::Hasher;

/// Token attribute bits (llama.cpp's `llama_token_attr`).
pub mod attr {
    /// No type given.
    pub const UNDEFINED: u16 = 0;
    /// The unknown token (`<unk>`).
    pub const UNKNOWN: u16 = 1 << 0;
    /// Reserved/unused slot.
    pub const UNUSED: u16 = 1 << 1;
    /// Ordinary text token.
    pub const NORMAL: u16 = 1 << 2;
    /// Control token (BOS, EOS, chat markers): never produced from plain text.
    pub const CONTROL: u16 = 1 << 3;
    /// User-defined token (`<think>`, Gemma's `\n\n`, HTML tags): matched whole in any text.
    pub const USER_DEFINED: u16 = 1 << 4;
    /// Byte-fallback token `<0xNN>`.
    pub const BYTE: u16 = 1 << 5;
}

/// `tokenizer.ggml.token_type` values (gguf-py's `TokenType`).
fn attr_from_type(t: i32) -> u16 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => attr::UNDEFINED,
    }
}

/// Token texts, attributes and scores, with an O(1) text → id lookup.
pub(crate) struct Vocab {
    /// The GGUF's `tokenizer.ggml.tokens` array bytes, verbatim.
    blob: Vec<u8>,
    /// `[n_vocab]` (start, len) of each token's text in `blob`.
    spans: Vec<(u32, u32)>,
    /// `[n_vocab]` attribute bits ([`attr`]).
    pub attrs: Vec<u16>,
    /// `[n_vocab]` SentencePiece scores (empty for BPE files without scores).
    pub scores: Vec<f32>,
    /// Token ids, hashed by their text.
    table: HashTable<u32>,
}

#[inline]
fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(b);
    h.finish()
}

impl Vocab {
    /// Reads `tokenizer.ggml.tokens`, `token_type` and `scores`.
    pub fn from_gguf(gguf: &Gguf) -> Result<Vocab, TokenizerError> {
        const KEY: &str = "tokenizer.ggml.tokens";
        let tokens = gguf
            .get_array(KEY)?
            .ok_or(TokenizerError::MissingKey { key: KEY })?;
        if tokens.elem_type() != ValueType::Str {
            return Err(bad_array(KEY, "strings", &tokens));
        }
        let n = tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        let blob = tokens.raw_bytes().to_vec();
        if blob.len() > u32::MAX as usize || n > u32::MAX as usize / 2 {
            return Err(TokenizerError::TooLarge {
                n_tokens: n,
                bytes: blob.len(),
            });
        }
        // Walk the length prefixes (validated by the GGUF parser; checked again
        // here because this is the only thing that makes a span in-bounds).
        let mut spans = Vec::with_capacity(n);
        let mut pos = 0usize;
        for i in 0..n {
            let Some((start, end)) = string_at(&blob, pos) else {
                return Err(TokenizerError::CorruptArray { key: KEY, index: i });
            };
            spans.push((start as u32, (end - start) as u32));
            pos = end;
        }

        let attrs = match gguf.get_array("tokenizer.ggml.token_type")? {
            None => vec![attr::NORMAL; n],
            Some(a) => {
                let key = "tokenizer.ggml.token_type";
                let types = a.i32s().ok_or_else(|| bad_array(key, "i32", &a))?;
                if a.len() < n {
                    return Err(TokenizerError::LengthMismatch {
                        key,
                        n_tokens: n,
                        found: a.len(),
                    });
                }
                types.take(n).map(attr_from_type).collect()
            }
        };

        let scores = match gguf.get_array("tokenizer.ggml.scores")? {
            None => Vec::new(),
            Some(a) => {
                let key = "tokenizer.ggml.scores";
                if a.len() < n {
                    return Err(TokenizerError::LengthMismatch {
                        key,
                        n_tokens: n,
                        found: a.len(),
                    });
                }
                if let Some(f) = a.f32s() {
                    f.take(n).collect()
                } else if let Some(i) = a.i32s() {
                    i.take(n).map(|v| v as f32).collect()
                } else {
                    return Err(bad_array(key, "f32", &a));
                }
            }
        };

        let mut vocab = Vocab {
            blob,
            spans,
            attrs,
            scores,
            table: HashTable::with_capacity(n),
        };
        vocab.build_table()?;
        Ok(vocab)
    }

    fn build_table(&mut self) -> Result<(), TokenizerError> {
        let Vocab {
            blob, spans, table, ..
        } = self;
        let text = |id: u32| -> &[u8] {
            let (s, l) = spans[id as usize];
            &blob[s as usize..(s + l) as usize]
        };
        for id in 0..spans.len() as u32 {
            let t = text(id);
            if t.is_empty() {
                continue; // never matches anything (llama.cpp renames it "[EMPTY_i]")
            }
            let h = hash_bytes(t);
            match table.entry(
                h,
                |&other| text(other) == t,
                |&other| hash_bytes(text(other)),
            ) {
                hashbrown::hash_table::Entry::Occupied(e) => {
                    return Err(TokenizerError::DuplicateToken {
                        text: String::from_utf8_lossy(t).into_owned(),
                        first: *e.get(),
                        second: id,
                    });
                }
                hashbrown::hash_table::Entry::Vacant(e) => {
                    e.insert(id);
                }
            }
        }
        Ok(())
    }

    /// Number of tokens.
    #[inline]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Token `id`'s text as stored in the file (`None` if out of range).
    #[inline]
    pub fn text(&self, id: u32) -> Option<&[u8]> {
        let &(s, l) = self.spans.get(id as usize)?;
        self.blob.get(s as usize..(s + l) as usize)
    }

    /// Token `id`'s text; `id` must be in range.
    #[inline]
    pub fn text_unchecked_range(&self, id: u32) -> &[u8] {
        self.text(id).unwrap_or_default()
    }

    /// The id of the token whose text is exactly `bytes`.
    #[inline]
    pub fn lookup(&self, bytes: &[u8]) -> Option<u32> {
        let h = hash_bytes(bytes);
        self.table
            .find(h, |&id| self.text_unchecked_range(id) == bytes)
            .copied()
    }

    /// Attribute bits of `id` (0 if out of range).
    #[inline]
    pub fn attr(&self, id: u32) -> u16 {
        self.attrs
            .get(id as usize)
            .copied()
            .unwrap_or(attr::UNDEFINED)
    }

    /// Score of `id` (0 if the file has no scores).
    #[inline]
    pub fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    /// Heap bytes held (for load reports).
    pub fn heap_bytes(&self) -> usize {
        self.blob.capacity()
            + self.spans.capacity() * 8
            + self.attrs.capacity() * 2
            + self.scores.capacity() * 4
            + self.table.capacity() * 5
    }
}

/// The byte range of the length-prefixed (`u64` little-endian) string at
/// `pos` in a GGUF string array, if it is in bounds.
#[inline]
pub(crate) fn string_at(raw: &[u8], pos: usize) -> Option<(usize, usize)> {
    let b: [u8; 8] = raw.get(pos..pos.checked_add(8)?)?.try_into().ok()?;
    let start = pos + 8;
    let end = start.checked_add(usize::try_from(u64::from_le_bytes(b)).ok()?)?;
    (end <= raw.len()).then_some((start, end))
}

pub(crate) fn bad_array(
    key: &'static str,
    expected: &'static str,
    a: &MetaArray<'_>,
) -> TokenizerError {
    TokenizerError::BadArray {
        key,
        expected,
        found: a.elem_type_name(),
    }
}
