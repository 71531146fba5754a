//! The FunnelExposure controller run by the manager against the fake API server and the
//! simulated tailnet, with a wall clock the test advances (the operator's and the sim's
//! together). The fake runs no pods: when the proxy Deployment appears, the test "starts the
//! pod" by joining a node with the auth key from the Secret, as tailscaled would.
//!
//! Writes are counted (sim calls, fake requests), never timed.
mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret as KubeSecret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde_json::{Value, json};
use support::client::{LogCapture, api_key_client};
use support::fake_kube::{FakeKube, Gvr};
use support::kinds::{
    HANG_GUARD, assert_no_leak, calls, create, force_reconcile, object, status_writes, stop,
    wait_gone,
};
use support::operator::{NAMESPACE, TAILNET, connect_tailnet, run_config, sim, start_manager};
use tailnet_operator::controller::Manager;
use tailnet_operator::policy::hujson::parse_strict;
use tailnet_operator::reconcile::key_rotation::marker;
use tailnet_operator::resources::funnel_exposure::Phase;
use tailnet_operator::resources::{FunnelExposure, ManagedTailnet, TailnetPolicy, TailnetScoped};
use tailnet_operator::sim::{FaultRule, SimServer};
use tailnet_operator::snapshot::WallClock;

const NAME: &str = "apps/demo";
const MINT: &str = "POST /api/v2/tailnet/{tailnet}/keys";
const SET_POLICY: &str = "POST /api/v2/tailnet/{tailnet}/acl";
const DELETE_DEVICE: &str = "DELETE /api/v2/device/{deviceId}";
const HOUR: u64 = 3600;

fn fake() -> FakeKube {
    FakeKube::new()
        .with_status_subresource_for::<ManagedTailnet>()
        .with_status_subresource_for::<FunnelExposure>()
        .with_status_subresource_for::<TailnetPolicy>()
}

struct Env {
    fake: FakeKube,
    sim: SimServer,
    clock: WallClock,
    manager: Manager,
    /// Auth keys the test read from Secrets, for the leak scan.
    seen: std::sync::Mutex<Vec<String>>,
    logs: LogCapture,
    _logging: tracing::dispatcher::DefaultGuard,
}

/// A connected tailnet whose Base policy is the seed's (it owns `tag:funnel`), the Service
/// `apps/web:8080`, and the operator started with a controllable clock.
async fn start() -> Env {
    let (fake, sim) = (fake(), sim().await);
    connect_tailnet(&fake, &sim);
    // The seed's policy without its nodeAttrs: the funnel attribute comes from the exposure.
    let (seed_policy, _) = sim.tailnet().policy();
    let mut base = parse_strict(&seed_policy).unwrap();
    base.as_object_mut().unwrap().remove("nodeAttrs");
    create::<TailnetPolicy>(
        &fake,
        "base",
        json!({"role": "Base", "policy": serde_json::to_string_pretty(&base).unwrap()}),
    );
    fake.create(
        &Gvr::of::<Service>(),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "apps"},
               "spec": {"ports": [{"port": 8080}], "selector": {"app": "web"}}}),
    )
    .unwrap();
    let (logs, logging) = LogCapture::install();
    let clock = WallClock::system();
    let mut config = run_config();
    config.clock = clock.clone();
    let manager = start_manager(&fake, config).await;
    // The Base applied (the seed's node attribute gone) before any exposure exists.
    fake.wait_for("the Base applied", HANG_GUARD, |_| {
        (!sim.tailnet().policy().0.contains("\"funnel\"")).then_some(())
    })
    .await;
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

