//! The simulated tailnet's model: devices, users, keys, the policy file (text + ETag), DNS,
//! services, settings and webhooks, plus the JSON each renders to on the wire (field names and
//! shapes follow the OpenAPI document's schemas).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};

use crate::policy::access::{DeviceView, Policy, ServiceView, TailnetView};
use crate::secret::Secret;

use super::error::{SimError, SimResult};

/// RFC 3339 with whole seconds and `Z`, as the API writes timestamps.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Renders an optional timestamp; the API writes `""` for unknown times (external devices,
/// Tailscale's hello service), and clients must tolerate it.
fn ts_or_empty(t: Option<DateTime<Utc>>) -> String {
    t.map(ts).unwrap_or_default()
}

/// Go's zero time, which the API reports as `expires` when key expiry is disabled.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Top-level fields of the Device schema (all of them may be used as list filters, but only
/// scalar and list ones can match).
pub const DEVICE_FIELDS: &[&str] = &[
    "addresses",
    "id",
    "nodeId",
    "user",
    "name",
    "hostname",
    "clientVersion",
    "updateAvailable",
    "os",
    "created",
    "connectedToControl",
    "lastSeen",
    "keyExpiryDisabled",
    "expires",
    "authorized",
    "isExternal",
    "multipleConnections",
    "machineKey",
    "nodeKey",
    "blocksIncomingConnections",
    "enabledRoutes",
    "advertisedRoutes",
    "clientConnectivity",
    "tags",
    "tailnetLockError",
    "tailnetLockKey",
    "sshEnabled",
    "postureIdentity",
    "isEphemeral",
    "distro",
];

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Distro {
    pub name: String,
    pub version: String,
    pub code_name: String,
}

#[derive(Debug, Clone)]
pub struct Device {
    /// Legacy numeric id.
    pub id: String,
    /// Stable node id, the preferred identifier.
    pub node_id: String,
    /// Login name of the registering user.
    pub user: String,
    /// MagicDNS FQDN.
    pub name: String,
    pub hostname: String,
    /// One 100.64.0.0/10 IPv4 and one fd7a:115c:a1e0::/48 IPv6.
    pub addresses: Vec<String>,
    pub client_version: String,
    pub update_available: bool,
    pub os: String,
    pub distro: Option<Distro>,
    /// `None` renders as `""` (external devices).
    pub created: Option<DateTime<Utc>>,
    pub connected: bool,
    /// Rendered only while disconnected; `None` renders as `""`.
    pub last_seen: Option<DateTime<Utc>>,
    pub key_expiry_disabled: bool,
    /// Node-key expiry, kept while expiry is disabled so re-enabling restores it.
    pub expires: Option<DateTime<Utc>>,
    pub authorized: bool,
    pub is_external: bool,
    pub multiple_connections: bool,
    pub machine_key: String,
    pub node_key: String,
    pub blocks_incoming: bool,
    pub advertised_routes: Vec<String>,
    pub enabled_routes: Vec<String>,
    pub endpoints: Vec<String>,
    /// Preferred DERP region and its latency.
    pub derp: (String, f64),
    pub tags: Vec<String>,
    pub tailnet_lock_key: String,
    pub tailnet_lock_error: String,
    pub ssh_enabled: bool,
    pub serial: Option<String>,
    pub is_ephemeral: bool,
}

