//! Errors as each API writes them.
//!
//! - Ollama (`/api/*`, `/`, `/health`): `{"error": "message"}`.
//! - OpenAI (`/v1/*`): `{"error": {"message", "type", "param", "code"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::backend::BackendError;

/// Which API's error shape to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `{"error": "..."}`.
    Ollama,
    /// `{"error": {"message": ...}}`.
    OpenAi,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// OpenAI's `param`: the request field at fault, if known.
    pub param: Option<String>,
    /// OpenAI's `code` (`model_not_found`, ...).
    pub code: Option<&'static str>,
    /// The shape.
    pub flavor: Flavor,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
            flavor: Flavor::Ollama,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400 naming the field at fault.
    pub fn bad_param(param: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            param: Some(param.to_string()),
            ..ApiError::bad_request(message)
        }
    }

    /// 404 for a model that is not available.
    pub fn model_not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            code: Some("model_not_found"),
            param: Some("model".into()),
            ..ApiError::new(StatusCode::NOT_FOUND, message)
        }
    }

    /// 503: the queue is full.
    pub fn busy() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server busy, please try again. maximum pending requests exceeded",
        )
    }

    /// 500 with a message.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The same error in another API's shape.
    pub fn flavor(mut self, flavor: Flavor) -> ApiError {
        self.flavor = flavor;
        self
    }

    /// OpenAI's `type` for this status.
    fn openai_type(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            404 => "invalid_request_error",
            413 | 400 | 422 => "invalid_request_error",
            429 | 503 => "server_overloaded",
            _ => "server_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        match self.flavor {
            Flavor::Ollama => json!({ "error": self.message }),
            Flavor::OpenAi => json!({
                "error": {
                    "message": self.message,
                    "type": self.openai_type(),
                    "param": self.param,
                    "code": self.code,
                }
            }),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut r = (
            self.status,
            [(
                axum::http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )],
            body,
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> ApiError {
        let status = match &e {
            BackendError::PromptTooLong { .. } | BackendError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            // Ollama answers 500 for "model requires more system memory" too.
            BackendError::DoesNotFit(_) | BackendError::Load { .. } | BackendError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut a = ApiError::new(status, e.to_string());
        if matches!(e, BackendError::PromptTooLong { .. }) {
            a.code = Some("context_length_exceeded");
            a.param = Some("messages".into());
        }
        a
    }
}

/// Reads a JSON body into `T`, naming the field at fault on error.
pub fn parse_body<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    flavor: Flavor,
) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("missing request body").flavor(flavor));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let syntax = matches!(
            inner.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        );
        let path = if syntax || path == "?" {
            String::new()
        } else {
            path
        };
        let msg = if path.is_empty() || path == "." {
            format!("invalid JSON body: {inner}")
        } else {
            format!("invalid value for '{path}': {inner}")
        };
        let mut a = ApiError::bad_request(msg).flavor(flavor);
        if !(path.is_empty() || path == ".") {
            a.param = Some(path);
        }
        a
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct R {
        model: String,
        #[serde(default)]
        stream: Option<bool>,
    }

    #[test]
    fn shapes_and_field_names() {
        let e = parse_body::<R>(br#"{"model":"m","stream":"yes"}"#, Flavor::Ollama).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("'stream'"), "{}", e.message);
        assert_eq!(e.body()["error"].as_str(), Some(e.message.as_str()));

        let e = parse_body::<R>(b"{not json", Flavor::OpenAi).unwrap_err();
        assert!(e.message.starts_with("invalid JSON body"), "{}", e.message);
        let b = e.body();
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert!(b["error"]["message"].as_str().is_some());
        assert!(b["error"]["param"].is_null());

        let e = parse_body::<R>(b"  ", Flavor::Ollama).unwrap_err();
        assert_eq!(e.message, "missing request body");

        let e = ApiError::from(BackendError::PromptTooLong {
            prompt: 300,
            n_ctx: 256,
        })
        .flavor(Flavor::OpenAi);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.body()["error"]["code"], "context_length_exceeded");
    }
}
