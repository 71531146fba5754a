//! Local checks of a policy before any API call: strict parse, compile (every tag used is in
//! `tagOwners`, every group, host and ipset referenced exists, ports and protocols are well
//! formed), then the policy's own `tests` in the local evaluator.
//!
//! Problems are actionable: an undefined tag, group, host or ipset is reported once, with
//! every place it is used (up to a few) and what to add where, e.g.
//! `tag "tag:web" is used in grants[2].dst[0] but not defined in tagOwners: add it to
//! tagOwners (e.g. "tag:web": ["autogroup:admin"]) in the Base TailnetPolicy or a Fragment`.
//!
//! [`offline_view`] builds a [`TailnetView`] from the identities policies mention, for the
//! offline commands that have no tailnet to ask (`policy test`, `policy diff`).
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

use super::access::{DeviceView, Policy, TailnetView, TestFailure};
use super::hujson::{self, HujsonError};

/// What an undefined reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefKind {
    Tag,
    Group,
    Host,
    Ipset,
}

impl RefKind {
    fn noun(self) -> &'static str {
        match self {
            RefKind::Tag => "tag",
            RefKind::Group => "group",
            RefKind::Host => "host",
            RefKind::Ipset => "ipset",
        }
    }

    fn section(self) -> &'static str {
        match self {
            RefKind::Tag => "tagOwners",
            RefKind::Group => "groups",
            RefKind::Host => "hosts",
            RefKind::Ipset => "ipsets",
        }
    }

    fn example_value(self) -> &'static str {
        match self {
            RefKind::Tag => "[\"autogroup:admin\"]",
            RefKind::Group => "[\"user@example.com\"]",
            RefKind::Host => "\"100.64.0.10\"",
            RefKind::Ipset => "[\"10.0.0.0/8\"]",
        }
    }
}

/// One reason the policy cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckProblem {
    /// Not strict HuJSON.
    Syntax(HujsonError),
    /// A tag, group, host or ipset used but not defined; `used_in` are paths such as
    /// `grants[2].dst[0]`, in the order the compiler met them.
    Undefined {
        kind: RefKind,
        name: String,
        used_in: Vec<String>,
    },
    /// Any other compile problem; the message starts with the offending entry's path.
    Invalid { message: String },
    /// A policy test that fails in the local evaluator.
    TestFailed(TestFailure),
}

/// Paths listed per undefined reference before "and N more".
const USED_IN_SHOWN: usize = 3;

impl CheckProblem {
    /// A stable CamelCase reason, for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            CheckProblem::Syntax(_) => "InvalidHuJSON",
            CheckProblem::Undefined { kind, .. } => match kind {
                RefKind::Tag => "UndefinedTag",
                RefKind::Group => "UndefinedGroup",
                RefKind::Host => "UndefinedHost",
                RefKind::Ipset => "UndefinedIpset",
            },
            CheckProblem::Invalid { .. } => "InvalidPolicy",
            CheckProblem::TestFailed(_) => "TestFailed",
        }
    }
}

impl fmt::Display for CheckProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckProblem::Syntax(e) => write!(
                f,
                "invalid HuJSON at line {}, column {}: {}",
                e.line, e.column, e.message
            ),
            CheckProblem::Undefined {
                kind,
                name,
                used_in,
            } => {
                let mut places = used_in
                    .iter()
                    .take(USED_IN_SHOWN)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if used_in.len() > USED_IN_SHOWN {
                    places.push_str(&format!(" and {} more", used_in.len() - USED_IN_SHOWN));
                }
                let (noun, section) = (kind.noun(), kind.section());
                write!(
                    f,
                    "{noun} {name:?} is used in {places} but not defined in {section}: add it to \
                     {section} (e.g. {name:?}: {}) in the Base TailnetPolicy or a Fragment",
                    kind.example_value()
                )?;
                if *kind == RefKind::Host {
                    f.write_str(", or correct it if it meant a user, group:, tag: or IP")?;
                }
                Ok(())
            }
            CheckProblem::Invalid { message } => write!(f, "invalid policy: {message}"),
            CheckProblem::TestFailed(failure) => write!(
                f,
                "policy test for {:?} failed: {}",
                failure.src,
                failure.errors.join("; ")
            ),
        }
    }
}

/// The result of [`check`]: the compiled policy when it compiles, and every problem found.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    pub policy: Option<Policy>,
    pub problems: Vec<CheckProblem>,
}

impl CheckOutcome {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Things compiled but not evaluable locally (see [`Policy::warnings`]).
    pub fn warnings(&self) -> &[String] {
        self.policy.as_ref().map_or(&[], Policy::warnings)
    }
}

