//! ManagedTailnet DNS through the combined `/dns/configuration` endpoint only.
//!
//! Why only that endpoint, and never the per-part ones (`/dns/nameservers`,
//! `/dns/preferences`, `/dns/searchpaths`, `/dns/split-dns`):
//! - one atomic read and one atomic write per reconcile, so a reconciler never observes or
//!   leaves a half-applied configuration;
//! - it is the only one that carries `useWithExitNode` per resolver;
//! - the per-part endpoints have ordering pitfalls (enabling MagicDNS fails without
//!   nameservers; removing all nameservers silently disables MagicDNS), and mixing the two
//!   generations makes them fight.
//!
//! Its own pitfall is that a write replaces everything and an omitted boolean means `false`
//! (so omitting `magicDNS` turns MagicDNS off). [`DnsConfiguration`] therefore always
//! serializes every field, booleans included.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::client::{ApiRequest, TailscaleClient};
use super::error::Result;
use super::wire::nullable;

const DNS_CONFIGURATION: &str = "/tailnet/{tailnet}/dns/configuration";

/// The whole DNS configuration of a tailnet. Serialization never omits a field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DnsConfiguration {
    /// Global nameservers, in order.
    #[serde(deserialize_with = "nullable")]
    pub nameservers: Vec<DnsResolver>,
    /// Domain to the resolvers for it.
    #[serde(rename = "splitDNS", deserialize_with = "split_dns")]
    pub split_dns: BTreeMap<String, Vec<DnsResolver>>,
    #[serde(deserialize_with = "nullable")]
    pub search_paths: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub preferences: DnsPreferences,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DnsResolver {
    /// An IP address or a DoH URL.
    #[serde(deserialize_with = "nullable")]
    pub address: String,
    /// Also use this resolver while an exit node is in use (clients ≥ 1.88.1).
    #[serde(deserialize_with = "nullable")]
    pub use_with_exit_node: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsPreferences {
    /// Make clients use the tailnet's nameservers instead of their local ones.
    #[serde(rename = "overrideLocalDNS", deserialize_with = "nullable")]
    pub override_local_dns: bool,
    #[serde(rename = "magicDNS", deserialize_with = "nullable")]
    pub magic_dns: bool,
}

/// Split-DNS values may be `null` on the wire (a domain with no resolvers).
fn split_dns<'de, D>(
    deserializer: D,
) -> std::result::Result<BTreeMap<String, Vec<DnsResolver>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let map: Option<BTreeMap<String, Option<Vec<DnsResolver>>>> =
        Option::deserialize(deserializer)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .map(|(domain, resolvers)| (domain, resolvers.unwrap_or_default()))
        .collect())
}

impl TailscaleClient {
    pub async fn get_dns_configuration(&self) -> Result<DnsConfiguration> {
        self.call_json(ApiRequest::get(DNS_CONFIGURATION)).await
    }

    /// Replaces the whole DNS configuration and returns what the tailnet now has.
    pub async fn set_dns_configuration(
        &self,
        configuration: &DnsConfiguration,
    ) -> Result<DnsConfiguration> {
        self.call_json(ApiRequest::post(DNS_CONFIGURATION).json(configuration)?)
            .await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn false_booleans_and_empty_parts_are_always_serialized() {
        let json = serde_json::to_value(DnsConfiguration::default()).unwrap();
        assert_eq!(
            json,
            json!({
                "nameservers": [],
                "splitDNS": {},
                "searchPaths": [],
                "preferences": {"overrideLocalDNS": false, "magicDNS": false}
            })
        );
        let resolver = serde_json::to_value(DnsResolver {
            address: "1.1.1.1".into(),
            use_with_exit_node: false,
        })
        .unwrap();
        assert_eq!(
            resolver,
            json!({"address": "1.1.1.1", "useWithExitNode": false})
        );
    }

    #[test]
    fn round_trips_the_spec_shape() {
        let wire = json!({
            "nameservers": [{"address": "8.8.8.8", "useWithExitNode": true}],
            "splitDNS": {"corp.example.com": [{"address": "10.0.0.53", "useWithExitNode": false}]},
            "searchPaths": ["corp.example.com"],
            "preferences": {"overrideLocalDNS": true, "magicDNS": true}
        });
        let config: DnsConfiguration = serde_json::from_value(wire.clone()).unwrap();
        assert!(config.preferences.magic_dns && config.preferences.override_local_dns);
        assert!(config.nameservers[0].use_with_exit_node);
        assert_eq!(config.split_dns["corp.example.com"][0].address, "10.0.0.53");
        assert_eq!(serde_json::to_value(&config).unwrap(), wire);
    }

    #[test]
    fn tolerates_nulls_missing_parts_and_unknown_fields() {
        let config: DnsConfiguration = serde_json::from_value(json!({
            "nameservers": null,
            "splitDNS": {"a.example": null},
            "preferences": {"magicDNS": true},
            "future": 1
        }))
        .unwrap();
        assert!(config.nameservers.is_empty());
        assert_eq!(config.split_dns["a.example"], Vec::<DnsResolver>::new());
        assert!(config.preferences.magic_dns);
        assert!(!config.preferences.override_local_dns);
        assert!(config.search_paths.is_empty());
    }
}
