//! `tailnet-operator report`: the tailnet's state as one self-contained HTML page (inline SVG
//! charts, no scripts, fonts or images from anywhere) or as JSON with a published schema
//! (`docs/report.schema.json`, generated from [`Report`]). Built from one read of each area;
//! large tailnets are aggregated (counts, histograms, capped lists), never listed in full.
//!
//! Sections: devices, routing, DNS, policy, keys, audit findings.
mod html;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

pub use html::render_html;

use crate::audit::{AuditReport, ClientVersion};
use crate::tailscale::{Device, DnsConfiguration, Key};

/// At most this many rows in a listed table (routers, exit nodes); counts stay exact.
pub const MAX_LISTED: usize = 50;

/// The whole report.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// When the tailnet was read (RFC 3339).
    pub generated_at: String,
    /// What was read, e.g. `tailnet - at https://api.tailscale.com`.
    pub source: String,
    pub devices: DeviceSection,
    pub routing: RoutingSection,
    pub dns: DnsSection,
    pub policy: PolicySection,
    pub keys: KeySection,
    pub audit: AuditSection,
}

/// A labelled count (one bar of a chart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Bucket {
    pub label: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSection {
    pub total: usize,
    /// Devices per operating system, most first.
    pub by_os: Vec<Bucket>,
    /// The newest client version seen.
    pub newest_client: Option<String>,
    /// Devices per client version (major.minor), newest first.
    pub by_client_version: Vec<Bucket>,
    pub connected: usize,
    /// Disconnected devices by days since last seen.
    pub last_seen: Vec<Bucket>,
    pub update_available: usize,
    pub unauthorized: usize,
    /// Node keys expiring in each of the next 13 weeks (week 1 = the next 7 days).
    pub key_expiry_weeks: Vec<Bucket>,
}

