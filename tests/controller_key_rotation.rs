//! The KeyRotationPolicy controller run for real by the manager against the fake API server
//! and the simulated tailnet, with one clock both follow: tests advance the operator's wall
//! clock and the sim's together, so a 30-day key is renewed without waiting.
//!
//! Crash points are reproduced by the state a crash leaves (a marked key the status does not
//! know, a Secret ahead of status, a previous key already revoked) and an operator started on
//! it: it must converge to exactly one valid marked credential, held by the Secret.
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use support::client::{LogCapture, api_key_client};
use support::fake_kube::{FakeKube, Gvr};
use support::kinds::{
    HANG_GUARD, assert_no_leak, calls, create, force_reconcile, object, stop, wait_reason,
};
use support::operator::{NAMESPACE, TAILNET, connect_tailnet, run_config, sim, start_manager};
use tailnet_operator::controller::Manager;
use tailnet_operator::reconcile::key_rotation::{description, marker};
use tailnet_operator::resources::common::FIELD_MANAGER;
use tailnet_operator::resources::{ConditionType, KeyRotationPolicy, ManagedTailnet};
use tailnet_operator::sim::SimServer;
use tailnet_operator::snapshot::WallClock;
use tailnet_operator::tailscale::{CreateAuthKeyRequest, Key};

const NAME: &str = "build/ci";
const LIST_KEYS: &str = "GET /api/v2/tailnet/{tailnet}/keys";
const HOUR: u64 = 3600;

fn fake() -> FakeKube {
    FakeKube::new()
        .with_status_subresource_for::<ManagedTailnet>()
        .with_status_subresource_for::<KeyRotationPolicy>()
}

/// A reusable tagged key living 30 days, renewed 10 days before expiry, 1h grace.
fn spec() -> Value {
    json!({"reusable": true, "preauthorized": true, "tags": ["tag:ci"],
        "expiry": "720h", "rotateBefore": "240h", "gracePeriod": "1h"})
}

struct Env {
    fake: FakeKube,
    sim: SimServer,
    clock: WallClock,
    manager: Manager,
    /// Every key secret the test has seen in a Secret, for the leak scan.
    seen: std::sync::Mutex<Vec<String>>,
    logs: LogCapture,
    _logging: tracing::dispatcher::DefaultGuard,
}

impl Env {
    /// Moves the operator's clock and the sim's by `hours`, then forces a reconcile of `name`
    /// and waits for it to finish.
    async fn after_hours(&self, hours: u64, name: &str, label: &str) {
        let by = Duration::from_secs(hours * HOUR);
        self.sim.tailnet().advance_clock(by);
        self.clock.advance(by);
        // A forced reconcile re-reads the keys: wait for that read and a finished reconcile.
        // Tests then wait for the state they expect (another pass may finish first).
        let (reads, done) = (
            calls(&self.sim, LIST_KEYS),
            self.manager.metrics().reconciles("KeyRotationPolicy", "ok"),
        );
        force_reconcile::<KeyRotationPolicy>(&self.fake, name, label);
        self.fake
            .wait_for(&format!("a reconcile of {name}"), HANG_GUARD, |_| {
                (calls(&self.sim, LIST_KEYS) > reads
                    && self.manager.metrics().reconciles("KeyRotationPolicy", "ok") > done)
                    .then_some(())
            })
            .await;
    }

    /// Waits until `name`'s status satisfies `ok`.
    async fn until(
        &self,
        name: &str,
        what: &str,
        ok: impl Fn(&tailnet_operator::resources::KeyRotationPolicyStatus) -> bool,
    ) -> tailnet_operator::resources::KeyRotationPolicyStatus {
        self.fake
            .wait_for(what, HANG_GUARD, |_| {
                let status = self.status(name);
                ok(&status).then_some(status)
            })
            .await
    }

    fn status(&self, name: &str) -> tailnet_operator::resources::KeyRotationPolicyStatus {
        object::<KeyRotationPolicy>(&self.fake, name)
            .and_then(|p| p.status)
            .unwrap_or_default()
    }

    /// The Secret, remembering the key material it holds for [`Env::assert_no_leak`].
    fn secret(&self, namespace: &str, name: &str) -> Option<KubeSecret> {
        let secret = self.fake.get_as::<KubeSecret>(Some(namespace), name)?;
        let values = secret
            .data
            .iter()
            .flatten()
            .map(|(_, v)| String::from_utf8_lossy(&v.0).into_owned());
        self.seen
            .lock()
            .unwrap()
            .extend(values.filter(|v| v.starts_with("tskey-")));
        Some(secret)
    }

