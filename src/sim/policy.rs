//! The policy file: `GET/POST /acl` with ETags and `If-Match`, `/acl/validate` (always 200, the
//! verdict is in the body), `/acl/preview`, and the tag-ownership check every tag write uses.
use std::collections::HashMap;
use std::net::IpAddr;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::policy::access::{Policy, TailnetView};
use crate::policy::hujson::parse_strict;

use super::auth::Caller;
use super::codec::base64_encode;
use super::error::{SimError, SimResult};
use super::seed::default_policy;
use super::state::{PolicyState, State as Tailnet, policy_etag};
use super::{SimTailnet, check_tailnet};

pub(crate) fn routes() -> Router<SimTailnet> {
    Router::new()
        .route("/api/v2/tailnet/{tailnet}/acl", get(get_acl).post(set_acl))
        .route("/api/v2/tailnet/{tailnet}/acl/validate", post(validate))
        .route("/api/v2/tailnet/{tailnet}/acl/preview", post(preview))
}

/// The 412 body, word for word what the API says.
pub const PRECONDITION_FAILED: &str = "precondition failed, invalid old hash";
/// The `If-Match` value that only matches the untouched default policy.
pub const TS_DEFAULT: &str = "\"ts-default\"";

const HUJSON: &str = "application/hujson";

/// Whether the client asked for the parsed JSON form (`Accept: application/json`).
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json") && !accept.contains("hujson"))
}

