//! Where a `TailnetPolicy`'s text comes from on the cluster side: inline, or a ConfigMap key
//! (`policyFrom.configMapKeyRef`), read through the Kubernetes API with a cache the controller's
//! metadata watch keeps fresh. The controller and the MCP server's cluster source share it.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::reconcile::tailnet_policy::{
    PolicyInput, TextSource, config_map_text, policy_input, text_source,
};
use crate::resources::{ReconcileError, TailnetPolicy};

/// The planner inputs of `members`, each text resolved. A ConfigMap key costs one `GET`, or
/// none when `cache` holds the ConfigMap as the watch last saw it.
pub async fn resolve_all(
    client: &kube::Client,
    members: &[Arc<TailnetPolicy>],
    cache: Option<&ConfigMapCache>,
) -> Vec<PolicyInput> {
    let mut resources = Vec::with_capacity(members.len());
    for member in members {
        let text = resolve_text(client, member, cache).await;
        resources.push(policy_input(member, text));
    }
    resources
}

async fn resolve_text(
    client: &kube::Client,
    policy: &TailnetPolicy,
    cache: Option<&ConfigMapCache>,
) -> Result<String, ReconcileError> {
    let r = match text_source(&policy.spec)? {
        TextSource::Inline(text) => return Ok(text.to_owned()),
        TextSource::ConfigMap(r) => r,
    };
    let cached = cache.and_then(|c| c.fresh(&r.namespace, &r.name));
    let map = match cached {
        Some(map) => Some(map),
        None => {
            let map = Api::<ConfigMap>::namespaced(client.clone(), &r.namespace)
                .get_opt(&r.name)
                .await?;
            if let (Some(cache), Some(map)) = (cache, &map) {
                cache.store(map);
            }
            map
        }
    };
    config_map_text(
        r,
        map.as_ref(),
        "referenced by spec.policyFrom.configMapKeyRef: create the ConfigMap or fix its \
         namespace/name; the policy is recomposed as soon as it exists",
    )
}

type MapKey = (String, String);

/// The `policyFrom` ConfigMaps read so far, each with the `resourceVersion` it was read at, and
/// the newest `resourceVersion` the metadata watch has seen of each. A ConfigMap is read again
/// only after the watch has seen it change (or before it has seen it at all), so a steady
/// resync of many policies reads no ConfigMap.
#[derive(Debug, Default, Clone)]
pub struct ConfigMapCache(Arc<Mutex<ConfigMapCacheState>>);

#[derive(Debug, Default)]
struct ConfigMapCacheState {
    seen: HashMap<MapKey, String>,
    read: HashMap<MapKey, ConfigMap>,
}

impl ConfigMapCache {
    /// Records what the watch saw of `map` (also on deletion: its last resourceVersion).
    pub fn saw(&self, map: &PartialObjectMeta<ConfigMap>) {
        let key = (map.namespace().unwrap_or_default(), map.name_any());
        let version = map.resource_version().unwrap_or_default();
        lock_unpoisoned(&self.0).seen.insert(key, version);
    }

    /// The ConfigMap as read, if the watch has seen no newer version of it.
    pub fn fresh(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        let state = lock_unpoisoned(&self.0);
        let key = (namespace.to_owned(), name.to_owned());
        let read = state.read.get(&key)?;
        let seen = state.seen.get(&key)?;
        (read.resource_version().as_ref() == Some(seen)).then(|| read.clone())
    }

    pub fn store(&self, map: &ConfigMap) {
        let key = (map.namespace().unwrap_or_default(), map.name_any());
        lock_unpoisoned(&self.0).read.insert(key, map.clone());
    }
}

/// The policies whose `policyFrom` names `map`.
pub fn referencing(
    store: &Store<TailnetPolicy>,
    map: &PartialObjectMeta<ConfigMap>,
) -> Vec<ObjectRef<TailnetPolicy>> {
    let (namespace, name) = (map.namespace().unwrap_or_default(), map.name_any());
    store
        .state()
        .iter()
        .filter(|p| {
            p.spec.policy_from.as_ref().is_some_and(|from| {
                let r = &from.config_map_key_ref;
                r.namespace == namespace && r.name == name
            })
        })
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

/// The cache's maps are updated in single inserts, which a panicking holder cannot leave
/// half-done: a poisoned lock is still usable.
fn lock_unpoisoned<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
