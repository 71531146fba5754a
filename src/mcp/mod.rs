//! `tailnet-operator mcp`: the MCP server (`docs/mcp.md`). It reads the operator's state and
//! proposes changes for a human to review; it never writes to the tailnet.
pub mod audit_log;
pub mod backend;
pub mod cli;
pub mod http;
pub mod intents;
pub mod kube_source;
pub mod local;
pub mod loopback;
pub mod manifests_source;
pub mod prompts;
pub mod remote;
pub mod server;

pub use backend::{Backend, BackendError};
