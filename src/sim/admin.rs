//! Out-of-band operations: "console edits" (what a human does in the admin console, creating
//! drift the operator must notice) and the sim's own controls, as Rust methods and as HTTP
//! routes under `/sim/` (need the API key; never counted as API calls, never faulted).
//!
//! | Method and path | Body | Effect |
//! |---|---|---|
//! | `GET /sim/info` | | `{tailnetId, dnsSuffix, devices, policyEtag}` |
//! | `GET /sim/calls` | | `{total, calls: {"METHOD /api/v2/...": n}}` |
//! | `POST /sim/calls/reset` | | zero the counter |
//! | `GET /sim/faults` | | active rules |
//! | `PUT /sim/faults` | a [`FaultRule`] or an array of them | add/replace rules |
//! | `DELETE /sim/faults` | | clear all rules |
//! | `GET /sim/exchanges` | | recorded exchanges |
//! | `DELETE /sim/exchanges` | | clear the log |
//! | `PUT /sim/exchanges/recording` | `{"enabled": bool}` | turn recording on/off |
//! | `POST /sim/console/policy` | HuJSON text | set the policy (validated, tests run), `{etag}` |
//! | `POST /sim/console/policy-after-next-save` | HuJSON text | one-shot: set the policy right after the next successful `POST /acl`, `{}` |
//! | `POST /sim/console/dns` | DNS configuration JSON | replace DNS |
//! | `POST /sim/console/devices` | [`NewDevice`] JSON | register a device, `{nodeId}` |
//! | `DELETE /sim/console/devices/{deviceId}` | | remove a device |
//! | `POST /sim/console/devices/{deviceId}/tags` | `{"tags": [...]}` | set tags |
//! | `POST /sim/console/devices/{deviceId}/routes` | `{"routes": [...]}` | set enabled routes |
//! | `POST /sim/console/devices/{deviceId}/advertised-routes` | `{"routes": [...]}` | what the device advertises (auto-approvers apply) |
//! | `POST /sim/console/devices/{deviceId}/authorized` | `{"authorized": bool}` | (de)authorize |
//! | `POST /sim/console/devices/{deviceId}/connected` | `{"connected": bool}` | device goes on/offline |
//! | `POST /sim/console/services/{serviceName}/hosts` | `{"nodeId": "..."}` | device starts hosting the service (kept until the service is created, if it is not defined yet) |
//! | `POST /sim/console/expire-tokens` | | every OAuth access token expires |
//! | `POST /sim/nodes/join` | `{"authKey": "...", "hostname": "..."}` | a node joins with an auth key (`tailscaled --authkey`): valid keys only, single-use keys consumed, the key's tags, authorized when pre-authorized |
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use chrono::Duration;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::authenticate_admin;
use super::devices::check_routes;
use super::dns::check_config;
use super::error::{SimError, SimResult, parse_json};
use super::faults::FaultRule;
use super::policy::{check_policy, check_tags, parse_prefix, prefix_contains, store_policy};
use super::seed::LATEST_CLIENT;
use super::state::{Device, DnsConfig, State as Tailnet};
use super::{SimTailnet, now};

/// A device registering out of band (someone ran `tailscale up`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NewDevice {
    pub hostname: String,
    /// `linux`, `macOS`, `windows`, `iOS`, `android`, ...; default `linux`.
    pub os: String,
    /// Login name of the registering user; default the tailnet owner.
    pub user: String,
    pub tags: Vec<String>,
    pub advertised_routes: Vec<String>,
    /// Default: authorized unless the tailnet requires device approval.
    pub authorized: Option<bool>,
    pub ephemeral: bool,
}

fn strings<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items.into_iter().map(Into::into).collect()
}

impl SimTailnet {
    /// Saves a policy as the console editor does: parsed, checked, tests run, stored byte for
    /// byte (an empty text restores the default). Returns the new ETag.
    pub fn console_set_policy(&self, hujson: &str) -> Result<String, SimError> {
        let mut state = self.inner.state();
        store_policy(&mut state, hujson)?;
        let etag = state.policy.etag.clone();
        drop(state);
        self.audit_console(self.tailnet_target(), "ACL", "UPDATE");
        self.emit(
            "policyUpdate",
            "Tailnet policy file updated",
            json!({"actor": "console"}),
        );
        Ok(etag)
    }

