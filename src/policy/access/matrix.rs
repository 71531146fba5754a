//! Who can reach what: the access matrix over a [`TailnetView`] and the diff between two
//! policies ("which src→dst:port pairs are gained or lost").
//!
//! Sources are the view's devices; destinations are the view's devices plus *targets*: the
//! address selectors named as destinations (host aliases, CIDRs, ipsets, `autogroup:internet`)
//! that are not a single device address. A target counts as reachable only through a rule
//! whose destination covers all of it. A device never appears as its own destination.
//!
//! Ports are kept as ranges and protocols not named anywhere collapse into one
//! [`ProtoMatch::Other`] row, so the output stays bounded by (pairs × ranges), not ports.
//! Devices are grouped into classes that every rule treats alike (same rule matches, and the
//! same user when `autogroup:self` is used), capabilities are computed once per class pair,
//! and only class pairs with a non-empty result are expanded, so a diff costs roughly the
//! number of classes squared plus the size of the diff.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use super::eval::{Atom, device_label};
use super::net::IpSet;
use super::ports::{PortRange, PortSet, Proto};
use super::{Cap, Policy, TailnetView};

/// The protocol part of an [`AccessPair`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtoMatch {
    /// One protocol.
    Proto(Proto),
    /// Every protocol except those listed (which have their own rows for the same pair).
    Other { except: Vec<Proto> },
}

impl fmt::Display for ProtoMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoMatch::Proto(p) => write!(f, "{p}"),
            ProtoMatch::Other { except } if except.is_empty() => write!(f, "*"),
            // Reads as a sentence in plan output, where `* except tcp` looked like a port.
            ProtoMatch::Other { except } => {
                let names: Vec<String> = except.iter().map(ToString::to_string).collect();
                write!(f, "any protocol except {}", names.join(","))
            }
        }
    }
}

/// `src` can reach `dst` with `proto` on `ports` (all ports for portless protocols).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccessPair {
    /// Source device label (hostname; `hostname (address)` when hostnames repeat).
    pub src: String,
    /// Destination device label, or a target as written in the policy (`corp-net`,
    /// `10.0.0.0/8`, `autogroup:internet`).
    pub dst: String,
    pub proto: ProtoMatch,
    pub ports: PortRange,
}

impl fmt::Display for AccessPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} {}", self.src, self.dst, self.proto)?;
        // Ports mean nothing for the protocols lumped into "any protocol except ...".
        match self.proto {
            ProtoMatch::Other { ref except }
                if !except.is_empty() && self.ports == PortRange::ALL =>
            {
                Ok(())
            }
            _ => write!(f, ":{}", self.ports),
        }
    }
}

/// Access gained and lost going from one policy to another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessDiff {
    pub gained: BTreeSet<AccessPair>,
    pub lost: BTreeSet<AccessPair>,
}

impl AccessDiff {
    pub fn is_empty(&self) -> bool {
        self.gained.is_empty() && self.lost.is_empty()
    }
}

impl Policy {
    /// Every (source device, destination) pair this policy allows over `view`, with port
    /// ranges. Output grows with devices², so prefer [`Policy::access_diff`] on big tailnets.
    pub fn access_pairs(&self, view: &TailnetView) -> BTreeSet<AccessPair> {
        compare(None, self, view).gained
    }

    /// What `new` allows that `self` does not (`gained`) and the reverse (`lost`).
    pub fn access_diff(&self, new: &Policy, view: &TailnetView) -> AccessDiff {
        compare(Some(self), new, view)
    }
}

/// Granted capabilities: explicit port sets for listed protocols, plus whether every
/// unlisted protocol is fully granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Caps {
    others: bool,
    listed: BTreeMap<Proto, PortSet>,
}

impl Caps {
    fn effective(&self, p: Proto) -> PortSet {
        match self.listed.get(&p) {
            Some(ports) => ports.clone(),
            None if self.others => PortSet::all(),
            None => PortSet::default(),
        }
    }

    /// Stores `ports` for `p`, dropping entries equal to what an unlisted protocol gets.
    fn set(&mut self, p: Proto, ports: PortSet) {
        let implied = if self.others {
            ports.is_all()
        } else {
            ports.is_empty()
        };
        if implied {
            self.listed.remove(&p);
        } else {
            self.listed.insert(p, ports);
        }
    }

