//! The generated CRDs as tests read them: one CRD by name, its `openAPIV3Schema` as JSON, and
//! samples checked the way the API server checks them (the OpenAPI schema with `jsonschema`,
//! the CEL rules with `kube-cel`).
#![allow(dead_code)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_cel::Validator;
use serde_json::Value;
use tailnet_operator::resources;

/// The CRD named `name` (e.g. `dnsconfigs.tailnet.ops.dev`) from `resources::crds()`.
pub fn crd(name: &str) -> CustomResourceDefinition {
    resources::crds()
        .into_iter()
        .find(|crd| crd.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no CRD named {name} in resources::crds()"))
}

/// The `openAPIV3Schema` of the CRD's one version, as JSON.
pub fn schema(name: &str) -> Value {
    let crd = crd(name);
    assert_eq!(crd.spec.versions.len(), 1, "{name}: one version");
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("openAPIV3Schema");
    serde_json::to_value(schema).unwrap()
}

/// A YAML sample as JSON.
pub fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|err| panic!("sample YAML: {err}\n{text}"))
}

/// Where `object` fails `schema` (types, enums, patterns, ranges, required fields).
pub fn schema_errors(schema: &Value, object: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).expect("the schema compiles");
    validator
        .iter_errors(object)
        .map(|err| format!("{}: {err}", err.instance_path()))
        .collect()
}

/// Where `object` (an update of `old`, when given) fails the CEL rules of `schema`.
pub fn cel_errors(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(schema, object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().iter().map(ToString::to_string).collect(),
    }
}

/// Visits every schema node under `node` (properties, items, additionalProperties) with its
/// path.
pub fn walk<'a>(node: &'a Value, path: String, visit: &mut dyn FnMut(&str, &'a Value)) {
    visit(&path, node);
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (key, child) in properties {
            walk(child, format!("{path}/properties/{key}"), visit);
        }
    }
    for nested in ["items", "additionalProperties"] {
        if let Some(child) = node.get(nested).filter(|c| c.is_object()) {
            walk(child, format!("{path}/{nested}"), visit);
        }
    }
}

/// The properties of `schema` and those among them without a real description.
pub fn undocumented(schema: &Value) -> (usize, Vec<String>) {
    let (mut count, mut missing) = (0, Vec::new());
    walk(schema, String::new(), &mut |path, node| {
        if path.rsplit('/').nth(1) == Some("properties") {
            count += 1;
            let described = node
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| d.trim().len() > 3);
            if !described {
                missing.push(path.to_owned());
            }
        }
    });
    (count, missing)
}
