//! `DeviceTagSet`: tags (and optionally authorization, key expiry and enabled subnet routes) for
//! the devices a selector matches (`docs/device-tag-set.md`). Cluster-scoped, like the devices it manages.
//!
//! Several sets may match one device: `Add` sets combine; sets that disagree on a device (two
//! `Exact` sets with different tags, an `Add` tag outside an `Exact` set, different
//! `authorized` / `keyExpiryDisabled` / `routes`) are a conflict, and that device is written by
//! neither (see `docs/device-tag-set.md`).
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, CommonStatus};
use super::drift::DriftDiff;

/// The syntax of a tag: `tag:` and lower-case letters, digits and dashes.
pub const TAG_PATTERN: &str = "^tag:[a-z0-9-]+$";
/// Most entries in one list of a spec (keeps CEL evaluation cost bounded).
pub const MAX_LIST_ITEMS: u32 = 64;
/// At most this many matched devices are listed in status (the count is always exact).
pub const MAX_LISTED_DEVICES: usize = 50;

/// Tags, authorization, key expiry and subnet routes for the devices a selector matches.
// kube's `printcolumn(...)` repeats `name`/`type_` per column, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "tailnet.ops.dev",
    version = "v1alpha1",
    kind = "DeviceTagSet",
    plural = "devicetagsets",
    shortname = "tndts",
    category = "tailnetops",
    status = "DeviceTagSetStatus",
    derive = "PartialEq",
    doc = "Tags (mode Add or Exact) and optionally authorization, key expiry and enabled subnet routes for the devices of a tailnet that a selector matches. Devices tagged tag:k8s* (Tailscale's own operator) and devices shared in from other tailnets are skipped unless the selector names them by node id.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every matched device holds the desired state"
    ),
    printcolumn(
        name = "Drifted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Drifted\")].status",
        description = "Whether a matched device was changed outside the operator"
    ),
    printcolumn(
        name = "Matched",
        type_ = "integer",
        json_path = ".status.matchedCount",
        description = "How many devices the selector matches"
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
pub struct DeviceTagSetSpec {
    #[serde(flatten)]
    pub common: CommonSpec,

    /// Which devices this set manages. Every part given must match (they are ANDed); at least
    /// one part must be given.
    pub selector: DeviceSelector,

    /// Tags for the matched devices, e.g. `tag:server`. Each must be defined in the tailnet
    /// policy's `tagOwners` (in the Base TailnetPolicy), or the API refuses it.
    #[serde(default)]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(max = 128)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(t, t.matches('^tag:[a-z0-9-]+$'))",
        "message": "tags must look like tag:name (lower-case letters, digits and dashes after `tag:`)",
    }]))]
    pub tags: Vec<String>,

    /// `Add` (default): the tags are added and a device's other tags are kept. `Exact`: the
    /// device gets exactly these tags, others are removed.
    #[serde(default)]
    pub mode: TagMode,

    /// Authorize (`true`) or de-authorize (`false`) the matched devices. Unset: left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized: Option<bool>,

    /// Disable (`true`) or re-enable (`false`) node-key expiry of the matched devices. Unset:
    /// left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_expiry_disabled: Option<bool>,

    /// The subnet routes to have enabled on the matched devices, as CIDR prefixes without host
    /// bits (an exit node is `0.0.0.0/0` and `::/0`). A route is enabled once the device
    /// advertises it (until then status lists it as waiting); enabled routes not listed here
    /// are disabled, except those the policy's `autoApprovers` approve for the device. Unset:
    /// routes are left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(max = 64)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(r, isCIDR(r) && cidr(r).masked() == cidr(r))",
        "message": "routes must be CIDR prefixes without host bits, e.g. 10.0.0.0/24, 0.0.0.0/0 or ::/0",
    }]))]
    pub routes: Option<Vec<String>>,
}

/// Which devices a set manages. Globs use `*` (any run of characters) and `?` (one
/// character) and ignore case.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.hostnames) && size(self.hostnames) > 0) || (has(self.names) && size(self.names) > 0) || (has(self.os) && size(self.os) > 0) || (has(self.tags) && size(self.tags) > 0) || (has(self.nodeIds) && size(self.nodeIds) > 0) || has(self.user)",
    "message": "the selector needs at least one of hostnames, names, os, tags, user or nodeIds (an empty selector would match every device)",
}]))]
pub struct DeviceSelector {
    /// Globs over the machine name (`hostname`), e.g. `web-*`; a device matches any of them.
    #[serde(default)]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(min = 1, max = 253)))]
    pub hostnames: Vec<String>,

