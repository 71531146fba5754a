//! Strict HuJSON: JSON plus `//` and `/* */` comments and trailing commas, nothing else.
//!
//! Tailscale's policy file is HuJSON ("JSON for humans"). The parser here is deliberately
//! stricter than JSON5/JSONC: unquoted keys, single-quoted strings, missing commas, hex,
//! `+1`, `.5`, `NaN`/`Infinity`, extended string escapes, raw control characters inside
//! strings, non-JSON whitespace (e.g. a BOM or NBSP) and trailing garbage are all rejected,
//! so a document accepted here is one Tailscale accepts too. Duplicate object keys are
//! rejected as well (the policy engine refuses them), with the key named in the error.
use std::collections::HashSet;
use std::str::FromStr;

use jsonc_parser::ast::{Array, Object, ObjectPropName, Value as AstValue};
use jsonc_parser::common::Range;
use jsonc_parser::{CollectOptions, CommentCollectionStrategy, ParseOptions, parse_to_ast};
use serde_json::{Map, Number, Value};

/// A HuJSON syntax error with a 1-based position (column counts characters, not bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct HujsonError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The only extensions over RFC 8259 that HuJSON allows: comments and trailing commas.
fn strict_options() -> ParseOptions {
    ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_loose_object_property_names: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    }
}

/// Parses HuJSON strictly into a JSON value (object key order preserved).
pub fn parse_strict(text: &str) -> Result<Value, HujsonError> {
    // Tokens (comments included) are collected so the gaps between them can be checked
    // for non-JSON whitespace, which the underlying scanner tolerates.
    let collect = CollectOptions {
        comments: CommentCollectionStrategy::AsTokens,
        tokens: true,
    };
    let parsed = parse_to_ast(text, &collect, &strict_options()).map_err(|e| HujsonError {
        line: e.line_display(),
        column: e.column_display(),
        message: e.kind().to_string(),
    })?;
    let token_ranges: Vec<Range> = parsed
        .tokens
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|t| t.range)
        .collect();
    check_whitespace(text, &token_ranges)?;
    let Some(root) = parsed.value else {
        return Err(error_at(
            text,
            text.len(),
            "empty document: expected a JSON value",
        ));
    };
    convert(text, &root)
}

/// Everything between tokens must be JSON whitespace (space, tab, LF, CR).
fn check_whitespace(text: &str, tokens: &[Range]) -> Result<(), HujsonError> {
    let mut gaps = Vec::with_capacity(tokens.len() + 1);
    let mut previous_end = 0;
    for range in tokens {
        gaps.push((previous_end, range.start));
        previous_end = range.end;
    }
    gaps.push((previous_end, text.len()));
    for (start, end) in gaps {
        let gap = &text[start..end];
        if let Some((offset, c)) = gap
            .char_indices()
            .find(|(_, c)| !matches!(c, ' ' | '\t' | '\n' | '\r'))
        {
            let message = format!(
                "character U+{:04X} is not allowed outside strings",
                c as u32
            );
            return Err(error_at(text, start + offset, &message));
        }
    }
    Ok(())
}

fn convert(text: &str, value: &AstValue<'_>) -> Result<Value, HujsonError> {
    match value {
        AstValue::NullKeyword(_) => Ok(Value::Null),
        AstValue::BooleanLit(b) => Ok(Value::Bool(b.value)),
        AstValue::NumberLit(n) => Number::from_str(n.value).map(Value::Number).map_err(|_| {
            let message = format!("number {} is out of range", n.value);
            error_at(text, n.range.start, &message)
        }),
        AstValue::StringLit(s) => {
            check_string_chars(text, s.range)?;
            Ok(Value::String(s.value.to_string()))
        }
        AstValue::Array(array) => convert_array(text, array),
        AstValue::Object(object) => convert_object(text, object),
    }
}

fn convert_array(text: &str, array: &Array<'_>) -> Result<Value, HujsonError> {
    let items = array
        .elements
        .iter()
        .map(|element| convert(text, element))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Value::Array(items))
}

fn convert_object(text: &str, object: &Object<'_>) -> Result<Value, HujsonError> {
    let mut map = Map::new();
    let mut seen = HashSet::new();
    for prop in &object.properties {
        let ObjectPropName::String(name) = &prop.name else {
            // Unreachable with loose property names disabled; kept as an error, not a panic.
            return Err(error_at(
                text,
                prop.range.start,
                "object keys must be strings",
            ));
        };
        check_string_chars(text, name.range)?;
        let key = name.value.to_string();
        if !seen.insert(key.clone()) {
            let message = format!("duplicate object key {key:?}");
            return Err(error_at(text, name.range.start, &message));
        }
        map.insert(key, convert(text, &prop.value)?);
    }
    Ok(Value::Object(map))
}

