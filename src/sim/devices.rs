//! Devices: list (field sets and filters), get, delete, tags, authorization, key expiry,
//! routes, expire, name and IPv4.
use std::net::{IpAddr, Ipv4Addr};

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::error::{SimError, SimResult, parse_json};
use super::policy::{check_tags, parse_prefix};
use super::state::{DEVICE_FIELDS, Device, DeviceJson, State as Tailnet};
use super::{SimTailnet, check_tailnet, now};

pub(crate) fn routes() -> Router<SimTailnet> {
    Router::new()
        .route("/api/v2/tailnet/{tailnet}/devices", get(list))
        .route("/api/v2/device/{deviceId}", get(get_one).delete(delete))
        .route("/api/v2/device/{deviceId}/expire", post(expire))
        .route(
            "/api/v2/device/{deviceId}/routes",
            get(get_routes).post(set_routes),
        )
        .route("/api/v2/device/{deviceId}/authorized", post(authorize))
        .route("/api/v2/device/{deviceId}/name", post(set_name))
        .route("/api/v2/device/{deviceId}/tags", post(set_tags))
        .route("/api/v2/device/{deviceId}/key", post(set_key))
        .route("/api/v2/device/{deviceId}/ip", post(set_ip))
}

/// `fields=all` or `fields=default` (the default).
fn all_fields(fields: Option<&str>) -> SimResult<bool> {
    match fields {
        None | Some("default") => Ok(false),
        Some("all") => Ok(true),
        Some(other) => Err(SimError::bad_request(format!(
            "invalid fields value {other:?}: want \"all\" or \"default\""
        ))),
    }
}

/// Filters are top-level scalar or list fields; complex objects and unknown fields are refused
/// (the sim chooses 400 over silently ignoring a typo).
fn check_filter_field(field: &str) -> SimResult<()> {
    if !DEVICE_FIELDS.contains(&field) {
        return Err(SimError::bad_request(format!(
            "invalid filter: {field:?} is not a device field"
        )));
    }
    if matches!(field, "clientConnectivity" | "postureIdentity" | "distro") {
        return Err(SimError::bad_request(format!(
            "invalid filter: {field:?} is an object and cannot be filtered on"
        )));
    }
    Ok(())
}

#[derive(Serialize)]
struct DeviceList<'a> {
    devices: Vec<DeviceJson<'a>>,
}

/// Lists devices, serializing straight from the model (10,000 devices without building a JSON
/// tree per device).
async fn list(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> SimResult<Response> {
    let mut fields = None;
    let mut filters = Vec::new();
    for (k, v) in &query {
        if k == "fields" {
            fields = Some(v.as_str());
        } else {
            check_filter_field(k)?;
            filters.push((k.as_str(), v.as_str()));
        }
    }
    let all = all_fields(fields)?;
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    if all && state.fields_all_not_found {
        return Err(SimError::not_found("not found"));
    }
    let devices = state
        .devices
        .iter()
        .filter(|d| filters.iter().all(|(f, v)| d.filter_matches(f, v)))
        .map(|device| DeviceJson { device, all })
        .collect();
    // Serialize while the state is locked: the list borrows from it.
    Ok(Json(DeviceList { devices }).into_response())
}

#[derive(Deserialize)]
struct FieldsQuery {
    fields: Option<String>,
}

async fn get_one(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
    Query(q): Query<FieldsQuery>,
) -> SimResult<Json<Value>> {
    let all = all_fields(q.fields.as_deref())?;
    let state = sim.inner.state();
    Ok(Json(state.device(&id)?.to_json(all)))
}

async fn delete(State(sim): State<SimTailnet>, Path(id): Path<String>) -> SimResult<StatusCode> {
    let mut state = sim.inner.state();
    if state.device(&id)?.is_external {
        return Err(SimError::new(
            501,
            "cannot delete a device shared in from another tailnet",
        ));
    }
    state.remove_device(&id)?;
    drop(state);
    sim.emit(
        "nodeDeleted",
        "Node deleted",
        serde_json::json!({"nodeID": id}),
    );
    Ok(StatusCode::OK)
}

/// Shared-in devices belong to another tailnet: they cannot be tagged, authorized or edited.
fn manageable<'a>(state: &'a mut Tailnet, id: &str) -> SimResult<&'a mut Device> {
    let device = state.device_mut(id)?;
    if device.is_external {
        return Err(SimError::bad_request(
            "no manageable device matching this ID found",
        ));
    }
    Ok(device)
}

async fn expire(State(sim): State<SimTailnet>, Path(id): Path<String>) -> SimResult<StatusCode> {
    let mut state = sim.inner.state();
    let device = manageable(&mut state, &id)?;
    let now = now();
    // The node key is expired now; the device drops off until it re-authenticates.
    device.expires = Some(now);
    device.key_expiry_disabled = false;
    if device.connected {
        device.connected = false;
        device.last_seen = Some(now);
    }
    Ok(StatusCode::OK)
}

async fn get_routes(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    Ok(Json(state.device(&id)?.routes_json()))
}

#[derive(Deserialize)]
struct RoutesBody {
    routes: Option<Vec<String>>,
}

/// Validates routes as CIDR prefixes without host bits (what the API accepts).
pub(crate) fn check_routes(routes: &[String]) -> SimResult<()> {
    for route in routes {
        let canonical = route.contains('/')
            && parse_prefix(route).is_some_and(|(addr, bits)| match addr {
                IpAddr::V4(a) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
                    u32::from(a) & !mask == 0
                }
                IpAddr::V6(a) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
                    u128::from(a) & !mask == 0
                }
            });
        if !canonical {
            return Err(SimError::bad_request(format!(
                "invalid route {route:?}: want a CIDR prefix without host bits, such as 10.0.0.0/24"
            )));
        }
    }
    Ok(())
}

