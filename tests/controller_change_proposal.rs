//! The ChangeProposal controller run for real by the manager (kube `Controller`, watches,
//! events) together with the ManagedTailnet and TailnetPolicy controllers, against the in-process
//! fake API server and a simulated tailnet over HTTP.
//!
//! Timeouts only guard against hangs: assertions wait for a state, never for time to pass.
//! Writes to the tailnet are counted with the sim's call counter.
mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::fake_kube::{FakeKube, Gvr};
use support::fixtures::BASE;
use support::kinds::{HANG_GUARD, wait_condition};
use support::operator::{NAMESPACE, TAILNET, connect_tailnet, sim};
use tailnet_operator::cli::proposal::{ExportArgs, ExportFormat, export_with};
use tailnet_operator::controller::change_proposal::{DEFAULT_PROPOSAL_TTL, ProposeError, propose};
use tailnet_operator::controller::{Manager, RunConfig};
use tailnet_operator::proposal::{self, ProposalWorld};
use tailnet_operator::resources::change_proposal::{
    ChangeProposal, ChangeProposalSpec, ProposalPhase, ProposalTarget,
};
use tailnet_operator::resources::{ConditionType, ManagedTailnet, TailnetPolicy};
use tailnet_operator::sim::SimServer;

const POST_ACL: &str = "POST /api/v2/tailnet/{tailnet}/acl";

/// BASE with erin in group:eng: erin's devices gain tcp:443 to the servers.
fn with_erin() -> String {
    BASE.replace(
        "\"carol@example.com\"],",
        "\"carol@example.com\", \"erin@example.com\"],",
    )
}

fn fake() -> FakeKube {
    FakeKube::new()
        .with_status_subresource_for::<ManagedTailnet>()
        .with_status_subresource_for::<TailnetPolicy>()
        .with_status_subresource_for::<ChangeProposal>()
}

async fn start(fake: &FakeKube, proposal_ttl: Duration) -> Manager {
    let config = RunConfig {
        namespace: NAMESPACE.to_owned(),
        identity: "op-0".to_owned(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        leader_election: None,
        proposal_ttl,
        clock: tailnet_operator::snapshot::WallClock::system(),
        webhook_listen: None,
        webhook_tolerance: tailnet_operator::webhook::DEFAULT_TOLERANCE,
    };
    Manager::start(fake.client(), config)
        .await
        .expect("manager starts")
}

/// A connected tailnet and a Base applied (Ready), then the manager.
async fn with_base(drift_policy: &str, ttl: Duration) -> (FakeKube, SimServer, Manager) {
    let (fake, sim) = (fake(), sim().await);
    connect_tailnet(&fake, &sim);
    // Created the way `kubectl apply --server-side` does, so another manager owns the spec.
    fake.apply(
        &Gvr::of::<TailnetPolicy>(),
        json!({
            "apiVersion": "tailnet.ops.dev/v1alpha1",
            "kind": "TailnetPolicy",
            "metadata": {"name": "base"},
            "spec": {"tailnetRef": TAILNET, "role": "Base", "policy": BASE,
                     "driftPolicy": drift_policy},
        }),
    )
    .expect("policy applied");
    let manager = start(&fake, ttl).await;
    wait_condition::<TailnetPolicy>(&fake, "base", ConditionType::Ready, "True").await;
    (fake, sim, manager)
}

fn base(fake: &FakeKube) -> TailnetPolicy {
    fake.get_as::<TailnetPolicy>(None, "base")
        .expect("base exists")
}

fn create_proposal(fake: &FakeKube, name: &str, patch: Value, mode: &str) {
    fake.create(
        &Gvr::of::<ChangeProposal>(),
        json!({
            "apiVersion": "tailnet.ops.dev/v1alpha1",
            "kind": "ChangeProposal",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "target": {"kind": "TailnetPolicy", "name": "base"},
                "patch": patch,
                "summary": "test proposal",
                "mode": mode,
            },
        }),
    )
    .expect("proposal created");
}

fn approve(fake: &FakeKube, name: &str) {
    fake.merge_patch(
        &Gvr::of::<ChangeProposal>(),
        Some(NAMESPACE),
        name,
        json!({"spec": {"approved": true}}),
    )
    .expect("approved");
}

fn proposal(fake: &FakeKube, name: &str) -> Option<ChangeProposal> {
    fake.get_as::<ChangeProposal>(Some(NAMESPACE), name)
}

