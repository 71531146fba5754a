//! Revision history of a tailnet's composed policy: the last N applied revisions with number,
//! hash, time, source generations and access-diff summary, so a rollback (automatic, or by the
//! `tailnet.ops.dev/rollback-to` annotation) has the exact text to re-apply.
//!
//! Two stores: [`InMemoryRevisionStore`] (tests, file mode: no history across runs) and
//! [`ConfigMapRevisionStore`], one ConfigMap per tailnet in the operator's namespace named
//! `tailnet-operator-history-<tailnet>`:
//! - `data["revision-<n>"]`: the revision as JSON, its texts by reference (`textRef`,
//!   `sourceTextRefs`: SHA-256 of the exact text);
//! - `binaryData["text-<sha256>"]`: each distinct text once, gzip-compressed (a rollback, a pin
//!   and unchanged Fragments share their text with earlier revisions).
//!
//! Kubernetes refuses objects over 1 MiB, so revisions are pruned by count (`historyLimit`) and
//! then, oldest first, until the ConfigMap fits in [`HISTORY_BUDGET_BYTES`]; the newest revision
//! is always kept (its source texts are dropped if even it alone would not fit). ConfigMaps
//! written before texts were stored by reference (`text` inline) are still read.
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
    /// `TailnetPolicy/<name>` → the text of each source as composed into `text`: a source that
    /// later fails (conflict, parse error, failing test, missing ConfigMap) is composed at
    /// this text instead of being dropped (last known good).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_texts: BTreeMap<String, String>,
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
const TEXT_PREFIX: &str = "text-";

/// The most a history ConfigMap's `data` and `binaryData` may take (keys and values, as
/// stored): Kubernetes' limit is 1 MiB per object; the rest is left for metadata.
pub const HISTORY_BUDGET_BYTES: usize = 900 * 1024;

/// A revision as stored: texts by reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredRevision {
    number: u32,
    hash: String,
    time: DateTime<Utc>,
    sources: BTreeMap<String, i64>,
    access_diff: AccessDiffSummary,
    reason: ApplyReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rejected_hash: Option<String>,
    /// SHA-256 of `text`, a `text-<ref>` key of `binaryData`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text_ref: Option<String>,
    /// The text inline: ConfigMaps written by earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    source_text_refs: BTreeMap<String, String>,
}

/// The ConfigMap's `data` and `binaryData` for `revisions`.
#[derive(Debug, Default, PartialEq)]
pub struct EncodedHistory {
    pub data: BTreeMap<String, String>,
    pub binary_data: BTreeMap<String, Vec<u8>>,
}

impl EncodedHistory {
    /// Bytes as Kubernetes counts them: keys plus values, binary values base64-encoded.
    pub fn size(&self) -> usize {
        let data: usize = self.data.iter().map(|(k, v)| k.len() + v.len()).sum();
        let binary: usize = self
            .binary_data
            .iter()
            .map(|(k, v)| k.len() + v.len().div_ceil(3) * 4)
            .sum();
        data + binary
    }
}

fn text_ref(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(text.as_bytes());
    encoder.finish().unwrap_or_default()
}

fn gunzip(bytes: &[u8]) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut text)?;
    Ok(text)
}

/// Compressed texts by reference, each compressed once however often pruning re-measures.
#[derive(Default)]
struct Texts(BTreeMap<String, Vec<u8>>);

impl Texts {
    fn add(&mut self, text: &str) -> String {
        let reference = text_ref(text);
        self.0
            .entry(reference.clone())
            .or_insert_with(|| gzip(text));
        reference
    }
}

/// One revision's record and the texts it refers to.
struct Record {
    key: String,
    json: String,
    refs: Vec<String>,
}

fn record(r: &Revision, texts: &mut Texts) -> Result<Record, ReconcileError> {
    let text_ref = texts.add(&r.text);
    let source_text_refs: BTreeMap<String, String> = r
        .source_texts
        .iter()
        .map(|(name, text)| (name.clone(), texts.add(text)))
        .collect();
    let mut refs: Vec<String> = source_text_refs.values().cloned().collect();
    refs.push(text_ref.clone());
    let stored = StoredRevision {
        number: r.number,
        hash: r.hash.clone(),
        time: r.time,
        sources: r.sources.clone(),
        access_diff: r.access_diff.clone(),
        reason: r.reason,
        rejected_hash: r.rejected_hash.clone(),
        text_ref: Some(text_ref),
        text: None,
        source_text_refs,
    };
    let json = serde_json::to_string(&stored)
        .map_err(|e| ReconcileError::internal(format!("encoding a revision: {e}")))?;
    Ok(Record {
        key: format!("{KEY_PREFIX}{}", r.number),
        json,
        refs,
    })
}

