//! Status, condition and wait helpers for any kind of the operator on the fake API server,
//! once, instead of a copy in each controller test: `condition::<DNSConfig>(&fake, "x", Ready)`.
#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::json;
use tailnet_operator::controller::Manager;
use tailnet_operator::resources::conditions::find;
use tailnet_operator::resources::{ConditionType, KindStatus, ManagedTailnet, TailnetScoped};
use tailnet_operator::sim::SimServer;

use super::fake_kube::{FakeKube, Gvr};

/// How long a wait may take before the test fails naming what it waited for (never a timing
/// assertion: a hang guard).
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// `name` as `(namespace, name)`: a namespaced object is named `namespace/name` in these
/// helpers, a cluster-scoped one by its name.
pub fn split(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((namespace, name)) => (Some(namespace), name),
        None => (None, name),
    }
}

/// Object `name` (`namespace/name` for a namespaced kind) of kind `K`, as the fake API server
/// has it.
pub fn object<K: TailnetScoped>(fake: &FakeKube, name: &str) -> Option<K> {
    let (namespace, name) = split(name);
    fake.get_as::<K>(namespace, name)
}

/// Condition `type_` of `name`, if it has one.
pub fn condition_of<K: TailnetScoped>(
    fake: &FakeKube,
    name: &str,
    type_: ConditionType,
) -> Option<Condition> {
    let status = object::<K>(fake, name)?.status().cloned()?;
    find(&status.common().conditions, type_).cloned()
}

/// `(status, reason, message)` of condition `type_` of `name`.
pub fn condition<K: TailnetScoped>(
    fake: &FakeKube,
    name: &str,
    type_: ConditionType,
) -> Option<(String, String, String)> {
    condition_of::<K>(fake, name, type_).map(|c| (c.status, c.reason, c.message))
}

/// Waits for condition `type_` of `name` to be `want`; returns `(reason, message)`.
pub async fn wait_condition<K: TailnetScoped>(
    fake: &FakeKube,
    name: &str,
    type_: ConditionType,
    want: &str,
) -> (String, String) {
    fake.wait_for(&format!("{name}: {type_:?}={want}"), HANG_GUARD, |f| {
        condition::<K>(f, name, type_)
            .filter(|(s, _, _)| s == want)
            .map(|(_, r, m)| (r, m))
    })
    .await
}

/// Waits for condition `type_` of `name` to be `want` with `reason` (any, when `None`);
/// returns the message.
pub async fn wait_reason<K: TailnetScoped>(
    fake: &FakeKube,
    name: &str,
    type_: ConditionType,
    want: &str,
    reason: Option<&str>,
) -> String {
    let what = format!("{name}: {type_:?}={want} {reason:?}");
    fake.wait_for(&what, HANG_GUARD, |f| {
        condition::<K>(f, name, type_)
            .filter(|(s, r, _)| s == want && reason.is_none_or(|want| want == r))
            .map(|(_, _, m)| m)
    })
    .await
}

/// Waits for `name` to be `Ready=True`.
pub async fn wait_ready<K: TailnetScoped>(fake: &FakeKube, name: &str) {
    wait_reason::<K>(fake, name, ConditionType::Ready, "True", None).await;
}

/// Sets the `tailnet.ops.dev/reconcile-at` annotation of `name` to `value`.
pub fn force_reconcile<K: TailnetScoped>(fake: &FakeKube, name: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {"tailnet.ops.dev/reconcile-at": value}}});
    let (namespace, name) = split(name);
    fake.merge_patch(&Gvr::of::<K>(), namespace, name, patch)
        .expect("annotated");
}

/// The finalizers of `name` (none when it is gone).
pub fn finalizers<K: TailnetScoped>(fake: &FakeKube, name: &str) -> Vec<String> {
    object::<K>(fake, name)
        .and_then(|o| o.meta().finalizers.clone())
        .unwrap_or_default()
}

/// Waits until `name` is gone.
pub async fn wait_gone<K: TailnetScoped>(fake: &FakeKube, name: &str) {
    fake.wait_for(&format!("{name} deleted"), HANG_GUARD, |f| {
        object::<K>(f, name).is_none().then_some(())
    })
    .await;
}

