//! Request parameters shared by both APIs: Ollama's `options`, `keep_alive`,
//! `think`, `format`; OpenAI's sampling fields and `response_format`.

use std::sync::Arc;
use std::time::Duration;

use pistil_runtime::constraint::{Json, JsonSchema};
use serde_json::{Map, Value};

use crate::backend::{GenRequest, Think};
use crate::error::ApiError;

/// Largest `num_predict` / `max_tokens` taken literally; anything above means
/// "until the context is full" (the engine stops there anyway).
pub const MAX_PREDICT: i64 = 1_000_000;
/// Largest `num_ctx` accepted.
pub const MAX_CTX: i64 = 1 << 20;

/// How long a model stays loaded after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Never unload (negative values).
    Forever,
    /// Unload after this long idle (zero: right after the request).
    For(Duration),
}

impl KeepAlive {
    /// Parses Ollama's `keep_alive`: a number of seconds, or a Go duration
    /// string (`"5m"`, `"1h30m"`, `"0"`, `"-1"`, `"300ms"`); negative = forever.
    pub fn parse(v: &Value) -> Result<KeepAlive, String> {
        match v {
            Value::Number(n) => {
                let secs = n
                    .as_f64()
                    .ok_or_else(|| format!("keep_alive {n} is not a number"))?;
                Ok(KeepAlive::from_secs(secs))
            }
            Value::String(s) => KeepAlive::parse_str(s),
            Value::Null => Err("keep_alive is null".into()),
            other => Err(format!(
                "keep_alive must be a number of seconds or a duration like \"5m\", not {other}"
            )),
        }
    }

    /// Parses a keep-alive string (also the `--keep-alive` flag).
    pub fn parse_str(s: &str) -> Result<KeepAlive, String> {
        let t = s.trim();
        if let Ok(secs) = t.parse::<f64>() {
            return Ok(KeepAlive::from_secs(secs));
        }
        let secs = parse_go_duration(t).ok_or_else(|| {
            format!("keep_alive '{s}' is not a duration (examples: \"5m\", \"1h\", \"30s\", \"0\", \"-1\")")
        })?;
        Ok(KeepAlive::from_secs(secs))
    }

    fn from_secs(secs: f64) -> KeepAlive {
        if secs < 0.0 || !secs.is_finite() {
            KeepAlive::Forever
        } else {
            // Cap at ~100 years: SystemTime arithmetic stays in range.
            KeepAlive::For(Duration::from_secs_f64(secs.min(3.15e9)))
        }
    }

    /// The duration, `None` for forever.
    pub fn duration(self) -> Option<Duration> {
        match self {
            KeepAlive::Forever => None,
            KeepAlive::For(d) => Some(d),
        }
    }
}

/// Go's `time.ParseDuration`, in seconds: `[-+]?([0-9]*(\.[0-9]*)?unit)+`
/// with units ns, us, µs, ms, s, m, h.
fn parse_go_duration(s: &str) -> Option<f64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
    }
    Some(if neg { -total } else { total })
}

fn num_f32(opts: &Map<String, Value>, key: &str) -> Result<Option<f32>, ApiError> {
    match opts.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| Some(f as f32))
            .ok_or_else(|| ApiError::bad_param(key, format!("option {key} must be a number"))),
        Some(other) => Err(ApiError::bad_param(
            key,
            format!("option {key} must be a number, not {other}"),
        )),
    }
}

fn num_i64(opts: &Map<String, Value>, key: &str) -> Result<Option<i64>, ApiError> {
    match opts.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(Some(f as i64)),
                Some(f) if f > 9e15 => Ok(Some(i64::MAX)),
                _ => Err(ApiError::bad_param(
                    key,
                    format!("option {key} must be an integer, not {n}"),
                )),
            }
        }
        Some(other) => Err(ApiError::bad_param(
            key,
            format!("option {key} must be an integer, not {other}"),
        )),
    }
}

/// `stop` as a string or a list of strings.
pub fn parse_stop(v: &Value, key: &str) -> Result<Vec<String>, ApiError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(if s.is_empty() {
            vec![]
        } else {
            vec![s.clone()]
        }),
        Value::Array(a) => {
            let mut out = Vec::new();
            for x in a {
                match x {
                    Value::String(s) if !s.is_empty() => out.push(s.clone()),
                    Value::String(_) => {}
                    other => {
                        return Err(ApiError::bad_param(
                            key,
                            format!("{key} must hold strings, not {other}"),
                        ))
                    }
                }
            }
            if out.len() > 16 {
                return Err(ApiError::bad_param(
                    key,
                    format!("at most 16 {key} strings"),
                ));
            }
            Ok(out)
        }
        other => Err(ApiError::bad_param(
            key,
            format!("{key} must be a string or a list of strings, not {other}"),
        )),
    }
}

