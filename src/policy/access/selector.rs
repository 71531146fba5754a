//! Selectors: the entries of a rule's `src` and `dst` lists, resolved against the policy's
//! `groups`, `hosts`, `tagOwners` and `ipsets`.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::eval::Atom;
use super::net::{IpPrefix, IpSet, internet};

/// Named definitions a selector can refer to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Defs {
    /// `group:x` -> member logins.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// host alias -> prefix.
    pub hosts: BTreeMap<String, IpPrefix>,
    /// Tags declared in `tagOwners`.
    pub tags: BTreeSet<String>,
    /// `ipset:x` -> resolved addresses.
    pub ipsets: BTreeMap<String, IpSet>,
}

/// Where a selector appears; decides which autogroups are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    Src,
    AclDst,
    GrantDst,
}

/// Autogroups naming user roles: they match the untagged devices of users with that role
/// (the view carries each device owner's role).
const ROLE_AUTOGROUPS: &[&str] = &[
    "autogroup:admin",
    "autogroup:owner",
    "autogroup:it-admin",
    "autogroup:network-admin",
    "autogroup:billing-admin",
    "autogroup:auditor",
];

/// `autogroup:shared` (users shared into the tailnet) is not a role and not in the view: it
/// resolves to nothing locally, with a warning, rather than being rejected.
const SHARED: &str = "autogroup:shared";

/// A resolved `src`/`dst` selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selector {
    /// `*` (and `autogroup:danger-all` as a source): everything.
    Any,
    /// A user's untagged devices.
    User(String),
    /// The untagged devices of a group's members.
    Group {
        name: String,
        members: BTreeSet<String>,
    },
    /// Devices carrying the tag.
    Tag(String),
    /// `autogroup:member`: every untagged (user-owned) device.
    Member,
    /// `autogroup:tagged`: every tagged device.
    Tagged,
    /// `autogroup:self` (destination only): the source user's own untagged devices.
    SelfDevices,
    /// `autogroup:internet` (destination only): public addresses, reached through exit nodes.
    Internet,
    /// IPs, CIDRs, host aliases and ipsets.
    Addrs { label: String, set: IpSet },
    /// `autogroup:admin`, `autogroup:owner`, …: the untagged devices of users with that role.
    Role(String),
    /// `svc:name` (grant destinations): that Tailscale Service of the view.
    Service(String),
    /// Valid in Tailscale but not resolvable locally (`autogroup:shared`).
    Unresolved { label: String },
}

impl Selector {
    /// Does this selector, used as a source, match the atom?
    pub fn matches_src(&self, atom: &Atom) -> bool {
        self.matches(atom, None)
    }

    /// Does this selector, used as a destination, match `dst` for traffic from `src`?
    pub fn matches_dst(&self, src: &Atom, dst: &Atom) -> bool {
        self.matches(dst, Some(src))
    }

    fn matches(&self, atom: &Atom, src: Option<&Atom>) -> bool {
        match self {
            Selector::Any => true,
            Selector::User(login) => atom.user.as_deref() == Some(login.as_str()),
            Selector::Group { members, .. } => {
                atom.user.as_ref().is_some_and(|u| members.contains(u))
            }
            Selector::Tag(tag) => atom.tags.contains(tag),
            Selector::Member => atom.user.is_some(),
            Selector::Tagged => !atom.tags.is_empty(),
            Selector::SelfDevices => {
                matches!(src.and_then(|s| s.user.as_ref()), Some(u) if atom.user.as_ref() == Some(u))
            }
            Selector::Internet => atom.addrs.iter().any(|a| internet().contains(*a)),
            Selector::Addrs { set, .. } => atom.addrs.iter().any(|a| set.contains(*a)),
            Selector::Role(role) => atom.role.as_deref() == Some(role.as_str()),
            Selector::Service(name) => atom.service.as_deref() == Some(name.as_str()),
            Selector::Unresolved { .. } => false,
        }
    }

