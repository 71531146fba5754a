//! The TailscaleService reconcile for ONE resource against its tailnet.
//!
//! - [`plan_service`] (pure): ownership, name checks, drift and the one PUT to make.
//! - [`plan_hosts`] (pure): host approvals and readiness, once the service's hosts are known.
//! - [`contributions`] (pure): the grant and `autoApprovers.services` entries the resource adds
//!   to its tailnet's policy (composed by the TailnetPolicy controller, like a Fragment).
//! - [`reconcile`]: the above over the tailnet's snapshots, as the controller and file mode run
//!   them. Cost per pass: the shared services, devices and policy snapshots (one read each per
//!   resync interval for the whole tailnet), plus one hosts read for a service that exists,
//!   plus the writes (one PUT when the service differs, one call per approval to change).
mod plan;

pub use plan::{
    Approval, DRIFT_ENTRIES, ServiceOutcome, ServicePlan, ServiceWrite, WriteReason,
    desired_service, hosts_after_create, plan_hosts, plan_service, service_reason,
};

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use crate::policy::compose::Contribution;
use crate::policy::hujson::parse_strict;
use crate::resources::conditions::{ConditionStatus, Verdict, reason};
use crate::resources::tailscale_service::{
    AppliedService, TailscaleService, TailscaleServiceSpec, TailscaleServiceStatus,
};
use crate::resources::{ReconcileError, TailnetScoped};
use crate::snapshot::{Area, TailnetSnapshots};

/// One `TailscaleService` as the planner needs it.
#[derive(Debug, Clone)]
pub struct ServiceInput {
    /// `namespace/name`: the ownership mark's value.
    pub key: String,
    pub generation: Option<i64>,
    /// `svc:<name>`.
    pub service_name: String,
    pub spec: TailscaleServiceSpec,
    /// `status.applied` (`None` in file mode and before the first sync).
    pub applied: Option<AppliedService>,
}

impl ServiceInput {
    pub fn from_object(obj: &TailscaleService) -> ServiceInput {
        ServiceInput {
            key: obj.owner_key(),
            generation: obj.metadata.generation,
            service_name: obj.service_name(),
            spec: obj.spec.clone(),
            applied: obj.current_status().applied,
        }
    }
}

/// The group and tag names a policy defines: what a service's tags and `accessFrom` may name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyNames {
    pub groups: BTreeSet<String>,
    /// Tags in `tagOwners`.
    pub tags: BTreeSet<String>,
}

impl PolicyNames {
    /// The names of a policy document; `None` when it does not parse (the TailnetPolicy
    /// reports that; names are then not checked here).
    pub fn of_text(text: &str) -> Option<PolicyNames> {
        let doc = parse_strict(text).ok()?;
        Some(PolicyNames::of_doc(&doc))
    }

    /// The names of a parsed policy document, plus those `contributions` add.
    pub fn of_doc(doc: &Value) -> PolicyNames {
        let keys = |section: &str| -> BTreeSet<String> {
            doc.get(section)
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        PolicyNames {
            groups: keys("groups"),
            tags: keys("tagOwners"),
        }
    }
}

/// `TailscaleService/<namespace>/<name>`: the contribution source, shown in the policy's
/// composition and conflicts.
pub fn source_name(obj: &TailscaleService) -> String {
    format!("TailscaleService/{}", obj.owner_key())
}

/// What `obj` adds to its tailnet's policy: a grant from `accessFrom` to the service on
/// `accessPorts` (default: every port of the service), and with `autoApprove`,
/// `autoApprovers.services` for `hosts.tags`.
pub fn contributions(obj: &TailscaleService) -> Vec<Contribution> {
    let spec = &obj.spec;
    let service = obj.service_name();
    let mut out = Vec::new();
    if !spec.access_from.is_empty() {
        let ports = if spec.access_ports.is_empty() {
            &spec.ports
        } else {
            &spec.access_ports
        };
        out.push(Contribution {
            source: source_name(obj),
            section: "grants".to_owned(),
            value: json!({"src": spec.access_from, "dst": [service], "ip": ports}),
        });
    }
    if spec.auto_approve && !spec.hosts.tags.is_empty() {
        out.push(Contribution {
            source: source_name(obj),
            section: "autoApprovers.services".to_owned(),
            value: json!({ service: spec.hosts.tags }),
        });
    }
    out
}

/// The contributions of every TailscaleService of one tailnet, in name order. A resource being
/// deleted with `deletionPolicy: Delete` contributes nothing (its grant goes with it).
pub fn tailnet_contributions<'a>(
    services: impl IntoIterator<Item = &'a TailscaleService>,
) -> Vec<Contribution> {
    let mut services: Vec<&TailscaleService> = services
        .into_iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none() || !s.spec.common.deletes_on_removal())
        .collect();
    services.sort_by_key(|s| s.owner_key());
    services.into_iter().flat_map(contributions).collect()
}

/// `section: value` lines of `contributions`, for status and plans.
pub fn contribution_lines(contributions: &[Contribution]) -> Vec<String> {
    contributions
        .iter()
        .map(|c| format!("{}: {}", c.section, c.value))
        .collect()
}

/// Writes or only plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Apply,
}

