//! Device postures: `postures` definitions, a rule's `srcPosture` (or the policy's
//! `defaultSrcPosture`), and the test field `srcPostureAttrs`.
//!
//! A posture is a list of conditions, all of which must hold for the source device:
//! `node:os IN ['macos', 'windows']`, `node:tsVersion >= '1.60'`, `custom:tier == 'prod'`,
//! `node:tsAutoUpdate == true`, `custom:x IS SET`, `custom:y NOT SET`. Operators: `==`, `!=`,
//! `<`, `<=`, `>`, `>=`, `IN`, `NOT IN`, `IS SET`, `NOT SET`; version-like strings (`1.60.2`)
//! compare by number, segment by segment.
//!
//! The evaluator does not read devices' posture attributes (they are a per-device API call),
//! so a rule that needs a posture is *conditional*: it grants nothing in the access diff and in
//! `check`, and the warnings name it ("depends on posture …"). Policy tests give the source's
//! attributes in `srcPostureAttrs`; there the conditions are evaluated against them (absent
//! attributes: a condition other than `NOT SET` fails, as in Tailscale).
use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value;

/// A source device's posture attributes, e.g. `{"node:os": "macos"}`.
pub type PostureAttrs = serde_json::Map<String, Value>;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    IsSet,
    NotSet,
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    attr: String,
    op: Op,
    value: Value,
}

/// The `postures` section, compiled. A posture whose conditions do not parse is kept as
/// unevaluable: it never holds (the warnings say why).
#[derive(Debug, Clone, Default)]
pub(crate) struct Postures {
    defs: BTreeMap<String, Option<Vec<Condition>>>,
}

impl Postures {
    /// Compiles `postures`; problems go to `warnings` (Tailscale checks the syntax on save).
    pub fn compile(section: Option<&Value>, warnings: &mut Vec<String>) -> Postures {
        let mut out = Postures::default();
        let Some(Value::Object(map)) = section else {
            return out;
        };
        for (name, conditions) in map {
            let parsed: Result<Vec<Condition>, String> = match conditions {
                Value::Array(items) => items
                    .iter()
                    .map(|c| match c.as_str() {
                        Some(text) => parse_condition(text),
                        None => Err(format!("{c} is not a string")),
                    })
                    .collect(),
                other => Err(format!("must be a list of conditions, found {other}")),
            };
            match parsed {
                Ok(conditions) => {
                    out.defs.insert(name.clone(), Some(conditions));
                }
                Err(e) => {
                    warnings.push(format!(
                        "posture {name:?} is not evaluated locally ({e}): rules needing it grant \
                         nothing locally"
                    ));
                    out.defs.insert(name.clone(), None);
                }
            }
        }
        out
    }

    /// Whether every posture in `names` holds for a device with `attrs`.
    pub fn hold(&self, names: &[String], attrs: &PostureAttrs) -> bool {
        names.iter().all(|name| match self.defs.get(name) {
            Some(Some(conditions)) => conditions.iter().all(|c| c.holds(attrs)),
            _ => false,
        })
    }
}

impl Condition {
    fn holds(&self, attrs: &PostureAttrs) -> bool {
        let actual = attrs.get(&self.attr).filter(|v| !v.is_null());
        match (&self.op, actual) {
            (Op::IsSet, found) => found.is_some(),
            (Op::NotSet, found) => found.is_none(),
            (_, None) => false,
            (Op::Eq, Some(a)) => same(a, &self.value),
            (Op::Ne, Some(a)) => !same(a, &self.value),
            (Op::In, Some(a)) => self.list().iter().any(|v| same(a, v)),
            (Op::NotIn, Some(a)) => !self.list().iter().any(|v| same(a, v)),
            (Op::Lt, Some(a)) => order(a, &self.value) == Some(Ordering::Less),
            (Op::Le, Some(a)) => matches!(
                order(a, &self.value),
                Some(Ordering::Less | Ordering::Equal)
            ),
            (Op::Gt, Some(a)) => order(a, &self.value) == Some(Ordering::Greater),
            (Op::Ge, Some(a)) => {
                matches!(
                    order(a, &self.value),
                    Some(Ordering::Greater | Ordering::Equal)
                )
            }
        }
    }

    fn list(&self) -> &[Value] {
        self.value.as_array().map_or(&[], Vec::as_slice)
    }
}

/// Equal as values; strings case-insensitively (`macOS` is `macos`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Numbers by value; version-like strings segment by segment; other strings as text.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => match (version(x), version(y)) {
            (Some(vx), Some(vy)) => Some(vx.cmp(&vy)),
            _ => Some(x.cmp(y)),
        },
        _ => None,
    }
}

/// `1.60.2` → [1, 60, 2]; a suffix after the numbers (`1.60.2-t1234`) is ignored.
fn version(text: &str) -> Option<Vec<u64>> {
    let numeric = text.split(['-', '+', ' ']).next()?;
    numeric.split('.').map(|p| p.parse().ok()).collect()
}

