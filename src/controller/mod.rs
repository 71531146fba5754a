//! The controller manager (`tailnet-operator run`) and the machinery every kind's controller
//! shares, kept here once (`docs/architecture.md`):
//! - [`Context`]: the kube client, event recorder, per-tailnet snapshot caches, metrics and the
//!   operator namespace, plus per-object failure counts for back-off;
//! - [`write_status`]: server-side apply of `{apiVersion, kind, status}` on the status
//!   subresource with the one field manager, skipped when nothing changed (steady state writes
//!   nothing);
//! - [`publish_event`]: events through kube's `Recorder` (reason = condition reason);
//! - [`instrumented`] + [`error_policy`]: metrics per reconcile, back-off with jitter per
//!   object from [`ReconcileError::requeue_after`], no retry of an invalid spec;
//! - [`controller_for`]: a `Controller` whose trigger is the spec generation **or** the
//!   `tailnet.ops.dev/reconcile-at` annotation, so status writes do not re-trigger reconciles
//!   but `kubectl annotate ... reconcile-at=$(date)` does;
//! - [`suspension`]: the ManagedTailnet's own `suspend` message; [`coordination::suspended`] makes a
//!   resource's effective `suspend` its own or its ManagedTailnet's;
//! - [`has_finalizer`] / [`set_finalizer`]: the cleanup finalizer, for kinds whose deletion
//!   changes the tailnet;
//! - [`condition_events`]: the `Drifted` and `Ready`-turned-False events every kind publishes;
//! - [`kind_controller`]: runs a kind's `Controller` with the shared error policy and readiness;
//! - [`coordination`]: per-tailnet locks and `reconcile-at` memory.
//!
//! One module per kind ([`tailnet`], [`tailnet_policy`], [`dns_config`], [`device_tag_set`],
//! [`change_proposal`]); each exposes `controller(ctx, stop) -> KindController`, and [`manager`]
//! runs the list of them (adding a kind is one line there).
pub mod change_proposal;
pub mod coordination;
pub mod device_tag_set;
pub mod dns_config;
pub mod funnel_exposure;
pub mod http;
pub mod key_rotation_policy;
pub mod manager;
pub mod metrics;
pub mod skeleton;
pub mod tailnet;
pub mod tailnet_policy;
pub mod tailnet_webhook;
pub mod tailscale_service;

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt::Debug;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{Predicate, PredicateConfig, WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::oneshot;

pub use http::Readiness;
pub use manager::{LeaseConfig, Manager, ManagerError, RunConfig, run};
pub use metrics::Metrics;

use crate::resources::common::{
    FIELD_MANAGER, FINALIZER, RECONCILE_AT_ANNOTATION, ROLLBACK_TO_ANNOTATION,
};
use crate::resources::conditions::{self, ConditionStatus, ConditionType};
use crate::resources::{CommonStatus, ManagedTailnet, ReconcileError};
use crate::snapshot::SnapshotRegistry;

/// The `reportingController` of the operator's events.
pub const REPORTING_CONTROLLER: &str = "tailnet-operator";
/// Extra random delay added to every error requeue, as a fraction of it, so objects that failed
/// together (an API outage) do not retry in lock step.
pub const JITTER_FRACTION: f64 = 0.1;

/// What every reconciler of every kind gets.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub snapshots: SnapshotRegistry,
    pub metrics: Arc<Metrics>,
    /// Where the operator runs: its Lease (and, for policies, revision history) live here.
    pub namespace: String,
    /// This replica's name (`POD_NAME`): the Lease holder and the events' reporting instance.
    pub identity: String,
    /// How long finished ChangeProposals are kept (`run --proposal-ttl`).
    pub proposal_ttl: Duration,
    /// Wall-clock time of the passes (`Pass::now`); tests advance it.
    pub clock: crate::snapshot::WallClock,
    /// Webhook signing secrets per tailnet, and the wake-ups webhooks send the controllers.
    pub webhooks: Arc<crate::webhook::Webhooks>,
    /// Consecutive failures per object (`Kind/namespace/name`), reset by a success.
    failures: Mutex<HashMap<String, u32>>,
}

