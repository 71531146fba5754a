//! Device and key audit of a tailnet: the pure part of `tailnet-operator audit`.
//!
//! [`audit`] turns one device list and one key list into an [`AuditReport`] with no I/O, so the
//! rules are tested directly; the renderers turn a report into a table, JSON or CSV.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::tailscale::{Device, Key};

/// What the audit looks for, and its thresholds.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// A device not seen for longer than this is stale.
    pub stale_after: Duration,
    /// Node keys and auth keys expiring within this window are reported.
    pub expiry_window: Duration,
    /// Clients older than this are outdated. When `None`, the baseline is the newest client in
    /// the tailnet minus `outdated_minor_versions` minor versions (at patch 0), so a client is
    /// outdated when it is more than that many minor versions behind.
    pub min_client_version: Option<ClientVersion>,
    pub outdated_minor_versions: u32,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            stale_after: Duration::days(30),
            expiry_window: Duration::days(14),
            min_client_version: None,
            // Tailscale ships a stable release with every even minor version, so 6 minors is
            // about three stable releases behind.
            outdated_minor_versions: 6,
        }
    }
}

/// The kinds of finding, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum FindingKind {
    Unauthorized,
    NodeKeyExpired,
    NodeKeyExpiring,
    AuthKeyExpiring,
    Stale,
    OutdatedClient,
    UpdateAvailable,
    MissingTags,
    External,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Unauthorized => "Unauthorized",
            FindingKind::NodeKeyExpired => "NodeKeyExpired",
            FindingKind::NodeKeyExpiring => "NodeKeyExpiring",
            FindingKind::AuthKeyExpiring => "AuthKeyExpiring",
            FindingKind::Stale => "Stale",
            FindingKind::OutdatedClient => "OutdatedClient",
            FindingKind::UpdateAvailable => "UpdateAvailable",
            FindingKind::MissingTags => "MissingTags",
            FindingKind::External => "External",
        }
    }

    /// Words for the summary line, e.g. "3 stale".
    pub fn summary_words(self) -> &'static str {
        match self {
            FindingKind::Unauthorized => "unauthorized",
            FindingKind::NodeKeyExpired => "node keys expired",
            FindingKind::NodeKeyExpiring => "node keys expiring",
            FindingKind::AuthKeyExpiring => "auth keys expiring",
            FindingKind::Stale => "stale",
            FindingKind::OutdatedClient => "outdated clients",
            FindingKind::UpdateAvailable => "updates available",
            FindingKind::MissingTags => "missing tags",
            FindingKind::External => "external",
        }
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    Device,
    Key,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub subject: SubjectKind,
    /// Node id of a device, or key id.
    pub id: String,
    /// Device hostname, or key description.
    pub name: String,
    /// Owning user, the device's tags, or `-`.
    pub owner: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    pub generated_at: DateTime<Utc>,
    pub devices: usize,
    pub auth_keys: usize,
    /// The client version outdated clients are measured against.
    pub client_version_baseline: Option<String>,
    pub findings: Vec<Finding>,
    /// Count of findings per kind; every kind is present, zero or not.
    pub summary: BTreeMap<FindingKind, usize>,
}

impl AuditReport {
    /// One line: what was audited and what was found.
    pub fn summary_line(&self) -> String {
        let found: Vec<String> = self
            .summary
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(kind, count)| format!("{count} {}", kind.summary_words()))
            .collect();
        let found = if found.is_empty() {
            "no findings".to_owned()
        } else {
            found.join(", ")
        };
        format!(
            "audited {} devices and {} auth keys: {}",
            self.devices, self.auth_keys, found
        )
    }
}

/// A Tailscale client version such as `1.78.1-t0f1e2d3c4-g5b6a7980`: only the numeric
/// `major.minor.patch` prefix matters for comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClientVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ClientVersion {
    pub fn parse(text: &str) -> Option<ClientVersion> {
        let numeric = text.split(['-', '+', ' ']).next()?;
        let mut parts = numeric.split('.').map(|part| part.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let patch = parts.next().flatten().unwrap_or(0);
        Some(ClientVersion {
            major,
            minor,
            patch,
        })
    }
}

