//! The policy file through the simulated API: ETags and 412, byte-for-byte storage, the
//! default policy, validate answering 200 with a body, preview, console edits.
mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::sim::{Sim, error_message, ok_json};

const ACL: &str = "/tailnet/-/acl";
const PRECONDITION_FAILED: &str = "precondition failed, invalid old hash";

/// GETs the policy as HuJSON, returning (text, etag).
async fn get_policy(sim: &Sim) -> (String, String) {
    let resp = sim
        .get(ACL)
        .header("accept", "application/hujson")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/hujson");
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    (resp.text().await.unwrap(), etag)
}

async fn post_policy(sim: &Sim, text: &str, if_match: Option<&str>) -> reqwest::Response {
    let mut req = sim
        .post(ACL)
        .header("content-type", "application/hujson")
        .body(text.to_owned());
    if let Some(etag) = if_match {
        req = req.header("if-match", etag);
    }
    req.send().await.unwrap()
}

/// A valid policy (plain JSON, so it parses without the real HuJSON parser).
fn small_policy(extra_tag: &str) -> String {
    let doc = json!({
        "groups": {"group:eng": ["alice@example.com"]},
        "tagOwners": {"tag:server": ["group:eng"], extra_tag: ["group:eng"]},
        "acls": [{"action": "accept", "src": ["group:eng"], "dst": ["tag:server:22"]}],
    });
    // Unusual spacing on purpose: the stored text must be exactly what was sent.
    serde_json::to_string_pretty(&doc)
        .unwrap()
        .replace("  ", "   ")
        + "\n\n"
}

#[tokio::test]
async fn the_seed_policy_is_commented_hujson_with_a_quoted_content_hash_etag() {
    let sim = Sim::start().await;
    let (text, etag) = get_policy(&sim).await;
    assert!(text.starts_with("// "));
    for section in [
        "groups",
        "tagOwners",
        "hosts",
        "acls",
        "grants",
        "ssh",
        "nodeAttrs",
        "tests",
    ] {
        assert!(
            text.contains(&format!("\"{section}\"")),
            "missing {section}"
        );
    }
    assert_eq!(etag.len(), 66);
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    assert!(etag[1..65].chars().all(|c| c.is_ascii_hexdigit()));
    // Without an Accept header the raw HuJSON comes back too.
    let raw = sim.get(ACL).send().await.unwrap();
    assert_eq!(raw.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(raw.text().await.unwrap(), text);
}

#[tokio::test]
async fn accept_json_returns_the_parsed_policy_without_comments() {
    let sim = Sim::start().await;
    let resp = sim
        .get(ACL)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(resp.headers().contains_key("etag"));
    let doc = ok_json(resp).await;
    assert_eq!(doc["tagOwners"]["tag:k8s"], json!(["tag:k8s-operator"]));
    assert_eq!(doc["hosts"]["db-primary"], "10.10.1.20");
    assert!(doc["tests"].as_array().unwrap().len() >= 2);
    assert!(!doc.to_string().contains("//"));
}

#[tokio::test]
async fn posting_with_the_current_etag_stores_the_text_byte_for_byte() {
    let sim = Sim::start().await;
    let (_, etag) = get_policy(&sim).await;
    let text = small_policy("tag:web");
    let resp = post_policy(&sim, &text, Some(&etag)).await;
    assert_eq!(resp.status(), 200);
    let new_etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag);
    assert_eq!(resp.text().await.unwrap(), text);
    let (stored, stored_etag) = get_policy(&sim).await;
    assert_eq!(stored, text);
    assert_eq!(stored_etag, new_etag);
}

#[tokio::test]
async fn a_stale_or_requoted_etag_gets_412() {
    let sim = Sim::start().await;
    let (_, etag) = get_policy(&sim).await;
    // The classic client bug: quoting the already-quoted ETag.
    let requoted = format!("\"{etag}\"");
    let resp = post_policy(&sim, &small_policy("tag:a"), Some(&requoted)).await;
    assert_eq!(error_message(resp, 412).await, PRECONDITION_FAILED);
    let unquoted = etag.trim_matches('"').to_owned();
    let resp = post_policy(&sim, &small_policy("tag:a"), Some(&unquoted)).await;
    assert_eq!(error_message(resp, 412).await, PRECONDITION_FAILED);

    // Someone else writes; our ETag is now stale.
    assert_eq!(
        post_policy(&sim, &small_policy("tag:b"), None)
            .await
            .status(),
        200
    );
    let resp = post_policy(&sim, &small_policy("tag:c"), Some(&etag)).await;
    assert_eq!(error_message(resp, 412).await, PRECONDITION_FAILED);
    let (stored, _) = get_policy(&sim).await;
    assert_eq!(stored, small_policy("tag:b"));
}

