//! The fake Kubernetes API server (`tests/support/fake_kube/`) is faithful where operators
//! depend on it, and real kube machinery (typed `Api`, watcher, `Controller`, finalizer helper,
//! event `Recorder`, kube-lease-manager) runs on it unchanged.
//!
//! Timeouts in these tests only guard against hangs; no assertion depends on wall-clock time.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::watcher;
use kube::{CustomResource, Resource, ResourceExt};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use support::fake_kube::{FakeKube, Gvr};
use tokio::sync::{mpsc, oneshot, watch as tokio_watch};

const HANG_GUARD: Duration = Duration::from_secs(10);
const FINALIZER: &str = "test.ops.dev/cleanup";
const MANAGER: &str = "widget-controller";

/// A tiny custom resource with a status subresource.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "test.ops.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    pub size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct WidgetStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

fn widgets() -> Gvr {
    Gvr::of::<Widget>()
}

fn fake() -> FakeKube {
    FakeKube::new().with_status_subresource_for::<Widget>()
}

fn widget_manifest(name: &str, size: u32, labels: Value) -> Value {
    json!({
        "apiVersion": "test.ops.dev/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"size": size},
    })
}

fn widget(name: &str, size: u32) -> Widget {
    Widget::new(name, WidgetSpec { size, color: None })
}

fn rv(value: &impl Resource) -> u64 {
    value
        .meta()
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

fn api_status(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API Status error, got {other:?}"),
    }
}

fn ready_status(generation: i64, since: Time) -> Value {
    json!({
        "apiVersion": "test.ops.dev/v1",
        "kind": "Widget",
        "status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "Reconciled", "message": "",
            "observedGeneration": generation, "lastTransitionTime": since,
        }]},
    })
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

// ----- CRUD, status, generation, conflicts ---------------------------------------------------

