//! `pistil inspect FILE`: what a GGUF file holds and the memory a run needs.
//!
//! FILE is a path, or a catalog name (`gemma3:270m`) that has been pulled.
//! Only the header is read (with `--load-mode mmap`, the default, the tensor
//! data is mapped but not touched). A bad file is one error line and a
//! non-zero exit.
//!
//! `--json` prints one object whose field names are stable; they are listed in
//! [`JSON_FIELDS`], which `pistil inspect --help` prints too.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use pistil_kernels::GgmlType;
use pistil_runtime::gguf::{file_type_name, Gguf, GgufError, LoadMode, OpenOptions};
use pistil_runtime::plan::{self, KvType, ModelDims, PlanParams};
use serde_json::{json, Value};

use crate::model_arg::{resolve_model, Consent};

/// The `--json` fields (shown by `pistil inspect --help`).
pub const JSON_FIELDS: &str = "\
JSON output (--json), one object; field names are stable:
  file, file_size          the file and its size in bytes
  gguf_version, alignment, data_offset, n_kv   GGUF header facts
  load_mode                mmap | mlock | none
  architecture, name       general.architecture, general.name (null if absent)
  n_params, n_params_str   sum of tensor elements, and as llama.cpp prints it (\"268.10 M\")
  file_type, file_type_name   general.file_type and llama.cpp's name (\"Q4_K - Medium\"), or null
  n_tensors, tensor_bytes  tensor count and the sum of their data sizes
  tensor_types             [{type: \"Q4_K\", count, bytes}] in GGML type id order
  context_length, n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim_k, head_dim_v, n_vocab
                           from <arch>.* keys with llama.cpp's defaults (null if the file is
                           not a model, e.g. vocab only); n_head_kv is an array if it differs
                           per layer
  sliding_window, n_layer_swa   attention window (null if none), layers that use it
  rope                     {type: norm|neox|null, freq_base, freq_base_swa, dimension_count,
                            scaling_type, scaling_factor, original_context_length}
  tokenizer                {model, pre, n_tokens, n_merges, bos_token_id, eos_token_id,
                            add_bos_token} (null if absent)
  chat_template            whether tokenizer.chat_template is present
  memory                   {ctx, ctx_from, cache_type, n_ubatch, kv_cells, kv_cells_swa,
                            weights, kv_cache, scratch, total} in bytes, or null with
                            memory_error saying why
  tensors                  with --tensors: [{name, type, shape, offset, bytes}]";

/// `--load-mode` on the command line (llama.cpp's `--mmap`/`--mlock`/`--no-mmap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadModeArg {
    /// Map the file (default): shared page cache, nothing copied.
    Mmap,
    /// Map the file and mlock it so it is never paged out.
    Mlock,
    /// No mmap: read the whole file into memory.
    None,
}

impl From<LoadModeArg> for LoadMode {
    fn from(a: LoadModeArg) -> LoadMode {
        match a {
            LoadModeArg::Mmap => LoadMode::Mmap,
            LoadModeArg::Mlock => LoadMode::MmapLocked,
            LoadModeArg::None => LoadMode::Read,
        }
    }
}

/// `--cache-type` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CacheTypeArg {
    /// 16-bit floats (default).
    F16,
    /// 8-bit blocks, half the size of f16.
    #[value(name = "q8_0")]
    Q8_0,
    /// 32-bit floats.
    F32,
}

impl From<CacheTypeArg> for KvType {
    fn from(a: CacheTypeArg) -> KvType {
        match a {
            CacheTypeArg::F16 => KvType::F16,
            CacheTypeArg::Q8_0 => KvType::Q8_0,
            CacheTypeArg::F32 => KvType::F32,
        }
    }
}

