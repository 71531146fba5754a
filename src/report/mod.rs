//! `tailnet-operator report`: the tailnet's state as one self-contained HTML page (inline SVG
//! charts, no scripts, fonts or images from anywhere) or as JSON with a published schema
//! (`docs/report.schema.json`, generated from [`Report`]). Built from one read of each area;
//! large tailnets are aggregated (counts, histograms, capped lists), never listed in full.
//!
//! Sections: devices, routing, DNS, policy (with the class-level access heatmap computed by the
//! policy evaluator and the policy's own tests), keys, audit findings, and with `-f PATH` the
//! desired state against the live one.
mod html;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use html::render_html;

use crate::audit::{AuditReport, ClientVersion};
use crate::policy::access::{HeatAxis, HeatCell, Policy, TailnetView};
use crate::reconcile::view::{tailnet_view, with_services};
use crate::resources::DriftDiff;
use crate::snapshot::TailnetSnapshots;
use crate::tailscale::ApiError;
use crate::tailscale::{Device, DnsConfiguration, Key};

/// At most this many rows in a listed table (routers, exit nodes); counts stay exact.
pub const MAX_LISTED: usize = 50;

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// When the tailnet was read (RFC 3339).
    pub generated_at: String,
    /// What was read, e.g. `tailnet - at https://api.tailscale.com`.
    pub source: String,
    /// What could not be read and what the report lacks for it (e.g. users without the
    /// scope: role autogroups match nobody).
    pub notes: Vec<String>,
    pub devices: DeviceSection,
    pub routing: RoutingSection,
    pub dns: DnsSection,
    pub policy: PolicySection,
    pub keys: KeySection,
    pub audit: AuditSection,
    /// With `report -f PATH`: each resource under PATH planned against the live tailnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<DesiredSection>,
}

