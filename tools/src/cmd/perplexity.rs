//! `pistil perplexity -m MODEL -f FILE [-c 512]`: perplexity of a text, by
//! llama.cpp's `llama-perplexity` method, so the numbers compare:
//!
//! - the whole file is tokenized once (BOS first if the model wants one) and
//!   cut into chunks of `-c` tokens (a tail shorter than a chunk is dropped);
//! - each chunk runs in a fresh context, its first token replaced by BOS (for
//!   models that add one);
//! - only the second half of each chunk is scored: the logits at positions
//!   `c/2 … c-2` predict tokens `c/2+1 … c-1`, so every scored token has at
//!   least `c/2` tokens of context;
//! - PPL = exp(mean negative log-likelihood), printed per chunk as a running
//!   value (`[1]12.3456,[2]…`), then `Final estimate: PPL = X +/- err`, where
//!   err is the standard error of the mean NLL carried through the exp.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use pistil_runtime::model::{KvType, StateOptions};
use pistil_runtime::tokenizer::Tokenizer;

use crate::cmd::eval::load_model;
use crate::cmd::inspect::{CacheTypeArg, LoadModeArg};

/// Arguments of `pistil perplexity`.
#[derive(clap::Args)]
pub struct Args {
    /// Model: a GGUF file or a catalog name (`gemma3:270m`).
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub model: String,
    /// The text file to score.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Tokens per chunk (context size).
    #[arg(
        short = 'c',
        long = "ctx-size",
        value_name = "N",
        default_value_t = 512
    )]
    pub ctx: usize,
    /// Score at most this many chunks.
    #[arg(long = "chunks", value_name = "N")]
    pub chunks: Option<usize>,
    /// Tokens per forward step.
    #[arg(
        short = 'b',
        long = "batch-size",
        value_name = "N",
        default_value_t = 512
    )]
    pub batch: usize,
    /// Threads [default: all cores].
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<usize>,
    /// KV cache type.
    #[arg(long = "cache-type", value_enum, default_value_t = CacheTypeArg::F16)]
    pub cache_type: CacheTypeArg,
    /// How to load the file.
    #[arg(long = "load-mode", value_enum, default_value_t = LoadModeArg::Mmap)]
    pub load_mode: LoadModeArg,
    /// Download a catalog model without asking.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// Negative log-likelihood of `target` under `logits` (log-softmax in f64).
pub fn nll(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let lt = logits.get(target).copied().unwrap_or(f32::NEG_INFINITY) as f64;
    -(lt - max - sum.ln())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.ctx < 4 {
        bail!("-c {}: a chunk needs at least 4 tokens", args.ctx);
    }
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let (g, m) = load_model(&args.model, args.yes, args.load_mode, args.threads)?;
    let tok = Tokenizer::from_gguf(&g).context("reading the tokenizer")?;
    let t0 = Instant::now();
    let tokens = tok
        .encode(&text, true, false)
        .context("tokenizing the file")?;
    let n_ctx = args.ctx;
    let mut n_chunks = tokens.len() / n_ctx;
    if let Some(c) = args.chunks {
        n_chunks = n_chunks.min(c);
    }
    if n_chunks == 0 {
        bail!(
            "{} has {} tokens, fewer than one chunk of {n_ctx} (-c)",
            args.file.display(),
            tokens.len()
        );
    }
    eprintln!(
        "pistil perplexity: tokenized {} tokens in {:.2} s; {n_chunks} chunks of {n_ctx}, scoring the second half of each",
        tokens.len(),
        t0.elapsed().as_secs_f64()
    );
    let kv_type: KvType = args.cache_type.into();
    let mut st = m
        .new_state(&StateOptions {
            n_ctx,
            n_batch: args.batch.clamp(1, n_ctx),
            kv_type,
            logits_rows: 32,
        })
        .context("allocating the context")?;
    let first = n_ctx / 2;
    let bos = tok.add_bos().then(|| tok.bos()).flatten();
    let (mut sum, mut sum2, mut count) = (0f64, 0f64, 0usize);
    let mut out = std::io::stdout().lock();
    let t1 = Instant::now();
    for c in 0..n_chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if let (Some(b), Some(t)) = (bos, chunk.first_mut()) {
            *t = b;
        }
        st.clear();
        m.forward_each(&mut st, &chunk, first, &mut |i, logits| {
            if let Some(&target) = chunk.get(i + 1) {
                let v = nll(logits, target as usize);
                sum += v;
                sum2 += v * v;
                count += 1;
            }
        })
        .with_context(|| format!("chunk {}", c + 1))?;
        if c == 0 {
            let per = t1.elapsed().as_secs_f64();
            eprintln!(
                "pistil perplexity: {per:.2} s per chunk, about {:.1} min in all",
                per * n_chunks as f64 / 60.0
            );
        }
        write!(out, "[{}]{:.4},", c + 1, (sum / count as f64).exp())?;
        out.flush()?;
    }
    let mean = sum / count as f64;
    let ppl = mean.exp();
    let var = (sum2 / count as f64 - mean * mean).max(0.0);
    let err = if count > 1 {
        ppl * (var / (count - 1) as f64).sqrt()
    } else {
        0.0
    };
    writeln!(out)?;
    writeln!(out, "Final estimate: PPL = {ppl:.4} +/- {err:.5}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::nll;

    #[test]
    fn nll_is_minus_log_softmax() {
        let l = [1.0f32, 2.0, 3.0];
        let z: f64 = l.iter().map(|&x| (x as f64).exp()).sum();
        assert!((nll(&l, 2) - (z.ln() - 3.0)).abs() < 1e-12);
        // Uniform over 4: ln 4.
        assert!((nll(&[0.5; 4], 1) - 4f64.ln()).abs() < 1e-12);
    }
}
