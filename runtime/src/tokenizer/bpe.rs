//! Byte-level BPE (GPT-2 style): merge ranks and the per-word merge loop.
//!
//! Merges are ranked by their position in `tokenizer.ggml.merges` (`"Ġ t"` is
//! rank 0, …). A merge `a b` produces the token `c = a + b`, and given `c`
//! the pair is fixed by where `a` ends, so ranks are stored *by result*:
//! `[n_vocab]` arrays of (rank, length of `a`), plus a small map for the
//! tokens that more than one merge produces (Llama 3 has ~90k of those).
//!
//! Loading is then one pass over the merges with no hashing at all for
//! vocabularies whose merge `r` produced token `r + 256` (Qwen 2 / R1-Distill-
//! Qwen: the result's text is compared in place), and one table probe per
//! merge otherwise — about a third of the work of keying by both sides. While
//! merging, a candidate pair is ranked by looking up its bytes (contiguous in
//! the word buffer) and reading the arrays.

use super::vocab::{bad_array, string_at, Vocab};
use super::TokenizerError;
use crate::gguf::{Gguf, ValueType};
use rustc_hash::FxBuildHasher;
use std::collections::{BinaryHeap, HashMap};

/// "No token" / "no merge".
pub(crate) const NONE: u32 = u32::MAX;

/// Merge ranks, keyed by the merged token.
pub(crate) struct Merges {
    /// `[n_vocab]` rank of the best merge producing token `c` (`NONE` if none).
    rank: Vec<u32>,
    /// `[n_vocab]` byte length of that merge's left side.
    left_len: Vec<u32>,
    /// Further merges producing an already-produced token: `(c, left len)` → rank.
    more: HashMap<(u32, u32), u32, FxBuildHasher>,
    /// Merges read.
    n: usize,
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
        let n_vocab = vocab.len();
        let mut m = Merges {
            rank: vec![NONE; n_vocab],
            left_len: vec![0; n_vocab],
            more: HashMap::with_hasher(FxBuildHasher),
            n: 0,
        };
        let mut skipped = 0usize;
        let mut pos = 0usize;
        let mut concat: Vec<u8> = Vec::with_capacity(64);
        // Guess: merge r produced token r + offset (true of HF-trained BPE vocabularies).
        let mut offset: i64 = 256;
        let mut guess_ok = true;
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
            let Some(p) = s
                .get(1..)
                .and_then(|t| t.iter().position(|&b| b == b' '))
                .map(|p| p + 1)
            else {
                skipped += 1;
                continue;
            };
            let (a, b) = (&s[..p], &s[p + 1..]);
            let guess = rank as i64 + offset;
            let mut c = NONE;
            if guess_ok || rank % 64 == 0 {
                if let Some(t) = u32::try_from(guess).ok().and_then(|g| vocab.text(g)) {
                    if t.len() == a.len() + b.len() && t.starts_with(a) && t.ends_with(b) {
                        c = guess as u32;
                    }
                }
                guess_ok = c != NONE;
            }
            if c == NONE {
                concat.clear();
                concat.extend_from_slice(a);
                concat.extend_from_slice(b);
                match vocab.lookup(&concat) {
                    Some(id) => {
                        c = id;
                        offset = i64::from(id) - rank as i64;
                    }
                    None => {
                        skipped += 1;
                        continue;
                    }
                }
            }
            let (r, k) = (rank as u32, a.len() as u32);
            let slot = c as usize;
            if m.rank[slot] == NONE {
                m.rank[slot] = r;
                m.left_len[slot] = k;
            } else if m.left_len[slot] != k {
                if m.more.capacity() == 0 {
                    // Vocabularies converted from tiktoken (Llama 3) have many;
                    // size for a third of the merges to avoid rehashing.
                    m.more.reserve(arr.len() / 3);
                }
                m.more.entry((c, k)).or_insert(r);
            }
            m.n += 1;
        }
        if skipped > 0 {
            tracing::warn!("{KEY}: {skipped} merges produce text that is not a token; they can never apply and are ignored");
        }
        Ok(m)
    }

    /// Rank of the merge that joins a left side of `left_len` bytes into token `c`.
    #[inline]
    pub fn rank(&self, c: u32, left_len: u32) -> Option<u32> {
        let slot = c as usize;
        match self.rank.get(slot) {
            Some(&r) if r != NONE && self.left_len[slot] == left_len => Some(r),
            Some(&r) if r != NONE && !self.more.is_empty() => {
                self.more.get(&(c, left_len)).copied()
            }
            _ => None,
        }
    }

    /// Number of merges.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Heap bytes held (approximate).
    pub fn heap_bytes(&self) -> usize {
        self.rank.capacity() * 4 + self.left_len.capacity() * 4 + self.more.capacity() * 13
    }
}