#[tokio::test]
async fn configmap_crud_through_the_typed_api() {
    let fake = fake();
    let cms: Api<ConfigMap> = Api::namespaced(fake.client(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("settings".into());
    cm.data = Some(BTreeMap::from([("mode".to_string(), "a".to_string())]));

    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(created.metadata.generation, Some(1));

    let again = api_status(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(again.message, "configmaps \"settings\" already exists");

    let mut fetched = cms.get("settings").await.unwrap();
    assert_eq!(fetched, created);
    fetched.data = Some(BTreeMap::from([("mode".to_string(), "b".to_string())]));
    let replaced = cms
        .replace("settings", &PostParams::default(), &fetched)
        .await
        .unwrap();
    assert!(rv(&replaced) > rv(&created));

    // `fetched` still carries the old resourceVersion: a second replace is stale.
    let stale = api_status(
        cms.replace("settings", &PostParams::default(), &fetched)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));

    let listed = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.metadata.resource_version,
        Some(fake.resource_version().to_string())
    );

    let deleted = cms
        .delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        deleted.is_right(),
        "no finalizers: deleted at once, answered with a Status"
    );
    let gone = api_status(cms.get("settings").await.unwrap_err());
    assert_eq!((gone.code, gone.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        gone.status,
        Some(kube::core::response::StatusSummary::Failure)
    );

    // ConfigMaps have no status subresource.
    let no_status = api_status(cms.get_status("settings").await.unwrap_err());
    assert_eq!(no_status.code, 404);
    assert_eq!(fake.request_count("create", "configmaps"), 2);
    assert_eq!(fake.request_count("update", "configmaps"), 2);
}

#[tokio::test]
async fn generation_follows_spec_and_status_goes_through_its_subresource() {
    let fake = fake();
    let api: Api<Widget> = Api::namespaced(fake.client(), "default");
    let mut w = widget("w1", 1);
    w.status = Some(WidgetStatus { conditions: vec![] });
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(
        created.status, None,
        "a create cannot seed status when it is a subresource"
    );

    // Spec change: generation and resourceVersion move.
    let patched = api
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(
        (patched.metadata.generation, patched.spec.size),
        (Some(2), 2)
    );
    assert!(rv(&patched) > rv(&created));

    // Status through SSA on /status: resourceVersion moves, generation does not.
    let since = now();
    let with_status = api
        .patch_status(
            "w1",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(ready_status(2, since.clone())),
        )
        .await
        .unwrap();
    assert_eq!(with_status.metadata.generation, Some(2));
    assert!(rv(&with_status) > rv(&patched));
    assert_eq!(
        with_status.status.as_ref().unwrap().conditions[0].observed_generation,
        Some(2)
    );

    // The same apply again, and the same merge patch again, are no-ops: no new resourceVersion.
    let reapplied = api
        .patch_status(
            "w1",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(ready_status(2, since)),
        )
        .await
        .unwrap();
    assert_eq!(rv(&reapplied), rv(&with_status));
    let repatched = api
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(rv(&repatched), rv(&with_status));

    // The main resource ignores status changes (a no-op here), /status ignores spec changes.
    let ignored = api
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": []}})),
        )
        .await
        .unwrap();
    assert_eq!(ignored.status, with_status.status);
    assert_eq!(rv(&ignored), rv(&with_status));
    let spec_via_status = api
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(
        (spec_via_status.spec.size, rv(&spec_via_status)),
        (2, rv(&with_status))
    );

    // JSON patch; then a replace based on an old copy is a 409 Conflict.
    let json_patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/size", "value": 3}]))
            .unwrap();
    let jp = api
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Json::<()>(json_patch),
        )
        .await
        .unwrap();
    assert_eq!((jp.spec.size, jp.metadata.generation), (3, Some(3)));
    let stale = api_status(
        api.replace("w1", &PostParams::default(), &with_status)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    // A merge patch that pins an old resourceVersion is refused the same way.
    let pinned =
        json!({"metadata": {"resourceVersion": rv(&patched).to_string()}, "spec": {"size": 4}});
    let stale = api_status(
        api.patch("w1", &PatchParams::default(), &Patch::Merge(pinned))
            .await
            .unwrap_err(),
    );
    assert_eq!(stale.code, 409);

    // The test side edits like kubectl: generation bumps only when the spec differs.
    let edited = fake
        .set_spec(&widgets(), Some("default"), "w1", json!({"size": 3}))
        .unwrap();
    assert_eq!(edited["metadata"]["generation"], json!(3));
    let edited = fake
        .set_spec(&widgets(), Some("default"), "w1", json!({"size": 5}))
        .unwrap();
    assert_eq!(edited["metadata"]["generation"], json!(4));
    let labelled = fake
        .merge_patch(
            &widgets(),
            Some("default"),
            "w1",
            json!({"metadata": {"labels": {"a": "b"}}}),
        )
        .unwrap();
    assert_eq!(
        labelled["metadata"]["generation"],
        json!(4),
        "metadata changes keep the generation"
    );
}

#[tokio::test]
async fn server_side_apply_tracks_field_owners() {
    let fake = fake();
    let api: Api<Widget> = Api::namespaced(fake.client(), "default");
    let apply = |size: u32, color: Option<&str>| {
        let mut body =
            json!({"apiVersion": "test.ops.dev/v1", "kind": "Widget", "spec": {"size": size}});
        if let Some(c) = color {
            body["spec"]["color"] = json!(c);
        }
        Patch::Apply(body)
    };

    // Apply creates; a second manager changing an owned field conflicts.
    let created = api
        .patch("w1", &PatchParams::apply("alice"), &apply(1, Some("red")))
        .await
        .unwrap();
    assert_eq!(
        (created.spec.size, created.metadata.generation),
        (1, Some(1))
    );
    let conflict = api_status(
        api.patch("w1", &PatchParams::apply("bob"), &apply(2, None))
            .await
            .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(
        conflict
            .message
            .contains("conflict with \"alice\": .spec.size"),
        "{}",
        conflict.message
    );

    // Agreeing on the value shares ownership; force takes the field over.
    let shared = api
        .patch("w1", &PatchParams::apply("bob"), &apply(1, None))
        .await
        .unwrap();
    assert_eq!(
        rv(&shared),
        rv(&created) + 1,
        "bob now co-owns .spec.size (managedFields changed)"
    );
    let forced = api
        .patch("w1", &PatchParams::apply("bob").force(), &apply(3, None))
        .await
        .unwrap();
    assert_eq!(forced.spec.size, 3);
    let owners: Vec<(String, String)> = forced
        .managed_fields()
        .iter()
        .map(|m| {
            (
                m.manager.clone().unwrap(),
                serde_json::to_string(&m.fields_v1).unwrap(),
            )
        })
        .collect();
    assert!(
        owners
            .iter()
            .any(|(m, f)| m == "bob" && f.contains("f:size")),
        "{owners:?}"
    );
    assert!(
        owners
            .iter()
            .all(|(m, f)| m != "alice" || !f.contains("f:size")),
        "{owners:?}"
    );

    // A field alice no longer applies (and nobody else owns) is removed.
    let dropped = api
        .patch("w1", &PatchParams::apply("alice").force(), &apply(3, None))
        .await
        .unwrap();
    assert_eq!(dropped.spec.color, None);

    // fieldManager is required for apply.
    let missing = api_status(
        api.patch("w1", &PatchParams::default(), &apply(3, None))
            .await
            .unwrap_err(),
    );
    assert_eq!((missing.code, missing.reason.as_str()), (422, "Invalid"));

    // An update (merge patch) takes ownership away from appliers: alice may then re-apply
    // only by force.
    api.patch(
        "w1",
        &PatchParams {
            field_manager: Some("carol".into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"spec": {"size": 7}})),
    )
    .await
    .unwrap();
    let conflict = api_status(
        api.patch("w1", &PatchParams::apply("alice"), &apply(8, None))
            .await
            .unwrap_err(),
    );
    assert!(
        conflict.message.contains("\"carol\""),
        "{}",
        conflict.message
    );
}

