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
    AccessSummary, ApplyPlan, ApplyReason, LeftOut, PolicyAction, PolicyInput, PolicyOutcome,
    PolicyPlan,
};

use chrono::{DateTime, Utc};

use super::view::{tailnet_view, with_services};
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

/// The Tailscale Services the access evaluator needs: read only when a source or contribution
/// names a `svc:` at all (most tailnets have none, and the read would cost a call per resync),
/// plus those the contributions grant access to and that do not exist yet (a TailscaleService
/// about to be created), so the access diff shows who gains the new service. A failed read
/// (e.g. credentials without the services scope) leaves the live ones out: `svc:` targets are
/// then unresolved, with a warning, and nothing else changes.
async fn services_for(
    resources: &[PolicyInput],
    contributions: &[Contribution],
    snapshots: &TailnetSnapshots,
) -> Vec<crate::tailscale::Service> {
    let mentioned = !contributions.is_empty()
        || resources
            .iter()
            .any(|r| r.text.as_ref().is_ok_and(|t| t.contains("svc:")));
    if !mentioned {
        return Vec::new();
    }
    let mut services = match snapshots.services().await {
        Ok(live) => live.data.clone(),
        Err(_) => Vec::new(),
    };
    let granted = contributions
        .iter()
        .filter_map(|c| c.value.get("dst")?.as_array().cloned())
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_owned))
        .filter(|d| d.starts_with("svc:"));
    for name in granted {
        if !services.iter().any(|s| s.name == name) {
            services.push(crate::tailscale::Service {
                name,
                ..Default::default()
            });
        }
    }
    services
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
    let view = with_services(
        view,
        &services_for(resources, contributions, snapshots).await,
    );
    let history = store.list().await?;
    Ok(plan(
        resources,
        contributions,
        &policy.data,
        &history,
        &view,
    ))
}