/// Where an object's member is in a HuJSON text (byte offsets), for edits that keep every
/// other byte (comments, formatting) as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// The span of the value at `path` (object keys from the root; the first key matched without
/// regard to case, as Tailscale matches section names), if the text parses and it exists.
pub fn value_span(text: &str, path: &[&str]) -> Option<Span> {
    let parsed = parse_to_ast(text, &CollectOptions::default(), &strict_options()).ok()?;
    let mut value = parsed.value?;
    for (depth, key) in path.iter().enumerate() {
        let AstValue::Object(object) = value else {
            return None;
        };
        value = object
            .properties
            .into_iter()
            .find(|p| match &p.name {
                ObjectPropName::String(name) if depth == 0 => name.value.eq_ignore_ascii_case(key),
                ObjectPropName::String(name) => name.value == *key,
                ObjectPropName::Word(_) => false,
            })?
            .value;
    }
    let range = match &value {
        AstValue::Object(o) => o.range,
        AstValue::Array(a) => a.range,
        AstValue::StringLit(s) => s.range,
        AstValue::NumberLit(n) => n.range,
        AstValue::BooleanLit(b) => b.range,
        AstValue::NullKeyword(n) => n.range,
    };
    Some(Span {
        start: range.start,
        end: range.end,
    })
}

/// `text` with a new member `"key": value_text` added after the last member of the object at
/// `path` (after that member's comma and same-line comment, indented like it), or `None` when
/// there is no such object.
pub fn insert_member(text: &str, path: &[&str], key: &str, value_text: &str) -> Option<String> {
    let span = value_span(text, path)?;
    if !text[span.start..span.end].starts_with('{') {
        return None;
    }
    let parsed = parse_to_ast(
        &text[span.start..span.end],
        &CollectOptions::default(),
        &strict_options(),
    )
    .ok()?;
    let Some(AstValue::Object(object)) = parsed.value else {
        return None;
    };
    let key = serde_json::to_string(key).ok()?;
    let Some(last) = object.properties.last() else {
        let close = span.end - 1;
        return Some(format!(
            "{}{key}: {value_text}{}",
            &text[..close],
            &text[close..]
        ));
    };
    let mut at = span.start + last.range.end;
    let rest = &text[at..];
    let gap = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    let has_comma = rest[gap..].starts_with(',');
    if has_comma {
        at += gap + 1;
    }
    let comma = if has_comma { "" } else { "," };
    // Past a same-line comment, so it stays with its member.
    let line_end = text[at..].find('\n').map_or(span.end - 1, |i| at + i);
    let line_start = text[..span.start + last.range.start]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let indent: String = text[line_start..]
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect();
    let insert_at = if line_end < span.end { line_end } else { at };
    Some(format!(
        "{}{comma}{}\n{indent}{key}: {value_text},{}",
        &text[..at],
        &text[at..insert_at],
        &text[insert_at..]
    ))
}

/// JSON forbids raw control characters (U+0000..U+001F) inside strings; they must be escaped.
fn check_string_chars(text: &str, range: Range) -> Result<(), HujsonError> {
    let raw = &text[range.start..range.end];
    match raw.char_indices().find(|(_, c)| (*c as u32) < 0x20) {
        Some((offset, c)) => {
            let message = format!(
                "control character U+{:04X} must be escaped inside strings",
                c as u32
            );
            Err(error_at(text, range.start + offset, &message))
        }
        None => Ok(()),
    }
}

