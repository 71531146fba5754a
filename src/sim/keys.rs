//! Keys: auth keys (secret shown only in the create response), OAuth clients and federated
//! identities, listing, revocation.
use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Duration;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::auth::Caller;
use super::error::{SimError, SimResult, parse_json};
use super::policy::check_tags;
use super::state::{Key, State as Tailnet};
use super::{SimTailnet, check_tailnet};

pub(crate) fn routes() -> Router<SimTailnet> {
    Router::new()
        .route("/api/v2/tailnet/{tailnet}/keys", get(list).post(create))
        .route(
            "/api/v2/tailnet/{tailnet}/keys/{keyId}",
            get(get_one).delete(delete).put(update),
        )
}

/// Auth keys default to, and may not exceed, 90 days.
pub const MAX_EXPIRY_SECONDS: i64 = 90 * 86_400;

async fn list(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    Extension(caller): Extension<Caller>,
) -> SimResult<Json<Value>> {
    let all = query.get("all").is_some_and(|v| v == "true");
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let now = sim.inner.now();
    let owner_id = owner_user_id(&state, &caller);
    // Only active keys are listed. Without `all`, a user's token sees that user's keys and an
    // OAuth-derived token sees the OAuth clients.
    let keys: Vec<Value> = state
        .keys
        .iter()
        .filter(|k| !k.is_invalid(now))
        .filter(|k| {
            all || match &caller {
                Caller::ApiKey { .. } => k.user_id == owner_id,
                Caller::OAuth { .. } => k.key_type == "client",
            }
        })
        .map(|k| k.to_json(now))
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

/// The user id keys created by `caller` belong to (empty for trust credentials).
fn owner_user_id(state: &Tailnet, caller: &Caller) -> String {
    match caller {
        Caller::ApiKey { login } => state
            .users
            .iter()
            .find(|u| &u.login_name == login)
            .map(|u| u.id.clone())
            .unwrap_or_default(),
        Caller::OAuth { .. } => String::new(),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateBody {
    key_type: Option<String>,
    description: Option<String>,
    capabilities: Option<Value>,
    expiry_seconds: Option<i64>,
    scopes: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    issuer: Option<String>,
    subject: Option<String>,
    audience: Option<String>,
    custom_claim_rules: Option<Value>,
}

/// ≤50 characters of letters, digits, spaces and hyphens.
fn check_description(description: &str) -> SimResult<()> {
    let valid = description.chars().count() <= 50
        && description
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(SimError::bad_request(format!(
            "invalid description {description:?}: at most 50 letters, digits, spaces and hyphens"
        )))
    }
}

fn expiry_seconds(requested: Option<i64>) -> SimResult<i64> {
    match requested {
        None | Some(0) => Ok(MAX_EXPIRY_SECONDS),
        Some(s) if s < 0 => Err(SimError::bad_request("expirySeconds must not be negative")),
        Some(s) if s > MAX_EXPIRY_SECONDS => Err(SimError::bad_request(format!(
            "expirySeconds {s} exceeds the maximum of {MAX_EXPIRY_SECONDS} (90 days)"
        ))),
        Some(s) => Ok(s),
    }
}

/// Normalizes `capabilities.devices.create` to explicit booleans and a tag list.
fn device_create(capabilities: Option<&Value>) -> SimResult<(Map<String, Value>, Vec<String>)> {
    let devices = capabilities.and_then(|c| c.get("devices")).ok_or_else(|| {
        SimError::bad_request("auth keys need capabilities.devices (e.g. {\"devices\": {}})")
    })?;
    let create = devices.get("create").cloned().unwrap_or_else(|| json!({}));
    let flag = |name: &str| -> SimResult<bool> {
        match create.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(SimError::bad_request(format!(
                "capabilities.devices.create.{name} must be a boolean"
            ))),
        }
    };
    let tags: Vec<String> = match create.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            SimError::bad_request("capabilities.devices.create.tags must be a list of strings")
        })?,
    };
    let mut normalized = Map::new();
    normalized.insert("reusable".into(), json!(flag("reusable")?));
    normalized.insert("ephemeral".into(), json!(flag("ephemeral")?));
    normalized.insert("preauthorized".into(), json!(flag("preauthorized")?));
    normalized.insert("tags".into(), json!(tags));
    Ok((normalized, tags))
}

async fn create(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let body: CreateBody = parse_json(&body)?;
    let description = body.description.clone().unwrap_or_default();
    check_description(&description)?;
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let key_type = body.key_type.clone().unwrap_or_else(|| "auth".into());
    let now = sim.inner.now();
    let id = format!("k{}CNTRL", state.alnum(7));
    let mut key = Key {
        description,
        user_id: owner_user_id(&state, &caller),
        ..Key::new(id.clone(), &key_type, now)
    };
    let secret = match key_type.as_str() {
        "auth" => {
            let (create, tags) = device_create(body.capabilities.as_ref())?;
            if matches!(caller, Caller::OAuth { .. }) && tags.is_empty() {
                return Err(SimError::bad_request(
                    "auth keys created with an OAuth client must have tags",
                ));
            }
            check_tags(&state, Some(&caller), &tags)?;
            let secs = expiry_seconds(body.expiry_seconds)?;
            key.expiry_seconds = Some(secs);
            key.expires = Some(now + Duration::seconds(secs));
            key.capabilities = Some(json!({"devices": {"create": create}}));
            let secret = format!("tskey-auth-{id}-{}", state.alnum(32));
            key.secret_hash = Some(super::admin::secret_hash(&secret));
            Some(secret)
        }
        "client" | "federated" => {
            fill_trust_credential(&state, &caller, &mut key, &body)?;
            (key_type == "client").then(|| format!("tskey-client-{id}-{}", state.alnum(32)))
        }
        other => {
            return Err(SimError::bad_request(format!(
                "invalid keyType {other:?}: want auth, client or federated"
            )));
        }
    };
    let mut response = key.to_json(now);
    if let (Some(secret), Some(obj)) = (secret, response.as_object_mut()) {
        // The secret appears here and nowhere else, ever.
        obj.insert("key".into(), json!(secret));
    }
    state.keys.push(key);
    Ok(Json(response))
}