#[tokio::test]
async fn ts_default_matches_only_the_untouched_default_policy() {
    let sim = Sim::start().await;
    let resp = post_policy(&sim, &small_policy("tag:a"), Some("\"ts-default\"")).await;
    assert_eq!(error_message(resp, 412).await, PRECONDITION_FAILED);

    // An empty body resets to the default policy.
    let reset = post_policy(&sim, "", None).await;
    assert_eq!(reset.status(), 200);
    let default_text = reset.text().await.unwrap();
    assert!(default_text.contains("\"acls\""));
    let doc = ok_json(
        sim.get(ACL)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(doc["acls"][0]["dst"], json!(["*:*"]));

    let first = post_policy(&sim, &small_policy("tag:a"), Some("\"ts-default\"")).await;
    assert_eq!(first.status(), 200);
    let second = post_policy(&sim, &small_policy("tag:b"), Some("\"ts-default\"")).await;
    assert_eq!(error_message(second, 412).await, PRECONDITION_FAILED);
}

#[tokio::test]
async fn a_syntax_error_is_a_400_with_line_and_column() {
    let sim = Sim::start().await;
    let resp = post_policy(
        &sim,
        "{\n  \"acls\": [\n    {\"action\" \"accept\"}\n  ]\n}\n",
        None,
    )
    .await;
    let message = error_message(resp, 400).await;
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("column"), "{message}");
}

#[tokio::test]
async fn undefined_owners_and_tags_are_rejected_on_save() {
    let sim = Sim::start().await;
    let bad = json!({"tagOwners": {"tag:x": ["group:missing"]}}).to_string();
    let resp = post_policy(&sim, &bad, None).await;
    assert!(error_message(resp, 400).await.contains("group:missing"));
    let bad_ref =
        json!({"acls": [{"action": "accept", "src": ["*"], "dst": ["tag:ghost:443"]}]}).to_string();
    let resp = post_policy(&sim, &bad_ref, None).await;
    assert!(error_message(resp, 400).await.contains("tag:ghost"));
}

