//! Tailscale Services (`svc:` names): list, get, PUT upsert (an update must carry the current
//! addresses), delete, hosts and host approval. Served under the spec's `/services` path and
//! the `/vip-services` path Tailscale's own clients use.
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::auth::Caller;
use super::error::{SimError, SimResult, parse_json};
use super::policy::check_tags;
use super::state::{Service, State as Tailnet};
use super::{SimTailnet, check_tailnet};

pub(crate) fn routes() -> Router<SimTailnet> {
    Router::new()
        .route("/api/v2/tailnet/{tailnet}/services", get(list))
        .route(
            "/api/v2/tailnet/{tailnet}/services/{serviceName}",
            get(get_one).put(put).delete(delete),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/services/{serviceName}/devices",
            get(hosts),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/services/{serviceName}/device/{deviceId}/approved",
            get(get_approval).post(set_approval),
        )
        .route("/api/v2/tailnet/{tailnet}/vip-services", get(list))
        .route(
            "/api/v2/tailnet/{tailnet}/vip-services/{serviceName}",
            get(get_one).put(put).delete(delete),
        )
}

async fn list(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let services: Vec<Value> = state.services.iter().map(Service::to_json).collect();
    Ok(Json(json!({ "vipServices": services })))
}

async fn get_one(
    State(sim): State<SimTailnet>,
    Path((tailnet, name)): Path<(String, String)>,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let idx = state.service_index(&name)?;
    Ok(Json(state.services[idx].to_json()))
}

