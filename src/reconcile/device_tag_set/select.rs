//! Selector matching: globs, OS, tags, user, node ids; the `tag:k8s*` / shared-in skip rule;
//! and the policy's `autoApprovers` (routes the control plane enables by itself).
use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::Value;

use crate::policy::access::IpPrefix;
use crate::resources::device_tag_set::DeviceSelector;
use crate::tailscale::Device;

/// Tags with this prefix belong to Tailscale's own Kubernetes operator (`docs/device-tag-set.md`).
pub const K8S_TAG_PREFIX: &str = "tag:k8s";

/// Whether `selector` matches `device`. Every given part must match; an empty selector matches
/// nothing (the CRD refuses it; this is the safe answer should one get through). Devices
/// tagged `tag:k8s*` and shared-in devices match only when named by node id.
pub fn matches(selector: &DeviceSelector, device: &Device) -> bool {
    if is_empty(selector) {
        return false;
    }
    let named = selector
        .node_ids
        .iter()
        .any(|id| *id == device.node_id || (!device.id.is_empty() && *id == device.id));
    if !selector.node_ids.is_empty() && !named {
        return false;
    }
    if !named && is_protected(device) {
        return false;
    }
    let any_glob = |globs: &[String], texts: &[&str]| {
        globs.is_empty() || globs.iter().any(|g| texts.iter().any(|t| glob(g, t)))
    };
    let short_name = device.name.split('.').next().unwrap_or_default();
    // Cheap comparisons first: every set is matched against every device.
    (selector.os.is_empty()
        || selector
            .os
            .iter()
            .any(|os| os.eq_ignore_ascii_case(&device.os)))
        && selector.tags.iter().all(|t| device.tags.contains(t))
        && selector
            .user
            .as_ref()
            .is_none_or(|u| u.eq_ignore_ascii_case(&device.user))
        && any_glob(&selector.hostnames, &[&device.hostname])
        && any_glob(&selector.names, &[&device.name, short_name])
}

fn is_empty(selector: &DeviceSelector) -> bool {
    selector.hostnames.is_empty()
        && selector.names.is_empty()
        && selector.os.is_empty()
        && selector.tags.is_empty()
        && selector.user.is_none()
        && selector.node_ids.is_empty()
}

/// Devices the operator leaves alone unless named: Tailscale's operator's (`tag:k8s*`) and
/// devices shared in from another tailnet (they cannot be edited anyway).
pub fn is_protected(device: &Device) -> bool {
    device.is_external || device.tags.iter().any(|t| t.starts_with(K8S_TAG_PREFIX))
}

/// Case-insensitive glob: `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    // Hostnames are ASCII: compare bytes without allocating (the planner matches every set
    // against every device). Anything else goes by characters.
    if pattern.is_ascii() && text.is_ascii() {
        return glob_units(pattern.as_bytes(), text.as_bytes(), |a, b| {
            a.eq_ignore_ascii_case(b)
        });
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_units(&p, &t, |a, b| a.eq_ignore_ascii_case(b))
}

/// A unit that can stand for `*` and `?` in a pattern.
trait GlobUnit: Copy {
    fn is(self, c: char) -> bool;
}

impl GlobUnit for u8 {
    fn is(self, c: char) -> bool {
        char::from(self) == c
    }
}

impl GlobUnit for char {
    fn is(self, c: char) -> bool {
        self == c
    }
}

fn glob_units<U: GlobUnit>(p: &[U], t: &[U], same: impl Fn(&U, &U) -> bool) -> bool {
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and how much text it has swallowed so far, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi].is('?') || same(&p[pi], &t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi].is('*') {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((star_p, star_t)) = star {
            pi = star_p + 1;
            ti = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| c.is('*'))
}

/// The policy's `autoApprovers`: routes and exit nodes the control plane enables by itself
/// when a matching device advertises them. The operator keeps such routes enabled instead of
/// fighting the auto-approver (reference §10.5).
#[derive(Debug, Clone, Default)]
pub struct AutoApprovers {
    routes: Vec<(IpPrefix, Vec<String>)>,
    exit_node: Vec<String>,
    groups: HashMap<String, Vec<String>>,
}

impl AutoApprovers {
    /// No auto-approvers (no policy read, or none defined).
    pub fn none() -> AutoApprovers {
        AutoApprovers::default()
    }