/// Maps `num_predict` / `max_tokens`: -1 and -2 (Ollama: unlimited / fill
/// the context) and 0 (Ollama treats it as unset) → `None`; other negatives
/// are refused; values above [`MAX_PREDICT`] are unlimited too (the context
/// ends them).
pub fn predict_limit(n: i64, key: &str) -> Result<Option<usize>, ApiError> {
    match n {
        -2..=0 => Ok(None),
        n if n < 0 => Err(ApiError::bad_param(
            key,
            format!(
                "{key} must be -1 (no limit), -2 (fill the context) or a positive number, not {n}"
            ),
        )),
        n if n > MAX_PREDICT => Ok(None),
        n => Ok(Some(n as usize)),
    }
}

/// Applies Ollama `options` to a request.
pub fn apply_ollama_options(req: &mut GenRequest, options: &Value) -> Result<(), ApiError> {
    let opts = match options {
        Value::Null => return Ok(()),
        Value::Object(m) => m,
        other => {
            return Err(ApiError::bad_param(
                "options",
                format!("options must be an object, not {other}"),
            ))
        }
    };
    let s = &mut req.sampling;
    if let Some(t) = num_f32(opts, "temperature")? {
        if t < 0.0 {
            return Err(ApiError::bad_param(
                "temperature",
                "temperature must be >= 0",
            ));
        }
        s.temperature = t;
    }
    if let Some(k) = num_i64(opts, "top_k")? {
        s.top_k = k.max(0) as usize;
    }
    if let Some(p) = num_f32(opts, "top_p")? {
        if !(0.0..=1.0).contains(&p) {
            return Err(ApiError::bad_param(
                "top_p",
                "top_p must be between 0 and 1",
            ));
        }
        s.top_p = p;
    }
    if let Some(p) = num_f32(opts, "min_p")? {
        if !(0.0..=1.0).contains(&p) {
            return Err(ApiError::bad_param(
                "min_p",
                "min_p must be between 0 and 1",
            ));
        }
        s.min_p = p;
    }
    if let Some(seed) = num_i64(opts, "seed")? {
        // llama.cpp: -1 = random.
        s.seed = (seed >= 0).then_some(seed as u64);
    }
    if let Some(r) = num_f32(opts, "repeat_penalty")? {
        if r <= 0.0 {
            return Err(ApiError::bad_param(
                "repeat_penalty",
                "repeat_penalty must be > 0",
            ));
        }
        s.repeat_penalty = r;
    }
    if let Some(n) = num_i64(opts, "repeat_last_n")? {
        s.repeat_last_n = match n {
            -1 => usize::MAX,
            n if n < 0 => {
                return Err(ApiError::bad_param(
                    "repeat_last_n",
                    "repeat_last_n must be -1 (the whole context), 0 (off) or positive",
                ))
            }
            n => n as usize,
        };
    }
    if let Some(p) = num_f32(opts, "presence_penalty")? {
        s.presence_penalty = p;
    }
    if let Some(p) = num_f32(opts, "frequency_penalty")? {
        s.frequency_penalty = p;
    }
    if let Some(n) = num_i64(opts, "num_predict")? {
        req.max_tokens = predict_limit(n, "num_predict")?;
    }
    if let Some(n) = num_i64(opts, "num_ctx")? {
        if n <= 0 || n > MAX_CTX {
            return Err(ApiError::bad_param(
                "num_ctx",
                format!("num_ctx must be between 1 and {MAX_CTX}, not {n}"),
            ));
        }
        req.num_ctx = Some(n as usize);
    }
    if let Some(stop) = opts.get("stop") {
        req.stop = parse_stop(stop, "stop")?;
    }
    for (k, _) in opts {
        if !KNOWN_OPTIONS.contains(&k.as_str()) {
            tracing::debug!("ignoring unknown option {k:?}");
        }
    }
    Ok(())
}

