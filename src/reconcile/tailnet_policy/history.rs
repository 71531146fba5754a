//! Revision history of a tailnet's composed policy: the last N applied revisions with number,
//! hash, time, source generations and access-diff summary, so a rollback (automatic, or by the
//! `tailnet.ops.dev/rollback-to` annotation) has the exact text to re-apply.
//!
//! Two stores: [`InMemoryRevisionStore`] (tests, file mode: no history across runs) and
//! [`ConfigMapRevisionStore`], one ConfigMap per tailnet in the operator's namespace named
//! `tailnet-operator-history-<tailnet>`, one data key per revision (`revision-<n>`) holding the
//! revision as JSON, text included.
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};

use super::types::ApplyReason;
use crate::resources::ReconcileError;
use crate::resources::tailnet_policy::AccessDiffSummary;

/// One applied version of the composed policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// 1, 2, 3, … per tailnet; never reused.
    pub number: u32,
    /// SHA-256 (hex) of `text`.
    pub hash: String,
    pub time: DateTime<Utc>,
    /// `TailnetPolicy/<name>` → `metadata.generation` of each source composed.
    pub sources: BTreeMap<String, i64>,
    pub access_diff: AccessDiffSummary,
    pub reason: ApplyReason,
    /// The policy text exactly as posted.
    pub text: String,
    /// When this revision is a rollback: the hash of the text whose post-apply check failed.
    /// The planner does not re-apply that text until the spec changes (no apply/rollback loop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_hash: Option<String>,
}

/// Where revisions are kept. Methods return `Send` futures so a controller can hold the store
/// across tasks.
pub trait RevisionStore: Send + Sync {
    /// Every kept revision, oldest first.
    fn list(&self) -> impl Future<Output = Result<Vec<Revision>, ReconcileError>> + Send;
    /// Appends `revision`, then drops the oldest beyond `limit` (at least 1 is kept).
    fn append(
        &self,
        revision: Revision,
        limit: u32,
    ) -> impl Future<Output = Result<(), ReconcileError>> + Send;
    /// The kept revision numbered `number`.
    fn get(
        &self,
        number: u32,
    ) -> impl Future<Output = Result<Option<Revision>, ReconcileError>> + Send {
        async move {
            let all = self.list().await?;
            Ok(all.into_iter().find(|r| r.number == number))
        }
    }
}

/// Revisions in process memory. Clones share the list.
#[derive(Debug, Clone, Default)]
pub struct InMemoryRevisionStore {
    revisions: Arc<Mutex<Vec<Revision>>>,
}

impl InMemoryRevisionStore {
    pub fn new() -> InMemoryRevisionStore {
        InMemoryRevisionStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Revision>> {
        // A panic while holding the lock leaves a valid Vec; keep going.
        self.revisions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RevisionStore for InMemoryRevisionStore {
    async fn list(&self) -> Result<Vec<Revision>, ReconcileError> {
        Ok(self.lock().clone())
    }

    async fn append(&self, revision: Revision, limit: u32) -> Result<(), ReconcileError> {
        let mut revisions = self.lock();
        revisions.push(revision);
        prune(&mut revisions, limit);
        Ok(())
    }
}

fn prune(revisions: &mut Vec<Revision>, limit: u32) {
    let keep = limit.max(1) as usize;
    if revisions.len() > keep {
        let drop = revisions.len() - keep;
        revisions.drain(..drop);
    }
}

/// The history ConfigMap's name for `tailnet` (the ManagedTailnet resource's name).
pub fn history_config_map_name(tailnet: &str) -> String {
    format!("tailnet-operator-history-{tailnet}")
}

const KEY_PREFIX: &str = "revision-";

/// Revisions in a ConfigMap per tailnet. Writes are `replace` with the read
/// `resourceVersion`, so two writers cannot lose each other's revision (409 → `Conflict`,
/// retried by the next reconcile).
#[derive(Clone)]
pub struct ConfigMapRevisionStore {
    api: Api<ConfigMap>,
    name: String,
}

impl ConfigMapRevisionStore {
    /// `namespace` is the operator's own namespace; `tailnet` the ManagedTailnet resource's name.
    pub fn new(client: kube::Client, namespace: &str, tailnet: &str) -> ConfigMapRevisionStore {
        ConfigMapRevisionStore {
            api: Api::namespaced(client, namespace),
            name: history_config_map_name(tailnet),
        }
    }

    fn decode(&self, map: &ConfigMap) -> Result<Vec<Revision>, ReconcileError> {
        let mut revisions = Vec::new();
        for (key, value) in map.data.iter().flatten() {
            if !key.starts_with(KEY_PREFIX) {
                continue;
            }
            let revision: Revision = serde_json::from_str(value).map_err(|e| {
                ReconcileError::internal(format!(
                    "ConfigMap {}: key {key} is not a revision ({e}); delete the key or the \
                     ConfigMap to reset the history",
                    self.name
                ))
            })?;
            revisions.push(revision);
        }
        revisions.sort_by_key(|r| r.number);
        Ok(revisions)
    }
}

impl RevisionStore for ConfigMapRevisionStore {
    async fn list(&self) -> Result<Vec<Revision>, ReconcileError> {
        match self.api.get_opt(&self.name).await? {
            Some(map) => self.decode(&map),
            None => Ok(Vec::new()),
        }
    }

    async fn append(&self, revision: Revision, limit: u32) -> Result<(), ReconcileError> {
        let existing = self.api.get_opt(&self.name).await?;
        let mut revisions = match &existing {
            Some(map) => self.decode(map)?,
            None => Vec::new(),
        };
        revisions.push(revision);
        prune(&mut revisions, limit);
        let mut data = BTreeMap::new();
        for r in &revisions {
            let json = serde_json::to_string(r)
                .map_err(|e| ReconcileError::internal(format!("encoding a revision: {e}")))?;
            data.insert(format!("{KEY_PREFIX}{}", r.number), json);
        }
        let params = PostParams::default();
        match existing {
            Some(mut map) => {
                // Keep the read resourceVersion: a concurrent writer makes this a 409.
                map.data = Some(data);
                self.api.replace(&self.name, &params, &map).await?;
            }
            None => {
                let map = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_owned(),
                            "tailnet-operator".to_owned(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..ConfigMap::default()
                };
                self.api.create(&params, &map).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revision(number: u32) -> Revision {
        Revision {
            number,
            hash: format!("h{number}"),
            time: Utc::now(),
            sources: BTreeMap::new(),
            access_diff: AccessDiffSummary::default(),
            reason: ApplyReason::SpecChanged,
            text: format!("{{\"n\": {number}}}"),
            rejected_hash: None,
        }
    }

    #[tokio::test]
    async fn memory_store_keeps_the_last_n() {
        let store = InMemoryRevisionStore::new();
        for n in 1..=5 {
            store.append(revision(n), 3).await.unwrap();
        }
        let numbers: Vec<u32> = store
            .list()
            .await
            .unwrap()
            .iter()
            .map(|r| r.number)
            .collect();
        assert_eq!(numbers, vec![3, 4, 5]);
        assert_eq!(store.get(4).await.unwrap().unwrap().hash, "h4");
        assert!(store.get(1).await.unwrap().is_none());
    }

    #[test]
    fn revisions_round_trip_as_json() {
        let r = revision(7);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"accessDiff\""), "{json}");
        assert_eq!(serde_json::from_str::<Revision>(&json).unwrap(), r);
    }
}
