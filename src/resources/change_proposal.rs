//! `ChangeProposal`: a patch to one of the operator's resources, proposed by someone (usually
//! the MCP server on an assistant's behalf) and applied only after a human approves it
//! (`docs/change-proposal.md`). Namespaced, so who may propose and who may approve is ordinary RBAC.
//!
//! It owns nothing in the tailnet. The operator validates the patch against the target as it is
//! now, records what the change would do (YAML diff, access diff for policies) and the target's
//! `resourceVersion` it was computed against, and applies it only once `spec.approved` is true
//! and only if the target has not changed since.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN};

/// Longest `spec.summary` (characters).
pub const MAX_SUMMARY_LENGTH: u32 = 2048;

/// A reviewed change to one of the operator's resources. CEL rules (evaluated by the API server): a proposal cannot be created with
/// `spec.approved: true`; `spec.target`, `spec.patch` and `spec.mode` cannot change once it
/// exists (what a human approves is what the proposer created).
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "tailnet.ops.dev",
    version = "v1alpha1",
    kind = "ChangeProposal",
    plural = "changeproposals",
    shortname = "tncp",
    category = "tailnetops",
    namespaced,
    status = "ChangeProposalStatus",
    derive = "PartialEq",
    doc = "A proposed change to one of the operator's resources: a JSON merge patch, a new object, or a deletion. The operator validates it and shows its effect in status; it is applied only after a human sets spec.approved to true (mode Apply), or exported for a git commit (mode GitOps).",
    printcolumn(
        name = "Operation",
        type_ = "string",
        json_path = ".spec.operation",
        description = "Patch, Create or Delete"
    ),
    printcolumn(
        name = "Kind",
        type_ = "string",
        json_path = ".spec.target.kind",
        description = "Kind of the resource the proposal changes"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.target.name",
        description = "Name of the resource the proposal changes"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "Apply (the operator applies it once approved) or GitOps (exported for a commit)"
    ),
    printcolumn(
        name = "Approved",
        type_ = "boolean",
        json_path = ".spec.approved",
        description = "Whether a human approved the change"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Approved, Applied, Failed, Stale or Rejected"
    ),
    printcolumn(
        name = "Summary",
        type_ = "string",
        json_path = ".spec.summary",
        priority = 1,
        description = "What the change is for"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "oldSelf.hasValue() || !self.approved",
        "optionalOldSelf": true,
        "message": "a ChangeProposal cannot be created already approved: create it with spec.approved unset (false); a human reviewer sets it to true",
    },
    {
        "rule": "self.target == oldSelf.target",
        "message": "spec.target is immutable: create a new ChangeProposal to change another resource",
    },
    {
        "rule": "has(self.patch) == has(oldSelf.patch) && (!has(self.patch) || self.patch == oldSelf.patch)",
        "message": "spec.patch is immutable: the reviewed patch is the one applied; create a new ChangeProposal for a different patch",
    },
    {
        "rule": "has(self.object) == has(oldSelf.object) && (!has(self.object) || self.object == oldSelf.object)",
        "message": "spec.object is immutable: the reviewed object is the one created; create a new ChangeProposal for a different object",
    },
    {
        "rule": "self.operation == oldSelf.operation",
        "message": "spec.operation is immutable: create a new ChangeProposal for another operation",
    },
    {
        "rule": "has(self.patch) == (self.operation == 'Patch')",
        "message": "spec.patch is required for operation Patch and not allowed for Create or Delete (a Create carries spec.object)",
    },
    {
        "rule": "has(self.object) == (self.operation == 'Create')",
        "message": "spec.object (the whole object to create) is required for operation Create and not allowed for Patch or Delete",
    },
    {
        "rule": "self.mode == oldSelf.mode",
        "message": "spec.mode is immutable: what was reviewed for Apply or GitOps stays so; create a new ChangeProposal for the other mode",
    },
]))]
pub struct ChangeProposalSpec {
    /// The resource the proposal changes, creates or deletes.
    pub target: ProposalTarget,

    /// `Patch` (default): apply `patch` to the existing target. `Create`: create `object`,
    /// only while the target's name is free. `Delete`: delete the target, only if it has not
    /// changed since the proposal was computed; its `deletionPolicy` decides what leaves the
    /// tailnet (shown in status before approval).
    #[serde(default)]
    pub operation: ProposalOperation,

    /// For `Patch`: a JSON merge patch (RFC 7386) applied to the target's `spec`-bearing
    /// object, e.g. `{"spec": {"tags": ["tag:web"]}}`. Only `spec` (and `metadata.labels` /
    /// `metadata.annotations`) may be changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub patch: Option<serde_json::Value>,

