//! Request routing: which resource, namespace, object and subresource a URL names, and its query.
//!
//! No discovery is involved: kube's typed `Api<K>` builds URLs from `Resource` metadata, so the
//! path alone says everything (`/api/v1/...` for the core group, `/apis/{group}/{version}/...`
//! otherwise). Scope is taken from the URL: `/namespaces/{ns}/{plural}` is namespaced, a bare
//! `/{plural}` is cluster-scoped (or "all namespaces" for a list or watch).

use std::collections::BTreeMap;

use super::{ApiStatus, Gvr};

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub gvr: Gvr,
    /// `None` for cluster-scoped objects and for cross-namespace collections.
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// `status` (or any other subresource name, which is then rejected with 404).
    pub subresource: Option<String>,
}

impl Target {
    /// Storage key of the named object.
    pub fn key(&self) -> Option<(Gvr, String, String)> {
        let name = self.name.clone()?;
        Some((
            self.gvr.clone(),
            self.namespace.clone().unwrap_or_default(),
            name,
        ))
    }

    /// `widgets` or `widgets/status`, the form used by the request counters.
    pub fn resource_label(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.gvr.resource),
            None => self.gvr.resource.clone(),
        }
    }
}

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...`.
pub(crate) fn parse_path(path: &str) -> Result<Target, ApiStatus> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_served(path)),
    };
    // `namespaces/{name}/status|finalize` addresses a Namespace object, not a namespaced collection.
    let namespaced = matches!(rest, ["namespaces", _, third, ..]
        if !(rest.len() == 3 && matches!(*third, "status" | "finalize")));
    let (namespace, tail) = if namespaced {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (resource, name, subresource) = match tail {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return Err(not_served(path)),
    };
    Ok(Target {
        gvr: Gvr::new(group, version, resource),
        namespace,
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
    })
}

fn not_served(path: &str) -> ApiStatus {
    ApiStatus::new(
        404,
        "NotFound",
        format!(
            "the server could not find the requested resource ({path}); discovery is not implemented by the fake apiserver"
        ),
    )
}

/// Decoded query parameters (last value wins, as with Go's `url.Values.Get` on single values).
#[derive(Debug, Default, Clone)]
pub(crate) struct Query(BTreeMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map = BTreeMap::new();
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(percent_decode(k), percent_decode(v));
        }
        Self(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}
