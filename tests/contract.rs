//! Contract tests: every response the simulated tailnet returns and every request body the API
//! client sends is validated against the operation's schema in Tailscale's OpenAPI document
//! (`../shared/reference/tailscale-openapi.json`, or `$TAILSCALE_OPENAPI`; JSON Schema 2020-12
//! with `$ref`s resolved; rules in `tests/support/openapi.rs`).
//!
//! - `client_requests_and_sim_responses_match_the_spec` drives every public
//!   [`TailscaleClient`] method (and a few error paths) against a recording sim, validates
//!   every recorded exchange, and checks that the operations exercised cover every operation
//!   the client implements.
//! - `sim_responses_for_endpoints_the_client_does_not_call_match_the_spec` drives the sim's
//!   other endpoints over raw HTTP (plus error paths, injected faults and two requests sent
//!   malformed on purpose) and validates them the same way.
//! - `the_contract_check_reports_broken_exchanges` proves the checks can fail: recorded
//!   exchanges broken in known ways are each reported.
//! - `without_the_spec_the_contract_tests_skip_and_say_why` runs the two contract tests in a
//!   child process with the document absent.
//!
//! Besides bodies (`tests/support/openapi.rs`), each exchange's query string is checked against
//! the operation's declared query parameters, and the sim's matched route must be the
//! operation the document matches. When the document is absent, the tests that need it print
//! why and return early (pass).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use support::openapi::{ContractError, OpenApiSpec, Validated, spec_path};
use tailnet_operator::secret::Secret;
use tailnet_operator::sim::{Exchange, FaultRule, SimConfig, SimServer, SimTailnet};
use tailnet_operator::tailscale::{
    ClientConfig, CreateAuthKeyRequest, CreateOAuthClientRequest, CreateWebhookRequest,
    Credentials, DeviceListOptions, DnsResolver, PreviewType, RetryPolicy, Service,
    TailnetSettingsPatch, TailscaleClient, ValidationOutcome,
};

/// Every public method of [`TailscaleClient`] that talks to the API, and the operation
/// (`"METHOD /templated/path"` of the OpenAPI document) it calls. Written out by hand on
/// purpose: a method added to the client without a line here (and a call in the test below)
/// fails `client_requests_and_sim_responses_match_the_spec`.
const CLIENT_OPERATIONS: &[(&str, &str)] = &[
    // devices
    ("list_devices", "GET /tailnet/{tailnet}/devices"),
    ("get_device", "GET /device/{deviceId}"),
    ("delete_device", "DELETE /device/{deviceId}"),
    ("set_device_tags", "POST /device/{deviceId}/tags"),
    (
        "set_device_authorized",
        "POST /device/{deviceId}/authorized",
    ),
    (
        "set_device_key_expiry_disabled",
        "POST /device/{deviceId}/key",
    ),
    ("get_device_routes", "GET /device/{deviceId}/routes"),
    ("set_device_routes", "POST /device/{deviceId}/routes"),
    ("expire_device_key", "POST /device/{deviceId}/expire"),
    // policy file
    ("get_policy", "GET /tailnet/{tailnet}/acl"),
    ("set_policy", "POST /tailnet/{tailnet}/acl"),
    ("validate_policy", "POST /tailnet/{tailnet}/acl/validate"),
    ("validate_tests", "POST /tailnet/{tailnet}/acl/validate"),
    ("preview_policy", "POST /tailnet/{tailnet}/acl/preview"),
    // DNS
    (
        "get_dns_configuration",
        "GET /tailnet/{tailnet}/dns/configuration",
    ),
    (
        "set_dns_configuration",
        "POST /tailnet/{tailnet}/dns/configuration",
    ),
    // keys
    ("list_keys", "GET /tailnet/{tailnet}/keys"),
    ("create_auth_key", "POST /tailnet/{tailnet}/keys"),
    ("create_oauth_client", "POST /tailnet/{tailnet}/keys"),
    ("get_key", "GET /tailnet/{tailnet}/keys/{keyId}"),
    ("delete_key", "DELETE /tailnet/{tailnet}/keys/{keyId}"),
    // services
    ("list_services", "GET /tailnet/{tailnet}/services"),
    (
        "get_service",
        "GET /tailnet/{tailnet}/services/{serviceName}",
    ),
    (
        "put_service",
        "PUT /tailnet/{tailnet}/services/{serviceName}",
    ),
    (
        "delete_service",
        "DELETE /tailnet/{tailnet}/services/{serviceName}",
    ),
    (
        "list_service_hosts",
        "GET /tailnet/{tailnet}/services/{serviceName}/devices",
    ),
    (
        "get_service_host_approval",
        "GET /tailnet/{tailnet}/services/{serviceName}/device/{deviceId}/approved",
    ),
    (
        "set_service_host_approval",
        "POST /tailnet/{tailnet}/services/{serviceName}/device/{deviceId}/approved",
    ),
    // settings
    ("get_settings", "GET /tailnet/{tailnet}/settings"),
    ("update_settings", "PATCH /tailnet/{tailnet}/settings"),
    // users
    ("list_users", "GET /tailnet/{tailnet}/users"),
    ("list_users_filtered", "GET /tailnet/{tailnet}/users"),
    ("get_user", "GET /users/{userId}"),
    // configuration audit log
    (
        "list_configuration_logs",
        "GET /tailnet/{tailnet}/logging/configuration",
    ),
    // webhooks
    ("list_webhooks", "GET /tailnet/{tailnet}/webhooks"),
    ("create_webhook", "POST /tailnet/{tailnet}/webhooks"),
    ("get_webhook", "GET /webhooks/{endpointId}"),
    (
        "update_webhook_subscriptions",
        "PATCH /webhooks/{endpointId}",
    ),
    ("delete_webhook", "DELETE /webhooks/{endpointId}"),
    ("test_webhook", "POST /webhooks/{endpointId}/test"),
    (
        "rotate_webhook_secret",
        "POST /webhooks/{endpointId}/rotate",
    ),
];

