//! The `DNSConfig` controller: keeps a tailnet's DNS as its one DNSConfig says, through the pure
//! planner and executor of [`crate::reconcile::dns_config`] (the same ones file mode runs).
//!
//! Pipeline of one reconcile: per-tailnet lock → finalizer (only with `deletionPolicy:
//! Delete`) → the Tailnet's snapshots (none: `Ready=False, TailnetNotReady`) → the other
//! DNSConfigs of the tailnet from the reflector store (no API list) → plan against the shared
//! DNS snapshot → (a drift correction first records `Drifted=True` with the diff) → execute →
//! status (skipped when unchanged), drift gauge, events on transitions → requeue at the
//! Tailnet's resync interval.
//!
//! Decisions:
//! - **One per tailnet, deterministically.** The oldest DNSConfig of a tailnet (by name when
//!   equally old) manages its DNS; every other one is `Ready=False, Conflict`, names the winner
//!   in `status.conflict`, and never writes, not even on deletion. A winner being deleted
//!   keeps its claim until its cleanup is done and it is gone; then the watch's delete event
//!   triggers the others at once, and the next oldest takes over.
//! - **Serialized per tailnet.** Two DNSConfigs of a tailnet never plan concurrently, so a
//!   conflict is always decided on the same store state and no two writes race.
//! - **`reconcile-at` means "look now"**: a new value re-reads the DNS instead of using the
//!   shared snapshot, so a console edit is seen at once.
//! - **Deletion.** `deletionPolicy: Delete` (the default) puts a finalizer on the resource;
//!   deleting it removes from the tailnet what `status.applied` says this resource set
//!   (see [`crate::reconcile::dns_config::cleared`]) in one write, then drops the finalizer.
//!   `Orphan` has no finalizer and leaves the DNS as it is.
use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use super::coordination::{
    ForcedReconciles, TailnetLocks, forget_deleted, note_tailnet_suspension, suspended,
};
use super::{
    Context, KindContext, KindController, KindEvent, Stop, condition_events, controller_for,
    has_finalizer, instrumented, kind_controller, publish_event, set_finalizer, write_status,
};
use crate::reconcile::dns_config::{
    DnsOutcome, DnsResource, WriteReason, cleared, execute, observe_and_plan,
};
use crate::reconcile::tailnet_policy::Verdict;
use crate::resources::conditions::{self, ConditionStatus, ConditionType, reason, time_from};
use crate::resources::{DNSConfig, DNSConfigStatus, ReconcileError, Tailnet};
use crate::snapshot::{Area, TailnetSnapshots};

/// The kind label in metrics and logs.
pub const KIND: &str = "DNSConfig";
/// Ready reason while the referenced Tailnet has no connection (missing, or not Ready).
pub const TAILNET_NOT_READY: &str = "TailnetNotReady";
/// Event reason of a write to the tailnet's DNS.
pub const APPLIED: &str = "Applied";
/// Event reason when deleting with `deletionPolicy: Delete` removed what the resource set.
pub const CLEARED: &str = "DnsCleared";
/// How soon a DNSConfig whose Tailnet is not Ready looks again (the Tailnet watch usually
/// triggers it sooner).
pub const NOT_READY_RETRY: Duration = Duration::from_secs(15);

/// Per-controller state beside the shared [`Context`].
pub struct DnsContext {
    pub shared: Arc<Context>,
    store: Store<DNSConfig>,
    /// One async mutex per tailnet: reconciles of one tailnet's DNSConfigs take turns.
    locks: TailnetLocks,
    /// The last `reconcile-at` value seen per resource (entries go when it is deleted).
    forced: ForcedReconciles,
}

impl KindContext for DnsContext {
    fn shared(&self) -> &Context {
        &self.shared
    }
}

/// The DNSConfig controller, ready for the manager to run.
pub fn controller(ctx: Arc<Context>, stop: &Stop) -> KindController {
    let client = ctx.client.clone();
    let forced = ForcedReconciles::default();
    // A deleted DNSConfig may have been its tailnet's winner: the others look again at once.
    let (deleted_tx, deleted_rx) = mpsc::unbounded::<String>();
    let on_delete = {
        let (metrics, forced) = (Arc::clone(&ctx.metrics), forced.clone());
        move |obj: &DNSConfig| {
            forget_deleted(&metrics, &forced, KIND, obj);
            let _ = deleted_tx.unbounded_send(obj.spec.common.tailnet_ref.clone());
        }
    };
    let controller = controller_for(
        Api::<DNSConfig>::all(client.clone()),
        watcher::Config::default(),
        on_delete,
    );
    let store = controller.store();
    let (by_tailnet, by_deleted) = (store.clone(), store.clone());
    let registry = ctx.snapshots.clone();
    let siblings_of_deleted = deleted_rx
        .flat_map(move |tailnet| futures::stream::iter(of_tailnet(&by_deleted, &tailnet)));
    let controller = controller
        .watches(
            Api::<Tailnet>::all(client),
            watcher::Config::default(),
            move |tailnet: Tailnet| {
                note_tailnet_suspension(&registry, &tailnet);
                of_tailnet(&by_tailnet, &tailnet.name_any())
            },
        )
        .reconcile_on(siblings_of_deleted)
        .graceful_shutdown_on(stop.wait());
    let dns_ctx = Arc::new(DnsContext {
        shared: ctx,
        store,
        locks: TailnetLocks::default(),
        forced,
    });
    kind_controller(KIND, controller, reconcile, dns_ctx)
}