fn parse_condition(text: &str) -> Result<Condition, String> {
    let text = text.trim();
    let (attr, rest) = text
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("{text:?}: expected \"<attribute> <operator> <value>\""))?;
    let rest = rest.trim_start();
    let upper = rest.to_ascii_uppercase();
    for (word, op) in [("IS SET", Op::IsSet), ("NOT SET", Op::NotSet)] {
        if upper == word {
            return Ok(Condition {
                attr: attr.to_owned(),
                op,
                value: Value::Null,
            });
        }
    }
    let operators = [
        ("NOT IN", Op::NotIn),
        ("IN", Op::In),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    let (op, value_text) = operators
        .into_iter()
        .find_map(|(word, op)| {
            let starts = upper.starts_with(word)
                && (!word.chars().all(char::is_alphabetic)
                    || rest[word.len()..].starts_with(char::is_whitespace));
            starts.then(|| (op, rest[word.len()..].trim()))
        })
        .ok_or_else(|| format!("{text:?}: unknown operator"))?;
    let value =
        parse_value(value_text).ok_or_else(|| format!("{text:?}: cannot read the value"))?;
    if matches!(op, Op::In | Op::NotIn) != value.is_array() {
        return Err(format!(
            "{text:?}: IN and NOT IN take a list, other operators one value"
        ));
    }
    Ok(Condition {
        attr: attr.to_owned(),
        op,
        value,
    })
}

/// `'text'`, `"text"`, a number, `true`/`false`, or a list `['a', 'b']`.
fn parse_value(text: &str) -> Option<Value> {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        if inner.trim().is_empty() {
            return Some(Value::Array(Vec::new()));
        }
        return inner
            .split(',')
            .map(parse_value)
            .collect::<Option<Vec<_>>>()
            .map(Value::Array);
    }
    for quote in ['\'', '"'] {
        if let Some(inner) = text.strip_prefix(quote).and_then(|t| t.strip_suffix(quote)) {
            return Some(Value::String(inner.to_owned()));
        }
    }
    match text {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        _ => {}
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> PostureAttrs {
        v.as_object().unwrap().clone()
    }

    fn postures(v: Value) -> (Postures, Vec<String>) {
        let mut warnings = Vec::new();
        (Postures::compile(Some(&v), &mut warnings), warnings)
    }

    #[test]
    fn conditions_hold_against_attributes() {
        let (p, warnings) = postures(json!({
            "posture:mac": ["node:os IN ['macos', 'windows']", "node:tsVersion >= '1.60'"],
            "posture:prod": ["custom:tier == 'prod'", "custom:quarantined NOT SET"],
            "posture:updating": ["node:tsAutoUpdate == true", "custom:score > 7"],
        }));
        assert!(warnings.is_empty(), "{warnings:?}");
        let mac = vec!["posture:mac".to_owned()];
        assert!(p.hold(
            &mac,
            &attrs(json!({"node:os": "macOS", "node:tsVersion": "1.62.1"}))
        ));
        assert!(!p.hold(
            &mac,
            &attrs(json!({"node:os": "macos", "node:tsVersion": "1.58.9"}))
        ));
        assert!(p.hold(
            &mac,
            &attrs(json!({"node:os": "windows", "node:tsVersion": "1.60"}))
        ));
        assert!(!p.hold(
            &mac,
            &attrs(json!({"node:os": "linux", "node:tsVersion": "1.70"}))
        ));
        assert!(!p.hold(&mac, &attrs(json!({}))), "absent attributes fail");
        let prod = vec!["posture:prod".to_owned()];
        assert!(p.hold(&prod, &attrs(json!({"custom:tier": "prod"}))));
        assert!(!p.hold(
            &prod,
            &attrs(json!({"custom:tier": "prod", "custom:quarantined": true}))
        ));
        let updating = vec!["posture:updating".to_owned()];
        assert!(p.hold(
            &updating,
            &attrs(json!({"node:tsAutoUpdate": true, "custom:score": 8}))
        ));
        assert!(!p.hold(
            &updating,
            &attrs(json!({"node:tsAutoUpdate": true, "custom:score": 7}))
        ));
        assert!(!p.hold(&["posture:undefined".to_owned()], &attrs(json!({}))));
    }

    #[test]
    fn unreadable_postures_never_hold_and_say_why() {
        let (p, warnings) = postures(json!({"posture:odd": ["node:os LIKE 'mac%'"]}));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("posture:odd") && warnings[0].contains("unknown operator"));
        assert!(!p.hold(
            &["posture:odd".to_owned()],
            &attrs(json!({"node:os": "macos"}))
        ));
        assert!(parse_condition("node:os IN 'macos'").is_err());
        assert!(parse_condition("node:os").is_err());
    }
}
