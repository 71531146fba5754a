//! The pure planner: no I/O, no clock. Everything it needs is in its arguments, so every
//! decision (which write, which status) is tested without a tailnet or a runtime.
use crate::resources::conditions::Verdict;
use std::collections::BTreeMap;

use serde_json::Value;

use super::history::Revision;
use super::types::{
    AccessSummary, ApplyPlan, ApplyReason, LeftOut, PolicyAction, PolicyInput, PolicyOutcome,
    PolicyPlan,
};
use crate::policy::access::{ClassDiff, Policy, TailnetView};
use crate::policy::checks::{self, CheckProblem};
use crate::policy::compose::{ComposeError, Contribution, PolicySource, compose};
use crate::policy::hujson;
use crate::reconcile::text_diff;
use crate::resources::DriftDiff;
use crate::resources::common::ROLLBACK_TO_ANNOTATION;
use crate::resources::conditions::{ConditionStatus, reason};
use crate::resources::drift;
use crate::resources::tailnet_policy::{DEFAULT_HISTORY_LIMIT, PolicyConflict};
use crate::tailscale::PolicyFile;

/// Lines of text diff kept in a plan.
pub const TEXT_DIFF_LINES: usize = 200;
/// Gained and lost access pairs listed (each) in a plan; the counts are always complete.
pub const ACCESS_LINES_SHOWN: usize = 10;
/// Drift entries listed in status.
const DRIFT_ENTRIES: usize = 20;

/// Ready reason when the tailnet has no Base.
pub const NO_BASE: &str = "NoBase";
/// Ready reason of a resource that is fine but not applied because another one blocks.
pub const BLOCKED: &str = "Blocked";

/// How a resource is named in compositions, conflicts and revisions.
pub fn source_name(name: &str) -> String {
    format!("TailnetPolicy/{name}")
}

/// The identity of a policy text: SHA-256 (hex) of its formatting-insensitive form
/// ([`fingerprint`](crate::policy::hujson::fingerprint)). Whitespace and trailing commas do not
/// count, comments and content do, so a server that re-formats the policy on save is neither
/// drift nor a failed read-back.
pub fn policy_hash(text: &str) -> String {
    crate::policy::hujson::fingerprint(text)
}

/// Plans the reconcile of one tailnet's policy over all of its `TailnetPolicy` resources
/// (callers pass only the resources whose `tailnetRef` names this tailnet).
///
/// `live` is the policy snapshot; `history` the kept revisions, oldest first (its last entry
/// is what this operator last applied); `view` the tailnet's users and devices for the checks
/// and the access diff.
pub fn plan(
    resources: &[PolicyInput],
    contributions: &[Contribution],
    live: &PolicyFile,
    history: &[Revision],
    view: &TailnetView,
) -> PolicyPlan {
    let bases: Vec<&PolicyInput> = resources.iter().filter(|r| r.is_base()).collect();
    let mut plan = PolicyPlan {
        outcomes: resources.iter().map(pending).collect(),
        action: PolicyAction::NoChange,
        live_etag: live.etag.clone(),
        live_hash: policy_hash(&live.hujson),
        history_limit: bases
            .first()
            .map_or(DEFAULT_HISTORY_LIMIT, |b| b.spec.history_limit),
        view: view.clone(),
        last_good: history.last().cloned(),
        left_out: Vec::new(),
    };
    let drift = observed_drift(live, history.last());
    for outcome in &mut plan.outcomes {
        outcome.drifted = drift.0.clone();
        outcome.drift = drift.1.clone();
    }
    match bases.as_slice() {
        [] => {
            block_all(
                &mut plan,
                NO_BASE,
                "no Base TailnetPolicy for this tailnet: create one with spec.role: Base \
                 (the tailnet's policy file); Fragments are merged into it",
            );
            return plan;
        }
        [_] => {}
        several => {
            let names: Vec<String> = several.iter().map(|b| source_name(&b.name)).collect();
            let message = format!(
                "this tailnet has {} Base TailnetPolicies ({}): keep exactly one Base and \
                 make the others Fragments",
                names.len(),
                names.join(", ")
            );
            block_all(&mut plan, reason::CONFLICT, &message);
            for outcome in plan.outcomes.iter_mut() {
                if names.contains(&source_name(&outcome.name)) {
                    outcome.conflicts = vec![PolicyConflict {
                        key: "spec.role/Base".to_owned(),
                        sources: names.clone(),
                    }];
                }
            }
            return plan;
        }
    }
    let base = bases[0];
    let Some(desired) = desired_policy(base, resources, contributions, history, view, &mut plan)
    else {
        return plan;
    };
    decide(base, desired, live, history, &mut plan);
    plan
}

