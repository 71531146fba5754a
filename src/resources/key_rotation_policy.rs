//! `KeyRotationPolicy`: a Tailscale credential (an auth key, or an OAuth client's secret) kept
//! fresh in a Kubernetes Secret: minted, written, renewed `rotateBefore` its expiry, the old
//! one revoked after `gracePeriod` (`docs/key-rotation.md`). Namespaced: the Secret lives in
//! the policy's namespace.
//!
//! Key material never appears in the resource: status carries key ids and times only.
use std::collections::BTreeMap;
use std::time::Duration;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, CommonStatus, DURATION_PATTERN, DurationError, parse_duration};
use super::device_tag_set::MAX_LIST_ITEMS;
use super::drift::DriftDiff;

/// Any new value rotates the credential at once (incident response).
pub const ROTATE_NOW_ANNOTATION: &str = "tailnet.ops.dev/rotate-now";
/// On the Secret: the id of the credential it holds (how a restarted operator finds a key it
/// wrote but did not record in status yet).
pub const KEY_ID_ANNOTATION: &str = "tailnet.ops.dev/key-id";
/// The longest auth key lifetime Tailscale accepts (90 days).
pub const MAX_AUTH_KEY_EXPIRY: Duration = Duration::from_secs(90 * 86_400);
/// `expiry` when unset.
pub const DEFAULT_EXPIRY: &str = "2160h";
/// `gracePeriod` when unset.
pub const DEFAULT_GRACE_PERIOD: &str = "1h";

/// A credential kept fresh in a Secret.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "tailnet.ops.dev",
    version = "v1alpha1",
    kind = "KeyRotationPolicy",
    plural = "keyrotationpolicies",
    shortname = "tnkey",
    category = "tailnetops",
    namespaced,
    status = "KeyRotationPolicyStatus",
    derive = "PartialEq",
    doc = "A Tailscale auth key (or an OAuth client's secret) kept fresh in a Secret: minted, written, renewed rotateBefore its expiry, the previous one revoked after gracePeriod. Annotation tailnet.ops.dev/rotate-now rotates at once. Status carries key ids and times, never key material.",
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".status.secretName",
        description = "The Secret holding the current credential"
    ),
    printcolumn(
        name = "Expires",
        type_ = "date",
        json_path = ".status.expires",
        description = "When the current credential expires"
    ),
    printcolumn(
        name = "Next rotation",
        type_ = "date",
        json_path = ".status.nextRotation",
        description = "When the credential is renewed"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the Secret holds a valid current credential"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1,
        description = "The Ready condition's reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.keyType) || self.keyType != 'oauthClient' || (has(self.scopes) && size(self.scopes) > 0)",
    "message": "an oauthClient needs scopes (e.g. [\"auth_keys\", \"devices:core\"])",
}, {
    "rule": "has(self.keyType) && self.keyType == 'oauthClient' || !has(self.expiry) || duration(self.expiry) <= duration('2160h')",
    "message": "expiry of an auth key can be at most 2160h (90 days)",
}, {
    "rule": "!has(self.rotateBefore) || !has(self.expiry) || duration(self.rotateBefore) < duration(self.expiry)",
    "message": "rotateBefore must be shorter than expiry",
}]))]
pub struct KeyRotationPolicySpec {
    #[serde(flatten)]
    pub common: CommonSpec,

    /// `auth` (default): an auth key devices register with. `oauthClient`: an OAuth client
    /// (a trust credential other tools authenticate with), its id and secret in the Secret.
    #[serde(default)]
    pub key_type: KeyType,

    /// Auth keys: the key can register more than one device.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reusable: bool,
    /// Auth keys: devices registered with it are removed when they go offline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
    /// Auth keys: devices registered with it need no approval.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preauthorized: bool,
    /// Tags of the devices registered with the auth key, or of the OAuth client. Keys minted
    /// with OAuth credentials must carry tags the credential owns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(max = 128)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(t, t.matches('^tag:[a-z0-9-]+$'))",
        "message": "tags must look like tag:name",
    }]))]
    pub tags: Vec<String>,
    /// OAuth clients: the scopes, e.g. `auth_keys`, `devices:core`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(min = 1, max = 64)))]
    pub scopes: Vec<String>,

    /// How long a credential lives, e.g. `720h` (30 days). Auth keys: at most `2160h` (90
    /// days), the default. OAuth clients: how often the secret is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub expiry: Option<String>,
    /// Renew this long before expiry. Default: a third of `expiry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub rotate_before: Option<String>,
    /// How long the previous credential stays valid after a new one is written, so consumers
    /// pick up the new one; then it is revoked. Default `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub grace_period: Option<String>,
    /// A single-use key that has been used is replaced at once (otherwise reported).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recreate_when_used: bool,

    /// The Secret (in this namespace) that holds the credential. Default: `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// The keys inside the Secret.
    #[serde(default)]
    pub secret_keys: SecretKeys,
    /// Labels put on the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_labels: BTreeMap<String, String>,
    /// Annotations put on the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_annotations: BTreeMap<String, String>,
}

