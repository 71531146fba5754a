//! The custom resources (group `tailnet.ops.dev`, version `v1alpha1`) and the machinery every
//! kind shares, kept here once rather than copied per kind (`docs/architecture.md`, `docs/crd-reference.md`):
//! - [`common`]: the common spec controls (`tailnetRef`, `driftPolicy`, `suspend`,
//!   `deletionPolicy`), annotation, finalizer and field-manager names;
//! - [`conditions`]: `Ready` / `Synced` / `Drifted` with stable transition times;
//! - [`drift`]: the capped, structured drift diff shown in status;
//! - [`errors`]: the reconcile error, its category, event reason and retry schedule;
//! - [`kind`]: what every tailnet-scoped kind is to generic code ([`TailnetScoped`], [`KindStatus`]).
//!
//! One module per kind: [`tailnet`], [`tailnet_policy`], [`change_proposal`], [`dns_config`],
//! [`device_tag_set`], [`tailscale_service`], [`key_rotation_policy`], [`funnel_exposure`].
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

pub mod change_proposal;
pub mod common;
pub mod conditions;
pub mod device_tag_set;
pub mod dns_config;
pub mod drift;
pub mod errors;
pub mod funnel_exposure;
pub mod key_rotation_policy;
pub mod kind;
pub mod tailnet;
pub mod tailnet_policy;
pub mod tailscale_service;

pub use change_proposal::{ChangeProposal, ChangeProposalSpec, ChangeProposalStatus};
pub use common::{CommonSpec, CommonStatus, DeletionPolicy, DriftPolicy};
pub use conditions::{ConditionStatus, ConditionType};
pub use device_tag_set::{DeviceTagSet, DeviceTagSetSpec, DeviceTagSetStatus, TagMode};
pub use dns_config::{DNSConfig, DNSConfigSpec, DNSConfigStatus, DnsSettings, Nameserver};
pub use drift::{DriftDiff, DriftEntry};
pub use errors::ReconcileError;
pub use funnel_exposure::{FunnelExposure, FunnelExposureSpec, FunnelExposureStatus};
pub use key_rotation_policy::{KeyRotationPolicy, KeyRotationPolicySpec, KeyRotationPolicyStatus};
pub(crate) use kind::tailnet_scoped_kind;
pub use kind::{KindStatus, TailnetScoped};
pub use tailnet::{ManagedTailnet, ManagedTailnetSpec, ManagedTailnetStatus};
pub use tailnet_policy::{PolicyRole, TailnetPolicy, TailnetPolicySpec, TailnetPolicyStatus};
pub use tailscale_service::{TailscaleService, TailscaleServiceSpec, TailscaleServiceStatus};

/// **The one list of kinds.** Calls the macro `$each` with every kind's type name (all in this
/// module), in the order the operator runs them: the connection first; `TailnetPolicy` before
/// `DeviceTagSet`, so the tags a set gives are owned in the policy before devices get them;
/// `TailscaleService` after the policy too (its tags must be owned there, and the policy composes
/// its grants); `FunnelExposure` after the policy and beside key rotation (it contributes a node
/// attribute and mints keys the same way); `ChangeProposal` last, since it only changes the others.
///
/// Each layer maps the list to what it needs through a trait every kind implements there
/// ([`KindInfo`] here; the controller, file mode and proposal layers have their own), so adding
/// a kind is its modules, one name here, and the compiler pointing at each trait it lacks.
#[macro_export]
macro_rules! for_each_kind {
    ($each:ident) => {
        $each!(
            ManagedTailnet,
            TailnetPolicy,
            TailscaleService,
            KeyRotationPolicy,
            FunnelExposure,
            DeviceTagSet,
            DNSConfig,
            ChangeProposal
        )
    };
}

/// How Argo CD judges a kind's health: the script under `deploy/argocd/health/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// `conditions.lua`: `Ready` / `Synced` / `Drifted` and `observedGeneration`.
    Conditions,
    /// `changeproposal.lua`: the proposal's phase.
    Proposal,
}

impl Health {
    /// The script's file name under `deploy/argocd/health/`.
    pub fn script(self) -> &'static str {
        match self {
            Health::Conditions => "conditions.lua",
            Health::Proposal => "changeproposal.lua",
        }
    }
}

/// What packaging needs to know of a kind beyond its CRD.
pub trait KindInfo: CustomResourceExt {
    /// Argo CD health.
    const HEALTH: Health = Health::Conditions;
    /// Verbs the operator needs on the kind beyond watching, reconciling and writing status
    /// (ChangeProposal: `create` through the loopback API, `delete` after its TTL).
    const EXTRA_VERBS: &'static [&'static str] = &[];
    /// Why it needs them (a comment beside the generated RBAC rule).
    const EXTRA_VERBS_WHY: &'static str = "";
}