async fn wait_phase(fake: &FakeKube, name: &str, phase: ProposalPhase) -> ChangeProposal {
    fake.wait_for(&format!("{name}: phase {phase:?}"), HANG_GUARD, |f| {
        proposal(f, name).filter(|p| p.status.as_ref().and_then(|s| s.phase) == Some(phase))
    })
    .await
}

fn event_reasons(fake: &FakeKube, name: &str) -> Vec<String> {
    fake.events_for("ChangeProposal", name)
        .into_iter()
        .map(|e| e.reason)
        .collect()
}

/// Waits until the events about proposal `name` have exactly these reasons (an event is
/// published just after the status write it reports).
async fn wait_events(fake: &FakeKube, name: &str, reasons: &[&str]) {
    fake.wait_for(&format!("{name}: events {reasons:?}"), HANG_GUARD, |f| {
        (event_reasons(f, name) == reasons).then_some(())
    })
    .await;
}

fn live(sim: &SimServer) -> String {
    sim.tailnet().policy().0
}

#[tokio::test]
async fn a_proposal_is_pending_with_its_diffs_and_once_approved_changes_the_tailnet() {
    let (fake, sim, manager) = with_base("Correct", DEFAULT_PROPOSAL_TTL).await;
    let before = base(&fake);
    create_proposal(
        &fake,
        "add-erin",
        json!({"spec": {"policy": with_erin()}}),
        "Apply",
    );

    let pending = wait_phase(&fake, "add-erin", ProposalPhase::Pending).await;
    let status = pending.status.unwrap();
    assert!(
        status.validation.iter().all(|v| v.ok),
        "{:?}",
        status.validation
    );
    let checks: Vec<&str> = status.validation.iter().map(|v| v.check.as_str()).collect();
    assert!(checks.contains(&"policyTests"), "{checks:?}");
    let diff = status.diff.unwrap();
    assert!(diff.contains("\n+        \"group:eng\": [\"alice@example.com\", \"carol@example.com\", \"erin@example.com\"],"), "{diff}");
    let access = status.access_diff.unwrap();
    assert!(
        access
            .lines()
            .any(|l| l.starts_with("+ erin-laptop (erin@example.com) -> ") && l.contains("tcp:443")),
        "{access}"
    );
    assert!(!access.contains("\n- "), "nobody loses access: {access}");
    // Computed against the target as it was then (its status may have been written since).
    let version = |v: Option<&String>| v.and_then(|v| v.parse::<u64>().ok()).unwrap();
    assert!(
        version(status.target_resource_version.as_ref())
            >= version(before.metadata.resource_version.as_ref())
    );
    // Nothing happens before a human approves.
    assert_eq!(base(&fake).spec.policy.as_deref(), Some(BASE));

    let posts = sim.tailnet().calls().get(POST_ACL);
    approve(&fake, "add-erin");
    let applied = wait_phase(&fake, "add-erin", ProposalPhase::Applied).await;
    let status = applied.status.unwrap();
    assert!(status.applied_at.is_some() && status.finished_at.is_some());
    let target = fake.get(&Gvr::of::<TailnetPolicy>(), None, "base").unwrap();
    assert_eq!(target["spec"]["policy"], json!(with_erin()));
    let managers: Vec<&str> = target["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(
        managers.contains(&"tailnet-operator-proposals"),
        "{managers:?}"
    );

    // The TailnetPolicy controller takes it from there: the tailnet holds the new policy.
    fake.wait_for("the sim holds the proposed policy", HANG_GUARD, |_| {
        (live(&sim) == with_erin()).then_some(())
    })
    .await;
    assert_eq!(sim.tailnet().calls().get(POST_ACL), posts + 1);
    wait_events(&fake, "add-erin", &["Pending", "Approved", "Applied"]).await;
    // The proposals-by-phase gauge follows (at the next reconcile of any proposal).
    fake.merge_patch(
        &Gvr::of::<ChangeProposal>(),
        Some(NAMESPACE),
        "add-erin",
        json!({"metadata": {"annotations": {"tailnet.ops.dev/reconcile-at": "gauge"}}}),
    )
    .expect("annotated");
    fake.wait_for("the Applied gauge at 1", HANG_GUARD, |_| {
        let text = manager.metrics().encode();
        (text.contains(r#"tailnet_operator_change_proposals{phase="Applied"} 1"#)
            && text.contains(r#"tailnet_operator_change_proposals{phase="Pending"} 0"#))
        .then_some(())
    })
    .await;

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_proposal_whose_target_changed_becomes_stale_and_is_never_applied() {
    let (fake, sim, manager) = with_base("Correct", DEFAULT_PROPOSAL_TTL).await;
    create_proposal(
        &fake,
        "add-erin",
        json!({"spec": {"policy": with_erin()}}),
        "Apply",
    );
    wait_phase(&fake, "add-erin", ProposalPhase::Pending).await;

    // Someone edits the target in between.
    let edited = BASE.replace("// Base policy", "// Edited base policy");
    let mut spec = serde_json::to_value(&base(&fake).spec).unwrap();
    spec["policy"] = json!(edited);
    fake.set_spec(&Gvr::of::<TailnetPolicy>(), None, "base", spec)
        .expect("edited");

    let stale = wait_phase(&fake, "add-erin", ProposalPhase::Stale).await;
    let message = stale.status.unwrap().message.unwrap();
    assert!(
        message.contains("changed after the proposal was computed"),
        "{message}"
    );
    approve(&fake, "add-erin");
    // Approval of a stale proposal changes nothing: wait for the edit to reach the tailnet,
    // then check the proposal is still Stale and the spec is the edit.
    fake.wait_for("the sim holds the edit", HANG_GUARD, |_| {
        (live(&sim) == edited).then_some(())
    })
    .await;
    wait_phase(&fake, "add-erin", ProposalPhase::Stale).await;
    assert_eq!(base(&fake).spec.policy.as_deref(), Some(edited.as_str()));
    wait_events(&fake, "add-erin", &["Pending", "Stale"]).await;

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_gitops_proposal_is_approved_but_never_applied() {
    let (fake, sim, manager) = with_base("Correct", DEFAULT_PROPOSAL_TTL).await;
    let posts = sim.tailnet().calls().get(POST_ACL);
    create_proposal(
        &fake,
        "add-erin",
        json!({"spec": {"policy": with_erin()}}),
        "GitOps",
    );
    wait_phase(&fake, "add-erin", ProposalPhase::Pending).await;
    approve(&fake, "add-erin");

    let approved = wait_phase(&fake, "add-erin", ProposalPhase::Approved).await;
    let message = approved.status.unwrap().message.unwrap();
    assert!(message.contains("proposal export add-erin"), "{message}");
    assert_eq!(base(&fake).spec.policy.as_deref(), Some(BASE));
    assert_eq!(live(&sim), BASE);
    assert_eq!(sim.tailnet().calls().get(POST_ACL), posts);

    // `proposal export` prints the patched manifest to commit, or the merge patch.
    let args = |format| ExportArgs {
        name: "add-erin".into(),
        namespace: Some(NAMESPACE.into()),
        format,
        against: None,
    };
    let manifest = export_with(fake.client(), &args(ExportFormat::Manifest))
        .await
        .unwrap();
    assert!(
        manifest.starts_with("# ChangeProposal tailnet-system/add-erin\n# test proposal\n"),
        "{manifest}"
    );
    let exported: Value = serde_saphyr::from_str(&manifest).unwrap();
    assert_eq!(exported["spec"]["policy"], json!(with_erin()));
    assert_eq!(
        exported["metadata"],
        json!({"name": "base"}),
        "no server metadata"
    );
    assert!(exported.get("status").is_none());
    let patch = export_with(fake.client(), &args(ExportFormat::Patch))
        .await
        .unwrap();
    let exported: Value = serde_saphyr::from_str(&patch).unwrap();
    assert_eq!(exported, json!({"spec": {"policy": with_erin()}}));

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn invalid_patches_are_rejected_naming_the_problem() {
    let (fake, _sim, manager) = with_base("Correct", DEFAULT_PROPOSAL_TTL).await;
    create_proposal(
        &fake,
        "bad-role",
        json!({"spec": {"role": "Primary"}}),
        "Apply",
    );
    let failing_test = BASE.replace("\"ip\": [\"tcp:443\"]", "\"ip\": [\"tcp:80\"]");
    create_proposal(
        &fake,
        "bad-test",
        json!({"spec": {"policy": failing_test}}),
        "Apply",
    );
    create_proposal(
        &fake,
        "bad-path",
        json!({"status": {"appliedRevision": 9}}),
        "Apply",
    );

    let role = wait_phase(&fake, "bad-role", ProposalPhase::Rejected).await;
    let message = role.status.unwrap().message.unwrap();
    assert!(
        message.contains("spec.role") && message.contains("Primary"),
        "{message}"
    );
    let test = wait_phase(&fake, "bad-test", ProposalPhase::Rejected).await;
    let status = test.status.unwrap();
    let tests = status
        .validation
        .iter()
        .find(|v| v.check == "policyTests")
        .unwrap();
    assert!(
        !tests.ok && tests.message.contains("carol@example.com"),
        "{tests:?}"
    );
    // Created approved (the CRD's CEL rule forbids it; the fake API server runs no CEL).
    fake.create(
        &Gvr::of::<ChangeProposal>(),
        json!({
            "apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "ChangeProposal",
            "metadata": {"name": "self-approved", "namespace": NAMESPACE},
            "spec": {"target": {"kind": "TailnetPolicy", "name": "base"},
                     "patch": {"spec": {"policy": with_erin()}},
                     "summary": "sneaky", "approved": true},
        }),
    )
    .expect("created");
    let sneaky = wait_phase(&fake, "self-approved", ProposalPhase::Rejected).await;
    let message = sneaky.status.unwrap().message.unwrap();
    assert!(message.contains("created already approved"), "{message}");
    let path = wait_phase(&fake, "bad-path", ProposalPhase::Rejected).await;
    let message = path.status.unwrap().message.unwrap();
    assert!(message.contains("not status"), "{message}");
    assert_eq!(base(&fake).spec.policy.as_deref(), Some(BASE));
    wait_events(&fake, "bad-role", &["Rejected"]).await;

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn finished_proposals_are_deleted_after_the_ttl() {
    let (fake, _sim, manager) = with_base("Correct", Duration::from_secs(1)).await;
    create_proposal(
        &fake,
        "bad-role",
        json!({"spec": {"role": "Primary"}}),
        "Apply",
    );
    create_proposal(
        &fake,
        "open",
        json!({"spec": {"policy": with_erin()}}),
        "Apply",
    );
    wait_phase(&fake, "bad-role", ProposalPhase::Rejected).await;
    wait_phase(&fake, "open", ProposalPhase::Pending).await;

    fake.wait_for("the rejected proposal is deleted", HANG_GUARD, |f| {
        proposal(f, "bad-role").is_none().then_some(())
    })
    .await;
    // An open proposal is not finished: it stays.
    assert!(proposal(&fake, "open").is_some());

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn adopting_console_drift_leaves_the_policy_in_sync_and_the_tailnet_as_edited() {
    let (fake, sim, manager) = with_base("Report", DEFAULT_PROPOSAL_TTL).await;
    let console = with_erin().replace("// Base policy", "// Edited in the console");
    sim.tailnet()
        .console_set_policy(&console)
        .expect("console edit");
    fake.merge_patch(
        &Gvr::of::<TailnetPolicy>(),
        None,
        "base",
        json!({"metadata": {"annotations": {"tailnet.ops.dev/reconcile-at": "1"}}}),
    )
    .expect("annotated");
    wait_condition::<TailnetPolicy>(&fake, "base", ConditionType::Drifted, "True").await;
    let posts = sim.tailnet().calls().get(POST_ACL);

    // What the MCP server's adopt_drift does: the pure patch over the world it sees.
    let target = fake.get(&Gvr::of::<TailnetPolicy>(), None, "base").unwrap();
    let world = ProposalWorld {
        policies: vec![base(&fake)],
        live_policy: Some(live(&sim)),
        ..ProposalWorld::default()
    };
    let adoption = proposal::adopt_drift_patch(&target, &world).expect("an adopt patch");
    assert_eq!(adoption.target, "base");
    create_proposal(&fake, "adopt", adoption.patch, "Apply");
    let pending = wait_phase(&fake, "adopt", ProposalPhase::Pending).await;
    // The live policy is "before" of the access diff: adopting changes no access.
    assert_eq!(
        pending.status.unwrap().access_diff.as_deref(),
        Some("no change in access")
    );
    approve(&fake, "adopt");
    wait_phase(&fake, "adopt", ProposalPhase::Applied).await;

    let message = wait_condition::<TailnetPolicy>(&fake, "base", ConditionType::Drifted, "False")
        .await
        .1;
    assert!(!message.is_empty());
    wait_condition::<TailnetPolicy>(&fake, "base", ConditionType::Ready, "True").await;
    assert_eq!(live(&sim), console, "the tailnet keeps the console's edit");
    assert_eq!(base(&fake).spec.policy.as_deref(), Some(console.as_str()));
    assert_eq!(
        sim.tailnet().calls().get(POST_ACL),
        posts,
        "nothing written back"
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

#[tokio::test]
async fn propose_creates_only_valid_proposals_and_returns_the_preview() {
    let (fake, _sim, manager) = with_base("Correct", DEFAULT_PROPOSAL_TTL).await;
    let snapshots = manager
        .snapshots()
        .get(TAILNET)
        .expect("the tailnet's snapshots");
    let spec = |patch: Value| ChangeProposalSpec {
        target: ProposalTarget {
            kind: "TailnetPolicy".into(),
            name: "base".into(),
            namespace: None,
        },
        patch: Some(patch),
        summary: "via propose".into(),
        ..ChangeProposalSpec::default()
    };
    let client = fake.client();

    let err = propose(
        &client,
        Some(&snapshots),
        NAMESPACE,
        spec(json!({"spec": {"role": "Primary"}})),
    )
    .await
    .unwrap_err();
    let ProposeError::Invalid(preview) = &err else {
        panic!("{err}")
    };
    assert!(preview.problems().contains("spec.role"), "{err}");
    let err = propose(
        &client,
        Some(&snapshots),
        NAMESPACE,
        spec(json!({"status": {}})),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not status"), "{err}");
    assert!(
        fake.list(&Gvr::of::<ChangeProposal>(), Some(NAMESPACE))
            .is_empty(),
        "nothing created"
    );

    let (created, preview) = propose(
        &client,
        Some(&snapshots),
        NAMESPACE,
        spec(json!({"spec": {"policy": with_erin()}})),
    )
    .await
    .expect("a valid proposal is created");
    let access = preview.access_diff.unwrap();
    assert!(
        access.contains("+ erin-laptop (erin@example.com) -> "),
        "{access}"
    );
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("tailnetpolicy-base-"), "{name}");
    wait_phase(&fake, &name, ProposalPhase::Pending).await;

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

/// A Fragment of the Base's tailnet adding a group and a rule, as a whole object.
fn fragment(name: &str) -> Value {
    json!({
        "apiVersion": "tailnet.ops.dev/v1alpha1",
        "kind": "TailnetPolicy",
        "metadata": {"name": name},
        "spec": {
            "tailnetRef": TAILNET,
            "role": "Fragment",
            "deletionPolicy": "Delete",
            "policy": "{\"groups\": {\"group:data\": [\"erin@example.com\"]}, \"acls\": [{\"action\": \"accept\", \"src\": [\"group:data\"], \"dst\": [\"tag:server:5432\"]}]}",
        },
    })
}

fn create_change(fake: &FakeKube, name: &str, spec: Value) {
    let mut spec = spec;
    spec["summary"] = json!("test change");
    fake.create(
        &Gvr::of::<ChangeProposal>(),
        json!({
            "apiVersion": "tailnet.ops.dev/v1alpha1",
            "kind": "ChangeProposal",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": spec,
        }),
    )
    .expect("proposal created");
}

/// A Create: Pending with the whole object as the diff and the access it grants, nothing
/// created before approval, then created and composed into the tailnet's policy; a second
/// Create of the same name is Rejected at once. A Delete: Pending with what its
/// deletionPolicy removes, then deleted, and the policy recomposed without it.
#[tokio::test]
async fn create_and_delete_proposals_are_reviewed_then_applied() {
    let (fake, sim, manager) = with_base("Correct", DEFAULT_PROPOSAL_TTL).await;
    create_change(
        &fake,
        "add-data",
        json!({"operation": "Create", "target": {"kind": "TailnetPolicy", "name": "data"},
               "object": fragment("data")}),
    );
    let pending = wait_phase(&fake, "add-data", ProposalPhase::Pending).await;
    let status = pending.status.unwrap();
    assert!(
        status.validation.iter().all(|v| v.ok),
        "{:?}",
        status.validation
    );
    let diff = status.diff.unwrap();
    assert!(diff.contains("+++ TailnetPolicy/data (created)"), "{diff}");
    assert!(diff.contains("\n+  role: Fragment"), "{diff}");
    let access = status.access_diff.unwrap();
    assert!(
        access
            .lines()
            .any(|l| l.starts_with("+ erin") && l.contains("5432")),
        "{access}"
    );
    assert!(
        status.target_hash.is_none(),
        "nothing to compare against yet"
    );
    assert!(
        fake.get(&Gvr::of::<TailnetPolicy>(), None, "data")
            .is_none()
    );

    let posts = sim.tailnet().calls().get(POST_ACL);
    approve(&fake, "add-data");
    let applied = wait_phase(&fake, "add-data", ProposalPhase::Applied).await;
    assert!(
        applied
            .status
            .unwrap()
            .message
            .unwrap()
            .starts_with("created TailnetPolicy/data"),
    );
    fake.wait_for("the sim holds the fragment's group", HANG_GUARD, |_| {
        live(&sim).contains("group:data").then_some(())
    })
    .await;
    assert_eq!(sim.tailnet().calls().get(POST_ACL), posts + 1);

    // The name is taken now: a second Create is refused before anyone reviews it.
    create_change(
        &fake,
        "add-data-again",
        json!({"operation": "Create", "target": {"kind": "TailnetPolicy", "name": "data"},
               "object": fragment("data")}),
    );
    let rejected = wait_phase(&fake, "add-data-again", ProposalPhase::Rejected).await;
    assert!(
        rejected
            .status
            .unwrap()
            .message
            .unwrap()
            .contains("already exists"),
    );

    create_change(
        &fake,
        "drop-data",
        json!({"operation": "Delete", "target": {"kind": "TailnetPolicy", "name": "data"}}),
    );
    let pending = wait_phase(&fake, "drop-data", ProposalPhase::Pending).await;
    let status = pending.status.unwrap();
    let deletion = status
        .validation
        .iter()
        .find(|v| v.check == "deletion")
        .expect("the deletion check");
    assert_eq!(
        deletion.message,
        "deletionPolicy Delete: removes its entries in the tailnet's policy file from the tailnet"
    );
    assert!(status.diff.unwrap().contains("\n-  role: Fragment"));
    let posts = sim.tailnet().calls().get(POST_ACL);
    approve(&fake, "drop-data");
    wait_phase(&fake, "drop-data", ProposalPhase::Applied).await;
    fake.wait_for("the fragment gone (after its finalizer)", HANG_GUARD, |f| {
        f.get(&Gvr::of::<TailnetPolicy>(), None, "data")
            .is_none()
            .then_some(())
    })
    .await;
    fake.wait_for("the sim's policy without the fragment", HANG_GUARD, |_| {
        (!live(&sim).contains("group:data")).then_some(())
    })
    .await;
    assert_eq!(sim.tailnet().calls().get(POST_ACL), posts + 1);

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}

/// A Create whose name is taken after it was validated, and a Delete whose target changed,
/// become Stale on approval: nothing is created, nothing deleted.
#[tokio::test]
async fn a_create_whose_name_got_taken_and_a_changed_delete_target_become_stale() {
    let (fake, _sim, manager) = with_base("Correct", DEFAULT_PROPOSAL_TTL).await;
    create_change(
        &fake,
        "add-data",
        json!({"operation": "Create", "target": {"kind": "TailnetPolicy", "name": "data"},
               "object": fragment("data")}),
    );
    wait_phase(&fake, "add-data", ProposalPhase::Pending).await;
    let mut other = fragment("data");
    other["spec"]["policy"] = json!("{\"groups\": {\"group:other\": [\"erin@example.com\"]}}");
    fake.create(&Gvr::of::<TailnetPolicy>(), other)
        .expect("someone else creates it");
    approve(&fake, "add-data");
    let stale = wait_phase(&fake, "add-data", ProposalPhase::Stale).await;
    assert!(
        stale
            .status
            .unwrap()
            .message
            .unwrap()
            .contains("created by someone else"),
    );
    let kept = fake.get(&Gvr::of::<TailnetPolicy>(), None, "data").unwrap();
    assert!(
        kept["spec"]["policy"]
            .as_str()
            .unwrap()
            .contains("group:other")
    );

    create_change(
        &fake,
        "drop-data",
        json!({"operation": "Delete", "target": {"kind": "TailnetPolicy", "name": "data"}}),
    );
    wait_phase(&fake, "drop-data", ProposalPhase::Pending).await;
    fake.merge_patch(
        &Gvr::of::<TailnetPolicy>(),
        None,
        "data",
        json!({"spec": {"policy": "{\"groups\": {\"group:other\": [\"dave@example.com\"]}}"}}),
    )
    .expect("changed meanwhile");
    approve(&fake, "drop-data");
    let stale = wait_phase(&fake, "drop-data", ProposalPhase::Stale).await;
    assert!(
        stale
            .status
            .unwrap()
            .message
            .unwrap()
            .contains("changed after")
    );
    assert!(
        fake.get(&Gvr::of::<TailnetPolicy>(), None, "data")
            .is_some(),
        "not deleted"
    );

    manager.shutdown();
    manager.wait().await.expect("clean shutdown");
}
