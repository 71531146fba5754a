//! The ChangeProposal CRD's schema and CEL rules, evaluated with `kube-cel` as the API server
//! would: no proposal is created already approved; target, patch and mode are immutable.
mod support;
use kube_cel::{ScopeContext, analyze_rule, compile_schema};
use serde_json::{Value, json};

fn schema() -> Value {
    let name = "changeproposals.tailnet.ops.dev";
    assert_eq!(support::crds::crd(name).spec.scope, "Namespaced");
    support::crds::schema(name)
}

fn proposal(approved: bool) -> Value {
    json!({
        "apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "ChangeProposal",
        "metadata": {"name": "add-bob", "namespace": "tailnet-system"},
        "spec": {
            "target": {"kind": "TailnetPolicy", "name": "base"},
            "patch": {"spec": {"policy": "{}"}},
            "summary": "Give bob access to the web servers",
            "approved": approved,
        }
    })
}

/// The schema as `kube-cel` evaluates it. With `optionalOldSelf: true` the API server binds
/// `oldSelf` as a CEL optional (`optional.none()` on create, `optional.of(old)` on update), so
/// the rule says `oldSelf.hasValue()`; kube-cel 0.8 binds `null` / the plain old value
/// instead. The rule's logic is tested by spelling that one call the way kube-cel binds it.
fn cel_schema() -> Value {
    let text = schema()
        .to_string()
        .replace("oldSelf.hasValue()", "oldSelf != null");
    serde_json::from_str(&text).unwrap()
}

fn cel_errors(object: &Value, old: Option<&Value>) -> Vec<String> {
    support::crds::cel_errors(&cel_schema(), object, old)
}

fn assert_rejects(object: &Value, old: Option<&Value>, message: &str) {
    let errors = cel_errors(object, old);
    assert!(
        errors.iter().any(|e| e.contains(message)),
        "expected {message:?}, got {errors:?}"
    );
}

#[test]
fn every_rule_compiles_and_fits_the_cost_budget() {
    let spec = schema()["properties"]["spec"].clone();
    let rules = spec["x-kubernetes-validations"].as_array().unwrap().clone();
    assert_eq!(rules.len(), 4, "a rule was added or lost; extend the tests");
    let compiled = compile_schema(&spec);
    assert!(
        compiled.compilation_errors().is_empty(),
        "{:?}",
        compiled.compilation_errors()
    );
    for rule in rules {
        let rule = rule["rule"].as_str().unwrap();
        let warnings = analyze_rule(rule, &compiled, ScopeContext::CrdValidation);
        assert!(warnings.is_empty(), "`{rule}`: {warnings:?}");
    }
}

#[test]
fn a_proposal_cannot_be_created_approved_but_can_be_approved_later() {
    assert_eq!(cel_errors(&proposal(false), None), Vec::<String>::new());
    assert_rejects(&proposal(true), None, "cannot be created already approved");
    // Approval is an update: allowed.
    assert_eq!(
        cel_errors(&proposal(true), Some(&proposal(false))),
        Vec::<String>::new()
    );
    // Leaving approved out means false.
    let mut unset = proposal(false);
    unset["spec"].as_object_mut().unwrap().remove("approved");
    assert_eq!(cel_errors(&unset, None), Vec::<String>::new());
}

#[test]
fn target_patch_and_mode_are_immutable() {
    let old = proposal(false);
    for (change, message) in [
        (
            json!({"target": {"name": "other"}}),
            "spec.target is immutable",
        ),
        (
            json!({"target": {"kind": "ManagedTailnet"}}),
            "spec.target is immutable",
        ),
        (
            json!({"patch": {"spec": {"policy": "{\"acls\": []}"}}}),
            "spec.patch is immutable",
        ),
        (json!({"mode": "GitOps"}), "spec.mode is immutable"),
    ] {
        let mut new = old.clone();
        json_patch::merge(&mut new["spec"], &change);
        assert_rejects(&new, Some(&old), message);
    }
    // The summary may be reworded, and approval withdrawn.
    let mut reworded = proposal(true);
    reworded["spec"]["summary"] = json!("Reworded");
    assert_eq!(
        cel_errors(&reworded, Some(&proposal(true))),
        Vec::<String>::new()
    );
    assert_eq!(
        cel_errors(&proposal(false), Some(&proposal(true))),
        Vec::<String>::new()
    );
}
