//! The demo seed: realistic variety, determinism, and scale.
mod support;

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use support::sim::Sim;
use tailnet_operator::sim::{SimConfig, SimTailnet};

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .filter(|s| !s.is_empty())
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

async fn devices(sim: &Sim) -> Vec<Value> {
    sim.get_json("/tailnet/-/devices?fields=all").await["devices"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn the_demo_tailnet_has_the_variety_an_audit_needs() {
    let sim = Sim::start().await;
    let devices = devices(&sim).await;
    let now = Utc::now();
    assert!(devices.len() >= 25, "{} devices", devices.len());

    let oses: HashSet<&str> = devices.iter().map(|d| d["os"].as_str().unwrap()).collect();
    for os in ["linux", "macOS", "windows", "iOS", "android"] {
        assert!(oses.contains(os), "no {os} device");
    }
    let owners: HashSet<&str> = devices
        .iter()
        .map(|d| d["user"].as_str().unwrap())
        .collect();
    assert!(owners.len() >= 5);

    let tags: HashSet<&str> = devices
        .iter()
        .filter_map(|d| d["tags"].as_array())
        .flatten()
        .map(|t| t.as_str().unwrap())
        .collect();
    for tag in [
        "tag:server",
        "tag:prod",
        "tag:ci",
        "tag:k8s-operator",
        "tag:k8s",
    ] {
        assert!(tags.contains(tag), "no {tag} device");
    }

    let count = |pred: &dyn Fn(&Value) -> bool| devices.iter().filter(|d| pred(d)).count();
    let stale = count(&|d| time(&d["lastSeen"]).is_some_and(|t| now - t > Duration::weeks(2)));
    assert!(stale >= 3, "{stale} stale devices");
    assert!(count(&|d| d["updateAvailable"] == true) >= 3);
    assert!(count(&|d| d["authorized"] == false) >= 2);
    assert!(count(&|d| d["keyExpiryDisabled"] == true) >= 3);
    let expiring = count(&|d| {
        d["keyExpiryDisabled"] == false
            && time(&d["expires"]).is_some_and(|t| t > now && t - now < Duration::days(7))
    });
    assert!(expiring >= 2, "{expiring} keys expiring within a week");
    assert!(count(&|d| d["isExternal"] == true) >= 1);
    assert!(
        count(&|d| d["created"] == "") >= 1,
        "a device with an empty timestamp"
    );
    assert!(count(&|d| d["isEphemeral"] == true) >= 1);

    // A subnet router with a route waiting for approval, and an exit node.
    let waiting = count(&|d| {
        let enabled = d["enabledRoutes"].as_array().unwrap();
        d["advertisedRoutes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| !enabled.contains(r))
    });
    assert!(waiting >= 1);
    let exit = count(&|d| {
        d["enabledRoutes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "0.0.0.0/0")
    });
    assert!(exit >= 1);
}

#[tokio::test]
async fn the_demo_tailnet_has_users_keys_dns_services_and_webhooks() {
    let sim = Sim::start().await;
    let users = sim.get_json("/tailnet/-/users?type=all").await;
    assert!(users["users"].as_array().unwrap().len() >= 6);

    let keys = sim.get_json("/tailnet/-/keys?all=true").await;
    let keys = keys["keys"].as_array().unwrap();
    let auth_keys: Vec<&Value> = keys.iter().filter(|k| k["keyType"] == "auth").collect();
    assert!(auth_keys.len() >= 3);
    let now = Utc::now();
    assert!(
        auth_keys
            .iter()
            .any(|k| time(&k["expires"]).is_some_and(|t| t - now < Duration::days(7))),
        "an auth key expiring soon"
    );

    let dns = sim.get_json("/tailnet/-/dns/configuration").await;
    assert!(!dns["nameservers"].as_array().unwrap().is_empty());
    assert!(!dns["splitDNS"].as_object().unwrap().is_empty());
    assert!(!dns["searchPaths"].as_array().unwrap().is_empty());
    assert_eq!(dns["preferences"]["magicDNS"], true);

    let services = sim.get_json("/tailnet/-/services").await;
    assert!(services["vipServices"].as_array().unwrap().len() >= 2);
    let hooks = sim.get_json("/tailnet/-/webhooks").await;
    assert!(!hooks["webhooks"].as_array().unwrap().is_empty());
}

/// The parts of a device that do not depend on the moment the tailnet was built.
fn identity(d: &Value) -> (Value, Value, Value, Value, Value) {
    (
        d["nodeId"].clone(),
        d["id"].clone(),
        d["hostname"].clone(),
        d["addresses"].clone(),
        d["nodeKey"].clone(),
    )
}

#[tokio::test]
async fn a_seed_always_builds_the_same_tailnet() {
    let config = |seed| SimConfig {
        seed,
        devices: 50,
        ..SimConfig::default()
    };
    let a = Sim::start_with(config(7)).await;
    let b = Sim::start_with(config(7)).await;
    let c = Sim::start_with(config(8)).await;
    let ids = |d: Vec<Value>| d.iter().map(identity).collect::<Vec<_>>();
    let (da, db, dc) = (
        ids(devices(&a).await),
        ids(devices(&b).await),
        ids(devices(&c).await),
    );
    assert_eq!(da, db);
    assert_ne!(da, dc);
    assert_eq!(a.api_key, b.api_key);
    assert_ne!(a.api_key, c.api_key);
    assert_eq!(a.tailnet().tailnet_id(), b.tailnet().tailnet_id());
}

#[tokio::test]
async fn ten_thousand_generated_devices_list_with_unique_ids_and_addresses() {
    let tailnet = SimTailnet::new(SimConfig {
        devices: 10_000,
        ..SimConfig::default()
    });
    assert!(tailnet.device_count() >= 10_025);
    let sim = Sim::start_with(SimConfig {
        devices: 10_000,
        ..SimConfig::default()
    })
    .await;
    let all = devices(&sim).await;
    assert_eq!(all.len(), tailnet.device_count());
    let node_ids: HashSet<&str> = all.iter().map(|d| d["nodeId"].as_str().unwrap()).collect();
    let hostnames: HashSet<&str> = all
        .iter()
        .map(|d| d["hostname"].as_str().unwrap())
        .collect();
    let v4: HashSet<&str> = all
        .iter()
        .map(|d| d["addresses"][0].as_str().unwrap())
        .collect();
    let v6: HashSet<&str> = all
        .iter()
        .map(|d| d["addresses"][1].as_str().unwrap())
        .collect();
    assert_eq!(node_ids.len(), all.len());
    assert_eq!(hostnames.len(), all.len());
    assert_eq!(v4.len(), all.len());
    assert_eq!(v6.len(), all.len());
    // Filters work at scale.
    let ci = sim
        .get_json("/tailnet/-/devices?tags=tag:ci&isEphemeral=true")
        .await;
    let ci = ci["devices"].as_array().unwrap();
    assert!(ci.len() > 100);
    assert!(ci.iter().all(|d| d["isEphemeral"] == true));
}
