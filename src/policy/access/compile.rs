//! `Policy::compile`: validates the document and resolves it into accept rules.
//!
//! Every problem is reported (not just the first), each prefixed with the path of the
//! offending entry (`acls[1].dst[0] "tag:web:8o": ...`), so a user can fix them in one pass.
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::net::{IpPrefix, IpSet, internet};
use super::ports::{PortSet, Proto, ProtoSet, parse_ports};
use super::selector::{
    Defs, Position, Selector, check_host_name, check_tag, check_user, parse_addr_literal,
    parse_selector, resolve_host,
};
use super::{Cap, Policy, PolicyError, Rule};

/// Top-level sections Tailscale documents; others are kept but warned about (likely typos).
const KNOWN_SECTIONS: &[&str] = &[
    "acls",
    "grants",
    "groups",
    "hosts",
    "tagOwners",
    "tests",
    "sshTests",
    "ssh",
    "nodeAttrs",
    "autoApprovers",
    "postures",
    "defaultSrcPosture",
    "ipsets",
    "derpMap",
    "disableIPv4",
    "OneCGNATRoute",
    "randomizeClientPort",
    "attrConfig",
];

/// Owners `tagOwners` may name besides users, groups and tags.
const OWNER_AUTOGROUPS: &[&str] = &[
    "autogroup:admin",
    "autogroup:owner",
    "autogroup:member",
    "autogroup:it-admin",
    "autogroup:network-admin",
    "autogroup:billing-admin",
    "autogroup:auditor",
];

impl Policy {
    /// Compiles a parsed policy document (e.g. from [`crate::policy::hujson::parse_strict`]).
    ///
    /// Rejects: a non-object document, malformed `groups` (nested groups, non-user members),
    /// `hosts` values that are not IPs/CIDRs, unknown group/host/tag/ipset references, tags
    /// used in `acls`, `grants`, `ssh`, `nodeAttrs` or `autoApprovers` but missing from
    /// `tagOwners`, malformed ports and protocols, specific ports with a portless protocol,
    /// `action` other than `accept`, unknown fields inside `acls`/`grants` entries, and
    /// autogroups used on the wrong side. Section keys match case-insensitively, like
    /// Tailscale's decoder (`"ACLs"`, `"Action"`).
    pub fn compile(doc: &serde_json::Value) -> Result<Policy, PolicyError> {
        Policy::compile_problems(doc).map_err(|problems| PolicyError {
            message: problems.join("; "),
        })
    }

    /// Like [`Policy::compile`], with each problem as its own string (problem messages may
    /// themselves contain `"; "`, so the joined message cannot be split back).
    pub fn compile_problems(doc: &serde_json::Value) -> Result<Policy, Vec<String>> {
        let Some(root) = doc.as_object() else {
            return Err(vec!["the policy must be a JSON object".into()]);
        };
        let mut c = Compiler::default();
        c.compile(root);
        if !c.errors.is_empty() {
            return Err(c.errors);
        }
        let addr_sets = collect_addr_sets(&c.rules);
        let ssh_section = root
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("ssh"))
            .map(|(_, v)| v);
        let ssh = super::ssh::compile(ssh_section, &c.defs, &mut c.warnings);
        let postures_section = root
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("postures"))
            .map(|(_, v)| v);
        let postures = super::posture::Postures::compile(postures_section, &mut c.warnings);
        let ssh_tests = root
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("sshTests"))
            .map(|(_, v)| v.clone());
        let warnings: BTreeSet<String> = c.warnings.into_iter().collect();
        Ok(Policy {
            defs: c.defs,
            rules: c.rules,
            addr_sets,
            tests: c.tests,
            ssh,
            ssh_tests,
            postures,
            warnings: warnings.into_iter().collect(),
        })
    }
}

#[derive(Default)]
struct Compiler {
    errors: Vec<String>,
    warnings: Vec<String>,
    defs: Defs,
    rules: Vec<Rule>,
    tests: Option<Value>,
    /// `defaultSrcPosture`: the postures of rules without their own `srcPosture`.
    default_postures: Vec<String>,
}