/// The DNSConfigs of `tailnet`, as references to reconcile.
fn of_tailnet(store: &Store<DNSConfig>, tailnet: &str) -> Vec<ObjectRef<DNSConfig>> {
    members(store, tailnet)
        .iter()
        .map(|d| ObjectRef::from_obj(&**d))
        .collect()
}

/// The DNSConfigs of `tailnet`, including ones being deleted: a winner keeps its claim until
/// its cleanup is done and it is gone, so the next one never writes before that cleanup.
fn members(store: &Store<DNSConfig>, tailnet: &str) -> Vec<Arc<DNSConfig>> {
    store
        .state()
        .into_iter()
        .filter(|d| d.spec.common.tailnet_ref == tailnet)
        .collect()
}

/// The planner inputs of the other DNSConfigs of `obj`'s tailnet.
fn others(store: &Store<DNSConfig>, obj: &DNSConfig) -> Vec<DnsResource> {
    members(store, &obj.spec.common.tailnet_ref)
        .iter()
        .filter(|d| d.name_any() != obj.name_any())
        .map(|d| DnsResource::from_object(d))
        .collect()
}

async fn reconcile(obj: Arc<DNSConfig>, ctx: Arc<DnsContext>) -> Result<Action, ReconcileError> {
    let shared = Arc::clone(&ctx.shared);
    instrumented(&shared, &*obj, reconcile_inner(&obj, &ctx)).await
}

async fn reconcile_inner(obj: &DNSConfig, ctx: &DnsContext) -> Result<Action, ReconcileError> {
    let tailnet = obj.spec.common.tailnet_ref.clone();
    let tailnet_lock = ctx.locks.for_tailnet(&tailnet);
    let _serialized = tailnet_lock.lock().await;
    let api = Api::<DNSConfig>::all(ctx.shared.client.clone());
    // The newest copy: finalizer patches carry its resourceVersion, and its status is what
    // the last pass wrote.
    let current = latest(ctx, obj);
    if current.metadata.deletion_timestamp.is_some() {
        if has_finalizer(&*current) {
            clean_up(&current, ctx, &tailnet).await?;
            set_finalizer(&api, &*current, false).await?;
        }
        return Ok(Action::await_change());
    }
    // Before any write to the tailnet, so a resource that asks for cleanup always gets it.
    let wants_finalizer = current.spec.common.deletes_on_removal();
    if wants_finalizer != has_finalizer(&*current) {
        set_finalizer(&api, &*current, wants_finalizer).await?;
    }
    let now = time_from(Utc::now().trunc_subsecs(0));
    let Some(snapshots) = ctx.shared.snapshots.get(&tailnet) else {
        let outcome = not_ready(&current, &tailnet);
        report(ctx, &api, &current, &outcome, None, &now).await?;
        return Ok(Action::requeue(NOT_READY_RETRY));
    };
    if ctx.forced.newly_forced(obj) {
        snapshots.refresh_if_older_than(Area::Dns, snapshots.now());
    }
    match plan_and_execute(ctx, &api, &current, &snapshots, &now).await {
        Ok(()) => Ok(Action::requeue(snapshots.resync_interval())),
        Err(err) => {
            let current = latest(ctx, obj);
            let outcome = failed(&current, &err);
            report(ctx, &api, &current, &outcome, None, &now).await?;
            Err(err)
        }
    }
}