impl std::fmt::Display for ClientVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Audits one device list and one key list at `now`.
pub fn audit(
    devices: &[Device],
    keys: &[Key],
    now: DateTime<Utc>,
    options: &AuditOptions,
) -> AuditReport {
    let baseline = client_version_baseline(devices, options);
    let mut findings: Vec<Finding> = Vec::new();
    for device in devices {
        findings.extend(device_findings(device, now, options, baseline));
    }
    let auth_keys: Vec<&Key> = keys.iter().filter(|key| is_live_auth_key(key)).collect();
    for key in &auth_keys {
        findings.extend(key_finding(key, now, options));
    }
    findings.sort_by(|a, b| (a.kind, &a.name, &a.id).cmp(&(b.kind, &b.name, &b.id)));

    let mut summary: BTreeMap<FindingKind, usize> = ALL_KINDS.iter().map(|k| (*k, 0)).collect();
    for finding in &findings {
        *summary.entry(finding.kind).or_default() += 1;
    }
    AuditReport {
        generated_at: now,
        devices: devices.len(),
        auth_keys: auth_keys.len(),
        client_version_baseline: baseline.map(|v| v.to_string()),
        findings,
        summary,
    }
}

const ALL_KINDS: [FindingKind; 9] = [
    FindingKind::Unauthorized,
    FindingKind::NodeKeyExpired,
    FindingKind::NodeKeyExpiring,
    FindingKind::AuthKeyExpiring,
    FindingKind::Stale,
    FindingKind::OutdatedClient,
    FindingKind::UpdateAvailable,
    FindingKind::MissingTags,
    FindingKind::External,
];

/// The oldest acceptable client version: the configured minimum, or the newest client seen in
/// the tailnet minus the allowed number of minor versions.
fn client_version_baseline(devices: &[Device], options: &AuditOptions) -> Option<ClientVersion> {
    if let Some(min) = options.min_client_version {
        return Some(min);
    }
    let newest = devices
        .iter()
        .filter(|device| !device.is_external)
        .filter_map(|device| ClientVersion::parse(&device.client_version))
        .max()?;
    Some(ClientVersion {
        major: newest.major,
        minor: newest.minor.saturating_sub(options.outdated_minor_versions),
        patch: 0,
    })
}

fn device_findings(
    device: &Device,
    now: DateTime<Utc>,
    options: &AuditOptions,
    baseline: Option<ClientVersion>,
) -> Vec<Finding> {
    let finding = |kind: FindingKind, detail: String| Finding {
        kind,
        subject: SubjectKind::Device,
        id: device.node_id.clone(),
        name: device_name(device),
        owner: device_owner(device),
        detail,
    };
    let mut findings = Vec::new();

    // A shared-in device belongs to another tailnet: only its presence is ours to report.
    if device.is_external {
        findings.push(finding(
            FindingKind::External,
            format!("shared in from another tailnet (owner {})", device.user),
        ));
        return findings;
    }
    if !device.authorized {
        findings.push(finding(
            FindingKind::Unauthorized,
            "waiting for device approval".to_owned(),
        ));
    }
    if let Some(detail) = node_key_expiry(device, now, options) {
        findings.push(finding(detail.0, detail.1));
    }
    if let Some(last_seen) = device.last_seen.filter(|_| !device.connected_to_control) {
        let idle = now - last_seen;
        if idle > options.stale_after {
            findings.push(finding(
                FindingKind::Stale,
                format!(
                    "last seen {} days ago ({})",
                    idle.num_days(),
                    last_seen.to_rfc3339()
                ),
            ));
        }
    }
    if let (Some(version), Some(baseline)) =
        (ClientVersion::parse(&device.client_version), baseline)
        && version < baseline
    {
        findings.push(finding(
            FindingKind::OutdatedClient,
            format!("client {version} is older than {baseline}"),
        ));
    }
    if device.update_available {
        findings.push(finding(
            FindingKind::UpdateAvailable,
            format!("client {} has an update available", device.client_version),
        ));
    }
    // A device whose key never expires is a server in all but name; owned by a person, its
    // access changes when that person leaves. Tailscale recommends tagging such devices.
    if device.tags.is_empty() && device.key_expiry_disabled {
        findings.push(finding(
            FindingKind::MissingTags,
            "key expiry disabled but untagged: tag long-lived devices so access does not \
             depend on a person"
                .to_owned(),
        ));
    }
    findings
}

