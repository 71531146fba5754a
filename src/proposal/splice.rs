//! Minimal edits of a YAML manifest document: only the `spec` keys a patch changed, and
//! `metadata.labels` / `metadata.annotations`, are re-rendered in place; every other line
//! (comments, key order, quoting, the other keys' formatting) stays byte for byte. Used by
//! [`super::manifest_patch`] so a proposal reads in git as the change it is, not as a
//! reformatting of the file.
//!
//! Only block-style mappings are understood (`spec:` on its own line, its keys one indent
//! deeper). Anything else, or a result that does not parse back to the patched object, yields
//! `None` and the caller re-renders the whole document instead.
use serde_json::{Map, Value, json};

use super::patch::display_object;

/// The document `lines` (with their line ends) edited so it parses to `patched`.
pub(super) fn splice(lines: &[&str], original: &Value, patched: &Value) -> Option<String> {
    let mut edits: Vec<Edit> = Vec::new();
    let spec_keys: Vec<String> = keys_of(original.get("spec"), patched.get("spec"));
    if !spec_keys.is_empty() {
        edits.extend(section_edits(lines, "spec", &spec_keys, original, patched)?);
    }
    let metadata_keys: Vec<String> = ["labels", "annotations"]
        .iter()
        .filter(|k| {
            original.pointer(&format!("/metadata/{k}"))
                != patched.pointer(&format!("/metadata/{k}"))
        })
        .map(|k| (*k).to_owned())
        .collect();
    if !metadata_keys.is_empty() {
        edits.extend(section_edits(
            lines,
            "metadata",
            &metadata_keys,
            original,
            patched,
        )?);
    }
    edits.sort_by_key(|e| std::cmp::Reverse((e.start, e.end)));
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    for edit in edits {
        out.splice(edit.start..edit.end, edit.text);
    }
    let text = out.concat();
    verify(&text, original, patched).then_some(text)
}

/// Replace lines `start..end` with `text` (each element one line with its end).
struct Edit {
    start: usize,
    end: usize,
    text: Vec<String>,
}

/// The keys of two maps whose values differ (either side may lack the key).
fn keys_of(original: Option<&Value>, patched: Option<&Value>) -> Vec<String> {
    let empty = Map::new();
    let o = original.and_then(Value::as_object).unwrap_or(&empty);
    let p = patched.and_then(Value::as_object).unwrap_or(&empty);
    let mut keys: Vec<String> = o.keys().chain(p.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| o.get(k) != p.get(k));
    keys
}

/// Edits replacing, removing or adding `keys` of the top-level mapping `section`.
fn section_edits(
    lines: &[&str],
    section: &str,
    keys: &[String],
    original: &Value,
    patched: &Value,
) -> Option<Vec<Edit>> {
    let (from, to) = top_section(lines, section)?;
    let (indent, blocks) = children(lines, from + 1, to)?;
    let insert_at = blocks.last().map_or(from + 1, |b| b.end);
    let mut edits = Vec::new();
    for key in keys {
        let new = patched.get(section).and_then(|s| s.get(key));
        let block = blocks.iter().find(|b| &b.key == key);
        match (block, new) {
            (Some(b), Some(value)) => edits.push(Edit {
                start: b.start,
                end: b.end,
                text: render(key, value, indent)?,
            }),
            (Some(b), None) => edits.push(Edit {
                start: b.start,
                end: b.end,
                text: Vec::new(),
            }),
            (None, Some(value)) => edits.push(Edit {
                start: insert_at,
                end: insert_at,
                text: render(key, value, indent)?,
            }),
            (None, None) => {}
        }
    }
    // A key that exists in the object but was not found as a block: not understood.
    let original_keys = original.get(section).and_then(Value::as_object);
    let all_found = keys
        .iter()
        .filter(|k| original_keys.is_some_and(|o| o.contains_key(*k)))
        .all(|k| blocks.iter().any(|b| &b.key == k));
    all_found.then_some(edits)
}

