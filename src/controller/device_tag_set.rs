//! The `DeviceTagSet` controller: plans every DeviceTagSet of a tailnet together against the
//! shared devices snapshot, through the pure planner and executor of
//! [`crate::reconcile::device_tag_set`] (the same ones file mode runs).
//!
//! Runs on the shared [`skeleton`](super::skeleton) (lock, finalizer, ManagedTailnet guard,
//! failure status, events); its own part is the pass: the devices snapshot (one `GET /devices`
//! per resync interval for the whole tailnet) → if this snapshot and these sets were already
//! planned, done → otherwise every set of the tailnet from the reflector store → plan → drift
//! recorded (`Drifted=True`, gauge, event) before a correction → execute → the status of
//! **every** set written from the one outcome.
//!
//! Decisions:
//! - **One pass per snapshot.** A pass decides every set of the tailnet; the other sets'
//!   reconciles of the same resync find the pass already done for that snapshot version and
//!   the same specs, and return. So N sets cost one plan and one device-list read per resync.
//!   A pass that wrote invalidates the snapshot, so the next reconcile re-reads and confirms.
//! - **Deletion.** A finalizer only with `deletionPolicy: Delete`. Deleting such a set runs a
//!   pass with the set marked as removing: its `Add` tags that no other set wants come off the
//!   devices it matches; then the finalizer goes. With `Orphan`, deleting writes nothing.
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::ResourceExt;

use super::coordination::lock_unpoisoned;
use super::skeleton::{self, CleanUpResult, KindReconciler, Next, Pass, PassResult, applied_event};
use super::{Context, Controlled, KindController, KindEvent, Stop, has_finalizer};
use crate::reconcile::device_tag_set::{
    DeviceState, TagSetExecuted, TagSetPlan, execute, observe_and_plan, outcomes, tag_set_input,
};
use crate::resources::{DeviceTagSet, ReconcileError};
use crate::snapshot::{Area, TailnetSnapshots};

/// Started by the manager with every kind of [`crate::for_each_kind`].
impl Controlled for DeviceTagSet {
    fn controller(ctx: Arc<Context>, stop: &Stop) -> KindController {
        skeleton::controller(ctx, stop, DeviceTagSetKind::default())
    }
}

/// Event reason when deleting with `deletionPolicy: Delete` removed the set's tags.
pub const TAGS_REMOVED: &str = "TagsRemoved";

/// What a pass was computed from: the devices snapshot (version and fetch time: a cache rebuilt
/// for a changed ManagedTailnet counts versions from 1 again) and the sets' identities.
type PassKey = (u64, Instant, u64);

/// The DeviceTagSet kind's own controller state: the last pass per tailnet.
#[derive(Default)]
pub struct DeviceTagSetKind {
    passes: Mutex<HashMap<String, PassKey>>,
}

impl KindReconciler for DeviceTagSetKind {
    type Object = DeviceTagSet;
    const AREA: Area = Area::Devices;
    const WAITING: &'static str = "the devices are managed";
    const NEEDS_FULL_LIST: bool = true;

    /// One pass over the tailnet, unless this devices snapshot and these sets were planned
    /// already. A retryable write failure is returned so the error policy backs off.
    async fn pass(&self, pass: &Pass<'_, Self>, snapshots: &TailnetSnapshots) -> PassResult {
        let devices = snapshots.devices().await?;
        let members = planned(pass);
        let key = (devices.version, devices.fetched_at, fingerprint(&members));
        if lock_unpoisoned(&self.passes).get(&pass.tailnet) == Some(&key) {
            return Ok(Next::Resync);
        }
        let (_, report) = plan_and_execute(pass, snapshots, &members).await?;
        lock_unpoisoned(&self.passes).insert(pass.tailnet.clone(), key);
        Ok(retryable_failure(&report).map_or(Next::Resync, Next::Retry))
    }