impl Compiler {
    fn compile(&mut self, root: &Map<String, Value>) {
        for key in root.keys() {
            if !KNOWN_SECTIONS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                self.warnings.push(format!(
                    "unknown top-level section {key:?} is ignored by the local evaluator"
                ));
            }
        }
        // Definitions first: rules refer to them.
        let tag_owners = self.section(root, "tagOwners");
        let owners = tag_owners
            .map(|v| self.tag_owner_keys(v))
            .unwrap_or_default();
        if let Some(v) = self.section(root, "groups") {
            self.groups(v);
        }
        if let Some(v) = self.section(root, "hosts") {
            self.hosts(v);
        }
        if let Some(v) = self.section(root, "ipsets") {
            self.ipsets(v);
        }
        self.tag_owner_values(owners);
        if let Some(v) = self.section(root, "defaultSrcPosture") {
            self.default_postures = self
                .strings(v, "defaultSrcPosture")
                .into_iter()
                .map(|(_, s)| s.to_owned())
                .collect();
        }
        if let Some(v) = self.section(root, "acls") {
            for (i, entry) in self.array(v, "acls").into_iter().enumerate() {
                self.acl(i, entry);
            }
        }
        if let Some(v) = self.section(root, "grants") {
            for (i, entry) in self.array(v, "grants").into_iter().enumerate() {
                self.grant(i, entry);
            }
        }
        if let Some(v) = self.section(root, "tests") {
            if v.is_array() {
                self.tests = Some(v.clone());
            } else {
                self.errors.push("tests: must be an array".into());
            }
        }
        self.other_references(root);
    }

    // ---- generic helpers -------------------------------------------------------------

    /// Case-insensitive field lookup (Tailscale's Go decoder matches keys that way); two keys
    /// differing only in case are ambiguous and reported.
    fn get<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        name: &str,
        path: &str,
    ) -> Option<&'a Value> {
        let found: Vec<(&String, &Value)> = obj
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .collect();
        if found.len() > 1 {
            let keys: Vec<&String> = found.iter().map(|(k, _)| *k).collect();
            self.errors
                .push(format!("{path}: keys {keys:?} all set the field {name:?}"));
        }
        found.first().map(|(_, v)| *v)
    }

    fn section<'a>(&mut self, root: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
        self.get(root, name, "policy")
    }

    fn check_keys(&mut self, obj: &Map<String, Value>, known: &[&str], path: &str) {
        for key in obj.keys() {
            if !known.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                self.errors.push(format!(
                    "{path}: unknown field {key:?} (expected one of {known:?})"
                ));
            }
        }
    }

    fn object<'a>(&mut self, v: &'a Value, path: &str) -> Option<&'a Map<String, Value>> {
        let obj = v.as_object();
        if obj.is_none() {
            self.errors.push(format!("{path}: must be an object"));
        }
        obj
    }

    fn array<'a>(&mut self, v: &'a Value, path: &str) -> Vec<&'a Value> {
        match v.as_array() {
            Some(items) => items.iter().collect(),
            None => {
                self.errors.push(format!("{path}: must be an array"));
                Vec::new()
            }
        }
    }

    /// An array of strings; non-string items are reported and skipped.
    fn strings<'a>(&mut self, v: &'a Value, path: &str) -> Vec<(usize, &'a str)> {
        let mut out = Vec::new();
        for (j, item) in self.array(v, path).into_iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push((j, s)),
                None => self
                    .errors
                    .push(format!("{path}[{j}]: must be a string, found {item}")),
            }
        }
        out
    }

    /// A required field that also has a legacy name (`src`/`users`, `dst`/`ports`).
    fn one_of<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        name: &'static str,
        legacy: &'static str,
        path: &str,
    ) -> Option<(&'static str, &'a Value)> {
        let modern = self.get(obj, name, path);
        let old = self.get(obj, legacy, path);
        match (modern, old) {
            (Some(_), Some(_)) => {
                self.errors.push(format!(
                    "{path}: both {name:?} and its legacy name {legacy:?} are set"
                ));
                None
            }
            (Some(v), None) => Some((name, v)),
            (None, Some(v)) => Some((legacy, v)),
            (None, None) => {
                self.errors.push(format!("{path}: {name:?} is required"));
                None
            }
        }
    }

    fn selectors(&mut self, v: &Value, position: Position, path: &str) -> Vec<Selector> {
        let mut out = Vec::new();
        for (j, text) in self.strings(v, path) {
            match parse_selector(text, position, &self.defs, &mut self.warnings) {
                Ok(sel) => out.push(sel),
                Err(e) => self.errors.push(format!("{path}[{j}] {text:?}: {e}")),
            }
        }
        out
    }

    // ---- definitions -----------------------------------------------------------------

    fn groups(&mut self, v: &Value) {
        let Some(obj) = self.object(v, "groups") else {
            return;
        };
        for (name, members) in obj {
            let path = format!("groups[{name:?}]");
            let valid_name = name.strip_prefix("group:").is_some_and(|n| {
                !n.is_empty()
                    && !n
                        .chars()
                        .any(|c| c.is_whitespace() || matches!(c, ':' | ','))
            });
            if !valid_name {
                self.errors
                    .push(format!("{path}: group names must be \"group:<name>\""));
            }
            let mut set = BTreeSet::new();
            for (j, member) in self.strings(members, &path) {
                let problem = if member.starts_with("group:") {
                    Some("groups cannot contain other groups".to_string())
                } else if member.starts_with("tag:")
                    || member.starts_with("autogroup:")
                    || !member.contains('@')
                {
                    Some("group members must be users (name@domain)".to_string())
                } else {
                    check_user(member).err()
                };
                match problem {
                    Some(p) => self.errors.push(format!("{path}[{j}] {member:?}: {p}")),
                    None => {
                        set.insert(member.to_string());
                    }
                }
            }
            // Defined even when malformed, so references to it do not cascade into errors.
            self.defs.groups.insert(name.clone(), set);
        }
    }

    fn hosts(&mut self, v: &Value) {
        let Some(obj) = self.object(v, "hosts") else {
            return;
        };
        for (name, value) in obj {
            let path = format!("hosts[{name:?}]");
            if let Err(e) = check_host_name(name) {
                self.errors.push(format!("{path}: {e}"));
                continue;
            }
            let parsed = value
                .as_str()
                .ok_or_else(|| format!("must be an IP address or CIDR string, found {value}"))
                .and_then(IpPrefix::parse);
            match parsed {
                Ok(prefix) => {
                    self.defs.hosts.insert(name.clone(), prefix);
                }
                Err(e) => self.errors.push(format!("{path}: {e}")),
            }
        }
    }

    fn ipsets(&mut self, v: &Value) {
        let Some(obj) = self.object(v, "ipsets") else {
            return;
        };
        let mut raw: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
        for (name, entries) in obj {
            let path = format!("ipsets[{name:?}]");
            if !name.starts_with("ipset:") || name.len() == "ipset:".len() {
                self.errors
                    .push(format!("{path}: ipset names must be \"ipset:<name>\""));
                continue;
            }
            let list = self
                .strings(entries, &path)
                .into_iter()
                .map(|(j, s)| (j, s.to_string()))
                .collect();
            raw.insert(name.clone(), list);
        }
        let names: Vec<String> = raw.keys().cloned().collect();
        for name in names {
            self.resolve_ipset(&name, &raw, &mut Vec::new());
        }
    }

    /// Resolves `ipset:x` entries in order: `[add|remove] <IP|CIDR|host|ipset:y>`.
    fn resolve_ipset(
        &mut self,
        name: &str,
        raw: &BTreeMap<String, Vec<(usize, String)>>,
        stack: &mut Vec<String>,
    ) -> IpSet {
        if let Some(done) = self.defs.ipsets.get(name) {
            return done.clone();
        }
        if stack.iter().any(|s| s == name) {
            self.errors.push(format!(
                "ipsets[{name:?}]: circular reference through {}",
                stack.join(" -> ")
            ));
            return IpSet::default();
        }
        stack.push(name.to_string());
        let mut set = IpSet::default();
        for (j, entry) in raw.get(name).map(Vec::as_slice).unwrap_or_default() {
            let (remove, target) = match entry.split_once(' ') {
                Some(("add", t)) => (false, t.trim()),
                Some(("remove", t)) => (true, t.trim()),
                _ => (false, entry.as_str()),
            };
            let resolved = if target.starts_with("ipset:") {
                if raw.contains_key(target) {
                    Ok(self.resolve_ipset(target, raw, stack))
                } else {
                    Err(format!("ipset {target:?} is not defined"))
                }
            } else {
                match parse_addr_literal(target) {
                    Ok(Some(s)) => Ok(s),
                    Ok(None) => resolve_host(target, &self.defs).map(IpSet::from_prefix),
                    Err(e) => Err(e),
                }
            };
            match resolved {
                Ok(s) if remove => set = set.subtract(&s),
                Ok(s) => set = set.union(&s),
                Err(e) => self
                    .errors
                    .push(format!("ipsets[{name:?}][{j}] {entry:?}: {e}")),
            }
        }
        stack.pop();
        self.defs.ipsets.insert(name.to_string(), set.clone());
        set
    }

    /// Declares every `tagOwners` key (tags may own tags, so all keys come first).
    fn tag_owner_keys<'a>(&mut self, v: &'a Value) -> Vec<(String, &'a Value)> {
        let Some(obj) = self.object(v, "tagOwners") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (tag, owners) in obj {
            if let Err(e) = check_tag(tag).and_then(|()| {
                tag.starts_with("tag:")
                    .then_some(())
                    .ok_or_else(|| "tag names must be \"tag:<name>\"".to_string())
            }) {
                self.errors.push(format!("tagOwners[{tag:?}]: {e}"));
            }
            self.defs.tags.insert(tag.clone());
            out.push((tag.clone(), owners));
        }
        out
    }

    fn tag_owner_values(&mut self, owners: Vec<(String, &Value)>) {
        for (tag, value) in owners {
            let path = format!("tagOwners[{tag:?}]");
            for (j, owner) in self.strings(value, &path) {
                let problem = if owner.starts_with("group:") {
                    (!self.defs.groups.contains_key(owner))
                        .then(|| format!("group {owner:?} is not defined in \"groups\""))
                } else if owner.starts_with("tag:") {
                    (!self.defs.tags.contains(owner))
                        .then(|| format!("tag {owner:?} is not defined in \"tagOwners\""))
                } else if owner.starts_with("autogroup:") {
                    (!OWNER_AUTOGROUPS.contains(&owner))
                        .then(|| format!("{owner:?} cannot own tags"))
                } else if owner.contains('@') {
                    check_user(owner).err()
                } else {
                    Some("tag owners must be users, groups, tags or autogroups".to_string())
                };
                if let Some(p) = problem {
                    self.errors.push(format!("{path}[{j}] {owner:?}: {p}"));
                }
            }
        }
    }

    // ---- rules -------------------------------------------------------------------------

    fn acl(&mut self, i: usize, entry: &Value) {
        let path = format!("acls[{i}]");
        let Some(obj) = self.object(entry, &path) else {
            return;
        };
        self.check_keys(
            obj,
            &[
                "action",
                "src",
                "users",
                "dst",
                "ports",
                "proto",
                "srcPosture",
            ],
            &path,
        );
        match self.get(obj, "action", &path).and_then(Value::as_str) {
            Some("accept") => {}
            Some(other) => self.errors.push(format!(
                "{path}.action {other:?}: the only action is \"accept\" (access is denied by default)"
            )),
            None => self
                .errors
                .push(format!("{path}: \"action\": \"accept\" is required")),
        }
        let postures = self.postures(obj, &path);
        let protos = self.acl_proto(obj, &path);
        let src = match self.one_of(obj, "src", "users", &path) {
            Some((field, v)) => self.selectors(v, Position::Src, &format!("{path}.{field}")),
            None => Vec::new(),
        };
        let Some((field, dst)) = self.one_of(obj, "dst", "ports", &path) else {
            return;
        };
        let dst_path = format!("{path}.{field}");
        for (j, text) in self.strings(dst, &dst_path) {
            match self.acl_destination(text, protos) {
                Ok((sel, ports)) => self.rules.push(Rule {
                    origin: path.clone(),
                    src: src.clone(),
                    dst: vec![sel],
                    caps: vec![Cap { protos, ports }],
                    postures: postures.clone(),
                    via: Vec::new(),
                }),
                Err(e) => self.errors.push(format!("{dst_path}[{j}] {text:?}: {e}")),
            }
        }
    }

    fn acl_proto(&mut self, obj: &Map<String, Value>, path: &str) -> ProtoSet {
        match self.get(obj, "proto", path) {
            None => ProtoSet::default_set(),
            Some(Value::String(s)) => match Proto::parse(s) {
                Ok(p) => ProtoSet::of(&[p]),
                Err(e) => {
                    self.errors.push(format!("{path}.proto: {e}"));
                    ProtoSet::default_set()
                }
            },
            Some(other) => {
                self.errors
                    .push(format!("{path}.proto: must be a string, found {other}"));
                ProtoSet::default_set()
            }
        }
    }

    /// `<target>:<ports>` with the target resolved and the ports checked against `protos`.
    fn acl_destination(
        &mut self,
        text: &str,
        protos: ProtoSet,
    ) -> Result<(Selector, PortSet), String> {
        let (target, ports_text) = split_target_ports(text)?;
        let ports =
            parse_ports(ports_text).map_err(|e| format!("expected \"<target>:<ports>\": {e}"))?;
        if !protos.any_with_ports() && !ports.is_all() {
            return Err(format!("this protocol has no ports; write \"{target}:*\""));
        }
        let sel = parse_selector(&target, Position::AclDst, &self.defs, &mut self.warnings)?;
        Ok((sel, ports))
    }

    fn grant(&mut self, i: usize, entry: &Value) {
        let path = format!("grants[{i}]");
        let Some(obj) = self.object(entry, &path) else {
            return;
        };
        self.check_keys(
            obj,
            &["src", "dst", "ip", "app", "srcPosture", "via"],
            &path,
        );
        let postures = self.postures(obj, &path);
        let src = match self.get(obj, "src", &path) {
            Some(v) => self.selectors(v, Position::Src, &format!("{path}.src")),
            None => {
                self.errors.push(format!("{path}: \"src\" is required"));
                Vec::new()
            }
        };
        let dst = match self.get(obj, "dst", &path) {
            Some(v) => self.selectors(v, Position::GrantDst, &format!("{path}.dst")),
            None => {
                self.errors.push(format!("{path}: \"dst\" is required"));
                Vec::new()
            }
        };
        let ip = self.get(obj, "ip", &path);
        let app = self.get(obj, "app", &path);
        if let Some(app) = app {
            if !app.is_object() {
                self.errors.push(format!("{path}.app: must be an object"));
            }
        }
        if ip.is_none() && app.is_none() {
            self.errors
                .push(format!("{path}: a grant needs \"ip\" and/or \"app\""));
        }
        let via = match self.get(obj, "via", &path) {
            Some(via) => self.grant_via(via, &path),
            None => Vec::new(),
        };
        let mut caps = Vec::new();
        if let Some(ip) = ip {
            for (j, text) in self.strings(ip, &format!("{path}.ip")) {
                match parse_grant_ip(text) {
                    Ok(cap) => caps.push(cap),
                    Err(e) => self.errors.push(format!("{path}.ip[{j}] {text:?}: {e}")),
                }
            }
        }
        // A grant with only `app` grants no network access.
        if !caps.is_empty() {
            self.rules.push(Rule {
                origin: path,
                src,
                dst,
                caps,
                postures,
                via,
            });
        }
    }

    /// The router tags of a grant's `via`, each defined in `tagOwners`.
    fn grant_via(&mut self, via: &Value, path: &str) -> Vec<String> {
        let via_path = format!("{path}.via");
        let mut tags = Vec::new();
        for (j, tag) in self.strings(via, &via_path) {
            tags.push(tag.to_owned());
            let problem = check_tag(tag).err().or_else(|| {
                (!self.defs.tags.contains(tag))
                    .then(|| format!("tag {tag:?} is not defined in \"tagOwners\""))
            });
            if let Some(p) = problem {
                self.errors.push(format!("{via_path}[{j}] {tag:?}: {p}"));
            }
        }
        self.warnings.push(format!(
            "{path}.via: evaluated as granting only while a device tagged {} exists in the \
             tailnet (whether it advertises and is approved for the routes is not checked)",
            tags.join(" or ")
        ));
        tags
    }

    /// The rule's postures (`srcPosture`, else `defaultSrcPosture`); a rule that has any is
    /// conditional, which the warnings say.
    fn postures(&mut self, obj: &Map<String, Value>, path: &str) -> Vec<String> {
        let own: Vec<String> = match self.get(obj, "srcPosture", path) {
            Some(v) => self
                .strings(v, &format!("{path}.srcPosture"))
                .into_iter()
                .map(|(_, s)| s.to_owned())
                .collect(),
            None => self.default_postures.clone(),
        };
        if !own.is_empty() {
            self.warnings.push(format!(
                "{path} depends on posture {}: device posture attributes are not read, so it \
                 is conditional and grants nothing in local evaluation (policy tests evaluate \
                 it with srcPostureAttrs)",
                own.join(", ")
            ));
        }
        own
    }

    /// Tags and groups referenced from sections the evaluator does not model must still exist.
    fn other_references(&mut self, root: &Map<String, Value>) {
        if let Some(ssh) = self.section(root, "ssh") {
            for (i, rule) in self.array(ssh, "ssh").into_iter().enumerate() {
                if let Some(obj) = rule.as_object() {
                    for field in ["src", "dst"] {
                        if let Some(v) = self.get(obj, field, &format!("ssh[{i}]")) {
                            self.check_refs(v, &format!("ssh[{i}].{field}"));
                        }
                    }
                }
            }
        }
        if let Some(attrs) = self.section(root, "nodeAttrs") {
            for (i, entry) in self.array(attrs, "nodeAttrs").into_iter().enumerate() {
                if let Some(obj) = entry.as_object() {
                    if let Some(v) = self.get(obj, "target", &format!("nodeAttrs[{i}]")) {
                        self.check_refs(v, &format!("nodeAttrs[{i}].target"));
                    }
                }
            }
        }
        if let Some(Value::Object(aa)) = self.section(root, "autoApprovers") {
            if let Some(v) = self.get(aa, "exitNode", "autoApprovers") {
                self.check_refs(v, "autoApprovers.exitNode");
            }
            for field in ["routes", "services"] {
                if let Some(Value::Object(map)) = self.get(aa, field, "autoApprovers") {
                    for (key, v) in map {
                        self.check_refs(v, &format!("autoApprovers.{field}[{key:?}]"));
                    }
                }
            }
        }
    }

    fn check_refs(&mut self, v: &Value, path: &str) {
        let Some(items) = v.as_array() else {
            return;
        };
        for (j, item) in items.iter().enumerate() {
            let Some(s) = item.as_str() else { continue };
            if s.starts_with("tag:") && !self.defs.tags.contains(s) {
                self.errors.push(format!(
                    "{path}[{j}] {s:?}: tag {s:?} is not defined in \"tagOwners\""
                ));
            } else if s.starts_with("group:") && !self.defs.groups.contains_key(s) {
                self.errors.push(format!(
                    "{path}[{j}] {s:?}: group {s:?} is not defined in \"groups\""
                ));
            }
        }
    }
}

