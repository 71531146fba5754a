//! The `FunnelExposure` controller: a Service on the public internet through Funnel for a time
//! window, through the pure planner of [`crate::reconcile::funnel`].
//!
//! A pass, by where the window is:
//! - **before `start`:** nothing deployed (anything left from a moved window is torn down);
//!   `Scheduled`; requeue exactly at `start`.
//! - **open:** namespace allowed by the ManagedTailnet → prerequisites (HTTPS certificates,
//!   MagicDNS, proxy tags owned, the Service and port exist; missing ones stop here, naming the
//!   fix) → phase `Provisioning`, recorded, so the TailnetPolicy controller composes the
//!   `funnel` node attribute → wait until the live policy carries it → mint the single-use key
//!   into its Secret (key-rotation's mint and marker) → apply the proxy objects (service
//!   account, Role on its state Secret, RoleBinding, state Secret, serve ConfigMap, Deployment)
//!   → wait for the proxy device to join → `Active` with the public URL; the consumed key is
//!   revoked. Each step is recorded in status before the next; a failure undoes every earlier
//!   step (objects deleted, device deleted, keys revoked, node attribute withdrawn) and the
//!   phase is `Failed`, retried after a back-off that doubles per failure in a row (other
//!   triggers do not shorten it: each attempt mints a key). Requeue at `end`.
//! - **after `end`:** everything torn down, `Expired`.
//!
//! Deletion with `deletionPolicy: Delete` tears down the same way; `Orphan` leaves the device
//! (the proxy objects go with the exposure through their owner references).
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret as KubeSecret, Service};
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::Value;

use super::key_rotation_policy::{owner_reference, write_secret};
use super::skeleton::{
    self, CleanUpResult, Extension, KindReconciler, Next, Pass, PassResult, of_tailnet,
};
use super::{Context, Controlled, KindController, KindEvent, Metrics, Stop};
use crate::policy::hujson;
use crate::reconcile::funnel::{
    Tailnet, WindowState, digest, find_device, key_input, names, node_attr, policy_grants_funnel,
    prerequisites, proxy_objects, public_url,
};
use crate::reconcile::key_rotation::{mint, revoke};
use crate::reconcile::tailscale_service::contribution_lines;
use crate::resources::conditions::{ConditionStatus, Verdict, failure_reason, reason};
use crate::resources::funnel_exposure::{FunnelExposureStatus, Phase, Prerequisite, ProxyDevice};
use crate::resources::{
    FunnelExposure, ManagedTailnet, ReconcileError, TailnetPolicy, TailnetScoped,
};
use crate::snapshot::{Area, TailnetSnapshots};

/// Started by the manager with every kind of [`crate::for_each_kind`].
impl Controlled for FunnelExposure {
    fn controller(ctx: Arc<Context>, stop: &Stop) -> KindController {
        let metrics = Arc::clone(&ctx.metrics);
        skeleton::controller(ctx, stop, FunnelKind { metrics })
    }
}

/// Event reason: the Service became public.
pub const EXPOSED: &str = "Exposed";
/// Event reason: the exposure ended (window over, or deleted) and was torn down.
pub const ENDED: &str = "ExposureEnded";
/// Event reason: a step failed and the earlier ones were undone.
pub const FAILED: &str = "ExposureFailed";

/// Ready reasons of this kind (a failed step uses its error's category: `Auth`, `Invalid`, ...).
pub mod why {
    pub const SCHEDULED: &str = "Scheduled";
    pub const EXPIRED: &str = "Expired";
    pub const ACTIVE: &str = "Active";
    pub const NOT_ALLOWED: &str = "NotAllowed";
    pub const PREREQUISITE_MISSING: &str = "PrerequisiteMissing";
    pub const AWAITING_POLICY: &str = "AwaitingPolicy";
    pub const AWAITING_DEVICE: &str = "AwaitingDevice";
}

/// The first retry after a failure; it doubles per failure in a row, up to [`RETRY_MAX`].
pub const RETRY_BASE: Duration = Duration::from_secs(30);
pub const RETRY_MAX: Duration = Duration::from_secs(1800);

/// How soon a provisioning exposure looks again for the node attribute or the device (neither
/// announces itself to the operator).
pub const PROVISIONING_POLL: Duration = Duration::from_secs(5);

