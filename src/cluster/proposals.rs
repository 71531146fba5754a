//! Proposal I/O against the cluster, shared by the ChangeProposal controller, the MCP
//! server's cluster source, the operator's loopback API and `tailnet-operator proposal`:
//! reading a proposal's target ([`fetch_target`], [`target_hash`]), gathering what its checks
//! need ([`gather_world`]), creating a validated proposal ([`propose`]) and applying an
//! approved patch ([`apply_patch`]). The checks themselves are pure, in [`crate::proposal`].
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::proposal::{self, ProposalWorld, kinds};
use crate::reconcile::tailscale_service::tailnet_contributions;
use crate::reconcile::view::tailnet_view;
use crate::resources::change_proposal::{ChangeProposal, ChangeProposalSpec, ProposalTarget};
use crate::resources::common::DEFAULT_TAILNET_REF;
use crate::resources::tailnet_policy::TailnetPolicy;
use crate::resources::{ReconcileError, TailnetPolicySpec, TailnetScoped, TailscaleService};
use crate::snapshot::TailnetSnapshots;

/// The field manager of an approved proposal's server-side apply (not the operator's own: the
/// fields a human approved stay attributed to proposals).
pub const PROPOSALS_FIELD_MANAGER: &str = "tailnet-operator-proposals";

/// SHA-256 (hex) of what a proposal may change and is computed from: the target's spec,
/// labels and annotations (not its status or server metadata).
pub fn target_hash(target: &Value) -> String {
    let shown = proposal::display_object(target);
    hex::encode(Sha256::digest(shown.to_string().as_bytes()))
}

/// The API of `target`'s kind (from the proposal registry's CRD).
fn dynamic_api(
    client: &Client,
    entry: &kinds::KindEntry,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let version = entry
        .crd
        .spec
        .versions
        .first()
        .map_or("v1alpha1", |v| v.name.as_str());
    let gvk = GroupVersionKind::gvk(&entry.crd.spec.group, version, &entry.kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &entry.crd.spec.names.plural);
    match namespace {
        Some(ns) if entry.namespaced => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    }
}

/// The target of a proposal as JSON, `None` when it does not exist. `namespace` is used for
/// namespaced kinds (the target's, or else the proposal's). Unsupported kinds are an
/// `InvalidSpec` error.
pub async fn fetch_target(
    client: &Client,
    target: &ProposalTarget,
    namespace: Option<&str>,
) -> Result<Option<Value>, ReconcileError> {
    let entry = kinds::lookup(&target.kind)
        .map_err(|e| ReconcileError::invalid("spec.target.kind", e.to_string()))?;
    let api = dynamic_api(client, entry, namespace);
    let Some(object) = api.get_opt(&target.name).await? else {
        return Ok(None);
    };
    let mut value = serde_json::to_value(&object)
        .map_err(|e| ReconcileError::internal(format!("serializing the target: {e}")))?;
    // A DynamicObject may come back without its type when the server omits it.
    if let Some(root) = value.as_object_mut() {
        root.entry("apiVersion")
            .or_insert_with(|| Value::String(entry.api_version()));
        root.entry("kind")
            .or_insert_with(|| Value::String(entry.kind.clone()));
    }
    Ok(Some(value))
}

/// Gathers the [`ProposalWorld`] for `target` and `patch` from the cluster and, when given,
/// the target tailnet's snapshots: for a TailnetPolicy target every TailnetPolicy (one LIST),
/// the ConfigMaps their `policyFrom` and the patched target's name (one GET each), the
/// TailscaleServices' contributions (one LIST), the tailnet's users and devices and its live
/// policy. Other kinds need nothing yet.
pub async fn gather_world(
    client: &Client,
    snapshots: Option<&TailnetSnapshots>,
    target: &Value,
    patch: &Value,
) -> Result<ProposalWorld, ReconcileError> {
    let mut world = ProposalWorld::default();
    if target.get("kind").and_then(Value::as_str) != Some("TailnetPolicy") {
        return Ok(world);
    }
    world.policies = Api::<TailnetPolicy>::all(client.clone())
        .list(&Default::default())
        .await?
        .items;
    // TailscaleService grants are composed in, as the TailnetPolicy controller does.
    let tailnet = target
        .pointer("/spec/tailnetRef")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_TAILNET_REF);
    let services = match Api::<TailscaleService>::all(client.clone())
        .list(&Default::default())
        .await
    {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    world.contributions =
        tailnet_contributions(services.iter().filter(|s| s.tailnet_ref() == tailnet));
    let patched = proposal::apply_merge_patch(target, patch);
    let patched_spec: Option<TailnetPolicySpec> = patched
        .get("spec")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    let mut refs: Vec<(String, String)> = world
        .policies
        .iter()
        .map(|p| &p.spec)
        .chain(patched_spec.as_ref())
        .filter_map(|spec| spec.policy_from.as_ref())
        .map(|from| {
            let r = &from.config_map_key_ref;
            (r.namespace.clone(), r.name.clone())
        })
        .collect();
    refs.sort();
    refs.dedup();
    for (namespace, name) in refs {
        if let Some(map) = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
            .get_opt(&name)
            .await?
        {
            world.config_maps.push(map);
        }
    }
    if let Some(snapshots) = snapshots {
        let (policy, devices, users) =
            tokio::join!(snapshots.policy(), snapshots.devices(), snapshots.users());
        let (policy, devices, users) = (policy?, devices?, users?);
        world.view = tailnet_view(&devices.data, &users.data);
        world.live_policy = Some(policy.data.hujson.clone());
    }
    Ok(world)
}