    /// From the parsed policy document. Entries that do not parse are ignored (the policy
    /// reconcile reports them).
    pub fn from_policy(doc: &Value) -> AutoApprovers {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let routes = doc
            .pointer("/autoApprovers/routes")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(cidr, who)| Some((IpPrefix::parse(cidr).ok()?, strings(who))))
                    .collect()
            })
            .unwrap_or_default();
        let exit_node = doc
            .pointer("/autoApprovers/exitNode")
            .map(strings)
            .unwrap_or_default();
        let groups = doc
            .get("groups")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
            .unwrap_or_default();
        AutoApprovers {
            routes,
            exit_node,
            groups,
        }
    }

    /// Would the control plane enable `route` on `device` by itself?
    pub fn approves(&self, device: &Device, route: &str) -> bool {
        if route == "0.0.0.0/0" || route == "::/0" {
            return self.exit_node.iter().any(|w| self.is_approver(w, device));
        }
        let Ok(wanted) = IpPrefix::parse(route) else {
            return false;
        };
        self.routes.iter().any(|(prefix, who)| {
            covers(prefix, &wanted) && who.iter().any(|w| self.is_approver(w, device))
        })
    }

    fn is_approver(&self, who: &str, device: &Device) -> bool {
        let untagged = device.tags.is_empty();
        if who.starts_with("tag:") {
            device.tags.iter().any(|t| t == who)
        } else if who == "autogroup:member" {
            untagged
        } else if who.starts_with("group:") {
            untagged
                && self
                    .groups
                    .get(who)
                    .is_some_and(|m| m.iter().any(|u| u.eq_ignore_ascii_case(&device.user)))
        } else {
            untagged && who.eq_ignore_ascii_case(&device.user)
        }
    }
}

fn covers(outer: &IpPrefix, inner: &IpPrefix) -> bool {
    let same_family = matches!(
        (outer.addr(), inner.addr()),
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
    );
    same_family && outer.bits() <= inner.bits() && outer.contains(inner.addr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn device(hostname: &str, tags: &[&str]) -> Device {
        Device {
            node_id: format!("n-{hostname}"),
            hostname: hostname.into(),
            name: format!("{hostname}.tail1234.ts.net"),
            os: "linux".into(),
            user: "alice@example.com".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Device::default()
        }
    }

    #[test]
    fn globs_match_like_a_shell_ignoring_case() {
        assert!(glob("web-*", "web-1"));
        assert!(glob("WEB-*", "web-1"));
        assert!(glob("*-0??", "api-012"));
        assert!(!glob("*-0??", "api-0123"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("*", ""));
        assert!(!glob("?", ""));
    }

    #[test]
    fn every_given_part_must_match() {
        let d = device("web-1", &["tag:server"]);
        let sel = |v: Value| -> DeviceSelector { serde_json::from_value(v).unwrap() };
        assert!(matches(&sel(json!({"hostnames": ["web-*"]})), &d));
        assert!(matches(&sel(json!({"names": ["web-1"]})), &d));
        assert!(matches(
            &sel(
                json!({"hostnames": ["web-*"], "os": ["Linux"], "tags": ["tag:server"], "user": "alice@example.com"})
            ),
            &d
        ));
        assert!(!matches(
            &sel(json!({"hostnames": ["web-*"], "os": ["windows"]})),
            &d
        ));
        assert!(!matches(
            &sel(json!({"hostnames": ["web-*"], "tags": ["tag:prod"]})),
            &d
        ));
        assert!(!matches(&sel(json!({})), &d), "empty selects nothing");
    }

    #[test]
    fn k8s_and_shared_in_devices_need_their_node_id() {
        let sel = |v: Value| -> DeviceSelector { serde_json::from_value(v).unwrap() };
        let proxy = device("ts-proxy", &["tag:k8s"]);
        let mut shared = device("hello", &[]);
        shared.is_external = true;
        assert!(!matches(&sel(json!({"hostnames": ["*"]})), &proxy));
        assert!(!matches(&sel(json!({"hostnames": ["*"]})), &shared));
        assert!(matches(&sel(json!({"nodeIds": ["n-ts-proxy"]})), &proxy));
        assert!(matches(
            &sel(json!({"nodeIds": ["n-hello"], "hostnames": ["hel*"]})),
            &shared
        ));
    }

    #[test]
    fn auto_approvers_cover_contained_routes_and_exit_nodes_by_tag_group_or_user() {
        let doc = json!({
            "groups": {"group:sre": ["bob@example.com"]},
            "autoApprovers": {
                "routes": {"10.10.0.0/16": ["tag:router"], "192.168.0.0/16": ["group:sre"]},
                "exitNode": ["alice@example.com"],
            },
        });
        let approvers = AutoApprovers::from_policy(&doc);
        let router = device("r", &["tag:router"]);
        assert!(approvers.approves(&router, "10.10.1.0/24"));
        assert!(!approvers.approves(&router, "10.0.0.0/8"));
        assert!(!approvers.approves(&router, "192.168.1.0/24"));
        let mut bob = device("b", &[]);
        bob.user = "bob@example.com".into();
        assert!(approvers.approves(&bob, "192.168.1.0/24"));
        let alice = device("a", &[]);
        assert!(approvers.approves(&alice, "0.0.0.0/0"));
        assert!(!approvers.approves(&router, "::/0"));
        assert!(!AutoApprovers::none().approves(&router, "10.10.1.0/24"));
    }
}
