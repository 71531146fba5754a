//! The error every reconciler returns, its [`Category`] (event reason, metric label, condition
//! reason) and the retry schedule that follows from it (`docs/architecture.md`, "Errors"):
//! transient failures and rate limits back off exponentially per object and honour the API's
//! `Retry-After`; credentials, conflicts, missing objects and bugs retry slowly; an invalid spec
//! waits for the spec to change.
use std::time::Duration;

use crate::error::Category;
use crate::tailscale::ApiError;

/// First retry after a transient failure or a rate limit.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest wait between retries of a transient failure.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// The wait after an error that needs something else to change first (credentials, a conflicting
/// writer, a missing object, a bug), so fixing it outside is picked up without hammering the API.
pub const SLOW_RETRY: Duration = Duration::from_secs(300);

/// Why a reconcile failed.
///
/// `Display` is safe for logs, events and status messages: it never contains secret values.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A Tailscale API call failed; its category comes from the client.
    #[error("Tailscale API: {0}")]
    Api(#[from] ApiError),

    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {}", describe_kube(.0))]
    Kube(#[from] kube::Error),

    /// The spec cannot work as written; nothing is retried until it changes.
    #[error("invalid spec: {field}: {message}")]
    InvalidSpec {
        /// The field at fault, as a path from the resource root, e.g. `spec.policyFrom`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// Someone else owns or changed the same thing (another resource, a concurrent writer).
    #[error("conflict: {message}")]
    Conflict { message: String },

    /// Something the resource refers to does not exist (a `ManagedTailnet`, a Secret, a ConfigMap key).
    #[error("{what} not found: {message}")]
    NotFound {
        /// What is missing, e.g. `Secret tailscale/oauth`.
        what: String,
        /// Where it was referenced from and how to fix it.
        message: String,
    },

    /// Credentials are missing, malformed or refused.
    #[error("credentials: {message}")]
    Credentials { message: String },

    /// A bug or an answer the operator did not expect.
    #[error("internal error: {message}")]
    Internal { message: String },
}

impl ReconcileError {
    /// An invalid spec: `field` is the path (e.g. `spec.resyncInterval`), `message` says what to do.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ReconcileError::InvalidSpec {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ReconcileError::Conflict {
            message: message.into(),
        }
    }

    pub fn not_found(what: impl Into<String>, message: impl Into<String>) -> Self {
        ReconcileError::NotFound {
            what: what.into(),
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ReconcileError::Internal {
            message: message.into(),
        }
    }

    pub fn category(&self) -> Category {
        match self {
            ReconcileError::Api(err) => err.category,
            ReconcileError::Kube(err) => kube_category(err),
            ReconcileError::InvalidSpec { .. } => Category::Invalid,
            ReconcileError::Conflict { .. } => Category::Conflict,
            ReconcileError::NotFound { .. } => Category::NotFound,
            ReconcileError::Credentials { .. } => Category::Auth,
            ReconcileError::Internal { .. } => Category::Internal,
        }
    }

    /// The Kubernetes event reason (and condition reason) for this error: its category name.
    pub fn event_reason(&self) -> &'static str {
        self.category().as_str()
    }

    /// How long the server asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ReconcileError::Api(err) => err.retry_after,
            _ => None,
        }
    }

    /// When to reconcile this object again after its `consecutive_failures`-th failure in a row
    /// (counting from 1): the category's schedule, but never sooner than the API's
    /// `Retry-After`. `None` means wait for a change to the resource.
    pub fn requeue_after(&self, consecutive_failures: u32) -> Option<Duration> {
        let scheduled = requeue_after(self.category(), consecutive_failures)?;
        Some(match self.retry_after() {
            Some(asked) => scheduled.max(asked),
            None => scheduled,
        })
    }
}

/// The retry schedule of a category after `consecutive_failures` failures in a row (0 is
/// treated as 1): `BACKOFF_BASE` doubling up to `BACKOFF_MAX` for `Transient` and
/// `RateLimited`; `SLOW_RETRY` for `Auth`, `Conflict`, `NotFound` and `Internal`; `None` for
/// `Invalid` (retrying the same spec cannot help; a spec change triggers the next reconcile).
pub fn requeue_after(category: Category, consecutive_failures: u32) -> Option<Duration> {
    match category {
        Category::Transient | Category::RateLimited => {
            let doublings = consecutive_failures.saturating_sub(1).min(16);
            Some(BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX))
        }
        Category::Auth | Category::Conflict | Category::NotFound | Category::Internal => {
            Some(SLOW_RETRY)
        }
        Category::Invalid => None,
    }
}

/// The category of a Kubernetes client error: the API server's status code where there is one;
/// connection failures are transient; anything else (decoding, configuration) is on our side.
pub fn kube_category(err: &kube::Error) -> Category {
    match err {
        kube::Error::Api(status) => match status.code {
            401 | 403 => Category::Auth,
            404 => Category::NotFound,
            409 => Category::Conflict,
            429 => Category::RateLimited,
            500..=599 => Category::Transient,
            _ => Category::Internal,
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            Category::Transient
        }
        _ => Category::Internal,
    }
}

