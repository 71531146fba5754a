//! The merge patch itself: where it may write, applying it, and the YAML diff it causes.
use serde_json::{Map, Value};

use super::{DIFF_LINES, ProposalError};
use crate::reconcile::text_diff;

/// Metadata fields a proposal may change.
const PATCHABLE_METADATA: [&str; 2] = ["labels", "annotations"];
/// Metadata fields shown in diffs and manifests; the rest is set by the server.
const SHOWN_METADATA: [&str; 4] = ["name", "namespace", "labels", "annotations"];

/// The target's `kind`, checking it has a name too.
pub(super) fn target_kind(target: &Value) -> Result<String, ProposalError> {
    let kind = target
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ProposalError::InvalidTarget("it has no \"kind\"".into()))?;
    target
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ProposalError::InvalidTarget("it has no \"metadata.name\"".into()))?;
    Ok(kind.to_owned())
}

/// Refuses a patch that is not an object or that touches anything but `spec`,
/// `metadata.labels` and `metadata.annotations`, naming the first such path (e.g.
/// `metadata.name`, `status`).
pub fn check_patch_paths(patch: &Value) -> Result<(), ProposalError> {
    let Some(root) = patch.as_object() else {
        return Err(ProposalError::PatchNotAnObject {
            found: json_type(patch).into(),
        });
    };
    for (key, value) in root {
        match key.as_str() {
            "spec" => {}
            "metadata" => {
                let Some(metadata) = value.as_object() else {
                    return Err(ProposalError::ForbiddenPath {
                        path: "metadata".into(),
                    });
                };
                if let Some(field) = metadata
                    .keys()
                    .find(|k| !PATCHABLE_METADATA.contains(&k.as_str()))
                {
                    return Err(ProposalError::ForbiddenPath {
                        path: format!("metadata.{field}"),
                    });
                }
            }
            other => {
                return Err(ProposalError::ForbiddenPath {
                    path: other.to_owned(),
                });
            }
        }
    }
    Ok(())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `target` with the JSON merge patch (RFC 7386) applied: `null` removes a key, objects
/// merge, anything else replaces.
pub fn apply_merge_patch(target: &Value, patch: &Value) -> Value {
    let mut patched = target.clone();
    json_patch::merge(&mut patched, patch);
    patched
}

/// The object as a reviewer (and a manifest file) sees it: `apiVersion`, `kind`, `metadata`
/// reduced to name, namespace, labels and annotations (minus `kubectl`'s
/// last-applied-configuration copy), and `spec`. No status, no server-set metadata.
pub fn display_object(object: &Value) -> Value {
    let mut shown = Map::new();
    for key in ["apiVersion", "kind"] {
        if let Some(v) = object.get(key) {
            shown.insert(key.into(), v.clone());
        }
    }
    let mut metadata = Map::new();
    for key in SHOWN_METADATA {
        let Some(v) = object.pointer(&format!("/metadata/{key}")) else {
            continue;
        };
        let mut v = v.clone();
        if key == "annotations" {
            if let Some(map) = v.as_object_mut() {
                map.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        }
        let empty = v.is_null() || v.as_object().is_some_and(Map::is_empty);
        if !empty {
            metadata.insert(key.into(), v);
        }
    }
    shown.insert("metadata".into(), Value::Object(metadata));
    if let Some(spec) = object.get("spec") {
        shown.insert("spec".into(), spec.clone());
    }
    Value::Object(shown)
}

/// `display_object` as YAML.
pub(super) fn to_yaml(object: &Value) -> Result<String, ProposalError> {
    serde_saphyr::to_string(object).map_err(|e| ProposalError::Render(e.to_string()))
}

/// Unified diff of the displayed YAML, before → after; empty when nothing shown changes.
pub(super) fn yaml_diff(before: &Value, after: &Value) -> Result<String, ProposalError> {
    let label = object_label(before);
    let old = to_yaml(&display_object(before))?;
    let new = to_yaml(&display_object(after))?;
    Ok(text_diff::unified(
        &old,
        &new,
        &format!("{label} (current)"),
        &format!("{label} (proposed)"),
        DIFF_LINES,
    ))
}

/// The whole object as added lines: what a create would make.
pub(super) fn creation_diff(object: &Value) -> Result<String, ProposalError> {
    let label = object_label(object);
    let new = to_yaml(&display_object(object))?;
    Ok(text_diff::unified(
        "",
        &new,
        "/dev/null",
        &format!("{label} (created)"),
        DIFF_LINES,
    ))
}

/// The whole object as removed lines: what a delete would take away.
pub(super) fn deletion_diff(object: &Value) -> Result<String, ProposalError> {
    let label = object_label(object);
    let old = to_yaml(&display_object(object))?;
    Ok(text_diff::unified(
        &old,
        "",
        &format!("{label} (current)"),
        "/dev/null",
        DIFF_LINES,
    ))
}

/// `Kind/name` or `Kind/namespace/name`.
pub(super) fn object_label(object: &Value) -> String {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(ns) if !ns.is_empty() => format!("{kind}/{ns}/{name}"),
        _ => format!("{kind}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_spec_labels_and_annotations_may_be_patched() {
        assert!(check_patch_paths(&json!({"spec": {"a": 1}})).is_ok());
        assert!(
            check_patch_paths(&json!({"metadata": {"labels": {"a": "b"}, "annotations": {}}}))
                .is_ok()
        );
        for (patch, path) in [
            (json!({"status": {}}), "status"),
            (json!({"metadata": {"name": "x"}}), "metadata.name"),
            (json!({"metadata": null}), "metadata"),
            (json!({"kind": "ManagedTailnet"}), "kind"),
        ] {
            let err = check_patch_paths(&patch).unwrap_err();
            assert_eq!(err, ProposalError::ForbiddenPath { path: path.into() });
            assert!(err.to_string().contains(&format!("remove {path}")), "{err}");
        }
        assert!(matches!(
            check_patch_paths(&json!([1])),
            Err(ProposalError::PatchNotAnObject { .. })
        ));
    }

    #[test]
    fn server_metadata_and_status_are_not_displayed() {
        let object = json!({
            "apiVersion": "v", "kind": "K",
            "metadata": {"name": "n", "uid": "u", "resourceVersion": "7", "managedFields": [],
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"a": 1}, "status": {"b": 2}
        });
        assert_eq!(
            display_object(&object),
            json!({"apiVersion": "v", "kind": "K", "metadata": {"name": "n"}, "spec": {"a": 1}})
        );
    }
}
