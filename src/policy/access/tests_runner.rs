//! Policy `tests`: `{"src", "proto"?, "accept": ["host:port"], "deny": [...]}` (legacy
//! `user`/`allow` accepted). Failures use Tailscale's wording, e.g.
//! `address "tag:db:5432": want: Accept, got: Drop`.
use serde_json::{Map, Value};

use super::compile::split_target_ports;
use super::eval::Verdict;
use super::ports::Proto;
use super::{Policy, TailnetView, TestFailure};

const TEST_FIELDS: &[&str] = &[
    "src",
    "user",
    "proto",
    "accept",
    "allow",
    "deny",
    "srcPostureAttrs",
];

impl Policy {
    /// Runs `tests` (a JSON array of policy tests), or the policy's own `tests` and
    /// `sshTests` when `None`.
    ///
    /// One [`TestFailure`] per failing test, with one error per unmet expectation or per
    /// problem (unknown user/group/tag/host, malformed destination): a bad reference fails the
    /// test, it never panics. `accept` needs every source device to reach every destination
    /// device; `deny` needs none to. Without `proto`, a destination counts as accepted when
    /// TCP or UDP is. `srcPostureAttrs` gives the source's posture attributes: rules needing a
    /// posture count when it holds for them (without, they grant nothing).
    pub fn run_tests(
        &self,
        tests: Option<&serde_json::Value>,
        view: &TailnetView,
    ) -> Vec<TestFailure> {
        let own = tests.is_none();
        let mut failures = self.run_network_tests(tests.or(self.tests.as_ref()), view);
        if own {
            failures.extend(self.run_ssh_tests(view));
        }
        failures
    }

    fn run_network_tests(
        &self,
        tests: Option<&serde_json::Value>,
        view: &TailnetView,
    ) -> Vec<TestFailure> {
        let Some(tests) = tests else {
            return Vec::new();
        };
        let Some(list) = tests.as_array() else {
            return vec![TestFailure {
                src: String::new(),
                errors: vec!["tests must be an array".into()],
            }];
        };
        list.iter()
            .enumerate()
            .filter_map(|(i, test)| self.run_test(i, test, view))
            .collect()
    }

