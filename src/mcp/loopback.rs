//! The operator's loopback API (`tailnet-operator run --loopback-listen 127.0.0.1:8081`): the
//! [`Backend`] over HTTP, so the MCP sidecar ([`super::remote::RemoteBackend`]) needs no
//! Kubernetes or Tailscale credentials of its own.
//!
//! `POST /v1/{method}` with the method's JSON argument, answered with the view as JSON, or an
//! error `{"kind": "NotFound"|"Invalid"|"Unsupported"|"Unavailable", "message": ...}` with
//! 404/400/501/503. Read views plus exactly one write: `propose_change`/`adopt_drift`, which
//! create a ChangeProposal (a human still approves it). It listens on loopback only: the
//! sidecar shares the pod's network namespace, nothing else can reach it.
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use super::backend::*;

/// Why the loopback API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    #[error(
        "--loopback-listen {0}: the loopback API must listen on a loopback address \
         (127.0.0.1:PORT or [::1]:PORT); it has no authentication of its own"
    )]
    NotLoopback(SocketAddr),
    #[error("could not listen on {addr} (--loopback-listen): {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// `addr` if it is a loopback address.
pub fn require_loopback(addr: SocketAddr) -> Result<SocketAddr, LoopbackError> {
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(LoopbackError::NotLoopback(addr))
    }
}

/// clap value parser for `--loopback-listen`.
pub fn parse_loopback(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|e| format!("`{text}` is not an address like 127.0.0.1:8081: {e}"))?;
    require_loopback(addr).map_err(|e| e.to_string())
}

/// Binds `addr` (loopback only) and serves `backend` until `shutdown` resolves.
pub async fn start(
    addr: SocketAddr,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>), LoopbackError> {
    let addr = require_loopback(addr)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| LoopbackError::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| LoopbackError::Listen { addr, source })?;
    let app = router(backend);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((local, task))
}

pub fn router(backend: Arc<dyn Backend>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/{method}", post(call))
        .with_state(backend)
}

async fn call(
    State(backend): State<Arc<dyn Backend>>,
    Path(method): Path<String>,
    body: Bytes,
) -> Response {
    match dispatch(backend.as_ref(), &method, &body).await {
        Ok(value) => (StatusCode::OK, axum::Json(value)).into_response(),
        Err(err) => (status_of(&err), axum::Json(err)).into_response(),
    }
}

fn status_of(err: &BackendError) -> StatusCode {
    match err {
        BackendError::NotFound(_) => StatusCode::NOT_FOUND,
        BackendError::Invalid(_) => StatusCode::BAD_REQUEST,
        BackendError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        BackendError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn args<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, BackendError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| BackendError::Invalid(format!("request body: {e}")))
}

fn json<T: Serialize>(value: Result<T, BackendError>) -> Result<serde_json::Value, BackendError> {
    value.and_then(|v| {
        serde_json::to_value(v).map_err(|e| BackendError::unavailable("encoding the answer", e))
    })
}

/// Method names, shared with [`super::remote`].
pub mod method {
    pub const DESCRIBE: &str = "describe";
    pub const OVERVIEW: &str = "overview";
    pub const LIST_RESOURCES: &str = "list_resources";
    pub const GET_RESOURCE: &str = "get_resource";
    pub const POLICY: &str = "policy";
    pub const CHECK_ACCESS: &str = "check_access";
    pub const DEVICES: &str = "devices";
    pub const DEVICE_AUDIT: &str = "device_audit";
    pub const AUTH_KEYS: &str = "auth_keys";
    pub const PROPOSALS: &str = "proposals";
    pub const NETWORK_REPORT: &str = "network_report";
    pub const PROPOSE_CHANGE: &str = "propose_change";
    pub const ADOPT_DRIFT: &str = "adopt_drift";
}

async fn dispatch(
    backend: &dyn Backend,
    name: &str,
    body: &[u8],
) -> Result<serde_json::Value, BackendError> {
    use method::*;
    match name {
        DESCRIBE => json(Ok(backend.describe())),
        OVERVIEW => json(backend.overview().await),
        LIST_RESOURCES => json(backend.list_resources(args(body)?).await),
        GET_RESOURCE => json(backend.get_resource(args(body)?).await),
        POLICY => json(backend.policy(args(body)?).await),
        CHECK_ACCESS => json(backend.check_access(args(body)?).await),
        DEVICES => json(backend.devices(args(body)?).await),
        DEVICE_AUDIT => json(backend.device_audit(args(body)?).await),
        AUTH_KEYS => json(backend.auth_keys(args(body)?).await),
        PROPOSALS => json(backend.proposals().await),
        NETWORK_REPORT => json(backend.network_report(args(body)?).await),
        PROPOSE_CHANGE => json(backend.propose_change(args(body)?).await),
        ADOPT_DRIFT => json(backend.adopt_drift(args(body)?).await),
        other => Err(BackendError::NotFound(format!(
            "no loopback API method {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert!(parse_loopback("127.0.0.1:8081").is_ok());
        assert!(parse_loopback("[::1]:8081").is_ok());
        let refused = parse_loopback("0.0.0.0:8081").unwrap_err();
        assert!(refused.contains("loopback"), "{refused}");
        assert!(parse_loopback("10.0.0.5:8081").is_err());
        assert!(parse_loopback("not an address").is_err());
    }

    #[test]
    fn errors_map_to_statuses_and_round_trip_as_json() {
        let err = BackendError::Invalid("the patch is not an object".into());
        assert_eq!(status_of(&err), StatusCode::BAD_REQUEST);
        let text = serde_json::to_string(&err).unwrap();
        assert_eq!(serde_json::from_str::<BackendError>(&text).unwrap(), err);
        assert_eq!(
            status_of(&BackendError::NotFound("x".into())),
            StatusCode::NOT_FOUND
        );
    }
}
