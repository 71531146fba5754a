//! Webhooks: list, create (secret shown once), get, patch subscriptions, delete, test (202),
//! rotate (new secret shown once).
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::{SimError, SimResult, parse_json};
use super::state::{State as Tailnet, Webhook};
use super::{SimTailnet, check_tailnet, now};
use crate::secret::Secret;

pub(crate) fn routes() -> Router<SimTailnet> {
    Router::new()
        .route("/api/v2/tailnet/{tailnet}/webhooks", get(list).post(create))
        .route(
            "/api/v2/webhooks/{endpointId}",
            get(get_one).patch(update).delete(delete),
        )
        .route("/api/v2/webhooks/{endpointId}/test", post(test))
        .route("/api/v2/webhooks/{endpointId}/rotate", post(rotate))
}

/// The event types an endpoint may subscribe to (the operator's receiver knows the same list).
pub const EVENTS: &[&str] = crate::webhook::events::KNOWN;

const PROVIDERS: &[&str] = &["slack", "mattermost", "googlechat", "discord"];

fn check_subscriptions(subscriptions: &[String]) -> SimResult<()> {
    match subscriptions.iter().find(|s| !EVENTS.contains(&s.as_str())) {
        Some(unknown) => Err(SimError::bad_request(format!(
            "unknown webhook event {unknown:?}"
        ))),
        None => Ok(()),
    }
}

fn new_secret(state: &mut Tailnet) -> Secret {
    Secret::new(format!("tskey-webhook-{}", state.alnum(32)))
}

fn find(state: &Tailnet, id: &str) -> SimResult<usize> {
    state
        .webhooks
        .iter()
        .position(|w| w.endpoint_id == id)
        .ok_or_else(|| SimError::not_found("webhook not found"))
}

async fn list(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let hooks: Vec<Value> = state.webhooks.iter().map(|w| w.to_json(false)).collect();
    Ok(Json(json!({ "webhooks": hooks })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    endpoint_url: Option<String>,
    provider_type: Option<String>,
    subscriptions: Option<Vec<String>>,
}

async fn create(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let body: CreateBody = parse_json(&body)?;
    let url = body
        .endpoint_url
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .ok_or_else(|| {
            SimError::bad_request("endpointUrl is required and must be an http(s) URL")
        })?;
    let subscriptions = body
        .subscriptions
        .ok_or_else(|| SimError::bad_request("subscriptions is required"))?;
    check_subscriptions(&subscriptions)?;
    if let Some(p) = body
        .provider_type
        .as_deref()
        .filter(|p| !p.is_empty() && !PROVIDERS.contains(p))
    {
        return Err(SimError::bad_request(format!(
            "invalid providerType {p:?}: want slack, mattermost, googlechat or discord"
        )));
    }
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let now = now();
    let creator = match caller {
        Caller::ApiKey { login } => login,
        Caller::OAuth { client_id, .. } => client_id,
    };
    let webhook = Webhook {
        endpoint_id: state.alnum(12),
        endpoint_url: url,
        provider_type: body.provider_type.filter(|p| !p.is_empty()),
        creator_login_name: creator,
        created: now,
        last_modified: now,
        subscriptions,
        secret: new_secret(&mut state),
    };
    let json = webhook.to_json(true);
    state.webhooks.push(webhook);
    Ok(Json(json))
}

async fn get_one(State(sim): State<SimTailnet>, Path(id): Path<String>) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    let idx = find(&state, &id)?;
    Ok(Json(state.webhooks[idx].to_json(false)))
}

#[derive(Deserialize)]
struct UpdateBody {
    subscriptions: Option<Vec<String>>,
}

/// Only `subscriptions` can change.
async fn update(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let body: UpdateBody = parse_json(&body)?;
    let subscriptions = body
        .subscriptions
        .ok_or_else(|| SimError::bad_request("subscriptions is required"))?;
    check_subscriptions(&subscriptions)?;
    let mut state = sim.inner.state();
    let idx = find(&state, &id)?;
    let hook = &mut state.webhooks[idx];
    hook.subscriptions = subscriptions;
    hook.last_modified = now();
    Ok(Json(hook.to_json(false)))
}

async fn delete(State(sim): State<SimTailnet>, Path(id): Path<String>) -> SimResult<StatusCode> {
    let mut state = sim.inner.state();
    let idx = find(&state, &id)?;
    state.webhooks.remove(idx);
    Ok(StatusCode::OK)
}

/// Accepted for asynchronous delivery (the sim sends nothing).
async fn test(State(sim): State<SimTailnet>, Path(id): Path<String>) -> SimResult<StatusCode> {
    let state = sim.inner.state();
    find(&state, &id)?;
    Ok(StatusCode::ACCEPTED)
}

async fn rotate(State(sim): State<SimTailnet>, Path(id): Path<String>) -> SimResult<Json<Value>> {
    let mut state = sim.inner.state();
    let idx = find(&state, &id)?;
    let secret = new_secret(&mut state);
    let hook = &mut state.webhooks[idx];
    hook.secret = secret;
    hook.last_modified = now();
    Ok(Json(hook.to_json(true)))
}

/// Events waiting for delivery, and the admin switches of the delivery worker.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pending: Vec<Value>,
    /// Held before each batch is sent (events arriving meanwhile join the batch).
    delay: std::time::Duration,
    /// Sign with a wrong key (the receiver must refuse).
    corrupt: bool,
    /// `(endpointId, HTTP status or 0 for no answer)` per attempt, for tests.
    attempts: Vec<(String, u16)>,
}

