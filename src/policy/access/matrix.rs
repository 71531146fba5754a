//! Who can reach what: the access matrix over a [`TailnetView`] and the diff between two
//! policies ("which src→dst:port pairs are gained or lost").
//!
//! Sources are the view's devices; destinations are the view's devices, its Tailscale Services
//! (`svc:` destinations) plus *targets*: the
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
use super::{Cap, DeviceView, Policy, TailnetView};

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

/// Access gained and lost going from one policy to another, as individual pairs: the
/// expansion of a [`ClassDiff`] (see [`ClassDiff::pairs`]).
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
    /// ranges. Output grows with devices²: for tests and small tailnets; use
    /// [`Policy::access_classes`] otherwise.
    pub fn access_pairs(&self, view: &TailnetView) -> BTreeSet<AccessPair> {
        self.access_classes(view).pairs(usize::MAX).gained
    }

    /// Every pair of `new` not in `self` (`gained`) and the reverse (`lost`), expanded. Output
    /// grows with devices²: for tests and small tailnets; use [`Policy::class_diff`] otherwise.
    pub fn access_diff(&self, new: &Policy, view: &TailnetView) -> AccessDiff {
        self.class_diff(new, view).pairs(usize::MAX)
    }

    /// What this policy allows over `view`, per class pair (everything as `gained`).
    pub fn access_classes(&self, view: &TailnetView) -> ClassDiff {
        compare(None, self, view)
    }

    /// What `new` allows that `self` does not, and the reverse, per class pair. Cost and
    /// memory grow with classes² plus devices, never with device pairs.
    pub fn class_diff(&self, new: &Policy, view: &TailnetView) -> ClassDiff {
        compare(Some(self), new, view)
    }
}

/// Granted capabilities: explicit port sets for listed protocols, plus whether every
/// unlisted protocol is fully granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Caps {
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

    /// What either grants.
    pub(super) fn union(&self, other: &Caps) -> Caps {
        self.combine(other, self.others || other.others, PortSet::union)
    }

    /// Protocol by protocol, `ports` of the two effective port sets; `others` for the rest.
    fn combine(
        &self,
        other: &Caps,
        others: bool,
        ports: fn(&PortSet, &PortSet) -> PortSet,
    ) -> Caps {
        let mut out = Caps {
            others,
            listed: BTreeMap::new(),
        };
        let keys: BTreeSet<Proto> = self
            .listed
            .keys()
            .chain(other.listed.keys())
            .copied()
            .collect();
        for p in keys {
            out.set(p, ports(&self.effective(p), &other.effective(p)));
        }
        out
    }

    /// Ports granted, counted over the protocols with ports (a portless protocol counts 1),
    /// or `None` when every unlisted protocol is granted (unbounded for this purpose).
    pub(super) fn port_count(&self) -> Option<u64> {
        if self.others {
            return None;
        }
        Some(
            self.listed
                .iter()
                .map(|(p, ports)| {
                    if p.has_ports() {
                        ports
                            .ranges()
                            .iter()
                            .map(|r| u64::from(r.last - r.first) + 1)
                            .sum()
                    } else {
                        1
                    }
                })
                .sum(),
        )
    }

    fn minus(&self, other: &Caps) -> Caps {
        self.combine(other, self.others && !other.others, PortSet::difference)
    }

    pub(super) fn is_empty(&self) -> bool {
        !self.others && self.listed.is_empty()
    }

    /// How many [`AccessPair`] rows one (source, destination) pair with these caps has.
    fn rows(&self) -> u64 {
        let listed: usize = self.listed.values().map(|ports| ports.ranges().len()).sum();
        listed as u64 + u64::from(self.others)
    }

    /// `tcp:22,443 udp:53 icmp`, `all protocols`, `all protocols except tcp,udp`, `all
    /// protocols except tcp; tcp:443`.
    pub(super) fn describe(&self) -> String {
        let mut parts = Vec::new();
        let shown = |p: &Proto, ports: &PortSet| {
            if ports.is_empty() {
                None
            } else if ports.is_all() {
                Some(p.to_string())
            } else {
                Some(format!("{p}:{ports}"))
            }
        };
        let listed: Vec<String> = self
            .listed
            .iter()
            .filter_map(|(p, s)| shown(p, s))
            .collect();
        if self.others && self.listed.is_empty() {
            parts.push("all protocols".to_owned());
        } else if self.others {
            let names: Vec<String> = self.listed.keys().map(ToString::to_string).collect();
            let except = format!("all protocols except {}", names.join(","));
            parts.push(if listed.is_empty() {
                except
            } else {
                format!("{except};")
            });
        }
        parts.extend(listed);
        parts.join(" ")
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

/// A destination: a device (as an atom), a Tailscale Service, or an address-only target.
enum Dest {
    Device(usize),
    Service(Atom),
    Target(IpSet),
}

/// Entities grouped by key; `members` index into the entity list.
struct Classes<K> {
    index: HashMap<K, usize>,
    keys: Vec<K>,
    members: Vec<Vec<u32>>,
}

impl<K: std::hash::Hash + Eq + Clone> Classes<K> {
    fn new() -> Self {
        Classes {
            index: HashMap::new(),
            keys: Vec::new(),
            members: Vec::new(),
        }
    }

    /// Adds `member` to the class of `key`; returns the class.
    fn add(&mut self, key: K, member: usize) -> usize {
        let idx = *self.index.entry(key.clone()).or_insert_with(|| {
            self.keys.push(key);
            self.members.push(Vec::new());
            self.keys.len() - 1
        });
        self.members[idx].push(u32::try_from(member).expect("fewer than 2^32 devices"));
        idx
    }
}

/// (per-policy rule matches, user when `autogroup:self` matters, the destination's index for
/// services and address targets: each is its own class, named as written)
type Key = (Vec<Vec<bool>>, Option<String>, Option<usize>);

/// Sources or destinations every rule of the compared policies treats alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClass {
    /// What the members share: their tags (`tag:prod`), their user, a few identities
    /// (`alice@example.com, bob@example.com +3 more`), or a target as written in the policy
    /// (`corp-net`, `autogroup:internet`).
    pub label: String,
    /// Devices in the class; `None` for an address target.
    pub devices: Option<u64>,
}