/// Every resource starts "Pending"; the planner overwrites what it decides.
fn pending(resource: &PolicyInput) -> PolicyOutcome {
    let unknown = Verdict::new(ConditionStatus::Unknown, reason::PENDING, "");
    PolicyOutcome {
        name: resource.name.clone(),
        generation: resource.generation,
        ready: unknown.clone(),
        synced: unknown.clone(),
        drifted: unknown,
        drift: None,
        rejected_reason: None,
        conflicts: Vec::new(),
        applied_revision: None,
        applied_hash: None,
        pinned_revision: None,
        last_access_diff: None,
    }
}

/// Drifted: the live policy differs from what this operator last applied. Without history
/// (first run, file mode) there is nothing to drift from.
fn observed_drift(live: &PolicyFile, last: Option<&Revision>) -> (Verdict, Option<DriftDiff>) {
    match last {
        Some(last) if last.hash != policy_hash(&live.hujson) => {
            let diff = policy_diff(&last.text, &live.hujson);
            let message = format!(
                "the live policy differs from revision {} applied by the operator: {}",
                last.number,
                diff.summary()
            );
            (
                Verdict::new(ConditionStatus::True, reason::DRIFTED, message),
                Some(diff),
            )
        }
        Some(last) => (
            Verdict::new(
                ConditionStatus::False,
                reason::IN_SYNC,
                format!("the live policy is revision {}", last.number),
            ),
            None,
        ),
        None => (
            Verdict::new(
                ConditionStatus::False,
                reason::IN_SYNC,
                "no revision applied by the operator yet",
            ),
            None,
        ),
    }
}

/// The structured diff between two policy texts (desired → live), by value; a text that does
/// not parse is compared as a string.
pub(super) fn policy_diff(desired: &str, live: &str) -> DriftDiff {
    let value = |text: &str| hujson::parse_strict(text).unwrap_or(Value::String(text.to_owned()));
    drift::diff(&value(desired), &value(live), DRIFT_ENTRIES)
}

fn block_all(plan: &mut PolicyPlan, why: &str, message: &str) {
    for outcome in &mut plan.outcomes {
        reject(outcome, why, message);
    }
}

fn reject(outcome: &mut PolicyOutcome, why: &str, message: &str) {
    outcome.ready = Verdict::new(ConditionStatus::False, why, message);
    outcome.synced = Verdict::new(ConditionStatus::False, why, message);
    outcome.rejected_reason = Some(message.to_owned());
}

/// How each source enters the composition.
#[derive(Default)]
struct SourceChoices {
    /// Resource name → its last applied text, used because its current one fails.
    held: BTreeMap<String, String>,
    /// Resources left out: they fail and never applied, so leaving them out removes nothing.
    left_out: BTreeMap<String, ()>,
}

impl SourceChoices {
    /// The text `resource` is composed at: its held text, else its own.
    fn text_of(&self, resource: &PolicyInput) -> String {
        match self.held.get(&resource.name) {
            Some(held) => held.clone(),
            None => resource
                .text
                .as_ref()
                .map(String::clone)
                .unwrap_or_default(),
        }
    }

    fn source(&self, resource: &PolicyInput) -> PolicySource {
        PolicySource {
            name: source_name(&resource.name),
            generation: resource.generation,
            text: self.text_of(resource),
        }
    }
}

/// The last applied text of `resource` (from the newest revision), if it ever applied.
fn last_applied<'a>(resource: &PolicyInput, history: &'a [Revision]) -> Option<&'a String> {
    history
        .last()
        .and_then(|r| r.source_texts.get(&source_name(&resource.name)))
}