/// Why [`propose`] created nothing.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// No preview could be computed (unsupported kind, a forbidden path, ...).
    #[error(transparent)]
    Proposal(#[from] proposal::ProposalError),
    #[error(
        "spec.approved must be false: a proposal is approved by a reviewer after it is created"
    )]
    AlreadyApproved,
    /// The change fails its checks; the preview says which and why.
    #[error("the change is not valid, nothing was created: {}", .0.problems())]
    Invalid(Box<proposal::Preview>),
    #[error(transparent)]
    Kube(#[from] ReconcileError),
}

/// Validates `spec` against its target as it is now and, only when the preview is valid,
/// creates the ChangeProposal in `namespace` (named `<kind>-<target>-<random>`). Returns the
/// created object and the preview (YAML diff, access diff, checks) to show the proposer; the
/// controller then records the same in status. For the MCP server's kube backend and the
/// operator's loopback API. `snapshots`: the target tailnet's, when at hand (policy tests and
/// access diffs need its users, devices and live policy).
pub async fn propose(
    client: &Client,
    snapshots: Option<&TailnetSnapshots>,
    namespace: &str,
    spec: ChangeProposalSpec,
) -> Result<(ChangeProposal, proposal::Preview), ProposeError> {
    if spec.approved {
        return Err(ProposeError::AlreadyApproved);
    }
    let target_ns = spec
        .target
        .namespace
        .clone()
        .unwrap_or_else(|| namespace.to_owned());
    let target = fetch_target(client, &spec.target, Some(&target_ns)).await?;
    let change = proposal::Change::of(&spec)?;
    let world = match change.subject(target.as_ref()) {
        Some(subject) => gather_world(client, snapshots, subject, &change.patch()).await?,
        None => ProposalWorld::default(),
    };
    let preview = proposal::preview_spec(&spec, target.as_ref(), &world)?;
    if !preview.is_valid() {
        return Err(ProposeError::Invalid(Box::new(preview)));
    }
    let mut object = ChangeProposal::new("", spec);
    object.metadata.name = None;
    object.metadata.namespace = Some(namespace.to_owned());
    object.metadata.generate_name = Some(generate_name(&object.spec.target));
    let created = Api::<ChangeProposal>::namespaced(client.clone(), namespace)
        .create(&Default::default(), &object)
        .await
        .map_err(ReconcileError::from)?;
    Ok((created, preview))
}

/// `<kind>-<name>-` in lower case, short enough for the API server's 5 random characters.
fn generate_name(target: &ProposalTarget) -> String {
    let mut prefix = format!("{}-{}", target.kind.to_lowercase(), target.name);
    prefix.truncate(57);
    format!("{}-", prefix.trim_end_matches(['-', '.']))
}

/// Why applying did not happen.
pub enum ApplyError {
    /// The target changed under us (409): the proposal is Stale.
    Stale(String),
    /// The API server refused the change (invalid, forbidden): the proposal Failed.
    Refused(String),
    /// Worth retrying (a transient API error): stays Approved.
    Retry(ReconcileError),
}

