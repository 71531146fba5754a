//! Evaluation: endpoints expand to atoms, rules are matched per (source, destination) atom.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use super::net::{AddrRange, IpPrefix};
use super::ports::Proto;
use super::posture::PostureAttrs;
use super::selector::{check_tag, parse_addr_literal, resolve_host};
use super::{Cap, DeviceView, Policy, PolicyError, Rule, ServiceView, TailnetView};

/// Something traffic comes from or goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A user: every untagged device of theirs in the view (or the bare identity if none).
    User(String),
    /// Every member of a `groups` entry, each as [`Endpoint::User`].
    Group(String),
    /// Every device carrying the tag (or the bare tag identity if none).
    Tag(String),
    /// One device, reachable at any of its addresses.
    Device(DeviceView),
    /// A Tailscale Service (`svc:name`) of the view, reachable at its virtual addresses.
    Service(String),
    /// Every device in the view with this hostname (case-insensitive; an FQDN's first label
    /// also matches).
    Hostname(String),
    /// One address (with the identity of the device holding it, if any).
    Ip(IpAddr),
    /// Every address of a CIDR.
    Prefix(IpPrefix),
}

/// The outcome of [`Policy::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every source atom reaches every destination atom.
    Accept,
    /// No source atom reaches any destination atom.
    Drop,
    /// Mixed: one accepted and one dropped (source, destination) example, by label.
    Partial {
        accepted: (String, String),
        dropped: (String, String),
    },
}

/// An identity with the addresses it uses; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Atom {
    pub label: String,
    /// Owning user of an untagged device (`None` once tagged).
    pub user: Option<String>,
    /// That user's role, when known (role autogroups match on it).
    pub role: Option<String>,
    /// The Tailscale Service this atom is (`svc:name`), for `svc:` destinations.
    pub service: Option<String>,
    pub tags: BTreeSet<String>,
    pub addrs: Vec<IpAddr>,
}

impl Atom {
    pub fn of_device(device: &DeviceView) -> Atom {
        let tags: BTreeSet<String> = device.tags.iter().cloned().collect();
        // A tagged device belongs to its tags, not to the user who tagged it.
        let user = (tags.is_empty() && !device.user.is_empty()).then(|| device.user.clone());
        let role = (user.is_some() && !device.role.is_empty()).then(|| device.role.clone());
        Atom {
            label: device_label(device),
            user,
            role,
            service: None,
            tags,
            addrs: device.addresses.clone(),
        }
    }

    fn identity(label: &str, user: Option<String>, tags: BTreeSet<String>) -> Atom {
        Atom {
            label: label.to_string(),
            user,
            role: None,
            service: None,
            tags,
            addrs: Vec::new(),
        }
    }
}

impl Atom {
    /// A Tailscale Service: no owner, no tags, its virtual addresses.
    pub fn of_service(service: &ServiceView) -> Atom {
        Atom {
            label: service.name.clone(),
            user: None,
            role: None,
            service: Some(service.name.clone()),
            tags: BTreeSet::new(),
            addrs: service.addresses.clone(),
        }
    }
}

pub(crate) fn device_label(device: &DeviceView) -> String {
    if !device.hostname.is_empty() {
        device.hostname.clone()
    } else if let Some(addr) = device.addresses.first() {
        addr.to_string()
    } else {
        "(unnamed device)".into()
    }
}

impl Rule {
    /// Does this rule's src/dst match the pair (ignoring protocols and ports)?
    pub(crate) fn matches(&self, src: &Atom, dst: &Atom) -> bool {
        self.src.iter().any(|s| s.matches_src(src))
            && self.dst.iter().any(|d| d.matches_dst(src, dst))
    }

    fn grants(&self, port: u16, protos: &[Proto]) -> bool {
        self.caps
            .iter()
            .any(|cap: &Cap| protos.iter().any(|p| cap.grants(*p, port)))
    }
}

impl Policy {
    /// Evaluates traffic from `src` to `dst` on `port`. `proto: None` means "TCP or UDP" (the
    /// policy-test default). Errors name endpoints that cannot be resolved (unknown group or
    /// tag, hostname not in the view).
    pub fn check(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        port: u16,
        proto: Option<Proto>,
        view: &TailnetView,
    ) -> Result<Verdict, PolicyError> {
        self.check_with(src, dst, port, proto, view, None)
    }

