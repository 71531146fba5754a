//! The one interface every MCP backend implements, and the views it returns.
//!
//! Three implementations: [`super::local::LocalBackend`] over a Kubernetes API (the user's
//! kubeconfig, or the operator's own client behind the loopback API) or over a GitOps checkout
//! (`--manifests`), and [`super::remote::RemoteBackend`], a thin HTTP client of the operator's
//! loopback API. Every view is plain data (serde + JSON Schema) so the MCP tools return it as
//! structured output and the loopback API sends it as JSON unchanged.
//!
//! No view carries a secret value: devices leave out keys, auth keys are metadata only, and
//! resources show Secret *references* (names), never their data.
use std::collections::BTreeMap;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::resources::change_proposal::ProposalOperation;

/// Result of a backend call.
pub type BackendResult<'a, T> = BoxFuture<'a, Result<T, BackendError>>;

/// What the MCP server reads and proposes through. Object-safe so the CLI picks one at run
/// time and the loopback API serves any of them.
pub trait Backend: Send + Sync {
    /// Where the data comes from, for `overview` and the server's instructions.
    fn describe(&self) -> String;
    fn overview(&self) -> BackendResult<'_, Overview>;
    fn list_resources(&self, query: ResourceQuery) -> BackendResult<'_, ResourceList>;
    fn get_resource(&self, key: ResourceKey) -> BackendResult<'_, ResourceDetail>;
    fn policy(&self, query: TailnetQuery) -> BackendResult<'_, PolicyViews>;
    fn check_access(&self, query: AccessQuery) -> BackendResult<'_, AccessAnswer>;
    fn devices(&self, filter: DeviceFilter) -> BackendResult<'_, DeviceList>;
    fn device_audit(&self, query: AuditQuery) -> BackendResult<'_, AuditView>;
    fn auth_keys(&self, query: TailnetQuery) -> BackendResult<'_, KeyList>;
    fn proposals(&self) -> BackendResult<'_, ProposalList>;
    /// The network report (`tailnet-operator report`) of one tailnet.
    fn network_report(&self, query: TailnetQuery) -> BackendResult<'_, crate::report::Report>;
    /// Validates the change (a patch, a new object or a deletion) and creates a proposal (a
    /// ChangeProposal, or a patch file); an invalid change is an error and creates nothing.
    fn propose_change(&self, request: ChangeRequest) -> BackendResult<'_, ProposalCreated>;
    /// Proposes the patch that makes the resource match the live tailnet.
    fn adopt_drift(&self, request: AdoptDriftRequest) -> BackendResult<'_, ProposalCreated>;
}

/// Why a backend call failed. Messages name what was asked and what to do; none carries a
/// secret (the Tailscale client's and kube's errors are already redacted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message")]
pub enum BackendError {
    /// The named resource, tailnet or proposal does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is invalid (a malformed patch, an unknown kind, a patch whose result fails
    /// validation). Nothing was created.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The backend cannot do this (e.g. no cluster in `--manifests` mode).
    #[error("not supported by this backend: {0}")]
    Unsupported(String),
    /// The Kubernetes API, the tailnet or the operator could not be read.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl BackendError {
    pub fn unavailable(context: &str, err: impl std::fmt::Display) -> BackendError {
        BackendError::Unavailable(format!("{context}: {err}"))
    }
}

/// Optional tailnet selector: the `tailnetRef` name (default: the only tailnet, else `default`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TailnetQuery {
    /// ManagedTailnet name (the `ManagedTailnet` resource / `tailnetRef`); omit for the only or `default` one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tailnet: Option<String>,
}

/// Which resources to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceQuery {
    /// Only this kind, e.g. `TailnetPolicy` (default: every kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// One resource of the operator's group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceKey {
    /// Kind, e.g. `TailnetPolicy`, `ManagedTailnet`, `DeviceTagSet`, `DNSConfig`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// Namespace, for namespaced kinds (ChangeProposal); omit for cluster-scoped ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl ResourceKey {
    pub fn label(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// A status condition, as `kubectl describe` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

/// A resource in a list: identity and its conditions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSummary {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The tailnet it manages (`spec.tailnetRef`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tailnet: Option<String>,
    pub conditions: Vec<ConditionView>,
    /// Whether the live tailnet differs from this resource (`Drifted=True`).
    pub drifted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceList {
    pub resources: Vec<ResourceSummary>,
}

/// One resource in full: spec, conditions and drift diff.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDetail {
    #[serde(flatten)]
    pub summary: ResourceSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// `spec` as stored.
    pub spec: Value,
    /// `status` as the operator wrote it (or, in `--manifests` mode, as the planner computes it).
    pub status: Value,
    /// How the live tailnet differs from the resource (JSON pointers with desired and live
    /// values), while it is drifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Value>,
}

