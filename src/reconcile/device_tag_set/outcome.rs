//! Each set's status from the plan and, once executed, the execution report (pure).
use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::execute::TagSetExecuted;
use super::plan::{AppliedMark, DeviceState, SetDevice, SetPlan, TagSetPlan};
use crate::resources::conditions::Verdict;
use crate::resources::conditions::{
    ConditionStatus, ConditionType, reason, set_condition, time_from,
};
use crate::resources::device_tag_set::{
    DeviceTagSetStatus, MAX_LISTED_DEVICES, MatchedDevice, TagSetConflict, WaitingDevice,
};
use crate::resources::{DriftDiff, ReconcileError};

/// What one set's status should say. Time-free until [`TagSetOutcome::write_status`].
#[derive(Debug)]
pub struct TagSetOutcome {
    pub name: String,
    pub generation: Option<i64>,
    pub ready: Verdict,
    pub synced: Verdict,
    pub drifted: Verdict,
    pub matched_count: u32,
    pub out_of_sync_count: u32,
    pub devices: Vec<MatchedDevice>,
    pub waiting: Vec<WaitingDevice>,
    pub conflicts: Vec<TagSetConflict>,
    pub drift: Option<DriftDiff>,
    pub applied: Option<AppliedMark>,
    /// The first failed write of one of this set's devices.
    pub error: Option<ReconcileError>,
    /// Devices of this set written in this pass.
    pub written: usize,
}

/// The outcome of every set that is not being deleted, in plan order. `report` is `None` for
/// a plan that was not executed (`plan -f`): pending writes count as out of sync.
pub fn outcomes(plan: &TagSetPlan, report: Option<&TagSetExecuted>) -> Vec<TagSetOutcome> {
    plan.sets
        .iter()
        .filter(|s| !s.removing)
        .map(|s| outcome(s, report, plan.observed_at))
        .collect()
}

/// Where a device stands after the pass.
fn in_sync_after(device: &SetDevice, report: Option<&TagSetExecuted>) -> bool {
    match device.state {
        DeviceState::InSync => true,
        DeviceState::Changing => report.is_some_and(|r| r.written.contains(&device.node_id)),
        _ => false,
    }
}