impl Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("namespace", &self.namespace)
            .field("snapshots", &self.snapshots)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context whose events name `identity` (the pod) as the reporting instance.
    pub fn new(
        client: Client,
        namespace: impl Into<String>,
        identity: &str,
        metrics: Arc<Metrics>,
    ) -> Context {
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.to_owned(),
            instance: Some(identity.to_owned()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            snapshots: SnapshotRegistry::new(),
            metrics,
            namespace: namespace.into(),
            identity: identity.to_owned(),
            proposal_ttl: change_proposal::DEFAULT_PROPOSAL_TTL,
            clock: crate::snapshot::WallClock::system(),
            webhooks: Arc::default(),
            failures: Mutex::default(),
        }
    }

    /// Counts one more failure of `obj` and returns the count (1 for the first).
    pub fn record_failure<K: Resource<DynamicType = ()>>(&self, obj: &K) -> u32 {
        let mut failures = self.failures();
        let count = failures.entry(object_key(obj)).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    /// Forgets the failures of `obj` (it reconciled fine).
    pub fn record_success<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        self.failures().remove(&object_key(obj));
    }

    /// Consecutive failures of `obj` so far.
    pub fn failures_of<K: Resource<DynamicType = ()>>(&self, obj: &K) -> u32 {
        self.failures().get(&object_key(obj)).copied().unwrap_or(0)
    }

    fn failures(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        // Counters cannot be left half-updated; a poisoned lock is still usable.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Runs one reconcile of `obj`, recording its duration and result in the metrics, and resetting
/// the object's failure count on success (the error policy counts failures).
pub async fn instrumented<K, F>(
    ctx: &Context,
    obj: &K,
    reconcile: F,
) -> Result<Action, ReconcileError>
where
    K: Resource<DynamicType = ()>,
    F: Future<Output = Result<Action, ReconcileError>>,
{
    let started = Instant::now();
    let result = reconcile.await;
    let kind = K::kind(&());
    let failure = result.as_ref().err().map(ReconcileError::category);
    ctx.metrics
        .record_reconcile(&kind, started.elapsed().as_secs_f64(), failure);
    if result.is_ok() {
        ctx.record_success(obj);
    }
    result
}

/// The error policy of every controller: the category's retry schedule for this object's
/// consecutive failure count, plus up to [`JITTER_FRACTION`] of random delay; an invalid spec
/// waits for a change (the trigger predicate fires on the next spec edit).
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: &K,
    err: &ReconcileError,
    ctx: &Context,
) -> Action {
    let failures = ctx.record_failure(obj);
    let action = requeue_action(err, failures, fastrand::f64());
    tracing::debug!(
        kind = %K::kind(&()),
        name = %obj.name_any(),
        failures,
        category = %err.category(),
        ?action,
        "reconcile failed: {err}"
    );
    action
}

/// The action after the `failures`-th consecutive failure with `err`; `unit` in `[0, 1)` picks
/// the jitter.
pub fn requeue_action(err: &ReconcileError, failures: u32, unit: f64) -> Action {
    match err.requeue_after(failures) {
        Some(wait) => Action::requeue(with_jitter(wait, unit)),
        None => Action::await_change(),
    }
}

/// `wait` plus `unit` (in `[0, 1)`) times [`JITTER_FRACTION`] of it.
pub fn with_jitter(wait: Duration, unit: f64) -> Duration {
    wait + wait.mul_f64(JITTER_FRACTION * unit.clamp(0.0, 1.0))
}