    /// Arms a one-shot console edit: the next successful `POST /acl` is immediately followed by
    /// a console save of `hujson` (as [`console_set_policy`](Self::console_set_policy) does, so
    /// the ETag changes), as if a person saved in the admin console right after the operator's
    /// write. A read-back after that write sees this text, not the posted one. The text is
    /// checked now (parsed, sanity-checked, tests run against the current tailnet); arming again
    /// replaces a pending edit.
    pub fn console_edit_after_next_save(&self, hujson: impl Into<String>) -> Result<(), SimError> {
        let hujson = hujson.into();
        let mut state = self.inner.state();
        check_policy(&state, &hujson)?;
        state.console_edit_after_next_save = Some(hujson);
        Ok(())
    }

    /// Replaces a device's tags (each must be defined in `tagOwners`).
    pub fn console_set_device_tags<I, S>(&self, node_id: &str, tags: I) -> Result<(), SimError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let tags = strings(tags);
        let mut state = self.inner.state();
        managed(&mut state, node_id)?;
        check_tags(&state, None, &tags)?;
        let device = state.device_mut(node_id)?;
        device.tags = tags;
        let target = json!({"id": device.node_id, "name": device.name, "type": "NODE"});
        drop(state);
        self.audit_console(target, "ACL_TAGS", "UPDATE");
        Ok(())
    }

    /// Replaces a device's enabled routes (the admin ticking boxes in "Edit route settings").
    pub fn console_set_device_routes<I, S>(&self, node_id: &str, enabled: I) -> Result<(), SimError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let routes = strings(enabled);
        check_routes(&routes)?;
        let mut state = self.inner.state();
        managed(&mut state, node_id)?.enabled_routes = routes;
        Ok(())
    }

    /// Sets what a device advertises (`tailscale set --advertise-routes`). Routes and exit-node
    /// routes the policy's `autoApprovers` approve for the device are enabled at once, as the
    /// control plane does.
    pub fn console_advertise_routes<I, S>(&self, node_id: &str, routes: I) -> Result<(), SimError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let routes = strings(routes);
        check_routes(&routes)?;
        let mut state = self.inner.state();
        managed(&mut state, node_id)?;
        let approved: Vec<String> = routes
            .iter()
            .filter(|r| auto_approves(&state, node_id, r))
            .cloned()
            .collect();
        let device = state.device_mut(node_id)?;
        device.advertised_routes = routes;
        for route in approved {
            if !device.enabled_routes.contains(&route) {
                device.enabled_routes.push(route);
            }
        }
        Ok(())
    }

    pub fn console_set_authorized(&self, node_id: &str, authorized: bool) -> Result<(), SimError> {
        let mut state = self.inner.state();
        managed(&mut state, node_id)?.authorized = authorized;
        Ok(())
    }

    /// A device connects or disconnects (`lastSeen` becomes now when it disconnects).
    pub fn console_set_connected(&self, node_id: &str, connected: bool) -> Result<(), SimError> {
        let mut state = self.inner.state();
        let device = managed(&mut state, node_id)?;
        if device.connected && !connected {
            device.last_seen = Some(now());
        }
        device.connected = connected;
        Ok(())
    }

    /// Replaces the DNS configuration from the DNS page.
    pub fn console_set_dns(&self, config: DnsConfig) -> Result<(), SimError> {
        check_config(&config)?;
        self.inner.state().dns = config;
        self.audit_console(self.tailnet_target(), "DNS_CONFIG", "UPDATE");
        Ok(())
    }

    /// Registers a device; returns its nodeId.
    pub fn console_add_device(&self, new: NewDevice) -> Result<String, SimError> {
        let mut state = self.inner.state();
        let hostname = new.hostname.trim().to_owned();
        if hostname.is_empty() {
            return Err(SimError::bad_request("hostname is required"));
        }
        check_tags(&state, None, &new.tags)?;
        check_routes(&new.advertised_routes)?;
        let user = if new.user.is_empty() {
            state.api_key_owner.clone()
        } else {
            new.user.clone()
        };
        if !state.users.iter().any(|u| u.login_name == user) {
            return Err(SimError::bad_request(format!("unknown user {user:?}")));
        }
        let device = register(&mut state, &new, &hostname, user);
        let node_id = device.node_id.clone();
        state.add_device(device);
        drop(state);
        self.emit(
            "nodeCreated",
            format!("Node {hostname} created"),
            json!({"nodeID": node_id}),
        );
        if !new.advertised_routes.is_empty() {
            self.console_advertise_routes(&node_id, new.advertised_routes)?;
        }
        Ok(node_id)
    }

    /// Removes a device (it was deleted in the console or its ephemeral node went away).
    pub fn console_delete_device(&self, node_id: &str) -> Result<(), SimError> {
        self.inner.state().remove_device(node_id)?;
        self.emit("nodeDeleted", "Node deleted", json!({"nodeID": node_id}));
        Ok(())
    }

    /// A device starts hosting (advertising) a service. A service not defined yet keeps the
    /// advertisement: the device becomes a host when the service is created.
    pub fn console_advertise_service(&self, node_id: &str, service: &str) -> Result<(), SimError> {
        let mut state = self.inner.state();
        let node = state.device(node_id)?.node_id.clone();
        let hosts = match state.service_index(service) {
            Ok(idx) => &mut state.services[idx].hosts,
            Err(_) => state.pending_hosts.entry(service.to_owned()).or_default(),
        };
        if !hosts.contains(&node) {
            hosts.push(node);
        }
        Ok(())
    }

    /// Edits a service's tags in the console.
    pub fn console_set_service_tags(&self, service: &str, tags: &[&str]) -> Result<(), SimError> {
        let mut state = self.inner.state();
        let idx = state.service_index(service)?;
        state.services[idx].tags = tags.iter().map(|t| t.to_string()).collect();
        Ok(())
    }

    /// Approves (or revokes) a host of a service in the console.
    pub fn console_set_service_approval(
        &self,
        service: &str,
        node_id: &str,
        approved: bool,
    ) -> Result<(), SimError> {
        let mut state = self.inner.state();
        let node = state.device(node_id)?.node_id.clone();
        let idx = state.service_index(service)?;
        state.services[idx].approvals.insert(node, approved);
        Ok(())
    }

    /// A service as the API renders it (with its annotations), if it exists.
    pub fn service(&self, name: &str) -> Option<Value> {
        let state = self.inner.state();
        let idx = state.service_index(name).ok()?;
        Some(state.services[idx].to_json())
    }

    /// The approval level of each host of a service (`not-approved`, `approved:auto`,
    /// `approved:manual`), by node id.
    pub fn service_hosts(&self, name: &str) -> Vec<(String, &'static str)> {
        let state = self.inner.state();
        let Ok(idx) = state.service_index(name) else {
            return Vec::new();
        };
        let service = &state.services[idx];
        service
            .hosts
            .iter()
            .map(|node| {
                (
                    node.clone(),
                    super::services::approval_level(&state, service, node),
                )
            })
            .collect()
    }

    /// Makes `GET /devices?fields=all` answer 404 while the default fields work, as reported
    /// for some tailnets with shared-in devices (tailscale#21721).
    pub fn set_fields_all_not_found(&self, on: bool) {
        self.inner.state().fields_all_not_found = on;
    }

    /// A node joins with an auth key, as `tailscaled --authkey` would: the key must be an
    /// auth key that is valid (not revoked, not expired, not a used single-use key); the device
    /// gets the key's tags (or, untagged, the key owner's identity), the hostname, and is
    /// authorized when the key is pre-authorized or the tailnet needs no approval. A single-use
    /// key is consumed. Returns the new device's nodeId.
    pub fn node_join(&self, auth_key: &str, hostname: &str) -> Result<String, SimError> {
        let hash = secret_hash(auth_key);
        let now = self.inner.now();
        let mut state = self.inner.state();
        let Some(idx) = state
            .keys
            .iter()
            .position(|k| k.secret_hash.as_deref() == Some(hash.as_str()))
        else {
            return Err(SimError::new(401, "invalid key: unknown auth key"));
        };
        let key = &state.keys[idx];
        if key.is_invalid(now) {
            return Err(SimError::new(
                401,
                format!(
                    "invalid key: auth key {} is revoked, expired or used",
                    key.id
                ),
            ));
        }
        let tags = key.create_tags();
        let preauthorized = key.create_capability("preauthorized");
        let ephemeral = key.create_capability("ephemeral");
        let owner = key.user_id.clone();
        let user = state
            .users
            .iter()
            .find(|u| u.id == owner)
            .map(|u| u.login_name.clone())
            .unwrap_or_else(|| state.api_key_owner.clone());
        let needs_approval = state.settings.devices_approval_on.unwrap_or(false);
        let new = NewDevice {
            hostname: hostname.to_owned(),
            tags,
            authorized: Some(preauthorized || !needs_approval),
            ephemeral,
            ..NewDevice::default()
        };
        let hostname = hostname.trim();
        if hostname.is_empty() {
            return Err(SimError::bad_request("hostname is required"));
        }
        let device = register(&mut state, &new, hostname, user);
        let node_id = device.node_id.clone();
        state.add_device(device);
        state.keys[idx].used = true;
        drop(state);
        self.emit(
            "nodeCreated",
            format!("Node {hostname} created"),
            json!({"nodeID": node_id}),
        );
        Ok(node_id)
    }

    /// Changes tailnet settings in the console: each field of `patch` (camelCase, as the API
    /// names them) replaces the current value.
    pub fn console_patch_settings(&self, patch: Value) -> Result<(), SimError> {
        let mut state = self.inner.state();
        let mut current = serde_json::to_value(&state.settings)
            .map_err(|e| SimError::bad_request(e.to_string()))?;
        for (k, v) in patch.as_object().into_iter().flatten() {
            current[k] = v.clone();
        }
        state.settings = serde_json::from_value(current)
            .map_err(|e| SimError::bad_request(format!("invalid settings: {e}")))?;
        drop(state);
        self.audit_console(self.tailnet_target(), "FEATURE", "UPDATE");
        Ok(())
    }

    /// The tailnet settings as the API renders them.
    pub fn settings(&self) -> Value {
        serde_json::to_value(&self.inner.state().settings).unwrap_or(Value::Null)
    }

    /// Expires every OAuth access token issued so far (clients must fetch a new one).
    pub fn console_expire_tokens(&self) {
        self.inner.tokens().expire_all();
    }

    /// The stored policy text (byte for byte) and its ETag.
    pub fn policy(&self) -> (String, String) {
        let state = self.inner.state();
        (state.policy.text.clone(), state.policy.etag.clone())
    }

    /// The DNS configuration.
    pub fn dns(&self) -> DnsConfig {
        self.inner.state().dns.clone()
    }

    pub fn device_count(&self) -> usize {
        self.inner.state().devices.len()
    }

    /// The nodeId of the device with this hostname.
    pub fn device_id(&self, hostname: &str) -> Option<String> {
        let state = self.inner.state();
        state
            .devices
            .iter()
            .find(|d| d.hostname == hostname)
            .map(|d| d.node_id.clone())
    }

    /// A device as `GET /device/{id}?fields=all` renders it.
    pub fn device(&self, id: &str) -> Option<Value> {
        let state = self.inner.state();
        state.device(id).ok().map(|d| d.to_json(true))
    }
}

