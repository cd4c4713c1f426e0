//! Special-token partition: find control and user-defined tokens written out
//! in text (`<｜User｜>`, `<think>`, Gemma's `<start_of_turn>`) and cut the
//! text around them before the ordinary tokenizer runs.
//!
//! Semantics are llama.cpp's `tokenizer_st_partition`: special tokens are
//! taken longest first; each takes every non-overlapping occurrence, left to
//! right, in the text not already taken by a longer one. With
//! `parse_special = false` CONTROL and UNKNOWN tokens are not looked for, but
//! USER_DEFINED ones still are.
//!
//! Finding occurrences: the specials are indexed by their first two bytes
//! (one-byte specials by their byte), each entry listing the distinct lengths
//! of specials with that prefix. At a text position only those lengths are
//! looked up in the vocabulary table, so ordinary text costs one table probe
//! per byte.

use super::vocab::{attr, Vocab};
use rustc_hash::FxBuildHasher;
use std::collections::HashMap;
use std::ops::Range;

/// Index of the special tokens' texts.
pub(crate) struct SpecialIndex {
    /// Bytes that start a one-byte special token.
    single: [bool; 256],
    /// First byte → whether any special of two or more bytes starts with it.
    first: [bool; 256],
    /// First two bytes → distinct lengths (≥ 2) of specials starting with them.
    lens: HashMap<u16, Vec<u32>, FxBuildHasher>,
    /// Whether there is any special token at all.
    any: bool,
}

/// A piece of the partitioned text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Ordinary text to tokenize: a byte range of the input.
    Text(Range<usize>),
    /// A special token found in the text.
    Token(u32),
}

/// The attributes that make a token "special" for the partition.
pub(crate) const SPECIAL: u16 = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;

impl SpecialIndex {
    /// Indexes every token with CONTROL, USER_DEFINED or UNKNOWN attributes.
    pub fn build(vocab: &Vocab) -> SpecialIndex {
        let mut ix = SpecialIndex {
            single: [false; 256],
            first: [false; 256],
            lens: HashMap::with_hasher(FxBuildHasher),
            any: false,
        };
        for id in 0..vocab.len() as u32 {
            if vocab.attr(id) & SPECIAL == 0 {
                continue;
            }
            let Some(t) = vocab.text(id) else { continue };
            match t {
                [] => {}
                [b] => {
                    ix.single[*b as usize] = true;
                    ix.any = true;
                }
                [b0, b1, ..] => {
                    ix.first[*b0 as usize] = true;
                    let v = ix.lens.entry(u16::from_le_bytes([*b0, *b1])).or_default();
                    if !v.contains(&(t.len() as u32)) {
                        v.push(t.len() as u32);
                    }
                    ix.any = true;
                }
            }
        }
        ix
    }

    /// Splits `text` into ordinary text and special tokens (llama.cpp order).
    pub fn partition(
        &self,
        vocab: &Vocab,
        text: &str,
        parse_special: bool,
        out: &mut Vec<Fragment>,
    ) {
        out.clear();
        if text.is_empty() {
            return;
        }
        let allowed = |id: u32| {
            let a = vocab.attr(id);
            a & SPECIAL != 0 && (parse_special || a & (attr::CONTROL | attr::UNKNOWN) == 0)
        };

        // Every occurrence of every allowed special: (start, len, id).
        let bytes = text.as_bytes();
        let mut occ: Vec<(usize, usize, u32)> = Vec::new();
        if self.any {
            for (p, &b0) in bytes.iter().enumerate() {
                if self.single[b0 as usize] {
                    if let Some(id) = vocab.lookup(&bytes[p..p + 1]).filter(|&id| allowed(id)) {
                        occ.push((p, 1, id));
                    }
                }
                if !self.first[b0 as usize] {
                    continue;
                }
                let Some(&b1) = bytes.get(p + 1) else {
                    continue;
                };
                let Some(lens) = self.lens.get(&u16::from_le_bytes([b0, b1])) else {
                    continue;
                };
                for &l in lens {
                    let l = l as usize;
                    if let Some(s) = bytes.get(p..p + l) {
                        if let Some(id) = vocab.lookup(s).filter(|&id| allowed(id)) {
                            occ.push((p, l, id));
                        }
                    }
                }
            }
        }
        if occ.is_empty() {
            out.push(Fragment::Text(0..text.len()));
            return;
        }

        // Longest token first (ties: lower id), then left to right; an
        // occurrence is taken if none of its bytes is taken already.
        occ.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
        let mut taken = vec![false; bytes.len()];
        let mut chosen: Vec<(usize, usize, u32)> = Vec::new();
        for (p, l, id) in occ {
            if taken[p..p + l].iter().any(|&t| t) {
                continue;
            }
            taken[p..p + l].iter_mut().for_each(|t| *t = true);
            chosen.push((p, l, id));
        }
        chosen.sort_unstable_by_key(|c| c.0);

        let mut at = 0usize;
        for (p, l, id) in chosen {
            if p > at {
                out.push(Fragment::Text(at..p));
            }
            out.push(Fragment::Token(id));
            at = p + l;
        }
        if at < text.len() {
            out.push(Fragment::Text(at..text.len()));
        }
    }
}