/// The FunnelExposure kind: the pass, the teardown, and the active-exposure metrics.
pub struct FunnelKind {
    metrics: Arc<Metrics>,
}

impl KindReconciler for FunnelKind {
    type Object = FunnelExposure;
    const AREA: Area = Area::Devices;
    const WAITING: &'static str = "the Service is exposed";
    // `Orphan` says what it leaves behind before the exposure goes.
    const FINALIZE_ORPHANS: bool = true;

    /// A TailnetPolicy change (the node attribute applied, or refused) wakes the exposures of
    /// its tailnet.
    fn extend(&self, with: Extension<'_, FunnelExposure>) -> Controller<FunnelExposure> {
        let store = with.store.clone();
        with.controller.watches(
            Api::<TailnetPolicy>::all(with.client.clone()),
            watcher::Config::default(),
            move |policy: TailnetPolicy| {
                of_tailnet(&store, policy.tailnet_ref())
                    .iter()
                    .map(|e| ObjectRef::from_obj(&**e))
                    .collect::<Vec<_>>()
            },
        )
    }

    fn on_delete(&self, obj: &FunnelExposure) {
        let namespace = obj.namespace().unwrap_or_default();
        self.metrics
            .forget_funnel_exposure(&namespace, &obj.name_any());
    }

    async fn pass(&self, pass: &Pass<'_, Self>, snapshots: &TailnetSnapshots) -> PassResult {
        let (next, status) = run(pass, snapshots).await?;
        let obj = &*pass.current;
        let namespace = obj.namespace().unwrap_or_default();
        match (
            &status.phase,
            status.active_since.as_deref().and_then(parse),
        ) {
            (Some(Phase::Active), Some(since)) => {
                let until = status.expires.as_deref().and_then(parse);
                self.metrics.set_funnel_exposure(
                    &namespace,
                    &obj.name_any(),
                    since.timestamp() as f64,
                    until.map(|t| t.timestamp() as f64),
                );
            }
            _ => self
                .metrics
                .forget_funnel_exposure(&namespace, &obj.name_any()),
        }
        Ok(next)
    }

    /// `deletionPolicy: Orphan`: the tailnet side stays (the device, its spent key); the proxy
    /// objects go with the exposure (owner references) and so does its node attribute.
    async fn orphan(&self, pass: &Pass<'_, Self>) -> CleanUpResult {
        let status = pass.current.current_status();
        let device = status.device.as_ref().map_or("no device".to_owned(), |d| {
            format!("device {} ({})", d.name, d.id)
        });
        let note = format!(
            "deletionPolicy: Orphan: {device} stays in the tailnet; the proxy objects are \
             garbage-collected with the exposure and its funnel node attribute is withdrawn"
        );
        pass.publish_clean_up(ENDED, note).await;
        Ok(())
    }

    async fn clean_up(&self, pass: &Pass<'_, Self>) -> CleanUpResult {
        let snapshots = pass.snapshots_for_clean_up()?;
        let status = pass.current.current_status();
        let summary = teardown(pass, &snapshots, &status).await?;
        pass.publish_clean_up(ENDED, format!("deletionPolicy: Delete: {summary}"))
            .await;
        Ok(())
    }
}

