//! The `TailnetPolicy` controller: composes every TailnetPolicy of a tailnet into the tailnet's
//! one policy file and applies it, through the pure planner and executor of
//! [`crate::reconcile::tailnet_policy`] (the same ones file mode runs).
//!
//! Runs on the shared [`skeleton`](super::skeleton) (lock, finalizer, ManagedTailnet guard,
//! failure status, events); its own part is the pass: every TailnetPolicy of the tailnet from
//! the reflector store (no API list) → texts resolved (inline, or a ConfigMap key through
//! [`crate::cluster::policy_sources`]) → `reconcile(...)` with the revision history in a
//! ConfigMap of the operator namespace → the status of **every** policy of the tailnet written
//! from the one outcome.
//!
//! Decisions:
//! - **Siblings from the same outcome.** The policy file is tailnet-wide, so one composition
//!   decides every resource's status. Writing all of them from it (instead of triggering a
//!   reconcile of each sibling) is the simplest correct choice: no second composition, no
//!   trigger plumbing, and a sibling that reconciles later computes the same outcome and
//!   writes nothing.
//! - **Serialized per tailnet.** Reconciles of two policies of one tailnet never compose
//!   concurrently (a per-tailnet async mutex), so they never race on the If-Match write or the
//!   history ConfigMap. Different tailnets run in parallel.
//! - **`reconcile-at` means "look now".** A new value of the annotation re-reads the live
//!   policy (the snapshot is otherwise shared for the resync interval), so a console edit is
//!   seen by a forced reconcile and not only at the next resync.
//! - **Watches.** ConfigMaps (metadata only) map to the policies whose `policyFrom` names
//!   them; TailscaleServices map to their tailnet's policies (their grants are composed in,
//!   listed from the API at each pass); Tailnets map to their policies, so a ManagedTailnet becoming Ready applies its policy at
//!   once (the `TailnetNotReady` requeue is only a fallback).
//! - **Deletion.** A finalizer only with `deletionPolicy: Delete` (removed again if the policy
//!   changes to `Orphan`). Deleting a Fragment then recomposes without it and applies; deleting
//!   a Base resets the tailnet's policy to Tailscale's default. With `Orphan` (the default)
//!   deleting writes nothing; the remaining policies compose without the deleted one at their
//!   next reconcile, so a deleted Fragment's rules leave the tailnet then, and a tailnet whose
//!   Base is gone keeps its last policy (its Fragments report `NoBase`).
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PartialObjectMeta};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use super::skeleton::{
    self, APPLIED, CleanUpResult, Extension, KindReconciler, Next, Pass, PassResult, of_tailnet,
};
use super::{Context, Controlled, KindController, KindEvent, Metrics, Stop};
use crate::cluster::policy_sources::{ConfigMapCache, referencing, resolve_all};
use crate::policy::compose::Contribution;
use crate::reconcile::funnel;
use crate::reconcile::tailnet_policy::{
    ApplyReason, ConfigMapRevisionStore, ExecuteResult, LeftOut, PolicyExecuted, execute,
    observe_and_plan,
};
use crate::reconcile::tailscale_service::tailnet_contributions;
use crate::resources::conditions::reason;
use crate::resources::tailnet_policy::PolicyRole;
use crate::resources::{
    FunnelExposure, ReconcileError, TailnetPolicy, TailnetPolicyStatus, TailnetScoped,
    TailscaleService,
};
use crate::snapshot::{Area, TailnetSnapshots};

/// Started by the manager with every kind of [`crate::for_each_kind`].
impl Controlled for TailnetPolicy {
    fn controller(ctx: Arc<Context>, stop: &Stop) -> KindController {
        skeleton::controller(ctx, stop, TailnetPolicyKind::default())
    }
}

/// Event reason when deleting a Base with `deletionPolicy: Delete` reset the tailnet's policy.
pub const RESET: &str = "PolicyReset";
/// Event reason when another kind's contribution (e.g. a TailscaleService grant) was left out
/// of the composition because it fails the checks.
pub const CONTRIBUTION_LEFT_OUT: &str = "ContributionLeftOut";
/// How soon a pass whose write got HTTP 412 plans again (against a fresh read).
pub const CONFLICT_RETRY: Duration = Duration::from_secs(2);

/// The TailnetPolicy kind's own controller state.
#[derive(Default)]
pub struct TailnetPolicyKind {
    /// The `policyFrom` ConfigMaps, read again only when the watch has seen them change.
    config_maps: ConfigMapCache,
}

impl KindReconciler for TailnetPolicyKind {
    type Object = TailnetPolicy;
    const AREA: Area = Area::Policy;
    const WAITING: &'static str = "the policy is applied";

