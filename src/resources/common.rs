//! The controls every kind shares (`docs/crd-reference.md`; Crossplane and Flux conventions), the operator's
//! annotation, finalizer and field-manager names, and small schema helpers the kinds reuse.
//!
//! Each kind flattens [`CommonSpec`] into its spec, so `tailnetRef`, `driftPolicy`, `suspend` and
//! `deletionPolicy` sit directly under `spec` with the same names, defaults, descriptions and
//! validation everywhere. Only the default of `deletionPolicy` differs between kinds; it is the
//! type parameter `D` (see [`DeletionDefault`]), so the default is visible in the schema and in
//! Rust, and no kind has to remember to resolve an `Option` at every use.
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::{ConditionType, Verdict, set_condition};

/// API group of every kind.
pub const GROUP: &str = "tailnet.ops.dev";
/// API version of every kind.
pub const VERSION: &str = "v1alpha1";
/// `kubectl get tailnetops` lists every kind of this operator.
pub const CATEGORY: &str = "tailnetops";

/// Any new value forces a reconcile now (the value itself is not interpreted).
pub const RECONCILE_AT_ANNOTATION: &str = "tailnet.ops.dev/reconcile-at";
/// Break-glass: pins a `TailnetPolicy`'s tailnet to the named revision number until removed.
pub const ROLLBACK_TO_ANNOTATION: &str = "tailnet.ops.dev/rollback-to";
/// The finalizer, set only on resources whose deletion must clean up external state.
pub const FINALIZER: &str = "tailnet.ops.dev/cleanup";
/// The one field manager for every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "tailnet-operator";
/// The `ManagedTailnet` a resource belongs to when `spec.tailnetRef` is not set.
pub const DEFAULT_TAILNET_REF: &str = "default";

/// What to do when the live tailnet differs from what this operator last applied.
///
/// `Correct` re-applies the desired state; `Report` sets the `Drifted` condition, emits an event
/// and a metric, and changes nothing.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DriftPolicy {
    #[default]
    Correct,
    Report,
}

/// What happens in the tailnet when the resource is deleted.
///
/// `Delete` removes what this resource created or contributed; `Orphan` leaves the tailnet as it
/// is and only forgets the resource.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeletionPolicy {
    Delete,
    Orphan,
}

impl DriftPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftPolicy::Correct => "Correct",
            DriftPolicy::Report => "Report",
        }
    }
}

impl DeletionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionPolicy::Delete => "Delete",
            DeletionPolicy::Orphan => "Orphan",
        }
    }
}

impl fmt::Display for DriftPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DeletionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `deletionPolicy` a kind uses when the spec does not set one.
pub trait DeletionDefault {
    const DEFAULT: DeletionPolicy;

    /// For `#[serde(default = ...)]`, which needs a function path.
    fn deletion_policy() -> DeletionPolicy {
        Self::DEFAULT
    }
}

/// Most kinds: deleting the resource removes what it created (`docs/crd-reference.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteByDefault;

/// `TailnetPolicy`: resetting a tailnet's policy on delete must be asked for explicitly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrphanByDefault;

impl DeletionDefault for DeleteByDefault {
    const DEFAULT: DeletionPolicy = DeletionPolicy::Delete;
}

impl DeletionDefault for OrphanByDefault {
    const DEFAULT: DeletionPolicy = DeletionPolicy::Orphan;
}

/// The common controls, flattened into every kind's spec (`#[serde(flatten)]`).
///
/// `D` only chooses the default of `deletion_policy`; it carries no data.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", bound = "")]
#[schemars(bound = "D: DeletionDefault")]
pub struct CommonSpec<D: DeletionDefault = DeleteByDefault> {
    /// Name of the cluster-scoped `ManagedTailnet` resource that holds the connection and credentials
    /// this resource uses. Immutable: to move a resource to another tailnet, create a new one.
    #[serde(default = "default_tailnet_ref")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "tailnetRef is immutable; create a new resource to manage another tailnet",
    }]))]
    pub tailnet_ref: String,

    /// What to do when someone changes the tailnet outside this operator (for example in the
    /// admin console): `Correct` (default) re-applies the desired state; `Report` sets the
    /// `Drifted` condition, emits an event and a metric, and changes nothing.
    #[serde(default)]
    pub drift_policy: DriftPolicy,

    /// Stop changing the tailnet for this resource while `true`. The operator keeps observing
    /// and reporting status (including drift) but makes no writes.
    #[serde(default)]
    pub suspend: bool,

    /// What happens in the tailnet when this resource is deleted: `Delete` removes what it
    /// created or contributed, `Orphan` leaves the tailnet unchanged. The default depends on the
    /// kind (`Orphan` for `TailnetPolicy`, `Delete` for the others).
    #[serde(default = "D::deletion_policy")]
    pub deletion_policy: DeletionPolicy,

    #[serde(skip)]
    #[schemars(skip)]
    pub _deletion_default: PhantomData<D>,
}

impl<D: DeletionDefault> Default for CommonSpec<D> {
    fn default() -> Self {
        CommonSpec {
            tailnet_ref: default_tailnet_ref(),
            drift_policy: DriftPolicy::default(),
            suspend: false,
            deletion_policy: D::DEFAULT,
            _deletion_default: PhantomData,
        }
    }
}

impl<D: DeletionDefault> CommonSpec<D> {
    /// Whether drift should be corrected (as opposed to only reported).
    pub fn corrects_drift(&self) -> bool {
        self.drift_policy == DriftPolicy::Correct
    }

