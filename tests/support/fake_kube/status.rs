//! API errors as the apiserver sends them: a `Status` object with a `reason` and an HTTP code.

use serde_json::{Value, json};

use super::Gvr;

/// A failed API call, as the fake apiserver reports it (the body of a `kind: Status` response).
///
/// Test-side helpers on [`super::FakeKube`] return it too, so a test can assert the same
/// `reason`/`code` a kube client would see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiStatus {
    /// HTTP status code (404, 409, 410, 422, ...).
    pub code: u16,
    /// Machine-readable reason: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `Expired`,
    /// `BadRequest`, `MethodNotAllowed`.
    pub reason: String,
    /// Human-readable message in the apiserver's wording.
    pub message: String,
}

impl ApiStatus {
    pub(crate) fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn not_found(gvr: &Gvr, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", gvr.qualified()),
        )
    }

    pub(crate) fn already_exists(gvr: &Gvr, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", gvr.qualified()),
        )
    }

    /// Optimistic-concurrency failure: the caller's `resourceVersion` (or uid) is stale.
    pub(crate) fn stale(gvr: &Gvr, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                gvr.qualified()
            ),
        )
    }

    pub(crate) fn invalid(gvr: &Gvr, name: &str, detail: impl std::fmt::Display) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {detail}", gvr.qualified()),
        )
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// What a watch (or an exact-version list) gets when the requested history is compacted.
    pub(crate) fn expired(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    pub(crate) fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource: {method} {path}"
            ),
        )
    }

    /// The JSON body (`kind: Status`, `status: Failure`).
    pub fn to_json(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        })
    }
}

/// The `Status` a successful immediate DELETE returns.
pub(crate) fn success_json(gvr: &Gvr, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": gvr.group, "kind": gvr.resource, "uid": uid},
    })
}