impl fmt::Display for AccessClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.devices {
            Some(1) => write!(f, "{}", self.label),
            Some(n) => write!(f, "{} ({} devices)", self.label, thousands(n)),
            None => write!(f, "{}", self.label),
        }
    }
}

/// Gained or lost, in a [`ClassLine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Gained,
    Lost,
}

/// One readable line of a [`ClassDiff`]: `tag:ci (40 devices) -> tag:server (12 devices)
/// tcp:443 gained (480 device pairs)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassLine {
    pub change: Change,
    pub src: AccessClass,
    pub dst: AccessClass,
    /// The protocols and ports gained or lost, e.g. `tcp:22,443`.
    pub access: String,
    /// (source device, destination) pairs affected.
    pub device_pairs: u64,
}

impl fmt::Display for ClassLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let change = match self.change {
            Change::Gained => "gained",
            Change::Lost => "lost",
        };
        let unit = if self.device_pairs == 1 {
            "device pair"
        } else {
            "device pairs"
        };
        write!(
            f,
            "{} -> {} {}  {change} ({} {unit})",
            self.src,
            self.dst,
            self.access,
            thousands(self.device_pairs)
        )
    }
}

/// One class pair whose access changed.
#[derive(Debug, Clone)]
pub(super) struct ClassChange {
    pub(super) src: usize,
    pub(super) dst: usize,
    device_pairs: u64,
    pub(super) gained: Caps,
    lost: Caps,
}

/// Access gained and lost per class pair, with exact counts; individual pairs only on
/// demand ([`ClassDiff::pairs`]). Memory grows with devices (class membership), not with
/// device pairs.
#[derive(Debug, Clone)]
pub struct ClassDiff {
    src_classes: Vec<AccessClass>,
    dst_classes: Vec<AccessClass>,
    pub(super) src_members: Vec<Vec<u32>>,
    pub(super) dst_members: Vec<Vec<u32>>,
    /// Destination labels: the devices' first (index = device index), then the services,
    /// then the targets.
    pub(super) dest_labels: Vec<String>,
    /// Sorted by impact: most device pairs first.
    pub(super) changes: Vec<ClassChange>,
}