/// One top-level device field, borrowed where possible so listing 10,000 devices serializes
/// straight from the model without building a JSON tree per device.
pub enum Field<'a> {
    Str(&'a str),
    Bool(bool),
    List(&'a [String]),
    /// A timestamp; `None` renders as `""`.
    Time(Option<DateTime<Utc>>),
    /// Go's zero time (`expires` while key expiry is disabled).
    ZeroTime,
    Connectivity(&'a Device),
    Posture(&'a Option<String>),
    Distro(&'a Distro),
}

impl Field<'_> {
    /// List filters: exact match on scalars, membership on lists; objects never match.
    pub fn matches(&self, want: &str) -> bool {
        match self {
            Field::Str(s) => *s == want,
            Field::Bool(b) => want == if *b { "true" } else { "false" },
            Field::List(items) => items.iter().any(|i| i == want),
            Field::Time(t) => ts_or_empty(*t) == want,
            Field::ZeroTime => want == ZERO_TIME,
            Field::Connectivity(_) | Field::Posture(_) | Field::Distro(_) => false,
        }
    }
}

impl Serialize for Field<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Str(v) => s.serialize_str(v),
            Field::Bool(v) => s.serialize_bool(*v),
            Field::List(v) => v.serialize(s),
            Field::Time(t) => s.serialize_str(&ts_or_empty(*t)),
            Field::ZeroTime => s.serialize_str(ZERO_TIME),
            Field::Connectivity(d) => d.connectivity().serialize(s),
            Field::Posture(serial) => {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(Some(1))?;
                match serial {
                    Some(serial) => map.serialize_entry("serialNumbers", &[serial])?,
                    None => map.serialize_entry("disabled", &true)?,
                }
                map.end()
            }
            Field::Distro(d) => d.serialize(s),
        }
    }
}

/// `clientConnectivity`, serialized without building a JSON tree.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Connectivity<'a> {
    endpoints: &'a [String],
    #[serde(rename = "mappingVariesByDestIP")]
    mapping_varies_by_dest_ip: bool,
    #[serde(serialize_with = "latency_map")]
    latency: [(&'a str, Latency); 2],
    client_supports: ClientSupports,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Latency {
    #[serde(skip_serializing_if = "Option::is_none")]
    preferred: Option<bool>,
    latency_ms: f64,
}

fn latency_map<S: serde::Serializer>(
    entries: &[(&str, Latency); 2],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(entries.iter().map(|(region, l)| (region, l)))
}

/// Nullable booleans (`hairPinning` is `null` when unknown).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientSupports {
    hair_pinning: Option<bool>,
    ipv6: Option<bool>,
    pcp: Option<bool>,
    pmp: Option<bool>,
    udp: Option<bool>,
    upnp: Option<bool>,
}

/// A device rendered with the default field set or all fields (`Serialize`).
pub struct DeviceJson<'a> {
    pub device: &'a Device,
    pub all: bool,
}

impl Serialize for DeviceJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        let mut result = Ok(());
        self.device.visit(self.all, &mut |name, field| {
            if result.is_ok() {
                result = map.serialize_entry(name, &field);
            }
        });
        result?;
        map.end()
    }
}

