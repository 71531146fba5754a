//! The `tailnet-operator` command line.
pub mod crdgen;
pub mod docgen;
pub mod file_mode;
pub mod kindgen;
mod policy;
pub mod proposal;
mod report;

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use chrono::{Duration, Utc};
use clap::{Parser, Subcommand, ValueEnum};

pub use crate::connection::{Connection, ConnectionArgs, ConnectionError, connect};
pub use crate::shutdown::shutdown_signal;
pub use policy::{PolicyArgs, PolicyCommand, Report, diff_report, test_report};

use crate::audit::{self, AuditOptions, ClientVersion, Format};
use crate::error::Category;
use crate::sim::{SimConfig, SimServer};
use crate::tailscale::{ApiError, DeviceListOptions};

#[derive(Debug, Parser)]
#[command(
    name = "tailnet-operator",
    version,
    about = "Manage a Tailscale tailnet declaratively"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `tailnet_operator=debug`.
    #[arg(long, global = true, default_value = "warn", env = "RUST_LOG")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the simulated tailnet (a test double and demo backend of the Tailscale API).
    Sim(SimArgs),
    /// Audit a tailnet's devices and auth keys: stale, outdated, unauthorized, expiring.
    Audit(AuditArgs),
    /// The tailnet's state as one self-contained HTML page (inline SVG charts) or JSON
    /// (schema: docs/report.schema.json): devices, routing, DNS, policy, keys, audit findings.
    Report(report::ReportArgs),
    /// Offline policy tools: run a policy file's tests, diff the access of two policy files.
    Policy(PolicyArgs),
    /// Write the CustomResourceDefinitions as YAML (`--check`: fail if the files are stale).
    Crdgen(crdgen::CrdgenArgs),
    /// Write the CRD reference (docs/crd-reference.md) from the schemas (`--check`: fail if
    /// stale).
    Docgen(docgen::DocgenArgs),
    /// Write the RBAC rules, Argo CD health keys and packaging kind list from the kind list
    /// (or with --check, fail when they are stale).
    Kindgen(kindgen::KindgenArgs),
    /// Show what `apply -f PATH` would change: policy text diff and access diff. Exit code 0
    /// (no changes), 2 (changes) or 1 (error).
    Plan(file_mode::FileArgs),
    /// Apply the resources in PATH (a YAML file or directory) to the tailnet and print each
    /// resource's status. Exit code 1 when a resource is not Ready.
    Apply(file_mode::FileArgs),
    /// Run the controllers in a cluster (leader election, /healthz, /readyz, /metrics).
    Run(RunArgs),
    /// MCP server for assistants: read state, propose reviewed patches (stdio, or HTTP with
    /// --http-listen). Never writes to the tailnet.
    Mcp(Box<crate::mcp::cli::McpArgs>),
    /// ChangeProposals: `export NAME` prints one as a file to commit (GitOps review flow).
    Proposal(proposal::ProposalArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The operator's namespace: where its leader Lease lives.
    #[arg(long, env = "POD_NAMESPACE", default_value = "tailnet-system")]
    pub namespace: String,
    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// Elect a leader through a Lease so several replicas are safe; `false` for one replica.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Serve the loopback API for the MCP sidecar (read views, create ChangeProposals) on this
    /// address; loopback addresses only, e.g. 127.0.0.1:8081.
    #[arg(long, value_parser = crate::mcp::loopback::parse_loopback)]
    pub loopback_listen: Option<SocketAddr>,
    /// How long finished ChangeProposals (Applied, Failed, Stale, Rejected) are kept before
    /// they are deleted, e.g. `168h` (units ms, s, m, h).
    #[arg(long, default_value = "168h", value_parser = parse_ttl)]
    pub proposal_ttl: std::time::Duration,
    /// Receive Tailscale webhooks on this address (`POST /webhooks/<ManagedTailnet>`, signed
    /// with the secret `spec.webhook.secretRef` names), so console changes are found within
    /// seconds. Its own listener: expose it (Ingress or a FunnelExposure), never the metrics.
    #[arg(long)]
    pub webhook_listen: Option<SocketAddr>,
    /// How far a webhook signature's timestamp may be from now before the delivery is refused
    /// as a replay, e.g. `5m`.
    #[arg(long, default_value = "5m", value_parser = parse_ttl)]
    pub webhook_tolerance: std::time::Duration,
}

fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    crate::resources::common::parse_duration(text).map_err(|e| e.to_string())
}