/// Tailnets, resource counts, drift and device statistics at a glance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// Where the data comes from (backend).
    pub backend: String,
    pub tailnets: Vec<TailnetOverview>,
    /// Resources per kind.
    pub resource_counts: BTreeMap<String, usize>,
    /// `Kind/name` of every drifted resource.
    pub drifted: Vec<String>,
    /// `Kind/name` of every resource whose `Ready` is not True.
    pub not_ready: Vec<String>,
    /// Proposals waiting for a human.
    pub pending_proposals: usize,
    /// What is (or is about to be) on the public internet, and until when.
    pub funnel_exposures: Vec<ExposureView>,
    /// Tailscale Services: addresses and hosts.
    pub services: Vec<ServiceView>,
    /// Key rotation schedules (metadata only, never key material).
    pub key_rotations: Vec<KeyRotationView>,
}

/// A FunnelExposure at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExposureView {
    pub name: String,
    pub namespace: Option<String>,
    /// `namespace/service:port` exposed.
    pub service: String,
    /// Scheduled, Provisioning, Active, Expired or Failed (absent before the first reconcile).
    pub phase: Option<String>,
    pub url: Option<String>,
    /// When it ends (`status.expires`, else `spec.expiresAt` or the window's end); absent: no end.
    pub expires: Option<String>,
}

/// A TailscaleService at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    /// `svc:<name>`.
    pub service: String,
    pub resource: String,
    pub addresses: Vec<String>,
    /// Hosts advertising it (machine names), as status lists them.
    pub hosts: Vec<String>,
    /// `ready/total` hosts.
    pub hosts_ready: Option<String>,
}

/// A KeyRotationPolicy's schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotationView {
    pub name: String,
    pub namespace: Option<String>,
    /// `auth` or `oauthClient`.
    pub key_type: String,
    pub tags: Vec<String>,
    pub current_key_id: Option<String>,
    pub expires: Option<String>,
    pub next_rotation: Option<String>,
    pub secret_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TailnetOverview {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<DeviceStats>,
    /// Why the live tailnet could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStats {
    pub total: usize,
    pub connected: usize,
    pub unauthorized: usize,
    pub tagged: usize,
    pub update_available: usize,
    pub key_expiry_disabled: usize,
    pub external: usize,
}

/// The tailnet's policy three ways.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyViews {
    pub tailnet: String,
    /// The policy the TailnetPolicy resources compose to (Base + Fragments), HuJSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<String>,
    /// Why there is no desired policy (no Base, a composition error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_problem: Option<String>,
    /// The tailnet's policy file as it is now, HuJSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_problem: Option<String>,
    /// The policy in force (the live one) as the local evaluator compiles it.
    pub effective: EffectivePolicy,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectivePolicy {
    /// Whether the live policy is the desired one (same JSON, comments aside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches_desired: Option<bool>,
    /// Accept rules (acls and grants) compiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_count: Option<usize>,
    /// Groups and their members.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// What the evaluator could not model (autogroups by role, postures, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Which policy to evaluate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PolicyChoice {
    /// The tailnet's policy as it is now.
    #[default]
    Live,
    /// The policy the resources compose to.
    Desired,
}

/// `check_access(src, dst, port)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessQuery {
    /// Source: a user (`alice@example.com`), `group:x`, `tag:x`, a device hostname, an IP or CIDR.
    pub src: String,
    /// Destination, in the same forms.
    pub dst: String,
    /// Destination port.
    pub port: u16,
    /// `tcp`, `udp`, ... (default: TCP or UDP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tailnet: Option<String>,
    /// `live` (default) or `desired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyChoice>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessAnswer {
    /// `accept` (every source reaches every destination), `drop` (none does) or `partial`.
    pub verdict: String,
    /// The rules granting it, e.g. `acls[0]`, `grants[2]`.
    pub matching_rules: Vec<String>,
    /// For `partial`: one accepted and one dropped example, `source -> destination`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_accepted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example_dropped: Option<String>,
    /// Which policy was evaluated.
    pub policy: PolicyChoice,
}

/// Device filters; every given filter must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tailnet: Option<String>,
    /// Carries this tag, e.g. `tag:server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Owned by this login name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Operating system, e.g. `linux` (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// Hostname or name contains this (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized: Option<bool>,
    /// Connected to the control plane now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    /// At most this many devices (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// A device, without keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub addresses: Vec<String>,
    pub os: String,
    pub user: String,
    pub tags: Vec<String>,
    pub authorized: bool,
    pub connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    pub client_version: String,
    pub update_available: bool,
    pub key_expiry_disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_expires: Option<String>,
    pub external: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceList {
    /// Devices matching the filters (before `limit`).
    pub matching: usize,
    pub devices: Vec<DeviceInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tailnet: Option<String>,
    /// Not seen for more than this many days is stale (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_days: Option<u32>,
    /// Keys expiring within this many days are reported (default 14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_days: Option<u32>,
}