    /// Does this destination selector cover the whole of `target` (an address-only target)?
    pub fn covers(&self, target: &IpSet) -> bool {
        match self {
            Selector::Any => true,
            Selector::Internet => internet().covers(target),
            Selector::Addrs { set, .. } => set.covers(target),
            _ => false,
        }
    }

    /// The address set behind an address selector, if it is one.
    pub fn addr_set(&self) -> Option<&IpSet> {
        match self {
            Selector::Addrs { set, .. } => Some(set),
            Selector::Internet => Some(internet()),
            _ => None,
        }
    }

    pub fn uses_self(&self) -> bool {
        matches!(self, Selector::SelfDevices)
    }

    /// A short label, as written in the policy.
    pub fn label(&self) -> String {
        match self {
            Selector::Any => "*".into(),
            Selector::User(u) => u.clone(),
            Selector::Group { name, .. } => name.clone(),
            Selector::Tag(t) => t.clone(),
            Selector::Member => "autogroup:member".into(),
            Selector::Tagged => "autogroup:tagged".into(),
            Selector::SelfDevices => "autogroup:self".into(),
            Selector::Internet => "autogroup:internet".into(),
            Selector::Role(role) => format!("autogroup:{role}"),
            Selector::Service(name) => name.clone(),
            Selector::Addrs { label, .. } | Selector::Unresolved { label } => label.clone(),
        }
    }
}

/// Parses one selector. `warnings` collects notes about selectors resolved to nothing.
pub(crate) fn parse_selector(
    text: &str,
    position: Position,
    defs: &Defs,
    warnings: &mut Vec<String>,
) -> Result<Selector, String> {
    if text == "*" {
        return Ok(Selector::Any);
    }
    if text.starts_with("autogroup:") {
        return parse_autogroup(text, position, warnings);
    }
    if let Some(name) = text.strip_prefix("group:") {
        check_name("group", name, text)?;
        return match defs.groups.get(text) {
            Some(members) => Ok(Selector::Group {
                name: text.to_string(),
                members: members.clone(),
            }),
            None => Err(format!("group {text:?} is not defined in \"groups\"")),
        };
    }
    if text.starts_with("tag:") {
        check_tag(text)?;
        return if defs.tags.contains(text) {
            Ok(Selector::Tag(text.to_string()))
        } else {
            Err(format!("tag {text:?} is not defined in \"tagOwners\""))
        };
    }
    if text.starts_with("ipset:") {
        return match defs.ipsets.get(text) {
            Some(set) => Ok(Selector::Addrs {
                label: text.to_string(),
                set: set.clone(),
            }),
            None => Err(format!("ipset {text:?} is not defined in \"ipsets\"")),
        };
    }
    if text.starts_with("svc:") {
        if position != Position::GrantDst {
            return Err(format!("service {text:?} can only be a grant destination"));
        }
        return Ok(Selector::Service(text.to_string()));
    }
    if let Some(set) = parse_addr_literal(text)? {
        return Ok(Selector::Addrs {
            label: text.to_string(),
            set,
        });
    }
    if text.contains('@') {
        check_user(text)?;
        return Ok(Selector::User(text.to_string()));
    }
    resolve_host(text, defs).map(|prefix| Selector::Addrs {
        label: text.to_string(),
        set: IpSet::from_prefix(prefix),
    })
}

