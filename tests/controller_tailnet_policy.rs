//! The TailnetPolicy controller run for real by the manager (kube `Controller`, watches,
//! events) against the in-process fake API server and a simulated tailnet over HTTP.
//!
//! Writes to the tailnet are counted with the sim's call counter and status writes with the
//! fake API server's request counter, so "nothing was posted / written" is a counted fact.
//! Timeouts only guard against hangs: assertions wait for a state, never for time to pass.
mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};
use support::fake_kube::{FakeKube, Gvr};
use support::fixtures::{BASE, TEAM_DATA};
use support::kinds::{
    HANG_GUARD, condition, create, drift_gauge, finalizers, force_reconcile, object, resync,
    status_writes, wait_condition, wait_gone,
};
use support::operator::{NAMESPACE, TAILNET, connect_tailnet, sim};
use tailnet_operator::controller::{Manager, RunConfig};
use tailnet_operator::reconcile::tailnet_policy::{history_config_map_name, policy_hash};
use tailnet_operator::resources::conditions::find;
use tailnet_operator::resources::{ConditionType, ManagedTailnet, TailnetPolicy};
use tailnet_operator::sim::SimServer;

const POST_ACL: &str = "POST /api/v2/tailnet/{tailnet}/acl";

const REDEFINES_DATA: &str = r#"{
  "groups": {"group:data": ["carol@example.com"]},
}"#;

const UNOWNED_TAG: &str = r#"{
  "grants": [{"src": ["group:eng"], "dst": ["tag:nobody-owns-this"], "ip": ["tcp:80"]}],
}"#;

fn fake() -> FakeKube {
    FakeKube::new()
        .with_status_subresource_for::<ManagedTailnet>()
        .with_status_subresource_for::<TailnetPolicy>()
}