fn node_key_expiry(
    device: &Device,
    now: DateTime<Utc>,
    options: &AuditOptions,
) -> Option<(FindingKind, String)> {
    if device.key_expiry_disabled {
        return None;
    }
    let expires = device.expires?;
    if expires <= now {
        return Some((
            FindingKind::NodeKeyExpired,
            format!("node key expired {}", expires.to_rfc3339()),
        ));
    }
    let left = expires - now;
    (left <= options.expiry_window).then(|| {
        (
            FindingKind::NodeKeyExpiring,
            format!(
                "node key expires in {} ({})",
                human_duration(left),
                expires.to_rfc3339()
            ),
        )
    })
}

/// Auth keys that can still be used: not revoked, not invalid, and of type `auth`.
fn is_live_auth_key(key: &Key) -> bool {
    let is_auth = key.key_type.is_empty() || key.key_type == "auth";
    is_auth && !key.invalid && key.revoked.is_none()
}

fn key_finding(key: &Key, now: DateTime<Utc>, options: &AuditOptions) -> Option<Finding> {
    let expires = key.expires?;
    let left = expires - now;
    if left > options.expiry_window {
        return None;
    }
    let detail = if left <= Duration::zero() {
        format!("auth key expired {}", expires.to_rfc3339())
    } else {
        format!(
            "auth key expires in {} ({})",
            human_duration(left),
            expires.to_rfc3339()
        )
    };
    Some(Finding {
        kind: FindingKind::AuthKeyExpiring,
        subject: SubjectKind::Key,
        id: key.id.clone(),
        name: if key.description.is_empty() {
            "-".to_owned()
        } else {
            key.description.clone()
        },
        owner: key_tags(key),
        detail,
    })
}

/// The tags devices registered with this key get (auth keys carry them in their capabilities;
/// trust credentials at the top level).
fn key_tags(key: &Key) -> String {
    let tags = key
        .device_create()
        .map(|create| &create.tags)
        .filter(|tags| !tags.is_empty())
        .unwrap_or(&key.tags);
    if tags.is_empty() {
        "-".to_owned()
    } else {
        tags.join(" ")
    }
}

fn device_name(device: &Device) -> String {
    if !device.hostname.is_empty() {
        device.hostname.clone()
    } else {
        device.name.clone()
    }
}

/// Tagged devices are owned by their tags, not by the user who registered them.
fn device_owner(device: &Device) -> String {
    if device.tags.is_empty() {
        device.user.clone()
    } else {
        device.tags.join(" ")
    }
}

fn human_duration(duration: Duration) -> String {
    if duration.num_days() >= 1 {
        format!("{}d", duration.num_days())
    } else if duration.num_hours() >= 1 {
        format!("{}h", duration.num_hours())
    } else {
        format!("{}m", duration.num_minutes().max(0))
    }
}

/// Output formats of `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Renders a report; table output ends with the summary line.
pub fn render(report: &AuditReport, format: Format) -> String {
    match format {
        Format::Table => render_table(report),
        Format::Json => render_json(report),
        Format::Csv => render_csv(report),
    }
}

const COLUMNS: [&str; 6] = ["KIND", "SUBJECT", "ID", "NAME", "OWNER", "DETAIL"];

fn finding_row(finding: &Finding) -> [String; 6] {
    [
        finding.kind.as_str().to_owned(),
        match finding.subject {
            SubjectKind::Device => "device".to_owned(),
            SubjectKind::Key => "key".to_owned(),
        },
        finding.id.clone(),
        finding.name.clone(),
        finding.owner.clone(),
        finding.detail.clone(),
    ]
}

pub fn render_table(report: &AuditReport) -> String {
    let rows: Vec<[String; 6]> = report.findings.iter().map(finding_row).collect();
    let mut widths = COLUMNS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push('\n');
    };
    if !rows.is_empty() {
        line(&COLUMNS);
        for row in &rows {
            line(&row.each_ref().map(String::as_str));
        }
        out.push('\n');
    }
    out.push_str(&report.summary_line());
    out.push('\n');
    out
}

pub fn render_json(report: &AuditReport) -> String {
    let mut value = serde_json::to_value(report).expect("an audit report is plain data");
    value["summaryLine"] = serde_json::Value::String(report.summary_line());
    let mut text = serde_json::to_string_pretty(&value).expect("a JSON value serializes");
    text.push('\n');
    text
}

