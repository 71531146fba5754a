//! The DeviceTagSet controller run for real by the manager (kube `Controller`, watches,
//! events) against the in-process fake API server and a simulated tailnet over HTTP.
//!
//! Writes to the tailnet are counted with the sim's call counter, so "nothing was written" is a
//! counted fact. Timeouts only guard against hangs: assertions wait for a state, never for time
//! to pass.
mod support;

use serde_json::{Value, json};
use support::fake_kube::{FakeKube, Gvr};
use support::kinds::{
    HANG_GUARD, calls, condition, create, finalizers, object, resync, stop, wait_gone, wait_ready,
    wait_reason,
};
use support::operator::{connect_tailnet, run_config, start_manager};
use tailnet_operator::controller::Manager;
use tailnet_operator::resources::{ConditionType, DeviceTagSet, ManagedTailnet};
use tailnet_operator::sim::{SimConfig, SimServer};
use tailnet_operator::tailscale::{ClientConfig, Credentials, DeviceListOptions, TailscaleClient};

const POST_TAGS: &str = "POST /api/v2/device/{deviceId}/tags";
const POST_AUTHORIZED: &str = "POST /api/v2/device/{deviceId}/authorized";
const POST_KEY: &str = "POST /api/v2/device/{deviceId}/key";
const POST_ROUTES: &str = "POST /api/v2/device/{deviceId}/routes";
const GET_DEVICES: &str = "GET /api/v2/tailnet/{tailnet}/devices";

fn fake() -> FakeKube {
    FakeKube::new()
        .with_status_subresource_for::<ManagedTailnet>()
        .with_status_subresource_for::<DeviceTagSet>()
}

async fn sim_with(devices: usize) -> SimServer {
    let config = SimConfig {
        devices,
        ..SimConfig::default()
    };
    SimServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sim starts")
}

async fn start(fake: &FakeKube) -> Manager {
    start_manager(fake, run_config()).await
}

fn device(sim: &SimServer, hostname: &str) -> Value {
    let id = sim.tailnet().device_id(hostname).expect("device exists");
    sim.tailnet().device(&id).expect("device readable")
}

fn strings(value: &Value) -> Vec<String> {
    let mut items: Vec<String> = value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    items.sort();
    items
}

fn tags(sim: &SimServer, hostname: &str) -> Vec<String> {
    strings(&device(sim, hostname)["tags"])
}

fn writes(sim: &SimServer) -> u64 {
    sim.tailnet().calls().total_for_method("POST")
}

#[tokio::test]
async fn add_keeps_other_tags_exact_replaces_them_and_a_steady_state_writes_nothing() {
    let (fake, sim) = (fake(), sim_with(0).await);
    connect_tailnet(&fake, &sim);
    create::<DeviceTagSet>(
        &fake,
        "web-monitoring",
        json!({"selector": {"hostnames": ["prod-web-*"]}, "tags": ["tag:monitoring"]}),
    );
    create::<DeviceTagSet>(
        &fake,
        "staging-exact",
        json!({"selector": {"hostnames": ["staging-*"]}, "tags": ["tag:ci"], "mode": "Exact"}),
    );
    let manager = start(&fake).await;
    wait_ready::<DeviceTagSet>(&fake, "web-monitoring").await;
    wait_ready::<DeviceTagSet>(&fake, "staging-exact").await;

    for host in ["prod-web-1", "prod-web-2"] {
        assert_eq!(
            tags(&sim, host),
            ["tag:monitoring", "tag:prod", "tag:server"]
        );
    }
    assert_eq!(tags(&sim, "staging-web-1"), ["tag:ci"]);
    assert_eq!(tags(&sim, "prod-db-1"), ["tag:prod", "tag:server"]);
    assert_eq!(
        calls(&sim, POST_TAGS),
        3,
        "one write per device that differed"
    );
    let status = object::<DeviceTagSet>(&fake, "web-monitoring")
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.matched_count, 2);
    assert_eq!(status.devices.len(), 2);
    assert!(status.devices.iter().all(|d| d.in_sync));
    assert!(
        fake.events_for("DeviceTagSet", "web-monitoring")
            .iter()
            .any(|e| e.reason == "Applied" && e.note.contains("wrote 2 devices"))
    );

    // Steady state: a resync reads the devices once and writes nothing, status included.
    resync::<DeviceTagSet>(&fake, &manager, 2, "1").await;
    let (reads, posts) = (calls(&sim, GET_DEVICES), writes(&sim));
    let status_writes = fake.request_count("patch", "devicetagsets/status");
    resync::<DeviceTagSet>(&fake, &manager, 2, "2").await;
    assert_eq!(calls(&sim, GET_DEVICES), reads + 1);
    assert_eq!(writes(&sim), posts);
    assert_eq!(
        fake.request_count("patch", "devicetagsets/status"),
        status_writes
    );
    stop(manager).await;
}

