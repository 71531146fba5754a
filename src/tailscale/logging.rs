//! The configuration audit log (`GET /tailnet/{tailnet}/logging/configuration`): who changed
//! what, for attributing drift. Needs the `logs:configuration:read` scope.
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::client::{ApiRequest, TailscaleClient};
use super::error::Result;

/// One configuration change.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditLogEntry {
    /// RFC 3339.
    pub event_time: String,
    /// `ADMIN_CONSOLE`, `CONFIG_API`, ...
    pub origin: String,
    pub actor: AuditActor,
    pub target: AuditTarget,
    /// `CREATE`, `UPDATE`, `DELETE`, ...
    pub action: String,
    pub old: Value,
    pub new: Value,
}

/// Who made the change: a user, or an API client (`OAUTH_CLIENT`, whose id is the key id).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditActor {
    pub id: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub login_name: String,
    pub display_name: String,
}

/// What was changed: e.g. type `TAILNET` property `ACL` (the policy), `NODE` property `ACL_TAGS`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditTarget {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub property: String,
}

#[derive(Deserialize)]
struct AuditLogList {
    #[serde(default, deserialize_with = "super::wire::nullable")]
    logs: Vec<AuditLogEntry>,
}

impl TailscaleClient {
    /// The configuration changes between `start` and `end`, oldest first.
    pub async fn list_configuration_logs(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<AuditLogEntry>> {
        let request = ApiRequest::get("/tailnet/{tailnet}/logging/configuration")
            .query("start", start.to_rfc3339_opts(SecondsFormat::Secs, true))
            .query("end", end.to_rfc3339_opts(SecondsFormat::Secs, true));
        Ok(self.call_json::<AuditLogList>(request).await?.logs)
    }
}
