//! The `ChangeProposal` controller (`docs/change-proposal.md`): validates each proposal against its target as
//! it is now, shows what it would do, and applies it once a human approves it.
//!
//! Lifecycle (`status.phase`):
//! - new → **Pending** (the [`crate::proposal::preview`] passed: status has the validation
//!   results, the YAML diff, the access diff for policies, the target's `resourceVersion` and
//!   a hash of its spec/labels/annotations) or **Rejected** (it did not, the target is
//!   missing or of an unsupported kind, or it was created already approved: the CRD's CEL rule
//!   forbids that, and the controller refuses it too where the rule did not run).
//! - Pending, target changed (its spec, labels or annotations differ from the hash) →
//!   **Stale**. A target whose `resourceVersion` moved only because its status was written is
//!   not stale.
//! - Pending, `spec.approved: true`, mode `GitOps` → **Approved**: never applied; the patch is
//!   exported with `tailnet-operator proposal export`.
//! - Pending, approved, mode `Apply` → **Approved** (recorded first), the preview is computed
//!   again against the current world, then the patch is applied by server-side apply under
//!   the field manager [`PROPOSALS_FIELD_MANAGER`] (forced: a human approved it), with the
//!   target's `resourceVersion` as precondition. Only the fields the patch sets are applied,
//!   so the proposal manager owns exactly what it changed; keys the patch removes (`null`)
//!   follow as a merge patch under the same manager, since an apply cannot remove a field
//!   another manager owns. → **Applied**, or **Stale** (the target changed, or the API server
//!   answered 409), or **Failed** (the checks no longer pass, or the API server refused).
//!   Transient API errors retry with back-off and stay Approved; a retry that finds the patch
//!   already in effect records Applied.
//! - Applied, Failed, Stale, Rejected (and Approved GitOps proposals) are deleted
//!   `--proposal-ttl` (default [`DEFAULT_PROPOSAL_TTL`]) after `status.finishedAt`.
//!
//! Every transition publishes an event whose reason is the new phase. TailnetPolicy changes
//! trigger the open proposals that target them (so they turn Stale at once); proposals of
//! other kinds notice at their periodic recheck ([`PENDING_RECHECK`]) or on approval.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::Value;

use super::{
    Context, KindContext, KindController, Stop, controller_for, instrumented, kind_controller,
    publish_event, write_status,
};
use crate::cluster::proposals::{
    ApplyError, apply_patch, create_object, delete_object, fetch_target, gather_world, target_hash,
};
pub use crate::cluster::proposals::{PROPOSALS_FIELD_MANAGER, ProposeError, propose};
use crate::proposal::{self, ProposalWorld, kinds};
use crate::resources::ReconcileError;
use crate::resources::change_proposal::{
    ChangeProposal, ChangeProposalStatus, ProposalMode, ProposalOperation, ProposalPhase,
};
use crate::resources::conditions::time_from;
use crate::resources::tailnet_policy::TailnetPolicy;

/// The kind label in metrics and logs.
pub const KIND: &str = "ChangeProposal";
/// How long finished proposals are kept when `run --proposal-ttl` is not given.
pub const DEFAULT_PROPOSAL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often an open proposal re-checks its target (TailnetPolicy targets are watched too).
pub const PENDING_RECHECK: Duration = Duration::from_secs(300);
/// Longest `status.message` (characters); each check's message is capped on its own.
pub const MAX_STATUS_MESSAGE: usize = 4000;
/// How soon a proposal waiting for its tailnet's snapshots looks again.
pub const TAILNET_WAIT: Duration = Duration::from_secs(10);

/// Per-controller state beside the shared [`Context`].
pub struct ProposalContext {
    pub shared: Arc<Context>,
    /// Every ChangeProposal the watch has seen (for [`phase_counts`]).
    pub store: Store<ChangeProposal>,
}

impl KindContext for ProposalContext {
    fn shared(&self) -> &Context {
        &self.shared
    }
}

/// The ChangeProposal controller, ready for the manager to run.
impl super::Controlled for ChangeProposal {
    fn controller(ctx: Arc<Context>, stop: &Stop) -> KindController {
        let client = ctx.client.clone();
        let controller = controller_for(
            Api::<ChangeProposal>::all(client.clone()),
            watcher::Config::default(),
            |_| {},
        );
        let store = controller.store();
        let by_target = store.clone();
        let controller = controller
            .watches(
                Api::<TailnetPolicy>::all(client),
                watcher::Config::default(),
                move |policy: TailnetPolicy| {
                    open_proposals_for(&by_target, "TailnetPolicy", &policy)
                },
            )
            .graceful_shutdown_on(stop.wait());
        kind_controller(
            KIND,
            controller,
            reconcile,
            Arc::new(ProposalContext { shared: ctx, store }),
        )
    }
}

