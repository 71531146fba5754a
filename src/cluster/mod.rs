//! Kubernetes-side reads shared by the controllers, the CLI and the MCP server, kept in one
//! place so that no layer borrows them from another:
//! - [`credentials`]: a ManagedTailnet's credentials from its Secret;
//! - [`proposals`]: a ChangeProposal's target, its checks' world, creating and applying;
//! - [`policy_sources`]: a `TailnetPolicy`'s text, inline or from a ConfigMap, with the cache
//!   the controller's metadata watch keeps fresh.
pub mod credentials;
pub mod policy_sources;
pub mod proposals;
