//! Local access evaluator for `acls` and `grants`. INTERFACE STUB: the policy worker implements it.
use std::net::IpAddr;

/// What the evaluator knows about the tailnet's users and devices.
#[derive(Debug, Clone, Default)]
pub struct TailnetView {
    /// Login names of the tailnet's users, e.g. `alice@example.com`.
    pub users: Vec<String>,
    pub devices: Vec<DeviceView>,
}

#[derive(Debug, Clone, Default)]
pub struct DeviceView {
    pub hostname: String,
    pub addresses: Vec<IpAddr>,
    /// Login name of the owning user (meaningless once the device is tagged).
    pub user: String,
    pub tags: Vec<String>,
}

/// A policy document that does not compile (unknown group, malformed rule, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    pub message: String,
}

/// One failing policy test, shaped like the API's `data` entries: `{"user": src, "errors": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    pub src: String,
    pub errors: Vec<String>,
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    doc: serde_json::Value,
}

impl Policy {
    /// Compiles a parsed policy document.
    pub fn compile(doc: &serde_json::Value) -> Result<Policy, PolicyError> {
        Ok(Policy { doc: doc.clone() })
    }

    /// Runs `tests` (a JSON array of policy tests), or the policy's own `tests` when `None`.
    pub fn run_tests(
        &self,
        tests: Option<&serde_json::Value>,
        view: &TailnetView,
    ) -> Vec<TestFailure> {
        let _ = (tests, view, &self.doc);
        Vec::new()
    }
}
