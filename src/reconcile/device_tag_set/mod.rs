//! The DeviceTagSet reconcile for ONE tailnet, computed over all of its `DeviceTagSet`
//! resources together, so conflicts between sets are decided the same way whichever set
//! reconciles (`docs/device-tag-set.md`).
//!
//! - [`plan()`] (pure): match every set's selector against the devices snapshot, combine what
//!   the sets want per device, find conflicts, classify differences as changes or drift, and
//!   list the writes (only fields that differ).
//! - [`execute()`]: the writes through the Tailscale client, recorded in the snapshots.
//! - [`outcomes()`] (pure): each set's status from the plan and the execution report.
//! - [`observe_and_plan`] / [`reconcile`]: the three over a tailnet's snapshots, as the
//!   controller and file mode run them.
//!
//! See `docs/device-tag-set.md` for the semantics (conflicts, routes and autoApprovers, drift,
//! deletion).
mod execute;
mod outcome;
mod plan;
pub mod select;

pub use execute::{
    DeviceFailure, TagSetExecuted, WRITE_CONCURRENCY, execute, execute_with_progress,
};
pub use outcome::{TagSetOutcome, applied_mark, outcomes};
pub use plan::{
    AppliedMark, CONFLICT_EXAMPLES, DRIFT_ENTRIES, DeviceChange, DeviceState, Field, SetDevice,
    SetPlan, TagSetInput, TagSetPlan, plan,
};
pub use select::AutoApprovers;

use kube::ResourceExt;

use crate::policy::hujson::parse_strict;
use crate::resources::{DeviceTagSet, ReconcileError};
use crate::snapshot::TailnetSnapshots;

/// The planner input for `set` (its applied mark and last matched count come from status).
pub fn tag_set_input(set: &DeviceTagSet) -> TagSetInput {
    let status = set.status.as_ref();
    TagSetInput {
        name: set.name_any(),
        generation: set.metadata.generation,
        spec: set.spec.clone(),
        applied: status.and_then(applied_mark),
        matched_before: status.map(|s| s.matched_count),
        removing: set.metadata.deletion_timestamp.is_some() && set.spec.common.deletes_on_removal(),
    }
}

/// Reads the devices snapshot (and, when some set manages routes, the policy for its
/// autoApprovers) and plans. One device-list read per resync serves every set.
pub async fn observe_and_plan(
    sets: &[TagSetInput],
    snapshots: &TailnetSnapshots,
) -> Result<TagSetPlan, ReconcileError> {
    let devices = snapshots.devices().await?;
    let approvers = if sets.iter().any(|s| s.spec.routes.is_some()) {
        auto_approvers(snapshots).await?
    } else {
        AutoApprovers::none()
    };
    Ok(plan(
        sets,
        &devices.data,
        &approvers,
        devices.fetched_at_utc,
    ))
}

async fn auto_approvers(snapshots: &TailnetSnapshots) -> Result<AutoApprovers, ReconcileError> {
    let policy = snapshots.policy().await?;
    Ok(match parse_strict(&policy.data.hujson) {
        Ok(doc) => AutoApprovers::from_policy(&doc),
        Err(err) => {
            // The TailnetPolicy reconcile reports an unreadable policy; here the only cost is
            // that auto-approved routes are not recognised.
            tracing::warn!("policy does not parse, autoApprovers ignored: {err}");
            AutoApprovers::none()
        }
    })
}

/// Plans, executes and derives every set's outcome.
pub async fn reconcile(
    sets: &[TagSetInput],
    snapshots: &TailnetSnapshots,
) -> Result<(TagSetPlan, TagSetExecuted, Vec<TagSetOutcome>), ReconcileError> {
    let plan = observe_and_plan(sets, snapshots).await?;
    let report = execute(&plan, snapshots).await;
    let outcomes = outcomes(&plan, Some(&report));
    Ok((plan, report, outcomes))
}

#[cfg(test)]
mod tests;