/// Parses `text` strictly, compiles it and runs its tests over `view`.
pub fn check(text: &str, view: &TailnetView) -> CheckOutcome {
    match hujson::parse_strict(text) {
        Ok(doc) => check_value(&doc, view),
        Err(e) => CheckOutcome {
            policy: None,
            problems: vec![CheckProblem::Syntax(e)],
        },
    }
}

/// Compiles an already parsed policy and runs its tests over `view` (tests only run when the
/// policy compiles).
pub fn check_value(doc: &Value, view: &TailnetView) -> CheckOutcome {
    match compile(doc) {
        Ok(policy) => {
            let problems = policy
                .run_tests(None, view)
                .into_iter()
                .map(CheckProblem::TestFailed)
                .collect();
            CheckOutcome {
                policy: Some(policy),
                problems,
            }
        }
        Err(problems) => CheckOutcome {
            policy: None,
            problems,
        },
    }
}

/// Compiles a policy, turning the compiler's problems into [`CheckProblem`]s: undefined
/// references grouped by name first (sorted by kind and name), then the rest in order.
pub fn compile(doc: &Value) -> Result<Policy, Vec<CheckProblem>> {
    Policy::compile_problems(doc).map_err(classify)
}

fn classify(messages: Vec<String>) -> Vec<CheckProblem> {
    let mut undefined: BTreeMap<(RefKind, String), Vec<String>> = BTreeMap::new();
    let mut others = Vec::new();
    for message in messages {
        match parse_reference(&message) {
            Some((kind, name, location)) => {
                undefined.entry((kind, name)).or_default().push(location)
            }
            None => others.push(CheckProblem::Invalid { message }),
        }
    }
    let mut problems: Vec<CheckProblem> = undefined
        .into_iter()
        .map(|((kind, name), used_in)| CheckProblem::Undefined {
            kind,
            name,
            used_in,
        })
        .collect();
    problems.extend(others);
    problems
}

/// Recognises the compiler's "not defined" problems, e.g.
/// `grants[2].dst[0] "tag:web": tag "tag:web" is not defined in "tagOwners"`, returning the
/// kind, the name and the path. The wording is pinned by this module's tests.
fn parse_reference(message: &str) -> Option<(RefKind, String, String)> {
    const HOST_SUFFIX: &str = " is not a defined host alias, an IP/CIDR, a user (name@domain), a group:, tag:, or autogroup:";
    let (head, reason) = message.rsplit_once(": ")?;
    let location = head.split(" \"").next()?.to_string();
    let defined_in = |noun: &str, section: &str| {
        reason
            .strip_prefix(&format!("{noun} "))?
            .strip_suffix(&format!(" is not defined in \"{section}\""))
            .map(str::to_string)
    };
    let (kind, quoted) = if let Some(q) = defined_in("tag", "tagOwners") {
        (RefKind::Tag, q)
    } else if let Some(q) = defined_in("group", "groups") {
        (RefKind::Group, q)
    } else if let Some(q) = defined_in("ipset", "ipsets") {
        (RefKind::Ipset, q)
    } else {
        (RefKind::Host, reason.strip_suffix(HOST_SUFFIX)?.to_string())
    };
    let name: String = serde_json::from_str(&quoted).ok()?;
    Some((kind, name, location))
}

/// A view for checking without a tailnet: every user and tag the policies mention in `acls`,
/// `grants`, `tests`, `groups` and `tagOwners` becomes one device (hostname = the login or the
/// tag, no addresses). Users are the untagged devices' owners; tags come from `tagOwners` keys
/// and uses. Address selectors (IPs, CIDRs, `hosts`) match no such device, so access to them
/// shows up as targets (`alice@example.com -> db tcp:5432`).
pub fn offline_view<'a>(docs: impl IntoIterator<Item = &'a Value>) -> TailnetView {
    let mut ids = Identities::default();
    for doc in docs {
        let Some(root) = doc.as_object() else {
            continue;
        };
        for (section, value) in root {
            match section.to_ascii_lowercase().as_str() {
                "acls" => ids.entries(value, &["src", "users", "dst", "ports"]),
                "grants" => ids.entries(value, &["src", "dst"]),
                "tests" => ids.entries(value, &["src", "user", "accept", "allow", "deny"]),
                "groups" | "tagowners" => ids.map(value),
                _ => {}
            }
        }
    }
    let users: Vec<String> = ids.users.into_iter().collect();
    let mut devices: Vec<DeviceView> = users
        .iter()
        .map(|user| DeviceView {
            hostname: user.clone(),
            addresses: Vec::new(),
            user: user.clone(),
            tags: Vec::new(),
            role: String::new(),
        })
        .collect();
    devices.extend(ids.tags.into_iter().map(|tag| DeviceView {
        hostname: tag.clone(),
        addresses: Vec::new(),
        user: String::new(),
        tags: vec![tag],
        role: String::new(),
    }));
    TailnetView {
        users,
        devices,
        services: Vec::new(),
    }
}

