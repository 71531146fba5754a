//! `tailnet-operator mcp`: picks the backend and the transport.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rmcp::ServiceExt;

use super::audit_log::AuditLog;
use super::backend::{Backend, BackendError};
use super::http::{self, HttpOptions};
use super::kube_source::KubeSource;
use super::local::LocalBackend;
use super::manifests_source::ManifestsSource;
use super::remote::RemoteBackend;
use super::server::TailnetMcp;
use crate::connection::ConnectionArgs;
use crate::secret::Secret;

/// Arguments of `tailnet-operator mcp`. Exactly one backend: `--operator-url` (the sidecar),
/// `--kubeconfig` (standalone, your RBAC) or `--manifests` (a GitOps checkout, no cluster).
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("backend").required(true).args(["operator_url", "kubeconfig", "manifests"])))]
pub struct McpArgs {
    /// The operator's loopback API, e.g. http://127.0.0.1:8081 (the sidecar: no credentials).
    #[arg(long)]
    pub operator_url: Option<String>,
    /// A kubeconfig: read the cluster and create ChangeProposals with its identity.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// A GitOps checkout's directory of CR files: no cluster; proposals become patch files.
    #[arg(long, value_name = "PATH")]
    pub manifests: Option<PathBuf>,
    /// Where `--manifests` mode writes proposal patch files.
    #[arg(long, default_value = "proposals")]
    pub proposals_dir: PathBuf,
    /// Namespace of the ChangeProposals created with `--kubeconfig` (default: the context's).
    #[arg(long)]
    pub proposal_namespace: Option<String>,
    /// Only the read tools: propose tools are not listed and calls to them are refused.
    #[arg(long)]
    pub read_only: bool,
    /// Serve streamable HTTP on this address instead of stdio (needs --token-file).
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// File holding the bearer token HTTP clients must send (e.g. a mounted Secret).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Host header values accepted over HTTP, comma-separated (`name` or `name:port`), e.g. the
    /// in-cluster Service name and the tailnet name. Default: localhost, 127.0.0.1, ::1.
    #[arg(long, value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted over HTTP (scheme://host:port); default none (any Origin header
    /// is refused; MCP clients outside browsers send none).
    #[arg(long, value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Largest accepted HTTP request body, bytes.
    #[arg(long, default_value_t = http::DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Requests per minute per HTTP client (peer IP).
    #[arg(long, default_value_t = http::DEFAULT_RATE_PER_MINUTE)]
    pub rate_limit: u32,
    /// Append the JSONL audit lines (one per tool call) to this file instead of stderr.
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// ManagedTailnet connection for `--manifests` mode (TS_* variables; without any, the embedded
    /// simulated tailnet, said on stderr).
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("--kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(
        "--http-listen needs --token-file: a file holding the bearer token clients must send \
         (e.g. `head -c 32 /dev/urandom | base64 > token`)"
    )]
    NoToken,
    #[error("--token-file {path}: {message}")]
    Token { path: PathBuf, message: String },
    #[error("--audit-log {path}: {source}")]
    AuditLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {message}")]
    Serve { context: String, message: String },
}

/// Runs the server until the client disconnects (stdio) or SIGTERM (HTTP).
pub async fn run(args: McpArgs) -> Result<(), McpError> {
    let backend = backend(&args).await?;
    let audit = match &args.audit_log {
        Some(path) => AuditLog::file(path).map_err(|source| McpError::AuditLog {
            path: path.clone(),
            source,
        })?,
        None => AuditLog::stderr(),
    };
    let server = TailnetMcp::new(backend, args.read_only, audit);
    match args.http_listen {
        None => serve_stdio(server).await,
        Some(addr) => serve_http(&args, addr, server).await,
    }
}

async fn backend(args: &McpArgs) -> Result<Arc<dyn Backend>, McpError> {
    if let Some(url) = &args.operator_url {
        return Ok(Arc::new(RemoteBackend::new(url)?));
    }
    if let Some(path) = &args.kubeconfig {
        let client = kube_client(path).await?;
        let namespace = args
            .proposal_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        return Ok(Arc::new(LocalBackend::new(KubeSource::new(
            client, namespace,
        ))));
    }
    let path = args.manifests.clone().unwrap_or_default();
    let source = ManifestsSource::open(&path, &args.proposals_dir, &args.connection).await?;
    Ok(Arc::new(LocalBackend::new(source)))
}

async fn kube_client(path: &PathBuf) -> Result<kube::Client, McpError> {
    let error = |message: String| McpError::Kubeconfig {
        path: path.clone(),
        message,
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| error(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| error(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| error(e.to_string()))
}

async fn serve_stdio(server: TailnetMcp) -> Result<(), McpError> {
    let serve_error = |message: String| McpError::Serve {
        context: "MCP over stdio".to_owned(),
        message,
    };
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| serve_error(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| serve_error(e.to_string()))?;
    Ok(())
}

async fn serve_http(args: &McpArgs, addr: SocketAddr, server: TailnetMcp) -> Result<(), McpError> {
    let path = args.token_file.as_ref().ok_or(McpError::NoToken)?;
    let token = std::fs::read_to_string(path).map_err(|e| McpError::Token {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let token = token.trim();
    if token.len() < 16 {
        return Err(McpError::Token {
            path: path.clone(),
            message: "the token is shorter than 16 characters: use a long random token".into(),
        });
    }
    let allowed_hosts = if args.allowed_hosts.is_empty() {
        http::DEFAULT_ALLOWED_HOSTS
            .iter()
            .map(|h| (*h).to_owned())
            .collect()
    } else {
        args.allowed_hosts.clone()
    };
    let options = HttpOptions {
        token: Secret::new(token),
        allowed_hosts,
        allowed_origins: args.allowed_origins.clone(),
        max_body_bytes: args.max_body_bytes,
        requests_per_minute: args.rate_limit,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| McpError::Serve {
            context: format!("could not listen on {addr} (--http-listen)"),
            message: e.to_string(),
        })?;
    let local = listener.local_addr().map_err(|e| McpError::Serve {
        context: "--http-listen".into(),
        message: e.to_string(),
    })?;
    // The test harness and operators read the bound address (port 0 picks one) from here.
    eprintln!(
        "MCP streamable HTTP listening on http://{local}{}",
        http::MCP_PATH
    );
    http::serve(
        listener,
        server,
        options,
        crate::shutdown::shutdown_signal(),
    )
    .await
    .map_err(|e| McpError::Serve {
        context: "MCP over HTTP".into(),
        message: e.to_string(),
    })
}
