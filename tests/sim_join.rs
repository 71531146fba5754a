//! A node joining the simulated tailnet with an auth key, as `tailscaled --authkey` would:
//! what a proxy Deployment does when its pod starts (tests stand in for the pod).
mod support;

use std::time::Duration;

use support::client::{api_key_client, start_sim};
use tailnet_operator::tailscale::CreateAuthKeyRequest;

fn request(reusable: bool, preauthorized: bool) -> CreateAuthKeyRequest {
    CreateAuthKeyRequest {
        reusable,
        preauthorized,
        tags: vec!["tag:server".into()],
        expiry_seconds: Some(3600),
        description: Some("join test".into()),
        ..CreateAuthKeyRequest::default()
    }
}

#[tokio::test]
async fn a_single_use_key_joins_one_node_with_its_tags_and_is_consumed() {
    let sim = start_sim().await;
    let client = api_key_client(&sim);
    let created = client.create_auth_key(&request(false, true)).await.unwrap();
    let node = sim
        .tailnet()
        .node_join(created.secret.expose(), "funnel-proxy")
        .unwrap();
    let device = sim.tailnet().device(&node).unwrap();
    assert_eq!(device["hostname"], "funnel-proxy");
    assert_eq!(device["tags"], serde_json::json!(["tag:server"]));
    assert_eq!(device["authorized"], true, "pre-authorized");
    // Consumed: a second join is refused, and the key is no longer listed as valid.
    let again = sim
        .tailnet()
        .node_join(created.secret.expose(), "funnel-proxy-2")
        .unwrap_err();
    assert_eq!(again.status, 401);
    assert!(again.message.contains("used"), "{}", again.message);
    let listed = client.list_keys(true).await.unwrap();
    assert!(listed.iter().all(|k| k.id != created.key.id));
}

#[tokio::test]
async fn reusable_revoked_expired_and_unknown_keys() {
    let sim = start_sim().await;
    let client = api_key_client(&sim);
    let reusable = client.create_auth_key(&request(true, false)).await.unwrap();
    for host in ["ci-1", "ci-2"] {
        sim.tailnet()
            .node_join(reusable.secret.expose(), host)
            .unwrap();
    }
    let revoked = client.create_auth_key(&request(true, true)).await.unwrap();
    client.delete_key(&revoked.key.id).await.unwrap();
    assert_eq!(
        sim.tailnet()
            .node_join(revoked.secret.expose(), "x")
            .unwrap_err()
            .status,
        401
    );
    let expiring = client.create_auth_key(&request(true, true)).await.unwrap();
    sim.tailnet().advance_clock(Duration::from_secs(2 * 3600));
    assert_eq!(
        sim.tailnet()
            .node_join(expiring.secret.expose(), "x")
            .unwrap_err()
            .status,
        401
    );
    let unknown = sim.tailnet().node_join("tskey-auth-nope", "x").unwrap_err();
    assert!(unknown.message.contains("unknown"), "{}", unknown.message);
}
