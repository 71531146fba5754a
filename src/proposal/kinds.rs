//! The kinds a `ChangeProposal` may target, one [`KindEntry`] each, from the one list of kinds
//! ([`crate::for_each_kind`]) through [`ProposalTarget`]. Schema, CEL and typed validation come
//! from the kind's Rust type and generated CRD, so a new kind is `impl ProposalTarget for
//! NewKind {}`, overriding `entry` with `.with_planner(...)` / `.with_adopt(...)` when it has
//! planner checks or supports `adopt_drift`.
use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{PlannerReport, ProposalError, ProposalWorld, adopt, check, policy};
use crate::resources::dns_config::DNSConfig;
use crate::resources::{
    ChangeProposal, DeviceTagSet, FunnelExposure, KeyRotationPolicy, ManagedTailnet, TailnetPolicy,
    TailscaleService,
};

/// A kind's planner checks: `(target, patched, world)`.
pub type Planner = fn(&Value, &Value, &ProposalWorld) -> PlannerReport;
/// A kind's adopt-drift patch: `(target, world)`.
pub type Adopt = fn(&Value, &ProposalWorld) -> Result<super::Adoption, ProposalError>;

/// What the proposal core knows about one kind.
pub struct KindEntry {
    /// e.g. `TailnetPolicy`.
    pub kind: String,
    pub namespaced: bool,
    /// The generated CRD (its `openAPIV3Schema` and CEL rules validate patched objects).
    pub crd: CustomResourceDefinition,
    /// Deserializes into the kind's Rust type; the error names the field path.
    pub typed: fn(&Value) -> Result<(), String>,
    pub planner: Option<Planner>,
    /// The check names `planner` reports (listed as not run when earlier checks fail).
    pub planner_checks: &'static [&'static str],
    pub adopt: Option<Adopt>,
    /// What the kind puts in the tailnet, which its deletion removes under `deletionPolicy:
    /// Delete` (shown before a delete is approved).
    pub contributes: &'static str,
}

impl KindEntry {
    /// Schema, CEL and typed validation for `K`; no planner checks, no adopt.
    pub fn of<K>() -> KindEntry
    where
        K: CustomResourceExt + DeserializeOwned,
    {
        let crd = K::crd();
        KindEntry {
            kind: crd.spec.names.kind.clone(),
            namespaced: crd.spec.scope == "Namespaced",
            crd,
            typed: crate::resources::typed::<K>,
            planner: None,
            planner_checks: &[],
            adopt: None,
            contributes: "what it created or contributed",
        }
    }

    pub fn with_planner(mut self, planner: Planner, checks: &'static [&'static str]) -> Self {
        self.planner = Some(planner);
        self.planner_checks = checks;
        self
    }

    pub fn with_adopt(mut self, adopt: Adopt) -> Self {
        self.adopt = Some(adopt);
        self
    }

    /// The `openAPIV3Schema` of the CRD's (single served) version, as JSON.
    pub fn schema(&self) -> Value {
        self.crd
            .spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or(Value::Null)
    }

    /// `apiVersion` of the kind, e.g. `tailnet.ops.dev/v1alpha1`.
    pub fn api_version(&self) -> String {
        let version = self
            .crd
            .spec
            .versions
            .first()
            .map_or("v1alpha1", |v| v.name.as_str());
        format!("{}/{version}", self.crd.spec.group)
    }
}

/// What the proposal core knows of a kind of [`crate::for_each_kind`]: by default schema, CEL
/// and typed validation ([`KindEntry::of`]); a kind with planner checks or `adopt_drift`
/// overrides [`ProposalTarget::entry`]; `None` when proposals may not target it.
pub trait ProposalTarget: CustomResourceExt + DeserializeOwned + Sized {
    /// What the kind puts in the tailnet ([`KindEntry::contributes`]).
    const CONTRIBUTES: &'static str;

    fn entry() -> Option<KindEntry> {
        Some(KindEntry::of::<Self>())
    }
}