    /// [`Policy::check`] for a source with posture attributes `attrs` (a test's
    /// `srcPostureAttrs`); without, rules needing a posture grant nothing.
    pub(crate) fn check_with(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        port: u16,
        proto: Option<Proto>,
        view: &TailnetView,
        attrs: Option<&PostureAttrs>,
    ) -> Result<Verdict, PolicyError> {
        let err = |message| PolicyError { message };
        let srcs = self.atoms(src, view).map_err(err)?;
        let dsts = self.atoms(dst, view).map_err(err)?;
        let protos: Vec<Proto> = match proto {
            Some(p) => vec![p],
            None => vec![Proto::TCP, Proto::UDP],
        };
        // Atoms every rule treats alike give the same answer: one representative per class
        // (its first atom, so the examples reported are the first pairs in atom order, as a
        // plain double loop would find them). Cost: atoms x selectors + classes² x rules.
        let (src_reps, dst_reps) = self.representatives(&srcs, &dsts);
        let usable = self.usable(view, attrs);
        let mut accepted = None;
        let mut dropped = None;
        for &s in &src_reps {
            let (mut accepted_d, mut dropped_d) = (None, None);
            for &d in &dst_reps {
                let slot = if self.pair_allowed_with(&srcs[s], &dsts[d], port, &protos, &usable) {
                    &mut accepted_d
                } else {
                    &mut dropped_d
                };
                slot.get_or_insert(d);
            }
            let label = |d: usize| (srcs[s].label.clone(), dsts[d].label.clone());
            if accepted.is_none() {
                accepted = accepted_d.map(label);
            }
            if dropped.is_none() {
                dropped = dropped_d.map(label);
            }
            if accepted.is_some() && dropped.is_some() {
                break;
            }
        }
        Ok(match (accepted, dropped) {
            (Some(accepted), Some(dropped)) => Verdict::Partial { accepted, dropped },
            (Some(_), None) => Verdict::Accept,
            _ => Verdict::Drop,
        })
    }

    /// Indices of the first atom of each class of `srcs` and of `dsts` (ascending): atoms the
    /// same rules match, with the same user when `autogroup:self` is used.
    fn representatives(&self, srcs: &[Atom], dsts: &[Atom]) -> (Vec<usize>, Vec<usize>) {
        let uses_self = self
            .rules
            .iter()
            .any(|r| r.dst.iter().any(|d| d.uses_self()));
        let user = |atom: &Atom| if uses_self { atom.user.clone() } else { None };
        (
            firsts(srcs, |a| (super::matrix::src_sig(self, a), user(a))),
            firsts(dsts, |a| (super::matrix::dst_sig_device(self, a), user(a))),
        )
    }

    /// True when the policy accepts `proto` traffic on `port` from every atom of `src` to
    /// every atom of `dst` (for devices: from some address to some address). Unresolvable
    /// endpoints are denied.
    pub fn allows(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        port: u16,
        proto: Proto,
        view: &TailnetView,
    ) -> bool {
        matches!(
            self.check(src, dst, port, Some(proto), view),
            Ok(Verdict::Accept)
        )
    }

    /// The rules (by origin, e.g. `acls[0]`, `grants[2]`) accepting `proto` on `port` from
    /// `src` to `dst`, for explaining a verdict. Empty when unresolvable or denied.
    pub fn matching_rules(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        port: u16,
        proto: Proto,
        view: &TailnetView,
    ) -> Vec<String> {
        let (Ok(srcs), Ok(dsts)) = (self.atoms(src, view), self.atoms(dst, view)) else {
            return Vec::new();
        };
        let (src_reps, dst_reps) = self.representatives(&srcs, &dsts);
        let mut origins = BTreeSet::new();
        let usable = self.usable(view, None);
        for (rule, _) in self.rules.iter().zip(&usable).filter(|(_, ok)| **ok) {
            let hit = src_reps.iter().any(|&s| {
                dst_reps
                    .iter()
                    .any(|&d| rule.matches(&srcs[s], &dsts[d]) && rule.grants(port, &[proto]))
            });
            if hit {
                origins.insert(rule.origin.clone());
            }
        }
        origins.into_iter().collect()
    }

    /// Whether some rule accepts `protos` on `port` from `src` to `dst`. A rule needing
    /// postures counts only when `attrs` are given and its postures hold for them.
    pub(crate) fn pair_allowed_with(
        &self,
        src: &Atom,
        dst: &Atom,
        port: u16,
        protos: &[Proto],
        usable: &[bool],
    ) -> bool {
        self.rules
            .iter()
            .zip(usable)
            .any(|(r, ok)| *ok && r.matches(src, dst) && r.grants(port, protos))
    }