/// The sim's endpoints that `sim_responses_for_endpoints_the_client_does_not_call_match_the_spec`
/// must reach (besides operations the client also uses).
const RAW_ONLY_OPERATIONS: &[&str] = &[
    "POST /device/{deviceId}/name",
    "POST /device/{deviceId}/ip",
    "GET /tailnet/{tailnet}/dns/nameservers",
    "POST /tailnet/{tailnet}/dns/nameservers",
    "GET /tailnet/{tailnet}/dns/preferences",
    "POST /tailnet/{tailnet}/dns/preferences",
    "GET /tailnet/{tailnet}/dns/searchpaths",
    "POST /tailnet/{tailnet}/dns/searchpaths",
    "GET /tailnet/{tailnet}/dns/split-dns",
    "PATCH /tailnet/{tailnet}/dns/split-dns",
    "PUT /tailnet/{tailnet}/dns/split-dns",
    "PUT /tailnet/{tailnet}/keys/{keyId}",
];

/// A request body cut short: not JSON at all.
const TRUNCATED_JSON: &str = "{\"tags\": ";

/// Valid JSON of the wrong type for `POST /device/{deviceId}/authorized`.
fn wrong_type_body() -> Value {
    json!({"authorized": "yes"})
}

/// A demo user's login name (the sim's organisation domain is `example.com`).
const ALICE: &str = "alice@example.com";

// ----- helpers ------------------------------------------------------------------------------

/// The spec, or `None` after saying why this test is skipped.
fn spec_or_skip(test: &str) -> Option<&'static OpenApiSpec> {
    let spec = OpenApiSpec::shared();
    if spec.is_none() {
        eprintln!(
            "{test}: SKIPPED, nothing was validated: the Tailscale OpenAPI document is not at {} \
             (set TAILSCALE_OPENAPI to its path to run the contract checks)",
            spec_path().display()
        );
    }
    spec
}

async fn start_sim() -> SimServer {
    let server = SimServer::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the sim starts");
    server.tailnet().record_exchanges(true);
    server
}

fn node(sim: &SimTailnet, hostname: &str) -> String {
    sim.device_id(hostname)
        .unwrap_or_else(|| panic!("the demo tailnet has no device {hostname}"))
}

/// What validating a batch of exchanges found.
#[derive(Debug, Default)]
struct Report {
    exchanges: usize,
    /// Exchanges validated against an operation of the document.
    validated: usize,
    /// `"METHOD /templated/path"` of every operation validated.
    operations: BTreeSet<String>,
    /// Exchanges with paths the document does not describe on purpose (OAuth, `/sim/...`).
    outside_spec: Vec<String>,
    /// Violations the validator's `KNOWN_DEVIATIONS` excused, for the record.
    tolerated: Vec<String>,
    /// Requests sent malformed on purpose whose violations the validator reported.
    malformed_requests: usize,
    /// Everything that breaks the contract.
    violations: Vec<String>,
}

impl Report {
    /// Validates each exchange's request body against the request schema and its response
    /// against the response schema for its status.
    fn validate(spec: &OpenApiSpec, exchanges: &[Exchange]) -> Report {
        Report::validate_except(spec, exchanges, |_| false)
    }

    /// [`Report::validate`], where the requests `malformed` picks were sent broken on purpose:
    /// their bodies must be reported as violating the request schema (if they are not, that is
    /// the violation), and their responses are validated as usual.
    fn validate_except(
        spec: &OpenApiSpec,
        exchanges: &[Exchange],
        malformed: impl Fn(&Exchange) -> bool,
    ) -> Report {
        let mut report = Report {
            exchanges: exchanges.len(),
            ..Report::default()
        };
        for exchange in exchanges {
            report.check(spec, exchange, malformed(exchange));
        }
        report
    }

    fn check(&mut self, spec: &OpenApiSpec, ex: &Exchange, malformed_request: bool) {
        let label = match &ex.query {
            Some(query) => format!("{} {}?{query} -> {}", ex.method, ex.path, ex.status),
            None => format!("{} {} -> {}", ex.method, ex.path, ex.status),
        };
        if ex.status == 0 {
            self.violations.push(format!(
                "{label}: no response (connection dropped by a fault)"
            ));
            return;
        }
        let request = spec.validate_request_opt(
            &ex.method,
            &ex.path,
            ex.request_content_type.as_deref(),
            ex.request_body.as_ref(),
        );
        let response = spec.validate_response(
            &ex.method,
            &ex.path,
            ex.status,
            ex.response_content_type.as_deref(),
            ex.response_body.as_ref(),
        );
        if let Err(err) = &response {
            if err.is_outside_spec() {
                self.outside_spec.push(format!("{label}: {err}"));
                return;
            }
        }
        let request = match request {
            Err(ContractError::Violations { .. }) if malformed_request => {
                // Sent broken on purpose, and the validator saw it: check the response only.
                self.malformed_requests += 1;
                None
            }
            Ok(_) if malformed_request => {
                self.violations.push(format!(
                    "{label} [request] was sent malformed on purpose but passed validation"
                ));
                None
            }
            other => Some(other),
        };
        for v in query_violations(spec, ex) {
            self.violations.push(format!("{label} [query] {v}"));
        }
        let parts = request
            .map(|r| ("request", r))
            .into_iter()
            .chain([("response", response)]);
        for (part, result) in parts {
            match result {
                Ok(validated) => self.accept(&label, part, ex, validated),
                Err(ContractError::Violations { violations, .. }) => {
                    for v in violations {
                        self.violations.push(format!("{label} [{part}] {v}"));
                    }
                }
                Err(other) => self.violations.push(format!("{label} [{part}] {other}")),
            }
        }
        self.validated += 1;
    }

