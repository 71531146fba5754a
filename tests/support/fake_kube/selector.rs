//! Label and field selectors, in the apiserver's syntax.
//!
//! Labels: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, comma-joined (AND).
//! `!=` and `notin` match objects without the label, as on a real apiserver.
//! Fields: `path=v`, `path==v`, `path!=v` over any dotted path (`metadata.name`,
//! `metadata.namespace`, `involvedObject.name`, ...); a missing field compares as `""`. A real
//! apiserver only accepts a fixed set of field labels per kind; this fake accepts any path.

use serde_json::Value;

use super::ApiStatus;

#[derive(Debug, Clone)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector`.
#[derive(Debug, Clone, Default)]
pub(crate) struct LabelSelector(Vec<LabelReq>);

impl LabelSelector {
    pub fn parse(raw: &str) -> Result<Self, ApiStatus> {
        split_top_level(raw)
            .into_iter()
            .map(|term| parse_label_term(term.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
            .map_err(|why| {
                ApiStatus::bad_request(format!(
                    "unable to parse requirement in labelSelector {raw:?}: {why}"
                ))
            })
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|req| match req {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Splits on commas that are not inside `( ... )` value sets.
fn split_top_level(raw: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in raw.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&raw[start..]);
    terms.into_iter().filter(|t| !t.trim().is_empty()).collect()
}

fn parse_label_term(term: &str) -> Result<LabelReq, String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelReq::NotExists(valid_key(key.trim())?));
    }
    if let Some(open) = term.find('(') {
        let close = term.rfind(')').ok_or("missing ')'")?;
        let values: Vec<String> = term[open + 1..close]
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let head: Vec<&str> = term[..open].split_whitespace().collect();
        return match head.as_slice() {
            [key, "in"] => Ok(LabelReq::In(valid_key(key)?, values)),
            [key, "notin"] => Ok(LabelReq::NotIn(valid_key(key)?, values)),
            _ => Err(format!(
                "expected `key in (...)` or `key notin (...)`, got {term:?}"
            )),
        };
    }
    for (op, make) in [
        ("!=", LabelReq::NotEq as fn(String, String) -> LabelReq),
        ("==", LabelReq::Eq),
        ("=", LabelReq::Eq),
    ] {
        if let Some((k, v)) = term.split_once(op) {
            return Ok(make(valid_key(k.trim())?, v.trim().to_string()));
        }
    }
    Ok(LabelReq::Exists(valid_key(term)?))
}

fn valid_key(key: &str) -> Result<String, String> {
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(key.to_string())
}

/// A parsed `fieldSelector`.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl FieldSelector {
    pub fn parse(raw: &str) -> Result<Self, ApiStatus> {
        let mut reqs = Vec::new();
        for term in raw.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==") {
                (p, true, v)
            } else if let Some((p, v)) = term.split_once('=') {
                (p, true, v)
            } else {
                return Err(ApiStatus::bad_request(format!(
                    "invalid fieldSelector term {term:?}: expected `field=value` or `field!=value`"
                )));
            };
            let path = path.trim().split('.').map(str::to_string).collect();
            reqs.push((path, equal, value.trim().to_string()));
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, want)| {
            let found = path.iter().try_fold(object, |v, k| v.get(k));
            let text = match found {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (text == *want) == *equal
        })
    }
}

/// Both selectors of a list or watch request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }
}
