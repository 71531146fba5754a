//! The `DeviceTagSet` controller: plans every DeviceTagSet of a tailnet together against the
//! shared devices snapshot, through the pure planner and executor of
//! [`crate::reconcile::device_tag_set`] (the same ones file mode runs).
//!
//! Pipeline of one reconcile: per-tailnet lock → the Tailnet's snapshots (none:
//! `Ready=False, TailnetNotReady`) → the devices snapshot (one `GET /devices` per resync
//! interval for the whole tailnet) → if this snapshot and these sets were already planned, done
//! → otherwise every set of the tailnet from the reflector store → plan → drift recorded
//! (`Drifted=True`, gauge, event) before a correction → execute → the status of **every** set
//! written from the one outcome (skipped when unchanged), drift gauge, events on transitions →
//! requeue at the Tailnet's resync interval.
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
use std::time::{Duration, Instant};

use chrono::{SubsecRound, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use super::coordination::{
    ForcedReconciles, TailnetLocks, forget_deleted, lock_unpoisoned, note_tailnet_suspension,
    suspended,
};
use super::{
    Context, KindContext, KindController, KindEvent, Stop, condition_events, controller_for,
    has_finalizer, instrumented, kind_controller, publish_event, set_finalizer, write_status,
};
use crate::reconcile::device_tag_set::{
    DeviceState, ExecuteReport, TagSetPlan, execute, observe_and_plan, outcomes, tag_set_resource,
};
use crate::resources::conditions::{
    self, ConditionStatus, ConditionType, failure_reason, set_condition, time_from,
};
use crate::resources::{DeviceTagSet, DeviceTagSetStatus, ReconcileError, Tailnet};
use crate::snapshot::{Area, TailnetSnapshots};

/// The kind label in metrics and logs.
pub const KIND: &str = "DeviceTagSet";
/// Ready reason while the referenced Tailnet has no connection (missing, or not Ready).
pub const TAILNET_NOT_READY: &str = "TailnetNotReady";
/// Event reason of a pass that wrote devices.
pub const APPLIED: &str = "Applied";
/// How soon a set whose Tailnet is not Ready looks again (the Tailnet watch usually triggers
/// it sooner).
pub const NOT_READY_RETRY: Duration = Duration::from_secs(15);

/// What a pass was computed from: the devices snapshot (version and fetch time: a cache rebuilt
/// for a changed Tailnet counts versions from 1 again) and the sets' identities.
type PassKey = (u64, Instant, u64);

/// Per-controller state beside the shared [`Context`].
pub struct TagSetContext {
    pub shared: Arc<Context>,
    store: Store<DeviceTagSet>,
    locks: TailnetLocks,
    /// The last pass per tailnet.
    passes: Mutex<HashMap<String, PassKey>>,
    /// The last `reconcile-at` value seen per set.
    forced: ForcedReconciles,
}

impl KindContext for TagSetContext {
    fn shared(&self) -> &Context {
        &self.shared
    }
}

/// The DeviceTagSet controller, ready for the manager to run.
pub fn controller(ctx: Arc<Context>, stop: &Stop) -> KindController {
    let client = ctx.client.clone();
    let forced = ForcedReconciles::default();
    let on_delete = {
        let (metrics, forced) = (Arc::clone(&ctx.metrics), forced.clone());
        move |set: &DeviceTagSet| {
            forget_deleted(&metrics, &forced, KIND, set);
        }
    };
    let controller = controller_for(
        Api::<DeviceTagSet>::all(client.clone()),
        watcher::Config::default(),
        on_delete,
    );
    let store = controller.store();
    let by_tailnet = store.clone();
    let registry = ctx.snapshots.clone();
    let controller = controller
        .watches(
            Api::<Tailnet>::all(client),
            watcher::Config::default(),
            move |tailnet: Tailnet| {
                note_tailnet_suspension(&registry, &tailnet);
                members(&by_tailnet, &tailnet.name_any(), false)
                    .iter()
                    .map(|s| ObjectRef::from_obj(&**s))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(stop.wait());
    let tag_ctx = Arc::new(TagSetContext {
        shared: ctx,
        store,
        locks: TailnetLocks::default(),
        passes: Mutex::default(),
        forced,
    });
    kind_controller(KIND, controller, reconcile, tag_ctx)
}

/// The sets of `tailnet`, by name: those not being deleted, plus (with `deleting`) those being
/// deleted that still hold the finalizer (their cleanup is part of the pass).
fn members(store: &Store<DeviceTagSet>, tailnet: &str, deleting: bool) -> Vec<Arc<DeviceTagSet>> {
    let mut members: Vec<Arc<DeviceTagSet>> = store
        .state()
        .into_iter()
        .filter(|s| s.spec.common.tailnet_ref == tailnet)
        .filter(|s| {
            s.metadata.deletion_timestamp.is_none()
                || (deleting && has_finalizer(&**s) && s.spec.common.deletes_on_removal())
        })
        .collect();
    members.sort_by_key(|s| s.name_any());
    members
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

async fn reconcile(
    set: Arc<DeviceTagSet>,
    ctx: Arc<TagSetContext>,
) -> Result<Action, ReconcileError> {
    let shared = Arc::clone(&ctx.shared);
    instrumented(&shared, &*set, reconcile_inner(&set, &ctx)).await
}

async fn reconcile_inner(
    set: &DeviceTagSet,
    ctx: &TagSetContext,
) -> Result<Action, ReconcileError> {
    // A pass needs every set of the tailnet: planning before the initial list is complete
    // would miss conflicts and write what a later pass calls disputed.
    if ctx.store.wait_until_ready().await.is_err() {
        return Ok(Action::await_change());
    }
    let tailnet = set.spec.common.tailnet_ref.clone();
    let tailnet_lock = ctx.locks.for_tailnet(&tailnet);
    let _serialized = tailnet_lock.lock().await;
    let api = Api::<DeviceTagSet>::all(ctx.shared.client.clone());
    let current = latest(ctx, set);
    if current.metadata.deletion_timestamp.is_some() {
        if has_finalizer(&*current) {
            clean_up(&current, ctx, &api, &tailnet).await?;
            set_finalizer(&api, &*current, false).await?;
        }
        return Ok(Action::await_change());
    }
    // Before any write to the tailnet, so a set that asks for cleanup always gets it.
    let wants_finalizer = current.spec.common.deletes_on_removal();
    if wants_finalizer != has_finalizer(&*current) {
        set_finalizer(&api, &*current, wants_finalizer).await?;
    }
    let now = time_from(Utc::now().trunc_subsecs(0));
    let Some(snapshots) = ctx.shared.snapshots.get(&tailnet) else {
        let mut status = current.status.clone().unwrap_or_default();
        let message = format!(
            "Tailnet {tailnet} is not Ready (missing, or its credentials are not accepted yet): \
             the devices are managed once it is; see `kubectl describe tailnet {tailnet}`"
        );
        set_failure(&mut status, &current, TAILNET_NOT_READY, &message, &now);
        report(ctx, &api, &current, current.status.as_ref(), status, 0).await?;
        return Ok(Action::requeue(NOT_READY_RETRY));
    };
    if ctx.forced.newly_forced(set) {
        snapshots.refresh_if_older_than(Area::Devices, snapshots.now());
    }
    match pass(ctx, &api, &snapshots, &tailnet, &now).await {
        Ok(Some(err)) => Err(err),
        Ok(None) => Ok(Action::requeue(snapshots.resync_interval())),
        Err(err) => {
            let current = latest(ctx, set);
            let mut status = current.status.clone().unwrap_or_default();
            set_failure(
                &mut status,
                &current,
                failure_reason(err.category()),
                &err.to_string(),
                &now,
            );
            report(ctx, &api, &current, current.status.as_ref(), status, 0).await?;
            Err(err)
        }
    }
}

/// One pass over the tailnet, unless this devices snapshot and these sets were planned
/// already. Returns a retryable write failure (so the error policy backs off), if any.
async fn pass(
    ctx: &TagSetContext,
    api: &Api<DeviceTagSet>,
    snapshots: &TailnetSnapshots,
    tailnet: &str,
    now: &Time,
) -> Result<Option<ReconcileError>, ReconcileError> {
    let devices = snapshots.devices().await?;
    let members = members(&ctx.store, tailnet, true);
    let key = (devices.version, devices.fetched_at, fingerprint(&members));
    if lock_unpoisoned(&ctx.passes).get(tailnet) == Some(&key) {
        return Ok(None);
    }
    let (_, report) = plan_and_execute(ctx, api, snapshots, &members, now).await?;
    lock_unpoisoned(&ctx.passes).insert(tailnet.to_owned(), key);
    Ok(retryable_failure(&report))
}

/// Plans every member, records drift about to be corrected, executes, and writes every live
/// member's status from the outcome.
async fn plan_and_execute(
    ctx: &TagSetContext,
    api: &Api<DeviceTagSet>,
    snapshots: &TailnetSnapshots,
    members: &[Arc<DeviceTagSet>],
    now: &Time,
) -> Result<(TagSetPlan, ExecuteReport), ReconcileError> {
    let resources: Vec<_> = members
        .iter()
        .map(|m| {
            let mut resource = tag_set_resource(m);
            let (own, tailnet) = (m.spec.common.suspend, &m.spec.common.tailnet_ref);
            resource.spec.common.suspend = suspended(own, &ctx.shared.snapshots, tailnet);
            resource
        })
        .collect();
    let plan = observe_and_plan(&resources, snapshots).await?;
    let mut written: HashMap<String, DeviceTagSetStatus> = members
        .iter()
        .map(|m| (m.name_any(), m.status.clone().unwrap_or_default()))
        .collect();
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
        let before = written.get(&outcome.name).cloned().unwrap_or_default();
        let mut status = before.clone();
        outcome.write_drift(&mut status, now);
        report(ctx, api, member, Some(&before), status.clone(), 0).await?;
        written.insert(outcome.name.clone(), status);
        ctx.shared.metrics.record_drift_correction(KIND);
    }
    let execution = execute(&plan, snapshots).await;
    for outcome in outcomes(&plan, Some(&execution)) {
        let Some(member) = by_name.get(&outcome.name) else {
            continue;
        };
        if member.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let before = written.get(&outcome.name).cloned().unwrap_or_default();
        let mut status = before.clone();
        outcome.write_status(&mut status, now);
        report(ctx, api, member, Some(&before), status, outcome.written).await?;
    }
    Ok((plan, execution))
}

/// The first failed write that may succeed on retry (the others wait for a spec change or the
/// next resync).
fn retryable_failure(report: &ExecuteReport) -> Option<ReconcileError> {
    report
        .failures
        .values()
        .find(|f| f.error.is_retryable())
        .map(|f| f.to_error())
}

/// Writes `status` (skipped when it equals `before`), sets the drift gauge and publishes the
/// events of the transition.
async fn report(
    ctx: &TagSetContext,
    api: &Api<DeviceTagSet>,
    set: &DeviceTagSet,
    before: Option<&DeviceTagSetStatus>,
    status: DeviceTagSetStatus,
    written: usize,
) -> Result<(), ReconcileError> {
    write_status(api, set, before, &status).await?;
    let drifted = conditions::is_true(&status.common.conditions, ConditionType::Drifted);
    ctx.shared
        .metrics
        .set_drifted(KIND, &set.name_any(), drifted);
    for event in transition_events(before, &status, written) {
        publish_event(
            &ctx.shared,
            set,
            event.warning,
            &event.reason,
            "Reconcile",
            event.note,
        )
        .await;
    }
    Ok(())
}

/// The events for a status going from `before` to `after` in a pass that wrote `written`
/// devices (pure): a steady state publishes nothing.
pub fn transition_events(
    before: Option<&DeviceTagSetStatus>,
    after: &DeviceTagSetStatus,
    written: usize,
) -> Vec<KindEvent> {
    let mut events = Vec::new();
    if written > 0 {
        events.push(KindEvent::new(
            false,
            APPLIED,
            format!("wrote {written} devices to match the set"),
        ));
    }
    events.extend(condition_events(
        before.map(|s| &s.common),
        &after.common,
        || {
            after
                .drift
                .as_ref()
                .map(|d| d.summary())
                .unwrap_or_else(|| "matched devices changed outside the operator".to_owned())
        },
    ));
    events
}

/// `Ready=False` and `Synced=False` with `why`.
fn set_failure(
    status: &mut DeviceTagSetStatus,
    set: &DeviceTagSet,
    why: &str,
    message: &str,
    now: &Time,
) {
    let generation = set.metadata.generation;
    for type_ in [ConditionType::Ready, ConditionType::Synced] {
        set_condition(
            &mut status.common.conditions,
            type_,
            ConditionStatus::False,
            why,
            message,
            generation,
            now,
        );
    }
    status.common.observed_generation = generation;
}

/// `deletionPolicy: Delete`: a pass with the set marked as removing; every device it matched
/// must have its tags written before the finalizer goes.
async fn clean_up(
    set: &DeviceTagSet,
    ctx: &TagSetContext,
    api: &Api<DeviceTagSet>,
    tailnet: &str,
) -> Result<(), ReconcileError> {
    if !set.spec.common.deletes_on_removal() {
        return Ok(());
    }
    let Some(snapshots) = ctx.shared.snapshots.get(tailnet) else {
        return Err(ReconcileError::not_found(
            format!("Tailnet {tailnet} (Ready)"),
            format!(
                "DeviceTagSet {} has deletionPolicy: Delete and its tags cannot be removed while \
                 the Tailnet is not Ready; fix the Tailnet, or set deletionPolicy: Orphan",
                set.name_any()
            ),
        ));
    };
    let now = time_from(Utc::now().trunc_subsecs(0));
    let members = members(&ctx.store, tailnet, true);
    let (plan, execution) = plan_and_execute(ctx, api, &snapshots, &members, &now).await?;
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
            "DeviceTagSet {} (deletionPolicy: Delete): the tags of {pending} devices could not \
             be removed ({cause}); fix that, or set deletionPolicy: Orphan",
            set.name_any()
        )));
    }
    publish_event(
        &ctx.shared,
        set,
        false,
        "TagsRemoved",
        "Delete",
        format!(
            "deletionPolicy: Delete: removed this set's tags from {} devices",
            execution.written.len()
        ),
    )
    .await;
    Ok(())
}