#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on. Keep it on loopback: the simulated tailnet is not hardened.
    #[arg(long, default_value = "127.0.0.1:4141")]
    pub listen: SocketAddr,
    /// Generated devices to add to the demo tailnet (scales to 10,000 and more).
    #[arg(long, default_value_t = 0)]
    pub devices: usize,
    /// Seed for the generated tailnet (same seed, same tailnet).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Devices not seen for more than this many days are stale.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub stale_days: u32,
    /// Node keys and auth keys expiring within this many days are reported.
    #[arg(long, default_value_t = 14)]
    pub expiry_days: u32,
    /// Clients older than this version are outdated (default: more than --outdated-minors
    /// minor versions behind the newest client in the tailnet).
    #[arg(long, value_parser = parse_client_version)]
    pub min_client_version: Option<ClientVersion>,
    /// Clients more than this many minor versions behind the newest client are outdated.
    #[arg(long, default_value_t = 6)]
    pub outdated_minors: u32,
}

fn parse_client_version(text: &str) -> Result<ClientVersion, String> {
    ClientVersion::parse(text).ok_or_else(|| {
        format!("`{text}` is not a client version; use MAJOR.MINOR[.PATCH], e.g. 1.80.0")
    })
}

/// `90s`, `5m`, `1m30s`: how a duration was given.
fn humantime(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// Runs `work` within the connection's `--deadline`, else [`CliError::Deadline`] naming what
/// it waited for.
pub async fn within_deadline<T>(
    deadline: std::time::Duration,
    target: &str,
    work: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    match tokio::time::timeout(deadline, work).await {
        Ok(result) => result,
        Err(_) => Err(CliError::Deadline {
            after: deadline,
            target: target.to_owned(),
        }),
    }
}

/// Errors that end a command; `main` prints them and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("Tailscale API: {0}")]
    Api(#[from] ApiError),
    #[error(transparent)]
    Crdgen(#[from] crdgen::CrdgenError),
    #[error(transparent)]
    Docgen(#[from] docgen::DocgenError),
    #[error(transparent)]
    Kindgen(#[from] kindgen::KindgenError),
    #[error("Kubernetes client configuration: {0}")]
    KubeConfig(#[from] kube::Error),
    #[error(transparent)]
    Manager(#[from] crate::controller::ManagerError),
    #[error(transparent)]
    File(#[from] crate::file_mode::FileModeError),
    #[error(transparent)]
    Reconcile(#[from] crate::resources::ReconcileError),
    #[error(transparent)]
    Mcp(#[from] crate::mcp::cli::McpError),
    #[error(transparent)]
    Loopback(#[from] crate::mcp::loopback::LoopbackError),
    #[error(transparent)]
    Export(#[from] proposal::ExportError),
    #[error(
        "gave up after {} (--deadline) waiting for {target}: it did not answer in time; check \
         the network, DNS, any proxy and TS_API_URL, or raise --deadline / --request-timeout",
        humantime(*after)
    )]
    Deadline {
        after: std::time::Duration,
        target: String,
    },
    /// Options that do not go together, named with the fix.
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// What to do about the error, when there is something specific to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            CliError::Api(err) if err.category == Category::Auth => Some(
                "check the credentials (TS_API_KEY, or TS_OAUTH_CLIENT_ID and \
                 TS_OAUTH_CLIENT_SECRET) and, for an OAuth client, its scopes: audit needs \
                 devices:core:read and auth_keys:read",
            ),
            CliError::KubeConfig(_) => Some(
                "run inside a cluster (service account) or set KUBECONFIG to a working kubeconfig",
            ),
            CliError::Api(err) if err.category == Category::NotFound => {
                Some("check TS_TAILNET (use `-` for the credential's own tailnet) and TS_API_URL")
            }
            _ => None,
        }
    }
}

/// Runs a command; the exit code is 0 unless the command reports otherwise (`policy diff`
/// exits 2 when access changes). Errors end with exit code 1 in `main`.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Sim(args) => run_sim(args).await.map(|()| ExitCode::SUCCESS),
        Command::Audit(args) => run_audit(args).await.map(|()| ExitCode::SUCCESS),
        Command::Report(args) => report::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Policy(args) => policy::run(&args),
        Command::Crdgen(args) => crdgen::execute(&args)
            .map(|()| ExitCode::SUCCESS)
            .map_err(CliError::from),
        Command::Docgen(args) => docgen::execute(&args)
            .map(|()| ExitCode::SUCCESS)
            .map_err(CliError::from),
        Command::Kindgen(args) => kindgen::execute(&args)
            .map(|()| ExitCode::SUCCESS)
            .map_err(CliError::from),
        Command::Run(args) => run_manager(args).await.map(|()| ExitCode::SUCCESS),
        Command::Plan(args) => file_mode::run(&args, crate::file_mode::Mode::Plan).await,
        Command::Apply(args) => file_mode::run(&args, crate::file_mode::Mode::Apply).await,
        Command::Mcp(args) => crate::mcp::cli::run(*args)
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(CliError::from),
        Command::Proposal(args) => proposal::run(&args).await.map(|out| {
            print!("{out}");
            ExitCode::SUCCESS
        }),
    }
}

async fn run_manager(args: RunArgs) -> Result<(), CliError> {
    let client = kube::Client::try_default().await?;
    let config = crate::controller::RunConfig {
        namespace: args.namespace.clone(),
        identity: pod_identity(),
        metrics_listen: args.metrics_listen,
        leader_election: args
            .leader_election
            .then(crate::controller::LeaseConfig::default),
        proposal_ttl: args.proposal_ttl,
        clock: crate::snapshot::WallClock::system(),
        webhook_listen: args.webhook_listen,
        webhook_tolerance: args.webhook_tolerance,
    };
    let Some(loopback) = args.loopback_listen else {
        crate::controller::run(client, config, shutdown_signal()).await?;
        return Ok(());
    };
    // The loopback API reads through the controllers' own snapshot caches.
    let manager = crate::controller::Manager::start(client.clone(), config).await?;
    let source = crate::mcp::kube_source::KubeSource::new(client, args.namespace)
        .with_shared_snapshots(manager.snapshots().clone());
    let backend = std::sync::Arc::new(crate::mcp::local::LocalBackend::new(source));
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    crate::mcp::loopback::start(loopback, backend, async move {
        let _ = api_stopped.await;
    })
    .await?;
    manager.run_until(shutdown_signal()).await?;
    let _ = stop_api.send(());
    Ok(())
}

/// This replica's name in the Lease and in events: `POD_NAME` (downward API), else the host name.
fn pod_identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "tailnet-operator".to_owned())
}

async fn run_audit(args: AuditArgs) -> Result<(), CliError> {
    let connection = connect(&args.connection).await?;
    // One device-list read and one key-list read, whatever the size of the tailnet.
    let read = async {
        let devices = connection
            .client
            .list_devices(&DeviceListOptions::default())
            .await?;
        let keys = connection.client.list_keys(true).await?;
        Ok((devices, keys))
    };
    let (devices, keys) =
        within_deadline(args.connection.deadline, connection.describe(), read).await?;
    let options = AuditOptions {
        stale_after: Duration::days(i64::from(args.stale_days)),
        expiry_window: Duration::days(i64::from(args.expiry_days)),
        min_client_version: args.min_client_version,
        outdated_minor_versions: args.outdated_minors,
    };
    let report = audit::audit(&devices, &keys, Utc::now(), &options);
    let mut output = audit::render(&report, args.format);
    // Which tailnet was audited: the table's first line; on stderr for machine formats, so
    // stdout stays parseable.
    let audited = format!("tailnet: {}", connection.describe());
    if args.format == Format::Table {
        output = format!("{audited}\n{output}");
    } else {
        eprintln!("{audited}");
    }
    write_stdout(&output)?;
    // Table output already ends with the summary; for machine formats it goes to stderr so
    // stdout stays parseable.
    if args.format != Format::Table {
        eprintln!("{}", report.summary_line());
    }
    Ok(())
}

async fn run_sim(args: SimArgs) -> Result<(), CliError> {
    let config = SimConfig {
        devices: args.devices,
        seed: args.seed,
        ..SimConfig::default()
    };
    let server = SimServer::start(config, args.listen)
        .await
        .map_err(|source| CliError::Io {
            context: format!("could not listen on {}", args.listen),
            source,
        })?;
    let credentials = server.tailnet().credentials();
    // These are the simulated tailnet's own demo credentials, printed on purpose so a user can
    // point commands at it; they open nothing but this process.
    let banner = format!(
        "simulated tailnet (test double of the Tailscale API v2) listening on {url}\n\
         demo credentials of this simulated tailnet:\n  \
         TS_API_URL={url}\n  TS_API_KEY={key}\n  \
         TS_OAUTH_CLIENT_ID={client_id}\n  TS_OAUTH_CLIENT_SECRET={client_secret}\n\
         e.g.: TS_API_URL={url} TS_API_KEY={key} tailnet-operator audit\n\
         admin (not part of the real API): {url}/sim/calls, {url}/sim/faults, {url}/sim/console/...\n\
         press Ctrl-C to stop\n",
        url = server.base_url(),
        key = credentials.api_key.expose(),
        client_id = credentials.oauth_client_id,
        client_secret = credentials.oauth_client_secret.expose(),
    );
    write_stdout(&banner)?;
    shutdown_signal().await;
    eprintln!("stopping the simulated tailnet");
    server.shutdown().await;
    Ok(())
}

fn write_stdout(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|source| CliError::Io {
            context: "could not write to stdout".to_owned(),
            source,
        })
}

/// Sets up `tracing` on stderr in the chosen format.
pub fn init_tracing(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