impl Device {
    /// Calls `f` with every field the API renders, in the API's order: the single source of
    /// truth for field names, the default vs `fields=all` sets, and what is omitted when.
    pub fn visit<'a>(&'a self, all: bool, f: &mut dyn FnMut(&'static str, Field<'a>)) {
        f("addresses", Field::List(&self.addresses));
        f("id", Field::Str(&self.id));
        f("nodeId", Field::Str(&self.node_id));
        f("user", Field::Str(&self.user));
        f("name", Field::Str(&self.name));
        f("hostname", Field::Str(&self.hostname));
        f("clientVersion", Field::Str(&self.client_version));
        f("updateAvailable", Field::Bool(self.update_available));
        f("os", Field::Str(&self.os));
        f("created", Field::Time(self.created));
        f("connectedToControl", Field::Bool(self.connected));
        // The API omits lastSeen while the device is connected to control.
        if !self.connected {
            f("lastSeen", Field::Time(self.last_seen));
        }
        f("keyExpiryDisabled", Field::Bool(self.key_expiry_disabled));
        if self.key_expiry_disabled {
            f("expires", Field::ZeroTime);
        } else {
            f("expires", Field::Time(self.expires));
        }
        f("authorized", Field::Bool(self.authorized));
        f("isExternal", Field::Bool(self.is_external));
        // Present only while several live connections share one node key.
        if self.multiple_connections {
            f("multipleConnections", Field::Bool(true));
        }
        f("machineKey", Field::Str(&self.machine_key));
        f("nodeKey", Field::Str(&self.node_key));
        f(
            "blocksIncomingConnections",
            Field::Bool(self.blocks_incoming),
        );
        if all {
            f("enabledRoutes", Field::List(&self.enabled_routes));
            f("advertisedRoutes", Field::List(&self.advertised_routes));
            f("clientConnectivity", Field::Connectivity(self));
        }
        if !self.tags.is_empty() {
            f("tags", Field::List(&self.tags));
        }
        f("tailnetLockError", Field::Str(&self.tailnet_lock_error));
        f("tailnetLockKey", Field::Str(&self.tailnet_lock_key));
        if all {
            f("sshEnabled", Field::Bool(self.ssh_enabled));
            f("postureIdentity", Field::Posture(&self.serial));
        }
        f("isEphemeral", Field::Bool(self.is_ephemeral));
        if let (true, Some(d)) = (all, &self.distro) {
            f("distro", Field::Distro(d));
        }
    }

    /// The device as the API renders it: the default field set, or everything with `all`.
    pub fn to_json(&self, all: bool) -> Value {
        serde_json::to_value(DeviceJson { device: self, all }).unwrap_or(Value::Null)
    }

    /// Does the (fully rendered) top-level `field` match `want`? Omitted fields never match.
    pub fn filter_matches(&self, field: &str, want: &str) -> bool {
        let mut matched = false;
        self.visit(true, &mut |name, value| {
            if name == field {
                matched = value.matches(want);
            }
        });
        matched
    }

    fn connectivity(&self) -> Connectivity<'_> {
        let (region, latency) = &self.derp;
        let other = if region == "Frankfurt" {
            "London"
        } else {
            "Frankfurt"
        };
        Connectivity {
            endpoints: &self.endpoints,
            mapping_varies_by_dest_ip: false,
            latency: [
                (
                    region.as_str(),
                    Latency {
                        preferred: Some(true),
                        latency_ms: *latency,
                    },
                ),
                (
                    other,
                    Latency {
                        preferred: None,
                        latency_ms: latency + 41.5,
                    },
                ),
            ],
            client_supports: ClientSupports {
                hair_pinning: None,
                ipv6: Some(!self.endpoints.is_empty()),
                pcp: Some(false),
                pmp: Some(false),
                udp: Some(true),
                upnp: Some(false),
            },
        }
    }

    pub fn view(&self) -> DeviceView {
        DeviceView {
            hostname: self.hostname.clone(),
            addresses: self
                .addresses
                .iter()
                .filter_map(|a| a.parse::<IpAddr>().ok())
                .collect(),
            user: self.user.clone(),
            tags: self.tags.clone(),
            role: String::new(),
        }
    }

    pub fn routes_json(&self) -> Value {
        json!({"advertisedRoutes": self.advertised_routes, "enabledRoutes": self.enabled_routes})
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub display_name: String,
    pub login_name: String,
    pub created: DateTime<Utc>,
    /// `member` or `shared`.
    pub user_type: String,
    pub role: String,
    pub status: String,
    pub last_seen: DateTime<Utc>,
    pub currently_connected: bool,
}

