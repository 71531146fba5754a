//! The DNSConfig reconcile for ONE resource against its tailnet's DNS snapshot.
//!
//! - [`plan()`] (pure): conflict with another DNSConfig of the tailnet, spec checks, drift
//!   (live vs what this resource applied), and the one write to make: the whole configuration
//!   for the combined `/dns/configuration` endpoint, managed parts from the spec and the rest
//!   copied from the live DNS, so a valid spec converges in one write.
//! - [`execute()`]: the write, `record_write(Area::Dns)`, and the check of the endpoint's answer.
//! - [`cleared()`]: what `deletionPolicy: Delete` leaves (pure).
//! - [`reconcile()`] / [`observe_and_plan()`]: the above over a tailnet's snapshots, as the
//!   controller and file mode run them.
mod execute;
mod plan;

pub use execute::{DnsExecuted, NOT_APPLIED, execute, written};
pub use plan::{
    DRIFT_ENTRIES, DnsAction, DnsInput, DnsOutcome, DnsPlan, WriteReason, cleared, describe_parts,
    drift_of, is_domain, live_settings, managed_parts, merged, plan, same_dns, validate, winner,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::resources::ReconcileError;
use crate::resources::dns_config::DNSConfigStatus;
use crate::snapshot::TailnetSnapshots;

/// Reads the tailnet's DNS through its snapshot (one read per resync interval, shared) and
/// plans `resource` against it.
pub async fn observe_and_plan(
    resource: &DnsInput,
    others: &[DnsInput],
    snapshots: &TailnetSnapshots,
) -> Result<DnsPlan, ReconcileError> {
    let live = snapshots.dns().await?;
    Ok(plan(resource, others, &live.data))
}

/// [`observe_and_plan`] then [`execute`].
pub async fn reconcile(
    resource: &DnsInput,
    others: &[DnsInput],
    snapshots: &TailnetSnapshots,
) -> Result<DnsExecuted, ReconcileError> {
    let plan = observe_and_plan(resource, others, snapshots).await?;
    execute(plan, snapshots).await
}

impl DnsOutcome {
    /// Writes the outcome into `status`: conditions through `set_condition` (stable transition
    /// times), the other fields replaced. Returns whether anything changed.
    pub fn write_status(&self, status: &mut DNSConfigStatus, now: &Time) -> bool {
        let before = status.clone();
        status.common.record(
            [&self.ready, &self.synced, &self.drifted],
            self.generation,
            now,
        );
        status.applied = self.applied.clone().filter(|a| !a.is_empty());
        status.magic_dns = self.magic_dns;
        status.drift = self.drift.clone();
        status.conflict = self.conflict.clone();
        let changed = *status != before;
        if changed {
            status.common.last_sync_time = Some(now.clone());
        }
        changed
    }
}
