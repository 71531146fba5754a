//! `tailnet-operator report` on the embedded simulated tailnet: the JSON follows the committed
//! schema (which is the generated one), the access heatmap is the evaluator's, `-f PATH` shows
//! desired against live, and the HTML has every section with a drawn chart and refers to
//! nothing outside itself, checked as source and as Chromium renders it.
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tailnet_operator::sim::{SimConfig, SimServer, SimTailnet};

const BIN: &str = env!("CARGO_BIN_EXE_tailnet-operator");
const SECTIONS: [&str; 6] = ["devices", "routing", "dns", "policy", "keys", "audit"];

fn report(format: &str) -> String {
    run_report(&["--format", format], &[])
}

/// Runs `report ARGS` with `env` (and no TS_* settings of the caller's).
fn run_report(args: &[&str], env: &[(&str, &str)]) -> String {
    run(&[&["report"], args].concat(), env)
}

fn run(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("CI")
        .env_remove("TS_API_KEY")
        .env_remove("TS_OAUTH_CLIENT_ID")
        .env_remove("TS_OAUTH_CLIENT_SECRET")
        .env_remove("TS_API_URL")
        .env_remove("TS_TAILNET")
        .envs(env.iter().copied())
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
/// `$defs`, `anyOf`, `type`, `required`, `properties`, `items`, `additionalProperties`. Returns
/// the first problem with its path.
fn check(schema: &Value, root: &Value, value: &Value, path: &str) -> Result<(), String> {
    if let Some(options) = schema.get("anyOf").and_then(Value::as_array) {
        let problems: Vec<String> = options
            .iter()
            .filter_map(|option| check(option, root, value, path).err())
            .collect();
        if problems.len() == options.len() {
            return Err(format!("{path}: matches none of anyOf: {problems:?}"));
        }
    }
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

fn cell<'a>(access: &'a Value, row: &str, column: &str) -> Option<&'a str> {
    let index = |axis: &str, label: &str| {
        access[axis]
            .as_array()
            .unwrap()
            .iter()
            .position(|a| a["label"] == label)
    };
    let (r, c) = (index("rows", row)?, index("columns", column)?);
    access["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|cell| cell["row"] == r && cell["column"] == c)
        .and_then(|cell| cell["access"].as_str())
}

/// The heatmap is the evaluator's answer per identity: a cell for what the simulated tailnet's
/// policy grants, none for what it does not, whatever a device-level check says.
#[test]
fn the_access_heatmap_is_the_evaluators() {
    let report: Value = serde_json::from_str(&report("json")).unwrap();
    let access = &report["policy"]["access"];
    assert!(access.get("unavailable").is_none(), "{access}");
    let rows: Vec<&str> = access["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    for row in [
        "group:eng",
        "autogroup:member",
        "tag:prod",
        "autogroup:tagged",
    ] {
        assert!(rows.contains(&row), "{row} in {rows:?}");
    }
    // The sim's policy: tag:ci reaches tag:server on 443 only (an `acls` entry without
    // `proto`: TCP and UDP); tag:monitoring reaches it on its metrics port; nothing is granted
    // from tag:ci to user devices. group:eng's cell is what some member reaches: bob is also in
    // group:sre, which reaches servers on every port.
    assert_eq!(
        cell(access, "tag:ci", "tag:server"),
        Some("tcp:443 udp:443")
    );
    assert_eq!(
        cell(access, "tag:monitoring", "tag:server"),
        Some("tcp:9100")
    );
    assert_eq!(
        cell(access, "group:eng", "tag:server"),
        Some("icmp tcp udp ipv6-icmp"),
        "every port of the default protocols, from group:sre's `tag:server:*`"
    );
    assert!(
        cell(access, "tag:ci", "autogroup:member").is_none(),
        "{access}"
    );
    let tests = &report["policy"]["tests"];
    assert!(tests["total"].as_u64().unwrap() > 0, "{tests}");
    assert_eq!(tests["failing"], 0, "{tests}");
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn states(report: &Value) -> Vec<(String, String)> {
    report["desired"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!(
                    "{}/{}",
                    r["kind"].as_str().unwrap(),
                    r["name"].as_str().unwrap()
                ),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `report -f examples/` before and after `apply -f examples/` against one simulated tailnet:
/// the resources would change, then are in sync; the plan text is carried; the schema holds.
#[tokio::test(flavor = "multi_thread")]
async fn desired_against_live_follows_an_apply() {
    let server = SimServer::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = server.base_url();
    let key = server.tailnet().credentials().api_key.expose().to_owned();
    let path = examples().display().to_string();
    let (before, after) = tokio::task::spawn_blocking(move || {
        let env = [("TS_API_URL", url.as_str()), ("TS_API_KEY", key.as_str())];
        let report_args = ["-f", path.as_str(), "--format", "json"];
        let before: Value = serde_json::from_str(&run_report(&report_args, &env)).unwrap();
        run(&["apply", "-f", path.as_str()], &env);
        let after: Value = serde_json::from_str(&run_report(&report_args, &env)).unwrap();
        (before, after)
    })
    .await
    .unwrap();
    let schema = committed_schema();
    check(&schema, &schema, &before, "").unwrap();
    let state = |report: &Value, resource: &str| {
        states(report)
            .into_iter()
            .find(|(r, _)| r == resource)
            .unwrap_or_else(|| panic!("{resource} in {:?}", states(report)))
            .1
    };
    for resource in [
        "TailnetPolicy/base",
        "DNSConfig/default",
        "DeviceTagSet/subnet-routers",
    ] {
        assert_eq!(state(&before, resource), "would change", "{resource}");
        assert_eq!(state(&after, resource), "in sync", "{resource}");
    }
    let plan = before["desired"]["plan"].as_str().unwrap();
    assert!(plan.contains("would apply the composed policy"), "{plan}");
    assert_eq!(state(&after, "KeyRotationPolicy/ci-runners"), "no status");
    assert!(report_has_no_desired_without_f());
}

fn report_has_no_desired_without_f() -> bool {
    let report: Value = serde_json::from_str(&report("json")).unwrap();
    report.get("desired").is_none()
}

/// Chromium, as a person would open the page: every section shown with drawn marks, the
/// heatmap's cells, no script, no request leaving the page. The same check is shown to catch a
/// page that loads an image from the network.
#[test]
fn chromium_renders_every_section_and_the_page_requests_nothing() {
    // Under target/, fresh each run (no temp-dir crate for one test).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report-browser");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("report.html");
    let path = examples().display().to_string();
    std::fs::write(&page, run_report(&["-f", path.as_str()], &[])).unwrap();
    let shot = screenshot_path();
    let seen = render(&page, &shot);
    let sections: Vec<&str> = SECTIONS.iter().copied().chain(["desired"]).collect();
    for (expected, found) in sections.iter().zip(seen["sections"].as_array().unwrap()) {
        assert_eq!(found["id"], *expected);
        assert_eq!(found["shown"], true, "{found}");
        assert!(
            found["marks"].as_u64().unwrap() > 0,
            "nothing drawn: {found}"
        );
    }
    assert!(seen["heatmapCells"].as_u64().unwrap() > 10, "{seen}");
    assert_eq!(seen["scripts"], 0);
    assert_eq!(seen["requests"], Value::Array(vec![]), "{seen}");
    assert_eq!(seen["consoleErrors"], Value::Array(vec![]), "{seen}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );

    // The check can fail: a page asking for an image on the network is caught.
    let leaky = dir.join("leaky.html");
    let html = std::fs::read_to_string(&page).unwrap().replace(
        "</body>",
        "<img src=\"http://report-assets.invalid/logo.png\"></body>",
    );
    std::fs::write(&leaky, html).unwrap();
    let seen = render(&leaky, &dir.join("leaky.png"));
    assert_eq!(
        seen["requests"],
        serde_json::json!(["http://report-assets.invalid/logo.png"])
    );
}

/// Where the screenshot goes: `$TAILNET_REPORT_SCREENSHOT` (how docs/report.png is made),
/// else target/report-screenshot.png.
fn screenshot_path() -> PathBuf {
    std::env::var_os("TAILNET_REPORT_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report-screenshot.png")
        })
}

/// Runs tests/report/browser.py (Playwright driving Debian's chromium) on `page`.
fn render(page: &Path, screenshot: &Path) -> Value {
    let python = std::env::var("TAILNET_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "TAILNET_TEST_PYTHON is not set: this test renders the report in headless Chromium \
             through Playwright. Run `scripts/test` (it installs Debian's chromium and the test \
             venv), or set it to a python with `pip install -r scripts/requirements-test.txt`"
        )
    });
    let chromium = std::env::var("TAILNET_TEST_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} not found: `apt-get install chromium` (scripts/test does), or set \
         TAILNET_TEST_CHROMIUM"
    );
    let sections: Vec<&str> = SECTIONS.iter().copied().chain(["desired"]).collect();
    let output = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/report/browser.py"))
        .arg(page)
        .args(["--chromium", &chromium, "--sections", &sections.join(",")])
        .arg("--screenshot")
        .arg(screenshot)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "browser.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