impl User {
    pub fn to_json(&self, tailnet_id: &str, device_count: usize) -> Value {
        json!({
            "id": self.id,
            "displayName": self.display_name,
            "loginName": self.login_name,
            "profilePicUrl": "",
            "tailnetId": tailnet_id,
            "created": ts(self.created),
            "type": self.user_type,
            "role": self.role,
            "status": self.status,
            "deviceCount": device_count,
            "lastSeen": ts(self.last_seen),
            "currentlyConnected": self.currently_connected,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Key {
    pub id: String,
    /// `auth`, `client`, `api` or `federated`.
    pub key_type: String,
    pub description: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub revoked: Option<DateTime<Utc>>,
    pub expiry_seconds: Option<i64>,
    /// Auth keys only: `{"devices": {"create": {...}}}`.
    pub capabilities: Option<Value>,
    /// Trust credentials only.
    pub scopes: Vec<String>,
    pub tags: Vec<String>,
    /// Empty when created by a trust credential.
    pub user_id: String,
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub audience: Option<String>,
    pub custom_claim_rules: Option<Value>,
    /// Auth keys: SHA-256 (hex) of the secret, so a joining node can present it.
    pub secret_hash: Option<String>,
    /// A node joined with it (a single-use key is then invalid).
    pub used: bool,
}

impl Key {
    /// A key of `key_type` created `now`, every optional field empty.
    pub fn new(id: String, key_type: &str, now: DateTime<Utc>) -> Key {
        Key {
            id,
            key_type: key_type.to_owned(),
            description: String::new(),
            created: now,
            updated: now,
            expires: None,
            revoked: None,
            expiry_seconds: None,
            capabilities: None,
            scopes: vec![],
            tags: vec![],
            user_id: String::new(),
            issuer: None,
            subject: None,
            audience: None,
            custom_claim_rules: None,
            secret_hash: None,
            used: false,
        }
    }

    pub fn is_invalid(&self, now: DateTime<Utc>) -> bool {
        self.revoked.is_some()
            || self.expires.is_some_and(|e| e <= now)
            || (self.used && !self.create_capability("reusable"))
    }

    /// A boolean of an auth key's `capabilities.devices.create` (false when absent).
    pub fn create_capability(&self, name: &str) -> bool {
        self.capabilities
            .as_ref()
            .and_then(|c| c.pointer(&format!("/devices/create/{name}")))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// An auth key's device tags.
    pub fn create_tags(&self) -> Vec<String> {
        self.capabilities
            .as_ref()
            .and_then(|c| c.pointer("/devices/create/tags"))
            .and_then(Value::as_array)
            .map(|tags| {
                tags.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The key's metadata. The secret is never part of it: only the create response carries it.
    pub fn to_json(&self, now: DateTime<Utc>) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("keyType".into(), json!(self.key_type));
        m.insert("description".into(), json!(self.description));
        if let Some(secs) = self.expiry_seconds {
            m.insert("expirySeconds".into(), json!(secs));
        }
        m.insert("created".into(), json!(ts(self.created)));
        m.insert("updated".into(), json!(ts(self.updated)));
        if let Some(e) = self.expires {
            m.insert("expires".into(), json!(ts(e)));
        }
        if let Some(r) = self.revoked {
            m.insert("revoked".into(), json!(ts(r)));
        }
        if let Some(c) = &self.capabilities {
            m.insert("capabilities".into(), c.clone());
        }
        if self.key_type != "auth" {
            m.insert("scopes".into(), json!(self.scopes));
            m.insert("tags".into(), json!(self.tags));
        }
        m.insert("invalid".into(), json!(self.is_invalid(now)));
        m.insert("userId".into(), json!(self.user_id));
        for (field, value) in [
            ("issuer", &self.issuer),
            ("subject", &self.subject),
            ("audience", &self.audience),
        ] {
            if let Some(v) = value {
                m.insert(field.into(), json!(v));
            }
        }
        if let Some(rules) = &self.custom_claim_rules {
            m.insert("customClaimRules".into(), rules.clone());
        }
        Value::Object(m)
    }
}

#[derive(Debug, Clone)]
pub struct Service {
    /// `svc:<dns-label>`.
    pub name: String,
    /// `[IPv4, IPv6]`.
    pub addrs: Vec<String>,
    pub comment: String,
    pub ports: Vec<String>,
    pub tags: Vec<String>,
    /// Carried by the `/vip-services` flavour of the API (ownership annotations).
    pub annotations: Option<Map<String, Value>>,
    /// Node ids of the devices advertising (hosting) the service, in advertisement order.
    pub hosts: Vec<String>,
    /// Manual approvals by node id.
    pub approvals: HashMap<String, bool>,
}

impl Service {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        m.insert("addrs".into(), json!(self.addrs));
        m.insert("comment".into(), json!(self.comment));
        m.insert("ports".into(), json!(self.ports));
        m.insert("tags".into(), json!(self.tags));
        if let Some(a) = &self.annotations {
            m.insert("annotations".into(), Value::Object(a.clone()));
        }
        Value::Object(m)
    }
}

/// Tailnet settings; every field optional because PATCH is partial.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acls_externally_managed_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acls_external_link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices_approval_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices_auto_updates_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices_key_duration_days: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_approval_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_role_allowed_to_join_external_tailnets: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_flow_logging_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regional_routing_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub posture_identity_collection_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_enabled: Option<bool>,
}

impl Settings {
    /// Applies a partial update: only the fields present in `patch` change.
    pub fn apply(&mut self, patch: Settings) -> SimResult<()> {
        if let Some(days) = patch
            .devices_key_duration_days
            .filter(|d| !(1..=180).contains(d))
        {
            return Err(SimError::bad_request(format!(
                "devicesKeyDurationDays must be between 1 and 180, got {days}"
            )));
        }
        let roles = ["none", "admin", "member"];
        if let Some(role) = patch
            .users_role_allowed_to_join_external_tailnets
            .as_ref()
            .filter(|r| !roles.contains(&r.as_str()))
        {
            return Err(SimError::bad_request(format!(
                "usersRoleAllowedToJoinExternalTailnets must be one of none, admin, member; got {role:?}"
            )));
        }
        macro_rules! merge {
            ($($f:ident),*) => { $( if patch.$f.is_some() { self.$f = patch.$f; } )* };
        }
        merge!(
            acls_externally_managed_on,
            acls_external_link,
            devices_approval_on,
            devices_auto_updates_on,
            devices_key_duration_days,
            users_approval_on,
            users_role_allowed_to_join_external_tailnets,
            network_flow_logging_on,
            regional_routing_on,
            posture_identity_collection_on,
            https_enabled
        );
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub endpoint_id: String,
    pub endpoint_url: String,
    pub provider_type: Option<String>,
    pub creator_login_name: String,
    pub created: DateTime<Utc>,
    pub last_modified: DateTime<Utc>,
    pub subscriptions: Vec<String>,
    /// Signs the `Tailscale-Webhook-Signature` header; shown only on create and rotate.
    pub secret: Secret,
}

impl Webhook {
    pub fn to_json(&self, with_secret: bool) -> Value {
        let mut m = Map::new();
        m.insert("endpointId".into(), json!(self.endpoint_id));
        m.insert("endpointUrl".into(), json!(self.endpoint_url));
        // Always present: the spec's Webhook.providerType is "an empty string if none are
        // applicable" (and Tailscale's Go client models that as `""`, not as an omitted field).
        m.insert(
            "providerType".into(),
            json!(self.provider_type.as_deref().unwrap_or_default()),
        );
        m.insert("creatorLoginName".into(), json!(self.creator_login_name));
        m.insert("created".into(), json!(ts(self.created)));
        m.insert("lastModified".into(), json!(ts(self.last_modified)));
        m.insert("subscriptions".into(), json!(self.subscriptions));
        if with_secret {
            m.insert("secret".into(), json!(self.secret.expose()));
        }
        Value::Object(m)
    }
}

/// One DNS resolver of the combined DNS configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DnsResolver {
    pub address: String,
    pub use_with_exit_node: bool,
}

impl DnsResolver {
    pub fn new(address: impl Into<String>) -> DnsResolver {
        DnsResolver {
            address: address.into(),
            use_with_exit_node: false,
        }
    }
}

/// DNS preferences of the combined DNS configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsPreferences {
    #[serde(rename = "overrideLocalDNS")]
    pub override_local_dns: bool,
    #[serde(rename = "magicDNS")]
    pub magic_dns: bool,
}

/// The tailnet's DNS configuration, in the wire shape of `/dns/configuration`. Deserializing
/// reproduces the endpoint's pitfall: an omitted boolean is `false`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsConfig {
    pub nameservers: Vec<DnsResolver>,
    #[serde(rename = "splitDNS", deserialize_with = "split_dns_without_nulls")]
    pub split_dns: BTreeMap<String, Vec<DnsResolver>>,
    #[serde(rename = "searchPaths")]
    pub search_paths: Vec<String>,
    pub preferences: DnsPreferences,
}

/// `splitDNS` values may be `null`, meaning "no resolvers for this domain".
fn split_dns_without_nulls<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<DnsResolver>>, D::Error> {
    let raw: Option<BTreeMap<String, Option<Vec<DnsResolver>>>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(domain, resolvers)| resolvers.map(|r| (domain, r)))
        .collect())
}

/// The policy file as stored: the exact text, its ETag and the parsed/compiled forms.
#[derive(Debug, Clone)]
pub struct PolicyState {
    pub text: String,
    /// Quoted content hash, e.g. `"3f2a..."`.
    pub etag: String,
    pub doc: Value,
    pub compiled: Option<Policy>,
    /// True while the policy is the untouched default (`If-Match: "ts-default"` matches).
    pub is_default: bool,
}

/// The ETag of a policy text: a quoted SHA-256 of the bytes.
pub fn policy_etag(text: &str) -> String {
    use sha2::Digest;
    format!("\"{}\"", hex::encode(sha2::Sha256::digest(text.as_bytes())))
}

/// Deterministic, collision-free address allocation in 100.64.0.0/10 (and a matching IPv6 in
/// fd7a:115c:a1e0::/48): the n-th address is n times an odd constant modulo 2^22, which visits
/// every address once, so 10,000 devices cost 10,000 steps.
#[derive(Debug, Clone, Default)]
pub struct IpAllocator {
    next: u32,
    used: HashSet<u32>,
}

const CGNAT_BASE: u32 = 0x6440_0000; // 100.64.0.0
const CGNAT_SIZE: u32 = 1 << 22;

impl IpAllocator {
    pub fn allocate(&mut self) -> (String, String) {
        loop {
            let offset = self.next.wrapping_mul(2_654_435_761) % CGNAT_SIZE;
            self.next = self.next.wrapping_add(1);
            let ip = CGNAT_BASE + offset;
            let last = ip & 0xff;
            let quad100 = u32::from(Ipv4Addr::new(100, 100, 100, 100));
            if last == 0 || last == 255 || ip == quad100 || self.used.contains(&ip) {
                continue;
            }
            self.used.insert(ip);
            return (Ipv4Addr::from(ip).to_string(), ipv6_for(ip));
        }
    }