/// One grant `ip` entry: `*`, `<ports>` (default protocols) or `<proto>:<ports>`.
fn parse_grant_ip(text: &str) -> Result<Cap, String> {
    if text == "*" {
        return Ok(Cap {
            protos: ProtoSet::all(),
            ports: PortSet::all(),
        });
    }
    match text.split_once(':') {
        Some((proto, ports)) => {
            let proto = Proto::parse(proto)?;
            let ports = parse_ports(ports)?;
            if !proto.has_ports() && !ports.is_all() {
                return Err(format!("{proto} has no ports; write \"{proto}:*\""));
            }
            Ok(Cap {
                protos: ProtoSet::of(&[proto]),
                ports,
            })
        }
        None => {
            if let Ok(proto) = Proto::parse(text) {
                if text.parse::<u16>().is_err() {
                    return Err(format!("write \"{proto}:*\" (or \"{proto}:<ports>\")"));
                }
            }
            Ok(Cap {
                protos: ProtoSet::default_set(),
                ports: parse_ports(text)?,
            })
        }
    }
}

/// Splits `target:ports` at the last colon, or `[v6]:ports` / `[v6]/bits:ports`.
pub(crate) fn split_target_ports(text: &str) -> Result<(String, &str), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| "unterminated \"[\"".to_string())?;
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("square brackets are only valid around an IPv6 address".into());
        }
        let (bits, ports) = match after.split_once(':') {
            Some((bits, ports)) if bits.is_empty() || bits.starts_with('/') => (bits, ports),
            _ => return Err("expected \"[<ipv6>]:<ports>\"".into()),
        };
        return Ok((format!("{inner}{bits}"), ports));
    }
    match text.rsplit_once(':') {
        Some((target, ports)) if !target.is_empty() && !ports.is_empty() => {
            Ok((target.to_string(), ports))
        }
        _ => Err("expected \"<target>:<ports>\"".into()),
    }
}

fn collect_addr_sets(rules: &[Rule]) -> Vec<IpSet> {
    let mut sets: Vec<IpSet> = vec![internet().clone()];
    for rule in rules {
        for sel in rule.src.iter().chain(&rule.dst) {
            if let Some(set) = sel.addr_set() {
                if !sets.contains(set) {
                    sets.push(set.clone());
                }
            }
        }
    }
    sets
}
