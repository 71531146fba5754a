//! The object store and its write semantics, independent of HTTP.
//!
//! Every write goes through one pipeline: compute the candidate object (PUT body, patch result,
//! apply merge), then [`Store::finish_write`] restores server-owned fields, applies the status
//! subresource split, checks finalizer rules, bumps `generation` when the spec-like part changed
//! and records field ownership; [`Store::commit`] then bumps the global `resourceVersion` **only
//! if the object actually changed**, appends to the watch log and wakes watchers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::fields::{self, Writer};
use super::{ApiStatus, Gvr};

/// Storage key: resource, namespace (`""` when cluster-scoped), name.
pub(crate) type Key = (Gvr, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watchers replay it.
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    pub rv: u64,
    pub key: Key,
    pub event: EventType,
    pub object: Arc<Value>,
    /// The object before the change: lets a filtered watch turn "left the selector" into DELETED.
    pub previous: Option<Arc<Value>>,
}

/// What a write does besides computing the new object.
#[derive(Debug, Clone)]
pub(crate) struct WriteOpts {
    pub writer: Writer,
    pub dry_run: bool,
}

/// Outcome of a DELETE.
#[derive(Debug, Clone)]
pub(crate) enum Deleted {
    /// Finalizers hold the object: it now carries `deletionTimestamp`.
    Pending(Value),
    /// The object is gone; this was its last state.
    Removed(Value),
}

/// How ownership is recorded for a write.
pub(crate) enum Ownership {
    /// create, PUT, non-apply PATCH: the writer takes the fields it changed.
    Update,
    /// server-side apply: the candidate already carries its managedFields.
    Applied,
}

pub(crate) struct Store {
    pub rv: u64,
    pub objects: BTreeMap<Key, Value>,
    pub log: VecDeque<LogEntry>,
    pub log_capacity: usize,
    /// Watch history before (and at) this version is gone: resuming from an older one is 410.
    pub compacted_rv: u64,
    /// Bumped to end every open watch stream.
    pub epoch: u64,
    pub kinds: BTreeMap<Gvr, String>,
    pub status_subresources: BTreeSet<(String, String)>,
    pub request_counts: BTreeMap<String, u64>,
    /// `"verb resource"` → how many more such requests are refused (403), for failure tests.
    pub refusals: BTreeMap<String, u32>,
    pub request_log: Vec<String>,
    pub watches_started: u64,
    uid_seq: u64,
    /// Carries the latest resourceVersion (and epoch) to open watch streams.
    pub notify: watch::Sender<(u64, u64)>,
}

