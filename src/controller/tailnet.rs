//! The `ManagedTailnet` controller: reads the referenced Secret, keeps a client and snapshot cache for
//! the tailnet in the [`SnapshotRegistry`](crate::snapshot::SnapshotRegistry) (replaced when the spec or the Secret's content
//! changes), checks the credentials with the shared devices snapshot, and reports in status.
//!
//! Pipeline: `credentials` (Secret → typed credentials, I/O) → `ensure_cache` (registry) →
//! `observe` (devices snapshot, I/O) → [`desired_status`] (pure) → [`write_status`].
//!
//! Secret fixes are picked up at once: the controller also watches Secrets (metadata only) and
//! maps each one to the ManagedTailnets that reference it (through the reflector store). Both
//! the watch and the reads are confined to the operator's namespace: credentials Secrets must
//! live there (a Secret elsewhere is an invalid spec saying so), and the operator's Secret access
//! is a Role in that namespace, never cluster-wide.
//!
//! The same pass feeds the tailnet's metrics: device counts from the devices snapshot, key expiry
//! from the keys snapshot (one more read per resync; skipped quietly without the
//! `auth_keys:read` scope), and the client's `RequestObserver` feeds the `tailscale_api_*` ones.
//!
//! A `ManagedTailnet` has a finalizer only while it manages a webhook endpoint
//! (`spec.webhook.url`, [`super::tailnet_webhook`]): the endpoint is deleted before it goes.
//! Its cache is dropped from the registry when the watch sees it deleted (and, should a delete event be missed across a
//! re-list, at the next ManagedTailnet reconcile).
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use sha2::{Digest, Sha256};

use super::coordination::lock_unpoisoned;
use super::tailnet_webhook;
use super::{
    Context, KindContext, KindController, Stop, controller_for, instrumented, kind_controller,
    write_status,
};
use super::{has_finalizer, set_finalizer};
use crate::cluster::credentials::{read_credentials, read_webhook_secret};
use crate::error::Category;
use crate::reconcile::tailnet_settings::{SettingsWrite, plan as plan_settings, scopes_of};
use crate::resources::DriftDiff;
use crate::resources::conditions::{self, reason, set_condition, time_from};
use crate::resources::tailnet::{
    ApiHealth, AreaAccess, CredentialCheck, SettingsSpec, SettingsStatus,
};
use crate::resources::{
    ConditionStatus, ConditionType, ManagedTailnet, ManagedTailnetStatus, ReconcileError,
};
use crate::snapshot::{Area, TailnetSnapshots};
use crate::tailscale::{ClientConfig, Credentials, TailscaleClient};

/// The kind label in metrics and logs.
pub const KIND: &str = "ManagedTailnet";

/// Per-controller state beside the shared [`Context`].
pub struct TailnetContext {
    pub shared: Arc<Context>,
    store: Store<ManagedTailnet>,
    /// Hash of (spec connection fields, credentials) behind each registry entry, so the client
    /// is rebuilt only when one of them changes. Never the credentials themselves.
    fingerprints: Arc<Mutex<HashMap<String, String>>>,
}

impl KindContext for TailnetContext {
    fn shared(&self) -> &Context {
        &self.shared
    }
}

impl TailnetContext {
    fn fingerprints(&self) -> MutexGuard<'_, HashMap<String, String>> {
        lock_unpoisoned(&self.fingerprints)
    }
}

/// The ManagedTailnet controller, ready for the manager to run.
impl super::Controlled for ManagedTailnet {
    fn controller(ctx: Arc<Context>, stop: &Stop) -> KindController {
        let client = ctx.client.clone();
        let fingerprints: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let on_delete = {
            let (snapshots, fingerprints) = (ctx.snapshots.clone(), Arc::clone(&fingerprints));
            let metrics = Arc::clone(&ctx.metrics);
            move |tailnet: &ManagedTailnet| {
                let name = tailnet.name_any();
                snapshots.remove(&name);
                lock_unpoisoned(&fingerprints).remove(&name);
                metrics.forget_tailnet(&name);
            }
        };
        let controller = controller_for(
            Api::<ManagedTailnet>::all(client.clone()),
            watcher::Config::default(),
            on_delete,
        );
        let store = controller.store();
        let by_secret = store.clone();
        let controller = controller
            // Metadata only, and only in the operator's namespace (where credentials must be):
            // the operator needs to know *that* a credentials Secret changed, nothing more.
            .watches(
                Api::<PartialObjectMeta<KubeSecret>>::namespaced(client, &ctx.namespace),
                watcher::Config::default(),
                move |secret: PartialObjectMeta<KubeSecret>| referencing(&by_secret, &secret),
            )
            .graceful_shutdown_on(stop.wait());
        let tailnet_ctx = Arc::new(TailnetContext {
            shared: ctx,
            store,
            fingerprints,
        });
        kind_controller(KIND, controller, reconcile, tailnet_ctx)
    }
}