async fn start(fake: &FakeKube) -> Manager {
    let config = RunConfig {
        namespace: NAMESPACE.to_owned(),
        identity: "op-0".to_owned(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        leader_election: None,
        proposal_ttl: tailnet_operator::controller::change_proposal::DEFAULT_PROPOSAL_TTL,
        clock: tailnet_operator::snapshot::WallClock::system(),
        webhook_listen: None,
        webhook_tolerance: tailnet_operator::webhook::DEFAULT_TOLERANCE,
    };
    Manager::start(fake.client(), config)
        .await
        .expect("manager starts")
}

fn create_policy(fake: &FakeKube, name: &str, role: &str, spec_extra: Value) {
    let mut spec = spec_extra;
    spec["role"] = json!(role);
    create::<TailnetPolicy>(fake, name, spec);
}

fn create_inline(fake: &FakeKube, name: &str, role: &str, text: &str) {
    create_policy(fake, name, role, json!({"policy": text}));
}

async fn wait_revision(fake: &FakeKube, name: &str, revision: u32) -> TailnetPolicy {
    fake.wait_for(
        &format!("{name}: appliedRevision {revision}"),
        HANG_GUARD,
        |f| {
            object::<TailnetPolicy>(f, name).filter(|p| {
                p.status.as_ref().and_then(|s| s.applied_revision) == Some(revision)
                    && p.status.as_ref().is_some_and(|s| {
                        find(&s.common.conditions, ConditionType::Ready)
                            .is_some_and(|c| c.status == "True")
                    })
            })
        },
    )
    .await
}

/// Forces a reconcile of `name` and waits until it has finished: it read the revision history
/// (every pass does, once) and one more reconcile completed. Only for a quiet operator, where
/// nothing else is reconciling.
async fn forced_reconcile(fake: &FakeKube, manager: &Manager, name: &str, value: &str) {
    let reads = fake.request_count("get", "configmaps");
    let done = manager.metrics().reconciles("TailnetPolicy", "ok");
    force_reconcile::<TailnetPolicy>(fake, name, value);
    fake.wait_for(&format!("a forced reconcile of {name}"), HANG_GUARD, |f| {
        (f.request_count("get", "configmaps") > reads
            && manager.metrics().reconciles("TailnetPolicy", "ok") > done)
            .then_some(())
    })
    .await;
}

fn posts(sim: &SimServer) -> u64 {
    sim.tailnet().calls().get(POST_ACL)
}

fn live(sim: &SimServer) -> String {
    sim.tailnet().policy().0
}

/// Events about the two policies of the steady-state test, counting repeats.
fn event_count(fake: &FakeKube) -> i64 {
    ["base", "a-team-data"]
        .iter()
        .flat_map(|name| fake.events_for("TailnetPolicy", name))
        .map(|e| e.count)
        .sum()
}

/// A connected tailnet and a Base applied as revision 1.
async fn with_base(drift_policy: &str) -> (FakeKube, SimServer, Manager) {
    let (fake, sim) = (fake(), sim().await);
    connect_tailnet(&fake, &sim);
    create_policy(
        &fake,
        "base",
        "Base",
        json!({"policy": BASE, "driftPolicy": drift_policy}),
    );
    let manager = start(&fake).await;
    wait_revision(&fake, "base", 1).await;
    (fake, sim, manager)
}

#[tokio::test]
async fn a_base_policy_is_applied_byte_for_byte_with_history() {
    let (fake, sim, manager) = with_base("Correct").await;

    assert_eq!(
        live(&sim),
        BASE,
        "the tailnet holds the Base, comments included"
    );
    let p = object::<TailnetPolicy>(&fake, "base").unwrap();
    let status = p.status.unwrap();
    assert_eq!(status.applied_revision, Some(1));
    assert_eq!(status.common.observed_generation, p.metadata.generation);
    assert!(status.applied_hash.is_some());
    let history = fake.get(
        &Gvr::of::<ConfigMap>(),
        Some(NAMESPACE),
        &history_config_map_name(TAILNET),
    );
    let history = history.expect("the history ConfigMap is in the operator namespace");
    assert!(history["data"]["revision-1"].is_string(), "{history}");
    let events = fake.events_for("TailnetPolicy", "base");
    assert!(
        events
            .iter()
            .any(|e| e.type_ == "Normal" && e.reason == "Applied" && e.note.contains("revision 1")),
        "{events:?}"
    );
    assert_eq!(
        drift_gauge::<TailnetPolicy>(&manager, "base")
            .as_deref()
            .map(|l| l.ends_with(" 0")),
        Some(true)
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_policy_waits_for_its_tailnet_and_applies_when_it_becomes_ready() {
    let (fake, sim) = (fake(), sim().await);
    create_inline(&fake, "base", "Base", BASE);
    let manager = start(&fake).await;

    let (reason, message) =
        wait_condition::<TailnetPolicy>(&fake, "base", ConditionType::Ready, "False").await;
    assert_eq!(reason, "TailnetNotReady");
    assert!(message.contains("ManagedTailnet home"), "{message}");
    assert_eq!(posts(&sim), 0);

    // The ManagedTailnet watch triggers the policy once the ManagedTailnet is Ready.
    connect_tailnet(&fake, &sim);
    wait_revision(&fake, "base", 1).await;
    assert_eq!(live(&sim), BASE);

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn fragments_merge_and_a_redefined_group_is_a_conflict_naming_both_sources() {
    let (fake, sim, manager) = with_base("Correct").await;

    create_inline(&fake, "a-team-data", "Fragment", TEAM_DATA);
    let fragment = wait_revision(&fake, "a-team-data", 2).await;
    assert_eq!(fragment.status.unwrap().applied_revision, Some(2));
    let applied = live(&sim);
    assert!(
        applied.contains("// from TailnetPolicy/a-team-data"),
        "{applied}"
    );
    assert!(applied.contains("group:data"), "{applied}");
    // The Base's status follows from the same composition.
    wait_revision(&fake, "base", 2).await;

    create_inline(&fake, "b-redefines-data", "Fragment", REDEFINES_DATA);
    let (reason, message) =
        wait_condition::<TailnetPolicy>(&fake, "b-redefines-data", ConditionType::Ready, "False")
            .await;
    assert_eq!(reason, "Conflict");
    assert!(message.contains("a-team-data"), "{message}");
    assert!(message.contains("b-redefines-data"), "{message}");
    assert!(message.contains("group:data"), "{message}");
    let conflicts = object::<TailnetPolicy>(&fake, "b-redefines-data")
        .unwrap()
        .status
        .unwrap()
        .conflicts;
    assert!(!conflicts.is_empty());
    // The rest still applies: the first fragment stays applied and Ready.
    let (first, _, _) =
        condition::<TailnetPolicy>(&fake, "a-team-data", ConditionType::Ready).unwrap();
    assert_eq!(first, "True");
    assert_eq!(
        live(&sim),
        applied,
        "the tailnet keeps the Base and the first fragment"
    );
    let events = fake.events_for("TailnetPolicy", "b-redefines-data");
    assert!(
        events
            .iter()
            .any(|e| e.type_ == "Warning" && e.reason == "Conflict"),
        "{events:?}"
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_unowned_tag_is_named_and_nothing_is_posted() {
    let (fake, sim, manager) = with_base("Correct").await;
    let before = posts(&sim);

    create_inline(&fake, "web", "Fragment", UNOWNED_TAG);
    let (reason, message) =
        wait_condition::<TailnetPolicy>(&fake, "web", ConditionType::Ready, "False").await;
    assert!(
        message.contains("tag:nobody-owns-this"),
        "{reason}: {message}"
    );
    assert_eq!(
        posts(&sim),
        before,
        "no POST /acl for a policy that fails its checks"
    );
    assert_eq!(live(&sim), BASE, "the tailnet's policy is unchanged");

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_policy_from_a_config_map_is_applied_and_a_missing_one_is_named() {
    let (fake, sim) = (fake(), sim().await);
    connect_tailnet(&fake, &sim);
    create_policy(
        &fake,
        "base",
        "Base",
        json!({"policyFrom": {"configMapKeyRef": {
            "namespace": "policies", "name": "acl", "key": "policy.hujson"}}}),
    );
    let manager = start(&fake).await;
    // (Before the ManagedTailnet is Ready, the reason is TailnetNotReady.)
    let message = fake
        .wait_for("Ready=False reason NotFound", HANG_GUARD, |f| {
            condition::<TailnetPolicy>(f, "base", ConditionType::Ready)
                .filter(|(s, r, _)| s == "False" && r == "NotFound")
                .map(|(_, _, m)| m)
        })
        .await;
    assert!(
        message.contains("ConfigMap policies/acl key policy.hujson"),
        "{message}"
    );

    // Creating the ConfigMap triggers the policy through the ConfigMap watch.
    fake.create(
        &Gvr::of::<ConfigMap>(),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "acl", "namespace": "policies"},
            "data": {"policy.hujson": BASE},
        }),
    )
    .expect("config map created");
    wait_revision(&fake, "base", 1).await;
    assert_eq!(live(&sim), BASE);

    // Steady state: the policy's ConfigMap is read again only when the watch has seen it
    // change, however many passes run.
    let source_reads = |f: &FakeKube| {
        f.requests()
            .iter()
            .filter(|r| r.starts_with("GET /api/v1/namespaces/policies/configmaps/acl"))
            .count()
    };
    let before = source_reads(&fake);
    for i in 0..3 {
        forced_reconcile(&fake, &manager, "base", &format!("2026-11-22T01:00:0{i}Z")).await;
    }
    assert_eq!(
        source_reads(&fake),
        before,
        "three passes, no re-read of the unchanged policy ConfigMap"
    );

    // A change to the ConfigMap is read and applied.
    let edited = BASE.replace("// Base", "// Base, edited in its ConfigMap");
    assert_ne!(edited, BASE, "the edit changes the text");
    fake.merge_patch(
        &Gvr::of::<ConfigMap>(),
        Some("policies"),
        "acl",
        json!({"data": {"policy.hujson": edited}}),
    )
    .expect("config map edited");
    wait_revision(&fake, "base", 2).await;
    assert_eq!(live(&sim), edited);
    assert!(
        source_reads(&fake) > before,
        "the changed ConfigMap was read"
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

const INVALID_HUJSON: &str = "{\n  \"groups\": {\"group:ops\": [\"bob@example.com\"]\n}\n";

const FAILING_TEST: &str = r#"{
  "tests": [{"src": "carol@example.com", "accept": ["tag:prod:5432"]}],
}"#;

/// Fragments that fail before they ever applied are left out (which removes nothing from the
/// tailnet); the Base stays Ready.
#[tokio::test]
async fn invalid_hujson_and_a_failing_policy_test_are_named_and_left_out() {
    let (fake, sim, manager) = with_base("Correct").await;
    let before = posts(&sim);

    create_inline(&fake, "broken", "Fragment", INVALID_HUJSON);
    let (_, message) =
        wait_condition::<TailnetPolicy>(&fake, "broken", ConditionType::Ready, "False").await;
    assert!(
        message.contains("line"),
        "the parse error has a position: {message}"
    );
    create_inline(&fake, "wrong-test", "Fragment", FAILING_TEST);
    let (_, message) =
        wait_condition::<TailnetPolicy>(&fake, "wrong-test", ConditionType::Ready, "False").await;
    assert!(message.contains("carol@example.com"), "{message}");
    assert!(message.contains("tag:prod:5432"), "{message}");

    assert!(message.contains("left out"), "{message}");

    assert_eq!(posts(&sim), before, "no POST /acl: nothing else changed");
    assert_eq!(live(&sim), BASE, "the tailnet's policy is unchanged");
    let (base_ready, base_reason, base_message) =
        condition::<TailnetPolicy>(&fake, "base", ConditionType::Ready).unwrap();
    assert_eq!(
        (base_ready.as_str(), base_reason.as_str()),
        ("True", "Reconciled"),
        "{base_message}"
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

const CONSOLE_EDIT: &str = r#"{
  "groups": {"group:eng": ["alice@example.com"]},
  "grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}],
}"#;

#[tokio::test]
async fn a_console_edit_is_corrected_with_drift_policy_correct() {
    let (fake, sim, manager) = with_base("Correct").await;
    let writes_before = status_writes::<TailnetPolicy>(&fake);

    sim.tailnet()
        .console_set_policy(CONSOLE_EDIT)
        .expect("console edit");
    force_reconcile::<TailnetPolicy>(&fake, "base", "2026-11-22T00:00:00Z");
    wait_revision(&fake, "base", 2).await;
    assert_eq!(live(&sim), BASE, "the Base is restored");
    let (drifted, reason, _) =
        condition::<TailnetPolicy>(&fake, "base", ConditionType::Drifted).unwrap();
    assert_eq!((drifted.as_str(), reason.as_str()), ("False", "InSync"));
    // The drift was written to status before the correction (Drifted=True with the diff), then
    // the corrected state: two status writes in the pass, not one.
    assert!(
        status_writes::<TailnetPolicy>(&fake) - writes_before >= 2,
        "status writes in the correcting pass: {}",
        status_writes::<TailnetPolicy>(&fake) - writes_before
    );
    // kube's Recorder folds events with the same reason into one series (count), keeping the
    // first note: "drift detected" with the diff summary, then the correction (count 2), and a
    // second Applied.
    fake.wait_for(
        "a Drifted warning series and a second Applied",
        HANG_GUARD,
        |f| {
            let events = f.events_for("TailnetPolicy", "base");
            let drifted = events.iter().any(|e| {
                e.type_ == "Warning"
                    && e.reason == "Drifted"
                    && e.note.starts_with("drift detected:")
                    && e.note.contains("differences")
                    && e.count >= 2
            });
            let applied = events.iter().any(|e| e.reason == "Applied" && e.count >= 2);
            (drifted && applied).then_some(())
        },
    )
    .await;
    assert!(
        drift_gauge::<TailnetPolicy>(&manager, "base")
            .unwrap()
            .ends_with(" 0")
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_console_edit_is_reported_with_drift_policy_report() {
    let (fake, sim, manager) = with_base("Report").await;
    let before = posts(&sim);

    sim.tailnet()
        .console_set_policy(CONSOLE_EDIT)
        .expect("console edit");
    force_reconcile::<TailnetPolicy>(&fake, "base", "2026-11-22T00:00:00Z");
    let (reason, message) =
        wait_condition::<TailnetPolicy>(&fake, "base", ConditionType::Drifted, "True").await;
    assert_eq!(reason, "Drifted", "{message}");
    let status = object::<TailnetPolicy>(&fake, "base")
        .unwrap()
        .status
        .unwrap();
    let drift = status.drift.expect("status.drift shows the diff");
    assert!(drift.total() > 0, "{drift:?}");
    assert_eq!(live(&sim), CONSOLE_EDIT, "Report leaves the console edit");
    assert_eq!(posts(&sim), before, "no POST with driftPolicy: Report");
    assert!(
        drift_gauge::<TailnetPolicy>(&manager, "base")
            .unwrap()
            .ends_with(" 1")
    );
    let events = fake.events_for("TailnetPolicy", "base");
    assert!(
        events
            .iter()
            .any(|e| e.type_ == "Warning" && e.reason == "Drifted"),
        "{events:?}"
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn steady_state_forced_reconciles_post_nothing_and_write_no_status() {
    let (fake, sim, manager) = with_base("Correct").await;
    create_inline(&fake, "a-team-data", "Fragment", TEAM_DATA);
    wait_revision(&fake, "a-team-data", 2).await;
    wait_revision(&fake, "base", 2).await;

    // Converged: the first pass after an apply settles the messages ("applied revision 2"
    // becomes "the tailnet holds revision 2"), one status write per policy.
    force_reconcile::<TailnetPolicy>(&fake, "base", "warm-up");
    for name in ["base", "a-team-data"] {
        fake.wait_for(&format!("{name} settled"), HANG_GUARD, |f| {
            condition::<TailnetPolicy>(f, name, ConditionType::Ready)
                .filter(|(_, _, m)| m == "the tailnet holds revision 2")
        })
        .await;
    }

    let (posts_before, writes_before) = (posts(&sim), status_writes::<TailnetPolicy>(&fake));
    let events_before = event_count(&fake);
    for (i, name) in ["base", "a-team-data", "base", "a-team-data"]
        .iter()
        .enumerate()
    {
        forced_reconcile(&fake, &manager, name, &format!("2026-11-22T00:00:0{i}Z")).await;
    }
    assert_eq!(posts(&sim), posts_before, "no POST /acl in steady state");
    assert_eq!(
        status_writes::<TailnetPolicy>(&fake),
        writes_before,
        "no status write in steady state"
    );
    assert_eq!(
        event_count(&fake),
        events_before,
        "no event in steady state"
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn deleting_a_fragment_with_deletion_policy_delete_takes_its_rules_out() {
    let (fake, sim, manager) = with_base("Correct").await;
    assert!(
        finalizers::<TailnetPolicy>(&fake, "base").is_empty(),
        "Orphan (default): no finalizer"
    );
    create_policy(
        &fake,
        "a-team-data",
        "Fragment",
        json!({"policy": TEAM_DATA, "deletionPolicy": "Delete"}),
    );
    wait_revision(&fake, "a-team-data", 2).await;
    assert_eq!(
        finalizers::<TailnetPolicy>(&fake, "a-team-data"),
        ["tailnet.ops.dev/cleanup"]
    );
    assert!(live(&sim).contains("// from TailnetPolicy/a-team-data"));

    fake.delete(&Gvr::of::<TailnetPolicy>(), None, "a-team-data")
        .expect("delete accepted");
    wait_gone::<TailnetPolicy>(&fake, "a-team-data").await;
    assert_eq!(live(&sim), BASE, "the tailnet holds the Base alone again");
    wait_revision(&fake, "base", 3).await;

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn deleting_a_base_resets_the_policy_only_with_deletion_policy_delete() {
    let (fake, sim, manager) = with_base("Correct").await;
    // Orphan (the default): deleting writes nothing.
    let before = posts(&sim);
    fake.delete(&Gvr::of::<TailnetPolicy>(), None, "base")
        .expect("delete accepted");
    wait_gone::<TailnetPolicy>(&fake, "base").await;
    assert_eq!(live(&sim), BASE);
    assert_eq!(posts(&sim), before);

    // Delete: the policy is reset to Tailscale's default.
    create_policy(
        &fake,
        "base2",
        "Base",
        json!({"policy": BASE, "deletionPolicy": "Delete"}),
    );
    fake.wait_for("base2 has its finalizer and is Ready", HANG_GUARD, |f| {
        let ready = condition::<TailnetPolicy>(f, "base2", ConditionType::Ready)?;
        (ready.0 == "True" && !finalizers::<TailnetPolicy>(f, "base2").is_empty()).then_some(())
    })
    .await;
    fake.delete(&Gvr::of::<TailnetPolicy>(), None, "base2")
        .expect("delete accepted");
    wait_gone::<TailnetPolicy>(&fake, "base2").await;
    let reset = live(&sim);
    assert_ne!(reset, BASE);
    assert!(
        reset.contains("autogroup:nonroot"),
        "the default policy: {reset}"
    );
    assert!(
        fake.events_for("TailnetPolicy", "base2")
            .iter()
            .any(|e| e.reason == "PolicyReset"),
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_rollback_to_annotation_pins_a_kept_revision_at_once() {
    let (fake, sim, manager) = with_base("Correct").await;
    create_inline(&fake, "a-team-data", "Fragment", TEAM_DATA);
    wait_revision(&fake, "base", 2).await;
    assert_ne!(live(&sim), BASE);

    // The annotation alone triggers the reconcile (no reconcile-at needed).
    fake.merge_patch(
        &Gvr::of::<TailnetPolicy>(),
        None,
        "base",
        json!({"metadata": {"annotations": {"tailnet.ops.dev/rollback-to": "1"}}}),
    )
    .expect("annotated");
    let message = fake
        .wait_for("base pinned to revision 1", HANG_GUARD, |f| {
            let p = object::<TailnetPolicy>(f, "base")?;
            let status = p.status?;
            let ready = find(&status.common.conditions, ConditionType::Ready)?;
            (status.pinned_revision == Some(1) && ready.reason == "Pinned")
                .then(|| ready.message.clone())
        })
        .await;
    assert_eq!(
        live(&sim),
        BASE,
        "revision 1 (the Base alone) is live again: {message}"
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

const GET_ACL: &str = "GET /api/v2/tailnet/{tailnet}/acl";
const GET_DEVICES: &str = "GET /api/v2/tailnet/{tailnet}/devices";
const GET_USERS: &str = "GET /api/v2/tailnet/{tailnet}/users";

/// Issue 3: reconciling 50 policy resources in steady state costs a constant number of API
/// reads per resync (one per area), not one per resource.
#[tokio::test]
async fn fifty_policies_cost_one_read_per_area_per_resync() {
    let (fake, sim) = (fake(), sim().await);
    connect_tailnet(&fake, &sim);
    create_inline(&fake, "base", "Base", BASE);
    let fragments: Vec<String> = (1..50).map(|i| format!("team-{i:02}")).collect();
    for (i, name) in fragments.iter().enumerate() {
        let text = format!(r#"{{"groups": {{"group:{name}": ["alice@example.com"]}}}} // {i}"#);
        create_inline(&fake, name, "Fragment", &text);
    }
    let manager = start(&fake).await;
    let revision = fake
        .wait_for("all 50 policies Ready on one revision", HANG_GUARD, |f| {
            let mut revisions = std::collections::BTreeSet::new();
            for name in std::iter::once("base").chain(fragments.iter().map(String::as_str)) {
                let status = object::<TailnetPolicy>(f, name)?.status?;
                let ready = find(&status.common.conditions, ConditionType::Ready)?;
                (ready.status == "True").then_some(())?;
                revisions.insert(status.applied_revision?);
            }
            (revisions.len() == 1).then(|| *revisions.iter().next().unwrap())
        })
        .await;
    let text = live(&sim);
    assert!(text.contains("// from TailnetPolicy/team-49"), "{text}");

    // Resyncs: the shared snapshots expire (as at the end of resyncInterval) and all 50
    // policies reconcile (triggered through the ManagedTailnet watch by a label on the ManagedTailnet). The
    // first one also absorbs reconciles still queued from start-up; the second is measured.
    resync::<TailnetPolicy>(&fake, &manager, 50, "1").await;
    let posts_before = posts(&sim);
    let reads = |route: &str| sim.tailnet().calls().get(route);
    let before = (reads(GET_ACL), reads(GET_DEVICES), reads(GET_USERS));
    resync::<TailnetPolicy>(&fake, &manager, 50, "2").await;
    let figures = (
        reads(GET_ACL) - before.0,
        reads(GET_DEVICES) - before.1,
        reads(GET_USERS) - before.2,
    );
    eprintln!("50 policies, one resync: GET acl/devices/users = {figures:?}");
    assert_eq!(
        figures,
        (1, 1, 1),
        "one read per area, whatever the number of policies"
    );
    assert_eq!(posts(&sim), posts_before, "no write in steady state");
    assert_eq!(
        object::<TailnetPolicy>(&fake, "base")
            .unwrap()
            .status
            .unwrap()
            .applied_revision,
        Some(revision)
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

/// Issue 3: a concurrent write between read and write (412) never overwrites blindly.
#[tokio::test]
async fn a_write_between_read_and_write_is_a_412_and_the_retry_plans_on_a_fresh_read() {
    let (fake, sim, manager) = with_base("Correct").await;
    // The operator's shared snapshot holds the live policy (read now, cached for the resync
    // interval)...
    manager
        .snapshots()
        .get(TAILNET)
        .expect("the ManagedTailnet's snapshots")
        .policy()
        .await
        .expect("policy read");
    // ...someone edits it in the console...
    sim.tailnet()
        .console_set_policy(CONSOLE_EDIT)
        .expect("console edit");
    let before = posts(&sim);
    // ...and a new Fragment makes the operator write, with the ETag of its (stale) read.
    create_inline(&fake, "a-team-data", "Fragment", TEAM_DATA);
    let note = fake
        .wait_for("a Conflict warning", HANG_GUARD, |f| {
            f.events_for("TailnetPolicy", "a-team-data")
                .into_iter()
                .find(|e| e.type_ == "Warning" && e.reason == "Conflict")
                .map(|e| e.note)
        })
        .await;
    assert!(note.contains("412"), "{note}");
    assert!(note.contains("nothing was overwritten"), "{note}");
    // The retry re-read the policy: its write carried the new ETag and was accepted.
    wait_revision(&fake, "a-team-data", 2).await;
    assert_eq!(
        posts(&sim),
        before + 2,
        "one refused POST (412), one after re-reading"
    );
    assert!(live(&sim).contains("// from TailnetPolicy/a-team-data"));

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

/// The Base with one more grant: the spec change that makes revision 2.
fn base_v2() -> String {
    BASE.replace(
        "    {\"src\": [\"group:eng\"], \"dst\": [\"tag:server\"], \"ip\": [\"tcp:443\"]},\n",
        "    {\"src\": [\"group:eng\"], \"dst\": [\"tag:server\"], \"ip\": [\"tcp:443\"]},\n    \
         {\"src\": [\"group:eng\"], \"dst\": [\"tag:ci\"], \"ip\": [\"tcp:22\"]},\n",
    )
}

/// What someone saves in the admin console right after the operator's write.
fn console_save() -> String {
    BASE.replace(
        "// Base policy of the demo tailnet (test fixture).",
        "// Edited in the admin console a moment after the operator's write.",
    )
}

/// A console save that lands between the operator's `POST /acl` and its read-back is someone
/// else's later edit, not a failed write: with `driftPolicy: Report` it survives, the applied
/// revision is recorded, and the resource reports the drift (no rollback, one POST).
#[tokio::test]
async fn a_console_edit_between_the_post_and_the_read_back_survives_and_is_reported_as_drift() {
    let (fake, sim, manager) = with_base("Report").await;
    let v2 = base_v2();
    assert_ne!(v2, BASE, "the new grant was inserted");

    sim.tailnet()
        .console_edit_after_next_save(console_save())
        .expect("console edit armed");
    let before = posts(&sim);
    fake.merge_patch(
        &Gvr::of::<TailnetPolicy>(),
        None,
        "base",
        json!({"spec": {"policy": v2}}),
    )
    .expect("spec changed");

    wait_revision(&fake, "base", 2).await;
    let (reason, message) =
        wait_condition::<TailnetPolicy>(&fake, "base", ConditionType::Drifted, "True").await;
    assert_eq!(reason, "Drifted", "{message}");
    assert!(
        message.contains("saved again right after this write"),
        "{message}"
    );
    assert_eq!(live(&sim), console_save(), "the console edit survives");
    assert_eq!(posts(&sim) - before, 1, "one POST: no rollback");
    let status = object::<TailnetPolicy>(&fake, "base")
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        status.applied_hash.as_deref(),
        Some(policy_hash(&v2).as_str())
    );
    assert!(status.drift.is_some(), "the drift is shown: {status:?}");

    let history = fake
        .get(
            &Gvr::of::<ConfigMap>(),
            Some(NAMESPACE),
            &history_config_map_name(TAILNET),
        )
        .expect("history ConfigMap");
    let revision: Value = serde_json::from_str(
        history["data"]["revision-2"]
            .as_str()
            .unwrap_or_else(|| panic!("revision-2 in {history}")),
    )
    .unwrap();
    assert_eq!(revision["reason"], "SpecChanged", "{revision}");
    let map: ConfigMap = serde_json::from_value(history.clone()).unwrap();
    let revisions = tailnet_operator::reconcile::tailnet_policy::history::decode("h", &map)
        .expect("the history decodes");
    assert_eq!(
        revisions.last().unwrap().text,
        v2,
        "texts are stored by reference"
    );
    assert!(history["data"]["revision-3"].is_null(), "{history}");

    fake.wait_for("a Drifted warning", HANG_GUARD, |f| {
        f.events_for("TailnetPolicy", "base")
            .iter()
            .any(|e| {
                e.type_ == "Warning"
                    && e.reason == "Drifted"
                    && e.note.contains("saved again right after this write")
            })
            .then_some(())
    })
    .await;

    // The next pass reports it again and still writes nothing (driftPolicy: Report).
    let posted = posts(&sim);
    forced_reconcile(&fake, &manager, "base", "2026-11-22T00:00:00Z").await;
    assert_eq!(posts(&sim), posted, "a reported edit is not overwritten");
    assert_eq!(live(&sim), console_save());
    let (status, _, _) = condition::<TailnetPolicy>(&fake, "base", ConditionType::Drifted).unwrap();
    assert_eq!(status, "True");

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}
