//! The `KeyRotationPolicy` controller: keeps one fresh credential in the policy's Secret,
//! through the pure planner of [`crate::reconcile::key_rotation`].
//!
//! A pass: the tailnet's keys (the shared snapshot, `GET /keys?all=true`) and the Secret's
//! key-id annotation → plan → in this order, each step recorded in status before the next:
//! adopt (a key the Secret holds that status lost) → mint (an older previous credential still
//! pending is revoked first) → write the Secret (server-side apply) → record it → revoke the
//! previous credential past its grace period and this policy's orphans (404 is success). The
//! order is what makes every crash point converge (see the planner's tests). The pass requeues
//! at the next rotation or revocation.
//!
//! Key material exists only between the mint and the Secret write, in the client's redacting
//! [`crate::secret::Secret`] wrapper, and is dropped after the write.
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use super::skeleton::{self, CleanUpResult, KindReconciler, Next, Pass, PassResult};
use super::{Context, Controlled, KindController, KindEvent, Metrics, Stop};
use crate::reconcile::key_rotation::{
    KeyInput, Observed, RevokeReason, after_mint, after_new_current, after_revoke, lifetimes, mint,
    next_wake, parse_time, plan, ready_verdict, revoke,
};
use crate::resources::common::FIELD_MANAGER;
use crate::resources::conditions::{ConditionStatus, Verdict, reason};
use crate::resources::key_rotation_policy::{KEY_ID_ANNOTATION, KeyType};
use crate::resources::{KeyRotationPolicy, KeyRotationPolicyStatus, ReconcileError, TailnetScoped};
use crate::snapshot::{Area, TailnetSnapshots};
use crate::tailscale::CreatedKey;

/// Started by the manager with every kind of [`crate::for_each_kind`].
impl Controlled for KeyRotationPolicy {
    fn controller(ctx: Arc<Context>, stop: &Stop) -> KindController {
        let metrics = Arc::clone(&ctx.metrics);
        skeleton::controller(ctx, stop, KeyRotationKind { metrics })
    }
}

/// Event reason of a new credential written to the Secret.
pub const ROTATED: &str = "Rotated";
/// Event reason of a credential revoked.
pub const REVOKED: &str = "Revoked";

/// The KeyRotationPolicy kind: the pass, the clean-up, and the schedule and failure metrics.
pub struct KeyRotationKind {
    metrics: Arc<Metrics>,
}

impl KindReconciler for KeyRotationKind {
    type Object = KeyRotationPolicy;
    const AREA: Area = Area::Keys;
    const WAITING: &'static str = "a credential is minted";