    fn accept(&mut self, label: &str, part: &str, ex: &Exchange, validated: Validated) {
        // The sim's router and the document must agree on which operation this is.
        let routed = format!("{} {}", ex.method, ex.route);
        if validated.operation != routed {
            self.violations.push(format!(
                "{label} [{part}] the sim routed this to {routed} but the document's operation \
                 is {}",
                validated.operation
            ));
        }
        for t in validated.tolerated {
            self.tolerated.push(format!(
                "{label} [{part}] {} (known deviation: {})",
                t.violation, t.deviation.reason
            ));
        }
        self.operations.insert(validated.operation);
    }

    /// Prints the summary and the skipped/tolerated exchanges; panics with every violation.
    fn finish(&self, test: &str) {
        for line in &self.outside_spec {
            println!("{test}: skipped (outside the spec): {line}");
        }
        for line in &self.tolerated {
            println!("{test}: tolerated: {line}");
        }
        println!(
            "{test}: {} exchanges, {} validated against {} operations, {} outside the spec \
             (skipped), {} malformed on purpose (caught), {} tolerated deviations, {} violations",
            self.exchanges,
            self.validated,
            self.operations.len(),
            self.outside_spec.len(),
            self.malformed_requests,
            self.tolerated.len(),
            self.violations.len()
        );
        assert!(
            self.violations.is_empty(),
            "{test}: {} contract violation(s):\n{}",
            self.violations.len(),
            self.violations
                .iter()
                .map(|v| format!("  - {v}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Query-string checks (the support validator checks bodies only): every parameter is
/// declared by the operation (or the operation takes `<field>=<value>` filters), its value fits
/// the declared schema's `enum` / `boolean` / `integer`, and required ones are present.
fn query_violations(spec: &OpenApiSpec, ex: &Exchange) -> Vec<String> {
    let Ok(found) = spec.find_operation(&ex.method, &ex.path) else {
        return Vec::new(); // reported by the body checks
    };
    fn at<'d>(doc: &'d Value, location: &str) -> Option<&'d Value> {
        doc.pointer(location.trim_start_matches('#'))
    }
    fn resolve<'d>(doc: &'d Value, mut node: &'d Value) -> &'d Value {
        for _ in 0..8 {
            match node
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| at(doc, r))
            {
                Some(target) => node = target,
                None => break,
            }
        }
        node
    }
    let doc = spec.document();
    let location = &found.operation.location;
    let path_item = location.rsplit_once('/').map_or("", |(item, _)| item);
    let declared: Vec<&Value> = [path_item, location.as_str()]
        .iter()
        .filter_map(|loc| at(doc, &format!("{loc}/parameters")).and_then(Value::as_array))
        .flatten()
        .map(|p| resolve(doc, p))
        .filter(|p| p["in"] == "query")
        .collect();
    let takes_filters = declared
        .iter()
        .any(|p| p["name"].as_str().is_some_and(|n| n.contains("<field>")));
    let pairs = ex.query.as_deref().map(parse_query).unwrap_or_default();
    let mut out = Vec::new();
    for (name, value) in &pairs {
        let Some(param) = declared.iter().find(|p| p["name"] == name.as_str()) else {
            if !takes_filters {
                out.push(format!("query parameter {name:?} is not declared"));
            }
            continue;
        };
        let schema = resolve(doc, &param["schema"]);
        let fits = match (
            schema.get("enum").and_then(Value::as_array),
            schema["type"].as_str(),
        ) {
            (Some(allowed), _) => allowed.iter().any(|a| a.as_str() == Some(value)),
            (None, Some("boolean")) => matches!(value.as_str(), "true" | "false"),
            (None, Some("integer")) => value.parse::<i64>().is_ok(),
            _ => true,
        };
        if !fits {
            out.push(format!(
                "query parameter {name}={value:?} does not fit its schema {schema}"
            ));
        }
    }
    for param in &declared {
        let name = param["name"].as_str().unwrap_or_default();
        if param["required"] == true && !pairs.iter().any(|(n, _)| n == name) {
            out.push(format!("required query parameter {name:?} is missing"));
        }
    }
    out
}

/// `a=1&b=x%3Ay` -> `[("a", "1"), ("b", "x:y")]` (form decoding, as the server does).
fn parse_query(query: &str) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://query.invalid/?{query}"))
        .expect("any query string fits a URL");
    url.query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// Calls client methods and remembers, per method name, which routes the sim saw for it.
struct Tracker<'s> {
    sim: &'s SimTailnet,
    routes: BTreeMap<&'static str, BTreeSet<String>>,
}

impl<'s> Tracker<'s> {
    fn new(sim: &'s SimTailnet) -> Self {
        Tracker {
            sim,
            routes: BTreeMap::new(),
        }
    }