/// The operator reads Secrets only in its own namespace (a Role there: no cluster-wide Secret
/// read), so a credentials Secret elsewhere is an invalid spec naming the field and the fix.
fn in_operator_namespace(tailnet: &ManagedTailnet, namespace: &str) -> Result<(), ReconcileError> {
    let field = if tailnet.spec.oauth_secret_ref.is_some() {
        "spec.oauthSecretRef.namespace"
    } else {
        "spec.apiKeySecretRef.namespace"
    };
    match secret_location(tailnet) {
        Some((ns, name)) if ns != namespace => Err(ReconcileError::invalid(
            field,
            format!(
                "Secret {ns}/{name} is outside the operator's namespace {namespace}: the operator \
                 reads credentials only there (it has no cluster-wide Secret access); create the \
                 Secret in {namespace} and set {field}: {namespace}"
            ),
        )),
        _ => Ok(()),
    }
}

/// The Tailnets whose credentials are in `secret`.
fn referencing(
    store: &Store<ManagedTailnet>,
    secret: &PartialObjectMeta<KubeSecret>,
) -> Vec<ObjectRef<ManagedTailnet>> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    store
        .state()
        .iter()
        .filter(|tailnet| {
            secret_location(tailnet).is_some_and(|(ns, n)| ns == namespace && n == name)
        })
        .map(|tailnet| ObjectRef::from_obj(&**tailnet))
        .collect()
}

/// Namespace and name of the Secret a ManagedTailnet references.
fn secret_location(tailnet: &ManagedTailnet) -> Option<(&str, &str)> {
    let spec = &tailnet.spec;
    spec.oauth_secret_ref
        .as_ref()
        .map(|r| (r.namespace.as_str(), r.name.as_str()))
        .or_else(|| {
            spec.api_key_secret_ref
                .as_ref()
                .map(|r| (r.namespace.as_str(), r.name.as_str()))
        })
}

async fn reconcile(
    tailnet: Arc<ManagedTailnet>,
    ctx: Arc<TailnetContext>,
) -> Result<Action, ReconcileError> {
    let shared = Arc::clone(&ctx.shared);
    instrumented(&shared, &*tailnet, reconcile_inner(&tailnet, &ctx)).await
}

async fn reconcile_inner(
    tailnet: &ManagedTailnet,
    ctx: &TailnetContext,
) -> Result<Action, ReconcileError> {
    forget_deleted(ctx);
    let api = Api::<ManagedTailnet>::all(ctx.shared.client.clone());
    if tailnet.metadata.deletion_timestamp.is_some() {
        return finalize(tailnet, &api, ctx).await;
    }
    // Only a managed webhook endpoint lives in the tailnet on this resource's behalf.
    let wants_finalizer = tailnet_webhook::managed_url(tailnet).is_some();
    if wants_finalizer != has_finalizer(tailnet) {
        set_finalizer(&api, tailnet, wants_finalizer).await?;
    }
    let observed = observe(tailnet, ctx).await;
    register_webhook(tailnet, ctx).await;
    let settings = match (&observed, &tailnet.spec.settings) {
        (Ok(_), Some(spec)) => Some(apply_settings(tailnet, spec, ctx).await),
        _ => None,
    };
    let mut desired = desired_status(tailnet, &observed, Utc::now());
    let warning = ctx.shared.webhooks.forwarding_warning(&tailnet.name_any());
    record_forwarding(
        &mut desired,
        tailnet,
        warning.as_ref(),
        ctx.shared.clock.now(),
    );
    if let Some(outcome) = &settings {
        record_settings(&mut desired, tailnet, outcome, Utc::now());
    }
    let was_ready = tailnet
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.common.conditions, ConditionType::Ready));
    write_status(&api, tailnet, tailnet.status.as_ref(), &desired).await?;
    if let Some(diff) = settings.as_ref().and_then(|s| s.corrected.as_ref()) {
        let note = format!(
            "drift detected in the managed settings: {}; put back (driftPolicy: Correct)",
            diff.summary()
        );
        super::publish_event(
            &ctx.shared,
            tailnet,
            true,
            reason::DRIFTED,
            "Reconcile",
            note,
        )
        .await;
    }
    if let Some(why) = settings.as_ref().and_then(|s| s.wrote) {
        let note = match why {
            SettingsWrite::SpecChanged => "wrote the managed tailnet settings (SpecChanged)",
            SettingsWrite::DriftCorrection => {
                "put back managed tailnet settings changed in the admin console (DriftCorrection)"
            }
        };
        super::publish_event(
            &ctx.shared,
            tailnet,
            false,
            super::skeleton::APPLIED,
            "Reconcile",
            note.to_owned(),
        )
        .await;
    }
    match observed {
        Ok(observation) => {
            if !was_ready {
                let note = format!(
                    "credentials accepted; {} devices in the tailnet",
                    observation.device_count
                );
                super::publish_event(
                    &ctx.shared,
                    tailnet,
                    false,
                    reason::CREDENTIALS_VALID,
                    "CheckCredentials",
                    note,
                )
                .await;
            }
            Ok(Action::requeue(observation.resync_interval))
        }
        Err(err) => {
            let note = failure_message(tailnet, &err);
            super::publish_event(
                &ctx.shared,
                tailnet,
                true,
                err.event_reason(),
                "CheckCredentials",
                note,
            )
            .await;
            Err(err)
        }
    }
}

