//! Tailnet settings, partially managed (pure): given `spec.settings`, what was applied and the
//! live settings, the one PATCH to make (only the managed fields that differ) and the drift.
//!
//! A field left out of the spec is not managed: never written, never drift. A managed field
//! whose live value differs from what was applied while the spec still asks for that value is
//! drift (a console change): corrected or reported per `spec.settings.driftPolicy`.
use serde_json::{Map, Value};

use crate::resources::DriftDiff;
use crate::resources::drift::{DiffOptions, diff_with};
use crate::resources::tailnet::SettingsSpec;
use crate::tailscale::{TailnetSettings, TailnetSettingsPatch};

/// Drift entries kept.
const DRIFT_ENTRIES: usize = 20;

/// Why the settings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsWrite {
    /// A managed field was never applied, or the spec changed.
    SpecChanged,
    /// A console change of a managed field is put back.
    DriftCorrection,
}

/// The decision for one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsPlan {
    /// The PATCH (only managed fields that differ), or none.
    pub patch: Option<(TailnetSettingsPatch, SettingsWrite)>,
    /// Live differs from what was applied (console edits).
    pub drift: Option<DriftDiff>,
    /// What `status.settings.applied` says after the pass (when the patch, if any, succeeds).
    pub applied: SettingsSpec,
}

/// The managed fields of `spec` as JSON (camelCase names, only the fields set).
fn managed(spec: &SettingsSpec) -> Map<String, Value> {
    let mut map = match serde_json::to_value(spec) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    map.remove("driftPolicy");
    map
}

/// `live`'s values of the fields `fields` names.
fn live_of(live: &TailnetSettings, fields: &Map<String, Value>) -> Map<String, Value> {
    let all = match serde_json::to_value(live) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    fields
        .keys()
        .map(|k| (k.clone(), all.get(k).cloned().unwrap_or(Value::Null)))
        .collect()
}

