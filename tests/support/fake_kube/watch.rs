//! Streaming watch: newline-delimited `{"type": ..., "object": ...}` events.
//!
//! A watch from `resourceVersion=N` replays every logged change with a version above N, then
//! follows live changes until the client drops the stream, `timeoutSeconds` passes (a BOOKMARK
//! with the current version is sent first when bookmarks are allowed) or the test closes all
//! watches. A version older than the retained log gets an `ERROR` event with a 410 `Status` in
//! a 200 response, as a real apiserver sends it; kube's watcher then re-lists. Without a version
//! (or `0`) the watch starts with synthetic ADDED events for the current objects;
//! `sendInitialEvents=true` adds the `k8s.io/initial-events-end` BOOKMARK after them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::selector::Selectors;
use super::store::{EventType, LogEntry, Store};
use super::{ApiStatus, Gvr, Shared};

/// A parsed watch request.
#[derive(Debug, Clone)]
pub(crate) struct WatchSpec {
    pub gvr: Gvr,
    pub namespace: Option<String>,
    pub selectors: Selectors,
    /// `None`: start from the current state (synthetic ADDED events first).
    pub resource_version: Option<u64>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
}

/// Keeps [`super::FakeKube::open_watches`] accurate: dropped with the stream.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Cursor {
    shared: Arc<Shared>,
    spec: WatchSpec,
    last_rv: u64,
    epoch: u64,
    pending: VecDeque<Bytes>,
    finished: bool,
    deadline: tokio::time::Instant,
    wake: watch::Receiver<(u64, u64)>,
    _open: OpenGuard,
}

enum Wake {
    Changed,
    Closed,
    TimedOut,
}

/// Opens a watch; the returned stream yields one JSON line per event.
pub(crate) fn open(
    shared: Arc<Shared>,
    spec: WatchSpec,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let cursor = {
        let mut store = shared.lock();
        store.watches_started += 1;
        shared.open_watches.fetch_add(1, Ordering::SeqCst);
        let mut cursor = Cursor {
            shared: shared.clone(),
            last_rv: spec.resource_version.unwrap_or(store.rv),
            epoch: store.epoch,
            pending: VecDeque::new(),
            finished: false,
            deadline: tokio::time::Instant::now() + spec.timeout,
            wake: store.notify.subscribe(),
            _open: OpenGuard(shared.clone()),
            spec,
        };
        if cursor.spec.resource_version.is_none() || cursor.spec.send_initial_events {
            cursor.initial_events(&store);
        }
        cursor
    };
    futures::stream::unfold(cursor, |mut cursor| async move {
        let line = cursor.next_line().await?;
        Some((line, cursor))
    })
}

impl Cursor {
    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(line);
            }
            if self.finished {
                return None;
            }
            // Mark the current notification seen *before* reading, so no change is missed.
            self.wake.borrow_and_update();
            self.poll_store();
            if !self.pending.is_empty() || self.finished {
                continue;
            }
            let deadline = self.deadline;
            let wake = tokio::select! {
                changed = self.wake.changed() => if changed.is_ok() { Wake::Changed } else { Wake::Closed },
                () = tokio::time::sleep_until(deadline) => Wake::TimedOut,
            };
            match wake {
                Wake::Changed => {}
                Wake::Closed => self.finished = true,
                Wake::TimedOut => {
                    if self.spec.bookmarks {
                        let store = self.shared.lock();
                        let line = bookmark(&store, &self.spec.gvr, store.rv, false);
                        self.pending.push_back(line);
                    }
                    self.finished = true;
                }
            }
        }
    }

    /// Synthetic ADDED events for the current objects (and the initial-events-end bookmark).
    fn initial_events(&mut self, store: &Store) {
        for (_, object) in store.select(&self.spec.gvr, self.spec.namespace.as_deref()) {
            if self.spec.selectors.matches(object) {
                self.pending.push_back(line("ADDED", object));
            }
        }
        self.last_rv = store.rv;
        if self.spec.send_initial_events {
            self.pending
                .push_back(bookmark(store, &self.spec.gvr, store.rv, true));
        }
    }

    /// Collects logged changes after `last_rv`, or ends the stream.
    fn poll_store(&mut self) {
        let store = self.shared.lock();
        if store.epoch != self.epoch {
            self.finished = true;
            return;
        }
        if self.last_rv < store.compacted_rv {
            let status = ApiStatus::expired(self.last_rv, store.compacted_rv);
            self.pending.push_back(encode(
                &json!({"type": "ERROR", "object": status.to_json()}),
            ));
            self.finished = true;
            return;
        }
        let start = store.log.partition_point(|e| e.rv <= self.last_rv);
        for entry in store.log.range(start..) {
            if let Some(event) = self.visible_as(entry) {
                self.pending.push_back(line(event, &entry.object));
            }
        }
        self.last_rv = self.last_rv.max(store.rv);
    }

    /// How a change looks through this watch's namespace and selectors: an object that starts
    /// matching is ADDED, one that stops matching is DELETED.
    fn visible_as(&self, entry: &LogEntry) -> Option<&'static str> {
        let (gvr, ns, _) = &entry.key;
        if *gvr != self.spec.gvr || self.spec.namespace.as_ref().is_some_and(|want| want != ns) {
            return None;
        }
        let now = self.spec.selectors.matches(&entry.object);
        let before = entry
            .previous
            .as_ref()
            .is_some_and(|p| self.spec.selectors.matches(p));
        match (entry.event, before, now) {
            (EventType::Added, _, true) => Some("ADDED"),
            (EventType::Deleted, b, n) if b || n => Some("DELETED"),
            (EventType::Modified, true, true) => Some("MODIFIED"),
            (EventType::Modified, false, true) => Some("ADDED"),
            (EventType::Modified, true, false) => Some("DELETED"),
            _ => None,
        }
    }
}

fn line(event: &str, object: &Value) -> Bytes {
    encode(&json!({"type": event, "object": object}))
}

fn bookmark(store: &Store, gvr: &Gvr, rv: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let object = json!({
        "apiVersion": gvr.api_version(),
        "kind": store.kind_of(gvr).unwrap_or_default(),
        "metadata": metadata,
    });
    encode(&json!({"type": "BOOKMARK", "object": object}))
}

fn encode(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).expect("JSON values serialize");
    bytes.push(b'\n');
    Bytes::from(bytes)
}
