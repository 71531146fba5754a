//! Users of the tailnet (read-only here).
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::client::{ApiRequest, TailscaleClient};
use super::error::Result;
use super::wire::{nullable, timestamp};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    #[serde(deserialize_with = "nullable")]
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub display_name: String,
    /// The identity used in policies, e.g. `alice@example.com`.
    #[serde(deserialize_with = "nullable")]
    pub login_name: String,
    #[serde(deserialize_with = "nullable")]
    pub profile_pic_url: String,
    #[serde(deserialize_with = "nullable")]
    pub tailnet_id: String,
    #[serde(with = "timestamp", skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// `member` or `shared`.
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub user_type: String,
    /// `owner`, `member`, `admin`, `it-admin`, `network-admin`, `billing-admin`, `auditor`.
    #[serde(deserialize_with = "nullable")]
    pub role: String,
    /// `active`, `idle`, `suspended`, `needs-approval`, `over-billing-limit`.
    #[serde(deserialize_with = "nullable")]
    pub status: String,
    #[serde(deserialize_with = "nullable")]
    pub device_count: u64,
    #[serde(with = "timestamp", skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(deserialize_with = "nullable")]
    pub currently_connected: bool,
}

#[derive(Deserialize)]
struct UserList {
    #[serde(default, deserialize_with = "nullable")]
    users: Vec<User>,
}

impl TailscaleClient {
    /// The tailnet's users with the API's default filter (members, any role).
    pub async fn list_users(&self) -> Result<Vec<User>> {
        self.list_users_filtered(None, None).await
    }

    /// Users filtered by `user_type` (`member`, `shared`, `all`) and `role` (a role or `all`).
    pub async fn list_users_filtered(
        &self,
        user_type: Option<&str>,
        role: Option<&str>,
    ) -> Result<Vec<User>> {
        let mut request = ApiRequest::get("/tailnet/{tailnet}/users");
        if let Some(user_type) = user_type {
            request = request.query("type", user_type);
        }
        if let Some(role) = role {
            request = request.query("role", role);
        }
        Ok(self.call_json::<UserList>(request).await?.users)
    }

    pub async fn get_user(&self, id: &str) -> Result<User> {
        self.call_json(ApiRequest::get("/users/{userId}").param(id))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_decode_with_spec_names_and_empty_timestamps() {
        let list: UserList = serde_json::from_str(
            r#"{"users":[{"id":"u1","displayName":"Alice","loginName":"alice@example.com",
                "profilePicUrl":"","tailnetId":"T1","created":"2024-01-02T03:04:05Z","type":"member",
                "role":"admin","status":"active","deviceCount":3,"lastSeen":"","currentlyConnected":true,
                "unknown":[]}]}"#,
        )
        .unwrap();
        let user = &list.users[0];
        assert_eq!(user.login_name, "alice@example.com");
        assert_eq!(user.user_type, "member");
        assert_eq!(user.device_count, 3);
        assert!(user.created.is_some() && user.last_seen.is_none());
        assert!(user.currently_connected);
    }
}
