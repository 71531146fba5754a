//! The executor: the plan's device writes through the Tailscale client, a few at a time, each
//! recorded in the snapshot cache (`record_write(Area::Devices)`), so the next read sees them.
use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;

use super::plan::{DeviceChange, Field, TagSetPlan};
use crate::resources::ReconcileError;
use crate::snapshot::{Area, TailnetSnapshots};
use crate::tailscale::{ApiError, TailscaleClient};

/// Devices written concurrently. The client's rate limit still applies to every request.
pub const WRITE_CONCURRENCY: usize = 8;

/// What executing a plan did.
#[derive(Debug, Default)]
pub struct TagSetExecuted {
    /// Node ids of the devices whose every planned write succeeded.
    pub written: BTreeSet<String>,
    /// Node id → the write that failed (later fields of that device were not attempted).
    pub failures: BTreeMap<String, DeviceFailure>,
    /// API writes made (successful or not).
    pub writes: usize,
}

/// A failed device write.
#[derive(Debug, Clone)]
pub struct DeviceFailure {
    pub hostname: String,
    pub field: Field,
    pub error: ApiError,
}

impl DeviceFailure {
    /// The failure as a reconcile error whose message names the cause and the fix. A refused
    /// tag (HTTP 400 "requested tags [...] are invalid or not permitted") names the tags and
    /// says to add them to the Base TailnetPolicy's `tagOwners`.
    pub fn to_error(&self) -> ReconcileError {
        if self.field == Field::Tags && is_tag_refusal(&self.error) {
            let tags = refused_tags(&self.error.message);
            return ReconcileError::invalid(
                "spec.tags",
                format!(
                    "the tailnet refused tag {tags} on device {}: a tag must be defined in the \
                     policy's tagOwners and owned by the operator's credentials; add {tags} to \
                     tagOwners in the Base TailnetPolicy (Tailscale answered: {})",
                    self.hostname, self.error.message
                ),
            );
        }
        ReconcileError::Api(self.error.clone())
    }
}

fn is_tag_refusal(error: &ApiError) -> bool {
    error.status == Some(400) && error.message.contains("invalid or not permitted")
}

/// The tags between the brackets of "requested tags [tag:a tag:b] are ...", else the message.
fn refused_tags(message: &str) -> String {
    message
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(tags, _)| {
            tags.split([' ', ','])
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|tags| !tags.is_empty())
        .map(|tags| tags.join(", "))
        .unwrap_or_else(|| "(see the message)".to_owned())
}

/// Writes every change of `plan` through the snapshots' client. Never fails as a whole: each
/// device's failure is in the report, so one bad device does not hold up the others.
pub async fn execute(plan: &TagSetPlan, snapshots: &TailnetSnapshots) -> TagSetExecuted {
    execute_with_progress(plan, snapshots, &|_, _| {}).await
}

/// [`execute`], calling `progress(done, total)` as each device's writes finish (file mode
/// shows "writing N of M" on a terminal).
pub async fn execute_with_progress(
    plan: &TagSetPlan,
    snapshots: &TailnetSnapshots,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> TagSetExecuted {
    let total = plan.changes.len();
    // Owned futures (a clone of the client and of each change each): a stream of futures
    // borrowing from the plan is not `Send` for every lifetime the controller needs.
    let writes: Vec<_> = plan
        .changes
        .iter()
        .cloned()
        .map(|change| {
            let client = snapshots.client().clone();
            async move {
                let (writes, result) = apply(&client, &change).await;
                (change.node_id, writes, result)
            }
        })
        .collect();
    let mut done = 0;
    let results: Vec<(String, usize, Result<(), DeviceFailure>)> = futures::stream::iter(writes)
        .buffer_unordered(WRITE_CONCURRENCY)
        .inspect(|_| {
            done += 1;
            progress(done, total);
        })
        .collect()
        .await;
    let mut report = TagSetExecuted::default();
    for (node_id, writes, result) in results {
        report.writes += writes;
        match result {
            Ok(()) => {
                report.written.insert(node_id);
            }
            Err(failure) => {
                report.failures.insert(node_id, failure);
            }
        }
    }
    if report.writes > 0 {
        snapshots.record_write(Area::Devices);
    }
    report
}

/// One device's writes, in a fixed order (tags first: they decide ownership); stops at the
/// first failure. Returns the writes attempted.
async fn apply(
    client: &TailscaleClient,
    change: &DeviceChange,
) -> (usize, Result<(), DeviceFailure>) {
    let id = change.node_id.as_str();
    let mut writes = 0;
    let fail = |field: Field, error: ApiError| DeviceFailure {
        hostname: change.hostname.clone(),
        field,
        error,
    };
    if let Some(tags) = &change.tags {
        writes += 1;
        if let Err(e) = client.set_device_tags(id, tags).await {
            return (writes, Err(fail(Field::Tags, e)));
        }
    }
    if let Some(authorized) = change.authorized {
        writes += 1;
        if let Err(e) = client.set_device_authorized(id, authorized).await {
            return (writes, Err(fail(Field::Authorized, e)));
        }
    }
    if let Some(disabled) = change.key_expiry_disabled {
        writes += 1;
        if let Err(e) = client.set_device_key_expiry_disabled(id, disabled).await {
            return (writes, Err(fail(Field::KeyExpiryDisabled, e)));
        }
    }
    if let Some(routes) = &change.routes {
        writes += 1;
        if let Err(e) = client.set_device_routes(id, routes).await {
            return (writes, Err(fail(Field::Routes, e)));
        }
    }
    (writes, Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Category;

    #[test]
    fn a_refused_tag_names_the_tag_and_the_fix() {
        let mut error = ApiError::new(
            Category::Invalid,
            "POST /device/{deviceId}/tags",
            "requested tags [tag:nobody] are invalid or not permitted",
        );
        error.status = Some(400);
        let failure = DeviceFailure {
            hostname: "web-1".into(),
            field: Field::Tags,
            error,
        };
        let message = failure.to_error().to_string();
        assert!(message.contains("tag:nobody"), "{message}");
        assert!(message.contains("Base TailnetPolicy"), "{message}");
        assert!(message.starts_with("invalid spec: spec.tags"), "{message}");
        assert_eq!(
            refused_tags("requested tags [tag:a tag:b] are"),
            "tag:a, tag:b"
        );
    }
}
