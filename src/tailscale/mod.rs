//! Tailscale API v2 client.
//!
//! A typed client over one shared `reqwest::Client` for the endpoints the operator needs:
//! devices, the policy file (raw HuJSON with its ETag), DNS, auth keys, Services, tailnet
//! settings, users and webhooks.
//!
//! - Authentication with an API key, an OAuth client, or a federated identity (workload
//!   identity: an ID token exchanged); access tokens are cached and refreshed before expiry
//!   (one refresh in flight at a time; a 401 refreshes once).
//! - A token-bucket rate limit per client (one client is one tailnet); a 429 pauses it.
//! - Retries with exponential backoff and full jitter on 429, 502, 503, 504, timeouts and
//!   connection failures, honouring `Retry-After`.
//! - Every failure is an [`ApiError`] with a [`Category`](crate::error::Category), the HTTP
//!   status, the API's message and a templated endpoint label (no ids), safe to log.
//! - Secrets (credentials, access tokens, new auth keys, webhook secrets) are held in
//!   [`Secret`](crate::secret::Secret) and never appear in logs or errors.
//! - Responses tolerate unknown fields, `null` lists, and empty or missing timestamps.

mod auth;
mod client;
mod config;
mod devices;
mod dns;
mod error;
pub mod jwt;
mod keys;
mod logging;
mod policy;
mod ratelimit;
mod retry;
mod services;
mod settings;
mod users;
mod webhooks;
mod wire;

#[cfg(test)]
mod http_tests;

pub use client::{AttemptEvent, RequestObserver, TailscaleClient};
pub use config::{
    ClientConfig, Credentials, DEFAULT_BASE_URL, DEFAULT_TAILNET, RateLimit, RetryPolicy,
};
pub use devices::{
    ClientConnectivity, ClientSupports, DerpLatency, Device, DeviceListOptions, DeviceRoutes,
    Distro, PostureIdentity,
};
pub use dns::{DnsConfiguration, DnsPreferences, DnsResolver};
pub use error::{ApiError, Result};
pub use keys::{
    CreateAuthKeyRequest, CreateOAuthClientRequest, CreatedKey, DeviceCapabilities,
    DeviceCreateCapabilities, Key, KeyCapabilities,
};
pub use logging::{AuditActor, AuditLogEntry, AuditTarget};
pub use policy::{
    ETag, PolicyFile, PolicyPreview, PreviewMatch, PreviewType, TestFailureData, ValidationOutcome,
};
pub use services::{Service, ServiceApproval, ServiceHost};
pub use settings::{TailnetSettings, TailnetSettingsPatch};
pub use users::User;
pub use webhooks::{CreateWebhookRequest, CreatedWebhook, Webhook};
