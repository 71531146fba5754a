//! The custom resources (group `tailnet.ops.dev`, version `v1alpha1`) and the machinery every
//! kind shares, kept here once rather than copied per kind (DESIGN §2, §3):
//! - [`common`]: the common spec controls (`tailnetRef`, `driftPolicy`, `suspend`,
//!   `deletionPolicy`), annotation, finalizer and field-manager names;
//! - [`conditions`]: `Ready` / `Synced` / `Drifted` with stable transition times;
//! - [`drift`]: the capped, structured drift diff shown in status;
//! - [`errors`]: the reconcile error, its category, event reason and retry schedule;
//! - [`kind`]: what every tailnet-scoped kind is to generic code ([`TailnetScoped`], [`KindStatus`]).
//!
//! One module per kind: [`tailnet`], [`tailnet_policy`], [`change_proposal`], [`dns_config`],
//! [`device_tag_set`].
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
pub mod kind;
pub mod tailnet;
pub mod tailnet_policy;

pub use change_proposal::{ChangeProposal, ChangeProposalSpec, ChangeProposalStatus};
pub use common::{CommonSpec, CommonStatus, DeletionPolicy, DriftPolicy};
pub use conditions::{ConditionStatus, ConditionType};
pub use device_tag_set::{DeviceTagSet, DeviceTagSetSpec, DeviceTagSetStatus, TagMode};
pub use dns_config::{DNSConfig, DNSConfigSpec, DNSConfigStatus, DnsSettings, Nameserver};
pub use drift::{DriftDiff, DriftEntry};
pub use errors::ReconcileError;
pub(crate) use kind::tailnet_scoped_kind;
pub use kind::{KindStatus, TailnetScoped};
pub use tailnet::{ManagedTailnet, ManagedTailnetSpec, ManagedTailnetStatus};
pub use tailnet_policy::{PolicyRole, TailnetPolicy, TailnetPolicySpec, TailnetPolicyStatus};

/// Every CustomResourceDefinition the operator serves, in a fixed order; this is what `crdgen`
/// writes (one file per entry) and what should be installed. A new kind adds its line here.
///
/// Prefer it to `Kind::crd()`: it also joins the doc comments' wrapped lines, so descriptions
/// read as paragraphs in `kubectl explain` and in the YAML.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        ManagedTailnet::crd(),
        TailnetPolicy::crd(),
        ChangeProposal::crd(),
        DNSConfig::crd(),
        DeviceTagSet::crd(),
    ];
    for crd in &mut crds {
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
    }
    crds
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
            let yaml = serde_json::to_string(&crd).unwrap();
            assert!(!yaml.contains("\\n"), "{}", crd.metadata.name.unwrap());
        }
    }
}