fn in_hours(clock: &WallClock, hours: i64) -> String {
    (clock.now() + chrono::Duration::hours(hours))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Env {
    fn exposure(&self) -> FunnelExposure {
        object::<FunnelExposure>(&self.fake, NAME).expect("the exposure exists")
    }

    fn phase(&self) -> Option<Phase> {
        object::<FunnelExposure>(&self.fake, NAME)?.status?.phase
    }

    fn ready_reason(&self) -> String {
        let status = self.exposure().status.unwrap_or_default();
        status
            .common
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_default()
    }

    async fn wait_phase(&self, phase: Phase) {
        self.fake
            .wait_for(&format!("phase {phase:?}"), HANG_GUARD, |_| {
                (self.phase() == Some(phase)).then_some(())
            })
            .await;
    }

    fn get<K>(&self, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        self.fake.get_as::<K>(Some("apps"), name)
    }

    /// The proxy objects that exist, by kind.
    fn proxy_objects(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        if self.get::<Deployment>("demo-funnel").is_some() {
            found.push("Deployment");
        }
        if self.get::<ConfigMap>("demo-funnel-serve").is_some() {
            found.push("ConfigMap");
        }
        if self.get::<ServiceAccount>("demo-funnel").is_some() {
            found.push("ServiceAccount");
        }
        if self.get::<Role>("demo-funnel").is_some() {
            found.push("Role");
        }
        if self.get::<RoleBinding>("demo-funnel").is_some() {
            found.push("RoleBinding");
        }
        for secret in ["demo-funnel-authkey", "demo-funnel-state"] {
            if self.get::<KubeSecret>(secret).is_some() {
                found.push("Secret");
            }
        }
        found
    }

    /// Starts the pod: waits for the Deployment, then joins with the Secret's auth key.
    async fn start_pod(&self) {
        self.fake
            .wait_for("the proxy Deployment", HANG_GUARD, |_| {
                self.get::<Deployment>("demo-funnel")
            })
            .await;
        let secret = self
            .get::<KubeSecret>("demo-funnel-authkey")
            .expect("the key's Secret");
        let key = String::from_utf8(secret.data.unwrap()["authkey"].0.clone()).unwrap();
        self.seen.lock().unwrap().push(key.clone());
        self.sim
            .tailnet()
            .node_join(&key, "demo")
            .expect("the key joins the proxy");
    }

    /// Live keys carrying the exposure's marker.
    async fn live_keys(&self) -> usize {
        let marker = marker(&format!("{NAMESPACE}/{TAILNET}"), "funnel/apps/demo");
        api_key_client(&self.sim)
            .list_keys(true)
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.description.starts_with(&marker) && !k.invalid)
            .count()
    }

    fn policy_grants_funnel(&self) -> bool {
        let (text, _) = self.sim.tailnet().policy();
        text.contains("\"funnel\"")
    }

    async fn wait_policy(&self, granted: bool) {
        self.fake
            .wait_for(
                &format!("node attribute present: {granted}"),
                HANG_GUARD,
                |_| (self.policy_grants_funnel() == granted).then_some(()),
            )
            .await;
    }

    /// Moves both clocks, then forces a reconcile.
    fn advance(&self, hours: u64, label: &str) {
        let by = Duration::from_secs(hours * HOUR);
        self.sim.tailnet().advance_clock(by);
        self.clock.advance(by);
        force_reconcile::<FunnelExposure>(&self.fake, NAME, label);
    }

    fn assert_no_leak(&self) {
        let seen = self.seen.lock().unwrap().clone();
        assert_no_leak::<FunnelExposure>(&self.fake, &self.manager, &self.logs.text(), &seen);
    }

    fn event_reasons(&self) -> Vec<String> {
        self.fake
            .events_for("FunnelExposure", "demo")
            .into_iter()
            .map(|e| e.reason)
            .collect()
    }
}

fn spec(expires_at: &str) -> Value {
    json!({"service": {"name": "web", "port": 8080}, "hostname": "demo", "expiresAt": expires_at})
}