/// A labelled count (one bar of a chart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Bucket {
    pub label: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Router {
    pub name: String,
    pub advertised: Vec<String>,
    pub enabled: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsSection {
    pub magic_dns: bool,
    pub nameservers: Vec<String>,
    /// Domain → its resolvers.
    pub split_dns: BTreeMap<String, Vec<String>>,
    pub search_paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySection {
    /// Entries per section of the live policy (`groups`, `tagOwners`, `acls`, `grants`, ...).
    pub sections: Vec<Bucket>,
    /// Members per group, largest first (at most [`MAX_LISTED`]).
    pub groups: Vec<Bucket>,
    /// Owners per tag (at most [`MAX_LISTED`]).
    pub tags: Vec<Bucket>,
    /// The policy's own `tests` and `sshTests` run by the evaluator over the live devices.
    pub tests: PolicyTests,
    /// Who reaches what, by identity.
    pub access: AccessMap,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTests {
    pub total: usize,
    pub failing: usize,
    /// The first failures (at most [`MAX_LISTED`]), as Tailscale words them.
    pub failures: Vec<String>,
}

/// The class-level access heatmap: rows are groups, `autogroup:member`, tags and
/// `autogroup:tagged`; columns are untagged devices (`autogroup:member`), tags, Tailscale
/// Services and address targets the policy names. A cell is what some device of the row can
/// reach on some destination of the column. Bounded by identities, never by devices.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessMap {
    pub rows: Vec<HeatAxis>,
    pub columns: Vec<HeatAxis>,
    /// Non-empty cells only.
    pub cells: Vec<HeatCell>,
    /// Identities left out (those with the fewest devices) to keep at most [`MAX_AXIS`] per
    /// axis.
    pub omitted_rows: usize,
    pub omitted_columns: usize,
    /// Why there is no map, when there is none (the live policy does not compile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// At most this many rows and columns in the access heatmap.
pub const MAX_AXIS: usize = 40;

/// Desired (the manifests of `-f PATH`) against live.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesiredSection {
    /// The PATH read.
    pub path: String,
    /// Resources per state (see [`DesiredResource::state`]).
    pub by_state: Vec<Bucket>,
    pub resources: Vec<DesiredResource>,
    /// What `plan -f PATH` prints: every change applying would make, with the policy's
    /// access diff and the text diffs.
    pub plan: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesiredResource {
    pub kind: String,
    pub name: String,
    /// `in sync`, `would change`, `drifted`, `not ready` (the planner found a problem), or
    /// `no status` (a kind that sets no status in file mode: its planned changes, if any, are in
    /// `plan`).
    pub state: String,
    /// `Ready`, `Synced` and `Drifted` as the kind's planner sets them.
    pub conditions: Vec<ConditionLine>,
    /// The drift diff, one line per differing path (`/path: live X, desired Y`), then who
    /// changed it when known; empty when in sync.
    pub drift: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConditionLine {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeySection {
    /// Live keys by type (auth, client, api, federated).
    pub by_type: Vec<Bucket>,
    /// Live keys expiring: within 7, 30 and 90 days, later, never.
    pub by_expiry: Vec<Bucket>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditSection {
    pub summary: String,
    /// Findings per kind.
    pub by_kind: Vec<Bucket>,
}

/// What the report is built from (one read of each area).
pub struct Inputs<'a> {
    pub source: String,
    pub notes: Vec<String>,
    pub devices: &'a [Device],
    pub keys: &'a [Key],
    pub dns: &'a DnsConfiguration,
    /// The live policy, parsed.
    pub policy: &'a Value,
    /// Devices, users and services as the policy evaluator sees them.
    pub view: &'a TailnetView,
    pub audit: &'a AuditReport,
    pub now: DateTime<Utc>,
}

/// Reads each area once through `snapshots` (what the CLI and the MCP server share) and builds
/// the report. Users and Tailscale Services are optional: without them (a key lacking the
/// scope) the report says what it lacks in `notes` instead of failing.
pub async fn read(snapshots: &TailnetSnapshots, source: String) -> Result<Report, ApiError> {
    let (devices, keys, dns, policy) = tokio::join!(
        snapshots.devices(),
        snapshots.keys(),
        snapshots.dns(),
        snapshots.policy()
    );
    let (devices, keys, dns, policy) = (devices?, keys?, dns?, policy?);
    let mut notes = Vec::new();
    let users = match snapshots.users().await {
        Ok(users) => users.data.clone(),
        Err(err) => {
            notes.push(format!(
                "users not read ({err}): role autogroups match nobody"
            ));
            Vec::new()
        }
    };
    let services = match snapshots.services().await {
        Ok(services) => services.data.clone(),
        Err(err) => {
            notes.push(format!(
                "Tailscale Services not read ({err}): none in the access map"
            ));
            Vec::new()
        }
    };
    let policy = match crate::policy::hujson::parse_strict(&policy.data.hujson) {
        Ok(policy) => policy,
        Err(err) => {
            notes.push(format!("the live policy is not valid HuJSON: {err}"));
            Value::Null
        }
    };
    let view = with_services(tailnet_view(&devices.data, &users), &services);
    let now = Utc::now();
    let audit = crate::audit::audit(&devices.data, &keys.data, now, &Default::default());
    Ok(build(&Inputs {
        source,
        notes,
        devices: &devices.data,
        keys: &keys.data,
        dns: &dns.data,
        policy: &policy,
        view: &view,
        audit: &audit,
        now,
    }))
}

/// Builds the report (pure).
pub fn build(inputs: &Inputs<'_>) -> Report {
    Report {
        generated_at: inputs
            .now
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        source: inputs.source.clone(),
        notes: inputs.notes.clone(),
        devices: devices(inputs.devices, inputs.now),
        routing: routing(inputs.devices),
        dns: dns(inputs.dns),
        policy: policy(inputs.policy, inputs.view),
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
        desired: None,
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

fn policy(policy: &Value, view: &TailnetView) -> PolicySection {
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
    let (tests, access) = match Policy::compile(policy) {
        Ok(compiled) => (
            policy_tests(policy, &compiled, view),
            access_map(&compiled, view),
        ),
        Err(err) => {
            let why = format!("the live policy does not compile: {err}");
            let tests = PolicyTests {
                total: test_count(policy),
                failing: 0,
                failures: vec![why.clone()],
            };
            (tests, AccessMap::unavailable(why))
        }
    };
    PolicySection {
        sections,
        groups: members("groups"),
        tags: members("tagOwners"),
        tests,
        access,
    }
}

fn test_count(policy: &Value) -> usize {
    ["tests", "sshTests"]
        .iter()
        .filter_map(|s| policy.get(s).and_then(Value::as_array))
        .map(Vec::len)
        .sum()
}

fn policy_tests(policy: &Value, compiled: &Policy, view: &TailnetView) -> PolicyTests {
    let failures = compiled.run_tests(None, view);
    PolicyTests {
        total: test_count(policy),
        failing: failures.len(),
        failures: failures
            .iter()
            .take(MAX_LISTED)
            .map(|f| format!("{}: {}", f.src, f.errors.join("; ")))
            .collect(),
    }
}

impl AccessMap {
    fn unavailable(why: String) -> AccessMap {
        AccessMap {
            rows: Vec::new(),
            columns: Vec::new(),
            cells: Vec::new(),
            omitted_rows: 0,
            omitted_columns: 0,
            unavailable: Some(why),
        }
    }
}

fn access_map(policy: &Policy, view: &TailnetView) -> AccessMap {
    let map = policy.heatmap(view, MAX_AXIS);
    AccessMap {
        rows: map.rows,
        columns: map.columns,
        cells: map.cells,
        omitted_rows: map.omitted_rows,
        omitted_columns: map.omitted_columns,
        unavailable: None,
    }
}

/// The desired-vs-live section from each resource as its planner left it (`status` with
/// conditions and, where found, `drift`): see [`crate::file_mode::with_status`].
pub fn desired(path: &str, resources: &[Value], plan: String) -> DesiredSection {
    let resources: Vec<DesiredResource> = resources.iter().map(desired_resource).collect();
    let mut by_state = tally(resources.iter().map(|r| r.state.as_str()));
    by_state.sort_by_key(|b| STATES.iter().position(|s| *s == b.label));
    DesiredSection {
        path: path.to_owned(),
        by_state,
        resources,
        plan,
    }
}

fn drift_lines(diff: &DriftDiff) -> Vec<String> {
    let shown = |v: &Option<Value>| v.as_ref().map_or("(absent)".to_owned(), Value::to_string);
    let mut lines: Vec<String> = diff
        .entries
        .iter()
        .map(|e| {
            let path = if e.path.is_empty() { "/" } else { &e.path };
            format!(
                "{path}: live {}, desired {}",
                shown(&e.live),
                shown(&e.desired)
            )
        })
        .collect();
    if diff.truncated > 0 {
        lines.push(format!("and {} more", diff.truncated));
    }
    if let Some(who) = &diff.changed_by {
        lines.push(format!("changed by {who}"));
    }
    lines
}

const STATES: [&str; 5] = [
    "in sync",
    "would change",
    "drifted",
    "not ready",
    "no status",
];

fn desired_resource(value: &Value) -> DesiredResource {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let conditions: Vec<ConditionLine> = value
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| ConditionLine {
            type_: text(c.get("type")),
            status: text(c.get("status")),
            reason: text(c.get("reason")),
            message: text(c.get("message")),
        })
        .collect();
    let find = |type_: &str| conditions.iter().find(|c| c.type_ == type_);
    let ready = find("Ready");
    let state = if find("Drifted").is_some_and(|c| c.status == "True") {
        STATES[2]
    } else if ready.is_some_and(|c| c.status == "True") {
        STATES[0]
    } else if ready.is_some_and(|c| c.reason == "Pending") {
        STATES[1]
    } else if ready.is_some() {
        STATES[3]
    } else {
        STATES[4]
    };
    let drift = value
        .pointer("/status/drift")
        .and_then(|d| serde_json::from_value::<DriftDiff>(d.clone()).ok())
        .map(|d| drift_lines(&d))
        .unwrap_or_default();
    DesiredResource {
        kind: text(value.get("kind")),
        name: text(value.pointer("/metadata/name")),
        state: state.to_owned(),
        conditions,
        drift,
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