impl Store {
    pub fn new(log_capacity: usize) -> Self {
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            log_capacity,
            compacted_rv: 1,
            epoch: 0,
            kinds: BTreeMap::new(),
            status_subresources: BTreeSet::new(),
            request_counts: BTreeMap::new(),
            refusals: BTreeMap::new(),
            request_log: Vec::new(),
            watches_started: 0,
            uid_seq: 0,
            notify: watch::channel((1, 0)).0,
        }
    }

    pub fn has_status_subresource(&self, gvr: &Gvr) -> bool {
        self.status_subresources
            .contains(&(gvr.group.clone(), gvr.resource.clone()))
    }

    pub fn kind_of(&self, gvr: &Gvr) -> Option<String> {
        self.kinds.get(gvr).cloned()
    }

    // ----- reads -----------------------------------------------------------------------------

    pub fn get(&self, key: &Key) -> Result<Value, ApiStatus> {
        self.objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiStatus::not_found(&key.0, &key.2))
    }

    /// Objects of a resource, in one namespace or all, sorted by namespace and name.
    pub fn select<'a>(
        &'a self,
        gvr: &'a Gvr,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> {
        self.objects
            .iter()
            .filter(move |(k, _)| &k.0 == gvr && namespace.is_none_or(|ns| k.1 == ns))
    }

    // ----- writes ----------------------------------------------------------------------------

    /// POST: a new object named by `metadata.name` (or `generateName`).
    pub fn create(
        &mut self,
        gvr: &Gvr,
        namespace: Option<&str>,
        mut body: Value,
        opts: &WriteOpts,
    ) -> Result<Value, ApiStatus> {
        let meta = body
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| {
                ApiStatus::bad_request("the object has no metadata; set metadata.name")
            })?;
        match (namespace, meta.get("namespace").and_then(Value::as_str)) {
            (Some(url), Some(body_ns)) if url != body_ns => {
                return Err(ApiStatus::bad_request(format!(
                    "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({url})"
                )));
            }
            (Some(url), _) => {
                meta.insert("namespace".into(), json!(url));
            }
            (None, _) => {
                meta.remove("namespace");
            }
        }
        let name = match meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(name) => name.to_string(),
            None => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) => format!("{prefix}{}", self.generated_suffix()),
                None => {
                    return Err(ApiStatus::invalid(
                        gvr,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
            },
        };
        meta.insert("name".into(), json!(name));
        let key: Key = (
            gvr.clone(),
            namespace.unwrap_or_default().to_string(),
            name.clone(),
        );
        if self.objects.contains_key(&key) {
            return Err(ApiStatus::already_exists(gvr, &name));
        }
        let object = self.initialize(gvr, body, &opts.writer, Ownership::Update);
        self.commit(&key, None, object, opts.dry_run)
    }

    /// Sets the server-owned fields of a new object and records its ownership.
    fn initialize(
        &mut self,
        gvr: &Gvr,
        mut object: Value,
        writer: &Writer,
        ownership: Ownership,
    ) -> Value {
        if object.get("apiVersion").is_none() {
            object["apiVersion"] = json!(gvr.api_version());
        }
        if object.get("kind").is_none()
            && let Some(kind) = self.kind_of(gvr)
        {
            object["kind"] = json!(kind);
        }
        if self.has_status_subresource(gvr)
            && let Some(map) = object.as_object_mut()
        {
            // Status is set through /status only; a create cannot seed it.
            map.remove("status");
        }
        self.uid_seq += 1;
        let meta = object["metadata"]
            .as_object_mut()
            .expect("checked by the caller");
        for server_owned in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(server_owned);
        }
        meta.insert(
            "uid".into(),
            json!(format!("00000000-0000-4000-8000-{:012x}", self.uid_seq)),
        );
        meta.insert("creationTimestamp".into(), json!(writer.now));
        meta.insert("generation".into(), json!(1));
        if let Ownership::Update = ownership {
            meta.remove("managedFields");
            fields::record_update(None, &mut object, writer);
        }
        object
    }

    fn generated_suffix(&mut self) -> String {
        self.uid_seq += 1;
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.uid_seq as usize * 7919 + 104_729;
        (0..5)
            .map(|_| {
                let c = ALPHABET[n % ALPHABET.len()] as char;
                n /= ALPHABET.len();
                n += 31;
                c
            })
            .collect()
    }

    /// PUT / PATCH of an existing object. `candidate` computes the desired object from the
    /// current one; `precondition` is a resourceVersion the caller based its change on.
    pub fn update(
        &mut self,
        key: &Key,
        precondition: Option<&str>,
        opts: &WriteOpts,
        ownership: Ownership,
        candidate: impl FnOnce(&Value) -> Result<Value, ApiStatus>,
    ) -> Result<Value, ApiStatus> {
        let old = self.get(key)?;
        check_resource_version(key, &old, precondition)?;
        let proposed = candidate(&old)?;
        let new = self.finish_write(key, &old, proposed, &opts.writer, ownership)?;
        self.commit(key, Some(old), new, opts.dry_run)
    }

    /// Server-side apply: creates the object if it does not exist.
    pub fn apply(
        &mut self,
        key: &Key,
        mut config: Value,
        force: bool,
        opts: &WriteOpts,
    ) -> Result<Value, ApiStatus> {
        let gvr = &key.0;
        if let Some(rv) = config
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            // An apply configuration may pin the version it was computed from.
            let rv = rv.to_string();
            if let Some(old) = self.objects.get(key) {
                check_resource_version(key, old, Some(&rv))?;
            }
        }
        let scoped = self.scope_config(gvr, &opts.writer, &config);
        config = scoped;
        let Some(old) = self.objects.get(key).cloned() else {
            if opts.writer.subresource.is_some() {
                return Err(ApiStatus::not_found(gvr, &key.2));
            }
            let mut skeleton = json!({"metadata": {"name": key.2}});
            if !key.1.is_empty() {
                skeleton["metadata"]["namespace"] = json!(key.1);
            }
            let merged = fields::apply(&skeleton, &config, &opts.writer, force)
                .map_err(|c| conflict_status(gvr, &key.2, &c))?;
            let object = self.initialize(gvr, merged, &opts.writer, Ownership::Applied);
            return self.commit(key, None, object, opts.dry_run);
        };
        let merged = fields::apply(&old, &config, &opts.writer, force)
            .map_err(|c| conflict_status(gvr, &key.2, &c))?;
        let new = self.finish_write(key, &old, merged, &opts.writer, Ownership::Applied)?;
        self.commit(key, Some(old), new, opts.dry_run)
    }

    /// Reduces an apply configuration to what this endpoint lets the manager own.
    fn scope_config(&mut self, gvr: &Gvr, writer: &Writer, config: &Value) -> Value {
        if let Some(kind) = config.get("kind").and_then(Value::as_str) {
            self.kinds
                .entry(gvr.clone())
                .or_insert_with(|| kind.to_string());
        }
        let mut view = fields::user_view(config);
        fields::strip_nulls(&mut view);
        let Some(map) = view.as_object_mut() else {
            return json!({});
        };
        if writer.subresource.as_deref() == Some("status") {
            map.retain(|k, _| k == "status");
        } else if self.has_status_subresource(gvr) {
            map.remove("status");
        }
        view
    }

    /// The shared tail of every update: server-owned fields, status split, finalizer rules,
    /// generation, ownership.
    fn finish_write(
        &self,
        key: &Key,
        old: &Value,
        proposed: Value,
        writer: &Writer,
        ownership: Ownership,
    ) -> Result<Value, ApiStatus> {
        let gvr = &key.0;
        let mut new = match writer.subresource.as_deref() {
            Some("status") => {
                let mut n = old.clone();
                set_or_remove(&mut n, "status", proposed.get("status").cloned());
                if let Ownership::Applied = ownership {
                    set_or_remove_meta(
                        &mut n,
                        "managedFields",
                        proposed.pointer("/metadata/managedFields").cloned(),
                    );
                }
                n
            }
            Some(other) => {
                return Err(ApiStatus::not_found(gvr, &format!("{}/{other}", key.2)));
            }
            None => {
                let mut n = proposed;
                if self.has_status_subresource(gvr) {
                    // The main endpoint ignores status changes.
                    set_or_remove(&mut n, "status", old.get("status").cloned());
                }
                n
            }
        };
        restore_server_fields(old, &mut new, &key.2)?;
        if let Ownership::Update = ownership {
            set_or_remove_meta(
                &mut new,
                "managedFields",
                old.pointer("/metadata/managedFields").cloned(),
            );
        }
        check_finalizers(old, &new, gvr, &key.2)?;
        if spec_like(old, self.has_status_subresource(gvr))
            != spec_like(&new, self.has_status_subresource(gvr))
        {
            bump_generation(&mut new);
        }
        if let Ownership::Update = ownership {
            fields::record_update(Some(old), &mut new, writer);
        }
        Ok(new)
    }

    /// DELETE: marks the object (finalizers present) or removes it.
    pub fn delete(
        &mut self,
        key: &Key,
        preconditions: &Value,
        dry_run: bool,
        now: &str,
    ) -> Result<Deleted, ApiStatus> {
        let old = self.get(key)?;
        if let Some(rv) = preconditions.get("resourceVersion").and_then(Value::as_str) {
            check_resource_version(key, &old, Some(rv))?;
        }
        if let Some(uid) = preconditions.get("uid").and_then(Value::as_str)
            && old.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
        {
            return Err(ApiStatus::stale(&key.0, &key.2));
        }
        if finalizers(&old).is_empty() {
            if dry_run {
                return Ok(Deleted::Removed(old));
            }
            return Ok(Deleted::Removed(self.remove(key, Some(old))));
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(Deleted::Pending(old));
        }
        let mut marked = old.clone();
        marked["metadata"]["deletionTimestamp"] = json!(now);
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        bump_generation(&mut marked);
        let committed = self.commit(key, Some(old), marked, dry_run)?;
        Ok(Deleted::Pending(committed))
    }

    /// Stores `new` if it differs from `old`: bumps the resourceVersion, logs and notifies.
    /// An object marked for deletion whose finalizers are all gone is removed instead.
    pub fn commit(
        &mut self,
        key: &Key,
        old: Option<Value>,
        mut new: Value,
        dry_run: bool,
    ) -> Result<Value, ApiStatus> {
        if old.as_ref() == Some(&new) || dry_run {
            return Ok(new);
        }
        if let Some(kind) = new.get("kind").and_then(Value::as_str) {
            self.kinds.insert(key.0.clone(), kind.to_string());
        }
        if new.pointer("/metadata/deletionTimestamp").is_some() && finalizers(&new).is_empty() {
            return Ok(self.remove(key, Some(new)));
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert(key.clone(), new.clone());
        let event = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(key, event, new.clone(), old);
        Ok(new)
    }

    /// Removes an object for good; `last` is its final state (defaults to the stored one).
    fn remove(&mut self, key: &Key, last: Option<Value>) -> Value {
        let stored = self.objects.remove(key);
        let mut last = last.or_else(|| stored.clone()).unwrap_or(Value::Null);
        self.rv += 1;
        last["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(key, EventType::Deleted, last.clone(), stored);
        last
    }

    fn record(&mut self, key: &Key, event: EventType, object: Value, previous: Option<Value>) {
        self.log.push_back(LogEntry {
            rv: self.rv,
            key: key.clone(),
            event,
            object: Arc::new(object),
            previous: previous.map(Arc::new),
        });
        while self.log.len() > self.log_capacity {
            if let Some(dropped) = self.log.pop_front() {
                self.compacted_rv = dropped.rv;
            }
        }
        self.notify.send_replace((self.rv, self.epoch));
    }

    /// Drops the whole watch history (as etcd compaction does) and ends every open watch, so
    /// clients must resume and get 410 Gone. The version counter moves on, as it would have
    /// with writes to other resources, so every version a client holds is now too old.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.compacted_rv = self.rv;
        self.log.clear();
        self.close_watches();
    }

    pub fn close_watches(&mut self) {
        self.epoch += 1;
        self.notify.send_replace((self.rv, self.epoch));
    }
}