#[tokio::test]
async fn label_and_field_selectors_and_pagination() {
    let fake = fake();
    for (name, labels) in [
        ("a", json!({"app": "web", "tier": "front"})),
        ("b", json!({"app": "web"})),
        ("c", json!({"app": "db", "tier": "back"})),
        ("d", json!({})),
    ] {
        fake.create(&widgets(), widget_manifest(name, 1, labels))
            .unwrap();
    }
    let api: Api<Widget> = Api::namespaced(fake.client(), "default");
    let names = |lp: ListParams| {
        let api = api.clone();
        async move {
            api.list(&lp)
                .await
                .unwrap()
                .items
                .iter()
                .map(|w| w.name_any())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        names(ListParams::default().labels("app=web")).await,
        ["a", "b"]
    );
    assert_eq!(
        names(ListParams::default().labels("app==web,tier")).await,
        ["a"]
    );
    assert_eq!(
        names(ListParams::default().labels("app!=web")).await,
        ["c", "d"]
    );
    assert_eq!(
        names(ListParams::default().labels("!tier")).await,
        ["b", "d"]
    );
    assert_eq!(
        names(ListParams::default().labels("tier in (front, back)")).await,
        ["a", "c"]
    );
    assert_eq!(
        names(ListParams::default().labels("tier notin (front)")).await,
        ["b", "c", "d"]
    );
    assert_eq!(
        names(ListParams::default().fields("metadata.name=c")).await,
        ["c"]
    );
    assert_eq!(
        names(ListParams::default().fields("metadata.name!=c")).await,
        ["a", "b", "d"]
    );
    let bad = api_status(
        api.list(&ListParams::default().labels("tier in (a"))
            .await
            .unwrap_err(),
    );
    assert_eq!((bad.code, bad.reason.as_str()), (400, "BadRequest"));

    // Pages of two, chained by the continue token.
    let first = api.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().expect("more items remain");
    let second = api
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|w| w.name_any())
            .collect::<Vec<_>>(),
        ["d"]
    );
    assert_eq!(second.metadata.continue_, None);

    // Test-side helpers see the same store; all-namespace lists work.
    assert_eq!(fake.list(&widgets(), None).len(), 4);
    let all: Api<Widget> = Api::all(fake.client());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        4
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let fake = fake();
    let api: Api<Widget> = Api::namespaced(fake.client(), "default");
    let mut w = widget("w1", 1);
    w.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let created = api.create(&PostParams::default(), &w).await.unwrap();

    let pending = api.delete("w1", &DeleteParams::default()).await.unwrap();
    let marked = pending.left().expect("finalizers keep the object");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(
        marked.metadata.generation,
        Some(2),
        "marking for deletion bumps generation"
    );
    assert!(rv(&marked) > rv(&created));
    // Deleting again changes nothing.
    let again = api
        .delete("w1", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(rv(&again), rv(&marked));

    // No new finalizers once deletion started.
    let add = json!({"metadata": {"finalizers": [FINALIZER, "other/finalizer"]}});
    let refused = api_status(
        api.patch("w1", &PatchParams::default(), &Patch::Merge(add))
            .await
            .unwrap_err(),
    );
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));

    // Removing the last finalizer removes the object (DELETED, not MODIFIED).
    let mut events = api
        .watch(&WatchParams::default(), &rv(&marked).to_string())
        .await
        .unwrap()
        .boxed();
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(fake.get(&widgets(), Some("default"), "w1").is_none());
    match tokio::time::timeout(HANG_GUARD, events.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Deleted(last)) => assert!(last.metadata.deletion_timestamp.is_some()),
        other => panic!("expected DELETED, got {other:?}"),
    }

    // The test side deletes like kubectl.
    fake.create(&widgets(), widget_manifest("w2", 1, json!({})))
        .unwrap();
    assert_eq!(
        fake.delete(&widgets(), Some("default"), "w2").unwrap(),
        None
    );
}

