//! The TailnetPolicy reconcile for ONE tailnet, computed over all of its `TailnetPolicy`
//! resources together: the policy file is tailnet-wide, so every resource's status follows
//! from one composition (`docs/policy-reconcile.md`).
//!
//! - [`plan()`] (pure): compose the Base and Fragments, check locally, compare with the live
//!   policy and the last applied revision, and decide: nothing, apply (why), or report drift.
//! - [`execute()`]: validate with the API, `POST` with `If-Match`, read back and verify, run
//!   the post-apply check, roll back on failure, record the revision.
//! - [`history`]: the revision store (last N revisions; in memory, or a ConfigMap).
//! - [`reconcile()`]: the three together over a tailnet's snapshots, as the controller and the
//!   file mode run them.
mod execute;
pub mod history;
mod plan;
mod source;
mod types;

pub use execute::{
    ExecuteResult, LocalTestsCheck, POST_APPLY_CHECK_FAILED, PolicyExecuted, PostApplyCheck,
    VALIDATION_FAILED, execute, execute_with,
};
pub use history::{
    ConfigMapRevisionStore, InMemoryRevisionStore, Revision, RevisionStore, history_config_map_name,
};
pub use plan::{
    ACCESS_LINES_SHOWN, BLOCKED, NO_BASE, TEXT_DIFF_LINES, access_diff, plan, policy_hash,
    source_name,
};
pub use source::{
    TextSource, config_map_text, describe_key_ref, find_config_map, policy_input, text_source,
};
pub use types::{
    AccessSummary, ApplyPlan, ApplyReason, PolicyAction, PolicyInput, PolicyOutcome, PolicyPlan,
};

use chrono::{DateTime, Utc};

use super::view::tailnet_view;
use crate::policy::compose::Contribution;
use crate::resources::ReconcileError;
use crate::snapshot::TailnetSnapshots;

/// Observes the tailnet through its snapshots (policy, devices, users: one read each per
/// resync interval, shared with every other resource), plans, and executes the plan.
pub async fn reconcile<S: RevisionStore>(
    resources: &[PolicyInput],
    contributions: &[Contribution],
    snapshots: &TailnetSnapshots,
    store: &S,
    now: DateTime<Utc>,
) -> Result<PolicyExecuted, ReconcileError> {
    let plan = observe_and_plan(resources, contributions, snapshots, store).await?;
    execute(plan, snapshots, store, now).await
}

/// The read-only half of [`reconcile`]: what would happen (used by `plan -f`).
pub async fn observe_and_plan<S: RevisionStore>(
    resources: &[PolicyInput],
    contributions: &[Contribution],
    snapshots: &TailnetSnapshots,
    store: &S,
) -> Result<PolicyPlan, ReconcileError> {
    let (policy, devices, users) =
        tokio::join!(snapshots.policy(), snapshots.devices(), snapshots.users());
    let (policy, devices, users) = (policy?, devices?, users?);
    let view = tailnet_view(&devices.data, &users.data);
    let history = store.list().await?;
    Ok(plan(
        resources,
        contributions,
        &policy.data,
        &history,
        &view,
    ))
}
