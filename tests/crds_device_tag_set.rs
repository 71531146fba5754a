//! The DeviceTagSet CRD: names, columns, and its CEL rules evaluated (with `kube-cel`) as the
//! API server would, on valid and invalid samples; the example manifest and a full status pass
//! the schema.
mod support;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_cel::{ScopeContext, analyze_rule, compile_schema};
use serde_json::{Value, json};
use tailnet_operator::resources::device_tag_set::{MatchedDevice, TagSetConflict, WaitingDevice};
use tailnet_operator::resources::{DeviceTagSet, DeviceTagSetStatus};

fn crd() -> CustomResourceDefinition {
    support::crds::crd(NAME)
}

fn schema() -> Value {
    support::crds::schema(NAME)
}

fn schema_errors(object: &Value) -> Vec<String> {
    support::crds::schema_errors(&schema(), object)
}

fn cel_errors(object: &Value) -> Vec<String> {
    support::crds::cel_errors(&schema(), object, None)
}

const NAME: &str = "devicetagsets.tailnet.ops.dev";

fn sample(spec: Value) -> Value {
    json!({
        "apiVersion": "tailnet.ops.dev/v1alpha1",
        "kind": "DeviceTagSet",
        "metadata": {"name": "web"},
        "spec": spec,
    })
}

#[test]
fn names_scope_and_columns() {
    let crd = crd();
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(crd.spec.names.short_names, Some(vec!["tndts".to_owned()]));
    assert_eq!(
        crd.spec.names.categories,
        Some(vec!["tailnetops".to_owned()])
    );
    let columns: Vec<String> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    for column in ["Ready", "Drifted", "Matched", "Age"] {
        assert!(columns.contains(&column.to_owned()), "{columns:?}");
    }
}

#[test]
fn every_rule_compiles_and_fits_the_cost_budget() {
    let mut found = 0;
    walk(&schema(), &mut |node| {
        for rule in node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            found += 1;
            assert!(rule["message"].as_str().is_some_and(|m| !m.is_empty()));
            let text = rule["rule"].as_str().unwrap();
            let compiled = compile_schema(node);
            assert!(compiled.compilation_errors().is_empty(), "{text}");
            // This kube-cel's scope check counts a macro's own variable (`t` in
            // `self.all(t, ...)`) as an outside variable; the API server does not.
            let warnings: Vec<_> = analyze_rule(text, &compiled, ScopeContext::CrdValidation)
                .into_iter()
                .filter(|w| !is_macro_variable(text, &w.message))
                .collect();
            assert!(warnings.is_empty(), "`{text}`: {warnings:?}");
        }
    });
    // tailnetRef (immutable), tags, routes, selector non-empty, selector tags.
    assert_eq!(found, 5, "a rule was added or lost; extend the tests");
}

/// Whether `message` complains about a variable that `rule` binds in an `all` macro.
fn is_macro_variable(rule: &str, message: &str) -> bool {
    message
        .split('\'')
        .nth(1)
        .is_some_and(|var| rule.contains(&format!(".all({var},")))
}

fn walk(node: &Value, visit: &mut dyn FnMut(&Value)) {
    visit(node);
    if let Some(props) = node["properties"].as_object() {
        for child in props.values() {
            walk(child, visit);
        }
    }
    if node["items"].is_object() {
        walk(&node["items"], visit);
    }
}

#[test]
fn valid_samples_pass() {
    for spec in [
        json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:web-1"]}),
        json!({"selector": {"user": "alice@example.com"}, "authorized": true}),
        json!({"selector": {"nodeIds": ["n1CNTRL"]}, "routes": ["10.0.0.0/24", "0.0.0.0/0", "::/0", "fd00::/8"]}),
        json!({"selector": {"os": ["linux"], "tags": ["tag:server"]}, "tags": [], "mode": "Exact"}),
    ] {
        let object = sample(spec);
        assert_eq!(cel_errors(&object), Vec::<String>::new(), "{object}");
        assert_eq!(schema_errors(&object), Vec::<String>::new(), "{object}");
    }
}

#[test]
fn invalid_samples_are_refused_with_the_rules_messages() {
    let cases = [
        (
            json!({"selector": {"hostnames": ["web-*"]}, "tags": ["server"]}),
            "tags must look like tag:name",
        ),
        (
            json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:Web"]}),
            "tags must look like tag:name",
        ),
        (
            json!({"selector": {"hostnames": ["web-*"]}, "routes": ["10.0.0.1/24"]}),
            "without host bits",
        ),
        (
            json!({"selector": {"hostnames": ["web-*"]}, "routes": ["banana"]}),
            "without host bits",
        ),
        (
            json!({"selector": {}, "tags": ["tag:a"]}),
            "at least one of",
        ),
        (
            json!({"selector": {"hostnames": []}, "tags": ["tag:a"]}),
            "at least one of",
        ),
        (
            json!({"selector": {"tags": ["server"]}}),
            "selector tags must look like tag:name",
        ),
    ];
    for (spec, message) in cases {
        let object = sample(spec);
        let errors = cel_errors(&object);
        assert!(
            errors.iter().any(|e| e.contains(message)),
            "expected {message:?}, got {errors:?} for {object}"
        );
    }
    let bad_mode = sample(json!({"selector": {"os": ["linux"]}, "mode": "Sometimes"}));
    assert!(!schema_errors(&bad_mode).is_empty());
}

#[test]
fn the_example_and_a_full_status_match_the_schema() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/device-tag-set.yaml"),
    )
    .unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    for doc in docs {
        assert_eq!(cel_errors(&doc), Vec::<String>::new(), "{doc}");
        assert_eq!(schema_errors(&doc), Vec::<String>::new(), "{doc}");
        let mut set: DeviceTagSet = serde_json::from_value(doc).unwrap();
        set.status = Some(DeviceTagSetStatus {
            matched_count: 2,
            out_of_sync_count: 1,
            devices: vec![MatchedDevice {
                name: "web-1".into(),
                node_id: "n1".into(),
                in_sync: false,
            }],
            waiting_for_routes: vec![WaitingDevice {
                name: "r".into(),
                node_id: "n2".into(),
                routes: vec!["10.0.0.0/24".into()],
            }],
            conflicts: vec![TagSetConflict {
                with: "DeviceTagSet/b".into(),
                fields: vec!["tags".into()],
                devices: 1,
                examples: vec!["web-1".into()],
            }],
            applied_generation: Some(1),
            ..Default::default()
        });
        let object = serde_json::to_value(&set).unwrap();
        assert_eq!(schema_errors(&object), Vec::<String>::new());
    }
}
