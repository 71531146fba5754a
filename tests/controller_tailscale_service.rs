//! The TailscaleService controller run for real by the manager (kube `Controller`, watches,
//! events) against the in-process fake API server and a simulated tailnet over HTTP. Writes
//! are counted with the sim's call counter and status writes with the fake API server's.
//!
//! The seeded tailnet has `svc:grafana` (Tailscale's own operator's: annotated
//! `tailscale.com/owner-references`), `svc:api` (unmarked) and a device `monitoring-1`
//! (`tag:monitoring`) that already advertises `svc:grafana-eng`, which does not exist yet.
mod support;

use serde_json::{Value, json};
use support::fake_kube::{FakeKube, Gvr};
use support::kinds::{
    HANG_GUARD, calls, create, drift_gauge, force_reconcile, object, resync, status_writes, stop,
    wait_gone, wait_reason,
};
use support::operator::{connect_tailnet, run_config, sim, start_manager};
use tailnet_operator::controller::Manager;
use tailnet_operator::policy::access::{Endpoint, Policy, Proto, ServiceView, TailnetView};
use tailnet_operator::policy::hujson::parse_strict;
use tailnet_operator::resources::{ConditionType, ManagedTailnet, TailnetPolicy, TailscaleService};
use tailnet_operator::sim::SimServer;

const PUT: &str = "PUT /api/v2/tailnet/{tailnet}/services/{serviceName}";
const DELETE: &str = "DELETE /api/v2/tailnet/{tailnet}/services/{serviceName}";
const APPROVE: &str =
    "POST /api/v2/tailnet/{tailnet}/services/{serviceName}/device/{deviceId}/approved";
const LIST: &str = "GET /api/v2/tailnet/{tailnet}/services";
const HOSTS: &str = "GET /api/v2/tailnet/{tailnet}/services/{serviceName}/devices";

const NAME: &str = "monitoring/grafana-eng";
const SERVICE: &str = "svc:grafana-eng";

fn fake() -> FakeKube {
    FakeKube::new()
        .with_status_subresource_for::<ManagedTailnet>()
        .with_status_subresource_for::<TailscaleService>()
        .with_status_subresource_for::<TailnetPolicy>()
}

fn spec() -> Value {
    json!({
        "ports": ["tcp:443"],
        "tags": ["tag:monitoring"],
        "comment": "Grafana for engineering",
        "hosts": {"tags": ["tag:monitoring"]},
    })
}

fn writes(sim: &SimServer) -> (u64, u64, u64) {
    (calls(sim, PUT), calls(sim, APPROVE), calls(sim, DELETE))
}

fn level(sim: &SimServer, service: &str, hostname: &str) -> String {
    let node = sim.tailnet().device_id(hostname).unwrap();
    sim.tailnet()
        .service_hosts(service)
        .into_iter()
        .find(|(n, _)| *n == node)
        .map(|(_, level)| level.to_owned())
        .unwrap_or_else(|| "not a host".to_owned())
}

/// A connected tailnet, the sim's `laptop` advertising the service too (it does not match
/// `hosts`), `NAME` created with `spec`, and the operator started; waits for Ready=`ready`.
async fn with_service(spec: Value, ready: &str) -> (FakeKube, SimServer, Manager) {
    let (fake, sim) = (fake(), sim().await);
    connect_tailnet(&fake, &sim);
    let laptop = sim.tailnet().device_id("old-nas").unwrap();
    sim.tailnet()
        .console_advertise_service(&laptop, SERVICE)
        .unwrap();
    create::<TailscaleService>(&fake, NAME, spec);
    let manager = start_manager(&fake, run_config()).await;
    wait_reason::<TailscaleService>(&fake, NAME, ConditionType::Ready, ready, None).await;
    (fake, sim, manager)
}

