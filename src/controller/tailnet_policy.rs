//! The `TailnetPolicy` controller: composes every TailnetPolicy of a tailnet into the tailnet's
//! one policy file and applies it, through the pure planner and executor of
//! [`crate::reconcile::tailnet_policy`] (the same ones file mode runs).
//!
//! Pipeline of one reconcile: per-tailnet lock → the Tailnet's snapshots from the
//! [`crate::snapshot::SnapshotRegistry`] (none: `Ready=False, TailnetNotReady`) → every
//! TailnetPolicy of that tailnet from the reflector store (no API list) → texts resolved
//! (inline, or a ConfigMap key: one `GET` each) → `reconcile(...)` with the revision history
//! in a ConfigMap of the operator namespace → the status of **every** policy of the tailnet
//! written from the one outcome (skipped when unchanged), drift gauge, events on transitions →
//! requeue at the Tailnet's resync interval.
//!
//! Decisions:
//! - **Siblings from the same outcome.** The policy file is tailnet-wide, so one composition
//!   decides every resource's status. Writing all of them from it (instead of triggering a
//!   reconcile of each sibling) is the simplest correct choice: no second composition, no
//!   trigger plumbing, and a sibling that reconciles later computes the same outcome and
//!   writes nothing.
//! - **Serialized per tailnet.** Reconciles of two policies of one tailnet never compose
//!   concurrently (a per-tailnet async mutex), so they never race on the If-Match write or the
//!   history ConfigMap. Different tailnets run in parallel.
//! - **`reconcile-at` means "look now".** A new value of the annotation re-reads the live
//!   policy (the snapshot is otherwise shared for the resync interval), so a console edit is
//!   seen by a forced reconcile and not only at the next resync.
//! - **Watches.** ConfigMaps (metadata only) map to the policies whose `policyFrom` names
//!   them; Tailnets map to their policies, so a Tailnet becoming Ready applies its policy at
//!   once (the `TailnetNotReady` requeue is only a fallback).
//! - **Deletion.** A finalizer only with `deletionPolicy: Delete` (removed again if the policy
//!   changes to `Orphan`). Deleting a Fragment then recomposes without it and applies; deleting
//!   a Base resets the tailnet's policy to Tailscale's default. With `Orphan` (the default)
//!   deleting writes nothing; the remaining policies compose without the deleted one at their
//!   next reconcile, so a deleted Fragment's rules leave the tailnet then, and a tailnet whose
//!   Base is gone keeps its last policy (its Fragments report `NoBase`).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use super::coordination::{
    ForcedReconciles, TailnetLocks, forget_deleted, lock_unpoisoned, note_tailnet_suspension,
    suspended,
};
use super::{
    Context, KindContext, KindController, KindEvent, Metrics, Stop, condition_events,
    controller_for, has_finalizer, instrumented, kind_controller, set_finalizer, write_status,
};
use crate::reconcile::tailnet_policy::{
    ApplyReason, ConfigMapRevisionStore, ExecuteOutcome, ExecuteResult, PolicyAction, PolicyPlan,
    PolicyResource, ResourceOutcome, TextSource, config_map_text, execute, observe_and_plan,
    policy_resource, text_source,
};
use crate::resources::conditions::{
    self, ConditionStatus, ConditionType, failure_reason, reason, set_condition, time_from,
};
use crate::resources::tailnet_policy::PolicyRole;
use crate::resources::{ReconcileError, Tailnet, TailnetPolicy, TailnetPolicyStatus};
use crate::snapshot::{Area, TailnetSnapshots};

/// The kind label in metrics and logs.
pub const KIND: &str = "TailnetPolicy";
/// Ready reason while the referenced Tailnet has no connection (missing, or not Ready).
pub const TAILNET_NOT_READY: &str = "TailnetNotReady";
/// Event reason of a successful apply.
pub const APPLIED: &str = "Applied";
/// Event reason when deleting a Base with `deletionPolicy: Delete` reset the tailnet's policy.
pub const RESET: &str = "PolicyReset";
/// How soon a policy whose Tailnet is not Ready looks again (the Tailnet watch usually
/// triggers it sooner).
pub const NOT_READY_RETRY: Duration = Duration::from_secs(15);
/// How soon a pass whose write got HTTP 412 plans again (against a fresh read).
pub const CONFLICT_RETRY: Duration = Duration::from_secs(2);

