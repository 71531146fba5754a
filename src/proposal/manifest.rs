//! A proposal as a change to a GitOps checkout: the patched target as a manifest, and a
//! `git apply`-able unified diff replacing the target's document in its YAML file.
use serde_json::Value;

use super::ProposalError;
use super::patch::{display_object, object_label, to_yaml};
use super::splice::splice;
use crate::reconcile::text_diff;

/// The patched target as a manifest to commit: `apiVersion`, `kind`, `metadata` (name,
/// namespace, labels, annotations) and `spec`; no status, no server-set metadata.
pub fn manifest_yaml(patched: &Value) -> Result<String, ProposalError> {
    to_yaml(&display_object(patched))
}

/// A unified diff (`diff --git a/PATH b/PATH`, `---`/`+++` headers, hunks) that replaces
/// document `document_index` (0-based, counted as `serde_saphyr::from_multiple` counts them)
/// of the YAML file at `file_path_in_repo` (relative to the repository root, `/`-separated)
/// with the patched target, so `git apply` (or `patch -p1`) works on the checkout.
///
/// Only what changed is rewritten: the `spec` keys whose value differs, and
/// `metadata.labels` / `metadata.annotations`; every other line of the file (comments, order,
/// formatting) is kept. A document whose layout is not understood (flow style) is re-rendered
/// whole from the patched object (see [`manifest_yaml`]), keeping its leading comments. Errors when the document does not exist or is
/// not the patched object (kind and name differ). Empty when the patched object changes
/// nothing in the file.
pub fn manifest_patch(
    file_path_in_repo: &str,
    file_text: &str,
    document_index: usize,
    patched: &Value,
) -> Result<String, ProposalError> {
    let path = clean(file_path_in_repo);
    let lines: Vec<&str> = file_text.split_inclusive('\n').collect();
    let (start, end) = document(path, &lines, document_index)?;
    let body = &lines[start..end];
    let comments = body.iter().take_while(|l| is_blank_or_comment(l)).count();
    let original: Value = serde_saphyr::from_str(&body.concat())
        .map_err(|e| ProposalError::Manifest(format!("{path}: document {document_index}: {e}")))?;
    let (found, wanted) = (object_label(&original), object_label(patched));
    if found != wanted {
        return Err(ProposalError::Manifest(format!(
            "{path}: document {document_index} is {found}, not {wanted}"
        )));
    }
    let mut new_text: String = lines[..start].concat();
    match splice(body, &original, patched) {
        Some(edited) => new_text.push_str(&edited),
        None => {
            new_text.push_str(&body[..comments].concat());
            new_text.push_str(&manifest_yaml(patched)?);
        }
    }
    new_text.push_str(&lines[end..].concat());
    if !file_text.ends_with('\n') {
        new_text.truncate(new_text.trim_end_matches('\n').len());
    }
    Ok(git_diff(path, file_text, &new_text))
}

/// A unified diff that removes document `document_index` of the YAML file (a Delete
/// proposal), with its `---` separator; the file is deleted when no document is left.
pub fn manifest_removal(
    file_path_in_repo: &str,
    file_text: &str,
    document_index: usize,
) -> Result<String, ProposalError> {
    let path = clean(file_path_in_repo);
    let lines: Vec<&str> = file_text.split_inclusive('\n').collect();
    let (start, end) = document(path, &lines, document_index)?;
    if documents(&lines).len() == 1 {
        return Ok(git_deletion(path, file_text));
    }
    // Take the separator that follows the document, or else the one before it.
    let (from, to) = if end < lines.len() && is_separator(lines[end]) {
        (start, end + 1)
    } else {
        (start.saturating_sub(1), end)
    };
    let new_text = format!("{}{}", lines[..from].concat(), lines[to..].concat());
    Ok(git_diff(path, file_text, &new_text))
}

/// A unified diff that adds `object` as a new manifest file (a Create proposal).
pub fn manifest_creation(file_path_in_repo: &str, object: &Value) -> Result<String, ProposalError> {
    let path = clean(file_path_in_repo);
    let text = manifest_yaml(object)?;
    let count = text.lines().count();
    let mut out = format!(
        "diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n\
         @@ -0,0 +1,{count} @@\n"
    );
    for line in text.lines() {
        out.push_str(&format!("+{line}\n"));
    }
    Ok(out)
}

/// A unified diff that appends `object` as a new document of an existing YAML file.
pub fn manifest_append(
    file_path_in_repo: &str,
    file_text: &str,
    object: &Value,
) -> Result<String, ProposalError> {
    let path = clean(file_path_in_repo);
    let mut new_text = file_text.to_owned();
    if !new_text.is_empty() && !new_text.ends_with('\n') {
        new_text.push('\n');
    }
    if !new_text.trim().is_empty() {
        new_text.push_str("---\n");
    }
    new_text.push_str(&manifest_yaml(object)?);
    Ok(git_diff(path, file_text, &new_text))
}

fn git_deletion(path: &str, text: &str) -> String {
    let count = text.lines().count();
    let mut out = format!(
        "diff --git a/{path} b/{path}\ndeleted file mode 100644\n--- a/{path}\n+++ /dev/null\n\
         @@ -1,{count} +0,0 @@\n"
    );
    for line in text.lines() {
        out.push_str(&format!("-{line}\n"));
    }
    if !text.ends_with('\n') {
        out.push_str("\\ No newline at end of file\n");
    }
    out
}

/// `(first line, end line)` of document `index`, or an error naming how many there are.
fn document(path: &str, lines: &[&str], index: usize) -> Result<(usize, usize), ProposalError> {
    let documents = documents(lines);
    documents.get(index).copied().ok_or_else(|| {
        ProposalError::Manifest(format!(
            "{path}: has {} YAML documents; there is no document {index} (counted from 0)",
            documents.len()
        ))
    })
}

