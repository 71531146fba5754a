//! The DNSConfig controller run for real by the manager (kube `Controller`, watches, events)
//! against the in-process fake API server and a simulated tailnet over HTTP.
//!
//! Tailscale calls are counted with the sim's call counter and status writes with the fake API
//! server's request counter, so "one write", "nothing was posted" and "one read" are counted
//! facts. Timeouts only guard against hangs: assertions wait for a state, never for time.
//!
//! The sim reproduces the DNS pitfalls the planner avoids (see `tests/sim_api.rs`): a POST to
//! `/dns/configuration` that omits a boolean turns it off, and the per-part endpoints disable
//! MagicDNS when the last nameserver goes. The seeded tailnet has MagicDNS and override local
//! DNS on, two nameservers, two split-DNS domains and a search path.
mod support;

use serde_json::{Value, json};
use support::fake_kube::{FakeKube, Gvr};
use support::kinds::{
    HANG_GUARD, calls, condition, create, drift_gauge, finalizers, force_reconcile, object, resync,
    status_writes, wait_condition, wait_gone,
};
use support::operator::{TAILNET, connect_tailnet, run_config, sim, start_manager};
use tailnet_operator::controller::Manager;
use tailnet_operator::resources::conditions::find;
use tailnet_operator::resources::{ConditionType, DNSConfig, ManagedTailnet};
use tailnet_operator::sim::{DnsConfig, DnsResolver, SimServer};

const POST_DNS: &str = "POST /api/v2/tailnet/{tailnet}/dns/configuration";
const GET_DNS: &str = "GET /api/v2/tailnet/{tailnet}/dns/configuration";

fn fake() -> FakeKube {
    FakeKube::new()
        .with_status_subresource_for::<ManagedTailnet>()
        .with_status_subresource_for::<DNSConfig>()
}

async fn start(fake: &FakeKube) -> Manager {
    start_manager(fake, run_config()).await
}

/// The spec of the first tests: no global nameservers with MagicDNS on (the per-part
/// endpoints' pitfall), a new split-DNS map and search paths; `overrideLocalDNS` left out, so
/// it must stay on (the combined endpoint's pitfall).
fn main_spec() -> Value {
    json!({
        "nameservers": [],
        "magicDNS": true,
        "splitDNS": {
            "corp.example.com": [{"address": "10.10.0.53"}, {"address": "10.10.0.54", "useWithExitNode": true}],
            "db.internal": [{"address": "fd7a:115c:a1e0::53"}],
        },
        "searchPaths": ["corp.example.com", "db.internal"],
    })
}

/// Forces a reconcile of `name` and waits until one more DNSConfig reconcile has finished
/// after it re-read the DNS. Only for a quiet operator.
async fn forced_reconcile(
    fake: &FakeKube,
    sim: &SimServer,
    manager: &Manager,
    name: &str,
    value: &str,
) {
    let reads = calls(sim, GET_DNS);
    let done = manager.metrics().reconciles("DNSConfig", "ok");
    force_reconcile::<DNSConfig>(fake, name, value);
    fake.wait_for(&format!("a forced reconcile of {name}"), HANG_GUARD, |_| {
        (calls(sim, GET_DNS) > reads && manager.metrics().reconciles("DNSConfig", "ok") > done)
            .then_some(())
    })
    .await;
}

fn posts(sim: &SimServer) -> u64 {
    calls(sim, POST_DNS)
}

fn addresses(resolvers: &[DnsResolver]) -> Vec<&str> {
    resolvers.iter().map(|r| r.address.as_str()).collect()
}

/// A connected tailnet and DNSConfig `dns` with `spec`, Ready.
async fn with_dns(spec: Value) -> (FakeKube, SimServer, Manager) {
    let (fake, sim) = (fake(), sim().await);
    connect_tailnet(&fake, &sim);
    create::<DNSConfig>(&fake, "dns", spec);
    let manager = start(&fake).await;
    wait_condition::<DNSConfig>(&fake, "dns", ConditionType::Ready, "True").await;
    (fake, sim, manager)
}

