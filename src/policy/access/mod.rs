//! Local access evaluator for the network part of a policy's `acls` and `grants`.
//!
//! # Model
//!
//! [`Policy::compile`] turns the document into a list of accept rules; access is denied unless
//! some rule accepts it (rules only accept, so `acls` and `grants` combine as a union). Each
//! rule is *sources × destinations × capabilities*, where a capability is a protocol set with
//! a port set: an `acls` entry yields one rule per `dst` entry (its ports, the rule's `proto`),
//! a grant yields one rule with its `dst` list and one capability per `ip` entry. A grant with
//! only `app` grants no network access.
//!
//! Evaluation is symbolic over *atoms*: an atom is an identity (the owning user of an untagged
//! device, or the tags of a tagged device) plus the addresses it sends from / is reached at.
//! Identity selectors (users, `group:`, `tag:`, `autogroup:member|tagged|self`) match on the
//! identity; address selectors (IPs, CIDRs, `hosts` aliases, `ipsets`, `autogroup:internet`)
//! match when one of the atom's addresses is inside; `*` matches everything. A tagged device
//! belongs to its tags only: its former owner's user selector no longer matches it.
//! `autogroup:self` matches a destination whose user equals the (untagged) source's user.
//!
//! An [`Endpoint`] expands to atoms using the [`TailnetView`]:
//! - a device: one atom, all its addresses (so "the device can reach X" if any address can);
//! - a user or tag: one atom per matching device in the view, or a single address-less
//!   identity atom when the view has none (so policy tests work on an empty tailnet);
//! - a group: the atoms of each member;
//! - an IP: one atom with the identity of the device holding it (if any);
//! - a CIDR or host alias: its addresses split into pieces that every selector of the policy
//!   treats uniformly (each device address in it is its own piece).
//!
//! [`Policy::check`] returns [`Verdict::Accept`] only if every source atom can reach every
//! destination atom, [`Verdict::Drop`] if none can, and [`Verdict::Partial`] otherwise; a
//! policy test's `accept` needs `Accept` and its `deny` needs `Drop`.
//!
//! # Protocols and ports
//!
//! A rule without `proto` (and a grant `ip` entry without a protocol, e.g. `"443"`) covers
//! TCP, UDP, ICMP and ICMPv6, which is how Tailscale compiles it. Ports only exist for TCP,
//! UDP and SCTP: any other protocol is granted only by an "all ports" (`*`) capability, and a
//! rule naming such a protocol with specific ports is rejected at compile time. (Tailscale's
//! client additionally answers ICMP echo from any peer allowed to reach any port; that is a
//! data-plane convenience, not a policy grant, and is not modelled.) A policy test without
//! `proto` passes `accept` if TCP or UDP is accepted, as the API documents.
//!
//! # Not modelled
//!
//! Grant `via` only as far as a router with one of its tags existing (routes and approvals
//! are not checked), `app` capabilities, `autogroup:shared` (matches nothing, with a warning), `svc:`
//! destinations (not in the view, match nothing, with a warning), subnet routes being approved
//! (address selectors match any address). Role autogroups (`autogroup:admin`, …) match the
//! untagged devices of users with that role ([`DeviceView::role`]). `ssh` rules and `sshTests`
//! are evaluated too (see the `ssh` module).
mod compile;
mod eval;
mod heatmap;
mod matrix;
mod net;
mod ports;
mod posture;
mod selector;
mod ssh;
mod tests_runner;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::IpAddr;

pub use eval::{Endpoint, Verdict};
pub use heatmap::{HeatAxis, HeatCell, Heatmap};
pub(crate) use matrix::thousands;
pub use matrix::{AccessClass, AccessDiff, AccessPair, Change, ClassDiff, ClassLine, ProtoMatch};
pub use net::IpPrefix;
pub use ports::{PortRange, PortSet, Proto, ProtoSet, parse_ports};

use ports::PortSet as Ports;
use selector::{Defs, Selector};

