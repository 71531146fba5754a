//! Tailnet settings: GET and partial PATCH.
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::auth::Caller;
use super::error::{SimResult, parse_json};
use super::state::Settings;
use super::{SimTailnet, check_tailnet};

pub(crate) fn routes() -> Router<SimTailnet> {
    Router::new().route(
        "/api/v2/tailnet/{tailnet}/settings",
        get(get_settings).patch(patch_settings),
    )
}

async fn get_settings(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
) -> SimResult<Json<Settings>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    Ok(Json(state.settings.clone()))
}

/// Only the fields present in the body change; the response is the whole settings object.
async fn patch_settings(
    State(sim): State<SimTailnet>,
    Extension(caller): Extension<Caller>,
    Path(tailnet): Path<String>,
    body: Bytes,
) -> SimResult<Json<Settings>> {
    let patch: Settings = parse_json(&body)?;
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let mut updated = state.settings.clone();
    updated.apply(patch)?;
    state.settings = updated;
    let written = state.settings.clone();
    drop(state);
    sim.audit_api(&caller, sim.tailnet_target(), "FEATURE", "UPDATE");
    Ok(Json(written))
}
