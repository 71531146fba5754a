//! `mcp --manifests`: every kind in the checkout is listed with the status its own planner gives
//! it against the live tailnet (here the embedded simulated tailnet), not only TailnetPolicies.
use std::path::Path;

use serde_json::Value;
use tailnet_operator::cli::ConnectionArgs;
use tailnet_operator::mcp::local::Source;
use tailnet_operator::mcp::manifests_source::ManifestsSource;

fn no_credentials() -> ConnectionArgs {
    ConnectionArgs {
        // Asked for explicitly, as a pipeline must (the tests run with CI set in CI).
        simulated: true,
        ..ConnectionArgs::unset()
    }
}

fn ready(resource: &Value) -> Option<(String, String)> {
    resource["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

#[tokio::test]
async fn dns_configs_and_device_tag_sets_carry_their_planned_status() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let proposals = std::env::temp_dir().join(format!("mcp-status-{}", std::process::id()));
    let source = ManifestsSource::open(&examples, &proposals, &no_credentials())
        .await
        .expect("examples open against the embedded simulated tailnet");
    let resources = source.resources().await.expect("resources listed");

    for kind in ["TailnetPolicy", "DNSConfig", "DeviceTagSet"] {
        let of_kind: Vec<&Value> = resources.iter().filter(|r| r["kind"] == kind).collect();
        assert!(!of_kind.is_empty(), "examples/ has a {kind}");
        for resource in of_kind {
            let (status, reason) = ready(resource)
                .unwrap_or_else(|| panic!("{kind} listed without a Ready condition: {resource}"));
            // Nothing was applied to the fresh simulated tailnet: each resource's planner says
            // a change is pending, and none says it is Ready.
            assert_ne!(status, "True", "{kind}: {resource}");
            assert_eq!(reason, "Pending", "{kind}: {resource}");
        }
    }
}

#[tokio::test]
async fn a_tailscale_service_shows_its_planned_service_and_contributed_grant() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let proposals = std::env::temp_dir().join(format!("mcp-svc-{}", std::process::id()));
    let source = ManifestsSource::open(&examples, &proposals, &no_credentials())
        .await
        .expect("examples open against the embedded simulated tailnet");
    let resources = source.resources().await.expect("resources listed");
    let service = resources
        .iter()
        .find(|r| r["kind"] == "TailscaleService")
        .expect("examples/ has a TailscaleService");
    assert_eq!(service["metadata"]["namespace"], "monitoring");
    // Not created yet in the fresh simulated tailnet: pending, with what it will contribute.
    assert_eq!(
        ready(service),
        Some(("False".to_owned(), "Pending".to_owned()))
    );
    assert_eq!(service["status"]["serviceName"], "svc:grafana-eng");
    let policy = service["status"]["policy"].as_array().unwrap();
    assert!(
        policy[0]
            .as_str()
            .unwrap()
            .contains("\"dst\":[\"svc:grafana-eng\"]"),
        "{policy:?}"
    );
}