fn clean(path: &str) -> &str {
    path.trim_start_matches("./").trim_start_matches('/')
}

/// `(first line, end line)` of each document. A first segment with nothing but comments,
/// blank lines and directives before the first `---` is not a document.
fn documents(lines: &[&str]) -> Vec<(usize, usize)> {
    let mut segments = Vec::new();
    let mut start = 0;
    for (i, line) in lines.iter().enumerate() {
        if is_separator(line) {
            segments.push((start, i));
            start = i + 1;
        }
    }
    segments.push((start, lines.len()));
    if segments.len() > 1 {
        let (s, e) = segments[0];
        if lines[s..e]
            .iter()
            .all(|l| is_blank_or_comment(l) || l.starts_with('%'))
        {
            segments.remove(0);
        }
    }
    segments
}

fn is_separator(line: &str) -> bool {
    let line = line.trim_end_matches(['\n', '\r']);
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// A git-style unified diff of `old` → `new` for `path`, with `\ No newline at end of file`
/// markers where a side's last line lacks one.
fn git_diff(path: &str, old: &str, new: &str) -> String {
    let body = text_diff::unified(
        old,
        new,
        &format!("a/{path}"),
        &format!("b/{path}"),
        usize::MAX,
    );
    if body.is_empty() {
        return String::new();
    }
    let mut lines: Vec<String> = body.lines().map(str::to_owned).collect();
    mark_missing_newlines(&mut lines, old, new);
    let mut out = format!("diff --git a/{path} b/{path}\n");
    for line in lines {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn mark_missing_newlines(lines: &mut Vec<String>, old: &str, new: &str) {
    const MARKER: &str = "\\ No newline at end of file";
    let Some(header) = lines.iter().rposition(|l| l.starts_with("@@ ")) else {
        return;
    };
    let (old_end, new_end) = hunk_ends(&lines[header]);
    let reaches_old = old_end == old.lines().count() && !old.ends_with('\n');
    let reaches_new = new_end == new.lines().count() && !new.ends_with('\n');
    let last = |prefixes: [char; 2]| {
        (header + 1..lines.len())
            .rev()
            .find(|&i| lines[i].starts_with(prefixes))
    };
    let mut marks: Vec<usize> = Vec::new();
    if reaches_old {
        marks.extend(last([' ', '-']));
    }
    if reaches_new {
        marks.extend(last([' ', '+']));
    }
    marks.sort_unstable();
    marks.dedup();
    for i in marks.into_iter().rev() {
        lines.insert(i + 1, MARKER.to_owned());
    }
}

/// The last line numbers (1-based, inclusive) a `@@ -a,n +b,m @@` header covers.
fn hunk_ends(header: &str) -> (usize, usize) {
    let range = |part: Option<&str>| {
        let part = part.unwrap_or("0,0");
        let (start, len) = part.split_once(',').unwrap_or((part, "1"));
        let start: usize = start.parse().unwrap_or(0);
        let len: usize = len.parse().unwrap_or(0);
        (start + len).saturating_sub(1)
    };
    let mut parts = header.split_whitespace().skip(1);
    let old = range(parts.next().map(|p| p.trim_start_matches('-')));
    let new = range(parts.next().map(|p| p.trim_start_matches('+')));
    (old, new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = "# Policies of the prod tailnet.\n---\n# The base.\napiVersion: tailnet.ops.dev/v1alpha1\nkind: TailnetPolicy\nmetadata:\n  name: base\nspec:\n  role: Base\n  policy: '{}'\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n  namespace: default\ndata: {}\n";

    fn patched(policy: &str) -> Value {
        json!({"apiVersion": "tailnet.ops.dev/v1alpha1", "kind": "TailnetPolicy",
               "metadata": {"name": "base"}, "spec": {"role": "Base", "policy": policy}})
    }

    #[test]
    fn the_document_is_replaced_and_the_rest_kept() {
        let diff =
            manifest_patch("examples/policy.yaml", FILE, 0, &patched("{\"acls\": []}")).unwrap();
        assert!(
            diff.starts_with(
                "diff --git a/examples/policy.yaml b/examples/policy.yaml\n--- a/examples/policy.yaml\n+++ b/examples/policy.yaml\n@@ "
            ),
            "{diff}"
        );
        assert!(diff.contains("\n-  policy: '{}'\n"), "{diff}");
        assert!(diff.contains("\n+  policy: "), "{diff}");
        assert!(!diff.contains("-# The base."), "{diff}");
        assert!(!diff.contains("ConfigMap"), "{diff}");
    }

    #[test]
    fn a_wrong_document_is_refused() {
        let err = manifest_patch("p.yaml", FILE, 1, &patched("{}")).unwrap_err();
        assert!(
            err.to_string().contains("is ConfigMap/default/other"),
            "{err}"
        );
        let err = manifest_patch("p.yaml", FILE, 2, &patched("{}")).unwrap_err();
        assert!(err.to_string().contains("has 2 YAML documents"), "{err}");
    }

    #[test]
    fn a_missing_final_newline_is_marked() {
        let file = "kind: TailnetPolicy\nmetadata:\n  name: base\nspec:\n  role: Base";
        let object = json!({"kind": "TailnetPolicy", "metadata": {"name": "base"},
                            "spec": {"role": "Fragment"}});
        let diff = manifest_patch("p.yaml", file, 0, &object).unwrap();
        assert!(
            diff.ends_with(
                "-  role: Base\n\\ No newline at end of file\n+  role: Fragment\n\\ No newline at end of file\n"
            ),
            "{diff}"
        );
    }
}
