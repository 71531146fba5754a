//! The executor: the only part of the policy reconcile that writes to the tailnet.
//!
//! For an `Apply` plan: `POST /acl/validate` (the API runs the policy's tests), then `POST /acl`
//! with `If-Match` set to the ETag the plan was made from, then read back. A read-back with
//! another ETag than the POST answered with is someone's save after ours: drift, recorded and
//! left to `driftPolicy` (never rolled back). Otherwise the text must be what was posted, byte
//! for byte (by hash), and pass the post-apply check; on a failure of either, the previous
//! good revision is posted again and the failed text is recorded so it is not retried until
//! the spec changes. A 412 means someone else wrote after the plan's read: the policy snapshot
//! is invalidated and nothing is retried in this pass, so the next reconcile plans against
//! what that writer left instead of overwriting it blindly.
use chrono::{DateTime, Utc};

use super::history::{Revision, RevisionStore};
use super::plan::{policy_diff, policy_hash};
use super::types::{ApplyPlan, ApplyReason, LeftOut, PolicyAction, PolicyOutcome, PolicyPlan};
use crate::error::Category;
use crate::policy::access::TailnetView;
use crate::policy::checks;
use crate::resources::ReconcileError;
use crate::resources::conditions::Verdict;
use crate::resources::conditions::{ConditionStatus, reason};
use crate::snapshot::{Area, TailnetSnapshots};
use crate::tailscale::{ApiError, ETag, TailscaleClient, ValidationOutcome};

/// Ready reason when the API's validation (its run of the policy tests) rejects the policy.
pub const VALIDATION_FAILED: &str = "ValidationFailed";
/// Ready reason when the post-apply check failed and there was nothing to roll back to.
pub const POST_APPLY_CHECK_FAILED: &str = "PostApplyCheckFailed";

/// A check of the policy the tailnet holds right after a write. `Err` names what failed.
pub trait PostApplyCheck: Send + Sync {
    fn check(&self, live: &str, view: &TailnetView) -> Result<(), String>;
}

/// The default post-apply check: the live policy parses, compiles and passes its own tests in
/// the local evaluator over the tailnet's devices.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalTestsCheck;

