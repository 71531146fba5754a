//! An in-process fake Kubernetes API server for tests: a `tower::Service` that a real
//! `kube::Client` talks to, so real `Api<K>` calls, watchers, `Controller`s, the event
//! `Recorder` and kube-lease-manager run unchanged. See `README.md` beside this file for what
//! it implements and where it approximates.
//!
//! ```ignore
//! let fake = FakeKube::new().with_status_subresource_for::<Widget>();
//! let client = fake.client();                       // inside a tokio runtime
//! let widgets: Api<Widget> = Api::namespaced(client, "default");
//! fake.create(&Gvr::of::<Widget>(), json!({...}))?; // as a user with kubectl would
//! let w = fake.wait_for("Ready", Duration::from_secs(5), |f| {
//!     f.get(&Gvr::of::<Widget>(), Some("default"), "w1")
//!         .filter(|w| w.pointer("/status/conditions/0/status") == Some(&json!("True")))
//! }).await;
//! let status_writes = fake.request_count("patch", "widgets/status");
//! ```

// Shared test support is compiled into every test binary that declares `mod support;`; each
// uses only part of it.
#![allow(dead_code)]

mod fields;
mod path;
mod selector;
mod server;
mod status;
mod store;
mod watch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use status::ApiStatus;

use fields::Writer;
use store::{Deleted, Key, Ownership, Store, WriteOpts};

/// Response body type of the fake (buffered JSON or a watch stream).
pub type FakeBody = axum::body::Body;

/// Default number of changes kept for watch replay (all resources together, like etcd).
pub const DEFAULT_WATCH_LOG_CAPACITY: usize = 10_000;

/// Field manager of test-side writes made with [`FakeKube::apply`] (like `kubectl apply --server-side`).
pub const KUBECTL_APPLY: &str = "kubectl";
/// Field manager of [`FakeKube::create`].
pub const KUBECTL_CREATE: &str = "kubectl-create";
/// Field manager of [`FakeKube::set_spec`], [`FakeKube::set_status`], [`FakeKube::merge_patch`].
pub const KUBECTL_EDIT: &str = "kubectl-edit";

/// A resource: API group (`""` for core), version and plural name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gvr {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl Gvr {
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Self {
            group: group.to_string(),
            version: version.to_string(),
            resource: resource.to_string(),
        }
    }

    /// The resource of a typed kube object (`Gvr::of::<ConfigMap>()`).
    pub fn of<K: kube::Resource<DynamicType = ()>>() -> Self {
        Self::new(&K::group(&()), &K::version(&()), &K::plural(&()))
    }

    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `widgets.test.ops.dev` (or `configmaps` in the core group), as error messages name it.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// An event stored by the fake (`events.k8s.io/v1` or core `v1`), for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// `Normal` or `Warning`.
    pub type_: String,
    pub reason: String,
    /// `note` (events.k8s.io) or `message` (core).
    pub note: String,
    pub action: String,
    /// `series.count`, or the core `count`; 1 for a single occurrence.
    pub count: i64,
    pub reporting_controller: String,
    pub namespace: String,
    /// The stored event as JSON.
    pub object: Value,
}

pub(crate) struct Shared {
    store: Mutex<Store>,
    open_watches: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panicking test thread must not hide the state from the others.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The fake apiserver. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct FakeKube {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = self.shared.lock();
        f.debug_struct("FakeKube")
            .field("resource_version", &store.rv)
            .field("objects", &store.objects.len())
            .field("open_watches", &self.open_watches())
            .finish()
    }
}