/// Writes `desired` as the status of `obj` by server-side apply on the status subresource with
/// [`FIELD_MANAGER`] (forced: the operator is the only writer of status). Nothing is sent when
/// `desired` serializes the same as `current`, so a steady state costs no writes. Returns
/// whether it wrote.
///
/// Comparison is on the serialized form because that is what the API server keeps (timestamps
/// at second precision): comparing in memory would see a difference that never goes away.
pub async fn write_status<K, S>(
    api: &Api<K>,
    obj: &K,
    current: Option<&S>,
    desired: &S,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let desired_json = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?;
    if let Some(current) = current {
        let current_json = serde_json::to_value(current).map_err(kube::Error::SerdeError)?;
        if current_json == desired_json {
            return Ok(false);
        }
    }
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": desired_json,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}

/// One event to publish about a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindEvent {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

impl KindEvent {
    pub fn new(warning: bool, reason: &str, note: impl Into<String>) -> KindEvent {
        KindEvent {
            warning,
            reason: reason.to_owned(),
            note: note.into(),
        }
    }
}

/// The events every kind publishes when its common conditions move from `before` to `after`
/// (pure): events mark transitions, so a steady state publishes nothing.
///
/// - `Drifted` turning True: a `Drifted` Warning with `drift_summary` (the status's diff);
/// - `Ready` turning False, or changing reason or message while False (`Pending` excepted): a
///   Warning with that reason (`Conflict`, `Invalid`, `TailnetNotReady`, ...) and message.
pub fn condition_events(
    before: Option<&CommonStatus>,
    after: &CommonStatus,
    drift_summary: impl FnOnce() -> String,
) -> Vec<KindEvent> {
    let mut events = Vec::new();
    let was_drifted =
        before.is_some_and(|s| conditions::is_true(&s.conditions, ConditionType::Drifted));
    if !was_drifted && conditions::is_true(&after.conditions, ConditionType::Drifted) {
        events.push(KindEvent::new(
            true,
            conditions::reason::DRIFTED,
            format!("drift detected: {}", drift_summary()),
        ));
    }
    let ready_before = before.and_then(|s| conditions::find(&s.conditions, ConditionType::Ready));
    if let Some(ready) = conditions::find(&after.conditions, ConditionType::Ready) {
        let newly_false = ready.status == ConditionStatus::False.as_str()
            && ready.reason != conditions::reason::PENDING
            && ready_before.is_none_or(|b| {
                b.status != ready.status || b.reason != ready.reason || b.message != ready.message
            });
        if newly_false {
            events.push(KindEvent::new(true, &ready.reason, ready.message.clone()));
        }
    }
    events
}

/// Publishes an event about `obj`: `Warning` when `warning`, else `Normal`. Failing to publish
/// is logged and otherwise ignored: an event is never worth failing a reconcile for.
pub async fn publish_event<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    warning: bool,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::warn!(name = %obj.name_any(), reason, "could not publish event: {err}");
    }
}

/// Whether `obj` carries the operator's finalizer ([`FINALIZER`]).
pub fn has_finalizer<K: Resource>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds (`present`) or removes the operator's finalizer on `obj`, keeping any other
/// controller's. The merge patch carries the object's resourceVersion, so it fails with 409
/// (and the reconcile is retried) instead of dropping a finalizer someone else added since.
/// Any kind whose deletion must clean up the tailnet uses it.
pub async fn set_finalizer<K>(api: &Api<K>, obj: &K, present: bool) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let mut finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(FINALIZER.to_owned());
    }
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": obj.resource_version(),
    }});
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Hash of the `tailnet.ops.dev/reconcile-at` annotation, `None` when it is absent.
pub fn reconcile_at<K: Resource>(obj: &K) -> Option<u64> {
    annotation_hash(obj, RECONCILE_AT_ANNOTATION)
}

/// Hash of the break-glass `tailnet.ops.dev/rollback-to` annotation, `None` when absent.
pub fn rollback_to<K: Resource>(obj: &K) -> Option<u64> {
    annotation_hash(obj, ROLLBACK_TO_ANNOTATION)
}

fn annotation_hash<K: Resource>(obj: &K, annotation: &str) -> Option<u64> {
    obj.annotations().get(annotation).map(|value| {
        let mut hasher = DefaultHasher::new();
        value.hash(&mut hasher);
        hasher.finish()
    })
}

/// The trigger of every controller: a new spec generation, or a new value of the reconcile-at,
/// the break-glass rollback-to or the rotate-now annotation (each asks for action now, not at
/// the next resync).
/// Status writes and other metadata changes pass by, so the operator's own writes never cause a
/// reconcile; periodic resyncs come from the reconcilers' requeues.
pub fn trigger_predicate<K: Resource>() -> impl Predicate<K> {
    let generation: fn(&K) -> Option<u64> = predicates::generation;
    let annotation: fn(&K) -> Option<u64> = reconcile_at;
    let rollback: fn(&K) -> Option<u64> = rollback_to;
    let rotate: fn(&K) -> Option<u64> = rotate_now;
    generation
        .combine(annotation)
        .combine(rollback)
        .combine(rotate)
}

/// Hash of the `tailnet.ops.dev/rotate-now` annotation (KeyRotationPolicy), `None` when absent.
pub fn rotate_now<K: Resource>(obj: &K) -> Option<u64> {
    annotation_hash(
        obj,
        crate::resources::key_rotation_policy::ROTATE_NOW_ANNOTATION,
    )
}

