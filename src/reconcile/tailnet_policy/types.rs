//! What the planner takes and returns.
use crate::resources::conditions::Verdict;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::history::Revision;
use crate::policy::access::{ClassDiff, TailnetView};
use crate::resources::tailnet_policy::{
    AccessDiffSummary, PolicyConflict, PolicyRole, TailnetPolicySpec, TailnetPolicyStatus,
};
use crate::resources::{DriftDiff, ReconcileError};
use crate::tailscale::ETag;

/// One `TailnetPolicy` as the planner needs it: the controller (or file mode) has already
/// resolved `policyFrom` into `text`, or the error that prevented it.
#[derive(Debug)]
pub struct PolicyInput {
    pub name: String,
    pub generation: Option<i64>,
    pub spec: TailnetPolicySpec,
    pub text: Result<String, ReconcileError>,
    pub annotations: BTreeMap<String, String>,
}

impl PolicyInput {
    pub fn is_base(&self) -> bool {
        self.spec.role == PolicyRole::Base
    }
}

/// Why the composed policy is (re)applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ApplyReason {
    /// Nothing applied by the operator before.
    Initial,
    /// The composed policy differs from the last applied revision.
    SpecChanged,
    /// The live policy was edited elsewhere; `driftPolicy: Correct` puts it back.
    DriftCorrection,
    /// A post-apply check failed; the previous good revision was re-applied.
    Rollback,
    /// The `tailnet.ops.dev/rollback-to` annotation pins a revision.
    Pinned,
}

impl ApplyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyReason::Initial => "Initial",
            ApplyReason::SpecChanged => "SpecChanged",
            ApplyReason::DriftCorrection => "DriftCorrection",
            ApplyReason::Rollback => "Rollback",
            ApplyReason::Pinned => "Pinned",
        }
    }
}

/// Who gains and loses access with a change: exact counts and the biggest class lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessSummary {
    /// `src -> dst proto:ports` pairs gained and lost.
    pub gained: u64,
    pub lost: u64,
    /// [`ClassDiff::summary`], e.g. `12 gained, 0 lost (...) over 6 and 0 device pairs in 1
    /// class pairs`.
    pub summary: String,
    /// The first [`super::ACCESS_LINES_SHOWN`] class lines by impact, e.g. `+ group:eng (812
    /// devices) -> tag:prod (40 devices) tcp:443  gained (32,480 device pairs)`, then `...
    /// and N more class lines` when cut.
    pub lines: Vec<String>,
}

impl AccessSummary {
    pub fn of(diff: &ClassDiff) -> AccessSummary {
        AccessSummary {
            gained: diff.gained(),
            lost: diff.lost(),
            summary: diff.summary(),
            lines: diff.render_lines(super::ACCESS_LINES_SHOWN),
        }
    }

    pub fn counts(&self) -> AccessDiffSummary {
        AccessDiffSummary {
            gained: self.gained,
            lost: self.lost,
            lines: self.lines.clone(),
        }
    }
}

/// A write the executor is to make.
#[derive(Debug, Clone)]
pub struct ApplyPlan {
    /// The exact text to post.
    pub text: String,
    /// SHA-256 (hex) of `text`.
    pub hash: String,
    pub reason: ApplyReason,
    /// Live → `text`.
    pub access_diff: AccessSummary,
    /// Unified diff live → `text`, capped at [`super::TEXT_DIFF_LINES`] lines.
    pub text_diff: String,
    /// `TailnetPolicy/<name>` → generation of every source composed into `text`.
    pub sources: BTreeMap<String, i64>,
    /// The revision pinned by the annotation, when `reason` is `Pinned`.
    pub pinned: Option<u32>,
    /// `TailnetPolicy/<name>` → the text each source was composed at (its last applied text
    /// when it failed since), recorded in the revision.
    pub source_texts: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub enum PolicyAction {
    /// The tailnet holds the desired policy, or nothing may be written (a blocking problem,
    /// `suspend`).
    NoChange,
    Apply(Box<ApplyPlan>),
    /// The live policy drifted and `driftPolicy: Report` leaves it.
    ReportDrift {
        diff: DriftDiff,
    },
}

/// What one resource's status should say. Time-free: [`PolicyOutcome::write_status`] adds
/// the clock when it is written.
#[derive(Debug, Clone)]
pub struct PolicyOutcome {
    pub name: String,
    pub generation: Option<i64>,
    pub ready: Verdict,
    pub synced: Verdict,
    pub drifted: Verdict,
    pub drift: Option<DriftDiff>,
    pub rejected_reason: Option<String>,
    pub conflicts: Vec<PolicyConflict>,
    pub applied_revision: Option<u32>,
    pub applied_hash: Option<String>,
    pub pinned_revision: Option<u32>,
    pub last_access_diff: Option<AccessDiffSummary>,
}

impl PolicyOutcome {
    /// Writes the outcome into `status`: conditions through `set_condition` (stable
    /// transition times), the other fields replaced. Returns whether anything changed, so a
    /// controller can skip a no-op status patch.
    pub fn write_status(&self, status: &mut TailnetPolicyStatus, now: &Time) -> bool {
        let before = status.clone();
        status.common.record(
            [&self.ready, &self.synced, &self.drifted],
            self.generation,
            now,
        );
        if self.applied_revision.is_some() {
            status.applied_revision = self.applied_revision;
        }
        if self.applied_hash.is_some() {
            status.applied_hash = self.applied_hash.clone();
        }
        if self.last_access_diff.is_some() {
            status.last_access_diff = self.last_access_diff.clone();
        }
        status.pinned_revision = self.pinned_revision;
        status.drift = self.drift.clone();
        status.rejected_reason = self.rejected_reason.clone();
        status.conflicts = self.conflicts.clone();
        let changed = *status != before;
        if changed {
            status.common.last_sync_time = Some(now.clone());
        }
        changed
    }
}

/// The planner's answer for one tailnet.
#[derive(Debug, Clone)]
pub struct PolicyPlan {
    /// One per input resource, in input order.
    pub outcomes: Vec<PolicyOutcome>,
    pub action: PolicyAction,
    /// The live policy's ETag, for `If-Match`.
    pub live_etag: ETag,
    /// SHA-256 (hex) of the live text.
    pub live_hash: String,
    /// The Base's `historyLimit` (default 10).
    pub history_limit: u32,
    /// The view the checks ran over (the post-apply check reuses it).
    pub view: TailnetView,
    /// The last applied revision: the rollback target.
    pub last_good: Option<Revision>,
    /// Contributions of other kinds left out of the composition because their entries fail
    /// the checks (the rest is applied without them).
    pub left_out: Vec<LeftOut>,
}

/// A contribution left out of the composition, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// e.g. `TailscaleService/monitoring/grafana`.
    pub source: String,
    /// e.g. `grants`.
    pub section: String,
    /// The check problems it caused.
    pub reason: String,
}

impl std::fmt::Display for LeftOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) left out of the policy: {}",
            self.source, self.section, self.reason
        )
    }
}

impl PolicyPlan {
    /// Whether executing would write to the tailnet.
    /// Whether the plan re-applies the policy over a console edit (`driftPolicy: Correct`).
    pub fn corrects_drift(&self) -> bool {
        matches!(&self.action, PolicyAction::Apply(apply) if apply.reason == ApplyReason::DriftCorrection)
    }

    pub fn writes(&self) -> bool {
        matches!(self.action, PolicyAction::Apply(_))
    }

    pub fn outcome(&self, name: &str) -> Option<&PolicyOutcome> {
        self.outcomes.iter().find(|o| o.name == name)
    }
}
