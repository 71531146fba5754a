//! The simulated tailnet: an in-process, stateful implementation of the Tailscale API v2
//! subset the operator uses, faithful to the real API's sharp edges (policy ETags and 412,
//! validate answering 200 with a body, tags needing `tagOwners`, routes needing advertisement,
//! key secrets shown once, Services needing their addresses on update, omitted DNS booleans
//! turning features off, errors as `{"message"}`).
//!
//! It also injects faults (429 with `Retry-After`, 5xx, latency, dropped connections), makes
//! out-of-band "console edits" to create drift, counts calls per route and can record every
//! exchange for contract tests. It serves the tests, the benchmarks, the `sim` command and the
//! embedded default of `apply`/`plan`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tailnet_operator::sim::{SimConfig, SimServer};
//! let server = SimServer::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! let base_url = server.base_url(); // hand to the client; it appends /api/v2
//! let creds = server.tailnet().credentials();
//! # let _ = (base_url, creds); Ok(()) }
//! ```
//!
//! HTTP surface: `/api/v2/...` (the API; counted, faultable, authenticated like the real one,
//! plus `POST /api/v2/oauth/token` and `/oauth/token-exchange`) and `/sim/...` (admin: calls, faults, exchanges, console
//! edits; needs the API key; never counted or faulted). See [`admin`] for the admin routes.
pub mod admin;
mod audit;
mod auth;
mod calls;
mod codec;
mod devices;
mod dns;
mod error;
mod faults;
pub mod federation;
mod keys;
mod policy;
mod render;
pub(crate) mod seed;
mod server;
mod services;
mod settings;
mod state;
mod users;
mod webhooks;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::post;

pub use admin::NewDevice;
pub use auth::Caller;
pub use calls::{CallCounts, EXCHANGE_CAPACITY, Exchange};
pub use error::SimError;
pub use faults::FaultRule;
pub use seed::{DOMAIN, LATEST_CLIENT, OAUTH_CLIENT_TAGS};
pub use server::{ConnHandle, SimServer};
pub use state::{DnsConfig, DnsPreferences, DnsResolver};

use crate::secret::Secret;

/// How to build a simulated tailnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Generated devices added to the demo tailnet (0 = the realistic demo seed only).
    pub devices: usize,
    /// Seeds every id, key, address and fault roll: the same seed gives the same tailnet.
    pub seed: u64,
    /// Lifetime of OAuth access tokens (`expires_in`).
    pub token_lifetime: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            devices: 0,
            seed: 1,
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// The sim's fixed credentials (derived from the seed).
#[derive(Debug, Clone)]
pub struct SimCredentials {
    /// An API access token (`tskey-api-...`), owned by the tailnet owner.
    pub api_key: Secret,
    pub oauth_client_id: String,
    /// The OAuth client's secret (`tskey-client-...`); the client is tagged `tag:k8s-operator`.
    pub oauth_client_secret: Secret,
}

/// A simulated tailnet. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct SimTailnet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SimTailnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTailnet")
            .field("tailnet_id", &self.inner.identity.tailnet_id)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub config: SimConfig,
    pub identity: seed::Identity,
    state: Mutex<state::State>,
    calls: Mutex<CallCounts>,
    exchanges: Mutex<calls::ExchangeLog>,
    faults: Mutex<faults::FaultSet>,
    tokens: Mutex<auth::TokenStore>,
    /// How far the sim's clock is ahead of real time ([`SimTailnet::advance_clock`]).
    clock_offset: Mutex<chrono::Duration>,
    /// Webhook events waiting for the delivery worker, which `outbox_ready` wakes.
    outbox: Mutex<webhooks::Outbox>,
    pub(crate) outbox_ready: tokio::sync::Notify,
}

/// Locks a mutex, recovering from poisoning: a panicking test thread must not wedge the sim for
/// every other test sharing it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    /// The sim's time: real time plus what tests advanced it by (key expiry follows it).
    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        now() + *lock(&self.clock_offset)
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, state::State> {
        lock(&self.state)
    }
    pub(crate) fn calls(&self) -> MutexGuard<'_, CallCounts> {
        lock(&self.calls)
    }
    pub(crate) fn exchanges(&self) -> MutexGuard<'_, calls::ExchangeLog> {
        lock(&self.exchanges)
    }
    pub(crate) fn faults(&self) -> MutexGuard<'_, faults::FaultSet> {
        lock(&self.faults)
    }
    pub(crate) fn tokens(&self) -> MutexGuard<'_, auth::TokenStore> {
        lock(&self.tokens)
    }
    pub(crate) fn outbox(&self) -> MutexGuard<'_, webhooks::Outbox> {
        lock(&self.outbox)
    }
}