/// How many proposals are in each phase (a proposal not validated yet counts as Pending),
/// every phase listed, for a proposals-by-phase gauge.
pub fn phase_counts(proposals: &[Arc<ChangeProposal>]) -> Vec<(ProposalPhase, usize)> {
    ProposalPhase::ALL
        .iter()
        .map(|&phase| {
            let count = proposals
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase).unwrap_or_default() == phase)
                .count();
            (phase, count)
        })
        .collect()
}

/// The unfinished proposals whose target is `object` (of `kind`).
fn open_proposals_for<K: ResourceExt>(
    store: &Store<ChangeProposal>,
    kind: &str,
    object: &K,
) -> Vec<ObjectRef<ChangeProposal>> {
    let (name, namespace) = (object.name_any(), object.namespace());
    store
        .state()
        .iter()
        .filter(|p| {
            let t = &p.spec.target;
            let finished = p
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(ProposalPhase::is_finished);
            !finished
                && t.kind == kind
                && t.name == name
                && (namespace.is_none()
                    || t.namespace.as_deref().or(p.namespace().as_deref()) == namespace.as_deref())
        })
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

async fn reconcile(
    proposal: Arc<ChangeProposal>,
    ctx: Arc<ProposalContext>,
) -> Result<Action, ReconcileError> {
    let shared = Arc::clone(&ctx.shared);
    let result = instrumented(&shared, &*proposal, reconcile_inner(&proposal, &ctx.shared)).await;
    // From the store, which lags our own status write by one watch event: the gauge is as
    // fresh as the operator's view of the cluster, and every reconcile refreshes it.
    for (phase, count) in phase_counts(&ctx.store.state()) {
        shared.metrics.set_proposals(phase, count);
    }
    result
}

/// One proposal's state and what it needs to move on.
struct Step<'a> {
    ctx: &'a Context,
    api: Api<ChangeProposal>,
    proposal: &'a ChangeProposal,
    /// What the status is on the server (the store's copy lags behind our own writes).
    written: ChangeProposalStatus,
    now: DateTime<Utc>,
}

async fn reconcile_inner(
    proposal: &ChangeProposal,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    if proposal.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = proposal.namespace().unwrap_or_default();
    let mut step = Step {
        ctx,
        api: Api::namespaced(ctx.client.clone(), &namespace),
        proposal,
        written: proposal.status.clone().unwrap_or_default(),
        now: Utc::now().trunc_subsecs(0),
    };
    match step.written.phase {
        None => step.validate().await,
        Some(ProposalPhase::Pending) => step.pending().await,
        Some(ProposalPhase::Approved) if proposal.spec.mode == ProposalMode::Apply => {
            step.apply().await
        }
        // Approved GitOps proposals and finished ones only wait for their garbage collection.
        Some(_) => step.collect_garbage().await,
    }
}

