//! Reconcilers: pure planners in the middle, I/O at the edges (`docs/architecture.md`). Each kind has its
//! own module; nothing here talks to Kubernetes except the optional ConfigMap revision store.
//!
//! - [`attribution`]: who made a drift, from the configuration audit log.
//! - [`dns_config`]: the tailnet's DNS, one `DNSConfig` per tailnet.
//! - [`tailnet_policy`]: the tailnet-wide policy file, computed over every `TailnetPolicy` of
//!   one tailnet together.
//! - [`key_rotation`]: a KeyRotationPolicy's credential: mint, adopt, revoke, sweep.
//! - [`funnel`]: a FunnelExposure's window, prerequisites, node attribute, key and proxy.
//! - [`device_tag_set`]: device tags, authorization, key expiry and routes, computed over
//!   every `DeviceTagSet` of one tailnet together.
//! - [`tailscale_service`]: a Tailscale Service, its host approvals and the grant it
//!   contributes to the policy.
//! - [`tailnet_settings`]: the tailnet settings a ManagedTailnet manages (one PATCH).
//! - [`view`]: the tailnet as the access evaluator sees it, built from snapshots.
//! - [`text_diff`]: a small unified line diff for plans and logs.
pub mod attribution;
pub mod device_tag_set;
pub mod dns_config;
pub mod funnel;
pub mod key_rotation;
pub mod tailnet_policy;
pub mod tailnet_settings;
pub mod tailscale_service;
pub mod text_diff;
pub mod view;
