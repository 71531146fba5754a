//! Two ManagedTailnets in one cluster, each backed by its own simulated tailnet: resources of
//! each reach only their own tailnet (each sim's call counter sees only its own writes),
//! suspending one leaves the other running, and deleting one's resources cleans up only there.
mod support;

use serde_json::{Value, json};
use support::client::start_sim_with;
use support::fake_kube::{FakeKube, Gvr};
use support::kinds::{HANG_GUARD, calls, stop, wait_gone};
use support::operator::{connect_named, run_config, start_manager};
use tailnet_operator::resources::{DNSConfig, ManagedTailnet, TailscaleService};
use tailnet_operator::sim::{SimConfig, SimServer};

const POST_DNS: &str = "POST /api/v2/tailnet/{tailnet}/dns/configuration";
const PUT_SERVICE: &str = "PUT /api/v2/tailnet/{tailnet}/services/{serviceName}";

fn fake() -> FakeKube {
    FakeKube::new()
        .with_status_subresource_for::<ManagedTailnet>()
        .with_status_subresource_for::<DNSConfig>()
        .with_status_subresource_for::<TailscaleService>()
}

async fn sim(seed: u64) -> SimServer {
    start_sim_with(SimConfig {
        seed,
        ..SimConfig::default()
    })
    .await
}

fn dns(fake: &FakeKube, name: &str, tailnet: &str, nameserver: &str) {
    fake.create(
        &Gvr::of::<DNSConfig>(),
        json!({"apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "DNSConfig",
            "metadata": {"name": name},
            "spec": {"tailnetRef": tailnet, "nameservers": [{"address": nameserver}]}}),
    )
    .unwrap();
}

fn service(fake: &FakeKube, namespace: &str, tailnet: &str) {
    fake.create(
        &Gvr::of::<TailscaleService>(),
        json!({"apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "TailscaleService",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"tailnetRef": tailnet, "ports": ["tcp:443"], "tags": ["tag:server"],
                "hosts": {"tags": ["tag:server"]}}}),
    )
    .unwrap();
}

fn nameservers(sim: &SimServer) -> Vec<String> {
    sim.tailnet()
        .dns()
        .nameservers
        .iter()
        .map(|r| r.address.clone())
        .collect()
}

fn set_nameserver(fake: &FakeKube, name: &str, address: &str) {
    fake.merge_patch(
        &Gvr::of::<DNSConfig>(),
        None,
        name,
        json!({"spec": {"nameservers": [{"address": address}]}}),
    )
    .unwrap();
}

fn suspend(fake: &FakeKube, tailnet: &str, on: bool) {
    fake.merge_patch(
        &Gvr::of::<ManagedTailnet>(),
        None,
        tailnet,
        json!({"spec": {"suspend": on}}),
    )
    .unwrap();
}

#[tokio::test]
async fn two_tailnets_stay_apart() {
    let fake = fake();
    let (a, b) = (sim(1).await, sim(2).await);
    assert_ne!(
        a.tailnet().credentials().api_key.expose(),
        b.tailnet().credentials().api_key.expose()
    );
    connect_named(&fake, &a, "alpha", "alpha-key");
    connect_named(&fake, &b, "beta", "beta-key");
    dns(&fake, "alpha-dns", "alpha", "1.1.1.1");
    dns(&fake, "beta-dns", "beta", "9.9.9.9");
    service(&fake, "team-a", "alpha");
    service(&fake, "team-b", "beta");
    let manager = start_manager(&fake, run_config()).await;
    fake.wait_for("both tailnets written", HANG_GUARD, |_| {
        (nameservers(&a) == ["1.1.1.1"]
            && nameservers(&b) == ["9.9.9.9"]
            && a.tailnet().service("svc:web").is_some()
            && b.tailnet().service("svc:web").is_some())
        .then_some(())
    })
    .await;
    // Each sim saw exactly its own writes.
    for sim in [&a, &b] {
        assert_eq!(calls(sim, POST_DNS), 1);
        assert_eq!(calls(sim, PUT_SERVICE), 1);
    }
    let owner = |sim: &SimServer| -> Value {
        sim.tailnet().service("svc:web").unwrap()["annotations"]["tailnet.ops.dev/owner"].clone()
    };
    assert_eq!(owner(&a), "team-a/web");
    assert_eq!(owner(&b), "team-b/web");

    // Suspending alpha: its change waits, beta's goes through.
    suspend(&fake, "alpha", true);
    fake.wait_for("alpha suspended", HANG_GUARD, |f| {
        f.get_as::<ManagedTailnet>(None, "alpha")
            .and_then(|t| t.status)
            .filter(|s| {
                s.common
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Synced" && c.reason == "Suspended")
            })
            .map(|_| ())
    })
    .await;
    set_nameserver(&fake, "alpha-dns", "8.8.8.8");
    set_nameserver(&fake, "beta-dns", "149.112.112.112");
    fake.wait_for("beta's change applied", HANG_GUARD, |_| {
        (nameservers(&b) == ["149.112.112.112"]).then_some(())
    })
    .await;
    fake.wait_for(
        "alpha's DNSConfig reports the suspension",
        HANG_GUARD,
        |f| {
            f.get_as::<DNSConfig>(None, "alpha-dns")
                .and_then(|d| d.status)
                .filter(|s| {
                    s.common
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.reason == "Suspended")
                })
                .map(|_| ())
        },
    )
    .await;
    assert_eq!(nameservers(&a), ["1.1.1.1"], "suspended: nothing written");
    assert_eq!(calls(&a, POST_DNS), 1);

    // Resuming alpha applies its change; deleting beta's resources cleans up only beta.
    suspend(&fake, "alpha", false);
    fake.wait_for("alpha's change applied", HANG_GUARD, |_| {
        (nameservers(&a) == ["8.8.8.8"]).then_some(())
    })
    .await;
    fake.delete(&Gvr::of::<TailscaleService>(), Some("team-b"), "web")
        .unwrap();
    fake.delete(&Gvr::of::<DNSConfig>(), None, "beta-dns")
        .unwrap();
    wait_gone::<TailscaleService>(&fake, "team-b/web").await;
    wait_gone::<DNSConfig>(&fake, "beta-dns").await;
    assert!(b.tailnet().service("svc:web").is_none());
    assert!(nameservers(&b).is_empty(), "beta's DNS cleared");
    assert!(
        a.tailnet().service("svc:web").is_some(),
        "alpha's service stays"
    );
    assert_eq!(nameservers(&a), ["8.8.8.8"], "alpha's DNS stays");
    stop(manager).await;
}
