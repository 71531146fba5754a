//! Shared helpers for the integration tests. Each test binary declares `mod support;` and uses
//! the modules it needs.

pub mod fake_kube;
pub mod openapi;
pub mod operator;