/// One pass; returns what to do next and the status as written.
async fn run(
    pass: &Pass<'_, FunnelKind>,
    snapshots: &TailnetSnapshots,
) -> Result<(Next, FunnelExposureStatus), ReconcileError> {
    let obj = &*pass.current;
    let now = pass.shared().clock.now();
    let window = obj
        .window()
        .map_err(|(field, message)| ReconcileError::invalid(field, message))?;
    let mut status = obj.current_status();
    status.starts = window.start.map(format_time);
    status.expires = window.end.map(format_time);
    status.policy = contribution_lines(&[node_attr(obj)]);
    let state = WindowState::at(window, now);
    let wake = wake_at(state, now, snapshots.resync_interval());
    match state {
        WindowState::Before(start) => {
            let mut events = Vec::new();
            if deployed(&status) {
                let summary = teardown(pass, snapshots, &status).await?;
                events.push(KindEvent::new(
                    false,
                    ENDED,
                    format!("window moved: {summary}"),
                ));
            }
            let status = cleared(status, Phase::Scheduled);
            let ready = Verdict::new(
                ConditionStatus::True,
                why::SCHEDULED,
                format!(
                    "scheduled: nothing is deployed before {}",
                    format_time(start)
                ),
            );
            let status = report(pass, status, ready, events).await?;
            Ok((Next::After(wake), status))
        }
        WindowState::Ended(end) => {
            let mut events = Vec::new();
            if deployed(&status) || status.phase.is_some_and(Phase::exposes) {
                let summary = teardown(pass, snapshots, &status).await?;
                events.push(KindEvent::new(
                    false,
                    ENDED,
                    format!("the window ended at {}: {summary}", format_time(end)),
                ));
            }
            let status = cleared(status, Phase::Expired);
            let ready = Verdict::new(
                ConditionStatus::True,
                why::EXPIRED,
                format!("ended at {}; everything was torn down", format_time(end)),
            );
            let status = report(pass, status, ready, events).await?;
            Ok((Next::Resync, status))
        }
        WindowState::Open(_) => expose(pass, snapshots, status, wake).await,
    }
}

/// The open window: each step in order, each recorded before the next, undone on failure.
async fn expose(
    pass: &Pass<'_, FunnelKind>,
    snapshots: &TailnetSnapshots,
    mut status: FunnelExposureStatus,
    wake: Duration,
) -> Result<(Next, FunnelExposureStatus), ReconcileError> {
    let obj = &*pass.current;
    let client = pass.shared().client.clone();
    let namespace = obj.namespace().unwrap_or_else(|| "default".to_owned());
    let connection = Api::<ManagedTailnet>::all(client.clone())
        .get_opt(&pass.tailnet)
        .await?;
    if connection
        .as_ref()
        .is_some_and(|t| !t.spec.allows_funnel_in(&namespace))
    {
        if deployed(&status) {
            teardown(pass, snapshots, &status).await?;
        }
        let status = cleared(status, Phase::Failed);
        let ready = Verdict::new(
            ConditionStatus::False,
            why::NOT_ALLOWED,
            format!(
                "namespace {namespace} is not in ManagedTailnet {}'s spec.funnel.allowedNamespaces: \
                 nothing was exposed; ask the tailnet's owners to allow it",
                pass.tailnet
            ),
        );
        return Ok((Next::Resync, report(pass, status, ready, Vec::new()).await?));
    }
    if let Some(wait) = backing_off(obj, &status, pass.shared().clock.now()) {
        // Other triggers (a policy change, the tailnet's watch) do not shorten the back-off:
        // each attempt mints a key.
        return Ok((Next::After(wait.min(wake)), status));
    }
    if pass.suspended(obj) {
        let ready = Verdict::new(
            ConditionStatus::False,
            reason::SUSPENDED,
            "suspended (spec.suspend here or on its ManagedTailnet): nothing changes",
        );
        return Ok((
            Next::After(wake),
            report(pass, status, ready, Vec::new()).await?,
        ));
    }

    // 1. Prerequisites.
    let policy = live_policy(snapshots).await?;
    let settings = snapshots.settings().await?;
    let dns = snapshots.dns().await?;
    let mut found = prerequisites(
        obj,
        &Tailnet {
            settings: &settings.data,
            dns: &dns.data.preferences,
            policy: &policy,
            connection: connection.as_ref(),
        },
    );
    found.push(service_prerequisite(&client, obj, &namespace).await?);
    status.prerequisites = found;
    let missing: Vec<&Prerequisite> = status.prerequisites.iter().filter(|p| !p.met).collect();
    if !missing.is_empty() {
        let message = missing
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if !status.phase.is_some_and(Phase::exposes) {
            status.phase = Some(Phase::Provisioning);
        }
        let ready = Verdict::new(ConditionStatus::False, why::PREREQUISITE_MISSING, message);
        return Ok((
            Next::After(wake),
            report(pass, status, ready, Vec::new()).await?,
        ));
    }

    // 2. The node attribute: recording Provisioning makes the TailnetPolicy controller
    // compose it.
    if !status.phase.is_some_and(Phase::exposes) {
        status.phase = Some(Phase::Provisioning);
        status = pass.record(status).await?;
    }
    if !policy_grants_funnel(&policy, &obj.proxy_tags()) {
        if let Some(refused) = policy_failure(&client, &pass.tailnet).await? {
            let err = ReconcileError::invalid("spec.tags", refused);
            return fail(
                pass,
                snapshots,
                status,
                "applying the funnel node attribute",
                err,
            )
            .await;
        }
        snapshots.invalidate(Area::Policy);
        let ready = Verdict::new(
            ConditionStatus::False,
            why::AWAITING_POLICY,
            format!(
                "waiting for the tailnet's TailnetPolicy to apply {}",
                status.policy.join(", ")
            ),
        );
        return Ok((
            Next::After(PROVISIONING_POLL),
            report(pass, status, ready, Vec::new()).await?,
        ));
    }

    // 3. The key, 4. the proxy, 5. the device.
    match provision(pass, snapshots, &mut status, &namespace).await {
        Ok(next) => Ok((Next::After(next.min(wake)), status)),
        Err((step, err)) => fail(pass, snapshots, status, step, err).await,
    }
}