/// Forces a reconcile of `name` and waits for it (the service list re-read).
async fn forced(fake: &FakeKube, sim: &SimServer, manager: &Manager, name: &str, value: &str) {
    let (reads, done) = (
        calls(sim, LIST),
        manager.metrics().reconciles("TailscaleService", "ok"),
    );
    force_reconcile::<TailscaleService>(fake, name, value);
    fake.wait_for(&format!("a forced reconcile of {name}"), HANG_GUARD, |_| {
        (calls(sim, LIST) > reads && manager.metrics().reconciles("TailscaleService", "ok") > done)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn create_writes_the_service_approves_matching_hosts_and_a_resync_writes_nothing() {
    let (fake, sim, manager) = with_service(spec(), "True").await;

    let live = sim.tailnet().service(SERVICE).expect("the service exists");
    assert_eq!(live["ports"], json!(["tcp:443"]));
    assert_eq!(live["tags"], json!(["tag:monitoring"]));
    assert_eq!(live["comment"], "Grafana for engineering");
    assert_eq!(live["annotations"]["tailnet.ops.dev/owner"], NAME);
    assert_eq!(writes(&sim), (1, 1, 0), "one PUT, one approval");
    assert_eq!(level(&sim, SERVICE, "monitoring-1"), "approved:manual");
    assert_eq!(level(&sim, SERVICE, "old-nas"), "not-approved");

    let status = object::<TailscaleService>(&fake, NAME)
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.service_name.as_deref(), Some(SERVICE));
    assert_eq!(status.addresses, live["addrs"].as_array().unwrap().clone());
    assert_eq!(status.addresses.len(), 2, "IPv4 and IPv6");
    assert_eq!(status.hosts_ready.as_deref(), Some("1/2"));
    let selected: Vec<(&str, bool)> = status
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.selected))
        .collect();
    assert_eq!(selected, [("monitoring-1", true), ("old-nas", false)]);

    // Steady state: a resync reads (the shared list, one hosts read per pass) and writes
    // nothing.
    let status_before = status_writes::<TailscaleService>(&fake);
    let (hosts_before, passes_before) = (
        calls(&sim, HOSTS),
        manager.metrics().reconciles("TailscaleService", "ok"),
    );
    resync::<TailscaleService>(&fake, &manager, 1, "r1").await;
    assert_eq!(writes(&sim), (1, 1, 0), "no write in steady state");
    assert_eq!(status_writes::<TailscaleService>(&fake), status_before);
    let passes = manager.metrics().reconciles("TailscaleService", "ok") - passes_before;
    assert_eq!(
        calls(&sim, HOSTS) - hosts_before,
        passes,
        "one hosts read per pass"
    );
    stop(manager).await;
}

#[tokio::test]
async fn tailscale_operator_services_are_never_touched_and_unmarked_ones_need_adopt() {
    let (fake, sim) = (fake(), sim().await);
    connect_tailnet(&fake, &sim);
    let theirs = sim.tailnet().service("svc:grafana").unwrap();
    let mut spec = spec();
    spec["serviceName"] = json!("svc:grafana");
    spec["adopt"] = json!(true);
    create::<TailscaleService>(&fake, "apps/grafana", spec);
    let manager = start_manager(&fake, run_config()).await;
    let message = wait_reason::<TailscaleService>(
        &fake,
        "apps/grafana",
        ConditionType::Ready,
        "False",
        Some("OwnedByTailscaleOperator"),
    )
    .await;
    assert!(message.contains("svc:grafana"), "{message}");
    // An update, then the deletion: still nothing written to it.
    fake.merge_patch(
        &Gvr::of::<TailscaleService>(),
        Some("apps"),
        "grafana",
        json!({"spec": {"comment": "changed"}}),
    )
    .unwrap();
    forced(&fake, &sim, &manager, "apps/grafana", "u1").await;
    fake.delete(&Gvr::of::<TailscaleService>(), Some("apps"), "grafana")
        .unwrap();
    wait_gone::<TailscaleService>(&fake, "apps/grafana").await;
    assert_eq!(
        writes(&sim),
        (0, 0, 0),
        "0 writes to Tailscale's operator's service"
    );
    assert_eq!(sim.tailnet().service("svc:grafana").unwrap(), theirs);

    // svc:api exists unmarked: a conflict without adopt, taken over with it.
    // Adopting makes its ports, tags and comment this resource's (tag:k8s is the k8s
    // operator's own; the test's API key may apply tag:monitoring). Its host is a tag:k8s
    // device: as in DeviceTagSet, only a selector naming it by node id matches it.
    let host = sim.tailnet().device_id("ts-ingress-api").unwrap();
    let api = json!({"serviceName": "svc:api", "ports": ["tcp:443", "tcp:8443"],
        "tags": ["tag:monitoring"], "comment": "Public API", "hosts": {"nodeIds": [host]}});
    create::<TailscaleService>(&fake, "apps/api", api);
    let message = wait_reason::<TailscaleService>(
        &fake,
        "apps/api",
        ConditionType::Ready,
        "False",
        Some("Conflict"),
    )
    .await;
    assert!(message.contains("spec.adopt: true"), "{message}");
    assert_eq!(writes(&sim), (0, 0, 0));
    fake.merge_patch(
        &Gvr::of::<TailscaleService>(),
        Some("apps"),
        "api",
        json!({"spec": {"adopt": true}}),
    )
    .unwrap();
    wait_reason::<TailscaleService>(&fake, "apps/api", ConditionType::Ready, "True", None).await;
    let adopted = sim.tailnet().service("svc:api").unwrap();
    assert_eq!(adopted["annotations"]["tailnet.ops.dev/owner"], "apps/api");
    assert_eq!(calls(&sim, PUT), 1, "one write: the mark");
    stop(manager).await;
}