/// Accepts webhook deliveries for this tailnet signed with its endpoint's secret: the one
/// `spec.webhook.secretRef` names, or the managed endpoint's (created, recreated or rotated
/// here). A failure is a Warning event: webhooks only speed drift detection up, so the
/// connection stays Ready and resyncs still find drift.
async fn register_webhook(tailnet: &ManagedTailnet, ctx: &TailnetContext) {
    let name = tailnet.name_any();
    let webhooks = &ctx.shared.webhooks;
    let secrets = match tailnet_webhook::managed_url(tailnet) {
        Some(url) => match ctx.shared.snapshots.get(&name) {
            Some(snapshots) => {
                tailnet_webhook::ensure(tailnet, url, snapshots.client(), &ctx.shared)
                    .await
                    .map(|(secrets, change)| (secrets, change.map(|c| endpoint_note(&c, url))))
            }
            // Not connected: the connection's own condition says why.
            None => return,
        },
        None => read_webhook_secret(tailnet, &ctx.shared.client)
            .await
            .map(|secret| (secret.into_iter().collect(), None)),
    };
    match secrets {
        Ok((secrets, note)) => {
            webhooks.set_secrets(&name, secrets);
            if let Some(note) = note {
                super::publish_event(
                    &ctx.shared,
                    tailnet,
                    false,
                    WEBHOOK_ENDPOINT,
                    "Reconcile",
                    note,
                )
                .await;
            }
        }
        Err(err) => {
            webhooks.set_secrets(&name, Vec::new());
            let note = format!(
                "webhook deliveries for this tailnet are refused until its endpoint's signing \
                 secret is known: {err}; drift is still found at each resync"
            );
            super::publish_event(
                &ctx.shared,
                tailnet,
                true,
                WEBHOOK_SECRET,
                "Reconcile",
                note,
            )
            .await;
        }
    }
}

fn endpoint_note(change: &tailnet_webhook::EndpointChange, url: &str) -> String {
    use tailnet_webhook::EndpointChange::*;
    match change {
        Created(id) => format!("created webhook endpoint {id} at {url}"),
        Recreated(id) => format!("webhook endpoint was gone or moved; created {id} at {url}"),
        Rotated(id) => format!(
            "rotated the signing secret of webhook endpoint {id}; the previous one is accepted \
             for {} more minutes",
            tailnet_webhook::ROTATION_OVERLAP.as_secs() / 60
        ),
    }
}

/// The ManagedTailnet is being deleted: its managed webhook endpoint goes first.
async fn finalize(
    tailnet: &ManagedTailnet,
    api: &Api<ManagedTailnet>,
    ctx: &TailnetContext,
) -> Result<Action, ReconcileError> {
    if !has_finalizer(tailnet) {
        return Ok(Action::await_change());
    }
    let name = tailnet.name_any();
    let snapshots = ctx.shared.snapshots.get(&name).ok_or_else(|| {
        ReconcileError::not_found(
            format!("ManagedTailnet {name} (Ready)"),
            "its managed webhook endpoint cannot be deleted while its credentials fail; fix \
             them, or remove spec.webhook.url to leave the endpoint",
        )
    })?;
    tailnet_webhook::remove(tailnet, snapshots.client(), &ctx.shared).await?;
    ctx.shared.webhooks.set_secrets(&name, Vec::new());
    set_finalizer(api, tailnet, false).await?;
    Ok(Action::await_change())
}

/// Event reason when the managed webhook endpoint was created, recreated or rotated.
pub const WEBHOOK_ENDPOINT: &str = "WebhookEndpoint";

/// Event reason when the webhook signing secret cannot be read.
pub const WEBHOOK_SECRET: &str = "WebhookSecret";

