//! File mode for `TailscaleService`: the controller's reconcile
//! ([`crate::reconcile::tailscale_service`]) over the TailscaleServices found under PATH. Their
//! grants and auto-approvers are composed into the policy by the TailnetPolicy step (which
//! runs first, so the access diff of `plan` shows who gains the service).
//!
//! With no status there is no record of what was applied: a difference with the live service
//! is a change, never drift.
use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use super::tailnet_policy::inputs;
use super::{FileKind, FileReport, Manifests, StepResult, describe_conditions};
use crate::reconcile::tailscale_service::{
    Mode, PolicyNames, ServiceExecuted, ServiceInput, contribution_lines, contributions, reconcile,
};
use crate::resources::tailscale_service::TailscaleServiceStatus;
use crate::resources::{ConditionStatus, ReconcileError, TailscaleService};
use crate::snapshot::TailnetSnapshots;

impl FileKind for TailscaleService {
    /// Its tags must be owned, and the groups it grants to defined, in the policy first.
    const AFTER: &'static [&'static str] = &["TailnetPolicy"];

    async fn plan(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
        run(manifests, snapshots, Mode::Plan).await
    }

    async fn apply(manifests: &Manifests, snapshots: &TailnetSnapshots) -> StepResult {
        run(manifests, snapshots, Mode::Apply).await
    }

    /// Every TailscaleService with the status its planner gives it (writes nothing).
    async fn with_status(
        manifests: &Manifests,
        snapshots: &TailnetSnapshots,
        now: &Time,
    ) -> Result<Vec<Value>, ReconcileError> {
        let services = manifests.of::<TailscaleService>();
        let all: Vec<ServiceInput> = services.iter().map(ServiceInput::from_object).collect();
        let names = policy_names(manifests, snapshots).await?;
        let mut out = Vec::new();
        for (service, input) in services.iter().zip(&all) {
            let executed = reconcile(input, &all, snapshots, Some(&names), Mode::Plan).await?;
            let mut status = TailscaleServiceStatus::default();
            let lines = contribution_lines(&contributions(service));
            executed.plan.outcome.write_status(&mut status, lines, now);
            let mut value = serde_json::to_value(service).unwrap_or(Value::Null);
            value["status"] = serde_json::to_value(status).unwrap_or(Value::Null);
            out.push(value);
        }
        Ok(out)
    }
}

/// The names the services may use: the live policy's, and those the TailnetPolicies under
/// PATH define (in `plan` they are not applied yet; in `apply` they just were).
async fn policy_names(
    manifests: &Manifests,
    snapshots: &TailnetSnapshots,
) -> Result<PolicyNames, ReconcileError> {
    let live = snapshots.policy().await?;
    let mut names = PolicyNames::of_text(&live.data.hujson).unwrap_or_default();
    for input in inputs(manifests) {
        if let Some(more) = input.text.ok().as_deref().and_then(PolicyNames::of_text) {
            names.groups.extend(more.groups);
            names.tags.extend(more.tags);
        }
    }
    Ok(names)
}

async fn run(manifests: &Manifests, snapshots: &TailnetSnapshots, mode: Mode) -> StepResult {
    let services = manifests.of::<TailscaleService>();
    let all: Vec<ServiceInput> = services.iter().map(ServiceInput::from_object).collect();
    let names = policy_names(manifests, snapshots).await?;
    let mut report = FileReport::default();
    for (service, input) in services.iter().zip(&all) {
        let executed = reconcile(input, &all, snapshots, Some(&names), mode).await?;
        report.changes |= executed.changes();
        let ready = &executed.plan.outcome.ready;
        // `plan` of a service still to be created is Pending, not a failure.
        let fails = ready.status == ConditionStatus::False
            && !(mode == Mode::Plan && executed.wrote.is_some());
        report.failed |= fails;
        match mode {
            Mode::Plan => describe_plan(service, &executed, &mut report.output),
            Mode::Apply => describe_apply(service, &executed, &mut report.output),
        }
    }
    Ok(report)
}

fn label(service: &TailscaleService) -> String {
    format!("TailscaleService/{}", service.owner_key())
}

fn describe_plan(service: &TailscaleService, executed: &ServiceExecuted, out: &mut String) {
    let ready = &executed.plan.outcome.ready;
    match executed.describe(false) {
        Some(what) => {
            let _ = writeln!(out, "{}: {what}", label(service));
            if let Some(write) = &executed.plan.write {
                let s = &write.service;
                let _ = writeln!(
                    out,
                    "  ports: {}; tags: {}; comment: {:?}",
                    s.ports.join(", "),
                    if s.tags.is_empty() {
                        "(none)".to_owned()
                    } else {
                        s.tags.join(", ")
                    },
                    s.comment
                );
            }
        }
        None if ready.status == ConditionStatus::False => {
            let _ = writeln!(
                out,
                "{}: error: {} {}",
                label(service),
                ready.reason,
                ready.message
            );
        }
        None => {
            let _ = writeln!(out, "{}: no changes", label(service));
        }
    }
}

fn describe_apply(service: &TailscaleService, executed: &ServiceExecuted, out: &mut String) {
    let what = executed
        .describe(true)
        .unwrap_or_else(|| "no changes written".to_owned());
    let outcome = &executed.plan.outcome;
    let _ = writeln!(out, "service: {what}");
    let _ = writeln!(out, "{}:", label(service));
    describe_conditions([&outcome.ready, &outcome.synced, &outcome.drifted], out);
    if !outcome.addresses.is_empty() {
        let _ = writeln!(out, "  addresses: {}", outcome.addresses.join(", "));
    }
    if let Some(hosts) = &outcome.hosts_ready {
        let _ = writeln!(out, "  hosts ready: {hosts}");
    }
}
