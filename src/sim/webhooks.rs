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

pub const EVENTS: &[&str] = &[
    "nodeCreated",
    "nodeNeedsApproval",
    "nodeApproved",
    "nodeKeyExpiringInOneDay",
    "nodeKeyExpired",
    "nodeDeleted",
    "nodeSigned",
    "nodeNeedsSignature",
    "policyUpdate",
    "userCreated",
    "userNeedsApproval",
    "userSuspended",
    "userRestored",
    "userDeleted",
    "userApproved",
    "userRoleUpdated",
    "subnetIPForwardingNotEnabled",
    "exitNodeIPForwardingNotEnabled",
];

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
