//! The executor: makes the planned write through the client, records it in the snapshots
//! (`record_write(Area::Dns)`), and checks the endpoint's answer (the configuration the
//! tailnet now has) against the plan, so a write the API silently altered is reported instead
//! of being called applied. No read-back call: the write's answer is the read-back.
use super::plan::{
    DnsAction, DnsPlan, WriteReason, in_sync_verdict, managed_parts, ready_verdict, same_dns,
    synced_verdict,
};
use crate::resources::ReconcileError;
use crate::resources::conditions::ConditionStatus;
use crate::resources::conditions::Verdict;
use crate::resources::drift::{DiffOptions, diff_with};
use crate::snapshot::{Area, TailnetSnapshots};
use crate::tailscale::DnsConfiguration;

use super::plan::{DRIFT_ENTRIES, DnsOutcome};

/// Ready reason when the endpoint's answer differs from what was written.
pub const NOT_APPLIED: &str = "NotApplied";

/// What executing a plan did.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsExecuted {
    pub outcome: DnsOutcome,
    /// The write made, if any.
    pub wrote: Option<WriteReason>,
}

/// Executes `plan` against the tailnet behind `snapshots`.
pub async fn execute(
    plan: DnsPlan,
    snapshots: &TailnetSnapshots,
) -> Result<DnsExecuted, ReconcileError> {
    let DnsAction::Write {
        configuration,
        reason: why,
    } = &plan.action
    else {
        return Ok(DnsExecuted {
            outcome: plan.outcome,
            wrote: None,
        });
    };
    let answer = snapshots
        .client()
        .set_dns_configuration(configuration)
        .await;
    // Whether it succeeded or not: a failed write may still have changed the DNS.
    snapshots.record_write(Area::Dns);
    let answer = answer?;
    Ok(DnsExecuted {
        outcome: written(&plan, &answer),
        wrote: Some(*why),
    })
}

/// The outcome after a write answered with `answer` (pure).
pub fn written(plan: &DnsPlan, answer: &DnsConfiguration) -> DnsOutcome {
    let mut outcome = plan.outcome.clone();
    outcome.magic_dns = Some(answer.preferences.magic_dns);
    let held = managed_parts(&plan.desired, answer);
    if same_dns(&held, &plan.desired) {
        // The texts of a steady-state pass, so the next pass writes no status; the write
        // itself is told by the `Applied` event.
        outcome.ready = ready_verdict(&plan.desired);
        outcome.synced = synced_verdict();
        outcome.drifted = in_sync_verdict();
        outcome.drift = None;
        outcome.applied = Some(plan.desired.clone());
        return outcome;
    }
    let as_json = |s| serde_json::to_value(s).unwrap_or_default();
    let diff = diff_with(
        &as_json(&plan.desired),
        &as_json(&held),
        &DiffOptions {
            cap: DRIFT_ENTRIES,
            string_arrays_as_sets: false,
        },
    );
    let message = format!(
        "the DNS endpoint accepted the write but answers with a different configuration: {}; \
         the next reconcile writes again",
        diff.summary()
    );
    outcome.ready = Verdict::new(ConditionStatus::False, NOT_APPLIED, &message);
    outcome.synced = Verdict::new(ConditionStatus::True, NOT_APPLIED, &message);
    outcome
}
