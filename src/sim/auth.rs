//! Authentication: the API key (Bearer, or Basic with the key as username and an empty
//! password) and OAuth client credentials exchanged at `POST /api/v2/oauth/token` for access
//! tokens that expire after `SimConfig::token_lifetime`.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::SimTailnet;
use super::codec::{base64_decode, parse_form};
use super::error::{SimError, SimResult};
use super::state::random_alnum;

/// Who is calling; handlers use it where the API's answer depends on the credential (tag
/// ownership, `GET /keys` without `all`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The API access token, acting as its owner (the tailnet's owner).
    ApiKey { login: String },
    /// An access token minted for the OAuth client or a federated identity.
    OAuth {
        client_id: String,
        tags: Vec<String>,
    },
}

/// Issued access tokens, by SHA-256 of the token (so the map never holds a usable token and
/// lookups do not compare secrets byte by byte).
#[derive(Debug)]
pub(crate) struct TokenStore {
    tokens: HashMap<[u8; 32], Issued>,
    rng: fastrand::Rng,
}

#[derive(Debug)]
struct Issued {
    expiry: Instant,
    client_id: String,
    owner: TokenOwner,
}

/// Which grant minted a token: the caller's tags come from the OAuth client or from the
/// federated identity (a key in the tailnet's key list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenOwner {
    OAuthClient,
    Federated,
}

impl TokenStore {
    pub fn new(seed: u64) -> TokenStore {
        TokenStore {
            tokens: HashMap::new(),
            rng: fastrand::Rng::with_seed(seed ^ 0x70c3_7070),
        }
    }

    pub(crate) fn issue(
        &mut self,
        client_id: &str,
        lifetime: Duration,
        owner: TokenOwner,
    ) -> String {
        let now = Instant::now();
        self.tokens.retain(|_, issued| issued.expiry > now);
        let token = format!("tskey-api-{client_id}-{}", random_alnum(&mut self.rng, 40));
        let issued = Issued {
            expiry: now + lifetime,
            client_id: client_id.to_owned(),
            owner,
        };
        self.tokens.insert(digest(&token), issued);
        token
    }

    /// `Some((valid, client id, owner))`, or `None` for an unknown token.
    fn check(&self, token: &str) -> Option<(bool, String, TokenOwner)> {
        self.tokens.get(&digest(token)).map(|issued| {
            (
                issued.expiry > Instant::now(),
                issued.client_id.clone(),
                issued.owner,
            )
        })
    }

    /// Expires every issued token (a console "revoke sessions"), so clients must re-authenticate.
    pub fn expire_all(&mut self) {
        let past = Instant::now();
        for issued in self.tokens.values_mut() {
            issued.expiry = past;
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The credential in an `Authorization` header: `Bearer <t>` or `Basic base64(<t>:)`.
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = String::from_utf8(base64_decode(rest)?).ok()?;
        let (user, _password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        return Some(user.to_owned());
    }
    None
}

/// `Basic base64(client_id:client_secret)`, the other way OAuth clients send credentials.
fn basic_pair(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(rest.trim())?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

impl SimTailnet {
    /// Identifies the caller of an API request, or the 401 the API answers.
    pub(crate) fn identify(&self, headers: &HeaderMap) -> SimResult<Caller> {
        let token = presented_token(headers).ok_or_else(|| {
            SimError::unauthorized("API token required: send Authorization: Bearer <token>")
        })?;
        let identity = &self.inner.identity;
        if identity.api_key.matches(&token) {
            let state = self.inner.state();
            let revoked = state
                .keys
                .iter()
                .any(|k| k.id == identity.api_key_id && k.revoked.is_some());
            if revoked {
                return Err(SimError::unauthorized("API token invalid"));
            }
            return Ok(Caller::ApiKey {
                login: state.api_key_owner.clone(),
            });
        }
        let checked = self.inner.tokens().check(&token);
        match checked {
            Some((true, client_id, TokenOwner::OAuthClient)) => Ok(Caller::OAuth {
                client_id,
                tags: self.inner.state().oauth_client_tags.clone(),
            }),
            // A federated identity acts with its own tags, and stops working when revoked.
            Some((true, client_id, TokenOwner::Federated)) => {
                let state = self.inner.state();
                let key = state
                    .keys
                    .iter()
                    .find(|k| k.id == client_id && k.revoked.is_none())
                    .ok_or_else(|| SimError::unauthorized("API token invalid"))?;
                Ok(Caller::OAuth {
                    tags: key.tags.clone(),
                    client_id,
                })
            }
            Some((false, ..)) => Err(SimError::unauthorized("API token expired")),
            None => Err(SimError::unauthorized("API token invalid")),
        }
    }

    /// Whether `headers` carry the sim's API key (the admin routes' credential; it works even
    /// if the key was revoked through the API, so a test can always reach `/sim/...`).
    pub(crate) fn is_admin(&self, headers: &HeaderMap) -> bool {
        presented_token(headers).is_some_and(|t| self.inner.identity.api_key.matches(&t))
    }
}

/// API middleware: rejects unauthenticated requests, stores the [`Caller`] for handlers.
pub(crate) async fn authenticate(
    State(sim): State<SimTailnet>,
    mut req: Request,
    next: Next,
) -> Response {
    match sim.identify(req.headers()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Admin middleware: the `/sim/...` routes need the API key too.
pub(crate) async fn authenticate_admin(
    State(sim): State<SimTailnet>,
    req: Request,
    next: Next,
) -> Response {
    if sim.is_admin(req.headers()) {
        next.run(req).await
    } else {
        SimError::unauthorized("the /sim admin API needs the sim's API key").into_response()
    }
}

/// `POST /api/v2/oauth/token`: the client-credentials grant. Credentials come from the form
/// (`client_id`, `client_secret`) or a Basic header, as OAuth2 libraries send either.
pub(crate) async fn token(
    State(sim): State<SimTailnet>,
    headers: HeaderMap,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let form: HashMap<String, String> = parse_form(&String::from_utf8_lossy(&body))
        .into_iter()
        .collect();
    if let Some(grant) = form
        .get("grant_type")
        .filter(|g| g.as_str() != "client_credentials")
    {
        return Err(SimError::bad_request(format!(
            "unsupported grant_type {grant:?}: only client_credentials is supported"
        )));
    }
    let (client_id, client_secret) = match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => (id.clone(), secret.clone()),
        _ => basic_pair(&headers)
            .ok_or_else(|| SimError::unauthorized("client_id and client_secret are required"))?,
    };
    let identity = &sim.inner.identity;
    let client_known = client_id == identity.oauth_client_id
        && identity.oauth_client_secret.matches(&client_secret);
    let revoked = sim
        .inner
        .state()
        .keys
        .iter()
        .any(|k| k.id == identity.oauth_client_id && k.revoked.is_some());
    if !client_known || revoked {
        return Err(SimError::unauthorized("invalid client credentials"));
    }
    let lifetime = sim.inner.config.token_lifetime;
    let access_token = sim
        .inner
        .tokens()
        .issue(&client_id, lifetime, TokenOwner::OAuthClient);
    let scope = form
        .get("scope")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| "all".into());
    Ok(Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "scope": scope,
    })))
}