/// A device the console can edit (not shared in from another tailnet).
fn managed<'a>(state: &'a mut Tailnet, id: &str) -> SimResult<&'a mut Device> {
    let device = state.device_mut(id)?;
    if device.is_external {
        return Err(SimError::bad_request(
            "no manageable device matching this ID found",
        ));
    }
    Ok(device)
}

/// Would the policy's `autoApprovers` enable `route` for this device?
fn auto_approves(state: &Tailnet, node_id: &str, route: &str) -> bool {
    let Ok(device) = state.device(node_id) else {
        return false;
    };
    let doc = &state.policy.doc;
    let approver_matches = |list: Option<&Value>| {
        list.and_then(Value::as_array).is_some_and(|who| {
            who.iter().filter_map(Value::as_str).any(|w| {
                if w.starts_with("tag:") {
                    device.tags.iter().any(|t| t == w)
                } else if w.starts_with("group:") {
                    device.tags.is_empty()
                        && doc
                            .pointer(&format!("/groups/{w}"))
                            .and_then(Value::as_array)
                            .is_some_and(|m| m.iter().any(|u| u.as_str() == Some(&device.user)))
                } else {
                    device.tags.is_empty() && w == device.user
                }
            })
        })
    };
    if route == "0.0.0.0/0" || route == "::/0" {
        return approver_matches(doc.pointer("/autoApprovers/exitNode"));
    }
    let Some((addr, bits)) = parse_prefix(route) else {
        return false;
    };
    doc.pointer("/autoApprovers/routes")
        .and_then(Value::as_object)
        .is_some_and(|routes| {
            routes.iter().any(|(approved, who)| {
                parse_prefix(approved).is_some_and(|p| p.1 <= bits && prefix_contains(p, addr))
                    && approver_matches(Some(who))
            })
        })
}

