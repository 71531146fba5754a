//! The pure TailscaleService planner: no I/O, no clock. Two steps, because the hosts of a
//! service can only be read once it exists:
//!
//! 1. [`plan_service`]: ownership (Tailscale's operator, another TailscaleService, an unmarked
//!    service without `adopt`), spec checks against the live policy's names, drift, and the one
//!    PUT to make (or none). The PUT always carries the live addresses (an update without them
//!    is refused) and the ownership mark.
//! 2. [`plan_hosts`]: which advertising hosts to approve or revoke, host drift, and readiness.
use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{PolicyNames, ServiceInput};
use crate::reconcile::device_tag_set::select::matches;
use crate::resources::conditions::{ConditionStatus, Verdict, reason};
use crate::resources::drift::{DiffOptions, DriftDiff, DriftEntry, diff_with};
use crate::resources::tailscale_service::{
    AppliedService, HostApproval, MAX_LISTED_HOSTS, OWNER_ANNOTATION, ServiceHostStatus,
    TAILSCALE_OPERATOR_ANNOTATION,
};
use crate::tailscale::{Device, Service, ServiceHost};

/// Ready reasons of this kind.
pub mod service_reason {
    /// The service is Tailscale's own operator's: never changed.
    pub const OWNED_BY_TAILSCALE_OPERATOR: &str = "OwnedByTailscaleOperator";
    /// No device of the tailnet matches `spec.hosts`.
    pub const NO_HOSTS: &str = "NoHosts";
    /// Matching devices advertise the service but none is approved yet.
    pub const AWAITING_APPROVAL: &str = "AwaitingApproval";
    /// Devices match `spec.hosts` but none advertises (and serves) the service.
    pub const NOT_ADVERTISED: &str = "NotAdvertised";
}

/// Drift entries listed in status.
pub const DRIFT_ENTRIES: usize = 20;

/// Why the service is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteReason {
    /// The service does not exist: created.
    Create,
    /// An existing unmarked service taken over (`spec.adopt`).
    Adopt,
    /// The spec asks for something other than what was applied.
    SpecChanged,
    /// The live service was changed (or deleted) elsewhere; `driftPolicy: Correct` puts it back.
    DriftCorrection,
}

impl WriteReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteReason::Create => "Create",
            WriteReason::Adopt => "Adopt",
            WriteReason::SpecChanged => "SpecChanged",
            WriteReason::DriftCorrection => "DriftCorrection",
        }
    }
}

/// The one service write of a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceWrite {
    pub service: Service,
    pub reason: WriteReason,
}

/// A host approval to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub node_id: String,
    pub name: String,
    pub approved: bool,
    /// Puts back a decision made in the console (drift), rather than a new one.
    pub correction: bool,
}

/// What the resource's status should say. Time-free; the controller adds the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceOutcome {
    pub generation: Option<i64>,
    pub service_name: String,
    pub ready: Verdict,
    pub synced: Verdict,
    pub drifted: Verdict,
    pub drift: Option<DriftDiff>,
    pub applied: Option<AppliedService>,
    pub addresses: Vec<String>,
    pub hosts: Vec<ServiceHostStatus>,
    pub hosts_ready: Option<String>,
}

/// Step 1's decision for one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePlan {
    /// `namespace/name` of the resource.
    pub key: String,
    pub live: Option<Service>,
    pub write: Option<ServiceWrite>,
    /// Whether this resource manages the service (and so its hosts): false when blocked.
    pub manages: bool,
    /// `spec.suspend` (here or on the ManagedTailnet): hosts are listed, nothing is written.
    pub suspended: bool,
    pub outcome: ServiceOutcome,
}

impl ServicePlan {
    pub fn writes(&self) -> bool {
        self.write.is_some()
    }

    fn block(&mut self, why: &str, message: String) {
        self.outcome.ready = Verdict::new(ConditionStatus::False, why, &message);
        self.outcome.synced = Verdict::new(ConditionStatus::False, why, &message);
        self.outcome.drifted = Verdict::new(
            ConditionStatus::False,
            why,
            "not managing this Tailscale Service",
        );
        self.outcome.applied = None;
        self.manages = false;
    }
}