#[derive(Default)]
struct Identities {
    users: BTreeSet<String>,
    tags: BTreeSet<String>,
}

impl Identities {
    /// Entries of a list section: the named fields (case-insensitive), strings or lists.
    fn entries(&mut self, section: &Value, fields: &[&str]) {
        for entry in section.as_array().into_iter().flatten() {
            let Some(obj) = entry.as_object() else {
                continue;
            };
            for (key, value) in obj {
                if fields.iter().any(|f| f.eq_ignore_ascii_case(key)) {
                    self.strings(value);
                }
            }
        }
    }

    /// A map section: its keys and the strings of its values.
    fn map(&mut self, section: &Value) {
        let empty = Map::new();
        for (key, value) in section.as_object().unwrap_or(&empty) {
            self.note(key);
            self.strings(value);
        }
    }

    fn strings(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.note(s),
            Value::Array(items) => items.iter().for_each(|v| self.strings(v)),
            _ => {}
        }
    }

    /// `tag:x`, `tag:x:22`, `user@domain` or `user@domain:22`.
    fn note(&mut self, text: &str) {
        let bad = |c: char| c.is_whitespace() || matches!(c, ',' | '*' | '/' | '"');
        if let Some(rest) = text.strip_prefix("tag:") {
            let name = rest.split(':').next().unwrap_or_default();
            if !name.is_empty() && !name.contains(bad) {
                self.tags.insert(format!("tag:{name}"));
            }
        } else if text.contains('@') && !text.starts_with("autogroup:") {
            let login = text.split(':').next().unwrap_or_default();
            if login.contains('@') && !login.starts_with('@') && !login.contains(bad) {
                self.users.insert(login.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(doc: Value) -> Vec<CheckProblem> {
        check_value(&doc, &offline_view([&doc])).problems
    }

    fn messages(doc: Value) -> Vec<String> {
        problems(doc).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn an_undefined_tag_is_one_actionable_problem_listing_where_it_is_used() {
        let doc = json!({
            "tagOwners": {"tag:db": ["autogroup:admin"]},
            "acls": [{"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"]}],
            "grants": [
                {"src": ["*"], "dst": ["tag:db"], "ip": ["*"]},
                {"src": ["*"], "dst": ["tag:db"], "ip": ["*"]},
                {"src": ["autogroup:member"], "dst": ["tag:web"], "ip": ["443"]},
            ],
            "nodeAttrs": [{"target": ["tag:web"], "attr": ["funnel"]}],
        });
        let found = problems(doc);
        assert_eq!(
            found,
            [CheckProblem::Undefined {
                kind: RefKind::Tag,
                name: "tag:web".into(),
                used_in: vec![
                    "acls[0].src[0]".into(),
                    "grants[2].dst[0]".into(),
                    "nodeAttrs[0].target[0]".into(),
                ],
            }]
        );
        assert_eq!(
            found[0].to_string(),
            "tag \"tag:web\" is used in acls[0].src[0], grants[2].dst[0], nodeAttrs[0].target[0] \
             but not defined in tagOwners: add it to tagOwners (e.g. \"tag:web\": \
             [\"autogroup:admin\"]) in the Base TailnetPolicy or a Fragment"
        );
        assert_eq!(found[0].reason(), "UndefinedTag");
    }

    #[test]
    fn long_usage_lists_are_capped() {
        let grants: Vec<Value> = (0..5)
            .map(|_| json!({"src": ["*"], "dst": ["tag:x"], "ip": ["*"]}))
            .collect();
        let found = messages(json!({ "grants": grants }));
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("grants[0].dst[0], grants[1].dst[0], grants[2].dst[0] and 2 more"),
            "{found:?}"
        );
    }

    #[test]
    fn unknown_groups_hosts_and_ipsets_say_what_to_add() {
        let doc = json!({
            "tagOwners": {"tag:web": ["group:ops"]},
            "acls": [{"action": "accept", "src": ["group:ops"], "dst": ["db:5432", "ipset:corp:*"]}],
        });
        let found = problems(doc);
        let reasons: Vec<&str> = found.iter().map(CheckProblem::reason).collect();
        assert_eq!(
            reasons,
            ["UndefinedGroup", "UndefinedHost", "UndefinedIpset"]
        );
        let group = found[0].to_string();
        assert!(
            group.starts_with(
                "group \"group:ops\" is used in tagOwners[\"tag:web\"][0], acls[0].src[0] but not \
                 defined in groups: add it to groups (e.g. \"group:ops\": [\"user@example.com\"])"
            ),
            "{group}"
        );
        assert_eq!(
            found[1].to_string(),
            "host \"db\" is used in acls[0].dst[0] but not defined in hosts: add it to hosts \
             (e.g. \"db\": \"100.64.0.10\") in the Base TailnetPolicy or a Fragment, or correct \
             it if it meant a user, group:, tag: or IP"
        );
        assert!(
            found[2]
                .to_string()
                .contains("ipset \"ipset:corp\" is used in acls[0].dst[1]")
        );
    }

    #[test]
    fn other_compile_problems_name_the_entry() {
        let found = problems(json!({
            "acls": [{"action": "accept", "src": ["*"], "dst": ["*:8o"]}],
        }));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].reason(), "InvalidPolicy");
        assert!(
            found[0]
                .to_string()
                .starts_with("invalid policy: acls[0].dst[0] \"*:8o\": "),
            "{}",
            found[0]
        );
    }

    #[test]
    fn failing_policy_tests_are_reported_by_src() {
        let doc = json!({
            "groups": {"group:eng": ["alice@example.com"]},
            "grants": [{"src": ["group:eng"], "dst": ["*"], "ip": ["22"]}],
            "tests": [
                {"src": "alice@example.com", "accept": ["bob@example.com:22"]},
                {"src": "bob@example.com", "accept": ["alice@example.com:22"]},
            ],
        });
        let found = problems(doc);
        assert_eq!(
            found,
            [CheckProblem::TestFailed(TestFailure {
                src: "bob@example.com".into(),
                errors: vec!["address \"alice@example.com:22\": want: Accept, got: Drop".into()],
            })]
        );
        assert_eq!(found[0].reason(), "TestFailed");
        assert_eq!(
            found[0].to_string(),
            "policy test for \"bob@example.com\" failed: address \"alice@example.com:22\": \
             want: Accept, got: Drop"
        );
    }

    #[test]
    fn tests_need_their_users_in_the_view() {
        let doc = json!({
            "grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}],
            "tests": [{"src": "carol@example.com", "accept": ["100.64.0.1:22"]}],
        });
        let outcome = check_value(&doc, &TailnetView::default());
        assert!(
            outcome.problems[0]
                .to_string()
                .contains("not found in the tailnet"),
            "{:?}",
            outcome.problems
        );
        assert!(check_value(&doc, &offline_view([&doc])).is_ok());
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let outcome = check("{\n  \"acls\": [,]\n}", &TailnetView::default());
        let [CheckProblem::Syntax(e)] = outcome.problems.as_slice() else {
            panic!("{:?}", outcome.problems);
        };
        assert_eq!((e.line, e.column), (2, 12));
        assert!(
            outcome.problems[0]
                .to_string()
                .starts_with("invalid HuJSON at line 2, column 12: ")
        );
        assert!(outcome.policy.is_none());
    }

    #[test]
    fn a_valid_policy_has_no_problems_and_keeps_its_warnings() {
        let outcome = check(
            r#"{"tagOwners": {"tag:a": []}, "grants": [{"src": ["tag:a"], "dst": ["tag:a"], "ip": ["*"], "srcPosture": ["posture:x"]}], "postures": {"posture:x": []}}"#,
            &TailnetView::default(),
        );
        assert!(outcome.is_ok(), "{:?}", outcome.problems);
        assert!(outcome.warnings().iter().any(|w| w.contains("srcPosture")));
    }

    #[test]
    fn the_offline_view_holds_the_users_and_tags_the_policies_name() {
        let old = json!({
            "groups": {"group:eng": ["alice@example.com"]},
            "tagOwners": {"tag:web": ["bob@example.com"], "tag:unused": []},
            "acls": [{"action": "accept", "src": ["carol@example.com"], "dst": ["tag:db:5432", "dave@example.com:22"]}],
            "derpMap": {"Regions": {"900": {"RegionName": "ops@example.com"}}},
        });
        let new = json!({
            "Grants": [{"src": ["autogroup:member"], "dst": ["tag:api"], "ip": ["*"], "app": {"x": [{"who": "eve@example.com"}]}}],
            "tests": [{"src": "frank@example.com", "deny": ["tag:web:80"]}],
        });
        let view = offline_view([&old, &new]);
        assert_eq!(
            view.users,
            [
                "alice@example.com",
                "bob@example.com",
                "carol@example.com",
                "dave@example.com",
                "frank@example.com"
            ]
        );
        let hosts: Vec<&str> = view.devices.iter().map(|d| d.hostname.as_str()).collect();
        assert_eq!(
            hosts,
            [
                "alice@example.com",
                "bob@example.com",
                "carol@example.com",
                "dave@example.com",
                "frank@example.com",
                "tag:api",
                "tag:db",
                "tag:unused",
                "tag:web"
            ]
        );
        let web = view
            .devices
            .iter()
            .find(|d| d.hostname == "tag:web")
            .unwrap();
        assert_eq!(
            (web.user.as_str(), web.tags.as_slice()),
            ("", &["tag:web".to_string()][..])
        );
        assert!(view.devices.iter().all(|d| d.addresses.is_empty()));
    }
}
