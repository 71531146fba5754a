//! File mode with DeviceTagSets: `examples/device-tag-set.yaml` converges against a simulated
//! tailnet, a second apply writes nothing, and `plan` lists the device writes it would make.
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::client::*;
use tailnet_operator::file_mode;
use tailnet_operator::snapshot::TailnetSnapshots;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn device_writes(server: &tailnet_operator::sim::SimServer) -> u64 {
    let calls = server.tailnet().calls();
    ["tags", "authorized", "key", "routes"]
        .iter()
        .map(|what| calls.get(&format!("POST /api/v2/device/{{deviceId}}/{what}")))
        .sum()
}

#[tokio::test]
async fn the_example_sets_converge_and_a_second_apply_writes_no_device() {
    let server = start_sim().await;
    let manifests = file_mode::load(&examples()).unwrap();
    assert_eq!(
        manifests
            .of::<tailnet_operator::resources::DeviceTagSet>()
            .len(),
        2
    );
    let fresh = || TailnetSnapshots::new(client(api_key_config(&server)), Duration::from_secs(300));

    let plan = file_mode::plan_manifests(&manifests, &fresh())
        .await
        .unwrap();
    assert!(plan.changes, "{}", plan.output);
    assert!(
        plan.output.contains("devices: would write 3 devices"),
        "{}",
        plan.output
    );
    assert!(
        plan.output
            .contains("routes = [10.10.0.0/16, 10.20.0.0/16, 192.168.50.0/24]"),
        "{}",
        plan.output
    );
    assert_eq!(device_writes(&server), 0, "plan writes nothing");

    let first = file_mode::apply_manifests(&manifests, &fresh())
        .await
        .unwrap();
    assert!(!first.failed, "{}", first.output);
    let written = device_writes(&server);
    eprintln!(
        "apply -f examples/: {written} device writes\n{}",
        first.output
    );
    // prod-web-1/2: tag:monitoring (their key expiry is already disabled); subnet-router-1:
    // the waiting route.
    assert_eq!(written, 3);

    let second = file_mode::apply_manifests(&manifests, &fresh())
        .await
        .unwrap();
    assert!(!second.failed, "{}", second.output);
    assert!(!second.changes, "{}", second.output);
    assert_eq!(
        device_writes(&server),
        written,
        "the second apply writes nothing"
    );
    let plan = file_mode::plan_manifests(&manifests, &fresh())
        .await
        .unwrap();
    assert!(
        plan.output.contains("devices: no changes"),
        "{}",
        plan.output
    );
    assert!(!plan.changes, "{}", plan.output);
}