#[tokio::test]
async fn an_exposure_goes_active_with_its_url_a_resync_writes_nothing_and_the_end_undoes_it() {
    let env = start().await;
    create::<FunnelExposure>(&env.fake, NAME, spec(&in_hours(&env.clock, 2)));
    env.start_pod().await;
    env.wait_phase(Phase::Active).await;

    // Policy, key, objects.
    assert!(
        env.policy_grants_funnel(),
        "the node attribute is in the live policy"
    );
    assert_eq!(calls(&env.sim, MINT), 1, "one key");
    assert_eq!(
        env.live_keys().await,
        0,
        "the spent key is revoked once the proxy joined"
    );
    assert_eq!(env.proxy_objects().len(), 7, "{:?}", env.proxy_objects());
    let serve: Value = serde_json::from_str(
        &env.get::<ConfigMap>("demo-funnel-serve")
            .unwrap()
            .data
            .unwrap()["serve.json"],
    )
    .unwrap();
    assert_eq!(serve["TCP"]["443"]["HTTPS"], json!(true));
    assert_eq!(
        serve["Web"]["${TS_CERT_DOMAIN}:443"]["Handlers"]["/"]["Proxy"],
        json!("http://web.apps.svc.cluster.local:8080")
    );
    assert_eq!(serve["AllowFunnel"]["${TS_CERT_DOMAIN}:443"], json!(true));
    let deployment = env.get::<Deployment>("demo-funnel").unwrap();
    let owners = deployment.metadata.owner_references.unwrap();
    assert_eq!(
        (owners[0].kind.as_str(), owners[0].name.as_str()),
        ("FunnelExposure", "demo")
    );

    // Status.
    let status = env.exposure().status.unwrap();
    let suffix = env.sim.tailnet().dns_suffix().to_owned();
    assert_eq!(
        status.url.as_deref(),
        Some(format!("https://demo.{suffix}").as_str())
    );
    let device = status.device.clone().unwrap();
    assert_eq!(
        env.sim.tailnet().device_id("demo").as_deref(),
        Some(device.id.as_str())
    );
    assert!(status.key_id.is_some());
    assert!(
        status.prerequisites.iter().all(|p| p.met),
        "{:?}",
        status.prerequisites
    );
    assert!(env.event_reasons().contains(&"Exposed".to_owned()));
    let metrics = env.manager.metrics().encode();
    assert!(
        metrics.contains("tailnet_operator_funnel_exposure_expiry_timestamp_seconds{name=\"demo\",namespace=\"apps\"}"),
        "{metrics}"
    );

    // A resync: nothing written anywhere.
    let before = (
        status_writes::<FunnelExposure>(&env.fake),
        env.fake.request_count("patch", "deployments"),
        calls(&env.sim, MINT),
        calls(&env.sim, SET_POLICY),
    );
    let done = env.manager.metrics().reconciles("FunnelExposure", "ok");
    force_reconcile::<FunnelExposure>(&env.fake, NAME, "resync");
    env.fake
        .wait_for("a resync", HANG_GUARD, |_| {
            (env.manager.metrics().reconciles("FunnelExposure", "ok") > done).then_some(())
        })
        .await;
    let after = (
        status_writes::<FunnelExposure>(&env.fake),
        env.fake.request_count("patch", "deployments"),
        calls(&env.sim, MINT),
        calls(&env.sim, SET_POLICY),
    );
    assert_eq!(
        before, after,
        "(status writes, deployment patches, mints, policy posts)"
    );

    // The end of the window.
    env.advance(3, "after-end");
    env.wait_phase(Phase::Expired).await;
    env.wait_policy(false).await;
    assert!(env.proxy_objects().is_empty(), "{:?}", env.proxy_objects());
    assert_eq!(
        env.sim.tailnet().device_id("demo"),
        None,
        "the device is deleted"
    );
    assert_eq!(
        calls(&env.sim, DELETE_DEVICE),
        1,
        "{:?}",
        env.sim.tailnet().calls()
    );
    assert_eq!(env.live_keys().await, 0);
    assert!(env.event_reasons().contains(&"ExposureEnded".to_owned()));
    assert!(
        !env.manager
            .metrics()
            .encode()
            .contains("funnel_exposure_expiry_timestamp_seconds{"),
        "an ended exposure has no series"
    );
    env.assert_no_leak();
    stop(env.manager).await;
}

