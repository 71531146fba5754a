//! Fault injection, the call counter, the exchange log and the admin HTTP routes.
mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use support::sim::{Sim, error_message, ok_json};
use tailnet_operator::sim::FaultRule;

const DEVICES: &str = "GET /api/v2/tailnet/{tailnet}/devices";

#[tokio::test]
async fn rate_limit_faults_answer_429_with_retry_after_for_the_next_n_calls() {
    let sim = Sim::start().await;
    sim.tailnet()
        .set_fault(FaultRule::route(DEVICES).rate_limited(7).times(2));
    for _ in 0..2 {
        let resp = sim.get("/tailnet/-/devices").send().await.unwrap();
        assert_eq!(resp.headers()["retry-after"], "7");
        assert!(error_message(resp, 429).await.contains("rate limit"));
    }
    assert_eq!(
        sim.get("/tailnet/-/devices").send().await.unwrap().status(),
        200
    );
    assert!(sim.tailnet().faults().is_empty());
    assert_eq!(sim.tailnet().calls().get(DEVICES), 3);
}

#[tokio::test]
async fn route_faults_leave_other_routes_alone() {
    let sim = Sim::start().await;
    sim.tailnet()
        .set_fault(FaultRule::route(DEVICES).server_error(500));
    assert_eq!(
        sim.get("/tailnet/-/acl").send().await.unwrap().status(),
        200
    );
    let resp = sim.get("/tailnet/-/devices").send().await.unwrap();
    error_message(resp, 500).await;
    sim.tailnet().clear_faults();
    assert_eq!(
        sim.get("/tailnet/-/devices").send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn global_server_error_faults_hit_every_api_route_including_the_token_endpoint() {
    let sim = Sim::start().await;
    sim.tailnet()
        .set_fault(FaultRule::all().server_error(503).times(3));
    error_message(sim.get("/tailnet/-/devices").send().await.unwrap(), 503).await;
    error_message(
        sim.get("/tailnet/-/dns/configuration")
            .send()
            .await
            .unwrap(),
        503,
    )
    .await;
    let token = sim
        .post("/oauth/token")
        .form(&[("client_id", "x")])
        .send()
        .await
        .unwrap();
    error_message(token, 503).await;
    assert_eq!(
        sim.get("/tailnet/-/devices").send().await.unwrap().status(),
        200
    );
    // Admin routes are never faulted.
    sim.tailnet().set_fault(FaultRule::all().server_error(503));
    let admin = sim.admin(Method::GET, "/sim/calls").send().await.unwrap();
    assert_eq!(admin.status(), 200);
}

#[tokio::test]
async fn dropped_connections_surface_as_client_errors() {
    let sim = Sim::start().await;
    // Warm the client's connection pool first: the drop must also work on a reused connection.
    assert_eq!(
        sim.get("/tailnet/-/devices").send().await.unwrap().status(),
        200
    );
    sim.tailnet().record_exchanges(true);
    sim.tailnet()
        .set_fault(FaultRule::route(DEVICES).dropped().times(1));
    let err = sim
        .get("/tailnet/-/devices")
        .send()
        .await
        .expect_err("the connection is closed without a response");
    assert!(!err.is_status(), "{err:?}");
    assert!(err.status().is_none());
    // The next call goes through on a fresh connection.
    assert_eq!(
        sim.get("/tailnet/-/devices").send().await.unwrap().status(),
        200
    );
    let exchanges = sim.tailnet().exchanges();
    assert_eq!(exchanges.len(), 2);
    assert_eq!(exchanges[0].status, 0, "a dropped exchange has no status");
    assert_eq!(exchanges[1].status, 200);
    assert_eq!(sim.tailnet().calls().get(DEVICES), 3);
}

#[tokio::test]
async fn latency_faults_delay_the_answer() {
    let sim = Sim::start().await;
    let latency = Duration::from_millis(150);
    sim.tailnet()
        .set_fault(FaultRule::route(DEVICES).with_latency(latency).times(1));
    let start = Instant::now();
    assert_eq!(
        sim.get("/tailnet/-/devices").send().await.unwrap().status(),
        200
    );
    assert!(start.elapsed() >= latency);
}

#[tokio::test]
async fn faults_can_be_set_and_cleared_over_admin_http() {
    let sim = Sim::start().await;
    let set = sim
        .admin(Method::PUT, "/sim/faults")
        .json(&json!({"route": DEVICES, "rateLimitRate": 1.0, "retryAfterSecs": 2, "remaining": 1}))
        .send()
        .await
        .unwrap();
    let rules = ok_json(set).await;
    assert_eq!(rules[0]["remaining"], 1);
    let limited = sim.get("/tailnet/-/devices").send().await.unwrap();
    assert_eq!(limited.headers()["retry-after"], "2");
    error_message(limited, 429).await;

    sim.admin(Method::PUT, "/sim/faults")
        .json(&json!([{"serverErrorRate": 1.0, "serverErrorStatus": 502}]))
        .send()
        .await
        .unwrap();
    error_message(sim.get("/tailnet/-/acl").send().await.unwrap(), 502).await;
    let cleared = sim
        .admin(Method::DELETE, "/sim/faults")
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 200);
    assert_eq!(
        sim.get("/tailnet/-/acl").send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn calls_are_counted_per_templated_route() {
    let sim = Sim::start().await;
    let alice = sim.node("alice-mbp");
    let bob = sim.node("bob-thinkpad");
    sim.get(&format!("/device/{alice}")).send().await.unwrap();
    sim.get(&format!("/device/{bob}")).send().await.unwrap();
    sim.get("/tailnet/-/devices").send().await.unwrap();
    sim.post(&format!("/device/{bob}/tags"))
        .json(&json!({"tags": ["tag:server"]}))
        .send()
        .await
        .unwrap();
    let calls = sim.tailnet().calls();
    assert_eq!(calls.get("GET /api/v2/device/{deviceId}"), 2);
    assert_eq!(calls.get(DEVICES), 1);
    assert_eq!(calls.get("POST /api/v2/device/{deviceId}/tags"), 1);
    assert_eq!(calls.total(), 4);
    assert_eq!(calls.total_for_method("POST"), 1);

    let over_http = ok_json(sim.admin(Method::GET, "/sim/calls").send().await.unwrap()).await;
    assert_eq!(over_http["total"], 4);
    assert_eq!(over_http["calls"]["GET /api/v2/device/{deviceId}"], 2);
    sim.admin(Method::POST, "/sim/calls/reset")
        .send()
        .await
        .unwrap();
    assert_eq!(sim.tailnet().calls().total(), 0);
    sim.tailnet().reset_calls();
}

#[tokio::test]
async fn the_exchange_log_records_templated_routes_bodies_and_content_types() {
    let sim = Sim::start().await;
    sim.get("/tailnet/-/devices").send().await.unwrap();
    assert!(sim.tailnet().exchanges().is_empty(), "off by default");

    let recording = sim
        .admin(Method::PUT, "/sim/exchanges/recording")
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(recording.status(), 200);
    let node = sim.node("staging-web-1");
    sim.post(&format!("/device/{node}/tags"))
        .json(&json!({"tags": ["tag:prod"]}))
        .send()
        .await
        .unwrap();
    sim.get("/tailnet/-/acl").send().await.unwrap();
    let key = ok_json(
        sim.post("/tailnet/-/keys")
            .json(&json!({"capabilities": {"devices": {}}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let exchanges = sim.tailnet().exchanges();
    assert_eq!(exchanges.len(), 3);

    let tags = &exchanges[0];
    assert_eq!(tags.method, "POST");
    assert_eq!(tags.path, format!("/api/v2/device/{node}/tags"));
    assert_eq!(tags.route, "/device/{deviceId}/tags");
    assert_eq!(tags.status, 200);
    assert_eq!(tags.request_body, Some(json!({"tags": ["tag:prod"]})));
    assert_eq!(tags.response_body, None);
    assert_eq!(
        tags.request_content_type.as_deref(),
        Some("application/json")
    );

    let acl = &exchanges[1];
    assert_eq!(acl.route, "/tailnet/{tailnet}/acl");
    assert_eq!(
        acl.response_content_type.as_deref(),
        Some("application/hujson")
    );
    assert!(acl.response_body.as_ref().unwrap().is_string());

    // The auth-key secret never lands in the log.
    let created = &exchanges[2];
    assert_eq!(created.response_body.as_ref().unwrap()["key"], "[redacted]");
    assert_ne!(key["key"], "[redacted]");

    let over_http = ok_json(
        sim.admin(Method::GET, "/sim/exchanges")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(over_http.as_array().unwrap().len(), 3);
    assert_eq!(over_http[0]["route"], "/device/{deviceId}/tags");
    sim.admin(Method::DELETE, "/sim/exchanges")
        .send()
        .await
        .unwrap();
    assert!(sim.tailnet().exchanges().is_empty());
}

#[tokio::test]
async fn admin_routes_need_the_api_key() {
    let sim = Sim::start().await;
    let url = format!("{}/sim/calls", sim.server.base_url());
    let anonymous = sim.http.get(&url).send().await.unwrap();
    error_message(anonymous, 401).await;
    let node = sim.node("carol-xps");
    let resp = sim
        .http
        .post(format!(
            "{}/sim/console/devices/{node}/tags",
            sim.server.base_url()
        ))
        .bearer_auth("tskey-api-wrong")
        .json(&json!({"tags": ["tag:server"]}))
        .send()
        .await
        .unwrap();
    error_message(resp, 401).await;
}

#[tokio::test]
async fn console_device_edits_show_up_in_the_api() {
    let sim = Sim::start().await;
    let tailnet = sim.tailnet();
    let node = sim.node("carol-xps");
    tailnet.console_set_device_tags(&node, ["tag:ci"]).unwrap();
    assert_eq!(
        sim.get_json(&format!("/device/{node}")).await["tags"],
        json!(["tag:ci"])
    );
    let err = tailnet
        .console_set_device_tags(&node, ["tag:undefined"])
        .unwrap_err();
    assert_eq!(err.status, 400);

    tailnet.console_set_authorized(&node, false).unwrap();
    assert_eq!(
        sim.get_json(&format!("/device/{node}")).await["authorized"],
        false
    );

    // Over HTTP as well.
    let resp = sim
        .admin(Method::POST, &format!("/sim/console/devices/{node}/tags"))
        .json(&json!({"tags": ["tag:server", "tag:prod"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        sim.get_json(&format!("/device/{node}")).await["tags"],
        json!(["tag:server", "tag:prod"])
    );
    let routes = sim
        .admin(Method::POST, &format!("/sim/console/devices/{node}/routes"))
        .json(&json!({"routes": ["10.50.0.0/16"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(routes.status(), 200);
    let device = sim.get_json(&format!("/device/{node}/routes")).await;
    assert_eq!(device["enabledRoutes"], json!(["10.50.0.0/16"]));
}

#[tokio::test]
async fn advertising_routes_enables_those_the_policy_auto_approves() {
    let sim = Sim::start().await;
    let tailnet = sim.tailnet();
    let router = sim.node("subnet-router-1");
    tailnet
        .console_set_device_routes(&router, Vec::<String>::new())
        .unwrap();
    tailnet
        .console_advertise_routes(&router, ["10.10.5.0/24", "172.16.0.0/12"])
        .unwrap();
    let routes = sim.get_json(&format!("/device/{router}/routes")).await;
    assert_eq!(
        routes["advertisedRoutes"],
        json!(["10.10.5.0/24", "172.16.0.0/12"])
    );
    // 10.10.5.0/24 is inside the auto-approved 10.10.0.0/16 for tag:subnet-router.
    assert_eq!(routes["enabledRoutes"], json!(["10.10.5.0/24"]));

    let laptop = sim.node("alice-mbp");
    tailnet
        .console_advertise_routes(&laptop, ["0.0.0.0/0", "::/0"])
        .unwrap();
    let routes = sim.get_json(&format!("/device/{laptop}/routes")).await;
    assert_eq!(
        routes["enabledRoutes"],
        json!([]),
        "exit nodes auto-approve for tag:exit-node only"
    );
}

#[tokio::test]
async fn console_added_devices_appear_and_console_dns_replaces_the_configuration() {
    let sim = Sim::start().await;
    let tailnet = sim.tailnet();
    let before = tailnet.device_count();
    let resp = sim
        .admin(Method::POST, "/sim/console/devices")
        .json(&json!({"hostname": "new-box", "os": "windows", "user": "carol@example.com"}))
        .send()
        .await
        .unwrap();
    let node = ok_json(resp).await["nodeId"].as_str().unwrap().to_owned();
    assert_eq!(tailnet.device_count(), before + 1);
    let device = sim.get_json(&format!("/device/{node}")).await;
    assert_eq!(device["hostname"], "new-box");
    assert_eq!(device["os"], "windows");
    // The demo tailnet requires device approval.
    assert_eq!(device["authorized"], false);

    let dns = sim
        .admin(Method::POST, "/sim/console/dns")
        .json(&json!({"nameservers": [{"address": "8.8.4.4"}], "preferences": {"magicDNS": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(dns.status(), 200);
    let config = sim.get_json("/tailnet/-/dns/configuration").await;
    assert_eq!(config["nameservers"][0]["address"], "8.8.4.4");
    assert_eq!(config["preferences"]["magicDNS"], true);
    assert_eq!(tailnet.dns().nameservers[0].address, "8.8.4.4");
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let sim = Sim::start().await;
    let url = sim.url("/tailnet/-/devices");
    let key = sim.api_key.clone();
    let http = sim.http.clone();
    sim.server.shutdown().await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(&url).bearer_auth(&key).send().await.is_err());
    drop(http);
}
