//! `ManagedTailnet`: the cluster-scoped connection to one tailnet (`docs/crd-reference.md`). It owns nothing in the
//! tailnet; every other kind names it in `spec.tailnetRef`. Its status says whether the
//! credentials work and how the API is doing.
//!
//! It has `suspend` but not the other common controls: it is the tailnet reference itself, it
//! applies nothing that could drift, and deleting it removes nothing from the tailnet.
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CommonStatus, DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, DriftPolicy,
    DurationError, parse_duration,
};

/// The Tailscale API used when `spec.apiUrl` is not set.
pub const DEFAULT_API_URL: &str = "https://api.tailscale.com";
/// The resync interval used when `spec.resyncInterval` is not set.
pub const DEFAULT_RESYNC_INTERVAL: &str = "5m";
/// The shortest resync interval the schema allows: one read of each tailnet area per interval
/// must stay well inside Tailscale's rate limits.
pub const MIN_RESYNC_INTERVAL: &str = "30s";

/// A connection to a Tailscale tailnet: which tailnet, which API, which credentials, how often
/// to re-read it. Other resources name it in `spec.tailnetRef`.
// kube's `printcolumn(...)` repeats `name`/`type_` per column, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "tailnet.ops.dev",
    version = "v1alpha1",
    kind = "ManagedTailnet",
    plural = "managedtailnets",
    shortname = "mtn",
    category = "tailnetops",
    status = "ManagedTailnetStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A connection to a Tailscale tailnet (named ManagedTailnet so as not to clash with the Tailnet kind of Tailscale's own operator): the tailnet, the API URL, the credentials (workload identity, or an OAuth client or API key from a Secret) and the resync interval. Other tailnet.ops.dev resources refer to it by name in spec.tailnetRef.",
    printcolumn(
        name = "Tailnet",
        type_ = "string",
        json_path = ".spec.tailnet",
        description = "The tailnet id, or - for the credentials' own tailnet"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the credentials work and the API answers"
    ),
    printcolumn(
        name = "Devices",
        type_ = "integer",
        json_path = ".status.deviceCount",
        description = "Devices in the tailnet at the last sync"
    ),
    printcolumn(
        name = "Last Sync",
        type_ = "date",
        json_path = ".status.lastSyncTime",
        description = "When the tailnet was last read"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1,
        description = "The Ready condition's message"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.oauthSecretRef) ? 1 : 0) + (has(self.apiKeySecretRef) ? 1 : 0) + (has(self.workloadIdentity) ? 1 : 0) == 1",
    "message": "set exactly one of spec.workloadIdentity (no secret in the cluster), spec.oauthSecretRef (an OAuth client) or spec.apiKeySecretRef (an API key)",
}]))]
pub struct ManagedTailnetSpec {
    /// The tailnet to manage: its id (as shown in the admin console's General settings, e.g.
    /// `T1234CNTRL` or `example.com`), or `-` for the tailnet the credentials belong to.
    #[serde(default = "default_tailnet")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^(-|[^\s/]+)$"))]
    pub tailnet: String,

    /// Base URL of the Tailscale API. Change it only for a proxy or a test double.
    #[serde(default = "default_api_url")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub api_url: String,

    /// An OAuth client's id and secret, from a Secret (scoped and never expires). Exactly one of
    /// workloadIdentity, oauthSecretRef and apiKeySecretRef must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_secret_ref: Option<OAuthSecretRef>,

    /// An API access token, from a Secret (expires after at most 90 days). Exactly one of
    /// workloadIdentity, oauthSecretRef and apiKeySecretRef must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<ApiKeySecretRef>,

    /// Workload identity federation (recommended): the operator exchanges its projected
    /// service-account token for access tokens as a Tailscale federated identity, so no
    /// long-lived credential exists in the cluster. Exactly one of workloadIdentity,
    /// oauthSecretRef and apiKeySecretRef must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentity>,

