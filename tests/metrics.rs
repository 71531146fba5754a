//! `/metrics` of a real manager run (fake Kubernetes API + simulated tailnet), scraped over
//! HTTP as Prometheus would:
//! - a console edit with `driftPolicy: Report` turns the drift gauge to 1 (and counts a drift
//!   event); switching to `Correct` corrects it and the gauge goes back to 0 (and counts a
//!   correction);
//! - every metric the chart's alert rules name is exposed, so no alert watches a metric that
//!   does not exist;
//! - the API, device and key metrics carry bounded labels only.
//!
//! Timeouts only guard against hangs: assertions wait for a state, never for time to pass.
mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret as KubeSecret, Service};
use serde_json::json;
use support::fake_kube::{FakeKube, Gvr};
use support::kinds::HANG_GUARD;
use support::operator::{TAILNET, connect_tailnet, run_config, sim, start_manager};
use tailnet_operator::controller::Manager;
use tailnet_operator::resources::conditions::find;
use tailnet_operator::resources::{
    ConditionType, FunnelExposure, KeyRotationPolicy, ManagedTailnet, TailnetPolicy,
};
use tailnet_operator::sim::SimServer;

const BASE: &str = r#"// Base policy (metrics test).
{
  "groups": {"group:sre": ["bob@example.com"]},
  "tagOwners": {"tag:server": ["group:sre"]},
  "grants": [{"src": ["group:sre"], "dst": ["tag:server"], "ip": ["*"]}],
}
"#;

const CONSOLE_EDIT: &str = r#"{
  "grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}],
}"#;

/// The chart's alert rules (also rendered for promtool by scripts/test).
fn rules_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("charts/tailnet-operator/files/prometheus-rules.yaml")
}

async fn start() -> (FakeKube, SimServer, Manager) {
    let fake = FakeKube::new()
        .with_status_subresource_for::<ManagedTailnet>()
        .with_status_subresource_for::<TailnetPolicy>()
        .with_status_subresource_for::<KeyRotationPolicy>()
        .with_status_subresource_for::<FunnelExposure>();
    let sim = sim().await;
    connect_tailnet(&fake, &sim);
    fake.create(
        &Gvr::of::<TailnetPolicy>(),
        json!({
            "apiVersion": "tailnet.ops.dev/v1alpha1",
            "kind": "TailnetPolicy",
            "metadata": {"name": "base"},
            "spec": {"tailnetRef": TAILNET, "role": "Base", "policy": BASE, "driftPolicy": "Report"},
        }),
    )
    .expect("policy created");
    let manager = start_manager(&fake, run_config()).await;
    (fake, sim, manager)
}

/// Waits until the Base is applied (revision 1, Ready): the gauge is also 0 before that, while
/// the policy waits for its ManagedTailnet.
async fn wait_applied(fake: &FakeKube) {
    fake.wait_for("the Base applied as revision 1", HANG_GUARD, |f| {
        let status = f.get_as::<TailnetPolicy>(None, "base")?.status?;
        let ready = find(&status.common.conditions, ConditionType::Ready)?;
        (status.applied_revision == Some(1) && ready.status == "True").then_some(())
    })
    .await;
}

/// GET /metrics over HTTP.
async fn scrape(manager: &Manager) -> String {
    let url = format!("http://{}/metrics", manager.local_addr());
    let response = reqwest::get(&url).await.expect("scrape");
    assert_eq!(response.status(), 200);
    response.text().await.expect("metrics text")
}

