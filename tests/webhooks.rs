//! Webhooks end to end: the simulated tailnet delivers signed webhooks to the operator's
//! receiver (a real listener), which wakes the resources of the changed area within seconds.
//! The resync interval is 5 minutes and the hang guard 60 s: a drift found here was found
//! through the webhook, not a resync.
mod support;

use serde_json::json;
use support::fake_kube::{FakeKube, Gvr};
use support::kinds::{HANG_GUARD, condition, create, object, stop};
use support::operator::{NAMESPACE, TAILNET, connect_tailnet, run_config, sim, start_manager};
use tailnet_operator::controller::Manager;
use tailnet_operator::resources::{ConditionType, ManagedTailnet, TailnetPolicy};
use tailnet_operator::secret::Secret;
use tailnet_operator::sim::SimServer;
use tailnet_operator::tailscale::{CreateWebhookRequest, TailscaleClient};
use tailnet_operator::webhook::signature;

const BASE: &str = "// Base (webhook test).\n{\n  \"groups\": {\"group:sre\": [\"bob@example.com\"]},\n  \"tagOwners\": {\"tag:server\": [\"group:sre\"]},\n}\n";
const CONSOLE_EDIT: &str = "{\"groups\": {\"group:sre\": [\"bob@example.com\", \"eve@example.com\"]}, \"tagOwners\": {\"tag:server\": [\"group:sre\"]}}";
const GET_POLICY: &str = "GET /api/v2/tailnet/{tailnet}/acl";

struct Env {
    fake: FakeKube,
    sim: SimServer,
    manager: Manager,
    receiver: String,
    secret: Secret,
}

fn admin(sim: &SimServer) -> TailscaleClient {
    support::client::api_key_client(sim)
}

/// The operator with a receiver, a webhook endpoint in the sim pointing at it, its secret in a
/// Secret the ManagedTailnet names, and a Base policy under `driftPolicy: Report` applied.
async fn start() -> Env {
    let fake = FakeKube::new()
        .with_status_subresource_for::<ManagedTailnet>()
        .with_status_subresource_for::<TailnetPolicy>();
    let sim = sim().await;
    connect_tailnet(&fake, &sim);
    create::<TailnetPolicy>(
        &fake,
        "base",
        json!({"role": "Base", "policy": BASE, "driftPolicy": "Report"}),
    );
    let mut config = run_config();
    config.webhook_listen = Some("127.0.0.1:0".parse().unwrap());
    let manager = start_manager(&fake, config).await;
    let receiver = format!(
        "http://{}/webhooks/{TAILNET}",
        manager.webhook_addr().unwrap()
    );
    let created = admin(&sim)
        .create_webhook(&CreateWebhookRequest {
            endpoint_url: receiver.clone(),
            provider_type: None,
            subscriptions: vec![
                "policyUpdate".into(),
                "nodeCreated".into(),
                "nodeDeleted".into(),
            ],
        })
        .await
        .unwrap();
    let secret = created.secret.clone();
    fake.apply(
        &Gvr::new("", "v1", "secrets"),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "ts-webhook", "namespace": NAMESPACE},
               "stringData": {"secret": secret.expose()}}),
    )
    .unwrap();
    fake.merge_patch(
        &Gvr::of::<ManagedTailnet>(),
        None,
        TAILNET,
        json!({"spec": {"webhook": {"enabled": true,
            "secretRef": {"name": "ts-webhook", "namespace": NAMESPACE, "key": "secret"}}}}),
    )
    .unwrap();
    // The ManagedTailnet registers the secret on its next reconcile after the patch: until
    // then a signed delivery is refused too (the hang guard bounds the wait).
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    let empty = signature::sign(&secret, chrono::Utc::now().timestamp(), b"[]");
    while post(&receiver, b"[]", Some(empty.clone())).await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the secret was never registered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    fake.wait_for("the Base applied", HANG_GUARD, |f| {
        let status = f.get_as::<TailnetPolicy>(None, "base")?.status?;
        (status.applied_revision == Some(1)).then_some(())
    })
    .await;
    Env {
        fake,
        sim,
        manager,
        receiver,
        secret,
    }
}

