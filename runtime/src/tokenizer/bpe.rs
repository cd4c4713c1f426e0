//! Byte-level BPE (GPT-2 style): merge ranks and the per-word merge loop.
//!
//! Merges are ranked by their position in `tokenizer.ggml.merges` ("Ġ t" is
//! rank 0, …). They are stored keyed by the *ids* of the two sides, packed in
//! a `u64`, so a rank lookup during merging hashes 8 bytes instead of two
//! strings. The merged token's id is looked up when the merge happens, from
//! the contiguous bytes of the two symbols in the word buffer.

use super::vocab::{bad_array, string_at, Vocab};
use super::TokenizerError;
use crate::gguf::{Gguf, ValueType};
use rustc_hash::FxBuildHasher;
use std::collections::{BinaryHeap, HashMap};

/// "No token": a symbol whose text is not in the vocabulary.
pub(crate) const NONE: u32 = u32::MAX;

/// Merge ranks keyed by `(left id << 32) | right id`.
pub(crate) struct Merges {
    ranks: HashMap<u64, u32, FxBuildHasher>,
}

impl Merges {
    /// Reads `tokenizer.ggml.merges` ("left right" strings, best first).
    pub fn from_gguf(gguf: &Gguf, vocab: &Vocab) -> Result<Merges, TokenizerError> {
        const KEY: &str = "tokenizer.ggml.merges";
        let arr = gguf
            .get_array(KEY)?
            .ok_or(TokenizerError::MissingKey { key: KEY })?;
        if arr.elem_type() != ValueType::Str {
            return Err(bad_array(KEY, "strings", &arr));
        }
        let raw = arr.raw_bytes();
        let mut ranks = HashMap::with_capacity_and_hasher(arr.len(), FxBuildHasher);
        let mut skipped = 0usize;
        let mut pos = 0usize;
        for rank in 0..arr.len() {
            let Some((start, end)) = string_at(raw, pos) else {
                return Err(TokenizerError::CorruptArray {
                    key: KEY,
                    index: rank,
                });
            };
            let s = &raw[start..end];
            pos = end;
            // Split at the first space after the first byte (a side may be " ").
            let split = s
                .get(1..)
                .and_then(|t| t.iter().position(|&b| b == b' '))
                .map(|p| p + 1);
            let ids =
                split.and_then(|p| Some((vocab.lookup(&s[..p])?, vocab.lookup(&s[p + 1..])?)));
            match ids {
                Some((a, b)) => {
                    // Keep the first (best) rank if a pair is listed twice.
                    ranks.entry(key(a, b)).or_insert(rank as u32);
                }
                None => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!("{KEY}: {skipped} merges name text that is not a token; they can never apply and are ignored");
        }
        Ok(Merges { ranks })
    }

    /// Rank of merging `a` then `b`, if they merge.
    #[inline]
    pub fn rank(&self, a: u32, b: u32) -> Option<u32> {
        if a == NONE || b == NONE {
            return None;
        }
        self.ranks.get(&key(a, b)).copied()
    }

    /// Number of merges.
    pub fn len(&self) -> usize {
        self.ranks.len()
    }

    /// Heap bytes held (approximate).
    pub fn heap_bytes(&self) -> usize {
        self.ranks.capacity() * 13
    }
}

#[inline]
fn key(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

/// One symbol of a word being merged: a byte range of the word and its token id.
#[derive(Clone, Copy)]
struct Sym {
    start: u32,
    end: u32,
    id: u32,
    prev: u32,
    next: u32,
}

const NIL: u32 = u32::MAX;

/// Scratch space for [`merge_word`], reused across words.
#[derive(Default)]
pub(crate) struct BpeScratch {
    syms: Vec<Sym>,
    /// Min-heap of candidate merges, `(rank << 32) | left symbol index`, negated.
    heap: BinaryHeap<std::cmp::Reverse<u64>>,
}

/// Merges one byte-encoded word (`word`, UTF-8 of GPT-2 alphabet characters)
/// and appends its token ids to `out`.
///
/// Repeatedly merges the adjacent pair with the lowest rank (leftmost first on
/// ties), as llama.cpp's `llm_tokenizer_bpe_session` does. A final symbol
/// that is not a token falls back to its single-byte tokens, skipping bytes
/// that have none (llama.cpp's behaviour; unreachable with a sane vocabulary).
pub(crate) fn merge_word(
    vocab: &Vocab,
    merges: &Merges,
    word: &[u8],
    s: &mut BpeScratch,
    out: &mut Vec<u32>,
) {
    let syms = &mut s.syms;
    syms.clear();
    s.heap.clear();

    // One symbol per UTF-8 character.
    let mut i = 0usize;
    while i < word.len() {
        let len = utf8_len(word[i]).min(word.len() - i);
        let id = vocab.lookup(&word[i..i + len]).unwrap_or(NONE);
        let idx = syms.len() as u32;
        syms.push(Sym {
            start: i as u32,
            end: (i + len) as u32,
            id,
            prev: if idx == 0 { NIL } else { idx - 1 },
            next: idx + 1,
        });
        i += len;
    }
    if let Some(last) = syms.last_mut() {
        last.next = NIL;
    }

    for l in 1..syms.len() {
        if let Some(r) = merges.rank(syms[l - 1].id, syms[l].id) {
            s.heap
                .push(std::cmp::Reverse((u64::from(r) << 32) | (l as u64 - 1)));
        }
    }

    while let Some(std::cmp::Reverse(entry)) = s.heap.pop() {
        let rank = (entry >> 32) as u32;
        let left = (entry & 0xFFFF_FFFF) as usize;
        let Some(&l) = syms.get(left) else { continue };
        if l.start == l.end || l.next == NIL {
            continue; // merged away, or nothing on its right any more
        }
        let right = l.next as usize;
        let r = syms[right];
        if merges.rank(l.id, r.id) != Some(rank) {
            continue; // stale: one side changed since this entry was queued
        }
        // Merge right into left.
        let merged = vocab
            .lookup(&word[l.start as usize..r.end as usize])
            .unwrap_or(NONE);
        syms[left].end = r.end;
        syms[left].id = merged;
        syms[left].next = r.next;
        syms[right].end = syms[right].start; // dead
        if r.next != NIL {
            syms[r.next as usize].prev = left as u32;
        }
        // New candidate pairs on both sides.
        let p = syms[left].prev;
        if p != NIL {
            if let Some(rk) = merges.rank(syms[p as usize].id, merged) {
                s.heap
                    .push(std::cmp::Reverse((u64::from(rk) << 32) | u64::from(p)));
            }
        }
        let nx = syms[left].next;
        if nx != NIL {
            if let Some(rk) = merges.rank(merged, syms[nx as usize].id) {
                s.heap
                    .push(std::cmp::Reverse((u64::from(rk) << 32) | left as u64));
            }
        }
    }

    let mut k = if syms.is_empty() { NIL } else { 0 };
    while k != NIL {
        let sym = syms[k as usize];
        if sym.id != NONE {
            out.push(sym.id);
        } else {
            for &b in &word[sym.start as usize..sym.end as usize] {
                if let Some(id) = vocab.lookup(&[b]) {
                    out.push(id);
                }
            }
        }
        k = sym.next;
    }
}

/// Length of the UTF-8 sequence that starts with byte `b` (1 for a stray continuation byte).
#[inline]
pub(crate) fn utf8_len(b: u8) -> usize {
    match b >> 4 {
        0xC | 0xD => 2,
        0xE => 3,
        0xF => 4,
        _ => 1,
    }
}
