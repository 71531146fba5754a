//! DNS: the combined `/dns/configuration` endpoint (POST replaces everything; omitted booleans
//! become false) and the older per-part endpoints, all over the same state.
use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::{SimError, SimResult, parse_json};
use super::state::{DnsConfig, DnsResolver};
use super::{SimTailnet, check_tailnet};

pub(crate) fn routes() -> Router<SimTailnet> {
    Router::new()
        .route(
            "/api/v2/tailnet/{tailnet}/dns/configuration",
            get(get_configuration).post(set_configuration),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/dns/nameservers",
            get(get_nameservers).post(set_nameservers),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/dns/preferences",
            get(get_preferences).post(set_preferences),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/dns/searchpaths",
            get(get_searchpaths).post(set_searchpaths),
        )
        .route(
            "/api/v2/tailnet/{tailnet}/dns/split-dns",
            get(get_split).patch(patch_split).put(put_split),
        )
}

/// A resolver is an IP address or a DNS-over-HTTPS URL.
fn check_resolver(address: &str) -> SimResult<()> {
    if address.parse::<IpAddr>().is_ok() || address.starts_with("https://") {
        Ok(())
    } else {
        Err(SimError::bad_request(format!(
            "invalid nameserver {address:?}: want an IP address or an https:// DoH URL"
        )))
    }
}

fn check_domain(domain: &str) -> SimResult<()> {
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if valid {
        Ok(())
    } else {
        Err(SimError::bad_request(format!("invalid domain {domain:?}")))
    }
}

/// Checks a whole configuration before it replaces the current one.
pub(crate) fn check_config(config: &DnsConfig) -> SimResult<()> {
    for ns in &config.nameservers {
        check_resolver(&ns.address)?;
    }
    for (domain, resolvers) in &config.split_dns {
        check_domain(domain)?;
        for r in resolvers {
            check_resolver(&r.address)?;
        }
    }
    for path in &config.search_paths {
        check_domain(path)?;
    }
    Ok(())
}

async fn get_configuration(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
) -> SimResult<Json<DnsConfig>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    Ok(Json(state.dns.clone()))
}

/// Replaces the whole configuration. Deserializing fills every omitted field with its zero
/// value, so a body without `preferences.magicDNS` turns MagicDNS off, like the real endpoint.
async fn set_configuration(
    State(sim): State<SimTailnet>,
    Extension(caller): Extension<Caller>,
    Path(tailnet): Path<String>,
    body: Bytes,
) -> SimResult<Json<DnsConfig>> {
    let config: DnsConfig = parse_json(&body)?;
    check_config(&config)?;
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    state.dns = config;
    let written = state.dns.clone();
    drop(state);
    sim.audit_api(&caller, sim.tailnet_target(), "DNS_CONFIG", "UPDATE");
    Ok(Json(written))
}

/// Keeps `useWithExitNode` of addresses that stay; new ones start off.
fn resolvers_for(addresses: Vec<String>, previous: &[DnsResolver]) -> Vec<DnsResolver> {
    addresses
        .into_iter()
        .map(|address| {
            previous
                .iter()
                .find(|r| r.address == address)
                .cloned()
                .unwrap_or_else(|| DnsResolver::new(address))
        })
        .collect()
}

fn addresses(resolvers: &[DnsResolver]) -> Vec<&str> {
    resolvers.iter().map(|r| r.address.as_str()).collect()
}

async fn get_nameservers(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    Ok(Json(json!({"dns": addresses(&state.dns.nameservers)})))
}

#[derive(Deserialize)]
struct NameserversBody {
    dns: Option<Vec<String>>,
}

/// Replaces the global nameservers; removing them all turns MagicDNS off.
async fn set_nameservers(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let body: NameserversBody = parse_json(&body)?;
    let dns = body
        .dns
        .ok_or_else(|| SimError::bad_request("\"dns\" is required"))?;
    for address in &dns {
        check_resolver(address)?;
    }
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    state.dns.nameservers = resolvers_for(dns, &state.dns.nameservers);
    if state.dns.nameservers.is_empty() {
        state.dns.preferences.magic_dns = false;
    }
    Ok(Json(json!({
        "dns": addresses(&state.dns.nameservers),
        "magicDNS": state.dns.preferences.magic_dns,
    })))
}

async fn get_preferences(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    Ok(Json(json!({"magicDNS": state.dns.preferences.magic_dns})))
}

#[derive(Deserialize)]
struct PreferencesBody {
    #[serde(rename = "magicDNS")]
    magic_dns: Option<bool>,
}