/// Which credential the policy keeps.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum KeyType {
    #[default]
    Auth,
    OauthClient,
}

/// The data keys of the Secret. The defaults are the names Tailscale's own operator chart
/// expects (`client_id`, `client_secret`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct SecretKeys {
    /// Where an auth key goes.
    #[schemars(length(min = 1, max = 253))]
    pub auth_key: String,
    /// Where an OAuth client's id goes.
    #[schemars(length(min = 1, max = 253))]
    pub client_id: String,
    /// Where an OAuth client's secret goes.
    #[schemars(length(min = 1, max = 253))]
    pub client_secret: String,
}

impl Default for SecretKeys {
    fn default() -> Self {
        SecretKeys {
            auth_key: "authkey".to_owned(),
            client_id: "client_id".to_owned(),
            client_secret: "client_secret".to_owned(),
        }
    }
}

/// What the policy holds now. Key ids and times only.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotationPolicyStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The Secret holding the current credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The current credential's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_key_id: Option<String>,
    /// When the current credential was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// When it is renewed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<String>,
    /// The credential the current one replaced, still valid during the grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_key_id: Option<String>,
    /// When the previous credential is revoked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_revoke_at: Option<String>,
    /// The `rotate-now` annotation value already acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_for: Option<String>,
    /// Unused (a credential is replaced, not corrected); present as in every kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftDiff>,
}

impl KeyRotationPolicyStatus {
    /// Empty objects left by server-side apply read as absent.
    pub fn normalized(mut self) -> KeyRotationPolicyStatus {
        self.drift = self.drift.filter(|d| !d.is_empty());
        self
    }
}

/// The lifetimes of a policy, resolved with their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub expiry: Duration,
    pub rotate_before: Duration,
    pub grace_period: Duration,
}

impl KeyRotationPolicySpec {
    /// `expiry`, `rotateBefore` (default a third of `expiry`) and `gracePeriod`, parsed. The
    /// schema checks the forms; an error means the object bypassed validation.
    pub fn lifetimes(&self) -> Result<Lifetimes, DurationError> {
        let expiry = parse_duration(self.expiry.as_deref().unwrap_or(DEFAULT_EXPIRY))?;
        let rotate_before = match &self.rotate_before {
            Some(text) => parse_duration(text)?,
            None => expiry / 3,
        };
        let grace_period =
            parse_duration(self.grace_period.as_deref().unwrap_or(DEFAULT_GRACE_PERIOD))?;
        Ok(Lifetimes {
            expiry,
            rotate_before,
            grace_period,
        })
    }
}

impl KeyRotationPolicy {
    /// The Secret's name: `spec.secretName`, else the policy's name.
    pub fn secret_name(&self) -> String {
        self.spec
            .secret_name
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}

super::tailnet_scoped_kind!(
    KeyRotationPolicy,
    KeyRotationPolicyStatus,
    DeleteByDefault,
    normalized
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lifetimes_default_to_90_days_a_third_and_an_hour() {
        let spec: KeyRotationPolicySpec = serde_json::from_value(json!({})).unwrap();
        let l = spec.lifetimes().unwrap();
        assert_eq!(l.expiry, MAX_AUTH_KEY_EXPIRY);
        assert_eq!(l.rotate_before, MAX_AUTH_KEY_EXPIRY / 3);
        assert_eq!(l.grace_period, Duration::from_secs(3600));
        assert_eq!(spec.key_type, KeyType::Auth);
        assert_eq!(spec.secret_keys.auth_key, "authkey");
        let oauth: KeyRotationPolicySpec =
            serde_json::from_value(json!({"keyType": "oauthClient", "expiry": "720h",
                "rotateBefore": "24h"}))
            .unwrap();
        assert_eq!(oauth.key_type, KeyType::OauthClient);
        assert_eq!(
            oauth.lifetimes().unwrap().rotate_before,
            Duration::from_secs(86_400)
        );
    }
}