impl ClassDiff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Source and destination classes formed.
    pub fn classes(&self) -> (usize, usize) {
        (self.src_classes.len(), self.dst_classes.len())
    }

    /// Class pairs whose access changed.
    pub fn class_pairs(&self) -> usize {
        self.changes.len()
    }

    /// `src -> dst proto:ports` pairs gained: the size of the expanded
    /// [`AccessDiff::gained`], computed from class sizes.
    pub fn gained(&self) -> u64 {
        self.changes
            .iter()
            .map(|c| c.device_pairs * c.gained.rows())
            .sum()
    }

    /// Like [`ClassDiff::gained`], for pairs lost.
    pub fn lost(&self) -> u64 {
        self.changes
            .iter()
            .map(|c| c.device_pairs * c.lost.rows())
            .sum()
    }

    /// (source device, destination) pairs that gain, and that lose, some access.
    pub fn device_pairs(&self) -> (u64, u64) {
        let sum = |pick: fn(&ClassChange) -> &Caps| {
            self.changes
                .iter()
                .filter(|c| !pick(c).is_empty())
                .map(|c| c.device_pairs)
                .sum()
        };
        (sum(|c| &c.gained), sum(|c| &c.lost))
    }

    /// One line per class pair and direction, most device pairs first.
    pub fn lines(&self) -> Vec<ClassLine> {
        let mut lines = Vec::new();
        for c in &self.changes {
            for (change, caps) in [(Change::Gained, &c.gained), (Change::Lost, &c.lost)] {
                if !caps.is_empty() {
                    lines.push(ClassLine {
                        change,
                        src: self.src_classes[c.src].clone(),
                        dst: self.dst_classes[c.dst].clone(),
                        access: caps.describe(),
                        device_pairs: c.device_pairs,
                    });
                }
            }
        }
        lines.sort_by(|a, b| {
            b.device_pairs
                .cmp(&a.device_pairs)
                .then(a.change.cmp(&b.change))
                .then_with(|| a.src.label.cmp(&b.src.label))
                .then_with(|| a.dst.label.cmp(&b.dst.label))
        });
        lines
    }

    /// `12 gained, 3 lost (source -> destination proto:ports pairs); device pairs gaining: 6,
    /// losing: 1; class pairs: 2`: the totals every rendering starts with.
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "no change in access".to_owned();
        }
        let (gaining, losing) = self.device_pairs();
        format!(
            "{} gained, {} lost (source -> destination proto:ports pairs); device pairs \
             gaining: {}, losing: {}; class pairs: {}",
            thousands(self.gained()),
            thousands(self.lost()),
            thousands(gaining),
            thousands(losing),
            thousands(self.changes.len() as u64),
        )
    }

    /// The first `max` [`ClassDiff::lines`] as `+ ...` (gained) and `- ...` (lost), then
    /// `... and N more class lines` when some were left out.
    pub fn render_lines(&self, max: usize) -> Vec<String> {
        let lines = self.lines();
        let mut out: Vec<String> = lines
            .iter()
            .take(max)
            .map(|line| {
                let sign = match line.change {
                    Change::Gained => '+',
                    Change::Lost => '-',
                };
                format!("{sign} {line}")
            })
            .collect();
        if lines.len() > max {
            out.push(format!("... and {} more class lines", lines.len() - max));
        }
        out
    }

    /// Individual pairs: at most about `limit` gained and `limit` lost (whole class pairs
    /// are expanded until the limit is reached), in order of impact. `usize::MAX` expands
    /// everything, which grows with devices²: only for small tailnets and tests.
    pub fn pairs(&self, limit: usize) -> AccessDiff {
        let mut diff = AccessDiff::default();
        for c in &self.changes {
            if diff.gained.len() >= limit && diff.lost.len() >= limit {
                break;
            }
            for &s in &self.src_members[c.src] {
                for &d in &self.dst_members[c.dst] {
                    if s == d {
                        continue;
                    }
                    let (src, dst) = (&self.dest_labels[s as usize], &self.dest_labels[d as usize]);
                    if diff.gained.len() < limit {
                        c.gained.pairs(src, dst, &mut diff.gained);
                    }
                    if diff.lost.len() < limit {
                        c.lost.pairs(src, dst, &mut diff.lost);
                    }
                }
            }
        }
        diff
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn compare(old: Option<&Policy>, new: &Policy, view: &TailnetView) -> ClassDiff {
    let policies: Vec<&Policy> = old.into_iter().chain(std::iter::once(new)).collect();
    let uses_self = policies
        .iter()
        .any(|p| p.rules.iter().any(|r| r.dst.iter().any(|d| d.uses_self())));
    let mut dest_labels = device_labels(view);
    let atoms: Vec<Atom> = view.devices.iter().map(Atom::of_device).collect();
    let mut dests: Vec<Dest> = (0..atoms.len()).map(Dest::Device).collect();
    for service in &view.services {
        dest_labels.push(service.name.clone());
        dests.push(Dest::Service(Atom::of_service(service)));
    }
    for (label, set) in targets(&policies, view) {
        dest_labels.push(label);
        dests.push(Dest::Target(set));
    }

    let self_user = |atom: &Atom| if uses_self { atom.user.clone() } else { None };
    let mut src_classes: Classes<Key> = Classes::new();
    let mut src_class_of = Vec::with_capacity(atoms.len());
    for (i, atom) in atoms.iter().enumerate() {
        let sig: Vec<Vec<bool>> = policies.iter().map(|p| src_sig(p, atom)).collect();
        src_class_of.push(src_classes.add((sig, self_user(atom), None), i));
    }
    let mut dst_classes: Classes<Key> = Classes::new();
    let mut dst_class_of = Vec::with_capacity(atoms.len());
    for (i, dest) in dests.iter().enumerate() {
        let key: Key = match dest {
            Dest::Device(d) => (
                policies
                    .iter()
                    .map(|p| dst_sig_device(p, &atoms[*d]))
                    .collect(),
                self_user(&atoms[*d]),
                None,
            ),
            // Each service and each target is a class of its own, named as written.
            Dest::Service(atom) => (
                policies.iter().map(|p| dst_sig_device(p, atom)).collect(),
                None,
                Some(i),
            ),
            Dest::Target(set) => (
                policies.iter().map(|p| dst_sig_target(p, set)).collect(),
                None,
                Some(i),
            ),
        };
        let class = dst_classes.add(key, i);
        if matches!(dest, Dest::Device(_)) {
            dst_class_of.push(class);
        }
    }
    let usable: Vec<Vec<bool>> = policies.iter().map(|p| p.usable(view, None)).collect();
    // A device never counts as its own destination: (src class, dst class) → such devices.
    let mut own: HashMap<(usize, usize), u64> = HashMap::new();
    for (s, d) in src_class_of.iter().zip(&dst_class_of) {
        *own.entry((*s, *d)).or_default() += 1;
    }

    let mut changes = Vec::new();
    for (cs, (src_sig, src_user, _)) in src_classes.keys.iter().enumerate() {
        for (cd, (dst_sig, dst_user, _)) in dst_classes.keys.iter().enumerate() {
            let same_user = src_user.is_some() && src_user == dst_user;
            let caps: Vec<Caps> = policies
                .iter()
                .enumerate()
                .map(|(k, p)| class_caps(p, &usable[k], &src_sig[k], &dst_sig[k], same_user))
                .collect();
            let (gained, lost) = match caps.as_slice() {
                [only] => (only.clone(), Caps::default()),
                [before, after] => (after.minus(before), before.minus(after)),
                _ => unreachable!("one or two policies"),
            };
            let all = src_classes.members[cs].len() as u64 * dst_classes.members[cd].len() as u64;
            let device_pairs = all - own.get(&(cs, cd)).copied().unwrap_or(0);
            if (gained.is_empty() && lost.is_empty()) || device_pairs == 0 {
                continue;
            }
            changes.push(ClassChange {
                src: cs,
                dst: cd,
                device_pairs,
                gained,
                lost,
            });
        }
    }
    changes.sort_by_key(|c| std::cmp::Reverse(c.device_pairs));
    let describe = |members: &Vec<u32>| describe_class(members, view, &dest_labels);
    ClassDiff {
        src_classes: src_classes.members.iter().map(describe).collect(),
        dst_classes: dst_classes.members.iter().map(describe).collect(),
        src_members: src_classes.members,
        dst_members: dst_classes.members,
        dest_labels,
        changes,
    }
}

/// What a class's members share (see [`AccessClass::label`]). Members past the view's
/// devices are services and address targets, each its own class.
fn describe_class(members: &[u32], view: &TailnetView, dest_labels: &[String]) -> AccessClass {
    let first = members.first().map_or(0, |m| *m as usize);
    if first >= view.devices.len() {
        return AccessClass {
            label: dest_labels[first].clone(),
            devices: None,
        };
    }
    let identity = |device: &DeviceView| {
        if device.tags.is_empty() && device.user.is_empty() {
            "(no user)".to_owned()
        } else if device.tags.is_empty() {
            device.user.clone()
        } else {
            let mut tags = device.tags.clone();
            tags.sort();
            tags.join("+")
        }
    };
    if let [only] = members {
        let device = &view.devices[*only as usize];
        return AccessClass {
            label: format!("{} ({})", dest_labels[*only as usize], identity(device)),
            devices: Some(1),
        };
    }
    let mut identities: BTreeMap<String, u64> = BTreeMap::new();
    for &m in members {
        *identities
            .entry(identity(&view.devices[m as usize]))
            .or_default() += 1;
    }
    const SHOWN: usize = 3;
    let mut names: Vec<&str> = identities.keys().map(String::as_str).take(SHOWN).collect();
    let more = identities.len().saturating_sub(SHOWN);
    let more_text = format!("+{more} more");
    if more > 0 {
        names.push(&more_text);
    }
    AccessClass {
        label: names.join(", "),
        devices: Some(members.len() as u64),
    }
}

pub(super) fn src_sig(policy: &Policy, atom: &Atom) -> Vec<bool> {
    policy
        .rules
        .iter()
        .map(|r| r.src.iter().any(|s| s.matches_src(atom)))
        .collect()
}

/// One flag per (rule, dst selector); `autogroup:self` is resolved per pair instead.
pub(super) fn dst_sig_device(policy: &Policy, atom: &Atom) -> Vec<bool> {
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

/// `usable`: [`Policy::usable`] (a rule needing a posture is conditional here, device
/// attributes being unknown; a `via` rule needs one of its routers in the view).
fn class_caps(
    policy: &Policy,
    usable: &[bool],
    src_sig: &[bool],
    dst_sig: &[bool],
    same_user: bool,
) -> Caps {
    let mut caps = Caps::default();
    let mut offset = 0;
    for (ri, rule) in policy.rules.iter().enumerate() {
        let n = rule.dst.len();
        if !usable[ri] {
            offset += n;
            continue;
        }
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

/// The class diff against a plain enumeration of every (source device, destination) pair,
/// which is what the diff computed before classes existed: on small tailnets both are cheap,
/// and they must agree exactly, pair for pair and in the counts.
#[cfg(test)]
mod equivalence {
    use super::*;
    use serde_json::json;

    /// Every pair's capabilities, rule by rule, without classes.
    fn enumerate(
        policy: &Policy,
        targets: &[(String, IpSet)],
        view: &TailnetView,
    ) -> BTreeMap<(String, String), Caps> {
        let labels = device_labels(view);
        let atoms: Vec<Atom> = view.devices.iter().map(Atom::of_device).collect();
        let usable = policy.usable(view, None);
        let rules: Vec<(&super::super::Rule, bool)> =
            policy.rules.iter().zip(usable.iter().copied()).collect();
        let mut out = BTreeMap::new();
        for (s, src) in atoms.iter().enumerate() {
            for (d, dst) in atoms.iter().enumerate() {
                if s == d {
                    continue;
                }
                let mut caps = Caps::default();
                for (rule, _) in rules.iter().filter(|(r, ok)| *ok && r.matches(src, dst)) {
                    rule.caps.iter().for_each(|c| caps.add(c));
                }
                out.insert((labels[s].clone(), labels[d].clone()), caps);
            }
            for service in &view.services {
                let dst = Atom::of_service(service);
                let mut caps = Caps::default();
                for (rule, _) in rules.iter().filter(|(r, ok)| *ok && r.matches(src, &dst)) {
                    rule.caps.iter().for_each(|c| caps.add(c));
                }
                out.insert((labels[s].clone(), service.name.clone()), caps);
            }
            for (label, set) in targets {
                let mut caps = Caps::default();
                for (rule, _) in rules.iter().filter(|(_, ok)| *ok) {
                    let hit = rule.src.iter().any(|x| x.matches_src(src))
                        && rule.dst.iter().any(|x| x.covers(set));
                    if hit {
                        rule.caps.iter().for_each(|c| caps.add(c));
                    }
                }
                out.insert((labels[s].clone(), label.clone()), caps);
            }
        }
        out
    }

    fn enumerated_diff(old: &Policy, new: &Policy, view: &TailnetView) -> AccessDiff {
        // Targets are the address destinations either policy names.
        let targets = targets(&[old, new], view);
        let (before, after) = (
            enumerate(old, &targets, view),
            enumerate(new, &targets, view),
        );
        let keys: BTreeSet<&(String, String)> = before.keys().chain(after.keys()).collect();
        let mut diff = AccessDiff::default();
        for key in keys {
            let b = before.get(key).cloned().unwrap_or_default();
            let a = after.get(key).cloned().unwrap_or_default();
            a.minus(&b).pairs(&key.0, &key.1, &mut diff.gained);
            b.minus(&a).pairs(&key.0, &key.1, &mut diff.lost);
        }
        diff
    }

    const USERS: [&str; 4] = [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "",
    ];
    const TAGS: [&[&str]; 5] = [&[], &[], &["tag:web"], &["tag:db"], &["tag:prod", "tag:db"]];

    /// 90 devices: four users (one empty), tagged and untagged, repeated hostnames, some
    /// with only an IPv4 address, one inside `corp-net`'s range.
    fn view() -> TailnetView {
        let mut view = TailnetView {
            users: USERS[..3].iter().map(|u| u.to_string()).collect(),
            devices: Vec::new(),
            services: vec![crate::policy::access::ServiceView {
                name: "svc:grafana".into(),
                addresses: vec![
                    "100.100.0.7".parse().unwrap(),
                    "fd7a:115c:a1e0::7:7".parse().unwrap(),
                ],
            }],
        };
        for i in 0..90u32 {
            let mut addresses = vec![format!("100.64.{}.{}", i / 200, i % 200 + 1)];
            if i % 4 != 0 {
                addresses.push(format!("fd7a:115c:a1e0::{:x}", i + 1));
            }
            if i == 7 {
                addresses = vec!["10.1.2.3".into()];
            }
            view.devices.push(DeviceView {
                hostname: format!("node-{}", i % 40),
                addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
                user: USERS[(i % 4) as usize].to_string(),
                tags: TAGS[(i % 5) as usize]
                    .iter()
                    .map(|t| t.to_string())
                    .collect(),
                role: ["admin", "member", "auditor", ""][(i % 4) as usize].to_string(),
            });
        }
        view
    }

    fn policies() -> Vec<Policy> {
        let head = json!({
            "tagOwners": {"tag:web": ["alice@example.com"], "tag:db": ["group:eng"], "tag:prod": ["group:eng"]},
            "groups": {"group:eng": ["alice@example.com"], "group:ops": ["alice@example.com", "bob@example.com"]},
            "hosts": {"corp-net": "10.0.0.0/8", "db-vip": "100.64.0.20"},
        });
        let bodies = [
            json!({}),
            json!({"acls": [{"action": "accept", "src": ["alice@example.com"], "proto": "tcp", "dst": ["tag:web:80,443"]},
                            {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]}]}),
            json!({"acls": [{"action": "accept", "src": ["alice@example.com"], "proto": "tcp", "dst": ["tag:web:443"]}],
                   "grants": [{"src": ["bob@example.com"], "dst": ["tag:web"], "ip": ["tcp:8080"]}]}),
            json!({"acls": [{"action": "accept", "src": ["tag:web"], "dst": ["tag:db:*"]}]}),
            json!({"grants": [{"src": ["tag:web"], "dst": ["tag:prod"], "ip": ["tcp:22"]},
                              {"src": ["group:ops"], "dst": ["corp-net", "db-vip"], "ip": ["*"]}]}),
            json!({"grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}]}),
            json!({"postures": {"posture:mac": ["node:os == 'macos'"]},
                   "grants": [{"src": ["group:ops"], "dst": ["tag:web"], "ip": ["tcp:22"], "srcPosture": ["posture:mac"]},
                              {"src": ["group:eng"], "dst": ["autogroup:internet"], "ip": ["*"], "via": ["tag:web"]},
                              {"src": ["group:ops"], "dst": ["10.0.0.0/8"], "ip": ["*"], "via": ["tag:prod"]}]}),
            json!({"grants": [{"src": ["group:ops"], "dst": ["svc:grafana"], "ip": ["tcp:443"]},
                              {"src": ["tag:web"], "dst": ["svc:grafana", "svc:absent"], "ip": ["*"]}]}),
            json!({"grants": [{"src": ["autogroup:admin"], "dst": ["tag:db", "autogroup:auditor"], "ip": ["tcp:22"]},
                              {"src": ["autogroup:auditor"], "dst": ["autogroup:self"], "ip": ["*"]}]}),
            json!({"acls": [{"action": "accept", "src": ["group:eng", "tag:db"], "dst": ["autogroup:internet:443", "autogroup:member:22"]},
                            {"action": "accept", "src": ["autogroup:tagged"], "proto": "udp", "dst": ["100.64.0.0/30:53"]}]}),
            crate::sim::seed::demo_policy_doc(),
        ];
        bodies
            .into_iter()
            .map(|body| {
                let mut doc = head.clone();
                if let Some(extra) = body.as_object() {
                    for (k, v) in extra {
                        doc[k] = v.clone();
                    }
                }
                Policy::compile(&doc).expect("test policy compiles")
            })
            .collect()
    }

    #[test]
    fn class_diffs_expand_to_the_enumerated_pairs_with_the_same_counts() {
        let view = view();
        let policies = policies();
        let mut nonempty = 0;
        for (i, old) in policies.iter().enumerate() {
            for (j, new) in policies.iter().enumerate() {
                let classes = old.class_diff(new, &view);
                let expected = enumerated_diff(old, new, &view);
                let got = classes.pairs(usize::MAX);
                let differ = |a: &BTreeSet<AccessPair>, b: &BTreeSet<AccessPair>| {
                    let only: Vec<String> = a
                        .symmetric_difference(b)
                        .take(5)
                        .map(ToString::to_string)
                        .collect();
                    assert!(
                        only.is_empty(),
                        "policy {i} -> {j}: differing pairs {only:?}"
                    );
                };
                differ(&got.gained, &expected.gained);
                differ(&got.lost, &expected.lost);
                assert_eq!(classes.gained(), expected.gained.len() as u64, "{i} -> {j}");
                assert_eq!(classes.lost(), expected.lost.len() as u64, "{i} -> {j}");
                assert_eq!(classes.is_empty(), expected.is_empty(), "{i} -> {j}");
                let distinct = |set: &BTreeSet<AccessPair>| {
                    set.iter()
                        .map(|p| (p.src.clone(), p.dst.clone()))
                        .collect::<BTreeSet<_>>()
                        .len() as u64
                };
                assert_eq!(
                    classes.device_pairs(),
                    (distinct(&expected.gained), distinct(&expected.lost)),
                    "{i} -> {j}"
                );
                let line_pairs: u64 = classes.lines().iter().map(|l| l.device_pairs).sum();
                let (g, l) = classes.device_pairs();
                assert_eq!(line_pairs, g + l, "{i} -> {j}");
                nonempty += usize::from(!expected.is_empty());
            }
        }
        // The cases are not trivially empty.
        assert!(nonempty > 40, "{nonempty} non-empty diffs");
    }

    #[test]
    fn a_bounded_expansion_stops_near_the_limit_and_keeps_the_biggest_class_pairs_first() {
        let view = view();
        let policies = policies();
        let (none, everything) = (&policies[0], &policies[5]);
        let classes = none.class_diff(everything, &view);
        let few = classes.pairs(10);
        assert!(!few.gained.is_empty());
        assert!(
            (few.gained.len() as u64) < classes.gained(),
            "the expansion was bounded"
        );
        assert!(few.lost.is_empty());
        let lines = classes.lines();
        assert!(
            lines
                .windows(2)
                .all(|w| w[0].device_pairs >= w[1].device_pairs)
        );
    }

    #[test]
    fn class_lines_name_what_members_share_and_count_them() {
        let view = view();
        let policies = policies();
        let lines: Vec<String> = policies[0]
            .class_diff(&policies[3], &view)
            .lines()
            .iter()
            .map(ToString::to_string)
            .collect();
        // A rule without proto: TCP, UDP, ICMP and ICMPv6; tag:db includes tag:prod+tag:db.
        assert_eq!(
            lines,
            [
                "tag:web (18 devices) -> tag:db, tag:db+tag:prod (36 devices) icmp tcp udp ipv6-icmp  \
                 gained (648 device pairs)",
            ]
        );
    }

    /// `Policy::check` by a plain double loop over atoms, as it was before classes.
    fn check_by_enumeration(
        policy: &Policy,
        src: &crate::policy::access::Endpoint,
        dst: &crate::policy::access::Endpoint,
        port: u16,
        protos: &[Proto],
        view: &TailnetView,
    ) -> crate::policy::access::Verdict {
        use crate::policy::access::Verdict;
        let (srcs, dsts) = (
            policy.atoms(src, view).unwrap(),
            policy.atoms(dst, view).unwrap(),
        );
        let usable = policy.usable(view, None);
        let (mut accepted, mut dropped) = (None, None);
        for s in &srcs {
            for d in &dsts {
                let slot = if policy.pair_allowed_with(s, d, port, protos, &usable) {
                    &mut accepted
                } else {
                    &mut dropped
                };
                slot.get_or_insert_with(|| (s.label.clone(), d.label.clone()));
            }
        }
        match (accepted, dropped) {
            (Some(accepted), Some(dropped)) => Verdict::Partial { accepted, dropped },
            (Some(_), None) => Verdict::Accept,
            _ => Verdict::Drop,
        }
    }

    #[test]
    fn checks_by_class_answer_as_the_enumeration_with_the_same_examples() {
        use crate::policy::access::{Endpoint, IpPrefix};
        let view = view();
        let endpoints = [
            Endpoint::User("alice@example.com".into()),
            Endpoint::User("bob@example.com".into()),
            Endpoint::Group("group:ops".into()),
            Endpoint::Tag("tag:web".into()),
            Endpoint::Tag("tag:db".into()),
            Endpoint::Prefix(IpPrefix::parse("100.64.0.0/26").unwrap()),
            Endpoint::Prefix(IpPrefix::parse("10.0.0.0/8").unwrap()),
            Endpoint::Ip("100.64.0.20".parse().unwrap()),
            Endpoint::Hostname("node-3".into()),
        ];
        let mut checked = 0;
        for policy in policies() {
            for src in &endpoints {
                for dst in &endpoints {
                    for port in [22, 53, 443, 5432, 8080] {
                        for proto in [None, Some(Proto::TCP), Some(Proto::UDP)] {
                            let protos = match proto {
                                Some(p) => vec![p],
                                None => vec![Proto::TCP, Proto::UDP],
                            };
                            let Ok(got) = policy.check(src, dst, port, proto, &view) else {
                                continue;
                            };
                            let want =
                                check_by_enumeration(&policy, src, dst, port, &protos, &view);
                            assert_eq!(got, want, "{src:?} -> {dst:?} {proto:?}:{port}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked > 5_000, "{checked} checks compared");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(10_472_452), "10,472,452");
    }
}
