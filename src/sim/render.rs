//! Writes a JSON document as commented HuJSON, the way a human keeps a policy file: sections on
//! their own lines with a comment above, rules one per line, trailing commas.
//!
//! The seed and default policies are built as JSON values and rendered with comments, so the
//! stored text and its parsed form agree by construction (no parser is involved in seeding).
use serde_json::Value;

/// Renders `doc`, placing `// comment` lines before the members whose JSON-pointer path is listed
/// in `comments` (`""` is the file header, `"/acls"` a section, `"/acls/0"` a rule).
pub fn render_hujson(doc: &Value, comments: &[(&str, &str)]) -> String {
    let mut out = String::new();
    write_comment(&mut out, comments, "", 0);
    write_value(&mut out, doc, comments, "", 0);
    out.push('\n');
    out
}

fn write_comment(out: &mut String, comments: &[(&str, &str)], path: &str, depth: usize) {
    for (p, text) in comments {
        if *p == path {
            for line in text.lines() {
                indent(out, depth);
                out.push_str("// ");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push('\t');
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// Top-level sections and the members of maps like `groups` go one per line; anything deeper is
/// written inline, which is how policy rules are usually laid out.
fn write_value(out: &mut String, v: &Value, comments: &[(&str, &str)], path: &str, depth: usize) {
    match v {
        Value::Object(map) if depth <= 1 && !map.is_empty() => {
            out.push_str("{\n");
            for (i, (k, child)) in map.iter().enumerate() {
                let child_path = format!("{path}/{k}");
                if depth == 0 && i > 0 {
                    out.push('\n');
                }
                write_comment(out, comments, &child_path, depth + 1);
                indent(out, depth + 1);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_value(out, child, comments, &child_path, depth + 1);
                out.push_str(",\n");
            }
            indent(out, depth);
            out.push('}');
        }
        Value::Array(items) if depth <= 1 && !items.iter().all(is_scalar) => {
            out.push_str("[\n");
            for (i, child) in items.iter().enumerate() {
                let child_path = format!("{path}/{i}");
                write_comment(out, comments, &child_path, depth + 1);
                indent(out, depth + 1);
                write_inline(out, child);
                out.push_str(",\n");
            }
            indent(out, depth);
            out.push(']');
        }
        _ => write_inline(out, v),
    }
}

fn write_inline(out: &mut String, v: &Value) {
    match v {
        Value::Object(map) => {
            out.push('{');
            for (i, (k, child)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_inline(out, child);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, child) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_inline(out, child);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Drops `//` line comments and trailing commas from text produced by [`render_hujson`], giving
/// plain JSON. Only valid for that writer's output (comments start a line, strings never
/// contain `//` at a line start), which is what lets tests check the renderer with serde_json.
#[cfg(test)]
pub fn strip_rendered(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    let joined = lines.join("\n");
    joined
        .replace(",\n}", "\n}")
        .replace(",\n\t}", "\n\t}")
        .replace(",\n]", "\n]")
        .replace(",\n\t]", "\n\t]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rendered_text_carries_comments_and_parses_back_to_the_document() {
        let doc = json!({
            "groups": {"group:eng": ["a@example.com", "b@example.com"]},
            "acls": [{"action": "accept", "src": ["group:eng"], "dst": ["*:*"]}],
            "disableIPv4": false,
        });
        let text = render_hujson(
            &doc,
            &[
                ("", "header"),
                ("/groups", "teams"),
                ("/acls/0", "allow eng"),
            ],
        );
        assert!(text.starts_with("// header\n{"));
        assert!(text.contains("\t// teams\n\t\"groups\": {"));
        assert!(text.contains("\t\t// allow eng\n\t\t{\"action\": \"accept\""));
        let plain = strip_rendered(&text);
        let back: Value = serde_json::from_str(&plain).expect("renderer output is HuJSON");
        assert_eq!(back, doc);
    }
}