/// Attempts per batch and endpoint before it is dropped (Tailscale retries a bounded number
/// of times too).
const DELIVERY_ATTEMPTS: u32 = 5;

impl SimTailnet {
    /// Queues an event for the webhook endpoints subscribed to `event_type`.
    pub(crate) fn emit(&self, event_type: &str, message: impl Into<String>, data: Value) {
        let event = json!({
            "timestamp": self.inner.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "version": 1,
            "type": event_type,
            "tailnet": self.inner.identity.tailnet_id,
            "message": message.into(),
            "data": data,
        });
        self.inner.outbox().pending.push(event);
        self.inner.outbox_ready.notify_one();
    }

    /// How long the delivery worker waits before sending a batch (default none).
    pub fn set_webhook_delay(&self, delay: std::time::Duration) {
        self.inner.outbox().delay = delay;
    }

    /// Signs deliveries with a wrong key from now on (or again with the right one).
    pub fn corrupt_webhook_signatures(&self, corrupt: bool) {
        self.inner.outbox().corrupt = corrupt;
    }

    /// Every delivery attempt so far: `(endpointId, status)`, 0 when nothing answered.
    pub fn webhook_attempts(&self) -> Vec<(String, u16)> {
        self.inner.outbox().attempts.clone()
    }

    /// Delivers queued events until the tailnet is dropped: batched, signed with each
    /// endpoint's secret, retried with back-off on a non-2xx answer.
    pub(crate) async fn deliver_webhooks(self) {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("a plain HTTP client");
        loop {
            self.inner.outbox_ready.notified().await;
            let delay = self.inner.outbox().delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let batch = std::mem::take(&mut self.inner.outbox().pending);
            if batch.is_empty() {
                continue;
            }
            // Chat integrations (Slack, ...) get formatted messages from Tailscale, not these
            // signed JSON events: the sim does not model them.
            let hooks: Vec<Webhook> = self
                .inner
                .state()
                .webhooks
                .iter()
                .filter(|h| h.provider_type.is_none())
                .cloned()
                .collect();
            // Endpoints are independent: a slow one does not hold up the others.
            let deliveries = hooks.iter().map(|hook| {
                let events: Vec<&Value> = batch
                    .iter()
                    .filter(|e| {
                        let kind = e["type"].as_str().unwrap_or_default();
                        hook.subscriptions.iter().any(|s| s == kind)
                    })
                    .collect();
                let (sim, client) = (self.clone(), client.clone());
                async move {
                    if !events.is_empty() {
                        sim.deliver(&client, hook, &events).await;
                    }
                }
            });
            futures::future::join_all(deliveries).await;
        }
    }

    async fn deliver(&self, client: &reqwest::Client, hook: &Webhook, events: &[&Value]) {
        let body = serde_json::to_vec(events).unwrap_or_default();
        for attempt in 0..DELIVERY_ATTEMPTS {
            let corrupt = self.inner.outbox().corrupt;
            let secret = if corrupt {
                Secret::new("not-the-endpoint-secret")
            } else {
                hook.secret.clone()
            };
            let signature =
                crate::webhook::signature::sign(&secret, self.inner.now().timestamp(), &body);
            let answer = client
                .post(&hook.endpoint_url)
                .header("Content-Type", "application/json")
                .header(crate::webhook::signature::HEADER, signature)
                .body(body.clone())
                .send()
                .await;
            let status = answer.map(|r| r.status().as_u16()).unwrap_or(0);
            self.inner
                .outbox()
                .attempts
                .push((hook.endpoint_id.clone(), status));
            if (200..300).contains(&status) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
        }
    }
}