/// Plans `current` against the DNS snapshot, executes, and reports. A drift correction is
/// reported twice: first the plan's view (`Drifted=True` with the diff, gauge 1, a "drift
/// detected" event), then the corrected state; otherwise the drift would leave no trace.
async fn plan_and_execute(
    ctx: &DnsContext,
    api: &Api<DNSConfig>,
    current: &DNSConfig,
    snapshots: &TailnetSnapshots,
    now: &Time,
) -> Result<(), ReconcileError> {
    let mut resource = DnsResource::from_object(current);
    let tailnet = &current.spec.common.tailnet_ref;
    resource.spec.common.suspend =
        suspended(resource.spec.common.suspend, &ctx.shared.snapshots, tailnet);
    let plan = observe_and_plan(&resource, &others(&ctx.store, current), snapshots).await?;
    let mut before = current.status.clone().unwrap_or_default().normalized();
    if plan.write_reason() == Some(WriteReason::DriftCorrection) {
        // Only the drift: Ready and Synced keep their values (and transition times) until
        // the correction's own outcome.
        let mut detected = as_last_written(current);
        detected.drifted = plan.outcome.drifted.clone();
        detected.drift = plan.outcome.drift.clone();
        before = report(ctx, api, current, &detected, None, now).await?;
    }
    let executed = execute(plan, snapshots).await?;
    if executed.wrote == Some(WriteReason::DriftCorrection) {
        ctx.shared.metrics.record_drift_correction(KIND);
    }
    let mut reported = current.clone();
    reported.status = Some(before);
    report(ctx, api, &reported, &executed.outcome, executed.wrote, now).await?;
    Ok(())
}

/// `deletionPolicy: Delete`: removes what `status.applied` says this resource set, in one
/// write (none when nothing of it is left). A DNSConfig that never managed the tailnet's DNS
/// (a conflict loser) has nothing applied and writes nothing. `Orphan` (a finalizer left from
/// an earlier `Delete`): nothing.
async fn clean_up(obj: &DNSConfig, ctx: &DnsContext, tailnet: &str) -> Result<(), ReconcileError> {
    let applied = obj.status.clone().and_then(|s| s.normalized().applied);
    let Some(applied) = applied.filter(|_| obj.spec.common.deletes_on_removal()) else {
        return Ok(());
    };
    let Some(snapshots) = ctx.shared.snapshots.get(tailnet) else {
        return Err(ReconcileError::not_found(
            format!("Tailnet {tailnet} (Ready)"),
            format!(
                "DNSConfig {} has deletionPolicy: Delete and what it set cannot be removed \
                 while the Tailnet is not Ready; fix the Tailnet, or set deletionPolicy: Orphan",
                obj.name_any()
            ),
        ));
    };
    // A fresh read: the write replaces the whole configuration, so it must start from now.
    snapshots.refresh_if_older_than(Area::Dns, snapshots.now());
    let live = snapshots.dns().await?;
    let Some(next) = cleared(&applied, &live.data) else {
        return Ok(());
    };
    let written = snapshots.client().set_dns_configuration(&next).await;
    snapshots.record_write(Area::Dns);
    written?;
    publish_event(
        &ctx.shared,
        obj,
        false,
        CLEARED,
        "Delete",
        format!(
            "deletionPolicy: Delete: removed {} set by this DNSConfig from tailnet {tailnet} \
             (MagicDNS left as it is)",
            crate::reconcile::dns_config::describe_parts(&applied)
        ),
    )
    .await;
    Ok(())
}

/// The store's copy of `obj` (the newest the operator has seen), else `obj` itself.
fn latest(ctx: &DnsContext, obj: &DNSConfig) -> Arc<DNSConfig> {
    ctx.store
        .get(&ObjectRef::from_obj(obj))
        .unwrap_or_else(|| Arc::new(obj.clone()))
}

/// Writes the outcome into `obj`'s status (nothing when unchanged), sets the drift gauge and
/// publishes the events of the transition. Returns the status as now written.
async fn report(
    ctx: &DnsContext,
    api: &Api<DNSConfig>,
    obj: &DNSConfig,
    outcome: &DnsOutcome,
    wrote: Option<WriteReason>,
    now: &Time,
) -> Result<DNSConfigStatus, ReconcileError> {
    let before = obj.status.clone().map(DNSConfigStatus::normalized);
    let mut status = before.clone().unwrap_or_default();
    outcome.write_status(&mut status, now);
    write_status(api, obj, before.as_ref(), &status).await?;
    let drifted = conditions::is_true(&status.common.conditions, ConditionType::Drifted);
    ctx.shared
        .metrics
        .set_drifted(KIND, &obj.name_any(), drifted);
    for event in transition_events(before.as_ref(), &status, wrote) {
        publish_event(
            &ctx.shared,
            obj,
            event.warning,
            &event.reason,
            "Reconcile",
            event.note,
        )
        .await;
    }
    Ok(status)
}

/// The outcome while the Tailnet is not Ready: the rest of the status is kept.
fn not_ready(obj: &DNSConfig, tailnet: &str) -> DnsOutcome {
    let message = format!(
        "Tailnet {tailnet} is not Ready (missing, or its credentials are not accepted yet): \
         the DNS is applied once it is; see `kubectl describe tailnet {tailnet}`"
    );
    kept_with(obj, TAILNET_NOT_READY, &message)
}

