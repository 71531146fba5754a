//! Webhook endpoints: Tailscale pushes tailnet events (`policyUpdate`, `node*`, …) to them,
//! signed with a per-endpoint secret.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::client::{ApiRequest, TailscaleClient};
use super::error::{ApiError, Result};
use super::wire::{non_empty, nullable, timestamp};
use crate::error::Category;
use crate::secret::Secret;

const WEBHOOK: &str = "/webhooks/{endpointId}";

/// A webhook endpoint. The signing secret is never part of it: it appears only in
/// [`CreatedWebhook::secret`], on create and rotate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Webhook {
    #[serde(deserialize_with = "nullable")]
    pub endpoint_id: String,
    #[serde(deserialize_with = "nullable")]
    pub endpoint_url: String,
    /// `slack`, `mattermost`, `googlechat`, `discord`, or `None` for a generic receiver.
    #[serde(
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub provider_type: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub creator_login_name: String,
    #[serde(with = "timestamp", skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    #[serde(with = "timestamp", skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<DateTime<Utc>>,
    /// Event names, e.g. `policyUpdate`, `nodeCreated`.
    #[serde(deserialize_with = "nullable")]
    pub subscriptions: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateWebhookRequest {
    pub endpoint_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_type: Option<String>,
    pub subscriptions: Vec<String>,
}

/// A webhook with its signing secret (for `Tailscale-Webhook-Signature`), shown only once.
#[derive(Debug, Clone)]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    pub secret: Secret,
}

#[derive(Deserialize)]
struct WebhookList {
    #[serde(default, deserialize_with = "nullable")]
    webhooks: Vec<Webhook>,
}

/// Splits the one-time `secret` from the rest of a create/rotate response.
fn split_secret(value: serde_json::Value, endpoint: &str) -> Result<CreatedWebhook> {
    let serde_json::Value::Object(mut object) = value else {
        return Err(ApiError::new(
            Category::Internal,
            endpoint,
            "the webhook response is not an object",
        ));
    };
    let secret = object.remove("secret");
    let webhook: Webhook =
        serde_json::from_value(serde_json::Value::Object(object)).map_err(|err| {
            ApiError::new(
                Category::Internal,
                endpoint,
                format!("cannot decode the webhook: {err}"),
            )
        })?;
    match secret {
        Some(serde_json::Value::String(secret)) if !secret.is_empty() => Ok(CreatedWebhook {
            webhook,
            secret: Secret::new(secret),
        }),
        _ => Err(ApiError::new(
            Category::Internal,
            endpoint,
            format!(
                "the response for webhook {} does not include its secret",
                webhook.endpoint_id
            ),
        )),
    }
}

impl TailscaleClient {
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>> {
        let request = ApiRequest::get("/tailnet/{tailnet}/webhooks");
        Ok(self.call_json::<WebhookList>(request).await?.webhooks)
    }

    /// Registers an endpoint. Not retried on ambiguous failures, so it is never created twice.
    pub async fn create_webhook(&self, request: &CreateWebhookRequest) -> Result<CreatedWebhook> {
        let request = ApiRequest::post("/tailnet/{tailnet}/webhooks")
            .json(request)?
            .not_idempotent()
            .secret_in_response();
        let endpoint = request.endpoint();
        split_secret(self.call_json(request).await?, &endpoint)
    }

    pub async fn get_webhook(&self, endpoint_id: &str) -> Result<Webhook> {
        self.call_json(ApiRequest::get(WEBHOOK).param(endpoint_id))
            .await
    }

    /// Replaces the endpoint's event subscriptions (the only mutable part of a webhook).
    pub async fn update_webhook_subscriptions(
        &self,
        endpoint_id: &str,
        subscriptions: &[String],
    ) -> Result<Webhook> {
        let body = serde_json::json!({ "subscriptions": subscriptions });
        self.call_json(ApiRequest::patch(WEBHOOK).param(endpoint_id).json(&body)?)
            .await
    }

    /// Deletes an endpoint. One that is already gone (404) is success.
    pub async fn delete_webhook(&self, endpoint_id: &str) -> Result<()> {
        self.call_delete(ApiRequest::delete(WEBHOOK).param(endpoint_id))
            .await
    }

    /// Asks Tailscale to send a test event (asynchronously; the API answers 202).
    pub async fn test_webhook(&self, endpoint_id: &str) -> Result<()> {
        self.call_empty(ApiRequest::post("/webhooks/{endpointId}/test").param(endpoint_id))
            .await
    }

    /// Issues a new signing secret; the old one stops being used.
    pub async fn rotate_webhook_secret(&self, endpoint_id: &str) -> Result<CreatedWebhook> {
        let request = ApiRequest::post("/webhooks/{endpointId}/rotate")
            .param(endpoint_id)
            .secret_in_response();
        let endpoint = request.endpoint();
        split_secret(self.call_json(request).await?, &endpoint)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn create_and_rotate_responses_split_out_the_secret() {
        let value = json!({
            "endpointId": "e1", "endpointUrl": "https://hooks.example.com/ts", "providerType": "",
            "creatorLoginName": "op@example.com", "created": "2024-01-01T00:00:00Z", "lastModified": "",
            "subscriptions": ["policyUpdate", "nodeCreated"], "secret": "tskey-webhook-s3cr3t"
        });
        let created = split_secret(value, "POST /tailnet/{tailnet}/webhooks").unwrap();
        assert_eq!(created.secret.expose(), "tskey-webhook-s3cr3t");
        assert_eq!(
            created.webhook.subscriptions,
            ["policyUpdate", "nodeCreated"]
        );
        assert_eq!(created.webhook.last_modified, None);
        assert_eq!(created.webhook.provider_type, None);
        let shown = format!(
            "{created:?} {}",
            serde_json::to_string(&created.webhook).unwrap()
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn a_missing_secret_is_an_error() {
        let err = split_secret(
            json!({"endpointId": "e1"}),
            "POST /webhooks/{endpointId}/rotate",
        )
        .unwrap_err();
        assert!(err.message.contains("e1"));
    }

    #[test]
    fn create_requests_omit_a_missing_provider() {
        let request = CreateWebhookRequest {
            endpoint_url: "https://hooks.example.com".into(),
            provider_type: None,
            subscriptions: vec!["policyUpdate".into()],
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"endpointUrl": "https://hooks.example.com", "subscriptions": ["policyUpdate"]})
        );
    }
}