#[tokio::test]
async fn authorization_and_key_expiry_are_set_only_where_they_differ() {
    let (fake, sim) = (fake(), sim_with(0).await);
    connect_tailnet(&fake, &sim);
    assert_eq!(device(&sim, "frank-surface")["authorized"], json!(false));
    assert_eq!(device(&sim, "old-nas")["keyExpiryDisabled"], json!(false));
    create::<DeviceTagSet>(
        &fake,
        "approved-windows",
        json!({"selector": {"os": ["windows"], "user": "frank@example.com"}, "authorized": true}),
    );
    create::<DeviceTagSet>(
        &fake,
        "nas",
        json!({"selector": {"hostnames": ["old-nas"]}, "keyExpiryDisabled": true}),
    );
    let manager = start(&fake).await;
    wait_ready::<DeviceTagSet>(&fake, "approved-windows").await;
    wait_ready::<DeviceTagSet>(&fake, "nas").await;
    assert_eq!(device(&sim, "frank-surface")["authorized"], json!(true));
    assert_eq!(device(&sim, "old-nas")["keyExpiryDisabled"], json!(true));
    assert_eq!(calls(&sim, POST_AUTHORIZED), 1);
    assert_eq!(calls(&sim, POST_KEY), 1);
    assert_eq!(calls(&sim, POST_TAGS), 0, "no tags asked for, none written");
    stop(manager).await;
}

#[tokio::test]
async fn routes_are_enabled_once_advertised_and_auto_approved_ones_are_kept() {
    let (fake, sim) = (fake(), sim_with(0).await);
    connect_tailnet(&fake, &sim);
    // subnet-router-1 advertises 10.10/16, 10.20/16 and 192.168.50/24; the first two are
    // enabled (the demo policy's autoApprovers approve them for tag:subnet-router).
    create::<DeviceTagSet>(
        &fake,
        "router",
        json!({"selector": {"hostnames": ["subnet-router-1"]},
               "routes": ["10.10.0.0/16", "192.168.50.0/24", "172.16.0.0/24"]}),
    );
    let manager = start(&fake).await;
    wait_ready::<DeviceTagSet>(&fake, "router").await;
    let enabled = strings(&device(&sim, "subnet-router-1")["enabledRoutes"]);
    assert_eq!(
        enabled,
        ["10.10.0.0/16", "10.20.0.0/16", "192.168.50.0/24"],
        "wanted ∩ advertised, and the auto-approved 10.20/16 kept"
    );
    let status = object::<DeviceTagSet>(&fake, "router")
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.waiting_for_routes.len(), 1);
    assert_eq!(status.waiting_for_routes[0].name, "subnet-router-1");
    assert_eq!(status.waiting_for_routes[0].routes, ["172.16.0.0/24"]);
    let (_, _, message) = condition::<DeviceTagSet>(&fake, "router", ConditionType::Ready).unwrap();
    assert!(message.contains("wait to advertise"), "{message}");
    assert_eq!(calls(&sim, POST_ROUTES), 1);

    // The device starts advertising the waiting route: the next resync enables it.
    let id = sim.tailnet().device_id("subnet-router-1").unwrap();
    sim.tailnet()
        .console_advertise_routes(
            &id,
            [
                "10.10.0.0/16",
                "10.20.0.0/16",
                "192.168.50.0/24",
                "172.16.0.0/24",
            ],
        )
        .unwrap();
    resync::<DeviceTagSet>(&fake, &manager, 1, "1").await;
    fake.wait_for("172.16.0.0/24 enabled", HANG_GUARD, |_| {
        strings(&device(&sim, "subnet-router-1")["enabledRoutes"])
            .contains(&"172.16.0.0/24".to_owned())
            .then_some(())
    })
    .await;
    fake.wait_for("nothing waits any more", HANG_GUARD, |f| {
        object::<DeviceTagSet>(f, "router")?
            .status?
            .waiting_for_routes
            .is_empty()
            .then_some(())
    })
    .await;
    stop(manager).await;
}

