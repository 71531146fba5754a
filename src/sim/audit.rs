//! The configuration audit log: every console edit (by the console actor a test sets) and API
//! write the sim records, served at `GET /api/v2/tailnet/{tailnet}/logging/configuration`
//! (`start` and `end` required, `target` matched against any part of the target).
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::{SimError, SimResult};
use super::{SimTailnet, check_tailnet};

pub(crate) fn routes() -> Router<SimTailnet> {
    Router::new().route("/api/v2/tailnet/{tailnet}/logging/configuration", get(list))
}

/// Who edits in the admin console: `(login name, display name)`.
#[derive(Debug, Clone)]
pub struct ConsoleActor {
    pub login_name: String,
    pub display_name: String,
}

impl SimTailnet {
    /// Who the next console edits are made by (default: the tailnet's owner).
    pub fn set_console_actor(&self, login_name: &str, display_name: &str) {
        self.inner.state().console_actor = Some(ConsoleActor {
            login_name: login_name.to_owned(),
            display_name: display_name.to_owned(),
        });
    }

    /// Records a console edit of `property` of the tailnet (`target_type` `TAILNET`) or of a
    /// node (`NODE`, `target` its id and name).
    pub(crate) fn audit_console(&self, target: Value, property: &str, action: &str) {
        let actor = {
            let state = self.inner.state();
            let (login, display) = match &state.console_actor {
                Some(a) => (a.login_name.clone(), a.display_name.clone()),
                None => (state.api_key_owner.clone(), String::new()),
            };
            json!({"id": "uConsole", "type": "USER", "loginName": login, "displayName": display})
        };
        self.audit("ADMIN_CONSOLE", actor, target, property, action);
    }

    /// Records an API write by `caller` (a user token acts as its owner; an OAuth client or
    /// federated identity by its key id).
    pub(crate) fn audit_api(&self, caller: &Caller, target: Value, property: &str, action: &str) {
        let actor = match caller {
            Caller::ApiKey { login } => {
                json!({"id": "uApiKeyOwner", "type": "USER", "loginName": login, "displayName": ""})
            }
            Caller::OAuth { client_id, .. } => {
                json!({"id": client_id, "type": "OAUTH_CLIENT", "loginName": "", "displayName": ""})
            }
        };
        self.audit("CONFIG_API", actor, target, property, action);
    }

    /// The tailnet as an audit target.
    pub(crate) fn tailnet_target(&self) -> Value {
        json!({"id": self.inner.identity.tailnet_id, "name": self.inner.identity.tailnet_id,
               "type": "TAILNET"})
    }

    fn audit(&self, origin: &str, actor: Value, mut target: Value, property: &str, action: &str) {
        target["property"] = json!(property);
        let now = self.inner.now();
        let mut state = self.inner.state();
        let group = format!("{:032x}", state.audit_log.len() + 1);
        state.audit_log.push(json!({
            "eventTime": now.to_rfc3339_opts(SecondsFormat::Micros, true),
            "type": "CONFIG",
            "deferredAt": "0001-01-01T00:00:00Z",
            "eventGroupID": group,
            "origin": origin,
            "actor": actor,
            "target": target,
            "action": action,
        }));
    }
}

async fn list(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let bound = |name: &str| -> SimResult<DateTime<Utc>> {
        let text = query
            .get(name)
            .ok_or_else(|| SimError::bad_request(format!("{name} is required")))?;
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| SimError::bad_request(format!("{name} is not an RFC 3339 time")))
    };
    let (start, end) = (bound("start")?, bound("end")?);
    let logs: Vec<&Value> = state
        .audit_log
        .iter()
        .filter(|entry| {
            entry["eventTime"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t >= start && t <= end)
        })
        .filter(|entry| match query.get("target") {
            Some(wanted) => entry["target"].to_string().contains(wanted.as_str()),
            None => true,
        })
        .collect();
    Ok(Json(
        json!({"version": "1.1", "tailnet": state.tailnet_id, "logs": logs}),
    ))
}
