//! Strict HuJSON (JSON with comments and trailing commas, nothing else).

/// A HuJSON syntax error with a 1-based position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct HujsonError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses HuJSON strictly into a JSON value. INTERFACE STUB: the policy worker implements it.
pub fn parse_strict(text: &str) -> Result<serde_json::Value, HujsonError> {
    serde_json::from_str(text).map_err(|e| HujsonError {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}