fn register(state: &mut Tailnet, new: &NewDevice, hostname: &str, user: String) -> Device {
    let now = now();
    let (v4, v6) = state.ips.allocate();
    let node_id = loop {
        let id = format!("n{}CNTRL", state.alnum(10));
        if state.device_index(&id).is_err() {
            break id;
        }
    };
    let key_days = state.settings.devices_key_duration_days.unwrap_or(180);
    let needs_approval = state.settings.devices_approval_on.unwrap_or(false);
    let label = hostname
        .to_lowercase()
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-");
    Device {
        id: state
            .rng
            .u64(1_000_000_000_000_000..9_999_999_999_999_999)
            .to_string(),
        node_id,
        user,
        name: format!("{label}.{}", state.dns_suffix),
        hostname: hostname.to_owned(),
        addresses: vec![v4, v6],
        client_version: LATEST_CLIENT.into(),
        update_available: false,
        os: if new.os.is_empty() {
            "linux".into()
        } else {
            new.os.clone()
        },
        distro: None,
        created: Some(now),
        connected: true,
        last_seen: Some(now),
        key_expiry_disabled: !new.tags.is_empty(),
        expires: Some(now + Duration::days(key_days)),
        authorized: new.authorized.unwrap_or(!needs_approval),
        is_external: false,
        multiple_connections: false,
        machine_key: format!("mkey:{}", state.hex(64)),
        node_key: format!("nodekey:{}", state.hex(64)),
        blocks_incoming: false,
        advertised_routes: vec![],
        enabled_routes: vec![],
        endpoints: vec![],
        derp: ("Frankfurt".into(), 18.5),
        tags: new.tags.clone(),
        tailnet_lock_key: format!("nlpub:{}", state.hex(64)),
        tailnet_lock_error: String::new(),
        ssh_enabled: false,
        serial: None,
        is_ephemeral: new.ephemeral,
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

pub(crate) fn routes(sim: SimTailnet) -> Router<SimTailnet> {
    Router::new()
        .route("/sim/info", get(info))
        .route("/sim/calls", get(calls))
        .route("/sim/calls/reset", post(reset_calls))
        .route(
            "/sim/faults",
            get(list_faults).put(set_faults).delete(clear_faults),
        )
        .route("/sim/exchanges", get(exchanges).delete(clear_exchanges))
        .route("/sim/exchanges/recording", put(set_recording))
        .route("/sim/console/policy", post(console_policy))
        .route(
            "/sim/console/policy-after-next-save",
            post(console_policy_after_next_save),
        )
        .route("/sim/console/dns", post(console_dns))
        .route("/sim/console/devices", post(console_add_device))
        .route("/sim/nodes/join", post(node_join))
        .route(
            "/sim/console/devices/{deviceId}",
            delete(console_delete_device),
        )
        .route("/sim/console/devices/{deviceId}/tags", post(console_tags))
        .route(
            "/sim/console/devices/{deviceId}/routes",
            post(console_routes),
        )
        .route(
            "/sim/console/devices/{deviceId}/advertised-routes",
            post(console_advertised_routes),
        )
        .route(
            "/sim/console/devices/{deviceId}/authorized",
            post(console_authorized),
        )
        .route(
            "/sim/console/devices/{deviceId}/connected",
            post(console_connected),
        )
        .route(
            "/sim/console/services/{serviceName}/hosts",
            post(console_service_host),
        )
        .route("/sim/console/expire-tokens", post(console_expire_tokens))
        .layer(from_fn_with_state(sim, authenticate_admin))
}

async fn info(State(sim): State<SimTailnet>) -> Json<Value> {
    let state = sim.inner.state();
    Json(json!({
        "tailnetId": state.tailnet_id,
        "dnsSuffix": state.dns_suffix,
        "devices": state.devices.len(),
        "policyEtag": state.policy.etag,
    }))
}

async fn calls(State(sim): State<SimTailnet>) -> Json<Value> {
    let calls = sim.calls();
    let map: serde_json::Map<String, Value> = calls
        .iter()
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    Json(json!({"total": calls.total(), "calls": map}))
}

async fn reset_calls(State(sim): State<SimTailnet>) -> Json<Value> {
    sim.reset_calls();
    Json(json!({}))
}

async fn list_faults(State(sim): State<SimTailnet>) -> Json<Vec<FaultRule>> {
    Json(sim.faults())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<FaultRule>),
    One(Box<FaultRule>),
}

async fn set_faults(State(sim): State<SimTailnet>, body: Bytes) -> SimResult<Json<Vec<FaultRule>>> {
    let rules = match parse_json::<OneOrMany>(&body)? {
        OneOrMany::Many(rules) => rules,
        OneOrMany::One(rule) => vec![*rule],
    };
    for rule in rules {
        sim.set_fault(rule);
    }
    Ok(Json(sim.faults()))
}

async fn clear_faults(State(sim): State<SimTailnet>) -> Json<Value> {
    sim.clear_faults();
    Json(json!({}))
}

async fn exchanges(State(sim): State<SimTailnet>) -> Json<Value> {
    Json(json!(sim.exchanges()))
}

async fn clear_exchanges(State(sim): State<SimTailnet>) -> Json<Value> {
    sim.clear_exchanges();
    Json(json!({}))
}

#[derive(Deserialize)]
struct Recording {
    enabled: bool,
}

async fn set_recording(State(sim): State<SimTailnet>, body: Bytes) -> SimResult<Json<Value>> {
    let body: Recording = parse_json(&body)?;
    sim.record_exchanges(body.enabled);
    Ok(Json(json!({"enabled": body.enabled})))
}

async fn console_policy(State(sim): State<SimTailnet>, body: Bytes) -> SimResult<Json<Value>> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| SimError::bad_request("policy file is not UTF-8"))?;
    let etag = sim.console_set_policy(text)?;
    Ok(Json(json!({ "etag": etag })))
}