#[tokio::test]
async fn two_sets_that_disagree_both_report_a_conflict_and_neither_writes() {
    let (fake, sim) = (fake(), sim_with(0).await);
    connect_tailnet(&fake, &sim);
    let before = tags(&sim, "prod-web-1");
    create::<DeviceTagSet>(
        &fake,
        "team-a",
        json!({"selector": {"hostnames": ["prod-web-1"]}, "tags": ["tag:server"], "mode": "Exact"}),
    );
    create::<DeviceTagSet>(
        &fake,
        "team-b",
        json!({"selector": {"hostnames": ["prod-web-1"]}, "tags": ["tag:prod"], "mode": "Exact"}),
    );
    let manager = start(&fake).await;
    let a = wait_reason::<DeviceTagSet>(
        &fake,
        "team-a",
        ConditionType::Ready,
        "False",
        Some("Conflict"),
    )
    .await;
    let b = wait_reason::<DeviceTagSet>(
        &fake,
        "team-b",
        ConditionType::Ready,
        "False",
        Some("Conflict"),
    )
    .await;
    assert!(
        a.contains("DeviceTagSet/team-b") && a.contains("prod-web-1"),
        "{a}"
    );
    assert!(b.contains("DeviceTagSet/team-a"), "{b}");
    let status = object::<DeviceTagSet>(&fake, "team-a")
        .unwrap()
        .status
        .unwrap();
    assert_eq!(status.conflicts[0].with, "DeviceTagSet/team-b");
    assert_eq!(status.conflicts[0].fields, ["tags"]);
    assert!(!status.devices[0].in_sync);
    assert!(
        fake.events_for("DeviceTagSet", "team-a")
            .iter()
            .any(|e| e.reason == "Conflict")
    );

    // Several resyncs later: still not a single write to the device (no flip-flop).
    for label in ["1", "2", "3"] {
        resync::<DeviceTagSet>(&fake, &manager, 2, label).await;
    }
    assert_eq!(calls(&sim, POST_TAGS), 0);
    assert_eq!(tags(&sim, "prod-web-1"), before);
    stop(manager).await;
}

#[tokio::test]
async fn a_tag_missing_from_tag_owners_is_named_with_the_fix() {
    let (fake, sim) = (fake(), sim_with(0).await);
    connect_tailnet(&fake, &sim);
    create::<DeviceTagSet>(
        &fake,
        "unowned",
        json!({"selector": {"hostnames": ["prod-db-1"]}, "tags": ["tag:nobody-owns-this"]}),
    );
    let manager = start(&fake).await;
    let message = wait_reason::<DeviceTagSet>(
        &fake,
        "unowned",
        ConditionType::Ready,
        "False",
        Some("Invalid"),
    )
    .await;
    assert!(message.contains("tag:nobody-owns-this"), "{message}");
    assert!(message.contains("tagOwners"), "{message}");
    assert!(message.contains("Base TailnetPolicy"), "{message}");
    assert_eq!(tags(&sim, "prod-db-1"), ["tag:prod", "tag:server"]);
    stop(manager).await;
}

#[tokio::test]
async fn a_console_edit_is_corrected_with_drift_policy_correct() {
    let (fake, sim) = (fake(), sim_with(0).await);
    connect_tailnet(&fake, &sim);
    create::<DeviceTagSet>(
        &fake,
        "web",
        json!({"selector": {"hostnames": ["prod-web-*"]}, "tags": ["tag:monitoring"]}),
    );
    let manager = start(&fake).await;
    wait_ready::<DeviceTagSet>(&fake, "web").await;
    assert!(
        object::<DeviceTagSet>(&fake, "web")
            .unwrap()
            .status
            .unwrap()
            .applied_generation
            .is_some()
    );
    let posts = calls(&sim, POST_TAGS);

    let id = sim.tailnet().device_id("prod-web-1").unwrap();
    sim.tailnet()
        .console_set_device_tags(&id, ["tag:server", "tag:prod"])
        .unwrap();
    resync::<DeviceTagSet>(&fake, &manager, 1, "1").await;
    fake.wait_for("prod-web-1 corrected", HANG_GUARD, |_| {
        tags(&sim, "prod-web-1")
            .contains(&"tag:monitoring".to_owned())
            .then_some(())
    })
    .await;
    assert_eq!(calls(&sim, POST_TAGS), posts + 1, "only the drifted device");
    let events = fake.events_for("DeviceTagSet", "web");
    let drift = events
        .iter()
        .find(|e| e.reason == "Drifted")
        .expect("a drift event");
    assert!(drift.note.contains("/prod-web-1/tags"), "{}", drift.note);
    wait_reason::<DeviceTagSet>(&fake, "web", ConditionType::Drifted, "False", None).await;
    wait_ready::<DeviceTagSet>(&fake, "web").await;
    stop(manager).await;
}

