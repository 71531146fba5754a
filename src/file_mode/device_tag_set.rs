//! File mode for `DeviceTagSet`s: the controller's planner and executor over the sets found
//! under PATH. Without a cluster there is no status to remember what was applied, so every
//! difference is a change to write (never drift), and `deletionPolicy` does not apply.
use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use super::{FileKind, FileReport, Manifests, StepResult, describe_conditions};
use crate::reconcile::device_tag_set::{
    DeviceChange, DeviceState, TagSetExecuted, TagSetOutcome, TagSetPlan, execute_with_progress,
    observe_and_plan, outcomes, tag_set_input,
};
use crate::resources::{ConditionStatus, DeviceTagSet, DeviceTagSetStatus, ReconcileError};
use crate::snapshot::TailnetSnapshots;

impl FileKind for DeviceTagSet {
    const AFTER: &'static [&'static str] = &["TailnetPolicy"];

    /// What applying the sets would write (writes nothing). Empty when PATH has no set.
    async fn plan(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
        let Some(plan) = plan_sets(manifests, snapshots).await? else {
            return Ok(FileReport::default());
        };
        let mut out = String::new();
        describe_changes(&plan, &mut out);
        let mut failed = false;
        for o in outcomes(&plan, None) {
            let set = plan.set(&o.name);
            let pending = set.map_or(0, |s| {
                s.devices
                    .iter()
                    .filter(|d| d.state == DeviceState::Changing)
                    .count()
            });
            let verdict = if o.ready.reason == "Conflict" || o.ready.reason == "Suspended" {
                failed |= o.ready.reason == "Conflict";
                format!("error: {} {}", o.ready.reason, o.ready.message)
            } else if pending > 0 {
                format!("{} matched, {pending} would be written", o.matched_count)
            } else {
                format!("{} matched, no changes", o.matched_count)
            };
            let _ = writeln!(out, "DeviceTagSet/{}: {verdict}", o.name);
        }
        Ok(FileReport {
            output: out,
            changes: !plan.changes.is_empty(),
            failed,
        })
    }

    /// Applies the sets and reports every set's conditions. Empty when PATH has no set.
    async fn apply(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
        let Some(plan) = plan_sets(manifests, snapshots).await? else {
            return Ok(FileReport::default());
        };
        let report: TagSetExecuted =
            execute_with_progress(&plan, snapshots, &super::writing_progress("device")).await;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "devices: {} written ({} API writes), {} failed",
            report.written.len(),
            report.writes,
            report.failures.len()
        );
        let outcomes = outcomes(&plan, Some(&report));
        for o in &outcomes {
            describe_outcome(o, &mut out);
        }
        Ok(FileReport {
            output: out,
            changes: report.writes > 0,
            failed: outcomes
                .iter()
                .any(|o| o.ready.status != ConditionStatus::True),
        })
    }

    /// Every set with the status the planner gives it against the live devices (all sets
    /// planned together, as the controller does).
    async fn with_status(
        manifests: &Manifests,
        snapshots: &TailnetSnapshots,
        now: &Time,
    ) -> Result<Vec<Value>, ReconcileError> {
        let Some(plan) = plan_sets(manifests, snapshots).await? else {
            return Ok(Vec::new());
        };
        let outcomes = outcomes(&plan, None);
        let mut out = Vec::new();
        for set in manifests.of::<DeviceTagSet>() {
            let mut value = serde_json::to_value(&set).unwrap_or(Value::Null);
            let name = set.metadata.name.clone().unwrap_or_default();
            if let Some(outcome) = outcomes.iter().find(|o| o.name == name) {
                let mut status = DeviceTagSetStatus::default();
                outcome.write_status(&mut status, now);
                value["status"] = serde_json::to_value(status).unwrap_or(Value::Null);
            }
            out.push(value);
        }
        Ok(out)
    }
}

/// At most this many device changes are listed.
const CHANGES_SHOWN: usize = 50;

async fn plan_sets(
    manifests: &Manifests,
    snapshots: &TailnetSnapshots,
) -> Result<Option<TagSetPlan>, ReconcileError> {
    let sets = manifests.of::<DeviceTagSet>();
    if sets.is_empty() {
        return Ok(None);
    }
    let resources: Vec<_> = sets.iter().map(tag_set_input).collect();
    observe_and_plan(&resources, snapshots).await.map(Some)
}

fn describe_changes(plan: &TagSetPlan, out: &mut String) {
    if plan.changes.is_empty() {
        let _ = writeln!(out, "devices: no changes");
        return;
    }
    let _ = writeln!(
        out,
        "devices: would write {} devices ({} API writes)",
        plan.changes.len(),
        plan.write_count()
    );
    for change in plan.changes.iter().take(CHANGES_SHOWN) {
        let _ = writeln!(out, "  ~ {}", describe_change(change));
    }
    if plan.changes.len() > CHANGES_SHOWN {
        let _ = writeln!(
            out,
            "  ~ ... and {} more",
            plan.changes.len() - CHANGES_SHOWN
        );
    }
}

fn describe_change(change: &DeviceChange) -> String {
    let mut parts = Vec::new();
    if let Some(tags) = &change.tags {
        parts.push(format!("tags = [{}]", tags.join(", ")));
    }
    if let Some(authorized) = change.authorized {
        parts.push(format!("authorized = {authorized}"));
    }
    if let Some(disabled) = change.key_expiry_disabled {
        parts.push(format!("keyExpiryDisabled = {disabled}"));
    }
    if let Some(routes) = &change.routes {
        parts.push(format!("routes = [{}]", routes.join(", ")));
    }
    format!(
        "{} ({}): {}",
        change.hostname,
        change.node_id,
        parts.join("; ")
    )
}

fn describe_outcome(o: &TagSetOutcome, out: &mut String) {
    let _ = writeln!(
        out,
        "DeviceTagSet/{}: {} matched, {} out of sync",
        o.name, o.matched_count, o.out_of_sync_count
    );
    describe_conditions([&o.ready, &o.synced, &o.drifted], out);
    for w in &o.waiting {
        let _ = writeln!(
            out,
            "  waiting: {} does not advertise {}",
            w.name,
            w.routes.join(", ")
        );
    }
}