/// The outcome of a pass that failed with `err`: the rest of the status is kept.
fn failed(obj: &DNSConfig, err: &ReconcileError) -> DnsOutcome {
    kept_with(
        obj,
        conditions::failure_reason(err.category()),
        &err.to_string(),
    )
}

/// `Ready=False` and `Synced=False` with `why`; everything else stays as last written.
fn kept_with(obj: &DNSConfig, why: &str, message: &str) -> DnsOutcome {
    let mut outcome = as_last_written(obj);
    outcome.ready = Verdict::new(ConditionStatus::False, why, message);
    outcome.synced = Verdict::new(ConditionStatus::False, why, message);
    outcome
}

/// The outcome `obj`'s status already says (conditions not set yet: `Unknown, Pending`).
fn as_last_written(obj: &DNSConfig) -> DnsOutcome {
    let status = obj.status.clone().unwrap_or_default().normalized();
    let verdict = |type_| {
        conditions::find(&status.common.conditions, type_)
            .map(|c| {
                let value = match c.status.as_str() {
                    "True" => ConditionStatus::True,
                    "False" => ConditionStatus::False,
                    _ => ConditionStatus::Unknown,
                };
                Verdict::new(value, &c.reason, c.message.clone())
            })
            .unwrap_or_else(|| Verdict::new(ConditionStatus::Unknown, reason::PENDING, ""))
    };
    DnsOutcome {
        generation: obj.metadata.generation,
        ready: verdict(ConditionType::Ready),
        synced: verdict(ConditionType::Synced),
        drifted: verdict(ConditionType::Drifted),
        drift: status.drift,
        conflict: status.conflict,
        applied: status.applied,
        magic_dns: status.magic_dns,
    }
}

/// One event to publish (the shared [`KindEvent`]).
pub type DnsEvent = KindEvent;

/// The events for a status going from `before` to `after` in a pass that made the write
/// `wrote` (pure): events mark transitions, so a steady state publishes nothing.
///
/// - a write: `Applied` (Normal) with why;
/// - `Drifted` turning True: `Drifted` (Warning) with the diff summary;
/// - `Ready` turning False, or changing reason or message while False: a Warning with that
///   reason (`Conflict`, `Invalid`, `TailnetNotReady`, ...) and message.
pub fn transition_events(
    before: Option<&DNSConfigStatus>,
    after: &DNSConfigStatus,
    wrote: Option<WriteReason>,
) -> Vec<DnsEvent> {
    let mut events = Vec::new();
    if let Some(why) = wrote {
        events.push(DnsEvent::new(
            false,
            APPLIED,
            format!("wrote the tailnet's DNS ({})", why.as_str()),
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
                .unwrap_or_else(|| "the live DNS differs from what was applied".to_owned())
        },
    ));
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::conditions::{now, set_condition};

    fn status(ready: (ConditionStatus, &str, &str), drifted: bool) -> DNSConfigStatus {
        let mut status = DNSConfigStatus::default();
        set_condition(
            &mut status.common.conditions,
            ConditionType::Ready,
            ready.0,
            ready.1,
            ready.2,
            Some(1),
            &now(),
        );
        set_condition(
            &mut status.common.conditions,
            ConditionType::Drifted,
            drifted.into(),
            if drifted { "Drifted" } else { "InSync" },
            "",
            Some(1),
            &now(),
        );
        status
    }

    #[test]
    fn a_steady_state_publishes_nothing() {
        let ok = status((ConditionStatus::True, "Reconciled", "ok"), false);
        assert!(transition_events(Some(&ok), &ok, None).is_empty());
        let conflict = status(
            (ConditionStatus::False, "Conflict", "DNSConfig a wins"),
            false,
        );
        assert!(transition_events(Some(&conflict), &conflict, None).is_empty());
    }

    #[test]
    fn writes_drift_and_failures_are_events() {
        let ok = status((ConditionStatus::True, "Reconciled", "ok"), false);
        let applied = transition_events(Some(&ok), &ok, Some(WriteReason::SpecChanged));
        assert_eq!(
            applied,
            [DnsEvent::new(
                false,
                APPLIED,
                "wrote the tailnet's DNS (SpecChanged)"
            )]
        );
        let drifted = status((ConditionStatus::True, "Drifted", "left"), true);
        let events = transition_events(Some(&ok), &drifted, None);
        assert_eq!(events.len(), 1);
        assert!(events[0].warning && events[0].note.starts_with("drift detected"));
        let conflict = status(
            (ConditionStatus::False, "Conflict", "DNSConfig a wins"),
            false,
        );
        assert_eq!(
            transition_events(Some(&ok), &conflict, None),
            [DnsEvent::new(true, "Conflict", "DNSConfig a wins")]
        );
    }
}