#[tokio::test]
async fn a_console_edit_is_reported_with_drift_policy_report() {
    let (fake, sim) = (fake(), sim_with(0).await);
    connect_tailnet(&fake, &sim);
    create::<DeviceTagSet>(
        &fake,
        "web",
        json!({"selector": {"hostnames": ["prod-web-*"]}, "tags": ["tag:monitoring"],
               "authorized": true, "driftPolicy": "Report"}),
    );
    let manager = start(&fake).await;
    wait_ready::<DeviceTagSet>(&fake, "web").await;
    let posts = writes(&sim);

    let id = sim.tailnet().device_id("prod-web-2").unwrap();
    sim.tailnet().console_set_authorized(&id, false).unwrap();
    resync::<DeviceTagSet>(&fake, &manager, 1, "1").await;
    let message =
        wait_reason::<DeviceTagSet>(&fake, "web", ConditionType::Drifted, "True", None).await;
    assert!(message.contains("/prod-web-2/authorized"), "{message}");
    let status = object::<DeviceTagSet>(&fake, "web")
        .unwrap()
        .status
        .unwrap();
    let diff = status.drift.expect("the diff in status");
    assert_eq!(diff.entries[0].path, "/prod-web-2/authorized");
    assert_eq!(diff.entries[0].desired, Some(json!(true)));
    assert_eq!(diff.entries[0].live, Some(json!(false)));
    let (ready, reason, _) = condition::<DeviceTagSet>(&fake, "web", ConditionType::Ready).unwrap();
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "Drifted"));
    assert_eq!(writes(&sim), posts, "Report changes nothing");
    assert_eq!(device(&sim, "prod-web-2")["authorized"], json!(false));
    let gauge = manager
        .metrics()
        .encode()
        .lines()
        .find(|l| {
            l.starts_with("tailnet_operator_resource_drifted{")
                && l.contains("kind=\"DeviceTagSet\"")
                && l.contains("name=\"web\"")
        })
        .map(str::to_owned);
    assert!(gauge.is_some_and(|l| l.ends_with(" 1")));
    assert!(
        fake.events_for("DeviceTagSet", "web")
            .iter()
            .any(|e| e.reason == "Drifted" && e.type_ == "Warning")
    );
    // Still reported, still not written, at the next resync.
    resync::<DeviceTagSet>(&fake, &manager, 1, "2").await;
    assert_eq!(writes(&sim), posts);
    stop(manager).await;
}

#[tokio::test]
async fn deletion_policy_delete_removes_only_the_added_tags_and_orphan_leaves_them() {
    let (fake, sim) = (fake(), sim_with(0).await);
    connect_tailnet(&fake, &sim);
    create::<DeviceTagSet>(
        &fake,
        "monitoring",
        json!({"selector": {"hostnames": ["prod-web-*"]}, "tags": ["tag:monitoring"]}),
    );
    // Another set wants tag:monitoring on prod-web-1 too: it stays there.
    create::<DeviceTagSet>(
        &fake,
        "also-web-1",
        json!({"selector": {"hostnames": ["prod-web-1"]}, "tags": ["tag:monitoring"],
               "deletionPolicy": "Orphan"}),
    );
    create::<DeviceTagSet>(
        &fake,
        "db-ci",
        json!({"selector": {"hostnames": ["prod-db-1"]}, "tags": ["tag:ci"],
               "deletionPolicy": "Orphan"}),
    );
    let manager = start(&fake).await;
    for name in ["monitoring", "also-web-1", "db-ci"] {
        wait_ready::<DeviceTagSet>(&fake, name).await;
    }
    assert_eq!(
        finalizers::<DeviceTagSet>(&fake, "monitoring"),
        ["tailnet.ops.dev/cleanup"]
    );
    assert!(
        finalizers::<DeviceTagSet>(&fake, "db-ci").is_empty(),
        "Orphan: no finalizer"
    );
    assert_eq!(
        tags(&sim, "prod-web-2"),
        ["tag:monitoring", "tag:prod", "tag:server"]
    );

    fake.delete(&Gvr::of::<DeviceTagSet>(), None, "monitoring")
        .expect("delete accepted");
    wait_gone::<DeviceTagSet>(&fake, "monitoring").await;
    assert_eq!(tags(&sim, "prod-web-2"), ["tag:prod", "tag:server"]);
    assert_eq!(
        tags(&sim, "prod-web-1"),
        ["tag:monitoring", "tag:prod", "tag:server"],
        "another set still wants it"
    );

    // Orphan: the tags stay and nothing is written.
    let posts = writes(&sim);
    fake.delete(&Gvr::of::<DeviceTagSet>(), None, "db-ci")
        .expect("delete accepted");
    wait_gone::<DeviceTagSet>(&fake, "db-ci").await;
    resync::<DeviceTagSet>(&fake, &manager, 1, "1").await;
    assert_eq!(
        tags(&sim, "prod-db-1"),
        ["tag:ci", "tag:prod", "tag:server"]
    );
    assert_eq!(writes(&sim), posts);
    stop(manager).await;
}