/// Builds an error at a byte offset, computing the 1-based line and character column.
fn error_at(text: &str, byte_offset: usize, message: &str) -> HujsonError {
    let before = &text[..byte_offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    HujsonError {
        line,
        column,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(text: &str) -> HujsonError {
        match parse_strict(text) {
            Ok(v) => panic!("expected an error for {text:?}, parsed {v}"),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_comments_and_trailing_commas() {
        let text = r#"
// leading comment
{
  /* block
     comment */
  "acls": [
    {"action": "accept", "src": ["*"], "dst": ["*:*"],}, // trailing comma in object
  ], // trailing comma in array
  "groups": {"group:eng": ["alice@example.com",],},
}
// trailing comment
"#;
        let value = parse_strict(text).unwrap();
        assert_eq!(
            value,
            json!({
                "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
                "groups": {"group:eng": ["alice@example.com"]}
            })
        );
    }

    #[test]
    fn preserves_key_order_and_plain_json_values() {
        let value =
            parse_strict(r#"{"z": 1, "a": [true, false, null, -1.5e3, "x\n\u00e9"]}"#).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a"]);
        assert_eq!(value["a"], json!([true, false, null, -1500.0, "x\né"]));
    }

    #[test]
    fn rejects_unquoted_keys() {
        let e = err("{acls: []}");
        assert_eq!((e.line, e.column), (1, 2));
    }

    #[test]
    fn rejects_single_quoted_strings() {
        let e = err(r#"{"a": 'b'}"#);
        assert!(e.message.contains("Single-quoted"), "{e}");
        assert_eq!((e.line, e.column), (1, 7));
    }

    #[test]
    fn rejects_missing_commas() {
        let e = err(r#"{"a": 1 "b": 2}"#);
        assert!(e.message.to_lowercase().contains("comma"), "{e}");
        let e = err(r#"[1 2]"#);
        assert!(e.message.to_lowercase().contains("comma"), "{e}");
    }

    #[test]
    fn rejects_non_json_numbers() {
        for text in [
            "[0x1F]",
            "[+1]",
            "[NaN]",
            "[Infinity]",
            "[-Infinity]",
            "[.5]",
            "[5.]",
            "[01]",
        ] {
            err(text);
        }
        assert!(err("[0x1F]").message.contains("Hexadecimal"));
        assert!(err("[+1]").message.contains("Unary plus"));
    }

    #[test]
    fn rejects_out_of_range_numbers() {
        let e = err("[1e400]");
        assert!(e.message.contains("out of range"), "{e}");
    }

    #[test]
    fn rejects_trailing_garbage() {
        let e = err("{\"a\": 1}\n}");
        assert_eq!((e.line, e.column), (2, 1));
        err("{} {}");
        err("{} x");
    }

    #[test]
    fn rejects_empty_document() {
        let e = err("  // only a comment\n");
        assert!(e.message.contains("empty"), "{e}");
        err("");
    }

    #[test]
    fn rejects_json5_string_escapes_and_raw_control_characters() {
        err(r#"["\x41"]"#);
        err(r#"["\v"]"#);
        err(r#"["it\'s"]"#);
        let e = err("[\"line\nbreak\"]");
        assert!(e.message.contains("control character"), "{e}");
        assert_eq!((e.line, e.column), (1, 7));
    }

    #[test]
    fn rejects_non_json_whitespace() {
        let e = err("\u{feff}{}");
        assert_eq!((e.line, e.column), (1, 1));
        let e = err("{\"a\":\u{a0}1}");
        assert!(e.message.contains("U+00A0"), "{e}");
        assert_eq!((e.line, e.column), (1, 6));
    }

    #[test]
    fn rejects_unterminated_input() {
        err(r#"{"a": [1, 2"#);
        err(r#"{"a": "b"#);
        err("{} /* open comment");
    }

    #[test]
    fn reports_line_and_column_on_multi_line_input() {
        let text = "{\n  // comment\n  \"acls\": [\n    {\"action\": 'accept'}\n  ]\n}\n";
        let e = err(text);
        assert_eq!((e.line, e.column), (4, 16), "{e}");
        assert!(e.to_string().starts_with("line 4, column 16: "));
    }

    #[test]
    fn rejects_duplicate_keys_naming_the_key() {
        let text = "{\n  \"groups\": {},\n  \"acls\": [],\n  \"groups\": {}\n}";
        let e = err(text);
        assert!(e.message.contains("duplicate object key \"groups\""), "{e}");
        assert_eq!((e.line, e.column), (4, 3));
        // Nested objects are checked too; equal keys in sibling objects are fine.
        err(r#"{"a": {"x": 1, "x": 2}}"#);
        parse_strict(r#"[{"x": 1}, {"x": 2}]"#).unwrap();
    }

    #[test]
    fn duplicate_detection_compares_decoded_keys() {
        let e = err(r#"{"a": 1, "\u0061": 2}"#);
        assert!(e.message.contains("\"a\""), "{e}");
    }
}

/// A fingerprint of a HuJSON document that ignores formatting but not content: whitespace
/// outside strings and comments, and trailing commas, do not count; strings, numbers, keys,
/// order and comment text (with its whitespace collapsed) do.
///
/// Policy identity (drift, read-back verification, revision hashes) uses this rather than the
/// bytes, so a server that re-formats the policy on save (Tailscale's ETag appears to hash the
/// *formatted* HuJSON) is not mistaken for a console edit, while a changed comment still is.
/// The input need not be valid HuJSON; invalid text simply fingerprints as written.
pub fn fingerprint(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(canonical_tokens(text).as_bytes()))
}

/// `text` with whitespace outside strings removed, whitespace inside comments collapsed to
/// single spaces, and commas directly before `]` or `}` dropped.
fn canonical_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    out.push(c);
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                chars.next();
                let comment: String = chars.by_ref().take_while(|&c| c != '\n').collect();
                push_comment(&mut out, "//", &comment, "");
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut comment = String::new();
                let mut previous = '\0';
                for c in chars.by_ref() {
                    if previous == '*' && c == '/' {
                        comment.pop();
                        break;
                    }
                    comment.push(c);
                    previous = c;
                }
                push_comment(&mut out, "/*", &comment, "*/");
            }
            ']' | '}' => {
                if out.ends_with(',') {
                    out.pop();
                }
                out.push(c);
            }
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

fn push_comment(out: &mut String, open: &str, body: &str, close: &str) {
    out.push_str(open);
    out.push_str(&body.split_whitespace().collect::<Vec<_>>().join(" "));
    out.push_str(close);
    // A comment ends a token, so a following value cannot merge with it.
    out.push('\n');
}

#[cfg(test)]
mod fingerprint_tests {
    use super::{fingerprint, insert_member, parse_strict, value_span};

    const POLICY: &str = "// Team access.\n{\n\t\"groups\": {\n\t\t\"group:eng\": [\"a@x.com\", \"b@x.com\"],\n\t},\n\t/* admins\n\t   only */\n\t\"acls\": [{\"action\": \"accept\", \"src\": [\"group:eng\"], \"dst\": [\"*:22\"]}],\n}\n";

    #[test]
    fn spans_find_values_and_members_are_inserted_with_comments_kept() {
        let text = "{\n\t// teams\n\t\"Groups\": {\n\t\t\"group:a\": [\"x\"], // a\n\t},\n}";
        let span = value_span(text, &["groups", "group:a"]).unwrap();
        assert_eq!(&text[span.start..span.end], "[\"x\"]");
        assert!(value_span(text, &["groups", "group:b"]).is_none());
        let edited = insert_member(text, &["groups"], "group:b", "[\"y\"]").unwrap();
        assert!(
            edited.contains("// a\n\t\t\"group:b\": [\"y\"],\n\t},"),
            "{edited}"
        );
        assert_eq!(
            parse_strict(&edited).unwrap()["Groups"]["group:b"],
            serde_json::json!(["y"])
        );
    }

    #[test]
    fn reformatting_keeps_the_fingerprint() {
        let reformatted = "// Team access.\n{\n  \"groups\": {\"group:eng\": [\"a@x.com\",\n      \"b@x.com\"]},\n  /* admins only */\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": [\"group:eng\"], \"dst\": [\"*:22\",],},\n  ],\n}";
        assert_eq!(fingerprint(POLICY), fingerprint(reformatted));
    }

    #[test]
    fn content_comments_and_order_change_the_fingerprint() {
        let base = fingerprint(POLICY);
        for changed in [
            POLICY.replace("*:22", "*:23"),
            POLICY.replace("Team access.", "Team access!"),
            POLICY.replace("\"a@x.com\", \"b@x.com\"", "\"b@x.com\", \"a@x.com\""),
            POLICY.replace("\"a@x.com\"", "\"a @x.com\""),
            POLICY.replace("// Team access.\n", ""),
        ] {
            assert_ne!(fingerprint(&changed), base, "{changed}");
        }
    }

    #[test]
    fn commas_and_slashes_inside_strings_are_content() {
        assert_ne!(
            fingerprint(r#"{"a": "x,]"}"#),
            fingerprint(r#"{"a": "x]"}"#)
        );
        assert_ne!(
            fingerprint(r#"{"a": "http://x"}"#),
            fingerprint(r#"{"a": "http:"}"#)
        );
        assert_eq!(
            fingerprint("{\"a\": \"q\\\"uote\" , }"),
            fingerprint("{\"a\":\"q\\\"uote\"}")
        );
    }
}