fn parse_autogroup(
    text: &str,
    position: Position,
    warnings: &mut Vec<String>,
) -> Result<Selector, String> {
    let is_src = position == Position::Src;
    match text {
        "autogroup:member" => Ok(Selector::Member),
        "autogroup:tagged" => Ok(Selector::Tagged),
        "autogroup:self" if !is_src => Ok(Selector::SelfDevices),
        "autogroup:internet" if !is_src => Ok(Selector::Internet),
        "autogroup:danger-all" if is_src => Ok(Selector::Any),
        "autogroup:self" | "autogroup:internet" => {
            Err(format!("{text} can only be used as a destination"))
        }
        "autogroup:danger-all" => Err(format!("{text} can only be used as a source")),
        _ if ROLE_AUTOGROUPS.contains(&text) => Ok(Selector::Role(
            text.trim_start_matches("autogroup:").to_owned(),
        )),
        SHARED => {
            warnings.push(format!(
                "{text}: shared-in users are not in the local view; it matches nothing in local \
                 evaluation"
            ));
            Ok(Selector::Unresolved {
                label: text.to_string(),
            })
        }
        _ => Err(format!(
            "unknown autogroup {text:?} for network rules (supported: autogroup:member, autogroup:tagged, autogroup:self, autogroup:internet, autogroup:danger-all, and role autogroups such as autogroup:admin)"
        )),
    }
}

/// An IP or CIDR literal. `Ok(None)` when the text is not address-like at all.
pub(crate) fn parse_addr_literal(text: &str) -> Result<Option<IpSet>, String> {
    let addr_part = text.split_once('/').map_or(text, |(a, _)| a);
    if addr_part.parse::<IpAddr>().is_err() {
        return Ok(None);
    }
    IpPrefix::parse(text).map(|p| Some(IpSet::from_prefix(p)))
}

/// A host alias, optionally narrowed or widened with `/bits` (e.g. `corp/16`).
pub(crate) fn resolve_host(text: &str, defs: &Defs) -> Result<IpPrefix, String> {
    if let Some(prefix) = defs.hosts.get(text) {
        return Ok(*prefix);
    }
    if let Some((name, bits)) = text.split_once('/') {
        if let Some(prefix) = defs.hosts.get(name) {
            let bits: u8 = bits
                .parse()
                .map_err(|_| format!("{text:?} has an invalid prefix length"))?;
            return IpPrefix::new(prefix.addr(), bits)
                .ok_or_else(|| format!("{text:?} has an invalid prefix length"));
        }
    }
    Err(format!(
        "{text:?} is not a defined host alias, an IP/CIDR, a user (name@domain), a group:, tag:, or autogroup:"
    ))
}

/// Checks a tag's spelling (`tag:` plus a non-empty name without separators).
pub(crate) fn check_tag(text: &str) -> Result<(), String> {
    let name = text.strip_prefix("tag:").unwrap_or("");
    if name.contains(':') {
        return Err(format!(
            "{text:?} is not a valid tag name (ports are not allowed here; grants take ports in \"ip\")"
        ));
    }
    check_name("tag", name, text)
}

fn check_name(kind: &str, name: &str, text: &str) -> Result<(), String> {
    let bad = |c: char| c.is_whitespace() || matches!(c, ':' | ',' | '*' | '/' | '"');
    if name.is_empty() || name.chars().any(bad) {
        return Err(format!("{text:?} is not a valid {kind} name"));
    }
    Ok(())
}

pub(crate) fn check_user(text: &str) -> Result<(), String> {
    if text
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, ',' | '*'))
        || text.starts_with('@')
    {
        return Err(format!("{text:?} is not a valid user login"));
    }
    Ok(())
}