/// What a settings pass did.
#[derive(Debug, Clone)]
struct SettingsOutcome {
    status: SettingsStatus,
    wrote: Option<SettingsWrite>,
    /// The drift a correction put back (for its event).
    corrected: Option<DriftDiff>,
}

/// Plans the managed settings against the shared settings snapshot and makes the one PATCH.
/// A refused PATCH is recorded in `status.settings.error` (naming each field and the scope it
/// needs) rather than failing the connection check: the credentials still work for the rest.
async fn apply_settings(
    tailnet: &ManagedTailnet,
    spec: &SettingsSpec,
    ctx: &TailnetContext,
) -> SettingsOutcome {
    let before = tailnet
        .status
        .as_ref()
        .and_then(|s| s.settings.clone())
        .unwrap_or_default();
    let failed = |message: String| SettingsOutcome {
        status: SettingsStatus {
            error: Some(message),
            ..before.clone()
        },
        wrote: None,
        corrected: None,
    };
    let Some(cache) = ctx.shared.snapshots.get(&tailnet.name_any()) else {
        return failed("the tailnet's connection is not ready".to_owned());
    };
    let live = match cache.settings().await {
        Ok(live) => live,
        Err(err) => return failed(format!("reading the settings: {err}")),
    };
    let planned = plan_settings(
        spec,
        before.applied.as_ref(),
        &live.data,
        tailnet.spec.suspend,
    );
    let Some((patch, why)) = planned.patch else {
        return SettingsOutcome {
            status: SettingsStatus {
                applied: Some(planned.applied),
                drift: planned.drift,
                error: None,
            },
            wrote: None,
            corrected: None,
        };
    };
    let written = cache.client().update_settings(&patch).await;
    cache.record_write(Area::Settings);
    let reported = spec.drift_policy == crate::resources::DriftPolicy::Report;
    match written {
        Ok(_) => SettingsOutcome {
            status: SettingsStatus {
                applied: Some(planned.applied),
                // Corrected, or only the spec's own changes written under Report.
                drift: planned.drift.clone().filter(|_| reported),
                error: None,
            },
            wrote: Some(why),
            corrected: planned.drift.filter(|_| !reported),
        },
        Err(err) => failed(format!(
            "Tailscale refused the settings PATCH ({err}); the operator's credential needs a \
             scope for each field: {}",
            scopes_of(&patch)
        )),
    }
}

/// Puts the settings outcome into the status: `status.settings` and the `Drifted` condition.
fn record_settings(
    status: &mut ManagedTailnetStatus,
    tailnet: &ManagedTailnet,
    outcome: &SettingsOutcome,
    now: DateTime<Utc>,
) {
    let now = time_from(now.trunc_subsecs(0));
    let generation = tailnet.metadata.generation;
    match &outcome.status.drift {
        Some(diff) => set(
            status,
            ConditionType::Drifted,
            true,
            reason::DRIFTED,
            &format!(
                "managed settings were changed in the admin console and are left as they are \
                 (spec.settings.driftPolicy: Report): {}",
                diff.summary()
            ),
            generation,
            &now,
        ),
        None => set(
            status,
            ConditionType::Drifted,
            false,
            reason::IN_SYNC,
            "the managed settings are as applied",
            generation,
            &now,
        ),
    }
    if let Some(error) = &outcome.status.error {
        set(
            status,
            ConditionType::Synced,
            false,
            reason::INVALID,
            error,
            generation,
            &now,
        );
    }
    status.settings = Some(outcome.status.clone());
}

/// Drops the caches of Tailnets that no longer exist (there is no finalizer to do it).
fn forget_deleted(ctx: &TailnetContext) {
    let live: HashSet<String> = ctx.store.state().iter().map(|t| t.name_any()).collect();
    for name in ctx.shared.snapshots.names() {
        if !live.contains(&name) {
            ctx.shared.snapshots.remove(&name);
            ctx.fingerprints().remove(&name);
            ctx.shared.metrics.forget_tailnet(&name);
            ctx.shared.webhooks.set_secrets(&name, Vec::new());
        }
    }
}

/// What a successful check observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub device_count: u32,
    /// When the devices snapshot was read (the check's time).
    pub fetched_at: DateTime<Utc>,
    pub resync_interval: Duration,
    /// `GET /devices?fields=all` answered 404 and the default fields were listed instead.
    pub devices_lack_details: bool,
    /// What the credential can read, when probed this pass (credentials changed).
    pub access: Option<Vec<AreaAccess>>,
}

