//! The ChangeProposal CRD's schema and CEL rules, evaluated with `kube-cel` as the API server
//! would: no proposal is created already approved; target, operation, patch, object and mode
//! are immutable; each operation carries exactly its own field.
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
    assert_eq!(rules.len(), 8, "a rule was added or lost; extend the tests");
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
        (
            json!({"operation": "Delete", "patch": null}),
            "spec.operation is immutable",
        ),
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

fn create(object: Value) -> Value {
    let mut proposal = proposal(false);
    let spec = proposal["spec"].as_object_mut().unwrap();
    spec.remove("patch");
    spec.insert("operation".into(), json!("Create"));
    spec.insert("object".into(), object);
    proposal
}

#[test]
fn each_operation_carries_its_own_field_and_an_object_is_immutable() {
    let object = json!({"apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "TailnetPolicy",
                        "metadata": {"name": "base"}, "spec": {"role": "Base", "policy": "{}"}});
    assert_eq!(
        cel_errors(&create(object.clone()), None),
        Vec::<String>::new()
    );
    // A Create without its object, or with a patch too.
    let mut no_object = create(object.clone());
    no_object["spec"].as_object_mut().unwrap().remove("object");
    assert_rejects(
        &no_object,
        None,
        "spec.object (the whole object to create) is required",
    );
    let mut both = create(object.clone());
    both["spec"]["patch"] = json!({"spec": {}});
    assert_rejects(
        &both,
        None,
        "spec.patch is required for operation Patch and not allowed",
    );
    // A Delete carries neither; a Patch needs its patch.
    let mut delete = proposal(false);
    delete["spec"].as_object_mut().unwrap().remove("patch");
    delete["spec"]["operation"] = json!("Delete");
    assert_eq!(cel_errors(&delete, None), Vec::<String>::new());
    let mut no_patch = proposal(false);
    no_patch["spec"].as_object_mut().unwrap().remove("patch");
    assert_rejects(
        &no_patch,
        None,
        "spec.patch is required for operation Patch",
    );
    // What a reviewer saw is what is created.
    let mut changed = object.clone();
    changed["spec"]["policy"] = json!("{\"acls\": []}");
    assert_rejects(
        &create(changed),
        Some(&create(object)),
        "spec.object is immutable",
    );
}
