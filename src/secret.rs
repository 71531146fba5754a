//! A redacting wrapper for secret strings (API keys, OAuth secrets, access tokens, auth keys,
//! bearer tokens). `Debug` and `Display` never show the value, and it does not implement
//! `Serialize`, so it cannot leak into logs, errors, metrics, status or MCP output by accident.
//! Reading the value takes an explicit [`Secret::expose`] call at the one place that needs it.
use std::fmt;

use serde::{Deserialize, Deserializer};
use subtle::ConstantTimeEq;

const REDACTED: &str = "[redacted]";

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value. Call this only where the value must leave the process
    /// (an HTTP header, a Kubernetes Secret), never for logging.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with `candidate` in constant time, for checking presented credentials.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// Deserializing is allowed so API responses that carry a secret (a new auth key, a webhook
/// secret, an OAuth access token) land straight in a `Secret`.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("tskey-api-abc123");
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
        assert_eq!(secret.to_string(), "[redacted]");
        assert!(!format!("{secret:?} {secret} {:#?}", Some(&secret)).contains("abc123"));
    }

    #[test]
    fn matches_compares_the_whole_value() {
        let secret = Secret::new("token");
        assert!(secret.matches("token"));
        assert!(!secret.matches("toke"));
        assert!(!secret.matches("token2"));
        assert!(!secret.matches(""));
    }

    #[test]
    fn deserializes_from_a_json_string() {
        let secret: Secret = serde_json::from_str("\"tskey-auth-xyz\"").unwrap();
        assert_eq!(secret.expose(), "tskey-auth-xyz");
    }
}
