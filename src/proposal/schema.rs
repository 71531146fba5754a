//! Validation of a patched object as the API server would do it: the CRD's structural schema
//! (evaluated here, for the OpenAPI v3 subset CRDs use), its CEL rules (with `kube-cel`), then
//! deserialization into the kind's Rust type.
//!
//! Why evaluate the schema here rather than with a JSON Schema library: a CRD schema is
//! OpenAPI, not JSON Schema (`nullable`, `x-kubernetes-*`), and the API server prunes nulls
//! and defaults fields before validating; this follows the API server on those points and
//! names each problem by its field path (`spec.role`).
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};

use super::kinds::KindEntry;
use super::{ValidationResult, check, result};

/// Problems listed per check before "and N more".
const PROBLEMS_SHOWN: usize = 10;
/// Root fields every object has and CRD schemas leave out.
const ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// The kind's schema, `object` as the API server sees it (status dropped: it is written through
/// its subresource, never by a user or a proposal; defaults applied), and its schema problems.
fn schema_problems(entry: &KindEntry, object: &Value) -> (Value, Value, Vec<String>) {
    let schema = entry.schema();
    let mut object = object.clone();
    if let Some(root) = object.as_object_mut() {
        root.remove("status");
    }
    let object = kube_cel::apply_defaults(&schema, &object);
    let mut problems = Vec::new();
    validate(&schema, &object, "", true, &mut problems);
    (schema, object, problems)
}

/// `schema`, `cel` and `typed`, in order; later ones are not run once one fails. `target`: the
/// object as it is (CEL's `oldSelf`), `None` for a create.
pub(super) fn check(
    entry: &KindEntry,
    target: Option<&Value>,
    patched: &Value,
) -> Vec<ValidationResult> {
    let (schema, object, problems) = schema_problems(entry, patched);
    let mut results = vec![outcome(check::SCHEMA, problems)];
    if !results[0].ok {
        results.push(not_run(check::CEL));
        results.push(not_run(check::TYPED));
        return results;
    }
    results.push(outcome(check::CEL, cel_problems(&schema, &object, target)));
    results.push(match (entry.typed)(&object) {
        Ok(()) => result(check::TYPED, true, format!("a valid {}", entry.kind)),
        Err(message) => result(check::TYPED, false, message),
    });
    results
}

/// Validates `object` as the API server would on create (`kubectl apply --validate=strict`):
/// defaults, the CRD's schema with unknown fields as errors, its CEL rules, then the Rust type.
/// Returns every problem, each naming its field path; empty when the object is valid.
pub fn validate_new(entry: &KindEntry, object: &Value) -> Vec<String> {
    let (schema, object, problems) = schema_problems(entry, object);
    if !problems.is_empty() {
        return problems;
    }
    let cel = cel_problems(&schema, &object, None);
    if !cel.is_empty() {
        return cel;
    }
    (entry.typed)(&object).err().into_iter().collect()
}

/// The known field closest to an unknown `key` (same letters but for case, or at most two
/// edits away), for "did you mean".
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance (small strings: field names).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn not_run(name: &str) -> ValidationResult {
    result(name, false, "not run: the patched object fails its schema")
}

fn outcome(name: &str, problems: Vec<String>) -> ValidationResult {
    if problems.is_empty() {
        return result(name, true, "passed");
    }
    let mut message = problems
        .iter()
        .take(PROBLEMS_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > PROBLEMS_SHOWN {
        message.push_str(&format!("; and {} more", problems.len() - PROBLEMS_SHOWN));
    }
    result(name, false, message)
}

/// The CEL rules, on update (the current target is `oldSelf`, defaulted like the new one).
fn cel_problems(schema: &Value, object: &Value, target: Option<&Value>) -> Vec<String> {
    let old = target.map(|target| {
        let mut old = target.clone();
        if let Some(root) = old.as_object_mut() {
            root.remove("status");
        }
        old
    });
    match validator().lock() {
        Ok(validator) => match validator.validate(schema, object, old.as_ref()) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.into_vec().iter().map(ToString::to_string).collect(),
        },
        Err(_) => vec!["the CEL evaluator is unavailable (a previous evaluation panicked)".into()],
    }
}

