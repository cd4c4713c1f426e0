//! Tokenizers built from GGUF metadata only (no `tokenizer.json`): byte-level
//! BPE (`tokenizer.ggml.model = gpt2`: DeepSeek-R1-Distill-Qwen, Qwen 3,
//! Llama 3 / R1-Distill-Llama) and SentencePiece-style BPE with byte fallback
//! (`llama`: Gemma 3).
//!
//! The behaviour is llama.cpp's, token for token (checked against its ids for
//! 89 strings × 3 modes × 3 vocabularies in `tests/tokenizer_fixtures.rs`):
//!
//! 1. special tokens written in the text are cut out first ([`special`]);
//!    with `parse_special = false` only USER_DEFINED ones (`<think>`, Gemma's
//!    `\n\n`) are, CONTROL ones (`<｜User｜>`, BOS) are left as text;
//! 2. BPE: each remaining piece is split into words by the pre-tokenizer regex
//!    ([`pretok`]), byte-encoded (GPT-2 alphabet) and merged by rank ([`bpe`]);
//!    SPM: spaces become `▁` and characters merge by score ([`spm`]);
//! 3. BOS/EOS are added when `add_special` and the file asks for them.
//!
//! ```no_run
//! # use pistil_runtime::{gguf::{Gguf, LoadMode}, tokenizer::{Tokenizer, Detokenizer}};
//! let gguf = Gguf::open("model.gguf".as_ref(), LoadMode::Mmap)?;
//! let tok = Tokenizer::from_gguf(&gguf)?;
//! let ids = tok.encode("<｜User｜>Hi<｜Assistant｜>", true, true)?;
//! let mut detok = Detokenizer::new();
//! for &id in &ids {
//!     print!("{}", detok.push(&tok, id)?);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bpe;
mod detok;
mod pretok;
mod special;
mod spm;
mod unicode;
mod vocab;

pub use detok::{DecodeOptions, Detokenizer};
pub use pretok::{PreTokenizer, SUPPORTED_PRE};
pub use vocab::attr;

use crate::gguf::{Gguf, GgufError};
use bpe::{BpeScratch, Merges};
use detok::{Pieces, TextEncoding};
use pretok::SplitScratch;
use special::{Fragment, SpecialIndex};
use spm::SpmScratch;
use vocab::Vocab;

/// Why a tokenizer could not be built, or an id could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// Reading the metadata failed (wrong type for a key…).
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A required key is absent.
    #[error("the GGUF has no `{key}`: not a model file with a tokenizer")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// `tokenizer.ggml.model` names a tokenizer pistil does not implement.
    #[error("unsupported tokenizer `{0}` (tokenizer.ggml.model); pistil supports `gpt2` (byte-level BPE) and `llama` (SentencePiece)")]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer pistil does not implement.
    #[error("unknown BPE pre-tokenizer `{name}` (tokenizer.ggml.pre); supported: {}", SUPPORTED_PRE.join(", "))]
    UnknownPreTokenizer {
        /// The name in the file (empty if the key is missing).
        name: String,
    },
    /// An array key has the wrong element type.
    #[error("`{key}` must be an array of {expected}, found an array of {found}")]
    BadArray {
        /// The key.
        key: &'static str,
        /// What it must hold.
        expected: &'static str,
        /// What it holds.
        found: &'static str,
    },
    /// A per-token array is shorter than the token list.
    #[error("`{key}` has {found} entries but the vocabulary has {n_tokens} tokens")]
    LengthMismatch {
        /// The key.
        key: &'static str,
        /// Number of tokens.
        n_tokens: usize,
        /// Entries in the array.
        found: usize,
    },
    /// A string array's bytes do not parse.
    #[error("`{key}`: element {index} is corrupt")]
    CorruptArray {
        /// The key.
        key: &'static str,
        /// The element.
        index: usize,
    },
    /// `tokenizer.ggml.tokens` is empty.
    #[error("`tokenizer.ggml.tokens` is empty")]
    EmptyVocab,
    /// The vocabulary does not fit the 32-bit tables.
    #[error("vocabulary too large: {n_tokens} tokens, {bytes} bytes of text")]
    TooLarge {
        /// Number of tokens.
        n_tokens: usize,
        /// Bytes of token text.
        bytes: usize,
    },
    /// Two tokens have the same text.
    #[error("duplicate token {text:?} in the vocabulary: ids {first} and {second}")]
    DuplicateToken {
        /// The text.
        text: String,
        /// The first id.
        first: u32,
        /// The second id.
        second: u32,
    },
    /// The file asks for BOS/EOS to be added but has no such token.
    #[error("`{add_key}` is true but `{id_key}` is not set (or out of range)")]
    MissingSpecial {
        /// e.g. `tokenizer.ggml.add_bos_token`.
        add_key: &'static str,
        /// e.g. `tokenizer.ggml.bos_token_id`.
        id_key: &'static str,
    },
    /// SentencePiece byte fallback needs a `<0xNN>` token the vocabulary lacks.
    #[error("no byte-fallback token <0x{byte:02X}> in the vocabulary")]
    NoByteToken {
        /// The byte.
        byte: u8,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is out of range (the vocabulary has {n_vocab} tokens)")]
    BadTokenId {
        /// The id.
        id: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
}

/// Which algorithm turns text pieces into tokens.
enum Model {
    /// Byte-level BPE with a regex pre-tokenizer.
    Bpe {
        pre: PreTokenizer,
        merges: Merges,
        ignore_merges: bool,
    },
    /// SentencePiece BPE by scores, with byte fallback.
    Spm {
        /// `[256]` byte → `<0xNN>` token id (`u32::MAX` if absent).
        byte_tokens: Box<[u32; 256]>,
    },
}

/// The tokenizer kind, for display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// Byte-level BPE (`gpt2`) with its pre-tokenizer.
    Bpe(PreTokenizer),
    /// SentencePiece (`llama`).
    Spm,
}