    /// No key material seen in a Secret appears in the logs, events, any custom resource
    /// (status included) or the metrics.
    fn assert_no_leak(&self) {
        let seen = self.seen.lock().unwrap().clone();
        assert_no_leak::<KeyRotationPolicy>(&self.fake, &self.manager, &self.logs.text(), &seen);
    }

    /// The valid keys carrying `policy`'s marker.
    async fn marked(&self, policy: &str) -> Vec<Key> {
        let marker = marker(&format!("{NAMESPACE}/{TAILNET}"), policy);
        api_key_client(&self.sim)
            .list_keys(true)
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.description.starts_with(&marker) && !k.invalid)
            .collect()
    }
}

/// A fake API server and a simulated tailnet, connected; the operator is not started yet, so
/// a test can leave the state a crash would have left first.
async fn prepared() -> (FakeKube, SimServer) {
    let (fake, sim) = (fake(), sim().await);
    connect_tailnet(&fake, &sim);
    (fake, sim)
}

/// Starts the operator on `fake` and `sim`, with a wall clock the test advances.
async fn start_on(fake: FakeKube, sim: SimServer) -> Env {
    let (logs, logging) = LogCapture::install();
    let clock = WallClock::system();
    let mut config = run_config();
    config.clock = clock.clone();
    let manager = start_manager(&fake, config).await;
    Env {
        fake,
        sim,
        clock,
        manager,
        seen: Default::default(),
        logs,
        _logging: logging,
    }
}

async fn start(prepare: impl FnOnce(&FakeKube, &SimServer)) -> Env {
    let (fake, sim) = prepared().await;
    prepare(&fake, &sim);
    start_on(fake, sim).await
}

fn held_id(secret: &KubeSecret) -> String {
    secret.metadata.annotations.as_ref().unwrap()["tailnet.ops.dev/key-id"].clone()
}

fn data(secret: &KubeSecret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

#[tokio::test]
async fn a_key_is_minted_renewed_at_rotate_before_and_the_old_one_revoked_after_grace() {
    let env = start(|fake, _| create::<KeyRotationPolicy>(fake, NAME, spec())).await;
    wait_reason::<KeyRotationPolicy>(&env.fake, NAME, ConditionType::Ready, "True", None).await;
    let first = env.status(NAME).current_key_id.unwrap();
    let secret = env.secret("build", "ci").expect("the Secret");
    assert_eq!(held_id(&secret), first);
    assert!(data(&secret, "authkey").starts_with("tskey-auth-"));
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let owners = secret.metadata.owner_references.unwrap();
    assert_eq!(owners[0].kind, "KeyRotationPolicy");
    assert_eq!(env.marked(NAME).await.len(), 1);

    // 479h later: not due yet.
    env.after_hours(479, NAME, "t1").await;
    assert_eq!(
        env.status(NAME).current_key_id.as_deref(),
        Some(first.as_str())
    );
    // 480h: due (720h - 240h). A new key, the old one kept for the grace period.
    env.after_hours(1, NAME, "t2").await;
    let status = env
        .until(NAME, "rotated", |s| {
            s.current_key_id.as_deref() != Some(first.as_str())
        })
        .await;
    let second = status.current_key_id.clone().unwrap();
    assert_eq!(status.previous_key_id.as_deref(), Some(first.as_str()));
    assert_eq!(held_id(&env.secret("build", "ci").unwrap()), second);
    assert_eq!(
        env.marked(NAME).await.len(),
        2,
        "both valid during the grace period"
    );
    // After the grace period the old key is revoked.
    env.after_hours(2, NAME, "t3").await;
    env.until(NAME, "the previous key revoked", |s| {
        s.previous_key_id.is_none()
    })
    .await;
    let marked = env.marked(NAME).await;
    assert_eq!(marked.iter().map(|k| &k.id).collect::<Vec<_>>(), [&second]);
    let events = env.fake.events_for("KeyRotationPolicy", "ci");
    // Two rotations (Initial, Due): kube's event recorder folds repeats of one reason into a
    // series, so they are one event with count 2.
    assert!(
        events.iter().any(|e| e.reason == "Rotated" && e.count >= 2),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.reason == "Revoked" && e.note.contains(&first)),
        "{events:?}"
    );

    // rotate-now: at once, once per value.
    env.fake
        .merge_patch(
            &Gvr::of::<KeyRotationPolicy>(),
            Some("build"),
            "ci",
            json!({"metadata": {"annotations": {"tailnet.ops.dev/rotate-now": "incident-1"}}}),
        )
        .unwrap();
    env.fake
        .wait_for("rotated now", HANG_GUARD, |_| {
            (env.status(NAME).rotated_for.as_deref() == Some("incident-1")).then_some(())
        })
        .await;
    let third = env.status(NAME).current_key_id.unwrap();
    assert_ne!(third, second);
    assert_eq!(held_id(&env.secret("build", "ci").unwrap()), third);
    env.assert_no_leak();
    stop(env.manager).await;
}