/// Arguments of `pistil inspect`.
#[derive(clap::Args)]
#[command(after_long_help = JSON_FIELDS)]
pub struct Args {
    /// A GGUF file, or the catalog name of a pulled model (`gemma3:270m`).
    #[arg(value_name = "FILE")]
    pub file: String,
    /// Context size for the memory estimate [default: the model's context
    /// length, capped at 4096].
    #[arg(short = 'c', long = "ctx-size", value_name = "N")]
    pub ctx_size: Option<u32>,
    /// KV cache type for the memory estimate.
    #[arg(long = "cache-type", value_enum, default_value_t = CacheTypeArg::F16)]
    pub cache_type: CacheTypeArg,
    /// Tokens per forward pass during prompt processing, for the estimate of
    /// the scratch buffers and of the sliding-window caches.
    #[arg(short = 'u', long = "ubatch-size", value_name = "N", default_value_t = plan::DEFAULT_UBATCH)]
    pub ubatch: u32,
    /// How to load the file.
    #[arg(long = "load-mode", value_enum, default_value_t = LoadModeArg::Mmap)]
    pub load_mode: LoadModeArg,
    /// Print one JSON object (stable field names, listed below with --help).
    #[arg(long)]
    pub json: bool,
    /// Also list every tensor: name, type, shape, offset, size.
    #[arg(long)]
    pub tensors: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let path = resolve(&args.file)?;
    let mode: LoadMode = args.load_mode.into();
    // Only the header is needed: no prefetch of the whole file.
    let g = Gguf::open_with(
        &path,
        OpenOptions {
            mode,
            prefetch: false,
        },
    )
    .map_err(|e| match e {
        // Already names the file.
        GgufError::Io { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("reading {}", path.display())),
    })?;
    let report = report(&g, &path, &args);
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report)?;
        s.push('\n');
        s
    } else {
        render_text(&report)
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A path as given, else a pulled catalog model (never downloads).
fn resolve(arg: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(arg);
    let looks_like_path = p.exists()
        || arg.contains(std::path::MAIN_SEPARATOR)
        || arg.contains('/')
        || arg.ends_with(".gguf");
    if looks_like_path {
        return Ok(p.to_path_buf());
    }
    resolve_model(Some(arg), arg, Consent::Never)
}

/// llama.cpp's parameter count format (`llama_model::print_info`).
pub fn format_params(n: u64) -> String {
    let n = n as f64;
    if n >= 1e12 {
        format!("{:.2} T", n / 1e12)
    } else if n >= 1e9 {
        format!("{:.2} B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else {
        format!("{:.2} K", n / 1e3)
    }
}

/// How RoPE pairs dimensions for the architectures llama.cpp knows
/// (`llama_model_rope_type`): `norm` = adjacent pairs, `neox` = halves.
fn rope_type(arch: &str) -> Option<&'static str> {
    match arch {
        "llama" | "llama4" | "deci" | "baichuan" | "starcoder" | "internlm2" | "minicpm"
        | "xverse" | "command-r" | "cohere2" | "olmo" | "arctic" | "deepseek" | "deepseek2"
        | "granite" | "granitemoe" | "chameleon" | "bitnet" | "mistral3" => Some("norm"),
        "falcon" | "grok" | "dbrx" | "bert" | "nomic-bert" | "stablelm" | "bitnet-b158"
        | "qwen" | "qwen2" | "qwen2moe" | "qwen3" | "qwen3moe" | "olmo2" | "olmoe" | "phi2"
        | "phi3" | "phimoe" | "plamo" | "gemma" | "gemma2" | "gemma3" | "gemma3n"
        | "starcoder2" | "openelm" | "gptneox" | "codeshell" | "exaone" | "nemotron" => {
            Some("neox")
        }
        _ => None,
    }
}

/// Everything `inspect` shows, as the JSON object (text is rendered from it).
fn report(g: &Gguf, path: &Path, args: &Args) -> Value {
    let arch = g.get_str("general.architecture").ok().flatten();
    let ak = |k: &str| arch.map(|a| format!("{a}.{k}"));
    let num = |k: Option<String>| -> Value {
        let Some(k) = k else { return Value::Null };
        match g.get(&k) {
            Some(v) => v
                .as_u64()
                .map(Value::from)
                .or_else(|| v.as_f64().map(Value::from))
                .or_else(|| v.as_i64().map(Value::from))
                .or_else(|| v.as_str().map(Value::from))
                .unwrap_or(Value::Null),
            None => Value::Null,
        }
    };

    let mut by_type: BTreeMap<GgmlType, (u64, u64)> = BTreeMap::new();
    for t in g.tensors() {
        let e = by_type.entry(t.ty).or_insert((0, 0));
        e.0 += 1;
        e.1 += t.size;
    }
    let tensor_types: Vec<Value> = by_type
        .iter()
        .map(|(ty, (count, bytes))| json!({"type": ty.to_string(), "count": count, "bytes": bytes}))
        .collect();
    let file_type = g.get_u32("general.file_type").ok().flatten();

    let dims = ModelDims::from_gguf(g);
    let (memory, memory_error) = match &dims {
        Ok(d) => {
            let ctx = args.ctx_size.unwrap_or_else(|| plan::default_ctx(d));
            let ctx_from = match (args.ctx_size, d.context_length) {
                (Some(_), _) => "--ctx-size".to_string(),
                (None, 0) => format!("default {}", plan::DEFAULT_CTX_CAP),
                (None, c) if c > plan::DEFAULT_CTX_CAP => {
                    format!("model context {c}, capped at {}", plan::DEFAULT_CTX_CAP)
                }
                (None, _) => "model context".to_string(),
            };
            let p = PlanParams {
                ctx,
                kv_type: args.cache_type.into(),
                n_ubatch: args.ubatch,
            };
            let e = plan::estimate_dims(d, g.tensor_bytes(), &p);
            (
                json!({
                    "ctx": ctx, "ctx_from": ctx_from, "cache_type": p.kv_type.name(),
                    "n_ubatch": p.n_ubatch, "kv_cells": e.kv_cells, "kv_cells_swa": e.kv_cells_swa,
                    "weights": e.weights, "kv_cache": e.kv_cache, "scratch": e.scratch, "total": e.total,
                }),
                None,
            )
        }
        Err(e) => (Value::Null, Some(e.to_string())),
    };
    let d = dims.as_ref().ok();
    let n_head_kv = d.map_or(Value::Null, |d| {
        let first = d.n_head_kv.first().copied().unwrap_or(0);
        if d.n_head_kv.iter().all(|&h| h == first) {
            json!(first)
        } else {
            json!(d.n_head_kv)
        }
    });
    let swa = d.and_then(|d| d.sliding_window);
    let rope = arch.map_or(Value::Null, |a| {
        let freq_base_swa = match num(ak("rope.freq_base_swa")) {
            // llama.cpp's default for Gemma 3's local layers.
            Value::Null if swa.is_some() && a == "gemma3" => json!(10000.0),
            v => v,
        };
        json!({
            "type": rope_type(a),
            "freq_base": num(ak("rope.freq_base")),
            "freq_base_swa": freq_base_swa,
            "dimension_count": num(ak("rope.dimension_count")),
            "scaling_type": num(ak("rope.scaling.type")),
            "scaling_factor": num(ak("rope.scaling.factor")),
            "original_context_length": num(ak("rope.scaling.original_context_length")),
        })
    });
    let arr_len = |k: &str| -> Value {
        g.get_array(k)
            .ok()
            .flatten()
            .map_or(Value::Null, |a| json!(a.len()))
    };
    let tokenizer = match g.get_str("tokenizer.ggml.model").ok().flatten() {
        None => Value::Null,
        Some(m) => json!({
            "model": m,
            "pre": g.get_str("tokenizer.ggml.pre").ok().flatten(),
            "n_tokens": arr_len("tokenizer.ggml.tokens"),
            "n_merges": arr_len("tokenizer.ggml.merges"),
            "bos_token_id": num(Some("tokenizer.ggml.bos_token_id".into())),
            "eos_token_id": num(Some("tokenizer.ggml.eos_token_id".into())),
            "add_bos_token": g.get_bool("tokenizer.ggml.add_bos_token").ok().flatten(),
        }),
    };

    let mut r = json!({
        "file": path.display().to_string(),
        "file_size": g.file_size(),
        "gguf_version": g.version(),
        "alignment": g.alignment(),
        "data_offset": g.data_offset(),
        "n_kv": g.len_metadata(),
        "load_mode": LoadMode::from(args.load_mode).name(),
        "architecture": arch,
        "name": g.get_str("general.name").ok().flatten(),
        "n_params": g.n_params(),
        "n_params_str": format_params(g.n_params()),
        "file_type": file_type,
        "file_type_name": file_type.and_then(file_type_name),
        "n_tensors": g.tensors().len(),
        "tensor_bytes": g.tensor_bytes(),
        "tensor_types": tensor_types,
        "context_length": d.map(|d| d.context_length),
        "n_layer": d.map(|d| d.n_layer),
        "n_embd": d.map(|d| d.n_embd),
        "n_ff": d.map(|d| d.n_ff),
        "n_head": d.map(|d| d.n_head),
        "n_head_kv": n_head_kv,
        "head_dim_k": d.map(|d| d.head_dim_k),
        "head_dim_v": d.map(|d| d.head_dim_v),
        "n_vocab": d.map(|d| d.n_vocab),
        "sliding_window": swa,
        "n_layer_swa": d.map_or(0, |d| d.n_layer_swa()),
        "rope": rope,
        "tokenizer": tokenizer,
        "chat_template": g.get("tokenizer.chat_template").is_some(),
        "memory": memory,
    });
    if let (Some(e), Some(obj)) = (memory_error, r.as_object_mut()) {
        obj.insert("memory_error".into(), json!(e));
    }
    if args.tensors {
        let list: Vec<Value> = g
            .tensors()
            .iter()
            .map(|t| {
                json!({"name": t.name, "type": t.ty.to_string(), "shape": t.dims,
                       "offset": g.data_offset() as u64 + t.offset, "bytes": t.size})
            })
            .collect();
        if let Some(obj) = r.as_object_mut() {
            obj.insert("tensors".into(), json!(list));
        }
    }
    r
}

/// One `label  value` line of the text output.
fn line(s: &mut String, label: &str, value: String) {
    use std::fmt::Write as _;
    let _ = writeln!(s, "{label:<16}{value}");
}

/// Bytes as llama.cpp prints buffer sizes: MiB with two decimals.
fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / (1024.0 * 1024.0))
}