#[tokio::test]
async fn a_valid_spec_converges_in_one_reconcile_with_one_write() {
    let (fake, sim, manager) = with_dns(main_spec()).await;

    // One write, and the pass that made it already reports Ready (no second pass needed).
    assert_eq!(posts(&sim), 1, "exactly one POST /dns/configuration");
    let (_, reason, message) = condition::<DNSConfig>(&fake, "dns", ConditionType::Ready).unwrap();
    assert_eq!(reason, "Reconciled");
    assert!(
        message.starts_with("the tailnet's DNS holds nameservers"),
        "{message}"
    );
    assert!(calls(&sim, GET_DNS) >= 1);

    let live = sim.tailnet().dns();
    assert!(live.nameservers.is_empty(), "{live:?}");
    assert!(
        live.preferences.magic_dns,
        "MagicDNS on with no nameservers"
    );
    assert!(
        live.preferences.override_local_dns,
        "left out of the spec: kept on, not turned off by an omitted boolean"
    );
    assert_eq!(live.search_paths, ["corp.example.com", "db.internal"]);
    let corp = &live.split_dns["corp.example.com"];
    assert_eq!(addresses(corp), ["10.10.0.53", "10.10.0.54"]);
    assert!(!corp[0].use_with_exit_node && corp[1].use_with_exit_node);
    assert_eq!(
        addresses(&live.split_dns["db.internal"]),
        ["fd7a:115c:a1e0::53"]
    );
    assert_eq!(
        live.split_dns.len(),
        2,
        "svc.cluster.local is gone: splitDNS is exact"
    );

    let status = object::<DNSConfig>(&fake, "dns").unwrap().status.unwrap();
    assert_eq!(status.magic_dns, Some(true));
    let applied = status.applied.expect("status.applied");
    assert_eq!(applied.nameservers, Some(vec![]));
    assert_eq!(applied.override_local_dns, None, "not managed");
    assert!(finalizers::<DNSConfig>(&fake, "dns").contains(&"tailnet.ops.dev/cleanup".to_owned()));
    let applied = fake
        .wait_for("the Applied event", HANG_GUARD, |f| {
            let events: Vec<_> = f
                .events_for("DNSConfig", "dns")
                .into_iter()
                .filter(|e| e.reason == "Applied")
                .collect();
            (!events.is_empty()).then_some(events)
        })
        .await;
    assert_eq!(applied.len(), 1);
    assert!(applied[0].note.contains("(Initial)"), "{applied:?}");

    // Steady state from the very next pass: forced reconciles re-read the DNS but write
    // neither DNS nor status (the pass that wrote already left the final status).
    let writes_before = status_writes::<DNSConfig>(&fake);
    for i in 0..3 {
        forced_reconcile(&fake, &sim, &manager, "dns", &format!("t{i}")).await;
    }
    assert_eq!(posts(&sim), 1, "no further write: converged in one");
    assert_eq!(
        status_writes::<DNSConfig>(&fake),
        writes_before,
        "no status write in steady state"
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_spec_managing_one_part_leaves_every_other_part_as_it_was() {
    let before = sim().await.tailnet().dns();
    let (fake, sim, manager) = with_dns(json!({"nameservers": [{"address": "8.8.8.8"}]})).await;
    assert_eq!(posts(&sim), 1);
    let live = sim.tailnet().dns();
    assert_eq!(addresses(&live.nameservers), ["8.8.8.8"]);
    assert_eq!(live.split_dns, before.split_dns);
    assert_eq!(live.search_paths, before.search_paths);
    assert_eq!(
        live.preferences, before.preferences,
        "both booleans kept on"
    );
    let _ = fake;
    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_second_dns_config_is_a_conflict_naming_the_winner_and_never_writes() {
    let (fake, sim, manager) = with_dns(main_spec()).await;
    let posts_before = posts(&sim);

    create::<DNSConfig>(
        &fake,
        "other",
        json!({"magicDNS": false, "nameservers": [{"address": "8.8.8.8"}]}),
    );
    let (reason, message) =
        wait_condition::<DNSConfig>(&fake, "other", ConditionType::Ready, "False").await;
    assert_eq!(reason, "Conflict", "{message}");
    assert!(
        message.contains("DNSConfig dns already manages"),
        "{message}"
    );
    let status = object::<DNSConfig>(&fake, "other")
        .unwrap()
        .status
        .unwrap()
        .normalized();
    assert_eq!(status.conflict.as_ref().unwrap().winner, "dns");
    assert_eq!(status.applied, None);
    let (synced, _, _) = condition::<DNSConfig>(&fake, "other", ConditionType::Synced).unwrap();
    assert_eq!(synced, "False");
    // The winner is untouched, and the loser wrote nothing.
    forced_reconcile(&fake, &sim, &manager, "other", "again").await;
    assert_eq!(posts(&sim), posts_before, "the loser never writes");
    assert!(sim.tailnet().dns().preferences.magic_dns);
    let (winner_ready, _, _) = condition::<DNSConfig>(&fake, "dns", ConditionType::Ready).unwrap();
    assert_eq!(winner_ready, "True");
    assert!(
        fake.events_for("DNSConfig", "other")
            .iter()
            .any(|e| e.type_ == "Warning" && e.reason == "Conflict")
    );

    // The winner goes (Orphan: the DNS stays); the loser takes over at once and applies.
    fake.merge_patch(
        &Gvr::of::<DNSConfig>(),
        None,
        "dns",
        json!({"spec": {"deletionPolicy": "Orphan"}}),
    )
    .unwrap();
    fake.wait_for("the finalizer of dns removed", HANG_GUARD, |f| {
        finalizers::<DNSConfig>(f, "dns").is_empty().then_some(())
    })
    .await;
    fake.delete(&Gvr::of::<DNSConfig>(), None, "dns").unwrap();
    wait_gone::<DNSConfig>(&fake, "dns").await;
    wait_condition::<DNSConfig>(&fake, "other", ConditionType::Ready, "True").await;
    assert_eq!(posts(&sim), posts_before + 1);
    let live = sim.tailnet().dns();
    assert!(!live.preferences.magic_dns);
    assert_eq!(addresses(&live.nameservers), ["8.8.8.8"]);
    let status = object::<DNSConfig>(&fake, "other")
        .unwrap()
        .status
        .unwrap()
        .normalized();
    assert_eq!(status.conflict, None);

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn deleting_a_conflict_loser_with_deletion_policy_delete_writes_nothing() {
    let (fake, sim, manager) = with_dns(main_spec()).await;
    create::<DNSConfig>(
        &fake,
        "other",
        json!({"nameservers": [{"address": "8.8.8.8"}]}),
    );
    wait_condition::<DNSConfig>(&fake, "other", ConditionType::Ready, "False").await;
    fake.wait_for("other has its finalizer", HANG_GUARD, |f| {
        (!finalizers::<DNSConfig>(f, "other").is_empty()).then_some(())
    })
    .await;
    let (posts_before, live_before) = (posts(&sim), sim.tailnet().dns());
    fake.delete(&Gvr::of::<DNSConfig>(), None, "other").unwrap();
    wait_gone::<DNSConfig>(&fake, "other").await;
    assert_eq!(posts(&sim), posts_before);
    assert_eq!(sim.tailnet().dns(), live_before);

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

/// A console edit of a managed part (a nameserver swapped) and of an unmanaged one.
fn console_edit(sim: &SimServer) -> DnsConfig {
    let mut edited = sim.tailnet().dns();
    edited.split_dns.insert(
        "corp.example.com".into(),
        vec![DnsResolver::new("192.0.2.53")],
    );
    edited.preferences.override_local_dns = false; // not managed: nobody's drift
    sim.tailnet()
        .console_set_dns(edited.clone())
        .expect("console edit");
    edited
}

#[tokio::test]
async fn drift_is_corrected_with_drift_policy_correct() {
    let (fake, sim, manager) = with_dns(main_spec()).await;
    let writes_before = status_writes::<DNSConfig>(&fake);
    let ready_since = |f: &FakeKube| {
        let status = object::<DNSConfig>(f, "dns").unwrap().status.unwrap();
        find(&status.common.conditions, ConditionType::Ready)
            .map(|c| (c.status.clone(), c.last_transition_time.clone()))
            .unwrap()
    };
    let ready_before = ready_since(&fake);
    console_edit(&sim);

    force_reconcile::<DNSConfig>(&fake, "dns", "2026-11-22T00:00:00Z");
    fake.wait_for("the split DNS restored", HANG_GUARD, |_| {
        (addresses(&sim.tailnet().dns().split_dns["corp.example.com"])
            == ["10.10.0.53", "10.10.0.54"])
        .then_some(())
    })
    .await;
    assert_eq!(posts(&sim), 2, "one correcting write");
    let live = sim.tailnet().dns();
    assert!(
        !live.preferences.override_local_dns,
        "the unmanaged edit stays"
    );
    assert!(live.preferences.magic_dns);
    let (reason, _) =
        wait_condition::<DNSConfig>(&fake, "dns", ConditionType::Drifted, "False").await;
    assert_eq!(reason, "InSync");
    // Drifted=True with the diff was written before the correction, then the corrected state.
    assert!(status_writes::<DNSConfig>(&fake) - writes_before >= 2);
    fake.wait_for("a Drifted warning naming the path", HANG_GUARD, |f| {
        f.events_for("DNSConfig", "dns")
            .iter()
            .any(|e| {
                e.type_ == "Warning"
                    && e.reason == "Drifted"
                    && e.note.contains("/splitDNS/corp.example.com")
            })
            .then_some(())
    })
    .await;
    assert!(
        drift_gauge::<DNSConfig>(&manager, "dns")
            .unwrap()
            .ends_with(" 0")
    );
    assert!(
        manager
            .metrics()
            .encode()
            .contains(r#"tailnet_operator_drift_corrections_total{kind="DNSConfig"} 1"#),
        "the correction is counted"
    );
    assert_eq!(
        ready_since(&fake),
        ready_before,
        "Ready stayed True through the correction (no flip, same transition time)"
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn drift_is_reported_with_drift_policy_report() {
    let mut spec = main_spec();
    spec["driftPolicy"] = json!("Report");
    let (fake, sim, manager) = with_dns(spec).await;
    let edited = console_edit(&sim);

    // Seen at the next resync: the shared snapshot expires and the DNSConfig reconciles.
    manager
        .snapshots()
        .get(TAILNET)
        .expect("the ManagedTailnet's snapshots")
        .invalidate_all();
    fake.merge_patch(
        &Gvr::of::<ManagedTailnet>(),
        None,
        TAILNET,
        json!({"metadata": {"labels": {"resync": "1"}}}),
    )
    .expect("labelled");
    let (reason, message) =
        wait_condition::<DNSConfig>(&fake, "dns", ConditionType::Drifted, "True").await;
    assert_eq!(reason, "Drifted", "{message}");
    let status = object::<DNSConfig>(&fake, "dns").unwrap().status.unwrap();
    let drift = status.drift.expect("status.drift");
    assert_eq!(drift.entries.len(), 2, "{drift:?}");
    assert!(
        drift.entries[0]
            .path
            .starts_with("/splitDNS/corp.example.com/"),
        "{drift:?}"
    );
    assert_eq!(posts(&sim), 1, "Report writes nothing");
    assert_eq!(sim.tailnet().dns(), edited);
    assert!(
        drift_gauge::<DNSConfig>(&manager, "dns")
            .unwrap()
            .ends_with(" 1")
    );
    assert!(
        fake.events_for("DNSConfig", "dns")
            .iter()
            .any(|e| e.type_ == "Warning" && e.reason == "Drifted")
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn deletion_policy_delete_clears_what_it_set_and_orphan_leaves_it() {
    let spec = json!({
        "nameservers": [{"address": "8.8.8.8"}],
        "splitDNS": {"db.internal": [{"address": "10.0.0.53"}]},
        "overrideLocalDNS": true,
        "magicDNS": true,
        // So the console edit below is left in place until the delete.
        "driftPolicy": "Report",
    });
    let (fake, sim, manager) = with_dns(spec.clone()).await;
    fake.wait_for("dns has its finalizer", HANG_GUARD, |f| {
        (!finalizers::<DNSConfig>(f, "dns").is_empty()).then_some(())
    })
    .await;
    // A domain added in the console afterwards is not this resource's to remove.
    let mut set = sim.tailnet().dns();
    assert!(set.split_dns.contains_key("db.internal"));
    set.split_dns
        .insert("console.example".into(), vec![DnsResolver::new("10.9.9.9")]);
    sim.tailnet().console_set_dns(set.clone()).unwrap();

    fake.delete(&Gvr::of::<DNSConfig>(), None, "dns").unwrap();
    wait_gone::<DNSConfig>(&fake, "dns").await;
    let cleared = sim.tailnet().dns();
    assert!(cleared.nameservers.is_empty(), "{cleared:?}");
    assert!(!cleared.split_dns.contains_key("db.internal"));
    assert!(
        cleared.split_dns.contains_key("console.example"),
        "domains it did not set stay"
    );
    assert_eq!(cleared.search_paths, set.search_paths, "not managed: kept");
    assert!(!cleared.preferences.override_local_dns);
    assert!(cleared.preferences.magic_dns, "MagicDNS is left on");
    assert_eq!(posts(&sim), 2, "the apply, then one clearing write");
    assert!(
        fake.events_for("DNSConfig", "dns")
            .iter()
            .any(|e| e.reason == "DnsCleared")
    );

    // Orphan: no finalizer, and deleting writes nothing.
    let mut orphan = spec;
    orphan["deletionPolicy"] = json!("Orphan");
    create::<DNSConfig>(&fake, "kept", orphan);
    wait_condition::<DNSConfig>(&fake, "kept", ConditionType::Ready, "True").await;
    assert!(finalizers::<DNSConfig>(&fake, "kept").is_empty());
    let (posts_before, live_before) = (posts(&sim), sim.tailnet().dns());
    fake.delete(&Gvr::of::<DNSConfig>(), None, "kept").unwrap();
    wait_gone::<DNSConfig>(&fake, "kept").await;
    assert_eq!(posts(&sim), posts_before);
    assert_eq!(sim.tailnet().dns(), live_before);

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_invalid_spec_is_named_and_nothing_is_posted() {
    // What the CRD's CEL rules reject, sent as if they were not installed.
    let (fake, sim) = (fake(), sim().await);
    connect_tailnet(&fake, &sim);
    create::<DNSConfig>(
        &fake,
        "dns",
        json!({"nameservers": [{"address": "dns.google"}]}),
    );
    let manager = start(&fake).await;
    let (reason, message) =
        wait_condition::<DNSConfig>(&fake, "dns", ConditionType::Ready, "False").await;
    assert_eq!(reason, "Invalid", "{message}");
    assert!(message.contains("spec.nameservers[0].address"), "{message}");
    assert_eq!(posts(&sim), 0);
    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

/// Steady state: twenty DNSConfigs of one tailnet (one winner, nineteen conflicts) cost one
/// DNS read per resync and no write, whatever their number.
#[tokio::test]
async fn twenty_dns_configs_cost_one_dns_read_per_resync() {
    let (fake, sim, manager) = with_dns(main_spec()).await;
    let others: Vec<String> = (1..20).map(|i| format!("extra-{i:02}")).collect();
    for name in &others {
        create::<DNSConfig>(&fake, name, json!({"magicDNS": false}));
    }
    fake.wait_for("19 conflicts reported", HANG_GUARD, |f| {
        others
            .iter()
            .all(|n| {
                condition::<DNSConfig>(f, n, ConditionType::Ready)
                    .is_some_and(|c| c.1 == "Conflict")
            })
            .then_some(())
    })
    .await;
    resync::<DNSConfig>(&fake, &manager, 20, "1").await;
    let posts_before = posts(&sim);
    let before = calls(&sim, GET_DNS);
    resync::<DNSConfig>(&fake, &manager, 20, "2").await;
    let reads = calls(&sim, GET_DNS) - before;
    eprintln!("20 DNSConfigs, one resync: GET /dns/configuration = {reads}");
    assert_eq!(
        reads, 1,
        "one DNS read per resync, whatever the number of DNSConfigs"
    );
    assert_eq!(posts(&sim), posts_before, "no write in steady state");

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_dns_config_waits_for_its_tailnet_and_applies_when_it_becomes_ready() {
    let (fake, sim) = (fake(), sim().await);
    create::<DNSConfig>(&fake, "dns", main_spec());
    let manager = start(&fake).await;
    let (reason, message) =
        wait_condition::<DNSConfig>(&fake, "dns", ConditionType::Ready, "False").await;
    assert_eq!(reason, "TailnetNotReady", "{message}");
    assert!(message.contains("ManagedTailnet home"), "{message}");
    assert_eq!(posts(&sim), 0);

    // The ManagedTailnet watch triggers the DNSConfig as soon as the ManagedTailnet is there.
    connect_tailnet(&fake, &sim);
    wait_condition::<DNSConfig>(&fake, "dns", ConditionType::Ready, "True").await;
    assert_eq!(posts(&sim), 1);

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_suspended_tailnet_suspends_its_dns_config_until_resumed() {
    let fake = fake();
    let sim = sim().await;
    connect_tailnet(&fake, &sim);
    fake.merge_patch(
        &Gvr::of::<ManagedTailnet>(),
        None,
        TAILNET,
        json!({"spec": {"suspend": true}}),
    )
    .expect("tailnet suspended");
    create::<DNSConfig>(&fake, "dns", main_spec());
    let manager = start(&fake).await;

    let (reason, message) =
        wait_condition::<DNSConfig>(&fake, "dns", ConditionType::Ready, "False").await;
    assert_eq!(reason, "Suspended", "{message}");
    assert!(message.contains("ManagedTailnet"), "{message}");
    assert_eq!(
        posts(&sim),
        0,
        "a suspended tailnet is observed, never written"
    );

    fake.merge_patch(
        &Gvr::of::<ManagedTailnet>(),
        None,
        TAILNET,
        json!({"spec": {"suspend": false}}),
    )
    .expect("tailnet resumed");
    wait_condition::<DNSConfig>(&fake, "dns", ConditionType::Ready, "True").await;
    assert_eq!(posts(&sim), 1, "resuming applies the spec in one write");

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}
