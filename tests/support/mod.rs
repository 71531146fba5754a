//! Shared helpers for the integration tests, in one root. Each test binary declares
//! `mod support;` and uses the modules it needs:
//! - [`fake_kube`]: the in-process fake Kubernetes API server;
//! - [`operator`]: the usual controller-test setup (sim, Secret, ManagedTailnet, Manager);
//! - [`kinds`]: status, condition and wait helpers for any kind;
//! - [`crds`]: the generated CRDs, their schemas and samples checked as the API server would;
//! - [`client`]: the real Tailscale client against a started simulated tailnet;
//! - [`sim`]: a started simulated tailnet with an authenticated HTTP client;
//! - [`openapi`]: Tailscale's published OpenAPI document, for contract checks;
//! - [`fixtures`]: the Base and Fragment policies several tests share.

pub mod client;
pub mod crds;
pub mod fake_kube;
pub mod fixtures;
pub mod kinds;
pub mod openapi;
pub mod operator;
pub mod sim;