    /// Per rule, whether it can grant anything here: one needing postures only for a source
    /// whose attributes `attrs` are known and satisfy them; one with `via` only when some
    /// device of the view carries one of its router tags (traffic to its destinations is
    /// routed through those devices only).
    pub(super) fn usable(&self, view: &TailnetView, attrs: Option<&PostureAttrs>) -> Vec<bool> {
        let tags: std::collections::HashSet<&str> = view
            .devices
            .iter()
            .flat_map(|d| d.tags.iter().map(String::as_str))
            .collect();
        self.rules
            .iter()
            .map(|rule| {
                let posture = rule.postures.is_empty()
                    || attrs.is_some_and(|a| self.postures.hold(&rule.postures, a));
                let routed =
                    rule.via.is_empty() || rule.via.iter().any(|t| tags.contains(t.as_str()));
                posture && routed
            })
            .collect()
    }

    /// Parses a test-style host (`tag:x`, `group:x`, `user@domain`, IP, CIDR, host alias or
    /// device hostname) into an endpoint. Users must exist in the view (as a user or a device
    /// owner) and tags in `tagOwners`; wildcards and autogroups are not testable.
    pub fn resolve_endpoint(&self, text: &str, view: &TailnetView) -> Result<Endpoint, String> {
        if text == "*" || text.starts_with("autogroup:") {
            return Err(
                "wildcards and autogroups cannot be tested; name a user, group, tag, host or IP"
                    .into(),
            );
        }
        if text.starts_with("tag:") {
            check_tag(text)?;
            return if self.defs.tags.contains(text) {
                Ok(Endpoint::Tag(text.to_string()))
            } else {
                Err(format!("tag {text:?} is not defined in \"tagOwners\""))
            };
        }
        if text.starts_with("svc:") {
            return if view.services.iter().any(|s| s.name == text) {
                Ok(Endpoint::Service(text.to_string()))
            } else {
                Err(format!("no Tailscale Service {text:?} in the tailnet"))
            };
        }
        if text.starts_with("group:") {
            return if self.defs.groups.contains_key(text) {
                Ok(Endpoint::Group(text.to_string()))
            } else {
                Err(format!("group {text:?} is not defined in \"groups\""))
            };
        }
        if parse_addr_literal(text)?.is_some() {
            let prefix = IpPrefix::parse(text)?;
            return Ok(if prefix.is_single() {
                Endpoint::Ip(prefix.addr())
            } else {
                Endpoint::Prefix(prefix)
            });
        }
        if text.contains('@') {
            let known =
                view.users.iter().any(|u| u == text) || view.devices.iter().any(|d| d.user == text);
            return if known {
                Ok(Endpoint::User(text.to_string()))
            } else {
                Err(format!("user {text:?} not found in the tailnet"))
            };
        }
        if let Ok(prefix) = resolve_host(text, &self.defs) {
            return Ok(if prefix.is_single() {
                Endpoint::Ip(prefix.addr())
            } else {
                Endpoint::Prefix(prefix)
            });
        }
        if view.devices.iter().any(|d| hostname_matches(d, text)) {
            return Ok(Endpoint::Hostname(text.to_string()));
        }
        Err(format!(
            "{text:?} is not a host alias, device hostname, IP, user, group: or tag:"
        ))
    }

    /// Expands an endpoint into atoms (never empty on success).
    pub(crate) fn atoms(
        &self,
        endpoint: &Endpoint,
        view: &TailnetView,
    ) -> Result<Vec<Atom>, String> {
        match endpoint {
            Endpoint::User(login) => Ok(user_atoms(login, view)),
            Endpoint::Group(name) => {
                let members = self
                    .defs
                    .groups
                    .get(name)
                    .ok_or_else(|| format!("group {name:?} is not defined in \"groups\""))?;
                if members.is_empty() {
                    return Err(format!("group {name:?} has no members"));
                }
                Ok(members.iter().flat_map(|m| user_atoms(m, view)).collect())
            }
            Endpoint::Tag(tag) => {
                if !self.defs.tags.contains(tag) {
                    return Err(format!("tag {tag:?} is not defined in \"tagOwners\""));
                }
                let atoms: Vec<Atom> = view
                    .devices
                    .iter()
                    .filter(|d| d.tags.iter().any(|t| t == tag))
                    .map(Atom::of_device)
                    .collect();
                Ok(if atoms.is_empty() {
                    let tags = [tag.clone()].into_iter().collect();
                    vec![Atom::identity(tag, None, tags)]
                } else {
                    atoms
                })
            }
            Endpoint::Device(device) => Ok(vec![Atom::of_device(device)]),
            Endpoint::Service(name) => view
                .services
                .iter()
                .find(|s| s.name == *name)
                .map(|s| vec![Atom::of_service(s)])
                .ok_or_else(|| format!("no Tailscale Service {name:?} in the tailnet")),
            Endpoint::Hostname(name) => {
                let atoms: Vec<Atom> = view
                    .devices
                    .iter()
                    .filter(|d| hostname_matches(d, name))
                    .map(Atom::of_device)
                    .collect();
                if atoms.is_empty() {
                    Err(format!("no device named {name:?} in the tailnet"))
                } else {
                    Ok(atoms)
                }
            }
            Endpoint::Ip(ip) => Ok(vec![ip_atom(*ip, view)]),
            Endpoint::Prefix(prefix) if prefix.is_single() => {
                Ok(vec![ip_atom(prefix.addr(), view)])
            }
            Endpoint::Prefix(prefix) => Ok(self.prefix_atoms(*prefix, view)),
        }
    }

