//! The streamable HTTP transport, hardened for a sidecar reachable from the tailnet:
//! - every request needs `Authorization: Bearer <token>` (the token from `--token-file`,
//!   compared in constant time); anything else is 401 before the MCP layer sees it;
//! - `Host` must be in the allow-list (`--allowed-hosts`, loopback by default) and a browser
//!   `Origin` must be in `--allowed-origins` (none by default): 403 otherwise (DNS rebinding);
//! - request bodies are capped (413), and a POST body that is not JSON is 400 (not rmcp's 415);
//! - each authenticated client (peer IP) gets a token bucket of requests per minute (429),
//!   checked after the token, so an unauthenticated flood from the same address cannot lock a
//!   valid client out; unauthenticated requests have their own small budget per address;
//! - the peer address becomes the client identity of the audit log (never a header).
//!
//! `/healthz` answers without a token (probes); it tells nothing but that the process is up.
//!
//! Sessions are stateless (no `Mcp-Session-Id` to steal or replay) and responses plain JSON.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use super::audit_log::ClientIdentity;
use super::server::TailnetMcp;
use crate::secret::Secret;

/// The MCP endpoint's path.
pub const MCP_PATH: &str = "/mcp";
/// Hosts accepted when `--allowed-hosts` is not given: loopback only.
pub const DEFAULT_ALLOWED_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];
/// Default request body cap: MCP requests are small; a policy patch is well under this.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default requests per minute per client.
pub const DEFAULT_RATE_PER_MINUTE: u32 = 120;
/// Requests per minute per address that fail the token check, before they get 429 instead of
/// 401 (a budget of their own: they never consume an authenticated client's).
pub const UNAUTHENTICATED_PER_MINUTE: u32 = 30;

/// How the HTTP transport is guarded.
#[derive(Clone)]
pub struct HttpOptions {
    pub token: Secret,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub requests_per_minute: u32,
}

/// Serves `server` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    server: TailnetMcp,
    options: HttpOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(server, options);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The router: bearer token (with its own rate limit for failures), the client's rate limit,
/// the JSON body check, then rmcp (Host/Origin, body cap, MCP).
pub fn router(server: TailnetMcp, options: HttpOptions) -> Router {
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_allowed_hosts(options.allowed_hosts.clone())
        .with_max_request_body_bytes(options.max_body_bytes);
    config = if options.allowed_origins.is_empty() {
        config.enforce_origin_validation()
    } else {
        config.with_allowed_origins(options.allowed_origins.clone())
    };
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        LocalSessionManager::default().into(),
        config,
    );
    let guard = Arc::new(Guard {
        token: options.token,
        limiter: RateLimiter::new(options.requests_per_minute),
        unauthenticated: RateLimiter::new(UNAUTHENTICATED_PER_MINUTE),
        max_body_bytes: options.max_body_bytes,
    });
    let guarded = Router::new()
        .nest_service(MCP_PATH, service)
        .layer(middleware::from_fn_with_state(guard, guard_request));
    // For the kubelet's probes: says nothing but "up", so it needs no token.
    Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .merge(guarded)
}

struct Guard {
    token: Secret,
    /// Authenticated clients.
    limiter: RateLimiter,
    /// Requests that fail the token check.
    unauthenticated: RateLimiter,
    max_body_bytes: usize,
}

fn too_many() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, HeaderValue::from_static("60"))],
        "rate limit exceeded: slow down\n",
    )
        .into_response()
}

async fn guard_request(
    State(guard): State<Arc<Guard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let now = Instant::now();
    if !bearer_matches(&request, &guard.token) {
        if !guard.unauthenticated.allow(peer.ip(), now) {
            return too_many();
        }
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
            "missing or wrong bearer token: send Authorization: Bearer <the token in --token-file>\n",
        )
            .into_response();
    }
    if !guard.limiter.allow(peer.ip(), now) {
        return too_many();
    }
    let mut request = match json_body(request, guard.max_body_bytes).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    request
        .extensions_mut()
        .insert(ClientIdentity(peer.to_string()));
    next.run(request).await
}

/// A POST's body must be JSON: 400 naming the problem otherwise (rmcp would answer 415), 413
/// when over the cap. Other requests pass as they are.
async fn json_body(request: Request, max_bytes: usize) -> Result<Request, Response> {
    if request.method() != axum::http::Method::POST {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, max_bytes).await else {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {max_bytes} bytes\n"),
        )
            .into_response());
    };
    if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("the request body is not JSON: {err}\n"),
        )
            .into_response());
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// Constant-time comparison of the presented token with the expected one.
fn bearer_matches(request: &Request, token: &Secret) -> bool {
    // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
    let Some(presented) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
    else {
        return false;
    };
    let expected = token.expose().as_bytes();
    !expected.is_empty() && bool::from(presented.trim().as_bytes().ct_eq(expected))
}