pub fn render_csv(report: &AuditReport) -> String {
    let mut out = String::new();
    out.push_str(&COLUMNS.map(|c| c.to_ascii_lowercase()).join(","));
    out.push('\n');
    for finding in &report.findings {
        let row = finding_row(finding);
        let cells: Vec<String> = row.iter().map(|cell| csv_field(cell)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// RFC 4180 quoting, plus a leading `'` for cells a spreadsheet would run as a formula
/// (device names come from the devices themselves, so they are untrusted).
fn csv_field(cell: &str) -> String {
    let cell = if cell.starts_with(['=', '+', '-', '@']) && cell != "-" {
        format!("'{cell}")
    } else {
        cell.to_owned()
    };
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-21T12:00:00Z".parse().unwrap()
    }

    fn device(hostname: &str) -> Device {
        Device {
            node_id: format!("n{hostname}"),
            hostname: hostname.to_owned(),
            user: "alice@example.com".to_owned(),
            os: "linux".to_owned(),
            client_version: "1.88.1-t123".to_owned(),
            authorized: true,
            connected_to_control: true,
            expires: Some(now() + Duration::days(120)),
            ..Device::default()
        }
    }

    fn kinds(report: &AuditReport, name: &str) -> Vec<FindingKind> {
        report
            .findings
            .iter()
            .filter(|f| f.name == name)
            .map(|f| f.kind)
            .collect()
    }

    #[test]
    fn a_healthy_device_has_no_findings() {
        let report = audit(&[device("web")], &[], now(), &AuditOptions::default());
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(
            report.summary_line(),
            "audited 1 devices and 0 auth keys: no findings"
        );
    }

    #[test]
    fn stale_means_offline_and_unseen_for_longer_than_the_threshold() {
        let mut old = device("old");
        old.connected_to_control = false;
        old.last_seen = Some(now() - Duration::days(45));
        let mut recent = device("recent");
        recent.connected_to_control = false;
        recent.last_seen = Some(now() - Duration::days(29));
        let report = audit(&[old, recent], &[], now(), &AuditOptions::default());
        assert_eq!(kinds(&report, "old"), [FindingKind::Stale]);
        assert!(kinds(&report, "recent").is_empty());
        assert!(
            report.findings[0]
                .detail
                .starts_with("last seen 45 days ago")
        );
    }

    #[test]
    fn node_key_expiry_respects_the_window_and_disabled_expiry() {
        let mut soon = device("soon");
        soon.expires = Some(now() + Duration::days(3));
        let mut gone = device("gone");
        gone.expires = Some(now() - Duration::hours(1));
        let mut never = device("never");
        never.expires = Some(now() - Duration::days(1));
        never.key_expiry_disabled = true;
        never.tags = vec!["tag:server".to_owned()];
        let report = audit(&[soon, gone, never], &[], now(), &AuditOptions::default());
        assert_eq!(kinds(&report, "soon"), [FindingKind::NodeKeyExpiring]);
        assert_eq!(kinds(&report, "gone"), [FindingKind::NodeKeyExpired]);
        assert!(kinds(&report, "never").is_empty());
    }

    #[test]
    fn outdated_is_measured_against_the_newest_client_or_a_minimum() {
        let mut old = device("old");
        old.client_version = "1.80.0".to_owned();
        let mut close = device("close");
        close.client_version = "1.84.2-tabc".to_owned();
        let newest = device("newest"); // 1.88.1
        let devices = [old, close, newest];
        let report = audit(&devices, &[], now(), &AuditOptions::default());
        assert_eq!(report.client_version_baseline.as_deref(), Some("1.82.0"));
        assert_eq!(kinds(&report, "old"), [FindingKind::OutdatedClient]);
        assert!(kinds(&report, "close").is_empty());

        let strict = AuditOptions {
            min_client_version: ClientVersion::parse("1.88.0"),
            ..AuditOptions::default()
        };
        let report = audit(&devices, &[], now(), &strict);
        assert_eq!(kinds(&report, "close"), [FindingKind::OutdatedClient]);
        assert!(kinds(&report, "newest").is_empty());
    }

    #[test]
    fn unauthorized_update_available_and_missing_tags_are_reported() {
        let mut pending = device("pending");
        pending.authorized = false;
        let mut behind = device("behind");
        behind.update_available = true;
        let mut server = device("server");
        server.key_expiry_disabled = true;
        let mut tagged = device("tagged");
        tagged.key_expiry_disabled = true;
        tagged.tags = vec!["tag:prod".to_owned()];
        let report = audit(
            &[pending, behind, server, tagged],
            &[],
            now(),
            &AuditOptions::default(),
        );
        assert_eq!(kinds(&report, "pending"), [FindingKind::Unauthorized]);
        assert_eq!(kinds(&report, "behind"), [FindingKind::UpdateAvailable]);
        assert_eq!(kinds(&report, "server"), [FindingKind::MissingTags]);
        assert!(kinds(&report, "tagged").is_empty());
        let server = report.findings.iter().find(|f| f.name == "server").unwrap();
        assert_eq!(server.owner, "alice@example.com");
    }

    #[test]
    fn external_devices_are_reported_once_and_not_judged() {
        let mut shared = device("shared");
        shared.is_external = true;
        shared.authorized = false;
        shared.client_version = "1.2.0".to_owned();
        let report = audit(
            &[shared, device("mine")],
            &[],
            now(),
            &AuditOptions::default(),
        );
        assert_eq!(kinds(&report, "shared"), [FindingKind::External]);
        // An external device's old client must not drag the baseline down either.
        assert_eq!(report.client_version_baseline.as_deref(), Some("1.82.0"));
    }

    #[test]
    fn only_live_auth_keys_expiring_in_the_window_are_reported() {
        let key = |id: &str, days: i64| Key {
            id: id.to_owned(),
            key_type: "auth".to_owned(),
            description: format!("key {id}"),
            expires: Some(now() + Duration::days(days)),
            ..Key::default()
        };
        let mut revoked = key("revoked", 1);
        revoked.revoked = Some(now() - Duration::days(1));
        let mut client = key("client", 1);
        client.key_type = "client".to_owned();
        let mut tagged = key("soon", 2);
        tagged.capabilities = Some(crate::tailscale::KeyCapabilities {
            devices: Some(crate::tailscale::DeviceCapabilities {
                create: Some(crate::tailscale::DeviceCreateCapabilities {
                    tags: vec!["tag:ci".to_owned()],
                    ..Default::default()
                }),
            }),
        });
        let keys = [tagged, key("later", 60), revoked, client];
        let report = audit(&[], &keys, now(), &AuditOptions::default());
        assert_eq!(report.auth_keys, 2);
        let ids: Vec<&str> = report.findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["soon"]);
        assert_eq!(report.findings[0].subject, SubjectKind::Key);
        assert_eq!(report.findings[0].owner, "tag:ci");
    }

    #[test]
    fn client_versions_parse_tailscale_forms() {
        let v = ClientVersion::parse("1.78.1-t0f1e2d3c4-g5b6a7980").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 78, 1));
        assert_eq!(ClientVersion::parse("1.90").unwrap().to_string(), "1.90.0");
        assert_eq!(ClientVersion::parse(""), None);
        assert_eq!(ClientVersion::parse("unknown"), None);
    }

    #[test]
    fn renderers_carry_every_finding_and_the_summary() {
        let mut pending = device("pending,\"quoted\"");
        pending.authorized = false;
        let mut evil = device("=cmd()");
        evil.update_available = true;
        let report = audit(&[pending, evil], &[], now(), &AuditOptions::default());

        let table = render_table(&report);
        assert!(table.starts_with("KIND"));
        assert!(table.contains("Unauthorized"));
        assert!(
            table.trim_end().ends_with(
                "audited 2 devices and 0 auth keys: 1 unauthorized, 1 updates available"
            )
        );

        let csv = render_csv(&report);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "kind,subject,id,name,owner,detail");
        assert_eq!(lines.len(), 3);
        assert!(csv.contains("\"pending,\"\"quoted\"\"\""), "{csv}");
        assert!(csv.contains(",'=cmd(),"), "{csv}");

        let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
        assert_eq!(json["findings"].as_array().unwrap().len(), 2);
        assert_eq!(json["summary"]["Unauthorized"], 1);
        assert_eq!(json["summary"]["Stale"], 0);
        assert_eq!(json["devices"], 2);
        assert!(
            json["summaryLine"]
                .as_str()
                .unwrap()
                .contains("1 unauthorized")
        );
    }
}
