//! A ManagedTailnet's webhook endpoint: which signing secrets the receiver accepts for it.
//!
//! - `spec.webhook.secretRef`: the user created the endpoint; the secret is read from that Secret.
//! - `spec.webhook.url`: the operator manages the endpoint. It creates it through the API at that
//!   URL with every event the receiver handles, keeps the secret (shown only on create and
//!   rotate) in the Secret `<tailnet>-webhook` of its namespace, owned by the ManagedTailnet,
//!   recreates an endpoint deleted in the console, rotates the secret through `/rotate` when the
//!   annotation [`ROTATE_ANNOTATION`] gets a new value (the previous secret stays accepted for
//!   [`ROTATION_OVERLAP`], as deliveries already signed with it arrive), and deletes the
//!   endpoint when the ManagedTailnet is deleted (a finalizer keeps it until then).
//!
//! The endpoint id, the rotation value acted on and the overlap's end live as annotations on
//! that Secret, next to the secret itself: a restarted operator finds everything there.
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::Context;
use super::key_rotation_policy::owner_reference;
use crate::resources::common::FIELD_MANAGER;
use crate::resources::{ManagedTailnet, ReconcileError};
use crate::secret::Secret;
use crate::tailscale::{ApiError, CreateWebhookRequest, CreatedWebhook, TailscaleClient};
use crate::webhook::events::subscriptions;

/// Any new value rotates a managed endpoint's secret (the annotation that rotates a
/// KeyRotationPolicy's credential, on the ManagedTailnet).
pub const ROTATE_ANNOTATION: &str = crate::resources::key_rotation_policy::ROTATE_NOW_ANNOTATION;
/// How long the previous secret stays accepted after a rotation.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(600);
const ENDPOINT_ID: &str = "tailnet.ops.dev/webhook-endpoint-id";
const ROTATED_FOR: &str = "tailnet.ops.dev/rotated-for";
const PREVIOUS_UNTIL: &str = "tailnet.ops.dev/previous-until";

/// What a managed endpoint pass did, for events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointChange {
    Created(String),
    Recreated(String),
    Rotated(String),
}

/// The managed endpoint's Secret: `<tailnet>-webhook`.
pub fn secret_name(tailnet: &ManagedTailnet) -> String {
    format!("{}-webhook", tailnet.name_any())
}

/// Makes the managed endpoint exist at `url` with a known secret; returns the secrets the
/// receiver accepts now and what changed.
pub async fn ensure(
    tailnet: &ManagedTailnet,
    url: &str,
    client: &TailscaleClient,
    ctx: &Context,
) -> Result<(Vec<Secret>, Option<EndpointChange>), ReconcileError> {
    let secrets = Api::<KubeSecret>::namespaced(ctx.client.clone(), &ctx.namespace);
    let name = secret_name(tailnet);
    let stored = secrets.get_opt(&name).await?;
    let annotation = |key: &str| {
        stored
            .as_ref()
            .and_then(|s| s.annotations().get(key).cloned())
    };
    let current = stored.as_ref().and_then(|s| value(s, "secret"));
    let now = ctx.clock.now();
    let mut state = Stored {
        endpoint_id: annotation(ENDPOINT_ID),
        secret: current.clone(),
        previous: stored.as_ref().and_then(|s| value(s, "previous")),
        previous_until: annotation(PREVIOUS_UNTIL),
        rotated_for: annotation(ROTATED_FOR),
    };
    let wanted_rotation = tailnet.annotations().get(ROTATE_ANNOTATION).cloned();
    let live = match &state.endpoint_id {
        Some(id) => match client.get_webhook(id).await {
            Ok(hook) => Some(hook),
            Err(err) if err.status == Some(404) => None,
            Err(err) => return Err(err.into()),
        },
        None => None,
    };
    let change = match live {
        Some(hook) if hook.endpoint_url == url && state.secret.is_some() => {
            if wanted_rotation.is_some() && wanted_rotation != state.rotated_for {
                let rotated = client
                    .rotate_webhook_secret(&hook.endpoint_id)
                    .await
                    .map_err(scope_hint)?;
                state.previous = state.secret.take();
                state.previous_until = Some(format_time(
                    now + chrono::Duration::from_std(ROTATION_OVERLAP).unwrap_or_default(),
                ));
                state.secret = Some(rotated.secret);
                state.rotated_for = wanted_rotation;
                Some(EndpointChange::Rotated(hook.endpoint_id))
            } else {
                None
            }
        }
        other => {
            // Gone, never made, at another URL, or its secret lost: (re)create it.
            if let Some(old) = other {
                client
                    .delete_webhook(&old.endpoint_id)
                    .await
                    .map_err(scope_hint)?;
            }
            let created = create(client, url).await?;
            let id = created.webhook.endpoint_id.clone();
            let change = if state.endpoint_id.is_some() {
                EndpointChange::Recreated(id.clone())
            } else {
                EndpointChange::Created(id.clone())
            };
            state = Stored {
                endpoint_id: Some(id),
                secret: Some(created.secret),
                previous: None,
                previous_until: None,
                rotated_for: wanted_rotation,
            };
            Some(change)
        }
    };
    if change.is_some() {
        write(&secrets, tailnet, &name, &state).await?;
    }
    let mut accepted: Vec<Secret> = state.secret.into_iter().collect();
    let overlapping = state
        .previous_until
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|until| now < until.with_timezone(&Utc));
    if overlapping {
        accepted.extend(state.previous);
    }
    Ok((accepted, change))
}

