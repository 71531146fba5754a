//! `ManagedTailnet.spec.settings`: tailnet settings partially managed by the ManagedTailnet
//! controller, against the fake API server and the simulated tailnet (its exchange log shows
//! each PATCH body).
mod support;

use serde_json::{Value, json};
use support::fake_kube::{FakeKube, Gvr};
use support::kinds::{HANG_GUARD, calls, stop};
use support::operator::{TAILNET, connect_tailnet, run_config, sim, start_manager};
use tailnet_operator::resources::conditions::find;
use tailnet_operator::resources::{ConditionType, ManagedTailnet};
use tailnet_operator::sim::SimServer;

const PATCH: &str = "PATCH /api/v2/tailnet/{tailnet}/settings";

fn fake() -> FakeKube {
    FakeKube::new().with_status_subresource_for::<ManagedTailnet>()
}

fn patch_bodies(sim: &SimServer) -> Vec<Value> {
    sim.tailnet()
        .exchanges()
        .into_iter()
        .filter(|e| e.method == "PATCH" && e.route.ends_with("/settings"))
        .filter_map(|e| e.request_body)
        .collect()
}

/// A new `reconcile-at` value on the ManagedTailnet (it is not a tailnet-scoped kind, so the
/// shared helper does not apply).
fn reconcile_at(fake: &FakeKube, value: &str) {
    fake.merge_patch(
        &Gvr::of::<ManagedTailnet>(),
        None,
        TAILNET,
        json!({"metadata": {"annotations": {"tailnet.ops.dev/reconcile-at": value}}}),
    )
    .unwrap();
}

fn drifted(fake: &FakeKube) -> Option<(String, String)> {
    let status = fake.get_as::<ManagedTailnet>(None, TAILNET)?.status?;
    find(&status.common.conditions, ConditionType::Drifted)
        .map(|c| (c.status.clone(), c.message.clone()))
}

#[tokio::test]
async fn three_managed_fields_one_patch_steady_state_and_drift() {
    let (fake, sim) = (fake(), sim().await);
    sim.tailnet().record_exchanges(true);
    sim.tailnet()
        .console_patch_settings(json!({"devicesApprovalOn": false, "httpsEnabled": false,
            "devicesKeyDurationDays": 180, "usersApprovalOn": true}))
        .unwrap();
    connect_tailnet(&fake, &sim);
    fake.merge_patch(
        &Gvr::of::<ManagedTailnet>(),
        None,
        TAILNET,
        json!({"spec": {"settings": {"devicesApprovalOn": true, "httpsEnabled": true,
            "devicesKeyDurationDays": 90}}}),
    )
    .unwrap();
    let manager = start_manager(&fake, run_config()).await;
    fake.wait_for("the settings applied", HANG_GUARD, |f| {
        f.get_as::<ManagedTailnet>(None, TAILNET)?
            .status?
            .settings?
            .applied
            .map(|_| ())
    })
    .await;
    assert_eq!(calls(&sim, PATCH), 1);
    assert_eq!(
        patch_bodies(&sim),
        [json!({"devicesApprovalOn": true, "devicesKeyDurationDays": 90, "httpsEnabled": true})]
    );
    let live = sim.tailnet().settings();
    assert_eq!(
        live["usersApprovalOn"], true,
        "an unmanaged field is left alone"
    );

    // Steady state: forced reconciles write nothing.
    for i in 0..2 {
        let done = manager.metrics().reconciles("ManagedTailnet", "ok");
        reconcile_at(&fake, &format!("s{i}"));
        fake.wait_for("a reconcile", HANG_GUARD, |_| {
            (manager.metrics().reconciles("ManagedTailnet", "ok") > done).then_some(())
        })
        .await;
    }
    assert_eq!(calls(&sim, PATCH), 1, "nothing written in steady state");

    // An unmanaged field changed in the console: untouched, no drift.
    sim.tailnet()
        .console_patch_settings(json!({"usersApprovalOn": false}))
        .unwrap();
    // A managed one: corrected (Correct is the default), in one PATCH of that field.
    sim.tailnet()
        .console_patch_settings(json!({"httpsEnabled": false}))
        .unwrap();
    manager.snapshots().get(TAILNET).unwrap().invalidate_all();
    reconcile_at(&fake, "c1");
    fake.wait_for("the drift corrected", HANG_GUARD, |_| {
        (sim.tailnet().settings()["httpsEnabled"] == true).then_some(())
    })
    .await;
    assert_eq!(
        patch_bodies(&sim).last().unwrap(),
        &json!({"httpsEnabled": true})
    );
    assert_eq!(sim.tailnet().settings()["usersApprovalOn"], false);
    let events = fake.events_for("ManagedTailnet", TAILNET);
    assert!(
        events
            .iter()
            .any(|e| e.reason == "Drifted" && e.note.contains("/httpsEnabled")),
        "{events:?}"
    );

    // Report: the console change stays and Drifted=True says which field.
    fake.merge_patch(
        &Gvr::of::<ManagedTailnet>(),
        None,
        TAILNET,
        json!({"spec": {"settings": {"driftPolicy": "Report"}}}),
    )
    .unwrap();
    sim.tailnet()
        .console_patch_settings(json!({"devicesKeyDurationDays": 30}))
        .unwrap();
    manager.snapshots().get(TAILNET).unwrap().invalidate_all();
    reconcile_at(&fake, "r1");
    let (status, message) = fake
        .wait_for("Drifted=True", HANG_GUARD, |f| {
            drifted(f).filter(|(s, _)| s == "True")
        })
        .await;
    assert_eq!(status, "True");
    assert!(message.contains("devicesKeyDurationDays"), "{message}");
    assert_eq!(sim.tailnet().settings()["devicesKeyDurationDays"], 30);
    stop(manager).await;
}

