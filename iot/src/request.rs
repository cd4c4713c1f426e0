//! The JSON request shared by the pipe mode (`pistil run --jsonl`) and the
//! MQTT bridge:
//!
//! ```json
//! {"id": 7, "prompt": "Is 21 °C warm?", "system": "Answer in one sentence.",
//!  "options": {"temperature": 0, "num_predict": 64}, "think": false,
//!  "format": {"type": "object", "properties": {"warm": {"type": "boolean"}}}}
//! ```
//!
//! Exactly one of `prompt` (one user message) or `messages` (a conversation:
//! `[{"role": "user", "content": "…"}, …]`). `options` uses Ollama's names.
//! `think`: `true`/absent = the model decides, `false` = no thought, a number
//! = a thinking budget in tokens. `format`: `"json"` (any JSON object) or a
//! JSON schema. `id` is any JSON value and is echoed back. Unknown fields are
//! refused, so a typo never silently changes the request.

use std::sync::Arc;

use pistil_runtime::constraint::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::assistant::{Ask, AskPrompt, Options, Role, Think, Turn};

/// Why a request line/message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("bad request: {0}")]
    Parse(String),
    /// Well-formed JSON that does not make a request.
    #[error("bad request: {0}")]
    Invalid(String),
}

/// The wire shape; `reply_to` only means something to the MQTT bridge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<WireMessage>>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    options: Option<Options>,
    #[serde(default)]
    think: Option<Value>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    reply_to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMessage {
    role: Role,
    content: String,
    #[serde(default)]
    thinking: Option<String>,
}

/// A parsed request.
#[derive(Debug, Clone)]
pub struct JsonRequest {
    /// Echoed back in every reply/event (`null` if absent).
    pub id: Value,
    /// What to ask.
    pub ask: Ask,
    /// MQTT: the topic to answer on.
    pub reply_to: Option<String>,
    /// The request said whether to think (else a front end's default applies).
    pub think_set: bool,
}

/// What a front end fills in where a request leaves things unset (from its
/// command line: `--system`, `--think`, sampling flags).
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// System message for requests without one.
    pub system: Option<String>,
    /// Thinking for requests that do not say.
    pub think: Think,
    /// Sampling options for the keys a request does not set.
    pub options: Options,
}

impl Defaults {
    /// Fills in `req`'s unset fields.
    pub fn apply(&self, req: &mut JsonRequest) {
        if req.ask.system.is_none() {
            req.ask.system = self.system.clone();
        }
        if !req.think_set {
            req.ask.think = self.think;
        }
        req.ask.options = req.ask.options.or(&self.options);
    }

    /// A plain-text question with these defaults.
    pub fn ask(&self, text: &str) -> Ask {
        Ask {
            prompt: AskPrompt::Text(text.to_string()),
            system: self.system.clone(),
            options: self.options.clone(),
            think: self.think,
            format: None,
        }
    }
}

/// The `id` of a request that did not parse, if one can be read from it
/// (so even an error reply can be matched to its request).
pub fn salvage_id(text: &str) -> Value {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null)
}

/// Parses one request.
pub fn parse_request(text: &str) -> Result<JsonRequest, RequestError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let wire: Wire = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            RequestError::Parse(e.into_inner().to_string())
        } else {
            RequestError::Parse(format!("{path}: {}", e.into_inner()))
        }
    })?;
    de.end().map_err(|e| RequestError::Parse(e.to_string()))?;
    let prompt = match (wire.prompt, wire.messages) {
        (Some(_), Some(_)) => {
            return Err(RequestError::Invalid(
                "give either \"prompt\" or \"messages\", not both".into(),
            ))
        }
        (None, None) => {
            return Err(RequestError::Invalid(
                "missing \"prompt\" (a string) or \"messages\" (a list)".into(),
            ))
        }
        (Some(p), None) => AskPrompt::Text(p),
        (None, Some(m)) => {
            if m.is_empty() {
                return Err(RequestError::Invalid("\"messages\" is empty".into()));
            }
            AskPrompt::Chat(
                m.into_iter()
                    .map(|w| Turn {
                        role: w.role,
                        content: w.content,
                        thinking: w.thinking,
                    })
                    .collect(),
            )
        }
    };
    let think_set = !matches!(wire.think, None | Some(Value::Null));
    let think = parse_think(wire.think.as_ref())?;
    let format = match &wire.format {
        None | Some(Value::Null) => None,
        Some(f) => Some(parse_format(f)?),
    };
    Ok(JsonRequest {
        id: wire.id.unwrap_or(Value::Null),
        ask: Ask {
            prompt,
            system: wire.system,
            options: wire.options.unwrap_or_default(),
            think,
            format,
        },
        reply_to: wire.reply_to,
        think_set,
    })
}