/// A model's tokenizer, built from its GGUF metadata.
///
/// Immutable and `Sync`: share one between threads.
pub struct Tokenizer {
    vocab: Vocab,
    pieces: Pieces,
    model: Model,
    specials: SpecialIndex,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    /// End-of-generation tokens, sorted.
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
}

/// Token names that end a turn (llama.cpp's EOG list, `llama-vocab.cpp`).
const EOG_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Token names taken as EOT when the file does not name one, by priority.
const EOT_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// FIM tokens found by name; pad/repo/file-separator also end generation.
const FIM_NAMES: &[(&str, &[&str])] = &[
    (
        "pre",
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    ),
    (
        "suf",
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    ),
    (
        "mid",
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    ),
    (
        "pad",
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    ),
    (
        "rep",
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
    ),
    ("sep", &["<|file_sep|>"]),
];

impl Tokenizer {
    /// Builds the tokenizer described by `tokenizer.ggml.*` in `gguf`.
    pub fn from_gguf(gguf: &Gguf) -> Result<Tokenizer, TokenizerError> {
        let model_name =
            gguf.get_str("tokenizer.ggml.model")?
                .ok_or(TokenizerError::MissingKey {
                    key: "tokenizer.ggml.model",
                })?;
        let pre_name = gguf.get_str("tokenizer.ggml.pre")?.unwrap_or("");
        let mut vocab = Vocab::from_gguf(gguf)?;
        let n = vocab.len() as u32;

        // Per-model defaults (llama.cpp `llama_vocab::impl::load`).
        let (
            mut bos,
            mut eos,
            mut unk,
            mut add_bos,
            mut add_space_prefix,
            clean_spaces,
            model,
            enc,
        );
        let mut add_eos = false;
        match model_name {
            "gpt2" => {
                let cfg = PreTokenizer::config(pre_name).ok_or_else(|| {
                    TokenizerError::UnknownPreTokenizer {
                        name: pre_name.to_string(),
                    }
                })?;
                let merges = Merges::from_gguf(gguf, &vocab)?;
                bos = Some(11);
                eos = Some(11);
                unk = None;
                add_bos = cfg.add_bos;
                add_space_prefix = false;
                clean_spaces = cfg.clean_spaces;
                enc = TextEncoding::ByteLevel;
                model = Model::Bpe {
                    pre: cfg.pre,
                    merges,
                    ignore_merges: cfg.ignore_merges,
                };
            }
            "llama" => {
                if !matches!(pre_name, "" | "default") {
                    tracing::info!("tokenizer.ggml.pre = {pre_name:?} ignored: SentencePiece vocabularies have no pre-tokenizer");
                }
                bos = Some(1);
                eos = Some(2);
                unk = Some(0);
                add_bos = true;
                add_space_prefix = true;
                clean_spaces = false;
                enc = TextEncoding::SentencePiece;
                let mut byte_tokens = Box::new([u32::MAX; 256]);
                for (b, slot) in byte_tokens.iter_mut().enumerate() {
                    let hex = format!("<0x{b:02X}>");
                    *slot = vocab
                        .lookup(hex.as_bytes())
                        .or_else(|| vocab.lookup(&[b as u8]))
                        .unwrap_or(u32::MAX);
                }
                model = Model::Spm { byte_tokens };
            }
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        }
        if let Some(v) = gguf.get_bool("tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = v;
        }

        // Special ids: defaults out of range are dropped; file values override.
        let in_range = |id: Option<u32>| id.filter(|&i| i < n);
        bos = in_range(bos);
        eos = in_range(eos);
        unk = in_range(unk);
        let read_id = |key: &str, default: Option<u32>| -> Result<Option<u32>, TokenizerError> {
            Ok(match gguf.get_u32(key)? {
                Some(id) if id < n => Some(id),
                Some(id) => {
                    tracing::warn!("{key} = {id} is outside the vocabulary ({n} tokens); ignored");
                    default
                }
                None => default,
            })
        };
        bos = read_id("tokenizer.ggml.bos_token_id", bos)?;
        eos = read_id("tokenizer.ggml.eos_token_id", eos)?;
        let mut eot = read_id("tokenizer.ggml.eot_token_id", None)?;
        let mut eom = read_id("tokenizer.ggml.eom_token_id", None)?;
        unk = read_id("tokenizer.ggml.unknown_token_id", unk)?;
        let pad = read_id("tokenizer.ggml.padding_token_id", None)?;
        let mut fim = [None; 6];
        for (slot, key) in fim.iter_mut().zip([
            "tokenizer.ggml.fim_pre_token_id",
            "tokenizer.ggml.fim_suf_token_id",
            "tokenizer.ggml.fim_mid_token_id",
            "tokenizer.ggml.fim_pad_token_id",
            "tokenizer.ggml.fim_rep_token_id",
            "tokenizer.ggml.fim_sep_token_id",
        ]) {
            *slot = read_id(key, None)?;
        }
        if let Some(v) = gguf.get_bool("tokenizer.ggml.add_bos_token")? {
            add_bos = v;
        }
        if let Some(v) = gguf.get_bool("tokenizer.ggml.add_eos_token")? {
            add_eos = v;
        }
        if add_bos && bos.is_none() {
            return Err(TokenizerError::MissingSpecial {
                add_key: "tokenizer.ggml.add_bos_token",
                id_key: "tokenizer.ggml.bos_token_id",
            });
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::MissingSpecial {
                add_key: "tokenizer.ggml.add_eos_token",
                id_key: "tokenizer.ggml.eos_token_id",
            });
        }

