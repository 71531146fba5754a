//! The TailnetPolicy reconcile (planner + executor + history) against a real simulated
//! tailnet over HTTP. Writes are counted with the sim's call counter, so "nothing was posted"
//! is a counted fact, not an assumption.
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use support::client::*;
use support::fixtures::{BASE, TEAM_DATA};
use tailnet_operator::policy::access::TailnetView;
use tailnet_operator::reconcile::tailnet_policy::{
    ApplyReason, ExecuteResult, InMemoryRevisionStore, PolicyAction, PolicyExecuted, PolicyInput,
    PostApplyCheck, RevisionStore, execute, execute_with, observe_and_plan, policy_hash, reconcile,
};
use tailnet_operator::resources::common::{DriftPolicy, ROLLBACK_TO_ANNOTATION};
use tailnet_operator::resources::conditions::ConditionStatus;
use tailnet_operator::resources::tailnet_policy::{PolicyRole, TailnetPolicySpec};
use tailnet_operator::resources::{ReconcileError, TailnetPolicyStatus};
use tailnet_operator::sim::SimServer;
use tailnet_operator::snapshot::{ManualClock, TailnetSnapshots};

const INTERVAL: Duration = Duration::from_secs(300);
const POST_ACL: &str = "POST /api/v2/tailnet/{tailnet}/acl";
const GET_ACL: &str = "GET /api/v2/tailnet/{tailnet}/acl";
const GET_DEVICES: &str = "GET /api/v2/tailnet/{tailnet}/devices";
const GET_USERS: &str = "GET /api/v2/tailnet/{tailnet}/users";

struct Env {
    server: SimServer,
    snapshots: TailnetSnapshots,
    store: InMemoryRevisionStore,
    clock: ManualClock,
}

impl Env {
    async fn start() -> Env {
        let server = start_sim().await;
        let clock = ManualClock::new();
        let snapshots = TailnetSnapshots::with_clock(
            client(api_key_config(&server)),
            INTERVAL,
            Arc::new(clock.clone()),
        );
        Env {
            server,
            snapshots,
            store: InMemoryRevisionStore::new(),
            clock,
        }
    }

    async fn reconcile(&self, resources: &[PolicyInput]) -> PolicyExecuted {
        reconcile(resources, &[], &self.snapshots, &self.store, Utc::now())
            .await
            .expect("reconcile")
    }

    fn posts(&self) -> u64 {
        self.server.tailnet().calls().get(POST_ACL)
    }

    fn live(&self) -> String {
        self.server.tailnet().policy().0
    }
}

fn resource(name: &str, role: PolicyRole, text: &str) -> PolicyInput {
    PolicyInput {
        name: name.to_owned(),
        generation: Some(1),
        spec: TailnetPolicySpec {
            role,
            policy: Some(text.to_owned()),
            ..TailnetPolicySpec::default()
        },
        text: Ok(text.to_owned()),
        annotations: BTreeMap::new(),
    }
}

fn base(text: &str) -> PolicyInput {
    resource("base", PolicyRole::Base, text)
}

fn fragment(name: &str, text: &str) -> PolicyInput {
    resource(name, PolicyRole::Fragment, text)
}

fn ready(outcome: &PolicyExecuted, name: &str) -> (ConditionStatus, String, String) {
    let o = outcome
        .outcome(name)
        .unwrap_or_else(|| panic!("no outcome for {name}"));
    (
        o.ready.status,
        o.ready.reason.clone(),
        o.ready.message.clone(),
    )
}

#[tokio::test]
async fn a_base_alone_posts_exactly_its_text_comments_included() {
    let env = Env::start().await;
    let outcome = env.reconcile(&[base(BASE)]).await;
    assert_eq!(
        outcome.result,
        ExecuteResult::Applied {
            revision: 1,
            reason: ApplyReason::Initial
        }
    );
    assert_eq!(env.live(), BASE, "the tailnet holds the Base byte for byte");
    assert!(env.live().contains("// Teams, by login name."));
    assert_eq!(env.posts(), 1);
    let (status, reason, _) = ready(&outcome, "base");
    assert_eq!(
        (status, reason.as_str()),
        (ConditionStatus::True, "Reconciled")
    );
    let o = outcome.outcome("base").unwrap();
    assert_eq!(o.applied_revision, Some(1));
    assert_eq!(o.applied_hash.as_deref(), Some(policy_hash(BASE).as_str()));

    // The status lands through set_condition with all three conditions.
    let mut status = TailnetPolicyStatus::default();
    assert!(o.write_status(&mut status, &tailnet_operator::resources::conditions::now()));
    assert_eq!(status.common.conditions.len(), 3);
    assert_eq!(status.applied_revision, Some(1));

    // Nothing changed: the next reconcile writes nothing.
    let again = env.reconcile(&[base(BASE)]).await;
    assert_eq!(again.result, ExecuteResult::NoWrite);
    assert_eq!(env.posts(), 1);
    assert_eq!(ready(&again, "base").0, ConditionStatus::True);
}