/// What the evaluator knows about the tailnet's users and devices.
#[derive(Debug, Clone, Default)]
pub struct TailnetView {
    /// Login names of the tailnet's users, e.g. `alice@example.com`.
    pub users: Vec<String>,
    pub devices: Vec<DeviceView>,
    /// The tailnet's Tailscale Services (VIPs), for `svc:` destinations. Empty when unknown:
    /// rules naming a service then grant nothing locally.
    pub services: Vec<ServiceView>,
}

/// A Tailscale Service as the evaluator sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceView {
    /// `svc:<dns-label>`.
    pub name: String,
    /// Its virtual IP addresses.
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceView {
    pub hostname: String,
    pub addresses: Vec<IpAddr>,
    /// Login name of the owning user (meaningless once the device is tagged).
    pub user: String,
    pub tags: Vec<String>,
    /// The owning user's role (`owner`, `admin`, `it-admin`, `network-admin`,
    /// `billing-admin`, `auditor`, `member`), for role autogroups; empty when unknown.
    pub role: String,
}

/// A policy document that does not compile (unknown group, malformed rule, ...). The message
/// names every offending entry by path, e.g. `acls[1].dst[0] "tag:web:8o": ...`, joined by
/// `"; "`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    pub message: String,
}

/// One failing policy test, shaped like the API's `data` entries: `{"user": src, "errors": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    pub src: String,
    pub errors: Vec<String>,
}

/// A compiled policy: resolved definitions plus the accept rules of `acls` and `grants`.
#[derive(Debug, Clone)]
pub struct Policy {
    defs: Defs,
    rules: Vec<Rule>,
    /// Address sets named anywhere in the rules (plus the internet); CIDR endpoints are split
    /// along their boundaries.
    addr_sets: Vec<net::IpSet>,
    tests: Option<serde_json::Value>,
    /// The `ssh` rules and `sshTests` (see the `ssh` module).
    ssh: ssh::SshRules,
    ssh_tests: Option<serde_json::Value>,
    postures: posture::Postures,
    warnings: Vec<String>,
}

/// One accept rule: any source × any destination × any capability.
#[derive(Debug, Clone)]
struct Rule {
    /// Where the rule came from, e.g. `acls[2]` or `grants[0]`.
    origin: String,
    src: Vec<Selector>,
    dst: Vec<Selector>,
    caps: Vec<Cap>,
    /// Postures the source must satisfy (`srcPosture`, else `defaultSrcPosture`): a
    /// conditional rule (see the `posture` module).
    postures: Vec<String>,
    /// A grant's `via`: router tags its traffic must pass through.
    via: Vec<String>,
}

/// Protocols × ports granted by a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cap {
    protos: ProtoSet,
    ports: Ports,
}

impl Cap {
    /// Does this capability grant `proto` to `port`? Portless protocols need all ports.
    fn grants(&self, proto: Proto, port: u16) -> bool {
        self.protos.contains(proto)
            && if proto.has_ports() {
                self.ports.contains(port)
            } else {
                self.ports.is_all()
            }
    }
}

impl Policy {
    /// Notes about things compiled but not evaluable locally (`autogroup:shared`, `svc:`
    /// destinations, unknown top-level sections, postures, `via`). Deduplicated, sorted.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// True when `tag` is declared in `tagOwners`.
    pub fn is_tag_defined(&self, tag: &str) -> bool {
        self.defs.tags.contains(tag)
    }

    /// The tags among `tags` that `tagOwners` does not declare (e.g. tags a `DeviceTagSet`
    /// wants to apply; Tailscale refuses those), sorted and deduplicated.
    pub fn undefined_tags<'a>(&self, tags: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let missing: BTreeSet<String> = tags
            .into_iter()
            .filter(|t| !self.is_tag_defined(t))
            .map(str::to_string)
            .collect();
        missing.into_iter().collect()
    }

    /// Members of a `groups` entry.
    pub fn group_members(&self, group: &str) -> Option<&BTreeSet<String>> {
        self.defs.groups.get(group)
    }

    /// Number of compiled accept rules (one per `acls` dst entry, one per network grant).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}
