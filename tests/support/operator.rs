//! The usual setup of a test that runs the real controllers: the simulated tailnet, a Secret
//! with its API key, a `ManagedTailnet` using it, and a [`Manager`] on the fake API server. Each
//! controller test used to carry its own copy of these.
#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use serde_json::json;
use tailnet_operator::controller::change_proposal::DEFAULT_PROPOSAL_TTL;
use tailnet_operator::controller::{Manager, RunConfig};
use tailnet_operator::resources::ManagedTailnet;
use tailnet_operator::sim::SimServer;

use super::fake_kube::{FakeKube, Gvr};

/// The operator's namespace (Lease, revision history, the credentials Secret).
pub const NAMESPACE: &str = "tailnet-system";
/// The `ManagedTailnet` resource every test resource points at.
pub const TAILNET: &str = "home";
/// The Secret holding the simulated tailnet's API key.
pub const SECRET: &str = "ts-key";

/// The simulated tailnet with its default seed (29 devices).
pub async fn sim() -> SimServer {
    super::client::start_sim().await
}

/// One replica without leader election, metrics on a free loopback port.
pub fn run_config() -> RunConfig {
    RunConfig {
        namespace: NAMESPACE.to_owned(),
        identity: "op-0".to_owned(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        proposal_ttl: DEFAULT_PROPOSAL_TTL,
        clock: tailnet_operator::snapshot::WallClock::system(),
        leader_election: None,
        webhook_listen: None,
        webhook_tolerance: tailnet_operator::webhook::DEFAULT_TOLERANCE,
    }
}

pub async fn start_manager(fake: &FakeKube, config: RunConfig) -> Manager {
    Manager::start(fake.client(), config)
        .await
        .expect("manager starts")
}

/// A Secret with the sim's API key and a ManagedTailnet using it.
pub fn connect_tailnet(fake: &FakeKube, sim: &SimServer) {
    connect_named(fake, sim, TAILNET, SECRET);
}

/// A ManagedTailnet `name` connected to `sim` through Secret `secret` (another tailnet of the
/// same cluster).
pub fn connect_named(fake: &FakeKube, sim: &SimServer, name: &str, secret_name: &str) {
    let mut secret = KubeSecret::default();
    secret.metadata.name = Some(secret_name.to_owned());
    secret.metadata.namespace = Some(NAMESPACE.to_owned());
    let key = sim.tailnet().credentials().api_key.expose().to_owned();
    secret.data = Some(BTreeMap::from([(
        "api_key".to_owned(),
        ByteString(key.into_bytes()),
    )]));
    let mut manifest = serde_json::to_value(secret).unwrap();
    manifest["apiVersion"] = json!("v1");
    manifest["kind"] = json!("Secret");
    fake.apply(&Gvr::of::<KubeSecret>(), manifest)
        .expect("secret applied");
    fake.create(
        &Gvr::of::<ManagedTailnet>(),
        json!({
            "apiVersion": "tailnet.ops.dev/v1alpha1",
            "kind": "ManagedTailnet",
            "metadata": {"name": name},
            "spec": {
                "tailnet": "-",
                "apiUrl": sim.base_url(),
                "apiKeySecretRef": {"name": secret_name, "namespace": NAMESPACE, "key": "api_key"},
                "resyncInterval": "5m",
            },
        }),
    )
    .expect("tailnet created");
}
