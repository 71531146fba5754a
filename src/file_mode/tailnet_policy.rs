//! File mode for `TailnetPolicy`: the controller's composition, checks and apply over the
//! policies found under PATH, `policyFrom.configMapKeyRef` resolved from the ConfigMap
//! documents under the same PATH. History is in memory, so `plan` compares the composed
//! policy with the live one: a difference is a change.
use std::fmt::Write as _;

use chrono::Utc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use super::{FileKind, FileReport, Manifests, StepResult, describe_conditions};
use crate::policy::compose::Contribution;
use crate::reconcile::tailnet_policy::{
    ExecuteResult, InMemoryRevisionStore, LeftOut, PolicyAction, PolicyInput, PolicyOutcome,
    PolicyPlan, TextSource, access_diff, config_map_text, find_config_map, observe_and_plan,
    policy_input, reconcile, text_source,
};
use crate::reconcile::tailscale_service::tailnet_contributions;
use crate::resources::tailnet_policy::TailnetPolicyStatus;
use crate::resources::{ConditionStatus, ReconcileError, TailnetPolicy, TailscaleService};
use crate::snapshot::TailnetSnapshots;

impl FileKind for TailnetPolicy {
    async fn plan(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
        let resources = inputs(manifests);
        let store = InMemoryRevisionStore::new();
        let plan =
            observe_and_plan(&resources, &contributions(manifests), snapshots, &store).await?;
        let mut out = String::new();
        describe_plan(&plan, &mut out);
        describe_left_out(&plan.left_out, &mut out);
        let mut failed = !plan.left_out.is_empty();
        for outcome in &plan.outcomes {
            let verdict = if outcome.ready.status == ConditionStatus::False {
                failed = true;
                format!("error: {} {}", outcome.ready.reason, outcome.ready.message)
            } else if plan.writes() && outcome.ready.reason == "Pending" {
                "would be applied".to_owned()
            } else {
                "no changes".to_owned()
            };
            let _ = writeln!(out, "TailnetPolicy/{}: {verdict}", outcome.name);
        }
        Ok(FileReport {
            output: out,
            changes: plan.writes(),
            failed,
        })
    }

    async fn apply(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
        let resources = inputs(manifests);
        let store = InMemoryRevisionStore::new();
        let outcome = reconcile(
            &resources,
            &contributions(manifests),
            snapshots,
            &store,
            Utc::now(),
        )
        .await?;
        let mut out = String::new();
        let summary = match &outcome.result {
            ExecuteResult::NoWrite => "no changes written".to_owned(),
            ExecuteResult::Applied { revision, reason } => {
                format!("applied the composed policy as revision {revision} ({reason:?})")
            }
            ExecuteResult::ValidationFailed { message } => format!("not applied: {message}"),
            ExecuteResult::Conflict { message } => format!("not applied: {message}"),
            ExecuteResult::EditedAfterApply {
                revision, message, ..
            } => format!("applied the composed policy as revision {revision}, then {message}"),
            ExecuteResult::RolledBack { problem, .. } => format!("rolled back: {problem}"),
            ExecuteResult::CheckFailed { problem } => format!("applied, check failed: {problem}"),
        };
        let _ = writeln!(out, "policy: {summary}");
        describe_left_out(&outcome.left_out, &mut out);
        for o in &outcome.outcomes {
            describe_outcome(o, &mut out);
        }
        let failed =
            !outcome.left_out.is_empty() || outcome.outcomes.iter().any(|o| !o.ready.is_true());
        Ok(FileReport {
            output: out,
            changes: outcome.wrote(),
            failed,
        })
    }

    /// Every policy with the status of one composition against the live policy.
    async fn with_status(
        manifests: &Manifests,
        snapshots: &TailnetSnapshots,
        now: &Time,
    ) -> Result<Vec<Value>, ReconcileError> {
        let store = InMemoryRevisionStore::new();
        let plan = observe_and_plan(
            &inputs(manifests),
            &contributions(manifests),
            snapshots,
            &store,
        )
        .await?;
        let mut out = Vec::new();
        for document in manifests.documents_of("TailnetPolicy") {
            let mut value = document.value.clone();
            let name = value.pointer("/metadata/name").and_then(Value::as_str);
            if let Some(outcome) = name.and_then(|n| plan.outcome(n)) {
                let mut status = TailnetPolicyStatus::default();
                outcome.write_status(&mut status, now);
                value["status"] = serde_json::to_value(status).unwrap_or(Value::Null);
            }
            out.push(value);
        }
        Ok(out)
    }
}