/// The key, the proxy objects and the device; on failure, the step that failed.
async fn provision(
    pass: &Pass<'_, FunnelKind>,
    snapshots: &TailnetSnapshots,
    status: &mut FunnelExposureStatus,
    namespace: &str,
) -> Result<Duration, (&'static str, ReconcileError)> {
    let obj = &*pass.current;
    let client = pass.shared().client.clone();
    let n = names(obj);
    let devices = snapshots
        .devices()
        .await
        .map_err(|e| ("reading the devices", e.into()))?;
    let device = find_device(&devices.data, obj).map(|d| ProxyDevice {
        id: preferred_id(d),
        name: d.name.clone(),
    });
    let owner = owner_reference(obj);
    // Until the proxy joined it needs a key it can still use: none yet, or the last one
    // expired (a pod pending for over an hour) or revoked. A new key rolls the Deployment
    // (the key id is on its pod template), so the pod starts again with it.
    let now = pass.shared().clock.now();
    if device.is_none() && key_lapsed(snapshots, status, now).await {
        let input = key_input(obj, &scope(pass));
        sweep_keys(snapshots, &input.marker)
            .await
            .map_err(|e| ("revoking an earlier key", e))?;
        let created = mint(snapshots, &input)
            .await
            .map_err(|e| ("minting the key", e))?;
        let secrets = Api::<KubeSecret>::namespaced(client.clone(), namespace);
        write_secret(&secrets, Some(owner.clone()), &input, &created)
            .await
            .map_err(|e| ("writing the key's Secret", e))?;
        status.key_id = Some(created.key.id.clone());
        *status = pass
            .record(status.clone())
            .await
            .map_err(|e| ("recording the key", e))?;
    }
    let owner_json = serde_json::to_value(&owner).unwrap_or(Value::Null);
    let objects = proxy_objects(obj, &owner_json, status.key_id.as_deref());
    let wanted = digest(&objects);
    let in_place = status.proxy_digest.as_deref() == Some(wanted.as_str())
        && Api::<Deployment>::namespaced(client.clone(), namespace)
            .get_opt(&n.proxy)
            .await
            .map_err(|e| ("reading the proxy Deployment", e.into()))?
            .is_some();
    if !in_place {
        for object in &objects {
            apply(&client, namespace, object)
                .await
                .map_err(|e| ("creating the proxy", e))?;
        }
        status.proxy_digest = Some(wanted);
        *status = pass
            .record(status.clone())
            .await
            .map_err(|e| ("recording the proxy", e))?;
    }
    let Some(device) = device else {
        snapshots.invalidate(Area::Devices);
        let ready = Verdict::new(
            ConditionStatus::False,
            why::AWAITING_DEVICE,
            format!(
                "proxy Deployment {} applied; waiting for its device {} to join the tailnet",
                n.proxy, obj.spec.hostname
            ),
        );
        *status = report(pass, status.clone(), ready, Vec::new())
            .await
            .map_err(|e| ("recording the wait", e))?;
        return Ok(PROVISIONING_POLL);
    };
    // Joined: the single-use key is spent; revoke whatever is left of it.
    let input = key_input(obj, &scope(pass));
    sweep_keys(snapshots, &input.marker)
        .await
        .map_err(|e| ("revoking the spent key", e))?;
    let url = public_url(&device, obj.spec.public_port);
    let mut events = Vec::new();
    if status.phase != Some(Phase::Active) || status.url.as_deref() != Some(url.as_str()) {
        let until = status
            .expires
            .as_deref()
            .map_or("no end (set spec.expiresAt)".to_owned(), |e| {
                format!("until {e}")
            });
        events.push(KindEvent::new(
            false,
            EXPOSED,
            format!(
                "Service {} is public at {url}, {until}",
                obj.spec.service.name
            ),
        ));
        status.active_since = Some(format_time(pass.shared().clock.now()));
    }
    status.phase = Some(Phase::Active);
    status.failures = None;
    status.retry_at = None;
    status.url = Some(url.clone());
    status.device = Some(device);
    let ready = Verdict::new(
        ConditionStatus::True,
        why::ACTIVE,
        format!("public at {url}"),
    );
    *status = report(pass, status.clone(), ready, events)
        .await
        .map_err(|e| ("recording the exposure", e))?;
    Ok(snapshots.resync_interval())
}