    /// How often the tailnet is re-read to detect drift, e.g. `30s`, `5m`, `1h`. All resources of
    /// this tailnet share one read of each area per interval. At least 30s.
    #[serde(default = "default_resync_interval")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "duration(self) >= duration('30s')",
        "message": "resyncInterval must be at least 30s",
    }]))]
    pub resync_interval: String,

    /// Receiver for Tailscale webhooks (`policyUpdate`, `node*` events), so changes made in the
    /// admin console are detected within seconds instead of at the next resync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,

    /// Stop reconciling resources of this tailnet while `true`; status is still observed.
    #[serde(default)]
    pub suspend: bool,

    /// Tailnet settings managed by this resource. Only the fields set are managed (one PATCH
    /// with the ones that differ); the others are left as the admin console has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SettingsSpec>,

    /// Which namespaces may put Services on the public internet through FunnelExposures of this
    /// tailnet. Unset: any namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funnel: Option<FunnelAccess>,
}

/// Who may create FunnelExposures (public internet exposure) for a tailnet.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FunnelAccess {
    /// The namespaces whose FunnelExposures are carried out; one elsewhere is refused
    /// (`Ready=False`, reason `NotAllowed`) and nothing is created. Empty: none.
    #[serde(default)]
    #[schemars(length(max = 256), inner(length(min = 1, max = 63)))]
    pub allowed_namespaces: Vec<String>,
}

impl ManagedTailnetSpec {
    /// Whether a FunnelExposure in `namespace` may expose a Service.
    pub fn allows_funnel_in(&self, namespace: &str) -> bool {
        self.funnel
            .as_ref()
            .is_none_or(|f| f.allowed_namespaces.iter().any(|n| n == namespace))
    }
}

/// Tailnet-wide settings. Each field left out is not managed. Each needs its own scope on the
/// operator's credential: `httpsEnabled` needs `networking_settings`, `aclsExternallyManagedOn`
/// and `aclsExternalLink` need `policy_file`, `networkFlowLoggingOn` needs `logs:network`, the
/// others `feature_settings`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SettingsSpec {
    /// Lock the admin console's policy editor (the policy is managed here, in git).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acls_externally_managed_on: Option<bool>,
    /// Where the locked editor links to (the git repository of the policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https://[^\s]+$"))]
    pub acls_external_link: Option<String>,
    /// New devices need an admin's approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices_approval_on: Option<bool>,
    /// Clients update themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices_auto_updates_on: Option<bool>,
    /// Node-key lifetime in days, 1–180.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 180))]
    pub devices_key_duration_days: Option<u32>,
    /// New users need an admin's approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_approval_on: Option<bool>,
    /// Who may join other tailnets: `none`, `admin` or `member`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["none", "admin", "member"]))]
    pub users_role_allowed_to_join_external_tailnets: Option<String>,
    /// Network flow logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_flow_logging_on: Option<bool>,
    /// Regional routing (high-availability subnet routers by region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regional_routing_on: Option<bool>,
    /// Collect device posture identity (serial numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posture_identity_collection_on: Option<bool>,
    /// HTTPS certificates (Funnel and `tailscale serve` over HTTPS need them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_enabled: Option<bool>,
    /// `Correct` (default): a console change of a managed field is put back. `Report`: it is
    /// shown (`Drifted=True`, `status.settings.drift`) and left.
    #[serde(default)]
    pub drift_policy: DriftPolicy,
}