/// The device and key audit (`tailnet-operator audit`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub summary: String,
    /// Findings: kind (Unauthorized, NodeKeyExpired, NodeKeyExpiring, AuthKeyExpiring, Stale,
    /// OutdatedClient, ...), subject and detail.
    pub report: Value,
}

/// Auth keys, API tokens and OAuth clients: metadata only, never the key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub id: String,
    pub key_type: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    pub reusable: bool,
    pub ephemeral: bool,
    pub preauthorized: bool,
    pub tags: Vec<String>,
    pub scopes: Vec<String>,
    pub invalid: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

/// A proposal and what became of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposalInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub target: ResourceKey,
    pub summary: String,
    /// `Apply` or `GitOps` (a patch file in `--manifests` mode).
    pub mode: String,
    pub approved: bool,
    /// Pending, Approved, Applied, Failed, Stale or Rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_diff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The patch file (`--manifests` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposalList {
    pub proposals: Vec<ProposalInfo>,
}

/// `propose_patch`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposeRequest {
    /// Kind of the resource to change, e.g. `TailnetPolicy`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its namespace, for namespaced kinds only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A JSON merge patch (RFC 7386) of the resource, e.g. `{"spec": {"policy": "..."}}`.
    pub patch: Value,
    /// Why, in a sentence or two, for the human reviewer.
    pub summary: String,
}

impl From<ProposeRequest> for ChangeRequest {
    fn from(request: ProposeRequest) -> ChangeRequest {
        ChangeRequest {
            operation: ProposalOperation::Patch,
            kind: request.kind,
            name: request.name,
            namespace: request.namespace,
            patch: Some(request.patch),
            object: None,
            summary: request.summary,
        }
    }
}

/// A change for a human to review, in its general form: what every propose tool builds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRequest {
    /// `Patch`, `Create` or `Delete`.
    pub operation: ProposalOperation,
    /// Kind of the resource, e.g. `DeviceTagSet`.
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `Patch`: a JSON merge patch of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Value>,
    /// `Create`: the whole object (`apiVersion`, `kind`, `metadata`, `spec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    /// Why, for the human reviewer.
    pub summary: String,
}

impl ChangeRequest {
    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            kind: self.kind.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
        }
    }

    /// The ChangeProposal spec this request asks for.
    pub fn spec(&self) -> crate::resources::ChangeProposalSpec {
        crate::resources::ChangeProposalSpec {
            target: crate::resources::change_proposal::ProposalTarget {
                kind: self.kind.clone(),
                name: self.name.clone(),
                namespace: self.namespace.clone(),
            },
            operation: self.operation,
            patch: self.patch.clone(),
            object: self.object.clone(),
            summary: self.summary.clone(),
            ..Default::default()
        }
    }
}

/// The view of a validated change, before the proposal's name and next step are known.
pub fn created_view(
    target: ResourceKey,
    operation: ProposalOperation,
    preview: crate::proposal::Preview,
) -> ProposalCreated {
    let yaml = match operation {
        ProposalOperation::Delete => None,
        _ => crate::proposal::manifest_yaml(&preview.patched).ok(),
    };
    ProposalCreated {
        target,
        operation: operation.as_str().to_owned(),
        yaml,
        yaml_diff: preview.diff,
        access_diff: preview.access_diff,
        validation: preview
            .validation
            .into_iter()
            .map(|v| ValidationView {
                check: v.check,
                ok: v.ok,
                message: v.message,
            })
            .collect(),
        ..Default::default()
    }
}

/// `adopt_drift`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdoptDriftRequest {
    /// Kind of the drifted resource, e.g. `TailnetPolicy`.
    pub kind: String,
    /// Its name.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// One validation step of a proposal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationView {
    pub check: String,
    pub ok: bool,
    #[serde(default)]
    pub message: String,
}

/// A created proposal: what it changes and how to review it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposalCreated {
    /// The ChangeProposal's name (or the patch file's name in `--manifests` mode).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub target: ResourceKey,
    /// `Patch`, `Create` or `Delete`.
    #[serde(default)]
    pub operation: String,
    /// The resource as it would be (created or patched), as YAML; absent for a delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yaml: Option<String>,
    /// Unified diff of the target's YAML, before and after.
    pub yaml_diff: String,
    /// For policy targets: who gains and loses access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_diff: Option<String>,
    pub validation: Vec<ValidationView>,
    /// The patch file written (`--manifests` mode), relative to the proposals directory's parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// What the human does next.
    pub next_step: String,
}
