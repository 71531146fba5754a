//! A unified-style line diff (LCS over lines) for `plan` output and status messages.
//!
//! Policy files are small (hundreds to a few thousand lines), so a quadratic LCS over the lines
//! left after trimming the common prefix and suffix is fine; above [`MAX_CELLS`] the middle is
//! shown as a plain replacement rather than spending memory on a table. Output is capped at
//! `max_lines` lines, with a final line saying how many were left out.
const CONTEXT: usize = 2;
/// Largest LCS table (cells) computed before falling back to "replace the middle".
pub const MAX_CELLS: usize = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Keep,
    Delete,
    Insert,
}

/// `--- old` / `+++ new` header, then hunks of changed lines (`-`/`+`) with two lines of
/// context (` `). Empty when the texts are equal.
pub fn unified(old: &str, new: &str, old_label: &str, new_label: &str, max_lines: usize) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let script = edit_script(&a, &b);
    let mut out = vec![format!("--- {old_label}"), format!("+++ {new_label}")];
    out.extend(hunks(&script, &a, &b));
    if out.len() > max_lines {
        let hidden = out.len() - max_lines;
        out.truncate(max_lines);
        out.push(format!("... {hidden} more diff lines not shown"));
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// The edit script turning `a` into `b`.
fn edit_script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops = vec![Op::Keep; prefix];
    if ma.len().saturating_mul(mb.len()) > MAX_CELLS {
        ops.extend(std::iter::repeat_n(Op::Delete, ma.len()));
        ops.extend(std::iter::repeat_n(Op::Insert, mb.len()));
    } else {
        ops.extend(lcs_script(ma, mb));
    }
    ops.extend(std::iter::repeat_n(Op::Keep, suffix));
    ops
}

fn lcs_script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    // lengths[i][j] = LCS of a[i..] and b[j..], row-major in one allocation.
    let mut lengths = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lengths[at(i, j)] = if a[i] == b[j] {
                lengths[at(i + 1, j + 1)] + 1
            } else {
                lengths[at(i + 1, j)].max(lengths[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j, mut ops) = (0, 0, Vec::with_capacity(n + m));
    while i < n && j < m {
        if a[i] == b[j] {
            ops.push(Op::Keep);
            i += 1;
            j += 1;
        } else if lengths[at(i + 1, j)] >= lengths[at(i, j + 1)] {
            ops.push(Op::Delete);
            i += 1;
        } else {
            ops.push(Op::Insert);
            j += 1;
        }
    }
    ops.extend(std::iter::repeat_n(Op::Delete, n - i));
    ops.extend(std::iter::repeat_n(Op::Insert, m - j));
    ops
}

/// Renders the script as hunks with `@@ -l,n +l,n @@` headers and [`CONTEXT`] lines around
/// each change.
fn hunks(script: &[Op], a: &[&str], b: &[&str]) -> Vec<String> {
    // Positions (in the script) of changes, grouped when their contexts touch.
    let changes: Vec<usize> = (0..script.len())
        .filter(|&k| script[k] != Op::Keep)
        .collect();
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for &k in &changes {
        match groups.last_mut() {
            Some((_, end)) if k <= *end + 2 * CONTEXT + 1 => *end = k,
            _ => groups.push((k, k)),
        }
    }
    // Line numbers in a and b before each script position.
    let mut before = Vec::with_capacity(script.len() + 1);
    let (mut i, mut j) = (0, 0);
    for op in script {
        before.push((i, j));
        match op {
            Op::Keep => {
                i += 1;
                j += 1;
            }
            Op::Delete => i += 1,
            Op::Insert => j += 1,
        }
    }
    before.push((i, j));
    let mut out = Vec::new();
    for (first, last) in groups {
        let start = first.saturating_sub(CONTEXT);
        let end = (last + CONTEXT + 1).min(script.len());
        let (a0, b0) = before[start];
        let (a1, b1) = before[end];
        out.push(format!(
            "@@ -{},{} +{},{} @@",
            a0 + 1,
            a1 - a0,
            b0 + 1,
            b1 - b0
        ));
        for k in start..end {
            let (ai, bj) = before[k];
            out.push(match script[k] {
                Op::Keep => format!(" {}", a[ai]),
                Op::Delete => format!("-{}", a[ai]),
                Op::Insert => format!("+{}", b[bj]),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "live", "desired", 100), "");
    }

    #[test]
    fn a_changed_line_shows_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n";
        let new = "1\n2\n3\nfour\n5\n6\n7\n";
        let diff = unified(old, new, "live", "desired", 100);
        assert_eq!(
            diff,
            "--- live\n+++ desired\n@@ -2,5 +2,5 @@\n 2\n 3\n-4\n+four\n 5\n 6\n"
        );
    }

    #[test]
    fn insertions_and_deletions_far_apart_make_two_hunks() {
        let old: String = (0..20).map(|i| format!("{i}\n")).collect();
        let new = old.replace("2\n", "").replace("17\n", "17\nnew\n");
        let diff = unified(&old, &new, "a", "b", 100);
        assert_eq!(diff.matches("@@ -").count(), 2, "{diff}");
        assert!(
            diff.contains("\n-2\n") && diff.contains("\n+new\n"),
            "{diff}"
        );
    }

    #[test]
    fn output_is_capped() {
        let old: String = (0..100).map(|i| format!("{i}\n")).collect();
        let new: String = (0..100).map(|i| format!("x{i}\n")).collect();
        let diff = unified(&old, &new, "a", "b", 10);
        assert_eq!(diff.lines().count(), 11);
        assert!(diff.ends_with("more diff lines not shown\n"), "{diff}");
    }
}