#[tokio::test]
async fn console_edits_are_corrected_or_reported() {
    let (fake, sim, manager) = with_service(spec(), "True").await;
    let monitoring = sim.tailnet().device_id("monitoring-1").unwrap();

    // Correct (the default): tags and the revoked approval are put back.
    sim.tailnet()
        .console_set_service_tags(SERVICE, &["tag:server"])
        .unwrap();
    sim.tailnet()
        .console_set_service_approval(SERVICE, &monitoring, false)
        .unwrap();
    forced(&fake, &sim, &manager, NAME, "c1").await;
    let live = sim.tailnet().service(SERVICE).unwrap();
    assert_eq!(live["tags"], json!(["tag:monitoring"]));
    assert_eq!(level(&sim, SERVICE, "monitoring-1"), "approved:manual");
    assert_eq!(
        writes(&sim),
        (2, 2, 0),
        "one correcting PUT, one re-approval"
    );
    let events = fake.events_for("TailscaleService", "grafana-eng");
    let drift = events
        .iter()
        .find(|e| e.reason == "Drifted")
        .expect("a drift event");
    assert!(drift.note.contains("/tags"), "{drift:?}");
    assert!(
        drift.note.contains("/hosts/monitoring-1/approved"),
        "{drift:?}"
    );
    let status = object::<TailscaleService>(&fake, NAME)
        .unwrap()
        .status
        .unwrap();
    assert!(
        status.normalized().drift.is_none(),
        "corrected: no drift left"
    );

    // Report: the edit stays, the diff is in status, the gauge is 1.
    fake.merge_patch(
        &Gvr::of::<TailscaleService>(),
        Some("monitoring"),
        "grafana-eng",
        json!({"spec": {"driftPolicy": "Report"}}),
    )
    .unwrap();
    forced(&fake, &sim, &manager, NAME, "c2").await;
    sim.tailnet()
        .console_set_service_tags(SERVICE, &["tag:server"])
        .unwrap();
    sim.tailnet()
        .console_set_service_approval(SERVICE, &monitoring, false)
        .unwrap();
    forced(&fake, &sim, &manager, NAME, "c3").await;
    wait_reason::<TailscaleService>(&fake, NAME, ConditionType::Drifted, "True", Some("Drifted"))
        .await;
    assert_eq!(writes(&sim), (2, 2, 0), "Report writes nothing");
    assert_eq!(
        sim.tailnet().service(SERVICE).unwrap()["tags"],
        json!(["tag:server"])
    );
    let status = object::<TailscaleService>(&fake, NAME)
        .unwrap()
        .status
        .unwrap();
    let paths: Vec<&str> = status
        .drift
        .as_ref()
        .unwrap()
        .entries
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    assert!(paths.iter().any(|p| p.starts_with("/tags")), "{paths:?}");
    assert!(paths.contains(&"/hosts/monitoring-1/approved"), "{paths:?}");
    let gauge = drift_gauge::<TailscaleService>(&manager, NAME).expect("a drift gauge");
    assert!(gauge.ends_with(" 1"), "{gauge}");
    stop(manager).await;
}