/// The sharp edge of tailscale#21721: `fields=all` answers 404 on some tailnets with shared-in
/// devices. The client lists the default fields instead and the ManagedTailnet says what is
/// missing; the resources keep working.
#[tokio::test]
async fn a_404_to_fields_all_falls_back_to_the_default_fields_and_says_so() {
    let (fake, sim) = (fake(), sim().await);
    sim.tailnet().set_fields_all_not_found(true);
    connect_tailnet(&fake, &sim);
    let manager = start_manager(&fake, run_config()).await;
    let message = fake
        .wait_for("Ready", HANG_GUARD, |f| {
            let status = f.get_as::<ManagedTailnet>(None, TAILNET)?.status?;
            let ready = find(&status.common.conditions, ConditionType::Ready)?;
            (ready.status == "True").then(|| ready.message.clone())
        })
        .await;
    assert!(message.contains("29 devices"), "{message}");
    assert!(
        message.contains("without connectivity details") && message.contains("fields=all"),
        "{message}"
    );
    // Once the API answers fields=all again, the note goes.
    sim.tailnet().set_fields_all_not_found(false);
    manager.snapshots().get(TAILNET).unwrap().invalidate_all();
    reconcile_at(&fake, "again");
    fake.wait_for("the note gone", HANG_GUARD, |f| {
        let status = f.get_as::<ManagedTailnet>(None, TAILNET)?.status?;
        let ready = find(&status.common.conditions, ConditionType::Ready)?;
        (!ready.message.contains("without connectivity details")).then_some(())
    })
    .await;
    stop(manager).await;
}

/// What the credential can read is probed when it connects: a 403 on an area names the scope
/// to add, before any resource of that area fails.
#[tokio::test]
async fn the_credential_s_access_is_probed_and_a_403_names_the_scope() {
    let (fake, sim) = (fake(), sim().await);
    sim.tailnet().set_fault(
        tailnet_operator::sim::FaultRule::route("GET /api/v2/tailnet/{tailnet}/dns/configuration")
            .server_error(403),
    );
    connect_tailnet(&fake, &sim);
    let manager = start_manager(&fake, run_config()).await;
    let access = fake
        .wait_for("the access probed", HANG_GUARD, |f| {
            let status = f.get_as::<ManagedTailnet>(None, TAILNET)?.status?;
            (!status.access.is_empty()).then_some(status.access)
        })
        .await;
    let area = |name: &str| access.iter().find(|a| a.area == name).unwrap().clone();
    assert!(area("policy").readable && area("keys").readable && area("services").readable);
    let dns = area("dns");
    assert!(!dns.readable);
    assert!(
        dns.message.contains("dns:read") && dns.used_by.contains("DNSConfig"),
        "{dns:?}"
    );
    stop(manager).await;
}