#[tokio::test]
async fn validate_answers_200_with_a_body_on_a_parse_error() {
    let sim = Sim::start().await;
    let resp = sim
        .post(&format!("{ACL}/validate"))
        .header("content-type", "application/hujson")
        .body("{\"acls\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = ok_json(resp).await;
    assert!(body["message"].as_str().unwrap().contains("line"), "{body}");
    assert_eq!(body["data"], json!([]));
}

#[tokio::test]
async fn validate_answers_200_with_a_body_when_the_policy_does_not_check_out() {
    let sim = Sim::start().await;
    let (_, etag_before) = get_policy(&sim).await;
    let bad = json!({"tagOwners": {"tag:x": ["group:missing"]}});
    let body = ok_json(
        sim.post(&format!("{ACL}/validate"))
            .json(&bad)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("group:missing"));
    // Validation never changes the policy.
    assert_eq!(get_policy(&sim).await.1, etag_before);
}

#[tokio::test]
async fn validate_answers_an_empty_object_for_a_good_policy() {
    let sim = Sim::start().await;
    let resp = sim
        .post(&format!("{ACL}/validate"))
        .header("content-type", "application/hujson")
        .body(small_policy("tag:a"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok_json(resp).await, json!({}));
}

#[tokio::test]
async fn failing_policy_tests_block_a_save_and_are_reported_by_validate() {
    let sim = Sim::start().await;
    let policy = json!({
        "groups": {"group:eng": ["carol@example.com"]},
        "tagOwners": {"tag:server": ["group:eng"]},
        "acls": [{"action": "accept", "src": ["group:eng"], "dst": ["tag:server:22"]}],
        "tests": [{"src": "carol@example.com", "accept": ["tag:server:443"]}],
    })
    .to_string();
    let (_, etag) = get_policy(&sim).await;
    let resp = post_policy(&sim, &policy, Some(&etag)).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(body["message"].is_string());
    assert_eq!(body["data"][0]["user"], "carol@example.com");
    assert!(!body["data"][0]["errors"].as_array().unwrap().is_empty());
    assert_eq!(
        get_policy(&sim).await.1,
        etag,
        "a failed save changes nothing"
    );

    let validated = ok_json(
        sim.post(&format!("{ACL}/validate"))
            .body(policy)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(validated["data"][0]["user"], "carol@example.com");
}

#[tokio::test]
async fn validate_runs_a_test_array_against_the_current_policy() {
    let sim = Sim::start().await;
    let validate = |tests: Value| sim.post(&format!("{ACL}/validate")).json(&tests).send();
    let passing = ok_json(
        validate(json!([{"src": "bob@example.com", "accept": ["db-primary:5432"]}]))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(passing, json!({}));
    let failing = ok_json(
        validate(json!([{"src": "carol@example.com", "accept": ["db-primary:5432"]}]))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(failing["data"][0]["user"], "carol@example.com");
}

// The seed policy's own tests pass against the seed.
#[tokio::test]
async fn the_seed_policy_tests_pass() {
    let sim = Sim::start().await;
    let doc = ok_json(
        sim.get(ACL)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let body = ok_json(
        sim.post(&format!("{ACL}/validate"))
            .json(&doc)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body, json!({}));
}

// Comments survive a round trip through the API.
#[tokio::test]
async fn commented_hujson_round_trips_byte_for_byte() {
    let sim = Sim::start().await;
    let (text, etag) = get_policy(&sim).await;
    let edited = text.replace(
        "\"tag:funnel\": [\"tag:k8s-operator\"],",
        "\"tag:funnel\": [\"tag:k8s-operator\"], // public ingress\n\t\t\"tag:web\": [\"group:eng\"],",
    );
    assert_ne!(edited, text);
    let resp = post_policy(&sim, &edited, Some(&etag)).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(get_policy(&sim).await.0, edited);
    // And the parsed form of the seed text is what Accept: application/json returns.
    let parsed = tailnet_operator::policy::hujson::parse_strict(&text).unwrap();
    let json_doc = ok_json(
        Sim::start()
            .await
            .get(ACL)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(parsed, json_doc);
}

#[tokio::test]
async fn preview_lists_the_acl_rules_that_apply() {
    let sim = Sim::start().await;
    let doc = ok_json(
        sim.get(ACL)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let candidate = serde_json::to_string_pretty(&doc).unwrap();
    let preview = |kind: &str, target: &str| {
        sim.post(&format!("{ACL}/preview"))
            .query(&[("type", kind), ("previewFor", target)])
            .header("content-type", "application/json")
            .body(candidate.clone())
            .send()
    };
    let carol = ok_json(preview("user", "carol@example.com").await.unwrap()).await;
    assert_eq!(carol["type"], "user");
    assert_eq!(carol["previewFor"], "carol@example.com");
    let matches = carol["matches"].as_array().unwrap();
    let users: Vec<&Value> = matches.iter().map(|m| &m["users"]).collect();
    assert_eq!(users, [&json!(["group:eng"]), &json!(["autogroup:member"])]);
    assert_eq!(
        matches[0]["ports"],
        json!(["tag:server:22,80,443", "tag:ci:*"])
    );
    let lines: Vec<u64> = matches
        .iter()
        .map(|m| m["lineNumber"].as_u64().unwrap())
        .collect();
    assert!(lines[0] > 1 && lines[1] > lines[0], "{lines:?}");
    let text_lines: Vec<&str> = candidate.lines().collect();
    assert!(text_lines[lines[0] as usize - 1].contains('{'));

    let db = ok_json(preview("ipport", "10.10.1.20:5432").await.unwrap()).await;
    let matches = db["matches"].as_array().unwrap();
    // SRE's corp-net:* and the security scanner's *:* cover the database.
    assert_eq!(matches.len(), 2, "{db}");
    assert_eq!(matches[0]["ports"], json!(["corp-net:*"]));
    assert_eq!(matches[1]["users"], json!(["tag:security-scanner"]));

    let bad = preview("host", "x").await.unwrap();
    error_message(bad, 400).await;
}

#[tokio::test]
async fn a_console_edit_changes_the_etag_so_the_next_write_gets_412() {
    let sim = Sim::start().await;
    let (_, etag) = get_policy(&sim).await;
    let new_etag = sim
        .tailnet()
        .console_set_policy(&small_policy("tag:console"))
        .unwrap();
    assert_ne!(new_etag, etag);
    let resp = post_policy(&sim, &small_policy("tag:mine"), Some(&etag)).await;
    assert_eq!(error_message(resp, 412).await, PRECONDITION_FAILED);
    let (text, current) = get_policy(&sim).await;
    assert_eq!(current, new_etag);
    assert_eq!(text, small_policy("tag:console"));
    // The console validates like the API.
    let err = sim
        .tailnet()
        .console_set_policy("{\"acls\": [")
        .unwrap_err();
    assert_eq!(err.status, 400);
}

#[tokio::test]
async fn the_admin_http_console_sets_the_policy_too() {
    let sim = Sim::start().await;
    let (_, etag) = get_policy(&sim).await;
    let resp = sim
        .admin(Method::POST, "/sim/console/policy")
        .body(small_policy("tag:http"))
        .send()
        .await
        .unwrap();
    let body = ok_json(resp).await;
    assert_ne!(body["etag"].as_str().unwrap(), etag);
    assert_eq!(get_policy(&sim).await.1, body["etag"].as_str().unwrap());
    // Admin routes are not API calls.
    assert_eq!(
        sim.tailnet()
            .calls()
            .get("GET /api/v2/tailnet/{tailnet}/acl"),
        2
    );
    assert_eq!(sim.tailnet().calls().total(), 2);
}

#[tokio::test]
async fn a_console_edit_after_the_next_save_follows_one_post_only() {
    let sim = Sim::start().await;
    let (_, etag) = get_policy(&sim).await;
    // An invalid edit is refused when armed, as the console would refuse it.
    let err = sim
        .tailnet()
        .console_edit_after_next_save("{\"acls\": [")
        .unwrap_err();
    assert_eq!(err.status, 400);
    sim.tailnet()
        .console_edit_after_next_save(small_policy("tag:console"))
        .unwrap();

    // The write succeeds and answers with what was posted ...
    let resp = post_policy(&sim, &small_policy("tag:mine"), Some(&etag)).await;
    assert_eq!(resp.status(), 200);
    let posted_etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(resp.text().await.unwrap(), small_policy("tag:mine"));
    // ... but the console saved right after it: a read-back sees the edit, with a new ETag.
    let (text, after_edit) = get_policy(&sim).await;
    assert_eq!(text, small_policy("tag:console"));
    assert_ne!(after_edit, posted_etag);
    assert_ne!(after_edit, etag);
    // The writer's ETag is stale now.
    let resp = post_policy(&sim, &small_policy("tag:again"), Some(&posted_etag)).await;
    assert_eq!(error_message(resp, 412).await, PRECONDITION_FAILED);

    // One-shot: the next save is not followed by another edit.
    let resp = post_policy(&sim, &small_policy("tag:again"), Some(&after_edit)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(get_policy(&sim).await.0, small_policy("tag:again"));
}

#[tokio::test]
async fn the_admin_http_console_arms_an_edit_after_the_next_save() {
    let sim = Sim::start().await;
    let resp = sim
        .admin(Method::POST, "/sim/console/policy-after-next-save")
        .body(small_policy("tag:http"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok_json(resp).await, json!({}));
    // Arming changes nothing yet.
    let (before, etag) = get_policy(&sim).await;
    assert_ne!(before, small_policy("tag:http"));
    let resp = post_policy(&sim, &small_policy("tag:mine"), Some(&etag)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(get_policy(&sim).await.0, small_policy("tag:http"));
}

#[tokio::test]
async fn service_grants_and_service_auto_approvers_are_accepted() {
    let sim = Sim::start().await;
    let doc = json!({
        "groups": {"group:eng": ["alice@example.com"]},
        "tagOwners": {"tag:monitoring": ["group:eng"]},
        "grants": [{"src": ["group:eng"], "dst": ["svc:grafana-eng"], "ip": ["tcp:443"]}],
        "autoApprovers": {"services": {"svc:grafana-eng": ["tag:monitoring"]}},
    })
    .to_string();
    let resp = post_policy(&sim, &doc, None).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let (stored, _) = get_policy(&sim).await;
    assert_eq!(stored, doc);
    // A service grant still needs its groups defined.
    let bad = json!({"grants": [{"src": ["group:nobody"], "dst": ["svc:x"], "ip": ["tcp:443"]}]})
        .to_string();
    let resp = post_policy(&sim, &bad, None).await;
    assert!(error_message(resp, 400).await.contains("group:nobody"));
}