/// A failed step: undo everything, `Failed`, retried after a back-off that doubles per failure
/// in a row.
async fn fail(
    pass: &Pass<'_, FunnelKind>,
    snapshots: &TailnetSnapshots,
    status: FunnelExposureStatus,
    step: &str,
    err: ReconcileError,
) -> Result<(Next, FunnelExposureStatus), ReconcileError> {
    let summary = teardown(pass, snapshots, &status).await?;
    let failures = status.failures.unwrap_or(0) + 1;
    let wait = RETRY_BASE
        .saturating_mul(1 << (failures - 1).min(16))
        .min(RETRY_MAX);
    let retry_at = pass.shared().clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
    let mut status = cleared(status, Phase::Failed);
    status.failures = Some(failures);
    status.retry_at = Some(format_time(retry_at));
    let message = format!(
        "{step} failed: {err}; undone: {summary}; retrying at {}",
        format_time(retry_at)
    );
    let ready = Verdict::new(
        ConditionStatus::False,
        failure_reason(err.category()),
        message.clone(),
    );
    let events = vec![KindEvent::new(true, FAILED, message)];
    let status = report(pass, status, ready, events).await?;
    Ok((Next::After(wait), status))
}

/// How long a failed exposure still waits before its next attempt (`None`: go ahead). A new
/// generation (a spec change) goes ahead at once.
fn backing_off(
    obj: &FunnelExposure,
    status: &FunnelExposureStatus,
    now: DateTime<Utc>,
) -> Option<Duration> {
    if status.phase != Some(Phase::Failed)
        || status.common.observed_generation != obj.metadata.generation
    {
        return None;
    }
    let retry_at = status.retry_at.as_deref().and_then(parse)?;
    (retry_at - now)
        .to_std()
        .ok()
        .filter(|wait| !wait.is_zero())
}

/// Undoes every step: the proxy objects, the device, every key this exposure minted. Returns
/// what was done, for the event.
async fn teardown(
    pass: &Pass<'_, FunnelKind>,
    snapshots: &TailnetSnapshots,
    status: &FunnelExposureStatus,
) -> Result<String, ReconcileError> {
    let obj = &*pass.current;
    let client = pass.shared().client.clone();
    let namespace = obj.namespace().unwrap_or_else(|| "default".to_owned());
    let owner = serde_json::to_value(owner_reference(obj)).unwrap_or(Value::Null);
    let mut deleted = 0;
    for object in proxy_objects(obj, &owner, None).iter().rev() {
        deleted += usize::from(delete(&client, &namespace, object).await?);
    }
    let auth = names(obj).auth_secret;
    let secrets = Api::<KubeSecret>::namespaced(client.clone(), &namespace);
    deleted += usize::from(gone(secrets.delete(&auth, &DeleteParams::default()).await)?);
    snapshots.invalidate(Area::Devices);
    let devices = snapshots.devices().await?;
    // The device by hostname and tags, and the one status recorded (it may have been renamed),
    // if it still exists: a repeated teardown (from a stale copy) deletes nothing twice.
    let recorded = status.device.as_ref().map(|d| d.id.as_str());
    let mut ids: Vec<String> = devices
        .data
        .iter()
        .filter(|d| Some(d.node_id.as_str()) == recorded || Some(d.id.as_str()) == recorded)
        .chain(find_device(&devices.data, obj))
        .map(preferred_id)
        .collect();
    ids.sort();
    ids.dedup();
    for id in &ids {
        snapshots.client().delete_device(id).await?;
        snapshots.record_write(Area::Devices);
    }
    let revoked = sweep_keys(snapshots, &key_input(obj, &scope(pass)).marker).await?;
    Ok(format!(
        "{deleted} proxy object(s) deleted, {} device(s) deleted, {revoked} key(s) revoked, the \
         funnel node attribute withdrawn",
        ids.len()
    ))
}

