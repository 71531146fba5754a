//! Shared helpers for tests of the real `TailscaleClient` against a real `SimServer` on
//! 127.0.0.1: starting a sim, building clients with fast retries, recording the client's
//! attempts through its public `RequestObserver` hook, and capturing tracing output.
#![allow(dead_code)] // Each test crate uses a different subset.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tailnet_operator::sim::{SimConfig, SimServer, SimTailnet};
use tailnet_operator::tailscale::{
    AttemptEvent, ClientConfig, Credentials, RequestObserver, RetryPolicy, TailscaleClient,
};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::util::SubscriberInitExt;

/// Sim counter keys (`"METHOD /api/v2/templated/path"`).
pub const DEVICES_ROUTE: &str = "GET /api/v2/tailnet/{tailnet}/devices";
pub const TOKEN_ROUTE: &str = "POST /api/v2/oauth/token";
pub const CREATE_KEY_ROUTE: &str = "POST /api/v2/tailnet/{tailnet}/keys";
pub const LIST_KEYS_ROUTE: &str = "GET /api/v2/tailnet/{tailnet}/keys";
pub const SET_POLICY_ROUTE: &str = "POST /api/v2/tailnet/{tailnet}/acl";
pub const VALIDATE_ROUTE: &str = "POST /api/v2/tailnet/{tailnet}/acl/validate";

/// The client's endpoint labels (templated, without `/api/v2`).
pub const DEVICES_ENDPOINT: &str = "GET /tailnet/{tailnet}/devices";
pub const TOKEN_ENDPOINT: &str = "POST /oauth/token";
pub const CREATE_KEY_ENDPOINT: &str = "POST /tailnet/{tailnet}/keys";

pub async fn start_sim() -> SimServer {
    start_sim_with(SimConfig::default()).await
}

pub async fn start_sim_with(config: SimConfig) -> SimServer {
    SimServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sim starts")
}

/// Retries whose backoff is a few milliseconds, for tests where the delay is not the point.
/// `max_delay` still allows short `Retry-After` waits.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_secs(5),
    }
}

/// A configuration with the sim's API key and fast retries (5 attempts).
pub fn api_key_config(server: &SimServer) -> ClientConfig {
    let mut config = ClientConfig::new(
        server.base_url(),
        Credentials::ApiKey(server.tailnet().credentials().api_key),
    );
    config.retry = fast_retry(5);
    config
}

/// A configuration with the sim's OAuth client and fast retries (5 attempts).
pub fn oauth_config(server: &SimServer) -> ClientConfig {
    let creds = server.tailnet().credentials();
    let mut config = ClientConfig::new(
        server.base_url(),
        Credentials::OAuth {
            client_id: creds.oauth_client_id,
            client_secret: creds.oauth_client_secret,
        },
    );
    config.retry = fast_retry(5);
    config
}

/// The same configuration with other credentials (e.g. wrong ones).
pub fn with_credentials(mut config: ClientConfig, credentials: Credentials) -> ClientConfig {
    config.credentials = credentials;
    config
}

pub fn client(config: ClientConfig) -> TailscaleClient {
    TailscaleClient::new(config).expect("client builds")
}

pub fn api_key_client(server: &SimServer) -> TailscaleClient {
    client(api_key_config(server))
}

pub fn oauth_client(server: &SimServer) -> TailscaleClient {
    client(oauth_config(server))
}

/// The nodeId of a seeded device.
pub fn node(sim: &SimTailnet, hostname: &str) -> String {
    sim.device_id(hostname)
        .unwrap_or_else(|| panic!("no device {hostname}"))
}

/// One HTTP attempt as the client reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub endpoint: String,
    pub attempt: u32,
    pub status: Option<u16>,
}

/// Records every attempt the client reports through its `RequestObserver` hook.
#[derive(Default)]
pub struct Attempts(Mutex<Vec<Attempt>>);

impl Attempts {
    pub fn new() -> Arc<Attempts> {
        Arc::new(Attempts::default())
    }

    pub fn all(&self) -> Vec<Attempt> {
        self.0.lock().unwrap().clone()
    }

    /// `(endpoint, status)` of every attempt, in order.
    pub fn statuses(&self) -> Vec<(String, Option<u16>)> {
        self.all()
            .into_iter()
            .map(|a| (a.endpoint, a.status))
            .collect()
    }
}

impl RequestObserver for Attempts {
    fn on_attempt(&self, event: &AttemptEvent<'_>) {
        self.0.lock().unwrap().push(Attempt {
            endpoint: event.endpoint.to_owned(),
            attempt: event.attempt,
            status: event.status,
        });
    }
}

/// Everything written by a tracing subscriber installed with [`LogCapture::install`].
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Installs a TRACE-level fmt subscriber writing into the returned buffer as the default
    /// for this thread, until the guard drops. It also forwards `log` records (reqwest logs
    /// through `log`). Tasks spawned on a current-thread runtime run on this thread, so they
    /// are captured too.
    pub fn install() -> (LogCapture, tracing::dispatcher::DefaultGuard) {
        let capture = LogCapture::default();
        let writer = capture.clone();
        let guard = tracing_subscriber::fmt()
            .with_max_level(LevelFilter::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish()
            .set_default();
        (capture, guard)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The real binary with no TS_* setting inherited from the developer's environment, as a
/// developer runs it (without `CI`: in a pipeline the demo needs `--simulated`).
pub fn binary() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tailnet-operator"));
    without_developer_settings(&mut command);
    command
}

/// Removes what a developer's shell may carry into a process the tests start: Tailscale
/// credentials and settings (never a real tailnet), `KUBECONFIG` (never a real cluster), and
/// `CI` (tests run as a developer does: in a pipeline the demo needs `--simulated`).
pub fn without_developer_settings(command: &mut std::process::Command) {
    for var in [
        "TS_API_KEY",
        "TS_OAUTH_CLIENT_ID",
        "TS_OAUTH_CLIENT_SECRET",
        "TS_TAILNET",
        "TS_API_URL",
        "KUBECONFIG",
        "CI",
    ] {
        command.env_remove(var);
    }
}

/// Runs [`binary`] with `args` (so against its embedded simulated tailnet): exit code, stdout,
/// stderr.
pub fn run_binary(args: &[&str]) -> (i32, String, String) {
    let output = binary().args(args).output().expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