    async fn call<F: Future>(&mut self, method: &'static str, call: F) -> F::Output {
        let before = self.sim.exchanges().len();
        let output = call.await;
        let seen = self.sim.exchanges()[before..]
            .iter()
            .map(|e| format!("{} {}", e.method, e.route))
            .collect::<Vec<_>>();
        self.routes.entry(method).or_default().extend(seen);
        output
    }
}

/// The names of every `pub async fn` in `src/tailscale/*.rs` outside `#[cfg(test)]` modules:
/// the client's API-calling methods.
fn client_methods_in_source() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tailscale");
    let mut methods = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("src/tailscale is readable") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_none_or(|ext| ext != "rs") || path.ends_with("http_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source is readable");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for line in code.lines() {
            if let Some(rest) = line.trim_start().strip_prefix("pub async fn ") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                methods.insert(name);
            }
        }
    }
    methods
}

// ----- test A: the client against the sim --------------------------------------------------

#[tokio::test]
async fn client_requests_and_sim_responses_match_the_spec() {
    const TEST: &str = "client_requests_and_sim_responses_match_the_spec";
    let Some(spec) = spec_or_skip(TEST) else {
        return;
    };
    let server = start_sim().await;
    let sim = server.tailnet().clone();
    let mut config = ClientConfig::new(
        server.base_url(),
        Credentials::ApiKey(Secret::new(sim.credentials().api_key.expose())),
    );
    // Nothing here is faulted; a retry would only hide a surprising status.
    config.retry = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let client = TailscaleClient::new(config).expect("client builds");
    let mut t = Tracker::new(&sim);

    // --- devices
    let web = node(&sim, "prod-web-1");
    let router = node(&sim, "subnet-router-1");
    let doomed = node(&sim, "ci-runner-2");
    let all = t
        .call(
            "list_devices",
            client.list_devices(&DeviceListOptions::default()),
        )
        .await
        .expect("list devices");
    assert!(all.len() > 10, "the demo tailnet has its devices");
    t.call(
        "list_devices",
        client.list_devices(&DeviceListOptions {
            all_fields: true,
            filters: vec![],
        }),
    )
    .await
    .expect("list devices with fields=all");
    let prod = t
        .call(
            "list_devices",
            client.list_devices(&DeviceListOptions {
                all_fields: false,
                filters: vec![("tags".into(), "tag:prod".into())],
            }),
        )
        .await
        .expect("list devices filtered by tag");
    assert!(!prod.is_empty() && prod.len() < all.len());
    t.call("get_device", client.get_device(&web, false))
        .await
        .expect("get device");
    t.call("get_device", client.get_device(&web, true))
        .await
        .expect("get device with fields=all");
    let missing = t
        .call("get_device", client.get_device("nNoSuchDeviceCNTRL", false))
        .await
        .expect_err("an unknown device is an error");
    assert_eq!(missing.status, Some(404), "{missing}");
    t.call(
        "set_device_tags",
        client.set_device_tags(&web, &["tag:server".into(), "tag:prod".into()]),
    )
    .await
    .expect("set tags");
    let bad_tags = t
        .call(
            "set_device_tags",
            client.set_device_tags(&web, &["tag:not-in-tag-owners".into()]),
        )
        .await
        .expect_err("a tag missing from tagOwners is refused");
    assert_eq!(bad_tags.status, Some(400), "{bad_tags}");
    t.call(
        "set_device_authorized",
        client.set_device_authorized(&web, true),
    )
    .await
    .expect("authorize");
    t.call(
        "set_device_key_expiry_disabled",
        client.set_device_key_expiry_disabled(&web, true),
    )
    .await
    .expect("disable key expiry");
    t.call("get_device_routes", client.get_device_routes(&router))
        .await
        .expect("get routes");
    t.call(
        "set_device_routes",
        client.set_device_routes(&router, &["10.10.0.0/16".into()]),
    )
    .await
    .expect("set routes");
    t.call("expire_device_key", client.expire_device_key(&web))
        .await
        .expect("expire key");
    t.call("delete_device", client.delete_device(&doomed))
        .await
        .expect("delete device");

    // --- policy file
    let policy = t
        .call("get_policy", client.get_policy())
        .await
        .expect("get policy");
    let edited = format!("// edited by the contract test\n{}", policy.hujson);
    let written = t
        .call("set_policy", client.set_policy(&edited, Some(&policy.etag)))
        .await
        .expect("set policy with the current ETag");
    assert_ne!(written.etag, policy.etag);
    let stale = t
        .call(
            "set_policy",
            client.set_policy(&policy.hujson, Some(&policy.etag)),
        )
        .await
        .expect_err("a stale ETag is refused");
    assert_eq!(stale.status, Some(412), "{stale}");
    // A policy whose own test fails: 400 with the failures in `data` when written...
    let failing = r#"{
        // alice may only use SSH on servers, but the test expects HTTPS too.
        "tagOwners": {"tag:server": ["alice@example.com"]},
        "acls": [{"action": "accept", "src": ["alice@example.com"], "dst": ["tag:server:22"]}],
        "tests": [{"src": "alice@example.com", "accept": ["tag:server:443"]}],
    }"#;
    let refused = t
        .call("set_policy", client.set_policy(failing, None))
        .await
        .expect_err("a policy with failing tests is refused");
    assert_eq!(refused.status, Some(400), "{refused}");
    // ...and 200 with a {message, data} body when only validated.
    let passed = t
        .call("validate_policy", client.validate_policy(&edited))
        .await
        .expect("validate a good policy");
    assert_eq!(passed, ValidationOutcome::Passed);
    let failed = t
        .call("validate_policy", client.validate_policy(failing))
        .await
        .expect("validate a failing policy");
    assert!(
        matches!(failed, ValidationOutcome::Failed { .. }),
        "{failed:?}"
    );
    let passed = t
        .call(
            "validate_tests",
            client.validate_tests(&json!([{"src": ALICE, "accept": ["tag:server:22"]}])),
        )
        .await
        .expect("run passing tests");
    assert_eq!(passed, ValidationOutcome::Passed);
    let failed = t
        .call(
            "validate_tests",
            client.validate_tests(
                &json!([{"src": "carol@example.com", "accept": ["tag:prod:5432"]}]),
            ),
        )
        .await
        .expect("run failing tests");
    assert!(
        matches!(failed, ValidationOutcome::Failed { .. }),
        "{failed:?}"
    );
    t.call(
        "preview_policy",
        client.preview_policy(&edited, PreviewType::User, ALICE),
    )
    .await
    .expect("preview for a user");
    let web_ip = sim.device(&web).expect("device")["addresses"][0]
        .as_str()
        .expect("an IPv4 address")
        .to_owned();
    t.call(
        "preview_policy",
        client.preview_policy(&edited, PreviewType::IpPort, &format!("{web_ip}:443")),
    )
    .await
    .expect("preview for a destination");

    // --- DNS
    let mut dns = t
        .call("get_dns_configuration", client.get_dns_configuration())
        .await
        .expect("get DNS");
    dns.nameservers.push(DnsResolver {
        address: "8.8.8.8".into(),
        use_with_exit_node: true,
    });
    dns.search_paths.push("example.net".into());
    t.call("set_dns_configuration", client.set_dns_configuration(&dns))
        .await
        .expect("set DNS");

    // --- keys
    t.call("list_keys", client.list_keys(false))
        .await
        .expect("list keys");
    t.call("list_keys", client.list_keys(true))
        .await
        .expect("list all keys");
    let created = t
        .call(
            "create_auth_key",
            client.create_auth_key(&CreateAuthKeyRequest {
                reusable: false,
                ephemeral: true,
                preauthorized: true,
                tags: vec!["tag:k8s".into()],
                expiry_seconds: Some(3600),
                description: Some("contract test".into()),
            }),
        )
        .await
        .expect("create an auth key");
    t.call("get_key", client.get_key(&created.key.id))
        .await
        .expect("get key");
    let oauth = t
        .call(
            "create_oauth_client",
            client.create_oauth_client(&CreateOAuthClientRequest {
                scopes: vec!["auth_keys".into()],
                tags: vec!["tag:k8s".into()],
                description: "contract test".into(),
            }),
        )
        .await
        .expect("create an OAuth client");
    assert_eq!(oauth.key.key_type, "client");
    t.call("delete_key", client.delete_key(&oauth.key.id))
        .await
        .expect("delete the OAuth client");
    t.call("delete_key", client.delete_key(&created.key.id))
        .await
        .expect("delete key");
    let missing = t
        .call("get_key", client.get_key("kNoSuchKeyCNTRL"))
        .await
        .expect_err("an unknown key is an error");
    assert_eq!(missing.status, Some(404), "{missing}");

    // --- services
    t.call("list_services", client.list_services())
        .await
        .expect("list services");
    let mut service = t
        .call(
            "put_service",
            client.put_service(&Service {
                name: "svc:contract".into(),
                comment: "created by the contract test".into(),
                ports: vec!["tcp:443".into()],
                tags: vec!["tag:k8s".into()],
                ..Service::default()
            }),
        )
        .await
        .expect("create a service");
    assert!(!service.addrs.is_empty(), "a new service gets addresses");
    service.comment = "updated by the contract test".into();
    t.call("put_service", client.put_service(&service))
        .await
        .expect("update a service with its addresses");
    t.call("get_service", client.get_service("svc:contract"))
        .await
        .expect("get service");
    let hosts = t
        .call(
            "list_service_hosts",
            client.list_service_hosts("svc:grafana"),
        )
        .await
        .expect("list hosts");
    let host = node(&sim, "ts-ingress-grafana");
    assert!(hosts.iter().any(|h| h.stable_node_id == host), "{hosts:?}");
    t.call(
        "get_service_host_approval",
        client.get_service_host_approval("svc:grafana", &host),
    )
    .await
    .expect("get approval");
    t.call(
        "set_service_host_approval",
        client.set_service_host_approval("svc:grafana", &host, true),
    )
    .await
    .expect("set approval");
    t.call("delete_service", client.delete_service("svc:contract"))
        .await
        .expect("delete service");

    // --- settings
    t.call("get_settings", client.get_settings())
        .await
        .expect("get settings");
    t.call(
        "update_settings",
        client.update_settings(&TailnetSettingsPatch {
            devices_approval_on: Some(false),
            https_enabled: Some(true),
            devices_key_duration_days: Some(90),
            ..TailnetSettingsPatch::default()
        }),
    )
    .await
    .expect("update settings");

    // --- users
    let users = t
        .call("list_users", client.list_users())
        .await
        .expect("list users");
    t.call(
        "list_users_filtered",
        client.list_users_filtered(Some("member"), Some("admin")),
    )
    .await
    .expect("list users filtered");
    let user = users.first().expect("the demo tailnet has users");
    t.call("get_user", client.get_user(&user.id))
        .await
        .expect("get user");

    // --- configuration audit log (the policy writes above were recorded)
    let now = chrono::Utc::now();
    let logs = t
        .call(
            "list_configuration_logs",
            client.list_configuration_logs(now - chrono::Duration::hours(1), now),
        )
        .await
        .expect("list configuration logs");
    assert!(
        logs.iter()
            .any(|e| e.target.property == "ACL" && e.origin == "CONFIG_API"),
        "{logs:?}"
    );

    // --- webhooks
    let hook = t
        .call(
            "create_webhook",
            client.create_webhook(&CreateWebhookRequest {
                endpoint_url: "https://hooks.example.com/contract".into(),
                provider_type: None,
                subscriptions: vec!["nodeCreated".into(), "policyUpdate".into()],
            }),
        )
        .await
        .expect("create a generic webhook");
    t.call(
        "create_webhook",
        client.create_webhook(&CreateWebhookRequest {
            endpoint_url: "https://hooks.slack.com/services/contract".into(),
            provider_type: Some("slack".into()),
            subscriptions: vec!["nodeDeleted".into()],
        }),
    )
    .await
    .expect("create a Slack webhook");
    let id = hook.webhook.endpoint_id.clone();
    t.call("list_webhooks", client.list_webhooks())
        .await
        .expect("list webhooks");
    let fetched = t
        .call("get_webhook", client.get_webhook(&id))
        .await
        .expect("get webhook");
    // The API answers `"providerType": ""` for a generic endpoint (a tolerated deviation of
    // the spec's enum, see tests/support/openapi.rs); the client reads it as "none".
    assert_eq!(hook.webhook.provider_type, None);
    assert_eq!(fetched.provider_type, None);
    t.call(
        "update_webhook_subscriptions",
        client.update_webhook_subscriptions(&id, &["nodeDeleted".into()]),
    )
    .await
    .expect("update webhook");
    t.call("test_webhook", client.test_webhook(&id))
        .await
        .expect("test webhook");
    t.call("rotate_webhook_secret", client.rotate_webhook_secret(&id))
        .await
        .expect("rotate webhook secret");
    t.call("delete_webhook", client.delete_webhook(&id))
        .await
        .expect("delete webhook");

    // --- the calls went where the table says, and the table is the whole client
    let in_source = client_methods_in_source();
    let in_table: BTreeSet<String> = CLIENT_OPERATIONS
        .iter()
        .map(|(m, _)| (*m).to_owned())
        .collect();
    assert_eq!(
        in_source, in_table,
        "CLIENT_OPERATIONS must list exactly the client's `pub async fn`s (left: in \
         src/tailscale, right: in the table); add contract coverage for new methods"
    );
    let called: BTreeSet<String> = t.routes.keys().map(|m| (*m).to_owned()).collect();
    assert_eq!(
        called, in_table,
        "every client method is called at least once"
    );
    for (method, operation) in CLIENT_OPERATIONS {
        let seen = &t.routes[method];
        assert_eq!(
            seen,
            &BTreeSet::from([(*operation).to_owned()]),
            "{method} should call exactly {operation}"
        );
    }

    // --- the contract
    let report = Report::validate(spec, &sim.exchanges());
    let expected: BTreeSet<String> = CLIENT_OPERATIONS
        .iter()
        .map(|(_, op)| (*op).to_owned())
        .collect();
    let uncovered: Vec<&String> = expected.difference(&report.operations).collect();
    report.finish(TEST);
    assert!(
        uncovered.is_empty(),
        "client operations with no validated exchange: {uncovered:?}"
    );
    println!(
        "{TEST}: {} exchanges, {} operations validated (the client implements {})",
        report.exchanges,
        report.operations.len(),
        expected.len()
    );
}