    /// Claims a specific IPv4 (service addresses, `POST /device/{id}/ip`).
    pub fn claim(&mut self, ip: Ipv4Addr) -> SimResult<String> {
        let raw = u32::from(ip);
        if raw & !(CGNAT_SIZE - 1) != CGNAT_BASE {
            return Err(SimError::bad_request(format!(
                "address {ip} is not in the tailnet range 100.64.0.0/10"
            )));
        }
        if !self.used.insert(raw) {
            return Err(SimError::bad_request(format!(
                "address {ip} is already in use"
            )));
        }
        Ok(ipv6_for(raw))
    }

    pub fn release(&mut self, ip: &str) {
        if let Ok(v4) = ip.parse::<Ipv4Addr>() {
            self.used.remove(&u32::from(v4));
        }
    }
}

fn ipv6_for(ip: u32) -> String {
    format!("fd7a:115c:a1e0::{:x}:{:x}", ip >> 16, ip & 0xffff)
}

/// The whole tailnet.
#[derive(Debug)]
pub struct State {
    pub tailnet_id: String,
    /// MagicDNS suffix, e.g. `tail1a2b.ts.net`.
    pub dns_suffix: String,
    pub devices: Vec<Device>,
    /// nodeId and legacy id -> index in `devices`.
    index: HashMap<String, usize>,
    pub users: Vec<User>,
    pub keys: Vec<Key>,
    pub policy: PolicyState,
    /// A console edit armed by [`SimTailnet::console_edit_after_next_save`]: saved right after
    /// the next successful `POST /acl`, then cleared (one-shot).
    ///
    /// [`SimTailnet::console_edit_after_next_save`]: super::SimTailnet::console_edit_after_next_save
    pub console_edit_after_next_save: Option<String>,
    /// The configuration audit log (entries as the API renders them).
    pub audit_log: Vec<serde_json::Value>,
    /// Who makes console edits (`None`: the tailnet's owner).
    pub console_actor: Option<super::audit::ConsoleActor>,
    pub dns: DnsConfig,
    pub services: Vec<Service>,
    /// Devices advertising a service that is not defined (yet), by service name: they become
    /// its hosts when it is created, and again when it is deleted.
    pub pending_hosts: HashMap<String, Vec<String>>,
    /// `GET /devices?fields=all` answers 404 while the default fields work (reported for
    /// tailnets with shared-in devices, tailscale#21721).
    pub fields_all_not_found: bool,
    pub settings: Settings,
    pub webhooks: Vec<Webhook>,
    pub ips: IpAllocator,
    /// Random source for ids and secrets; seeded, so a seed gives the same tailnet.
    pub rng: fastrand::Rng,
    /// Login name of the API key's owner (the caller of API-key requests).
    pub api_key_owner: String,
    /// Tags of the OAuth client (what OAuth-derived tokens may apply).
    pub oauth_client_tags: Vec<String>,
    /// JWKS documents of OIDC issuers, by issuer URL, for workload identity federation (the
    /// real API fetches them; tests register them).
    pub trusted_issuers: std::collections::BTreeMap<String, serde_json::Value>,
}

impl State {
    pub fn new(tailnet_id: String, dns_suffix: String, policy: PolicyState, seed: u64) -> State {
        State {
            tailnet_id,
            dns_suffix,
            devices: Vec::new(),
            index: HashMap::new(),
            users: Vec::new(),
            keys: Vec::new(),
            policy,
            console_edit_after_next_save: None,
            audit_log: Vec::new(),
            console_actor: None,
            dns: DnsConfig::default(),
            services: Vec::new(),
            pending_hosts: HashMap::new(),
            fields_all_not_found: false,
            settings: Settings::default(),
            webhooks: Vec::new(),
            ips: IpAllocator::default(),
            rng: fastrand::Rng::with_seed(seed),
            api_key_owner: String::new(),
            oauth_client_tags: Vec::new(),
            trusted_issuers: Default::default(),
        }
    }

