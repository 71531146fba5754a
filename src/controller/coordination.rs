//! Coordination state every tailnet-scoped kind's controller keeps beside the shared
//! [`Context`](super::Context): which tailnet's resources are being planned right now, and
//! which `tailnet.ops.dev/reconcile-at` requests have been served.
//!
//! The resources of one kind and tailnet are planned together (composition, conflicts), so
//! their reconciles take turns on a per-tailnet async mutex; and a new `reconcile-at` value
//! means "read the tailnet now", which each controller must tell apart from the same value
//! seen again at the next resync.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kube::{Resource, ResourceExt};

use super::Metrics;
use crate::resources::ManagedTailnet;
use crate::resources::common::RECONCILE_AT_ANNOTATION;
use crate::snapshot::SnapshotRegistry;

/// A tailnet's turn: held while one of its resources is planned and executed.
pub type TailnetLock = Arc<tokio::sync::Mutex<()>>;

/// Locks a std mutex, recovering from poisoning: the maps behind these mutexes are updated in
/// single inserts and removes, which a panicking holder cannot leave half-done.
pub fn lock_unpoisoned<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One async mutex per tailnet.
#[derive(Debug, Default)]
pub struct TailnetLocks(Mutex<HashMap<String, TailnetLock>>);

impl TailnetLocks {
    /// The mutex of `tailnet` (created on first use).
    pub fn for_tailnet(&self, tailnet: &str) -> TailnetLock {
        Arc::clone(
            lock_unpoisoned(&self.0)
                .entry(tailnet.to_owned())
                .or_default(),
        )
    }
}

/// The last `reconcile-at` value seen per resource. Cloning shares the memory, so the
/// controller's on-delete hook and its reconciles see the same entries.
#[derive(Debug, Default, Clone)]
pub struct ForcedReconciles(Arc<Mutex<HashMap<String, String>>>);

impl ForcedReconciles {
    /// Whether `obj` carries a `reconcile-at` value not seen before (and remembers it).
    pub fn newly_forced<K: Resource>(&self, obj: &K) -> bool {
        let Some(value) = obj.annotations().get(RECONCILE_AT_ANNOTATION) else {
            return false;
        };
        let previous = lock_unpoisoned(&self.0).insert(key(obj), value.clone());
        previous.as_ref() != Some(value)
    }

    /// Forgets `obj` (it was deleted).
    pub fn forget<K: Resource>(&self, obj: &K) {
        lock_unpoisoned(&self.0).remove(&key(obj));
    }
}

fn key<K: Resource>(obj: &K) -> String {
    match obj.namespace() {
        Some(namespace) => format!("{namespace}/{}", obj.name_any()),
        None => obj.name_any(),
    }
}

/// What every kind forgets when the watch sees one of its resources deleted: its drift gauge
/// series and its `reconcile-at` memory.
pub fn forget_deleted<K: Resource>(
    metrics: &Metrics,
    forced: &ForcedReconciles,
    kind: &str,
    obj: &K,
) {
    metrics.forget_drift(kind, &metric_name(obj));
    forced.forget(obj);
}

/// How a resource is named in metric labels: `name` for a cluster-scoped kind,
/// `namespace/name` for a namespaced one (two namespaces may hold the same name).
pub fn metric_name<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(namespace) => format!("{namespace}/{}", obj.name_any()),
        None => obj.name_any(),
    }
}

/// For a kind's ManagedTailnet watch: records the ManagedTailnet's `spec.suspend` before the resources it
/// maps to are reconciled, so they see a suspension (or its end) in the reconcile it triggers.
pub fn note_tailnet_suspension(snapshots: &SnapshotRegistry, tailnet: &ManagedTailnet) {
    snapshots.set_suspended(&tailnet.name_any(), tailnet.spec.suspend);
}

/// A resource's effective `suspend`: its own, or its ManagedTailnet's.
pub fn suspended(own: bool, snapshots: &SnapshotRegistry, tailnet: &str) -> bool {
    own || snapshots.is_suspended(tailnet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::TailnetPolicy;

    fn policy(name: &str, reconcile_at: Option<&str>) -> TailnetPolicy {
        let mut policy = TailnetPolicy::new(name, Default::default());
        if let Some(value) = reconcile_at {
            policy
                .annotations_mut()
                .insert(RECONCILE_AT_ANNOTATION.to_owned(), value.to_owned());
        }
        policy
    }

    #[test]
    fn a_reconcile_at_value_forces_once_and_a_new_value_again() {
        let forced = ForcedReconciles::default();
        assert!(!forced.newly_forced(&policy("a", None)));
        assert!(forced.newly_forced(&policy("a", Some("t1"))));
        assert!(!forced.newly_forced(&policy("a", Some("t1"))), "seen");
        assert!(
            forced.newly_forced(&policy("b", Some("t1"))),
            "per resource"
        );
        assert!(forced.newly_forced(&policy("a", Some("t2"))));
        forced.forget(&policy("a", None));
        assert!(forced.newly_forced(&policy("a", Some("t2"))), "forgotten");
    }

    #[test]
    fn a_suspended_tailnet_suspends_its_resources_until_resumed() {
        let snapshots = SnapshotRegistry::new();
        let mut tailnet = ManagedTailnet::new("home", Default::default());
        assert!(!suspended(false, &snapshots, "home"));
        tailnet.spec.suspend = true;
        note_tailnet_suspension(&snapshots, &tailnet);
        assert!(suspended(false, &snapshots, "home"));
        assert!(!suspended(false, &snapshots, "work"), "per tailnet");
        tailnet.spec.suspend = false;
        note_tailnet_suspension(&snapshots, &tailnet);
        assert!(!suspended(false, &snapshots, "home"));
        assert!(
            suspended(true, &snapshots, "home"),
            "its own suspend still counts"
        );
    }

    #[tokio::test]
    async fn one_tailnet_at_a_time_and_tailnets_independent() {
        let locks = TailnetLocks::default();
        let home = locks.for_tailnet("home");
        let _held = home.lock().await;
        assert!(
            locks.for_tailnet("home").try_lock().is_err(),
            "same tailnet"
        );
        assert!(
            locks.for_tailnet("work").try_lock().is_ok(),
            "other tailnet"
        );
    }
}