/// Host alias names: no separators, and nothing that reads as another selector kind.
pub(crate) fn check_host_name(name: &str) -> Result<(), String> {
    let bad = |c: char| c.is_whitespace() || matches!(c, ':' | '@' | '/' | ',' | '*' | '"');
    if name.is_empty() || name.chars().any(bad) {
        return Err(format!("{name:?} is not a valid host alias name"));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(format!("{name:?} is an IP address, not a host alias name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs() -> Defs {
        let mut d = Defs::default();
        d.groups.insert(
            "group:eng".into(),
            ["alice@example.com".to_string()].into_iter().collect(),
        );
        d.hosts
            .insert("corp".into(), IpPrefix::parse("10.0.0.0/8").unwrap());
        d.hosts
            .insert("db".into(), IpPrefix::parse("100.64.0.9").unwrap());
        d.tags.insert("tag:web".into());
        d
    }

    fn parse(text: &str, pos: Position) -> Result<Selector, String> {
        parse_selector(text, pos, &defs(), &mut Vec::new())
    }

    #[test]
    fn classifies_selectors() {
        assert_eq!(parse("*", Position::Src).unwrap(), Selector::Any);
        assert_eq!(
            parse("alice@example.com", Position::Src).unwrap(),
            Selector::User("alice@example.com".into())
        );
        assert!(matches!(
            parse("group:eng", Position::Src).unwrap(),
            Selector::Group { .. }
        ));
        assert_eq!(
            parse("tag:web", Position::AclDst).unwrap(),
            Selector::Tag("tag:web".into())
        );
        assert!(matches!(
            parse("10.1.0.0/16", Position::Src).unwrap(),
            Selector::Addrs { .. }
        ));
        assert!(matches!(
            parse("fd7a:115c:a1e0::1", Position::Src).unwrap(),
            Selector::Addrs { .. }
        ));
        assert!(matches!(
            parse("corp", Position::AclDst).unwrap(),
            Selector::Addrs { .. }
        ));
        assert_eq!(
            parse("autogroup:self", Position::AclDst).unwrap(),
            Selector::SelfDevices
        );
        assert_eq!(
            parse("autogroup:danger-all", Position::Src).unwrap(),
            Selector::Any
        );
    }

    #[test]
    fn host_alias_with_prefix_length() {
        let Selector::Addrs { set, .. } = parse("corp/16", Position::AclDst).unwrap() else {
            panic!("expected addresses");
        };
        assert!(set.contains("10.0.1.1".parse().unwrap()));
        assert!(!set.contains("10.1.0.1".parse().unwrap()));
    }

    #[test]
    fn rejects_unknown_references_with_names() {
        assert!(
            parse("group:ops", Position::Src)
                .unwrap_err()
                .contains("\"group:ops\" is not defined")
        );
        assert!(
            parse("tag:db", Position::Src)
                .unwrap_err()
                .contains("\"tag:db\" is not defined in \"tagOwners\"")
        );
        assert!(
            parse("nas", Position::AclDst)
                .unwrap_err()
                .contains("\"nas\" is not a defined host alias")
        );
        assert!(
            parse("10.0.0.0/33", Position::Src)
                .unwrap_err()
                .contains("prefix length")
        );
        assert!(
            parse("autogroup:nonroot", Position::Src)
                .unwrap_err()
                .contains("unknown autogroup")
        );
        assert!(
            parse("autogroup:self", Position::Src)
                .unwrap_err()
                .contains("only be used as a destination")
        );
        assert!(parse("autogroup:internet", Position::Src).is_err());
        assert!(parse("autogroup:danger-all", Position::AclDst).is_err());
        assert!(parse("svc:web", Position::AclDst).is_err());
        assert!(
            parse("tag:web:443", Position::GrantDst)
                .unwrap_err()
                .contains("ports are not allowed")
        );
    }

    #[test]
    fn role_autogroups_and_services_resolve_and_shared_is_noted() {
        let mut warnings = Vec::new();
        let sel = parse_selector("autogroup:admin", Position::Src, &defs(), &mut warnings).unwrap();
        assert_eq!(sel, Selector::Role("admin".into()));
        assert_eq!(sel.label(), "autogroup:admin");
        let sel = parse_selector("svc:web", Position::GrantDst, &defs(), &mut warnings).unwrap();
        assert_eq!(sel, Selector::Service("svc:web".into()));
        assert!(warnings.is_empty(), "{warnings:?}");
        let sel =
            parse_selector("autogroup:shared", Position::Src, &defs(), &mut warnings).unwrap();
        assert!(matches!(sel, Selector::Unresolved { .. }));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }
}