        // Tokens found by name are control tokens whatever the file says
        // (llama.cpp overrides their type the same way).
        let force_control = |vocab: &mut Vocab, id: u32| {
            if let Some(a) = vocab.attrs.get_mut(id as usize) {
                if *a & attr::CONTROL == 0 {
                    tracing::debug!("token {id} is used as a control token but not typed as one; treating it as control");
                    *a |= attr::CONTROL;
                }
            }
        };
        if eot.is_none() {
            eot = EOT_NAMES
                .iter()
                .find_map(|name| vocab.lookup(name.as_bytes()));
            if let Some(id) = eot {
                force_control(&mut vocab, id);
            }
        }
        if eom.is_none() {
            eom = vocab.lookup(b"<|eom_id|>");
            if let Some(id) = eom {
                force_control(&mut vocab, id);
            }
        }
        for (slot, (_, names)) in fim.iter_mut().zip(FIM_NAMES) {
            if slot.is_none() {
                *slot = names.iter().find_map(|name| vocab.lookup(name.as_bytes()));
                if let Some(id) = *slot {
                    force_control(&mut vocab, id);
                }
            }
        }
        // Control tokens named "unused" are unused slots.
        for id in 0..n {
            if vocab.attr(id) & attr::CONTROL != 0
                && vocab
                    .text(id)
                    .is_some_and(|t| t.windows(6).any(|w| w == b"unused"))
            {
                vocab.attrs[id as usize] |= attr::UNUSED;
            }
        }
        // End of generation: FIM pad/repo/sep, the EOG names, EOS, EOT, EOM.
        let mut eog: Vec<u32> = fim[3..].iter().flatten().copied().collect();
        for name in EOG_NAMES {
            if let Some(id) = vocab.lookup(name.as_bytes()) {
                force_control(&mut vocab, id);
                eog.push(id);
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();

        let pieces = Pieces::build(&vocab, enc);
        let specials = SpecialIndex::build(&vocab);
        Ok(Tokenizer {
            vocab,
            pieces,
            model,
            specials,
            bos,
            eos,
            eot,
            eom,
            unk,
            pad,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
        })
    }

    /// Tokenizes `text`.
    ///
    /// `add_special`: add BOS (and EOS) if the model wants them.
    /// `parse_special`: turn control-token text (`<｜User｜>`, `<|im_start|>`)
    /// into those tokens — use it for templated prompts, not for user text.
    /// User-defined tokens (`<think>`) are always matched.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        self.encode_into(text, add_special, parse_special, &mut out)?;
        Ok(out)
    }