/// Deletes the managed endpoint (404 is success): the ManagedTailnet is going.
pub async fn remove(
    tailnet: &ManagedTailnet,
    client: &TailscaleClient,
    ctx: &Context,
) -> Result<(), ReconcileError> {
    let secrets = Api::<KubeSecret>::namespaced(ctx.client.clone(), &ctx.namespace);
    let stored = secrets.get_opt(&secret_name(tailnet)).await?;
    if let Some(id) = stored
        .as_ref()
        .and_then(|s| s.annotations().get(ENDPOINT_ID))
    {
        client.delete_webhook(id).await.map_err(scope_hint)?;
    }
    Ok(())
}

struct Stored {
    endpoint_id: Option<String>,
    secret: Option<Secret>,
    previous: Option<Secret>,
    previous_until: Option<String>,
    rotated_for: Option<String>,
}

async fn create(client: &TailscaleClient, url: &str) -> Result<CreatedWebhook, ReconcileError> {
    Ok(client
        .create_webhook(&CreateWebhookRequest {
            endpoint_url: url.to_owned(),
            provider_type: None,
            subscriptions: subscriptions(),
        })
        .await
        .map_err(scope_hint)?)
}

fn scope_hint(mut err: ApiError) -> ApiError {
    if err.status == Some(403) {
        err.message = format!(
            "{}; managing the webhook endpoint needs the webhooks scope on the ManagedTailnet's \
             credential (or create the endpoint yourself and set spec.webhook.secretRef)",
            err.message
        );
    }
    err
}

fn value(secret: &KubeSecret, key: &str) -> Option<Secret> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
}

async fn write(
    secrets: &Api<KubeSecret>,
    tailnet: &ManagedTailnet,
    name: &str,
    state: &Stored,
) -> Result<(), ReconcileError> {
    let mut data = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    if let Some(secret) = &state.secret {
        data.insert("secret", ByteString(secret.expose().as_bytes().to_vec()));
    }
    if let Some(previous) = &state.previous {
        data.insert(
            "previous",
            ByteString(previous.expose().as_bytes().to_vec()),
        );
    }
    for (key, value) in [
        (ENDPOINT_ID, &state.endpoint_id),
        (ROTATED_FOR, &state.rotated_for),
        (PREVIOUS_UNTIL, &state.previous_until),
    ] {
        if let Some(value) = value {
            annotations.insert(key, value.clone());
        }
    }
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "annotations": annotations,
            "ownerReferences": [owner_reference(tailnet)],
        },
        "type": "Opaque",
        "data": data,
    });
    secrets
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(manifest),
        )
        .await?;
    Ok(())
}

fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Whether the ManagedTailnet's webhook endpoint is managed by the operator.
pub fn managed_url(tailnet: &ManagedTailnet) -> Option<&str> {
    tailnet
        .spec
        .webhook
        .as_ref()
        .filter(|w| w.enabled && w.secret_ref.is_none())
        .and_then(|w| w.url.as_deref())
}
