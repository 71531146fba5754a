//! The sim's error type: every failure the API reports is `{"message": ...}` with a status,
//! optionally with `data` (policy test failures). Console edits return the same type, so a test
//! sees the message a human would have seen in the admin console.
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An API error as the simulated tailnet reports it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (HTTP {status})")]
pub struct SimError {
    /// The HTTP status the API answers with.
    pub status: u16,
    /// The API's `message`.
    pub message: String,
    /// The API's `data` (policy test failures), when present.
    pub data: Option<Value>,
}

impl SimError {
    pub fn new(status: u16, message: impl Into<String>) -> SimError {
        SimError {
            status,
            message: message.into(),
            data: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> SimError {
        SimError::new(400, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> SimError {
        SimError::new(401, message)
    }

    pub fn not_found(message: impl Into<String>) -> SimError {
        SimError::new(404, message)
    }

    pub fn with_data(mut self, data: Value) -> SimError {
        self.data = Some(data);
        self
    }

    /// The JSON body the API sends for this error.
    pub fn body(&self) -> Value {
        match &self.data {
            Some(data) => json!({"message": self.message, "data": data}),
            None => json!({"message": self.message}),
        }
    }
}

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}

/// Result type of the sim's handlers and console edits.
pub type SimResult<T> = Result<T, SimError>;

/// Parses a JSON request body, answering 400 `{"message"}` (not axum's plain-text rejection)
/// when it is malformed. An empty body parses as `{}` so "all fields omitted" works.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> SimResult<T> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| SimError::bad_request(format!("invalid JSON request body: {e}")))
}

/// Middleware making sure every error the sim answers is `{"message": ...}`, including axum's
/// own plain-text rejections (a malformed query string, an undecodable path segment).
pub(crate) async fn json_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let dropped = response
        .extensions()
        .get::<super::faults::DroppedConnection>()
        .is_some();
    if status.as_u16() < 400 || is_json || dropped {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut rewrapped = (status, Json(json!({ "message": message }))).into_response();
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            rewrapped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewrapped
}