fn assemble(records: &[Record], texts: &Texts) -> EncodedHistory {
    let mut out = EncodedHistory::default();
    for r in records {
        out.data.insert(r.key.clone(), r.json.clone());
        for reference in &r.refs {
            out.binary_data
                .entry(format!("{TEXT_PREFIX}{reference}"))
                .or_insert_with(|| texts.0[reference].clone());
        }
    }
    out
}

/// Bytes of `records` once stored (see [`EncodedHistory::size`]), without assembling them.
fn stored_size(records: &[Record], texts: &Texts) -> usize {
    let mut refs = std::collections::BTreeSet::new();
    let mut size = 0;
    for r in records {
        size += r.key.len() + r.json.len();
        refs.extend(r.refs.iter());
    }
    size + refs
        .iter()
        .map(|reference| {
            TEXT_PREFIX.len() + reference.len() + texts.0[*reference].len().div_ceil(3) * 4
        })
        .sum::<usize>()
}

/// Encodes `revisions`, each distinct text once.
pub fn encode(revisions: &[Revision]) -> Result<EncodedHistory, ReconcileError> {
    let mut texts = Texts::default();
    let records = revisions
        .iter()
        .map(|r| record(r, &mut texts))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(assemble(&records, &texts))
}

/// Keeps the last `limit` revisions, then drops the oldest until the encoding fits in
/// `budget` bytes. The newest is always kept; if it alone does not fit, without its source
/// texts; if it still does not fit, that is an error naming the sizes.
pub fn fit(
    mut revisions: Vec<Revision>,
    limit: u32,
    budget: usize,
) -> Result<(Vec<Revision>, EncodedHistory), ReconcileError> {
    prune(&mut revisions, limit);
    let mut texts = Texts::default();
    let mut records = revisions
        .iter()
        .map(|r| record(r, &mut texts))
        .collect::<Result<Vec<_>, _>>()?;
    while records.len() > 1 && stored_size(&records, &texts) > budget {
        records.remove(0);
        revisions.remove(0);
    }
    if stored_size(&records, &texts) > budget {
        let newest = revisions.last_mut().expect("the newest revision");
        newest.source_texts.clear();
        records = vec![record(newest, &mut texts)?];
        let size = stored_size(&records, &texts);
        if size > budget {
            return Err(ReconcileError::internal(format!(
                "revision {} takes {size} bytes compressed, over the history budget of \
                 {budget} bytes (Kubernetes objects are limited to 1 MiB): the policy is too \
                 large to keep a history of",
                newest.number
            )));
        }
    }
    let encoded = assemble(&records, &texts);
    Ok((revisions, encoded))
}

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
        decode(&self.name, map)
    }
}

