//! `TailnetPolicy` planner checks and adopt-drift: the patched policy composed with the other
//! policies of its tailnet, checked and tested with the local evaluator, and the access diff.
use serde_json::{Value, json};

use super::{
    ACCESS_LINES, Adoption, PlannerReport, ProposalError, ProposalWorld, ValidationResult, check,
    result,
};
use crate::policy::access::{ClassDiff, Policy};
use crate::policy::checks::{self, CheckProblem};
use crate::policy::compose::{Composition, PolicySource, compose};
use crate::policy::hujson;
use crate::reconcile::tailnet_policy::{
    TextSource, config_map_text, find_config_map, policy_hash, source_name, text_source,
};
use crate::resources::tailnet_policy::{PolicyRole, TailnetPolicy};

fn name_of(policy: &TailnetPolicy) -> String {
    policy.metadata.name.clone().unwrap_or_default()
}

fn tailnet_of(policy: &TailnetPolicy) -> &str {
    &policy.spec.common.tailnet_ref
}

/// The policy's HuJSON text: inline, or from a ConfigMap of the world.
fn text_of(policy: &TailnetPolicy, world: &ProposalWorld) -> Result<String, String> {
    let r = match text_source(&policy.spec).map_err(|e| e.to_string())? {
        TextSource::Inline(text) => return Ok(text.to_owned()),
        TextSource::ConfigMap(r) => r,
    };
    config_map_text(
        r,
        find_config_map(&world.config_maps, r),
        "spec.policyFrom.configMapKeyRef names a ConfigMap that does not exist: create it or \
         fix the reference",
    )
    .map_err(|e| e.to_string())
}

/// The other policies of `policy`'s tailnet (not `policy` itself, by name).
fn others<'a>(policy: &TailnetPolicy, world: &'a ProposalWorld) -> Vec<&'a TailnetPolicy> {
    let name = name_of(policy);
    world
        .policies
        .iter()
        .filter(|p| tailnet_of(p) == tailnet_of(policy) && name_of(p) != name)
        .collect()
}

fn parse(object: &Value) -> Result<TailnetPolicy, String> {
    serde_json::from_value(object.clone()).map_err(|e| e.to_string())
}

/// `policyCompose`, `policyChecks`, `policyTests`, and the access diff.
pub(super) fn planner_checks(
    target: &Value,
    patched: &Value,
    world: &ProposalWorld,
) -> PlannerReport {
    let mut report = PlannerReport::default();
    let (before, after) = match (parse(target), parse(patched)) {
        (Ok(b), Ok(a)) => (b, a),
        (Err(e), _) | (_, Err(e)) => {
            report.validation = vec![
                result(
                    check::POLICY_COMPOSE,
                    false,
                    format!("not a TailnetPolicy: {e}"),
                ),
                not_run(check::POLICY_CHECKS),
                not_run(check::POLICY_TESTS),
            ];
            return report;
        }
    };
    let composed = match composition(&after, world) {
        Ok((composition, note)) => {
            report
                .validation
                .push(result(check::POLICY_COMPOSE, true, note));
            composition
        }
        Err(message) => {
            report.validation = vec![
                result(check::POLICY_COMPOSE, false, message),
                not_run(check::POLICY_CHECKS),
                not_run(check::POLICY_TESTS),
            ];
            return report;
        }
    };
    let outcome = checks::check(&composed.text, &world.view);
    let (tests, others): (Vec<&CheckProblem>, Vec<&CheckProblem>) = outcome
        .problems
        .iter()
        .partition(|p| matches!(p, CheckProblem::TestFailed(_)));
    report.validation.push(if others.is_empty() {
        let warnings = outcome.warnings();
        let mut message = "the composed policy parses and compiles; every tag, group, host and \
                           ipset it uses is defined"
            .to_owned();
        if !warnings.is_empty() {
            message.push_str(&format!(
                " (not evaluated locally: {})",
                warnings.join("; ")
            ));
        }
        result(check::POLICY_CHECKS, true, message)
    } else {
        result(check::POLICY_CHECKS, false, join(&others))
    });
    report
        .validation
        .push(match (&outcome.policy, tests.is_empty()) {
            (None, _) => not_run(check::POLICY_TESTS),
            (Some(_), true) => result(
                check::POLICY_TESTS,
                true,
                tests_message(&composed.text, world),
            ),
            (Some(_), false) => result(check::POLICY_TESTS, false, join(&tests)),
        });
    if let (Some(new), Some(old)) = (&outcome.policy, current_policy(&before, world)) {
        report.access_diff = Some(render_access_diff(&old.class_diff(new, &world.view)));
    }
    report
}

fn not_run(name: &str) -> ValidationResult {
    result(name, false, "not run: the composed policy is not valid")
}

