//! The `ChangeProposal` controller (DESIGN §5): validates each proposal against its target as
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
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{
    Context, KindContext, KindController, Stop, controller_for, instrumented, kind_controller,
    publish_event, write_status,
};
use crate::proposal::{self, ProposalWorld, kinds};
use crate::reconcile::view::tailnet_view;
use crate::resources::change_proposal::{
    ChangeProposal, ChangeProposalSpec, ChangeProposalStatus, ProposalMode, ProposalPhase,
    ProposalTarget,
};
use crate::resources::conditions::time_from;
use crate::resources::tailnet_policy::TailnetPolicy;
use crate::resources::{ReconcileError, TailnetPolicySpec};
use crate::snapshot::TailnetSnapshots;

/// The kind label in metrics and logs.
pub const KIND: &str = "ChangeProposal";
/// The field manager of approved patches, distinct from the operator's own.
pub const PROPOSALS_FIELD_MANAGER: &str = "tailnet-operator-proposals";
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
            Ok(Some(target)) => target,
            Ok(None) => {
                let message = format!(
                    "the target {} does not exist: check spec.target (kind, name, namespace)",
                    self.label()
                );
                return self.finish(ProposalPhase::Rejected, message, |_| {}).await;
            }
            Err(message) => return self.finish(ProposalPhase::Rejected, message, |_| {}).await,
        };
        let Some(world) = self.world(&target).await? else {
            return self.wait_for_tailnet(&target).await;
        };
        let preview = match proposal::preview(&target, &spec.patch, &world) {
            Ok(preview) => preview,
            Err(err) => {
                return self
                    .finish(ProposalPhase::Rejected, err.to_string(), |_| {})
                    .await;
            }
        };
        let resource_version = target
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let hash = target_hash(&target);
        let record = |status: &mut ChangeProposalStatus| {
            status.validation = preview.validation.clone();
            status.diff = Some(preview.diff.clone()).filter(|d| !d.is_empty());
            status.access_diff = preview.access_diff.clone();
            status.target_resource_version = resource_version.clone();
            status.target_hash = Some(hash.clone());
        };
        if !preview.is_valid() {
            let message = format!(
                "the patch does not pass its checks: {}; fix it and create a new proposal",
                preview.problems()
            );
            return self.finish(ProposalPhase::Rejected, message, record).await;
        }
        let message = format!(
            "validated against {} (resourceVersion {}): {} checks passed; waiting for a \
             reviewer to set spec.approved: true",
            self.label(),
            resource_version.as_deref().unwrap_or("?"),
            preview.validation.len()
        );
        self.transition(ProposalPhase::Pending, message, false, record)
            .await?;
        self.pending_with(Some(target)).await
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
        let Some(target) = target else {
            let message = format!(
                "the target {} was deleted before the patch was applied",
                self.label()
            );
            return self.finish(ProposalPhase::Stale, message, |_| {}).await;
        };
        let patch = &self.proposal.spec.patch;
        if in_effect(&target, patch) {
            return self.applied("the patch is in effect on the target").await;
        }
        if let Some(message) = self.staleness(Some(&target)) {
            return self.finish(ProposalPhase::Stale, message, |_| {}).await;
        }
        let Some(world) = self.world(&target).await? else {
            return Ok(Action::requeue(TAILNET_WAIT));
        };
        let preview = match proposal::preview(&target, patch, &world) {
            Ok(preview) if preview.is_valid() => preview,
            Ok(preview) => {
                let message = format!(
                    "not applied: the patch no longer passes its checks against the current \
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
        match apply_patch(
            &self.ctx.client,
            &self.proposal.spec.target,
            &self.target_namespace(),
            &target,
            patch,
        )
        .await
        {
            Ok(()) => {
                let note = match &preview.access_diff {
                    Some(access) => format!(
                        "applied to {}; access: {}",
                        self.label(),
                        first_line(access)
                    ),
                    None => format!("applied to {}", self.label()),
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

    /// Why the proposal is stale against `target`, if it is.
    fn staleness(&self, target: Option<&Value>) -> Option<String> {
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

    /// The world for `target`; `None` while a policy target's tailnet has no snapshots yet.
    async fn world(&self, target: &Value) -> Result<Option<ProposalWorld>, ReconcileError> {
        let needs_tailnet = target.get("kind").and_then(Value::as_str) == Some("TailnetPolicy");
        let snapshots = self.ctx.snapshots.get(tailnet_ref(target));
        if needs_tailnet && snapshots.is_none() {
            return Ok(None);
        }
        let world = gather_world(
            &self.ctx.client,
            snapshots.as_ref(),
            target,
            &self.proposal.spec.patch,
        )
        .await?;
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

/// SHA-256 (hex) of what a proposal may change and is computed from: the target's spec,
/// labels and annotations (not its status or server metadata).
pub fn target_hash(target: &Value) -> String {
    let shown = proposal::display_object(target);
    hex::encode(Sha256::digest(shown.to_string().as_bytes()))
}

/// Whether applying `patch` to `target` would change nothing it shows.
fn in_effect(target: &Value, patch: &Value) -> bool {
    let patched = proposal::apply_merge_patch(target, patch);
    proposal::display_object(&patched) == proposal::display_object(target)
}

/// The API of `target`'s kind (from the proposal registry's CRD).
fn dynamic_api(
    client: &Client,
    entry: &kinds::KindEntry,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let version = entry
        .crd
        .spec
        .versions
        .first()
        .map_or("v1alpha1", |v| v.name.as_str());
    let gvk = GroupVersionKind::gvk(&entry.crd.spec.group, version, &entry.kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &entry.crd.spec.names.plural);
    match namespace {
        Some(ns) if entry.namespaced => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    }
}

/// The target of a proposal as JSON, `None` when it does not exist. `namespace` is used for
/// namespaced kinds (the target's, or else the proposal's). Unsupported kinds are an
/// `InvalidSpec` error.
pub async fn fetch_target(
    client: &Client,
    target: &ProposalTarget,
    namespace: Option<&str>,
) -> Result<Option<Value>, ReconcileError> {
    let entry = kinds::lookup(&target.kind)
        .map_err(|e| ReconcileError::invalid("spec.target.kind", e.to_string()))?;
    let api = dynamic_api(client, entry, namespace);
    let Some(object) = api.get_opt(&target.name).await? else {
        return Ok(None);
    };
    let mut value = serde_json::to_value(&object)
        .map_err(|e| ReconcileError::internal(format!("serializing the target: {e}")))?;
    // A DynamicObject may come back without its type when the server omits it.
    if let Some(root) = value.as_object_mut() {
        root.entry("apiVersion")
            .or_insert_with(|| Value::String(entry.api_version()));
        root.entry("kind")
            .or_insert_with(|| Value::String(entry.kind.clone()));
    }
    Ok(Some(value))
}

/// Gathers the [`ProposalWorld`] for `target` and `patch` from the cluster and, when given,
/// the target tailnet's snapshots: for a TailnetPolicy target every TailnetPolicy (one LIST),
/// the ConfigMaps their `policyFrom` and the patched target's name (one GET each), the
/// tailnet's users and devices and its live policy. Other kinds need nothing yet.
pub async fn gather_world(
    client: &Client,
    snapshots: Option<&TailnetSnapshots>,
    target: &Value,
    patch: &Value,
) -> Result<ProposalWorld, ReconcileError> {
    let mut world = ProposalWorld::default();
    if target.get("kind").and_then(Value::as_str) != Some("TailnetPolicy") {
        return Ok(world);
    }
    world.policies = Api::<TailnetPolicy>::all(client.clone())
        .list(&Default::default())
        .await?
        .items;
    let patched = proposal::apply_merge_patch(target, patch);
    let patched_spec: Option<TailnetPolicySpec> = patched
        .get("spec")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let mut refs: Vec<(String, String)> = world
        .policies
        .iter()
        .map(|p| &p.spec)
        .chain(patched_spec.as_ref())
        .filter_map(|spec| spec.policy_from.as_ref())
        .map(|from| {
            let r = &from.config_map_key_ref;
            (r.namespace.clone(), r.name.clone())
        })
        .collect();
    refs.sort();
    refs.dedup();
    for (namespace, name) in refs {
        if let Some(map) = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
            .get_opt(&name)
            .await?
        {
            world.config_maps.push(map);
        }
    }
    if let Some(snapshots) = snapshots {
        let (policy, devices, users) =
            tokio::join!(snapshots.policy(), snapshots.devices(), snapshots.users());
        let (policy, devices, users) = (policy?, devices?, users?);
        world.view = tailnet_view(&devices.data, &users.data);
        world.live_policy = Some(policy.data.hujson.clone());
    }
    Ok(world)
}

/// Why [`propose`] created nothing.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// No preview could be computed (unsupported kind, a forbidden path, ...).
    #[error(transparent)]
    Proposal(#[from] proposal::ProposalError),
    #[error("the target {0} does not exist: check the kind, name and namespace")]
    TargetNotFound(String),
    #[error(
        "spec.approved must be false: a proposal is approved by a reviewer after it is created"
    )]
    AlreadyApproved,
    /// The patch fails its checks; the preview says which and why.
    #[error("the patch is not valid, nothing was created: {}", .0.problems())]
    Invalid(Box<proposal::Preview>),
    #[error(transparent)]
    Kube(#[from] ReconcileError),
}

/// Validates `spec` against its target as it is now and, only when the preview is valid,
/// creates the ChangeProposal in `namespace` (named `<kind>-<target>-<random>`). Returns the
/// created object and the preview (YAML diff, access diff, checks) to show the proposer; the
/// controller then records the same in status. For the MCP server's kube backend and the
/// operator's loopback API. `snapshots`: the target tailnet's, when at hand (policy tests and
/// access diffs need its users, devices and live policy).
pub async fn propose(
    client: &Client,
    snapshots: Option<&TailnetSnapshots>,
    namespace: &str,
    spec: ChangeProposalSpec,
) -> Result<(ChangeProposal, proposal::Preview), ProposeError> {
    if spec.approved {
        return Err(ProposeError::AlreadyApproved);
    }
    let target_ns = spec
        .target
        .namespace
        .clone()
        .unwrap_or_else(|| namespace.to_owned());
    let Some(target) = fetch_target(client, &spec.target, Some(&target_ns)).await? else {
        return Err(ProposeError::TargetNotFound(format!(
            "{}/{}",
            spec.target.kind, spec.target.name
        )));
    };
    let world = gather_world(client, snapshots, &target, &spec.patch).await?;
    let preview = proposal::preview(&target, &spec.patch, &world)?;
    if !preview.is_valid() {
        return Err(ProposeError::Invalid(Box::new(preview)));
    }
    let mut object = ChangeProposal::new("", spec);
    object.metadata.name = None;
    object.metadata.namespace = Some(namespace.to_owned());
    object.metadata.generate_name = Some(generate_name(&object.spec.target));
    let created = Api::<ChangeProposal>::namespaced(client.clone(), namespace)
        .create(&Default::default(), &object)
        .await
        .map_err(ReconcileError::from)?;
    Ok((created, preview))
}

/// `<kind>-<name>-` in lower case, short enough for the API server's 5 random characters.
fn generate_name(target: &ProposalTarget) -> String {
    let mut prefix = format!("{}-{}", target.kind.to_lowercase(), target.name);
    prefix.truncate(57);
    format!("{}-", prefix.trim_end_matches(['-', '.']))
}

/// Why applying did not happen.
enum ApplyError {
    /// The target changed under us (409): the proposal is Stale.
    Stale(String),
    /// The API server refused the change (invalid, forbidden): the proposal Failed.
    Refused(String),
    /// Worth retrying (a transient API error): stays Approved.
    Retry(ReconcileError),
}

/// Applies `patch` to `target`: server-side apply of the fields it sets (forced, under
/// [`PROPOSALS_FIELD_MANAGER`], `resourceVersion` as precondition), then a merge patch of the
/// keys it removes, if any.
async fn apply_patch(
    client: &Client,
    target_ref: &ProposalTarget,
    namespace: &Option<String>,
    target: &Value,
    patch: &Value,
) -> Result<(), ApplyError> {
    let entry = kinds::lookup(&target_ref.kind).map_err(|e| ApplyError::Refused(e.to_string()))?;
    let api = dynamic_api(client, entry, namespace.as_deref());
    let name = &target_ref.name;
    let mut version = target
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let sets = without_nulls(patch);
    if sets.as_object().is_some_and(|o| !o.is_empty()) {
        let mut body = sets;
        body["apiVersion"] = json!(entry.api_version());
        body["kind"] = json!(entry.kind);
        body["metadata"]["name"] = json!(name);
        body["metadata"]["resourceVersion"] = json!(version);
        let params = PatchParams::apply(PROPOSALS_FIELD_MANAGER).force();
        let applied = api
            .patch(name, &params, &Patch::Apply(&body))
            .await
            .map_err(classify)?;
        version = applied.resource_version().unwrap_or_default();
    }
    let removals = only_nulls(patch);
    if removals.as_object().is_some_and(|o| !o.is_empty()) {
        let mut body = removals;
        body["metadata"]["resourceVersion"] = json!(version);
        let params = PatchParams {
            field_manager: Some(PROPOSALS_FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        api.patch(name, &params, &Patch::Merge(&body))
            .await
            .map_err(classify)?;
    }
    Ok(())
}

fn classify(err: kube::Error) -> ApplyError {
    match &err {
        kube::Error::Api(status) if status.code == 409 => ApplyError::Stale(format!(
            "the target changed while the patch was being applied ({}): propose the change \
             again against its current state",
            status.message
        )),
        kube::Error::Api(status) if matches!(status.code, 400 | 403 | 404 | 422) => {
            ApplyError::Refused(format!(
                "the API server refused the patch ({} {}): {}",
                status.code, status.reason, status.message
            ))
        }
        _ => ApplyError::Retry(err.into()),
    }
}

/// The merge patch without its `null`s (and without objects left empty by removing them).
fn without_nulls(patch: &Value) -> Value {
    match patch {
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                // An object left empty sets nothing (a merge patch object merges).
                .filter(|(_, v)| !v.as_object().is_some_and(Map::is_empty))
                .collect();
            Value::Object(kept)
        }
        other => other.clone(),
    }
}

/// Only the `null`s of the merge patch (the keys it removes), with their parents.
fn only_nulls(patch: &Value) -> Value {
    let Value::Object(map) = patch else {
        return Value::Object(Map::new());
    };
    let kept: Map<String, Value> = map
        .iter()
        .filter_map(|(k, v)| match v {
            Value::Null => Some((k.clone(), Value::Null)),
            Value::Object(_) => {
                let inner = only_nulls(v);
                (!inner.as_object().is_some_and(Map::is_empty)).then(|| (k.clone(), inner))
            }
            _ => None,
        })
        .collect();
    Value::Object(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_splits_into_what_it_sets_and_what_it_removes() {
        let patch = json!({"spec": {"policy": "{}", "policyFrom": null, "x": {"a": null}},
                           "metadata": {"labels": {"team": "a", "old": null}}});
        assert_eq!(
            without_nulls(&patch),
            json!({"spec": {"policy": "{}"}, "metadata": {"labels": {"team": "a"}}})
        );
        assert_eq!(
            only_nulls(&patch),
            json!({"spec": {"policyFrom": null, "x": {"a": null}},
                   "metadata": {"labels": {"old": null}}})
        );
        assert_eq!(only_nulls(&json!({"spec": {"a": 1}})), json!({}));
    }

    #[test]
    fn the_target_hash_ignores_status_and_server_metadata() {
        let a = json!({"kind": "K", "metadata": {"name": "n", "resourceVersion": "1"},
                       "spec": {"a": 1}, "status": {"x": 1}});
        let mut b = a.clone();
        b["metadata"]["resourceVersion"] = json!("2");
        b["status"]["x"] = json!(2);
        assert_eq!(target_hash(&a), target_hash(&b));
        b["spec"]["a"] = json!(2);
        assert_ne!(target_hash(&a), target_hash(&b));
    }
}
