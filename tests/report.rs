//! `tailnet-operator report` on the embedded simulated tailnet: the JSON follows the committed
//! schema (which is the generated one), the HTML has every section with a drawn chart and
//! refers to nothing outside itself.
use std::process::Command;

use serde_json::Value;
use tailnet_operator::sim::{SimConfig, SimTailnet};

const BIN: &str = env!("CARGO_BIN_EXE_tailnet-operator");
const SECTIONS: [&str; 6] = ["devices", "routing", "dns", "policy", "keys", "audit"];

fn report(format: &str) -> String {
    let output = Command::new(BIN)
        .args(["report", "--format", format])
        .env_remove("CI")
        .env_remove("TS_API_KEY")
        .env_remove("TS_OAUTH_CLIENT_ID")
        .env_remove("TS_OAUTH_CLIENT_SECRET")
        .env_remove("TS_API_URL")
        .env_remove("TS_TAILNET")
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn committed_schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/report.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    assert_eq!(
        committed_schema(),
        tailnet_operator::report::schema(),
        "docs/report.schema.json is stale: run `tailnet-operator report --schema > docs/report.schema.json` (scripts/regenerate does)"
    );
}

/// Checks `value` against the subset of JSON Schema the generated schema uses: `$ref` into
/// `$defs`, `type`, `required`, `properties`, `items`, `additionalProperties`. Returns the
/// first problem with its path.
fn check(schema: &Value, root: &Value, value: &Value, path: &str) -> Result<(), String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/$defs/");
        return check(&root["$defs"][name], root, value, path);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let matches = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    };
    if !types.is_empty() && !types.iter().any(|t| matches(t)) {
        return Err(format!("{path}: {value} is not {types:?}"));
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        let key = required.as_str().unwrap_or_default();
        if value.get(key).is_none() {
            return Err(format!("{path}: `{key}` is required"));
        }
    }
    if let (Some(properties), Some(object)) = (schema["properties"].as_object(), value.as_object())
    {
        for (key, child) in object {
            match properties.get(key) {
                Some(sub) => check(sub, root, child, &format!("{path}/{key}"))?,
                None => match &schema["additionalProperties"] {
                    Value::Bool(false) => return Err(format!("{path}/{key}: not in the schema")),
                    Value::Object(_) => check(&schema["additionalProperties"], root, child, path)?,
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check(items, root, item, &format!("{path}/{i}"))?;
        }
    }
    Ok(())
}

#[test]
fn the_json_report_follows_its_schema_and_counts_the_tailnet() {
    let report: Value = serde_json::from_str(&report("json")).unwrap();
    let schema = committed_schema();
    check(&schema, &schema, &report, "").unwrap();
    // The check can fail: a report without a section, or with a wrong type, is refused.
    let mut broken = report.clone();
    broken.as_object_mut().unwrap().remove("dns");
    assert!(check(&schema, &schema, &broken, "").is_err());
    broken = report.clone();
    broken["devices"]["total"] = Value::String("many".into());
    assert!(check(&schema, &schema, &broken, "").is_err());

    let sim = SimTailnet::new(SimConfig::default());
    assert_eq!(report["devices"]["total"], sim.device_count());
    let by_os: u64 = report["devices"]["byOs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        by_os as usize,
        sim.device_count(),
        "every device counted once"
    );
    assert!(
        report["audit"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("audited ")
    );
}

#[test]
fn the_html_report_has_every_section_with_a_chart_and_nothing_external() {
    let html = report("html");
    for section in SECTIONS {
        let start = html
            .find(&format!("<section id=\"{section}\">"))
            .unwrap_or_else(|| panic!("section {section} missing"));
        let end = start + html[start..].find("</section>").unwrap();
        let body = &html[start..end];
        // A drawn bar: a rect wider than zero (an all-zero chart draws only empty rects).
        let drawn = body.split("<rect").skip(1).any(|rect| {
            rect.split("width=\"")
                .nth(1)
                .and_then(|w| w.split('"').next())
                .and_then(|w| w.parse::<f64>().ok())
                .is_some_and(|w| w > 0.0)
        });
        assert!(
            body.contains("<svg") && drawn,
            "section {section} has no drawn chart"
        );
    }
    for external in [
        "<script", "<link", "<img", "<iframe", "src=", "href=", "url(",
    ] {
        assert!(
            !html.contains(external),
            "the page refers to something: {external}"
        );
    }
}