#[tokio::test]
async fn an_oauth_client_is_rotated_into_client_id_and_client_secret() {
    let spec = json!({"keyType": "oauthClient", "scopes": ["auth_keys"], "tags": ["tag:ci"],
        "expiry": "720h", "rotateBefore": "168h", "secretName": "operator-oauth"});
    let env = start(|fake, _| create::<KeyRotationPolicy>(fake, "tailscale/oauth", spec)).await;
    wait_reason::<KeyRotationPolicy>(
        &env.fake,
        "tailscale/oauth",
        ConditionType::Ready,
        "True",
        None,
    )
    .await;
    let secret = env.secret("tailscale", "operator-oauth").unwrap();
    let first = env.status("tailscale/oauth").current_key_id.unwrap();
    assert_eq!(data(&secret, "client_id"), first);
    assert!(data(&secret, "client_secret").starts_with("tskey-client-"));
    env.after_hours(720 - 168, "tailscale/oauth", "t1").await;
    let second = env
        .until("tailscale/oauth", "rotated", |s| {
            s.current_key_id.as_deref() != Some(first.as_str())
        })
        .await
        .current_key_id
        .unwrap();
    assert_eq!(
        data(
            &env.secret("tailscale", "operator-oauth").unwrap(),
            "client_id"
        ),
        second
    );
    env.after_hours(2, "tailscale/oauth", "t2").await;
    env.until("tailscale/oauth", "the previous client revoked", |s| {
        s.previous_key_id.is_none()
    })
    .await;
    let marked = env.marked("tailscale/oauth").await;
    assert_eq!(marked.iter().map(|k| &k.id).collect::<Vec<_>>(), [&second]);
    env.assert_no_leak();
    stop(env.manager).await;
}

/// Mints a key marked as `policy`'s, as the operator would have before a crash.
async fn marked_key(sim: &SimServer, policy: &str) -> Key {
    let marker = marker(&format!("{NAMESPACE}/{TAILNET}"), policy);
    api_key_client(sim)
        .create_auth_key(&CreateAuthKeyRequest {
            reusable: true,
            preauthorized: true,
            tags: vec!["tag:ci".into()],
            expiry_seconds: Some(720 * HOUR),
            description: Some(description(&marker, policy)),
            ..CreateAuthKeyRequest::default()
        })
        .await
        .unwrap()
        .key
}

/// The Secret and status a run leaves: the Secret holding `held`, and `status` written as the
/// operator writes it (server-side apply, its field manager, so later passes own the fields).
async fn crash_state(fake: &FakeKube, held: &str, status: Value) {
    create::<KeyRotationPolicy>(fake, NAME, spec());
    fake.apply(
        &Gvr::of::<KubeSecret>(),
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "ci", "namespace": "build",
                "annotations": {"tailnet.ops.dev/key-id": held}},
            "type": "Opaque", "data": {"authkey": "dHNrZXktYXV0aC1vbGQ="}}),
    )
    .unwrap();
    let patch = json!({"apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "KeyRotationPolicy",
        "status": status});
    Api::<KeyRotationPolicy>::namespaced(fake.client(), "build")
        .patch_status(
            "ci",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .unwrap();
}

/// Stopped after the mint, before the Secret write: the new key is an orphan. The restarted
/// operator keeps the current key and revokes the orphan once its grace period is over.
#[tokio::test]
async fn crash_after_the_mint_converges_to_one_credential_and_no_orphan() {
    let (fake, sim) = prepared().await;
    let current = marked_key(&sim, NAME).await;
    let orphan = marked_key(&sim, NAME).await;
    crash_state(
        &fake,
        &current.id,
        json!({"currentKeyId": current.id, "secretName": "ci"}),
    )
    .await;
    let env = start_on(fake, sim).await;
    wait_reason::<KeyRotationPolicy>(&env.fake, NAME, ConditionType::Ready, "True", None).await;
    assert_eq!(
        env.marked(NAME).await.len(),
        2,
        "the orphan is young: kept for now"
    );
    env.after_hours(2, NAME, "sweep").await;
    let marked = env.marked(NAME).await;
    assert_eq!(
        marked.iter().map(|k| &k.id).collect::<Vec<_>>(),
        [&current.id]
    );
    assert_eq!(held_id(&env.secret("build", "ci").unwrap()), current.id);
    let events = env.fake.events_for("KeyRotationPolicy", "ci");
    assert!(
        events
            .iter()
            .any(|e| e.reason == "Revoked" && e.note.contains(&orphan.id))
    );
    stop(env.manager).await;
}

