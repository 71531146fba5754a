//! The TailscaleService planner without a runtime: ownership, writes, drift, hosts, readiness
//! and the policy contributions.
use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::resources::DriftPolicy;
use crate::resources::conditions::{ConditionStatus, Verdict, reason};
use crate::resources::tailscale_service::{
    HostApproval, OWNER_ANNOTATION, TAILSCALE_OPERATOR_ANNOTATION,
};
use crate::tailscale::{Device, Service, ServiceHost};

fn object(spec: serde_json::Value) -> TailscaleService {
    serde_json::from_value(json!({
        "apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "TailscaleService",
        "metadata": {"name": "grafana", "namespace": "monitoring"},
        "spec": spec,
    }))
    .unwrap()
}

fn input() -> ServiceInput {
    ServiceInput::from_object(&object(json!({
        "ports": ["tcp:443"],
        "tags": ["tag:grafana"],
        "comment": "dashboards",
        "hosts": {"tags": ["tag:monitoring"]},
        "accessFrom": ["group:eng"],
    })))
}

fn names() -> PolicyNames {
    PolicyNames {
        groups: ["group:eng".to_owned()].into(),
        tags: ["tag:grafana".to_owned(), "tag:monitoring".to_owned()].into(),
    }
}

fn live(annotations: &[(&str, &str)]) -> Service {
    Service {
        name: "svc:grafana".into(),
        addrs: vec!["100.100.0.1".into(), "fd7a:115c:a1e0::1".into()],
        comment: "dashboards".into(),
        ports: vec!["tcp:443".into()],
        tags: vec!["tag:grafana".into()],
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn ours() -> Service {
    live(&[(OWNER_ANNOTATION, "monitoring/grafana")])
}

fn device(node_id: &str, hostname: &str, tags: &[&str]) -> Device {
    Device {
        node_id: node_id.into(),
        hostname: hostname.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Device::default()
    }
}

fn host(node_id: &str, level: &str) -> ServiceHost {
    ServiceHost {
        stable_node_id: node_id.into(),
        approval_level: level.into(),
        configured: "ready".into(),
    }
}

fn devices() -> Vec<Device> {
    vec![
        device("n1", "mon-1", &["tag:monitoring"]),
        device("n2", "mon-2", &["tag:monitoring"]),
        device("n3", "laptop", &[]),
    ]
}

/// `input` after a pass that applied `ours()` with hosts n1 and n2 approved.
fn applied_input() -> ServiceInput {
    let mut resource = input();
    let mut plan = plan_service(&resource, &[], &[ours()], Some(&names()));
    plan_hosts(
        &mut plan,
        &resource,
        &devices(),
        &[host("n1", "approved:manual"), host("n2", "approved:auto")],
    );
    resource.applied = plan.outcome.applied.clone();
    resource
}

#[test]
fn a_missing_service_is_created_with_the_mark_and_no_addresses() {
    let plan = plan_service(&input(), &[], &[], Some(&names()));
    let write = plan.write.as_ref().unwrap();
    assert_eq!(write.reason, WriteReason::Create);
    assert_eq!(write.service.name, "svc:grafana");
    assert!(write.service.addrs.is_empty());
    assert_eq!(
        write.service.annotations.get(OWNER_ANNOTATION).unwrap(),
        "monitoring/grafana"
    );
    assert!(plan.manages);
}

#[test]
fn a_pinned_address_is_sent_on_create_and_replaces_the_live_ipv4_on_update() {
    let mut resource = input();
    resource.spec.address = Some("100.100.0.9".into());
    let create = plan_service(&resource, &[], &[], Some(&names()));
    assert_eq!(create.write.unwrap().service.addrs, ["100.100.0.9"]);
    let update = plan_service(&resource, &[], &[ours()], Some(&names()));
    assert_eq!(
        update.write.unwrap().service.addrs,
        ["100.100.0.9", "fd7a:115c:a1e0::1"]
    );
}

#[test]
fn the_steady_state_writes_nothing_and_updates_carry_the_live_addresses() {
    let resource = applied_input();
    let plan = plan_service(&resource, &[], &[ours()], Some(&names()));
    assert!(plan.write.is_none());
    let mut changed = resource.clone();
    changed.spec.ports.push("tcp:8443".into());
    let plan = plan_service(&changed, &[], &[ours()], Some(&names()));
    let write = plan.write.unwrap();
    assert_eq!(write.reason, WriteReason::SpecChanged);
    assert_eq!(write.service.addrs, ours().addrs);
    // Port order is not a difference.
    let mut reordered = changed.clone();
    reordered.spec.ports.reverse();
    let mut live = ours();
    live.ports = vec!["tcp:8443".into(), "tcp:443".into()];
    assert!(
        plan_service(&reordered, &[], &[live], Some(&names()))
            .write
            .is_none()
    );
}

#[test]
fn tailscale_operators_services_are_never_touched() {
    let mut resource = input();
    resource.spec.adopt = true;
    let theirs = live(&[(TAILSCALE_OPERATOR_ANNOTATION, r#"{"ownerRefs":[]}"#)]);
    let plan = plan_service(&resource, &[], &[theirs], Some(&names()));
    assert!(plan.write.is_none() && !plan.manages);
    assert_eq!(
        plan.outcome.ready.reason,
        service_reason::OWNED_BY_TAILSCALE_OPERATOR
    );
    assert!(plan.outcome.ready.message.contains("svc:grafana"));
    let mut plan = plan;
    let approvals = plan_hosts(
        &mut plan,
        &resource,
        &devices(),
        &[host("n1", "not-approved")],
    );
    assert!(approvals.is_empty());
}

#[test]
fn an_unmarked_service_is_a_conflict_unless_adopted() {
    let plan = plan_service(&input(), &[], &[live(&[])], Some(&names()));
    assert_eq!(plan.outcome.ready.reason, reason::CONFLICT);
    assert!(plan.outcome.ready.message.contains("spec.adopt: true"));
    assert!(plan.write.is_none());
    let mut adopting = input();
    adopting.spec.adopt = true;
    let plan = plan_service(&adopting, &[], &[live(&[])], Some(&names()));
    assert_eq!(plan.write.unwrap().reason, WriteReason::Adopt);
    // Another resource's mark: a conflict even with adopt.
    let plan = plan_service(
        &adopting,
        &[],
        &[live(&[(OWNER_ANNOTATION, "other/grafana")])],
        Some(&names()),
    );
    assert_eq!(plan.outcome.ready.reason, reason::CONFLICT);
    assert!(plan.outcome.ready.message.contains("other/grafana"));
}

#[test]
fn two_resources_naming_one_service_both_stand_back_naming_each_other() {
    let a = input();
    let mut b = input();
    b.key = "team/grafana".into();
    let plan_a = plan_service(&a, std::slice::from_ref(&b), &[], Some(&names()));
    let plan_b = plan_service(&b, std::slice::from_ref(&a), &[], Some(&names()));
    assert!(plan_a.write.is_none() && plan_b.write.is_none());
    assert!(plan_a.outcome.ready.message.contains("team/grafana"));
    assert!(plan_b.outcome.ready.message.contains("monitoring/grafana"));
}

#[test]
fn undefined_tags_and_groups_fail_before_any_write() {
    let mut resource = input();
    resource.spec.access_from = vec!["group:nobody".into(), "tag:ghost".into()];
    let plan = plan_service(&resource, &[], &[], Some(&names()));
    assert!(plan.write.is_none());
    assert_eq!(plan.outcome.ready.reason, reason::INVALID);
    let message = &plan.outcome.ready.message;
    assert!(message.contains("group:nobody") && message.contains("tag:ghost"));
    assert!(message.contains("tagOwners"));
}

#[test]
fn console_edits_are_drift_corrected_or_reported() {
    let resource = applied_input();
    let mut edited = ours();
    edited.tags = vec!["tag:other".into()];
    let plan = plan_service(&resource, &[], &[edited.clone()], Some(&names()));
    assert_eq!(
        plan.write.as_ref().unwrap().reason,
        WriteReason::DriftCorrection
    );
    let diff = plan.outcome.drift.as_ref().unwrap();
    assert!(diff.entries.iter().any(|e| e.path.starts_with("/tags")));
    assert!(plan.outcome.drifted.is_true());

    let mut reporting = resource.clone();
    reporting.spec.common.drift_policy = DriftPolicy::Report;
    let plan = plan_service(&reporting, &[], &[edited], Some(&names()));
    assert!(plan.write.is_none());
    assert!(plan.outcome.drifted.is_true());
    assert_eq!(plan.outcome.ready.reason, reason::DRIFTED);

    // Deleted in the console: drift, recreated.
    let plan = plan_service(&resource, &[], &[], Some(&names()));
    assert_eq!(plan.write.unwrap().reason, WriteReason::DriftCorrection);
}

#[test]
fn suspend_observes_only() {
    let mut resource = input();
    resource.spec.common.suspend = true;
    let plan = plan_service(&resource, &[], &[], Some(&names()));
    assert!(plan.write.is_none() && plan.suspended);
    assert_eq!(plan.outcome.ready.reason, reason::SUSPENDED);
}

#[test]
fn matching_advertising_hosts_are_approved_and_others_left_or_revoked() {
    let resource = input();
    let mut plan = plan_service(&resource, &[], &[ours()], Some(&names()));
    let hosts = [
        host("n1", "not-approved"),
        host("n2", "approved:auto"),
        host("n3", "approved:manual"),
    ];
    let approvals = plan_hosts(&mut plan, &resource, &devices(), &hosts);
    assert_eq!(approvals.len(), 1);
    assert_eq!(
        (approvals[0].node_id.as_str(), approvals[0].approved),
        ("n1", true)
    );
    assert!(!approvals[0].correction);
    assert_eq!(plan.outcome.hosts_ready.as_deref(), Some("2/3"));
    assert!(plan.outcome.ready.is_true(), "{:?}", plan.outcome.ready);
    assert_eq!(
        plan.outcome.applied.as_ref().unwrap().approved_hosts,
        ["n1", "n2"]
    );

    let mut exact = resource.clone();
    exact.spec.host_approval = HostApproval::Exact;
    let mut plan = plan_service(&exact, &[], &[ours()], Some(&names()));
    let approvals = plan_hosts(&mut plan, &exact, &devices(), &hosts);
    let revoked: Vec<_> = approvals.iter().filter(|a| !a.approved).collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].name, "laptop");
}

#[test]
fn a_revoked_approval_is_drift() {
    let resource = applied_input();
    let mut plan = plan_service(&resource, &[], &[ours()], Some(&names()));
    let hosts = [host("n1", "not-approved"), host("n2", "approved:auto")];
    let approvals = plan_hosts(&mut plan, &resource, &devices(), &hosts);
    assert_eq!(approvals.len(), 1);
    assert!(approvals[0].correction);
    let diff = plan.outcome.drift.as_ref().unwrap();
    assert_eq!(diff.entries[0].path, "/hosts/mon-1/approved");

    let mut reporting = resource.clone();
    reporting.spec.common.drift_policy = DriftPolicy::Report;
    let mut plan = plan_service(&reporting, &[], &[ours()], Some(&names()));
    let approvals = plan_hosts(&mut plan, &reporting, &devices(), &hosts);
    assert!(approvals.is_empty());
    assert!(plan.outcome.drifted.is_true());
}

#[test]
fn readiness_names_the_missing_part() {
    let resource = input();
    let reason_with = |devices: &[Device], hosts: &[ServiceHost]| {
        let mut plan = plan_service(&resource, &[], &[ours()], Some(&names()));
        plan_hosts(&mut plan, &resource, devices, hosts);
        plan.outcome.ready.reason
    };
    let laptop_only = [device("n3", "laptop", &[])];
    assert_eq!(reason_with(&laptop_only, &[]), service_reason::NO_HOSTS);
    assert_eq!(reason_with(&devices(), &[]), service_reason::NOT_ADVERTISED);
    // Suspended: an approval the spec asks for waits, and says so.
    let mut suspended = resource.clone();
    suspended.spec.common.suspend = true;
    let mut plan = plan_service(&suspended, &[], &[ours()], Some(&names()));
    let approvals = plan_hosts(
        &mut plan,
        &suspended,
        &devices(),
        &[host("n1", "not-approved")],
    );
    assert!(approvals.is_empty());
    assert_eq!(plan.outcome.ready.reason, reason::SUSPENDED);
    // Advertising, matching, approval reported as drift and left: awaiting approval.
    let mut reporting = applied_input();
    reporting.spec.common.drift_policy = DriftPolicy::Report;
    let mut plan = plan_service(&reporting, &[], &[ours()], Some(&names()));
    plan.outcome.ready = Verdict::new(ConditionStatus::Unknown, reason::PENDING, "");
    let hosts = [host("n1", "not-approved"), host("n2", "not-approved")];
    plan_hosts(&mut plan, &reporting, &devices(), &hosts);
    assert_eq!(plan.outcome.ready.reason, reason::DRIFTED);
}

#[test]
fn contributions_are_a_grant_to_the_service_and_auto_approvers() {
    let obj = object(json!({
        "ports": ["tcp:443", "tcp:8443"],
        "hosts": {"tags": ["tag:monitoring"]},
        "accessFrom": ["group:eng", "alice@example.com"],
        "accessPorts": ["tcp:443"],
        "autoApprove": true,
    }));
    let contributed = contributions(&obj);
    assert_eq!(contributed.len(), 2);
    assert_eq!(contributed[0].source, "TailscaleService/monitoring/grafana");
    assert_eq!(contributed[0].section, "grants");
    assert_eq!(
        contributed[0].value,
        json!({"src": ["group:eng", "alice@example.com"], "dst": ["svc:grafana"], "ip": ["tcp:443"]})
    );
    assert_eq!(contributed[1].section, "autoApprovers.services");
    assert_eq!(
        contributed[1].value,
        json!({"svc:grafana": ["tag:monitoring"]})
    );
    let lines = contribution_lines(&contributed);
    assert!(lines[0].starts_with("grants: {"));

    // Being deleted with deletionPolicy Delete: its grant goes with it.
    let mut deleting = obj.clone();
    deleting.metadata.deletion_timestamp = Some(crate::resources::conditions::now());
    assert!(tailnet_contributions([&deleting]).is_empty());
    assert_eq!(tailnet_contributions([&obj]).len(), 2);
}

#[test]
fn contributions_compose_into_a_policy_that_grants_the_service() {
    use crate::policy::access::{Endpoint, Policy, Proto, ServiceView, TailnetView};
    use crate::policy::compose::{PolicySource, compose};
    let base = PolicySource {
        name: "TailnetPolicy/base".into(),
        generation: None,
        text: r#"{"groups": {"group:eng": ["alice@example.com"]},
                 "tagOwners": {"tag:monitoring": ["group:eng"]}}"#
            .into(),
    };
    let obj = object(
        json!({"ports": ["tcp:443"], "hosts": {"tags": ["tag:monitoring"]},
        "accessFrom": ["group:eng"]}),
    );
    let composed = compose(&base, &[], &contributions(&obj)).unwrap();
    assert!(composed.rejected.is_empty(), "{:?}", composed.rejected);
    let doc = crate::policy::hujson::parse_strict(&composed.text).unwrap();
    assert_eq!(doc["grants"][0]["dst"], json!(["svc:grafana"]));
    let policy = Policy::compile(&doc).unwrap();
    let view = TailnetView {
        users: vec!["alice@example.com".into(), "bob@example.com".into()],
        devices: Vec::new(),
        services: vec![ServiceView {
            name: "svc:grafana".into(),
            addresses: vec!["100.100.0.1".parse().unwrap()],
        }],
    };
    let service = Endpoint::Service("svc:grafana".into());
    let (alice, bob) = (
        Endpoint::User("alice@example.com".into()),
        Endpoint::User("bob@example.com".into()),
    );
    assert!(policy.allows(&alice, &service, 443, Proto(6), &view));
    assert!(!policy.allows(&alice, &service, 22, Proto(6), &view));
    assert!(!policy.allows(&bob, &service, 443, Proto(6), &view));
}