/// What one pass decided and did.
#[derive(Debug, Clone)]
pub struct ServiceExecuted {
    pub plan: ServicePlan,
    /// The service write made (or, in `Mode::Plan`, to make).
    pub wrote: Option<WriteReason>,
    /// Host approvals set (or to set).
    pub approvals: Vec<Approval>,
    /// The drift found before a correction (for the "drift detected" report).
    pub detected: Option<crate::resources::DriftDiff>,
}

impl ServiceExecuted {
    /// Whether anything was (or would be) written.
    pub fn changes(&self) -> bool {
        self.wrote.is_some() || !self.approvals.is_empty()
    }

    /// What was written, for events and file mode: e.g. `created svc:grafana; approved host
    /// web-1`.
    pub fn describe(&self, applied: bool) -> Option<String> {
        let (created, updated, approved, revoked) = if applied {
            ("created", "updated", "approved", "revoked approval of")
        } else {
            (
                "would create",
                "would update",
                "would approve",
                "would revoke approval of",
            )
        };
        let name = &self.plan.outcome.service_name;
        let mut parts = Vec::new();
        if let Some(why) = self.wrote {
            let verb = if why == WriteReason::Create {
                created
            } else {
                updated
            };
            parts.push(format!("{verb} {name} ({})", why.as_str()));
        }
        for approval in &self.approvals {
            let verb = if approval.approved { approved } else { revoked };
            let host = if approval.name.is_empty() {
                &approval.node_id
            } else {
                &approval.name
            };
            let why = if approval.correction {
                " (DriftCorrection)"
            } else {
                ""
            };
            parts.push(format!("{verb} host {host}{why}"));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Plans `resource` over the tailnet's snapshots and, in `Mode::Apply`, makes the writes: the
/// service PUT (then `record_write(Services)`), a hosts read, and each host approval.
pub async fn reconcile(
    resource: &ServiceInput,
    others: &[ServiceInput],
    snapshots: &TailnetSnapshots,
    names: Option<&PolicyNames>,
    mode: Mode,
) -> Result<ServiceExecuted, ReconcileError> {
    let services = snapshots.services().await?;
    let mut plan = plan_service(resource, others, &services.data, names);
    let wrote = plan.write.as_ref().map(|w| w.reason);
    let mut live = plan.live.clone();
    if mode == Mode::Apply
        && let Some(write) = &plan.write
    {
        let written = snapshots.client().put_service(&write.service).await;
        snapshots.record_write(Area::Services);
        let written = written.map_err(|err| put_error(resource, err))?;
        plan.outcome.addresses = written.addrs.clone();
        live = Some(written);
    }
    let mut approvals = Vec::new();
    match live.filter(|_| plan.manages) {
        Some(live) => {
            let hosts = snapshots
                .client()
                .list_service_hosts(&live.name)
                .await
                .map_err(ReconcileError::from)?;
            let devices = snapshots.devices().await?;
            approvals = plan_hosts(&mut plan, resource, &devices.data, &hosts);
            if mode == Mode::Apply {
                for approval in &approvals {
                    snapshots
                        .client()
                        .set_service_host_approval(&live.name, &approval.node_id, approval.approved)
                        .await
                        .map_err(ReconcileError::from)?;
                }
            }
        }
        None if plan.manages => hosts_after_create(&mut plan),
        None => {}
    }
    // The drift of the service and of its hosts, found before this pass corrected it (the
    // same driftPolicy governs both, so a correction corrects all of it).
    let corrected =
        wrote == Some(WriteReason::DriftCorrection) || approvals.iter().any(|a| a.correction);
    let detected = corrected.then(|| plan.outcome.drift.clone()).flatten();
    if corrected && mode == Mode::Apply {
        plan.outcome.drift = None;
        plan.outcome.drifted = in_sync();
    }
    Ok(ServiceExecuted {
        plan,
        wrote,
        approvals,
        detected,
    })
}

fn in_sync() -> Verdict {
    Verdict::new(
        ConditionStatus::False,
        reason::IN_SYNC,
        "the service is as applied",
    )
}

/// A refused PUT (HTTP 400) as an invalid spec naming what to check; other failures as they are.
fn put_error(resource: &ServiceInput, err: crate::tailscale::ApiError) -> ReconcileError {
    if err.status != Some(400) {
        return ReconcileError::Api(err);
    }
    ReconcileError::invalid(
        "spec",
        format!(
            "Tailscale refused {}: {} (check that spec.tags are in the policy's tagOwners and \
             owned by the operator's credentials, that spec.address is a free address of the \
             tailnet, and that the name is not a machine name)",
            resource.service_name, err.message
        ),
    )
}

impl ServiceOutcome {
    /// Writes the outcome into `status` (conditions with stable transition times, the rest
    /// replaced). `policy` is the resource's contributed lines. Returns whether anything changed.
    pub fn write_status(
        &self,
        status: &mut TailscaleServiceStatus,
        policy: Vec<String>,
        now: &Time,
    ) -> bool {
        let before = status.clone();
        status.common.record(
            [&self.ready, &self.synced, &self.drifted],
            self.generation,
            now,
        );
        status.service_name = Some(self.service_name.clone());
        status.addresses = self.addresses.clone();
        status.hosts = self.hosts.clone();
        status.hosts_ready = self.hosts_ready.clone();
        status.applied = self.applied.clone();
        status.drift = self.drift.clone();
        status.policy = policy;
        let changed = *status != before;
        if changed {
            status.common.last_sync_time = Some(now.clone());
        }
        changed
    }
}

#[cfg(test)]
mod tests;