#[tokio::test]
async fn a_fragment_adds_groups_and_grants_and_a_redefinition_is_a_conflict() {
    let env = Env::start().await;
    let clash = r#"{"groups": {"group:data": ["frank@example.com"]}}"#;
    let resources = [
        base(BASE),
        fragment("team-data", TEAM_DATA),
        fragment("team-zeta", clash),
    ];
    let outcome = env.reconcile(&resources).await;
    assert!(matches!(outcome.result, ExecuteResult::Applied { .. }));
    let live = env.live();
    assert!(live.contains("\"group:data\""), "{live}");
    assert!(live.contains("tcp:5432"), "{live}");
    assert!(live.contains("// from TailnetPolicy/team-data"), "{live}");
    assert!(!live.contains("frank@example.com\"]}"), "{live}");
    assert_eq!(ready(&outcome, "base").0, ConditionStatus::True);
    assert_eq!(ready(&outcome, "team-data").0, ConditionStatus::True);
    let (status, reason, message) = ready(&outcome, "team-zeta");
    assert_eq!(
        (status, reason.as_str()),
        (ConditionStatus::False, "Conflict")
    );
    assert!(
        message.contains("TailnetPolicy/team-data") && message.contains("TailnetPolicy/team-zeta"),
        "{message}"
    );
    let zeta = outcome.outcome("team-zeta").unwrap();
    assert_eq!(zeta.conflicts[0].key, "groups/group:data");
    assert_eq!(env.posts(), 1);
}

async fn assert_rejected_without_post(resources: &[PolicyInput], culprit: &str, words: &[&str]) {
    let env = Env::start().await;
    let before = env.live();
    let outcome = env.reconcile(resources).await;
    assert_eq!(outcome.result, ExecuteResult::NoWrite);
    let (status, _, message) = ready(&outcome, culprit);
    assert_eq!(status, ConditionStatus::False);
    for word in words {
        assert!(message.contains(word), "{word:?} not in {message}");
    }
    assert_eq!(env.posts(), 0, "no POST /acl");
    assert_eq!(env.live(), before, "the tailnet's policy is unchanged");
}

#[tokio::test]
async fn invalid_hujson_is_rejected_naming_the_position_and_nothing_is_posted() {
    let broken = BASE.replace(
        "\"tag:ci\":     [\"group:eng\"],",
        "\"tag:ci\" [\"group:eng\"],",
    );
    assert_rejected_without_post(&[base(&broken)], "base", &["TailnetPolicy/base", "line"]).await;
}

/// A failing Fragment that never applied is left out (leaving it out removes nothing from
/// the tailnet) and says so; the others apply.
async fn assert_left_out(resources: &[PolicyInput], culprit: &str, marker: &str, words: &[&str]) {
    let env = Env::start().await;
    let outcome = env.reconcile(resources).await;
    assert!(
        matches!(outcome.result, ExecuteResult::Applied { .. }),
        "{:?}",
        outcome.result
    );
    let (status, _, message) = ready(&outcome, culprit);
    assert_eq!(status, ConditionStatus::False);
    for word in words.iter().chain(&["never applied, so it is left out"]) {
        assert!(message.contains(word), "{word:?} not in {message}");
    }
    assert_eq!(ready(&outcome, "base").0, ConditionStatus::True);
    assert!(!env.live().contains(marker), "{} is left out", culprit);
    assert_eq!(env.posts(), 1);
}

#[tokio::test]
async fn a_tag_without_owner_blames_the_fragment_and_leaves_it_out() {
    let unowned =
        r#"{"grants": [{"src": ["group:eng"], "dst": ["tag:unowned"], "ip": ["tcp:80"]}]}"#;
    let resources = [base(BASE), fragment("web", unowned)];
    assert_left_out(
        &resources,
        "web",
        "tag:unowned",
        &["tag:unowned", "tagOwners"],
    )
    .await;
}