/// A `Controller` for `api` triggered by [`trigger_predicate`], with its reflector store (for
/// readiness and for mapping related objects back to the resources that reference them).
/// `on_delete` sees every object the watch reports deleted (drop caches, metric series): with
/// no finalizer the reconciler never hears of a deletion.
pub fn controller_for<K>(
    api: Api<K>,
    config: watcher::Config,
    on_delete: impl Fn(&K) + Send + Sync + 'static,
) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let trigger = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::Delete(obj)) = event {
                on_delete(obj);
            }
        })
        .applied_objects()
        .predicate_filter(trigger_predicate(), PredicateConfig::default());
    Controller::for_stream(trigger, reader)
}

/// Why reconciling is suspended, if it is: the resource's own `spec.suspend` or its ManagedTailnet's.
pub fn suspension(own_suspend: bool, tailnet: Option<&ManagedTailnet>) -> Option<String> {
    if own_suspend {
        return Some("spec.suspend is true: not reconciling; status is still observed".into());
    }
    tailnet.filter(|t| t.spec.suspend).map(|t| {
        format!(
            "ManagedTailnet {} has spec.suspend set: not reconciling its resources",
            t.name_any()
        )
    })
}

/// A stop signal shared by the manager and its controllers: [`Stop::wait`] futures resolve once
/// [`Stop::stop`] has been called (also for waiters created afterwards).
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<Mutex<StopState>>);

#[derive(Debug, Default)]
struct StopState {
    stopped: bool,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    pub fn stop(&self) {
        let mut state = self.lock();
        state.stopped = true;
        // Dropping the senders wakes every waiter.
        state.waiters.clear();
    }