/// The revisions of a history ConfigMap named `name`, oldest first.
pub fn decode(name: &str, map: &ConfigMap) -> Result<Vec<Revision>, ReconcileError> {
    let broken = |key: &str, what: String| {
        ReconcileError::internal(format!(
            "ConfigMap {name}: key {key} {what}; delete the key or the ConfigMap to reset the \
             history"
        ))
    };
    let texts = map.binary_data.clone().unwrap_or_default();
    let text = |key: &str, reference: &str| -> Result<String, ReconcileError> {
        let bytes = texts
            .get(&format!("{TEXT_PREFIX}{reference}"))
            .ok_or_else(|| broken(key, format!("refers to a missing text {reference}")))?;
        gunzip(&bytes.0).map_err(|e| broken(key, format!("refers to an unreadable text ({e})")))
    };
    let mut revisions = Vec::new();
    for (key, value) in map.data.iter().flatten() {
        if !key.starts_with(KEY_PREFIX) {
            continue;
        }
        let stored: StoredRevision = serde_json::from_str(value)
            .map_err(|e| broken(key, format!("is not a revision ({e})")))?;
        let body = match (&stored.text, &stored.text_ref) {
            (Some(inline), _) => inline.clone(),
            (None, Some(reference)) => text(key, reference)?,
            (None, None) => return Err(broken(key, "has no text".to_owned())),
        };
        let mut source_texts = BTreeMap::new();
        for (source, reference) in &stored.source_text_refs {
            source_texts.insert(source.clone(), text(key, reference)?);
        }
        revisions.push(Revision {
            number: stored.number,
            hash: stored.hash,
            time: stored.time,
            sources: stored.sources,
            access_diff: stored.access_diff,
            reason: stored.reason,
            text: body,
            rejected_hash: stored.rejected_hash,
            source_texts,
        });
    }
    revisions.sort_by_key(|r| r.number);
    Ok(revisions)
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
        let (kept, encoded) = fit(revisions, limit, HISTORY_BUDGET_BYTES)?;
        tracing::debug!(
            history = %self.name,
            revisions = kept.len(),
            bytes = encoded.size(),
            "policy history written"
        );
        let binary_data = encoded
            .binary_data
            .into_iter()
            .map(|(k, v)| (k, k8s_openapi::ByteString(v)))
            .collect();
        let params = PostParams::default();
        match existing {
            Some(mut map) => {
                // Keep the read resourceVersion: a concurrent writer makes this a 409.
                map.data = Some(encoded.data);
                map.binary_data = Some(binary_data);
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
                    data: Some(encoded.data),
                    binary_data: Some(binary_data),
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
            source_texts: BTreeMap::new(),
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

    /// A realistic policy of about `bytes` bytes, different per `seed`: groups of users and
    /// grants between tags, as large tailnets write them.
    fn big_policy(seed: u32, bytes: usize) -> String {
        let mut text = format!("// revision {seed}\n{{\n  \"groups\": {{\n");
        let mut i = 0;
        while text.len() < bytes - 200 {
            text.push_str(&format!(
                "    \"group:team-{i}\": [\"user{}@example.com\", \"user{}@example.com\"],\n",
                (i * 7 + seed) % 5000,
                (i * 13 + seed) % 5000
            ));
            i += 1;
        }
        text.push_str("  },\n}\n");
        text
    }

    fn map_of(encoded: &EncodedHistory) -> ConfigMap {
        ConfigMap {
            data: Some(encoded.data.clone()),
            binary_data: Some(
                encoded
                    .binary_data
                    .iter()
                    .map(|(k, v)| (k.clone(), k8s_openapi::ByteString(v.clone())))
                    .collect(),
            ),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn the_history_of_100_revisions_of_a_512_kib_policy_fits_in_one_object() {
        const KIB_512: usize = 512 * 1024;
        let mut revisions = Vec::new();
        for n in 1..=crate::resources::tailnet_policy::MAX_HISTORY_LIMIT {
            let mut r = revision(n);
            r.text = big_policy(n, KIB_512);
            r.source_texts = BTreeMap::from([("TailnetPolicy/base".to_owned(), r.text.clone())]);
            revisions.push(r);
        }
        assert_eq!(revisions.last().unwrap().text.len() / 1024, 511);
        let (kept, encoded) = fit(
            revisions.clone(),
            crate::resources::tailnet_policy::MAX_HISTORY_LIMIT,
            HISTORY_BUDGET_BYTES,
        )
        .unwrap();
        println!(
            "{} of 100 revisions of a 512 KiB policy kept in {} bytes",
            kept.len(),
            encoded.size()
        );
        assert!(encoded.size() <= HISTORY_BUDGET_BYTES, "{}", encoded.size());
        assert!(encoded.size() < 1024 * 1024);
        // Pruned by size, oldest first; the newest with its source texts.
        assert!(kept.len() > 1 && kept.len() < 100, "{} kept", kept.len());
        assert_eq!(kept.last().unwrap().number, 100);
        assert_eq!(kept.last().unwrap().source_texts.len(), 1);
        // Read back exactly.
        let decoded = decode("h", &map_of(&encoded)).unwrap();
        assert_eq!(decoded, kept);
        // The Base text equal to the composed text is stored once per revision, not twice.
        assert_eq!(encoded.binary_data.len(), kept.len());
    }

    #[test]
    fn a_text_too_large_even_compressed_drops_source_texts_then_fails_clearly() {
        let mut rng = fastrand::Rng::with_seed(7);
        let noise: String = (0..200_000).map(|_| rng.alphanumeric()).collect();
        let mut r = revision(1);
        r.text = noise.clone();
        r.source_texts = BTreeMap::from([("TailnetPolicy/team".to_owned(), noise.clone() + "x")]);
        let (kept, _) = fit(vec![r.clone()], 10, 300_000).unwrap();
        assert!(
            kept[0].source_texts.is_empty(),
            "source texts dropped to fit"
        );
        let err = fit(vec![r], 10, 1_000).unwrap_err().to_string();
        assert!(err.contains("too large to keep a history"), "{err}");
    }

    #[test]
    fn shared_texts_are_stored_once_and_old_inline_revisions_still_read() {
        let mut a = revision(1);
        let mut b = revision(2);
        b.text = a.text.clone();
        a.source_texts = BTreeMap::from([("TailnetPolicy/base".to_owned(), "{}".to_owned())]);
        b.source_texts = a.source_texts.clone();
        let encoded = encode(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(encoded.binary_data.len(), 2, "two distinct texts");
        assert_eq!(decode("h", &map_of(&encoded)).unwrap(), vec![a, b]);

        let inline = revision(3);
        let old = ConfigMap {
            data: Some(BTreeMap::from([(
                "revision-3".to_owned(),
                serde_json::to_string(&inline).unwrap(),
            )])),
            ..ConfigMap::default()
        };
        assert_eq!(decode("h", &old).unwrap(), vec![inline]);
    }

    #[test]
    fn revisions_round_trip_as_json() {
        let r = revision(7);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"accessDiff\""), "{json}");
        assert_eq!(serde_json::from_str::<Revision>(&json).unwrap(), r);
    }
}