/// Issue 4: 200 sets over 10,000 devices. The first reconcile writes exactly the devices that
/// differ; a steady-state resync reads the device list once and writes nothing.
#[tokio::test]
async fn two_hundred_sets_over_ten_thousand_devices_write_only_differences() {
    let (fake, sim) = (fake(), sim_with(10_000).await);
    connect_tailnet(&fake, &sim);
    // Set k covers the generated devices numbered k*50 .. k*50+49 that already carry
    // tag:server; each keeps tag:server and wants them authorized (about 3% are not).
    for k in 0..200 {
        let globs: Vec<String> = (k * 5..k * 5 + 5).map(|p| format!("*-{p:04}?")).collect();
        create::<DeviceTagSet>(
            &fake,
            &format!("servers-{k:03}"),
            json!({"selector": {"hostnames": globs, "tags": ["tag:server"]},
                   "tags": ["tag:server"], "authorized": true, "deletionPolicy": "Orphan"}),
        );
    }
    let expected = expected_authorizations(&sim).await;
    assert!(
        expected > 0,
        "the generated tailnet has unauthorized servers"
    );
    let manager = start(&fake).await;
    fake.wait_for("all 200 sets Ready", HANG_GUARD * 4, |f| {
        (0..200)
            .all(|k| {
                condition::<DeviceTagSet>(f, &format!("servers-{k:03}"), ConditionType::Ready)
                    .is_some_and(|(s, _, _)| s == "True")
            })
            .then_some(())
    })
    .await;
    assert_eq!(
        calls(&sim, POST_AUTHORIZED),
        expected,
        "exactly the devices that differed"
    );
    assert_eq!(
        calls(&sim, POST_TAGS),
        0,
        "every matched device had its tag already"
    );
    eprintln!("200 sets / 10,000 devices: {expected} devices written on the first reconcile");

    // Steady state: one device-list read for all 200 sets, no writes.
    resync::<DeviceTagSet>(&fake, &manager, 200, "1").await;
    let (reads, posts) = (calls(&sim, GET_DEVICES), writes(&sim));
    resync::<DeviceTagSet>(&fake, &manager, 200, "2").await;
    assert_eq!(calls(&sim, GET_DEVICES) - reads, 1, "one read per resync");
    assert_eq!(writes(&sim), posts, "no write in steady state");
    stop(manager).await;
}

/// Counted from the sim's device list (read with the typed client), independently of the
/// planner: generated servers (hostname `role-NNNNN`, tagged tag:server, not tag:k8s*) that
/// are not authorized.
async fn expected_authorizations(sim: &SimServer) -> u64 {
    let key = sim.tailnet().credentials().api_key;
    let client = TailscaleClient::new(ClientConfig::new(sim.base_url(), Credentials::ApiKey(key)))
        .expect("client");
    let devices = client
        .list_devices(&DeviceListOptions::default())
        .await
        .expect("devices listed");
    let generated = |h: &str| {
        h.rsplit_once('-')
            .is_some_and(|(_, n)| n.len() == 5 && n.chars().all(|c| c.is_ascii_digit()))
    };
    let count = devices
        .iter()
        .filter(|d| generated(&d.hostname))
        .filter(|d| d.tags.iter().any(|t| t == "tag:server"))
        .filter(|d| !d.tags.iter().any(|t| t.starts_with("tag:k8s")))
        .filter(|d| !d.authorized)
        .count();
    u64::try_from(count).unwrap()
}
