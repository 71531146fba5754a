//! The I/O at the edge of a rotation, shared by the controller and file mode: minting a
//! marked credential and revoking one.
use crate::reconcile::key_rotation::{KeyInput, description, lifetimes};
use crate::resources::ReconcileError;
use crate::resources::key_rotation_policy::KeyType;
use crate::snapshot::{Area, TailnetSnapshots};
use crate::tailscale::{ApiError, CreateAuthKeyRequest, CreateOAuthClientRequest, CreatedKey};

/// Mints the credential, marked with the policy's marker; refusals name the field and fix.
pub async fn mint(
    snapshots: &TailnetSnapshots,
    input: &KeyInput,
) -> Result<CreatedKey, ReconcileError> {
    let spec = &input.spec;
    let description = description(&input.marker, &input.key);
    let lifetimes = lifetimes(spec)?;
    let created = match spec.key_type {
        KeyType::Auth => {
            snapshots
                .client()
                .create_auth_key(&CreateAuthKeyRequest {
                    reusable: spec.reusable,
                    ephemeral: spec.ephemeral,
                    preauthorized: spec.preauthorized,
                    tags: spec.tags.clone(),
                    expiry_seconds: Some(lifetimes.expiry.as_secs()),
                    description: Some(description),
                })
                .await
        }
        KeyType::OauthClient => {
            snapshots
                .client()
                .create_oauth_client(&CreateOAuthClientRequest {
                    scopes: spec.scopes.clone(),
                    tags: spec.tags.clone(),
                    description,
                })
                .await
        }
    };
    snapshots.record_write(Area::Keys);
    created.map_err(|err| mint_error(input.spec.key_type, err))
}

/// The API's refusals as errors naming the field and the fix.
fn mint_error(key_type: KeyType, err: ApiError) -> ReconcileError {
    let scope = match key_type {
        KeyType::Auth => "auth_keys",
        KeyType::OauthClient => "oauth_keys",
    };
    match err.status {
        Some(400) if err.message.contains("tags") => ReconcileError::invalid(
            "spec.tags",
            format!(
                "Tailscale refused the tags: {}; a credential minted by an OAuth client must \
                 carry tags that client owns (tagOwners in the Base TailnetPolicy)",
                err.message
            ),
        ),
        Some(400) => ReconcileError::invalid(
            "spec",
            format!("Tailscale refused the credential: {}", err.message),
        ),
        Some(403) => ReconcileError::Credentials {
            message: format!(
                "the ManagedTailnet's credentials may not mint this credential ({}): give its \
                 OAuth client the {scope} scope",
                err.message
            ),
        },
        _ => ReconcileError::Api(err),
    }
}

/// Revokes a credential; one already gone (404) is success (the client treats it so).
pub async fn revoke(snapshots: &TailnetSnapshots, id: &str) -> Result<(), ReconcileError> {
    let revoked = snapshots.client().delete_key(id).await;
    snapshots.record_write(Area::Keys);
    Ok(revoked?)
}
