//! The call counter and the exchange log: what tests use to assert "this reconcile cost N API
//! calls" and to validate every request and response against the OpenAPI document.
use std::collections::{BTreeMap, VecDeque};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::SimTailnet;
use super::error::SimError;
use super::faults::DroppedConnection;

/// The API prefix the counter keys carry and the exchange routes drop.
pub const API_PREFIX: &str = "/api/v2";
/// How many exchanges the log keeps (oldest dropped first).
pub const EXCHANGE_CAPACITY: usize = 5_000;
/// Largest body the exchange log buffers.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// API calls per `"METHOD /api/v2/templated/path"` key, e.g.
/// `"GET /api/v2/tailnet/{tailnet}/devices"`, including calls answered with an error or a
/// fault. Requests matching no API route and admin (`/sim/...`) requests are not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    counts: BTreeMap<String, u64>,
}

impl CallCounts {
    /// Calls made to one route key; 0 if never called.
    pub fn get(&self, key: &str) -> u64 {
        self.counts.get(key).copied().unwrap_or(0)
    }

    /// All calls.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Calls whose key starts with `method` (e.g. every `POST`), handy for "no writes" checks.
    pub fn total_for_method(&self, method: &str) -> u64 {
        self.counts
            .iter()
            .filter(|(k, _)| k.split(' ').next() == Some(method))
            .map(|(_, v)| v)
            .sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts.iter().map(|(k, v)| (k.as_str(), *v))
    }

    pub(crate) fn increment(&mut self, key: &str) {
        *self.counts.entry(key.to_owned()).or_default() += 1;
    }
}

/// One recorded request/response pair. Secrets in bodies (strings starting with `tskey-`, and
/// `secret`/`client_secret`/`access_token` fields) are replaced by `"[redacted]"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exchange {
    pub method: String,
    /// The concrete request path as sent, e.g. `/api/v2/device/n123CNTRL/tags`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The templated OpenAPI path, without the `/api/v2` prefix, e.g. `/device/{deviceId}/tags`
    /// (a key of the document's `paths`; `/oauth/token` and `/tailnet/{tailnet}/vip-services...`
    /// are sim extras the document does not list).
    pub route: String,
    /// The response status; 0 when the connection was dropped by a fault (no response sent).
    pub status: u16,
    /// JSON bodies parsed; HuJSON (and other non-JSON text) as a JSON string; `None` if empty
    /// or a form.
    pub request_body: Option<Value>,
    pub response_body: Option<Value>,
    pub request_content_type: Option<String>,
    pub response_content_type: Option<String>,
}

/// Bounded exchange log, off by default.
#[derive(Debug, Default)]
pub(crate) struct ExchangeLog {
    pub enabled: bool,
    pub entries: VecDeque<Exchange>,
}

impl ExchangeLog {
    fn push(&mut self, exchange: Exchange) {
        if self.entries.len() >= EXCHANGE_CAPACITY {
            self.entries.pop_front();
        }
        self.entries.push_back(exchange);
    }
}

/// The counter key of a request, stored in its extensions for the fault injector.
#[derive(Debug, Clone)]
pub(crate) struct RouteKey(pub String);

/// Outermost API middleware: counts the call, then (when recording) buffers both bodies and
/// logs the exchange.
pub(crate) async fn observe(
    State(sim): State<SimTailnet>,
    mut req: Request,
    next: Next,
) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let key = format!(
        "{} {}",
        req.method(),
        matched.as_deref().unwrap_or("<unmatched>")
    );
    sim.inner.calls().increment(&key);
    req.extensions_mut().insert(RouteKey(key));
    if !sim.inner.exchanges().enabled {
        return next.run(req).await;
    }

    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let route = matched
        .map(|m| m.strip_prefix(API_PREFIX).unwrap_or(&m).to_owned())
        .unwrap_or_else(|| "<unmatched>".into());
    let request_content_type = content_type(req.headers());
    let (parts, body) = req.into_parts();
    let request_bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            return SimError::bad_request(format!("could not read request body: {e}"))
                .into_response();
        }
    };
    let req = Request::from_parts(parts, Body::from(request_bytes.clone()));

    let response = next.run(req).await;
    let dropped = response.extensions().get::<DroppedConnection>().is_some();
    let response_content_type = content_type(response.headers());
    let (parts, body) = response.into_parts();
    let response_bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .unwrap_or_default();
    let exchange = Exchange {
        method,
        path,
        query,
        route,
        status: if dropped { 0 } else { parts.status.as_u16() },
        request_body: body_value(&request_bytes, request_content_type.as_deref()),
        response_body: body_value(&response_bytes, response_content_type.as_deref()),
        request_content_type,
        response_content_type,
    };
    sim.inner.exchanges().push(exchange);
    Response::from_parts(parts, Body::from(response_bytes))
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn body_value(bytes: &Bytes, content_type: Option<&str>) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    let ct = content_type.unwrap_or("");
    if ct.contains("x-www-form-urlencoded") {
        return None;
    }
    let text = String::from_utf8_lossy(bytes);
    let value = if ct.contains("json") && !ct.contains("hujson") {
        serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(text.into_owned()))
    } else {
        Value::String(text.into_owned())
    };
    Some(redact(value))
}

const SECRET_FIELDS: &[&str] = &["secret", "client_secret", "access_token"];

/// Replaces secret values so a recorded exchange can be printed safely.
fn redact(value: Value) -> Value {
    match value {
        Value::String(s) if s.starts_with("tskey-") => Value::String("[redacted]".into()),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if SECRET_FIELDS.contains(&k.as_str()) && v.is_string() {
                        Value::String("[redacted]".into())
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_in_recorded_bodies() {
        let body = json!({
            "id": "k1",
            "key": "tskey-auth-k1-abc",
            "nested": [{"secret": "whsec"}, "tskey-client-x"],
            "access_token": "opaque",
            "keep": "visible",
        });
        let redacted = redact(body);
        assert_eq!(
            redacted,
            json!({
                "id": "k1",
                "key": "[redacted]",
                "nested": [{"secret": "[redacted]"}, "[redacted]"],
                "access_token": "[redacted]",
                "keep": "visible",
            })
        );
    }

    #[test]
    fn call_counts_sum_per_key_and_method() {
        let mut counts = CallCounts::default();
        counts.increment("GET /api/v2/tailnet/{tailnet}/devices");
        counts.increment("GET /api/v2/tailnet/{tailnet}/devices");
        counts.increment("POST /api/v2/device/{deviceId}/tags");
        assert_eq!(counts.get("GET /api/v2/tailnet/{tailnet}/devices"), 2);
        assert_eq!(counts.get("DELETE /api/v2/device/{deviceId}"), 0);
        assert_eq!(counts.total(), 3);
        assert_eq!(counts.total_for_method("POST"), 1);
    }
}
