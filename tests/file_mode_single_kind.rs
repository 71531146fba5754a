//! File mode runs every kind on its own: a folder holding one kind (and its ManagedTailnet) is
//! planned and applied like the whole examples folder, with the tailnet's calls counted. Before
//! the kind seam, a folder with only DeviceTagSets printed `tailnet default`, made no API call
//! and exited 0.
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::client::*;
use tailnet_operator::file_mode;
use tailnet_operator::sim::SimServer;
use tailnet_operator::snapshot::TailnetSnapshots;

const POST_TAGS: &str = "POST /api/v2/device/{deviceId}/tags";
const POST_ROUTES: &str = "POST /api/v2/device/{deviceId}/routes";
const POST_DNS: &str = "POST /api/v2/tailnet/{tailnet}/dns/configuration";
const POST_ACL: &str = "POST /api/v2/tailnet/{tailnet}/acl";

/// A fresh folder with copies of the named files of `examples/`.
fn folder_of(name: &str, examples: &[&str]) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let dir = std::env::temp_dir().join(format!(
        "tailnet-operator-single-kind-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in examples {
        std::fs::copy(root.join(file), dir.join(file)).unwrap();
    }
    dir
}

fn fresh(server: &SimServer) -> TailnetSnapshots {
    TailnetSnapshots::new(client(api_key_config(server)), Duration::from_secs(300))
}

#[tokio::test]
async fn device_tag_sets_alone_are_planned_and_applied() {
    let server = start_sim().await;
    let dir = folder_of("dts", &["tailnet.yaml", "device-tag-set.yaml"]);
    let manifests = file_mode::load(&dir).unwrap();
    assert_eq!(manifests.tailnet(&dir).unwrap(), "default");

    let plan = file_mode::plan_manifests(&manifests, &fresh(&server))
        .await
        .unwrap();
    assert!(plan.changes, "a plan with device changes:\n{}", plan.output);
    assert!(!plan.failed, "{}", plan.output);
    assert!(
        plan.output.contains("devices: would write 3 devices"),
        "{}",
        plan.output
    );
    let calls = server.tailnet().calls();
    assert_eq!(
        calls.get(POST_TAGS) + calls.get(POST_ROUTES),
        0,
        "plan writes nothing"
    );

    let applied = file_mode::apply_manifests(&manifests, &fresh(&server))
        .await
        .unwrap();
    assert!(applied.changes && !applied.failed, "{}", applied.output);
    let calls = server.tailnet().calls();
    assert_eq!(calls.get(POST_TAGS), 2, "{}", applied.output);
    assert_eq!(calls.get(POST_ROUTES), 1, "{}", applied.output);
    assert_eq!(calls.get(POST_ACL), 0, "no policy under PATH: none written");

    let again = file_mode::plan_manifests(&manifests, &fresh(&server))
        .await
        .unwrap();
    assert!(!again.changes, "converged:\n{}", again.output);
}

#[tokio::test]
async fn a_dns_config_alone_is_planned_and_applied() {
    let server = start_sim().await;
    let dir = folder_of("dns", &["tailnet.yaml", "dns-config.yaml"]);
    let manifests = file_mode::load(&dir).unwrap();

    let plan = file_mode::plan_manifests(&manifests, &fresh(&server))
        .await
        .unwrap();
    assert!(plan.changes, "{}", plan.output);
    assert!(
        plan.output
            .contains("DNSConfig/default: would write the tailnet's DNS"),
        "{}",
        plan.output
    );
    assert_eq!(
        server.tailnet().calls().get(POST_DNS),
        0,
        "plan writes nothing"
    );

    let applied = file_mode::apply_manifests(&manifests, &fresh(&server))
        .await
        .unwrap();
    assert!(!applied.failed, "{}", applied.output);
    assert_eq!(server.tailnet().calls().get(POST_DNS), 1);
    assert_eq!(server.tailnet().calls().get(POST_ACL), 0);
}