    pub fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    /// A future that resolves when stopped (`Send + Sync`, as `graceful_shutdown_on` needs).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let (sender, receiver) = oneshot::channel::<()>();
        let mut state = self.lock();
        if !state.stopped {
            state.waiters.push(sender);
        }
        async move {
            let _ = receiver.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, StopState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One kind's running controller, as the manager sees it.
pub struct KindController {
    pub kind: String,
    /// Resolves once the controller's watch has listed everything once (for `/readyz`).
    pub synced: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Runs the controller until the stop signal, then finishes in-flight reconciles.
    pub run: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// How the manager starts the controller of a kind: every kind of [`crate::for_each_kind`]
/// implements it in its controller module (tailnet-scoped kinds through [`skeleton`]).
pub trait Controlled {
    fn controller(ctx: Arc<Context>, stop: &Stop) -> KindController;
}

/// A kind's own reconcile context: whatever it keeps, it hands the shared [`Context`] to the
/// shared error policy.
pub trait KindContext: Send + Sync + 'static {
    fn shared(&self) -> &Context;
}

/// Runs `controller` with `reconcile`, the shared [`error_policy`] and [`log_result`], and
/// reports readiness once its store has synced: the same for every kind, so a kind's
/// `controller()` only builds its watches and its context.
pub fn kind_controller<K, C, R, Fut>(
    kind: impl Into<String>,
    controller: Controller<K>,
    reconcile: R,
    ctx: Arc<C>,
) -> KindController
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    C: KindContext,
    R: FnMut(Arc<K>, Arc<C>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Action, ReconcileError>> + Send + 'static,
{
    let store = controller.store();
    let run = controller
        .run(
            reconcile,
            |obj, err, ctx: Arc<C>| error_policy(&*obj, err, ctx.shared()),
            ctx,
        )
        .for_each(|result| {
            log_result(result);
            std::future::ready(())
        });
    KindController {
        kind: kind.into(),
        synced: Box::pin(async move {
            // Err only when the controller (the writer) is gone: nothing left to wait for.
            let _ = store.wait_until_ready().await;
        }),
        run: Box::pin(run),
    }
}

/// Logs what a controller's run stream yields: reconciler errors are already in events and
/// metrics (debug); watch and queue errors are the operator's own trouble (warn).
pub fn log_result<K, E, W>(
    result: Result<(reflector::ObjectRef<K>, Action), kube::runtime::controller::Error<E, W>>,
) where
    K: Resource,
    E: std::error::Error,
    W: std::error::Error,
{
    use kube::runtime::controller::Error as ControllerError;
    match result {
        Ok((object, _)) => tracing::trace!(%object, "reconciled"),
        Err(ControllerError::ReconcilerFailed(err, object)) => {
            tracing::debug!(%object, "reconcile failed: {err}")
        }
        Err(ControllerError::ObjectNotFound(object)) => {
            tracing::trace!(%object, "object gone before its reconcile")
        }
        Err(other) => tracing::warn!("controller: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ManagedTailnetSpec;
    use std::collections::BTreeMap;

    fn tailnet(name: &str, generation: i64, annotation: Option<&str>) -> ManagedTailnet {
        let mut t = ManagedTailnet::new(name, ManagedTailnetSpec::default());
        t.metadata.generation = Some(generation);
        if let Some(value) = annotation {
            t.metadata.annotations = Some(BTreeMap::from([(
                RECONCILE_AT_ANNOTATION.to_owned(),
                value.to_owned(),
            )]));
        }
        t
    }

    #[test]
    fn the_trigger_changes_with_generation_or_the_annotation_only() {
        let predicate = trigger_predicate::<ManagedTailnet>();
        let base = predicate.hash_property(&tailnet("a", 1, None));
        let mut status_only = tailnet("a", 1, None);
        status_only.metadata.resource_version = Some("99".into());
        status_only.status = Some(Default::default());
        assert_eq!(predicate.hash_property(&status_only), base);
        assert_ne!(predicate.hash_property(&tailnet("a", 2, None)), base);
        let annotated = predicate.hash_property(&tailnet("a", 1, Some("t1")));
        assert_ne!(annotated, base);
        assert_ne!(
            predicate.hash_property(&tailnet("a", 1, Some("t2"))),
            annotated
        );
        assert_eq!(
            predicate.hash_property(&tailnet("a", 1, Some("t1"))),
            annotated
        );
    }

    #[test]
    fn the_rollback_to_annotation_is_a_trigger_too() {
        let predicate = trigger_predicate::<ManagedTailnet>();
        let base = predicate.hash_property(&tailnet("a", 1, None));
        let mut pinned = tailnet("a", 1, None);
        pinned.metadata.annotations = Some(BTreeMap::from([(
            ROLLBACK_TO_ANNOTATION.to_owned(),
            "3".to_owned(),
        )]));
        assert_ne!(predicate.hash_property(&pinned), base);
    }

    #[test]
    fn jitter_adds_at_most_the_fraction() {
        let wait = Duration::from_secs(100);
        assert_eq!(with_jitter(wait, 0.0), wait);
        assert_eq!(with_jitter(wait, 0.5), Duration::from_secs(105));
        assert!(with_jitter(wait, 1.0) <= Duration::from_secs(110));
        assert_eq!(with_jitter(wait, 7.0), Duration::from_secs(110));
    }

    #[test]
    fn requeues_back_off_per_failure_and_invalid_specs_wait_for_a_change() {
        use crate::error::Category;
        use crate::tailscale::ApiError;
        let transient =
            ReconcileError::Api(ApiError::new(Category::Transient, "GET /x", "unavailable"));
        assert_eq!(
            requeue_action(&transient, 1, 0.0),
            Action::requeue(Duration::from_secs(5))
        );
        assert_eq!(
            requeue_action(&transient, 3, 0.5),
            Action::requeue(Duration::from_secs(21))
        );
        let invalid = ReconcileError::invalid("spec.resyncInterval", "bad");
        assert_eq!(requeue_action(&invalid, 1, 0.3), Action::await_change());
        assert_eq!(requeue_action(&invalid, 9, 0.3), Action::await_change());
    }

    #[test]
    fn suspension_comes_from_the_resource_or_its_tailnet() {
        let mut t = tailnet("home", 1, None);
        assert_eq!(suspension(false, Some(&t)), None);
        assert!(suspension(true, None).unwrap().contains("spec.suspend"));
        t.spec.suspend = true;
        assert!(
            suspension(false, Some(&t))
                .unwrap()
                .contains("ManagedTailnet home")
        );
    }

    #[tokio::test]
    async fn stop_wakes_earlier_and_later_waiters() {
        let stop = Stop::new();
        let early = stop.wait();
        stop.stop();
        early.await;
        stop.wait().await;
        assert!(stop.is_stopped());
    }
}