fn join(problems: &[&CheckProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn tests_message(text: &str, world: &ProposalWorld) -> String {
    let count = hujson::parse_strict(text)
        .ok()
        .and_then(|doc| {
            doc.as_object().and_then(|o| {
                o.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("tests"))
                    .and_then(|(_, v)| v.as_array().map(Vec::len))
            })
        })
        .unwrap_or(0);
    let over = format!(
        "{} users, {} devices",
        world.view.users.len(),
        world.view.devices.len()
    );
    match count {
        0 => "the composed policy defines no tests".to_owned(),
        1 => format!("its 1 policy test passes in the local evaluator ({over})"),
        n => format!("all {n} policy tests pass in the local evaluator ({over})"),
    }
}

/// Composes `policy` (patched) with the other policies of its tailnet, as the planner would.
/// `Err` names the problem; `Ok` carries a note on what was composed.
fn composition(
    policy: &TailnetPolicy,
    world: &ProposalWorld,
) -> Result<(Composition, String), String> {
    let tailnet = tailnet_of(policy).to_owned();
    let mut sources: Vec<&TailnetPolicy> = others(policy, world);
    sources.push(policy);
    let bases: Vec<&&TailnetPolicy> = sources
        .iter()
        .filter(|p| p.spec.role == PolicyRole::Base)
        .collect();
    let base = match bases.as_slice() {
        [] => {
            return Err(format!(
                "tailnet {tailnet:?} has no Base TailnetPolicy: a Fragment is only merged into \
                 a Base; create the Base first"
            ));
        }
        [one] => **one,
        several => {
            let names: Vec<String> = several.iter().map(|p| source_name(&name_of(p))).collect();
            return Err(format!(
                "tailnet {tailnet:?} would have {} Base TailnetPolicies ({}): keep exactly one \
                 Base and make the others Fragments",
                names.len(),
                names.join(", ")
            ));
        }
    };
    let target = source_name(&name_of(policy));
    let mut texts = Vec::new();
    for source in &sources {
        let name = source_name(&name_of(source));
        match text_of(source, world) {
            Ok(text) => texts.push((source, name, text)),
            Err(e) if name == target => return Err(e),
            Err(e) => {
                return Err(format!(
                    "{name} could not be read ({e}); the operator applies nothing for tailnet \
                     {tailnet:?} until it can"
                ));
            }
        }
    }
    let as_source = |(p, name, text): &(&&TailnetPolicy, String, String)| PolicySource {
        name: name.clone(),
        generation: p.metadata.generation,
        text: text.clone(),
    };
    let base_source = texts
        .iter()
        .find(|(p, _, _)| std::ptr::eq(**p, base))
        .map(as_source)
        .ok_or_else(|| "internal: the Base has no text".to_owned())?;
    let fragments: Vec<PolicySource> = texts
        .iter()
        .filter(|(p, _, _)| !std::ptr::eq(**p, base))
        .map(as_source)
        .collect();
    let composition = compose(&base_source, &fragments, &world.contributions).map_err(|e| {
        if base_source.name == target {
            e.to_string()
        } else {
            format!("the Base {} does not compose: {e}", base_source.name)
        }
    })?;
    if let Some(own) = composition.rejected.iter().find(|r| r.source == target) {
        return Err(own.error.to_string());
    }
    let mut note = format!(
        "composed into tailnet {tailnet:?}'s policy with {}",
        if composition.applied.len() + world.contributions.len() <= 1 {
            "no other source".to_owned()
        } else {
            composition
                .applied
                .iter()
                .filter(|n| **n != target)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if !composition.rejected.is_empty() {
        let rejected: Vec<String> = composition
            .rejected
            .iter()
            .map(|r| format!("{} ({})", r.source, r.error))
            .collect();
        note.push_str(&format!(
            "; left out as before, not because of this patch: {}",
            rejected.join("; ")
        ));
    }
    Ok((composition, note))
}

/// The composed text with `policy` (see [`composition`]), for tests.
#[cfg(test)]
pub(super) fn composition_text(
    policy: &TailnetPolicy,
    world: &ProposalWorld,
) -> Result<String, String> {
    composition(policy, world).map(|(c, _)| c.text)
}

/// What the tailnet enforces now: the live policy when known and compilable, else the current
/// composition, else the empty policy (which allows nothing).
fn current_policy(before: &TailnetPolicy, world: &ProposalWorld) -> Option<Policy> {
    let compiled = |text: &str| {
        hujson::parse_strict(text)
            .ok()
            .and_then(|doc| Policy::compile(&doc).ok())
    };
    world
        .live_policy
        .as_deref()
        .and_then(compiled)
        .or_else(|| {
            composition(before, world)
                .ok()
                .and_then(|(c, _)| compiled(&c.text))
        })
        .or_else(|| Policy::compile(&json!({})).ok())
}

/// The class diff's totals, then its biggest class lines (`+` gained, `-` lost), capped.
pub(super) fn render_access_diff(diff: &ClassDiff) -> String {
    if diff.is_empty() {
        return "no change in access".to_owned();
    }
    let mut lines = vec![diff.summary()];
    lines.extend(diff.render_lines(ACCESS_LINES));
    lines.join("\n")
}

/// The merge patch making the Base hold the live policy (see the module docs of
/// [`super`]).
pub(super) fn adopt_drift(
    target: &Value,
    world: &ProposalWorld,
) -> Result<Adoption, ProposalError> {
    let policy = parse(target).map_err(ProposalError::InvalidTarget)?;
    let label = source_name(&name_of(&policy));
    let refuse = |message: String| ProposalError::CannotAdopt {
        target: label.clone(),
        message,
    };
    let Some(live) = world.live_policy.as_deref() else {
        return Err(refuse(
            "the live policy of its tailnet is unknown; it is needed to adopt the console's \
             edits"
                .into(),
        ));
    };
    let others = others(&policy, world);
    let composed_from_several = policy.spec.role == PolicyRole::Fragment
        || others.iter().any(|p| p.spec.role == PolicyRole::Fragment)
        || !world.contributions.is_empty();
    if composed_from_several {
        return adopt_composed(&policy, &others, live, world).map_err(|e| match e {
            ProposalError::CannotAdopt { message, .. } => refuse(message),
            other => other,
        });
    }
    let current = text_of(&policy, world).ok();
    if current.as_deref().map(policy_hash) == Some(policy_hash(live)) {
        return Err(ProposalError::NotDrifted { target: label });
    }
    let mut spec = serde_json::Map::new();
    spec.insert("policy".into(), Value::String(live.to_owned()));
    if policy.spec.policy_from.is_some() {
        // A proposal cannot patch the ConfigMap; the Base switches to the inline live text.
        spec.insert("policyFrom".into(), Value::Null);
    }
    Ok(Adoption {
        target: name_of(&policy),
        patch: json!({ "spec": spec }),
    })
}

/// Adoption for a policy composed from several sources: the console's edits attributed to the
/// source owning them ([`super::attribute`]), proposed only when recomposing reproduces the
/// live file.
fn adopt_composed(
    asked: &TailnetPolicy,
    others: &[&TailnetPolicy],
    live: &str,
    world: &ProposalWorld,
) -> Result<Adoption, ProposalError> {
    let refuse = |message: String| ProposalError::CannotAdopt {
        target: source_name(&name_of(asked)),
        message,
    };
    let all: Vec<&TailnetPolicy> = std::iter::once(asked)
        .chain(others.iter().copied())
        .collect();
    let base = all
        .iter()
        .find(|p| p.spec.role == PolicyRole::Base)
        .ok_or_else(|| refuse("the tailnet has no Base TailnetPolicy".into()))?;
    let (composed, _) = composition(base, world).map_err(refuse)?;
    if policy_hash(&composed.text) == policy_hash(live) {
        return Err(ProposalError::NotDrifted {
            target: source_name(&name_of(asked)),
        });
    }
    let names: Vec<String> = all.iter().map(|p| source_name(&name_of(p))).collect();
    let texts: Vec<String> = all
        .iter()
        .zip(&names)
        .map(|(p, name)| text_of(p, world).map_err(|e| refuse(format!("{name}: {e}"))))
        .collect::<Result<_, _>>()?;
    let sources: Vec<super::attribute::Source<'_>> = all
        .iter()
        .zip(&names)
        .zip(&texts)
        .map(|((p, name), text)| super::attribute::Source {
            name,
            text,
            base: p.spec.role == PolicyRole::Base,
        })
        .collect();
    let found = super::attribute::attribute(live, &composed.text, &sources).map_err(refuse)?;
    let owner = all[found.source];
    let mut edited = owner.clone();
    edited.spec.policy = Some(found.text.clone());
    edited.spec.policy_from = None;
    let (recomposed, _) = composition(&edited, world).map_err(refuse)?;
    if policy_hash(&recomposed.text) != policy_hash(live) {
        return Err(refuse(format!(
            "moving {} into {} does not reproduce the live file: the console changed more \
             (comments, order, or entries composed from several sources); edit by hand",
            found.entries.join(", "),
            names[found.source]
        )));
    }
    let mut spec = serde_json::Map::new();
    spec.insert("policy".into(), Value::String(found.text));
    if owner.spec.policy_from.is_some() {
        spec.insert("policyFrom".into(), Value::Null);
    }
    Ok(Adoption {
        target: name_of(owner),
        patch: json!({ "spec": spec }),
    })
}
