//! `TailnetPolicy`: the tailnet's policy file (HuJSON), as one `Base` plus any number of
//! `Fragment`s merged into it (`docs/policy-reconcile.md`). Cluster-scoped, like the policy it manages.
//!
//! `deletionPolicy` defaults to `Orphan`: deleting the resource must not reset a tailnet's access
//! policy unless that was asked for explicitly.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    CommonSpec, CommonStatus, DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, OrphanByDefault,
};
use super::drift::DriftDiff;

/// Revisions kept when `spec.historyLimit` is not set.
pub const DEFAULT_HISTORY_LIMIT: u32 = 10;
/// Largest `spec.historyLimit`.
pub const MAX_HISTORY_LIMIT: u32 = 100;
/// Longest inline policy the schema accepts (characters). Tailscale's own limit is lower; this
/// keeps the resource well under the API server's object size limit.
pub const MAX_INLINE_POLICY_LENGTH: u32 = 512 * 1024;

/// A tailnet's access policy file, or a part of it.
// kube's `printcolumn(...)` repeats `name`/`type_` per column, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "tailnet.ops.dev",
    version = "v1alpha1",
    kind = "TailnetPolicy",
    plural = "tailnetpolicies",
    shortname = "tnp",
    category = "tailnetops",
    status = "TailnetPolicyStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A tailnet's access policy file (HuJSON): one Base per tailnet, plus Fragments merged into it in name order. Map sections (groups, tagOwners, hosts, postures) merge and a key defined twice is a conflict; list sections (acls, grants, ssh, nodeAttrs, tests, ...) concatenate.",
    printcolumn(
        name = "Role",
        type_ = "string",
        json_path = ".spec.role",
        description = "Base or Fragment"
    ),
    printcolumn(
        name = "ManagedTailnet",
        type_ = "string",
        json_path = ".spec.tailnetRef",
        description = "The ManagedTailnet resource this policy belongs to"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the tailnet holds this policy"
    ),
    printcolumn(
        name = "Drifted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Drifted\")].status",
        description = "Whether the live policy differs from what was applied"
    ),
    printcolumn(
        name = "Revision",
        type_ = "integer",
        json_path = ".status.appliedRevision",
        description = "The revision of the composed policy last applied"
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
    "rule": "has(self.policy) != has(self.policyFrom)",
    "message": "set exactly one of spec.policy (inline HuJSON) or spec.policyFrom (a ConfigMap key)",
}]))]
pub struct TailnetPolicySpec {
    #[serde(flatten)]
    pub common: CommonSpec<OrphanByDefault>,

    /// `Base`: the tailnet's policy file itself (one per tailnet); `Fragment`: sections merged
    /// into the Base.
    pub role: PolicyRole,

    /// The policy (or fragment) as HuJSON: JSON with comments and trailing commas, as in the
    /// admin console. Comments in a Base are kept in the tailnet's policy file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_INLINE_POLICY_LENGTH))]
    pub policy: Option<String>,

    /// Read the policy (or fragment) from a ConfigMap key instead of `policy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_from: Option<PolicySource>,

    /// How many applied revisions of the tailnet's composed policy to keep for rollback (taken
    /// from the Base; ignored on Fragments).
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 1, max = MAX_HISTORY_LIMIT))]
    pub history_limit: u32,
}

/// Whether a TailnetPolicy is the tailnet's policy file or a part merged into it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PolicyRole {
    #[default]
    Base,
    Fragment,
}

/// Where a policy is read from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicySource {
    /// A key of a ConfigMap holding the HuJSON text.
    pub config_map_key_ref: ConfigMapKeyRef,
}

