//! Character classes for the BPE pre-tokenizers, and GPT-2's byte ↔ character map.
//!
//! The pre-tokenizer regexes only ask four questions of a character: is it a
//! letter (`\p{L}`: Lu Ll Lt Lm Lo), a number (`\p{N}`: Nd Nl No), whitespace
//! (`\s`, the Unicode White_Space set llama.cpp uses), or anything else.
//! ASCII is answered from a 128-entry table; the rest from the Unicode general
//! category (crate `unicode-general-category`, Unicode 16).

use unicode_general_category::{get_general_category, GeneralCategory as G};

/// What the pre-tokenizer regexes see of a character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// `\p{L}`.
    Letter,
    /// `\p{N}`.
    Number,
    /// `\s`.
    Space,
    /// `[^\s\p{L}\p{N}]`: punctuation, symbols, marks, controls, unassigned.
    Other,
}

/// Classes of the 128 ASCII characters.
const ASCII_CLASS: [Class; 128] = {
    let mut t = [Class::Other; 128];
    let mut c = 0;
    while c < 128 {
        t[c] = match c as u8 {
            b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
            b'0'..=b'9' => Class::Number,
            b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ' => Class::Space,
            _ => Class::Other,
        };
        c += 1;
    }
    t
};

/// The class of `c`.
#[inline]
pub(crate) fn class(c: char) -> Class {
    let u = c as u32;
    if u < 128 {
        return ASCII_CLASS[u as usize];
    }
    if is_unicode_space(u) {
        return Class::Space;
    }
    match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => Class::Letter,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Class::Number,
        _ => Class::Other,
    }
}

/// Non-ASCII White_Space code points (the set llama.cpp's `unicode_set_whitespace` has).
#[inline]
fn is_unicode_space(u: u32) -> bool {
    matches!(
        u,
        0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000
    )
}

/// GPT-2's byte-level alphabet: byte `b` is written as the character `BYTE_CHAR[b]`.
///
/// Printable bytes (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) stand for themselves; the 68
/// others (controls, space, DEL, NBSP, soft hyphen) are shifted to U+0100.. in
/// byte order, so space is `Ġ` (U+0120) and newline `Ċ` (U+010A).
const BYTE_CHAR: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut n = 0u16;
    let mut b = 0;
    while b < 256 {
        t[b] = if is_printable_byte(b as u8) {
            b as u16
        } else {
            n += 1;
            0x100 + n - 1
        };
        b += 1;
    }
    t
};

const fn is_printable_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// UTF-8 encoding of `BYTE_CHAR[b]`: (bytes, length 1 or 2).
const BYTE_UTF8: [([u8; 2], u8); 256] = {
    let mut t = [([0u8; 2], 0u8); 256];
    let mut b = 0;
    while b < 256 {
        let c = BYTE_CHAR[b] as u32;
        t[b] = if c < 0x80 {
            ([c as u8, 0], 1)
        } else {
            ([0xC0 | (c >> 6) as u8, 0x80 | (c & 0x3F) as u8], 2)
        };
        b += 1;
    }
    t
};

/// Appends the GPT-2 byte-level encoding of `bytes` to `out` (each byte
/// becomes one character).
#[inline]
pub(crate) fn byte_encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        let (enc, len) = &BYTE_UTF8[b as usize];
        out.extend_from_slice(&enc[..*len as usize]);
    }
}

/// The byte that GPT-2's alphabet writes as `c`, if `c` is in the alphabet.
#[inline]
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let u = c as u32;
    if u < 0x100 {
        return is_printable_byte(u as u8).then_some(u as u8);
    }
    // The n-th non-printable byte, in byte order: 0x00..=0x20 (33 bytes),
    // 0x7F..=0xA0 (34 bytes), 0xAD.
    match u - 0x100 {
        n @ 0..=32 => Some(n as u8),
        n @ 33..=66 => Some((0x7F + (n - 33)) as u8),
        67 => Some(0xAD),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = char::from_u32(BYTE_CHAR[b as usize] as u32).unwrap();
            assert!(seen.insert(c));
            assert_eq!(char_to_byte(c), Some(b));
            let mut enc = Vec::new();
            byte_encode_into(&[b], &mut enc);
            assert_eq!(std::str::from_utf8(&enc).unwrap(), c.to_string());
        }
        assert_eq!(BYTE_CHAR[b' ' as usize], 0x120); // 'Ġ'
        assert_eq!(BYTE_CHAR[b'\n' as usize], 0x10A); // 'Ċ'
        assert_eq!(char_to_byte('\u{144}'), None);
    }

    #[test]
    fn classes() {
        assert_eq!(class('a'), Class::Letter);
        assert_eq!(class('é'), Class::Letter);
        assert_eq!(class('中'), Class::Letter);
        assert_eq!(class('٣'), Class::Number); // Arabic-Indic three
        assert_eq!(class('½'), Class::Number); // No
        assert_eq!(class('\u{3000}'), Class::Space);
        assert_eq!(class('\u{A0}'), Class::Space);
        assert_eq!(class('\u{200B}'), Class::Other); // ZWSP is not White_Space
        assert_eq!(class('\u{301}'), Class::Other); // combining acute
        assert_eq!(class('😀'), Class::Other);
        assert_eq!(class('\u{1F}'), Class::Other);
    }
}