/// Applies `patch` to `target`: server-side apply of the fields it sets (forced, under
/// [`PROPOSALS_FIELD_MANAGER`], `resourceVersion` as precondition), then a merge patch of the
/// keys it removes, if any.
pub async fn apply_patch(
    client: &Client,
    target_ref: &ProposalTarget,
    namespace: &Option<String>,
    target: &Value,
    patch: &Value,
) -> Result<(), ApplyError> {
    let entry = kinds::lookup(&target_ref.kind).map_err(|e| ApplyError::Refused(e.to_string()))?;
    let api = dynamic_api(client, entry, namespace.as_deref());
    let name = &target_ref.name;
    let mut version = target
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let sets = without_nulls(patch);
    if sets.as_object().is_some_and(|o| !o.is_empty()) {
        let mut body = sets;
        body["apiVersion"] = json!(entry.api_version());
        body["kind"] = json!(entry.kind);
        body["metadata"]["name"] = json!(name);
        body["metadata"]["resourceVersion"] = json!(version);
        let params = PatchParams::apply(PROPOSALS_FIELD_MANAGER).force();
        let applied = api
            .patch(name, &params, &Patch::Apply(&body))
            .await
            .map_err(classify)?;
        version = applied.resource_version().unwrap_or_default();
    }
    let removals = only_nulls(patch);
    if removals.as_object().is_some_and(|o| !o.is_empty()) {
        let mut body = removals;
        body["metadata"]["resourceVersion"] = json!(version);
        let params = PatchParams {
            field_manager: Some(PROPOSALS_FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        api.patch(name, &params, &Patch::Merge(&body))
            .await
            .map_err(classify)?;
    }
    Ok(())
}

/// Creates `object` as the target of an approved Create proposal (under
/// [`PROPOSALS_FIELD_MANAGER`]); the name taken meanwhile (409) is Stale.
pub async fn create_object(
    client: &Client,
    target_ref: &ProposalTarget,
    namespace: &Option<String>,
    object: &Value,
) -> Result<(), ApplyError> {
    let entry = kinds::lookup(&target_ref.kind).map_err(|e| ApplyError::Refused(e.to_string()))?;
    let api = dynamic_api(client, entry, namespace.as_deref());
    let mut body = proposal::display_object(object);
    body["apiVersion"] = json!(entry.api_version());
    if let (Some(ns), true) = (namespace, entry.namespaced) {
        body["metadata"]["namespace"] = json!(ns);
    }
    let object: DynamicObject = serde_json::from_value(body)
        .map_err(|e| ApplyError::Refused(format!("the object to create is malformed: {e}")))?;
    let params = kube::api::PostParams {
        field_manager: Some(PROPOSALS_FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    match api.create(&params, &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Err(ApplyError::Stale(format!(
            "{} was created by someone else before this proposal was applied ({}): propose a \
             patch to it instead",
            proposal::target_label(target_ref),
            status.message
        ))),
        Err(err) => Err(classify(err)),
    }
}

/// Deletes the target of an approved Delete proposal, only at the `resourceVersion` it was
/// checked at (a target changed meanwhile, 409, is Stale); already gone is done.
pub async fn delete_object(
    client: &Client,
    target_ref: &ProposalTarget,
    namespace: &Option<String>,
    target: &Value,
) -> Result<(), ApplyError> {
    let entry = kinds::lookup(&target_ref.kind).map_err(|e| ApplyError::Refused(e.to_string()))?;
    let api = dynamic_api(client, entry, namespace.as_deref());
    let version = target
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let params = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: version,
            uid: None,
        }),
        ..Default::default()
    };
    match api.delete(&target_ref.name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(classify(err)),
    }
}

fn classify(err: kube::Error) -> ApplyError {
    match &err {
        kube::Error::Api(status) if status.code == 409 => ApplyError::Stale(format!(
            "the target changed while the patch was being applied ({}): propose the change \
             again against its current state",
            status.message
        )),
        kube::Error::Api(status) if matches!(status.code, 400 | 403 | 404 | 422) => {
            ApplyError::Refused(format!(
                "the API server refused the patch ({} {}): {}",
                status.code, status.reason, status.message
            ))
        }
        _ => ApplyError::Retry(err.into()),
    }
}

/// The merge patch without its `null`s (and without objects left empty by removing them).
fn without_nulls(patch: &Value) -> Value {
    match patch {
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                // An object left empty sets nothing (a merge patch object merges).
                .filter(|(_, v)| !v.as_object().is_some_and(Map::is_empty))
                .collect();
            Value::Object(kept)
        }
        other => other.clone(),
    }
}

/// Only the `null`s of the merge patch (the keys it removes), with their parents.
fn only_nulls(patch: &Value) -> Value {
    let Value::Object(map) = patch else {
        return Value::Object(Map::new());
    };
    let kept: Map<String, Value> = map
        .iter()
        .filter_map(|(k, v)| match v {
            Value::Null => Some((k.clone(), Value::Null)),
            Value::Object(_) => {
                let inner = only_nulls(v);
                (!inner.as_object().is_some_and(Map::is_empty)).then(|| (k.clone(), inner))
            }
            _ => None,
        })
        .collect();
    Value::Object(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_splits_into_what_it_sets_and_what_it_removes() {
        let patch = json!({"spec": {"policy": "{}", "policyFrom": null, "x": {"a": null}},
                           "metadata": {"labels": {"team": "a", "old": null}}});
        assert_eq!(
            without_nulls(&patch),
            json!({"spec": {"policy": "{}"}, "metadata": {"labels": {"team": "a"}}})
        );
        assert_eq!(
            only_nulls(&patch),
            json!({"spec": {"policyFrom": null, "x": {"a": null}},
                   "metadata": {"labels": {"old": null}}})
        );
        assert_eq!(only_nulls(&json!({"spec": {"a": 1}})), json!({}));
    }

    #[test]
    fn the_target_hash_ignores_status_and_server_metadata() {
        let a = json!({"kind": "K", "metadata": {"name": "n", "resourceVersion": "1"},
                       "spec": {"a": 1}, "status": {"x": 1}});
        let mut b = a.clone();
        b["metadata"]["resourceVersion"] = json!("2");
        b["status"]["x"] = json!(2);
        assert_eq!(target_hash(&a), target_hash(&b));
        b["spec"]["a"] = json!(2);
        assert_ne!(target_hash(&a), target_hash(&b));
    }
}