    fn add(&mut self, cap: &Cap) {
        if cap.protos.is_all() && cap.ports.is_all() {
            self.others = true;
            self.listed.clear();
            return;
        }
        for p in cap.protos.iter() {
            let granted = if p.has_ports() {
                cap.ports.clone()
            } else if cap.ports.is_all() {
                PortSet::all()
            } else {
                continue;
            };
            let merged = self.effective(p).union(&granted);
            self.set(p, merged);
        }
    }

    fn minus(&self, other: &Caps) -> Caps {
        let mut out = Caps {
            others: self.others && !other.others,
            listed: BTreeMap::new(),
        };
        let keys: BTreeSet<Proto> = self
            .listed
            .keys()
            .chain(other.listed.keys())
            .copied()
            .collect();
        for p in keys {
            out.set(p, self.effective(p).difference(&other.effective(p)));
        }
        out
    }

    fn is_empty(&self) -> bool {
        !self.others && self.listed.is_empty()
    }

    fn pairs(&self, src: &str, dst: &str, out: &mut BTreeSet<AccessPair>) {
        let mut push = |proto: ProtoMatch, ports: PortRange| {
            out.insert(AccessPair {
                src: src.to_string(),
                dst: dst.to_string(),
                proto,
                ports,
            });
        };
        if self.others {
            let except = self.listed.keys().copied().collect();
            push(ProtoMatch::Other { except }, PortRange::ALL);
        }
        for (p, ports) in &self.listed {
            for range in ports.ranges() {
                push(ProtoMatch::Proto(*p), *range);
            }
        }
    }
}

/// A destination: a device (as an atom) or an address-only target.
enum Dest {
    Device(usize),
    Target(IpSet),
}

/// Entities grouped by key; `members` index into the entity list.
struct Classes<K> {
    index: HashMap<K, usize>,
    keys: Vec<K>,
    members: Vec<Vec<usize>>,
}

impl<K: std::hash::Hash + Eq + Clone> Classes<K> {
    fn new() -> Self {
        Classes {
            index: HashMap::new(),
            keys: Vec::new(),
            members: Vec::new(),
        }
    }

    fn add(&mut self, key: K, member: usize) {
        let idx = *self.index.entry(key.clone()).or_insert_with(|| {
            self.keys.push(key);
            self.members.push(Vec::new());
            self.keys.len() - 1
        });
        self.members[idx].push(member);
    }
}

/// (per-policy rule matches, user when `autogroup:self` matters)
type Key = (Vec<Vec<bool>>, Option<String>);

fn compare(old: Option<&Policy>, new: &Policy, view: &TailnetView) -> AccessDiff {
    let policies: Vec<&Policy> = old.into_iter().chain(std::iter::once(new)).collect();
    let uses_self = policies
        .iter()
        .any(|p| p.rules.iter().any(|r| r.dst.iter().any(|d| d.uses_self())));
    let labels = device_labels(view);
    let atoms: Vec<Atom> = view.devices.iter().map(Atom::of_device).collect();
    let mut dests: Vec<(String, Dest)> = (0..atoms.len())
        .map(|i| (labels[i].clone(), Dest::Device(i)))
        .collect();
    dests.extend(
        targets(&policies, view)
            .into_iter()
            .map(|(label, set)| (label, Dest::Target(set))),
    );

    let self_user = |atom: &Atom| if uses_self { atom.user.clone() } else { None };
    let mut src_classes: Classes<Key> = Classes::new();
    for (i, atom) in atoms.iter().enumerate() {
        let sig: Vec<Vec<bool>> = policies.iter().map(|p| src_sig(p, atom)).collect();
        src_classes.add((sig, self_user(atom)), i);
    }
    let mut dst_classes: Classes<Key> = Classes::new();
    for (i, (_, dest)) in dests.iter().enumerate() {
        let (sig, user): (Vec<Vec<bool>>, _) = match dest {
            Dest::Device(d) => (
                policies
                    .iter()
                    .map(|p| dst_sig_device(p, &atoms[*d]))
                    .collect(),
                self_user(&atoms[*d]),
            ),
            Dest::Target(set) => (
                policies.iter().map(|p| dst_sig_target(p, set)).collect(),
                None,
            ),
        };
        dst_classes.add((sig, user), i);
    }

    let mut diff = AccessDiff::default();
    for (cs, (src_sig, src_user)) in src_classes.keys.iter().enumerate() {
        for (cd, (dst_sig, dst_user)) in dst_classes.keys.iter().enumerate() {
            let same_user = src_user.is_some() && src_user == dst_user;
            let caps: Vec<Caps> = policies
                .iter()
                .enumerate()
                .map(|(k, p)| class_caps(p, &src_sig[k], &dst_sig[k], same_user))
                .collect();
            let (gained, lost) = match caps.as_slice() {
                [only] => (only.clone(), Caps::default()),
                [before, after] => (after.minus(before), before.minus(after)),
                _ => unreachable!("one or two policies"),
            };
            if gained.is_empty() && lost.is_empty() {
                continue;
            }
            for &s in &src_classes.members[cs] {
                for &d in &dst_classes.members[cd] {
                    if matches!(dests[d].1, Dest::Device(dev) if dev == s) {
                        continue;
                    }
                    gained.pairs(&labels[s], &dests[d].0, &mut diff.gained);
                    lost.pairs(&labels[s], &dests[d].0, &mut diff.lost);
                }
            }
        }
    }
    diff
}

