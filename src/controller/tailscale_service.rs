//! The `TailscaleService` controller: keeps a Tailscale Service and its host approvals as the
//! resource says, through [`crate::reconcile::tailscale_service`] (the same reconcile file mode
//! runs). The grant and auto-approvers a resource asks for are not written here: the
//! TailnetPolicy controller composes them into the policy ([`tailnet_contributions`]).
//!
//! Runs on the shared [`skeleton`](super::skeleton); its own part:
//! - **Pass:** the other TailscaleServices of the tailnet from the reflector store (two naming
//!   one service conflict) → the live policy's names (tags and groups must be defined) → plan,
//!   PUT, hosts read, approvals → status (a drift correction first records `Drifted=True`).
//! - **Deletion:** `Delete` removes the service (only one marked as this resource's);
//!   `Orphan` leaves it and removes only the ownership mark, so the kind keeps a finalizer for
//!   both ([`KindReconciler::FINALIZE_ORPHANS`]).
//!
//! [`tailnet_contributions`]: crate::reconcile::tailscale_service::tailnet_contributions
use std::sync::Arc;

use super::skeleton::{self, CleanUpResult, KindReconciler, Next, Pass, PassResult, applied_event};
use super::{Context, Controlled, KindController, Stop};
use crate::reconcile::tailscale_service::{
    Mode, PolicyNames, ServiceInput, contribution_lines, contributions, reconcile,
};
use crate::resources::conditions::{ConditionStatus, ConditionType, reason, set_condition};
use crate::resources::tailscale_service::OWNER_ANNOTATION;
use crate::resources::{ReconcileError, TailnetScoped, TailscaleService};
use crate::snapshot::{Area, TailnetSnapshots};

/// Started by the manager with every kind of [`crate::for_each_kind`].
impl Controlled for TailscaleService {
    fn controller(ctx: Arc<Context>, stop: &Stop) -> KindController {
        skeleton::controller(ctx, stop, TailscaleServiceKind)
    }
}

/// Event reason when `deletionPolicy: Delete` removed the service.
pub const REMOVED: &str = "ServiceRemoved";
/// Event reason when `deletionPolicy: Orphan` left the service and removed the mark.
pub const RELEASED: &str = "ServiceReleased";

/// The TailscaleService kind: everything it needs is in the pass and the clean-ups.
#[derive(Default)]
pub struct TailscaleServiceKind;

impl KindReconciler for TailscaleServiceKind {
    type Object = TailscaleService;
    const AREA: Area = Area::Services;
    const WAITING: &'static str = "the service is written";
    // Two resources naming one service both stand back; when one goes, the other takes over.
    const SIBLINGS_ON_DELETE: bool = true;
    const FINALIZE_ORPHANS: bool = true;

    async fn pass(&self, pass: &Pass<'_, Self>, snapshots: &TailnetSnapshots) -> PassResult {
        let current = &*pass.current;
        let mut resource = ServiceInput::from_object(current);
        resource.spec.common.suspend = pass.suspended(current);
        let others: Vec<ServiceInput> = pass
            .members()
            .iter()
            .map(|s| ServiceInput::from_object(s))
            .filter(|s| s.key != resource.key)
            .collect();
        let policy = snapshots.policy().await?;
        let names = PolicyNames::of_text(&policy.data.hujson);
        let executed =
            reconcile(&resource, &others, snapshots, names.as_ref(), Mode::Apply).await?;
        let mut before = current.current_status();
        if let Some(diff) = &executed.detected {
            // Only the drift: Ready and Synced keep their values until the correction's outcome.
            let mut detected = before.clone();
            set_condition(
                &mut detected.common.conditions,
                ConditionType::Drifted,
                ConditionStatus::True,
                reason::DRIFTED,
                &format!(
                    "{} differs from what this TailscaleService applied: {}",
                    executed.plan.outcome.service_name,
                    diff.summary()
                ),
                current.metadata.generation,
                &pass.now,
            );
            detected.drift = Some(diff.clone());
            before = pass
                .report(current, Some(&before), detected, Vec::new())
                .await?;
        }
        let corrected =
            executed.detected.is_some() || executed.approvals.iter().any(|a| a.correction);
        if corrected {
            pass.shared()
                .metrics
                .record_drift_correction("TailscaleService");
        }
        let mut status = before.clone();
        let lines = contribution_lines(&contributions(current));
        executed
            .plan
            .outcome
            .write_status(&mut status, lines, &pass.now);
        pass.report(
            current,
            Some(&before),
            status,
            applied_event(executed.describe(true)),
        )
        .await?;
        Ok(Next::Resync)
    }

    /// Removes the service, when it is still marked as this resource's (a service someone
    /// else took over, or Tailscale's operator's, is left alone). A service already gone is
    /// fine.
    async fn clean_up(&self, pass: &Pass<'_, Self>) -> CleanUpResult {
        let Some((snapshots, name)) = owned_service(pass).await? else {
            return Ok(());
        };
        let deleted = snapshots.client().delete_service(&name).await;
        snapshots.record_write(Area::Services);
        deleted?;
        let note = format!(
            "deletionPolicy: Delete: removed {name} from tailnet {}; its grant leaves the \
             policy at the next composition",
            pass.tailnet
        );
        pass.publish_clean_up(REMOVED, note).await;
        Ok(())
    }

    /// Leaves the service and removes the ownership mark, so another resource may adopt it.
    async fn orphan(&self, pass: &Pass<'_, Self>) -> CleanUpResult {
        let Some((snapshots, name)) = owned_service(pass).await? else {
            return Ok(());
        };
        let services = snapshots.services().await?;
        let Some(mut service) = services.data.iter().find(|s| s.name == name).cloned() else {
            return Ok(());
        };
        service.annotations.remove(OWNER_ANNOTATION);
        let written = snapshots.client().put_service(&service).await;
        snapshots.record_write(Area::Services);
        written?;
        let note = format!(
            "deletionPolicy: Orphan: left {name} in tailnet {} and removed the {OWNER_ANNOTATION} \
             mark",
            pass.tailnet
        );
        pass.publish_clean_up(RELEASED, note).await;
        Ok(())
    }
}

/// The tailnet's snapshots and the service name when the live service carries this resource's
/// mark (after a fresh read: a deletion must not act on stale ownership).
async fn owned_service(
    pass: &Pass<'_, TailscaleServiceKind>,
) -> Result<Option<(TailnetSnapshots, String)>, ReconcileError> {
    let snapshots = pass.snapshots_for_clean_up()?;
    snapshots.refresh_if_older_than(Area::Services, snapshots.now());
    let services = snapshots.services().await?;
    let (name, key) = (pass.current.service_name(), pass.current.owner_key());
    let ours = services
        .data
        .iter()
        .any(|s| s.name == name && s.annotations.get(OWNER_ANNOTATION) == Some(&key));
    Ok(ours.then_some((snapshots, name)))
}