/// What the operator last did with the managed settings.
///
/// Fields default to empty: server-side apply keeps a dropped field's parent as `{}`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SettingsStatus {
    /// The managed fields as last applied (written, or found already in place).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<SettingsSpec>,
    /// How the live settings differ from what was applied (console changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<super::drift::DriftDiff>,
    /// Why the settings could not be applied, naming the fields and the scope they need.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A Tailscale federated identity and the token the operator presents for it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentity {
    /// The federated identity's client id (Settings → Trust credentials in the admin console).
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[^\s]+$"))]
    pub client_id: String,
    /// The audience the federated identity expects; the token must carry it in `aud` (the
    /// chart projects the service-account token with this audience).
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^[^\s]+$"))]
    pub audience: String,
    /// Where the token is mounted in the operator's container. It is re-read at every
    /// exchange, as the kubelet rotates it.
    #[serde(default = "default_token_path")]
    #[schemars(length(min = 2, max = 4096), regex(pattern = r"^/[^\s]*$"))]
    pub token_path: String,
}

/// Where the chart mounts the projected token (the path Tailscale's own operator uses).
pub const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/tailscale/serviceaccount/token";

fn default_token_path() -> String {
    DEFAULT_TOKEN_PATH.to_owned()
}

/// Where an OAuth client's credentials are stored.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OAuthSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the Secret (a ManagedTailnet is cluster-scoped, so the namespace is explicit).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,
    /// Key in the Secret holding the OAuth client id.
    #[serde(default = "default_client_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub client_id_key: String,
    /// Key in the Secret holding the OAuth client secret.
    #[serde(default = "default_client_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub client_secret_key: String,
}

/// Where an API access token is stored.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the Secret (a ManagedTailnet is cluster-scoped, so the namespace is explicit).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,
    /// Key in the Secret holding the API access token.
    #[serde(default = "default_api_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Webhook receiver settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!self.enabled || has(self.secretRef) || has(self.url)",
    "message": "webhook.enabled needs webhook.url (the operator creates the endpoint) or webhook.secretRef (the Secret holding the signing secret of an endpoint you created)",
}, {
    "rule": "!(has(self.secretRef) && has(self.url))",
    "message": "set webhook.url or webhook.secretRef, not both",
}]))]
pub struct WebhookSpec {
    /// Accept Tailscale webhooks for this tailnet and check their signatures.
    #[serde(default)]
    pub enabled: bool,
    /// The Secret holding the webhook endpoint's signing secret (shown once when the endpoint is
    /// created in the admin console).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// The public URL Tailscale posts to (`https://…/webhooks/<this ManagedTailnet's name>`):
    /// the operator creates the endpoint there, keeps its secret in the Secret
    /// `<name>-webhook` of its namespace, rotates it on a new value of the annotation
    /// tailnet.ops.dev/rotate-now and deletes it with this ManagedTailnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub url: Option<String>,
}

/// A key in a Secret.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the Secret.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,
    /// Key in the Secret.
    #[serde(default = "default_webhook_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// What the operator last observed about the tailnet. `Ready` means the credentials work and the
/// API answers; `Drifted` is True while managed settings (`spec.settings`) differ from what was
/// applied under `driftPolicy: Report`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedTailnetStatus {
    /// Conditions, observed generation and last sync time, as every kind has them.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The result of the last credential check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_check: Option<CredentialCheck>,
    /// Devices in the tailnet at the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_count: Option<u32>,
    /// How the Tailscale API has been answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_health: Option<ApiHealth>,
    /// The managed tailnet settings (`spec.settings`), as applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SettingsStatus>,
    /// What the credential can read, area by area, probed when the credentials change: a
    /// missing scope shows here before a resource fails on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<AreaAccess>,
}

/// Whether the credential can read one area of the API, and which kinds need it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct AreaAccess {
    /// e.g. `policy`, `dns`, `keys`.
    pub area: String,
    /// What depends on it, e.g. `TailnetPolicy`.
    pub used_by: String,
    /// Whether the probe's read succeeded.
    pub readable: bool,
    /// Why not, and the scope to add (empty when readable).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The result of checking the credentials (exchanging the OAuth client for a token, or a cheap
/// authenticated read with the API key).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialCheck {
    /// Whether the credentials were accepted.
    pub ok: bool,
    /// What was checked, or why it failed and what to fix. Never contains the credentials.
    #[serde(default)]
    pub message: String,
    /// When the check ran.
    pub checked_at: Time,
}