/// A token bucket per client IP: `per_minute` requests, refilled continuously.
struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: per_minute.max(1),
            buckets: Mutex::default(),
        }
    }

    fn allow(&self, client: IpAddr, now: Instant) -> bool {
        let capacity = f64::from(self.per_minute);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Forget idle clients so the map stays bounded by the active ones.
        if buckets.len() > 10_000 {
            buckets.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(120));
        }
        let (tokens, at) = buckets.entry(client).or_insert((capacity, now));
        let refill = now.duration_since(*at).as_secs_f64() * capacity / 60.0;
        *tokens = (*tokens + refill).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_budget_then_waits_for_refill() {
        let limiter = RateLimiter::new(3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.allow(a, t0)));
        assert!(
            !limiter.allow(a, t0),
            "the fourth request within the minute is refused"
        );
        assert!(limiter.allow(b, t0), "another client has its own bucket");
        assert!(
            limiter.allow(a, t0 + Duration::from_secs(20)),
            "one token back after 20 s"
        );
        assert!(!limiter.allow(a, t0 + Duration::from_secs(20)));
    }

    #[test]
    fn bearer_must_match_exactly() {
        let token = Secret::new("s3cret-token");
        let with = |value: &str| {
            Request::builder()
                .header(header::AUTHORIZATION, value)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert!(bearer_matches(&with("Bearer s3cret-token"), &token));
        assert!(
            bearer_matches(&with("bearer s3cret-token"), &token),
            "scheme any case"
        );
        assert!(bearer_matches(&with("BEARER s3cret-token"), &token));
        assert!(
            !bearer_matches(&with("Bearer S3CRET-TOKEN"), &token),
            "token exact"
        );
        assert!(!bearer_matches(&with("Bearer s3cret-tokenX"), &token));
        assert!(!bearer_matches(&with("Bearer s3cret"), &token));
        assert!(!bearer_matches(&with("Basic s3cret-token"), &token));
        let none = Request::builder().body(axum::body::Body::empty()).unwrap();
        assert!(!bearer_matches(&none, &token));
        assert!(!bearer_matches(&with("Bearer "), &Secret::new("")));
    }

    /// The guard in front of a stand-in for rmcp that answers 200.
    fn guarded(per_minute: u32) -> Router {
        let guard = Arc::new(Guard {
            token: Secret::new("s3cret-token"),
            limiter: RateLimiter::new(per_minute),
            unauthenticated: RateLimiter::new(UNAUTHENTICATED_PER_MINUTE),
            max_body_bytes: 64,
        });
        Router::new()
            .route(MCP_PATH, axum::routing::post(|| async { "mcp" }))
            .layer(middleware::from_fn_with_state(guard, guard_request))
    }

    async fn send(app: &Router, authorization: Option<&str>, body: &str) -> StatusCode {
        use tower::ServiceExt;
        let mut request = Request::post(MCP_PATH)
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body.to_owned()))
            .unwrap();
        if let Some(value) = authorization {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        let peer: SocketAddr = "10.0.0.7:4000".parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn an_unauthenticated_flood_never_locks_out_the_valid_client_from_the_same_address() {
        let app = guarded(5);
        for _ in 0..UNAUTHENTICATED_PER_MINUTE {
            assert_eq!(send(&app, None, "{}").await, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(
            send(&app, Some("Bearer nope"), "{}").await,
            StatusCode::TOO_MANY_REQUESTS
        );
        // The valid client from the same address still has its whole budget.
        for _ in 0..5 {
            assert_eq!(
                send(&app, Some("bearer s3cret-token"), "{}").await,
                StatusCode::OK
            );
        }
        assert_eq!(
            send(&app, Some("Bearer s3cret-token"), "{}").await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_400_and_a_big_one_413() {
        let app = guarded(100);
        let token = Some("Bearer s3cret-token");
        assert_eq!(
            send(&app, token, "{\"jsonrpc\": ").await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            send(&app, token, &"x".repeat(65)).await,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            send(&app, token, "{\"jsonrpc\": \"2.0\"}").await,
            StatusCode::OK
        );
    }
}