// ----- watch -------------------------------------------------------------------------------

async fn next_event(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<Widget>>> + Unpin),
) -> WatchEvent<Widget> {
    tokio::time::timeout(HANG_GUARD, stream.next())
        .await
        .expect("hang guard")
        .expect("stream open")
        .expect("event decodes")
}

fn describe(event: &WatchEvent<Widget>) -> String {
    match event {
        WatchEvent::Added(w) => format!("ADDED {}", w.name_any()),
        WatchEvent::Modified(w) => format!("MODIFIED {}", w.name_any()),
        WatchEvent::Deleted(w) => format!("DELETED {}", w.name_any()),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(e) => format!("ERROR {}", e.code),
    }
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_then_streams_live() {
    let fake = fake().with_watch_log_capacity(4);
    let api: Api<Widget> = Api::namespaced(fake.client(), "default");
    let a = api
        .create(&PostParams::default(), &widget("a", 1))
        .await
        .unwrap();
    api.create(&PostParams::default(), &widget("b", 1))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 2}})),
    )
    .await
    .unwrap();

    // Replay of everything after `a` was created, then live changes.
    let mut stream = api
        .watch(&WatchParams::default(), &rv(&a).to_string())
        .await
        .unwrap()
        .boxed();
    assert_eq!(describe(&next_event(&mut stream).await), "ADDED b");
    assert_eq!(describe(&next_event(&mut stream).await), "MODIFIED a");
    api.delete("b", &DeleteParams::default()).await.unwrap();
    assert_eq!(describe(&next_event(&mut stream).await), "DELETED b");
    assert_eq!(fake.open_watches(), 1);
    drop(stream);
    fake.wait_for("the dropped watch to close", HANG_GUARD, |f| {
        (f.open_watches() == 0).then_some(())
    })
    .await;

    // A label-filtered watch sees objects enter (ADDED) and leave (DELETED) its selection.
    let now_rv = fake.resource_version().to_string();
    let mut selected = api
        .watch(&WatchParams::default().labels("pick"), &now_rv)
        .await
        .unwrap()
        .boxed();
    fake.merge_patch(
        &widgets(),
        Some("default"),
        "a",
        json!({"metadata": {"labels": {"pick": "yes"}}}),
    )
    .unwrap();
    assert_eq!(describe(&next_event(&mut selected).await), "ADDED a");
    fake.merge_patch(
        &widgets(),
        Some("default"),
        "a",
        json!({"metadata": {"labels": null}}),
    )
    .unwrap();
    assert_eq!(describe(&next_event(&mut selected).await), "DELETED a");

    // The log keeps 4 changes: resuming from the first version is 410 Gone, as an ERROR event.
    let mut expired = api
        .watch(&WatchParams::default(), &rv(&a).to_string())
        .await
        .unwrap()
        .boxed();
    match next_event(&mut expired).await {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected a 410 ERROR event, got {}", describe(&other)),
    }
    assert_eq!(fake.watch_count(), 3);
}

/// Drives a watcher in the background and forwards what it yields.
fn spawn_watcher(
    api: Api<Widget>,
    config: watcher::Config,
) -> mpsc::UnboundedReceiver<Result<watcher::Event<Widget>, watcher::Error>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = watcher(api, config).boxed();
        while let Some(item) = stream.next().await {
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    rx
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(HANG_GUARD, rx.recv())
        .await
        .expect("hang guard")
        .expect("watcher task alive")
}

