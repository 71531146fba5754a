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
//! assert_eq!(fake.request_count("patch", "widgets/status"), 1);
//! ```

// Shared test support is compiled into every test binary that declares `mod support;`; each
// uses only part of it.
#![allow(dead_code)]

mod fields;
mod path;
mod selector;
mod status;
mod store;
mod watch;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use status::ApiStatus;

use fields::Writer;
use path::{Query, Target, parse_path};
use selector::{FieldSelector, LabelSelector, Selectors};
use store::{Deleted, Key, Ownership, Store, WriteOpts};
use watch::WatchSpec;

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

impl Default for FakeKube {
    fn default() -> Self {
        Self::new()
    }
}

enum Reply {
    Json(StatusCode, Value),
    Stream(Pin<Box<dyn futures::Stream<Item = Bytes> + Send>>),
}

type Handled = Result<Reply, ApiStatus>;

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

    // ----- HTTP ------------------------------------------------------------------------------

    async fn handle(self, req: Request<kube::client::Body>) -> Response<FakeBody> {
        let (parts, body) = req.into_parts();
        let body = match body.collect_bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                return status_response(&ApiStatus::bad_request(format!(
                    "unreadable request body: {e}"
                )));
            }
        };
        self.shared
            .lock()
            .request_log
            .push(format!("{} {}", parts.method, parts.uri));
        if parts.uri.path() == "/version" {
            return json_response(StatusCode::OK, &version_info());
        }
        let query = Query::parse(parts.uri.query());
        let target = match parse_path(parts.uri.path()) {
            Ok(target) => target,
            Err(status) => return status_response(&status),
        };
        let verb = verb_of(&parts.method, &target, &query);
        *self
            .shared
            .lock()
            .request_counts
            .entry(format!("{verb} {}", target.resource_label()))
            .or_default() += 1;
        let request = Incoming {
            target,
            query,
            headers: parts.headers,
            body,
        };
        let reply = match verb {
            "get" => self.get_one(&request),
            "list" => self.list_objects(&request),
            "watch" => self.watch(&request),
            "create" => self.create_object(&request),
            "update" => self.replace(&request),
            "patch" => self.patch(&request),
            "delete" => self.delete_object(&request),
            "deletecollection" => self.delete_collection(&request),
            _ => Err(ApiStatus::method_not_allowed(
                parts.method.as_str(),
                parts.uri.path(),
            )),
        };
        match reply {
            Ok(Reply::Json(code, value)) => json_response(code, &value),
            Ok(Reply::Stream(stream)) => stream_response(stream),
            Err(status) => status_response(&status),
        }
    }

    fn get_one(&self, req: &Incoming) -> Handled {
        let key = req.key()?;
        if let Some(sub) = req.target.subresource.as_deref().filter(|s| *s != "status") {
            return Err(ApiStatus::not_found(
                &req.target.gvr,
                &format!("{}/{sub}", key.2),
            ));
        }
        let store = self.shared.lock();
        if req.target.subresource.is_some() && !store.has_status_subresource(&key.0) {
            return Err(ApiStatus::not_found(&key.0, &format!("{}/status", key.2)));
        }
        Ok(Reply::Json(StatusCode::OK, store.get(&key)?))
    }

    fn list_objects(&self, req: &Incoming) -> Handled {
        let selectors = req.selectors()?;
        let store = self.shared.lock();
        if req.query.get("resourceVersionMatch") == Some("Exact") {
            let wanted = req.resource_version()?.unwrap_or(0);
            if wanted != store.rv {
                // Only the latest state is kept; older snapshots are compacted away.
                return Err(ApiStatus::expired(wanted, store.rv));
            }
        }
        let continue_from = req.query.get("continue").map(parse_continue).transpose()?;
        let gvr = &req.target.gvr;
        let matching: Vec<(&Key, &Value)> = store
            .select(gvr, req.target.namespace.as_deref())
            .filter(|(k, _)| {
                continue_from
                    .as_ref()
                    .is_none_or(|(_, ns, name)| (&k.1, &k.2) > (ns, name))
            })
            .filter(|(_, v)| selectors.matches(v))
            .collect();
        let limit = req
            .query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let page_len = limit.unwrap_or(matching.len()).min(matching.len());
        let list_rv = continue_from.as_ref().map_or(store.rv, |(rv, _, _)| *rv);
        let mut metadata = json!({"resourceVersion": list_rv.to_string()});
        if page_len < matching.len() {
            let (last, _) = matching[page_len - 1];
            metadata["continue"] = json!(format!("{list_rv}|{}|{}", last.1, last.2));
            metadata["remainingItemCount"] = json!(matching.len() - page_len);
        }
        let kind = store
            .kind_of(gvr)
            .map_or_else(|| "List".to_string(), |k| format!("{k}List"));
        let items: Vec<Value> = matching[..page_len]
            .iter()
            .map(|(_, v)| (*v).clone())
            .collect();
        Ok(Reply::Json(
            StatusCode::OK,
            json!({"apiVersion": gvr.api_version(), "kind": kind, "metadata": metadata, "items": items}),
        ))
    }

    fn watch(&self, req: &Incoming) -> Handled {
        let spec = WatchSpec {
            gvr: req.target.gvr.clone(),
            namespace: req.target.namespace.clone(),
            selectors: req.selectors()?,
            resource_version: req.resource_version()?.filter(|rv| *rv != 0),
            send_initial_events: req.query.flag("sendInitialEvents"),
            bookmarks: req.query.flag("allowWatchBookmarks"),
            timeout: Duration::from_secs(
                req.query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(1800),
            ),
        };
        Ok(Reply::Stream(Box::pin(watch::open(
            self.shared.clone(),
            spec,
        ))))
    }

    fn create_object(&self, req: &Incoming) -> Handled {
        if req.target.name.is_some() {
            return Err(ApiStatus::method_not_allowed(
                "POST",
                &req.target.resource_label(),
            ));
        }
        let body = req.json_body()?;
        let created = self.shared.lock().create(
            &req.target.gvr,
            req.target.namespace.as_deref(),
            body,
            &req.write_opts(None),
        )?;
        Ok(Reply::Json(StatusCode::CREATED, created))
    }

    fn replace(&self, req: &Incoming) -> Handled {
        let key = req.key()?;
        let body = req.json_body()?;
        let precondition = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        if precondition.is_none() && !key.0.group.is_empty() {
            // Custom resources do not allow unconditional updates.
            return Err(ApiStatus::invalid(
                &key.0,
                &key.2,
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            ));
        }
        let opts = req.write_opts(req.target.subresource.clone());
        let mut store = self.shared.lock();
        self.check_subresource(&store, req)?;
        let updated = store.update(
            &key,
            precondition.as_deref(),
            &opts,
            Ownership::Update,
            |_| Ok(body),
        )?;
        Ok(Reply::Json(StatusCode::OK, updated))
    }

    fn patch(&self, req: &Incoming) -> Handled {
        let key = req.key()?;
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let opts = req.write_opts(req.target.subresource.clone());
        let mut store = self.shared.lock();
        self.check_subresource(&store, req)?;
        let (gvr, name) = (key.0.clone(), key.2.clone());
        let patched = match content_type.as_str() {
            "application/json-patch+json" => {
                let patch: json_patch::Patch = serde_json::from_slice(&req.body)
                    .map_err(|e| ApiStatus::bad_request(format!("invalid JSON patch: {e}")))?;
                store.update(&key, None, &opts, Ownership::Update, |old| {
                    apply_json_patch(old, &patch, &gvr, &name)
                })?
            }
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                let patch = req.json_body()?;
                let precondition = patch
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                store.update(
                    &key,
                    precondition.as_deref(),
                    &opts,
                    Ownership::Update,
                    |old| {
                        let mut new = old.clone();
                        json_patch::merge(&mut new, &patch);
                        Ok(new)
                    },
                )?
            }
            "application/apply-patch+yaml" => {
                if req.query.get("fieldManager").is_none() {
                    return Err(ApiStatus::invalid(
                        &gvr,
                        &name,
                        "fieldManager: Required value: is required for apply patch",
                    ));
                }
                let config = req.apply_body()?;
                let existed = store.objects.contains_key(&key);
                let applied = store.apply(&key, config, req.query.flag("force"), &opts)?;
                let code = if existed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                return Ok(Reply::Json(code, applied));
            }
            other => {
                return Err(ApiStatus::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format ({other:?}); accepted: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
                    ),
                ));
            }
        };
        Ok(Reply::Json(StatusCode::OK, patched))
    }

    fn delete_object(&self, req: &Incoming) -> Handled {
        let key = req.key()?;
        if req.target.subresource.is_some() {
            return Err(ApiStatus::method_not_allowed(
                "DELETE",
                &req.target.resource_label(),
            ));
        }
        let options = req.delete_options()?;
        let dry_run = req.dry_run()
            || options
                .get("dryRun")
                .is_some_and(|d| d.to_string().contains("All"));
        let preconditions = options.get("preconditions").cloned().unwrap_or(Value::Null);
        match self
            .shared
            .lock()
            .delete(&key, &preconditions, dry_run, &now())?
        {
            Deleted::Pending(object) => Ok(Reply::Json(StatusCode::OK, object)),
            Deleted::Removed(object) => {
                let uid = object
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Ok(Reply::Json(
                    StatusCode::OK,
                    status::success_json(&key.0, &key.2, uid),
                ))
            }
        }
    }

    fn delete_collection(&self, req: &Incoming) -> Handled {
        let selectors = req.selectors()?;
        let dry_run = req.dry_run();
        let mut store = self.shared.lock();
        let keys: Vec<Key> = store
            .select(&req.target.gvr, req.target.namespace.as_deref())
            .filter(|(_, v)| selectors.matches(v))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            store.delete(key, &Value::Null, dry_run, &now())?;
        }
        Ok(Reply::Json(
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
        ))
    }

    fn check_subresource(&self, store: &Store, req: &Incoming) -> Result<(), ApiStatus> {
        match req.target.subresource.as_deref() {
            None => Ok(()),
            Some("status") if store.has_status_subresource(&req.target.gvr) => Ok(()),
            Some(sub) => Err(ApiStatus::not_found(
                &req.target.gvr,
                &format!("{}/{sub}", req.target.name.as_deref().unwrap_or_default()),
            )),
        }
    }
}

