//! Users: list (filtered by `type` and `role`) and get.
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::{SimError, SimResult};
use super::{SimTailnet, check_tailnet};

pub(crate) fn routes() -> Router<SimTailnet> {
    Router::new()
        .route("/api/v2/tailnet/{tailnet}/users", get(list))
        .route("/api/v2/users/{userId}", get(get_one))
}

const TYPES: &[&str] = &["member", "shared", "all"];
const ROLES: &[&str] = &[
    "owner",
    "member",
    "admin",
    "it-admin",
    "network-admin",
    "billing-admin",
    "auditor",
    "all",
];

/// `type` defaults to `member` (shared-in users only with `shared`/`all`), `role` to `all`.
async fn list(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> SimResult<Json<Value>> {
    let user_type = query.get("type").map_or("member", String::as_str);
    let role = query.get("role").map_or("all", String::as_str);
    if !TYPES.contains(&user_type) {
        return Err(SimError::bad_request(format!(
            "invalid type {user_type:?}: want member, shared or all"
        )));
    }
    if !ROLES.contains(&role) {
        return Err(SimError::bad_request(format!("invalid role {role:?}")));
    }
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let counts = state.device_counts();
    let users: Vec<Value> = state
        .users
        .iter()
        .filter(|u| user_type == "all" || u.user_type == user_type)
        .filter(|u| role == "all" || u.role == role)
        .map(|u| {
            let count = counts.get(u.login_name.as_str()).copied().unwrap_or(0);
            u.to_json(&state.tailnet_id, count)
        })
        .collect();
    Ok(Json(json!({ "users": users })))
}

async fn get_one(
    State(sim): State<SimTailnet>,
    Path(user_id): Path<String>,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    let user = state
        .users
        .iter()
        .find(|u| u.id == user_id)
        .ok_or_else(|| SimError::not_found("user not found"))?;
    let count = state
        .devices
        .iter()
        .filter(|d| d.user == user.login_name)
        .count();
    Ok(Json(user.to_json(&state.tailnet_id, count)))
}