#[tokio::test]
async fn a_failing_policy_test_is_named_and_its_fragment_left_out() {
    let failing = r#"{
      // The QA team's expectations.
      "tests": [{"src": "carol@example.com", "accept": ["tag:prod:5432"]}],
    }"#;
    let resources = [base(BASE), fragment("qa", failing)];
    // The failing test is the Fragment's own, so the Fragment is named.
    assert_left_out(
        &resources,
        "qa",
        "The QA team's expectations",
        &["carol@example.com", "tag:prod:5432"],
    )
    .await;
}

/// Erin's access to tag:prod:5432 through the data team's grant, in the live policy.
async fn team_access(env: &Env) -> bool {
    use tailnet_operator::policy::access::{Endpoint, Policy, Proto};
    let live = tailnet_operator::policy::hujson::parse_strict(&env.live()).unwrap();
    let policy = Policy::compile(&live).unwrap();
    let (devices, users) = (
        env.snapshots.devices().await.unwrap(),
        env.snapshots.users().await.unwrap(),
    );
    let view = tailnet_operator::reconcile::view::tailnet_view(&devices.data, &users.data);
    policy.allows(
        &Endpoint::User("erin@example.com".into()),
        &Endpoint::Tag("tag:prod".into()),
        5432,
        Proto::TCP,
        &view,
    )
}

