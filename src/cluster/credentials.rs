//! A ManagedTailnet's credentials, read from the Secret it references (or, for workload
//! identity, where its token is mounted): for the ManagedTailnet
//! controller and for the MCP server's standalone cluster source. Values are trimmed and held in
//! the redacting [`Secret`]; errors name the Secret, the key and the field, never the value.
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::ResourceExt;
use kube::api::Api;

use crate::resources::{ManagedTailnet, ReconcileError};
use crate::secret::Secret;
use crate::tailscale::Credentials;

/// Reads the credentials from the referenced Secret.
pub async fn read_credentials(
    tailnet: &ManagedTailnet,
    client: &kube::Client,
) -> Result<Credentials, ReconcileError> {
    let spec = &tailnet.spec;
    if let Some(identity) = &spec.workload_identity {
        return Ok(Credentials::WorkloadIdentity {
            client_id: identity.client_id.clone(),
            token_file: identity.token_path.clone().into(),
            audience: Some(identity.audience.clone()),
        });
    }
    if let Some(oauth) = &spec.oauth_secret_ref {
        let secret =
            get_secret(client, &oauth.namespace, &oauth.name, "spec.oauthSecretRef").await?;
        let field = "spec.oauthSecretRef";
        return Ok(Credentials::OAuth {
            client_id: secret_value(&secret, &oauth.client_id_key, field)?
                .expose()
                .to_owned(),
            client_secret: secret_value(&secret, &oauth.client_secret_key, field)?,
        });
    }
    if let Some(key) = &spec.api_key_secret_ref {
        let field = "spec.apiKeySecretRef";
        let secret = get_secret(client, &key.namespace, &key.name, field).await?;
        return Ok(Credentials::ApiKey(secret_value(&secret, &key.key, field)?));
    }
    Err(ReconcileError::invalid(
        "spec",
        "set exactly one of spec.workloadIdentity (no secret in the cluster), \
         spec.oauthSecretRef (an OAuth client) or spec.apiKeySecretRef (an API key)",
    ))
}

/// The webhook signing secret `spec.webhook.secretRef` names, when webhooks are enabled.
pub async fn read_webhook_secret(
    tailnet: &ManagedTailnet,
    client: &kube::Client,
) -> Result<Option<Secret>, ReconcileError> {
    let Some(webhook) = tailnet.spec.webhook.as_ref().filter(|w| w.enabled) else {
        return Ok(None);
    };
    let Some(r) = &webhook.secret_ref else {
        return Err(ReconcileError::invalid(
            "spec.webhook.secretRef",
            "webhook.enabled needs the Secret holding the endpoint's signing secret",
        ));
    };
    let field = "spec.webhook.secretRef";
    let secret = get_secret(client, &r.namespace, &r.name, field).await?;
    Ok(Some(secret_value(&secret, &r.key, field)?))
}

async fn get_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    field: &str,
) -> Result<KubeSecret, ReconcileError> {
    Api::<KubeSecret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?
        .ok_or_else(|| {
            ReconcileError::not_found(
                format!("Secret {namespace}/{name}"),
                format!("referenced by {field}; create it, or fix {field}.name/namespace"),
            )
        })
}

/// The value under `key`, trimmed (a trailing newline from `kubectl create secret --from-file`
/// is common). Names the Secret and key when it is missing or unusable, never shows the value.
fn secret_value(secret: &KubeSecret, key: &str, field: &str) -> Result<Secret, ReconcileError> {
    let location = format!(
        "Secret {}/{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any()
    );
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| value.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|data| data.get(key))
                .map(|value| value.clone().into_bytes())
        })
        .ok_or_else(|| {
            ReconcileError::not_found(
                format!("key `{key}` in {location}"),
                format!("referenced by {field}; add the key to the Secret or fix the key name in {field}"),
            )
        })?;
    let text = String::from_utf8(bytes).map_err(|_| ReconcileError::Credentials {
        message: format!("key `{key}` in {location} is not UTF-8 text"),
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(ReconcileError::Credentials {
            message: format!("key `{key}` in {location} is empty"),
        });
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Category;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    #[test]
    fn secret_values_are_trimmed_and_missing_keys_named() {
        let mut secret = KubeSecret::default();
        secret.metadata.name = Some("ts-key".into());
        secret.metadata.namespace = Some("ops".into());
        secret.data = Some(BTreeMap::from([
            ("api_key".to_owned(), ByteString(b"tskey-api-x\n".to_vec())),
            ("blank".to_owned(), ByteString(b" \n".to_vec())),
        ]));
        assert_eq!(
            secret_value(&secret, "api_key", "f").unwrap().expose(),
            "tskey-api-x"
        );
        let missing = secret_value(&secret, "other", "spec.apiKeySecretRef").unwrap_err();
        assert_eq!(missing.category(), Category::NotFound);
        assert!(
            missing
                .to_string()
                .contains("key `other` in Secret ops/ts-key")
        );
        let blank = secret_value(&secret, "blank", "f").unwrap_err();
        assert_eq!(blank.category(), Category::Auth);
        assert!(!blank.to_string().contains("tskey"));
    }
}