/// `think`: absent/`true` = model decides, `false` = off, an integer = budget,
/// and Ollama's strings `"high"`/`"medium"`/`"low"` = model decides.
pub fn parse_think(v: Option<&Value>) -> Result<Think, RequestError> {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(true)) => Ok(Think::Default),
        Some(Value::Bool(false)) => Ok(Think::Off),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => Ok(Think::Off),
            Some(b) => Ok(Think::Budget(usize::try_from(b).unwrap_or(usize::MAX))),
            None => Err(RequestError::Invalid(format!(
                "\"think\" must be true, false or a token budget (a whole number ≥ 0), not {n}"
            ))),
        },
        Some(Value::String(s)) if matches!(s.as_str(), "high" | "medium" | "low") => {
            Ok(Think::Default)
        }
        Some(other) => Err(RequestError::Invalid(format!(
            "\"think\" must be true, false or a token budget, not {other}"
        ))),
    }
}

/// `format`: `"json"` = any JSON object, an object = a JSON schema.
pub fn parse_format(v: &Value) -> Result<Arc<JsonSchema>, RequestError> {
    match v {
        Value::String(s) if s == "json" => Ok(Arc::new(JsonSchema::any_object())),
        Value::Object(_) => JsonSchema::from_value(v)
            .map(Arc::new)
            .map_err(|e| RequestError::Invalid(format!("\"format\": {e}"))),
        other => Err(RequestError::Invalid(format!(
            "\"format\" must be \"json\" or a JSON schema object, not {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_with_everything() {
        let r = parse_request(
            r#"{"id":"a1","prompt":"hi","system":"be brief","options":{"temperature":0,"num_predict":5,"seed":3},"think":false,"format":"json","reply_to":"x/y"}"#,
        )
        .unwrap();
        assert_eq!(r.id, Value::from("a1"));
        assert_eq!(r.ask.prompt, AskPrompt::Text("hi".into()));
        assert_eq!(r.ask.system.as_deref(), Some("be brief"));
        assert_eq!(r.ask.options.temperature, Some(0.0));
        assert_eq!(r.ask.max_tokens(), Some(5));
        assert_eq!(r.ask.think, Think::Off);
        assert!(r.ask.format.is_some());
        assert_eq!(r.reply_to.as_deref(), Some("x/y"));
        let msgs = r.ask.messages();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].role, Role::System);
    }

    #[test]
    fn messages_and_think_budget() {
        let r = parse_request(
            r#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"q"},{"role":"assistant","content":"a","thinking":"t"},{"role":"user","content":"q2"}],"think":32,"system":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(r.id, Value::Null);
        assert_eq!(r.ask.think, Think::Budget(32));
        let msgs = r.ask.messages();
        // The chat starts with a system message: the `system` field is not added.
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[2].thinking.as_deref(), Some("t"));
    }

    #[test]
    fn refusals_name_the_problem() {
        let cases = [
            ("not json", "expected"),
            ("{}", "missing \"prompt\""),
            (r#"{"prompt":"a","messages":[]}"#, "not both"),
            (r#"{"messages":[]}"#, "empty"),
            (r#"{"prompt":"a","options":{"temprature":1}}"#, "temprature"),
            (r#"{"prompt":"a","promt":1}"#, "promt"),
            (r#"{"prompt":"a","think":-1}"#, "think"),
            (r#"{"prompt":"a","format":"xml"}"#, "format"),
            (
                r#"{"prompt":"a","format":{"type":"string","pattern":"a+"}}"#,
                "pattern",
            ),
            (r#"{"messages":[{"role":"robot","content":"x"}]}"#, "robot"),
            (r#"{"prompt":5}"#, "prompt: invalid type"),
            (
                r#"{"prompt":"a","options":{"top_k":-1}}"#,
                "options.top_k: invalid value",
            ),
            (r#"{"prompt":"a"} x"#, "trailing characters"),
        ];
        for (text, needle) in cases {
            let e = parse_request(text).expect_err(text).to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn negative_num_predict_means_no_limit() {
        let r = parse_request(r#"{"prompt":"a","options":{"num_predict":-1}}"#).unwrap();
        assert_eq!(r.ask.max_tokens(), None);
    }

    #[test]
    fn defaults_fill_only_what_is_unset() {
        let d = Defaults {
            system: Some("sys".into()),
            think: Think::Off,
            options: Options {
                temperature: Some(0.0),
                num_predict: Some(10),
                ..Options::default()
            },
        };
        let mut r = parse_request(r#"{"prompt":"a","options":{"num_predict":3}}"#).unwrap();
        d.apply(&mut r);
        assert_eq!(r.ask.system.as_deref(), Some("sys"));
        assert_eq!(r.ask.think, Think::Off);
        assert_eq!(r.ask.options.temperature, Some(0.0));
        assert_eq!(r.ask.options.num_predict, Some(3));
        let mut r = parse_request(r#"{"prompt":"a","system":"mine","think":true}"#).unwrap();
        d.apply(&mut r);
        assert_eq!(r.ask.system.as_deref(), Some("mine"));
        assert_eq!(r.ask.think, Think::Default);
    }

    #[test]
    fn salvaged_ids() {
        assert_eq!(salvage_id(r#"{"id":9,"prompt":3}"#), Value::from(9));
        assert_eq!(salvage_id("garbage"), Value::Null);
    }
}
