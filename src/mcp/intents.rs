//! Intent-level proposals: what a person asks ("make alice-mbp an exit node", "expose grafana
//! for two hours") turned into the right [`ChangeRequest`] over the operator's kinds:
//! - devices: a new `DeviceTagSet` scoped to the named devices (tags, authorization, key
//!   expiry, routes, exit node);
//! - DNS: a patch of the tailnet's `DNSConfig` (or a new one when there is none);
//! - policy: a grant added to the `TailnetPolicy` that owns it (the Fragment defining a source
//!   group, else the Base), its text edited with comments kept; a rollback to a kept revision
//!   (the break-glass annotation);
//! - services, keys, Funnel: a new `TailscaleService`, `KeyRotationPolicy` or `FunnelExposure`
//!   (with `expiresAt`), access added to a service, a rotation now.
//!
//! Builders of new objects are pure; the ones that change an existing resource read it through
//! the [`Backend`] first. Every proposal is then validated and reviewed like any other: nothing
//! here writes to the tailnet.
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::backend::*;
use crate::policy::compose::{Contribution, PolicySource, compose};
use crate::resources::common::{ROLLBACK_TO_ANNOTATION, parse_duration};
use crate::resources::key_rotation_policy::ROTATE_NOW_ANNOTATION;

const API_VERSION: &str = "tailnet.ops.dev/v1alpha1";
/// Label on every object an intent tool creates, so a reviewer sees where it came from.
pub const CREATED_BY: (&str, &str) = ("app.kubernetes.io/created-by", "tailnet-operator-mcp");

/// What every intent tool may add.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Common {
    /// The `ManagedTailnet` (default: the one the resources use).
    #[serde(default)]
    pub tailnet: Option<String>,
    /// Why, for the human reviewer (default: a sentence saying what the proposal does).
    #[serde(default)]
    pub summary: Option<String>,
}

