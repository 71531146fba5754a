//! The one controller skeleton of every tailnet-scoped kind (TailnetPolicy, DNSConfig,
//! DeviceTagSet, and the kinds to come). A kind implements [`KindReconciler`]: its extra
//! watches, its pass and its clean-up. The skeleton does the rest, the same way for every kind:
//!
//! per-tailnet lock → the newest copy from the reflector store → deletion (the kind's
//! [`KindReconciler::clean_up`], or [`KindReconciler::orphan`] for a kind that finalizes
//! orphans too, then the finalizer goes) → the finalizer kept in line with
//! `deletionPolicy` before any write → the ManagedTailnet's snapshots (none: `Ready=False`,
//! [`TAILNET_NOT_READY`], requeue in [`NOT_READY_RETRY`]) → a new `reconcile-at` value re-reads
//! the kind's snapshot area → the kind's [`KindReconciler::pass`] → on failure `Ready=False`
//! with the error's category → requeue at the tailnet's resync interval (or what the pass asks).
//!
//! Every status write goes through [`Pass::report`]: written only when it changed, the drift
//! gauge set, the kind's own events and the shared condition events published.
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::SubsecRound;
use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use super::coordination::{
    ForcedReconciles, TailnetLocks, forget_deleted, note_tailnet_suspension, suspended,
};
use super::{
    Context, KindContext, KindController, KindEvent, Stop, condition_events, controller_for,
    has_finalizer, instrumented, kind_controller, publish_event, set_finalizer, write_status,
};
use crate::reconcile::attribution;
use crate::resources::conditions::{self, ConditionType, Verdict, failure_reason, time_from};
use crate::resources::{KindStatus, ManagedTailnet, ReconcileError, TailnetScoped};
use crate::snapshot::{Area, TailnetSnapshots};

/// Ready reason while the referenced ManagedTailnet has no connection (missing, or not Ready).
pub const TAILNET_NOT_READY: &str = "TailnetNotReady";
/// Event reason of a write to the tailnet.
pub const APPLIED: &str = "Applied";
/// How soon a resource whose ManagedTailnet is not Ready looks again (the ManagedTailnet watch
/// usually triggers it sooner).
pub const NOT_READY_RETRY: Duration = Duration::from_secs(15);

/// The status type of a kind.
pub type StatusOf<R> = <<R as KindReconciler>::Object as TailnetScoped>::Status;

/// What a pass asks for next.
#[derive(Debug)]
pub enum Next {
    /// Look again at the tailnet's resync interval.
    Resync,
    /// Look again sooner (e.g. after a 412, against a fresh read).
    After(Duration),
    /// A failure the pass already reported in status; the error policy backs off.
    Retry(ReconcileError),
}

/// What one tailnet-scoped kind adds to the skeleton: only what is its own.
pub trait KindReconciler: Send + Sync + Sized + 'static {
    /// The custom resource.
    type Object: TailnetScoped;

    /// The snapshot area a new `reconcile-at` value re-reads.
    const AREA: Area;
    /// What waits for the tailnet, for the not-Ready message, e.g. "the DNS is applied".
    const WAITING: &'static str;
    /// Whether a pass needs every resource of the tailnet listed first (kinds planned
    /// together: planning before the initial list would miss conflicts).
    const NEEDS_FULL_LIST: bool = false;
    /// Whether deleting a resource makes the other resources of its tailnet look again at
    /// once (kinds whose resources can conflict: the loser takes over when the winner goes).
    const SIBLINGS_ON_DELETE: bool = false;

    /// Extra watches and triggers beyond the kind itself and the ManagedTailnets.
    fn extend(&self, with: Extension<'_, Self::Object>) -> Controller<Self::Object> {
        with.controller
    }

    /// Called when the watch sees a resource deleted (after the shared forgetting).
    fn on_delete(&self, _obj: &Self::Object) {}

    /// Plans and executes [`Pass::current`] (and whatever of its tailnet is planned with it),
    /// reporting every status it decides through [`Pass::report`].
    fn pass(
        &self,
        pass: &Pass<'_, Self>,
        snapshots: &TailnetSnapshots,
    ) -> impl Future<Output = PassResult> + Send;

    /// `deletionPolicy: Delete`: removes [`Pass::current`]'s effect from the tailnet before
    /// its finalizer goes. Only called for resources that carry the finalizer and ask for
    /// deletion.
    fn clean_up(&self, pass: &Pass<'_, Self>) -> impl Future<Output = CleanUpResult> + Send;

    /// Whether `deletionPolicy: Orphan` also needs a last write (the finalizer is then kept
    /// for both policies, and [`KindReconciler::orphan`] runs on deletion).
    const FINALIZE_ORPHANS: bool = false;

    /// `deletionPolicy: Orphan` with [`KindReconciler::FINALIZE_ORPHANS`]: what to undo
    /// before the resource goes while leaving its effect in the tailnet (e.g. an ownership
    /// mark).
    fn orphan(&self, _pass: &Pass<'_, Self>) -> impl Future<Output = CleanUpResult> + Send {
        async { Ok(()) }
    }
}