fn event_name(event: &watcher::Event<Widget>) -> String {
    match event {
        watcher::Event::Init => "Init".into(),
        watcher::Event::InitApply(w) => format!("InitApply {}", w.name_any()),
        watcher::Event::InitDone => "InitDone".into(),
        watcher::Event::Apply(w) => format!("Apply {}", w.name_any()),
        watcher::Event::Delete(w) => format!("Delete {}", w.name_any()),
    }
}

#[tokio::test]
async fn watcher_lists_then_watches_and_relists_after_410() {
    let fake = fake();
    fake.create(&widgets(), widget_manifest("a", 1, json!({})))
        .unwrap();
    let api: Api<Widget> = Api::namespaced(fake.client(), "default");
    let mut events = spawn_watcher(api, watcher::Config::default());
    for expected in ["Init", "InitApply a", "InitDone"] {
        assert_eq!(event_name(&recv(&mut events).await.unwrap()), expected);
    }
    fake.create(&widgets(), widget_manifest("b", 1, json!({})))
        .unwrap();
    assert_eq!(event_name(&recv(&mut events).await.unwrap()), "Apply b");
    assert_eq!(fake.request_count("list", "widgets"), 1);

    // Compaction while the watch is cut: the resume gets 410, the watcher re-lists.
    fake.compact_history();
    fake.create(&widgets(), widget_manifest("c", 1, json!({})))
        .unwrap();
    match recv(&mut events).await {
        Err(watcher::Error::WatchError(status)) => assert_eq!(status.code, 410),
        other => panic!("expected the 410 watch error, got {other:?}"),
    }
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("InitDone") {
        seen.push(event_name(&recv(&mut events).await.unwrap()));
    }
    assert_eq!(
        seen,
        [
            "Init",
            "InitApply a",
            "InitApply b",
            "InitApply c",
            "InitDone"
        ]
    );
    assert_eq!(fake.request_count("list", "widgets"), 2);
}

#[tokio::test]
async fn watch_timeout_ends_with_a_bookmark_and_the_watcher_resumes_without_relisting() {
    let fake = fake();
    let api: Api<Widget> = Api::namespaced(fake.client(), "default");
    let mut events = spawn_watcher(api, watcher::Config::default().timeout(1));
    for expected in ["Init", "InitDone"] {
        assert_eq!(event_name(&recv(&mut events).await.unwrap()), expected);
    }
    fake.wait_for(
        "the watcher to reconnect after timeoutSeconds",
        HANG_GUARD,
        |f| (f.watch_count() >= 2).then_some(()),
    )
    .await;
    fake.create(&widgets(), widget_manifest("late", 1, json!({})))
        .unwrap();
    assert_eq!(event_name(&recv(&mut events).await.unwrap()), "Apply late");
    assert_eq!(
        fake.request_count("list", "widgets"),
        1,
        "a timed-out watch resumes, it does not re-list"
    );
}

#[tokio::test]
async fn streaming_list_watch_sends_initial_events_then_a_bookmark() {
    let fake = fake();
    fake.create(&widgets(), widget_manifest("a", 1, json!({})))
        .unwrap();
    let api: Api<Widget> = Api::namespaced(fake.client(), "default");
    let mut events = spawn_watcher(api, watcher::Config::default().streaming_lists());
    for expected in ["Init", "InitApply a", "InitDone"] {
        assert_eq!(event_name(&recv(&mut events).await.unwrap()), expected);
    }
    fake.create(&widgets(), widget_manifest("b", 1, json!({})))
        .unwrap();
    assert_eq!(event_name(&recv(&mut events).await.unwrap()), "Apply b");
    assert_eq!(
        fake.request_count("list", "widgets"),
        0,
        "a streaming list is a single watch"
    );
}

// ----- odds and ends -----------------------------------------------------------------------

/// A cluster-scoped custom resource.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(group = "test.ops.dev", version = "v1", kind = "Gadget")]
pub struct GadgetSpec {
    pub mode: String,
}