impl SimTailnet {
    /// Builds the demo tailnet (plus `config.devices` generated devices).
    pub fn new(config: SimConfig) -> SimTailnet {
        let identity = seed::Identity::derive(config.seed);
        let state = seed::build(config.seed, config.devices, &identity, now());
        SimTailnet {
            inner: Arc::new(Inner {
                faults: Mutex::new(faults::FaultSet::new(config.seed)),
                tokens: Mutex::new(auth::TokenStore::new(config.seed)),
                config,
                identity,
                state: Mutex::new(state),
                calls: Mutex::new(CallCounts::default()),
                exchanges: Mutex::new(calls::ExchangeLog::default()),
                clock_offset: Mutex::new(chrono::Duration::zero()),
                outbox: Mutex::default(),
                outbox_ready: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Moves the sim's clock forward (keys expire by it), for tests of time-driven behaviour
    /// such as key rotation without waiting.
    pub fn advance_clock(&self, by: std::time::Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        let mut offset = lock(&self.inner.clock_offset);
        *offset += by;
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// The tailnet id, accepted as the `{tailnet}` path parameter besides `-`.
    pub fn tailnet_id(&self) -> &str {
        &self.inner.identity.tailnet_id
    }

    /// The MagicDNS suffix, e.g. `tail1a2b.ts.net`.
    pub fn dns_suffix(&self) -> &str {
        &self.inner.identity.dns_suffix
    }

    pub fn credentials(&self) -> SimCredentials {
        let identity = &self.inner.identity;
        SimCredentials {
            api_key: identity.api_key.clone(),
            oauth_client_id: identity.oauth_client_id.clone(),
            oauth_client_secret: identity.oauth_client_secret.clone(),
        }
    }

    /// API calls so far, per `"METHOD /api/v2/templated/path"`.
    pub fn calls(&self) -> CallCounts {
        self.inner.calls().clone()
    }

    pub fn reset_calls(&self) {
        *self.inner.calls() = CallCounts::default();
    }

    /// Turns the exchange log on or off (off by default; it keeps the last
    /// [`EXCHANGE_CAPACITY`] exchanges).
    pub fn record_exchanges(&self, enabled: bool) {
        self.inner.exchanges().enabled = enabled;
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.inner.exchanges().entries.iter().cloned().collect()
    }

    pub fn clear_exchanges(&self) {
        self.inner.exchanges().entries.clear();
    }

    /// Adds a fault rule, replacing any rule for the same route (`None` = the global rule).
    pub fn set_fault(&self, rule: FaultRule) {
        self.inner.faults().set(rule);
    }

    /// The active fault rules (with their remaining counts).
    pub fn faults(&self) -> Vec<FaultRule> {
        self.inner.faults().rules.clone()
    }

    pub fn clear_faults(&self) {
        self.inner.faults().rules.clear();
    }

    /// The router serving `/api/v2/...` and `/sim/...`. Serve it through [`SimServer`] for
    /// dropped-connection faults to close real connections; served any other way (e.g. with
    /// `tower::ServiceExt::oneshot`), a drop fault answers 502 instead.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .merge(devices::routes())
            .merge(policy::routes())
            .merge(dns::routes())
            .merge(keys::routes())
            .merge(services::routes())
            .merge(settings::routes())
            .merge(users::routes())
            .merge(webhooks::routes())
            .merge(audit::routes())
            .layer(from_fn_with_state(self.clone(), auth::authenticate));
        let public = api
            .route("/api/v2/oauth/token", post(auth::token))
            .route(
                "/api/v2/oauth/token-exchange",
                post(federation::token_exchange),
            )
            .layer(from_fn(error::json_errors))
            .layer(from_fn_with_state(self.clone(), faults::inject))
            .layer(from_fn_with_state(self.clone(), calls::observe));
        public
            .merge(admin::routes(self.clone()))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(from_fn(error::json_errors))
            .with_state(self.clone())
    }
}

async fn not_found() -> SimError {
    SimError::not_found("not found")
}

async fn method_not_allowed() -> SimError {
    SimError::new(405, "method not allowed")
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// Checks the `{tailnet}` path parameter: `-`, the tailnet id, or the organisation's legacy name.
pub(crate) fn check_tailnet(state: &state::State, tailnet: &str) -> Result<(), SimError> {
    if tailnet == "-" || tailnet == state.tailnet_id || tailnet == DOMAIN {
        Ok(())
    } else {
        Err(SimError::not_found(format!(
            "tailnet {tailnet:?} not found"
        )))
    }
}