/// The areas probed when the credentials change, what uses each and the read scope it needs.
const PROBED: [(Area, &str, &str, &str); 6] = [
    (Area::Policy, "policy", "TailnetPolicy", "policy_file:read"),
    (Area::Dns, "dns", "DNSConfig", "dns:read"),
    (
        Area::Keys,
        "keys",
        "KeyRotationPolicy, key-expiry metrics",
        "auth_keys:read",
    ),
    (
        Area::Services,
        "services",
        "TailscaleService",
        "services:read",
    ),
    (
        Area::Settings,
        "settings",
        "spec.settings",
        "feature_settings:read",
    ),
    (
        Area::Users,
        "users",
        "TailnetPolicy checks (roles)",
        "users:read",
    ),
];

/// Reads each area once (filling the shared snapshots) and records what the credential may
/// read: a 403 names the scope to add; other failures are recorded as they are.
async fn probe_access(cache: &TailnetSnapshots) -> Vec<AreaAccess> {
    let mut access = vec![AreaAccess {
        area: "devices".to_owned(),
        used_by: "DeviceTagSet, every policy check".to_owned(),
        readable: true,
        message: String::new(),
    }];
    for (area, name, used_by, scope) in PROBED {
        let read = match area {
            Area::Policy => cache.policy().await.map(drop),
            Area::Dns => cache.dns().await.map(drop),
            Area::Keys => cache.keys().await.map(drop),
            Area::Services => cache.services().await.map(drop),
            Area::Settings => cache.settings().await.map(drop),
            _ => cache.users().await.map(drop),
        };
        let message = match &read {
            Ok(()) => String::new(),
            Err(err) if err.status == Some(403) => format!(
                "the credential may not read it (403): give the OAuth client the {scope} scope \
                 (or the write scope) if you use {used_by}"
            ),
            Err(err) => format!("could not be read: {err}"),
        };
        access.push(AreaAccess {
            area: name.to_owned(),
            used_by: used_by.to_owned(),
            readable: read.is_ok(),
            message,
        });
    }
    access
}

async fn observe(
    tailnet: &ManagedTailnet,
    ctx: &TailnetContext,
) -> Result<Observation, ReconcileError> {
    let resync_interval = tailnet
        .spec
        .resync_interval()
        .map_err(|err| ReconcileError::invalid("spec.resyncInterval", err.to_string()))?;
    in_operator_namespace(tailnet, &ctx.shared.namespace)?;
    let credentials = read_credentials(tailnet, &ctx.shared.client).await?;
    // Before the cache exists, so no resource of a suspended tailnet can write through it.
    ctx.shared
        .snapshots
        .set_suspended(&tailnet.name_any(), tailnet.spec.suspend);
    // A new credential (or connection) is probed for what it can read.
    let mut probe = tailnet.status.as_ref().is_none_or(|s| s.access.is_empty());
    let cache = {
        let name = tailnet.name_any();
        let fingerprint = fingerprint(tailnet, &credentials, resync_interval);
        let current = ctx.shared.snapshots.get(&name);
        let unchanged = ctx.fingerprints().get(&name) == Some(&fingerprint);
        match current {
            Some(cache) if unchanged => cache,
            _ => {
                let config = ClientConfig::new(tailnet.spec.api_url.clone(), credentials)
                    .with_tailnet(tailnet.spec.tailnet.clone());
                let client = TailscaleClient::new(config)?
                    .with_observer(ctx.shared.metrics.api_observer(&name));
                let cache = ctx.shared.snapshots.insert(&name, client, resync_interval);
                ctx.fingerprints().insert(name, fingerprint);
                probe = true;
                cache
            }
        }
    };
    let devices = cache.devices().await?;
    let name = tailnet.name_any();
    ctx.shared
        .metrics
        .observe_devices(&name, &devices.data, devices.fetched_at_utc);
    observe_keys(&name, &cache, ctx).await;
    Ok(Observation {
        device_count: u32::try_from(devices.data.len()).unwrap_or(u32::MAX),
        fetched_at: devices.fetched_at_utc,
        resync_interval,
        devices_lack_details: cache.client().devices_lack_details(),
        access: if probe {
            Some(probe_access(&cache).await)
        } else {
            None
        },
    })
}

/// Feeds the key-expiry gauges from the shared keys snapshot. A failure (e.g. an OAuth client
/// without the `auth_keys:read` scope) only leaves the gauges as they were: key metrics are not
/// worth failing the credential check for.
async fn observe_keys(name: &str, cache: &TailnetSnapshots, ctx: &TailnetContext) {
    match cache.keys().await {
        Ok(keys) => ctx.shared.metrics.observe_keys(name, &keys.data),
        Err(err) => tracing::debug!(
            tailnet = %name,
            category = %err.category,
            "cannot read the tailnet's keys for the key-expiry metrics: {err}"
        ),
    }
}