/// Stopped after the Secret write, before the status write: the Secret is ahead. The restarted
/// operator adopts the Secret's key (no second mint) and revokes the old one after the grace.
#[tokio::test]
async fn crash_after_the_secret_write_adopts_the_secret_key() {
    let (fake, sim) = prepared().await;
    let old = marked_key(&sim, NAME).await;
    let new = marked_key(&sim, NAME).await;
    crash_state(
        &fake,
        &new.id,
        json!({"currentKeyId": old.id, "secretName": "ci"}),
    )
    .await;
    let env = start_on(fake, sim).await;
    env.fake
        .wait_for("the Secret's key adopted", HANG_GUARD, |_| {
            (env.status(NAME).current_key_id.as_deref() == Some(new.id.as_str())).then_some(())
        })
        .await;
    assert_eq!(
        env.status(NAME).previous_key_id.as_deref(),
        Some(old.id.as_str())
    );
    assert_eq!(env.marked(NAME).await.len(), 2, "no second mint");
    env.after_hours(2, NAME, "grace").await;
    let marked = env.marked(NAME).await;
    assert_eq!(marked.iter().map(|k| &k.id).collect::<Vec<_>>(), [&new.id]);
    stop(env.manager).await;
}

/// Stopped during the revocation: status still names the previous key, already revoked. The
/// restarted operator revokes it again (404 is success) and clears it.
#[tokio::test]
async fn crash_during_the_revocation_finishes_it() {
    let (fake, sim) = prepared().await;
    let previous = marked_key(&sim, NAME).await;
    let current = marked_key(&sim, NAME).await;
    api_key_client(&sim).delete_key(&previous.id).await.unwrap();
    crash_state(
        &fake,
        &current.id,
        json!({"currentKeyId": current.id, "previousKeyId": previous.id,
            "previousRevokeAt": "2000-01-01T00:00:00Z", "secretName": "ci"}),
    )
    .await;
    let env = start_on(fake, sim).await;
    env.fake
        .wait_for("the revocation finished", HANG_GUARD, |_| {
            (env.status(NAME).previous_key_id.is_none()
                && env.status(NAME).current_key_id.as_deref() == Some(current.id.as_str()))
            .then_some(())
        })
        .await;
    let marked = env.marked(NAME).await;
    assert_eq!(
        marked.iter().map(|k| &k.id).collect::<Vec<_>>(),
        [&current.id]
    );
    stop(env.manager).await;
}

/// Deleting with `deletionPolicy: Delete` revokes every credential of the policy and deletes
/// the Secret.
#[tokio::test]
async fn delete_revokes_every_credential_and_deletes_the_secret() {
    let env = start(|fake, _| create::<KeyRotationPolicy>(fake, NAME, spec())).await;
    wait_reason::<KeyRotationPolicy>(&env.fake, NAME, ConditionType::Ready, "True", None).await;
    assert!(env.secret("build", "ci").is_some());
    env.fake
        .delete(&Gvr::of::<KeyRotationPolicy>(), Some("build"), "ci")
        .unwrap();
    support::kinds::wait_gone::<KeyRotationPolicy>(&env.fake, NAME).await;
    assert!(env.marked(NAME).await.is_empty());
    assert!(env.secret("build", "ci").is_none());
    env.assert_no_leak();
    stop(env.manager).await;
}

/// Tags the credentials may not carry: Ready=False naming spec.tags and the fix, nothing
/// minted, the failure counted.
#[tokio::test]
async fn refused_tags_are_named_with_the_fix_and_nothing_is_minted() {
    let env = start(|fake, _| {
        create::<KeyRotationPolicy>(
            fake,
            NAME,
            json!({"reusable": true, "tags": ["tag:nobody-owns"]}),
        )
    })
    .await;
    let message = wait_reason::<KeyRotationPolicy>(
        &env.fake,
        NAME,
        ConditionType::Ready,
        "False",
        Some("Invalid"),
    )
    .await;
    assert!(
        message.contains("spec.tags") && message.contains("tagOwners"),
        "{message}"
    );
    assert!(env.marked(NAME).await.is_empty(), "nothing minted");
    assert!(env.secret("build", "ci").is_none());
    let metrics = env.manager.metrics().encode();
    let failures: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "tailnet_operator_key_rotation_failures_total{name=\"ci\",namespace=\"build\"}",
            )
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("a failure series for build/ci");
    assert!(failures >= 1.0, "the failure is counted: {failures}");
    stop(env.manager).await;
}