/// The live policy as the evaluator sees it, with the tailnet's services.
fn live_policy(sim: &SimServer) -> (Policy, TailnetView) {
    let (text, _) = sim.tailnet().policy();
    let policy = Policy::compile(&parse_strict(&text).unwrap()).unwrap();
    let addresses = |name: &str| -> Vec<std::net::IpAddr> {
        sim.tailnet()
            .service(name)
            .and_then(|s| s["addrs"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a.as_str()?.parse().ok())
            .collect()
    };
    let view = TailnetView {
        users: ["alice@example.com", "dave@example.com", "erin@example.com"]
            .map(str::to_owned)
            .to_vec(),
        devices: Vec::new(),
        services: vec![ServiceView {
            name: SERVICE.into(),
            addresses: addresses(SERVICE),
        }],
    };
    (policy, view)
}

#[tokio::test]
async fn access_from_is_a_grant_in_the_live_policy_and_leaves_with_the_resource() {
    let (fake, sim) = (fake(), sim().await);
    connect_tailnet(&fake, &sim);
    let (seed_policy, _) = sim.tailnet().policy();
    create::<TailnetPolicy>(
        &fake,
        "base",
        json!({"role": "Base", "policy": seed_policy}),
    );
    let mut spec = spec();
    spec["accessFrom"] = json!(["group:eng"]);
    create::<TailscaleService>(&fake, NAME, spec);
    let manager = start_manager(&fake, run_config()).await;
    wait_reason::<TailscaleService>(&fake, NAME, ConditionType::Ready, "True", None).await;
    fake.wait_for("the grant in the live policy", HANG_GUARD, |_| {
        sim.tailnet().policy().0.contains(SERVICE).then_some(())
    })
    .await;

    let (policy, view) = live_policy(&sim);
    let service = Endpoint::Service(SERVICE.into());
    let user = |u: &str| Endpoint::User(u.into());
    let tcp = Proto(6);
    assert!(policy.allows(&user("alice@example.com"), &service, 443, tcp, &view));
    assert!(!policy.allows(&user("alice@example.com"), &service, 22, tcp, &view));
    assert!(!policy.allows(&user("dave@example.com"), &service, 443, tcp, &view));
    assert!(!policy.allows(&user("erin@example.com"), &service, 443, tcp, &view));
    let status = object::<TailscaleService>(&fake, NAME)
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        status.policy,
        [r#"grants: {"src":["group:eng"],"dst":["svc:grafana-eng"],"ip":["tcp:443"]}"#]
    );

    // Deleted (deletionPolicy Delete, the default): the service and its grant go.
    fake.delete(
        &Gvr::of::<TailscaleService>(),
        Some("monitoring"),
        "grafana-eng",
    )
    .unwrap();
    wait_gone::<TailscaleService>(&fake, NAME).await;
    fake.wait_for("the grant gone from the live policy", HANG_GUARD, |_| {
        (!sim.tailnet().policy().0.contains(SERVICE)).then_some(())
    })
    .await;
    assert!(sim.tailnet().service(SERVICE).is_none());
    assert_eq!(calls(&sim, DELETE), 1);
    stop(manager).await;
}

#[tokio::test]
async fn orphan_leaves_the_service_and_removes_only_the_mark() {
    let mut spec = spec();
    spec["deletionPolicy"] = json!("Orphan");
    let (fake, sim, manager) = with_service(spec, "True").await;
    assert!(
        support::kinds::finalizers::<TailscaleService>(&fake, NAME)
            .contains(&"tailnet.ops.dev/cleanup".to_owned()),
        "a finalizer for Orphan too: the mark must go"
    );
    fake.delete(
        &Gvr::of::<TailscaleService>(),
        Some("monitoring"),
        "grafana-eng",
    )
    .unwrap();
    wait_gone::<TailscaleService>(&fake, NAME).await;
    let live = sim.tailnet().service(SERVICE).expect("the service stays");
    assert!(
        live.get("annotations")
            .is_none_or(|a| a.get("tailnet.ops.dev/owner").is_none()),
        "{live}"
    );
    assert_eq!(live["tags"], json!(["tag:monitoring"]));
    assert_eq!(calls(&sim, DELETE), 0);
    assert_eq!(level(&sim, SERVICE, "monitoring-1"), "approved:manual");
    stop(manager).await;
}

/// The bound: a resync of N TailscaleServices reads the services list once for all of them
/// (the shared snapshot) and each service's hosts once.
#[tokio::test]
async fn fifty_services_cost_one_list_and_one_hosts_read_each_per_resync() {
    const N: usize = 50;
    let (fake, sim) = (fake(), sim().await);
    connect_tailnet(&fake, &sim);
    for i in 0..N {
        let mut spec = spec();
        spec["serviceName"] = json!(format!("svc:s{i}"));
        create::<TailscaleService>(&fake, &format!("load/s{i}"), spec);
    }
    let manager = start_manager(&fake, run_config()).await;
    for i in 0..N {
        // No host advertises these: Synced, not Ready (NotAdvertised).
        wait_reason::<TailscaleService>(
            &fake,
            &format!("load/s{i}"),
            ConditionType::Ready,
            "False",
            Some("NotAdvertised"),
        )
        .await;
    }
    assert_eq!(calls(&sim, PUT), N as u64, "one create each");
    // A first resync lets the passes the creation wave triggered (status writes) settle.
    resync::<TailscaleService>(&fake, &manager, N as u64, "warm-up").await;
    let (lists, hosts, passes) = (
        calls(&sim, LIST),
        calls(&sim, HOSTS),
        manager.metrics().reconciles("TailscaleService", "ok"),
    );
    resync::<TailscaleService>(&fake, &manager, N as u64, "r1").await;
    let passes = manager.metrics().reconciles("TailscaleService", "ok") - passes;
    let (lists, hosts) = (calls(&sim, LIST) - lists, calls(&sim, HOSTS) - hosts);
    eprintln!(
        "{N} TailscaleServices, one resync: {passes} passes, {lists} services list(s), {hosts} hosts reads, {} writes",
        calls(&sim, PUT) - N as u64
    );
    assert_eq!(
        lists, 1,
        "one services read per resync for the whole tailnet"
    );
    assert_eq!(hosts, passes, "one hosts read per service pass");
    assert_eq!(calls(&sim, PUT), N as u64, "no write in steady state");
    assert_eq!(calls(&sim, APPROVE), 0);
    stop(manager).await;
}