/// One symbol of a word being merged: a byte range of the word.
#[derive(Clone, Copy)]
struct Sym {
    start: u32,
    end: u32,
    prev: u32,
    next: u32,
}

const NIL: u32 = u32::MAX;

/// Scratch space for [`merge_word`], reused across words.
#[derive(Default)]
pub(crate) struct BpeScratch {
    syms: Vec<Sym>,
    /// Min-heap of candidate merges: `(rank, left symbol index, merged token,
    /// merged byte length)`; lowest rank first, then leftmost.
    heap: BinaryHeap<std::cmp::Reverse<(u32, u32, u32, u32)>>,
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
        let idx = syms.len() as u32;
        syms.push(Sym {
            start: i as u32,
            end: (i + len) as u32,
            prev: if idx == 0 { NIL } else { idx - 1 },
            next: idx + 1,
        });
        i += len;
    }
    if let Some(last) = syms.last_mut() {
        last.next = NIL;
    }

    // The merge joining symbols `l` and `r`, if any, as a heap entry.
    let candidate = |syms: &[Sym], l: u32, r: u32| -> Option<(u32, u32, u32, u32)> {
        let (a, b) = (syms[l as usize], syms[r as usize]);
        let c = vocab.lookup(&word[a.start as usize..b.end as usize])?;
        Some((merges.rank(c, a.end - a.start)?, l, c, b.end - a.start))
    };

    for r in 1..syms.len() as u32 {
        if let Some(e) = candidate(syms, r - 1, r) {
            s.heap.push(std::cmp::Reverse(e));
        }
    }

    while let Some(std::cmp::Reverse((_, left, _, len))) = s.heap.pop() {
        let l = syms[left as usize];
        if l.start == l.end || l.next == NIL {
            continue; // merged away, or nothing on its right any more
        }
        let right = l.next;
        let r = syms[right as usize];
        // Symbols only grow, so the pair is unchanged since the entry was
        // queued exactly when it spans the same number of bytes.
        if r.end - l.start != len {
            continue;
        }
        syms[left as usize].end = r.end;
        syms[left as usize].next = r.next;
        syms[right as usize].end = syms[right as usize].start; // dead
        if r.next != NIL {
            syms[r.next as usize].prev = left;
        }
        let p = syms[left as usize].prev;
        if p != NIL {
            if let Some(e) = candidate(syms, p, left) {
                s.heap.push(std::cmp::Reverse(e));
            }
        }
        let nx = syms[left as usize].next;
        if nx != NIL {
            if let Some(e) = candidate(syms, left, nx) {
                s.heap.push(std::cmp::Reverse(e));
            }
        }
    }

    let mut k = if syms.is_empty() { NIL } else { 0 };
    while k != NIL {
        let sym = syms[k as usize];
        let bytes = &word[sym.start as usize..sym.end as usize];
        match vocab.lookup(bytes) {
            Some(id) => out.push(id),
            None => {
                for &b in bytes {
                    if let Some(id) = vocab.lookup(&[b]) {
                        out.push(id);
                    }
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
