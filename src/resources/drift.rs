//! A structured diff between the state this operator wants (or last applied) and the state it
//! finds in the tailnet. It goes into `status.drift` and, summarised, into the `Drifted`
//! condition's message, so it is capped: a few entries a human can read, plus a count of the rest.
//!
//! Paths are JSON pointers (RFC 6901: `/groups/group:eng/0`, with `~` and `/` in keys escaped as
//! `~0` and `~1`); the whole document is the empty pointer. Each entry has the desired and the
//! live value; a side that has nothing at that path is absent (`None`), which is different from a
//! JSON `null`.
use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Values whose JSON is longer than this are replaced by a short description in the diff, so
/// one missing section cannot blow up the resource's status.
pub const MAX_VALUE_CHARS: usize = 256;

/// How many paths [`DriftDiff::summary`] names before saying "and N more".
const SUMMARY_PATHS: usize = 3;

/// Differences found between desired and live state.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftDiff {
    /// The first differences found, in document order (desired keys first, then keys only the
    /// live state has).
    #[serde(default)]
    pub entries: Vec<DriftEntry>,
    /// How many further differences were found but not listed, to keep the status small.
    #[serde(default)]
    pub truncated: u32,
    /// Who made the change, from the tailnet's configuration audit log: the login or display
    /// name (for an API client, its key id), where, when and what; or `actor unknown` and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
}

/// One difference.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftEntry {
    /// JSON pointer to the differing value, e.g. `/groups/group:eng` (empty for the whole
    /// document).
    pub path: String,
    /// The desired value; absent when the live state has something the desired state does not.
    /// Large values are replaced by a short description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json_schema")]
    pub desired: Option<Value>,
    /// The live value; absent when the desired state has something the live state lacks.
    /// Large values are replaced by a short description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json_schema")]
    pub live: Option<Value>,
}

/// How to compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiffOptions {
    /// At most this many entries are listed; the rest are counted in `truncated`.
    pub cap: usize,
    /// Compare arrays whose elements are all strings (on both sides) as sets, reporting each
    /// missing or unexpected element instead of position-by-position changes. Right for tags,
    /// ACL `src`/`dst` lists, group members: their order carries no meaning.
    pub string_arrays_as_sets: bool,
}

/// Compares `desired` with `live`, arrays position by position, listing at most `cap` entries.
pub fn diff(desired: &Value, live: &Value, cap: usize) -> DriftDiff {
    diff_with(
        desired,
        live,
        &DiffOptions {
            cap,
            string_arrays_as_sets: false,
        },
    )
}

/// Compares `desired` with `live` as `options` say.
pub fn diff_with(desired: &Value, live: &Value, options: &DiffOptions) -> DriftDiff {
    let mut collector = Collector {
        options,
        diff: DriftDiff::default(),
    };
    collector.compare(&mut String::new(), desired, live);
    collector.diff
}

impl DriftDiff {
    /// No differences.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.truncated == 0
    }

    /// How many differences were found, listed or not.
    pub fn total(&self) -> usize {
        self.entries.len() + self.truncated as usize
    }

    /// A one-line description for a condition message or an event, e.g.
    /// `2 differences: /groups/group:eng (changed), /acls/3 (missing in live)`.
    pub fn summary(&self) -> String {
        let total = self.total();
        if total == 0 {
            return "no differences".to_owned();
        }
        let noun = if total == 1 {
            "difference"
        } else {
            "differences"
        };
        let shown: Vec<String> = self
            .entries
            .iter()
            .take(SUMMARY_PATHS)
            .map(DriftEntry::describe)
            .collect();
        let mut summary = format!("{total} {noun}");
        if !shown.is_empty() {
            summary.push_str(": ");
            summary.push_str(&shown.join(", "));
            let rest = total - shown.len();
            if rest > 0 {
                summary.push_str(&format!(" and {rest} more"));
            }
        }
        if let Some(who) = &self.changed_by {
            summary.push_str(&format!("; changed by {who}"));
        }
        summary
    }

    /// The same differences (attribution aside).
    pub fn same_differences(&self, other: &DriftDiff) -> bool {
        self.entries == other.entries && self.truncated == other.truncated
    }
}

impl DriftEntry {
    /// `path (what)`, e.g. `/hosts/db (not desired)`.
    fn describe(&self) -> String {
        let path = if self.path.is_empty() {
            "(whole document)"
        } else {
            &self.path
        };
        let what = match (&self.desired, &self.live) {
            (Some(_), None) => "missing in live",
            (None, Some(_)) => "not desired",
            _ => "changed",
        };
        format!("{path} ({what})")
    }
}

struct Collector<'a> {
    options: &'a DiffOptions,
    diff: DriftDiff,
}

