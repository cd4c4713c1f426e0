//! `pistil eval`: teacher-forced logits — run a token sequence through the
//! model (prompt processing, in batches) and print, for every position, the
//! top-K next-token logits. The tool for comparing pistil with llama.cpp
//! position by position.
//!
//! ```text
//! pistil eval -m gemma3:270m --ids 2,818,5279,529,7001,563 --top 8
//! pistil eval -m model.gguf --prompt "The capital of France is" --json
//! ```
//!
//! `--json` prints `{"model", "n_vocab", "ids", "positions": [{"pos": 0, "id": 2,
//! "top": [[id, logit], …]}, …]}`; `top` is best first, ties to the lower id.

use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context};
use pistil_runtime::gguf::{Gguf, LoadMode};
use pistil_runtime::model::{KvType, LoadOptions, Model, StateOptions};
use pistil_runtime::tokenizer::Tokenizer;
use serde_json::json;

use crate::cmd::inspect::{CacheTypeArg, LoadModeArg};
use crate::model_arg::{resolve_model, Consent};

/// Arguments of `pistil eval`.
#[derive(clap::Args)]
pub struct Args {
    /// Model: a GGUF file or a catalog name (`gemma3:270m`).
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub model: String,
    /// Token ids, comma-separated (e.g. `2,818,5279`).
    #[arg(
        long,
        value_name = "IDS",
        value_delimiter = ',',
        conflicts_with = "prompt",
        required_unless_present = "prompt"
    )]
    pub ids: Vec<u32>,
    /// Text to tokenize with the model's tokenizer (BOS added if the model wants it).
    #[arg(short = 'p', long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// Logits to print per position.
    #[arg(long, value_name = "K", default_value_t = 8)]
    pub top: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Threads [default: all cores].
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<usize>,
    /// KV cache type.
    #[arg(long = "cache-type", value_enum, default_value_t = CacheTypeArg::F16)]
    pub cache_type: CacheTypeArg,
    /// Tokens per forward step.
    #[arg(
        short = 'b',
        long = "batch-size",
        value_name = "N",
        default_value_t = 512
    )]
    pub batch: usize,
    /// How to load the file.
    #[arg(long = "load-mode", value_enum, default_value_t = LoadModeArg::Mmap)]
    pub load_mode: LoadModeArg,
    /// Download a catalog model without asking.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// Threads to use: the flag, else every core.
pub fn default_threads(flag: Option<usize>) -> usize {
    flag.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// Opens and loads the model `-m` names.
pub fn load_model(
    model: &str,
    yes: bool,
    load_mode: LoadModeArg,
    threads: Option<usize>,
) -> anyhow::Result<(Arc<Gguf>, Model)> {
    let path = resolve_model(Some(model), model, Consent::from_yes_flag(yes))?;
    let mode: LoadMode = load_mode.into();
    let g =
        Arc::new(Gguf::open(&path, mode).with_context(|| format!("opening {}", path.display()))?);
    let m = Model::load(
        Arc::clone(&g),
        &LoadOptions {
            n_threads: default_threads(threads),
            ..LoadOptions::default()
        },
    )
    .with_context(|| format!("loading {}", path.display()))?;
    Ok((g, m))
}

/// The `k` largest entries of `x` as (index, value), best first, ties to the lower index.
pub fn top_k(x: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &v) in x.iter().enumerate() {
        if top.len() == k && top.last().is_some_and(|&(_, w)| v <= w || v.is_nan()) {
            continue;
        }
        let at = top.partition_point(|&(_, w)| w >= v);
        top.insert(at, (i as u32, v));
        top.truncate(k);
    }
    top
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (g, m) = load_model(&args.model, args.yes, args.load_mode, args.threads)?;
    let ids = match &args.prompt {
        Some(text) => {
            let tok = Tokenizer::from_gguf(&g).context("reading the tokenizer")?;
            tok.encode(text, true, false)
                .context("tokenizing the prompt")?
        }
        None => args.ids.clone(),
    };
    if ids.is_empty() {
        bail!("no tokens to evaluate");
    }
    let kv_type: KvType = args.cache_type.into();
    let mut st = m
        .new_state(&StateOptions {
            n_ctx: ids.len(),
            n_batch: args.batch.max(1),
            kv_type,
            logits_rows: ids.len().min(64),
        })
        .context("allocating the context")?;
    let k = args.top.min(m.vocab_size());
    let mut tops = Vec::with_capacity(ids.len());
    m.forward_each(&mut st, &ids, 0, &mut |_, logits| {
        tops.push(top_k(logits, k))
    })
    .context("evaluating")?;

    let mut out = std::io::stdout().lock();
    let r = if args.json {
        let positions: Vec<_> = ids
            .iter()
            .zip(&tops)
            .enumerate()
            .map(|(pos, (id, top))| {
                json!({"pos": pos, "id": id,
                       "top": top.iter().map(|&(i, l)| json!([i, l])).collect::<Vec<_>>()})
            })
            .collect();
        let doc = json!({"model": args.model, "n_vocab": m.vocab_size(), "ids": ids, "positions": positions});
        writeln!(out, "{doc}")
    } else {
        let mut s = String::new();
        for (pos, (id, top)) in ids.iter().zip(&tops).enumerate() {
            let cells: Vec<String> = top.iter().map(|(i, l)| format!("{i}:{l:.4}")).collect();
            s += &format!("{pos:>5} {id:>8}  {}\n", cells.join(" "));
        }
        out.write_all(s.as_bytes())
    };
    match r.and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::top_k;

    #[test]
    fn top_k_orders_and_breaks_ties_low() {
        let x = [1.0, 5.0, 3.0, 5.0, -1.0, 4.0];
        assert_eq!(top_k(&x, 3), vec![(1, 5.0), (3, 5.0), (5, 4.0)]);
        assert_eq!(top_k(&x, 1), vec![(1, 5.0)]);
        assert_eq!(top_k(&x, 10).len(), 6);
    }
}