    /// A pass with the set marked as removing; every device it matched must have its tags
    /// written before the finalizer goes.
    async fn clean_up(&self, pass: &Pass<'_, Self>) -> CleanUpResult {
        let (set, snapshots) = (&pass.current, pass.snapshots_for_clean_up()?);
        let (plan, execution) = plan_and_execute(pass, &snapshots, &planned(pass)).await?;
        let pending = plan.set(&set.name_any()).map_or(0, |s| {
            s.devices
                .iter()
                .filter(|d| match d.state {
                    DeviceState::InSync => false,
                    DeviceState::Changing => !execution.written.contains(&d.node_id),
                    _ => true,
                })
                .count()
        });
        if pending > 0 {
            let cause = execution
                .failures
                .values()
                .next()
                .map(|f| f.to_error().to_string())
                .unwrap_or_else(|| "another set disagrees on them".to_owned());
            return Err(ReconcileError::conflict(format!(
                "DeviceTagSet {} (deletionPolicy: Delete): the tags of {pending} devices could \
                 not be removed ({cause}); fix that, or set deletionPolicy: Orphan",
                set.name_any()
            )));
        }
        let note = format!(
            "deletionPolicy: Delete: removed this set's tags from {} devices",
            execution.written.len()
        );
        pass.publish_clean_up(TAGS_REMOVED, note).await;
        Ok(())
    }
}

/// The sets a pass plans: those not being deleted, plus those being deleted that still hold
/// the finalizer with `deletionPolicy: Delete` (their cleanup is part of the pass).
fn planned(pass: &Pass<'_, DeviceTagSetKind>) -> Vec<Arc<DeviceTagSet>> {
    pass.members()
        .into_iter()
        .filter(|s| {
            s.metadata.deletion_timestamp.is_none()
                || (has_finalizer(&**s) && s.spec.common.deletes_on_removal())
        })
        .collect()
}

/// Identifies the members' desired state: names, generations and deletion.
fn fingerprint(members: &[Arc<DeviceTagSet>]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for m in members {
        m.name_any().hash(&mut hasher);
        m.metadata.generation.hash(&mut hasher);
        m.metadata.deletion_timestamp.is_some().hash(&mut hasher);
        m.metadata.uid.hash(&mut hasher);
    }
    hasher.finish()
}

/// Plans every member, records drift about to be corrected, executes, and writes every live
/// member's status from the outcome.
async fn plan_and_execute(
    pass: &Pass<'_, DeviceTagSetKind>,
    snapshots: &TailnetSnapshots,
    members: &[Arc<DeviceTagSet>],
) -> Result<(TagSetPlan, TagSetExecuted), ReconcileError> {
    let resources: Vec<_> = members
        .iter()
        .map(|m| {
            let mut resource = tag_set_input(m);
            resource.spec.common.suspend = pass.suspended(m);
            resource
        })
        .collect();
    let plan = observe_and_plan(&resources, snapshots).await?;
    let mut written = pass.statuses(members);
    let by_name: HashMap<String, &Arc<DeviceTagSet>> =
        members.iter().map(|m| (m.name_any(), m)).collect();
    // A correction in this pass: record the drift first, or it would leave no trace.
    for outcome in outcomes(&plan, None) {
        let corrects = plan
            .set(&outcome.name)
            .is_some_and(|s| s.corrects_drift && s.drifted_devices > 0 && s.writes());
        let (Some(member), true) = (by_name.get(&outcome.name), corrects) else {
            continue;
        };
        let update = |status: &mut _| outcome.write_drift(status, &pass.now);
        pass.report_update(member, &mut written, update, Vec::new())
            .await?;
        pass.shared()
            .metrics
            .record_drift_correction("DeviceTagSet");
    }
    let execution = execute(&plan, snapshots).await;
    for outcome in outcomes(&plan, Some(&execution)) {
        let Some(member) = by_name.get(&outcome.name) else {
            continue;
        };
        if member.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let update = |status: &mut _| outcome.write_status(status, &pass.now);
        let events = write_events(outcome.written);
        pass.report_update(member, &mut written, update, events)
            .await?;
    }
    Ok((plan, execution))
}

/// The first failed write that may succeed on retry (the others wait for a spec change or the
/// next resync).
fn retryable_failure(report: &TagSetExecuted) -> Option<ReconcileError> {
    report
        .failures
        .values()
        .find(|f| f.error.is_retryable())
        .map(|f| f.to_error())
}

/// The set's own event of a pass that wrote `written` devices (pure); the skeleton adds the
/// shared condition events.
pub fn write_events(written: usize) -> Vec<KindEvent> {
    applied_event((written > 0).then(|| format!("wrote {written} devices to match the set")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::skeleton::APPLIED;

    #[test]
    fn only_a_pass_that_wrote_devices_has_its_own_event() {
        let events = write_events(2);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, APPLIED);
        assert_eq!(events[0].note, "wrote 2 devices to match the set");
        assert!(write_events(0).is_empty());
    }
}
