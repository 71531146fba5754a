//! File mode for `DNSConfig`: the same planner and executor as the controller
//! ([`crate::reconcile::dns_config`]) over the DNSConfigs found under PATH.
//!
//! - With no status there is no record of what was applied, so drift is not told apart from a
//!   spec change: `plan` compares the managed parts with the live DNS; a difference is a change.
//! - Several DNSConfigs for the tailnet: the first by name manages it (no creation times in
//!   files); the others are reported as `Conflict` and make the run fail.
use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use super::{FileKind, FileReport, Manifests, StepResult, describe_conditions};
use crate::reconcile::dns_config::{
    DnsInput, DnsOutcome, DnsPlan, describe_parts, execute, managed_parts, observe_and_plan,
};
use crate::resources::drift::{DiffOptions, diff_with};
use crate::resources::{ConditionStatus, DNSConfig, DNSConfigStatus, ReconcileError};
use crate::snapshot::TailnetSnapshots;

impl FileKind for DNSConfig {
    async fn plan(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
        plan_dns(&manifests.of::<DNSConfig>(), snapshots).await
    }

    async fn apply(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
        apply_dns(&manifests.of::<DNSConfig>(), snapshots).await
    }

    /// Every DNSConfig with the status its planner gives it against the live DNS.
    async fn with_status(
        manifests: &Manifests,
        snapshots: &TailnetSnapshots,
        now: &Time,
    ) -> Result<Vec<Value>, ReconcileError> {
        let configs = manifests.of::<DNSConfig>();
        let all = resources(&configs);
        let mut out = Vec::new();
        for (config, resource) in configs.iter().zip(&all) {
            let plan = observe_and_plan(resource, &all, snapshots).await?;
            let mut status = DNSConfigStatus::default();
            plan.outcome.write_status(&mut status, now);
            let mut value = serde_json::to_value(config).unwrap_or(Value::Null);
            value["status"] = serde_json::to_value(status).unwrap_or(Value::Null);
            out.push(value);
        }
        Ok(out)
    }
}

/// Differences listed per resource in a plan.
const PLAN_ENTRIES: usize = 20;

fn resources(configs: &[DNSConfig]) -> Vec<DnsInput> {
    configs.iter().map(DnsInput::from_object).collect()
}

/// Plans every DNSConfig against the live DNS (writes nothing).
pub async fn plan_dns(
    configs: &[DNSConfig],
    snapshots: &TailnetSnapshots,
) -> Result<FileReport, ReconcileError> {
    let all = resources(configs);
    let live = snapshots.dns().await?;
    let mut report = FileReport::default();
    for resource in &all {
        let plan = observe_and_plan(resource, &all, snapshots).await?;
        if plan.writes() {
            report.changes = true;
            describe_write(&plan, &live.data, &mut report.output);
        } else if plan.outcome.ready.status == ConditionStatus::False {
            report.failed = true;
            let ready = &plan.outcome.ready;
            let _ = writeln!(
                report.output,
                "DNSConfig/{}: error: {} {}",
                resource.name, ready.reason, ready.message
            );
        } else {
            let _ = writeln!(report.output, "DNSConfig/{}: no changes", resource.name);
        }
    }
    Ok(report)
}

/// Applies every DNSConfig (only the tailnet's winner can write) and reports its conditions.
pub async fn apply_dns(
    configs: &[DNSConfig],
    snapshots: &TailnetSnapshots,
) -> Result<FileReport, ReconcileError> {
    let all = resources(configs);
    let mut report = FileReport::default();
    for resource in &all {
        let plan = observe_and_plan(resource, &all, snapshots).await?;
        let executed = execute(plan, snapshots).await?;
        let summary = match executed.wrote {
            Some(why) => {
                report.changes = true;
                format!("wrote the tailnet's DNS ({})", why.as_str())
            }
            None => "no changes written".to_owned(),
        };
        let _ = writeln!(report.output, "dns: {summary}");
        describe_outcome(&resource.name, &executed.outcome, &mut report.output);
        report.failed |= !executed.outcome.ready.is_true();
    }
    Ok(report)
}

/// `DNSConfig/<name>: would write ...` and the managed parts that change, live → desired.
fn describe_write(plan: &DnsPlan, live: &crate::tailscale::DnsConfiguration, out: &mut String) {
    let reason = plan.write_reason().map_or("", |r| r.as_str());
    let _ = writeln!(
        out,
        "DNSConfig/{}: would write the tailnet's DNS ({reason}); it manages {}",
        plan.name,
        describe_parts(&plan.desired)
    );
    let as_json = |s| serde_json::to_value(s).unwrap_or(Value::Null);
    let diff = diff_with(
        &as_json(&plan.desired),
        &as_json(&managed_parts(&plan.desired, live)),
        &DiffOptions {
            cap: PLAN_ENTRIES,
            string_arrays_as_sets: false,
        },
    );
    for entry in &diff.entries {
        let show = |v: &Option<Value>| v.as_ref().map_or("(none)".to_owned(), Value::to_string);
        let _ = writeln!(
            out,
            "  {}: {} -> {}",
            entry.path,
            show(&entry.live),
            show(&entry.desired)
        );
    }
    if diff.truncated > 0 {
        let _ = writeln!(out, "  ... and {} more", diff.truncated);
    }
}

fn describe_outcome(name: &str, o: &DnsOutcome, out: &mut String) {
    let _ = writeln!(out, "DNSConfig/{name}:");
    describe_conditions([&o.ready, &o.synced, &o.drifted], out);
    if let Some(conflict) = &o.conflict {
        let _ = writeln!(
            out,
            "  conflict: DNSConfig/{} manages this tailnet",
            conflict.winner
        );
    }
}