#[tokio::test]
async fn dry_run_generate_name_cluster_scope_yaml_apply_and_delete_collection() {
    let fake = fake();
    let client = fake.client();
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");

    let dry = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &widget("dry", 1),
        )
        .await
        .unwrap();
    assert_eq!(dry.name_any(), "dry");
    assert!(
        fake.get(&widgets(), Some("default"), "dry").is_none(),
        "dry run stores nothing"
    );

    let mut generated = widget("", 1);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let generated = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9);

    // Cluster-scoped objects live under no namespace.
    let gadgets: Api<Gadget> = Api::all(client.clone());
    gadgets
        .create(
            &PostParams::default(),
            &Gadget::new("g1", GadgetSpec { mode: "a".into() }),
        )
        .await
        .unwrap();
    let g1 = fake.get_as::<Gadget>(None, "g1").unwrap();
    assert_eq!(
        (g1.metadata.namespace, g1.spec.mode),
        (None, "a".to_string())
    );

    // Apply bodies may be YAML (kube sends JSON, kubectl YAML).
    let yaml = "apiVersion: test.ops.dev/v1\nkind: Gadget\nspec:\n  mode: b\n";
    let request =
        http::Request::patch("/apis/test.ops.dev/v1/gadgets/g1?fieldManager=kubectl&force=true")
            .header(http::header::CONTENT_TYPE, "application/apply-patch+yaml")
            .body(yaml.as_bytes().to_vec())
            .unwrap();
    let applied: Gadget = client.request(request).await.unwrap();
    assert_eq!(applied.spec.mode, "b");

    // /status of a missing object, and of a resource without one, is 404.
    let missing = api_status(
        api.patch_status(
            "nope",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(ready_status(1, now())),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(missing.code, 404);
    let no_status = api_status(gadgets.get_status("g1").await.unwrap_err());
    assert_eq!(no_status.code, 404);

    // Delete a labelled collection.
    fake.create(&widgets(), widget_manifest("x", 1, json!({"batch": "1"})))
        .unwrap();
    fake.create(&widgets(), widget_manifest("y", 1, json!({"batch": "1"})))
        .unwrap();
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("batch=1"),
    )
    .await
    .unwrap();
    let left: Vec<String> = fake
        .list(&widgets(), Some("default"))
        .iter()
        .map(|w| w["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, [generated.name_any()]);
}

// ----- a real Controller -------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: kube::Client,
    reconciles: Mutex<BTreeMap<String, usize>>,
    cleanups: mpsc::UnboundedSender<String>,
}

impl Ctx {
    fn reconciles_of(&self, name: &str) -> usize {
        self.reconciles
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

async fn reconcile(
    w: Arc<Widget>,
    ctx: Arc<Ctx>,
) -> Result<Action, finalizer::Error<ReconcileError>> {
    *ctx.reconciles
        .lock()
        .unwrap()
        .entry(w.name_any())
        .or_default() += 1;
    let api: Api<Widget> = Api::namespaced(ctx.client.clone(), &w.namespace().unwrap());
    finalizer(&api, FINALIZER, w, |event| async {
        match event {
            finalizer::Event::Apply(w) => publish_ready(&api, &w).await,
            finalizer::Event::Cleanup(w) => {
                ctx.cleanups.send(w.name_any()).unwrap();
                Ok(Action::await_change())
            }
        }
    })
    .await
}

/// Always applies the status (idempotently): with a faithful apiserver an unchanged status is
/// a no-op, so this cannot loop.
async fn publish_ready(api: &Api<Widget>, w: &Widget) -> Result<Action, ReconcileError> {
    let generation = w.metadata.generation.unwrap();
    let previous = w.status.as_ref().and_then(|s| s.conditions.first());
    // lastTransitionTime changes only when the condition's status does.
    let since = previous
        .filter(|c| c.status == "True")
        .map_or_else(now, |c| c.last_transition_time.clone());
    api.patch_status(
        &w.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(ready_status(generation, since)),
    )
    .await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Widget>, _: &finalizer::Error<ReconcileError>, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(50))
}

fn ready_generation(fake: &FakeKube, name: &str) -> Option<(i64, Value)> {
    let w = fake.get(&widgets(), Some("default"), name)?;
    let condition = w.pointer("/status/conditions/0")?;
    let has_finalizer = w.pointer("/metadata/finalizers/0") == Some(&json!(FINALIZER));
    (has_finalizer && condition["status"] == "True")
        .then(|| (condition["observedGeneration"].as_i64().unwrap(), w.clone()))
}

#[tokio::test]
async fn a_real_controller_adds_a_finalizer_reports_status_and_cleans_up() {
    let fake = fake();
    let client = fake.client();
    let (cleanup_tx, mut cleanups) = mpsc::unbounded_channel();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        reconciles: Mutex::default(),
        cleanups: cleanup_tx,
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let controller = tokio::spawn(
        Controller::new(Api::<Widget>::all(client), watcher::Config::default())
            .graceful_shutdown_on(async move {
                let _ = stopped.await;
            })
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|_| async {}),
    );

    fake.create(&widgets(), widget_manifest("w1", 1, json!({})))
        .unwrap();
    let (observed, w1) = fake
        .wait_for("w1 Ready with the finalizer", HANG_GUARD, |f| {
            ready_generation(f, "w1")
        })
        .await;
    assert_eq!(observed, 1);
    assert_eq!(
        w1["metadata"]["generation"],
        json!(1),
        "status writes leave generation alone"
    );

    // Steady state: while w2 goes from created to Ready, w1 costs no write (its resourceVersion
    // holds) and at most the one reconcile its own last status change triggered.
    let (w1_rv, w1_reconciles) = (
        w1["metadata"]["resourceVersion"].clone(),
        ctx.reconciles_of("w1"),
    );
    fake.create(&widgets(), widget_manifest("w2", 1, json!({})))
        .unwrap();
    fake.wait_for("w2 Ready", HANG_GUARD, |f| ready_generation(f, "w2"))
        .await;
    let w1_now = fake.get(&widgets(), Some("default"), "w1").unwrap();
    assert_eq!(w1_now["metadata"]["resourceVersion"], w1_rv);
    assert!(
        ctx.reconciles_of("w1") <= w1_reconciles + 1,
        "w1 reconciled {} times",
        ctx.reconciles_of("w1")
    );

    // A spec change bumps generation; the controller reports it; the transition time holds.
    fake.set_spec(&widgets(), Some("default"), "w1", json!({"size": 2}))
        .unwrap();
    let (observed, w1) = fake
        .wait_for("w1 to observe generation 2", HANG_GUARD, |f| {
            ready_generation(f, "w1").filter(|(g, _)| *g == 2)
        })
        .await;
    assert_eq!(observed, 2);
    assert_eq!(
        w1.pointer("/status/conditions/0/lastTransitionTime"),
        w1_now.pointer("/status/conditions/0/lastTransitionTime")
    );

    // Delete: cleanup runs, the finalizer comes off, the object disappears.
    assert!(
        fake.delete(&widgets(), Some("default"), "w1")
            .unwrap()
            .is_some()
    );
    assert_eq!(recv(&mut cleanups).await, "w1");
    fake.wait_for("w1 to be gone", HANG_GUARD, |f| {
        f.get(&widgets(), Some("default"), "w1")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(fake.get(&widgets(), Some("default"), "w2").is_some());

    stop.send(()).unwrap();
    tokio::time::timeout(HANG_GUARD, controller)
        .await
        .expect("graceful shutdown")
        .unwrap();
}

// ----- events ------------------------------------------------------------------------------

#[tokio::test]
async fn recorder_events_and_core_events_are_stored() {
    let fake = fake();
    let client = fake.client();
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let w = api
        .create(&PostParams::default(), &widget("w1", 1))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: None,
        },
    );
    let reconciled = Event {
        type_: EventType::Normal,
        reason: "Reconciled".into(),
        note: Some("size 1".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder
        .publish(&reconciled, &w.object_ref(&()))
        .await
        .unwrap();
    recorder
        .publish(&reconciled, &w.object_ref(&()))
        .await
        .unwrap();
    let warning = Event {
        type_: EventType::Warning,
        reason: "Invalid".into(),
        note: Some("size too small".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder
        .publish(&warning, &w.object_ref(&()))
        .await
        .unwrap();

    let events = fake.events_for("Widget", "w1");
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.type_.as_str(),
                e.reason.as_str(),
                e.note.as_str(),
                e.count,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("Normal", "Reconciled", "size 1", 2),
            ("Warning", "Invalid", "size too small", 1)
        ]
    );
    assert_eq!(events[0].reporting_controller, MANAGER);
    assert_eq!(fake.request_count("create", "events"), 2);
    assert_eq!(
        fake.request_count("patch", "events"),
        1,
        "a repeat is a series update"
    );

    let core: Api<CoreEvent> = Api::namespaced(client, "default");
    let event: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "cm1.1"},
        "involvedObject": {"kind": "ConfigMap", "name": "cm1", "namespace": "default"},
        "reason": "Synced", "message": "ok", "type": "Normal", "count": 3,
    }))
    .unwrap();
    core.create(&PostParams::default(), &event).await.unwrap();
    let events = fake.events_for("ConfigMap", "cm1");
    assert_eq!(
        (events.len(), events[0].note.as_str(), events[0].count),
        (1, "ok", 3)
    );
}

