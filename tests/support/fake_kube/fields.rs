//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! A simplified model of structured-merge-diff, enough for conflicts to mean what they mean on a
//! real apiserver (kube-lease-manager's leader election relies on them):
//! * a field is a path of object keys; **lists and scalars are atomic leaves** (no list-map or
//!   set merge: this is what a CRD without `x-kubernetes-list-type` gets anyway);
//! * every write records which manager set which leaves, as one entry per
//!   (manager, operation `Apply`/`Update`, subresource), rendered as `FieldsV1`;
//! * an update (create/PUT/patch) takes ownership of the leaves it changes, away from everybody;
//! * an apply fails with 409 when it would change a leaf another manager owns (unless `force`,
//!   which takes the leaf over); applying the value a field already has shares ownership;
//! * a leaf a manager applied before and no longer applies is removed, unless someone else
//!   owns it too.
//!
//! Only `labels`, `annotations`, `finalizers` and `ownerReferences` of `metadata` are user
//! fields; `apiVersion`, `kind` and the rest of `metadata` belong to the server.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field: the object keys leading to a leaf.
pub(crate) type FieldPath = Vec<String>;

const USER_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(&self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub subresource: Option<String>,
    pub api_version: String,
    pub time: String,
    pub fields: BTreeSet<FieldPath>,
}

/// Who writes, and through which endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    pub manager: String,
    pub subresource: Option<String>,
    pub now: String,
}

/// The user-owned part of an object: everything but type meta and server-owned metadata.
pub(crate) fn user_view(object: &Value) -> Value {
    let mut view = object.clone();
    if let Some(map) = view.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            meta.retain(|k, _| USER_METADATA.contains(&k.as_str()));
        }
    }
    view
}

/// Leaf paths of a value. Empty objects own nothing.
pub(crate) fn leaves(value: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    collect_leaves(value, &mut Vec::new(), &mut out);
    out
}

fn collect_leaves(value: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(k.clone());
                collect_leaves(v, prefix, out);
                prefix.pop();
            }
        }
        _ if !prefix.is_empty() => {
            out.insert(prefix.clone());
        }
        _ => {}
    }
}

pub(crate) fn value_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(k))
}

/// Removes a leaf; parents are kept (even when they become empty).
pub(crate) fn remove_at(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cursor = value;
    for k in parents {
        match cursor.get_mut(k) {
            Some(next) => cursor = next,
            None => return,
        }
    }
    if let Some(map) = cursor.as_object_mut() {
        map.remove(last);
    }
}

/// Two fields overlap when one is the other or contains it.
pub(crate) fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Deep merge of `patch` into `base`: objects merge key by key, anything else replaces.
pub(crate) fn deep_merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v)
                    }
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Drops `null`s from an applied configuration: in SSA they set nothing.
pub(crate) fn strip_nulls(value: &mut Value) {
    if let Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}

pub(crate) fn read_entries(object: &Value) -> Vec<Entry> {
    let Some(Value::Array(raw)) = object.pointer("/metadata/managedFields") else {
        return Vec::new();
    };
    raw.iter()
        .map(|e| Entry {
            manager: str_field(e, "manager"),
            operation: if e.get("operation").and_then(Value::as_str) == Some("Apply") {
                Operation::Apply
            } else {
                Operation::Update
            },
            subresource: e
                .get("subresource")
                .and_then(Value::as_str)
                .map(str::to_string),
            api_version: str_field(e, "apiVersion"),
            time: str_field(e, "time"),
            fields: from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null)),
        })
        .collect()
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Writes entries back as `metadata.managedFields` (entries owning nothing are dropped).
pub(crate) fn write_entries(object: &mut Value, entries: &[Entry]) {
    let rendered: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation.as_str(),
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(sub) = &e.subresource {
                v["subresource"] = json!(sub);
            }
            v
        })
        .collect();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if rendered.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(rendered));
        }
    }
}