    /// ConfigMaps, metadata only: a change is all that matters; the text is read when
    /// reconciling.
    ///
    /// TailscaleServices map to every policy of their tailnet: what they contribute (grants,
    /// auto-approvers) is composed into the policy.
    fn extend(&self, with: Extension<'_, TailnetPolicy>) -> Controller<TailnetPolicy> {
        let (store, seen_maps) = (with.store.clone(), self.config_maps.clone());
        let (by_tailnet, by_exposure) = (with.store.clone(), with.store.clone());
        with.controller
            .watches(
                Api::<PartialObjectMeta<ConfigMap>>::all(with.client.clone()),
                watcher::Config::default(),
                move |map: PartialObjectMeta<ConfigMap>| {
                    seen_maps.saw(&map);
                    referencing(&store, &map)
                },
            )
            .watches(
                Api::<TailscaleService>::all(with.client.clone()),
                watcher::Config::default(),
                move |service: TailscaleService| {
                    of_tailnet(&by_tailnet, service.tailnet_ref())
                        .iter()
                        .map(|p| ObjectRef::from_obj(&**p))
                        .collect::<Vec<_>>()
                },
            )
            // A FunnelExposure's phase says whether it contributes its node attribute.
            .watches(
                Api::<FunnelExposure>::all(with.client.clone()),
                watcher::Config::default(),
                move |exposure: FunnelExposure| {
                    of_tailnet(&by_exposure, exposure.tailnet_ref())
                        .iter()
                        .map(|p| ObjectRef::from_obj(&**p))
                        .collect::<Vec<_>>()
                },
            )
    }

    async fn pass(&self, pass: &Pass<'_, Self>, snapshots: &TailnetSnapshots) -> PassResult {
        let outcome = compose_and_report(self, pass, snapshots).await?;
        // A 412: someone wrote between the read and the write. The executor dropped the policy
        // snapshot, so the retry re-reads it and plans against what that writer left.
        // An edit saved right after the write: the next pass applies driftPolicy to it soon.
        Ok(match outcome.result {
            ExecuteResult::Conflict { .. } | ExecuteResult::EditedAfterApply { .. } => {
                Next::After(CONFLICT_RETRY)
            }
            _ => Next::Resync,
        })
    }

    /// A Fragment: the remaining policies are composed without it and applied (they must
    /// apply: a Base that is not Ready after the pass keeps the finalizer, and the error says
    /// why). A Base: the tailnet's policy is reset to Tailscale's default (an empty body, with
    /// If-Match).
    async fn clean_up(&self, pass: &Pass<'_, Self>) -> CleanUpResult {
        let (policy, snapshots) = (&pass.current, pass.snapshots_for_clean_up()?);
        if policy.spec.role == PolicyRole::Base {
            let live = snapshots.policy().await?;
            let reset = snapshots
                .client()
                .set_policy("", Some(&live.data.etag))
                .await;
            snapshots.record_write(Area::Policy);
            reset?;
            let note = format!(
                "deletionPolicy: Delete: the policy of tailnet {} was reset to the default",
                pass.tailnet
            );
            pass.publish_clean_up(RESET, note).await;
            return Ok(());
        }
        let outcome = compose_and_report(self, pass, &snapshots).await?;
        let base = live_members(pass)
            .into_iter()
            .find(|m| m.spec.role == PolicyRole::Base)
            .and_then(|b| outcome.outcome(&b.name_any()).cloned());
        match base {
            Some(base) if !base.ready.is_true() => Err(ReconcileError::Conflict {
                message: format!(
                    "TailnetPolicy {} (deletionPolicy: Delete) is still in the tailnet's policy: \
                     the remaining policies do not apply ({}: {}); fix them, or set \
                     deletionPolicy: Orphan",
                    policy.name_any(),
                    base.ready.reason,
                    base.ready.message
                ),
            }),
            // Applied, or no Base left: nothing the operator manages holds the fragment.
            _ => Ok(()),
        }
    }
}

/// What the other kinds of `tailnet` contribute to its policy (TailscaleService grants and
/// auto-approvers, FunnelExposure node attributes), listed from the API so a policy pass never
/// composes without a resource the cluster holds (a policy applied before a watch caught up
/// would drop its grant). A cluster without one of those CRDs (404) has nothing from it.
async fn contributions_of(
    client: &kube::Client,
    tailnet: &str,
) -> Result<Vec<Contribution>, ReconcileError> {
    let services: Vec<TailscaleService> = list_all(client).await?;
    let exposures: Vec<FunnelExposure> = list_all(client).await?;
    let mut contributions =
        tailnet_contributions(services.iter().filter(|s| s.tailnet_ref() == tailnet));
    contributions.extend(funnel::tailnet_contributions(
        exposures.iter().filter(|e| e.tailnet_ref() == tailnet),
    ));
    Ok(contributions)
}

