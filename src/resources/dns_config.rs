//! `DNSConfig`: a tailnet's DNS (nameservers, split DNS, search paths, MagicDNS, override local
//! DNS), one per tailnet (`docs/dns-config.md`). Cluster-scoped, like the tailnet-wide setting it manages.
//!
//! Tailscale's own Kubernetes operator has an unrelated `DNSConfig` kind in group
//! `tailscale.com`; this one is `dnsconfigs.tailnet.ops.dev`, short name `tndns`, so
//! `kubectl get tndns` is never ambiguous.
//!
//! Every DNS part is optional: a part left out is **not managed** (the operator keeps whatever
//! the tailnet has there, and never reports it as drift); a part that is set is managed exactly
//! (`nameservers: []` means "no global nameservers").
use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, CommonStatus};
use super::drift::DriftDiff;

/// Most nameservers accepted in one list (global, or per split-DNS domain).
pub const MAX_NAMESERVERS: u32 = 32;
/// Most split-DNS domains accepted.
pub const MAX_SPLIT_DNS_DOMAINS: u32 = 256;
/// Most search paths accepted.
pub const MAX_SEARCH_PATHS: u32 = 64;

/// A dotted-quad IPv4 address.
pub const IPV4_PATTERN: &str = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$";
/// An IPv6 address in any of its textual forms (without a zone; without an embedded IPv4).
pub const IPV6_PATTERN: &str = r"^(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))$";
/// A DNS-over-HTTPS resolver URL.
pub const DOH_PATTERN: &str = r"^https://[A-Za-z0-9.-]+(:[0-9]+)?(/[!-~]*)?$";
/// A domain name: dot-separated labels of letters, digits, `-` and `_` (not at a label's
/// ends), at most 63 characters each, optionally with a trailing dot.
pub const DOMAIN_PATTERN: &str = r"^([A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?[.])*[A-Za-z0-9_]([-A-Za-z0-9_]{0,61}[A-Za-z0-9_])?[.]?$";

/// A tailnet's DNS configuration, one per tailnet. Parts left out are not managed; parts set
/// are applied exactly, in one write of Tailscale's combined DNS endpoint.
// kube's `printcolumn(...)` repeats `name`/`type_` per column, which clippy mistakes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "tailnet.ops.dev",
    version = "v1alpha1",
    kind = "DNSConfig",
    plural = "dnsconfigs",
    shortname = "tndns",
    category = "tailnetops",
    status = "DNSConfigStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A tailnet's DNS: global nameservers, split DNS, search paths, MagicDNS and override local DNS. One per tailnet: a second DNSConfig for the same tailnet is Ready=False with reason Conflict (the oldest wins). Parts left out are not managed. Not Tailscale's own operator's DNSConfig (group tailscale.com).",
    printcolumn(
        name = "ManagedTailnet",
        type_ = "string",
        json_path = ".spec.tailnetRef",
        description = "The ManagedTailnet resource whose DNS this configures"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the tailnet's DNS matches this resource"
    ),
    printcolumn(
        name = "Drifted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Drifted\")].status",
        description = "Whether the live DNS differs from what was applied"
    ),
    printcolumn(
        name = "MagicDNS",
        type_ = "boolean",
        json_path = ".status.magicDNS",
        description = "Whether MagicDNS is on in the tailnet (as last read)"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1,
        description = "The Ready condition's reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DNSConfigSpec {
    #[serde(flatten)]
    pub common: CommonSpec,

    #[serde(flatten)]
    pub dns: DnsSettings,
}

/// The DNS parts of a `DNSConfig`, each optional: `None` is "not managed". Also what
/// `status.applied` records.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DnsSettings {
    /// Global nameservers, in order: the resolvers clients use for names outside the tailnet
    /// when `overrideLocalDNS` is true. An empty list removes every global nameserver (MagicDNS
    /// stays as `magicDNS` says). Leave it out to keep whatever the tailnet has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_NAMESERVERS))]
    pub nameservers: Option<Vec<Nameserver>>,

    /// Split DNS: a domain (e.g. `corp.example.com`) to the nameservers that resolve names
    /// under it. Exactly these domains are kept; `{}` removes every split-DNS domain. Leave it
    /// out to keep whatever the tailnet has.
    #[serde(rename = "splitDNS", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend(
        "maxProperties" = MAX_SPLIT_DNS_DOMAINS,
        "x-kubernetes-validations" = [{
            "rule": format!("self.all(domain, domain.matches('{DOMAIN_PATTERN}'))"),
            "message": "every splitDNS key must be a domain name such as corp.example.com (letters, digits, '-' and '_' in dot-separated labels of at most 63 characters)",
        }, {
            "rule": format!("self.all(domain, size(self[domain]) >= 1 && size(self[domain]) <= {MAX_NAMESERVERS})"),
            "message": format!("every splitDNS domain needs between 1 and {MAX_NAMESERVERS} nameservers; to stop resolving a domain specially, remove the domain"),
        }],
    ))]
    pub split_dns: Option<BTreeMap<String, SplitDnsNameservers>>,

    /// DNS search domains, in order (e.g. `corp.example.com`), so clients resolve short names.
    /// `[]` removes every search path. Leave it out to keep whatever the tailnet has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_SEARCH_PATHS), inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": format!("self.all(entry, entry.matches('{DOMAIN_PATTERN}'))"),
        "message": "every searchPaths entry must be a domain name such as corp.example.com (letters, digits, '-' and '_' in dot-separated labels of at most 63 characters)",
    }]))]
    pub search_paths: Option<Vec<SearchPath>>,

    /// MagicDNS: device names resolve inside the tailnet. Works with or without global
    /// nameservers. Leave it out to keep the tailnet's current setting.
    #[serde(rename = "magicDNS", default, skip_serializing_if = "Option::is_none")]
    pub magic_dns: Option<bool>,

    /// Make clients use the global `nameservers` instead of their local DNS settings. Leave it
    /// out to keep the tailnet's current setting.
    #[serde(
        rename = "overrideLocalDNS",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub override_local_dns: Option<bool>,
}