    fn run_test(&self, i: usize, test: &Value, view: &TailnetView) -> Option<TestFailure> {
        let Some(obj) = test.as_object() else {
            return Some(TestFailure {
                src: String::new(),
                errors: vec![format!("tests[{i}]: must be an object")],
            });
        };
        let mut errors = Vec::new();
        for key in obj.keys() {
            if !TEST_FIELDS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                errors.push(format!("tests[{i}]: unknown field {key:?}"));
            }
        }
        let src = match either(obj, "src", "user") {
            Ok(Some(Value::String(s))) => s.clone(),
            Ok(Some(other)) => {
                errors.push(format!("tests[{i}].src: must be a string, found {other}"));
                String::new()
            }
            Ok(None) => {
                errors.push(format!("tests[{i}]: \"src\" is required"));
                String::new()
            }
            Err(e) => {
                errors.push(format!("tests[{i}]: {e}"));
                String::new()
            }
        };
        let proto = match field(obj, "proto") {
            None => Ok(None),
            Some(Value::String(p)) => Proto::parse(p).map(Some),
            Some(other) => Err(format!("must be a string, found {other}")),
        };
        let attrs = match field(obj, "srcPostureAttrs") {
            None => None,
            Some(Value::Object(map)) => Some(map.clone()),
            Some(other) => {
                errors.push(format!(
                    "tests[{i}].srcPostureAttrs: must be an object, found {other}"
                ));
                None
            }
        };
        let accept = destinations(either(obj, "accept", "allow"), i, "accept", &mut errors);
        let deny = destinations(Ok(field(obj, "deny")), i, "deny", &mut errors);
        let proto = match proto {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("tests[{i}].proto: {e}"));
                return Some(TestFailure { src, errors });
            }
        };
        if src.is_empty() {
            return Some(TestFailure { src, errors });
        }
        match self.resolve_endpoint(&src, view) {
            Ok(source) => {
                for (dst, want_accept) in accept
                    .iter()
                    .map(|d| (d, true))
                    .chain(deny.iter().map(|d| (d, false)))
                {
                    let expectation = Expectation {
                        dst,
                        want_accept,
                        proto,
                        attrs: attrs.as_ref(),
                    };
                    if let Some(e) = self.expectation(&source, &expectation, view) {
                        errors.push(e);
                    }
                }
            }
            Err(e) => errors.push(format!("src {src:?}: {e}")),
        }
        (!errors.is_empty()).then_some(TestFailure { src, errors })
    }

    /// Checks one `accept`/`deny` entry; `Some(message)` when it is not met.
    fn expectation(
        &self,
        source: &super::Endpoint,
        expectation: &Expectation<'_>,
        view: &TailnetView,
    ) -> Option<String> {
        let Expectation {
            dst,
            want_accept,
            proto,
            attrs,
        } = *expectation;
        let parsed = split_target_ports(dst).and_then(|(host, port)| {
            let port = parse_single_port(port)?;
            Ok((self.resolve_endpoint(&host, view)?, port))
        });
        let (target, port) = match parsed {
            Ok(p) => p,
            Err(e) => return Some(format!("address {dst:?}: {e}")),
        };
        let verdict = match self.check_with(source, &target, port, proto, view, attrs) {
            Ok(v) => v,
            Err(e) => return Some(format!("address {dst:?}: {e}")),
        };
        let want = if want_accept { "Accept" } else { "Drop" };
        match (verdict, want_accept) {
            (Verdict::Accept, true) | (Verdict::Drop, false) => None,
            (Verdict::Drop, true) => Some(format!("address {dst:?}: want: Accept, got: Drop")),
            (Verdict::Accept, false) => Some(format!("address {dst:?}: want: Drop, got: Accept")),
            (Verdict::Partial { accepted, dropped }, _) => {
                let (got, (from, to)) = if want_accept {
                    ("Drop", dropped)
                } else {
                    ("Accept", accepted)
                };
                Some(format!(
                    "address {dst:?}: want: {want}, got: {got} from {from} to {to}"
                ))
            }
        }
    }
}

/// One `accept` or `deny` entry of a test, with the test's protocol and source postures.
struct Expectation<'a> {
    dst: &'a str,
    want_accept: bool,
    proto: Option<Proto>,
    attrs: Option<&'a serde_json::Map<String, Value>>,
}

/// Case-insensitive field lookup.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// A field with a legacy name; both set is an error.
fn either<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    legacy: &str,
) -> Result<Option<&'a Value>, String> {
    match (field(obj, name), field(obj, legacy)) {
        (Some(_), Some(_)) => Err(format!(
            "both {name:?} and its legacy name {legacy:?} are set"
        )),
        (a, b) => Ok(a.or(b)),
    }
}

fn destinations(
    value: Result<Option<&Value>, String>,
    i: usize,
    name: &str,
    errors: &mut Vec<String>,
) -> Vec<String> {
    match value {
        Ok(None) => Vec::new(),
        Ok(Some(Value::Array(items))) => items
            .iter()
            .enumerate()
            .filter_map(|(j, item)| match item.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    errors.push(format!(
                        "tests[{i}].{name}[{j}]: must be a string, found {item}"
                    ));
                    None
                }
            })
            .collect(),
        Ok(Some(other)) => {
            errors.push(format!(
                "tests[{i}].{name}: must be an array, found {other}"
            ));
            Vec::new()
        }
        Err(e) => {
            errors.push(format!("tests[{i}]: {e}"));
            Vec::new()
        }
    }
}

/// Test destinations name exactly one numeric port.
fn parse_single_port(text: &str) -> Result<u16, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "port {text:?} must be a single number (no *, ranges or lists in tests)"
        ));
    }
    text.parse()
        .map_err(|_| format!("port {text} is out of range (0-65535)"))
}
