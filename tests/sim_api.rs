//! The simulated tailnet's API over real HTTP: auth, devices, keys, services, DNS, settings,
//! users, webhooks.
mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use support::sim::{Sim, error_message, ok_json};
use tailnet_operator::sim::SimConfig;

// ----- auth ---------------------------------------------------------------------------------

#[tokio::test]
async fn requests_without_valid_credentials_get_401_with_a_message() {
    let sim = Sim::start().await;
    let url = sim.url("/tailnet/-/devices");
    let none = sim.http.get(&url).send().await.unwrap();
    assert!(error_message(none, 401).await.contains("required"));
    let wrong = sim
        .http
        .get(&url)
        .bearer_auth("tskey-api-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(error_message(wrong, 401).await, "API token invalid");
    // A 401 is still an API call.
    assert_eq!(
        sim.tailnet()
            .calls()
            .get("GET /api/v2/tailnet/{tailnet}/devices"),
        2
    );
}

#[tokio::test]
async fn the_api_key_works_as_bearer_or_as_basic_username() {
    let sim = Sim::start().await;
    let url = sim.url("/tailnet/-/devices");
    let basic = sim
        .http
        .get(&url)
        .basic_auth(&sim.api_key, Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
    let bearer = sim
        .http
        .get(&url)
        .bearer_auth(&sim.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
}

#[tokio::test]
async fn tailnet_parameter_accepts_dash_and_the_tailnet_id_only() {
    let sim = Sim::start().await;
    let id = sim.tailnet().tailnet_id().to_owned();
    assert_eq!(
        sim.get(&format!("/tailnet/{id}/devices"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let other = sim
        .get("/tailnet/T0therCNTRL/devices")
        .send()
        .await
        .unwrap();
    assert!(error_message(other, 404).await.contains("not found"));
}

async fn oauth_token(sim: &Sim) -> Value {
    let creds = sim.tailnet().credentials();
    let resp = sim
        .http
        .post(sim.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", creds.oauth_client_id.as_str()),
            ("client_secret", creds.oauth_client_secret.expose()),
        ])
        .send()
        .await
        .unwrap();
    ok_json(resp).await
}

#[tokio::test]
async fn oauth_client_credentials_mint_bearer_tokens_that_expire() {
    let sim = Sim::start().await;
    let token = oauth_token(&sim).await;
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3600);
    let access = token["access_token"].as_str().unwrap().to_owned();
    let url = sim.url("/tailnet/-/devices");
    let ok = sim
        .http
        .get(&url)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(sim.tailnet().calls().get("POST /api/v2/oauth/token"), 1);

    sim.tailnet().console_expire_tokens();
    let expired = sim
        .http
        .get(&url)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(error_message(expired, 401).await, "API token expired");
}

#[tokio::test]
async fn oauth_tokens_live_for_the_configured_lifetime() {
    let sim = Sim::start_with(SimConfig {
        token_lifetime: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let token = oauth_token(&sim).await;
    assert_eq!(token["expires_in"], 0);
    let resp = sim
        .http
        .get(sim.url("/tailnet/-/devices"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(error_message(resp, 401).await, "API token expired");
}

#[tokio::test]
async fn oauth_rejects_a_wrong_secret_and_accepts_basic_client_credentials() {
    let sim = Sim::start().await;
    let creds = sim.tailnet().credentials();
    let bad = sim
        .http
        .post(sim.url("/oauth/token"))
        .form(&[
            ("client_id", creds.oauth_client_id.as_str()),
            ("client_secret", "tskey-client-nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(error_message(bad, 401).await, "invalid client credentials");
    let basic = sim
        .http
        .post(sim.url("/oauth/token"))
        .basic_auth(
            &creds.oauth_client_id,
            Some(creds.oauth_client_secret.expose()),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert!(ok_json(basic).await["access_token"].is_string());
}

// ----- devices ------------------------------------------------------------------------------

#[tokio::test]
async fn device_lists_have_a_default_field_set_and_all_fields() {
    let sim = Sim::start().await;
    let default = sim.get_json("/tailnet/-/devices").await;
    let devices = default["devices"].as_array().unwrap();
    let router = devices
        .iter()
        .find(|d| d["hostname"] == "subnet-router-1")
        .unwrap();
    assert!(router.get("advertisedRoutes").is_none());
    assert!(router.get("clientConnectivity").is_none());
    assert!(router["addresses"][0].as_str().unwrap().starts_with("100."));
    assert!(
        router["addresses"][1]
            .as_str()
            .unwrap()
            .starts_with("fd7a:115c:a1e0:")
    );

    let all = sim.get_json("/tailnet/-/devices?fields=all").await;
    let router = all["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["hostname"] == "subnet-router-1")
        .unwrap();
    assert_eq!(router["advertisedRoutes"].as_array().unwrap().len(), 3);
    assert!(router["clientConnectivity"]["clientSupports"].is_object());
    assert_eq!(
        sim.get("/tailnet/-/devices?fields=some")
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
}

#[tokio::test]
async fn last_seen_is_omitted_while_connected() {
    let sim = Sim::start().await;
    let devices = sim.get_json("/tailnet/-/devices").await;
    for d in devices["devices"].as_array().unwrap() {
        assert_eq!(
            d.get("lastSeen").is_none(),
            d["connectedToControl"] == true,
            "device {}",
            d["hostname"]
        );
    }
}

#[tokio::test]
async fn device_filters_match_exactly_and_repeated_filters_are_anded() {
    let sim = Sim::start().await;
    let hostnames = |v: Value| -> Vec<String> {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["hostname"].as_str().unwrap().to_owned())
            .collect()
    };
    let one = sim.get_json("/tailnet/-/devices?hostname=prod-web-1").await;
    assert_eq!(hostnames(one), ["prod-web-1"]);
    let prefix = sim.get_json("/tailnet/-/devices?hostname=prod-web").await;
    assert!(hostnames(prefix).is_empty());
    let both = sim
        .get_json("/tailnet/-/devices?tags=tag:server&tags=tag:prod")
        .await;
    assert_eq!(hostnames(both), ["prod-web-1", "prod-web-2", "prod-db-1"]);
    let ephemeral = sim
        .get_json("/tailnet/-/devices?isEphemeral=true&tags=tag:ci")
        .await;
    assert_eq!(hostnames(ephemeral), ["ci-runner-1", "ci-runner-2"]);
    let bad = sim
        .get("/tailnet/-/devices?clientConnectivity=x")
        .send()
        .await
        .unwrap();
    assert!(error_message(bad, 400).await.contains("cannot be filtered"));
}

#[tokio::test]
async fn get_device_by_node_id_or_legacy_id_and_404_for_unknown() {
    let sim = Sim::start().await;
    let node = sim.node("alice-mbp");
    let device = sim.get_json(&format!("/device/{node}")).await;
    assert_eq!(device["hostname"], "alice-mbp");
    let legacy = device["id"].as_str().unwrap();
    let again = sim.get_json(&format!("/device/{legacy}?fields=all")).await;
    assert_eq!(again["nodeId"], node);
    assert!(again.get("enabledRoutes").is_some());
    let missing = sim.get("/device/nNOPE").send().await.unwrap();
    assert_eq!(error_message(missing, 404).await, "device not found");
}

#[tokio::test]
async fn tags_must_exist_in_tag_owners_and_replace_the_set() {
    let sim = Sim::start().await;
    let node = sim.node("staging-web-1");
    let path = format!("/device/{node}/tags");
    let bad = sim
        .post(&path)
        .json(&json!({"tags": ["tag:server", "tag:nope", "tag:other"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_message(bad, 400).await,
        "requested tags [tag:nope tag:other] are invalid or not permitted"
    );
    let ok = sim
        .post(&path)
        .json(&json!({"tags": ["tag:prod"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "");
    let device = sim.get_json(&format!("/device/{node}")).await;
    assert_eq!(device["tags"], json!(["tag:prod"]));
}

#[tokio::test]
async fn oauth_callers_may_only_apply_tags_their_client_owns() {
    let sim = Sim::start().await;
    let token = oauth_token(&sim).await;
    let access = token["access_token"].as_str().unwrap();
    let node = sim.node("monitoring-1");
    let set = |tags: Value| {
        sim.http
            .post(sim.url(&format!("/device/{node}/tags")))
            .bearer_auth(access)
            .json(&json!({ "tags": tags }))
            .send()
    };
    // tag:security-scanner is owned by group:security only, not by tag:k8s-operator.
    let denied = set(json!(["tag:security-scanner"])).await.unwrap();
    assert!(
        error_message(denied, 400)
            .await
            .contains("[tag:security-scanner]")
    );
    let allowed = set(json!(["tag:monitoring", "tag:prod"])).await.unwrap();
    assert_eq!(allowed.status(), 200);
}

#[tokio::test]
async fn shared_in_devices_cannot_be_tagged_or_deleted() {
    let sim = Sim::start().await;
    let node = sim.node("hello");
    let device = sim.get_json(&format!("/device/{node}")).await;
    assert_eq!(device["isExternal"], true);
    assert_eq!(device["created"], "");
    let tag = sim
        .post(&format!("/device/{node}/tags"))
        .json(&json!({"tags": ["tag:server"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_message(tag, 400).await,
        "no manageable device matching this ID found"
    );
    let delete = sim
        .req(Method::DELETE, &format!("/device/{node}"))
        .send()
        .await
        .unwrap();
    error_message(delete, 501).await;
}

#[tokio::test]
async fn deleting_a_device_removes_it() {
    let sim = Sim::start().await;
    let node = sim.node("old-nas");
    let resp = sim
        .req(Method::DELETE, &format!("/device/{node}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let again = sim
        .req(Method::DELETE, &format!("/device/{node}"))
        .send()
        .await
        .unwrap();
    error_message(again, 404).await;
    assert!(sim.tailnet().device_id("old-nas").is_none());
}

#[tokio::test]
async fn enabling_routes_replaces_the_set_and_may_name_unadvertised_routes() {
    let sim = Sim::start().await;
    let node = sim.node("subnet-router-1");
    let path = format!("/device/{node}/routes");
    let before = sim.get_json(&path).await;
    assert_eq!(
        before,
        json!({
            "advertisedRoutes": ["10.10.0.0/16", "10.20.0.0/16", "192.168.50.0/24"],
            "enabledRoutes": ["10.10.0.0/16", "10.20.0.0/16"],
        })
    );
    let resp = sim
        .post(&path)
        .json(&json!({"routes": ["192.168.50.0/24", "10.99.0.0/16"]}))
        .send()
        .await
        .unwrap();
    let after = ok_json(resp).await;
    // Enabled is replaced (pre-enabling a route the device does not advertise is allowed);
    // what the device advertises cannot be changed through the API.
    assert_eq!(
        after["enabledRoutes"],
        json!(["192.168.50.0/24", "10.99.0.0/16"])
    );
    assert_eq!(after["advertisedRoutes"], before["advertisedRoutes"]);
    let bad = sim
        .post(&path)
        .json(&json!({"routes": ["10.0.0.1/16"]}))
        .send()
        .await
        .unwrap();
    error_message(bad, 400).await;
}

#[tokio::test]
async fn authorization_key_expiry_and_expire() {
    let sim = Sim::start().await;
    let node = sim.node("frank-surface");
    let device = sim.get_json(&format!("/device/{node}")).await;
    assert_eq!(device["authorized"], false);
    let original_expiry = device["expires"].clone();

    let auth = sim
        .post(&format!("/device/{node}/authorized"))
        .json(&json!({"authorized": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(auth.status(), 200);
    let missing = sim
        .post(&format!("/device/{node}/authorized"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    error_message(missing, 400).await;

    let key = |disabled: bool| {
        sim.post(&format!("/device/{node}/key"))
            .json(&json!({"keyExpiryDisabled": disabled}))
            .send()
    };
    assert_eq!(key(true).await.unwrap().status(), 200);
    let disabled = sim.get_json(&format!("/device/{node}")).await;
    assert_eq!(disabled["keyExpiryDisabled"], true);
    assert_eq!(disabled["expires"], "0001-01-01T00:00:00Z");
    assert_eq!(key(false).await.unwrap().status(), 200);
    let restored = sim.get_json(&format!("/device/{node}")).await;
    assert_eq!(restored["authorized"], true);
    assert_eq!(restored["expires"], original_expiry);

    let expire = sim
        .post(&format!("/device/{node}/expire"))
        .send()
        .await
        .unwrap();
    assert_eq!(expire.status(), 200);
    let expired = sim.get_json(&format!("/device/{node}")).await;
    let when = chrono::DateTime::parse_from_rfc3339(expired["expires"].as_str().unwrap()).unwrap();
    assert!(when <= chrono::Utc::now());
    assert_eq!(expired["connectedToControl"], false);
}

// ----- keys ---------------------------------------------------------------------------------

#[tokio::test]
async fn auth_key_secret_is_shown_only_at_creation() {
    let sim = Sim::start().await;
    let resp = sim
        .post("/tailnet/-/keys")
        .json(&json!({
            "capabilities": {"devices": {"create": {"reusable": false, "preauthorized": true, "tags": ["tag:k8s"]}}},
            "expirySeconds": 3600,
            "description": "proxy key for web",
        }))
        .send()
        .await
        .unwrap();
    let created = ok_json(resp).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["key"].as_str().unwrap();
    assert!(secret.starts_with(&format!("tskey-auth-{id}-")));
    assert_eq!(created["expirySeconds"], 3600);
    assert_eq!(
        created["capabilities"]["devices"]["create"]["tags"],
        json!(["tag:k8s"])
    );

    let fetched = sim.get_json(&format!("/tailnet/-/keys/{id}")).await;
    assert!(fetched.get("key").is_none());
    assert_eq!(fetched["invalid"], false);
    let listed = sim.get_json("/tailnet/-/keys?all=true").await;
    let keys = listed["keys"].as_array().unwrap();
    let entry = keys.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert!(entry.get("key").is_none());
    assert!(!listed.to_string().contains(secret));
}

#[tokio::test]
async fn auth_key_requests_are_validated() {
    let sim = Sim::start().await;
    let create = |body: Value| sim.post("/tailnet/-/keys").json(&body).send();
    let untagged_owner =
        create(json!({"capabilities": {"devices": {"create": {"tags": ["tag:ghost"]}}}}))
            .await
            .unwrap();
    assert_eq!(
        error_message(untagged_owner, 400).await,
        "requested tags [tag:ghost] are invalid or not permitted"
    );
    let too_long =
        create(json!({"capabilities": {"devices": {}}, "expirySeconds": 90 * 86400 + 1}))
            .await
            .unwrap();
    assert!(error_message(too_long, 400).await.contains("maximum"));
    let bad_description =
        create(json!({"capabilities": {"devices": {}}, "description": "under_score"}))
            .await
            .unwrap();
    error_message(bad_description, 400).await;
    let minimal = create(json!({"capabilities": {"devices": {}}}))
        .await
        .unwrap();
    let minimal = ok_json(minimal).await;
    assert_eq!(minimal["expirySeconds"], 90 * 86400);
    assert_eq!(
        minimal["capabilities"]["devices"]["create"],
        json!({"reusable": false, "ephemeral": false, "preauthorized": false, "tags": []})
    );
}

#[tokio::test]
async fn deleting_a_key_revokes_it() {
    let sim = Sim::start().await;
    let created = ok_json(
        sim.post("/tailnet/-/keys")
            .json(&json!({"capabilities": {"devices": {}}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/tailnet/-/keys/{id}");
    assert_eq!(
        sim.req(Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let revoked = sim.get_json(&path).await;
    assert_eq!(revoked["invalid"], true);
    assert!(revoked["revoked"].is_string());
    let listed = sim.get_json("/tailnet/-/keys?all=true").await;
    assert!(
        !listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id)
    );
    let again = sim.req(Method::DELETE, &path).send().await.unwrap();
    error_message(again, 404).await;
    let unknown = sim.get("/tailnet/-/keys/kNOPE").send().await.unwrap();
    error_message(unknown, 404).await;
}

#[tokio::test]
async fn oauth_minted_auth_keys_must_be_tagged_with_owned_tags() {
    let sim = Sim::start().await;
    let token = oauth_token(&sim).await;
    let access = token["access_token"].as_str().unwrap();
    let create = |tags: Value| {
        sim.http
            .post(sim.url("/tailnet/-/keys"))
            .bearer_auth(access)
            .json(&json!({"capabilities": {"devices": {"create": {"tags": tags}}}}))
            .send()
    };
    let untagged = create(json!([])).await.unwrap();
    assert!(
        error_message(untagged, 400)
            .await
            .contains("must have tags")
    );
    let foreign = create(json!(["tag:security-scanner"])).await.unwrap();
    error_message(foreign, 400).await;
    let ok = ok_json(create(json!(["tag:k8s"])).await.unwrap()).await;
    assert_eq!(ok["userId"], "");
    // Without all=true an OAuth token lists OAuth clients only.
    let listed = ok_json(
        sim.http
            .get(sim.url("/tailnet/-/keys"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["keyType"] == "client")
    );
}

// ----- services -----------------------------------------------------------------------------

#[tokio::test]
async fn service_updates_must_repeat_the_current_addresses() {
    let sim = Sim::start().await;
    let path = "/tailnet/-/services/svc:web";
    let created = ok_json(
        sim.req(Method::PUT, path)
            .json(&json!({"name": "svc:web", "ports": ["tcp:443"], "tags": ["tag:k8s"], "comment": "web"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let addrs = created["addrs"].as_array().unwrap().clone();
    assert_eq!(addrs.len(), 2);
    assert!(addrs[0].as_str().unwrap().starts_with("100."));

    let without = sim
        .req(Method::PUT, path)
        .json(&json!({"name": "svc:web", "ports": ["tcp:443", "tcp:80"], "tags": ["tag:k8s"]}))
        .send()
        .await
        .unwrap();
    assert!(error_message(without, 400).await.contains("addrs"));
    let with = ok_json(
        sim.req(Method::PUT, path)
            .json(&json!({"name": "svc:web", "addrs": addrs, "ports": ["tcp:443", "tcp:80"], "tags": ["tag:k8s"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(with["ports"], json!(["tcp:443", "tcp:80"]));
    assert_eq!(with["addrs"], json!(addrs));
    let fetched = sim.get_json(path).await;
    assert_eq!(fetched, with);
    let list = sim.get_json("/tailnet/-/services").await;
    assert!(
        list["vipServices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "svc:web")
    );

    assert_eq!(
        sim.req(Method::DELETE, path).send().await.unwrap().status(),
        200
    );
    error_message(sim.get(path).send().await.unwrap(), 404).await;
}

#[tokio::test]
async fn service_creation_is_validated() {
    let sim = Sim::start().await;
    let put = |path: &str, body: Value| sim.req(Method::PUT, path).json(&body).send();
    let mismatch = put(
        "/tailnet/-/services/svc:a",
        json!({"name": "svc:b", "ports": ["tcp:80"]}),
    )
    .await
    .unwrap();
    assert!(error_message(mismatch, 400).await.contains("must match"));
    let udp = put(
        "/tailnet/-/services/svc:dns",
        json!({"name": "svc:dns", "ports": ["udp:53"]}),
    )
    .await
    .unwrap();
    assert!(error_message(udp, 400).await.contains("only TCP"));
    let bad_tag = put(
        "/tailnet/-/services/svc:x",
        json!({"name": "svc:x", "tags": ["tag:nope"]}),
    )
    .await
    .unwrap();
    error_message(bad_tag, 400).await;
    let collides = put(
        "/tailnet/-/services/svc:monitoring-1",
        json!({"name": "svc:monitoring-1"}),
    )
    .await
    .unwrap();
    assert!(error_message(collides, 400).await.contains("machine name"));
    // The client-go flavour of the path works too.
    let alias = sim.get_json("/tailnet/-/vip-services/svc:grafana").await;
    assert_eq!(alias["name"], "svc:grafana");
}

#[tokio::test]
async fn service_hosts_and_approval() {
    let sim = Sim::start().await;
    let grafana = sim
        .get_json("/tailnet/-/services/svc:grafana/devices")
        .await;
    let host = &grafana["hosts"][0];
    assert_eq!(host["stableNodeID"], sim.node("ts-ingress-grafana"));
    // Auto-approved through autoApprovers.services in the policy.
    assert_eq!(host["approvalLevel"], "approved:auto");

    let api_host = sim.node("ts-ingress-api");
    let path = format!("/tailnet/-/services/svc:api/device/{api_host}/approved");
    assert_eq!(
        sim.get_json(&path).await,
        json!({"approved": false, "autoApproved": false})
    );
    let approved = ok_json(
        sim.post(&path)
            .json(&json!({"approved": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(approved, json!({"approved": true, "autoApproved": false}));
    let hosts = sim.get_json("/tailnet/-/services/svc:api/devices").await;
    assert_eq!(hosts["hosts"][0]["approvalLevel"], "approved:manual");
}

// ----- DNS ----------------------------------------------------------------------------------

#[tokio::test]
async fn dns_configuration_post_replaces_everything_and_omitted_booleans_turn_off() {
    let sim = Sim::start().await;
    let before = sim.get_json("/tailnet/-/dns/configuration").await;
    assert_eq!(before["preferences"]["magicDNS"], true);
    assert_eq!(before["preferences"]["overrideLocalDNS"], true);
    // A client that drops false/zero fields (omitempty) and "only" changes the nameservers...
    let posted = ok_json(
        sim.post("/tailnet/-/dns/configuration")
            .json(&json!({"nameservers": [{"address": "8.8.8.8"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // ...turned MagicDNS off and wiped split DNS and search paths.
    assert_eq!(
        posted,
        json!({
            "nameservers": [{"address": "8.8.8.8", "useWithExitNode": false}],
            "splitDNS": {},
            "searchPaths": [],
            "preferences": {"overrideLocalDNS": false, "magicDNS": false},
        })
    );
    assert_eq!(sim.get_json("/tailnet/-/dns/configuration").await, posted);
    assert_eq!(
        sim.get_json("/tailnet/-/dns/preferences").await,
        json!({"magicDNS": false})
    );
}

#[tokio::test]
async fn legacy_dns_endpoints_share_state_with_the_combined_one() {
    let sim = Sim::start().await;
    assert_eq!(
        sim.get_json("/tailnet/-/dns/nameservers").await,
        json!({"dns": ["1.1.1.1", "9.9.9.9"]})
    );
    assert_eq!(
        sim.get_json("/tailnet/-/dns/split-dns").await,
        json!({"corp.example.com": ["10.10.0.53"], "svc.cluster.local": ["10.20.0.10"]})
    );
    // Removing all nameservers turns MagicDNS off; it cannot come back without one.
    let cleared = ok_json(
        sim.post("/tailnet/-/dns/nameservers")
            .json(&json!({"dns": []}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(cleared, json!({"dns": [], "magicDNS": false}));
    let enable = sim
        .post("/tailnet/-/dns/preferences")
        .json(&json!({"magicDNS": true}))
        .send()
        .await
        .unwrap();
    assert!(error_message(enable, 400).await.contains("nameserver"));

    let patched = ok_json(
        sim.req(Method::PATCH, "/tailnet/-/dns/split-dns")
            .json(&json!({"corp.example.com": null, "new.example.com": ["10.0.0.2"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        patched,
        json!({"new.example.com": ["10.0.0.2"], "svc.cluster.local": ["10.20.0.10"]})
    );
    let searchpaths = ok_json(
        sim.post("/tailnet/-/dns/searchpaths")
            .json(&json!({"searchPaths": ["a.example.com"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(searchpaths, json!({"searchPaths": ["a.example.com"]}));
    let combined = sim.get_json("/tailnet/-/dns/configuration").await;
    assert_eq!(combined["nameservers"], json!([]));
    assert_eq!(combined["searchPaths"], json!(["a.example.com"]));
    assert_eq!(
        combined["splitDNS"]["new.example.com"],
        json!([{"address": "10.0.0.2", "useWithExitNode": false}])
    );
    let put = ok_json(
        sim.req(Method::PUT, "/tailnet/-/dns/split-dns")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(put, json!({}));
}

// ----- settings, users, webhooks ------------------------------------------------------------

#[tokio::test]
async fn settings_patch_is_partial() {
    let sim = Sim::start().await;
    let before = sim.get_json("/tailnet/-/settings").await;
    assert_eq!(before["httpsEnabled"], true);
    let after = ok_json(
        sim.req(Method::PATCH, "/tailnet/-/settings")
            .json(&json!({"httpsEnabled": false}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(after["httpsEnabled"], false);
    let mut expected = before.clone();
    expected["httpsEnabled"] = json!(false);
    assert_eq!(after, expected);
    let bad = sim
        .req(Method::PATCH, "/tailnet/-/settings")
        .json(&json!({"devicesKeyDurationDays": 0}))
        .send()
        .await
        .unwrap();
    error_message(bad, 400).await;
}

#[tokio::test]
async fn users_are_filtered_by_type_and_role() {
    let sim = Sim::start().await;
    let logins = |v: Value| -> Vec<String> {
        v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["loginName"].as_str().unwrap().to_owned())
            .collect()
    };
    let members = logins(sim.get_json("/tailnet/-/users").await);
    assert!(members.len() >= 5);
    assert!(!members.contains(&"guest@partner.example".to_owned()));
    let all = logins(sim.get_json("/tailnet/-/users?type=all").await);
    assert!(all.contains(&"guest@partner.example".to_owned()));
    let admins = logins(sim.get_json("/tailnet/-/users?role=admin").await);
    assert_eq!(admins, ["bob@example.com"]);
    let users = sim.get_json("/tailnet/-/users").await;
    let alice = &users["users"][0];
    assert_eq!(alice["deviceCount"], 2);
    let fetched = sim
        .get_json(&format!("/users/{}", alice["id"].as_str().unwrap()))
        .await;
    assert_eq!(&fetched, alice);
}

#[tokio::test]
async fn webhook_secrets_appear_on_create_and_rotate_only() {
    let sim = Sim::start().await;
    let created = ok_json(
        sim.post("/tailnet/-/webhooks")
            .json(&json!({"endpointUrl": "https://example.com/hook", "providerType": "discord", "subscriptions": ["policyUpdate"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = created["endpointId"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let path = format!("/webhooks/{id}");
    let fetched = sim.get_json(&path).await;
    assert!(fetched.get("secret").is_none());
    let listed = sim.get_json("/tailnet/-/webhooks").await;
    assert!(!listed.to_string().contains(&secret));

    let patched = ok_json(
        sim.req(Method::PATCH, &path)
            .json(&json!({"subscriptions": ["nodeCreated", "nodeDeleted"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        patched["subscriptions"],
        json!(["nodeCreated", "nodeDeleted"])
    );
    let bad = sim
        .req(Method::PATCH, &path)
        .json(&json!({"subscriptions": ["nodeExploded"]}))
        .send()
        .await
        .unwrap();
    error_message(bad, 400).await;
    let test = sim.post(&format!("{path}/test")).send().await.unwrap();
    assert_eq!(test.status(), 202);
    let rotated = ok_json(sim.post(&format!("{path}/rotate")).send().await.unwrap()).await;
    assert_ne!(rotated["secret"].as_str().unwrap(), secret);
    assert_eq!(
        sim.req(Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    error_message(sim.get(&path).send().await.unwrap(), 404).await;
}

#[tokio::test]
async fn unknown_routes_and_bad_json_answer_with_a_message() {
    let sim = Sim::start().await;
    error_message(sim.get("/nope").send().await.unwrap(), 404).await;
    let bad_json = sim
        .post("/tailnet/-/keys")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(error_message(bad_json, 400).await.contains("invalid JSON"));
    let wrong_method = sim
        .req(Method::PATCH, "/tailnet/-/devices")
        .send()
        .await
        .unwrap();
    error_message(wrong_method, 405).await;
}

#[tokio::test]
async fn framework_rejections_are_json_too() {
    let sim = Sim::start().await;
    let node = sim.node("alice-mbp");
    // A repeated `fields` parameter cannot deserialize into the handler's query type.
    let resp = sim
        .get(&format!("/device/{node}?fields=all&fields=default"))
        .send()
        .await
        .unwrap();
    let message = error_message(resp, 400).await;
    assert!(message.contains("duplicate field"), "{message}");
}
