//! The `DNSConfig` controller: keeps a tailnet's DNS as its one DNSConfig says, through the pure
//! planner and executor of [`crate::reconcile::dns_config`] (the same ones file mode runs).
//!
//! Runs on the shared [`skeleton`](super::skeleton) (lock, finalizer, ManagedTailnet guard,
//! failure status, events); its own part is the pass: the other DNSConfigs of the tailnet from
//! the reflector store (no API list) → plan against the shared DNS snapshot → (a drift
//! correction first records `Drifted=True` with the diff) → execute → status.
//!
//! Decisions:
//! - **One per tailnet, deterministically.** The oldest DNSConfig of a tailnet (by name when
//!   equally old) manages its DNS; every other one is `Ready=False, Conflict`, names the winner
//!   in `status.conflict`, and never writes, not even on deletion. A winner being deleted
//!   keeps its claim until its cleanup is done and it is gone; then the watch's delete event
//!   triggers the others at once, and the next oldest takes over.
//! - **Serialized per tailnet.** Two DNSConfigs of a tailnet never plan concurrently, so a
//!   conflict is always decided on the same store state and no two writes race.
//! - **`reconcile-at` means "look now"**: a new value re-reads the DNS instead of using the
//!   shared snapshot, so a console edit is seen at once.
//! - **Deletion.** `deletionPolicy: Delete` (the default) puts a finalizer on the resource;
//!   deleting it removes from the tailnet what `status.applied` says this resource set
//!   (see [`crate::reconcile::dns_config::cleared`]) in one write, then drops the finalizer.
//!   `Orphan` has no finalizer and leaves the DNS as it is.
use std::sync::Arc;

use kube::ResourceExt;

use super::skeleton::{self, CleanUpResult, KindReconciler, Next, Pass, PassResult, applied_event};
use super::{Context, Controlled, KindController, KindEvent, Stop};
use crate::reconcile::dns_config::{
    DnsInput, WriteReason, cleared, describe_parts, execute, observe_and_plan,
};
use crate::resources::conditions::{ConditionType, set_condition};
use crate::resources::{DNSConfig, TailnetScoped};
use crate::snapshot::{Area, TailnetSnapshots};

/// Started by the manager with every kind of [`crate::for_each_kind`].
impl Controlled for DNSConfig {
    fn controller(ctx: Arc<Context>, stop: &Stop) -> KindController {
        skeleton::controller(ctx, stop, DnsConfigKind)
    }
}

/// Event reason when deleting with `deletionPolicy: Delete` removed what the resource set.
pub const CLEARED: &str = "DnsCleared";

/// The DNSConfig kind: everything it needs is in the pass and the clean-up.
#[derive(Default)]
pub struct DnsConfigKind;

impl KindReconciler for DnsConfigKind {
    type Object = DNSConfig;
    const AREA: Area = Area::Dns;
    const WAITING: &'static str = "the DNS is applied";
    // A deleted winner's siblings look again at once.
    const SIBLINGS_ON_DELETE: bool = true;

    /// Plans `current` against the DNS snapshot, executes, and reports. A drift correction is
    /// reported twice: first the plan's view (`Drifted=True` with the diff, gauge 1, a "drift
    /// detected" event), then the corrected state; otherwise the drift would leave no trace.
    async fn pass(&self, pass: &Pass<'_, Self>, snapshots: &TailnetSnapshots) -> PassResult {
        let current = &*pass.current;
        let mut resource = DnsInput::from_object(current);
        resource.spec.common.suspend = pass.suspended(current);
        // Every DNSConfig of the tailnet, including ones being deleted: a winner keeps its
        // claim until its cleanup is done and it is gone.
        let others: Vec<DnsInput> = pass
            .members()
            .iter()
            .filter(|d| d.name_any() != current.name_any())
            .map(|d| DnsInput::from_object(d))
            .collect();
        let plan = observe_and_plan(&resource, &others, snapshots).await?;
        let mut before = current.current_status();
        if plan.write_reason() == Some(WriteReason::DriftCorrection) {
            // Only the drift: Ready and Synced keep their values until the correction's outcome.
            let mut detected = before.clone();
            let drifted = &plan.outcome.drifted;
            set_condition(
                &mut detected.common.conditions,
                ConditionType::Drifted,
                drifted.status,
                &drifted.reason,
                &drifted.message,
                current.metadata.generation,
                &pass.now,
            );
            detected.drift = plan.outcome.drift.clone();
            before = pass
                .report(current, Some(&before), detected, Vec::new())
                .await?;
        }
        let executed = execute(plan, snapshots).await?;
        if executed.wrote == Some(WriteReason::DriftCorrection) {
            pass.shared().metrics.record_drift_correction("DNSConfig");
        }
        let mut status = before.clone();
        executed.outcome.write_status(&mut status, &pass.now);
        pass.report(current, Some(&before), status, write_events(executed.wrote))
            .await?;
        Ok(Next::Resync)
    }

    /// Removes what `status.applied` says this resource set, in one write (none when nothing
    /// of it is left). A DNSConfig that never managed the tailnet's DNS (a conflict loser) has
    /// nothing applied and writes nothing.
    async fn clean_up(&self, pass: &Pass<'_, Self>) -> CleanUpResult {
        let Some(applied) = pass.current.current_status().applied else {
            return Ok(());
        };
        let snapshots = pass.snapshots_for_clean_up()?;
        // A fresh read: the write replaces the whole configuration, so it must start from now.
        snapshots.refresh_if_older_than(Area::Dns, snapshots.now());
        let live = snapshots.dns().await?;
        let Some(next) = cleared(&applied, &live.data) else {
            return Ok(());
        };
        let written = snapshots.client().set_dns_configuration(&next).await;
        snapshots.record_write(Area::Dns);
        written?;
        let note = format!(
            "deletionPolicy: Delete: removed {} set by this DNSConfig from tailnet {} (MagicDNS \
             left as it is)",
            describe_parts(&applied),
            pass.tailnet
        );
        pass.publish_clean_up(CLEARED, note).await;
        Ok(())
    }
}

/// The DNSConfig's own event of a pass that made the write `wrote` (pure); the skeleton adds
/// the shared condition events.
pub fn write_events(wrote: Option<WriteReason>) -> Vec<KindEvent> {
    applied_event(wrote.map(|why| format!("wrote the tailnet's DNS ({})", why.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::skeleton::APPLIED;

    #[test]
    fn a_write_is_an_applied_event_and_no_write_none() {
        assert!(write_events(None).is_empty());
        assert_eq!(
            write_events(Some(WriteReason::SpecChanged)),
            [KindEvent::new(
                false,
                APPLIED,
                "wrote the tailnet's DNS (SpecChanged)"
            )]
        );
    }
}