/// A key in a ConfigMap.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Namespace of the ConfigMap (a TailnetPolicy is cluster-scoped, so it is explicit).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: String,
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key in the ConfigMap's data, e.g. `policy.hujson`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// What the operator last did with this policy. `Ready` means the tailnet holds the composed
/// policy including this resource; `Drifted` that the live policy differs from what was applied.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TailnetPolicyStatus {
    /// Conditions, observed generation and last sync time, as every kind has them.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The revision number of the composed policy last applied that included this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<u32>,
    /// SHA-256 (hex) of the composed policy text last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hash: Option<String>,
    /// The revision pinned by the `tailnet.ops.dev/rollback-to` annotation, while it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_revision: Option<u32>,
    /// How the live policy differs from what was applied (set while `Drifted` is True).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftDiff>,
    /// Why this resource's policy was not applied (invalid HuJSON, an unowned tag, a failing
    /// policy test, a conflict), naming the problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_reason: Option<String>,
    /// Keys this resource defines that another resource also defines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<PolicyConflict>,
    /// How the last applied change altered who can reach what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_access_diff: Option<AccessDiffSummary>,
}

/// A map key defined by more than one source.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyConflict {
    /// The section and key, e.g. `groups/group:eng`.
    pub key: String,
    /// Every source defining it, e.g. `TailnetPolicy/base` and `TailnetPolicy/team-a`.
    pub sources: Vec<String>,
}

/// Counts from the access diff between the previous and the newly applied policy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessDiffSummary {
    /// Source → destination:port pairs the change allowed that were denied before.
    pub gained: u64,
    /// Source → destination:port pairs the change denied that were allowed before.
    pub lost: u64,
    /// The biggest changes by class of devices, e.g. `+ group:eng (812 devices) -> tag:prod
    /// (40 devices) tcp:443  gained (32,480 device pairs)`; at most ten, then `... and N
    /// more class lines`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}

impl Default for TailnetPolicySpec {
    fn default() -> Self {
        TailnetPolicySpec {
            common: CommonSpec::default(),
            role: PolicyRole::Base,
            policy: None,
            policy_from: None,
            history_limit: DEFAULT_HISTORY_LIMIT,
        }
    }
}

impl PolicyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyRole::Base => "Base",
            PolicyRole::Fragment => "Fragment",
        }
    }
}

fn default_history_limit() -> u32 {
    DEFAULT_HISTORY_LIMIT
}

super::tailnet_scoped_kind!(TailnetPolicy, TailnetPolicyStatus, OrphanByDefault);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::common::{DeletionPolicy, DriftPolicy};
    use serde_json::json;

    #[test]
    fn deletion_policy_defaults_to_orphan() {
        let spec: TailnetPolicySpec = serde_json::from_value(json!({
            "role": "Base",
            "policy": "{}",
        }))
        .unwrap();
        assert_eq!(spec.common.deletion_policy, DeletionPolicy::Orphan);
        assert_eq!(spec.common.tailnet_ref, "default");
        assert_eq!(spec.common.drift_policy, DriftPolicy::Correct);
        assert_eq!(spec.history_limit, 10);
    }

    #[test]
    fn common_controls_sit_directly_under_spec() {
        let spec: TailnetPolicySpec = serde_json::from_value(json!({
            "tailnetRef": "prod",
            "driftPolicy": "Report",
            "deletionPolicy": "Delete",
            "suspend": true,
            "role": "Fragment",
            "policyFrom": {"configMapKeyRef": {"namespace": "ops", "name": "acl", "key": "policy.hujson"}},
        }))
        .unwrap();
        assert_eq!(spec.common.tailnet_ref, "prod");
        assert!(spec.common.suspend);
        assert!(spec.common.deletes_on_removal());
        assert_eq!(spec.role, PolicyRole::Fragment);
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["tailnetRef"], "prod");
        assert_eq!(
            back["policyFrom"]["configMapKeyRef"]["key"],
            "policy.hujson"
        );
        assert!(back.get("common").is_none());
    }

    #[test]
    fn the_default_spec_matches_the_serde_defaults() {
        let from_json: TailnetPolicySpec = serde_json::from_value(json!({"role": "Base"})).unwrap();
        assert_eq!(from_json, TailnetPolicySpec::default());
    }

    #[test]
    fn an_empty_status_serializes_to_an_empty_object() {
        assert_eq!(
            serde_json::to_value(TailnetPolicyStatus::default()).unwrap(),
            json!({})
        );
    }
}