/// Per-controller state beside the shared [`Context`].
pub struct PolicyContext {
    pub shared: Arc<Context>,
    store: Store<TailnetPolicy>,
    /// One async mutex per tailnet: reconciles of one tailnet's policies take turns.
    locks: TailnetLocks,
    /// The last `reconcile-at` value seen per policy, to tell a new request from an old one
    /// (entries go when the watch sees the policy deleted).
    forced: ForcedReconciles,
    /// The `policyFrom` ConfigMaps, read again only when the watch has seen them change.
    config_maps: ConfigMapCache,
}

impl KindContext for PolicyContext {
    fn shared(&self) -> &Context {
        &self.shared
    }
}

/// The TailnetPolicy controller, ready for the manager to run.
pub fn controller(ctx: Arc<Context>, stop: &Stop) -> KindController {
    let client = ctx.client.clone();
    let forced = ForcedReconciles::default();
    let on_delete = {
        let (metrics, forced) = (Arc::clone(&ctx.metrics), forced.clone());
        move |policy: &TailnetPolicy| {
            forget_deleted(&metrics, &forced, KIND, policy);
        }
    };
    let controller = controller_for(
        Api::<TailnetPolicy>::all(client.clone()),
        watcher::Config::default(),
        on_delete,
    );
    let store = controller.store();
    let (by_config_map, by_tailnet) = (store.clone(), store.clone());
    let registry = ctx.snapshots.clone();
    let config_maps = ConfigMapCache::default();
    let seen_maps = config_maps.clone();
    let controller = controller
        // Metadata only: a change is all that matters; the text is read when reconciling.
        .watches(
            Api::<PartialObjectMeta<ConfigMap>>::all(client.clone()),
            watcher::Config::default(),
            move |map: PartialObjectMeta<ConfigMap>| {
                seen_maps.saw(&map);
                referencing(&by_config_map, &map)
            },
        )
        .watches(
            Api::<Tailnet>::all(client),
            watcher::Config::default(),
            move |tailnet: Tailnet| {
                note_tailnet_suspension(&registry, &tailnet);
                of_tailnet(&by_tailnet, &tailnet.name_any())
            },
        )
        .graceful_shutdown_on(stop.wait());
    let policy_ctx = Arc::new(PolicyContext {
        shared: ctx,
        store,
        locks: TailnetLocks::default(),
        forced,
        config_maps,
    });
    kind_controller(KIND, controller, reconcile, policy_ctx)
}