/// Every object of kind `K` in the cluster; none when its CRD is not installed.
async fn list_all<K>(client: &kube::Client) -> Result<Vec<K>, ReconcileError>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(err) => Err(err.into()),
    }
}

/// A Warning event on the Base for each contribution left out of the composition (the
/// contributing resource's own status says why too, when it can tell).
async fn publish_left_out(
    pass: &Pass<'_, TailnetPolicyKind>,
    members: &[Arc<TailnetPolicy>],
    left_out: &[LeftOut],
) {
    let Some(base) = members.iter().find(|m| m.spec.role == PolicyRole::Base) else {
        return;
    };
    for left in left_out {
        super::publish_event(
            pass.shared(),
            &**base,
            true,
            CONTRIBUTION_LEFT_OUT,
            "Reconcile",
            left.to_string(),
        )
        .await;
    }
}

/// The live (not being deleted) policies of the tailnet, by name.
fn live_members(pass: &Pass<'_, TailnetPolicyKind>) -> Vec<Arc<TailnetPolicy>> {
    pass.members()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Composes and applies every live policy of the tailnet, then writes each one's status from
/// the one outcome. Returns the outcome; `Err` when the pass could not run (API failure).
///
/// A drift correction is reported twice: first the plan's view (`Drifted=True` with the diff,
/// gauge 1, a "drift detected" event), then the corrected state. Otherwise detection and
/// correction in one pass would leave no trace of the drift in status.
async fn compose_and_report(
    kind: &TailnetPolicyKind,
    pass: &Pass<'_, TailnetPolicyKind>,
    snapshots: &TailnetSnapshots,
) -> Result<PolicyExecuted, ReconcileError> {
    let members = live_members(pass);
    let shared = pass.shared();
    let mut resources = resolve_all(&shared.client, &members, Some(&kind.config_maps)).await;
    for (resource, member) in resources.iter_mut().zip(&members) {
        resource.spec.common.suspend = pass.suspended(member);
    }
    let history =
        ConfigMapRevisionStore::new(shared.client.clone(), &shared.namespace, &pass.tailnet);
    let contributions = contributions_of(&shared.client, &pass.tailnet).await?;
    let plan = observe_and_plan(&resources, &contributions, snapshots, &history).await?;
    let mut written = pass.statuses(&members);
    if plan.corrects_drift() {
        for member in &members {
            if let Some(outcome) = plan.outcome(&member.name_any()) {
                let update = |status: &mut _| outcome.write_status(status, &pass.now);
                pass.report_update(member, &mut written, update, Vec::new())
                    .await?;
            }
        }
    }
    let outcome = execute(plan, snapshots, &history, Utc::now()).await?;
    record_outcome_metrics(&shared.metrics, &outcome.result);
    publish_left_out(pass, &members, &outcome.left_out).await;
    for member in &members {
        let Some(resource_outcome) = outcome.outcome(&member.name_any()) else {
            continue;
        };
        let before = written.get(&member.name_any()).cloned().unwrap_or_default();
        let mut status = before.clone();
        resource_outcome.write_status(&mut status, &pass.now);
        let events = write_events(Some(&before), &status, &outcome.result);
        pass.report(member, Some(&before), status, events).await?;
    }
    Ok(outcome)
}

/// Counts drift corrections and rollbacks (one per pass: the pass writes one policy file).
fn record_outcome_metrics(metrics: &Metrics, result: &ExecuteResult) {
    match result {
        ExecuteResult::Applied {
            reason: ApplyReason::DriftCorrection,
            ..
        } => metrics.record_drift_correction("TailnetPolicy"),
        ExecuteResult::RolledBack { .. } => metrics.record_rollback("TailnetPolicy"),
        _ => {}
    }
}

/// The policy's own events for a status going from `before` to `after` in a pass that did
/// `result` (pure); the skeleton adds the shared condition events. A new `appliedRevision`:
/// `Applied` (Normal) with the revision and why; after a rollback, `RolledBack` (Warning);
/// after a drift correction, also `Drifted` (Warning) saying which revision corrected it.
pub fn write_events(
    before: Option<&TailnetPolicyStatus>,
    after: &TailnetPolicyStatus,
    result: &ExecuteResult,
) -> Vec<KindEvent> {
    let revision_before = before.and_then(|s| s.applied_revision);
    let Some(revision) = after
        .applied_revision
        .filter(|r| Some(*r) != revision_before)
    else {
        return Vec::new();
    };
    match result {
        ExecuteResult::RolledBack {
            problem, restored, ..
        } => vec![KindEvent::new(
            true,
            reason::ROLLED_BACK,
            format!(
                "the post-apply check failed ({problem}); revision {restored} was restored as \
                 revision {revision}"
            ),
        )],
        ExecuteResult::Applied { reason: why, .. } => {
            let mut events = Vec::new();
            if *why == ApplyReason::DriftCorrection {
                events.push(KindEvent::new(
                    true,
                    reason::DRIFTED,
                    format!(
                        "the live policy was changed outside the operator; corrected by \
                         revision {revision} (driftPolicy: Correct)"
                    ),
                ));
            }
            events.push(KindEvent::new(
                false,
                APPLIED,
                format!("applied revision {revision} ({})", why.as_str()),
            ));
            events
        }
        ExecuteResult::EditedAfterApply {
            reason: why,
            message,
            ..
        } => vec![
            KindEvent::new(
                false,
                APPLIED,
                format!("applied revision {revision} ({})", why.as_str()),
            ),
            KindEvent::new(true, reason::DRIFTED, message.clone()),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ConditionStatus;
    use crate::resources::conditions::{ConditionType, now, set_condition};

    type PolicyEvent = KindEvent;

    /// What the skeleton publishes for a pass: the kind's own events, then the shared ones.
    fn transition_events(
        before: Option<&TailnetPolicyStatus>,
        after: &TailnetPolicyStatus,
        result: &ExecuteResult,
    ) -> Vec<KindEvent> {
        let mut events = write_events(before, after, result);
        events.extend(skeleton::transition_events::<TailnetPolicyKind>(
            before, after,
        ));
        events
    }

    fn status_with(
        ready: (ConditionStatus, &str, &str),
        revision: Option<u32>,
    ) -> TailnetPolicyStatus {
        let mut status = TailnetPolicyStatus {
            applied_revision: revision,
            ..TailnetPolicyStatus::default()
        };
        set_condition(
            &mut status.common.conditions,
            ConditionType::Ready,
            ready.0,
            ready.1,
            ready.2,
            Some(1),
            &now(),
        );
        status
    }

    #[test]
    fn a_steady_state_publishes_nothing() {
        let status = status_with((ConditionStatus::True, "Reconciled", "ok"), Some(3));
        assert!(transition_events(Some(&status), &status, &ExecuteResult::NoWrite).is_empty());
        let failing = status_with(
            (ConditionStatus::False, "Conflict", "group:eng twice"),
            None,
        );
        assert!(transition_events(Some(&failing), &failing, &ExecuteResult::NoWrite).is_empty());
    }

    #[test]
    fn a_new_revision_is_applied_and_a_drift_correction_says_so() {
        let before = status_with((ConditionStatus::True, "Reconciled", "ok"), Some(1));
        let after = status_with((ConditionStatus::True, "Reconciled", "ok"), Some(2));
        let applied = ExecuteResult::Applied {
            revision: 2,
            reason: ApplyReason::SpecChanged,
        };
        let events = transition_events(Some(&before), &after, &applied);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, APPLIED);
        assert!(!events[0].warning && events[0].note.contains("revision 2"));
        let corrected = ExecuteResult::Applied {
            revision: 2,
            reason: ApplyReason::DriftCorrection,
        };
        let reasons: Vec<String> = transition_events(Some(&before), &after, &corrected)
            .into_iter()
            .map(|e| e.reason)
            .collect();
        assert_eq!(reasons, ["Drifted", "Applied"]);
    }

    #[test]
    fn a_failure_is_a_warning_once_and_again_when_it_changes() {
        let ok = status_with((ConditionStatus::True, "Reconciled", "ok"), Some(1));
        let conflict = status_with(
            (ConditionStatus::False, "Conflict", "group:eng twice"),
            Some(1),
        );
        let events = transition_events(Some(&ok), &conflict, &ExecuteResult::NoWrite);
        assert_eq!(
            events,
            [PolicyEvent::new(true, "Conflict", "group:eng twice")]
        );
        let other = status_with(
            (ConditionStatus::False, "Invalid", "tag:x has no owner"),
            Some(1),
        );
        assert_eq!(
            transition_events(Some(&conflict), &other, &ExecuteResult::NoWrite)[0].reason,
            "Invalid"
        );
        let pending = status_with((ConditionStatus::False, "Pending", "waiting"), None);
        assert!(transition_events(None, &pending, &ExecuteResult::NoWrite).is_empty());
    }
}