/// The policy in the representation the client asked for, with its ETag.
fn policy_response(policy: &PolicyState, headers: &HeaderMap) -> Response {
    let mut response = if wants_json(headers) {
        Json(policy.doc.clone()).into_response()
    } else {
        let mut r = policy.text.clone().into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(HUJSON));
        r
    };
    if let Ok(etag) = HeaderValue::from_str(&policy.etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

async fn get_acl(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> SimResult<Response> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let details = query.get("details").is_some_and(|d| d == "true");
    if details && !wants_json(&headers) {
        let mut response = Json(json!({
            "acl": base64_encode(state.policy.text.as_bytes()),
            "warnings": [],
            "errors": null,
        }))
        .into_response();
        if let Ok(etag) = HeaderValue::from_str(&state.policy.etag) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        return Ok(response);
    }
    Ok(policy_response(&state.policy, &headers))
}

async fn set_acl(
    State(sim): State<SimTailnet>,
    Extension(caller): Extension<Caller>,
    Path(tailnet): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> SimResult<Response> {
    let text = body_text(&body)?;
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    if let Some(if_match) = headers.get(header::IF_MATCH) {
        let if_match = if_match.to_str().unwrap_or_default();
        check_if_match(&state.policy, if_match)?;
    }
    store_policy(&mut state, text)?;
    // The caller's write succeeded and is what it gets back; an armed console edit lands right
    // after it, as if someone saved in the admin console a moment later.
    let response = policy_response(&state.policy, &headers);
    let console_edit = state.console_edit_after_next_save.take();
    if let Some(edit) = &console_edit {
        // Checked when armed; should the tailnet have changed so that its tests now fail, the
        // edit is dropped, as a console save that fails is not saved.
        let _ = store_policy(&mut state, edit);
    }
    drop(state);
    sim.audit_api(&caller, sim.tailnet_target(), "ACL", "UPDATE");
    sim.emit(
        "policyUpdate",
        "Tailnet policy file updated",
        json!({"actor": "api"}),
    );
    if console_edit.is_some() {
        sim.audit_console(sim.tailnet_target(), "ACL", "UPDATE");
        sim.emit(
            "policyUpdate",
            "Tailnet policy file updated",
            json!({"actor": "console"}),
        );
    }
    Ok(response)
}

/// `If-Match` must equal the current ETag exactly: a re-quoted (`"\"abc\""`) or unquoted value
/// fails, as it does against the real API. `"ts-default"` matches only the untouched default.
fn check_if_match(policy: &PolicyState, if_match: &str) -> SimResult<()> {
    let matches = if_match == policy.etag || (if_match == TS_DEFAULT && policy.is_default);
    if matches {
        Ok(())
    } else {
        Err(SimError::new(412, PRECONDITION_FAILED))
    }
}

fn body_text(body: &Bytes) -> SimResult<&str> {
    std::str::from_utf8(body).map_err(|_| SimError::bad_request("policy file is not UTF-8"))
}

/// Parses, checks and compiles a candidate policy (no tests run).
pub(crate) fn prepare(text: &str) -> SimResult<(Value, Policy)> {
    let doc = parse_strict(text)
        .map_err(|e| SimError::bad_request(format!("parsing policy file: {e}")))?;
    if !doc.is_object() {
        return Err(SimError::bad_request(
            "policy file must be a JSON object at the top level",
        ));
    }
    sanity_check(&doc)?;
    let compiled = Policy::compile(&doc).map_err(|e| SimError::bad_request(e.message))?;
    Ok((doc, compiled))
}

/// Runs `tests` (or the policy's own), answering 400 `{message, data}` on failures.
fn run_tests(policy: &Policy, tests: Option<&Value>, view: &TailnetView) -> SimResult<()> {
    let failures = policy.run_tests(tests, view);
    if failures.is_empty() {
        return Ok(());
    }
    let data: Vec<Value> = failures
        .into_iter()
        .map(|f| json!({"user": f.src, "errors": f.errors}))
        .collect();
    Err(SimError::bad_request("test(s) failed").with_data(Value::Array(data)))
}

/// Checks `text` as [`store_policy`] would, without storing it.
pub(crate) fn check_policy(state: &Tailnet, text: &str) -> SimResult<()> {
    if text.trim().is_empty() {
        return Ok(());
    }
    let (_, compiled) = prepare(text)?;
    run_tests(&compiled, None, &state.tailnet_view())
}

/// Validates `text` like `POST /acl` does and stores it byte for byte. An empty (or
/// whitespace-only) text restores the default policy.
pub(crate) fn store_policy(state: &mut Tailnet, text: &str) -> SimResult<()> {
    if text.trim().is_empty() {
        state.policy = default_policy();
        return Ok(());
    }
    let (doc, compiled) = prepare(text)?;
    run_tests(&compiled, None, &state.tailnet_view())?;
    state.policy = PolicyState {
        text: text.to_owned(),
        etag: policy_etag(text),
        doc,
        compiled: Some(compiled),
        is_default: false,
    };
    Ok(())
}

/// `POST /acl/validate`: always HTTP 200. `{}` means valid and tests pass; otherwise
/// `{"message", "data"}` (with `data: []` when the failure is not a test failure).
async fn validate(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let outcome = body_text(&body).and_then(|text| validate_text(&state, text));
    Ok(Json(match outcome {
        Ok(()) => json!({}),
        Err(e) => json!({"message": e.message, "data": e.data.unwrap_or_else(|| json!([]))}),
    }))
}

fn validate_text(state: &Tailnet, text: &str) -> SimResult<()> {
    let view = state.tailnet_view();
    if text.trim().is_empty() {
        return current_policy(state).and_then(|p| run_tests(p, None, &view));
    }
    let value = parse_strict(text)
        .map_err(|e| SimError::bad_request(format!("parsing policy file: {e}")))?;
    match value {
        // Mode (a): tests run against the current policy.
        Value::Array(_) => current_policy(state).and_then(|p| run_tests(p, Some(&value), &view)),
        // Mode (b): a hypothetical policy and its own tests.
        Value::Object(_) => {
            let (_, compiled) = prepare(text)?;
            run_tests(&compiled, None, &view)
        }
        // The JSON request schema also allows the policy as a JSON string.
        Value::String(inner) => validate_text(state, &inner),
        _ => Err(SimError::bad_request(
            "body must be a policy file object or a JSON array of tests",
        )),
    }
}

fn current_policy(state: &Tailnet) -> SimResult<&Policy> {
    state
        .policy
        .compiled
        .as_ref()
        .ok_or_else(|| SimError::bad_request("the current policy file does not compile"))
}

/// Sanity checks the sim makes itself, independent of the evaluator: section types, group and
/// tag names, owners that exist, host addresses, and references from rules to defined groups
/// and tags.
fn sanity_check(doc: &Value) -> SimResult<()> {
    let empty = Map::new();
    let object = |section: &str| -> SimResult<&Map<String, Value>> {
        match doc.get(section) {
            None => Ok(&empty),
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(SimError::bad_request(format!(
                "{section:?} must be an object"
            ))),
        }
    };
    let groups = object("groups")?;
    let tag_owners = object("tagOwners")?;
    let hosts = object("hosts")?;

    for (name, members) in groups {
        if !name.starts_with("group:") || name.len() == "group:".len() {
            return Err(SimError::bad_request(format!(
                "group {name:?}: group names must start with \"group:\""
            )));
        }
        for member in string_list(members, &format!("groups[{name:?}]"))? {
            if member.starts_with("group:") || member.starts_with("tag:") {
                return Err(SimError::bad_request(format!(
                    "group {name:?}: groups may only contain users, not {member:?}"
                )));
            }
        }
    }
    for (tag, owners) in tag_owners {
        if !is_tag_name(tag) {
            return Err(SimError::bad_request(format!(
                "tagOwners: {tag:?} is not a valid tag (want tag:<letters, digits, dashes>)"
            )));
        }
        for owner in string_list(owners, &format!("tagOwners[{tag:?}]"))? {
            let known = if owner.starts_with("group:") {
                groups.contains_key(owner)
            } else if owner.starts_with("tag:") {
                tag_owners.contains_key(owner)
            } else {
                owner.starts_with("autogroup:") || owner.contains('@')
            };
            if !known {
                return Err(SimError::bad_request(format!(
                    "tagOwners[{tag:?}]: owner {owner:?} is not defined"
                )));
            }
        }
    }
    for (host, addr) in hosts {
        let valid = addr.as_str().is_some_and(|a| parse_prefix(a).is_some());
        if !valid {
            return Err(SimError::bad_request(format!(
                "hosts[{host:?}]: {addr} is not an IP address or CIDR prefix"
            )));
        }
    }
    for section in ["acls", "grants", "ssh"] {
        check_rule_references(doc, section, groups, tag_owners)?;
    }
    if let Some(tests) = doc.get("tests") {
        let valid = tests
            .as_array()
            .is_some_and(|t| t.iter().all(|t| t.get("src").is_some_and(Value::is_string)));
        if !valid {
            return Err(SimError::bad_request(
                "tests: must be an array of objects with a \"src\"",
            ));
        }
    }
    Ok(())
}

fn string_list<'a>(value: &'a Value, context: &str) -> SimResult<Vec<&'a str>> {
    value
        .as_array()
        .and_then(|items| items.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
        .ok_or_else(|| SimError::bad_request(format!("{context}: must be a list of strings")))
}

fn is_tag_name(tag: &str) -> bool {
    tag.strip_prefix("tag:").is_some_and(|name| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// Every `group:`/`tag:` a rule's `src`/`dst` names must be defined.
fn check_rule_references(
    doc: &Value,
    section: &str,
    groups: &Map<String, Value>,
    tag_owners: &Map<String, Value>,
) -> SimResult<()> {
    let Some(rules) = doc.get(section) else {
        return Ok(());
    };
    let rules = rules
        .as_array()
        .ok_or_else(|| SimError::bad_request(format!("{section:?} must be an array")))?;
    for (i, rule) in rules.iter().enumerate() {
        if !rule.is_object() {
            return Err(SimError::bad_request(format!(
                "{section}[{i}]: must be an object"
            )));
        }
        if section == "acls" && rule.get("action").and_then(Value::as_str) != Some("accept") {
            return Err(SimError::bad_request(format!(
                "{section}[{i}]: action must be \"accept\""
            )));
        }
        for field in ["src", "dst", "users", "ports"] {
            if section == "ssh" && field == "users" {
                continue; // SSH users are login names on the host, not tailnet identities.
            }
            let Some(entries) = rule.get(field) else {
                continue;
            };
            let context = format!("{section}[{i}].{field}");
            for entry in string_list(entries, &context)? {
                let target = if section == "acls" && matches!(field, "dst" | "ports") {
                    entry.rsplit_once(':').map_or(entry, |(host, _)| host)
                } else {
                    entry
                };
                if target.starts_with("group:") && !groups.contains_key(target) {
                    return Err(SimError::bad_request(format!(
                        "{context}: group {target:?} is not defined"
                    )));
                }
                if target.starts_with("tag:") && !tag_owners.contains_key(target) {
                    return Err(SimError::bad_request(format!(
                        "{context}: tag {target:?} is not defined in tagOwners"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Parses `a.b.c.d`, `a.b.c.d/n` or the IPv6 forms into (address, prefix length).
pub(crate) fn parse_prefix(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
        None => {
            let a = s.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

/// Whether `ip` is inside `prefix`.
pub(crate) fn prefix_contains(prefix: (IpAddr, u8), ip: IpAddr) -> bool {
    match (prefix.0, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix.1)).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.1))
                .unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

/// Every tag must be defined in the current policy's `tagOwners`, and an OAuth caller must own
/// it (be tagged with it or with one of its owners); else the API's 400.
pub(crate) fn check_tags(
    state: &Tailnet,
    caller: Option<&Caller>,
    tags: &[String],
) -> SimResult<()> {
    let owners = state.policy.doc.get("tagOwners").and_then(Value::as_object);
    let permitted = |tag: &String| -> bool {
        let Some(tag_owners) = owners.and_then(|o| o.get(tag.as_str())) else {
            return false;
        };
        match caller {
            None | Some(Caller::ApiKey { .. }) => true,
            Some(Caller::OAuth { tags: own, .. }) => {
                own.contains(tag)
                    || tag_owners
                        .as_array()
                        .is_some_and(|o| o.iter().any(|o| own.iter().any(|t| o == t)))
            }
        }
    };
    let rejected: Vec<&str> = tags
        .iter()
        .filter(|t| !permitted(t))
        .map(String::as_str)
        .collect();
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(SimError::bad_request(format!(
            "requested tags [{}] are invalid or not permitted",
            rejected.join(" ")
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Preview

/// `POST /acl/preview?type=user|ipport&previewFor=...`: which `acls` rules of the candidate
/// policy (the body) apply to a user or to an ip:port.
///
/// An approximation of the real endpoint: only `acls` are considered (not `grants`); users match
/// a rule through `*`, their login, a group they belong to or `autogroup:member`; an ip:port
/// matches a destination through `*`, an address or prefix, a `hosts` alias, or a tag or user
/// whose devices have that address. `lineNumber` is the line the rule starts on.
async fn preview(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let preview_type = query
        .get("type")
        .cloned()
        .ok_or_else(|| SimError::bad_request("missing required query parameter \"type\""))?;
    let preview_for = query
        .get("previewFor")
        .cloned()
        .ok_or_else(|| SimError::bad_request("missing required query parameter \"previewFor\""))?;
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let text = body_text(&body)?;
    let doc = parse_strict(text)
        .map_err(|e| SimError::bad_request(format!("parsing policy file: {e}")))?;
    let lines = rule_lines(text);
    let rules = doc
        .get("acls")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut matches = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let src = rule_list(rule, "src", "users");
        let dst = rule_list(rule, "dst", "ports");
        let hit: Option<Vec<String>> = match preview_type.as_str() {
            "user" => src
                .iter()
                .any(|s| source_matches_user(&doc, &state, s, &preview_for))
                .then(|| dst.clone()),
            "ipport" => {
                let matched: Vec<String> = dst
                    .iter()
                    .filter(|d| destination_matches(&doc, &state, d, &preview_for))
                    .cloned()
                    .collect();
                (!matched.is_empty()).then_some(matched)
            }
            other => {
                return Err(SimError::bad_request(format!(
                    "type must be \"user\" or \"ipport\", got {other:?}"
                )));
            }
        };
        if let Some(ports) = hit {
            let line = lines.get(i).copied().unwrap_or(0);
            matches.push(json!({"users": src, "ports": ports, "lineNumber": line}));
        }
    }
    Ok(Json(json!({
        "matches": matches,
        "type": preview_type,
        "previewFor": preview_for,
    })))
}

fn rule_list(rule: &Value, field: &str, legacy: &str) -> Vec<String> {
    rule.get(field)
        .or_else(|| rule.get(legacy))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// 1-based line of each `acls` entry, found through jsonc-parser's syntax tree (the text has
/// already passed the strict parse; this only locates things).
fn rule_lines(text: &str) -> Vec<usize> {
    let parsed = jsonc_parser::parse_to_ast(text, &Default::default(), &Default::default());
    let Ok(parsed) = parsed else {
        return Vec::new();
    };
    let Some(acls) = parsed
        .value
        .as_ref()
        .and_then(|v| v.as_object())
        .and_then(|o| o.get_array("acls"))
    else {
        return Vec::new();
    };
    acls.elements
        .iter()
        .map(|element| {
            use jsonc_parser::common::Ranged;
            text[..element.start()].matches('\n').count() + 1
        })
        .collect()
}

fn group_members<'a>(doc: &'a Value, group: &str) -> Vec<&'a str> {
    doc.pointer(&format!(
        "/groups/{}",
        group.replace('~', "~0").replace('/', "~1")
    ))
    .and_then(Value::as_array)
    .map(|m| m.iter().filter_map(Value::as_str).collect())
    .unwrap_or_default()
}

fn source_matches_user(doc: &Value, state: &Tailnet, source: &str, user: &str) -> bool {
    match source {
        "*" => true,
        "autogroup:member" => state
            .users
            .iter()
            .any(|u| u.login_name == user && u.user_type == "member"),
        s if s.starts_with("group:") => group_members(doc, s).contains(&user),
        s => s == user,
    }
}

/// Does the acl destination `dst` (`target:ports`) cover `ip_port`?
fn destination_matches(doc: &Value, state: &Tailnet, dst: &str, ip_port: &str) -> bool {
    let Some((want_host, want_port)) = ip_port.rsplit_once(':') else {
        return false;
    };
    let Ok(want_port) = want_port.parse::<u16>() else {
        return false;
    };
    let want_host = want_host.trim_start_matches('[').trim_end_matches(']');
    let Some(want_ip) = want_host
        .parse::<IpAddr>()
        .ok()
        .or_else(|| resolve_host(doc, want_host).map(|p| p.0))
    else {
        return false;
    };
    let Some((target, ports)) = dst.rsplit_once(':') else {
        return false;
    };
    ports_contain(ports, want_port) && target_has_ip(doc, state, target, want_ip)
}

fn resolve_host(doc: &Value, name: &str) -> Option<(IpAddr, u8)> {
    doc.get("hosts")?.get(name)?.as_str().and_then(parse_prefix)
}

fn ports_contain(ports: &str, port: u16) -> bool {
    ports.split(',').any(|p| match p.split_once('-') {
        _ if p == "*" => true,
        Some((lo, hi)) => matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&port)),
        None => p.parse::<u16>() == Ok(port),
    })
}

fn target_has_ip(doc: &Value, state: &Tailnet, target: &str, ip: IpAddr) -> bool {
    if target == "*" {
        return true;
    }
    if let Some(prefix) = parse_prefix(target).or_else(|| resolve_host(doc, target)) {
        return prefix_contains(prefix, ip);
    }
    let ip = ip.to_string();
    let owns = |device: &super::state::Device| device.addresses.contains(&ip);
    if target.starts_with("tag:") {
        return state
            .devices
            .iter()
            .any(|d| owns(d) && d.tags.iter().any(|t| t == target));
    }
    let users: Vec<&str> = if target.starts_with("group:") {
        group_members(doc, target)
    } else {
        vec![target]
    };
    state
        .devices
        .iter()
        .any(|d| owns(d) && d.tags.is_empty() && users.contains(&d.user.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_contain() {
        let net = parse_prefix("10.10.0.0/16").unwrap();
        assert!(prefix_contains(net, "10.10.1.20".parse().unwrap()));
        assert!(!prefix_contains(net, "10.11.0.1".parse().unwrap()));
        assert!(prefix_contains(
            parse_prefix("0.0.0.0/0").unwrap(),
            "8.8.8.8".parse().unwrap()
        ));
        assert!(prefix_contains(
            parse_prefix("::/0").unwrap(),
            "fd7a::1".parse().unwrap()
        ));
        assert!(parse_prefix("10.0.0.0/33").is_none());
        assert!(parse_prefix("not-an-ip").is_none());
        assert_eq!(parse_prefix("1.2.3.4").unwrap().1, 32);
    }

    #[test]
    fn port_lists_and_ranges_match() {
        assert!(ports_contain("*", 22));
        assert!(ports_contain("22,80,443", 80));
        assert!(!ports_contain("22,80,443", 8080));
        assert!(ports_contain("1000-2000", 1500));
        assert!(!ports_contain("1000-2000", 999));
    }

    #[test]
    fn sanity_check_rejects_undefined_owners_groups_and_tags() {
        let bad_owner = json!({"tagOwners": {"tag:x": ["group:nope"]}});
        assert!(
            sanity_check(&bad_owner)
                .unwrap_err()
                .message
                .contains("group:nope")
        );
        let bad_ref = json!({"tagOwners": {"tag:x": []}, "acls": [{"action": "accept", "src": ["*"], "dst": ["tag:y:22"]}]});
        assert!(
            sanity_check(&bad_ref)
                .unwrap_err()
                .message
                .contains("tag:y")
        );
        let nested = json!({"groups": {"group:a": ["group:b"]}});
        assert!(sanity_check(&nested).is_err());
        let bad_host = json!({"hosts": {"db": "300.1.1.1"}});
        assert!(sanity_check(&bad_host).is_err());
        let good = json!({
            "groups": {"group:a": ["a@example.com"]},
            "tagOwners": {"tag:x": ["group:a"], "tag:y": ["tag:x", "autogroup:admin"]},
            "hosts": {"db": "10.0.0.1", "net": "10.0.0.0/8"},
            "acls": [{"action": "accept", "src": ["group:a"], "dst": ["tag:y:22", "db:*"]}],
            "ssh": [{"action": "check", "src": ["group:a"], "dst": ["tag:x"], "users": ["root"]}],
        });
        sanity_check(&good).unwrap();
    }

    #[test]
    fn if_match_needs_the_exact_etag() {
        let policy = default_policy();
        assert!(check_if_match(&policy, &policy.etag).is_ok());
        assert!(check_if_match(&policy, TS_DEFAULT).is_ok());
        let requoted = format!("\"{}\"", policy.etag);
        assert_eq!(check_if_match(&policy, &requoted).unwrap_err().status, 412);
        let unquoted = policy.etag.trim_matches('"').to_owned();
        assert_eq!(check_if_match(&policy, &unquoted).unwrap_err().status, 412);
        let custom = PolicyState {
            is_default: false,
            ..policy
        };
        assert_eq!(
            check_if_match(&custom, TS_DEFAULT).unwrap_err().message,
            PRECONDITION_FAILED
        );
    }

    #[test]
    fn rule_lines_point_at_each_acl_entry() {
        let text = "// c\n{\n\t\"acls\": [\n\t\t{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]},\n\n\t\t{\"action\": \"accept\", \"src\": [\"a\"], \"dst\": [\"b:1\"]},\n\t],\n}\n";
        assert_eq!(rule_lines(text), vec![4, 6]);
    }
}