/// A failing source: held at its last applied text (status says so), else left out if it is
/// a Fragment. Returns false when neither is possible (a Base that never applied), which
/// blocks the write.
fn hold_or_leave_out(
    resource: &PolicyInput,
    history: &[Revision],
    choices: &mut SourceChoices,
    plan: &mut PolicyPlan,
    why: &str,
    message: &str,
) -> bool {
    let outcome = plan.outcomes.iter_mut().find(|o| o.name == resource.name);
    if let Some(text) = last_applied(resource, history) {
        let revision = history.last().map_or(0, |r| r.number);
        choices.held.insert(resource.name.clone(), text.clone());
        if let Some(outcome) = outcome {
            reject(
                outcome,
                why,
                &format!(
                    "{message}; its last applied text (as in revision {revision}) stays in \
                     effect until this is fixed"
                ),
            );
        }
        true
    } else if !resource.is_base() {
        choices.left_out.insert(resource.name.clone(), ());
        if let Some(outcome) = outcome {
            reject(
                outcome,
                why,
                &format!("{message}; it never applied, so it is left out until this is fixed"),
            );
        }
        true
    } else {
        false
    }
}

/// A Base whose text cannot be read and that never applied blocks every write.
fn unreadable_base_blocks(base: &PolicyInput, plan: &mut PolicyPlan) {
    let Err(err) = &base.text else { return };
    block_on(plan, &base.name, err.event_reason(), &err.to_string());
}

/// The policy to hold: the pinned revision, or the composition (locally checked).
struct Desired {
    text: String,
    hash: String,
    policy: Option<Policy>,
    sources: BTreeMap<String, i64>,
    /// Source name → the text composed for it (see [`ApplyPlan::source_texts`]).
    source_texts: BTreeMap<String, String>,
    pinned: Option<u32>,
    /// Resources whose content is in `text`.
    included: Vec<String>,
}

fn desired_policy(
    base: &PolicyInput,
    resources: &[PolicyInput],
    contributions: &[Contribution],
    history: &[Revision],
    view: &TailnetView,
    plan: &mut PolicyPlan,
) -> Option<Desired> {
    if let Some(pin) = base.annotations.get(ROLLBACK_TO_ANNOTATION) {
        return pinned_revision(base, pin, history, plan);
    }
    let mut choices = SourceChoices::default();
    // Contributions still composed: one whose entries fail the checks is left out (named in
    // `plan.left_out`), never blocking the TailnetPolicies' own rules.
    let mut contributions: Vec<Contribution> = contributions.to_vec();
    // A source that cannot be read (a missing ConfigMap key) is held at its last applied
    // text: composing without it would delete its rules from the tailnet.
    for r in resources {
        if let Err(err) = &r.text {
            let (why, message) = (err.event_reason(), err.to_string());
            if !hold_or_leave_out(r, history, &mut choices, plan, why, &message) {
                unreadable_base_blocks(r, plan);
                return None;
            }
        }
    }
    // Each round holds (or leaves out) at least one more failing source, so this ends.
    loop {
        let fragments: Vec<PolicySource> = resources
            .iter()
            .filter(|r| !r.is_base() && !choices.left_out.contains_key(&r.name))
            .map(|r| choices.source(r))
            .collect();
        let composition = match compose(&choices.source(base), &fragments, &contributions) {
            Ok(c) => c,
            Err(err) => {
                block_on(plan, &base.name, err.reason(), &err.to_string());
                return None;
            }
        };
        let mut changed = false;
        for rejection in &composition.rejected {
            let resource = resources
                .iter()
                .find(|r| source_name(&r.name) == rejection.source);
            match resource {
                // A fresh failure: hold it at its last text (or leave it out) and compose again.
                Some(r) if !choices.held.contains_key(&r.name) => {
                    record_rejection(plan, &rejection.source, &rejection.error);
                    let (why, message) = (rejection.error.reason(), rejection.error.to_string());
                    changed |= hold_or_leave_out(r, history, &mut choices, plan, why, &message);
                }
                // Its last applied text fails too (another source changed): left out.
                _ => record_rejection(plan, &rejection.source, &rejection.error),
            }
        }
        if changed {
            continue;
        }
        let included: Vec<String> = resources
            .iter()
            .filter(|r| composition.applied.contains(&source_name(&r.name)))
            .filter(|r| !choices.held.contains_key(&r.name))
            .map(|r| r.name.clone())
            .collect();
        let checked = checks::check(&composition.text, view);
        if !checked.is_ok()
            && leave_out_failing_contributions(
                &choices.source(base),
                &fragments,
                &mut contributions,
                view,
                plan,
            )
        {
            continue;
        }
        if !checked.is_ok() {
            let blame = Blame {
                resources,
                included: &included,
                composed: checked.policy.as_ref(),
                view,
            };
            if hold_failing_fragments(&blame, &checked.problems, history, &mut choices, plan) {
                continue;
            }
            report_check_problems(plan, &blame, &checked.problems);
            return None;
        }
        let last_sources = history.last().map(|r| &r.sources);
        let sources = resources
            .iter()
            .filter_map(|r| {
                let name = source_name(&r.name);
                if included.contains(&r.name) {
                    Some((name, r.generation.unwrap_or(0)))
                } else if choices.held.contains_key(&r.name) {
                    last_sources.and_then(|s| s.get(&name)).map(|g| (name, *g))
                } else {
                    None
                }
            })
            .collect();
        let source_texts = resources
            .iter()
            .filter(|r| composition.applied.contains(&source_name(&r.name)))
            .map(|r| (source_name(&r.name), choices.text_of(r)))
            .collect();
        return Some(Desired {
            hash: policy_hash(&composition.text),
            text: composition.text,
            policy: checked.policy,
            sources,
            source_texts,
            pinned: None,
            included,
        });
    }
}