/// A device that routes for others.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Router {
    pub name: String,
    pub advertised: Vec<String>,
    pub enabled: Vec<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingSection {
    pub subnet_router_count: usize,
    /// At most [`MAX_LISTED`].
    pub subnet_routers: Vec<Router>,
    pub exit_node_count: usize,
    /// At most [`MAX_LISTED`].
    pub exit_nodes: Vec<Router>,
    /// Advertised subnet routes not enabled, over all routers.
    pub routes_awaiting_approval: usize,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsSection {
    pub magic_dns: bool,
    pub nameservers: Vec<String>,
    /// Domain → its resolvers.
    pub split_dns: BTreeMap<String, Vec<String>>,
    pub search_paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySection {
    /// Entries per section of the live policy (`groups`, `tagOwners`, `acls`, `grants`, ...).
    pub sections: Vec<Bucket>,
    /// Members per group, largest first (at most [`MAX_LISTED`]).
    pub groups: Vec<Bucket>,
    /// Owners per tag (at most [`MAX_LISTED`]).
    pub tags: Vec<Bucket>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeySection {
    /// Live keys by type (auth, client, api, federated).
    pub by_type: Vec<Bucket>,
    /// Live keys expiring: within 7, 30 and 90 days, later, never.
    pub by_expiry: Vec<Bucket>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditSection {
    pub summary: String,
    /// Findings per kind.
    pub by_kind: Vec<Bucket>,
}

/// What the report is built from (one read of each area).
pub struct Inputs<'a> {
    pub source: String,
    pub devices: &'a [Device],
    pub keys: &'a [Key],
    pub dns: &'a DnsConfiguration,
    /// The live policy, parsed.
    pub policy: &'a Value,
    pub audit: &'a AuditReport,
    pub now: DateTime<Utc>,
}

/// Builds the report (pure).
pub fn build(inputs: &Inputs<'_>) -> Report {
    Report {
        generated_at: inputs
            .now
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        source: inputs.source.clone(),
        devices: devices(inputs.devices, inputs.now),
        routing: routing(inputs.devices),
        dns: dns(inputs.dns),
        policy: policy(inputs.policy),
        keys: keys(inputs.keys, inputs.now),
        audit: AuditSection {
            summary: inputs.audit.summary_line(),
            by_kind: inputs
                .audit
                .summary
                .iter()
                .map(|(kind, count)| Bucket {
                    label: kind.summary_words().to_owned(),
                    count: *count,
                })
                .collect(),
        },
    }
}

/// Counts of `labels`, most first (ties by label).
fn tally<'a>(labels: impl IntoIterator<Item = &'a str>) -> Vec<Bucket> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for label in labels {
        *counts.entry(label).or_default() += 1;
    }
    let mut buckets: Vec<Bucket> = counts
        .into_iter()
        .map(|(label, count)| Bucket {
            label: label.to_owned(),
            count,
        })
        .collect();
    most_first(&mut buckets);
    buckets
}

/// Largest count first, ties by label (charts read top-down).
fn most_first(buckets: &mut [Bucket]) {
    buckets.sort_by(|a, b| b.count.cmp(&a.count).then(a.label.cmp(&b.label)));
}

fn devices(devices: &[Device], now: DateTime<Utc>) -> DeviceSection {
    let versions: Vec<Option<ClientVersion>> = devices
        .iter()
        .map(|d| ClientVersion::parse(&d.client_version))
        .collect();
    let newest = versions.iter().flatten().max().copied();
    let mut by_version: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    for v in versions.iter().flatten() {
        *by_version.entry((v.major, v.minor)).or_default() += 1;
    }
    let last_seen_buckets: [(&str, i64); 5] = [
        ("under 1 day", 1),
        ("1-7 days", 7),
        ("7-30 days", 30),
        ("30-90 days", 90),
        ("over 90 days", i64::MAX),
    ];
    let mut last_seen = vec![0usize; last_seen_buckets.len()];
    for device in devices.iter().filter(|d| !d.connected_to_control) {
        let days = device
            .last_seen
            .map_or(i64::MAX - 1, |seen| (now - seen).num_days());
        let slot = last_seen_buckets
            .iter()
            .position(|(_, under)| days < *under)
            .unwrap_or(last_seen_buckets.len() - 1);
        last_seen[slot] += 1;
    }
    let mut weeks = vec![0usize; 13];
    for device in devices.iter().filter(|d| !d.key_expiry_disabled) {
        if let Some(expires) = device.expires.filter(|e| *e > now) {
            let week = ((expires - now).num_days() / 7) as usize;
            if let Some(slot) = weeks.get_mut(week) {
                *slot += 1;
            }
        }
    }
    DeviceSection {
        total: devices.len(),
        by_os: tally(devices.iter().map(|d| os_label(&d.os))),
        newest_client: newest.map(|v| v.to_string()),
        by_client_version: by_version
            .into_iter()
            .rev()
            .map(|((major, minor), count)| Bucket {
                label: format!("{major}.{minor}"),
                count,
            })
            .collect(),
        connected: devices.iter().filter(|d| d.connected_to_control).count(),
        last_seen: last_seen_buckets
            .iter()
            .zip(last_seen)
            .map(|((label, _), count)| Bucket {
                label: (*label).to_owned(),
                count,
            })
            .collect(),
        update_available: devices.iter().filter(|d| d.update_available).count(),
        unauthorized: devices.iter().filter(|d| !d.authorized).count(),
        key_expiry_weeks: weeks
            .into_iter()
            .enumerate()
            .map(|(i, count)| Bucket {
                label: format!("week {}", i + 1),
                count,
            })
            .collect(),
    }
}

fn os_label(os: &str) -> &str {
    if os.is_empty() { "unknown" } else { os }
}

fn routing(devices: &[Device]) -> RoutingSection {
    let router = |d: &Device, exit: bool| {
        let is_exit = |r: &String| r == "0.0.0.0/0" || r == "::/0";
        let pick = |routes: &Option<Vec<String>>| -> Vec<String> {
            routes
                .iter()
                .flatten()
                .filter(|r| is_exit(r) == exit)
                .cloned()
                .collect()
        };
        Router {
            name: d.name.clone(),
            advertised: pick(&d.advertised_routes),
            enabled: pick(&d.enabled_routes),
        }
    };
    let subnet: Vec<Router> = devices
        .iter()
        .map(|d| router(d, false))
        .filter(|r| !r.advertised.is_empty())
        .collect();
    let exits: Vec<Router> = devices
        .iter()
        .map(|d| router(d, true))
        .filter(|r| !r.advertised.is_empty())
        .collect();
    let awaiting = subnet
        .iter()
        .map(|r| {
            r.advertised
                .iter()
                .filter(|a| !r.enabled.contains(a))
                .count()
        })
        .sum();
    RoutingSection {
        subnet_router_count: subnet.len(),
        exit_node_count: exits.len(),
        routes_awaiting_approval: awaiting,
        subnet_routers: subnet.into_iter().take(MAX_LISTED).collect(),
        exit_nodes: exits.into_iter().take(MAX_LISTED).collect(),
    }
}

fn dns(config: &DnsConfiguration) -> DnsSection {
    DnsSection {
        magic_dns: config.preferences.magic_dns,
        nameservers: config
            .nameservers
            .iter()
            .map(|r| r.address.clone())
            .collect(),
        split_dns: config
            .split_dns
            .iter()
            .map(|(domain, resolvers)| {
                (
                    domain.clone(),
                    resolvers.iter().map(|r| r.address.clone()).collect(),
                )
            })
            .collect(),
        search_paths: config.search_paths.clone(),
    }
}

fn policy(policy: &Value) -> PolicySection {
    let size = |v: &Value| match v {
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => 1,
    };
    let sections = policy
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(name, value)| Bucket {
                    label: name.clone(),
                    count: size(value),
                })
                .collect()
        })
        .unwrap_or_default();
    let members = |section: &str| -> Vec<Bucket> {
        let mut buckets: Vec<Bucket> = policy
            .get(section)
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(name, value)| Bucket {
                        label: name.clone(),
                        count: size(value),
                    })
                    .collect()
            })
            .unwrap_or_default();
        most_first(&mut buckets);
        buckets.truncate(MAX_LISTED);
        buckets
    };
    PolicySection {
        sections,
        groups: members("groups"),
        tags: members("tagOwners"),
    }
}

