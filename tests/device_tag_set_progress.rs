//! The DeviceTagSet executor reports its progress device by device (file mode shows "writing N
//! of M devices" on a terminal), against the simulated tailnet over HTTP.
mod support;

use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use support::client::*;
use tailnet_operator::reconcile::device_tag_set::{
    TagSetInput, execute_with_progress, observe_and_plan,
};
use tailnet_operator::sim::SimConfig;
use tailnet_operator::snapshot::TailnetSnapshots;

#[tokio::test]
async fn every_device_written_is_counted_once_up_to_the_total() {
    let server = start_sim_with(SimConfig {
        devices: 60,
        ..SimConfig::default()
    })
    .await;
    let snapshots =
        TailnetSnapshots::new(client(api_key_config(&server)), Duration::from_secs(300));
    let set = TagSetInput {
        name: "servers".into(),
        generation: Some(1),
        spec: serde_json::from_value(json!({
            "selector": {"tags": ["tag:server"]},
            "tags": ["tag:server", "tag:monitoring"],
        }))
        .unwrap(),
        applied: None,
        matched_before: None,
        removing: false,
    };
    let plan = observe_and_plan(&[set], &snapshots).await.unwrap();
    let total = plan.changes.len();
    assert!(total > 3, "some servers need the tag: {total}");

    let calls = Mutex::new(Vec::new());
    let report = execute_with_progress(&plan, &snapshots, &|done, of| {
        calls.lock().unwrap().push((done, of));
    })
    .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.written.len(), total);
    let calls = calls.into_inner().unwrap();
    let expected: Vec<(usize, usize)> = (1..=total).map(|n| (n, total)).collect();
    assert_eq!(calls, expected);
}