/// The device's `nodeId` (the id the API recommends), else its legacy numeric id.
fn preferred_id(device: &crate::tailscale::Device) -> String {
    if device.node_id.is_empty() {
        device.id.clone()
    } else {
        device.node_id.clone()
    }
}

/// Revokes every live key carrying `marker`; returns how many.
async fn sweep_keys(snapshots: &TailnetSnapshots, marker: &str) -> Result<usize, ReconcileError> {
    snapshots.invalidate(Area::Keys);
    let keys = snapshots.keys().await?;
    let live: Vec<String> = keys
        .data
        .iter()
        .filter(|k| k.description.starts_with(marker) && !k.invalid && k.revoked.is_none())
        .map(|k| k.id.clone())
        .collect();
    for id in &live {
        revoke(snapshots, id).await?;
    }
    Ok(live.len())
}

/// Whether the proxy lacks a key it could still join with: none recorded, or the recorded one
/// is gone, revoked or past its expiry. A key that is only spent (single-use, used) has not
/// lapsed: the proxy joined with it and its device is about to show.
async fn key_lapsed(
    snapshots: &TailnetSnapshots,
    status: &FunnelExposureStatus,
    now: DateTime<Utc>,
) -> bool {
    let Some(id) = &status.key_id else {
        return true;
    };
    snapshots.invalidate(Area::Keys);
    let Ok(keys) = snapshots.keys().await else {
        return false;
    };
    keys.data
        .iter()
        .find(|k| &k.id == id)
        .is_none_or(|k| k.revoked.is_some() || k.expires.is_some_and(|expires| expires <= now))
}

/// The Service and its port, as a prerequisite.
async fn service_prerequisite(
    client: &kube::Client,
    obj: &FunnelExposure,
    namespace: &str,
) -> Result<Prerequisite, ReconcileError> {
    let target = &obj.spec.service;
    let service = Api::<Service>::namespaced(client.clone(), namespace)
        .get_opt(&target.name)
        .await?;
    let ports: Vec<i32> = service
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ports.as_ref())
        .map(|ports| ports.iter().map(|p| p.port).collect())
        .unwrap_or_default();
    let (met, message) = match service {
        None => (
            false,
            format!(
                "Service {namespace}/{} does not exist: create it, or fix spec.service.name",
                target.name
            ),
        ),
        Some(_) if !ports.contains(&i32::from(target.port)) => (
            false,
            format!(
                "Service {namespace}/{} has no port {} (its ports: {ports:?}): fix spec.service.port",
                target.name, target.port
            ),
        ),
        Some(_) => (
            true,
            format!("Service {namespace}/{} port {}", target.name, target.port),
        ),
    };
    Ok(Prerequisite {
        name: "service".to_owned(),
        met,
        message,
    })
}

/// The live policy, parsed.
async fn live_policy(snapshots: &TailnetSnapshots) -> Result<Value, ReconcileError> {
    let policy = snapshots.policy().await?;
    hujson::parse_strict(&policy.data.hujson)
        .map_err(|e| ReconcileError::internal(format!("the live policy does not parse: {e}")))
}

