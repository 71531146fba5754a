//! `adopt_drift` for the kinds that mirror a piece of live tailnet state: the fields the
//! resource manages are set to what the tailnet holds now, so once applied the planner finds
//! nothing to write (`Drifted=False`) and the console's edit stays.
//!
//! - `DNSConfig`: each setting its spec manages (nameservers, split DNS, search paths,
//!   MagicDNS, override local DNS) from the live DNS.
//! - `ManagedTailnet`: each `spec.settings` field from the live settings.
//! - `TailscaleService`: its `ports`, `tags` and `comment` from the live service.
//! - `DeviceTagSet`: what its matched devices agree on (tags, authorization, key expiry,
//!   routes); devices that disagree are refused, naming two of them.
//!
//! A resource whose fields already match is `NotDrifted`; unknown live state is refused.
use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::{Adoption, ProposalError, ProposalWorld};
use crate::reconcile::device_tag_set::select::matches;
use crate::resources::device_tag_set::{DeviceTagSetSpec, TagMode};
use crate::resources::dns_config::{DNSConfigSpec, Nameserver};
use crate::resources::tailscale_service::TailscaleServiceSpec;
use crate::tailscale::DnsResolver;

fn label(target: &Value) -> String {
    format!(
        "{}/{}",
        target["kind"].as_str().unwrap_or("?"),
        target["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn spec<T: DeserializeOwned>(target: &Value) -> Result<T, ProposalError> {
    serde_json::from_value(target["spec"].clone())
        .map_err(|e| ProposalError::InvalidTarget(format!("spec: {e}")))
}

fn unknown(target: &Value, what: &str) -> ProposalError {
    ProposalError::CannotAdopt {
        target: label(target),
        message: format!(
            "the tailnet's {what} could not be read, so there is nothing to adopt from"
        ),
    }
}

/// The adoption of `fields` (a merge patch of `spec`), or `NotDrifted` when empty.
fn adoption(target: &Value, fields: Map<String, Value>) -> Result<Adoption, ProposalError> {
    if fields.is_empty() {
        return Err(ProposalError::NotDrifted {
            target: label(target),
        });
    }
    Ok(Adoption {
        target: target["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        patch: json!({ "spec": fields }),
    })
}

/// Sets `field` when the resource manages it (`current` is `Some`) and the live value differs.
fn adopt_field(fields: &mut Map<String, Value>, field: &str, current: Option<Value>, live: Value) {
    if current.is_some_and(|c| c != live) {
        fields.insert(field.to_owned(), live);
    }
}

fn nameservers(list: &[DnsResolver]) -> Vec<Nameserver> {
    list.iter()
        .map(|r| Nameserver {
            address: r.address.clone(),
            use_with_exit_node: r.use_with_exit_node,
        })
        .collect()
}

pub(super) fn dns(target: &Value, world: &ProposalWorld) -> Result<Adoption, ProposalError> {
    let live = world
        .live_dns
        .as_ref()
        .ok_or_else(|| unknown(target, "DNS"))?;
    let spec: DNSConfigSpec = spec(target)?;
    let dns = &spec.dns;
    let mut fields = Map::new();
    adopt_field(
        &mut fields,
        "nameservers",
        dns.nameservers.as_ref().map(to),
        to(&nameservers(&live.nameservers)),
    );
    if let Some(split) = &dns.split_dns {
        // A merge patch merges maps: domains gone from the tailnet are removed with null.
        let mut patch = Map::new();
        for (domain, resolvers) in &live.split_dns {
            let wanted = nameservers(resolvers);
            if split.get(domain) != Some(&wanted) && !wanted.is_empty() {
                patch.insert(domain.clone(), to(&wanted));
            }
        }
        for domain in split.keys() {
            if live.split_dns.get(domain).is_none_or(Vec::is_empty) {
                patch.insert(domain.clone(), Value::Null);
            }
        }
        if !patch.is_empty() {
            fields.insert("splitDNS".into(), Value::Object(patch));
        }
    }
    adopt_field(
        &mut fields,
        "searchPaths",
        dns.search_paths.as_ref().map(to),
        to(&live.search_paths),
    );
    adopt_field(
        &mut fields,
        "magicDNS",
        dns.magic_dns.map(Value::Bool),
        Value::Bool(live.preferences.magic_dns),
    );
    adopt_field(
        &mut fields,
        "overrideLocalDNS",
        dns.override_local_dns.map(Value::Bool),
        Value::Bool(live.preferences.override_local_dns),
    );
    adoption(target, fields)
}

pub(super) fn settings(target: &Value, world: &ProposalWorld) -> Result<Adoption, ProposalError> {
    let live = world
        .live_settings
        .as_ref()
        .ok_or_else(|| unknown(target, "settings"))?;
    let managed = target["spec"]["settings"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut settings = Map::new();
    for (field, value) in &managed {
        match live.get(field) {
            Some(live) if !live.is_null() && live != value => {
                settings.insert(field.clone(), live.clone());
            }
            _ => {}
        }
    }
    let fields = if settings.is_empty() {
        Map::new()
    } else {
        Map::from_iter([("settings".to_owned(), Value::Object(settings))])
    };
    adoption(target, fields)
}

pub(super) fn service(target: &Value, world: &ProposalWorld) -> Result<Adoption, ProposalError> {
    let services = world
        .live_services
        .as_ref()
        .ok_or_else(|| unknown(target, "services"))?;
    let spec: TailscaleServiceSpec = spec(target)?;
    let name = target["metadata"]["name"].as_str().unwrap_or_default();
    let service_name = spec
        .service_name
        .clone()
        .unwrap_or_else(|| format!("svc:{name}"));
    let live = services
        .iter()
        .find(|s| s.name == service_name)
        .ok_or_else(|| ProposalError::CannotAdopt {
            target: label(target),
            message: format!(
                "{service_name} is not in the tailnet (deleted in the console?): to keep it \
                 deleted, propose deleting this resource"
            ),
        })?;
    let mut fields = Map::new();
    adopt_field(
        &mut fields,
        "ports",
        Some(json!(spec.ports)),
        json!(live.ports),
    );
    adopt_field(
        &mut fields,
        "tags",
        Some(json!(spec.tags)),
        json!(live.tags),
    );
    adopt_field(
        &mut fields,
        "comment",
        Some(json!(spec.comment)),
        json!(live.comment),
    );
    adoption(target, fields)
}

pub(super) fn device_set(target: &Value, world: &ProposalWorld) -> Result<Adoption, ProposalError> {
    let devices = world
        .live_devices
        .as_ref()
        .ok_or_else(|| unknown(target, "devices"))?;
    let spec: DeviceTagSetSpec = spec(target)?;
    let matched: Vec<_> = devices
        .iter()
        .filter(|d| matches(&spec.selector, d))
        .collect();
    if matched.is_empty() {
        return Err(ProposalError::CannotAdopt {
            target: label(target),
            message: "its selector matches no device: nothing to adopt".into(),
        });
    }
    // The one value every matched device has, or a refusal naming two that differ.
    let agreed = |what: &str, value: &dyn Fn(&crate::tailscale::Device) -> Value| {
        let first = value(matched[0]);
        match matched.iter().find(|d| value(d) != first) {
            None => Ok(first),
            Some(other) => Err(ProposalError::CannotAdopt {
                target: label(target),
                message: format!(
                    "its devices differ in {what} ({}: {first}, {}: {}): one set cannot hold \
                     both; change the devices or split the set",
                    matched[0].hostname,
                    other.hostname,
                    value(other)
                ),
            }),
        }
    };
    let mut fields = Map::new();
    let tags = match spec.mode {
        // Add mode: a tag the console removed from every device is no longer wanted.
        TagMode::Add => {
            let kept: Vec<&String> = spec
                .tags
                .iter()
                .filter(|t| matched.iter().all(|d| d.tags.contains(t)))
                .collect();
            json!(kept)
        }
        TagMode::Exact => {
            let set = |d: &crate::tailscale::Device| json!(d.tags.iter().collect::<BTreeSet<_>>());
            agreed("tags", &set)?
        }
    };
    let wanted: BTreeSet<&String> = spec.tags.iter().collect();
    if serde_json::from_value::<BTreeSet<String>>(tags.clone())
        .is_ok_and(|t| t.iter().collect::<BTreeSet<_>>() != wanted)
    {
        fields.insert("tags".into(), tags);
    }
    if spec.authorized.is_some() {
        let live = agreed("authorization", &|d| json!(d.authorized))?;
        adopt_field(
            &mut fields,
            "authorized",
            spec.authorized.map(Value::Bool),
            live,
        );
    }
    if spec.key_expiry_disabled.is_some() {
        let live = agreed("key expiry", &|d| json!(d.key_expiry_disabled))?;
        adopt_field(
            &mut fields,
            "keyExpiryDisabled",
            spec.key_expiry_disabled.map(Value::Bool),
            live,
        );
    }
    if let Some(routes) = &spec.routes {
        let live = agreed("enabled routes", &|d| {
            json!(d.enabled_routes.iter().flatten().collect::<BTreeSet<_>>())
        })?;
        let current: BTreeSet<&String> = routes.iter().collect();
        if json!(current) != live {
            fields.insert("routes".into(), live);
        }
    }
    adoption(target, fields)
}

fn to<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tailscale::{Device, DnsConfiguration, DnsPreferences, Service};

    fn object(kind: &str, spec: Value) -> Value {
        json!({"apiVersion": "tailnet.ops.dev/v1alpha1", "kind": kind,
               "metadata": {"name": "x"}, "spec": spec})
    }

    fn resolver(address: &str) -> DnsResolver {
        DnsResolver {
            address: address.into(),
            use_with_exit_node: false,
        }
    }

    #[test]
    fn dns_adopts_the_managed_settings_and_removes_split_domains_gone_live() {
        let target = object(
            "DNSConfig",
            json!({"nameservers": [{"address": "1.1.1.1"}],
                   "splitDNS": {"corp.example.com": [{"address": "10.0.0.53"}]},
                   "magicDNS": true}),
        );
        let world = ProposalWorld {
            live_dns: Some(DnsConfiguration {
                nameservers: vec![resolver("1.1.1.1"), resolver("9.9.9.9")],
                preferences: DnsPreferences {
                    magic_dns: true,
                    override_local_dns: true,
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let adopted = dns(&target, &world).unwrap();
        assert_eq!(
            adopted.patch,
            json!({"spec": {
                "nameservers": [{"address": "1.1.1.1", "useWithExitNode": false},
                                {"address": "9.9.9.9", "useWithExitNode": false}],
                "splitDNS": {"corp.example.com": null}}})
        );
        let unchanged = object("DNSConfig", json!({"magicDNS": true}));
        assert!(matches!(
            dns(&unchanged, &world),
            Err(ProposalError::NotDrifted { .. })
        ));
        let blind = ProposalWorld::default();
        assert!(
            dns(&target, &blind)
                .unwrap_err()
                .to_string()
                .contains("could not be read")
        );
    }

    #[test]
    fn settings_and_services_adopt_what_they_manage() {
        let tailnet = object(
            "ManagedTailnet",
            json!({"settings": {"devicesApprovalOn": true, "httpsEnabled": true}}),
        );
        let world = ProposalWorld {
            live_settings: Some(
                json!({"devicesApprovalOn": false, "httpsEnabled": true, "usersApprovalOn": true}),
            ),
            live_services: Some(vec![Service {
                name: "svc:x".into(),
                ports: vec!["tcp:443".into(), "tcp:80".into()],
                tags: vec!["tag:web".into()],
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            settings(&tailnet, &world).unwrap().patch,
            json!({"spec": {"settings": {"devicesApprovalOn": false}}})
        );
        let svc = object(
            "TailscaleService",
            json!({"ports": ["tcp:443"], "tags": ["tag:web"], "hosts": {"hostnames": ["web-1"]}}),
        );
        assert_eq!(
            service(&svc, &world).unwrap().patch,
            json!({"spec": {"ports": ["tcp:443", "tcp:80"]}})
        );
    }

    fn device(name: &str, tags: &[&str], authorized: bool) -> Device {
        Device {
            hostname: name.into(),
            name: format!("{name}.tail.ts.net"),
            node_id: format!("n-{name}"),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            authorized,
            ..Default::default()
        }
    }

    #[test]
    fn a_device_set_adopts_what_its_devices_agree_on() {
        let set = object(
            "DeviceTagSet",
            json!({"selector": {"hostnames": ["web-*"]}, "tags": ["tag:web", "tag:prod"], "authorized": true}),
        );
        let mut world = ProposalWorld {
            live_devices: Some(vec![
                device("web-1", &["tag:web"], true),
                device("web-2", &["tag:web"], true),
                device("db-1", &[], false),
            ]),
            ..Default::default()
        };
        // tag:prod removed from every web device in the console: no longer wanted.
        assert_eq!(
            device_set(&set, &world).unwrap().patch,
            json!({"spec": {"tags": ["tag:web"]}})
        );
        // One device de-authorized, the other not: refused, naming both.
        world.live_devices = Some(vec![
            device("web-1", &["tag:web", "tag:prod"], true),
            device("web-2", &["tag:web", "tag:prod"], false),
        ]);
        let err = device_set(&set, &world).unwrap_err().to_string();
        assert!(
            err.contains("web-1: true") && err.contains("web-2: false"),
            "{err}"
        );
    }
}