/// One evaluator (its function registry is built once); `Validator` is `Send` but not `Sync`.
fn validator() -> &'static Mutex<kube_cel::Validator> {
    static VALIDATOR: OnceLock<Mutex<kube_cel::Validator>> = OnceLock::new();
    VALIDATOR.get_or_init(|| Mutex::new(kube_cel::Validator::new()))
}

fn field(path: &str) -> &str {
    if path.is_empty() { "the object" } else { path }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Checks `value` against `schema` at `path`, appending one problem per violation.
fn validate(schema: &Value, value: &Value, path: &str, root: bool, problems: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    let flag = |name: &str| schema.get(name).and_then(Value::as_bool).unwrap_or(false);
    if value.is_null() {
        // Nullable, or pruned by the API server when not; a required field that is null is
        // reported missing by its parent.
        return;
    }
    if flag("x-kubernetes-int-or-string") {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            problems.push(format!("{}: must be an integer or a string", field(path)));
        }
        return;
    }
    if let Some(kind) = schema.get("type").and_then(Value::as_str) {
        if !has_type(value, kind) {
            problems.push(format!(
                "{}: must be {}, not {}",
                field(path),
                article(kind),
                describe(value)
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            let listed: Vec<String> = options.iter().map(Value::to_string).collect();
            problems.push(format!(
                "{}: {} is not one of {}",
                field(path),
                value,
                listed.join(", ")
            ));
        }
    }
    match value {
        Value::Object(map) => validate_object(schema, map, path, root, problems),
        Value::Array(items) => validate_array(schema, items, path, problems),
        Value::String(text) => validate_string(schema, text, path, problems),
        Value::Number(_) => validate_number(schema, value, path, problems),
        _ => {}
    }
    for sub in ["allOf"] {
        for branch in schema
            .get(sub)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            validate(branch, value, path, root, problems);
        }
    }
}

fn has_type(value: &Value, kind: &str) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        _ => true,
    }
}