/// What a kind's pass returns.
pub type PassResult = Result<Next, ReconcileError>;
/// What a kind's clean-up returns.
pub type CleanUpResult = Result<(), ReconcileError>;

/// What a kind's [`KindReconciler::extend`] adds its watches to.
pub struct Extension<'a, K: TailnetScoped> {
    pub controller: Controller<K>,
    /// The kind's reflector store, to map related objects back to resources.
    pub store: &'a Store<K>,
    pub client: &'a Client,
}

/// A kind's controller state: the shared [`Context`], the kind's reflector store, the
/// per-tailnet locks, `reconcile-at` memory, and the kind's own state.
pub struct Runtime<R: KindReconciler> {
    pub shared: Arc<Context>,
    pub store: Store<R::Object>,
    locks: TailnetLocks,
    forced: ForcedReconciles,
    pub kind: Arc<R>,
}

impl<R: KindReconciler> KindContext for Runtime<R> {
    fn shared(&self) -> &Context {
        &self.shared
    }
}

/// Builds the controller of kind `R`: the kind's watch (with the shared trigger), a watch of
/// ManagedTailnets mapping to their resources (and recording their `suspend`), the kind's extra
/// watches, and the skeleton's reconcile.
pub fn controller<R: KindReconciler>(ctx: Arc<Context>, stop: &Stop, kind: R) -> KindController {
    let client = ctx.client.clone();
    let forced = ForcedReconciles::default();
    let kind = Arc::new(kind);
    // The tailnets of deleted resources, for SIBLINGS_ON_DELETE.
    let (deleted, deleted_rx) = mpsc::unbounded::<String>();
    let on_delete = {
        let (metrics, forced, kind) = (Arc::clone(&ctx.metrics), forced.clone(), kind.clone());
        move |obj: &R::Object| {
            forget_deleted(&metrics, &forced, &kind_name::<R>(), obj);
            if R::SIBLINGS_ON_DELETE {
                let _ = deleted.unbounded_send(obj.tailnet_ref().to_owned());
            }
            kind.on_delete(obj);
        }
    };
    let controller = controller_for(
        Api::<R::Object>::all(client.clone()),
        watcher::Config::default(),
        on_delete,
    );
    let store = controller.store();
    let (by_tailnet, registry) = (store.clone(), ctx.snapshots.clone());
    let controller = controller.watches(
        Api::<ManagedTailnet>::all(client.clone()),
        watcher::Config::default(),
        move |tailnet: ManagedTailnet| {
            note_tailnet_suspension(&registry, &tailnet);
            of_tailnet(&by_tailnet, &tailnet.name_any())
                .iter()
                .map(|m| ObjectRef::from_obj(&**m))
                .collect::<Vec<_>>()
        },
    );
    let controller = if R::SIBLINGS_ON_DELETE {
        let siblings_of = store.clone();
        controller.reconcile_on(deleted_rx.flat_map(move |tailnet| {
            let refs: Vec<_> = of_tailnet(&siblings_of, &tailnet)
                .iter()
                .map(|m| ObjectRef::from_obj(&**m))
                .collect();
            futures::stream::iter(refs)
        }))
    } else {
        controller
    };
    // A webhook re-read this kind's area of a tailnet: the kind's resources there look again.
    let woken = store.clone();
    let controller = controller.reconcile_on(wakeups_of(&ctx, R::AREA).flat_map(move |tailnet| {
        let refs: Vec<_> = of_tailnet(&woken, &tailnet)
            .iter()
            .map(|m| ObjectRef::from_obj(&**m))
            .collect();
        futures::stream::iter(refs)
    }));
    let controller = kind
        .extend(Extension {
            controller,
            store: &store,
            client: &client,
        })
        .graceful_shutdown_on(stop.wait());
    let runtime = Arc::new(Runtime {
        shared: ctx,
        store,
        locks: TailnetLocks::default(),
        forced,
        kind,
    });
    kind_controller(kind_name::<R>(), controller, reconcile::<R>, runtime)
}