/// Why the tailnet's policy is not being applied, when a TailnetPolicy of it says so (Ready
/// False for a reason other than waiting).
async fn policy_failure(
    client: &kube::Client,
    tailnet: &str,
) -> Result<Option<String>, ReconcileError> {
    let policies = Api::<TailnetPolicy>::all(client.clone())
        .list(&Default::default())
        .await?;
    let waiting = [reason::PENDING, skeleton::TAILNET_NOT_READY];
    Ok(policies
        .items
        .iter()
        .filter(|p| p.tailnet_ref() == tailnet)
        .find_map(|p| {
            let status = p.status.as_ref()?;
            let ready = crate::resources::conditions::find(
                &status.common.conditions,
                crate::resources::ConditionType::Ready,
            )?;
            (ready.status == "False" && !waiting.contains(&ready.reason.as_str())).then(|| {
                format!(
                    "TailnetPolicy {} is not applied ({}: {}); the node attribute cannot reach \
                     the tailnet",
                    p.name_any(),
                    ready.reason,
                    ready.message
                )
            })
        }))
}

/// Server-side applies one proxy object.
async fn apply(
    client: &kube::Client,
    namespace: &str,
    object: &Value,
) -> Result<(), ReconcileError> {
    let (api, name) = dynamic_api(client, namespace, object);
    api.patch(
        &name,
        &PatchParams::apply(crate::resources::common::FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// Deletes one proxy object; whether it existed.
async fn delete(
    client: &kube::Client,
    namespace: &str,
    object: &Value,
) -> Result<bool, ReconcileError> {
    let (api, name) = dynamic_api(client, namespace, object);
    gone(api.delete(&name, &DeleteParams::default()).await)
}

/// A delete's outcome: `true` deleted, `false` already gone (404 is success).
fn gone<T>(result: Result<T, kube::Error>) -> Result<bool, ReconcileError> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(err) => Err(err.into()),
    }
}

fn dynamic_api(
    client: &kube::Client,
    namespace: &str,
    object: &Value,
) -> (Api<DynamicObject>, String) {
    let text = |field: &str| object[field].as_str().unwrap_or_default().to_owned();
    let api_version = text("apiVersion");
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let gvk = GroupVersionKind::gvk(group, version, &text("kind"));
    let resource = ApiResource::from_gvk(&gvk);
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (
        Api::namespaced_with(client.clone(), namespace, &resource),
        name,
    )
}

/// What tells this installation's keys apart (as for KeyRotationPolicy).
fn scope(pass: &Pass<'_, FunnelKind>) -> String {
    format!("{}/{}", pass.shared().namespace, pass.tailnet)
}

/// Whether anything of the exposure may exist in the cluster or the tailnet.
fn deployed(status: &FunnelExposureStatus) -> bool {
    status.key_id.is_some() || status.proxy_digest.is_some() || status.device.is_some()
}

/// `status` with nothing deployed, in `phase` (and no failure pending).
fn cleared(mut status: FunnelExposureStatus, phase: Phase) -> FunnelExposureStatus {
    status.phase = Some(phase);
    status.failures = None;
    status.retry_at = None;
    status.url = None;
    status.device = None;
    status.key_id = None;
    status.proxy_digest = None;
    status.active_since = None;
    status
}

/// How long until the pass must run again: the next window boundary, at most the resync.
fn wake_at(state: WindowState, now: DateTime<Utc>, resync: Duration) -> Duration {
    state
        .next_boundary()
        .and_then(|at| (at - now).to_std().ok())
        .map_or(resync, |until| until.min(resync))
        // A boundary due now still waits a moment, so the pass after it sees the new state.
        .max(Duration::from_secs(1))
}

fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The pass's final status with `ready` (and `Synced=True`), and its events.
async fn report(
    pass: &Pass<'_, FunnelKind>,
    status: FunnelExposureStatus,
    ready: Verdict,
    events: Vec<KindEvent>,
) -> Result<FunnelExposureStatus, ReconcileError> {
    let synced = Verdict::new(
        ConditionStatus::True,
        reason::RECONCILED,
        "the window, the tailnet and the proxy objects were checked",
    );
    let drifted = Verdict::new(
        ConditionStatus::False,
        reason::IN_SYNC,
        "the proxy objects are re-applied when they change; the tailnet side is re-checked each pass",
    );
    pass.conclude(status, [&ready, &synced, &drifted], events)
        .await
}