/// What the other kinds under PATH contribute to the policy (TailscaleService grants and
/// auto-approvers), composed like Fragments.
pub fn contributions(manifests: &Manifests) -> Vec<Contribution> {
    tailnet_contributions(&manifests.of::<TailscaleService>())
}

/// The policies as planner inputs, `policyFrom` resolved from the ConfigMaps found.
pub fn inputs(manifests: &Manifests) -> Vec<PolicyInput> {
    manifests
        .of::<TailnetPolicy>()
        .iter()
        .map(|p| policy_input(p, policy_text(manifests, p)))
        .collect()
}

fn policy_text(manifests: &Manifests, policy: &TailnetPolicy) -> Result<String, ReconcileError> {
    let r = match text_source(&policy.spec)? {
        TextSource::Inline(text) => return Ok(text.to_owned()),
        TextSource::ConfigMap(r) => r,
    };
    config_map_text(
        r,
        find_config_map(&manifests.config_maps, r),
        "spec.policyFrom.configMapKeyRef: in file mode the ConfigMap must be a document \
         under the same PATH (apiVersion v1, kind ConfigMap, with that namespace and name)",
    )
}

/// `plan --show-pairs N`: the individual `src -> dst proto:ports` pairs behind the class
/// lines, at most `limit` gained and `limit` lost, biggest class pairs first. Reads nothing
/// new (the snapshot areas the plan read).
pub async fn access_pairs(
    manifests: &Manifests,
    snapshots: &TailnetSnapshots,
    limit: usize,
) -> Result<String, ReconcileError> {
    let resources = inputs(manifests);
    let plan = observe_and_plan(
        &resources,
        &contributions(manifests),
        snapshots,
        &InMemoryRevisionStore::new(),
    )
    .await?;
    let PolicyAction::Apply(apply) = &plan.action else {
        return Ok("policy: no access change to list\n".to_owned());
    };
    let live = snapshots.policy().await?;
    let desired = crate::policy::hujson::parse_strict(&apply.text)
        .ok()
        .and_then(|doc| crate::policy::access::Policy::compile(&doc).ok());
    let Some(diff) = access_diff(&live.data.hujson, desired.as_ref(), &plan.view) else {
        return Ok("policy: no access change to list\n".to_owned());
    };
    let pairs = diff.pairs(limit);
    let mut out = String::new();
    for (sign, set, total) in [
        ("+", &pairs.gained, diff.gained()),
        ("-", &pairs.lost, diff.lost()),
    ] {
        let shown = set.len().min(limit);
        let _ = writeln!(
            out,
            "policy: {} pairs {} (showing {shown}):",
            crate::policy::access::thousands(total),
            if sign == "+" { "gained" } else { "lost" }
        );
        for pair in set.iter().take(limit) {
            let _ = writeln!(out, "  {sign} {pair}");
        }
    }
    Ok(out)
}

fn describe_plan(plan: &PolicyPlan, out: &mut String) {
    match &plan.action {
        PolicyAction::NoChange => {
            let _ = writeln!(out, "policy: no changes");
        }
        PolicyAction::ReportDrift { diff } => {
            let _ = writeln!(out, "policy: drifted (reported only): {}", diff.summary());
        }
        PolicyAction::Apply(apply) => {
            let access = &apply.access_diff;
            let _ = writeln!(
                out,
                "policy: would apply the composed policy ({:?}); access: {}",
                apply.reason, access.summary
            );
            for line in &access.lines {
                let _ = writeln!(out, "  {line}");
            }
            out.push_str(&apply.text_diff);
        }
    }
}

/// `policy: error: <source> (<section>) left out of the policy: <why>` per contribution left
/// out (the run fails: a resource asked for access it does not get).
fn describe_left_out(left_out: &[LeftOut], out: &mut String) {
    for left in left_out {
        let _ = writeln!(out, "policy: error: {left}");
    }
}

fn describe_outcome(o: &PolicyOutcome, out: &mut String) {
    let _ = writeln!(out, "TailnetPolicy/{}:", o.name);
    describe_conditions([&o.ready, &o.synced, &o.drifted], out);
    if let Some(revision) = o.applied_revision {
        let _ = writeln!(out, "  appliedRevision: {revision}");
    }
    for conflict in &o.conflicts {
        let _ = writeln!(
            out,
            "  conflict: {} ({})",
            conflict.key,
            conflict.sources.join(", ")
        );
    }
}