impl tower::Service<Request<kube::client::Body>> for FakeKube {
    type Response = Response<FakeBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

/// A request, parsed.
struct Incoming {
    target: Target,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
}

impl Incoming {
    fn key(&self) -> Result<Key, ApiStatus> {
        self.target.key().ok_or_else(|| {
            ApiStatus::method_not_allowed("this verb", &self.target.resource_label())
        })
    }

    fn json_body(&self) -> Result<Value, ApiStatus> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiStatus::bad_request(format!("the request body is not JSON: {e}")))
    }

    /// Apply bodies are YAML by media type; kube sends JSON, which is also YAML.
    fn apply_body(&self) -> Result<Value, ApiStatus> {
        serde_json::from_slice(&self.body).or_else(|_| {
            let text = std::str::from_utf8(&self.body)
                .map_err(|e| ApiStatus::bad_request(format!("apply body is not UTF-8: {e}")))?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| {
                ApiStatus::bad_request(format!("apply body is neither JSON nor YAML: {e}"))
            })
        })
    }

    fn delete_options(&self) -> Result<Value, ApiStatus> {
        if self.body.is_empty() {
            Ok(Value::Null)
        } else {
            self.json_body()
        }
    }

    fn selectors(&self) -> Result<Selectors, ApiStatus> {
        Ok(Selectors {
            labels: self
                .query
                .get("labelSelector")
                .map(LabelSelector::parse)
                .transpose()?
                .unwrap_or_default(),
            fields: self
                .query
                .get("fieldSelector")
                .map(FieldSelector::parse)
                .transpose()?
                .unwrap_or_default(),
        })
    }

    fn resource_version(&self) -> Result<Option<u64>, ApiStatus> {
        self.query
            .get("resourceVersion")
            .map(|rv| {
                rv.parse::<u64>().map_err(|_| {
                    ApiStatus::bad_request(format!(
                        "invalid resourceVersion {rv:?}: this fake uses integers"
                    ))
                })
            })
            .transpose()
    }

    fn dry_run(&self) -> bool {
        self.query.get("dryRun") == Some("All")
    }

    fn write_opts(&self, subresource: Option<String>) -> WriteOpts {
        let manager = self
            .query
            .get("fieldManager")
            .map(str::to_string)
            .or_else(|| {
                // The apiserver names an unnamed manager after the client's user agent.
                let agent = self.headers.get(http::header::USER_AGENT)?.to_str().ok()?;
                Some(agent.split('/').next()?.to_string()).filter(|a| !a.is_empty())
            })
            .unwrap_or_else(|| "unknown".to_string());
        WriteOpts {
            writer: Writer {
                manager,
                subresource,
                now: now(),
            },
            dry_run: self.dry_run(),
        }
    }
}

