//! tailnet-operator: manage a Tailscale tailnet declaratively.
//!
//! Layout (see `docs/architecture.md`):
//! - [`tailscale`]: typed Tailscale API v2 client (auth, rate limit, retries, typed errors).
//! - [`sim`]: the simulated tailnet, an in-process test double and demo backend of the API.
//! - [`policy`]: strict HuJSON parsing and the local access evaluator.
//! - [`secret`]: the redacting wrapper every secret is held in.
//! - [`error`]: error categories shared by the client, reconcilers and metrics.
//! - [`resources`]: the custom resources and the machinery every kind shares.
//! - [`proposal`]: ChangeProposal previews (validation, YAML and access diffs), adopt-drift.
pub mod audit;
pub mod cli;
pub mod cluster;
pub mod connection;
pub mod controller;
pub mod error;
pub mod file_mode;
pub mod mcp;
pub mod policy;
pub mod proposal;
pub mod reconcile;
pub mod report;
pub mod resources;
pub mod secret;
pub mod shutdown;
pub mod sim;
pub mod snapshot;
pub mod tailscale;
pub mod webhook;
