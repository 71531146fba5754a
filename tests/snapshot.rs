//! The per-tailnet snapshot cache against a real `SimServer` over HTTP, counted by the sim's
//! call counter: one read per area per resync interval whatever the number of readers, single
//! flight on a cold or stale area (errors included), writes invalidating their area only, and
//! one cache per tailnet in the registry.
//!
//! Time is a `ManualClock` handed to the cache, so intervals pass without sleeping while the
//! HTTP calls run on real time. Cold-cache concurrency tests run on the default current-thread
//! runtime: `join_all` polls every accessor once before the fetch task can run, so all of them
//! provably meet the same flight.
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::join_all;
use support::client::*;
use tailnet_operator::error::Category;
use tailnet_operator::sim::{FaultRule, SimConfig, SimServer};
use tailnet_operator::snapshot::{Area, Clock, ManualClock, SnapshotRegistry, TailnetSnapshots};
use tailnet_operator::tailscale::TailscaleClient;

const INTERVAL: Duration = Duration::from_secs(300);

const DEVICES: &str = "GET /api/v2/tailnet/{tailnet}/devices";
const POLICY: &str = "GET /api/v2/tailnet/{tailnet}/acl";
const DNS: &str = "GET /api/v2/tailnet/{tailnet}/dns/configuration";
const KEYS: &str = "GET /api/v2/tailnet/{tailnet}/keys";
const SERVICES: &str = "GET /api/v2/tailnet/{tailnet}/services";
const SETTINGS: &str = "GET /api/v2/tailnet/{tailnet}/settings";
const USERS: &str = "GET /api/v2/tailnet/{tailnet}/users";

/// Sim route of each area's read, in `Area::ALL` order.
const ROUTES: [(Area, &str); 7] = [
    (Area::Devices, DEVICES),
    (Area::Policy, POLICY),
    (Area::Dns, DNS),
    (Area::Keys, KEYS),
    (Area::Services, SERVICES),
    (Area::Settings, SETTINGS),
    (Area::Users, USERS),
];

/// A cache over `server` on a manual clock; `attempts` = 1 disables the client's retries.
fn cache(server: &SimServer, clock: &ManualClock, attempts: u32) -> TailnetSnapshots {
    TailnetSnapshots::with_clock(
        client_with(server, attempts),
        INTERVAL,
        Arc::new(clock.clone()),
    )
}

fn client_with(server: &SimServer, attempts: u32) -> TailscaleClient {
    let mut config = api_key_config(server);
    config.retry = fast_retry(attempts);
    client(config)
}

/// Calls so far of each area's read route, in `Area::ALL` order.
fn reads(server: &SimServer) -> [u64; 7] {
    let calls = server.tailnet().calls();
    ROUTES.map(|(_, route)| calls.get(route))
}

/// Reads one area through the cache and returns its version (any error fails the test).
async fn read(cache: &TailnetSnapshots, area: Area) -> u64 {
    match area {
        Area::Devices => cache.devices().await.map(|s| s.version),
        Area::Policy => cache.policy().await.map(|s| s.version),
        Area::Dns => cache.dns().await.map(|s| s.version),
        Area::Keys => cache.keys().await.map(|s| s.version),
        Area::Services => cache.services().await.map(|s| s.version),
        Area::Settings => cache.settings().await.map(|s| s.version),
        Area::Users => cache.users().await.map(|s| s.version),
    }
    .unwrap_or_else(|e| panic!("reading {area}: {e}"))
}