impl Step<'_> {
    fn label(&self) -> String {
        let t = &self.proposal.spec.target;
        match &t.namespace {
            Some(ns) => format!("{}/{ns}/{}", t.kind, t.name),
            None => format!("{}/{}", t.kind, t.name),
        }
    }

    /// First look at a new proposal: Pending or Rejected.
    async fn validate(&mut self) -> Result<Action, ReconcileError> {
        let spec = &self.proposal.spec;
        if spec.approved && self.proposal.metadata.generation.unwrap_or(1) <= 1 {
            // The CRD's CEL rule refuses this; checked again for API servers that do not run
            // it (an old CRD, validation disabled): approval must be a reviewer's update.
            let message = "created already approved: a proposal must be created with \
                           spec.approved unset and approved by a reviewer afterwards"
                .to_owned();
            return self.finish(ProposalPhase::Rejected, message, |_| {}).await;
        }
        let target = match self.fetch_target().await? {
            Ok(target) => target,
            Err(message) => return self.finish(ProposalPhase::Rejected, message, |_| {}).await,
        };
        let change = match proposal::Change::of(spec) {
            Ok(change) => change,
            Err(err) => {
                return self
                    .finish(ProposalPhase::Rejected, err.to_string(), |_| {})
                    .await;
            }
        };
        let world = match change.subject(target.as_ref()) {
            Some(subject) => match self.world(subject, &change.patch()).await? {
                Some(world) => world,
                None => return self.wait_for_tailnet(subject).await,
            },
            // A patch or delete of nothing: preview_spec names the missing target.
            None => ProposalWorld::default(),
        };
        let preview = match proposal::preview_spec(spec, target.as_ref(), &world) {
            Ok(preview) => preview,
            Err(err) => {
                return self
                    .finish(ProposalPhase::Rejected, err.to_string(), |_| {})
                    .await;
            }
        };
        let resource_version = target
            .as_ref()
            .and_then(|t| t.pointer("/metadata/resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let hash = target.as_ref().map(target_hash);
        let record = |status: &mut ChangeProposalStatus| {
            status.validation = preview.validation.clone();
            status.diff = Some(preview.diff.clone()).filter(|d| !d.is_empty());
            status.access_diff = preview.access_diff.clone();
            status.target_resource_version = resource_version.clone();
            status.target_hash = hash.clone();
        };
        if !preview.is_valid() {
            let message = format!(
                "the {} does not pass its checks: {}; fix it and create a new proposal",
                spec.operation.as_str().to_lowercase(),
                preview.problems()
            );
            return self.finish(ProposalPhase::Rejected, message, record).await;
        }
        let against = match &resource_version {
            Some(version) => format!("{} (resourceVersion {version})", self.label()),
            None => format!("{} (not existing yet: created on approval)", self.label()),
        };
        let message = format!(
            "{} validated against {against}: {} checks passed; waiting for a reviewer to set \
             spec.approved: true",
            spec.operation.as_str(),
            preview.validation.len()
        );
        self.transition(ProposalPhase::Pending, message, false, record)
            .await?;
        self.pending_with(target).await
    }

    async fn pending(&mut self) -> Result<Action, ReconcileError> {
        let target = match self.fetch_target().await? {
            Ok(target) => target,
            Err(message) => return self.finish(ProposalPhase::Failed, message, |_| {}).await,
        };
        self.pending_with(target).await
    }

    /// A Pending proposal: Stale when the target changed, on to Approved once approved.
    async fn pending_with(&mut self, target: Option<Value>) -> Result<Action, ReconcileError> {
        if let Some(message) = self.staleness(target.as_ref()) {
            return self.finish(ProposalPhase::Stale, message, |_| {}).await;
        }
        if !self.proposal.spec.approved {
            return Ok(Action::requeue(PENDING_RECHECK));
        }
        if self.proposal.spec.mode == ProposalMode::GitOps {
            let message = format!(
                "approved for GitOps: the operator never applies it; run `tailnet-operator \
                 proposal export {} -n {}` and commit the result",
                self.proposal.name_any(),
                self.proposal.namespace().unwrap_or_default()
            );
            let now = time_from(self.now);
            self.transition(ProposalPhase::Approved, message, false, |s| {
                s.finished_at = Some(now.clone())
            })
            .await?;
            return self.collect_garbage().await;
        }
        self.transition(
            ProposalPhase::Approved,
            format!("approved: applying to {}", self.label()),
            false,
            |_| {},
        )
        .await?;
        self.apply_to(target).await
    }

    async fn apply(&mut self) -> Result<Action, ReconcileError> {
        let target = match self.fetch_target().await? {
            Ok(target) => target,
            Err(message) => return self.finish(ProposalPhase::Failed, message, |_| {}).await,
        };
        self.apply_to(target).await
    }

    /// An approved `Apply` proposal: apply it unless the target changed (or it is in effect).
    async fn apply_to(&mut self, target: Option<Value>) -> Result<Action, ReconcileError> {
        let spec = &self.proposal.spec;
        let change = match proposal::Change::of(spec) {
            Ok(change) => change,
            Err(err) => {
                return self
                    .finish(ProposalPhase::Failed, err.to_string(), |_| {})
                    .await;
            }
        };
        if change.in_effect(target.as_ref()) {
            return self.applied("the change is in effect on the target").await;
        }
        if let Some(message) = self.staleness(target.as_ref()) {
            return self.finish(ProposalPhase::Stale, message, |_| {}).await;
        }
        let world = match change.subject(target.as_ref()) {
            Some(subject) => match self.world(subject, &change.patch()).await? {
                Some(world) => world,
                None => return Ok(Action::requeue(TAILNET_WAIT)),
            },
            None => ProposalWorld::default(),
        };
        let preview = match proposal::preview_spec(spec, target.as_ref(), &world) {
            Ok(preview) if preview.is_valid() => preview,
            Ok(preview) => {
                let message = format!(
                    "not applied: the change no longer passes its checks against the current \
                     state: {}",
                    preview.problems()
                );
                let validation = preview.validation.clone();
                return self
                    .finish(ProposalPhase::Failed, message, |s| {
                        s.validation = validation
                    })
                    .await;
            }
            Err(err) => {
                return self
                    .finish(ProposalPhase::Failed, format!("not applied: {err}"), |_| {})
                    .await;
            }
        };
        let (client, target_ref) = (&self.ctx.client, &spec.target);
        let namespace = self.target_namespace();
        let written = match (change, &target) {
            (proposal::Change::Patch(patch), Some(target)) => {
                apply_patch(client, target_ref, &namespace, target, patch).await
            }
            (proposal::Change::Create(object), _) => {
                create_object(client, target_ref, &namespace, object).await
            }
            (proposal::Change::Delete, Some(target)) => {
                delete_object(client, target_ref, &namespace, target).await
            }
            // staleness() answered for a patch or delete whose target is gone.
            (_, None) => Err(ApplyError::Stale(format!("{} is gone", self.label()))),
        };
        let done = match change {
            proposal::Change::Patch(_) => "applied to",
            proposal::Change::Create(_) => "created",
            proposal::Change::Delete => "deleted",
        };
        match written {
            Ok(()) => {
                let note = match &preview.access_diff {
                    Some(access) => {
                        format!("{done} {}; access: {}", self.label(), first_line(access))
                    }
                    None => format!("{done} {}", self.label()),
                };
                self.applied(&note).await
            }
            Err(ApplyError::Stale(message)) => {
                self.finish(ProposalPhase::Stale, message, |_| {}).await
            }
            Err(ApplyError::Refused(message)) => {
                self.finish(ProposalPhase::Failed, message, |_| {}).await
            }
            Err(ApplyError::Retry(err)) => Err(err),
        }
    }

    async fn applied(&mut self, message: &str) -> Result<Action, ReconcileError> {
        let now = time_from(self.now);
        self.finish(ProposalPhase::Applied, message.to_owned(), |s| {
            s.applied_at = Some(now.clone())
        })
        .await
    }

    /// Why the proposal is stale against `target`, if it is: a create whose name got taken,
    /// a patch or delete whose target changed or went away.
    fn staleness(&self, target: Option<&Value>) -> Option<String> {
        if self.proposal.spec.operation == ProposalOperation::Create {
            return target.map(|_| {
                format!(
                    "{} was created by someone else after the proposal was computed: propose a \
                     patch to it instead",
                    self.label()
                )
            });
        }
        let Some(target) = target else {
            return Some(format!(
                "the target {} was deleted after the proposal was computed",
                self.label()
            ));
        };
        let recorded = self.written.target_hash.as_deref()?;
        if target_hash(target) == recorded {
            return None;
        }
        let now = target
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("?");
        Some(format!(
            "the target {} changed after the proposal was computed (resourceVersion {} → \
             {now}): propose the change again against its current state",
            self.label(),
            self.written
                .target_resource_version
                .as_deref()
                .unwrap_or("?"),
        ))
    }

    /// A final phase: recorded with `finishedAt`, then garbage-collected after the TTL.
    async fn finish(
        &mut self,
        phase: ProposalPhase,
        message: String,
        fill: impl FnOnce(&mut ChangeProposalStatus),
    ) -> Result<Action, ReconcileError> {
        let now = time_from(self.now);
        let warning = phase != ProposalPhase::Applied;
        self.transition(phase, message, warning, |status| {
            fill(status);
            status.finished_at = Some(now.clone());
        })
        .await?;
        self.collect_garbage().await
    }

    /// Writes the new phase (and whatever `fill` sets) and publishes its event.
    async fn transition(
        &mut self,
        phase: ProposalPhase,
        message: String,
        warning: bool,
        fill: impl FnOnce(&mut ChangeProposalStatus),
    ) -> Result<(), ReconcileError> {
        let mut status = self.written.clone();
        let changed_phase = status.phase != Some(phase);
        status.phase = Some(phase);
        let message = proposal::cap(message, MAX_STATUS_MESSAGE);
        status.message = Some(message.clone());
        status.common.observed_generation = self.proposal.metadata.generation;
        fill(&mut status);
        if status != self.written {
            status.common.last_sync_time = Some(time_from(self.now));
        }
        write_status(&self.api, self.proposal, Some(&self.written), &status).await?;
        self.written = status;
        if changed_phase {
            let action = match phase {
                ProposalPhase::Pending | ProposalPhase::Rejected => "Validate",
                ProposalPhase::Approved | ProposalPhase::Applied | ProposalPhase::Failed => "Apply",
                ProposalPhase::Stale => "Check",
            };
            publish_event(
                self.ctx,
                self.proposal,
                warning,
                phase.as_str(),
                action,
                message,
            )
            .await;
        }
        Ok(())
    }

    /// Deletes a finished proposal once its TTL has passed; otherwise waits for that moment.
    async fn collect_garbage(&self) -> Result<Action, ReconcileError> {
        let Some(finished) = self.written.finished_at.as_ref() else {
            return Ok(Action::await_change());
        };
        let ttl = self.ctx.proposal_ttl;
        let age = self.now.timestamp() - finished.0.as_second();
        let remaining = i64::try_from(ttl.as_secs())
            .unwrap_or(i64::MAX)
            .saturating_sub(age);
        if remaining > 0 {
            return Ok(Action::requeue(Duration::from_secs(
                remaining.unsigned_abs(),
            )));
        }
        tracing::info!(
            name = %self.proposal.name_any(),
            namespace = ?self.proposal.namespace(),
            phase = ?self.written.phase,
            "deleting a finished ChangeProposal after its TTL"
        );
        match self
            .api
            .delete(&self.proposal.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(Action::await_change()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Action::await_change()),
            Err(err) => Err(err.into()),
        }
    }

    fn target_namespace(&self) -> Option<String> {
        self.proposal
            .spec
            .target
            .namespace
            .clone()
            .or_else(|| self.proposal.namespace())
    }

    /// The target as JSON (`Ok(None)`: it does not exist); the inner `Err` is why the
    /// proposal cannot name it (unsupported kind, a namespace on a cluster-scoped kind).
    async fn fetch_target(&self) -> Result<Result<Option<Value>, String>, ReconcileError> {
        let target = &self.proposal.spec.target;
        let entry = match kinds::lookup(&target.kind) {
            Ok(entry) => entry,
            Err(err) => return Ok(Err(err.to_string())),
        };
        if !entry.namespaced && target.namespace.is_some() {
            return Ok(Err(format!(
                "{} is cluster-scoped: remove spec.target.namespace",
                entry.kind
            )));
        }
        Ok(Ok(fetch_target(
            &self.ctx.client,
            target,
            self.target_namespace().as_deref(),
        )
        .await?))
    }

    /// The world for `target` (or the object to create) and `patch`; `None` while a policy
    /// target's tailnet has no snapshots yet.
    async fn world(
        &self,
        target: &Value,
        patch: &Value,
    ) -> Result<Option<ProposalWorld>, ReconcileError> {
        let needs_tailnet = target.get("kind").and_then(Value::as_str) == Some("TailnetPolicy");
        let snapshots = self.ctx.snapshots.get(tailnet_ref(target));
        if needs_tailnet && snapshots.is_none() {
            return Ok(None);
        }
        let world = gather_world(&self.ctx.client, snapshots.as_ref(), target, patch).await?;
        Ok(Some(world))
    }

    async fn wait_for_tailnet(&mut self, target: &Value) -> Result<Action, ReconcileError> {
        let message = format!(
            "waiting for ManagedTailnet {:?} to be Ready: the policy checks need its users, devices \
             and live policy",
            tailnet_ref(target)
        );
        let mut status = self.written.clone();
        status.message = Some(message);
        write_status(&self.api, self.proposal, Some(&self.written), &status).await?;
        self.written = status;
        Ok(Action::requeue(TAILNET_WAIT))
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// `spec.tailnetRef` of a target object (`default` when unset).
fn tailnet_ref(target: &Value) -> &str {
    target
        .pointer("/spec/tailnetRef")
        .and_then(Value::as_str)
        .unwrap_or(crate::resources::common::DEFAULT_TAILNET_REF)
}
