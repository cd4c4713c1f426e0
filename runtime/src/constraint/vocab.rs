//! The vocabulary as the constraint sees it: each token's bytes, a prefix
//! tree over them, and the tokens that are plain string text.
//!
//! Built once per model (tens of milliseconds for a 150k vocabulary; shared
//! by every structured request through an `Arc`).

use crate::tokenizer::{attr, Tokenizer};

/// No token ends at this trie node.
const NONE: u32 = u32::MAX;

/// The token table of one vocabulary.
pub struct TokenTable {
    n_vocab: usize,
    /// Token bytes: `blob[offs[t]..offs[t + 1]]` (empty for tokens the constraint never allows).
    blob: Vec<u8>,
    offs: Vec<u32>,
    /// End-of-generation tokens.
    pub(crate) eog: Vec<u32>,
    /// Prefix tree in preorder: `trie_byte[i]`, the token ending at node `i`
    /// (or [`NONE`]), and the size of `i`'s subtree (itself included).
    pub(crate) trie_byte: Vec<u8>,
    pub(crate) trie_tok: Vec<u32>,
    pub(crate) trie_sub: Vec<u32>,
    /// Further tokens with the same bytes as a node's token: `(node, token)`, sorted.
    pub(crate) trie_dups: Vec<(u32, u32)>,
    /// Tokens that are whole characters of string text (no `"`, `\`, control
    /// bytes; valid UTF-8), with their character counts.
    pub(crate) plain: Vec<(u32, u32)>,
    /// Every other usable token (checked one by one inside strings).
    pub(crate) other: Vec<u32>,
    /// The single-byte token of each byte, if the vocabulary has one.
    pub(crate) single: Vec<Option<u32>>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTable")
            .field("n_vocab", &self.n_vocab)
            .field("trie_nodes", &self.trie_byte.len())
            .field("plain", &self.plain.len())
            .field("other", &self.other.len())
            .finish()
    }
}

/// Whether `bytes` is whole UTF-8 string text JSON allows unescaped; the
/// character count if so.
fn plain_chars(bytes: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(bytes).ok()?;
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        return None;
    }
    Some(s.chars().count() as u32)
}

impl TokenTable {
    /// The table of a tokenizer's vocabulary.
    pub fn from_tokenizer(tok: &Tokenizer) -> TokenTable {
        let n = tok.n_vocab();
        TokenTable::build(
            n,
            |id| {
                let a = tok.token_attr(id);
                let piece = tok.token_to_piece(id).unwrap_or_default();
                usable(a, piece).then_some(piece)
            },
            tok.eog_tokens(),
        )
    }

