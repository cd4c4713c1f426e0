//! Token → bytes: each token's "piece", whole-sequence decoding (llama.cpp's
//! `llama_detokenize`), and a streaming [`Detokenizer`] that never emits half
//! a UTF-8 character.

use super::vocab::{attr, Vocab};
use super::{Tokenizer, TokenizerError};

/// Every token's decoded bytes, in one blob.
pub(crate) struct Pieces {
    blob: Vec<u8>,
    /// `[n_vocab + 1]` offsets into `blob`.
    offs: Vec<u32>,
}

/// How the token texts of a vocabulary encode bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum TextEncoding {
    /// GPT-2 byte-level alphabet (`Ġ` for space…).
    ByteLevel,
    /// SentencePiece: `▁` for space, `<0xNN>` byte tokens.
    SentencePiece,
}

impl Pieces {
    /// Decodes every token once (llama.cpp's `token_to_piece(special = true)`):
    /// control, user-defined and unknown tokens are their text; normal tokens
    /// are decoded (`Ġ` → space, `▁` → space); byte tokens are their byte;
    /// unused and untyped tokens are empty.
    pub fn build(vocab: &Vocab, enc: TextEncoding) -> Pieces {
        let n = vocab.len();
        let mut blob = Vec::with_capacity(vocab.heap_bytes() / 2);
        let mut offs = Vec::with_capacity(n + 1);
        offs.push(0u32);
        for id in 0..n as u32 {
            let text = vocab.text(id).unwrap_or_default();
            let a = vocab.attr(id);
            if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
                blob.extend_from_slice(text);
            } else if a & attr::NORMAL != 0 {
                match enc {
                    TextEncoding::ByteLevel => byte_level_decode(text, &mut blob),
                    TextEncoding::SentencePiece => unescape_spaces(text, &mut blob),
                }
            } else if a & attr::BYTE != 0 {
                if let Some(b) = parse_byte_token(text) {
                    blob.push(b);
                }
            }
            offs.push(blob.len() as u32);
        }
        blob.shrink_to_fit();
        Pieces { blob, offs }
    }

    /// Token `id`'s piece.
    #[inline]
    pub fn get(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let (s, e) = (*self.offs.get(i)?, *self.offs.get(i + 1)?);
        self.blob.get(s as usize..e as usize)
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.blob.capacity() + self.offs.capacity() * 4
    }
}

/// `▁` (U+2581) → space.
fn unescape_spaces(text: &[u8], out: &mut Vec<u8>) {
    let mut rest = text;
    // `▁` is E2 96 81; copy the runs between them whole.
    while let Some(p) = rest.iter().position(|&b| b == 0xE2) {
        if rest[p..].starts_with(&[0xE2, 0x96, 0x81]) {
            out.extend_from_slice(&rest[..p]);
            out.push(b' ');
            rest = &rest[p + 3..];
        } else {
            out.extend_from_slice(&rest[..p + 1]);
            rest = &rest[p + 1..];
        }
    }
    out.extend_from_slice(rest);
}

/// GPT-2 byte-level text → bytes. Printable ASCII stands for itself; the
/// alphabet's other characters are all below U+0800, i.e. two UTF-8 bytes.
fn byte_level_decode(text: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if (0x21..0x7F).contains(&b) {
            out.push(b);
            i += 1;
            continue;
        }
        if b & 0xE0 == 0xC0 {
            if let Some(&b1) = text.get(i + 1) {
                let cp = (u32::from(b & 0x1F) << 6) | u32::from(b1 & 0x3F);
                if let Some(byte) = char::from_u32(cp).and_then(super::unicode::char_to_byte) {
                    out.push(byte);
                    i += 2;
                    continue;
                }
            }
        }
        // Not in the alphabet (never in a well-formed vocabulary): keep the character.
        let len = super::bpe::utf8_len(b).min(text.len() - i);
        out.extend_from_slice(&text[i..i + len]);
        i += len;
    }
}

/// `<0xNN>` → the byte.
pub(crate) fn parse_byte_token(text: &[u8]) -> Option<u8> {
    match text {
        [b'<', b'0', b'x', h, l, b'>'] => {
            let hex = |c: u8| (c as char).to_digit(16);
            Some((hex(*h)? * 16 + hex(*l)?) as u8)
        }
        _ => None,
    }
}

/// Options of [`Tokenizer::decode`], as llama.cpp's `llama_detokenize`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecodeOptions {
    /// Drop a leading BOS (and trailing EOS) that the tokenizer would have added.
    pub remove_special: bool,
    /// Write control tokens (BOS, EOS, `<｜User｜>`…) as their text; if false they vanish.
    pub unparse_special: bool,
}

