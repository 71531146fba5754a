//! The one error type of the client. It carries what a user (or a reconciler deciding whether
//! to retry) needs: the category, the HTTP status, the API's own message, and which endpoint
//! failed, as a template without ids so it also works as a metric label.
use std::fmt;
use std::time::Duration;

use serde_json::Value;

use crate::error::Category;

/// The client's result type.
pub type Result<T> = std::result::Result<T, ApiError>;

/// A failed Tailscale API call.
///
/// `Display` reads like `GET /tailnet/{tailnet}/devices: HTTP 404 (NotFound): not found`.
/// It never contains request headers or bodies, so it is safe to log and to put in a status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ApiError {
    pub category: Category,
    /// The HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// The API's `message`, or a description of the transport failure.
    pub message: String,
    /// Method and templated path, e.g. `GET /tailnet/{tailnet}/devices`.
    pub endpoint: String,
    /// How long the server asked us to wait (`Retry-After`), if it said.
    pub retry_after: Option<Duration>,
    /// The error body's `data`, e.g. policy-test failures on `POST /acl`. Boxed to keep
    /// `Result<T, ApiError>` small (clippy's `result_large_err`), since every caller returns it.
    pub data: Option<Box<Value>>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.endpoint)?;
        if let Some(status) = self.status {
            write!(f, "HTTP {status} ")?;
        }
        write!(f, "({}): {}", self.category, self.message)?;
        if let Some(after) = self.retry_after {
            write!(f, " (retry after {}s)", after.as_secs_f64())?;
        }
        Ok(())
    }
}

impl ApiError {
    /// An error with no HTTP status (transport failure, configuration, decoding).
    pub fn new(
        category: Category,
        endpoint: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            category,
            status: None,
            message: message.into(),
            endpoint: endpoint.into(),
            retry_after: None,
            data: None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.category == Category::NotFound
    }

    pub fn is_conflict(&self) -> bool {
        self.category == Category::Conflict
    }

    /// Whether the same request can succeed later without anything else changing.
    pub fn is_retryable(&self) -> bool {
        self.category.is_retryable()
    }
}

/// The category for an HTTP status, with the client's refinements of the shared mapping.
pub(crate) fn category_for_status(status: u16) -> Category {
    match status {
        // 501 is how Tailscale refuses operations on devices the tailnet does not own (shared-in
        // devices): waiting does not help, the request itself is wrong.
        501 => Category::Invalid,
        _ => Category::from_status(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ApiError {
        ApiError {
            category: Category::NotFound,
            status: Some(404),
            message: "device not found".into(),
            endpoint: "GET /device/{deviceId}".into(),
            retry_after: None,
            data: None,
        }
    }

    #[test]
    fn display_names_endpoint_status_category_and_message() {
        assert_eq!(
            sample().to_string(),
            "GET /device/{deviceId}: HTTP 404 (NotFound): device not found"
        );
    }

    #[test]
    fn display_mentions_retry_after_and_omits_missing_status() {
        let mut err = ApiError::new(
            Category::RateLimited,
            "GET /tailnet/{tailnet}/keys",
            "slow down",
        );
        err.retry_after = Some(Duration::from_secs(2));
        assert_eq!(
            err.to_string(),
            "GET /tailnet/{tailnet}/keys: (RateLimited): slow down (retry after 2s)"
        );
    }

    #[test]
    fn helpers_follow_the_category() {
        assert!(sample().is_not_found());
        assert!(!sample().is_retryable());
        assert!(ApiError::new(Category::Transient, "x", "y").is_retryable());
        assert!(ApiError::new(Category::Conflict, "x", "y").is_conflict());
    }

    #[test]
    fn not_implemented_is_invalid_not_transient() {
        assert_eq!(category_for_status(501), Category::Invalid);
        assert_eq!(category_for_status(502), Category::Transient);
        assert_eq!(category_for_status(412), Category::Conflict);
    }
}