/// Plans `resource` against the tailnet's services. `others` are the other TailscaleServices
/// of the tailnet; one naming the same service is a conflict for both. `names` (the live
/// policy's groups and tags) checks that tags and principals are defined before any write.
pub fn plan_service(
    resource: &ServiceInput,
    others: &[ServiceInput],
    live_services: &[Service],
    names: Option<&PolicyNames>,
) -> ServicePlan {
    let name = resource.service_name.clone();
    let live = live_services.iter().find(|s| s.name == name).cloned();
    let mut plan = ServicePlan {
        key: resource.key.clone(),
        live: live.clone(),
        write: None,
        manages: true,
        suspended: resource.spec.common.suspend,
        outcome: ServiceOutcome {
            generation: resource.generation,
            service_name: name.clone(),
            ready: Verdict::new(ConditionStatus::Unknown, reason::PENDING, ""),
            synced: synced_verdict(),
            drifted: in_sync_verdict(),
            drift: None,
            applied: resource.applied.clone(),
            addresses: live.as_ref().map(|s| s.addrs.clone()).unwrap_or_default(),
            hosts: Vec::new(),
            hosts_ready: None,
        },
    };
    let rivals: Vec<&str> = others
        .iter()
        .filter(|o| o.key != resource.key && o.service_name == name)
        .map(|o| o.key.as_str())
        .collect();
    if !rivals.is_empty() {
        let message = format!(
            "TailscaleService {} also names {name}; neither writes until one of them names \
             another service or is deleted",
            rivals.join(", ")
        );
        plan.block(reason::CONFLICT, message);
        return plan;
    }
    if let Some(live) = &live
        && let Some(blocked) = ownership_problem(resource, live)
    {
        let (why, message) = blocked;
        plan.block(why, message);
        return plan;
    }
    if let Some(names) = names
        && let Err(message) = check_names(resource, names)
    {
        plan.block(reason::INVALID, message);
        return plan;
    }
    let desired = desired_service(resource, live.as_ref());
    let wanted = applied_of(resource);
    let drift = drift_of(resource, live.as_ref());
    if let Some(diff) = &drift {
        plan.outcome.drifted = Verdict::new(
            ConditionStatus::True,
            reason::DRIFTED,
            format!(
                "{name} differs from what this TailscaleService applied: {}",
                diff.summary()
            ),
        );
        plan.outcome.drift = Some(diff.clone());
    }
    if live.as_ref().is_some_and(|l| same_service(l, &desired)) {
        plan.outcome.applied = Some(with_hosts(wanted, resource.applied.as_ref()));
        return plan;
    }
    if resource.spec.common.suspend {
        let message = format!(
            "suspended (spec.suspend here or on its ManagedTailnet): observing only; {name} {} \
             the spec",
            if live.is_some() {
                "differs from"
            } else {
                "does not exist yet, as asked by"
            }
        );
        plan.outcome.ready = Verdict::new(ConditionStatus::False, reason::SUSPENDED, &message);
        plan.outcome.synced = Verdict::new(ConditionStatus::True, reason::SUSPENDED, message);
        return plan;
    }
    if let Some(diff) = drift
        .as_ref()
        .filter(|_| !resource.spec.common.corrects_drift())
    {
        // A service deleted in the console serves nobody: not Ready, though left as is.
        let status = if live.is_some() {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        plan.outcome.ready = Verdict::new(
            status,
            reason::DRIFTED,
            format!(
                "{name} was changed outside the operator and is left as is (driftPolicy: \
                 Report): {}",
                diff.summary()
            ),
        );
        return plan;
    }
    let why = match (&live, &drift, &resource.applied) {
        (_, Some(_), _) => WriteReason::DriftCorrection,
        (None, None, _) => WriteReason::Create,
        (Some(l), None, _) if !is_ours(resource, l) => WriteReason::Adopt,
        (Some(_), None, _) => WriteReason::SpecChanged,
    };
    plan.write = Some(ServiceWrite {
        service: desired,
        reason: why,
    });
    plan.outcome.applied = Some(with_hosts(wanted, resource.applied.as_ref()));
    plan
}

/// Why `resource` may not write `live`, if it may not: Tailscale's operator owns it, another
/// TailscaleService's mark is on it, or it is unmarked and `adopt` is not set.
fn ownership_problem(resource: &ServiceInput, live: &Service) -> Option<(&'static str, String)> {
    let name = &live.name;
    if let Some(owner) = live.annotations.get(TAILSCALE_OPERATOR_ANNOTATION) {
        return Some((
            service_reason::OWNED_BY_TAILSCALE_OPERATOR,
            format!(
                "{name} is managed by Tailscale's own Kubernetes operator ({TAILSCALE_OPERATOR_ANNOTATION}: \
                 {}); this operator never changes or deletes it. Name another service in \
                 spec.serviceName",
                shorten(owner)
            ),
        ));
    }
    match live.annotations.get(OWNER_ANNOTATION) {
        Some(owner) if owner == &resource.key => None,
        Some(owner) => Some((
            reason::CONFLICT,
            format!(
                "{name} is managed by TailscaleService {owner} (annotation {OWNER_ANNOTATION}); \
                 delete that resource (deletionPolicy: Orphan keeps the service) before this \
                 one can adopt it"
            ),
        )),
        None if resource.spec.adopt => None,
        None => Some((
            reason::CONFLICT,
            format!(
                "{name} already exists and no TailscaleService manages it; set spec.adopt: true \
                 to take it over (its ports, tags and comment become this resource's), or name \
                 another service in spec.serviceName"
            ),
        )),
    }
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(120).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

fn is_ours(resource: &ServiceInput, live: &Service) -> bool {
    live.annotations.get(OWNER_ANNOTATION) == Some(&resource.key)
}

/// Tags of the service and `accessFrom` groups and tags must be defined in the live policy.
fn check_names(resource: &ServiceInput, names: &PolicyNames) -> Result<(), String> {
    let spec = &resource.spec;
    let undefined_tags: Vec<&str> = spec
        .tags
        .iter()
        .chain(spec.access_from.iter().filter(|p| p.starts_with("tag:")))
        .filter(|t| !names.tags.contains(*t))
        .map(String::as_str)
        .collect();
    let undefined_groups: Vec<&str> = spec
        .access_from
        .iter()
        .filter(|p| p.starts_with("group:") && !names.groups.contains(*p))
        .map(String::as_str)
        .collect();
    let mut problems = Vec::new();
    if !undefined_tags.is_empty() {
        problems.push(format!(
            "tags {} (spec.tags / spec.accessFrom) are not in the tailnet policy's tagOwners; \
             add them to tagOwners in the Base TailnetPolicy",
            undefined_tags.join(", ")
        ));
    }
    if !undefined_groups.is_empty() {
        problems.push(format!(
            "groups {} (spec.accessFrom) are not defined in the tailnet policy; define them in \
             groups of a TailnetPolicy",
            undefined_groups.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("nothing written: {}", problems.join("; ")))
    }
}

/// The PUT body: the spec's fields, the live addresses (an update must repeat them; a pinned
/// IPv4 replaces the live one), the live annotations plus the ownership mark.
pub fn desired_service(resource: &ServiceInput, live: Option<&Service>) -> Service {
    let spec = &resource.spec;
    let addrs = match (live, &spec.address) {
        (None, None) => Vec::new(),
        (None, Some(v4)) => vec![v4.clone()],
        (Some(l), None) => l.addrs.clone(),
        (Some(l), Some(v4)) => {
            let mut addrs = l.addrs.clone();
            match addrs.first_mut() {
                Some(first) => *first = v4.clone(),
                None => addrs.push(v4.clone()),
            }
            addrs
        }
    };
    let mut annotations = live.map(|l| l.annotations.clone()).unwrap_or_default();
    annotations.insert(OWNER_ANNOTATION.to_owned(), resource.key.clone());
    Service {
        name: resource.service_name.clone(),
        addrs,
        comment: spec.comment.clone(),
        ports: spec.ports.clone(),
        tags: spec.tags.clone(),
        annotations,
    }
}

fn sorted(items: &[String]) -> BTreeSet<&str> {
    items.iter().map(String::as_str).collect()
}

/// Whether `live` already holds `desired` (order of ports and tags ignored).
fn same_service(live: &Service, desired: &Service) -> bool {
    sorted(&live.ports) == sorted(&desired.ports)
        && sorted(&live.tags) == sorted(&desired.tags)
        && live.comment == desired.comment
        && live.addrs.first() == desired.addrs.first()
        && live.annotations.get(OWNER_ANNOTATION) == desired.annotations.get(OWNER_ANNOTATION)
}

/// What this resource applies (hosts are filled in by [`plan_hosts`]).
fn applied_of(resource: &ServiceInput) -> AppliedService {
    let spec = &resource.spec;
    let mut ports = spec.ports.clone();
    ports.sort();
    let mut tags = spec.tags.clone();
    tags.sort();
    AppliedService {
        service_name: resource.service_name.clone(),
        ports,
        tags,
        comment: spec.comment.clone(),
        address: spec.address.clone(),
        approved_hosts: Vec::new(),
        unapproved_hosts: Vec::new(),
    }
}

fn with_hosts(mut applied: AppliedService, before: Option<&AppliedService>) -> AppliedService {
    if let Some(before) = before {
        applied.approved_hosts = before.approved_hosts.clone();
        applied.unapproved_hosts = before.unapproved_hosts.clone();
    }
    applied
}

/// The service's managed fields as JSON, for diffs.
fn service_view(ports: &[String], tags: &[String], comment: &str, address: Option<&str>) -> Value {
    let mut ports: Vec<&String> = ports.iter().collect();
    ports.sort();
    let mut tags: Vec<&String> = tags.iter().collect();
    tags.sort();
    json!({"ports": ports, "tags": tags, "comment": comment, "address": address})
}

/// Drift: the live service differs from what this resource last applied, while the spec still
/// asks for that (a spec change is not drift). A service deleted in the console is drift too.
fn drift_of(resource: &ServiceInput, live: Option<&Service>) -> Option<DriftDiff> {
    let applied = resource.applied.as_ref()?;
    if !same_fields(&applied_of(resource), applied) {
        return None;
    }
    let applied_view = service_view(
        &applied.ports,
        &applied.tags,
        &applied.comment,
        applied.address.as_deref(),
    );
    let Some(live) = live else {
        return Some(DriftDiff {
            entries: vec![DriftEntry {
                path: "/".to_owned(),
                desired: Some(Value::String(applied.service_name.clone())),
                live: None,
            }],
            ..DriftDiff::default()
        });
    };
    let live_view = service_view(
        &live.ports,
        &live.tags,
        &live.comment,
        applied
            .address
            .as_ref()
            .and(live.addrs.first().map(String::as_str)),
    );
    let diff = diff_with(
        &applied_view,
        &live_view,
        &DiffOptions {
            cap: DRIFT_ENTRIES,
            string_arrays_as_sets: true,
        },
    );
    (!diff.is_empty()).then_some(diff)
}

/// Whether two applied records agree on the service's own fields (hosts aside).
fn same_fields(a: &AppliedService, b: &AppliedService) -> bool {
    a.service_name == b.service_name
        && sorted(&a.ports) == sorted(&b.ports)
        && sorted(&a.tags) == sorted(&b.tags)
        && a.comment == b.comment
        && a.address == b.address
}

/// Step 2: decides host approvals for a service this resource manages, whose advertising
/// hosts are `hosts`, and completes the outcome (host list, host drift, readiness). Returns
/// the approvals to set (none when `plan.manages` is false or nothing differs).
pub fn plan_hosts(
    plan: &mut ServicePlan,
    resource: &ServiceInput,
    devices: &[Device],
    hosts: &[ServiceHost],
) -> Vec<Approval> {
    let spec = &resource.spec;
    let applied = resource.applied.clone().unwrap_or_default();
    let mut approvals = Vec::new();
    let mut drift_entries = Vec::new();
    let mut statuses = Vec::new();
    let (mut approved_hosts, mut unapproved_hosts) = (Vec::new(), Vec::new());
    // Approvals the spec asks for that suspend holds back.
    let mut waiting = 0;
    for host in hosts {
        let device = devices.iter().find(|d| d.node_id == host.stable_node_id);
        let selected = device.is_some_and(|d| matches(&spec.hosts, d));
        let approved = host.approval_level.starts_with("approved");
        let want = match (selected, spec.host_approval) {
            (true, _) => Some(true),
            (false, HostApproval::Exact) => Some(false),
            (false, HostApproval::Add) => None,
        };
        let name = device.map(|d| d.hostname.clone()).unwrap_or_default();
        let mut level = host.approval_level.clone();
        if let Some(want) = want
            && want != approved
        {
            let recorded = if want {
                &applied.approved_hosts
            } else {
                &applied.unapproved_hosts
            };
            let correction = recorded.contains(&host.stable_node_id);
            if correction {
                drift_entries.push(DriftEntry {
                    path: format!("/hosts/{}/approved", label(&name, &host.stable_node_id)),
                    desired: Some(Value::Bool(want)),
                    live: Some(Value::Bool(approved)),
                });
            }
            let allowed =
                plan.manages && !plan.suspended && (!correction || spec.common.corrects_drift());
            waiting += usize::from(!allowed && !correction);
            if allowed {
                approvals.push(Approval {
                    node_id: host.stable_node_id.clone(),
                    name: name.clone(),
                    approved: want,
                    correction,
                });
                level = if want {
                    "approved:manual".to_owned()
                } else {
                    "not-approved".to_owned()
                };
            }
        }
        let now_approved = level.starts_with("approved");
        match want {
            Some(true) if now_approved => approved_hosts.push(host.stable_node_id.clone()),
            Some(false) if !now_approved => unapproved_hosts.push(host.stable_node_id.clone()),
            _ => {}
        }
        statuses.push(ServiceHostStatus {
            node_id: host.stable_node_id.clone(),
            name,
            approval_level: level,
            configured: host.configured.clone(),
            selected,
        });
    }
    statuses.sort_by(|a, b| (&a.name, &a.node_id).cmp(&(&b.name, &b.node_id)));
    let ready_hosts = statuses
        .iter()
        .filter(|h| h.selected && h.approval_level.starts_with("approved") && serving(h))
        .count();
    plan.outcome.hosts_ready = Some(format!("{ready_hosts}/{}", statuses.len()));
    let advertising_selected = statuses.iter().filter(|h| h.selected).count();
    statuses.truncate(MAX_LISTED_HOSTS);
    plan.outcome.hosts = statuses;
    if !plan.manages {
        return Vec::new();
    }
    if let Some(applied) = plan.outcome.applied.as_mut() {
        approved_hosts.sort();
        unapproved_hosts.sort();
        applied.approved_hosts = approved_hosts;
        applied.unapproved_hosts = unapproved_hosts;
    }
    record_host_drift(plan, drift_entries, spec.common.corrects_drift());
    if plan.suspended && waiting > 0 && plan.outcome.ready.status == ConditionStatus::Unknown {
        let message = format!(
            "suspended (spec.suspend here or on its ManagedTailnet): observing only; {waiting} \
             host approval(s) of {} wait",
            plan.outcome.service_name
        );
        plan.outcome.ready = Verdict::new(ConditionStatus::False, reason::SUSPENDED, &message);
        plan.outcome.synced = Verdict::new(ConditionStatus::True, reason::SUSPENDED, message);
    }
    if plan.outcome.ready.status == ConditionStatus::Unknown {
        let selectable = devices.iter().filter(|d| matches(&spec.hosts, d)).count();
        plan.outcome.ready = readiness(plan, selectable, advertising_selected, ready_hosts, spec);
    }
    approvals
}

/// A host serves the service once its configuration is applied (`configured` set).
fn serving(host: &ServiceHostStatus) -> bool {
    !host.configured.is_empty() && host.configured != "not-configured"
}

fn label(name: &str, node_id: &str) -> String {
    if name.is_empty() {
        node_id.to_owned()
    } else {
        name.to_owned()
    }
}

/// Adds host approval drift to the outcome's drift diff and verdicts.
fn record_host_drift(plan: &mut ServicePlan, entries: Vec<DriftEntry>, corrects: bool) {
    if entries.is_empty() {
        return;
    }
    let name = plan.outcome.service_name.clone();
    let diff = plan.outcome.drift.get_or_insert_with(DriftDiff::default);
    for entry in entries {
        if diff.entries.len() < DRIFT_ENTRIES {
            diff.entries.push(entry);
        } else {
            diff.truncated += 1;
        }
    }
    let summary = diff.summary();
    plan.outcome.drifted = Verdict::new(
        ConditionStatus::True,
        reason::DRIFTED,
        format!("{name} differs from what this TailscaleService applied: {summary}"),
    );
    if !corrects && plan.outcome.ready.status == ConditionStatus::Unknown {
        plan.outcome.ready = Verdict::new(
            ConditionStatus::True,
            reason::DRIFTED,
            format!(
                "host approvals of {name} were changed outside the operator and are left as \
                 they are (driftPolicy: Report): {summary}"
            ),
        );
    }
}

/// Ready once the service matches and at least one selected host is approved and configured;
/// otherwise the reason names the missing part.
fn readiness(
    plan: &ServicePlan,
    selectable: usize,
    advertising_selected: usize,
    ready_hosts: usize,
    spec: &crate::resources::TailscaleServiceSpec,
) -> Verdict {
    let name = &plan.outcome.service_name;
    if ready_hosts > 0 {
        let address = plan
            .outcome
            .addresses
            .first()
            .map_or(String::new(), |a| format!(" at {a}"));
        return Verdict::new(
            ConditionStatus::True,
            reason::RECONCILED,
            format!(
                "{name} serves {}{address}; {ready_hosts} approved host(s) configured",
                spec.ports.join(", ")
            ),
        );
    }
    if selectable == 0 {
        return Verdict::new(
            ConditionStatus::False,
            service_reason::NO_HOSTS,
            format!(
                "no device of the tailnet matches spec.hosts: tag devices or change the selector \
                 so that {name} has somewhere to run"
            ),
        );
    }
    if advertising_selected == 0 {
        return Verdict::new(
            ConditionStatus::False,
            service_reason::NOT_ADVERTISED,
            format!(
                "{selectable} device(s) match spec.hosts but none advertises {name}; on a host, \
                 run `tailscale serve --service={name} ...` (or deploy the proxy that does)"
            ),
        );
    }
    Verdict::new(
        ConditionStatus::False,
        service_reason::AWAITING_APPROVAL,
        format!(
            "{advertising_selected} matching host(s) advertise {name} but none is approved and \
             configured yet"
        ),
    )
}

/// Step 2 for a service that does not exist yet (file mode `plan`): nothing can be approved
/// before it is created; readiness says so.
pub fn hosts_after_create(plan: &mut ServicePlan) {
    if plan.outcome.ready.status == ConditionStatus::Unknown {
        plan.outcome.ready = Verdict::new(
            ConditionStatus::False,
            reason::PENDING,
            format!(
                "{} is created by this apply; its hosts are approved once it exists",
                plan.outcome.service_name
            ),
        );
    }
}

/// `Synced=True` after a pass that reached the API.
fn synced_verdict() -> Verdict {
    Verdict::new(
        ConditionStatus::True,
        reason::RECONCILED,
        "the service and its hosts were read and compared",
    )
}

/// `Drifted=False`.
fn in_sync_verdict() -> Verdict {
    Verdict::new(
        ConditionStatus::False,
        reason::IN_SYNC,
        "the service is as applied",
    )
}