fn verb_of(method: &Method, target: &Target, query: &Query) -> &'static str {
    match (method.as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if query.flag("watch") => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unsupported",
    }
}

/// JSON patch, op by op, with the apiserver's leniency: `test` for `null` at a missing path
/// succeeds (kube's finalizer helper relies on it).
fn apply_json_patch(
    old: &Value,
    patch: &json_patch::Patch,
    gvr: &Gvr,
    name: &str,
) -> Result<Value, ApiStatus> {
    let mut doc = old.clone();
    for op in &patch.0 {
        if let json_patch::PatchOperation::Test(test) = op
            && test.value.is_null()
            && doc.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut doc, std::slice::from_ref(op)).map_err(|e| {
            ApiStatus::invalid(
                gvr,
                name,
                format!("the JSON patch could not be applied: {e}"),
            )
        })?;
    }
    Ok(doc)
}

/// `rv|namespace|name` of the last item of the previous page.
fn parse_continue(token: &str) -> Result<(u64, String, String), ApiStatus> {
    let mut parts = token.splitn(3, '|');
    match (
        parts.next().and_then(|rv| rv.parse().ok()),
        parts.next(),
        parts.next(),
    ) {
        (Some(rv), Some(ns), Some(name)) => Ok((rv, ns.to_string(), name.to_string())),
        _ => Err(ApiStatus::bad_request(format!(
            "invalid continue token {token:?}"
        ))),
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

fn version_info() -> Value {
    json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-fake", "platform": "linux/amd64"})
}

fn json_response(code: StatusCode, value: &Value) -> Response<FakeBody> {
    let bytes = Bytes::from(serde_json::to_vec(value).expect("JSON values serialize"));
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(FakeBody::from(bytes))
        .expect("static response parts are valid")
}

fn status_response(status: &ApiStatus) -> Response<FakeBody> {
    let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &status.to_json())
}

fn stream_response(
    stream: Pin<Box<dyn futures::Stream<Item = Bytes> + Send>>,
) -> Response<FakeBody> {
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(FakeBody::from_stream(stream.map(Ok::<_, Infallible>)))
        .expect("static response parts are valid")
}