/// One key of a mapping and its lines `start..end` (trailing blank and comment lines belong to
/// what follows).
struct Block {
    key: String,
    start: usize,
    end: usize,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The line of `name:` at indent 0 (block style only) and the end of its block.
fn top_section(lines: &[&str], name: &str) -> Option<(usize, usize)> {
    let start = lines.iter().position(|l| {
        indent_of(l) == 0 && key_of(l).is_some_and(|(k, rest)| k == name && rest.is_empty())
    })?;
    let end = (start + 1..lines.len())
        .find(|&i| is_content(lines[i]) && indent_of(lines[i]) == 0)
        .unwrap_or(lines.len());
    Some((start, end))
}

/// The child keys of the mapping in lines `from..to`, with their indent.
fn children(lines: &[&str], from: usize, to: usize) -> Option<(usize, Vec<Block>)> {
    let first = (from..to).find(|&i| is_content(lines[i]))?;
    let indent = indent_of(lines[first]);
    if indent == 0 {
        return None;
    }
    let mut blocks = Vec::new();
    let mut i = first;
    while i < to {
        if !is_content(lines[i]) {
            i += 1;
            continue;
        }
        if indent_of(lines[i]) != indent {
            return None;
        }
        let (key, _) = key_of(lines[i])?;
        let mut end = (i + 1..to)
            .find(|&j| is_content(lines[j]) && indent_of(lines[j]) <= indent)
            .unwrap_or(to);
        let next = end;
        while end > i + 1 && !is_content(lines[end - 1]) {
            end -= 1;
        }
        blocks.push(Block { key, start: i, end });
        i = next;
    }
    Some((indent, blocks))
}

/// `key` and what follows its `:` (trimmed, comments dropped) when `line` is a mapping entry.
fn key_of(line: &str) -> Option<(String, String)> {
    let t = line.trim_start_matches(' ').trim_end_matches(['\n', '\r']);
    if t.starts_with('-') || t.starts_with('#') {
        return None;
    }
    let (key, rest) = match t.chars().next()? {
        quote @ ('"' | '\'') => {
            let close = t[1..].find(quote)? + 1;
            (t[1..close].to_owned(), t[close + 1..].strip_prefix(':')?)
        }
        _ => {
            let colon = t
                .find(": ")
                .or_else(|| t.strip_suffix(':').map(|s| s.len()))?;
            (t[..colon].trim_end().to_owned(), &t[colon + 1..])
        }
    };
    let rest = rest.trim();
    let rest = if rest.starts_with('#') { "" } else { rest };
    Some((key, rest.to_owned()))
}

/// `key: value` rendered as YAML lines indented by `indent`.
fn render(key: &str, value: &Value, indent: usize) -> Option<Vec<String>> {
    let yaml = serde_saphyr::to_string(&json!({ key: value })).ok()?;
    let pad = " ".repeat(indent);
    Some(
        yaml.split_inclusive('\n')
            .map(|line| {
                if line.trim().is_empty() {
                    line.to_owned()
                } else {
                    format!("{pad}{line}")
                }
            })
            .collect(),
    )
}

/// The edited text parses to `patched` in what is shown, and to `original` in everything else.
fn verify(text: &str, original: &Value, patched: &Value) -> bool {
    let Ok(parsed) = serde_saphyr::from_str::<Value>(text) else {
        return false;
    };
    let rest = |v: &Value| {
        let mut v = v.clone();
        if let Some(root) = v.as_object_mut() {
            root.remove("spec");
            if let Some(metadata) = root.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("labels");
                metadata.remove("annotations");
            }
        }
        v
    };
    display_object(&parsed) == display_object(patched) && rest(&parsed) == rest(original)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# A comment about the policy.\napiVersion: tailnet.ops.dev/v1alpha1\nkind: TailnetPolicy\nmetadata:\n  name: base\n  labels:\n    team: a\nspec:\n  tailnetRef: default\n  driftPolicy: Correct   # put back at the next resync\n  # The policy itself.\n  policy: |\n    {\n      \"acls\": [],\n    }\n  historyLimit: 10\n";

    fn run(patch: Value) -> Option<String> {
        let original: Value = serde_saphyr::from_str(DOC).unwrap();
        let mut patched = original.clone();
        json_patch::merge(&mut patched, &patch);
        let lines: Vec<&str> = DOC.split_inclusive('\n').collect();
        splice(&lines, &original, &patched)
    }

    #[test]
    fn only_the_changed_key_is_rewritten() {
        let text = run(json!({"spec": {"historyLimit": 20}})).unwrap();
        assert_eq!(text, DOC.replace("historyLimit: 10", "historyLimit: 20"));
        let text = run(json!({"spec": {"policy": "{\n  \"acls\": [1],\n}\n"}})).unwrap();
        assert!(text.contains("  # The policy itself.\n  policy: |\n    {\n      \"acls\": [1],\n    }\n  historyLimit: 10\n"), "{text}");
        assert!(text.contains("driftPolicy: Correct   # put back"), "{text}");
    }

    #[test]
    fn keys_are_removed_and_added_and_labels_rewritten() {
        let text = run(json!({"spec": {"historyLimit": null, "suspend": true},
                              "metadata": {"labels": {"team": "b"}}}))
        .unwrap();
        assert!(!text.contains("historyLimit"), "{text}");
        assert!(text.ends_with("    }\n  suspend: true\n"), "{text}");
        assert!(text.contains("  labels:\n    team: b\n"), "{text}");
    }

    #[test]
    fn flow_style_is_not_understood() {
        let original = json!({"kind": "K", "metadata": {"name": "n"}, "spec": {"a": 1}});
        let patched = json!({"kind": "K", "metadata": {"name": "n"}, "spec": {"a": 2}});
        let lines = ["kind: K\n", "metadata: {name: n}\n", "spec: {a: 1}\n"];
        assert_eq!(splice(&lines, &original, &patched), None);
    }
}