    pub fn add_device(&mut self, device: Device) {
        let idx = self.devices.len();
        self.index.insert(device.node_id.clone(), idx);
        self.index.insert(device.id.clone(), idx);
        self.devices.push(device);
    }

    /// Looks a device up by nodeId or legacy numeric id.
    pub fn device_index(&self, id: &str) -> SimResult<usize> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| SimError::not_found("device not found"))
    }

    pub fn device_mut(&mut self, id: &str) -> SimResult<&mut Device> {
        let idx = self.device_index(id)?;
        Ok(&mut self.devices[idx])
    }

    pub fn device(&self, id: &str) -> SimResult<&Device> {
        Ok(&self.devices[self.device_index(id)?])
    }

    pub fn remove_device(&mut self, id: &str) -> SimResult<Device> {
        let idx = self.device_index(id)?;
        let device = self.devices.remove(idx);
        for addr in &device.addresses {
            self.ips.release(addr);
        }
        // Removal shifts later indexes; rebuilding is O(n) per delete, which is fine for the
        // rates a test or demo deletes at, and keeps lookups O(1).
        self.index.clear();
        for (i, d) in self.devices.iter().enumerate() {
            self.index.insert(d.node_id.clone(), i);
            self.index.insert(d.id.clone(), i);
        }
        for service in &mut self.services {
            service.hosts.retain(|h| h != &device.node_id);
        }
        Ok(device)
    }

    pub fn is_hostname_taken(&self, hostname: &str) -> bool {
        self.devices.iter().any(|d| d.hostname == hostname)
    }

    /// Random alphanumeric string (ids, secrets).
    pub fn alnum(&mut self, len: usize) -> String {
        random_alnum(&mut self.rng, len)
    }

    pub fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from_digit(self.rng.u32(0..16), 16).unwrap_or('0'))
            .collect()
    }

    /// What the evaluator needs to run policy tests.
    pub fn tailnet_view(&self) -> TailnetView {
        let roles: HashMap<&str, &str> = self
            .users
            .iter()
            .map(|u| (u.login_name.as_str(), u.role.as_str()))
            .collect();
        TailnetView {
            users: self.users.iter().map(|u| u.login_name.clone()).collect(),
            devices: self
                .devices
                .iter()
                .map(|d| DeviceView {
                    role: roles.get(d.user.as_str()).copied().unwrap_or("").to_owned(),
                    ..d.view()
                })
                .collect(),
            services: self
                .services
                .iter()
                .map(|s| ServiceView {
                    name: s.name.clone(),
                    addresses: s.addrs.iter().filter_map(|a| a.parse().ok()).collect(),
                })
                .collect(),
        }
    }

    pub fn device_counts(&self) -> HashMap<&str, usize> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for d in &self.devices {
            *counts.entry(d.user.as_str()).or_default() += 1;
        }
        counts
    }

    pub fn service_index(&self, name: &str) -> SimResult<usize> {
        self.services
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| SimError::not_found(format!("service {name:?} not found")))
    }
}