/// Devices named for a `DeviceTagSet`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Devices {
    /// Machine names (hostnames), e.g. `alice-mbp`; globs such as `web-*` are allowed.
    pub devices: Vec<String>,
    /// Name of the DeviceTagSet to create (default: from the intent and the first device).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagDevices {
    #[serde(flatten)]
    pub devices: Devices,
    /// Tags, e.g. `tag:server`; each must be in the policy's `tagOwners`.
    pub tags: Vec<String>,
    /// `true`: the devices get exactly these tags, others are removed (how to untag: list the
    /// tags to keep). `false` (default): the tags are added.
    #[serde(default)]
    pub exact: bool,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizeDevices {
    #[serde(flatten)]
    pub devices: Devices,
    /// `true` (default) authorizes, `false` de-authorizes.
    #[serde(default = "yes")]
    pub authorized: bool,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceKeyExpiry {
    #[serde(flatten)]
    pub devices: Devices,
    /// `true` disables node-key expiry (servers), `false` re-enables it.
    pub key_expiry_disabled: bool,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubnetRoutes {
    #[serde(flatten)]
    pub devices: Devices,
    /// CIDR prefixes the devices advertise, to be enabled, e.g. `10.0.0.0/24`.
    pub routes: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The tailnet's DNS, changed.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsChange {
    /// Global nameservers to add (IPs or DoH URLs), appended in order.
    #[serde(default)]
    pub add_nameservers: Vec<String>,
    #[serde(default)]
    pub remove_nameservers: Vec<String>,
    /// Split DNS: domain → resolvers; an empty list removes the domain.
    #[serde(default)]
    pub split_dns: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub add_search_paths: Vec<String>,
    #[serde(default)]
    pub remove_search_paths: Vec<String>,
    /// MagicDNS on or off.
    #[serde(default)]
    pub magic_dns: Option<bool>,
    #[serde(flatten)]
    pub common: Common,
}

/// Access granted by a policy grant.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantAccess {
    /// Who: users, `group:`, `tag:`, `autogroup:` principals.
    pub src: Vec<String>,
    /// To what: `tag:`, `group:`, hosts, `svc:` services, CIDRs.
    pub dst: Vec<String>,
    /// Protocols and ports, e.g. `tcp:443`, `tcp:22`, `*`.
    pub ip: Vec<String>,
    /// The TailnetPolicy to add it to (default: the Fragment defining a `group:` of `src`,
    /// else the tailnet's Base).
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackPolicy {
    /// The kept revision to pin the tailnet's policy to (`status.history` of the Base lists
    /// them); remove the annotation later to return to the composed policy.
    pub revision: u64,
    /// The Base TailnetPolicy (default: the tailnet's Base).
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishService {
    /// The TailscaleService's name (the service is `svc:<name>`).
    pub name: String,
    pub namespace: String,
    /// TCP ports served, e.g. `tcp:443`.
    pub ports: Vec<String>,
    /// Machine names (globs allowed) of the devices allowed to host it.
    pub hosts: Vec<String>,
    /// The service's tags, e.g. `tag:web`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Who may reach it (a grant to the service in the policy).
    #[serde(default)]
    pub access_from: Vec<String>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccess {
    /// The TailscaleService.
    pub name: String,
    pub namespace: String,
    /// Principals to add to `accessFrom`.
    pub access_from: Vec<String>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateKeyRotation {
    pub name: String,
    pub namespace: String,
    /// Tags of the devices registered with the key (or of the OAuth client).
    pub tags: Vec<String>,
    /// `auth` (default) or `oauthClient`.
    #[serde(default)]
    pub key_type: Option<String>,
    /// How long a key lives, e.g. `720h`.
    #[serde(default)]
    pub expiry: Option<String>,
    #[serde(default)]
    pub reusable: bool,
    #[serde(default)]
    pub ephemeral: bool,
    #[serde(default)]
    pub preauthorized: bool,
    /// OAuth clients: scopes, e.g. `devices:core`.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotateKeyNow {
    /// The KeyRotationPolicy.
    pub name: String,
    pub namespace: String,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExposePublicly {
    /// The Service (in `namespace`) to put on the internet.
    pub service: String,
    pub namespace: String,
    /// The Service port traffic goes to.
    pub port: u16,
    /// How long, e.g. `2h` or `30m`: the exposure ends then (`expiresAt`).
    pub duration: String,
    /// The proxy's machine name, so the URL is `https://<hostname>.<tailnet>.ts.net`
    /// (default: the service's name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// 443 (default), 8443 or 10000.
    #[serde(default)]
    pub public_port: Option<u16>,
    /// Name of the FunnelExposure (default: the hostname).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteResource {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub summary: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateResource {
    /// Kind, e.g. `DeviceTagSet`.
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    /// The object's `spec`.
    pub spec: Value,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub summary: String,
}

/// Why an intent could not be turned into a proposal.
fn invalid(message: impl Into<String>) -> BackendError {
    BackendError::Invalid(message.into())
}

/// A new object of `kind`, labelled as created through MCP.
fn object(kind: &str, name: &str, namespace: Option<&str>, spec: Map<String, Value>) -> Value {
    let mut metadata = json!({"name": name, "labels": {CREATED_BY.0: CREATED_BY.1}});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec})
}

fn create(
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    mut spec: Map<String, Value>,
    common: &Common,
    default_summary: String,
) -> ChangeRequest {
    if let Some(tailnet) = &common.tailnet {
        spec.insert("tailnetRef".into(), json!(tailnet));
    }
    ChangeRequest {
        operation: ProposalOperation::Create,
        kind: kind.to_owned(),
        name: name.to_owned(),
        namespace: namespace.map(str::to_owned),
        patch: None,
        object: Some(object(kind, name, namespace, spec)),
        summary: common.summary.clone().unwrap_or(default_summary),
    }
}

fn patch(
    key: ResourceKey,
    patch: Value,
    common: &Common,
    default_summary: String,
) -> ChangeRequest {
    ChangeRequest {
        operation: ProposalOperation::Patch,
        kind: key.kind,
        name: key.name,
        namespace: key.namespace,
        patch: Some(patch),
        object: None,
        summary: common.summary.clone().unwrap_or(default_summary),
    }
}

/// A DNS label from `text` (lower case, `[a-z0-9-]`, at most 40 characters).
fn label(text: &str) -> String {
    let mut out: String = text
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out.truncate(40);
    out.trim_matches('-').to_owned()
}

fn as_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A DeviceTagSet for `devices` with `fields`, named `mcp-<intent>-<first device>`.
fn device_set(
    intent: &str,
    devices: &Devices,
    fields: Value,
    what: &str,
) -> Result<ChangeRequest, BackendError> {
    let first = devices
        .devices
        .first()
        .ok_or_else(|| invalid("devices: name at least one device (its machine name)"))?;
    let name = devices
        .name
        .clone()
        .unwrap_or_else(|| format!("mcp-{intent}-{}", label(first)));
    let mut spec = as_map(json!({"selector": {"hostnames": devices.devices}}));
    spec.extend(as_map(fields));
    let summary = format!("{what} on {}", devices.devices.join(", "));
    Ok(create(
        "DeviceTagSet",
        &name,
        None,
        spec,
        &devices.common,
        summary,
    ))
}

pub fn tag_devices(args: &TagDevices) -> Result<ChangeRequest, BackendError> {
    if args.tags.is_empty() && !args.exact {
        return Err(invalid(
            "tags: name at least one tag (or exact: true with [] to remove all)",
        ));
    }
    let mode = if args.exact { "Exact" } else { "Add" };
    let what = format!("Tags {} ({mode})", args.tags.join(", "));
    device_set(
        "tags",
        &args.devices,
        json!({"tags": args.tags, "mode": mode}),
        &what,
    )
}

pub fn authorize_devices(args: &AuthorizeDevices) -> Result<ChangeRequest, BackendError> {
    let what = if args.authorized {
        "Authorize"
    } else {
        "De-authorize"
    };
    device_set(
        "authorize",
        &args.devices,
        json!({"authorized": args.authorized}),
        what,
    )
}

pub fn set_key_expiry(args: &DeviceKeyExpiry) -> Result<ChangeRequest, BackendError> {
    let what = if args.key_expiry_disabled {
        "Disable node-key expiry"
    } else {
        "Re-enable node-key expiry"
    };
    let fields = json!({"keyExpiryDisabled": args.key_expiry_disabled});
    device_set("key-expiry", &args.devices, fields, what)
}

pub fn enable_routes(args: &SubnetRoutes) -> Result<ChangeRequest, BackendError> {
    if args.routes.is_empty() {
        return Err(invalid(
            "routes: name at least one CIDR prefix, e.g. 10.0.0.0/24",
        ));
    }
    let what = format!("Enable subnet routes {}", args.routes.join(", "));
    device_set(
        "routes",
        &args.devices,
        json!({"routes": args.routes}),
        &what,
    )
}

pub fn make_exit_node(args: &Devices) -> Result<ChangeRequest, BackendError> {
    let fields = json!({"routes": ["0.0.0.0/0", "::/0"]});
    device_set(
        "exit-node",
        args,
        fields,
        "Make an exit node (0.0.0.0/0 and ::/0 enabled)",
    )
}

/// A FunnelExposure of the Service from now until `now + duration`.
pub fn expose_publicly(
    args: &ExposePublicly,
    now: DateTime<Utc>,
) -> Result<ChangeRequest, BackendError> {
    let duration = parse_duration(&args.duration)
        .map_err(|e| invalid(format!("duration {:?}: {e}; e.g. 2h or 30m", args.duration)))?;
    let duration = chrono::Duration::from_std(duration)
        .map_err(|_| invalid(format!("duration {:?} is too long", args.duration)))?;
    let expires = (now + duration).to_rfc3339_opts(SecondsFormat::Secs, true);
    let hostname = args
        .hostname
        .clone()
        .unwrap_or_else(|| label(&args.service));
    let name = args.name.clone().unwrap_or_else(|| hostname.clone());
    let mut spec = as_map(json!({
        "service": {"name": args.service, "port": args.port},
        "hostname": hostname,
        "expiresAt": expires,
    }));
    if let Some(port) = args.public_port {
        spec.insert("publicPort".into(), json!(port));
    }
    let summary = format!(
        "Expose Service {}/{} port {} on the public internet until {expires} ({})",
        args.namespace, args.service, args.port, args.duration
    );
    Ok(create(
        "FunnelExposure",
        &name,
        Some(&args.namespace),
        spec,
        &args.common,
        summary,
    ))
}

pub fn publish_service(args: &PublishService) -> ChangeRequest {
    let mut spec = as_map(json!({
        "ports": args.ports,
        "hosts": {"hostnames": args.hosts},
    }));
    if !args.tags.is_empty() {
        spec.insert("tags".into(), json!(args.tags));
    }
    if !args.access_from.is_empty() {
        spec.insert("accessFrom".into(), json!(args.access_from));
    }
    let summary = format!(
        "Publish svc:{} on {} served by {}",
        args.name,
        args.ports.join(", "),
        args.hosts.join(", ")
    );
    create(
        "TailscaleService",
        &args.name,
        Some(&args.namespace),
        spec,
        &args.common,
        summary,
    )
}

pub fn create_key_rotation(args: &CreateKeyRotation) -> ChangeRequest {
    let mut spec = as_map(json!({"tags": args.tags}));
    for (field, value) in [
        ("keyType", args.key_type.as_ref().map(|v| json!(v))),
        ("expiry", args.expiry.as_ref().map(|v| json!(v))),
        ("reusable", args.reusable.then_some(json!(true))),
        ("ephemeral", args.ephemeral.then_some(json!(true))),
        ("preauthorized", args.preauthorized.then_some(json!(true))),
        (
            "scopes",
            (!args.scopes.is_empty()).then(|| json!(args.scopes)),
        ),
    ] {
        if let Some(value) = value {
            spec.insert(field.into(), value);
        }
    }
    let summary = format!(
        "Keep a rotated {} for {} in Secret {}/{}",
        args.key_type.as_deref().unwrap_or("auth key"),
        args.tags.join(", "),
        args.namespace,
        args.name
    );
    create(
        "KeyRotationPolicy",
        &args.name,
        Some(&args.namespace),
        spec,
        &args.common,
        summary,
    )
}

pub fn rotate_key_now(args: &RotateKeyNow, now: DateTime<Utc>) -> ChangeRequest {
    let key = ResourceKey {
        kind: "KeyRotationPolicy".into(),
        name: args.name.clone(),
        namespace: Some(args.namespace.clone()),
    };
    // A new value asks for one rotation; the time says when it was asked.
    let stamp = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let body = json!({"metadata": {"annotations": {ROTATE_NOW_ANNOTATION: stamp}}});
    let summary = format!(
        "Rotate the credential of {}/{} now (e.g. after a leak)",
        args.namespace, args.name
    );
    patch(key, body, &args.common, summary)
}

pub fn delete_resource(args: &DeleteResource) -> ChangeRequest {
    ChangeRequest {
        operation: ProposalOperation::Delete,
        kind: args.kind.clone(),
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        patch: None,
        object: None,
        summary: args.summary.clone(),
    }
}

pub fn create_resource(args: &CreateResource) -> ChangeRequest {
    let mut object = object(
        &args.kind,
        &args.name,
        args.namespace.as_deref(),
        as_map(args.spec.clone()),
    );
    for (k, v) in &args.labels {
        object["metadata"]["labels"][k] = json!(v);
    }
    ChangeRequest {
        operation: ProposalOperation::Create,
        kind: args.kind.clone(),
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        patch: None,
        object: Some(object),
        summary: args.summary.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Intents on existing resources: read, then patch.

/// The resources of `kind` in `tailnet` (every one when `tailnet` is `None`), in full.
async fn resources_of(
    backend: &dyn Backend,
    kind: &str,
    tailnet: Option<&str>,
) -> Result<Vec<ResourceDetail>, BackendError> {
    let list = backend
        .list_resources(ResourceQuery {
            kind: Some(kind.to_owned()),
        })
        .await?;
    let mut out = Vec::new();
    for summary in list.resources {
        let in_tailnet = tailnet.is_none_or(|t| {
            summary
                .tailnet
                .as_deref()
                .unwrap_or(crate::resources::common::DEFAULT_TAILNET_REF)
                == t
        });
        if in_tailnet {
            out.push(
                backend
                    .get_resource(ResourceKey {
                        kind: summary.kind.clone(),
                        name: summary.name.clone(),
                        namespace: summary.namespace.clone(),
                    })
                    .await?,
            );
        }
    }
    Ok(out)
}

fn key_of(detail: &ResourceDetail) -> ResourceKey {
    ResourceKey {
        kind: detail.summary.kind.clone(),
        name: detail.summary.name.clone(),
        namespace: detail.summary.namespace.clone(),
    }
}

/// The tailnet's DNSConfig patched (or a new one with just these settings).
pub async fn change_dns(
    backend: &dyn Backend,
    args: &DnsChange,
) -> Result<ChangeRequest, BackendError> {
    let configs = resources_of(backend, "DNSConfig", args.common.tailnet.as_deref()).await?;
    // Without a DNSConfig, the changes start from the tailnet's DNS as it is.
    let current = match configs.first() {
        Some(config) => config.spec.clone(),
        None => live_dns(backend, args.common.tailnet.clone()).await?,
    };
    let mut spec = Map::new();
    let mut said = Vec::new();
    if !args.add_nameservers.is_empty() || !args.remove_nameservers.is_empty() {
        let mut servers: Vec<Value> = current["nameservers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        servers.retain(|s| {
            !args
                .remove_nameservers
                .iter()
                .any(|r| s["address"] == json!(r))
        });
        for add in &args.add_nameservers {
            if !servers.iter().any(|s| s["address"] == json!(add)) {
                servers.push(json!({"address": add}));
            }
        }
        spec.insert("nameservers".into(), Value::Array(servers));
        said.push("nameservers");
    }
    if !args.split_dns.is_empty() {
        let mut split = current["splitDNS"].as_object().cloned().unwrap_or_default();
        for (domain, resolvers) in &args.split_dns {
            if resolvers.is_empty() {
                split.remove(domain);
            } else {
                let servers: Vec<Value> = resolvers.iter().map(|r| json!({"address": r})).collect();
                split.insert(domain.clone(), Value::Array(servers));
            }
        }
        spec.insert("splitDNS".into(), Value::Object(split));
        said.push("split DNS");
    }
    if !args.add_search_paths.is_empty() || !args.remove_search_paths.is_empty() {
        let mut paths: Vec<Value> = current["searchPaths"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        paths.retain(|p| !args.remove_search_paths.iter().any(|r| p == &json!(r)));
        for add in &args.add_search_paths {
            if !paths.contains(&json!(add)) {
                paths.push(json!(add));
            }
        }
        spec.insert("searchPaths".into(), Value::Array(paths));
        said.push("search paths");
    }
    if let Some(on) = args.magic_dns {
        spec.insert("magicDNS".into(), json!(on));
        said.push(if on { "MagicDNS on" } else { "MagicDNS off" });
    }
    if spec.is_empty() {
        return Err(invalid(
            "nothing to change: give addNameservers, removeNameservers, splitDns, addSearchPaths, removeSearchPaths or magicDns",
        ));
    }
    let summary = format!("Change the tailnet's DNS: {}", said.join(", "));
    Ok(match configs.first() {
        Some(config) => patch(key_of(config), json!({"spec": spec}), &args.common, summary),
        None => {
            let name = args
                .common
                .tailnet
                .clone()
                .unwrap_or_else(|| "default".into());
            create("DNSConfig", &name, None, spec, &args.common, summary)
        }
    })
}

/// The tailnet's DNS as a DNSConfig spec (from the network report's read).
async fn live_dns(backend: &dyn Backend, tailnet: Option<String>) -> Result<Value, BackendError> {
    let dns = backend.network_report(TailnetQuery { tailnet }).await?.dns;
    let resolvers = |list: &[String]| -> Vec<Value> {
        list.iter()
            .map(|address| json!({"address": address}))
            .collect()
    };
    let split: Map<String, Value> = dns
        .split_dns
        .iter()
        .map(|(domain, list)| (domain.clone(), Value::Array(resolvers(list))))
        .collect();
    Ok(json!({
        "nameservers": resolvers(&dns.nameservers),
        "splitDNS": split,
        "searchPaths": dns.search_paths,
        "magicDNS": dns.magic_dns,
    }))
}

/// The TailnetPolicy a grant belongs in: the one named, else the Fragment defining a `group:`
/// of `src`, else the tailnet's Base.
fn owner<'a>(
    policies: &'a [ResourceDetail],
    named: Option<&str>,
    src: &[String],
) -> Result<&'a ResourceDetail, BackendError> {
    if let Some(name) = named {
        return policies
            .iter()
            .find(|p| p.summary.name == name)
            .ok_or_else(|| BackendError::NotFound(format!("TailnetPolicy/{name}")));
    }
    let defines = |p: &&ResourceDetail, group: &str| {
        p.spec["policy"]
            .as_str()
            .and_then(|text| crate::policy::hujson::parse_strict(text).ok())
            .is_some_and(|doc| doc["groups"].get(group).is_some())
    };
    let fragment = policies.iter().find(|p| {
        p.spec["role"] == "Fragment" && src.iter().any(|s| s.starts_with("group:") && defines(p, s))
    });
    match fragment {
        Some(fragment) => Ok(fragment),
        None => the_base(policies),
    }
}

/// The one Base among `policies`: with several tailnets and none named, which one is meant
/// is the person's to say.
fn the_base(policies: &[ResourceDetail]) -> Result<&ResourceDetail, BackendError> {
    let bases: Vec<&ResourceDetail> = policies
        .iter()
        .filter(|p| p.spec["role"] == "Base")
        .collect();
    match bases.as_slice() {
        [one] => Ok(one),
        [] => Err(invalid("the tailnet has no Base TailnetPolicy")),
        several => {
            let tailnets: Vec<String> = several
                .iter()
                .map(|p| {
                    p.summary
                        .tailnet
                        .clone()
                        .unwrap_or_else(|| "default".into())
                })
                .collect();
            Err(invalid(format!(
                "several tailnets have a Base ({}): say which with `tailnet`",
                tailnets.join(", ")
            )))
        }
    }
}

/// A grant added to the right TailnetPolicy's text, comments kept (spliced in as a composed
/// entry would be).
pub async fn grant_access(
    backend: &dyn Backend,
    args: &GrantAccess,
) -> Result<ChangeRequest, BackendError> {
    if args.src.is_empty() || args.dst.is_empty() || args.ip.is_empty() {
        return Err(invalid("src, dst and ip each need at least one entry"));
    }
    let policies = resources_of(backend, "TailnetPolicy", args.common.tailnet.as_deref()).await?;
    let target = owner(&policies, args.policy.as_deref(), &args.src)?;
    let key = key_of(target);
    let text = target.spec["policy"].as_str().ok_or_else(|| {
        invalid(format!(
            "{} reads its text from a ConfigMap (policyFrom): edit that ConfigMap instead",
            key.label()
        ))
    })?;
    let grant = json!({"src": args.src, "dst": args.dst, "ip": args.ip});
    let source = PolicySource {
        name: key.label(),
        generation: None,
        text: text.to_owned(),
    };
    // The composer heads the entry with `// from <source>`: say what it is for the reader.
    let contribution = Contribution {
        source: format!(
            "an MCP proposal: {} -> {} {}",
            args.src.join(", "),
            args.dst.join(", "),
            args.ip.join(", ")
        ),
        section: "grants".into(),
        value: grant,
    };
    let composed = compose(&source, &[], &[contribution])
        .map_err(|e| invalid(format!("{}: {e}", key.label())))?;
    if let Some(rejected) = composed.rejected.first() {
        return Err(invalid(format!(
            "the grant does not fit {}: {}",
            key.label(),
            rejected.error
        )));
    }
    let summary = format!(
        "Grant {} access to {} on {} (in {})",
        args.src.join(", "),
        args.dst.join(", "),
        args.ip.join(", "),
        key.label()
    );
    Ok(patch(
        key,
        json!({"spec": {"policy": composed.text}}),
        &args.common,
        summary,
    ))
}

/// The break-glass annotation on the tailnet's Base: the tailnet is pinned to a kept revision.
pub async fn rollback_policy(
    backend: &dyn Backend,
    args: &RollbackPolicy,
) -> Result<ChangeRequest, BackendError> {
    let policies = resources_of(backend, "TailnetPolicy", args.common.tailnet.as_deref()).await?;
    let base = match &args.policy {
        Some(name) => policies
            .iter()
            .find(|p| &p.summary.name == name)
            .ok_or_else(|| BackendError::NotFound(format!("TailnetPolicy/{name}")))?,
        None => the_base(&policies)?,
    };
    let body =
        json!({"metadata": {"annotations": {ROLLBACK_TO_ANNOTATION: args.revision.to_string()}}});
    let summary = format!(
        "Roll the tailnet's policy back to revision {} (break-glass; remove the annotation to return)",
        args.revision
    );
    Ok(patch(key_of(base), body, &args.common, summary))
}

/// Principals added to a TailscaleService's `accessFrom`.
pub async fn grant_service_access(
    backend: &dyn Backend,
    args: &ServiceAccess,
) -> Result<ChangeRequest, BackendError> {
    let key = ResourceKey {
        kind: "TailscaleService".into(),
        name: args.name.clone(),
        namespace: Some(args.namespace.clone()),
    };
    let service = backend.get_resource(key.clone()).await?;
    let mut access: Vec<Value> = service.spec["accessFrom"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for who in &args.access_from {
        if !access.contains(&json!(who)) {
            access.push(json!(who));
        }
    }
    let summary = format!(
        "Let {} reach svc:{}",
        args.access_from.join(", "),
        args.name
    );
    Ok(patch(
        key,
        json!({"spec": {"accessFrom": access}}),
        &args.common,
        summary,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(names: &[&str]) -> Devices {
        Devices {
            devices: names.iter().map(|n| (*n).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn an_exit_node_is_a_device_set_enabling_the_default_routes_on_the_named_device() {
        let request = make_exit_node(&devices(&["alice-mbp"])).unwrap();
        assert_eq!(request.operation, ProposalOperation::Create);
        assert_eq!(request.name, "mcp-exit-node-alice-mbp");
        let object = request.object.unwrap();
        assert_eq!(object["kind"], "DeviceTagSet");
        assert_eq!(
            object["spec"]["selector"]["hostnames"],
            json!(["alice-mbp"])
        );
        assert_eq!(object["spec"]["routes"], json!(["0.0.0.0/0", "::/0"]));
        assert_eq!(object["metadata"]["labels"][CREATED_BY.0], CREATED_BY.1);
        assert!(make_exit_node(&devices(&[])).is_err(), "no device, no set");
    }

    fn policy(name: &str, role: &str, tailnet: &str, text: &str) -> ResourceDetail {
        ResourceDetail {
            summary: ResourceSummary {
                kind: "TailnetPolicy".into(),
                name: name.into(),
                tailnet: Some(tailnet.into()),
                ..Default::default()
            },
            spec: json!({"role": role, "policy": text}),
            ..Default::default()
        }
    }

    #[test]
    fn a_grant_goes_to_the_fragment_defining_its_group_else_the_one_base() {
        let policies = vec![
            policy("base", "Base", "home", "{}"),
            policy(
                "data",
                "Fragment",
                "home",
                r#"{"groups": {"group:data": []}}"#,
            ),
        ];
        let src = |s: &str| vec![s.to_owned()];
        assert_eq!(
            owner(&policies, None, &src("group:data"))
                .unwrap()
                .summary
                .name,
            "data"
        );
        assert_eq!(
            owner(&policies, None, &src("group:eng"))
                .unwrap()
                .summary
                .name,
            "base"
        );
        assert_eq!(
            owner(&policies, Some("data"), &src("tag:x"))
                .unwrap()
                .summary
                .name,
            "data"
        );
        let mut two = policies.clone();
        two.push(policy("lab-base", "Base", "lab", "{}"));
        let err = owner(&two, None, &src("group:eng"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("home, lab") && err.contains("`tailnet`"),
            "{err}"
        );
    }

    #[test]
    fn an_exposure_ends_after_its_duration() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let args = ExposePublicly {
            service: "grafana".into(),
            namespace: "monitoring".into(),
            port: 3000,
            duration: "2h".into(),
            hostname: None,
            public_port: None,
            name: None,
            common: Common::default(),
        };
        let request = expose_publicly(&args, now).unwrap();
        let object = request.object.unwrap();
        assert_eq!(object["spec"]["expiresAt"], "2026-12-06T12:00:00Z");
        assert_eq!(object["spec"]["hostname"], "grafana");
        assert_eq!(object["metadata"]["namespace"], "monitoring");
        let bad = ExposePublicly {
            duration: "two hours".into(),
            ..args
        };
        assert!(
            expose_publicly(&bad, now)
                .unwrap_err()
                .to_string()
                .contains("duration")
        );
    }
}
