//! `pistil tokenize -m MODEL [--no-bos] [--no-special] [--pieces] (TEXT | --stdin)`:
//! the token ids a model's own vocabulary gives a text, like llama.cpp's
//! `llama-tokenize --ids`.
//!
//! Prints one JSON array: `[151646, 9707, 11]`. With `--pieces`, a JSON array
//! with one object per token and line: `{"id":9707,"piece":"Hello"}` (plus
//! `"bytes"` when a token is part of a character, e.g. one byte of an emoji). Only the
//! tokenizer is read, so a vocab-only GGUF works. By default BOS/EOS are added
//! as the model asks and special-token text (`<｜User｜>`, `<|im_start|>`) is
//! parsed, as for a templated prompt.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use pistil_runtime::gguf::{Gguf, LoadMode};
use pistil_runtime::tokenizer::Tokenizer;
use serde_json::json;

use crate::model_arg::{resolve_model, Consent};

/// Arguments of `pistil tokenize`.
#[derive(clap::Args)]
pub struct Args {
    /// Model: a GGUF file (vocab-only files work) or a downloaded catalog name.
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    model: String,
    /// Do not add BOS/EOS, even if the model asks for them.
    #[arg(long)]
    no_bos: bool,
    /// Treat special-token text (`<｜User｜>`, `<|im_start|>`) as plain text.
    #[arg(long)]
    no_special: bool,
    /// Print `{"id", "piece"}` objects, one per line, instead of bare ids.
    #[arg(long)]
    pieces: bool,
    /// Read the text from standard input (all of it, as is).
    #[arg(long, conflicts_with = "text")]
    stdin: bool,
    /// The text to tokenize.
    #[arg(required_unless_present = "stdin")]
    text: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let path: PathBuf = resolve_model(Some(&args.model), &args.model, Consent::Never)?;
    let gguf =
        Gguf::open(&path, LoadMode::Mmap).with_context(|| format!("opening {}", path.display()))?;
    let tok = Tokenizer::from_gguf(&gguf)
        .with_context(|| format!("reading the tokenizer of {}", path.display()))?;

    let text = match (&args.text, args.stdin) {
        (Some(t), false) => t.clone(),
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading standard input")?;
            String::from_utf8(buf).context("standard input is not UTF-8 text")?
        }
    };
    let ids = tok.encode(&text, !args.no_bos, !args.no_special)?;

    let mut out = std::io::stdout().lock();
    if args.pieces {
        writeln!(out, "[")?;
        for (i, &id) in ids.iter().enumerate() {
            let piece = tok.token_to_piece(id).unwrap_or_default();
            let obj = match std::str::from_utf8(piece) {
                Ok(s) => json!({ "id": id, "piece": s }),
                Err(_) => json!({
                    "id": id,
                    "piece": String::from_utf8_lossy(piece),
                    "bytes": piece,
                }),
            };
            let sep = if i + 1 < ids.len() { "," } else { "" };
            writeln!(out, "  {obj}{sep}")?;
        }
        writeln!(out, "]")?;
    } else {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        writeln!(out, "[{}]", list.join(", "))?;
    }
    Ok(())
}