pub fn random_alnum(rng: &mut fastrand::Rng, len: usize) -> String {
    (0..len).map(|_| rng.alphanumeric()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        let identity = super::super::seed::Identity::derive(1);
        let state = super::super::seed::build(1, 0, &identity, Utc::now());
        let idx = state.device_index(&state.devices[0].node_id).unwrap();
        state.devices[idx].clone()
    }

    #[test]
    fn default_and_all_field_sets_differ_only_in_the_all_only_fields() {
        let d = device();
        let default = d.to_json(false);
        let all = d.to_json(true);
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        let extra: Vec<String> = keys(&all)
            .into_iter()
            .filter(|k| !default.as_object().unwrap().contains_key(k))
            .collect();
        assert!(extra.contains(&"advertisedRoutes".to_owned()));
        assert!(extra.contains(&"clientConnectivity".to_owned()));
        for k in keys(&all) {
            assert!(
                DEVICE_FIELDS.contains(&k.as_str()),
                "{k} is not a Device schema field"
            );
        }
        let latency = all["clientConnectivity"]["latency"].as_object().unwrap();
        assert_eq!(latency.len(), 2);
        assert_eq!(
            latency.values().filter(|l| l["preferred"] == true).count(),
            1
        );
    }

    #[test]
    fn filters_match_scalars_exactly_and_lists_by_membership() {
        let mut d = device();
        d.tags = vec!["tag:a".into(), "tag:b".into()];
        d.is_ephemeral = true;
        assert!(d.filter_matches("hostname", &d.hostname.clone()));
        assert!(!d.filter_matches("hostname", &d.hostname[..2]));
        assert!(d.filter_matches("isEphemeral", "true"));
        assert!(!d.filter_matches("isEphemeral", "false"));
        assert!(d.filter_matches("tags", "tag:b"));
        assert!(!d.filter_matches("tags", "tag:c"));
        d.connected = true;
        assert!(
            !d.filter_matches("lastSeen", ""),
            "omitted fields never match"
        );
        assert!(!d.filter_matches("clientConnectivity", ""));
    }

    #[test]
    fn ip_allocation_never_repeats_and_claims_conflict() {
        let mut ips = IpAllocator::default();
        let mut seen = HashSet::new();
        for _ in 0..20_000 {
            let (v4, v6) = ips.allocate();
            assert!(v4.starts_with("100."));
            assert!(seen.insert(v4));
            assert!(seen.insert(v6));
        }
        let taken: Ipv4Addr = seen
            .iter()
            .find(|a| !a.contains(':'))
            .unwrap()
            .parse()
            .unwrap();
        assert!(ips.claim(taken).is_err());
        assert!(ips.claim(Ipv4Addr::new(10, 0, 0, 1)).is_err());
        ips.release(&taken.to_string());
        assert!(ips.claim(taken).is_ok());
    }
}