    fn on_delete(&self, obj: &KeyRotationPolicy) {
        let (namespace, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
        self.metrics.forget_key_rotation(&namespace, &name);
    }

    /// [`rotate`], counting failures and publishing the schedule.
    async fn pass(&self, pass: &Pass<'_, Self>, snapshots: &TailnetSnapshots) -> PassResult {
        let (namespace, name) = (
            pass.current.namespace().unwrap_or_default(),
            pass.current.name_any(),
        );
        let result = rotate(pass, snapshots).await;
        self.metrics
            .record_key_rotation_failure(&namespace, &name, result.is_err());
        let (next, status) = result?;
        if let Some((expires, next)) = schedule(&pass.current, &status) {
            self.metrics
                .set_key_rotation(&namespace, &name, expires, next);
        }
        Ok(next)
    }

    /// Revokes the current and previous credentials and this policy's orphans, then deletes
    /// the Secret.
    async fn clean_up(&self, pass: &Pass<'_, Self>) -> CleanUpResult {
        let snapshots = pass.snapshots_for_clean_up()?;
        let current = &*pass.current;
        let input = KeyInput::from_object(current, &scope(pass));
        snapshots.refresh_if_older_than(Area::Keys, snapshots.now());
        let keys = snapshots.keys().await?;
        let status = current.current_status();
        let mut ids: Vec<String> = keys
            .data
            .iter()
            .filter(|k| k.description.starts_with(&input.marker))
            .map(|k| k.id.clone())
            .collect();
        ids.extend(status.current_key_id.clone());
        ids.extend(status.previous_key_id.clone());
        ids.sort();
        ids.dedup();
        for id in &ids {
            revoke(&snapshots, id).await?;
        }
        let deleted = secrets_api(pass)
            .delete(&input.secret_name, &DeleteParams::default())
            .await;
        match deleted {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
        let note = format!(
            "deletionPolicy: Delete: revoked {} credential(s) and deleted Secret {}",
            ids.len(),
            input.secret_name
        );
        pass.publish_clean_up(REVOKED, note).await;
        Ok(())
    }
}

/// One pass: plan, then adopt, mint and write, revoke, each recorded in status before the next.
async fn rotate(
    pass: &Pass<'_, KeyRotationKind>,
    snapshots: &TailnetSnapshots,
) -> Result<(Next, KeyRotationPolicyStatus), ReconcileError> {
    let current = &*pass.current;
    let input = KeyInput::from_object(current, &scope(pass));
    let now = pass.shared().clock.now();
    let mut status = current.current_status();
    status.secret_name = Some(input.secret_name.clone());
    let secrets = secrets_api(pass);
    let held = held_key_id(&secrets, &input.secret_name).await?;
    let keys = snapshots.keys().await?;
    let planned = plan(
        &input,
        Observed {
            keys: &keys.data,
            secret_key_id: held.as_deref(),
            now,
        },
    );
    if let Some(blocked) = &planned.blocked {
        let status = report(pass, status, blocked.clone(), Vec::new()).await?;
        return Ok((Next::Resync, status));
    }
    if pass.suspended(current) {
        let pending =
            planned.adopt.is_some() || planned.mint.is_some() || !planned.revoke.is_empty();
        let verdict = if pending {
            Verdict::new(
                ConditionStatus::False,
                reason::SUSPENDED,
                "suspended (spec.suspend here or on its ManagedTailnet): observing only; a \
                 rotation or revocation is due",
            )
        } else {
            ready_verdict(&status, &input.secret_name)
        };
        let status = report(pass, status, verdict, Vec::new()).await?;
        return Ok((Next::Resync, status));
    }
    let lifetimes = lifetimes(&input.spec)?;
    let mut events = Vec::new();
    if let Some(adopted) = &planned.adopt {
        let key = keys.data.iter().find(|k| &k.id == adopted);
        status = after_new_current(&status, adopted, key, now, &lifetimes);
        status = pass.record(status).await?;
    }
    if let Some(why) = planned.mint {
        if let Some(older) = status.previous_key_id.clone() {
            revoke(snapshots, &older).await?;
            status = pass.record(after_revoke(&status, &older)).await?;
            events.push(revoked_event(&older, "superseded by a new rotation"));
        }
        let created = mint(snapshots, &input).await?;
        let owner = current
            .common()
            .deletes_on_removal()
            .then(|| owner_reference(current));
        write_secret(&secrets, owner, &input, &created).await?;
        status = after_mint(&status, &created.key, why, &input, now, &lifetimes);
        status = pass.record(status).await?;
        events.push(KindEvent::new(
            false,
            ROTATED,
            format!(
                "credential {} written to Secret {} ({})",
                created.key.id,
                input.secret_name,
                why.as_str()
            ),
        ));
    }
    for (id, why) in &planned.revoke {
        if status.current_key_id.as_deref() == Some(id.as_str()) {
            continue;
        }
        revoke(snapshots, id).await?;
        status = pass.record(after_revoke(&status, id)).await?;
        let why = match why {
            RevokeReason::GraceOver => "its grace period is over",
            RevokeReason::Orphan => {
                "minted by this policy but claimed by nothing (a run stopped between the mint and the Secret write)"
            }
        };
        events.push(revoked_event(id, why));
    }
    let wake = next_wake(&status, now, snapshots.resync_interval());
    let verdict = ready_verdict(&status, &input.secret_name);
    let status = report(pass, status, verdict, events).await?;
    Ok((Next::After(wake), status))
}

/// When the current credential expires (an OAuth client: `rotateBefore` after its renewal)
/// and when it is renewed, as Unix timestamps, from `status` as written.
fn schedule(policy: &KeyRotationPolicy, status: &KeyRotationPolicyStatus) -> Option<(f64, f64)> {
    let next = status.next_rotation.as_deref().and_then(parse_time)?;
    let lifetimes = lifetimes(&policy.spec).ok()?;
    let expires = match status.expires.as_deref().and_then(parse_time) {
        Some(at) => at,
        None => next + chrono::Duration::from_std(lifetimes.rotate_before).ok()?,
    };
    Some((expires.timestamp() as f64, next.timestamp() as f64))
}

/// What tells this installation's credentials apart: the operator's namespace and the tailnet.
fn scope(pass: &Pass<'_, KeyRotationKind>) -> String {
    format!("{}/{}", pass.shared().namespace, pass.tailnet)
}

fn secrets_api(pass: &Pass<'_, KeyRotationKind>) -> Api<KubeSecret> {
    let namespace = pass
        .current
        .namespace()
        .unwrap_or_else(|| "default".to_owned());
    Api::namespaced(pass.shared().client.clone(), &namespace)
}

/// The key id the Secret holds (its annotation), when the Secret exists.
async fn held_key_id(
    secrets: &Api<KubeSecret>,
    name: &str,
) -> Result<Option<String>, ReconcileError> {
    Ok(secrets
        .get_opt(name)
        .await?
        .and_then(|s| s.annotations().get(KEY_ID_ANNOTATION).cloned()))
}

/// Writes the credential into the Secret (server-side apply), with its key id as annotation
/// and `owner` as owner reference (a policy under `deletionPolicy: Delete`, a FunnelExposure).
pub(crate) async fn write_secret(
    secrets: &Api<KubeSecret>,
    owner: Option<OwnerReference>,
    input: &KeyInput,
    created: &CreatedKey,
) -> Result<(), ReconcileError> {
    let keys = &input.spec.secret_keys;
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let data: BTreeMap<String, ByteString> = match input.spec.key_type {
        KeyType::Auth => [(keys.auth_key.clone(), bytes(created.secret.expose()))].into(),
        KeyType::OauthClient => [
            (keys.client_id.clone(), bytes(&created.key.id)),
            (keys.client_secret.clone(), bytes(created.secret.expose())),
        ]
        .into(),
    };
    let mut annotations = input.spec.secret_annotations.clone();
    annotations.insert(KEY_ID_ANNOTATION.to_owned(), created.key.id.clone());
    let secret = KubeSecret {
        metadata: ObjectMeta {
            name: Some(input.secret_name.clone()),
            namespace: secrets.namespace().map(str::to_owned),
            labels: Some(input.spec.secret_labels.clone()).filter(|l| !l.is_empty()),
            annotations: Some(annotations),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..KubeSecret::default()
    };
    let mut value = serde_json::to_value(&secret)
        .map_err(|e| ReconcileError::internal(format!("encoding the Secret: {e}")))?;
    value["apiVersion"] = "v1".into();
    value["kind"] = "Secret".into();
    secrets
        .patch(
            &input.secret_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(value),
        )
        .await?;
    Ok(())
}

/// `obj` as the controlling owner of what it creates (deleted with it by the garbage collector).
pub(crate) fn owner_reference<K: Resource<DynamicType = ()>>(obj: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: obj.name_any(),
        uid: obj.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn revoked_event(id: &str, why: &str) -> KindEvent {
    KindEvent::new(false, REVOKED, format!("credential {id} revoked: {why}"))
}

/// The pass's final status with `ready` (and `Synced=True`), and its events.
async fn report(
    pass: &Pass<'_, KeyRotationKind>,
    status: KeyRotationPolicyStatus,
    ready: Verdict,
    events: Vec<KindEvent>,
) -> Result<KeyRotationPolicyStatus, ReconcileError> {
    let synced = Verdict::new(
        ConditionStatus::True,
        reason::RECONCILED,
        "the tailnet's keys and the Secret were read and compared",
    );
    let drifted = Verdict::new(
        ConditionStatus::False,
        reason::IN_SYNC,
        "a credential is replaced, never corrected",
    );
    pass.conclude(status, [&ready, &synced, &drifted], events)
        .await
}