/// When the TailnetPolicies compose and pass the checks without `contributions`, adds the
/// contributions back one at a time and leaves out each one whose entries make the checks
/// fail (a grant to an undefined group, say), recording why in `plan.left_out`. Returns
/// whether any was left out. Runs only on the failure path: n compositions for n
/// contributions.
fn leave_out_failing_contributions(
    base: &PolicySource,
    fragments: &[PolicySource],
    contributions: &mut Vec<Contribution>,
    view: &TailnetView,
    plan: &mut PolicyPlan,
) -> bool {
    let passes = |with: &[Contribution]| {
        compose(base, fragments, with)
            .is_ok_and(|c| c.rejected.is_empty() && checks::check(&c.text, view).is_ok())
    };
    if contributions.is_empty() || !passes(&[]) {
        return false;
    }
    let mut kept: Vec<Contribution> = Vec::new();
    for contribution in contributions.drain(..) {
        kept.push(contribution);
        if !passes(&kept) {
            let failing = kept.pop().expect("just pushed");
            let problems = compose(base, fragments, std::slice::from_ref(&failing))
                .map(|c| checks::check(&c.text, view).problems)
                .unwrap_or_default();
            let why = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            plan.left_out.push(LeftOut {
                source: failing.source.clone(),
                section: failing.section.clone(),
                reason: why,
            });
        }
    }
    *contributions = kept;
    !plan.left_out.is_empty()
}

/// Check problems clearly a Fragment's own (see [`culprit`]): that Fragment is held at its
/// last applied text, or left out if it never applied, and the rest composed again. Returns
/// whether any was; problems of the Base block the write as before.
fn hold_failing_fragments(
    blame: &Blame<'_>,
    problems: &[CheckProblem],
    history: &[Revision],
    choices: &mut SourceChoices,
    plan: &mut PolicyPlan,
) -> bool {
    let blamed = blame_all(problems, blame);
    let fragments: Vec<&PolicyInput> = blame
        .resources
        .iter()
        .filter(|r| !r.is_base() && blamed.contains_key(&r.name))
        .filter(|r| !choices.held.contains_key(&r.name))
        .collect();
    // Only when every problem is a Fragment's: a Base problem blocks regardless.
    if fragments.is_empty() || fragments.len() != blamed.len() {
        return false;
    }
    for fragment in fragments {
        let own = &blamed[&fragment.name];
        let message = problems_of(&fragment.name, own);
        hold_or_leave_out(fragment, history, choices, plan, own[0].reason(), &message);
    }
    true
}

