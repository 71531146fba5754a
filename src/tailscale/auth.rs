//! Credentials to bearer tokens. API keys are used as they are; OAuth clients (client-credentials
//! grant) and federated identities (an ID token exchanged) get short-lived access tokens, cached
//! and refreshed before they expire, with at most one token request in flight per client.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::debug;

use super::client::{ApiRequest, TailscaleClient};
use super::config::Credentials;
use super::error::{ApiError, Result};
use crate::error::Category;
use crate::secret::Secret;

const TOKEN_ENDPOINT: &str = "/oauth/token";
const TOKEN_EXCHANGE_ENDPOINT: &str = "/oauth/token-exchange";
/// Tokens from trust credentials live one hour; used when the response omits `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

pub(crate) enum Auth {
    ApiKey(Secret),
    OAuth(Box<OAuthTokens>),
}

impl Auth {
    pub(crate) fn new(credentials: Credentials, refresh_margin: Duration) -> Self {
        match credentials {
            Credentials::ApiKey(key) => Auth::ApiKey(key),
            Credentials::OAuth {
                client_id,
                client_secret,
            } => Auth::tokens(
                Grant::ClientCredentials {
                    client_id,
                    client_secret,
                },
                refresh_margin,
            ),
            Credentials::WorkloadIdentity {
                client_id,
                token_file,
                audience,
            } => Auth::tokens(
                Grant::TokenExchange {
                    client_id,
                    token_file,
                    audience,
                },
                refresh_margin,
            ),
        }
    }

    fn tokens(grant: Grant, refresh_margin: Duration) -> Self {
        Auth::OAuth(Box::new(OAuthTokens {
            grant,
            refresh_margin,
            state: Mutex::new(TokenState::default()),
            fetches: AtomicU64::new(0),
        }))
    }

    /// The token to send as `Authorization: Bearer`.
    pub(crate) async fn bearer(&self, client: &TailscaleClient) -> Result<Secret> {
        match self {
            Auth::ApiKey(key) => Ok(key.clone()),
            Auth::OAuth(tokens) => tokens.token(client).await,
        }
    }

    /// Whether a 401 may be cured by fetching a new token.
    pub(crate) fn refreshable(&self) -> bool {
        matches!(self, Auth::OAuth(_))
    }

    /// Forgets `rejected` if it is still the cached token, so the next call fetches another.
    pub(crate) async fn invalidate(&self, rejected: &Secret) {
        if let Auth::OAuth(tokens) = self {
            let mut state = tokens.state.lock().await;
            if state
                .token
                .as_ref()
                .is_some_and(|cached| cached.access_token == *rejected)
            {
                state.token = None;
            }
        }
    }
}

/// How an access token is obtained.
enum Grant {
    /// `POST /oauth/token` with the OAuth client's id and secret.
    ClientCredentials {
        client_id: String,
        client_secret: Secret,
    },
    /// `POST /oauth/token-exchange` with the federated identity's id and the ID token read
    /// from `token_file` at each exchange (the kubelet rewrites projected tokens in place).
    TokenExchange {
        client_id: String,
        token_file: PathBuf,
        audience: Option<String>,
    },
}

pub(crate) struct OAuthTokens {
    grant: Grant,
    refresh_margin: Duration,
    /// Held across the token request: callers that find no fresh token queue here, and the
    /// first one fetches while the rest wait for its result.
    state: Mutex<TokenState>,
    /// Completed token requests, read before queueing so a waiter can tell whether a fetch
    /// finished (and possibly failed) while it waited.
    fetches: AtomicU64,
}

#[derive(Default)]
struct TokenState {
    token: Option<CachedToken>,
    last_failure: Option<ApiError>,
}