// ----- leases ------------------------------------------------------------------------------

const LEASE: &str = "operator-leader";

async fn start_manager(
    fake: &FakeKube,
    identity: &str,
) -> (
    tokio_watch::Receiver<bool>,
    tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
) {
    LeaseManagerBuilder::new(fake.client(), LEASE)
        .with_namespace("default")
        // Short terms keep the hand-over tests quick; the field manager is `kube-lease-manager-{identity}`.
        .with_parameters(LeaseParams::new(identity, 2, 1))
        .build()
        .await
        .unwrap()
        .watch()
        .await
}

fn holder(fake: &FakeKube) -> Option<String> {
    fake.get_as::<Lease>(Some("default"), LEASE)?
        .spec?
        .holder_identity
}

/// Waits until `pick` chooses one of the receivers, checking at every change that they never
/// both claim the lease.
async fn until_leader(rxs: &mut [(&str, &mut tokio_watch::Receiver<bool>)]) -> String {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        let claims: Vec<&str> = rxs
            .iter()
            .filter(|(_, rx)| *rx.borrow())
            .map(|(id, _)| *id)
            .collect();
        assert!(claims.len() <= 1, "two leaders at once: {claims:?}");
        if let [leader] = claims.as_slice() {
            return leader.to_string();
        }
        let changes = rxs.iter_mut().map(|(_, rx)| Box::pin(rx.changed()));
        tokio::time::timeout_at(deadline, futures::future::select_all(changes))
            .await
            .expect("hang guard: no leader elected")
            .0
            .expect("lease manager task alive");
    }
}