/// Scopes, tags and (federated) issuer/subject/audience of an OAuth client or federated identity.
fn fill_trust_credential(
    state: &Tailnet,
    caller: &Caller,
    key: &mut Key,
    body: &CreateBody,
) -> SimResult<()> {
    let scopes = body.scopes.clone().unwrap_or_default();
    if scopes.is_empty() {
        return Err(SimError::bad_request(
            "trust credentials need at least one scope",
        ));
    }
    let tags = body.tags.clone().unwrap_or_default();
    let needs_tags = scopes
        .iter()
        .any(|s| matches!(s.as_str(), "devices:core" | "auth_keys" | "all"));
    if needs_tags && tags.is_empty() {
        return Err(SimError::bad_request(
            "tags are required when the scopes include devices:core or auth_keys",
        ));
    }
    check_tags(state, Some(caller), &tags)?;
    key.scopes = scopes;
    key.tags = tags;
    key.user_id = String::new();
    if key.key_type == "federated" {
        let issuer = body
            .issuer
            .clone()
            .filter(|i| i.starts_with("https://"))
            .ok_or_else(|| SimError::bad_request("federated identities need an https:// issuer"))?;
        let subject = body
            .subject
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SimError::bad_request("federated identities need a subject"))?;
        key.audience = Some(
            body.audience
                .clone()
                .unwrap_or_else(|| format!("api.tailscale.com/{}", key.id)),
        );
        key.issuer = Some(issuer);
        key.subject = Some(subject);
        key.custom_claim_rules = body.custom_claim_rules.clone();
    }
    Ok(())
}

async fn get_one(
    State(sim): State<SimTailnet>,
    Path((tailnet, key_id)): Path<(String, String)>,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let key = state
        .keys
        .iter()
        .find(|k| k.id == key_id)
        .ok_or_else(|| SimError::not_found("key not found"))?;
    Ok(Json(key.to_json(sim.inner.now())))
}

/// Revokes the key: later GETs show `invalid: true` and `revoked`; deleting it again is a 404.
async fn delete(
    State(sim): State<SimTailnet>,
    Path((tailnet, key_id)): Path<(String, String)>,
) -> SimResult<StatusCode> {
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let key = state
        .keys
        .iter_mut()
        .find(|k| k.id == key_id && k.revoked.is_none())
        .ok_or_else(|| SimError::not_found("key not found"))?;
    let now = sim.inner.now();
    key.revoked = Some(now);
    key.updated = now;
    Ok(StatusCode::OK)
}

/// Updates an OAuth client or federated identity (auth keys cannot be changed).
async fn update(
    State(sim): State<SimTailnet>,
    Path((tailnet, key_id)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let body: CreateBody = parse_json(&body)?;
    if let Some(d) = &body.description {
        check_description(d)?;
    }
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let idx = state
        .keys
        .iter()
        .position(|k| k.id == key_id && k.revoked.is_none())
        .ok_or_else(|| SimError::not_found("key not found"))?;
    let mut key = state.keys[idx].clone();
    if !matches!(key.key_type.as_str(), "client" | "federated") {
        return Err(SimError::bad_request(
            "only OAuth clients and federated identities can be updated",
        ));
    }
    let merged = CreateBody {
        scopes: body.scopes.clone().or(Some(key.scopes.clone())),
        tags: body.tags.clone().or(Some(key.tags.clone())),
        issuer: body.issuer.clone().or(key.issuer.clone()),
        subject: body.subject.clone().or(key.subject.clone()),
        audience: body.audience.clone().or(key.audience.clone()),
        custom_claim_rules: body
            .custom_claim_rules
            .clone()
            .or(key.custom_claim_rules.clone()),
        ..CreateBody::default()
    };
    fill_trust_credential(&state, &caller, &mut key, &merged)?;
    if let Some(d) = body.description {
        key.description = d;
    }
    let now = sim.inner.now();
    key.updated = now;
    let response = key.to_json(now);
    state.keys[idx] = key;
    Ok(Json(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_short_and_plain() {
        assert!(check_description("ci runners - prod 2").is_ok());
        assert!(check_description("").is_ok());
        assert!(check_description("under_score").is_err());
        assert!(check_description(&"x".repeat(51)).is_err());
        assert!(check_description(&"x".repeat(50)).is_ok());
    }

    #[test]
    fn expiry_defaults_to_and_is_capped_at_ninety_days() {
        assert_eq!(expiry_seconds(None).unwrap(), MAX_EXPIRY_SECONDS);
        assert_eq!(expiry_seconds(Some(3600)).unwrap(), 3600);
        assert!(expiry_seconds(Some(MAX_EXPIRY_SECONDS + 1)).is_err());
        assert!(expiry_seconds(Some(-1)).is_err());
    }

    #[test]
    fn device_capabilities_are_normalized() {
        let (create, tags) = device_create(Some(&json!({"devices": {}}))).unwrap();
        assert_eq!(
            Value::Object(create),
            json!({"reusable": false, "ephemeral": false, "preauthorized": false, "tags": []})
        );
        assert!(tags.is_empty());
        assert!(device_create(None).is_err());
        assert!(device_create(Some(&json!({"devices": {"create": {"reusable": "yes"}}}))).is_err());
    }
}