impl KindInfo for ManagedTailnet {}
impl KindInfo for TailnetPolicy {}
impl KindInfo for TailscaleService {}
impl KindInfo for KeyRotationPolicy {}
impl KindInfo for FunnelExposure {}
impl KindInfo for DeviceTagSet {}
impl KindInfo for DNSConfig {}
impl KindInfo for ChangeProposal {
    const HEALTH: Health = Health::Proposal;
    const EXTRA_VERBS: &'static [&'static str] = &["create", "delete"];
    const EXTRA_VERBS_WHY: &'static str = "The MCP sidecar proposes changes through the \
        operator's loopback API, which creates them; finished proposals are deleted after \
        --proposal-ttl (the only delete the operator makes).";
}

/// One kind as packaging sees it (RBAC, Argo CD health, the packaging checks).
#[derive(Debug, Clone)]
pub struct KindRow {
    pub crd: CustomResourceDefinition,
    pub health: Health,
    pub extra_verbs: &'static [&'static str],
    pub extra_verbs_why: &'static str,
    /// Deserializes a document into the kind's Rust type; the error names the field path.
    pub typed: fn(&serde_json::Value) -> Result<(), String>,
}

impl KindRow {
    pub fn kind(&self) -> &str {
        &self.crd.spec.names.kind
    }

    pub fn plural(&self) -> &str {
        &self.crd.spec.names.plural
    }

    pub fn namespaced(&self) -> bool {
        self.crd.spec.scope == "Namespaced"
    }

    /// Whether the kind belongs to one tailnet (its schema has `spec.tailnetRef`).
    pub fn tailnet_scoped(&self) -> bool {
        self.crd
            .spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref()?.open_api_v3_schema.as_ref())
            .and_then(|root| root.properties.as_ref()?.get("spec"))
            .and_then(|spec| spec.properties.as_ref())
            .is_some_and(|spec| spec.contains_key("tailnetRef"))
    }
}

/// Deserializes `value` as `K`, naming the field path on failure.
pub fn typed<K: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<(), String> {
    serde_path_to_error::deserialize::<_, K>(value)
        .map(|_| ())
        .map_err(|err| {
            let path = err.path().to_string();
            if path == "." || path.is_empty() {
                err.inner().to_string()
            } else {
                format!("{path}: {}", err.inner())
            }
        })
}

/// Every kind, in [`for_each_kind`] order, with its tidied CRD.
pub fn kinds() -> Vec<KindRow> {
    macro_rules! rows {
        ($($kind:ident),*) => {
            vec![$(KindRow {
                crd: tidy(<$kind as CustomResourceExt>::crd()),
                health: <$kind as KindInfo>::HEALTH,
                extra_verbs: <$kind as KindInfo>::EXTRA_VERBS,
                extra_verbs_why: <$kind as KindInfo>::EXTRA_VERBS_WHY,
                typed: typed::<$kind>,
            }),*]
        };
    }
    for_each_kind!(rows)
}

/// Every CustomResourceDefinition the operator serves, in [`for_each_kind`] order; this is
/// what `crdgen` writes (one file per entry) and what should be installed.
///
/// Prefer it to `Kind::crd()`: it also joins the doc comments' wrapped lines, so descriptions
/// read as paragraphs in `kubectl explain` and in the YAML.
pub fn crds() -> Vec<CustomResourceDefinition> {
    kinds().into_iter().map(|row| row.crd).collect()
}

/// `crd` with its descriptions' wrapped lines joined.
fn tidy(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        for column in version.additional_printer_columns.iter_mut().flatten() {
            column.description = column.description.as_deref().map(unwrap_lines);
        }
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            tidy_descriptions(schema);
        }
    }
    crd
}

fn tidy_descriptions(schema: &mut JSONSchemaProps) {
    schema.description = schema.description.as_deref().map(unwrap_lines);
    let nested = schema
        .properties
        .iter_mut()
        .flat_map(|properties| properties.values_mut())
        .chain(
            [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of]
                .into_iter()
                .flatten()
                .flatten(),
        );
    for child in nested {
        tidy_descriptions(child);
    }
    match &mut schema.items {
        Some(JSONSchemaPropsOrArray::Schema(item)) => tidy_descriptions(item),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => {
            items.iter_mut().for_each(tidy_descriptions)
        }
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = &mut schema.additional_properties {
        tidy_descriptions(values);
    }
}

/// Joins lines wrapped inside a paragraph (doc comments wrap at 100 columns); blank lines still
/// separate paragraphs.
fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|paragraph| !paragraph.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_lines_join_and_paragraphs_stay() {
        assert_eq!(
            unwrap_lines("one\ntwo\n\nthree\n four"),
            "one two\n\nthree four"
        );
        assert_eq!(unwrap_lines("single"), "single");
    }

    #[test]
    fn generated_descriptions_have_no_wrapped_lines() {
        for crd in crds() {
            // Paragraph breaks stay (Kubernetes' own types, e.g. a FunnelExposure's proxy
            // resources, have several); a single newline is a wrapped line.
            let yaml = serde_json::to_string(&crd).unwrap().replace("\\n\\n", " ");
            assert!(!yaml.contains("\\n"), "{}", crd.metadata.name.unwrap());
        }
    }
}