/// The API server's own words for an error response (`kube::Error`'s `Display` adds the whole
/// `Debug` form of the status, which is noise in a condition message).
fn describe_kube(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            let mut text = format!("HTTP {}", status.code);
            if !status.reason.is_empty() {
                text.push_str(&format!(" ({})", status.reason));
            }
            if !status.message.is_empty() {
                text.push_str(&format!(": {}", status.message));
            }
            text
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn kube_api_error(code: u16, reason: &str, message: &str) -> ReconcileError {
        ReconcileError::Kube(kube::Error::Api(
            Status::failure(message, reason).with_code(code).boxed(),
        ))
    }

    fn api_error(category: Category, retry_after: Option<Duration>) -> ReconcileError {
        let mut err = ApiError::new(category, "POST /tailnet/{tailnet}/acl", "nope");
        err.retry_after = retry_after;
        ReconcileError::Api(err)
    }

    #[test]
    fn kube_status_codes_map_to_categories() {
        let cases = [
            (409, Category::Conflict),
            (404, Category::NotFound),
            (401, Category::Auth),
            (403, Category::Auth),
            (429, Category::RateLimited),
            (500, Category::Transient),
            (503, Category::Transient),
            (422, Category::Internal),
            (400, Category::Internal),
        ];
        for (code, category) in cases {
            assert_eq!(
                kube_api_error(code, "X", "y").category(),
                category,
                "HTTP {code}"
            );
        }
    }

    #[test]
    fn kube_transport_and_decoding_errors_are_transient_and_internal() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            ReconcileError::Kube(kube::Error::ReadEvents(io)).category(),
            Category::Transient
        );
        let serde = serde_json::from_str::<u8>("x").unwrap_err();
        assert_eq!(
            ReconcileError::Kube(kube::Error::SerdeError(serde)).category(),
            Category::Internal
        );
    }

    #[test]
    fn kube_errors_read_as_the_servers_message() {
        let err = kube_api_error(409, "Conflict", "the object has been modified");
        assert_eq!(
            err.to_string(),
            "Kubernetes API: HTTP 409 (Conflict): the object has been modified"
        );
        assert_eq!(err.event_reason(), "Conflict");
    }

    #[test]
    fn own_variants_have_their_categories_and_name_the_field() {
        let invalid = ReconcileError::invalid(
            "spec.policyFrom",
            "set exactly one of spec.policy or spec.policyFrom",
        );
        assert_eq!(invalid.category(), Category::Invalid);
        assert_eq!(invalid.event_reason(), "Invalid");
        assert_eq!(
            invalid.to_string(),
            "invalid spec: spec.policyFrom: set exactly one of spec.policy or spec.policyFrom"
        );
        assert_eq!(ReconcileError::conflict("x").category(), Category::Conflict);
        let missing =
            ReconcileError::not_found("ManagedTailnet default", "create it or set spec.tailnetRef");
        assert_eq!(missing.category(), Category::NotFound);
        assert_eq!(
            missing.to_string(),
            "ManagedTailnet default not found: create it or set spec.tailnetRef"
        );
        let creds = ReconcileError::Credentials {
            message: "key `api_key` is empty".into(),
        };
        assert_eq!(creds.category(), Category::Auth);
        assert_eq!(
            ReconcileError::internal("bug").category(),
            Category::Internal
        );
    }

    #[test]
    fn api_errors_keep_the_clients_category() {
        assert_eq!(
            api_error(Category::RateLimited, None).category(),
            Category::RateLimited
        );
        assert!(
            api_error(Category::Invalid, None)
                .to_string()
                .starts_with("Tailscale API: POST /tailnet/{tailnet}/acl")
        );
    }

    #[test]
    fn transient_failures_back_off_exponentially_up_to_the_cap() {
        let waits: Vec<u64> = (1..=8)
            .map(|n| requeue_after(Category::Transient, n).unwrap().as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(requeue_after(Category::RateLimited, 0), Some(BACKOFF_BASE));
        assert_eq!(
            requeue_after(Category::RateLimited, u32::MAX),
            Some(BACKOFF_MAX)
        );
    }

    #[test]
    fn errors_needing_an_outside_fix_retry_slowly_and_invalid_specs_wait() {
        for category in [
            Category::Auth,
            Category::Conflict,
            Category::NotFound,
            Category::Internal,
        ] {
            assert_eq!(requeue_after(category, 1), Some(SLOW_RETRY), "{category}");
            assert_eq!(requeue_after(category, 9), Some(SLOW_RETRY), "{category}");
        }
        assert_eq!(requeue_after(Category::Invalid, 1), None);
        assert_eq!(
            ReconcileError::invalid("spec.policy", "x").requeue_after(3),
            None
        );
    }

    #[test]
    fn retry_after_from_the_api_is_honoured_when_longer() {
        let asked = Duration::from_secs(42);
        let err = api_error(Category::RateLimited, Some(asked));
        assert_eq!(err.retry_after(), Some(asked));
        assert_eq!(err.requeue_after(1), Some(asked));
        // A later failure whose backoff is already longer keeps the backoff.
        assert_eq!(err.requeue_after(5), Some(Duration::from_secs(80)));
        // Without Retry-After the schedule applies.
        assert_eq!(
            api_error(Category::Transient, None).requeue_after(2),
            Some(Duration::from_secs(10))
        );
    }
}