fn src_sig(policy: &Policy, atom: &Atom) -> Vec<bool> {
    policy
        .rules
        .iter()
        .map(|r| r.src.iter().any(|s| s.matches_src(atom)))
        .collect()
}

/// One flag per (rule, dst selector); `autogroup:self` is resolved per pair instead.
fn dst_sig_device(policy: &Policy, atom: &Atom) -> Vec<bool> {
    policy
        .rules
        .iter()
        .flat_map(|r| r.dst.iter())
        .map(|sel| !sel.uses_self() && sel.matches_dst(atom, atom))
        .collect()
}

fn dst_sig_target(policy: &Policy, target: &IpSet) -> Vec<bool> {
    policy
        .rules
        .iter()
        .flat_map(|r| r.dst.iter())
        .map(|sel| sel.covers(target))
        .collect()
}

fn class_caps(policy: &Policy, src_sig: &[bool], dst_sig: &[bool], same_user: bool) -> Caps {
    let mut caps = Caps::default();
    let mut offset = 0;
    for (ri, rule) in policy.rules.iter().enumerate() {
        let n = rule.dst.len();
        let dst_hit = (0..n).any(|j| dst_sig[offset + j] || (same_user && rule.dst[j].uses_self()));
        if src_sig[ri] && dst_hit {
            for cap in &rule.caps {
                caps.add(cap);
            }
        }
        offset += n;
    }
    caps
}

/// Unique labels: the hostname, disambiguated by address (then index) when it repeats.
fn device_labels(view: &TailnetView) -> Vec<String> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for d in &view.devices {
        *counts.entry(device_label(d)).or_default() += 1;
    }
    let mut used = BTreeSet::new();
    view.devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let base = device_label(d);
            let mut label = match d.addresses.first() {
                Some(addr) if counts[&base] > 1 => format!("{base} ({addr})"),
                _ => base,
            };
            if used.contains(&label) {
                label = format!("{label} #{i}");
            }
            used.insert(label.clone());
            label
        })
        .collect()
}

/// Address destinations named by the policies that are not just one device's address.
fn targets(policies: &[&Policy], view: &TailnetView) -> Vec<(String, IpSet)> {
    let device_addr = |set: &IpSet| {
        matches!(set.ranges(), [r] if r.lo == r.hi
            && view.devices.iter().any(|d| d.addresses.contains(&r.first())))
    };
    let mut out: BTreeMap<String, IpSet> = BTreeMap::new();
    for policy in policies {
        for sel in policy.rules.iter().flat_map(|r| r.dst.iter()) {
            if let Some(set) = sel.addr_set() {
                if !device_addr(set) {
                    out.entry(sel.label()).or_insert_with(|| set.clone());
                }
            }
        }
    }
    out.into_iter().collect()
}