    /// Splits a CIDR at every boundary of the policy's address sets and at every device
    /// address, then keeps one atom per distinct (identity, set membership): all addresses
    /// with the same signature are treated alike by every rule.
    fn prefix_atoms(&self, prefix: IpPrefix, view: &TailnetView) -> Vec<Atom> {
        let range = prefix.range();
        let mut starts: BTreeSet<u128> = BTreeSet::new();
        let mut cut = |v: u128| {
            if v > range.lo && v <= range.hi {
                starts.insert(v);
            }
        };
        for set in &self.addr_sets {
            for r in set.ranges().iter().filter(|r| r.v6 == range.v6) {
                cut(r.lo);
                // The range after this one starts at hi + 1 (none at the top of the space).
                if let Some(next) = r.hi.checked_add(1) {
                    cut(next);
                }
            }
        }
        let mut owners: HashMap<IpAddr, &DeviceView> = HashMap::new();
        for device in &view.devices {
            for addr in device.addresses.iter().filter(|a| range.contains(**a)) {
                let v = AddrRange::single(*addr).lo;
                cut(v);
                if let Some(next) = v.checked_add(1) {
                    cut(next);
                }
                owners.insert(*addr, device);
            }
        }
        let starts: Vec<u128> = std::iter::once(range.lo).chain(starts).collect();
        type Signature = (Option<String>, BTreeSet<String>, Vec<bool>);
        let mut seen: BTreeMap<Signature, Atom> = BTreeMap::new();
        for (i, lo) in starts.iter().enumerate() {
            let hi = starts.get(i + 1).map_or(range.hi, |next| next - 1);
            let piece = AddrRange {
                v6: range.v6,
                lo: *lo,
                hi,
            };
            let rep = piece.first();
            let mut atom = match owners.get(&rep) {
                Some(device) if piece.lo == piece.hi => Atom::of_device(device),
                _ => Atom::identity(&piece.to_string(), None, BTreeSet::new()),
            };
            atom.addrs = vec![rep];
            let membership = self.addr_sets.iter().map(|s| s.contains(rep)).collect();
            seen.entry((atom.user.clone(), atom.tags.clone(), membership))
                .or_insert(atom);
        }
        seen.into_values().collect()
    }
}

fn user_atoms(login: &str, view: &TailnetView) -> Vec<Atom> {
    let atoms: Vec<Atom> = view
        .devices
        .iter()
        .filter(|d| d.tags.is_empty() && d.user == login)
        .map(Atom::of_device)
        .collect();
    if atoms.is_empty() {
        vec![Atom::identity(
            login,
            Some(login.to_string()),
            BTreeSet::new(),
        )]
    } else {
        atoms
    }
}

fn ip_atom(ip: IpAddr, view: &TailnetView) -> Atom {
    let owner = view.devices.iter().find(|d| d.addresses.contains(&ip));
    let mut atom = match owner {
        Some(device) => {
            let mut a = Atom::of_device(device);
            a.label = format!("{} ({ip})", a.label);
            a
        }
        None => Atom::identity(&ip.to_string(), None, BTreeSet::new()),
    };
    atom.addrs = vec![ip];
    atom
}

pub(crate) fn hostname_matches(device: &DeviceView, name: &str) -> bool {
    let first_label = name.split('.').next().unwrap_or(name);
    !device.hostname.is_empty()
        && (device.hostname.eq_ignore_ascii_case(name)
            || device.hostname.eq_ignore_ascii_case(first_label))
}

/// Indices of the first atom of each key, ascending: one representative per class of atoms
/// that every rule treats alike.
pub(super) fn firsts<K: std::hash::Hash + Eq>(
    atoms: &[Atom],
    key: impl Fn(&Atom) -> K,
) -> Vec<usize> {
    let mut seen = HashMap::new();
    atoms
        .iter()
        .enumerate()
        .filter(|(i, a)| *seen.entry(key(a)).or_insert(*i) == *i)
        .map(|(i, _)| i)
        .collect()
}