/// `svc:` followed by a DNS label.
fn check_name(name: &str) -> SimResult<()> {
    let valid = name.strip_prefix("svc:").is_some_and(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    if valid {
        Ok(())
    } else {
        Err(SimError::bad_request(format!(
            "invalid service name {name:?}: want svc:<dns-label>"
        )))
    }
}

/// Only TCP ports (`tcp:443`, `tcp:8000-8010`), or `do-not-validate`.
fn check_ports(ports: &[String]) -> SimResult<()> {
    for port in ports {
        if port == "do-not-validate" {
            continue;
        }
        let Some((proto, range)) = port.split_once(':') else {
            return Err(SimError::bad_request(format!(
                "invalid port {port:?}: want tcp:<port> or tcp:<first>-<last>"
            )));
        };
        if proto != "tcp" {
            return Err(SimError::bad_request(format!(
                "invalid port {port:?}: only TCP is supported"
            )));
        }
        let parse = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
        let valid = match range.split_once('-') {
            Some((lo, hi)) => matches!((parse(lo), parse(hi)), (Some(lo), Some(hi)) if lo <= hi),
            None => parse(range).is_some(),
        };
        if !valid {
            return Err(SimError::bad_request(format!(
                "invalid port {port:?}: want tcp:<port> or tcp:<first>-<last>"
            )));
        }
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PutBody {
    name: Option<String>,
    addrs: Option<Vec<String>>,
    comment: Option<String>,
    ports: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    annotations: Option<Map<String, Value>>,
}

/// Creates (name must match the path; addresses allocated unless one IPv4 is given) or
/// updates (addresses must be repeated: the IPv6 unchanged, the IPv4 may move; a different
/// body name renames) a service.
async fn put(
    State(sim): State<SimTailnet>,
    Path((tailnet, name)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let body: PutBody = parse_json(&body)?;
    check_name(&name)?;
    let ports = body.ports.clone().unwrap_or_default();
    check_ports(&ports)?;
    let tags = body.tags.clone().unwrap_or_default();
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    check_tags(&state, Some(&caller), &tags)?;
    let service = match state.service_index(&name) {
        Ok(idx) => update(&mut state, idx, body)?,
        Err(_) => create(&mut state, &name, body)?,
    };
    Ok(Json(service))
}

fn check_free_name(state: &Tailnet, name: &str) -> SimResult<()> {
    let label = name.trim_start_matches("svc:");
    if state.is_hostname_taken(label) {
        return Err(SimError::bad_request(format!(
            "service name {name:?} collides with the machine name {label:?}"
        )));
    }
    if state.services.iter().any(|s| s.name == name) {
        return Err(SimError::bad_request(format!(
            "a service named {name:?} already exists"
        )));
    }
    Ok(())
}

fn create(state: &mut Tailnet, name: &str, body: PutBody) -> SimResult<Value> {
    if let Some(body_name) = body.name.as_deref().filter(|n| !n.is_empty() && *n != name) {
        return Err(SimError::bad_request(format!(
            "service name in body ({body_name:?}) must match the name in the path ({name:?}) when creating a service"
        )));
    }
    check_free_name(state, name)?;
    let addrs = match body.addrs.as_deref().unwrap_or_default() {
        [] => {
            let (v4, v6) = state.ips.allocate();
            vec![v4, v6]
        }
        [one] => {
            let v4: Ipv4Addr = one.parse().map_err(|_| {
                SimError::bad_request(format!(
                    "on create, addrs may only hold one IPv4 address, got {one:?}"
                ))
            })?;
            let v6 = state.ips.claim(v4)?;
            vec![v4.to_string(), v6]
        }
        more => {
            return Err(SimError::bad_request(format!(
                "on create, addrs must be empty or one IPv4 address, got {more:?}"
            )));
        }
    };
    let service = Service {
        name: name.to_owned(),
        addrs,
        comment: body.comment.unwrap_or_default(),
        ports: body.ports.unwrap_or_default(),
        tags: body.tags.unwrap_or_default(),
        annotations: body.annotations,
        hosts: state.pending_hosts.remove(name).unwrap_or_default(),
        approvals: HashMap::new(),
    };
    let json = service.to_json();
    state.services.push(service);
    Ok(json)
}

fn update(state: &mut Tailnet, idx: usize, body: PutBody) -> SimResult<Value> {
    let current = state.services[idx].addrs.clone();
    let (cur_v4, cur_v6) = (current[0].clone(), current[1].clone());
    let given = body.addrs.clone().unwrap_or_default();
    let v4s: Vec<Ipv4Addr> = given.iter().filter_map(|a| a.parse().ok()).collect();
    let v6s: Vec<&String> = given
        .iter()
        .filter(|a| matches!(a.parse::<IpAddr>(), Ok(IpAddr::V6(_))))
        .collect();
    if given.len() != 2 || v4s.len() != 1 || v6s != [&cur_v6] {
        return Err(SimError::bad_request(format!(
            "updating service {:?}: addrs must include the service's current addresses [{cur_v4}, {cur_v6}] (the IPv4 may change, the IPv6 may not)",
            state.services[idx].name
        )));
    }
    let new_v4 = v4s[0].to_string();
    if new_v4 != cur_v4 {
        state.ips.claim(v4s[0])?;
        state.ips.release(&cur_v4);
    }
    let new_name = body
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| state.services[idx].name.clone());
    if new_name != state.services[idx].name {
        check_name(&new_name)?;
        check_free_name(state, &new_name)?;
    }
    let service = &mut state.services[idx];
    service.name = new_name;
    service.addrs = vec![new_v4, cur_v6];
    service.comment = body.comment.unwrap_or_default();
    service.ports = body.ports.unwrap_or_default();
    service.tags = body.tags.unwrap_or_default();
    service.annotations = body.annotations;
    Ok(service.to_json())
}

async fn delete(
    State(sim): State<SimTailnet>,
    Path((tailnet, name)): Path<(String, String)>,
) -> SimResult<StatusCode> {
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let idx = state.service_index(&name)?;
    let service = state.services.remove(idx);
    if let Some(v4) = service.addrs.first() {
        state.ips.release(v4);
    }
    // The devices still advertise it: hosts again if it is created again.
    if !service.hosts.is_empty() {
        state.pending_hosts.insert(service.name, service.hosts);
    }
    Ok(StatusCode::OK)
}

/// Is `device` approved for `service` by the policy's `autoApprovers.services`?
fn auto_approved(state: &Tailnet, service: &Service, node_id: &str) -> bool {
    let Ok(device) = state.device(node_id) else {
        return false;
    };
    let doc = &state.policy.doc;
    let Some(approvers) = doc
        .pointer("/autoApprovers/services")
        .and_then(Value::as_object)
    else {
        return false;
    };
    let keys = std::iter::once(&service.name).chain(service.tags.iter());
    keys.filter_map(|k| approvers.get(k.as_str()).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .any(|who| {
            if who.starts_with("tag:") {
                device.tags.iter().any(|t| t == who)
            } else if who.starts_with("group:") {
                device.tags.is_empty()
                    && doc
                        .pointer(&format!("/groups/{who}"))
                        .and_then(Value::as_array)
                        .is_some_and(|m| m.iter().any(|u| u.as_str() == Some(&device.user)))
            } else {
                device.tags.is_empty() && who == device.user
            }
        })
}

/// `(approved, autoApproved, approvalLevel)`; a manual decision wins over the policy.
fn approval(state: &Tailnet, service: &Service, node_id: &str) -> (bool, bool, &'static str) {
    let auto = auto_approved(state, service, node_id);
    match service.approvals.get(node_id) {
        Some(true) => (true, auto, "approved:manual"),
        Some(false) => (false, auto, "not-approved"),
        None if auto => (true, true, "approved:auto"),
        None => (false, false, "not-approved"),
    }
}

/// `approvalLevel` of a host.
pub(crate) fn approval_level(state: &Tailnet, service: &Service, node_id: &str) -> &'static str {
    approval(state, service, node_id).2
}

async fn hosts(
    State(sim): State<SimTailnet>,
    Path((tailnet, name)): Path<(String, String)>,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let service = &state.services[state.service_index(&name)?];
    let hosts: Vec<Value> = service
        .hosts
        .iter()
        .map(|node_id| {
            let (_, _, level) = approval(&state, service, node_id);
            json!({"stableNodeID": node_id, "approvalLevel": level, "configured": "ready"})
        })
        .collect();
    Ok(Json(json!({ "hosts": hosts })))
}

/// Resolves a device id (nodeId or legacy id) to its nodeId.
fn node_id(state: &Tailnet, device_id: &str) -> SimResult<String> {
    Ok(state.device(device_id)?.node_id.clone())
}

async fn get_approval(
    State(sim): State<SimTailnet>,
    Path((tailnet, name, device_id)): Path<(String, String, String)>,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let service = &state.services[state.service_index(&name)?];
    let node = node_id(&state, &device_id)?;
    let (approved, auto, _) = approval(&state, service, &node);
    Ok(Json(json!({"approved": approved, "autoApproved": auto})))
}

#[derive(Deserialize)]
struct ApprovalBody {
    approved: Option<bool>,
}

async fn set_approval(
    State(sim): State<SimTailnet>,
    Path((tailnet, name, device_id)): Path<(String, String, String)>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let body: ApprovalBody = parse_json(&body)?;
    let approved = body
        .approved
        .ok_or_else(|| SimError::bad_request("\"approved\" is required"))?;
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let idx = state.service_index(&name)?;
    let node = node_id(&state, &device_id)?;
    state.services[idx].approvals.insert(node.clone(), approved);
    let (approved, auto, _) = approval(&state, &state.services[idx], &node);
    Ok(Json(json!({"approved": approved, "autoApproved": auto})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ports_are_validated() {
        assert!(check_name("svc:grafana").is_ok());
        assert!(check_name("grafana").is_err());
        assert!(check_name("svc:Bad_Name").is_err());
        let ports = |p: &[&str]| check_ports(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ports(&["tcp:443", "tcp:8000-8010", "do-not-validate"]).is_ok());
        assert!(ports(&["udp:53"]).unwrap_err().message.contains("only TCP"));
        assert!(ports(&["tcp:0"]).is_err());
        assert!(ports(&["443"]).is_err());
    }
}
