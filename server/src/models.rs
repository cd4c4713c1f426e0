//! Which models a request may name, and what the API says about them.
//!
//! A request's `model` is resolved in the handler (a file-existence check,
//! no loading): the loaded model's name, a `-m` path's name, a catalog name
//! whose file is cached (`gemma3:270m`, also as `gemma3:270m:latest` /
//! `gemma3:270m-latest`), or a path to a `.gguf` file. A catalog model that
//! is not downloaded is "not found, try pulling it first", as Ollama says.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use pistil_runtime::catalog::{self, CatalogError, Resolved};
use pistil_runtime::gguf::{file_type_name, Gguf, LoadMode, MetaValue};
use serde_json::{Map, Value};

use crate::backend::{ModelDetails, ModelInfo, ModelSpec};

/// Why a model name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Known to the catalog but not downloaded.
    #[error("model \"{0}\" not found, try pulling it first")]
    NotPulled(String),
    /// Not a model this server knows.
    #[error("model \"{name}\" not found; available: {}", known.join(", "))]
    Unknown {
        /// What was asked for.
        name: String,
        /// Names that would work.
        known: Vec<String>,
    },
    /// No model named and none to default to.
    #[error("no model given and no default model; name one in the \"model\" field")]
    NoDefault,
}

/// Where models come from.
pub trait ModelSource: Send + Sync + 'static {
    /// The model `name` names (`""`: the default).
    fn resolve(&self, name: &str, loaded: Option<&ModelSpec>) -> Result<ModelSpec, ResolveError>;
    /// The models available without a download (for `/api/tags`, `/v1/models`).
    fn list(&self) -> Vec<ModelInfo>;
    /// What the API shows about `spec` (may read the file's header: blocking).
    fn describe(&self, spec: &ModelSpec) -> Result<ModelInfo, String>;
}

/// Models from the catalog's cache, plus files named on the command line.
#[derive(Debug)]
pub struct CatalogModels {
    /// The model requests without a `model` get.
    default: Mutex<Option<String>>,
    /// Files given by path (`-m ./x.gguf`), by name.
    files: Mutex<Vec<ModelSpec>>,
}

impl CatalogModels {
    /// A source whose default is `default` (a catalog name or a path).
    pub fn new(default: Option<String>) -> CatalogModels {
        CatalogModels {
            default: Mutex::new(default),
            files: Mutex::new(Vec::new()),
        }
    }

    /// Registers a file under `name` (the `-m` model).
    pub fn add_file(&self, spec: ModelSpec) {
        let mut f = self.files.lock().unwrap_or_else(|p| p.into_inner());
        f.retain(|s| s.name != spec.name);
        f.push(spec);
    }