impl ProposalTarget for ManagedTailnet {
    const CONTRIBUTES: &'static str = "the operator's hold on the tailnet: every resource of \
        the tailnet stops reconciling, and a webhook endpoint the operator manages is deleted";
    fn entry() -> Option<KindEntry> {
        Some(KindEntry::of::<Self>().with_adopt(adopt::settings))
    }
}
impl ProposalTarget for DNSConfig {
    const CONTRIBUTES: &'static str =
        "the DNS settings it wrote (nameservers, split DNS, search paths, MagicDNS)";
    fn entry() -> Option<KindEntry> {
        Some(KindEntry::of::<Self>().with_adopt(adopt::dns))
    }
}
impl ProposalTarget for DeviceTagSet {
    const CONTRIBUTES: &'static str =
        "the tags, routes and settings it applied to the devices it matches";
    fn entry() -> Option<KindEntry> {
        Some(KindEntry::of::<Self>().with_adopt(adopt::device_set))
    }
}
impl ProposalTarget for TailscaleService {
    const CONTRIBUTES: &'static str =
        "the Tailscale Service, its host approvals and its grants in the policy";
    fn entry() -> Option<KindEntry> {
        Some(KindEntry::of::<Self>().with_adopt(adopt::service))
    }
}
impl ProposalTarget for KeyRotationPolicy {
    const CONTRIBUTES: &'static str = "the keys it minted (revoked) and the Secret holding them";
}
impl ProposalTarget for FunnelExposure {
    const CONTRIBUTES: &'static str = "the public exposure: the proxy device and its objects, \
        its key, and the funnel attribute in the policy";
}

impl ProposalTarget for TailnetPolicy {
    const CONTRIBUTES: &'static str = "its entries in the tailnet's policy file";

    fn entry() -> Option<KindEntry> {
        let checks = &[
            check::POLICY_COMPOSE,
            check::POLICY_CHECKS,
            check::POLICY_TESTS,
        ];
        Some(
            KindEntry::of::<Self>()
                .with_planner(policy::planner_checks, checks)
                .with_adopt(policy::adopt_drift),
        )
    }
}

/// A proposal never changes another proposal.
impl ProposalTarget for ChangeProposal {
    const CONTRIBUTES: &'static str = "nothing";

    fn entry() -> Option<KindEntry> {
        None
    }
}

/// Every kind a proposal may target, in [`crate::for_each_kind`] order.
pub fn registry() -> &'static [KindEntry] {
    static REGISTRY: OnceLock<Vec<KindEntry>> = OnceLock::new();
    macro_rules! entries {
        ($($kind:ident),*) => {
            [$(<crate::resources::$kind as ProposalTarget>::entry().map(|mut entry| {
                entry.contributes = <crate::resources::$kind as ProposalTarget>::CONTRIBUTES;
                entry
            })),*]
        };
    }
    REGISTRY.get_or_init(|| {
        crate::for_each_kind!(entries)
            .into_iter()
            .flatten()
            .collect()
    })
}

/// The entry for `kind`, or an error listing the supported kinds.
pub fn lookup(kind: &str) -> Result<&'static KindEntry, ProposalError> {
    registry()
        .iter()
        .find(|e| e.kind == kind)
        .ok_or_else(|| ProposalError::UnsupportedKind {
            kind: kind.to_owned(),
            supported: registry().iter().map(|e| e.kind.clone()).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_schema_and_lookups_name_the_supported_kinds() {
        for entry in registry() {
            assert!(entry.schema().is_object(), "{}", entry.kind);
        }
        assert!(!lookup("TailnetPolicy").unwrap().namespaced);
        let err = lookup("ChangeProposal").err().unwrap().to_string();
        assert!(err.contains("ManagedTailnet, TailnetPolicy"), "{err}");
    }

    #[test]
    fn typed_errors_name_the_field() {
        let entry = lookup("TailnetPolicy").unwrap();
        let bad = serde_json::json!({
            "apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "TailnetPolicy",
            "metadata": {"name": "base"},
            "spec": {"role": "Base", "policy": "{}", "historyLimit": "ten"}
        });
        let err = (entry.typed)(&bad).unwrap_err();
        assert!(err.starts_with("spec.historyLimit:"), "{err}");
    }
}