#[tokio::test]
async fn two_lease_managers_elect_one_leader_and_hand_over_on_release() {
    let fake = FakeKube::new();
    let (mut a, a_task) = start_manager(&fake, "a").await;
    let (mut b, b_task) = start_manager(&fake, "b").await;
    let first = until_leader(&mut [("a", &mut a), ("b", &mut b)]).await;
    assert_eq!(holder(&fake).as_deref(), Some(first.as_str()));

    // The leader steps down (dropping its receiver releases the lease); the other takes over.
    let (leader, leader_task, mut follower, follower_task, follower_id) = if first == "a" {
        (a, a_task, b, b_task, "b")
    } else {
        (b, b_task, a, a_task, "a")
    };
    drop(leader);
    tokio::time::timeout(HANG_GUARD, leader_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        until_leader(&mut [(follower_id, &mut follower)]).await,
        follower_id
    );
    assert_eq!(holder(&fake).as_deref(), Some(follower_id));
    let lease = fake.get_as::<Lease>(Some("default"), LEASE).unwrap();
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(2));
    follower_task.abort();
}

#[tokio::test]
async fn a_lease_whose_holder_stops_renewing_is_taken_over_after_it_expires() {
    let fake = FakeKube::new();
    let (mut a, a_task) = start_manager(&fake, "a").await;
    assert_eq!(until_leader(&mut [("a", &mut a)]).await, "a");
    let (mut b, b_task) = start_manager(&fake, "b").await;
    // a crashes (no release); b takes over once a's lease expires.
    a_task.abort();
    assert_eq!(until_leader(&mut [("b", &mut b)]).await, "b");
    assert_eq!(holder(&fake).as_deref(), Some("b"));
    // Takeover went through an SSA lock: b's field manager owns the holder now.
    let lease = fake
        .get(&Gvr::of::<Lease>(), Some("default"), LEASE)
        .unwrap();
    let managers: Vec<&str> = lease["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["fieldsV1"].to_string().contains("f:holderIdentity"))
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["kube-lease-manager-b"]);
    b_task.abort();
}