/// The value of the one sample whose line starts with `name{` and contains every label pair.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Scrapes until `want` holds for the scraped text (the hang guard only stops a hang).
async fn scrape_until(manager: &Manager, what: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        let text = scrape(manager).await;
        if want(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "hang guard: never saw {what} on /metrics:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn drift(text: &str) -> Option<f64> {
    sample(
        text,
        "tailnet_operator_resource_drifted",
        &[("kind", "TailnetPolicy"), ("name", "base")],
    )
}

fn policy_counter(text: &str, name: &str) -> f64 {
    sample(text, name, &[("kind", "TailnetPolicy")]).unwrap_or(-1.0)
}

fn patch_policy(fake: &FakeKube, patch: serde_json::Value) {
    fake.merge_patch(&Gvr::of::<TailnetPolicy>(), None, "base", patch)
        .expect("policy patched");
}

#[tokio::test]
async fn the_drift_gauge_goes_to_1_on_a_console_edit_and_back_to_0_after_correction() {
    let (fake, sim, manager) = start().await;
    // The gauge is 0 before the first apply too: wait for the apply itself, or the console
    // edit below could land before it and simply be overwritten.
    wait_applied(&fake).await;
    scrape_until(&manager, "the Base applied, not drifted", |t| {
        drift(t) == Some(0.0)
    })
    .await;
    let before = scrape(&manager).await;
    assert_eq!(
        policy_counter(&before, "tailnet_operator_drift_events_total"),
        0.0
    );

    // Someone edits the policy in the admin console; driftPolicy: Report only reports it.
    sim.tailnet()
        .console_set_policy(CONSOLE_EDIT)
        .expect("console edit");
    patch_policy(
        &fake,
        json!({"metadata": {"annotations": {"tailnet.ops.dev/reconcile-at": "t1"}}}),
    );
    let drifted = scrape_until(&manager, "drift gauge 1", |t| drift(t) == Some(1.0)).await;
    assert_eq!(
        policy_counter(&drifted, "tailnet_operator_drift_events_total"),
        1.0
    );
    assert_eq!(
        policy_counter(&drifted, "tailnet_operator_drift_corrections_total"),
        0.0
    );
    assert_eq!(
        sim.tailnet().policy().0,
        CONSOLE_EDIT,
        "Report changes nothing"
    );

    // Switching to Correct re-applies the desired policy: the gauge returns to 0.
    patch_policy(&fake, json!({"spec": {"driftPolicy": "Correct"}}));
    let corrected = scrape_until(&manager, "drift gauge back to 0", |t| {
        drift(t) == Some(0.0)
            && policy_counter(t, "tailnet_operator_drift_corrections_total") == 1.0
    })
    .await;
    assert_eq!(sim.tailnet().policy().0, BASE, "the Base is restored");
    assert_eq!(
        policy_counter(&corrected, "tailnet_operator_drift_events_total"),
        1.0,
        "one drift, one event"
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

/// The chart's Grafana dashboard.
fn dashboard() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("charts/tailnet-operator/files/grafana-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard file"))
        .expect("the dashboard is JSON")
}

#[test]
fn every_dashboard_panel_queries_prometheus_through_the_datasource_variable() {
    let dashboard = dashboard();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{}", panels.len());
    for panel in panels {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{panel}");
        for target in targets {
            assert!(
                target["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{panel}"
            );
        }
    }
}

/// Metric names (ours: `tailnet_operator_*`, `tailscale_api_*`) used in the alert rules and
/// the Grafana dashboard's queries.
fn metrics_named_in_rules() -> BTreeSet<String> {
    let rules = std::fs::read_to_string(rules_file()).expect("rules file");
    let queries: Vec<String> = dashboard()["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    let text = format!("{rules}\n{}", queries.join("\n"));
    let mut names = BTreeSet::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("tailnet_operator_") || word.starts_with("tailscale_api_") {
            names.insert(word.to_owned());
        }
    }
    names
}

/// The sum of the `tailnet_operator_devices` series.
fn device_total(text: &str) -> usize {
    let total: f64 = text
        .lines()
        .filter(|l| l.starts_with("tailnet_operator_devices{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    total as usize
}

/// A FunnelExposure of `apps/web`, its proxy "started" (joined with the key from its Secret)
/// once the Deployment appears, for the active-exposure series.
async fn expose_a_service(fake: &FakeKube, sim: &SimServer) {
    fake.create(
        &Gvr::of::<Service>(),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "apps"},
               "spec": {"ports": [{"port": 8080}]}}),
    )
    .unwrap();
    let ends = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    support::kinds::create::<FunnelExposure>(
        fake,
        "apps/demo",
        json!({"service": {"name": "web", "port": 8080}, "hostname": "demo",
               "tags": ["tag:server"], "expiresAt": ends}),
    );
    let secret = fake
        .wait_for("the proxy's key Secret and Deployment", HANG_GUARD, |f| {
            f.get_as::<Deployment>(Some("apps"), "demo-funnel")?;
            f.get_as::<KubeSecret>(Some("apps"), "demo-funnel-authkey")
        })
        .await;
    let key = String::from_utf8(secret.data.unwrap()["authkey"].0.clone()).unwrap();
    sim.tailnet()
        .node_join(&key, "demo")
        .expect("the proxy joins");
}

#[tokio::test]
async fn every_metric_an_alert_names_is_exposed_with_bounded_labels() {
    let names = metrics_named_in_rules();
    assert!(names.len() >= 5, "the rules name our metrics: {names:?}");
    let (fake, sim, manager) = start().await;
    // A KeyRotationPolicy, for the rotation schedule and failure series.
    support::kinds::create::<KeyRotationPolicy>(
        &fake,
        "ci/runners",
        json!({"reusable": true, "tags": ["tag:ci"], "expiry": "720h"}),
    );
    wait_applied(&fake).await;
    // The devices are counted below against the sim's: the FunnelExposure's proxy joins first,
    // and the ManagedTailnet observes the devices after it.
    expose_a_service(&fake, &sim).await;
    manager.snapshots().get(TAILNET).unwrap().invalidate_all();
    fake.merge_patch(
        &Gvr::of::<ManagedTailnet>(),
        None,
        TAILNET,
        json!({"metadata": {"annotations": {"tailnet.ops.dev/reconcile-at": "after-join"}}}),
    )
    .unwrap();
    let devices = sim.tailnet().device_count();
    // Ready, the policy applied, the ManagedTailnet's devices and keys observed, the
    // KeyRotationPolicy's credential minted and the FunnelExposure active.
    let text = scrape_until(&manager, "the policy applied and keys observed", |t| {
        drift(t) == Some(0.0)
            && t.contains("tailnet_operator_auth_key_expiry_timestamp_seconds{")
            && t.contains("tailnet_operator_devices{")
            && t.contains("tailnet_operator_key_rotation_next_timestamp_seconds{")
            && t.contains("tailnet_operator_funnel_exposure_expiry_timestamp_seconds{")
            && device_total(t) == devices
    })
    .await;
    assert!(
        text.contains(
            r#"tailnet_operator_key_rotation_failures_total{name="runners",namespace="ci"} 0"#
        ),
        "{text}"
    );
    let exposed: BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !exposed.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "alerts or dashboard panels name metrics not on /metrics: {missing:?}\n{text}"
    );

    // The API metrics use the templated endpoint and the tailnet's resource name.
    assert!(
        sample(
            &text,
            "tailscale_api_requests_total",
            &[
                ("tailnet", TAILNET),
                ("method", "POST"),
                ("endpoint", "/tailnet/{tailnet}/acl"),
                ("code", "200"),
            ],
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // Devices are counted, never labelled by id or host name.
    assert_eq!(device_total(&text), sim.tailnet().device_count());
    for line in text
        .lines()
        .filter(|l| l.starts_with("tailnet_operator_devices{"))
    {
        assert!(
            !line.contains("hostname") && !line.contains("id="),
            "device series must not name devices: {line}"
        );
    }
    assert!(!text.contains("tskey-"), "no secret on /metrics");

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}