#[test]
fn the_binary_exits_2_on_a_plan_of_one_kind_and_0_once_applied() {
    for (name, files) in [
        ("bin-dts", ["tailnet.yaml", "device-tag-set.yaml"]),
        ("bin-dns", ["tailnet.yaml", "dns-config.yaml"]),
    ] {
        let dir = folder_of(name, &files);
        let path = dir.to_str().unwrap();
        // Each run is its own process with its own embedded simulated tailnet: a plan of the
        // fresh demo tailnet has changes, and an apply of it converges.
        let (code, stdout, stderr) = run_binary(&["plan", "-f", path]);
        assert_eq!(code, 2, "{name}: plan\n{stdout}{stderr}");
        assert!(
            stdout.starts_with(
                "tailnet default: the embedded simulated tailnet (demo data, not your tailnet)\n"
            ),
            "{stdout}"
        );
        let (code, stdout, stderr) = run_binary(&["apply", "-f", path]);
        assert_eq!(code, 0, "{name}: apply\n{stdout}{stderr}");
        assert!(stdout.contains("Ready=True"), "{name}: {stdout}");
    }
}

/// Kinds run in the stated order: the policy before the devices that get its tags, then DNS.
#[tokio::test]
async fn kinds_run_policy_first_then_devices_then_dns() {
    let server = start_sim().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let manifests = file_mode::load(&root).unwrap();
    let report = file_mode::apply_manifests(&manifests, &fresh(&server))
        .await
        .unwrap();
    let at = |needle: &str| {
        report
            .output
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} in\n{}", report.output))
    };
    assert!(at("policy: ") < at("devices: "), "{}", report.output);
    assert!(at("devices: ") < at("dns: "), "{}", report.output);
}

/// The ManagedTailnet's `spec.suspend` suspends every resource of the tailnet in file mode as
/// in a cluster: everything is planned and reported, nothing is written.
#[tokio::test]
async fn a_suspended_tailnet_is_observed_and_nothing_is_written() {
    let server = start_sim().await;
    let dir = folder_of(
        "suspended",
        &[
            "tailnet.yaml",
            "policy-base.yaml",
            "policy-fragment-team.yaml",
            "device-tag-set.yaml",
            "dns-config.yaml",
        ],
    );
    let tailnet = dir.join("tailnet.yaml");
    let text = std::fs::read_to_string(&tailnet).unwrap();
    std::fs::write(
        &tailnet,
        text.replace("\nspec:\n", "\nspec:\n  suspend: true\n"),
    )
    .unwrap();
    let mut manifests = file_mode::load(&dir).unwrap();
    assert!(manifests.apply_tailnet_suspension("default"));

    let report = file_mode::apply_manifests(&manifests, &fresh(&server))
        .await
        .unwrap();
    let writes = server.tailnet().calls().total_for_method("POST");
    assert_eq!(writes, 0, "nothing written:\n{}", report.output);
    assert!(!report.changes, "{}", report.output);
    for resource in [
        "TailnetPolicy/base",
        "DeviceTagSet/prod-web-monitoring",
        "DNSConfig/default",
    ] {
        let at = report.output.find(resource).unwrap_or_else(|| {
            panic!("{resource} reported:\n{}", report.output);
        });
        assert!(
            report.output[at..].contains("Ready=False Suspended"),
            "{resource}:\n{}",
            report.output
        );
    }
}

/// One API failure does not hide the rest: the policy's write fails (a 500 on every attempt),
/// the DNS is still applied, the DeviceTagSets (whose tags the policy owns) say they wait for
/// it, every resource has a line, and the run is failed (exit 1).
#[tokio::test]
async fn a_failing_policy_write_leaves_the_dns_applied_and_every_resource_reported() {
    use tailnet_operator::sim::FaultRule;
    let server = start_sim().await;
    server
        .tailnet()
        .set_fault(FaultRule::route(POST_ACL).server_error(500));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let manifests = file_mode::load(&root).unwrap();
    let report = file_mode::apply_manifests(&manifests, &fresh(&server))
        .await
        .unwrap();
    assert!(report.failed, "{}", report.output);
    assert!(
        report.output.contains("TailnetPolicy: error:"),
        "{}",
        report.output
    );
    assert!(
        report
            .output
            .contains("DeviceTagSet: not run: it waits for the TailnetPolicy step, which failed"),
        "{}",
        report.output
    );
    assert!(
        report.output.contains("DNSConfig/default:\n  Ready=True"),
        "{}",
        report.output
    );
    let calls = server.tailnet().calls();
    assert_eq!(calls.get(POST_DNS), 1, "the DNS is applied");
    assert_eq!(
        calls.get(POST_TAGS) + calls.get(POST_ROUTES),
        0,
        "no device written"
    );
}