#[tokio::test]
async fn a_fragment_that_becomes_conflicting_keeps_its_last_applied_text() {
    let env = Env::start().await;
    let first = env
        .reconcile(&[base(BASE), fragment("team-data", TEAM_DATA)])
        .await;
    assert!(matches!(
        first.result,
        ExecuteResult::Applied { revision: 1, .. }
    ));
    assert!(team_access(&env).await, "the team's grant applied");
    let grants_before = env.live().matches("tcp:5432").count();

    // The team adds a group the Base already defines: a conflict. Meanwhile the Base changes.
    let conflicting = TEAM_DATA.replace(
        r#""groups": {"group:data": ["erin@example.com"]},"#,
        r#""groups": {"group:data": ["erin@example.com"], "group:eng": ["erin@example.com"]},"#,
    );
    assert_ne!(conflicting, TEAM_DATA);
    let base_v2 = BASE.replace("// Teams, by login name.", "// Teams, by login name (v2).");
    let mut team = fragment("team-data", &conflicting);
    team.generation = Some(2);
    let outcome = env.reconcile(&[base(&base_v2), team]).await;
    assert!(
        matches!(outcome.result, ExecuteResult::Applied { revision: 2, .. }),
        "the Base's change applies: {:?}",
        outcome.result
    );
    assert!(env.live().contains("(v2)"));
    assert!(team_access(&env).await, "the team keeps its access");
    assert_eq!(env.live().matches("tcp:5432").count(), grants_before);
    assert!(!env.live().contains(r#""group:eng": ["erin@example.com"]"#));
    let (status, reason, message) = ready(&outcome, "team-data");
    assert_eq!(
        (status, reason.as_str()),
        (ConditionStatus::False, "Conflict")
    );
    assert!(
        message.contains("groups/group:eng") || message.contains("group:eng"),
        "{message}"
    );
    assert!(
        message.contains("its last applied text (as in revision 1) stays in effect"),
        "{message}"
    );
    // The revision records the text the team was composed at and its old generation.
    let history = env.store.list().await.unwrap();
    let newest = history.last().unwrap();
    assert_eq!(newest.source_texts["TailnetPolicy/team-data"], TEAM_DATA);
    assert_eq!(newest.sources["TailnetPolicy/team-data"], 1);

    // Fixed: the team's new text applies.
    let fixed = TEAM_DATA.replace("tcp:5432", "tcp:5432\", \"tcp:5433");
    let mut team = fragment("team-data", &fixed);
    team.generation = Some(3);
    let outcome = env.reconcile(&[base(&base_v2), team]).await;
    assert!(matches!(
        outcome.result,
        ExecuteResult::Applied { revision: 3, .. }
    ));
    assert_eq!(ready(&outcome, "team-data").0, ConditionStatus::True);
    assert!(env.live().contains("tcp:5433"));
}

#[tokio::test]
async fn a_fragment_failing_its_tests_or_unreadable_keeps_its_last_applied_text() {
    let env = Env::start().await;
    env.reconcile(&[base(BASE), fragment("team-data", TEAM_DATA)])
        .await;
    // A typo drops the grant; the team's own test catches it.
    let typo = TEAM_DATA.replace(r#""dst": ["tag:prod"]"#, r#""dst": ["tag:ci"]"#);
    let outcome = env
        .reconcile(&[base(BASE), fragment("team-data", &typo)])
        .await;
    assert_eq!(
        outcome.result,
        ExecuteResult::NoWrite,
        "nothing new to write"
    );
    assert!(team_access(&env).await);
    let (status, _, message) = ready(&outcome, "team-data");
    assert_eq!(status, ConditionStatus::False);
    assert!(
        message.contains("erin@example.com") && message.contains("stays in effect"),
        "{message}"
    );
    assert_eq!(ready(&outcome, "base").0, ConditionStatus::True);

    // Its ConfigMap disappears: the same rule.
    let mut missing = fragment("team-data", "");
    missing.text = Err(ReconcileError::not_found(
        "ConfigMap ops/acl",
        "spec.policyFrom.configMapKeyRef names a ConfigMap that does not exist",
    ));
    let outcome = env.reconcile(&[base(BASE), missing]).await;
    assert_eq!(outcome.result, ExecuteResult::NoWrite);
    assert!(team_access(&env).await);
    let (status, reason, message) = ready(&outcome, "team-data");
    assert_eq!(
        (status, reason.as_str()),
        (ConditionStatus::False, "NotFound")
    );
    assert!(message.contains("stays in effect"), "{message}");
    assert_eq!(env.posts(), 1, "only the first apply");
}

const CONSOLE_EDIT: &str = r#"{
  "groups": {"group:eng": ["alice@example.com"]},
  "tagOwners": {"tag:server": ["group:eng"]},
  "grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}],
}"#;

#[tokio::test]
async fn console_drift_is_corrected_with_driftpolicy_correct() {
    let env = Env::start().await;
    env.reconcile(&[base(BASE)]).await;
    env.server
        .tailnet()
        .console_set_policy(CONSOLE_EDIT)
        .unwrap();

    let plan = observe_and_plan(&[base(BASE)], &[], &env.snapshots, &env.store)
        .await
        .unwrap();
    let seen = plan.outcome("base").unwrap().clone();
    assert_eq!(
        seen.drifted.status,
        ConditionStatus::True,
        "{:?}",
        seen.drifted
    );
    assert!(seen.drift.as_ref().is_some_and(|d| !d.is_empty()));
    let PolicyAction::Apply(apply) = &plan.action else {
        panic!("expected a correction, got {:?}", plan.action);
    };
    assert_eq!(apply.reason, ApplyReason::DriftCorrection);
    assert!(
        apply.access_diff.lost > 0,
        "the console's allow-all is taken back"
    );

    let outcome = execute(plan, &env.snapshots, &env.store, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        outcome.result,
        ExecuteResult::Applied {
            revision: 2,
            reason: ApplyReason::DriftCorrection
        }
    );
    let o = outcome.outcome("base").unwrap();
    assert_eq!(o.drifted.status, ConditionStatus::False);
    assert!(o.drift.is_none());
    assert_eq!(env.live(), BASE);
    assert_eq!(env.posts(), 2);

    // Status transitions: Drifted True (plan) then False, through set_condition.
    let now = tailnet_operator::resources::conditions::now();
    let mut status = TailnetPolicyStatus::default();
    seen.write_status(&mut status, &now);
    assert!(status.drift.is_some());
    o.write_status(&mut status, &now);
    assert!(status.drift.is_none());
    let drifted = status
        .common
        .conditions
        .iter()
        .find(|c| c.type_ == "Drifted")
        .unwrap();
    assert_eq!(drifted.status, "False");
}

#[tokio::test]
async fn a_tailnet_that_reformats_the_policy_is_not_drift() {
    // Tailscale may store the policy re-formatted (its ETag appears to hash formatted HuJSON):
    // the same content with other whitespace must neither count as drift nor be re-applied.
    let env = Env::start().await;
    env.reconcile(&[base(BASE)]).await;
    // Tabs for spaces, and the last trailing comma dropped.
    let reformatted = BASE.replace("  ", "\t").replace("],\n}", "]\n}");
    assert_ne!(reformatted, BASE);
    env.server
        .tailnet()
        .console_set_policy(&reformatted)
        .unwrap();

    let outcome = env.reconcile(&[base(BASE)]).await;
    assert_eq!(outcome.result, ExecuteResult::NoWrite);
    let o = outcome.outcome("base").unwrap();
    assert_eq!(o.drifted.status, ConditionStatus::False, "{:?}", o.drifted);
    assert_eq!(env.posts(), 1);
    assert_eq!(env.live(), reformatted, "left as the tailnet formatted it");
}

#[tokio::test]
async fn console_drift_is_reported_not_written_with_driftpolicy_report() {
    let env = Env::start().await;
    let mut report = base(BASE);
    report.spec.common.drift_policy = DriftPolicy::Report;
    env.reconcile(std::slice::from_ref(&report)).await;
    env.server
        .tailnet()
        .console_set_policy(CONSOLE_EDIT)
        .unwrap();

    let outcome = env.reconcile(std::slice::from_ref(&report)).await;
    assert_eq!(outcome.result, ExecuteResult::NoWrite);
    let o = outcome.outcome("base").unwrap();
    assert_eq!(o.drifted.status, ConditionStatus::True);
    let diff = o.drift.as_ref().expect("the drift diff is in status");
    assert!(
        diff.entries.iter().any(|e| e.path.contains("grants")),
        "{diff:?}"
    );
    assert_eq!(env.posts(), 1, "no write");
    assert_eq!(env.live(), CONSOLE_EDIT);
}

#[tokio::test]
async fn a_write_between_read_and_post_is_a_conflict_never_a_blind_overwrite() {
    let env = Env::start().await;
    env.reconcile(&[base(BASE)]).await;
    let changed = BASE.replace("tcp:443", "tcp:443\", \"tcp:80");
    let plan = observe_and_plan(&[base(&changed)], &[], &env.snapshots, &env.store)
        .await
        .unwrap();
    assert!(plan.writes());
    // Someone edits in the console after our read, before our write.
    env.server
        .tailnet()
        .console_set_policy(CONSOLE_EDIT)
        .unwrap();
    let outcome = execute(plan, &env.snapshots, &env.store, Utc::now())
        .await
        .unwrap();
    let ExecuteResult::Conflict { message } = &outcome.result else {
        panic!("expected a conflict, got {:?}", outcome.result);
    };
    assert!(message.contains("412"), "{message}");
    assert_eq!(env.live(), CONSOLE_EDIT, "the console's policy is intact");
    assert_eq!(ready(&outcome, "base").1, "Conflict");
    assert_eq!(
        env.store.list().await.unwrap().len(),
        1,
        "no revision recorded"
    );
    // The snapshot was invalidated: the next plan sees the console's policy (its ETag).
    let replan = observe_and_plan(&[base(&changed)], &[], &env.snapshots, &env.store)
        .await
        .unwrap();
    assert_eq!(replan.live_hash, policy_hash(CONSOLE_EDIT));
}

/// Fails the post-apply check of any policy carrying a marker comment: stands in for a check
/// that only the live tailnet can answer (the default check re-runs the policy's tests, which
/// the planner already ran on the same text and view, so it cannot fail here honestly).
struct RejectMarked;

impl PostApplyCheck for RejectMarked {
    fn check(&self, live: &str, _view: &TailnetView) -> Result<(), String> {
        if live.contains("// canary: fail") {
            Err("canary probe failed after the write".to_owned())
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn a_failed_post_apply_check_rolls_back_to_the_previous_revision() {
    let env = Env::start().await;
    env.reconcile(&[base(BASE)]).await;
    let bad = format!("// canary: fail\n{BASE}");
    let plan = observe_and_plan(&[base(&bad)], &[], &env.snapshots, &env.store)
        .await
        .unwrap();
    let outcome = execute_with(plan, &env.snapshots, &env.store, Utc::now(), &RejectMarked)
        .await
        .unwrap();
    assert_eq!(
        outcome.result,
        ExecuteResult::RolledBack {
            problem: "post-apply check failed: canary probe failed after the write".into(),
            restored: 1,
            revision: 2,
        }
    );
    assert_eq!(env.live(), BASE, "revision 1 is back");
    assert_eq!(env.posts(), 3, "apply, bad apply, roll back");
    let (status, reason, _) = ready(&outcome, "base");
    assert_eq!(
        (status, reason.as_str()),
        (ConditionStatus::False, "RolledBack")
    );
    let history = env.store.list().await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].reason, ApplyReason::Rollback);
    assert_eq!(
        history[1].rejected_hash.as_deref(),
        Some(policy_hash(&bad).as_str())
    );

    // The failed text is not retried until the spec changes: no apply/rollback loop.
    let again = env.reconcile(&[base(&bad)]).await;
    assert_eq!(again.result, ExecuteResult::NoWrite);
    assert_eq!(ready(&again, "base").1, "RolledBack");
    assert_eq!(env.posts(), 3);
}

#[tokio::test]
async fn the_rollback_annotation_pins_a_revision_until_removed() {
    let env = Env::start().await;
    env.reconcile(&[base(BASE)]).await;
    let v2 = BASE.replace("tcp:443", "tcp:443\", \"tcp:80");
    env.reconcile(&[base(&v2)]).await;
    assert_eq!(env.live(), v2);

    let mut pinned = base(&v2);
    pinned
        .annotations
        .insert(ROLLBACK_TO_ANNOTATION.to_owned(), "1".to_owned());
    let outcome = env.reconcile(std::slice::from_ref(&pinned)).await;
    assert_eq!(
        outcome.result,
        ExecuteResult::Applied {
            revision: 3,
            reason: ApplyReason::Pinned
        }
    );
    assert_eq!(env.live(), BASE, "revision 1's text");
    let o = outcome.outcome("base").unwrap();
    assert_eq!(
        (o.ready.reason.as_str(), o.pinned_revision),
        ("Pinned", Some(1))
    );

    // Pinned means pinned: the next pass holds it without writing.
    let held = env.reconcile(std::slice::from_ref(&pinned)).await;
    assert_eq!(held.result, ExecuteResult::NoWrite);
    assert_eq!(env.posts(), 3);

    // An unknown revision is refused, naming the kept ones.
    let mut unknown = base(&v2);
    unknown
        .annotations
        .insert(ROLLBACK_TO_ANNOTATION.to_owned(), "42".to_owned());
    let refused = env.reconcile(&[unknown]).await;
    assert!(ready(&refused, "base").2.contains("kept: 1, 2, 3"));

    // Removing the annotation applies the composed policy again.
    let back = env.reconcile(&[base(&v2)]).await;
    assert_eq!(
        back.result,
        ExecuteResult::Applied {
            revision: 4,
            reason: ApplyReason::SpecChanged
        }
    );
    assert_eq!(env.live(), v2);
}

#[tokio::test]
async fn no_base_or_two_bases_block_every_resource() {
    let env = Env::start().await;
    let none = env.reconcile(&[fragment("team-data", TEAM_DATA)]).await;
    assert_eq!(ready(&none, "team-data").1, "NoBase");
    let mut second = base(BASE);
    second.name = "base-2".into();
    let two = env.reconcile(&[base(BASE), second]).await;
    let (_, reason, message) = ready(&two, "base-2");
    assert_eq!(reason, "Conflict");
    assert!(message.contains("TailnetPolicy/base,") && message.contains("TailnetPolicy/base-2"));
    assert_eq!(env.posts(), 0);
}

#[tokio::test]
async fn an_unreadable_fragment_that_never_applied_is_left_out_and_an_unreadable_base_blocks() {
    let env = Env::start().await;
    let unreadable = |name: &str, role| {
        let mut missing = resource(name, role, "");
        missing.text = Err(ReconcileError::not_found(
            "ConfigMap ops/acl",
            "spec.policyFrom.configMapKeyRef names a ConfigMap that does not exist",
        ));
        missing
    };
    let outcome = env
        .reconcile(&[
            unreadable("base", PolicyRole::Base),
            fragment("team-data", TEAM_DATA),
        ])
        .await;
    assert_eq!(outcome.result, ExecuteResult::NoWrite);
    assert_eq!(ready(&outcome, "base").1, "NotFound");
    assert_eq!(ready(&outcome, "team-data").1, "Blocked");
    assert_eq!(env.posts(), 0);

    let outcome = env
        .reconcile(&[base(BASE), unreadable("team-data", PolicyRole::Fragment)])
        .await;
    assert!(matches!(outcome.result, ExecuteResult::Applied { .. }));
    let (_, reason, message) = ready(&outcome, "team-data");
    assert_eq!(reason, "NotFound");
    assert!(message.contains("left out"), "{message}");
}

#[tokio::test]
async fn suspend_observes_only() {
    let env = Env::start().await;
    let mut suspended = base(BASE);
    suspended.spec.common.suspend = true;
    let outcome = env.reconcile(&[suspended]).await;
    assert_eq!(outcome.result, ExecuteResult::NoWrite);
    assert_eq!(ready(&outcome, "base").1, "Suspended");
    assert_eq!(env.posts(), 0);
}

#[tokio::test]
async fn fifty_policy_resources_in_steady_state_cost_three_reads_per_resync() {
    let env = Env::start().await;
    let mut resources = vec![base(BASE)];
    for i in 1..50 {
        let text = format!(
            r#"{{
  "groups": {{"group:team-{i:02}": ["alice@example.com"]}},
  "grants": [{{"src": ["group:team-{i:02}"], "dst": ["tag:server"], "ip": ["tcp:{port}"]}}],
}}"#,
            port = 8000 + i
        );
        resources.push(fragment(&format!("team-{i:02}"), &text));
    }
    let first = env.reconcile(&resources).await;
    assert!(matches!(first.result, ExecuteResult::Applied { .. }));
    assert!(first.outcomes.iter().all(|o| o.ready.is_true()));

    // Next resync interval: N reconciles of the tailnet (e.g. one per changed resource event).
    env.clock.advance(INTERVAL);
    env.server.tailnet().reset_calls();
    const RECONCILES: u32 = 50;
    for _ in 0..RECONCILES {
        let outcome = env.reconcile(&resources).await;
        assert_eq!(outcome.result, ExecuteResult::NoWrite);
    }
    let calls = env.server.tailnet().calls();
    let figures = (
        calls.get(GET_ACL),
        calls.get(GET_DEVICES),
        calls.get(GET_USERS),
        calls.total_for_method("POST"),
    );
    eprintln!(
        "50 TailnetPolicies (1 Base + 49 Fragments), {RECONCILES} reconciles in one resync \
         interval: policy reads {}, device reads {}, user reads {}, writes {}, total API calls {}",
        figures.0,
        figures.1,
        figures.2,
        figures.3,
        calls.total()
    );
    assert_eq!(figures, (1, 1, 1, 0));
    assert_eq!(calls.total(), 3);
}

#[tokio::test]
async fn a_failing_test_of_the_base_names_the_base() {
    let failing = BASE.replace(
        "\"deny\": [\"tag:prod:5432\"]",
        "\"deny\": [\"tag:server:443\"]",
    );
    assert_ne!(failing, BASE, "the fixture edit applies");
    let resources = [base(&failing), fragment("team-data", TEAM_DATA)];
    assert_rejected_without_post(
        &resources,
        "base",
        &["TailnetPolicy/base", "tag:server:443"],
    )
    .await;
}

#[tokio::test]
async fn the_apis_validation_can_still_refuse_and_then_nothing_is_posted() {
    let env = Env::start().await;
    let host_test = BASE.replace(
        "\"tests\": [",
        "\"tests\": [\n    {\"src\": \"carol@example.com\", \"accept\": [\"staging-web-1:443\"]},",
    );
    assert_ne!(host_test, BASE);
    let plan = observe_and_plan(&[base(&host_test)], &[], &env.snapshots, &env.store)
        .await
        .unwrap();
    assert!(plan.writes(), "the local checks pass on the snapshot");
    // The tailnet changes after the snapshot: the device the test names is deleted, so the
    // API's own run of the tests (POST /acl/validate) fails.
    let sim = env.server.tailnet();
    sim.console_delete_device(&sim.device_id("staging-web-1").unwrap())
        .unwrap();
    let outcome = execute(plan, &env.snapshots, &env.store, Utc::now())
        .await
        .unwrap();
    let ExecuteResult::ValidationFailed { message } = &outcome.result else {
        panic!("expected a validation failure, got {:?}", outcome.result);
    };
    assert!(message.contains("staging-web-1"), "{message}");
    assert_eq!(ready(&outcome, "base").1, "ValidationFailed");
    assert_eq!(env.posts(), 0, "no POST /acl");
}