/// The tailnets whose `area` a webhook delivery just refreshed.
fn wakeups_of(ctx: &Context, area: Area) -> impl futures::Stream<Item = String> + Send + use<> {
    futures::stream::unfold(ctx.webhooks.subscribe(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(wakeup) => return Some((wakeup, rx)),
                // Missed wake-ups only delay: the resync still comes.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter_map(move |wakeup| {
        futures::future::ready((wakeup.area == area).then_some(wakeup.tailnet))
    })
}

/// The kind's name, e.g. `DNSConfig` (metrics label, log field).
pub fn kind_name<R: KindReconciler>() -> String {
    R::Object::kind(&()).into_owned()
}

/// Every resource of `tailnet` in `store` (including ones being deleted), by name.
pub fn of_tailnet<K: TailnetScoped>(store: &Store<K>, tailnet: &str) -> Vec<Arc<K>> {
    let mut members: Vec<Arc<K>> = store
        .state()
        .into_iter()
        .filter(|m| m.tailnet_ref() == tailnet)
        .collect();
    members.sort_by_key(|m| m.name_any());
    members
}

async fn reconcile<R: KindReconciler>(
    obj: Arc<R::Object>,
    rt: Arc<Runtime<R>>,
) -> Result<Action, ReconcileError> {
    let shared = Arc::clone(&rt.shared);
    instrumented(&shared, &*obj, reconcile_inner(&*obj, &rt)).await
}

async fn reconcile_inner<R: KindReconciler>(
    obj: &R::Object,
    rt: &Runtime<R>,
) -> Result<Action, ReconcileError> {
    if R::NEEDS_FULL_LIST && rt.store.wait_until_ready().await.is_err() {
        return Ok(Action::await_change());
    }
    let tailnet = obj.tailnet_ref().to_owned();
    let tailnet_lock = rt.locks.for_tailnet(&tailnet);
    let _serialized = tailnet_lock.lock().await;
    let mut pass = Pass {
        rt,
        tailnet,
        now: time_from(rt.shared.clock.now().trunc_subsecs(0)),
        // The newest copy: finalizer patches carry its resourceVersion, and its status is what
        // the last pass wrote.
        current: latest(&rt.store, obj),
    };
    let current = Arc::clone(&pass.current);
    if current.meta().deletion_timestamp.is_some() {
        if has_finalizer(&*current) {
            if current.common().deletes_on_removal() {
                rt.kind.clean_up(&pass).await?;
            } else if R::FINALIZE_ORPHANS {
                rt.kind.orphan(&pass).await?;
            }
            set_finalizer(&pass.api(&current), &*current, false).await?;
        }
        return Ok(Action::await_change());
    }
    // Before any write to the tailnet, so a resource that asks for cleanup always gets it.
    let wants_finalizer = current.common().deletes_on_removal() || R::FINALIZE_ORPHANS;
    if wants_finalizer != has_finalizer(&*current) {
        set_finalizer(&pass.api(&current), &*current, wants_finalizer).await?;
    }
    let Some(snapshots) = rt.shared.snapshots.get(&pass.tailnet) else {
        let message = format!(
            "ManagedTailnet {tailnet} is not Ready (missing, or its credentials are not accepted \
             yet): {} once it is; see `kubectl describe managedtailnet {tailnet}`",
            R::WAITING,
            tailnet = pass.tailnet
        );
        pass.report_failure(&current, TAILNET_NOT_READY, &message)
            .await?;
        return Ok(Action::requeue(NOT_READY_RETRY));
    };
    if rt.forced.newly_forced(obj) {
        snapshots.refresh_if_older_than(R::AREA, snapshots.now());
    }
    match rt.kind.pass(&pass, &snapshots).await {
        Ok(Next::Resync) => Ok(Action::requeue(snapshots.resync_interval())),
        Ok(Next::After(wait)) => Ok(Action::requeue(wait)),
        Ok(Next::Retry(err)) => Err(err),
        Err(err) => {
            pass.current = latest(&rt.store, obj);
            let current = Arc::clone(&pass.current);
            pass.report_failure(&current, failure_reason(err.category()), &err.to_string())
                .await?;
            Err(err)
        }
    }
}

