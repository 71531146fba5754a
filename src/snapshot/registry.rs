//! The snapshot caches of every tailnet, keyed by the `ManagedTailnet` resource's name, so all the
//! resources of one tailnet share one cache.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{Clock, SystemClock, TailnetSnapshots};
use crate::tailscale::TailscaleClient;

/// Shared handle to the caches (cheap to clone; clones share the map).
#[derive(Clone)]
pub struct SnapshotRegistry {
    clock: Arc<dyn Clock>,
    caches: Arc<Mutex<BTreeMap<String, TailnetSnapshots>>>,
    /// Tailnets whose `ManagedTailnet` has `spec.suspend`: their resources observe but do not write.
    suspended: Arc<Mutex<BTreeSet<String>>>,
}

impl fmt::Debug for SnapshotRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotRegistry")
            .field("tailnets", &self.names())
            .finish_non_exhaustive()
    }
}

impl Default for SnapshotRegistry {
    fn default() -> Self {
        SnapshotRegistry::new()
    }
}

impl SnapshotRegistry {
    /// A registry whose caches use the system clock.
    pub fn new() -> SnapshotRegistry {
        SnapshotRegistry::with_clock(Arc::new(SystemClock))
    }

    /// A registry whose caches all use `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> SnapshotRegistry {
        SnapshotRegistry {
            clock,
            caches: Arc::default(),
            suspended: Arc::default(),
        }
    }

    pub fn get(&self, name: &str) -> Option<TailnetSnapshots> {
        self.lock().get(name).cloned()
    }

    /// The cache of tailnet `name`, created from `make()` (client and resync interval) if there
    /// is none. An existing cache is returned as is, even if `make` would now give another
    /// client or interval: when the `ManagedTailnet` spec changes, use [`Self::insert`].
    pub fn get_or_insert(
        &self,
        name: &str,
        make: impl FnOnce() -> (TailscaleClient, Duration),
    ) -> TailnetSnapshots {
        let result: Result<_, std::convert::Infallible> =
            self.try_get_or_insert(name, || Ok(make()));
        match result {
            Ok(cache) => cache,
            Err(never) => match never {},
        }
    }

    /// Like [`Self::get_or_insert`] for a `make` that can fail (e.g. building the client from
    /// a Secret); on error nothing is inserted.
    pub fn try_get_or_insert<E>(
        &self,
        name: &str,
        make: impl FnOnce() -> Result<(TailscaleClient, Duration), E>,
    ) -> Result<TailnetSnapshots, E> {
        let mut caches = self.lock();
        if let Some(cache) = caches.get(name) {
            return Ok(cache.clone());
        }
        let (client, interval) = make()?;
        let cache = TailnetSnapshots::with_clock(client, interval, Arc::clone(&self.clock));
        caches.insert(name.to_owned(), cache.clone());
        Ok(cache)
    }

    /// Replaces the cache of `name` with an empty one (new client or interval). Holders of
    /// the old cache keep a working, but no longer shared, cache until they ask again.
    pub fn insert(
        &self,
        name: &str,
        client: TailscaleClient,
        resync_interval: Duration,
    ) -> TailnetSnapshots {
        let cache = TailnetSnapshots::with_clock(client, resync_interval, Arc::clone(&self.clock));
        self.lock().insert(name.to_owned(), cache.clone());
        cache
    }

    /// Forgets the cache of `name` (the `ManagedTailnet` was deleted). Returns it, if there was one.
    pub fn remove(&self, name: &str) -> Option<TailnetSnapshots> {
        self.set_suspended(name, false);
        self.lock().remove(name)
    }

    /// Records whether the `ManagedTailnet` named `name` has `spec.suspend` set. The ManagedTailnet
    /// controller sets it before it makes the tailnet's cache, and every kind's ManagedTailnet watch
    /// sets it before the resources of that tailnet are reconciled, so no resource that can
    /// reach the tailnet misses a suspension.
    pub fn set_suspended(&self, name: &str, suspended: bool) {
        let mut set = self
            .suspended
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if suspended {
            set.insert(name.to_owned());
        } else {
            set.remove(name);
        }
    }

    /// Whether the resources of tailnet `name` must not write (its `ManagedTailnet` is suspended).
    pub fn is_suspended(&self, name: &str) -> bool {
        self.suspended
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(name)
    }

    /// Names of the tailnets with a cache, sorted.
    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, TailnetSnapshots>> {
        // Map operations cannot leave it half-changed, so a poisoned lock is usable.
        self.caches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