/// The policies whose `policyFrom` names `map`.
fn referencing(
    store: &Store<TailnetPolicy>,
    map: &PartialObjectMeta<ConfigMap>,
) -> Vec<ObjectRef<TailnetPolicy>> {
    let (namespace, name) = (map.namespace().unwrap_or_default(), map.name_any());
    store
        .state()
        .iter()
        .filter(|p| {
            p.spec.policy_from.as_ref().is_some_and(|from| {
                let r = &from.config_map_key_ref;
                r.namespace == namespace && r.name == name
            })
        })
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

/// The policies of tailnet `tailnet`.
fn of_tailnet(store: &Store<TailnetPolicy>, tailnet: &str) -> Vec<ObjectRef<TailnetPolicy>> {
    members(store, tailnet)
        .iter()
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

/// The live (not being deleted) policies of `tailnet`, by name.
fn members(store: &Store<TailnetPolicy>, tailnet: &str) -> Vec<Arc<TailnetPolicy>> {
    let mut members: Vec<Arc<TailnetPolicy>> = store
        .state()
        .into_iter()
        .filter(|p| p.spec.common.tailnet_ref == tailnet && p.metadata.deletion_timestamp.is_none())
        .collect();
    members.sort_by_key(|p| p.name_any());
    members
}

async fn reconcile(
    policy: Arc<TailnetPolicy>,
    ctx: Arc<PolicyContext>,
) -> Result<Action, ReconcileError> {
    let shared = Arc::clone(&ctx.shared);
    instrumented(&shared, &*policy, reconcile_inner(&policy, &ctx)).await
}

async fn reconcile_inner(
    policy: &TailnetPolicy,
    ctx: &PolicyContext,
) -> Result<Action, ReconcileError> {
    let tailnet = policy.spec.common.tailnet_ref.clone();
    let tailnet_lock = ctx.locks.for_tailnet(&tailnet);
    let _serialized = tailnet_lock.lock().await;
    let api = Api::<TailnetPolicy>::all(ctx.shared.client.clone());
    // The newest copy: finalizer patches carry its resourceVersion.
    let current = latest(ctx, policy);
    if current.metadata.deletion_timestamp.is_some() {
        if has_finalizer(&*current) {
            clean_up(&current, ctx, &api, &tailnet).await?;
            set_finalizer(&api, &*current, false).await?;
        }
        return Ok(Action::await_change());
    }
    // Before any write to the tailnet, so a policy that asks for cleanup always gets it.
    let wants_finalizer = current.spec.common.deletes_on_removal();
    if wants_finalizer != has_finalizer(&*current) {
        set_finalizer(&api, &*current, wants_finalizer).await?;
    }
    let now = time_from(Utc::now().trunc_subsecs(0));
    let Some(snapshots) = ctx.shared.snapshots.get(&tailnet) else {
        let current = latest(ctx, policy);
        let mut status = current.status.clone().unwrap_or_default();
        not_ready(&mut status, &current, &tailnet, &now);
        report(ctx, &api, &current, status, &ExecuteResult::NoWrite).await?;
        return Ok(Action::requeue(NOT_READY_RETRY));
    };
    if ctx.forced.newly_forced(policy) {
        snapshots.refresh_if_older_than(Area::Policy, snapshots.now());
    }
    match compose_and_report(ctx, &api, &snapshots, &tailnet, &now).await {
        // A 412: someone wrote between the read and the write. The executor dropped the policy
        // snapshot, so the retry re-reads it and plans against what that writer left.
        Ok(outcome) if matches!(outcome.result, ExecuteResult::Conflict { .. }) => {
            Ok(Action::requeue(CONFLICT_RETRY))
        }
        Ok(_) => Ok(Action::requeue(snapshots.resync_interval())),
        Err(err) => {
            let current = latest(ctx, policy);
            let mut status = current.status.clone().unwrap_or_default();
            failed(&mut status, &current, &err, &now);
            report(ctx, &api, &current, status, &ExecuteResult::NoWrite).await?;
            Err(err)
        }
    }
}

/// Composes and applies every live policy of `tailnet`, then writes each one's status from the
/// one outcome. Returns the outcome; `Err` when the pass could not run (API failure).
///
/// A drift correction is reported twice: first the plan's view (`Drifted=True` with the diff,
/// gauge 1, a "drift detected" event), then the corrected state. Otherwise detection and
/// correction in one pass would leave no trace of the drift in status.
async fn compose_and_report(
    ctx: &PolicyContext,
    api: &Api<TailnetPolicy>,
    snapshots: &TailnetSnapshots,
    tailnet: &str,
    now: &Time,
) -> Result<ExecuteOutcome, ReconcileError> {
    let members = members(&ctx.store, tailnet);
    let mut resources = resolve_all(&ctx.shared.client, &members, Some(&ctx.config_maps)).await;
    for resource in &mut resources {
        let own = resource.spec.common.suspend;
        resource.spec.common.suspend = suspended(own, &ctx.shared.snapshots, tailnet);
    }
    let history =
        ConfigMapRevisionStore::new(ctx.shared.client.clone(), &ctx.shared.namespace, tailnet);
    let plan = observe_and_plan(&resources, &[], snapshots, &history).await?;
    // What each member's status is on the server; the store's copy lags behind our own writes.
    let mut written: HashMap<String, TailnetPolicyStatus> = members
        .iter()
        .map(|m| (m.name_any(), m.status.clone().unwrap_or_default()))
        .collect();
    if corrects_drift(&plan) {
        for member in &members {
            if let Some(outcome) = plan.outcome(&member.name_any()) {
                let status = report_outcome(
                    ctx,
                    api,
                    member,
                    &written,
                    outcome,
                    &ExecuteResult::NoWrite,
                    now,
                )
                .await?;
                written.insert(member.name_any(), status);
            }
        }
    }
    let outcome = execute(plan, snapshots, &history, Utc::now()).await?;
    record_outcome_metrics(&ctx.shared.metrics, &outcome.result);
    for member in &members {
        if let Some(resource_outcome) = outcome.outcome(&member.name_any()) {
            report_outcome(
                ctx,
                api,
                member,
                &written,
                resource_outcome,
                &outcome.result,
                now,
            )
            .await?;
        }
    }
    Ok(outcome)
}

/// Counts drift corrections and rollbacks (one per pass: the pass writes one policy file).
fn record_outcome_metrics(metrics: &Metrics, result: &ExecuteResult) {
    match result {
        ExecuteResult::Applied {
            reason: ApplyReason::DriftCorrection,
            ..
        } => metrics.record_drift_correction(KIND),
        ExecuteResult::RolledBack { .. } => metrics.record_rollback(KIND),
        _ => {}
    }
}

fn corrects_drift(plan: &PolicyPlan) -> bool {
    matches!(&plan.action, PolicyAction::Apply(apply) if apply.reason == ApplyReason::DriftCorrection)
}

/// Writes `member`'s status from one outcome, starting from what was last written for it.
async fn report_outcome(
    ctx: &PolicyContext,
    api: &Api<TailnetPolicy>,
    member: &TailnetPolicy,
    written: &HashMap<String, TailnetPolicyStatus>,
    outcome: &ResourceOutcome,
    result: &ExecuteResult,
    now: &Time,
) -> Result<TailnetPolicyStatus, ReconcileError> {
    let before = written.get(&member.name_any()).cloned().unwrap_or_default();
    let mut status = before.clone();
    outcome.write_status(&mut status, now);
    report_from(ctx, api, member, Some(&before), status.clone(), result).await?;
    Ok(status)
}

/// `deletionPolicy: Delete`: takes the deleted policy's effect out of the tailnet before the
/// finalizer goes. A Fragment: the remaining policies are composed without it and applied
/// (they must apply: a Base that is not Ready after the pass keeps the finalizer, and the
/// error says why). A Base: the tailnet's policy is reset to Tailscale's default (an empty
/// body, with If-Match). `Orphan` (a finalizer left from an earlier `Delete`): nothing.
async fn clean_up(
    policy: &TailnetPolicy,
    ctx: &PolicyContext,
    api: &Api<TailnetPolicy>,
    tailnet: &str,
) -> Result<(), ReconcileError> {
    if !policy.spec.common.deletes_on_removal() {
        return Ok(());
    }
    let Some(snapshots) = ctx.shared.snapshots.get(tailnet) else {
        return Err(ReconcileError::not_found(
            format!("Tailnet {tailnet} (Ready)"),
            format!(
                "TailnetPolicy {} has deletionPolicy: Delete and its effect cannot be removed                  while the Tailnet is not Ready; fix the Tailnet, or set deletionPolicy: Orphan",
                policy.name_any()
            ),
        ));
    };
    if policy.spec.role == PolicyRole::Base {
        let live = snapshots.policy().await?;
        let reset = snapshots
            .client()
            .set_policy("", Some(&live.data.etag))
            .await;
        snapshots.record_write(Area::Policy);
        reset?;
        super::publish_event(
            &ctx.shared,
            policy,
            false,
            RESET,
            "Delete",
            format!(
                "deletionPolicy: Delete: the policy of tailnet {tailnet} was reset to the default"
            ),
        )
        .await;
        return Ok(());
    }
    let now = time_from(Utc::now().trunc_subsecs(0));
    let outcome = compose_and_report(ctx, api, &snapshots, tailnet, &now).await?;
    let base = members(&ctx.store, tailnet)
        .into_iter()
        .find(|m| m.spec.role == PolicyRole::Base)
        .and_then(|b| outcome.outcome(&b.name_any()).cloned());
    match base {
        Some(base) if !base.ready.is_true() => Err(ReconcileError::Conflict {
            message: format!(
                "TailnetPolicy {} (deletionPolicy: Delete) is still in the tailnet's policy: \
                 the remaining policies do not apply ({}: {}); fix them, or set \
                 deletionPolicy: Orphan",
                policy.name_any(),
                base.ready.reason,
                base.ready.message
            ),
        }),
        // Applied, or no Base left: nothing the operator manages holds the fragment.
        _ => Ok(()),
    }
}

/// The store's copy of `policy` (the newest the operator has seen), else `policy` itself.
fn latest(ctx: &PolicyContext, policy: &TailnetPolicy) -> Arc<TailnetPolicy> {
    ctx.store
        .get(&ObjectRef::from_obj(policy))
        .unwrap_or_else(|| Arc::new(policy.clone()))
}

/// The planner inputs of `members`, each text resolved. A ConfigMap key costs one `GET`, or
/// none when `cache` holds the ConfigMap as the watch last saw it.
pub async fn resolve_all(
    client: &kube::Client,
    members: &[Arc<TailnetPolicy>],
    cache: Option<&ConfigMapCache>,
) -> Vec<PolicyResource> {
    let mut resources = Vec::with_capacity(members.len());
    for member in members {
        let text = resolve_text(client, member, cache).await;
        resources.push(policy_resource(member, text));
    }
    resources
}

async fn resolve_text(
    client: &kube::Client,
    policy: &TailnetPolicy,
    cache: Option<&ConfigMapCache>,
) -> Result<String, ReconcileError> {
    let r = match text_source(&policy.spec)? {
        TextSource::Inline(text) => return Ok(text.to_owned()),
        TextSource::ConfigMap(r) => r,
    };
    let cached = cache.and_then(|c| c.fresh(&r.namespace, &r.name));
    let map = match cached {
        Some(map) => Some(map),
        None => {
            let map = Api::<ConfigMap>::namespaced(client.clone(), &r.namespace)
                .get_opt(&r.name)
                .await?;
            if let (Some(cache), Some(map)) = (cache, &map) {
                cache.store(map);
            }
            map
        }
    };
    config_map_text(
        r,
        map.as_ref(),
        "referenced by spec.policyFrom.configMapKeyRef: create the ConfigMap or fix its \
         namespace/name; the policy is recomposed as soon as it exists",
    )
}

type MapKey = (String, String);

/// The `policyFrom` ConfigMaps read so far, each with the `resourceVersion` it was read at, and
/// the newest `resourceVersion` the metadata watch has seen of each. A ConfigMap is read again
/// only after the watch has seen it change (or before it has seen it at all), so a steady
/// resync of many policies reads no ConfigMap.
#[derive(Debug, Default, Clone)]
pub struct ConfigMapCache(Arc<Mutex<ConfigMapCacheState>>);

#[derive(Debug, Default)]
struct ConfigMapCacheState {
    seen: HashMap<MapKey, String>,
    read: HashMap<MapKey, ConfigMap>,
}

impl ConfigMapCache {
    /// Records what the watch saw of `map` (also on deletion: its last resourceVersion).
    pub fn saw(&self, map: &PartialObjectMeta<ConfigMap>) {
        let key = (map.namespace().unwrap_or_default(), map.name_any());
        let version = map.resource_version().unwrap_or_default();
        lock_unpoisoned(&self.0).seen.insert(key, version);
    }

    /// The ConfigMap as read, if the watch has seen no newer version of it.
    pub fn fresh(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        let state = lock_unpoisoned(&self.0);
        let key = (namespace.to_owned(), name.to_owned());
        let read = state.read.get(&key)?;
        let seen = state.seen.get(&key)?;
        (read.resource_version().as_ref() == Some(seen)).then(|| read.clone())
    }

    pub fn store(&self, map: &ConfigMap) {
        let key = (map.namespace().unwrap_or_default(), map.name_any());
        lock_unpoisoned(&self.0).read.insert(key, map.clone());
    }
}

/// Writes `status` for `policy` (nothing when unchanged), sets its drift gauge, and publishes
/// the events of what changed.
async fn report(
    ctx: &PolicyContext,
    api: &Api<TailnetPolicy>,
    policy: &TailnetPolicy,
    status: TailnetPolicyStatus,
    result: &ExecuteResult,
) -> Result<(), ReconcileError> {
    report_from(ctx, api, policy, policy.status.as_ref(), status, result).await
}

/// Writes `status` (skipped when it equals `before`), sets the drift gauge and publishes the
/// events of the transition from `before`.
async fn report_from(
    ctx: &PolicyContext,
    api: &Api<TailnetPolicy>,
    policy: &TailnetPolicy,
    before: Option<&TailnetPolicyStatus>,
    status: TailnetPolicyStatus,
    result: &ExecuteResult,
) -> Result<(), ReconcileError> {
    write_status(api, policy, before, &status).await?;
    let drifted = conditions::is_true(&status.common.conditions, ConditionType::Drifted);
    ctx.shared
        .metrics
        .set_drifted(KIND, &policy.name_any(), drifted);
    for event in transition_events(before, &status, result) {
        super::publish_event(
            &ctx.shared,
            policy,
            event.warning,
            &event.reason,
            "Reconcile",
            event.note,
        )
        .await;
    }
    Ok(())
}

/// `Ready=False, TailnetNotReady` (and `Synced=False`), naming the Tailnet.
fn not_ready(status: &mut TailnetPolicyStatus, policy: &TailnetPolicy, tailnet: &str, now: &Time) {
    let message = format!(
        "Tailnet {tailnet} is not Ready (missing, or its credentials are not accepted yet): \
         the policy is applied once it is; see `kubectl describe tailnet {tailnet}`"
    );
    set_both(status, policy, TAILNET_NOT_READY, &message, now);
}

/// `Ready=False` (and `Synced=False`) with the error's reason and message.
fn failed(
    status: &mut TailnetPolicyStatus,
    policy: &TailnetPolicy,
    err: &ReconcileError,
    now: &Time,
) {
    set_both(
        status,
        policy,
        failure_reason(err.category()),
        &err.to_string(),
        now,
    );
}

fn set_both(
    status: &mut TailnetPolicyStatus,
    policy: &TailnetPolicy,
    why: &str,
    message: &str,
    now: &Time,
) {
    let generation = policy.metadata.generation;
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

/// One event to publish (the shared [`KindEvent`]).
pub type PolicyEvent = KindEvent;

/// The events for a status going from `before` to `after` in a pass that did `result` (pure):
/// events mark transitions, so a steady state publishes nothing.
///
/// - a new `appliedRevision`: `Applied` (Normal) with the revision and why; after a rollback,
///   `RolledBack` (Warning); after a drift correction, also `Drifted` (Warning) saying which
///   revision corrected it;
/// - `Drifted` turning True: `Drifted` (Warning) with the diff summary;
/// - `Ready` turning False, or changing reason or message while False: a Warning with that
///   reason (`Conflict`, `ValidationFailed`, `TailnetNotReady`, ...) and message.
pub fn transition_events(
    before: Option<&TailnetPolicyStatus>,
    after: &TailnetPolicyStatus,
    result: &ExecuteResult,
) -> Vec<PolicyEvent> {
    let mut events = Vec::new();
    let revision_before = before.and_then(|s| s.applied_revision);
    if let Some(revision) = after
        .applied_revision
        .filter(|r| Some(*r) != revision_before)
    {
        match result {
            ExecuteResult::RolledBack {
                problem, restored, ..
            } => events.push(PolicyEvent::new(
                true,
                reason::ROLLED_BACK,
                format!(
                    "the post-apply check failed ({problem}); revision {restored} was restored \
                     as revision {revision}"
                ),
            )),
            ExecuteResult::Applied { reason: why, .. } => {
                if *why == ApplyReason::DriftCorrection {
                    events.push(PolicyEvent::new(
                        true,
                        reason::DRIFTED,
                        format!(
                            "the live policy was changed outside the operator; corrected by \
                             revision {revision} (driftPolicy: Correct)"
                        ),
                    ));
                }
                events.push(PolicyEvent::new(
                    false,
                    APPLIED,
                    format!("applied revision {revision} ({})", why.as_str()),
                ));
            }
            _ => {}
        }
    }
    events.extend(condition_events(
        before.map(|s| &s.common),
        &after.common,
        || {
            after
                .drift
                .as_ref()
                .map(|d| d.summary())
                .unwrap_or_else(|| "the live policy differs from the applied revision".to_owned())
        },
    ));
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::conditions::now;

    fn status_with(
        ready: (ConditionStatus, &str, &str),
        revision: Option<u32>,
    ) -> TailnetPolicyStatus {
        let mut status = TailnetPolicyStatus {
            applied_revision: revision,
            ..TailnetPolicyStatus::default()
        };
        set_condition(
            &mut status.common.conditions,
            ConditionType::Ready,
            ready.0,
            ready.1,
            ready.2,
            Some(1),
            &now(),
        );
        status
    }

    #[test]
    fn a_steady_state_publishes_nothing() {
        let status = status_with((ConditionStatus::True, "Reconciled", "ok"), Some(3));
        assert!(transition_events(Some(&status), &status, &ExecuteResult::NoWrite).is_empty());
        let failing = status_with(
            (ConditionStatus::False, "Conflict", "group:eng twice"),
            None,
        );
        assert!(transition_events(Some(&failing), &failing, &ExecuteResult::NoWrite).is_empty());
    }

    #[test]
    fn a_new_revision_is_applied_and_a_drift_correction_says_so() {
        let before = status_with((ConditionStatus::True, "Reconciled", "ok"), Some(1));
        let after = status_with((ConditionStatus::True, "Reconciled", "ok"), Some(2));
        let applied = ExecuteResult::Applied {
            revision: 2,
            reason: ApplyReason::SpecChanged,
        };
        let events = transition_events(Some(&before), &after, &applied);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, APPLIED);
        assert!(!events[0].warning && events[0].note.contains("revision 2"));
        let corrected = ExecuteResult::Applied {
            revision: 2,
            reason: ApplyReason::DriftCorrection,
        };
        let reasons: Vec<String> = transition_events(Some(&before), &after, &corrected)
            .into_iter()
            .map(|e| e.reason)
            .collect();
        assert_eq!(reasons, ["Drifted", "Applied"]);
    }

    #[test]
    fn a_failure_is_a_warning_once_and_again_when_it_changes() {
        let ok = status_with((ConditionStatus::True, "Reconciled", "ok"), Some(1));
        let conflict = status_with(
            (ConditionStatus::False, "Conflict", "group:eng twice"),
            Some(1),
        );
        let events = transition_events(Some(&ok), &conflict, &ExecuteResult::NoWrite);
        assert_eq!(
            events,
            [PolicyEvent::new(true, "Conflict", "group:eng twice")]
        );
        let other = status_with(
            (ConditionStatus::False, "Invalid", "tag:x has no owner"),
            Some(1),
        );
        assert_eq!(
            transition_events(Some(&conflict), &other, &ExecuteResult::NoWrite)[0].reason,
            "Invalid"
        );
        let pending = status_with((ConditionStatus::False, "Pending", "waiting"), None);
        assert!(transition_events(None, &pending, &ExecuteResult::NoWrite).is_empty());
    }
}