fn to_fields_v1(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = Value::Object(Map::new());
    for path in fields {
        let mut cursor = &mut root;
        for k in path {
            cursor = cursor
                .as_object_mut()
                .expect("FieldsV1 nodes are objects")
                .entry(format!("f:{k}"))
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

fn from_fields_v1(v: &Value) -> BTreeSet<FieldPath> {
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        let Some(map) = v.as_object() else { return };
        let children: Vec<_> = map
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("f:")?, v)))
            .collect();
        if children.is_empty() && !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        for (k, child) in children {
            prefix.push(k.to_string());
            walk(child, prefix, out);
            prefix.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn entry_mut<'a>(
    entries: &'a mut Vec<Entry>,
    w: &Writer,
    op: Operation,
    api_version: &str,
) -> &'a mut Entry {
    let pos = entries.iter().position(|e| {
        e.manager == w.manager && e.operation == op && e.subresource == w.subresource
    });
    let pos = pos.unwrap_or_else(|| {
        entries.push(Entry {
            manager: w.manager.clone(),
            operation: op,
            subresource: w.subresource.clone(),
            api_version: api_version.to_string(),
            time: w.now.clone(),
            fields: BTreeSet::new(),
        });
        entries.len() - 1
    });
    &mut entries[pos]
}

/// Records an update (create, PUT, any non-apply patch) from `old` to `new` in `new`'s
/// managedFields: the writer takes the leaves that changed; removed leaves are owned by nobody.
pub(crate) fn record_update(old: Option<&Value>, new: &mut Value, w: &Writer) {
    let mut entries = old.map(read_entries).unwrap_or_default();
    let (old_view, new_view) = (old.map(user_view).unwrap_or(Value::Null), user_view(new));
    let new_leaves = leaves(&new_view);
    let changed: Vec<FieldPath> = new_leaves
        .iter()
        .filter(|p| value_at(&old_view, p) != value_at(&new_view, p))
        .cloned()
        .collect();
    let removed: Vec<FieldPath> = leaves(&old_view).difference(&new_leaves).cloned().collect();
    for e in entries.iter_mut() {
        e.fields
            .retain(|q| !changed.iter().chain(&removed).any(|p| overlaps(p, q)));
    }
    if !changed.is_empty() {
        let api_version = str_field(new, "apiVersion");
        let entry = entry_mut(&mut entries, w, Operation::Update, &api_version);
        entry.fields.extend(changed);
        entry.time = w.now.clone();
    }
    write_entries(new, &entries);
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone)]
pub(crate) struct Conflict {
    pub manager: String,
    pub path: FieldPath,
}

/// Server-side apply of `config` (already reduced to the fields this endpoint may set, nulls
/// stripped) onto `base`, by `w.manager`. Returns the merged object with updated managedFields.
pub(crate) fn apply(
    base: &Value,
    config: &Value,
    w: &Writer,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut entries = read_entries(base);
    let applied = leaves(config);
    let differs = |p: &FieldPath| value_at(config, p) != value_at(base, p);

    let conflicts: Vec<Conflict> = applied
        .iter()
        .filter(|p| differs(p))
        .flat_map(|p| {
            entries
                .iter()
                .filter(|e| e.manager != w.manager && e.fields.iter().any(|q| overlaps(p, q)))
                .map(|e| Conflict {
                    manager: e.manager.clone(),
                    path: p.clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    // Forced (or uncontested) changes take the fields away from the other managers.
    for e in entries.iter_mut().filter(|e| e.manager != w.manager) {
        e.fields
            .retain(|q| !applied.iter().any(|p| overlaps(p, q) && differs(p)));
    }

    let mut merged = base.clone();
    let is_mine = |e: &Entry| {
        e.manager == w.manager && e.operation == Operation::Apply && e.subresource == w.subresource
    };
    let previous = entries
        .iter()
        .find(|e| is_mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for dropped in previous.difference(&applied) {
        let kept_by_other = entries
            .iter()
            .filter(|e| !is_mine(e))
            .any(|e| e.fields.iter().any(|q| overlaps(dropped, q)));
        if !kept_by_other {
            remove_at(&mut merged, dropped);
        }
    }
    deep_merge(&mut merged, config);

    let api_version = str_field(&merged, "apiVersion");
    let entry = entry_mut(&mut entries, w, Operation::Apply, &api_version);
    if entry.fields != applied {
        entry.fields = applied;
        entry.time = w.now.clone();
    }
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// `.spec.holderIdentity`-style rendering of a field, for conflict messages.
pub(crate) fn dotted(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}