fn drifted(fake: &FakeKube) -> bool {
    condition::<TailnetPolicy>(fake, "base", ConditionType::Drifted)
        .is_some_and(|(status, _, _)| status == "True")
}

fn sample(manager: &Manager, prefix: &str) -> f64 {
    manager
        .metrics()
        .encode()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn post(url: &str, body: &[u8], header: Option<String>) -> u16 {
    let mut request = reqwest::Client::new().post(url).body(body.to_vec());
    if let Some(header) = header {
        request = request.header(signature::HEADER, header);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_console_edit_is_found_through_the_webhook_within_seconds() {
    let env = start().await;
    assert!(!drifted(&env.fake));
    let reads = env.sim.tailnet().calls().get(GET_POLICY);
    env.sim
        .tailnet()
        .set_console_actor("carol@example.com", "Carol");
    env.sim.tailnet().console_set_policy(CONSOLE_EDIT).unwrap();
    env.fake
        .wait_for("Drifted=True through the webhook", HANG_GUARD, |f| {
            drifted(f).then_some(())
        })
        .await;
    // Who did it, from the configuration audit log: in status and in the Drifted event.
    let drift = object::<TailnetPolicy>(&env.fake, "base")
        .unwrap()
        .status
        .unwrap()
        .drift
        .unwrap();
    let who = drift.changed_by.unwrap();
    assert!(
        who.starts_with("carol@example.com (Carol) in the admin console at "),
        "{who}"
    );
    assert!(
        who.ends_with("UPDATE ACL of ") || who.contains(": UPDATE ACL"),
        "{who}"
    );
    let events = env.fake.events_for("TailnetPolicy", "base");
    assert!(
        events
            .iter()
            .any(|e| e.reason == "Drifted" && e.note.contains("changed by carol@example.com")),
        "{events:?}"
    );
    assert!(
        env.sim.tailnet().calls().get(GET_POLICY) > reads,
        "the policy was re-read"
    );
    let accepted =
        "tailnet_operator_webhook_deliveries_total{result=\"accepted\",tailnet=\"home\"}";
    assert!(sample(&env.manager, accepted) >= 1.0);
    assert!(
        sample(
            &env.manager,
            "tailnet_operator_webhook_events_total{tailnet=\"home\",type=\"policyUpdate\"}"
        ) >= 1.0
    );
    assert!(
        env.sim
            .tailnet()
            .webhook_attempts()
            .iter()
            .any(|(_, status)| *status == 200),
        "{:?}",
        env.sim.tailnet().webhook_attempts()
    );
    stop(env.manager).await;
}

#[tokio::test]
async fn wrong_stale_unsigned_or_oversized_deliveries_are_refused_and_counted() {
    let env = start().await;
    let body = br#"[{"timestamp":"2026-12-06T12:00:00Z","version":1,"type":"policyUpdate","tailnet":"x","message":"m","data":{}}]"#;
    let now = chrono::Utc::now().timestamp();
    let good = signature::sign(&env.secret, now, body);
    assert_eq!(post(&env.receiver, body, Some(good.clone())).await, 200);
    let wrong = signature::sign(&Secret::new("not-it"), now, body);
    assert_eq!(post(&env.receiver, body, Some(wrong)).await, 401);
    let stale = signature::sign(&env.secret, now - 600, body);
    assert_eq!(post(&env.receiver, body, Some(stale)).await, 401);
    assert_eq!(post(&env.receiver, body, None).await, 401);
    assert_eq!(
        post(&env.receiver, body, Some("t=1,v1=zz".into())).await,
        401
    );
    let other = env.receiver.replace("/home", "/other-tailnet");
    assert_eq!(post(&other, body, Some(good)).await, 401);
    let huge = vec![b' '; 2 * 1024 * 1024];
    let signed = signature::sign(&env.secret, now, &huge);
    assert_eq!(post(&env.receiver, &huge, Some(signed)).await, 413);
    let unauthorized = sample(
        &env.manager,
        "tailnet_operator_webhook_deliveries_total{result=\"unauthorized\"",
    );
    assert!(unauthorized >= 5.0, "{unauthorized}");

    // The sim signing with a wrong key: every attempt refused, retried a bounded number of
    // times, the policy not re-read.
    env.sim.tailnet().corrupt_webhook_signatures(true);
    let reads = env.sim.tailnet().calls().get(GET_POLICY);
    env.sim.tailnet().console_set_policy(CONSOLE_EDIT).unwrap();
    env.fake
        .wait_for("five refused attempts", HANG_GUARD, |_| {
            let refused = env
                .sim
                .tailnet()
                .webhook_attempts()
                .iter()
                .filter(|(_, status)| *status == 401)
                .count();
            (refused >= 5).then_some(())
        })
        .await;
    assert_eq!(env.sim.tailnet().calls().get(GET_POLICY), reads);
    assert!(!drifted(&env.fake));
    let text = env.manager.metrics().encode();
    assert!(!text.contains(env.secret.expose()));
    stop(env.manager).await;
}

#[tokio::test]
async fn an_unreadable_audit_log_says_actor_unknown_and_why_without_failing() {
    let env = start().await;
    env.sim.tailnet().set_fault(
        tailnet_operator::sim::FaultRule::route(
            "GET /api/v2/tailnet/{tailnet}/logging/configuration",
        )
        .server_error(403)
        .times(100),
    );
    env.sim.tailnet().console_set_policy(CONSOLE_EDIT).unwrap();
    let who = env
        .fake
        .wait_for("an attributed drift", HANG_GUARD, |f| {
            let status = f.get_as::<TailnetPolicy>(None, "base")?.status?;
            status.drift?.changed_by
        })
        .await;
    assert_eq!(
        who,
        "actor unknown (the credential lacks the logs:configuration:read scope)"
    );
    let ready = condition::<TailnetPolicy>(&env.fake, "base", ConditionType::Ready).unwrap();
    assert_eq!(ready.0, "True", "attribution never fails the reconcile");
    stop(env.manager).await;
}

#[tokio::test]
async fn a_managed_endpoint_is_created_rotated_with_overlap_and_deleted_with_the_tailnet() {
    let fake = FakeKube::new()
        .with_status_subresource_for::<ManagedTailnet>()
        .with_status_subresource_for::<TailnetPolicy>();
    let sim = sim().await;
    connect_tailnet(&fake, &sim);
    let mut config = run_config();
    config.webhook_listen = Some("127.0.0.1:0".parse().unwrap());
    let manager = start_manager(&fake, config).await;
    let url = format!(
        "http://{}/webhooks/{TAILNET}",
        manager.webhook_addr().unwrap()
    );
    fake.merge_patch(
        &Gvr::of::<ManagedTailnet>(),
        None,
        TAILNET,
        json!({"spec": {"webhook": {"enabled": true, "url": url}}}),
    )
    .unwrap();
    let secret_of = |fake: &FakeKube, key: &str| -> Option<Secret> {
        let secret = fake.get(
            &Gvr::new("", "v1", "secrets"),
            Some(NAMESPACE),
            "home-webhook",
        )?;
        let encoded = secret["data"][key].as_str()?.to_owned();
        let bytes = base64_decode(&encoded);
        Some(Secret::new(String::from_utf8(bytes).unwrap()))
    };
    let first = fake
        .wait_for("the endpoint's Secret", HANG_GUARD, |f| {
            secret_of(f, "secret")
        })
        .await;
    let ours = |hooks: Vec<tailnet_operator::tailscale::Webhook>| -> Vec<_> {
        hooks
            .into_iter()
            .filter(|h| h.endpoint_url == url)
            .collect()
    };
    let hooks = ours(admin(&sim).list_webhooks().await.unwrap());
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert!(hooks[0].subscriptions.contains(&"policyUpdate".to_owned()));
    let finalizers = fake
        .get_as::<ManagedTailnet>(None, TAILNET)
        .unwrap()
        .metadata
        .finalizers;
    assert_eq!(finalizers, Some(vec!["tailnet.ops.dev/cleanup".to_owned()]));
    let now = chrono::Utc::now().timestamp();
    let signed = |secret: &Secret| signature::sign(secret, now, b"[]");
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    while post(&url, b"[]", Some(signed(&first))).await != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never accepted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Rotation: a new secret, the previous one still accepted during the overlap.
    fake.merge_patch(
        &Gvr::of::<ManagedTailnet>(),
        None,
        TAILNET,
        json!({"metadata": {"annotations": {"tailnet.ops.dev/rotate-now": "1"}}}),
    )
    .unwrap();
    let second = fake
        .wait_for("the rotated secret", HANG_GUARD, |f| {
            secret_of(f, "secret").filter(|s| s.expose() != first.expose())
        })
        .await;
    assert_eq!(
        secret_of(&fake, "previous").unwrap().expose(),
        first.expose()
    );
    while post(&url, b"[]", Some(signed(&second))).await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new secret never accepted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        post(&url, b"[]", Some(signed(&first))).await,
        200,
        "overlap"
    );
    assert_eq!(
        ours(admin(&sim).list_webhooks().await.unwrap()).len(),
        1,
        "rotated, not recreated"
    );

    // Deleting the ManagedTailnet deletes the endpoint, then the finalizer goes.
    fake.delete(&Gvr::of::<ManagedTailnet>(), None, TAILNET)
        .unwrap();
    fake.wait_for("the ManagedTailnet gone", HANG_GUARD, |f| {
        f.get_as::<ManagedTailnet>(None, TAILNET)
            .is_none()
            .then_some(())
    })
    .await;
    assert!(ours(admin(&sim).list_webhooks().await.unwrap()).is_empty());
    stop(manager).await;
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[tokio::test]
async fn an_ip_forwarding_warning_is_an_event_and_a_condition_on_the_tailnet() {
    let env = start().await;
    let body = br#"[{"timestamp":"2026-12-06T12:00:00Z","version":1,"type":"exitNodeIPForwardingNotEnabled","tailnet":"example.com","message":"Exit node exit-1 has IP forwarding disabled","data":{}}]"#;
    let signed = signature::sign(&env.secret, chrono::Utc::now().timestamp(), body);
    assert_eq!(post(&env.receiver, body, Some(signed)).await, 200);
    let events = env
        .fake
        .wait_for("the warning event", HANG_GUARD, |f| {
            let events = f.events_for("ManagedTailnet", TAILNET);
            events
                .iter()
                .any(|e| e.reason == "IPForwardingNotEnabled" && e.type_ == "Warning")
                .then_some(events)
        })
        .await;
    assert!(
        events.iter().any(|e| e.note.contains("exit-1")),
        "{events:?}"
    );
    // The condition appears at the ManagedTailnet's next reconcile.
    fake_reconcile(&env.fake);
    env.fake
        .wait_for("IPForwardingNotEnabled=True", HANG_GUARD, |f| {
            let status = f.get_as::<ManagedTailnet>(None, TAILNET)?.status?;
            status
                .common
                .conditions
                .iter()
                .any(|c| c.type_ == "IPForwardingNotEnabled" && c.status == "True")
                .then_some(())
        })
        .await;
    stop(env.manager).await;
}

fn fake_reconcile(fake: &FakeKube) {
    fake.merge_patch(
        &Gvr::of::<ManagedTailnet>(),
        None,
        TAILNET,
        json!({"metadata": {"annotations": {"tailnet.ops.dev/reconcile-at": "forwarding"}}}),
    )
    .unwrap();
}