/// The break-glass annotation: hold a kept revision's exact text. Its local checks ran when it
/// was first applied; they are not re-run so a break-glass is never blocked by them.
fn pinned_revision(
    base: &PolicyInput,
    pin: &str,
    history: &[Revision],
    plan: &mut PolicyPlan,
) -> Option<Desired> {
    let kept: Vec<String> = history.iter().map(|r| r.number.to_string()).collect();
    let found = pin
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(|n| history.iter().find(|r| r.number == n));
    let Some(revision) = found else {
        let message = format!(
            "annotation {ROLLBACK_TO_ANNOTATION}: {pin:?} is not a kept revision (kept: {}); \
             set it to one of those numbers, or remove it to apply the composed policy",
            if kept.is_empty() {
                "none".to_owned()
            } else {
                kept.join(", ")
            }
        );
        block_on(plan, &base.name, reason::INVALID, &message);
        return None;
    };
    let policy = hujson::parse_strict(&revision.text)
        .ok()
        .and_then(|doc| checks::compile(&doc).ok());
    Some(Desired {
        text: revision.text.clone(),
        hash: revision.hash.clone(),
        policy,
        sources: revision.sources.clone(),
        source_texts: revision.source_texts.clone(),
        pinned: Some(revision.number),
        included: plan.outcomes.iter().map(|o| o.name.clone()).collect(),
    })
}

/// `culprit` gets `why`/`message`; every other resource is blocked, naming the culprit.
fn block_on(plan: &mut PolicyPlan, culprit: &str, why: &str, message: &str) {
    let blocked = format!(
        "not applied: {} must be fixed first: {message}",
        source_name(culprit)
    );
    for outcome in &mut plan.outcomes {
        if outcome.name == culprit {
            reject(outcome, why, message);
        } else {
            reject(outcome, BLOCKED, &blocked);
        }
    }
}

/// A rejected fragment: Ready=False with the reason; the rest still applies. A conflict is
/// also listed on the resource that defined the key first.
fn record_rejection(plan: &mut PolicyPlan, source: &str, error: &ComposeError) {
    let message = error.to_string();
    let conflict = match error {
        ComposeError::Conflict {
            section,
            key,
            first,
            second,
        } => Some(PolicyConflict {
            key: format!("{section}/{key}"),
            sources: vec![first.clone(), second.clone()],
        }),
        _ => None,
    };
    for outcome in &mut plan.outcomes {
        let name = source_name(&outcome.name);
        if name == source {
            reject(outcome, error.reason(), &message);
            outcome.conflicts.extend(conflict.clone());
        } else if let Some(c) = conflict.as_ref().filter(|c| c.sources[0] == name) {
            outcome.conflicts.push(c.clone());
        }
    }
}

/// What attributing a check problem to a source needs.
struct Blame<'a> {
    resources: &'a [PolicyInput],
    included: &'a [String],
    composed: Option<&'a Policy>,
    view: &'a TailnetView,
}

/// Nothing is posted when the composition fails its checks. A problem is attributed to a
/// Fragment when it is clearly that Fragment's: the one Fragment mentioning an undefined name
/// the Base does not mention, or the Fragment whose own `tests` fail against the composed
/// policy. Everything else is the Base's (the composed file is its file).
fn report_check_problems(plan: &mut PolicyPlan, blame: &Blame<'_>, problems: &[CheckProblem]) {
    let blamed = blame_all(problems, blame);
    let culprits: Vec<String> = blamed.keys().map(|n| source_name(n)).collect();
    let blocked = format!(
        "not applied: the composed policy fails its local checks; fix {} first",
        culprits.join(", ")
    );
    for outcome in &mut plan.outcomes {
        match blamed.get(&outcome.name) {
            Some(own) => {
                let message = problems_of(&outcome.name, own);
                reject(outcome, own[0].reason(), &message);
            }
            None if outcome.rejected_reason.is_none() => reject(outcome, BLOCKED, &blocked),
            None => {}
        }
    }
}

/// Each problem under the resource it is attributed to (see [`culprit`]).
fn blame_all<'p>(
    problems: &'p [CheckProblem],
    blame: &Blame<'_>,
) -> BTreeMap<String, Vec<&'p CheckProblem>> {
    let mut blamed: BTreeMap<String, Vec<&CheckProblem>> = BTreeMap::new();
    for problem in problems {
        blamed
            .entry(culprit(problem, blame))
            .or_default()
            .push(problem);
    }
    blamed
}