struct CachedToken {
    access_token: Secret,
    refresh_at: Instant,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: Secret,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl OAuthTokens {
    async fn token(&self, client: &TailscaleClient) -> Result<Secret> {
        let fetches_before = self.fetches.load(Ordering::Acquire);
        let mut state = self.state.lock().await;
        if let Some(cached) = state
            .token
            .as_ref()
            .filter(|cached| Instant::now() < cached.refresh_at)
        {
            return Ok(cached.access_token.clone());
        }
        // A fetch failed while we queued: share its error rather than hammering the token
        // endpoint once per waiter.
        if self.fetches.load(Ordering::Acquire) != fetches_before {
            if let Some(err) = &state.last_failure {
                return Err(err.clone());
            }
        }
        let result = self.fetch(client).await;
        self.fetches.fetch_add(1, Ordering::Release);
        match result {
            Ok(cached) => {
                let token = cached.access_token.clone();
                state.token = Some(cached);
                state.last_failure = None;
                Ok(token)
            }
            Err(err) => {
                state.token = None;
                state.last_failure = Some(err.clone());
                Err(err)
            }
        }
    }

    async fn fetch(&self, client: &TailscaleClient) -> Result<CachedToken> {
        let (request, refused) = match &self.grant {
            Grant::ClientCredentials {
                client_id,
                client_secret,
            } => (
                ApiRequest::post(TOKEN_ENDPOINT).form(
                    vec![
                        ("grant_type", "client_credentials".to_owned()),
                        ("client_id", client_id.clone()),
                    ],
                    vec![("client_secret", client_secret.clone())],
                ),
                "OAuth client credentials rejected",
            ),
            Grant::TokenExchange {
                client_id,
                token_file,
                audience,
            } => {
                let jwt = read_id_token(token_file, audience.as_deref()).await?;
                (
                    ApiRequest::post(TOKEN_EXCHANGE_ENDPOINT)
                        .form(vec![("client_id", client_id.clone())], vec![("jwt", jwt)]),
                    "workload identity token exchange refused (check the federated identity's \
                     issuer, subject and audience against the token's iss, sub and aud)",
                )
            }
        };
        let request = request.secret_in_response();
        let endpoint = request.endpoint();
        let requested_at = Instant::now();
        let response = client
            .call_unauthenticated(&request)
            .await
            .map_err(|mut err| {
                // The token endpoints say 400 or 401 for a wrong client id, secret or ID token.
                if matches!(err.status, Some(400 | 401 | 403)) {
                    err.category = Category::Auth;
                    err.message = format!("{refused}: {}", err.message);
                }
                err
            })?;
        let parsed: TokenResponse = response.decode(&endpoint, true)?;
        if parsed.access_token.is_empty() {
            let mut err = ApiError::new(
                Category::Auth,
                endpoint,
                "the token response has an empty access_token",
            );
            err.status = Some(response.status);
            return Err(err);
        }
        let lifetime = parsed
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        debug!(
            lifetime_s = lifetime.as_secs(),
            endpoint = %endpoint,
            "fetched an access token"
        );
        Ok(CachedToken {
            access_token: parsed.access_token,
            refresh_at: requested_at + refresh_after(lifetime, self.refresh_margin),
        })
    }
}

/// Reads the ID token the exchange presents, and checks what can be checked locally (shape,
/// expiry, audience) so a stale mount or a wrong audience is named with the file, not relayed
/// as the API's generic refusal. The claims are not trusted: the API verifies the signature.
async fn read_id_token(path: &Path, audience: Option<&str>) -> Result<Secret> {
    let fail = |message: String| {
        Err(ApiError::new(
            Category::Auth,
            format!("POST {TOKEN_EXCHANGE_ENDPOINT}"),
            message,
        ))
    };
    // A small local file read once an hour: not worth a blocking-pool hop.
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Secret::new(text.trim()),
        Err(err) => {
            return fail(format!(
                "cannot read the workload identity token {}: {err}; mount a projected \
                 service-account token there (the chart does with tailnet.workloadIdentity), \
                 or point the token path at the file your platform writes",
                path.display()
            ));
        }
    };
    let jwt = match super::jwt::Jwt::parse(text.expose()) {
        Ok(jwt) => jwt,
        Err(err) => return fail(format!("the token in {}: {err}", path.display())),
    };
    if let Some(exp) = jwt.time_claim("exp") {
        if exp <= chrono::Utc::now().timestamp() {
            return fail(format!(
                "the token in {} expired at {}: whatever writes it (the kubelet for a projected \
                 token) has stopped refreshing it",
                path.display(),
                chrono::DateTime::from_timestamp(exp, 0)
                    .map_or(exp.to_string(), |t| t.to_rfc3339())
            ));
        }
    }
    if let Some(wanted) = audience {
        let audiences = jwt.audiences();
        if !audiences.contains(&wanted) {
            return fail(format!(
                "the token in {} is for audience {:?}, not {wanted:?}: project the \
                 service-account token with audience {wanted:?} (the federated identity's \
                 audience)",
                path.display(),
                audiences
            ));
        }
    }
    Ok(text)
}

/// How long after the token request to refresh. The margin is capped at half the lifetime:
/// otherwise a short-lived token (or a large margin) would be stale on arrival and every
/// call would fetch a new one.
fn refresh_after(lifetime: Duration, margin: Duration) -> Duration {
    lifetime - margin.min(lifetime / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_happens_a_margin_before_expiry() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            refresh_after(hour, Duration::from_secs(300)),
            Duration::from_secs(3300)
        );
    }

    #[test]
    fn short_lived_tokens_are_still_used_for_half_their_life() {
        assert_eq!(
            refresh_after(Duration::from_secs(60), Duration::from_secs(300)),
            Duration::from_secs(30)
        );
        assert_eq!(
            refresh_after(Duration::ZERO, Duration::from_secs(300)),
            Duration::ZERO
        );
    }
}