fn article(kind: &str) -> String {
    match kind {
        "object" | "array" | "integer" => format!("an {kind}"),
        other => format!("a {other}"),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("the string {s:?}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn validate_object(
    schema: &Map<String, Value>,
    map: &Map<String, Value>,
    path: &str,
    root: bool,
    problems: &mut Vec<String>,
) {
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if map.get(required).is_none_or(Value::is_null) {
            problems.push(format!("{}: required", join(path, required)));
        }
    }
    for (key, value) in map {
        let child = join(path, key);
        if let Some(sub) = properties.and_then(|p| p.get(key)) {
            validate(sub, value, &child, false, problems);
        } else if let Some(sub) = additional.filter(|a| a.is_object()) {
            validate(sub, value, &child, false, problems);
        } else if root && (ROOT_FIELDS.contains(&key.as_str()) || key == "status") {
            // Server-managed or validated elsewhere (status through its subresource).
        } else if !preserve && additional != Some(&Value::Bool(true)) {
            let known: Vec<&str> = properties
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let hint = closest(key, &known)
                .map(|k| format!("did you mean {k}? "))
                .unwrap_or_default();
            problems.push(format!(
                "{child}: unknown field (the API server would drop it); {hint}known fields here: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    let count = map.len() as f64;
    bound(
        schema,
        "minProperties",
        "maxProperties",
        count,
        "properties",
        path,
        problems,
    );
}

fn validate_array(
    schema: &Map<String, Value>,
    items: &[Value],
    path: &str,
    problems: &mut Vec<String>,
) {
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate(item_schema, item, &format!("{path}[{i}]"), false, problems);
        }
    }
    bound(
        schema,
        "minItems",
        "maxItems",
        items.len() as f64,
        "items",
        path,
        problems,
    );
    let set = schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set");
    if set || schema.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
        for (i, item) in items.iter().enumerate() {
            if items[..i].contains(item) {
                problems.push(format!("{path}[{i}]: duplicate entry {item}"));
            }
        }
    }
}

fn validate_string(
    schema: &Map<String, Value>,
    text: &str,
    path: &str,
    problems: &mut Vec<String>,
) {
    let length = text.chars().count() as f64;
    bound(
        schema,
        "minLength",
        "maxLength",
        length,
        "characters",
        path,
        problems,
    );
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match compiled(pattern) {
            Some(re) if !re.is_match(text) => problems.push(format!(
                "{}: {} does not match the pattern {pattern}",
                field(path),
                describe(&Value::String(text.to_owned()))
            )),
            Some(_) => {}
            None => problems.push(format!(
                "{}: the schema's pattern {pattern} does not compile",
                field(path)
            )),
        }
    }
}

fn validate_number(
    schema: &Map<String, Value>,
    value: &Value,
    path: &str,
    problems: &mut Vec<String>,
) {
    let Some(number) = value.as_f64() else {
        return;
    };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let exclusive = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
        if number < min || (exclusive && number == min) {
            problems.push(format!(
                "{}: {value} is below the minimum {min}",
                field(path)
            ));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let exclusive = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
        if number > max || (exclusive && number == max) {
            problems.push(format!(
                "{}: {value} is above the maximum {max}",
                field(path)
            ));
        }
    }
}

/// A `min*`/`max*` pair on a count.
fn bound(
    schema: &Map<String, Value>,
    min_key: &str,
    max_key: &str,
    count: f64,
    noun: &str,
    path: &str,
    problems: &mut Vec<String>,
) {
    if let Some(min) = schema.get(min_key).and_then(Value::as_f64) {
        if count < min {
            problems.push(format!("{}: at least {min} {noun} required", field(path)));
        }
    }
    if let Some(max) = schema.get(max_key).and_then(Value::as_f64) {
        if count > max {
            problems.push(format!("{}: at most {max} {noun} allowed", field(path)));
        }
    }
}

/// Compiled schema patterns, kept: the same few patterns are checked on every preview.
fn compiled(pattern: &str) -> Option<regex::Regex> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<regex::Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().ok()?;
    cache
        .entry(pattern.to_owned())
        .or_insert_with(|| regex::Regex::new(pattern).ok())
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(schema: Value, value: Value) -> Vec<String> {
        let mut out = Vec::new();
        validate(&schema, &value, "", true, &mut out);
        out
    }

    #[test]
    fn each_violation_names_its_path() {
        let schema = json!({
            "type": "object", "required": ["spec"],
            "properties": {"spec": {"type": "object", "required": ["role"], "properties": {
                "role": {"type": "string", "enum": ["Base", "Fragment"]},
                "limit": {"type": "integer", "minimum": 1.0, "maximum": 100.0},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "opt": {"type": "string", "nullable": true},
            }}}
        });
        let found = problems(
            schema.clone(),
            json!({"apiVersion": "v", "kind": "K", "metadata": {},
                   "spec": {"role": "Primary", "limit": 0, "name": "ABCDEFG",
                            "tags": ["a", 1, "c"], "free": {"x": 1}, "extra": true,
                            "opt": null}}),
        );
        let expect = [
            "spec.role: \"Primary\" is not one of \"Base\", \"Fragment\"",
            "spec.limit: 0 is below the minimum 1",
            "spec.name: at most 5 characters allowed",
            "spec.name: the string \"ABCDEFG\" does not match the pattern ^[a-z]+$",
            "spec.tags[1]: must be a string, not the number 1",
            "spec.tags: at most 2 items allowed",
            "spec.extra: unknown field",
        ];
        for e in expect {
            assert!(
                found.iter().any(|p| p.starts_with(e)),
                "{e} not in {found:?}"
            );
        }
        assert_eq!(found.len(), expect.len(), "{found:?}");
        assert_eq!(
            problems(schema, json!({"spec": {"limit": 5}})),
            vec!["spec.role: required"]
        );
    }

    #[test]
    fn an_unknown_field_close_to_a_known_one_is_suggested() {
        assert_eq!(
            closest("magicDns", &["magicDNS", "nameservers"]),
            Some("magicDNS")
        );
        assert_eq!(
            closest("nameServers", &["magicDNS", "nameservers"]),
            Some("nameservers")
        );
        assert_eq!(closest("splitDsn", &["splitDNS"]), Some("splitDNS"));
        assert_eq!(closest("whatever", &["magicDNS", "nameservers"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