/// Status writes of kind `K` so far (server-side applies on the status subresource).
pub fn status_writes<K: TailnetScoped>(fake: &FakeKube) -> u64 {
    fake.request_count("patch", &format!("{}/status", K::plural(&())))
}

/// The drift gauge's line for `name` of kind `K` in the metrics exposition.
pub fn drift_gauge<K: TailnetScoped>(manager: &Manager, name: &str) -> Option<String> {
    let kind = format!("kind=\"{}\"", K::kind(&()));
    let name = format!("name=\"{name}\"");
    manager
        .metrics()
        .encode()
        .lines()
        .find(|l| {
            l.starts_with("tailnet_operator_resource_drifted{")
                && l.contains(&kind)
                && l.contains(&name)
        })
        .map(str::to_owned)
}

/// Calls the simulated tailnet has answered on `route` (`"METHOD /api/v2/templated/path"`).
pub fn calls(sim: &SimServer, route: &str) -> u64 {
    sim.tailnet().calls().get(route)
}

/// Stops the manager and waits for its clean shutdown.
pub async fn stop(manager: Manager) {
    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

/// Creates `name` (`namespace/name` for a namespaced kind) of kind `K` with `spec`, in the
/// test tailnet ([`super::operator::TAILNET`]).
pub fn create<K: TailnetScoped>(fake: &FakeKube, name: &str, spec: serde_json::Value) {
    let mut spec = spec;
    spec["tailnetRef"] = json!(super::operator::TAILNET);
    let (namespace, name) = split(name);
    let mut metadata = json!({"name": name});
    if let Some(namespace) = namespace {
        metadata["namespace"] = json!(namespace);
    }
    let object = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": metadata,
        "spec": spec,
    });
    fake.create(&Gvr::of::<K>(), object)
        .unwrap_or_else(|e| panic!("{} {name} created: {e:?}", K::kind(&())));
}

/// A resync of the test tailnet, as the end of the resync interval makes one: its snapshots
/// expire, every resource of kind `K` is reconciled (through the ManagedTailnet watch, by a new
/// `label` on the ManagedTailnet), and this waits for `reconciles` more successful reconciles.
pub async fn resync<K: TailnetScoped>(
    fake: &FakeKube,
    manager: &Manager,
    reconciles: u64,
    label: &str,
) {
    let kind = K::kind(&());
    let done = manager.metrics().reconciles(&kind, "ok");
    manager
        .snapshots()
        .get(super::operator::TAILNET)
        .expect("the ManagedTailnet's snapshots")
        .invalidate_all();
    let labelled = json!({"metadata": {"labels": {"resync": label}}});
    fake.merge_patch(
        &Gvr::of::<ManagedTailnet>(),
        None,
        super::operator::TAILNET,
        labelled,
    )
    .expect("labelled");
    let what = format!("{reconciles} more {kind} reconciles");
    fake.wait_for(&what, HANG_GUARD, |_| {
        (manager.metrics().reconciles(&kind, "ok") >= done + reconciles).then_some(())
    })
    .await;
}

/// Asserts that none of `secrets` (key material a test read from Secrets) appears in `logs`,
/// the events, any object of kind `K` (status included) or the metrics.
pub fn assert_no_leak<K: TailnetScoped>(
    fake: &FakeKube,
    manager: &Manager,
    logs: &str,
    secrets: &[String],
) {
    assert!(!secrets.is_empty(), "the scan needs secrets to look for");
    let kind = K::kind(&()).into_owned();
    let events = fake.list(&Gvr::new("events.k8s.io", "v1", "events"), None);
    let objects = fake.list(&Gvr::of::<K>(), None);
    let places = [
        ("logs".to_owned(), logs.to_owned()),
        ("events".to_owned(), serde_json::to_string(&events).unwrap()),
        (
            format!("{kind} objects"),
            serde_json::to_string(&objects).unwrap(),
        ),
        ("metrics".to_owned(), manager.metrics().encode()),
    ];
    for secret in secrets {
        for (place, text) in &places {
            assert!(
                !text.contains(secret.as_str()),
                "key material in the {place}"
            );
        }
    }
    assert!(logs.contains(&kind), "the logs were captured");
}