impl Tokenizer {
    /// Decodes `ids` to bytes (may be invalid UTF-8 if `ids` split a character).
    ///
    /// Matches llama.cpp's `llama_detokenize`: with `add_space_prefix` the
    /// first token's leading space is dropped, and Llama 3 vocabularies apply
    /// `clean_up_tokenization_spaces` (`" ?"` → `"?"`, `" 's"` → `"'s"`, …).
    pub fn decode_bytes(
        &self,
        ids: &[u32],
        opts: DecodeOptions,
    ) -> Result<Vec<u8>, TokenizerError> {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if opts.remove_special && self.add_bos {
            if let (Some(&first), Some(bos)) = (ids.first(), self.bos) {
                if first == bos {
                    remove_space = false;
                    ids = &ids[1..];
                }
            }
        }
        if opts.remove_special && self.add_eos {
            if let (Some(&last), Some(eos)) = (ids.last(), self.eos) {
                if last == eos {
                    ids = &ids[..ids.len() - 1];
                }
            }
        }
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let piece = self.piece_for_output(id, opts.unparse_special)?;
            let piece = if remove_space {
                piece.strip_prefix(b" ").unwrap_or(piece)
            } else {
                piece
            };
            remove_space = false;
            out.extend_from_slice(piece);
        }
        if self.clean_spaces {
            clean_up_tokenization_spaces(&mut out);
        }
        Ok(out)
    }

    /// Decodes `ids` to text; bytes that are not UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32], opts: DecodeOptions) -> Result<String, TokenizerError> {
        let bytes = self.decode_bytes(ids, opts)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// The bytes token `id` contributes to output text: its piece, or nothing
    /// for control/unknown tokens unless `special`.
    pub(crate) fn piece_for_output(&self, id: u32, special: bool) -> Result<&[u8], TokenizerError> {
        let piece = self.pieces.get(id).ok_or(TokenizerError::BadTokenId {
            id,
            n_vocab: self.n_vocab(),
        })?;
        if !special && self.vocab.attr(id) & (attr::CONTROL | attr::UNKNOWN) != 0 {
            return Ok(&[]);
        }
        Ok(piece)
    }
}

/// llama.cpp's `clean_spaces` passes over decoded text: `" ?"`, `" !"`,
/// `" ."`, `" ,"` lose the space; `" ' "` loses both spaces; `" 's"`, `" 'm"`,
/// `" 're"`, `" 've"` lose the space.
fn clean_up_tokenization_spaces(text: &mut Vec<u8>) {
    // Pass 1: space before ?!.,
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    for (i, &x) in text.iter().enumerate() {
        if i > 0 && text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    // Pass 2: a lone apostrophe between spaces: " ' " → "'" (the space
    // after it is consumed and reads as NUL to the next step, as in llama.cpp).
    let mut t = std::mem::take(&mut out);
    let mut i = 0;
    while i < t.len() {
        let x = t[i];
        if i > 0 && x == b'\'' && i + 1 < t.len() && t[i - 1] == b' ' && t[i + 1] == b' ' {
            out.pop();
            i += 1;
            t[i] = 0;
        }
        out.push(x);
        i += 1;
    }
    // Pass 3: contractions " 's" " 'm" " 're" " 've"
    let t = std::mem::take(&mut out);
    for (i, &x) in t.iter().enumerate() {
        if i > 0 && t[i - 1] == b' ' && x == b'\'' && i + 1 < t.len() {
            let x1 = t[i + 1];
            let x2 = t.get(i + 2).copied();
            let drop = matches!(x1, b's' | b'm')
                || matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e')));
            if drop {
                out.pop();
            }
        }
        out.push(x);
    }
    *text = out;
}

/// Streaming detokenizer: feed token ids as they are generated, get text that
/// is always whole UTF-8 characters.
///
/// A token may end in the middle of a character (byte tokens, or byte-level
/// BPE pieces of an emoji); those bytes wait until the character completes.
/// Bytes that can never form a character are replaced by U+FFFD. No
/// `clean_up_tokenization_spaces` here: like llama.cpp's streaming output,
/// each token's piece is written as is.
#[derive(Default, Debug)]
pub struct Detokenizer {
    /// Bytes of an incomplete character carried over from the last token.
    pending: Vec<u8>,
    /// Text completed by the last `push`.
    out: String,
    /// Write control tokens as their text.
    render_special: bool,
}

impl Detokenizer {
    /// A detokenizer that drops control tokens (BOS, EOS, chat markers).
    pub fn new() -> Detokenizer {
        Detokenizer::default()
    }

    /// Also write control tokens as their text (`<｜end▁of▁sentence｜>`…).
    pub fn render_special(mut self, yes: bool) -> Detokenizer {
        self.render_special = yes;
        self
    }

    /// Adds token `id`; returns the text it completes (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<&str, TokenizerError> {
        let piece = tok.piece_for_output(id, self.render_special)?;
        self.out.clear();
        if self.pending.is_empty() {
            // Fast path: the whole piece is UTF-8 (the common case).
            if let Ok(s) = std::str::from_utf8(piece) {
                self.out.push_str(s);
                return Ok(&self.out);
            }
        }
        self.pending.extend_from_slice(piece);
        self.drain(false);
        Ok(&self.out)
    }

    /// Ends the stream: returns what is still pending (as U+FFFD for bytes of
    /// an unfinished character).
    pub fn finish(&mut self) -> &str {
        self.out.clear();
        self.drain(true);
        &self.out
    }

    /// Whether bytes of an unfinished character are waiting.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn drain(&mut self, at_end: bool) {
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    self.out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // `good` is the prefix from_utf8 just validated.
                    self.out
                        .push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            self.out.push('\u{FFFD}');
                            rest = &bad[n..];
                        }
                        None if at_end => {
                            self.out.push('\u{FFFD}');
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = bad; // incomplete character: wait for more
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let len = self.pending.len();
        self.pending.drain(..len - keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_spaces_like_llama_cpp() {
        let mut t = b"Hello , world ! It ' s he 's we 're I 'd ok ?".to_vec();
        clean_up_tokenization_spaces(&mut t);
        assert_eq!(
            String::from_utf8(t).unwrap(),
            "Hello, world! It's he's we're I 'd ok?"
        );
        let mut t = b"a ' ' b".to_vec();
        clean_up_tokenization_spaces(&mut t);
        assert_eq!(t, b"a'' b");
    }

    #[test]
    fn byte_tokens() {
        assert_eq!(parse_byte_token(b"<0x0A>"), Some(10));
        assert_eq!(parse_byte_token(b"<0xff>"), Some(255));
        assert_eq!(parse_byte_token(b"<0xG0>"), None);
    }
}