/// Options Ollama defines (the ones not used here are accepted and ignored:
/// threads, batch and memory settings come from the board profile).
const KNOWN_OPTIONS: &[&str] = &[
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "seed",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
    "num_predict",
    "num_ctx",
    "stop",
    "num_keep",
    "typical_p",
    "tfs_z",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "penalize_newline",
    "numa",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "low_vram",
    "vocab_only",
    "use_mmap",
    "use_mlock",
    "num_thread",
    "logits_all",
    "embedding_only",
];

/// Ollama's `think`: a boolean, or `"high"`/`"medium"`/`"low"` (thinking on).
pub fn parse_think(v: &Value) -> Result<Think, ApiError> {
    match v {
        Value::Null => Ok(Think::Default),
        Value::Bool(true) => Ok(Think::On),
        Value::Bool(false) => Ok(Think::Off),
        Value::String(s) if matches!(s.as_str(), "high" | "medium" | "low") => Ok(Think::On),
        other => Err(ApiError::bad_param(
            "think",
            format!("think must be true, false, \"high\", \"medium\" or \"low\", not {other}"),
        )),
    }
}

/// Ollama's `format`: `""`/absent, `"json"`, or a JSON schema object.
pub fn parse_format(v: Option<&Json>) -> Result<Option<Arc<JsonSchema>>, ApiError> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.is_empty() => Ok(None),
        Some(Json::String(s)) if s == "json" => Ok(Some(Arc::new(JsonSchema::any_object()))),
        Some(Json::String(s)) => Err(ApiError::bad_param(
            "format",
            format!("format must be \"json\" or a JSON schema object, not \"{s}\""),
        )),
        Some(schema @ Json::Object(_)) => JsonSchema::compile(schema)
            .map(|s| Some(Arc::new(s)))
            .map_err(|e| ApiError::bad_param("format", format!("format: {e}"))),
        Some(other) => Err(ApiError::bad_param(
            "format",
            format!(
                "format must be \"json\" or a JSON schema object, not {}",
                other.type_name()
            ),
        )),
    }
}

