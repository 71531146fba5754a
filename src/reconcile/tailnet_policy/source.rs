//! Where a `TailnetPolicy`'s text comes from (inline, or a ConfigMap key), shared by the
//! controller (ConfigMaps from the API server) and file mode (ConfigMaps found under PATH), so
//! both name a missing source the same way.
use k8s_openapi::api::core::v1::ConfigMap;

use super::types::PolicyInput;
use crate::resources::ReconcileError;
use crate::resources::tailnet_policy::{ConfigMapKeyRef, TailnetPolicy, TailnetPolicySpec};

/// The text's location: inline in the spec, or a ConfigMap key still to be read.
#[derive(Debug, Clone, Copy)]
pub enum TextSource<'a> {
    Inline(&'a str),
    ConfigMap(&'a ConfigMapKeyRef),
}

/// Where `spec`'s text is. The CRD's CEL rule requires exactly one of the two; an object that
/// bypassed it (or a file) with neither is an invalid spec.
pub fn text_source(spec: &TailnetPolicySpec) -> Result<TextSource<'_>, ReconcileError> {
    if let Some(text) = &spec.policy {
        return Ok(TextSource::Inline(text));
    }
    match &spec.policy_from {
        Some(source) => Ok(TextSource::ConfigMap(&source.config_map_key_ref)),
        None => Err(ReconcileError::invalid(
            "spec.policy",
            "set spec.policy (inline HuJSON) or spec.policyFrom.configMapKeyRef",
        )),
    }
}

/// `ConfigMap <namespace>/<name> key <key>`, as errors name the source.
pub fn describe_key_ref(r: &ConfigMapKeyRef) -> String {
    format!("ConfigMap {}/{} key {}", r.namespace, r.name, r.key)
}

/// The ConfigMap `r` names among `maps` (a ConfigMap without a namespace counts as
/// `default`, as `kubectl apply` would put it): for callers that hold the ConfigMaps already
/// (file mode's documents, a proposal's world).
pub fn find_config_map<'a>(maps: &'a [ConfigMap], r: &ConfigMapKeyRef) -> Option<&'a ConfigMap> {
    maps.iter().find(|c| {
        c.metadata.name.as_deref() == Some(&r.name)
            && c.metadata.namespace.as_deref().unwrap_or("default") == r.namespace
    })
}

/// The text under `r.key` in `map` (the ConfigMap `r` names, `None` when it does not exist).
/// `missing_map` says how to provide the ConfigMap where the caller looks for it.
pub fn config_map_text(
    r: &ConfigMapKeyRef,
    map: Option<&ConfigMap>,
    missing_map: &str,
) -> Result<String, ReconcileError> {
    let Some(map) = map else {
        return Err(ReconcileError::not_found(
            describe_key_ref(r),
            missing_map.to_owned(),
        ));
    };
    map.data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .cloned()
        .ok_or_else(|| {
            ReconcileError::not_found(
                describe_key_ref(r),
                "the ConfigMap has no such key in data: add it or fix \
                 spec.policyFrom.configMapKeyRef.key",
            )
        })
}

/// The planner's input for `policy`, with its text already resolved (or the error that
/// prevented it).
pub fn policy_input(policy: &TailnetPolicy, text: Result<String, ReconcileError>) -> PolicyInput {
    PolicyInput {
        name: policy.metadata.name.clone().unwrap_or_default(),
        // Objects from files may have no generation; the API server always sets one.
        generation: Some(policy.metadata.generation.unwrap_or(1)),
        spec: policy.spec.clone(),
        text,
        annotations: policy.metadata.annotations.clone().unwrap_or_default(),
    }
}