/// A digest of everything the client is built from; the credentials go in hashed, never kept.
fn fingerprint(tailnet: &ManagedTailnet, credentials: &Credentials, interval: Duration) -> String {
    let mut hasher = Sha256::new();
    for part in [
        tailnet.spec.api_url.as_str(),
        tailnet.spec.tailnet.as_str(),
        &interval.as_millis().to_string(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    match credentials {
        Credentials::ApiKey(key) => {
            hasher.update(b"api-key\0");
            hasher.update(key.expose().as_bytes());
        }
        Credentials::OAuth {
            client_id,
            client_secret,
        } => {
            hasher.update(b"oauth\0");
            hasher.update(client_id.as_bytes());
            hasher.update([0]);
            hasher.update(client_secret.expose().as_bytes());
        }
        // The token file's content rotates under the client, which re-reads it: only where it
        // is and what it is checked against rebuild the client.
        Credentials::WorkloadIdentity {
            client_id,
            token_file,
            audience,
        } => {
            hasher.update(b"workload-identity\0");
            for part in [
                client_id.as_str(),
                &token_file.to_string_lossy(),
                audience.as_deref().unwrap_or(""),
            ] {
                hasher.update(part.as_bytes());
                hasher.update([0]);
            }
        }
    }
    hex::encode(hasher.finalize())
}

/// How long a webhook's IP-forwarding warning shows as a condition: no event says when the
/// device was fixed, so the warning ages out.
pub const FORWARDING_WARNING_FOR: chrono::Duration = chrono::Duration::hours(24);

/// `IPForwardingNotEnabled`: True with the latest warning's message for
/// [`FORWARDING_WARNING_FOR`] after a webhook delivered one, then False. Never added to a
/// tailnet that had no warning (pure).
pub fn record_forwarding(
    status: &mut ManagedTailnetStatus,
    tailnet: &ManagedTailnet,
    warning: Option<&(DateTime<Utc>, String)>,
    now: DateTime<Utc>,
) {
    let Some((at, message)) = warning else {
        return;
    };
    let aged_out = *at + FORWARDING_WARNING_FOR;
    let (state, why, message, since) = if now < aged_out {
        (true, "WebhookWarning", message.clone(), *at)
    } else {
        let message = format!("no IP-forwarding warning since {}", at.to_rfc3339());
        (false, "NoRecentWarning", message, aged_out)
    };
    set(
        status,
        ConditionType::IpForwardingNotEnabled,
        state,
        why,
        &message,
        tailnet.metadata.generation,
        &time_from(since.trunc_subsecs(0)),
    );
}

/// The condition message for a failure: the error plus what to do about it.
pub fn failure_message(tailnet: &ManagedTailnet, err: &ReconcileError) -> String {
    if let Some(identity) = &tailnet.spec.workload_identity {
        return match err.category() {
            Category::Auth => format!(
                "{err}; the Tailscale API refused the workload identity {}: check that the \
                 federated identity's issuer is this cluster's service-account issuer, its \
                 subject matches system:serviceaccount:<namespace>:<service account> of the \
                 operator, and its audience is {:?}",
                identity.client_id, identity.audience
            ),
            _ => err.to_string(),
        };
    }
    let secret = secret_location(tailnet)
        .map(|(ns, name)| format!("Secret {ns}/{name}"))
        .unwrap_or_else(|| "the referenced Secret".to_owned());
    match err.category() {
        Category::Auth => format!(
            "{err}; the Tailscale API refused the credentials in {secret}: check they are \
             current and, for an OAuth client, that it has the devices:core:read scope"
        ),
        _ => err.to_string(),
    }
}

/// The status after a check, from the current status (pure, so it is tested without a cluster).
///
/// Times come from the devices snapshot (truncated to seconds, as the API server stores them),
/// so reconciles within one resync interval compute the same status and write nothing. A
/// failure keeps the last successful observation (device count, last sync) and records itself
/// in `apiHealth` when the Tailscale API answered with it.
pub fn desired_status(
    tailnet: &ManagedTailnet,
    observed: &Result<Observation, ReconcileError>,
    now: DateTime<Utc>,
) -> ManagedTailnetStatus {
    let mut status = tailnet.status.clone().unwrap_or_default();
    let generation = tailnet.metadata.generation;
    status.common.observed_generation = generation;
    let now_time = time_from(now.trunc_subsecs(0));
    match observed {
        Ok(observation) => {
            let at = time_from(observation.fetched_at.trunc_subsecs(0));
            let mut message = format!(
                "credentials accepted; {} devices in the tailnet",
                observation.device_count
            );
            if observation.devices_lack_details {
                message.push_str(
                    " (listed without connectivity details: GET /devices?fields=all answered \
                     404, as reported for tailnets with shared-in devices; routes, endpoints \
                     and posture data are missing until it answers again)",
                );
            }
            set(
                &mut status,
                ConditionType::Ready,
                true,
                reason::CREDENTIALS_VALID,
                &message,
                generation,
                &at,
            );
            status.credential_check = Some(CredentialCheck {
                ok: true,
                message: "read the tailnet's devices".to_owned(),
                checked_at: at.clone(),
            });
            status.device_count = Some(observation.device_count);
            if let Some(access) = &observation.access {
                status.access = access.clone();
            }
            status.common.last_sync_time = Some(at.clone());
            status
                .api_health
                .get_or_insert_with(ApiHealth::default)
                .last_success_time = Some(at.clone());
            set_synced(
                &mut status,
                tailnet,
                true,
                reason::RECONCILED,
                "the tailnet was read",
                &at,
            );
        }
        Err(err) => {
            let message = failure_message(tailnet, err);
            let why = reason::for_category(err.category());
            set(
                &mut status,
                ConditionType::Ready,
                false,
                why,
                &message,
                generation,
                &now_time,
            );
            if credentials_at_fault(err) {
                status.credential_check = Some(CredentialCheck {
                    ok: false,
                    message: message.clone(),
                    checked_at: now_time.clone(),
                });
            }
            if let ReconcileError::Api(api) = err {
                let health = status.api_health.get_or_insert_with(ApiHealth::default);
                health.last_error_time = Some(now_time.clone());
                health.last_error_category = Some(api.category.as_str().to_owned());
                health.last_error_message = Some(api.to_string());
            }
            set_synced(&mut status, tailnet, false, why, &message, &now_time);
        }
    }
    // In sync unless managed settings drifted (`record_settings` says so after this).
    set(
        &mut status,
        ConditionType::Drifted,
        false,
        reason::IN_SYNC,
        "no managed settings drifted",
        generation,
        &now_time,
    );
    status
}

fn set_synced(
    status: &mut ManagedTailnetStatus,
    tailnet: &ManagedTailnet,
    ok: bool,
    why: &str,
    message: &str,
    at: &Time,
) {
    let generation = tailnet.metadata.generation;
    match super::suspension(tailnet.spec.suspend, None) {
        Some(suspended) if ok => set(
            status,
            ConditionType::Synced,
            false,
            reason::SUSPENDED,
            &suspended,
            generation,
            at,
        ),
        _ => set(
            status,
            ConditionType::Synced,
            ok,
            why,
            message,
            generation,
            at,
        ),
    }
}

fn set(
    status: &mut ManagedTailnetStatus,
    type_: ConditionType,
    ok: bool,
    why: &str,
    message: &str,
    generation: Option<i64>,
    at: &Time,
) {
    set_condition(
        &mut status.common.conditions,
        type_,
        ConditionStatus::from(ok),
        why,
        message,
        generation,
        at,
    );
}

/// Whether the failure says the credentials (or their Secret) are the problem.
fn credentials_at_fault(err: &ReconcileError) -> bool {
    matches!(
        err,
        ReconcileError::Credentials { .. } | ReconcileError::NotFound { .. }
    ) || matches!(err, ReconcileError::Api(api) if api.category == Category::Auth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ManagedTailnetSpec;
    use crate::resources::tailnet::ApiKeySecretRef;
    use crate::secret::Secret;
    use crate::tailscale::ApiError;
    use chrono::TimeZone;

    fn tailnet() -> ManagedTailnet {
        let mut t = ManagedTailnet::new(
            "home",
            ManagedTailnetSpec {
                api_key_secret_ref: Some(ApiKeySecretRef {
                    name: "ts-key".into(),
                    namespace: "ops".into(),
                    key: "api_key".into(),
                }),
                ..ManagedTailnetSpec::default()
            },
        );
        t.metadata.generation = Some(3);
        t
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 123_000_000)
            .unwrap()
    }

    fn ok(devices: u32, fetched: i64) -> Result<Observation, ReconcileError> {
        Ok(Observation {
            device_count: devices,
            fetched_at: at(fetched),
            resync_interval: Duration::from_secs(300),
            devices_lack_details: false,
            access: None,
        })
    }

    fn ready(
        status: &ManagedTailnetStatus,
    ) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        conditions::find(&status.common.conditions, ConditionType::Ready).unwrap()
    }

    #[test]
    fn a_successful_check_is_ready_with_the_device_count_and_generation() {
        let status = desired_status(&tailnet(), &ok(7, 0), at(5));
        assert_eq!(ready(&status).status, "True");
        assert_eq!(ready(&status).observed_generation, Some(3));
        assert_eq!(status.device_count, Some(7));
        assert_eq!(status.common.observed_generation, Some(3));
        assert!(status.credential_check.as_ref().unwrap().ok);
        assert_eq!(
            status.common.last_sync_time,
            Some(time_from(at(0).trunc_subsecs(0)))
        );
    }

    #[test]
    fn reconciling_again_on_the_same_snapshot_computes_the_same_status() {
        let mut t = tailnet();
        t.status = Some(desired_status(&t, &ok(7, 0), at(5)));
        assert_eq!(
            desired_status(&t, &ok(7, 0), at(60)),
            t.status.clone().unwrap()
        );
    }

    #[test]
    fn an_auth_failure_keeps_the_last_observation_and_says_what_to_fix() {
        let mut t = tailnet();
        t.status = Some(desired_status(&t, &ok(7, 0), at(5)));
        let err = ReconcileError::Api(ApiError::new(
            Category::Auth,
            "GET /tailnet/{tailnet}/devices",
            "invalid key",
        ));
        let status = desired_status(&t, &Err(err), at(10));
        assert_eq!(ready(&status).status, "False");
        assert_eq!(ready(&status).reason, "Auth");
        assert!(ready(&status).message.contains("Secret ops/ts-key"));
        assert!(ready(&status).message.contains("devices:core:read"));
        assert_eq!(status.device_count, Some(7));
        assert!(!status.credential_check.as_ref().unwrap().ok);
        assert_eq!(
            status.api_health.unwrap().last_error_category.as_deref(),
            Some("Auth")
        );
    }

    #[test]
    fn a_suspended_tailnet_is_observed_but_not_synced() {
        let mut t = tailnet();
        t.spec.suspend = true;
        let status = desired_status(&t, &ok(1, 0), at(1));
        assert_eq!(ready(&status).status, "True");
        let synced = conditions::find(&status.common.conditions, ConditionType::Synced).unwrap();
        assert_eq!(
            (synced.status.as_str(), synced.reason.as_str()),
            ("False", "Suspended")
        );
    }

    #[test]
    fn the_fingerprint_changes_with_credentials_and_connection_only() {
        let t = tailnet();
        let key = |k: &str| Credentials::ApiKey(Secret::new(k));
        let interval = Duration::from_secs(300);
        let base = fingerprint(&t, &key("a"), interval);
        assert_eq!(base, fingerprint(&t, &key("a"), interval));
        assert_ne!(base, fingerprint(&t, &key("b"), interval));
        assert_ne!(base, fingerprint(&t, &key("a"), Duration::from_secs(60)));
        let mut other = t.clone();
        other.spec.tailnet = "example.com".into();
        assert_ne!(base, fingerprint(&other, &key("a"), interval));
        assert!(!base.contains('a') || base.len() == 64);
    }

    #[test]
    fn credentials_outside_the_operator_namespace_are_an_invalid_spec_naming_the_fix() {
        let t = tailnet(); // its Secret is ops/ts-key
        assert!(in_operator_namespace(&t, "ops").is_ok());
        let err = in_operator_namespace(&t, "tailnet-operator").unwrap_err();
        assert_eq!(err.category(), Category::Invalid);
        let message = err.to_string();
        assert!(
            message.contains("spec.apiKeySecretRef.namespace")
                && message.contains("Secret ops/ts-key")
                && message.contains("create the Secret in tailnet-operator"),
            "{message}"
        );
    }

    #[test]
    fn a_forwarding_warning_shows_for_a_day_and_only_after_one_came() {
        let t = tailnet();
        let mut status = desired_status(&t, &ok(7, 0), at(5));
        record_forwarding(&mut status, &t, None, at(5));
        assert!(
            crate::resources::conditions::find(
                &status.common.conditions,
                ConditionType::IpForwardingNotEnabled
            )
            .is_none()
        );
        let warning = (at(5), "exit node x forwards nothing".to_owned());
        record_forwarding(&mut status, &t, Some(&warning), at(6));
        let c = crate::resources::conditions::find(
            &status.common.conditions,
            ConditionType::IpForwardingNotEnabled,
        )
        .unwrap();
        assert_eq!(
            (c.status.as_str(), c.message.as_str()),
            ("True", "exit node x forwards nothing")
        );
        record_forwarding(
            &mut status,
            &t,
            Some(&warning),
            at(5) + FORWARDING_WARNING_FOR,
        );
        let c = crate::resources::conditions::find(
            &status.common.conditions,
            ConditionType::IpForwardingNotEnabled,
        )
        .unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "NoRecentWarning")
        );
    }
}
