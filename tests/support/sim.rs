//! Shared helpers for the simulated-tailnet tests: a started server and an authenticated
//! reqwest client.
#![allow(dead_code)] // Each test crate uses a different subset.

use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;
use tailnet_operator::sim::{SimConfig, SimServer, SimTailnet};

pub struct Sim {
    pub server: SimServer,
    pub http: Client,
    pub api_key: String,
}

impl Sim {
    pub async fn start() -> Sim {
        Sim::start_with(SimConfig::default()).await
    }

    pub async fn start_with(config: SimConfig) -> Sim {
        let server = SimServer::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("sim starts");
        let api_key = server.tailnet().credentials().api_key.expose().to_owned();
        Sim {
            server,
            http: Client::new(),
            api_key,
        }
    }

    pub fn tailnet(&self) -> &SimTailnet {
        self.server.tailnet()
    }

    /// `base_url + "/api/v2" + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v2{path}", self.server.base_url())
    }

    /// An authenticated API request.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.api_key)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.req(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.req(Method::POST, path)
    }

    /// An authenticated admin (`/sim/...`) request.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.server.base_url()))
            .bearer_auth(&self.api_key)
    }

    /// GET returning the JSON body, asserting 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self.get(path).send().await.expect("request");
        ok_json(resp).await
    }

    /// The nodeId of a seeded device.
    pub fn node(&self, hostname: &str) -> String {
        self.tailnet()
            .device_id(hostname)
            .unwrap_or_else(|| panic!("no device {hostname}"))
    }
}

pub async fn ok_json(resp: Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert_eq!(status, 200, "unexpected status, body: {text}");
    serde_json::from_str(&text).expect("JSON body")
}

/// Asserts an error status and returns the `message`.
pub async fn error_message(resp: Response, status: u16) -> String {
    let got = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.expect("body");
    assert_eq!(got, status, "unexpected status, body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    let body: Value = serde_json::from_str(&text).expect("error body is JSON");
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error body has a message: {body}"))
        .to_owned()
}