fn outcome(
    set: &SetPlan,
    report: Option<&TagSetExecuted>,
    observed_at: DateTime<Utc>,
) -> TagSetOutcome {
    let in_sync: Vec<bool> = set
        .devices
        .iter()
        .map(|d| in_sync_after(d, report))
        .collect();
    let out_of_sync = in_sync.iter().filter(|s| !**s).count();
    let error = report.and_then(|r| {
        set.devices
            .iter()
            .filter(|d| d.state == DeviceState::Changing)
            .find_map(|d| r.failures.get(&d.node_id))
            .map(|f| f.to_error())
    });
    let written = report.map_or(0, |r| {
        set.devices
            .iter()
            .filter(|d| d.state == DeviceState::Changing && r.written.contains(&d.node_id))
            .count()
    });
    let drift_left = set
        .devices
        .iter()
        .zip(&in_sync)
        .filter(|(d, ok)| d.drifted && !**ok)
        .count();
    // Before execution every drifted device still differs; after, only those not corrected.
    let drifted_now = if report.is_some() {
        drift_left
    } else {
        set.drifted_devices
    };
    let reported_only = set
        .devices
        .iter()
        .filter(|d| d.state == DeviceState::DriftReported)
        .count();
    let matched = set.devices.len();
    let converged = set.conflicts.is_empty()
        && error.is_none()
        && report.is_some()
        && out_of_sync == reported_only;
    let applied = next_mark(set, converged, written > 0, matched, observed_at);
    TagSetOutcome {
        name: set.name.clone(),
        generation: set.generation,
        ready: ready_verdict(
            set,
            error.as_ref(),
            out_of_sync,
            drifted_now,
            report.is_some(),
        ),
        synced: match &error {
            Some(e) => Verdict::new(ConditionStatus::False, e.event_reason(), e.to_string()),
            None => Verdict::new(
                ConditionStatus::True,
                reason::RECONCILED,
                "the last reconcile finished",
            ),
        },
        drifted: drifted_verdict(set, drifted_now),
        matched_count: count(matched),
        out_of_sync_count: count(out_of_sync),
        devices: set
            .devices
            .iter()
            .zip(&in_sync)
            .take(MAX_LISTED_DEVICES)
            .map(|(d, ok)| MatchedDevice {
                name: d.hostname.clone(),
                node_id: d.node_id.clone(),
                in_sync: *ok,
            })
            .collect(),
        waiting: set.waiting.clone(),
        conflicts: set.conflicts.clone(),
        drift: (drifted_now > 0).then(|| set.drift.clone()),
        applied,
        error,
        written,
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The applied mark after the pass: renewed when the set converged at a new generation, wrote
/// something, or matched a different number of devices (new devices are then known); kept
/// otherwise, so a steady state changes nothing in status.
fn next_mark(
    set: &SetPlan,
    converged: bool,
    wrote: bool,
    matched: usize,
    observed_at: DateTime<Utc>,
) -> Option<AppliedMark> {
    let Some(generation) = set.generation else {
        return set.applied;
    };
    if !converged {
        return set.applied;
    }
    let same = set.applied.is_some_and(|m| m.generation == generation)
        && !wrote
        && set.matched_before == Some(count(matched));
    if same {
        set.applied
    } else {
        // Whole seconds: what the status keeps, so the mark reads back exactly.
        Some(AppliedMark {
            generation,
            at: observed_at.trunc_subsecs(0),
        })
    }
}

fn ready_verdict(
    set: &SetPlan,
    error: Option<&ReconcileError>,
    out_of_sync: usize,
    drifted: usize,
    executed: bool,
) -> Verdict {
    if !set.conflicts.is_empty() {
        return Verdict::new(
            ConditionStatus::False,
            reason::CONFLICT,
            conflict_message(set),
        );
    }
    if let Some(error) = error {
        return Verdict::new(
            ConditionStatus::False,
            error.event_reason(),
            error.to_string(),
        );
    }
    if drifted > 0 && !set.corrects_drift {
        return Verdict::new(
            ConditionStatus::False,
            reason::DRIFTED,
            format!(
                "{drifted} matched devices were changed outside the operator and driftPolicy \
                 is Report, so they are left as they are: {}",
                set.drift.summary()
            ),
        );
    }
    if out_of_sync > 0 && set.suspended {
        return Verdict::new(
            ConditionStatus::False,
            reason::SUSPENDED,
            format!(
                "suspended (spec.suspend here or on its ManagedTailnet): {out_of_sync} matched devices are not written"
            ),
        );
    }
    if out_of_sync > 0 {
        let what = if executed {
            "remain"
        } else {
            "would be written"
        };
        return Verdict::new(
            ConditionStatus::False,
            reason::PENDING,
            format!(
                "{out_of_sync} of {} matched devices {what}",
                set.devices.len()
            ),
        );
    }
    let mut message = match set.devices.len() {
        0 => "no device matches the selector".to_owned(),
        1 => "the 1 matched device holds the desired state".to_owned(),
        n => format!("all {n} matched devices hold the desired state"),
    };
    if !set.waiting.is_empty() {
        message.push_str(&format!(
            "; {} wait to advertise wanted routes (status.waitingForRoutes)",
            set.waiting.len()
        ));
    }
    Verdict::new(ConditionStatus::True, reason::RECONCILED, message)
}

fn conflict_message(set: &SetPlan) -> String {
    let parts: Vec<String> = set
        .conflicts
        .iter()
        .map(|c| {
            format!(
                "{} on {} ({} devices, e.g. {})",
                c.with,
                c.fields.join(", "),
                c.devices,
                c.examples.join(", ")
            )
        })
        .collect();
    format!(
        "conflicts with {}: those devices are written by neither set until the sets agree \
         (narrow a selector, or make the values match)",
        parts.join("; ")
    )
}

fn drifted_verdict(set: &SetPlan, drifted: usize) -> Verdict {
    if drifted == 0 {
        return Verdict::new(
            ConditionStatus::False,
            reason::IN_SYNC,
            "the matched devices are as this set last applied them",
        );
    }
    Verdict::new(
        ConditionStatus::True,
        reason::DRIFTED,
        format!(
            "{drifted} matched devices changed outside the operator: {}",
            set.drift.summary()
        ),
    )
}

impl TagSetOutcome {
    /// Writes the outcome into `status` (conditions through `set_condition`, so transition
    /// times move only on flips). Returns whether anything changed.
    pub fn write_status(&self, status: &mut DeviceTagSetStatus, now: &Time) -> bool {
        let before = status.clone();
        status.common.record(
            [&self.ready, &self.synced, &self.drifted],
            self.generation,
            now,
        );
        status.matched_count = self.matched_count;
        status.out_of_sync_count = self.out_of_sync_count;
        status.devices = self.devices.clone();
        status.waiting_for_routes = self.waiting.clone();
        status.conflicts = self.conflicts.clone();
        status.drift = self.drift.clone();
        status.applied_generation = self.applied.map(|m| m.generation);
        status.applied_time = self.applied.map(|m| time_from(m.at));
        let changed = *status != before;
        if changed {
            status.common.last_sync_time = Some(now.clone());
        }
        changed
    }

    /// Only the drift part: `Drifted=True` with the diff, recorded before a correction so the
    /// drift leaves a trace in status even though the same pass corrects it.
    pub fn write_drift(&self, status: &mut DeviceTagSetStatus, now: &Time) {
        set_condition(
            &mut status.common.conditions,
            ConditionType::Drifted,
            self.drifted.status,
            &self.drifted.reason,
            &self.drifted.message,
            self.generation,
            now,
        );
        status.drift = self.drift.clone();
    }
}

/// The applied mark recorded in a status.
pub fn applied_mark(status: &DeviceTagSetStatus) -> Option<AppliedMark> {
    let generation = status.applied_generation?;
    let time = status.applied_time.as_ref()?;
    let nanos = u32::try_from(time.0.subsec_nanosecond()).unwrap_or(0);
    let at = DateTime::<Utc>::from_timestamp(time.0.as_second(), nanos)?;
    Some(AppliedMark { generation, at })
}