#[tokio::test]
async fn a_future_window_deploys_nothing_until_it_starts() {
    let env = start().await;
    let window = json!({"start": in_hours(&env.clock, 1), "end": in_hours(&env.clock, 3)});
    let mut spec = spec("");
    spec.as_object_mut().unwrap().remove("expiresAt");
    spec["activeWindow"] = window;
    create::<FunnelExposure>(&env.fake, NAME, spec);
    env.wait_phase(Phase::Scheduled).await;
    assert!(
        env.ready_reason().starts_with("Scheduled"),
        "{}",
        env.ready_reason()
    );
    assert!(env.proxy_objects().is_empty());
    assert_eq!(calls(&env.sim, MINT), 0);
    assert!(!env.policy_grants_funnel());

    env.advance(1, "at-start");
    env.start_pod().await;
    env.wait_phase(Phase::Active).await;
    assert_eq!(calls(&env.sim, MINT), 1);
    stop(env.manager).await;
}

/// After a failed step: phase Failed, and nothing of the exposure left anywhere.
async fn assert_undone(env: &Env, step: &str) {
    env.wait_phase(Phase::Failed).await;
    let reason = env.ready_reason();
    assert!(reason.contains(&format!("{step} failed")), "{reason}");
    assert!(reason.contains("undone"), "{reason}");
    env.wait_policy(false).await;
    assert!(env.proxy_objects().is_empty(), "{:?}", env.proxy_objects());
    assert_eq!(env.live_keys().await, 0, "no key left");
    assert_eq!(env.sim.tailnet().device_id("demo"), None);
    assert!(env.event_reasons().contains(&"ExposureFailed".to_owned()));
}

#[tokio::test]
async fn a_refused_key_mint_leaves_nothing_behind() {
    let env = start().await;
    env.sim
        .tailnet()
        .set_fault(FaultRule::route(MINT).server_error(403).times(100));
    create::<FunnelExposure>(&env.fake, NAME, spec(&in_hours(&env.clock, 2)));
    assert_undone(&env, "minting the key").await;
    stop(env.manager).await;
}

#[tokio::test]
async fn a_refused_deployment_leaves_no_key_and_no_objects() {
    let env = start().await;
    env.fake.refuse("patch deployments", 100);
    create::<FunnelExposure>(&env.fake, NAME, spec(&in_hours(&env.clock, 2)));
    assert_undone(&env, "creating the proxy").await;
    assert_eq!(calls(&env.sim, MINT), 1, "the key was minted, then revoked");
    stop(env.manager).await;
}

#[tokio::test]
async fn a_refused_policy_post_leaves_no_key_and_no_objects() {
    let env = start().await;
    // The Base is applied first (it changes nothing); then every policy write is refused.
    env.fake
        .wait_for("the Base applied", HANG_GUARD, |f| {
            let base = f.get_as::<TailnetPolicy>(None, "base")?;
            base.status?
                .common
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready")
                .then_some(())
        })
        .await;
    env.sim
        .tailnet()
        .set_fault(FaultRule::route(SET_POLICY).server_error(400).times(100));
    create::<FunnelExposure>(&env.fake, NAME, spec(&in_hours(&env.clock, 2)));
    assert_undone(&env, "applying the funnel node attribute").await;
    assert_eq!(calls(&env.sim, MINT), 0, "no key was minted");
    stop(env.manager).await;
}

#[tokio::test]
async fn a_missing_prerequisite_stops_before_any_write_and_names_the_fix() {
    let env = start().await;
    env.sim
        .tailnet()
        .console_patch_settings(json!({"httpsEnabled": false}))
        .unwrap();
    // As the next resync would: the settings were read when the tailnet connected.
    env.manager
        .snapshots()
        .get(TAILNET)
        .unwrap()
        .invalidate_all();
    create::<FunnelExposure>(&env.fake, NAME, spec(&in_hours(&env.clock, 2)));
    env.fake
        .wait_for("PrerequisiteMissing", HANG_GUARD, |_| {
            env.ready_reason()
                .starts_with("PrerequisiteMissing")
                .then_some(())
        })
        .await;
    let reason = env.ready_reason();
    assert!(
        reason.contains("spec.settings.httpsEnabled: true"),
        "{reason}"
    );
    assert!(env.proxy_objects().is_empty());
    assert_eq!(calls(&env.sim, MINT), 0);
    assert!(
        !env.policy_grants_funnel(),
        "no node attribute while a prerequisite is missing"
    );
    let exposure = env.exposure();
    assert_eq!(exposure.tailnet_ref(), TAILNET);
    stop(env.manager).await;
}