/// The nameservers of one split-DNS domain (at least one; a CEL rule on `splitDNS` checks).
pub type SplitDnsNameservers = Vec<Nameserver>;

/// A search domain (at most 253 characters).
pub type SearchPath = String;

/// One resolver.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Nameserver {
    /// An IPv4 or IPv6 address (e.g. `1.1.1.1`, `2606:4700:4700::1111`), or a DNS-over-HTTPS
    /// URL (`https://...`).
    #[schemars(length(min = 1, max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": format!(
            "self.matches('{IPV4_PATTERN}') || self.matches('{IPV6_PATTERN}') || self.matches('{DOH_PATTERN}')"
        ),
        "message": "address must be an IPv4 or IPv6 address (e.g. 1.1.1.1, 2606:4700:4700::1111) or a DNS-over-HTTPS URL starting with https://",
    }]))]
    pub address: String,

    /// Keep using this resolver while the client uses an exit node (by default the exit node
    /// resolves DNS then). Needs Tailscale clients 1.88.1 or newer.
    #[serde(default)]
    pub use_with_exit_node: bool,
}

/// What the operator last did with this DNSConfig. `Ready` means the tailnet's DNS holds the
/// managed parts; `Drifted` that the live DNS differs from what was applied.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DNSConfigStatus {
    /// Conditions, observed generation and last sync time, as every kind has them.
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The managed DNS parts as last applied (written, or found already in place). Drift is a
    /// live value differing from this while the spec still asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<DnsSettings>,
    /// Whether MagicDNS was on in the tailnet when last read.
    #[serde(rename = "magicDNS", default, skip_serializing_if = "Option::is_none")]
    pub magic_dns: Option<bool>,
    /// How the live DNS differs from what was applied (set while `Drifted` is True).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftDiff>,
    /// Set while another DNSConfig manages this tailnet's DNS: this one writes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<DnsConflict>,
}

/// Another DNSConfig of the same tailnet won.
///
/// Fields default to empty: server-side apply removes the leaves of a status field the
/// operator stops sending but keeps their parent as `{}` (see [`DNSConfigStatus::normalized`]).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct DnsConflict {
    /// The DNSConfig that manages the tailnet's DNS (the oldest; by name when equally old).
    pub winner: String,
    /// Why, and what to do.
    pub message: String,
}

impl DNSConfigStatus {
    /// The status with the empty objects server-side apply leaves behind read as absent:
    /// when the operator stops sending `conflict`, `drift` or `applied`, their leaves are
    /// removed but the parent stays as `{}`. An empty `applied` means "nothing applied" either
    /// way (there is nothing to clear or drift from).
    pub fn normalized(mut self) -> DNSConfigStatus {
        self.conflict = self.conflict.filter(|c| !c.winner.is_empty());
        self.drift = self.drift.filter(|d| !d.is_empty());
        self.applied = self.applied.filter(|a| !a.is_empty());
        self
    }
}

impl DnsSettings {
    /// Whether no part is managed.
    pub fn is_empty(&self) -> bool {
        self == &DnsSettings::default()
    }
}

super::tailnet_scoped_kind!(DNSConfig, DNSConfigStatus, DeleteByDefault, normalized);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::common::DeletionPolicy;
    use serde_json::json;

    #[test]
    fn parts_left_out_are_none_and_the_common_controls_sit_under_spec() {
        let spec: DNSConfigSpec = serde_json::from_value(json!({
            "tailnetRef": "prod",
            "magicDNS": true,
            "nameservers": [{"address": "1.1.1.1", "useWithExitNode": true}],
        }))
        .unwrap();
        assert_eq!(spec.common.tailnet_ref, "prod");
        assert_eq!(spec.common.deletion_policy, DeletionPolicy::Delete);
        assert_eq!(spec.dns.magic_dns, Some(true));
        assert!(spec.dns.split_dns.is_none() && spec.dns.search_paths.is_none());
        assert!(spec.dns.nameservers.as_ref().unwrap()[0].use_with_exit_node);
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["magicDNS"], true);
        assert!(back.get("splitDNS").is_none() && back.get("dns").is_none());
    }

    #[test]
    fn empty_objects_left_by_server_side_apply_read_as_absent() {
        let status: DNSConfigStatus =
            serde_json::from_value(json!({"conflict": {}, "drift": {}, "applied": {}})).unwrap();
        assert_eq!(status.normalized(), DNSConfigStatus::default());
    }

    #[test]
    fn empty_lists_are_managed_and_kept_apart_from_absent_ones() {
        let spec: DNSConfigSpec =
            serde_json::from_value(json!({"nameservers": [], "splitDNS": {}})).unwrap();
        assert_eq!(spec.dns.nameservers, Some(vec![]));
        assert_eq!(spec.dns.split_dns, Some(BTreeMap::new()));
        assert!(!spec.dns.is_empty());
        assert!(DnsSettings::default().is_empty());
    }
}