/// `TailnetPolicy/<name>: <problem>; ...`
fn problems_of(name: &str, own: &[&CheckProblem]) -> String {
    own.iter()
        .map(|p| format!("{}: {p}", source_name(name)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn culprit(problem: &CheckProblem, blame: &Blame<'_>) -> String {
    let base = blame
        .resources
        .iter()
        .find(|r| r.is_base())
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let fragments = || {
        blame
            .resources
            .iter()
            .filter(|r| !r.is_base() && blame.included.contains(&r.name))
    };
    match problem {
        CheckProblem::Undefined { name, .. } => {
            let quoted = format!("\"{name}");
            let mentions = |r: &PolicyInput| r.text.as_ref().is_ok_and(|t| t.contains(&quoted));
            let base_mentions = blame.resources.iter().any(|r| r.is_base() && mentions(r));
            let mut users = fragments().filter(|r| mentions(r));
            match (base_mentions, users.next(), users.next()) {
                (false, Some(only), None) => only.name.clone(),
                _ => base,
            }
        }
        CheckProblem::TestFailed(failure) => fragments()
            .find(|r| own_tests_fail(r, failure, blame))
            .map_or(base, |r| r.name.clone()),
        _ => base,
    }
}

/// Whether `resource`'s own `tests` include the failing one (same source, same errors) when
/// run against the composed policy.
fn own_tests_fail(
    resource: &PolicyInput,
    failure: &crate::policy::access::TestFailure,
    blame: &Blame<'_>,
) -> bool {
    let (Some(policy), Ok(text)) = (blame.composed, resource.text.as_ref()) else {
        return false;
    };
    let Ok(doc) = hujson::parse_strict(text) else {
        return false;
    };
    let tests = doc.as_object().and_then(|o| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("tests"))
            .map(|(_, v)| v)
    });
    tests.is_some_and(|tests| policy.run_tests(Some(tests), blame.view).contains(failure))
}

/// Compares desired, live and last applied, and sets the action and the statuses.
fn decide(
    base: &PolicyInput,
    desired: Desired,
    live: &PolicyFile,
    history: &[Revision],
    plan: &mut PolicyPlan,
) {
    let last = history.last();
    let holds = history.iter().rev().find(|r| r.hash == desired.hash);
    let included = |o: &PolicyOutcome| desired.included.contains(&o.name);
    for outcome in plan.outcomes.iter_mut().filter(|o| included(o)) {
        outcome.pinned_revision = desired.pinned;
    }
    let ready_all = |plan: &mut PolicyPlan, verdict: Verdict, synced: Verdict| {
        for outcome in plan.outcomes.iter_mut().filter(|o| included(o)) {
            outcome.ready = verdict.clone();
            outcome.synced = synced.clone();
            outcome.applied_revision = holds.map(|r| r.number);
            outcome.applied_hash = Some(desired.hash.clone());
        }
    };
    let synced_ok = Verdict::new(ConditionStatus::True, reason::RECONCILED, "");
    if plan.live_hash == desired.hash {
        let message = match holds {
            Some(r) => format!("the tailnet holds revision {}", r.number),
            None => "the tailnet holds the composed policy".to_owned(),
        };
        let why = if desired.pinned.is_some() {
            reason::PINNED
        } else {
            reason::RECONCILED
        };
        ready_all(
            plan,
            Verdict::new(ConditionStatus::True, why, message),
            synced_ok,
        );
        for outcome in &mut plan.outcomes {
            // Live equals desired: whatever the last revision says, there is nothing to fix.
            outcome.drifted = Verdict::new(
                ConditionStatus::False,
                reason::IN_SYNC,
                "live policy as desired",
            );
            outcome.drift = None;
        }
        return;
    }
    if let Some(last) = last.filter(|l| l.rejected_hash.as_deref() == Some(&desired.hash)) {
        if desired.pinned.is_none() {
            let message = format!(
                "the composed policy (sha256 {}) failed its post-apply check and revision {} \
                 was restored; change a TailnetPolicy to try again",
                short(&desired.hash),
                last.number
            );
            ready_all(
                plan,
                Verdict::new(ConditionStatus::False, reason::ROLLED_BACK, message.clone()),
                Verdict::new(ConditionStatus::True, reason::ROLLED_BACK, message),
            );
            return;
        }
    }
    if base.spec.common.suspend {
        let message = "suspended (spec.suspend on the Base or on its ManagedTailnet): observing only; the live policy \
                       differs from the desired one";
        ready_all(
            plan,
            Verdict::new(ConditionStatus::False, reason::SUSPENDED, message),
            Verdict::new(ConditionStatus::True, reason::SUSPENDED, message),
        );
        return;
    }
    let drifted = last.is_some_and(|l| l.hash == desired.hash);
    if drifted && !base.spec.common.corrects_drift() {
        let diff = policy_diff(&desired.text, &live.hujson);
        let message = format!(
            "the live policy was changed outside the operator and is left as is \
             (driftPolicy: Report): {}",
            diff.summary()
        );
        ready_all(
            plan,
            Verdict::new(ConditionStatus::True, reason::DRIFTED, message),
            synced_ok,
        );
        plan.action = PolicyAction::ReportDrift { diff };
        return;
    }
    let why = match (desired.pinned, drifted, last) {
        (Some(_), _, _) => ApplyReason::Pinned,
        (None, true, _) => ApplyReason::DriftCorrection,
        (None, false, None) => ApplyReason::Initial,
        (None, false, Some(_)) => ApplyReason::SpecChanged,
    };
    let access_diff = access_summary(&live.hujson, desired.policy.as_ref(), &plan.view);
    let pending = Verdict::new(
        ConditionStatus::Unknown,
        reason::PENDING,
        format!("applying the composed policy ({})", why.as_str()),
    );
    for outcome in plan.outcomes.iter_mut().filter(|o| included(o)) {
        outcome.ready = pending.clone();
        outcome.synced = pending.clone();
    }
    plan.action = PolicyAction::Apply(Box::new(ApplyPlan {
        text_diff: text_diff::unified(
            &live.hujson,
            &desired.text,
            "live",
            "desired",
            TEXT_DIFF_LINES,
        ),
        text: desired.text,
        hash: desired.hash,
        reason: why,
        access_diff,
        sources: desired.sources,
        source_texts: desired.source_texts,
        pinned: desired.pinned,
    }));
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Live → desired access.
fn access_summary(live: &str, desired: Option<&Policy>, view: &TailnetView) -> AccessSummary {
    access_diff(live, desired, view)
        .map(|diff| AccessSummary::of(&diff))
        .unwrap_or_default()
}

/// The class diff live → desired. A live policy that does not compile (edited by hand into
/// something the local evaluator rejects) counts as granting nothing, as does no desired one.
pub fn access_diff(live: &str, desired: Option<&Policy>, view: &TailnetView) -> Option<ClassDiff> {
    let empty = || Policy::compile(&Value::Object(Default::default())).ok();
    let old = hujson::parse_strict(live)
        .ok()
        .and_then(|doc| Policy::compile(&doc).ok())
        .or_else(empty)?;
    let new = desired.cloned().or_else(empty)?;
    Some(old.class_diff(&new, view))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::common::DriftPolicy;
    use crate::resources::tailnet_policy::{PolicyRole, TailnetPolicySpec};
    use crate::tailscale::ETag;
    use chrono::Utc;

    const V1: &str = "// v1\n{\"groups\": {\"group:a\": [\"alice@example.com\"]}}\n";
    const V2: &str = "// v2\n{\"groups\": {\"group:a\": [\"bob@example.com\"]}}\n";

    fn base(text: &str) -> PolicyInput {
        PolicyInput {
            name: "base".into(),
            generation: Some(3),
            spec: TailnetPolicySpec {
                role: PolicyRole::Base,
                ..TailnetPolicySpec::default()
            },
            text: Ok(text.into()),
            annotations: BTreeMap::new(),
        }
    }

    fn live(text: &str) -> PolicyFile {
        PolicyFile {
            hujson: text.into(),
            etag: ETag::new("\"e\""),
        }
    }

    fn applied(number: u32, text: &str) -> Revision {
        Revision {
            number,
            hash: policy_hash(text),
            time: Utc::now(),
            sources: BTreeMap::new(),
            access_diff: Default::default(),
            reason: ApplyReason::Initial,
            text: text.into(),
            rejected_hash: None,
            source_texts: BTreeMap::new(),
        }
    }

    fn run(resource: PolicyInput, live_text: &str, history: &[Revision]) -> PolicyPlan {
        plan(
            &[resource],
            &[],
            &live(live_text),
            history,
            &TailnetView::default(),
        )
    }

    fn reason_of(plan: &PolicyPlan) -> Option<ApplyReason> {
        match &plan.action {
            PolicyAction::Apply(apply) => Some(apply.reason),
            _ => None,
        }
    }

    #[test]
    fn a_contribution_failing_the_checks_is_left_out_and_the_rest_applies() {
        let grant = |source: &str, group: &str| Contribution {
            source: source.into(),
            section: "grants".into(),
            value: serde_json::json!({"src": [group], "dst": ["svc:web"], "ip": ["tcp:443"]}),
        };
        let contributions = [
            grant("TailscaleService/a/good", "group:a"),
            grant("TailscaleService/a/bad", "group:nobody"),
        ];
        let plan = plan(
            &[base(V1)],
            &contributions,
            &live(V2),
            &[],
            &TailnetView::default(),
        );
        assert_eq!(plan.left_out.len(), 1, "{:?}", plan.left_out);
        assert_eq!(plan.left_out[0].source, "TailscaleService/a/bad");
        assert!(
            plan.left_out[0].reason.contains("group:nobody"),
            "{:?}",
            plan.left_out
        );
        let PolicyAction::Apply(apply) = &plan.action else {
            panic!("the Base and the good grant still apply: {:?}", plan.action);
        };
        assert!(apply.text.contains("TailscaleService/a/good"));
        assert!(!apply.text.contains("group:nobody"));
    }

    #[test]
    fn equal_live_and_desired_is_no_change_even_without_history() {
        let plan = run(base(V1), V1, &[]);
        assert!(matches!(plan.action, PolicyAction::NoChange));
        assert!(plan.outcomes[0].ready.is_true());
    }

    #[test]
    fn first_apply_is_initial_and_a_new_spec_is_spec_changed() {
        assert_eq!(
            reason_of(&run(base(V1), V2, &[])),
            Some(ApplyReason::Initial)
        );
        let history = [applied(1, V2)];
        let plan = run(base(V1), V2, &history);
        assert_eq!(reason_of(&plan), Some(ApplyReason::SpecChanged));
        let PolicyAction::Apply(apply) = &plan.action else {
            unreachable!()
        };
        let diff = &apply.text_diff;
        assert!(
            diff.contains("\n-// v2\n") && diff.contains("\n+// v1\n"),
            "{diff}"
        );
        assert_eq!(apply.sources.get("TailnetPolicy/base"), Some(&3));
    }

    #[test]
    fn drift_is_corrected_or_reported_per_drift_policy() {
        let history = [applied(1, V1)];
        let plan = run(base(V1), V2, &history);
        assert_eq!(reason_of(&plan), Some(ApplyReason::DriftCorrection));
        assert!(plan.outcomes[0].drifted.is_true());

        let mut report = base(V1);
        report.spec.common.drift_policy = DriftPolicy::Report;
        let plan = run(report, V2, &history);
        let PolicyAction::ReportDrift { diff } = &plan.action else {
            panic!("{:?}", plan.action)
        };
        assert_eq!(diff.entries[0].path, "/groups/group:a/0");
        assert!(plan.outcomes[0].drift.is_some());
    }

    #[test]
    fn suspend_writes_nothing_but_still_reports_drift() {
        let mut suspended = base(V1);
        suspended.spec.common.suspend = true;
        let plan = run(suspended, V2, &[applied(1, V1)]);
        assert!(matches!(plan.action, PolicyAction::NoChange));
        assert_eq!(plan.outcomes[0].ready.reason, reason::SUSPENDED);
        assert!(plan.outcomes[0].drifted.is_true());
    }

    #[test]
    fn a_text_that_was_rolled_back_is_not_retried() {
        let mut rollback = applied(2, V2);
        rollback.rejected_hash = Some(policy_hash(V1));
        let plan = run(base(V1), V2, &[applied(1, V2), rollback]);
        assert!(matches!(plan.action, PolicyAction::NoChange));
        assert_eq!(plan.outcomes[0].ready.reason, reason::ROLLED_BACK);
    }

    #[test]
    fn a_rollback_annotation_that_is_not_a_kept_revision_is_refused() {
        let mut pinned = base(V1);
        pinned
            .annotations
            .insert(ROLLBACK_TO_ANNOTATION.into(), "latest".into());
        let plan = run(pinned, V2, &[applied(4, V2)]);
        assert!(matches!(plan.action, PolicyAction::NoChange));
        let message = &plan.outcomes[0].ready.message;
        assert!(
            message.contains("\"latest\"") && message.contains("kept: 4"),
            "{message}"
        );
    }
}