#[tokio::test]
async fn two_hundred_concurrent_reads_of_a_cold_cache_cost_one_call() {
    let server = start_sim().await;
    let clock = ManualClock::new();
    let cache = cache(&server, &clock, 5);

    let results = join_all((0..200).map(|_| cache.devices())).await;

    assert_eq!(server.tailnet().calls().get(DEVICES), 1);
    assert_eq!(server.tailnet().calls().total(), 1);
    let first = results[0].as_ref().expect("devices");
    assert_eq!(first.data.len(), server.tailnet().device_count());
    for result in &results {
        let snapshot = result.as_ref().expect("every waiter gets the snapshot");
        assert!(Arc::ptr_eq(snapshot, first), "one shared snapshot");
    }
    let stats = cache.stats(Area::Devices);
    assert_eq!((stats.fetches, stats.joins, stats.hits), (1, 199, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_reader_tasks_on_a_threaded_runtime_cost_one_call() {
    let server = start_sim().await;
    let clock = ManualClock::new();
    let cache = cache(&server, &clock, 5);

    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.devices().await.map(|s| s.version) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().expect("devices"), 1);
    }

    assert_eq!(server.tailnet().calls().get(DEVICES), 1);
    let stats = cache.stats(Area::Devices);
    // Depending on scheduling a reader joined the flight or found its result cached.
    assert_eq!(stats.fetches, 1);
    assert_eq!(stats.joins + stats.hits, 199);
}

#[tokio::test]
async fn reads_within_the_interval_are_free_and_the_next_interval_costs_one() {
    let server = start_sim().await;
    let clock = ManualClock::new();
    let cache = cache(&server, &clock, 5);

    let first = cache.devices().await.unwrap();
    for _ in 0..20 {
        assert_eq!(cache.devices().await.unwrap().version, first.version);
    }
    clock.advance(INTERVAL - Duration::from_millis(1));
    assert_eq!(read(&cache, Area::Devices).await, first.version);
    assert_eq!(server.tailnet().calls().get(DEVICES), 1);
    assert_eq!(cache.hits(Area::Devices), 21);

    clock.advance(Duration::from_millis(1));
    let second = cache.devices().await.unwrap();
    assert_eq!(server.tailnet().calls().get(DEVICES), 2);
    assert!(second.version > first.version);
    assert_eq!(second.fetched_at, clock.now());
    assert_eq!(second.age(clock.now()), Duration::ZERO);
    assert_eq!(first.age(clock.now()), INTERVAL);
    assert_eq!(cache.fetches(Area::Devices), 2);
}

#[tokio::test]
async fn a_console_edit_is_seen_at_the_next_resync_not_before() {
    let server = start_sim().await;
    let sim = server.tailnet();
    let clock = ManualClock::new();
    let cache = cache(&server, &clock, 5);

    let before = cache.policy().await.unwrap();
    assert_eq!(
        (
            before.data.hujson.clone(),
            before.data.etag.as_str().to_owned()
        ),
        sim.policy()
    );
    let edited = format!("// Edited in the console.\n{}", before.data.hujson);
    let console_etag = sim.console_set_policy(&edited).unwrap();

    clock.advance(INTERVAL / 2);
    assert_eq!(cache.policy().await.unwrap().data.etag, before.data.etag);
    clock.advance(INTERVAL / 2);
    let after = cache.policy().await.unwrap();
    assert_eq!(after.data.etag.as_str(), console_etag);
    assert_eq!(after.data.hujson, edited, "raw HuJSON, comments included");
    assert_eq!(sim.calls().get(POLICY), 2);
}

#[tokio::test]
async fn a_policy_write_invalidates_the_policy_while_devices_stay_cached() {
    let server = start_sim().await;
    let sim = server.tailnet();
    let clock = ManualClock::new();
    let cache = cache(&server, &clock, 5);
    let devices = cache.devices().await.unwrap();
    let policy = cache.policy().await.unwrap();

    let ours = format!("// Written by the operator.\n{}", policy.data.hujson);
    let written = cache
        .client()
        .set_policy(&ours, Some(&policy.data.etag))
        .await
        .expect("write with If-Match");
    cache.record_write(Area::Policy);

    let reread = cache.policy().await.unwrap();
    assert_eq!(reread.data.etag, written.etag);
    assert_eq!(reread.data.hujson, ours);
    assert!(reread.version > policy.version);
    assert_eq!(cache.devices().await.unwrap().version, devices.version);
    assert_eq!(sim.calls().get(POLICY), 2);
    assert_eq!(sim.calls().get(DEVICES), 1);
    assert_eq!(cache.stats(Area::Policy).invalidations, 1);
    assert_eq!(cache.stats(Area::Devices).invalidations, 0);
}

#[tokio::test]
async fn a_failed_fetch_reaches_every_waiter_and_is_not_cached() {
    let server = start_sim().await;
    let sim = server.tailnet();
    sim.set_fault(FaultRule::route(DEVICES).server_error(503).times(1));
    let clock = ManualClock::new();
    let cache = cache(&server, &clock, 1);

    let results = join_all((0..50).map(|_| cache.devices())).await;

    assert_eq!(sim.calls().get(DEVICES), 1, "one flight, one failed call");
    for result in &results {
        let error = result.as_ref().expect_err("every waiter sees the failure");
        assert_eq!(error.status, Some(503));
        assert_eq!(error.category, Category::Transient);
        assert_eq!(error.endpoint, Area::Devices.endpoint());
    }
    // Same instant, no clock movement: the error was not cached, so this retries at once.
    let snapshot = cache.devices().await.expect("the next access succeeds");
    assert_eq!(sim.calls().get(DEVICES), 2);
    assert_eq!(snapshot.version, 2, "the failed fetch used version 1");
    let stats = cache.stats(Area::Devices);
    assert_eq!((stats.fetches, stats.errors, stats.joins), (2, 1, 49));
    assert_eq!(stats.cached_version, Some(2));
}

#[tokio::test]
async fn a_failure_keeps_the_previous_snapshot_out_of_service_until_a_fetch_succeeds() {
    let server = start_sim().await;
    let sim = server.tailnet();
    let clock = ManualClock::new();
    let cache = cache(&server, &clock, 1);
    let first = cache.dns().await.unwrap();

    clock.advance(INTERVAL);
    sim.set_fault(FaultRule::route(DNS).server_error(503).times(1));
    assert!(
        cache.dns().await.is_err(),
        "stale data is not served on error"
    );
    assert_eq!(cache.stats(Area::Dns).cached_version, Some(first.version));
    let again = cache.dns().await.expect("retried");
    assert!(again.version > first.version);
    assert_eq!(sim.calls().get(DNS), 3);
}

#[tokio::test]
async fn every_area_is_read_once_and_invalidated_alone() {
    let server = start_sim().await;
    let clock = ManualClock::new();
    let cache = cache(&server, &clock, 5);

    for _ in 0..3 {
        for area in Area::ALL {
            assert_eq!(read(&cache, area).await, 1);
        }
    }
    assert_eq!(reads(&server), [1; 7]);
    assert_eq!(server.tailnet().calls().total(), 7);

    cache.invalidate(Area::Dns);
    for area in Area::ALL {
        read(&cache, area).await;
    }
    assert_eq!(reads(&server), [1, 1, 2, 1, 1, 1, 1]);

    cache.invalidate_all();
    for area in Area::ALL {
        read(&cache, area).await;
    }
    assert_eq!(reads(&server), [2, 2, 3, 2, 2, 2, 2]);
}

#[tokio::test]
async fn snapshots_carry_the_tailnet_state() {
    let server = start_sim().await;
    let sim = server.tailnet();
    let clock = ManualClock::new();
    let cache = cache(&server, &clock, 5);

    let devices = cache.devices().await.unwrap();
    assert_eq!(devices.data.len(), sim.device_count());
    // fields=all: routes come with the list.
    assert!(devices.data.iter().any(|d| d.advertised_routes.is_some()));
    let dns = cache.dns().await.unwrap();
    assert_eq!(
        dns.data.preferences.magic_dns,
        sim.dns().preferences.magic_dns
    );
    assert!(!cache.users().await.unwrap().data.is_empty());
    assert!(!cache.keys().await.unwrap().data.is_empty());
    assert_eq!(cache.tailnet(), "-");
    assert_eq!(cache.resync_interval(), INTERVAL);
}

#[tokio::test]
async fn fifty_resources_in_steady_state_cost_three_reads_per_interval() {
    let server = start_sim().await;
    let sim = server.tailnet();
    let clock = ManualClock::new();
    let registry = SnapshotRegistry::with_clock(Arc::new(clock.clone()));
    let client = client_with(&server, 5);

    // Each "reconcile" looks its tailnet up in the registry and reads three areas.
    let reconcile = |registry: SnapshotRegistry| {
        let client = client.clone();
        async move {
            let cache = registry.get_or_insert("prod", || (client, INTERVAL));
            let (devices, policy, dns) = tokio::join!(cache.devices(), cache.policy(), cache.dns());
            (
                devices.unwrap().version,
                policy.unwrap().version,
                dns.unwrap().version,
            )
        }
    };
    for tick in 1..=3u64 {
        let seen = join_all((0..50).map(|_| reconcile(registry.clone()))).await;
        assert!(seen.iter().all(|versions| *versions == (tick, tick, tick)));
        assert_eq!(sim.calls().total(), 3 * tick, "after resync {tick}");
        clock.advance(INTERVAL);
    }

    let calls = sim.calls();
    assert_eq!(
        (calls.get(DEVICES), calls.get(POLICY), calls.get(DNS)),
        (3, 3, 3)
    );
    assert_eq!(calls.total(), 9, "nothing else was called");
    let cache = registry.get("prod").unwrap();
    for area in [Area::Devices, Area::Policy, Area::Dns] {
        let stats = cache.stats(area);
        assert_eq!(stats.fetches, 3);
        assert_eq!(stats.hits + stats.joins, 3 * 50 - 3);
    }
}

#[tokio::test]
async fn the_registry_shares_a_cache_per_tailnet_and_separates_tailnets() {
    let prod = start_sim().await;
    let lab = start_sim_with(SimConfig {
        devices: 5,
        seed: 2,
        ..SimConfig::default()
    })
    .await;
    let clock = ManualClock::new();
    let registry = SnapshotRegistry::with_clock(Arc::new(clock.clone()));

    let a = registry.get_or_insert("prod", || (client_with(&prod, 5), INTERVAL));
    let called = AtomicBool::new(false);
    let a_again = registry.get_or_insert("prod", || {
        called.store(true, Ordering::SeqCst);
        (client_with(&lab, 5), INTERVAL)
    });
    assert!(
        !called.load(Ordering::SeqCst),
        "an existing cache is reused"
    );
    let b = registry.get_or_insert("lab", || (client_with(&lab, 5), INTERVAL));
    assert_eq!(registry.names(), ["lab", "prod"]);

    let from_a = a.devices().await.unwrap();
    let from_a_again = a_again.devices().await.unwrap();
    assert!(
        Arc::ptr_eq(&from_a, &from_a_again),
        "one cache for one tailnet"
    );
    let from_b = b.devices().await.unwrap();
    assert_eq!(from_a.data.len(), prod.tailnet().device_count());
    assert_eq!(from_b.data.len(), lab.tailnet().device_count());
    assert_ne!(from_a.data.len(), from_b.data.len());
    assert_eq!(prod.tailnet().calls().get(DEVICES), 1);
    assert_eq!(lab.tailnet().calls().get(DEVICES), 1);

    // Invalidating one tailnet's area leaves the other's alone.
    a.invalidate(Area::Devices);
    a_again.devices().await.unwrap();
    b.devices().await.unwrap();
    assert_eq!(prod.tailnet().calls().get(DEVICES), 2);
    assert_eq!(lab.tailnet().calls().get(DEVICES), 1);

    // Removing a tailnet forgets its cache: the next one starts cold.
    assert!(registry.remove("prod").is_some());
    assert!(registry.get("prod").is_none());
    assert_eq!(registry.len(), 1);
    let fresh = registry.get_or_insert("prod", || (client_with(&prod, 5), INTERVAL));
    fresh.devices().await.unwrap();
    assert_eq!(prod.tailnet().calls().get(DEVICES), 3);
}

#[tokio::test]
async fn insert_replaces_a_tailnets_cache_and_a_failing_make_inserts_nothing() {
    let server = start_sim().await;
    let clock = ManualClock::new();
    let registry = SnapshotRegistry::with_clock(Arc::new(clock.clone()));

    let failed: Result<_, &str> = registry.try_get_or_insert("prod", || Err("no Secret"));
    assert_eq!(failed.unwrap_err(), "no Secret");
    assert!(registry.is_empty());

    let old = registry.get_or_insert("prod", || (client_with(&server, 5), INTERVAL));
    old.policy().await.unwrap();
    let new = registry.insert("prod", client_with(&server, 5), Duration::from_secs(60));
    assert_eq!(
        registry.get("prod").unwrap().resync_interval(),
        Duration::from_secs(60)
    );
    new.policy().await.unwrap();
    assert_eq!(
        server.tailnet().calls().get(POLICY),
        2,
        "the new cache starts cold"
    );
}

#[tokio::test]
async fn a_burst_of_change_events_costs_one_read() {
    let server = start_sim().await;
    let sim = server.tailnet();
    let clock = ManualClock::new();
    let cache = cache(&server, &clock, 5);
    let before = cache.policy().await.unwrap();

    clock.advance(Duration::from_secs(1));
    let edited = format!("// Edited in the console.\n{}", before.data.hujson);
    sim.console_set_policy(&edited).unwrap();
    // Three deliveries of the same webhook event, stamped on arrival: the first one marks the
    // policy stale, the others find the refresh already due or done.
    let event = cache.now();
    assert!(cache.refresh_if_older_than(Area::Policy, event));
    assert!(!cache.refresh_if_older_than(Area::Policy, event));
    let after = cache.policy().await.unwrap();
    assert!(!cache.refresh_if_older_than(Area::Policy, event));
    assert_eq!(cache.policy().await.unwrap().version, after.version);

    assert_eq!(after.data.hujson, edited);
    assert_eq!(sim.calls().get(POLICY), 2);
    // An area never read has nothing to refresh: its first access fetches anyway.
    assert!(!cache.refresh_if_older_than(Area::Devices, event));
    assert_eq!(cache.stats(Area::Devices).invalidations, 0);
}