/// Plans one pass. `suspended`: nothing is written (the drift is still reported).
pub fn plan(
    spec: &SettingsSpec,
    applied: Option<&SettingsSpec>,
    live: &TailnetSettings,
    suspended: bool,
) -> SettingsPlan {
    let desired = managed(spec);
    let live_values = live_of(live, &desired);
    let options = DiffOptions {
        cap: DRIFT_ENTRIES,
        string_arrays_as_sets: false,
    };
    // Drift: only fields whose applied value the spec still asks for.
    let drift = applied.map(managed).and_then(|applied| {
        let still: Map<String, Value> = applied
            .into_iter()
            .filter(|(k, v)| desired.get(k) == Some(v))
            .collect();
        let live_still = live_of(live, &still);
        let diff = diff_with(&Value::Object(still), &Value::Object(live_still), &options);
        (!diff.is_empty()).then_some(diff)
    });
    let differing: Map<String, Value> = desired
        .iter()
        .filter(|(k, v)| live_values.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut plan = SettingsPlan {
        patch: None,
        drift: drift.clone(),
        applied: spec.clone(),
    };
    if differing.is_empty() || suspended {
        return plan;
    }
    let corrects = spec.drift_policy == crate::resources::DriftPolicy::Correct;
    let why = if drift.is_some() {
        SettingsWrite::DriftCorrection
    } else {
        SettingsWrite::SpecChanged
    };
    // Report: leave drifted fields alone, still apply the spec's own changes.
    let to_write: Map<String, Value> = differing
        .into_iter()
        .filter(|(k, _)| {
            corrects
                || !drift
                    .as_ref()
                    .is_some_and(|d| d.entries.iter().any(|e| e.path == format!("/{k}")))
        })
        .collect();
    if !corrects && let Some(applied) = applied {
        // The reported fields keep their applied value in status.
        plan.applied = applied.clone();
        let mut merged = managed(applied);
        merged.extend(to_write.clone());
        if let Ok(spec) = serde_json::from_value::<SettingsSpec>(Value::Object(merged)) {
            plan.applied = SettingsSpec {
                drift_policy: plan.applied.drift_policy,
                ..spec
            };
        }
    }
    if to_write.is_empty() {
        return plan;
    }
    if let Ok(patch) = serde_json::from_value::<TailnetSettingsPatch>(Value::Object(to_write)) {
        plan.patch = Some((patch, why));
    }
    plan
}

/// The fields of a PATCH with the scope each needs, for a refused write: `httpsEnabled
/// (networking_settings), devicesApprovalOn (feature_settings)`.
pub fn scopes_of(patch: &TailnetSettingsPatch) -> String {
    let fields = match serde_json::to_value(patch) {
        Ok(Value::Object(map)) => map.keys().cloned().collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    fields
        .iter()
        .map(|f| {
            let scope = match f.as_str() {
                "httpsEnabled" => "networking_settings",
                "aclsExternallyManagedOn" | "aclsExternalLink" => "policy_file",
                "networkFlowLoggingOn" => "logs:network",
                _ => "feature_settings",
            };
            format!("{f} ({scope})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::DriftPolicy;

    fn spec() -> SettingsSpec {
        SettingsSpec {
            devices_approval_on: Some(true),
            devices_key_duration_days: Some(90),
            https_enabled: Some(true),
            ..SettingsSpec::default()
        }
    }

    fn live() -> TailnetSettings {
        TailnetSettings {
            devices_approval_on: Some(false),
            devices_key_duration_days: Some(180),
            https_enabled: Some(false),
            users_approval_on: Some(true),
            ..TailnetSettings::default()
        }
    }

    fn patched(live: &TailnetSettings, patch: &TailnetSettingsPatch) -> TailnetSettings {
        let mut value = serde_json::to_value(live).unwrap();
        for (k, v) in serde_json::to_value(patch).unwrap().as_object().unwrap() {
            value[k] = v.clone();
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn three_managed_fields_are_one_patch_of_exactly_those_then_nothing() {
        let first = plan(&spec(), None, &live(), false);
        let (patch, why) = first.patch.clone().unwrap();
        assert_eq!(why, SettingsWrite::SpecChanged);
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            serde_json::json!({"devicesApprovalOn": true, "devicesKeyDurationDays": 90, "httpsEnabled": true})
        );
        let after = patched(&live(), &patch);
        let steady = plan(&spec(), Some(&first.applied), &after, false);
        assert_eq!(steady.patch, None);
        assert_eq!(steady.drift, None);
    }

    #[test]
    fn a_console_change_of_a_managed_field_is_drift_and_of_another_field_is_not() {
        let applied = spec();
        let mut live = patched(
            &live(),
            &plan(&spec(), None, &live(), false).patch.unwrap().0,
        );
        live.users_approval_on = Some(false); // not managed
        assert_eq!(plan(&spec(), Some(&applied), &live, false).drift, None);
        live.https_enabled = Some(false); // managed
        let corrected = plan(&spec(), Some(&applied), &live, false);
        assert_eq!(
            corrected.drift.as_ref().unwrap().entries[0].path,
            "/httpsEnabled"
        );
        let (patch, why) = corrected.patch.unwrap();
        assert_eq!(why, SettingsWrite::DriftCorrection);
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            serde_json::json!({"httpsEnabled": true})
        );
        let reporting = SettingsSpec {
            drift_policy: DriftPolicy::Report,
            ..spec()
        };
        let reported = plan(&reporting, Some(&applied), &live, false);
        assert!(reported.drift.is_some());
        assert_eq!(reported.patch, None, "Report leaves the console change");
    }

    #[test]
    fn a_spec_change_is_applied_not_reported_and_suspend_writes_nothing() {
        let applied = spec();
        let live = patched(
            &live(),
            &plan(&spec(), None, &live(), false).patch.unwrap().0,
        );
        let changed = SettingsSpec {
            devices_key_duration_days: Some(30),
            drift_policy: DriftPolicy::Report,
            ..spec()
        };
        let planned = plan(&changed, Some(&applied), &live, false);
        assert_eq!(planned.drift, None);
        assert_eq!(
            serde_json::to_value(planned.patch.unwrap().0).unwrap(),
            serde_json::json!({"devicesKeyDurationDays": 30})
        );
        assert_eq!(plan(&changed, Some(&applied), &live, true).patch, None);
    }

    #[test]
    fn a_refused_patch_names_each_field_and_its_scope() {
        let patch = plan(&spec(), None, &live(), false).patch.unwrap().0;
        assert_eq!(
            scopes_of(&patch),
            "devicesApprovalOn (feature_settings), devicesKeyDurationDays (feature_settings), httpsEnabled (networking_settings)"
        );
    }
}