impl Collector<'_> {
    fn compare(&mut self, path: &mut String, desired: &Value, live: &Value) {
        match (desired, live) {
            (Value::Object(d), Value::Object(l)) => {
                for (key, d_value) in d {
                    let at = push_segment(path, key);
                    match l.get(key) {
                        Some(l_value) => self.compare(path, d_value, l_value),
                        None => self.record(path, Some(d_value), None),
                    }
                    path.truncate(at);
                }
                for (key, l_value) in l.iter().filter(|(key, _)| !d.contains_key(*key)) {
                    let at = push_segment(path, key);
                    self.record(path, None, Some(l_value));
                    path.truncate(at);
                }
            }
            (Value::Array(d), Value::Array(l))
                if self.options.string_arrays_as_sets && all_strings(d) && all_strings(l) =>
            {
                self.compare_sets(path, d, l);
            }
            (Value::Array(d), Value::Array(l)) => {
                for index in 0..d.len().max(l.len()) {
                    let at = push_segment(path, &index.to_string());
                    match (d.get(index), l.get(index)) {
                        (Some(d_value), Some(l_value)) => self.compare(path, d_value, l_value),
                        (d_value, l_value) => self.record(path, d_value, l_value),
                    }
                    path.truncate(at);
                }
            }
            _ if desired == live => {}
            _ => self.record(path, Some(desired), Some(live)),
        }
    }

    /// Each element on one side only is one entry at the array's own path. Only called when
    /// every element on both sides is a string.
    fn compare_sets(&mut self, path: &str, desired: &[Value], live: &[Value]) {
        let d_set: BTreeSet<&str> = desired.iter().filter_map(Value::as_str).collect();
        let l_set: BTreeSet<&str> = live.iter().filter_map(Value::as_str).collect();
        let mut seen = BTreeSet::new();
        for value in desired.iter().filter_map(Value::as_str) {
            if !l_set.contains(value) && seen.insert(value) {
                self.record(path, Some(&Value::from(value)), None);
            }
        }
        for value in live.iter().filter_map(Value::as_str) {
            if !d_set.contains(value) && seen.insert(value) {
                self.record(path, None, Some(&Value::from(value)));
            }
        }
    }

    fn record(&mut self, path: &str, desired: Option<&Value>, live: Option<&Value>) {
        if self.diff.entries.len() < self.options.cap {
            self.diff.entries.push(DriftEntry {
                path: path.to_owned(),
                desired: desired.map(elide),
                live: live.map(elide),
            });
        } else {
            self.diff.truncated = self.diff.truncated.saturating_add(1);
        }
    }
}

/// Appends `/segment` (escaped) to `path`, returning the length to truncate back to.
fn push_segment(path: &mut String, segment: &str) -> usize {
    let at = path.len();
    path.push('/');
    for c in segment.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
    at
}

fn all_strings(values: &[Value]) -> bool {
    values.iter().all(Value::is_string)
}

/// The value itself when small, else a description such as `<object with 12 keys, 4096 bytes>`.
fn elide(value: &Value) -> Value {
    let text = value.to_string();
    if text.chars().count() <= MAX_VALUE_CHARS {
        return value.clone();
    }
    let shape = match value {
        Value::Object(map) => format!("object with {} keys", map.len()),
        Value::Array(items) => format!("array of {} items", items.len()),
        Value::String(_) => "string".to_owned(),
        _ => "value".to_owned(),
    };
    Value::String(format!("<{shape}, {} bytes>", text.len()))
}