fn render_text(r: &Value) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let s_ = |v: &Value| -> String {
        match v {
            Value::Null => "-".into(),
            Value::String(x) => x.clone(),
            other => other.to_string(),
        }
    };
    line(
        &mut s,
        "file",
        format!(
            "{} ({}, GGUF v{}, {} keys, alignment {})",
            s_(&r["file"]),
            mib(r["file_size"].as_u64().unwrap_or(0)),
            s_(&r["gguf_version"]),
            s_(&r["n_kv"]),
            s_(&r["alignment"])
        ),
    );
    line(&mut s, "architecture", s_(&r["architecture"]));
    line(&mut s, "name", s_(&r["name"]));
    line(&mut s, "parameters", s_(&r["n_params_str"]));
    line(
        &mut s,
        "file type",
        match (&r["file_type_name"], &r["file_type"]) {
            (Value::String(n), t) => format!("{n} ({})", s_(t)),
            (_, Value::Null) => "-".into(),
            (_, t) => format!("unknown ({})", s_(t)),
        },
    );
    let types: Vec<String> = r["tensor_types"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    format!(
                        "{} {} ({})",
                        s_(&t["type"]),
                        s_(&t["count"]),
                        mib(t["bytes"].as_u64().unwrap_or(0))
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    line(
        &mut s,
        "tensors",
        format!(
            "{} ({}){}{}",
            s_(&r["n_tensors"]),
            mib(r["tensor_bytes"].as_u64().unwrap_or(0)),
            if types.is_empty() { "" } else { ": " },
            types.join(", ")
        ),
    );
    if !r["n_layer"].is_null() {
        line(&mut s, "context length", s_(&r["context_length"]));
        let swa = match (&r["sliding_window"], r["n_layer_swa"].as_u64().unwrap_or(0)) {
            (Value::Number(w), n) if n > 0 => {
                let total = r["n_layer"].as_u64().unwrap_or(0);
                format!(
                    " ({n} with sliding window {w}, {} global)",
                    total.saturating_sub(n)
                )
            }
            (Value::Number(w), _) => format!(" (sliding window {w})"),
            _ => String::new(),
        };
        line(&mut s, "layers", format!("{}{swa}", s_(&r["n_layer"])));
        line(
            &mut s,
            "attention",
            format!(
                "{} heads, {} kv heads, head dim {} (k) / {} (v)",
                s_(&r["n_head"]),
                s_(&r["n_head_kv"]),
                s_(&r["head_dim_k"]),
                s_(&r["head_dim_v"])
            ),
        );
        line(&mut s, "embedding", s_(&r["n_embd"]));
        line(&mut s, "feed-forward", s_(&r["n_ff"]));
        line(&mut s, "vocab", s_(&r["n_vocab"]));
    }
    let rope = &r["rope"];
    if !rope.is_null() && !rope["freq_base"].is_null() {
        let mut parts = vec![format!("{}", s_(&rope["type"]))];
        parts.push(format!("freq base {}", s_(&rope["freq_base"])));
        if !rope["freq_base_swa"].is_null() {
            parts.push(format!("local layers {}", s_(&rope["freq_base_swa"])));
        }
        if !rope["dimension_count"].is_null() {
            parts.push(format!("{} dims", s_(&rope["dimension_count"])));
        }
        if !rope["scaling_type"].is_null() {
            parts.push(format!(
                "scaling {} × {} (original context {})",
                s_(&rope["scaling_type"]),
                s_(&rope["scaling_factor"]),
                s_(&rope["original_context_length"])
            ));
        }
        line(&mut s, "rope", parts.join(", "));
    }
    let tok = &r["tokenizer"];
    if !tok.is_null() {
        let mut t = format!(
            "{} (pre {}), {} tokens",
            s_(&tok["model"]),
            s_(&tok["pre"]),
            s_(&tok["n_tokens"])
        );
        if !tok["n_merges"].is_null() {
            let _ = write!(t, ", {} merges", s_(&tok["n_merges"]));
        }
        let _ = write!(
            t,
            ", bos {}, eos {}",
            s_(&tok["bos_token_id"]),
            s_(&tok["eos_token_id"])
        );
        line(&mut s, "tokenizer", t);
    }
    line(
        &mut s,
        "chat template",
        if r["chat_template"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
        .into(),
    );
    let m = &r["memory"];
    if m.is_null() {
        line(
            &mut s,
            "memory",
            format!("unknown: {}", s_(&r["memory_error"])),
        );
    } else {
        let swa = match m["kv_cells_swa"].as_u64() {
            Some(n) if n > 0 => format!(" (sliding-window layers {n} cells)"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "memory at ctx {} ({}), KV cache {}{swa}, ubatch {}:",
            s_(&m["ctx"]),
            s_(&m["ctx_from"]),
            s_(&m["cache_type"]),
            s_(&m["n_ubatch"])
        );
        for (label, key) in [
            ("  weights", "weights"),
            ("  KV cache", "kv_cache"),
            ("  scratch", "scratch"),
            ("  total", "total"),
        ] {
            let _ = writeln!(s, "{label:<16}{:>12}", mib(m[key].as_u64().unwrap_or(0)));
        }
    }
    if let Some(list) = r["tensors"].as_array() {
        let _ = writeln!(
            s,
            "\n{:<40} {:<8} {:<24} {:>12} {:>12}",
            "tensor", "type", "shape", "offset", "bytes"
        );
        for t in list {
            let _ = writeln!(
                s,
                "{:<40} {:<8} {:<24} {:>12} {:>12}",
                s_(&t["name"]),
                s_(&t["type"]),
                s_(&t["shape"]),
                s_(&t["offset"]),
                s_(&t["bytes"])
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(rel)
    }

    fn args(file: &Path) -> Args {
        Args {
            file: file.display().to_string(),
            ctx_size: None,
            cache_type: CacheTypeArg::F16,
            ubatch: plan::DEFAULT_UBATCH,
            load_mode: LoadModeArg::Mmap,
            json: true,
            tensors: true,
        }
    }

    #[test]
    fn params_like_llama_cpp() {
        assert_eq!(format_params(268_098_176), "268.10 M");
        assert_eq!(format_params(1_777_088_000), "1.78 B");
        assert_eq!(format_params(1_314_432), "1.31 M");
        assert_eq!(format_params(0), "0.00 K");
    }

    #[test]
    fn report_of_a_tiny_gemma3() {
        let path = fixture("models/tiny-gemma3.q4_k_m.gguf");
        for mode in [LoadModeArg::Mmap, LoadModeArg::Mlock, LoadModeArg::None] {
            let g = Gguf::open(&path, mode.into()).unwrap();
            let mut a = args(&path);
            a.load_mode = mode;
            let r = report(&g, &path, &a);
            assert_eq!(r["load_mode"], LoadMode::from(mode).name());
            assert_eq!(r["architecture"], "gemma3");
            assert_eq!(r["file_type_name"], "Q4_K - Medium");
            assert_eq!(r["n_params"], 1314432);
            assert_eq!(r["n_tensors"], 41);
            assert_eq!(r["tensor_types"][0]["type"], "F32");
            assert_eq!(r["tensor_types"][0]["count"], 19);
            assert_eq!(
                (r["n_layer"].clone(), r["n_head_kv"].clone()),
                (json!(3), json!(2))
            );
            assert_eq!(
                (r["sliding_window"].clone(), r["n_layer_swa"].clone()),
                (json!(8), json!(2))
            );
            assert_eq!(r["rope"]["type"], "neox");
            assert_eq!(r["rope"]["freq_base_swa"], 10000.0);
            assert_eq!(r["tokenizer"]["model"], "llama");
            assert_eq!(r["memory"]["ctx"], 256);
            assert_eq!(r["memory"]["ctx_from"], "model context");
            assert_eq!(r["tensors"].as_array().unwrap().len(), 41);
            let text = render_text(&r);
            assert!(
                text.contains("file type       Q4_K - Medium (15)"),
                "{text}"
            );
            assert!(
                text.contains("layers          3 (2 with sliding window 8, 1 global)"),
                "{text}"
            );
        }
    }

    #[test]
    fn vocab_only_and_bad_files() {
        let path = fixture("tokenizer/llama-bpe.vocab.gguf");
        let g = Gguf::open(&path, LoadMode::Mmap).unwrap();
        let r = report(&g, &path, &args(&path));
        assert_eq!(r["n_tensors"], 0);
        assert_eq!(r["tokenizer"]["n_merges"], 280147);
        assert_eq!(r["chat_template"], false);
        assert_eq!(r["memory"]["weights"], 0);

        let a = Args {
            file: fixture("README.md").display().to_string(),
            ..args(&path)
        };
        let e = run(a).unwrap_err();
        assert!(format!("{e:#}").contains("not a GGUF file"), "{e:#}");
    }
}
