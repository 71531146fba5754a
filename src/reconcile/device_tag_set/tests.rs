//! Planner tests: pure, no runtime, no I/O.
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::*;
use crate::resources::ConditionStatus;
use crate::tailscale::Device;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn device(hostname: &str, tags: &[&str]) -> Device {
    Device {
        node_id: format!("n-{hostname}"),
        hostname: hostname.into(),
        name: format!("{hostname}.tail1.ts.net"),
        os: "linux".into(),
        user: "alice@example.com".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        authorized: true,
        created: Some(t0() - Duration::days(10)),
        enabled_routes: Some(vec![]),
        advertised_routes: Some(vec![]),
        ..Device::default()
    }
}

fn set(name: &str, spec: Value) -> TagSetInput {
    TagSetInput {
        name: name.into(),
        generation: Some(1),
        spec: serde_json::from_value(spec).unwrap(),
        applied: None,
        matched_before: None,
        removing: false,
    }
}

fn run(sets: &[TagSetInput], devices: &[Device]) -> TagSetPlan {
    plan(sets, devices, &AutoApprovers::none(), t0())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn add_keeps_other_tags_and_writes_only_devices_that_differ() {
    let devices = [
        device("web-1", &["tag:prod"]),
        device("web-2", &["tag:server", "tag:prod"]),
        device("db-1", &[]),
    ];
    let sets = [set(
        "web",
        json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:server"]}),
    )];
    let p = run(&sets, &devices);
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].hostname, "web-1");
    assert_eq!(
        p.changes[0].tags.as_deref(),
        Some(&strings(&["tag:prod", "tag:server"])[..])
    );
    assert_eq!(p.changes[0].authorized, None);
    let web = p.set("web").unwrap();
    assert_eq!(web.devices.len(), 2);
    assert_eq!(web.devices[0].state, DeviceState::Changing);
    assert_eq!(web.devices[1].state, DeviceState::InSync);
}

#[test]
fn exact_replaces_the_tag_set() {
    let devices = [device("web-1", &["tag:prod", "tag:old"])];
    let sets = [set(
        "web",
        json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:server", "tag:prod"], "mode": "Exact"}),
    )];
    let p = run(&sets, &devices);
    assert_eq!(
        p.changes[0].tags.as_deref(),
        Some(&strings(&["tag:server", "tag:prod"])[..])
    );
    // Same tags in another order: nothing to do.
    let devices = [device("web-1", &["tag:prod", "tag:server"])];
    assert!(run(&sets, &devices).changes.is_empty());
}

#[test]
fn authorization_key_expiry_and_routes_are_written_only_when_they_differ() {
    let mut d = device("router-1", &[]);
    d.authorized = false;
    d.advertised_routes = Some(strings(&["10.0.0.0/24", "10.1.0.0/24"]));
    d.enabled_routes = Some(strings(&["10.9.0.0/24"]));
    let sets = [set(
        "routers",
        json!({"selector": {"hostnames": ["router-*"]}, "authorized": true,
               "keyExpiryDisabled": false, "routes": ["10.0.0.0/24", "10.2.0.0/24"]}),
    )];
    let p = run(&sets, &[d.clone()]);
    let change = &p.changes[0];
    assert_eq!(change.tags, None, "no tags asked for");
    assert_eq!(change.authorized, Some(true));
    assert_eq!(change.key_expiry_disabled, None, "already false");
    // Enabled = wanted ∩ advertised; the unwanted 10.9.0.0/24 goes.
    assert_eq!(
        change.routes.as_deref(),
        Some(&strings(&["10.0.0.0/24"])[..])
    );
    let routers = p.set("routers").unwrap();
    assert_eq!(routers.waiting.len(), 1);
    assert_eq!(routers.waiting[0].routes, strings(&["10.2.0.0/24"]));
}

#[test]
fn auto_approved_routes_are_kept_enabled() {
    let mut d = device("router-1", &["tag:router"]);
    d.advertised_routes = Some(strings(&["10.0.0.0/24", "10.10.1.0/24"]));
    d.enabled_routes = Some(strings(&["10.0.0.0/24", "10.10.1.0/24"]));
    let approvers = AutoApprovers::from_policy(&json!({
        "autoApprovers": {"routes": {"10.10.0.0/16": ["tag:router"]}},
    }));
    let sets = [set(
        "routers",
        json!({"selector": {"hostnames": ["router-*"]}, "routes": ["10.0.0.0/24"]}),
    )];
    let p = plan(&sets, &[d], &approvers, t0());
    assert!(p.changes.is_empty(), "{:?}", p.changes);
    assert_eq!(p.sets[0].devices[0].state, DeviceState::InSync);
}

#[test]
fn two_exact_sets_that_disagree_conflict_and_write_nothing() {
    let devices = [device("web-1", &[]), device("web-2", &[])];
    let sets = [
        set(
            "a",
            json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:a"], "mode": "Exact"}),
        ),
        set(
            "b",
            json!({"selector": {"hostnames": ["web-1"]}, "tags": ["tag:b"], "mode": "Exact"}),
        ),
    ];
    let p = run(&sets, &devices);
    // web-2 is only a's: it is written; web-1 is disputed: it is not.
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].hostname, "web-2");
    let a = p.set("a").unwrap();
    let b = p.set("b").unwrap();
    assert_eq!(a.conflicts[0].with, "DeviceTagSet/b");
    assert_eq!(b.conflicts[0].with, "DeviceTagSet/a");
    assert_eq!(a.conflicts[0].fields, ["tags"]);
    assert_eq!(a.conflicts[0].examples, ["web-1"]);
    let outcomes = outcomes(&p, None);
    assert_eq!(outcomes[0].ready.status, ConditionStatus::False);
    assert_eq!(outcomes[0].ready.reason, "Conflict");
    assert!(outcomes[1].ready.message.contains("DeviceTagSet/a"));
    // The same plan whichever order the sets come in.
    let reversed = [sets[1].clone(), sets[0].clone()];
    assert_eq!(run(&reversed, &devices).changes, p.changes);
}