    /// Globs over the MagicDNS name, either the full name (`web-1.tailXXXX.ts.net`) or its
    /// first label (`web-1`); a device matches any of them.
    #[serde(default)]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(min = 1, max = 253)))]
    pub names: Vec<String>,

    /// Operating systems as the API reports them (`linux`, `macOS`, `windows`, `iOS`,
    /// `android`, ...; case ignored); a device matches any of them.
    #[serde(default)]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(min = 1, max = 64)))]
    pub os: Vec<String>,

    /// Tags the device must already carry, all of them.
    #[serde(default)]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(max = 128)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(t, t.matches('^tag:[a-z0-9-]+$'))",
        "message": "selector tags must look like tag:name",
    }]))]
    pub tags: Vec<String>,

    /// Login name of the user who registered the device, e.g. `alice@example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 320))]
    pub user: Option<String>,

    /// Node ids (`nodeId`, e.g. `n292kg92CNTRL`); a device matches any of them. Naming a
    /// device here is the only way to manage a `tag:k8s*` or shared-in device.
    #[serde(default)]
    #[schemars(length(max = MAX_LIST_ITEMS), inner(length(min = 1, max = 64)))]
    pub node_ids: Vec<String>,
}

/// How `tags` applies.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TagMode {
    /// Ensure the tags are present; keep the device's other tags.
    #[default]
    Add,
    /// The device gets exactly these tags.
    Exact,
}

impl TagMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TagMode::Add => "Add",
            TagMode::Exact => "Exact",
        }
    }
}

/// What the set found and did at the last reconcile.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceTagSetStatus {
    /// Conditions, observed generation and last sync time, as every kind has them.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// How many devices the selector matches (after skipping `tag:k8s*` and shared-in
    /// devices not named by node id).
    #[serde(default)]
    pub matched_count: u32,
    /// How many matched devices do not hold the desired state (conflicts, failed writes,
    /// reported drift).
    #[serde(default)]
    pub out_of_sync_count: u32,
    /// The first matched devices (by hostname), at most 50.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<MatchedDevice>,
    /// Devices with wanted routes they do not advertise yet: enabled once they do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for_routes: Vec<WaitingDevice>,
    /// Other sets that want something different on the same devices; those devices are
    /// written by neither set until the conflict is resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<TagSetConflict>,
    /// How matched devices differ from the desired state after a change outside the operator
    /// (set while `Drifted` is True).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftDiff>,
    /// The generation whose desired state was last fully applied. Differences found later at
    /// the same generation are drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_generation: Option<i64>,
    /// The tailnet state time of that application: devices registered later are new, not
    /// drifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_time: Option<Time>,
}

/// A matched device.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MatchedDevice {
    /// The device's machine name.
    pub name: String,
    pub node_id: String,
    /// Whether the device holds this set's desired state.
    pub in_sync: bool,
}

/// A device waiting to advertise routes this set wants enabled.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WaitingDevice {
    pub name: String,
    pub node_id: String,
    /// The wanted routes the device does not advertise.
    pub routes: Vec<String>,
}

/// Disagreement with another set.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TagSetConflict {
    /// The other set, as `DeviceTagSet/<name>`.
    pub with: String,
    /// What the two disagree on: `tags`, `authorized`, `keyExpiryDisabled`, `routes`.
    pub fields: Vec<String>,
    /// How many devices are affected.
    pub devices: u32,
    /// The first affected devices' machine names.
    pub examples: Vec<String>,
}

super::tailnet_scoped_kind!(DeviceTagSet, DeviceTagSetStatus, DeleteByDefault);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_add_mode_and_delete_on_removal() {
        let spec: DeviceTagSetSpec = serde_json::from_value(json!({
            "selector": {"hostnames": ["web-*"]},
            "tags": ["tag:server"],
        }))
        .unwrap();
        assert_eq!(spec.mode, TagMode::Add);
        assert!(spec.common.deletes_on_removal());
        assert_eq!(spec.routes, None);
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["tailnetRef"], "default");
        assert!(back.get("authorized").is_none());
    }

    #[test]
    fn an_empty_status_serializes_with_counts_only() {
        assert_eq!(
            serde_json::to_value(DeviceTagSetStatus::default()).unwrap(),
            json!({"matchedCount": 0, "outOfSyncCount": 0})
        );
    }
}