fn conflict_status(gvr: &Gvr, name: &str, conflicts: &[fields::Conflict]) -> ApiStatus {
    let list: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "conflict with \"{}\": {}",
                c.manager,
                fields::dotted(&c.path)
            )
        })
        .collect();
    let plural = if list.len() == 1 { "" } else { "s" };
    ApiStatus::new(
        409,
        "Conflict",
        format!(
            "Apply failed with {} conflict{plural} on {} \"{name}\": {}",
            list.len(),
            gvr.qualified(),
            list.join("; ")
        ),
    )
}

fn check_resource_version(
    key: &Key,
    current: &Value,
    expected: Option<&str>,
) -> Result<(), ApiStatus> {
    let Some(expected) = expected.filter(|rv| !rv.is_empty()) else {
        return Ok(());
    };
    if current
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        != Some(expected)
    {
        return Err(ApiStatus::stale(&key.0, &key.2));
    }
    Ok(())
}

pub(crate) fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Once deletion started, finalizers may only be removed.
fn check_finalizers(old: &Value, new: &Value, gvr: &Gvr, name: &str) -> Result<(), ApiStatus> {
    if old.pointer("/metadata/deletionTimestamp").is_none() {
        return Ok(());
    }
    let before = finalizers(old);
    if let Some(added) = finalizers(new).into_iter().find(|f| !before.contains(f)) {
        return Err(ApiStatus::invalid(
            gvr,
            name,
            format!(
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [\"{added}\"]"
            ),
        ));
    }
    Ok(())
}

/// Copies what only the server may set from the stored object; a renamed object is rejected.
fn restore_server_fields(old: &Value, new: &mut Value, name: &str) -> Result<(), ApiStatus> {
    if !new.get("metadata").is_some_and(Value::is_object) {
        new["metadata"] = json!({});
    }
    if let Some(sent) = new.pointer("/metadata/name").and_then(Value::as_str)
        && sent != name
    {
        return Err(ApiStatus::bad_request(format!(
            "the name of the object ({sent}) does not match the name on the URL ({name})"
        )));
    }
    for type_field in ["apiVersion", "kind"] {
        set_or_remove(new, type_field, old.get(type_field).cloned());
    }
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "resourceVersion",
    ] {
        set_or_remove_meta(
            new,
            field,
            old.pointer(&format!("/metadata/{field}")).cloned(),
        );
    }
    Ok(())
}

/// Everything `generation` tracks: all but metadata (and status, when it is a subresource).
fn spec_like(object: &Value, status_subresource: bool) -> Value {
    let mut v = object.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("metadata");
        if status_subresource {
            map.remove("status");
        }
    }
    v
}

fn bump_generation(object: &mut Value) {
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    object["metadata"]["generation"] = json!(generation + 1);
}

fn set_or_remove(object: &mut Value, field: &str, value: Option<Value>) {
    if let Some(map) = object.as_object_mut() {
        match value {
            Some(v) => {
                map.insert(field.to_string(), v);
            }
            None => {
                map.remove(field);
            }
        }
    }
}

fn set_or_remove_meta(object: &mut Value, field: &str, value: Option<Value>) {
    if let Some(meta) = object.get_mut("metadata") {
        set_or_remove(meta, field, value);
    }
}
