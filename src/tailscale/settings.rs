//! ManagedTailnet-wide settings (`GET`/`PATCH /tailnet/{tailnet}/settings`).
use serde::{Deserialize, Serialize};

use super::client::{ApiRequest, TailscaleClient};
use super::error::Result;

const SETTINGS: &str = "/tailnet/{tailnet}/settings";

/// The tailnet's settings. The booleans are nullable in the spec; `None` means the API did
/// not say (e.g. the credential lacks the scope for that field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TailnetSettings {
    /// Locks the console policy editor (the policy is managed elsewhere, e.g. by us).
    pub acls_externally_managed_on: Option<bool>,
    pub acls_external_link: Option<String>,
    pub devices_approval_on: Option<bool>,
    pub devices_auto_updates_on: Option<bool>,
    /// Node-key lifetime, 1–180 days.
    pub devices_key_duration_days: Option<u32>,
    pub users_approval_on: Option<bool>,
    /// `none`, `admin` or `member`.
    pub users_role_allowed_to_join_external_tailnets: Option<String>,
    pub network_flow_logging_on: Option<bool>,
    pub regional_routing_on: Option<bool>,
    pub posture_identity_collection_on: Option<bool>,
    /// HTTPS certificates (needed for Funnel).
    pub https_enabled: Option<bool>,
}

/// A partial update: only the fields that are `Some` are sent. Each field needs its own
/// scope (`httpsEnabled`: `networking_settings`; `acls*`: `policy_file`;
/// `networkFlowLoggingOn`: `logs:network`; the rest: `feature_settings`), so patch only
/// what you manage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TailnetSettingsPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acls_externally_managed_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acls_external_link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices_approval_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices_auto_updates_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices_key_duration_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_approval_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_role_allowed_to_join_external_tailnets: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_flow_logging_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regional_routing_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub posture_identity_collection_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_enabled: Option<bool>,
}

impl TailscaleClient {
    pub async fn get_settings(&self) -> Result<TailnetSettings> {
        self.call_json(ApiRequest::get(SETTINGS)).await
    }

    /// Changes only the fields set in `patch`; returns the resulting settings.
    pub async fn update_settings(&self, patch: &TailnetSettingsPatch) -> Result<TailnetSettings> {
        self.call_json(ApiRequest::patch(SETTINGS).json(patch)?)
            .await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patches_send_only_what_is_set() {
        let patch = TailnetSettingsPatch {
            https_enabled: Some(true),
            devices_approval_on: Some(false),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            json!({"devicesApprovalOn": false, "httpsEnabled": true})
        );
        assert_eq!(
            serde_json::to_value(TailnetSettingsPatch::default()).unwrap(),
            json!({})
        );
    }

    #[test]
    fn settings_tolerate_nulls_and_unknown_fields() {
        let settings: TailnetSettings = serde_json::from_value(json!({
            "aclsExternallyManagedOn": null, "httpsEnabled": true, "devicesKeyDurationDays": 180,
            "usersRoleAllowedToJoinExternalTailnets": "member", "futureSetting": "x"
        }))
        .unwrap();
        assert_eq!(settings.acls_externally_managed_on, None);
        assert_eq!(settings.https_enabled, Some(true));
        assert_eq!(settings.devices_key_duration_days, Some(180));
        assert_eq!(
            settings
                .users_role_allowed_to_join_external_tailnets
                .as_deref(),
            Some("member")
        );
    }
}