/// The store's copy of `obj` (the newest the operator has seen), else `obj` itself.
fn latest<K: TailnetScoped>(store: &Store<K>, obj: &K) -> Arc<K> {
    store
        .get(&ObjectRef::from_obj(obj))
        .unwrap_or_else(|| Arc::new(obj.clone()))
}

/// One reconcile of kind `R` for one tailnet, holding that tailnet's turn: what a kind's pass
/// and clean-up work with.
pub struct Pass<'a, R: KindReconciler> {
    rt: &'a Runtime<R>,
    pub tailnet: String,
    /// The pass's clock, at second precision (what the API server keeps).
    pub now: Time,
    /// The resource this reconcile is for, as newest seen.
    pub current: Arc<R::Object>,
}

impl<R: KindReconciler> Pass<'_, R> {
    pub fn shared(&self) -> &Context {
        &self.rt.shared
    }

    /// The API of `obj`: in its namespace for a namespaced kind (writes need it), else
    /// cluster-wide.
    pub fn api(&self, obj: &R::Object) -> Api<R::Object> {
        obj.api(self.rt.shared.client.clone())
    }

    /// Every resource of this tailnet (including ones being deleted), by name.
    pub fn members(&self) -> Vec<Arc<R::Object>> {
        of_tailnet(&self.rt.store, &self.tailnet)
    }

    /// A resource's effective `suspend`: its own, or its ManagedTailnet's.
    pub fn suspended(&self, obj: &R::Object) -> bool {
        suspended(
            obj.common().suspend,
            &self.rt.shared.snapshots,
            &self.tailnet,
        )
    }

    /// The tailnet's snapshots for a clean-up, or the error saying why the resource keeps its
    /// finalizer and how to let it go.
    pub fn snapshots_for_clean_up(&self) -> Result<TailnetSnapshots, ReconcileError> {
        self.rt.shared.snapshots.get(&self.tailnet).ok_or_else(|| {
            ReconcileError::not_found(
                format!("ManagedTailnet {} (Ready)", self.tailnet),
                format!(
                    "{} {} has deletionPolicy: Delete and what it set cannot be removed from \
                     the tailnet while the ManagedTailnet is not Ready; fix the ManagedTailnet, \
                     or set deletionPolicy: Orphan",
                    kind_name::<R>(),
                    self.current.name_any()
                ),
            )
        })
    }

    /// Writes `status` for `obj` (nothing when it equals `before`), sets the drift gauge and
    /// publishes `events` (the kind's own, e.g. a write) and the shared condition events of
    /// the transition. Returns the status as now written.
    pub async fn report(
        &self,
        obj: &R::Object,
        before: Option<&StatusOf<R>>,
        status: StatusOf<R>,
        events: Vec<KindEvent>,
    ) -> Result<StatusOf<R>, ReconcileError> {
        let status = self.attributed(before, status).await;
        write_status(&self.api(obj), obj, before, &status).await?;
        let common = status.common();
        let drifted = conditions::is_true(&common.conditions, ConditionType::Drifted);
        let kind = kind_name::<R>();
        self.rt
            .shared
            .metrics
            .set_drifted(&kind, &super::coordination::metric_name(obj), drifted);
        let mut all = events;
        all.extend(transition_events::<R>(before, &status));
        for event in all {
            publish_event(
                &self.rt.shared,
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

    /// Writes the current resource's `status` now, with no events: a multi-step pass records
    /// each step before starting the next, so a crash resumes from what was done.
    pub async fn record(&self, status: StatusOf<R>) -> Result<StatusOf<R>, ReconcileError> {
        let current = &*self.current;
        let before = current.current_status();
        self.report(current, Some(&before), status, Vec::new())
            .await
    }

    /// The current resource's final status for the pass: `Ready`, `Synced` and `Drifted` from
    /// `verdicts` for its generation, written with `events`.
    pub async fn conclude(
        &self,
        mut status: StatusOf<R>,
        verdicts: [&Verdict; 3],
        events: Vec<KindEvent>,
    ) -> Result<StatusOf<R>, ReconcileError> {
        let current = &*self.current;
        status
            .common_mut()
            .record(verdicts, current.meta().generation, &self.now);
        let before = current.current_status();
        self.report(current, Some(&before), status, events).await
    }

    /// `status` with its drift attributed (who made it, from the configuration audit log) when
    /// it shows a drift not attributed yet: the same differences as `before` keep `before`'s
    /// attribution; new ones are looked up once. Never fails: an unreadable log says why.
    async fn attributed(
        &self,
        before: Option<&StatusOf<R>>,
        mut status: StatusOf<R>,
    ) -> StatusOf<R> {
        let drifted = conditions::is_true(&status.common().conditions, ConditionType::Drifted);
        let since = before.and_then(|b| b.common().last_sync_time.clone());
        let earlier = before.and_then(|b| b.drift()).cloned();
        let Some(drift) = status.drift_mut().filter(|d| drifted && !d.is_empty()) else {
            return status;
        };
        if drift.changed_by.is_some() {
            return status;
        }
        if let Some(earlier) = earlier.filter(|e| e.same_differences(drift)) {
            drift.changed_by = earlier.changed_by;
            return status;
        }
        let (Some(filter), Some(snapshots)) = (
            attribution::filter_for(R::AREA),
            self.rt.shared.snapshots.get(&self.tailnet),
        ) else {
            return status;
        };
        let now = self.rt.shared.clock.now();
        // Since the last sync (a little before, for clock skew), at most a day back.
        let since = since
            .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second() - 60, 0))
            .unwrap_or(now - chrono::Duration::hours(1))
            .max(now - chrono::Duration::days(1));
        // The query takes whole seconds: the end rounds up so a change this second is in.
        let until = now + chrono::Duration::seconds(1);
        let who = match snapshots
            .client()
            .list_configuration_logs(since, until)
            .await
        {
            Ok(entries) => attribution::describe(&entries, filter).unwrap_or_else(|| {
                attribution::unknown("no matching change in the configuration audit log")
            }),
            Err(err) if err.status == Some(403) => {
                attribution::unknown("the credential lacks the logs:configuration:read scope")
            }
            Err(err) if err.status == Some(404) => {
                attribution::unknown("configuration audit logs are not available for this tailnet")
            }
            Err(err) => attribution::unknown(&format!("audit log unreadable: {err}")),
        };
        drift.changed_by = Some(who);
        status
    }

    /// What each of `members`' status is on the server, by name, for a pass that writes several
    /// (the store's copy lags behind the pass's own writes).
    pub fn statuses(&self, members: &[Arc<R::Object>]) -> HashMap<String, StatusOf<R>> {
        members
            .iter()
            .map(|m| (m.name_any(), m.current_status()))
            .collect()
    }

    /// Reports `obj`'s status as `update` changes what `written` holds for it, and keeps the
    /// result there for the pass's next report.
    pub async fn report_update<U>(
        &self,
        obj: &R::Object,
        written: &mut HashMap<String, StatusOf<R>>,
        update: impl FnOnce(&mut StatusOf<R>) -> U,
        events: Vec<KindEvent>,
    ) -> Result<(), ReconcileError> {
        let before = written.get(&obj.name_any()).cloned().unwrap_or_default();
        let mut status = before.clone();
        let _ = update(&mut status);
        let status = self.report(obj, Some(&before), status, events).await?;
        written.insert(obj.name_any(), status);
        Ok(())
    }

    /// `Ready=False` and `Synced=False` with `why` in `obj`'s status; the rest is kept.
    pub async fn report_failure(
        &self,
        obj: &R::Object,
        why: &str,
        message: &str,
    ) -> Result<StatusOf<R>, ReconcileError> {
        let before = obj.current_status();
        let mut status = before.clone();
        status.record_failure(why, message, obj.meta().generation, &self.now);
        self.report(obj, Some(&before), status, Vec::new()).await
    }

    /// Publishes a Normal event about the current resource's clean-up (`action` Delete).
    pub async fn publish_clean_up(&self, reason: &str, note: String) {
        publish_event(
            &self.rt.shared,
            &*self.current,
            false,
            reason,
            "Delete",
            note,
        )
        .await;
    }
}

/// The `Applied` event of a pass that wrote, with `note` saying what (none without a write).
pub fn applied_event(note: Option<String>) -> Vec<KindEvent> {
    note.map(|note| KindEvent::new(false, APPLIED, note))
        .into_iter()
        .collect()
}

/// The shared events of a status going from `before` to `after` (pure): `Drifted` turning
/// True, and `Ready` turning False or changing its reason or message while False.
pub fn transition_events<R: KindReconciler>(
    before: Option<&StatusOf<R>>,
    after: &StatusOf<R>,
) -> Vec<KindEvent> {
    condition_events(before.map(KindStatus::common), after.common(), || {
        after.drift().map(|d| d.summary()).unwrap_or_else(|| {
            format!(
                "the live tailnet differs from what this {} applied",
                kind_name::<R>()
            )
        })
    })
}