impl Default for FakeKube {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeKube {
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                store: Mutex::new(Store::new(DEFAULT_WATCH_LOG_CAPACITY)),
                open_watches: AtomicUsize::new(0),
            }),
        }
    }

    /// Declares that `{group}/{resource}` has a status subresource: `/status` writes change
    /// only `.status`, main-resource writes ignore `.status`, and a create drops it. Resources
    /// not declared have no `/status` endpoint (404) and their status is an ordinary field.
    pub fn with_status_subresource(self, group: &str, resource: &str) -> Self {
        self.shared
            .lock()
            .status_subresources
            .insert((group.to_string(), resource.to_string()));
        self
    }

    /// [`Self::with_status_subresource`] for a typed resource.
    pub fn with_status_subresource_for<K: kube::Resource<DynamicType = ()>>(self) -> Self {
        let gvr = Gvr::of::<K>();
        self.with_status_subresource(&gvr.group, &gvr.resource)
    }

    /// How many changes are kept for watch replay; older resume points get 410.
    pub fn with_watch_log_capacity(self, capacity: usize) -> Self {
        self.shared.lock().log_capacity = capacity.max(1);
        self
    }

    /// A kube client served by this fake, default namespace `default`. Needs a tokio runtime.
    pub fn client(&self) -> kube::Client {
        self.client_in("default")
    }

    /// A kube client with another default namespace.
    pub fn client_in(&self, default_namespace: &str) -> kube::Client {
        kube::Client::new(self.clone(), default_namespace)
    }

    // ----- test-side reads -------------------------------------------------------------------

    /// The stored object, as JSON.
    pub fn get(&self, gvr: &Gvr, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.shared
            .lock()
            .objects
            .get(&key(gvr, namespace, name))
            .cloned()
    }

    /// The stored object, typed (its resource is taken from `K`).
    pub fn get_as<K>(&self, namespace: Option<&str>, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let value = self.get(&Gvr::of::<K>(), namespace, name)?;
        Some(serde_json::from_value(value).expect("stored object deserializes as its type"))
    }

    /// Stored objects of a resource (one namespace, or all with `None`), by namespace and name.
    pub fn list(&self, gvr: &Gvr, namespace: Option<&str>) -> Vec<Value> {
        let store = self.shared.lock();
        store
            .select(gvr, namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    // ----- test-side writes (as a user with kubectl; these make watch events) ---------------

    /// `kubectl create`: the namespace comes from the manifest's `metadata.namespace`.
    pub fn create(&self, gvr: &Gvr, manifest: Value) -> Result<Value, ApiStatus> {
        let ns = manifest_namespace(&manifest);
        let opts = test_writer(KUBECTL_CREATE, None);
        self.shared
            .lock()
            .create(gvr, ns.as_deref(), manifest, &opts)
    }

    /// `kubectl apply --server-side` (field manager `kubectl`, no force): creates or updates.
    pub fn apply(&self, gvr: &Gvr, manifest: Value) -> Result<Value, ApiStatus> {
        let ns = manifest_namespace(&manifest);
        let name = manifest
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiStatus::bad_request("the manifest has no metadata.name"))?
            .to_string();
        let opts = test_writer(KUBECTL_APPLY, None);
        self.shared
            .lock()
            .apply(&key(gvr, ns.as_deref(), &name), manifest, false, &opts)
    }

    /// `kubectl edit` of `.spec`: replaces it (generation bumps when it differs).
    pub fn set_spec(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        spec: Value,
    ) -> Result<Value, ApiStatus> {
        self.edit(gvr, namespace, name, None, move |obj| obj["spec"] = spec)
    }

    /// Replaces `.status` through the status subresource when the resource has one.
    pub fn set_status(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiStatus> {
        let sub = self
            .shared
            .lock()
            .has_status_subresource(gvr)
            .then(|| "status".to_string());
        self.edit(gvr, namespace, name, sub, move |obj| obj["status"] = status)
    }

    /// `kubectl patch --type merge` (e.g. to set an annotation).
    pub fn merge_patch(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        patch: Value,
    ) -> Result<Value, ApiStatus> {
        self.edit(gvr, namespace, name, None, move |obj| {
            json_patch::merge(obj, &patch)
        })
    }

    fn edit(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<String>,
        change: impl FnOnce(&mut Value),
    ) -> Result<Value, ApiStatus> {
        let opts = test_writer(KUBECTL_EDIT, subresource);
        self.shared.lock().update(
            &key(gvr, namespace, name),
            None,
            &opts,
            Ownership::Update,
            |old| {
                let mut new = old.clone();
                change(&mut new);
                Ok(new)
            },
        )
    }

    /// `kubectl delete --wait=false`: `Some(object)` when finalizers keep it (now with
    /// `deletionTimestamp`), `None` when it is gone.
    pub fn delete(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiStatus> {
        let mut store = self.shared.lock();
        match store.delete(&key(gvr, namespace, name), &Value::Null, false, &now())? {
            Deleted::Pending(object) => Ok(Some(object)),
            Deleted::Removed(_) => Ok(None),
        }
    }

    // ----- observation -----------------------------------------------------------------------

    /// Client requests by `"{verb} {resource}"`, verbs as in RBAC/audit (`get`, `list`,
    /// `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`); subresources as
    /// `widgets/status`. Test-side helper calls are not counted.
    pub fn request_count(&self, verb: &str, resource: &str) -> u64 {
        let label = format!("{verb} {resource}");
        self.shared
            .lock()
            .request_counts
            .get(&label)
            .copied()
            .unwrap_or(0)
    }

    /// All request counters.
    /// Refuses the next `times` requests `"<verb> <resource>"` (e.g. `"patch deployments"`)
    /// with 403, as an admission webhook or missing RBAC would.
    pub fn refuse(&self, verb_and_resource: &str, times: u32) {
        self.shared
            .lock()
            .refusals
            .insert(verb_and_resource.to_owned(), times);
    }

    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.shared.lock().request_counts.clone()
    }

    /// Every client request so far, as `"METHOD /path?query"`, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().request_log.clone()
    }

    /// Clears the request counters and log.
    pub fn reset_requests(&self) {
        let mut store = self.shared.lock();
        store.request_counts.clear();
        store.request_log.clear();
    }

    /// Watch requests served so far (including ones that ended).
    pub fn watch_count(&self) -> u64 {
        self.shared.lock().watches_started
    }

    /// Watch streams currently open.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Events (`events.k8s.io/v1` and core `v1`) about the object of `kind` named `name`, in
    /// creation order.
    pub fn events_for(&self, kind: &str, name: &str) -> Vec<RecordedEvent> {
        let store = self.shared.lock();
        let mut events: Vec<&Value> = store
            .objects
            .iter()
            .filter(|((gvr, _, _), _)| {
                gvr.resource == "events" && matches!(gvr.group.as_str(), "" | "events.k8s.io")
            })
            .map(|(_, v)| v)
            .filter(|ev| {
                let about = ev.get("regarding").or_else(|| ev.get("involvedObject"));
                about.and_then(|a| a.get("kind")) == Some(&json!(kind))
                    && about.and_then(|a| a.get("name")) == Some(&json!(name))
            })
            .collect();
        // uids are allocated in creation order and zero-padded.
        events.sort_by_key(|ev| {
            ev.pointer("/metadata/uid")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        events.into_iter().map(recorded_event).collect()
    }

    // ----- disruption ------------------------------------------------------------------------

    /// Ends every open watch stream (as an apiserver restart would); clients resume from
    /// their last resourceVersion.
    pub fn close_watches(&self) {
        self.shared.lock().close_watches();
    }

    /// Drops the whole watch history and ends every open watch: every client must resume and
    /// gets `410 Gone` (an `ERROR` watch event), so kube's watcher re-lists.
    pub fn compact_history(&self) {
        self.shared.lock().compact();
    }

    // ----- waiting ---------------------------------------------------------------------------

    /// Re-evaluates `probe` after every change in the fake (and every 20 ms, for state outside
    /// it) until it returns `Some`. `timeout` only guards against a hang: it panics, naming
    /// `what` and listing the requests made so far.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&FakeKube) -> Option<T>,
    ) -> T {
        let mut changes = self.shared.lock().notify.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if let Some(found) = probe(self) {
                return found;
            }
            if tokio::time::Instant::now() >= deadline {
                let requests = self.requests();
                let tail = &requests[requests.len().saturating_sub(30)..];
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last requests:\n  {}",
                    tail.join("\n  ")
                );
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), changes.changed()).await;
        }
    }
}