// ----- test B: the sim's other endpoints over raw HTTP -------------------------------------

/// An authenticated raw-HTTP view of the sim.
struct Raw {
    http: reqwest::Client,
    base: String,
    api_key: String,
}

impl Raw {
    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/api/v2{path}", self.base))
            .bearer_auth(&self.api_key)
    }

    /// Sends the request and returns the status and the body text.
    async fn send(&self, request: RequestBuilder) -> (StatusCode, String) {
        let response = request.send().await.expect("the sim answers");
        let status = response.status();
        (status, response.text().await.expect("a readable body"))
    }

    async fn expect(&self, status: u16, request: RequestBuilder) -> String {
        let (actual, body) = self.send(request).await;
        assert_eq!(actual.as_u16(), status, "unexpected status, body: {body}");
        body
    }

    async fn json(&self, method: Method, path: &str, body: Value) -> String {
        self.expect(200, self.req(method, path).json(&body)).await
    }
}

#[tokio::test]
async fn sim_responses_for_endpoints_the_client_does_not_call_match_the_spec() {
    const TEST: &str = "sim_responses_for_endpoints_the_client_does_not_call_match_the_spec";
    let Some(spec) = spec_or_skip(TEST) else {
        return;
    };
    let server = start_sim().await;
    let sim = server.tailnet().clone();
    let raw = Raw {
        http: reqwest::Client::new(),
        base: server.base_url(),
        api_key: sim.credentials().api_key.expose().to_owned(),
    };
    let web = node(&sim, "prod-web-1");

    // Devices: rename, readdress, the explicit default field set, a boolean filter.
    raw.json(
        Method::POST,
        &format!("/device/{web}/name"),
        json!({"name": "prod-web-one"}),
    )
    .await;
    raw.json(
        Method::POST,
        &format!("/device/{web}/ip"),
        json!({"ipv4": "100.64.99.1"}),
    )
    .await;
    raw.expect(
        200,
        raw.req(
            Method::GET,
            "/tailnet/-/devices?fields=default&isEphemeral=true",
        ),
    )
    .await;
    raw.expect(200, raw.req(Method::GET, &format!("/device/{web}/routes")))
        .await;

    // DNS through the per-part endpoints.
    raw.expect(200, raw.req(Method::GET, "/tailnet/-/dns/nameservers"))
        .await;
    raw.json(
        Method::POST,
        "/tailnet/-/dns/nameservers",
        json!({"dns": ["1.1.1.1", "8.8.8.8"]}),
    )
    .await;
    raw.expect(200, raw.req(Method::GET, "/tailnet/-/dns/preferences"))
        .await;
    raw.json(
        Method::POST,
        "/tailnet/-/dns/preferences",
        json!({"magicDNS": true}),
    )
    .await;
    raw.expect(200, raw.req(Method::GET, "/tailnet/-/dns/searchpaths"))
        .await;
    raw.json(
        Method::POST,
        "/tailnet/-/dns/searchpaths",
        json!({"searchPaths": ["corp.example.com", "example.net"]}),
    )
    .await;
    raw.expect(200, raw.req(Method::GET, "/tailnet/-/dns/split-dns"))
        .await;
    raw.json(
        Method::PATCH,
        "/tailnet/-/dns/split-dns",
        json!({"lab.example.com": ["10.30.0.53"], "svc.cluster.local": null}),
    )
    .await;
    raw.json(
        Method::PUT,
        "/tailnet/-/dns/split-dns",
        json!({"corp.example.com": ["10.10.0.53", "10.10.0.54"]}),
    )
    .await;

    // The policy file as JSON, with details, written as JSON, validated and previewed as
    // JSON objects.
    raw.expect(
        200,
        raw.req(Method::GET, "/tailnet/-/acl")
            .header(ACCEPT, "application/json"),
    )
    .await;
    let details = raw
        .expect(200, raw.req(Method::GET, "/tailnet/-/acl?details=true"))
        .await;
    let details: Value = serde_json::from_str(&details).expect("details are JSON");
    assert!(details["acl"].is_string(), "{details}");
    let (_, etag) = sim.policy();
    let policy = json!({
        "tagOwners": {"tag:server": [ALICE], "tag:prod": [ALICE], "tag:k8s": [ALICE],
                      "tag:k8s-operator": [ALICE], "tag:ci": [ALICE],
                      "tag:subnet-router": [ALICE], "tag:exit-node": [ALICE],
                      "tag:funnel": [ALICE], "tag:monitoring": [ALICE],
                      "tag:security-scanner": [ALICE]},
        "acls": [{"action": "accept", "src": [ALICE], "dst": ["tag:server:22"]}],
        "tests": [{"src": ALICE, "accept": ["tag:server:22"]}],
    });
    raw.expect(
        200,
        raw.req(Method::POST, "/tailnet/-/acl")
            .header(ACCEPT, "application/json")
            .header("If-Match", etag)
            .json(&policy),
    )
    .await;
    raw.json(Method::POST, "/tailnet/-/acl/validate", policy.clone())
        .await;
    let failing = raw
        .json(
            Method::POST,
            "/tailnet/-/acl/validate",
            json!([{"src": ALICE, "accept": ["tag:server:443"]}]),
        )
        .await;
    assert!(failing.contains("message"), "{failing}");
    raw.expect(
        200,
        raw.req(
            Method::POST,
            &format!("/tailnet/-/acl/preview?type=user&previewFor={ALICE}"),
        )
        .json(&policy),
    )
    .await;

    // Users with filters, one at a time.
    for query in ["type=member", "type=shared", "type=all", "role=admin"] {
        raw.expect(
            200,
            raw.req(Method::GET, &format!("/tailnet/-/users?{query}")),
        )
        .await;
    }

    // Keys: OAuth clients can be created and updated (auth keys only created).
    let created = raw
        .json(
            Method::POST,
            "/tailnet/-/keys",
            json!({"keyType": "client", "description": "contract client",
                   "scopes": ["devices:core", "auth_keys"], "tags": ["tag:k8s"]}),
        )
        .await;
    let created: Value = serde_json::from_str(&created).expect("the key is JSON");
    let key_id = created["id"].as_str().expect("the key has an id");
    raw.json(
        Method::PUT,
        &format!("/tailnet/-/keys/{key_id}"),
        json!({"keyType": "client", "description": "contract client v2",
               "scopes": ["all:read"], "tags": []}),
    )
    .await;
    raw.expect(200, raw.req(Method::GET, "/tailnet/-/keys?all=true"))
        .await;

    raw.json(
        Method::POST,
        "/tailnet/-/keys",
        json!({"keyType": "federated", "description": "contract federated",
               "scopes": ["devices:core:read"],
               "issuer": "https://token.actions.githubusercontent.com",
               "subject": "repo:example/tailnet:*",
               "customClaimRules": {"repository_owner": "example"}}),
    )
    .await;

    // Error paths the client does not produce: no credentials, unknown objects, malformed
    // bodies (sent broken on purpose: the validator must flag the request, and the sim's 400
    // is still checked), and the sim's injected faults.
    raw.expect(
        401,
        raw.http
            .get(format!("{}/api/v2/tailnet/-/devices", raw.base)),
    )
    .await;
    raw.expect(404, raw.req(Method::DELETE, "/device/nNoSuchDeviceCNTRL"))
        .await;
    raw.expect(404, raw.req(Method::GET, "/webhooks/noSuchWebhook"))
        .await;
    raw.expect(
        400,
        raw.req(Method::POST, &format!("/device/{web}/tags"))
            .header(CONTENT_TYPE, "application/json")
            .body(TRUNCATED_JSON),
    )
    .await;
    raw.expect(
        400,
        raw.req(Method::POST, &format!("/device/{web}/authorized"))
            .json(&wrong_type_body()),
    )
    .await;
    sim.set_fault(
        FaultRule::route("GET /api/v2/tailnet/{tailnet}/settings")
            .rate_limited(7)
            .times(1),
    );
    raw.expect(429, raw.req(Method::GET, "/tailnet/-/settings"))
        .await;
    sim.set_fault(
        FaultRule::route("GET /api/v2/tailnet/{tailnet}/users")
            .server_error(503)
            .times(1),
    );
    raw.expect(503, raw.req(Method::GET, "/tailnet/-/users"))
        .await;

    // The OAuth token endpoint is not in the document: skipped, but counted.
    let credentials = sim.credentials();
    raw.expect(
        200,
        raw.http
            .post(format!("{}/api/v2/oauth/token", raw.base))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", credentials.oauth_client_id.as_str()),
                ("client_secret", credentials.oauth_client_secret.expose()),
            ]),
    )
    .await;

    let malformed = |ex: &Exchange| {
        ex.request_body.as_ref() == Some(&Value::String(TRUNCATED_JSON.into()))
            || ex.request_body.as_ref() == Some(&wrong_type_body())
    };
    let report = Report::validate_except(spec, &sim.exchanges(), malformed);
    let missing: Vec<&&str> = RAW_ONLY_OPERATIONS
        .iter()
        .filter(|op| !report.operations.contains(**op))
        .collect();
    assert_eq!(
        report.malformed_requests, 2,
        "both malformed requests reach the sim and are flagged"
    );
    assert_eq!(
        report.outside_spec.len(),
        1,
        "only the OAuth token exchange is outside the spec: {:?}",
        report.outside_spec
    );
    report.finish(TEST);
    assert!(
        missing.is_empty(),
        "sim endpoints with no validated exchange: {missing:?}"
    );
}