#[test]
fn add_inside_exact_and_add_with_add_combine() {
    let devices = [device("web-1", &["tag:x"])];
    let sets = [
        set(
            "exact",
            json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:a", "tag:b"], "mode": "Exact"}),
        ),
        set(
            "add",
            json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:a"]}),
        ),
    ];
    let p = run(&sets, &devices);
    assert!(p.sets.iter().all(|s| s.conflicts.is_empty()));
    assert_eq!(
        p.changes[0].tags.as_deref(),
        Some(&strings(&["tag:a", "tag:b"])[..])
    );
    let adds = [
        set(
            "one",
            json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:a"]}),
        ),
        set(
            "two",
            json!({"selector": {"os": ["linux"]}, "tags": ["tag:b"]}),
        ),
    ];
    let p = run(&adds, &devices);
    assert_eq!(
        p.changes[0].tags.as_deref(),
        Some(&strings(&["tag:x", "tag:a", "tag:b"])[..])
    );
    // An Add tag outside an Exact set is a conflict.
    let clash = [
        sets[0].clone(),
        set(
            "other",
            json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:c"]}),
        ),
    ];
    assert!(run(&clash, &devices).changes.is_empty());
}

#[test]
fn a_difference_on_a_device_applied_before_is_drift_and_report_leaves_it() {
    let devices = [device("web-1", &[]), {
        let mut new = device("web-2", &[]);
        new.created = Some(t0() - Duration::minutes(1));
        new
    }];
    let mut report = set(
        "web",
        json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:server"], "driftPolicy": "Report"}),
    );
    report.applied = Some(AppliedMark {
        generation: 1,
        at: t0() - Duration::hours(1),
    });
    let p = run(std::slice::from_ref(&report), &devices);
    // web-1 existed when the set was applied: drift, reported, not written. web-2 registered
    // since: a new device, written.
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].hostname, "web-2");
    let web = p.set("web").unwrap();
    assert_eq!(web.drifted_devices, 1);
    assert_eq!(web.drift.entries[0].path, "/web-1/tags");
    let outcome = &outcomes(&p, Some(&TagSetExecuted::default()))[0];
    assert_eq!(outcome.drifted.status, ConditionStatus::True);
    assert_eq!(outcome.ready.reason, "Drifted");

    // Correct: the same drift is written, and reported before the write.
    let mut correct = report.clone();
    correct.spec.common.drift_policy = crate::resources::DriftPolicy::Correct;
    let p = run(&[correct], &devices);
    assert_eq!(p.changes.len(), 2);
    assert_eq!(outcomes(&p, None)[0].drifted.status, ConditionStatus::True);

    // A new generation is a spec change, not drift.
    let mut changed = report;
    changed.generation = Some(2);
    let p = run(&[changed], &devices);
    assert_eq!(p.changes.len(), 2);
    assert_eq!(p.sets[0].drifted_devices, 0);
}

#[test]
fn deleting_an_add_set_removes_only_its_tags_no_other_set_wants() {
    let devices = [device("web-1", &["tag:prod", "tag:server", "tag:web"])];
    let mut leaving = set(
        "leaving",
        json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:server", "tag:web"]}),
    );
    leaving.removing = true;
    let staying = set(
        "staying",
        json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:web"]}),
    );
    let p = run(&[leaving.clone(), staying], &devices);
    assert_eq!(
        p.changes[0].tags.as_deref(),
        Some(&strings(&["tag:prod", "tag:web"])[..])
    );
    assert_eq!(outcomes(&p, None).len(), 1, "no status for the deleted set");
    let p = run(&[leaving], &devices);
    assert_eq!(
        p.changes[0].tags.as_deref(),
        Some(&strings(&["tag:prod"])[..])
    );
}

#[test]
fn k8s_devices_are_skipped_unless_named_and_suspended_sets_do_not_write() {
    let devices = [device("proxy", &["tag:k8s"]), device("web-1", &[])];
    let sets = [set(
        "all",
        json!({"selector": {"os": ["linux"]}, "tags": ["tag:server"], "suspend": true}),
    )];
    let p = run(&sets, &devices);
    assert!(p.changes.is_empty());
    assert_eq!(p.sets[0].devices.len(), 1, "the proxy is not matched");
    assert_eq!(p.sets[0].devices[0].state, DeviceState::Suspended);
    let o = &outcomes(&p, Some(&TagSetExecuted::default()))[0];
    assert_eq!(o.ready.reason, "Suspended");
}

#[test]
fn a_converged_set_keeps_its_mark_in_steady_state() {
    let devices = [device("web-1", &["tag:server"])];
    let mut s = set(
        "web",
        json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:server"]}),
    );
    let first = &outcomes(
        &run(&[s.clone()], &devices),
        Some(&TagSetExecuted::default()),
    )[0];
    let mark = first.applied.expect("converged: marked");
    assert_eq!(mark.generation, 1);
    assert_eq!(first.ready.status, ConditionStatus::True);
    s.applied = Some(mark);
    s.matched_before = Some(1);
    let later = plan(
        &[s],
        &devices,
        &AutoApprovers::none(),
        t0() + Duration::hours(1),
    );
    let again = &outcomes(&later, Some(&TagSetExecuted::default()))[0];
    assert_eq!(again.applied, Some(mark), "no status churn");
}