impl PostApplyCheck for LocalTestsCheck {
    fn check(&self, live: &str, view: &TailnetView) -> Result<(), String> {
        let outcome = checks::check(live, view);
        if outcome.is_ok() {
            return Ok(());
        }
        Err(outcome
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// What the executor did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecuteResult {
    /// Nothing to write (in sync, reported drift, blocked, suspended).
    NoWrite,
    Applied {
        revision: u32,
        reason: ApplyReason,
    },
    /// The API's validation rejected the policy; nothing was posted.
    ValidationFailed {
        message: String,
    },
    /// HTTP 412: the policy changed since the plan's read. Nothing was overwritten.
    Conflict {
        message: String,
    },
    /// The post-apply check failed; revision `restored` was re-applied as revision `revision`.
    RolledBack {
        problem: String,
        restored: u32,
        revision: u32,
    },
    /// Applied as `revision`, then someone saved over it before the read-back: drift, for
    /// `driftPolicy` on the next pass.
    EditedAfterApply {
        revision: u32,
        reason: ApplyReason,
        message: String,
    },
    /// The post-apply check failed and no earlier revision exists to roll back to.
    CheckFailed {
        problem: String,
    },
}

/// The resources' statuses after the pass, and what happened.
#[derive(Debug, Clone)]
pub struct PolicyExecuted {
    pub outcomes: Vec<PolicyOutcome>,
    pub result: ExecuteResult,
    /// Contributions left out of the composition (see [`PolicyPlan::left_out`]).
    pub left_out: Vec<LeftOut>,
}

impl PolicyExecuted {
    pub fn outcome(&self, name: &str) -> Option<&PolicyOutcome> {
        self.outcomes.iter().find(|o| o.name == name)
    }

    pub fn wrote(&self) -> bool {
        matches!(
            self.result,
            ExecuteResult::Applied { .. }
                | ExecuteResult::EditedAfterApply { .. }
                | ExecuteResult::RolledBack { .. }
        )
    }
}

/// [`execute_with`] with the [`LocalTestsCheck`].
pub async fn execute<S: RevisionStore>(
    plan: PolicyPlan,
    snapshots: &TailnetSnapshots,
    store: &S,
    now: DateTime<Utc>,
) -> Result<PolicyExecuted, ReconcileError> {
    execute_with(plan, snapshots, store, now, &LocalTestsCheck).await
}

/// Carries out `plan`. API failures other than the ones handled here (412, failed
/// validation) are returned as errors; the statuses in the plan are then left to the caller.
pub async fn execute_with<S: RevisionStore>(
    mut plan: PolicyPlan,
    snapshots: &TailnetSnapshots,
    store: &S,
    now: DateTime<Utc>,
    post_check: &dyn PostApplyCheck,
) -> Result<PolicyExecuted, ReconcileError> {
    let PolicyAction::Apply(apply) = std::mem::replace(&mut plan.action, PolicyAction::NoChange)
    else {
        return Ok(PolicyExecuted {
            outcomes: plan.outcomes,
            result: ExecuteResult::NoWrite,
            left_out: plan.left_out,
        });
    };
    let client = snapshots.client();
    if let ValidationOutcome::Failed { message, failures } =
        client.validate_policy(&apply.text).await?
    {
        let details: Vec<String> = failures
            .iter()
            .map(|f| format!("test for {:?}: {}", f.user, f.errors.join(", ")))
            .collect();
        let message = format!(
            "the Tailscale API rejected the composed policy: {message}{}{}",
            if details.is_empty() { "" } else { ": " },
            details.join("; ")
        );
        set_pending(
            &mut plan,
            ConditionStatus::False,
            VALIDATION_FAILED,
            &message,
        );
        return Ok(done(plan, ExecuteResult::ValidationFailed { message }));
    }
    // The POST's answer is not trusted as the stored state: the read-back below is. Its ETag
    // tells the read-back whether anyone saved after this write.
    let posted = match post(client, snapshots, &apply.text, &plan.live_etag).await? {
        Ok(posted) => posted,
        Err(conflict) => {
            set_pending(
                &mut plan,
                ConditionStatus::False,
                reason::CONFLICT,
                &conflict,
            );
            return Ok(done(plan, ExecuteResult::Conflict { message: conflict }));
        }
    };
    let live = client.get_policy().await?;
    let next = plan.last_good.as_ref().map_or(1, |r| r.number + 1);
    if let Some(edit) = edited_after_write(&apply, &posted.etag, &live) {
        // Someone saved after this write: that edit is drift, for driftPolicy to handle on
        // the next pass (through the planner, validated, with If-Match), never a rollback.
        record_applied(&mut plan, &apply, next, store, now).await?;
        let diff = policy_diff(&apply.text, &live.hujson);
        let message = format!(
            "{edit}; it is drift, handled by driftPolicy on the next reconcile: {}",
            diff.summary()
        );
        for outcome in applied_outcomes(&mut plan) {
            outcome.drifted = Verdict::new(ConditionStatus::True, reason::DRIFTED, &message);
            outcome.drift = Some(diff.clone());
        }
        return Ok(done(
            plan,
            ExecuteResult::EditedAfterApply {
                revision: next,
                reason: apply.reason,
                message,
            },
        ));
    }
    let problem = verify(&apply, &live.hujson, &plan.view, post_check);
    if let Some(problem) = problem {
        return roll_back(
            plan, &apply, live.etag, problem, next, snapshots, store, now,
        )
        .await;
    }
    record_applied(&mut plan, &apply, next, store, now).await?;
    Ok(done(
        plan,
        ExecuteResult::Applied {
            revision: next,
            reason: apply.reason,
        },
    ))
}

/// Appends `apply` to the history as revision `next` and sets the pending resources Ready,
/// Synced and in sync with it.
async fn record_applied<S: RevisionStore>(
    plan: &mut PolicyPlan,
    apply: &ApplyPlan,
    next: u32,
    store: &S,
    now: DateTime<Utc>,
) -> Result<(), ReconcileError> {
    let revision = Revision {
        number: next,
        hash: apply.hash.clone(),
        time: now,
        sources: apply.sources.clone(),
        access_diff: apply.access_diff.counts(),
        reason: apply.reason,
        text: apply.text.clone(),
        rejected_hash: None,
        source_texts: apply.source_texts.clone(),
    };
    store.append(revision, plan.history_limit).await?;
    let why = if apply.pinned.is_some() {
        reason::PINNED
    } else {
        reason::RECONCILED
    };
    let message = format!(
        "applied revision {next} ({}): {}",
        apply.reason.as_str(),
        apply.access_diff.summary
    );
    for outcome in pending_outcomes(plan) {
        outcome.ready = Verdict::new(ConditionStatus::True, why, message.clone());
        outcome.synced = Verdict::new(ConditionStatus::True, reason::RECONCILED, message.clone());
        outcome.drifted = Verdict::new(
            ConditionStatus::False,
            reason::IN_SYNC,
            if apply.reason == ApplyReason::DriftCorrection {
                format!("drift corrected by revision {next}")
            } else {
                format!("the live policy is revision {next}")
            },
        );
        outcome.drift = None;
        outcome.applied_revision = Some(next);
        outcome.applied_hash = Some(apply.hash.clone());
        outcome.last_access_diff = Some(apply.access_diff.counts());
    }
    Ok(())
}

/// `Some(what happened)` when the policy read back is not this write's but a later save:
/// its ETag differs from the one the POST answered with. (Same ETag, different text would
/// mean this write itself did not stick; [`verify`] reports that.)
fn edited_after_write(
    apply: &ApplyPlan,
    posted_etag: &ETag,
    live: &crate::tailscale::PolicyFile,
) -> Option<String> {
    let changed = policy_hash(&live.hujson) != apply.hash && live.etag != *posted_etag;
    changed.then(|| {
        format!(
            "the policy was saved again right after this write (ETag {posted_etag} when \
             written, {} when read back)",
            live.etag
        )
    })
}

/// `POST /acl` with `If-Match`. The outer error is any API failure but 412; the inner `Err`
/// is the 412, after which the policy snapshot is invalidated so the next read sees the other
/// writer's policy.
async fn post(
    client: &TailscaleClient,
    snapshots: &TailnetSnapshots,
    text: &str,
    etag: &ETag,
) -> Result<Result<crate::tailscale::PolicyFile, String>, ApiError> {
    let result = client.set_policy(text, Some(etag)).await;
    // Whatever happened, the cached policy may no longer be what the tailnet holds.
    snapshots.record_write(Area::Policy);
    match result {
        Ok(posted) => Ok(Ok(posted)),
        Err(err) if err.category == Category::Conflict => Ok(Err(format!(
            "the tailnet's policy changed after it was read (HTTP 412 on If-Match {etag}): \
             nothing was overwritten; the next reconcile re-reads it and plans again ({err})"
        ))),
        Err(err) => Err(err),
    }
}

/// The read-back text must be what was posted, and pass the post-apply check.
fn verify(
    apply: &ApplyPlan,
    live: &str,
    view: &TailnetView,
    post_check: &dyn PostApplyCheck,
) -> Option<String> {
    let live_hash = policy_hash(live);
    if live_hash != apply.hash {
        return Some(format!(
            "the policy read back (sha256 {live_hash}) is not the policy posted (sha256 {})",
            apply.hash
        ));
    }
    post_check
        .check(live, view)
        .err()
        .map(|e| format!("post-apply check failed: {e}"))
}

#[allow(clippy::too_many_arguments)]
async fn roll_back<S: RevisionStore>(
    mut plan: PolicyPlan,
    apply: &ApplyPlan,
    etag: ETag,
    problem: String,
    next: u32,
    snapshots: &TailnetSnapshots,
    store: &S,
    now: DateTime<Utc>,
) -> Result<PolicyExecuted, ReconcileError> {
    let Some(Revision {
        number: good,
        hash: good_hash,
        text: good_text,
        source_texts: good_sources,
        ..
    }) = plan.last_good.clone()
    else {
        let message = format!(
            "{problem}; there is no earlier revision to roll back to, so the tailnet keeps the \
             new policy"
        );
        set_pending(
            &mut plan,
            ConditionStatus::False,
            POST_APPLY_CHECK_FAILED,
            &message,
        );
        return Ok(done(plan, ExecuteResult::CheckFailed { problem: message }));
    };
    let client = snapshots.client();
    if let Err(conflict) = post(client, snapshots, &good_text, &etag).await? {
        let message = format!("{problem}; rolling back failed: {conflict}");
        set_pending(
            &mut plan,
            ConditionStatus::False,
            reason::CONFLICT,
            &message,
        );
        return Ok(done(plan, ExecuteResult::Conflict { message }));
    }
    let revision = Revision {
        number: next,
        hash: good_hash.clone(),
        time: now,
        sources: Default::default(),
        access_diff: Default::default(),
        reason: ApplyReason::Rollback,
        text: good_text,
        rejected_hash: Some(apply.hash.clone()),
        source_texts: good_sources,
    };
    store.append(revision, plan.history_limit).await?;
    let message =
        format!("{problem}; rolled back to revision {good} (recorded as revision {next})");
    set_pending(
        &mut plan,
        ConditionStatus::False,
        reason::ROLLED_BACK,
        &message,
    );
    for outcome in pending_or_rolled_back(&mut plan) {
        outcome.applied_revision = Some(next);
        outcome.applied_hash = Some(good_hash.clone());
    }
    Ok(done(
        plan,
        ExecuteResult::RolledBack {
            problem,
            restored: good,
            revision: next,
        },
    ))
}

/// The resources the plan was applying (their Ready is still `Pending`).
fn pending_outcomes(plan: &mut PolicyPlan) -> impl Iterator<Item = &mut PolicyOutcome> {
    plan.outcomes
        .iter_mut()
        .filter(|o| o.ready.reason == reason::PENDING)
}

/// The resources [`record_applied`] just marked.
fn applied_outcomes(plan: &mut PolicyPlan) -> impl Iterator<Item = &mut PolicyOutcome> {
    plan.outcomes
        .iter_mut()
        .filter(|o| o.ready.reason == reason::RECONCILED || o.ready.reason == reason::PINNED)
}

fn pending_or_rolled_back(plan: &mut PolicyPlan) -> impl Iterator<Item = &mut PolicyOutcome> {
    plan.outcomes
        .iter_mut()
        .filter(|o| o.ready.reason == reason::ROLLED_BACK)
}

fn set_pending(plan: &mut PolicyPlan, status: ConditionStatus, why: &str, message: &str) {
    for outcome in pending_outcomes(plan) {
        outcome.ready = Verdict::new(status, why, message);
        outcome.synced = Verdict::new(ConditionStatus::False, why, message);
        outcome.rejected_reason = Some(message.to_owned());
    }
}

fn done(plan: PolicyPlan, result: ExecuteResult) -> PolicyExecuted {
    PolicyExecuted {
        outcomes: plan.outcomes,
        result,
        left_out: plan.left_out,
    }
}
