//! Who changed what: the configuration audit log entry behind a drift (pure; the skeleton
//! fetches the entries). A drift's `changedBy` says who, where, when and what, or
//! `actor unknown` and why; attribution never fails a reconcile.
use crate::snapshot::Area;
use crate::tailscale::AuditLogEntry;

/// Which audit entries concern an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditFilter {
    /// `target.type`: `TAILNET` or `NODE`.
    pub target_type: &'static str,
    /// `target.property` values; empty: any.
    pub properties: &'static [&'static str],
}

/// The audit entries that change what a kind reading `area` manages; `None` when the audit log
/// has no property for it.
pub fn filter_for(area: Area) -> Option<AuditFilter> {
    match area {
        Area::Policy => Some(AuditFilter {
            target_type: "TAILNET",
            properties: &["ACL"],
        }),
        Area::Dns => Some(AuditFilter {
            target_type: "TAILNET",
            properties: &["DNS_CONFIG", "MAGIC_DNS"],
        }),
        Area::Devices => Some(AuditFilter {
            target_type: "NODE",
            properties: &[],
        }),
        Area::Settings => Some(AuditFilter {
            target_type: "TAILNET",
            properties: &[],
        }),
        Area::Keys | Area::Services | Area::Users => None,
    }
}

/// The latest matching change, described; `None` when no entry matches.
pub fn describe(entries: &[AuditLogEntry], filter: AuditFilter) -> Option<String> {
    let entry = entries
        .iter()
        .filter(|e| e.target.type_ == filter.target_type)
        .filter(|e| {
            filter.properties.is_empty() || filter.properties.contains(&e.target.property.as_str())
        })
        .max_by(|a, b| a.event_time.cmp(&b.event_time))?;
    Some(format!(
        "{} {} at {}: {} {}",
        actor(entry),
        origin(&entry.origin),
        entry.event_time,
        entry.action,
        match (entry.target.name.as_str(), entry.target.property.as_str()) {
            ("", property) => property.to_owned(),
            (name, "") => name.to_owned(),
            (name, property) => format!("{property} of {name}"),
        }
    ))
}

/// A login or display name; for an API client its key id (never a secret).
fn actor(entry: &AuditLogEntry) -> String {
    let a = &entry.actor;
    match a.type_.as_str() {
        "OAUTH_CLIENT" => format!("API client {}", a.id),
        _ if !a.login_name.is_empty() && !a.display_name.is_empty() => {
            format!("{} ({})", a.login_name, a.display_name)
        }
        _ if !a.login_name.is_empty() => a.login_name.clone(),
        _ if !a.display_name.is_empty() => a.display_name.clone(),
        _ => format!("{} {}", a.type_.to_lowercase(), a.id),
    }
}

fn origin(origin: &str) -> String {
    match origin {
        "ADMIN_CONSOLE" => "in the admin console".to_owned(),
        "CONFIG_API" => "through the API".to_owned(),
        "" => "".to_owned(),
        other => format!("via {}", other.to_lowercase()),
    }
}

/// `actor unknown (why)`.
pub fn unknown(why: &str) -> String {
    format!("actor unknown ({why})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tailscale::{AuditActor, AuditTarget};

    fn entry(time: &str, login: &str, property: &str, origin: &str) -> AuditLogEntry {
        AuditLogEntry {
            event_time: time.into(),
            origin: origin.into(),
            actor: AuditActor {
                id: "u1".into(),
                type_: "USER".into(),
                login_name: login.into(),
                display_name: String::new(),
            },
            target: AuditTarget {
                id: "T1".into(),
                name: "example.com".into(),
                type_: "TAILNET".into(),
                property: property.into(),
            },
            action: "UPDATE".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_latest_change_of_the_area_is_named() {
        let entries = [
            entry(
                "2026-12-06T10:00:00Z",
                "bob@example.com",
                "ACL",
                "ADMIN_CONSOLE",
            ),
            entry(
                "2026-12-06T11:00:00Z",
                "carol@example.com",
                "ACL",
                "ADMIN_CONSOLE",
            ),
            entry(
                "2026-12-06T12:00:00Z",
                "dave@example.com",
                "DNS_CONFIG",
                "CONFIG_API",
            ),
        ];
        let policy = filter_for(Area::Policy).unwrap();
        assert_eq!(
            describe(&entries, policy).unwrap(),
            "carol@example.com in the admin console at 2026-12-06T11:00:00Z: UPDATE ACL of example.com"
        );
        let dns = describe(&entries, filter_for(Area::Dns).unwrap()).unwrap();
        assert!(dns.starts_with("dave@example.com through the API"), "{dns}");
        assert_eq!(describe(&entries[..0], policy), None);
        assert_eq!(filter_for(Area::Keys), None);
    }

    #[test]
    fn an_api_client_is_named_by_its_key_id() {
        let mut e = entry("2026-12-06T10:00:00Z", "", "ACL", "CONFIG_API");
        e.actor.type_ = "OAUTH_CLIENT".into();
        e.actor.id = "kAbc123CNTRL".into();
        let text = describe(&[e], filter_for(Area::Policy).unwrap()).unwrap();
        assert!(
            text.starts_with("API client kAbc123CNTRL through the API"),
            "{text}"
        );
    }
}