fn keys(keys: &[Key], now: DateTime<Utc>) -> KeySection {
    let live: Vec<&Key> = keys
        .iter()
        .filter(|k| !k.invalid && k.revoked.is_none())
        .collect();
    let expiry = |k: &&Key| match k.expires {
        None => "never",
        Some(at) if at - now <= Duration::days(7) => "within 7 days",
        Some(at) if at - now <= Duration::days(30) => "within 30 days",
        Some(at) if at - now <= Duration::days(90) => "within 90 days",
        Some(_) => "later",
    };
    let order = [
        "within 7 days",
        "within 30 days",
        "within 90 days",
        "later",
        "never",
    ];
    let counted = tally(live.iter().map(expiry));
    KeySection {
        by_type: tally(live.iter().map(|k| k.key_type.as_str())),
        by_expiry: order
            .iter()
            .map(|label| Bucket {
                label: (*label).to_owned(),
                count: counted
                    .iter()
                    .find(|b| b.label == *label)
                    .map_or(0, |b| b.count),
            })
            .collect(),
    }
}

/// The JSON Schema of [`Report`] (what `docs/report.schema.json` holds).
pub fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Report)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, os: &str, version: &str, connected: bool, seen_days: i64) -> Device {
        let now = Utc::now();
        Device {
            name: name.into(),
            hostname: name.into(),
            os: os.into(),
            client_version: version.into(),
            connected_to_control: connected,
            last_seen: Some(now - Duration::days(seen_days)),
            authorized: true,
            ..Device::default()
        }
    }

    #[test]
    fn devices_are_aggregated_not_listed() {
        let now = Utc::now();
        let mut router = device("r1", "linux", "1.80.2", true, 0);
        router.advertised_routes = Some(vec!["10.0.0.0/24".into(), "0.0.0.0/0".into()]);
        router.enabled_routes = Some(vec!["10.0.0.0/24".into()]);
        let devices = vec![
            device("a", "linux", "1.80.2", true, 0),
            device("b", "macOS", "1.78.0", false, 3),
            device("c", "linux", "1.76.1", false, 120),
            router,
        ];
        let section = super::devices(&devices, now);
        assert_eq!(section.total, 4);
        assert_eq!(
            section.by_os[0],
            Bucket {
                label: "linux".into(),
                count: 3
            }
        );
        assert_eq!(section.newest_client.as_deref(), Some("1.80.2"));
        assert_eq!(section.by_client_version[0].label, "1.80");
        assert_eq!(section.last_seen[1].count, 1, "1-7 days");
        assert_eq!(section.last_seen[4].count, 1, "over 90 days");
        let routing = super::routing(&devices);
        assert_eq!(
            (routing.subnet_router_count, routing.exit_node_count),
            (1, 1)
        );
        assert_eq!(routing.routes_awaiting_approval, 0);
        assert_eq!(routing.exit_nodes[0].enabled, Vec::<String>::new());
    }

    #[test]
    fn the_schema_names_every_section() {
        let schema = schema();
        let required = schema["required"].as_array().unwrap();
        for section in ["devices", "routing", "dns", "policy", "keys", "audit"] {
            assert!(required.iter().any(|r| r == section), "{section}");
        }
    }
}