/// Any JSON value, kept as is by the API server (a structural schema needs the extension for a
/// field without a fixed type).
fn any_json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
        "nullable": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(path: &str, desired: Option<Value>, live: Option<Value>) -> DriftEntry {
        DriftEntry {
            path: path.to_owned(),
            desired,
            live,
        }
    }

    #[test]
    fn equal_documents_have_no_diff() {
        let doc = json!({"groups": {"group:eng": ["a@x.com"]}, "acls": [{"action": "accept"}]});
        let d = diff(&doc, &doc.clone(), 10);
        assert!(d.is_empty());
        assert_eq!(d.summary(), "no differences");
    }

    #[test]
    fn changed_missing_and_unexpected_keys_are_reported_with_pointers() {
        let desired = json!({"groups": {"group:eng": ["a@x.com"], "group:ops": ["o@x.com"]}});
        let live = json!({
            "groups": {"group:eng": ["b@x.com"]},
            "hosts": {"db": "10.0.0.1"},
        });
        let d = diff(&desired, &live, 10);
        assert_eq!(
            d.entries,
            vec![
                entry(
                    "/groups/group:eng/0",
                    Some(json!("a@x.com")),
                    Some(json!("b@x.com"))
                ),
                entry("/groups/group:ops", Some(json!(["o@x.com"])), None),
                entry("/hosts", None, Some(json!({"db": "10.0.0.1"}))),
            ]
        );
        assert_eq!(d.truncated, 0);
    }

    #[test]
    fn arrays_compare_by_position_with_extra_elements_on_either_side() {
        let d = diff(&json!([1, 2, 3]), &json!([1, 5]), 10);
        assert_eq!(
            d.entries,
            vec![
                entry("/1", Some(json!(2)), Some(json!(5))),
                entry("/2", Some(json!(3)), None),
            ]
        );
        let d = diff(&json!([]), &json!(["x"]), 10);
        assert_eq!(d.entries, vec![entry("/0", None, Some(json!("x")))]);
    }

    #[test]
    fn a_type_change_is_one_entry_and_null_is_not_absence() {
        let d = diff(&json!({"a": {"b": 1}}), &json!({"a": [1]}), 10);
        assert_eq!(
            d.entries,
            vec![entry("/a", Some(json!({"b": 1})), Some(json!([1])))]
        );
        let d = diff(&json!({"a": null}), &json!({}), 10);
        assert_eq!(d.entries, vec![entry("/a", Some(Value::Null), None)]);
        let d = diff(&json!(1), &json!("1"), 10);
        assert_eq!(d.entries, vec![entry("", Some(json!(1)), Some(json!("1")))]);
    }

    #[test]
    fn pointer_segments_are_escaped() {
        let d = diff(
            &json!({"a/b": 1, "c~d": 2}),
            &json!({"a/b": 2, "c~d": 3}),
            10,
        );
        let paths: Vec<_> = d.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/a~1b", "/c~0d"]);
    }

    #[test]
    fn string_sets_report_added_and_removed_elements() {
        let options = DiffOptions {
            cap: 10,
            string_arrays_as_sets: true,
        };
        let desired = json!({"tags": ["tag:web", "tag:prod", "tag:web"]});
        let live = json!({"tags": ["tag:prod", "tag:db"]});
        let d = diff_with(&desired, &live, &options);
        assert_eq!(
            d.entries,
            vec![
                entry("/tags", Some(json!("tag:web")), None),
                entry("/tags", None, Some(json!("tag:db"))),
            ]
        );
        // Reordering a set is no difference.
        let d = diff_with(&json!(["a", "b"]), &json!(["b", "a"]), &options);
        assert!(d.is_empty());
        // Positional comparison does see the reorder.
        assert_eq!(diff(&json!(["a", "b"]), &json!(["b", "a"]), 10).total(), 2);
    }

    #[test]
    fn mixed_arrays_stay_positional_in_set_mode() {
        let options = DiffOptions {
            cap: 10,
            string_arrays_as_sets: true,
        };
        let d = diff_with(&json!(["a", 1]), &json!([1, "a"]), &options);
        assert_eq!(d.total(), 2);
        assert_eq!(d.entries[0].path, "/0");
    }

    #[test]
    fn the_cap_lists_the_first_entries_and_counts_the_rest() {
        let desired = json!({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5});
        let d = diff(&desired, &json!({}), 2);
        let paths: Vec<_> = d.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/a", "/b"]);
        assert_eq!(d.truncated, 3);
        assert_eq!(d.total(), 5);
        assert!(!d.is_empty());
        let none = diff(&desired, &json!({}), 0);
        assert!(none.entries.is_empty());
        assert!(!none.is_empty());
        assert_eq!(none.summary(), "5 differences");
    }

    #[test]
    fn large_values_are_elided() {
        let big: Vec<String> = (0..100).map(|i| format!("user{i}@example.com")).collect();
        let d = diff(&json!({"groups": {"group:all": big}}), &json!({}), 10);
        let desired = d.entries[0].desired.as_ref().unwrap();
        let text = desired.as_str().expect("elided to a description");
        assert!(text.starts_with("<object with 1 keys, "), "{text}");
        assert!(text.chars().count() < MAX_VALUE_CHARS);
    }

    #[test]
    fn summary_names_the_first_paths_and_how_many_more() {
        let desired = json!({"a": 1, "b": 2, "c": 3, "d": 4});
        let live = json!({"a": 9, "e": 5});
        let d = diff(&desired, &live, 10);
        assert_eq!(
            d.summary(),
            "5 differences: /a (changed), /b (missing in live), /c (missing in live) and 2 more"
        );
        let one = diff(&json!(1), &json!(2), 10);
        assert_eq!(one.summary(), "1 difference: (whole document) (changed)");
        let unexpected = diff(&json!({}), &json!({"x": 1}), 10);
        assert_eq!(unexpected.summary(), "1 difference: /x (not desired)");
    }

    #[test]
    fn serializes_absent_sides_as_missing_fields() {
        let d = diff(&json!({"a": 1}), &json!({}), 10);
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!({"entries": [{"path": "/a", "desired": 1}], "truncated": 0})
        );
        let back: DriftDiff = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }
}