/// How the Tailscale API has been answering this tailnet's requests.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiHealth {
    /// When a request last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Time>,
    /// When a request last failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<Time>,
    /// The last failure's category: Auth, RateLimited, Conflict, Invalid, NotFound, Transient or
    /// Internal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_category: Option<String>,
    /// The last failure's message (endpoint, HTTP status and the API's own words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_message: Option<String>,
}

impl ManagedTailnetSpec {
    /// The resync interval as a `Duration`. The schema already checks the form, so an error here
    /// means the object bypassed validation (file mode, an old CRD).
    pub fn resync_interval(&self) -> Result<Duration, DurationError> {
        parse_duration(&self.resync_interval)
    }
}

impl Default for ManagedTailnetSpec {
    fn default() -> Self {
        ManagedTailnetSpec {
            tailnet: default_tailnet(),
            api_url: default_api_url(),
            oauth_secret_ref: None,
            api_key_secret_ref: None,
            workload_identity: None,
            resync_interval: default_resync_interval(),
            webhook: None,
            suspend: false,
            settings: None,
            funnel: None,
        }
    }
}

fn default_tailnet() -> String {
    "-".to_owned()
}

fn default_api_url() -> String {
    DEFAULT_API_URL.to_owned()
}

fn default_resync_interval() -> String {
    DEFAULT_RESYNC_INTERVAL.to_owned()
}

fn default_client_id_key() -> String {
    "client_id".to_owned()
}

fn default_client_secret_key() -> String {
    "client_secret".to_owned()
}

fn default_api_key_key() -> String {
    "api_key".to_owned()
}

fn default_webhook_secret_key() -> String {
    "secret".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_minimal_spec_gets_the_documented_defaults() {
        let spec: ManagedTailnetSpec = serde_json::from_value(json!({
            "oauthSecretRef": {"name": "ts-oauth", "namespace": "tailnet-system"},
        }))
        .unwrap();
        assert_eq!(spec.tailnet, "-");
        assert_eq!(spec.api_url, "https://api.tailscale.com");
        assert_eq!(spec.resync_interval().unwrap(), Duration::from_secs(300));
        let oauth = spec.oauth_secret_ref.unwrap();
        assert_eq!(oauth.client_id_key, "client_id");
        assert_eq!(oauth.client_secret_key, "client_secret");
        assert!(spec.webhook.is_none());
        assert!(!spec.suspend);
    }

    #[test]
    fn api_key_and_webhook_keys_default_too() {
        let spec: ManagedTailnetSpec = serde_json::from_value(json!({
            "apiKeySecretRef": {"name": "ts-key", "namespace": "ops"},
            "webhook": {"enabled": true, "secretRef": {"name": "hook", "namespace": "ops"}},
        }))
        .unwrap();
        assert_eq!(spec.api_key_secret_ref.unwrap().key, "api_key");
        assert_eq!(spec.webhook.unwrap().secret_ref.unwrap().key, "secret");
    }

    #[test]
    fn the_default_spec_matches_the_serde_defaults() {
        let from_empty: ManagedTailnetSpec = serde_json::from_value(json!({})).unwrap();
        assert_eq!(from_empty, ManagedTailnetSpec::default());
    }

    #[test]
    fn a_bad_resync_interval_is_reported_by_the_accessor() {
        let spec = ManagedTailnetSpec {
            resync_interval: "5 minutes".into(),
            ..ManagedTailnetSpec::default()
        };
        assert!(
            spec.resync_interval()
                .unwrap_err()
                .to_string()
                .contains("5 minutes")
        );
    }

    #[test]
    fn an_empty_status_serializes_to_an_empty_object() {
        assert_eq!(
            serde_json::to_value(ManagedTailnetStatus::default()).unwrap(),
            json!({})
        );
    }
}