    /// Whether deleting the resource should remove its effect from the tailnet.
    pub fn deletes_on_removal(&self) -> bool {
        self.deletion_policy == DeletionPolicy::Delete
    }
}

/// The status fields every kind shares, flattened into each kind's status
/// (`#[serde(flatten)]`), so `conditions`, `observedGeneration` and `lastSyncTime` have the same
/// names, schema and meaning everywhere and shared code (readiness, drift gauges, Argo CD health)
/// reads them the same way for every kind.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// `Ready` (the tailnet matches this resource), `Synced` (the last reconcile finished) and
    /// `Drifted` (the live tailnet differs from what this resource last applied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the tailnet state this status describes was last read successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
}

impl CommonStatus {
    /// Records a reconcile's three verdicts for `generation`. Conditions go through
    /// [`set_condition`], so a transition time moves only when a condition flips.
    pub fn record(
        &mut self,
        [ready, synced, drifted]: [&Verdict; 3],
        generation: Option<i64>,
        now: &Time,
    ) {
        for (type_, verdict) in [
            (ConditionType::Ready, ready),
            (ConditionType::Synced, synced),
            (ConditionType::Drifted, drifted),
        ] {
            set_condition(
                &mut self.conditions,
                type_,
                verdict.status,
                &verdict.reason,
                &verdict.message,
                generation,
                now,
            );
        }
        self.observed_generation = generation;
    }
}

fn default_tailnet_ref() -> String {
    DEFAULT_TAILNET_REF.to_owned()
}

/// A Kubernetes object name (RFC 1123 subdomain), the form `tailnetRef` and Secret or ConfigMap
/// names must have.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A namespace name (RFC 1123 label).
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A duration like `30s`, `5m`, `1h30m`, `500ms`: one or more whole numbers with a unit. The
/// schema checks it with this pattern and [`parse_duration`] accepts exactly the same strings,
/// which are also what CEL's `duration()` and Go's `time.ParseDuration` accept.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// A duration string in a spec that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a duration: use whole numbers with a unit of ms, s, m or h, e.g. `30s`, `5m`, `1h30m`"
)]
pub struct DurationError {
    pub text: String,
}

/// Parses the durations [`DURATION_PATTERN`] allows.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let error = || DurationError {
        text: text.to_owned(),
    };
    if text.is_empty() {
        return Err(error());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
        if digits == 0 {
            return Err(error());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| error())?;
        rest = &rest[digits..];
        let (unit, millis) = if rest.starts_with("ms") {
            ("ms", 1)
        } else if rest.starts_with('s') {
            ("s", 1_000)
        } else if rest.starts_with('m') {
            ("m", 60_000)
        } else if rest.starts_with('h') {
            ("h", 3_600_000)
        } else {
            return Err(error());
        };
        rest = &rest[unit.len()..];
        let part = number
            .checked_mul(millis)
            .map(Duration::from_millis)
            .ok_or_else(error)?;
        total = total.checked_add(part).ok_or_else(error)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_fill_an_empty_spec_and_depend_on_the_kind() {
        let delete: CommonSpec = serde_json::from_value(json!({})).unwrap();
        assert_eq!(delete, CommonSpec::default());
        assert_eq!(delete.tailnet_ref, "default");
        assert_eq!(delete.drift_policy, DriftPolicy::Correct);
        assert!(!delete.suspend);
        assert_eq!(delete.deletion_policy, DeletionPolicy::Delete);

        let orphan: CommonSpec<OrphanByDefault> = serde_json::from_value(json!({})).unwrap();
        assert_eq!(orphan.deletion_policy, DeletionPolicy::Orphan);
        assert_eq!(orphan, CommonSpec::<OrphanByDefault>::default());
        assert!(!orphan.deletes_on_removal());
    }

    #[test]
    fn explicit_values_win_over_defaults() {
        let spec: CommonSpec<OrphanByDefault> = serde_json::from_value(json!({
            "tailnetRef": "prod",
            "driftPolicy": "Report",
            "suspend": true,
            "deletionPolicy": "Delete",
        }))
        .unwrap();
        assert_eq!(spec.tailnet_ref, "prod");
        assert!(!spec.corrects_drift());
        assert!(spec.suspend);
        assert!(spec.deletes_on_removal());
    }

    #[test]
    fn serializes_with_camel_case_names_and_no_marker() {
        let value = serde_json::to_value(CommonSpec::<DeleteByDefault>::default()).unwrap();
        assert_eq!(
            value,
            json!({
                "tailnetRef": "default",
                "driftPolicy": "Correct",
                "suspend": false,
                "deletionPolicy": "Delete",
            })
        );
    }

    #[test]
    fn unknown_policies_are_rejected() {
        let err = serde_json::from_value::<CommonSpec>(json!({"driftPolicy": "Ignore"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Ignore"), "{err}");
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(
            parse_duration("1m30s250ms"),
            Ok(Duration::from_millis(90_250))
        );
    }

    #[test]
    fn malformed_durations_name_the_text_and_the_form() {
        for bad in [
            "",
            "5",
            "m",
            "5x",
            "-5m",
            "1.5h",
            "5 m",
            "5M",
            "99999999999999999999h",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert_eq!(err.text, bad);
            assert!(err.to_string().contains("e.g. `30s`"), "{err}");
        }
    }
}