async fn console_policy_after_next_save(
    State(sim): State<SimTailnet>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| SimError::bad_request("policy file is not UTF-8"))?;
    sim.console_edit_after_next_save(text)?;
    Ok(Json(json!({})))
}

async fn console_dns(State(sim): State<SimTailnet>, body: Bytes) -> SimResult<Json<DnsConfig>> {
    sim.console_set_dns(parse_json(&body)?)?;
    Ok(Json(sim.dns()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinBody {
    auth_key: String,
    hostname: String,
}

async fn node_join(State(sim): State<SimTailnet>, body: Bytes) -> SimResult<Json<Value>> {
    let body: JoinBody = parse_json(&body)?;
    let node_id = sim.node_join(&body.auth_key, &body.hostname)?;
    Ok(Json(json!({ "nodeId": node_id })))
}

/// SHA-256 (hex) of a key secret: what the sim keeps of an auth key, so a joining node can
/// present it.
pub(crate) fn secret_hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn console_add_device(State(sim): State<SimTailnet>, body: Bytes) -> SimResult<Json<Value>> {
    let node_id = sim.console_add_device(parse_json(&body)?)?;
    Ok(Json(json!({ "nodeId": node_id })))
}

async fn console_delete_device(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
) -> SimResult<StatusCode> {
    sim.console_delete_device(&id)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct TagsBody {
    tags: Vec<String>,
}

async fn console_tags(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
    body: Bytes,
) -> SimResult<StatusCode> {
    let body: TagsBody = parse_json(&body)?;
    sim.console_set_device_tags(&id, body.tags)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct RoutesBody {
    routes: Vec<String>,
}

async fn console_routes(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
    body: Bytes,
) -> SimResult<StatusCode> {
    let body: RoutesBody = parse_json(&body)?;
    sim.console_set_device_routes(&id, body.routes)?;
    Ok(StatusCode::OK)
}

async fn console_advertised_routes(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
    body: Bytes,
) -> SimResult<StatusCode> {
    let body: RoutesBody = parse_json(&body)?;
    sim.console_advertise_routes(&id, body.routes)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct AuthorizedBody {
    authorized: bool,
}

async fn console_authorized(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
    body: Bytes,
) -> SimResult<StatusCode> {
    let body: AuthorizedBody = parse_json(&body)?;
    sim.console_set_authorized(&id, body.authorized)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct ConnectedBody {
    connected: bool,
}

async fn console_connected(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
    body: Bytes,
) -> SimResult<StatusCode> {
    let body: ConnectedBody = parse_json(&body)?;
    sim.console_set_connected(&id, body.connected)?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HostBody {
    node_id: String,
}

async fn console_service_host(
    State(sim): State<SimTailnet>,
    Path(service): Path<String>,
    body: Bytes,
) -> SimResult<StatusCode> {
    let body: HostBody = parse_json(&body)?;
    sim.console_advertise_service(&body.node_id, &service)?;
    Ok(StatusCode::OK)
}

async fn console_expire_tokens(State(sim): State<SimTailnet>) -> Json<Value> {
    sim.console_expire_tokens();
    Json(json!({}))
}