/// The store's copy of `set` (the newest the operator has seen), else `set` itself.
fn latest(ctx: &TagSetContext, set: &DeviceTagSet) -> Arc<DeviceTagSet> {
    ctx.store
        .get(&ObjectRef::from_obj(set))
        .unwrap_or_else(|| Arc::new(set.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(ready: (ConditionStatus, &str), drifted: bool) -> DeviceTagSetStatus {
        let mut s = DeviceTagSetStatus::default();
        let now = conditions::now();
        set_condition(
            &mut s.common.conditions,
            ConditionType::Ready,
            ready.0,
            ready.1,
            "m",
            Some(1),
            &now,
        );
        set_condition(
            &mut s.common.conditions,
            ConditionType::Drifted,
            drifted.into(),
            "x",
            "",
            Some(1),
            &now,
        );
        s
    }

    #[test]
    fn events_mark_transitions_only() {
        let ok = status((ConditionStatus::True, "Reconciled"), false);
        assert!(transition_events(Some(&ok), &ok, 0).is_empty());
        let drifted = status((ConditionStatus::True, "Reconciled"), true);
        let events = transition_events(Some(&ok), &drifted, 2);
        let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["Applied", "Drifted"]);
        let conflict = status((ConditionStatus::False, "Conflict"), false);
        assert_eq!(
            transition_events(Some(&ok), &conflict, 0)[0].reason,
            "Conflict"
        );
        assert!(transition_events(Some(&conflict), &conflict, 0).is_empty());
    }
}