/// Sets MagicDNS. As the endpoint documents, enabling it needs at least one nameserver.
async fn set_preferences(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let body: PreferencesBody = parse_json(&body)?;
    let magic_dns = body
        .magic_dns
        .ok_or_else(|| SimError::bad_request("\"magicDNS\" is required"))?;
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    if magic_dns && state.dns.nameservers.is_empty() {
        return Err(SimError::bad_request(
            "cannot enable MagicDNS without at least one DNS nameserver",
        ));
    }
    state.dns.preferences.magic_dns = magic_dns;
    Ok(Json(json!({"magicDNS": magic_dns})))
}

async fn get_searchpaths(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    Ok(Json(json!({"searchPaths": state.dns.search_paths})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchPathsBody {
    search_paths: Option<Vec<String>>,
}

async fn set_searchpaths(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let body: SearchPathsBody = parse_json(&body)?;
    let paths = body
        .search_paths
        .ok_or_else(|| SimError::bad_request("\"searchPaths\" is required"))?;
    for p in &paths {
        check_domain(p)?;
    }
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    state.dns.search_paths = paths;
    Ok(Json(json!({"searchPaths": state.dns.search_paths})))
}

fn split_json(split: &BTreeMap<String, Vec<DnsResolver>>) -> Value {
    let map: serde_json::Map<String, Value> = split
        .iter()
        .map(|(domain, resolvers)| (domain.clone(), json!(addresses(resolvers))))
        .collect();
    Value::Object(map)
}

async fn get_split(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
) -> SimResult<Json<Value>> {
    let state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    Ok(Json(split_json(&state.dns.split_dns)))
}

type SplitBody = BTreeMap<String, Option<Vec<String>>>;

fn check_split(body: &SplitBody) -> SimResult<()> {
    for (domain, resolvers) in body {
        check_domain(domain)?;
        for r in resolvers.iter().flatten() {
            check_resolver(r)?;
        }
    }
    Ok(())
}

/// Merges: only the listed domains change; `null` (or `[]`) clears a domain.
async fn patch_split(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let body: SplitBody = parse_json(&body)?;
    check_split(&body)?;
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    for (domain, resolvers) in body {
        match resolvers.filter(|r| !r.is_empty()) {
            Some(list) => {
                let previous = state
                    .dns
                    .split_dns
                    .get(&domain)
                    .cloned()
                    .unwrap_or_default();
                state
                    .dns
                    .split_dns
                    .insert(domain, resolvers_for(list, &previous));
            }
            None => {
                state.dns.split_dns.remove(&domain);
            }
        }
    }
    Ok(Json(split_json(&state.dns.split_dns)))
}

/// Replaces the whole map; `{}` clears every domain.
async fn put_split(
    State(sim): State<SimTailnet>,
    Path(tailnet): Path<String>,
    body: Bytes,
) -> SimResult<Json<Value>> {
    let body: SplitBody = parse_json(&body)?;
    check_split(&body)?;
    let mut state = sim.inner.state();
    check_tailnet(&state, &tailnet)?;
    let previous = std::mem::take(&mut state.dns.split_dns);
    for (domain, resolvers) in body {
        if let Some(list) = resolvers.filter(|r| !r.is_empty()) {
            let prev = previous.get(&domain).map(Vec::as_slice).unwrap_or(&[]);
            let resolved = resolvers_for(list, prev);
            state.dns.split_dns.insert(domain, resolved);
        }
    }
    Ok(Json(split_json(&state.dns.split_dns)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_booleans_deserialize_as_false() {
        let config: DnsConfig =
            serde_json::from_str(r#"{"nameservers": [{"address": "1.1.1.1"}]}"#).unwrap();
        assert!(!config.preferences.magic_dns);
        assert!(!config.preferences.override_local_dns);
        assert!(!config.nameservers[0].use_with_exit_node);
        let nulls: DnsConfig = serde_json::from_str(
            r#"{"splitDNS": {"a.example": null, "b.example": [{"address": "10.0.0.1"}]}}"#,
        )
        .unwrap();
        assert_eq!(nulls.split_dns.keys().collect::<Vec<_>>(), ["b.example"]);
    }

    #[test]
    fn resolvers_and_domains_are_validated() {
        assert!(check_resolver("1.1.1.1").is_ok());
        assert!(check_resolver("fd7a::53").is_ok());
        assert!(check_resolver("https://dns.example/dns-query").is_ok());
        assert!(check_resolver("not an ip").is_err());
        assert!(check_domain("corp.example.com").is_ok());
        assert!(check_domain("bad domain").is_err());
        assert!(check_domain("").is_err());
    }
}