    /// [`encode`](Self::encode), appending to `out`.
    pub fn encode_into(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        let start = out.len();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let mut frags = Vec::new();
        self.specials
            .partition(&self.vocab, text, parse_special, &mut frags);
        let mut buf: Vec<u8> = Vec::new();
        match &self.model {
            Model::Bpe {
                pre,
                merges,
                ignore_merges,
            } => {
                let mut split = SplitScratch::default();
                let mut scratch = BpeScratch::default();
                let mut words = Vec::new();
                for frag in &frags {
                    let range = match frag {
                        Fragment::Token(id) => {
                            out.push(*id);
                            continue;
                        }
                        Fragment::Text(r) => r.clone(),
                    };
                    let Some(piece) = text.get(range) else {
                        continue;
                    };
                    words.clear();
                    pretok::split(*pre, piece, &mut split, &mut words);
                    for w in &words {
                        buf.clear();
                        unicode::byte_encode_into(&piece.as_bytes()[w.clone()], &mut buf);
                        if *ignore_merges {
                            if let Some(id) = self.vocab.lookup(&buf) {
                                out.push(id);
                                continue;
                            }
                        }
                        bpe::merge_word(&self.vocab, merges, &buf, &mut scratch, out);
                    }
                }
            }
            Model::Spm { byte_tokens } => {
                let mut scratch = SpmScratch::default();
                let mut prev_special = true;
                for frag in &frags {
                    let range = match frag {
                        Fragment::Token(id) => {
                            out.push(*id);
                            prev_special = true;
                            continue;
                        }
                        Fragment::Text(r) => r.clone(),
                    };
                    let Some(piece) = text.get(range) else {
                        continue;
                    };
                    buf.clear();
                    if self.add_space_prefix && prev_special {
                        buf.extend_from_slice("\u{2581}".as_bytes());
                    }
                    for &b in piece.as_bytes() {
                        if b == b' ' {
                            buf.extend_from_slice("\u{2581}".as_bytes());
                        } else {
                            buf.push(b);
                        }
                    }
                    spm::tokenize(&self.vocab, byte_tokens, &buf, &mut scratch, out)?;
                    prev_special = false;
                }
            }
        }
        if add_special && self.add_bos && out.len() >= start + 2 && Some(out[start + 1]) == self.bos
        {
            tracing::debug!("the prompt starts with BOS and BOS was added: it now starts with two");
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(())
    }

    /// Decoded bytes of token `id` as it appears in output text (control
    /// tokens as their text; see [`Detokenizer`] to drop them).
    pub fn token_to_piece(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id)
    }

    /// Token `id`'s text as stored in the vocabulary (`Ġworld`, `▁world`, `<think>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab
            .text(id)
            .and_then(|t| std::str::from_utf8(t).ok())
    }

    /// The id of the token whose vocabulary text is exactly `text`
    /// (for special tokens: `token_id("<think>")`).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.lookup(text.as_bytes())
    }

    /// Attribute bits of token `id` ([`attr`]; 0 if out of range).
    pub fn token_attr(&self, id: u32) -> u16 {
        self.vocab.attr(id)
    }

    /// Whether `id` is a control token (never produced from plain text).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id) & attr::CONTROL != 0
    }

    /// Number of tokens.
    pub fn n_vocab(&self) -> usize {
        self.vocab.len()
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// End-of-turn token (`<|eot_id|>`, `<end_of_turn>`, `<｜end▁of▁sentence｜>`…).
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    /// End-of-message token (`<|eom_id|>`).
    pub fn eom(&self) -> Option<u32> {
        self.eom
    }

    /// Unknown token.
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    /// Padding token.
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }

    /// Whether generating `id` ends the reply (EOS, EOT, `<|im_end|>`, …).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation tokens, sorted.
    pub fn eog_tokens(&self) -> &[u32] {
        &self.eog
    }

    /// Whether `encode(.., add_special = true, ..)` adds BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` adds EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// The algorithm in use.
    pub fn kind(&self) -> TokenizerKind {
        match &self.model {
            Model::Bpe { pre, .. } => TokenizerKind::Bpe(*pre),
            Model::Spm { .. } => TokenizerKind::Spm,
        }
    }

    /// Number of BPE merges (0 for SentencePiece).
    pub fn n_merges(&self) -> usize {
        match &self.model {
            Model::Bpe { merges, .. } => merges.len(),
            Model::Spm { .. } => 0,
        }
    }

    /// Heap memory held by the tables, in bytes.
    pub fn heap_bytes(&self) -> usize {
        let merges = match &self.model {
            Model::Bpe { merges, .. } => merges.heap_bytes(),
            Model::Spm { .. } => 0,
        };
        self.vocab.heap_bytes() + self.pieces.heap_bytes() + merges
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind())
            .field("n_vocab", &self.n_vocab())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eot", &self.eot)
            .field("eog", &self.eog)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}