fn recorded_event(ev: &Value) -> RecordedEvent {
    let text = |ptrs: &[&str]| {
        ptrs.iter()
            .find_map(|p| ev.pointer(p).and_then(Value::as_str))
            .unwrap_or_default()
            .to_string()
    };
    let count = ["/series/count", "/count", "/deprecatedCount"]
        .iter()
        .find_map(|p| ev.pointer(p).and_then(Value::as_i64))
        .unwrap_or(1);
    RecordedEvent {
        type_: text(&["/type"]),
        reason: text(&["/reason"]),
        note: text(&["/note", "/message"]),
        action: text(&["/action"]),
        count,
        reporting_controller: text(&[
            "/reportingController",
            "/reportingComponent",
            "/source/component",
        ]),
        namespace: text(&["/metadata/namespace"]),
        object: ev.clone(),
    }
}

fn key(gvr: &Gvr, namespace: Option<&str>, name: &str) -> Key {
    (
        gvr.clone(),
        namespace.unwrap_or_default().to_string(),
        name.to_string(),
    )
}

fn manifest_namespace(manifest: &Value) -> Option<String> {
    manifest
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn test_writer(manager: &str, subresource: Option<String>) -> WriteOpts {
    WriteOpts {
        writer: Writer {
            manager: manager.to_string(),
            subresource,
            now: now(),
        },
        dry_run: false,
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