/// Replaces the enabled routes. Enabling a route the device does not advertise is allowed: it
/// does nothing until the device advertises it.
async fn set_routes(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let body: RoutesBody = parse_json(&body)?;
    let routes = body
        .routes
        .ok_or_else(|| SimError::bad_request("\"routes\" is required"))?;
    check_routes(&routes)?;
    let mut state = sim.inner.state();
    let device = manageable(&mut state, &id)?;
    device.enabled_routes = dedup(routes);
    Ok(Json(device.routes_json()))
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .collect()
}

#[derive(Deserialize)]
struct AuthorizedBody {
    authorized: Option<bool>,
}

async fn authorize(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
    body: Bytes,
) -> SimResult<StatusCode> {
    let body: AuthorizedBody = parse_json(&body)?;
    let authorized = body
        .authorized
        .ok_or_else(|| SimError::bad_request("\"authorized\" is required"))?;
    let mut state = sim.inner.state();
    manageable(&mut state, &id)?.authorized = authorized;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct TagsBody {
    tags: Option<Vec<String>>,
}

/// Replaces the device's tags. Every tag must be in `tagOwners` (and owned by an OAuth caller).
async fn set_tags(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> SimResult<StatusCode> {
    let body: TagsBody = parse_json(&body)?;
    let tags = dedup(
        body.tags
            .ok_or_else(|| SimError::bad_request("\"tags\" is required"))?,
    );
    let mut state = sim.inner.state();
    manageable(&mut state, &id)?;
    check_tags(&state, Some(&caller), &tags)?;
    let device = state.device_mut(&id)?;
    device.tags = tags;
    let target = serde_json::json!({"id": device.node_id, "name": device.name, "type": "NODE"});
    drop(state);
    sim.audit_api(&caller, target, "ACL_TAGS", "UPDATE");
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyBody {
    key_expiry_disabled: Option<bool>,
}

/// Disables or re-enables node-key expiry. Re-enabling restores the original expiry time, which
/// may already have passed.
async fn set_key(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
    body: Bytes,
) -> SimResult<StatusCode> {
    let body: KeyBody = parse_json(&body)?;
    let disabled = body
        .key_expiry_disabled
        .ok_or_else(|| SimError::bad_request("\"keyExpiryDisabled\" is required"))?;
    let mut state = sim.inner.state();
    manageable(&mut state, &id)?.key_expiry_disabled = disabled;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct NameBody {
    name: Option<String>,
}

/// Sets the MagicDNS name (FQDN or bare label); empty resets to the hostname.
async fn set_name(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
    body: Bytes,
) -> SimResult<StatusCode> {
    let body: NameBody = parse_json(&body)?;
    let name = body
        .name
        .ok_or_else(|| SimError::bad_request("\"name\" is required"))?;
    let mut state = sim.inner.state();
    let suffix = state.dns_suffix.clone();
    let hostname = manageable(&mut state, &id)?.hostname.clone();
    let label = name
        .strip_suffix(&format!(".{suffix}"))
        .unwrap_or(&name)
        .trim_end_matches('.');
    let label = if label.is_empty() {
        hostname.to_lowercase()
    } else {
        label.to_owned()
    };
    let valid = label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(SimError::bad_request(format!(
            "invalid name {name:?}: want a DNS label of lowercase letters, digits and dashes"
        )));
    }
    let fqdn = format!("{label}.{suffix}");
    let taken = state
        .devices
        .iter()
        .any(|d| d.name == fqdn && d.node_id != id && d.id != id);
    if taken {
        return Err(SimError::bad_request(format!(
            "name {fqdn:?} is already in use by another device"
        )));
    }
    state.device_mut(&id)?.name = fqdn;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct IpBody {
    ipv4: Option<String>,
}

async fn set_ip(
    State(sim): State<SimTailnet>,
    Path(id): Path<String>,
    body: Bytes,
) -> SimResult<StatusCode> {
    let body: IpBody = parse_json(&body)?;
    let raw = body
        .ipv4
        .ok_or_else(|| SimError::bad_request("\"ipv4\" is required"))?;
    let ip: Ipv4Addr = raw
        .parse()
        .map_err(|_| SimError::bad_request(format!("invalid IPv4 address {raw:?}")))?;
    let mut state = sim.inner.state();
    let old = manageable(&mut state, &id)?.addresses.first().cloned();
    if old.as_deref() == Some(raw.as_str()) {
        return Ok(StatusCode::OK);
    }
    state.ips.claim(ip)?;
    if let Some(old) = old {
        state.ips.release(&old);
    }
    let device = state.device_mut(&id)?;
    match device.addresses.first_mut() {
        Some(first) => *first = ip.to_string(),
        None => device.addresses.push(ip.to_string()),
    }
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_must_be_canonical_prefixes() {
        let ok = |r: &[&str]| check_routes(&r.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        ok(&[
            "10.0.0.0/16",
            "0.0.0.0/0",
            "::/0",
            "fd00::/8",
            "192.168.1.7/32",
        ])
        .unwrap();
        assert!(ok(&["10.0.0.1/16"]).is_err());
        assert!(ok(&["10.0.0.0"]).is_err());
        assert!(ok(&["banana/8"]).is_err());
    }

    #[test]
    fn only_scalar_and_list_device_fields_filter() {
        assert!(check_filter_field("clientConnectivity").is_err());
        assert!(check_filter_field("hostnme").is_err());
        assert!(check_filter_field("tags").is_ok());
        assert!(check_filter_field("isEphemeral").is_ok());
    }
}