#[tokio::test]
async fn deleting_an_active_exposure_tears_it_down_and_a_disallowed_namespace_gets_nothing() {
    let env = start().await;
    create::<FunnelExposure>(&env.fake, NAME, spec(&in_hours(&env.clock, 2)));
    env.start_pod().await;
    env.wait_phase(Phase::Active).await;
    env.fake
        .delete(&Gvr::of::<FunnelExposure>(), Some("apps"), "demo")
        .unwrap();
    wait_gone::<FunnelExposure>(&env.fake, NAME).await;
    env.wait_policy(false).await;
    assert!(env.proxy_objects().is_empty(), "{:?}", env.proxy_objects());
    assert_eq!(env.sim.tailnet().device_id("demo"), None);
    assert_eq!(env.live_keys().await, 0);

    // The tailnet allows exposures from `web-team` only.
    env.fake
        .merge_patch(
            &Gvr::of::<ManagedTailnet>(),
            None,
            TAILNET,
            json!({"spec": {"funnel": {"allowedNamespaces": ["web-team"]}}}),
        )
        .unwrap();
    let mints = calls(&env.sim, MINT);
    create::<FunnelExposure>(&env.fake, NAME, spec(&in_hours(&env.clock, 2)));
    env.fake
        .wait_for("NotAllowed", HANG_GUARD, |_| {
            env.ready_reason().starts_with("NotAllowed").then_some(())
        })
        .await;
    assert!(env.ready_reason().contains("spec.funnel.allowedNamespaces"));
    assert!(env.proxy_objects().is_empty());
    assert_eq!(
        calls(&env.sim, MINT),
        mints,
        "no key for a disallowed namespace"
    );
    assert!(!env.policy_grants_funnel());
    stop(env.manager).await;
}

#[tokio::test]
async fn orphan_leaves_the_device_and_says_so() {
    let env = start().await;
    let mut orphan = spec(&in_hours(&env.clock, 2));
    orphan["deletionPolicy"] = json!("Orphan");
    create::<FunnelExposure>(&env.fake, NAME, orphan);
    env.start_pod().await;
    env.wait_phase(Phase::Active).await;
    env.fake
        .delete(&Gvr::of::<FunnelExposure>(), Some("apps"), "demo")
        .unwrap();
    wait_gone::<FunnelExposure>(&env.fake, NAME).await;
    assert!(
        env.sim.tailnet().device_id("demo").is_some(),
        "the device stays"
    );
    assert_eq!(calls(&env.sim, DELETE_DEVICE), 0);
    let notes: Vec<String> = env
        .fake
        .events_for("FunnelExposure", "demo")
        .into_iter()
        .map(|e| e.note)
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("deletionPolicy: Orphan: device demo.")),
        "{notes:?}"
    );
    stop(env.manager).await;
}

#[tokio::test]
async fn a_key_that_lapses_before_the_pod_joins_is_replaced_and_the_pod_rolled() {
    let env = start().await;
    create::<FunnelExposure>(&env.fake, NAME, spec(&in_hours(&env.clock, 6)));
    let key_on_template = |env: &Env| -> Option<String> {
        let deployment = env.get::<Deployment>("demo-funnel")?;
        let annotations = deployment.spec?.template.metadata?.annotations?;
        annotations.get("tailnet.ops.dev/key-id").cloned()
    };
    let first = env
        .fake
        .wait_for("the proxy with its key", HANG_GUARD, |_| {
            key_on_template(&env).filter(|k| !k.is_empty())
        })
        .await;
    // The pod stays Pending past the key's hour.
    env.advance(2, "key-lapsed");
    let second = env
        .fake
        .wait_for("a new key on the pod template", HANG_GUARD, |_| {
            key_on_template(&env).filter(|k| *k != first)
        })
        .await;
    assert_eq!(calls(&env.sim, MINT), 2);
    assert_eq!(
        env.exposure().status.unwrap().key_id.as_deref(),
        Some(second.as_str())
    );
    env.start_pod().await;
    env.wait_phase(Phase::Active).await;
    assert_eq!(calls(&env.sim, MINT), 2, "no key after the join");
    stop(env.manager).await;
}