    /// For `Create`: the whole object (`apiVersion`, `kind`, `metadata.name`, optional
    /// `metadata.namespace`, labels and annotations, `spec`), validated as the API server
    /// validates a create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub object: Option<serde_json::Value>,

    /// What the change is for, in a sentence or two, for the reviewer.
    #[schemars(length(min = 1, max = MAX_SUMMARY_LENGTH))]
    pub summary: String,

    /// `Apply`: once approved, the operator applies the patch to the target. `GitOps`: the
    /// operator never applies it; `tailnet-operator proposal export NAME` prints the patch for a
    /// commit.
    #[serde(default)]
    pub mode: ProposalMode,

    /// Set to `true` by a human reviewer to approve the change. A proposal cannot be created
    /// already approved.
    #[serde(default)]
    pub approved: bool,
}

/// The resource a proposal changes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ProposalTarget {
    /// Kind of the target, e.g. `TailnetPolicy` or `DeviceTagSet` (group `tailnet.ops.dev`).
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[A-Z][A-Za-z0-9]*$"))]
    pub kind: String,
    /// Name of the target.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Namespace of the target, for namespaced kinds; empty for cluster-scoped ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
}

/// What a proposal does to its target.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProposalOperation {
    #[default]
    Patch,
    Create,
    Delete,
}

impl ProposalOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalOperation::Patch => "Patch",
            ProposalOperation::Create => "Create",
            ProposalOperation::Delete => "Delete",
        }
    }
}

/// Whether the operator applies an approved proposal or leaves it for a git commit.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProposalMode {
    #[default]
    Apply,
    GitOps,
}

/// Where a proposal is in its lifecycle.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProposalPhase {
    /// Validated, waiting for a human's approval.
    #[default]
    Pending,
    /// Approved: the operator is applying it (mode Apply), or it awaits its commit (mode
    /// GitOps: never applied).
    Approved,
    /// Applied to the target.
    Applied,
    /// Applying it failed; `status.message` says why.
    Failed,
    /// The target changed after the proposal was computed; propose again.
    Stale,
    /// The patch is invalid for the target (schema, planner or policy tests); never applied.
    Rejected,
}

/// What the operator found when it checked the proposal, and what became of it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChangeProposalStatus {
    /// Conditions, observed generation and last sync time, as every kind has them.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Pending, Approved, Applied, Failed, Stale or Rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ProposalPhase>,
    /// Each check run on the patched target (schema, planner, policy tests), with its outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<ValidationResult>,
    /// Unified diff of the target's YAML before and after the patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// For policy targets: who gains and who loses access (source → destination:port), rendered
    /// one pair per line and capped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_diff: Option<String>,
    /// The target's `metadata.resourceVersion` the diff was computed against; the patch is
    /// applied only if the target still has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_resource_version: Option<String>,
    /// SHA-256 (hex) of the target's spec, labels and annotations the diff was computed
    /// against: a target whose resourceVersion moved only because its status was written is
    /// not stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hash: Option<String>,
    /// When the patch was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
    /// When it became Applied, Failed, Stale or Rejected; it is deleted the operator's
    /// `--proposal-ttl` later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Why the proposal is Failed, Stale or Rejected, and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One check run on the patched target.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ValidationResult {
    /// The check, e.g. `schema`, `planner`, `policyTests`.
    pub check: String,
    /// Whether it passed.
    pub ok: bool,
    /// What it found.
    #[serde(default)]
    pub message: String,
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

impl ProposalPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalPhase::Pending => "Pending",
            ProposalPhase::Approved => "Approved",
            ProposalPhase::Applied => "Applied",
            ProposalPhase::Failed => "Failed",
            ProposalPhase::Stale => "Stale",
            ProposalPhase::Rejected => "Rejected",
        }
    }

    /// Applied, Failed, Stale and Rejected are final: nothing happens to the proposal any more
    /// but its garbage collection.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            ProposalPhase::Applied
                | ProposalPhase::Failed
                | ProposalPhase::Stale
                | ProposalPhase::Rejected
        )
    }

    /// Every phase, for gauges that report zero too.
    pub const ALL: [ProposalPhase; 6] = [
        ProposalPhase::Pending,
        ProposalPhase::Approved,
        ProposalPhase::Applied,
        ProposalPhase::Failed,
        ProposalPhase::Stale,
        ProposalPhase::Rejected,
    ];
}
