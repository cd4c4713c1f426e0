//! SentencePiece-style BPE (`tokenizer.ggml.model = llama`, Gemma 3): merge
//! the adjacent pair whose merged text is the highest-scoring token, until no
//! adjacent pair forms a token; characters left without a token fall back to
//! byte tokens `<0xNN>`.

use super::bpe::utf8_len;
use super::vocab::Vocab;
use super::TokenizerError;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A candidate merge of symbols `left` and `right` into a token of `score`.
#[derive(Clone, Copy)]
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    /// Byte length of the merged text, to detect stale entries.
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

#[derive(Clone, Copy)]
struct Sym {
    start: u32,
    /// Byte length; 0 once merged into its left neighbour.
    len: u32,
    prev: u32,
    next: u32,
}

const NIL: u32 = u32::MAX;

/// Scratch space for [`tokenize`], reused across fragments.
#[derive(Default)]
pub(crate) struct SpmScratch {
    syms: Vec<Sym>,
    heap: BinaryHeap<Bigram>,
}

/// Tokenizes `text` (spaces already escaped to `▁`) and appends the ids to `out`.
pub(crate) fn tokenize(
    vocab: &Vocab,
    byte_tokens: &[u32; 256],
    text: &[u8],
    s: &mut SpmScratch,
    out: &mut Vec<u32>,
) -> Result<(), TokenizerError> {
    let syms = &mut s.syms;
    syms.clear();
    s.heap.clear();
    let mut i = 0usize;
    while i < text.len() {
        let len = utf8_len(text[i]).min(text.len() - i);
        let idx = syms.len() as u32;
        syms.push(Sym {
            start: i as u32,
            len: len as u32,
            prev: if idx == 0 { NIL } else { idx - 1 },
            next: idx + 1,
        });
        i += len;
    }
    if let Some(last) = syms.last_mut() {
        last.next = NIL;
    }

    let try_add = |syms: &[Sym], heap: &mut BinaryHeap<Bigram>, left: u32, right: u32| {
        if left == NIL || right == NIL {
            return;
        }
        let (l, r) = (syms[left as usize], syms[right as usize]);
        let bytes = &text[l.start as usize..(r.start + r.len) as usize];
        if let Some(id) = vocab.lookup(bytes) {
            heap.push(Bigram {
                score: vocab.score(id),
                left,
                right,
                size: bytes.len() as u32,
            });
        }
    };

    for r in 1..syms.len() as u32 {
        try_add(syms, &mut s.heap, r - 1, r);
    }

    while let Some(bg) = s.heap.pop() {
        let (l, r) = (syms[bg.left as usize], syms[bg.right as usize]);
        if l.len == 0 || r.len == 0 || l.len + r.len != bg.size {
            continue; // stale
        }
        syms[bg.left as usize].len += r.len;
        syms[bg.right as usize].len = 0;
        syms[bg.left as usize].next = r.next;
        if r.next != NIL {
            syms[r.next as usize].prev = bg.left;
        }
        let prev = syms[bg.left as usize].prev;
        try_add(syms, &mut s.heap, prev, bg.left);
        let next = syms[bg.left as usize].next;
        try_add(syms, &mut s.heap, bg.left, next);
    }

    let mut k = if syms.is_empty() { NIL } else { 0 };
    while k != NIL {
        let sym = syms[k as usize];
        let bytes = &text[sym.start as usize..(sym.start + sym.len) as usize];
        match vocab.lookup(bytes) {
            Some(id) => out.push(id),
            None => {
                for &b in bytes {
                    let id = byte_tokens[b as usize];
                    if id == u32::MAX {
                        return Err(TokenizerError::NoByteToken { byte: b });
                    }
                    out.push(id);
                }
            }
        }
        k = sym.next;
    }
    Ok(())
}