    /// A table from raw parts: `piece(id)` gives a usable token's bytes
    /// (`None` for tokens never to be generated under a constraint).
    pub fn build<'a>(
        n_vocab: usize,
        piece: impl Fn(u32) -> Option<&'a [u8]>,
        eog: &[u32],
    ) -> TokenTable {
        let mut blob = Vec::new();
        let mut offs = Vec::with_capacity(n_vocab + 1);
        offs.push(0u32);
        let mut usable_ids: Vec<u32> = Vec::new();
        let mut plain = Vec::new();
        let mut other = Vec::new();
        let mut single = vec![None; 256];
        for id in 0..n_vocab as u32 {
            if let Some(p) = piece(id).filter(|p| !p.is_empty() && !eog.contains(&id)) {
                blob.extend_from_slice(p);
                usable_ids.push(id);
                match plain_chars(p) {
                    Some(c) => plain.push((id, c)),
                    None => other.push(id),
                }
                if p.len() == 1 && single[p[0] as usize].is_none() {
                    single[p[0] as usize] = Some(id);
                }
            }
            offs.push(blob.len() as u32);
        }
        let bytes_of = |id: u32| -> &[u8] {
            let (s, e) = (offs[id as usize] as usize, offs[id as usize + 1] as usize);
            &blob[s..e]
        };
        // Preorder trie from the sorted token byte strings.
        let mut sorted = usable_ids.clone();
        sorted.sort_by(|&a, &b| bytes_of(a).cmp(bytes_of(b)).then(a.cmp(&b)));
        let mut trie_byte = Vec::new();
        let mut trie_tok = Vec::new();
        let mut trie_sub: Vec<u32> = Vec::new();
        let mut trie_dups = Vec::new();
        // Current path: node index of each depth (depth d ↔ path[d - 1]).
        let mut path: Vec<u32> = Vec::new();
        let mut prev: &[u8] = &[];
        for &id in &sorted {
            let s = bytes_of(id);
            let common = prev.iter().zip(s).take_while(|(a, b)| a == b).count();
            // Close the nodes below the common prefix.
            while path.len() > common {
                if let Some(node) = path.pop() {
                    trie_sub[node as usize] = trie_byte.len() as u32 - node;
                }
            }
            if common == s.len() {
                // Same bytes as the previous token: a duplicate.
                if let Some(&node) = path.last() {
                    trie_dups.push((node, id));
                }
            } else {
                for &b in &s[common..] {
                    let node = trie_byte.len() as u32;
                    trie_byte.push(b);
                    trie_tok.push(NONE);
                    trie_sub.push(1);
                    path.push(node);
                }
                if let Some(&node) = path.last() {
                    trie_tok[node as usize] = id;
                }
            }
            prev = s;
        }
        while let Some(node) = path.pop() {
            trie_sub[node as usize] = trie_byte.len() as u32 - node;
        }
        trie_dups.sort_unstable();
        let mut eog = eog.to_vec();
        eog.sort_unstable();
        eog.dedup();
        TokenTable {
            n_vocab,
            blob,
            offs,
            eog,
            trie_byte,
            trie_tok,
            trie_sub,
            trie_dups,
            plain,
            other,
            single,
        }
    }

    /// Vocabulary size.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// A usable token's bytes (empty for the others).
    pub fn bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.offs.get(i), self.offs.get(i + 1)) {
            (Some(&s), Some(&e)) => self.blob.get(s as usize..e as usize).unwrap_or_default(),
            _ => &[],
        }
    }

    /// Whether `id` ends generation.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// Tokens with the same bytes as node `node`'s token.
    pub(crate) fn dups_of(&self, node: u32) -> impl Iterator<Item = u32> + '_ {
        let start = self.trie_dups.partition_point(|&(n, _)| n < node);
        self.trie_dups[start..]
            .iter()
            .take_while(move |&&(n, _)| n == node)
            .map(|&(_, t)| t)
    }
}

/// Whether a token may be generated under a constraint: ordinary and byte
/// tokens; user-defined ones only when they are plain whitespace (Gemma's
/// `\n\n`), never control tokens or tags like `<think>` (the engine would
/// treat them as markup).
fn usable(a: u16, piece: &[u8]) -> bool {
    if a & (attr::CONTROL | attr::UNKNOWN | attr::UNUSED) != 0 {
        return false;
    }
    if a & attr::USER_DEFINED != 0 {
        return !piece.is_empty() && piece.iter().all(|b| b" \t\n".contains(b));
    }
    a & (attr::NORMAL | attr::BYTE) != 0 || a == attr::UNDEFINED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_is_preorder_with_subtree_sizes() {
        let toks: Vec<&[u8]> = vec![b"ab", b"a", b"b", b"abc", b"ab", b"", b"\"x"];
        let t = TokenTable::build(toks.len(), |i| Some(toks[i as usize]), &[5]);
        // nodes: "\"" "x" | a b c | b
        assert_eq!(t.trie_byte, b"\"xabcb");
        assert_eq!(t.trie_sub, vec![2, 1, 3, 2, 1, 1]);
        assert_eq!(t.trie_tok, vec![NONE, 6, 1, 0, 3, 2]);
        assert_eq!(t.dups_of(3).collect::<Vec<_>>(), vec![4]);
        assert_eq!(t.single[b'a' as usize], Some(1));
        assert_eq!(t.bytes(6), b"\"x");
        assert!(t.bytes(5).is_empty());
        assert_eq!(t.plain.len(), 5);
        assert_eq!(t.other, vec![6]);
    }
}