/// OpenAI's `response_format`: `{"type": "text"}`, `{"type": "json_object"}`
/// or `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`.
pub fn parse_response_format(v: Option<&Json>) -> Result<Option<Arc<JsonSchema>>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    if matches!(v, Json::Null) {
        return Ok(None);
    }
    let bad = |m: String| ApiError::bad_param("response_format", m);
    let ty = v
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("response_format must be an object with a \"type\"".into()))?;
    match ty {
        "text" => Ok(None),
        "json_object" => Ok(Some(Arc::new(JsonSchema::any_object()))),
        "json_schema" => {
            let js = v
                .get("json_schema")
                .ok_or_else(|| bad("response_format.json_schema is missing".into()))?;
            match js.get("schema") {
                // No schema: any JSON object.
                None => Ok(Some(Arc::new(JsonSchema::any_object()))),
                Some(s) => JsonSchema::compile(s)
                    .map(|s| Some(Arc::new(s)))
                    .map_err(|e| bad(format!("response_format.json_schema.schema: {e}"))),
            }
        }
        other => Err(bad(format!(
            "response_format.type must be text, json_object or json_schema, not \"{other}\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Prompt;
    use serde_json::json;

    #[test]
    fn keep_alive_forms() {
        let d = |s: u64| KeepAlive::For(Duration::from_secs(s));
        assert_eq!(KeepAlive::parse(&json!("5m")).unwrap(), d(300));
        assert_eq!(KeepAlive::parse(&json!("1h30m")).unwrap(), d(5400));
        assert_eq!(KeepAlive::parse(&json!("0")).unwrap(), d(0));
        assert_eq!(KeepAlive::parse(&json!(0)).unwrap(), d(0));
        assert_eq!(KeepAlive::parse(&json!(120)).unwrap(), d(120));
        assert_eq!(KeepAlive::parse(&json!(-1)).unwrap(), KeepAlive::Forever);
        assert_eq!(KeepAlive::parse(&json!("-1")).unwrap(), KeepAlive::Forever);
        assert_eq!(KeepAlive::parse(&json!("-1m")).unwrap(), KeepAlive::Forever);
        assert_eq!(
            KeepAlive::parse(&json!("300ms")).unwrap(),
            KeepAlive::For(Duration::from_millis(300))
        );
        assert_eq!(KeepAlive::parse(&json!("1.5h")).unwrap(), d(5400));
        assert!(KeepAlive::parse(&json!("5 minutes")).is_err());
        assert!(KeepAlive::parse(&json!("m")).is_err());
        assert!(KeepAlive::parse(&json!(true)).is_err());
    }

    #[test]
    fn ollama_options() {
        let mut r = GenRequest::new(Prompt::Chat(vec![]));
        apply_ollama_options(
            &mut r,
            &json!({"temperature": 0, "top_k": 20, "top_p": 0.9, "min_p": 0.0, "seed": 42,
                     "num_predict": 100, "num_ctx": 1024, "stop": ["\n", "user:"],
                     "repeat_penalty": 1.1, "repeat_last_n": -1, "presence_penalty": 1.5,
                     "frequency_penalty": 1.0, "mirostat": 1, "num_thread": 8}),
        )
        .unwrap();
        assert_eq!(r.sampling.temperature, 0.0);
        assert_eq!(r.sampling.top_k, 20);
        assert_eq!(r.sampling.seed, Some(42));
        assert_eq!(r.max_tokens, Some(100));
        assert_eq!(r.num_ctx, Some(1024));
        assert_eq!(r.stop, vec!["\n", "user:"]);
        assert_eq!(r.sampling.repeat_last_n, usize::MAX);

        for (opts, field) in [
            (json!({"temperature": "hot"}), "temperature"),
            (json!({"num_predict": -3}), "num_predict"),
            (json!({"num_predict": 1.5}), "num_predict"),
            (json!({"num_ctx": 0}), "num_ctx"),
            (json!({"top_p": 2}), "top_p"),
            (json!({"stop": 5}), "stop"),
        ] {
            let e = apply_ollama_options(&mut r, &opts).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(field), "{opts}: {}", e.message);
            assert!(e.message.contains(field), "{}", e.message);
        }
        assert!(apply_ollama_options(&mut r, &json!([1])).is_err());

        let mut r = GenRequest::new(Prompt::Chat(vec![]));
        apply_ollama_options(&mut r, &json!({"num_predict": -1})).unwrap();
        assert_eq!(r.max_tokens, None);
        apply_ollama_options(&mut r, &json!({"num_predict": 1e12})).unwrap();
        assert_eq!(r.max_tokens, None);
        apply_ollama_options(&mut r, &json!({"seed": -1, "top_k": -5})).unwrap();
        assert_eq!((r.sampling.seed, r.sampling.top_k), (None, 0));
    }

    #[test]
    fn formats() {
        assert!(parse_format(None).unwrap().is_none());
        assert!(parse_format(Some(&Json::String(String::new())))
            .unwrap()
            .is_none());
        let j = parse_format(Some(&Json::String("json".into())))
            .unwrap()
            .unwrap();
        assert_eq!(j.min_text(), b"{}");
        let schema: Json = serde_json::from_str(
            r#"{"type":"object","properties":{"age":{"type":"integer"}},"required":["age"]}"#,
        )
        .unwrap();
        let s = parse_format(Some(&schema)).unwrap().unwrap();
        assert_eq!(s.min_text(), br#"{"age":0}"#);
        let e = parse_format(Some(&Json::String("yaml".into()))).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("format"));
        let bad: Json = serde_json::from_str(r#"{"type":"string","pattern":"a"}"#).unwrap();
        assert!(parse_format(Some(&bad))
            .unwrap_err()
            .message
            .contains("pattern"));

        let rf: Json = serde_json::from_str(
            r#"{"type":"json_schema","json_schema":{"name":"x","strict":true,
                "schema":{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"],
                "additionalProperties":false}}}"#,
        )
        .unwrap();
        let s = parse_response_format(Some(&rf)).unwrap().unwrap();
        assert_eq!(s.min_text(), br#"{"ok":true}"#);
        let rf: Json = serde_json::from_str(r#"{"type":"json_object"}"#).unwrap();
        assert!(parse_response_format(Some(&rf)).unwrap().is_some());
        let rf: Json = serde_json::from_str(r#"{"type":"text"}"#).unwrap();
        assert!(parse_response_format(Some(&rf)).unwrap().is_none());
        let rf: Json = serde_json::from_str(r#"{"type":"xml"}"#).unwrap();
        assert!(parse_response_format(Some(&rf)).is_err());
    }

    #[test]
    fn think_values() {
        assert_eq!(parse_think(&json!(true)).unwrap(), Think::On);
        assert_eq!(parse_think(&json!(false)).unwrap(), Think::Off);
        assert_eq!(parse_think(&json!("high")).unwrap(), Think::On);
        assert!(parse_think(&json!("maybe")).is_err());
    }
}
