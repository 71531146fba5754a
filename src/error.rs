//! Error categories shared by the client, the reconcilers and the metrics.
use std::fmt;

/// Every error the operator reports has one category. It is the Kubernetes event reason, the
/// `category` metric label, and it decides retrying: `RateLimited` and `Transient` back off and
/// retry, `Invalid` waits for the spec to change, the others retry slowly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Category {
    /// Credentials missing, wrong, expired, or lacking a scope (401, 403).
    Auth,
    /// The API asked us to slow down (429).
    RateLimited,
    /// Someone else changed the object first (409, 412).
    Conflict,
    /// The request or the desired state is wrong; retrying the same thing cannot help (400, 422).
    Invalid,
    /// The object does not exist (404).
    NotFound,
    /// A failure that may pass: 5xx, timeouts, dropped connections.
    Transient,
    /// A bug or an unexpected answer on our side.
    Internal,
}

impl Category {
    pub const ALL: [Category; 7] = [
        Category::Auth,
        Category::RateLimited,
        Category::Conflict,
        Category::Invalid,
        Category::NotFound,
        Category::Transient,
        Category::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Auth => "Auth",
            Category::RateLimited => "RateLimited",
            Category::Conflict => "Conflict",
            Category::Invalid => "Invalid",
            Category::NotFound => "NotFound",
            Category::Transient => "Transient",
            Category::Internal => "Internal",
        }
    }

    /// Whether retrying the same request later can succeed without anything else changing.
    pub fn is_retryable(self) -> bool {
        matches!(self, Category::RateLimited | Category::Transient)
    }

    /// The category an HTTP status code belongs to.
    pub fn from_status(status: u16) -> Category {
        match status {
            401 | 403 => Category::Auth,
            404 | 410 => Category::NotFound,
            409 | 412 => Category::Conflict,
            429 => Category::RateLimited,
            400 | 405 | 413 | 415 | 422 => Category::Invalid,
            408 | 500..=599 => Category::Transient,
            _ => Category::Internal,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_categories() {
        assert_eq!(Category::from_status(401), Category::Auth);
        assert_eq!(Category::from_status(403), Category::Auth);
        assert_eq!(Category::from_status(404), Category::NotFound);
        assert_eq!(Category::from_status(412), Category::Conflict);
        assert_eq!(Category::from_status(429), Category::RateLimited);
        assert_eq!(Category::from_status(400), Category::Invalid);
        assert_eq!(Category::from_status(503), Category::Transient);
        assert_eq!(Category::from_status(501), Category::Transient);
        assert_eq!(Category::from_status(302), Category::Internal);
    }

    #[test]
    fn only_rate_limits_and_transient_failures_retry() {
        let retryable: Vec<_> = Category::ALL
            .into_iter()
            .filter(|c| c.is_retryable())
            .collect();
        assert_eq!(retryable, [Category::RateLimited, Category::Transient]);
    }
}