// ----- the harness itself -------------------------------------------------------------------

/// The checks above can fail: exchanges recorded from the sim and then broken in known ways
/// are each reported, at the right place; the untouched ones are not.
#[tokio::test]
async fn the_contract_check_reports_broken_exchanges() {
    const TEST: &str = "the_contract_check_reports_broken_exchanges";
    let Some(spec) = spec_or_skip(TEST) else {
        return;
    };
    let server = start_sim().await;
    let sim = server.tailnet().clone();
    let raw = Raw {
        http: reqwest::Client::new(),
        base: server.base_url(),
        api_key: sim.credentials().api_key.expose().to_owned(),
    };
    let web = node(&sim, "prod-web-1");
    raw.expect(200, raw.req(Method::GET, "/tailnet/-/devices"))
        .await;
    raw.expect(200, raw.req(Method::GET, "/tailnet/-/settings"))
        .await;
    raw.json(
        Method::POST,
        &format!("/device/{web}/tags"),
        json!({"tags": ["tag:server"]}),
    )
    .await;
    let recorded = sim.exchanges();
    assert_eq!(recorded.len(), 3);
    let clean = Report::validate(spec, &recorded);
    assert!(clean.violations.is_empty(), "{:?}", clean.violations);
    assert_eq!(clean.validated, 3);

    let (devices, settings, tags) = (&recorded[0], &recorded[1], &recorded[2]);
    let broken = |ex: &Exchange, edit: &dyn Fn(&mut Exchange)| {
        let mut ex = ex.clone();
        edit(&mut ex);
        Report::validate(spec, &[ex]).violations
    };
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "a response field of the wrong type",
            broken(devices, &|ex| {
                ex.response_body.as_mut().unwrap()["devices"][0]["authorized"] = json!("yes");
            }),
            "[response] at \"/devices/0/authorized\"",
        ),
        (
            "a response field the spec does not declare",
            broken(settings, &|ex| {
                ex.response_body.as_mut().unwrap()["devicesApprovalOnn"] = json!(true);
            }),
            "undeclaredProperty",
        ),
        (
            "a request body of the wrong shape",
            broken(tags, &|ex| {
                ex.request_body = Some(json!({"tags": "tag:server"}))
            }),
            "[request] at \"/tags\"",
        ),
        (
            "a status the operation does not declare",
            broken(settings, &|ex| ex.status = 201),
            "status 201 is not declared",
        ),
        (
            "a sim route that disagrees with the document",
            broken(tags, &|ex| ex.route = "/device/{deviceId}/key".into()),
            "the sim routed this to POST /device/{deviceId}/key",
        ),
        (
            "a query value outside the parameter's enum",
            broken(devices, &|ex| ex.query = Some("fields=everything".into())),
            "[query] query parameter fields=\"everything\" does not fit",
        ),
        (
            "a query parameter the operation does not declare",
            broken(settings, &|ex| ex.query = Some("verbose=true".into())),
            "[query] query parameter \"verbose\" is not declared",
        ),
        (
            "a dropped connection",
            broken(devices, &|ex| ex.status = 0),
            "no response",
        ),
    ];
    for (what, violations, expected) in cases {
        assert!(
            violations.iter().any(|v| v.contains(expected)),
            "{what}: expected a violation containing {expected:?}, got {violations:?}"
        );
    }
}

/// Without the document, the contract tests pass without validating anything, and say so.
#[test]
fn without_the_spec_the_contract_tests_skip_and_say_why() {
    let absent = std::env::temp_dir().join("tailnet-operator-contract-no-such-openapi.json");
    assert!(!absent.exists());
    for test in [
        "client_requests_and_sim_responses_match_the_spec",
        "sim_responses_for_endpoints_the_client_does_not_call_match_the_spec",
    ] {
        // In a child process: tests must not change their own environment.
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture"])
            .env(support::openapi::SPEC_ENV, &absent)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{test}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{test} did not run:\n{stdout}");
        assert!(
            stderr.contains(&format!("{test}: SKIPPED, nothing was validated"))
                && stderr.contains(&absent.display().to_string()),
            "{test}: no skip message in:\n{stderr}"
        );
        assert!(
            !stdout.contains(" exchanges, "),
            "{test} validated without a spec:\n{stdout}"
        );
    }
}
