//! BPE pre-tokenizers: split text into words before merging.
//!
//! Llama 3 and Qwen 2 (DeepSeek-R1-Distill-Qwen, Qwen 3) use the same regex
//! up to the digit rule:
//!
//! ```text
//! (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```
//!
//! (Qwen 2 has `\p{N}` — one digit per word — where Llama 3 has `\p{N}{1,3}`.)
//! [`split`] matches it by hand, alternative by alternative in regex order,
//! the way llama.cpp's `unicode_regex_split_custom_llama3` does: no regex
//! engine, one pass over the characters.

use super::unicode::{class, Class};
use std::ops::Range;

/// A pre-tokenizer family, from `tokenizer.ggml.pre`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// Llama 3's regex (`llama-bpe`, `llama3`, …): digits in runs of up to 3.
    Llama3,
    /// Qwen 2's regex (`qwen2`, `deepseek-r1-qwen`): one digit per word.
    Qwen2,
}

/// How a `tokenizer.ggml.pre` name configures a byte-level BPE tokenizer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreConfig {
    pub pre: PreTokenizer,
    /// Look the whole word up before merging (Llama 3's `ignore_merges`).
    pub ignore_merges: bool,
    /// Default for `add_bos` when the file does not say.
    pub add_bos: bool,
    /// `clean_up_tokenization_spaces` on decode.
    pub clean_spaces: bool,
}

/// The `tokenizer.ggml.pre` names pistil understands (llama.cpp's names).
pub const SUPPORTED_PRE: &[&str] = &[
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "pixtral",
    "qwen2",
    "deepseek-r1-qwen",
];

impl PreTokenizer {
    /// The configuration llama.cpp gives the pre-tokenizer named `name`.
    pub(crate) fn config(name: &str) -> Option<PreConfig> {
        match name {
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" => Some(PreConfig {
                pre: PreTokenizer::Llama3,
                ignore_merges: true,
                add_bos: true,
                clean_spaces: true,
            }),
            "qwen2" | "deepseek-r1-qwen" => Some(PreConfig {
                pre: PreTokenizer::Qwen2,
                ignore_merges: false,
                add_bos: false,
                clean_spaces: false,
            }),
            _ => None,
        }
    }

    fn max_digits(self) -> usize {
        match self {
            PreTokenizer::Llama3 => 3,
            PreTokenizer::Qwen2 => 1,
        }
    }
}

/// Scratch space for [`split`], reused across calls.
#[derive(Default)]
pub(crate) struct SplitScratch {
    /// Per character of the text: (byte offset, class, is `\r` or `\n`).
    chars: Vec<(u32, Class, bool)>,
}

/// Splits `text` into words (byte ranges, in order, covering all of `text`).
pub(crate) fn split(
    pre: PreTokenizer,
    text: &str,
    scratch: &mut SplitScratch,
    words: &mut Vec<Range<usize>>,
) {
    let max_digits = pre.max_digits();
    let chars = &mut scratch.chars;
    chars.clear();
    chars.extend(
        text.char_indices()
            .map(|(i, c)| (i as u32, class(c), c == '\r' || c == '\n')),
    );
    let n = chars.len();
    let byte_at = |i: usize| -> usize { chars.get(i).map_or(text.len(), |c| c.0 as usize) };
    let cls = |i: usize| -> Option<Class> { chars.get(i).map(|c| c.1) };
    let is_nl = |i: usize| -> bool { chars.get(i).is_some_and(|c| c.2) };
    let ascii_lower = |i: usize| -> u8 {
        let b = byte_at(i);
        // Only ASCII letters matter to the contraction rule.
        match text.as_bytes().get(b) {
            Some(&c) if c.is_ascii() && i < n => c.to_ascii_lowercase(),
            _ => 0,
        }
    };

    let mut start = 0usize; // char index where the current word starts
    let mut pos = 0usize;
    while pos < n {
        let c0 = text.as_bytes().get(byte_at(pos)).copied().unwrap_or(0);
        let k0 = cls(pos);

        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if c0 == b'\'' && pos + 1 < n {
            let c1 = ascii_lower(pos + 1);
            if matches!(c1, b's' | b't' | b'm' | b'd') {
                pos += 2;
            } else if pos + 2 < n
                && matches!(
                    (c1, ascii_lower(pos + 2)),
                    (b'r', b'e') | (b'v', b'e') | (b'l', b'l')
                )
            {
                pos += 3;
            }
            if pos != start {
                words.push(byte_at(start)..byte_at(pos));
                start = pos;
                continue;
            }
        }

        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !is_nl(pos)
            && k0 != Some(Class::Number)
            && (k0 == Some(Class::Letter) || cls(pos + 1) == Some(Class::Letter))
        {
            pos += 1;
            while cls(pos) == Some(Class::Letter) {
                pos += 1;
            }
            words.push(byte_at(start)..byte_at(pos));
            start = pos;
            continue;
        }

        // \p{N}{1,3} (Llama 3) or \p{N} (Qwen 2)
        if k0 == Some(Class::Number) {
            let mut k = 0;
            while k < max_digits && cls(pos) == Some(Class::Number) {
                pos += 1;
                k += 1;
            }
            words.push(byte_at(start)..byte_at(pos));
            start = pos;
            continue;
        }

        // " ?[^\s\p{L}\p{N}]+[\r\n]*"
        let p2 = if c0 == b' ' { pos + 1 } else { pos };
        if cls(p2) == Some(Class::Other) {
            pos = p2;
            while cls(pos) == Some(Class::Other) {
                pos += 1;
            }
            while is_nl(pos) {
                pos += 1;
            }
            words.push(byte_at(start)..byte_at(pos));
            start = pos;
            continue;
        }

        // Whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+
        let mut run = 0;
        let mut last_nl_end = None;
        while cls(pos + run) == Some(Class::Space) {
            if is_nl(pos + run) {
                last_nl_end = Some(pos + run + 1);
            }
            run += 1;
        }
        if let Some(end) = last_nl_end {
            pos = end;
        } else if run > 1 && pos + run < n {
            // Leave the last space to start the next word (" word").
            pos += run - 1;
        } else if run > 0 {
            pos += run;
        } else {
            // Cannot happen (every class is handled above); consume one char.
            pos += 1;
        }
        words.push(byte_at(start)..byte_at(pos));
        start = pos;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pre: PreTokenizer, text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        split(pre, text, &mut SplitScratch::default(), &mut out);
        out.into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn llama3_words() {
        assert_eq!(
            words(
                PreTokenizer::Llama3,
                "Hello world! It's 12345 apples.\n\n  Done   x  "
            ),
            vec![
                "Hello", " world", "!", " It", "'s", " ", "123", "45", " apples", ".\n\n", " ",
                " Done", "  ", " x", "  "
            ]
        );
        assert_eq!(
            words(PreTokenizer::Qwen2, "ab 123"),
            vec!["ab", " ", "1", "2", "3"]
        );
        assert_eq!(
            words(PreTokenizer::Llama3, "I'M 'x"),
            vec!["I", "'M", " '", "x"]
        );
        assert_eq!(
            words(PreTokenizer::Llama3, "\t\tfoo\r\n bar"),
            vec!["\t", "\tfoo", "\r\n", " bar"]
        );
        assert_eq!(words(PreTokenizer::Llama3, ""), Vec::<&str>::new());
    }
}