    fn files(&self) -> Vec<ModelSpec> {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The name a file is shown under: its stem (`tiny-qwen2.q8_0`).
pub fn file_model_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// `name` without a trailing `:latest` / `-latest` (Ollama's default tag).
fn strip_latest(name: &str) -> &str {
    name.strip_suffix(":latest")
        .or_else(|| name.strip_suffix("-latest"))
        .unwrap_or(name)
}

impl ModelSource for CatalogModels {
    fn resolve(&self, name: &str, loaded: Option<&ModelSpec>) -> Result<ModelSpec, ResolveError> {
        let name = name.trim();
        if name.is_empty() {
            if let Some(l) = loaded {
                return Ok(l.clone());
            }
            let d = self
                .default
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .ok_or(ResolveError::NoDefault)?;
            return self.resolve(&d, None);
        }
        let bare = strip_latest(name);
        if let Some(l) = loaded.filter(|l| l.name == name || l.name == bare) {
            return Ok(l.clone());
        }
        if let Some(f) = self
            .files()
            .into_iter()
            .find(|f| f.name == name || f.name == bare)
        {
            return Ok(f);
        }
        // A path to a GGUF file.
        let p = Path::new(name);
        if name.ends_with(".gguf") && p.is_file() {
            return Ok(ModelSpec {
                name: file_model_name(p),
                path: p.to_path_buf(),
            });
        }
        for candidate in [name, bare] {
            match catalog::find(candidate) {
                Ok(Some(entry)) => {
                    return match catalog::resolve(&entry.name) {
                        Ok(Resolved::Path(path)) => Ok(ModelSpec {
                            name: entry.name.clone(),
                            path,
                        }),
                        _ => Err(ResolveError::NotPulled(entry.name.clone())),
                    };
                }
                Ok(None) => {}
                Err(CatalogError::Invalid(e)) => {
                    tracing::error!("model catalog: {e}");
                }
                Err(_) => {}
            }
        }
        let mut known: Vec<String> = self.list().into_iter().map(|m| m.name).collect();
        if let Some(l) = loaded {
            if !known.contains(&l.name) {
                known.push(l.name.clone());
            }
        }
        Err(ResolveError::Unknown {
            name: name.to_string(),
            known,
        })
    }

    fn list(&self) -> Vec<ModelInfo> {
        let mut out = Vec::new();
        if let Ok(cat) = catalog::catalog() {
            for e in &cat.models {
                let path = e.path();
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                out.push(ModelInfo {
                    name: e.name.clone(),
                    path,
                    size: meta.len(),
                    digest: e
                        .sha256
                        .clone()
                        .unwrap_or_else(|| pseudo_digest(&e.path(), &meta)),
                    modified: meta.modified().ok(),
                    details: ModelDetails {
                        parent_model: String::new(),
                        format: "gguf".into(),
                        family: e.architecture.clone(),
                        families: vec![e.architecture.clone()],
                        parameter_size: parameter_size(e.parameters),
                        quantization_level: e.quant.clone(),
                    },
                    capabilities: capabilities(e.thinks),
                    ..ModelInfo::default()
                });
            }
        }
        for f in self.files() {
            if out.iter().any(|m| m.path == f.path) {
                continue;
            }
            match describe_file(&f) {
                Ok(info) => out.push(info),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        out
    }

    fn describe(&self, spec: &ModelSpec) -> Result<ModelInfo, String> {
        let mut info = describe_file(spec)?;
        if let Ok(Some(e)) = catalog::find(&spec.name) {
            if let Some(h) = &e.sha256 {
                info.digest = h.clone();
            }
        }
        Ok(info)
    }
}

/// `capabilities` of `/api/show`.
pub fn capabilities(thinks: bool) -> Vec<String> {
    let mut c = vec!["completion".to_string()];
    if thinks {
        c.push("thinking".into());
    }
    c
}

/// `1.8B`, `268M` (Ollama's style).
pub fn parameter_size(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else if n >= 1_000_000 {
        format!("{}M", (n as f64 / 1e6).round() as u64)
    } else {
        format!("{n}")
    }
}

/// A sha256-looking identity of a file that has no published checksum:
/// sha256 of its path, size and mtime (hashing gigabytes for a listing is not
/// an option on a Pi).
fn pseudo_digest(path: &Path, meta: &std::fs::Metadata) -> String {
    use sha2::{Digest, Sha256};
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(path.to_string_lossy().as_bytes());
    h.update(meta.len().to_le_bytes());
    h.update(mtime.to_le_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a GGUF's header into a [`ModelInfo`].
pub fn describe_file(spec: &ModelSpec) -> Result<ModelInfo, String> {
    let gguf = Gguf::open_with(
        &spec.path,
        pistil_runtime::gguf::OpenOptions {
            mode: LoadMode::Mmap,
            prefetch: false,
        },
    )
    .map_err(|e| format!("{}: {e}", spec.path.display()))?;
    let meta =
        std::fs::metadata(&spec.path).map_err(|e| format!("{}: {e}", spec.path.display()))?;
    Ok(describe_gguf(spec, &gguf, &meta))
}

/// A [`ModelInfo`] from an open GGUF.
pub fn describe_gguf(spec: &ModelSpec, gguf: &Gguf, meta: &std::fs::Metadata) -> ModelInfo {
    let arch = gguf.architecture().unwrap_or("unknown").to_string();
    let ftype = gguf
        .get_u32("general.file_type")
        .ok()
        .flatten()
        .and_then(file_type_name)
        .map(|n| quant_label(&n))
        .unwrap_or_else(|| "unknown".into());
    let context_length = gguf
        .get_u64(&format!("{arch}.context_length"))
        .ok()
        .flatten()
        .unwrap_or(0);
    let template = gguf
        .get_str("tokenizer.chat_template")
        .ok()
        .flatten()
        .unwrap_or("")
        .to_string();
    let thinks = gguf
        .get_array("tokenizer.ggml.tokens")
        .ok()
        .flatten()
        .and_then(|a| a.strs().map(|mut it| it.any(|t| t == "<think>")))
        .unwrap_or(false);
    let mut model_info = Map::new();
    for (k, v) in gguf.metadata() {
        let value = match v {
            MetaValue::Array(a) => {
                // Vocabularies and merges are huge: shown empty, as Ollama does.
                if a.len() > 64 {
                    Value::Array(Vec::new())
                } else {
                    Value::Array(a.iter().map(|x| meta_json(&x)).collect())
                }
            }
            other => meta_json(&other),
        };
        model_info.insert(k.to_string(), value);
    }
    model_info.insert(
        "general.parameter_count".into(),
        Value::from(gguf.n_params()),
    );
    ModelInfo {
        name: spec.name.clone(),
        path: spec.path.clone(),
        size: meta.len(),
        digest: pseudo_digest(&spec.path, meta),
        modified: meta.modified().ok(),
        details: ModelDetails {
            parent_model: String::new(),
            format: "gguf".into(),
            family: arch.clone(),
            families: vec![arch],
            parameter_size: parameter_size(gguf.n_params()),
            quantization_level: ftype,
        },
        context_length,
        n_ctx: 0,
        template,
        capabilities: capabilities(thinks),
        model_info,
        memory_bytes: 0,
    }
}

/// `Q4_K - Medium` → `Q4_K_M` (Ollama's labels).
fn quant_label(name: &str) -> String {
    let n = name.split(" - ").collect::<Vec<_>>();
    match n.as_slice() {
        [base, "Medium"] => format!("{base}_M"),
        [base, "Small"] => format!("{base}_S"),
        [base, "Large"] => format!("{base}_L"),
        [base, ..] => base.replace("all ", ""),
        [] => name.to_string(),
    }
}

fn meta_json(v: &MetaValue<'_>) -> Value {
    if let Some(b) = v.as_bool() {
        return Value::Bool(b);
    }
    if let Some(s) = v.as_str() {
        return Value::String(s.to_string());
    }
    if let Some(i) = v.as_i64() {
        return Value::from(i);
    }
    if let Some(u) = v.as_u64() {
        return Value::from(u);
    }
    if let Some(f) = v.as_f64() {
        return serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    }
    Value::Null
}

/// The cache directory models are pulled into (for messages).
pub fn models_dir() -> PathBuf {
    catalog::models_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(quant_label("Q4_K - Medium"), "Q4_K_M");
        assert_eq!(quant_label("Q8_0"), "Q8_0");
        assert_eq!(quant_label("all F32"), "F32");
        assert_eq!(quant_label("IQ4_XS - 4.25 bpw"), "IQ4_XS");
        assert_eq!(parameter_size(1_777_088_000), "1.8B");
        assert_eq!(parameter_size(268_098_176), "268M");
    }

    #[test]
    fn resolution() {
        let src = CatalogModels::new(None);
        let spec = ModelSpec {
            name: "mine".into(),
            path: "/nonexistent/mine.gguf".into(),
        };
        src.add_file(spec.clone());
        assert_eq!(src.resolve("mine", None).unwrap(), spec);
        assert_eq!(src.resolve("mine:latest", None).unwrap(), spec);
        assert_eq!(src.resolve("", Some(&spec)).unwrap(), spec);
        assert_eq!(src.resolve("", None).unwrap_err(), ResolveError::NoDefault);
        match src.resolve("nope:1b", None).unwrap_err() {
            ResolveError::Unknown { name, .. } => assert_eq!(name, "nope:1b"),
            e => panic!("{e}"),
        }
    }
}
